// A simulated fleet against a real gateway in the same process. The gateway
// checks every CONNECT's signed credential (docs/device-protocol.md,
// "Connecting") and confines each device to devices/<id>/, so these tests
// also pin that the simulator signs and names topics as the protocol says.
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "counterlink/gateway/gateway.h"
#include "counterlink/platform/crypto.h"
#include "counterlink/platform/device_credential.h"
#include "counterlink/sim/sim.h"

namespace counterlink::sim {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Accepts a CONNECT only with a valid, fresh, unused signed credential.
class SignatureAuthenticator : public gateway::Authenticator {
 public:
  explicit SignatureAuthenticator(std::vector<SimDevice> devices) : devices_(std::move(devices)) {}

  void authenticate(const gateway::AuthRequest& request,
                    std::function<void(gateway::AuthResult)> done) override {
    done(check(request) ? gateway::AuthResult{}
                        : gateway::AuthResult{mqtt::ReasonCode::kBadUserNameOrPassword,
                                              "bad user name or password"});
  }

  size_t accepted(const std::string& device_id) {
    std::lock_guard lock(mutex_);
    size_t n = 0;
    for (const auto& username : used_)
      n += username.rfind(device_id + ";", 0) == 0 ? 1 : 0;
    return n;
  }
  size_t refused() {
    std::lock_guard lock(mutex_);
    return refused_;
  }

 private:
  bool check(const gateway::AuthRequest& request) {
    std::lock_guard lock(mutex_);
    const auto username = platform::parse_device_username(request.client.username);
    bool ok = username && request.client.client_id == username->device_id && request.password &&
              std::llabs(username->timestamp_ms - wall_ms()) <= 300'000 &&
              used_.count(request.client.username) == 0;
    if (ok) {
      const SimDevice* device = nullptr;
      for (const auto& d : devices_)
        if (d.id == username->device_id) device = &d;
      ok = device != nullptr &&
           *request.password == platform::sign_credential(device->secret, request.client.client_id,
                                                          device->id, username->timestamp_text);
    }
    if (ok) {
      used_.insert(request.client.username);
    } else {
      ++refused_;
    }
    return ok;
  }

  std::vector<SimDevice> devices_;
  std::mutex mutex_;
  std::set<std::string> used_;
  size_t refused_ = 0;
};

// Devices may publish and subscribe only below devices/<client id>/.
class NamespaceAuthorizer : public gateway::Authorizer {
 public:
  bool authorize(const gateway::ClientInfo& client, gateway::Action,
                 std::string_view topic) override {
    const std::string prefix = "devices/" + client.client_id + "/";
    return topic.size() > prefix.size() && topic.substr(0, prefix.size()) == prefix;
  }
};

// What the devices published, and who connected and left.
class Recorder : public gateway::GatewayEvents {
 public:
  struct Publish {
    std::string client_id;
    std::string topic;
    json payload;
  };

  void on_publish(const gateway::ClientInfo& client, const gateway::MessagePtr& m) override {
    add([&] {
      publishes_.push_back({client.client_id, m->topic, json::parse(m->payload, nullptr, false)});
    });
  }
  void on_disconnected(const gateway::ClientInfo& client,
                       gateway::DisconnectReason reason) override {
    add([&] { disconnects_.push_back(client.client_id + ":" + gateway::to_string(reason)); });
  }

  // Waits until `count` publishes on `topic` satisfy `match`; returns them.
  std::vector<json> wait_for(const std::string& topic, size_t count,
                             const std::function<bool(const json&)>& match = {},
                             std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mutex_);
    std::vector<json> found;
    cv_.wait_for(lock, timeout, [&] {
      found.clear();
      for (const auto& p : publishes_)
        if (p.topic == topic && (!match || match(p.payload))) found.push_back(p.payload);
      return found.size() >= count;
    });
    return found;
  }
  std::vector<std::string> disconnects() {
    std::lock_guard lock(mutex_);
    return disconnects_;
  }
  std::vector<std::string> topics() {
    std::lock_guard lock(mutex_);
    std::vector<std::string> out;
    for (const auto& p : publishes_)
      out.push_back(p.topic);
    return out;
  }

 private:
  template <typename F>
  void add(F&& f) {
    {
      std::lock_guard lock(mutex_);
      f();
    }
    cv_.notify_all();
  }
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<Publish> publishes_;
  std::vector<std::string> disconnects_;
};

bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout = 10s) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (condition()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return condition();
}

SimDevice device(const std::string& id, DeviceKind kind) {
  return SimDevice{id, platform::random_alnum(32), kind, id};
}

class FleetGatewayTest : public ::testing::TestWithParam<int> {
 protected:
  void start_gateway(std::vector<SimDevice> devices) {
    gateway::GatewayConfig config;
    config.workers = 1;
    config.listeners.push_back(
        gateway::ListenerConfig{"tcp", gateway::ListenerKind::kTcp, "127.0.0.1", 0, {}, "/mqtt"});
    auth_ = std::make_shared<SignatureAuthenticator>(std::move(devices));
    recorder_ = std::make_shared<Recorder>();
    gateway_ = std::make_unique<gateway::Gateway>(
        config, gateway::Hooks{auth_, std::make_shared<NamespaceAuthorizer>(), recorder_});
    gateway_->start();
    port_ = gateway_->listeners().at(0).port;
  }

  FleetOptions fleet_options() const {
    FleetOptions options;
    options.mqtt_host = "127.0.0.1";
    options.mqtt_port = port_;
    options.mqtt_version = GetParam();
    options.seed = 7;
    return options;
  }

  void command(const std::string& device_id, const json& payload) {
    auto message = std::make_shared<gateway::Message>();
    message->topic = "devices/" + device_id + "/commands";
    message->payload = payload.dump();
    message->qos = 1;
    gateway_->deliver(device_id, std::move(message));
  }

  void TearDown() override {
    if (gateway_) gateway_->stop();
  }

  std::shared_ptr<SignatureAuthenticator> auth_;
  std::shared_ptr<Recorder> recorder_;
  std::unique_ptr<gateway::Gateway> gateway_;
  uint16_t port_ = 0;
};

TEST_P(FleetGatewayTest, DevicesAnswerCommandsWithAcksAndResultsOnTheirOwnTopics) {
  const std::vector<SimDevice> devices = {device("dv_sim_spk", DeviceKind::kSpeaker),
                                          device("dv_sim_prn", DeviceKind::kPrinter),
                                          device("dv_sim_scn", DeviceKind::kScanBox)};
  start_gateway(devices);
  const auto receipts =
      std::filesystem::temp_directory_path() /
      ("sim-receipts-" + std::to_string(::getpid()) + "-" + std::to_string(GetParam()));
  std::filesystem::create_directories(receipts);
  FleetOptions options = fleet_options();
  options.receipts_dir = receipts.string();
  options.scan_rate_per_min = 600;
  Fleet fleet(options, devices);
  fleet.start();
  ASSERT_TRUE(eventually([&] { return fleet.stats().connected == 3; }));
  EXPECT_EQ(auth_->refused(), 0u);

  // Speaker: ack, then played; the same command again is answered, not replayed.
  const json broadcast = {{"v", 1},
                          {"id", "cm_b1"},
                          {"type", "broadcast"},
                          {"expires_at_ms", wall_ms() + 60'000},
                          {"broadcast", {{"amount", "12.50"}, {"text", "收款12.50元"}}}};
  command("dv_sim_spk", broadcast);
  EXPECT_EQ(recorder_->wait_for("devices/dv_sim_spk/acks", 1).at(0),
            json({{"v", 1}, {"id", "cm_b1"}, {"status", "received"}}));
  EXPECT_EQ(recorder_->wait_for("devices/dv_sim_spk/results", 1).at(0),
            json({{"v", 1}, {"id", "cm_b1"}, {"result", "played"}}));
  command("dv_sim_spk", broadcast);
  EXPECT_EQ(recorder_->wait_for("devices/dv_sim_spk/results", 2).size(), 2u);
  EXPECT_EQ(fleet.stats().played, 1u);
  EXPECT_EQ(fleet.stats().duplicates, 1u);

  // Printer: a two-part job whose second part comes first.
  const std::string escpos =
      "\x1b@Table 7\n1 x Noodles  18.00\n\x1d"
      "VA";
  const std::string data = platform::base64url_encode(escpos);
  const size_t half = data.size() / 2;
  for (int part : {2, 1}) {
    command("dv_sim_prn", {{"v", 1},
                           {"id", "cm_p1"},
                           {"type", "print"},
                           {"expires_at_ms", wall_ms() + 60'000},
                           {"print",
                            {{"copies", 1},
                             {"encoding", "escpos"},
                             {"data", part == 1 ? data.substr(0, half) : data.substr(half)},
                             {"part", part},
                             {"parts", 2}}}});
  }
  EXPECT_EQ(recorder_->wait_for("devices/dv_sim_prn/results", 1).at(0),
            json({{"v", 1}, {"id", "cm_p1"}, {"result", "printed"}}));
  EXPECT_EQ(recorder_->wait_for("devices/dv_sim_prn/acks", 1).size(), 1u);
  std::ifstream file(receipts / "dv_sim_prn-cm_p1.bin", std::ios::binary);
  std::stringstream printed;
  printed << file.rdbuf();
  EXPECT_EQ(printed.str(), escpos);

  // Scan box: scans on its own, shows a result.
  const auto scans = recorder_->wait_for(
      "devices/dv_sim_scn/events", 1, [](const json& j) { return j.value("type", "") == "scan"; });
  ASSERT_FALSE(scans.empty());
  EXPECT_EQ(scans[0]["code"].get<std::string>().substr(0, 2), "13");
  command("dv_sim_scn", {{"v", 1},
                         {"id", "cm_s1"},
                         {"type", "scan_result"},
                         {"scan_result",
                          {{"scan_id", scans[0]["scan_id"]},
                           {"outcome", "success"},
                           {"display", "支付成功"},
                           {"voice", "支付成功"}}}});
  EXPECT_EQ(recorder_->wait_for("devices/dv_sim_scn/results", 1).at(0),
            json({{"v", 1}, {"id", "cm_s1"}, {"result", "shown"}}));

  fleet.stop();
  EXPECT_TRUE(eventually([&] { return recorder_->disconnects().size() == 3; }));
  for (const auto& d : recorder_->disconnects())
    EXPECT_NE(d.find(":client_disconnect"), std::string::npos) << d;
  for (const auto& topic : recorder_->topics()) {
    EXPECT_TRUE(topic.ends_with("/acks") || topic.ends_with("/results") ||
                topic.ends_with("/events"))
        << topic;
  }
  std::filesystem::remove_all(receipts);
}

TEST_P(FleetGatewayTest, ReconnectsWithAFreshCredentialAndRunsCommandsSentMeanwhile) {
  const std::vector<SimDevice> devices = {device("dv_sim_spk2", DeviceKind::kSpeaker)};
  start_gateway(devices);
  Fleet fleet(fleet_options(), devices);
  fleet.start();
  ASSERT_TRUE(eventually([&] { return fleet.stats().connected == 1; }));
  gateway_->disconnect_client("dv_sim_spk2");
  ASSERT_TRUE(eventually([&] { return !recorder_->disconnects().empty(); }));
  command("dv_sim_spk2", {{"v", 1},
                          {"id", "cm_after"},
                          {"type", "broadcast"},
                          {"expires_at_ms", wall_ms() + 60'000},
                          {"broadcast", {{"text", "收款1.00元"}}}});
  EXPECT_EQ(recorder_->wait_for("devices/dv_sim_spk2/results", 1).at(0),
            json({{"v", 1}, {"id", "cm_after"}, {"result", "played"}}));
  EXPECT_EQ(auth_->accepted("dv_sim_spk2"), 2u) << "one credential per connection";
  EXPECT_EQ(auth_->refused(), 0u);
  EXPECT_EQ(fleet.stats().connect_failures, 0u);
}

TEST_P(FleetGatewayTest, ChurnTakesDevicesOfflineAndBringsThemBack) {
  const std::vector<SimDevice> devices = {device("dv_sim_c1", DeviceKind::kSpeaker),
                                          device("dv_sim_c2", DeviceKind::kPrinter)};
  start_gateway(devices);
  FleetOptions options = fleet_options();
  options.churn_every_s = 0.2;
  options.offline_s = 0.1;
  Fleet fleet(options, devices);
  fleet.start();
  ASSERT_TRUE(
      eventually([&] { return fleet.stats().churned >= 3 && fleet.stats().connects >= 4; }));
  EXPECT_EQ(auth_->refused(), 0u);
  fleet.stop();
  EXPECT_EQ(fleet.stats().connected, 0u);
}

TEST_P(FleetGatewayTest, ADeviceWithAWrongSecretIsRefusedAndKeepsRetrying) {
  const SimDevice registered = device("dv_sim_wrong", DeviceKind::kSpeaker);
  start_gateway({registered});
  SimDevice impostor = registered;
  impostor.secret = platform::random_alnum(32);
  Fleet fleet(fleet_options(), {impostor});
  fleet.start();
  ASSERT_TRUE(eventually([&] { return fleet.stats().connect_failures >= 2; }));
  EXPECT_EQ(fleet.stats().connected, 0u);
  EXPECT_GE(auth_->refused(), 2u);
  fleet.stop();
}

INSTANTIATE_TEST_SUITE_P(MqttVersions, FleetGatewayTest, ::testing::Values(4, 5),
                         [](const auto& info) { return info.param == 5 ? "V5" : "V311"; });

}  // namespace
}  // namespace counterlink::sim
