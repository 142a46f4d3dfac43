// The delivery engine: commands to devices (payment broadcasts, print jobs,
// scan results), durable before they are accepted, handed to the device's
// gateway session in order, at least once, and followed through the device's
// acknowledgements, results and events (docs/device-protocol.md).
//
//   API thread ──submit()──► CommitQueue ──group commit──► store
//                                 │ (after commit)
//                                 ▼
//                     per-device lane ──deliver(tag)──► gateway ──► device
//   device ──acks/results/events──► on_publish() ──► transitions ──► CommitQueue
//
// The store is the source of truth: every state change is a guarded
// transition written with its event in one transaction, and a lane is only
// a cache of what the store holds for a connected device. Whatever the fast
// path loses (a crash, a dropped message) is found again when the device
// reconnects (its pending commands are reloaded and sent again, the device
// dedupes by command id) or by the expiry sweep.
//
// Threading: every public method may be called from any thread. The gateway
// callbacks (GatewayEvents) only touch memory and queue writes; store reads
// for a reconnecting device run on the engine's own thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "counterlink/gateway/hooks.h"
#include "counterlink/platform/clock.h"
#include "counterlink/store/store.h"

namespace counterlink::gateway {
class Gateway;
}

namespace counterlink::platform {

// Command types and states as stored (store::Command::type / state).
namespace command_type {
inline constexpr const char* kBroadcast = "broadcast";
inline constexpr const char* kPrint = "print";
inline constexpr const char* kScanResult = "scan_result";
}  // namespace command_type

namespace command_state {
inline constexpr const char* kQueued = "queued";
inline constexpr const char* kSent = "sent";
inline constexpr const char* kDelivered = "delivered";
inline constexpr const char* kWaiting = "waiting";
inline constexpr const char* kPlayed = "played";
inline constexpr const char* kPrinted = "printed";
inline constexpr const char* kShown = "shown";
inline constexpr const char* kFailed = "failed";
inline constexpr const char* kExpired = "expired";
inline constexpr const char* kCancelled = "cancelled";
}  // namespace command_state

bool is_final_state(std::string_view state);
// "broadcast" -> "broadcast", "print" -> "print_job", "scan_result" -> "scan_result":
// the prefix of the command's event types (broadcast.played, print_job.failed).
std::string event_prefix(std::string_view command_type);

// Wakes whoever waits for new events (event streams, the webhook
// dispatcher). Event ids are the store's event seqs.
class EventBus {
 public:
  // Records that events up to `seq` exist and wakes the waiters.
  void published(int64_t seq);
  // Blocks until an event after `after_seq` was published, `timeout_ms`
  // passed, or stop() was called. True if something new may be there.
  bool wait(int64_t after_seq, int64_t timeout_ms);
  int64_t last_seq() const;
  void stop();

 private:
  struct State;
  std::shared_ptr<State> state_ = make_state();
  static std::shared_ptr<State> make_state();
};

struct CommandEngineOptions {
  // Commands that are not final, per device; more is refused (429
  // device_queue_full).
  int32_t max_queue_per_device = 500;
  // Commands handed to a device before its earlier ones finished. Print
  // jobs go one at a time whatever this says (paper out stops the queue).
  int32_t window_per_device = 32;
  // A device answering `busy` gets the command again after a backoff; after
  // this many attempts in total it fails with code `busy`.
  int32_t max_attempts = 8;
  int64_t retry_backoff_ms = 1000;  // doubled per attempt, at most 60 s
  // A command the device took (`sent`) is expired only this long after its
  // expiry, so a device that accepted it in time can still report.
  int64_t sent_grace_ms = 5000;
  // A command acknowledged (`delivered`) but never reported fails with code
  // `no_result` this long after its expiry.
  int64_t result_timeout_ms = 600'000;
  int64_t sweep_interval_ms = 500;
  // Largest MQTT payload for devices whose product does not say
  // (capabilities.max_payload_bytes).
  int32_t default_max_payload_bytes = 65536;
  // Group commit: writes per store transaction, at most.
  int32_t max_batch = 1024;
};

struct CommandEngineStats {
  uint64_t submitted = 0;
  uint64_t deduplicated = 0;
  uint64_t delivered_to_gateway = 0;
  uint64_t transitions = 0;
  uint64_t commit_batches = 0;
  uint64_t commit_writes = 0;
  uint64_t store_retries = 0;
  uint64_t device_messages_rejected = 0;  // unparsable acks/results/events
};

// What the engine needs to know about a device to deliver to it.
struct DeviceTarget {
  std::string device_id;
  std::string tenant_id;
  std::string product_type;       // speaker | printer | scanbox | generic
  int32_t max_payload_bytes = 0;  // 0 = default
};

// The result of submit().
struct Submitted {
  store::Command command;  // as stored (for a duplicate: the existing command)
  bool duplicate = false;  // the dedup key was taken: `command` is the first one
};

// A device event the engine does not handle itself (scans), passed on.
struct DeviceEvent {
  DeviceTarget device;
  std::string type;  // "scan", ...
  std::string json;  // the whole payload
  store::TimeMs at_ms = 0;
};

class CommandEngine {
 public:
  CommandEngine(store::Store& store, CommandEngineOptions options, ClockMs clock = {});
  ~CommandEngine();
  CommandEngine(const CommandEngine&) = delete;
  CommandEngine& operator=(const CommandEngine&) = delete;

  // The gateway to deliver through; set before start(). May stay null (an
  // API-only node): commands are stored and delivered by the node holding
  // the device's connection.
  void set_gateway(gateway::Gateway* gateway);
  // Called (on a gateway loop thread) for device events other than
  // printer_status, e.g. scans. Set before start().
  void set_device_event_handler(std::function<void(const DeviceEvent&)> handler);
  EventBus& events() { return bus_; }

  void start();
  // Flushes queued writes and stops the threads. Idempotent.
  void stop();

  // Stores a new command (state queued, event <prefix>.queued) and returns
  // once it is durable. A taken dedup key answers the existing command.
  // kInvalid when the device's queue is full (message says so);
  // kUnavailable when the store failed.
  store::Result<Submitted> submit(store::Command command, const DeviceTarget& target);

  // Cancels a command not handed to the device. kNotFound, or kConflict with
  // message "in_flight" / "finished".
  store::Result<store::Command> cancel(const std::string& tenant_id, const std::string& id);

  // Appends an event that is not a command transition (scans) and returns
  // its seq once durable.
  store::Result<int64_t> append_event(store::Event event);

  // The gateway's view (wire with a fan-out GatewayEvents in the app).
  std::shared_ptr<gateway::GatewayEvents> gateway_events();

  CommandEngineStats stats() const;

  struct Impl;  // the implementation's (engine.cc)

 private:
  std::shared_ptr<Impl> impl_;
  EventBus bus_;
};

}  // namespace counterlink::platform
