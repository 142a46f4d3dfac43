// The signed MQTT credential a device presents in CONNECT, version 1
// (docs/device-protocol.md, "Connecting", is the specification; this header
// implements it and the unit tests pin the document's worked example).
//
//   client id = <device id>
//   username  = <device id>;<unix ms>;hmacsha256;v1
//   password  = lowercase hex HMAC-SHA256(device secret,
//                 "clientId" <client id> "deviceId" <device id> "timestamp" <unix ms>)
//
// Pure functions, no I/O; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace counterlink::platform {

// The only sign method and credential version so far. New methods or
// versions get new names; parse_device_username() refuses unknown ones.
inline constexpr std::string_view kSignMethodHmacSha256 = "hmacsha256";
inline constexpr std::string_view kCredentialVersion1 = "v1";
inline constexpr std::string_view kDeviceIdPrefix = "dv_";

// True if `id` can be a device id: "dv_" then 1..61 characters of
// [A-Za-z0-9_-] (64 in all). Such ids contain none of "/+#", so
// "devices/<id>/" is a literal topic prefix.
bool is_device_id(std::string_view id);

// A parsed username. The timestamp is kept as text too: the canonical string
// signs exactly the digits the device sent.
struct DeviceUsername {
  std::string device_id;
  int64_t timestamp_ms = 0;
  std::string timestamp_text;
  std::string sign_method;  // "hmacsha256"
  std::string version;      // "v1"
};

// Parses "<device id>;<unix ms>;hmacsha256;v1". nullopt unless there are
// exactly four fields, the device id is valid, the timestamp is 1..15
// decimal digits without a leading zero, and method and version are known.
std::optional<DeviceUsername> parse_device_username(std::string_view username);

// True if the username is meant as a device credential (starts with "dv_"),
// whether or not it parses. Such usernames never go to a fallback
// authenticator.
bool looks_like_device_username(std::string_view username);

// "clientId" + client_id + "deviceId" + device_id + "timestamp" + timestamp.
std::string canonical_string(std::string_view client_id, std::string_view device_id,
                             std::string_view timestamp_text);

// The expected password: lowercase hex HMAC-SHA256 keyed with the device
// secret (its ASCII bytes) over canonical_string().
std::string sign_credential(std::string_view device_secret, std::string_view client_id,
                            std::string_view device_id, std::string_view timestamp_text);

// What a device sends: client id, username and password for `timestamp_ms`.
struct DeviceCredential {
  std::string client_id;
  std::string username;
  std::string password;
};
DeviceCredential make_device_credential(const std::string& device_id,
                                        std::string_view device_secret, int64_t timestamp_ms);

}  // namespace counterlink::platform
