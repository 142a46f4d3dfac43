// The REST/JSON server end to end: a real HttpServer on port 0, libcurl as
// the client, the test ThingService behind it.
#include <atomic>
#include <filesystem>
#include <thread>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include "counterlink/api/http_server.h"

#include "api_test_support.h"

namespace counterlink::api {
namespace {

using nlohmann::json;
using testing::http;
using testing::HttpRequest;
using testing::HttpResult;

class RestServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (getenv("API_TEST_DEBUG")) spdlog::set_level(spdlog::level::debug);
    state_ = std::make_shared<testing::ThingServiceState>();
    testing::register_thing_service(registry_, state_);
    auth_ = std::make_shared<testing::TestAuthenticator>();
    HttpServerConfig config;
    config.bind_address = "127.0.0.1";
    config.port = 0;
    config.worker_threads = 4;
    config.max_json_body_bytes = 64 << 10;
    config.max_upload_bytes = 1 << 20;
    config.upload_chunk_bytes = 4096;
    server_ = std::make_unique<HttpServer>(config, registry_, auth_,
                                           std::make_shared<testing::TestRateLimiter>(), nullptr);
    server_->add_raw_route(
        "GET", "/healthz",
        [](const RawRequest&) {
          return RawResponse{200, "text/plain", "ok", {}};
        },
        RawRouteOptions{true});
    server_->add_raw_route("GET", "/private/", [](const RawRequest& req) {
      return RawResponse{
          200, "text/plain", "hello " + req.context.principal.tenant_id + " " + req.path, {}};
    });
    server_->start();
    base_ = "http://127.0.0.1:" + std::to_string(server_->port());
  }

  void TearDown() override { server_->stop(); }

  HttpResult call(std::string method, std::string path, std::string body = {},
                  std::vector<std::string> headers = {"Authorization: Bearer tenant"}) {
    HttpRequest req;
    req.method = std::move(method);
    req.url = base_ + path;
    req.body = std::move(body);
    req.headers = std::move(headers);
    bool typed = false;
    for (const auto& h : req.headers)
      typed = typed || h.rfind("Content-Type:", 0) == 0;
    if (!req.body.empty() && !typed) req.headers.push_back("Content-Type: application/json");
    return http(req);
  }

  static json body_of(const HttpResult& r) { return json::parse(r.body); }

  static void expect_problem(const HttpResult& r, long status, const std::string& code,
                             const std::string& field = "") {
    ASSERT_EQ(r.status, status) << r.body << r.error;
    EXPECT_EQ(r.headers.at("content-type"), "application/problem+json");
    json p = json::parse(r.body);
    EXPECT_EQ(p["status"], status);
    EXPECT_EQ(p["code"], code);
    EXPECT_EQ(p["type"], "urn:counterlink:problem:" + code);
    EXPECT_FALSE(p["title"].get<std::string>().empty());
    EXPECT_FALSE(p["detail"].get<std::string>().empty());
    EXPECT_EQ(p["request_id"], r.headers.at("x-request-id"));
    if (!field.empty()) {
      EXPECT_EQ(p.value("field", ""), field);
    }
  }

  ServiceRegistry registry_;
  std::shared_ptr<testing::ThingServiceState> state_;
  std::shared_ptr<testing::TestAuthenticator> auth_;
  std::unique_ptr<HttpServer> server_;
  std::string base_;
};

TEST_F(RestServerTest, PathVariableBindsRequestFieldAndAnswersSnakeCaseJsonWithDefaults) {
  auto r = call("GET", "/v1/things/abc");
  ASSERT_EQ(r.status, 200) << r.body << r.error;
  EXPECT_EQ(r.headers.at("content-type"), "application/json");
  json j = body_of(r);
  EXPECT_EQ(j["id"], "abc");
  EXPECT_EQ(j["name"], "thing abc");
  EXPECT_EQ(j["size_bytes"], "0");  // int64 as a string, printed although default
  EXPECT_EQ(j["state"], "STATE_UNSPECIFIED");
  EXPECT_TRUE(j.contains("tags"));
  EXPECT_FALSE(r.headers.at("x-request-id").empty());
}

TEST_F(RestServerTest, PercentEncodedPathVariableIsDecoded) {
  auto r = call("GET", "/v1/things/a%2Fb%3Ac");
  ASSERT_EQ(r.status, 200) << r.body << r.error;
  EXPECT_EQ(body_of(r)["id"], "a/b:c");
}

TEST_F(RestServerTest, QueryParametersBindScalarsRepeatedEnumsAndBools) {
  auto r = call(
      "GET",
      "/v1/"
      "things?page_size=5&tags=a&tags=b%20c&state=STATE_ACTIVE&include_retired=true&min_score=1.5");
  ASSERT_EQ(r.status, 200) << r.body << r.error;
  json t = body_of(r)["things"][0];
  EXPECT_EQ(t["size_bytes"], "5");
  EXPECT_EQ(t["tags"], json::array({"a", "b c"}));
  EXPECT_EQ(t["state"], "STATE_ACTIVE");
  EXPECT_EQ(t["name"], "with retired");
  EXPECT_EQ(body_of(r)["next_page_token"], "1.500000");
}

TEST_F(RestServerTest, QueryParameterOfWrongTypeIs400NamingIt) {
  expect_problem(call("GET", "/v1/things?page_size=many"), 400, "invalid_argument", "page_size");
  expect_problem(call("GET", "/v1/things?state=STATE_BOGUS"), 400, "invalid_argument", "state");
}

TEST_F(RestServerTest, UnknownQueryParameterIs400NamingIt) {
  expect_problem(call("GET", "/v1/things?colour=red"), 400, "invalid_argument", "colour");
}

TEST_F(RestServerTest, AdditionalBindingRoutesToTheSameMethod) {
  auto r = call("GET", "/v1/shelves/s1/things?page_size=2");
  ASSERT_EQ(r.status, 200) << r.body << r.error;
  EXPECT_EQ(body_of(r)["things"][0]["shelf"], "s1");
  EXPECT_EQ(body_of(r)["things"][0]["size_bytes"], "2");
}

TEST_F(RestServerTest, BodyFieldBindingParsesTheBodyAsThatField) {
  auto r = call(
      "POST", "/v1/things",
      R"({"name":"lamp","tags":["x"],"labels":{"k":"v"},"created_at":"2024-01-02T03:04:05Z"})");
  ASSERT_EQ(r.status, 200) << r.body << r.error;
  json j = body_of(r);
  EXPECT_EQ(j["name"], "lamp");
  EXPECT_EQ(j["labels"]["k"], "v");
  EXPECT_EQ(j["created_at"], "2024-01-02T03:04:05Z");
  EXPECT_EQ(j["id"].get<std::string>().rfind("th_", 0), 0u);
}

TEST_F(RestServerTest, NestedPathVariableSetsTheSubField) {
  auto r = call("PATCH", "/v1/things/t9", R"({"name":"renamed"})");
  ASSERT_EQ(r.status, 200) << r.body << r.error;
  EXPECT_EQ(body_of(r)["id"], "t9");
  EXPECT_EQ(body_of(r)["name"], "renamed");
}

TEST_F(RestServerTest, CustomVerbRoutesWithTheWholeRequestAsBody) {
  auto r = call("POST", "/v1/things/t1:rotateSecret", R"({"length": 4})");
  ASSERT_EQ(r.status, 200) << r.body << r.error;
  EXPECT_EQ(body_of(r)["thing_id"], "t1");
  EXPECT_EQ(body_of(r)["secret"], "ssss");
}

TEST_F(RestServerTest, PathVariableWinsOverTheSameFieldInTheBody) {
  auto r = call("POST", "/v1/things/t1:rotateSecret", R"({"thing_id":"other","length":1})");
  ASSERT_EQ(r.status, 200) << r.body << r.error;
  EXPECT_EQ(body_of(r)["thing_id"], "t1");
}

TEST_F(RestServerTest, UnknownBodyFieldIs400NamingTheField) {
  expect_problem(call("POST", "/v1/things", R"({"name":"x","colour":"red"})"), 400,
                 "invalid_argument", "thing.colour");
  expect_problem(call("POST", "/v1/things/t1:rotateSecret", R"({"lenght":1})"), 400,
                 "invalid_argument", "lenght");
}

TEST_F(RestServerTest, WrongJsonTypeIs400NamingTheField) {
  expect_problem(call("POST", "/v1/things", R"({"size_bytes":"lots"})"), 400, "invalid_argument",
                 "thing.size_bytes");
}

TEST_F(RestServerTest, MalformedJsonIs400InvalidJson) {
  expect_problem(call("POST", "/v1/things", R"({"name": "x",)"), 400, "invalid_json");
  expect_problem(call("POST", "/v1/things/t1:rotateSecret", "[1,2]"), 400, "invalid_json");
}

TEST_F(RestServerTest, BodyOnMethodWithoutBodyIs400) {
  expect_problem(call("GET", "/v1/things/abc", R"({"x":1})"), 400, "invalid_argument");
}

TEST_F(RestServerTest, UnknownRouteIs404Problem) {
  expect_problem(call("GET", "/v1/nothing/here"), 404, "route_not_found");
  expect_problem(call("GET", "/v1/things/abc:frobnicate"), 404, "route_not_found");
}

TEST_F(RestServerTest, KnownPathWithWrongMethodIs405WithAllow) {
  auto r = call("PUT", "/v1/things/abc", "{}");
  expect_problem(r, 405, "method_not_allowed");
  EXPECT_EQ(r.headers.at("allow"), "DELETE, GET, PATCH");
}

TEST_F(RestServerTest, BodyOverTheLimitIs413) {
  std::string big = R"({"name":")" + std::string(100 << 10, 'x') + "\"}";
  expect_problem(call("POST", "/v1/things", big), 413, "payload_too_large");
  EXPECT_EQ(state_->create_calls, 0);
}

TEST_F(RestServerTest, ChunkedBodyOverTheLimitIs413) {
  HttpRequest req;
  req.method = "POST";
  req.url = base_ + "/v1/things";
  req.body = R"({"name":")" + std::string(100 << 10, 'x') + "\"}";
  req.headers = {"Authorization: Bearer tenant", "Content-Type: application/json"};
  req.chunked = true;
  expect_problem(http(req), 413, "payload_too_large");
}

TEST_F(RestServerTest, ValidIncomingRequestIdIsEchoedAndInvalidOneReplaced) {
  auto r = call("GET", "/v1/things/abc", {},
                {"Authorization: Bearer tenant", "X-Request-Id: req-123.a_b"});
  EXPECT_EQ(r.headers.at("x-request-id"), "req-123.a_b");
  r = call("GET", "/v1/things/abc", {}, {"Authorization: Bearer tenant", "X-Request-Id: bad id!"});
  EXPECT_NE(r.headers.at("x-request-id"), "bad id!");
  EXPECT_EQ(r.headers.at("x-request-id").size(), 32u);
}

TEST_F(RestServerTest, MissingCredentialsIs401AndHandlerDoesNotRun) {
  expect_problem(call("GET", "/v1/things/abc", {}, {}), 401, "unauthenticated");
  expect_problem(call("GET", "/v1/things/abc", {}, {"Authorization: Bearer wrong"}), 401,
                 "unauthenticated");
  EXPECT_EQ(state_->get_calls, 0);
}

TEST_F(RestServerTest, AuthenticatorSeesMethodPathHeadersAndBodyHash) {
  auto r = call("POST", "/v1/things/t1:rotateSecret?", R"({"length":1})",
                {"Authorization: Bearer tenant", "X-CL-Timestamp: 1700000000"});
  ASSERT_EQ(r.status, 200) << r.body << r.error;
  CallCredentials c = auth_->last();
  EXPECT_EQ(c.authorization, "Bearer tenant");
  EXPECT_EQ(c.http_method, "POST");
  EXPECT_EQ(c.path, "/v1/things/t1:rotateSecret?");
  EXPECT_EQ(c.headers.at("x-cl-timestamp"), "1700000000");
  // sha256('{"length":1}')
  EXPECT_EQ(c.body_sha256_hex, "36145fc388e953077ff72f2ad8e7716f23129ba3bc8d535250dcd0580a4dcd42");
  EXPECT_TRUE(c.secure_transport);  // loopback
}

TEST_F(RestServerTest, AdminOnlyMethodIs403ForTenantBeforeTheHandler) {
  expect_problem(call("DELETE", "/v1/things/abc"), 403, "permission_denied");
  auto r = call("DELETE", "/v1/things/abc", {}, {"Authorization: Bearer admin"});
  ASSERT_EQ(r.status, 200) << r.body << r.error;
  EXPECT_EQ(r.body, "{}");
}

TEST_F(RestServerTest, RateLimitedTenantGets429WithRetryAfter) {
  auto r = call("GET", "/v1/things/abc", {}, {"Authorization: Bearer limited"});
  expect_problem(r, 429, "rate_limited");
  EXPECT_EQ(r.headers.at("retry-after"), "7");
  EXPECT_EQ(state_->get_calls, 0);
}

TEST_F(RestServerTest, HandlerProblemBecomesProblemJsonWithItsStatusAndField) {
  auto r = call("GET", "/v1/things/abc?fail_with_status=409");
  expect_problem(r, 409, "test_failure", "fail_with_status");
  r = call("GET", "/v1/things/abc?fail_with_status=503");
  expect_problem(r, 503, "test_failure");
  EXPECT_EQ(r.headers.at("retry-after"), "3");
}

TEST_F(RestServerTest, UploadBodyReachesTheHandlerInChunksAsItArrives) {
  std::string csv;
  for (int i = 0; csv.size() < 300 * 1024; ++i)
    csv += "serial-" + std::to_string(i) + ",model-x\n";
  HttpRequest req;
  req.method = "POST";
  req.url = base_ + "/v1/things:import?batch=b7&dry_run=true";
  req.body = csv;
  req.headers = {"Authorization: Bearer tenant", "Content-Type: text/csv; charset=utf-8"};
  req.chunked = true;
  auto r = http(req);
  ASSERT_EQ(r.status, 200) << r.body << r.error;
  json j = body_of(r);
  EXPECT_EQ(j["bytes"], std::to_string(csv.size()));
  EXPECT_EQ(j["batch"], "b7");
  EXPECT_EQ(j["content_type"], "text/csv");
  std::lock_guard lock(state_->mu);
  EXPECT_EQ(state_->upload_bytes, csv);
  EXPECT_GT(state_->chunk_sizes.size(), csv.size() / 4096);  // never buffered whole
  for (size_t n : state_->chunk_sizes)
    EXPECT_LE(n, 4096u);
  EXPECT_EQ(state_->upload_params.at("dry_run"), "true");
  EXPECT_EQ(state_->last_principal_tenant, "tn_1");
}

TEST_F(RestServerTest, UploadWithFixedLengthBodyIsStreamedToo) {
  std::string lines;
  for (int i = 0; i < 2000; ++i)
    lines += "{\"serial\":\"s" + std::to_string(i) + "\"}\n";
  auto r = call("POST", "/v1/things:import", lines,
                {"Authorization: Bearer tenant", "Content-Type: application/x-ndjson"});
  ASSERT_EQ(r.status, 200) << r.body << r.error;
  EXPECT_EQ(body_of(r)["bytes"], std::to_string(lines.size()));
  EXPECT_EQ(body_of(r)["content_type"], "application/x-ndjson");
}

TEST_F(RestServerTest, UploadOfUnsupportedMediaTypeIs415) {
  HttpRequest req;
  req.method = "POST";
  req.url = base_ + "/v1/things:import";
  req.body = "a,b\n";
  req.headers = {"Authorization: Bearer tenant", "Content-Type: application/pdf"};
  expect_problem(http(req), 415, "unsupported_media_type");
}

TEST_F(RestServerTest, UploadWithoutCredentialsIs401BeforeAnyChunk) {
  HttpRequest req;
  req.method = "POST";
  req.url = base_ + "/v1/things:import";
  req.body = std::string(50000, 'a');
  req.headers = {"Content-Type: text/csv"};
  req.chunked = true;
  expect_problem(http(req), 401, "unauthenticated");
  std::lock_guard lock(state_->mu);
  EXPECT_TRUE(state_->chunk_sizes.empty());
}

TEST_F(RestServerTest, UploadChunkProblemEndsTheCallWithThatProblem) {
  HttpRequest req;
  req.method = "POST";
  req.url = base_ + "/v1/things:import";
  req.body = "ok,1\nFAIL,2\n";
  req.headers = {"Authorization: Bearer tenant", "Content-Type: text/csv"};
  expect_problem(http(req), 422, "bad_row");
  std::lock_guard lock(state_->mu);
  EXPECT_FALSE(state_->upload_finished);
}

TEST_F(RestServerTest, UploadOverTheLimitIs413) {
  HttpRequest req;
  req.method = "POST";
  req.url = base_ + "/v1/things:import";
  req.body = std::string((1 << 20) + 10, 'a');
  req.headers = {"Authorization: Bearer tenant", "Content-Type: text/csv"};
  req.chunked = true;
  expect_problem(http(req), 413, "payload_too_large");
}

TEST_F(RestServerTest, PublicRawRouteNeedsNoCredentials) {
  auto r = call("GET", "/healthz", {}, {});
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ok");
  EXPECT_FALSE(r.headers.at("x-request-id").empty());
}

TEST_F(RestServerTest, NonPublicRawRouteAuthenticatesAndMatchesByPrefix) {
  expect_problem(call("GET", "/private/x", {}, {}), 401, "unauthenticated");
  auto r = call("GET", "/private/a/b?q=1");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "hello tn_1 /private/a/b");
}

TEST_F(RestServerTest, StopLetsAnInFlightRequestFinish) {
  {
    std::lock_guard lock(state_->mu);
    state_->hold_creates = true;
  }
  HttpResult result;
  std::thread client([&] { result = call("POST", "/v1/things", R"({"name":"slow"})"); });
  {
    std::unique_lock lock(state_->mu);
    ASSERT_TRUE(state_->cv.wait_for(lock, std::chrono::seconds(10),
                                    [&] { return state_->creates_waiting == 1; }));
  }
  std::thread stopper([&] { server_->stop(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  {
    std::lock_guard lock(state_->mu);
    state_->hold_creates = false;
  }
  state_->cv.notify_all();
  client.join();
  stopper.join();
  EXPECT_EQ(result.status, 200) << result.body << result.error;
  EXPECT_EQ(result.headers.at("connection"), "close");
  // And the port no longer accepts.
  auto after = call("GET", "/healthz");
  EXPECT_EQ(after.status, 0);
}

// Regression: stop() used to drop the last reference to a session while
// holding the session-registry lock, and ~Session takes that lock: stop()
// deadlocked when a client hung up at the same moment. Clients open and
// close connections as fast as they can while the server stops; a deadlock
// shows as this test hanging (ctest's timeout fails it).
TEST_F(RestServerTest, StopReturnsWhileClientsConnectAndHangUp) {
  const uint16_t port = server_->port();
  std::atomic<bool> done{false};
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&] {
      while (!done) {
        int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(port);
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
          const char request[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
          (void)!::send(fd, request, sizeof request - 1, MSG_NOSIGNAL);
          char buf[256];
          (void)!::recv(fd, buf, sizeof buf, 0);
        }
        ::close(fd);
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  server_->stop();
  done = true;
  for (auto& c : clients)
    c.join();
  EXPECT_EQ(call("GET", "/healthz").status, 0);
}

// A plain TCP connection to the server, for what libcurl hides.
class RawConnection {
 public:
  explicit RawConnection(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~RawConnection() { ::close(fd_); }
  bool connected() const { return connected_; }
  void send(const std::string& data) {
    ASSERT_EQ(::send(fd_, data.data(), data.size(), 0), ssize_t(data.size()));
  }
  // Reads until `count` responses with Content-Length bodies arrived or EOF.
  std::string read_responses(int count) {
    std::string in;
    char buf[4096];
    while (complete_responses(in) < count) {
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      in.append(buf, size_t(n));
    }
    return in;
  }
  // True when the server closed the connection (recv returns 0).
  bool closed_by_server() {
    char c;
    return ::recv(fd_, &c, 1, 0) == 0;
  }

 private:
  static int complete_responses(const std::string& in) {
    int count = 0;
    size_t pos = 0;
    while (true) {
      size_t end = in.find("\r\n\r\n", pos);
      if (end == std::string::npos) return count;
      size_t cl = in.find("Content-Length: ", pos);
      size_t length = cl != std::string::npos && cl < end ? std::stoul(in.substr(cl + 16)) : 0;
      if (in.size() < end + 4 + length) return count;
      ++count;
      pos = end + 4 + length;
    }
  }
  int fd_ = -1;
  bool connected_ = false;
};

TEST_F(RestServerTest, KeepAliveConnectionServesPipelinedRequestsInOrder) {
  RawConnection conn(server_->port());
  ASSERT_TRUE(conn.connected());
  conn.send(
      "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /v1/things/k1 HTTP/1.1\r\nHost: t\r\n"
      "Authorization: Bearer tenant\r\n\r\n");
  std::string in = conn.read_responses(2);
  size_t first = in.find("HTTP/1.1 200");
  size_t second = in.find("HTTP/1.1 200", first + 1);
  ASSERT_NE(second, std::string::npos) << in;
  EXPECT_NE(in.find("\"id\":\"k1\"", second), std::string::npos);
}

TEST_F(RestServerTest, IdleConnectionIsClosedAfterTheHeaderTimeout) {
  server_->stop();
  HttpServerConfig config;
  config.bind_address = "127.0.0.1";
  config.port = 0;
  config.header_timeout = std::chrono::milliseconds(200);
  server_ = std::make_unique<HttpServer>(config, registry_, auth_, nullptr, nullptr);
  server_->start();
  RawConnection conn(server_->port());
  ASSERT_TRUE(conn.connected());
  conn.send("GET /v1/things/x HTTP/1.1\r\nHost: t\r\n");  // never finishes the headers
  auto started = std::chrono::steady_clock::now();
  EXPECT_TRUE(conn.closed_by_server());
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(4));
}

TEST_F(RestServerTest, ExpectContinueGetsA100BeforeTheBody) {
  RawConnection conn(server_->port());
  ASSERT_TRUE(conn.connected());
  std::string body = R"({"length":2})";
  conn.send(
      "POST /v1/things/t1:rotateSecret HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer tenant\r\n"
      "Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n");
  std::string interim = conn.read_responses(1);
  EXPECT_EQ(interim.rfind("HTTP/1.1 100 Continue", 0), 0u) << interim;
  conn.send(body);
  std::string final_response = conn.read_responses(1);
  EXPECT_NE(final_response.find("\"secret\":\"ss\""), std::string::npos) << final_response;
}

TEST(HttpServerTls, ServesHttpsWithTheConfiguredCertificate) {
  auto dir = std::filesystem::temp_directory_path() / ("cl_api_tls_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::string cert = (dir / "cert.pem").string();
  std::string key = (dir / "key.pem").string();
  std::string cmd =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
      "-subj /CN=localhost -keyout '" +
      key + "' -out '" + cert + "' >/dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << "openssl CLI not available: run scripts/bootstrap";
  ServiceRegistry registry;
  auto state = std::make_shared<testing::ThingServiceState>();
  testing::register_thing_service(registry, state);
  HttpServerConfig config;
  config.bind_address = "127.0.0.1";
  config.port = 0;
  config.tls_cert_file = cert;
  config.tls_key_file = key;
  auto auth = std::make_shared<testing::TestAuthenticator>();
  HttpServer server(config, registry, auth, nullptr, nullptr);
  server.start();
  EXPECT_TRUE(server.tls());
  HttpRequest req;
  req.url = "https://127.0.0.1:" + std::to_string(server.port()) + "/v1/things/t1";
  req.headers = {"Authorization: Bearer tenant"};
  req.insecure_tls = true;
  auto r = http(req);
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_TRUE(auth->last().secure_transport);
  req.url = "http://127.0.0.1:" + std::to_string(server.port()) + "/v1/things/t1";
  EXPECT_NE(http(req).status, 200);  // plain HTTP on the TLS port fails
  server.stop();
  std::filesystem::remove_all(dir);
}

TEST(HttpServerTls, UnreadableCertificateFailsStartWithAMessage) {
  ServiceRegistry registry;
  HttpServerConfig config;
  config.port = 0;
  config.tls_cert_file = "/nonexistent/cert.pem";
  config.tls_key_file = "/nonexistent/key.pem";
  HttpServer server(config, registry, nullptr, nullptr, nullptr);
  try {
    server.start();
    FAIL() << "start() should throw";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/cert.pem"), std::string::npos);
  }
}

TEST(HttpServerStartup, RegisteredMethodMissingFromThePoolIsAStartupError) {
  ServiceRegistry registry;
  registry.add_unary("counterlink.test.v1.ThingService.NoSuchMethod",
                     [](CallContext&, const google::protobuf::Message&,
                        google::protobuf::Message&) -> Outcome { return std::nullopt; });
  EXPECT_THROW(HttpServer(HttpServerConfig{}, registry, nullptr, nullptr, nullptr),
               std::runtime_error);
}

}  // namespace
}  // namespace counterlink::api
