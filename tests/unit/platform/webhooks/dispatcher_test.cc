// The webhook dispatcher against a real local HTTP receiver over the real
// SQLite adapter in a temp dir, plus the pure parts (signature, patterns,
// backoff, URL rules) checked against independent computations.
#include <chrono>
#include <filesystem>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <unistd.h>

#include "counterlink/obs/metrics.h"
#include "counterlink/platform/commands.h"
#include "counterlink/platform/crypto.h"
#include "counterlink/platform/webhooks.h"
#include "counterlink/store/store.h"

#include "receiver.h"

namespace counterlink::platform {
namespace {

using namespace std::chrono_literals;
using testing::Receiver;
using testing::ScriptedAnswer;

// HMAC-SHA256 straight from OpenSSL, hex: not through crypto.h.
std::string openssl_hmac_hex(const std::string& key, const std::string& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  static const char* digits = "0123456789abcdef";
  std::string hex_text;
  for (unsigned int i = 0; i < len; ++i) {
    hex_text += digits[out[i] >> 4];
    hex_text += digits[out[i] & 15];
  }
  return hex_text;
}

// Verifies a Counterlink-Signature the way docs/webhooks.md tells receivers.
bool verify(const std::string& header, const std::string& secret, const std::string& body) {
  std::string t;
  std::vector<std::string> v1;
  size_t pos = 0;
  while (pos <= header.size()) {
    size_t end = header.find(',', pos);
    if (end == std::string::npos) end = header.size();
    const std::string item = header.substr(pos, end - pos);
    if (item.rfind("t=", 0) == 0) t = item.substr(2);
    if (item.rfind("v1=", 0) == 0) v1.push_back(item.substr(3));
    pos = end + 1;
  }
  const std::string expected = openssl_hmac_hex(secret, t + "." + body);
  return std::find(v1.begin(), v1.end(), expected) != v1.end();
}

// ---- The pure parts -------------------------------------------------------------

TEST(WebhookSignature, MatchesAnIndependentHmacOverTimestampDotBody) {
  const std::string body = R"({"id":"7","type":"scan.received"})";
  const WebhookSecrets secrets{"whsec_test", "", 0};
  const std::string header = webhook_signature(secrets, 1767225600123, body);
  EXPECT_EQ(header, "t=1767225600,v1=" + openssl_hmac_hex("whsec_test", "1767225600." + body));
}

TEST(WebhookSignature, CarriesTheOldSecretsSignatureOnlyDuringTheGracePeriod) {
  const std::string body = "{}";
  const WebhookSecrets secrets{"whsec_new", "whsec_old", 2'000'000};
  const std::string during = webhook_signature(secrets, 1'999'000, body);
  EXPECT_EQ(during, "t=1999,v1=" + openssl_hmac_hex("whsec_new", "1999.{}") +
                        ",v1=" + openssl_hmac_hex("whsec_old", "1999.{}"));
  const std::string after = webhook_signature(secrets, 2'000'000, body);
  EXPECT_EQ(after, "t=2000,v1=" + openssl_hmac_hex("whsec_new", "2000.{}"));
}

TEST(WebhookSecrets, SealedSecretsOpenOnlyForTheirEndpoint) {
  KeyRing keys({{"k1", random_bytes(32)}}, "k1");
  const std::string secret = generate_webhook_secret();
  EXPECT_EQ(secret.rfind("whsec_", 0), 0u);
  EXPECT_EQ(secret.size(), 6u + 43u);  // 32 bytes, base64url without padding
  EXPECT_NE(generate_webhook_secret(), secret);
  const std::string sealed = seal_webhook_secrets(keys, {secret, "whsec_old", 42}, "wh_1");
  auto opened = open_webhook_secrets(keys, sealed, "wh_1");
  ASSERT_TRUE(opened);
  EXPECT_EQ(opened->current, secret);
  EXPECT_EQ(opened->previous, "whsec_old");
  EXPECT_EQ(opened->previous_until_ms, 42);
  EXPECT_FALSE(open_webhook_secrets(keys, sealed, "wh_2"));
}

TEST(WebhookEventTypes, PatternsMatchExactTypesFamiliesAndEverything) {
  EXPECT_TRUE(webhook_event_matches({}, "device.online"));
  EXPECT_TRUE(webhook_event_matches({"*"}, "device.online"));
  EXPECT_TRUE(webhook_event_matches({"broadcast.*"}, "broadcast.played"));
  EXPECT_FALSE(webhook_event_matches({"broadcast.*"}, "broadcast"));
  EXPECT_FALSE(webhook_event_matches({"broadcast.*"}, "broadcastx.played"));
  EXPECT_FALSE(webhook_event_matches({"broadcast.*"}, "print_job.printed"));
  EXPECT_TRUE(webhook_event_matches({"scan.received"}, "scan.received"));
  EXPECT_FALSE(webhook_event_matches({"scan.received"}, "scan.answered"));
  EXPECT_TRUE(webhook_event_matches({"scan.received", "device.*"}, "device.offline"));
}

TEST(WebhookEventTypes, MalformedPatternsAreRefused) {
  for (const char* ok : {"*", "broadcast.*", "scan.received", "device.printer_status", "a.b.c"}) {
    EXPECT_EQ(check_webhook_event_pattern(ok), "") << ok;
  }
  for (const char* bad : {"", "Broadcast.*", "broadcast.", ".x", "a..b", "*.played", "scan*", "a b",
                          "broadcast.**"}) {
    EXPECT_NE(check_webhook_event_pattern(bad), "") << bad;
  }
  EXPECT_NE(check_webhook_event_pattern(std::string(65, 'a')), "");
}

TEST(WebhookUrls, HttpsRequiredUnlessHttpIsAllowed) {
  EXPECT_EQ(check_webhook_url("https://pay.example.com/hooks?x=1", false), "");
  EXPECT_EQ(check_webhook_url("HTTPS://pay.example.com:8443/", false), "");
  EXPECT_EQ(check_webhook_url("https://[::1]:8443/h", false), "");
  EXPECT_NE(check_webhook_url("http://127.0.0.1:8080/h", false), "");
  EXPECT_EQ(check_webhook_url("http://127.0.0.1:8080/h", true), "");
  for (const char* bad :
       {"", "ftp://x/", "https://", "https:///path", "https://u:p@x/", "https://x/a b",
        "https://x:0/", "https://x:99999/", "https://x:ab/", "https://x/#frag", "example.com"}) {
    EXPECT_NE(check_webhook_url(bad, true), "") << bad;
  }
  EXPECT_NE(check_webhook_url("https://x/" + std::string(2048, 'a'), false), "");
}

TEST(WebhookBackoff, FollowsTheScheduleThenRepeatsItsLastStepUntilTheWindowCloses) {
  WebhookOptions o;  // 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h; 24 h
  const int64_t created = 1'000'000;
  int64_t now = created;
  std::vector<int64_t> delays;
  for (int failed = 1;; ++failed) {
    auto next = webhook_next_attempt_ms(o, created, failed, now);
    if (!next) break;
    delays.push_back(*next - now);
    now = *next;
  }
  const std::vector<int64_t> expected = {5'000,      30'000,     120'000,    600'000,
                                         1'800'000,  3'600'000,  7'200'000,  14'400'000,
                                         14'400'000, 14'400'000, 14'400'000, 14'400'000};
  EXPECT_EQ(delays, expected);  // 13 attempts, the last at ~23 h 53 min
  EXPECT_LE(now - created, o.retry_window_ms);
  EXPECT_GT(now - created + 14'400'000, o.retry_window_ms);
  // A delivery redelivered after its window gets no retry after that attempt.
  EXPECT_FALSE(webhook_next_attempt_ms(o, created, 1, created + o.retry_window_ms));
}

TEST(WebhookBody, IsTheApiEventJson) {
  store::Event e;
  e.seq = 42;
  e.tenant_id = "tn_1";
  e.type = "broadcast.played";
  e.subject_id = "cm_1";
  e.device_id = "dv_1";
  e.at_ms = 1767225600250;
  e.data_json = R"({"amount":"12.00","order_id":"o-1"})";
  const auto j = nlohmann::json::parse(webhook_event_body(e));
  EXPECT_EQ(j["id"], "42");
  EXPECT_EQ(j["type"], "broadcast.played");
  EXPECT_EQ(j["create_time"], "2026-01-01T00:00:00.250Z");
  EXPECT_EQ(j["device_id"], "dv_1");
  EXPECT_EQ(j["subject_id"], "cm_1");
  EXPECT_EQ(j["tenant_id"], "tn_1");
  EXPECT_EQ(j["data"]["amount"], "12.00");
  EXPECT_EQ(j["data"]["order_id"], "o-1");
}

// ---- Against a receiver and SQLite ------------------------------------------------

class DispatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("cl-webhooks-" + std::to_string(::getpid()) + "-" + hex(random_bytes(4)));
    std::filesystem::create_directories(dir_);
    store_ = store::open_store({"sqlite://" + (dir_ / "w.db").string(), 2});
    keys_ = std::make_unique<KeyRing>(std::map<std::string, std::string>{{"k1", random_bytes(32)}},
                                      "k1");
    ASSERT_TRUE(store_->create_tenant({"tn_1", "Acme Pay", "aggregator"}).ok());
    options_.allow_http = true;
    options_.request_timeout_ms = 400;
    options_.retry_delays_ms = {150};
    options_.retry_window_ms = 60'000;
    options_.poll_interval_ms = 50;
  }

  void TearDown() override {
    dispatcher_.reset();
    store_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  void start() {
    dispatcher_ = std::make_unique<WebhookDispatcher>(*store_, *keys_, bus_, options_);
    dispatcher_->set_response_handler(
        [this](const store::Event& e, int status, std::string_view body) {
          std::lock_guard lock(handled_mutex_);
          handled_.push_back({e.type, std::to_string(status) + " " + std::string(body)});
        });
    dispatcher_->start();
  }

  // An endpoint that starts at the current end of the log, as CreateWebhook does.
  std::string add_endpoint(const std::string& url, std::vector<std::string> types = {},
                           bool disabled = false) {
    store::WebhookEndpoint w;
    w.id = "wh_" + std::to_string(++endpoints_);
    w.tenant_id = "tn_1";
    w.url = url;
    w.event_types = std::move(types);
    w.disabled = disabled;
    w.secret_sealed = seal_webhook_secrets(*keys_, {secret_, "", 0}, w.id);
    w.cursor_seq = latest_event_seq(*store_, 0).value();
    w.created_ms = w.updated_ms = system_clock_ms();
    EXPECT_TRUE(store_->create_webhook(w).ok());
    return w.id;
  }

  int64_t append(const std::string& type, const std::string& data = R"({"k":"v"})") {
    store::Write w;
    w.kind = store::Write::Kind::kAppendEvent;
    w.event.tenant_id = "tn_1";
    w.event.type = type;
    w.event.subject_id = "sc_1";
    w.event.device_id = "dv_1";
    w.event.at_ms = system_clock_ms();
    w.event.data_json = data;
    auto out = store_->apply_writes({w});
    EXPECT_TRUE(out.ok());
    const int64_t seq = out.value().at(0).event_seq;
    bus_.published(seq);
    return seq;
  }

  std::vector<store::WebhookDelivery> deliveries(const std::string& endpoint) {
    store::Page page;
    page.limit = 1000;
    return store_->list_webhook_deliveries("tn_1", endpoint, page).value().items;
  }

  // Waits until the endpoint's only (newest) delivery is in `state`.
  store::WebhookDelivery wait_state(const std::string& endpoint, const std::string& state,
                                    std::chrono::milliseconds timeout = 10s) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto rows = deliveries(endpoint);
      if (!rows.empty() && rows.front().state == state) return rows.front();
      if (std::chrono::steady_clock::now() > until) {
        ADD_FAILURE() << "delivery not " << state << " in time ("
                      << (rows.empty() ? "none" : rows.front().state) << ")";
        return rows.empty() ? store::WebhookDelivery{} : rows.front();
      }
      std::this_thread::sleep_for(10ms);
    }
  }

  std::vector<store::WebhookAttempt> attempts(int64_t delivery_id) {
    return store_->list_webhook_attempts("tn_1", delivery_id).value();
  }

  std::filesystem::path dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<KeyRing> keys_;
  EventBus bus_;
  WebhookOptions options_;
  std::unique_ptr<WebhookDispatcher> dispatcher_;
  const std::string secret_ = "whsec_unit_test_secret";
  int endpoints_ = 0;
  std::mutex handled_mutex_;
  std::vector<std::pair<std::string, std::string>> handled_;
};

TEST_F(DispatcherTest, DeliversTheEventSignedWithTheDocumentedHeaders) {
  Receiver receiver;
  const std::string endpoint = add_endpoint(receiver.url());
  start();
  const int64_t seq = append("broadcast.played", R"({"amount":"12.00"})");
  ASSERT_TRUE(receiver.wait_for(1));
  const auto req = receiver.requests().at(0);
  EXPECT_EQ(req.method, "POST");
  EXPECT_EQ(req.path, "/hooks");
  EXPECT_EQ(req.headers.at("content-type"), "application/json");
  EXPECT_EQ(req.headers.at("user-agent"), "Counterlink-Webhooks/1");
  EXPECT_EQ(req.headers.at("counterlink-event-id"), std::to_string(seq));
  EXPECT_EQ(req.headers.at("counterlink-event-type"), "broadcast.played");
  EXPECT_EQ(req.headers.at("counterlink-delivery-attempt"), "1");
  EXPECT_TRUE(verify(req.headers.at("counterlink-signature"), secret_, req.body))
      << req.headers.at("counterlink-signature");
  const auto body = nlohmann::json::parse(req.body);
  EXPECT_EQ(body["id"], std::to_string(seq));
  EXPECT_EQ(body["data"]["amount"], "12.00");
  // The signature's timestamp is now.
  const auto header = req.headers.at("counterlink-signature");
  const int64_t t = std::stoll(header.substr(2, header.find(',') - 2));
  EXPECT_NEAR(static_cast<double>(t), system_clock_ms() / 1000.0, 5);

  const auto d = wait_state(endpoint, "succeeded");
  EXPECT_EQ(req.headers.at("counterlink-delivery-id"), std::to_string(d.id));
  EXPECT_EQ(d.attempts, 1);
  EXPECT_EQ(d.last_status_code, 200);
  const auto log = attempts(d.id);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].status_code, 200);
  EXPECT_EQ(log[0].error, "");
}

TEST_F(DispatcherTest, A500ThenA200IsTwoAttemptsAndSucceeds) {
  Receiver receiver;
  receiver.script({{500, "database down"}, {200, "ok"}});
  const std::string endpoint = add_endpoint(receiver.url());
  const auto before =
      obs::metrics().value("counterlink_webhook_attempts_total", {{"outcome", "http_error"}});
  start();
  append("device.online");
  const auto d = wait_state(endpoint, "succeeded");
  EXPECT_EQ(d.attempts, 2);
  const auto log = attempts(d.id);
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0].status_code, 500);
  EXPECT_EQ(log[0].error, "database down");
  EXPECT_EQ(log[1].status_code, 200);
  EXPECT_GE(log[1].at_ms - log[0].at_ms, 150);  // the backoff
  EXPECT_EQ(receiver.count(), 2u);
  const auto reqs = receiver.requests();
  EXPECT_EQ(reqs[0].headers.at("counterlink-event-id"), reqs[1].headers.at("counterlink-event-id"));
  EXPECT_EQ(reqs[1].headers.at("counterlink-delivery-attempt"), "2");
  EXPECT_EQ(obs::metrics().value("counterlink_webhook_attempts_total", {{"outcome", "http_error"}}),
            before + 1);
}

TEST_F(DispatcherTest, ATimeoutIsRetried) {
  Receiver receiver;
  receiver.script({{200, "late", 1500}});
  const std::string endpoint = add_endpoint(receiver.url());
  start();
  append("device.online");
  const auto d = wait_state(endpoint, "succeeded");
  EXPECT_EQ(d.attempts, 2);
  const auto log = attempts(d.id);
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0].status_code, 0);
  EXPECT_NE(log[0].error.find("no answer within 400 ms"), std::string::npos) << log[0].error;
  EXPECT_GE(log[0].duration_ms, 350);
  EXPECT_EQ(log[1].status_code, 200);
}

TEST_F(DispatcherTest, GivesUpAfterTheRetryWindow) {
  Receiver receiver;
  receiver.set_default({503, "maintenance"});
  options_.retry_window_ms = 700;
  const std::string endpoint = add_endpoint(receiver.url());
  start();
  append("device.online");
  const auto d = wait_state(endpoint, "failed");
  EXPECT_GE(d.attempts, 3);  // 0, ~150, ~300, ... ms
  EXPECT_EQ(d.last_status_code, 503);
  EXPECT_EQ(d.next_attempt_ms, 0);
  // The last try was due within the window (sent up to a poll later).
  EXPECT_LE(d.last_attempt_ms - d.created_ms, 700 + 200);
  const size_t sent = receiver.count();
  EXPECT_EQ(sent, static_cast<size_t>(d.attempts));
  std::this_thread::sleep_for(400ms);
  EXPECT_EQ(receiver.count(), sent);  // nothing after giving up
}

TEST_F(DispatcherTest, AConnectionRefusedIsATransportErrorAndRetried) {
  std::string url;
  {
    Receiver gone;
    url = gone.url();
  }
  const std::string endpoint = add_endpoint(url);
  start();
  append("device.online");
  const auto until = std::chrono::steady_clock::now() + 10s;
  std::vector<store::WebhookDelivery> rows;
  while (std::chrono::steady_clock::now() < until) {
    rows = deliveries(endpoint);
    if (!rows.empty() && rows[0].attempts >= 2) break;
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_FALSE(rows.empty());
  EXPECT_GE(rows[0].attempts, 2);
  EXPECT_EQ(rows[0].state, "pending");
  EXPECT_EQ(rows[0].last_status_code, 0);
  EXPECT_FALSE(rows[0].last_error.empty());
}

TEST_F(DispatcherTest, RedeliveryResendsASucceededDelivery) {
  Receiver receiver;
  const std::string endpoint = add_endpoint(receiver.url());
  start();
  append("print_job.printed");
  auto d = wait_state(endpoint, "succeeded");
  ASSERT_TRUE(store_->reschedule_webhook_delivery("tn_1", d.id, system_clock_ms()).ok());
  dispatcher_->wake();
  ASSERT_TRUE(receiver.wait_for(2));
  d = wait_state(endpoint, "succeeded");
  EXPECT_EQ(d.attempts, 2);
  const auto reqs = receiver.requests();
  EXPECT_EQ(reqs[0].body, reqs[1].body);
  EXPECT_EQ(reqs[1].headers.at("counterlink-delivery-id"), std::to_string(d.id));
}

TEST_F(DispatcherTest, TheCursorDoesNotDeliverAnEventTwiceAcrossRestarts) {
  Receiver receiver;
  const std::string endpoint = add_endpoint(receiver.url());
  start();
  const int64_t first = append("device.online");
  wait_state(endpoint, "succeeded");
  dispatcher_->stop();
  dispatcher_.reset();
  start();  // a new process: only the cursor in the store remembers
  const int64_t second = append("device.offline");
  ASSERT_TRUE(receiver.wait_for(2));
  std::this_thread::sleep_for(300ms);
  const auto reqs = receiver.requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[0].headers.at("counterlink-event-id"), std::to_string(first));
  EXPECT_EQ(reqs[1].headers.at("counterlink-event-id"), std::to_string(second));
  EXPECT_EQ(deliveries(endpoint).size(), 2u);
  EXPECT_EQ(store_->get_webhook("tn_1", endpoint).value().cursor_seq, second);
}

TEST_F(DispatcherTest, ANewEndpointDoesNotGetEarlierEvents) {
  Receiver receiver;
  for (int i = 0; i < 5; ++i)
    append("device.online");
  const std::string endpoint = add_endpoint(receiver.url());
  start();
  const int64_t fresh = append("device.offline");
  ASSERT_TRUE(receiver.wait_for(1));
  std::this_thread::sleep_for(300ms);
  const auto reqs = receiver.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].headers.at("counterlink-event-id"), std::to_string(fresh));
  EXPECT_EQ(deliveries(endpoint).size(), 1u);
}

TEST_F(DispatcherTest, ADisabledEndpointGetsNothing) {
  Receiver receiver;
  const std::string disabled = add_endpoint(receiver.url("/off"), {}, /*disabled=*/true);
  const std::string enabled = add_endpoint(receiver.url("/on"));
  start();
  append("device.online");
  wait_state(enabled, "succeeded");
  std::this_thread::sleep_for(300ms);
  for (const auto& r : receiver.requests())
    EXPECT_EQ(r.path, "/on");
  EXPECT_TRUE(deliveries(disabled).empty());
}

TEST_F(DispatcherTest, PendingDeliveriesOfAnEndpointDisabledLaterFailWithoutASend) {
  Receiver receiver;
  receiver.set_default({500, "no"});
  options_.retry_delays_ms = {300};
  const std::string endpoint = add_endpoint(receiver.url());
  start();
  append("device.online");
  ASSERT_TRUE(receiver.wait_for(1));
  auto row = store_->get_webhook("tn_1", endpoint).value();
  row.disabled = true;
  ASSERT_TRUE(store_->update_webhook(row).ok());
  const auto d = wait_state(endpoint, "failed");
  EXPECT_EQ(receiver.count(), 1u);
  EXPECT_NE(d.last_error.find("endpoint disabled"), std::string::npos) << d.last_error;
}

TEST_F(DispatcherTest, OnlyMatchingEventTypesBecomeDeliveries) {
  Receiver receiver;
  const std::string endpoint = add_endpoint(receiver.url(), {"broadcast.*", "scan.received"});
  start();
  append("device.online");
  const int64_t played = append("broadcast.played");
  append("scan.answered");
  const int64_t scan = append("scan.received");
  ASSERT_TRUE(receiver.wait_for(2));
  std::this_thread::sleep_for(300ms);
  std::set<std::string> ids;
  for (const auto& r : receiver.requests())
    ids.insert(r.headers.at("counterlink-event-id"));
  EXPECT_EQ(ids, (std::set<std::string>{std::to_string(played), std::to_string(scan)}));
  EXPECT_EQ(deliveries(endpoint).size(), 2u);
}

TEST_F(DispatcherTest, AScanReceivedAnswerBodyGoesToTheResponseHandler) {
  Receiver receiver;
  receiver.script({{200, R"({"outcome":"success","display":"支付成功"})"}});
  add_endpoint(receiver.url());
  start();
  append("scan.received");
  const auto until = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    {
      std::lock_guard lock(handled_mutex_);
      if (!handled_.empty()) break;
    }
    ASSERT_LT(std::chrono::steady_clock::now(), until) << "handler not called";
    std::this_thread::sleep_for(10ms);
  }
  std::lock_guard lock(handled_mutex_);
  ASSERT_EQ(handled_.size(), 1u);
  EXPECT_EQ(handled_[0].first, "scan.received");
  EXPECT_EQ(handled_[0].second, R"(200 {"outcome":"success","display":"支付成功"})");
}

TEST_F(DispatcherTest, AtMostTheConfiguredRequestsRunAtOnceForOneEndpoint) {
  Receiver receiver;
  receiver.set_default({200, "ok", 300});
  options_.max_in_flight_per_endpoint = 2;
  options_.request_timeout_ms = 2000;
  const std::string endpoint = add_endpoint(receiver.url());
  start();
  for (int i = 0; i < 6; ++i)
    append("device.online");
  ASSERT_TRUE(receiver.wait_for(2));
  std::this_thread::sleep_for(150ms);
  EXPECT_EQ(receiver.count(), 2u);  // the others wait for a slot
  ASSERT_TRUE(receiver.wait_for(6));
  for (const auto& d : deliveries(endpoint))
    EXPECT_NE(d.state, "failed");
}

TEST_F(DispatcherTest, StopIsPromptWithARequestInFlightAndLeavesItPending) {
  Receiver receiver;
  receiver.set_default({200, "ok", 5000});
  options_.request_timeout_ms = 10'000;
  const std::string endpoint = add_endpoint(receiver.url());
  start();
  append("device.online");
  ASSERT_TRUE(receiver.wait_for(1));
  const auto before = std::chrono::steady_clock::now();
  dispatcher_->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - before, 1s);
  const auto rows = deliveries(endpoint);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].state, "pending");
  EXPECT_EQ(rows[0].attempts, 0);
}

TEST_F(DispatcherTest, LatestEventSeqFindsTheNewestEventFromAnyHint) {
  EXPECT_EQ(latest_event_seq(*store_, 0).value(), 0);
  int64_t last = 0;
  for (int i = 0; i < 37; ++i)
    last = append("device.online");
  for (int64_t hint : {int64_t{0}, int64_t{1}, last / 2, last}) {
    EXPECT_EQ(latest_event_seq(*store_, hint).value(), last) << hint;
  }
}

}  // namespace
}  // namespace counterlink::platform
