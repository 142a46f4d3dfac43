#include "counterlink/api/openapi.h"

#include <algorithm>
#include <map>
#include <regex>
#include <set>
#include <stdexcept>
#include <string_view>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <nlohmann/json.hpp>

#include "method_table.h"

namespace counterlink::api {

namespace gp = google::protobuf;
using Json = nlohmann::ordered_json;

namespace {

// Comments from a descriptor set with source info, looked up by full name.
class Comments {
 public:
  explicit Comments(std::string_view descriptor_set) {
    if (descriptor_set.empty()) return;
    gp::FileDescriptorSet set;
    if (!set.ParseFromArray(descriptor_set.data(), static_cast<int>(descriptor_set.size()))) {
      throw std::runtime_error("openapi: the descriptor set is not a serialized FileDescriptorSet");
    }
    for (const auto& file : set.file()) {
      if (!pool_.BuildFile(file)) {
        throw std::runtime_error("openapi: descriptor set file " + file.name() +
                                 " does not build; pass a set built with --include_imports");
      }
    }
  }

  template <class D>
  std::string of(const D& d) const {
    const D* source = find(d);
    if (!source) return {};
    gp::SourceLocation loc;
    if (!source->GetSourceLocation(&loc)) return {};
    return clean(loc.leading_comments);
  }

 private:
  const gp::ServiceDescriptor* find(const gp::ServiceDescriptor& d) const {
    return pool_.FindServiceByName(d.full_name());
  }
  const gp::MethodDescriptor* find(const gp::MethodDescriptor& d) const {
    return pool_.FindMethodByName(d.full_name());
  }
  const gp::Descriptor* find(const gp::Descriptor& d) const {
    return pool_.FindMessageTypeByName(d.full_name());
  }
  const gp::FieldDescriptor* find(const gp::FieldDescriptor& d) const {
    return pool_.FindFieldByName(d.full_name());
  }
  const gp::EnumDescriptor* find(const gp::EnumDescriptor& d) const {
    return pool_.FindEnumTypeByName(d.full_name());
  }

  // Trims the leading space of each line and the trailing newline.
  static std::string clean(const std::string& raw) {
    std::string out;
    size_t start = 0;
    while (start < raw.size()) {
      size_t end = raw.find('\n', start);
      if (end == std::string::npos) end = raw.size();
      std::string line = raw.substr(start, end - start);
      if (!line.empty() && line[0] == ' ') line.erase(0, 1);
      if (!out.empty()) out += "\n";
      out += line;
      start = end + 1;
    }
    while (!out.empty() && (out.back() == '\n' || out.back() == ' '))
      out.pop_back();
    return out;
  }

  gp::DescriptorPool pool_;
};

// "RotateSecret" -> "Rotate secret"
std::string words(const std::string& camel) {
  std::string out;
  for (size_t i = 0; i < camel.size(); ++i) {
    char c = camel[i];
    if (i > 0 && c >= 'A' && c <= 'Z') {
      out += ' ';
      out += static_cast<char>(c - 'A' + 'a');
    } else {
      out += c;
    }
  }
  return out;
}

std::string first_sentence(const std::string& text) {
  std::string line = text.substr(0, text.find('\n'));
  size_t dot = line.find(". ");
  if (dot != std::string::npos) line = line.substr(0, dot + 1);
  return line;
}

class Generator {
 public:
  Generator(const OpenApiInfo& info, std::string_view descriptor_set)
      : info_(info), comments_(descriptor_set) {}

  void add_method(const gp::MethodDescriptor& method) {
    MethodInfo m = describe_method(method);
    if (m.bindings.empty()) return;
    services_.insert(method.service());
    for (size_t i = 0; i < m.bindings.size(); ++i)
      add_operation(m, m.bindings[i], i);
  }

  Json document() {
    inline_stream_only_schemas();
    Json doc;
    doc["openapi"] = "3.0.3";
    Json info;
    info["title"] = info_.title;
    info["version"] = info_.version;
    info["description"] =
        info_.description.empty()
            ? "Generated from the protos' google.api.http annotations. Errors are RFC 9457 "
              "application/problem+json documents."
            : info_.description;
    Json license;
    license["name"] = info_.license_name;
    if (!info_.license_url.empty()) license["url"] = info_.license_url;
    info["license"] = license;
    if (!info_.contact_email.empty()) info["contact"] = Json{{"email", info_.contact_email}};
    doc["info"] = info;
    Json servers = Json::array();
    for (const auto& url : info_.server_urls)
      servers.push_back(Json{{"url", url}});
    doc["servers"] = servers;
    doc["security"] =
        Json::array({Json{{"bearerAuth", Json::array()}}, Json{{"hmacSignature", Json::array()}}});
    Json tags = Json::array();
    std::vector<const gp::ServiceDescriptor*> sorted(services_.begin(), services_.end());
    std::sort(sorted.begin(), sorted.end(),
              [](auto* a, auto* b) { return a->full_name() < b->full_name(); });
    for (const auto* s : sorted) {
      std::string text = comments_.of(*s);
      tags.push_back(
          Json{{"name", s->name()}, {"description", text.empty() ? s->full_name() : text}});
    }
    doc["tags"] = tags;
    doc["paths"] = paths_;

    Json components;
    Json schemes;
    schemes["bearerAuth"] =
        Json{{"type", "http"},
             {"scheme", "bearer"},
             {"description", "An API key: `Authorization: Bearer <key_id>.<secret>`."}};
    schemes["hmacSignature"] = Json{{"type", "apiKey"},
                                    {"in", "header"},
                                    {"name", "Authorization"},
                                    {"description",
                                     "A request signature: `Authorization: CL-HMAC-SHA256 ...` "
                                     "with the x-cl-* signature headers."}};
    components["securitySchemes"] = schemes;
    components["parameters"]["IdempotencyKey"] = Json{
        {"name", "Idempotency-Key"},
        {"in", "header"},
        {"required", false},
        {"description",
         "Makes the create safe to retry: a retry with the same key and request replays the first "
         "answer "
         "(header `Idempotent-Replayed: true`); the same key with another request is 422 "
         "idempotency_key_reused; while the first call runs, 409 idempotency_request_in_progress."},
        {"schema", Json{{"type", "string"}, {"minLength", 1}, {"maxLength", 255}}}};
    Json responses;
    for (const auto& [status, name, text] : problem_responses()) {
      (void)status;
      responses[name] = Json{
          {"description", text},
          {"content", Json{{"application/problem+json",
                            Json{{"schema", Json{{"$ref", "#/components/schemas/Problem"}}}}}}}};
    }
    components["responses"] = responses;
    Json schemas;
    schemas["Problem"] = problem_schema();
    for (auto& [name, schema] : schemas_)
      schemas[name] = schema;
    components["schemas"] = schemas;
    doc["components"] = components;
    return doc;
  }

 private:
  struct ProblemResponse {
    int status;
    const char* name;
    const char* text;
  };
  static std::vector<ProblemResponse> problem_responses() {
    return {
        {400, "BadRequest", "The request is malformed or a field is invalid (`field` names it)."},
        {401, "Unauthenticated", "Missing or invalid credentials."},
        {403, "PermissionDenied", "The key may not do this."},
        {404, "NotFound", "No such resource (or route)."},
        {409, "Conflict",
         "The resource already exists, or a request with this Idempotency-Key is in progress."},
        {413, "PayloadTooLarge", "The request body is over the limit."},
        {415, "UnsupportedMediaType", "The upload's Content-Type is not accepted."},
        {422, "UnprocessableEntity",
         "A precondition failed (e.g. Idempotency-Key reused for another request)."},
        {429, "TooManyRequests", "Over the request quota; retry after `Retry-After` seconds."},
        {500, "InternalError", "The server failed; retry later and report the request_id."},
        {503, "Unavailable", "A dependency is unavailable; retry after `Retry-After` seconds."},
    };
  }

  static Json problem_schema() {
    Json props;
    props["type"] = Json{{"type", "string"}, {"description", "urn:counterlink:problem:<code>"}};
    props["title"] = Json{{"type", "string"}};
    props["status"] = Json{{"type", "integer"}, {"format", "int32"}};
    props["detail"] = Json{{"type", "string"}};
    props["code"] = Json{{"type", "string"}, {"description", "Stable snake_case error code."}};
    props["field"] = Json{{"type", "string"},
                          {"description", "The offending request field, when there is one."}};
    props["request_id"] = Json{{"type", "string"}};
    props["retry_after_s"] = Json{{"type", "integer"}, {"format", "int32"}};
    return Json{{"type", "object"},
                {"description", "An RFC 9457 problem document."},
                {"required", Json::array({"type", "title", "status", "code"})},
                {"properties", props}};
  }

  static std::string schema_name(const std::string& full_name) { return full_name; }

  static constexpr const char* kEventDataSchema = "x-event-data-schema";
  static constexpr std::string_view kSchemaRefPrefix = "#/components/schemas/";

  // The component schemas `v` refers to, not looking inside x- extensions
  // (OpenAPI tools do not either).
  static void collect_refs(const Json& v, std::set<std::string>& out) {
    if (v.is_object()) {
      for (auto it = v.begin(); it != v.end(); ++it) {
        if (it.key().rfind("x-", 0) == 0) continue;
        if (it.key() == "$ref" && it.value().is_string()) {
          const auto& ref = it.value().get_ref<const std::string&>();
          if (ref.rfind(kSchemaRefPrefix, 0) == 0) out.insert(ref.substr(kSchemaRefPrefix.size()));
        } else {
          collect_refs(it.value(), out);
        }
      }
    } else if (v.is_array()) {
      for (const auto& item : v)
        collect_refs(item, out);
    }
  }

  // Replaces refs to schemas outside `used` by the schemas themselves.
  // `depth` stops a recursive message (its innermost ref stays).
  void inline_unused(Json& v, const std::set<std::string>& used, std::set<std::string>& inlined,
                     std::set<std::string>& kept, int depth) {
    if (v.is_array()) {
      for (auto& item : v)
        inline_unused(item, used, inlined, kept, depth);
      return;
    }
    if (!v.is_object()) return;
    if (v.contains("$ref") && v["$ref"].is_string()) {
      const auto& ref = v["$ref"].get_ref<const std::string&>();
      if (ref.rfind(kSchemaRefPrefix, 0) != 0) return;
      std::string name = ref.substr(kSchemaRefPrefix.size());
      if (used.count(name) || !schemas_.count(name)) return;
      if (depth == 0) {
        kept.insert(name);
        return;
      }
      v = schemas_[name];
      inlined.insert(name);
      return inline_unused(v, used, inlined, kept, depth - 1);
    }
    for (auto it = v.begin(); it != v.end(); ++it)
      inline_unused(it.value(), used, inlined, kept, depth);
  }

  // A message that is only ever streamed would be referenced only from
  // x-event-data-schema, which lint tools do not follow (Redocly's
  // no-unused-components fails on it): such schemas are written inline there
  // instead of as components.
  void inline_stream_only_schemas() {
    std::set<std::string> used;
    collect_refs(paths_, used);
    std::vector<std::string> pending(used.begin(), used.end());
    while (!pending.empty()) {
      auto it = schemas_.find(pending.back());
      pending.pop_back();
      if (it == schemas_.end()) continue;
      std::set<std::string> refs;
      collect_refs(it->second, refs);
      for (const auto& r : refs) {
        if (used.insert(r).second) pending.push_back(r);
      }
    }
    std::set<std::string> inlined;
    std::set<std::string> kept;
    for (auto& [path, item] : paths_.items()) {
      for (auto& [verb, op] : item.items()) {
        Json::json_pointer at("/responses/200/content/text~1event-stream/" +
                              std::string(kEventDataSchema));
        if (op.contains(at)) inline_unused(op[at], used, inlined, kept, 8);
      }
    }
    for (const auto& name : inlined) {
      if (!kept.count(name)) schemas_.erase(name);
    }
  }

  static Json ref(const std::string& full_name) {
    return Json{{"$ref", "#/components/schemas/" + schema_name(full_name)}};
  }

  Json enum_schema(const gp::EnumDescriptor& e) {
    std::string name = schema_name(e.full_name());
    if (!schemas_.count(name)) {
      Json values = Json::array();
      for (int i = 0; i < e.value_count(); ++i)
        values.push_back(e.value(i)->name());
      Json s{{"type", "string"}, {"enum", values}};
      std::string text = comments_.of(e);
      if (!text.empty()) s["description"] = text;
      schemas_[name] = s;
    }
    return ref(e.full_name());
  }

  // The JSON schema of a message type: well-known types inline, others as a
  // component.
  Json message_schema(const gp::Descriptor& d) {
    const std::string& n = d.full_name();
    if (n == "google.protobuf.Timestamp") return Json{{"type", "string"}, {"format", "date-time"}};
    if (n == "google.protobuf.Duration") {
      return Json{{"type", "string"}, {"pattern", "^-?[0-9]+(\\.[0-9]+)?s$"}, {"example", "1.5s"}};
    }
    if (n == "google.protobuf.Empty") return Json{{"type", "object"}};
    if (n == "google.protobuf.Struct")
      return Json{{"type", "object"}, {"additionalProperties", true}};
    if (n == "google.protobuf.Value") return Json::object();
    if (n == "google.protobuf.ListValue") return Json{{"type", "array"}, {"items", Json::object()}};
    if (n == "google.protobuf.FieldMask") return Json{{"type", "string"}};
    if (n == "google.protobuf.Any") {
      return Json{{"type", "object"},
                  {"required", Json::array({"@type"})},
                  {"properties", Json{{"@type", Json{{"type", "string"}}}}},
                  {"additionalProperties", true}};
    }
    if (d.file()->name() == "google/protobuf/wrappers.proto") {
      Json s = scalar_schema(*d.FindFieldByName("value"));
      s["nullable"] = true;
      return s;
    }
    std::string name = schema_name(n);
    if (!schemas_.count(name)) {
      schemas_[name] = Json::object();  // placeholder: breaks recursion
      Json s{{"type", "object"}};
      std::string text = comments_.of(d);
      std::string oneofs;
      for (int i = 0; i < d.real_oneof_decl_count(); ++i) {
        const auto* o = d.oneof_decl(i);
        std::string names;
        for (int f = 0; f < o->field_count(); ++f)
          names += (f ? ", " : "") + o->field(f)->name();
        oneofs += "\n\nOneof `" + o->name() + "`: at most one of " + names + " may be set.";
      }
      text += oneofs;
      while (!text.empty() && text.front() == '\n')
        text.erase(0, 1);
      if (!text.empty()) s["description"] = text;
      Json props = Json::object();
      for (int i = 0; i < d.field_count(); ++i)
        props[d.field(i)->name()] = field_schema(*d.field(i));
      s["properties"] = props;
      schemas_[name] = s;
    }
    return ref(n);
  }

  Json scalar_schema(const gp::FieldDescriptor& f) {
    using T = gp::FieldDescriptor;
    switch (f.type()) {
      case T::TYPE_DOUBLE:
        return Json{{"type", "number"}, {"format", "double"}};
      case T::TYPE_FLOAT:
        return Json{{"type", "number"}, {"format", "float"}};
      case T::TYPE_INT32:
      case T::TYPE_SINT32:
      case T::TYPE_SFIXED32:
        return Json{{"type", "integer"}, {"format", "int32"}};
      case T::TYPE_UINT32:
      case T::TYPE_FIXED32:
        return Json{
            {"type", "integer"}, {"format", "int64"}, {"minimum", 0}, {"maximum", 4294967295LL}};
      case T::TYPE_INT64:
      case T::TYPE_SINT64:
      case T::TYPE_SFIXED64:
        return Json{{"type", "string"},
                    {"format", "int64"},
                    {"description", "A 64-bit integer as a string."}};
      case T::TYPE_UINT64:
      case T::TYPE_FIXED64:
        return Json{{"type", "string"},
                    {"format", "uint64"},
                    {"description", "A 64-bit integer as a string."}};
      case T::TYPE_BOOL:
        return Json{{"type", "boolean"}};
      case T::TYPE_STRING:
        return Json{{"type", "string"}};
      case T::TYPE_BYTES:
        return Json{{"type", "string"}, {"format", "byte"}};
      case T::TYPE_ENUM:
        return enum_schema(*f.enum_type());
      case T::TYPE_MESSAGE:
      case T::TYPE_GROUP:
        return message_schema(*f.message_type());
    }
    return Json::object();
  }

  // With a description, a $ref must be wrapped (OpenAPI 3.0 ignores siblings
  // of $ref).
  static Json describe(Json schema, const std::string& text) {
    if (text.empty()) return schema;
    if (schema.contains("$ref"))
      return Json{{"allOf", Json::array({schema})}, {"description", text}};
    if (schema.contains("description")) {
      schema["description"] = text + "\n\n" + schema["description"].get<std::string>();
    } else {
      schema["description"] = text;
    }
    return schema;
  }

  Json field_schema(const gp::FieldDescriptor& f) {
    std::string text = comments_.of(f);
    if (f.real_containing_oneof()) {
      text += std::string(text.empty() ? "" : "\n\n") + "Part of oneof `" +
              f.real_containing_oneof()->name() + "`.";
    }
    if (f.is_map()) {
      Json s{{"type", "object"},
             {"additionalProperties", scalar_schema(*f.message_type()->map_value())}};
      return describe(s, text);
    }
    if (f.is_repeated())
      return describe(Json{{"type", "array"}, {"items", scalar_schema(f)}}, text);
    return describe(scalar_schema(f), text);
  }

  // Request fields that can travel in the query string: scalars, enums,
  // repeated scalars and string-form well-known types, at the top level.
  static bool query_capable(const gp::FieldDescriptor& f) {
    if (f.is_map()) return false;
    if (f.cpp_type() != gp::FieldDescriptor::CPPTYPE_MESSAGE) return true;
    const std::string& n = f.message_type()->full_name();
    return !f.is_repeated() &&
           (n == "google.protobuf.Timestamp" || n == "google.protobuf.Duration" ||
            n == "google.protobuf.FieldMask" ||
            f.message_type()->file()->name() == "google/protobuf/wrappers.proto");
  }

  static const gp::FieldDescriptor* field_at(const gp::Descriptor& root, const std::string& path) {
    const gp::Descriptor* d = &root;
    const gp::FieldDescriptor* f = nullptr;
    size_t start = 0;
    while (d) {
      size_t dot = path.find('.', start);
      f = d->FindFieldByName(
          path.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
      if (!f || dot == std::string::npos) return f;
      d = f->message_type();
      start = dot + 1;
    }
    return nullptr;
  }

  void add_operation(const MethodInfo& m, const HttpBinding& b, size_t index) {
    const gp::MethodDescriptor& method = *m.descriptor;
    const gp::Descriptor& request = *method.input_type();
    std::string text = comments_.of(method);

    Json op;
    op["tags"] = Json::array({method.service()->name()});
    op["summary"] = text.empty() ? words(method.name()) : first_sentence(text);
    std::string description = text == first_sentence(text) ? "" : text;
    if (m.admin_only)
      description += std::string(description.empty() ? "" : "\n\n") + "Operator keys only.";
    if (!description.empty()) op["description"] = description;
    op["operationId"] = method.service()->name() + "_" + method.name() +
                        (index ? "_" + std::to_string(index + 1) : "");

    // Templates that differ only in variable names ("/things/{thing_id}" and
    // "/things/{thing.id}") are one path to a client: file both under the
    // first one's key, naming the parameters as it does.
    std::string key = b.path.openapi_path();
    std::vector<std::string> names;
    for (const auto& var : b.path.variables())
      names.push_back(var.field_path);
    std::string shape = std::regex_replace(key, std::regex(R"(\{[^}]*\})"), "{}");
    auto [seen, fresh] = shapes_.try_emplace(shape, key, names);
    if (!fresh) {
      key = seen->second.first;
      names = seen->second.second;
    }

    Json params = Json::array();
    std::set<std::string> bound;
    for (size_t v = 0; v < b.path.variables().size(); ++v) {
      const auto& var = b.path.variables()[v];
      bound.insert(var.field_path.substr(0, var.field_path.find('.')));
      const gp::FieldDescriptor* f = field_at(request, var.field_path);
      Json p{{"name", names[v]}, {"in", "path"}, {"required", true}};
      std::string ftext = f ? comments_.of(*f) : "";
      if (names[v] != var.field_path) {
        ftext += std::string(ftext.empty() ? "" : "\n\n") + "Sets request field `" +
                 var.field_path + "`.";
      }
      if (!ftext.empty()) p["description"] = ftext;
      p["schema"] = f ? scalar_schema(*f) : Json{{"type", "string"}};
      params.push_back(p);
    }
    bool upload = !m.upload_media_types.empty();
    if (b.body != "*") {
      for (int i = 0; i < request.field_count(); ++i) {
        const gp::FieldDescriptor& f = *request.field(i);
        if (bound.count(f.name()) || f.name() == b.body) continue;
        if (upload && (f.name() == "content_type" || f.name() == "data")) continue;
        if (!query_capable(f)) continue;
        Json p{{"name", f.name()}, {"in", "query"}, {"required", false}};
        std::string ftext = comments_.of(f);
        if (!ftext.empty()) p["description"] = ftext;
        p["schema"] = f.is_repeated() ? Json{{"type", "array"}, {"items", scalar_schema(f)}}
                                      : scalar_schema(f);
        if (f.is_repeated()) {
          p["style"] = "form";
          p["explode"] = true;
        }
        params.push_back(p);
      }
    }
    if (m.idempotent_create)
      params.push_back(Json{{"$ref", "#/components/parameters/IdempotencyKey"}});
    if (m.server_stream) {
      params.push_back(
          Json{{"name", "Last-Event-ID"},
               {"in", "header"},
               {"required", false},
               {"description",
                "Resume the stream after this event: the `id` of the last event received. "
                "EventSource clients send it when they reconnect."},
               {"schema", Json{{"type", "string"}}}});
    }
    if (!params.empty()) op["parameters"] = params;

    if (upload) {
      Json content;
      for (const auto& type : m.upload_media_types)
        content[type] = Json{{"schema", Json{{"type", "string"}}}};
      op["requestBody"] =
          Json{{"required", true},
               {"description", "The data, streamed (chunked transfer encoding is fine)."},
               {"content", content}};
    } else if (!b.body.empty()) {
      Json schema;
      if (b.body == "*") {
        schema = message_schema(request);
      } else {
        const gp::FieldDescriptor* f = request.FindFieldByName(b.body);
        schema = f->is_repeated() || f->is_map() ? field_schema(*f) : scalar_schema(*f);
      }
      op["requestBody"] = Json{{"required", true},
                               {"content", Json{{"application/json", Json{{"schema", schema}}}}}};
    }

    Json responses;
    Json ok{{"description", "OK"}};
    if (m.server_stream) {
      // OpenAPI 3.0 cannot type the events of a stream: the body is a string,
      // and x-event-data-schema names the schema of each event's data.
      const std::string& name = method.output_type()->full_name();
      ok["description"] =
          "A stream of server-sent events, one per `" + name +
          "`; the connection stays open until the server ends it or the client leaves.";
      const std::string format =
          "Server-sent events. Each event: `id:` the resume point (send it back as "
          "Last-Event-ID), `event:` the event name (when there is one), `data:` the JSON of " +
          name +
          " on one line (its schema: x-event-data-schema). Lines starting with `:` are "
          "keep-alive comments.";
      Json media{{"schema", Json{{"type", "string"}, {"description", format}}},
                 {kEventDataSchema, message_schema(*method.output_type())}};
      ok["content"] = Json{{"text/event-stream", media}};
    } else {
      ok["content"] =
          Json{{"application/json", Json{{"schema", message_schema(*method.output_type())}}}};
    }
    if (m.idempotent_create) {
      ok["headers"]["Idempotent-Replayed"] =
          Json{{"description",
                "`true` when this is the stored answer to an earlier call with the same key."},
               {"schema", Json{{"type", "string"}, {"enum", Json::array({"true"})}}}};
    }
    responses["200"] = ok;
    std::set<int> statuses = {400, 401, 403, 404, 429, 500, 503};
    if (method.name().rfind("Create", 0) == 0 || m.idempotent_create) statuses.insert(409);
    if (m.idempotent_create) statuses.insert(422);
    if (upload) statuses.insert({413, 415, 422});
    if (!b.body.empty()) statuses.insert(413);
    for (const auto& r : problem_responses()) {
      if (!statuses.count(r.status)) continue;
      responses[std::to_string(r.status)] =
          Json{{"$ref", std::string("#/components/responses/") + r.name}};
    }
    op["responses"] = responses;

    std::string verb = b.http_method;
    std::transform(verb.begin(), verb.end(), verb.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    paths_[key][verb] = op;
  }

  const OpenApiInfo& info_;
  Comments comments_;
  std::set<const gp::ServiceDescriptor*> services_;
  // path shape ("/v1/things/{}") -> first path key and its parameter names
  std::map<std::string, std::pair<std::string, std::vector<std::string>>> shapes_;
  Json paths_ = Json::object();
  std::map<std::string, Json> schemas_;
};

// ---- YAML (a JSON document needs only block maps, sequences and scalars) ---

bool plain_safe(const std::string& s, bool key) {
  static const std::regex kPlain(R"(^[A-Za-z_/$][A-Za-z0-9_./$#{}:-]*$)");
  static const std::set<std::string> kReserved = {"true", "false", "null", "yes", "no",
                                                  "on",   "off",   "y",    "n",   "~"};
  if (s.empty() || !std::regex_match(s, kPlain)) return false;
  std::string lower = s;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (kReserved.count(lower)) return false;
  // "{x}" starts a flow map, ": " / trailing ':' would read as a key.
  if (s.find('{') != std::string::npos && s[0] != '/') return false;
  if (s.back() == ':' || s.find(": ") != std::string::npos) return false;
  if (s.find('#') != std::string::npos) return false;
  (void)key;
  return true;
}

std::string yaml_scalar(const Json& v, bool key = false) {
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    return plain_safe(s, key) ? s : Json(s).dump(-1, ' ', false, Json::error_handler_t::replace);
  }
  return v.dump();
}

void yaml(const Json& v, int indent, std::string& out) {
  std::string pad(static_cast<size_t>(indent), ' ');
  if (v.is_object()) {
    for (auto it = v.begin(); it != v.end(); ++it) {
      out += pad + yaml_scalar(Json(it.key()), true) + ":";
      const Json& child = it.value();
      if ((child.is_object() || child.is_array()) && !child.empty()) {
        out += "\n";
        yaml(child, indent + 2, out);
      } else {
        out += " " +
               (child.is_object()  ? std::string("{}")
                : child.is_array() ? "[]"
                                   : yaml_scalar(child)) +
               "\n";
      }
    }
  } else if (v.is_array()) {
    for (const auto& item : v) {
      if ((item.is_object() || item.is_array()) && !item.empty()) {
        std::string nested;
        yaml(item, indent + 2, nested);
        // "- " replaces the first two spaces of the first line.
        out += pad + "- " + nested.substr(static_cast<size_t>(indent) + 2);
      } else {
        out += pad + "- " +
               (item.is_object()  ? std::string("{}")
                : item.is_array() ? "[]"
                                  : yaml_scalar(item)) +
               "\n";
      }
    }
  }
}

std::string render(const Json& doc, OpenApiFormat format) {
  if (format == OpenApiFormat::kJson)
    return doc.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
  std::string out = "# Generated from proto/ by counterlink; do not edit.\n";
  yaml(doc, 0, out);
  return out;
}

}  // namespace

std::string openapi_document(const std::vector<std::string>& services, OpenApiFormat format,
                             const OpenApiInfo& info, std::string_view descriptor_set) {
  Generator gen(info, descriptor_set);
  const gp::DescriptorPool* pool = gp::DescriptorPool::generated_pool();
  for (const auto& name : services) {
    const gp::ServiceDescriptor* service = pool->FindServiceByName(name);
    if (!service) {
      throw std::runtime_error("openapi: service " + name +
                               " is not in the generated descriptor pool; link its proto library");
    }
    for (int i = 0; i < service->method_count(); ++i)
      gen.add_method(*service->method(i));
  }
  return render(gen.document(), format);
}

std::string openapi_document(const ServiceRegistry& registry, OpenApiFormat format,
                             const OpenApiInfo& info, std::string_view descriptor_set) {
  Generator gen(info, descriptor_set);
  const gp::DescriptorPool* pool = gp::DescriptorPool::generated_pool();
  std::vector<const gp::MethodDescriptor*> methods;
  for (const auto& name : registry.methods()) {
    const gp::MethodDescriptor* method = pool->FindMethodByName(name);
    if (!method) {
      throw std::runtime_error("openapi: method " + name +
                               " is not in the generated descriptor pool; link its proto library");
    }
    methods.push_back(method);
  }
  // Services by name, methods in declaration order (as in the .proto).
  std::sort(methods.begin(), methods.end(), [](auto* a, auto* b) {
    if (a->service() != b->service()) return a->service()->full_name() < b->service()->full_name();
    return a->index() < b->index();
  });
  for (const auto* method : methods)
    gen.add_method(*method);
  return render(gen.document(), format);
}

}  // namespace counterlink::api
