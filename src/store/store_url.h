// Parsing of StoreOptions::url: which adapter, and what it opens.
// Private to the store component (tested directly by the unit tests).
#pragma once

#include <cstdint>
#include <string>

namespace counterlink::store {

struct StoreLocation {
  enum class Kind : uint8_t { kSqlite, kPostgres };
  Kind kind = Kind::kSqlite;
  // kSqlite: the file path ("/abs/path.db" or "relative/path.db");
  // kPostgres: the whole URL, handed to libpq as is.
  std::string target;
};

// Throws std::runtime_error with a message that names the problem and shows
// the accepted forms.
StoreLocation parse_store_url(const std::string& url);

}  // namespace counterlink::store
