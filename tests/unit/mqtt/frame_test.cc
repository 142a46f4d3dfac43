// Fixed header framing: peek_frame(), write_varint() and partial input.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "counterlink/mqtt/codec.h"

#include "test_util.h"

namespace counterlink::mqtt {
namespace {

using test::Bytes;
using test::DecodeBytes;
using test::kNoLimit;

TEST(PeekFrame, NeedsMoreOnEmptyInput) {
  FrameHeader header;
  DecodeError error;
  EXPECT_EQ(peek_frame("", kNoLimit, header, error), DecodeStatus::kNeedMore);
}

TEST(PeekFrame, NeedsMoreInsideTheRemainingLength) {
  FrameHeader header;
  DecodeError error;
  for (const std::string& prefix :
       {Bytes("30"), Bytes("30 80"), Bytes("30 FF FF"), Bytes("30 FF FF FF")}) {
    EXPECT_EQ(peek_frame(prefix, kNoLimit, header, error), DecodeStatus::kNeedMore);
  }
}

TEST(PeekFrame, ReportsHeaderSizeAndRemainingLength) {
  struct Case {
    std::string bytes;
    uint32_t remaining;
    uint8_t header_size;
  };
  const Case cases[] = {
      {Bytes("C0 00"), 0, 2},
      {Bytes("30 7F"), 127, 2},
      {Bytes("30 80 01"), 128, 3},
      {Bytes("30 FF 7F"), 16'383, 3},
      {Bytes("30 80 80 01"), 16'384, 4},
      {Bytes("30 FF FF 7F"), 2'097'151, 4},
      {Bytes("30 80 80 80 01"), 2'097'152, 5},
      {Bytes("30 FF FF FF 7F"), 268'435'455, 5},
  };
  for (const Case& c : cases) {
    FrameHeader header;
    DecodeError error;
    ASSERT_EQ(peek_frame(c.bytes, kNoLimit, header, error), DecodeStatus::kOk);
    EXPECT_EQ(header.remaining_length, c.remaining);
    EXPECT_EQ(header.header_size, c.header_size);
    EXPECT_EQ(header.total_size(), c.header_size + size_t{c.remaining});
    EXPECT_EQ(header.first_byte, static_cast<uint8_t>(c.bytes[0]));
    EXPECT_EQ(header.type(), static_cast<PacketType>(static_cast<uint8_t>(c.bytes[0]) >> 4));
  }
}

TEST(PeekFrame, RejectsRemainingLengthLongerThanFourBytesAsMalformed) {
  FrameHeader header;
  DecodeError error;
  ASSERT_EQ(peek_frame(Bytes("30 FF FF FF FF 7F"), kNoLimit, header, error), DecodeStatus::kError);
  EXPECT_EQ(error.reason, ReasonCode::kMalformedPacket);
  EXPECT_NE(error.message.find("Remaining Length"), std::string::npos);
  // The fifth byte need not have arrived to know the length is too long.
  ASSERT_EQ(peek_frame(Bytes("30 80 80 80 80"), kNoLimit, header, error), DecodeStatus::kError);
  EXPECT_EQ(error.reason, ReasonCode::kMalformedPacket);
}

TEST(PeekFrame, RejectsNonMinimalRemainingLengthAsMalformed) {
  for (const std::string& bytes : {Bytes("C0 80 00"), Bytes("30 81 00"), Bytes("30 80 80 00"),
                                   Bytes("30 FF FF 80 00"), Bytes("30 80 80 80 00")}) {
    FrameHeader header;
    DecodeError error;
    ASSERT_EQ(peek_frame(bytes, kNoLimit, header, error), DecodeStatus::kError);
    EXPECT_EQ(error.reason, ReasonCode::kMalformedPacket);
    EXPECT_NE(error.message.find("minimally"), std::string::npos) << error.message;
  }
}

TEST(PeekFrame, RejectsPacketTypeZeroAsMalformed) {
  FrameHeader header;
  DecodeError error;
  ASSERT_EQ(peek_frame(Bytes("00"), kNoLimit, header, error), DecodeStatus::kError);
  EXPECT_EQ(error.reason, ReasonCode::kMalformedPacket);
  EXPECT_NE(error.message.find("type 0"), std::string::npos);
  ASSERT_EQ(peek_frame(Bytes("0F 00"), kNoLimit, header, error), DecodeStatus::kError);
}

TEST(PeekFrame, RejectsOversizePacketBeforeTheBodyArrives) {
  FrameHeader header;
  DecodeError error;
  // 2 bytes of header + 200 of body > 100, though only the header is here.
  ASSERT_EQ(peek_frame(Bytes("30 C8 01"), 100, header, error), DecodeStatus::kError);
  EXPECT_EQ(error.reason, ReasonCode::kPacketTooLarge);
  EXPECT_EQ(header.total_size(), 203u);
}

TEST(PeekFrame, AcceptsPacketOfExactlyTheMaximumSize) {
  FrameHeader header;
  DecodeError error;
  EXPECT_EQ(peek_frame(Bytes("30 0A"), 12, header, error), DecodeStatus::kOk);
  EXPECT_EQ(peek_frame(Bytes("30 0A"), 11, header, error), DecodeStatus::kError);
  EXPECT_EQ(error.reason, ReasonCode::kPacketTooLarge);
}

TEST(PeekFrame, AcceptsTheLargestRemainingLengthWithoutOverflow) {
  FrameHeader header;
  DecodeError error;
  ASSERT_EQ(peek_frame(Bytes("30 FF FF FF 7F"), kNoLimit, header, error), DecodeStatus::kOk);
  EXPECT_EQ(header.total_size(), 268'435'460u);
  EXPECT_EQ(peek_frame(Bytes("30 FF FF FF 7F"), 268'435'459, header, error), DecodeStatus::kError);
}

TEST(Decode, NeedsMoreWhenGivenLessThanTheFrame) {
  const std::string bytes = Bytes("32 09 00 03 'a/b' 00 0A 'hi'");
  FrameHeader header;
  DecodeError error;
  ASSERT_EQ(peek_frame(bytes, kNoLimit, header, error), DecodeStatus::kOk);
  Packet packet;
  EXPECT_EQ(decode(header, std::string_view(bytes).substr(0, 8), Version::kV311, packet, error),
            DecodeStatus::kNeedMore);
}

TEST(Decode, RejectsInputLongerThanTheFrame) {
  const std::string bytes = Bytes("C0 00 C0 00");
  FrameHeader header;
  DecodeError error;
  ASSERT_EQ(peek_frame(bytes, kNoLimit, header, error), DecodeStatus::kOk);
  Packet packet;
  EXPECT_EQ(decode(header, bytes, Version::kV311, packet, error), DecodeStatus::kError);
  EXPECT_EQ(error.reason, ReasonCode::kMalformedPacket);
}

// One valid packet of every type in both dialects; every proper prefix of
// each must be "need more", never an error or a value.
TEST(Decode, NeedsMoreForEveryPrefixOfAValidPacket) {
  struct Case {
    Version version;
    std::string bytes;
  };
  const Case cases[] = {
      {Version::kV311, Bytes("10 0D 00 04 'MQTT' 04 02 00 3C 00 01 'a'")},
      {Version::kV31, Bytes("10 0F 00 06 'MQIsdp' 03 02 00 3C 00 01 'a'")},
      {Version::kV5, Bytes("10 13 00 04 'MQTT' 05 02 00 3C 05 11 00 00 00 3C 00 01 'a'")},
      {Version::kV311, Bytes("20 02 01 00")},
      {Version::kV5, Bytes("20 06 00 00 03 21 00 0A")},
      {Version::kV311, Bytes("32 09 00 03 'a/b' 00 0A 'hi'")},
      {Version::kV5, Bytes("34 0C 00 03 'a/b' 00 0A 02 01 01 'hi'")},
      {Version::kV311, Bytes("40 02 00 01")},
      {Version::kV5, Bytes("50 03 00 01 10")},
      {Version::kV311, Bytes("62 02 00 01")},
      {Version::kV5, Bytes("70 08 00 01 92 04 1F 00 01 'x'")},
      {Version::kV311, Bytes("82 08 00 01 00 03 'a/#' 01")},
      {Version::kV5, Bytes("82 0B 00 01 02 0B 07 00 03 'a/+' 2E")},
      {Version::kV311, Bytes("90 05 00 01 00 01 80")},
      {Version::kV5, Bytes("90 05 00 01 00 02 8F")},
      {Version::kV311, Bytes("A2 07 00 01 00 03 'a/b'")},
      {Version::kV5, Bytes("A2 08 00 01 00 00 03 'a/b'")},
      {Version::kV311, Bytes("B0 02 00 01")},
      {Version::kV5, Bytes("B0 05 00 01 00 00 11")},
      {Version::kV311, Bytes("C0 00")},
      {Version::kV5, Bytes("D0 00")},
      {Version::kV311, Bytes("E0 00")},
      {Version::kV5, Bytes("E0 02 04 00")},
      {Version::kV5, Bytes("F0 07 18 05 15 00 02 'ab'")},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::PrintToString(c.bytes));
    const test::Decoded whole = DecodeBytes(c.bytes, c.version);
    ASSERT_EQ(whole.status, DecodeStatus::kOk) << whole.error.message;
    for (size_t length = 0; length < c.bytes.size(); ++length) {
      const test::Decoded partial =
          DecodeBytes(std::string_view(c.bytes).substr(0, length), c.version);
      EXPECT_EQ(partial.status, DecodeStatus::kNeedMore) << "prefix length " << length;
    }
  }
}

TEST(WriteVarint, WritesMinimalEncodingsAtEveryBoundary) {
  struct Case {
    uint32_t value;
    std::string bytes;
  };
  const Case cases[] = {
      {0, Bytes("00")},
      {127, Bytes("7F")},
      {128, Bytes("80 01")},
      {16'383, Bytes("FF 7F")},
      {16'384, Bytes("80 80 01")},
      {2'097'151, Bytes("FF FF 7F")},
      {2'097'152, Bytes("80 80 80 01")},
      {268'435'455, Bytes("FF FF FF 7F")},
  };
  for (const Case& c : cases) {
    std::string out = "prefix";
    EXPECT_EQ(write_varint(c.value, out), c.bytes.size());
    EXPECT_EQ(out, "prefix" + c.bytes) << c.value;
  }
}

}  // namespace
}  // namespace counterlink::mqtt
