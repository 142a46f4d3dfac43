// Scan-box payments. A box publishes a scanned payment code; the desk records
// the scan (the same code from the same box within a window is one scan),
// announces `scan.received` (webhooks, event stream), and relays the
// business system's answer to the box as a `scan_result` command: from the
// webhook's own response, or later through the API. A scan not answered by
// its deadline gets "result unknown, check the order" — never a success.
//
// Threading: on_device_event() is called on gateway loop threads and only
// queues; the work runs on the desk's thread. answer() may block on the
// store (API worker threads).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "counterlink/platform/clock.h"
#include "counterlink/platform/commands.h"
#include "counterlink/store/store.h"

namespace counterlink::platform {

struct ScanOptions {
  int64_t answer_timeout_ms = 30'000;    // deadline after the scan
  int64_t duplicate_window_ms = 30'000;  // same code from the same box = same scan
  int64_t result_expiry_ms = 60'000;     // the box must show the answer by then
  int32_t max_queue = 10'000;            // scans waiting for the desk's thread
};

struct ScanAnswer {
  std::string outcome;  // success | failed | unknown
  std::string display;  // "" = the standard text for the outcome
  std::string voice;    // "" = as display
};

// The standard texts a box shows for an outcome, in "zh-CN" or "en".
std::string standard_scan_text(std::string_view outcome, std::string_view locale);

class ScanDesk {
 public:
  ScanDesk(store::Store& store, CommandEngine& engine, ScanOptions options, ClockMs clock = {});
  ~ScanDesk();
  ScanDesk(const ScanDesk&) = delete;
  ScanDesk& operator=(const ScanDesk&) = delete;

  void start();
  void stop();

  // The engine's device-event handler (set with set_device_event_handler).
  void on_device_event(const DeviceEvent& event);

  // Answers a pending scan. kNotFound; kInvalid (message says why: bad
  // outcome, text too long); kConflict with message "answered" or
  // "timed_out"; kUnavailable.
  store::Result<store::Scan> answer(const std::string& tenant_id, const std::string& scan_id,
                                    const ScanAnswer& answer, std::string_view source);

  // The body of a 2xx webhook response to a `scan.received` event: if it
  // holds {"outcome": ..., "display": ..., "voice": ...}, that answers the
  // scan. Anything else is ignored (the business answers through the API).
  void on_webhook_response(const store::Event& event, std::string_view body);

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace counterlink::platform
