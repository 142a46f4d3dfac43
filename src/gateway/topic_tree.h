// Subscription trie of one worker. Holds the subscriptions of the sessions
// that worker owns, plus the shared-subscription groups whose home it is.
// Loop-thread only; no locking.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "counterlink/mqtt/packet.h"

namespace counterlink::gateway {

struct Session;

struct Subscriber {
  Session* session;
  mqtt::SubscribeOptions options;
  uint32_t subscription_id;  // 0 = none
};

// A member of a shared-subscription group; members may live on any worker.
struct SharedMember {
  unsigned worker;
  std::string client_id;
  uint64_t session_serial;
  mqtt::SubscribeOptions options;
  uint32_t subscription_id;
  bool online = true;  // the member's session has a connection
};

struct SharedGroup {
  std::string name;
  std::vector<SharedMember> members;
  size_t next = 0;  // round-robin cursor

  // The next member round-robin, preferring connected ones; an offline
  // persistent member is chosen only when none is online (it then queues).
  const SharedMember* pick() {
    if (members.empty()) return nullptr;
    for (size_t i = 0; i < members.size(); ++i) {
      const SharedMember& m = members[next++ % members.size()];
      if (m.online) return &m;
    }
    return &members[next++ % members.size()];
  }
};

class TopicTree {
 public:
  // Adds or replaces the subscription of `subscriber.session` on `filter`.
  // Returns true if it replaced an existing one.
  bool subscribe(std::string_view filter, const Subscriber& subscriber);
  // Returns true if the session had a subscription on `filter`.
  bool unsubscribe(std::string_view filter, const Session* session);

  // Adds or replaces a member (by client id) of group `group` on `filter`.
  bool add_shared(std::string_view group, std::string_view filter, SharedMember member);
  // Removes the member whose client id and serial match; true if found.
  bool remove_shared(std::string_view group, std::string_view filter, std::string_view client_id,
                     uint64_t session_serial);

  // Marks the member (client id and serial) of `group` on `filter` as online
  // or offline; no-op if it is not a member.
  void set_shared_online(std::string_view group, std::string_view filter,
                         std::string_view client_id, uint64_t session_serial, bool online);

  // Calls on_subscriber(const Subscriber&) for every matching subscription and
  // on_group(SharedGroup&) for every matching shared group.
  template <typename OnSubscriber, typename OnGroup>
  void match(std::string_view topic, OnSubscriber&& on_subscriber, OnGroup&& on_group);

  size_t size() const { return count_; }

 private:
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct Node {
    std::unordered_map<std::string, std::unique_ptr<Node>, StringHash, std::equal_to<>> children;
    std::vector<Subscriber> subscribers;
    std::vector<std::unique_ptr<SharedGroup>> groups;
    Node* parent = nullptr;
    std::string key;
    bool empty() const { return children.empty() && subscribers.empty() && groups.empty(); }
  };

  Node* find_or_create(std::string_view filter);
  Node* find(std::string_view filter);
  void prune(Node* node);

  template <typename OnSubscriber, typename OnGroup>
  void match_level(Node* node, std::string_view rest, bool at_end, bool first_level,
                   OnSubscriber& on_subscriber, OnGroup& on_group);

  Node root_;
  size_t count_ = 0;
};

template <typename OnSubscriber, typename OnGroup>
void TopicTree::match(std::string_view topic, OnSubscriber&& on_subscriber, OnGroup&& on_group) {
  match_level(&root_, topic, false, true, on_subscriber, on_group);
}

// `rest` is the remaining topic after the levels consumed to reach `node`;
// `at_end` says all levels were consumed.
template <typename OnSubscriber, typename OnGroup>
void TopicTree::match_level(Node* node, std::string_view rest, bool at_end, bool first_level,
                            OnSubscriber& on_subscriber, OnGroup& on_group) {
  auto emit = [&](Node* n) {
    for (const Subscriber& s : n->subscribers)
      on_subscriber(s);
    for (auto& g : n->groups)
      on_group(*g);
  };
  if (node->children.empty()) return;
  // "#" at this level matches the parent level and everything below, except
  // that topics beginning with '$' are not matched by a leading wildcard.
  bool dollar = first_level && !rest.empty() && rest.front() == '$';
  if (!dollar) {
    if (auto it = node->children.find(std::string_view("#")); it != node->children.end()) {
      emit(it->second.get());
    }
  }
  if (at_end) return;
  size_t slash = rest.find('/');
  std::string_view level = rest.substr(0, slash);
  std::string_view next =
      slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
  bool next_at_end = slash == std::string_view::npos;
  auto visit = [&](Node* child) {
    if (next_at_end) {
      emit(child);
      // "a/#" also matches "a": handled by the "#" child of `child`.
      if (auto it = child->children.find(std::string_view("#")); it != child->children.end()) {
        emit(it->second.get());
      }
    } else {
      match_level(child, next, false, false, on_subscriber, on_group);
    }
  };
  if (auto it = node->children.find(level); it != node->children.end()) visit(it->second.get());
  if (!dollar) {
    if (auto it = node->children.find(std::string_view("+")); it != node->children.end()) {
      visit(it->second.get());
    }
  }
}

}  // namespace counterlink::gateway
