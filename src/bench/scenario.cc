#include "scenario.h"

#include <algorithm>
#include <string>
#include <utility>

#include <arpa/inet.h>
#include <errno.h>

namespace counterlink::bench {

namespace {

constexpr int64_t kSetupStallNs = 15 * kNsPerSec;

}  // namespace

const char* to_string(ScenarioKind kind) {
  switch (kind) {
    case ScenarioKind::kFanIn:
      return "fan-in";
    case ScenarioKind::kFanOut:
      return "fan-out";
    case ScenarioKind::kOneToOne:
      return "one-to-one";
    case ScenarioKind::kIdle:
      return "idle";
    case ScenarioKind::kLatency:
      return "latency";
    case ScenarioKind::kConnectRate:
      return "connect-rate";
    case ScenarioKind::kBroadcasts:
      return "broadcasts";
  }
  return "?";
}

std::string connection_advice(int errno_value, const Options& options) {
  const std::string where = options.host + ":" + std::to_string(options.port);
  switch (errno_value) {
    case ECONNREFUSED:
      return "Nothing accepts connections on " + where +
             ": start the broker (e.g. `counterlink serve -c config/counterlink.yaml`) or pass "
             "the right --host/--port.";
    case ETIMEDOUT:
    case EHOSTUNREACH:
    case ENETUNREACH:
      return "The broker at " + where + " is unreachable: check the address and any firewall.";
    case EMFILE:
    case ENFILE:
      return "Out of file descriptors: lower the number of clients, or raise the hard limit "
             "(ulimit -Hn; bench already raises its soft limit to the hard limit).";
    case EADDRNOTAVAIL:
    case EADDRINUSE:
      return "Out of local ports or an unusable source address: spread the connections over "
             "more source addresses (--source-addresses N binds 127.0.0.2.. on loopback), or "
             "use fewer connections, or --source-addresses 0 to let the kernel choose.";
    case ECONNRESET:
    case EPIPE:
    case 0:
      return "The broker dropped the connection: check its log (a connection limit such as "
             "max_connections, its open-files limit, or an authentication/ACL refusal).";
    default:
      return "";
  }
}

ScenarioBase::ScenarioBase(const Options& options, std::string label)
    : options_(options), progress_(std::move(label), options.quiet), broker_(options.broker_pid) {}

ScenarioBase::~ScenarioBase() = default;

bool ScenarioBase::start_engine(Outcome& outcome, size_t max_connections) {
  std::string error;
  if (!resolve_endpoint(options_.host, options_.port, endpoint_, error)) {
    outcome.exit_code = 3;
    outcome.problems.push_back(error);
    return false;
  }
  if (options_.broker_pid > 0 && !broker_.alive()) {
    outcome.exit_code = 2;
    outcome.problems.push_back("--broker-pid " + std::to_string(options_.broker_pid) +
                               " is not a running process; pass the broker's pid (e.g. "
                               "$(pidof mosquitto)) or leave the option out");
    return false;
  }
  const uint64_t fd_limit = raise_fd_limit();
  if (max_connections + 64 > fd_limit) {
    outcome.exit_code = 2;
    outcome.problems.push_back(
        std::to_string(max_connections) +
        " connections need more file descriptors than the limit of " + std::to_string(fd_limit) +
        ": use at most " + std::to_string(fd_limit > 64 ? fd_limit - 64 : 0) +
        " clients, or raise the hard limit (ulimit -Hn). The broker needs as many too.");
    return false;
  }
  ConnectConfig config;
  config.version = version();
  config.keep_alive = options_.keepalive;
  config.username = options_.username;
  config.password = options_.password;
  engine_ = std::make_unique<Engine>(endpoint_, config, *this);
  if (!engine_->init(error)) {
    outcome.exit_code = 3;
    outcome.problems.push_back(error);
    return false;
  }
  // Source addresses: on loopback, one per 10,000 connections. connect()
  // searches one half of the ephemeral range first (~14,000 ports of the
  // default 28,232) and slows down badly beyond it.
  int sources = options_.source_addresses;
  if (sources < 0) {
    sources = endpoint_.loopback && endpoint_.addr.ss_family == AF_INET
                  ? static_cast<int>((max_connections + 9999) / 10000)
                  : 0;
  }
  if (sources > 0) {
    in_addr base{};
    if (::inet_pton(AF_INET, options_.source_base.c_str(), &base) != 1) {
      outcome.exit_code = 2;
      outcome.problems.push_back("--source-base '" + options_.source_base +
                                 "' is not an IPv4 address");
      return false;
    }
    std::vector<in_addr> list;
    for (int i = 0; i < sources; ++i) {
      in_addr a{};
      a.s_addr = htonl(ntohl(base.s_addr) + static_cast<uint32_t>(i));
      list.push_back(a);
    }
    engine_->set_sources(std::move(list));
  }
  return true;
}

bool ScenarioBase::set_up(std::vector<SetupItem> items, const std::string& what, Outcome& outcome) {
  setup_items_ = std::move(items);
  setup_index_.clear();
  setup_index_.reserve(setup_items_.size());
  for (size_t i = 0; i < setup_items_.size(); ++i)
    setup_index_[setup_items_[i].client] = i;
  setup_ready_ = 0;
  setup_pending_ = 0;
  setup_refusal_.clear();
  in_setup_ = true;

  const size_t total = setup_items_.size();
  const size_t concurrency = std::max<uint32_t>(1, options_.connect_concurrency);
  const int64_t start = now_ns();
  int64_t last_progress = start;
  int64_t last_change = start;
  size_t last_ready = 0;
  size_t next = 0;
  auto status = [&] {
    return std::to_string(setup_ready_) + "/" + std::to_string(total) + " ready";
  };
  while (setup_ready_ < total) {
    while (setup_pending_ < concurrency && next < total) {
      std::string error;
      int err = 0;
      if (!engine_->connect(*setup_items_[next].client, error, err)) {
        first_error_ = error;
        first_errno_ = err;
        in_setup_ = false;
        report_connection_error(outcome, what + " (" + status() + ")", 3);
        return false;
      }
      ++next;
      ++setup_pending_;
    }
    engine_->poll(100 * kNsPerMs);
    engine_->flush();
    if (!setup_refusal_.empty()) {
      in_setup_ = false;
      outcome.exit_code = 3;
      outcome.problems.push_back(what + " (" + status() + "): " + setup_refusal_);
      return false;
    }
    if (!first_error_.empty()) {
      in_setup_ = false;
      report_connection_error(outcome, what + " (" + status() + ")", 3);
      return false;
    }
    const int64_t now = engine_->loop_now_ns();
    if (setup_ready_ != last_ready) {
      last_ready = setup_ready_;
      last_change = now;
    }
    if (now - last_change > kSetupStallNs) {
      in_setup_ = false;
      outcome.exit_code = 3;
      outcome.problems.push_back(
          what + " stalled at " + status() +
          ": the broker has not answered CONNECT/SUBSCRIBE "
          "for 15 s. Check the broker log and its connection limits, or lower "
          "--connect-concurrency.");
      return false;
    }
    if (now - last_progress >= kNsPerSec) {
      last_progress = now;
      const double secs = static_cast<double>(now - start) / 1e9;
      progress_.line(what + ": " + status() + " (" +
                     format_count(static_cast<double>(setup_ready_) / secs) + "/s)");
    }
  }
  in_setup_ = false;
  const double secs = static_cast<double>(now_ns() - start) / 1e9;
  progress_.line(what + ": " + status() + " in " + format_count(secs, 2) + " s");
  return true;
}

void ScenarioBase::setup_ready(Client&) {
  ++setup_ready_;
  --setup_pending_;
}

void ScenarioBase::on_connected(Client& client, const mqtt::Connack&) {
  if (!in_setup_) return;
  auto it = setup_index_.find(&client);
  if (it == setup_index_.end()) return;
  const SetupItem& item = setup_items_[it->second];
  if (item.filter.empty()) {
    setup_ready(client);
  } else {
    engine_->subscribe(client, item.filter, item.qos);
  }
}

void ScenarioBase::on_suback(Client& client, const mqtt::Suback& suback) {
  if (!in_setup_) return;
  auto it = setup_index_.find(&client);
  if (it == setup_index_.end()) return;
  for (mqtt::ReasonCode reason : suback.reasons) {
    if (static_cast<uint8_t>(reason) >= 0x80) {
      setup_refusal_ = "the broker refused the subscription to '" +
                       setup_items_[it->second].filter + "': " + mqtt::to_string(reason) +
                       "; check the broker's ACL and wildcard settings";
      return;
    }
  }
  setup_ready(client);
}

void ScenarioBase::on_closed(Client&, const std::string& why, int errno_value) {
  ++unexpected_closes_;
  if (first_error_.empty()) {
    first_error_ = why;
    first_errno_ = errno_value;
  }
}

Snapshot ScenarioBase::snapshot(uint64_t count) const {
  Snapshot s;
  s.time_ns = now_ns();
  s.count = count;
  s.broker_cpu_s = broker_.cpu_seconds();
  s.own_cpu_s = own_cpu_seconds();
  return s;
}

void ScenarioBase::add_interval(Outcome& outcome, const Snapshot& a, const Snapshot& b,
                                const std::string& unit) const {
  const double secs = static_cast<double>(b.time_ns - a.time_ns) / 1e9;
  const uint64_t count = b.count - a.count;
  const double rate = secs > 0 ? static_cast<double>(count) / secs : 0;
  outcome.figures.add("unit", unit)
      .add("interval_s", secs)
      .add("count", count)
      .add("rate_per_s", rate);
  if (a.broker_cpu_s && b.broker_cpu_s) {
    const double cpu = *b.broker_cpu_s - *a.broker_cpu_s;
    outcome.figures.add("broker_cpu_s", cpu)
        .add("broker_cpu_util", secs > 0 ? cpu / secs : 0)
        .add("broker_cpu_us_per_unit", count > 0 ? cpu * 1e6 / static_cast<double>(count) : 0);
  } else {
    outcome.figures.add_null("broker_cpu_s")
        .add_null("broker_cpu_util")
        .add_null("broker_cpu_us_per_unit");
  }
  const double own = b.own_cpu_s - a.own_cpu_s;
  outcome.figures.add("loader_cpu_s", own).add("loader_cpu_util", secs > 0 ? own / secs : 0);
}

void ScenarioBase::add_parameters(Outcome& outcome) const {
  outcome.figures.add("scenario", to_string(options_.scenario))
      .add("broker", options_.host + ":" + std::to_string(options_.port))
      .add("protocol", options_.protocol)
      .add("run_id", options_.run_id);
  if (options_.broker_pid > 0) {
    outcome.figures.add("broker_pid", static_cast<int64_t>(options_.broker_pid));
  }
}

void ScenarioBase::report_connection_error(Outcome& outcome, const std::string& during,
                                           int exit_code) const {
  outcome.exit_code = exit_code;
  std::string text = during + ": " + first_error_ + ".";
  const std::string advice = connection_advice(first_errno_, options_);
  if (!advice.empty()) text += " " + advice;
  outcome.problems.push_back(text);
}

std::string ScenarioBase::client_id(char role, uint32_t index) const {
  return "b" + options_.run_id + role + std::to_string(index);
}

std::string ScenarioBase::topic(const std::string& suffix) const {
  return options_.topic_prefix + "/" + options_.run_id + "/" + suffix;
}

}  // namespace counterlink::bench
