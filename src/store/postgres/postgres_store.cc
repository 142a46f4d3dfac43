#include "postgres/postgres_store.h"

#include <charconv>
#include <stdexcept>
#include <unordered_map>

#include <libpq-fe.h>
#include <spdlog/spdlog.h>

#include "connection_pool.h"

namespace counterlink::store::postgres {
namespace {

constexpr Oid kByteaOid = 17;
// Seconds libpq waits for a connection; a dead host must not hang a call.
constexpr const char* kConnectTimeoutSeconds = "10";
// See the SQLite adapter: dynamic filters make the SQL set finite but large.
constexpr size_t kMaxPreparedStatements = 256;

std::string trim(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
    text.pop_back();
  return text;
}

// "SELECT ... WHERE a = ? AND b = ?" -> "... a = $1 AND b = $2". The shared
// SQL never has '?' inside literals or as a jsonb operator.
std::string number_placeholders(const std::string& sql) {
  std::string out;
  out.reserve(sql.size() + 16);
  int next = 1;
  for (char c : sql) {
    if (c == '?') {
      out += '$';
      out += std::to_string(next++);
    } else {
      out += c;
    }
  }
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return 0;
}

// bytea in text results is "\x0a1b..." (bytea_output=hex, the default since 9.0).
std::string decode_bytea(const char* text, int length) {
  if (length < 2 || text[0] != '\\' || text[1] != 'x') return std::string(text, length);
  std::string out;
  out.reserve((length - 2) / 2);
  for (int i = 2; i + 1 < length; i += 2) {
    out.push_back(static_cast<char>(hex_value(text[i]) << 4 | hex_value(text[i + 1])));
  }
  return out;
}

class Connection final : public sql::Session {
 public:
  explicit Connection(PGconn* conn) : conn_(conn) {}
  ~Connection() override { PQfinish(conn_); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // nullptr with `error` set if the server cannot be reached.
  static std::unique_ptr<Connection> connect(const std::string& url, std::string& error) {
    // Our defaults first: with expand_dbname the URL's own settings (which
    // follow) override them.
    const char* keys[] = {"connect_timeout", "application_name", "dbname", nullptr};
    const char* values[] = {kConnectTimeoutSeconds, "counterlink", url.c_str(), nullptr};
    PGconn* conn = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
    if (conn == nullptr) {
      error = "out of memory";
      return nullptr;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
      error = trim(PQerrorMessage(conn));
      PQfinish(conn);
      return nullptr;
    }
    // Server notices ("relation exists, skipping"...) go to the debug log,
    // not to libpq's default of stderr.
    PQsetNoticeProcessor(
        conn, [](void*, const char* message) { spdlog::debug("store: postgres: {}", message); },
        nullptr);
    return std::make_unique<Connection>(conn);
  }

  bool broken() const { return PQstatus(conn_) != CONNECTION_OK; }

  Status exec(const std::string& sql, const std::vector<sql::Param>& params,
              sql::ExecResult& result) override {
    result.rows.clear();
    result.affected = 0;
    const std::string* name = nullptr;
    if (auto status = prepare(sql, params, name); !status.ok()) return status;

    std::vector<const char*> values(params.size());
    std::vector<int> lengths(params.size());
    std::vector<int> formats(params.size());
    std::vector<std::string> numbers(params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      const auto& param = params[i];
      switch (param.kind) {
        case sql::Param::Kind::kNull:
          values[i] = nullptr;
          break;
        case sql::Param::Kind::kInt:
          numbers[i] = std::to_string(param.number);
          values[i] = numbers[i].c_str();
          break;
        case sql::Param::Kind::kBool:
          values[i] = param.number != 0 ? "true" : "false";
          break;
        case sql::Param::Kind::kText:
          values[i] = param.bytes.c_str();
          break;
        case sql::Param::Kind::kBlob:
          values[i] = param.bytes.data();
          lengths[i] = static_cast<int>(param.bytes.size());
          formats[i] = 1;  // binary: raw bytes, no escaping
          break;
      }
    }
    PGresult* res = PQexecPrepared(conn_, name->c_str(), static_cast<int>(params.size()),
                                   values.data(), lengths.data(), formats.data(), 0);
    Status status = collect(res, result);
    PQclear(res);
    return status;
  }

  Status exec_script(const std::string& sql) override {
    PGresult* res = PQexec(conn_, sql.c_str());
    sql::ExecResult ignored;
    Status status = collect(res, ignored);
    PQclear(res);
    return status;
  }

 private:
  Status prepare(const std::string& sql, const std::vector<sql::Param>& params,
                 const std::string*& name) {
    if (auto it = prepared_.find(sql); it != prepared_.end()) {
      name = &it->second;
      return Status::Ok();
    }
    if (prepared_.size() >= kMaxPreparedStatements) {
      auto status = exec_script("DEALLOCATE ALL");
      if (!status.ok()) return status;
      prepared_.clear();
    }
    // Blobs are typed bytea (they arrive in binary); everything else is left
    // for the server to infer from the column or operator it meets.
    std::vector<Oid> types(params.size(), 0);
    for (size_t i = 0; i < params.size(); ++i) {
      if (params[i].kind == sql::Param::Kind::kBlob) types[i] = kByteaOid;
    }
    // Appended, not "s" + to_string(): GCC 12 -O2 warns falsely (-Wrestrict) on that.
    std::string statement_name = "s";
    statement_name += std::to_string(next_statement_++);
    PGresult* res = PQprepare(conn_, statement_name.c_str(), number_placeholders(sql).c_str(),
                              static_cast<int>(types.size()), types.data());
    sql::ExecResult ignored;
    Status status = collect(res, ignored);
    PQclear(res);
    if (!status.ok()) return status;
    name = &prepared_.emplace(sql, std::move(statement_name)).first->second;
    return Status::Ok();
  }

  Status collect(PGresult* res, sql::ExecResult& result) {
    const ExecStatusType state = res != nullptr ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (state == PGRES_COMMAND_OK || state == PGRES_TUPLES_OK) {
      const int rows = PQntuples(res);
      const int columns = PQnfields(res);
      result.rows.reserve(rows);
      for (int r = 0; r < rows; ++r) {
        sql::Row row;
        row.reserve(columns);
        for (int c = 0; c < columns; ++c) {
          if (PQgetisnull(res, r, c)) {
            row.emplace_back(std::nullopt);
            continue;
          }
          const char* text = PQgetvalue(res, r, c);
          const int length = PQgetlength(res, r, c);
          row.emplace_back(PQftype(res, c) == kByteaOid ? decode_bytea(text, length)
                                                        : std::string(text, length));
        }
        result.rows.push_back(std::move(row));
      }
      const char* tuples = PQcmdTuples(res);
      if (tuples != nullptr && *tuples != '\0') {
        std::from_chars(tuples, tuples + std::char_traits<char>::length(tuples), result.affected);
      }
      return Status::Ok();
    }
    if (res == nullptr || broken()) {
      return {Code::kUnavailable, "connection lost: " + trim(PQerrorMessage(conn_))};
    }
    const char* sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    std::string state_code = sqlstate != nullptr ? sqlstate : "";
    Status status{Code::kUnavailable, trim(PQresultErrorMessage(res))};
    if (state_code == "23505") {
      status.code = Code::kConflict;  // unique_violation
    } else if (state_code.rfind("23", 0) == 0 || state_code.rfind("22", 0) == 0) {
      status.code = Code::kInvalid;  // other integrity (FK, not null, check) or bad data
    }
    return status;
  }

  PGconn* conn_;
  std::unordered_map<std::string, std::string> prepared_;  // SQL text -> statement name
  int next_statement_ = 0;
};

class PostgresDatabase final : public sql::Database {
 public:
  PostgresDatabase(const std::string& url, int pool_size)
      : url_(url), pool_(static_cast<size_t>(pool_size), [url](std::string& error) {
          return Connection::connect(url, error);
        }) {
    std::string error;
    auto first = Connection::connect(url, error);
    if (first == nullptr) {
      throw std::runtime_error("store: cannot connect to PostgreSQL at " + redact_url(url) + ": " +
                               error +
                               "; check store.url and that the server is running and "
                               "accepts this user");
    }
    pool_.adopt(std::move(first));
  }

  const char* kind() const override { return "postgres"; }
  sql::Dialect dialect() const override { return sql::Dialect::kPostgres; }

  Status transact(sql::Access access, const sql::TransactionBody& body) override {
    const char* begin = access == sql::Access::kRead ? "BEGIN READ ONLY" : "BEGIN";
    Status status;
    for (int attempt = 0; attempt < 2; ++attempt) {
      std::string error;
      auto connection = pool_.acquire(error);
      if (!connection) {
        return {Code::kUnavailable,
                "cannot connect to PostgreSQL at " + redact_url(url_) + ": " + error};
      }
      bool commit_sent = false;
      status = connection->exec_script(begin);
      if (status.ok()) status = body(*connection);
      if (status.ok()) {
        commit_sent = true;
        status = connection->exec_script("COMMIT");
      } else if (!connection->broken()) {
        connection->exec_script("ROLLBACK");
      }
      if (!connection->broken()) return status;
      connection.discard();
      // Before COMMIT the server rolled the transaction back with the
      // connection: running it again cannot apply it twice.
      const bool retry_is_safe = !commit_sent || access == sql::Access::kRead;
      if (!retry_is_safe) {
        return {Code::kUnavailable,
                "connection lost during COMMIT; the outcome is unknown: " + status.message};
      }
    }
    return status;
  }

 private:
  const std::string url_;
  ConnectionPool<Connection> pool_;
};

}  // namespace

std::string redact_url(const std::string& url) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return url;
  const auto authority_start = scheme_end + 3;
  const auto at = url.find('@', authority_start);
  const auto slash = url.find('/', authority_start);
  if (at == std::string::npos || (slash != std::string::npos && slash < at)) return url;
  const auto colon = url.find(':', authority_start);
  if (colon == std::string::npos || colon > at) return url;
  return url.substr(0, colon + 1) + "***" + url.substr(at);
}

std::unique_ptr<sql::Database> open_database(const std::string& url, int pool_size) {
  return std::make_unique<PostgresDatabase>(url, pool_size);
}

}  // namespace counterlink::store::postgres
