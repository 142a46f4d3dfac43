// idle: opens --connections connections (optionally each with one
// subscription to its own topic), holds them, and measures how much the
// broker's resident memory grew per connection (VmRSS of --broker-pid before
// and after).
#include <string>
#include <vector>

#include "scenario.h"

namespace counterlink::bench {

namespace {

class Idle : public ScenarioBase {
 public:
  explicit Idle(const Options& options)
      : ScenarioBase(options, options.subscribe ? "idle+sub" : "idle") {}

  void run(Outcome& outcome) override;

 private:
  std::vector<std::unique_ptr<Client>> clients_;
};

void Idle::run(Outcome& outcome) {
  const uint32_t count = options_.clients;
  add_parameters(outcome);
  outcome.figures.add("connections", count)
      .add("subscribe", options_.subscribe)
      .add("qos", options_.qos)
      .add("settle_s", options_.settle_s);
  if (!start_engine(outcome, count)) return;

  const auto rss_before = broker_.rss_bytes();
  const Snapshot before = snapshot(0);
  std::vector<SetupItem> items;
  items.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    auto client = std::make_unique<Client>();
    client->index = i;
    client->client_id = client_id('i', i);
    std::string filter = options_.subscribe ? topic("idle/" + std::to_string(i)) : "";
    items.push_back({client.get(), std::move(filter), static_cast<uint8_t>(options_.qos)});
    clients_.push_back(std::move(client));
  }
  if (!set_up(std::move(items), "opening " + std::to_string(count) + " connections", outcome)) {
    return;
  }
  const Snapshot connected = snapshot(count);

  // Hold the connections (the engine answers keep-alive) and let the broker
  // settle before sampling its memory.
  const int64_t until = now_ns() + static_cast<int64_t>(options_.settle_s * 1e9);
  while (now_ns() < until && unexpected_closes_ == 0) {
    engine_->poll(100 * kNsPerMs);
    engine_->flush();
  }
  const auto rss_after = broker_.rss_bytes();
  const size_t still_open = engine_->open_connections();

  const double setup_s = static_cast<double>(connected.time_ns - before.time_ns) / 1e9;
  outcome.figures.add("setup_s", setup_s)
      .add("setup_rate_per_s", setup_s > 0 ? count / setup_s : 0)
      .add("open_at_sample", static_cast<uint64_t>(still_open));
  if (before.broker_cpu_s && connected.broker_cpu_s) {
    const double cpu = *connected.broker_cpu_s - *before.broker_cpu_s;
    outcome.figures.add("setup_broker_cpu_s", cpu)
        .add("setup_broker_cpu_us_per_connection", cpu * 1e6 / count);
  }
  std::string human = "idle " + std::to_string(count) + " connections" +
                      (options_.subscribe ? " with one subscription each" : "");
  if (rss_before && rss_after) {
    const int64_t delta = *rss_after - *rss_before;
    const double per = static_cast<double>(delta) / count;
    outcome.figures.add("rss_before_bytes", *rss_before)
        .add("rss_after_bytes", *rss_after)
        .add("rss_delta_bytes", delta)
        .add("rss_bytes_per_connection", per);
    if (delta <= 0) {
      outcome.warnings.push_back(
          "the broker's RSS did not grow: it reused memory freed by earlier clients. Measure "
          "on a freshly started broker.");
    }
    human += ": broker RSS " + format_count(static_cast<double>(*rss_before) / 1048576, 1) +
             " -> " + format_count(static_cast<double>(*rss_after) / 1048576, 1) + " MiB, " +
             format_count(per) + " bytes per connection";
  } else {
    outcome.figures.add_null("rss_bytes_per_connection");
    human += ": (pass --broker-pid to measure the broker's memory)";
  }
  outcome.human = human + "; set-up " + format_count(setup_s, 2) + " s";

  if (unexpected_closes_ > 0) {
    report_connection_error(
        outcome, std::to_string(unexpected_closes_) + " connection(s) were closed while held", 1);
  }
  tear_down(clients_);
}

}  // namespace

std::unique_ptr<ScenarioBase> make_idle(const Options& options) {
  return std::make_unique<Idle>(options);
}

}  // namespace counterlink::bench
