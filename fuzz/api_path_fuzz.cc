// libFuzzer target for google.api.http path templates (src/api/path_template.h):
// templates come from the protos, request paths straight from HTTP clients.
//
// Input: the first line is a template, every further line a request path.
//
// Checks, aborting on a violation:
//  - PathTemplate::parse never crashes; a refusal says why; an accepted
//    template has ordered, non-overlapping variables and an openapi_path()
//    that starts with '/';
//  - matching any path never crashes, and a match binds every variable of the
//    template, in order;
//  - the path made from the template by putting "a%20b" for each '*' and
//    "a%20b/c" for each '**' matches, binding "a b" / "a b/c" there and the
//    literal text elsewhere (checked for templates without '%');
//  - percent_decode() inverts full percent-encoding, is the identity on text
//    without '%', and with plus_is_space differs only in '+' -> ' '.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "path_template.h"

namespace {

using counterlink::api::PathTemplate;
using counterlink::api::percent_decode;

#define FUZZ_CHECK(condition, detail)                                  \
  do {                                                                 \
    if (!(condition)) {                                                \
      std::fprintf(stderr, "FUZZ_CHECK failed: %s (%s)\n", #condition, \
                   std::string(detail).c_str());                       \
      __builtin_trap();                                                \
    }                                                                  \
  } while (false)

constexpr std::string_view kStarRaw = "a%20b";
constexpr std::string_view kStarValue = "a b";
constexpr std::string_view kDoubleStarRaw = "a%20b/c";
constexpr std::string_view kDoubleStarValue = "a b/c";

void check_percent_decode(std::string_view in) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string encoded;
  for (char c : in) {
    const auto byte = static_cast<uint8_t>(c);
    encoded += '%';
    encoded += kHex[byte >> 4];
    encoded += kHex[byte & 15];
  }
  std::string decoded;
  FUZZ_CHECK(percent_decode(encoded, decoded), "full percent-encoding refused");
  FUZZ_CHECK(decoded == in, "percent round trip");

  std::string plain, plus;
  const bool plain_ok = percent_decode(in, plain);
  const bool plus_ok = percent_decode(in, plus, /*plus_is_space=*/true);
  FUZZ_CHECK(plain_ok == plus_ok, "plus_is_space changes validity");
  if (in.find('%') == std::string_view::npos) {
    FUZZ_CHECK(plain_ok && plain == in, "text without '%' is not decoded as is");
  }
  if (!plain_ok) return;
  FUZZ_CHECK(plain.size() <= in.size(), "decoding grew the text");
  FUZZ_CHECK(plain.size() == plus.size(), "plus_is_space changes the length");
  for (size_t i = 0; i < plain.size(); ++i) {
    FUZZ_CHECK(plain[i] == plus[i] || (plain[i] == '+' && plus[i] == ' '),
               "plus_is_space changed more than '+'");
  }
}

// Maps the '*' / '**' segments of `segments` (text without braces, split at
// '/') to their raw path text, or to their expected bound value.
std::string instantiate(std::string_view segments, bool as_value) {
  std::string out;
  size_t start = 0;
  while (true) {
    const size_t slash = segments.find('/', start);
    const std::string_view segment = segments.substr(start, slash - start);
    if (segment == "*") {
      out += as_value ? kStarValue : kStarRaw;
    } else if (segment == "**") {
      out += as_value ? kDoubleStarValue : kDoubleStarRaw;
    } else {
      out += segment;
    }
    if (slash == std::string_view::npos) return out;
    out += '/';
    start = slash + 1;
  }
}

// Builds a path the accepted template `t` must match, and the bindings it
// must produce, from the template text.
void check_instantiated(const PathTemplate& t) {
  std::string_view text = t.pattern();
  if (text.find('%') != std::string_view::npos) return;
  if (!t.verb().empty()) text.remove_suffix(t.verb().size() + 1);
  std::string path;
  PathTemplate::Bindings expected;
  while (!text.empty()) {
    const size_t open = text.find('{');
    path += instantiate(text.substr(0, open), false);
    if (open == std::string_view::npos) break;
    const size_t close = text.find('}', open);
    FUZZ_CHECK(close != std::string_view::npos, t.pattern());
    const std::string_view inner = text.substr(open + 1, close - open - 1);
    const size_t eq = inner.find('=');
    const std::string_view sub = eq == std::string_view::npos ? "*" : inner.substr(eq + 1);
    path += instantiate(sub, false);
    expected.emplace_back(std::string(inner.substr(0, eq)), instantiate(sub, true));
    text.remove_prefix(close + 1);
  }
  if (!t.verb().empty()) path += ":" + t.verb();
  PathTemplate::Bindings bindings;
  FUZZ_CHECK(t.match(path, bindings), t.pattern() + " does not match " + path);
  FUZZ_CHECK(bindings == expected, t.pattern() + " binds " + path + " wrongly");
}

void check_template(const PathTemplate& t) {
  size_t previous_end = 0;
  for (const auto& variable : t.variables()) {
    FUZZ_CHECK(!variable.field_path.empty(), t.pattern());
    FUZZ_CHECK(variable.first_segment >= previous_end, t.pattern());
    FUZZ_CHECK(variable.first_segment < variable.end_segment, t.pattern());
    previous_end = variable.end_segment;
  }
  FUZZ_CHECK(t.specificity() >= 0, t.pattern());
  const std::string openapi = t.openapi_path();
  FUZZ_CHECK(!openapi.empty() && openapi[0] == '/', openapi);
  check_instantiated(t);
}

void check_match(const PathTemplate& t, std::string_view path) {
  PathTemplate::Bindings bindings;
  if (!t.match(path, bindings)) return;
  FUZZ_CHECK(bindings.size() == t.variables().size(), path);
  for (size_t i = 0; i < bindings.size(); ++i) {
    FUZZ_CHECK(bindings[i].first == t.variables()[i].field_path, path);
  }
  if (!t.verb().empty()) {
    FUZZ_CHECK(path.ends_with(":" + t.verb()), path);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t nl = in.find('\n');
  const std::string_view pattern = in.substr(0, nl);
  std::string_view rest = nl == std::string_view::npos ? std::string_view{} : in.substr(nl + 1);

  check_percent_decode(pattern);
  std::string error;
  const auto t = PathTemplate::parse(pattern, &error);
  if (!t) {
    FUZZ_CHECK(!error.empty(), "a refused template without a reason");
  } else {
    FUZZ_CHECK(t->pattern() == pattern, pattern);
    check_template(*t);
  }
  while (true) {
    const size_t end = rest.find('\n');
    const std::string_view path = rest.substr(0, end);
    check_percent_decode(path);
    if (t) check_match(*t, path);
    if (end == std::string_view::npos) break;
    rest.remove_prefix(end + 1);
  }
  return 0;
}
