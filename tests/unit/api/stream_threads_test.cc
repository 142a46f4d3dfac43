// StreamThreads: one thread per stream, the max_streams bound, and
// close_and_join() cancelling and waiting for every handler.
#include "stream_threads.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>

#include <gtest/gtest.h>

namespace counterlink::api {
namespace {

// A body that runs until cancelled or released.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  int running = 0;
  int returned = 0;

  std::function<void()> body() {
    return [this] {
      std::unique_lock lock(mu);
      ++running;
      cv.notify_all();
      cv.wait(lock, [&] { return open; });
      ++returned;
      cv.notify_all();
    };
  }
  std::function<void()> cancel() {
    return [this] {
      std::lock_guard lock(mu);
      open = true;
      cv.notify_all();
    };
  }
  bool wait(const std::function<bool()>& ready) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(10), ready);
  }
};

TEST(StreamThreads, RefusesStreamsOverTheLimitUntilOneReturns) {
  Gate gate;
  StreamThreads threads(2);
  EXPECT_EQ(threads.start(gate.body(), gate.cancel()), StreamThreads::Start::kStarted);
  EXPECT_EQ(threads.start(gate.body(), gate.cancel()), StreamThreads::Start::kStarted);
  EXPECT_TRUE(gate.wait([&] { return gate.running == 2; }));
  EXPECT_EQ(threads.running(), 2u);
  bool ran = false;
  EXPECT_EQ(threads.start([&] { ran = true; }, nullptr), StreamThreads::Start::kFull);
  gate.cancel()();  // both return
  EXPECT_TRUE(gate.wait([&] { return gate.returned == 2; }));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (threads.running() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::yield();
  EXPECT_EQ(threads.running(), 0u);
  EXPECT_EQ(threads.start([] {}, nullptr), StreamThreads::Start::kStarted);
  threads.close_and_join();
  EXPECT_FALSE(ran);
}

TEST(StreamThreads, CloseAndJoinCancelsEveryStreamAndWaitsForIt) {
  Gate gate;
  StreamThreads threads(8);
  for (int i = 0; i < 5; ++i)
    ASSERT_EQ(threads.start(gate.body(), gate.cancel()), StreamThreads::Start::kStarted);
  EXPECT_TRUE(gate.wait([&] { return gate.running == 5; }));
  threads.close_and_join();
  {
    std::lock_guard lock(gate.mu);
    EXPECT_EQ(gate.returned, 5);  // all returned before close_and_join did
  }
  EXPECT_EQ(threads.start([] {}, nullptr), StreamThreads::Start::kClosed);
  threads.close_and_join();  // idempotent
}

TEST(StreamThreads, AnExceptionEndsOnlyItsStream) {
  StreamThreads threads(1);
  EXPECT_EQ(threads.start([] { throw std::runtime_error("boom"); }, nullptr),
            StreamThreads::Start::kStarted);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (threads.running() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::yield();
  EXPECT_EQ(threads.start([] {}, nullptr), StreamThreads::Start::kStarted);
}

}  // namespace
}  // namespace counterlink::api
