// counterlink.v1.WebhookService through the ServiceRegistry over a real
// SQLite store: validation, tenant isolation, secrets, the cursor of a new
// or re-enabled endpoint, the delivery log and redelivery, and a ping to a
// real local receiver.
#include <google/protobuf/empty.pb.h>

#include "counterlink/platform/commands.h"
#include "counterlink/platform/webhooks.h"
#include "counterlink/v1/webhooks.pb.h"

#include "fixture.h"
#include "receiver.h"

namespace counterlink::platform::testing {
namespace {

class WebhookServiceTest : public ServicesTest {
 protected:
  void SetUp() override {
    ServicesTest::SetUp();
    PlatformDeps deps;
    deps.store = store_.get();
    deps.keys = keys_.get();
    deps.clock = [this] { return now_ms_.load(); };
    deps.webhook_options.allow_http = true;
    deps.webhook_options.request_timeout_ms = 1000;
    register_platform_services(http_registry_, deps);
  }

  // As call(), on the registry that accepts http:// endpoints.
  api::Outcome call_http(const std::string& method, const api::Principal& who,
                         const google::protobuf::Message& request,
                         google::protobuf::Message& response) {
    const api::UnaryHandler* handler = http_registry_.find_unary("counterlink.v1." + method);
    EXPECT_NE(handler, nullptr) << method;
    if (!handler) return api::internal_error("no handler");
    api::CallContext ctx;
    ctx.method = "counterlink.v1." + method;
    ctx.transport = "rest";
    ctx.principal = who;
    response.Clear();
    return (*handler)(ctx, request, response);
  }

  v1::CreateWebhookResponse create(const api::Principal& who, const std::string& url,
                                   std::vector<std::string> types = {}) {
    v1::CreateWebhookRequest req;
    req.set_url(url);
    for (auto& t : types)
      req.add_event_types(t);
    v1::CreateWebhookResponse resp;
    auto p = call_http("WebhookService.CreateWebhook", who, req, resp);
    EXPECT_FALSE(p) << p->code << ": " << p->detail;
    return resp;
  }

  int64_t append_event(const std::string& tenant, const std::string& type) {
    store::Write w;
    w.kind = store::Write::Kind::kAppendEvent;
    w.event.tenant_id = tenant;
    w.event.type = type;
    w.event.subject_id = "dv_x";
    w.event.device_id = "dv_x";
    w.event.at_ms = now_ms_;
    w.event.data_json = "{}";
    return store_->apply_writes({w}).value().at(0).event_seq;
  }

  // A delivery of `event_seq` to `webhook`, as the dispatcher's fan-out makes it.
  int64_t enqueue(const std::string& webhook, int64_t event_seq, const std::string& state) {
    const auto row = store_->get_webhook("", webhook).value();
    store::WebhookDelivery d;
    d.event_seq = event_seq;
    d.event_type = "device.online";
    d.state = "pending";
    d.created_ms = d.next_attempt_ms = now_ms_;
    EXPECT_TRUE(store_->enqueue_webhook_deliveries(webhook, row.cursor_seq, event_seq, {d}).ok());
    store::Page page;
    page.limit = 1;
    auto delivery = store_->list_webhook_deliveries("", webhook, page).value().items.at(0);
    if (state != "pending") {
      delivery.state = state;
      delivery.attempts = 1;
      delivery.last_status_code = state == "succeeded" ? 200 : 500;
      delivery.last_error = state == "succeeded" ? "" : "boom";
      store::WebhookAttempt a{delivery.id,        1, now_ms_, delivery.last_status_code, 12,
                              delivery.last_error};
      EXPECT_TRUE(store_->record_webhook_attempt(delivery, a).ok());
    }
    return delivery.id;
  }

  api::ServiceRegistry http_registry_;
};

TEST_F(WebhookServiceTest, UrlMustBeHttpsUnlessTheServerAllowsHttp) {
  v1::CreateWebhookRequest req;
  req.set_url("http://127.0.0.1:9/hooks");
  v1::CreateWebhookResponse resp;
  auto p = call("WebhookService.CreateWebhook", a_, req, resp);  // allow_http off
  ASSERT_TRUE(p);
  EXPECT_EQ(p->http_status, 400);
  EXPECT_EQ(p->field, "url");
  EXPECT_FALSE(call_http("WebhookService.CreateWebhook", a_, req, resp));
  req.set_url("https://pay.example.com/hooks");
  EXPECT_FALSE(call("WebhookService.CreateWebhook", a_, req, resp));
}

TEST_F(WebhookServiceTest, CreateRejectsBadFieldsNamingTheField) {
  struct Case {
    std::string field;
    std::function<void(v1::CreateWebhookRequest&)> spoil;
  };
  std::vector<Case> cases = {
      {"url", [](auto& r) { r.set_url(""); }},
      {"url", [](auto& r) { r.set_url("https://x/" + std::string(2048, 'a')); }},
      {"url", [](auto& r) { r.set_url("https://user:pw@x/"); }},
      {"event_types", [](auto& r) { r.add_event_types("broadcast*"); }},
      {"event_types", [](auto& r) { r.add_event_types(""); }},
      {"description", [](auto& r) { r.set_description(std::string(257, 'd')); }},
      {"description", [](auto& r) { r.set_description("line\nbreak"); }},
  };
  for (const auto& c : cases) {
    v1::CreateWebhookRequest req;
    req.set_url("https://pay.example.com/hooks");
    c.spoil(req);
    v1::CreateWebhookResponse resp;
    auto p = call("WebhookService.CreateWebhook", a_, req, resp);
    ASSERT_TRUE(p) << c.field;
    EXPECT_EQ(p->http_status, 400) << c.field;
    EXPECT_EQ(p->field, c.field) << p->detail;
  }
  store::Page page;
  EXPECT_TRUE(store_->list_webhooks(tenant_a_, page).value().items.empty());
}

TEST_F(WebhookServiceTest, TheSecretIsShownOnceAndSealedForTheEndpoint) {
  const auto created = create(a_, "https://pay.example.com/hooks", {"scan.received"});
  EXPECT_EQ(created.secret().rfind("whsec_", 0), 0u);
  EXPECT_EQ(created.webhook().tenant_id(), tenant_a_);
  EXPECT_EQ(created.webhook().event_types_size(), 1);
  v1::GetWebhookRequest get;
  get.set_webhook_id(created.webhook().id());
  v1::Webhook shown;
  ASSERT_FALSE(call("WebhookService.GetWebhook", a_, get, shown));
  EXPECT_EQ(shown.DebugString().find(created.secret()), std::string::npos);
  const auto row = store_->get_webhook(tenant_a_, created.webhook().id()).value();
  EXPECT_EQ(row.secret_sealed.find(created.secret()), std::string::npos);
  auto opened = open_webhook_secrets(*keys_, row.secret_sealed, row.id);
  ASSERT_TRUE(opened);
  EXPECT_EQ(opened->current, created.secret());
}

TEST_F(WebhookServiceTest, ANewEndpointStartsAtTheEndOfTheLog) {
  append_event(tenant_a_, "device.online");
  append_event(tenant_b_, "device.online");
  const int64_t last = append_event(tenant_a_, "device.offline");
  const auto created = create(a_, "https://pay.example.com/hooks");
  EXPECT_EQ(store_->get_webhook(tenant_a_, created.webhook().id()).value().cursor_seq, last);
}

TEST_F(WebhookServiceTest, ATenantHasAtMostTwentyEndpoints) {
  for (int i = 0; i < 20; ++i)
    create(a_, "https://pay.example.com/hooks/" + std::to_string(i));
  v1::CreateWebhookRequest req;
  req.set_url("https://pay.example.com/one-more");
  v1::CreateWebhookResponse resp;
  auto p = call("WebhookService.CreateWebhook", a_, req, resp);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->http_status, 422);
  EXPECT_EQ(p->code, "webhook_limit_reached");
  create(b_, "https://pay.example.com/b");  // another tenant is not affected
}

TEST_F(WebhookServiceTest, OperatorsNameTheTenantAndTenantsSeeOnlyTheirOwn) {
  v1::CreateWebhookRequest req;
  req.set_url("https://pay.example.com/hooks");
  v1::CreateWebhookResponse resp;
  auto p = call("WebhookService.CreateWebhook", admin_, req, resp);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->field, "tenant_id");
  req.set_tenant_id(tenant_a_);
  ASSERT_FALSE(call("WebhookService.CreateWebhook", admin_, req, resp));
  const std::string id = resp.webhook().id();
  const int64_t delivery = enqueue(id, append_event(tenant_a_, "device.online"), "failed");

  v1::GetWebhookRequest get;
  get.set_webhook_id(id);
  v1::Webhook webhook;
  EXPECT_FALSE(call("WebhookService.GetWebhook", a_, get, webhook));
  p = call("WebhookService.GetWebhook", b_, get, webhook);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->code, "webhook_not_found");
  v1::GetWebhookDeliveryRequest get_delivery;
  get_delivery.set_delivery_id(std::to_string(delivery));
  v1::WebhookDelivery d;
  p = call("WebhookService.GetWebhookDelivery", b_, get_delivery, d);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->http_status, 404);
  v1::RedeliverWebhookDeliveryRequest redeliver;
  redeliver.set_delivery_id(std::to_string(delivery));
  p = call("WebhookService.RedeliverWebhookDelivery", b_, redeliver, d);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->http_status, 404);
  v1::DeleteWebhookRequest del;
  del.set_webhook_id(id);
  google::protobuf::Empty empty;
  p = call("WebhookService.DeleteWebhook", b_, del, empty);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->http_status, 404);
  v1::ListWebhooksRequest list;
  v1::ListWebhooksResponse listed;
  ASSERT_FALSE(call("WebhookService.ListWebhooks", b_, list, listed));
  EXPECT_EQ(listed.webhooks_size(), 0);
  ASSERT_FALSE(call("WebhookService.ListWebhooks", admin_, list, listed));
  EXPECT_EQ(listed.webhooks_size(), 1);
}

TEST_F(WebhookServiceTest, UpdateChangesOnlyGivenFieldsAndEnablingSkipsTheDisabledPeriod) {
  const auto created = create(a_, "https://pay.example.com/hooks", {"scan.received"});
  const std::string id = created.webhook().id();
  v1::UpdateWebhookRequest req;
  req.set_webhook_id(id);
  req.set_disabled(true);
  v1::Webhook updated;
  ASSERT_FALSE(call("WebhookService.UpdateWebhook", a_, req, updated));
  EXPECT_TRUE(updated.disabled());
  EXPECT_EQ(updated.url(), "https://pay.example.com/hooks");
  EXPECT_EQ(updated.event_types(0), "scan.received");

  const int64_t while_off = append_event(tenant_a_, "scan.received");
  req.Clear();
  req.set_webhook_id(id);
  req.set_disabled(false);
  req.add_event_types("*");
  req.set_description("prod");
  ASSERT_FALSE(call("WebhookService.UpdateWebhook", a_, req, updated));
  EXPECT_FALSE(updated.disabled());
  EXPECT_EQ(updated.event_types_size(), 1);
  EXPECT_EQ(updated.event_types(0), "*");
  EXPECT_EQ(updated.description(), "prod");
  EXPECT_EQ(store_->get_webhook(tenant_a_, id).value().cursor_seq, while_off);

  req.Clear();
  req.set_webhook_id(id);
  req.set_url("ftp://nope");
  auto p = call("WebhookService.UpdateWebhook", a_, req, updated);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->field, "url");
}

TEST_F(WebhookServiceTest, RotationWithAGracePeriodKeepsTheOldSecretSigning) {
  const auto created = create(a_, "https://pay.example.com/hooks");
  v1::RotateWebhookSecretRequest req;
  req.set_webhook_id(created.webhook().id());
  req.set_grace_period_s(3600);
  v1::RotateWebhookSecretResponse rotated;
  ASSERT_FALSE(call("WebhookService.RotateWebhookSecret", a_, req, rotated));
  EXPECT_NE(rotated.secret(), created.secret());
  auto secrets = open_webhook_secrets(
      *keys_, store_->get_webhook(tenant_a_, created.webhook().id()).value().secret_sealed,
      created.webhook().id());
  ASSERT_TRUE(secrets);
  EXPECT_EQ(secrets->current, rotated.secret());
  EXPECT_EQ(secrets->previous, created.secret());
  EXPECT_EQ(secrets->previous_until_ms, now_ms_ + 3600 * 1000);
  req.set_grace_period_s(86401);
  auto p = call("WebhookService.RotateWebhookSecret", a_, req, rotated);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->field, "grace_period_s");
}

TEST_F(WebhookServiceTest, PingSendsOneSignedRequestAndReportsTheAnswer) {
  Receiver receiver;
  receiver.script({{204, ""}, {500, "broken"}});
  const auto created = create(a_, receiver.url());
  v1::PingWebhookRequest req;
  req.set_webhook_id(created.webhook().id());
  v1::PingWebhookResponse resp;
  ASSERT_FALSE(call_http("WebhookService.PingWebhook", a_, req, resp));
  EXPECT_TRUE(resp.success());
  EXPECT_EQ(resp.status_code(), 204);
  const auto sent = receiver.requests().at(0);
  EXPECT_EQ(sent.headers.at("counterlink-event-type"), "webhook.ping");
  EXPECT_EQ(sent.headers.at("counterlink-event-id"), "0");
  const std::string header = sent.headers.at("counterlink-signature");
  const std::string t = header.substr(2, header.find(',') - 2);
  EXPECT_EQ(header, "t=" + t + ",v1=" + hex(hmac_sha256(created.secret(), t + "." + sent.body)));

  ASSERT_FALSE(call_http("WebhookService.PingWebhook", a_, req, resp));
  EXPECT_FALSE(resp.success());
  EXPECT_EQ(resp.status_code(), 500);
  EXPECT_EQ(resp.error(), "broken");
  // Nothing goes to the delivery log.
  store::Page page;
  EXPECT_TRUE(store_->list_webhook_deliveries(tenant_a_, created.webhook().id(), page)
                  .value()
                  .items.empty());
}

TEST_F(WebhookServiceTest, DeliveriesListNewestFirstFilteredByStateInPages) {
  const auto created = create(a_, "https://pay.example.com/hooks");
  const std::string id = created.webhook().id();
  std::vector<int64_t> failed;
  for (int i = 0; i < 5; ++i) {
    const int64_t seq = append_event(tenant_a_, "device.online");
    const int64_t delivery = enqueue(id, seq, i % 2 ? "succeeded" : "failed");
    if (i % 2 == 0) failed.push_back(delivery);
  }
  v1::ListWebhookDeliveriesRequest req;
  req.set_webhook_id(id);
  req.set_state("failed");
  req.set_page_size(2);
  std::vector<int64_t> seen;
  for (int page = 0; page < 5; ++page) {
    v1::ListWebhookDeliveriesResponse resp;
    auto p = call("WebhookService.ListWebhookDeliveries", a_, req, resp);
    ASSERT_FALSE(p) << p->detail;
    for (const auto& d : resp.deliveries()) {
      EXPECT_EQ(d.state(), "failed");
      seen.push_back(std::stoll(d.id()));
    }
    if (resp.next_page_token().empty()) break;
    req.set_page_token(resp.next_page_token());
  }
  EXPECT_EQ(seen, (std::vector<int64_t>{failed[2], failed[1], failed[0]}));
  // A token is bound to its filter.
  req.set_state("succeeded");
  v1::ListWebhookDeliveriesResponse resp;
  auto p = call("WebhookService.ListWebhookDeliveries", a_, req, resp);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->code, "invalid_page_token");
  req.clear_page_token();
  req.set_state("done");
  p = call("WebhookService.ListWebhookDeliveries", a_, req, resp);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->field, "state");
}

TEST_F(WebhookServiceTest, GetShowsTheAttemptLogAndRedeliveryMakesItDueNow) {
  const auto created = create(a_, "https://pay.example.com/hooks");
  const int64_t seq = append_event(tenant_a_, "device.online");
  const int64_t id = enqueue(created.webhook().id(), seq, "failed");
  v1::GetWebhookDeliveryRequest get;
  get.set_delivery_id(std::to_string(id));
  v1::WebhookDelivery d;
  ASSERT_FALSE(call("WebhookService.GetWebhookDelivery", a_, get, d));
  EXPECT_EQ(d.state(), "failed");
  EXPECT_EQ(d.event_id(), std::to_string(seq));
  EXPECT_EQ(d.webhook_id(), created.webhook().id());
  ASSERT_EQ(d.attempt_log_size(), 1);
  EXPECT_EQ(d.attempt_log(0).status_code(), 500);
  EXPECT_EQ(d.attempt_log(0).error(), "boom");
  EXPECT_EQ(d.attempt_log(0).duration_ms(), 12);

  now_ms_ += 60'000;
  v1::RedeliverWebhookDeliveryRequest redeliver;
  redeliver.set_delivery_id(std::to_string(id));
  ASSERT_FALSE(call("WebhookService.RedeliverWebhookDelivery", a_, redeliver, d));
  EXPECT_EQ(d.state(), "pending");
  const auto row = store_->get_webhook_delivery(tenant_a_, id).value();
  EXPECT_EQ(row.state, "pending");
  EXPECT_EQ(row.next_attempt_ms, now_ms_.load());
  EXPECT_EQ(store_->due_webhook_deliveries(now_ms_, 10).value().size(), 1u);

  get.set_delivery_id("x_1");
  auto p = call("WebhookService.GetWebhookDelivery", a_, get, d);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->field, "delivery_id");
}

TEST_F(WebhookServiceTest, RedeliveryToADisabledEndpointIsRefused) {
  const auto created = create(a_, "https://pay.example.com/hooks");
  const int64_t id =
      enqueue(created.webhook().id(), append_event(tenant_a_, "device.online"), "failed");
  v1::UpdateWebhookRequest update;
  update.set_webhook_id(created.webhook().id());
  update.set_disabled(true);
  v1::Webhook webhook;
  ASSERT_FALSE(call("WebhookService.UpdateWebhook", a_, update, webhook));
  v1::RedeliverWebhookDeliveryRequest redeliver;
  redeliver.set_delivery_id(std::to_string(id));
  v1::WebhookDelivery d;
  auto p = call("WebhookService.RedeliverWebhookDelivery", a_, redeliver, d);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->http_status, 422);
  EXPECT_EQ(p->code, "webhook_disabled");
}

TEST_F(WebhookServiceTest, DeleteRemovesTheEndpointWithItsDeliveries) {
  const auto created = create(a_, "https://pay.example.com/hooks");
  const int64_t id =
      enqueue(created.webhook().id(), append_event(tenant_a_, "device.online"), "succeeded");
  v1::DeleteWebhookRequest del;
  del.set_webhook_id(created.webhook().id());
  google::protobuf::Empty empty;
  ASSERT_FALSE(call("WebhookService.DeleteWebhook", a_, del, empty));
  EXPECT_EQ(store_->get_webhook(tenant_a_, created.webhook().id()).status().code,
            store::Code::kNotFound);
  EXPECT_EQ(store_->get_webhook_delivery(tenant_a_, id).status().code, store::Code::kNotFound);
}

}  // namespace
}  // namespace counterlink::platform::testing
