// The SQLite adapter: the embedded default, one database file.
//
// Connections: ONE writer connection, guarded by a mutex (SQLite allows a
// single writer at a time anyway; queuing in-process is cheaper than
// SQLITE_BUSY retries), plus a pool of `readers` read-only connections. WAL
// mode lets the readers run while the writer commits; each read transaction
// sees the database as of its first statement. Every connection caches its
// prepared statements.
//
// Durability: journal_mode=WAL with synchronous=FULL. In WAL mode
// synchronous=NORMAL only syncs the WAL at checkpoints, so a power loss can
// roll back transactions that were already reported committed; FULL syncs
// the WAL on every commit, which is what "nothing accepted is ever lost"
// needs. The cost is one fsync per transaction, which is why bulk imports go
// through create_devices (one transaction per batch).
//
// Threading: SqliteDatabase is thread-safe; a connection is used by one
// thread at a time (the writer under its lock, a reader under its lease).
#pragma once

#include <memory>
#include <string>

#include "sql/sql_database.h"

namespace counterlink::store::sqlite {

// Opens (creating the file and its parent directories) the database at
// `path`. Throws std::runtime_error saying what to fix if it cannot.
std::unique_ptr<sql::Database> open_database(const std::string& path, int readers);

}  // namespace counterlink::store::sqlite
