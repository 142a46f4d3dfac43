// The OpenAPI document generated from the test proto's descriptors: every
// route, parameter, body and problem response, the proto3 JSON schema
// mapping, and that the YAML form says the same as the JSON form.
#include "counterlink/api/openapi.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "api_test_support.h"
#include "cl_api_test_proto_descriptor_set.h"

namespace counterlink::api {
namespace {

using nlohmann::json;

class OpenApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::register_thing_service(registry_, std::make_shared<testing::ThingServiceState>());
    doc_ = json::parse(openapi_document(registry_, OpenApiFormat::kJson, info_,
                                        proto_gen::cl_api_test_proto_descriptor_set()));
  }

  const json& op(const std::string& path, const std::string& verb) {
    EXPECT_TRUE(doc_["paths"].contains(path)) << path;
    EXPECT_TRUE(doc_["paths"][path].contains(verb)) << path << " " << verb;
    return doc_["paths"][path][verb];
  }

  static const json* param(const json& operation, const std::string& name) {
    for (const auto& p : operation["parameters"]) {
      if (p.value("name", "") == name) return &p;
    }
    return nullptr;
  }

  const json& schema(const std::string& name) { return doc_["components"]["schemas"][name]; }

  ServiceRegistry registry_;
  OpenApiInfo info_;
  json doc_;
};

TEST_F(OpenApiTest, EveryHttpBindingIsAnOperation) {
  EXPECT_EQ(doc_["openapi"], "3.0.3");
  EXPECT_EQ(op("/v1/things/{thing_id}", "get")["operationId"], "ThingService_GetThing");
  EXPECT_EQ(op("/v1/things", "get")["operationId"], "ThingService_ListThings");
  EXPECT_EQ(op("/v1/shelves/{shelf}/things", "get")["operationId"], "ThingService_ListThings_2");
  EXPECT_EQ(op("/v1/things", "post")["operationId"], "ThingService_CreateThing");
  EXPECT_EQ(op("/v1/things/{thing_id}", "patch")["operationId"], "ThingService_UpdateThing");
  EXPECT_EQ(op("/v1/things/{thing_id}:rotateSecret", "post")["operationId"],
            "ThingService_RotateSecret");
  EXPECT_EQ(op("/v1/things/{thing_id}", "delete")["operationId"], "ThingService_DeleteThing");
  EXPECT_EQ(op("/v1/things:import", "post")["operationId"], "ThingService_ImportThings");
  EXPECT_EQ(op("/v1/shelves/{shelf}/events", "get")["operationId"], "ThingService_WatchShelf");
  size_t operations = 0;
  for (const auto& [path, item] : doc_["paths"].items())
    operations += item.size();
  EXPECT_EQ(operations, 9u);
  EXPECT_EQ(op("/v1/things", "get")["tags"], json::array({"ThingService"}));
}

TEST_F(OpenApiTest, PathAndQueryParametersComeFromTheRequestFields) {
  const json& get = op("/v1/things/{thing_id}", "get");
  ASSERT_NE(param(get, "thing_id"), nullptr);
  EXPECT_EQ((*param(get, "thing_id"))["in"], "path");
  EXPECT_EQ((*param(get, "fail_with_status"))["in"], "query");
  const json& list = op("/v1/things", "get");
  EXPECT_EQ((*param(list, "tags"))["schema"]["type"], "array");
  EXPECT_EQ((*param(list, "state"))["schema"]["$ref"],
            "#/components/schemas/counterlink.test.v1.Thing.State");
  EXPECT_EQ((*param(list, "page_size"))["schema"]["format"], "int32");
  // The nested path variable is filed under the same path, named as there.
  const json& patch = op("/v1/things/{thing_id}", "patch");
  EXPECT_NE((*param(patch, "thing_id"))["description"].get<std::string>().find("thing.id"),
            std::string::npos);
  // Body "*": no query parameters.
  const json& rotate = op("/v1/things/{thing_id}:rotateSecret", "post");
  EXPECT_EQ(param(rotate, "length"), nullptr);
}

TEST_F(OpenApiTest, RequestBodiesFollowTheBodyBinding) {
  EXPECT_EQ(
      op("/v1/things", "post")["requestBody"]["content"]["application/json"]["schema"]["$ref"],
      "#/components/schemas/counterlink.test.v1.Thing");
  EXPECT_EQ(op("/v1/things/{thing_id}:rotateSecret",
               "post")["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/counterlink.test.v1.RotateSecretRequest");
  EXPECT_FALSE(op("/v1/things/{thing_id}", "get").contains("requestBody"));
  const json& upload = op("/v1/things:import", "post");
  EXPECT_TRUE(upload["requestBody"]["content"].contains("text/csv"));
  EXPECT_TRUE(upload["requestBody"]["content"].contains("application/x-ndjson"));
  EXPECT_NE(param(upload, "batch"), nullptr);
  EXPECT_EQ(param(upload, "data"), nullptr);
  EXPECT_EQ(param(upload, "content_type"), nullptr);
}

TEST_F(OpenApiTest, IdempotentCreateTakesTheIdempotencyKeyHeader) {
  const json& create = op("/v1/things", "post");
  bool has_key = false;
  for (const auto& p : create["parameters"])
    has_key |= p.value("$ref", "") == "#/components/parameters/IdempotencyKey";
  EXPECT_TRUE(has_key);
  EXPECT_EQ(doc_["components"]["parameters"]["IdempotencyKey"]["in"], "header");
  EXPECT_TRUE(create["responses"].contains("422"));
  EXPECT_FALSE(op("/v1/things/{thing_id}", "get")["parameters"].dump().find("IdempotencyKey") !=
               std::string::npos);
}

TEST_F(OpenApiTest, ServerStreamAnswersServerSentEventsOfItsMessage) {
  const json& watch = op("/v1/shelves/{shelf}/events", "get");
  const json& ok = watch["responses"]["200"];
  ASSERT_TRUE(ok["content"].contains("text/event-stream")) << ok.dump();
  EXPECT_FALSE(ok["content"].contains("application/json"));
  const json& media = ok["content"]["text/event-stream"];
  EXPECT_EQ(media["schema"]["type"], "string");
  EXPECT_NE(media["schema"]["description"].get<std::string>().find(
                "JSON of counterlink.test.v1.ShelfEvent"),
            std::string::npos);
  // Only streamed: inline (a component referenced only from an x- extension
  // would be an unused component to OpenAPI tools).
  const json& data = media["x-event-data-schema"];
  EXPECT_EQ(data["description"], "One event of a shelf.");
  EXPECT_TRUE(data["properties"].contains("resumed_after"));
  EXPECT_EQ(data["properties"]["thing"]["$ref"], "#/components/schemas/counterlink.test.v1.Thing");
  EXPECT_FALSE(doc_["components"]["schemas"].contains("counterlink.test.v1.ShelfEvent"));
  const json* last = param(watch, "Last-Event-ID");
  ASSERT_NE(last, nullptr);
  EXPECT_EQ((*last)["in"], "header");
  EXPECT_EQ((*last)["required"], false);
  EXPECT_EQ((*param(watch, "shelf"))["in"], "path");
  EXPECT_EQ((*param(watch, "count"))["in"], "query");
  EXPECT_TRUE(watch["responses"].contains("503"));  // too_many_streams
  EXPECT_EQ(param(op("/v1/things/{thing_id}", "get"), "Last-Event-ID"), nullptr);
}

TEST_F(OpenApiTest, StreamedMessageWithAComponentSchemaIsReferenced) {
  registry_.add_stream("counterlink.test.v1.ThingService.WatchThings",
                       [](CallContext&, const google::protobuf::Message&, StreamSink&) -> Outcome {
                         return std::nullopt;
                       });
  doc_ = json::parse(openapi_document(registry_, OpenApiFormat::kJson, info_,
                                      proto_gen::cl_api_test_proto_descriptor_set()));
  const json& media = op("/v1/things:watch", "get")["responses"]["200"]["content"];
  EXPECT_EQ(media["text/event-stream"]["x-event-data-schema"]["$ref"],
            "#/components/schemas/counterlink.test.v1.Thing");
  EXPECT_NE(param(op("/v1/things:watch", "get"), "Last-Event-ID"), nullptr);
}

TEST_F(OpenApiTest, ErrorsAreProblemJsonResponses) {
  const json& responses = op("/v1/things/{thing_id}", "get")["responses"];
  for (const char* status : {"400", "401", "403", "404", "429", "500"}) {
    ASSERT_TRUE(responses.contains(status)) << status;
    std::string ref = responses[status]["$ref"];
    std::string name = ref.substr(ref.rfind('/') + 1);
    EXPECT_EQ(doc_["components"]["responses"][name]["content"]["application/problem+json"]["schema"]
                  ["$ref"],
              "#/components/schemas/Problem");
  }
  EXPECT_TRUE(schema("Problem")["properties"].contains("code"));
  EXPECT_TRUE(doc_["components"]["securitySchemes"].contains("bearerAuth"));
  EXPECT_EQ(doc_["components"]["securitySchemes"]["hmacSignature"]["type"], "apiKey");
}

TEST_F(OpenApiTest, SchemasFollowTheProto3JsonMapping) {
  const json& thing = schema("counterlink.test.v1.Thing")["properties"];
  EXPECT_EQ(thing["size_bytes"]["type"], "string");  // int64
  EXPECT_EQ(thing["created_at"]["format"], "date-time");
  EXPECT_EQ(thing["tags"]["type"], "array");
  EXPECT_EQ(thing["labels"]["additionalProperties"]["type"], "string");
  EXPECT_EQ(schema("counterlink.test.v1.Thing.State")["enum"],
            json::array({"STATE_UNSPECIFIED", "STATE_ACTIVE", "STATE_RETIRED"}));
  EXPECT_NE(schema("counterlink.test.v1.Thing")["description"].get<std::string>().find(
                "Oneof `placement`"),
            std::string::npos);
  EXPECT_EQ(op("/v1/things/{thing_id}",
               "delete")["responses"]["200"]["content"]["application/json"]["schema"]["type"],
            "object");  // google.protobuf.Empty
}

TEST_F(OpenApiTest, ProtoCommentsBecomeDescriptions) {
  EXPECT_EQ(op("/v1/things/{thing_id}", "get")["summary"], "Returns one thing.");
  EXPECT_EQ(schema("counterlink.test.v1.Thing")["description"].get<std::string>().rfind(
                "A thing on a shelf.", 0),
            0u);
  EXPECT_EQ(schema("counterlink.test.v1.Thing")["properties"]["name"]["description"],
            "Display name, 1..64 characters.");
  EXPECT_EQ(doc_["tags"][0]["description"], "Things: the test resource.");
}

TEST_F(OpenApiTest, WithoutDescriptorSetTheDocumentIsCompleteButTerse) {
  json terse = json::parse(openapi_document(registry_, OpenApiFormat::kJson, info_));
  EXPECT_EQ(terse["paths"].size(), doc_["paths"].size());
  EXPECT_EQ(terse["paths"]["/v1/things/{thing_id}"]["get"]["summary"], "Get thing");
}

// YAML node -> JSON with every scalar as a string, for comparing structure.
json stringly(const YAML::Node& n) {
  if (n.IsMap()) {
    json j = json::object();
    for (const auto& kv : n)
      j[kv.first.as<std::string>()] = stringly(kv.second);
    return j;
  }
  if (n.IsSequence()) {
    json j = json::array();
    for (const auto& item : n)
      j.push_back(stringly(item));
    return j;
  }
  return n.IsNull() ? json("null") : json(n.as<std::string>());
}

json stringly(const json& v) {
  if (v.is_object()) {
    json j = json::object();
    for (const auto& [k, x] : v.items())
      j[k] = stringly(x);
    return j;
  }
  if (v.is_array()) {
    json j = json::array();
    for (const auto& x : v)
      j.push_back(stringly(x));
    return j;
  }
  return v.is_string() ? v : json(v.dump());
}

TEST_F(OpenApiTest, YamlFormSaysTheSameAsJson) {
  std::string yaml = openapi_document(registry_, OpenApiFormat::kYaml, info_,
                                      proto_gen::cl_api_test_proto_descriptor_set());
  YAML::Node node = YAML::Load(yaml);
  EXPECT_EQ(stringly(node), stringly(doc_));
  // Response codes stay strings (OpenAPI requires string keys).
  EXPECT_NE(yaml.find("\"200\":"), std::string::npos);
}

TEST_F(OpenApiTest, NamedServicesIncludeEveryBoundMethod) {
  json j = json::parse(
      openapi_document({"counterlink.test.v1.ThingService"}, OpenApiFormat::kJson, info_));
  // Including WatchThings, which the test registry leaves out.
  EXPECT_EQ(j["paths"].size(), doc_["paths"].size() + 1);
  EXPECT_TRUE(j["paths"].contains("/v1/things:watch"));
  EXPECT_THROW(openapi_document({"no.such.Service"}, OpenApiFormat::kJson, info_),
               std::runtime_error);
}

}  // namespace
}  // namespace counterlink::api
