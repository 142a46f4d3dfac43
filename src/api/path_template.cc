#include "path_template.h"

namespace counterlink::api {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t pos = s.find(sep, start);
    if (pos == std::string_view::npos) {
      parts.push_back(s.substr(start));
      return parts;
    }
    parts.push_back(s.substr(start, pos - start));
    start = pos + 1;
  }
}

bool valid_literal(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c == '/' || c == '{' || c == '}' || c == '*' || c == ':' || c == '=') return false;
  }
  return true;
}

bool valid_field_path(std::string_view s) {
  if (s.empty()) return false;
  for (auto part : split(s, '.')) {
    if (part.empty()) return false;
    for (char c : part) {
      bool ok =
          (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
      if (!ok) return false;
    }
  }
  return true;
}

}  // namespace

bool percent_decode(std::string_view in, std::string& out, bool plus_is_space,
                    bool keep_encoded_slash) {
  out.clear();
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      int hi = hex_value(in[i + 1]);
      int lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      if (keep_encoded_slash && hi * 16 + lo == '/') {
        out.append(in.substr(i, 3));  // as sent: %2F or %2f
      } else {
        out.push_back(static_cast<char>(hi * 16 + lo));
      }
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return true;
}

std::optional<PathTemplate> PathTemplate::parse(std::string_view pattern, std::string* error) {
  auto fail = [&](std::string why) -> std::optional<PathTemplate> {
    if (error) *error = "path template \"" + std::string(pattern) + "\": " + why;
    return std::nullopt;
  };
  if (pattern.empty() || pattern[0] != '/') return fail("must start with '/'");
  PathTemplate t;
  t.pattern_ = std::string(pattern);

  // The verb: a ':' after the last '/' and the last '}'.
  std::string_view body = pattern.substr(1);
  size_t last_slash = body.rfind('/');
  size_t last_brace = body.rfind('}');
  size_t floor = 0;
  if (last_slash != std::string_view::npos) floor = last_slash;
  if (last_brace != std::string_view::npos && last_brace > floor) floor = last_brace;
  size_t colon = body.find(':', floor);
  if (colon != std::string_view::npos) {
    t.verb_ = std::string(body.substr(colon + 1));
    if (!valid_literal(t.verb_)) return fail("invalid verb");
    body = body.substr(0, colon);
  }

  // Segments, with variables possibly spanning several of them.
  size_t i = 0;
  auto parse_segment = [&](std::string_view seg) -> bool {
    if (seg == "*") {
      t.segments_.push_back({Kind::kStar, {}});
    } else if (seg == "**") {
      t.segments_.push_back({Kind::kDoubleStar, {}});
    } else if (valid_literal(seg)) {
      t.segments_.push_back({Kind::kLiteral, std::string(seg)});
      ++t.literal_count_;
    } else {
      return false;
    }
    return true;
  };
  while (i <= body.size()) {
    if (i < body.size() && body[i] == '{') {
      size_t close = body.find('}', i);
      if (close == std::string_view::npos) return fail("unclosed '{'");
      std::string_view inner = body.substr(i + 1, close - i - 1);
      std::string_view field = inner;
      std::string_view sub = "*";
      size_t eq = inner.find('=');
      if (eq != std::string_view::npos) {
        field = inner.substr(0, eq);
        sub = inner.substr(eq + 1);
      }
      if (!valid_field_path(field))
        return fail("invalid field path \"" + std::string(field) + "\"");
      Variable v;
      v.field_path = std::string(field);
      v.first_segment = t.segments_.size();
      for (auto seg : split(sub, '/')) {
        if (!parse_segment(seg))
          return fail("invalid variable pattern \"" + std::string(sub) + "\"");
      }
      v.end_segment = t.segments_.size();
      t.variables_.push_back(std::move(v));
      i = close + 1;
    } else {
      size_t end = body.find('/', i);
      if (end == std::string_view::npos) end = body.size();
      std::string_view seg = body.substr(i, end - i);
      if (!parse_segment(seg)) return fail("invalid segment \"" + std::string(seg) + "\"");
      i = end;
    }
    if (i == body.size()) break;
    if (body[i] != '/') return fail("expected '/' after a variable");
    ++i;
  }
  for (size_t s = 0; s + 1 < t.segments_.size(); ++s) {
    if (t.segments_[s].kind == Kind::kDoubleStar) return fail("'**' must be the last segment");
  }
  return t;
}

bool PathTemplate::match(std::string_view path, Bindings& out) const {
  if (path.empty() || path[0] != '/') return false;
  std::string_view body = path.substr(1);
  size_t last_slash = body.rfind('/');
  size_t colon = body.find(':', last_slash == std::string_view::npos ? 0 : last_slash);
  std::string_view verb;
  if (colon != std::string_view::npos) {
    verb = body.substr(colon + 1);
    body = body.substr(0, colon);
  }
  if (verb != verb_) return false;
  auto raw = split(body, '/');

  size_t n = segments_.size();
  bool tail = n > 0 && segments_.back().kind == Kind::kDoubleStar;
  if (tail ? raw.size() < n : raw.size() != n) return false;
  for (size_t s = 0; s < n; ++s) {
    const auto& seg = segments_[s];
    if (seg.kind == Kind::kLiteral && raw[s] != seg.literal) return false;
    if (seg.kind == Kind::kStar && raw[s].empty()) return false;
  }

  Bindings found;
  for (const auto& v : variables_) {
    size_t first = v.first_segment;
    size_t last = v.end_segment;  // exclusive
    if (tail && last == n) last = raw.size();
    std::string joined;
    for (size_t s = first; s < last; ++s) {
      if (s > first) joined.push_back('/');
      joined.append(raw[s]);
    }
    // google.api.http: a variable over several segments ("{name=a/**}")
    // keeps %2F encoded, so a decoded '/' always means a segment boundary.
    bool multi_segment = last - first > 1;
    for (size_t s = first; s < v.end_segment && s < n; ++s) {
      multi_segment = multi_segment || segments_[s].kind == Kind::kDoubleStar;
    }
    std::string decoded;
    if (!percent_decode(joined, decoded, /*plus_is_space=*/false, multi_segment)) return false;
    found.emplace_back(v.field_path, std::move(decoded));
  }
  out = std::move(found);
  return true;
}

std::string PathTemplate::openapi_path() const {
  std::string path;
  size_t var = 0;
  for (size_t s = 0; s < segments_.size();) {
    path.push_back('/');
    if (var < variables_.size() && variables_[var].first_segment == s) {
      path += "{" + variables_[var].field_path + "}";
      s = variables_[var].end_segment;
      ++var;
      continue;
    }
    const auto& seg = segments_[s];
    path += seg.kind == Kind::kLiteral ? seg.literal : (seg.kind == Kind::kStar ? "*" : "**");
    ++s;
  }
  if (segments_.empty()) path = "/";
  if (!verb_.empty()) path += ":" + verb_;
  return path;
}

}  // namespace counterlink::api
