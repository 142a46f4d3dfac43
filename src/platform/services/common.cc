#include "common.h"

#include <array>
#include <chrono>
#include <mutex>
#include <set>

#include <google/protobuf/timestamp.pb.h>
#include <google/protobuf/util/json_util.h>

#include "counterlink/platform/crypto.h"
#include "counterlink/v1/api_keys.pb.h"
#include "counterlink/v1/devices.pb.h"
#include "counterlink/v1/products.pb.h"
#include "counterlink/v1/tenants.pb.h"

namespace counterlink::platform {

namespace {

constexpr std::string_view kCrockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

// Last id state: ids are strictly increasing within the process even when
// the clock stands still or steps back (the 80-bit tail is incremented).
class IdSequence {
 public:
  std::string next(std::string_view prefix, store::TimeMs now_ms) {
    std::array<uint8_t, 10> tail;
    uint64_t ms;
    {
      std::lock_guard lock(mutex_);
      if (now_ms > last_ms_) {
        last_ms_ = now_ms;
        std::string random = random_bytes(tail_.size());
        for (size_t i = 0; i < tail_.size(); ++i)
          tail_[i] = static_cast<uint8_t>(random[i]);
        // Leave headroom so increments within one millisecond never wrap.
        tail_[0] &= 0x7f;
      } else {
        for (size_t i = tail_.size(); i-- > 0;) {
          if (++tail_[i] != 0) break;
        }
      }
      tail = tail_;
      ms = static_cast<uint64_t>(last_ms_) & ((uint64_t{1} << 48) - 1);
    }
    std::string id(prefix);
    id.reserve(prefix.size() + 26);
    // 48-bit time: 10 characters (the first carries 3 bits).
    for (int shift = 45; shift >= 0; shift -= 5)
      id += kCrockford[(ms >> shift) & 31];
    // 80-bit tail: 16 characters.
    uint32_t buffer = 0;
    int bits = 0;
    for (uint8_t byte : tail) {
      buffer = (buffer << 8) | byte;
      bits += 8;
      while (bits >= 5) {
        id += kCrockford[(buffer >> (bits - 5)) & 31];
        bits -= 5;
      }
    }
    return id;
  }

 private:
  std::mutex mutex_;
  store::TimeMs last_ms_ = -1;
  std::array<uint8_t, 10> tail_{};
};

}  // namespace

std::string new_resource_id(std::string_view prefix, store::TimeMs now_ms) {
  static IdSequence sequence;
  return sequence.next(prefix, now_ms);
}

std::string api_signing_key(std::string_view secret) {
  return hmac_sha256(secret, "counterlink-request-signing");
}

}  // namespace counterlink::platform

namespace counterlink::platform::services {

// ---- Tenant scoping ------------------------------------------------------------

api::Outcome resolve_tenant(const api::CallContext& ctx, const Env& env,
                            const std::string& requested, TenantNeed need, std::string& tenant_id) {
  const api::Principal& who = ctx.principal;
  if (!who.admin) {
    if (who.tenant_id.empty()) {
      return api::permission_denied("This call needs a tenant API key or an operator key.");
    }
    if (!requested.empty() && requested != who.tenant_id) {
      return not_found_problem("tenant", requested, "tenant_id");
    }
    tenant_id = who.tenant_id;
    return std::nullopt;
  }
  if (requested.empty()) {
    if (need == TenantNeed::kRequired) {
      return api::invalid_argument("tenant_id",
                                   "Operator keys must name the tenant to act on: set tenant_id.");
    }
    tenant_id.clear();
    return std::nullopt;
  }
  if (auto bad = check_id("tenant_id", requested, "tn_")) return bad;
  auto tenant = env.store->get_tenant(requested);
  if (!tenant.ok()) return store_problem(tenant.status(), "tenant", requested);
  tenant_id = requested;
  return std::nullopt;
}

// ---- Problems ------------------------------------------------------------------

api::Problem not_found_problem(const std::string& what, const std::string& id,
                               const std::string& field) {
  api::Problem p = api::not_found(
      what, "No " + what + " with id \"" + id + "\" exists for this tenant; check the id.");
  p.field = field;
  return p;
}

api::Problem store_problem(const store::Status& status, const std::string& what,
                           const std::string& id) {
  switch (status.code) {
    case store::Code::kNotFound:
      return not_found_problem(what, id);
    case store::Code::kUnavailable:
      return api::unavailable("The database is unavailable right now; retry in a moment.");
    default:
      return api::internal_error("The " + what + " could not be stored (" +
                                 store::to_string(status.code) + "); retry, or report it.");
  }
}

api::Problem invalid_page_token_problem(std::string detail) {
  api::Problem p = api::invalid_argument("page_token", std::move(detail));
  p.code = "invalid_page_token";
  p.title = "Invalid page token";
  return p;
}

api::Problem device_quota_problem(int64_t max_devices) {
  api::Problem p;
  p.http_status = 429;
  p.code = "device_quota_exceeded";
  p.title = "Device quota exceeded";
  p.detail = "The tenant already has its maximum of " + std::to_string(max_devices) +
             " devices; delete devices or ask the operator to raise max_devices.";
  p.retry_after_s = 60;
  return p;
}

// ---- Validation ------------------------------------------------------------------

namespace {

api::Problem bad(std::string_view field, std::string detail) {
  return api::invalid_argument(std::string(field), std::move(detail));
}

bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool all_of(std::string_view s, bool (*ok)(char)) {
  for (char c : s) {
    if (!ok(c)) return false;
  }
  return true;
}

bool serial_char(char c) {
  return is_alnum(c) || c == '.' || c == '_' || c == ':' || c == '-';
}
bool firmware_char(char c) {
  return is_alnum(c) || c == '.' || c == '_' || c == '-' || c == '+';
}
bool label_key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '/' ||
         c == '-';
}
bool secret_char(char c) {
  return is_alnum(c) || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '=' ||
         c == '-';
}
bool line_char(char c) {
  return is_alnum(c) || c == '.' || c == '_' || c == '-';
}

size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) {
    if ((c & 0xC0) != 0x80) ++n;
  }
  return n;
}

bool has_control(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

std::string quoted(std::string_view s) {
  constexpr size_t kShown = 40;
  std::string out = "\"";
  out += s.substr(0, kShown);
  if (s.size() > kShown) out += "...";
  out += "\"";
  return out;
}

}  // namespace

bool is_valid_utf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    auto c = static_cast<unsigned char>(text[i]);
    size_t extra;
    if (c < 0x80) {
      extra = 0;
    } else if ((c & 0xE0) == 0xC0 && c >= 0xC2) {
      extra = 1;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
    } else if ((c & 0xF8) == 0xF0 && c <= 0xF4) {
      extra = 3;
    } else {
      return false;
    }
    if (i + extra >= text.size()) return false;  // truncated sequence
    for (size_t k = 1; k <= extra; ++k) {
      if ((static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80) return false;
    }
    i += extra + 1;
  }
  return true;
}

api::Outcome check_name(std::string_view field, std::string_view value) {
  if (value.empty()) return bad(field, std::string(field) + " is required (1 to 128 characters).");
  if (!is_valid_utf8(value)) return bad(field, std::string(field) + " is not valid UTF-8.");
  if (utf8_length(value) > 128) {
    return bad(field, std::string(field) + " is longer than 128 characters; shorten it.");
  }
  if (has_control(value)) {
    return bad(field, std::string(field) + " contains control characters; remove them.");
  }
  return std::nullopt;
}

api::Outcome check_id(std::string_view field, std::string_view value, std::string_view prefix) {
  bool ok = value.size() == prefix.size() + 26 && value.substr(0, prefix.size()) == prefix;
  if (ok) {
    for (char c : value.substr(prefix.size())) {
      if (kCrockford.find(c) == std::string_view::npos) {
        ok = false;
        break;
      }
    }
  }
  if (ok) return std::nullopt;
  if (value.empty()) return bad(field, std::string(field) + " is required.");
  return bad(field, std::string(field) + " " + quoted(value) + " is not an id of the form " +
                        std::string(prefix) + " followed by 26 characters.");
}

api::Outcome check_optional_id(std::string_view field, std::string_view value,
                               std::string_view prefix) {
  if (value.empty()) return std::nullopt;
  return check_id(field, value, prefix);
}

api::Outcome check_serial(std::string_view field, std::string_view value) {
  if (value.empty() || value.size() > 64 || !all_of(value, serial_char)) {
    return bad(field, std::string(field) + " " + quoted(value) +
                          " must be 1 to 64 characters of A-Z a-z 0-9 . _ : -");
  }
  return std::nullopt;
}

api::Outcome check_serial_prefix(std::string_view field, std::string_view value) {
  if (value.size() > 64 || !all_of(value, serial_char)) {
    return bad(field, std::string(field) + " must be up to 64 characters of A-Z a-z 0-9 . _ : -");
  }
  return std::nullopt;
}

api::Outcome check_firmware_version(std::string_view field, std::string_view value) {
  if (value.size() > 64 || !all_of(value, firmware_char)) {
    return bad(field, std::string(field) + " " + quoted(value) +
                          " must be up to 64 characters of A-Z a-z 0-9 . _ - +");
  }
  return std::nullopt;
}

api::Outcome check_label_key(std::string_view field, std::string_view key) {
  bool ok = !key.empty() && key.size() <= 63 && all_of(key, label_key_char) && key[0] != '.' &&
            key[0] != '_' && key[0] != '/' && key[0] != '-';
  if (ok) return std::nullopt;
  return bad(field, "Label key " + quoted(key) +
                        " must be 1 to 63 characters: a-z or 0-9, then a-z 0-9 . _ / -");
}

api::Outcome check_labels(std::string_view field,
                          const std::map<std::string, std::string>& labels) {
  if (labels.size() > 64) return bad(field, "A device has at most 64 labels.");
  for (const auto& [key, value] : labels) {
    if (auto p = check_label_key(field, key)) return p;
    if (value.size() > 255) {
      return bad(field, "The value of label \"" + key + "\" is longer than 255 bytes.");
    }
    if (!is_valid_utf8(value) || has_control(value)) {
      return bad(field, "The value of label \"" + key +
                            "\" must be UTF-8 text without control characters.");
    }
  }
  return std::nullopt;
}

api::Outcome check_device_secret(std::string_view field, std::string_view value) {
  if (value.size() < 16 || value.size() > 128 || !all_of(value, secret_char)) {
    return bad(field, std::string(field) +
                          " must be 16 to 128 characters of A-Z a-z 0-9 . _ ~ + / = - (or leave "
                          "it empty to have one generated).");
  }
  return std::nullopt;
}

api::Outcome check_address(std::string_view field, std::string_view value) {
  if (value.size() > 255) return bad(field, std::string(field) + " is longer than 255 bytes.");
  if (!is_valid_utf8(value) || has_control(value)) {
    return bad(field, std::string(field) + " must be UTF-8 text without control characters.");
  }
  return std::nullopt;
}

api::Outcome check_capabilities(const v1::ProductCapabilities& caps, std::string_view type,
                                std::string_view field_prefix) {
  auto f = [&](const char* name) { return std::string(field_prefix) + name; };
  if (caps.paper_width_mm() != 0) {
    if (type != "printer") {
      return bad(f("paper_width_mm"), "paper_width_mm applies to printers only; leave it unset.");
    }
    if (caps.paper_width_mm() != 58 && caps.paper_width_mm() != 80) {
      return bad(f("paper_width_mm"), "paper_width_mm must be 58 or 80.");
    }
  }
  if (caps.locales_size() > 0) {
    if (type != "speaker") {
      return bad(f("locales"), "locales apply to speakers only; leave them unset.");
    }
    std::set<std::string> seen;
    for (const auto& locale : caps.locales()) {
      if (locale != "zh-CN" && locale != "en") {
        return bad(f("locales"),
                   "Locale " + quoted(locale) + " is not supported; use zh-CN or en.");
      }
      if (!seen.insert(locale).second) {
        return bad(f("locales"), "Locale " + quoted(locale) + " is listed twice.");
      }
    }
  }
  if (caps.firmware_line().size() > 64 || !all_of(caps.firmware_line(), line_char)) {
    return bad(f("firmware_line"),
               "firmware_line must be up to 64 characters of A-Z a-z 0-9 . _ -");
  }
  if (caps.max_payload_bytes() < 0 || caps.max_payload_bytes() > 262144) {
    return bad(f("max_payload_bytes"), "max_payload_bytes must be 0 (default) to 262144.");
  }
  return std::nullopt;
}

api::Outcome page_limit(int32_t page_size, int32_t& limit) {
  if (page_size == 0) {
    limit = 50;
    return std::nullopt;
  }
  if (page_size < 1 || page_size > 1000) {
    return bad("page_size", "page_size must be 1 to 1000 (0 or absent means 50).");
  }
  limit = page_size;
  return std::nullopt;
}

api::Outcome parse_label_list(std::string_view field, std::string_view text,
                              std::map<std::string, std::string>& labels) {
  labels.clear();
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(';', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view pair = text.substr(start, end - start);
    if (!pair.empty()) {
      size_t eq = pair.find('=');
      if (eq == std::string_view::npos) {
        return bad(field, "Label " + quoted(pair) + " is not key=value; separate labels with ';'.");
      }
      std::string key(pair.substr(0, eq));
      if (labels.count(key)) return bad(field, "Label \"" + key + "\" is given twice.");
      labels.emplace(std::move(key), std::string(pair.substr(eq + 1)));
    }
    start = end + 1;
  }
  return check_labels(field, labels);
}

// ---- Page tokens -------------------------------------------------------------------

namespace {
constexpr char kTokenVersion = 1;
constexpr size_t kTokenHashBytes = 8;
}  // namespace

std::string encode_page_token(std::string_view filters, std::string_view last_id) {
  std::string raw;
  raw += kTokenVersion;
  raw += sha256(filters).substr(0, kTokenHashBytes);
  raw += last_id;
  return base64url_encode(raw);
}

api::Outcome decode_page_token(std::string_view token, std::string_view filters,
                               std::string& last_id) {
  auto raw = base64url_decode(token);
  if (!raw || raw->size() <= 1 + kTokenHashBytes || (*raw)[0] != kTokenVersion) {
    return invalid_page_token_problem(
        "page_token is not a token this API issued; pass next_page_token unchanged, or omit it "
        "to start from the first page.");
  }
  if (!constant_time_equal(raw->substr(1, kTokenHashBytes),
                           sha256(filters).substr(0, kTokenHashBytes))) {
    return invalid_page_token_problem(
        "page_token was issued for a list call with other filters; repeat the same filters, or "
        "omit page_token to start again.");
  }
  last_id = raw->substr(1 + kTokenHashBytes);
  for (char c : last_id) {
    if (!is_alnum(c) && c != '_') {
      return invalid_page_token_problem("page_token is damaged; omit it to start again.");
    }
  }
  return std::nullopt;
}

// ---- Conversions ---------------------------------------------------------------------

void set_time(google::protobuf::Timestamp* out, store::TimeMs ms) {
  int64_t seconds = ms / 1000;
  int64_t rest = ms % 1000;
  if (rest < 0) {
    rest += 1000;
    seconds -= 1;
  }
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>(rest * 1000000));
}

void to_proto(const store::Tenant& row, v1::Tenant& out) {
  out.set_id(row.id);
  out.set_name(row.name);
  out.set_kind(row.kind);
  out.set_disabled(row.disabled);
  out.set_max_devices(static_cast<int32_t>(row.max_devices));
  out.set_api_rate_limit(row.api_rate_limit);
  if (row.created_ms) set_time(out.mutable_create_time(), row.created_ms);
  if (row.updated_ms) set_time(out.mutable_update_time(), row.updated_ms);
}

void to_proto(const store::Merchant& row, v1::Merchant& out) {
  out.set_id(row.id);
  out.set_tenant_id(row.tenant_id);
  out.set_name(row.name);
  if (row.created_ms) set_time(out.mutable_create_time(), row.created_ms);
}

void to_proto(const store::Outlet& row, v1::Outlet& out) {
  out.set_id(row.id);
  out.set_tenant_id(row.tenant_id);
  out.set_merchant_id(row.merchant_id);
  out.set_name(row.name);
  out.set_address(row.address);
  if (row.created_ms) set_time(out.mutable_create_time(), row.created_ms);
}

void to_proto(const store::ApiKey& row, v1::ApiKey& out) {
  out.set_id(row.id);
  out.set_tenant_id(row.tenant_id);
  out.set_scope(row.scope);
  out.set_name(row.name);
  if (row.created_ms) set_time(out.mutable_create_time(), row.created_ms);
  if (row.last_used_ms) set_time(out.mutable_last_used_time(), row.last_used_ms);
  if (row.revoked_ms) set_time(out.mutable_revoke_time(), row.revoked_ms);
}

void to_proto(const store::Product& row, v1::Product& out) {
  out.set_id(row.id);
  out.set_tenant_id(row.tenant_id);
  out.set_name(row.name);
  v1::ProductType type = v1::product_type_unspecified;
  v1::ProductType_Parse(row.type, &type);
  out.set_type(type);
  if (!row.capabilities_json.empty()) {
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = true;  // rows written by a newer version
    auto status = google::protobuf::util::JsonStringToMessage(row.capabilities_json,
                                                              out.mutable_capabilities(), options);
    if (!status.ok()) out.clear_capabilities();
  }
  if (!out.has_capabilities()) out.mutable_capabilities();
  if (row.created_ms) set_time(out.mutable_create_time(), row.created_ms);
  if (row.updated_ms) set_time(out.mutable_update_time(), row.updated_ms);
}

void to_proto_presence(const store::Device& row, v1::DevicePresence& out) {
  out.set_device_id(row.id);
  out.set_online(row.presence.online);
  if (row.presence.since_ms) set_time(out.mutable_since(), row.presence.since_ms);
  if (row.last_seen_ms) set_time(out.mutable_last_seen_time(), row.last_seen_ms);
  out.set_remote_address(row.presence.remote_address);
  out.set_protocol_version(row.presence.protocol_version);
  out.set_gateway_node(row.presence.gateway_node);
}

void to_proto(const store::Device& row, v1::Device& out) {
  out.set_id(row.id);
  out.set_tenant_id(row.tenant_id);
  out.set_product_id(row.product_id);
  out.set_serial(row.serial);
  out.set_merchant_id(row.merchant_id);
  out.set_outlet_id(row.outlet_id);
  auto& labels = *out.mutable_labels();
  for (const auto& [key, value] : row.labels)
    labels[key] = value;
  out.set_firmware_version(row.firmware_version);
  out.set_disabled(row.disabled);
  if (row.created_ms) set_time(out.mutable_create_time(), row.created_ms);
  if (row.updated_ms) set_time(out.mutable_update_time(), row.updated_ms);
  to_proto_presence(row, *out.mutable_presence());
}

// Reads a device the caller may see (404 device_not_found otherwise).
api::Outcome load_device(const api::CallContext& ctx, const Env& env, const std::string& device_id,
                         store::Device& device) {
  std::string tenant;
  if (auto p = resolve_tenant(ctx, env, "", TenantNeed::kOptional, tenant)) return p;
  if (auto p = check_id("device_id", device_id, "dv_")) return p;
  auto row = env.store->get_device(tenant, device_id);
  if (!row.ok()) return store_problem(row.status(), "device", device_id);
  device = std::move(row).value();
  return std::nullopt;
}

}  // namespace counterlink::platform::services
