#include "counterlink/api/grpc_server.h"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <utility>

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
#include "stream_threads.h"

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
        pipeline_(std::move(authenticator), std::move(limiter), store, config_.idempotency_sealer),
        streams_(config_.max_streams) {}

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
    // Streams last as long as their clients listen: end them first (their
    // handlers return, the calls finish) so Shutdown waits only for the rest.
    streams_.close_and_join();
    server_->Shutdown(std::chrono::system_clock::now() + config_.stop_grace);
    workers_->join();
    server_->Wait();
    spdlog::info("grpc.stopped port={}", port_);
  }

  GrpcServerConfig config_;
  MethodTable table_;
  CallPipeline pipeline_;
  StreamThreads streams_;  // handler threads of the open server streams
  std::unique_ptr<net::thread_pool> workers_;
  std::unique_ptr<grpc::Server> server_;
  uint16_t port_ = 0;
  bool tls_ = false;
  bool stopped_ = false;
};

namespace {

class CallReactor;

// The StreamSink of one server-streaming call. send() and end() on the
// handler's thread, on_write_done() and cancel() from gRPC's threads (cancel()
// also from StreamThreads::close_and_join). Every call into the reactor is
// made under mu_ and none after Finish (the reactor deletes itself in OnDone,
// which follows Finish), so the sink outlives it safely.
class GrpcStreamSink final : public StreamSink {
 public:
  GrpcStreamSink(CallReactor& reactor, size_t buffer_bytes)
      : reactor_(&reactor), buffer_bytes_(buffer_bytes) {}

  bool send(const gp::Message& message, std::string_view, std::string_view) override;
  bool heartbeat() override { return !cancelled(); }  // gRPC keeps the connection alive
  bool cancelled() const override { return cancelled_.load(std::memory_order_acquire); }

  // gRPC thread: the write in flight completed (ok = false: the call is dead).
  void on_write_done(bool ok);
  // The client cancelled (`server_stopping` false) or the server stops.
  void cancel(bool server_stopping);
  // Handler thread, once: finishes the call after the queued messages.
  void end(Outcome problem);

  size_t messages() const { return messages_; }  // handler thread

 private:
  void write_next_locked();
  void finish_locked();

  CallReactor* reactor_;  // null after Finish; guarded by mu_
  const size_t buffer_bytes_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;  // serialized messages not yet handed to gRPC
  size_t queued_bytes_ = 0;        // in queue_ and in flight
  grpc::ByteBuffer inflight_;
  size_t inflight_bytes_ = 0;
  bool writing_ = false;
  bool ending_ = false;  // end() was called
  Outcome final_;        // what end() was given
  bool server_stopping_ = false;
  std::atomic<bool> cancelled_{false};  // written under mu_
  size_t messages_ = 0;                 // handler thread only
};

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
    if (method_->is_stream()) {
      if (!ok) {
        return finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                   "The call carried no request message."));
      }
      return post([this] { stream(); });
    }
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

  void OnWriteDone(bool ok) override {
    if (auto sink = stream_sink()) sink->on_write_done(ok);
  }

  void OnCancel() override {
    std::lock_guard lock(stream_mu_);
    client_cancelled_ = true;
    if (sink_) sink_->cancel(/*server_stopping=*/false);
  }

  // ---- For GrpcStreamSink (under its lock) ---------------------------------

  void stream_write(const grpc::ByteBuffer* message) { StartWrite(message); }

  void stream_finish(const Outcome& p, bool client_cancelled) {
    if (p) return fail(*p);
    finish(client_cancelled ? grpc::Status::CANCELLED : grpc::Status::OK);
  }

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

  // On a worker: the pipeline, then the handler on a stream thread.
  void stream() {
    auto request = std::shared_ptr<gp::Message>(method_->request_prototype->New());
    std::string raw;
    if (!parse(*request, &raw)) {
      return fail(invalid_argument(
          "", "The request is not a valid " + request->GetDescriptor()->full_name() + "."));
    }
    if (auto p = server_.pipeline_.admit(call_, credentials(sha256_hex(raw)), method_))
      return fail(*p);
    const auto& md = ctx_->client_metadata();
    if (auto it = md.find("last-event-id"); it != md.end())
      call_.last_event_id = std::string(it->second.data(), it->second.size());

    auto sink = std::make_shared<GrpcStreamSink>(*this, server_.config_.stream_buffer_bytes);
    {
      std::lock_guard lock(stream_mu_);
      sink_ = sink;
      if (client_cancelled_) sink->cancel(/*server_stopping=*/false);
    }
    const MethodInfo* method = method_;
    auto run = [sink, method, ctx = call_, request]() mutable {
      Outcome p = CallPipeline::guarded("stream", ctx,
                                        [&] { return (*method->stream)(ctx, *request, *sink); });
      spdlog::debug("grpc.stream_end method={} request_id={} messages={} problem={}", ctx.method,
                    ctx.request_id, sink->messages(), p ? p->code : "");
      sink->end(std::move(p));
    };
    auto started =
        server_.streams_.start(std::move(run), [sink] { sink->cancel(/*server_stopping=*/true); });
    if (started == StreamThreads::Start::kStarted) return;
    {
      std::lock_guard lock(stream_mu_);
      sink_.reset();
    }
    Problem p;
    if (started == StreamThreads::Start::kFull) {
      p.http_status = 503;
      p.code = "too_many_streams";
      p.title = "Too many streams";
      p.detail = "The server has " + std::to_string(server_.config_.max_streams) +
                 " streams open, its limit; retry later.";
      p.retry_after_s = 5;
    } else {
      p = unavailable("The server is shutting down; retry shortly.");
    }
    fail(p);
  }

  std::shared_ptr<GrpcStreamSink> stream_sink() {
    std::lock_guard lock(stream_mu_);
    return sink_;
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
  // Server streams: OnCancel (a gRPC thread) may race the worker creating
  // the sink.
  std::mutex stream_mu_;
  std::shared_ptr<GrpcStreamSink> sink_;  // guarded by stream_mu_
  bool client_cancelled_ = false;         // guarded by stream_mu_
  grpc::StatusCode code_ = grpc::StatusCode::OK;
  std::chrono::steady_clock::time_point started_;
};

bool GrpcStreamSink::send(const gp::Message& message, std::string_view, std::string_view) {
  if (cancelled()) return false;
  std::string bytes;
  if (!message.SerializeToString(&bytes)) return false;
  {
    std::unique_lock lock(mu_);
    // A message larger than the buffer still goes out once the queue drained.
    cv_.wait(lock, [&] { return cancelled() || queued_bytes_ < buffer_bytes_; });
    if (cancelled() || ending_ || !reactor_) return false;
    queued_bytes_ += bytes.size();
    queue_.push_back(std::move(bytes));
    if (!writing_) write_next_locked();
  }
  ++messages_;
  return true;
}

void GrpcStreamSink::write_next_locked() {
  std::string bytes = std::move(queue_.front());
  queue_.pop_front();
  inflight_bytes_ = bytes.size();
  inflight_ = string_to_byte_buffer(bytes);
  writing_ = true;
  reactor_->stream_write(&inflight_);
}

void GrpcStreamSink::on_write_done(bool ok) {
  std::lock_guard lock(mu_);
  writing_ = false;
  queued_bytes_ -= inflight_bytes_;
  inflight_bytes_ = 0;
  if (!ok && !cancelled()) cancelled_.store(true, std::memory_order_release);
  if (cancelled()) {
    queue_.clear();
    queued_bytes_ = 0;
  }
  if (!queue_.empty() && reactor_) {
    write_next_locked();
  } else if (ending_) {
    finish_locked();
  }
  cv_.notify_all();
}

void GrpcStreamSink::cancel(bool server_stopping) {
  std::lock_guard lock(mu_);
  if (server_stopping && !cancelled()) server_stopping_ = true;
  cancelled_.store(true, std::memory_order_release);
  cv_.notify_all();
}

void GrpcStreamSink::end(Outcome problem) {
  std::lock_guard lock(mu_);
  ending_ = true;
  final_ = std::move(problem);
  if (cancelled()) {  // what is queued is not worth the wait
    queue_.clear();
    queued_bytes_ = inflight_bytes_;
  }
  if (!writing_) finish_locked();
}

void GrpcStreamSink::finish_locked() {
  if (!reactor_) return;
  CallReactor* reactor = std::exchange(reactor_, nullptr);
  // A stream the server ended is not complete: the client should reconnect.
  if (!final_ && server_stopping_) {
    final_ = unavailable("The server is shutting down; reconnect and resume from the last event.");
  }
  reactor->stream_finish(final_, cancelled() && !server_stopping_);
}

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
