// Strict decoding: every rule a single packet can break, with the reason code
// the server must answer with.
#include <string>

#include <gtest/gtest.h>

#include "counterlink/mqtt/codec.h"

#include "test_util.h"

namespace counterlink::mqtt {
namespace {

using test::As;
using test::DecodeBytes;
using test::Frame;
using test::RejectsWith;

constexpr ReasonCode kMalformed = ReasonCode::kMalformedPacket;
constexpr ReasonCode kProtocol = ReasonCode::kProtocolError;

// ---------------------------------------------------------------- fixed header

TEST(Decode, RejectsAuthBeforeMqtt5AsMalformed) {
  EXPECT_TRUE(RejectsWith(Frame(0xF0, ""), Version::kV311, kMalformed, "AUTH"));
  EXPECT_TRUE(RejectsWith(Frame(0xF0, ""), Version::kV31, kMalformed, "AUTH"));
  EXPECT_EQ(DecodeBytes(Frame(0xF0, ""), Version::kV5).status, DecodeStatus::kOk);
}

TEST(Decode, RejectsWrongFixedHeaderFlagsAsMalformed) {
  EXPECT_TRUE(RejectsWith(Frame(0x60, "00 01"), Version::kV311, kMalformed, "flags"));  // PUBREL
  EXPECT_TRUE(RejectsWith(Frame(0x63, "00 01"), Version::kV5, kMalformed, "flags"));
  EXPECT_TRUE(RejectsWith(Frame(0x80, "00 01 00 01 'a' 00"), Version::kV311, kMalformed,
                          "flags"));  // SUBSCRIBE
  EXPECT_TRUE(RejectsWith(Frame(0xA0, "00 01 00 01 'a'"), Version::kV311, kMalformed,
                          "flags"));  // UNSUBSCRIBE
  EXPECT_TRUE(RejectsWith(Frame(0x41, "00 01"), Version::kV311, kMalformed, "flags"));
  EXPECT_TRUE(RejectsWith(Frame(0x42, "00 01"), Version::kV5, kMalformed, "flags"));
  EXPECT_TRUE(RejectsWith(Frame(0xC1, ""), Version::kV311, kMalformed, "flags"));
  EXPECT_TRUE(RejectsWith(Frame(0xD8, ""), Version::kV311, kMalformed, "flags"));
  EXPECT_TRUE(RejectsWith(Frame(0xE2, ""), Version::kV5, kMalformed, "flags"));
  EXPECT_TRUE(RejectsWith(Frame(0x21, "00 00"), Version::kV311, kMalformed, "flags"));
  EXPECT_TRUE(RejectsWith(Frame(0xF1, ""), Version::kV5, kMalformed, "flags"));
  EXPECT_TRUE(RejectsWith(Frame(0x12, "00 04 'MQTT' 04 02 00 3C 00 01 'a'"), Version::kV311,
                          kMalformed, "flags"));
}

TEST(Decode, RejectsPublishWithQos3AsMalformed) {
  EXPECT_TRUE(RejectsWith(Frame(0x36, "00 01 'a' 00 01"), Version::kV311, kMalformed, "QoS"));
  EXPECT_TRUE(RejectsWith(Frame(0x36, "00 01 'a' 00 01 00"), Version::kV5, kMalformed, "QoS"));
}

TEST(Decode, RejectsPublishQos0WithDupAsMalformed) {
  EXPECT_TRUE(RejectsWith(Frame(0x38, "00 01 'a'"), Version::kV311, kMalformed, "DUP"));
  EXPECT_TRUE(RejectsWith(Frame(0x39, "00 01 'a' 00"), Version::kV5, kMalformed, "DUP"));
}

TEST(Decode, AcceptsPublishDupAndRetainOnQos1) {
  const auto decoded = DecodeBytes(Frame(0x3B, "00 01 'a' 00 07"), Version::kV311);
  const Publish& publish = As<Publish>(decoded);
  EXPECT_TRUE(publish.dup);
  EXPECT_TRUE(publish.retain);
  EXPECT_EQ(publish.qos, 1);
  EXPECT_EQ(publish.packet_id, 7);
}

TEST(Decode, RejectsTrailingBytesAsMalformed) {
  EXPECT_TRUE(RejectsWith(Frame(0xC0, "00"), Version::kV311, kMalformed, "after the end"));
  EXPECT_TRUE(RejectsWith(Frame(0xD0, "00"), Version::kV5, kMalformed, "after the end"));
  EXPECT_TRUE(RejectsWith(Frame(0x40, "00 01 00"), Version::kV311, kMalformed, "after the end"));
  EXPECT_TRUE(RejectsWith(Frame(0x20, "00 00 00"), Version::kV311, kMalformed, "after the end"));
  EXPECT_TRUE(RejectsWith(Frame(0xB0, "00 01 00"), Version::kV311, kMalformed, "after the end"));
  EXPECT_TRUE(RejectsWith(Frame(0x10, "00 04 'MQTT' 04 02 00 3C 00 01 'a' 00"), Version::kV311,
                          kMalformed, "after the end"));
  EXPECT_TRUE(
      RejectsWith(Frame(0x40, "00 01 00 00 00"), Version::kV5, kMalformed, "after the end"));
}

TEST(Decode, RejectsTruncatedContentAsMalformed) {
  EXPECT_TRUE(RejectsWith(Frame(0x40, "00"), Version::kV311, kMalformed, "truncated"));
  EXPECT_TRUE(RejectsWith(Frame(0x20, "00"), Version::kV311, kMalformed, "truncated"));
  EXPECT_TRUE(RejectsWith(Frame(0x30, "00 05"), Version::kV311, kMalformed, "truncated"));
  EXPECT_TRUE(RejectsWith(Frame(0x32, "00 01 'a' 00"), Version::kV311, kMalformed, "truncated"));
  EXPECT_TRUE(RejectsWith(Frame(0x30, "00 01 'a'"), Version::kV5, kMalformed, "Property Length"));
  EXPECT_TRUE(RejectsWith(Frame(0x10, "00 04 'MQTT' 04 02 00 3C 00 01"), Version::kV311, kMalformed,
                          "Client Identifier is truncated"));
  EXPECT_TRUE(RejectsWith(Frame(0x82, "00 01 00 01"), Version::kV311, kMalformed, "truncated"));
  EXPECT_TRUE(RejectsWith(Frame(0x82, "00 01 00 01 'a'"), Version::kV311, kMalformed, "Options"));
}

// Packets whose every field is mandatory given the earlier ones: cutting the
// body anywhere, with a consistent Remaining Length, must be an error.
TEST(Decode, RejectsEveryTruncationOfAPacketWithoutOptionalTail) {
  struct Case {
    uint8_t first_byte;
    const char* body;
    Version version;
  };
  const Case cases[] = {
      {0x10, "00 04 'MQTT' 04 EE 00 3C 00 02 'c1' 00 03 'w/t' 00 03 'bye' 00 01 'u' 00 01 'p'",
       Version::kV311},
      {0x10, "00 06 'MQIsdp' 03 C2 00 3C 00 01 'a' 00 01 'u' 00 01 'p'", Version::kV31},
      {0x10, "00 04 'MQTT' 05 06 00 3C 05 11 00 00 00 0A 00 01 'a' 02 01 01 00 01 't' 00 01 'p'",
       Version::kV5},
      {0x20, "01 00", Version::kV311},
      {0x20, "00 00 05 21 00 0A 24 01", Version::kV5},
      {0x82, "00 01 00 03 'a/b' 01", Version::kV311},
      {0x82, "00 01 02 0B 05 00 03 'a/b' 01", Version::kV5},
      {0x90, "00 01 02", Version::kV311},
      {0xA2, "00 01 00 03 'a/b'", Version::kV311},
      {0xB0, "00 01", Version::kV311},
      {0x40, "00 01", Version::kV311},
  };
  for (const Case& c : cases) {
    const std::string body = test::Bytes(c.body);
    ASSERT_EQ(DecodeBytes(Frame(c.first_byte, c.body), c.version).status, DecodeStatus::kOk)
        << c.body;
    for (size_t length = 0; length < body.size(); ++length) {
      std::string frame(1, static_cast<char>(c.first_byte));
      frame.push_back(static_cast<char>(length));
      frame.append(body, 0, length);
      EXPECT_EQ(DecodeBytes(frame, c.version).status, DecodeStatus::kError)
          << c.body << " cut at " << length;
    }
  }
}

// -------------------------------------------------------------------- CONNECT

TEST(DecodeConnect, AcceptsMinimalMqtt311Connect) {
  const auto decoded = DecodeBytes(Frame(0x10, "00 04 'MQTT' 04 02 00 3C 00 01 'a'"),
                                   Version::kV5);  // the negotiated version is ignored
  const Connect& connect = As<Connect>(decoded);
  EXPECT_EQ(connect.version, Version::kV311);
  EXPECT_TRUE(connect.clean_start);
  EXPECT_EQ(connect.keep_alive, 60);
  EXPECT_EQ(connect.client_id, "a");
  EXPECT_FALSE(connect.will.has_value());
  EXPECT_FALSE(connect.username.has_value());
  EXPECT_FALSE(connect.password.has_value());
}

TEST(DecodeConnect, AcceptsMqtt31Connect) {
  const auto decoded =
      DecodeBytes(Frame(0x10, "00 06 'MQIsdp' 03 00 00 0A 00 01 'z'"), Version::kV311);
  const Connect& connect = As<Connect>(decoded);
  EXPECT_EQ(connect.version, Version::kV31);
  EXPECT_FALSE(connect.clean_start);
  EXPECT_EQ(connect.keep_alive, 10);
}

TEST(DecodeConnect, AcceptsEmptyClientIdentifier) {
  // Whether to assign an identifier or refuse is the server's policy.
  const auto decoded = DecodeBytes(Frame(0x10, "00 04 'MQTT' 04 02 00 3C 00 00"), Version::kV311);
  EXPECT_EQ(As<Connect>(decoded).client_id, "");
}

TEST(DecodeConnect, DecodesWillUserNameAndBinaryPassword) {
  // Flags EE: user name, password, will retain, will QoS 1, will, clean.
  const auto decoded = DecodeBytes(
      Frame(0x10,
            "00 04 'MQTT' 04 EE 00 3C 00 02 'c1' 00 03 'w/t' 00 03 'bye' 00 01 'u' 00 03 "
            "70 00 FF"),
      Version::kV311);
  const Connect& connect = As<Connect>(decoded);
  ASSERT_TRUE(connect.will.has_value());
  EXPECT_EQ(connect.will->topic, "w/t");
  EXPECT_EQ(connect.will->payload, "bye");
  EXPECT_EQ(connect.will->qos, 1);
  EXPECT_TRUE(connect.will->retain);
  EXPECT_EQ(connect.username, "u");
  EXPECT_EQ(connect.password, std::string("p\0\xFF", 3));
}

TEST(DecodeConnect, RejectsUnknownProtocolNameAsMalformedWithoutVersion) {
  const auto decoded =
      DecodeBytes(Frame(0x10, "00 04 'MQTX' 04 02 00 3C 00 01 'a'"), Version::kV311);
  ASSERT_EQ(decoded.status, DecodeStatus::kError);
  EXPECT_EQ(decoded.error.reason, kMalformed);
  EXPECT_FALSE(decoded.error.connect_version.has_value());
  EXPECT_NE(decoded.error.message.find("Protocol Name"), std::string::npos);
}

TEST(DecodeConnect, RejectsUnknownLevelAsUnsupportedVersionWithoutVersion) {
  const auto decoded =
      DecodeBytes(Frame(0x10, "00 04 'MQTT' 06 02 00 3C 00 01 'a'"), Version::kV311);
  ASSERT_EQ(decoded.status, DecodeStatus::kError);
  EXPECT_EQ(decoded.error.reason, ReasonCode::kUnsupportedProtocolVersion);
  EXPECT_FALSE(decoded.error.connect_version.has_value());
}

TEST(DecodeConnect, RejectsLevelNotMatchingTheNameAsUnsupportedVersionWithThatVersion) {
  auto decoded = DecodeBytes(Frame(0x10, "00 04 'MQTT' 03 02 00 3C 00 01 'a'"), Version::kV311);
  ASSERT_EQ(decoded.status, DecodeStatus::kError);
  EXPECT_EQ(decoded.error.reason, ReasonCode::kUnsupportedProtocolVersion);
  EXPECT_EQ(decoded.error.connect_version, Version::kV31);

  decoded = DecodeBytes(Frame(0x10, "00 06 'MQIsdp' 04 02 00 3C 00 01 'a'"), Version::kV311);
  ASSERT_EQ(decoded.status, DecodeStatus::kError);
  EXPECT_EQ(decoded.error.reason, ReasonCode::kUnsupportedProtocolVersion);
  EXPECT_EQ(decoded.error.connect_version, Version::kV311);
}

TEST(DecodeConnect, ReportsTheVersionOnLaterErrors) {
  const auto decoded =
      DecodeBytes(Frame(0x10, "00 04 'MQTT' 05 03 00 3C 00 00 01 'a'"), Version::kV311);
  ASSERT_EQ(decoded.status, DecodeStatus::kError);
  EXPECT_EQ(decoded.error.reason, kMalformed);
  EXPECT_EQ(decoded.error.connect_version, Version::kV5);
}

TEST(DecodeConnect, RejectsReservedFlagAsMalformed) {
  EXPECT_TRUE(RejectsWith(Frame(0x10, "00 04 'MQTT' 04 03 00 3C 00 01 'a'"), Version::kV311,
                          kMalformed, "reserved"));
}

TEST(DecodeConnect, RejectsWillQosOrRetainWithoutWillFlagAsMalformed) {
  EXPECT_TRUE(RejectsWith(Frame(0x10, "00 04 'MQTT' 04 0A 00 3C 00 01 'a'"), Version::kV311,
                          kMalformed, "Will Flag"));
  EXPECT_TRUE(RejectsWith(Frame(0x10, "00 04 'MQTT' 04 22 00 3C 00 01 'a'"), Version::kV311,
                          kMalformed, "Will Flag"));
  EXPECT_TRUE(RejectsWith(Frame(0x10, "00 04 'MQTT' 05 12 00 3C 00 00 01 'a'"), Version::kV5,
                          kMalformed, "Will Flag"));
}

TEST(DecodeConnect, RejectsWillQos3AsMalformed) {
  EXPECT_TRUE(RejectsWith(Frame(0x10, "00 04 'MQTT' 04 1E 00 3C 00 01 'a' 00 01 't' 00 01 'p'"),
                          Version::kV311, kMalformed, "Will QoS"));
}

TEST(DecodeConnect, RejectsPasswordWithoutUserNameBefore5AsMalformed) {
  EXPECT_TRUE(RejectsWith(Frame(0x10, "00 04 'MQTT' 04 42 00 3C 00 01 'a' 00 01 'p'"),
                          Version::kV311, kMalformed, "Password"));
  EXPECT_TRUE(RejectsWith(Frame(0x10, "00 06 'MQIsdp' 03 42 00 3C 00 01 'a' 00 01 'p'"),
                          Version::kV31, kMalformed, "Password"));
}

TEST(DecodeConnect, AcceptsPasswordWithoutUserNameIn5) {
  const auto decoded =
      DecodeBytes(Frame(0x10, "00 04 'MQTT' 05 42 00 3C 00 00 01 'a' 00 01 'p'"), Version::kV5);
  const Connect& connect = As<Connect>(decoded);
  EXPECT_FALSE(connect.username.has_value());
  EXPECT_EQ(connect.password, "p");
}

TEST(DecodeConnect, RejectsInvalidUtf8InStringsAsMalformed) {
  EXPECT_TRUE(RejectsWith(Frame(0x10, "00 04 'MQTT' 04 02 00 3C 00 02 C0 80"), Version::kV311,
                          kMalformed, "Client Identifier is not valid UTF-8"));
  EXPECT_TRUE(RejectsWith(Frame(0x10, "00 04 'MQTT' 04 82 00 3C 00 01 'a' 00 03 ED A0 80"),
                          Version::kV311, kMalformed, "User Name is not valid UTF-8"));
  EXPECT_TRUE(RejectsWith(Frame(0x10, "00 04 'MQTT' 04 06 00 3C 00 01 'a' 00 02 'a' 00 00 00"),
                          Version::kV311, kMalformed, "Will Topic is not valid UTF-8"));
}

TEST(DecodeConnect, TreatsPasswordAndWillPayloadAsBinary) {
  const auto decoded = DecodeBytes(
      Frame(0x10,
            "00 04 'MQTT' 04 C6 00 3C 00 01 'a' 00 01 't' 00 02 C0 80 00 01 'u' 00 02 C0 "
            "80"),
      Version::kV311);
  EXPECT_EQ(decoded.status, DecodeStatus::kOk) << decoded.error.message;
}

TEST(DecodeConnect, RejectsWildcardWillTopicAsTopicNameInvalid) {
  EXPECT_TRUE(RejectsWith(Frame(0x10, "00 04 'MQTT' 04 06 00 3C 00 01 'a' 00 03 'a/#' 00 00"),
                          Version::kV311, ReasonCode::kTopicNameInvalid, "Will Topic"));
}

TEST(DecodeConnect, RejectsEmptyWillTopic) {
  EXPECT_TRUE(RejectsWith(Frame(0x10, "00 04 'MQTT' 04 06 00 3C 00 01 'a' 00 00 00 00"),
                          Version::kV311, kMalformed, "Will Topic is empty"));
  EXPECT_TRUE(RejectsWith(Frame(0x10, "00 04 'MQTT' 05 06 00 3C 00 00 01 'a' 00 00 00 00 00"),
                          Version::kV5, kProtocol, "Will Topic is empty"));
}

TEST(DecodeConnect, DecodesMqtt5PropertiesAndWillProperties) {
  // Properties: session expiry 60, receive maximum 10. Will properties: will
  // delay 5, content type "t".
  const auto decoded = DecodeBytes(
      Frame(0x10,
            "00 04 'MQTT' 05 06 00 3C 08 11 00 00 00 3C 21 00 0A 00 01 'a' 09 18 00 00 00 "
            "05 03 00 01 't' 00 01 'w' 00 00"),
      Version::kV5);
  const Connect& connect = As<Connect>(decoded);
  EXPECT_EQ(connect.version, Version::kV5);
  EXPECT_EQ(connect.properties.session_expiry_interval, 60u);
  EXPECT_EQ(connect.properties.receive_maximum, 10);
  ASSERT_TRUE(connect.will.has_value());
  EXPECT_EQ(connect.will->properties.will_delay_interval, 5u);
  EXPECT_EQ(connect.will->properties.content_type, "t");
  EXPECT_EQ(connect.will->topic, "w");
  EXPECT_EQ(connect.will->payload, "");
}

TEST(DecodeConnect, RejectsPropertyNotAllowedInWillPropertiesAsMalformed) {
  // Topic Alias (0x23) is a PUBLISH property, not a will property.
  EXPECT_TRUE(
      RejectsWith(Frame(0x10, "00 04 'MQTT' 05 06 00 3C 00 00 01 'a' 03 23 00 01 00 01 'w' 00 00"),
                  Version::kV5, kMalformed, "Topic Alias"));
  // Session Expiry is a CONNECT property, not a will property.
  EXPECT_TRUE(RejectsWith(
      Frame(0x10, "00 04 'MQTT' 05 06 00 3C 00 00 01 'a' 05 11 00 00 00 01 00 01 'w' 00 00"),
      Version::kV5, kMalformed, "will properties"));
}

TEST(DecodeConnect, RejectsPropertyNotAllowedInConnectAsMalformed) {
  EXPECT_TRUE(RejectsWith(Frame(0x10, "00 04 'MQTT' 05 02 00 3C 02 01 01 00 01 'a'"), Version::kV5,
                          kMalformed, "Payload Format Indicator"));
}

// -------------------------------------------------------------------- CONNACK

TEST(DecodeConnack, MapsMqtt311ReturnCodesToReasonCodes) {
  const std::pair<uint8_t, ReasonCode> cases[] = {
      {0, ReasonCode::kSuccess},
      {1, ReasonCode::kUnsupportedProtocolVersion},
      {2, ReasonCode::kClientIdentifierNotValid},
      {3, ReasonCode::kServerUnavailable},
      {4, ReasonCode::kBadUserNameOrPassword},
      {5, ReasonCode::kNotAuthorized},
  };
  for (const auto& [code, reason] : cases) {
    const std::string bytes = test::Bytes("20 02 00") + std::string(1, static_cast<char>(code));
    const auto decoded = DecodeBytes(bytes, Version::kV311);
    EXPECT_EQ(As<Connack>(decoded).reason, reason);
  }
}

TEST(DecodeConnack, RejectsReservedReturnCodeAsMalformed) {
  EXPECT_TRUE(RejectsWith(Frame(0x20, "00 06"), Version::kV311, kMalformed, "reserved"));
}

TEST(DecodeConnack, RejectsReservedAcknowledgeFlagsAsMalformed) {
  EXPECT_TRUE(RejectsWith(Frame(0x20, "02 00"), Version::kV311, kMalformed, "Flags"));
  EXPECT_TRUE(RejectsWith(Frame(0x20, "80 00 00"), Version::kV5, kMalformed, "Flags"));
}

TEST(DecodeConnack, RejectsSessionPresentOnRefusalAsProtocolError) {
  EXPECT_TRUE(RejectsWith(Frame(0x20, "01 05"), Version::kV311, kProtocol, "Session Present"));
  EXPECT_TRUE(RejectsWith(Frame(0x20, "01 87 00"), Version::kV5, kProtocol, "Session Present"));
}

TEST(DecodeConnack, RejectsReasonCodeNotValidForConnackAsMalformed) {
  EXPECT_TRUE(RejectsWith(Frame(0x20, "00 10 00"), Version::kV5, kMalformed, "0x10"));
  EXPECT_TRUE(RejectsWith(Frame(0x20, "00 8B 00"), Version::kV5, kMalformed, "0x8B"));
}

TEST(DecodeConnack, RequiresPropertyLengthIn5) {
  EXPECT_TRUE(RejectsWith(Frame(0x20, "00 00"), Version::kV5, kMalformed, "Property Length"));
}

// -------------------------------------------------------------------- PUBLISH

TEST(DecodePublish, DecodesQos1PublishWithPacketId) {
  const auto decoded = DecodeBytes(Frame(0x32, "00 03 'a/b' 00 0A 'hi'"), Version::kV311);
  const Publish& publish = As<Publish>(decoded);
  EXPECT_EQ(publish.topic, "a/b");
  EXPECT_EQ(publish.payload, "hi");
  EXPECT_EQ(publish.qos, 1);
  EXPECT_EQ(publish.packet_id, 10);
  EXPECT_FALSE(publish.retain);
  EXPECT_FALSE(publish.dup);
}

TEST(DecodePublish, AcceptsEmptyPayload) {
  const auto decoded = DecodeBytes(Frame(0x30, "00 01 'a'"), Version::kV311);
  EXPECT_EQ(As<Publish>(decoded).payload, "");
}

TEST(DecodePublish, RejectsWildcardInTopicNameAsTopicNameInvalid) {
  EXPECT_TRUE(RejectsWith(Frame(0x30, "00 03 'a/+'"), Version::kV311, ReasonCode::kTopicNameInvalid,
                          "wildcard"));
  EXPECT_TRUE(RejectsWith(Frame(0x30, "00 03 'a/#' 00"), Version::kV5,
                          ReasonCode::kTopicNameInvalid, "wildcard"));
  EXPECT_TRUE(RejectsWith(Frame(0x30, "00 01 '#'"), Version::kV311, ReasonCode::kTopicNameInvalid,
                          "wildcard"));
}

TEST(DecodePublish, RejectsInvalidUtf8TopicAsMalformed) {
  EXPECT_TRUE(RejectsWith(Frame(0x30, "00 02 C0 80"), Version::kV311, kMalformed, "UTF-8"));
  EXPECT_TRUE(RejectsWith(Frame(0x30, "00 03 'a' 00 'b'"), Version::kV311, kMalformed, "UTF-8"));
}

TEST(DecodePublish, RejectsEmptyTopicBefore5AsMalformed) {
  EXPECT_TRUE(RejectsWith(Frame(0x30, "00 00"), Version::kV311, kMalformed, "empty"));
}

TEST(DecodePublish, RejectsEmptyTopicWithoutAliasIn5AsProtocolError) {
  EXPECT_TRUE(RejectsWith(Frame(0x30, "00 00 00"), Version::kV5, kProtocol, "Topic Alias"));
}

TEST(DecodePublish, AcceptsEmptyTopicWithAliasIn5) {
  const auto decoded = DecodeBytes(Frame(0x30, "00 00 03 23 00 05"), Version::kV5);
  const Publish& publish = As<Publish>(decoded);
  EXPECT_EQ(publish.topic, "");
  EXPECT_EQ(publish.properties.topic_alias, 5);
}

TEST(DecodePublish, RejectsZeroPacketIdAsProtocolError) {
  EXPECT_TRUE(RejectsWith(Frame(0x32, "00 01 'a' 00 00"), Version::kV311, kProtocol, "Packet"));
  EXPECT_TRUE(RejectsWith(Frame(0x34, "00 01 'a' 00 00 00"), Version::kV5, kProtocol, "Packet"));
}

TEST(DecodePublish, LeavesPayloadFormatValidationToTheCaller) {
  const auto decoded = DecodeBytes(Frame(0x30, "00 01 'a' 02 01 01 FF"), Version::kV5);
  const Publish& publish = As<Publish>(decoded);
  EXPECT_EQ(publish.properties.payload_format_indicator, 1);
  EXPECT_EQ(publish.payload, "\xFF");
}

TEST(DecodePublish, ReusesAPublishAlreadyHeldByTheOutput) {
  Packet packet = Publish{"old/topic", "old payload", 1, true, true, 9, {}};
  std::get<Publish>(packet).properties.topic_alias = 3;
  const std::string bytes = Frame(0x30, "00 01 'a' 00 'x'");
  FrameHeader header;
  DecodeError error;
  ASSERT_EQ(peek_frame(bytes, test::kNoLimit, header, error), DecodeStatus::kOk);
  ASSERT_EQ(decode(header, bytes, Version::kV5, packet, error), DecodeStatus::kOk);
  EXPECT_EQ(packet, Packet(Publish{"a", "x", 0, false, false, 0, {}}));
}

// ----------------------------------------------------------------------- acks

TEST(DecodeAck, DecodesEachAckTypeBefore5) {
  for (const auto& [bytes, type] : {std::pair{Frame(0x40, "00 01"), PacketType::kPuback},
                                    std::pair{Frame(0x50, "00 01"), PacketType::kPubrec},
                                    std::pair{Frame(0x62, "00 01"), PacketType::kPubrel},
                                    std::pair{Frame(0x70, "00 01"), PacketType::kPubcomp}}) {
    const auto decoded = DecodeBytes(bytes, Version::kV311);
    const Ack& ack = As<Ack>(decoded);
    EXPECT_EQ(ack.type, type);
    EXPECT_EQ(ack.packet_id, 1);
    EXPECT_EQ(ack.reason, ReasonCode::kSuccess);
    EXPECT_EQ(type_of(decoded.packet), type);
  }
}

TEST(DecodeAck, RejectsZeroPacketIdAsProtocolError) {
  EXPECT_TRUE(RejectsWith(Frame(0x40, "00 00"), Version::kV311, kProtocol, "Packet Identifier"));
  EXPECT_TRUE(RejectsWith(Frame(0x62, "00 00"), Version::kV5, kProtocol, "Packet Identifier"));
}

TEST(DecodeAck, AcceptsTheThreeMqtt5Forms) {
  auto decoded = DecodeBytes(Frame(0x40, "00 01"), Version::kV5);
  EXPECT_EQ(As<Ack>(decoded).reason, ReasonCode::kSuccess);

  decoded = DecodeBytes(Frame(0x40, "00 01 10"), Version::kV5);
  EXPECT_EQ(As<Ack>(decoded).reason, ReasonCode::kNoMatchingSubscribers);

  decoded = DecodeBytes(Frame(0x50, "00 01 80 04 1F 00 01 'x'"), Version::kV5);
  const Ack& ack = As<Ack>(decoded);
  EXPECT_EQ(ack.reason, ReasonCode::kUnspecifiedError);
  EXPECT_EQ(ack.properties.reason_string, "x");

  decoded = DecodeBytes(Frame(0x40, "00 01 00 00"), Version::kV5);
  EXPECT_EQ(As<Ack>(decoded).reason, ReasonCode::kSuccess);
}

TEST(DecodeAck, RejectsReasonCodeNotValidForThePacketAsMalformed) {
  EXPECT_TRUE(RejectsWith(Frame(0x40, "00 01 05"), Version::kV5, kMalformed, "0x05"));
  EXPECT_TRUE(RejectsWith(Frame(0x40, "00 01 92"), Version::kV5, kMalformed, "0x92"));
  EXPECT_TRUE(RejectsWith(Frame(0x62, "00 01 10"), Version::kV5, kMalformed, "0x10"));
  EXPECT_TRUE(RejectsWith(Frame(0x70, "00 01 80"), Version::kV5, kMalformed, "0x80"));
  EXPECT_EQ(DecodeBytes(Frame(0x70, "00 01 92"), Version::kV5).status, DecodeStatus::kOk);
}

TEST(DecodeAck, RejectsAnyLengthOtherThanTwoBefore5AsMalformed) {
  EXPECT_TRUE(RejectsWith(Frame(0x40, "00 01 10"), Version::kV311, kMalformed, "after the end"));
}

TEST(DecodeAck, RejectsPropertyNotAllowedOnAcksAsMalformed) {
  EXPECT_TRUE(
      RejectsWith(Frame(0x40, "00 01 00 03 23 00 01"), Version::kV5, kMalformed, "Topic Alias"));
}

// ------------------------------------------------------------------ SUBSCRIBE

TEST(DecodeSubscribe, DecodesFiltersAndOptionsBefore5) {
  const auto decoded =
      DecodeBytes(Frame(0x82, "00 01 00 03 'a/#' 01 00 03 'b/+' 02"), Version::kV311);
  const Subscribe& subscribe = As<Subscribe>(decoded);
  EXPECT_EQ(subscribe.packet_id, 1);
  ASSERT_EQ(subscribe.subscriptions.size(), 2u);
  EXPECT_EQ(subscribe.subscriptions[0].filter, "a/#");
  EXPECT_EQ(subscribe.subscriptions[0].options.max_qos, 1);
  EXPECT_EQ(subscribe.subscriptions[1].filter, "b/+");
  EXPECT_EQ(subscribe.subscriptions[1].options.max_qos, 2);
}

TEST(DecodeSubscribe, DecodesMqtt5SubscriptionOptions) {
  const auto decoded = DecodeBytes(Frame(0x82, "00 01 02 0B 07 00 01 'a' 2E"), Version::kV5);
  const Subscribe& subscribe = As<Subscribe>(decoded);
  ASSERT_EQ(subscribe.subscriptions.size(), 1u);
  const SubscribeOptions& options = subscribe.subscriptions[0].options;
  EXPECT_EQ(options.max_qos, 2);
  EXPECT_TRUE(options.no_local);
  EXPECT_TRUE(options.retain_as_published);
  EXPECT_EQ(options.retain_handling, 2);
  EXPECT_EQ(subscribe.properties.subscription_identifiers, std::vector<uint32_t>{7});
}

TEST(DecodeSubscribe, RejectsZeroPacketIdAsProtocolError) {
  EXPECT_TRUE(RejectsWith(Frame(0x82, "00 00 00 01 'a' 00"), Version::kV311, kProtocol,
                          "Packet Identifier"));
}

TEST(DecodeSubscribe, RejectsSubscribeWithoutFiltersAsProtocolError) {
  EXPECT_TRUE(RejectsWith(Frame(0x82, "00 01"), Version::kV311, kProtocol, "no Topic Filter"));
  EXPECT_TRUE(RejectsWith(Frame(0x82, "00 01 00"), Version::kV5, kProtocol, "no Topic Filter"));
}

TEST(DecodeSubscribe, RejectsReservedOptionBitsAsMalformed) {
  EXPECT_TRUE(
      RejectsWith(Frame(0x82, "00 01 00 00 01 'a' 40"), Version::kV5, kMalformed, "reserved"));
  EXPECT_TRUE(
      RejectsWith(Frame(0x82, "00 01 00 00 01 'a' 80"), Version::kV5, kMalformed, "reserved"));
  // Before 5.0 only the QoS bits exist.
  EXPECT_TRUE(
      RejectsWith(Frame(0x82, "00 01 00 01 'a' 04"), Version::kV311, kMalformed, "reserved"));
  EXPECT_TRUE(
      RejectsWith(Frame(0x82, "00 01 00 01 'a' 20"), Version::kV31, kMalformed, "reserved"));
}

TEST(DecodeSubscribe, RejectsQos3AsMalformed) {
  EXPECT_TRUE(RejectsWith(Frame(0x82, "00 01 00 01 'a' 03"), Version::kV311, kMalformed, "QoS"));
  EXPECT_TRUE(RejectsWith(Frame(0x82, "00 01 00 00 01 'a' 03"), Version::kV5, kMalformed, "QoS"));
}

TEST(DecodeSubscribe, RejectsRetainHandling3AsProtocolError) {
  EXPECT_TRUE(RejectsWith(Frame(0x82, "00 01 00 00 01 'a' 30"), Version::kV5, kProtocol,
                          "Retain Handling"));
}

TEST(DecodeSubscribe, RejectsInvalidUtf8FilterAsMalformed) {
  EXPECT_TRUE(
      RejectsWith(Frame(0x82, "00 01 00 02 C0 80 00"), Version::kV311, kMalformed, "UTF-8"));
}

TEST(DecodeSubscribe, AcceptsFilterWithInvalidSyntaxSoTheServerCanRefuseItAlone) {
  const auto decoded =
      DecodeBytes(Frame(0x82, "00 01 00 05 'a/#/b' 00 00 01 'c' 00"), Version::kV311);
  const Subscribe& subscribe = As<Subscribe>(decoded);
  ASSERT_EQ(subscribe.subscriptions.size(), 2u);
  EXPECT_EQ(subscribe.subscriptions[0].filter, "a/#/b");
  EXPECT_EQ(DecodeBytes(Frame(0x82, "00 01 00 00 00"), Version::kV311).status, DecodeStatus::kOk);
}

TEST(DecodeSubscribe, RejectsNoLocalOnSharedSubscriptionAsProtocolError) {
  EXPECT_TRUE(RejectsWith(Frame(0x82, "00 01 00 00 0A '$share/g/a' 04"), Version::kV5, kProtocol,
                          "No Local"));
  // The same option on an ordinary filter is fine.
  EXPECT_EQ(DecodeBytes(Frame(0x82, "00 01 00 00 01 'a' 04"), Version::kV5).status,
            DecodeStatus::kOk);
}

// ---------------------------------------------------------------- UNSUBSCRIBE

TEST(DecodeUnsubscribe, DecodesFilters) {
  const auto decoded = DecodeBytes(Frame(0xA2, "00 02 00 01 'a' 00 03 'b/#'"), Version::kV311);
  const Unsubscribe& unsubscribe = As<Unsubscribe>(decoded);
  EXPECT_EQ(unsubscribe.packet_id, 2);
  EXPECT_EQ(unsubscribe.filters, (std::vector<std::string>{"a", "b/#"}));
}

TEST(DecodeUnsubscribe, RejectsUnsubscribeWithoutFiltersAsProtocolError) {
  EXPECT_TRUE(RejectsWith(Frame(0xA2, "00 01"), Version::kV311, kProtocol, "no Topic Filter"));
  EXPECT_TRUE(RejectsWith(Frame(0xA2, "00 01 00"), Version::kV5, kProtocol, "no Topic Filter"));
}

TEST(DecodeUnsubscribe, RejectsInvalidUtf8FilterAsMalformed) {
  EXPECT_TRUE(
      RejectsWith(Frame(0xA2, "00 01 00 03 ED A0 80"), Version::kV311, kMalformed, "UTF-8"));
}

TEST(DecodeUnsubscribe, AcceptsFilterWithInvalidSyntax) {
  EXPECT_EQ(DecodeBytes(Frame(0xA2, "00 01 00 02 'a#'"), Version::kV311).status, DecodeStatus::kOk);
}

TEST(DecodeUnsubscribe, RejectsZeroPacketIdAsProtocolError) {
  EXPECT_TRUE(
      RejectsWith(Frame(0xA2, "00 00 00 01 'a'"), Version::kV311, kProtocol, "Packet Identifier"));
}

// --------------------------------------------------------- SUBACK / UNSUBACK

TEST(DecodeSuback, MapsMqtt311FailureToUnspecifiedError) {
  const auto decoded = DecodeBytes(Frame(0x90, "00 0A 00 01 02 80"), Version::kV311);
  const Suback& suback = As<Suback>(decoded);
  EXPECT_EQ(suback.packet_id, 10);
  EXPECT_EQ(suback.reasons,
            (std::vector<ReasonCode>{ReasonCode::kSuccess, ReasonCode::kGrantedQos1,
                                     ReasonCode::kGrantedQos2, ReasonCode::kUnspecifiedError}));
}

TEST(DecodeSuback, RejectsReservedReturnCodeBefore5AsMalformed) {
  EXPECT_TRUE(RejectsWith(Frame(0x90, "00 01 03"), Version::kV311, kMalformed, "0x03"));
  EXPECT_TRUE(RejectsWith(Frame(0x90, "00 01 8F"), Version::kV311, kMalformed, "0x8F"));
}

TEST(DecodeSuback, RejectsReasonCodeNotValidForSubackAsMalformed) {
  EXPECT_TRUE(RejectsWith(Frame(0x90, "00 01 00 11"), Version::kV5, kMalformed, "0x11"));
}

TEST(DecodeSuback, RejectsSubackWithoutReasonCodesAsProtocolError) {
  EXPECT_TRUE(RejectsWith(Frame(0x90, "00 01"), Version::kV311, kProtocol, "no Reason Code"));
  EXPECT_TRUE(RejectsWith(Frame(0x90, "00 01 00"), Version::kV5, kProtocol, "no Reason Code"));
}

TEST(DecodeUnsuback, DecodesMqtt5ReasonCodes) {
  const auto decoded = DecodeBytes(Frame(0xB0, "00 01 00 00 11"), Version::kV5);
  EXPECT_EQ(As<Unsuback>(decoded).reasons,
            (std::vector<ReasonCode>{ReasonCode::kSuccess, ReasonCode::kNoSubscriptionExisted}));
}

TEST(DecodeUnsuback, RejectsReasonCodeNotValidForUnsubackAsMalformed) {
  EXPECT_TRUE(RejectsWith(Frame(0xB0, "00 01 00 01"), Version::kV5, kMalformed, "0x01"));
}

TEST(DecodeUnsuback, RejectsPayloadBefore5AsMalformed) {
  EXPECT_TRUE(RejectsWith(Frame(0xB0, "00 01 00"), Version::kV311, kMalformed, "after the end"));
}

// ------------------------------------------- PINGREQ / PINGRESP / DISCONNECT

TEST(DecodePing, RequiresRemainingLengthZero) {
  EXPECT_EQ(DecodeBytes(Frame(0xC0, ""), Version::kV311).packet, Packet(Pingreq{}));
  EXPECT_EQ(DecodeBytes(Frame(0xD0, ""), Version::kV5).packet, Packet(Pingresp{}));
  EXPECT_TRUE(RejectsWith(Frame(0xC0, "00"), Version::kV5, kMalformed, "PINGREQ"));
  EXPECT_TRUE(RejectsWith(Frame(0xD0, "00"), Version::kV311, kMalformed, "PINGRESP"));
}

TEST(DecodeDisconnect, RequiresRemainingLengthZeroBefore5) {
  EXPECT_EQ(DecodeBytes(Frame(0xE0, ""), Version::kV311).packet, Packet(Disconnect{}));
  EXPECT_TRUE(RejectsWith(Frame(0xE0, "00"), Version::kV311, kMalformed, "DISCONNECT"));
}

TEST(DecodeDisconnect, AcceptsOptionalReasonAndPropertiesIn5) {
  EXPECT_EQ(DecodeBytes(Frame(0xE0, ""), Version::kV5).packet, Packet(Disconnect{}));
  auto decoded = DecodeBytes(Frame(0xE0, "04"), Version::kV5);
  EXPECT_EQ(As<Disconnect>(decoded).reason, ReasonCode::kDisconnectWithWill);
  decoded = DecodeBytes(Frame(0xE0, "8B 05 11 00 00 00 00"), Version::kV5);
  const Disconnect& disconnect = As<Disconnect>(decoded);
  EXPECT_EQ(disconnect.reason, ReasonCode::kServerShuttingDown);
  EXPECT_EQ(disconnect.properties.session_expiry_interval, 0u);
}

TEST(DecodeDisconnect, RejectsReasonCodeNotValidForDisconnectAsMalformed) {
  EXPECT_TRUE(RejectsWith(Frame(0xE0, "05"), Version::kV5, kMalformed, "0x05"));
  EXPECT_TRUE(RejectsWith(Frame(0xE0, "84"), Version::kV5, kMalformed, "0x84"));
}

// ----------------------------------------------------------------------- AUTH

TEST(DecodeAuth, AcceptsContinueAuthenticationWithMethodAndData) {
  const auto decoded = DecodeBytes(Frame(0xF0, "18 09 15 00 02 'ab' 16 00 01 00"), Version::kV5);
  const Auth& auth = As<Auth>(decoded);
  EXPECT_EQ(auth.reason, ReasonCode::kContinueAuthentication);
  EXPECT_EQ(auth.properties.authentication_method, "ab");
  EXPECT_EQ(auth.properties.authentication_data, std::string(1, '\0'));
}

TEST(DecodeAuth, RejectsContinuationWithoutAuthenticationMethodAsProtocolError) {
  EXPECT_TRUE(RejectsWith(Frame(0xF0, "18"), Version::kV5, kProtocol, "Authentication Method"));
  EXPECT_TRUE(RejectsWith(Frame(0xF0, "19 04 16 00 01 'd'"), Version::kV5, kProtocol,
                          "Authentication Method"));
  EXPECT_TRUE(RejectsWith(Frame(0xF0, "18 04 1F 00 01 'r'"), Version::kV5, kProtocol,
                          "Authentication Method"));
}

TEST(DecodeAuth, RejectsReasonCodeNotValidForAuthAsMalformed) {
  EXPECT_TRUE(RejectsWith(Frame(0xF0, "80"), Version::kV5, kMalformed, "0x80"));
}

}  // namespace
}  // namespace counterlink::mqtt
