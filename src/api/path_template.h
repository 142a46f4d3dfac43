// google.api.http path templates: compile once, match request paths.
//
//   Template = "/" Segments [ Verb ] ;
//   Segments = Segment { "/" Segment } ;
//   Segment  = "*" | "**" | LITERAL | Variable ;
//   Variable = "{" FieldPath [ "=" Segments ] "}" ;
//   Verb     = ":" LITERAL ;
//
// "**" must be the last segment. A request path's verb is whatever follows the
// last ':' of its last raw segment (before percent-decoding), so ids that need
// a ':' must send it as %3A. Private to the api component.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace counterlink::api {

class PathTemplate {
 public:
  struct Variable {
    std::string field_path;  // "thing_id", "thing.id"
    size_t first_segment = 0;
    size_t end_segment = 0;  // one past the last
  };
  using Bindings = std::vector<std::pair<std::string, std::string>>;  // field path -> value

  // nullopt and *error set when `pattern` is not a valid template.
  static std::optional<PathTemplate> parse(std::string_view pattern, std::string* error);

  // Matches a raw request path (no query string). On a match fills `out` with
  // the percent-decoded variable values.
  bool match(std::string_view path, Bindings& out) const;

  const std::string& pattern() const { return pattern_; }
  const std::vector<Variable>& variables() const { return variables_; }
  const std::string& verb() const { return verb_; }
  // Literal segments count: the more, the more specific (wins ties).
  int specificity() const { return literal_count_; }
  // The template with variables as "{field.path}" and no "=pattern": the
  // OpenAPI path key.
  std::string openapi_path() const;

 private:
  enum class Kind { kLiteral, kStar, kDoubleStar };
  struct Segment {
    Kind kind = Kind::kLiteral;
    std::string literal;
  };
  std::string pattern_;
  std::vector<Segment> segments_;
  std::vector<Variable> variables_;
  std::string verb_;
  int literal_count_ = 0;
};

// Percent-decodes `in`; false on a malformed escape.
bool percent_decode(std::string_view in, std::string& out, bool plus_is_space = false,
                    bool keep_encoded_slash = false);

}  // namespace counterlink::api
