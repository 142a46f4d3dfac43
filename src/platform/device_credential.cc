#include "counterlink/platform/device_credential.h"

#include <vector>

#include "counterlink/platform/crypto.h"

namespace counterlink::platform {
namespace {

// 15 digits cover unix ms until the year 33658; more is not a timestamp and
// would overflow nothing but is refused to keep the format tight.
constexpr size_t kMaxTimestampDigits = 15;
constexpr size_t kMaxDeviceIdLength = 64;

}  // namespace

bool is_device_id(std::string_view id) {
  if (id.size() <= kDeviceIdPrefix.size() || id.size() > kMaxDeviceIdLength) return false;
  if (id.substr(0, kDeviceIdPrefix.size()) != kDeviceIdPrefix) return false;
  for (char c : id.substr(kDeviceIdPrefix.size())) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool looks_like_device_username(std::string_view username) {
  return username.substr(0, kDeviceIdPrefix.size()) == kDeviceIdPrefix;
}

std::optional<DeviceUsername> parse_device_username(std::string_view username) {
  std::vector<std::string_view> fields;
  size_t start = 0;
  while (true) {
    size_t end = username.find(';', start);
    fields.push_back(username.substr(start, end == std::string_view::npos ? end : end - start));
    if (end == std::string_view::npos) break;
    start = end + 1;
    if (fields.size() > 4) return std::nullopt;
  }
  if (fields.size() != 4) return std::nullopt;
  if (!is_device_id(fields[0])) return std::nullopt;
  std::string_view ts = fields[1];
  if (ts.empty() || ts.size() > kMaxTimestampDigits || (ts.size() > 1 && ts[0] == '0')) {
    return std::nullopt;
  }
  int64_t value = 0;
  for (char c : ts) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  if (fields[2] != kSignMethodHmacSha256 || fields[3] != kCredentialVersion1) return std::nullopt;
  DeviceUsername out;
  out.device_id = std::string(fields[0]);
  out.timestamp_ms = value;
  out.timestamp_text = std::string(ts);
  out.sign_method = std::string(fields[2]);
  out.version = std::string(fields[3]);
  return out;
}

std::string canonical_string(std::string_view client_id, std::string_view device_id,
                             std::string_view timestamp_text) {
  std::string out;
  out.reserve(8 + client_id.size() + 8 + device_id.size() + 9 + timestamp_text.size());
  out.append("clientId").append(client_id);
  out.append("deviceId").append(device_id);
  out.append("timestamp").append(timestamp_text);
  return out;
}

std::string sign_credential(std::string_view device_secret, std::string_view client_id,
                            std::string_view device_id, std::string_view timestamp_text) {
  return hex(hmac_sha256(device_secret, canonical_string(client_id, device_id, timestamp_text)));
}

DeviceCredential make_device_credential(const std::string& device_id,
                                        std::string_view device_secret, int64_t timestamp_ms) {
  const std::string ts = std::to_string(timestamp_ms);
  DeviceCredential out;
  out.client_id = device_id;
  out.username = device_id + ";" + ts + ";" + std::string(kSignMethodHmacSha256) + ";" +
                 std::string(kCredentialVersion1);
  out.password = sign_credential(device_secret, device_id, device_id, ts);
  return out;
}

}  // namespace counterlink::platform
