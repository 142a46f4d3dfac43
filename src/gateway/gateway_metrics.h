// The gateway's metrics, registered once in the process registry. Every
// limit has a counter of the times it was hit.
#pragma once

#include <array>

#include "counterlink/gateway/hooks.h"
#include "counterlink/obs/metrics.h"

namespace counterlink::gateway {

enum class DropReason : uint8_t {
  kQueueFull,     // max_queued_messages reached for the session
  kExpired,       // message expiry interval passed before delivery
  kTooLarge,      // larger than the client's Maximum Packet Size
  kSlowConsumer,  // QoS 0 while the client's socket buffer is over the limit
  kSessionEnded,  // queued for a session that expired or was cleaned
  kCount
};
const char* to_string(DropReason reason);

enum class Limit : uint8_t {
  kMaxConnections,
  kMaxPacketSize,
  kReceiveMaximum,  // a client exceeded our Receive Maximum
  kMaxInflight,     // a message waited because the send window was full
  kMaxQueued,
  kConnectTimeout,
  kTopicAliasMaximum,
  kCount
};
const char* to_string(Limit limit);

struct GatewayMetrics {
  GatewayMetrics();

  obs::Gauge& connections;
  obs::Gauge& sessions;
  obs::Gauge& subscriptions;
  obs::Gauge& retained_messages;
  obs::Counter& connects_accepted;
  obs::Counter& connects_refused;
  obs::Counter& auth_failures;
  obs::Counter& authz_denied_publish;
  obs::Counter& authz_denied_subscribe;
  obs::Counter& malformed_packets;
  obs::Counter& protocol_errors;
  obs::Counter& takeovers;
  obs::Counter& wills_published;
  std::array<obs::Counter*, 3> received;  // by QoS
  std::array<obs::Counter*, 3> sent;      // by QoS
  std::array<obs::Counter*, static_cast<size_t>(DropReason::kCount)> dropped;
  std::array<obs::Counter*, static_cast<size_t>(Limit::kCount)> limits;
  std::array<obs::Counter*, 9> disconnects;  // by DisconnectReason

  void drop(DropReason r) { dropped[static_cast<size_t>(r)]->inc(); }
  void limit(Limit l) { limits[static_cast<size_t>(l)]->inc(); }
  void disconnect(DisconnectReason r) { disconnects[static_cast<size_t>(r)]->inc(); }
};

}  // namespace counterlink::gateway
