// The platform's device-access metrics and the log throttle. Private.
//
// Label sets are fixed enums (never a device id or address).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "counterlink/obs/metrics.h"

namespace counterlink::platform {

// Why a CONNECT was refused (the `reason` label).
enum class AuthFailure : uint8_t {
  kMalformedUsername,     // missing, or not "<id>;<ms>;hmacsha256;v1"
  kClientIdMismatch,      // client id != device id of the username
  kMissingPassword,       // no password, or not 64 hex digits
  kTimestampOutOfWindow,  // too old or too far in the future
  kReplayed,              // credential already used within its window
  kUnknownDevice,         // no such device (or certificate CN of none)
  kNoSecret,              // the device has no secret (certificate only)
  kBadSignature,          // HMAC mismatch
  kDisabled,              // device disabled by its tenant
  kRateLimited,           // refused by a failure bucket, no lookup made
  kStoreUnavailable,      // store error; not the client's fault
  kSecretUnreadable,      // KeyRing cannot open the sealed secret (ops issue)
  kOverloaded,            // lookup queue full
  kNotADevice,            // non-device client and no fallback configured
  kFallbackRefused,       // the fallback authenticator said no
  kCount
};
const char* to_string(AuthFailure reason);

// True for failures caused by the client (charged to the rate limiters).
bool charged(AuthFailure reason);

enum class AuthMethod : uint8_t { kSignature, kCertificate, kFallback, kCount };
const char* to_string(AuthMethod method);

struct DeviceAccessMetrics {
  DeviceAccessMetrics();
  std::array<obs::Counter*, static_cast<size_t>(AuthFailure::kCount)> failures;
  std::array<obs::Counter*, static_cast<size_t>(AuthMethod::kCount)> successes;
  obs::Counter& acl_denied_publish;
  obs::Counter& acl_denied_subscribe;
  obs::Counter& presence_written;
  obs::Counter&
      presence_dropped_superseded;  // an earlier event of a device with a later one queued
  obs::Counter& presence_dropped_last_state;  // the queue held only last states
  obs::Counter& presence_write_errors;        // store refused the event (e.g. device deleted)

  void fail(AuthFailure r) { failures[static_cast<size_t>(r)]->inc(); }
  void succeed(AuthMethod m) { successes[static_cast<size_t>(m)]->inc(); }
};
// Registered on first use.
DeviceAccessMetrics& device_access_metrics();

// At most `per_second` lines per wall-clock second; allow() returns false
// for the others and counts them, and the next allowed line reports the count
// via `suppressed`. Thread-safe.
class LogThrottle {
 public:
  explicit LogThrottle(uint32_t per_second) : per_second_(per_second) {}
  bool allow(int64_t now_ms, uint64_t& suppressed);

 private:
  const uint32_t per_second_;
  std::mutex mutex_;
  int64_t second_ = -1;
  uint32_t used_ = 0;
  uint64_t suppressed_ = 0;
};

// `value` made safe for a key=value log line: printable ASCII only, no
// spaces or quotes, at most 80 characters (client-supplied text).
std::string log_safe(std::string_view value);

}  // namespace counterlink::platform
