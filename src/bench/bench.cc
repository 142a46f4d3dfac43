// `counterlink bench`: argument parsing, scenario dispatch and output.
#include "counterlink/bench/bench.h"

#include <iostream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "scenario.h"

namespace counterlink::bench {

namespace {

std::string random_run_id() {
  std::random_device device;
  std::mt19937 rng(device());
  static const char kHex[] = "0123456789abcdef";
  std::string id;
  for (int i = 0; i < 8; ++i)
    id += kHex[rng() & 0xF];
  return id;
}

std::string shell_quote(const std::string& arg) {
  if (!arg.empty() && arg.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                            "0123456789-_./=:,+@%") == std::string::npos) {
    return arg;
  }
  std::string out = "'";
  for (char c : arg) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string json_array(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ",";
    out += json_quote(items[i]);
  }
  return out + "]";
}

// Prints the outcome (human summary, JSON) and returns the exit code.
int finish(const Options& options, Outcome& outcome) {
  int code = outcome.exit_code;
  if (code == 0 && !outcome.problems.empty()) code = 1;
  for (const std::string& w : outcome.warnings)
    std::cerr << "bench: warning: " << w << "\n";
  for (const std::string& p : outcome.problems)
    std::cerr << "bench: error: " << p << "\n";
  if (!outcome.human.empty()) {
    (options.json ? std::cerr : std::cout) << outcome.human << std::endl;
  }
  if (options.json) {
    std::string json = outcome.figures.str();
    json.pop_back();  // reopen the object to append the verdict
    if (json.size() > 1) json += ",";
    json += "\"ok\":" + std::string(code == 0 ? "true" : "false") +
            ",\"exit_code\":" + std::to_string(code) +
            ",\"problems\":" + json_array(outcome.problems) +
            ",\"warnings\":" + json_array(outcome.warnings) +
            ",\"command\":" + json_quote(options.command_line) + "}";
    std::cout << json << std::endl;
  }
  return code;
}

// `counterlink bench broadcasts ...`: its own options (an API, a token, a
// rate), so it is parsed apart from the MQTT scenarios.
int run_broadcasts(int argc, char** argv) {
  CLI::App app{
      "Durable payment broadcasts through the REST API: provisions a tenant, an API key, a "
      "speaker product and --speakers devices through the API, connects them over MQTT as "
      "speakers that ack and play every command, then sends POST "
      "/v1/devices/{id}/broadcasts over --connections keep-alive connections at --rate per "
      "second (open loop, latency from the scheduled send time) or --max (closed loop). "
      "Verifies that every accepted broadcast reached its speaker exactly once. See "
      "bench/README.md.",
      "counterlink bench broadcasts"};
  Options options;
  options.scenario = ScenarioKind::kBroadcasts;
  options.clients = 100;
  options.duration_s = 10;
  options.warmup_s = 2;
  std::string mqtt;
  app.add_option("--api", options.api_url, "REST API base URL, e.g. http://127.0.0.1:8080")
      ->required();
  app.add_option("--token", options.token,
                 "Operator API token (ak_....sk_...), used for the set-up")
      ->envname("COUNTERLINK_TOKEN")
      ->required();
  app.add_option("--speakers", options.clients, "Speakers (devices) to provision and connect")
      ->check(CLI::Range(1u, 100000u))
      ->capture_default_str();
  auto* rate = app.add_option("--rate", options.rate,
                              "Broadcasts per second, open loop (latency from the schedule)")
                   ->check(CLI::Range(1.0, 1e6));
  auto* max = app.add_flag("--max", options.max_rate,
                           "Closed loop: a new request as soon as a connection is free");
  rate->excludes(max);
  app.add_option("--connections", options.connections,
                 "HTTP keep-alive connections, one request in flight each")
      ->check(CLI::Range(1u, 10000u))
      ->capture_default_str();
  app.add_option("--duration-s,--duration", options.duration_s, "Measured seconds")
      ->check(CLI::Range(0.1, 86400.0))
      ->capture_default_str();
  app.add_option("--warmup-s,--warmup", options.warmup_s, "Warm-up seconds, not measured")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  app.add_option("--mqtt", mqtt,
                 "MQTT gateway HOST:PORT (default: the API's host and the tcp port its "
                 "connection-info names)");
  app.add_option("--server-pid", options.broker_pid,
                 "The server's pid, to report its CPU (from /proc/<pid>/stat)");
  app.add_option("--max-undelivered", options.max_undelivered,
                 "--max: broadcasts accepted but not yet at their speaker, at most (keeps the "
                 "closed loop to what the delivery path sustains)")
      ->capture_default_str();
  app.add_option("--request-timeout-s", options.request_timeout_s,
                 "An answer slower than this is a transport error")
      ->capture_default_str();
  app.add_option("--drain-timeout-s,--drain-timeout", options.drain_timeout_s,
                 "After the run, wait this long for deliveries still on their way")
      ->capture_default_str();
  app.add_option("--connect-concurrency", options.connect_concurrency,
                 "MQTT handshakes in flight while the speakers connect")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  app.add_flag("--json", options.json, "Print one JSON object with all figures on stdout");
  app.add_flag("--quiet,-q", options.quiet, "No progress lines on stderr");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (rate->count() == 0 && !options.max_rate) {
    std::cerr << "bench broadcasts: give --rate R (broadcasts per second) or --max\n";
    return 2;
  }
  if (!mqtt.empty()) {
    const size_t colon = mqtt.rfind(':');
    int port = -1;
    try {
      if (colon != std::string::npos) port = std::stoi(mqtt.substr(colon + 1));
    } catch (const std::exception&) {
    }
    if (colon == std::string::npos || colon == 0 || port <= 0 || port > 65535) {
      std::cerr << "bench broadcasts: --mqtt '" << mqtt << "' is not HOST:PORT\n";
      return 2;
    }
    options.host = mqtt.substr(0, colon);
    options.port = static_cast<uint16_t>(port);
    options.mqtt_given = true;
  }
  options.run_id = random_run_id();
  options.command_line = "counterlink bench";
  for (int i = 0; i < argc; ++i) {
    // The token is a secret: keep it out of reports.
    const bool secret = i > 0 && std::string(argv[i - 1]) == "--token";
    options.command_line += " " + (secret ? std::string("<token>") : shell_quote(argv[i]));
  }
  std::unique_ptr<ScenarioBase> runner = make_broadcasts(options);
  Outcome outcome;
  runner->run(outcome);
  return finish(options, outcome);
}

}  // namespace

int run_bench(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "broadcasts") return run_broadcasts(argc - 1, argv + 1);
  CLI::App app{
      "Load generator: drives many MQTT connections from one epoll thread against a broker and "
      "measures it. Scenarios: fan-in (N publishers -> 1 subscriber), fan-out (1 -> N), "
      "one-to-one (1 publisher -> N clients on their own topics), idle (memory per "
      "connection), latency (fixed rate, percentiles), connect-rate (CONNECT/CONNACK cycles). "
      "`counterlink bench broadcasts --help`: payment broadcasts through the REST API. "
      "See bench/README.md.",
      "counterlink bench"};
  Options options;
  std::string scenario;
  const std::map<std::string, ScenarioKind> scenarios = {
      {"fan-in", ScenarioKind::kFanIn},        {"fan-out", ScenarioKind::kFanOut},
      {"one-to-one", ScenarioKind::kOneToOne}, {"idle", ScenarioKind::kIdle},
      {"latency", ScenarioKind::kLatency},     {"connect-rate", ScenarioKind::kConnectRate}};
  uint32_t publishers = 1000;
  uint32_t subscribers = 1000;
  uint32_t clients = 1000;
  uint32_t connections = 10000;
  uint32_t connectors = 64;
  std::string username;
  std::string password;

  app.add_option("--scenario,-s", scenario,
                 "fan-in | fan-out | one-to-one | idle | latency | connect-rate")
      ->required()
      ->check(
          CLI::IsMember({"fan-in", "fan-out", "one-to-one", "idle", "latency", "connect-rate"}));
  app.add_option("--host", options.host, "Broker address")->capture_default_str();
  app.add_option("--port", options.port, "Broker port")->capture_default_str();
  app.add_option("--protocol", options.protocol, "MQTT protocol level: 4 (3.1.1) or 5 (5.0)")
      ->check(CLI::IsMember({4, 5}))
      ->capture_default_str();
  CLI::Option* qos_opt =
      app.add_option("--qos", options.qos,
                     "QoS of publishes and subscriptions, 0 or 1 (default 1 for fan-in and "
                     "one-to-one, else 0)")
          ->check(CLI::IsMember({0, 1}));
  CLI::Option* publishers_opt =
      app.add_option("--publishers", publishers, "fan-in: publishers")->capture_default_str();
  CLI::Option* subscribers_opt =
      app.add_option("--subscribers", subscribers, "fan-out: subscribers")->capture_default_str();
  CLI::Option* clients_opt =
      app.add_option("--clients", clients, "one-to-one: clients, each on its own topic")
          ->capture_default_str();
  CLI::Option* connections_opt =
      app.add_option("--connections", connections, "idle: connections to hold")
          ->capture_default_str();
  CLI::Option* connectors_opt =
      app.add_option("--connectors", connectors, "connect-rate: concurrent connectors")
          ->capture_default_str();
  app.add_option("--duration", options.duration_s, "Measured seconds (after the warm-up)")
      ->check(CLI::Range(0.1, 86400.0))
      ->capture_default_str();
  app.add_option("--warmup", options.warmup_s, "Warm-up seconds, not measured")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  app.add_option("--inflight", options.inflight,
                 "Closed loop window: messages between publish and arrival (fan-out: how far "
                 "the slowest subscriber may lag)")
      ->check(CLI::Range(1, 60000))
      ->capture_default_str();
  app.add_option("--payload", options.payload, "Payload bytes (at least 24)")
      ->check(CLI::Range(24, 16 * 1024 * 1024))
      ->capture_default_str();
  app.add_option("--rate", options.rate, "latency: messages per second")
      ->check(CLI::Range(1.0, 1e6))
      ->capture_default_str();
  app.add_option("--broker-pid", options.broker_pid,
                 "Broker process to sample (CPU from /proc/<pid>/stat, RSS from "
                 "/proc/<pid>/status)");
  app.add_flag("--json", options.json, "Print one JSON object with all figures on stdout");
  app.add_flag("--quiet,-q", options.quiet, "No progress lines on stderr");
  app.add_flag("--subscribe", options.subscribe,
               "idle: each connection subscribes to its own topic");
  app.add_option("--source-addresses", options.source_addresses,
                 "Local IPv4 addresses to spread connections over, from --source-base "
                 "(-1 = automatic: one per 10,000 connections when the broker is on loopback; "
                 "0 = none)")
      ->check(CLI::Range(-1, 250))
      ->capture_default_str();
  app.add_option("--source-base", options.source_base, "First source address")
      ->capture_default_str();
  app.add_option("--connect-concurrency", options.connect_concurrency,
                 "Connection handshakes in flight during set-up")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  app.add_option("--settle", options.settle_s,
                 "idle: seconds to hold the connections before sampling memory")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  app.add_option("--keepalive", options.keepalive, "Keep alive seconds sent in CONNECT")
      ->capture_default_str();
  app.add_option("--username", username, "User name for CONNECT");
  app.add_option("--password", password, "Password for CONNECT");
  app.add_option("--topic-prefix", options.topic_prefix,
                 "First topic level; topics are <prefix>/<run id>/...")
      ->capture_default_str();
  app.add_option("--stall-timeout", options.stall_timeout_s,
                 "Fail when nothing arrives for this many seconds")
      ->capture_default_str();
  app.add_option("--drain-timeout", options.drain_timeout_s,
                 "After the run, wait this long for messages still on their way")
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help is fine; anything else is a usage error
  }

  options.scenario = scenarios.at(scenario);
  struct CountOption {
    CLI::Option* option;
    ScenarioKind kind;
    uint32_t value;
  };
  const CountOption counts[] = {{publishers_opt, ScenarioKind::kFanIn, publishers},
                                {subscribers_opt, ScenarioKind::kFanOut, subscribers},
                                {clients_opt, ScenarioKind::kOneToOne, clients},
                                {connections_opt, ScenarioKind::kIdle, connections},
                                {connectors_opt, ScenarioKind::kConnectRate, connectors}};
  for (const CountOption& c : counts) {
    if (c.kind == options.scenario) {
      options.clients = c.value;
    } else if (c.option->count() > 0) {
      std::cerr << "bench: " << c.option->get_name() << " does not apply to " << scenario
                << "; it sets the number of clients of " << to_string(c.kind) << "\n";
      return 2;
    }
  }
  if (options.scenario != ScenarioKind::kLatency && options.clients == 0) {
    std::cerr << "bench: the number of clients must be at least 1\n";
    return 2;
  }
  if (qos_opt->count() == 0) {
    options.qos =
        options.scenario == ScenarioKind::kFanIn || options.scenario == ScenarioKind::kOneToOne ? 1
                                                                                                : 0;
  }
  if (!username.empty()) options.username = username;
  if (!password.empty()) options.password = password;
  options.run_id = random_run_id();
  options.command_line = "counterlink";
  for (int i = 0; i < argc; ++i)
    options.command_line += " " + shell_quote(argv[i]);

  std::unique_ptr<ScenarioBase> runner;
  switch (options.scenario) {
    case ScenarioKind::kFanIn:
    case ScenarioKind::kFanOut:
    case ScenarioKind::kOneToOne:
      runner = make_throughput(options);
      break;
    case ScenarioKind::kLatency:
      runner = make_latency(options);
      break;
    case ScenarioKind::kIdle:
      runner = make_idle(options);
      break;
    case ScenarioKind::kConnectRate:
      runner = make_connect_rate(options);
      break;
    case ScenarioKind::kBroadcasts:  // `bench broadcasts`, parsed above
      return 2;
  }
  Outcome outcome;
  runner->run(outcome);
  return finish(options, outcome);
}

}  // namespace counterlink::bench
