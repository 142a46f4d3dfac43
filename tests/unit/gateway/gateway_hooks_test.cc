// The platform's seams, exercised through the public Gateway API with a real
// MQTT client (Eclipse Paho C) in the same process.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include <MQTTClient.h>
#include <gtest/gtest.h>

#include "counterlink/gateway/gateway.h"

namespace counterlink::gateway {
namespace {

using namespace std::chrono_literals;

// Records events; every wait is bounded.
class Recorder : public GatewayEvents {
 public:
  void on_connected(const ClientInfo& c, bool) override { add("connected:" + c.client_id); }
  void on_disconnected(const ClientInfo& c, DisconnectReason r) override {
    add("disconnected:" + c.client_id + ":" + to_string(r));
  }
  void on_delivered(std::string_view id, uint64_t tag) override {
    add("delivered:" + std::string(id) + ":" + std::to_string(tag));
  }
  void on_dropped(std::string_view id, uint64_t tag) override {
    add("dropped:" + std::string(id) + ":" + std::to_string(tag));
  }
  bool wait_for(const std::string& event, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] {
      return std::find(events_.begin(), events_.end(), event) != events_.end();
    });
  }

 private:
  void add(std::string e) {
    std::lock_guard lock(mutex_);
    events_.push_back(std::move(e));
    cv_.notify_all();
  }
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::string> events_;
};

// Accepts only the password "good", answering from another thread after a
// delay, as a platform that looks devices up in its store would.
class SlowAuthenticator : public Authenticator {
 public:
  ~SlowAuthenticator() override {
    for (auto& t : threads_)
      t.join();
  }
  void authenticate(const AuthRequest& request, std::function<void(AuthResult)> done) override {
    bool ok = request.password && *request.password == "good";
    std::lock_guard lock(mutex_);
    threads_.emplace_back([ok, done = std::move(done)] {
      std::this_thread::sleep_for(50ms);
      done(ok ? AuthResult{} : AuthResult{mqtt::ReasonCode::kNotAuthorized, "unknown device"});
    });
  }

 private:
  std::mutex mutex_;
  std::vector<std::thread> threads_;
};

// Devices may subscribe only under devices/<client id>/.
class NamespaceAuthorizer : public Authorizer {
 public:
  bool authorize(const ClientInfo& c, Action, std::string_view topic) override {
    std::string prefix = "devices/" + c.client_id + "/";
    return topic.substr(0, prefix.size()) == prefix;
  }
};

struct Inbox {
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<std::pair<std::string, std::string>> messages;
  std::atomic<bool> lost{false};
  bool wait_count(size_t n, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(mutex);
    return cv.wait_for(lock, timeout, [&] { return messages.size() >= n; });
  }
};

int on_message(void* ctx, char* topic, int topic_len, MQTTClient_message* m) {
  auto* inbox = static_cast<Inbox*>(ctx);
  std::string t = topic_len ? std::string(topic, topic_len) : std::string(topic);
  {
    std::lock_guard lock(inbox->mutex);
    inbox->messages.emplace_back(t, std::string(static_cast<char*>(m->payload), m->payloadlen));
  }
  inbox->cv.notify_all();
  MQTTClient_freeMessage(&m);
  MQTTClient_free(topic);
  return 1;
}

void on_lost(void* ctx, char*) {
  static_cast<Inbox*>(ctx)->lost = true;
}

class GatewayHooksTest : public ::testing::Test {
 protected:
  void start(Hooks hooks) {
    GatewayConfig cfg;
    cfg.workers = 2;
    cfg.allow_anonymous = true;
    cfg.listeners.push_back(ListenerConfig{"tcp", ListenerKind::kTcp, "127.0.0.1", 0, {}, "/mqtt"});
    gateway_ = std::make_unique<Gateway>(cfg, std::move(hooks));
    gateway_->start();
    uri_ = "tcp://127.0.0.1:" + std::to_string(gateway_->listeners().at(0).port);
  }

  // Connects a 3.1.1 client; returns the MQTTClient return code.
  int connect(MQTTClient& client, Inbox& inbox, const std::string& id, bool clean = true,
              const char* password = nullptr) {
    MQTTClient_create(&client, uri_.c_str(), id.c_str(), MQTTCLIENT_PERSISTENCE_NONE, nullptr);
    MQTTClient_setCallbacks(client, &inbox, on_lost, on_message, nullptr);
    MQTTClient_connectOptions opts = MQTTClient_connectOptions_initializer;
    opts.keepAliveInterval = 30;
    opts.cleansession = clean;
    opts.MQTTVersion = MQTTVERSION_3_1_1;
    if (password) {
      opts.username = "dev";
      opts.password = password;
    }
    return MQTTClient_connect(client, &opts);
  }

  static MessagePtr command(std::string topic, std::string payload, uint64_t tag) {
    auto m = std::make_shared<Message>();
    m->topic = std::move(topic);
    m->payload = std::move(payload);
    m->qos = 1;
    m->tag = tag;
    return m;
  }

  DeliverStatus deliver_and_wait(const std::string& id, MessagePtr m) {
    std::promise<DeliverStatus> p;
    auto f = p.get_future();
    gateway_->deliver(id, std::move(m), [&p](DeliverStatus s) { p.set_value(s); });
    EXPECT_EQ(f.wait_for(5s), std::future_status::ready);
    return f.get();
  }

  void TearDown() override {
    for (auto c : clients_) {
      MQTTClient_disconnect(c, 100);
      MQTTClient_destroy(&c);
    }
    if (gateway_) gateway_->stop();
  }

  MQTTClient track(MQTTClient c) {
    clients_.push_back(c);
    return c;
  }

  std::unique_ptr<Gateway> gateway_;
  std::string uri_;
  std::vector<MQTTClient> clients_;
};

TEST_F(GatewayHooksTest, DeliverReachesOneClientWithoutAnySubscription) {
  auto events = std::make_shared<Recorder>();
  start(Hooks{nullptr, nullptr, events});
  MQTTClient c;
  Inbox inbox;
  ASSERT_EQ(connect(c, inbox, "speaker-1"), MQTTCLIENT_SUCCESS);
  track(c);
  ASSERT_TRUE(events->wait_for("connected:speaker-1"));

  EXPECT_EQ(deliver_and_wait("speaker-1", command("devices/speaker-1/cmd", "play 12.50", 42)),
            DeliverStatus::kSent);
  ASSERT_TRUE(inbox.wait_count(1));
  EXPECT_EQ(inbox.messages[0].first, "devices/speaker-1/cmd");
  EXPECT_EQ(inbox.messages[0].second, "play 12.50");
  // The tag comes back once the device acknowledged (PUBACK).
  EXPECT_TRUE(events->wait_for("delivered:speaker-1:42"));

  EXPECT_EQ(deliver_and_wait("nobody", command("devices/nobody/cmd", "x", 1)),
            DeliverStatus::kNoSession);
}

TEST_F(GatewayHooksTest, DeliverQueuesForAnOfflinePersistentSessionInOrder) {
  auto events = std::make_shared<Recorder>();
  start(Hooks{nullptr, nullptr, events});
  {
    MQTTClient c;
    Inbox inbox;
    ASSERT_EQ(connect(c, inbox, "printer-9", /*clean=*/false), MQTTCLIENT_SUCCESS);
    MQTTClient_disconnect(c, 1000);
    MQTTClient_destroy(&c);
  }
  ASSERT_TRUE(events->wait_for("disconnected:printer-9:client_disconnect"));
  EXPECT_EQ(deliver_and_wait("printer-9", command("devices/printer-9/cmd", "job-1", 7)),
            DeliverStatus::kQueued);
  EXPECT_EQ(deliver_and_wait("printer-9", command("devices/printer-9/cmd", "job-2", 8)),
            DeliverStatus::kQueued);
  MQTTClient c;
  Inbox inbox;
  ASSERT_EQ(connect(c, inbox, "printer-9", /*clean=*/false), MQTTCLIENT_SUCCESS);
  track(c);
  ASSERT_TRUE(inbox.wait_count(2));
  EXPECT_EQ(inbox.messages[0].second, "job-1");
  EXPECT_EQ(inbox.messages[1].second, "job-2");
  EXPECT_TRUE(events->wait_for("delivered:printer-9:8"));
}

TEST_F(GatewayHooksTest, AsynchronousAuthenticatorDecidesFromAnotherThread) {
  auto events = std::make_shared<Recorder>();
  start(Hooks{std::make_shared<SlowAuthenticator>(), nullptr, events});
  MQTTClient bad;
  Inbox bad_inbox;
  EXPECT_EQ(connect(bad, bad_inbox, "box-1", true, "bad"), 5)
      << "3.1.1 return code: not authorized";
  MQTTClient_destroy(&bad);
  MQTTClient good;
  Inbox good_inbox;
  EXPECT_EQ(connect(good, good_inbox, "box-1", true, "good"), MQTTCLIENT_SUCCESS);
  track(good);
  EXPECT_TRUE(events->wait_for("connected:box-1"));
}

TEST_F(GatewayHooksTest, AuthorizerConfinesSubscriptionsToTheDeviceNamespace) {
  start(Hooks{nullptr, std::make_shared<NamespaceAuthorizer>(), nullptr});
  MQTTClient c;
  Inbox inbox;
  ASSERT_EQ(connect(c, inbox, "scan-3"), MQTTCLIENT_SUCCESS);
  track(c);
  EXPECT_EQ(MQTTClient_subscribe(c, "devices/scan-3/cmd", 1), MQTTCLIENT_SUCCESS);
  // Refused: SUBACK 0x80, which Paho reports as a failure code.
  int rc = MQTTClient_subscribe(c, "devices/scan-4/cmd", 1);
  EXPECT_NE(rc, MQTTCLIENT_SUCCESS);
}

TEST_F(GatewayHooksTest, DisconnectClientClosesTheConnectionAndReportsWhy) {
  auto events = std::make_shared<Recorder>();
  start(Hooks{nullptr, nullptr, events});
  MQTTClient c;
  Inbox inbox;
  ASSERT_EQ(connect(c, inbox, "speaker-2"), MQTTCLIENT_SUCCESS);
  track(c);
  ASSERT_TRUE(events->wait_for("connected:speaker-2"));
  gateway_->disconnect_client("speaker-2");
  EXPECT_TRUE(events->wait_for("disconnected:speaker-2:administrative"));
  for (int i = 0; i < 100 && !inbox.lost; ++i)
    std::this_thread::sleep_for(20ms);
  EXPECT_TRUE(inbox.lost) << "the client saw its connection end";
}

TEST_F(GatewayHooksTest, PublishFromThePlatformReachesSubscribers) {
  start(Hooks{});
  MQTTClient c;
  Inbox inbox;
  ASSERT_EQ(connect(c, inbox, "console"), MQTTCLIENT_SUCCESS);
  track(c);
  ASSERT_EQ(MQTTClient_subscribe(c, "fleet/+/status", 1), MQTTCLIENT_SUCCESS);
  gateway_->publish(command("fleet/7/status", "online", 0));
  ASSERT_TRUE(inbox.wait_count(1));
  EXPECT_EQ(inbox.messages[0].first, "fleet/7/status");
}

}  // namespace
}  // namespace counterlink::gateway
