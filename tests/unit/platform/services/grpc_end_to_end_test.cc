// The services behind the real gRPC server (api::GrpcServer on port 0) with
// the API-key authenticator, the tenant rate limiter and a sealed idempotency
// store, as the app wires them, called through the generated
// counterlink.v1.DeviceService stub with `authorization: Bearer` metadata.
// One test also reads the device back through the real REST server.
#include <algorithm>
#include <chrono>
#include <optional>
#include <set>
#include <string_view>

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "counterlink/api/grpc_server.h"
#include "counterlink/api/http_server.h"
#include "counterlink/v1/api_keys.pb.h"
#include "counterlink/v1/devices.grpc.pb.h"

#include "fixture.h"

namespace counterlink::platform::testing {
namespace {

// Seals stored idempotent answers with the KeyRing, as the app does (they
// hold the device secret shown once).
class KeyRingSealer : public api::AnswerSealer {
 public:
  explicit KeyRingSealer(const KeyRing& keys) : keys_(keys) {}
  std::string seal(std::string_view answer, std::string_view aad) const override {
    return base64url_encode(keys_.seal(answer, aad));
  }
  std::optional<std::string> open(std::string_view sealed, std::string_view aad) const override {
    const auto bytes = base64url_decode(sealed);
    if (!bytes) return std::nullopt;
    OpenResult opened = keys_.open(*bytes, aad);
    if (!opened.ok()) return std::nullopt;
    return std::move(opened.plaintext);
  }

 private:
  const KeyRing& keys_;
};

// One HTTP/1.1 GET to 127.0.0.1:`port` with `Connection: close`; the whole
// response (status line, headers, body), or "" if the connection failed.
// Reads are bounded by a 10 s socket timeout.
std::string http_get(uint16_t port, const std::string& target, const std::string& token) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  timeval timeout{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) {
    const std::string request = "GET " + target +
                                " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + token +
                                "\r\nConnection: close\r\n\r\n";
    size_t sent = 0;
    while (sent < request.size()) {
      const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    char buffer[4096];
    ssize_t n;
    while ((n = ::recv(fd, buffer, sizeof buffer, 0)) > 0)
      response.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return response;
}

class GrpcEndToEndTest : public ServicesTest {
 protected:
  void SetUp() override {
    ServicesTest::SetUp();
    auth_ = std::make_shared<ApiKeyAuthenticator>(*store_, *keys_, ApiKeyAuthOptions{},
                                                  [this] { return now_ms_.load(); });
    limiter_ = std::make_shared<TenantRateLimiter>(*store_, RateLimitOptions{},
                                                   [this] { return now_ms_.load(); });
    sealer_ = std::make_shared<const KeyRingSealer>(*keys_);
    api::GrpcServerConfig config;
    config.idempotency_sealer = sealer_;
    config.bind_address = "127.0.0.1";
    config.port = 0;
    config.worker_threads = 2;
    server_ = std::make_unique<api::GrpcServer>(config, registry_, auth_, limiter_, store_.get());
    server_->start();
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                                   grpc::InsecureChannelCredentials());
    devices_ = v1::DeviceService::NewStub(channel_);
    product_a_ = make_product(a_);
    token_a_ = create_token(a_);
    token_b_ = create_token(b_);
  }

  void TearDown() override {
    devices_.reset();
    channel_.reset();
    if (http_) http_->stop();
    http_.reset();
    if (server_) server_->stop();
    server_.reset();
    ServicesTest::TearDown();
  }

  // A tenant API key of `who`'s tenant; its bearer token.
  std::string create_token(const api::Principal& who) {
    v1::CreateApiKeyRequest req;
    req.set_name("grpc-e2e");
    v1::CreateApiKeyResponse resp;
    auto p = call("ApiKeyService.CreateApiKey", who, req, resp);
    EXPECT_FALSE(p) << p->detail;
    return resp.token();
  }

  // Every call has a deadline so a broken server fails the test, not hangs it.
  static void with_deadline(grpc::ClientContext& ctx) {
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  }
  static void authorize(grpc::ClientContext& ctx, const std::string& token) {
    ctx.AddMetadata("authorization", "Bearer " + token);
    with_deadline(ctx);
  }

  static std::string trailer(const grpc::ClientContext& ctx, const std::string& name) {
    const auto& md = ctx.GetServerTrailingMetadata();
    auto it = md.find(name);
    return it == md.end() ? "" : std::string(it->second.data(), it->second.size());
  }
  static std::string initial(const grpc::ClientContext& ctx, const std::string& name) {
    const auto& md = ctx.GetServerInitialMetadata();
    auto it = md.find(name);
    return it == md.end() ? "" : std::string(it->second.data(), it->second.size());
  }

  v1::CreateDeviceRequest device_request(const std::string& serial) const {
    v1::CreateDeviceRequest req;
    req.set_product_id(product_a_);
    req.set_serial(serial);
    return req;
  }

  // CreateDevice over gRPC as tenant A; fails the test unless it succeeds.
  v1::CreateDeviceResponse grpc_create(const std::string& serial) {
    grpc::ClientContext ctx;
    authorize(ctx, token_a_);
    v1::CreateDeviceResponse resp;
    grpc::Status status = devices_->CreateDevice(&ctx, device_request(serial), &resp);
    EXPECT_TRUE(status.ok()) << status.error_code() << ": " << status.error_message();
    return resp;
  }

  void start_http() {
    api::HttpServerConfig config;
    config.idempotency_sealer = sealer_;
    config.bind_address = "127.0.0.1";
    config.port = 0;
    config.worker_threads = 1;
    http_ = std::make_unique<api::HttpServer>(config, registry_, auth_, limiter_, store_.get());
    http_->start();
  }

  std::shared_ptr<ApiKeyAuthenticator> auth_;
  std::shared_ptr<TenantRateLimiter> limiter_;
  std::shared_ptr<const KeyRingSealer> sealer_;
  std::unique_ptr<api::GrpcServer> server_;
  std::unique_ptr<api::HttpServer> http_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::DeviceService::Stub> devices_;
  std::string product_a_, token_a_, token_b_;
};

TEST_F(GrpcEndToEndTest, CreatedDeviceIsReadBackWithoutItsSecret) {
  grpc::ClientContext create_ctx;
  authorize(create_ctx, token_a_);
  v1::CreateDeviceRequest req = device_request("GRPC-0001");
  (*req.mutable_labels())["region"] = "east";
  (*req.mutable_labels())["line"] = "a";
  v1::CreateDeviceResponse created;
  grpc::Status status = devices_->CreateDevice(&create_ctx, req, &created);
  ASSERT_TRUE(status.ok()) << status.error_code() << ": " << status.error_message();
  const std::string id = created.device().id();
  EXPECT_EQ(id.rfind("dv_", 0), 0u) << id;
  EXPECT_EQ(created.device().tenant_id(), tenant_a_);
  ASSERT_FALSE(created.secret().empty());

  grpc::ClientContext get_ctx;
  authorize(get_ctx, token_a_);
  v1::GetDeviceRequest get;
  get.set_device_id(id);
  v1::Device device;
  status = devices_->GetDevice(&get_ctx, get, &device);
  ASSERT_TRUE(status.ok()) << status.error_code() << ": " << status.error_message();
  EXPECT_EQ(device.id(), id);
  EXPECT_EQ(device.tenant_id(), tenant_a_);
  EXPECT_EQ(device.product_id(), product_a_);
  EXPECT_EQ(device.serial(), "GRPC-0001");
  ASSERT_EQ(device.labels().size(), 2);
  EXPECT_EQ(device.labels().at("region"), "east");
  EXPECT_EQ(device.labels().at("line"), "a");
  // The answer bytes (unknown fields included) never carry the secret.
  EXPECT_EQ(device.SerializeAsString().find(created.secret()), std::string::npos);

  grpc::ClientContext list_ctx;
  authorize(list_ctx, token_a_);
  v1::ListDevicesResponse listed;
  status = devices_->ListDevices(&list_ctx, v1::ListDevicesRequest{}, &listed);
  ASSERT_TRUE(status.ok()) << status.error_code() << ": " << status.error_message();
  ASSERT_EQ(listed.devices_size(), 1);
  EXPECT_EQ(listed.devices(0).id(), id);
  EXPECT_EQ(listed.SerializeAsString().find(created.secret()), std::string::npos);
}

TEST_F(GrpcEndToEndTest, DeviceCreatedOverGrpcIsVisibleOverRest) {
  start_http();
  v1::CreateDeviceResponse created = grpc_create("BOTH-1");
  ASSERT_FALSE(created.device().id().empty());
  const std::string out = http_get(http_->port(), "/v1/devices/" + created.device().id(), token_a_);
  EXPECT_EQ(out.rfind("HTTP/1.1 200", 0), 0u) << out;
  EXPECT_NE(out.find("\"id\":\"" + created.device().id() + "\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"serial\":\"BOTH-1\""), std::string::npos) << out;
  EXPECT_EQ(out.find(created.secret()), std::string::npos) << out;

  // And tenant B does not see it over REST either.
  const std::string other =
      http_get(http_->port(), "/v1/devices/" + created.device().id(), token_b_);
  EXPECT_EQ(other.rfind("HTTP/1.1 404", 0), 0u) << other;
}

TEST_F(GrpcEndToEndTest, OtherTenantsDeviceIsNotFound) {
  v1::CreateDeviceResponse created = grpc_create("ISO-1");
  ASSERT_FALSE(created.device().id().empty());

  grpc::ClientContext ctx;
  authorize(ctx, token_b_);
  v1::GetDeviceRequest get;
  get.set_device_id(created.device().id());
  v1::Device device;
  grpc::Status status = devices_->GetDevice(&ctx, get, &device);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << status.error_message();
  EXPECT_EQ(trailer(ctx, "counterlink-problem-code"), "device_not_found");
  EXPECT_TRUE(device.id().empty());

  grpc::ClientContext list_ctx;
  authorize(list_ctx, token_b_);
  v1::ListDevicesResponse listed;
  status = devices_->ListDevices(&list_ctx, v1::ListDevicesRequest{}, &listed);
  ASSERT_TRUE(status.ok()) << status.error_code() << ": " << status.error_message();
  EXPECT_EQ(listed.devices_size(), 0);
}

TEST_F(GrpcEndToEndTest, CallWithoutCredentialsIsUnauthenticated) {
  grpc::ClientContext ctx;
  with_deadline(ctx);
  v1::CreateDeviceResponse resp;
  grpc::Status status = devices_->CreateDevice(&ctx, device_request("NOAUTH-1"), &resp);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << status.error_message();
  EXPECT_FALSE(status.error_message().empty());
  EXPECT_EQ(store_->count_devices(tenant_a_).value(), 0);
}

TEST_F(GrpcEndToEndTest, InvalidSerialIsInvalidArgumentNamingTheField) {
  grpc::ClientContext ctx;
  authorize(ctx, token_a_);
  v1::CreateDeviceResponse resp;
  grpc::Status status = devices_->CreateDevice(&ctx, device_request("bad serial"), &resp);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_EQ(trailer(ctx, "counterlink-problem-field"), "serial");
  EXPECT_FALSE(trailer(ctx, "counterlink-problem-code").empty());
  EXPECT_EQ(store_->count_devices(tenant_a_).value(), 0);
}

TEST_F(GrpcEndToEndTest, ListDevicesPagesThroughEveryDeviceOnce) {
  std::set<std::string> created;
  for (int i = 0; i < 25; ++i)
    created.insert(grpc_create("PAGE-" + std::to_string(i)).device().id());
  ASSERT_EQ(created.size(), 25u);

  std::vector<std::string> seen;
  std::vector<int> page_sizes;
  std::string token;
  for (int page = 0; page < 10; ++page) {  // bound: a token loop fails, not hangs
    grpc::ClientContext ctx;
    authorize(ctx, token_a_);
    v1::ListDevicesRequest req;
    req.set_page_size(10);
    req.set_page_token(token);
    v1::ListDevicesResponse resp;
    grpc::Status status = devices_->ListDevices(&ctx, req, &resp);
    ASSERT_TRUE(status.ok()) << status.error_code() << ": " << status.error_message();
    page_sizes.push_back(resp.devices_size());
    for (const auto& d : resp.devices())
      seen.push_back(d.id());
    token = resp.next_page_token();
    if (token.empty()) break;
  }
  EXPECT_EQ(page_sizes, (std::vector<int>{10, 10, 5}));
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), seen.size()) << "repeats";
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()), created);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end())) << "creation (id) order";
}

TEST_F(GrpcEndToEndTest, ImportStreamOfCsvChunksRegistersEveryRow) {
  std::string csv = "serial,labels\n";
  for (int i = 0; i < 500; ++i)
    csv += "IMP-" + std::to_string(i) + ",\"region=east;n=" + std::to_string(i) + "\"\n";
  // 997 bytes is prime to the row length, so chunks split rows (and the
  // quoted labels) at many different places.
  constexpr size_t kChunkBytes = 997;
  ASSERT_GT(csv.size(), 5 * kChunkBytes);

  grpc::ClientContext ctx;
  authorize(ctx, token_a_);
  v1::ImportDevicesResponse resp;
  auto writer = devices_->ImportDevices(&ctx, &resp);
  size_t messages = 0;
  for (size_t at = 0; at < csv.size(); at += kChunkBytes) {
    v1::ImportDevicesRequest msg;
    if (at == 0) {
      msg.set_content_type("text/csv");
      msg.set_product_id(product_a_);
    }
    msg.set_data(csv.substr(at, kChunkBytes));
    ASSERT_TRUE(writer->Write(msg)) << "stream broke at message " << messages;
    ++messages;
  }
  ASSERT_TRUE(writer->WritesDone());
  grpc::Status status = writer->Finish();
  ASSERT_TRUE(status.ok()) << status.error_code() << ": " << status.error_message() << " ("
                           << trailer(ctx, "counterlink-problem-code") << ")";
  EXPECT_GT(messages, 5u);
  EXPECT_EQ(resp.imported(), 500);
  EXPECT_EQ(resp.failed(), 0);
  EXPECT_EQ(resp.errors_size(), 0);
  ASSERT_EQ(resp.devices_size(), 500);
  EXPECT_EQ(resp.devices(0).serial(), "IMP-0");
  EXPECT_EQ(resp.devices(499).serial(), "IMP-499");
  EXPECT_EQ(resp.devices(499).row(), 500);
  EXPECT_EQ(store_->count_devices(tenant_a_).value(), 500);

  // A row split across chunks kept its quoted labels.
  grpc::ClientContext get_ctx;
  authorize(get_ctx, token_a_);
  v1::GetDeviceRequest get;
  get.set_device_id(resp.devices(321).id());
  v1::Device device;
  status = devices_->GetDevice(&get_ctx, get, &device);
  ASSERT_TRUE(status.ok()) << status.error_code() << ": " << status.error_message();
  EXPECT_EQ(device.serial(), "IMP-321");
  EXPECT_EQ(device.labels().size(), 2);
  EXPECT_EQ(device.labels().count("n") ? device.labels().at("n") : "", "321");
}

TEST_F(GrpcEndToEndTest, RepeatedCreateWithIdempotencyKeyReplaysTheFirstDevice) {
  v1::CreateDeviceResponse first, second;
  for (auto* answer : {&first, &second}) {
    grpc::ClientContext ctx;
    authorize(ctx, token_a_);
    ctx.AddMetadata("idempotency-key", "6f1c2e4a-grpc-create-1");
    grpc::Status status = devices_->CreateDevice(&ctx, device_request("IDEM-1"), answer);
    ASSERT_TRUE(status.ok()) << status.error_code() << ": " << status.error_message();
    EXPECT_EQ(initial(ctx, "idempotent-replayed"), answer == &second ? "true" : "");
  }
  ASSERT_FALSE(first.device().id().empty());
  EXPECT_EQ(second.device().id(), first.device().id());
  EXPECT_EQ(second.device().serial(), "IDEM-1");
  // The replay is the first answer (opened from the sealed record).
  EXPECT_EQ(second.secret(), first.secret());
  EXPECT_EQ(store_->count_devices(tenant_a_).value(), 1);

  // Without the key the same request is a new create: the serial is taken.
  grpc::ClientContext ctx;
  authorize(ctx, token_a_);
  v1::CreateDeviceResponse third;
  grpc::Status status = devices_->CreateDevice(&ctx, device_request("IDEM-1"), &third);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ALREADY_EXISTS) << status.error_message();
  EXPECT_EQ(store_->count_devices(tenant_a_).value(), 1);
}

}  // namespace
}  // namespace counterlink::platform::testing
