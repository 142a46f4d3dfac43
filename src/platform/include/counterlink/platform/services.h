// The business API of the platform: tenants, merchants and outlets, API
// keys, products, devices (CRUD, credentials, presence, bulk import) — the
// handlers of the counterlink.v1 services in proto/ — plus the API-key
// CallAuthenticator and the per-tenant RateLimiter the transports call
// before any handler.
//
// The app wires it in one place:
//
//   api::ServiceRegistry registry;
//   platform::register_platform_services(registry, {.store = store.get(), .keys = &keys,
//                                                   .sessions = &session_control,
//                                                   .connection_info = provider});
//   auto auth = std::make_shared<platform::ApiKeyAuthenticator>(*store, keys);
//   auto limiter = std::make_shared<platform::TenantRateLimiter>(*store);
//
// Threading: every handler, authenticate() and admit() may be called from
// any API worker thread concurrently; they block on the store.
//
// Errors: handlers answer api::Problem with stable codes (docs/api.md lists
// them); nothing here throws at run time. register_platform_services throws
// std::invalid_argument on missing dependencies (start-up).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "counterlink/api/service.h"
#include "counterlink/platform/clock.h"
#include "counterlink/platform/webhooks.h"
#include "counterlink/store/store.h"

namespace counterlink::api {
class HttpServer;
}

namespace counterlink::platform {

class KeyRing;
class SessionControl;
class CommandEngine;
class ScanDesk;

// ---- Connection info -------------------------------------------------------

struct MqttEndpointInfo {
  std::string scheme;  // "mqtt" | "mqtts" | "wss"
  std::string host;
  int port = 0;
  bool tls = false;
  std::string path;  // WebSocket path, "" for TCP
};

struct DeviceConnectionInfo {
  std::vector<MqttEndpointInfo> endpoints;  // preferred first
  std::string username_format;              // e.g. "<device_id>;<unix_ms>;hmacsha256;v1"
  std::string password_format;              // how the password is computed
  std::string topic_prefix;                 // e.g. "devices/dv_.../"
  std::string command_topic;                // topic the device subscribes to
  int timestamp_window_s = 300;
  std::vector<std::string> protocol_versions;  // "3.1.1", "5.0"
};

// What GetConnectionInfo answers for a device; the values come from the
// gateway's configuration and the device protocol, which the app knows.
class ConnectionInfoProvider {
 public:
  virtual ~ConnectionInfoProvider() = default;
  // Called for a device the caller is allowed to see. Any thread.
  virtual DeviceConnectionInfo connection_info(const store::Device& device) const = 0;
};

// ---- The services ----------------------------------------------------------

struct ImportOptions {
  size_t batch_rows = 1000;      // rows per store transaction
  size_t max_errors = 1000;      // row errors listed in the answer (the rest are counted)
  size_t max_row_bytes = 65536;  // a longer CSV record / JSON line is a row error
};

struct PlatformDeps {
  store::Store* store = nullptr;  // required; outlives the registry
  // Required, outlives the registry: seals device secrets and API signing keys.
  const KeyRing* keys = nullptr;
  ClockMs clock;  // empty = system clock
  // Ends live MQTT sessions of devices that are disabled or deleted (see
  // session_control.h); nullptr = no gateway in this process. Outlives the
  // registry.
  SessionControl* sessions = nullptr;
  // Empty: GetConnectionInfo answers 503 `connection_info_unavailable`.
  std::shared_ptr<const ConnectionInfoProvider> connection_info;
  ImportOptions import;
  // The delivery engine (commands.h); nullptr: CommandService and
  // EventService answer 503. Outlives the registry.
  CommandEngine* commands = nullptr;
  // Scan-box payments (scans.h); nullptr: SubmitScanResult answers 503.
  ScanDesk* scans = nullptr;
  // Webhooks (webhooks.h): the URL rules (allow_http) and the ping's
  // request timeout. `webhooks` is this process's dispatcher, woken by
  // redeliveries; nullptr: deliveries are stored and another node sends
  // them. Outlives the registry.
  WebhookOptions webhook_options;
  WebhookDispatcher* webhooks = nullptr;
};

// Registers every counterlink.v1 method (TenantService, MerchantService,
// ApiKeyService, ProductService, DeviceService, CommandService, EventService,
// ScanService, WebhookService) into `registry`.
void register_platform_services(api::ServiceRegistry& registry, const PlatformDeps& deps);

// The routes that answer something other than a proto message (receipt
// previews as PNG: GET /v1/print-jobs/{id}/preview.png and POST
// /v1/print-jobs:preview); call before server.start().
void add_platform_raw_routes(api::HttpServer& server, const PlatformDeps& deps);

// A new resource id: `prefix` ("dv_", ...) + 26 characters of Crockford
// base32 (48-bit milliseconds, then 80 bits that are random for a new
// millisecond and incremented within one), so ids sort by creation time and
// are strictly increasing within this process. Thread-safe.
std::string new_resource_id(std::string_view prefix, store::TimeMs now_ms);

// The HMAC request-signing key of an API key: HMAC-SHA256(secret,
// "counterlink-request-signing"), raw 32 bytes. Stored sealed in
// store::ApiKey::signing_key_sealed (aad = key id).
std::string api_signing_key(std::string_view secret);

// ---- Authentication ----------------------------------------------------------

struct ApiKeyAuthOptions {
  // Accept `Authorization: Bearer` on plain HTTP from non-loopback peers.
  // Off by default: a bearer secret on plain HTTP is readable on the path.
  bool allow_insecure_bearer = false;
  int signature_window_s = 300;    // accepted |now - Timestamp| of signed requests
  int cache_ttl_ms = 5000;         // key lookups are cached this long (revocation delay)
  int touch_interval_ms = 60000;   // last_used is written at most this often per key
  size_t max_cached_keys = 10000;  // bound on the cache (cleared when exceeded)
};

// `Authorization: Bearer <key_id>.<secret>` and
// `Authorization: CL-HMAC-SHA256 Credential=<key_id>, Timestamp=<unix s>,
// Signature=<hex>` over the canonical string
//   "CL-HMAC-SHA256\n" <timestamp> "\n" <METHOD> "\n" <path and query as sent>
//   "\n" <lowercase hex SHA-256 of the body, or UNSIGNED-PAYLOAD>
// signed with api_signing_key(secret). Streamed uploads send the header
// `X-CL-Content-SHA256: UNSIGNED-PAYLOAD` and sign that literal. See
// docs/api.md for a worked example.
class ApiKeyAuthenticator : public api::CallAuthenticator {
 public:
  ApiKeyAuthenticator(store::Store& store, const KeyRing& keys, ApiKeyAuthOptions options = {},
                      ClockMs clock = {});
  ~ApiKeyAuthenticator() override;

  api::Outcome authenticate(const api::CallCredentials& credentials,
                            api::Principal& principal) override;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// ---- Quotas --------------------------------------------------------------------

struct RateLimitOptions {
  int settings_ttl_ms = 5000;   // how long a tenant's api_rate_limit is cached
  size_t max_tenants = 100000;  // bound on tracked buckets (cleared when exceeded)
};

// Token bucket per tenant: `api_rate_limit` tokens per second, bursts up to
// twice that; 0 = unlimited. Operator principals are not limited. If the
// tenant's settings cannot be read (store down) the call is admitted: the
// quota protects the service, it is not a security boundary.
class TenantRateLimiter : public api::RateLimiter {
 public:
  explicit TenantRateLimiter(store::Store& store, RateLimitOptions options = {},
                             ClockMs clock = {});
  ~TenantRateLimiter() override;

  api::Outcome admit(const api::Principal& principal) override;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace counterlink::platform
