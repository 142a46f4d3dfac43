// One epoll event loop, run by one thread. Private to the gateway.
//
// Threading: everything except post() and wake() must be called on the loop's
// own thread. post() may be called from any thread; tasks run in FIFO order
// per posting thread, in the next loop iteration.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <queue>
#include <unordered_map>
#include <vector>

namespace counterlink::gateway {

class IoHandler {
 public:
  virtual ~IoHandler() = default;
  // `events` is the EPOLL* mask. Called on the loop thread.
  virtual void on_io(uint32_t events) = 0;
};

class EventLoop {
 public:
  using Task = std::function<void()>;
  using TimerId = uint64_t;

  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Runs until stop(). Between epoll waits it runs posted tasks, due timers
  // and the end-of-iteration hook (used to flush batched writes).
  void run();
  // Any thread.
  void stop();

  // Any thread. Never blocks on the loop.
  void post(Task task);

  void add(int fd, uint32_t events, IoHandler* handler);
  void modify(int fd, uint32_t events, IoHandler* handler);
  void remove(int fd);

  // Monotonic milliseconds, refreshed once per iteration (cheap to read).
  int64_t now_ms() const { return now_ms_; }
  static int64_t monotonic_ms();

  // One-shot timer at now_ms() + delay_ms. Cancel with cancel_timer (cheap;
  // cancelled timers are skipped when due).
  TimerId add_timer(int64_t delay_ms, Task task);
  void cancel_timer(TimerId id);

  // Called at the end of every iteration, after all events and tasks.
  void set_iteration_hook(Task hook) { iteration_hook_ = std::move(hook); }

  bool in_loop_thread() const;

 private:
  void drain_wakeup();
  void run_tasks();
  int run_timers();  // returns ms until the next timer, or -1

  struct Timer {
    int64_t due_ms;
    TimerId id;
    bool operator>(const Timer& o) const {
      return due_ms > o.due_ms || (due_ms == o.due_ms && id > o.id);
    }
  };

  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  bool running_ = false;
  int64_t now_ms_ = 0;
  std::atomic<bool> stop_requested_{false};
  std::atomic<uint64_t> thread_id_{0};

  std::mutex tasks_mutex_;
  std::vector<Task> tasks_;          // guarded by tasks_mutex_
  bool wake_pending_ = false;        // guarded by tasks_mutex_: an eventfd write is outstanding
  std::vector<Task> running_tasks_;  // loop thread only

  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers_;
  std::unordered_map<TimerId, Task> timer_tasks_;
  TimerId next_timer_id_ = 1;
  Task iteration_hook_;
};

}  // namespace counterlink::gateway
