// MQTT 5.0 properties (section 2.2.2): decoding with the per-packet rules of
// the specification, and encoding.
#include <charconv>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "counterlink/mqtt/topic.h"

#include "wire.h"

namespace counterlink::mqtt::wire {

namespace {

constexpr uint64_t bits(std::initializer_list<PropertyId> ids) {
  uint64_t mask = 0;
  for (PropertyId id : ids)
    mask |= uint64_t{1} << id;
  return mask;
}

// The identifiers each packet may carry (MQTT 5.0 section 2.2.2.2, and
// section 3.1.3.2 for will properties).
constexpr uint64_t allowed_properties(PropertyScope scope) {
  switch (scope) {
    case PropertyScope::kConnect:
      return bits({kSessionExpiryInterval, kAuthenticationMethod, kAuthenticationData,
                   kRequestProblemInformation, kRequestResponseInformation, kReceiveMaximum,
                   kTopicAliasMaximum, kUserProperty, kMaximumPacketSize});
    case PropertyScope::kWill:
      return bits({kWillDelayInterval, kPayloadFormatIndicator, kMessageExpiryInterval,
                   kContentType, kResponseTopic, kCorrelationData, kUserProperty});
    case PropertyScope::kConnack:
      return bits({kSessionExpiryInterval, kAssignedClientIdentifier, kServerKeepAlive,
                   kAuthenticationMethod, kAuthenticationData, kResponseInformation,
                   kServerReference, kReasonString, kReceiveMaximum, kTopicAliasMaximum,
                   kMaximumQos, kRetainAvailable, kUserProperty, kMaximumPacketSize,
                   kWildcardSubscriptionAvailable, kSubscriptionIdentifierAvailable,
                   kSharedSubscriptionAvailable});
    case PropertyScope::kPublish:
      return bits({kPayloadFormatIndicator, kMessageExpiryInterval, kContentType, kResponseTopic,
                   kCorrelationData, kSubscriptionIdentifier, kTopicAlias, kUserProperty});
    case PropertyScope::kAck:
      return bits({kReasonString, kUserProperty});
    case PropertyScope::kSubscribe:
      return bits({kSubscriptionIdentifier, kUserProperty});
    case PropertyScope::kUnsubscribe:
      return bits({kUserProperty});
    case PropertyScope::kDisconnect:
      return bits({kSessionExpiryInterval, kServerReference, kReasonString, kUserProperty});
    case PropertyScope::kAuth:
      return bits({kAuthenticationMethod, kAuthenticationData, kReasonString, kUserProperty});
  }
  return 0;
}

const char* property_name(uint32_t id) {
  switch (id) {
    case kPayloadFormatIndicator:
      return "Payload Format Indicator";
    case kMessageExpiryInterval:
      return "Message Expiry Interval";
    case kContentType:
      return "Content Type";
    case kResponseTopic:
      return "Response Topic";
    case kCorrelationData:
      return "Correlation Data";
    case kSubscriptionIdentifier:
      return "Subscription Identifier";
    case kSessionExpiryInterval:
      return "Session Expiry Interval";
    case kAssignedClientIdentifier:
      return "Assigned Client Identifier";
    case kServerKeepAlive:
      return "Server Keep Alive";
    case kAuthenticationMethod:
      return "Authentication Method";
    case kAuthenticationData:
      return "Authentication Data";
    case kRequestProblemInformation:
      return "Request Problem Information";
    case kWillDelayInterval:
      return "Will Delay Interval";
    case kRequestResponseInformation:
      return "Request Response Information";
    case kResponseInformation:
      return "Response Information";
    case kServerReference:
      return "Server Reference";
    case kReasonString:
      return "Reason String";
    case kReceiveMaximum:
      return "Receive Maximum";
    case kTopicAliasMaximum:
      return "Topic Alias Maximum";
    case kTopicAlias:
      return "Topic Alias";
    case kMaximumQos:
      return "Maximum QoS";
    case kRetainAvailable:
      return "Retain Available";
    case kUserProperty:
      return "User Property";
    case kMaximumPacketSize:
      return "Maximum Packet Size";
    case kWildcardSubscriptionAvailable:
      return "Wildcard Subscription Available";
    case kSubscriptionIdentifierAvailable:
      return "Subscription Identifier Available";
    case kSharedSubscriptionAvailable:
      return "Shared Subscription Available";
  }
  return nullptr;
}

// Reads one property value into `out`, applying the range rules of section
// 2.2.2.2. Kept as a class so each value kind is one short function and the
// error paths share the context.
class PropertyReader {
 public:
  PropertyReader(Reader& reader, const DecodeContext& ctx, uint32_t id)
      : reader_(reader), ctx_(ctx), id_(id) {}

  // A Byte whose only legal values are 0 and 1.
  bool flag(std::optional<uint8_t>& out) {
    uint8_t value;
    if (!reader_.read_u8(value)) return truncated();
    if (value > 1) return ctx_.fail_property(ReasonCode::kProtocolError, id_, "must be 0 or 1");
    out = value;
    return true;
  }

  bool u16(std::optional<uint16_t>& out, bool zero_allowed) {
    uint16_t value;
    if (!reader_.read_u16(value)) return truncated();
    if (value == 0 && !zero_allowed) return zero();
    out = value;
    return true;
  }

  bool u32(std::optional<uint32_t>& out, bool zero_allowed) {
    uint32_t value;
    if (!reader_.read_u32(value)) return truncated();
    if (value == 0 && !zero_allowed) return zero();
    out = value;
    return true;
  }

  // Subscription Identifier: a Variable Byte Integer from 1 to 268,435,455.
  bool subscription_identifier(std::vector<uint32_t>& out) {
    uint32_t value;
    switch (reader_.read_varint(value)) {
      case VarintStatus::kOk:
        break;
      case VarintStatus::kTruncated:
        return truncated();
      case VarintStatus::kTooLong:
      case VarintStatus::kNotMinimal:
        return ctx_.fail_property(ReasonCode::kMalformedPacket, id_,
                                  "is not a valid Variable Byte Integer");
    }
    if (value == 0) return zero();
    out.push_back(value);
    return true;
  }

  bool utf8(std::optional<std::string>& out) {
    std::string_view value;
    if (!reader_.read_prefixed(value)) return truncated();
    if (!is_valid_mqtt_utf8(value)) return not_utf8();
    out.emplace(value);
    return true;
  }

  bool binary(std::optional<std::string>& out) {
    std::string_view value;
    if (!reader_.read_prefixed(value)) return truncated();
    out.emplace(value);
    return true;
  }

  bool user_property(std::vector<UserProperty>& out) {
    std::string_view key;
    std::string_view value;
    if (!reader_.read_prefixed(key) || !reader_.read_prefixed(value)) return truncated();
    if (!is_valid_mqtt_utf8(key) || !is_valid_mqtt_utf8(value)) return not_utf8();
    out.push_back(UserProperty{std::string(key), std::string(value)});
    return true;
  }

 private:
  bool truncated() {
    return ctx_.fail_property(ReasonCode::kMalformedPacket, id_,
                              "is truncated by the Property Length");
  }
  bool zero() { return ctx_.fail_property(ReasonCode::kProtocolError, id_, "must not be 0"); }
  bool not_utf8() {
    return ctx_.fail_property(ReasonCode::kMalformedPacket, id_, "is not valid UTF-8");
  }

  Reader& reader_;
  const DecodeContext& ctx_;
  uint32_t id_;
};

bool read_value(PropertyReader& value, uint32_t id, Properties& out) {
  switch (id) {
    case kPayloadFormatIndicator:
      return value.flag(out.payload_format_indicator);
    case kMessageExpiryInterval:
      return value.u32(out.message_expiry_interval, true);
    case kContentType:
      return value.utf8(out.content_type);
    case kResponseTopic:
      return value.utf8(out.response_topic);
    case kCorrelationData:
      return value.binary(out.correlation_data);
    case kSubscriptionIdentifier:
      return value.subscription_identifier(out.subscription_identifiers);
    case kSessionExpiryInterval:
      return value.u32(out.session_expiry_interval, true);
    case kAssignedClientIdentifier:
      return value.utf8(out.assigned_client_identifier);
    case kServerKeepAlive:
      return value.u16(out.server_keep_alive, true);
    case kAuthenticationMethod:
      return value.utf8(out.authentication_method);
    case kAuthenticationData:
      return value.binary(out.authentication_data);
    case kRequestProblemInformation:
      return value.flag(out.request_problem_information);
    case kWillDelayInterval:
      return value.u32(out.will_delay_interval, true);
    case kRequestResponseInformation:
      return value.flag(out.request_response_information);
    case kResponseInformation:
      return value.utf8(out.response_information);
    case kServerReference:
      return value.utf8(out.server_reference);
    case kReasonString:
      return value.utf8(out.reason_string);
    case kReceiveMaximum:
      return value.u16(out.receive_maximum, false);
    case kTopicAliasMaximum:
      return value.u16(out.topic_alias_maximum, true);
    case kTopicAlias:
      return value.u16(out.topic_alias, false);
    case kMaximumQos:
      return value.flag(out.maximum_qos);
    case kRetainAvailable:
      return value.flag(out.retain_available);
    case kUserProperty:
      return value.user_property(out.user_properties);
    case kMaximumPacketSize:
      return value.u32(out.maximum_packet_size, false);
    case kWildcardSubscriptionAvailable:
      return value.flag(out.wildcard_subscription_available);
    case kSubscriptionIdentifierAvailable:
      return value.flag(out.subscription_identifier_available);
    case kSharedSubscriptionAvailable:
      return value.flag(out.shared_subscription_available);
  }
  return false;  // unreachable: the caller admits only allowed identifiers
}

// One writer for both sinks so that properties_body_size() and
// append_properties() cannot disagree.
template <class Sink>
void put_properties(const Properties& p, PropertyScope scope, Sink& sink) {
  const uint64_t allowed = allowed_properties(scope);
  const auto has = [allowed](PropertyId id) { return ((allowed >> id) & 1) != 0; };
  const auto put_u8 = [&](PropertyId id, const std::optional<uint8_t>& value) {
    if (!value || !has(id)) return;
    sink.u8(id);
    sink.u8(*value);
  };
  const auto put_u16 = [&](PropertyId id, const std::optional<uint16_t>& value) {
    if (!value || !has(id)) return;
    sink.u8(id);
    sink.u16(*value);
  };
  const auto put_u32 = [&](PropertyId id, const std::optional<uint32_t>& value) {
    if (!value || !has(id)) return;
    sink.u8(id);
    sink.u32(*value);
  };
  const auto put_string = [&](PropertyId id, const std::optional<std::string>& value) {
    if (!value || !has(id)) return;
    sink.u8(id);
    sink.prefixed(*value);
  };

  put_u8(kPayloadFormatIndicator, p.payload_format_indicator);
  put_u32(kMessageExpiryInterval, p.message_expiry_interval);
  put_string(kContentType, p.content_type);
  put_string(kResponseTopic, p.response_topic);
  put_string(kCorrelationData, p.correlation_data);
  if (has(kSubscriptionIdentifier)) {
    // SUBSCRIBE may carry only one (MQTT 5.0 section 3.8.2.1.2).
    for (uint32_t id : p.subscription_identifiers) {
      sink.u8(kSubscriptionIdentifier);
      sink.varint(id);
      if (scope == PropertyScope::kSubscribe) break;
    }
  }
  put_u32(kSessionExpiryInterval, p.session_expiry_interval);
  put_string(kAssignedClientIdentifier, p.assigned_client_identifier);
  put_u16(kServerKeepAlive, p.server_keep_alive);
  put_string(kAuthenticationMethod, p.authentication_method);
  put_string(kAuthenticationData, p.authentication_data);
  put_u8(kRequestProblemInformation, p.request_problem_information);
  put_u32(kWillDelayInterval, p.will_delay_interval);
  put_u8(kRequestResponseInformation, p.request_response_information);
  put_string(kResponseInformation, p.response_information);
  put_string(kServerReference, p.server_reference);
  put_string(kReasonString, p.reason_string);
  put_u16(kReceiveMaximum, p.receive_maximum);
  put_u16(kTopicAliasMaximum, p.topic_alias_maximum);
  put_u16(kTopicAlias, p.topic_alias);
  put_u8(kMaximumQos, p.maximum_qos);
  put_u8(kRetainAvailable, p.retain_available);
  if (has(kUserProperty)) {
    for (const UserProperty& property : p.user_properties) {
      sink.u8(kUserProperty);
      sink.prefixed(property.key);
      sink.prefixed(property.value);
    }
  }
  put_u32(kMaximumPacketSize, p.maximum_packet_size);
  put_u8(kWildcardSubscriptionAvailable, p.wildcard_subscription_available);
  put_u8(kSubscriptionIdentifierAvailable, p.subscription_identifier_available);
  put_u8(kSharedSubscriptionAvailable, p.shared_subscription_available);
}

}  // namespace

bool DecodeContext::fail_property(ReasonCode reason, uint32_t id, std::string_view what) const {
  const char* name = property_name(id);
  char hex[16] = {'0', 'x', '0'};
  // Pad to two digits: "0x0B", as the specification writes identifiers.
  char* const digits = id < 0x10 ? hex + 3 : hex + 2;
  const char* const end = std::to_chars(digits, hex + sizeof(hex), id, 16).ptr;
  for (char* c = digits; c != end; ++c) {
    if (*c >= 'a' && *c <= 'f') *c = static_cast<char>(*c - 'a' + 'A');
  }
  const std::string_view number(hex, static_cast<size_t>(end - hex));
  std::string message = "property ";
  if (name != nullptr) {
    message.append(name);
    message.append(" (");
    message.append(number);
    message.append(")");
  } else {
    message.append("identifier ");
    message.append(number);
  }
  message.append(" ");
  message.append(what);
  return fail(reason, message);
}

bool read_properties(Reader& reader, PropertyScope scope, Properties& out,
                     const DecodeContext& ctx) {
  uint32_t length;
  switch (reader.read_varint(length)) {
    case VarintStatus::kOk:
      break;
    case VarintStatus::kTruncated:
      return ctx.fail(ReasonCode::kMalformedPacket, "Property Length is truncated");
    case VarintStatus::kTooLong:
    case VarintStatus::kNotMinimal:
      return ctx.fail(ReasonCode::kMalformedPacket,
                      "Property Length is not a valid Variable Byte Integer");
  }
  std::string_view block;
  if (!reader.read_bytes(length, block)) {
    return ctx.fail(ReasonCode::kMalformedPacket, "Property Length exceeds the packet");
  }

  const uint64_t allowed = allowed_properties(scope);
  uint64_t seen = 0;
  Reader properties(block);
  while (!properties.at_end()) {
    // Identifiers are Variable Byte Integers; every defined one fits in one
    // byte, so anything longer is simply an unknown identifier.
    uint32_t id;
    if (properties.read_varint(id) != VarintStatus::kOk) {
      return ctx.fail(ReasonCode::kMalformedPacket, "property identifier is not valid");
    }
    if (id >= 64 || ((allowed >> id) & 1) == 0) {
      if (property_name(id) == nullptr) {
        return ctx.fail_property(ReasonCode::kMalformedPacket, id, "is not defined");
      }
      return ctx.fail_property(ReasonCode::kMalformedPacket, id,
                               scope == PropertyScope::kWill ? "is not allowed in will properties"
                                                             : "is not allowed in this packet");
    }
    const uint64_t bit = uint64_t{1} << id;
    const bool repeatable =
        id == kUserProperty || (id == kSubscriptionIdentifier && scope == PropertyScope::kPublish);
    if ((seen & bit) != 0 && !repeatable) {
      return ctx.fail_property(ReasonCode::kProtocolError, id, "appears more than once");
    }
    seen |= bit;
    PropertyReader value(properties, ctx, id);
    if (!read_value(value, id, out)) return false;
  }

  // Rules between properties that one packet alone decides.
  if (out.authentication_data && !out.authentication_method) {
    return ctx.fail_property(ReasonCode::kProtocolError, kAuthenticationData,
                             "is present without Authentication Method");
  }
  if (out.response_topic && !is_valid_topic_name(*out.response_topic)) {
    // MQTT-3.3.2-14: the Response Topic is used as a Topic Name.
    return ctx.fail_property(ReasonCode::kProtocolError, kResponseTopic,
                             "is not a valid topic name");
  }
  return true;
}

size_t properties_body_size(const Properties& properties, PropertyScope scope) {
  SizeSink sink;
  put_properties(properties, scope, sink);
  return sink.size;
}

void append_properties(const Properties& properties, PropertyScope scope, size_t body_size,
                       std::string& out) {
  write_varint(static_cast<uint32_t>(body_size), out);
  AppendSink sink{out};
  put_properties(properties, scope, sink);
}

}  // namespace counterlink::mqtt::wire
