#include "counterlink/mqtt/packet.h"

#include <string_view>

#include <gtest/gtest.h>

namespace counterlink::mqtt {
namespace {

TEST(PacketType, HasSpecificationNames) {
  EXPECT_STREQ(to_string(PacketType::kConnect), "CONNECT");
  EXPECT_STREQ(to_string(PacketType::kPubrel), "PUBREL");
  EXPECT_STREQ(to_string(PacketType::kUnsuback), "UNSUBACK");
  EXPECT_STREQ(to_string(PacketType::kAuth), "AUTH");
  EXPECT_STREQ(to_string(static_cast<PacketType>(0)), "RESERVED");
}

TEST(ReasonCode, HasSpecificationNamesForEveryCode) {
  EXPECT_STREQ(to_string(ReasonCode::kSuccess), "Success");
  EXPECT_STREQ(to_string(ReasonCode::kProtocolError), "Protocol Error");
  EXPECT_STREQ(to_string(ReasonCode::kMalformedPacket), "Malformed Packet");
  EXPECT_STREQ(to_string(ReasonCode::kTopicNameInvalid), "Topic Name invalid");
  EXPECT_STREQ(to_string(ReasonCode::kWildcardSubscriptionsNotSupported),
               "Wildcard Subscriptions not supported");
  // Every code below 0xA3 is either named or reported as unknown; none is null.
  for (int code = 0; code < 256; ++code) {
    const char* name = to_string(static_cast<ReasonCode>(code));
    ASSERT_NE(name, nullptr);
    EXPECT_FALSE(std::string_view(name).empty());
  }
  EXPECT_STREQ(to_string(static_cast<ReasonCode>(0x03)), "Unknown reason code");
}

TEST(Properties, AreEmptyOnlyWhenNothingIsSet) {
  Properties properties;
  EXPECT_TRUE(properties.empty());
  properties.shared_subscription_available = 0;
  EXPECT_FALSE(properties.empty());
  properties = {};
  properties.user_properties.push_back({"", ""});
  EXPECT_FALSE(properties.empty());
  properties = {};
  properties.subscription_identifiers.push_back(1);
  EXPECT_FALSE(properties.empty());
}

TEST(TypeOf, NamesEveryAlternative) {
  EXPECT_EQ(type_of(Connect{}), PacketType::kConnect);
  EXPECT_EQ(type_of(Connack{}), PacketType::kConnack);
  EXPECT_EQ(type_of(Publish{}), PacketType::kPublish);
  EXPECT_EQ(type_of(Ack{PacketType::kPubcomp}), PacketType::kPubcomp);
  EXPECT_EQ(type_of(Subscribe{}), PacketType::kSubscribe);
  EXPECT_EQ(type_of(Suback{}), PacketType::kSuback);
  EXPECT_EQ(type_of(Unsubscribe{}), PacketType::kUnsubscribe);
  EXPECT_EQ(type_of(Unsuback{}), PacketType::kUnsuback);
  EXPECT_EQ(type_of(Pingreq{}), PacketType::kPingreq);
  EXPECT_EQ(type_of(Pingresp{}), PacketType::kPingresp);
  EXPECT_EQ(type_of(Disconnect{}), PacketType::kDisconnect);
  EXPECT_EQ(type_of(Auth{}), PacketType::kAuth);
}

}  // namespace
}  // namespace counterlink::mqtt
