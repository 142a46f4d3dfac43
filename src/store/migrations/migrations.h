// Versioned schema migrations, one list per dialect, applied by open_store().
//
// The database records what it has in schema_migrations(version, applied_at).
// Each pending migration runs in its own transaction together with its
// schema_migrations row, so a crash leaves the database at a whole version.
// A database whose version is newer than the newest migration compiled in
// here is refused: an older binary must not write to a schema it does not
// know.
//
// Adding a migration: append {next version, description, sql} to BOTH
// dialects' lists with equivalent effects; never edit a released one.
#pragma once

#include <span>
#include <string_view>

#include "sql/sql_database.h"

namespace counterlink::store::migrations {

struct Migration {
  int version;
  std::string_view description;
  std::string_view sql;  // one or more statements; no parameters
};

std::span<const Migration> for_dialect(sql::Dialect dialect);
int latest_version(sql::Dialect dialect);

// Creates schema_migrations if needed and applies the pending migrations.
// Returns the resulting version. Throws std::runtime_error (with what to do)
// if the database is newer than this binary or a migration fails.
// Safe against other processes migrating the same database at once.
int apply(sql::Database& database, TimeMs now_ms);

}  // namespace counterlink::store::migrations
