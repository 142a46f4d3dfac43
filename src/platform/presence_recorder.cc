#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "counterlink/platform/device_credential.h"
#include "counterlink/platform/presence.h"
#include "counterlink/store/store.h"

#include "device_metrics.h"

namespace counterlink::platform {
namespace {

const char* version_string(mqtt::Version version) {
  switch (version) {
    case mqtt::Version::kV31:
      return "3.1";
    case mqtt::Version::kV311:
      return "3.1.1";
    case mqtt::Version::kV5:
      return "5.0";
  }
  return "unknown";
}

}  // namespace

class PresenceRecorder::Impl {
 public:
  Impl(std::shared_ptr<store::Store> store, PresenceConfig config, ClockMs clock)
      : store_(std::move(store)),
        config_(std::move(config)),
        clock_(clock ? std::move(clock) : ClockMs(system_clock_ms)),
        metrics_(device_access_metrics()) {
    if (!store_) throw std::invalid_argument("PresenceRecorder: a store is required");
    if (config_.node.empty()) {
      throw std::invalid_argument(
          "PresenceRecorder: the gateway node name is empty; set a unique name per node");
    }
  }

  void start() {
    std::lock_guard lock(mutex_);
    if (started_) return;
    started_ = true;
    writing_ = true;  // the reset comes first; flush() waits for it too
    writer_ = std::thread([this] { run(); });
  }

  void stop() {
    {
      std::unique_lock lock(mutex_);
      if (!started_ || stopping_) {
        stopping_ = true;
        lock.unlock();
        if (writer_.joinable()) writer_.join();
        return;
      }
      stopping_ = true;
      deadline_ =
          std::chrono::steady_clock::now() + std::chrono::milliseconds(config_.flush_timeout_ms);
    }
    cv_.notify_all();
    writer_.join();
  }

  void enqueue(store::PresenceEvent event) {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    if (queue_.size() >= std::max<size_t>(config_.queue_limit, 1)) drop_one();
    ++per_device_[event.device_id];
    queue_.push_back(std::move(event));
    cv_.notify_all();
  }

  bool flush(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return idle_cv_.wait_for(lock, timeout, [&] { return queue_.empty() && !writing_; });
  }

  size_t pending() const {
    std::lock_guard lock(mutex_);
    return queue_.size() + (writing_ ? 1 : 0);
  }

  int64_t now() const { return clock_(); }
  const std::string& node() const { return config_.node; }

 private:
  // Called with mutex_ held and the queue full.
  void drop_one() {
    for (auto it = queue_.begin(); it != queue_.end(); ++it) {
      auto count = per_device_.find(it->device_id);
      if (count->second > 1) {
        --count->second;
        queue_.erase(it);
        metrics_.presence_dropped_superseded.inc();
        return;
      }
    }
    spdlog::warn("presence.dropped device={} online={} reason=queue_full", queue_.front().device_id,
                 queue_.front().online);
    forget(queue_.front().device_id);
    queue_.pop_front();
    metrics_.presence_dropped_last_state.inc();
  }

  void forget(const std::string& device_id) {
    auto it = per_device_.find(device_id);
    if (it != per_device_.end() && --it->second == 0) per_device_.erase(it);
  }

  // Sleeps up to retry_ms; true if the writer should give up (stopping past
  // the deadline).
  bool back_off(std::unique_lock<std::mutex>& lock) {
    cv_.wait_for(lock, std::chrono::milliseconds(config_.retry_ms));
    return stopping_ && std::chrono::steady_clock::now() >= deadline_;
  }

  void run() {
    // Devices a previous run of this node left online go offline first.
    while (true) {
      store::Status status = store_->reset_presence(config_.node, clock_());
      if (status.ok()) break;
      spdlog::warn("presence.reset_failed node={} error=\"{}\"; retrying", config_.node,
                   status.message);
      std::unique_lock lock(mutex_);
      if (back_off(lock) || (stopping_ && queue_.empty())) {
        writing_ = false;
        idle_cv_.notify_all();
        return;
      }
    }
    {
      std::lock_guard lock(mutex_);
      writing_ = false;
      if (queue_.empty()) idle_cv_.notify_all();
    }
    while (true) {
      store::PresenceEvent event;
      {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty() || (stopping_ && std::chrono::steady_clock::now() >= deadline_)) {
          if (!queue_.empty()) {
            spdlog::warn("presence.unflushed events={} node={}", queue_.size(), config_.node);
          }
          writing_ = false;
          idle_cv_.notify_all();
          return;
        }
        event = std::move(queue_.front());
        queue_.pop_front();
        forget(event.device_id);
        writing_ = true;
      }
      while (true) {
        store::Status status = store_->record_presence(event);
        if (status.ok()) {
          metrics_.presence_written.inc();
          break;
        }
        if (status.code != store::Code::kUnavailable) {
          // kNotFound: the device was deleted meanwhile. Nothing to retry.
          metrics_.presence_write_errors.inc();
          spdlog::info("presence.not_recorded device={} error=\"{}\"", event.device_id,
                       status.message);
          break;
        }
        spdlog::warn("presence.store_unavailable device={} error=\"{}\"; retrying", event.device_id,
                     status.message);
        std::unique_lock lock(mutex_);
        if (back_off(lock)) {
          metrics_.presence_write_errors.inc();
          break;
        }
      }
      std::lock_guard lock(mutex_);
      writing_ = false;
      if (queue_.empty()) idle_cv_.notify_all();
    }
  }

  const std::shared_ptr<store::Store> store_;
  const PresenceConfig config_;
  const ClockMs clock_;
  DeviceAccessMetrics& metrics_;

  mutable std::mutex mutex_;
  std::condition_variable cv_;       // work arrived or stopping
  std::condition_variable idle_cv_;  // queue drained
  std::deque<store::PresenceEvent> queue_;
  std::unordered_map<std::string, size_t> per_device_;  // events queued per device
  bool writing_ = false;
  bool started_ = false;
  bool stopping_ = false;
  // Set by stop(): the writer gives up on what is left after it. A real
  // clock, not clock_, which tests may freeze.
  std::chrono::steady_clock::time_point deadline_;
  std::thread writer_;
};

PresenceRecorder::PresenceRecorder(std::shared_ptr<store::Store> store, PresenceConfig config,
                                   ClockMs clock)
    : impl_(std::make_unique<Impl>(std::move(store), std::move(config), std::move(clock))) {}

PresenceRecorder::~PresenceRecorder() {
  impl_->stop();
}

void PresenceRecorder::start() {
  impl_->start();
}
void PresenceRecorder::stop() {
  impl_->stop();
}
bool PresenceRecorder::flush(std::chrono::milliseconds timeout) {
  return impl_->flush(timeout);
}
size_t PresenceRecorder::pending() const {
  return impl_->pending();
}

void PresenceRecorder::on_connected(const gateway::ClientInfo& client, bool) {
  if (!is_device_id(client.client_id)) return;
  store::PresenceEvent event;
  event.device_id = client.client_id;
  event.online = true;
  event.at_ms = impl_->now();
  event.remote_address = client.remote_address;
  event.protocol_version = version_string(client.version);
  event.gateway_node = impl_->node();
  impl_->enqueue(std::move(event));
}

void PresenceRecorder::on_disconnected(const gateway::ClientInfo& client,
                                       gateway::DisconnectReason reason) {
  if (!is_device_id(client.client_id)) return;
  store::PresenceEvent event;
  event.device_id = client.client_id;
  event.online = false;
  event.at_ms = impl_->now();
  event.remote_address = client.remote_address;
  event.protocol_version = version_string(client.version);
  event.gateway_node = impl_->node();
  event.reason = gateway::to_string(reason);
  impl_->enqueue(std::move(event));
}

}  // namespace counterlink::platform
