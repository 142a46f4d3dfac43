#include "counterlink/api/grpc_server.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include "call_pipeline.h"
#include "http_common.h"
#include "json_codec.h"
#include "method_table.h"

namespace counterlink::api {

namespace gp = google::protobuf;
namespace net = boost::asio;

int grpc_status_code(const Problem& problem) {
  switch (problem.http_status) {
    case 400:
    case 415:
      return grpc::StatusCode::INVALID_ARGUMENT;
    case 401:
      return grpc::StatusCode::UNAUTHENTICATED;
    case 403:
      return grpc::StatusCode::PERMISSION_DENIED;
    case 404:
      return grpc::StatusCode::NOT_FOUND;
    case 409:
      return problem.code == "idempotency_request_in_progress" ? grpc::StatusCode::ABORTED
                                                               : grpc::StatusCode::ALREADY_EXISTS;
    case 412:
    case 422:
      return grpc::StatusCode::FAILED_PRECONDITION;
    case 413:
    case 429:
      return grpc::StatusCode::RESOURCE_EXHAUSTED;
    case 501:
      return grpc::StatusCode::UNIMPLEMENTED;
    case 503:
      return grpc::StatusCode::UNAVAILABLE;
    default:
      return grpc::StatusCode::INTERNAL;
  }
}

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw std::runtime_error("gRPC server: cannot read \"" + path + "\"; set a readable PEM file");
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

bool byte_buffer_to_string(const grpc::ByteBuffer& buffer, std::string& out) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return false;
  out.clear();
  for (const auto& s : slices)
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return true;
}

grpc::ByteBuffer string_to_byte_buffer(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

bool peer_is_loopback(const std::string& peer) {
  return peer.rfind("ipv4:127.", 0) == 0 || peer.rfind("ipv6:[::1]", 0) == 0 ||
         peer.rfind("ipv6:[::ffff:127.", 0) == 0 || peer.rfind("unix:", 0) == 0;
}

// A set scalar field as the text a query parameter would carry.
bool field_text(const gp::Message& msg, const gp::FieldDescriptor* f, std::string& out) {
  const gp::Reflection* r = msg.GetReflection();
  if (f->is_repeated()) return false;
  switch (f->cpp_type()) {
    case gp::FieldDescriptor::CPPTYPE_STRING:
      out = r->GetString(msg, f);
      return true;
    case gp::FieldDescriptor::CPPTYPE_INT32:
      out = std::to_string(r->GetInt32(msg, f));
      return true;
    case gp::FieldDescriptor::CPPTYPE_INT64:
      out = std::to_string(r->GetInt64(msg, f));
      return true;
    case gp::FieldDescriptor::CPPTYPE_UINT32:
      out = std::to_string(r->GetUInt32(msg, f));
      return true;
    case gp::FieldDescriptor::CPPTYPE_UINT64:
      out = std::to_string(r->GetUInt64(msg, f));
      return true;
    case gp::FieldDescriptor::CPPTYPE_BOOL:
      out = r->GetBool(msg, f) ? "true" : "false";
      return true;
    case gp::FieldDescriptor::CPPTYPE_DOUBLE: {
      std::ostringstream s;
      s << r->GetDouble(msg, f);
      out = s.str();
      return true;
    }
    case gp::FieldDescriptor::CPPTYPE_FLOAT: {
      std::ostringstream s;
      s << r->GetFloat(msg, f);
      out = s.str();
      return true;
    }
    case gp::FieldDescriptor::CPPTYPE_ENUM:
      out = r->GetEnum(msg, f)->name();
      return true;
    default:
      return false;
  }
}

}  // namespace

class GrpcServerImpl final : public grpc::CallbackGenericService {
 public:
  GrpcServerImpl(GrpcServerConfig config, const ServiceRegistry& registry,
                 std::shared_ptr<CallAuthenticator> authenticator,
                 std::shared_ptr<RateLimiter> limiter, store::Store* store)
      : config_(std::move(config)),
        table_(registry),
        pipeline_(std::move(authenticator), std::move(limiter), store, config_.idempotency_sealer) {
  }

  ~GrpcServerImpl() override { stop(); }

  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override;

  void start() {
    if (server_) return;
    std::shared_ptr<grpc::ServerCredentials> creds;
    if (!config_.tls_cert_file.empty() || !config_.tls_key_file.empty()) {
      grpc::SslServerCredentialsOptions options;
      options.pem_key_cert_pairs.push_back(
          {read_file(config_.tls_key_file), read_file(config_.tls_cert_file)});
      creds = grpc::SslServerCredentials(options);
      tls_ = true;
    } else {
      creds = grpc::InsecureServerCredentials();
    }
    workers_ = std::make_unique<net::thread_pool>(std::max(1, config_.worker_threads));
    grpc::ServerBuilder builder;
    int selected = 0;
    std::string address = config_.bind_address + ":" + std::to_string(config_.port);
    builder.AddListeningPort(address, creds, &selected);
    builder.SetMaxReceiveMessageSize(config_.max_message_bytes);
    builder.RegisterCallbackGenericService(this);
    server_ = builder.BuildAndStart();
    if (!server_ || selected == 0) {
      server_.reset();
      throw std::runtime_error("gRPC server: cannot listen on " + address +
                               "; choose a free port or stop the other process");
    }
    port_ = static_cast<uint16_t>(selected);
    spdlog::info("grpc.started bind={} port={} tls={} workers={} methods={}", config_.bind_address,
                 port_, tls_, config_.worker_threads, table_.methods().size());
  }

  void stop() {
    if (!server_ || stopped_) return;
    stopped_ = true;
    server_->Shutdown(std::chrono::system_clock::now() + config_.stop_grace);
    workers_->join();
    server_->Wait();
    spdlog::info("grpc.stopped port={}", port_);
  }

  GrpcServerConfig config_;
  MethodTable table_;
  CallPipeline pipeline_;
  std::unique_ptr<net::thread_pool> workers_;
  std::unique_ptr<grpc::Server> server_;
  uint16_t port_ = 0;
  bool tls_ = false;
  bool stopped_ = false;
};

namespace {

// One call. Lives until OnDone. gRPC invokes the On* callbacks one at a time;
// the work between them runs on the worker pool, and the next Start* is only
// issued when that work is done, so state needs no lock.
class CallReactor final : public grpc::ServerGenericBidiReactor {
 public:
  CallReactor(GrpcServerImpl& server, grpc::GenericCallbackServerContext* ctx)
      : server_(server), ctx_(ctx) {
    const auto& md = ctx_->client_metadata();
    auto rid = md.find("x-request-id");
    std::string incoming =
        rid != md.end() ? std::string(rid->second.data(), rid->second.size()) : "";
    call_.request_id = valid_request_id(incoming) ? incoming : generate_request_id();
    call_.transport = "grpc";
    call_.remote_address = ctx_->peer();
    ctx_->AddInitialMetadata("x-request-id", call_.request_id);
    started_ = std::chrono::steady_clock::now();

    method_ = server_.table_.find_grpc(ctx_->method());
    if (!method_) {
      finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "Unknown method " + ctx_->method()));
      return;
    }
    call_.method = method_->full_name;
    StartRead(&in_);
  }

  void OnReadDone(bool ok) override {
    if (method_->is_upload()) {
      if (!ok) {
        if (ctx_->IsCancelled()) return finish(grpc::Status::CANCELLED);
        if (!upload_) {
          return fail(
              invalid_argument("", "The upload stream carried no message; send at least one."));
        }
        return post([this] { upload_finish(); });
      }
      return post([this] { upload_message(); });
    }
    if (!ok)
      return finish(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "The call carried no request message."));
    post([this] { unary(); });
  }

  void OnWriteDone(bool) override {}

  void OnDone() override {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - started_);
    spdlog::debug("grpc.request method={} code={} duration_ms={} remote={} request_id={}",
                  ctx_->method(), static_cast<int>(code_), ms.count(), call_.remote_address,
                  call_.request_id);
    delete this;
  }

 private:
  template <class Fn>
  void post(Fn fn) {
    net::post(*server_.workers_, std::move(fn));
  }

  CallCredentials credentials(const std::string& body_sha256_hex) const {
    CallCredentials creds;
    for (const auto& [k, v] : ctx_->client_metadata()) {
      std::string name(k.data(), k.size());
      if (name.size() > 4 && name.compare(name.size() - 4, 4, "-bin") == 0) continue;
      creds.headers[name] = std::string(v.data(), v.size());
    }
    auto auth = creds.headers.find("authorization");
    if (auth != creds.headers.end()) creds.authorization = auth->second;
    creds.http_method = "POST";
    creds.path = ctx_->method();
    creds.body_sha256_hex = body_sha256_hex;
    creds.secure_transport = server_.tls_ || peer_is_loopback(ctx_->peer());
    return creds;
  }

  bool parse(gp::Message& msg, std::string* raw) {
    std::string bytes;
    if (!byte_buffer_to_string(in_, bytes) || !msg.ParseFromString(bytes)) return false;
    if (raw) *raw = std::move(bytes);
    return true;
  }

  void unary() {
    std::unique_ptr<gp::Message> request(method_->request_prototype->New());
    std::string raw;
    if (!parse(*request, &raw)) {
      return fail(invalid_argument(
          "", "The request is not a valid " + request->GetDescriptor()->full_name() + "."));
    }
    if (auto p = server_.pipeline_.admit(call_, credentials(sha256_hex(raw)), method_))
      return fail(*p);
    std::optional<std::string> key;
    const auto& md = ctx_->client_metadata();
    if (auto it = md.find("idempotency-key"); it != md.end())
      key = std::string(it->second.data(), it->second.size());

    UnaryAnswer answer = server_.pipeline_.run_unary(call_, *method_, *request, key);
    if (answer.replayed) {
      ctx_->AddInitialMetadata("idempotent-replayed", "true");
      if (answer.http_status >= 400)
        return fail(problem_from_json(answer.replayed_body, answer.http_status));
      answer.response.reset(method_->response_prototype->New());
      gp::util::JsonParseOptions options;
      options.ignore_unknown_fields = true;
      if (!gp::util::JsonStringToMessage(answer.replayed_body, answer.response.get(), options)
               .ok()) {
        return fail(
            internal_error("The stored answer for this Idempotency-Key could not be read."));
      }
    }
    if (answer.problem) return fail(*answer.problem);
    reply(*answer.response);
  }

  void upload_message() {
    std::unique_ptr<gp::Message> msg(method_->request_prototype->New());
    if (!parse(*msg, nullptr)) return fail(invalid_argument("", "A stream message is not valid."));
    const gp::Descriptor* desc = msg->GetDescriptor();
    const gp::FieldDescriptor* data_field = desc->FindFieldByName("data");
    const gp::FieldDescriptor* type_field = desc->FindFieldByName("content_type");
    const gp::Reflection* r = msg->GetReflection();
    if (!upload_) {
      if (auto p = server_.pipeline_.admit(call_, credentials(""), method_)) return fail(*p);
      std::string type = type_field ? r->GetString(*msg, type_field) : "";
      const auto& accepted = method_->upload_media_types;
      if (std::find(accepted.begin(), accepted.end(), type) == accepted.end()) {
        std::string list;
        for (const auto& t : accepted)
          list += (list.empty() ? "" : ", ") + t;
        Problem p = invalid_argument(
            "content_type", "Set content_type in the first message to one of: " + list + ".");
        p.code = "unsupported_media_type";
        return fail(p);
      }
      std::map<std::string, std::string> params;
      std::vector<const gp::FieldDescriptor*> fields;
      r->ListFields(*msg, &fields);
      for (const auto* f : fields) {
        if (f == data_field || f == type_field) continue;
        std::string text;
        if (field_text(*msg, f, text)) params[f->name()] = text;
      }
      Outcome p = CallPipeline::guarded("create", call_, [&]() -> Outcome {
        upload_ = (*method_->upload)();
        if (!upload_) return internal_error("The upload handler could not be created.");
        return std::nullopt;
      });
      if (!p)
        p = CallPipeline::guarded("start", call_,
                                  [&] { return upload_->start(call_, type, params); });
      if (p) return fail(*p);
    }
    if (data_field) {
      const std::string& data = r->GetStringReference(*msg, data_field, nullptr);
      uploaded_bytes_ += data.size();
      if (uploaded_bytes_ > server_.config_.max_upload_bytes) {
        Problem p;
        p.http_status = 413;
        p.code = "payload_too_large";
        p.title = "Payload too large";
        p.detail = "The upload is larger than " + std::to_string(server_.config_.max_upload_bytes) +
                   " bytes; split it into several uploads.";
        return fail(p);
      }
      if (!data.empty()) {
        if (auto p = CallPipeline::guarded("chunk", call_, [&] { return upload_->chunk(data); }))
          return fail(*p);
      }
    }
    StartRead(&in_);
  }

  void upload_finish() {
    std::unique_ptr<gp::Message> response(method_->response_prototype->New());
    Outcome p = CallPipeline::guarded("finish", call_, [&] { return upload_->finish(*response); });
    upload_.reset();
    if (p) return fail(*p);
    reply(*response);
  }

  void reply(const gp::Message& response) {
    std::string bytes;
    response.SerializeToString(&bytes);
    out_ = string_to_byte_buffer(bytes);
    code_ = grpc::StatusCode::OK;
    StartWriteAndFinish(&out_, grpc::WriteOptions(), grpc::Status::OK);
  }

  void fail(const Problem& p) {
    upload_.reset();
    ctx_->AddTrailingMetadata("counterlink-problem-code", p.code);
    if (!p.field.empty()) ctx_->AddTrailingMetadata("counterlink-problem-field", p.field);
    if (p.retry_after_s > 0)
      ctx_->AddTrailingMetadata("retry-after", std::to_string(p.retry_after_s));
    auto code = static_cast<grpc::StatusCode>(grpc_status_code(p));
    std::string message = p.detail.empty() ? p.title : p.detail;
    finish(grpc::Status(code, message));
  }

  void finish(const grpc::Status& status) {
    code_ = status.error_code();
    Finish(status);
  }

  GrpcServerImpl& server_;
  grpc::GenericCallbackServerContext* ctx_;
  const MethodInfo* method_ = nullptr;
  CallContext call_;
  grpc::ByteBuffer in_;
  grpc::ByteBuffer out_;
  std::unique_ptr<UploadHandler> upload_;
  size_t uploaded_bytes_ = 0;  // sum of `data` so far (max_upload_bytes)
  grpc::StatusCode code_ = grpc::StatusCode::OK;
  std::chrono::steady_clock::time_point started_;
};

}  // namespace

grpc::ServerGenericBidiReactor* GrpcServerImpl::CreateReactor(
    grpc::GenericCallbackServerContext* ctx) {
  return new CallReactor(*this, ctx);
}

GrpcServer::GrpcServer(GrpcServerConfig config, const ServiceRegistry& registry,
                       std::shared_ptr<CallAuthenticator> authenticator,
                       std::shared_ptr<RateLimiter> limiter, store::Store* idempotency_store)
    : impl_(std::make_unique<GrpcServerImpl>(std::move(config), registry, std::move(authenticator),
                                             std::move(limiter), idempotency_store)) {}

GrpcServer::~GrpcServer() {
  impl_->stop();
}
void GrpcServer::start() {
  impl_->start();
}
void GrpcServer::stop() {
  impl_->stop();
}
uint16_t GrpcServer::port() const {
  return impl_->port_;
}

}  // namespace counterlink::api
