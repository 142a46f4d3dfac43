#include "device_behavior.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <utility>

#include "counterlink/obs/log.h"

namespace counterlink::sim {
namespace {

using nlohmann::json;

// The command type each kind of device executes.
std::string_view command_type_for(DeviceKind kind) {
  switch (kind) {
    case DeviceKind::kSpeaker:
      return "broadcast";
    case DeviceKind::kPrinter:
      return "print";
    case DeviceKind::kScanBox:
      return "scan_result";
  }
  return "";
}

// ` key="value"` with the value escaped as in a JSON string, so log lines
// stay one line and parse back.
std::string quoted(std::string_view key, std::string_view value) {
  return " " + std::string(key) + "=\"" + obs::json_escape(std::string(value)) + "\"";
}

// quoted(), or nothing when the value is empty.
std::string quoted_if_set(std::string_view key, std::string_view value) {
  return value.empty() ? std::string() : quoted(key, value);
}

std::string plain(std::string_view key, std::string_view value) {
  return " " + std::string(key) + "=" + std::string(value);
}

std::string string_field(const Command& command, std::string_view name) {
  const json* value = command.field(name);
  return value != nullptr && value->is_string() ? value->get<std::string>() : std::string();
}

bool optional_string(const Command& command, std::string_view name) {
  const json* value = command.field(name);
  return value == nullptr || value->is_string();
}

// An optional positive integer field within [1, max]; nullopt when present
// but out of range or not an integer, `fallback` when absent.
std::optional<int64_t> bounded_integer(const Command& command, std::string_view name,
                                       int64_t fallback, int64_t max) {
  const json* value = command.field(name);
  if (value == nullptr) return fallback;
  if (!value->is_number_integer()) return std::nullopt;
  const int64_t n = value->get<int64_t>();
  if (n < 1 || n > max) return std::nullopt;
  return n;
}

constexpr int64_t kMaxCopies = 99;
constexpr int64_t kMaxParts = 4096;

}  // namespace

const char* to_string(Channel channel) {
  switch (channel) {
    case Channel::kAcks:
      return "acks";
    case Channel::kResults:
      return "results";
    case Channel::kEvents:
      return "events";
  }
  return "results";
}

DeviceBehavior::DeviceBehavior(std::string device_id, DeviceKind kind, BehaviorOptions options)
    : device_id_(std::move(device_id)),
      kind_(kind),
      options_(std::move(options)),
      rng_(options_.seed),
      parts_(16, static_cast<uint32_t>(kMaxParts)) {}

void DeviceBehavior::on_command(std::string_view payload, int64_t now_ms, Effects& fx) {
  ++fx.counters.commands;
  ParsedCommand parsed = parse_command(payload);
  if (!parsed.failure.empty() && parsed.id.empty()) {
    ++fx.counters.dropped;
    fx.logs.push_back("sim.command_dropped" + plain("device", device_id_) +
                      quoted("reason", parsed.detail));
    return;
  }
  const std::string id = parsed.id;
  if (completed_.find(id) != nullptr) {
    answer_repeat(id, fx);
    return;
  }
  if (!parsed.failure.empty()) {
    fail(id, parsed.failure, parsed.detail, /*acked=*/false, fx);
    return;
  }
  Command& command = *parsed.command;
  if (in_progress(id)) {
    // Accepted already and not finished: say again that we have it.
    ++fx.counters.duplicates;
    fx.messages.push_back({Channel::kAcks, ack_payload(id)});
    fx.logs.push_back("sim.duplicate" + plain("device", device_id_) + plain("command", id) +
                      plain("state", "in_progress"));
    return;
  }
  if (command.type != command_type_for(kind_)) {
    parts_.drop(id);
    fail(id, code::kUnsupportedType,
         std::string("a ") + to_string(kind_) + " does not execute \"" + command.type + "\"", false,
         fx);
    return;
  }
  std::string detail;
  const std::string invalid = validate(command, detail);
  if (!invalid.empty()) {
    parts_.drop(id);
    fail(id, invalid, detail, false, fx);
    return;
  }

  Accepted job;
  if (kind_ == DeviceKind::kPrinter) {
    const auto parts = bounded_integer(command, "parts", 1, kMaxParts);
    const auto part = bounded_integer(command, "part", 1, kMaxParts);
    std::vector<std::string> data;
    if (*parts > 1 || command.field("part") != nullptr) {
      switch (parts_.add(id, static_cast<uint32_t>(*part), static_cast<uint32_t>(*parts),
                         string_field(command, "data"))) {
        case PartAssembler::Status::kInvalid:
          parts_.drop(id);
          fail(id, code::kInvalidCommand,
               "part " + std::to_string(*part) + "/" + std::to_string(*parts) +
                   " does not fit the parts received before for this id",
               false, fx);
          return;
        case PartAssembler::Status::kRepeat:
          ++fx.counters.duplicates;
          fx.logs.push_back("sim.duplicate" + plain("device", device_id_) + plain("command", id) +
                            plain("part", std::to_string(*part)));
          return;
        case PartAssembler::Status::kIncomplete:
          return;  // the ack comes when the job is whole
        case PartAssembler::Status::kComplete:
          data = parts_.take(id);
          break;
      }
    } else {
      data.push_back(string_field(command, "data"));
    }
    auto escpos = decode_print_data(data);
    if (!escpos) {
      fail(id, code::kInvalidCommand, "\"data\" is not base64", false, fx);
      return;
    }
    job.escpos = std::move(*escpos);
    job.copies = static_cast<int>(*bounded_integer(command, "copies", 1, kMaxCopies));
  }

  if (command.expires_at_ms != 0 && now_ms > command.expires_at_ms) {
    ++fx.counters.expired;
    fx.logs.push_back("sim.expired" + plain("device", device_id_) + plain("command", id) +
                      plain("late_ms", std::to_string(now_ms - command.expires_at_ms)));
    fail(id, code::kExpired, {}, false, fx);
    return;
  }
  if (kind_ == DeviceKind::kPrinter && paper_out()) {
    fail(id, code::kPaperOut, {}, false, fx);
    return;
  }
  if (pending() >= options_.max_pending) {
    fail(id, code::kBusy, std::to_string(pending()) + " commands are waiting", false, fx);
    return;
  }
  fx.messages.push_back({Channel::kAcks, ack_payload(id)});
  job.command = std::move(command);
  queue_.push_back(std::move(job));
  start_next(now_ms, fx);
}

std::string DeviceBehavior::validate(const Command& command, std::string& detail) const {
  switch (kind_) {
    case DeviceKind::kSpeaker: {
      const json* text = command.field("text");
      if (text == nullptr || !text->is_string()) {
        detail = "a broadcast needs a string \"text\"";
        return std::string(code::kInvalidCommand);
      }
      for (const char* name : {"amount", "channel", "locale", "order_id"}) {
        if (!optional_string(command, name)) {
          detail = std::string("\"") + name + "\" must be a string";
          return std::string(code::kInvalidCommand);
        }
      }
      return {};
    }
    case DeviceKind::kPrinter: {
      const json* data = command.field("data");
      if (data == nullptr || !data->is_string()) {
        detail = "a print job needs a string \"data\" (base64 ESC/POS)";
        return std::string(code::kInvalidCommand);
      }
      const std::string encoding = string_field(command, "encoding");
      if (!optional_string(command, "encoding") || (!encoding.empty() && encoding != "escpos")) {
        detail = "this printer prints \"escpos\" only";
        return std::string(code::kInvalidCommand);
      }
      if (!bounded_integer(command, "copies", 1, kMaxCopies)) {
        detail = "\"copies\" must be an integer from 1 to " + std::to_string(kMaxCopies);
        return std::string(code::kInvalidCommand);
      }
      const auto parts = bounded_integer(command, "parts", 1, kMaxParts);
      const auto part = bounded_integer(command, "part", 1, kMaxParts);
      if (!parts || !part || *part > *parts) {
        detail = "\"part\" and \"parts\" must be integers with 1 <= part <= parts <= " +
                 std::to_string(kMaxParts);
        return std::string(code::kInvalidCommand);
      }
      return {};
    }
    case DeviceKind::kScanBox: {
      const std::string outcome = string_field(command, "outcome");
      if (string_field(command, "scan_id").empty()) {
        detail = "a scan_result needs a string \"scan_id\"";
        return std::string(code::kInvalidCommand);
      }
      if (outcome != "success" && outcome != "failed" && outcome != "unknown") {
        detail = "\"outcome\" must be success, failed or unknown";
        return std::string(code::kInvalidCommand);
      }
      if (!optional_string(command, "display") || !optional_string(command, "voice")) {
        detail = "\"display\" and \"voice\" must be strings";
        return std::string(code::kInvalidCommand);
      }
      return {};
    }
  }
  return {};
}

bool DeviceBehavior::in_progress(const std::string& id) const {
  if (running_ && running_->job.command.id == id) return true;
  return std::any_of(queue_.begin(), queue_.end(),
                     [&](const Accepted& job) { return job.command.id == id; });
}

void DeviceBehavior::answer_repeat(const std::string& id, Effects& fx) {
  const CompletedWindow::Entry* entry = completed_.find(id);
  ++fx.counters.duplicates;
  if (entry->acked) fx.messages.push_back({Channel::kAcks, ack_payload(id)});
  fx.messages.push_back({Channel::kResults, entry->result});
  fx.logs.push_back("sim.duplicate" + plain("device", device_id_) + plain("command", id) +
                    plain("state", "completed"));
}

void DeviceBehavior::fail(const std::string& id, std::string_view failure, std::string_view detail,
                          bool acked, Effects& fx) {
  if (failure == code::kPaperOut) {
    ++fx.counters.paper_out;
  } else if (failure != code::kExpired) {
    ++fx.counters.failed;  // expired is counted where it is detected
  }
  std::string payload = failed_payload(id, failure, detail);
  fx.messages.push_back({Channel::kResults, payload});
  std::string line =
      "sim.failed" + plain("device", device_id_) + plain("command", id) + plain("code", failure);
  if (!detail.empty()) line += quoted("detail", detail);
  fx.logs.push_back(std::move(line));
  // A retryable failure is not done: the platform sends the command again
  // and the device must then run it, not replay this answer.
  if (!is_retryable(failure)) completed_.remember({id, acked, std::move(payload)});
}

void DeviceBehavior::complete(const std::string& id, std::string_view result, Effects& fx) {
  std::string payload = result_payload(id, result);
  fx.messages.push_back({Channel::kResults, payload});
  completed_.remember({id, true, std::move(payload)});
}

void DeviceBehavior::start_next(int64_t now_ms, Effects& fx) {
  while (!running_ && !queue_.empty()) {
    Accepted job = std::move(queue_.front());
    queue_.pop_front();
    const Command& command = job.command;
    if (command.expires_at_ms != 0 && now_ms > command.expires_at_ms) {
      // Waited in the queue past its time: a payment is never announced late.
      ++fx.counters.expired;
      fx.logs.push_back("sim.expired" + plain("device", device_id_) + plain("command", command.id) +
                        plain("late_ms", std::to_string(now_ms - command.expires_at_ms)));
      fail(command.id, code::kExpired, {}, /*acked=*/true, fx);
      continue;
    }
    int64_t duration_ms = 0;
    switch (kind_) {
      case DeviceKind::kSpeaker:
        fx.logs.push_back("sim.play" + plain("device", device_id_) + plain("command", command.id) +
                          quoted_if_set("amount", string_field(command, "amount")) +
                          quoted_if_set("channel", string_field(command, "channel")) +
                          quoted_if_set("locale", string_field(command, "locale")) +
                          quoted_if_set("order_id", string_field(command, "order_id")) +
                          quoted("text", string_field(command, "text")));
        duration_ms = options_.play_ms;
        break;
      case DeviceKind::kPrinter:
        if (paper_out()) {
          fail(command.id, code::kPaperOut, {}, true, fx);
          continue;
        }
        ++print_jobs_;
        if (options_.paper_out_every > 0 && print_jobs_ % options_.paper_out_every == 0) {
          paper_refill_at_ms_ = now_ms + std::max<int64_t>(options_.paper_refill_ms, 0);
          fx.messages.push_back({Channel::kEvents, printer_status_payload("paper_out")});
          fx.logs.push_back("sim.printer_status" + plain("device", device_id_) +
                            plain("status", "paper_out") + plain("command", command.id));
          fail(command.id, code::kPaperOut, {}, true, fx);
          continue;
        }
        fx.logs.push_back("sim.print" + plain("device", device_id_) + plain("command", command.id) +
                          plain("bytes", std::to_string(job.escpos.size())) +
                          plain("copies", std::to_string(job.copies)));
        duration_ms = options_.print_ms;
        break;
      case DeviceKind::kScanBox: {
        const std::string outcome = string_field(command, "outcome");
        fx.logs.push_back("sim.show" + plain("device", device_id_) + plain("command", command.id) +
                          quoted("scan_id", string_field(command, "scan_id")) +
                          plain("outcome", outcome) +
                          quoted_if_set("display", string_field(command, "display")) +
                          quoted_if_set("voice", string_field(command, "voice")));
        break;
      }
    }
    running_ = Running{std::move(job), now_ms + std::max<int64_t>(duration_ms, 0)};
    if (running_->done_at_ms <= now_ms) finish(fx);
  }
}

void DeviceBehavior::finish(Effects& fx) {
  Accepted job = std::move(running_->job);
  running_.reset();
  switch (kind_) {
    case DeviceKind::kSpeaker:
      ++fx.counters.played;
      complete(job.command.id, "played", fx);
      break;
    case DeviceKind::kPrinter:
      ++fx.counters.printed;
      fx.receipts.push_back({job.command.id, std::move(job.escpos), job.copies});
      complete(job.command.id, "printed", fx);
      break;
    case DeviceKind::kScanBox:
      ++fx.counters.shown;
      complete(job.command.id, "shown", fx);
      break;
  }
}

void DeviceBehavior::tick(int64_t now_ms, bool connected, Effects& fx) {
  if (paper_refill_at_ms_ != kNoDeadline && now_ms >= paper_refill_at_ms_) {
    paper_refill_at_ms_ = kNoDeadline;
    fx.messages.push_back({Channel::kEvents, printer_status_payload("ready")});
    fx.logs.push_back("sim.printer_status" + plain("device", device_id_) +
                      plain("status", "ready"));
  }
  while (running_ && now_ms >= running_->done_at_ms) {
    finish(fx);
    start_next(now_ms, fx);
  }
  start_next(now_ms, fx);
  if (kind_ == DeviceKind::kScanBox && options_.scan_rate_per_min > 0) {
    if (next_scan_at_ms_ == kNoDeadline) {
      schedule_scan(now_ms);
    } else if (now_ms >= next_scan_at_ms_) {
      if (connected) emit_scan(fx);
      schedule_scan(now_ms);
    }
  }
}

void DeviceBehavior::schedule_scan(int64_t now_ms) {
  // Exponential gaps: scans at a steady average rate but at random moments,
  // as customers arrive.
  std::exponential_distribution<double> gap(options_.scan_rate_per_min / 60'000.0);
  next_scan_at_ms_ = now_ms + 1 + static_cast<int64_t>(std::min(gap(rng_), 86'400'000.0));
}

void DeviceBehavior::emit_scan(Effects& fx) {
  std::uniform_int_distribution<int> digit(0, 9);
  std::string payment_code = "13";
  while (payment_code.size() < 18)
    payment_code += static_cast<char>('0' + digit(rng_));
  std::uniform_int_distribution<int> cents_dist(100, 20000);
  const int cents = cents_dist(rng_);
  char amount[32];
  std::snprintf(amount, sizeof amount, "%d.%02d", cents / 100, cents % 100);
  char sequence[32];
  std::snprintf(sequence, sizeof sequence, "%06llu",
                static_cast<unsigned long long>(++scan_sequence_));
  const std::string scan_id = options_.scan_id_prefix + "-" + sequence;
  ++fx.counters.scans;
  fx.messages.push_back({Channel::kEvents, scan_payload(scan_id, payment_code, amount)});
  fx.logs.push_back("sim.scan" + plain("device", device_id_) + plain("scan_id", scan_id) +
                    plain("code", payment_code) + plain("amount", amount));
}

int64_t DeviceBehavior::next_deadline() const {
  int64_t deadline = kNoDeadline;
  if (running_) deadline = std::min(deadline, running_->done_at_ms);
  deadline = std::min(deadline, paper_refill_at_ms_);
  if (kind_ == DeviceKind::kScanBox && options_.scan_rate_per_min > 0) {
    deadline = std::min(deadline, next_scan_at_ms_);
  }
  return deadline;
}

}  // namespace counterlink::sim
