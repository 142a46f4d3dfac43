// `counterlink sim`: provisions a simulated fleet through the REST API, then
// runs it against the gateway until --duration-s passes or SIGINT/SIGTERM.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include "counterlink/obs/log.h"
#include "counterlink/sim/sim.h"

namespace counterlink::sim {
namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

std::string read_token_file(const std::string& path) {
  std::ifstream in(path);
  std::string token;
  std::getline(in, token);
  while (!token.empty() && (token.back() == '\r' || token.back() == ' ')) {
    token.pop_back();
  }
  return token;
}

// "host:port" or "[v6]:port". False if it is neither.
bool split_host_port(const std::string& text, std::string& host, uint16_t& port) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) return false;
  host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  try {
    size_t used = 0;
    const unsigned long value = std::stoul(text.substr(colon + 1), &used);
    if (used != text.size() - colon - 1 || value == 0 || value > 65535) return false;
    port = static_cast<uint16_t>(value);
  } catch (const std::exception&) {
    return false;
  }
  return !host.empty();
}

}  // namespace

int run_sim(int argc, char** argv) {
  CLI::App app{
      "Device simulator: registers speakers, printers and scan boxes through the REST API and "
      "connects them to the gateway with the real device protocol (signed credentials, "
      "commands, acks, results, events). See docs/simulator.md.",
      "counterlink sim"};
  ProvisionOptions provision_options;
  FleetOptions fleet;
  provision_options.api_url = env_or("COUNTERLINK_API", provision_options.api_url);
  provision_options.token = env_or("COUNTERLINK_TOKEN", "");
  std::string token_file = "./data/admin.token";
  std::string mqtt;
  std::string mqtt_version = "3.1.1";
  double report_s = 5;
  double duration_s = 0;
  std::string log_level = "info";
  std::string log_format = "text";
  bool quiet = false;

  app.add_option("--api", provision_options.api_url, "API base URL (env COUNTERLINK_API)")
      ->capture_default_str();
  app.add_option("--token", provision_options.token,
                 "Tenant API key ak_….sk_…, or an operator key with --tenant (env "
                 "COUNTERLINK_TOKEN)");
  app.add_option("--token-file", token_file, "File holding the token when --token is not given")
      ->capture_default_str();
  app.add_option("--tenant", provision_options.tenant, "Tenant id tn_… (operator keys)");
  app.add_option("--speakers", provision_options.speakers, "Payment speakers")
      ->capture_default_str();
  app.add_option("--printers", provision_options.printers, "Receipt printers")
      ->capture_default_str();
  app.add_option("--scanboxes", provision_options.scanboxes, "QR scan boxes")
      ->capture_default_str();
  app.add_option("--serial-prefix", provision_options.serial_prefix,
                 "Serials are <prefix>-SPK-000001, <prefix>-PRN-…, <prefix>-SCN-…")
      ->capture_default_str();
  app.add_option("--mqtt", mqtt,
                 "Gateway HOST:PORT (default: the plain MQTT endpoint of the API's "
                 "connection-info, else 127.0.0.1:1883)");
  app.add_option("--mqtt-version", mqtt_version, "MQTT protocol: 3.1.1 (or 4) or 5")
      ->check(CLI::IsMember({"3.1.1", "4", "5", "5.0"}))
      ->capture_default_str();
  app.add_option("--keep-alive", fleet.keep_alive_s, "MQTT keep-alive seconds")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  app.add_flag("--clean-start", fleet.clean_start,
               "Clean session per connection (default: persistent sessions, so commands sent "
               "while a device is offline reach it when it returns)");
  app.add_option("--play-ms", fleet.play_ms,
                 "How long a speaker takes to announce (0 for throughput; ~800 for a demo)")
      ->check(CLI::Range(0, 600000))
      ->capture_default_str();
  app.add_option("--print-ms", fleet.print_ms, "How long a printer takes per job")
      ->check(CLI::Range(0, 600000))
      ->capture_default_str();
  app.add_option("--receipts-dir", fleet.receipts_dir,
                 "Write each printed job's ESC/POS bytes to DIR/<device>-<command id>.bin")
      ->check(CLI::ExistingDirectory);
  app.add_option("--paper-out-every", fleet.paper_out_every,
                 "Every Nth print job of a printer runs out of paper (0 = never)")
      ->capture_default_str();
  app.add_option("--paper-refill-ms", fleet.paper_refill_ms,
                 "Time until paper is refilled and the printer reports ready")
      ->check(CLI::Range(0, 3600000))
      ->capture_default_str();
  app.add_option("--scan-rate", fleet.scan_rate_per_min,
                 "Scans per minute per scan box, at random moments (0 = never)")
      ->check(CLI::Range(0.0, 60000.0))
      ->capture_default_str();
  app.add_option("--churn-every-s", fleet.churn_every_s,
                 "Every S seconds one random device disconnects (0 = off)")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str();
  app.add_option("--offline-s", fleet.offline_s, "How long a churned device stays offline")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str();
  app.add_option("--connect-rate", fleet.connect_rate,
                 "New connections per second across the fleet (0 = unlimited)")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  app.add_option("--report-s", report_s, "Seconds between statistics lines on stderr")
      ->check(CLI::Range(0.1, 86400.0))
      ->capture_default_str();
  app.add_option("--duration-s", duration_s, "Run this long, then disconnect (0 = until SIGINT)")
      ->check(CLI::Range(0.0, 31536000.0))
      ->capture_default_str();
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off")
      ->capture_default_str();
  app.add_option("--log-format", log_format, "text | json")->capture_default_str();
  app.add_flag("--quiet", quiet, "No per-command log lines (statistics and warnings only)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    obs::init_logging(obs::LogConfig{log_level, log_format});
  } catch (const std::exception& e) {
    std::cerr << "counterlink sim: " << e.what() << "\n";
    return 2;
  }
  if (provision_options.speakers + provision_options.printers + provision_options.scanboxes == 0) {
    std::cerr << "counterlink sim: nothing to simulate: pass --speakers, --printers and/or "
                 "--scanboxes\n";
    return 2;
  }
  if (provision_options.token.empty()) provision_options.token = read_token_file(token_file);
  fleet.mqtt_version = mqtt_version.starts_with("5") ? 5 : 4;
  fleet.log_events = !quiet;
  provision_options.progress = [](const std::string& line) {
    std::fprintf(stderr, "%s\n", line.c_str());
  };

  Provisioned provisioned;
  try {
    provisioned = provision(provision_options);
  } catch (const std::exception& e) {
    std::cerr << "counterlink sim: " << e.what() << "\n";
    return 1;
  }
  if (!mqtt.empty()) {
    if (!split_host_port(mqtt, fleet.mqtt_host, fleet.mqtt_port)) {
      std::cerr << "counterlink sim: --mqtt expects HOST:PORT, e.g. 127.0.0.1:1883\n";
      return 2;
    }
  } else if (!provisioned.mqtt_host.empty() && provisioned.mqtt_port != 0) {
    fleet.mqtt_host = provisioned.mqtt_host;
    fleet.mqtt_port = provisioned.mqtt_port;
  }
  const size_t device_count = provisioned.devices.size();
  std::fprintf(
      stderr, "sim.provisioned devices=%zu speakers=%u printers=%u scanboxes=%u mqtt=%s:%u\n",
      device_count, provision_options.speakers, provision_options.printers,
      provision_options.scanboxes, fleet.mqtt_host.c_str(), static_cast<unsigned>(fleet.mqtt_port));

  // SIGINT/SIGTERM are taken with sigtimedwait() below; block them before
  // the fleet's thread starts so it inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  Fleet simulator(fleet, std::move(provisioned.devices));
  try {
    simulator.start();
  } catch (const std::exception& e) {
    std::cerr << "counterlink sim: " << e.what() << "\n";
    return 1;
  }
  const auto begin = std::chrono::steady_clock::now();
  const auto end = begin + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                               std::chrono::duration<double>(duration_s));
  auto next_report = begin + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                 std::chrono::duration<double>(report_s));
  const auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  };
  while (true) {
    auto wake = next_report;
    if (duration_s > 0 && end < wake) wake = end;
    const auto wait = std::max(std::chrono::steady_clock::duration::zero(),
                               wake - std::chrono::steady_clock::now());
    const auto wait_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count();
    timespec timeout{static_cast<time_t>(wait_ns / 1'000'000'000),
                     static_cast<long>(wait_ns % 1'000'000'000)};
    const int sig = sigtimedwait(&signals, nullptr, &timeout);
    if (sig == SIGINT || sig == SIGTERM) {
      std::fprintf(stderr, "sim.signal %s: disconnecting\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
      break;
    }
    const auto now = std::chrono::steady_clock::now();
    if (duration_s > 0 && now >= end) break;
    if (now >= next_report) {
      std::fprintf(stderr, "sim.stats t=%.0fs %s\n", elapsed(),
                   format_stats(simulator.stats()).c_str());
      while (next_report <= now)
        next_report += std::chrono::duration_cast<std::chrono::steady_clock::duration>(
            std::chrono::duration<double>(report_s));
    }
  }
  simulator.stop();
  std::fprintf(stderr, "sim.done t=%.1fs %s\n", elapsed(), format_stats(simulator.stats()).c_str());
  return 0;
}

}  // namespace counterlink::sim
