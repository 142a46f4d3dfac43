// connect-rate: --connectors clients each repeat, as fast as the broker
// answers: TCP connect, CONNECT, wait for CONNACK, DISCONNECT, wait for the
// broker to close the socket. The broker closing first keeps TIME_WAIT on its
// side, so the loader's ephemeral ports are not exhausted. Every connection
// uses a new client id.
#include <algorithm>
#include <string>
#include <vector>

#include "scenario.h"

namespace counterlink::bench {

namespace {

constexpr uint64_t kMaxFailures = 1000;

class ConnectRate : public ScenarioBase {
 public:
  explicit ConnectRate(const Options& options) : ScenarioBase(options, "connect-rate") {}

  void run(Outcome& outcome) override;

 private:
  void on_connected(Client& client, const mqtt::Connack& connack) override;
  void on_disconnected(Client& client) override;
  void on_closed(Client& client, const std::string& why, int errno_value) override;
  void start(Client& client);

  std::vector<std::unique_ptr<Client>> connectors_;
  std::vector<Client*> restart_;  // failed connectors, restarted by the loop
  bool running_ = false;
  uint64_t serial_ = 0;
  uint64_t attempts_ = 0;
  uint64_t connects_ = 0;  // CONNACKs received
  uint64_t cycles_ = 0;    // connections closed cleanly after DISCONNECT
  uint64_t failures_ = 0;
  bool measuring_ = false;
  std::vector<int64_t> connect_ns_;  // connect() to CONNACK, measured interval
};

void ConnectRate::start(Client& client) {
  client.client_id = client_id('c', static_cast<uint32_t>(serial_++));
  client.user = static_cast<uint64_t>(now_ns());
  ++attempts_;
  std::string error;
  int err = 0;
  if (!engine_->connect(client, error, err)) on_closed(client, error, err);
}

void ConnectRate::on_connected(Client& client, const mqtt::Connack&) {
  ++connects_;
  if (measuring_) connect_ns_.push_back(now_ns() - static_cast<int64_t>(client.user));
  engine_->disconnect(client, true);
}

void ConnectRate::on_disconnected(Client& client) {
  ++cycles_;
  if (running_) start(client);
}

void ConnectRate::on_closed(Client& client, const std::string& why, int errno_value) {
  ++failures_;
  if (first_error_.empty()) {
    first_error_ = why;
    first_errno_ = errno_value;
  }
  if (running_ && failures_ < kMaxFailures) restart_.push_back(&client);
}

void ConnectRate::run(Outcome& outcome) {
  const uint32_t k = options_.clients;
  add_parameters(outcome);
  outcome.figures.add("connectors", k)
      .add("warmup_s", options_.warmup_s)
      .add("duration_s", options_.duration_s);
  // The broker closes first (TIME_WAIT stays on its side), so one source
  // address suffices unless --source-addresses says otherwise.
  if (!start_engine(outcome, 0)) return;
  if (k + 64 > raise_fd_limit()) {
    outcome.exit_code = 2;
    outcome.problems.push_back("too many --connectors for the open-files limit");
    return;
  }
  for (uint32_t i = 0; i < k; ++i) {
    auto client = std::make_unique<Client>();
    client->index = i;
    connectors_.push_back(std::move(client));
  }
  const int64_t begin = now_ns();
  const int64_t warm_end = begin + static_cast<int64_t>(options_.warmup_s * 1e9);
  const int64_t end = warm_end + static_cast<int64_t>(options_.duration_s * 1e9);
  running_ = true;
  for (auto& c : connectors_)
    start(*c);
  engine_->flush();
  Snapshot measured_from;
  Snapshot measured_to;
  Snapshot last = snapshot(0);
  bool warmed = false;
  bool completed = false;
  int64_t next_progress = begin + kNsPerSec;
  while (true) {
    const int64_t now = engine_->loop_now_ns();
    if (!warmed && now >= warm_end) {
      measured_from = snapshot(connects_);
      warmed = true;
      measuring_ = true;
    }
    if (now >= end) {
      measured_to = snapshot(connects_);
      completed = true;
      break;
    }
    if (failures_ >= kMaxFailures) break;
    if (now >= next_progress) {
      Snapshot current = snapshot(connects_);
      const double secs = static_cast<double>(current.time_ns - last.time_ns) / 1e9;
      std::string text = format_count(static_cast<double>(now - begin) / 1e9, 1) + "s " +
                         (warmed ? "" : "(warm-up) ") +
                         format_count(static_cast<double>(current.count - last.count) / secs) +
                         " connects/s";
      if (last.broker_cpu_s && current.broker_cpu_s) {
        text += "  broker cpu " +
                format_count((*current.broker_cpu_s - *last.broker_cpu_s) / secs * 100) + "%";
      }
      text += "  failures " + format_count(static_cast<double>(failures_));
      progress_.line(text);
      last = current;
      next_progress += kNsPerSec;
    }
    const int64_t boundary = std::min(next_progress, warmed ? end : warm_end);
    engine_->poll(std::clamp<int64_t>(boundary - now, 0, 100 * kNsPerMs));
    std::vector<Client*> restart;
    restart.swap(restart_);
    for (Client* c : restart)
      start(*c);
    engine_->flush();
  }
  running_ = false;
  measuring_ = false;
  // Let the connections in progress finish, then close the rest.
  const int64_t drain_until = now_ns() + 2 * kNsPerSec;
  while (engine_->open_connections() > 0 && now_ns() < drain_until) {
    engine_->poll(20 * kNsPerMs);
    engine_->flush();
  }
  for (auto& c : connectors_)
    engine_->close(*c);

  if (completed) add_interval(outcome, measured_from, measured_to, "connect");
  std::sort(connect_ns_.begin(), connect_ns_.end());
  auto us = [](int64_t ns) { return static_cast<double>(ns) / 1e3; };
  outcome.figures.add("attempts", attempts_)
      .add("connects", connects_)
      .add("clean_disconnects", cycles_)
      .add("failures", failures_)
      .add("connack_p50_us", us(percentile(connect_ns_, 50)))
      .add("connack_p99_us", us(percentile(connect_ns_, 99)));
  if (failures_ > 0) {
    report_connection_error(
        outcome, format_count(static_cast<double>(failures_)) + " connection attempt(s) failed", 1);
  }
  if (completed) {
    const double secs = static_cast<double>(measured_to.time_ns - measured_from.time_ns) / 1e9;
    const uint64_t n = measured_to.count - measured_from.count;
    std::string human = "connect-rate with " + std::to_string(k) +
                        " connectors: " + format_count(static_cast<double>(n) / secs) +
                        " connects/s";
    if (measured_from.broker_cpu_s && measured_to.broker_cpu_s && n > 0) {
      const double cpu = *measured_to.broker_cpu_s - *measured_from.broker_cpu_s;
      human += ", broker " + format_count(cpu / secs * 100) + "% cpu, " +
               format_count(cpu * 1e6 / static_cast<double>(n), 1) + " us cpu/connect";
    }
    human += ", CONNACK p50 " + format_count(us(percentile(connect_ns_, 50)), 1) + " us; " +
             format_count(static_cast<double>(failures_)) + " failures";
    outcome.human = human;
  } else if (outcome.problems.empty()) {
    outcome.problems.push_back("the run did not finish");
  }
}

}  // namespace

std::unique_ptr<ScenarioBase> make_connect_rate(const Options& options) {
  return std::make_unique<ConnectRate>(options);
}

}  // namespace counterlink::bench
