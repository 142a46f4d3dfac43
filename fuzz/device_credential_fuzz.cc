// libFuzzer target for the signed device credential (device_credential.h):
// the MQTT username "<device id>;<unix ms>;hmacsha256;v1" comes straight
// from a CONNECT packet.
//
// Checks, aborting on a violation:
//  - the whole input as a username: parsing never crashes, and a username
//    that parses is exactly the canonical text of what it parsed to, with a
//    valid device id and a timestamp whose digits are its decimal form;
//  - is_device_id() agrees with a reference;
//  - a credential built by make_device_credential() from fuzz-chosen id,
//    secret and timestamp parses back to the same id and timestamp exactly
//    when the id is valid and the timestamp has 1..15 digits, and its password
//    is sign_credential() of it: 64 lowercase hex digits.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <fuzzer/FuzzedDataProvider.h>

#include "counterlink/platform/device_credential.h"

namespace {

using namespace counterlink::platform;

#define FUZZ_CHECK(condition, detail)                                  \
  do {                                                                 \
    if (!(condition)) {                                                \
      std::fprintf(stderr, "FUZZ_CHECK failed: %s (%s)\n", #condition, \
                   std::string(detail).c_str());                       \
      __builtin_trap();                                                \
    }                                                                  \
  } while (false)

constexpr int64_t kMaxTimestamp = 999'999'999'999'999;  // 15 digits
constexpr std::string_view kIdAlphabet =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";

bool reference_device_id(std::string_view id) {
  if (!id.starts_with("dv_") || id.size() < 4 || id.size() > 64) return false;
  for (char c : id.substr(3)) {
    if (kIdAlphabet.find(c) == std::string_view::npos) return false;
  }
  return true;
}

bool is_lower_hex(std::string_view s) {
  return s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

void check_username(std::string_view username) {
  FUZZ_CHECK(is_device_id(username) == reference_device_id(username), username);
  const auto parsed = parse_device_username(username);
  if (!parsed) return;
  FUZZ_CHECK(looks_like_device_username(username), username);
  FUZZ_CHECK(reference_device_id(parsed->device_id), parsed->device_id);
  FUZZ_CHECK(parsed->timestamp_ms >= 0 && parsed->timestamp_ms <= kMaxTimestamp,
             parsed->timestamp_text);
  FUZZ_CHECK(std::to_string(parsed->timestamp_ms) == parsed->timestamp_text,
             parsed->timestamp_text);
  FUZZ_CHECK(parsed->sign_method == kSignMethodHmacSha256, parsed->sign_method);
  FUZZ_CHECK(parsed->version == kCredentialVersion1, parsed->version);
  const std::string canonical = parsed->device_id + ";" + parsed->timestamp_text + ";" +
                                parsed->sign_method + ";" + parsed->version;
  FUZZ_CHECK(canonical == username, "a parsed username is not its canonical text");
}

void check_round_trip(FuzzedDataProvider& provider) {
  std::string device_id;
  if (provider.ConsumeBool()) {
    // Mostly-valid ids: "dv_" and 0..66 characters of the id alphabet.
    device_id = "dv_";
    const size_t length = provider.ConsumeIntegralInRange<size_t>(0, 66);
    for (size_t i = 0; i < length; ++i) {
      device_id += kIdAlphabet[provider.ConsumeIntegral<uint8_t>() % kIdAlphabet.size()];
    }
  } else {
    device_id = provider.ConsumeRandomLengthString(80);
  }
  int64_t timestamp_ms = 0;
  switch (provider.ConsumeIntegralInRange<int>(0, 2)) {
    case 0:
      timestamp_ms = provider.ConsumeIntegral<int64_t>();
      break;
    case 1:
      timestamp_ms = provider.ConsumeIntegralInRange<int64_t>(0, kMaxTimestamp + 10);
      break;
    default:
      timestamp_ms = provider.ConsumeIntegralInRange<int64_t>(-10, 20);
      break;
  }
  const std::string secret = provider.ConsumeRemainingBytesAsString();

  const DeviceCredential credential = make_device_credential(device_id, secret, timestamp_ms);
  const std::string timestamp_text = std::to_string(timestamp_ms);
  FUZZ_CHECK(credential.client_id == device_id, device_id);
  FUZZ_CHECK(looks_like_device_username(credential.username) == device_id.starts_with("dv_"),
             credential.username);
  FUZZ_CHECK(credential.password.size() == 64 && is_lower_hex(credential.password),
             credential.password);
  FUZZ_CHECK(credential.password ==
                 sign_credential(secret, credential.client_id, device_id, timestamp_text),
             "password is not sign_credential() of the credential");

  const bool valid =
      reference_device_id(device_id) && timestamp_ms >= 0 && timestamp_ms <= kMaxTimestamp;
  const auto parsed = parse_device_username(credential.username);
  FUZZ_CHECK(parsed.has_value() == valid, credential.username);
  if (!parsed) return;
  FUZZ_CHECK(parsed->device_id == device_id, credential.username);
  FUZZ_CHECK(parsed->timestamp_ms == timestamp_ms, credential.username);
  FUZZ_CHECK(parsed->timestamp_text == timestamp_text, credential.username);
  FUZZ_CHECK(canonical_string(credential.client_id, parsed->device_id, parsed->timestamp_text) ==
                 "clientId" + device_id + "deviceId" + device_id + "timestamp" + timestamp_text,
             "canonical string");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  check_username(std::string_view(reinterpret_cast<const char*>(data), size));
  FuzzedDataProvider provider(data, size);
  check_round_trip(provider);
  return 0;
}
