// The device gateway: an MQTT 3.1/3.1.1/5.0 broker with one event loop per
// core. Start it, stop it, and reach one client directly with deliver().
//
// Threading: construct, start() and stop() from one control thread. deliver(),
// disconnect_client() and the statistics may be called from any thread. Hooks
// are called on the loop threads (see hooks.h).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "counterlink/gateway/config.h"
#include "counterlink/gateway/hooks.h"
#include "counterlink/gateway/message.h"

namespace counterlink::gateway {

class GatewayImpl;

enum class DeliverStatus : uint8_t {
  kSent,       // handed to the session: written now or queued in its window
  kQueued,     // the session exists but is offline: queued for its return
  kOffline,    // the session is offline and the message is QoS 0: not kept
  kNoSession,  // no session for that client id
  kQueueFull,  // the session's queue is full (policy kDropNewest)
  kTooLarge,   // larger than the client's maximum packet size
};
const char* to_string(DeliverStatus status);

struct ListenerAddress {
  std::string name;
  ListenerKind kind;
  uint16_t port;  // the bound port (useful with port 0)
};

struct Hooks {
  // Null members fall back to the static configuration (users + ACL).
  std::shared_ptr<Authenticator> authenticator;
  std::shared_ptr<Authorizer> authorizer;
  std::shared_ptr<GatewayEvents> events;
};

// The static users and ACL of `config` (what a Gateway without hooks uses),
// e.g. as the fallback for clients that are not devices. `config` must
// outlive the returned objects.
std::shared_ptr<Authenticator> make_static_authenticator(const GatewayConfig& config);
std::shared_ptr<Authorizer> make_static_authorizer(const GatewayConfig& config);

class Gateway {
 public:
  // Throws std::runtime_error if a listener cannot be created (port in use,
  // bad certificate) with a message that says what to change.
  Gateway(GatewayConfig config, Hooks hooks = {});
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Binds the listeners and starts the loop threads. Throws on bind failure.
  void start();
  // Stops accepting, disconnects every client (5.0: DISCONNECT 0x8B), joins
  // the loop threads. Idempotent.
  void stop();

  std::vector<ListenerAddress> listeners() const;

  // Routes `message` to exactly the session of `client_id`, without the
  // topic tree, in O(1). `done` (optional) is called once on a loop thread.
  void deliver(const std::string& client_id, MessagePtr message,
               std::function<void(DeliverStatus)> done = {});

  // Publishes as if a client had: through the topic tree and retained store.
  void publish(MessagePtr message);

  // Closes the client's connection (5.0: DISCONNECT with `reason`), e.g. when
  // the platform disables a device. No-op if not connected.
  void disconnect_client(const std::string& client_id,
                         mqtt::ReasonCode reason = mqtt::ReasonCode::kAdministrativeAction);

  // Current number of open network connections.
  uint64_t connection_count() const;

 private:
  std::unique_ptr<GatewayImpl> impl_;
};

}  // namespace counterlink::gateway
