// MQTT 5.0 properties: identifiers per packet type, duplicates, value ranges.
#include <string>
#include <vector>

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

// A property block: the Property Length computed from `spec` (a Bytes()
// spec shorter than 128 bytes), then the properties.
std::string P(std::string_view spec) {
  const size_t length = test::Bytes(spec).size();
  EXPECT_LT(length, 128u);
  static constexpr char kHex[] = "0123456789ABCDEF";
  return std::string{kHex[length >> 4], kHex[length & 0xF], ' '} + std::string(spec);
}

// A 5.0 PUBLISH to topic "a" with the given property block (length included).
std::string PublishWith(std::string_view properties) {
  return Frame(0x30, "00 01 'a' " + std::string(properties));
}

// A 5.0 CONNECT with client id "a" and the given property block.
std::string ConnectWith(std::string_view properties) {
  return Frame(0x10, "00 04 'MQTT' 05 02 00 3C " + std::string(properties) + " 00 01 'a'");
}

// A 5.0 CONNACK (success) with the given property block.
std::string ConnackWith(std::string_view properties) {
  return Frame(0x20, "00 00 " + std::string(properties));
}

TEST(Properties, DecodesEveryPublishProperty) {
  const auto decoded =
      DecodeBytes(PublishWith(P("01 01 02 00 00 00 3C 03 00 01 't' 08 00 01 'r' 09 00 02 00 FF 0B "
                                "05 23 00 07 26 00 01 'k' 00 01 'v'")),
                  Version::kV5);
  const Properties& p = As<Publish>(decoded).properties;
  EXPECT_EQ(p.payload_format_indicator, 1);
  EXPECT_EQ(p.message_expiry_interval, 60u);
  EXPECT_EQ(p.content_type, "t");
  EXPECT_EQ(p.response_topic, "r");
  EXPECT_EQ(p.correlation_data, std::string("\0\xFF", 2));
  EXPECT_EQ(p.subscription_identifiers, std::vector<uint32_t>{5});
  EXPECT_EQ(p.topic_alias, 7);
  EXPECT_EQ(p.user_properties, (std::vector<UserProperty>{{"k", "v"}}));
}

TEST(Properties, DecodesEveryConnackProperty) {
  const auto decoded =
      DecodeBytes(ConnackWith(P("11 00 00 00 0A 12 00 01 'c' 13 00 1E 15 00 01 'm' 16 00 01 'd' 1A "
                                "00 01 'i' 1C 00 01 's' 1F 00 01 'x' 21 00 05 22 00 06 24 01 25 00 "
                                "26 00 00 00 00 27 00 00 10 00 28 01 29 00 2A 01")),
                  Version::kV5);
  const Properties& p = As<Connack>(decoded).properties;
  EXPECT_EQ(p.session_expiry_interval, 10u);
  EXPECT_EQ(p.assigned_client_identifier, "c");
  EXPECT_EQ(p.server_keep_alive, 30);
  EXPECT_EQ(p.authentication_method, "m");
  EXPECT_EQ(p.authentication_data, "d");
  EXPECT_EQ(p.response_information, "i");
  EXPECT_EQ(p.server_reference, "s");
  EXPECT_EQ(p.reason_string, "x");
  EXPECT_EQ(p.receive_maximum, 5);
  EXPECT_EQ(p.topic_alias_maximum, 6);
  EXPECT_EQ(p.maximum_qos, 1);
  EXPECT_EQ(p.retain_available, 0);
  EXPECT_EQ(p.user_properties, (std::vector<UserProperty>{{"", ""}}));
  EXPECT_EQ(p.maximum_packet_size, 4096u);
  EXPECT_EQ(p.wildcard_subscription_available, 1);
  EXPECT_EQ(p.subscription_identifier_available, 0);
  EXPECT_EQ(p.shared_subscription_available, 1);
}

TEST(Properties, DecodesEveryConnectProperty) {
  const auto decoded = DecodeBytes(
      ConnectWith(
          P("11 FF FF FF FF 15 00 01 'm' 16 00 00 17 00 19 01 21 FF FF 22 00 00 27 00 01 00 00")),
      Version::kV5);
  const Properties& p = As<Connect>(decoded).properties;
  EXPECT_EQ(p.session_expiry_interval, 0xFFFFFFFFu);
  EXPECT_EQ(p.authentication_method, "m");
  EXPECT_EQ(p.authentication_data, "");
  EXPECT_EQ(p.request_problem_information, 0);
  EXPECT_EQ(p.request_response_information, 1);
  EXPECT_EQ(p.receive_maximum, 65535);
  EXPECT_EQ(p.topic_alias_maximum, 0);  // 0 means "no aliases", which is valid
  EXPECT_EQ(p.maximum_packet_size, 65536u);
}

TEST(Properties, KeepsRepeatedUserPropertiesInOrder) {
  const auto decoded = DecodeBytes(
      PublishWith(P("26 00 01 'k' 00 01 'v' 26 00 01 'k' 00 01 'w' 26 00 01 'a' 00 00")),
      Version::kV5);
  EXPECT_EQ(As<Publish>(decoded).properties.user_properties,
            (std::vector<UserProperty>{{"k", "v"}, {"k", "w"}, {"a", ""}}));
}

TEST(Properties, AcceptsSeveralSubscriptionIdentifiersOnPublish) {
  const auto decoded = DecodeBytes(PublishWith(P("0B 01 0B FF FF FF 7F")), Version::kV5);
  EXPECT_EQ(As<Publish>(decoded).properties.subscription_identifiers,
            (std::vector<uint32_t>{1, 268'435'455}));
}

TEST(Properties, RejectsDuplicateSingleValuedPropertyAsProtocolError) {
  EXPECT_TRUE(RejectsWith(PublishWith(P("01 01 01 00")), Version::kV5, kProtocol,
                          "Payload Format Indicator (0x01) appears more than once"));
  EXPECT_TRUE(RejectsWith(PublishWith(P("23 00 01 23 00 02")), Version::kV5, kProtocol,
                          "Topic Alias (0x23) appears more than once"));
  EXPECT_TRUE(
      RejectsWith(ConnackWith(P("1F 00 00 1F 00 00")), Version::kV5, kProtocol, "Reason String"));
  EXPECT_TRUE(
      RejectsWith(ConnectWith(P("21 00 01 21 00 01")), Version::kV5, kProtocol, "Receive Maximum"));
}

TEST(Properties, RejectsSubscriptionIdentifierTwiceInSubscribeAsProtocolError) {
  EXPECT_TRUE(RejectsWith(Frame(0x82, "00 01 04 0B 01 0B 02 00 01 'a' 00"), Version::kV5, kProtocol,
                          "Subscription Identifier"));
}

TEST(Properties, RejectsOutOfRangeByteValuesAsProtocolError) {
  EXPECT_TRUE(
      RejectsWith(PublishWith(P("01 02")), Version::kV5, kProtocol, "Payload Format Indicator"));
  EXPECT_TRUE(
      RejectsWith(ConnectWith(P("17 02")), Version::kV5, kProtocol, "Request Problem Information"));
  EXPECT_TRUE(RejectsWith(ConnectWith(P("19 02")), Version::kV5, kProtocol,
                          "Request Response Information"));
  EXPECT_TRUE(RejectsWith(ConnackWith(P("24 02")), Version::kV5, kProtocol, "Maximum QoS"));
  EXPECT_TRUE(RejectsWith(ConnackWith(P("25 02")), Version::kV5, kProtocol, "Retain Available"));
  EXPECT_TRUE(
      RejectsWith(ConnackWith(P("28 FF")), Version::kV5, kProtocol, "Wildcard Subscription"));
  EXPECT_TRUE(RejectsWith(ConnackWith(P("29 02")), Version::kV5, kProtocol,
                          "Subscription Identifier Available"));
  EXPECT_TRUE(RejectsWith(ConnackWith(P("2A 02")), Version::kV5, kProtocol, "Shared Subscription"));
}

TEST(Properties, RejectsZeroWhereZeroIsNotAllowedAsProtocolError) {
  EXPECT_TRUE(RejectsWith(ConnectWith(P("21 00 00")), Version::kV5, kProtocol, "Receive Maximum"));
  EXPECT_TRUE(RejectsWith(ConnackWith(P("21 00 00")), Version::kV5, kProtocol, "Receive Maximum"));
  EXPECT_TRUE(
      RejectsWith(ConnectWith(P("27 00 00 00 00")), Version::kV5, kProtocol, "Maximum Packet"));
  EXPECT_TRUE(RejectsWith(PublishWith(P("23 00 00")), Version::kV5, kProtocol, "Topic Alias"));
  EXPECT_TRUE(
      RejectsWith(PublishWith(P("0B 00")), Version::kV5, kProtocol, "Subscription Identifier"));
  EXPECT_TRUE(RejectsWith(Frame(0x82, "00 01 02 0B 00 00 01 'a' 00"), Version::kV5, kProtocol,
                          "Subscription Identifier"));
}

TEST(Properties, RejectsBadSubscriptionIdentifierEncodingAsMalformed) {
  // Above 268,435,455 cannot be encoded in four bytes.
  EXPECT_TRUE(RejectsWith(PublishWith("06 0B 80 80 80 80 01"), Version::kV5, kMalformed,
                          "Subscription Identifier"));
  EXPECT_TRUE(
      RejectsWith(PublishWith("03 0B 81 00"), Version::kV5, kMalformed, "Subscription Identifier"));
  EXPECT_TRUE(
      RejectsWith(PublishWith("02 0B 80"), Version::kV5, kMalformed, "Subscription Identifier"));
}

TEST(Properties, RejectsPropertyNotAllowedOnThePacketTypeAsMalformed) {
  EXPECT_TRUE(RejectsWith(PublishWith(P("11 00 00 00 01")), Version::kV5, kMalformed,
                          "Session Expiry Interval (0x11) is not allowed"));
  EXPECT_TRUE(RejectsWith(ConnackWith(P("23 00 01")), Version::kV5, kMalformed, "Topic Alias"));
  EXPECT_TRUE(RejectsWith(Frame(0x82, "00 01 03 1F 00 00 00 01 'a' 00"), Version::kV5, kMalformed,
                          "Reason String"));
  EXPECT_TRUE(RejectsWith(Frame(0xA2, "00 01 02 0B 01 00 01 'a'"), Version::kV5, kMalformed,
                          "Subscription Identifier"));
  EXPECT_TRUE(
      RejectsWith(Frame(0xE0, "00 03 21 00 01"), Version::kV5, kMalformed, "Receive Maximum"));
  EXPECT_TRUE(
      RejectsWith(Frame(0xF0, "18 05 11 00 00 00 01"), Version::kV5, kMalformed, "Session Expiry"));
  EXPECT_TRUE(
      RejectsWith(Frame(0x90, "00 01 02 01 00 00"), Version::kV5, kMalformed, "Payload Format"));
  EXPECT_TRUE(
      RejectsWith(Frame(0xB0, "00 01 02 01 00 00"), Version::kV5, kMalformed, "Payload Format"));
}

TEST(Properties, RejectsUndefinedIdentifiersAsMalformed) {
  EXPECT_TRUE(RejectsWith(PublishWith("02 00 00"), Version::kV5, kMalformed, "0x00"));
  EXPECT_TRUE(RejectsWith(PublishWith("02 7F 00"), Version::kV5, kMalformed, "0x7F"));
  EXPECT_TRUE(RejectsWith(PublishWith("02 04 00"), Version::kV5, kMalformed, "not defined"));
  // A multi-byte identifier is a valid Variable Byte Integer but not a property.
  EXPECT_TRUE(RejectsWith(PublishWith("03 80 01 00"), Version::kV5, kMalformed, "0x80"));
  EXPECT_TRUE(RejectsWith(PublishWith("02 80 00"), Version::kV5, kMalformed, "identifier"));
}

TEST(Properties, RejectsPropertyLengthBeyondThePacketAsMalformed) {
  EXPECT_TRUE(RejectsWith(PublishWith("05 01 01"), Version::kV5, kMalformed, "exceeds"));
  EXPECT_TRUE(RejectsWith(Frame(0x40, "00 01 00 01"), Version::kV5, kMalformed, "exceeds"));
}

TEST(Properties, RejectsValueCutByThePropertyLengthAsMalformed) {
  // The block is two bytes; the Message Expiry Interval needs four.
  EXPECT_TRUE(RejectsWith(PublishWith("02 02 00 00 00 00"), Version::kV5, kMalformed,
                          "Message Expiry Interval (0x02) is truncated"));
  EXPECT_TRUE(RejectsWith(PublishWith("03 26 00 01"), Version::kV5, kMalformed, "User Property"));
}

TEST(Properties, RejectsNonMinimalPropertyLengthAsMalformed) {
  EXPECT_TRUE(RejectsWith(PublishWith("80 00"), Version::kV5, kMalformed, "Property Length"));
}

TEST(Properties, RejectsInvalidUtf8InStringPropertiesAsMalformed) {
  EXPECT_TRUE(RejectsWith(PublishWith(P("03 00 02 C0 80")), Version::kV5, kMalformed,
                          "Content Type (0x03) is not valid UTF-8"));
  EXPECT_TRUE(RejectsWith(PublishWith(P("26 00 01 'k' 00 01 FF")), Version::kV5, kMalformed,
                          "User Property"));
  EXPECT_TRUE(RejectsWith(Frame(0x40, "00 01 80 04 1F 00 01 00"), Version::kV5, kMalformed,
                          "Reason String"));
  EXPECT_TRUE(RejectsWith(ConnackWith(P("12 00 03 ED A0 80")), Version::kV5, kMalformed,
                          "Assigned Client Identifier"));
}

TEST(Properties, TreatsCorrelationAndAuthenticationDataAsBinary) {
  EXPECT_EQ(DecodeBytes(PublishWith(P("09 00 02 C0 80")), Version::kV5).status, DecodeStatus::kOk);
  EXPECT_EQ(DecodeBytes(ConnectWith(P("15 00 01 'm' 16 00 02 C0 80")), Version::kV5).status,
            DecodeStatus::kOk);
}

TEST(Properties, RejectsAuthenticationDataWithoutMethodAsProtocolError) {
  EXPECT_TRUE(RejectsWith(ConnectWith(P("16 00 01 'd'")), Version::kV5, kProtocol,
                          "Authentication Method"));
  EXPECT_TRUE(RejectsWith(Frame(0xF0, "18 04 16 00 01 'd'"), Version::kV5, kProtocol,
                          "Authentication Method"));
}

TEST(Properties, RejectsResponseTopicThatIsNotATopicNameAsProtocolError) {
  EXPECT_TRUE(
      RejectsWith(PublishWith(P("08 00 03 'r/+'")), Version::kV5, kProtocol, "Response Topic"));
  EXPECT_TRUE(RejectsWith(PublishWith(P("08 00 00")), Version::kV5, kProtocol, "Response Topic"));
}

TEST(Properties, AreNotReadBefore5) {
  // In 3.1.1 the byte after the topic is payload, not a Property Length.
  const auto decoded = DecodeBytes(PublishWith(P("01 02")), Version::kV311);
  EXPECT_EQ(As<Publish>(decoded).payload, "\x02\x01\x02");
  EXPECT_TRUE(As<Publish>(decoded).properties.empty());
}

}  // namespace
}  // namespace counterlink::mqtt
