// The device authenticator and presence recorder against the real SQLite
// adapter in a temp dir: what the store keeps is what the gateway checks.
#include <chrono>
#include <filesystem>
#include <future>

#include <gtest/gtest.h>
#include <unistd.h>

#include "counterlink/platform/crypto.h"
#include "counterlink/platform/device_access.h"
#include "counterlink/platform/device_credential.h"
#include "counterlink/platform/presence.h"
#include "counterlink/store/store.h"

namespace counterlink::platform {
namespace {

using namespace std::chrono_literals;
using mqtt::ReasonCode;

class DeviceStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("cl-platform-" + std::to_string(::getpid()) + "-" + hex(random_bytes(4)));
    std::filesystem::create_directories(dir_);
    store_ = store::open_store({"sqlite://" + (dir_ / "x.db").string()});
    keys_ = std::make_shared<KeyRing>(std::map<std::string, std::string>{{"k1", random_bytes(32)}},
                                      "k1");
    store::Tenant tenant{"tn_1", "Acme Pay", "aggregator"};
    ASSERT_TRUE(store_->create_tenant(tenant).ok());
    store::Product product;
    product.id = "pd_1";
    product.tenant_id = "tn_1";
    product.name = "Speaker S1";
    product.type = "speaker";
    product.capabilities_json = "{}";
    ASSERT_TRUE(store_->create_product(product).ok());
    secret_ = generate_device_secret();
    store::Device device;
    device.id = "dv_store1";
    device.tenant_id = "tn_1";
    device.product_id = "pd_1";
    device.serial = "SN-0001";
    device.secret_sealed = keys_->seal(secret_, device.id);
    store::Status created = store_->create_device(device);
    ASSERT_TRUE(created.ok()) << created.message;
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  gateway::AuthResult connect(DeviceAuthenticator& auth, int64_t ts) {
    DeviceCredential c = make_device_credential("dv_store1", secret_, ts);
    gateway::ClientInfo info;
    info.client_id = c.client_id;
    info.username = c.username;
    info.has_username = true;
    info.remote_address = "10.0.0.1:1";
    std::promise<gateway::AuthResult> p;
    auto f = p.get_future();
    auth.authenticate(gateway::AuthRequest{info, std::optional<std::string>(c.password)},
                      [&p](gateway::AuthResult r) { p.set_value(std::move(r)); });
    EXPECT_EQ(f.wait_for(5s), std::future_status::ready);
    return f.get();
  }

  std::filesystem::path dir_;
  std::shared_ptr<store::Store> store_;
  std::shared_ptr<KeyRing> keys_;
  std::string secret_;
};

TEST_F(DeviceStoreTest, StoredDeviceConnectsUntilDisabled) {
  DeviceAuthenticator auth(store_, keys_);
  const int64_t now = system_clock_ms();
  EXPECT_EQ(connect(auth, now).reason, ReasonCode::kSuccess);
  store::Result<store::Device> device = store_->get_device("tn_1", "dv_store1");
  ASSERT_TRUE(device.ok());
  store::Device changed = device.value();
  changed.disabled = true;
  ASSERT_TRUE(store_->update_device(changed).ok());
  EXPECT_EQ(connect(auth, now + 1).reason, ReasonCode::kNotAuthorized);
}

TEST_F(DeviceStoreTest, RotatedSecretReplacesTheOldOne) {
  DeviceAuthenticator auth(store_, keys_);
  const int64_t now = system_clock_ms();
  std::string old_secret = secret_;
  secret_ = generate_device_secret();
  ASSERT_TRUE(
      store_->set_device_secret("tn_1", "dv_store1", keys_->seal(secret_, "dv_store1"), now).ok());
  EXPECT_EQ(connect(auth, now).reason, ReasonCode::kSuccess);
  secret_ = old_secret;
  EXPECT_EQ(connect(auth, now + 1).reason, ReasonCode::kBadUserNameOrPassword);
}

TEST_F(DeviceStoreTest, PresenceSurvivesARestartOfTheNodeAsOffline) {
  gateway::ClientInfo client;
  client.client_id = "dv_store1";
  client.remote_address = "10.0.0.1:1";
  client.version = mqtt::Version::kV5;
  {
    PresenceRecorder recorder(store_, PresenceConfig{"node-a"});
    recorder.start();
    recorder.on_connected(client, false);
    ASSERT_TRUE(recorder.flush(5s));
    // The process dies here: no disconnect is recorded.
  }
  auto online = store_->get_device("tn_1", "dv_store1");
  ASSERT_TRUE(online.ok());
  EXPECT_TRUE(online.value().presence.online);
  EXPECT_EQ(online.value().presence.protocol_version, "5.0");
  EXPECT_EQ(online.value().presence.gateway_node, "node-a");

  PresenceRecorder restarted(store_, PresenceConfig{"node-a"});
  restarted.start();
  ASSERT_TRUE(restarted.flush(5s));
  for (int i = 0; i < 500; ++i) {
    auto d = store_->get_device("tn_1", "dv_store1");
    if (d.ok() && !d.value().presence.online) break;
    std::this_thread::sleep_for(10ms);
  }
  auto after = store_->get_device("tn_1", "dv_store1");
  ASSERT_TRUE(after.ok());
  EXPECT_FALSE(after.value().presence.online);
}

}  // namespace
}  // namespace counterlink::platform
