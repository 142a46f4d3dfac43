#include "store_url.h"

#include <stdexcept>

namespace counterlink::store {
namespace {

constexpr const char* kAcceptedForms =
    "use sqlite:///absolute/path.db, sqlite://relative/path.db or "
    "postgresql://user:password@host:port/database";

[[noreturn]] void reject(const std::string& url, const std::string& problem) {
  throw std::runtime_error("store: invalid store.url '" + url + "': " + problem + "; " +
                           kAcceptedForms);
}

}  // namespace

StoreLocation parse_store_url(const std::string& url) {
  if (url.empty()) reject(url, "it is empty");
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string::npos) reject(url, "it has no scheme");
  const std::string scheme = url.substr(0, scheme_end);
  if (scheme == "sqlite") {
    std::string path = url.substr(scheme_end + 3);
    if (path.empty() || path == "/") reject(url, "the SQLite URL has no file path");
    if (path.back() == '/') reject(url, "the SQLite path names a directory, not a file");
    if (path.find('?') != std::string::npos) {
      reject(url, "SQLite URLs take no options (the adapter sets WAL, synchronous=FULL)");
    }
    return {StoreLocation::Kind::kSqlite, path};
  }
  if (scheme == "postgres" || scheme == "postgresql") {
    return {StoreLocation::Kind::kPostgres, url};
  }
  reject(url, "unsupported scheme '" + scheme + "'");
}

}  // namespace counterlink::store
