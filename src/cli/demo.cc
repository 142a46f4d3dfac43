#include "cli/demo.h"

#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include "counterlink/sim/sim.h"

#include "cli/api_client.h"

namespace counterlink::cli {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kTenantName = "Demo";

std::string find_or_create_tenant(ApiClient& admin) {
  std::string token;
  do {
    ApiAnswer page =
        admin.get("/v1/tenants?page_size=1000" +
                  (token.empty() ? std::string() : "&page_token=" + url_encode(token)));
    if (!page.ok())
      throw std::runtime_error("listing tenants: HTTP " + std::to_string(page.status));
    for (const auto& t : page.body.value("tenants", json::array())) {
      if (t.value("name", "") == kTenantName) return t.value("id", "");
    }
    token = page.body.value("next_page_token", "");
  } while (!token.empty());
  ApiAnswer created = admin.post("/v1/tenants", {{"name", kTenantName}, {"kind", "other"}});
  if (!created.ok()) {
    throw std::runtime_error("creating the demo tenant: HTTP " + std::to_string(created.status));
  }
  return created.body.value("id", "");
}

// A tenant API key for trying the API, created once and kept in the data dir.
std::string demo_key(ApiClient& admin, const std::string& tenant, const fs::path& file) {
  if (fs::exists(file)) {
    std::ifstream in(file);
    std::string line;
    std::getline(in, line);
    if (!line.empty()) return line;
  }
  ApiAnswer key = admin.post("/v1/api-keys", {{"name", "demo"}, {"tenant_id", tenant}});
  if (!key.ok())
    throw std::runtime_error("creating the demo API key: HTTP " + std::to_string(key.status));
  std::string token = key.body.value("token", "");
  {
    std::ofstream out(file, std::ios::trunc);
    out << token << "\n";
  }
  ::chmod(file.c_str(), 0600);
  return token;
}

}  // namespace

Demo::Demo() = default;
Demo::~Demo() {
  stop();
}

void Demo::start(const App::Endpoints& endpoints) {
  if (endpoints.http_port == 0 || endpoints.mqtt_port == 0) {
    throw std::runtime_error("the demo needs the HTTP API and a plain-TCP MQTT listener");
  }
  const std::string api = "http://127.0.0.1:" + std::to_string(endpoints.http_port);
  ApiClient admin(api, endpoints.admin_token);
  const std::string tenant = find_or_create_tenant(admin);
  const fs::path token_file = fs::path(endpoints.data_dir) / "demo.token";
  const std::string token = demo_key(admin, tenant, token_file);

  sim::ProvisionOptions provision;
  provision.api_url = api;
  provision.token = endpoints.admin_token;
  provision.tenant = tenant;
  provision.speakers = 3;
  provision.printers = 2;
  provision.scanboxes = 2;
  provision.serial_prefix = "DEMO";
  sim::Provisioned fleet = sim::provision(provision);

  sim::FleetOptions options;
  options.mqtt_host = "127.0.0.1";
  options.mqtt_port = static_cast<uint16_t>(endpoints.mqtt_port);
  options.play_ms = 800;
  options.print_ms = 1500;
  options.paper_out_every = 7;
  options.scan_rate_per_min = 1;
  options.receipts_dir = (fs::path(endpoints.data_dir) / "demo-receipts").string();
  std::error_code ec;
  fs::create_directories(options.receipts_dir, ec);
  std::string speaker;
  for (const auto& d : fleet.devices) {
    if (d.kind == sim::DeviceKind::kSpeaker) {
      speaker = d.id;
      break;
    }
  }
  fleet_ = std::make_unique<sim::Fleet>(options, std::move(fleet.devices));
  fleet_->start();
  spdlog::info("demo.ready tenant={} devices=7 api_key_file={}", tenant, token_file.string());
  spdlog::info(
      "demo.try command=\"curl -sS -X POST {}/v1/devices/{}/broadcasts -H 'Authorization: Bearer "
      "$(cat {})' -H 'Content-Type: application/json' -d '{{\\\"amount\\\":\\\"12.50\\\","
      "\\\"channel\\\":\\\"wechat\\\",\\\"order_id\\\":\\\"demo-1\\\"}}'\"",
      api, speaker, token_file.string());
}

void Demo::stop() {
  if (fleet_) fleet_->stop();
  fleet_.reset();
}

}  // namespace counterlink::cli
