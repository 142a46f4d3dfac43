#include "retained.h"

#include <mutex>

namespace counterlink::gateway {
namespace {
bool expired(const MessagePtr& m, int64_t now_ms) {
  return m->expires_at_ms != 0 && m->expires_at_ms <= now_ms;
}
}  // namespace

size_t RetainedStore::size() const {
  std::shared_lock lock(mutex_);
  return count_;
}

size_t RetainedStore::erase_locked(std::string_view topic, int64_t only_expired_at) {
  // Walk down remembering the path, clear the message, prune empty nodes.
  std::vector<std::pair<Node*, std::string_view>> path;
  Node* node = &root_;
  size_t start = 0;
  while (true) {
    size_t slash = topic.find('/', start);
    std::string_view level =
        topic.substr(start, slash == std::string_view::npos ? slash : slash - start);
    auto it = node->children.find(level);
    if (it == node->children.end()) return count_;
    path.emplace_back(node, level);
    node = it->second.get();
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  if (node->message) {
    if (only_expired_at >= 0 && !expired(node->message, only_expired_at)) return count_;
    node->message.reset();
    --count_;
    if (count_gauge_) count_gauge_->sub(1);
  }
  for (auto it = path.rbegin(); it != path.rend(); ++it) {
    auto child = it->first->children.find(it->second);
    if (child->second->message || !child->second->children.empty()) break;
    it->first->children.erase(child);
  }
  return count_;
}

size_t RetainedStore::put(const MessagePtr& message) {
  std::unique_lock lock(mutex_);
  const std::string& topic = message->topic;
  if (message->payload.empty()) return erase_locked(topic);
  Node* node = &root_;
  size_t start = 0;
  while (true) {
    size_t slash = topic.find('/', start);
    std::string_view level =
        std::string_view(topic).substr(start, slash == std::string::npos ? slash : slash - start);
    auto it = node->children.find(level);
    if (it == node->children.end()) {
      it = node->children.emplace(std::string(level), std::make_unique<Node>()).first;
    }
    node = it->second.get();
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  if (!node->message) {
    ++count_;
    if (count_gauge_) count_gauge_->add(1);
  }
  node->message = message;
  return count_;
}

void RetainedStore::collect_all(Node* node, bool first_level, int64_t now_ms,
                                std::vector<MessagePtr>& out,
                                std::vector<std::string>& expired_topics) {
  for (auto& [key, child] : node->children) {
    if (first_level && !key.empty() && key.front() == '$') continue;
    if (child->message) {
      if (expired(child->message, now_ms)) {
        expired_topics.push_back(child->message->topic);
      } else {
        out.push_back(child->message);
      }
    }
    collect_all(child.get(), false, now_ms, out, expired_topics);
  }
}

void RetainedStore::collect(Node* node, std::string_view rest, bool filter_done, bool first_level,
                            int64_t now_ms, std::vector<MessagePtr>& out,
                            std::vector<std::string>& expired_topics) {
  (void)filter_done;
  size_t slash = rest.find('/');
  std::string_view level = rest.substr(0, slash);
  bool last = slash == std::string_view::npos;
  std::string_view next = last ? std::string_view() : rest.substr(slash + 1);

  auto take = [&](Node* n) {
    if (!n->message) return;
    if (expired(n->message, now_ms)) {
      expired_topics.push_back(n->message->topic);
    } else {
      out.push_back(n->message);
    }
  };
  if (level == "#") {
    // "#" matches the parent level itself (handled by the caller) and all below.
    collect_all(node, first_level, now_ms, out, expired_topics);
    return;
  }
  auto descend = [&](Node* child) {
    if (last) {
      take(child);
    } else {
      // "a/#" matches "a" too.
      if (next == "#") take(child);
      collect(child, next, false, false, now_ms, out, expired_topics);
    }
  };
  if (level == "+") {
    for (auto& [key, child] : node->children) {
      if (first_level && !key.empty() && key.front() == '$') continue;
      descend(child.get());
    }
  } else if (auto it = node->children.find(level); it != node->children.end()) {
    descend(it->second.get());
  }
}

std::vector<MessagePtr> RetainedStore::match(std::string_view filter, int64_t now_ms) {
  std::vector<MessagePtr> out;
  std::vector<std::string> expired_topics;
  {
    std::shared_lock lock(mutex_);
    if (count_ == 0) return out;
    collect(&root_, filter, false, true, now_ms, out, expired_topics);
  }
  if (!expired_topics.empty()) {
    std::unique_lock lock(mutex_);
    for (const auto& t : expired_topics)
      erase_locked(t, now_ms);
  }
  return out;
}

}  // namespace counterlink::gateway
