// Credentials already used on this node, so each signed credential connects
// at most once within its validity window. Private to the platform.
//
// A key is reserved before the (slow) store lookup and released if the
// credential turns out to be invalid, so two concurrent CONNECTs with the
// same credential cannot both pass. Entries expire when the credential's
// timestamp leaves the window (after that the window check refuses it
// anyway). Bounded: when full, expired entries go first, then the entries
// closest to expiry (counted: past the cap, the oldest credentials could be
// replayed for the rest of their window - size the cap above the connect
// rate times the window).
//
// Per process: a credential used on one gateway node is not known to the
// others (documented in docs/device-protocol.md).
//
// Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>

namespace counterlink::platform {

class ReplayCache {
 public:
  explicit ReplayCache(size_t max_entries);

  // Reserves `key` until `expires_ms`. False if it is already held and not
  // expired at `now_ms` (a replay).
  bool reserve(const std::string& key, int64_t expires_ms, int64_t now_ms);
  // Forgets a reservation (the credential was refused for another reason).
  void release(const std::string& key);

  size_t size() const;
  // Entries dropped before their expiry because the cache was full.
  uint64_t early_evictions() const;

 private:
  void expire(int64_t now_ms);

  const size_t max_entries_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::multimap<int64_t, std::string>::iterator> entries_;
  std::multimap<int64_t, std::string> by_expiry_;
  uint64_t early_evictions_ = 0;
};

}  // namespace counterlink::platform
