// Compact JSON text of a value, with invalid UTF-8 replaced (U+FFFD) rather
// than thrown: what the platform stores and sends. Private to src/platform.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace counterlink::platform {

inline std::string json_text(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace counterlink::platform
