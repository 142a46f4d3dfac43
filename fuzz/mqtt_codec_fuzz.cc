// libFuzzer target for the MQTT codec.
//
// The input is read as a stream of packets, once per protocol version. For
// every packet the decoder accepts, the target asserts the codec's contract:
//  - encode(decoded) decodes again to an equal packet, and re-encodes to the
//    same bytes (the encoding is canonical after one round);
//  - every proper prefix of an accepted frame is "need more";
//  - for PUBLISH, encoded_size() equals what encode() appends and the packet
//    identifier offset points at the identifier.
// It also checks is_valid_mqtt_utf8() and topic_matches() against slow
// reference implementations on "filter\0topic" views of the input.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "counterlink/mqtt/codec.h"
#include "counterlink/mqtt/topic.h"

namespace {

using namespace counterlink::mqtt;

#define FUZZ_CHECK(condition, detail)                                  \
  do {                                                                 \
    if (!(condition)) {                                                \
      std::fprintf(stderr, "FUZZ_CHECK failed: %s (%s)\n", #condition, \
                   std::string(detail).c_str());                       \
      std::abort();                                                    \
    }                                                                  \
  } while (false)

const char* version_name(Version version) {
  switch (version) {
    case Version::kV31:
      return "3.1";
    case Version::kV311:
      return "3.1.1";
    case Version::kV5:
      return "5.0";
  }
  return "?";
}

// Code point by code point, straight from the definition of UTF-8.
bool reference_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto lead = static_cast<uint8_t>(s[i]);
    size_t length;
    uint32_t code_point;
    uint32_t minimum;
    if (lead < 0x80) {
      length = 1, code_point = lead, minimum = 0;
    } else if ((lead & 0xE0) == 0xC0) {
      length = 2, code_point = lead & 0x1F, minimum = 0x80;
    } else if ((lead & 0xF0) == 0xE0) {
      length = 3, code_point = lead & 0x0F, minimum = 0x800;
    } else if ((lead & 0xF8) == 0xF0) {
      length = 4, code_point = lead & 0x07, minimum = 0x10000;
    } else {
      return false;
    }
    if (s.size() - i < length) return false;
    for (size_t k = 1; k < length; ++k) {
      const auto byte = static_cast<uint8_t>(s[i + k]);
      if ((byte & 0xC0) != 0x80) return false;
      code_point = code_point << 6 | (byte & 0x3F);
    }
    if (code_point < minimum) return false;                          // overlong
    if (code_point >= 0xD800 && code_point <= 0xDFFF) return false;  // surrogate
    if (code_point > 0x10FFFF) return false;
    if (code_point == 0) return false;
    i += length;
  }
  return true;
}

std::vector<std::string_view> split_levels(std::string_view s) {
  std::vector<std::string_view> levels;
  size_t start = 0;
  while (true) {
    const size_t slash = s.find('/', start);
    if (slash == std::string_view::npos) {
      levels.push_back(s.substr(start));
      return levels;
    }
    levels.push_back(s.substr(start, slash - start));
    start = slash + 1;
  }
}

bool reference_match(const std::vector<std::string_view>& filter,
                     const std::vector<std::string_view>& topic, size_t f, size_t t) {
  if (f == filter.size()) return t == topic.size();
  if (filter[f] == "#") return true;
  if (t == topic.size()) return false;
  if (filter[f] != "+" && filter[f] != topic[t]) return false;
  return reference_match(filter, topic, f + 1, t + 1);
}

bool reference_topic_matches(std::string_view filter, std::string_view topic) {
  if (!topic.empty() && topic[0] == '$' && (filter[0] == '+' || filter[0] == '#')) return false;
  return reference_match(split_levels(filter), split_levels(topic), 0, 0);
}

void check_topic_functions(std::string_view in) {
  FUZZ_CHECK(is_valid_mqtt_utf8(in) == reference_utf8(in), "utf8 validator disagrees");
  const size_t nul = in.find('\0');
  if (nul == std::string_view::npos) return;
  const std::string_view filter = in.substr(0, nul);
  const std::string_view topic = in.substr(nul + 1, in.find('\0', nul + 1) - (nul + 1));
  bool shared_valid = false;
  const auto shared = parse_shared_subscription(filter, shared_valid);
  if (shared && shared_valid) FUZZ_CHECK(is_valid_topic_filter(shared->filter), "shared filter");
  if (!is_valid_topic_filter(filter) || !is_valid_topic_name(topic)) return;
  FUZZ_CHECK(topic_matches(filter, topic) == reference_topic_matches(filter, topic),
             std::string(filter) + " vs " + std::string(topic));
  FUZZ_CHECK(topic_matches(topic, topic), "a topic name matches itself as a filter");
}

void check_publish_ref(const Publish& publish, Version version, std::string_view encoded) {
  const PublishRef ref{publish.topic, publish.payload,   publish.qos,        publish.retain,
                       publish.dup,   publish.packet_id, &publish.properties};
  FUZZ_CHECK(encoded_size(ref, version) == encoded.size(), "encoded_size");
  std::string out = "x";
  size_t offset = 0;
  encode(ref, version, out, &offset);
  FUZZ_CHECK(std::string_view(out).substr(1) == encoded, "PublishRef encoding");
  if (publish.qos > 0) {
    FUZZ_CHECK(offset + 2 <= out.size(), "packet id offset");
    const auto id = static_cast<uint16_t>(static_cast<uint8_t>(out[offset]) << 8 |
                                          static_cast<uint8_t>(out[offset + 1]));
    FUZZ_CHECK(id == publish.packet_id, "packet id offset");
  }
}

void check_round_trip(const Packet& packet, Version version) {
  std::string encoded;
  encode(packet, version, encoded);
  FrameHeader header;
  DecodeError error;
  FUZZ_CHECK(peek_frame(encoded, UINT32_MAX, header, error) == DecodeStatus::kOk, error.message);
  FUZZ_CHECK(header.total_size() == encoded.size(), "re-encoded frame size");
  Packet again;
  const DecodeStatus status = decode(header, encoded, version, again, error);
  FUZZ_CHECK(status == DecodeStatus::kOk,
             std::string(version_name(version)) + " re-decode: " + error.message);
  FUZZ_CHECK(again == packet, std::string(version_name(version)) + " " +
                                  to_string(type_of(packet)) + " changed in a round trip");
  std::string encoded_again;
  encode(again, version, encoded_again);
  FUZZ_CHECK(encoded_again == encoded, "encoding is not stable");
  if (const Publish* publish = std::get_if<Publish>(&packet)) {
    check_publish_ref(*publish, version, encoded);
  }
}

void run_stream(std::string_view in, Version version) {
  while (!in.empty()) {
    FrameHeader header;
    DecodeError error;
    const DecodeStatus framed = peek_frame(in, UINT32_MAX, header, error);
    if (framed == DecodeStatus::kError) {
      FUZZ_CHECK(!error.message.empty(), "frame error without message");
      return;
    }
    if (framed == DecodeStatus::kNeedMore || header.total_size() > in.size()) return;

    const std::string_view frame = in.substr(0, header.total_size());
    Packet packet;
    const DecodeStatus status = decode(header, frame, version, packet, error);
    FUZZ_CHECK(status != DecodeStatus::kNeedMore, "complete frame reported as incomplete");
    if (status == DecodeStatus::kOk) {
      check_round_trip(packet, version);
      Packet unused;
      FUZZ_CHECK(decode(header, frame.substr(0, frame.size() - 1), version, unused, error) ==
                     DecodeStatus::kNeedMore,
                 "prefix of a frame");
    } else {
      FUZZ_CHECK(!error.message.empty(), "decode error without message");
      FUZZ_CHECK(error.connect_version.has_value() ? header.type() == PacketType::kConnect : true,
                 "connect_version outside CONNECT");
    }
    in.remove_prefix(header.total_size());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  for (Version version : {Version::kV31, Version::kV311, Version::kV5})
    run_stream(in, version);
  check_topic_functions(in);
  return 0;
}
