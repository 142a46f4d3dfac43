// fan-in (N publishers -> 1 subscriber), fan-out (1 publisher -> N
// subscribers) and one-to-one (1 publisher -> N clients on their own topics).
//
// All three are closed loops: at most --inflight messages are between
// publish and arrival (and, at QoS 1, between publish and PUBACK), so the
// broker's queues stay bounded and the rate measured is the rate the broker
// sustains. Every message carries its stream and sequence number, and every
// arrival is checked off, so loss, duplicates and misrouting are counted
// exactly.
#include <algorithm>
#include <string>
#include <vector>

#include "scenario.h"

namespace counterlink::bench {

namespace {

class Throughput : public ScenarioBase {
 public:
  explicit Throughput(const Options& options)
      : ScenarioBase(options,
                     std::string(to_string(options.scenario)) + " q" + std::to_string(options.qos)),
        kind_(options.scenario),
        qos_(static_cast<uint8_t>(options.qos)),
        n_(options.clients),
        window_(options.inflight) {}

  void run(Outcome& outcome) override;

 private:
  void on_connected(Client& client, const mqtt::Connack& connack) override;
  void on_publish(Client& client, const mqtt::Publish& publish) override;
  void on_puback(Client& client, const mqtt::Ack& ack) override;
  // QoS 1 publishes a publisher may have unacknowledged: the broker's
  // Receive Maximum (5.0), and below 65,535 packet identifiers.
  uint32_t publisher_window(const Client& publisher) const {
    return publisher_receive_max_.empty() ? 65000u : publisher_receive_max_[publisher.index];
  }

  bool can_send() const;
  void pump();
  uint64_t expected_deliveries() const {
    return kind_ == ScenarioKind::kFanOut ? sent_ * n_ : sent_;
  }
  uint64_t outstanding() const;
  std::string progress_text(const Snapshot& last, const Snapshot& now) const;

  const ScenarioKind kind_;
  const uint8_t qos_;
  const uint32_t n_;
  const uint32_t window_;

  std::vector<std::unique_ptr<Client>> publishers_;
  std::vector<std::unique_ptr<Client>> subscribers_;
  std::vector<std::string> topics_;
  std::vector<SeqTracker> trackers_;             // per stream (see run())
  std::vector<uint64_t> topic_seq_;              // one-to-one: next sequence per topic
  std::vector<uint32_t> publisher_receive_max_;  // per publisher, from CONNACK
  std::string payload_;
  size_t cursor_ = 0;
  bool sending_ = false;

  uint64_t sent_ = 0;
  uint64_t acked_ = 0;
  uint64_t delivered_ = 0;  // unique arrivals
  uint64_t duplicates_ = 0;
  uint64_t misrouted_ = 0;
  uint64_t foreign_ = 0;  // not a bench payload of this run
  int64_t last_arrival_ns_ = 0;

  // fan-out: how many subscribers are at each "next expected sequence number"
  // (highest seen + 1), to find the slowest subscriber in O(1).
  std::vector<uint32_t> level_count_;
  uint64_t min_next_ = 0;
};

uint64_t Throughput::outstanding() const {
  uint64_t missing = expected_deliveries() - delivered_;
  if (qos_ > 0) missing = std::max(missing, sent_ - acked_);
  return missing;
}

bool Throughput::can_send() const {
  if (qos_ > 0 && sent_ - acked_ >= window_) return false;
  if (kind_ == ScenarioKind::kFanOut) return sent_ - min_next_ < window_;
  return sent_ - delivered_ < window_;
}

void Throughput::pump() {
  if (!sending_) return;
  const int64_t now = engine_->loop_now_ns();
  while (can_send()) {
    Client* publisher = nullptr;
    uint32_t stream = 0;
    uint64_t seq = 0;
    const std::string* topic = nullptr;
    if (kind_ == ScenarioKind::kFanIn) {
      // Round-robin over the publishers that may send.
      for (size_t tries = 0; tries < publishers_.size(); ++tries) {
        Client& candidate = *publishers_[cursor_];
        cursor_ = cursor_ + 1 == publishers_.size() ? 0 : cursor_ + 1;
        if (candidate.ready() && candidate.unacked < publisher_window(candidate)) {
          publisher = &candidate;
          break;
        }
      }
      if (publisher == nullptr) return;
      stream = publisher->index;
      seq = publisher->seq++;
      topic = &topics_[stream];
    } else {
      publisher = publishers_[0].get();
      if (!publisher->ready() || publisher->unacked >= publisher_window(*publisher)) return;
      if (kind_ == ScenarioKind::kFanOut) {
        seq = publisher->seq++;
        topic = &topics_[0];
      } else {
        stream = static_cast<uint32_t>(cursor_);
        cursor_ = cursor_ + 1 == n_ ? 0 : cursor_ + 1;
        seq = topic_seq_[stream]++;
        topic = &topics_[stream];
      }
    }
    write_payload_header(payload_, seq, stream, now);
    engine_->publish(*publisher, *topic, payload_, qos_);
    if (qos_ > 0) ++publisher->unacked;
    ++sent_;
  }
}

void Throughput::on_connected(Client& client, const mqtt::Connack& connack) {
  if (client.index < publishers_.size() && publishers_[client.index].get() == &client) {
    publisher_receive_max_[client.index] =
        std::min<uint32_t>(65000, connack.properties.receive_maximum.value_or(65535));
  }
  ScenarioBase::on_connected(client, connack);
}

void Throughput::on_publish(Client& client, const mqtt::Publish& publish) {
  uint64_t seq = 0;
  uint32_t stream = 0;
  int64_t sent_ns = 0;
  if (!read_payload_header(publish.payload, seq, stream, sent_ns)) {
    ++foreign_;
    return;
  }
  SeqTracker* tracker = nullptr;
  switch (kind_) {
    case ScenarioKind::kFanIn:
      if (stream >= trackers_.size()) {
        ++foreign_;
        return;
      }
      tracker = &trackers_[stream];
      break;
    case ScenarioKind::kOneToOne:
      if (stream != client.index) {
        ++misrouted_;
        return;
      }
      tracker = &trackers_[client.index];
      break;
    default:
      tracker = &trackers_[client.index];
      break;
  }
  if (!tracker->record(seq)) {
    ++duplicates_;
    return;
  }
  ++delivered_;
  last_arrival_ns_ = engine_->loop_now_ns();
  if (kind_ == ScenarioKind::kFanOut && seq + 1 > client.user) {
    // This subscriber moves from level client.user to seq + 1.
    const size_t ring = level_count_.size();
    --level_count_[client.user % ring];
    client.user = seq + 1;
    ++level_count_[client.user % ring];
    while (min_next_ < sent_ && level_count_[min_next_ % ring] == 0)
      ++min_next_;
  }
}

void Throughput::on_puback(Client& client, const mqtt::Ack&) {
  if (client.unacked > 0) --client.unacked;
  ++acked_;
}

std::string Throughput::progress_text(const Snapshot& last, const Snapshot& now) const {
  const double secs = static_cast<double>(now.time_ns - last.time_ns) / 1e9;
  std::string text = format_count(static_cast<double>(now.count - last.count) / secs) + " " +
                     (kind_ == ScenarioKind::kFanIn ? "msg/s" : "deliveries/s") + "  in flight " +
                     format_count(static_cast<double>(outstanding()));
  if (last.broker_cpu_s && now.broker_cpu_s) {
    text +=
        "  broker cpu " + format_count((*now.broker_cpu_s - *last.broker_cpu_s) / secs * 100) + "%";
  }
  text += "  loader cpu " + format_count((now.own_cpu_s - last.own_cpu_s) / secs * 100) + "%";
  return text;
}

void Throughput::run(Outcome& outcome) {
  add_parameters(outcome);
  outcome.figures.add("qos", static_cast<int>(qos_))
      .add(kind_ == ScenarioKind::kFanIn    ? "publishers"
           : kind_ == ScenarioKind::kFanOut ? "subscribers"
                                            : "clients",
           n_)
      .add("inflight", window_)
      .add("payload_bytes", options_.payload)
      .add("warmup_s", options_.warmup_s)
      .add("duration_s", options_.duration_s);
  if (!start_engine(outcome, n_ + 1)) return;

  payload_.assign(options_.payload, 'x');
  const size_t publisher_count = kind_ == ScenarioKind::kFanIn ? n_ : 1;
  const size_t subscriber_count = kind_ == ScenarioKind::kFanIn ? 1 : n_;
  for (size_t i = 0; i < publisher_count; ++i) {
    auto client = std::make_unique<Client>();
    client->index = static_cast<uint32_t>(i);
    client->client_id = client_id('p', client->index);
    publishers_.push_back(std::move(client));
  }
  publisher_receive_max_.assign(publisher_count, 65000);
  for (size_t i = 0; i < subscriber_count; ++i) {
    auto client = std::make_unique<Client>();
    client->index = static_cast<uint32_t>(i);
    client->client_id = client_id('s', client->index);
    subscribers_.push_back(std::move(client));
  }

  std::vector<SetupItem> items;
  switch (kind_) {
    case ScenarioKind::kFanIn:
      for (uint32_t i = 0; i < n_; ++i)
        topics_.push_back(topic("in/" + std::to_string(i)));
      items.push_back({subscribers_[0].get(), topic("in/+"), qos_});
      trackers_.resize(n_);
      break;
    case ScenarioKind::kFanOut:
      topics_.push_back(topic("out"));
      for (auto& s : subscribers_)
        items.push_back({s.get(), topics_[0], qos_});
      trackers_.resize(n_);
      level_count_.assign(window_ + 1, 0);
      level_count_[0] = n_;
      break;
    default:
      for (uint32_t i = 0; i < n_; ++i)
        topics_.push_back(topic("dev/" + std::to_string(i)));
      for (auto& s : subscribers_)
        items.push_back({s.get(), topics_[s->index], qos_});
      trackers_.resize(n_);
      topic_seq_.assign(n_, 0);
      break;
  }
  for (auto& p : publishers_)
    items.push_back({p.get(), "", 0});
  if (!set_up(std::move(items),
              "connecting " + std::to_string(publisher_count + subscriber_count) + " clients",
              outcome)) {
    return;
  }

  // Traffic: warm-up, then the measured interval, then drain.
  const int64_t start = now_ns();
  const int64_t warm_end = start + static_cast<int64_t>(options_.warmup_s * 1e9);
  const int64_t end = warm_end + static_cast<int64_t>(options_.duration_s * 1e9);
  const auto stall_ns = static_cast<int64_t>(options_.stall_timeout_s * 1e9);
  Snapshot measured_from;
  Snapshot measured_to;
  bool warmed = false;
  bool completed = false;
  Snapshot last = snapshot(0);
  int64_t next_progress = start + kNsPerSec;
  last_arrival_ns_ = start;
  sending_ = true;
  pump();
  engine_->flush();
  while (true) {
    const int64_t now = engine_->loop_now_ns();
    if (!warmed && now >= warm_end) {
      measured_from = snapshot(delivered_);
      warmed = true;
    }
    if (now >= end) {
      measured_to = snapshot(delivered_);
      completed = true;
      break;
    }
    if (unexpected_closes_ > 0) break;
    if (now - last_arrival_ns_ > stall_ns && outstanding() > 0) {
      outcome.problems.push_back(
          "stalled: no delivery for " + format_count(options_.stall_timeout_s, 1) + " s with " +
          format_count(static_cast<double>(outstanding())) + " messages outstanding (sent " +
          format_count(static_cast<double>(sent_)) + ", acked " +
          format_count(static_cast<double>(acked_)) + ", delivered " +
          format_count(static_cast<double>(delivered_)) +
          "). The broker stopped delivering or dropped messages: check its log and queue limits "
          "(max_inflight/max_queued_messages).");
      break;
    }
    if (now >= next_progress) {
      Snapshot current = snapshot(delivered_);
      progress_.line(format_count(static_cast<double>(now - start) / 1e9, 1) + "s " +
                     (warmed ? "" : "(warm-up) ") + progress_text(last, current));
      last = current;
      next_progress += kNsPerSec;
    }
    int64_t boundary = std::min(next_progress, warmed ? end : warm_end);
    engine_->poll(std::clamp<int64_t>(boundary - now, 0, 100 * kNsPerMs));
    pump();
    engine_->flush();
  }
  sending_ = false;

  // Drain: everything sent must still arrive.
  const int64_t drain_until = now_ns() + static_cast<int64_t>(options_.drain_timeout_s * 1e9);
  while (outstanding() > 0 && unexpected_closes_ == 0 && engine_->loop_now_ns() < drain_until) {
    engine_->poll(50 * kNsPerMs);
    engine_->flush();
  }

  tear_down(publishers_);
  tear_down(subscribers_);

  // Figures.
  if (completed) {
    add_interval(outcome, measured_from, measured_to,
                 kind_ == ScenarioKind::kFanIn ? "message" : "delivery");
  }
  uint64_t reordered = 0;
  for (const SeqTracker& t : trackers_)
    reordered += t.reordered();
  const uint64_t expected = expected_deliveries();
  const uint64_t lost = expected > delivered_ ? expected - delivered_ : 0;
  outcome.figures.add("sent", sent_)
      .add("delivered", delivered_)
      .add("expected", expected)
      .add("lost", lost)
      .add("duplicates", duplicates_)
      .add("reordered", reordered)
      .add("misrouted", misrouted_)
      .add("foreign", foreign_)
      .add("puback_missing", qos_ > 0 ? sent_ - acked_ : 0)
      .add("broker_closed_connections", unexpected_closes_);

  if (unexpected_closes_ > 0) {
    report_connection_error(
        outcome, std::to_string(unexpected_closes_) + " connection(s) failed during the run", 1);
  }
  if (lost > 0) {
    std::string text = format_count(static_cast<double>(lost)) + " of " +
                       format_count(static_cast<double>(expected)) +
                       " deliveries never arrived (waited " +
                       format_count(options_.drain_timeout_s, 1) + " s after the run)";
    if (qos_ > 0) {
      outcome.problems.push_back("QoS 1 loss: " + text);
    } else {
      outcome.warnings.push_back("QoS 0 loss: " + text);
    }
  }
  if (duplicates_ > 0) {
    outcome.problems.push_back(format_count(static_cast<double>(duplicates_)) +
                               " duplicate deliveries");
  }
  if (misrouted_ > 0) {
    outcome.problems.push_back(format_count(static_cast<double>(misrouted_)) +
                               " messages arrived at the wrong client");
  }
  if (qos_ > 0 && acked_ < sent_) {
    outcome.problems.push_back(format_count(static_cast<double>(sent_ - acked_)) +
                               " PUBACKs never arrived");
  }
  if (!completed && outcome.problems.empty()) outcome.problems.push_back("the run did not finish");

  if (completed) {
    const double secs = static_cast<double>(measured_to.time_ns - measured_from.time_ns) / 1e9;
    const double rate = static_cast<double>(measured_to.count - measured_from.count) / secs;
    std::string human =
        std::string(to_string(kind_)) + " qos" + std::to_string(qos_) + " " + std::to_string(n_) +
        (kind_ == ScenarioKind::kFanIn    ? " publishers"
         : kind_ == ScenarioKind::kFanOut ? " subscribers"
                                          : " clients") +
        ": " + format_count(rate) + (kind_ == ScenarioKind::kFanIn ? " msg/s" : " deliveries/s");
    if (measured_from.broker_cpu_s && measured_to.broker_cpu_s &&
        measured_to.count > measured_from.count) {
      const double cpu = *measured_to.broker_cpu_s - *measured_from.broker_cpu_s;
      human += ", broker " + format_count(cpu / secs * 100) + "% cpu, " +
               format_count(
                   cpu * 1e6 / static_cast<double>(measured_to.count - measured_from.count), 2) +
               " us cpu/" + (kind_ == ScenarioKind::kFanIn ? "msg" : "delivery");
    }
    human += ", loader " +
             format_count((measured_to.own_cpu_s - measured_from.own_cpu_s) / secs * 100) +
             "% cpu; lost " + format_count(static_cast<double>(lost)) + ", duplicates " +
             format_count(static_cast<double>(duplicates_));
    outcome.human = human;
  }
}

}  // namespace

std::unique_ptr<ScenarioBase> make_throughput(const Options& options) {
  return std::make_unique<Throughput>(options);
}

}  // namespace counterlink::bench
