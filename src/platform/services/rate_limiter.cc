// TenantRateLimiter: one token bucket per tenant.
#include <cmath>
#include <mutex>
#include <unordered_map>

#include "counterlink/platform/services.h"

namespace counterlink::platform {

namespace {

struct Bucket {
  int32_t rate = 0;  // tokens per second; 0 = unlimited
  store::TimeMs settings_ms = 0;
  bool has_settings = false;
  double tokens = 0;
  store::TimeMs refilled_ms = 0;
};

}  // namespace

struct TenantRateLimiter::State {
  store::Store& store;
  RateLimitOptions options;
  ClockMs clock;
  std::mutex mutex;
  std::unordered_map<std::string, Bucket> buckets;  // guarded by mutex
};

TenantRateLimiter::TenantRateLimiter(store::Store& store, RateLimitOptions options, ClockMs clock)
    : state_(
          new State{store, options, clock ? std::move(clock) : ClockMs(system_clock_ms), {}, {}}) {}

TenantRateLimiter::~TenantRateLimiter() = default;

api::Outcome TenantRateLimiter::admit(const api::Principal& principal) {
  if (principal.tenant_id.empty()) return std::nullopt;  // operators
  State& s = *state_;
  const store::TimeMs now = s.clock();

  bool stale;
  {
    std::lock_guard lock(s.mutex);
    auto it = s.buckets.find(principal.tenant_id);
    stale = it == s.buckets.end() || !it->second.has_settings ||
            now - it->second.settings_ms >= s.options.settings_ttl_ms ||
            now < it->second.settings_ms;
  }
  std::optional<int32_t> fresh_rate;
  if (stale) {
    // Outside the lock: the store may block.
    auto tenant = s.store.get_tenant(principal.tenant_id);
    if (tenant.ok()) fresh_rate = tenant.value().api_rate_limit;
  }

  std::lock_guard lock(s.mutex);
  if (s.buckets.size() >= s.options.max_tenants && !s.buckets.count(principal.tenant_id)) {
    s.buckets.clear();
  }
  Bucket& b = s.buckets[principal.tenant_id];
  if (fresh_rate) {
    if (!b.has_settings || b.rate != *fresh_rate) {
      b.tokens = 2.0 * *fresh_rate;  // a new or changed quota starts with a full burst
      b.refilled_ms = now;
    }
    b.rate = *fresh_rate;
    b.settings_ms = now;
    b.has_settings = true;
  }
  if (!b.has_settings || b.rate <= 0) return std::nullopt;  // unknown (store down) or unlimited

  const double capacity = 2.0 * b.rate;
  if (now > b.refilled_ms) {
    b.tokens = std::min(capacity, b.tokens + (now - b.refilled_ms) * b.rate / 1000.0);
    b.refilled_ms = now;
  }
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return std::nullopt;
  }
  const int retry_after = std::max(1, static_cast<int>(std::ceil((1.0 - b.tokens) / b.rate)));
  return api::rate_limited(retry_after, "This tenant's API quota of " + std::to_string(b.rate) +
                                            " requests per second is used up; retry after " +
                                            std::to_string(retry_after) +
                                            " s, or ask the operator to raise api_rate_limit.");
}

}  // namespace counterlink::platform
