// The Store semantics, written once over sql::Database: tenant scoping,
// keyset pages, filters, presence, idempotency and bulk import are the same
// code for SQLite and PostgreSQL; only a few fragments differ by dialect
// (label filters, bulk insert shape).
#pragma once

#include <memory>

#include "counterlink/store/store.h"

#include "sql/sql_database.h"

namespace counterlink::store::sql {

// `schema_version` is what migrations::apply() returned for `database`.
std::unique_ptr<Store> make_store(std::unique_ptr<Database> database, int schema_version);

}  // namespace counterlink::store::sql
