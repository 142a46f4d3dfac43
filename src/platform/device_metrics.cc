#include "device_metrics.h"

namespace counterlink::platform {

const char* to_string(AuthFailure reason) {
  switch (reason) {
    case AuthFailure::kMalformedUsername:
      return "malformed_username";
    case AuthFailure::kClientIdMismatch:
      return "client_id_mismatch";
    case AuthFailure::kMissingPassword:
      return "missing_password";
    case AuthFailure::kTimestampOutOfWindow:
      return "timestamp_out_of_window";
    case AuthFailure::kReplayed:
      return "replayed";
    case AuthFailure::kUnknownDevice:
      return "unknown_device";
    case AuthFailure::kNoSecret:
      return "no_secret";
    case AuthFailure::kBadSignature:
      return "bad_signature";
    case AuthFailure::kDisabled:
      return "disabled";
    case AuthFailure::kRateLimited:
      return "rate_limited";
    case AuthFailure::kStoreUnavailable:
      return "store_unavailable";
    case AuthFailure::kSecretUnreadable:
      return "secret_unreadable";
    case AuthFailure::kOverloaded:
      return "overloaded";
    case AuthFailure::kNotADevice:
      return "not_a_device";
    case AuthFailure::kFallbackRefused:
      return "fallback_refused";
    case AuthFailure::kCount:
      break;
  }
  return "unknown";
}

bool charged(AuthFailure reason) {
  switch (reason) {
    case AuthFailure::kRateLimited:
    case AuthFailure::kStoreUnavailable:
    case AuthFailure::kSecretUnreadable:
    case AuthFailure::kOverloaded:
      return false;
    default:
      return true;
  }
}

const char* to_string(AuthMethod method) {
  switch (method) {
    case AuthMethod::kSignature:
      return "signature";
    case AuthMethod::kCertificate:
      return "certificate";
    case AuthMethod::kFallback:
      return "fallback";
    case AuthMethod::kCount:
      break;
  }
  return "unknown";
}

DeviceAccessMetrics::DeviceAccessMetrics()
    : acl_denied_publish(obs::metrics().counter(
          "counterlink_device_acl_denied_total",
          "Device publishes and subscriptions refused by the topic namespace",
          {{"action", "publish"}})),
      acl_denied_subscribe(obs::metrics().counter(
          "counterlink_device_acl_denied_total",
          "Device publishes and subscriptions refused by the topic namespace",
          {{"action", "subscribe"}})),
      presence_written(obs::metrics().counter("counterlink_presence_events_total",
                                              "Presence events by outcome",
                                              {{"result", "written"}})),
      presence_dropped_superseded(obs::metrics().counter("counterlink_presence_events_total",
                                                         "Presence events by outcome",
                                                         {{"result", "dropped_superseded"}})),
      presence_dropped_last_state(obs::metrics().counter("counterlink_presence_events_total",
                                                         "Presence events by outcome",
                                                         {{"result", "dropped_last_state"}})),
      presence_write_errors(obs::metrics().counter("counterlink_presence_events_total",
                                                   "Presence events by outcome",
                                                   {{"result", "write_error"}})) {
  for (size_t i = 0; i < failures.size(); ++i) {
    failures[i] = &obs::metrics().counter("counterlink_device_auth_failures_total",
                                          "Refused device CONNECTs by reason",
                                          {{"reason", to_string(static_cast<AuthFailure>(i))}});
  }
  for (size_t i = 0; i < successes.size(); ++i) {
    successes[i] = &obs::metrics().counter("counterlink_device_auth_successes_total",
                                           "Accepted CONNECTs by authentication method",
                                           {{"method", to_string(static_cast<AuthMethod>(i))}});
  }
}

DeviceAccessMetrics& device_access_metrics() {
  static DeviceAccessMetrics metrics;
  return metrics;
}

bool LogThrottle::allow(int64_t now_ms, uint64_t& suppressed) {
  std::lock_guard lock(mutex_);
  const int64_t second = now_ms / 1000;
  if (second != second_) {
    second_ = second;
    used_ = 0;
  }
  if (used_ >= per_second_) {
    ++suppressed_;
    return false;
  }
  ++used_;
  suppressed = suppressed_;
  suppressed_ = 0;
  return true;
}

std::string log_safe(std::string_view value) {
  constexpr size_t kMax = 80;
  std::string out;
  out.reserve(std::min(value.size(), kMax));
  for (char c : value.substr(0, kMax)) {
    out.push_back(c > ' ' && c < 0x7f && c != '"' && c != '\\' && c != '=' ? c : '?');
  }
  if (value.size() > kMax) out.append("...");
  if (out.empty()) out = "-";
  return out;
}

}  // namespace counterlink::platform
