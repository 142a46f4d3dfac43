// google.api.http path templates: parsing and matching.
#include "path_template.h"

#include <gtest/gtest.h>

namespace counterlink::api {
namespace {

PathTemplate parse(std::string_view pattern) {
  std::string error;
  auto t = PathTemplate::parse(pattern, &error);
  EXPECT_TRUE(t.has_value()) << error;
  return t ? *t : *PathTemplate::parse("/x", nullptr);
}

TEST(PathTemplate, MatchesLiteralsAndBindsVariables) {
  auto t = parse("/v1/devices/{device_id}");
  PathTemplate::Bindings b;
  ASSERT_TRUE(t.match("/v1/devices/dv_1", b));
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].first, "device_id");
  EXPECT_EQ(b[0].second, "dv_1");
  EXPECT_FALSE(t.match("/v1/devices", b));
  EXPECT_FALSE(t.match("/v1/devices/", b));
  EXPECT_FALSE(t.match("/v1/devices/a/b", b));
  EXPECT_FALSE(t.match("/v2/devices/a", b));
}

TEST(PathTemplate, CustomVerbMustMatchExactly) {
  auto t = parse("/v1/devices/{device_id}:rotateSecret");
  EXPECT_EQ(t.verb(), "rotateSecret");
  PathTemplate::Bindings b;
  ASSERT_TRUE(t.match("/v1/devices/d1:rotateSecret", b));
  EXPECT_EQ(b[0].second, "d1");
  EXPECT_FALSE(t.match("/v1/devices/d1", b));
  EXPECT_FALSE(t.match("/v1/devices/d1:disable", b));
  EXPECT_FALSE(parse("/v1/devices/{device_id}").match("/v1/devices/d1:rotateSecret", b));
  EXPECT_TRUE(parse("/v1/devices:import").match("/v1/devices:import", b));
}

TEST(PathTemplate, NestedFieldPathsAndMultiSegmentVariables) {
  auto t = parse("/v1/{name=tenants/*/devices/*}");
  PathTemplate::Bindings b;
  ASSERT_TRUE(t.match("/v1/tenants/t1/devices/d2", b));
  EXPECT_EQ(b[0].first, "name");
  EXPECT_EQ(b[0].second, "tenants/t1/devices/d2");
  EXPECT_FALSE(t.match("/v1/tenants/t1/merchants/d2", b));
  auto nested = parse("/v1/things/{thing.id}");
  ASSERT_TRUE(nested.match("/v1/things/x", b));
  EXPECT_EQ(b[0].first, "thing.id");
  auto tail = parse("/v1/files/{path=**}");
  ASSERT_TRUE(tail.match("/v1/files/a/b/c", b));
  EXPECT_EQ(b[0].second, "a/b/c");
}

TEST(PathTemplate, VariablesArePercentDecodedAfterSplitting) {
  PathTemplate::Bindings b;
  ASSERT_TRUE(parse("/v1/things/{id}").match("/v1/things/a%2Fb%3Ac%20d", b));
  EXPECT_EQ(b[0].second, "a/b:c d");
  EXPECT_FALSE(parse("/v1/things/{id}").match("/v1/things/bad%zz", b));
}

TEST(PathTemplate, MultiSegmentVariablesKeepEncodedSlashes) {
  // google.api.http: only single-segment variables decode %2F; in a
  // multi-segment variable a '/' must mean a segment boundary.
  PathTemplate::Bindings b;
  ASSERT_TRUE(parse("/v1/files/{path=**}").match("/v1/files/a%2Fb/c%20d", b));
  EXPECT_EQ(b[0].second, "a%2Fb/c d");
  ASSERT_TRUE(parse("/v1/{name=tenants/*/devices/*}").match("/v1/tenants/t%2f1/devices/d", b));
  EXPECT_EQ(b[0].second, "tenants/t%2f1/devices/d");
}

TEST(PathTemplate, RejectsInvalidTemplates) {
  std::string error;
  EXPECT_FALSE(PathTemplate::parse("v1/x", &error));
  EXPECT_FALSE(PathTemplate::parse("/v1/{unclosed", &error));
  EXPECT_FALSE(PathTemplate::parse("/v1/**/x", &error));
  EXPECT_FALSE(PathTemplate::parse("/v1/{bad-name}", &error));
  EXPECT_FALSE(error.empty());
}

TEST(PathTemplate, OpenApiPathDropsVariablePatterns) {
  EXPECT_EQ(parse("/v1/{name=tenants/*}/devices").openapi_path(), "/v1/{name}/devices");
  EXPECT_EQ(parse("/v1/devices/{device_id}:rotateSecret").openapi_path(),
            "/v1/devices/{device_id}:rotateSecret");
  EXPECT_GT(parse("/v1/devices/search").specificity(), parse("/v1/devices/{id}").specificity());
}

}  // namespace
}  // namespace counterlink::api
