// The gRPC server end to end: a real GrpcServer on port 0 and a stub
// generated from testdata/echo_test.proto, the same ThingService handlers as
// the REST tests.
#include "counterlink/api/grpc_server.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "api_test_support.h"
#include "echo_test.grpc.pb.h"

namespace counterlink::api {
namespace {

namespace v1 = counterlink::test::v1;

class GrpcServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    state_ = std::make_shared<testing::ThingServiceState>();
    testing::register_thing_service(registry_, state_);
    auth_ = std::make_shared<testing::TestAuthenticator>();
    GrpcServerConfig config;
    config.bind_address = "127.0.0.1";
    config.port = 0;
    config.worker_threads = 2;
    config.max_upload_bytes = kMaxUpload;
    server_ = std::make_unique<GrpcServer>(config, registry_, auth_,
                                           std::make_shared<testing::TestRateLimiter>(), nullptr);
    server_->start();
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::ThingService::NewStub(channel_);
  }

  void TearDown() override { server_->stop(); }

  static void authorize(grpc::ClientContext& ctx, const std::string& key = "tenant") {
    ctx.AddMetadata("authorization", "Bearer " + key);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  }

  static std::string trailer(const grpc::ClientContext& ctx, const std::string& name) {
    auto it = ctx.GetServerTrailingMetadata().find(name);
    return it == ctx.GetServerTrailingMetadata().end()
               ? ""
               : std::string(it->second.data(), it->second.size());
  }

  static constexpr size_t kMaxUpload = 64 * 1024;
  ServiceRegistry registry_;
  std::shared_ptr<testing::ThingServiceState> state_;
  std::shared_ptr<testing::TestAuthenticator> auth_;
  std::unique_ptr<GrpcServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ThingService::Stub> stub_;
};

TEST_F(GrpcServerTest, UnaryCallReachesTheSameHandlerAsRest) {
  grpc::ClientContext ctx;
  authorize(ctx);
  ctx.AddMetadata("x-request-id", "grpc-req-1");
  v1::GetThingRequest req;
  req.set_thing_id("abc");
  v1::Thing thing;
  grpc::Status status = stub_->GetThing(&ctx, req, &thing);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(thing.id(), "abc");
  EXPECT_EQ(thing.name(), "thing abc");
  EXPECT_EQ(state_->get_calls, 1);
  auto rid = ctx.GetServerInitialMetadata().find("x-request-id");
  ASSERT_NE(rid, ctx.GetServerInitialMetadata().end());
  EXPECT_EQ(std::string(rid->second.data(), rid->second.size()), "grpc-req-1");
}

TEST_F(GrpcServerTest, AuthenticatorSeesMetadataAndTheRequestBytesHash) {
  grpc::ClientContext ctx;
  authorize(ctx);
  ctx.AddMetadata("x-cl-timestamp", "1700000000");
  v1::RotateSecretRequest req;
  req.set_thing_id("t1");
  req.set_length(3);
  v1::RotateSecretResponse resp;
  ASSERT_TRUE(stub_->RotateSecret(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.secret(), "sss");
  CallCredentials c = auth_->last();
  EXPECT_EQ(c.authorization, "Bearer tenant");
  EXPECT_EQ(c.http_method, "POST");
  EXPECT_EQ(c.path, "/counterlink.test.v1.ThingService/RotateSecret");
  EXPECT_EQ(c.headers.at("x-cl-timestamp"), "1700000000");
  EXPECT_EQ(c.body_sha256_hex.size(), 64u);
  EXPECT_TRUE(c.secure_transport);
}

TEST_F(GrpcServerTest, MissingCredentialsIsUnauthenticatedWithProblemCode) {
  grpc::ClientContext ctx;
  v1::GetThingRequest req;
  v1::Thing thing;
  grpc::Status status = stub_->GetThing(&ctx, req, &thing);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_FALSE(status.error_message().empty());
  EXPECT_EQ(trailer(ctx, "counterlink-problem-code"), "unauthenticated");
  EXPECT_EQ(state_->get_calls, 0);
}

TEST_F(GrpcServerTest, AdminOnlyMethodIsPermissionDeniedForTenant) {
  grpc::ClientContext ctx;
  authorize(ctx);
  v1::DeleteThingRequest req;
  google::protobuf::Empty empty;
  EXPECT_EQ(stub_->DeleteThing(&ctx, req, &empty).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  grpc::ClientContext admin;
  authorize(admin, "admin");
  EXPECT_TRUE(stub_->DeleteThing(&admin, req, &empty).ok());
}

TEST_F(GrpcServerTest, RateLimitIsResourceExhaustedWithRetryAfter) {
  grpc::ClientContext ctx;
  authorize(ctx, "limited");
  v1::GetThingRequest req;
  v1::Thing thing;
  EXPECT_EQ(stub_->GetThing(&ctx, req, &thing).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(trailer(ctx, "retry-after"), "7");
  EXPECT_EQ(trailer(ctx, "counterlink-problem-code"), "rate_limited");
}

TEST_F(GrpcServerTest, HandlerProblemsMapToStatusCodesWithFieldInTrailers) {
  const std::pair<int, grpc::StatusCode> cases[] = {
      {400, grpc::StatusCode::INVALID_ARGUMENT}, {404, grpc::StatusCode::NOT_FOUND},
      {409, grpc::StatusCode::ALREADY_EXISTS},   {422, grpc::StatusCode::FAILED_PRECONDITION},
      {503, grpc::StatusCode::UNAVAILABLE},      {500, grpc::StatusCode::INTERNAL},
  };
  for (auto [http_status, code] : cases) {
    grpc::ClientContext ctx;
    authorize(ctx);
    v1::GetThingRequest req;
    req.set_fail_with_status(http_status);
    v1::Thing thing;
    grpc::Status status = stub_->GetThing(&ctx, req, &thing);
    EXPECT_EQ(status.error_code(), code) << http_status;
    EXPECT_EQ(status.error_message(), "Failing as asked.");
    EXPECT_EQ(trailer(ctx, "counterlink-problem-code"), "test_failure");
    EXPECT_EQ(trailer(ctx, "counterlink-problem-field"), "fail_with_status");
  }
}

TEST_F(GrpcServerTest, UnknownMethodIsUnimplemented) {
  grpc::GenericStub generic(channel_);
  grpc::ClientContext ctx;
  authorize(ctx);
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1);
  grpc::ByteBuffer response;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status result;
  generic.UnaryCall(&ctx, "/counterlink.test.v1.ThingService/NoSuchMethod", grpc::StubOptions(),
                    &request, &response, [&](grpc::Status s) {
                      std::lock_guard lock(mu);
                      result = s;
                      done = true;
                      cv.notify_all();
                    });
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return done; }));
  EXPECT_EQ(result.error_code(), grpc::StatusCode::UNIMPLEMENTED);
}

TEST_F(GrpcServerTest, UploadClientStreamDeliversEachMessageAsAChunk) {
  grpc::ClientContext ctx;
  authorize(ctx);
  v1::ImportThingsResponse resp;
  auto writer = stub_->ImportThings(&ctx, &resp);
  v1::ImportThingsRequest first;
  first.set_content_type("application/x-ndjson");
  first.set_batch("b1");
  first.set_dry_run(true);
  first.set_data("{\"serial\":\"a\"}\n");
  ASSERT_TRUE(writer->Write(first));
  for (int i = 0; i < 3; ++i) {
    v1::ImportThingsRequest more;
    more.set_data("{\"serial\":\"b" + std::to_string(i) + "\"}\n");
    ASSERT_TRUE(writer->Write(more));
  }
  writer->WritesDone();
  grpc::Status status = writer->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(resp.chunks(), 4);
  EXPECT_EQ(resp.batch(), "b1");
  EXPECT_EQ(resp.content_type(), "application/x-ndjson");
  std::lock_guard lock(state_->mu);
  EXPECT_EQ(state_->chunk_sizes.size(), 4u);
  EXPECT_EQ(state_->upload_params.at("dry_run"), "true");
  EXPECT_EQ(state_->upload_params.count("data"), 0u);
}

TEST_F(GrpcServerTest, UploadWithUnsupportedContentTypeIsInvalidArgument) {
  grpc::ClientContext ctx;
  authorize(ctx);
  v1::ImportThingsResponse resp;
  auto writer = stub_->ImportThings(&ctx, &resp);
  v1::ImportThingsRequest first;
  first.set_content_type("application/pdf");
  first.set_data("x");
  writer->Write(first);
  writer->WritesDone();
  grpc::Status status = writer->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(trailer(ctx, "counterlink-problem-field"), "content_type");
}

TEST_F(GrpcServerTest, UploadChunkProblemEndsTheStream) {
  grpc::ClientContext ctx;
  authorize(ctx);
  v1::ImportThingsResponse resp;
  auto writer = stub_->ImportThings(&ctx, &resp);
  v1::ImportThingsRequest first;
  first.set_content_type("text/csv");
  first.set_data("FAIL\n");
  writer->Write(first);
  writer->WritesDone();
  grpc::Status status = writer->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(trailer(ctx, "counterlink-problem-code"), "bad_row");
}

TEST_F(GrpcServerTest, UploadStreamLargerThanTheLimitIsRefusedAsTooLarge) {
  grpc::ClientContext ctx;
  authorize(ctx);
  v1::ImportThingsResponse resp;
  auto writer = stub_->ImportThings(&ctx, &resp);
  v1::ImportThingsRequest first;
  first.set_content_type("text/csv");
  first.set_data(std::string(16 * 1024, 'a') + "\n");
  writer->Write(first);
  for (int i = 0; i < 8; ++i) {  // 8 x 16 KiB more: over the 64 KiB limit
    v1::ImportThingsRequest more;
    more.set_data(std::string(16 * 1024, 'b') + "\n");
    if (!writer->Write(more)) break;  // the server already ended the call
  }
  writer->WritesDone();
  grpc::Status status = writer->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_EQ(trailer(ctx, "counterlink-problem-code"), "payload_too_large");
  std::lock_guard lock(state_->mu);
  size_t delivered = 0;
  for (size_t n : state_->chunk_sizes)
    delivered += n;
  EXPECT_LE(delivered, kMaxUpload) << "nothing beyond the limit reaches the handler";
}

TEST(GrpcStatusMapping, CoversTheProblemStatuses) {
  auto code = [](int status, std::string c = "x") {
    Problem p;
    p.http_status = status;
    p.code = std::move(c);
    return grpc_status_code(p);
  };
  EXPECT_EQ(code(401), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(code(403), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(code(409, "idempotency_request_in_progress"), grpc::StatusCode::ABORTED);
  EXPECT_EQ(code(412), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(code(413), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(code(429), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(code(502), grpc::StatusCode::INTERNAL);
}

}  // namespace
}  // namespace counterlink::api
