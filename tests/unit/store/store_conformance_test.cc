// One conformance suite for every Store adapter: each TEST_P runs against
// SQLite (a file in a temp dir) and PostgreSQL (a fresh database on the
// throwaway server of postgres_test_server.h). A behaviour the API relies on
// is written here once, so the adapters cannot drift apart.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

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
  EXPECT_EQ(store_->schema_version(), 2);
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
  EXPECT_EQ(store_->schema_version(), 2);
  const auto rows = raw("SELECT COUNT(*), MAX(version) FROM schema_migrations");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0][0], "2");
  EXPECT_EQ(rows[0][1], "2");
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

// ---- Commands and the event log ----------------------------------------------------

Command command(const std::string& tenant, const std::string& device, const std::string& id,
                const std::string& dedup_key = "", TimeMs at = 100) {
  Command c;
  c.id = id;
  c.tenant_id = tenant;
  c.device_id = device;
  c.type = "broadcast";
  c.state = "queued";
  c.dedup_key = dedup_key;
  c.payload_json = R"({"amount_fen":1250,"text":"收款12.50元"})";
  c.request_json = R"({"device_id":")" + device + R"(","amount_fen":1250})";
  c.created_ms = c.updated_ms = at;
  c.request_id = "req-" + id;
  return c;
}

Write create_write(const Command& c, const std::string& event_type = "broadcast.queued") {
  Write w;
  w.kind = Write::Kind::kCreateCommand;
  w.command = c;
  w.event.type = event_type;
  w.event.data_json = R"({"id":")" + c.id + R"("})";
  return w;
}

Write transition_write(const std::string& id, std::vector<std::string> from, const std::string& to,
                       TimeMs at, const std::string& event_type = "") {
  Write w;
  w.kind = Write::Kind::kTransition;
  w.transition.command_id = id;
  w.transition.from_states = std::move(from);
  w.transition.to_state = to;
  w.transition.at_ms = at;
  w.event.type = event_type;
  return w;
}

Write append_write(const std::string& tenant, const std::string& type, const std::string& subject,
                   TimeMs at) {
  Write w;
  w.kind = Write::Kind::kAppendEvent;
  w.event.tenant_id = tenant;
  w.event.type = type;
  w.event.subject_id = subject;
  w.event.at_ms = at;
  w.event.data_json = R"({"subject":")" + subject + R"("})";
  return w;
}

std::vector<int64_t> seqs_of(const std::vector<Event>& events) {
  std::vector<int64_t> seqs;
  for (const auto& e : events)
    seqs.push_back(e.seq);
  return seqs;
}

std::vector<std::string> types_of(const std::vector<Event>& events) {
  std::vector<std::string> types;
  for (const auto& e : events)
    types.push_back(e.type);
  return types;
}

template <typename T>
std::vector<std::string> ids_of(const std::vector<T>& items) {
  std::vector<std::string> ids;
  for (const auto& item : items)
    ids.push_back(item.id);
  return ids;
}

class CommandStore : public StoreConformance {
 protected:
  std::vector<WriteOutcome> apply(const std::vector<Write>& writes) {
    auto result = store_->apply_writes(writes);
    EXPECT_TRUE(result.ok()) << result.status().message;
    if (!result.ok()) return std::vector<WriteOutcome>(writes.size());
    EXPECT_EQ(result.value().size(), writes.size());
    return result.value();
  }
  std::vector<Event> all_events(const std::string& tenant = "") {
    auto events = store_->list_events(tenant, 0, 1000);
    EXPECT_TRUE(events.ok()) << events.status().message;
    return events.ok() ? events.value() : std::vector<Event>{};
  }
  std::vector<std::string> command_ids(const CommandFilter& filter, Page page = {"", 100}) {
    auto listing = store_->list_commands(filter, page);
    EXPECT_TRUE(listing.ok()) << listing.status().message;
    return listing.ok() ? ids_of(listing.value().items) : std::vector<std::string>{};
  }
};

TEST_P(CommandStore, CreateAssignsIncreasingSeqsAndAppendsTheEventsAtomically) {
  auto c1 = command("tn_a", "dv_1", "cm_1", "order-1");
  c1.expires_at_ms = 5000;
  auto outcomes = apply({create_write(c1), create_write(command("tn_a", "dv_1", "cm_2")),
                         create_write(command("tn_a", "dv_2", "cm_3"), "")});
  ASSERT_EQ(outcomes.size(), 3u);
  for (const auto& o : outcomes) {
    EXPECT_EQ(o.code, Code::kOk);
    EXPECT_EQ(o.state, "queued");
    EXPECT_TRUE(o.existing_id.empty());
  }
  EXPECT_GT(outcomes[0].command_seq, 0);
  EXPECT_GT(outcomes[1].command_seq, outcomes[0].command_seq);
  EXPECT_GT(outcomes[2].command_seq, outcomes[1].command_seq);
  EXPECT_GT(outcomes[0].event_seq, 0);
  EXPECT_GT(outcomes[1].event_seq, outcomes[0].event_seq);
  EXPECT_EQ(outcomes[2].event_seq, 0) << "no event type, no event";

  reopen();  // durable, not just cached

  auto got = store_->get_command("tn_a", "cm_1");
  ASSERT_TRUE(got.ok()) << got.status().message;
  const Command& g = got.value();
  EXPECT_EQ(g.tenant_id, "tn_a");
  EXPECT_EQ(g.device_id, "dv_1");
  EXPECT_EQ(g.type, "broadcast");
  EXPECT_EQ(g.state, "queued");
  EXPECT_EQ(g.dedup_key, "order-1");
  EXPECT_EQ(g.payload_json, c1.payload_json);
  EXPECT_EQ(g.request_json, c1.request_json);
  EXPECT_EQ(g.seq, outcomes[0].command_seq);
  EXPECT_EQ(g.created_ms, 100);
  EXPECT_EQ(g.updated_ms, 100);
  EXPECT_EQ(g.expires_at_ms, 5000);
  EXPECT_EQ(g.request_id, "req-cm_1");
  EXPECT_EQ(store_->get_command("tn_a", "cm_2").value().dedup_key, "");

  // The event took the command's tenant, id and device.
  auto history = store_->subject_events("tn_a", "cm_1");
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history.value().size(), 1u);
  const Event& e = history.value()[0];
  EXPECT_EQ(e.seq, outcomes[0].event_seq);
  EXPECT_EQ(e.tenant_id, "tn_a");
  EXPECT_EQ(e.type, "broadcast.queued");
  EXPECT_EQ(e.subject_id, "cm_1");
  EXPECT_EQ(e.device_id, "dv_1");
  EXPECT_EQ(e.at_ms, 100);
  EXPECT_EQ(e.data_json, R"({"id":"cm_1"})");
  EXPECT_EQ(seqs_of(all_events()),
            (std::vector<int64_t>{outcomes[0].event_seq, outcomes[1].event_seq}));
}

TEST_P(CommandStore, TakenDedupKeyOrIdIsAConflictNamingTheHolderWithoutAnEvent) {
  auto first = apply({create_write(command("tn_a", "dv_1", "cm_1", "order-1"))});
  ASSERT_EQ(first[0].code, Code::kOk);
  apply({transition_write("cm_1", {"queued"}, "sent", 150)});

  auto again = apply({
      create_write(command("tn_a", "dv_1", "cm_2", "order-1")),  // same device and key
      create_write(command("tn_a", "dv_2", "cm_3", "order-1")),  // other device: free
      create_write(command("tn_a", "dv_1", "cm_1", "order-9")),  // taken id
      create_write(command("tn_a", "dv_1", "cm_4")),             // empty keys never clash
      create_write(command("tn_a", "dv_1", "cm_5")),
  });
  EXPECT_EQ(again[0].code, Code::kConflict);
  EXPECT_EQ(again[0].existing_id, "cm_1");
  EXPECT_EQ(again[0].state, "sent");
  EXPECT_EQ(again[0].command_seq, first[0].command_seq);
  EXPECT_EQ(again[0].event_seq, 0);
  EXPECT_EQ(again[1].code, Code::kOk);
  EXPECT_EQ(again[2].code, Code::kConflict);
  EXPECT_EQ(again[2].existing_id, "cm_1");
  EXPECT_EQ(again[3].code, Code::kOk);
  EXPECT_EQ(again[4].code, Code::kOk);

  EXPECT_EQ(store_->get_command("tn_a", "cm_2").status().code, Code::kNotFound);
  EXPECT_EQ(store_->get_command("tn_a", "cm_1").value().dedup_key, "order-1");
  EXPECT_TRUE(store_->subject_events("tn_a", "cm_2").value().empty());
  // cm_1's create, cm_3, cm_4, cm_5: the refused writes appended nothing.
  EXPECT_EQ(all_events().size(), 4u);
}

TEST_P(CommandStore, BatchWithMixedOutcomesCommitsExactlyTheWritesThatApply) {
  apply({create_write(command("tn_a", "dv_1", "cm_old", "k"))});
  Write bad_text = create_write(command("tn_a", "dv_1", "cm_bad"));
  bad_text.command.payload_json = std::string("{\"x\":\"\xff\xfe\"}");
  Write no_type = append_write("tn_a", "", "x", 5);
  Write bad_event = create_write(command("tn_a", "dv_1", "cm_bad_event"));
  bad_event.event.data_json = std::string("{\"nul\":\"a\0b\"}", 14);

  auto outcomes = apply({
      create_write(command("tn_a", "dv_1", "cm_1")),
      create_write(command("tn_a", "dv_1", "cm_dup", "k")),
      transition_write("cm_missing", {}, "sent", 200, "broadcast.sent"),
      bad_text,
      transition_write("cm_1", {"queued"}, "sent", 200, "broadcast.sent"),
      no_type,
      bad_event,
      append_write("tn_a", "scan.received", "sc_1", 210),
      create_write(command("tn_a", "dv_1", "cm_2")),
  });
  EXPECT_EQ(outcomes[0].code, Code::kOk);
  EXPECT_EQ(outcomes[1].code, Code::kConflict);
  EXPECT_EQ(outcomes[2].code, Code::kNotFound);
  EXPECT_EQ(outcomes[3].code, Code::kInvalid);
  EXPECT_EQ(outcomes[4].code, Code::kOk);
  EXPECT_EQ(outcomes[5].code, Code::kInvalid);
  EXPECT_EQ(outcomes[6].code, Code::kInvalid);
  EXPECT_EQ(outcomes[7].code, Code::kOk);
  EXPECT_EQ(outcomes[8].code, Code::kOk);
  for (size_t i : {1u, 2u, 3u, 5u, 6u})
    EXPECT_EQ(outcomes[i].event_seq, 0) << "write " << i;
  // Events of the applied writes, in write order.
  EXPECT_LT(outcomes[0].event_seq, outcomes[4].event_seq);
  EXPECT_LT(outcomes[4].event_seq, outcomes[7].event_seq);
  EXPECT_LT(outcomes[7].event_seq, outcomes[8].event_seq);

  EXPECT_EQ(store_->get_command("tn_a", "cm_1").value().state, "sent");
  EXPECT_TRUE(store_->get_command("tn_a", "cm_2").ok());
  EXPECT_EQ(store_->get_command("tn_a", "cm_bad").status().code, Code::kNotFound);
  EXPECT_EQ(store_->get_command("tn_a", "cm_bad_event").status().code, Code::kNotFound);
  EXPECT_EQ(types_of(all_events()),
            (std::vector<std::string>{"broadcast.queued", "broadcast.queued", "broadcast.sent",
                                      "scan.received", "broadcast.queued"}));
  auto appended = store_->get_event("tn_a", outcomes[7].event_seq);
  ASSERT_TRUE(appended.ok());
  EXPECT_EQ(appended.value().subject_id, "sc_1");
  EXPECT_EQ(appended.value().at_ms, 210);
  EXPECT_EQ(appended.value().data_json, R"({"subject":"sc_1"})");
}

TEST_P(CommandStore, WritesInOneBatchSeeTheWritesBeforeThem) {
  Write odd_states =
      transition_write("cm_1", {"sent", "a,b \"quoted\""}, "delivered", 220, "broadcast.delivered");
  auto outcomes = apply({
      transition_write("cm_1", {}, "sent", 150),  // before its create: unknown
      create_write(command("tn_a", "dv_1", "cm_1", "k1")),
      append_write("tn_a", "note", "cm_1", 160),
      create_write(command("tn_a", "dv_1", "cm_2", "k1")),  // k1 taken a write ago
      create_write(command("tn_a", "dv_1", "cm_1", "k2")),  // id taken a write ago
      transition_write("cm_1", {"queued"}, "sent", 200, "broadcast.sent"),
      transition_write("cm_1", {"queued"}, "sent", 210, "broadcast.sent"),  // sees "sent"
      odd_states, transition_write("cm_1", {}, "played", 230, "broadcast.played"),
      create_write(command("tn_a", "dv_1", "cm_3", "k2")),  // k2 is free: cm_1 holds k1
  });
  EXPECT_EQ(outcomes[0].code, Code::kNotFound);
  EXPECT_EQ(outcomes[1].code, Code::kOk);
  EXPECT_EQ(outcomes[2].code, Code::kOk);
  EXPECT_EQ(outcomes[3].code, Code::kConflict);
  EXPECT_EQ(outcomes[3].existing_id, "cm_1");
  EXPECT_EQ(outcomes[3].state, "queued");
  EXPECT_EQ(outcomes[4].code, Code::kConflict);
  EXPECT_EQ(outcomes[4].existing_id, "cm_1");
  EXPECT_EQ(outcomes[5].code, Code::kOk);
  EXPECT_EQ(outcomes[6].code, Code::kConflict);
  EXPECT_EQ(outcomes[6].state, "sent");
  EXPECT_EQ(outcomes[7].code, Code::kOk);
  EXPECT_EQ(outcomes[7].state, "delivered");
  EXPECT_EQ(outcomes[8].code, Code::kOk);
  EXPECT_EQ(outcomes[8].state, "played");
  EXPECT_EQ(outcomes[9].code, Code::kOk);
  EXPECT_GT(outcomes[9].command_seq, outcomes[1].command_seq);

  auto history = store_->subject_events("tn_a", "cm_1");
  ASSERT_TRUE(history.ok());
  EXPECT_EQ(types_of(history.value()),
            (std::vector<std::string>{"broadcast.queued", "note", "broadcast.sent",
                                      "broadcast.delivered", "broadcast.played"}));
  EXPECT_EQ(
      seqs_of(history.value()),
      (std::vector<int64_t>{outcomes[1].event_seq, outcomes[2].event_seq, outcomes[5].event_seq,
                            outcomes[7].event_seq, outcomes[8].event_seq}));
  EXPECT_EQ(store_->get_command("tn_a", "cm_1").value().updated_ms, 230);
}

TEST_P(CommandStore, LargeBatchesKeepWriteOrderInEverySeq) {
  constexpr int kCommands = 700;  // more than one multi-row statement
  constexpr int kKeys = 650;      // the last 50 creates reuse a key (and its device)
  std::vector<Write> batch;
  for (int n = 0; n < kCommands; ++n) {
    const int key = n % kKeys;
    batch.push_back(
        create_write(command("tn_a", "dv_" + std::to_string(key % 7), "cm_" + std::to_string(n),
                             "order-" + std::to_string(key))));
  }
  for (int n = 0; n < kCommands; ++n) {
    Write w = transition_write("cm_" + std::to_string(n), {"queued"}, "sent", 300 + n,
                               n % 2 == 0 ? "broadcast.sent" : "");
    w.transition.attempts_delta = 1;
    batch.push_back(w);
  }
  auto outcomes = apply(batch);
  int64_t last_command_seq = 0;
  int64_t last_event_seq = 0;
  for (int n = 0; n < kKeys; ++n) {
    const auto& o = outcomes[n];
    ASSERT_EQ(o.code, Code::kOk) << n;
    EXPECT_GT(o.command_seq, last_command_seq) << n;
    EXPECT_GT(o.event_seq, last_event_seq) << n;
    last_command_seq = o.command_seq;
    last_event_seq = o.event_seq;
  }
  for (int n = kKeys; n < kCommands; ++n) {
    const auto& o = outcomes[n];
    EXPECT_EQ(o.code, Code::kConflict) << n;
    EXPECT_EQ(o.existing_id, "cm_" + std::to_string(n - kKeys)) << n;
    EXPECT_EQ(o.command_seq, outcomes[n - kKeys].command_seq) << n;
    EXPECT_EQ(o.event_seq, 0) << n;
  }
  for (int n = 0; n < kCommands; ++n) {
    const auto& o = outcomes[kCommands + n];
    if (n >= kKeys) {
      EXPECT_EQ(o.code, Code::kNotFound) << n;
      continue;
    }
    ASSERT_EQ(o.code, Code::kOk) << n;
    EXPECT_EQ(o.state, "sent");
    EXPECT_EQ(o.command_seq, outcomes[n].command_seq);
    if (n % 2 == 0) {
      EXPECT_GT(o.event_seq, last_event_seq) << n;
      last_event_seq = o.event_seq;
    } else {
      EXPECT_EQ(o.event_seq, 0) << n;
    }
  }
  auto c = store_->get_command("tn_a", "cm_649");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c.value().state, "sent");
  EXPECT_EQ(c.value().attempts, 1);
  EXPECT_EQ(c.value().updated_ms, 949);
  EXPECT_EQ(store_->count_pending_commands("dv_0").value(), (kKeys + 6) / 7);
  EXPECT_EQ(all_events().size(), static_cast<size_t>(kKeys + kKeys / 2));
}

TEST_P(CommandStore, TransitionAppliesOnlyFromTheListedOrNonFinalStates) {
  apply({create_write(command("tn_a", "dv_1", "cm_1"))});
  Write sent = transition_write("cm_1", {"queued"}, "sent", 200, "broadcast.sent");
  sent.transition.attempts_delta = 1;
  sent.transition.code = "first_try";
  sent.transition.detail = "handed to the device";
  auto first = apply({sent});
  EXPECT_EQ(first[0].code, Code::kOk);
  EXPECT_EQ(first[0].state, "sent");
  EXPECT_GT(first[0].event_seq, 0);

  auto twice = apply({sent});
  EXPECT_EQ(twice[0].code, Code::kConflict);
  EXPECT_EQ(twice[0].state, "sent") << "the current state";
  EXPECT_EQ(twice[0].event_seq, 0);

  auto c = store_->get_command("tn_a", "cm_1").value();
  EXPECT_EQ(c.state, "sent");
  EXPECT_EQ(c.attempts, 1) << "the refused second transition added nothing";
  EXPECT_EQ(c.code, "first_try");
  EXPECT_EQ(c.detail, "handed to the device");
  EXPECT_EQ(c.updated_ms, 200);
  EXPECT_EQ(c.created_ms, 100);

  // Empty from_states: any non-final state. code "" clears the code.
  Write resent = transition_write("cm_1", {}, "delivered", 300);
  resent.transition.attempts_delta = 2;
  EXPECT_EQ(apply({resent})[0].code, Code::kOk);
  EXPECT_EQ(apply({transition_write("cm_1", {}, "played", 400, "broadcast.played")})[0].code,
            Code::kOk);
  auto late = apply({transition_write("cm_1", {}, "failed", 500, "broadcast.failed")});
  EXPECT_EQ(late[0].code, Code::kConflict);
  EXPECT_EQ(late[0].state, "played");
  c = store_->get_command("tn_a", "cm_1").value();
  EXPECT_EQ(c.state, "played");
  EXPECT_EQ(c.attempts, 3);
  EXPECT_EQ(c.code, "");
  EXPECT_EQ(c.updated_ms, 400);

  // Explicit from_states may include final ones (the engine decides).
  EXPECT_EQ(apply({transition_write("cm_1", {"played", "shown"}, "cancelled", 600)})[0].code,
            Code::kOk);
  EXPECT_EQ(apply({transition_write("cm_nope", {"queued"}, "sent", 1)})[0].code, Code::kNotFound);

  auto history = store_->subject_events("tn_a", "cm_1");
  ASSERT_TRUE(history.ok());
  EXPECT_EQ(types_of(history.value()),
            (std::vector<std::string>{"broadcast.queued", "broadcast.sent", "broadcast.played"}));
  EXPECT_EQ(history.value()[1].device_id, "dv_1");
  EXPECT_EQ(history.value()[1].tenant_id, "tn_a");
  EXPECT_EQ(history.value()[1].at_ms, 200);
  EXPECT_EQ(history.value()[1].data_json, "{}");
}

TEST_P(CommandStore, ListCommandsFiltersAndPagesInSeqOrder) {
  Command print = command("tn_a", "dv_2", "cm_b");
  print.type = "print";
  apply({create_write(command("tn_a", "dv_1", "cm_c")), create_write(print),
         create_write(command("tn_a", "dv_1", "cm_a")),
         create_write(command("tn_b", "dv_9", "cm_other"))});
  apply({transition_write("cm_a", {}, "played", 200)});

  // Seq order, not id order.
  EXPECT_EQ(command_ids({.tenant_id = "tn_a"}), (std::vector<std::string>{"cm_c", "cm_b", "cm_a"}));
  EXPECT_EQ(command_ids({}), (std::vector<std::string>{"cm_c", "cm_b", "cm_a", "cm_other"}));
  EXPECT_EQ(command_ids({.tenant_id = "tn_a", .device_id = "dv_1"}),
            (std::vector<std::string>{"cm_c", "cm_a"}));
  EXPECT_EQ(command_ids({.tenant_id = "tn_a", .type = "print"}),
            (std::vector<std::string>{"cm_b"}));
  EXPECT_EQ(command_ids({.tenant_id = "tn_a", .states = {"played", "failed"}}),
            (std::vector<std::string>{"cm_a"}));
  EXPECT_EQ(command_ids({.tenant_id = "tn_a", .device_id = "dv_1", .states = {"queued"}}),
            (std::vector<std::string>{"cm_c"}));
  EXPECT_TRUE(command_ids({.tenant_id = "tn_b", .device_id = "dv_1"}).empty());

  auto page = store_->list_commands({.tenant_id = "tn_a"}, {"", 2});
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(ids_of(page.value().items), (std::vector<std::string>{"cm_c", "cm_b"}));
  EXPECT_TRUE(page.value().more);
  auto next = store_->list_commands({.tenant_id = "tn_a"},
                                    {std::to_string(page.value().items.back().seq), 2});
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(ids_of(next.value().items), (std::vector<std::string>{"cm_a"}));
  EXPECT_FALSE(next.value().more);
  EXPECT_EQ(store_->list_commands({}, {"cm_a", 2}).status().code, Code::kInvalid);

  // Another tenant's command is not found.
  EXPECT_EQ(store_->get_command("tn_b", "cm_a").status().code, Code::kNotFound);
  EXPECT_TRUE(store_->get_command("", "cm_a").ok()) << "empty tenant = any";
}

TEST_P(CommandStore, PendingCommandsAreTheNonFinalOnesOldestFirst) {
  std::vector<Write> creates;
  for (const char* id : {"cm_5", "cm_4", "cm_3", "cm_2", "cm_1", "cm_0"})
    creates.push_back(create_write(command("tn_a", "dv_1", id)));
  creates.push_back(create_write(command("tn_a", "dv_2", "cm_elsewhere")));
  apply(creates);
  apply({transition_write("cm_4", {}, "sent", 200), transition_write("cm_3", {}, "waiting", 200),
         transition_write("cm_2", {}, "printed", 200),
         transition_write("cm_1", {}, "cancelled", 200),
         transition_write("cm_0", {}, "delivered", 200)});

  auto pending = store_->pending_commands("dv_1", 10);
  ASSERT_TRUE(pending.ok());
  EXPECT_EQ(ids_of(pending.value()), (std::vector<std::string>{"cm_5", "cm_4", "cm_3", "cm_0"}));
  EXPECT_EQ(pending.value()[1].state, "sent");
  auto first_two = store_->pending_commands("dv_1", 2);
  ASSERT_TRUE(first_two.ok());
  EXPECT_EQ(ids_of(first_two.value()), (std::vector<std::string>{"cm_5", "cm_4"}));
  EXPECT_EQ(store_->count_pending_commands("dv_1").value(), 4);
  EXPECT_EQ(store_->count_pending_commands("dv_2").value(), 1);
  EXPECT_EQ(store_->count_pending_commands("dv_none").value(), 0);
  EXPECT_TRUE(store_->pending_commands("dv_none", 10).value().empty());
}

TEST_P(CommandStore, ExpiredCommandsAreNonFinalWithADeadlineReached) {
  auto at = [](const char* id, TimeMs expires) {
    auto c = command("tn_a", "dv_1", id);
    c.expires_at_ms = expires;
    return create_write(c);
  };
  apply({at("cm_never", 0), at("cm_late", 3000), at("cm_b", 2000), at("cm_a", 1000),
         at("cm_done", 500), at("cm_edge", 2500), at("cm_other_tenant", 1500)});
  apply({transition_write("cm_done", {}, "played", 400)});

  auto expired = store_->expired_commands(2500, 10);
  ASSERT_TRUE(expired.ok());
  EXPECT_EQ(ids_of(expired.value()),
            (std::vector<std::string>{"cm_a", "cm_other_tenant", "cm_b", "cm_edge"}));
  auto one = store_->expired_commands(2500, 1);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(ids_of(one.value()), (std::vector<std::string>{"cm_a"}));
  EXPECT_TRUE(store_->expired_commands(999, 10).value().empty());
}

TEST_P(CommandStore, EventsAreTenantScopedAndListedAfterASeq) {
  apply({create_write(command("tn_a", "dv_1", "cm_1")),
         create_write(command("tn_b", "dv_9", "cm_9")),
         append_write("tn_a", "scan.received", "sc_1", 300),
         append_write("tn_b", "scan.received", "sc_9", 300)});
  auto mine = store_->subject_events("tn_a", "cm_1");
  ASSERT_TRUE(mine.ok());
  EXPECT_EQ(mine.value().size(), 1u);
  EXPECT_TRUE(store_->subject_events("tn_b", "cm_1").value().empty());
  EXPECT_EQ(store_->subject_events("", "cm_9").value().size(), 1u);

  const auto all = all_events();
  ASSERT_EQ(all.size(), 4u);
  EXPECT_TRUE(std::is_sorted(all.begin(), all.end(),
                             [](const Event& a, const Event& b) { return a.seq < b.seq; }));
  const auto tenant_a = all_events("tn_a");
  ASSERT_EQ(tenant_a.size(), 2u);
  EXPECT_EQ(tenant_a[0].subject_id, "cm_1");
  EXPECT_EQ(tenant_a[1].subject_id, "sc_1");
  auto after = store_->list_events("", all[1].seq, 1000);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(seqs_of(after.value()), (std::vector<int64_t>{all[2].seq, all[3].seq}));
  auto limited = store_->list_events("", 0, 1);
  ASSERT_TRUE(limited.ok());
  EXPECT_EQ(seqs_of(limited.value()), (std::vector<int64_t>{all[0].seq}));
  EXPECT_TRUE(store_->list_events("tn_b", all[3].seq, 10).value().empty());

  EXPECT_TRUE(store_->get_event("tn_a", tenant_a[1].seq).ok());
  EXPECT_EQ(store_->get_event("tn_b", tenant_a[1].seq).status().code, Code::kNotFound);
  EXPECT_EQ(store_->get_event("", all[3].seq + 100).status().code, Code::kNotFound);
}

TEST_P(CommandStore, ConcurrentCreatesWithOneDedupKeyHaveExactlyOneWinner) {
  constexpr int kThreads = 6;
  std::atomic<int> winners{0};
  std::atomic<int> conflicts_naming_winner{0};
  std::atomic<int> errors{0};
  std::vector<std::string> winner(kThreads);
  std::vector<std::string> named(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto result = store_->apply_writes(
          {create_write(command("tn_a", "dv_1", "cm_" + std::to_string(t), "order-1"))});
      if (!result.ok()) {
        ++errors;
        return;
      }
      const auto& o = result.value()[0];
      if (o.code == Code::kOk) {
        ++winners;
        winner[t] = "cm_" + std::to_string(t);
      } else if (o.code == Code::kConflict) {
        named[t] = o.existing_id;
      }
    });
  }
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(errors.load(), 0);
  ASSERT_EQ(winners.load(), 1);
  const std::string won = *std::find_if(winner.begin(), winner.end(),
                                        [](const std::string& id) { return !id.empty(); });
  for (int t = 0; t < kThreads; ++t) {
    if (winner[t].empty()) {
      EXPECT_EQ(named[t], won);
    }
  }
  EXPECT_EQ(all_events().size(), 1u);
}

TEST_P(CommandStore, AReaderFollowingTheEventCursorMissesNothingUnderConcurrentWriters) {
  // Seqs must become visible in order: a reader that has seen seq N never
  // sees a smaller seq appear later (the webhook dispatcher's cursor).
  constexpr int kWriters = 4;
  constexpr int kBatches = 25;
  constexpr int kPerBatch = 4;
  std::atomic<bool> writing{true};
  std::atomic<int> errors{0};
  std::set<int64_t> seen;
  std::thread reader([&] {
    int64_t cursor = 0;
    auto drain = [&] {
      auto events = store_->list_events("", cursor, 1000);
      if (!events.ok()) {
        ++errors;
        return;
      }
      for (const auto& e : events.value()) {
        seen.insert(e.seq);
        cursor = e.seq;
      }
    };
    while (writing)
      drain();
    drain();
  });
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (int b = 0; b < kBatches; ++b) {
        std::vector<Write> batch;
        for (int i = 0; i < kPerBatch; ++i) {
          batch.push_back(append_write("tn_a", "scan.received",
                                       "sc_" + std::to_string(w) + "_" + std::to_string(b), 1));
        }
        if (!store_->apply_writes(batch).ok()) ++errors;
      }
    });
  }
  for (auto& t : writers)
    t.join();
  writing = false;
  reader.join();
  EXPECT_EQ(errors.load(), 0);
  const auto all = all_events();  // 400 < 1000: one page
  ASSERT_EQ(all.size(), static_cast<size_t>(kWriters * kBatches * kPerBatch));
  std::set<int64_t> expected;
  for (const auto& e : all)
    expected.insert(e.seq);
  EXPECT_EQ(seen, expected);
}

TEST_P(CommandStore, PurgeHistoryDeletesOnlyOldFinishedRows) {
  add_tenant("tn_a");
  auto old_final = command("tn_a", "dv_1", "cm_old_final", "", 100);
  auto old_open = command("tn_a", "dv_1", "cm_old_open", "", 100);
  auto new_final = command("tn_a", "dv_1", "cm_new_final", "", 100);
  apply({create_write(old_final), create_write(old_open), create_write(new_final)});  // 3 events
  apply({transition_write("cm_old_final", {}, "played", 500),
         transition_write("cm_new_final", {}, "failed", 5000),
         append_write("tn_a", "scan.received", "sc_x", 5000)});  // 1 new event

  Scan scan;
  scan.tenant_id = "tn_a";
  scan.device_id = "dv_1";
  scan.deadline_ms = 10000;
  scan.id = "sc_old_done";
  scan.code_hash = "h1";
  scan.created_ms = 100;
  ASSERT_TRUE(store_->create_scan(scan, 0, nullptr).ok());
  scan.id = "sc_old_pending";
  scan.code_hash = "h2";
  ASSERT_TRUE(store_->create_scan(scan, 0, nullptr).ok());
  scan.id = "sc_new_done";
  scan.code_hash = "h3";
  scan.created_ms = 5000;
  ASSERT_TRUE(store_->create_scan(scan, 0, nullptr).ok());
  for (const char* id : {"sc_old_done", "sc_new_done"}) {
    Scan done;
    done.id = id;
    done.tenant_id = "tn_a";
    done.state = "answered";
    done.answered_ms = 5000;
    ASSERT_TRUE(store_->finish_scan(done, nullptr).ok());
  }

  ASSERT_TRUE(
      store_->create_webhook({"wh_1", "tn_a", "https://x", "", {}, "s", false, 0, 1, 1}).ok());
  WebhookDelivery d;
  d.event_seq = 1;
  d.event_type = "broadcast.queued";
  d.created_ms = d.updated_ms = 100;
  ASSERT_TRUE(store_->enqueue_webhook_deliveries("wh_1", 0, 2, {d, d}).ok());
  auto due = store_->due_webhook_deliveries(1000000, 10).value();
  ASSERT_EQ(due.size(), 2u);
  WebhookDelivery done = due[0];
  done.state = "succeeded";
  done.attempts = 2;
  done.updated_ms = 500;
  ASSERT_TRUE(store_->record_webhook_attempt(done, {done.id, 1, 400, 500, 10, "busy"}).ok());
  ASSERT_TRUE(store_->record_webhook_attempt(done, {done.id, 2, 500, 200, 10, ""}).ok());

  auto purged = store_->purge_history(1000);
  ASSERT_TRUE(purged.ok()) << purged.status().message;
  // 3 old events (the creates; the transitions carried none), 1 command,
  // 1 scan, 1 delivery and its 2 attempts.
  const auto left_events = all_events();
  EXPECT_EQ(types_of(left_events), (std::vector<std::string>{"scan.received"}));
  EXPECT_EQ(purged.value(), 3 + 1 + 1 + 1 + 2);
  EXPECT_EQ(store_->get_command("tn_a", "cm_old_final").status().code, Code::kNotFound);
  EXPECT_TRUE(store_->get_command("tn_a", "cm_old_open").ok());
  EXPECT_TRUE(store_->get_command("tn_a", "cm_new_final").ok());
  EXPECT_EQ(store_->get_scan("tn_a", "sc_old_done").status().code, Code::kNotFound);
  EXPECT_TRUE(store_->get_scan("tn_a", "sc_old_pending").ok());
  EXPECT_TRUE(store_->get_scan("tn_a", "sc_new_done").ok());
  EXPECT_EQ(store_->get_webhook_delivery("tn_a", done.id).status().code, Code::kNotFound);
  EXPECT_TRUE(store_->get_webhook_delivery("tn_a", due[1].id).ok());
  EXPECT_EQ(raw("SELECT COUNT(*) FROM webhook_attempts")[0][0], "0");
  EXPECT_EQ(store_->purge_history(1000).value(), 0) << "nothing left to purge";
}

TEST_P(CommandStore, UpgradesAVersionOneDatabaseKeepingItsRows) {
  add_tenant("tn_a");
  add_product("tn_a", "pd_a");
  add_device("tn_a", "pd_a", "dv_1", "SN1");
  store_.reset();
  // Back to schema 1: what a database written by the previous release has.
  for (const char* table : {"webhook_attempts", "webhook_deliveries", "webhook_endpoints", "scans",
                            "events", "commands"}) {
    raw(std::string("DROP TABLE ") + table);
  }
  raw("DELETE FROM schema_migrations WHERE version = 2");
  store_ = open();
  EXPECT_EQ(store_->schema_version(), 2);
  EXPECT_TRUE(store_->get_device("tn_a", "dv_1").ok());
  EXPECT_EQ(apply({create_write(command("tn_a", "dv_1", "cm_1"))})[0].code, Code::kOk);
  // A deleted device's commands stay (history; no foreign key).
  ASSERT_TRUE(store_->delete_device("tn_a", "dv_1").ok());
  EXPECT_TRUE(store_->get_command("tn_a", "cm_1").ok());
}

// ---- Presence events -------------------------------------------------------------------

TEST_P(CommandStore, PresenceFlipsAppendDeviceEventsAndReconnectsDoNot) {
  add_tenant("tn_a");
  add_product("tn_a", "pd_a");
  add_device("tn_a", "pd_a", "dv_1", "SN1");
  add_device("tn_a", "pd_a", "dv_2", "SN2");

  ASSERT_TRUE(store_->record_presence(event("dv_1", true, 1000)).ok());
  auto events = all_events("tn_a");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, "device.online");
  EXPECT_EQ(events[0].tenant_id, "tn_a");
  EXPECT_EQ(events[0].subject_id, "dv_1");
  EXPECT_EQ(events[0].device_id, "dv_1");
  EXPECT_EQ(events[0].at_ms, 1000);
  auto data = nlohmann::json::parse(events[0].data_json);
  EXPECT_EQ(data["device_id"], "dv_1");
  EXPECT_EQ(data["online"], true);
  EXPECT_EQ(data["remote_address"], "10.0.0.1:5000");
  EXPECT_EQ(data["protocol_version"], "5.0");
  EXPECT_EQ(data["gateway_node"], "node-a");
  EXPECT_EQ(data["reason"], "");

  // Takeover on another node and a late offline from the old one: no flip.
  ASSERT_TRUE(store_->record_presence(event("dv_1", true, 1100, "node-b")).ok());
  ASSERT_TRUE(store_->record_presence(event("dv_1", false, 1200, "node-a")).ok());
  EXPECT_TRUE(store_->get_device("tn_a", "dv_1").value().presence.online);
  EXPECT_EQ(all_events("tn_a").size(), 1u);

  // A reason with quotes and a newline stays valid JSON.
  PresenceEvent offline = event("dv_1", false, 1300, "node-b");
  offline.reason = "said \"bye\"\n";
  ASSERT_TRUE(store_->record_presence(offline).ok());
  ASSERT_TRUE(store_->record_presence(event("dv_1", false, 1400, "node-b")).ok());  // still off
  events = all_events("tn_a");
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].type, "device.offline");
  EXPECT_EQ(events[1].at_ms, 1300);
  data = nlohmann::json::parse(events[1].data_json);
  EXPECT_EQ(data["online"], false);
  EXPECT_EQ(data["reason"], "said \"bye\"\n");
  EXPECT_EQ(data["gateway_node"], "node-b");
  // Every presence event is still in the device's history.
  EXPECT_EQ(store_->list_presence("tn_a", "dv_1", {}).value().items.size(), 5u);

  // A gateway reset is a flip for every device it takes offline.
  ASSERT_TRUE(store_->record_presence(event("dv_1", true, 2000, "node-c")).ok());
  ASSERT_TRUE(store_->record_presence(event("dv_2", true, 2000, "node-c")).ok());
  ASSERT_TRUE(store_->reset_presence("node-c", 3000).ok());
  events = all_events("tn_a");
  ASSERT_EQ(events.size(), 6u);
  EXPECT_EQ(events[4].type, "device.offline");
  EXPECT_EQ(events[4].subject_id, "dv_1");
  EXPECT_EQ(events[5].subject_id, "dv_2");
  EXPECT_EQ(events[5].at_ms, 3000);
  EXPECT_EQ(nlohmann::json::parse(events[5].data_json)["reason"], "gateway_reset");
  EXPECT_EQ(store_->record_presence(event("dv_missing", true, 1)).code, Code::kNotFound);
  EXPECT_EQ(all_events().size(), 6u);
}

// ---- Webhooks ---------------------------------------------------------------------------

WebhookEndpoint endpoint(const std::string& tenant, const std::string& id) {
  WebhookEndpoint w;
  w.id = id;
  w.tenant_id = tenant;
  w.url = "https://example.com/hooks/" + id;
  w.description = "orders";
  w.event_types = {"broadcast.*", "scan.received"};
  w.secret_sealed = std::string("\x00\x9f\x01sealed", 9);
  w.created_ms = w.updated_ms = 10;
  return w;
}

WebhookDelivery delivery(int64_t event_seq, TimeMs next,
                         const std::string& type = "scan.received") {
  WebhookDelivery d;
  d.event_seq = event_seq;
  d.event_type = type;
  d.next_attempt_ms = next;
  d.created_ms = d.updated_ms = 50;
  return d;
}

TEST_P(CommandStore, WebhookEndpointsRoundTripAndAreTenantScoped) {
  add_tenant("tn_a");
  add_tenant("tn_b");
  ASSERT_TRUE(store_->create_webhook(endpoint("tn_a", "wh_2")).ok());
  ASSERT_TRUE(store_->create_webhook(endpoint("tn_a", "wh_1")).ok());
  ASSERT_TRUE(store_->create_webhook(endpoint("tn_b", "wh_9")).ok());
  EXPECT_EQ(store_->create_webhook(endpoint("tn_a", "wh_1")).code, Code::kConflict);
  EXPECT_EQ(store_->create_webhook(endpoint("tn_missing", "wh_x")).code, Code::kInvalid);

  auto got = store_->get_webhook("tn_a", "wh_1");
  ASSERT_TRUE(got.ok()) << got.status().message;
  EXPECT_EQ(got.value().url, "https://example.com/hooks/wh_1");
  EXPECT_EQ(got.value().description, "orders");
  EXPECT_EQ(got.value().event_types, (std::vector<std::string>{"broadcast.*", "scan.received"}));
  EXPECT_EQ(got.value().secret_sealed, std::string("\x00\x9f\x01sealed", 9));
  EXPECT_FALSE(got.value().disabled);
  EXPECT_EQ(got.value().cursor_seq, 0);
  EXPECT_EQ(store_->get_webhook("tn_b", "wh_1").status().code, Code::kNotFound);

  WebhookEndpoint changed = endpoint("tn_a", "wh_1");
  changed.url = "https://example.com/v2";
  changed.event_types = {};
  changed.disabled = true;
  changed.updated_ms = 99;
  changed.created_ms = 12345;  // not written
  ASSERT_TRUE(store_->update_webhook(changed).ok());
  got = store_->get_webhook("", "wh_1");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got.value().url, "https://example.com/v2");
  EXPECT_TRUE(got.value().event_types.empty());
  EXPECT_TRUE(got.value().disabled);
  EXPECT_EQ(got.value().updated_ms, 99);
  EXPECT_EQ(got.value().created_ms, 10);
  changed.tenant_id = "tn_b";
  EXPECT_EQ(store_->update_webhook(changed).code, Code::kNotFound);

  auto page = store_->list_webhooks("tn_a", {"", 1});
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(ids_of(page.value().items), (std::vector<std::string>{"wh_1"}));
  EXPECT_TRUE(page.value().more);
  page = store_->list_webhooks("tn_a", {"wh_1", 10});
  EXPECT_EQ(ids_of(page.value().items), (std::vector<std::string>{"wh_2"}));
  EXPECT_FALSE(page.value().more);

  EXPECT_EQ(store_->delete_webhook("tn_b", "wh_1").code, Code::kNotFound);
  ASSERT_TRUE(store_->delete_webhook("tn_a", "wh_1").ok());
  EXPECT_EQ(store_->get_webhook("tn_a", "wh_1").status().code, Code::kNotFound);
  EXPECT_EQ(store_->delete_webhook("tn_a", "wh_1").code, Code::kNotFound);
}

TEST_P(CommandStore, EnqueueMovesTheCursorOnceAndInsertsTheDeliveries) {
  add_tenant("tn_a");
  ASSERT_TRUE(store_->create_webhook(endpoint("tn_a", "wh_1")).ok());
  WebhookDelivery stray = delivery(2, 100);
  stray.endpoint_id = "wh_other";
  stray.tenant_id = "tn_other";
  ASSERT_TRUE(store_->enqueue_webhook_deliveries("wh_1", 0, 7, {delivery(1, 100), stray}).ok());
  EXPECT_EQ(store_->get_webhook("tn_a", "wh_1").value().cursor_seq, 7);

  // A second dispatcher with the old cursor loses and inserts nothing.
  EXPECT_EQ(store_->enqueue_webhook_deliveries("wh_1", 0, 9, {delivery(8, 100)}).code,
            Code::kConflict);
  EXPECT_EQ(store_->get_webhook("tn_a", "wh_1").value().cursor_seq, 7);
  EXPECT_EQ(store_->enqueue_webhook_deliveries("wh_missing", 0, 9, {delivery(8, 100)}).code,
            Code::kNotFound);
  // Moving the cursor with nothing to deliver is fine.
  ASSERT_TRUE(store_->enqueue_webhook_deliveries("wh_1", 7, 9, {}).ok());

  auto listing = store_->list_webhook_deliveries("tn_a", "", {"", 10});
  ASSERT_TRUE(listing.ok());
  ASSERT_EQ(listing.value().items.size(), 2u);
  const auto& newest = listing.value().items[0];
  EXPECT_EQ(newest.event_seq, 2);
  EXPECT_EQ(newest.endpoint_id, "wh_1") << "the endpoint's id, not the delivery's field";
  EXPECT_EQ(newest.tenant_id, "tn_a");
  EXPECT_EQ(newest.state, "pending");
  EXPECT_EQ(newest.next_attempt_ms, 100);
  EXPECT_EQ(newest.created_ms, 50);
  EXPECT_GT(newest.id, listing.value().items[1].id);
}

TEST_P(CommandStore, DeliveriesComeDueAreRecordedRescheduledAndListedNewestFirst) {
  add_tenant("tn_a");
  add_tenant("tn_b");
  ASSERT_TRUE(store_->create_webhook(endpoint("tn_a", "wh_1")).ok());
  ASSERT_TRUE(store_->create_webhook(endpoint("tn_a", "wh_2")).ok());
  ASSERT_TRUE(store_->create_webhook(endpoint("tn_b", "wh_9")).ok());
  ASSERT_TRUE(store_
                  ->enqueue_webhook_deliveries(
                      "wh_1", 0, 3, {delivery(1, 300), delivery(2, 100), delivery(3, 200)})
                  .ok());
  ASSERT_TRUE(store_->enqueue_webhook_deliveries("wh_2", 0, 3, {delivery(3, 100)}).ok());
  ASSERT_TRUE(store_->enqueue_webhook_deliveries("wh_9", 0, 1, {delivery(1, 150)}).ok());

  // Across tenants, by (next_attempt_ms, id).
  auto due = store_->due_webhook_deliveries(200, 10);
  ASSERT_TRUE(due.ok());
  ASSERT_EQ(due.value().size(), 4u);
  EXPECT_EQ(due.value()[0].endpoint_id, "wh_1");
  EXPECT_EQ(due.value()[0].event_seq, 2);
  EXPECT_EQ(due.value()[1].endpoint_id, "wh_2");
  EXPECT_EQ(due.value()[2].endpoint_id, "wh_9");
  EXPECT_EQ(due.value()[3].event_seq, 3);
  EXPECT_EQ(store_->due_webhook_deliveries(200, 1).value().size(), 1u);
  EXPECT_TRUE(store_->due_webhook_deliveries(99, 10).value().empty());

  // A failed try, retried later, then a success.
  WebhookDelivery d = due.value()[0];
  d.attempts = 1;
  d.next_attempt_ms = 1000;
  d.last_attempt_ms = 200;
  d.last_status_code = 503;
  d.last_error = std::string("upstream \xe6\x9c busy");  // cut mid-character
  d.updated_ms = 0;                                      // -> the attempt's time
  ASSERT_TRUE(store_->record_webhook_attempt(d, {d.id, 1, 200, 503, 35, "HTTP 503"}).ok());
  auto after = store_->get_webhook_delivery("tn_a", d.id);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after.value().state, "pending");
  EXPECT_EQ(after.value().attempts, 1);
  EXPECT_EQ(after.value().next_attempt_ms, 1000);
  EXPECT_EQ(after.value().last_status_code, 503);
  EXPECT_EQ(after.value().last_error, "upstream \xef\xbf\xbd\xef\xbf\xbd busy")
      << "one U+FFFD per invalid byte";
  EXPECT_EQ(after.value().updated_ms, 200);
  EXPECT_EQ(store_->due_webhook_deliveries(200, 10).value().size(), 3u);
  // The same attempt twice is refused and changes nothing.
  WebhookDelivery replay = d;
  replay.state = "failed";
  EXPECT_EQ(store_->record_webhook_attempt(replay, {d.id, 1, 300, 0, 0, "again"}).code,
            Code::kConflict);
  EXPECT_EQ(store_->get_webhook_delivery("tn_a", d.id).value().state, "pending");
  WebhookDelivery missing = d;
  missing.id = 999999;
  EXPECT_EQ(store_->record_webhook_attempt(missing, {999999, 1, 1, 0, 0, ""}).code,
            Code::kNotFound);

  d.state = "succeeded";
  d.attempts = 2;
  d.last_attempt_ms = 1000;
  d.last_status_code = 200;
  d.last_error = "";
  d.updated_ms = 1001;
  ASSERT_TRUE(store_->record_webhook_attempt(d, {d.id, 2, 1000, 200, 12, ""}).ok());
  EXPECT_EQ(store_->get_webhook_delivery("tn_a", d.id).value().state, "succeeded");
  EXPECT_EQ(store_->due_webhook_deliveries(5000, 10).value().size(), 4u);

  auto attempts = store_->list_webhook_attempts("tn_a", d.id);
  ASSERT_TRUE(attempts.ok());
  ASSERT_EQ(attempts.value().size(), 2u);
  EXPECT_EQ(attempts.value()[0].attempt, 1);
  EXPECT_EQ(attempts.value()[0].status_code, 503);
  EXPECT_EQ(attempts.value()[0].duration_ms, 35);
  EXPECT_EQ(attempts.value()[0].error, "HTTP 503");
  EXPECT_EQ(attempts.value()[0].delivery_id, d.id);
  EXPECT_EQ(attempts.value()[1].at_ms, 1000);
  EXPECT_EQ(store_->list_webhook_attempts("tn_b", d.id).status().code, Code::kNotFound);

  // Manual redelivery.
  EXPECT_EQ(store_->reschedule_webhook_delivery("tn_b", d.id, 7000).code, Code::kNotFound);
  ASSERT_TRUE(store_->reschedule_webhook_delivery("tn_a", d.id, 7000).ok());
  after = store_->get_webhook_delivery("tn_a", d.id);
  EXPECT_EQ(after.value().state, "pending");
  EXPECT_EQ(after.value().next_attempt_ms, 7000);
  EXPECT_EQ(after.value().attempts, 2);
  auto later = store_->due_webhook_deliveries(7000, 10).value();
  EXPECT_EQ(later.back().id, d.id);

  // Newest first, per endpoint or for the tenant, paged by id.
  auto all_a = store_->list_webhook_deliveries("tn_a", "", {"", 10});
  ASSERT_TRUE(all_a.ok());
  ASSERT_EQ(all_a.value().items.size(), 4u);
  EXPECT_TRUE(std::is_sorted(
      all_a.value().items.begin(), all_a.value().items.end(),
      [](const WebhookDelivery& a, const WebhookDelivery& b) { return a.id > b.id; }));
  auto of_wh1 = store_->list_webhook_deliveries("tn_a", "wh_1", {"", 2});
  ASSERT_TRUE(of_wh1.ok());
  ASSERT_EQ(of_wh1.value().items.size(), 2u);
  EXPECT_TRUE(of_wh1.value().more);
  EXPECT_EQ(of_wh1.value().items[0].event_seq, 3);
  auto rest = store_->list_webhook_deliveries("tn_a", "wh_1",
                                              {std::to_string(of_wh1.value().items[1].id), 2});
  ASSERT_TRUE(rest.ok());
  ASSERT_EQ(rest.value().items.size(), 1u);
  EXPECT_EQ(rest.value().items[0].event_seq, 1);
  EXPECT_FALSE(rest.value().more);
  EXPECT_TRUE(store_->list_webhook_deliveries("tn_b", "wh_1", {}).value().items.empty());
  EXPECT_EQ(store_->get_webhook_delivery("tn_b", d.id).status().code, Code::kNotFound);
  EXPECT_EQ(store_->list_webhook_deliveries("tn_a", "", {"x", 2}).status().code, Code::kInvalid);

  // Deleting an endpoint deletes its deliveries and their attempts.
  ASSERT_TRUE(store_->delete_webhook("tn_a", "wh_1").ok());
  EXPECT_EQ(store_->get_webhook_delivery("tn_a", d.id).status().code, Code::kNotFound);
  EXPECT_EQ(store_->list_webhook_deliveries("tn_a", "", {}).value().items.size(), 1u);
  EXPECT_EQ(raw("SELECT COUNT(*) FROM webhook_attempts")[0][0], "0");
}

// ---- Scans ---------------------------------------------------------------------------------

Scan scan(const std::string& id, const std::string& hash, TimeMs at, const std::string& box_id = "",
          const std::string& device = "dv_1", const std::string& tenant = "tn_a") {
  Scan s;
  s.id = id;
  s.tenant_id = tenant;
  s.device_id = device;
  s.box_scan_id = box_id;
  s.code = "code-" + hash;
  s.code_hash = hash;
  s.amount_fen = 1250;
  s.created_ms = at;
  s.deadline_ms = at + 5000;
  return s;
}

TEST_P(CommandStore, ScanDuplicatesAreTheSameCodeInTheWindowOrTheSameBoxId) {
  ASSERT_TRUE(store_->create_scan(scan("sc_1", "h1", 1000, "box-1"), 0, nullptr).ok());
  auto got = store_->get_scan("tn_a", "sc_1");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got.value().code, "code-h1");
  EXPECT_EQ(got.value().amount_fen, 1250);
  EXPECT_EQ(got.value().state, "pending");
  EXPECT_EQ(got.value().outcome, "");
  EXPECT_EQ(got.value().box_scan_id, "box-1");
  EXPECT_EQ(got.value().deadline_ms, 6000);
  EXPECT_EQ(store_->get_scan("tn_b", "sc_1").status().code, Code::kNotFound);

  Scan existing;
  // Same code, first scan inside the window.
  EXPECT_EQ(store_->create_scan(scan("sc_2", "h1", 2000), 1000, &existing).code, Code::kConflict);
  EXPECT_EQ(existing.id, "sc_1");
  EXPECT_EQ(existing.code_hash, "h1");
  EXPECT_EQ(store_->create_scan(scan("sc_2", "h1", 2000), 1000, nullptr).code, Code::kConflict);
  // ... outside it: a new scan.
  ASSERT_TRUE(store_->create_scan(scan("sc_2", "h1", 2000), 1001, nullptr).ok());
  // Same box id, any time, other code.
  existing = {};
  EXPECT_EQ(store_->create_scan(scan("sc_3", "h9", 90000, "box-1"), 80000, &existing).code,
            Code::kConflict);
  EXPECT_EQ(existing.id, "sc_1");
  // Another device may scan the same code with the same box id.
  ASSERT_TRUE(store_->create_scan(scan("sc_4", "h1", 2000, "box-1", "dv_2"), 0, nullptr).ok());
  // A taken id.
  existing = {};
  EXPECT_EQ(store_->create_scan(scan("sc_4", "h7", 3000, "", "dv_3"), 0, &existing).code,
            Code::kConflict);
  EXPECT_EQ(existing.id, "sc_4");
  EXPECT_EQ(store_->get_scan("", "sc_3").status().code, Code::kNotFound);
}

TEST_P(CommandStore, FinishScanMovesOnlyAPendingScan) {
  ASSERT_TRUE(store_->create_scan(scan("sc_1", "h1", 1000), 0, nullptr).ok());
  Scan answer;
  answer.id = "sc_1";
  answer.tenant_id = "tn_a";
  answer.state = "answered";
  answer.outcome = "success";
  answer.display = "Paid 12.50";
  answer.voice = "收款成功";
  answer.result_command_id = "cm_7";
  answer.answered_ms = 1500;

  Scan other_tenant = answer;
  other_tenant.tenant_id = "tn_b";
  EXPECT_EQ(store_->finish_scan(other_tenant, nullptr).code, Code::kNotFound);
  Scan still_pending = answer;
  still_pending.state = "pending";
  EXPECT_EQ(store_->finish_scan(still_pending, nullptr).code, Code::kInvalid);
  ASSERT_TRUE(store_->finish_scan(answer, nullptr).ok());
  auto got = store_->get_scan("tn_a", "sc_1").value();
  EXPECT_EQ(got.state, "answered");
  EXPECT_EQ(got.outcome, "success");
  EXPECT_EQ(got.display, "Paid 12.50");
  EXPECT_EQ(got.voice, "收款成功");
  EXPECT_EQ(got.result_command_id, "cm_7");
  EXPECT_EQ(got.answered_ms, 1500);

  Scan timeout = answer;
  timeout.state = "timed_out";
  timeout.outcome = "unknown";
  Scan current;
  EXPECT_EQ(store_->finish_scan(timeout, &current).code, Code::kConflict);
  EXPECT_EQ(current.state, "answered");
  EXPECT_EQ(current.outcome, "success");
  EXPECT_EQ(store_->get_scan("tn_a", "sc_1").value().outcome, "success");
  timeout.id = "sc_missing";
  EXPECT_EQ(store_->finish_scan(timeout, &current).code, Code::kNotFound);
}

TEST_P(CommandStore, OverdueScansArePendingPastTheirDeadline) {
  ASSERT_TRUE(store_->create_scan(scan("sc_1", "h1", 1000), 0, nullptr).ok());  // due 6000
  ASSERT_TRUE(store_->create_scan(scan("sc_2", "h2", 500), 0, nullptr).ok());   // due 5500
  ASSERT_TRUE(store_->create_scan(scan("sc_3", "h3", 2000), 0, nullptr).ok());  // due 7000
  ASSERT_TRUE(store_->create_scan(scan("sc_4", "h4", 100), 0, nullptr).ok());   // due 5100
  Scan done = scan("sc_4", "h4", 100);
  done.state = "answered";
  ASSERT_TRUE(store_->finish_scan(done, nullptr).ok());

  auto overdue = store_->overdue_scans(6000, 10);
  ASSERT_TRUE(overdue.ok());
  EXPECT_EQ(ids_of(overdue.value()), (std::vector<std::string>{"sc_2", "sc_1"}));
  EXPECT_EQ(ids_of(store_->overdue_scans(6000, 1).value()), (std::vector<std::string>{"sc_2"}));
  EXPECT_TRUE(store_->overdue_scans(5000, 10).value().empty());
}

TEST_P(CommandStore, ListScansIsNewestFirstPerTenantOrDevice) {
  ASSERT_TRUE(store_->create_scan(scan("sc_01", "h1", 1000), 0, nullptr).ok());
  ASSERT_TRUE(store_->create_scan(scan("sc_02", "h2", 1001, "", "dv_2"), 0, nullptr).ok());
  ASSERT_TRUE(store_->create_scan(scan("sc_03", "h3", 1002), 0, nullptr).ok());
  ASSERT_TRUE(store_->create_scan(scan("sc_04", "h4", 1003, "", "dv_9", "tn_b"), 0, nullptr).ok());

  auto page = store_->list_scans("tn_a", "", {"", 2});
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(ids_of(page.value().items), (std::vector<std::string>{"sc_03", "sc_02"}));
  EXPECT_TRUE(page.value().more);
  page = store_->list_scans("tn_a", "", {"sc_02", 2});
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(ids_of(page.value().items), (std::vector<std::string>{"sc_01"}));
  EXPECT_FALSE(page.value().more);
  EXPECT_EQ(ids_of(store_->list_scans("tn_a", "dv_1", {}).value().items),
            (std::vector<std::string>{"sc_03", "sc_01"}));
  EXPECT_TRUE(store_->list_scans("tn_b", "dv_1", {}).value().items.empty());
  EXPECT_EQ(store_->list_scans("", "", {}).value().items.size(), 4u);
}

TEST_P(CommandStore, ConcurrentScansOfOneCodeHaveExactlyOneWinner) {
  constexpr int kThreads = 6;
  std::atomic<int> created{0};
  std::atomic<int> duplicates{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto s = store_->create_scan(scan("sc_" + std::to_string(t), "same", 1000 + t), 0, nullptr);
      if (s.ok()) ++created;
      if (s.code == Code::kConflict) ++duplicates;
    });
  }
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(created.load(), 1);
  EXPECT_EQ(duplicates.load(), kThreads - 1);
}

INSTANTIATE_TEST_SUITE_P(Adapters, CommandStore,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres), backend_name);

INSTANTIATE_TEST_SUITE_P(Adapters, StoreConformance,
                         ::testing::Values(Backend::kSqlite, Backend::kPostgres), backend_name);

}  // namespace
}  // namespace counterlink::store
