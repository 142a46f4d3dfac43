#include "topic_tree.h"

#include <algorithm>

namespace counterlink::gateway {

TopicTree::Node* TopicTree::find_or_create(std::string_view filter) {
  Node* node = &root_;
  size_t start = 0;
  while (true) {
    size_t slash = filter.find('/', start);
    std::string_view level =
        filter.substr(start, slash == std::string_view::npos ? slash : slash - start);
    auto it = node->children.find(level);
    if (it == node->children.end()) {
      auto child = std::make_unique<Node>();
      child->parent = node;
      child->key = std::string(level);
      Node* raw = child.get();
      node->children.emplace(child->key, std::move(child));
      node = raw;
    } else {
      node = it->second.get();
    }
    if (slash == std::string_view::npos) return node;
    start = slash + 1;
  }
}

TopicTree::Node* TopicTree::find(std::string_view filter) {
  Node* node = &root_;
  size_t start = 0;
  while (true) {
    size_t slash = filter.find('/', start);
    std::string_view level =
        filter.substr(start, slash == std::string_view::npos ? slash : slash - start);
    auto it = node->children.find(level);
    if (it == node->children.end()) return nullptr;
    node = it->second.get();
    if (slash == std::string_view::npos) return node;
    start = slash + 1;
  }
}

void TopicTree::prune(Node* node) {
  while (node != &root_ && node->empty()) {
    Node* parent = node->parent;
    parent->children.erase(node->key);  // destroys node
    node = parent;
  }
}

bool TopicTree::subscribe(std::string_view filter, const Subscriber& subscriber) {
  Node* node = find_or_create(filter);
  for (Subscriber& s : node->subscribers) {
    if (s.session == subscriber.session) {
      s = subscriber;
      return true;
    }
  }
  node->subscribers.push_back(subscriber);
  ++count_;
  return false;
}

bool TopicTree::unsubscribe(std::string_view filter, const Session* session) {
  Node* node = find(filter);
  if (node == nullptr) return false;
  auto it = std::find_if(node->subscribers.begin(), node->subscribers.end(),
                         [&](const Subscriber& s) { return s.session == session; });
  if (it == node->subscribers.end()) return false;
  *it = node->subscribers.back();
  node->subscribers.pop_back();
  if (node->subscribers.empty()) node->subscribers.shrink_to_fit();
  --count_;
  prune(node);
  return true;
}

bool TopicTree::add_shared(std::string_view group, std::string_view filter, SharedMember member) {
  Node* node = find_or_create(filter);
  SharedGroup* target = nullptr;
  for (auto& g : node->groups) {
    if (g->name == group) target = g.get();
  }
  if (target == nullptr) {
    auto g = std::make_unique<SharedGroup>();
    g->name = std::string(group);
    target = g.get();
    node->groups.push_back(std::move(g));
  }
  for (SharedMember& m : target->members) {
    if (m.client_id == member.client_id) {
      m = std::move(member);
      return true;
    }
  }
  target->members.push_back(std::move(member));
  ++count_;
  return false;
}

void TopicTree::set_shared_online(std::string_view group, std::string_view filter,
                                  std::string_view client_id, uint64_t session_serial,
                                  bool online) {
  Node* node = find(filter);
  if (node == nullptr) return;
  for (auto& g : node->groups) {
    if (g->name != group) continue;
    for (SharedMember& m : g->members) {
      if (m.client_id == client_id && m.session_serial == session_serial) m.online = online;
    }
  }
}

bool TopicTree::remove_shared(std::string_view group, std::string_view filter,
                              std::string_view client_id, uint64_t session_serial) {
  Node* node = find(filter);
  if (node == nullptr) return false;
  for (size_t gi = 0; gi < node->groups.size(); ++gi) {
    SharedGroup& g = *node->groups[gi];
    if (g.name != group) continue;
    auto it = std::find_if(g.members.begin(), g.members.end(), [&](const SharedMember& m) {
      return m.client_id == client_id &&
             (session_serial == 0 || m.session_serial == session_serial);
    });
    if (it == g.members.end()) return false;
    g.members.erase(it);
    --count_;
    if (g.members.empty()) {
      node->groups.erase(node->groups.begin() + static_cast<std::ptrdiff_t>(gi));
      prune(node);
    }
    return true;
  }
  return false;
}

}  // namespace counterlink::gateway
