// Server streams over REST: server-sent events from a real HttpServer on port
// 0, read by libcurl while the handler is still running (the test
// ThingService's WatchShelf, see testdata/echo_test.proto).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <sys/socket.h>
#include <unistd.h>

#include "counterlink/api/http_server.h"

#include "api_test_support.h"

namespace counterlink::api {
namespace {

using nlohmann::json;
using testing::SseClient;
using Clock = std::chrono::steady_clock;

class RestStreamTest : public ::testing::Test {
 protected:
  void SetUp() override { start_server(HttpServerConfig{}); }

  void TearDown() override { server_->stop(); }

  void start_server(HttpServerConfig config) {
    if (server_) server_->stop();
    server_.reset();
    registry_ = std::make_unique<ServiceRegistry>();
    state_ = std::make_shared<testing::ThingServiceState>();
    testing::register_thing_service(*registry_, state_);
    config.bind_address = "127.0.0.1";
    config.port = 0;
    config.worker_threads = 2;
    server_ = std::make_unique<HttpServer>(config, *registry_,
                                           std::make_shared<testing::TestAuthenticator>(),
                                           std::make_shared<testing::TestRateLimiter>(), nullptr);
    server_->start();
    base_ = "http://127.0.0.1:" + std::to_string(server_->port());
  }

  std::unique_ptr<SseClient> open(const std::string& query, std::vector<std::string> headers = {}) {
    headers.push_back("Authorization: Bearer tenant");
    return std::make_unique<SseClient>(base_ + "/v1/shelves/s1/events?" + query,
                                       std::move(headers));
  }

  // Waits (on the state's cv) until `ready` holds.
  template <class Ready>
  bool wait_state(Ready ready, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::unique_lock lock(state_->mu);
    return state_->cv.wait_for(lock, timeout, [&] { return ready(*state_); });
  }

  void release_events(int n) {
    {
      std::lock_guard lock(state_->mu);
      state_->stream_released = n;
    }
    state_->cv.notify_all();
  }

  static std::string record(int id) {
    return "id: " + std::to_string(id) + "\nevent: thing\ndata: {\"id\":\"" + std::to_string(id) +
           "\",\"shelf\":\"s1\"";
  }

  std::unique_ptr<ServiceRegistry> registry_;
  std::shared_ptr<testing::ThingServiceState> state_;
  std::unique_ptr<HttpServer> server_;
  std::string base_;
};

TEST_F(RestStreamTest, EachEventArrivesWhileTheHandlerIsStillRunning) {
  auto client = open("count=2&gated=true");
  ASSERT_TRUE(client->wait_for_body(record(1))) << client->body();
  // The handler is waiting for the test before its second send: the first
  // record was written on its own, not buffered until the response ended.
  EXPECT_TRUE(wait_state([](auto& s) { return s.stream_events_sent == 1; }));
  {
    std::lock_guard lock(state_->mu);
    EXPECT_EQ(state_->streams_finished, 0);
  }
  EXPECT_FALSE(client->wait_done(std::chrono::milliseconds(100)));
  auto headers = client->result();
  EXPECT_EQ(headers.status, 200);
  EXPECT_EQ(headers.headers.at("content-type"), "text/event-stream");
  EXPECT_EQ(headers.headers.at("cache-control"), "no-cache");
  EXPECT_EQ(headers.headers.at("x-accel-buffering"), "no");
  EXPECT_EQ(headers.headers.at("transfer-encoding"), "chunked");
  EXPECT_EQ(headers.headers.at("x-request-id").size(), 32u);

  release_events(1);
  ASSERT_TRUE(client->wait_done());
  auto r = client->result();
  EXPECT_TRUE(r.error.empty()) << r.error;  // a complete chunked response
  // Two records, each `id`, `event`, one `data` line with the JSON, blank line.
  std::string body = r.body;
  size_t first = body.find("\n\n");
  ASSERT_NE(first, std::string::npos);
  EXPECT_EQ(body.rfind(record(1), 0), 0u) << body;
  EXPECT_EQ(body.find(record(2), first), first + 2) << body;
  EXPECT_EQ(body.size() - 2, body.find("\n\n", first + 2)) << body;
  std::string data_line = body.substr(0, first);
  data_line = data_line.substr(data_line.find("data: ") + 6);
  json event = json::parse(data_line);
  EXPECT_EQ(event["thing"]["name"], "line one\nline two");  // escaped, one line
  EXPECT_EQ(event["resumed_after"], "");
}

TEST_F(RestStreamTest, LastEventIdHeaderReachesTheHandler) {
  auto client = open("count=2", {"Last-Event-ID: 41"});
  ASSERT_TRUE(client->wait_done());
  EXPECT_NE(client->body().find(record(42)), std::string::npos) << client->body();
  EXPECT_NE(client->body().find(record(43)), std::string::npos) << client->body();
  std::lock_guard lock(state_->mu);
  EXPECT_EQ(state_->stream_last_event_id, "41");
  EXPECT_EQ(state_->stream_transport, "rest");
}

TEST_F(RestStreamTest, HeartbeatIsAKeepaliveComment) {
  auto client = open("count=1&heartbeat=true");
  ASSERT_TRUE(client->wait_done());
  EXPECT_EQ(client->body().rfind(": keepalive\n\n" + record(1), 0), 0u) << client->body();
}

TEST_F(RestStreamTest, HandlerThatSendsNothingAnswersAnEmptyStream) {
  auto client = open("count=0");
  ASSERT_TRUE(client->wait_done());
  auto r = client->result();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.headers.at("content-type"), "text/event-stream");
  EXPECT_EQ(r.body, "");
  EXPECT_TRUE(r.error.empty()) << r.error;
}

TEST_F(RestStreamTest, ProblemBeforeTheFirstEventIsAnOrdinaryProblemJson) {
  testing::HttpRequest req;
  req.url = base_ + "/v1/shelves/s1/events?fail_with_status=404";
  req.headers = {"Authorization: Bearer tenant"};
  auto r = testing::http(req);
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.headers.at("content-type"), "application/problem+json");
  json p = json::parse(r.body);
  EXPECT_EQ(p["code"], "test_failure");
  EXPECT_EQ(p["request_id"], r.headers.at("x-request-id"));
}

TEST_F(RestStreamTest, PipelineAndRequestBindingRunBeforeTheHandler) {
  testing::HttpRequest req;
  req.url = base_ + "/v1/shelves/s1/events?count=1";
  auto r = testing::http(req);  // no credentials
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.headers.at("content-type"), "application/problem+json");
  req.headers = {"Authorization: Bearer limited"};
  r = testing::http(req);
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(r.headers.at("retry-after"), "7");
  req.headers = {"Authorization: Bearer tenant"};
  req.url = base_ + "/v1/shelves/s1/events?colour=red";
  r = testing::http(req);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(json::parse(r.body)["field"], "colour");
  req.url = base_ + "/v1/shelves/s1/events";
  req.method = "POST";
  r = testing::http(req);
  EXPECT_EQ(r.status, 405);
  std::lock_guard lock(state_->mu);
  EXPECT_EQ(state_->streams_started, 0);
}

TEST_F(RestStreamTest, ProblemAfterTheFirstEventEndsTheStream) {
  auto client = open("count=1&fail_after_status=500");
  ASSERT_TRUE(client->wait_done());
  auto r = client->result();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body.rfind(record(1), 0), 0u) << r.body;
  EXPECT_EQ(r.body.find("test_failure"), std::string::npos) << r.body;
}

TEST_F(RestStreamTest, ClientHangingUpCancelsTheStream) {
  auto client = open("count=1&linger=true");
  ASSERT_TRUE(client->wait_for_body(record(1)));
  client->hang_up();
  ASSERT_TRUE(wait_state([](auto& s) { return s.streams_finished == 1; }))
      << "the handler did not see the client leave";
  std::lock_guard lock(state_->mu);
  EXPECT_TRUE(state_->stream_saw_cancel);
  EXPECT_FALSE(state_->send_after_cancel_ok);
}

TEST_F(RestStreamTest, ClientHangingUpUnblocksASendWaitingForBufferSpace) {
  HttpServerConfig config;
  config.stream_buffer_bytes = 64 << 10;
  start_server(config);
  // A client that never reads, with a small receive buffer: the server's
  // socket buffers fill, then its stream buffer, then send() blocks.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  int small = 16 << 10;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(server_->port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const int kEvents = 2000;  // x 16 KiB: far more than any socket buffers
  std::string request = "GET /v1/shelves/s1/events?padding=16384&count=" + std::to_string(kEvents) +
                        " HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer tenant\r\n\r\n";
  ASSERT_EQ(::send(fd, request.data(), request.size(), 0), ssize_t(request.size()));
  ASSERT_TRUE(wait_state([](auto& s) { return s.stream_events_sent > 0; }));
  // Let it run into the limit: the count stops growing well short of the total.
  int sent = -1;
  for (int i = 0; i < 50; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::lock_guard lock(state_->mu);
    if (state_->stream_events_sent == sent) break;
    sent = state_->stream_events_sent;
  }
  {
    std::lock_guard lock(state_->mu);
    EXPECT_LT(state_->stream_events_sent, kEvents / 4) << "send() does not block";
    EXPECT_EQ(state_->streams_finished, 0);
  }
  ::close(fd);
  EXPECT_TRUE(wait_state([](auto& s) { return s.streams_finished == 1; }));
  std::lock_guard lock(state_->mu);
  EXPECT_LT(state_->stream_events_sent, kEvents);
}

TEST_F(RestStreamTest, StopEndsAnOpenStreamPromptly) {
  auto client = open("count=1&linger=true");
  ASSERT_TRUE(client->wait_for_body(record(1)));
  auto started = Clock::now();
  server_->stop();
  EXPECT_LT(Clock::now() - started, std::chrono::seconds(2));
  {
    std::lock_guard lock(state_->mu);
    EXPECT_EQ(state_->streams_finished, 1);
    EXPECT_TRUE(state_->stream_saw_cancel);
    EXPECT_FALSE(state_->send_after_cancel_ok);
  }
  ASSERT_TRUE(client->wait_done());
  EXPECT_TRUE(client->result().error.empty()) << client->result().error;  // ended cleanly
}

TEST_F(RestStreamTest, StreamsOverTheLimitAre503UntilOneEnds) {
  HttpServerConfig config;
  config.max_streams = 2;
  start_server(config);
  auto a = open("count=1&linger=true");
  auto b = open("count=1&linger=true");
  ASSERT_TRUE(a->wait_for_body(record(1)));
  ASSERT_TRUE(b->wait_for_body(record(1)));

  testing::HttpRequest req;
  req.url = base_ + "/v1/shelves/s1/events?count=1";
  req.headers = {"Authorization: Bearer tenant"};
  auto r = testing::http(req);
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(json::parse(r.body)["code"], "too_many_streams");
  EXPECT_EQ(r.headers.at("retry-after"), "5");
  // Unary calls are not affected.
  req.url = base_ + "/v1/things/t1";
  EXPECT_EQ(testing::http(req).status, 200);

  a->hang_up();
  ASSERT_TRUE(wait_state([](auto& s) { return s.streams_finished == 1; }));
  // The slot is free once the handler's thread is done, just after it returned.
  req.url = base_ + "/v1/shelves/s1/events?count=1";
  for (int i = 0; i < 100; ++i) {
    r = testing::http(req);
    if (r.status != 503) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body.rfind(record(1), 0), 0u) << r.body;
}

TEST_F(RestStreamTest, Http10ClientGetsACloseDelimitedStream) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(server_->port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string request =
      "GET /v1/shelves/s1/events?count=1 HTTP/1.0\r\nAuthorization: Bearer tenant\r\n\r\n";
  ASSERT_EQ(::send(fd, request.data(), request.size(), 0), ssize_t(request.size()));
  std::string in;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0)
    in.append(buf, size_t(n));
  ::close(fd);
  EXPECT_EQ(in.find("Transfer-Encoding"), std::string::npos) << in;
  size_t body = in.find("\r\n\r\n");
  ASSERT_NE(body, std::string::npos) << in;
  EXPECT_EQ(in.substr(body + 4).rfind(record(1), 0), 0u) << in;
}

TEST(StreamRegistration, StreamMethodsMustBeRegisteredAsStreams) {
  auto unary = [](CallContext&, const google::protobuf::Message&,
                  google::protobuf::Message&) -> Outcome { return std::nullopt; };
  auto stream = [](CallContext&, const google::protobuf::Message&, StreamSink&) -> Outcome {
    return std::nullopt;
  };
  ServiceRegistry as_unary;
  as_unary.add_unary("counterlink.test.v1.ThingService.WatchShelf", unary);
  EXPECT_THROW(HttpServer(HttpServerConfig{}, as_unary, nullptr, nullptr, nullptr),
               std::runtime_error);
  ServiceRegistry not_a_stream;
  not_a_stream.add_stream("counterlink.test.v1.ThingService.GetThing", stream);
  EXPECT_THROW(HttpServer(HttpServerConfig{}, not_a_stream, nullptr, nullptr, nullptr),
               std::runtime_error);
  ServiceRegistry ok;
  ok.add_stream("counterlink.test.v1.ThingService.WatchShelf", stream);
  EXPECT_EQ(ok.methods(), std::vector<std::string>{"counterlink.test.v1.ThingService.WatchShelf"});
  EXPECT_NE(ok.find_stream("counterlink.test.v1.ThingService.WatchShelf"), nullptr);
  EXPECT_EQ(ok.find_unary("counterlink.test.v1.ThingService.WatchShelf"), nullptr);
  EXPECT_NO_THROW(HttpServer(HttpServerConfig{}, ok, nullptr, nullptr, nullptr));
}

}  // namespace
}  // namespace counterlink::api
