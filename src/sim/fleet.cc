// The fleet: every simulated device on one epoll loop (the bench engine),
// on a thread of its own. The loop thread owns all device state; other
// threads only read the atomic counters (stats()) and set stop_.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <fstream>
#include <functional>
#include <queue>
#include <random>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include "counterlink/obs/log.h"
#include "counterlink/platform/device_credential.h"
#include "counterlink/sim/sim.h"

#include "device_behavior.h"
#include "engine.h"

namespace counterlink::sim {
namespace {

using bench::kNsPerMs;
using bench::kNsPerSec;

// Back-off of docs/device-protocol.md, "Connection refusals": full jitter
// over min(cap, base * 2^n), n reset after a connection that lasted a minute.
constexpr int64_t kBackoffBaseNs = 1 * kNsPerSec;
constexpr int64_t kBackoffCapNs = 300 * kNsPerSec;
constexpr int64_t kStableConnectionNs = 60 * kNsPerSec;
// "too many failed attempts": wait at least 15 s.
constexpr int64_t kRateLimitedWaitNs = 15 * kNsPerSec;
// "device disabled": retry rarely (15 to 60 minutes).
constexpr int64_t kDisabledWaitNs = 15 * 60 * kNsPerSec;
// Messages kept for a device while it is offline; the oldest go first.
constexpr size_t kMaxOutbox = 1000;
// How long stop() waits for the gateway to close connections after DISCONNECT.
constexpr int64_t kDrainNs = 2 * kNsPerSec;
// Longest sleep of the loop, so stop() is noticed quickly.
constexpr int64_t kMaxPollNs = 50 * kNsPerMs;
// Warnings about failed connections, at most this many per second.
constexpr int kMaxWarningsPerSecond = 20;

int64_t system_wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string file_safe(const std::string& text) {
  std::string out = text;
  for (char& c : out) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.';
    if (!ok) c = '_';
  }
  return out;
}

// Raises the soft open-files limit to the hard one; returns the new limit.
uint64_t raise_fd_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 1024;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
    ::getrlimit(RLIMIT_NOFILE, &limit);
  }
  return static_cast<uint64_t>(limit.rlim_cur);
}

struct AtomicStats {
  std::atomic<uint64_t> connected{0}, connects{0}, connect_failures{0}, commands{0}, duplicates{0},
      played{0}, printed{0}, shown{0}, scans{0}, paper_out{0}, expired{0}, failed{0}, published{0},
      churned{0};
};

// One simulated device: identity, connection and firmware state.
struct DeviceSlot {
  DeviceSlot(SimDevice device, BehaviorOptions behavior_options)
      : info(std::move(device)),
        behavior(info.id, info.kind, std::move(behavior_options)),
        topic_prefix("devices/" + info.id + "/"),
        command_topic(topic_prefix + "commands") {}

  SimDevice info;
  bench::Client client;
  DeviceBehavior behavior;
  std::string topic_prefix;
  std::string command_topic;
  std::deque<Outgoing> outbox;  // produced while offline
  bool connected = false;       // CONNACK received, not closed since
  bool churned = false;         // our planned disconnect is in progress
  uint32_t backoff_n = 0;
  int64_t connected_at_ns = 0;
  int64_t last_timestamp_ms = 0;       // credential timestamps strictly increase
  int64_t scheduled_ms = kNoDeadline;  // the behaviour deadline in the heap
};

using TimerHeap = std::priority_queue<std::pair<int64_t, uint32_t>,
                                      std::vector<std::pair<int64_t, uint32_t>>, std::greater<>>;

}  // namespace

class FleetImpl : public bench::Handler {
 public:
  FleetImpl(FleetOptions options, std::vector<SimDevice> devices)
      : options_(std::move(options)), devices_(std::move(devices)) {
    if (!options_.wall_clock_ms) options_.wall_clock_ms = system_wall_ms;
    if (!options_.credential) {
      options_.credential = [](const SimDevice& device, int64_t timestamp_ms) {
        auto signed_credential =
            platform::make_device_credential(device.id, device.secret, timestamp_ms);
        return Credential{std::move(signed_credential.username),
                          std::move(signed_credential.password)};
      };
    }
    if (options_.seed == 0) options_.seed = std::random_device{}() | 1ULL;
    rng_.seed(options_.seed);
  }

  ~FleetImpl() override { stop(); }

  void start();
  void stop();
  FleetStats stats() const;

 private:
  void run();
  void shutdown();
  void connect(DeviceSlot& slot);
  void schedule_reconnect(DeviceSlot& slot, int64_t delay_ns);
  void tick(DeviceSlot& slot, int64_t now_ms);
  void reschedule(DeviceSlot& slot, uint32_t index);
  void apply(DeviceSlot& slot, Effects& fx);
  void publish(DeviceSlot& slot, const Outgoing& message);
  void churn_one();
  void write_receipt(const DeviceSlot& slot, const PrintedReceipt& receipt);
  bool may_warn(int64_t now_ns);

  // bench::Handler, called on the loop thread.
  void on_connected(bench::Client& client, const mqtt::Connack& connack) override;
  void on_publish(bench::Client& client, const mqtt::Publish& publish) override;
  void on_disconnected(bench::Client& client) override;
  void on_closed(bench::Client& client, const std::string& why, int errno_value) override;

  FleetOptions options_;
  std::vector<SimDevice> devices_;  // moved into slots_ by start()
  std::vector<std::unique_ptr<DeviceSlot>> slots_;
  std::unique_ptr<bench::Engine> engine_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  bool started_ = false;
  bool stopping_ = false;  // loop thread: shutting down, do not reconnect
  AtomicStats stats_;
  uint64_t device_count_ = 0;
  std::mt19937_64 rng_;
  TimerHeap reconnects_;  // (monotonic ns, slot)
  TimerHeap deadlines_;   // (wall ms, slot): behaviour work due
  std::deque<uint32_t> connect_queue_;
  double connect_tokens_ = 0;
  int64_t tokens_at_ns_ = 0;
  int64_t next_churn_ns_ = 0;
  int64_t warn_window_ns_ = 0;
  int warnings_in_window_ = 0;
  uint64_t warnings_suppressed_ = 0;
};

void FleetImpl::start() {
  if (started_) return;
  bench::Endpoint endpoint;
  std::string error;
  if (!bench::resolve_endpoint(options_.mqtt_host, options_.mqtt_port, endpoint, error)) {
    throw std::runtime_error(error);
  }
  const uint64_t fd_limit = raise_fd_limit();
  if (devices_.size() + 64 > fd_limit) {
    throw std::runtime_error(
        std::to_string(devices_.size()) + " devices need more file descriptors than the limit of " +
        std::to_string(fd_limit) + ": simulate fewer devices or raise the hard limit (ulimit -Hn)");
  }
  if (options_.mqtt_version != 4 && options_.mqtt_version != 5) {
    throw std::runtime_error("mqtt_version must be 4 (3.1.1) or 5 (5.0)");
  }
  bench::ConnectConfig config;
  config.version = options_.mqtt_version == 5 ? mqtt::Version::kV5 : mqtt::Version::kV311;
  config.keep_alive = options_.keep_alive_s;
  config.clean_start = options_.clean_start;
  if (config.version == mqtt::Version::kV5 && !options_.clean_start) {
    config.session_expiry_interval = options_.session_expiry_s;
  }
  engine_ = std::make_unique<bench::Engine>(endpoint, config, *this);
  if (!engine_->init(error)) throw std::runtime_error(error);

  std::string run_id;
  for (int i = 0; i < 6; ++i)
    run_id += "0123456789abcdef"[rng_() & 0xF];
  slots_.reserve(devices_.size());
  for (auto& device : devices_) {
    BehaviorOptions behavior;
    behavior.play_ms = options_.play_ms;
    behavior.print_ms = options_.print_ms;
    behavior.paper_out_every = options_.paper_out_every;
    behavior.paper_refill_ms = options_.paper_refill_ms;
    behavior.scan_rate_per_min = options_.scan_rate_per_min;
    behavior.max_pending = options_.max_pending;
    behavior.scan_id_prefix = "s-" + run_id + "-" + std::to_string(slots_.size() + 1);
    behavior.seed = rng_();
    auto slot = std::make_unique<DeviceSlot>(std::move(device), std::move(behavior));
    slot->client.index = static_cast<uint32_t>(slots_.size());
    slot->client.client_id = slot->info.id;
    slots_.push_back(std::move(slot));
  }
  devices_.clear();
  device_count_ = slots_.size();
  started_ = true;
  thread_ = std::thread([this] { run(); });
}

void FleetImpl::stop() {
  if (!started_) return;
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

FleetStats FleetImpl::stats() const {
  FleetStats s;
  s.devices = device_count_;
  s.connected = stats_.connected.load(std::memory_order_relaxed);
  s.connects = stats_.connects.load(std::memory_order_relaxed);
  s.connect_failures = stats_.connect_failures.load(std::memory_order_relaxed);
  s.commands = stats_.commands.load(std::memory_order_relaxed);
  s.duplicates = stats_.duplicates.load(std::memory_order_relaxed);
  s.played = stats_.played.load(std::memory_order_relaxed);
  s.printed = stats_.printed.load(std::memory_order_relaxed);
  s.shown = stats_.shown.load(std::memory_order_relaxed);
  s.scans = stats_.scans.load(std::memory_order_relaxed);
  s.paper_out = stats_.paper_out.load(std::memory_order_relaxed);
  s.expired = stats_.expired.load(std::memory_order_relaxed);
  s.failed = stats_.failed.load(std::memory_order_relaxed);
  s.published = stats_.published.load(std::memory_order_relaxed);
  s.churned = stats_.churned.load(std::memory_order_relaxed);
  return s;
}

void FleetImpl::run() {
  const int64_t begin_ns = bench::now_ns();
  tokens_at_ns_ = begin_ns;
  connect_tokens_ = 1;
  if (options_.churn_every_s > 0) {
    next_churn_ns_ = begin_ns + static_cast<int64_t>(options_.churn_every_s * 1e9);
  }
  const int64_t start_ms = options_.wall_clock_ms();
  for (uint32_t i = 0; i < slots_.size(); ++i) {
    connect_queue_.push_back(i);
    tick(*slots_[i], start_ms);  // schedules the first scan
    reschedule(*slots_[i], i);
  }

  while (!stop_.load(std::memory_order_relaxed)) {
    const int64_t now = bench::now_ns();
    int64_t wake = now + kMaxPollNs;

    while (!reconnects_.empty() && reconnects_.top().first <= now) {
      connect_queue_.push_back(reconnects_.top().second);
      reconnects_.pop();
    }
    if (!reconnects_.empty()) wake = std::min(wake, reconnects_.top().first);

    // New connections at connect_rate (token bucket, burst of 1/10 s).
    if (!connect_queue_.empty()) {
      if (options_.connect_rate > 0) {
        const double burst = std::max(1.0, options_.connect_rate / 10);
        connect_tokens_ =
            std::min(burst, connect_tokens_ + static_cast<double>(now - tokens_at_ns_) / 1e9 *
                                                  options_.connect_rate);
        tokens_at_ns_ = now;
      }
      while (!connect_queue_.empty() && (options_.connect_rate <= 0 || connect_tokens_ >= 1)) {
        DeviceSlot& slot = *slots_[connect_queue_.front()];
        connect_queue_.pop_front();
        connect_tokens_ -= 1;
        connect(slot);
      }
      if (!connect_queue_.empty() && options_.connect_rate > 0) {
        wake = std::min(wake, now + static_cast<int64_t>(1e9 / options_.connect_rate) + 1);
      }
    }

    if (next_churn_ns_ != 0 && now >= next_churn_ns_) {
      churn_one();
      next_churn_ns_ = now + static_cast<int64_t>(options_.churn_every_s * 1e9);
    }
    if (next_churn_ns_ != 0) wake = std::min(wake, next_churn_ns_);

    const int64_t now_ms = options_.wall_clock_ms();
    while (!deadlines_.empty() && deadlines_.top().first <= now_ms) {
      const auto [due, index] = deadlines_.top();
      deadlines_.pop();
      DeviceSlot& slot = *slots_[index];
      if (slot.scheduled_ms != due) continue;  // superseded by an earlier entry
      slot.scheduled_ms = kNoDeadline;
      tick(slot, now_ms);
      reschedule(slot, index);
    }
    if (!deadlines_.empty()) {
      wake = std::min(wake, now + (deadlines_.top().first - now_ms) * kNsPerMs);
    }

    engine_->flush();
    engine_->poll(std::clamp<int64_t>(wake - bench::now_ns(), 0, kMaxPollNs));
    engine_->flush();
  }
  shutdown();
}

void FleetImpl::shutdown() {
  stopping_ = true;
  for (auto& slot : slots_) {
    if (slot->client.ready()) {
      engine_->disconnect(slot->client, /*wait_for_close=*/true);
    } else if (slot->client.open() &&
               slot->client.state() != bench::Client::State::kDisconnecting) {
      engine_->close(slot->client);
    }
  }
  engine_->flush();
  const int64_t until = bench::now_ns() + kDrainNs;
  while (engine_->open_connections() > 0 && bench::now_ns() < until) {
    engine_->poll(20 * kNsPerMs);
    engine_->flush();
  }
  for (auto& slot : slots_)
    engine_->close(slot->client);
  stats_.connected = 0;
  if (options_.log_events) spdlog::info("sim.stopped devices={}", slots_.size());
}

void FleetImpl::connect(DeviceSlot& slot) {
  if (slot.client.open()) return;
  int64_t timestamp = options_.wall_clock_ms();
  // Two connects in the same millisecond must not reuse a credential.
  if (timestamp <= slot.last_timestamp_ms) timestamp = slot.last_timestamp_ms + 1;
  slot.last_timestamp_ms = timestamp;
  Credential credential = options_.credential(slot.info, timestamp);
  slot.client.username = std::move(credential.username);
  slot.client.password = std::move(credential.password);
  std::string error;
  int errno_value = 0;
  if (!engine_->connect(slot.client, error, errno_value)) {
    on_closed(slot.client, error, errno_value);
  }
}

void FleetImpl::schedule_reconnect(DeviceSlot& slot, int64_t delay_ns) {
  reconnects_.emplace(bench::now_ns() + std::max<int64_t>(delay_ns, 0), slot.client.index);
}

void FleetImpl::tick(DeviceSlot& slot, int64_t now_ms) {
  Effects fx;
  slot.behavior.tick(now_ms, slot.connected, fx);
  apply(slot, fx);
}

void FleetImpl::reschedule(DeviceSlot& slot, uint32_t index) {
  const int64_t deadline = slot.behavior.next_deadline();
  if (deadline < slot.scheduled_ms) {
    slot.scheduled_ms = deadline;
    deadlines_.emplace(deadline, index);
  }
}

void FleetImpl::apply(DeviceSlot& slot, Effects& fx) {
  const BehaviorCounters& c = fx.counters;
  constexpr auto relaxed = std::memory_order_relaxed;
  if (c.commands) stats_.commands.fetch_add(c.commands, relaxed);
  if (c.duplicates) stats_.duplicates.fetch_add(c.duplicates, relaxed);
  if (c.played) stats_.played.fetch_add(c.played, relaxed);
  if (c.printed) stats_.printed.fetch_add(c.printed, relaxed);
  if (c.shown) stats_.shown.fetch_add(c.shown, relaxed);
  if (c.scans) stats_.scans.fetch_add(c.scans, relaxed);
  if (c.paper_out) stats_.paper_out.fetch_add(c.paper_out, relaxed);
  if (c.expired) stats_.expired.fetch_add(c.expired, relaxed);
  if (c.failed) stats_.failed.fetch_add(c.failed, relaxed);
  if (options_.log_events) {
    for (const auto& line : fx.logs)
      spdlog::info("{}", line);
  }
  for (const auto& receipt : fx.receipts)
    write_receipt(slot, receipt);
  for (const auto& message : fx.messages) {
    if (slot.connected) {
      publish(slot, message);
    } else {
      if (slot.outbox.size() >= kMaxOutbox) slot.outbox.pop_front();
      slot.outbox.push_back(message);
    }
  }
}

void FleetImpl::publish(DeviceSlot& slot, const Outgoing& message) {
  engine_->publish(slot.client, slot.topic_prefix + to_string(message.channel), message.payload, 1);
  stats_.published.fetch_add(1, std::memory_order_relaxed);
}

void FleetImpl::write_receipt(const DeviceSlot& slot, const PrintedReceipt& receipt) {
  if (options_.receipts_dir.empty()) return;
  const std::string path = options_.receipts_dir + "/" + file_safe(slot.info.id) + "-" +
                           file_safe(receipt.command_id) + ".bin";
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(receipt.escpos.data(), static_cast<std::streamsize>(receipt.escpos.size()));
  if (!out) {
    spdlog::warn(
        "sim.receipt_not_written path={} hint=\"create the --receipts-dir directory and "
        "make it writable\"",
        path);
  }
}

void FleetImpl::churn_one() {
  if (slots_.empty()) return;
  std::uniform_int_distribution<size_t> pick(0, slots_.size() - 1);
  // A few random draws find a connected device in any mostly-online fleet.
  for (int attempt = 0; attempt < 32; ++attempt) {
    DeviceSlot& slot = *slots_[pick(rng_)];
    if (!slot.connected || slot.churned) continue;
    // Offline from now on: what the device produces meanwhile waits in its
    // outbox instead of following the DISCONNECT into a closing socket.
    slot.churned = true;
    slot.connected = false;
    stats_.connected.fetch_sub(1, std::memory_order_relaxed);
    stats_.churned.fetch_add(1, std::memory_order_relaxed);
    if (options_.log_events) {
      spdlog::info("sim.churn device={} offline_s={}", slot.info.id, options_.offline_s);
    }
    engine_->disconnect(slot.client, /*wait_for_close=*/true);
    return;
  }
}

bool FleetImpl::may_warn(int64_t now_ns) {
  if (now_ns - warn_window_ns_ >= kNsPerSec) {
    warn_window_ns_ = now_ns;
    warnings_in_window_ = 0;
  }
  if (warnings_in_window_ >= kMaxWarningsPerSecond) {
    ++warnings_suppressed_;
    return false;
  }
  ++warnings_in_window_;
  return true;
}

void FleetImpl::on_connected(bench::Client& client, const mqtt::Connack& connack) {
  DeviceSlot& slot = *slots_[client.index];
  slot.connected = true;
  slot.connected_at_ns = bench::now_ns();
  stats_.connected.fetch_add(1, std::memory_order_relaxed);
  stats_.connects.fetch_add(1, std::memory_order_relaxed);
  engine_->subscribe(client, slot.command_topic, 1);
  if (options_.log_events) {
    spdlog::debug("sim.connected device={} kind={} session_present={}", slot.info.id,
                  to_string(slot.info.kind), connack.session_present);
  }
  while (!slot.outbox.empty()) {
    publish(slot, slot.outbox.front());
    slot.outbox.pop_front();
  }
}

void FleetImpl::on_publish(bench::Client& client, const mqtt::Publish& message) {
  DeviceSlot& slot = *slots_[client.index];
  if (message.topic != slot.command_topic) return;  // nothing else is subscribed
  Effects fx;
  slot.behavior.on_command(message.payload, options_.wall_clock_ms(), fx);
  apply(slot, fx);
  reschedule(slot, client.index);
}

void FleetImpl::on_disconnected(bench::Client& client) {
  DeviceSlot& slot = *slots_[client.index];
  if (slot.connected) stats_.connected.fetch_sub(1, std::memory_order_relaxed);
  slot.connected = false;
  if (stopping_) return;
  const bool churned = slot.churned;
  slot.churned = false;
  schedule_reconnect(slot, churned ? static_cast<int64_t>(options_.offline_s * 1e9) : 0);
}

void FleetImpl::on_closed(bench::Client& client, const std::string& why, int errno_value) {
  DeviceSlot& slot = *slots_[client.index];
  const int64_t now = bench::now_ns();
  if (slot.churned) {  // closed uncleanly after our planned DISCONNECT
    on_disconnected(client);
    return;
  }
  const bool was_connected = slot.connected;
  if (was_connected) {
    stats_.connected.fetch_sub(1, std::memory_order_relaxed);
    if (now - slot.connected_at_ns >= kStableConnectionNs) slot.backoff_n = 0;
  } else {
    stats_.connect_failures.fetch_add(1, std::memory_order_relaxed);
  }
  slot.connected = false;
  if (stopping_) return;
  const int64_t ceiling =
      std::min<int64_t>(kBackoffCapNs, kBackoffBaseNs << std::min<uint32_t>(slot.backoff_n, 20));
  ++slot.backoff_n;
  int64_t delay = std::uniform_int_distribution<int64_t>(0, ceiling)(rng_);
  switch (client.refusal()) {
    case mqtt::ReasonCode::kConnectionRateExceeded:
    case mqtt::ReasonCode::kServerUnavailable:  // 3.1.1 code 3 covers the rate limit too
      delay = std::max(delay, kRateLimitedWaitNs +
                                  std::uniform_int_distribution<int64_t>(0, 5 * kNsPerSec)(rng_));
      break;
    case mqtt::ReasonCode::kNotAuthorized:  // disabled by its owner
      delay = std::max(delay, kDisabledWaitNs);
      break;
    default:
      break;
  }
  if (may_warn(now)) {
    // The engine's own text for refusals carries advice for bench users.
    const std::string reason = client.refusal() == mqtt::ReasonCode::kSuccess
                                   ? why
                                   : std::string("the gateway refused CONNECT: ") +
                                         mqtt::to_string(client.refusal()) +
                                         " (see docs/device-protocol.md, Connection refusals)";
    std::string suppressed;
    if (warnings_suppressed_ > 0) {
      suppressed = " suppressed_before=" + std::to_string(warnings_suppressed_);
      warnings_suppressed_ = 0;
    }
    spdlog::warn("sim.{} device={} why=\"{}\" errno={} retry_in_ms={}{}",
                 was_connected ? "connection_lost" : "connect_failed", slot.info.id,
                 obs::json_escape(reason), errno_value, delay / kNsPerMs, suppressed);
  }
  schedule_reconnect(slot, delay);
}

// ---- Public surface -------------------------------------------------------------

const char* to_string(DeviceKind kind) {
  switch (kind) {
    case DeviceKind::kSpeaker:
      return "speaker";
    case DeviceKind::kPrinter:
      return "printer";
    case DeviceKind::kScanBox:
      return "scanbox";
  }
  return "speaker";
}

Fleet::Fleet(FleetOptions options, std::vector<SimDevice> devices)
    : impl_(std::make_unique<FleetImpl>(std::move(options), std::move(devices))) {}

Fleet::~Fleet() = default;

void Fleet::start() {
  impl_->start();
}

void Fleet::stop() {
  impl_->stop();
}

FleetStats Fleet::stats() const {
  return impl_->stats();
}

std::string format_stats(const FleetStats& s) {
  char line[512];
  std::snprintf(
      line, sizeof line,
      "connected=%llu/%llu commands=%llu duplicates=%llu played=%llu printed=%llu "
      "shown=%llu scans=%llu paper_out=%llu expired=%llu failed=%llu "
      "connect_failures=%llu churned=%llu",
      static_cast<unsigned long long>(s.connected), static_cast<unsigned long long>(s.devices),
      static_cast<unsigned long long>(s.commands), static_cast<unsigned long long>(s.duplicates),
      static_cast<unsigned long long>(s.played), static_cast<unsigned long long>(s.printed),
      static_cast<unsigned long long>(s.shown), static_cast<unsigned long long>(s.scans),
      static_cast<unsigned long long>(s.paper_out), static_cast<unsigned long long>(s.expired),
      static_cast<unsigned long long>(s.failed),
      static_cast<unsigned long long>(s.connect_failures),
      static_cast<unsigned long long>(s.churned));
  return line;
}

}  // namespace counterlink::sim
