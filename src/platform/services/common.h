// Private to the platform services: the environment every service shares,
// tenant scoping, validation, page tokens, store-error mapping and the
// conversions between store rows and counterlink.v1 messages.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "counterlink/api/http_server.h"
#include "counterlink/api/service.h"
#include "counterlink/platform/commands.h"
#include "counterlink/platform/scans.h"
#include "counterlink/platform/services.h"
#include "counterlink/platform/session_control.h"
#include "counterlink/platform/webhooks.h"
#include "counterlink/store/store.h"

namespace google::protobuf {
class Timestamp;
}

namespace counterlink::v1 {
class Tenant;
class Merchant;
class Outlet;
class ApiKey;
class Product;
class ProductCapabilities;
class Device;
class DevicePresence;
}  // namespace counterlink::v1

namespace counterlink::platform::services {

// What every service holds; shared by the handlers (immutable after setup).
struct Env {
  store::Store* store = nullptr;
  const KeyRing* keys = nullptr;
  ClockMs clock;
  SessionControl* sessions = nullptr;
  std::shared_ptr<const ConnectionInfoProvider> connection_info;
  ImportOptions import;
  CommandEngine* commands = nullptr;  // null: command methods answer 503
  ScanDesk* scans = nullptr;          // null: SubmitScanResult answers 503
  WebhookOptions webhook_options;
  WebhookDispatcher* webhooks = nullptr;  // null: redeliveries wait for another node's poll

  store::TimeMs now() const { return clock(); }
  void disconnect(const std::string& device_id) const {
    if (sessions) sessions->disconnect_device(device_id);
  }
};

using EnvPtr = std::shared_ptr<const Env>;

void register_tenant_service(api::ServiceRegistry& registry, EnvPtr env);
void register_merchant_service(api::ServiceRegistry& registry, EnvPtr env);
void register_api_key_service(api::ServiceRegistry& registry, EnvPtr env);
void register_product_service(api::ServiceRegistry& registry, EnvPtr env);
void register_device_service(api::ServiceRegistry& registry, EnvPtr env);
void register_command_service(api::ServiceRegistry& registry, EnvPtr env);
void register_event_service(api::ServiceRegistry& registry, EnvPtr env);
void register_scan_service(api::ServiceRegistry& registry, EnvPtr env);
void register_webhook_service(api::ServiceRegistry& registry, EnvPtr env);
void add_print_preview_routes(api::HttpServer& server, EnvPtr env);

// ---- Tenant scoping ----------------------------------------------------------

enum class TenantNeed {
  kOptional,  // operators may leave it empty: "any tenant"
  kRequired,  // operators must name a tenant (creating something)
};

// The tenant a call acts on. A tenant principal acts on its own tenant; a
// `requested` tenant id that is not its own answers 404 tenant_not_found (a
// tenant cannot learn whether another exists). An operator acts on
// `requested` (which must exist), or on every tenant ("") when allowed.
api::Outcome resolve_tenant(const api::CallContext& ctx, const Env& env,
                            const std::string& requested, TenantNeed need, std::string& tenant_id);

// Reads a device the caller may see (404 device_not_found otherwise).
api::Outcome load_device(const api::CallContext& ctx, const Env& env, const std::string& device_id,
                         store::Device& device);

// ---- Problems ----------------------------------------------------------------

// A store failure as a problem. kNotFound -> 404 <what>_not_found,
// kUnavailable -> 503, anything else -> 500 (callers handle kConflict and
// kInvalid where they mean something).
api::Problem store_problem(const store::Status& status, const std::string& what,
                           const std::string& id);
api::Problem not_found_problem(const std::string& what, const std::string& id,
                               const std::string& field = {});
api::Problem invalid_page_token_problem(std::string detail);
api::Problem device_quota_problem(int64_t max_devices);

// ---- Validation ----------------------------------------------------------------

// Each returns nullopt if `value` is acceptable, else a 400 invalid_argument
// naming `field`.
api::Outcome check_name(std::string_view field, std::string_view value);  // 1..128 chars
api::Outcome check_id(std::string_view field, std::string_view value, std::string_view prefix);
api::Outcome check_optional_id(std::string_view field, std::string_view value,
                               std::string_view prefix);
api::Outcome check_serial(std::string_view field, std::string_view value);
api::Outcome check_serial_prefix(std::string_view field, std::string_view value);
api::Outcome check_firmware_version(std::string_view field, std::string_view value);
api::Outcome check_label_key(std::string_view field, std::string_view key);
api::Outcome check_labels(std::string_view field, const std::map<std::string, std::string>& labels);
api::Outcome check_device_secret(std::string_view field, std::string_view value);
api::Outcome check_address(std::string_view field, std::string_view value);
api::Outcome check_capabilities(const v1::ProductCapabilities& caps, std::string_view type,
                                std::string_view field_prefix);

bool is_valid_utf8(std::string_view text);

// Page size: 0 -> 50, 1..1000 kept, else 400 naming `page_size`.
api::Outcome page_limit(int32_t page_size, int32_t& limit);

// Parses "k=v;k=v" (import CSV) into labels; nullopt-free: errors as a problem.
api::Outcome parse_label_list(std::string_view field, std::string_view text,
                              std::map<std::string, std::string>& labels);

// ---- Page tokens ---------------------------------------------------------------

// Opaque token: base64url(version, 8 bytes of SHA-256 of `filters`, last id).
// `filters` is a canonical string of the method and every filter of the call.
std::string encode_page_token(std::string_view filters, std::string_view last_id);
// The last id, or a 400 invalid_page_token when malformed or made for other
// filters.
api::Outcome decode_page_token(std::string_view token, std::string_view filters,
                               std::string& last_id);

// ---- Conversions -----------------------------------------------------------------

void set_time(google::protobuf::Timestamp* out, store::TimeMs ms);
void to_proto(const store::Tenant& row, v1::Tenant& out);
void to_proto(const store::Merchant& row, v1::Merchant& out);
void to_proto(const store::Outlet& row, v1::Outlet& out);
void to_proto(const store::ApiKey& row, v1::ApiKey& out);
void to_proto(const store::Product& row, v1::Product& out);
void to_proto(const store::Device& row, v1::Device& out);
void to_proto_presence(const store::Device& row, v1::DevicePresence& out);

}  // namespace counterlink::platform::services
