// The threads that run server-stream handlers (REST server-sent events and
// gRPC server streams): one thread per open stream, at most `max_streams` at
// once. Private to the api component.
//
// Why not the worker pool: a stream lasts as long as its client listens
// (hours), and its handler blocks between events; a few listeners would take
// every worker from the unary calls.
//
// Threading: every member may be called from any thread. A stream's thread
// removes itself from the running set when its body returns; finished
// threads are joined by the next start() or by close_and_join().
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace counterlink::api {

class StreamThreads {
 public:
  explicit StreamThreads(size_t max_streams) : max_streams_(max_streams) {}
  ~StreamThreads() { close_and_join(); }
  StreamThreads(const StreamThreads&) = delete;
  StreamThreads& operator=(const StreamThreads&) = delete;

  enum class Start { kStarted, kFull, kClosed };
  // Runs `body` on a thread of its own. `cancel` asks it to end (the sink
  // reports cancelled() and wakes a blocked send()); it is called at most
  // once, by close_and_join(), and must not block. kFull when `max_streams`
  // are running (or no thread could be created), kClosed after
  // close_and_join(): `body` is not run.
  Start start(std::function<void()> body, std::function<void()> cancel);

  size_t running() const;

  // Refuses new streams, cancels the running ones and joins every thread:
  // returns once all handlers have returned. Idempotent.
  void close_and_join();

 private:
  struct Running {
    std::thread thread;
    std::function<void()> cancel;
  };

  void join_finished();

  const size_t max_streams_;
  mutable std::mutex mu_;
  bool closed_ = false;
  uint64_t next_id_ = 0;
  std::map<uint64_t, Running> running_;  // guarded by mu_
  std::vector<std::thread> finished_;    // returned, not yet joined; guarded by mu_
};

}  // namespace counterlink::api
