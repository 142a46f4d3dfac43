// Helpers shared by the codec unit tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "counterlink/mqtt/codec.h"
#include "counterlink/mqtt/packet.h"

namespace counterlink::mqtt {

// Readable failure output for the enums the assertions compare.
inline void PrintTo(ReasonCode code, std::ostream* os) {
  *os << to_string(code) << " (0x" << std::hex << static_cast<int>(code) << std::dec << ")";
}
inline void PrintTo(DecodeStatus status, std::ostream* os) {
  switch (status) {
    case DecodeStatus::kOk:
      *os << "kOk";
      return;
    case DecodeStatus::kNeedMore:
      *os << "kNeedMore";
      return;
    case DecodeStatus::kError:
      *os << "kError";
      return;
  }
}
inline void PrintTo(PacketType type, std::ostream* os) {
  *os << to_string(type);
}

namespace test {

// Bytes written as space-separated hex pairs with 'quoted text' between them,
// e.g. Bytes("10 0D 00 04 'MQTT' 04"). Avoids the greedy "\x0Aa" pitfall of
// C++ hex escapes.
inline std::string Bytes(std::string_view spec) {
  std::string out;
  const auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  size_t i = 0;
  while (i < spec.size()) {
    const char c = spec[i];
    if (c == ' ') {
      ++i;
    } else if (c == '\'') {
      const size_t end = spec.find('\'', i + 1);
      if (end == std::string_view::npos) {
        ADD_FAILURE() << "unterminated quote in byte spec";
        return out;
      }
      out.append(spec.substr(i + 1, end - i - 1));
      i = end + 1;
    } else {
      if (i + 1 >= spec.size() || nibble(c) < 0 || nibble(spec[i + 1]) < 0) {
        ADD_FAILURE() << "bad byte spec at offset " << i << ": " << spec;
        return out;
      }
      out.push_back(static_cast<char>(nibble(c) << 4 | nibble(spec[i + 1])));
      i += 2;
    }
  }
  return out;
}

// A whole packet: `first_byte`, the Remaining Length computed from `body`
// (written as for Bytes()), then the body.
inline std::string Frame(uint8_t first_byte, std::string_view body_spec) {
  const std::string body = Bytes(body_spec);
  std::string out(1, static_cast<char>(first_byte));
  size_t length = body.size();
  do {
    uint8_t byte = length % 128;
    length /= 128;
    if (length > 0) byte |= 0x80;
    out.push_back(static_cast<char>(byte));
  } while (length > 0);
  return out + body;
}

inline constexpr uint32_t kNoLimit = 0xFFFF'FFFF;

struct Decoded {
  DecodeStatus status = DecodeStatus::kError;
  Packet packet;
  DecodeError error;
};

// Frames and decodes the first packet of `in` as a transport would.
inline Decoded DecodeBytes(std::string_view in, Version version,
                           uint32_t max_packet_size = kNoLimit) {
  Decoded result;
  FrameHeader header;
  result.status = peek_frame(in, max_packet_size, header, result.error);
  if (result.status != DecodeStatus::kOk) return result;
  if (header.total_size() > in.size()) {
    result.status = DecodeStatus::kNeedMore;
    return result;
  }
  result.status =
      decode(header, in.substr(0, header.total_size()), version, result.packet, result.error);
  return result;
}

inline std::string Encode(const Packet& packet, Version version) {
  std::string out;
  encode(packet, version, out);
  return out;
}

// Asserts that `in` is rejected with `reason`, and that the message mentions
// `fragment` (so the error names what was wrong).
inline ::testing::AssertionResult RejectsWith(std::string_view in, Version version,
                                              ReasonCode reason, std::string_view fragment) {
  const Decoded decoded = DecodeBytes(in, version);
  if (decoded.status != DecodeStatus::kError) {
    return ::testing::AssertionFailure()
           << "expected kError, got status " << static_cast<int>(decoded.status);
  }
  if (decoded.error.reason != reason) {
    return ::testing::AssertionFailure()
           << "expected " << to_string(reason) << ", got " << to_string(decoded.error.reason)
           << " (" << decoded.error.message << ")";
  }
  if (decoded.error.message.find(fragment) == std::string::npos) {
    return ::testing::AssertionFailure()
           << "message \"" << decoded.error.message << "\" does not mention \"" << fragment << "\"";
  }
  return ::testing::AssertionSuccess();
}

template <class T>
const T& As(const Decoded& decoded) {
  EXPECT_EQ(decoded.status, DecodeStatus::kOk) << decoded.error.message;
  static const T kEmpty{};
  const T* value = std::get_if<T>(&decoded.packet);
  EXPECT_NE(value, nullptr) << "decoded packet has another type";
  return value != nullptr ? *value : kEmpty;
}

}  // namespace test
}  // namespace counterlink::mqtt
