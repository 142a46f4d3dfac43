// Encoding of MQTT control packets.
//
// Every packet body is written by one template twice: into a SizeSink to learn
// the Remaining Length (so the output is reserved once), then into an
// AppendSink. Sharing the writer keeps the two passes from ever disagreeing.
// The encoder trusts its input: values must already satisfy the protocol
// (strings up to 65,535 bytes, packet identifiers non-zero where required,
// Remaining Length below 268,435,456); it does not validate them again.
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>

#include "counterlink/mqtt/codec.h"

#include "wire.h"

namespace counterlink::mqtt {

using wire::PropertyScope;

namespace {

// Property block size in 5.0, where it is always preceded by its length.
size_t property_body(const Properties& properties, PropertyScope scope, bool v5) {
  return v5 ? wire::properties_body_size(properties, scope) : 0;
}

uint8_t connack_code_v3(ReasonCode reason) {
  switch (reason) {
    case ReasonCode::kSuccess:
      return 0;
    case ReasonCode::kUnsupportedProtocolVersion:
      return 1;
    case ReasonCode::kClientIdentifierNotValid:
      return 2;
    case ReasonCode::kBadUserNameOrPassword:
      return 4;
    case ReasonCode::kNotAuthorized:
      return 5;
    default:
      return 3;  // Server unavailable: the only general refusal 3.1.1 has
  }
}

uint8_t suback_code_v3(ReasonCode reason) {
  switch (reason) {
    case ReasonCode::kSuccess:
    case ReasonCode::kGrantedQos1:
    case ReasonCode::kGrantedQos2:
      return static_cast<uint8_t>(reason);
    default:
      return 0x80;
  }
}

template <class Sink>
void put_body(const Connect& connect, Version, Sink& sink) {
  const bool v5 = connect.version == Version::kV5;
  sink.prefixed(connect.version == Version::kV31 ? "MQIsdp" : "MQTT");
  sink.u8(static_cast<uint8_t>(connect.version));
  uint8_t flags = connect.clean_start ? 0x02 : 0x00;
  if (connect.will) {
    flags |= 0x04 | (connect.will->qos & 0x03) << 3 | (connect.will->retain ? 0x20 : 0x00);
  }
  if (connect.password) flags |= 0x40;
  if (connect.username) flags |= 0x80;
  sink.u8(flags);
  sink.u16(connect.keep_alive);
  if (v5) {
    sink.properties(connect.properties, PropertyScope::kConnect,
                    wire::properties_body_size(connect.properties, PropertyScope::kConnect));
  }
  sink.prefixed(connect.client_id);
  if (connect.will) {
    if (v5) {
      sink.properties(connect.will->properties, PropertyScope::kWill,
                      wire::properties_body_size(connect.will->properties, PropertyScope::kWill));
    }
    sink.prefixed(connect.will->topic);
    sink.prefixed(connect.will->payload);
  }
  if (connect.username) sink.prefixed(*connect.username);
  if (connect.password) sink.prefixed(*connect.password);
}

template <class Sink>
void put_body(const Connack& connack, Version version, Sink& sink) {
  sink.u8(connack.session_present ? 0x01 : 0x00);
  if (version != Version::kV5) {
    sink.u8(connack_code_v3(connack.reason));
    return;
  }
  sink.u8(static_cast<uint8_t>(connack.reason));
  sink.properties(connack.properties, PropertyScope::kConnack,
                  wire::properties_body_size(connack.properties, PropertyScope::kConnack));
}

// PUBACK, PUBREC, PUBREL, PUBCOMP. In 5.0 the reason and properties are
// omitted when they say nothing (section 3.4.2.1).
template <class Sink>
void put_body(const Ack& ack, Version version, Sink& sink) {
  sink.u16(ack.packet_id);
  const size_t properties =
      property_body(ack.properties, PropertyScope::kAck, version == Version::kV5);
  if (version != Version::kV5 || (ack.reason == ReasonCode::kSuccess && properties == 0)) return;
  sink.u8(static_cast<uint8_t>(ack.reason));
  if (properties != 0) sink.properties(ack.properties, PropertyScope::kAck, properties);
}

template <class Sink>
void put_body(const Subscribe& subscribe, Version version, Sink& sink) {
  const bool v5 = version == Version::kV5;
  sink.u16(subscribe.packet_id);
  if (v5) {
    sink.properties(subscribe.properties, PropertyScope::kSubscribe,
                    wire::properties_body_size(subscribe.properties, PropertyScope::kSubscribe));
  }
  for (const TopicSubscription& subscription : subscribe.subscriptions) {
    sink.prefixed(subscription.filter);
    const SubscribeOptions& options = subscription.options;
    uint8_t byte = options.max_qos & 0x03;
    if (v5) {
      byte |= (options.no_local ? 0x04 : 0x00) | (options.retain_as_published ? 0x08 : 0x00) |
              (options.retain_handling & 0x03) << 4;
    }
    sink.u8(byte);
  }
}

template <class Sink>
void put_body(const Suback& suback, Version version, Sink& sink) {
  const bool v5 = version == Version::kV5;
  sink.u16(suback.packet_id);
  if (v5) {
    sink.properties(suback.properties, PropertyScope::kAck,
                    wire::properties_body_size(suback.properties, PropertyScope::kAck));
  }
  for (ReasonCode reason : suback.reasons) {
    sink.u8(v5 ? static_cast<uint8_t>(reason) : suback_code_v3(reason));
  }
}

template <class Sink>
void put_body(const Unsubscribe& unsubscribe, Version version, Sink& sink) {
  sink.u16(unsubscribe.packet_id);
  if (version == Version::kV5) {
    sink.properties(
        unsubscribe.properties, PropertyScope::kUnsubscribe,
        wire::properties_body_size(unsubscribe.properties, PropertyScope::kUnsubscribe));
  }
  for (const std::string& filter : unsubscribe.filters)
    sink.prefixed(filter);
}

template <class Sink>
void put_body(const Unsuback& unsuback, Version version, Sink& sink) {
  sink.u16(unsuback.packet_id);
  // 3.1.1 UNSUBACK has no payload; the reasons exist only in 5.0.
  if (version != Version::kV5) return;
  sink.properties(unsuback.properties, PropertyScope::kAck,
                  wire::properties_body_size(unsuback.properties, PropertyScope::kAck));
  for (ReasonCode reason : unsuback.reasons)
    sink.u8(static_cast<uint8_t>(reason));
}

template <class Sink>
void put_body(const Pingreq&, Version, Sink&) {}

template <class Sink>
void put_body(const Pingresp&, Version, Sink&) {}

// DISCONNECT and AUTH: in 5.0 the reason and properties are omitted when they
// say nothing; before 5.0 the body is always empty.
template <class Sink, class T>
void put_reason_and_properties(const T& packet, Version version, PropertyScope scope, Sink& sink) {
  if (version != Version::kV5) return;
  const size_t properties = wire::properties_body_size(packet.properties, scope);
  if (packet.reason == ReasonCode::kSuccess && properties == 0) return;
  sink.u8(static_cast<uint8_t>(packet.reason));
  if (properties != 0) sink.properties(packet.properties, scope, properties);
}

template <class Sink>
void put_body(const Disconnect& disconnect, Version version, Sink& sink) {
  put_reason_and_properties(disconnect, version, PropertyScope::kDisconnect, sink);
}

template <class Sink>
void put_body(const Auth& auth, Version version, Sink& sink) {
  put_reason_and_properties(auth, version, PropertyScope::kAuth, sink);
}

uint8_t first_byte(const Packet& packet) {
  const PacketType type = type_of(packet);
  const bool flags_two = type == PacketType::kPubrel || type == PacketType::kSubscribe ||
                         type == PacketType::kUnsubscribe;
  return static_cast<uint8_t>(static_cast<uint8_t>(type) << 4 | (flags_two ? 0x02 : 0x00));
}

template <class T>
void encode_packet(const T& packet, uint8_t first, Version version, std::string& out) {
  wire::SizeSink size;
  put_body(packet, version, size);
  const auto remaining = static_cast<uint32_t>(size.size);
  out.reserve(out.size() + 1 + wire::varint_size(remaining) + size.size);
  out.push_back(static_cast<char>(first));
  write_varint(remaining, out);
  wire::AppendSink sink{out};
  put_body(packet, version, sink);
}

uint8_t publish_first_byte(const PublishRef& publish) {
  return static_cast<uint8_t>(0x30 | (publish.dup ? 0x08 : 0x00) | (publish.qos & 0x03) << 1 |
                              (publish.retain ? 0x01 : 0x00));
}

// Remaining Length of a PUBLISH, given the size of its property block.
size_t publish_remaining(const PublishRef& publish, bool v5, size_t property_body_size) {
  size_t size = 2 + publish.topic.size() + publish.payload.size();
  if ((publish.qos & 0x03) != 0) size += 2;
  if (v5) {
    size += wire::varint_size(static_cast<uint32_t>(property_body_size)) + property_body_size;
  }
  return size;
}

size_t publish_property_body(const PublishRef& publish, bool v5) {
  if (!v5 || publish.properties == nullptr) return 0;
  return wire::properties_body_size(*publish.properties, PropertyScope::kPublish);
}

}  // namespace

size_t write_varint(uint32_t value, std::string& out) {
  // Out-of-range values are a caller bug; masking keeps the output four bytes.
  value &= wire::kMaxVarint;
  char bytes[4];
  size_t size = 0;
  do {
    auto byte = static_cast<uint8_t>(value & 0x7F);
    value >>= 7;
    if (value != 0) byte |= 0x80;
    bytes[size++] = static_cast<char>(byte);
  } while (value != 0);
  out.append(bytes, size);
  return size;
}

size_t encoded_size(const PublishRef& publish, Version version) {
  const bool v5 = version == Version::kV5;
  const size_t remaining = publish_remaining(publish, v5, publish_property_body(publish, v5));
  return 1 + wire::varint_size(static_cast<uint32_t>(remaining)) + remaining;
}

void encode(const PublishRef& publish, Version version, std::string& out,
            size_t* packet_id_offset) {
  const bool v5 = version == Version::kV5;
  const size_t properties = publish_property_body(publish, v5);
  const size_t remaining = publish_remaining(publish, v5, properties);
  out.reserve(out.size() + 1 + wire::varint_size(static_cast<uint32_t>(remaining)) + remaining);
  out.push_back(static_cast<char>(publish_first_byte(publish)));
  write_varint(static_cast<uint32_t>(remaining), out);
  wire::AppendSink sink{out};
  sink.prefixed(publish.topic);
  if ((publish.qos & 0x03) != 0) {
    if (packet_id_offset != nullptr) *packet_id_offset = out.size();
    sink.u16(publish.packet_id);
  }
  if (v5) {
    if (publish.properties != nullptr) {
      wire::append_properties(*publish.properties, PropertyScope::kPublish, properties, out);
    } else {
      sink.u8(0);  // Property Length 0
    }
  }
  sink.bytes(publish.payload);
}

void encode(const Packet& packet, Version version, std::string& out) {
  if (const Publish* publish = std::get_if<Publish>(&packet)) {
    const PublishRef ref{publish->topic, publish->payload,   publish->qos,        publish->retain,
                         publish->dup,   publish->packet_id, &publish->properties};
    encode(ref, version, out);
    return;
  }
  const uint8_t first = first_byte(packet);
  std::visit(
      [&](const auto& value) {
        using T = std::decay_t<decltype(value)>;
        if constexpr (!std::is_same_v<T, Publish>) encode_packet(value, first, version, out);
      },
      packet);
}

}  // namespace counterlink::mqtt
