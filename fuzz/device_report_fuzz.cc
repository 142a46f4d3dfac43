// libFuzzer target for the device's reports (commands/device_messages.h):
// the payloads of acks, results and events come straight from devices.
//
// Checks, aborting on a violation: parsing never crashes; a parsed report
// has the kind of its channel; an ack/result id starts with "cm_" and is at
// most 64 bytes; a result is one of the four words; a failure code is
// [a-z0-9_]{1,32}; details are at most 256 bytes; a printer status is one of
// the four words.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "commands/device_messages.h"

namespace {

using counterlink::platform::DeviceReport;
using counterlink::platform::parse_report;

#define FUZZ_CHECK(condition, detail)                                   \
  do {                                                                  \
    if (!(condition)) {                                                 \
      std::fprintf(stderr, "device_report_fuzz: %s (%s)\n", #condition, \
                   std::string(detail).c_str());                        \
      std::abort();                                                     \
    }                                                                   \
  } while (0)

bool is_code(std::string_view s) {
  if (s.empty() || s.size() > 32) return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static constexpr std::string_view kChannels[] = {"acks", "results", "events", "other"};
  std::string_view channel = kChannels[data[0] % 4];
  std::string_view payload(reinterpret_cast<const char*>(data + 1), size - 1);
  std::string error;
  auto report = parse_report(channel, payload, error);
  if (!report) {
    FUZZ_CHECK(!error.empty(), channel);
    return 0;
  }
  if (report->unsupported_version) return 0;
  switch (report->kind) {
    case DeviceReport::Kind::kAck:
      FUZZ_CHECK(channel == "acks", channel);
      break;
    case DeviceReport::Kind::kResult:
      FUZZ_CHECK(channel == "results", channel);
      FUZZ_CHECK(report->result == "played" || report->result == "printed" ||
                     report->result == "shown" || report->result == "failed",
                 report->result);
      if (report->result == "failed") FUZZ_CHECK(is_code(report->code), report->code);
      FUZZ_CHECK(report->detail.size() <= 256, report->detail);
      break;
    case DeviceReport::Kind::kEvent:
      FUZZ_CHECK(channel == "events", channel);
      FUZZ_CHECK(is_code(report->type), report->type);
      if (report->type == "printer_status") {
        FUZZ_CHECK(report->status == "ready" || report->status == "paper_out" ||
                       report->status == "cover_open" || report->status == "overheated",
                   report->status);
      }
      break;
  }
  if (report->kind != DeviceReport::Kind::kEvent) {
    FUZZ_CHECK(report->id.rfind("cm_", 0) == 0 && report->id.size() <= 64, report->id);
  }
  return 0;
}
