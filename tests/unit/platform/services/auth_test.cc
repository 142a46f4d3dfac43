// ApiKeyAuthenticator (bearer, HMAC signatures) and TenantRateLimiter.
#include "counterlink/v1/api_keys.pb.h"

#include "fixture.h"

namespace counterlink::platform::testing {
namespace {

constexpr std::string_view kEmptySha256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

class AuthTest : public ServicesTest {
 protected:
  void SetUp() override {
    ServicesTest::SetUp();
    ApiKeyAuthOptions options;
    options.cache_ttl_ms = 0;  // every call sees the store (revocation at once)
    auth_ = std::make_unique<ApiKeyAuthenticator>(*store_, *keys_, options,
                                                  [this] { return now_ms_.load(); });
    key_ = create_key(a_, "pos");
  }

  v1::CreateApiKeyResponse create_key(const api::Principal& who, const std::string& name,
                                      const std::string& scope = "") {
    v1::CreateApiKeyRequest req;
    req.set_name(name);
    req.set_scope(scope);
    v1::CreateApiKeyResponse resp;
    auto p = call("ApiKeyService.CreateApiKey", who, req, resp);
    EXPECT_FALSE(p) << p->detail;
    return resp;
  }

  api::CallCredentials bearer(const std::string& token, bool secure = true) {
    api::CallCredentials c;
    c.authorization = "Bearer " + token;
    c.http_method = "GET";
    c.path = "/v1/devices?page_size=10";
    c.secure_transport = secure;
    return c;
  }

  // A request signed as docs/api.md describes.
  api::CallCredentials signed_request(const v1::CreateApiKeyResponse& key, int64_t ts_s,
                                      const std::string& body_sha256 = std::string(kEmptySha256)) {
    api::CallCredentials c;
    c.http_method = "POST";
    c.path = "/v1/devices?x=1";
    c.body_sha256_hex = body_sha256;
    const std::string canonical =
        "CL-HMAC-SHA256\n" + std::to_string(ts_s) + "\nPOST\n" + c.path + "\n" + body_sha256;
    const std::string signature = hex(hmac_sha256(api_signing_key(key.secret()), canonical));
    c.authorization = "CL-HMAC-SHA256 Credential=" + key.api_key().id() +
                      ", Timestamp=" + std::to_string(ts_s) + ", Signature=" + signature;
    return c;
  }

  std::unique_ptr<ApiKeyAuthenticator> auth_;
  v1::CreateApiKeyResponse key_;
};

TEST_F(AuthTest, BearerTokenYieldsTheKeysTenant) {
  api::Principal who;
  auto p = auth_->authenticate(bearer(key_.token()), who);
  ASSERT_FALSE(p) << p->detail;
  EXPECT_EQ(who.tenant_id, tenant_a_);
  EXPECT_EQ(who.key_id, key_.api_key().id());
  EXPECT_FALSE(who.admin);
  // last_used is recorded.
  EXPECT_EQ(store_->get_api_key(key_.api_key().id()).value().last_used_ms, now_ms_.load());
}

TEST_F(AuthTest, AdminKeyYieldsAnOperatorPrincipal) {
  auto admin_key = create_key(admin_, "ops", "admin");
  api::Principal who;
  ASSERT_FALSE(auth_->authenticate(bearer(admin_key.token()), who));
  EXPECT_TRUE(who.admin);
  EXPECT_EQ(who.tenant_id, "");
}

TEST_F(AuthTest, WrongSecretAndUnknownKeyGetTheSameAnswer) {
  api::Principal who;
  auto wrong = auth_->authenticate(bearer(key_.api_key().id() + ".sk_wrong"), who);
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->http_status, 401);
  EXPECT_EQ(wrong->code, "unauthenticated");
  auto unknown = auth_->authenticate(bearer("ak_00000000000000000000000000." + key_.secret()), who);
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->detail, wrong->detail);
  EXPECT_EQ(who.key_id, "");
}

TEST_F(AuthTest, MissingOrMalformedHeaderSaysWhatIsWrong) {
  api::Principal who;
  api::CallCredentials none;
  auto p = auth_->authenticate(none, who);
  ASSERT_TRUE(p);
  EXPECT_NE(p->detail.find("Missing Authorization"), std::string::npos);
  p = auth_->authenticate(bearer("no-dot"), who);
  ASSERT_TRUE(p);
  EXPECT_NE(p->detail.find("Malformed"), std::string::npos);
  api::CallCredentials basic;
  basic.authorization = "Basic dXNlcjpwYXNz";
  p = auth_->authenticate(basic, who);
  ASSERT_TRUE(p);
  EXPECT_NE(p->detail.find("Unsupported"), std::string::npos);
}

TEST_F(AuthTest, RevokedKeyIsRefused) {
  v1::RevokeApiKeyRequest revoke;
  revoke.set_key_id(key_.api_key().id());
  v1::ApiKey revoked;
  ASSERT_FALSE(call("ApiKeyService.RevokeApiKey", a_, revoke, revoked));
  api::Principal who;
  auto p = auth_->authenticate(bearer(key_.token()), who);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->http_status, 401);
  EXPECT_NE(p->detail.find("revoked"), std::string::npos);
}

TEST_F(AuthTest, RevocationTakesEffectWithinTheCacheTime) {
  ApiKeyAuthOptions options;
  options.cache_ttl_ms = 5000;
  ApiKeyAuthenticator cached(*store_, *keys_, options, [this] { return now_ms_.load(); });
  api::Principal who;
  ASSERT_FALSE(cached.authenticate(bearer(key_.token()), who));
  ASSERT_TRUE(store_->revoke_api_key(tenant_a_, key_.api_key().id(), now_ms_).ok());
  now_ms_ += 5000;
  EXPECT_TRUE(cached.authenticate(bearer(key_.token()), who));
}

TEST_F(AuthTest, DisabledTenantIsRefused) {
  v1::UpdateTenantRequest update;
  update.set_tenant_id(tenant_a_);
  update.set_disabled(true);
  v1::Tenant tenant;
  ASSERT_FALSE(call("TenantService.UpdateTenant", admin_, update, tenant));
  api::Principal who;
  auto p = auth_->authenticate(bearer(key_.token()), who);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->http_status, 403);
  EXPECT_NE(p->detail.find("disabled"), std::string::npos);
}

TEST_F(AuthTest, BearerOverPlainHttpIsRefusedUnlessAllowed) {
  api::Principal who;
  auto p = auth_->authenticate(bearer(key_.token(), /*secure=*/false), who);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->http_status, 401);
  EXPECT_NE(p->detail.find("HTTPS"), std::string::npos);
  ApiKeyAuthOptions options;
  options.allow_insecure_bearer = true;
  ApiKeyAuthenticator lax(*store_, *keys_, options, [this] { return now_ms_.load(); });
  EXPECT_FALSE(lax.authenticate(bearer(key_.token(), false), who));
}

TEST_F(AuthTest, SignedRequestIsAcceptedOverPlainHttp) {
  api::Principal who;
  auto creds = signed_request(key_, now_ms_ / 1000);
  creds.secure_transport = false;
  auto p = auth_->authenticate(creds, who);
  ASSERT_FALSE(p) << p->detail;
  EXPECT_EQ(who.tenant_id, tenant_a_);
}

TEST_F(AuthTest, SignatureOverAnotherRequestIsRefused) {
  api::Principal who;
  auto creds = signed_request(key_, now_ms_ / 1000);
  creds.path = "/v1/devices?x=2";  // what was sent differs from what was signed
  EXPECT_TRUE(auth_->authenticate(creds, who));
  creds = signed_request(key_, now_ms_ / 1000);
  creds.body_sha256_hex = std::string(64, 'a');
  EXPECT_TRUE(auth_->authenticate(creds, who));
  // Signed with another key's secret.
  auto other = create_key(a_, "other");
  creds = signed_request(key_, now_ms_ / 1000);
  auto forged = signed_request(other, now_ms_ / 1000);
  creds.authorization =
      forged.authorization.replace(forged.authorization.find(other.api_key().id()),
                                   other.api_key().id().size(), key_.api_key().id());
  auto p = auth_->authenticate(creds, who);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->http_status, 401);
}

TEST_F(AuthTest, SignatureOutsideTheWindowIsRefused) {
  api::Principal who;
  const int64_t now_s = now_ms_ / 1000;
  EXPECT_FALSE(auth_->authenticate(signed_request(key_, now_s - 299), who));
  EXPECT_FALSE(auth_->authenticate(signed_request(key_, now_s + 299), who));
  auto p = auth_->authenticate(signed_request(key_, now_s - 301), who);
  ASSERT_TRUE(p);
  EXPECT_NE(p->detail.find("seconds away"), std::string::npos);
  EXPECT_TRUE(auth_->authenticate(signed_request(key_, now_s + 301), who));
}

TEST_F(AuthTest, StreamedUploadSignsUnsignedPayload) {
  api::Principal who;
  auto creds = signed_request(key_, now_ms_ / 1000, "UNSIGNED-PAYLOAD");
  creds.body_sha256_hex = "";  // the transport does not hash streamed bodies
  creds.headers["x-cl-content-sha256"] = "UNSIGNED-PAYLOAD";
  auto p = auth_->authenticate(creds, who);
  ASSERT_FALSE(p) << p->detail;
  // Without the header the server expects the empty-body hash.
  creds.headers.clear();
  EXPECT_TRUE(auth_->authenticate(creds, who));
}

TEST_F(AuthTest, LastUsedIsWrittenAtMostOncePerMinute) {
  api::Principal who;
  ASSERT_FALSE(auth_->authenticate(bearer(key_.token()), who));
  const store::TimeMs first = now_ms_;
  now_ms_ += 30000;
  ASSERT_FALSE(auth_->authenticate(bearer(key_.token()), who));
  EXPECT_EQ(store_->get_api_key(key_.api_key().id()).value().last_used_ms, first);
  now_ms_ += 31000;
  ASSERT_FALSE(auth_->authenticate(bearer(key_.token()), who));
  EXPECT_EQ(store_->get_api_key(key_.api_key().id()).value().last_used_ms, now_ms_.load());
}

// The worked example of docs/api.md ("Signing a request"), byte for byte:
// if this fails, the document is wrong.
TEST_F(ServicesTest, DocsWorkedSignatureExampleAuthenticates) {
  const std::string key_id = "ak_01JQ3Z8X5V7K2M9N4P6R8T0W2Y";
  const std::string secret = "sk_4fTq9ZbW2xLmN8vR3kP7sJ1hY6dC0gE5aU2iO9wQ";
  const std::string body = R"({"product_id":"pd_01JQ3Z7C2M8N4P6R8T0W2Y5V7K","serial":"SN-0001"})";
  EXPECT_EQ(hex(sha256(body)), "a8c9726d26652f3ce5e05f838436ab8ec7c0f831b60607a6e672df4cdb74b9e2");
  EXPECT_EQ(hex(api_signing_key(secret)),
            "a89c9be3be99cd82f9633851efed57f462f3960026f7bf5542626bb79052a7c9");

  store::ApiKey key;
  key.id = key_id;
  key.tenant_id = tenant_a_;
  key.scope = "tenant";
  key.name = "docs";
  key.secret_hash = sha256(secret);
  key.signing_key_sealed = keys_->seal(api_signing_key(secret), key_id);
  key.created_ms = now_ms_;
  ASSERT_TRUE(store_->create_api_key(key).ok());

  now_ms_ = 1767225600000 + 42000;  // 42 s after the example's timestamp
  ApiKeyAuthenticator auth(*store_, *keys_, {}, [this] { return now_ms_.load(); });
  api::CallCredentials creds;
  creds.http_method = "POST";
  creds.path = "/v1/devices";
  creds.body_sha256_hex = hex(sha256(body));
  creds.authorization =
      "CL-HMAC-SHA256 Credential=ak_01JQ3Z8X5V7K2M9N4P6R8T0W2Y, Timestamp=1767225600, "
      "Signature=fb9d6950ea54f4a85ece1f4d53e0e222657087fd4d04f67ef22ef14d1ac56597";
  api::Principal who;
  auto p = auth.authenticate(creds, who);
  ASSERT_FALSE(p) << p->detail;
  EXPECT_EQ(who.key_id, key_id);
  // And the bearer form of the same key, over TLS.
  creds = {};
  creds.authorization = "Bearer " + key_id + "." + secret;
  creds.secure_transport = true;
  EXPECT_FALSE(auth.authenticate(creds, who));
}

// ---- Rate limiter ---------------------------------------------------------------

TEST_F(ServicesTest, RateLimiterAllowsBurstOfTwiceTheRateThenAnswers429) {
  v1::UpdateTenantRequest update;
  update.set_tenant_id(tenant_a_);
  update.set_api_rate_limit(5);
  v1::Tenant tenant;
  ASSERT_FALSE(call("TenantService.UpdateTenant", admin_, update, tenant));

  TenantRateLimiter limiter(*store_, {}, [this] { return now_ms_.load(); });
  for (int i = 0; i < 10; ++i)
    EXPECT_FALSE(limiter.admit(a_)) << i;
  auto p = limiter.admit(a_);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->http_status, 429);
  EXPECT_EQ(p->code, "rate_limited");
  EXPECT_GE(p->retry_after_s, 1);
  // Another tenant (unlimited) and operators are not affected.
  EXPECT_FALSE(limiter.admit(b_));
  EXPECT_FALSE(limiter.admit(admin_));
  // Tokens come back at the rate: 200 ms buys one call at 5 rps.
  now_ms_ += 200;
  EXPECT_FALSE(limiter.admit(a_));
  EXPECT_TRUE(limiter.admit(a_));
  // A full second refills five.
  now_ms_ += 1000;
  for (int i = 0; i < 5; ++i)
    EXPECT_FALSE(limiter.admit(a_)) << i;
  EXPECT_TRUE(limiter.admit(a_));
}

TEST_F(ServicesTest, RateLimiterPicksUpAChangedQuotaAfterTheSettingsCacheTime) {
  TenantRateLimiter limiter(*store_, {}, [this] { return now_ms_.load(); });
  for (int i = 0; i < 100; ++i)
    ASSERT_FALSE(limiter.admit(a_));  // unlimited
  v1::UpdateTenantRequest update;
  update.set_tenant_id(tenant_a_);
  update.set_api_rate_limit(1);
  v1::Tenant tenant;
  ASSERT_FALSE(call("TenantService.UpdateTenant", admin_, update, tenant));
  now_ms_ += 5000;
  EXPECT_FALSE(limiter.admit(a_));
  EXPECT_FALSE(limiter.admit(a_));
  auto p = limiter.admit(a_);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->retry_after_s, 1);
}

}  // namespace
}  // namespace counterlink::platform::testing
