// Server streams over gRPC: a real GrpcServer on port 0 and the stub
// generated from testdata/echo_test.proto reading WatchShelf, the same
// handler the REST stream tests use.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "counterlink/api/grpc_server.h"

#include "api_test_support.h"
#include "echo_test.grpc.pb.h"

namespace counterlink::api {
namespace {

namespace v1 = counterlink::test::v1;
using Clock = std::chrono::steady_clock;

class GrpcStreamTest : public ::testing::Test {
 protected:
  void SetUp() override { start_server(GrpcServerConfig{}); }

  void TearDown() override { server_->stop(); }

  void start_server(GrpcServerConfig config) {
    if (server_) server_->stop();
    server_.reset();
    registry_ = std::make_unique<ServiceRegistry>();
    state_ = std::make_shared<testing::ThingServiceState>();
    testing::register_thing_service(*registry_, state_);
    config.bind_address = "127.0.0.1";
    config.port = 0;
    config.worker_threads = 2;
    server_ = std::make_unique<GrpcServer>(config, *registry_,
                                           std::make_shared<testing::TestAuthenticator>(),
                                           std::make_shared<testing::TestRateLimiter>(), nullptr);
    server_->start();
    auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                                       grpc::InsecureChannelCredentials());
    stub_ = v1::ThingService::NewStub(channel);
  }

  static void authorize(grpc::ClientContext& ctx, const std::string& key = "tenant") {
    ctx.AddMetadata("authorization", "Bearer " + key);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  }

  static std::string trailer(const grpc::ClientContext& ctx, const std::string& name) {
    auto it = ctx.GetServerTrailingMetadata().find(name);
    return it == ctx.GetServerTrailingMetadata().end()
               ? ""
               : std::string(it->second.data(), it->second.size());
  }

  static v1::WatchShelfRequest request(int count) {
    v1::WatchShelfRequest req;
    req.set_shelf("s1");
    req.set_count(count);
    return req;
  }

  template <class Ready>
  bool wait_state(Ready ready, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::unique_lock lock(state_->mu);
    return state_->cv.wait_for(lock, timeout, [&] { return ready(*state_); });
  }

  std::unique_ptr<ServiceRegistry> registry_;
  std::shared_ptr<testing::ThingServiceState> state_;
  std::unique_ptr<GrpcServer> server_;
  std::unique_ptr<v1::ThingService::Stub> stub_;
};

TEST_F(GrpcStreamTest, StubReadsEachMessageWhileTheHandlerIsStillRunning) {
  grpc::ClientContext ctx;
  authorize(ctx);
  auto req = request(2);
  req.set_gated(true);
  auto reader = stub_->WatchShelf(&ctx, req);
  v1::ShelfEvent event;
  ASSERT_TRUE(reader->Read(&event));
  EXPECT_EQ(event.id(), "1");
  EXPECT_EQ(event.shelf(), "s1");
  // The second waits for the test.
  EXPECT_TRUE(wait_state([](auto& s) { return s.stream_events_sent == 1; }));
  {
    std::lock_guard lock(state_->mu);
    EXPECT_EQ(state_->streams_finished, 0);
    state_->stream_released = 1;
  }
  state_->cv.notify_all();
  ASSERT_TRUE(reader->Read(&event));
  EXPECT_EQ(event.id(), "2");
  EXPECT_FALSE(reader->Read(&event));
  grpc::Status status = reader->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  auto rid = ctx.GetServerInitialMetadata().find("x-request-id");
  EXPECT_NE(rid, ctx.GetServerInitialMetadata().end());
  std::lock_guard lock(state_->mu);
  EXPECT_EQ(state_->stream_transport, "grpc");
}

TEST_F(GrpcStreamTest, LastEventIdMetadataReachesTheHandler) {
  grpc::ClientContext ctx;
  authorize(ctx);
  ctx.AddMetadata("last-event-id", "41");
  auto reader = stub_->WatchShelf(&ctx, request(1));
  v1::ShelfEvent event;
  ASSERT_TRUE(reader->Read(&event));
  EXPECT_EQ(event.id(), "42");
  EXPECT_EQ(event.resumed_after(), "41");
  EXPECT_FALSE(reader->Read(&event));
  EXPECT_TRUE(reader->Finish().ok());
}

TEST_F(GrpcStreamTest, ProblemBeforeTheFirstMessageIsTheStatus) {
  grpc::ClientContext ctx;
  authorize(ctx);
  auto req = request(1);
  req.set_fail_with_status(404);
  auto reader = stub_->WatchShelf(&ctx, req);
  v1::ShelfEvent event;
  EXPECT_FALSE(reader->Read(&event));
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(status.error_message(), "Failing as asked.");
  EXPECT_EQ(trailer(ctx, "counterlink-problem-code"), "test_failure");
}

TEST_F(GrpcStreamTest, ProblemAfterMessagesIsTheStatusAtTheEnd) {
  grpc::ClientContext ctx;
  authorize(ctx);
  auto req = request(2);
  req.set_fail_after_status(503);
  auto reader = stub_->WatchShelf(&ctx, req);
  v1::ShelfEvent event;
  ASSERT_TRUE(reader->Read(&event));
  ASSERT_TRUE(reader->Read(&event));
  EXPECT_FALSE(reader->Read(&event));
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(trailer(ctx, "counterlink-problem-code"), "test_failure");
  EXPECT_EQ(trailer(ctx, "retry-after"), "3");
}

TEST_F(GrpcStreamTest, PipelineRunsBeforeTheHandler) {
  grpc::ClientContext anonymous;
  anonymous.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto reader = stub_->WatchShelf(&anonymous, request(1));
  v1::ShelfEvent event;
  EXPECT_FALSE(reader->Read(&event));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  grpc::ClientContext limited;
  authorize(limited, "limited");
  reader = stub_->WatchShelf(&limited, request(1));
  EXPECT_FALSE(reader->Read(&event));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  std::lock_guard lock(state_->mu);
  EXPECT_EQ(state_->streams_started, 0);
}

TEST_F(GrpcStreamTest, ClientCancellationCancelsTheStream) {
  grpc::ClientContext ctx;
  authorize(ctx);
  auto req = request(1);
  req.set_linger(true);
  auto reader = stub_->WatchShelf(&ctx, req);
  v1::ShelfEvent event;
  ASSERT_TRUE(reader->Read(&event));
  ctx.TryCancel();
  ASSERT_TRUE(wait_state([](auto& s) { return s.streams_finished == 1; }))
      << "the handler did not see the cancellation";
  {
    std::lock_guard lock(state_->mu);
    EXPECT_TRUE(state_->stream_saw_cancel);
    EXPECT_FALSE(state_->send_after_cancel_ok);
  }
  while (reader->Read(&event)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(GrpcStreamTest, StopEndsAnOpenStreamPromptlyAsUnavailable) {
  grpc::ClientContext ctx;
  authorize(ctx);
  auto req = request(1);
  req.set_linger(true);
  auto reader = stub_->WatchShelf(&ctx, req);
  v1::ShelfEvent event;
  ASSERT_TRUE(reader->Read(&event));
  auto started = Clock::now();
  server_->stop();
  EXPECT_LT(Clock::now() - started, std::chrono::seconds(2));
  {
    std::lock_guard lock(state_->mu);
    EXPECT_EQ(state_->streams_finished, 1);
    EXPECT_FALSE(state_->send_after_cancel_ok);
  }
  EXPECT_FALSE(reader->Read(&event));
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
}

TEST_F(GrpcStreamTest, StreamsOverTheLimitAreUnavailable) {
  GrpcServerConfig config;
  config.max_streams = 1;
  start_server(config);
  grpc::ClientContext first;
  authorize(first);
  auto req = request(1);
  req.set_linger(true);
  auto open = stub_->WatchShelf(&first, req);
  v1::ShelfEvent event;
  ASSERT_TRUE(open->Read(&event));

  grpc::ClientContext second;
  authorize(second);
  auto refused = stub_->WatchShelf(&second, request(1));
  EXPECT_FALSE(refused->Read(&event));
  EXPECT_EQ(refused->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(trailer(second, "counterlink-problem-code"), "too_many_streams");
  EXPECT_EQ(trailer(second, "retry-after"), "5");

  first.TryCancel();
  while (open->Read(&event)) {
  }
  open->Finish();
}

TEST_F(GrpcStreamTest, SlowReaderIsHeldBackByFlowControlNotBuffered) {
  GrpcServerConfig config;
  config.stream_buffer_bytes = 64 << 10;
  start_server(config);
  grpc::ClientContext ctx;
  authorize(ctx);
  const int kEvents = 2000;  // x 16 KiB: far more than gRPC's flow-control windows
  auto req = request(kEvents);
  req.set_padding(16 << 10);
  auto reader = stub_->WatchShelf(&ctx, req);
  v1::ShelfEvent event;
  ASSERT_TRUE(reader->Read(&event));
  int sent = -1;
  for (int i = 0; i < 50; ++i) {  // until the handler stops making progress
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::lock_guard lock(state_->mu);
    if (state_->stream_events_sent == sent) break;
    sent = state_->stream_events_sent;
  }
  {
    std::lock_guard lock(state_->mu);
    EXPECT_LT(state_->stream_events_sent, kEvents / 4) << "send() does not block";
  }
  int read = 1;
  while (reader->Read(&event))
    ++read;
  EXPECT_EQ(read, kEvents);
  EXPECT_TRUE(reader->Finish().ok());
}

}  // namespace
}  // namespace counterlink::api
