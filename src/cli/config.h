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

// The HTTP endpoint for operations: /metrics, /healthz, /readyz.
struct HttpConfig {
  bool enabled = true;
  std::string bind = "0.0.0.0";
  uint16_t port = 8080;  // 0 = pick a free port (tests)
};

struct AppConfig {
  std::string data_dir = "./data";
  obs::LogConfig log;
  HttpConfig http;
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
