#include "json_codec.h"

#include <charconv>
#include <cmath>
#include <cstdlib>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>

namespace counterlink::api {

namespace gp = google::protobuf;

namespace {

const gp::FieldDescriptor* find_field(const gp::Descriptor& desc, std::string_view name) {
  std::string n(name);
  if (auto* f = desc.FindFieldByName(n)) return f;
  for (int i = 0; i < desc.field_count(); ++i) {
    if (desc.field(i)->json_name() == n) return desc.field(i);
  }
  return nullptr;
}

template <typename T>
bool parse_int(std::string_view text, T& out) {
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && ptr == text.data() + text.size() && !text.empty();
}

bool parse_double(std::string_view text, double& out) {
  if (text.empty()) return false;
  std::string s(text);
  char* end = nullptr;
  out = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size();
}

// "(thing) bogus: Cannot find field." -> "thing.bogus"
// "(labels[0].value): invalid value ..." -> "labels"
std::string field_from_parser_message(std::string_view msg, bool& unknown_field) {
  unknown_field = false;
  std::string path;
  if (!msg.empty() && msg[0] == '(') {
    size_t close = msg.find(')');
    if (close != std::string_view::npos) {
      path = std::string(msg.substr(1, close - 1));
      msg = msg.substr(close + 1);
      if (!msg.empty() && msg[0] == ' ') msg = msg.substr(1);
    }
  }
  static constexpr std::string_view kUnknown = ": Cannot find field.";
  size_t pos = msg.find(kUnknown);
  if (pos != std::string_view::npos) {
    unknown_field = true;
    std::string name(msg.substr(0, pos));
    path = path.empty() ? name : path + "." + name;
  }
  // Map entries and list indexes are not fields: "labels[0].value" -> "labels".
  size_t bracket = path.find('[');
  if (bracket != std::string::npos) path.erase(bracket);
  return path;
}

}  // namespace

Outcome parse_query(std::string_view query, QueryParams& out) {
  out.clear();
  size_t start = 0;
  while (start < query.size()) {
    size_t end = query.find('&', start);
    if (end == std::string_view::npos) end = query.size();
    std::string_view pair = query.substr(start, end - start);
    start = end + 1;
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    std::string key;
    std::string value;
    if (!percent_decode(pair.substr(0, eq), key, true) ||
        (eq != std::string_view::npos && !percent_decode(pair.substr(eq + 1), value, true))) {
      return invalid_argument(
          "", "The query string has a malformed percent-escape; encode it per RFC 3986.");
    }
    out.emplace_back(std::move(key), std::move(value));
  }
  return std::nullopt;
}

Outcome set_field_from_text(gp::Message& root, std::string_view field_path,
                            std::string_view value) {
  gp::Message* msg = &root;
  std::string display;
  size_t start = 0;
  while (true) {
    size_t dot = field_path.find('.', start);
    std::string_view part = field_path.substr(
        start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    const gp::FieldDescriptor* field = find_field(*msg->GetDescriptor(), part);
    if (!display.empty()) display += ".";
    display += field ? field->name() : std::string(part);
    if (!field) {
      return invalid_argument(
          display, "Unknown parameter \"" + display + "\"; remove it or check its spelling.");
    }
    const gp::Reflection* refl = msg->GetReflection();
    if (dot != std::string_view::npos) {
      if (field->cpp_type() != gp::FieldDescriptor::CPPTYPE_MESSAGE || field->is_repeated()) {
        return invalid_argument(display, "\"" + display + "\" has no sub-fields.");
      }
      msg = refl->MutableMessage(msg, field);
      start = dot + 1;
      continue;
    }
    if (field->is_map()) {
      return invalid_argument(
          display, "Map field \"" + display + "\" cannot be set from the URL; send it in a body.");
    }
    auto bad = [&](std::string_view what) {
      return invalid_argument(display, "Parameter \"" + display + "\" must be " +
                                           std::string(what) + ", got \"" + std::string(value) +
                                           "\".");
    };
    bool repeated = field->is_repeated();
    switch (field->cpp_type()) {
      case gp::FieldDescriptor::CPPTYPE_STRING:
        if (repeated) {
          refl->AddString(msg, field, std::string(value));
        } else {
          refl->SetString(msg, field, std::string(value));
        }
        break;
      case gp::FieldDescriptor::CPPTYPE_INT32: {
        int32_t v = 0;
        if (!parse_int(value, v)) return bad("a 32-bit integer");
        repeated ? refl->AddInt32(msg, field, v) : refl->SetInt32(msg, field, v);
        break;
      }
      case gp::FieldDescriptor::CPPTYPE_INT64: {
        int64_t v = 0;
        if (!parse_int(value, v)) return bad("a 64-bit integer");
        repeated ? refl->AddInt64(msg, field, v) : refl->SetInt64(msg, field, v);
        break;
      }
      case gp::FieldDescriptor::CPPTYPE_UINT32: {
        uint32_t v = 0;
        if (!parse_int(value, v)) return bad("an unsigned 32-bit integer");
        repeated ? refl->AddUInt32(msg, field, v) : refl->SetUInt32(msg, field, v);
        break;
      }
      case gp::FieldDescriptor::CPPTYPE_UINT64: {
        uint64_t v = 0;
        if (!parse_int(value, v)) return bad("an unsigned 64-bit integer");
        repeated ? refl->AddUInt64(msg, field, v) : refl->SetUInt64(msg, field, v);
        break;
      }
      case gp::FieldDescriptor::CPPTYPE_DOUBLE:
      case gp::FieldDescriptor::CPPTYPE_FLOAT: {
        double v = 0;
        if (!parse_double(value, v) || !std::isfinite(v)) return bad("a number");
        if (field->cpp_type() == gp::FieldDescriptor::CPPTYPE_DOUBLE) {
          repeated ? refl->AddDouble(msg, field, v) : refl->SetDouble(msg, field, v);
        } else {
          auto f = static_cast<float>(v);
          repeated ? refl->AddFloat(msg, field, f) : refl->SetFloat(msg, field, f);
        }
        break;
      }
      case gp::FieldDescriptor::CPPTYPE_BOOL: {
        bool v = false;
        if (value == "true" || value == "1") {
          v = true;
        } else if (value != "false" && value != "0") {
          return bad("true or false");
        }
        repeated ? refl->AddBool(msg, field, v) : refl->SetBool(msg, field, v);
        break;
      }
      case gp::FieldDescriptor::CPPTYPE_ENUM: {
        const gp::EnumValueDescriptor* ev = field->enum_type()->FindValueByName(std::string(value));
        int32_t number = 0;
        if (!ev && parse_int(value, number)) ev = field->enum_type()->FindValueByNumber(number);
        if (!ev) {
          std::string names;
          for (int i = 0; i < field->enum_type()->value_count(); ++i) {
            if (i) names += ", ";
            names += field->enum_type()->value(i)->name();
          }
          return bad("one of " + names);
        }
        repeated ? refl->AddEnum(msg, field, ev) : refl->SetEnum(msg, field, ev);
        break;
      }
      case gp::FieldDescriptor::CPPTYPE_MESSAGE: {
        // Well-known types with a string JSON form (Timestamp, Duration,
        // wrappers, FieldMask): parse "value" as that JSON string.
        gp::Message* target =
            repeated ? refl->AddMessage(msg, field) : refl->MutableMessage(msg, field);
        std::string json = nlohmann::json(std::string(value)).dump();
        gp::util::JsonParseOptions options;
        if (!gp::util::JsonStringToMessage(json, target, options).ok()) {
          return bad("a valid " + field->message_type()->name());
        }
        break;
      }
    }
    return std::nullopt;
  }
}

Outcome parse_json(std::string_view json, gp::Message& message) {
  gp::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto status =
      gp::util::JsonStringToMessage(gp::StringPiece(json.data(), json.size()), &message, options);
  if (status.ok()) return std::nullopt;
  std::string text(status.message());
  bool unknown = false;
  std::string field = field_from_parser_message(text, unknown);
  if (unknown) {
    return invalid_argument(field,
                            "Unknown field \"" + field + "\"; remove it or check its spelling.");
  }
  if (text.find("invalid value") != std::string::npos ||
      text.find("oneof field") != std::string::npos) {
    // First line only: the parser appends the input and a caret.
    std::string first = text.substr(0, text.find('\n'));
    return invalid_argument(field, "Field \"" + field + "\" has the wrong type or value: " + first);
  }
  Problem p;
  p.http_status = 400;
  p.code = "invalid_json";
  p.title = "Malformed JSON";
  p.detail =
      "The body is not a JSON object of the request's fields: " + text.substr(0, text.find('\n')) +
      " Send a JSON object (Content-Type: application/json).";
  return p;
}

Outcome bind_rest_request(const HttpBinding& binding, const PathTemplate::Bindings& variables,
                          const QueryParams& query, std::string_view body, gp::Message& request) {
  if (!query.empty() && binding.body == "*") {
    return invalid_argument(query.front().first,
                            "This method takes all its fields in the JSON body, not in the "
                            "query string; move \"" +
                                query.front().first + "\" into the body.");
  }
  for (const auto& [name, value] : query) {
    if (!binding.body.empty() && (name == binding.body || name.rfind(binding.body + ".", 0) == 0)) {
      return invalid_argument(name, "\"" + name + "\" belongs in the JSON body.");
    }
    if (auto problem = set_field_from_text(request, name, value)) return problem;
  }
  bool blank = body.find_first_not_of(" \t\r\n") == std::string_view::npos;
  if (binding.body == "*") {
    if (!blank) {
      if (auto problem = parse_json(body, request)) return problem;
    }
  } else if (!binding.body.empty()) {
    if (!blank) {
      // Parse {"<field>": <body>} so that problems name the field in the
      // request ("thing.name"), then merge the one field in.
      const gp::FieldDescriptor* field = request.GetDescriptor()->FindFieldByName(binding.body);
      std::string wrapped;
      wrapped.reserve(body.size() + binding.body.size() + 8);
      wrapped.append("{\"").append(field->name()).append("\":").append(body).append("}");
      std::unique_ptr<gp::Message> holder(request.New());
      if (auto problem = parse_json(wrapped, *holder)) return problem;
      request.GetReflection()->ClearField(&request, field);
      request.MergeFrom(*holder);
    }
  } else if (!blank) {
    return invalid_argument(
        "", "This method takes no request body; send its fields as query parameters.");
  }
  for (const auto& [path, value] : variables) {
    if (auto problem = set_field_from_text(request, path, value)) return problem;
  }
  return std::nullopt;
}

std::string message_to_json(const gp::Message& message) {
  gp::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string out;
  auto status = gp::util::MessageToJsonString(message, &out, options);
  if (!status.ok()) return "{}";
  return out;
}

std::string problem_to_json(const Problem& problem, std::string_view request_id) {
  nlohmann::ordered_json j;
  j["type"] = "urn:counterlink:problem:" + problem.code;
  j["title"] = problem.title;
  j["status"] = problem.http_status;
  j["detail"] = problem.detail;
  j["code"] = problem.code;
  if (!problem.field.empty()) j["field"] = problem.field;
  if (!request_id.empty()) j["request_id"] = std::string(request_id);
  if (problem.retry_after_s > 0) j["retry_after_s"] = problem.retry_after_s;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Problem problem_from_json(std::string_view json, int http_status) {
  Problem p;
  p.http_status = http_status;
  auto j = nlohmann::json::parse(json, nullptr, false);
  if (j.is_object()) {
    p.code = j.value("code", "");
    p.title = j.value("title", "");
    p.detail = j.value("detail", "");
    p.field = j.value("field", "");
    p.retry_after_s = j.value("retry_after_s", 0);
  }
  return p;
}

std::string sha256_hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 0xf]);
  }
  return out;
}

}  // namespace counterlink::api
