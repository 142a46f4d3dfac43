// An application message as the gateway routes it: immutable once created
// and shared (by reference count) between every session it is delivered to,
// across event loops.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "counterlink/mqtt/packet.h"

namespace counterlink::gateway {

// The 5.0 properties that travel with a message from publisher to
// subscribers (MQTT 5.0 section 3.3.2.3). Held out of line: most device
// traffic has none, and an empty message should stay small.
struct MessageProperties {
  std::optional<uint8_t> payload_format_indicator;
  std::optional<std::string> content_type;
  std::optional<std::string> response_topic;
  std::optional<std::string> correlation_data;
  std::vector<mqtt::UserProperty> user_properties;
};

struct Message {
  std::string topic;
  std::string payload;
  uint8_t qos = 0;
  bool retain = false;
  // Absolute expiry on the gateway's monotonic clock in milliseconds; 0 means
  // the message never expires.
  int64_t expires_at_ms = 0;
  std::unique_ptr<MessageProperties> properties;  // null when there are none
  // Identity of the publishing session for No Local (0: not from a client).
  uint64_t origin_session = 0;
  // Opaque correlation value set by the platform on deliver(); reported back
  // through GatewayEvents::on_delivered when the client acknowledges.
  uint64_t tag = 0;
};

using MessagePtr = std::shared_ptr<const Message>;

}  // namespace counterlink::gateway
