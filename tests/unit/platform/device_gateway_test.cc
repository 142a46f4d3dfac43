// Device access end to end: a real gateway on port 0 with the platform's
// hooks, and real MQTT clients (Eclipse Paho C, 3.1.1 and 5.0).
#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>

#include <MQTTClient.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include "counterlink/gateway/gateway.h"
#include "counterlink/platform/crypto.h"
#include "counterlink/platform/device_access.h"
#include "counterlink/platform/device_credential.h"
#include "counterlink/platform/presence.h"
#include "counterlink/platform/session_control.h"

#include "fake_store.h"

namespace counterlink::platform {
namespace {

using namespace std::chrono_literals;

constexpr const char* kSpeaker = "dv_speaker1";
constexpr const char* kPrinter = "dv_printer1";
constexpr const char* kSpeakerSecret = "SpeakerSecretSpeakerSecret012345";
constexpr const char* kPrinterSecret = "PrinterSecretPrinterSecret012345";

// What one client saw; written by Paho's threads.
struct Peer {
  std::atomic<bool> lost{false};
  std::mutex mutex;
  std::vector<std::string> topics;
  size_t received() {
    std::lock_guard lock(mutex);
    return topics.size();
  }
};

void on_lost(void* ctx, char*) {
  static_cast<Peer*>(ctx)->lost = true;
}
int on_message(void* ctx, char* topic, int topic_len, MQTTClient_message* m) {
  auto* peer = static_cast<Peer*>(ctx);
  {
    std::lock_guard lock(peer->mutex);
    peer->topics.emplace_back(topic_len ? std::string(topic, topic_len) : std::string(topic));
  }
  MQTTClient_freeMessage(&m);
  MQTTClient_free(topic);
  return 1;
}

// Runs a shell command; returns its exit status and output.
std::pair<int, std::string> run(const std::string& command) {
  std::string output;
  FILE* pipe = ::popen(("(" + command + ") 2>&1").c_str(), "r");
  if (!pipe) return {-1, "popen failed"};
  char buffer[256];
  while (std::fgets(buffer, sizeof buffer, pipe))
    output += buffer;
  int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

class DeviceGatewayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    keys_ = std::make_shared<KeyRing>(std::map<std::string, std::string>{{"k1", random_bytes(32)}},
                                      "k1");
    add(kSpeaker, kSpeakerSecret, false);
    add(kPrinter, kPrinterSecret, false);
    add("dv_off", "DisabledDisabledDisabledDisable0", true);
  }

  void add(const std::string& id, const std::string& secret, bool disabled) {
    store::Device d;
    d.id = id;
    d.tenant_id = "tn_1";
    d.secret_sealed = keys_->seal(secret, id);
    d.disabled = disabled;
    store_->put_device(d);
  }

  void start(DeviceAuthConfig config = {}, ClockMs clock = system_clock_ms,
             std::optional<gateway::TlsConfig> tls = std::nullopt) {
    gateway::GatewayConfig cfg;
    cfg.workers = 2;
    if (tls) {
      cfg.listeners.push_back(
          gateway::ListenerConfig{"tls", gateway::ListenerKind::kTls, "127.0.0.1", 0, *tls, ""});
    } else {
      cfg.listeners.push_back(
          gateway::ListenerConfig{"tcp", gateway::ListenerKind::kTcp, "127.0.0.1", 0, {}, "/mqtt"});
    }
    PresenceConfig pc;
    pc.node = "test-node";
    presence_ = std::make_shared<PresenceRecorder>(store_, pc);
    presence_->start();
    gateway::Hooks hooks;
    hooks.authenticator =
        std::make_shared<DeviceAuthenticator>(store_, keys_, config, nullptr, std::move(clock));
    hooks.authorizer = std::make_shared<DeviceAuthorizer>();
    hooks.events = presence_;
    gateway_ = std::make_unique<gateway::Gateway>(cfg, hooks);
    gateway_->start();
    uri_ = "tcp://127.0.0.1:" + std::to_string(gateway_->listeners().at(0).port);
  }

  void TearDown() override {
    for (auto c : clients_) {
      if (MQTTClient_isConnected(c)) MQTTClient_disconnect(c, 100);
      MQTTClient_destroy(&c);
    }
    if (gateway_) gateway_->stop();
    if (presence_) presence_->stop();
  }

  // 3.1.1 CONNECT; returns Paho's answer (the CONNACK return code when refused).
  int connect311(const DeviceCredential& cred) {
    MQTTClient c;
    MQTTClient_create(&c, uri_.c_str(), cred.client_id.c_str(), MQTTCLIENT_PERSISTENCE_NONE,
                      nullptr);
    clients_.push_back(c);
    last_peer_ = &peers_.emplace_back();
    MQTTClient_setCallbacks(c, last_peer_, on_lost, on_message, nullptr);
    MQTTClient_connectOptions opts = MQTTClient_connectOptions_initializer;
    opts.keepAliveInterval = 30;
    opts.cleansession = 1;
    opts.MQTTVersion = MQTTVERSION_3_1_1;
    opts.username = cred.username.c_str();
    opts.password = cred.password.c_str();
    last_ = c;
    return MQTTClient_connect(c, &opts);
  }

  // 5.0 CONNECT; returns the CONNACK reason code.
  int connect5(const DeviceCredential& cred) {
    MQTTClient c;
    MQTTClient_createOptions create = MQTTClient_createOptions_initializer;
    create.MQTTVersion = MQTTVERSION_5;
    MQTTClient_createWithOptions(&c, uri_.c_str(), cred.client_id.c_str(),
                                 MQTTCLIENT_PERSISTENCE_NONE, nullptr, &create);
    clients_.push_back(c);
    MQTTClient_connectOptions opts = MQTTClient_connectOptions_initializer5;
    opts.keepAliveInterval = 30;
    opts.cleanstart = 1;
    opts.username = cred.username.c_str();
    opts.password = cred.password.c_str();
    MQTTResponse r = MQTTClient_connect5(c, &opts, nullptr, nullptr);
    int code = r.reasonCode;
    MQTTResponse_free(r);
    return code;
  }

  bool wait_presence(size_t n) {
    for (int i = 0; i < 500; ++i) {
      if (presence_->flush(10ms) && store_->presence().size() >= n) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  std::shared_ptr<testing::FakeStore> store_ = std::make_shared<testing::FakeStore>();
  std::shared_ptr<KeyRing> keys_;
  std::shared_ptr<PresenceRecorder> presence_;
  std::unique_ptr<gateway::Gateway> gateway_;
  std::string uri_;
  std::vector<MQTTClient> clients_;
  MQTTClient last_ = nullptr;
  std::deque<Peer> peers_;  // stable addresses for Paho's callbacks
  Peer* last_peer_ = nullptr;
};

TEST_F(DeviceGatewayTest, SignedCredentialConnectsWrongOneAndReplayAreRefused) {
  start();
  DeviceCredential good = make_device_credential(kSpeaker, kSpeakerSecret, system_clock_ms());
  ASSERT_EQ(connect311(good), MQTTCLIENT_SUCCESS);
  DeviceCredential wrong = make_device_credential(kSpeaker, kPrinterSecret, system_clock_ms());
  EXPECT_EQ(connect311(wrong), 4);  // bad user name or password
  EXPECT_EQ(connect311(good), 4);   // the same credential again: replay
}

TEST_F(DeviceGatewayTest, DeviceSubscribesOnlyInItsOwnNamespace) {
  start();
  ASSERT_EQ(connect311(make_device_credential(kSpeaker, kSpeakerSecret, system_clock_ms())),
            MQTTCLIENT_SUCCESS);
  MQTTClient c = last_;
  EXPECT_EQ(MQTTClient_subscribe(c, "devices/dv_speaker1/cmd/#", 1), MQTTCLIENT_SUCCESS);
  EXPECT_NE(MQTTClient_subscribe(c, "devices/dv_printer1/cmd/#", 1), MQTTCLIENT_SUCCESS);
  EXPECT_NE(MQTTClient_subscribe(c, "devices/+/cmd", 1), MQTTCLIENT_SUCCESS);
  EXPECT_NE(MQTTClient_subscribe(c, "#", 1), MQTTCLIENT_SUCCESS);
}

TEST_F(DeviceGatewayTest, DeviceCannotPublishIntoAnotherDevicesNamespace) {
  start();
  ASSERT_EQ(connect311(make_device_credential(kPrinter, kPrinterSecret, system_clock_ms())),
            MQTTCLIENT_SUCCESS);
  MQTTClient printer = last_;
  Peer* printer_peer = last_peer_;
  ASSERT_EQ(MQTTClient_subscribe(printer, "devices/dv_printer1/#", 1), MQTTCLIENT_SUCCESS);
  ASSERT_EQ(connect311(make_device_credential(kSpeaker, kSpeakerSecret, system_clock_ms())),
            MQTTCLIENT_SUCCESS);
  MQTTClient speaker = last_;
  MQTTClient_deliveryToken token = 0;
  // 3.1.1 acknowledges a refused QoS 1 publish and discards it.
  ASSERT_EQ(MQTTClient_publish(speaker, "devices/dv_printer1/cmd", 3, "bad", 1, 0, &token),
            MQTTCLIENT_SUCCESS);
  ASSERT_EQ(MQTTClient_waitForCompletion(speaker, token, 5000), MQTTCLIENT_SUCCESS);
  // The printer's own message arrives; the speaker's never does.
  ASSERT_EQ(MQTTClient_publish(printer, "devices/dv_printer1/self", 2, "ok", 1, 0, &token),
            MQTTCLIENT_SUCCESS);
  ASSERT_EQ(MQTTClient_waitForCompletion(printer, token, 5000), MQTTCLIENT_SUCCESS);
  for (int i = 0; i < 500 && printer_peer->received() == 0; ++i)
    std::this_thread::sleep_for(10ms);
  std::this_thread::sleep_for(100ms);
  std::lock_guard lock(printer_peer->mutex);
  EXPECT_EQ(printer_peer->topics, std::vector<std::string>{"devices/dv_printer1/self"});
}

TEST_F(DeviceGatewayTest, Mqtt5ClientsGetSpecificReasonCodes) {
  DeviceAuthConfig config;
  config.per_address = {3, 60000};
  start(config);
  int64_t now = system_clock_ms();
  EXPECT_EQ(connect5(make_device_credential("dv_off", "DisabledDisabledDisabledDisable0", now)),
            0x87);
  EXPECT_EQ(connect5(make_device_credential(kSpeaker, "wrong", now)), 0x86);
  EXPECT_EQ(connect5(make_device_credential(kSpeaker, "wrong", now + 1)), 0x86);
  // Three failures from 127.0.0.1: the next attempt is refused up front.
  EXPECT_EQ(connect5(make_device_credential(kSpeaker, kSpeakerSecret, now + 2)), 0x9F);
}

TEST_F(DeviceGatewayTest, PresenceFollowsConnectAndDisconnect) {
  start();
  ASSERT_EQ(connect311(make_device_credential(kSpeaker, kSpeakerSecret, system_clock_ms())),
            MQTTCLIENT_SUCCESS);
  ASSERT_TRUE(wait_presence(1));
  MQTTClient_disconnect(last_, 1000);
  ASSERT_TRUE(wait_presence(2));
  auto events = store_->presence();
  EXPECT_EQ(store_->resets(), std::vector<std::string>{"test-node"});
  EXPECT_TRUE(events[0].online);
  EXPECT_EQ(events[0].protocol_version, "3.1.1");
  EXPECT_EQ(events[0].gateway_node, "test-node");
  EXPECT_EQ(events[0].remote_address.rfind("127.0.0.1:", 0), 0u);
  EXPECT_FALSE(events[1].online);
  EXPECT_EQ(events[1].reason, "client_disconnect");
}

TEST_F(DeviceGatewayTest, SessionControlEndsADisabledDevicesSession) {
  start();
  ASSERT_EQ(connect311(make_device_credential(kSpeaker, kSpeakerSecret, system_clock_ms())),
            MQTTCLIENT_SUCCESS);
  Peer* speaker = last_peer_;
  store_->set_disabled(kSpeaker, true);
  GatewaySessionControl control(*gateway_);
  control.disconnect_device(kSpeaker);
  for (int i = 0; i < 500 && !speaker->lost; ++i)
    std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(speaker->lost);
  EXPECT_EQ(connect311(make_device_credential(kSpeaker, kSpeakerSecret, system_clock_ms() + 1)), 5);
}

// docs/device-protocol.md, "Worked example": the mosquitto_pub command line
// of the document, run against the gateway with the server clock set just
// after the example's timestamp. It connects once; the same command again is
// a replay and is refused.
TEST_F(DeviceGatewayTest, DocumentedMosquittoPubCommandConnectsOnce) {
  if (run("command -v mosquitto_pub").first != 0)
    FAIL() << "mosquitto_pub not installed: run scripts/bootstrap";
  add("dv_01HV8Z3K7QW2XJ5N6M4R9T0ABC", "Xq7rT2mPz9LkW4vB8nC3sD6fG1hJ5yKa", false);
  start({}, [] { return int64_t{1718000000000 + 42000}; });
  const std::string command =
      "mosquitto_pub -h 127.0.0.1 -p " + std::to_string(gateway_->listeners().at(0).port) +
      " -V mqttv311"
      " -i 'dv_01HV8Z3K7QW2XJ5N6M4R9T0ABC'"
      " -u 'dv_01HV8Z3K7QW2XJ5N6M4R9T0ABC;1718000000000;hmacsha256;v1'"
      " -P 'b2ed92fac716e645d350a02b2342c85498dc3639efe1e7deb5ca2ac04833ff0e'"
      " -t 'devices/dv_01HV8Z3K7QW2XJ5N6M4R9T0ABC/events' -q 1 -m '{\"hello\":\"world\"}'";
  auto first = run(command);
  EXPECT_EQ(first.first, 0) << first.second;
  auto second = run(command);
  EXPECT_NE(second.first, 0) << second.second;
  EXPECT_NE(second.second.find("bad user name or password"), std::string::npos) << second.second;
}

// docs/device-protocol.md, "X.509 client certificates": the openssl
// commands of the document mint a device certificate (CN = device id) that
// connects without a password; a certificate of another device does not.
TEST_F(DeviceGatewayTest, DocumentedDeviceCertificateConnectsWithoutPassword) {
  if (run("command -v mosquitto_pub && command -v openssl").first != 0) {
    FAIL() << "mosquitto_pub or openssl not installed: run scripts/bootstrap";
  }
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() /
      ("cl-x509-" + std::to_string(::getpid()) + "-" + hex(random_bytes(4)));
  std::filesystem::create_directories(dir);
  const std::string d = dir.string();
  auto mint = [&](const std::string& id) {
    return run("cd " + d +
               " && openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
               " -keyout " +
               id + ".key -out " + id + ".csr -subj /CN=" + id + " && openssl x509 -req -in " + id +
               ".csr -CA device-ca.pem -CAkey device-ca.key"
               " -CAcreateserial -days 825 -sha256 -out " +
               id + ".pem");
  };
  auto ca = run("cd " + d +
                " && openssl req -x509 -newkey rsa:2048 -nodes -keyout device-ca.key"
                " -out device-ca.pem -days 3650 -subj '/O=Counterlink/CN=Counterlink Device CA'"
                " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
                " -keyout server.key -out server.pem -days 30 -subj /CN=localhost"
                " -addext subjectAltName=IP:127.0.0.1");
  ASSERT_EQ(ca.first, 0) << ca.second;
  ASSERT_EQ(mint(kSpeaker).first, 0);
  ASSERT_EQ(mint(kPrinter).first, 0);

  gateway::TlsConfig tls;
  tls.cert_file = d + "/server.pem";
  tls.key_file = d + "/server.key";
  tls.ca_file = d + "/device-ca.pem";
  tls.verify_client = true;
  start({}, system_clock_ms, tls);
  auto pub = [&](const std::string& client_id, const std::string& cert) {
    return run("mosquitto_pub -h 127.0.0.1 -p " + std::to_string(gateway_->listeners().at(0).port) +
               " --cafile " + d + "/server.pem --cert " + d + "/" + cert + ".pem --key " + d + "/" +
               cert + ".key -i " + client_id + " -t devices/" + client_id + "/events -q 1 -m hi");
  };
  auto own = pub(kSpeaker, kSpeaker);
  EXPECT_EQ(own.first, 0) << own.second;
  auto borrowed = pub(kSpeaker, kPrinter);
  EXPECT_NE(borrowed.first, 0) << borrowed.second;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace counterlink::platform
