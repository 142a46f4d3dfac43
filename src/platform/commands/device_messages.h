// The device protocol's messages (docs/device-protocol.md, "Commands,
// acknowledgements and results"): commands encoded for the command topic,
// and the device's acks, results and events parsed. Pure functions; fuzzed.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "counterlink/store/store.h"

namespace counterlink::platform {

// The MQTT payloads that carry `command` to its device: one, or for a print
// job larger than `max_payload_bytes`, several parts ("part"/"parts") whose
// ESC/POS data concatenates to the job's. Empty (and `error` set) if the
// stored payload is unusable or one part cannot fit.
std::vector<std::string> encode_command(const store::Command& command, size_t max_payload_bytes,
                                        std::string& error);

struct DeviceReport {
  enum class Kind { kAck, kResult, kEvent };
  Kind kind = Kind::kAck;
  std::string id;                    // command id (acks, results)
  std::string result;                // played | printed | shown | failed (results)
  std::string code;                  // failure code (results)
  std::string detail;                // failure detail, at most 256 bytes (results)
  std::string type;                  // event type: scan | printer_status | ...
  std::string status;                // printer_status: ready | paper_out | cover_open | overheated
  bool unsupported_version = false;  // "v" was not 1 (the report is otherwise empty)
};

// `channel` is the last topic level: "acks", "results" or "events". nullopt
// (and `error`) for anything that is not a well-formed v1 report.
std::optional<DeviceReport> parse_report(std::string_view channel, std::string_view payload,
                                         std::string& error);

// Failure codes a device may report, and what they mean to the engine.
enum class FailureClass { kFinal, kExpired, kPrinterProblem, kBusy };
FailureClass classify_failure(std::string_view code);

}  // namespace counterlink::platform
