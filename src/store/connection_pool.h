// A bounded pool of database connections shared by the threads that call the
// Store. A caller leases one connection for one transaction; the lease hands
// it back (or drops it, if the caller marked it broken) when it goes out of
// scope. Connections are created lazily, up to `capacity`, by the factory.
//
// Threading: acquire() may be called from any thread; it blocks while all
// `capacity` connections are leased. A leased connection is used by its
// holder only.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace counterlink::store {

template <typename Connection>
class ConnectionPool {
 public:
  // Returns a new connection, or nullptr with `error` set (server down...).
  using Factory = std::function<std::unique_ptr<Connection>(std::string& error)>;

  ConnectionPool(size_t capacity, Factory factory)
      : capacity_(capacity < 1 ? 1 : capacity), factory_(std::move(factory)) {}

  class Lease {
   public:
    Lease() = default;
    Lease(ConnectionPool* pool, std::unique_ptr<Connection> connection)
        : pool_(pool), connection_(std::move(connection)) {}
    Lease(Lease&& other) noexcept = default;
    Lease& operator=(Lease&& other) noexcept {
      give_back();
      pool_ = other.pool_;
      connection_ = std::move(other.connection_);
      return *this;
    }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { give_back(); }

    explicit operator bool() const { return connection_ != nullptr; }
    Connection& operator*() { return *connection_; }
    Connection* operator->() { return connection_.get(); }
    // The connection is unusable: close it instead of returning it.
    void discard() {
      if (connection_ == nullptr) return;
      connection_.reset();
      pool_->forget_one();
    }

   private:
    void give_back() {
      if (connection_ != nullptr) pool_->put_back(std::move(connection_));
    }
    ConnectionPool* pool_ = nullptr;
    std::unique_ptr<Connection> connection_;
  };

  // An idle connection, a new one, or (after waiting) the next one released.
  // An empty lease with `error` set if a new connection could not be made.
  Lease acquire(std::string& error) {
    {
      std::unique_lock lock(mutex_);
      released_.wait(lock, [&] { return !idle_.empty() || created_ < capacity_; });
      if (!idle_.empty()) {
        auto connection = std::move(idle_.back());
        idle_.pop_back();
        return Lease(this, std::move(connection));
      }
      ++created_;
    }
    auto connection = factory_(error);
    if (connection == nullptr) {
      forget_one();
      return Lease();
    }
    return Lease(this, std::move(connection));
  }

  // Adds a connection made outside acquire() (e.g. the one opened at start-up
  // to check the URL). Counts against the capacity.
  void adopt(std::unique_ptr<Connection> connection) {
    std::lock_guard lock(mutex_);
    ++created_;
    idle_.push_back(std::move(connection));
  }

 private:
  void put_back(std::unique_ptr<Connection> connection) {
    {
      std::lock_guard lock(mutex_);
      idle_.push_back(std::move(connection));
    }
    released_.notify_one();
  }
  void forget_one() {
    {
      std::lock_guard lock(mutex_);
      --created_;
    }
    released_.notify_one();
  }

  const size_t capacity_;
  const Factory factory_;
  std::mutex mutex_;
  std::condition_variable released_;
  std::vector<std::unique_ptr<Connection>> idle_;  // guarded by mutex_
  size_t created_ = 0;                             // guarded by mutex_
};

}  // namespace counterlink::store
