#include "rate_limiter.h"

#include <algorithm>

namespace counterlink::platform {

FailureLimiter::FailureLimiter(FailureRateLimit limit, size_t max_entries)
    : limit_(limit), max_entries_(std::max<size_t>(max_entries, 1)) {}

FailureLimiter::Bucket* FailureLimiter::refresh(const std::string& key, int64_t now_ms) {
  auto it = buckets_.find(key);
  if (it == buckets_.end()) return nullptr;
  Bucket& b = it->second;
  const double capacity = limit_.failures;
  if (now_ms > b.updated_ms && limit_.window_ms > 0) {
    b.tokens += capacity * double(now_ms - b.updated_ms) / double(limit_.window_ms);
    b.updated_ms = now_ms;
  } else if (limit_.window_ms <= 0) {
    b.tokens = capacity;
  }
  if (b.tokens >= capacity) {
    lru_.erase(b.lru);
    buckets_.erase(it);
    return nullptr;
  }
  return &b;
}

bool FailureLimiter::exhausted(const std::string& key, int64_t now_ms) {
  if (limit_.failures == 0) return false;
  std::lock_guard lock(mutex_);
  Bucket* b = refresh(key, now_ms);
  return b != nullptr && b->tokens < 1.0;
}

bool FailureLimiter::clean(const std::string& key, int64_t now_ms) {
  if (limit_.failures == 0) return true;
  std::lock_guard lock(mutex_);
  return refresh(key, now_ms) == nullptr;
}

void FailureLimiter::record_failure(const std::string& key, int64_t now_ms) {
  if (limit_.failures == 0) return;
  std::lock_guard lock(mutex_);
  Bucket* b = refresh(key, now_ms);
  if (b == nullptr) {
    if (buckets_.size() >= max_entries_) {
      buckets_.erase(lru_.back());
      lru_.pop_back();
      ++evictions_;
    }
    lru_.push_front(key);
    Bucket fresh;
    fresh.tokens = limit_.failures;
    fresh.updated_ms = now_ms;
    fresh.lru = lru_.begin();
    b = &buckets_.emplace(key, fresh).first->second;
  } else {
    lru_.splice(lru_.begin(), lru_, b->lru);
  }
  b->tokens = std::max(0.0, b->tokens - 1.0);
}

size_t FailureLimiter::size() const {
  std::lock_guard lock(mutex_);
  return buckets_.size();
}

uint64_t FailureLimiter::evictions() const {
  std::lock_guard lock(mutex_);
  return evictions_;
}

}  // namespace counterlink::platform
