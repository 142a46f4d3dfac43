// Topic names, topic filters and UTF-8 rules of MQTT (sections 1.5.4, 4.7,
// 4.8.2). Pure functions.
#pragma once

#include <optional>
#include <string_view>

namespace counterlink::mqtt {

// True if `s` is well-formed UTF-8 as MQTT requires: no overlong forms, no
// surrogates (U+D800..U+DFFF), no code points above U+10FFFF, no U+0000.
bool is_valid_mqtt_utf8(std::string_view s);

// A topic name a client may publish to: non-empty, no '+' or '#'.
// (UTF-8 validity is checked separately.)
bool is_valid_topic_name(std::string_view topic);

// A topic filter: non-empty; '#' only as the whole last level; '+' only as a
// whole level. Shared-subscription prefixes are not understood here; use
// parse_shared_subscription() first.
bool is_valid_topic_filter(std::string_view filter);

// True if `filter` (valid) matches `topic` (valid). Topics starting with '$'
// are not matched by filters starting with '+' or '#' (MQTT-4.7.2-1).
bool topic_matches(std::string_view filter, std::string_view topic);

struct SharedSubscription {
  std::string_view group;   // share name: non-empty, no '/', '+' or '#'
  std::string_view filter;  // the topic filter after the share name
};

// For "$share/{group}/{filter}" returns the parts; nullopt if `filter` is not
// a shared subscription. `valid` is set false when it starts with "$share/"
// but is malformed (empty or invalid group, missing or invalid filter).
std::optional<SharedSubscription> parse_shared_subscription(std::string_view filter, bool& valid);

}  // namespace counterlink::mqtt
