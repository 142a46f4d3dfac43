// open_store(): the one place that picks an adapter for a URL.
#include "counterlink/store/store.h"

#include <chrono>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "migrations/migrations.h"
#include "postgres/postgres_store.h"
#include "sql/sql_store.h"
#include "sqlite/sqlite_store.h"
#include "store_url.h"

namespace counterlink::store {

const char* to_string(Code code) {
  switch (code) {
    case Code::kOk:
      return "ok";
    case Code::kNotFound:
      return "not_found";
    case Code::kConflict:
      return "conflict";
    case Code::kInvalid:
      return "invalid";
    case Code::kUnavailable:
      return "unavailable";
  }
  return "unknown";
}

std::unique_ptr<Store> open_store(const StoreOptions& options) {
  const StoreLocation location = parse_store_url(options.url);
  if (options.pool_size < 1) {
    throw std::runtime_error("store: pool_size must be at least 1 (got " +
                             std::to_string(options.pool_size) + ")");
  }
  std::unique_ptr<sql::Database> database;
  std::string shown;
  if (location.kind == StoreLocation::Kind::kSqlite) {
    database = sqlite::open_database(location.target, options.pool_size);
    shown = location.target;
  } else {
    database = postgres::open_database(location.target, options.pool_size);
    shown = postgres::redact_url(location.target);
  }
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  const int version = migrations::apply(*database, now_ms);
  spdlog::info("store: {} at {}, schema version {}", database->kind(), shown, version);
  return sql::make_store(std::move(database), version);
}

}  // namespace counterlink::store
