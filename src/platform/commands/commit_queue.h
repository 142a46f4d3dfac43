// Group commit: writes from many threads (API handlers, gateway loops, the
// sweeper) go into one queue; one thread applies whatever has accumulated
// in one store transaction (Store::apply_writes), so a fsync is paid per
// batch, not per command. Callbacks run on that thread, in write order,
// after the batch is durable. Private to the delivery engine.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "counterlink/store/store.h"

namespace counterlink::platform {

class CommitQueue {
 public:
  // `batch` is kOk and `outcome` the write's outcome once committed; on a
  // store failure `batch` says so and `outcome` is empty.
  using Done = std::function<void(const store::Status& batch, const store::WriteOutcome& outcome)>;

  CommitQueue(store::Store& store, int32_t max_batch);
  ~CommitQueue();

  void start();
  // Applies what is queued, then stops. Writes pushed later fail with
  // kUnavailable at once.
  void stop();

  void push(store::Write write, Done done);
  // Pushes and waits for the outcome.
  store::Result<store::WriteOutcome> commit(store::Write write);

  uint64_t batches() const;
  uint64_t writes() const;
  uint64_t retries() const;

 private:
  struct Item {
    store::Write write;
    Done done;
  };
  void run();

  store::Store& store_;
  const int32_t max_batch_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  bool running_ = false;
  bool stopping_ = false;
  uint64_t batches_ = 0;
  uint64_t writes_ = 0;
  uint64_t retries_ = 0;
  std::thread thread_;
};

}  // namespace counterlink::platform
