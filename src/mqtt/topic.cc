#include "counterlink/mqtt/topic.h"

#include <cstdint>
#include <cstring>

namespace counterlink::mqtt {

namespace {

constexpr uint64_t kHighBits = 0x8080808080808080ull;
constexpr uint64_t kLowBits = 0x0101010101010101ull;

// True if any byte of `word` is zero (the classic borrow trick: a byte only
// borrows into its high bit when it was zero, and `~word` excludes bytes that
// already had the high bit set).
constexpr bool has_zero_byte(uint64_t word) {
  return ((word - kLowBits) & ~word & kHighBits) != 0;
}

bool is_continuation(unsigned char c) {
  return (c & 0xC0) == 0x80;
}

// True if `s` holds '+' or '#'. Topic names are scanned for wildcards on every
// PUBLISH, so this checks eight bytes per step (std::string_view::find_first_of
// in libstdc++ calls memchr once per byte).
bool has_wildcard(std::string_view s) {
  constexpr uint64_t kPlus = kLowBits * '+';
  constexpr uint64_t kHash = kLowBits * '#';
  size_t i = 0;
  for (; s.size() - i >= 8; i += 8) {
    uint64_t word;
    std::memcpy(&word, s.data() + i, sizeof(word));
    if (has_zero_byte(word ^ kPlus) || has_zero_byte(word ^ kHash)) return true;
  }
  for (; i < s.size(); ++i) {
    if (s[i] == '+' || s[i] == '#') return true;
  }
  return false;
}

}  // namespace

bool is_valid_mqtt_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p != end) {
    // Topics and identifiers are mostly ASCII: check eight bytes at a time for
    // "no high bit and no NUL" before falling back to the per-byte decoder.
    while (end - p >= 8) {
      uint64_t word;
      std::memcpy(&word, p, sizeof(word));
      if ((word & kHighBits) != 0 || has_zero_byte(word)) break;
      p += 8;
    }
    if (p == end) break;
    const unsigned char c = *p;
    if (c < 0x80) {
      if (c == 0) return false;  // U+0000 is forbidden (MQTT-1.5.4-2)
      ++p;
      continue;
    }
    // Ranges of the second byte follow Unicode Table 3-7 (well-formed UTF-8
    // byte sequences), which excludes overlong forms, surrogates and code
    // points above U+10FFFF in one place.
    size_t length;
    unsigned char second_min = 0x80;
    unsigned char second_max = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      length = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      length = 3;
      if (c == 0xE0) second_min = 0xA0;  // overlong
      if (c == 0xED) second_max = 0x9F;  // surrogates U+D800..U+DFFF
    } else if (c >= 0xF0 && c <= 0xF4) {
      length = 4;
      if (c == 0xF0) second_min = 0x90;  // overlong
      if (c == 0xF4) second_max = 0x8F;  // above U+10FFFF
    } else {
      return false;  // continuation byte, C0/C1 overlong lead, or F5..FF
    }
    if (static_cast<size_t>(end - p) < length) return false;
    if (p[1] < second_min || p[1] > second_max) return false;
    for (size_t i = 2; i < length; ++i) {
      if (!is_continuation(p[i])) return false;
    }
    p += length;
  }
  return true;
}

bool is_valid_topic_name(std::string_view topic) {
  return !topic.empty() && !has_wildcard(topic);
}

bool is_valid_topic_filter(std::string_view filter) {
  if (filter.empty()) return false;
  size_t level_start = 0;
  for (size_t i = 0; i < filter.size(); ++i) {
    const char c = filter[i];
    if (c == '/') {
      level_start = i + 1;
    } else if (c == '+') {
      // '+' must occupy a whole level.
      if (i != level_start) return false;
      if (i + 1 < filter.size() && filter[i + 1] != '/') return false;
    } else if (c == '#') {
      // '#' must be the whole last level.
      return i == level_start && i + 1 == filter.size();
    }
  }
  return true;
}

bool topic_matches(std::string_view filter, std::string_view topic) {
  // MQTT-4.7.2-1: topics beginning with '$' are reserved for the server and
  // are not matched by a filter that starts with a wildcard.
  if (!topic.empty() && topic.front() == '$' && !filter.empty() &&
      (filter.front() == '+' || filter.front() == '#')) {
    return false;
  }
  size_t f = 0;
  size_t t = 0;
  while (true) {
    size_t f_end = filter.find('/', f);
    if (f_end == std::string_view::npos) f_end = filter.size();
    const std::string_view filter_level = filter.substr(f, f_end - f);
    // '#' matches the parent level and any number of child levels.
    if (filter_level == "#") return true;

    size_t t_end = topic.find('/', t);
    if (t_end == std::string_view::npos) t_end = topic.size();
    const std::string_view topic_level = topic.substr(t, t_end - t);
    if (filter_level != "+" && filter_level != topic_level) return false;

    const bool filter_done = f_end == filter.size();
    const bool topic_done = t_end == topic.size();
    if (filter_done) return topic_done;
    // The topic ran out of levels: only a trailing "/#" can still match, as
    // "sport/#" matches "sport".
    if (topic_done) return filter.substr(f_end + 1) == "#";
    f = f_end + 1;
    t = t_end + 1;
  }
}

std::optional<SharedSubscription> parse_shared_subscription(std::string_view filter, bool& valid) {
  constexpr std::string_view kPrefix = "$share/";
  valid = true;
  if (filter.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;

  const std::string_view rest = filter.substr(kPrefix.size());
  const size_t slash = rest.find('/');
  SharedSubscription shared;
  if (slash == std::string_view::npos) {
    shared.group = rest;
    valid = false;  // no filter after the share name (MQTT-4.8.2-2)
    return shared;
  }
  shared.group = rest.substr(0, slash);
  shared.filter = rest.substr(slash + 1);
  // MQTT-4.8.2-2: the share name is at least one character and holds no '/',
  // '+' or '#'; it must be followed by '/' and a valid topic filter.
  valid =
      !shared.group.empty() && !has_wildcard(shared.group) && is_valid_topic_filter(shared.filter);
  return shared;
}

}  // namespace counterlink::mqtt
