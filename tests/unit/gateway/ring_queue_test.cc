#include "ring_queue.h"

#include <gtest/gtest.h>

namespace counterlink::gateway {
namespace {

TEST(RingQueue, KeepsFifoOrderAcrossGrowthAndWrap) {
  RingQueue<int> q;
  for (int i = 0; i < 3; ++i)
    q.push_back(i);
  q.pop_front();
  for (int i = 3; i < 20; ++i)
    q.push_back(i);
  for (int expect = 1; expect < 20; ++expect) {
    ASSERT_EQ(q.front(), expect);
    q.pop_front();
  }
  EXPECT_TRUE(q.empty());
}

TEST(RingQueue, EraseInTheMiddleKeepsOrder) {
  RingQueue<int> q;
  for (int i = 0; i < 6; ++i)
    q.push_back(i);
  q.erase(2);
  EXPECT_EQ(q.size(), 5u);
  std::vector<int> got;
  for (size_t i = 0; i < q.size(); ++i)
    got.push_back(q[i]);
  EXPECT_EQ(got, (std::vector<int>{0, 1, 3, 4, 5}));
}

}  // namespace
}  // namespace counterlink::gateway
