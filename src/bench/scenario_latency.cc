// latency: one publisher -> one subscriber at a fixed rate (open loop). Each
// payload carries the CLOCK_MONOTONIC time taken just before it is written;
// the subscriber's arrival time minus that is one sample. Samples published
// during the warm-up are discarded; the report gives exact percentiles of all
// the others (every sample is kept and sorted).
#include <algorithm>
#include <string>
#include <vector>

#include <sys/prctl.h>

#include "scenario.h"

namespace counterlink::bench {

namespace {

class Latency : public ScenarioBase {
 public:
  explicit Latency(const Options& options)
      : ScenarioBase(options, "latency " + format_count(options.rate) + "/s q" +
                                  std::to_string(options.qos)),
        qos_(static_cast<uint8_t>(options.qos)) {}

  void run(Outcome& outcome) override;

 private:
  void on_publish(Client& client, const mqtt::Publish& publish) override;
  void on_puback(Client& client, const mqtt::Ack& ack) override;

  const uint8_t qos_;
  Client publisher_;
  Client subscriber_;
  std::string topic_;
  std::string payload_;
  SeqTracker tracker_;
  std::vector<int64_t> samples_;
  int64_t measure_from_ns_ = 0;
  int64_t measure_to_ns_ = 0;
  uint64_t sent_ = 0;
  uint64_t acked_ = 0;
  uint64_t duplicates_ = 0;
  uint64_t foreign_ = 0;
};

void Latency::on_publish(Client&, const mqtt::Publish& publish) {
  const int64_t arrived = now_ns();
  uint64_t seq = 0;
  uint32_t stream = 0;
  int64_t sent_ns = 0;
  if (!read_payload_header(publish.payload, seq, stream, sent_ns)) {
    ++foreign_;
    return;
  }
  if (!tracker_.record(seq)) {
    ++duplicates_;
    return;
  }
  if (sent_ns >= measure_from_ns_ && sent_ns < measure_to_ns_) {
    samples_.push_back(arrived - sent_ns);
  }
}

void Latency::on_puback(Client&, const mqtt::Ack&) {
  ++acked_;
}

void Latency::run(Outcome& outcome) {
  add_parameters(outcome);
  outcome.figures.add("qos", static_cast<int>(qos_))
      .add("rate_target_per_s", options_.rate)
      .add("payload_bytes", options_.payload)
      .add("warmup_s", options_.warmup_s)
      .add("duration_s", options_.duration_s);
  // Wake up on time: the default timer slack of 50 us would blur the schedule.
  ::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  if (!start_engine(outcome, 2)) return;
  publisher_.client_id = client_id('p', 0);
  subscriber_.client_id = client_id('s', 0);
  topic_ = topic("lat");
  payload_.assign(options_.payload, 'x');
  if (!set_up({{&subscriber_, topic_, qos_}, {&publisher_, "", 0}}, "connecting 2 clients",
              outcome)) {
    return;
  }

  const auto period = static_cast<int64_t>(1e9 / options_.rate);
  const int64_t start = now_ns();
  measure_from_ns_ = start + static_cast<int64_t>(options_.warmup_s * 1e9);
  measure_to_ns_ = measure_from_ns_ + static_cast<int64_t>(options_.duration_s * 1e9);
  samples_.reserve(static_cast<size_t>(options_.rate * options_.duration_s * 1.05) + 16);
  // Open loop, but not unbounded: if the broker falls this far behind, stop.
  const auto max_outstanding = static_cast<uint64_t>(std::max(10000.0, options_.rate * 5));
  int64_t max_lag = 0;
  uint64_t next_index = 0;
  int64_t next_send = start;
  int64_t next_progress = start + kNsPerSec;
  size_t last_samples = 0;
  Snapshot measured_from;
  Snapshot measured_to;
  bool warmed = false;
  bool overloaded = false;
  while (true) {
    int64_t now = now_ns();
    if (!warmed && now >= measure_from_ns_) {
      measured_from = snapshot(tracker_.unique());
      warmed = true;
    }
    if (now >= measure_to_ns_) break;
    if (unexpected_closes_ > 0) break;
    bool wrote = false;
    while (next_send <= now && next_send < measure_to_ns_) {
      if (sent_ - tracker_.unique() > max_outstanding) {
        overloaded = true;
        break;
      }
      if (next_send >= measure_from_ns_) max_lag = std::max(max_lag, now - next_send);
      const int64_t stamp = now_ns();
      write_payload_header(payload_, next_index, 0, stamp);
      engine_->publish(publisher_, topic_, payload_, qos_);
      ++sent_;
      ++next_index;
      next_send = start + static_cast<int64_t>(next_index) * period;
      wrote = true;
    }
    if (overloaded) break;
    if (wrote) engine_->flush();
    if (now >= next_progress) {
      std::vector<int64_t> recent(samples_.begin() + static_cast<ptrdiff_t>(last_samples),
                                  samples_.end());
      last_samples = samples_.size();
      std::sort(recent.begin(), recent.end());
      progress_.line(
          format_count(static_cast<double>(now - start) / 1e9, 1) + "s " +
          (warmed ? "" : "(warm-up) ") + "sent " + format_count(static_cast<double>(sent_)) +
          "  p50 " + format_count(static_cast<double>(percentile(recent, 50)) / 1e3, 1) +
          " us  p99 " + format_count(static_cast<double>(percentile(recent, 99)) / 1e3, 1) + " us");
      next_progress += kNsPerSec;
    }
    now = now_ns();
    const int64_t wake = std::min({next_send, next_progress, measure_to_ns_});
    engine_->poll(std::max<int64_t>(0, wake - now));
    engine_->flush();
  }
  measured_to = snapshot(tracker_.unique());
  // Drain what is still on its way.
  const int64_t drain_until = now_ns() + static_cast<int64_t>(options_.drain_timeout_s * 1e9);
  while ((tracker_.unique() < sent_ || (qos_ > 0 && acked_ < sent_)) && unexpected_closes_ == 0 &&
         now_ns() < drain_until) {
    engine_->poll(20 * kNsPerMs);
    engine_->flush();
  }

  std::sort(samples_.begin(), samples_.end());
  auto us = [](int64_t ns) { return static_cast<double>(ns) / 1e3; };
  double mean = 0;
  for (int64_t s : samples_)
    mean += static_cast<double>(s);
  if (!samples_.empty()) mean /= static_cast<double>(samples_.size());
  if (warmed) add_interval(outcome, measured_from, measured_to, "message");
  const uint64_t lost = sent_ - tracker_.unique();
  outcome.figures.add("samples", static_cast<uint64_t>(samples_.size()))
      .add("p50_us", us(percentile(samples_, 50)))
      .add("p90_us", us(percentile(samples_, 90)))
      .add("p99_us", us(percentile(samples_, 99)))
      .add("p999_us", us(percentile(samples_, 99.9)))
      .add("max_us", us(samples_.empty() ? 0 : samples_.back()))
      .add("min_us", us(samples_.empty() ? 0 : samples_.front()))
      .add("mean_us", mean / 1e3)
      .add("max_send_lag_us", us(max_lag))
      .add("sent", sent_)
      .add("delivered", tracker_.unique())
      .add("lost", lost)
      .add("duplicates", duplicates_)
      .add("reordered", tracker_.reordered())
      .add("foreign", foreign_)
      .add("broker_closed_connections", unexpected_closes_);

  if (unexpected_closes_ > 0) {
    report_connection_error(outcome, "a connection failed during the run", 1);
  }
  if (overloaded) {
    outcome.problems.push_back("the broker fell more than " +
                               format_count(static_cast<double>(max_outstanding)) +
                               " messages behind the schedule; lower --rate");
  }
  if (lost > 0) {
    const std::string text = format_count(static_cast<double>(lost)) + " messages never arrived";
    if (qos_ > 0) {
      outcome.problems.push_back("QoS 1 loss: " + text);
    } else {
      outcome.warnings.push_back("QoS 0 loss: " + text);
    }
  }
  if (duplicates_ > 0) {
    outcome.problems.push_back(format_count(static_cast<double>(duplicates_)) + " duplicates");
  }
  if (max_lag > 5 * kNsPerMs) {
    outcome.warnings.push_back("the sender fell up to " + format_count(us(max_lag) / 1e3, 1) +
                               " ms behind its schedule (the loader is busy or descheduled)");
  }
  outcome.human = "latency qos" + std::to_string(qos_) + " at " + format_count(options_.rate) +
                  " msg/s: p50 " + format_count(us(percentile(samples_, 50)), 1) + " us, p90 " +
                  format_count(us(percentile(samples_, 90)), 1) + " us, p99 " +
                  format_count(us(percentile(samples_, 99)), 1) + " us, max " +
                  format_count(us(samples_.empty() ? 0 : samples_.back()), 1) + " us over " +
                  format_count(static_cast<double>(samples_.size())) + " samples; lost " +
                  format_count(static_cast<double>(lost));
}

}  // namespace

std::unique_ptr<ScenarioBase> make_latency(const Options& options) {
  return std::make_unique<Latency>(options);
}

}  // namespace counterlink::bench
