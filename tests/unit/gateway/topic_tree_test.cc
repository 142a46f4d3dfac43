#include "topic_tree.h"

#include <algorithm>
#include <set>

#include <gtest/gtest.h>

#include "broker.h"

namespace counterlink::gateway {
namespace {

std::set<Session*> matches(TopicTree& tree, std::string_view topic) {
  std::set<Session*> out;
  tree.match(
      topic, [&](const Subscriber& s) { out.insert(s.session); }, [](SharedGroup&) {});
  return out;
}

class TopicTreeTest : public ::testing::Test {
 protected:
  Session a_, b_, c_;
  TopicTree tree_;
  void sub(Session& s, std::string_view filter) { tree_.subscribe(filter, Subscriber{&s, {}, 0}); }
};

TEST_F(TopicTreeTest, MatchesExactTopicsOnly) {
  sub(a_, "sport/tennis");
  EXPECT_EQ(matches(tree_, "sport/tennis"), std::set<Session*>{&a_});
  EXPECT_TRUE(matches(tree_, "sport/tennis/x").empty());
  EXPECT_TRUE(matches(tree_, "sport").empty());
}

TEST_F(TopicTreeTest, MultiLevelWildcardMatchesParentAndDescendants) {
  sub(a_, "sport/#");
  EXPECT_EQ(matches(tree_, "sport").size(), 1u);
  EXPECT_EQ(matches(tree_, "sport/tennis").size(), 1u);
  EXPECT_EQ(matches(tree_, "sport/tennis/player1").size(), 1u);
  EXPECT_TRUE(matches(tree_, "sports").empty());
}

TEST_F(TopicTreeTest, SingleLevelWildcardMatchesOneLevelIncludingEmpty) {
  sub(a_, "sport/+/player");
  sub(b_, "+");
  EXPECT_EQ(matches(tree_, "sport/tennis/player"), std::set<Session*>{&a_});
  EXPECT_EQ(matches(tree_, "sport//player"), std::set<Session*>{&a_});
  EXPECT_EQ(matches(tree_, "finance"), std::set<Session*>{&b_});
  EXPECT_TRUE(matches(tree_, "/finance").count(&b_) == 0);
}

TEST_F(TopicTreeTest, DollarTopicsAreNotMatchedByLeadingWildcards) {
  sub(a_, "#");
  sub(b_, "+/monitor/clients");
  sub(c_, "$SYS/#");
  EXPECT_EQ(matches(tree_, "$SYS/monitor/clients"), std::set<Session*>{&c_});
  EXPECT_EQ(matches(tree_, "x/monitor/clients"), (std::set<Session*>{&a_, &b_}));
}

TEST_F(TopicTreeTest, ResubscribeReplacesAndUnsubscribePrunes) {
  EXPECT_FALSE(tree_.subscribe("a/b", Subscriber{&a_, {}, 1}));
  EXPECT_TRUE(tree_.subscribe("a/b", Subscriber{&a_, {}, 2}));
  EXPECT_EQ(tree_.size(), 1u);
  uint32_t id = 0;
  tree_.match(
      "a/b", [&](const Subscriber& s) { id = s.subscription_id; }, [](SharedGroup&) {});
  EXPECT_EQ(id, 2u);
  EXPECT_TRUE(tree_.unsubscribe("a/b", &a_));
  EXPECT_FALSE(tree_.unsubscribe("a/b", &a_));
  EXPECT_EQ(tree_.size(), 0u);
  EXPECT_TRUE(matches(tree_, "a/b").empty());
}

TEST_F(TopicTreeTest, SharedGroupsAreReportedOncePerMatchingFilter) {
  tree_.add_shared("g", "dev/+/up", SharedMember{0, "m1", 1, {}, 0});
  tree_.add_shared("g", "dev/+/up", SharedMember{1, "m2", 2, {}, 0});
  int groups = 0;
  size_t members = 0;
  tree_.match(
      "dev/7/up", [](const Subscriber&) {},
      [&](SharedGroup& g) {
        ++groups;
        members = g.members.size();
      });
  EXPECT_EQ(groups, 1);
  EXPECT_EQ(members, 2u);
  EXPECT_TRUE(tree_.remove_shared("g", "dev/+/up", "m1", 1));
  EXPECT_TRUE(tree_.remove_shared("g", "dev/+/up", "m2", 0));
  EXPECT_EQ(tree_.size(), 0u);
}

}  // namespace
}  // namespace counterlink::gateway
