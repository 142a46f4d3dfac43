// The device side of "Commands, acknowledgements and results (protocol v1)"
// in docs/device-protocol.md: command parsing, the uplink payloads, the
// window of completed command ids and the reassembly of multi-part print
// jobs. Pure: no I/O, no clock of its own; not thread-safe (one device's
// state belongs to the thread that runs the device).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace counterlink::sim {

inline constexpr int kProtocolVersion = 1;

// Result codes of the protocol's table.
namespace code {
inline constexpr std::string_view kExpired = "expired";
inline constexpr std::string_view kPaperOut = "paper_out";
inline constexpr std::string_view kCoverOpen = "cover_open";
inline constexpr std::string_view kOverheated = "overheated";
inline constexpr std::string_view kBusy = "busy";
inline constexpr std::string_view kInvalidCommand = "invalid_command";
inline constexpr std::string_view kUnsupportedType = "unsupported_type";
inline constexpr std::string_view kUnsupportedVersion = "unsupported_version";
inline constexpr std::string_view kDeviceError = "device_error";
}  // namespace code

// A failure the platform answers by sending the command again later
// (busy, paper_out, cover_open, overheated). The device must not remember
// such a command as done, or the resend would be answered from the window
// instead of being executed.
bool is_retryable(std::string_view failure_code);

// A command as received on devices/<id>/commands.
struct Command {
  std::string id;
  std::string type;           // "broadcast", "print", "scan_result", or other
  int64_t expires_at_ms = 0;  // 0: the command carries none
  nlohmann::json object;      // the whole payload, for type-specific fields

  // Field `name` of the type's own object ({"type":"print","print":{...}}),
  // or of the top level when the type object lacks it; null if neither.
  const nlohmann::json* field(std::string_view name) const;
};

// What parse_command() made of a payload. Exactly one of three shapes:
//   command set                      a well-formed v1 command;
//   failure set, id set              answer result failed/<failure> for id;
//   failure set, id empty            unanswerable (no id): log and drop.
struct ParsedCommand {
  std::optional<Command> command;
  std::string id;
  std::string failure;  // a code:: value
  std::string detail;   // for logs and the result's "detail"
};

ParsedCommand parse_command(std::string_view payload);

// The uplink payloads, as compact JSON text.
std::string ack_payload(std::string_view id);
std::string result_payload(std::string_view id, std::string_view result);
std::string failed_payload(std::string_view id, std::string_view failure_code,
                           std::string_view detail = {});
std::string printer_status_payload(std::string_view status);
std::string scan_payload(std::string_view scan_id, std::string_view code, std::string_view amount);

// The ids of the last `capacity` completed commands, with what the device
// answered, so that a repeat gets the same ack and result without acting.
class CompletedWindow {
 public:
  struct Entry {
    std::string id;
    bool acked = false;  // an ack was sent before the result
    std::string result;  // the result payload sent
  };

  explicit CompletedWindow(size_t capacity = 64) : capacity_(capacity) {}

  // The entry of `id`, or null if it is not among the last `capacity`.
  const Entry* find(std::string_view id) const;
  // Records a completed command; the oldest entry leaves when full.
  void remember(Entry entry);
  size_t size() const { return entries_.size(); }

 private:
  size_t capacity_;
  std::deque<Entry> entries_;  // oldest first; linear search is fine at 64
};

// Buffers the parts of multi-part print jobs until every part of an id is
// there. Parts may arrive in any order and across reconnects.
class PartAssembler {
 public:
  enum class Status : uint8_t {
    kIncomplete,  // stored; more parts to come
    kComplete,    // every part is here: take() them
    kRepeat,      // this part of this id was stored already
    kInvalid,     // part/parts out of range or parts differs from earlier parts
  };

  // At most `max_jobs` incomplete jobs are kept; a new job beyond that
  // evicts the job that started longest ago.
  explicit PartAssembler(size_t max_jobs = 16, uint32_t max_parts = 4096)
      : max_jobs_(max_jobs), max_parts_(max_parts) {}

  // part is 1-based; parts is the job's total.
  Status add(const std::string& id, uint32_t part, uint32_t parts, std::string data);
  // The parts of a complete job in part order, and forgets the job.
  std::vector<std::string> take(const std::string& id);
  // Forgets an incomplete job.
  void drop(const std::string& id);
  bool has(const std::string& id) const { return jobs_.count(id) != 0; }
  size_t jobs() const { return jobs_.size(); }

 private:
  struct Job {
    uint32_t parts = 0;
    uint64_t started = 0;                  // order of arrival, for eviction
    std::map<uint32_t, std::string> data;  // part -> base64 text
  };
  size_t max_jobs_;
  uint32_t max_parts_;
  uint64_t next_order_ = 0;
  std::map<std::string, Job, std::less<>> jobs_;
};

// Decodes a print job's base64 parts: the concatenated text if it decodes
// (a job split anywhere in its base64), else part by part (a job whose
// bytes were split and encoded per part, each with its own padding).
std::optional<std::string> decode_print_data(const std::vector<std::string>& parts);

}  // namespace counterlink::sim
