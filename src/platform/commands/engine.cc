#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "counterlink/gateway/gateway.h"
#include "counterlink/obs/metrics.h"
#include "counterlink/platform/commands.h"

#include "commands/commit_queue.h"
#include "commands/device_messages.h"
#include "commands/json_text.h"

namespace counterlink::platform {

namespace state = command_state;
using store::Code;
using store::Command;
using store::Status;
using store::Write;
using store::WriteOutcome;

bool is_final_state(std::string_view s) {
  return s == state::kPlayed || s == state::kPrinted || s == state::kShown || s == state::kFailed ||
         s == state::kExpired || s == state::kCancelled;
}

std::string event_prefix(std::string_view type) {
  if (type == command_type::kPrint) return "print_job";
  return std::string(type);
}

// ---- EventBus -----------------------------------------------------------------

struct EventBus::State {
  mutable std::mutex mutex;
  std::condition_variable cv;
  int64_t last = 0;
  bool stopped = false;
};

std::shared_ptr<EventBus::State> EventBus::make_state() {
  return std::make_shared<State>();
}

void EventBus::published(int64_t seq) {
  {
    std::lock_guard lock(state_->mutex);
    if (seq <= state_->last) return;
    state_->last = seq;
  }
  state_->cv.notify_all();
}

bool EventBus::wait(int64_t after_seq, int64_t timeout_ms) {
  std::unique_lock lock(state_->mutex);
  return state_->cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] {
    return state_->stopped || state_->last > after_seq;
  }) && !state_->stopped;
}

int64_t EventBus::last_seq() const {
  std::lock_guard lock(state_->mutex);
  return state_->last;
}

void EventBus::stop() {
  {
    std::lock_guard lock(state_->mutex);
    state_->stopped = true;
  }
  state_->cv.notify_all();
}

// ---- The engine -------------------------------------------------------------------

namespace {

constexpr std::string_view kTopicPrefix = "devices/";
// How long a printer that reported a problem is left alone before its
// waiting job is offered again (in case the `ready` event was lost).
constexpr int64_t kPrinterProbeMs = 30'000;
// A message the gateway dropped is offered again this many times.
constexpr int kMaxDrops = 3;

obs::Counter& transitions_counter(const std::string& type, const std::string& to) {
  return obs::metrics().counter("counterlink_command_transitions_total",
                                "Command state changes written, by command type and new state",
                                {{"type", type}, {"state", to}});
}

struct LaneCommand {
  Command command;
  bool handed = false;        // given to the gateway on this connection
  int parts_outstanding = 0;  // PUBACKs still expected
  int drops = 0;
  int64_t retry_at_ms = 0;  // not before (busy backoff)
};

struct Lane {
  DeviceTarget target;
  // The connection the lane serves ("listener remote-address"): a late
  // disconnect of an earlier connection (handled on another loop thread)
  // must not take the device offline.
  std::string connection;
  bool online = false;
  bool loading = false;
  uint64_t generation = 0;
  std::deque<LaneCommand> queue;  // non-final, seq order (online devices only)
  std::vector<Command> arrived_while_loading;
  int64_t pending = -1;  // non-final commands in the store; -1 unknown
  bool printer_paused = false;
  int64_t paused_until_ms = 0;
  // Device events waiting on the loader thread; while there are any, later
  // events queue behind them so the device's order is kept.
  int queued_events = 0;
};

struct Tag {
  std::string device_id;
  std::string command_id;
  uint64_t generation = 0;
};

nlohmann::json event_data(const Command& c, const std::string& to_state, const std::string& code,
                          const std::string& detail) {
  nlohmann::json d;
  d["command_id"] = c.id;
  d["device_id"] = c.device_id;
  d["type"] = c.type;
  d["state"] = to_state;
  if (!code.empty()) d["code"] = code;
  if (!detail.empty()) d["detail"] = detail;
  if (!c.request_id.empty()) d["request_id"] = c.request_id;
  auto payload = nlohmann::json::parse(c.payload_json, nullptr, false);
  if (payload.is_object()) {
    if (c.type == command_type::kBroadcast) {
      for (const char* k : {"order_id", "amount", "channel", "locale", "text"}) {
        if (payload.contains(k)) d[k] = payload[k];
      }
    } else if (c.type == command_type::kScanResult) {
      for (const char* k : {"scan_id", "outcome"}) {
        if (payload.contains(k)) d[k] = payload[k];
      }
    } else if (c.type == command_type::kPrint) {
      if (payload.contains("copies")) d["copies"] = payload["copies"];
    }
  }
  return d;
}

}  // namespace

struct CommandEngine::Impl : std::enable_shared_from_this<CommandEngine::Impl> {
  Impl(store::Store& s, CommandEngineOptions o, ClockMs c, EventBus& b)
      : store(s),
        options(std::move(o)),
        clock(c ? std::move(c) : system_clock_ms),
        bus(b),
        commits(s, options.max_batch) {}

  store::Store& store;
  const CommandEngineOptions options;
  ClockMs clock;
  EventBus& bus;
  CommitQueue commits;
  gateway::Gateway* gateway = nullptr;
  std::function<void(const DeviceEvent&)> device_events;

  std::mutex mutex;  // lanes, tags, loads
  std::unordered_map<std::string, Lane> lanes;
  std::unordered_map<uint64_t, Tag> tags;
  uint64_t next_tag = 1;
  std::unordered_set<std::string> timed_lanes;  // lanes with a retry or pause deadline

  // Work for the loader thread: devices that connected, and reports about
  // commands not in memory.
  struct Load {
    std::string device_id;
    uint64_t generation = 0;
  };
  struct Orphan {
    std::string device_id;
    DeviceReport report;
    std::string payload;  // events only
  };
  std::condition_variable work_cv;   // the loader's
  std::condition_variable sweep_cv;  // the sweeper's (stop only)
  std::deque<Load> loads;
  std::deque<Orphan> orphans;
  bool stopping = false;
  std::thread loader;
  std::thread sweeper;

  std::atomic<uint64_t> submitted{0}, deduplicated{0}, handed{0}, transitions{0}, rejected{0};

  // ---- transitions ----

  // Queues a guarded transition of `c` with its event; `after` runs on the
  // commit thread once it is durable (outcome kOk or kConflict).
  void transition(const Command& c, std::vector<std::string> from, const std::string& to,
                  const std::string& code, const std::string& detail, int attempts_delta,
                  std::function<void(const WriteOutcome&)> after = {}) {
    Write w;
    w.kind = Write::Kind::kTransition;
    w.transition.command_id = c.id;
    w.transition.from_states = std::move(from);
    w.transition.to_state = to;
    w.transition.at_ms = clock();
    w.transition.code = code;
    w.transition.detail = detail;
    w.transition.attempts_delta = attempts_delta;
    w.event.tenant_id = c.tenant_id;
    w.event.type = event_prefix(c.type) + "." + to;
    w.event.subject_id = c.id;
    w.event.device_id = c.device_id;
    w.event.at_ms = w.transition.at_ms;
    w.event.data_json = json_text(event_data(c, to, code, detail));
    std::weak_ptr<Impl> weak = weak_from_this();
    std::string device = c.device_id, id = c.id, type = c.type;
    commits.push(std::move(w), [weak, device, id, type, to, after = std::move(after)](
                                   const Status& batch, const WriteOutcome& out) {
      auto self = weak.lock();
      if (!self) return;
      if (!batch.ok()) {
        // Not written: the store still has the old state; the command is
        // found again on reconnect or by the sweep.
        spdlog::warn("commands.transition_lost command={} to={} error=\"{}\"", id, to,
                     batch.message);
        if (after) after(WriteOutcome{.code = Code::kUnavailable});
        return;
      }
      if (out.code == Code::kOk) {
        ++self->transitions;
        transitions_counter(type, to).inc();
        if (out.event_seq > 0) self->bus.published(out.event_seq);
      }
      self->after_transition(device, id, out);
      if (after) after(out);
    });
  }

  // On the commit thread: keep the lane in step with the store.
  void after_transition(const std::string& device_id, const std::string& id,
                        const WriteOutcome& out) {
    if (out.code == Code::kNotFound) return;
    std::lock_guard lock(mutex);
    auto lit = lanes.find(device_id);
    if (lit == lanes.end()) return;
    Lane& lane = lit->second;
    if (!is_final_state(out.state)) {
      for (auto& lc : lane.queue) {
        if (lc.command.id == id) lc.command.state = out.state;
      }
      return;
    }
    auto it = std::find_if(lane.queue.begin(), lane.queue.end(),
                           [&](const LaneCommand& lc) { return lc.command.id == id; });
    if (it != lane.queue.end()) lane.queue.erase(it);
    if (out.code == Code::kOk && lane.pending > 0) --lane.pending;
    pump(device_id, lane);
  }

  // ---- delivery ----

  // Hands what the lane allows to the gateway. Under `mutex`.
  void pump(const std::string& device_id, Lane& lane) {
    if (!lane.online || lane.loading || gateway == nullptr) return;
    const int64_t now = clock();
    int in_flight = 0;
    for (const auto& lc : lane.queue) {
      if (lc.handed) ++in_flight;
    }
    for (auto& lc : lane.queue) {
      if (lc.handed) continue;
      if (in_flight >= options.window_per_device) break;
      const bool print = lc.command.type == command_type::kPrint;
      if (print && (lane.printer_paused || in_flight > 0)) {
        if (lane.printer_paused) timed_lanes.insert(device_id);
        break;
      }
      if (lc.retry_at_ms > now) {
        timed_lanes.insert(device_id);
        break;  // keep the order: nothing overtakes a command backing off
      }
      hand(device_id, lane, lc);
      ++in_flight;
      if (print) break;
    }
  }

  void hand(const std::string& device_id, Lane& lane, LaneCommand& lc) {
    size_t max =
        static_cast<size_t>(lane.target.max_payload_bytes > 0 ? lane.target.max_payload_bytes
                                                              : options.default_max_payload_bytes);
    std::string error;
    auto payloads = encode_command(lc.command, max, error);
    if (payloads.empty()) {
      spdlog::warn("commands.undeliverable command={} device={} error=\"{}\"", lc.command.id,
                   device_id, error);
      lc.handed = true;  // not offered again; the failure below removes it
      transition(lc.command, {}, state::kFailed, "too_large", error, 0);
      return;
    }
    lc.handed = true;
    ++lc.command.attempts;
    lc.parts_outstanding = static_cast<int>(payloads.size());
    const std::string topic = std::string(kTopicPrefix) + device_id + "/commands";
    for (auto& payload : payloads) {
      auto message = std::make_shared<gateway::Message>();
      message->topic = topic;
      message->payload = std::move(payload);
      message->qos = 1;
      uint64_t tag = next_tag++;
      message->tag = tag;
      tags.emplace(tag, Tag{device_id, lc.command.id, lane.generation});
      gateway->deliver(device_id, std::move(message));
    }
    ++handed;
  }

  LaneCommand* find(Lane& lane, const std::string& id) {
    for (auto& lc : lane.queue) {
      if (lc.command.id == id) return &lc;
    }
    return nullptr;
  }

  void on_delivered(std::string_view client_id, uint64_t tag) {
    std::lock_guard lock(mutex);
    auto it = tags.find(tag);
    if (it == tags.end()) return;
    Tag t = std::move(it->second);
    tags.erase(it);
    auto lit = lanes.find(t.device_id);
    if (lit == lanes.end() || lit->second.generation != t.generation) return;
    (void)client_id;
    LaneCommand* lc = find(lit->second, t.command_id);
    if (!lc || --lc->parts_outstanding > 0) return;
    transition(lc->command, {state::kQueued, state::kWaiting}, state::kSent, "", "", 1);
  }

  void on_dropped(std::string_view client_id, uint64_t tag) {
    std::lock_guard lock(mutex);
    auto it = tags.find(tag);
    if (it == tags.end()) return;
    Tag t = std::move(it->second);
    tags.erase(it);
    (void)client_id;
    auto lit = lanes.find(t.device_id);
    if (lit == lanes.end() || lit->second.generation != t.generation || !lit->second.online) {
      return;  // the connection ended: the reconnect sends it again
    }
    Lane& lane = lit->second;
    LaneCommand* lc = find(lane, t.command_id);
    if (!lc || !lc->handed) return;
    lc->handed = false;
    if (++lc->drops >= kMaxDrops) {
      lc->handed = true;
      transition(lc->command, {}, state::kFailed, "undeliverable",
                 "the gateway could not hand the command to the device session", 0);
      return;
    }
    lc->retry_at_ms = clock() + options.retry_backoff_ms;
    timed_lanes.insert(t.device_id);
  }

  // ---- connections ----

  void on_connected(const std::string& device_id, std::string connection) {
    {
      std::lock_guard lock(mutex);
      Lane& lane = lanes[device_id];
      lane.connection = std::move(connection);
      lane.online = true;
      lane.loading = true;
      ++lane.generation;
      lane.queue.clear();
      lane.arrived_while_loading.clear();
      lane.printer_paused = false;
      loads.push_back({device_id, lane.generation});
    }
    work_cv.notify_one();
  }

  void on_disconnected(const std::string& device_id, const std::string& connection) {
    std::lock_guard lock(mutex);
    auto it = lanes.find(device_id);
    if (it == lanes.end() || it->second.connection != connection) return;
    Lane& lane = it->second;
    lane.online = false;
    lane.loading = false;
    ++lane.generation;
    lane.queue.clear();
    lane.arrived_while_loading.clear();
  }

  // What the engine needs to know about a device (store reads; empty
  // tenant_id when the device is unknown or the store failed).
  DeviceTarget load_target(const std::string& device_id) {
    DeviceTarget target;
    auto device = store.get_device("", device_id);
    if (!device.ok()) {
      if (device.status().code != Code::kNotFound) {
        spdlog::warn("commands.load_failed device={} error=\"{}\"", device_id,
                     device.status().message);
      }
      return target;
    }
    target.device_id = device_id;
    target.tenant_id = device.value().tenant_id;
    auto product = store.get_product(target.tenant_id, device.value().product_id);
    if (product.ok()) {
      target.product_type = product.value().type;
      auto caps = nlohmann::json::parse(product.value().capabilities_json, nullptr, false);
      if (caps.is_object() && caps.contains("max_payload_bytes") &&
          caps["max_payload_bytes"].is_number_integer()) {
        target.max_payload_bytes = caps["max_payload_bytes"].get<int32_t>();
      }
    }
    return target;
  }

  // Loader thread: what a device that just connected should get.
  void load(const Load& job) {
    DeviceTarget target = load_target(job.device_id);
    if (target.tenant_id.empty()) {
      std::lock_guard lock(mutex);
      auto it = lanes.find(job.device_id);
      if (it != lanes.end() && it->second.generation == job.generation) it->second.loading = false;
      return;
    }
    auto pending = store.pending_commands(job.device_id, options.max_queue_per_device + 64);
    if (!pending.ok()) {
      spdlog::warn("commands.load_failed device={} error=\"{}\"", job.device_id,
                   pending.status().message);
    }
    std::lock_guard lock(mutex);
    auto it = lanes.find(job.device_id);
    if (it == lanes.end() || it->second.generation != job.generation) return;
    Lane& lane = it->second;
    lane.target = target;
    lane.queue.clear();
    if (pending.ok()) {
      for (auto& c : pending.value())
        lane.queue.push_back({std::move(c)});
      lane.pending = static_cast<int64_t>(lane.queue.size());
    }
    for (auto& c : lane.arrived_while_loading)
      insert_sorted(lane, std::move(c));
    lane.arrived_while_loading.clear();
    lane.loading = false;
    pump(job.device_id, lane);
  }

  static void insert_sorted(Lane& lane, Command c) {
    for (const auto& lc : lane.queue) {
      if (lc.command.id == c.id) return;
    }
    auto pos = lane.queue.end();
    while (pos != lane.queue.begin() && std::prev(pos)->command.seq > c.seq)
      --pos;
    lane.queue.insert(pos, LaneCommand{std::move(c)});
  }

  void loader_main() {
    for (;;) {
      Load job;
      std::optional<Orphan> orphan;
      {
        std::unique_lock lock(mutex);
        work_cv.wait(lock, [&] { return stopping || !loads.empty() || !orphans.empty(); });
        if (stopping) return;
        if (!loads.empty()) {
          job = std::move(loads.front());
          loads.pop_front();
        } else {
          orphan = std::move(orphans.front());
          orphans.pop_front();
        }
      }
      if (orphan && orphan->report.kind == DeviceReport::Kind::kEvent) {
        // An event that arrived before the device's lane was loaded (or
        // behind one that did).
        DeviceTarget target = load_target(orphan->device_id);
        if (!target.tenant_id.empty()) {
          dispatch_event(target, orphan->report, orphan->payload);
        }
        std::lock_guard lock(mutex);
        auto it = lanes.find(orphan->device_id);
        if (it != lanes.end() && it->second.queued_events > 0) --it->second.queued_events;
      } else if (orphan) {
        auto c = store.get_command("", orphan->report.id);
        if (c.ok() && c.value().device_id == orphan->device_id) {
          apply_report(c.value(), orphan->report);
        }
      } else {
        load(job);
      }
    }
  }

  // ---- device reports ----

  void on_publish(const gateway::ClientInfo& client, const gateway::MessagePtr& message) {
    const std::string& id = client.client_id;
    std::string_view topic = message->topic;
    // devices/<id>/<channel>; the authorizer keeps devices in their own tree.
    if (topic.size() <= kTopicPrefix.size() + id.size() + 1 ||
        topic.substr(0, kTopicPrefix.size()) != kTopicPrefix ||
        topic.substr(kTopicPrefix.size(), id.size()) != id ||
        topic[kTopicPrefix.size() + id.size()] != '/') {
      return;
    }
    std::string_view channel = topic.substr(kTopicPrefix.size() + id.size() + 1);
    if (channel != "acks" && channel != "results" && channel != "events") return;
    std::string error;
    auto report = parse_report(channel, message->payload, error);
    if (!report) {
      ++rejected;
      spdlog::debug("commands.report_rejected device={} topic={} error=\"{}\"", id, topic, error);
      return;
    }
    if (report->unsupported_version) {
      ++rejected;
      return;
    }
    if (report->kind == DeviceReport::Kind::kEvent) {
      on_device_event(id, *report, message->payload);
      return;
    }
    std::unique_lock lock(mutex);
    auto lit = lanes.find(id);
    LaneCommand* lc = lit == lanes.end() ? nullptr : find(lit->second, report->id);
    if (!lc) {
      // Not in memory (loading, or already final here): ask the store.
      orphans.push_back({id, std::move(*report)});
      lock.unlock();
      work_cv.notify_one();
      return;
    }
    Command c = lc->command;
    if (report->kind == DeviceReport::Kind::kResult) {
      apply_result_locked(lit->second, *lc, *report);
      return;
    }
    lock.unlock();
    apply_report(c, *report);
  }

  // A report for a command known from the store (not under mutex).
  void apply_report(const Command& c, const DeviceReport& report) {
    if (report.kind == DeviceReport::Kind::kAck) {
      transition(c, {state::kQueued, state::kSent, state::kWaiting}, state::kDelivered, "", "", 0);
      return;
    }
    std::lock_guard lock(mutex);
    auto lit = lanes.find(c.device_id);
    LaneCommand* lc = lit == lanes.end() ? nullptr : find(lit->second, c.id);
    if (lc) {
      apply_result_locked(lit->second, *lc, report);
      return;
    }
    // Not in a lane: only final outcomes matter (there is nothing to resume).
    LaneCommand temp{c};
    Lane none;
    apply_result_locked(none, temp, report);
  }

  // Under `mutex`.
  void apply_result_locked(Lane& lane, LaneCommand& lc, const DeviceReport& report) {
    const Command& c = lc.command;
    if (report.result != "failed") {
      const char* to = report.result == "played"    ? state::kPlayed
                       : report.result == "printed" ? state::kPrinted
                                                    : state::kShown;
      transition(c, {}, to, "", "", 0);
      return;
    }
    switch (classify_failure(report.code)) {
      case FailureClass::kExpired:
        transition(c, {}, state::kExpired, "expired", report.detail, 0);
        return;
      case FailureClass::kFinal:
        transition(c, {}, state::kFailed, report.code, report.detail, 0);
        return;
      case FailureClass::kPrinterProblem: {
        auto payload = nlohmann::json::parse(c.payload_json, nullptr, false);
        bool fail = payload.is_object() && payload.value("on_printer_error", "") == "fail";
        if (fail) {
          transition(c, {}, state::kFailed, report.code, report.detail, 0);
          return;
        }
        lc.handed = false;
        lane.printer_paused = true;
        lane.paused_until_ms = clock() + kPrinterProbeMs;
        timed_lanes.insert(c.device_id);
        transition(c, {}, state::kWaiting, report.code, report.detail, 0);
        return;
      }
      case FailureClass::kBusy: {
        if (c.attempts >= options.max_attempts) {
          transition(c, {}, state::kFailed, "busy", report.detail, 0);
          return;
        }
        lc.handed = false;
        int shift = std::min(c.attempts, 6);
        lc.retry_at_ms = clock() + std::min<int64_t>(options.retry_backoff_ms << shift, 60'000);
        timed_lanes.insert(c.device_id);
        transition(c, {}, state::kWaiting, "busy", report.detail, 0);
        return;
      }
    }
  }

  void on_device_event(const std::string& device_id, const DeviceReport& report,
                       const std::string& payload) {
    DeviceTarget target;
    {
      std::lock_guard lock(mutex);
      auto lit = lanes.find(device_id);
      if (lit != lanes.end()) {
        Lane& lane = lit->second;
        if (lane.queued_events == 0) target = lane.target;
        if (report.type == "printer_status") {
          if (report.status == "ready") {
            lane.printer_paused = false;
            pump(device_id, lane);
          } else {
            lane.printer_paused = true;
            lane.paused_until_ms = clock() + kPrinterProbeMs;
            timed_lanes.insert(device_id);
          }
        }
      }
    }
    if (target.tenant_id.empty()) {
      // The lane is still loading (or earlier events wait there): resolve
      // the device on the loader thread, in arrival order.
      {
        std::lock_guard lock(mutex);
        ++lanes[device_id].queued_events;
        orphans.push_back({device_id, report, payload});
      }
      work_cv.notify_one();
      return;
    }
    dispatch_event(target, report, payload);
  }

  void dispatch_event(const DeviceTarget& target, const DeviceReport& report,
                      const std::string& payload) {
    const std::string& device_id = target.device_id;
    if (report.type == "printer_status") {
      store::Write w;
      w.kind = Write::Kind::kAppendEvent;
      w.event.tenant_id = target.tenant_id;
      w.event.type = "device.printer_status";
      w.event.subject_id = device_id;
      w.event.device_id = device_id;
      w.event.at_ms = clock();
      nlohmann::json d;
      d["device_id"] = device_id;
      d["status"] = report.status;
      w.event.data_json = json_text(d);
      std::weak_ptr<Impl> weak = weak_from_this();
      commits.push(std::move(w), [weak](const Status& batch, const WriteOutcome& out) {
        auto self = weak.lock();
        if (self && batch.ok() && out.event_seq > 0) self->bus.published(out.event_seq);
      });
      return;
    }
    if (device_events) device_events(DeviceEvent{target, report.type, payload, clock()});
  }

  // ---- sweeps ----

  void sweeper_main() {
    for (;;) {
      {
        std::unique_lock lock(mutex);
        sweep_cv.wait_for(lock, std::chrono::milliseconds(options.sweep_interval_ms),
                          [&] { return stopping; });
        if (stopping) return;
      }
      sweep_expired();
      sweep_timers();
    }
  }

  void sweep_expired() {
    const int64_t now = clock();
    auto due = store.expired_commands(now, 2000);
    if (!due.ok()) return;
    for (const auto& c : due.value()) {
      bool handed_here = false;
      {
        std::lock_guard lock(mutex);
        auto lit = lanes.find(c.device_id);
        if (lit != lanes.end()) {
          if (LaneCommand* lc = find(lit->second, c.id)) handed_here = lc->handed;
        }
      }
      if ((c.state == state::kQueued || c.state == state::kWaiting) && !handed_here) {
        transition(c, {state::kQueued, state::kWaiting}, state::kExpired, "expired",
                   "not executed before its expiry", 0);
      } else if ((c.state == state::kQueued || c.state == state::kWaiting ||
                  c.state == state::kSent) &&
                 now >= c.expires_at_ms + options.sent_grace_ms) {
        transition(c, {state::kQueued, state::kWaiting, state::kSent}, state::kExpired, "expired",
                   "not executed before its expiry", 0);
      } else if (c.state == state::kDelivered &&
                 now >= c.expires_at_ms + options.result_timeout_ms) {
        transition(c, {state::kDelivered}, state::kFailed, "no_result",
                   "the device took the command but never reported its outcome", 0);
      }
    }
  }

  void sweep_timers() {
    const int64_t now = clock();
    std::lock_guard lock(mutex);
    for (auto it = timed_lanes.begin(); it != timed_lanes.end();) {
      auto lit = lanes.find(*it);
      if (lit == lanes.end() || !lit->second.online) {
        it = timed_lanes.erase(it);
        continue;
      }
      Lane& lane = lit->second;
      if (lane.printer_paused && now >= lane.paused_until_ms) lane.printer_paused = false;
      std::string id = *it;
      it = timed_lanes.erase(it);
      pump(id, lane);  // re-adds itself while something still waits
    }
  }

  // ---- API side ----

  store::Result<Submitted> submit(Command command, const DeviceTarget& target) {
    const std::string device_id = command.device_id;
    {
      std::unique_lock lock(mutex);
      Lane& lane = lanes[device_id];
      if (lane.pending < 0) {
        lock.unlock();
        auto count = store.count_pending_commands(device_id);
        if (!count.ok()) return count.status();
        lock.lock();
        Lane& again = lanes[device_id];
        if (again.pending < 0) again.pending = count.value();
      }
      Lane& l = lanes[device_id];
      if (l.pending >= options.max_queue_per_device) {
        return Status{Code::kInvalid, "queue_full"};
      }
      ++l.pending;  // reserved; given back below if not created
      if (l.target.tenant_id.empty()) l.target = target;
    }
    command.state = state::kQueued;
    Write w;
    w.kind = Write::Kind::kCreateCommand;
    w.command = command;
    w.event.tenant_id = command.tenant_id;
    w.event.type = event_prefix(command.type) + "." + state::kQueued;
    w.event.subject_id = command.id;
    w.event.device_id = device_id;
    w.event.at_ms = command.created_ms;
    w.event.data_json = json_text(event_data(command, state::kQueued, "", ""));

    std::promise<store::Result<WriteOutcome>> promise;
    auto future = promise.get_future();
    std::weak_ptr<Impl> weak = weak_from_this();
    commits.push(std::move(w),
                 [&promise, weak, command](const Status& batch, const WriteOutcome& out) mutable {
                   auto self = weak.lock();
                   if (batch.ok() && out.code == Code::kOk && self) {
                     command.seq = out.command_seq;
                     if (out.event_seq > 0) self->bus.published(out.event_seq);
                     self->queued(std::move(command));
                   }
                   if (batch.ok()) {
                     promise.set_value(out);
                   } else {
                     promise.set_value(batch);
                   }
                 });
    auto result = future.get();
    if (!result.ok() || result.value().code != Code::kOk) {
      std::lock_guard lock(mutex);
      auto& lane = lanes[device_id];
      if (lane.pending > 0) --lane.pending;
    }
    if (!result.ok()) return result.status();
    const WriteOutcome& out = result.value();
    if (out.code == Code::kConflict) {
      ++deduplicated;
      auto existing = store.get_command(command.tenant_id, out.existing_id);
      if (!existing.ok()) return existing.status();
      return Submitted{std::move(existing).value(), true};
    }
    if (out.code != Code::kOk) return Status{out.code, "command not created"};
    ++submitted;
    command.seq = out.command_seq;
    return Submitted{std::move(command), false};
  }

  // On the commit thread, in seq order: a new command joins its lane.
  void queued(Command command) {
    std::lock_guard lock(mutex);
    auto it = lanes.find(command.device_id);
    if (it == lanes.end() || !it->second.online) return;
    Lane& lane = it->second;
    if (lane.loading) {
      lane.arrived_while_loading.push_back(std::move(command));
      return;
    }
    std::string device_id = command.device_id;
    insert_sorted(lane, std::move(command));
    pump(device_id, lane);
  }

  store::Result<Command> cancel(const std::string& tenant_id, const std::string& id) {
    auto row = store.get_command(tenant_id, id);
    if (!row.ok()) return row.status();
    Command c = row.value();
    if (is_final_state(c.state)) return Status{Code::kConflict, "finished"};
    {
      std::lock_guard lock(mutex);
      auto lit = lanes.find(c.device_id);
      if (lit != lanes.end()) {
        LaneCommand* lc = find(lit->second, c.id);
        if (lc && lc->handed) return Status{Code::kConflict, "in_flight"};
        if (lc) lc->handed = true;  // hold it back while the cancel commits
      }
    }
    auto promise = std::make_shared<std::promise<WriteOutcome>>();
    auto future = promise->get_future();
    transition(c, {state::kQueued, state::kWaiting}, state::kCancelled, "", "", 0,
               [promise](const WriteOutcome& out) { promise->set_value(out); });
    WriteOutcome out = future.get();
    if (out.code == Code::kUnavailable) {
      std::lock_guard lock(mutex);
      auto lit = lanes.find(c.device_id);
      if (lit != lanes.end()) {
        if (LaneCommand* lc = find(lit->second, c.id)) {
          lc->handed = false;
          pump(c.device_id, lit->second);
        }
      }
      return Status{Code::kUnavailable, "the store did not confirm the cancellation"};
    }
    if (out.code == Code::kConflict) {
      std::lock_guard lock(mutex);
      auto lit = lanes.find(c.device_id);
      if (lit != lanes.end()) {
        if (LaneCommand* lc = find(lit->second, c.id); lc && !is_final_state(out.state)) {
          lc->handed = false;
          pump(c.device_id, lit->second);
        }
      }
      return Status{Code::kConflict, is_final_state(out.state) ? "finished" : "in_flight"};
    }
    if (out.code != Code::kOk) return Status{out.code, "not cancelled"};
    return store.get_command(tenant_id, id);
  }
};

// ---- Gateway adapter --------------------------------------------------------------

namespace {

bool is_device(std::string_view client_id) {
  return client_id.rfind("dv_", 0) == 0;
}

std::string connection_of(const gateway::ClientInfo& client) {
  return client.listener + " " + client.remote_address;
}

class EngineEvents : public gateway::GatewayEvents {
 public:
  explicit EngineEvents(std::weak_ptr<CommandEngine::Impl> impl) : impl_(std::move(impl)) {}
  void on_connected(const gateway::ClientInfo& client, bool) override {
    if (!is_device(client.client_id)) return;
    if (auto impl = impl_.lock()) impl->on_connected(client.client_id, connection_of(client));
  }
  void on_disconnected(const gateway::ClientInfo& client, gateway::DisconnectReason) override {
    if (!is_device(client.client_id)) return;
    if (auto impl = impl_.lock()) impl->on_disconnected(client.client_id, connection_of(client));
  }
  void on_publish(const gateway::ClientInfo& client, const gateway::MessagePtr& message) override {
    if (!is_device(client.client_id)) return;
    if (auto impl = impl_.lock()) impl->on_publish(client, message);
  }
  void on_delivered(std::string_view client_id, uint64_t tag) override {
    if (auto impl = impl_.lock()) impl->on_delivered(client_id, tag);
  }
  void on_dropped(std::string_view client_id, uint64_t tag) override {
    if (auto impl = impl_.lock()) impl->on_dropped(client_id, tag);
  }

 private:
  std::weak_ptr<CommandEngine::Impl> impl_;
};

}  // namespace

CommandEngine::CommandEngine(store::Store& store, CommandEngineOptions options, ClockMs clock)
    : impl_(std::make_shared<Impl>(store, std::move(options), std::move(clock), bus_)) {}

CommandEngine::~CommandEngine() {
  stop();
}

void CommandEngine::set_gateway(gateway::Gateway* gateway) {
  impl_->gateway = gateway;
}

void CommandEngine::set_device_event_handler(std::function<void(const DeviceEvent&)> handler) {
  impl_->device_events = std::move(handler);
}

void CommandEngine::start() {
  impl_->commits.start();
  impl_->loader = std::thread([impl = impl_.get()] { impl->loader_main(); });
  impl_->sweeper = std::thread([impl = impl_.get()] { impl->sweeper_main(); });
}

void CommandEngine::stop() {
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->stopping) return;
    impl_->stopping = true;
  }
  impl_->work_cv.notify_all();
  impl_->sweep_cv.notify_all();
  if (impl_->loader.joinable()) impl_->loader.join();
  if (impl_->sweeper.joinable()) impl_->sweeper.join();
  impl_->commits.stop();
  bus_.stop();
}

store::Result<Submitted> CommandEngine::submit(store::Command command, const DeviceTarget& target) {
  return impl_->submit(std::move(command), target);
}

store::Result<store::Command> CommandEngine::cancel(const std::string& tenant_id,
                                                    const std::string& id) {
  return impl_->cancel(tenant_id, id);
}

store::Result<int64_t> CommandEngine::append_event(store::Event event) {
  Write w;
  w.kind = Write::Kind::kAppendEvent;
  w.event = std::move(event);
  auto out = impl_->commits.commit(std::move(w));
  if (!out.ok()) return out.status();
  if (out.value().event_seq > 0) bus_.published(out.value().event_seq);
  return out.value().event_seq;
}

std::shared_ptr<gateway::GatewayEvents> CommandEngine::gateway_events() {
  return std::make_shared<EngineEvents>(impl_);
}

CommandEngineStats CommandEngine::stats() const {
  CommandEngineStats s;
  s.submitted = impl_->submitted;
  s.deduplicated = impl_->deduplicated;
  s.delivered_to_gateway = impl_->handed;
  s.transitions = impl_->transitions;
  s.commit_batches = impl_->commits.batches();
  s.commit_writes = impl_->commits.writes();
  s.store_retries = impl_->commits.retries();
  s.device_messages_rejected = impl_->rejected;
  return s;
}

}  // namespace counterlink::platform
