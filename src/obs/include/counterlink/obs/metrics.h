// Process-wide metrics in the Prometheus data model.
//
// Counters and gauges are sharded per thread: an event loop calls
// set_thread_shard(i) once and then increments its own cache line, so the
// publish path never contends on a shared counter. Reads (a scrape) sum the
// shards. Label values are fixed at registration; no unbounded label values
// (never a device or client id).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace counterlink::obs {

inline constexpr unsigned kMetricShards = 64;

// Binds the calling thread to shard `index` (taken modulo kMetricShards).
// Threads that never call it share shard 0.
void set_thread_shard(unsigned index);
unsigned thread_shard();

class Counter {
 public:
  void inc(uint64_t n = 1) {
    shards_[thread_shard()].value.fetch_add(n, std::memory_order_relaxed);
  }
  uint64_t value() const;

 private:
  struct alignas(64) Shard {
    std::atomic<uint64_t> value{0};
  };
  std::array<Shard, kMetricShards> shards_{};
};

// A gauge that moves up and down (add/sub); its value is the sum of shards.
class Gauge {
 public:
  void add(int64_t n) { shards_[thread_shard()].value.fetch_add(n, std::memory_order_relaxed); }
  void sub(int64_t n) { add(-n); }
  int64_t value() const;

 private:
  struct alignas(64) Shard {
    std::atomic<int64_t> value{0};
  };
  std::array<Shard, kMetricShards> shards_{};
};

using Labels = std::vector<std::pair<std::string, std::string>>;

// Owns every metric. Registration happens at start-up (takes a lock);
// returned references stay valid for the registry's life.
class Registry {
 public:
  Counter& counter(const std::string& name, const std::string& help, const Labels& labels = {});
  Gauge& gauge(const std::string& name, const std::string& help, const Labels& labels = {});

  // Prometheus text exposition format 0.0.4.
  std::string render() const;

  // Value lookup for tests and the console: the sum for name+labels, or 0.
  int64_t value(const std::string& name, const Labels& labels = {}) const;

 private:
  struct Entry {
    std::string name;
    std::string help;
    Labels labels;
    bool is_counter = true;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
  };
  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<Entry>> entries_;
};

// The process registry.
Registry& metrics();

}  // namespace counterlink::obs
