// Scenarios of `counterlink bench` and what they share: the options, the
// connection set-up with bounded concurrency, measurement snapshots and the
// outcome every scenario reports.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <sys/types.h>

#include "engine.h"
#include "report.h"

namespace counterlink::bench {

enum class ScenarioKind { kFanIn, kFanOut, kOneToOne, kIdle, kLatency, kConnectRate, kBroadcasts };

const char* to_string(ScenarioKind kind);

struct Options {
  ScenarioKind scenario = ScenarioKind::kFanIn;
  std::string host = "127.0.0.1";
  uint16_t port = 1883;
  int protocol = 4;  // 4 = MQTT 3.1.1, 5 = MQTT 5.0
  int qos = 0;
  // Number of clients: publishers (fan-in), subscribers (fan-out), clients
  // (one-to-one), connections (idle), concurrent connectors (connect-rate).
  uint32_t clients = 0;
  double duration_s = 10;
  double warmup_s = 2;
  uint32_t inflight = 100;
  uint32_t payload = 64;
  double rate = 1000;  // latency: messages per second
  pid_t broker_pid = 0;
  bool json = false;
  bool quiet = false;
  bool subscribe = false;     // idle: one subscription per connection
  int source_addresses = -1;  // -1 = automatic
  std::string source_base = "127.0.0.2";
  uint32_t connect_concurrency = 100;  // handshakes in flight during set-up
  double settle_s = 3;                 // idle: wait before sampling memory
  uint16_t keepalive = 60;
  std::optional<std::string> username;
  std::optional<std::string> password;
  std::string topic_prefix = "bench";
  double stall_timeout_s = 10;
  double drain_timeout_s = 10;
  // broadcasts (durable payment broadcasts through the REST API; `clients`
  // is the number of speakers, host/port the MQTT gateway).
  std::string api_url;              // http://HOST:PORT of the REST API
  std::string token;                // operator API token, for the set-up
  uint32_t connections = 32;        // HTTP keep-alive connections
  bool max_rate = false;            // closed loop instead of `rate`
  uint64_t max_undelivered = 4096;  // closed loop: accepted but not yet at the device
  bool mqtt_given = false;          // --mqtt given; else from connection-info
  double request_timeout_s = 10;
  std::string run_id;        // random, keeps topics and client ids of runs apart
  std::string command_line;  // as invoked, for the report
};

// What a scenario hands back for printing.
struct Outcome {
  JsonObject figures;
  std::string human;                  // the final one-line summary
  std::vector<std::string> problems;  // verification failures: exit code 1
  std::vector<std::string> warnings;
  int exit_code = 0;  // set for set-up failures (3)
};

// A point in time of a measurement.
struct Snapshot {
  int64_t time_ns = 0;
  uint64_t count = 0;  // the scenario's unit: deliveries, connects...
  std::optional<double> broker_cpu_s;
  double own_cpu_s = 0;
};

class ScenarioBase : public Handler {
 public:
  ScenarioBase(const Options& options, std::string label);
  ~ScenarioBase() override;

  // Runs the scenario and fills `outcome`.
  virtual void run(Outcome& outcome) = 0;

 protected:
  struct SetupItem {
    Client* client = nullptr;
    std::string filter;  // subscribed after CONNACK when not empty
    uint8_t qos = 0;
  };

  // Resolves the broker address and creates the engine; `max_connections`
  // (open at once) decides the automatic number of source addresses, 0 =
  // none. On failure fills `outcome` (exit code 3) and returns false.
  bool start_engine(Outcome& outcome, size_t max_connections);
  // Connects (and subscribes) every item, at most connect_concurrency at a
  // time, and waits until all are ready. On failure fills `outcome`.
  bool set_up(std::vector<SetupItem> items, const std::string& what, Outcome& outcome);

  // Handler defaults used during set-up. Overrides must call these.
  void on_connected(Client& client, const mqtt::Connack& connack) override;
  void on_suback(Client& client, const mqtt::Suback& suback) override;
  void on_closed(Client& client, const std::string& why, int errno_value) override;

  // Sends DISCONNECT on every open client and waits (up to 10 s) for the
  // broker to close them, so TIME_WAIT stays on the broker's side and the
  // loader's ephemeral ports are free for the next run; then closes the rest.
  template <class Range>
  void tear_down(Range& clients) {
    for (auto& c : clients) {
      if (c->ready())
        engine_->disconnect(*c, true);
      else
        engine_->close(*c);
    }
    engine_->flush();
    const int64_t until = now_ns() + 10 * kNsPerSec;
    while (engine_->open_connections() > 0 && now_ns() < until) {
      engine_->poll(50 * kNsPerMs);
      engine_->flush();
    }
    for (auto& c : clients)
      engine_->close(*c);
  }

  Snapshot snapshot(uint64_t count) const;
  // Adds the figures of the interval [a, b]: seconds, count, rate, broker
  // and loader CPU. `unit` names the counted thing ("delivery", "connect").
  void add_interval(Outcome& outcome, const Snapshot& a, const Snapshot& b,
                    const std::string& unit) const;
  // Adds the common parameters (broker, protocol, ...).
  void add_parameters(Outcome& outcome) const;
  // Fills outcome with a connection-failure diagnosis (exit code 3 or 1).
  void report_connection_error(Outcome& outcome, const std::string& during, int exit_code) const;

  std::string client_id(char role, uint32_t index) const;
  std::string topic(const std::string& suffix) const;
  mqtt::Version version() const {
    return options_.protocol == 5 ? mqtt::Version::kV5 : mqtt::Version::kV311;
  }

  const Options& options_;
  Progress progress_;
  ProcessProbe broker_;
  Endpoint endpoint_;
  std::unique_ptr<Engine> engine_;

  // Connection problems seen (set-up or later).
  uint64_t unexpected_closes_ = 0;
  std::string first_error_;
  int first_errno_ = 0;

 private:
  void setup_ready(Client& client);

  bool in_setup_ = false;
  std::unordered_map<const Client*, size_t> setup_index_;
  std::vector<SetupItem> setup_items_;
  size_t setup_ready_ = 0;
  size_t setup_pending_ = 0;  // connecting or subscribing
  std::string setup_refusal_;
};

std::unique_ptr<ScenarioBase> make_throughput(const Options& options);
std::unique_ptr<ScenarioBase> make_latency(const Options& options);
std::unique_ptr<ScenarioBase> make_idle(const Options& options);
std::unique_ptr<ScenarioBase> make_connect_rate(const Options& options);
// Updates `options` (host, port) once the server named the MQTT endpoint.
std::unique_ptr<ScenarioBase> make_broadcasts(Options& options);

// Explains an errno from connect() or socket() with what to do next.
std::string connection_advice(int errno_value, const Options& options);

}  // namespace counterlink::bench
