// Structured logging on top of spdlog.
//
// Every component logs through spdlog's default logger after init_logging().
// Messages are written as an event name followed by key=value pairs
// ("client.connected client_id=sp-001 version=5"), so they read well as text
// and parse cleanly as JSON when format is "json" (one object per line:
// ts, level, logger, msg).
#pragma once

#include <string>

namespace counterlink::obs {

struct LogConfig {
  std::string level = "info";   // trace, debug, info, warn, error, critical, off
  std::string format = "text";  // text | json
};

// Installs the default logger (stderr). Safe to call again to reconfigure.
// Throws std::invalid_argument for an unknown level or format.
void init_logging(const LogConfig& config);

// Escapes `s` for inclusion inside a JSON string literal.
std::string json_escape(const std::string& s);

}  // namespace counterlink::obs
