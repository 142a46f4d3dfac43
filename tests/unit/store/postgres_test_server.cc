#include "postgres_test_server.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <vector>

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <sys/statvfs.h>
#include <sys/wait.h>

namespace counterlink::store::testing {
namespace {

std::string run_script(const std::string& args, int& exit_code) {
  const std::string command =
      std::string(COUNTERLINK_SOURCE_DIR) + "/scripts/pg-test-server " + args + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) {
    exit_code = -1;
    return "cannot run " + command;
  }
  std::string output;
  char buffer[512];
  while (size_t n = fread(buffer, 1, sizeof buffer, pipe))
    output.append(buffer, n);
  const int status = pclose(pipe);
  exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  while (!output.empty() && output.back() == '\n')
    output.pop_back();
  return output;
}

// tmpfs when it has room: a throwaway cluster needs no disk, and initdb and
// the template copy run several times faster there.
std::string cluster_parent() {
  constexpr unsigned long long kEnoughBytes = 1ull << 30;
  struct statvfs shm {};
  if (statvfs("/dev/shm", &shm) == 0 &&
      static_cast<unsigned long long>(shm.f_bavail) * shm.f_frsize >= kEnoughBytes) {
    return "/dev/shm";
  }
  return "/tmp";
}

class PostgresTestServer : public ::testing::Environment {
 public:
  static PostgresTestServer& instance() {
    static auto* server = static_cast<PostgresTestServer*>(
        ::testing::AddGlobalTestEnvironment(new PostgresTestServer));
    return *server;
  }

  // The server's admin URL, starting it the first time.
  std::string admin_url(std::string& error) {
    std::lock_guard lock(mutex_);
    if (!started_) {
      started_ = true;
      std::string pattern = cluster_parent() + "/clpg-XXXXXX";
      if (mkdtemp(pattern.data()) == nullptr) {
        start_error_ = "mkdtemp failed for " + pattern;
      } else {
        directory_ = pattern;
        int code = 0;
        std::string output = run_script("start " + directory_, code);
        if (code == 0 && output.rfind("postgres", 0) == 0 &&
            output.find('\n') == std::string::npos) {
          url_ = output;
        } else {
          start_error_ =
              "scripts/pg-test-server start failed (exit " + std::to_string(code) + "): " + output;
        }
      }
    }
    error = start_error_;
    return url_;
  }

  void TearDown() override {
    std::lock_guard lock(mutex_);
    if (directory_.empty()) return;
    int code = 0;
    std::string output = run_script("stop " + directory_, code);
    if (code != 0) std::fprintf(stderr, "pg-test-server stop: %s\n", output.c_str());
    std::error_code ignored;
    std::filesystem::remove_all(directory_, ignored);  // if the script could not
    directory_.clear();
  }

 private:
  std::mutex mutex_;
  bool started_ = false;
  std::string directory_;
  std::string url_;
  std::string start_error_;
};

// Registered before main() runs, so TearDown stops a started server.
[[maybe_unused]] const PostgresTestServer& kRegistered = PostgresTestServer::instance();

}  // namespace

std::string fresh_postgres_database(std::string& error) {
  static std::mutex mutex;
  static int next = 0;
  const std::string admin = PostgresTestServer::instance().admin_url(error);
  if (admin.empty()) return "";
  std::string name;
  {
    std::lock_guard lock(mutex);
    name = "t" + std::to_string(++next);
  }
  try {
    run_raw_sql(admin, "CREATE DATABASE " + name);
  } catch (const std::exception& e) {
    error = e.what();
    return "";
  }
  return admin.substr(0, admin.rfind('/') + 1) + name;
}

std::vector<std::vector<std::string>> run_raw_sql(const std::string& url, const std::string& sql) {
  std::vector<std::vector<std::string>> rows;
  if (url.rfind("sqlite://", 0) == 0) {
    sqlite3* db = nullptr;
    if (sqlite3_open(url.substr(9).c_str(), &db) != SQLITE_OK) {
      std::string message = sqlite3_errmsg(db);
      sqlite3_close(db);
      throw std::runtime_error(message);
    }
    char* error = nullptr;
    auto collect = [](void* out, int columns, char** values, char**) {
      auto& table = *static_cast<std::vector<std::vector<std::string>>*>(out);
      table.emplace_back();
      for (int c = 0; c < columns; ++c)
        table.back().emplace_back(values[c] ? values[c] : "");
      return 0;
    };
    const int rc = sqlite3_exec(db, sql.c_str(), collect, &rows, &error);
    std::string message = error != nullptr ? error : "";
    sqlite3_free(error);
    sqlite3_close(db);
    if (rc != SQLITE_OK) throw std::runtime_error("sqlite: " + message);
    return rows;
  }
  PGconn* conn = PQconnectdb(url.c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string message = PQerrorMessage(conn);
    PQfinish(conn);
    throw std::runtime_error("connect " + url + ": " + message);
  }
  PGresult* res = PQexec(conn, sql.c_str());
  const auto state = PQresultStatus(res);
  if (state != PGRES_COMMAND_OK && state != PGRES_TUPLES_OK) {
    std::string message = PQresultErrorMessage(res);
    PQclear(res);
    PQfinish(conn);
    throw std::runtime_error("postgres: " + message);
  }
  for (int r = 0; r < PQntuples(res); ++r) {
    rows.emplace_back();
    for (int c = 0; c < PQnfields(res); ++c)
      rows.back().emplace_back(PQgetvalue(res, r, c));
  }
  PQclear(res);
  PQfinish(conn);
  return rows;
}

}  // namespace counterlink::store::testing
