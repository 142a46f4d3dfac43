// Internal to cl_mqtt: the byte-level pieces shared by the decoder, the
// encoder and the property codec. Not installed, not part of the API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "counterlink/mqtt/codec.h"
#include "counterlink/mqtt/packet.h"

namespace counterlink::mqtt::wire {

// Largest value a Variable Byte Integer can hold (four bytes of 7 bits).
inline constexpr uint32_t kMaxVarint = 268'435'455;

inline constexpr size_t varint_size(uint32_t value) {
  return value < 128u ? 1 : value < 16'384u ? 2 : value < 2'097'152u ? 3 : 4;
}

enum class VarintStatus : uint8_t { kOk, kTruncated, kTooLong, kNotMinimal };

// Reads a Variable Byte Integer from the start of `in`. On kOk, `size` is the
// number of bytes it occupied. Rejects encodings longer than four bytes and
// encodings that are not the shortest possible (MQTT-1.5.5-1).
inline VarintStatus parse_varint(std::string_view in, uint32_t& value, size_t& size) {
  value = 0;
  for (size_t i = 0; i < 4; ++i) {
    if (i >= in.size()) return VarintStatus::kTruncated;
    const auto byte = static_cast<uint8_t>(in[i]);
    value |= uint32_t{byte & 0x7Fu} << (7 * i);
    if ((byte & 0x80) == 0) {
      // The last byte carries the most significant bits; zero there means a
      // shorter encoding existed.
      if (i > 0 && byte == 0) return VarintStatus::kNotMinimal;
      size = i + 1;
      return VarintStatus::kOk;
    }
  }
  return VarintStatus::kTooLong;
}

// A bounds-checked forward cursor over one packet. Every read either succeeds
// completely or fails without consuming anything.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}

  size_t remaining() const { return data_.size() - pos_; }
  bool at_end() const { return pos_ == data_.size(); }

  bool read_u8(uint8_t& value) {
    if (remaining() < 1) return false;
    value = static_cast<uint8_t>(data_[pos_]);
    pos_ += 1;
    return true;
  }

  bool read_u16(uint16_t& value) {
    if (remaining() < 2) return false;
    value = static_cast<uint16_t>(byte_at(0) << 8 | byte_at(1));
    pos_ += 2;
    return true;
  }

  bool read_u32(uint32_t& value) {
    if (remaining() < 4) return false;
    value = uint32_t{byte_at(0)} << 24 | uint32_t{byte_at(1)} << 16 | uint32_t{byte_at(2)} << 8 |
            uint32_t{byte_at(3)};
    pos_ += 4;
    return true;
  }

  VarintStatus read_varint(uint32_t& value) {
    size_t size = 0;
    const VarintStatus status = parse_varint(data_.substr(pos_), value, size);
    if (status == VarintStatus::kOk) pos_ += size;
    return status;
  }

  bool read_bytes(size_t count, std::string_view& value) {
    if (remaining() < count) return false;
    value = data_.substr(pos_, count);
    pos_ += count;
    return true;
  }

  // A Two Byte Integer length followed by that many bytes (UTF-8 Encoded
  // String or Binary Data; validation is the caller's).
  bool read_prefixed(std::string_view& value) {
    if (remaining() < 2) return false;
    const size_t length = size_t{byte_at(0)} << 8 | byte_at(1);
    if (remaining() - 2 < length) return false;
    value = data_.substr(pos_ + 2, length);
    pos_ += 2 + length;
    return true;
  }

  std::string_view rest() {
    std::string_view value = data_.substr(pos_);
    pos_ = data_.size();
    return value;
  }

 private:
  uint8_t byte_at(size_t offset) const { return static_cast<uint8_t>(data_[pos_ + offset]); }

  std::string_view data_;
  size_t pos_ = 0;
};

// Decoding state for one packet: where errors go and how to name the packet
// in their messages.
struct DecodeContext {
  DecodeError& error;
  PacketType type;
  bool v5;

  // Records the error, with the message "<PACKET TYPE>: <what><detail>", and
  // returns false so that parsers can `return ctx.fail(...)`.
  bool fail(ReasonCode reason, std::string_view what, std::string_view detail = {}) const;
  // As fail(), with a property's name prepended to `what`.
  bool fail_property(ReasonCode reason, uint32_t id, std::string_view what) const;
};

// Property identifiers (MQTT 5.0 section 2.2.2.2).
enum PropertyId : uint8_t {
  kPayloadFormatIndicator = 0x01,
  kMessageExpiryInterval = 0x02,
  kContentType = 0x03,
  kResponseTopic = 0x08,
  kCorrelationData = 0x09,
  kSubscriptionIdentifier = 0x0B,
  kSessionExpiryInterval = 0x11,
  kAssignedClientIdentifier = 0x12,
  kServerKeepAlive = 0x13,
  kAuthenticationMethod = 0x15,
  kAuthenticationData = 0x16,
  kRequestProblemInformation = 0x17,
  kWillDelayInterval = 0x18,
  kRequestResponseInformation = 0x19,
  kResponseInformation = 0x1A,
  kServerReference = 0x1C,
  kReasonString = 0x1F,
  kReceiveMaximum = 0x21,
  kTopicAliasMaximum = 0x22,
  kTopicAlias = 0x23,
  kMaximumQos = 0x24,
  kRetainAvailable = 0x25,
  kUserProperty = 0x26,
  kMaximumPacketSize = 0x27,
  kWildcardSubscriptionAvailable = 0x28,
  kSubscriptionIdentifierAvailable = 0x29,
  kSharedSubscriptionAvailable = 0x2A,
};

// Where a property block sits; decides which identifiers are allowed.
enum class PropertyScope : uint8_t {
  kConnect,
  kWill,
  kConnack,
  kPublish,
  kAck,  // PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK
  kSubscribe,
  kUnsubscribe,
  kDisconnect,
  kAuth,
};

// Reads a Property Length and the properties it covers into `out` (which must
// be empty), enforcing the identifiers allowed in `scope`, duplicates and
// value ranges.
bool read_properties(Reader& reader, PropertyScope scope, Properties& out,
                     const DecodeContext& ctx);

// Bytes the properties allowed in `scope` occupy, without the Property Length.
size_t properties_body_size(const Properties& properties, PropertyScope scope);

// Appends the Property Length and the properties allowed in `scope`;
// `body_size` must be properties_body_size(properties, scope). Properties not
// allowed in `scope` are skipped so that values copied between packets (e.g.
// will properties into a PUBLISH) never produce a packet the peer must reject.
void append_properties(const Properties& properties, PropertyScope scope, size_t body_size,
                       std::string& out);

// The encoder writes each packet twice through the same template: once into
// a SizeSink to learn the Remaining Length (and reserve the output once), and
// once into an AppendSink.
struct SizeSink {
  size_t size = 0;
  void u8(uint8_t) { size += 1; }
  void u16(uint16_t) { size += 2; }
  void u32(uint32_t) { size += 4; }
  void varint(uint32_t value) { size += varint_size(value); }
  void bytes(std::string_view value) { size += value.size(); }
  // A Two Byte Integer length prefix and the bytes (string or binary data).
  void prefixed(std::string_view value) { size += 2 + value.size(); }
  // Property Length plus properties; `body_size` from properties_body_size().
  void properties(const Properties&, PropertyScope, size_t body_size) {
    size += varint_size(static_cast<uint32_t>(body_size)) + body_size;
  }
};

struct AppendSink {
  std::string& out;
  void u8(uint8_t value) { out.push_back(static_cast<char>(value)); }
  void u16(uint16_t value) {
    const char bytes[2] = {static_cast<char>(value >> 8), static_cast<char>(value)};
    out.append(bytes, 2);
  }
  void u32(uint32_t value) {
    const char bytes[4] = {static_cast<char>(value >> 24), static_cast<char>(value >> 16),
                           static_cast<char>(value >> 8), static_cast<char>(value)};
    out.append(bytes, 4);
  }
  void varint(uint32_t value) { write_varint(value, out); }
  void bytes(std::string_view value) { out.append(value); }
  // Lengths above 65,535 cannot be represented; callers must not pass them
  // (the length is truncated to 16 bits rather than corrupting memory).
  void prefixed(std::string_view value) {
    u16(static_cast<uint16_t>(value.size()));
    out.append(value);
  }
  void properties(const Properties& properties, PropertyScope scope, size_t body_size) {
    append_properties(properties, scope, body_size, out);
  }
};

}  // namespace counterlink::mqtt::wire
