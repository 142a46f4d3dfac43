#include "protocol.h"

#include <algorithm>
#include <utility>

#include "counterlink/platform/crypto.h"

namespace counterlink::sim {

using nlohmann::json;

bool is_retryable(std::string_view failure_code) {
  return failure_code == code::kBusy || failure_code == code::kPaperOut ||
         failure_code == code::kCoverOpen || failure_code == code::kOverheated;
}

const json* Command::field(std::string_view name) const {
  const std::string key(name);
  const auto own = object.find(type);
  if (own != object.end() && own->is_object()) {
    const auto it = own->find(key);
    if (it != own->end() && !it->is_null()) return &*it;
  }
  const auto it = object.find(key);
  if (it != object.end() && !it->is_null()) return &*it;
  return nullptr;
}

ParsedCommand parse_command(std::string_view payload) {
  ParsedCommand out;
  json object = json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (object.is_discarded() || !object.is_object()) {
    out.failure = code::kInvalidCommand;
    out.detail = "the payload is not a JSON object";
    return out;
  }
  const auto id = object.find("id");
  if (id == object.end() || !id->is_string() || id->get_ref<const std::string&>().empty()) {
    out.failure = code::kInvalidCommand;
    out.detail = "the command has no string \"id\"";
    return out;
  }
  out.id = id->get<std::string>();
  const auto v = object.find("v");
  if (v == object.end() || v->is_null()) {
    out.failure = code::kInvalidCommand;
    out.detail = "the command has no \"v\"";
    return out;
  }
  if (!v->is_number_integer() || v->get<int64_t>() != kProtocolVersion) {
    out.failure = code::kUnsupportedVersion;
    out.detail = "this device speaks protocol v1, the command is v" + v->dump();
    return out;
  }
  const auto type = object.find("type");
  if (type == object.end() || !type->is_string() || type->get_ref<const std::string&>().empty()) {
    out.failure = code::kInvalidCommand;
    out.detail = "the command has no string \"type\"";
    return out;
  }
  Command command;
  command.id = out.id;
  command.type = type->get<std::string>();
  const auto expires = object.find("expires_at_ms");
  if (expires != object.end() && !expires->is_null()) {
    if (!expires->is_number_integer()) {
      out.failure = code::kInvalidCommand;
      out.detail = "\"expires_at_ms\" must be an integer (Unix milliseconds)";
      return out;
    }
    command.expires_at_ms = expires->get<int64_t>();
  }
  command.object = std::move(object);
  out.command = std::move(command);
  return out;
}

std::string ack_payload(std::string_view id) {
  return json{{"v", kProtocolVersion}, {"id", id}, {"status", "received"}}.dump();
}

std::string result_payload(std::string_view id, std::string_view result) {
  return json{{"v", kProtocolVersion}, {"id", id}, {"result", result}}.dump();
}

std::string failed_payload(std::string_view id, std::string_view failure_code,
                           std::string_view detail) {
  json out{{"v", kProtocolVersion}, {"id", id}, {"result", "failed"}, {"code", failure_code}};
  if (!detail.empty()) out["detail"] = detail;
  return out.dump();
}

std::string printer_status_payload(std::string_view status) {
  return json{{"v", kProtocolVersion}, {"type", "printer_status"}, {"status", status}}.dump();
}

std::string scan_payload(std::string_view scan_id, std::string_view code, std::string_view amount) {
  return json{{"v", kProtocolVersion},
              {"type", "scan"},
              {"scan_id", scan_id},
              {"code", code},
              {"amount", amount}}
      .dump();
}

// ---- CompletedWindow ----------------------------------------------------------

const CompletedWindow::Entry* CompletedWindow::find(std::string_view id) const {
  for (const Entry& entry : entries_) {
    if (entry.id == id) return &entry;
  }
  return nullptr;
}

void CompletedWindow::remember(Entry entry) {
  if (capacity_ == 0) return;
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->id == entry.id) {
      entries_.erase(it);
      break;
    }
  }
  if (entries_.size() >= capacity_) entries_.pop_front();
  entries_.push_back(std::move(entry));
}

// ---- PartAssembler --------------------------------------------------------------

PartAssembler::Status PartAssembler::add(const std::string& id, uint32_t part, uint32_t parts,
                                         std::string data) {
  if (parts == 0 || parts > max_parts_ || part == 0 || part > parts) return Status::kInvalid;
  auto it = jobs_.find(id);
  if (it == jobs_.end()) {
    if (jobs_.size() >= max_jobs_ && max_jobs_ > 0) {
      auto oldest = std::min_element(jobs_.begin(), jobs_.end(), [](const auto& a, const auto& b) {
        return a.second.started < b.second.started;
      });
      jobs_.erase(oldest);
    }
    Job job;
    job.parts = parts;
    job.started = next_order_++;
    it = jobs_.emplace(id, std::move(job)).first;
  } else if (it->second.parts != parts) {
    return Status::kInvalid;
  }
  Job& job = it->second;
  if (!job.data.emplace(part, std::move(data)).second) return Status::kRepeat;
  return job.data.size() == job.parts ? Status::kComplete : Status::kIncomplete;
}

std::vector<std::string> PartAssembler::take(const std::string& id) {
  std::vector<std::string> out;
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return out;
  out.reserve(it->second.data.size());
  for (auto& [part, data] : it->second.data)
    out.push_back(std::move(data));  // std::map: ascending part order
  jobs_.erase(it);
  return out;
}

void PartAssembler::drop(const std::string& id) {
  auto it = jobs_.find(id);
  if (it != jobs_.end()) jobs_.erase(it);
}

std::optional<std::string> decode_print_data(const std::vector<std::string>& parts) {
  std::string joined;
  for (const auto& part : parts)
    joined += part;
  if (auto bytes = platform::base64url_decode(joined)) return bytes;
  std::string out;
  for (const auto& part : parts) {
    auto bytes = platform::base64url_decode(part);
    if (!bytes) return std::nullopt;
    out += *bytes;
  }
  return out;
}

}  // namespace counterlink::sim
