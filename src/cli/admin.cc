// `counterlink admin`: the operator CLI. It talks to the REST API (never to
// the database behind it), so it works the same against one embedded node
// or a fleet behind a load balancer.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <unistd.h>

#include "counterlink/platform/crypto.h"
#include "counterlink/platform/services.h"

#include "cli/api_client.h"
#include "commands.h"

namespace counterlink::cli {
namespace {

using nlohmann::json;

std::string env_or(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

std::string read_token_file(const std::string& path) {
  std::ifstream in(path);
  std::string token;
  std::getline(in, token);
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) {
    token.pop_back();
  }
  return token;
}

// Adds "name=value" to a query string when value is not empty.
void add_query(std::string& query, const std::string& name, const std::string& value) {
  if (value.empty()) return;
  query += query.empty() ? '?' : '&';
  query += name + "=" + url_encode(value);
}

int print_answer(const ApiAnswer& answer, bool as_json) {
  if (!answer.ok()) {
    std::cerr << "counterlink admin: " << answer.describe() << "\n";
    return 1;
  }
  (void)as_json;
  std::cout << answer.body.dump(2) << "\n";
  return 0;
}

// Prints the rows of a list answer as aligned columns.
void print_table(const json& items,
                 const std::vector<std::pair<std::string, std::string>>& columns) {
  std::vector<std::vector<std::string>> rows;
  std::vector<size_t> widths;
  std::vector<std::string> header;
  for (const auto& [title, field] : columns) {
    header.push_back(title);
    widths.push_back(title.size());
  }
  rows.push_back(header);
  for (const auto& item : items) {
    std::vector<std::string> row;
    for (const auto& [title, field] : columns) {
      const json* value = &item;
      std::stringstream path(field);
      for (std::string part; std::getline(path, part, '.');) {
        if (!value->is_object() || !value->contains(part)) {
          value = nullptr;
          break;
        }
        value = &(*value)[part];
      }
      std::string text = value == nullptr     ? ""
                         : value->is_string() ? value->get<std::string>()
                                              : value->dump();
      row.push_back(text);
    }
    rows.push_back(row);
  }
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i)
      widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) {
      std::cout << row[i];
      if (i + 1 < row.size()) std::cout << std::string(widths[i] - row[i].size() + 2, ' ');
    }
    std::cout << "\n";
  }
}

// Walks every page of a list call (page_token -> next_page_token).
int list_all(ApiClient& api, const std::string& path, const std::string& items_key,
             const std::vector<std::pair<std::string, std::string>>& columns, bool as_json,
             size_t limit) {
  json all = json::array();
  std::string token;
  do {
    std::string query = path.find('?') == std::string::npos ? "?" : "&";
    query += "page_size=" + std::to_string(std::min<size_t>(limit, 1000));
    if (!token.empty()) query += "&page_token=" + url_encode(token);
    const ApiAnswer answer = api.get(path + query);
    if (!answer.ok()) return print_answer(answer, as_json);
    for (const auto& item : answer.body.value(items_key, json::array()))
      all.push_back(item);
    token = answer.body.value("next_page_token", std::string());
  } while (!token.empty() && all.size() < limit);
  if (as_json) {
    std::cout << all.dump(2) << "\n";
  } else {
    print_table(all, columns);
  }
  return 0;
}

std::string content_type_for(const std::string& file, const std::string& format) {
  const std::string f = !format.empty() ? format : file.ends_with(".csv") ? "csv" : "ndjson";
  return f == "csv" ? "text/csv" : "application/x-ndjson";
}

// A one-line progress bar on stderr, redrawn in place on a terminal and
// printed every 10% otherwise (logs of CI jobs).
class ProgressBar {
 public:
  explicit ProgressBar(std::string label) : label_(std::move(label)), tty_(isatty(2) != 0) {
    start_ = std::chrono::steady_clock::now();
  }
  void update(uint64_t done, uint64_t total) {
    if (total == 0) return;
    const int percent = static_cast<int>(done * 100 / total);
    if (tty_) {
      const int filled = percent / 4;
      std::fprintf(stderr, "\r%s [%s%s] %3d%% %s", label_.c_str(), std::string(filled, '#').c_str(),
                   std::string(25 - filled, '.').c_str(), percent, human_bytes(done).c_str());
      std::fflush(stderr);
    } else if (percent / 10 > last_decile_) {
      last_decile_ = percent / 10;
      std::fprintf(stderr, "%s %d%% (%s sent)\n", label_.c_str(), percent,
                   human_bytes(done).c_str());
    }
  }
  void done() {
    if (tty_) std::fprintf(stderr, "\n");
  }
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  static std::string human_bytes(uint64_t n) {
    char buf[32];
    if (n >= (1u << 20)) {
      std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(n) / (1 << 20));
    } else {
      std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(n) / 1024);
    }
    return buf;
  }
  std::string label_;
  bool tty_;
  int last_decile_ = -1;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace

int run_admin(int argc, char** argv) {
  CLI::App app{"Operator CLI: tenants, API keys, products, devices (talks to the REST API)"};
  app.require_subcommand(1);
  std::string api_url = env_or("COUNTERLINK_API", "http://127.0.0.1:8080");
  std::string token = env_or("COUNTERLINK_TOKEN", "");
  std::string token_file = "./data/admin.token";
  bool as_json = false;
  app.add_option("--api", api_url, "API base URL (env COUNTERLINK_API)")->capture_default_str();
  app.add_option("--token", token, "API token ak_….secret (env COUNTERLINK_TOKEN)");
  app.add_option("--token-file", token_file,
                 "File holding the token when --token is not given (written by the first "
                 "`counterlink serve` into its data directory)")
      ->capture_default_str();
  app.add_flag("--json", as_json, "Print JSON instead of tables");

  std::string tenant;  // operators name the tenant they act on
  const auto tenant_option = [&](CLI::App* cmd) {
    cmd->add_option("--tenant", tenant, "Tenant id (operator keys act on a named tenant)");
  };

  // generate-token (offline)
  CLI::App* gen = app.add_subcommand(
      "generate-token", "Print a new random operator token for security.bootstrap_admin_token");

  // tenants
  CLI::App* tenants = app.add_subcommand("tenants", "Tenants (operators only)");
  tenants->require_subcommand(1);
  std::string name, kind = "other";
  int max_devices = 0, rate_limit = 0;
  CLI::App* tenants_create = tenants->add_subcommand("create", "Create a tenant");
  tenants_create->add_option("--name", name, "Display name")->required();
  tenants_create->add_option("--kind", kind, "aggregator | saas | merchant_group | other")
      ->capture_default_str();
  tenants_create->add_option("--max-devices", max_devices, "Device quota, 0 = unlimited");
  tenants_create->add_option("--rate-limit", rate_limit, "API requests per second, 0 = unlimited");
  CLI::App* tenants_list = tenants->add_subcommand("list", "List tenants");

  // keys
  CLI::App* keys = app.add_subcommand("keys", "API keys");
  keys->require_subcommand(1);
  bool admin_scope = false;
  CLI::App* keys_create = keys->add_subcommand("create", "Create an API key (secret shown once)");
  keys_create->add_option("--name", name, "What the key is for")->required();
  keys_create->add_flag("--admin", admin_scope, "Operator scope instead of a tenant key");
  tenant_option(keys_create);
  CLI::App* keys_list = keys->add_subcommand("list", "List API keys");
  tenant_option(keys_list);
  std::string id;
  CLI::App* keys_revoke = keys->add_subcommand("revoke", "Revoke an API key");
  keys_revoke->add_option("id", id, "Key id ak_…")->required();

  // products
  CLI::App* products = app.add_subcommand("products", "Products (device models)");
  products->require_subcommand(1);
  std::string type, firmware_line;
  int paper_width = 0;
  std::vector<std::string> locales;
  CLI::App* products_create = products->add_subcommand("create", "Create a product");
  products_create->add_option("--name", name, "Model name")->required();
  products_create->add_option("--type", type, "speaker | printer | scanbox | generic")->required();
  products_create->add_option("--paper-width", paper_width, "Printers: 58 or 80 (mm)");
  products_create->add_option("--locale", locales, "Speakers: zh-CN, en (repeatable)");
  products_create->add_option("--firmware-line", firmware_line, "Firmware line, e.g. v2");
  tenant_option(products_create);
  CLI::App* products_list = products->add_subcommand("list", "List products");
  tenant_option(products_list);

  // devices
  CLI::App* devices = app.add_subcommand("devices", "Devices");
  devices->require_subcommand(1);
  std::string product, serial, serial_prefix, file, format, secrets_out;
  std::vector<std::string> labels;
  size_t limit = 1000;
  CLI::App* devices_create =
      devices->add_subcommand("create", "Register a device (secret shown once)");
  devices_create->add_option("--product", product, "Product id pd_…")->required();
  devices_create->add_option("--serial", serial, "Serial number (unique per product)")->required();
  devices_create->add_option("--label", labels, "key=value (repeatable)");
  tenant_option(devices_create);
  CLI::App* devices_get = devices->add_subcommand("get", "Show a device");
  devices_get->add_option("id", id, "Device id dv_…")->required();
  CLI::App* devices_list = devices->add_subcommand("list", "List devices");
  devices_list->add_option("--product", product, "Only this product");
  devices_list->add_option("--serial-prefix", serial_prefix, "Serial numbers starting with");
  devices_list->add_option("--label", labels, "key=value (repeatable; all must match)");
  devices_list->add_option("--limit", limit, "At most this many rows")->capture_default_str();
  tenant_option(devices_list);
  CLI::App* devices_import = devices->add_subcommand(
      "import", "Bulk-import devices from CSV or JSON lines, with progress and a final rate");
  devices_import->add_option("file", file, "CSV (header: serial,product_id,…) or .jsonl")
      ->required()
      ->check(CLI::ExistingFile);
  devices_import->add_option("--format", format, "csv | ndjson (default: from the extension)");
  devices_import->add_option("--secrets-out", secrets_out,
                             "Write id,serial,secret of created devices to this CSV file");
  tenant_option(devices_import);
  CLI::App* devices_conn =
      devices->add_subcommand("connection-info", "Print a device's MQTT connection parameters");
  devices_conn->add_option("id", id, "Device id dv_…")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  if (gen->parsed()) {
    std::cout << platform::new_resource_id("ak_", platform::system_clock_ms()) << "."
              << platform::generate_api_key_secret() << "\n";
    return 0;
  }

  if (token.empty()) token = read_token_file(token_file);
  if (token.empty()) {
    std::cerr << "counterlink admin: no API token: pass --token, set COUNTERLINK_TOKEN, or run "
                 "from the directory whose data/admin.token the server wrote (--token-file)\n";
    return 2;
  }
  ApiClient api(api_url, token);

  if (tenants_create->parsed()) {
    return print_answer(api.post("/v1/tenants", {{"name", name},
                                                 {"kind", kind},
                                                 {"max_devices", max_devices},
                                                 {"api_rate_limit", rate_limit}}),
                        as_json);
  }
  if (tenants_list->parsed()) {
    return list_all(api, "/v1/tenants", "tenants",
                    {{"ID", "id"}, {"NAME", "name"}, {"KIND", "kind"}, {"DISABLED", "disabled"}},
                    as_json, limit);
  }
  if (keys_create->parsed()) {
    json body = {{"name", name}};
    if (admin_scope) body["scope"] = "admin";
    if (!tenant.empty()) body["tenant_id"] = tenant;
    const ApiAnswer answer = api.post("/v1/api-keys", body);
    if (answer.ok() && !as_json) {
      std::cout << "key id: " << answer.body["api_key"].value("id", "") << "\n"
                << "token:  " << answer.body.value("token", "") << "\n"
                << "The secret is shown only now; store it in your secret manager.\n";
      return 0;
    }
    return print_answer(answer, as_json);
  }
  if (keys_list->parsed()) {
    std::string query;
    add_query(query, "tenant_id", tenant);
    return list_all(api, "/v1/api-keys" + query, "api_keys",
                    {{"ID", "id"},
                     {"NAME", "name"},
                     {"SCOPE", "scope"},
                     {"TENANT", "tenant_id"},
                     {"REVOKED", "revoke_time"}},
                    as_json, limit);
  }
  if (keys_revoke->parsed()) {
    return print_answer(api.post("/v1/api-keys/" + url_encode(id) + ":revoke", json::object()),
                        as_json);
  }
  if (products_create->parsed()) {
    json caps = json::object();
    if (paper_width != 0) caps["paper_width_mm"] = paper_width;
    if (!locales.empty()) caps["locales"] = locales;
    if (!firmware_line.empty()) caps["firmware_line"] = firmware_line;
    json body = {{"name", name}, {"type", type}, {"capabilities", caps}};
    if (!tenant.empty()) body["tenant_id"] = tenant;
    return print_answer(api.post("/v1/products", body), as_json);
  }
  if (products_list->parsed()) {
    std::string query;
    add_query(query, "tenant_id", tenant);
    return list_all(api, "/v1/products" + query, "products",
                    {{"ID", "id"}, {"NAME", "name"}, {"TYPE", "type"}}, as_json, limit);
  }
  if (devices_create->parsed()) {
    json body = {{"product_id", product}, {"serial", serial}};
    json label_map = json::object();
    for (const auto& label : labels) {
      const size_t eq = label.find('=');
      if (eq == std::string::npos) {
        std::cerr << "counterlink admin: --label expects key=value, got '" << label << "'\n";
        return 2;
      }
      label_map[label.substr(0, eq)] = label.substr(eq + 1);
    }
    body["labels"] = label_map;
    if (!tenant.empty()) body["tenant_id"] = tenant;
    return print_answer(api.post("/v1/devices", body), as_json);
  }
  if (devices_get->parsed()) {
    return print_answer(api.get("/v1/devices/" + url_encode(id)), as_json);
  }
  if (devices_list->parsed()) {
    std::string query;
    add_query(query, "tenant_id", tenant);
    add_query(query, "product_id", product);
    add_query(query, "serial_prefix", serial_prefix);
    for (const auto& label : labels)
      add_query(query, "label", label);
    return list_all(api, "/v1/devices" + query, "devices",
                    {{"ID", "id"},
                     {"SERIAL", "serial"},
                     {"PRODUCT", "product_id"},
                     {"ONLINE", "presence.online"},
                     {"FIRMWARE", "firmware_version"}},
                    as_json, limit);
  }
  if (devices_import->parsed()) {
    std::string query;
    add_query(query, "tenant_id", tenant);
    ProgressBar bar("import " + file);
    const ApiAnswer answer =
        api.upload("/v1/devices:import" + query, file, content_type_for(file, format),
                   [&bar](uint64_t sent, uint64_t total) { bar.update(sent, total); });
    bar.done();
    if (!answer.ok()) return print_answer(answer, as_json);
    const double seconds = bar.seconds();
    const int imported = answer.body.value("imported", 0);
    const int failed = answer.body.value("failed", 0);
    if (!secrets_out.empty()) {
      std::ofstream out(secrets_out);
      out << "id,serial,secret\n";
      for (const auto& d : answer.body.value("devices", json::array())) {
        out << d.value("id", "") << "," << d.value("serial", "") << "," << d.value("secret", "")
            << "\n";
      }
    }
    if (as_json) {
      json summary = answer.body;
      summary.erase("devices");
      std::cout << summary.dump(2) << "\n";
    } else {
      for (const auto& e : answer.body.value("errors", json::array())) {
        std::cout << "row " << e.value("row", 0) << ": " << e.value("field", "") << ": "
                  << e.value("message", "") << " (" << e.value("code", "") << ")\n";
      }
      if (answer.body.value("errors_omitted", 0) > 0) {
        std::cout << "… and " << answer.body.value("errors_omitted", 0) << " more row errors\n";
      }
    }
    char rate[128];
    std::snprintf(rate, sizeof rate, "imported %d devices, %d rows failed, in %.1f s (%.0f rows/s)",
                  imported, failed, seconds, seconds > 0 ? (imported + failed) / seconds : 0.0);
    std::cerr << rate << "\n";
    return failed == 0 ? 0 : 3;
  }
  if (devices_conn->parsed()) {
    const ApiAnswer answer = api.get("/v1/devices/" + url_encode(id) + "/connection-info");
    if (!answer.ok() || as_json) return print_answer(answer, as_json);
    const json& b = answer.body;
    std::cout << "client id:  " << b.value("client_id", "") << "\n"
              << "username:   " << b.value("username_format", "") << "\n"
              << "password:   " << b.value("password_format", "") << "\n"
              << "topics:     " << b.value("topic_prefix", "") << "\n";
    for (const auto& e : b.value("endpoints", json::array())) {
      std::cout << "endpoint:   " << e.value("scheme", "") << "://" << e.value("host", "") << ":"
                << e.value("port", 0) << e.value("path", "") << "\n";
    }
    std::cout << "clock skew: ±" << b.value("timestamp_window_s", 0)
              << " s (see docs/device-protocol.md)\n";
    return 0;
  }
  std::cout << app.help();
  return 0;
}

}  // namespace counterlink::cli
