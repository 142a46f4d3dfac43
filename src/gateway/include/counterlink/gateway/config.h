// Gateway configuration: plain values, validated by the loader in src/cli
// before the gateway sees them. Defaults are the development defaults.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace counterlink::gateway {

struct TlsConfig {
  std::string cert_file;        // PEM certificate chain
  std::string key_file;         // PEM private key
  std::string ca_file;          // PEM CA bundle for client certificates; empty = none
  bool verify_client = false;   // request a client certificate and verify it
  bool require_client = false;  // refuse clients without a valid certificate
};

enum class ListenerKind : uint8_t { kTcp, kTls, kWebSocket, kWebSocketTls };

struct ListenerConfig {
  std::string name;  // "tcp", "tls", "ws", "wss" or any label
  ListenerKind kind = ListenerKind::kTcp;
  std::string bind = "0.0.0.0";   // IPv4 or IPv6 literal
  uint16_t port = 1883;           // 0 = pick a free port (tests)
  TlsConfig tls;                  // kTls and kWebSocketTls only
  std::string ws_path = "/mqtt";  // kWebSocket and kWebSocketTls only
};

enum class AclEffect : uint8_t { kAllow, kDeny };
enum class AclAction : uint8_t { kPublish = 1, kSubscribe = 2, kAll = 3 };

// One static access rule. Rules are evaluated in order; the first rule whose
// subject, action and topic match decides. `topic` is a topic filter in which
// "%u" stands for the username and "%c" for the client id.
struct AclRule {
  AclEffect effect = AclEffect::kAllow;
  AclAction action = AclAction::kAll;
  // Exactly one subject: a username, anonymous clients, or everybody.
  std::string username;    // non-empty: this user only
  bool anonymous = false;  // true: clients without a username
  std::string topic;       // topic filter, e.g. "devices/%c/#"
};

struct StaticUser {
  std::string username;
  std::string password;         // plain text (development) or empty
  std::string password_sha256;  // lower-case hex SHA-256 of the password
};

// What happens to a new QoS 1/2 message for a session whose queue is full.
enum class QueueOverflow : uint8_t { kDropOldest, kDropNewest };

struct GatewayConfig {
  std::vector<ListenerConfig> listeners;
  unsigned workers = 0;  // event loops; 0 = one per core

  // Limits. Each has a metric counting the times it was hit.
  uint32_t max_connections = 100000;
  uint32_t max_packet_size = 1024 * 1024;  // bytes, both directions
  uint16_t receive_maximum = 128;          // QoS 1/2 the client may have unacked toward us
  uint16_t max_inflight = 128;             // QoS 1/2 we send before waiting for acks
  uint32_t max_queued_messages = 1000;     // per session, beyond the in-flight window
  QueueOverflow queue_overflow = QueueOverflow::kDropOldest;
  bool queue_qos0 = false;              // queue QoS 0 for offline sessions too
  uint16_t topic_alias_maximum = 64;    // inbound aliases per connection; 0 = none
  uint32_t connect_timeout_ms = 10000;  // socket must send CONNECT within this
  uint16_t max_keepalive = 0;           // seconds; 0 = accept what the client asks
  uint32_t session_expiry_max = 7200;   // seconds; also 3.1.1 persistent sessions
  uint32_t message_expiry_max = 0;      // seconds; 0 = no cap
  uint16_t max_client_id_length = 256;

  // Features announced in CONNACK (5.0) and enforced for every version.
  uint8_t maximum_qos = 2;
  bool retain_available = true;
  bool wildcard_subscriptions = true;
  bool shared_subscriptions = true;
  bool subscription_identifiers = true;

  // Access without the platform: static users and rules.
  bool allow_anonymous = false;
  std::vector<StaticUser> users;
  AclEffect acl_default = AclEffect::kAllow;
  std::vector<AclRule> acl;
};

}  // namespace counterlink::gateway
