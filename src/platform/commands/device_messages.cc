#include "commands/device_messages.h"

#include <nlohmann/json.hpp>

#include "counterlink/platform/crypto.h"
#include "counterlink/platform/receipt.h"

namespace counterlink::platform {

namespace {

using nlohmann::json;

// Bytes of a print part's JSON around its base64 data (envelope, ids,
// field names), with room to spare.
constexpr size_t kPartOverhead = 320;

bool is_code(std::string_view s) {
  if (s.empty() || s.size() > 32) return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

json envelope(const store::Command& command) {
  json j;
  j["v"] = 1;
  j["id"] = command.id;
  j["type"] = command.type;
  if (command.expires_at_ms > 0) j["expires_at_ms"] = command.expires_at_ms;
  return j;
}

}  // namespace

std::vector<std::string> encode_command(const store::Command& command, size_t max_payload_bytes,
                                        std::string& error) {
  json body = json::parse(command.payload_json, nullptr, /*allow_exceptions=*/false);
  if (!body.is_object()) {
    error = "stored payload is not a JSON object";
    return {};
  }
  json message = envelope(command);
  if (command.type != "print") {
    message[command.type] = std::move(body);
    std::string text = message.dump(-1, ' ', false, json::error_handler_t::replace);
    if (text.size() > max_payload_bytes) {
      error = "command is larger than the device's maximum payload";
      return {};
    }
    return {std::move(text)};
  }
  // Print jobs: the stored payload has the whole job's base64 data; split
  // the ESC/POS bytes where the printer can take a break.
  auto data_it = body.find("data");
  if (data_it == body.end() || !data_it->is_string()) {
    error = "print payload has no data";
    return {};
  }
  auto raw = base64url_decode(data_it->get<std::string>());
  if (!raw) {
    error = "print payload data is not base64";
    return {};
  }
  message["print"] = body;
  std::string whole = message.dump();
  if (whole.size() <= max_payload_bytes) return {std::move(whole)};
  if (max_payload_bytes <= kPartOverhead + 64) {
    error = "the device's maximum payload is too small for print jobs";
    return {};
  }
  size_t raw_chunk = (max_payload_bytes - kPartOverhead) / 4 * 3;
  std::vector<std::string> chunks = split_for_packets(*raw, raw_chunk);
  std::vector<std::string> out;
  out.reserve(chunks.size());
  for (size_t i = 0; i < chunks.size(); ++i) {
    json part = body;
    part["data"] = base64_encode(chunks[i]);
    part["part"] = i + 1;
    part["parts"] = chunks.size();
    json m = envelope(command);
    m["print"] = std::move(part);
    std::string text = m.dump();
    if (text.size() > max_payload_bytes) {
      error = "a print part does not fit the device's maximum payload";
      return {};
    }
    out.push_back(std::move(text));
  }
  return out;
}

std::optional<DeviceReport> parse_report(std::string_view channel, std::string_view payload,
                                         std::string& error) {
  json j = json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    error = "payload is not a JSON object";
    return std::nullopt;
  }
  DeviceReport report;
  auto v = j.find("v");
  if (v == j.end() || !v->is_number_integer()) {
    error = "no \"v\"";
    return std::nullopt;
  }
  if (v->get<int64_t>() != 1) {
    report.unsupported_version = true;
    return report;
  }
  auto text = [&](const char* name, std::string& out, size_t max) -> bool {
    auto it = j.find(name);
    if (it == j.end()) return false;
    if (!it->is_string()) return false;
    out = it->get<std::string>();
    if (out.size() > max) out.resize(max);
    return true;
  };
  if (channel == "acks" || channel == "results") {
    report.kind = channel == "acks" ? DeviceReport::Kind::kAck : DeviceReport::Kind::kResult;
    if (!text("id", report.id, 64) || report.id.rfind("cm_", 0) != 0) {
      error = "missing or malformed \"id\"";
      return std::nullopt;
    }
    if (report.kind == DeviceReport::Kind::kAck) {
      std::string status;
      if (!text("status", status, 32) || status != "received") {
        error = "ack \"status\" must be \"received\"";
        return std::nullopt;
      }
      return report;
    }
    if (!text("result", report.result, 32) ||
        (report.result != "played" && report.result != "printed" && report.result != "shown" &&
         report.result != "failed")) {
      error = "\"result\" must be played, printed, shown or failed";
      return std::nullopt;
    }
    if (report.result == "failed") {
      text("code", report.code, 32);
      if (!is_code(report.code)) report.code = "device_error";
      text("detail", report.detail, 256);
    }
    return report;
  }
  if (channel == "events") {
    report.kind = DeviceReport::Kind::kEvent;
    if (!text("type", report.type, 32) || !is_code(report.type)) {
      error = "missing or malformed event \"type\"";
      return std::nullopt;
    }
    if (report.type == "printer_status") {
      if (!text("status", report.status, 32) ||
          (report.status != "ready" && report.status != "paper_out" &&
           report.status != "cover_open" && report.status != "overheated")) {
        error = "printer_status \"status\" must be ready, paper_out, cover_open or overheated";
        return std::nullopt;
      }
    }
    return report;
  }
  error = "not a report topic";
  return std::nullopt;
}

FailureClass classify_failure(std::string_view code) {
  if (code == "expired") return FailureClass::kExpired;
  if (code == "paper_out" || code == "cover_open" || code == "overheated") {
    return FailureClass::kPrinterProblem;
  }
  if (code == "busy") return FailureClass::kBusy;
  return FailureClass::kFinal;
}

}  // namespace counterlink::platform
