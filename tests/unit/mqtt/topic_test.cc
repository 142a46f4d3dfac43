#include "counterlink/mqtt/topic.h"

#include <string>
#include <string_view>

#include <gtest/gtest.h>

namespace counterlink::mqtt {
namespace {

using namespace std::string_view_literals;

TEST(Utf8, AcceptsAsciiAndEmptyString) {
  EXPECT_TRUE(is_valid_mqtt_utf8(""));
  EXPECT_TRUE(is_valid_mqtt_utf8("sensors/room-1/temperature"));
  EXPECT_TRUE(is_valid_mqtt_utf8(std::string(1000, 'x')));
}

TEST(Utf8, AcceptsMultiByteSequencesUpToFourBytes) {
  EXPECT_TRUE(is_valid_mqtt_utf8("\xC3\xA9"));          // U+00E9
  EXPECT_TRUE(is_valid_mqtt_utf8("\xE2\x82\xAC"));      // U+20AC
  EXPECT_TRUE(is_valid_mqtt_utf8("\xF0\x9F\x98\x80"));  // U+1F600
  EXPECT_TRUE(is_valid_mqtt_utf8("\xF4\x8F\xBF\xBF"));  // U+10FFFF
  EXPECT_TRUE(
      is_valid_mqtt_utf8("\xEF\xBB\xBF"
                         "abc"));  // BOM is allowed (MQTT-1.5.4-3)
  EXPECT_TRUE(
      is_valid_mqtt_utf8("abcdefgh\xC3\xA9"
                         "abcdefgh"));
}

TEST(Utf8, AllowsControlCharactersOtherThanNul) {
  EXPECT_TRUE(is_valid_mqtt_utf8("\x01\x1F\x7F"));
  EXPECT_TRUE(is_valid_mqtt_utf8("\xC2\x80\xC2\x9F"));  // C1 controls
  EXPECT_TRUE(is_valid_mqtt_utf8("\xEF\xBF\xBF"));      // non-character U+FFFF
}

TEST(Utf8, RejectsNulAnywhere) {
  EXPECT_FALSE(is_valid_mqtt_utf8("\0"sv));
  EXPECT_FALSE(is_valid_mqtt_utf8("abc\0def"sv));
  EXPECT_FALSE(is_valid_mqtt_utf8("abcdefghijklmno\0pqrstuvw"sv));  // inside the 8-byte fast path
}

TEST(Utf8, RejectsOverlongEncodings) {
  EXPECT_FALSE(is_valid_mqtt_utf8("\xC0\x80"));          // overlong U+0000
  EXPECT_FALSE(is_valid_mqtt_utf8("\xC1\xBF"));          // overlong U+007F
  EXPECT_FALSE(is_valid_mqtt_utf8("\xE0\x80\x80"));      // overlong U+0000
  EXPECT_FALSE(is_valid_mqtt_utf8("\xE0\x9F\xBF"));      // overlong U+07FF
  EXPECT_FALSE(is_valid_mqtt_utf8("\xF0\x8F\xBF\xBF"));  // overlong U+FFFF
}

TEST(Utf8, RejectsSurrogates) {
  EXPECT_FALSE(is_valid_mqtt_utf8("\xED\xA0\x80"));  // U+D800
  EXPECT_FALSE(is_valid_mqtt_utf8("\xED\xBF\xBF"));  // U+DFFF
  EXPECT_TRUE(is_valid_mqtt_utf8("\xED\x9F\xBF"));   // U+D7FF, just below
}

TEST(Utf8, RejectsCodePointsAboveU10FFFF) {
  EXPECT_FALSE(is_valid_mqtt_utf8("\xF4\x90\x80\x80"));  // U+110000
  EXPECT_FALSE(is_valid_mqtt_utf8("\xF5\x80\x80\x80"));
  EXPECT_FALSE(is_valid_mqtt_utf8("\xFF"));
}

TEST(Utf8, RejectsTruncatedAndStrayBytes) {
  EXPECT_FALSE(is_valid_mqtt_utf8("\xC3"));
  EXPECT_FALSE(is_valid_mqtt_utf8("\xE2\x82"));
  EXPECT_FALSE(is_valid_mqtt_utf8("\xF0\x9F\x98"));
  EXPECT_FALSE(is_valid_mqtt_utf8("\x80"));
  EXPECT_FALSE(is_valid_mqtt_utf8("a\xBF"));
  EXPECT_FALSE(is_valid_mqtt_utf8("\xE2\x28\xA1"));  // bad second byte
  EXPECT_FALSE(is_valid_mqtt_utf8("\xE2\x82\x28"));  // bad third byte
}

TEST(TopicName, AcceptsNamesWithoutWildcards) {
  EXPECT_TRUE(is_valid_topic_name("a"));
  EXPECT_TRUE(is_valid_topic_name("/"));
  EXPECT_TRUE(is_valid_topic_name("a//b/"));
  EXPECT_TRUE(is_valid_topic_name("$SYS/broker/uptime"));
}

TEST(TopicName, RejectsEmptyAndWildcards) {
  EXPECT_FALSE(is_valid_topic_name(""));
  EXPECT_FALSE(is_valid_topic_name("a/+/b"));
  EXPECT_FALSE(is_valid_topic_name("a/#"));
  EXPECT_FALSE(is_valid_topic_name("a+b"));
}

TEST(TopicName, FindsWildcardsAtEveryOffsetOfLongNames) {
  for (size_t length : {1, 7, 8, 9, 16, 23, 40}) {
    const std::string clean(length, 'a');
    EXPECT_TRUE(is_valid_topic_name(clean));
    EXPECT_TRUE(is_valid_topic_name(std::string(length, '\xC3') + "\xA9"));
    for (size_t i = 0; i < length; ++i) {
      for (char wildcard : {'+', '#'}) {
        std::string name = clean;
        name[i] = wildcard;
        EXPECT_FALSE(is_valid_topic_name(name)) << name;
      }
    }
  }
}

TEST(TopicFilter, AcceptsWildcardsOnWholeLevels) {
  for (const char* filter :
       {"#", "+", "/", "a/b", "a/+/c", "+/+", "a/#", "+/#", "/+", "+/", "$SYS/#", "//", "a//#"}) {
    EXPECT_TRUE(is_valid_topic_filter(filter)) << filter;
  }
}

TEST(TopicFilter, RejectsMisplacedWildcardsAndEmpty) {
  for (const char* filter :
       {"", "a#", "#/a", "a/#/b", "a/b#", "a+", "+a", "a/+b/c", "a/b+", "##", "++", "a/#/"}) {
    EXPECT_FALSE(is_valid_topic_filter(filter)) << filter;
  }
}

struct MatchCase {
  const char* filter;
  const char* topic;
  bool matches;
};

TEST(TopicMatches, FollowsTheSpecificationExamples) {
  const MatchCase cases[] = {
      // 4.7.1.2 multi-level wildcard
      {"sport/tennis/player1/#", "sport/tennis/player1", true},
      {"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
      {"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
      {"sport/#", "sport", true},
      {"#", "sport/tennis", true},
      {"#", "/", true},
      {"sport/tennis/#", "sport/tennisplayer1", false},
      // 4.7.1.3 single-level wildcard
      {"sport/tennis/+", "sport/tennis/player1", true},
      {"sport/tennis/+", "sport/tennis/player2", true},
      {"sport/tennis/+", "sport/tennis/player1/ranking", false},
      {"sport/+", "sport", false},
      {"sport/+", "sport/", true},
      {"+/+", "/finance", true},
      {"/+", "/finance", true},
      {"+", "/finance", false},
      {"+/tennis/#", "sport/tennis/player1", true},
      {"+", "a", true},
      {"+/+/+", "a//c", true},
      {"a/+/c", "a//c", true},
      // exact
      {"a/b", "a/b", true},
      {"a/b", "a/b/", false},
      {"a/b/", "a/b", false},
      {"a/b", "a/B", false},
      {"/", "/", true},
      {"a/b/c", "a/b", false},
      {"a/b", "a/b/c", false},
      // 4.7.2 topics beginning with $
      {"#", "$SYS/broker", false},
      {"+/broker", "$SYS/broker", false},
      {"+", "$SYS", false},
      {"$SYS/#", "$SYS/broker/uptime", true},
      {"$SYS/#", "$SYS", true},
      {"$SYS/+", "$SYS/broker", true},
      {"a/#", "a/$SYS", true},  // only a leading $ is special
  };
  for (const MatchCase& c : cases) {
    EXPECT_EQ(topic_matches(c.filter, c.topic), c.matches)
        << "filter \"" << c.filter << "\" topic \"" << c.topic << "\"";
  }
}

TEST(SharedSubscription, ParsesGroupAndFilter) {
  bool valid = false;
  const auto shared = parse_shared_subscription("$share/group1/sensors/+/temp", valid);
  ASSERT_TRUE(shared.has_value());
  EXPECT_TRUE(valid);
  EXPECT_EQ(shared->group, "group1");
  EXPECT_EQ(shared->filter, "sensors/+/temp");
}

TEST(SharedSubscription, AcceptsWildcardOnlyFilter) {
  bool valid = false;
  const auto shared = parse_shared_subscription("$share/g/#", valid);
  ASSERT_TRUE(shared.has_value());
  EXPECT_TRUE(valid);
  EXPECT_EQ(shared->filter, "#");
}

TEST(SharedSubscription, ReturnsNulloptForOrdinaryFilters) {
  for (const char* filter : {"a/b", "#", "$share", "$shared/g/a", "$SYS/#", "share/g/a"}) {
    bool valid = false;
    EXPECT_FALSE(parse_shared_subscription(filter, valid).has_value()) << filter;
    EXPECT_TRUE(valid) << filter;
  }
}

TEST(SharedSubscription, MarksMalformedSharesInvalid) {
  for (const char* filter : {"$share/", "$share//a", "$share/g", "$share/g/", "$share/g+/a",
                             "$share/#/a", "$share/+/a", "$share/g/a#", "$share/g/#/a"}) {
    bool valid = true;
    EXPECT_TRUE(parse_shared_subscription(filter, valid).has_value()) << filter;
    EXPECT_FALSE(valid) << filter;
  }
}

}  // namespace
}  // namespace counterlink::mqtt
