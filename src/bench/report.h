// Measurement helpers of `counterlink bench`: broker probes through /proc,
// exactly-once checking of sequence numbers, percentiles and the JSON/human
// output.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sys/types.h>

namespace counterlink::bench {

// Reads CPU time and resident memory of another process from /proc.
class ProcessProbe {
 public:
  explicit ProcessProbe(pid_t pid) : pid_(pid) {}
  bool enabled() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  // utime + stime of all threads, in seconds (clock-tick resolution).
  std::optional<double> cpu_seconds() const;
  // VmRSS in bytes.
  std::optional<int64_t> rss_bytes() const;
  bool alive() const;

 private:
  pid_t pid_;
};

// CPU time (user + system) of this process, in seconds.
double own_cpu_seconds();

// Raises the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit.
uint64_t raise_fd_limit();

// Records which sequence numbers of one stream arrived, to prove every
// message arrived exactly once.
class SeqTracker {
 public:
  // Returns true the first time `seq` is seen.
  bool record(uint64_t seq) {
    const uint64_t word = seq >> 6;
    if (word >= bits_.size()) bits_.resize(std::max<size_t>(word + 1, bits_.size() * 2), 0);
    const uint64_t mask = uint64_t{1} << (seq & 63);
    if (bits_[word] & mask) {
      ++duplicates_;
      return false;
    }
    bits_[word] |= mask;
    ++unique_;
    if (seq + 1 < next_) ++reordered_;
    if (seq + 1 > next_) next_ = seq + 1;
    return true;
  }
  uint64_t unique() const { return unique_; }
  uint64_t duplicates() const { return duplicates_; }
  uint64_t reordered() const { return reordered_; }
  uint64_t next() const { return next_; }  // highest sequence seen + 1

 private:
  std::vector<uint64_t> bits_;
  uint64_t unique_ = 0;
  uint64_t duplicates_ = 0;
  uint64_t reordered_ = 0;
  uint64_t next_ = 0;
};

// The payload every bench message carries (little endian), then padding:
//   [0, 8) sequence number within its stream
//   [8, 12) stream number
//   [12, 16) magic "CLB1"
//   [16, 24) CLOCK_MONOTONIC ns when published
inline constexpr size_t kPayloadHeader = 24;

void write_payload_header(std::string& payload, uint64_t seq, uint32_t stream, int64_t sent_ns);
// False if the payload is not a bench payload.
bool read_payload_header(std::string_view payload, uint64_t& seq, uint32_t& stream,
                         int64_t& sent_ns);

// Nearest-rank percentile of sorted values; 0 when empty.
int64_t percentile(const std::vector<int64_t>& sorted, double p);

// A JSON object with keys in insertion order.
class JsonObject {
 public:
  JsonObject& add(std::string_view key, double value);
  JsonObject& add(std::string_view key, int64_t value);
  JsonObject& add(std::string_view key, uint64_t value);
  JsonObject& add(std::string_view key, int value) { return add(key, int64_t{value}); }
  JsonObject& add(std::string_view key, unsigned value) { return add(key, uint64_t{value}); }
  JsonObject& add(std::string_view key, bool value);
  JsonObject& add(std::string_view key, std::string_view value);
  JsonObject& add(std::string_view key, const char* value) {
    return add(key, std::string_view(value));
  }
  JsonObject& add(std::string_view key, const std::string& value) {
    return add(key, std::string_view(value));
  }
  JsonObject& add(std::string_view key, const JsonObject& value);
  JsonObject& add_null(std::string_view key);
  std::string str() const { return "{" + body_ + "}"; }

 private:
  void key(std::string_view key);
  std::string body_;
};

std::string json_quote(std::string_view s);

// "1234567" -> "1,234,567"; doubles get `decimals` places.
std::string format_count(double value, int decimals = 0);

// Progress line on stderr (unless quiet); prefixed by the scenario label.
class Progress {
 public:
  Progress(std::string label, bool quiet) : label_(std::move(label)), quiet_(quiet) {}
  void line(const std::string& text) const;
  bool quiet() const { return quiet_; }

 private:
  std::string label_;
  bool quiet_;
};

}  // namespace counterlink::bench
