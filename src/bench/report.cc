#include "report.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include "counterlink/obs/log.h"

namespace counterlink::bench {

namespace {

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

double timeval_seconds(const timeval& tv) {
  return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
}

void put_le(std::string& s, size_t offset, uint64_t value, size_t bytes) {
  for (size_t i = 0; i < bytes; ++i)
    s[offset + i] = static_cast<char>((value >> (8 * i)) & 0xFF);
}

uint64_t get_le(std::string_view s, size_t offset, size_t bytes) {
  uint64_t value = 0;
  for (size_t i = 0; i < bytes; ++i) {
    value |= uint64_t{static_cast<uint8_t>(s[offset + i])} << (8 * i);
  }
  return value;
}

constexpr uint32_t kMagic = 0x31424C43;  // "CLB1"

}  // namespace

std::optional<double> ProcessProbe::cpu_seconds() const {
  if (pid_ <= 0) return std::nullopt;
  auto text = read_file("/proc/" + std::to_string(pid_) + "/stat");
  if (!text) return std::nullopt;
  // The command name (field 2) may contain spaces; fields resume after ')'.
  size_t close = text->rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(text->substr(close + 1));
  std::string field;
  uint64_t utime = 0, stime = 0;
  for (int index = 3; index <= 15 && (fields >> field); ++index) {
    if (index == 14) utime = std::stoull(field);
    if (index == 15) stime = std::stoull(field);
  }
  static const long ticks = ::sysconf(_SC_CLK_TCK);
  return static_cast<double>(utime + stime) / static_cast<double>(ticks > 0 ? ticks : 100);
}

std::optional<int64_t> ProcessProbe::rss_bytes() const {
  if (pid_ <= 0) return std::nullopt;
  auto text = read_file("/proc/" + std::to_string(pid_) + "/status");
  if (!text) return std::nullopt;
  size_t pos = text->find("VmRSS:");
  if (pos == std::string::npos) return std::nullopt;
  return std::stoll(text->substr(pos + 6)) * 1024;
}

bool ProcessProbe::alive() const {
  return pid_ > 0 && ::kill(pid_, 0) == 0;
}

double own_cpu_seconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return timeval_seconds(usage.ru_utime) + timeval_seconds(usage.ru_stime);
}

uint64_t raise_fd_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
    ::getrlimit(RLIMIT_NOFILE, &limit);
  }
  return limit.rlim_cur;
}

void write_payload_header(std::string& payload, uint64_t seq, uint32_t stream, int64_t sent_ns) {
  put_le(payload, 0, seq, 8);
  put_le(payload, 8, stream, 4);
  put_le(payload, 12, kMagic, 4);
  put_le(payload, 16, static_cast<uint64_t>(sent_ns), 8);
}

bool read_payload_header(std::string_view payload, uint64_t& seq, uint32_t& stream,
                         int64_t& sent_ns) {
  if (payload.size() < kPayloadHeader || get_le(payload, 12, 4) != kMagic) return false;
  seq = get_le(payload, 0, 8);
  stream = static_cast<uint32_t>(get_le(payload, 8, 4));
  sent_ns = static_cast<int64_t>(get_le(payload, 16, 8));
  return true;
}

int64_t percentile(const std::vector<int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  if (rank == 0) rank = 1;
  if (rank > sorted.size()) rank = sorted.size();
  return sorted[rank - 1];
}

std::string json_quote(std::string_view s) {
  return "\"" + obs::json_escape(std::string(s)) + "\"";
}

void JsonObject::key(std::string_view key) {
  if (!body_.empty()) body_ += ",";
  body_ += json_quote(key);
  body_ += ":";
}

JsonObject& JsonObject::add(std::string_view k, double value) {
  if (!std::isfinite(value)) return add_null(k);
  key(k);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", value);
  // %.6g loses digits of large counts; print integral values exactly.
  if (std::fabs(value) < 1e15 && value == std::floor(value)) {
    std::snprintf(buf, sizeof buf, "%.0f", value);
  } else if (std::fabs(value) >= 1000) {
    std::snprintf(buf, sizeof buf, "%.1f", value);
  }
  body_ += buf;
  return *this;
}

JsonObject& JsonObject::add(std::string_view k, int64_t value) {
  key(k);
  body_ += std::to_string(value);
  return *this;
}

JsonObject& JsonObject::add(std::string_view k, uint64_t value) {
  key(k);
  body_ += std::to_string(value);
  return *this;
}

JsonObject& JsonObject::add(std::string_view k, bool value) {
  key(k);
  body_ += value ? "true" : "false";
  return *this;
}

JsonObject& JsonObject::add(std::string_view k, std::string_view value) {
  key(k);
  body_ += json_quote(value);
  return *this;
}

JsonObject& JsonObject::add(std::string_view k, const JsonObject& value) {
  key(k);
  body_ += value.str();
  return *this;
}

JsonObject& JsonObject::add_null(std::string_view k) {
  key(k);
  body_ += "null";
  return *this;
}

std::string format_count(double value, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
  std::string s = buf;
  size_t end = s.find('.');
  if (end == std::string::npos) end = s.size();
  size_t begin = (s[0] == '-') ? 1 : 0;
  for (size_t i = end; i > begin + 3; i -= 3)
    s.insert(i - 3, ",");
  return s;
}

void Progress::line(const std::string& text) const {
  if (quiet_) return;
  std::cerr << "[" << label_ << "] " << text << std::endl;
}

}  // namespace counterlink::bench
