// One conformance suite for every Store adapter: each TEST_P runs against
// SQLite (a file in a temp dir) and PostgreSQL (a fresh database on the
// throwaway server of postgres_test_server.h). A behaviour the API relies on
// is written here once, so the adapters cannot drift apart.
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "counterlink/store/store.h"

#include "postgres_test_server.h"

namespace counterlink::store {
namespace {

using testing::fresh_postgres_database;
using testing::run_raw_sql;

enum class Backend { kSqlite, kPostgres };

std::string backend_name(const ::testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::kSqlite ? "Sqlite" : "Postgres";
}

class StoreConformance : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Backend::kSqlite) {
      char pattern[] = "/tmp/clstore-XXXXXX";
      ASSERT_NE(mkdtemp(pattern), nullptr);
      temp_dir_ = pattern;
      // A missing parent directory is created by the adapter.
      url_ = "sqlite://" + temp_dir_ + "/data/store.db";
    } else {
      std::string error;
      url_ = fresh_postgres_database(error);
      ASSERT_FALSE(url_.empty()) << "PostgreSQL tests need a server: " << error;
    }
    store_ = open();
  }

  void TearDown() override {
    store_.reset();
    if (!temp_dir_.empty()) std::filesystem::remove_all(temp_dir_);
  }

  std::unique_ptr<Store> open() { return open_store({url_, 4}); }
  void reopen() {
    store_.reset();
    store_ = open();
  }
  std::vector<std::vector<std::string>> raw(const std::string& sql) {
    return run_raw_sql(url_, sql);
  }

  void add_tenant(const std::string& id) {
    ASSERT_TRUE(store_->create_tenant({id, "Tenant " + id, "aggregator", false, 0, 0, 1, 1}).ok());
  }
  void add_product(const std::string& tenant, const std::string& id,
                   const std::string& type = "speaker") {
    ASSERT_TRUE(store_->create_product({id, tenant, "P " + id, type, "{}", 1, 1}).ok());
  }
  static Device device(const std::string& tenant, const std::string& product, const std::string& id,
                       const std::string& serial) {
    Device d;
    d.id = id;
    d.tenant_id = tenant;
    d.product_id = product;
    d.serial = serial;
    d.secret_sealed = "sealed";
    d.created_ms = d.updated_ms = 10;
    return d;
  }
  void add_device(const std::string& tenant, const std::string& product, const std::string& id,
                  const std::string& serial) {
    auto status = store_->create_device(device(tenant, product, id, serial));
    ASSERT_TRUE(status.ok()) << status.message;
  }
  // Ids of a device listing, in order.
  std::vector<std::string> device_ids(const DeviceFilter& filter, int32_t limit = 100) {
    auto listing = store_->list_devices(filter, {"", limit});
    EXPECT_TRUE(listing.ok()) << listing.status().message;
    std::vector<std::string> ids;
    if (listing.ok()) {
      for (const auto& d : listing.value().items)
        ids.push_back(d.id);
    }
    return ids;
  }
  PresenceEvent event(const std::string& device_id, bool online, TimeMs at,
                      const std::string& node = "node-a") {
    return {0, device_id, online, at, "10.0.0.1:5000", "5.0", node, online ? "" : "client_closed"};
  }

  std::string temp_dir_;
  std::string url_;
  std::unique_ptr<Store> store_;
};

// ---- Basics and persistence ----------------------------------------------------

TEST_P(StoreConformance, ReportsItsKindAndAnswersPing) {
  EXPECT_STREQ(store_->kind(), GetParam() == Backend::kSqlite ? "sqlite" : "postgres");
  EXPECT_TRUE(store_->ping().ok());
  EXPECT_EQ(store_->schema_version(), 1);
}

TEST_P(StoreConformance, DataWrittenBeforeCloseIsThereAfterReopen) {
  add_tenant("tn_a");
  add_product("tn_a", "pd_a");
  Device d = device("tn_a", "pd_a", "dv_1", "SN1");
  d.labels = {{"site", "north"}};
  d.secret_sealed = std::string("\x00\x01\xfe\xff", 4);
  ASSERT_TRUE(store_->create_device(d).ok());
  ASSERT_TRUE(store_->record_presence(event("dv_1", true, 100)).ok());
  ASSERT_TRUE(store_->begin_idempotent({"tn_a", "k1", "hash", false, 0, "", 5}).ok());
  ASSERT_TRUE(store_->create_api_key({"ak_1", "tn_a", "tenant", "k", "h", "s", 1, 0, 0}).ok());
  ASSERT_TRUE(store_->touch_api_key("ak_1", 600).ok());  // written at once
  ASSERT_TRUE(store_->touch_api_key("ak_1", 700).ok());  // coalesced: written at close
  const auto applied_before = raw("SELECT version, applied_at FROM schema_migrations");

  reopen();

  auto got = store_->get_device("tn_a", "dv_1");
  ASSERT_TRUE(got.ok()) << got.status().message;
  EXPECT_EQ(got.value().labels, d.labels);
  EXPECT_EQ(got.value().secret_sealed, d.secret_sealed);
  EXPECT_TRUE(got.value().presence.online);
  auto history = store_->list_presence("tn_a", "dv_1", {});
  ASSERT_TRUE(history.ok());
  EXPECT_EQ(history.value().items.size(), 1u);
  auto record = store_->begin_idempotent({"tn_a", "k1", "hash", false, 0, "", 6});
  ASSERT_TRUE(record.ok());
  EXPECT_TRUE(record.value().has_value());
  EXPECT_EQ(store_->get_api_key("ak_1").value().last_used_ms, 700);
  // Migrations ran once: same rows, same applied_at.
  EXPECT_EQ(raw("SELECT version, applied_at FROM schema_migrations"), applied_before);
}

TEST_P(StoreConformance, MigrationsApplyOnceAcrossRepeatedOpens) {
  reopen();
  reopen();
  EXPECT_EQ(store_->schema_version(), 1);
  const auto rows = raw("SELECT COUNT(*), MAX(version) FROM schema_migrations");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0][0], "1");
  EXPECT_EQ(rows[0][1], "1");
}

TEST_P(StoreConformance, RefusesToOpenADatabaseWithANewerSchema) {
  store_.reset();
  raw("INSERT INTO schema_migrations(version, applied_at) VALUES (999, 0)");
  try {
    open();
    FAIL() << "open_store accepted schema version 999";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("newer than this binary"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("999"), std::string::npos) << e.what();
  }
}

// ---- Tenants, merchants, outlets -------------------------------------------------

TEST_P(StoreConformance, TenantRoundTripsAndUpdates) {
  Tenant t{"tn_a", "Acme", "saas", false, 500, 20, 1000, 1000};
  ASSERT_TRUE(store_->create_tenant(t).ok());
  EXPECT_EQ(store_->create_tenant(t).code, Code::kConflict);
  auto got = store_->get_tenant("tn_a");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got.value().name, "Acme");
  EXPECT_EQ(got.value().kind, "saas");
  EXPECT_EQ(got.value().max_devices, 500);
  EXPECT_EQ(got.value().api_rate_limit, 20);
  EXPECT_EQ(got.value().created_ms, 1000);

  t.name = "Acme 2";
  t.disabled = true;
  t.updated_ms = 2000;
  ASSERT_TRUE(store_->update_tenant(t).ok());
  got = store_->get_tenant("tn_a");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got.value().name, "Acme 2");
  EXPECT_TRUE(got.value().disabled);
  EXPECT_EQ(got.value().updated_ms, 2000);
  EXPECT_EQ(got.value().created_ms, 1000);

  EXPECT_EQ(store_->get_tenant("tn_missing").status().code, Code::kNotFound);
  t.id = "tn_missing";
  EXPECT_EQ(store_->update_tenant(t).code, Code::kNotFound);
}

TEST_P(StoreConformance, OutletNeedsAMerchantOfItsOwnTenant) {
  add_tenant("tn_a");
  add_tenant("tn_b");
  ASSERT_TRUE(store_->create_merchant({"mc_a", "tn_a", "Shop A", 1}).ok());
  ASSERT_TRUE(store_->create_merchant({"mc_b", "tn_b", "Shop B", 1}).ok());
  EXPECT_EQ(store_->create_merchant({"mc_a", "tn_a", "again", 1}).code, Code::kConflict);
  EXPECT_EQ(store_->create_merchant({"mc_x", "tn_missing", "x", 1}).code, Code::kInvalid);

  EXPECT_EQ(store_->create_outlet({"st_1", "tn_a", "mc_missing", "S", "", 1}).code, Code::kInvalid);
  EXPECT_EQ(store_->create_outlet({"st_1", "tn_a", "mc_b", "S", "", 1}).code, Code::kInvalid);
  ASSERT_TRUE(store_->create_outlet({"st_1", "tn_a", "mc_a", "Main St", "1 Main St", 1}).ok());
  ASSERT_TRUE(store_->create_outlet({"st_2", "tn_a", "mc_a", "Side St", "", 1}).ok());
  ASSERT_TRUE(store_->create_merchant({"mc_a2", "tn_a", "Shop A2", 1}).ok());
  ASSERT_TRUE(store_->create_outlet({"st_3", "tn_a", "mc_a2", "Other", "", 1}).ok());

  auto outlet = store_->get_outlet("tn_a", "st_1");
  ASSERT_TRUE(outlet.ok());
  EXPECT_EQ(outlet.value().address, "1 Main St");
  EXPECT_EQ(outlet.value().merchant_id, "mc_a");

  auto of_merchant = store_->list_outlets("tn_a", "mc_a", {});
  ASSERT_TRUE(of_merchant.ok());
  ASSERT_EQ(of_merchant.value().items.size(), 2u);
  EXPECT_EQ(of_merchant.value().items[0].id, "st_1");
  EXPECT_EQ(of_merchant.value().items[1].id, "st_2");
  auto all = store_->list_outlets("tn_a", "", {});
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all.value().items.size(), 3u);
  auto merchants = store_->list_merchants("tn_a", {});
  ASSERT_TRUE(merchants.ok());
  EXPECT_EQ(merchants.value().items.size(), 2u);
}

// ---- Tenant scoping ---------------------------------------------------------------

TEST_P(StoreConformance, AnotherTenantsRowsAreNotFoundAndUntouchable) {
  add_tenant("tn_a");
  add_tenant("tn_b");
  ASSERT_TRUE(store_->create_merchant({"mc_a", "tn_a", "Shop", 1}).ok());
  ASSERT_TRUE(store_->create_outlet({"st_a", "tn_a", "mc_a", "Out", "", 1}).ok());
  add_product("tn_a", "pd_a");
  add_device("tn_a", "pd_a", "dv_a", "SN1");
  ASSERT_TRUE(store_->create_api_key({"ak_a", "tn_a", "tenant", "k", "h", "s", 1, 0, 0}).ok());
  ASSERT_TRUE(store_->record_presence(event("dv_a", true, 5)).ok());

  EXPECT_EQ(store_->get_merchant("tn_b", "mc_a").status().code, Code::kNotFound);
  EXPECT_EQ(store_->get_outlet("tn_b", "st_a").status().code, Code::kNotFound);
  EXPECT_EQ(store_->get_product("tn_b", "pd_a").status().code, Code::kNotFound);
  EXPECT_EQ(store_->get_device("tn_b", "dv_a").status().code, Code::kNotFound);
  EXPECT_EQ(store_->get_device_by_serial("tn_b", "pd_a", "SN1").status().code, Code::kNotFound);
  EXPECT_EQ(store_->list_presence("tn_b", "dv_a", {}).status().code, Code::kNotFound);

  Device d = device("tn_b", "pd_a", "dv_a", "SN1");
  d.firmware_version = "evil";
  EXPECT_EQ(store_->update_device(d).code, Code::kNotFound);
  EXPECT_EQ(store_->set_device_secret("tn_b", "dv_a", "x", 9).code, Code::kNotFound);
  EXPECT_EQ(store_->delete_device("tn_b", "dv_a").code, Code::kNotFound);
  EXPECT_EQ(store_->update_product({"pd_a", "tn_b", "evil", "speaker", "{}", 1, 9}).code,
            Code::kNotFound);
  EXPECT_EQ(store_->delete_product("tn_b", "pd_a").code, Code::kNotFound);
  EXPECT_EQ(store_->revoke_api_key("tn_b", "ak_a", 9).code, Code::kNotFound);
  // tn_b cannot attach its device to tn_a's product either.
  EXPECT_EQ(store_->create_device(device("tn_b", "pd_a", "dv_b", "SN2")).code, Code::kInvalid);

  EXPECT_TRUE(device_ids({.tenant_id = "tn_b"}).empty());
  EXPECT_TRUE(store_->list_products("tn_b", {}).value().items.empty());
  EXPECT_TRUE(store_->list_merchants("tn_b", {}).value().items.empty());
  EXPECT_TRUE(store_->list_outlets("tn_b", "", {}).value().items.empty());
  EXPECT_TRUE(store_->list_api_keys("tn_b", {}).value().items.empty());
  EXPECT_EQ(store_->count_devices("tn_b").value(), 0);

  // Nothing changed for the owner, and the empty tenant id (operators) sees all.
  auto still = store_->get_device("tn_a", "dv_a");
  ASSERT_TRUE(still.ok());
  EXPECT_EQ(still.value().firmware_version, "");
  EXPECT_EQ(still.value().secret_sealed, "sealed");
  EXPECT_EQ(store_->get_product("tn_a", "pd_a").value().name, "P pd_a");
  EXPECT_EQ(store_->get_api_key("ak_a").value().revoked_ms, 0);
  EXPECT_TRUE(store_->get_device("", "dv_a").ok());
  EXPECT_EQ(device_ids({}), std::vector<std::string>{"dv_a"});
}

// ---- Pagination ------------------------------------------------------------------

TEST_P(StoreConformance, KeysetPagesAreExclusiveWithAnExactMoreFlag) {
  add_tenant("tn_a");
  for (int i = 1; i <= 6; ++i)
    add_product("tn_a", "pd_" + std::to_string(i));
  std::vector<std::string> seen;
  Page page{"", 3};
  auto first = store_->list_products("tn_a", page);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first.value().items.size(), 3u);
  EXPECT_TRUE(first.value().more);
  page.after_id = first.value().items.back().id;
  auto second = store_->list_products("tn_a", page);
  ASSERT_TRUE(second.ok());
  ASSERT_EQ(second.value().items.size(), 3u);
  EXPECT_FALSE(second.value().more) << "exactly 6 rows: no third page";
  for (const auto* listing : {&first.value(), &second.value()}) {
    for (const auto& p : listing->items)
      seen.push_back(p.id);
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"pd_1", "pd_2", "pd_3", "pd_4", "pd_5", "pd_6"}));

  page.after_id = "pd_6";
  auto past_end = store_->list_products("tn_a", page);
  ASSERT_TRUE(past_end.ok());
  EXPECT_TRUE(past_end.value().items.empty());
  EXPECT_FALSE(past_end.value().more);
  // after_id need not exist: the page starts after where it would sort.
  page = {"pd_35", 10};
  auto between = store_->list_products("tn_a", page);
  ASSERT_TRUE(between.ok());
  ASSERT_EQ(between.value().items.size(), 3u);
  EXPECT_EQ(between.value().items[0].id, "pd_4");
  EXPECT_FALSE(between.value().more);
}

TEST_P(StoreConformance, PageLimitIsClampedToOneThroughAThousand) {
  add_tenant("tn_a");
  add_product("tn_a", "pd_a");
  std::vector<Device> batch;
  for (int i = 0; i < 1003; ++i) {
    batch.push_back(device("tn_a", "pd_a", "dv_" + std::to_string(10000 + i), std::to_string(i)));
  }
  ASSERT_TRUE(store_->create_devices(batch).ok());
  auto zero = store_->list_devices({.tenant_id = "tn_a"}, {"", 0});
  ASSERT_TRUE(zero.ok());
  EXPECT_EQ(zero.value().items.size(), 1u);
  EXPECT_TRUE(zero.value().more);
  auto huge = store_->list_devices({.tenant_id = "tn_a"}, {"", 5000});
  ASSERT_TRUE(huge.ok());
  EXPECT_EQ(huge.value().items.size(), 1000u);
  EXPECT_TRUE(huge.value().more);
  auto rest = store_->list_devices({.tenant_id = "tn_a"}, {huge.value().items.back().id, 1000});
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(rest.value().items.size(), 3u);
  EXPECT_FALSE(rest.value().more);
}

// ---- Devices -----------------------------------------------------------------------

TEST_P(StoreConformance, DeviceRoundTripsEveryFieldIncludingBinarySecret) {
  add_tenant("tn_a");
  add_product("tn_a", "pd_a");
  ASSERT_TRUE(store_->create_merchant({"mc_a", "tn_a", "Shop", 1}).ok());
  ASSERT_TRUE(store_->create_outlet({"st_a", "tn_a", "mc_a", "Out", "", 1}).ok());
  Device d = device("tn_a", "pd_a", "dv_1", "SN-ü-1");
  d.merchant_id = "mc_a";
  d.outlet_id = "st_a";
  d.secret_sealed = std::string("\x00\xff\x10\x00\x7f", 5);
  d.labels = {{"site", "north"}, {"lane", "3"}, {"quote\"key", "v\"al"}};
  d.firmware_version = "2.1.0";
  d.disabled = true;
  d.created_ms = 1700000000123;
  d.updated_ms = 1700000000456;
  ASSERT_TRUE(store_->create_device(d).ok());

  for (auto got : {store_->get_device("tn_a", "dv_1"),
                   store_->get_device_by_serial("tn_a", "pd_a", "SN-ü-1")}) {
    ASSERT_TRUE(got.ok()) << got.status().message;
    const Device& g = got.value();
    EXPECT_EQ(g.tenant_id, "tn_a");
    EXPECT_EQ(g.product_id, "pd_a");
    EXPECT_EQ(g.serial, "SN-ü-1");
    EXPECT_EQ(g.merchant_id, "mc_a");
    EXPECT_EQ(g.outlet_id, "st_a");
    EXPECT_EQ(g.secret_sealed, d.secret_sealed);
    EXPECT_EQ(g.labels, d.labels);
    EXPECT_EQ(g.firmware_version, "2.1.0");
    EXPECT_TRUE(g.disabled);
    EXPECT_EQ(g.created_ms, 1700000000123);
    EXPECT_EQ(g.updated_ms, 1700000000456);
    EXPECT_FALSE(g.presence.online);
    EXPECT_EQ(g.presence.since_ms, 0);
  }
}

TEST_P(StoreConformance, CreateDeviceRefusesTakenSerialAndForeignReferences) {
  add_tenant("tn_a");
  add_tenant("tn_b");
  add_product("tn_a", "pd_a");
  add_product("tn_a", "pd_a2");
  add_product("tn_b", "pd_b");
  ASSERT_TRUE(store_->create_merchant({"mc_b", "tn_b", "Shop", 1}).ok());
  add_device("tn_a", "pd_a", "dv_1", "SN1");

  EXPECT_EQ(store_->create_device(device("tn_a", "pd_a", "dv_2", "SN1")).code, Code::kConflict);
  EXPECT_EQ(store_->create_device(device("tn_a", "pd_a", "dv_1", "SN9")).code, Code::kConflict);
  EXPECT_TRUE(store_->create_device(device("tn_a", "pd_a2", "dv_3", "SN1")).ok())
      << "serials are unique per product only";
  EXPECT_EQ(store_->create_device(device("tn_a", "pd_b", "dv_4", "SN4")).code, Code::kInvalid);
  EXPECT_EQ(store_->create_device(device("tn_a", "pd_missing", "dv_5", "SN5")).code,
            Code::kInvalid);
  Device foreign_merchant = device("tn_a", "pd_a", "dv_6", "SN6");
  foreign_merchant.merchant_id = "mc_b";
  EXPECT_EQ(store_->create_device(foreign_merchant).code, Code::kInvalid);
  EXPECT_EQ(store_->count_devices("tn_a").value(), 2);
}

TEST_P(StoreConformance, UpdateDeviceWritesOnlyTheMutableFields) {
  add_tenant("tn_a");
  add_product("tn_a", "pd_a");
  ASSERT_TRUE(store_->create_merchant({"mc_a", "tn_a", "Shop", 1}).ok());
  add_device("tn_a", "pd_a", "dv_1", "SN1");
  Device d = device("tn_a", "pd_a", "dv_1", "SN-changed");
  d.labels = {{"k", "v"}};
  d.firmware_version = "3.0";
  d.merchant_id = "mc_a";
  d.disabled = true;
  d.updated_ms = 99;
  d.created_ms = 77;
  ASSERT_TRUE(store_->update_device(d).ok());
  auto got = store_->get_device("tn_a", "dv_1");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got.value().labels, d.labels);
  EXPECT_EQ(got.value().firmware_version, "3.0");
  EXPECT_EQ(got.value().merchant_id, "mc_a");
  EXPECT_TRUE(got.value().disabled);
  EXPECT_EQ(got.value().updated_ms, 99);
  EXPECT_EQ(got.value().serial, "SN1");
  EXPECT_EQ(got.value().created_ms, 10);

  d.merchant_id = "mc_missing";
  EXPECT_EQ(store_->update_device(d).code, Code::kInvalid);
  ASSERT_TRUE(store_->set_device_secret("tn_a", "dv_1", std::string("\x01\x00", 2), 120).ok());
  got = store_->get_device("tn_a", "dv_1");
  EXPECT_EQ(got.value().secret_sealed, std::string("\x01\x00", 2));
  EXPECT_EQ(got.value().updated_ms, 120);
  EXPECT_EQ(store_->update_device(device("tn_a", "pd_a", "dv_missing", "x")).code, Code::kNotFound);
}

TEST_P(StoreConformance, DeviceFilterAndsEveryField) {
  add_tenant("tn_a");
  add_tenant("tn_b");
  add_product("tn_a", "pd_speaker", "speaker");
  add_product("tn_a", "pd_printer", "printer");
  add_product("tn_b", "pd_b", "speaker");
  ASSERT_TRUE(store_->create_merchant({"mc_1", "tn_a", "M1", 1}).ok());
  ASSERT_TRUE(store_->create_outlet({"st_1", "tn_a", "mc_1", "O1", "", 1}).ok());

  auto make = [&](const std::string& id, const std::string& product, const std::string& serial,
                  std::map<std::string, std::string> labels, const std::string& firmware,
                  bool disabled, bool with_outlet) {
    Device d = device("tn_a", product, id, serial);
    d.labels = std::move(labels);
    d.firmware_version = firmware;
    d.disabled = disabled;
    if (with_outlet) {
      d.merchant_id = "mc_1";
      d.outlet_id = "st_1";
    }
    auto status = store_->create_device(d);
    ASSERT_TRUE(status.ok()) << status.message;
  };
  make("dv_1", "pd_speaker", "AB-001", {{"site", "north"}, {"lane", "1"}}, "1.0", false, true);
  make("dv_2", "pd_speaker", "AB-002", {{"site", "south"}}, "1.1", false, false);
  make("dv_3", "pd_printer", "CD-001", {{"site", "north"}, {"lane", "2"}}, "1.0", true, true);
  make("dv_4", "pd_printer", "ab-003", {}, "1.0", false, false);
  ASSERT_TRUE(store_->create_device(device("tn_b", "pd_b", "dv_9", "AB-009")).ok());
  ASSERT_TRUE(store_->record_presence(event("dv_2", true, 50)).ok());
  ASSERT_TRUE(store_->record_presence(event("dv_3", true, 50)).ok());

  using V = std::vector<std::string>;
  EXPECT_EQ(device_ids({.tenant_id = "tn_a"}), (V{"dv_1", "dv_2", "dv_3", "dv_4"}));
  EXPECT_EQ(device_ids({.tenant_id = "tn_a", .product_id = "pd_printer"}), (V{"dv_3", "dv_4"}));
  EXPECT_EQ(device_ids({.product_type = "speaker"}), (V{"dv_1", "dv_2", "dv_9"}));
  EXPECT_EQ(device_ids({.tenant_id = "tn_a", .product_type = "speaker"}), (V{"dv_1", "dv_2"}));
  EXPECT_EQ(device_ids({.tenant_id = "tn_a", .merchant_id = "mc_1"}), (V{"dv_1", "dv_3"}));
  EXPECT_EQ(device_ids({.tenant_id = "tn_a", .outlet_id = "st_1"}), (V{"dv_1", "dv_3"}));
  EXPECT_EQ(device_ids({.tenant_id = "tn_a", .serial = "AB-002"}), (V{"dv_2"}));
  EXPECT_EQ(device_ids({.tenant_id = "tn_a", .serial_prefix = "AB-"}), (V{"dv_1", "dv_2"}))
      << "prefix match is case-sensitive";
  EXPECT_EQ(device_ids({.serial_prefix = "AB-"}), (V{"dv_1", "dv_2", "dv_9"}));
  EXPECT_EQ(device_ids({.serial_prefix = "A%"}), V{}) << "no LIKE wildcards";
  EXPECT_EQ(device_ids({.tenant_id = "tn_a", .firmware_version = "1.0"}),
            (V{"dv_1", "dv_3", "dv_4"}));
  EXPECT_EQ(device_ids({.tenant_id = "tn_a", .labels = {{"site", "north"}}}), (V{"dv_1", "dv_3"}));
  EXPECT_EQ(device_ids({.tenant_id = "tn_a", .labels = {{"site", "north"}, {"lane", "2"}}}),
            (V{"dv_3"}));
  EXPECT_EQ(device_ids({.tenant_id = "tn_a", .labels = {{"site", "west"}}}), V{});
  EXPECT_EQ(device_ids({.tenant_id = "tn_a", .online = true}), (V{"dv_2", "dv_3"}));
  EXPECT_EQ(device_ids({.tenant_id = "tn_a", .online = false}), (V{"dv_1", "dv_4"}));
  EXPECT_EQ(device_ids({.tenant_id = "tn_a", .disabled = true}), (V{"dv_3"}));
  EXPECT_EQ(device_ids({.tenant_id = "tn_a", .disabled = false}), (V{"dv_1", "dv_2", "dv_4"}));
  // Everything at once narrows to the one row matching all of it.
  EXPECT_EQ(device_ids({.tenant_id = "tn_a",
                        .product_id = "pd_printer",
                        .product_type = "printer",
                        .merchant_id = "mc_1",
                        .outlet_id = "st_1",
                        .serial_prefix = "CD",
                        .firmware_version = "1.0",
                        .labels = {{"lane", "2"}},
                        .online = true,
                        .disabled = true}),
            (V{"dv_3"}));
  EXPECT_EQ(device_ids({.tenant_id = "tn_a", .product_type = "printer", .online = false}),
            (V{"dv_4"}));
  // A filtered listing pages too.
  auto page = store_->list_devices({.tenant_id = "tn_a", .firmware_version = "1.0"}, {"dv_1", 1});
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page.value().items.size(), 1u);
  EXPECT_EQ(page.value().items[0].id, "dv_3");
  EXPECT_TRUE(page.value().more);
}

TEST_P(StoreConformance, BulkCreateCommitsTheBatchAndReportsExactlyTheConflictingRows) {
  add_tenant("tn_a");
  add_tenant("tn_b");
  add_product("tn_a", "pd_a");
  add_product("tn_b", "pd_b");
  add_device("tn_a", "pd_a", "dv_existing", "SN-00042");

  constexpr int kRows = 10000;
  std::vector<Device> batch;
  std::set<size_t> conflicting;
  std::set<size_t> invalid;
  for (int i = 0; i < kRows; ++i) {
    char serial[16];
    std::snprintf(serial, sizeof serial, "SN-%05d", i);
    batch.push_back(device("tn_a", "pd_a", "dv_" + std::to_string(100000 + i), serial));
  }
  conflicting.insert(42);                  // serial taken by dv_existing
  for (size_t i : {500u, 7000u, 9999u}) {  // serial repeated later in the same batch
    batch[i].serial = batch[i - 1].serial;
    conflicting.insert(i);
  }
  batch[1234].id = "dv_existing";  // id taken
  conflicting.insert(1234);
  batch[3000].product_id = "pd_b";  // another tenant's product
  invalid.insert(3000);
  batch[3001].product_id = "pd_missing";
  invalid.insert(3001);

  auto result = store_->create_devices(batch);
  ASSERT_TRUE(result.ok()) << result.status().message;
  const auto& outcomes = result.value();
  ASSERT_EQ(outcomes.size(), batch.size());
  for (size_t i = 0; i < outcomes.size(); ++i) {
    ASSERT_EQ(outcomes[i].index, i);
    const Code expected = conflicting.count(i) ? Code::kConflict
                          : invalid.count(i)   ? Code::kInvalid
                                               : Code::kOk;
    EXPECT_EQ(outcomes[i].status.code, expected)
        << "row " << i << ": " << outcomes[i].status.message;
  }
  EXPECT_EQ(store_->count_devices("tn_a").value(),
            1 + kRows - static_cast<int64_t>(conflicting.size() + invalid.size()));
  // The first of two rows with the same serial is the one kept.
  auto kept = store_->get_device_by_serial("tn_a", "pd_a", batch[499].serial);
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(kept.value().id, batch[499].id);
  EXPECT_TRUE(store_->get_device("tn_a", batch[9998].id).ok());
  EXPECT_EQ(store_->get_device("tn_a", batch[9999].id).status().code, Code::kNotFound);
}

TEST_P(StoreConformance, DeleteProductIsRefusedWhileDevicesReferenceIt) {
  add_tenant("tn_a");
  add_product("tn_a", "pd_a");
  add_device("tn_a", "pd_a", "dv_1", "SN1");
  EXPECT_EQ(store_->delete_product("tn_a", "pd_a").code, Code::kConflict);
  EXPECT_TRUE(store_->get_product("tn_a", "pd_a").ok());
  ASSERT_TRUE(store_->delete_device("tn_a", "dv_1").ok());
  EXPECT_EQ(store_->get_device("tn_a", "dv_1").status().code, Code::kNotFound);
  EXPECT_EQ(store_->delete_device("tn_a", "dv_1").code, Code::kNotFound);
  ASSERT_TRUE(store_->delete_product("tn_a", "pd_a").ok());
  EXPECT_EQ(store_->get_product("tn_a", "pd_a").status().code, Code::kNotFound);
  EXPECT_EQ(store_->delete_product("tn_a", "pd_a").code, Code::kNotFound);
}

TEST_P(StoreConformance, ProductUpdateChangesNameAndCapabilities) {
  add_tenant("tn_a");
  ASSERT_TRUE(
      store_->create_product({"pd_a", "tn_a", "Speaker", "speaker", R"({"tts":true})", 1, 1}).ok());
  ASSERT_TRUE(
      store_->update_product({"pd_a", "tn_a", "Speaker 2", "speaker", R"({"tts":false})", 0, 5})
          .ok());
  auto got = store_->get_product("tn_a", "pd_a");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got.value().name, "Speaker 2");
  EXPECT_EQ(got.value().capabilities_json, R"({"tts":false})");
  EXPECT_EQ(got.value().created_ms, 1);
  EXPECT_EQ(got.value().updated_ms, 5);
  EXPECT_EQ(store_->create_product({"pd_a", "tn_a", "dup", "speaker", "{}", 1, 1}).code,
            Code::kConflict);
}

TEST_P(StoreConformance, CountDevicesCountsPerTenantOrAll) {
  add_tenant("tn_a");
  add_tenant("tn_b");
  add_product("tn_a", "pd_a");
  add_product("tn_b", "pd_b");
  add_device("tn_a", "pd_a", "dv_1", "1");
  add_device("tn_a", "pd_a", "dv_2", "2");
  add_device("tn_b", "pd_b", "dv_3", "3");
  EXPECT_EQ(store_->count_devices("tn_a").value(), 2);
  EXPECT_EQ(store_->count_devices("tn_b").value(), 1);
  EXPECT_EQ(store_->count_devices("").value(), 3);
  EXPECT_EQ(store_->count_devices("tn_none").value(), 0);
}

// ---- API keys ------------------------------------------------------------------------

TEST_P(StoreConformance, ApiKeysKeepBytesTrackUseAndRevokeOnce) {
  add_tenant("tn_a");
  const std::string hash("\x00\x9f\xff\x01", 4);
  const std::string signing("\x00sk", 3);
  ASSERT_TRUE(
      store_->create_api_key({"ak_1", "tn_a", "tenant", "ci", hash, signing, 1, 0, 0}).ok());
  ASSERT_TRUE(store_->create_api_key({"ak_op", "", "admin", "ops", "h", "s", 1, 0, 0}).ok());
  EXPECT_EQ(store_->create_api_key({"ak_1", "tn_a", "tenant", "x", "h", "s", 1, 0, 0}).code,
            Code::kConflict);

  auto key = store_->get_api_key("ak_1");
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(key.value().secret_hash, hash);
  EXPECT_EQ(key.value().signing_key_sealed, signing);
  EXPECT_EQ(key.value().scope, "tenant");
  EXPECT_EQ(store_->get_api_key("ak_op").value().tenant_id, "");

  ASSERT_TRUE(store_->touch_api_key("ak_1", 500).ok());
  ASSERT_TRUE(store_->touch_api_key("ak_1", 400).ok());  // late, older: ignored
  EXPECT_EQ(store_->get_api_key("ak_1").value().last_used_ms, 500);
  EXPECT_EQ(store_->list_api_keys("tn_a", {}).value().items.at(0).last_used_ms, 500);
  EXPECT_TRUE(store_->touch_api_key("ak_missing", 500).ok()) << "best effort";
  EXPECT_EQ(store_->get_api_key("ak_missing").status().code, Code::kNotFound);

  ASSERT_TRUE(store_->revoke_api_key("tn_a", "ak_1", 600).ok());
  ASSERT_TRUE(store_->revoke_api_key("tn_a", "ak_1", 700).ok());
  EXPECT_EQ(store_->get_api_key("ak_1").value().revoked_ms, 600);
  EXPECT_EQ(store_->revoke_api_key("tn_a", "ak_missing", 600).code, Code::kNotFound);

  auto listed = store_->list_api_keys("tn_a", {});
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed.value().items.size(), 1u);
  EXPECT_EQ(listed.value().items[0].id, "ak_1");
}

// ---- Presence ------------------------------------------------------------------------

TEST_P(StoreConformance, RecordPresenceUpdatesTheDeviceAndAppendsHistory) {
  add_tenant("tn_a");
  add_product("tn_a", "pd_a");
  add_device("tn_a", "pd_a", "dv_1", "SN1");
  ASSERT_TRUE(store_->record_presence(event("dv_1", true, 1000)).ok());
  auto d = store_->get_device("tn_a", "dv_1");
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d.value().presence.online);
  EXPECT_EQ(d.value().presence.since_ms, 1000);
  EXPECT_EQ(d.value().presence.remote_address, "10.0.0.1:5000");
  EXPECT_EQ(d.value().presence.protocol_version, "5.0");
  EXPECT_EQ(d.value().presence.gateway_node, "node-a");
  EXPECT_EQ(d.value().last_seen_ms, 1000);

  ASSERT_TRUE(store_->record_presence(event("dv_1", true, 1500, "node-b")).ok());
  d = store_->get_device("tn_a", "dv_1");
  EXPECT_EQ(d.value().presence.since_ms, 1000) << "still online since the first connect";
  EXPECT_EQ(d.value().presence.gateway_node, "node-b");
  ASSERT_TRUE(store_->record_presence(event("dv_1", false, 2000, "node-b")).ok());
  d = store_->get_device("tn_a", "dv_1");
  EXPECT_FALSE(d.value().presence.online);
  EXPECT_EQ(d.value().presence.since_ms, 2000);
  EXPECT_EQ(d.value().last_seen_ms, 2000);

  EXPECT_EQ(store_->record_presence(event("dv_missing", true, 1)).code, Code::kNotFound);
  EXPECT_EQ(store_->record_presence(event("dv_missing", false, 1)).code, Code::kNotFound);
  auto history = store_->list_presence("", "dv_1", {});
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history.value().items.size(), 3u);
  EXPECT_FALSE(history.value().items[0].online);
  EXPECT_EQ(history.value().items[0].reason, "client_closed");
  EXPECT_EQ(history.value().items[0].at_ms, 2000);
  EXPECT_EQ(history.value().items[2].at_ms, 1000);
}

TEST_P(StoreConformance, ApiKeySigningKeyIsReplacedAndUnknownKeysAreNotFound) {
  add_tenant("tn_a");
  ApiKey key;
  key.id = "ak_1";
  key.tenant_id = "tn_a";
  key.scope = "tenant";
  key.name = "k";
  key.secret_hash = std::string("\x01\x00\x02", 3);
  key.signing_key_sealed = std::string("old\x00sealed", 10);
  key.created_ms = 1;
  ASSERT_TRUE(store_->create_api_key(key).ok());
  const std::string resealed("new\x00sealed\xff", 11);
  ASSERT_TRUE(store_->set_api_key_signing_key("ak_1", resealed).ok());
  auto read = store_->get_api_key("ak_1");
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read.value().signing_key_sealed, resealed);
  EXPECT_EQ(read.value().secret_hash, key.secret_hash);
  EXPECT_EQ(store_->set_api_key_signing_key("ak_missing", resealed).code, Code::kNotFound);
}

TEST_P(StoreConformance, LateOfflineFromAnotherNodeDoesNotTakeAMovedDeviceOffline) {
  add_tenant("tn_a");
  add_product("tn_a", "pd_a");
  add_device("tn_a", "pd_a", "dv_1", "SN1");
  ASSERT_TRUE(store_->record_presence(event("dv_1", true, 1000, "node-a")).ok());
  // The device reconnects through node B before node A reports the old
  // connection's end.
  ASSERT_TRUE(store_->record_presence(event("dv_1", true, 1100, "node-b")).ok());
  ASSERT_TRUE(store_->record_presence(event("dv_1", false, 1200, "node-a")).ok());
  auto d = store_->get_device("tn_a", "dv_1");
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d.value().presence.online);
  EXPECT_EQ(d.value().presence.gateway_node, "node-b");
  // The history still shows what happened at node A.
  auto history = store_->list_presence("", "dv_1", {});
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history.value().items.size(), 3u);
  EXPECT_FALSE(history.value().items[0].online);
  EXPECT_EQ(history.value().items[0].gateway_node, "node-a");
  // Node B's own disconnect does take it offline.
  ASSERT_TRUE(store_->record_presence(event("dv_1", false, 1300, "node-b")).ok());
  EXPECT_FALSE(store_->get_device("tn_a", "dv_1").value().presence.online);
}

TEST_P(StoreConformance, PresenceHistoryIsNewestFirstAndPagedBySeq) {
  add_tenant("tn_a");
  add_product("tn_a", "pd_a");
  add_device("tn_a", "pd_a", "dv_1", "SN1");
  add_device("tn_a", "pd_a", "dv_2", "SN2");
  for (int i = 1; i <= 5; ++i) {
    ASSERT_TRUE(store_->record_presence(event("dv_1", i % 2 == 1, i * 100)).ok());
    ASSERT_TRUE(store_->record_presence(event("dv_2", true, i * 100 + 1)).ok());
  }
  std::vector<TimeMs> times;
  int64_t last_seq = INT64_MAX;
  Page page{"", 2};
  std::vector<bool> more;
  for (int guard = 0; guard < 10; ++guard) {
    auto listing = store_->list_presence("tn_a", "dv_1", page);
    ASSERT_TRUE(listing.ok()) << listing.status().message;
    for (const auto& e : listing.value().items) {
      EXPECT_LT(e.seq, last_seq);
      EXPECT_EQ(e.device_id, "dv_1");
      last_seq = e.seq;
      times.push_back(e.at_ms);
    }
    more.push_back(listing.value().more);
    if (!listing.value().more) break;
    page.after_id = std::to_string(listing.value().items.back().seq);
  }
  EXPECT_EQ(times, (std::vector<TimeMs>{500, 400, 300, 200, 100}));
  EXPECT_EQ(more, (std::vector<bool>{true, true, false}));
  EXPECT_EQ(store_->list_presence("tn_a", "dv_1", {"not-a-seq", 2}).status().code, Code::kInvalid);
  EXPECT_EQ(store_->list_presence("tn_a", "dv_missing", {}).status().code, Code::kNotFound);
}

TEST_P(StoreConformance, ResetPresenceTakesOnlyThatNodesDevicesOffline) {
  add_tenant("tn_a");
  add_product("tn_a", "pd_a");
  for (const char* id : {"dv_1", "dv_2", "dv_3", "dv_4"})
    add_device("tn_a", "pd_a", id, id);
  ASSERT_TRUE(store_->record_presence(event("dv_1", true, 100, "node-a")).ok());
  ASSERT_TRUE(store_->record_presence(event("dv_2", true, 100, "node-a")).ok());
  ASSERT_TRUE(store_->record_presence(event("dv_3", true, 100, "node-b")).ok());
  ASSERT_TRUE(store_->record_presence(event("dv_4", true, 100, "node-a")).ok());
  ASSERT_TRUE(store_->record_presence(event("dv_4", false, 150, "node-a")).ok());

  ASSERT_TRUE(store_->reset_presence("node-a", 900).ok());
  for (const char* id : {"dv_1", "dv_2"}) {
    auto d = store_->get_device("tn_a", id);
    ASSERT_TRUE(d.ok());
    EXPECT_FALSE(d.value().presence.online) << id;
    EXPECT_EQ(d.value().presence.since_ms, 900) << id;
    auto history = store_->list_presence("tn_a", id, {"", 1});
    ASSERT_TRUE(history.ok());
    ASSERT_EQ(history.value().items.size(), 1u);
    EXPECT_FALSE(history.value().items[0].online);
    EXPECT_EQ(history.value().items[0].at_ms, 900);
    EXPECT_EQ(history.value().items[0].reason, "gateway_reset");
  }
  EXPECT_TRUE(store_->get_device("tn_a", "dv_3").value().presence.online);
  EXPECT_EQ(store_->get_device("tn_a", "dv_4").value().presence.since_ms, 150)
      << "already offline: untouched";
}

TEST_P(StoreConformance, DeletingADeviceDeletesItsHistory) {
  add_tenant("tn_a");
  add_product("tn_a", "pd_a");
  add_device("tn_a", "pd_a", "dv_1", "SN1");
  ASSERT_TRUE(store_->record_presence(event("dv_1", true, 100)).ok());
  ASSERT_TRUE(store_->delete_device("tn_a", "dv_1").ok());
  add_device("tn_a", "pd_a", "dv_1", "SN1");  // same id again: a new device
  auto history = store_->list_presence("tn_a", "dv_1", {});
  ASSERT_TRUE(history.ok());
  EXPECT_TRUE(history.value().items.empty());
}

// ---- Idempotency -----------------------------------------------------------------------

TEST_P(StoreConformance, BeginIdempotentReturnsTheFirstCallsRecord) {
  IdempotencyRecord first{"tn_a", "key-1", "hash-1", false, 0, "", 100};
  auto begun = store_->begin_idempotent(first);
  ASSERT_TRUE(begun.ok());
  EXPECT_FALSE(begun.value().has_value()) << "the first caller proceeds";

  auto retry = store_->begin_idempotent({"tn_a", "key-1", "hash-2", false, 0, "", 200});
  ASSERT_TRUE(retry.ok());
  ASSERT_TRUE(retry.value().has_value());
  EXPECT_FALSE(retry.value()->completed);
  EXPECT_EQ(retry.value()->request_hash, "hash-1") << "the stored record, unchanged";
  EXPECT_EQ(retry.value()->created_ms, 100);

  ASSERT_TRUE(store_->complete_idempotent("tn_a", "key-1", 201, R"({"id":"dv_1"})").ok());
  retry = store_->begin_idempotent(first);
  ASSERT_TRUE(retry.ok());
  ASSERT_TRUE(retry.value().has_value());
  EXPECT_TRUE(retry.value()->completed);
  EXPECT_EQ(retry.value()->http_status, 201);
  EXPECT_EQ(retry.value()->response_body, R"({"id":"dv_1"})");
  EXPECT_EQ(store_->abandon_idempotent("tn_a", "key-1").code, Code::kNotFound)
      << "a completed answer is kept";

  // Same key in another scope is another record.
  EXPECT_FALSE(store_->begin_idempotent({"tn_b", "key-1", "h", false, 0, "", 100}).value());
  ASSERT_TRUE(store_->abandon_idempotent("tn_b", "key-1").ok());
  EXPECT_FALSE(store_->begin_idempotent({"tn_b", "key-1", "h", false, 0, "", 300}).value())
      << "an abandoned key starts over";
  EXPECT_EQ(store_->complete_idempotent("tn_c", "nope", 200, "{}").code, Code::kNotFound);
}

TEST_P(StoreConformance, ExpireIdempotentDeletesOnlyOlderRecords) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(
        store_->begin_idempotent({"s", "k" + std::to_string(i), "h", false, 0, "", i * 10}).ok());
  }
  auto expired = store_->expire_idempotent(25);
  ASSERT_TRUE(expired.ok());
  EXPECT_EQ(expired.value(), 3);
  EXPECT_FALSE(store_->begin_idempotent({"s", "k0", "h", false, 0, "", 99}).value().has_value());
  EXPECT_TRUE(store_->begin_idempotent({"s", "k3", "h", false, 0, "", 99}).value().has_value());
}

TEST_P(StoreConformance, ConcurrentBeginIdempotentWithOneKeyHasExactlyOneWinner) {
  constexpr int kThreads = 8;
  for (int round = 0; round < 5; ++round) {
    std::atomic<int> winners{0};
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    const std::string key = "race-" + std::to_string(round);
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        auto result = store_->begin_idempotent({"tn_a", key, "h", false, 0, "", 1});
        if (!result.ok()) {
          ++failures;
        } else if (!result.value().has_value()) {
          ++winners;
        }
      });
    }
    for (auto& t : threads)
      t.join();
    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(winners.load(), 1) << "round " << round;
  }
}

// ---- Concurrency -------------------------------------------------------------------------

TEST_P(StoreConformance, ConcurrentWritersAndReadersAllSucceed) {
  add_tenant("tn_a");
  add_product("tn_a", "pd_a");
  constexpr int kWriters = 4;
  constexpr int kPerWriter = 50;
  std::atomic<int> errors{0};
  std::atomic<bool> writing{true};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < kPerWriter; ++i) {
        const std::string id = "dv_" + std::to_string(w) + "_" + std::to_string(i);
        if (!store_->create_device(device("tn_a", "pd_a", id, id)).ok()) ++errors;
        if (!store_->record_presence(event(id, true, i)).ok()) ++errors;
      }
    });
  }
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&] {
      int64_t last = 0;
      while (writing) {
        auto count = store_->count_devices("tn_a");
        auto listing = store_->list_devices({.tenant_id = "tn_a", .online = true}, {"", 20});
        if (!count.ok() || !listing.ok()) {
          ++errors;
          continue;
        }
        if (count.value() < last) ++errors;  // committed rows never disappear
        last = count.value();
      }
    });
  }
  for (auto& t : threads)
    t.join();
  writing = false;
  for (auto& t : readers)
    t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(store_->count_devices("tn_a").value(), kWriters * kPerWriter);
  auto online = store_->list_devices({.tenant_id = "tn_a", .online = true}, {"", 1000});
  ASSERT_TRUE(online.ok());
  EXPECT_EQ(online.value().items.size(), static_cast<size_t>(kWriters * kPerWriter));
}

INSTANTIATE_TEST_SUITE_P(Adapters, StoreConformance,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres), backend_name);

}  // namespace
}  // namespace counterlink::store
