// What one simulated device does with its commands, as firmware would
// (docs/device-protocol.md, "Commands, acknowledgements and results"):
// validate, dedupe by command id, refuse late commands, execute in order
// (announce, print, show), answer with an ack and a result, and report
// events of its own (scans, printer status).
//
// Pure state machine: the caller passes the time in and sends what comes
// out, so tests drive it without a network or a clock. Not thread-safe: one
// owner (the fleet's thread).
#pragma once

#include <cstdint>
#include <deque>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "counterlink/sim/sim.h"

#include "protocol.h"

namespace counterlink::sim {

inline constexpr int64_t kNoDeadline = std::numeric_limits<int64_t>::max();

struct BehaviorOptions {
  int64_t play_ms = 0;
  int64_t print_ms = 0;
  uint32_t paper_out_every = 0;  // 0 = never
  int64_t paper_refill_ms = 3000;
  double scan_rate_per_min = 0;
  uint32_t max_pending = 64;         // accepted but not started commands before "busy"
  std::string scan_id_prefix = "s";  // scan ids are <prefix>-<sequence>
  uint64_t seed = 1;
};

// Uplink channel below devices/<id>/.
enum class Channel : uint8_t { kAcks, kResults, kEvents };
const char* to_string(Channel channel);  // "acks", "results", "events"

struct Outgoing {
  Channel channel = Channel::kResults;
  std::string payload;
};

struct PrintedReceipt {
  std::string command_id;
  std::string escpos;  // the decoded bytes
  int copies = 1;
};

struct BehaviorCounters {
  uint64_t commands = 0;    // command messages received (each part counts)
  uint64_t duplicates = 0;  // repeats answered without acting
  uint64_t played = 0;
  uint64_t printed = 0;
  uint64_t shown = 0;
  uint64_t scans = 0;
  uint64_t paper_out = 0;
  uint64_t expired = 0;
  uint64_t failed = 0;   // failed results other than expired and paper_out
  uint64_t dropped = 0;  // unanswerable payloads (no id)
};

// What a call produced: messages to publish in order, structured log lines
// ("sim.play device=... text=..."), printed receipts, and counters to add.
struct Effects {
  std::vector<Outgoing> messages;
  std::vector<std::string> logs;
  std::vector<PrintedReceipt> receipts;
  BehaviorCounters counters;
};

class DeviceBehavior {
 public:
  DeviceBehavior(std::string device_id, DeviceKind kind, BehaviorOptions options);

  // A payload arrived on devices/<id>/commands at `now_ms` (Unix ms).
  void on_command(std::string_view payload, int64_t now_ms, Effects& fx);
  // Lets time pass: finishes what is due, starts the next queued command,
  // refills paper, scans (only when `connected`).
  void tick(int64_t now_ms, bool connected, Effects& fx);
  // When tick() has something to do next (Unix ms), or kNoDeadline.
  int64_t next_deadline() const;

  bool paper_out() const { return paper_refill_at_ms_ != kNoDeadline; }
  size_t pending() const { return queue_.size() + (running_ ? 1 : 0); }

 private:
  struct Accepted {
    Command command;
    std::string escpos;  // printers: the decoded job
    int copies = 1;
  };
  struct Running {
    Accepted job;
    int64_t done_at_ms = 0;
  };

  // Checks type-specific fields; empty when the command can run, else the
  // failure code, with `detail`.
  std::string validate(const Command& command, std::string& detail) const;
  void answer_repeat(const std::string& id, Effects& fx);
  // Sends result failed/<code> and remembers the id unless retryable.
  void fail(const std::string& id, std::string_view failure, std::string_view detail, bool acked,
            Effects& fx);
  void complete(const std::string& id, std::string_view result, Effects& fx);
  void start_next(int64_t now_ms, Effects& fx);
  void finish(Effects& fx);
  void emit_scan(Effects& fx);
  void schedule_scan(int64_t now_ms);
  bool in_progress(const std::string& id) const;

  std::string device_id_;
  DeviceKind kind_;
  BehaviorOptions options_;
  std::mt19937_64 rng_;
  CompletedWindow completed_{64};
  PartAssembler parts_;
  std::deque<Accepted> queue_;
  std::optional<Running> running_;
  uint64_t print_jobs_ = 0;  // jobs started, for paper_out_every
  int64_t paper_refill_at_ms_ = kNoDeadline;
  int64_t next_scan_at_ms_ = kNoDeadline;
  uint64_t scan_sequence_ = 0;
};

}  // namespace counterlink::sim
