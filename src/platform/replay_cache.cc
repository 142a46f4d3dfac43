#include "replay_cache.h"

#include <algorithm>

namespace counterlink::platform {

ReplayCache::ReplayCache(size_t max_entries) : max_entries_(std::max<size_t>(max_entries, 1)) {}

void ReplayCache::expire(int64_t now_ms) {
  while (!by_expiry_.empty() && by_expiry_.begin()->first < now_ms) {
    entries_.erase(by_expiry_.begin()->second);
    by_expiry_.erase(by_expiry_.begin());
  }
}

bool ReplayCache::reserve(const std::string& key, int64_t expires_ms, int64_t now_ms) {
  std::lock_guard lock(mutex_);
  expire(now_ms);
  if (entries_.count(key) != 0) return false;
  if (entries_.size() >= max_entries_) {
    entries_.erase(by_expiry_.begin()->second);
    by_expiry_.erase(by_expiry_.begin());
    ++early_evictions_;
  }
  auto pos = by_expiry_.emplace(expires_ms, key);
  entries_.emplace(key, pos);
  return true;
}

void ReplayCache::release(const std::string& key) {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  by_expiry_.erase(it->second);
  entries_.erase(it);
}

size_t ReplayCache::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

uint64_t ReplayCache::early_evictions() const {
  std::lock_guard lock(mutex_);
  return early_evictions_;
}

}  // namespace counterlink::platform
