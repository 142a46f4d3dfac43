#include "retained.h"

#include <algorithm>

#include <gtest/gtest.h>

namespace counterlink::gateway {
namespace {

MessagePtr msg(std::string topic, std::string payload, int64_t expires_at = 0) {
  auto m = std::make_shared<Message>();
  m->topic = std::move(topic);
  m->payload = std::move(payload);
  m->retain = true;
  m->expires_at_ms = expires_at;
  return m;
}

std::vector<std::string> topics(const std::vector<MessagePtr>& ms) {
  std::vector<std::string> out;
  for (const auto& m : ms)
    out.push_back(m->topic);
  std::sort(out.begin(), out.end());
  return out;
}

TEST(RetainedStore, ReplacesAndClearsWithEmptyPayload) {
  obs::Gauge gauge;
  RetainedStore store(&gauge);
  store.put(msg("a/b", "1"));
  store.put(msg("a/b", "2"));
  EXPECT_EQ(store.size(), 1u);
  EXPECT_EQ(gauge.value(), 1);
  auto found = store.match("a/b", 0);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0]->payload, "2");
  store.put(msg("a/b", ""));
  EXPECT_EQ(store.size(), 0u);
  EXPECT_EQ(gauge.value(), 0);
  EXPECT_TRUE(store.match("#", 0).empty());
}

TEST(RetainedStore, MatchesWildcardFilters) {
  RetainedStore store(nullptr);
  for (const char* t : {"sport", "sport/tennis", "sport/tennis/p1", "sport/golf", "$SYS/x"}) {
    store.put(msg(t, "x"));
  }
  EXPECT_EQ(topics(store.match("sport/#", 0)),
            (std::vector<std::string>{"sport", "sport/golf", "sport/tennis", "sport/tennis/p1"}));
  EXPECT_EQ(topics(store.match("sport/+", 0)),
            (std::vector<std::string>{"sport/golf", "sport/tennis"}));
  EXPECT_EQ(topics(store.match("#", 0)).size(), 4u) << "$SYS is not matched by #";
  EXPECT_EQ(topics(store.match("+/tennis/#", 0)),
            (std::vector<std::string>{"sport/tennis", "sport/tennis/p1"}));
  EXPECT_EQ(topics(store.match("$SYS/#", 0)), (std::vector<std::string>{"$SYS/x"}));
}

TEST(RetainedStore, DropsExpiredMessagesWhenFound) {
  RetainedStore store(nullptr);
  store.put(msg("t/old", "x", 1000));
  store.put(msg("t/new", "x", 5000));
  EXPECT_EQ(topics(store.match("t/#", 2000)), (std::vector<std::string>{"t/new"}));
  EXPECT_EQ(store.size(), 1u);
}

}  // namespace
}  // namespace counterlink::gateway
