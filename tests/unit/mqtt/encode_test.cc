// Exact encodings, 3.1.1 mappings of 5.0 reason codes, compact 5.0 forms and
// the PublishRef fast path.
#include <string>

#include <gtest/gtest.h>

#include "counterlink/mqtt/codec.h"

#include "test_util.h"

namespace counterlink::mqtt {
namespace {

using test::As;
using test::Bytes;
using test::DecodeBytes;
using test::Encode;

TEST(Encode, WritesMinimalMqtt311Connect) {
  Connect connect;
  connect.version = Version::kV311;
  connect.keep_alive = 60;
  connect.client_id = "a";
  // The CONNECT carries its own version; the argument does not override it.
  EXPECT_EQ(Encode(connect, Version::kV5), Bytes("10 0D 00 04 'MQTT' 04 02 00 3C 00 01 'a'"));
}

TEST(Encode, WritesMqtt31ConnectWithMQIsdp) {
  Connect connect;
  connect.version = Version::kV31;
  connect.clean_start = false;
  connect.client_id = "a";
  EXPECT_EQ(Encode(connect, Version::kV31), Bytes("10 0F 00 06 'MQIsdp' 03 00 00 00 00 01 'a'"));
}

TEST(Encode, WritesConnectFlagsForWillUserNameAndPassword) {
  Connect connect;
  connect.client_id = "c1";
  connect.keep_alive = 60;
  connect.will = Will{"w/t", "bye", 1, true, {}};
  connect.username = "u";
  connect.password = "p";
  EXPECT_EQ(Encode(connect, Version::kV311),
            Bytes("10 1E 00 04 'MQTT' 04 EE 00 3C 00 02 'c1' 00 03 'w/t' 00 03 'bye' 00 01 'u' 00 "
                  "01 'p'"));
}

TEST(Encode, WritesMinimalMqtt5ConnectWithEmptyProperties) {
  Connect connect;
  connect.version = Version::kV5;
  connect.keep_alive = 60;
  connect.client_id = "a";
  EXPECT_EQ(Encode(connect, Version::kV5), Bytes("10 0E 00 04 'MQTT' 05 02 00 3C 00 00 01 'a'"));
}

TEST(Encode, WritesQos1PublishWithPacketId) {
  const Publish publish{"a/b", "hi", 1, false, false, 10, {}};
  EXPECT_EQ(Encode(publish, Version::kV311), Bytes("32 09 00 03 'a/b' 00 0A 'hi'"));
  EXPECT_EQ(Encode(publish, Version::kV5), Bytes("32 0A 00 03 'a/b' 00 0A 00 'hi'"));
}

TEST(Encode, WritesPublishFlags) {
  EXPECT_EQ(Encode(Publish{"a", "", 0, true, false, 0, {}}, Version::kV311),
            Bytes("31 03 00 01 'a'"));
  EXPECT_EQ(Encode(Publish{"a", "", 2, false, true, 1, {}}, Version::kV311),
            Bytes("3C 05 00 01 'a' 00 01"));
}

TEST(Encode, WritesMqtt311Suback) {
  Suback suback;
  suback.packet_id = 10;
  suback.reasons = {ReasonCode::kSuccess, ReasonCode::kGrantedQos1, ReasonCode::kGrantedQos2,
                    ReasonCode::kUnspecifiedError};
  EXPECT_EQ(Encode(suback, Version::kV311), Bytes("90 06 00 0A 00 01 02 80"));
}

TEST(Encode, MapsEveryMqtt5SubackFailureTo0x80For311) {
  Suback suback;
  suback.packet_id = 1;
  suback.reasons = {ReasonCode::kTopicFilterInvalid, ReasonCode::kNotAuthorized,
                    ReasonCode::kQuotaExceeded, ReasonCode::kSharedSubscriptionsNotSupported};
  EXPECT_EQ(Encode(suback, Version::kV311), Bytes("90 06 00 01 80 80 80 80"));
  EXPECT_EQ(Encode(suback, Version::kV5), Bytes("90 07 00 01 00 8F 87 97 9E"));
}

TEST(Encode, WritesMqtt5ConnackWithProperties) {
  Connack connack;
  connack.properties.assigned_client_identifier = "id";
  connack.properties.receive_maximum = 20;
  connack.properties.topic_alias_maximum = 10;
  connack.properties.maximum_qos = 1;
  EXPECT_EQ(Encode(connack, Version::kV5),
            Bytes("20 10 00 00 0D 12 00 02 'id' 21 00 14 22 00 0A 24 01"));
}

TEST(Encode, MapsConnackReasonsToMqtt311ReturnCodes) {
  const std::pair<ReasonCode, uint8_t> cases[] = {
      {ReasonCode::kSuccess, 0},
      {ReasonCode::kUnsupportedProtocolVersion, 1},
      {ReasonCode::kClientIdentifierNotValid, 2},
      {ReasonCode::kServerUnavailable, 3},
      {ReasonCode::kServerBusy, 3},
      {ReasonCode::kBanned, 3},
      {ReasonCode::kUnspecifiedError, 3},
      {ReasonCode::kBadUserNameOrPassword, 4},
      {ReasonCode::kNotAuthorized, 5},
  };
  for (const auto& [reason, code] : cases) {
    Connack connack;
    connack.reason = reason;
    connack.properties.reason_string = "dropped before 5.0";
    EXPECT_EQ(Encode(connack, Version::kV311),
              Bytes("20 02 00") + std::string(1, static_cast<char>(code)))
        << to_string(reason);
  }
}

TEST(Encode, WritesSessionPresent) {
  Connack connack;
  connack.session_present = true;
  EXPECT_EQ(Encode(connack, Version::kV311), Bytes("20 02 01 00"));
  EXPECT_EQ(Encode(connack, Version::kV5), Bytes("20 03 01 00 00"));
}

TEST(Encode, UsesCompactAckFormsIn5) {
  EXPECT_EQ(Encode(Ack{PacketType::kPuback, 1, ReasonCode::kSuccess, {}}, Version::kV5),
            Bytes("40 02 00 01"));
  EXPECT_EQ(
      Encode(Ack{PacketType::kPubrec, 1, ReasonCode::kNoMatchingSubscribers, {}}, Version::kV5),
      Bytes("50 03 00 01 10"));
  Ack with_reason_string{PacketType::kPubcomp, 1, ReasonCode::kSuccess, {}};
  with_reason_string.properties.reason_string = "x";
  EXPECT_EQ(Encode(with_reason_string, Version::kV5), Bytes("70 08 00 01 00 04 1F 00 01 'x'"));
}

TEST(Encode, WritesPubrelWithFlagsTwo) {
  EXPECT_EQ(Encode(Ack{PacketType::kPubrel, 0x1234, ReasonCode::kSuccess, {}}, Version::kV311),
            Bytes("62 02 12 34"));
}

TEST(Encode, DropsAckReasonAndPropertiesBefore5) {
  Ack ack{PacketType::kPuback, 1, ReasonCode::kQuotaExceeded, {}};
  ack.properties.reason_string = "dropped";
  ack.properties.user_properties = {{"k", "v"}};
  EXPECT_EQ(Encode(ack, Version::kV311), Bytes("40 02 00 01"));
}

TEST(Encode, WritesSubscribeOptions) {
  Subscribe subscribe;
  subscribe.packet_id = 1;
  subscribe.subscriptions = {{"a", {2, true, true, 2}}};
  EXPECT_EQ(Encode(subscribe, Version::kV5), Bytes("82 07 00 01 00 00 01 'a' 2E"));
  // 3.1.1 has only the QoS bits.
  EXPECT_EQ(Encode(subscribe, Version::kV311), Bytes("82 06 00 01 00 01 'a' 02"));
}

TEST(Encode, WritesUnsubscribe) {
  Unsubscribe unsubscribe;
  unsubscribe.packet_id = 2;
  unsubscribe.filters = {"a", "b/#"};
  EXPECT_EQ(Encode(unsubscribe, Version::kV311), Bytes("A2 0A 00 02 00 01 'a' 00 03 'b/#'"));
}

TEST(Encode, DropsUnsubackReasonsBefore5) {
  Unsuback unsuback;
  unsuback.packet_id = 5;
  unsuback.reasons = {ReasonCode::kSuccess, ReasonCode::kNoSubscriptionExisted};
  EXPECT_EQ(Encode(unsuback, Version::kV311), Bytes("B0 02 00 05"));
  EXPECT_EQ(Encode(unsuback, Version::kV5), Bytes("B0 05 00 05 00 00 11"));
}

TEST(Encode, WritesPings) {
  EXPECT_EQ(Encode(Pingreq{}, Version::kV311), Bytes("C0 00"));
  EXPECT_EQ(Encode(Pingresp{}, Version::kV5), Bytes("D0 00"));
}

TEST(Encode, WritesDisconnectAsTwoBytesBefore5) {
  Disconnect disconnect{ReasonCode::kServerShuttingDown, {}};
  disconnect.properties.reason_string = "bye";
  EXPECT_EQ(Encode(disconnect, Version::kV311), Bytes("E0 00"));
  EXPECT_EQ(Encode(disconnect, Version::kV31), Bytes("E0 00"));
}

TEST(Encode, UsesCompactDisconnectAndAuthFormsIn5) {
  EXPECT_EQ(Encode(Disconnect{}, Version::kV5), Bytes("E0 00"));
  EXPECT_EQ(Encode(Disconnect{ReasonCode::kDisconnectWithWill, {}}, Version::kV5),
            Bytes("E0 01 04"));
  Disconnect with_properties{ReasonCode::kSuccess, {}};
  with_properties.properties.session_expiry_interval = 0;
  EXPECT_EQ(Encode(with_properties, Version::kV5), Bytes("E0 07 00 05 11 00 00 00 00"));
  EXPECT_EQ(Encode(Auth{}, Version::kV5), Bytes("F0 00"));
  EXPECT_EQ(Encode(Auth{ReasonCode::kReAuthenticate, {}}, Version::kV5), Bytes("F0 01 19"));
}

TEST(Encode, SkipsPropertiesThePacketTypeMayNotCarry) {
  // Will properties copied into a PUBLISH must not leak the Will Delay.
  Publish publish{"t", "", 0, false, false, 0, {}};
  publish.properties.will_delay_interval = 30;
  publish.properties.content_type = "c";
  EXPECT_EQ(Encode(publish, Version::kV5), Bytes("30 08 00 01 't' 04 03 00 01 'c'"));
  // A property-only-not-allowed ack still takes the compact form.
  Ack ack{PacketType::kPuback, 1, ReasonCode::kSuccess, {}};
  ack.properties.topic_alias = 3;
  EXPECT_EQ(Encode(ack, Version::kV5), Bytes("40 02 00 01"));
}

TEST(Encode, WritesOnlyOneSubscriptionIdentifierInSubscribe) {
  Subscribe subscribe;
  subscribe.packet_id = 1;
  subscribe.subscriptions = {{"a", {}}};
  subscribe.properties.subscription_identifiers = {5, 6};
  EXPECT_EQ(Encode(subscribe, Version::kV5), Bytes("82 09 00 01 02 0B 05 00 01 'a' 00"));
}

TEST(Encode, AppendsToExistingOutput) {
  std::string out = "xyz";
  encode(Pingreq{}, Version::kV311, out);
  encode(Pingresp{}, Version::kV311, out);
  EXPECT_EQ(out, "xyz" + Bytes("C0 00 D0 00"));
}

TEST(Encode, WritesMultiByteRemainingLength) {
  const Publish publish{"t", std::string(200, 'x'), 0, false, false, 0, {}};
  const std::string bytes = Encode(publish, Version::kV311);
  ASSERT_EQ(bytes.size(), 3u + 3u + 200u);
  EXPECT_EQ(bytes.substr(0, 3), Bytes("30 CB 01"));  // 203 = 0x4B + 1 * 128
}

TEST(EncodePublishRef, MatchesEncodingOfTheEquivalentPublish) {
  Properties properties;
  properties.message_expiry_interval = 10;
  properties.user_properties = {{"a", "b"}};
  const Publish publish{"a/b", "payload", 2, true, false, 77, properties};
  const PublishRef ref{"a/b", "payload", 2, true, false, 77, &properties};
  for (Version version : {Version::kV311, Version::kV5}) {
    std::string out;
    encode(ref, version, out);
    EXPECT_EQ(out, Encode(publish, version));
    EXPECT_EQ(out.size(), encoded_size(ref, version));
  }
}

TEST(EncodePublishRef, TreatsNullPropertiesAsEmpty) {
  const PublishRef ref{"t", "p", 0, false, false, 0, nullptr};
  std::string out;
  encode(ref, Version::kV5, out);
  EXPECT_EQ(out, Bytes("30 05 00 01 't' 00 'p'"));
  EXPECT_EQ(encoded_size(ref, Version::kV5), out.size());
}

TEST(EncodePublishRef, ReportsPacketIdOffsetForPatching) {
  const PublishRef ref{"sensors/1", "21.5", 1, false, false, 0xFFFF, nullptr};
  for (Version version : {Version::kV311, Version::kV5}) {
    std::string out = "previous bytes";
    size_t offset = 0;
    encode(ref, version, out, &offset);
    ASSERT_LT(offset + 1, out.size());
    EXPECT_EQ(static_cast<uint8_t>(out[offset]), 0xFF);
    EXPECT_EQ(static_cast<uint8_t>(out[offset + 1]), 0xFF);

    // One encoding, patched per session.
    std::string copy = out.substr(14);
    const size_t relative = offset - 14;
    copy[relative] = 0x12;
    copy[relative + 1] = 0x34;
    const test::Decoded decoded = DecodeBytes(copy, version);
    const Publish& publish = As<Publish>(decoded);
    EXPECT_EQ(publish.packet_id, 0x1234);
    EXPECT_EQ(publish.topic, "sensors/1");
    EXPECT_EQ(publish.payload, "21.5");
  }
}

TEST(EncodePublishRef, LeavesPacketIdOffsetUntouchedForQos0) {
  const PublishRef ref{"t", "p", 0, false, false, 0, nullptr};
  std::string out;
  size_t offset = 12345;
  encode(ref, Version::kV311, out, &offset);
  EXPECT_EQ(offset, 12345u);
}

TEST(EncodePublishRef, IgnoresPropertiesBefore5) {
  Properties properties;
  properties.content_type = "x";
  const PublishRef ref{"t", "p", 0, false, false, 0, &properties};
  std::string out;
  encode(ref, Version::kV311, out);
  EXPECT_EQ(out, Bytes("30 04 00 01 't' 'p'"));
  EXPECT_EQ(encoded_size(ref, Version::kV311), out.size());
}

}  // namespace
}  // namespace counterlink::mqtt
