#include <atomic>
#include <chrono>
#include <future>

#include <gtest/gtest.h>

#include "counterlink/obs/metrics.h"
#include "counterlink/platform/crypto.h"
#include "counterlink/platform/device_access.h"
#include "counterlink/platform/device_credential.h"

#include "fake_store.h"

namespace counterlink::platform {
namespace {

using namespace std::chrono_literals;
using gateway::AuthResult;
using gateway::ClientInfo;
using mqtt::ReasonCode;

constexpr int64_t kNow = 1718000000000;
const char* kDevice = "dv_01HV8Z3K7QW2XJ5N6M4R9T0ABC";
const char* kSecret = "Xq7rT2mPz9LkW4vB8nC3sD6fG1hJ5yKa";

int64_t failures(const char* reason) {
  return obs::metrics().value("counterlink_device_auth_failures_total", {{"reason", reason}});
}

// Accepts username "ops" with password "ops-pass"; counts calls.
class OpsAuthenticator : public gateway::Authenticator {
 public:
  void authenticate(const gateway::AuthRequest& r, std::function<void(AuthResult)> done) override {
    ++calls;
    bool ok = r.client.username == "ops" && r.password && *r.password == "ops-pass";
    done(ok ? AuthResult{} : AuthResult{ReasonCode::kBadUserNameOrPassword, "no"});
  }
  std::atomic<int> calls{0};
};

class DeviceAuthenticatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    keys_ = std::make_shared<KeyRing>(std::map<std::string, std::string>{{"k1", random_bytes(32)}},
                                      "k1");
    add_device(kDevice, kSecret);
  }

  void add_device(const std::string& id, const std::string& secret, bool disabled = false) {
    store::Device d;
    d.id = id;
    d.tenant_id = "tn_1";
    d.secret_sealed = secret.empty() ? std::string() : keys_->seal(secret, id);
    d.disabled = disabled;
    store_->put_device(d);
  }

  DeviceAuthenticator& auth() {
    if (!auth_) {
      auth_ = std::make_unique<DeviceAuthenticator>(store_, keys_, config_, fallback_,
                                                    [this] { return now_.load(); });
    }
    return *auth_;
  }

  AuthResult connect(const ClientInfo& client, std::optional<std::string> password) {
    std::promise<AuthResult> p;
    auto f = p.get_future();
    auth().authenticate(gateway::AuthRequest{client, password},
                        [&p](AuthResult r) { p.set_value(std::move(r)); });
    EXPECT_EQ(f.wait_for(5s), std::future_status::ready);
    return f.get();
  }

  static ClientInfo client(const DeviceCredential& c, const std::string& remote = "10.0.0.1:5000") {
    ClientInfo info;
    info.client_id = c.client_id;
    info.username = c.username;
    info.has_username = true;
    info.remote_address = remote;
    return info;
  }

  AuthResult connect_signed(const std::string& id, const std::string& secret, int64_t ts,
                            const std::string& remote = "10.0.0.1:5000") {
    DeviceCredential c = make_device_credential(id, secret, ts);
    return connect(client(c, remote), c.password);
  }

  std::shared_ptr<testing::FakeStore> store_ = std::make_shared<testing::FakeStore>();
  std::shared_ptr<KeyRing> keys_;
  DeviceAuthConfig config_;
  std::shared_ptr<gateway::Authenticator> fallback_;
  std::atomic<int64_t> now_{kNow};
  std::unique_ptr<DeviceAuthenticator> auth_;
};

TEST_F(DeviceAuthenticatorTest, AcceptsACorrectlySignedCredential) {
  EXPECT_EQ(connect_signed(kDevice, kSecret, kNow).reason, ReasonCode::kSuccess);
}

TEST_F(DeviceAuthenticatorTest, AcceptsTheDocumentedExampleAndUppercaseHex) {
  DeviceCredential c = make_device_credential(kDevice, kSecret, kNow);
  std::string upper = c.password;
  for (char& ch : upper)
    ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  EXPECT_EQ(connect(client(c), upper).reason, ReasonCode::kSuccess);
}

TEST_F(DeviceAuthenticatorTest, RefusesAWrongSecretAsBadUserNameOrPassword) {
  int64_t before = failures("bad_signature");
  AuthResult r = connect_signed(kDevice, "WrongSecretWrongSecretWrongSecre", kNow);
  EXPECT_EQ(r.reason, ReasonCode::kBadUserNameOrPassword);
  EXPECT_EQ(r.reason_string, "bad user name or password");
  EXPECT_EQ(failures("bad_signature"), before + 1);
}

TEST_F(DeviceAuthenticatorTest, RefusesAnUnknownDeviceWithTheSameAnswerAsABadSignature) {
  AuthResult unknown = connect_signed("dv_nobody", kSecret, kNow);
  AuthResult bad = connect_signed(kDevice, "nope", kNow);
  EXPECT_EQ(unknown.reason, ReasonCode::kBadUserNameOrPassword);
  EXPECT_EQ(unknown.reason, bad.reason);
  EXPECT_EQ(unknown.reason_string, bad.reason_string);
}

TEST_F(DeviceAuthenticatorTest, RefusesTimestampsOutsideTheWindowBothWays) {
  config_.timestamp_window_ms = 300000;
  EXPECT_EQ(connect_signed(kDevice, kSecret, kNow - 300001).reason,
            ReasonCode::kBadUserNameOrPassword);
  EXPECT_EQ(connect_signed(kDevice, kSecret, kNow + 300001).reason,
            ReasonCode::kBadUserNameOrPassword);
  EXPECT_EQ(connect_signed(kDevice, kSecret, kNow - 300000).reason, ReasonCode::kSuccess);
  EXPECT_EQ(connect_signed(kDevice, kSecret, kNow + 300000).reason, ReasonCode::kSuccess);
  EXPECT_EQ(store_->device_lookups, 2);  // out-of-window never reaches the store
}

TEST_F(DeviceAuthenticatorTest, RefusesTheSameCredentialTwice) {
  int64_t before = failures("replayed");
  EXPECT_EQ(connect_signed(kDevice, kSecret, kNow).reason, ReasonCode::kSuccess);
  EXPECT_EQ(connect_signed(kDevice, kSecret, kNow).reason, ReasonCode::kBadUserNameOrPassword);
  EXPECT_EQ(failures("replayed"), before + 1);
  EXPECT_EQ(connect_signed(kDevice, kSecret, kNow + 1).reason, ReasonCode::kSuccess);
}

TEST_F(DeviceAuthenticatorTest, ACredentialRefusedForAnotherReasonIsNotBurnt) {
  store_->unavailable = true;
  EXPECT_EQ(connect_signed(kDevice, kSecret, kNow).reason, ReasonCode::kServerUnavailable);
  store_->unavailable = false;
  EXPECT_EQ(connect_signed(kDevice, kSecret, kNow).reason, ReasonCode::kSuccess);
}

TEST_F(DeviceAuthenticatorTest, RefusesAClientIdThatIsNotTheDeviceId) {
  DeviceCredential c = make_device_credential(kDevice, kSecret, kNow);
  ClientInfo info = client(c);
  info.client_id = "dv_other";
  EXPECT_EQ(connect(info, c.password).reason, ReasonCode::kBadUserNameOrPassword);
  EXPECT_EQ(store_->device_lookups, 0);
}

TEST_F(DeviceAuthenticatorTest, RefusesMalformedUsernamesAndMissingPasswords) {
  DeviceCredential c = make_device_credential(kDevice, kSecret, kNow);
  ClientInfo info = client(c);
  info.username = std::string(kDevice) + ";" + std::to_string(kNow) + ";hmacsha1;v1";
  EXPECT_EQ(connect(info, c.password).reason, ReasonCode::kBadUserNameOrPassword);
  EXPECT_EQ(connect(client(c), std::nullopt).reason, ReasonCode::kBadUserNameOrPassword);
  EXPECT_EQ(connect(client(c), std::string("short")).reason, ReasonCode::kBadUserNameOrPassword);
  ClientInfo anonymous;
  anonymous.client_id = kDevice;
  anonymous.remote_address = "10.0.0.1:1";
  EXPECT_EQ(connect(anonymous, std::nullopt).reason, ReasonCode::kBadUserNameOrPassword);
  EXPECT_EQ(store_->device_lookups, 0);
}

TEST_F(DeviceAuthenticatorTest, RefusesADisabledDeviceAsNotAuthorized) {
  add_device("dv_off", "SecretOfTheDisabledDevice0000000", true);
  AuthResult r = connect_signed("dv_off", "SecretOfTheDisabledDevice0000000", kNow);
  EXPECT_EQ(r.reason, ReasonCode::kNotAuthorized);
  // Without the secret a disabled device looks like any bad credential.
  EXPECT_EQ(connect_signed("dv_off", "guess", kNow + 1).reason, ReasonCode::kBadUserNameOrPassword);
}

TEST_F(DeviceAuthenticatorTest, AnswersServerUnavailableWhenTheStoreIsDown) {
  store_->unavailable = true;
  EXPECT_EQ(connect_signed(kDevice, kSecret, kNow).reason, ReasonCode::kServerUnavailable);
}

TEST_F(DeviceAuthenticatorTest, AnswersServerUnavailableWhenTheSecretCannotBeOpened) {
  // Sealed under a key this ring does not have (removed too early).
  KeyRing other({{"gone", std::string(32, 'z')}}, "gone");
  store::Device d;
  d.id = "dv_lost";
  d.secret_sealed = other.seal("whatever", "dv_lost");
  store_->put_device(d);
  int64_t before = failures("secret_unreadable");
  EXPECT_EQ(connect_signed("dv_lost", "whatever", kNow).reason, ReasonCode::kServerUnavailable);
  EXPECT_EQ(failures("secret_unreadable"), before + 1);
}

TEST_F(DeviceAuthenticatorTest, ASecretSealedForAnotherDeviceDoesNotVerify) {
  store::Device d;
  d.id = "dv_swapped";
  d.secret_sealed = keys_->seal(kSecret, kDevice);  // copied from another row
  store_->put_device(d);
  EXPECT_NE(connect_signed("dv_swapped", kSecret, kNow).reason, ReasonCode::kSuccess);
}

TEST_F(DeviceAuthenticatorTest, AcceptsAVerifiedCertificateWhoseCnIsTheDeviceId) {
  ClientInfo info;
  info.client_id = kDevice;
  info.certificate_cn = kDevice;
  info.remote_address = "10.0.0.1:1";
  EXPECT_EQ(connect(info, std::nullopt).reason, ReasonCode::kSuccess);
  info.certificate_cn = "dv_someone_else";
  EXPECT_EQ(connect(info, std::nullopt).reason, ReasonCode::kBadUserNameOrPassword);
  info.certificate_cn = "dv_nobody";
  info.client_id = "dv_nobody";
  EXPECT_EQ(connect(info, std::nullopt).reason, ReasonCode::kBadUserNameOrPassword);
}

TEST_F(DeviceAuthenticatorTest, CertificatesAreIgnoredWhenDisabledInConfig) {
  config_.allow_certificates = false;
  ClientInfo info;
  info.client_id = kDevice;
  info.certificate_cn = kDevice;
  info.remote_address = "10.0.0.1:1";
  EXPECT_EQ(connect(info, std::nullopt).reason, ReasonCode::kBadUserNameOrPassword);
}

TEST_F(DeviceAuthenticatorTest, RefusesNonDeviceClientsWithoutAFallback) {
  ClientInfo info;
  info.client_id = "ops-tool";
  info.username = "ops";
  info.has_username = true;
  info.remote_address = "10.0.0.9:1";
  EXPECT_EQ(connect(info, std::string("ops-pass")).reason, ReasonCode::kBadUserNameOrPassword);
}

TEST_F(DeviceAuthenticatorTest, HandsNonDeviceClientsToTheFallbackButNeverDeviceIds) {
  auto ops = std::make_shared<OpsAuthenticator>();
  fallback_ = ops;
  ClientInfo info;
  info.client_id = "ops-tool";
  info.username = "ops";
  info.has_username = true;
  info.remote_address = "10.0.0.9:1";
  EXPECT_EQ(connect(info, std::string("ops-pass")).reason, ReasonCode::kSuccess);
  EXPECT_EQ(connect(info, std::string("bad")).reason, ReasonCode::kBadUserNameOrPassword);
  EXPECT_EQ(ops->calls, 2);
  // A static user must not take over a device's session with its client id.
  info.client_id = kDevice;
  EXPECT_EQ(connect(info, std::string("ops-pass")).reason, ReasonCode::kBadUserNameOrPassword);
  EXPECT_EQ(ops->calls, 2);
}

TEST_F(DeviceAuthenticatorTest, AddressOverItsFailureBudgetIsRefusedWithoutAStoreLookup) {
  config_.per_address = {3, 60000};
  config_.per_device = {100, 60000};
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(connect_signed(kDevice, "wrong", kNow + i, "10.0.0.7:" + std::to_string(i)).reason,
              ReasonCode::kBadUserNameOrPassword);
  }
  int lookups = store_->device_lookups;
  int64_t before = failures("rate_limited");
  // Even the right secret is refused from this address now, without a lookup.
  EXPECT_EQ(connect_signed(kDevice, kSecret, kNow + 10, "10.0.0.7:9").reason,
            ReasonCode::kConnectionRateExceeded);
  EXPECT_EQ(store_->device_lookups, lookups);
  EXPECT_EQ(failures("rate_limited"), before + 1);
  // Another address is unaffected.
  EXPECT_EQ(connect_signed(kDevice, kSecret, kNow + 11, "10.0.0.8:1").reason, ReasonCode::kSuccess);
  // One token comes back after window / failures = 20 s.
  now_ += 20000;
  EXPECT_EQ(connect_signed(kDevice, kSecret, kNow + 20000, "10.0.0.7:9").reason,
            ReasonCode::kSuccess);
}

TEST_F(DeviceAuthenticatorTest, DeviceOverItsFailureBudgetIsRefusedFromAFailingAddress) {
  config_.per_address = {100, 60000};
  config_.per_device = {2, 60000};
  EXPECT_NE(connect_signed(kDevice, "wrong", kNow).reason, ReasonCode::kSuccess);
  EXPECT_NE(connect_signed(kDevice, "wrong", kNow + 1).reason, ReasonCode::kSuccess);
  int lookups = store_->device_lookups;
  EXPECT_EQ(connect_signed(kDevice, kSecret, kNow + 2).reason, ReasonCode::kConnectionRateExceeded);
  EXPECT_EQ(store_->device_lookups, lookups);
  // From an address without recent failures the real device still gets in.
  EXPECT_EQ(connect_signed(kDevice, kSecret, kNow + 3, "192.0.2.1:1").reason, ReasonCode::kSuccess);
  // And the failing address gets a try once the device bucket refills.
  now_ += 30000;
  EXPECT_EQ(connect_signed(kDevice, kSecret, kNow + 30000).reason, ReasonCode::kSuccess);
}

TEST_F(DeviceAuthenticatorTest, Ipv6ClientsShareTheBudgetOfTheirSlash64) {
  config_.per_address = {1, 60000};
  EXPECT_NE(connect_signed(kDevice, "wrong", kNow, "[2001:db8:1:2::1]:5000").reason,
            ReasonCode::kSuccess);
  EXPECT_EQ(connect_signed(kDevice, kSecret, kNow, "[2001:db8:1:2::ffff]:5001").reason,
            ReasonCode::kConnectionRateExceeded);
  EXPECT_EQ(connect_signed(kDevice, kSecret, kNow, "[2001:db8:1:3::1]:5001").reason,
            ReasonCode::kSuccess);
}

TEST_F(DeviceAuthenticatorTest, CountsSuccessesByMethod) {
  auto successes = [] {
    return obs::metrics().value("counterlink_device_auth_successes_total",
                                {{"method", "signature"}});
  };
  int64_t before = successes();
  EXPECT_EQ(connect_signed(kDevice, kSecret, kNow).reason, ReasonCode::kSuccess);
  EXPECT_EQ(successes(), before + 1);
}

TEST_F(DeviceAuthenticatorTest, AnswersEveryQueuedLookupBeforeDestruction) {
  config_.lookup_threads = 1;
  std::atomic<int> answered{0};
  for (int i = 0; i < 20; ++i) {
    DeviceCredential c = make_device_credential(kDevice, kSecret, kNow + i);
    ClientInfo info = client(c);
    auth().authenticate(gateway::AuthRequest{info, std::optional<std::string>(c.password)},
                        [&answered](AuthResult) { ++answered; });
  }
  auth_.reset();
  EXPECT_EQ(answered, 20);
}

}  // namespace
}  // namespace counterlink::platform
