// Retained messages, shared by all workers.
//
// Only retained publishes and new subscriptions touch this store, never the
// ordinary publish path; a reader-writer lock is enough here.
#pragma once

#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "counterlink/gateway/message.h"
#include "counterlink/obs/metrics.h"

namespace counterlink::gateway {

class RetainedStore {
 public:
  // `count` (nullable) follows the number of retained messages.
  explicit RetainedStore(obs::Gauge* count) : count_gauge_(count) {}

  // Stores `message` under its topic, or clears the topic if the payload is
  // empty (MQTT-3.3.1-6). Returns the number of retained messages after.
  size_t put(const MessagePtr& message);

  // Messages whose topic matches `filter` and that have not expired at
  // `now_ms` (expired ones are removed as they are found).
  std::vector<MessagePtr> match(std::string_view filter, int64_t now_ms);

  size_t size() const;

 private:
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct Node {
    std::unordered_map<std::string, std::unique_ptr<Node>, StringHash, std::equal_to<>> children;
    MessagePtr message;
  };
  void collect(Node* node, std::string_view filter_rest, bool filter_done, bool first_level,
               int64_t now_ms, std::vector<MessagePtr>& out, std::vector<std::string>& expired);
  void collect_all(Node* node, bool first_level, int64_t now_ms, std::vector<MessagePtr>& out,
                   std::vector<std::string>& expired);
  // Clears `topic`; with only_expired_at >= 0, only if its message expired then.
  size_t erase_locked(std::string_view topic, int64_t only_expired_at = -1);

  mutable std::shared_mutex mutex_;
  Node root_;
  size_t count_ = 0;
  obs::Gauge* count_gauge_;
};

}  // namespace counterlink::gateway
