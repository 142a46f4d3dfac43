#include "sqlite/sqlite_store.h"

#include <filesystem>
#include <stdexcept>
#include <unordered_map>

#include <sqlite3.h>

#include "connection_pool.h"
#include "guarded.h"

namespace counterlink::store::sqlite {
namespace {

// Waiting for another process's lock (the in-process writer is serialized by
// our mutex): long enough to ride out a checkpoint, short enough that a stuck
// peer surfaces as kUnavailable instead of a hung API call.
constexpr int kBusyTimeoutMs = 5000;
// Prepared statements kept per connection. The dynamic list_devices filters
// make the set of SQL texts finite but not tiny; past this the cache starts
// over rather than growing without bound.
constexpr size_t kMaxCachedStatements = 256;

Code code_for(int extended_code) {
  switch (extended_code) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
      return Code::kConflict;
    default:
      break;
  }
  switch (extended_code & 0xff) {
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_TOOBIG:
    case SQLITE_RANGE:
      return Code::kInvalid;
    default:
      return Code::kUnavailable;
  }
}

class Connection final : public sql::Session {
 public:
  Connection(const std::string& path, bool writer) {
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
    if (writer) flags |= SQLITE_OPEN_CREATE;
    int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
    if (rc != SQLITE_OK) {
      std::string message = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
      sqlite3_close_v2(db_);
      db_ = nullptr;
      throw std::runtime_error("store: cannot open SQLite database " + path + ": " + message +
                               "; check store.url and that the directory is writable");
    }
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_timeout(db_, kBusyTimeoutMs);
    std::string pragmas =
        "PRAGMA foreign_keys=ON;"
        "PRAGMA synchronous=FULL;";  // see the header: WAL + FULL = durable commits
    if (!writer) pragmas += "PRAGMA query_only=ON;";
    auto status = exec_script(pragmas);
    if (status.ok() && writer) status = enable_wal(path);
    if (!status.ok()) {
      sqlite3_close_v2(db_);  // the destructor does not run for a throwing constructor
      db_ = nullptr;
      throw std::runtime_error("store: cannot configure SQLite database " + path + ": " +
                               status.message);
    }
  }
  ~Connection() override {
    clear_statements();
    sqlite3_close_v2(db_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  Status exec(const std::string& sql, const std::vector<sql::Param>& params,
              sql::ExecResult& result) override {
    result.rows.clear();
    result.affected = 0;
    sqlite3_stmt* statement = nullptr;
    if (auto status = prepare(sql, statement); !status.ok()) return status;
    Status status = bind(statement, params);
    if (status.ok()) status = step_all(statement, result);
    sqlite3_reset(statement);
    sqlite3_clear_bindings(statement);
    return status;
  }

  Status exec_script(const std::string& sql) override {
    char* error = nullptr;
    int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error);
    if (rc == SQLITE_OK) return Status::Ok();
    Status status{code_for(sqlite3_extended_errcode(db_)), error != nullptr ? error : "error"};
    sqlite3_free(error);
    return status;
  }

 private:
  // The durability and reader concurrency above depend on WAL; SQLite
  // silently keeps another mode where WAL is impossible (some network
  // filesystems), so check the answer.
  Status enable_wal(const std::string& path) {
    sql::ExecResult result;
    auto status = exec("PRAGMA journal_mode=WAL", {}, result);
    if (!status.ok()) return status;
    const std::string mode = result.rows.empty() || !result.rows[0][0] ? "" : *result.rows[0][0];
    if (mode != "wal") {
      return {Code::kUnavailable,
              "journal_mode is '" + mode + "', not 'wal'; put " + path + " on a local filesystem"};
    }
    return Status::Ok();
  }

  Status failure() const { return {code_for(sqlite3_extended_errcode(db_)), sqlite3_errmsg(db_)}; }

  Status prepare(const std::string& sql, sqlite3_stmt*& statement) {
    if (auto it = statements_.find(sql); it != statements_.end()) {
      statement = it->second;
      return Status::Ok();
    }
    if (statements_.size() >= kMaxCachedStatements) clear_statements();
    int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &statement, nullptr);
    if (rc != SQLITE_OK) return failure();
    statements_.emplace(sql, statement);
    return Status::Ok();
  }

  Status bind(sqlite3_stmt* statement, const std::vector<sql::Param>& params) {
    // Bound text and blobs are SQLITE_STATIC: `params` outlives the step
    // loop, and the bindings are cleared before exec() returns.
    for (size_t i = 0; i < params.size(); ++i) {
      const auto& param = params[i];
      const int index = static_cast<int>(i) + 1;
      int rc = SQLITE_OK;
      switch (param.kind) {
        case sql::Param::Kind::kNull:
          rc = sqlite3_bind_null(statement, index);
          break;
        case sql::Param::Kind::kInt:
        case sql::Param::Kind::kBool:
          rc = sqlite3_bind_int64(statement, index, param.number);
          break;
        case sql::Param::Kind::kText:
          rc = sqlite3_bind_text64(statement, index, param.bytes.data(), param.bytes.size(),
                                   SQLITE_STATIC, SQLITE_UTF8);
          break;
        case sql::Param::Kind::kBlob:
          // A zero-length blob must stay a blob, not NULL.
          rc = param.bytes.empty() ? sqlite3_bind_zeroblob(statement, index, 0)
                                   : sqlite3_bind_blob64(statement, index, param.bytes.data(),
                                                         param.bytes.size(), SQLITE_STATIC);
          break;
      }
      if (rc != SQLITE_OK) return failure();
    }
    return Status::Ok();
  }

  Status step_all(sqlite3_stmt* statement, sql::ExecResult& result) {
    const int columns = sqlite3_column_count(statement);
    for (;;) {
      int rc = sqlite3_step(statement);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return failure();
      sql::Row row;
      row.reserve(columns);
      for (int c = 0; c < columns; ++c) {
        if (sqlite3_column_type(statement, c) == SQLITE_NULL) {
          row.emplace_back(std::nullopt);
          continue;
        }
        const void* data = sqlite3_column_blob(statement, c);  // numbers come as text
        const int size = sqlite3_column_bytes(statement, c);
        row.emplace_back(std::string(static_cast<const char*>(data), size));
      }
      result.rows.push_back(std::move(row));
    }
    if (!sqlite3_stmt_readonly(statement)) result.affected = sqlite3_changes64(db_);
    return Status::Ok();
  }

  void clear_statements() {
    for (auto& [sql, statement] : statements_)
      sqlite3_finalize(statement);
    statements_.clear();
  }

  sqlite3* db_ = nullptr;
  std::unordered_map<std::string, sqlite3_stmt*> statements_;
};

class SqliteDatabase final : public sql::Database {
 public:
  SqliteDatabase(const std::string& path, int readers)
      : writer_(std::make_unique<Connection>(path, /*writer=*/true)),
        readers_(static_cast<size_t>(readers), [path](std::string& error) {
          try {
            return std::make_unique<Connection>(path, /*writer=*/false);
          } catch (const std::exception& e) {
            error = e.what();
            return std::unique_ptr<Connection>();
          }
        }) {}

  const char* kind() const override { return "sqlite"; }
  sql::Dialect dialect() const override { return sql::Dialect::kSqlite; }

  Status transact(sql::Access access, const sql::TransactionBody& body) override {
    if (access == sql::Access::kWrite) {
      auto writer = writer_.lock();
      // IMMEDIATE takes the write lock up front, so the transaction cannot
      // fail half-way with SQLITE_BUSY when upgrading from read to write.
      return run(**writer, "BEGIN IMMEDIATE", body);
    }
    std::string error;
    auto reader = readers_.acquire(error);
    if (!reader) return {Code::kUnavailable, error};
    return run(*reader, "BEGIN", body);
  }

 private:
  static Status run(Connection& connection, const char* begin, const sql::TransactionBody& body) {
    auto status = connection.exec_script(begin);
    if (!status.ok()) return status;
    status = body(connection);
    if (status.ok()) {
      status = connection.exec_script("COMMIT");
      if (status.ok()) return status;
    }
    connection.exec_script("ROLLBACK");  // fails harmlessly if SQLite already rolled back
    return status;
  }

  Guarded<std::unique_ptr<Connection>> writer_;
  ConnectionPool<Connection> readers_;
};

}  // namespace

std::unique_ptr<sql::Database> open_database(const std::string& path, int readers) {
  std::filesystem::path file(path);
  if (file.has_parent_path()) {
    std::error_code error;
    std::filesystem::create_directories(file.parent_path(), error);
    if (error) {
      throw std::runtime_error("store: cannot create the directory " + file.parent_path().string() +
                               " for the SQLite database: " + error.message() +
                               "; check store.url and permissions");
    }
  }
  return std::make_unique<SqliteDatabase>(path, readers);
}

}  // namespace counterlink::store::sqlite
