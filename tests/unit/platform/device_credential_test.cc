#include "counterlink/platform/device_credential.h"

#include <gtest/gtest.h>

namespace counterlink::platform {
namespace {

// The worked example of docs/device-protocol.md, "Connecting". If this test
// changes, the document must change with it.
constexpr const char* kDocDeviceId = "dv_01HV8Z3K7QW2XJ5N6M4R9T0ABC";
constexpr const char* kDocSecret = "Xq7rT2mPz9LkW4vB8nC3sD6fG1hJ5yKa";
constexpr int64_t kDocTimestamp = 1718000000000;

TEST(DeviceCredential, ReproducesTheDocumentedWorkedExample) {
  EXPECT_EQ(canonical_string(kDocDeviceId, kDocDeviceId, "1718000000000"),
            "clientIddv_01HV8Z3K7QW2XJ5N6M4R9T0ABCdeviceIddv_01HV8Z3K7QW2XJ5N6M4R9T0ABC"
            "timestamp1718000000000");
  DeviceCredential c = make_device_credential(kDocDeviceId, kDocSecret, kDocTimestamp);
  EXPECT_EQ(c.client_id, "dv_01HV8Z3K7QW2XJ5N6M4R9T0ABC");
  EXPECT_EQ(c.username, "dv_01HV8Z3K7QW2XJ5N6M4R9T0ABC;1718000000000;hmacsha256;v1");
  EXPECT_EQ(c.password, "b2ed92fac716e645d350a02b2342c85498dc3639efe1e7deb5ca2ac04833ff0e");
}

TEST(DeviceCredential, ParsesAWellFormedUsername) {
  auto u = parse_device_username("dv_abc;1718000000000;hmacsha256;v1");
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->device_id, "dv_abc");
  EXPECT_EQ(u->timestamp_ms, 1718000000000);
  EXPECT_EQ(u->timestamp_text, "1718000000000");
}

TEST(DeviceCredential, RefusesMalformedUsernames) {
  for (const char* bad : {
           "",
           "dv_abc",
           "dv_abc;1718000000000;hmacsha256",
           "dv_abc;1718000000000;hmacsha256;v1;extra",
           "dv_abc;1718000000000;hmacsha1;v1",
           "dv_abc;1718000000000;hmacsha256;v2",
           "dv_abc;01718000000000;hmacsha256;v1",
           "dv_abc;17180000x0000;hmacsha256;v1",
           "dv_abc;;hmacsha256;v1",
           "dv_abc;1234567890123456;hmacsha256;v1",
           "dv_a/b;1718000000000;hmacsha256;v1",
           "dv_;1718000000000;hmacsha256;v1",
           "abc;1718000000000;hmacsha256;v1",
       }) {
    EXPECT_FALSE(parse_device_username(bad).has_value()) << bad;
  }
}

TEST(DeviceCredential, DeviceIdsExcludeTopicSpecialCharacters) {
  EXPECT_TRUE(is_device_id("dv_01HV8Z3K7QW2XJ5N6M4R9T0ABC"));
  EXPECT_TRUE(is_device_id("dv_a-b_c"));
  EXPECT_FALSE(is_device_id("dv_a+b"));
  EXPECT_FALSE(is_device_id("dv_a#"));
  EXPECT_FALSE(is_device_id("dv_a/b"));
  EXPECT_FALSE(is_device_id("dv_"));
  EXPECT_FALSE(is_device_id("sp-001"));
  EXPECT_FALSE(is_device_id("dv_" + std::string(62, 'a')));
  EXPECT_TRUE(is_device_id("dv_" + std::string(61, 'a')));
}

TEST(DeviceCredential, SignatureDependsOnEveryField) {
  const std::string base = sign_credential("secret", "dv_a", "dv_a", "1000");
  EXPECT_NE(base, sign_credential("secreT", "dv_a", "dv_a", "1000"));
  EXPECT_NE(base, sign_credential("secret", "dv_b", "dv_a", "1000"));
  EXPECT_NE(base, sign_credential("secret", "dv_a", "dv_b", "1000"));
  EXPECT_NE(base, sign_credential("secret", "dv_a", "dv_a", "1001"));
  EXPECT_EQ(base.size(), 64u);
}

}  // namespace
}  // namespace counterlink::platform
