// The counterlink.v1 handlers called through the ServiceRegistry over a real
// SQLite store: validation, tenant isolation, pagination, filters, secrets.
#include <google/protobuf/empty.pb.h>

#include "counterlink/v1/api_keys.pb.h"

#include "fixture.h"

namespace counterlink::platform::testing {
namespace {

using v1::CreateDeviceRequest;
using v1::CreateDeviceResponse;

// ---- Validation -------------------------------------------------------------

TEST_F(ServicesTest, CreateDeviceRejectsBadFieldsNamingTheField) {
  const std::string product = make_product(a_);
  struct Case {
    std::string field;
    std::function<void(CreateDeviceRequest&)> spoil;
  };
  std::vector<Case> cases = {
      {"serial", [](auto& r) { r.set_serial(""); }},
      {"serial", [](auto& r) { r.set_serial("has space"); }},
      {"serial", [](auto& r) { r.set_serial(std::string(65, 'a')); }},
      {"product_id", [](auto& r) { r.set_product_id("pd_nope"); }},
      {"labels", [](auto& r) { (*r.mutable_labels())["Upper"] = "x"; }},
      {"labels", [](auto& r) { (*r.mutable_labels())["-dash"] = "x"; }},
      {"labels", [](auto& r) { (*r.mutable_labels())["ok"] = std::string(256, 'v'); }},
      {"labels",
       [](auto& r) {
         for (int i = 0; i < 65; ++i)
           (*r.mutable_labels())["k" + std::to_string(i)] = "v";
       }},
      {"firmware_version", [](auto& r) { r.set_firmware_version("1.0 beta"); }},
      {"secret", [](auto& r) { r.set_secret("short"); }},
      {"merchant_id", [](auto& r) { r.set_merchant_id("mc_x"); }},
  };
  for (const auto& c : cases) {
    CreateDeviceRequest req;
    req.set_product_id(product);
    req.set_serial("SN-1");
    c.spoil(req);
    CreateDeviceResponse resp;
    auto p = call("DeviceService.CreateDevice", a_, req, resp);
    ASSERT_TRUE(p) << c.field;
    EXPECT_EQ(p->http_status, 400) << c.field;
    EXPECT_EQ(p->code, "invalid_argument") << c.field;
    EXPECT_EQ(p->field, c.field) << p->detail;
  }
  // Nothing was created by the rejected calls.
  EXPECT_EQ(store_->count_devices(tenant_a_).value(), 0);
}

TEST_F(ServicesTest, AcceptsLabelKeysAndSerialsAtTheLimits) {
  const std::string product = make_product(a_);
  std::map<std::string, std::string> labels;
  labels["a" + std::string(62, 'b')] = std::string(255, 'v');
  labels["region/east.1_x-y"] = "";
  auto created = make_device(a_, product, std::string(64, '9'), labels);
  EXPECT_EQ(created.device().labels().size(), 2u);
}

TEST_F(ServicesTest, PageSizeOutOfRangeIsRejected) {
  for (int size : {-1, 1001}) {
    v1::ListDevicesRequest req;
    req.set_page_size(size);
    v1::ListDevicesResponse resp;
    auto p = call("DeviceService.ListDevices", a_, req, resp);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->field, "page_size");
  }
}

TEST_F(ServicesTest, ProductCapabilitiesAreCheckedAgainstTheType) {
  v1::CreateProductRequest req;
  req.set_name("P-80");
  req.set_type(v1::printer);
  req.mutable_capabilities()->set_paper_width_mm(70);
  v1::Product product;
  auto p = call("ProductService.CreateProduct", a_, req, product);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->field, "capabilities.paper_width_mm");

  req.mutable_capabilities()->set_paper_width_mm(80);
  req.mutable_capabilities()->add_locales("zh-CN");  // speakers only
  p = call("ProductService.CreateProduct", a_, req, product);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->field, "capabilities.locales");

  req.mutable_capabilities()->clear_locales();
  ASSERT_FALSE(call("ProductService.CreateProduct", a_, req, product));
  v1::GetProductRequest get;
  get.set_product_id(product.id());
  v1::Product read;
  ASSERT_FALSE(call("ProductService.GetProduct", a_, get, read));
  EXPECT_EQ(read.type(), v1::printer);
  EXPECT_EQ(read.capabilities().paper_width_mm(), 80);

  v1::CreateProductRequest untyped;
  untyped.set_name("x");
  p = call("ProductService.CreateProduct", a_, untyped, product);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->field, "type");
}

TEST_F(ServicesTest, OperatorMustNameTheTenantWhenCreating) {
  v1::CreateProductRequest req;
  req.set_name("SP");
  req.set_type(v1::speaker);
  v1::Product product;
  auto p = call("ProductService.CreateProduct", admin_, req, product);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->field, "tenant_id");
  req.set_tenant_id(tenant_b_);
  ASSERT_FALSE(call("ProductService.CreateProduct", admin_, req, product));
  EXPECT_EQ(product.tenant_id(), tenant_b_);
}

TEST_F(ServicesTest, TenantManagementIsForOperatorsOnly) {
  v1::CreateTenantRequest req;
  req.set_name("Sneaky");
  v1::Tenant tenant;
  auto p = call("TenantService.CreateTenant", a_, req, tenant);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->http_status, 403);
}

TEST_F(ServicesTest, UpdateTenantChangesOnlyGivenFields) {
  v1::UpdateTenantRequest req;
  req.set_tenant_id(tenant_a_);
  req.set_api_rate_limit(20);
  v1::Tenant tenant;
  ASSERT_FALSE(call("TenantService.UpdateTenant", admin_, req, tenant));
  EXPECT_EQ(tenant.api_rate_limit(), 20);
  EXPECT_EQ(tenant.name(), "Tenant A");
  EXPECT_EQ(tenant.kind(), "saas");
  req.clear_api_rate_limit();
  req.set_kind("bank");
  auto p = call("TenantService.UpdateTenant", admin_, req, tenant);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->field, "kind");
}

// ---- Tenant isolation ---------------------------------------------------------

TEST_F(ServicesTest, AnotherTenantsDeviceIsNotFoundForEveryCall) {
  const std::string product = make_product(a_);
  const std::string id = make_device(a_, product, "SN-A").device().id();

  v1::GetDeviceRequest get;
  get.set_device_id(id);
  v1::Device device;
  auto p = call("DeviceService.GetDevice", b_, get, device);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->http_status, 404);
  EXPECT_EQ(p->code, "device_not_found");

  v1::UpdateDeviceRequest update;
  update.set_device_id(id);
  update.set_firmware_version("9.9");
  p = call("DeviceService.UpdateDevice", b_, update, device);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->code, "device_not_found");

  v1::DisableDeviceRequest disable;
  disable.set_device_id(id);
  p = call("DeviceService.DisableDevice", b_, disable, device);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->code, "device_not_found");

  v1::RotateDeviceSecretRequest rotate;
  rotate.set_device_id(id);
  v1::RotateDeviceSecretResponse rotated;
  p = call("DeviceService.RotateDeviceSecret", b_, rotate, rotated);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->code, "device_not_found");

  v1::DeleteDeviceRequest del;
  del.set_device_id(id);
  google::protobuf::Empty empty;
  p = call("DeviceService.DeleteDevice", b_, del, empty);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->code, "device_not_found");

  v1::GetDevicePresenceRequest presence_req;
  presence_req.set_device_id(id);
  v1::DevicePresence presence;
  p = call("DeviceService.GetDevicePresence", b_, presence_req, presence);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->code, "device_not_found");

  v1::ListDevicesRequest list;
  v1::ListDevicesResponse listed;
  ASSERT_FALSE(call("DeviceService.ListDevices", b_, list, listed));
  EXPECT_EQ(listed.devices_size(), 0);

  // B's attempts changed nothing, and the gateway was not asked to kick A's
  // device.
  ASSERT_FALSE(call("DeviceService.GetDevice", a_, get, device));
  EXPECT_EQ(device.firmware_version(), "");
  EXPECT_FALSE(device.disabled());
  EXPECT_TRUE(disconnected().empty());

  // A tenant naming another tenant in a list filter learns nothing either.
  list.set_tenant_id(tenant_a_);
  p = call("DeviceService.ListDevices", b_, list, listed);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->http_status, 404);
}

TEST_F(ServicesTest, AnotherTenantsProductCannotBeUsedForADevice) {
  const std::string product_a = make_product(a_);
  CreateDeviceRequest req;
  req.set_product_id(product_a);
  req.set_serial("SN-1");
  CreateDeviceResponse resp;
  auto p = call("DeviceService.CreateDevice", b_, req, resp);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->code, "product_not_found");
  EXPECT_EQ(p->field, "product_id");
}

TEST_F(ServicesTest, OperatorSeesEveryTenantsDevices) {
  make_device(a_, make_product(a_), "SN-A");
  make_device(b_, make_product(b_), "SN-B");
  v1::ListDevicesRequest list;
  v1::ListDevicesResponse listed;
  ASSERT_FALSE(call("DeviceService.ListDevices", admin_, list, listed));
  EXPECT_EQ(listed.devices_size(), 2);
  list.set_tenant_id(tenant_b_);
  ASSERT_FALSE(call("DeviceService.ListDevices", admin_, list, listed));
  ASSERT_EQ(listed.devices_size(), 1);
  EXPECT_EQ(listed.devices(0).serial(), "SN-B");
}

TEST_F(ServicesTest, TenantCannotRevokeAnotherTenantsApiKey) {
  v1::CreateApiKeyRequest create;
  create.set_name("pos");
  v1::CreateApiKeyResponse key;
  ASSERT_FALSE(call("ApiKeyService.CreateApiKey", a_, create, key));
  EXPECT_EQ(key.api_key().tenant_id(), tenant_a_);
  EXPECT_EQ(key.token(), key.api_key().id() + "." + key.secret());

  v1::RevokeApiKeyRequest revoke;
  revoke.set_key_id(key.api_key().id());
  v1::ApiKey revoked;
  auto p = call("ApiKeyService.RevokeApiKey", b_, revoke, revoked);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->code, "api_key_not_found");
  ASSERT_FALSE(call("ApiKeyService.RevokeApiKey", a_, revoke, revoked));
  EXPECT_TRUE(revoked.has_revoke_time());

  // Tenants cannot mint operator keys.
  create.set_scope("admin");
  p = call("ApiKeyService.CreateApiKey", a_, create, key);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->http_status, 403);
}

// ---- Pagination ---------------------------------------------------------------

TEST_F(ServicesTest, PaginationWalksEveryDeviceOnceInCreationOrder) {
  const std::string product = make_product(a_);
  std::vector<store::Device> rows;
  for (int i = 0; i < 1050; ++i) {
    store::Device d;
    d.tenant_id = tenant_a_;
    d.product_id = product;
    d.serial = "SN-" + std::to_string(i);
    d.created_ms = now_ms_;
    d.id = new_resource_id("dv_", now_ms_);
    d.secret_sealed = "x";
    rows.push_back(d);
  }
  auto outcomes = store_->create_devices(rows);
  ASSERT_TRUE(outcomes.ok());
  // One more device created through the API belongs to the other tenant.
  make_device(b_, make_product(b_), "SN-B");

  std::vector<std::string> seen;
  v1::ListDevicesRequest req;
  req.set_page_size(100);
  int pages = 0;
  do {
    v1::ListDevicesResponse resp;
    auto p = call("DeviceService.ListDevices", a_, req, resp);
    ASSERT_FALSE(p) << p->detail;
    for (const auto& d : resp.devices())
      seen.push_back(d.id());
    req.set_page_token(resp.next_page_token());
    ++pages;
  } while (!req.page_token().empty() && pages < 100);
  EXPECT_EQ(pages, 11);
  ASSERT_EQ(seen.size(), 1050u);
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), 1050u);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  for (size_t i = 0; i < rows.size(); ++i)
    EXPECT_EQ(seen[i], rows[i].id);
}

TEST_F(ServicesTest, PageTokenWithOtherFiltersIsRejected) {
  const std::string product = make_product(a_);
  for (int i = 0; i < 3; ++i)
    make_device(a_, product, "SN-" + std::to_string(i));
  v1::ListDevicesRequest req;
  req.set_page_size(1);
  req.set_serial_prefix("SN-");
  v1::ListDevicesResponse resp;
  ASSERT_FALSE(call("DeviceService.ListDevices", a_, req, resp));
  ASSERT_FALSE(resp.next_page_token().empty());

  req.set_page_token(resp.next_page_token());
  req.set_serial_prefix("SN-1");
  auto p = call("DeviceService.ListDevices", a_, req, resp);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->http_status, 400);
  EXPECT_EQ(p->code, "invalid_page_token");

  req.set_page_token("not-a-token!");
  p = call("DeviceService.ListDevices", a_, req, resp);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->code, "invalid_page_token");
}

// ---- Filters ---------------------------------------------------------------------

TEST_F(ServicesTest, ListFiltersByLabelSerialPrefixTypeAndPresence) {
  const std::string speaker = make_product(a_, v1::speaker);
  const std::string printer = make_product(a_, v1::printer);
  auto east1 = make_device(a_, speaker, "SP-001", {{"region", "east"}, {"line", "a"}});
  auto east2 = make_device(a_, speaker, "SP-002", {{"region", "east"}, {"line", "b"}});
  auto west = make_device(a_, printer, "PR-001", {{"region", "west"}});

  store::PresenceEvent online;
  online.device_id = east2.device().id();
  online.online = true;
  online.at_ms = now_ms_;
  online.remote_address = "10.0.0.1:5555";
  online.protocol_version = "5.0";
  online.gateway_node = "node-1";
  ASSERT_TRUE(store_->record_presence(online).ok());

  auto ids = [&](v1::ListDevicesRequest req) {
    v1::ListDevicesResponse resp;
    auto p = call("DeviceService.ListDevices", a_, req, resp);
    EXPECT_FALSE(p) << p->detail;
    std::vector<std::string> out;
    for (const auto& d : resp.devices())
      out.push_back(d.serial());
    return out;
  };
  v1::ListDevicesRequest req;
  req.add_label("region=east");
  EXPECT_EQ(ids(req), (std::vector<std::string>{"SP-001", "SP-002"}));
  req.add_label("line=b");
  EXPECT_EQ(ids(req), (std::vector<std::string>{"SP-002"}));

  req = {};
  req.set_serial_prefix("PR-");
  EXPECT_EQ(ids(req), (std::vector<std::string>{"PR-001"}));

  req = {};
  req.set_type(v1::speaker);
  EXPECT_EQ(ids(req), (std::vector<std::string>{"SP-001", "SP-002"}));

  req = {};
  req.set_online(true);
  EXPECT_EQ(ids(req), (std::vector<std::string>{"SP-002"}));
  req.set_online(false);
  EXPECT_EQ(ids(req), (std::vector<std::string>{"SP-001", "PR-001"}));

  req = {};
  req.set_serial("SP-001");
  EXPECT_EQ(ids(req), (std::vector<std::string>{"SP-001"}));

  req = {};
  req.add_label("no-equals-sign");
  v1::ListDevicesResponse resp;
  auto p = call("DeviceService.ListDevices", a_, req, resp);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->field, "label");

  // Presence is reported on the device and on its own.
  v1::GetDevicePresenceRequest presence_req;
  presence_req.set_device_id(east2.device().id());
  v1::DevicePresence presence;
  ASSERT_FALSE(call("DeviceService.GetDevicePresence", a_, presence_req, presence));
  EXPECT_TRUE(presence.online());
  EXPECT_EQ(presence.protocol_version(), "5.0");
  EXPECT_EQ(presence.since().seconds(), now_ms_ / 1000);
  (void)west;
  (void)east1;
}

// ---- Secrets -------------------------------------------------------------------

TEST_F(ServicesTest, SecretIsShownOnceAndRotatedSecretOpensWithTheKeyRing) {
  const std::string product = make_product(a_);
  auto created = make_device(a_, product, "SN-1");
  ASSERT_EQ(created.secret().size(), 32u);
  const std::string id = created.device().id();

  auto row = store_->get_device(tenant_a_, id);
  ASSERT_TRUE(row.ok());
  EXPECT_EQ(row.value().secret_sealed.find(created.secret()), std::string::npos);
  auto opened = keys_->open(row.value().secret_sealed, id);
  ASSERT_TRUE(opened.ok()) << opened.error;
  EXPECT_EQ(opened.plaintext, created.secret());

  // Get never returns a secret: the Device message has no field for it, and
  // its JSON shape holds nothing secret-like.
  v1::GetDeviceRequest get;
  get.set_device_id(id);
  v1::Device device;
  ASSERT_FALSE(call("DeviceService.GetDevice", a_, get, device));
  EXPECT_EQ(device.SerializeAsString().find(created.secret()), std::string::npos);

  v1::RotateDeviceSecretRequest rotate;
  rotate.set_device_id(id);
  v1::RotateDeviceSecretResponse rotated;
  ASSERT_FALSE(call("DeviceService.RotateDeviceSecret", a_, rotate, rotated));
  EXPECT_NE(rotated.secret(), created.secret());
  row = store_->get_device(tenant_a_, id);
  opened = keys_->open(row.value().secret_sealed, id);
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(opened.plaintext, rotated.secret());
  // The live session is left alone (session_control.h).
  EXPECT_TRUE(disconnected().empty());
}

TEST_F(ServicesTest, FactorySecretIsStoredAndNotEchoed) {
  const std::string product = make_product(a_);
  CreateDeviceRequest req;
  req.set_product_id(product);
  req.set_serial("SN-F");
  req.set_secret("factory-secret-0123456789");
  CreateDeviceResponse resp;
  ASSERT_FALSE(call("DeviceService.CreateDevice", a_, req, resp));
  EXPECT_EQ(resp.secret(), "");
  auto row = store_->get_device(tenant_a_, resp.device().id());
  EXPECT_EQ(keys_->open(row.value().secret_sealed, resp.device().id()).plaintext,
            "factory-secret-0123456789");
}

TEST_F(ServicesTest, DuplicateSerialOfSameProductIsAConflict) {
  const std::string product = make_product(a_);
  make_device(a_, product, "SN-1");
  CreateDeviceRequest req;
  req.set_product_id(product);
  req.set_serial("SN-1");
  CreateDeviceResponse resp;
  auto p = call("DeviceService.CreateDevice", a_, req, resp);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->http_status, 409);
  EXPECT_EQ(p->code, "serial_taken");
}

// ---- Update, disable, delete ------------------------------------------------------

TEST_F(ServicesTest, UpdateMergesLabelsByDefaultAndReplacesOnRequest) {
  const std::string product = make_product(a_);
  auto created = make_device(a_, product, "SN-1", {{"region", "east"}, {"line", "a"}});
  v1::UpdateDeviceRequest req;
  req.set_device_id(created.device().id());
  (*req.mutable_labels())["line"] = "b";
  (*req.mutable_labels())["floor"] = "2";
  req.add_remove_labels("region");
  v1::Device device;
  ASSERT_FALSE(call("DeviceService.UpdateDevice", a_, req, device));
  using Labels = std::map<std::string, std::string>;
  EXPECT_EQ(Labels(device.labels().begin(), device.labels().end()),
            (Labels{{"line", "b"}, {"floor", "2"}}));

  // Fields left out are unchanged.
  v1::UpdateDeviceRequest fw;
  fw.set_device_id(created.device().id());
  fw.set_firmware_version("2.1.0");
  ASSERT_FALSE(call("DeviceService.UpdateDevice", a_, fw, device));
  EXPECT_EQ(device.labels().size(), 2u);
  EXPECT_EQ(device.firmware_version(), "2.1.0");

  v1::UpdateDeviceRequest replace;
  replace.set_device_id(created.device().id());
  replace.set_replace_labels(true);
  ASSERT_FALSE(call("DeviceService.UpdateDevice", a_, replace, device));
  EXPECT_TRUE(device.labels().empty());
  EXPECT_EQ(device.firmware_version(), "2.1.0");
}

TEST_F(ServicesTest, UpdatePlacesDeviceInAnOutletAndItsMerchant) {
  const std::string product = make_product(a_);
  auto created = make_device(a_, product, "SN-1");
  v1::CreateMerchantRequest mreq;
  mreq.set_name("Noodle House");
  v1::Merchant merchant;
  ASSERT_FALSE(call("MerchantService.CreateMerchant", a_, mreq, merchant));
  v1::CreateOutletRequest oreq;
  oreq.set_merchant_id(merchant.id());
  oreq.set_name("Xuhui store");
  v1::Outlet outlet;
  ASSERT_FALSE(call("MerchantService.CreateOutlet", a_, oreq, outlet));

  v1::UpdateDeviceRequest req;
  req.set_device_id(created.device().id());
  req.set_outlet_id(outlet.id());
  v1::Device device;
  ASSERT_FALSE(call("DeviceService.UpdateDevice", a_, req, device));
  EXPECT_EQ(device.outlet_id(), outlet.id());
  EXPECT_EQ(device.merchant_id(), merchant.id());

  // Tenant B's outlet ids mean nothing to A.
  v1::Outlet outlet_b;
  v1::Merchant merchant_b;
  ASSERT_FALSE(call("MerchantService.CreateMerchant", b_, mreq, merchant_b));
  oreq.set_merchant_id(merchant_b.id());
  ASSERT_FALSE(call("MerchantService.CreateOutlet", b_, oreq, outlet_b));
  req.set_outlet_id(outlet_b.id());
  auto p = call("DeviceService.UpdateDevice", a_, req, device);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->code, "outlet_not_found");
  EXPECT_EQ(p->field, "outlet_id");

  // "" clears the placement.
  v1::UpdateDeviceRequest clear;
  clear.set_device_id(created.device().id());
  clear.set_merchant_id("");
  ASSERT_FALSE(call("DeviceService.UpdateDevice", a_, clear, device));
  EXPECT_EQ(device.merchant_id(), "");
  EXPECT_EQ(device.outlet_id(), "");
}

TEST_F(ServicesTest, DisableAndDeleteKickTheLiveSession) {
  const std::string product = make_product(a_);
  const std::string id = make_device(a_, product, "SN-1").device().id();
  v1::DisableDeviceRequest disable;
  disable.set_device_id(id);
  v1::Device device;
  ASSERT_FALSE(call("DeviceService.DisableDevice", a_, disable, device));
  EXPECT_TRUE(device.disabled());
  EXPECT_TRUE(store_->get_device(tenant_a_, id).value().disabled);
  EXPECT_EQ(disconnected(), std::vector<std::string>{id});

  v1::EnableDeviceRequest enable;
  enable.set_device_id(id);
  ASSERT_FALSE(call("DeviceService.EnableDevice", a_, enable, device));
  EXPECT_FALSE(store_->get_device(tenant_a_, id).value().disabled);

  v1::DeleteDeviceRequest del;
  del.set_device_id(id);
  google::protobuf::Empty empty;
  ASSERT_FALSE(call("DeviceService.DeleteDevice", a_, del, empty));
  EXPECT_EQ(store_->get_device(tenant_a_, id).status().code, store::Code::kNotFound);
  EXPECT_EQ(disconnected().size(), 2u);
}

TEST_F(ServicesTest, ProductWithDevicesCannotBeDeleted) {
  const std::string product = make_product(a_);
  make_device(a_, product, "SN-1");
  v1::DeleteProductRequest req;
  req.set_product_id(product);
  google::protobuf::Empty empty;
  auto p = call("ProductService.DeleteProduct", a_, req, empty);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->http_status, 409);
  EXPECT_EQ(p->code, "product_has_devices");
}

// ---- Quota ---------------------------------------------------------------------------

TEST_F(ServicesTest, DeviceQuotaAnswers429WithRetryAfter) {
  const std::string tenant = make_tenant("Small", /*max_devices=*/2);
  api::Principal who;
  who.tenant_id = tenant;
  const std::string product = make_product(who);
  make_device(who, product, "SN-1");
  make_device(who, product, "SN-2");
  CreateDeviceRequest req;
  req.set_product_id(product);
  req.set_serial("SN-3");
  CreateDeviceResponse resp;
  auto p = call("DeviceService.CreateDevice", who, req, resp);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->http_status, 429);
  EXPECT_EQ(p->code, "device_quota_exceeded");
  EXPECT_GE(p->retry_after_s, 1);
  EXPECT_EQ(store_->count_devices(tenant).value(), 2);
}

// ---- Ids -------------------------------------------------------------------------------

TEST(ResourceIds, AreTimeOrderedAndStrictlyIncreasingWithinOneMillisecond) {
  std::string previous = new_resource_id("dv_", 1000);
  EXPECT_EQ(previous.size(), 29u);
  for (int i = 0; i < 1000; ++i) {
    std::string next = new_resource_id("dv_", 1000);
    EXPECT_LT(previous, next);
    previous = next;
  }
  EXPECT_LT(previous, new_resource_id("dv_", 1001));
  // The time prefix alone orders ids of different milliseconds.
  const std::string today = new_resource_id("dv_", 1767225600000 + 365LL * 86400000);
  const std::string tomorrow = new_resource_id("dv_", 1767225600000 + 366LL * 86400000);
  EXPECT_LT(today.substr(0, 13), tomorrow.substr(0, 13));
}

TEST_F(ServicesTest, ConnectionInfoWithoutAGatewayIsUnavailable) {
  const std::string id = make_device(a_, make_product(a_), "SN-1").device().id();
  v1::GetConnectionInfoRequest req;
  req.set_device_id(id);
  v1::ConnectionInfo info;
  auto p = call("DeviceService.GetConnectionInfo", a_, req, info);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->http_status, 503);
  EXPECT_EQ(p->code, "connection_info_unavailable");
}

TEST_F(ServicesTest, ConnectionInfoComesFromTheProvider) {
  class Provider : public ConnectionInfoProvider {
   public:
    DeviceConnectionInfo connection_info(const store::Device& device) const override {
      DeviceConnectionInfo info;
      info.endpoints.push_back({"mqtts", "mqtt.example.com", 8883, true, ""});
      info.username_format = "<device_id>;<unix_ms>;hmacsha256;v1";
      info.topic_prefix = "devices/" + device.id + "/";
      info.command_topic = info.topic_prefix + "commands";
      info.protocol_versions = {"3.1.1", "5.0"};
      return info;
    }
  };
  api::ServiceRegistry registry;
  PlatformDeps deps;
  deps.store = store_.get();
  deps.keys = keys_.get();
  deps.connection_info = std::make_shared<Provider>();
  register_platform_services(registry, deps);
  const std::string id = make_device(a_, make_product(a_), "SN-1").device().id();

  v1::GetConnectionInfoRequest req;
  req.set_device_id(id);
  v1::ConnectionInfo info;
  api::CallContext ctx;
  ctx.principal = a_;
  auto p = (*registry.find_unary("counterlink.v1.DeviceService.GetConnectionInfo"))(ctx, req, info);
  ASSERT_FALSE(p) << p->detail;
  EXPECT_EQ(info.client_id(), id);
  EXPECT_EQ(info.topic_prefix(), "devices/" + id + "/");
  ASSERT_EQ(info.endpoints_size(), 1);
  EXPECT_EQ(info.endpoints(0).port(), 8883);
  EXPECT_TRUE(info.endpoints(0).tls());
  // Another tenant cannot read it.
  ctx.principal = b_;
  p = (*registry.find_unary("counterlink.v1.DeviceService.GetConnectionInfo"))(ctx, req, info);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->code, "device_not_found");
}

TEST_F(ServicesTest, PresenceHistoryPagesNewestFirst) {
  const std::string id = make_device(a_, make_product(a_), "SN-1").device().id();
  for (int i = 0; i < 5; ++i) {
    store::PresenceEvent event;
    event.device_id = id;
    event.online = i % 2 == 0;
    event.at_ms = now_ms_ + i * 1000;
    event.reason = event.online ? "" : "keepalive_timeout";
    ASSERT_TRUE(store_->record_presence(event).ok());
  }
  v1::ListPresenceHistoryRequest req;
  req.set_device_id(id);
  req.set_page_size(2);
  std::vector<int64_t> times;
  for (int page = 0; page < 5; ++page) {
    v1::ListPresenceHistoryResponse resp;
    auto p = call("DeviceService.ListPresenceHistory", a_, req, resp);
    ASSERT_FALSE(p) << p->detail;
    for (const auto& e : resp.events())
      times.push_back(e.time().seconds());
    if (resp.next_page_token().empty()) break;
    req.set_page_token(resp.next_page_token());
  }
  const int64_t t0 = now_ms_ / 1000;
  EXPECT_EQ(times, (std::vector<int64_t>{t0 + 4, t0 + 3, t0 + 2, t0 + 1, t0}));

  req.clear_page_token();
  v1::ListPresenceHistoryResponse resp;
  auto p = call("DeviceService.ListPresenceHistory", b_, req, resp);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->code, "device_not_found");
}

TEST_F(ServicesTest, OutletsAreListedPerMerchantAndCheckedAgainstThePath) {
  v1::CreateMerchantRequest mreq;
  mreq.set_name("Tea Shop");
  v1::Merchant m1, m2;
  ASSERT_FALSE(call("MerchantService.CreateMerchant", a_, mreq, m1));
  ASSERT_FALSE(call("MerchantService.CreateMerchant", a_, mreq, m2));
  v1::CreateOutletRequest oreq;
  oreq.set_name("Store");
  v1::Outlet o1, o2;
  oreq.set_merchant_id(m1.id());
  ASSERT_FALSE(call("MerchantService.CreateOutlet", a_, oreq, o1));
  oreq.set_merchant_id(m2.id());
  ASSERT_FALSE(call("MerchantService.CreateOutlet", a_, oreq, o2));

  v1::ListOutletsRequest list;
  list.set_merchant_id(m1.id());
  v1::ListOutletsResponse listed;
  ASSERT_FALSE(call("MerchantService.ListOutlets", a_, list, listed));
  ASSERT_EQ(listed.outlets_size(), 1);
  EXPECT_EQ(listed.outlets(0).id(), o1.id());
  list.set_merchant_id("-");
  ASSERT_FALSE(call("MerchantService.ListOutlets", a_, list, listed));
  EXPECT_EQ(listed.outlets_size(), 2);
  ASSERT_FALSE(call("MerchantService.ListOutlets", b_, list, listed));
  EXPECT_EQ(listed.outlets_size(), 0);

  // An outlet under the wrong merchant in the path is not found.
  v1::GetOutletRequest get;
  get.set_merchant_id(m2.id());
  get.set_outlet_id(o1.id());
  v1::Outlet read;
  auto p = call("MerchantService.GetOutlet", a_, get, read);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->code, "outlet_not_found");
  get.set_merchant_id(m1.id());
  ASSERT_FALSE(call("MerchantService.GetOutlet", a_, get, read));
  EXPECT_EQ(read.merchant_id(), m1.id());
}

}  // namespace
}  // namespace counterlink::platform::testing
