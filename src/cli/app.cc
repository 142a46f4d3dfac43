#include "cli/app.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <system_error>
#include <thread>

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include "counterlink/api/grpc_server.h"
#include "counterlink/api/http_server.h"
#include "counterlink/api/openapi.h"
#include "counterlink/api/service.h"
#include "counterlink/gateway/gateway.h"
#include "counterlink/obs/metrics.h"
#include "counterlink/platform/commands.h"
#include "counterlink/platform/crypto.h"
#include "counterlink/platform/device_access.h"
#include "counterlink/platform/presence.h"
#include "counterlink/platform/scans.h"
#include "counterlink/platform/services.h"
#include "counterlink/platform/session_control.h"
#include "counterlink/platform/webhooks.h"
#include "counterlink/store/store.h"

#include "cl_api_proto_descriptor_set.h"

namespace counterlink::cli {
namespace fs = std::filesystem;

namespace {

// The services of the business API (proto/counterlink/v1). start() checks
// that every registered method belongs to one of them, so the document and
// the routes cannot drift apart.
const std::vector<std::string> kApiServices = {
    "counterlink.v1.TenantService", "counterlink.v1.MerchantService",
    "counterlink.v1.ApiKeyService", "counterlink.v1.ProductService",
    "counterlink.v1.DeviceService", "counterlink.v1.CommandService",
    "counterlink.v1.EventService",  "counterlink.v1.ScanService",
    "counterlink.v1.WebhookService"};

api::OpenApiInfo api_info() {
  api::OpenApiInfo info;
  info.title = "Counterlink API";
  info.version = "v1";
  info.description =
      "The business API of Counterlink, the cloud for merchant-counter IoT devices "
      "(payment speakers, cloud receipt printers, QR scan boxes). The same services are "
      "served over gRPC from proto/counterlink/v1. Guide: docs/api.md.";
  return info;
}

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

// Writes `content` to `path` readable by the owner only, atomically.
void write_private_file(const fs::path& path, const std::string& content) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) throw std::runtime_error("cannot write " + tmp.string() + ": check permissions");
    out << content;
  }
  ::chmod(tmp.c_str(), 0600);
  fs::rename(tmp, path);
}

std::string read_first_line(const fs::path& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  while (!line.empty() && (line.back() == '\r' || line.back() == ' '))
    line.pop_back();
  return line;
}

// The master keys: from the configuration, or (embedded mode) one generated
// on first start into <data_dir>/master.key as "<id> <base64>".
platform::KeyRing load_key_ring(const AppConfig& config) {
  std::vector<platform::KeyConfig> keys;
  std::string active = config.security.active_key;
  for (const auto& k : config.security.master_keys)
    keys.push_back({k.id, k.key});
  if (keys.empty()) {
    const fs::path file = fs::path(config.data_dir) / "master.key";
    if (!fs::exists(file)) {
      write_private_file(file, "k0 " + platform::KeyRing::generate_key_base64() + "\n");
      spdlog::warn(
          "counterlink.master_key_generated file={} hint=\"back this file up with the "
          "database: without it device secrets cannot be read; production deployments set "
          "security.master_keys\"",
          file.string());
    }
    const std::string line = read_first_line(file);
    const size_t space = line.find(' ');
    if (space == std::string::npos) {
      throw std::runtime_error(file.string() +
                               ": expected \"<id> <base64 key>\"; restore it from your backup");
    }
    keys.push_back({line.substr(0, space), line.substr(space + 1)});
  }
  if (active.empty()) active = keys.back().id;
  try {
    return platform::KeyRing::from_config(keys, active);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(std::string("security.master_keys: ") + e.what());
  }
}

// Ensures an operator API key exists for `token` ("ak_….secret").
void ensure_admin_key(store::Store& store, const platform::KeyRing& keys,
                      const std::string& token) {
  const size_t dot = token.find('.');
  const std::string id = token.substr(0, dot);
  const std::string secret = token.substr(dot + 1);
  auto existing = store.get_api_key(id);
  if (existing.ok()) {
    if (existing.value().scope != "admin" ||
        !platform::constant_time_equal(existing.value().secret_hash, platform::sha256(secret))) {
      throw std::runtime_error("security.bootstrap_admin_token: key " + id +
                               " exists with another secret or scope; choose a new token "
                               "(counterlink admin generate-token)");
    }
    return;
  }
  if (existing.status().code != store::Code::kNotFound) {
    throw std::runtime_error("store: " + existing.status().message);
  }
  store::ApiKey key;
  key.id = id;
  key.scope = "admin";
  key.name = "bootstrap operator key";
  key.secret_hash = platform::sha256(secret);
  key.signing_key_sealed = keys.seal(platform::api_signing_key(secret), id);
  key.created_ms = platform::system_clock_ms();
  const store::Status status = store.create_api_key(key);
  if (!status.ok() && status.code != store::Code::kConflict) {
    throw std::runtime_error("store: cannot create the operator key: " + status.message);
  }
}

// What GetConnectionInfo tells a firmware engineer: the gateway's listeners
// as seen from outside, and the device protocol's formats.
class GatewayConnectionInfo : public platform::ConnectionInfoProvider {
 public:
  GatewayConnectionInfo(std::string host, std::vector<gateway::ListenerAddress> listeners,
                        const gateway::GatewayConfig& config, int window_s)
      : host_(std::move(host)), window_s_(window_s) {
    for (const auto& l : listeners) {
      platform::MqttEndpointInfo e;
      e.host = host_;
      e.port = l.port;
      switch (l.kind) {
        case gateway::ListenerKind::kTcp:
          e.scheme = "mqtt";
          break;
        case gateway::ListenerKind::kTls:
          e.scheme = "mqtts", e.tls = true;
          break;
        case gateway::ListenerKind::kWebSocket:
          e.scheme = "ws";
          break;
        case gateway::ListenerKind::kWebSocketTls:
          e.scheme = "wss", e.tls = true;
          break;
      }
      for (const auto& lc : config.listeners) {
        if (lc.name == l.name && (l.kind == gateway::ListenerKind::kWebSocket ||
                                  l.kind == gateway::ListenerKind::kWebSocketTls)) {
          e.path = lc.ws_path;
        }
      }
      // TLS first: it is what production devices should use.
      if (e.tls) {
        endpoints_.insert(endpoints_.begin(), e);
      } else {
        endpoints_.push_back(e);
      }
    }
  }

  platform::DeviceConnectionInfo connection_info(const store::Device& device) const override {
    platform::DeviceConnectionInfo info;
    info.endpoints = endpoints_;
    info.username_format = "<device_id>;<unix_ms>;hmacsha256;v1";
    info.password_format =
        "lowercase hex HMAC-SHA256(device secret, canonical string); see docs/device-protocol.md";
    info.topic_prefix = platform::device_topic_prefix(device.id);
    info.command_topic = info.topic_prefix + "commands";
    info.timestamp_window_s = window_s_;
    info.protocol_versions = {"3.1.1", "5.0"};
    return info;
  }

 private:
  std::string host_;
  int window_s_;
  std::vector<platform::MqttEndpointInfo> endpoints_;
};

// Stored idempotent answers (which may hold a secret shown once) are sealed
// with the master key, as text: base64url of the AES-256-GCM sealed bytes.
class KeyRingAnswerSealer : public api::AnswerSealer {
 public:
  explicit KeyRingAnswerSealer(std::shared_ptr<const platform::KeyRing> keys)
      : keys_(std::move(keys)) {}
  std::string seal(std::string_view answer, std::string_view aad) const override {
    return platform::base64url_encode(keys_->seal(answer, aad));
  }
  std::optional<std::string> open(std::string_view sealed, std::string_view aad) const override {
    const auto bytes = platform::base64url_decode(sealed);
    if (!bytes) return std::nullopt;
    platform::OpenResult opened = keys_->open(*bytes, aad);
    if (!opened.ok()) return std::nullopt;
    return std::move(opened.plaintext);
  }

 private:
  std::shared_ptr<const platform::KeyRing> keys_;
};

// Several observers of the gateway's events (presence, the delivery engine).
class FanOutEvents : public gateway::GatewayEvents {
 public:
  explicit FanOutEvents(std::vector<std::shared_ptr<gateway::GatewayEvents>> sinks)
      : sinks_(std::move(sinks)) {}
  void on_connected(const gateway::ClientInfo& client, bool session_present) override {
    for (auto& s : sinks_)
      s->on_connected(client, session_present);
  }
  void on_disconnected(const gateway::ClientInfo& client,
                       gateway::DisconnectReason reason) override {
    for (auto& s : sinks_)
      s->on_disconnected(client, reason);
  }
  void on_publish(const gateway::ClientInfo& client, const gateway::MessagePtr& message) override {
    for (auto& s : sinks_)
      s->on_publish(client, message);
  }
  void on_delivered(std::string_view client_id, uint64_t tag) override {
    for (auto& s : sinks_)
      s->on_delivered(client_id, tag);
  }
  void on_dropped(std::string_view client_id, uint64_t tag) override {
    for (auto& s : sinks_)
      s->on_dropped(client_id, tag);
  }

 private:
  std::vector<std::shared_ptr<gateway::GatewayEvents>> sinks_;
};

}  // namespace

std::string api_document(bool yaml) {
  return api::openapi_document(kApiServices,
                               yaml ? api::OpenApiFormat::kYaml : api::OpenApiFormat::kJson,
                               api_info(), proto_gen::cl_api_proto_descriptor_set());
}

struct App::Parts {
  std::shared_ptr<store::Store> store;
  std::shared_ptr<const platform::KeyRing> keys;
  std::shared_ptr<platform::PresenceRecorder> presence;
  std::unique_ptr<platform::CommandEngine> commands;
  std::unique_ptr<platform::ScanDesk> scans;
  std::unique_ptr<platform::WebhookDispatcher> webhooks;  // null: another node dispatches
  std::unique_ptr<gateway::Gateway> gateway;
  std::unique_ptr<platform::GatewaySessionControl> sessions;
  api::ServiceRegistry registry;
  std::shared_ptr<api::CallAuthenticator> api_auth;
  std::shared_ptr<api::RateLimiter> api_limiter;
  std::unique_ptr<api::HttpServer> http;
  std::unique_ptr<api::GrpcServer> grpc;

  // Housekeeping, every 10 minutes: idempotency records expire after 24 hours
  // (as payment APIs keep them); history past commands.history_retention_days.
  std::thread housekeeping;
  std::mutex housekeeping_mutex;
  std::condition_variable housekeeping_wake;
  std::atomic<bool> stopping{false};  // set under housekeeping_mutex
};

namespace {

constexpr int64_t kIdempotencyRetentionMs = 24 * 3600 * 1000;
constexpr auto kHousekeepingInterval = std::chrono::minutes(10);

// Key rotation: device secrets and API signing keys sealed under a key that
// is no longer the active one are re-sealed under the active key, so the old key can be
// removed from the configuration once the pass has finished. Runs once at
// start, in the background; safe to interrupt (it resumes on next start).
void reseal_device_secrets(store::Store& store, const platform::KeyRing& keys,
                           const std::atomic<bool>& stopping) {
  // With one key, nothing sealed under another key could be opened anyway:
  // no scan of every device at each start.
  if (!keys.has_inactive_keys()) return;
  int64_t scanned = 0, resealed = 0, failed = 0;
  store::Page page;
  page.limit = 1000;
  for (;;) {
    if (stopping) return;
    auto listing = store.list_devices(store::DeviceFilter{}, page);
    if (!listing.ok()) {
      spdlog::warn("keys.reseal_interrupted error=\"{}\" hint=\"it resumes on next start\"",
                   listing.status().message);
      return;
    }
    for (const store::Device& device : listing.value().items) {
      ++scanned;
      if (device.secret_sealed.empty() || !keys.needs_reseal(device.secret_sealed)) continue;
      platform::OpenResult secret = keys.open(device.secret_sealed, device.id);
      if (!secret.ok() || !store
                               .set_device_secret(device.tenant_id, device.id,
                                                  keys.seal(secret.plaintext, device.id),
                                                  platform::system_clock_ms())
                               .ok()) {
        ++failed;
        continue;
      }
      if (++resealed % 10000 == 0) {
        spdlog::info("keys.reseal_progress resealed={} scanned={}", resealed, scanned);
      }
    }
    if (!listing.value().more || listing.value().items.empty()) break;
    page.after_id = listing.value().items.back().id;
  }
  // API keys' request-signing keys, likewise (the secret itself is only
  // kept as a hash).
  store::Page keys_page;
  keys_page.limit = 1000;
  for (;;) {
    if (stopping) return;
    auto listing = store.list_api_keys("", keys_page);
    if (!listing.ok()) {
      spdlog::warn("keys.reseal_interrupted error=\"{}\" hint=\"it resumes on next start\"",
                   listing.status().message);
      return;
    }
    for (const store::ApiKey& key : listing.value().items) {
      ++scanned;
      if (key.signing_key_sealed.empty() || !keys.needs_reseal(key.signing_key_sealed)) continue;
      platform::OpenResult signing_key = keys.open(key.signing_key_sealed, key.id);
      if (!signing_key.ok() ||
          !store.set_api_key_signing_key(key.id, keys.seal(signing_key.plaintext, key.id)).ok()) {
        ++failed;
        continue;
      }
      ++resealed;
    }
    if (!listing.value().more || listing.value().items.empty()) break;
    keys_page.after_id = listing.value().items.back().id;
  }
  if (resealed > 0 || failed > 0) {
    spdlog::info("keys.reseal_done active_key={} resealed={} failed={} scanned={}",
                 keys.active_key_id(), resealed, failed, scanned);
  }
}

void housekeeping_loop(store::Store& store, const platform::KeyRing& keys, int64_t history_ms,
                       std::mutex& mutex, std::condition_variable& wake,
                       const std::atomic<bool>& stopping) {
  reseal_device_secrets(store, keys, stopping);
  std::unique_lock lock(mutex);
  while (!stopping) {
    lock.unlock();
    const int64_t now = platform::system_clock_ms();
    const auto expired = store.expire_idempotent(now - kIdempotencyRetentionMs);
    if (!expired.ok()) {
      spdlog::warn("housekeeping.idempotency_failed error=\"{}\"", expired.status().message);
    } else if (expired.value() > 0) {
      spdlog::info("housekeeping.idempotency_expired records={}", expired.value());
    }
    // Events, finished commands, scans and webhook deliveries past retention.
    const auto purged = store.purge_history(now - history_ms);
    if (!purged.ok()) {
      spdlog::warn("housekeeping.history_failed error=\"{}\"", purged.status().message);
    } else if (purged.value() > 0) {
      spdlog::info("housekeeping.history_purged rows={}", purged.value());
    }
    lock.lock();
    wake.wait_for(lock, kHousekeepingInterval, [&] { return stopping.load(); });
  }
}

}  // namespace

App::App(AppConfig config) : config_(std::move(config)), parts_(std::make_unique<Parts>()) {}

App::~App() {
  stop();
}

void App::start() {
  Parts& p = *parts_;
  std::error_code ec;
  fs::create_directories(config_.data_dir, ec);
  if (ec) {
    throw std::runtime_error("data_dir: cannot create " + config_.data_dir + ": " + ec.message());
  }
  const std::string node = config_.node_name.empty() ? host_name() : config_.node_name;

  // Store: SQLite in the data directory unless a URL is configured.
  store::StoreOptions store_options;
  store_options.url = config_.store.url;
  if (store_options.url.empty()) {
    store_options.url =
        "sqlite://" + fs::absolute(fs::path(config_.data_dir) / "counterlink.db").string();
  }
  store_options.pool_size = static_cast<int>(config_.store.pool_size);
  p.store = store::open_store(store_options);
  spdlog::info("counterlink.store kind={} schema_version={}", p.store->kind(),
               p.store->schema_version());

  p.keys = std::make_shared<const platform::KeyRing>(load_key_ring(config_));

  // The operator token: configured, or generated once into the data dir.
  std::string admin_token = config_.security.bootstrap_admin_token;
  if (admin_token.empty()) {
    const fs::path file = fs::path(config_.data_dir) / "admin.token";
    if (fs::exists(file)) {
      admin_token = read_first_line(file);
    } else {
      admin_token = platform::new_resource_id("ak_", platform::system_clock_ms()) + "." +
                    platform::generate_api_key_secret();
      write_private_file(file, admin_token + "\n");
      spdlog::warn(
          "counterlink.admin_token_created file={} hint=\"use it with counterlink "
          "admin, create named keys, then revoke it\"",
          file.string());
    }
  }
  ensure_admin_key(*p.store, *p.keys, admin_token);
  admin_token_ = admin_token;

  // Gateway: devices authenticate against the store; static users (if any)
  // remain for operators' tools.
  gateway::Hooks hooks;
  if (config_.device_auth.enabled) {
    platform::DeviceAuthConfig device_auth;
    device_auth.timestamp_window_ms = int64_t{config_.device_auth.replay_window_s} * 1000;
    device_auth.per_address.failures = config_.device_auth.max_failures_per_address;
    device_auth.per_device.failures = config_.device_auth.max_failures_per_device;
    hooks.authenticator = std::make_shared<platform::DeviceAuthenticator>(
        p.store, p.keys, device_auth, gateway::make_static_authenticator(config_.gateway));
    hooks.authorizer = std::make_shared<platform::DeviceAuthorizer>(
        gateway::make_static_authorizer(config_.gateway));
    p.presence = std::make_shared<platform::PresenceRecorder>(
        p.store, platform::PresenceConfig{.node = node});
    p.presence->start();
  }
  // The delivery engine: commands are durable in the store before the API
  // answers and reach devices through this node's gateway.
  platform::CommandEngineOptions engine_options;
  engine_options.max_queue_per_device = static_cast<int32_t>(config_.commands.max_queue_per_device);
  engine_options.window_per_device = static_cast<int32_t>(config_.commands.window_per_device);
  engine_options.max_attempts = static_cast<int32_t>(config_.commands.max_attempts);
  engine_options.retry_backoff_ms = config_.commands.retry_backoff_ms;
  engine_options.sweep_interval_ms = config_.commands.sweep_interval_ms;
  p.commands = std::make_unique<platform::CommandEngine>(*p.store, engine_options);
  std::vector<std::shared_ptr<gateway::GatewayEvents>> observers;
  if (p.presence) observers.push_back(p.presence);
  observers.push_back(p.commands->gateway_events());
  hooks.events = std::make_shared<FanOutEvents>(std::move(observers));
  p.gateway = std::make_unique<gateway::Gateway>(config_.gateway, hooks);
  p.commands->set_gateway(p.gateway.get());
  platform::ScanOptions scan_options;
  scan_options.answer_timeout_ms = config_.scans.answer_timeout_ms;
  scan_options.duplicate_window_ms = config_.scans.duplicate_window_ms;
  p.scans = std::make_unique<platform::ScanDesk>(*p.store, *p.commands, scan_options);
  p.commands->set_device_event_handler(
      [scans = p.scans.get()](const platform::DeviceEvent& e) { scans->on_device_event(e); });
  // Webhooks: one node per database dispatches (webhooks.dispatch); every
  // node serves the WebhookService.
  platform::WebhookOptions webhook_options;
  webhook_options.allow_http = config_.webhooks.allow_http;
  webhook_options.request_timeout_ms = config_.webhooks.request_timeout_ms;
  webhook_options.retry_window_ms = static_cast<int64_t>(config_.webhooks.retry_window_ms);
  webhook_options.retry_delays_ms.assign(config_.webhooks.retry_delays_ms.begin(),
                                         config_.webhooks.retry_delays_ms.end());
  if (config_.webhooks.dispatch) {
    p.webhooks = std::make_unique<platform::WebhookDispatcher>(
        *p.store, *p.keys, p.commands->events(), webhook_options);
    // A 2xx answer to scan.received may carry the scan's answer.
    p.webhooks->set_response_handler(
        [scans = p.scans.get()](const store::Event& e, int status, std::string_view body) {
          if (status >= 200 && status < 300) scans->on_webhook_response(e, body);
        });
  }
  p.commands->start();
  p.scans->start();
  if (p.webhooks) p.webhooks->start();
  p.gateway->start();
  p.sessions = std::make_unique<platform::GatewaySessionControl>(*p.gateway);

  // Business API.
  platform::PlatformDeps deps;
  deps.store = p.store.get();
  deps.keys = p.keys.get();
  deps.sessions = p.sessions.get();
  deps.commands = p.commands.get();
  deps.scans = p.scans.get();
  deps.webhook_options = webhook_options;
  deps.webhooks = p.webhooks.get();
  deps.connection_info = std::make_shared<GatewayConnectionInfo>(
      config_.device_auth.public_host.empty() ? node : config_.device_auth.public_host,
      p.gateway->listeners(), config_.gateway,
      static_cast<int>(config_.device_auth.replay_window_s));
  platform::register_platform_services(p.registry, deps);
  for (const std::string& method : p.registry.methods()) {
    const std::string service = method.substr(0, method.rfind('.'));
    if (std::find(kApiServices.begin(), kApiServices.end(), service) == kApiServices.end()) {
      throw std::logic_error("method " + method + " is not in the API document's services");
    }
  }
  platform::ApiKeyAuthOptions auth_options;
  auth_options.allow_insecure_bearer = config_.http.allow_insecure_bearer;
  auth_options.signature_window_s = static_cast<int>(config_.device_auth.replay_window_s);
  p.api_auth = std::make_shared<platform::ApiKeyAuthenticator>(*p.store, *p.keys, auth_options);
  p.api_limiter = std::make_shared<platform::TenantRateLimiter>(*p.store);
  const auto sealer = std::make_shared<const KeyRingAnswerSealer>(p.keys);

  if (config_.http.enabled) {
    api::HttpServerConfig http;
    http.bind_address = config_.http.bind;
    http.port = config_.http.port;
    http.worker_threads = static_cast<int>(config_.http.workers);
    http.tls_cert_file = config_.http.tls_cert_file;
    http.tls_key_file = config_.http.tls_key_file;
    http.max_json_body_bytes = config_.http.max_body_bytes;
    http.max_upload_bytes = config_.http.max_upload_bytes;
    http.idempotency_sealer = sealer;
    p.http = std::make_unique<api::HttpServer>(http, p.registry, p.api_auth, p.api_limiter,
                                               p.store.get());
    platform::add_platform_raw_routes(*p.http, deps);
    const api::RawRouteOptions open{.is_public = true};
    p.http->add_raw_route(
        "GET", "/metrics",
        [](const api::RawRequest&) {
          return api::RawResponse{
              200, "text/plain; version=0.0.4; charset=utf-8", obs::metrics().render(), {}};
        },
        open);
    p.http->add_raw_route(
        "GET", "/healthz",
        [](const api::RawRequest&) {
          return api::RawResponse{200, "text/plain", "ok\n", {}};
        },
        open);
    store::Store* st = p.store.get();
    p.http->add_raw_route(
        "GET", "/readyz",
        [this, st](const api::RawRequest&) {
          if (!ready_.load())
            return api::RawResponse{503, "text/plain", "starting or draining\n", {}};
          const store::Status ping = st->ping();
          if (!ping.ok()) {
            return api::RawResponse{
                503, "text/plain", "store unreachable: " + ping.message + "\n", {}};
          }
          return api::RawResponse{200, "text/plain", "ready\n", {}};
        },
        open);
    const std::string document = api_document(/*yaml=*/false);
    p.http->add_raw_route(
        "GET", "/v1/openapi.json",
        [document](const api::RawRequest&) {
          return api::RawResponse{200, "application/json", document, {}};
        },
        open);
    p.http->start();
    spdlog::info("counterlink.listening name=http port={} tls={}", p.http->port(), p.http->tls());
  }

  if (config_.grpc.enabled) {
    api::GrpcServerConfig grpc;
    grpc.bind_address = config_.grpc.bind;
    grpc.port = config_.grpc.port;
    grpc.worker_threads = static_cast<int>(config_.http.workers);
    grpc.tls_cert_file = config_.http.tls_cert_file;
    grpc.tls_key_file = config_.http.tls_key_file;
    grpc.idempotency_sealer = sealer;
    grpc.max_upload_bytes = config_.http.max_upload_bytes;
    p.grpc = std::make_unique<api::GrpcServer>(grpc, p.registry, p.api_auth, p.api_limiter,
                                               p.store.get());
    p.grpc->start();
    spdlog::info("counterlink.listening name=grpc port={}", p.grpc->port());
  }

  const int64_t history_ms = int64_t{config_.commands.history_retention_days} * 86'400'000;
  p.housekeeping = std::thread([&p, history_ms] {
    housekeeping_loop(*p.store, *p.keys, history_ms, p.housekeeping_mutex, p.housekeeping_wake,
                      p.stopping);
  });

  for (const auto& l : p.gateway->listeners()) {
    // One line per listener that scripts (and tests) can parse for port 0.
    spdlog::info("counterlink.listening name={} port={}", l.name, l.port);
  }
  ready_ = true;
}

App::Endpoints App::endpoints() const {
  Endpoints e;
  e.admin_token = admin_token_;
  e.data_dir = config_.data_dir;
  if (!parts_) return e;
  if (parts_->http) e.http_port = parts_->http->port();
  if (parts_->gateway) {
    for (const auto& l : parts_->gateway->listeners()) {
      if (l.kind == gateway::ListenerKind::kTcp) {
        e.mqtt_port = l.port;
        break;
      }
    }
  }
  return e;
}

void App::stop() {
  ready_ = false;
  if (!parts_) return;
  Parts& p = *parts_;
  if (p.http) p.http->stop();
  if (p.grpc) p.grpc->stop();
  if (p.gateway) p.gateway->stop();
  // After the gateway (nothing new arrives): queued writes are flushed.
  if (p.webhooks) p.webhooks->stop();
  if (p.scans) p.scans->stop();
  if (p.commands) p.commands->stop();
  // After the gateway: its last disconnects are recorded too.
  if (p.presence) p.presence->stop();
  if (p.housekeeping.joinable()) {
    {
      std::lock_guard lock(p.housekeeping_mutex);
      p.stopping = true;
    }
    p.housekeeping_wake.notify_all();
    p.housekeeping.join();
  }
}

}  // namespace counterlink::cli
