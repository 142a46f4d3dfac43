// Token buckets of authentication failures, keyed by a string (source
// address or device id). Private to the platform.
//
// A key starts with a full bucket of `failures` tokens; each failure takes
// one; tokens come back continuously at failures / window_ms. Keys whose
// bucket is full again hold no state, so memory is proportional to recent
// failures, and capped at `max_entries` (the least recently touched key is
// evicted first; an evicted key simply starts full again).
//
// Thread-safe: one mutex per limiter; every call is O(1) amortised.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <string>
#include <unordered_map>

#include "counterlink/platform/device_access.h"

namespace counterlink::platform {

class FailureLimiter {
 public:
  FailureLimiter(FailureRateLimit limit, size_t max_entries);

  // True if the key has less than one token left: refuse before any work.
  bool exhausted(const std::string& key, int64_t now_ms);
  // True if the key's bucket is full (no failure within the refill time).
  bool clean(const std::string& key, int64_t now_ms);
  // Takes one token (not below zero).
  void record_failure(const std::string& key, int64_t now_ms);

  size_t size() const;
  uint64_t evictions() const;

 private:
  struct Bucket {
    double tokens = 0;
    int64_t updated_ms = 0;
    std::list<std::string>::iterator lru;  // position in lru_
  };
  // Refills the bucket to now; erases it and returns nullptr if it is full.
  Bucket* refresh(const std::string& key, int64_t now_ms);

  const FailureRateLimit limit_;
  const size_t max_entries_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Bucket> buckets_;
  std::list<std::string> lru_;  // front = most recently touched
  uint64_t evictions_ = 0;
};

}  // namespace counterlink::platform
