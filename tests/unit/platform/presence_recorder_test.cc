#include <thread>

#include <gtest/gtest.h>

#include "counterlink/obs/metrics.h"
#include "counterlink/platform/presence.h"

#include "fake_store.h"

namespace counterlink::platform {
namespace {

using namespace std::chrono_literals;
using gateway::ClientInfo;
using gateway::DisconnectReason;

ClientInfo client(const std::string& id, mqtt::Version v = mqtt::Version::kV311) {
  ClientInfo c;
  c.client_id = id;
  c.remote_address = "10.1.2.3:4567";
  c.version = v;
  return c;
}

int64_t presence_metric(const char* result) {
  return obs::metrics().value("counterlink_presence_events_total", {{"result", result}});
}

class PresenceRecorderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* id : {"dv_a", "dv_b", "dv_c", "dv_d"}) {
      store::Device d;
      d.id = id;
      store_->put_device(d);
    }
  }
  std::unique_ptr<PresenceRecorder> make(size_t queue_limit = 100) {
    PresenceConfig cfg;
    cfg.node = "node-1";
    cfg.queue_limit = queue_limit;
    cfg.retry_ms = 10;
    return std::make_unique<PresenceRecorder>(store_, cfg, [] { return int64_t{42}; });
  }
  std::shared_ptr<testing::FakeStore> store_ = std::make_shared<testing::FakeStore>();
};

TEST_F(PresenceRecorderTest, ResetsThisNodeThenWritesConnectAndDisconnectInOrder) {
  auto rec = make();
  rec->start();
  rec->on_connected(client("dv_a", mqtt::Version::kV5), false);
  rec->on_connected(client("ops-tool"), false);  // not a device: ignored
  rec->on_disconnected(client("dv_a", mqtt::Version::kV5), DisconnectReason::kKeepAliveTimeout);
  ASSERT_TRUE(rec->flush(5s));
  EXPECT_EQ(store_->resets(), std::vector<std::string>{"node-1"});
  auto events = store_->presence();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_TRUE(events[0].online);
  EXPECT_EQ(events[0].device_id, "dv_a");
  EXPECT_EQ(events[0].protocol_version, "5.0");
  EXPECT_EQ(events[0].remote_address, "10.1.2.3:4567");
  EXPECT_EQ(events[0].gateway_node, "node-1");
  EXPECT_EQ(events[0].at_ms, 42);
  EXPECT_FALSE(events[1].online);
  EXPECT_EQ(events[1].reason, "keepalive_timeout");
}

TEST_F(PresenceRecorderTest, StopWritesWhatIsQueued) {
  auto rec = make();
  rec->start();
  for (int i = 0; i < 50; ++i) {
    rec->on_connected(client("dv_b"), false);
    rec->on_disconnected(client("dv_b"), DisconnectReason::kConnectionLost);
  }
  rec->stop();
  auto events = store_->presence();
  ASSERT_EQ(events.size(), 100u);
  EXPECT_FALSE(events.back().online);
}

TEST_F(PresenceRecorderTest, RetriesWhileTheStoreIsUnavailable) {
  store_->unavailable = true;
  auto rec = make();
  rec->start();
  rec->on_connected(client("dv_a"), false);
  std::this_thread::sleep_for(50ms);
  EXPECT_TRUE(store_->presence().empty());
  store_->unavailable = false;
  ASSERT_TRUE(rec->flush(5s));
  EXPECT_EQ(store_->presence().size(), 1u);
  EXPECT_EQ(store_->resets().size(), 1u);
}

TEST_F(PresenceRecorderTest, WhenFullDropsSupersededEventsBeforeLastStates) {
  int64_t superseded = presence_metric("dropped_superseded");
  int64_t last = presence_metric("dropped_last_state");
  store_->hold_presence();
  auto rec = make(3);
  rec->start();
  rec->on_connected(client("dv_a"), false);  // taken by the writer, which stalls
  for (int i = 0; i < 500 && store_->presence_calls == 0; ++i)
    std::this_thread::sleep_for(10ms);
  ASSERT_EQ(store_->presence_calls, 1);
  rec->on_disconnected(client("dv_a"), DisconnectReason::kConnectionLost);
  rec->on_connected(client("dv_b"), false);
  rec->on_connected(client("dv_a"), false);
  rec->on_connected(client("dv_c"), false);  // drops dv_a's disconnect (superseded)
  rec->on_connected(client("dv_d"), false);  // only last states queued: drops dv_b's
  store_->release_presence();
  ASSERT_TRUE(rec->flush(5s));
  std::vector<std::string> written;
  for (const auto& e : store_->presence()) {
    written.push_back(e.device_id + (e.online ? ":on" : ":off"));
  }
  EXPECT_EQ(written, (std::vector<std::string>{"dv_a:on", "dv_a:on", "dv_c:on", "dv_d:on"}));
  EXPECT_EQ(presence_metric("dropped_superseded"), superseded + 1);
  EXPECT_EQ(presence_metric("dropped_last_state"), last + 1);
}

TEST_F(PresenceRecorderTest, StopGivesUpAfterTheFlushTimeoutWhileTheStoreIsDown) {
  store_->unavailable = true;
  PresenceConfig cfg;
  cfg.node = "node-1";
  cfg.retry_ms = 10;
  cfg.flush_timeout_ms = 100;
  // A frozen clock: the flush deadline must not depend on it.
  PresenceRecorder rec(store_, cfg, [] { return int64_t{42}; });
  rec.start();
  rec.on_connected(client("dv_a"), false);
  auto begin = std::chrono::steady_clock::now();
  rec.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - begin, 3s);
  EXPECT_TRUE(store_->presence().empty());
}

TEST_F(PresenceRecorderTest, RequiresANodeName) {
  EXPECT_THROW(PresenceRecorder(store_, PresenceConfig{}), std::invalid_argument);
}

}  // namespace
}  // namespace counterlink::platform
