// The seam between the Store semantics (sql_store.cc, written once) and the
// two database adapters (sqlite/, postgres/). An adapter provides
// connections, transactions and error mapping; the SQL text is shared and
// uses `?` placeholders, which the PostgreSQL adapter renumbers to $1, $2...
//
// Private to the store component.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "counterlink/store/store.h"

namespace counterlink::store::sql {

enum class Dialect : uint8_t { kSqlite, kPostgres };

// One bound value. Text and blobs are both bytes in a std::string; the kind
// tells the adapter how to send them (PostgreSQL: bytea in binary format).
struct Param {
  enum class Kind : uint8_t { kNull, kInt, kBool, kText, kBlob };
  Kind kind = Kind::kNull;
  int64_t number = 0;  // kInt, kBool (0/1)
  std::string bytes;   // kText, kBlob
};

inline Param null_param() {
  return {};
}
inline Param int_param(int64_t value) {
  return {Param::Kind::kInt, value, {}};
}
inline Param bool_param(bool value) {
  return {Param::Kind::kBool, value ? 1 : 0, {}};
}
inline Param text_param(std::string value) {
  return {Param::Kind::kText, 0, std::move(value)};
}
inline Param blob_param(std::string value) {
  return {Param::Kind::kBlob, 0, std::move(value)};
}
// Empty string -> SQL NULL (optional references such as devices.merchant_id).
inline Param optional_text_param(std::string value) {
  return value.empty() ? null_param() : text_param(std::move(value));
}

// A result cell: nullopt for SQL NULL, otherwise the value as bytes (numbers
// in decimal, booleans as "1"/"0" or "t"/"f", blobs raw).
using Cell = std::optional<std::string>;
using Row = std::vector<Cell>;

struct ExecResult {
  std::vector<Row> rows;  // statements that return rows (SELECT, RETURNING)
  int64_t affected = 0;   // rows changed by INSERT / UPDATE / DELETE
};

// One connection inside one transaction, lent to a transaction body.
class Session {
 public:
  virtual ~Session() = default;
  // Runs one statement with `?` placeholders bound to `params` in order.
  // Errors map to Codes: unique violation -> kConflict, foreign key and
  // other constraint or data errors -> kInvalid, anything else (connection,
  // I/O, lock timeouts) -> kUnavailable.
  virtual Status exec(const std::string& sql, const std::vector<Param>& params,
                      ExecResult& result) = 0;
  // Runs several `;`-separated statements without parameters (migrations).
  virtual Status exec_script(const std::string& sql) = 0;
};

enum class Access : uint8_t { kRead, kWrite };

// Transaction body: returns kOk to commit, anything else to roll back. It
// may run more than once (the PostgreSQL adapter retries a body whose
// connection died before COMMIT), so it must (re)set its outputs, not
// append to them.
using TransactionBody = std::function<Status(Session&)>;

class Database {
 public:
  virtual ~Database() = default;
  virtual const char* kind() const = 0;
  virtual Dialect dialect() const = 0;
  // Runs `body` in one transaction on one connection; commits if it returns
  // kOk. Returns the body's status, or the failure to begin/commit.
  // Thread-safe; blocks for a free connection (kWrite on SQLite: for the
  // single writer).
  virtual Status transact(Access access, const TransactionBody& body) = 0;
};

}  // namespace counterlink::store::sql
