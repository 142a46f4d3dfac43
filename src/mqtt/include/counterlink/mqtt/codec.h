// MQTT wire codec: bytes <-> packets. Pure functions, no I/O, no allocation
// beyond the output values; safe to call from any thread.
//
// Decoding is two steps so that a transport can frame without parsing:
//   1. peek_frame() reads the fixed header and says how many bytes the whole
//      packet needs (or that more bytes must arrive first);
//   2. decode() parses one complete packet strictly.
// Every rule of the specification that can be checked on one packet alone is
// checked here; rules that need session state (a second CONNECT, a topic alias
// above the negotiated maximum, an ack for an unknown packet id, packets only a
// server may send) belong to the caller.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "counterlink/mqtt/packet.h"

namespace counterlink::mqtt {

enum class DecodeStatus : uint8_t {
  kOk,        // a value was produced
  kNeedMore,  // the input holds only a prefix of a packet; nothing consumed
  kError,     // the input is invalid; see DecodeError
};

struct DecodeError {
  // kMalformedPacket (0x81), kProtocolError (0x82), kPacketTooLarge (0x95),
  // kUnsupportedProtocolVersion (0x84, CONNECT only), kClientIdentifierNotValid
  // is never produced here (that is a policy decision of the server).
  ReasonCode reason = ReasonCode::kMalformedPacket;
  // Short English description naming what was wrong, for logs and for the
  // 5.0 Reason String property, e.g. "PUBLISH topic contains a wildcard".
  std::string message;
  // For CONNECT: the protocol version the packet announced, when it could be
  // read, so the server can answer in the client's dialect. Otherwise unset.
  std::optional<Version> connect_version;
};

struct FrameHeader {
  uint8_t first_byte = 0;         // packet type << 4 | flags
  uint32_t remaining_length = 0;  // bytes after the fixed header
  uint8_t header_size = 0;        // 2..5 bytes of fixed header
  size_t total_size() const { return size_t{header_size} + remaining_length; }
  PacketType type() const { return static_cast<PacketType>(first_byte >> 4); }
};

// Reads the fixed header at the start of `in`.
//  - kNeedMore if `in` ends inside the fixed header (the packet body may still
//    be incomplete even on kOk: compare total_size() with in.size()).
//  - kError kMalformedPacket for a remaining length longer than 4 bytes or not
//    minimally encoded, or packet type 0.
//  - kError kPacketTooLarge if total_size() > max_packet_size (checked as soon
//    as the length is known, before the body arrives).
DecodeStatus peek_frame(std::string_view in, uint32_t max_packet_size, FrameHeader& out,
                        DecodeError& error);

// Decodes one complete packet: `packet` must be exactly header.total_size()
// bytes starting with the fixed header. `version` is the version negotiated on
// this connection (ignored for CONNECT, which carries its own). Validates
// fixed-header flags, UTF-8 strings (MQTT-1.5.4), topic names and filters,
// property identifiers allowed on the packet type, duplicate properties,
// property value ranges, and trailing bytes.
DecodeStatus decode(const FrameHeader& header, std::string_view packet, Version version,
                    Packet& out, DecodeError& error);

// A PUBLISH to encode without first copying topic and payload into a Publish.
struct PublishRef {
  std::string_view topic;
  std::string_view payload;
  uint8_t qos = 0;
  bool retain = false;
  bool dup = false;
  uint16_t packet_id = 0;
  const Properties* properties = nullptr;  // nullable; ignored below 5.0
};

// Appends the encoding of `publish` for `version` to `out`. If
// `packet_id_offset` is non-null and qos > 0, receives the offset in `out` of
// the two packet-identifier bytes, so one encoding can be copied to many
// sessions and patched with each session's packet id.
void encode(const PublishRef& publish, Version version, std::string& out,
            size_t* packet_id_offset = nullptr);

// Appends the encoding of `packet` for `version` to `out`. Properties are
// written only for 5.0. For 3.1.1, reason codes are mapped as documented on
// Connack and Suback.
void encode(const Packet& packet, Version version, std::string& out);

// Size in bytes that encode() would append (used to honour a peer's Maximum
// Packet Size before encoding).
size_t encoded_size(const PublishRef& publish, Version version);

// Writes `value` as a Variable Byte Integer; returns bytes written (1..4).
// `value` must be < 268,435,456.
size_t write_varint(uint32_t value, std::string& out);

}  // namespace counterlink::mqtt
