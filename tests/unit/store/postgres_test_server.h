// The throwaway PostgreSQL server the store tests run against: a gtest
// global Environment that starts `scripts/pg-test-server` on first use (so
// a process running only SQLite tests never pays for it) and stops it when
// the test program ends. Each test asks for a fresh database on it.
#pragma once

#include <string>
#include <vector>

namespace counterlink::store::testing {

// A libpq URL naming a new, empty database on the test server. On failure
// returns "" and sets `error` to the script's message (tests must FAIL with
// it: a missing PostgreSQL is a broken test machine, not a reason to skip).
std::string fresh_postgres_database(std::string& error);

// Runs SQL on a database by URL, outside the Store (sqlite:// or postgres).
// Returns the rows as text; throws std::runtime_error on failure.
std::vector<std::vector<std::string>> run_raw_sql(const std::string& url, const std::string& sql);

}  // namespace counterlink::store::testing
