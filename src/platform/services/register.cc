#include <stdexcept>

#include "common.h"

namespace counterlink::platform {

namespace {

services::EnvPtr make_env(const PlatformDeps& deps) {
  auto env = std::make_shared<services::Env>();
  env->store = deps.store;
  env->keys = deps.keys;
  env->clock = deps.clock ? deps.clock : ClockMs(system_clock_ms);
  env->sessions = deps.sessions;
  env->connection_info = deps.connection_info;
  env->import = deps.import;
  env->commands = deps.commands;
  env->scans = deps.scans;
  env->webhook_options = deps.webhook_options;
  env->webhooks = deps.webhooks;
  return env;
}

}  // namespace

void register_platform_services(api::ServiceRegistry& registry, const PlatformDeps& deps) {
  if (!deps.store) {
    throw std::invalid_argument("register_platform_services: PlatformDeps.store is required");
  }
  if (!deps.keys) {
    throw std::invalid_argument(
        "register_platform_services: PlatformDeps.keys (the master KeyRing) is required");
  }
  if (deps.import.batch_rows == 0) {
    throw std::invalid_argument("register_platform_services: import.batch_rows must be >= 1");
  }
  services::EnvPtr shared = make_env(deps);
  services::register_tenant_service(registry, shared);
  services::register_merchant_service(registry, shared);
  services::register_api_key_service(registry, shared);
  services::register_product_service(registry, shared);
  services::register_device_service(registry, shared);
  services::register_command_service(registry, shared);
  services::register_event_service(registry, shared);
  services::register_scan_service(registry, shared);
  services::register_webhook_service(registry, shared);
}

void add_platform_raw_routes(api::HttpServer& server, const PlatformDeps& deps) {
  services::add_print_preview_routes(server, make_env(deps));
}

}  // namespace counterlink::platform
