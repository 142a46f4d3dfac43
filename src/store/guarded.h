// Shared state that can only be reached while holding its own mutex
// (STYLE.md §8): Guarded<T>::lock() returns a handle that holds the lock for
// as long as it lives. Nothing here knows about databases.
#pragma once

#include <mutex>
#include <utility>

namespace counterlink::store {

template <typename T>
class Guarded {
 public:
  template <typename... Args>
  explicit Guarded(Args&&... args) : value_(std::forward<Args>(args)...) {}

  class Locked {
   public:
    Locked(std::mutex& mutex, T& value) : lock_(mutex), value_(value) {}
    T& operator*() { return value_; }
    T* operator->() { return &value_; }

   private:
    std::unique_lock<std::mutex> lock_;
    T& value_;
  };

  // Blocks until the mutex is free. Do not hold the handle across a call that
  // may take another Guarded's lock in the opposite order.
  Locked lock() { return Locked(mutex_, value_); }

 private:
  std::mutex mutex_;
  T value_;
};

}  // namespace counterlink::store
