// Framing and strict decoding of MQTT 3.1, 3.1.1 and 5.0 control packets.
//
// Error classification follows the 5.0 specification where it names one:
// bytes that cannot be parsed, or break a "MUST" about the encoding itself,
// are Malformed Packet (0x81); well-formed values that a rule forbids (a zero
// packet identifier, a duplicated property, an out-of-range property value)
// are Protocol Error (0x82). Two rules have their own codes: a wildcard in a
// topic name is Topic Name Invalid (0x90), and a CONNECT whose protocol level
// is not supported is Unsupported Protocol Version (0x84). A 3.1.1 server has
// no reason codes and simply closes the connection for any of them.
#include "counterlink/mqtt/codec.h"

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "counterlink/mqtt/topic.h"

#include "wire.h"

namespace counterlink::mqtt {

using wire::DecodeContext;
using wire::PropertyScope;
using wire::Reader;
using wire::VarintStatus;

namespace {

// The set of reason codes a packet type may carry (MQTT 5.0 section 2.4 and
// the per-packet tables in chapter 3).
class ReasonSet {
 public:
  constexpr ReasonSet(std::initializer_list<uint8_t> codes) {
    for (uint8_t code : codes) {
      words_[code >> 6] |= uint64_t{1} << (code & 63);
    }
  }
  constexpr bool contains(uint8_t code) const {
    return ((words_[code >> 6] >> (code & 63)) & 1) != 0;
  }

 private:
  uint64_t words_[4] = {};
};

constexpr ReasonSet kConnackReasons = {0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86,
                                       0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
                                       0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F};
constexpr ReasonSet kPubackReasons = {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99};
constexpr ReasonSet kPubrelReasons = {0x00, 0x92};
constexpr ReasonSet kSubackReasons = {0x00, 0x01, 0x02, 0x80, 0x83, 0x87,
                                      0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2};
constexpr ReasonSet kUnsubackReasons = {0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91};
constexpr ReasonSet kDisconnectReasons = {
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94,
    0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2};
constexpr ReasonSet kAuthReasons = {0x00, 0x18, 0x19};

constexpr std::string_view kTruncated = " is truncated";

std::string hex_byte(uint8_t value) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  return std::string{'0', 'x', kDigits[value >> 4], kDigits[value & 0xF]};
}

bool read_reason(Reader& reader, const DecodeContext& ctx, const ReasonSet& allowed,
                 ReasonCode& out) {
  uint8_t code;
  if (!reader.read_u8(code)) {
    return ctx.fail(ReasonCode::kMalformedPacket, "Reason Code", kTruncated);
  }
  if (!allowed.contains(code)) {
    return ctx.fail(ReasonCode::kMalformedPacket, "Reason Code ",
                    hex_byte(code) + " is not valid for this packet");
  }
  out = static_cast<ReasonCode>(code);
  return true;
}

// Reads a UTF-8 Encoded String (MQTT-1.5.4-1/-2); `what` names it in errors.
bool read_utf8(Reader& reader, const DecodeContext& ctx, std::string_view what,
               std::string_view& out) {
  if (!reader.read_prefixed(out)) return ctx.fail(ReasonCode::kMalformedPacket, what, kTruncated);
  if (!is_valid_mqtt_utf8(out)) {
    return ctx.fail(ReasonCode::kMalformedPacket, what, " is not valid UTF-8");
  }
  return true;
}

bool read_binary(Reader& reader, const DecodeContext& ctx, std::string_view what,
                 std::string_view& out) {
  if (!reader.read_prefixed(out)) return ctx.fail(ReasonCode::kMalformedPacket, what, kTruncated);
  return true;
}

// Packet identifiers of SUBSCRIBE, UNSUBSCRIBE, PUBLISH QoS>0 and the acks
// must be non-zero (MQTT-2.2.1-3 in 5.0, MQTT-2.3.1-1 in 3.1.1).
bool read_packet_id(Reader& reader, const DecodeContext& ctx, uint16_t& out) {
  if (!reader.read_u16(out)) {
    return ctx.fail(ReasonCode::kMalformedPacket, "Packet Identifier", kTruncated);
  }
  if (out == 0) return ctx.fail(ReasonCode::kProtocolError, "Packet Identifier is 0");
  return true;
}

// A topic name carried by PUBLISH or a will; UTF-8 validity is checked by the
// caller. An empty name breaks MQTT-4.7.3-1 unless a 5.0 Topic Alias stands in
// for it (`alias_present`). Wildcards get Topic Name Invalid (0x90), the code
// 5.0 servers answer a PUBLISH to a wildcard topic with.
bool check_topic_name(std::string_view topic, const DecodeContext& ctx, std::string_view what,
                      bool alias_present) {
  if (topic.empty()) {
    if (alias_present) return true;
    return ctx.fail(ctx.v5 ? ReasonCode::kProtocolError : ReasonCode::kMalformedPacket, what,
                    ctx.v5 ? " is empty and no Topic Alias is set" : " is empty");
  }
  if (!is_valid_topic_name(topic)) {
    return ctx.fail(ReasonCode::kTopicNameInvalid, what, " contains a wildcard");
  }
  return true;
}

bool decode_connect(Reader& reader, DecodeContext& ctx, Packet& out) {
  std::string_view name;
  if (!reader.read_prefixed(name)) {
    return ctx.fail(ReasonCode::kMalformedPacket, "Protocol Name", kTruncated);
  }
  uint8_t level;
  if (!reader.read_u8(level)) {
    return ctx.fail(ReasonCode::kMalformedPacket, "Protocol Level", kTruncated);
  }
  const bool mqtt = name == "MQTT";
  const bool mqisdp = name == "MQIsdp";
  if (!mqtt && !mqisdp) {
    // Not MQTT at all (MQTT-3.1.2-1): there is no dialect to answer in.
    return ctx.fail(ReasonCode::kMalformedPacket, "Protocol Name is neither MQTT nor MQIsdp");
  }
  // The level decides the wire format of the CONNACK, so report it even when
  // the combination with the name is refused.
  if (level >= 3 && level <= 5) ctx.error.connect_version = static_cast<Version>(level);
  if (!(mqtt && (level == 4 || level == 5)) && !(mqisdp && level == 3)) {
    return ctx.fail(
        ReasonCode::kUnsupportedProtocolVersion, "Protocol Level ",
        std::to_string(level) + " is not supported with Protocol Name " + std::string(name));
  }
  ctx.v5 = level == 5;

  uint8_t flags;
  if (!reader.read_u8(flags)) {
    return ctx.fail(ReasonCode::kMalformedPacket, "Connect Flags", kTruncated);
  }
  if ((flags & 0x01) != 0) {
    return ctx.fail(ReasonCode::kMalformedPacket, "reserved Connect Flags bit 0 is set");
  }
  const bool will_flag = (flags & 0x04) != 0;
  const uint8_t will_qos = (flags >> 3) & 0x03;
  const bool will_retain = (flags & 0x20) != 0;
  const bool password_flag = (flags & 0x40) != 0;
  const bool username_flag = (flags & 0x80) != 0;
  if (!will_flag && (will_qos != 0 || will_retain)) {
    return ctx.fail(ReasonCode::kMalformedPacket, "Will QoS or Will Retain set without Will Flag");
  }
  if (will_qos == 3) return ctx.fail(ReasonCode::kMalformedPacket, "Will QoS is 3");
  if (!ctx.v5 && password_flag && !username_flag) {
    return ctx.fail(ReasonCode::kMalformedPacket, "Password Flag set without User Name Flag");
  }

  Connect& connect = out.emplace<Connect>();
  connect.version = static_cast<Version>(level);
  connect.clean_start = (flags & 0x02) != 0;
  if (!reader.read_u16(connect.keep_alive)) {
    return ctx.fail(ReasonCode::kMalformedPacket, "Keep Alive", kTruncated);
  }
  if (ctx.v5 && !wire::read_properties(reader, PropertyScope::kConnect, connect.properties, ctx)) {
    return false;
  }

  std::string_view value;
  if (!read_utf8(reader, ctx, "Client Identifier", value)) return false;
  connect.client_id.assign(value);

  if (will_flag) {
    Will& will = connect.will.emplace();
    will.qos = will_qos;
    will.retain = will_retain;
    if (ctx.v5 && !wire::read_properties(reader, PropertyScope::kWill, will.properties, ctx)) {
      return false;
    }
    if (!read_utf8(reader, ctx, "Will Topic", value)) return false;
    if (!check_topic_name(value, ctx, "Will Topic", false)) return false;
    will.topic.assign(value);
    if (!read_binary(reader, ctx, "Will Payload", value)) return false;
    will.payload.assign(value);
  }
  if (username_flag) {
    if (!read_utf8(reader, ctx, "User Name", value)) return false;
    connect.username.emplace(value);
  }
  if (password_flag) {
    if (!read_binary(reader, ctx, "Password", value)) return false;
    connect.password.emplace(value);
  }
  return true;
}

ReasonCode connack_reason_from_v3(uint8_t code) {
  switch (code) {
    case 0:
      return ReasonCode::kSuccess;
    case 1:
      return ReasonCode::kUnsupportedProtocolVersion;
    case 2:
      return ReasonCode::kClientIdentifierNotValid;
    case 3:
      return ReasonCode::kServerUnavailable;
    case 4:
      return ReasonCode::kBadUserNameOrPassword;
    default:
      return ReasonCode::kNotAuthorized;
  }
}

bool decode_connack(Reader& reader, const DecodeContext& ctx, Packet& out) {
  uint8_t flags;
  if (!reader.read_u8(flags)) {
    return ctx.fail(ReasonCode::kMalformedPacket, "Connect Acknowledge Flags", kTruncated);
  }
  if ((flags & 0xFE) != 0) {
    return ctx.fail(ReasonCode::kMalformedPacket, "reserved Connect Acknowledge Flags are set");
  }
  Connack& connack = out.emplace<Connack>();
  connack.session_present = (flags & 0x01) != 0;
  if (ctx.v5) {
    if (!read_reason(reader, ctx, kConnackReasons, connack.reason)) return false;
    if (!wire::read_properties(reader, PropertyScope::kConnack, connack.properties, ctx)) {
      return false;
    }
  } else {
    uint8_t code;
    if (!reader.read_u8(code)) {
      return ctx.fail(ReasonCode::kMalformedPacket, "Connect Return Code", kTruncated);
    }
    if (code > 5) {
      return ctx.fail(ReasonCode::kMalformedPacket, "Connect Return Code ",
                      std::to_string(code) + " is reserved");
    }
    connack.reason = connack_reason_from_v3(code);
  }
  // MQTT-3.2.2-4 (3.1.1) and MQTT-3.2.2-6 (5.0).
  if (connack.session_present && connack.reason != ReasonCode::kSuccess) {
    return ctx.fail(ReasonCode::kProtocolError, "Session Present is set on a refused connection");
  }
  return true;
}

// Resets a Publish held by `out` in place, so a caller that decodes into the
// same Packet repeatedly keeps the topic and payload capacity.
Publish& reuse_publish(Packet& out) {
  if (Publish* publish = std::get_if<Publish>(&out)) {
    publish->topic.clear();
    publish->payload.clear();
    publish->packet_id = 0;
    if (!publish->properties.empty()) publish->properties = Properties{};
    return *publish;
  }
  return out.emplace<Publish>();
}

bool decode_publish(Reader& reader, const DecodeContext& ctx, uint8_t flags, Packet& out) {
  const bool dup = (flags & 0x08) != 0;
  const uint8_t qos = (flags >> 1) & 0x03;
  if (qos == 3) return ctx.fail(ReasonCode::kMalformedPacket, "QoS is 3");
  if (qos == 0 && dup) {
    return ctx.fail(ReasonCode::kMalformedPacket, "DUP flag is set on a QoS 0 message");
  }
  std::string_view topic;
  if (!read_utf8(reader, ctx, "Topic Name", topic)) return false;
  // An empty topic is settled after the properties, which may hold an alias.
  if (!topic.empty() && !check_topic_name(topic, ctx, "Topic Name", false)) return false;

  Publish& publish = reuse_publish(out);
  publish.qos = qos;
  publish.dup = dup;
  publish.retain = (flags & 0x01) != 0;
  if (qos > 0 && !read_packet_id(reader, ctx, publish.packet_id)) return false;
  if (ctx.v5 && !wire::read_properties(reader, PropertyScope::kPublish, publish.properties, ctx)) {
    return false;
  }
  if (topic.empty() &&
      !check_topic_name(topic, ctx, "Topic Name", publish.properties.topic_alias.has_value())) {
    return false;
  }
  publish.topic.assign(topic);
  publish.payload.assign(reader.rest());
  return true;
}

bool decode_ack(Reader& reader, const DecodeContext& ctx, Packet& out) {
  Ack& ack = out.emplace<Ack>();
  ack.type = ctx.type;
  if (!read_packet_id(reader, ctx, ack.packet_id)) return false;
  // 5.0 compact forms: Remaining Length 2 is Success without properties; 3 has
  // a reason but no Property Length (section 3.4.2.1).
  if (!ctx.v5 || reader.at_end()) return true;
  const bool pub = ctx.type == PacketType::kPuback || ctx.type == PacketType::kPubrec;
  if (!read_reason(reader, ctx, pub ? kPubackReasons : kPubrelReasons, ack.reason)) return false;
  if (reader.at_end()) return true;
  return wire::read_properties(reader, PropertyScope::kAck, ack.properties, ctx);
}

bool decode_subscribe(Reader& reader, const DecodeContext& ctx, Packet& out) {
  Subscribe& subscribe = out.emplace<Subscribe>();
  if (!read_packet_id(reader, ctx, subscribe.packet_id)) return false;
  if (ctx.v5 &&
      !wire::read_properties(reader, PropertyScope::kSubscribe, subscribe.properties, ctx)) {
    return false;
  }
  // MQTT-3.8.3-2 (5.0) / MQTT-3.8.3-3 (3.1.1).
  if (reader.at_end()) return ctx.fail(ReasonCode::kProtocolError, "has no Topic Filter");
  while (!reader.at_end()) {
    std::string_view filter;
    // Filter syntax is deliberately not checked: the server answers a bad
    // filter with a failure code for that filter alone.
    if (!read_utf8(reader, ctx, "Topic Filter", filter)) return false;
    uint8_t options;
    if (!reader.read_u8(options)) {
      return ctx.fail(ReasonCode::kMalformedPacket, "Subscription Options", kTruncated);
    }
    if ((options & (ctx.v5 ? 0xC0 : 0xFC)) != 0) {
      return ctx.fail(ReasonCode::kMalformedPacket, "reserved Subscription Options bits are set");
    }
    TopicSubscription& subscription = subscribe.subscriptions.emplace_back();
    subscription.options.max_qos = options & 0x03;
    if (subscription.options.max_qos == 3) {
      return ctx.fail(ReasonCode::kMalformedPacket, "Subscription Options QoS is 3");
    }
    if (ctx.v5) {
      subscription.options.no_local = (options & 0x04) != 0;
      subscription.options.retain_as_published = (options & 0x08) != 0;
      subscription.options.retain_handling = (options >> 4) & 0x03;
      if (subscription.options.retain_handling == 3) {
        return ctx.fail(ReasonCode::kProtocolError, "Retain Handling is 3");
      }
      bool valid = false;
      if (subscription.options.no_local && parse_shared_subscription(filter, valid) && valid) {
        // MQTT-3.8.3-4.
        return ctx.fail(ReasonCode::kProtocolError, "No Local is set on a shared subscription");
      }
    }
    subscription.filter.assign(filter);
  }
  return true;
}

bool decode_suback(Reader& reader, const DecodeContext& ctx, Packet& out) {
  Suback& suback = out.emplace<Suback>();
  if (!read_packet_id(reader, ctx, suback.packet_id)) return false;
  if (ctx.v5 && !wire::read_properties(reader, PropertyScope::kAck, suback.properties, ctx)) {
    return false;
  }
  if (reader.at_end()) return ctx.fail(ReasonCode::kProtocolError, "has no Reason Code");
  suback.reasons.reserve(reader.remaining());
  while (!reader.at_end()) {
    if (ctx.v5) {
      if (!read_reason(reader, ctx, kSubackReasons, suback.reasons.emplace_back())) return false;
      continue;
    }
    uint8_t code = 0;
    reader.read_u8(code);
    if (code > 2 && code != 0x80) {
      return ctx.fail(ReasonCode::kMalformedPacket, "Return Code ",
                      hex_byte(code) + " is reserved");
    }
    suback.reasons.push_back(code == 0x80 ? ReasonCode::kUnspecifiedError
                                          : static_cast<ReasonCode>(code));
  }
  return true;
}

bool decode_unsubscribe(Reader& reader, const DecodeContext& ctx, Packet& out) {
  Unsubscribe& unsubscribe = out.emplace<Unsubscribe>();
  if (!read_packet_id(reader, ctx, unsubscribe.packet_id)) return false;
  if (ctx.v5 &&
      !wire::read_properties(reader, PropertyScope::kUnsubscribe, unsubscribe.properties, ctx)) {
    return false;
  }
  // MQTT-3.10.3-2.
  if (reader.at_end()) return ctx.fail(ReasonCode::kProtocolError, "has no Topic Filter");
  while (!reader.at_end()) {
    std::string_view filter;
    if (!read_utf8(reader, ctx, "Topic Filter", filter)) return false;
    unsubscribe.filters.emplace_back(filter);
  }
  return true;
}

bool decode_unsuback(Reader& reader, const DecodeContext& ctx, Packet& out) {
  Unsuback& unsuback = out.emplace<Unsuback>();
  if (!read_packet_id(reader, ctx, unsuback.packet_id)) return false;
  if (!ctx.v5) return true;
  if (!wire::read_properties(reader, PropertyScope::kAck, unsuback.properties, ctx)) return false;
  if (reader.at_end()) return ctx.fail(ReasonCode::kProtocolError, "has no Reason Code");
  unsuback.reasons.reserve(reader.remaining());
  while (!reader.at_end()) {
    if (!read_reason(reader, ctx, kUnsubackReasons, unsuback.reasons.emplace_back())) return false;
  }
  return true;
}

// DISCONNECT and AUTH in 5.0: Remaining Length 0 is Success without
// properties, 1 a reason without Property Length (sections 3.14.2.1, 3.15.2.1).
template <class T>
bool decode_reason_and_properties(Reader& reader, const DecodeContext& ctx,
                                  const ReasonSet& reasons, PropertyScope scope, Packet& out) {
  T& packet = out.emplace<T>();
  if (!ctx.v5 || reader.at_end()) return true;
  if (!read_reason(reader, ctx, reasons, packet.reason)) return false;
  if (reader.at_end()) return true;
  return wire::read_properties(reader, scope, packet.properties, ctx);
}

bool decode_body(Reader& reader, DecodeContext& ctx, uint8_t flags, Packet& out) {
  switch (ctx.type) {
    case PacketType::kConnect:
      return decode_connect(reader, ctx, out);
    case PacketType::kConnack:
      return decode_connack(reader, ctx, out);
    case PacketType::kPublish:
      return decode_publish(reader, ctx, flags, out);
    case PacketType::kPuback:
    case PacketType::kPubrec:
    case PacketType::kPubrel:
    case PacketType::kPubcomp:
      return decode_ack(reader, ctx, out);
    case PacketType::kSubscribe:
      return decode_subscribe(reader, ctx, out);
    case PacketType::kSuback:
      return decode_suback(reader, ctx, out);
    case PacketType::kUnsubscribe:
      return decode_unsubscribe(reader, ctx, out);
    case PacketType::kUnsuback:
      return decode_unsuback(reader, ctx, out);
    case PacketType::kPingreq:
      out.emplace<Pingreq>();
      return true;
    case PacketType::kPingresp:
      out.emplace<Pingresp>();
      return true;
    case PacketType::kDisconnect:
      return decode_reason_and_properties<Disconnect>(reader, ctx, kDisconnectReasons,
                                                      PropertyScope::kDisconnect, out);
    case PacketType::kAuth: {
      if (!decode_reason_and_properties<Auth>(reader, ctx, kAuthReasons, PropertyScope::kAuth,
                                              out)) {
        return false;
      }
      // Section 3.15.2.2.2: continuing or restarting an exchange names its
      // method. (A Success AUTH may be compact, hence without one.)
      const Auth& auth = std::get<Auth>(out);
      if (auth.reason != ReasonCode::kSuccess && !auth.properties.authentication_method) {
        return ctx.fail(ReasonCode::kProtocolError, "Authentication Method is missing");
      }
      return true;
    }
  }
  return false;  // unreachable: type 0 is rejected before dispatch
}

DecodeStatus fail_frame(DecodeError& error, ReasonCode reason, std::string message) {
  error.reason = reason;
  error.message = std::move(message);
  error.connect_version.reset();
  return DecodeStatus::kError;
}

}  // namespace

namespace wire {

bool DecodeContext::fail(ReasonCode reason, std::string_view what, std::string_view detail) const {
  error.reason = reason;
  error.message.assign(to_string(type));
  error.message.append(": ");
  error.message.append(what);
  error.message.append(detail);
  return false;
}

}  // namespace wire

DecodeStatus peek_frame(std::string_view in, uint32_t max_packet_size, FrameHeader& out,
                        DecodeError& error) {
  if (in.empty()) return DecodeStatus::kNeedMore;
  const auto first_byte = static_cast<uint8_t>(in[0]);
  if ((first_byte >> 4) == 0) {
    return fail_frame(error, ReasonCode::kMalformedPacket, "packet type 0 is reserved");
  }
  uint32_t remaining_length = 0;
  size_t length_size = 0;
  switch (wire::parse_varint(in.substr(1), remaining_length, length_size)) {
    case VarintStatus::kOk:
      break;
    case VarintStatus::kTruncated:
      return DecodeStatus::kNeedMore;
    case VarintStatus::kTooLong:
      return fail_frame(error, ReasonCode::kMalformedPacket,
                        "Remaining Length is longer than four bytes");
    case VarintStatus::kNotMinimal:
      return fail_frame(error, ReasonCode::kMalformedPacket,
                        "Remaining Length is not minimally encoded");
  }
  out.first_byte = first_byte;
  out.remaining_length = remaining_length;
  out.header_size = static_cast<uint8_t>(1 + length_size);
  if (out.total_size() > max_packet_size) {
    return fail_frame(error, ReasonCode::kPacketTooLarge,
                      "packet of " + std::to_string(out.total_size()) +
                          " bytes exceeds the maximum packet size of " +
                          std::to_string(max_packet_size));
  }
  return DecodeStatus::kOk;
}

DecodeStatus decode(const FrameHeader& header, std::string_view packet, Version version,
                    Packet& out, DecodeError& error) {
  error.connect_version.reset();
  const uint8_t type_bits = header.first_byte >> 4;
  if (type_bits == 0) {
    return fail_frame(error, ReasonCode::kMalformedPacket, "packet type 0 is reserved");
  }
  if (packet.size() < header.total_size()) return DecodeStatus::kNeedMore;
  if (header.header_size < 2 || header.header_size > 5 || packet.size() != header.total_size() ||
      static_cast<uint8_t>(packet[0]) != header.first_byte) {
    return fail_frame(error, ReasonCode::kMalformedPacket,
                      "decode() input does not match its frame header");
  }

  DecodeContext ctx{error, header.type(), version == Version::kV5};
  const uint8_t flags = header.first_byte & 0x0F;
  if (ctx.type == PacketType::kAuth && !ctx.v5) {
    ctx.fail(ReasonCode::kMalformedPacket, "packet type 15 is reserved before MQTT 5.0");
    return DecodeStatus::kError;
  }
  if (ctx.type != PacketType::kPublish) {
    // MQTT-2.2.2-1 / MQTT-2.1.3-1: fixed flags for every type but PUBLISH.
    const bool flags_two = ctx.type == PacketType::kPubrel || ctx.type == PacketType::kSubscribe ||
                           ctx.type == PacketType::kUnsubscribe;
    if (flags != (flags_two ? 0x02 : 0x00)) {
      ctx.fail(ReasonCode::kMalformedPacket, "fixed header flags must be ",
               flags_two ? "0x2" : "0x0");
      return DecodeStatus::kError;
    }
  }

  Reader reader(packet.substr(header.header_size));
  if (!decode_body(reader, ctx, flags, out)) return DecodeStatus::kError;
  if (!reader.at_end()) {
    ctx.fail(ReasonCode::kMalformedPacket,
             "unexpected bytes after the end of the packet: ", std::to_string(reader.remaining()));
    return DecodeStatus::kError;
  }
  return DecodeStatus::kOk;
}

}  // namespace counterlink::mqtt
