// provision(): the simulated fleet's products and devices through the public
// REST API (docs/api.md), one call at a time (the API's per-tenant rate
// limit applies to us like to any client), with progress lines.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <unistd.h>

#include "counterlink/sim/sim.h"

#include "cli/api_client.h"

namespace counterlink::sim {
namespace {

using cli::ApiAnswer;
using cli::ApiClient;
using cli::url_encode;
using nlohmann::json;

struct KindPlan {
  DeviceKind kind;
  const char* product_name;
  const char* serial_infix;  // SIM-<infix>-000001
  uint32_t count;
  std::string product_id;
};

json capabilities_for(DeviceKind kind) {
  // Printers take 2 KiB per MQTT message, so larger jobs come in parts.
  if (kind == DeviceKind::kPrinter)
    return json{{"paper_width_mm", 58}, {"max_payload_bytes", 2048}};
  if (kind == DeviceKind::kSpeaker) return json{{"locales", json::array({"zh-CN", "en"})}};
  return json::object();
}

class Provisioner {
 public:
  explicit Provisioner(const ProvisionOptions& options)
      : options_(options), api_(options.api_url, options.token) {}

  Provisioned run();

 private:
  std::string tenant_query(char separator) const {
    return options_.tenant.empty()
               ? std::string()
               : std::string(1, separator) + "tenant_id=" + url_encode(options_.tenant);
  }
  json with_tenant(json body) const {
    if (!options_.tenant.empty()) body["tenant_id"] = options_.tenant;
    return body;
  }
  [[noreturn]] void refuse(const std::string& what, const ApiAnswer& answer) const;
  void ensure_product(KindPlan& plan);
  // serial -> device JSON, for the product's devices whose serial starts with `prefix`.
  std::map<std::string, json> existing_devices(const std::string& product_id,
                                               const std::string& prefix);
  std::string rotate(const std::string& device_id);
  void enable(const std::string& device_id);
  // Creates one device; on 409 finds it and rotates its secret instead.
  SimDevice create_one(const KindPlan& plan, const std::string& serial);
  // Creates many with one import; serials the import reports as taken are
  // found and rotated one by one.
  std::vector<SimDevice> import_many(const KindPlan& plan, const std::vector<std::string>& serials);
  SimDevice find_and_rotate(const KindPlan& plan, const std::string& serial);
  void progress(bool force = false);
  void say(const std::string& line) const {
    if (options_.progress) options_.progress(line);
  }

  const ProvisionOptions& options_;
  ApiClient api_;
  uint64_t total_ = 0;
  uint64_t done_ = 0;
  std::chrono::steady_clock::time_point last_progress_{};
};

void Provisioner::refuse(const std::string& what, const ApiAnswer& answer) const {
  std::string message = what + ": " + answer.describe();
  if (answer.status == 401) {
    message += "; pass a valid API key with --token (env COUNTERLINK_TOKEN)";
  } else if (answer.status == 400 && options_.tenant.empty() && answer.body.is_object() &&
             answer.body.value("field", "") == "tenant_id") {
    message += "; an operator key must name the tenant with --tenant tn_...";
  }
  throw std::runtime_error(message);
}

void Provisioner::ensure_product(KindPlan& plan) {
  std::string token;
  do {
    std::string path = "/v1/products?page_size=1000" + tenant_query('&');
    if (!token.empty()) path += "&page_token=" + url_encode(token);
    const ApiAnswer answer = api_.get(path);
    if (!answer.ok()) refuse("listing products", answer);
    for (const auto& product : answer.body.value("products", json::array())) {
      if (product.value("name", "") == plan.product_name &&
          product.value("type", "") == to_string(plan.kind)) {
        plan.product_id = product.value("id", "");
        return;
      }
    }
    token = answer.body.value("next_page_token", "");
  } while (!token.empty());

  json body = with_tenant({{"name", plan.product_name},
                           {"type", to_string(plan.kind)},
                           {"capabilities", capabilities_for(plan.kind)}});
  ApiAnswer answer = api_.post("/v1/products", body);
  if (!answer.ok()) refuse(std::string("creating product \"") + plan.product_name + "\"", answer);
  plan.product_id = answer.body.value("id", "");
  say("provision: created product " + plan.product_id + " \"" + plan.product_name + "\"");
}

std::map<std::string, json> Provisioner::existing_devices(const std::string& product_id,
                                                          const std::string& prefix) {
  std::map<std::string, json> out;
  std::string token;
  do {
    std::string path = "/v1/devices?page_size=1000&product_id=" + url_encode(product_id) +
                       "&serial_prefix=" + url_encode(prefix) + tenant_query('&');
    if (!token.empty()) path += "&page_token=" + url_encode(token);
    const ApiAnswer answer = api_.get(path);
    if (!answer.ok()) refuse("listing devices", answer);
    for (const auto& device : answer.body.value("devices", json::array())) {
      out.emplace(device.value("serial", ""), device);
    }
    token = answer.body.value("next_page_token", "");
  } while (!token.empty());
  return out;
}

std::string Provisioner::rotate(const std::string& device_id) {
  const ApiAnswer answer =
      api_.post("/v1/devices/" + url_encode(device_id) + ":rotateSecret", json::object());
  if (!answer.ok()) refuse("rotating the secret of " + device_id, answer);
  return answer.body.value("secret", "");
}

void Provisioner::enable(const std::string& device_id) {
  const ApiAnswer answer =
      api_.post("/v1/devices/" + url_encode(device_id) + ":enable", json::object());
  if (!answer.ok()) refuse("enabling " + device_id, answer);
}

SimDevice Provisioner::find_and_rotate(const KindPlan& plan, const std::string& serial) {
  const ApiAnswer answer = api_.get("/v1/devices?serial=" + url_encode(serial) + "&product_id=" +
                                    url_encode(plan.product_id) + tenant_query('&'));
  if (!answer.ok()) refuse("looking up serial " + serial, answer);
  const json devices = answer.body.value("devices", json::array());
  if (devices.empty()) {
    throw std::runtime_error("serial " + serial +
                             " is taken but the device cannot be listed; check that the token "
                             "belongs to the tenant that owns it");
  }
  SimDevice device{devices[0].value("id", ""), "", plan.kind, serial};
  if (devices[0].value("disabled", false)) enable(device.id);
  device.secret = rotate(device.id);
  return device;
}

SimDevice Provisioner::create_one(const KindPlan& plan, const std::string& serial) {
  const ApiAnswer answer = api_.post("/v1/devices", with_tenant({{"product_id", plan.product_id},
                                                                 {"serial", serial},
                                                                 {"labels", {{"sim", "1"}}}}));
  if (answer.status == 409) return find_and_rotate(plan, serial);
  if (!answer.ok()) refuse("creating device " + serial, answer);
  return SimDevice{answer.body["device"].value("id", ""), answer.body.value("secret", ""),
                   plan.kind, serial};
}

std::vector<SimDevice> Provisioner::import_many(const KindPlan& plan,
                                                const std::vector<std::string>& serials) {
  char path[] = "/tmp/counterlink-sim-import-XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0) throw std::runtime_error("cannot create a temporary file in /tmp for the import");
  ::close(fd);
  {
    std::ofstream out(path, std::ios::trunc);
    for (const auto& serial : serials)
      out << json{{"serial", serial}, {"labels", {{"sim", "1"}}}}.dump() << "\n";
  }
  say("provision: importing " + std::to_string(serials.size()) + " \"" + plan.product_name +
      "\" devices in one request");
  const ApiAnswer answer = api_.upload(
      "/v1/devices:import?product_id=" + url_encode(plan.product_id) + tenant_query('&'), path,
      "application/x-ndjson", {});
  ::unlink(path);
  if (!answer.ok()) refuse("importing devices", answer);

  std::map<std::string, SimDevice> by_serial;
  for (const auto& d : answer.body.value("devices", json::array())) {
    const std::string serial = d.value("serial", "");
    by_serial[serial] = SimDevice{d.value("id", ""), d.value("secret", ""), plan.kind, serial};
  }
  done_ += by_serial.size();
  progress();
  for (const auto& e : answer.body.value("errors", json::array())) {
    const std::string code = e.value("code", "");
    const int row = e.value("row", 0);
    if (code != "serial_taken" || row < 1 || static_cast<size_t>(row) > serials.size()) {
      throw std::runtime_error("importing devices: row " + std::to_string(row) + ": " +
                               e.value("message", "") + " (code " + code + ")");
    }
  }
  if (answer.body.value("errors_omitted", 0) > 0) {
    throw std::runtime_error(
        "importing devices: " + std::to_string(answer.body.value("errors_omitted", 0)) +
        " more rows failed; run again to pick them up one by one");
  }
  std::vector<SimDevice> out;
  out.reserve(serials.size());
  for (const auto& serial : serials) {
    auto it = by_serial.find(serial);
    if (it != by_serial.end()) {
      out.push_back(std::move(it->second));
    } else {
      // Registered meanwhile (serial_taken): learn a secret the slow way.
      out.push_back(find_and_rotate(plan, serial));
      ++done_;
      progress();
    }
  }
  return out;
}

void Provisioner::progress(bool force) {
  const auto now = std::chrono::steady_clock::now();
  if (!force && now - last_progress_ < std::chrono::seconds(1)) return;
  last_progress_ = now;
  say("provision: " + std::to_string(done_) + "/" + std::to_string(total_) + " devices");
}

Provisioned Provisioner::run() {
  if (options_.token.empty()) {
    throw std::runtime_error(
        "no API token: pass --token (a tenant key, or an operator key "
        "with --tenant)");
  }
  if (options_.tenant.empty()) {
    // Only operator keys may list tenants. Without --tenant such a key would
    // see (and rotate) every tenant's simulated devices.
    const ApiAnswer answer = api_.get("/v1/tenants?page_size=1");
    if (answer.status == 0) refuse("reaching the API", answer);
    if (answer.ok()) {
      throw std::runtime_error(
          "this is an operator key: name the tenant to simulate in with --tenant tn_... "
          "(`counterlink admin tenants list`), or use one of the tenant's API keys");
    }
  }
  std::vector<KindPlan> plans = {
      {DeviceKind::kSpeaker, "Simulated speaker", "SPK", options_.speakers, {}},
      {DeviceKind::kPrinter, "Simulated printer", "PRN", options_.printers, {}},
      {DeviceKind::kScanBox, "Simulated scan box", "SCN", options_.scanboxes, {}},
  };
  total_ = uint64_t{options_.speakers} + options_.printers + options_.scanboxes;
  last_progress_ = std::chrono::steady_clock::now();
  Provisioned result;
  for (auto& plan : plans) {
    if (plan.count == 0) continue;
    ensure_product(plan);
    const std::string prefix = options_.serial_prefix + "-" + plan.serial_infix + "-";
    const auto existing = existing_devices(plan.product_id, prefix);
    std::vector<std::string> serials;
    std::vector<std::string> missing;
    for (uint32_t i = 1; i <= plan.count; ++i) {
      char number[16];
      std::snprintf(number, sizeof number, "%06u", i);
      serials.push_back(prefix + number);
      if (existing.count(serials.back()) == 0) missing.push_back(serials.back());
    }
    std::map<std::string, SimDevice> created;
    if (!missing.empty() && missing.size() >= options_.bulk_threshold) {
      for (auto& device : import_many(plan, missing))
        created.emplace(device.serial, std::move(device));
    }
    for (const auto& serial : serials) {
      if (auto it = created.find(serial); it != created.end()) {
        result.devices.push_back(std::move(it->second));
        continue;
      }
      if (auto it = existing.find(serial); it != existing.end()) {
        SimDevice device{it->second.value("id", ""), "", plan.kind, serial};
        if (it->second.value("disabled", false)) enable(device.id);
        device.secret = rotate(device.id);
        result.devices.push_back(std::move(device));
      } else {
        result.devices.push_back(create_one(plan, serial));
      }
      ++done_;
      progress();
    }
  }
  progress(/*force=*/true);

  if (!result.devices.empty()) {
    const ApiAnswer answer =
        api_.get("/v1/devices/" + url_encode(result.devices.front().id) + "/connection-info");
    if (answer.ok()) {
      for (const auto& endpoint : answer.body.value("endpoints", json::array())) {
        if (endpoint.value("scheme", "") == "mqtt") {
          result.mqtt_host = endpoint.value("host", "");
          result.mqtt_port = static_cast<uint16_t>(endpoint.value("port", 0));
          break;
        }
      }
    } else {
      say("provision: no MQTT endpoint from connection-info (" + answer.describe() + ")");
    }
  }
  return result;
}

}  // namespace

Provisioned provision(const ProvisionOptions& options) {
  Provisioner provisioner(options);
  return provisioner.run();
}

}  // namespace counterlink::sim
