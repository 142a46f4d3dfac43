#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "counterlink/platform/announcement.h"
#include "counterlink/platform/crypto.h"
#include "counterlink/platform/scans.h"
#include "counterlink/platform/services.h"

#include "commands/json_text.h"

namespace counterlink::platform {

namespace {

using nlohmann::json;
using store::Code;
using store::Status;

constexpr size_t kMaxDisplayChars = 64;
constexpr size_t kMaxVoiceChars = 200;
constexpr int64_t kSweepMs = 250;

size_t utf8_chars(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) {
    if ((c & 0xC0) != 0x80) ++n;
  }
  return n;
}

bool valid_code(std::string_view code) {
  if (code.size() < 8 || code.size() > 64) return false;
  for (char c : code) {
    if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))) {
      return false;
    }
  }
  return true;
}

json scan_json(const store::Scan& s) {
  json d;
  d["scan_id"] = s.id;
  d["device_id"] = s.device_id;
  d["box_scan_id"] = s.box_scan_id;
  d["code"] = s.code;
  if (s.amount_fen >= 0) {
    auto a = amount_from_fen(s.amount_fen);
    if (a.ok()) d["amount"] = a.value.to_string();
  }
  d["state"] = s.state;
  if (!s.outcome.empty()) {
    d["outcome"] = s.outcome;
    d["display"] = s.display;
    d["voice"] = s.voice;
  }
  if (!s.result_command_id.empty()) d["result_command_id"] = s.result_command_id;
  d["deadline_ms"] = s.deadline_ms;
  return d;
}

}  // namespace

std::string standard_scan_text(std::string_view outcome, std::string_view locale) {
  const bool en = locale == "en";
  if (outcome == "success") return en ? "Payment successful" : "支付成功";
  if (outcome == "failed") return en ? "Payment failed" : "支付失败";
  return en ? "Result unknown, please check the order" : "结果未知，请核对订单";
}

struct ScanDesk::Impl : std::enable_shared_from_this<ScanDesk::Impl> {
  Impl(store::Store& s, CommandEngine& e, ScanOptions o, ClockMs c)
      : store(s), engine(e), options(o), clock(c ? std::move(c) : system_clock_ms) {}

  store::Store& store;
  CommandEngine& engine;
  const ScanOptions options;
  ClockMs clock;

  std::mutex mutex;
  std::condition_variable cv;
  std::deque<DeviceEvent> inbox;
  bool stopping = false;
  std::thread thread;

  void run() {
    for (;;) {
      std::deque<DeviceEvent> work;
      {
        std::unique_lock lock(mutex);
        cv.wait_for(lock, std::chrono::milliseconds(kSweepMs),
                    [&] { return stopping || !inbox.empty(); });
        if (stopping) return;
        work.swap(inbox);
      }
      for (const auto& e : work)
        record(e);
      sweep();
    }
  }

  std::string locale_of(const std::string& tenant_id, const std::string& device_id) {
    auto device = store.get_device(tenant_id, device_id);
    if (!device.ok()) return "zh-CN";
    auto product = store.get_product(tenant_id, device.value().product_id);
    if (!product.ok()) return "zh-CN";
    json caps = json::parse(product.value().capabilities_json, nullptr, false);
    if (caps.is_object() && caps.contains("locales") && caps["locales"].is_array() &&
        !caps["locales"].empty() && caps["locales"][0].is_string()) {
      return caps["locales"][0].get<std::string>();
    }
    return "zh-CN";
  }

  // A scan from a box: recorded once, announced once.
  void record(const DeviceEvent& e) {
    json j = json::parse(e.json, nullptr, false);
    if (!j.is_object()) return;
    std::string code = j.value("code", "");
    std::string box_scan_id = j.value("scan_id", "");
    if (!valid_code(code) || box_scan_id.size() > 64) {
      spdlog::debug("scans.rejected device={} reason=\"bad code or scan_id\"", e.device.device_id);
      return;
    }
    int64_t fen = -1;
    if (j.contains("amount") && j["amount"].is_string()) {
      auto a = parse_amount(j["amount"].get<std::string>());
      if (a.ok()) fen = a.value.fen();
    }
    const int64_t now = clock();
    store::Scan scan;
    scan.id = new_resource_id("sc_", now);
    scan.tenant_id = e.device.tenant_id;
    scan.device_id = e.device.device_id;
    scan.box_scan_id = box_scan_id;
    scan.code = code;
    scan.code_hash = hex(sha256(code));
    scan.amount_fen = fen;
    scan.created_ms = now;
    scan.deadline_ms = now + options.answer_timeout_ms;
    store::Scan existing;
    auto status = store.create_scan(scan, now - options.duplicate_window_ms, &existing);
    if (status.code == Code::kConflict) {
      spdlog::debug("scans.duplicate device={} scan={}", scan.device_id, existing.id);
      return;
    }
    if (!status.ok()) {
      spdlog::warn("scans.record_failed device={} error=\"{}\"", scan.device_id, status.message);
      return;
    }
    store::Event event;
    event.tenant_id = scan.tenant_id;
    event.type = "scan.received";
    event.subject_id = scan.id;
    event.device_id = scan.device_id;
    event.at_ms = now;
    event.data_json = json_text(scan_json(scan));
    auto seq = engine.append_event(std::move(event));
    if (!seq.ok()) {
      spdlog::warn("scans.event_failed scan={} error=\"{}\"", scan.id, seq.status().message);
    }
  }

  void sweep() {
    const int64_t now = clock();
    auto due = store.overdue_scans(now, 500);
    if (!due.ok()) return;
    for (const auto& s : due.value()) {
      std::string locale = locale_of(s.tenant_id, s.device_id);
      ScanAnswer a{"unknown", standard_scan_text("unknown", locale), ""};
      (void)finish(s, a, "timed_out", "timeout");
    }
  }

  // Moves a pending scan to `state` and sends the answer to the box.
  store::Result<store::Scan> finish(const store::Scan& pending, const ScanAnswer& a,
                                    const std::string& state, std::string_view source) {
    const int64_t now = clock();
    store::Scan done = pending;
    done.state = state;
    done.outcome = a.outcome;
    done.display = a.display;
    done.voice = a.voice.empty() ? a.display : a.voice;
    done.answered_ms = now;
    done.result_command_id = new_resource_id("cm_", now);
    store::Scan current;
    auto status = store.finish_scan(done, &current);
    if (status.code == Code::kConflict) {
      return Status{Code::kConflict, current.state == "timed_out" ? "timed_out" : "answered"};
    }
    if (!status.ok()) return status;

    store::Command c;
    c.id = done.result_command_id;
    c.tenant_id = done.tenant_id;
    c.device_id = done.device_id;
    c.type = command_type::kScanResult;
    c.dedup_key = "scan:" + done.id;
    json payload;
    payload["scan_id"] = done.id;
    payload["outcome"] = done.outcome;
    payload["display"] = done.display;
    payload["voice"] = done.voice;
    c.payload_json = json_text(payload);
    c.request_json = "{}";
    c.created_ms = now;
    c.updated_ms = now;
    c.expires_at_ms = now + options.result_expiry_ms;
    DeviceTarget target;
    target.device_id = done.device_id;
    target.tenant_id = done.tenant_id;
    target.product_type = "scanbox";
    auto submitted = engine.submit(c, target);
    if (!submitted.ok()) {
      spdlog::warn("scans.result_not_queued scan={} error=\"{}\"", done.id,
                   submitted.status().message);
    }
    store::Event event;
    event.tenant_id = done.tenant_id;
    event.type = state == "timed_out" ? "scan.timed_out" : "scan.answered";
    event.subject_id = done.id;
    event.device_id = done.device_id;
    event.at_ms = now;
    json data = scan_json(done);
    data["source"] = std::string(source);
    event.data_json = json_text(data);
    (void)engine.append_event(std::move(event));
    return done;
  }

  store::Result<store::Scan> answer(const std::string& tenant_id, const std::string& scan_id,
                                    ScanAnswer a, std::string_view source) {
    if (a.outcome != "success" && a.outcome != "failed" && a.outcome != "unknown") {
      return Status{Code::kInvalid, "outcome must be success, failed or unknown"};
    }
    if (utf8_chars(a.display) > kMaxDisplayChars) {
      return Status{Code::kInvalid, "display is longer than 64 characters"};
    }
    if (utf8_chars(a.voice) > kMaxVoiceChars) {
      return Status{Code::kInvalid, "voice is longer than 200 characters"};
    }
    auto row = store.get_scan(tenant_id, scan_id);
    if (!row.ok()) return row.status();
    const store::Scan& s = row.value();
    if (s.state != "pending") {
      return Status{Code::kConflict, s.state == "timed_out" ? "timed_out" : "answered"};
    }
    if (clock() >= s.deadline_ms) {
      // Past the deadline: the box gets "unknown" (the sweep may not have
      // run yet), not a late answer.
      std::string locale = locale_of(s.tenant_id, s.device_id);
      (void)finish(s, ScanAnswer{"unknown", standard_scan_text("unknown", locale), ""}, "timed_out",
                   "timeout");
      return Status{Code::kConflict, "timed_out"};
    }
    if (a.display.empty())
      a.display = standard_scan_text(a.outcome, locale_of(s.tenant_id, s.device_id));
    return finish(s, a, "answered", source);
  }
};

ScanDesk::ScanDesk(store::Store& store, CommandEngine& engine, ScanOptions options, ClockMs clock)
    : impl_(std::make_shared<Impl>(store, engine, options, std::move(clock))) {}

ScanDesk::~ScanDesk() {
  stop();
}

void ScanDesk::start() {
  impl_->thread = std::thread([impl = impl_.get()] { impl->run(); });
}

void ScanDesk::stop() {
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->stopping) return;
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
}

void ScanDesk::on_device_event(const DeviceEvent& event) {
  if (event.type != "scan") return;
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->stopping) return;
    if (impl_->inbox.size() >= static_cast<size_t>(impl_->options.max_queue)) {
      spdlog::warn("scans.dropped device={} reason=overloaded", event.device.device_id);
      return;  // the box repeats an unanswered scan
    }
    impl_->inbox.push_back(event);
  }
  impl_->cv.notify_one();
}

store::Result<store::Scan> ScanDesk::answer(const std::string& tenant_id,
                                            const std::string& scan_id, const ScanAnswer& a,
                                            std::string_view source) {
  return impl_->answer(tenant_id, scan_id, a, source);
}

void ScanDesk::on_webhook_response(const store::Event& event, std::string_view body) {
  if (event.type != "scan.received") return;
  json j = json::parse(body, nullptr, false);
  if (!j.is_object() || !j.contains("outcome") || !j["outcome"].is_string()) return;
  ScanAnswer a;
  a.outcome = j["outcome"].get<std::string>();
  if (j.contains("display") && j["display"].is_string())
    a.display = j["display"].get<std::string>();
  if (j.contains("voice") && j["voice"].is_string()) a.voice = j["voice"].get<std::string>();
  auto result = impl_->answer(event.tenant_id, event.subject_id, a, "webhook");
  if (!result.ok()) {
    spdlog::info("scans.webhook_answer_refused scan={} reason=\"{}\"", event.subject_id,
                 result.status().message);
  }
}

}  // namespace counterlink::platform
