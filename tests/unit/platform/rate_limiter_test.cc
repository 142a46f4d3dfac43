#include "rate_limiter.h"

#include <gtest/gtest.h>

#include "replay_cache.h"

namespace counterlink::platform {
namespace {

TEST(FailureLimiter, ExhaustsAfterTheConfiguredFailuresAndRefillsOverTheWindow) {
  FailureLimiter limiter({5, 60000}, 100);
  for (int i = 0; i < 5; ++i) {
    EXPECT_FALSE(limiter.exhausted("a", 0));
    limiter.record_failure("a", 0);
  }
  EXPECT_TRUE(limiter.exhausted("a", 0));
  EXPECT_TRUE(limiter.exhausted("a", 11999));   // 0.99 token
  EXPECT_FALSE(limiter.exhausted("a", 12000));  // one token back
  EXPECT_FALSE(limiter.clean("a", 12000));
  EXPECT_TRUE(limiter.clean("a", 60000));
  EXPECT_EQ(limiter.size(), 0u);  // a full bucket holds no state
  EXPECT_FALSE(limiter.exhausted("b", 0));
}

TEST(FailureLimiter, ZeroFailuresDisablesTheLimit) {
  FailureLimiter limiter({0, 60000}, 100);
  for (int i = 0; i < 100; ++i)
    limiter.record_failure("a", 0);
  EXPECT_FALSE(limiter.exhausted("a", 0));
}

TEST(FailureLimiter, MemoryIsCappedByEvictingTheLeastRecentlyTouchedKey) {
  FailureLimiter limiter({1, 60000}, 3);
  for (const char* k : {"a", "b", "c"})
    limiter.record_failure(k, 0);
  limiter.record_failure("a", 1);  // a is now the most recent
  limiter.record_failure("d", 2);  // evicts b
  EXPECT_EQ(limiter.size(), 3u);
  EXPECT_EQ(limiter.evictions(), 1u);
  EXPECT_TRUE(limiter.exhausted("a", 2));
  EXPECT_FALSE(limiter.exhausted("b", 2));
  EXPECT_TRUE(limiter.exhausted("d", 2));
}

TEST(ReplayCache, RefusesAKeyUntilItExpires) {
  ReplayCache cache(10);
  EXPECT_TRUE(cache.reserve("k", 1000, 0));
  EXPECT_FALSE(cache.reserve("k", 1000, 999));
  EXPECT_TRUE(cache.reserve("k", 5000, 1001));
}

TEST(ReplayCache, ReleasedKeysCanBeReservedAgain) {
  ReplayCache cache(10);
  EXPECT_TRUE(cache.reserve("k", 1000, 0));
  cache.release("k");
  EXPECT_TRUE(cache.reserve("k", 1000, 0));
}

TEST(ReplayCache, WhenFullForgetsTheEntryClosestToExpiry) {
  ReplayCache cache(2);
  EXPECT_TRUE(cache.reserve("soon", 100, 0));
  EXPECT_TRUE(cache.reserve("late", 900, 0));
  EXPECT_TRUE(cache.reserve("new", 800, 0));
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(cache.early_evictions(), 1u);
  EXPECT_FALSE(cache.reserve("late", 900, 1));
  EXPECT_TRUE(cache.reserve("soon", 100, 1));
}

}  // namespace
}  // namespace counterlink::platform
