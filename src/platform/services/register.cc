#include <stdexcept>

#include "common.h"

namespace counterlink::platform {

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
  auto env = std::make_shared<services::Env>();
  env->store = deps.store;
  env->keys = deps.keys;
  env->clock = deps.clock ? deps.clock : ClockMs(system_clock_ms);
  env->sessions = deps.sessions;
  env->connection_info = deps.connection_info;
  env->import = deps.import;
  services::EnvPtr shared = env;
  services::register_tenant_service(registry, shared);
  services::register_merchant_service(registry, shared);
  services::register_api_key_service(registry, shared);
  services::register_product_service(registry, shared);
  services::register_device_service(registry, shared);
}

}  // namespace counterlink::platform
