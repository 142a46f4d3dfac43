// broadcasts: durable payment broadcasts through the REST API, end to end.
//
//   main thread     HTTP load: `--connections` keep-alive connections, one
//                   request in flight each, POST /v1/devices/{id}/broadcasts
//                   at a fixed rate (open loop) or as fast as answers come
//                   back (--max, closed loop);
//   device thread   `--speakers` MQTT clients on the bench Engine that
//                   behave as payment speakers: every command on
//                   devices/<id>/commands is answered at once with the ack
//                   ("received") and the result ("played"), both QoS 1.
//
// Set-up goes through the public API with the operator token: one tenant,
// an API key for it, a speaker product and the devices (one bulk import);
// the speakers connect with signed device credentials.
//
// Every request carries a unique order id "<run id>-<seq>"; the device side
// finds it in the command's payload. Each thread writes only its own
// records; the main thread reads the device thread's after joining it. The
// only shared state is a few atomic counters (progress, the closed loop's
// bound, the drain). Latencies are measured from the request's *scheduled*
// send time in the open loop, so a server that stalls the sender is charged
// for the wait (no coordinated omission); in the closed loop from the send.
//
// Verification: every accepted (2xx) broadcast must reach the speaker it was
// sent to exactly once, with the command id the API answered; nothing else
// may arrive. After the drain the platform must hold no unfinished command
// of the run (checked through the API). Any HTTP error fails the run too:
// such a run is not valid for a table of figures.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>
#include <sys/prctl.h>
#include <unistd.h>

#include "counterlink/platform/device_credential.h"

#include "cli/api_client.h"
#include "http_client.h"
#include "scenario.h"

namespace counterlink::bench {

namespace {

using nlohmann::json;

constexpr size_t kCommandIdBytes = 32;  // "cm_" + 26 characters fit
constexpr const char* kChannels[] = {"wechat", "alipay", "unionpay"};

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A command id kept without allocating: up to 31 characters, else empty.
struct CommandId {
  char text[kCommandIdBytes] = {0};
  void set(std::string_view id) {
    if (id.size() >= kCommandIdBytes) return;
    std::memcpy(text, id.data(), id.size());
    text[id.size()] = 0;
  }
  std::string_view view() const { return text; }
};

// The string value of `"key"` in flat JSON text, tolerating white space;
// empty if absent or escaped. Enough for ids and order ids, which never
// need escapes; the caller falls back to a JSON parser when it gets nothing.
std::string_view string_field(std::string_view text, std::string_view key) {
  size_t from = 0;
  while (true) {
    const size_t at = text.find(key, from);
    if (at == std::string_view::npos) return {};
    from = at + key.size();
    if (at == 0 || text[at - 1] != '"' || from >= text.size() || text[from] != '"') continue;
    size_t i = from + 1;
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n'))
      ++i;
    if (i >= text.size() || text[i] != ':') continue;
    ++i;
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n'))
      ++i;
    if (i >= text.size() || text[i] != '"') continue;
    const size_t start = i + 1;
    const size_t end = text.find('"', start);
    if (end == std::string_view::npos) return {};
    std::string_view value = text.substr(start, end - start);
    if (value.find('\\') != std::string_view::npos) return {};
    return value;
  }
}

struct Provisioned {
  std::string tenant_id;
  std::string tenant_token;
  std::string product_id;
  struct Device {
    std::string id;
    std::string secret;
  };
  std::vector<Device> devices;
  uint16_t mqtt_port = 0;  // from connection-info, 0 if none
};

// What one API call answered, as a sentence for errors.
std::string describe(const cli::ApiAnswer& answer) {
  if (answer.status == 0) return "no answer (" + answer.error + ")";
  return answer.describe();
}

class Broadcasts : public ScenarioBase {
 public:
  explicit Broadcasts(Options& options)
      : ScenarioBase(options, options.max_rate ? "broadcasts max"
                                               : "broadcasts " + format_count(options.rate) + "/s"),
        settings_(options) {}

  void run(Outcome& outcome) override;

 private:
  // The HTTP side (main thread).
  struct Request {
    int64_t scheduled_ns = 0;
    int64_t sent_ns = 0;
    int64_t answered_ns = 0;
    int16_t status = -1;  // -1 not answered, 0 transport error, else HTTP status
    CommandId command;
  };
  // The device side (device thread).
  struct Arrival {
    int64_t arrived_ns = 0;
    int64_t result_acked_ns = 0;  // PUBACK of the "played" result
    uint8_t count = 0;
    bool wrong_speaker = false;
    CommandId command;
  };
  struct Speaker {
    Client client;
    std::string device_id;
    std::string commands_topic;
    std::string acks_topic;
    std::string results_topic;
    // packet id of an unacknowledged "played" result -> seq
    std::unordered_map<uint16_t, uint64_t> results_in_flight;
  };

  bool provision(Outcome& outcome, Provisioned& out);
  bool resolve_api(Outcome& outcome);
  bool connect_speakers(Outcome& outcome, const Provisioned& provisioned);
  void device_loop();
  void on_publish(Client& client, const mqtt::Publish& publish) override;
  void on_puback(Client& client, const mqtt::Ack& ack) override;
  void on_closed(Client& client, const std::string& why, int errno_value) override;
  void disconnect_speakers() {
    std::vector<Client*> clients;
    for (auto& speaker : speakers_)
      clients.push_back(&speaker->client);
    tear_down(clients);
  }

  void on_answer(uint64_t seq, int status, std::string_view body, const std::string& error);
  const std::string& request_bytes(uint64_t seq);
  void load(HttpLoadClient& http);
  uint64_t verify_platform(Outcome& outcome, const Provisioned& provisioned);
  void report(Outcome& outcome, bool checked_platform, uint64_t pending);

  uint64_t outstanding() const {
    return sent_ - failed_ - delivered_.load(std::memory_order_relaxed);
  }

  Options& settings_;
  std::string api_host_;
  uint16_t api_port_ = 0;
  Endpoint api_endpoint_;
  std::string tenant_token_;
  std::string order_prefix_;  // "<run id>-"

  // Main thread.
  std::vector<Request> requests_;
  std::vector<std::string> device_paths_;  // "/v1/devices/<id>/broadcasts"
  std::string request_;                    // reused request buffer
  uint64_t sent_ = 0;
  uint64_t accepted_ = 0;
  uint64_t failed_ = 0;  // answered with an error or a transport error
  std::map<int, uint64_t> errors_by_status_;
  std::vector<std::string> first_errors_;
  int64_t measure_from_ns_ = 0;
  int64_t measure_to_ns_ = 0;
  int64_t max_lag_ns_ = 0;
  bool overloaded_ = false;
  bool warmed_ = false;
  Snapshot measured_from_;
  Snapshot measured_to_;
  uint64_t http_reconnects_ = 0;

  // Device thread (set up on the main thread before the device thread runs,
  // read by the main thread after it was joined).
  std::vector<std::unique_ptr<Speaker>> speakers_;
  std::vector<Arrival> arrivals_;
  uint64_t duplicates_ = 0;
  uint64_t misrouted_ = 0;
  uint64_t foreign_ = 0;

  // Shared.
  std::atomic<uint64_t> delivered_{0};      // unique arrivals
  std::atomic<uint64_t> results_acked_{0};  // "played" results PUBACKed
  std::atomic<bool> connection_lost_{false};
  std::atomic<bool> stop_devices_{false};
};

// ---------------------------------------------------------------------------
// Set-up through the REST API.
// ---------------------------------------------------------------------------

bool Broadcasts::resolve_api(Outcome& outcome) {
  std::string url = options_.api_url;
  if (url.rfind("https://", 0) == 0) {
    outcome.exit_code = 2;
    outcome.problems.push_back("--api " + url +
                               ": the load client speaks plain HTTP only; use the server's "
                               "loopback HTTP endpoint (bearer tokens are accepted there)");
    return false;
  }
  if (url.rfind("http://", 0) == 0) url = url.substr(7);
  const size_t slash = url.find('/');
  if (slash != std::string::npos) url = url.substr(0, slash);
  const size_t colon = url.rfind(':');
  api_host_ = colon == std::string::npos ? url : url.substr(0, colon);
  int port = 80;
  if (colon != std::string::npos) {
    try {
      port = std::stoi(url.substr(colon + 1));
    } catch (const std::exception&) {
      port = -1;
    }
  }
  if (api_host_.empty() || port <= 0 || port > 65535) {
    outcome.exit_code = 2;
    outcome.problems.push_back("--api '" + options_.api_url +
                               "' is not http://HOST:PORT (e.g. http://127.0.0.1:8080)");
    return false;
  }
  api_port_ = static_cast<uint16_t>(port);
  std::string error;
  if (!resolve_endpoint(api_host_, api_port_, api_endpoint_, error)) {
    outcome.exit_code = 3;
    outcome.problems.push_back(error);
    return false;
  }
  return true;
}

bool Broadcasts::provision(Outcome& outcome, Provisioned& out) {
  const std::string base = "http://" + api_host_ + ":" + std::to_string(api_port_);
  auto refuse = [&](const std::string& what, const cli::ApiAnswer& answer) {
    outcome.exit_code = 3;
    std::string text = what + ": " + describe(answer);
    if (answer.status == 0) {
      text += "; is `counterlink serve` running with its HTTP endpoint at --api?";
    } else if (answer.status == 401 || answer.status == 403) {
      text +=
          "; pass the operator token with --token (the server's "
          "security.bootstrap_admin_token or <data_dir>/admin.token)";
    }
    outcome.problems.push_back(text);
    return false;
  };
  const int64_t start = now_ns();
  cli::ApiClient admin(base, options_.token);
  // Unlimited request rate and devices: the bench measures the server, not
  // the tenant's quotas.
  auto answer = admin.post(
      "/v1/tenants",
      json{{"name", "bench"}, {"kind", "other"}, {"max_devices", 0}, {"api_rate_limit", 0}});
  if (!answer.ok()) return refuse("creating the tenant \"bench\"", answer);
  out.tenant_id = answer.body.value("id", "");
  answer = admin.post("/v1/api-keys", json{{"name", "bench-broadcasts-" + options_.run_id},
                                           {"tenant_id", out.tenant_id}});
  if (!answer.ok()) return refuse("creating an API key for tenant " + out.tenant_id, answer);
  out.tenant_token = answer.body.value("token", "");

  cli::ApiClient tenant(base, out.tenant_token);
  answer = tenant.post("/v1/products", json{{"name", "bench speaker"}, {"type", "speaker"}});
  if (!answer.ok()) return refuse("creating the speaker product", answer);
  out.product_id = answer.body.value("id", "");

  // One bulk import for all speakers (NDJSON), which also answers their
  // secrets.
  char path[] = "/tmp/counterlink-bench-speakers-XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0) {
    outcome.exit_code = 3;
    outcome.problems.push_back("cannot create a temporary file in /tmp for the device import");
    return false;
  }
  ::close(fd);
  {
    std::ofstream file(path, std::ios::trunc);
    char serial[64];
    for (uint32_t i = 0; i < options_.clients; ++i) {
      std::snprintf(serial, sizeof serial, "BB-%s-%06u", options_.run_id.c_str(), i);
      file << json{{"serial", serial}}.dump() << "\n";
    }
  }
  answer = tenant.upload("/v1/devices:import?product_id=" + cli::url_encode(out.product_id), path,
                         "application/x-ndjson", {});
  ::unlink(path);
  if (!answer.ok()) {
    return refuse("importing " + std::to_string(options_.clients) + " speakers", answer);
  }
  for (const auto& device : answer.body.value("devices", json::array())) {
    out.devices.push_back({device.value("id", ""), device.value("secret", "")});
  }
  if (out.devices.size() != options_.clients) {
    outcome.exit_code = 3;
    outcome.problems.push_back("the device import created " + std::to_string(out.devices.size()) +
                               " of " + std::to_string(options_.clients) +
                               " speakers: " + answer.body.dump().substr(0, 400));
    return false;
  }
  answer = tenant.get("/v1/devices/" + out.devices[0].id + "/connection-info");
  if (answer.ok()) {
    for (const auto& endpoint : answer.body.value("endpoints", json::array())) {
      if (endpoint.value("scheme", "") == "mqtt") {
        out.mqtt_port = static_cast<uint16_t>(endpoint.value("port", 0));
        break;
      }
    }
  }
  progress_.line("provisioned tenant " + out.tenant_id + ", product " + out.product_id + " and " +
                 format_count(static_cast<double>(out.devices.size())) + " speakers in " +
                 format_count(static_cast<double>(now_ns() - start) / 1e9, 2) + " s");
  return true;
}

bool Broadcasts::connect_speakers(Outcome& outcome, const Provisioned& provisioned) {
  if (!settings_.mqtt_given) {
    if (provisioned.mqtt_port == 0) {
      outcome.exit_code = 3;
      outcome.problems.push_back(
          "the server's connection-info names no plain MQTT (tcp) endpoint; pass the gateway's "
          "address with --mqtt HOST:PORT");
      return false;
    }
    settings_.host = api_host_;
    settings_.port = provisioned.mqtt_port;
  }
  if (!start_engine(outcome, provisioned.devices.size() + options_.connections)) return false;
  std::vector<SetupItem> items;
  speakers_.reserve(provisioned.devices.size());
  const int64_t now_ms = wall_ms();
  for (size_t i = 0; i < provisioned.devices.size(); ++i) {
    const auto& device = provisioned.devices[i];
    auto speaker = std::make_unique<Speaker>();
    speaker->device_id = device.id;
    speaker->commands_topic = "devices/" + device.id + "/commands";
    speaker->acks_topic = "devices/" + device.id + "/acks";
    speaker->results_topic = "devices/" + device.id + "/results";
    // A fresh signed credential per connection (docs/device-protocol.md).
    const auto credential = platform::make_device_credential(device.id, device.secret, now_ms);
    speaker->client.index = static_cast<uint32_t>(i);
    speaker->client.client_id = credential.client_id;
    speaker->client.username = credential.username;
    speaker->client.password = credential.password;
    items.push_back({&speaker->client, speaker->commands_topic, 1});
    speakers_.push_back(std::move(speaker));
  }
  return set_up(std::move(items), "connecting " + std::to_string(speakers_.size()) + " speakers",
                outcome);
}

// ---------------------------------------------------------------------------
// The speakers (device thread).
// ---------------------------------------------------------------------------

void Broadcasts::device_loop() {
  while (!stop_devices_.load(std::memory_order_relaxed)) {
    engine_->poll(20 * kNsPerMs);
    engine_->flush();
  }
}

void Broadcasts::on_publish(Client& client, const mqtt::Publish& publish) {
  const int64_t arrived = engine_->loop_now_ns();
  Speaker& speaker = *speakers_[client.index];
  const std::string_view payload = publish.payload;
  std::string_view order = string_field(payload, "order_id");
  std::string_view command = string_field(payload, "id");
  std::string parsed_order, parsed_command;
  if (order.empty() || command.empty()) {
    const json j = json::parse(payload, nullptr, /*allow_exceptions=*/false);
    if (j.is_object()) {
      parsed_command = j.value("id", "");
      if (j.contains("broadcast") && j["broadcast"].is_object()) {
        parsed_order = j["broadcast"].value("order_id", "");
      }
    }
    order = parsed_order;
    command = parsed_command;
  }
  if (publish.topic != speaker.commands_topic || order.size() <= order_prefix_.size() ||
      order.substr(0, order_prefix_.size()) != order_prefix_ || command.empty()) {
    ++foreign_;
    return;
  }
  uint64_t seq = 0;
  for (char c : order.substr(order_prefix_.size())) {
    if (c < '0' || c > '9' || seq > (uint64_t{1} << 40)) {
      ++foreign_;
      return;
    }
    seq = seq * 10 + static_cast<uint64_t>(c - '0');
  }
  if (seq >= arrivals_.size()) arrivals_.resize(std::max<size_t>(seq + 1, arrivals_.size() * 2));
  Arrival& a = arrivals_[seq];
  // The platform may redeliver a command (e.g. after a reconnect); a device
  // answers a repeat again without playing it. Either way it is counted.
  const bool first = a.count == 0;
  if (a.count < 255) ++a.count;
  if (first) {
    a.arrived_ns = arrived;
    a.command.set(command);
    a.wrong_speaker = seq % speakers_.size() != client.index;
    if (a.wrong_speaker) ++misrouted_;
    delivered_.fetch_add(1, std::memory_order_relaxed);
  } else {
    ++duplicates_;
  }
  std::string text = "{\"v\":1,\"id\":\"";
  text.append(command);
  text += "\",\"status\":\"received\"}";
  engine_->publish(client, speaker.acks_topic, text, 1);
  text.resize(text.size() - std::strlen("\"status\":\"received\"}"));
  text += "\"result\":\"played\"}";
  const uint16_t packet_id = engine_->publish(client, speaker.results_topic, text, 1);
  if (first) speaker.results_in_flight[packet_id] = seq;
}

void Broadcasts::on_puback(Client& client, const mqtt::Ack& ack) {
  Speaker& speaker = *speakers_[client.index];
  auto it = speaker.results_in_flight.find(ack.packet_id);
  if (it == speaker.results_in_flight.end()) return;  // an ack's PUBACK
  arrivals_[it->second].result_acked_ns = engine_->loop_now_ns();
  speaker.results_in_flight.erase(it);
  results_acked_.fetch_add(1, std::memory_order_relaxed);
}

void Broadcasts::on_closed(Client& client, const std::string& why, int errno_value) {
  ScenarioBase::on_closed(client, why, errno_value);
  connection_lost_.store(true, std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------
// The HTTP load (main thread).
// ---------------------------------------------------------------------------

const std::string& Broadcasts::request_bytes(uint64_t seq) {
  const size_t speaker = seq % device_paths_.size();
  const uint64_t fen = 100 + seq % 100000;  // 1.00 .. 1000.99 yuan
  char body[160];
  const int body_len = std::snprintf(
      body, sizeof body, "{\"amount\":\"%llu.%02llu\",\"channel\":\"%s\",\"order_id\":\"%s%llu\"}",
      static_cast<unsigned long long>(fen / 100), static_cast<unsigned long long>(fen % 100),
      kChannels[seq % 3], order_prefix_.c_str(), static_cast<unsigned long long>(seq));
  request_.clear();
  request_ += "POST ";
  request_ += device_paths_[speaker];
  request_ += " HTTP/1.1\r\nHost: ";
  request_ += api_endpoint_.text;
  request_ += "\r\nAuthorization: Bearer ";
  request_ += tenant_token_;
  request_ += "\r\nContent-Type: application/json\r\nContent-Length: ";
  request_ += std::to_string(body_len);
  request_ += "\r\n\r\n";
  request_.append(body, static_cast<size_t>(body_len));
  return request_;
}

void Broadcasts::on_answer(uint64_t seq, int status, std::string_view body,
                           const std::string& error) {
  Request& r = requests_[seq];
  r.answered_ns = now_ns();
  r.status = static_cast<int16_t>(status);
  if (status >= 200 && status < 300) {
    ++accepted_;
    r.command.set(string_field(body, "id"));
    return;
  }
  ++failed_;
  ++errors_by_status_[status];
  if (first_errors_.size() < 5) {
    first_errors_.push_back(status == 0 ? "request " + std::to_string(seq) + ": " + error
                                        : "request " + std::to_string(seq) + ": HTTP " +
                                              std::to_string(status) + " " +
                                              std::string(body.substr(0, 300)));
  }
}

void Broadcasts::load(HttpLoadClient& http) {
  const bool closed_loop = options_.max_rate;
  const double rate = options_.rate;
  const auto period = closed_loop ? 0 : static_cast<int64_t>(1e9 / rate);
  const int64_t start = now_ns();
  measure_from_ns_ = start + static_cast<int64_t>(options_.warmup_s * 1e9);
  measure_to_ns_ = measure_from_ns_ + static_cast<int64_t>(options_.duration_s * 1e9);
  // Open loop, but not unbounded: this far behind the schedule the server
  // does not sustain the rate.
  const auto max_backlog = static_cast<uint64_t>(std::max(1000.0, rate * 2));
  const uint64_t max_outstanding =
      closed_loop ? options_.max_undelivered : static_cast<uint64_t>(std::max(10000.0, rate * 5));
  if (!closed_loop) {
    requests_.reserve(static_cast<size_t>(rate * (options_.warmup_s + options_.duration_s)) + 16);
  }
  Snapshot last = snapshot(0);
  uint64_t last_delivered = 0;
  std::vector<int64_t> recent;  // API latencies since the last progress line
  size_t recent_from = 0;
  int64_t next_progress = start + kNsPerSec;
  bool waiting_for_connection = false;
  while (true) {
    const int64_t now = now_ns();
    if (!warmed_ && now >= measure_from_ns_) {
      measured_from_ = snapshot(accepted_);
      warmed_ = true;
    }
    if (now >= measure_to_ns_ || connection_lost_.load(std::memory_order_relaxed)) break;
    if (closed_loop) {
      while (outstanding() < max_outstanding) {
        const size_t conn = http.take_idle();
        if (conn == SIZE_MAX) break;
        const uint64_t seq = sent_++;
        Request& r = requests_.emplace_back();
        r.scheduled_ns = now_ns();
        r.sent_ns = r.scheduled_ns;
        http.send(conn, request_bytes(seq), seq);
      }
    } else {
      waiting_for_connection = false;
      while (true) {
        const int64_t due = start + static_cast<int64_t>(sent_) * period;
        if (due > now || due >= measure_to_ns_) break;
        if (now - due > static_cast<int64_t>(max_backlog) * period ||
            outstanding() > max_outstanding) {
          overloaded_ = true;
          break;
        }
        const size_t conn = http.take_idle();
        if (conn == SIZE_MAX) {  // every connection busy: wait for an answer
          waiting_for_connection = true;
          break;
        }
        const uint64_t seq = sent_++;
        Request& r = requests_.emplace_back();
        r.scheduled_ns = due;
        r.sent_ns = now_ns();
        if (due >= measure_from_ns_) max_lag_ns_ = std::max(max_lag_ns_, r.sent_ns - due);
        http.send(conn, request_bytes(seq), seq);
      }
      if (overloaded_) break;
    }
    if (now >= next_progress) {
      const Snapshot s = snapshot(accepted_);
      const double secs = static_cast<double>(s.time_ns - last.time_ns) / 1e9;
      const uint64_t delivered = delivered_.load(std::memory_order_relaxed);
      recent.clear();
      for (size_t i = recent_from; i < requests_.size(); ++i) {
        if (requests_[i].status > 0) {
          recent.push_back(requests_[i].answered_ns - requests_[i].scheduled_ns);
        }
      }
      // Older requests still unanswered are picked up next time.
      while (recent_from < requests_.size() && requests_[recent_from].status != -1)
        ++recent_from;
      std::sort(recent.begin(), recent.end());
      std::string text =
          format_count(static_cast<double>(now - start) / 1e9, 1) + "s " +
          (now < measure_from_ns_ ? "(warm-up) " : "") + "accepted " +
          format_count(static_cast<double>(s.count - last.count) / secs) + "/s  delivered " +
          format_count(static_cast<double>(delivered - last_delivered) / secs) +
          "/s  outstanding " + format_count(static_cast<double>(outstanding())) + "  api p50 " +
          format_count(static_cast<double>(percentile(recent, 50)) / 1e6, 2) + " ms p99 " +
          format_count(static_cast<double>(percentile(recent, 99)) / 1e6, 2) + " ms";
      if (failed_ > 0) text += "  ERRORS " + format_count(static_cast<double>(failed_));
      if (s.broker_cpu_s && last.broker_cpu_s) {
        text += "  server cpu " +
                format_count((*s.broker_cpu_s - *last.broker_cpu_s) / secs * 100) + "%";
      }
      text += "  loader cpu " + format_count((s.own_cpu_s - last.own_cpu_s) / secs * 100) + "%";
      progress_.line(text);
      last = s;
      last_delivered = delivered;
      next_progress += kNsPerSec;
    }
    // Sleep until the next send is due, an answer comes or a progress line.
    int64_t wake = std::min(next_progress, measure_to_ns_);
    if (!closed_loop && !waiting_for_connection) {
      wake = std::min(wake, start + static_cast<int64_t>(sent_) * period);
    }
    if (closed_loop && outstanding() >= max_outstanding) {
      wake = std::min(wake, now_ns() + kNsPerMs);  // wait for deliveries
    }
    http.poll(std::max<int64_t>(0, wake - now_ns()));
  }
  measured_to_ = snapshot(accepted_);
  http_reconnects_ = http.reconnects();
}

// Unfinished commands of the run after the drain: listed per speaker
// through the API (states queued, sent, delivered, waiting).
uint64_t Broadcasts::verify_platform(Outcome& outcome, const Provisioned& provisioned) {
  const std::string base = "http://" + api_host_ + ":" + std::to_string(api_port_);
  cli::ApiClient api(base, provisioned.tenant_token);
  std::vector<size_t> check(provisioned.devices.size());
  for (size_t i = 0; i < check.size(); ++i)
    check[i] = i;
  const int64_t until = now_ns() + static_cast<int64_t>(options_.drain_timeout_s * 1e9);
  uint64_t pending = 0;
  while (true) {
    std::vector<size_t> still;
    pending = 0;
    for (size_t i : check) {
      const auto answer = api.get("/v1/devices/" + provisioned.devices[i].id +
                                  "/commands?states=queued&states=sent&states=delivered&"
                                  "states=waiting&page_size=1000");
      if (!answer.ok()) {
        outcome.warnings.push_back("could not list the commands of " + provisioned.devices[i].id +
                                   " to check the platform's state: " + describe(answer));
        return 0;
      }
      const size_t n = answer.body.value("commands", json::array()).size();
      if (n > 0) {
        still.push_back(i);
        pending += n;
      }
    }
    if (still.empty() || now_ns() >= until) break;
    check = std::move(still);
    ::usleep(200'000);
  }
  return pending;
}

// ---------------------------------------------------------------------------

void Broadcasts::run(Outcome& outcome) {
  outcome.figures.add("scenario", to_string(options_.scenario)).add("run_id", options_.run_id);
  if (options_.broker_pid > 0) {
    outcome.figures.add("server_pid", static_cast<int64_t>(options_.broker_pid));
  }
  outcome.figures.add("mode", options_.max_rate ? "max" : "rate")
      .add("rate_target_per_s", options_.max_rate ? 0.0 : options_.rate)
      .add("speakers", options_.clients)
      .add("http_connections", options_.connections)
      .add("warmup_s", options_.warmup_s)
      .add("duration_s", options_.duration_s);
  if (options_.max_rate) outcome.figures.add("max_undelivered", options_.max_undelivered);
  ::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  if (!resolve_api(outcome)) return;
  outcome.figures.add("api", api_endpoint_.text);
  order_prefix_ = options_.run_id + "-";

  Provisioned provisioned;
  if (!provision(outcome, provisioned)) return;
  tenant_token_ = provisioned.tenant_token;
  for (const auto& d : provisioned.devices)
    device_paths_.push_back("/v1/devices/" + d.id + "/broadcasts");
  outcome.figures.add("tenant_id", provisioned.tenant_id);
  if (!connect_speakers(outcome, provisioned)) return;
  outcome.figures.add("mqtt", endpoint_.text);

  HttpLoadClient http(api_endpoint_,
                      [this](size_t, uint64_t tag, int status, std::string_view body,
                             const std::string& error) { on_answer(tag, status, body, error); });
  http.set_request_timeout(static_cast<int64_t>(options_.request_timeout_s * 1e9));
  std::string error;
  if (!http.open(options_.connections, 10 * kNsPerSec, error)) {
    outcome.exit_code = 3;
    outcome.problems.push_back(error);
    disconnect_speakers();
    return;
  }

  // From here the engine belongs to the device thread until it is joined.
  std::thread devices([this] { device_loop(); });
  load(http);
  // Answers still on their way.
  const int64_t answers_until = now_ns() + static_cast<int64_t>(options_.request_timeout_s * 1e9);
  while (http.busy() > 0 && now_ns() < answers_until)
    http.poll(10 * kNsPerMs);
  http_reconnects_ = http.reconnects();
  // Deliveries and results still on their way.
  const int64_t drain_until = now_ns() + static_cast<int64_t>(options_.drain_timeout_s * 1e9);
  while (now_ns() < drain_until && !connection_lost_.load(std::memory_order_relaxed) &&
         (delivered_.load(std::memory_order_relaxed) < accepted_ ||
          results_acked_.load(std::memory_order_relaxed) < accepted_)) {
    ::usleep(5000);
  }
  // A duplicate would come shortly after the original: listen a little longer.
  ::usleep(300'000);
  stop_devices_.store(true);
  devices.join();

  uint64_t pending = 0;
  const bool check_platform = !connection_lost_.load();
  if (check_platform) pending = verify_platform(outcome, provisioned);
  disconnect_speakers();
  report(outcome, check_platform, pending);
}

void Broadcasts::report(Outcome& outcome, bool checked_platform, uint64_t pending) {
  if (warmed_) add_interval(outcome, measured_from_, measured_to_, "broadcast");
  const double secs = static_cast<double>(measure_to_ns_ - measure_from_ns_) / 1e9;
  std::vector<int64_t> api, api_service, device, result;
  uint64_t lost = 0, id_mismatch = 0, delivered_unaccepted = 0, results_missing = 0;
  uint64_t measured_sent = 0, measured_accepted = 0, delivered_in_interval = 0;
  for (uint64_t seq = 0; seq < requests_.size(); ++seq) {
    const Request& r = requests_[seq];
    const Arrival* a =
        seq < arrivals_.size() && arrivals_[seq].count > 0 ? &arrivals_[seq] : nullptr;
    const bool ok = r.status >= 200 && r.status < 300;
    if (a && a->arrived_ns >= measure_from_ns_ && a->arrived_ns < measure_to_ns_) {
      ++delivered_in_interval;
    }
    if (!ok) {
      if (a) ++delivered_unaccepted;
      continue;
    }
    if (!a) {
      ++lost;
      continue;
    }
    if (a->command.view() != r.command.view()) ++id_mismatch;
    if (a->result_acked_ns == 0) ++results_missing;
    if (r.scheduled_ns < measure_from_ns_ || r.scheduled_ns >= measure_to_ns_) continue;
    ++measured_accepted;
    api.push_back(r.answered_ns - r.scheduled_ns);
    api_service.push_back(r.answered_ns - r.sent_ns);
    device.push_back(a->arrived_ns - r.scheduled_ns);
    if (a->result_acked_ns > 0) result.push_back(a->result_acked_ns - r.scheduled_ns);
  }
  for (const Request& r : requests_) {
    if (r.scheduled_ns >= measure_from_ns_ && r.scheduled_ns < measure_to_ns_) ++measured_sent;
  }
  uint64_t beyond = 0;  // arrivals for requests never sent: impossible unless ids collide
  for (uint64_t seq = requests_.size(); seq < arrivals_.size(); ++seq)
    beyond += arrivals_[seq].count > 0 ? 1 : 0;
  for (auto* v : {&api, &api_service, &device, &result})
    std::sort(v->begin(), v->end());
  auto ms = [](const std::vector<int64_t>& v, double p) {
    return static_cast<double>(percentile(v, p)) / 1e6;
  };
  auto max_ms = [](const std::vector<int64_t>& v) {
    return v.empty() ? 0.0 : static_cast<double>(v.back()) / 1e6;
  };
  const uint64_t transport_errors =
      errors_by_status_.count(0) ? errors_by_status_.at(0) : uint64_t{0};
  JsonObject statuses;
  for (const auto& [status, n] : errors_by_status_) {
    if (status != 0) statuses.add(std::to_string(status), n);
  }
  outcome.figures.add("sent", sent_)
      .add("accepted", accepted_)
      .add("errors", failed_)
      .add("transport_errors", transport_errors)
      .add("error_statuses", statuses)
      .add("http_reconnects", http_reconnects_)
      .add("measured_sent", measured_sent)
      .add("measured_accepted", measured_accepted)
      .add("accepted_per_s", secs > 0 ? static_cast<double>(measured_accepted) / secs : 0.0)
      .add("delivered_per_s", secs > 0 ? static_cast<double>(delivered_in_interval) / secs : 0.0)
      .add("api_p50_ms", ms(api, 50))
      .add("api_p90_ms", ms(api, 90))
      .add("api_p99_ms", ms(api, 99))
      .add("api_max_ms", max_ms(api))
      .add("api_service_p50_ms", ms(api_service, 50))
      .add("api_service_p99_ms", ms(api_service, 99))
      .add("device_p50_ms", ms(device, 50))
      .add("device_p90_ms", ms(device, 90))
      .add("device_p99_ms", ms(device, 99))
      .add("device_p999_ms", ms(device, 99.9))
      .add("device_max_ms", max_ms(device))
      .add("played_acked_p50_ms", ms(result, 50))
      .add("played_acked_p99_ms", ms(result, 99))
      .add("samples", static_cast<uint64_t>(device.size()))
      .add("max_send_lag_ms", static_cast<double>(max_lag_ns_) / 1e6)
      .add("delivered", delivered_.load())
      .add("lost", lost)
      .add("duplicates", duplicates_)
      .add("misrouted", misrouted_)
      .add("command_id_mismatch", id_mismatch)
      .add("delivered_unaccepted", delivered_unaccepted)
      .add("foreign", foreign_ + beyond)
      .add("results_unacked", results_missing)
      .add("speaker_connections_lost", unexpected_closes_);
  if (checked_platform) {
    outcome.figures.add("platform_unfinished", pending);
  } else {
    outcome.figures.add_null("platform_unfinished");
  }

  if (unexpected_closes_ > 0) {
    report_connection_error(outcome, "a speaker's connection failed during the run", 1);
  }
  if (overloaded_) {
    outcome.problems.push_back(
        "the server fell too far behind the schedule of " + format_count(options_.rate) +
        " broadcasts/s (more than 2 s of requests waiting, or 5 s worth not delivered); it does "
        "not sustain this rate: lower --rate or use --max");
  }
  const double accepted_rate = secs > 0 ? static_cast<double>(measured_accepted) / secs : 0;
  if (!options_.max_rate && !overloaded_ && accepted_rate < 0.95 * options_.rate) {
    outcome.problems.push_back("the server accepted " + format_count(accepted_rate) +
                               " broadcasts/s of the " + format_count(options_.rate) +
                               "/s scheduled: it does not sustain this rate (or add "
                               "--connections); the latencies are not those of this rate");
  }
  if (failed_ > 0) {
    std::string text = format_count(static_cast<double>(failed_)) +
                       " requests failed (a run with errors is not valid): ";
    bool first = true;
    for (const auto& [status, n] : errors_by_status_) {
      text += (first ? "" : ", ") + format_count(static_cast<double>(n)) + " x " +
              (status == 0 ? std::string("transport error") : "HTTP " + std::to_string(status));
      first = false;
    }
    for (const std::string& e : first_errors_)
      text += "; " + e;
    outcome.problems.push_back(text);
  }
  if (lost > 0) {
    outcome.problems.push_back(format_count(static_cast<double>(lost)) +
                               " accepted broadcasts never reached their speaker");
  }
  if (duplicates_ > 0) {
    outcome.problems.push_back(format_count(static_cast<double>(duplicates_)) +
                               " broadcasts reached their speaker more than once");
  }
  if (misrouted_ > 0) {
    outcome.problems.push_back(format_count(static_cast<double>(misrouted_)) +
                               " broadcasts reached the wrong speaker");
  }
  if (id_mismatch > 0) {
    outcome.problems.push_back(format_count(static_cast<double>(id_mismatch)) +
                               " broadcasts arrived with another command id than the API answered");
  }
  if (foreign_ + beyond > 0) {
    outcome.problems.push_back(format_count(static_cast<double>(foreign_ + beyond)) +
                               " commands arrived that this run did not send");
  }
  if (delivered_unaccepted > 0) {
    outcome.warnings.push_back(format_count(static_cast<double>(delivered_unaccepted)) +
                               " broadcasts whose request failed were delivered anyway (stored "
                               "before the answer was lost)");
  }
  if (results_missing > 0) {
    outcome.problems.push_back(format_count(static_cast<double>(results_missing)) +
                               " \"played\" results were not acknowledged by the gateway");
  }
  if (checked_platform && pending > 0) {
    outcome.problems.push_back(format_count(static_cast<double>(pending)) +
                               " commands were still unfinished on the platform after the drain "
                               "(acks/results not recorded)");
  }
  if (!options_.max_rate && max_lag_ns_ > 5 * kNsPerMs) {
    outcome.warnings.push_back("requests were sent up to " +
                               format_count(static_cast<double>(max_lag_ns_) / 1e6, 1) +
                               " ms after their scheduled time (all connections busy, or the "
                               "loader descheduled); latencies count from the schedule");
  }
  outcome.human =
      std::string("broadcasts ") +
      (options_.max_rate ? "max" : "at " + format_count(options_.rate) + "/s") + ": accepted " +
      format_count(secs > 0 ? static_cast<double>(measured_accepted) / secs : 0) + "/s; API p50 " +
      format_count(ms(api, 50), 2) + " ms p99 " + format_count(ms(api, 99), 2) +
      " ms; API->device p50 " + format_count(ms(device, 50), 2) + " ms p99 " +
      format_count(ms(device, 99), 2) + " ms; " + format_count(static_cast<double>(accepted_)) +
      " accepted, " + format_count(static_cast<double>(failed_)) + " errors, " +
      format_count(static_cast<double>(lost)) + " lost, " +
      format_count(static_cast<double>(duplicates_)) + " duplicates";
}

}  // namespace

std::unique_ptr<ScenarioBase> make_broadcasts(Options& options) {
  return std::make_unique<Broadcasts>(options);
}

}  // namespace counterlink::bench
