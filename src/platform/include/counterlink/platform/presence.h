// Device presence: the gateway's connect/disconnect events of device clients
// become store::PresenceEvents (online flag, remote address, protocol
// version, node, disconnect reason), written in arrival order by one
// background thread.
//
// Ordering: the gateway reports the events of one client id from the one
// loop that owns it, and this recorder writes in FIFO order, so a device's
// connect is written before its disconnect.
//
// Back-pressure: the queue is bounded. When it is full, the oldest event
// that a later event of the same device supersedes is dropped (the device's
// last state survives; its history loses an entry); only if every queued
// event is some device's last state is the oldest one dropped. Both are
// counted in counterlink_presence_events_total{result}. While the store is
// unavailable the head event is retried with a back-off.
//
// Threading: on_connected/on_disconnected are called on gateway loops and
// only enqueue (never block on I/O). start()/stop() from one control thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "counterlink/gateway/hooks.h"
#include "counterlink/platform/device_access.h"

namespace counterlink::store {
class Store;
}

namespace counterlink::platform {

struct PresenceConfig {
  std::string node;                 // this gateway node's name (required)
  size_t queue_limit = 10000;       // events waiting to be written
  int64_t retry_ms = 1000;          // back-off while the store is unavailable
  int64_t flush_timeout_ms = 5000;  // stop() writes what is queued for at most this long
};

// Also a gateway::GatewayEvents: pass it (or a fan-out that calls it) as
// Hooks::events. Only clients with a device id are recorded.
class PresenceRecorder : public gateway::GatewayEvents {
 public:
  // Throws std::invalid_argument without a store or a node name.
  PresenceRecorder(std::shared_ptr<store::Store> store, PresenceConfig config,
                   ClockMs clock = system_clock_ms);
  ~PresenceRecorder() override;  // stop()
  PresenceRecorder(const PresenceRecorder&) = delete;
  PresenceRecorder& operator=(const PresenceRecorder&) = delete;

  // Starts the writer. Its first write is store::reset_presence(node): the
  // devices a crashed previous run left online at this node go offline
  // (retried until the store answers), before any new event.
  void start();
  // Writes what is queued (at most flush_timeout_ms), then stops the writer.
  // Events arriving afterwards are ignored. Idempotent.
  void stop();
  // Waits until the start-up reset and every queued event were written (or
  // dropped); false on timeout.
  bool flush(std::chrono::milliseconds timeout);
  // Events queued and not yet written.
  size_t pending() const;

  void on_connected(const gateway::ClientInfo& client, bool session_present) override;
  void on_disconnected(const gateway::ClientInfo& client,
                       gateway::DisconnectReason reason) override;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace counterlink::platform
