#include "event_loop.h"

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

namespace counterlink::gateway {
namespace {
uint64_t current_thread_key() {
  return static_cast<uint64_t>(std::hash<std::thread::id>{}(std::this_thread::get_id())) | 1;
}
}  // namespace

EventLoop::EventLoop() {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0)
    throw std::runtime_error(std::string("epoll_create1: ") + std::strerror(errno));
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // null marks the wake-up fd
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
  now_ms_ = monotonic_ms();
}

EventLoop::~EventLoop() {
  if (wake_fd_ >= 0) ::close(wake_fd_);
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
}

int64_t EventLoop::monotonic_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

bool EventLoop::in_loop_thread() const {
  return thread_id_.load(std::memory_order_relaxed) == current_thread_key();
}

void EventLoop::post(Task task) {
  bool need_wake = false;
  {
    std::lock_guard lock(tasks_mutex_);
    tasks_.push_back(std::move(task));
    if (!wake_pending_) {
      wake_pending_ = true;
      need_wake = true;
    }
  }
  if (need_wake) {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
  }
}

void EventLoop::stop() {
  stop_requested_.store(true);
  post([] {});
}

void EventLoop::add(int fd, uint32_t events, IoHandler* handler) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = handler;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
}

void EventLoop::modify(int fd, uint32_t events, IoHandler* handler) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = handler;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev);
}

void EventLoop::remove(int fd) {
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
}

EventLoop::TimerId EventLoop::add_timer(int64_t delay_ms, Task task) {
  TimerId id = next_timer_id_++;
  timers_.push(Timer{now_ms_ + (delay_ms < 0 ? 0 : delay_ms), id});
  timer_tasks_.emplace(id, std::move(task));
  return id;
}

void EventLoop::cancel_timer(TimerId id) {
  timer_tasks_.erase(id);
}

void EventLoop::drain_wakeup() {
  uint64_t value;
  while (::read(wake_fd_, &value, sizeof value) > 0) {
  }
}

void EventLoop::run_tasks() {
  {
    std::lock_guard lock(tasks_mutex_);
    running_tasks_.swap(tasks_);
    wake_pending_ = false;
  }
  for (auto& task : running_tasks_)
    task();
  running_tasks_.clear();
}

int EventLoop::run_timers() {
  while (!timers_.empty()) {
    Timer top = timers_.top();
    auto it = timer_tasks_.find(top.id);
    if (it == timer_tasks_.end()) {  // cancelled
      timers_.pop();
      continue;
    }
    if (top.due_ms > now_ms_) return static_cast<int>(top.due_ms - now_ms_);
    timers_.pop();
    Task task = std::move(it->second);
    timer_tasks_.erase(it);
    task();
  }
  return -1;
}

void EventLoop::run() {
  thread_id_.store(current_thread_key());
  running_ = true;
  constexpr int kMaxEvents = 256;
  epoll_event events[kMaxEvents];
  while (!stop_requested_.load(std::memory_order_relaxed)) {
    now_ms_ = monotonic_ms();
    int timeout = run_timers();
    {
      std::lock_guard lock(tasks_mutex_);
      if (!tasks_.empty()) timeout = 0;
    }
    int n = ::epoll_wait(epoll_fd_, events, kMaxEvents, timeout);
    now_ms_ = monotonic_ms();
    for (int i = 0; i < n; ++i) {
      auto* handler = static_cast<IoHandler*>(events[i].data.ptr);
      if (handler == nullptr) {
        drain_wakeup();
        continue;
      }
      handler->on_io(events[i].events);
    }
    run_tasks();
    run_timers();
    if (iteration_hook_) iteration_hook_();
  }
  // Run what was posted before stop so that nothing posted is silently lost.
  run_tasks();
  if (iteration_hook_) iteration_hook_();
  running_ = false;
}

}  // namespace counterlink::gateway
