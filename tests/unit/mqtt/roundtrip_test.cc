// encode() then decode() gives back the same packet, for every packet type in
// every version, and encoding is stable.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "counterlink/mqtt/codec.h"

#include "test_util.h"

namespace counterlink::mqtt {
namespace {

using test::DecodeBytes;
using test::Encode;

Properties FullPublishProperties() {
  Properties p;
  p.payload_format_indicator = 1;
  p.message_expiry_interval = 3600;
  p.content_type = "application/json";
  p.response_topic = "reply/to/me";
  p.correlation_data = std::string("\0\x01\xFF", 3);
  p.subscription_identifiers = {1, 300, 268'435'455};
  p.topic_alias = 12;
  p.user_properties = {{"k", "v"}, {"k", "v2"}, {"\xC3\xA9", ""}};
  return p;
}

Properties ReasonAndUser() {
  Properties p;
  p.reason_string = "because";
  p.user_properties = {{"trace", "42"}};
  return p;
}

std::vector<Packet> SamplePackets(Version version) {
  const bool v5 = version == Version::kV5;
  std::vector<Packet> packets;

  Connect connect;
  connect.version = version;
  connect.client_id = "client-1";
  connect.keep_alive = 30;
  packets.push_back(connect);

  connect.clean_start = false;
  connect.client_id = "";
  connect.username = "user";
  connect.password = std::string("\0secret\xFF", 8);
  connect.will = Will{"last/will", std::string("\0gone", 5), 2, true, {}};
  if (v5) {
    connect.properties.session_expiry_interval = 120;
    connect.properties.receive_maximum = 20;
    connect.properties.maximum_packet_size = 1 << 20;
    connect.properties.topic_alias_maximum = 0;
    connect.properties.request_problem_information = 0;
    connect.properties.request_response_information = 1;
    connect.properties.authentication_method = "SCRAM-SHA-256";
    connect.properties.authentication_data = std::string("\x01\x00", 2);
    connect.properties.user_properties = {{"a", "b"}};
    Properties& will = connect.will->properties;
    will.will_delay_interval = 10;
    will.payload_format_indicator = 0;
    will.message_expiry_interval = 5;
    will.content_type = "text/plain";
    will.response_topic = "r";
    will.correlation_data = "c";
    will.user_properties = {{"w", "x"}};
  }
  packets.push_back(connect);

  if (v5) {
    connect.username.reset();  // password alone is legal in 5.0 only
    packets.push_back(connect);
  }

  Connack connack;
  packets.push_back(connack);
  connack.session_present = true;
  packets.push_back(connack);
  connack.session_present = false;
  connack.reason = v5 ? ReasonCode::kBanned : ReasonCode::kNotAuthorized;
  packets.push_back(connack);
  if (v5) {
    Connack full;
    Properties& p = full.properties;
    p.session_expiry_interval = 0;
    p.assigned_client_identifier = "auto-1";
    p.server_keep_alive = 60;
    p.authentication_method = "m";
    p.authentication_data = "d";
    p.response_information = "ri";
    p.server_reference = "other:1883";
    p.reason_string = "welcome";
    p.receive_maximum = 100;
    p.topic_alias_maximum = 10;
    p.maximum_qos = 1;
    p.retain_available = 0;
    p.user_properties = {{"x", "y"}};
    p.maximum_packet_size = 65536;
    p.wildcard_subscription_available = 1;
    p.subscription_identifier_available = 0;
    p.shared_subscription_available = 1;
    packets.push_back(full);
  }

  packets.push_back(Publish{"a/b", "hello", 0, false, false, 0, {}});
  packets.push_back(Publish{"a/b", "", 1, true, true, 1, {}});
  packets.push_back(Publish{"$SYS/x", std::string(300, 'p'), 2, false, false, 65535, {}});
  if (v5) {
    packets.push_back(Publish{"t", "{}", 1, false, false, 9, FullPublishProperties()});
    Publish aliased{"", "x", 0, false, false, 0, {}};
    aliased.properties.topic_alias = 1;
    packets.push_back(aliased);
  }

  for (PacketType type :
       {PacketType::kPuback, PacketType::kPubrec, PacketType::kPubrel, PacketType::kPubcomp}) {
    packets.push_back(Ack{type, 7, ReasonCode::kSuccess, {}});
    if (v5) {
      const bool pub = type == PacketType::kPuback || type == PacketType::kPubrec;
      const ReasonCode failure =
          pub ? ReasonCode::kQuotaExceeded : ReasonCode::kPacketIdentifierNotFound;
      packets.push_back(Ack{type, 8, failure, {}});
      packets.push_back(Ack{type, 9, ReasonCode::kSuccess, ReasonAndUser()});
      packets.push_back(Ack{type, 10, failure, ReasonAndUser()});
    }
  }

  Subscribe subscribe;
  subscribe.packet_id = 3;
  subscribe.subscriptions = {{"a/+", {1}}, {"#", {2}}, {"bad/#/filter", {0}}};
  if (v5) {
    subscribe.subscriptions.push_back({"$share/g/t", {1, false, true, 2}});
    subscribe.subscriptions.push_back({"n", {0, true, false, 1}});
    subscribe.properties.subscription_identifiers = {77};
    subscribe.properties.user_properties = {{"s", "t"}};
  }
  packets.push_back(subscribe);

  Suback suback;
  suback.packet_id = 3;
  suback.reasons = {ReasonCode::kSuccess, ReasonCode::kGrantedQos1, ReasonCode::kGrantedQos2,
                    ReasonCode::kUnspecifiedError};
  if (v5) {
    suback.reasons.push_back(ReasonCode::kTopicFilterInvalid);
    suback.reasons.push_back(ReasonCode::kWildcardSubscriptionsNotSupported);
    suback.properties = ReasonAndUser();
  }
  packets.push_back(suback);

  Unsubscribe unsubscribe;
  unsubscribe.packet_id = 4;
  unsubscribe.filters = {"a/+", "#", ""};
  if (v5) unsubscribe.properties.user_properties = {{"u", "v"}};
  packets.push_back(unsubscribe);

  Unsuback unsuback;
  unsuback.packet_id = 4;
  if (v5) {
    unsuback.reasons = {ReasonCode::kSuccess, ReasonCode::kNoSubscriptionExisted,
                        ReasonCode::kNotAuthorized};
    unsuback.properties = ReasonAndUser();
  }
  packets.push_back(unsuback);

  packets.push_back(Pingreq{});
  packets.push_back(Pingresp{});
  packets.push_back(Disconnect{});

  if (v5) {
    packets.push_back(Disconnect{ReasonCode::kDisconnectWithWill, {}});
    Disconnect disconnect{ReasonCode::kServerMoved, {}};
    disconnect.properties.server_reference = "elsewhere";
    disconnect.properties.session_expiry_interval = 0;
    disconnect.properties.reason_string = "moving";
    packets.push_back(disconnect);
    packets.push_back(Auth{});
    Auth auth{ReasonCode::kContinueAuthentication, {}};
    auth.properties.authentication_method = "SCRAM-SHA-256";
    auth.properties.authentication_data = std::string("\0\0", 2);
    auth.properties.reason_string = "more";
    packets.push_back(auth);
    Auth reauthenticate{ReasonCode::kReAuthenticate, {}};
    reauthenticate.properties.authentication_method = "m";
    packets.push_back(reauthenticate);
  }
  return packets;
}

class RoundTrip : public ::testing::TestWithParam<Version> {};

TEST_P(RoundTrip, DecodesEveryEncodedPacketToAnEqualPacket) {
  const Version version = GetParam();
  for (const Packet& packet : SamplePackets(version)) {
    SCOPED_TRACE(to_string(type_of(packet)));
    const std::string bytes = Encode(packet, version);
    const test::Decoded decoded = DecodeBytes(bytes, version);
    ASSERT_EQ(decoded.status, DecodeStatus::kOk) << decoded.error.message;
    EXPECT_EQ(decoded.packet, packet);
    EXPECT_EQ(Encode(decoded.packet, version), bytes);
  }
}

TEST_P(RoundTrip, DecodesPacketsBackToBackFromOneBuffer) {
  const Version version = GetParam();
  const std::vector<Packet> packets = SamplePackets(version);
  std::string stream;
  for (const Packet& packet : packets)
    encode(packet, version, stream);

  std::string_view rest = stream;
  size_t index = 0;
  while (!rest.empty()) {
    FrameHeader header;
    DecodeError error;
    ASSERT_EQ(peek_frame(rest, test::kNoLimit, header, error), DecodeStatus::kOk);
    Packet packet;
    ASSERT_EQ(decode(header, rest.substr(0, header.total_size()), version, packet, error),
              DecodeStatus::kOk)
        << error.message;
    ASSERT_LT(index, packets.size());
    EXPECT_EQ(packet, packets[index++]);
    rest.remove_prefix(header.total_size());
  }
  EXPECT_EQ(index, packets.size());
}

TEST_P(RoundTrip, EncodedSizeOfPublishMatchesTheEncoding) {
  const Version version = GetParam();
  const Properties properties = FullPublishProperties();
  for (size_t payload : {0, 1, 100, 127, 128, 16'383, 16'384, 70'000}) {
    for (uint8_t qos : {0, 1, 2}) {
      for (const Properties* props : {static_cast<const Properties*>(nullptr), &properties}) {
        const std::string body(payload, 'x');
        const PublishRef ref{"some/topic", body, qos, false, false, 5, props};
        std::string out = "existing";
        encode(ref, version, out);
        EXPECT_EQ(out.size() - 8, encoded_size(ref, version))
            << "payload " << payload << " qos " << int{qos};
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllVersions, RoundTrip,
                         ::testing::Values(Version::kV31, Version::kV311, Version::kV5),
                         [](const ::testing::TestParamInfo<Version>& info) {
                           switch (info.param) {
                             case Version::kV31:
                               return std::string("Mqtt31");
                             case Version::kV311:
                               return std::string("Mqtt311");
                             case Version::kV5:
                               return std::string("Mqtt5");
                           }
                           return std::string("Unknown");
                         });

}  // namespace
}  // namespace counterlink::mqtt
