#include "commands/commit_queue.h"

#include <future>
#include <vector>

#include <spdlog/spdlog.h>

namespace counterlink::platform {

namespace {
// A failed batch is tried again this many times (the database may be
// restarting or failing over) before its writers are told.
constexpr int kMaxTries = 4;
constexpr int kFirstBackoffMs = 50;
}  // namespace

CommitQueue::CommitQueue(store::Store& store, int32_t max_batch)
    : store_(store), max_batch_(max_batch < 1 ? 1 : max_batch) {}

CommitQueue::~CommitQueue() {
  stop();
}

void CommitQueue::start() {
  std::lock_guard lock(mutex_);
  if (running_ || stopping_) return;
  running_ = true;
  thread_ = std::thread([this] { run(); });
}

void CommitQueue::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  // Never started: fail whatever was pushed.
  std::deque<Item> left;
  {
    std::lock_guard lock(mutex_);
    left.swap(queue_);
  }
  for (auto& item : left) {
    if (item.done) item.done({store::Code::kUnavailable, "the command queue is stopped"}, {});
  }
}

void CommitQueue::push(store::Write write, Done done) {
  {
    std::lock_guard lock(mutex_);
    if (!stopping_) {
      queue_.push_back({std::move(write), std::move(done)});
      cv_.notify_one();
      return;
    }
  }
  if (done) done({store::Code::kUnavailable, "the command queue is stopped"}, {});
}

store::Result<store::WriteOutcome> CommitQueue::commit(store::Write write) {
  std::promise<store::Result<store::WriteOutcome>> promise;
  auto future = promise.get_future();
  push(std::move(write), [&promise](const store::Status& batch, const store::WriteOutcome& out) {
    if (batch.ok()) {
      promise.set_value(out);
    } else {
      promise.set_value(batch);
    }
  });
  return future.get();
}

uint64_t CommitQueue::batches() const {
  std::lock_guard lock(mutex_);
  return batches_;
}
uint64_t CommitQueue::writes() const {
  std::lock_guard lock(mutex_);
  return writes_;
}
uint64_t CommitQueue::retries() const {
  std::lock_guard lock(mutex_);
  return retries_;
}

void CommitQueue::run() {
  std::vector<Item> batch;
  std::vector<store::Write> writes;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) break;  // stopping, and everything is applied
      batch.clear();
      while (!queue_.empty() && batch.size() < static_cast<size_t>(max_batch_)) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    writes.clear();
    writes.reserve(batch.size());
    for (auto& item : batch)
      writes.push_back(item.write);

    store::Result<std::vector<store::WriteOutcome>> result = store::Status{};
    int backoff_ms = kFirstBackoffMs;
    for (int attempt = 1;; ++attempt) {
      result = store_.apply_writes(writes);
      if (result.ok() || result.status().code != store::Code::kUnavailable ||
          attempt == kMaxTries) {
        break;
      }
      {
        std::lock_guard lock(mutex_);
        ++retries_;
      }
      spdlog::warn("commands.commit_retry attempt={} writes={} error=\"{}\"", attempt,
                   writes.size(), result.status().message);
      std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
      backoff_ms *= 2;
    }
    {
      std::lock_guard lock(mutex_);
      ++batches_;
      writes_ += batch.size();
    }
    if (!result.ok()) {
      spdlog::error("commands.commit_failed writes={} error=\"{}\"", writes.size(),
                    result.status().message);
      for (auto& item : batch) {
        if (item.done) item.done(result.status(), {});
      }
      continue;
    }
    const auto& outcomes = result.value();
    for (size_t i = 0; i < batch.size(); ++i) {
      if (!batch[i].done) continue;
      if (i < outcomes.size()) {
        batch[i].done({}, outcomes[i]);
      } else {
        batch[i].done({store::Code::kUnavailable, "store returned too few outcomes"}, {});
      }
    }
  }
}

}  // namespace counterlink::platform
