// The services behind the real REST server (api::HttpServer on port 0) with
// the API-key authenticator and the tenant rate limiter, driven by curl and
// openssl exactly as docs/api.md tells a business system to.
#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "counterlink/api/http_server.h"

#include "fixture.h"

namespace counterlink::platform::testing {
namespace {

// Runs a bash script; its standard output.
std::string run_bash(const std::string& script) {
  const auto path =
      std::filesystem::temp_directory_path() / ("cl_e2e_" + std::to_string(::getpid()) + ".sh");
  std::ofstream(path) << "set -euo pipefail\n" << script;
  std::string out;
  FILE* pipe = ::popen(("bash " + path.string() + " 2>&1").c_str(), "r");
  if (!pipe) return out;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
    out.append(buffer.data(), n);
  ::pclose(pipe);
  std::filesystem::remove(path);
  return out;
}

// The shell block after `heading` in docs/api.md.
std::string doc_snippet(const std::string& heading) {
  std::ifstream in(COUNTERLINK_DOCS_DIR "/api.md");
  std::stringstream text;
  text << in.rdbuf();
  const std::string doc = text.str();
  size_t at = doc.find(heading);
  if (at == std::string::npos) return "";
  at = doc.find("```sh\n", at);
  if (at == std::string::npos) return "";
  at += 6;
  return doc.substr(at, doc.find("```", at) - at);
}

class HttpEndToEndTest : public ServicesTest {
 protected:
  void SetUp() override {
    if (std::system("command -v curl >/dev/null && command -v openssl >/dev/null") != 0) {
      FAIL() << "needs curl and openssl: run scripts/bootstrap";
    }
    ServicesTest::SetUp();
    now_ms_ = 1767225600000 + 5000;  // the docs example's time, 5 s later
    auth_ = std::make_shared<ApiKeyAuthenticator>(*store_, *keys_, ApiKeyAuthOptions{},
                                                  [this] { return now_ms_.load(); });
    limiter_ = std::make_shared<TenantRateLimiter>(*store_, RateLimitOptions{},
                                                   [this] { return now_ms_.load(); });
    api::HttpServerConfig config;
    config.bind_address = "127.0.0.1";
    config.port = 0;
    config.worker_threads = 2;
    server_ = std::make_unique<api::HttpServer>(config, registry_, auth_, limiter_, store_.get());
    server_->start();
    base_ = "http://127.0.0.1:" + std::to_string(server_->port());
  }
  void TearDown() override {
    if (!server_) return;  // skipped
    server_->stop();
    server_.reset();
    ServicesTest::TearDown();
  }

  // The key and product of the docs example, in tenant A.
  void seed_docs_example() {
    store::ApiKey key;
    key.id = "ak_01JQ3Z8X5V7K2M9N4P6R8T0W2Y";
    key.tenant_id = tenant_a_;
    key.scope = "tenant";
    key.name = "docs";
    const std::string secret = "sk_4fTq9ZbW2xLmN8vR3kP7sJ1hY6dC0gE5aU2iO9wQ";
    key.secret_hash = sha256(secret);
    key.signing_key_sealed = keys_->seal(api_signing_key(secret), key.id);
    key.created_ms = now_ms_;
    ASSERT_TRUE(store_->create_api_key(key).ok());
    store::Product product;
    product.id = "pd_01JQ3Z7C2M8N4P6R8T0W2Y5V7K";
    product.tenant_id = tenant_a_;
    product.name = "SP-2";
    product.type = "speaker";
    product.capabilities_json = "{}";
    product.created_ms = product.updated_ms = now_ms_;
    ASSERT_TRUE(store_->create_product(product).ok());
  }

  std::shared_ptr<ApiKeyAuthenticator> auth_;
  std::shared_ptr<TenantRateLimiter> limiter_;
  std::unique_ptr<api::HttpServer> server_;
  std::string base_;
};

TEST_F(HttpEndToEndTest, DocsSignedCurlExampleCreatesADevice) {
  seed_docs_example();
  std::string script = doc_snippet("#### Worked example");
  ASSERT_FALSE(script.empty());
  const std::string localhost = "http://localhost:8080";
  ASSERT_NE(script.find(localhost), std::string::npos);
  script.replace(script.find(localhost), localhost.size(), base_);
  const std::string out = run_bash(script);
  EXPECT_NE(out.find("\"serial\":\"SN-0001\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"secret\":\""), std::string::npos) << out;
  store::DeviceFilter filter;
  filter.tenant_id = tenant_a_;
  filter.serial = "SN-0001";
  auto listed = store_->list_devices(filter, {});
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed.value().items.size(), 1u);
}

TEST_F(HttpEndToEndTest, CurlImportsACsvFileWithABearerToken) {
  seed_docs_example();
  std::string csv = "serial,labels\n";
  for (int i = 0; i < 2000; ++i)
    csv += "CURL-" + std::to_string(i) + ",\"region=east;n=" + std::to_string(i) + "\"\n";
  csv += "bad serial,\n";
  const auto file = dir_ / "devices.csv";
  std::ofstream(file) << csv;
  const std::string out =
      run_bash("curl -sS -X POST '" + base_ +
               "/v1/devices:import?product_id=pd_01JQ3Z7C2M8N4P6R8T0W2Y5V7K' "
               "-H 'Authorization: Bearer ak_01JQ3Z8X5V7K2M9N4P6R8T0W2Y."
               "sk_4fTq9ZbW2xLmN8vR3kP7sJ1hY6dC0gE5aU2iO9wQ' -H 'Content-Type: text/csv' "
               "--data-binary @" +
               file.string() + " | head -c 300\n");
  EXPECT_NE(out.find("\"imported\":2000"), std::string::npos) << out;
  EXPECT_NE(out.find("\"failed\":1"), std::string::npos) << out;
  EXPECT_EQ(store_->count_devices(tenant_a_).value(), 2000);
}

TEST_F(HttpEndToEndTest, CurlListsDevicesWithQueryFilters) {
  seed_docs_example();
  make_device(a_, "pd_01JQ3Z7C2M8N4P6R8T0W2Y5V7K", "F-1", {{"region", "east"}});
  make_device(a_, "pd_01JQ3Z7C2M8N4P6R8T0W2Y5V7K", "F-2", {{"region", "west"}});
  const std::string curl =
      "curl -sS -H 'Authorization: Bearer ak_01JQ3Z8X5V7K2M9N4P6R8T0W2Y."
      "sk_4fTq9ZbW2xLmN8vR3kP7sJ1hY6dC0gE5aU2iO9wQ' '" +
      base_;
  std::string out = run_bash(curl + "/v1/devices?label=region%3Dwest&type=speaker&online=false'\n");
  EXPECT_NE(out.find("\"serial\":\"F-2\""), std::string::npos) << out;
  EXPECT_EQ(out.find("\"serial\":\"F-1\""), std::string::npos) << out;
  out = run_bash(curl + "/v1/devices?page_size=5000'\n");
  EXPECT_NE(out.find("\"field\":\"page_size\""), std::string::npos) << out;
}

TEST_F(HttpEndToEndTest, UnsignedCallIsAProblemDocument) {
  const std::string out = run_bash("curl -sS -i " + base_ + "/v1/devices\n");
  EXPECT_NE(out.find(" 401"), std::string::npos) << out;
  EXPECT_NE(out.find("application/problem+json"), std::string::npos) << out;
  EXPECT_NE(out.find("Missing Authorization"), std::string::npos) << out;
}

}  // namespace
}  // namespace counterlink::platform::testing
