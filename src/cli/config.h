// The effective configuration of `counterlink serve`: a YAML file, then
// environment overrides, then command-line overrides, validated as a whole.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "counterlink/gateway/config.h"
#include "counterlink/obs/log.h"

namespace counterlink::cli {

// The business ingress over HTTP: the REST API under /v1, /v1/openapi.json,
// and the operations routes /metrics, /healthz, /readyz.
struct HttpConfig {
  bool enabled = true;
  std::string bind = "0.0.0.0";
  uint16_t port = 8080;       // 0 = pick a free port (tests)
  std::string tls_cert_file;  // both set = HTTPS on this port
  std::string tls_key_file;
  uint32_t max_body_bytes = 1 << 20;      // JSON request bodies
  uint64_t max_upload_bytes = 256 << 20;  // streamed uploads (bulk import)
  uint32_t workers = 8;                   // threads running API handlers
  // Bearer tokens are refused on plain HTTP from non-loopback peers unless
  // this is set (TLS terminated by a trusted proxy in front of us).
  bool allow_insecure_bearer = false;
};

// The business ingress over gRPC: the same services as REST.
struct GrpcConfig {
  bool enabled = true;
  std::string bind = "0.0.0.0";
  uint16_t port = 9090;  // 0 = pick a free port (tests)
};

// The system of record.
struct StoreConfig {
  // "" = SQLite in <data_dir>/counterlink.db; or sqlite:///path.db, or a
  // PostgreSQL URL postgres://user:pass@host:5432/db.
  std::string url;
  uint32_t pool_size = 8;
};

// A master key for secrets at rest (device secrets, API signing keys).
struct MasterKey {
  std::string id;   // short name, e.g. "k2026a"
  std::string key;  // 32 bytes, base64
};

struct SecurityConfig {
  // Empty = a key generated on first start into <data_dir>/master.key
  // (embedded mode). Several keys = rotation: all can open, `active_key`
  // seals.
  std::vector<MasterKey> master_keys;
  std::string active_key;  // id; "" = the last listed key
  // An operator API token ("ak_….secret") ensured to exist at start, e.g.
  // from a Kubernetes secret. "" = on first start an operator key is
  // generated into <data_dir>/admin.token.
  std::string bootstrap_admin_token;
};

// How devices prove who they are on MQTT (docs/device-protocol.md).
struct DeviceAuthConfig {
  // true: devices authenticate with signed credentials or X.509 and are
  // confined to their topic namespace; static gateway users (if any) still
  // work for tools. false: only the gateway's static users/ACL apply.
  bool enabled = true;
  uint32_t replay_window_s = 300;
  uint32_t max_failures_per_address = 10;  // per minute, then refused
  uint32_t max_failures_per_device = 5;    // per minute, then refused
  // Host name devices use, for connection-info answers; "" = this node's
  // host name (node_name if set).
  std::string public_host;
};

// The delivery engine (docs/device-protocol.md, "What the platform does").
struct CommandsConfig {
  uint32_t max_queue_per_device = 500;   // commands not final per device; more = 429
  uint32_t window_per_device = 32;       // handed to a device before earlier ones finish
  uint32_t max_attempts = 8;             // `busy` answers before a command fails
  uint32_t retry_backoff_ms = 1000;      // first `busy` backoff, doubled per attempt
  uint32_t sweep_interval_ms = 500;      // expiry and retry checks
  uint32_t history_retention_days = 30;  // events and final commands kept
};

// Scan-box payments (docs/webhooks.md, "Scan boxes").
struct ScansConfig {
  uint32_t answer_timeout_ms = 30000;    // then the box is told "result unknown"
  uint32_t duplicate_window_ms = 30000;  // the same code again within it is the same scan
};

// Webhooks (docs/webhooks.md, "For operators").
struct WebhooksConfig {
  // Send webhooks from this node. One node per database dispatches: a
  // second one would send due deliveries twice. false on the others.
  bool dispatch = true;
  bool allow_http = false;              // accept http:// endpoint URLs (development only)
  uint32_t request_timeout_ms = 5000;   // per attempt; also the scan answer window
  uint64_t retry_window_ms = 86400000;  // retried until this long after a delivery was created
  // Delay before retry n: the n-th entry, then the last one again.
  std::vector<uint32_t> retry_delays_ms = {5000,    30000,   120000,  600000,
                                           1800000, 3600000, 7200000, 14400000};
};

struct AppConfig {
  std::string node_name;  // "" = host name; names this node in presence
  std::string data_dir = "./data";
  obs::LogConfig log;
  HttpConfig http;
  GrpcConfig grpc;
  StoreConfig store;
  SecurityConfig security;
  DeviceAuthConfig device_auth;
  CommandsConfig commands;
  ScansConfig scans;
  WebhooksConfig webhooks;
  gateway::GatewayConfig gateway;
};

// Thrown for any invalid configuration. what() names the key and the reason,
// e.g. "gateway.max_packet_size: must be between 2 and 268435455 (got 0)".
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Builds the effective configuration.
//  - yaml_file: path to a YAML file, or empty for built-in defaults.
//  - env: environment entries "NAME=value"; those named COUNTERLINK_<PATH>
//    override keys, with "__" separating levels, e.g.
//    COUNTERLINK_GATEWAY__MAX_CONNECTIONS=5000.
//  - overrides: "dotted.key=value" pairs from --set flags, applied last.
// Unknown keys, wrong types and out-of-range values throw ConfigError.
AppConfig load_config(const std::string& yaml_file, const std::vector<std::string>& env,
                      const std::vector<std::string>& overrides);

// The configuration as YAML in the file format load_config reads
// (--print-config).
// Secrets (passwords) are shown as "<redacted>".
std::string to_yaml(const AppConfig& config);

}  // namespace counterlink::cli
