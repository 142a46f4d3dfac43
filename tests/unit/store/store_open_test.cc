// open_store() configuration errors, and adapter behaviour that only one
// adapter has (PostgreSQL reconnects).
#include <filesystem>

#include <gtest/gtest.h>

#include "counterlink/store/store.h"

#include "postgres/postgres_store.h"
#include "postgres_test_server.h"
#include "store_url.h"

namespace counterlink::store {
namespace {

std::string open_error(const std::string& url, int pool_size = 2) {
  try {
    open_store({url, pool_size});
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TEST(StoreUrl, PicksTheAdapterFromTheScheme) {
  auto absolute = parse_store_url("sqlite:///var/lib/counterlink/store.db");
  EXPECT_EQ(absolute.kind, StoreLocation::Kind::kSqlite);
  EXPECT_EQ(absolute.target, "/var/lib/counterlink/store.db");
  auto relative = parse_store_url("sqlite://data/store.db");
  EXPECT_EQ(relative.kind, StoreLocation::Kind::kSqlite);
  EXPECT_EQ(relative.target, "data/store.db");
  for (const char* url : {"postgres://u:p@db:5432/cl", "postgresql://u@127.0.0.1/cl"}) {
    auto pg = parse_store_url(url);
    EXPECT_EQ(pg.kind, StoreLocation::Kind::kPostgres);
    EXPECT_EQ(pg.target, url) << "handed to libpq as is";
  }
}

TEST(StoreUrl, RejectsBadUrlsWithMessagesThatShowTheAcceptedForms) {
  const std::pair<const char*, const char*> cases[] = {
      {"", "it is empty"},
      {"/var/lib/store.db", "has no scheme"},
      {"mysql://db/cl", "unsupported scheme 'mysql'"},
      {"sqlite://", "no file path"},
      {"sqlite:///", "no file path"},
      {"sqlite:///var/lib/", "names a directory"},
      {"sqlite:///x.db?mode=memory", "take no options"},
  };
  for (const auto& [url, problem] : cases) {
    const std::string message = open_error(url);
    EXPECT_NE(message.find(problem), std::string::npos) << url << " -> " << message;
    EXPECT_NE(message.find("sqlite:///absolute/path.db"), std::string::npos) << message;
    EXPECT_NE(message.find("postgresql://"), std::string::npos) << message;
  }
}

TEST(StoreOpen, RefusesAPoolOfZero) {
  EXPECT_NE(open_error("sqlite:///tmp/never-created.db", 0).find("pool_size must be at least 1"),
            std::string::npos);
}

TEST(StoreOpen, UnreachablePostgresFailsWithTheUrlButNotThePassword) {
  const std::string message = open_error("postgresql://cl:s3cret@127.0.0.1:1/cl");
  EXPECT_NE(message.find("cannot connect to PostgreSQL"), std::string::npos) << message;
  EXPECT_NE(message.find("cl:***@127.0.0.1:1"), std::string::npos) << message;
  EXPECT_EQ(message.find("s3cret"), std::string::npos) << message;
}

TEST(StoreOpen, UnwritableSqliteLocationFailsWithWhatToCheck) {
  const std::string message = open_error("sqlite:///proc/counterlink/store.db");
  EXPECT_NE(message.find("/proc/counterlink"), std::string::npos) << message;
  EXPECT_NE(message.find("check store.url"), std::string::npos) << message;
}

TEST(StoreOpen, RedactsOnlyThePassword) {
  EXPECT_EQ(postgres::redact_url("postgresql://u:pw@h:5/db"), "postgresql://u:***@h:5/db");
  EXPECT_EQ(postgres::redact_url("postgresql://u@h:5/db"), "postgresql://u@h:5/db");
  EXPECT_EQ(postgres::redact_url("postgresql://h:5/db"), "postgresql://h:5/db");
}

TEST(StoreCode, NamesEveryCode) {
  EXPECT_STREQ(to_string(Code::kOk), "ok");
  EXPECT_STREQ(to_string(Code::kNotFound), "not_found");
  EXPECT_STREQ(to_string(Code::kConflict), "conflict");
  EXPECT_STREQ(to_string(Code::kInvalid), "invalid");
  EXPECT_STREQ(to_string(Code::kUnavailable), "unavailable");
}

TEST(SqliteStore, KeepsTheDatabaseInWalModeForConcurrentReaders) {
  char pattern[] = "/tmp/clstore-XXXXXX";
  ASSERT_NE(mkdtemp(pattern), nullptr);
  const std::string url = std::string("sqlite://") + pattern + "/store.db";
  {
    auto store = open_store({url, 2});
    ASSERT_TRUE(store->ping().ok());
  }
  // journal_mode=WAL is persistent: a plain connection sees it afterwards.
  EXPECT_EQ(testing::run_raw_sql(url, "PRAGMA journal_mode"),
            (std::vector<std::vector<std::string>>{{"wal"}}));
  std::filesystem::remove_all(pattern);
}

TEST(PostgresStore, CallsSucceedAfterTheServerDropsEveryConnection) {
  std::string error;
  const std::string url = testing::fresh_postgres_database(error);
  ASSERT_FALSE(url.empty()) << "PostgreSQL tests need a server: " << error;
  auto store = open_store({url, 2});
  ASSERT_TRUE(store->create_tenant({"tn_a", "A", "other"}).ok());
  ASSERT_TRUE(store->get_tenant("tn_a").ok());  // a second pooled connection may exist now

  const std::string admin = url.substr(0, url.rfind('/') + 1) + "postgres";
  const std::string database = url.substr(url.rfind('/') + 1);
  testing::run_raw_sql(
      admin,
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" + database + "'");

  // A read and a write each find a dead connection and retry on a new one.
  auto tenant = store->get_tenant("tn_a");
  EXPECT_TRUE(tenant.ok()) << tenant.status().message;
  testing::run_raw_sql(
      admin,
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" + database + "'");
  auto created = store->create_tenant({"tn_b", "B", "other"});
  EXPECT_TRUE(created.ok()) << created.message;
  EXPECT_TRUE(store->get_tenant("tn_b").ok());
}

}  // namespace
}  // namespace counterlink::store
