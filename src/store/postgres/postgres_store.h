// The PostgreSQL adapter (libpq), for scale-out deployments.
//
// Connections: a pool of up to `pool_size` connections, created lazily (the
// first one at open to check the URL). Every call is one transaction on one
// leased connection; statements are prepared once per connection and run
// with parameters (blobs as binary bytea), never by splicing values into SQL.
//
// Broken connections: when a connection dies (server restart, failover, an
// idle connection killed by a proxy) the call that finds out drops it; if it
// had not yet sent COMMIT nothing was written, so the call runs once more on
// a fresh connection. A connection lost during COMMIT leaves the outcome
// unknown and returns kUnavailable for the caller to decide.
//
// Durability is the server's (synchronous_commit, replication); the adapter
// reports success only after COMMIT returned.
//
// Threading: PostgresDatabase is thread-safe; a connection is used by one
// thread at a time, under its lease.
#pragma once

#include <memory>
#include <string>

#include "sql/sql_database.h"

namespace counterlink::store::postgres {

// Connects to the libpq URL (postgres:// or postgresql://). Throws
// std::runtime_error saying what to fix if the server cannot be reached.
std::unique_ptr<sql::Database> open_database(const std::string& url, int pool_size);

// The URL with any password replaced by "***", for messages and logs.
std::string redact_url(const std::string& url);

}  // namespace counterlink::store::postgres
