#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

#include "counterlink/platform/crypto.h"
#include "counterlink/platform/device_access.h"
#include "counterlink/platform/device_credential.h"
#include "counterlink/store/store.h"

#include "device_metrics.h"
#include "rate_limiter.h"
#include "replay_cache.h"

namespace counterlink::platform {

using gateway::AuthRequest;
using gateway::AuthResult;
using gateway::ClientInfo;
using mqtt::ReasonCode;

namespace {

// The source address without the port, as the per-address limiter's key.
// IPv6 clients are keyed by their /64 (one subscriber typically holds a
// whole /64, so per-/128 limits would be trivial to sidestep).
std::string address_key(const std::string& remote) {
  std::string host = remote;
  if (!host.empty() && host.front() == '[') {
    size_t close = host.find(']');
    host = host.substr(1, close == std::string::npos ? std::string::npos : close - 1);
  } else if (size_t colon = host.rfind(':'); colon != std::string::npos) {
    host = host.substr(0, colon);
  }
  in6_addr v6{};
  if (host.find(':') != std::string::npos && ::inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    static const unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    char text[INET6_ADDRSTRLEN] = {0};
    if (std::equal(kMapped, kMapped + 12, v6.s6_addr)) {
      ::inet_ntop(AF_INET, v6.s6_addr + 12, text, sizeof text);
      return text;
    }
    std::fill(v6.s6_addr + 8, v6.s6_addr + 16, 0);
    ::inet_ntop(AF_INET6, &v6, text, sizeof text);
    return std::string(text) + "/64";
  }
  return host;
}

// Lowercase 64-hex-digit password, or empty if it is not one.
std::string normalize_signature(const std::string& password) {
  if (password.size() != 64) return {};
  std::string out = password;
  for (char& c : out) {
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return {};
  }
  return out;
}

ReasonCode answer_for(AuthFailure reason) {
  switch (reason) {
    case AuthFailure::kDisabled:
      return ReasonCode::kNotAuthorized;
    case AuthFailure::kRateLimited:
      return ReasonCode::kConnectionRateExceeded;
    case AuthFailure::kStoreUnavailable:
    case AuthFailure::kSecretUnreadable:
    case AuthFailure::kOverloaded:
      return ReasonCode::kServerUnavailable;
    default:
      return ReasonCode::kBadUserNameOrPassword;
  }
}

const char* reason_string_for(ReasonCode code) {
  switch (code) {
    case ReasonCode::kNotAuthorized:
      return "device is disabled";
    case ReasonCode::kConnectionRateExceeded:
      return "too many failed attempts; retry later";
    case ReasonCode::kServerUnavailable:
      return "service temporarily unavailable; retry later";
    default:
      return "bad user name or password";
  }
}

}  // namespace

// Shared with in-flight fallback callbacks, which may outlive the
// DeviceAuthenticator by a moment; the lookup threads are joined by the
// DeviceAuthenticator's destructor.
class DeviceAuthenticator::Impl : public std::enable_shared_from_this<Impl> {
 public:
  Impl(std::shared_ptr<store::Store> store, std::shared_ptr<const KeyRing> keys,
       DeviceAuthConfig config, std::shared_ptr<gateway::Authenticator> fallback, ClockMs clock)
      : store_(std::move(store)),
        keys_(std::move(keys)),
        config_(config),
        fallback_(std::move(fallback)),
        clock_(std::move(clock)),
        address_limiter_(config.per_address, config.rate_limit_entries),
        device_limiter_(config.per_device, config.rate_limit_entries),
        replay_(config.replay_cache_entries),
        log_throttle_(config.log_lines_per_second),
        metrics_(device_access_metrics()) {
    if (!store_) throw std::invalid_argument("DeviceAuthenticator: a store is required");
    if (!keys_) throw std::invalid_argument("DeviceAuthenticator: a key ring is required");
    if (!clock_) clock_ = system_clock_ms;
    unsigned threads = config_.lookup_threads == 0 ? 1 : config_.lookup_threads;
    for (unsigned i = 0; i < threads; ++i)
      threads_.emplace_back([this] { run_lookups(); });
  }

  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_)
      t.join();
    threads_.clear();
  }

  void authenticate(const AuthRequest& request, std::function<void(AuthResult)> done);

 private:
  // One CONNECT on its way through the checks.
  struct Attempt {
    std::string client_id;
    std::string remote;
    std::string address;  // limiter key
    std::string device_id;
    AuthMethod method = AuthMethod::kSignature;
    std::string timestamp_text;
    std::string signature;   // lowercase hex
    std::string replay_key;  // empty when not reserved
    std::function<void(AuthResult)> done;
  };

  void fail(Attempt& attempt, AuthFailure reason, int64_t now_ms);
  void succeed(Attempt& attempt);
  void submit(Attempt attempt, int64_t now_ms);
  void run_lookups();
  void look_up(Attempt& attempt);
  void authenticate_fallback(const AuthRequest& request, Attempt attempt, int64_t now_ms);

  const std::shared_ptr<store::Store> store_;
  const std::shared_ptr<const KeyRing> keys_;
  const DeviceAuthConfig config_;
  const std::shared_ptr<gateway::Authenticator> fallback_;
  ClockMs clock_;
  FailureLimiter address_limiter_;
  FailureLimiter device_limiter_;
  ReplayCache replay_;
  LogThrottle log_throttle_;
  DeviceAccessMetrics& metrics_;

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Attempt> queue_;  // guarded by mutex_
  bool stopping_ = false;      // guarded by mutex_
  std::vector<std::thread> threads_;
};

void DeviceAuthenticator::Impl::fail(Attempt& attempt, AuthFailure reason, int64_t now_ms) {
  if (!attempt.replay_key.empty()) replay_.release(attempt.replay_key);
  if (charged(reason)) {
    address_limiter_.record_failure(attempt.address, now_ms);
    if (!attempt.device_id.empty()) device_limiter_.record_failure(attempt.device_id, now_ms);
  }
  metrics_.fail(reason);
  uint64_t suppressed = 0;
  if (log_throttle_.allow(now_ms, suppressed)) {
    const bool ops_problem = reason == AuthFailure::kSecretUnreadable;
    spdlog::log(ops_problem ? spdlog::level::err : spdlog::level::info,
                "device_auth.failed reason={} device={} client_id={} remote={}{}",
                to_string(reason), log_safe(attempt.device_id), log_safe(attempt.client_id),
                log_safe(attempt.remote),
                suppressed ? " suppressed_before=" + std::to_string(suppressed) : std::string());
  }
  const ReasonCode code = answer_for(reason);
  auto done = std::move(attempt.done);
  done(AuthResult{code, reason_string_for(code)});
}

void DeviceAuthenticator::Impl::succeed(Attempt& attempt) {
  metrics_.succeed(attempt.method);
  spdlog::debug("device_auth.accepted device={} method={} remote={}", log_safe(attempt.device_id),
                to_string(attempt.method), log_safe(attempt.remote));
  auto done = std::move(attempt.done);
  done(AuthResult{});
}

void DeviceAuthenticator::Impl::authenticate(const AuthRequest& request,
                                             std::function<void(AuthResult)> done) {
  const ClientInfo& client = request.client;
  const int64_t now = clock_();
  Attempt attempt;
  attempt.client_id = client.client_id;
  attempt.remote = client.remote_address;
  attempt.address = address_key(client.remote_address);
  attempt.done = std::move(done);

  const bool device_like = client.client_id.substr(0, kDeviceIdPrefix.size()) == kDeviceIdPrefix ||
                           (client.has_username && looks_like_device_username(client.username));

  if (address_limiter_.exhausted(attempt.address, now)) {
    if (device_like) attempt.device_id = client.client_id;
    fail(attempt, AuthFailure::kRateLimited, now);
    return;
  }
  if (!device_like) {
    authenticate_fallback(request, std::move(attempt), now);
    return;
  }

  // A device whose bucket is empty is refused without a lookup, unless it
  // connects from an address with no recent failures: failures sent in its
  // name from elsewhere must not lock the real device out.
  auto device_limited = [&](const std::string& device_id) {
    return device_limiter_.exhausted(device_id, now) &&
           !address_limiter_.clean(attempt.address, now);
  };

  if (config_.allow_certificates && !client.certificate_cn.empty() &&
      client.certificate_cn == client.client_id && is_device_id(client.client_id)) {
    // The TLS listener verified the chain; CN = device id = client id.
    attempt.device_id = client.client_id;
    attempt.method = AuthMethod::kCertificate;
    if (device_limited(attempt.device_id)) {
      fail(attempt, AuthFailure::kRateLimited, now);
      return;
    }
    submit(std::move(attempt), now);
    return;
  }

  auto username = client.has_username ? parse_device_username(client.username) : std::nullopt;
  if (!username) {
    fail(attempt, AuthFailure::kMalformedUsername, now);
    return;
  }
  if (username->device_id != client.client_id) {
    // Charged to the address only: the device id is the client's claim.
    fail(attempt, AuthFailure::kClientIdMismatch, now);
    return;
  }
  attempt.device_id = username->device_id;
  attempt.timestamp_text = username->timestamp_text;
  if (device_limited(attempt.device_id)) {
    fail(attempt, AuthFailure::kRateLimited, now);
    return;
  }
  attempt.signature = request.password ? normalize_signature(*request.password) : std::string();
  if (attempt.signature.empty()) {
    fail(attempt, AuthFailure::kMissingPassword, now);
    return;
  }
  if (std::llabs(now - username->timestamp_ms) > config_.timestamp_window_ms) {
    fail(attempt, AuthFailure::kTimestampOutOfWindow, now);
    return;
  }
  std::string replay_key =
      attempt.device_id + ";" + attempt.timestamp_text + ";" + attempt.signature;
  if (!replay_.reserve(replay_key, username->timestamp_ms + config_.timestamp_window_ms, now)) {
    fail(attempt, AuthFailure::kReplayed, now);
    return;
  }
  attempt.replay_key = std::move(replay_key);
  submit(std::move(attempt), now);
}

void DeviceAuthenticator::Impl::authenticate_fallback(const AuthRequest& request, Attempt attempt,
                                                      int64_t now_ms) {
  if (!fallback_) {
    fail(attempt, AuthFailure::kNotADevice, now_ms);
    return;
  }
  auto self = shared_from_this();
  auto shared_attempt = std::make_shared<Attempt>(std::move(attempt));
  fallback_->authenticate(request, [self, shared_attempt](AuthResult result) {
    Attempt& a = *shared_attempt;
    if (result.reason == ReasonCode::kSuccess) {
      self->metrics_.succeed(AuthMethod::kFallback);
      a.done(std::move(result));
      return;
    }
    // Count and charge like any failure, but keep the fallback's answer.
    const int64_t now = self->clock_();
    self->address_limiter_.record_failure(a.address, now);
    self->metrics_.fail(AuthFailure::kFallbackRefused);
    uint64_t suppressed = 0;
    if (self->log_throttle_.allow(now, suppressed)) {
      spdlog::info("device_auth.failed reason={} device=- client_id={} remote={}{}",
                   to_string(AuthFailure::kFallbackRefused), log_safe(a.client_id),
                   log_safe(a.remote),
                   suppressed ? " suppressed_before=" + std::to_string(suppressed) : std::string());
    }
    a.done(std::move(result));
  });
}

void DeviceAuthenticator::Impl::submit(Attempt attempt, int64_t now_ms) {
  {
    std::lock_guard lock(mutex_);
    if (!stopping_ && queue_.size() < config_.lookup_queue) {
      queue_.push_back(std::move(attempt));
      cv_.notify_one();
      return;
    }
  }
  fail(attempt, AuthFailure::kOverloaded, now_ms);
}

void DeviceAuthenticator::Impl::run_lookups() {
  while (true) {
    Attempt attempt;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      // Queued attempts are answered even when stopping: `done` is owed.
      if (queue_.empty()) return;
      attempt = std::move(queue_.front());
      queue_.pop_front();
    }
    look_up(attempt);
  }
}

void DeviceAuthenticator::Impl::look_up(Attempt& attempt) {
  store::Result<store::Device> found = store_->get_device("", attempt.device_id);
  const int64_t now = clock_();
  if (!found.ok()) {
    fail(attempt,
         found.status().code == store::Code::kNotFound ? AuthFailure::kUnknownDevice
                                                       : AuthFailure::kStoreUnavailable,
         now);
    return;
  }
  const store::Device& device = found.value();
  if (attempt.method == AuthMethod::kSignature) {
    if (device.secret_sealed.empty()) {
      fail(attempt, AuthFailure::kNoSecret, now);
      return;
    }
    OpenResult secret = keys_->open(device.secret_sealed, device.id);
    if (!secret.ok()) {
      spdlog::error("device_auth.secret_unreadable device={} error=\"{}\"", device.id,
                    secret.error);
      fail(attempt, AuthFailure::kSecretUnreadable, now);
      return;
    }
    std::string expected = sign_credential(secret.plaintext, attempt.client_id, attempt.device_id,
                                           attempt.timestamp_text);
    OPENSSL_cleanse(secret.plaintext.data(), secret.plaintext.size());
    if (!constant_time_equal(expected, attempt.signature)) {
      fail(attempt, AuthFailure::kBadSignature, now);
      return;
    }
  }
  // Checked after the proof of identity, so "disabled" is only ever told to
  // the device itself.
  if (device.disabled) {
    fail(attempt, AuthFailure::kDisabled, now);
    return;
  }
  succeed(attempt);
}

DeviceAuthenticator::DeviceAuthenticator(std::shared_ptr<store::Store> store,
                                         std::shared_ptr<const KeyRing> keys,
                                         DeviceAuthConfig config,
                                         std::shared_ptr<gateway::Authenticator> fallback,
                                         ClockMs clock)
    : impl_(std::make_shared<Impl>(std::move(store), std::move(keys), config, std::move(fallback),
                                   std::move(clock))) {}

DeviceAuthenticator::~DeviceAuthenticator() {
  impl_->stop();
}

void DeviceAuthenticator::authenticate(const AuthRequest& request,
                                       std::function<void(AuthResult)> done) {
  impl_->authenticate(request, std::move(done));
}

}  // namespace counterlink::platform
