// Idempotency-Key on idempotent_create methods, over REST and gRPC, with the
// real SQLite store keeping the records.
#include <filesystem>
#include <random>
#include <thread>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "counterlink/api/grpc_server.h"
#include "counterlink/api/http_server.h"
#include "counterlink/store/store.h"

#include "api_test_support.h"
#include "echo_test.grpc.pb.h"

namespace counterlink::api {
namespace {

namespace v1 = counterlink::test::v1;
using nlohmann::json;
using testing::http;
using testing::HttpRequest;
using testing::HttpResult;

class IdempotencyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("cl_api_idem_" + std::to_string(std::random_device{}()) + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    store_ = store::open_store({"sqlite://" + (dir_ / "t.db").string()});
    state_ = std::make_shared<testing::ThingServiceState>();
    testing::register_thing_service(registry_, state_);
    auto auth = std::make_shared<testing::TestAuthenticator>();
    HttpServerConfig config;
    config.bind_address = "127.0.0.1";
    config.port = 0;
    config.worker_threads = 4;
    http_ = std::make_unique<HttpServer>(config, registry_, auth, nullptr, store_.get());
    http_->start();
    GrpcServerConfig gconfig;
    gconfig.bind_address = "127.0.0.1";
    gconfig.port = 0;
    grpc_ = std::make_unique<GrpcServer>(gconfig, registry_, auth, nullptr, store_.get());
    grpc_->start();
    base_ = "http://127.0.0.1:" + std::to_string(http_->port());
  }

  void TearDown() override {
    grpc_->stop();
    http_->stop();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  HttpResult create(const std::string& body, const std::string& key,
                    const std::string& tenant = "tenant") {
    HttpRequest req;
    req.method = "POST";
    req.url = base_ + "/v1/things";
    req.body = body;
    req.headers = {"Authorization: Bearer " + tenant, "Content-Type: application/json"};
    if (!key.empty()) req.headers.push_back("Idempotency-Key: " + key);
    return http(req);
  }

  std::filesystem::path dir_;
  std::unique_ptr<store::Store> store_;
  ServiceRegistry registry_;
  std::shared_ptr<testing::ThingServiceState> state_;
  std::unique_ptr<HttpServer> http_;
  std::unique_ptr<GrpcServer> grpc_;
  std::string base_;
};

TEST_F(IdempotencyTest, RetryWithSameKeyAndRequestReplaysTheFirstAnswerWithoutRunningTheHandler) {
  auto first = create(R"({"name":"lamp","tags":["a","b"]})", "key-1");
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(first.headers.count("idempotent-replayed"), 0u);
  // Same request, other key order and whitespace.
  auto retry = create(R"({ "tags": ["a", "b"],
                           "name": "lamp" })",
                      "key-1");
  ASSERT_EQ(retry.status, 200) << retry.body;
  EXPECT_EQ(retry.headers.at("idempotent-replayed"), "true");
  EXPECT_EQ(json::parse(retry.body), json::parse(first.body));
  EXPECT_EQ(state_->create_calls, 1);
}

TEST_F(IdempotencyTest, CallsWithoutAKeyAlwaysRun) {
  auto a = create(R"({"name":"lamp"})", "");
  auto b = create(R"({"name":"lamp"})", "");
  ASSERT_EQ(a.status, 200);
  ASSERT_EQ(b.status, 200);
  EXPECT_NE(json::parse(a.body)["id"], json::parse(b.body)["id"]);
  EXPECT_EQ(state_->create_calls, 2);
}

TEST_F(IdempotencyTest, SameKeyWithADifferentRequestIs422) {
  ASSERT_EQ(create(R"({"name":"lamp"})", "key-2").status, 200);
  auto other = create(R"({"name":"chair"})", "key-2");
  ASSERT_EQ(other.status, 422) << other.body;
  EXPECT_EQ(json::parse(other.body)["code"], "idempotency_key_reused");
  EXPECT_EQ(state_->create_calls, 1);
}

TEST_F(IdempotencyTest, ConcurrentDuplicateGets409InProgressAndOnlyOneRuns) {
  {
    std::lock_guard lock(state_->mu);
    state_->hold_creates = true;
  }
  HttpResult first;
  std::thread a([&] { first = create(R"({"name":"lamp"})", "key-3"); });
  {
    std::unique_lock lock(state_->mu);
    ASSERT_TRUE(state_->cv.wait_for(lock, std::chrono::seconds(10),
                                    [&] { return state_->creates_waiting == 1; }));
  }
  auto duplicate = create(R"({"name":"lamp"})", "key-3");
  {
    std::lock_guard lock(state_->mu);
    state_->hold_creates = false;
  }
  state_->cv.notify_all();
  a.join();
  ASSERT_EQ(duplicate.status, 409) << duplicate.body;
  EXPECT_EQ(json::parse(duplicate.body)["code"], "idempotency_request_in_progress");
  EXPECT_EQ(duplicate.headers.at("retry-after"), "1");
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(state_->create_calls, 1);
  // Once done, the retry replays.
  auto retry = create(R"({"name":"lamp"})", "key-3");
  EXPECT_EQ(retry.headers.at("idempotent-replayed"), "true");
  EXPECT_EQ(json::parse(retry.body)["id"], json::parse(first.body)["id"]);
}

TEST_F(IdempotencyTest, FinalClientErrorIsReplayedToo) {
  auto first = create(R"({"name":""})", "key-4");
  ASSERT_EQ(first.status, 400) << first.body;
  auto retry = create(R"({"name":""})", "key-4");
  ASSERT_EQ(retry.status, 400);
  EXPECT_EQ(retry.headers.at("content-type"), "application/problem+json");
  EXPECT_EQ(retry.headers.at("idempotent-replayed"), "true");
  EXPECT_EQ(json::parse(retry.body)["field"], "thing.name");
  EXPECT_EQ(state_->create_calls, 1);
}

TEST_F(IdempotencyTest, KeysAreScopedPerTenant) {
  ASSERT_EQ(create(R"({"name":"lamp"})", "key-5", "tenant").status, 200);
  auto other_tenant = create(R"({"name":"lamp"})", "key-5", "tenant2");
  ASSERT_EQ(other_tenant.status, 200);
  EXPECT_EQ(other_tenant.headers.count("idempotent-replayed"), 0u);
  EXPECT_EQ(state_->create_calls, 2);
}

TEST_F(IdempotencyTest, InvalidKeyIs400) {
  auto r = create(R"({"name":"lamp"})", std::string(256, 'k'));
  ASSERT_EQ(r.status, 400);
  EXPECT_EQ(json::parse(r.body)["field"], "Idempotency-Key");
  EXPECT_EQ(state_->create_calls, 0);
}

TEST_F(IdempotencyTest, GrpcRetryWithTheSameKeyReplaysTheRestAnswer) {
  auto rest = create(R"({"name":"lamp"})", "key-6");
  ASSERT_EQ(rest.status, 200);
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(grpc_->port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::ThingService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer tenant");
  ctx.AddMetadata("idempotency-key", "key-6");
  v1::CreateThingRequest req;
  req.mutable_thing()->set_name("lamp");
  v1::Thing thing;
  grpc::Status status = stub->CreateThing(&ctx, req, &thing);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(thing.id(), json::parse(rest.body)["id"]);
  EXPECT_EQ(state_->create_calls, 1);
  auto replayed = ctx.GetServerInitialMetadata().find("idempotent-replayed");
  ASSERT_NE(replayed, ctx.GetServerInitialMetadata().end());

  grpc::ClientContext reused;
  reused.AddMetadata("authorization", "Bearer tenant");
  reused.AddMetadata("idempotency-key", "key-6");
  req.mutable_thing()->set_name("chair");
  EXPECT_EQ(stub->CreateThing(&reused, req, &thing).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

}  // namespace
}  // namespace counterlink::api
