#include "stream_threads.h"

#include <exception>
#include <system_error>

#include <spdlog/spdlog.h>

namespace counterlink::api {

StreamThreads::Start StreamThreads::start(std::function<void()> body,
                                          std::function<void()> cancel) {
  join_finished();
  std::lock_guard lock(mu_);
  if (closed_) return Start::kClosed;
  if (running_.size() >= max_streams_) return Start::kFull;
  const uint64_t id = next_id_++;
  Running& slot = running_[id];
  slot.cancel = std::move(cancel);
  try {
    // The thread's epilogue takes mu_, so it cannot look for its slot before
    // the slot holds it.
    slot.thread = std::thread([this, id, body = std::move(body)]() mutable {
      try {
        body();
      } catch (const std::exception& e) {
        spdlog::error("api.stream_thread_exception error=\"{}\"", e.what());
      } catch (...) {
        spdlog::error("api.stream_thread_exception error=unknown");
      }
      body = nullptr;  // release what the stream held before it stops counting
      std::lock_guard done(mu_);
      auto it = running_.find(id);
      if (it == running_.end()) return;  // close_and_join() took the thread
      finished_.push_back(std::move(it->second.thread));
      running_.erase(it);
    });
  } catch (const std::system_error& e) {
    running_.erase(id);
    spdlog::error("api.stream_thread_failed error=\"{}\"", e.what());
    return Start::kFull;
  }
  return Start::kStarted;
}

size_t StreamThreads::running() const {
  std::lock_guard lock(mu_);
  return running_.size();
}

void StreamThreads::join_finished() {
  std::vector<std::thread> done;
  {
    std::lock_guard lock(mu_);
    done.swap(finished_);
  }
  // They have returned from their body; joining waits only for the exit.
  for (auto& t : done)
    t.join();
}

void StreamThreads::close_and_join() {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    for (auto& [id, r] : running_) {
      if (r.cancel) r.cancel();
      threads.push_back(std::move(r.thread));
    }
    running_.clear();
    for (auto& t : finished_)
      threads.push_back(std::move(t));
    finished_.clear();
  }
  for (auto& t : threads) {
    if (t.joinable()) t.join();
  }
}

}  // namespace counterlink::api
