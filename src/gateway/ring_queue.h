// A FIFO on one growable array. Unlike std::deque, an empty RingQueue owns no
// memory, which matters with a hundred thousand idle sessions.
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

namespace counterlink::gateway {

template <typename T>
class RingQueue {
 public:
  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  T& front() { return buf_[head_]; }
  T& back() { return (*this)[size_ - 1]; }
  T& operator[](size_t i) { return buf_[(head_ + i) % buf_.size()]; }

  void push_back(T value) {
    if (size_ == buf_.size()) grow();
    buf_[(head_ + size_) % buf_.size()] = std::move(value);
    ++size_;
  }

  void pop_front() {
    buf_[head_] = T();
    head_ = (head_ + 1) % buf_.size();
    if (--size_ == 0) clear();
  }

  // Removes the element at position i (0 = front), keeping order.
  void erase(size_t i) {
    for (size_t j = i; j + 1 < size_; ++j)
      (*this)[j] = std::move((*this)[j + 1]);
    (*this)[size_ - 1] = T();
    if (--size_ == 0) clear();
  }

  void clear() {
    std::vector<T>().swap(buf_);
    head_ = 0;
    size_ = 0;
  }

 private:
  void grow() {
    std::vector<T> next(buf_.empty() ? 4 : buf_.size() * 2);
    for (size_t i = 0; i < size_; ++i)
      next[i] = std::move((*this)[i]);
    buf_.swap(next);
    head_ = 0;
  }

  std::vector<T> buf_;
  size_t head_ = 0;
  size_t size_ = 0;
};

}  // namespace counterlink::gateway
