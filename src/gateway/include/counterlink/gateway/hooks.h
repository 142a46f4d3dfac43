// The seams between the gateway and whoever decides who may connect and what
// happens to their traffic: the platform, or the static configuration for a
// standalone broker.
//
// Threading contract: every hook is called on the event-loop thread that owns
// the connection. Hooks must not block for long: a slow authenticate() is
// asynchronous (complete `done` later, from any thread); authorize() and the
// event callbacks are synchronous and must be fast (in-memory decisions).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "counterlink/gateway/message.h"
#include "counterlink/mqtt/packet.h"

namespace counterlink::gateway {

struct PeerCertificate;

// What the gateway knows about a connected client.
struct ClientInfo {
  std::string client_id;
  std::string username;  // empty when none was given
  bool has_username = false;
  std::string remote_address;  // "ip:port"
  std::string listener;        // listener name
  mqtt::Version version = mqtt::Version::kV311;
  std::string certificate_subject;  // verified client certificate subject, or empty
  std::string certificate_cn;
};

struct AuthRequest {
  const ClientInfo& client;
  const std::optional<std::string>& password;  // binary
};

struct AuthResult {
  // kSuccess, or the 5.0 CONNACK reason to refuse with (kBadUserNameOrPassword,
  // kNotAuthorized, kBanned, kServerUnavailable, ...).
  mqtt::ReasonCode reason = mqtt::ReasonCode::kSuccess;
  std::string reason_string;  // sent to 5.0 clients when non-empty
};

class Authenticator {
 public:
  virtual ~Authenticator() = default;
  // Decides whether the client may connect. Call `done` exactly once, from any
  // thread, now or later; the request's references are valid only during this
  // call.
  virtual void authenticate(const AuthRequest& request, std::function<void(AuthResult)> done) = 0;
};

enum class Action : uint8_t { kPublish, kSubscribe };

class Authorizer {
 public:
  virtual ~Authorizer() = default;
  // True if `client` may publish to the topic name / subscribe to the topic
  // filter. For subscriptions, `topic` is the filter without any "$share/g/".
  virtual bool authorize(const ClientInfo& client, Action action, std::string_view topic) = 0;
};

// Why a connection ended, for callbacks and metrics.
enum class DisconnectReason : uint8_t {
  kClientDisconnect,  // DISCONNECT received
  kConnectionLost,    // socket closed or failed
  kKeepAliveTimeout,
  kProtocolViolation,  // malformed or illegal packet
  kTakenOver,          // same client id connected again
  kServerShutdown,
  kAdministrative,  // kicked by the platform
  kPacketTooLarge,
  kNotAuthorized,
};
const char* to_string(DisconnectReason reason);

// Notifications from the gateway. Default implementations do nothing.
class GatewayEvents {
 public:
  virtual ~GatewayEvents() = default;
  virtual void on_connected(const ClientInfo& client, bool session_present) {
    (void)client, (void)session_present;
  }
  virtual void on_disconnected(const ClientInfo& client, DisconnectReason reason) {
    (void)client, (void)reason;
  }
  // A message accepted from a client (after authorization), before routing.
  virtual void on_publish(const ClientInfo& client, const MessagePtr& message) {
    (void)client, (void)message;
  }
  // A message with tag != 0 was acknowledged by `client_id` (PUBACK for QoS 1,
  // PUBCOMP for QoS 2, or written to the socket for QoS 0).
  virtual void on_delivered(std::string_view client_id, uint64_t tag) {
    (void)client_id, (void)tag;
  }
  // A message with tag != 0 for `client_id` was dropped (expired, queue full,
  // too large for the client, session ended).
  virtual void on_dropped(std::string_view client_id, uint64_t tag) { (void)client_id, (void)tag; }
};

}  // namespace counterlink::gateway
