#include "counterlink/platform/session_control.h"

#include <spdlog/spdlog.h>

#include "counterlink/gateway/gateway.h"

namespace counterlink::platform {

void GatewaySessionControl::disconnect_device(const std::string& device_id) {
  spdlog::info("device_session.disconnect device={}", device_id);
  gateway_.disconnect_client(device_id, mqtt::ReasonCode::kNotAuthorized);
}

}  // namespace counterlink::platform
