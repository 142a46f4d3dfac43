#include "counterlink/api/http_server.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <google/protobuf/message.h>
#include <spdlog/spdlog.h>

#include "call_pipeline.h"
#include "http_common.h"
#include "json_codec.h"
#include "method_table.h"
#include "stream_threads.h"

namespace counterlink::api {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using Response = http::response<http::string_body>;
using Clock = std::chrono::steady_clock;

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// "text/csv; charset=utf-8" -> "text/csv"
std::string media_type(std::string_view content_type) {
  auto semi = content_type.find(';');
  std::string_view base = content_type.substr(0, semi);
  while (!base.empty() && base.back() == ' ')
    base.remove_suffix(1);
  while (!base.empty() && base.front() == ' ')
    base.remove_prefix(1);
  return lower(base);
}

bool is_loopback(const net::ip::address& address) {
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    return net::ip::make_address_v4(net::ip::v4_mapped, address.to_v6()).is_loopback();
  }
  return address.is_loopback();
}

struct RawRoute {
  std::string method;
  std::string path;
  RawHandler handler;
  RawRouteOptions options;

  bool matches_path(std::string_view p) const {
    if (!path.empty() && path.back() == '/') return p.substr(0, path.size()) == path;
    return p == path;
  }
};

// What a connection knows about the request being served.
struct RequestInfo {
  std::string method;
  std::string target;
  std::string path;
  std::string query;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string request_id;
  std::string remote_address;
  bool secure = false;
  Clock::time_point started;
};

Problem problem(int status, std::string code, std::string title, std::string detail) {
  Problem p;
  p.http_status = status;
  p.code = std::move(code);
  p.title = std::move(title);
  p.detail = std::move(detail);
  return p;
}

// ---- Server-sent events ------------------------------------------------------

// An SSE field value: a line break would end the field (and could forge
// another), NUL makes browsers drop the id.
void append_field(std::string& out, std::string_view name, std::string_view value) {
  out += name;
  out += ": ";
  for (char c : value) {
    if (c != '\r' && c != '\n' && c != '\0') out += c;
  }
  out += '\n';
}

// One event. The proto3 JSON printer writes one line (line breaks inside
// strings are escaped), so the data is a single `data:` field.
std::string sse_record(std::string_view id, std::string_view event, const std::string& json) {
  std::string out;
  out.reserve(json.size() + id.size() + event.size() + 24);
  if (!id.empty()) append_field(out, "id", id);
  if (!event.empty()) append_field(out, "event", event);
  out += "data: ";
  out += json;
  out += "\n\n";
  return out;
}

// The connection side of a REST stream (the session). Both calls post to the
// session's strand and return at once; the strand sees them in call order.
class SseConnection {
 public:
  virtual ~SseConnection() = default;
  // `first`: the first bytes of the stream, to be preceded by the 200 header.
  virtual void post_stream_bytes(std::string sse, bool first) = 0;
  // After the handler returned; `committed`: bytes were posted before.
  virtual void post_stream_end(Outcome problem, bool committed) = 0;
};

// The StreamSink of one REST stream. send()/heartbeat()/end() on the
// handler's thread; written() on the session's strand; cancel() from any
// thread. Holds the session weakly: a closed session goes away while the
// handler may still run, and send() then reports the client gone.
class SseSink final : public StreamSink {
 public:
  SseSink(std::weak_ptr<SseConnection> connection, size_t buffer_bytes)
      : connection_(std::move(connection)), buffer_bytes_(buffer_bytes) {}

  bool send(const google::protobuf::Message& message, std::string_view id,
            std::string_view event) override {
    if (cancelled()) return false;
    if (!push(sse_record(id, event, message_to_json(message)))) return false;
    ++events_;
    return true;
  }

  bool heartbeat() override { return !cancelled() && push(": keepalive\n\n"); }

  bool cancelled() const override { return cancelled_.load(std::memory_order_acquire); }

  // Strand: `n` posted bytes reached the socket or were dropped.
  void written(size_t n) {
    std::lock_guard lock(mu_);
    unwritten_ -= std::min(n, unwritten_);
    cv_.notify_all();
  }

  // The client has gone or the server stops: wakes a blocked send().
  void cancel() {
    std::lock_guard lock(mu_);
    cancelled_.store(true, std::memory_order_release);
    cv_.notify_all();
  }

  // Handler thread, once, after the handler returned.
  void end(Outcome problem) {
    if (auto connection = connection_.lock())
      connection->post_stream_end(std::move(problem), committed_);
  }

  size_t events() const { return events_; }  // handler thread

 private:
  bool push(std::string bytes) {
    {
      std::unique_lock lock(mu_);
      // A record larger than the buffer still goes out once the buffer drained.
      cv_.wait(lock, [&] { return cancelled() || unwritten_ < buffer_bytes_; });
      if (cancelled()) return false;
      unwritten_ += bytes.size();
    }
    auto connection = connection_.lock();
    if (!connection) {
      cancel();
      return false;
    }
    connection->post_stream_bytes(std::move(bytes), !committed_);
    committed_ = true;
    return true;
  }

  const std::weak_ptr<SseConnection> connection_;
  const size_t buffer_bytes_;
  std::mutex mu_;
  std::condition_variable cv_;
  size_t unwritten_ = 0;  // guarded by mu_
  std::atomic<bool> cancelled_{false};
  bool committed_ = false;  // handler thread only
  size_t events_ = 0;       // handler thread only
};

}  // namespace

// Sessions are templated on the stream (plain or TLS); the base lets the
// server close idle ones at stop().
class SessionBase {
 public:
  virtual ~SessionBase() = default;
  virtual void close_if_idle() = 0;  // posts to the session's strand
};

class HttpServerImpl {
 public:
  HttpServerImpl(HttpServerConfig config, const ServiceRegistry& registry,
                 std::shared_ptr<CallAuthenticator> authenticator,
                 std::shared_ptr<RateLimiter> limiter, store::Store* store)
      : config_(std::move(config)),
        table_(registry),
        pipeline_(std::move(authenticator), std::move(limiter), store, config_.idempotency_sealer),
        streams_(config_.max_streams) {}

  ~HttpServerImpl() { stop(); }

  void start();
  void stop();

  // ---- Called by sessions --------------------------------------------------

  const RawRoute* find_raw(std::string_view method, std::string_view path) const {
    for (const auto& r : raw_routes_) {
      if ((r.method == "*" || r.method == method) && r.matches_path(path)) return &r;
    }
    return nullptr;
  }

  std::shared_ptr<Response> make_problem(const RequestInfo& info, const Problem& p) const {
    auto res = std::make_shared<Response>(static_cast<http::status>(p.http_status), 11);
    res->set(http::field::content_type, "application/problem+json");
    if (p.retry_after_s > 0) res->set(http::field::retry_after, std::to_string(p.retry_after_s));
    res->body() = problem_to_json(p, info.request_id);
    return res;
  }

  std::shared_ptr<Response> make_json(int status, std::string body) const {
    auto res = std::make_shared<Response>(static_cast<http::status>(status), 11);
    res->set(http::field::content_type, "application/json");
    res->body() = std::move(body);
    return res;
  }

  CallContext context_for(const RequestInfo& info, std::string method) const {
    CallContext ctx;
    ctx.request_id = info.request_id;
    ctx.method = std::move(method);
    ctx.transport = "rest";
    ctx.remote_address = info.remote_address;
    return ctx;
  }

  CallCredentials credentials_for(const RequestInfo& info, std::string body_sha256_hex) const {
    CallCredentials creds;
    auto auth = info.headers.find("authorization");
    if (auth != info.headers.end()) creds.authorization = auth->second;
    creds.headers = info.headers;
    creds.http_method = info.method;
    creds.path = info.target;
    creds.body_sha256_hex = std::move(body_sha256_hex);
    creds.secure_transport = info.secure;
    return creds;
  }

  // A buffered request (JSON or raw), on the worker pool.
  std::shared_ptr<Response> serve_buffered(const RequestInfo& info, const std::string& body) const;
  // A stream call up to its handler, on the worker pool: the pipeline (no
  // Idempotency-Key), Last-Event-ID, the request from path, query and body.
  Outcome admit_stream(const RequestInfo& info, const std::string& body,
                       const MethodTable::Match& match, CallContext& ctx,
                       google::protobuf::Message& request) const;
  std::shared_ptr<Response> serve_raw(const RawRoute& route, const RequestInfo& info,
                                      const std::string& body) const;

  void log(const RequestInfo& info, int status, size_t bytes_in) const {
    auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - info.started).count();
    if (status >= 500) {
      spdlog::warn(
          "http.request method={} path={} status={} duration_ms={} bytes_in={} remote={} "
          "request_id={}",
          info.method, info.path, status, ms, bytes_in, info.remote_address, info.request_id);
    } else {
      spdlog::debug(
          "http.request method={} path={} status={} duration_ms={} bytes_in={} remote={} "
          "request_id={}",
          info.method, info.path, status, ms, bytes_in, info.remote_address, info.request_id);
    }
  }

  void register_session(SessionBase* s, std::weak_ptr<SessionBase> w) {
    std::lock_guard lock(sessions_mu_);
    sessions_[s] = std::move(w);
  }
  void unregister_session(SessionBase* s) {
    std::lock_guard lock(sessions_mu_);
    sessions_.erase(s);
    sessions_cv_.notify_all();
  }

  HttpServerConfig config_;
  MethodTable table_;
  CallPipeline pipeline_;
  StreamThreads streams_;  // handler threads of the open SSE streams
  std::vector<RawRoute> raw_routes_;
  std::atomic<bool> stopping_{false};
  bool started_ = false;
  bool stopped_ = false;
  uint16_t port_ = 0;

  // Declared before io_ so sessions destroyed with io_ can still unregister.
  std::mutex sessions_mu_;
  std::condition_variable sessions_cv_;
  std::unordered_map<SessionBase*, std::weak_ptr<SessionBase>> sessions_;

  std::optional<ssl::context> ssl_ctx_;
  std::unique_ptr<net::thread_pool> workers_;
  net::io_context io_;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work_;
  std::optional<tcp::acceptor> acceptor_;
  std::vector<std::thread> io_threads_;

 private:
  void do_accept();
};

namespace {

template <class Stream>
class Session : public SessionBase,
                public SseConnection,
                public std::enable_shared_from_this<Session<Stream>> {
 public:
  Session(HttpServerImpl& server, Stream stream, std::string remote, bool secure)
      : server_(server), stream_(std::move(stream)), remote_(std::move(remote)), secure_(secure) {}

  ~Session() override { server_.unregister_session(this); }

  void start() {
    server_.register_session(this, this->shared_from_this());
    net::dispatch(stream_.get_executor(), [self = this->shared_from_this()] { self->handshake(); });
  }

  void close_if_idle() override {
    net::post(stream_.get_executor(), [self = this->shared_from_this()] {
      if (self->idle_) beast::get_lowest_layer(self->stream_).close();
    });
  }

 private:
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

  void handshake() {
    if constexpr (kTls) {
      idle_ = true;
      beast::get_lowest_layer(stream_).expires_after(server_.config_.header_timeout);
      stream_.async_handshake(ssl::stream_base::server,
                              [self = this->shared_from_this()](beast::error_code ec) {
                                if (ec) return self->close();
                                self->read_header();
                              });
    } else {
      read_header();
    }
  }

  void read_header() {
    if (server_.stopping_) return close();
    idle_ = true;
    header_parser_.emplace();
    header_parser_->header_limit(static_cast<uint32_t>(server_.config_.max_header_bytes));
    // Boost 1.74 treats an unset limit as "less than any length", so set the
    // largest one; the real limit is set once the route is known.
    header_parser_->body_limit(
        std::max(server_.config_.max_json_body_bytes, server_.config_.max_upload_bytes));
    beast::get_lowest_layer(stream_).expires_after(server_.config_.header_timeout);
    http::async_read_header(
        stream_, buffer_, *header_parser_,
        [self = this->shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
  }

  void on_header(beast::error_code ec) {
    idle_ = false;
    if (ec == http::error::header_limit) {
      info_ = RequestInfo{};
      info_.request_id = generate_request_id();
      info_.started = Clock::now();
      auto res = server_.make_problem(
          info_, problem(431, "headers_too_large", "Request headers too large",
                         "The request headers exceed the server's limit; send fewer or "
                         "shorter headers."));
      return send(std::move(res), /*close=*/true);
    }
    if (ec == http::error::body_limit) {  // Content-Length above every limit
      info_ = RequestInfo{};
      info_.request_id = generate_request_id();
      info_.started = Clock::now();
      return reject_too_large(
          std::max(server_.config_.max_json_body_bytes, server_.config_.max_upload_bytes));
    }
    if (ec) {
      if (ec != http::error::end_of_stream && ec != net::error::operation_aborted) {
        spdlog::debug("http.read_failed remote={} error=\"{}\"", remote_, ec.message());
      }
      return close();
    }
    const auto& req = header_parser_->get();
    info_ = RequestInfo{};
    info_.started = Clock::now();
    info_.method = std::string(req.method_string());
    info_.target = std::string(req.target());
    auto q = info_.target.find('?');
    info_.path = info_.target.substr(0, q);
    if (q != std::string::npos) info_.query = info_.target.substr(q + 1);
    for (const auto& field : req) {
      auto name = lower(std::string_view(field.name_string().data(), field.name_string().size()));
      auto& slot = info_.headers[name];
      if (!slot.empty()) slot += ", ";
      slot.append(field.value().data(), field.value().size());
    }
    auto rid = info_.headers.find("x-request-id");
    info_.request_id = rid != info_.headers.end() && valid_request_id(rid->second)
                           ? rid->second
                           : generate_request_id();
    info_.remote_address = remote_;
    info_.secure = secure_;
    keep_alive_ = req.keep_alive();
    chunked_ = req.version() >= 11;
    expect_continue_ = lower(std::string(req[http::field::expect])) == "100-continue";

    // Upload methods stream; everything else is buffered up to the JSON limit
    // (a server stream's request too: it is a GET, any body is refused).
    stream_match_.reset();
    if (!server_.find_raw(info_.method, info_.path)) {
      MethodTable::Match match;
      std::string allow;
      if (server_.table_.route(info_.method, info_.path, match, allow) ==
          MethodTable::RouteResult::kMatched) {
        if (match.method->is_upload()) return start_upload(std::move(match));
        if (match.method->is_stream()) stream_match_ = std::move(match);
      }
    }
    size_t limit = server_.config_.max_json_body_bytes;
    if (auto length = header_parser_->content_length(); length && *length > limit)
      return reject_too_large(limit);
    body_parser_.emplace(std::move(*header_parser_));
    header_parser_.reset();
    body_parser_->body_limit(limit);
    continue_then([self = this->shared_from_this()] { self->read_body(); });
  }

  // Sends "100 Continue" first when the client waits for it.
  template <class Next>
  void continue_then(Next next) {
    if (!expect_continue_) return next();
    expect_continue_ = false;
    continue_res_.emplace(http::status::continue_, 11);
    http::async_write(
        stream_, *continue_res_,
        [self = this->shared_from_this(), next = std::move(next)](beast::error_code ec, size_t) {
          if (ec) return self->close();
          next();
        });
  }

  void reject_too_large(size_t limit) {
    auto res =
        server_.make_problem(info_, problem(413, "payload_too_large", "Payload too large",
                                            "The request body exceeds " + std::to_string(limit) +
                                                " bytes; send less per request."));
    send(std::move(res), /*close=*/true);
  }

  void read_body() {
    beast::get_lowest_layer(stream_).expires_after(server_.config_.body_timeout);
    http::async_read(
        stream_, buffer_, *body_parser_,
        [self = this->shared_from_this()](beast::error_code ec, size_t) { self->on_body(ec); });
  }

  void on_body(beast::error_code ec) {
    if (ec == http::error::body_limit) return reject_too_large(server_.config_.max_json_body_bytes);
    if (ec) {
      spdlog::debug("http.body_read_failed remote={} error=\"{}\"", remote_, ec.message());
      return close();
    }
    beast::get_lowest_layer(stream_).expires_never();
    auto body = std::make_shared<std::string>(std::move(body_parser_->get().body()));
    body_parser_.reset();
    bytes_in_ = body->size();
    if (stream_match_) return admit_stream(std::move(body));
    net::post(*server_.workers_, [self = this->shared_from_this(), body] {
      auto res = self->server_.serve_buffered(self->info_, *body);
      net::post(self->stream_.get_executor(), [self, res] { self->send(res, false); });
    });
  }

  // ---- Uploads -------------------------------------------------------------

  void start_upload(MethodTable::Match match) {
    upload_method_ = match.method;
    const auto& req = header_parser_->get();
    std::string type = media_type(std::string(req[http::field::content_type]));
    const auto& accepted = match.method->upload_media_types;
    if (std::find(accepted.begin(), accepted.end(), type) == accepted.end()) {
      std::string list;
      for (const auto& t : accepted)
        list += (list.empty() ? "" : ", ") + t;
      auto p = problem(415, "unsupported_media_type", "Unsupported media type",
                       "Send the body as one of: " + list + " (Content-Type header).");
      return send(server_.make_problem(info_, p), /*close=*/true);
    }
    size_t limit = server_.config_.max_upload_bytes;
    if (auto length = header_parser_->content_length(); length && *length > limit)
      return reject_too_large(limit);

    std::map<std::string, std::string> params;
    QueryParams query;
    if (auto p = parse_query(info_.query, query))
      return send(server_.make_problem(info_, *p), true);
    for (auto& [k, v] : query)
      params[k] = v;
    for (auto& [k, v] : match.variables)
      params[k] = v;

    upload_parser_.emplace(std::move(*header_parser_));
    header_parser_.reset();
    upload_parser_->body_limit(limit);
    chunk_buffer_.resize(server_.config_.upload_chunk_bytes);

    // Authenticate and start() before reading any of the body.
    net::post(*server_.workers_,
              [self = this->shared_from_this(), type, params = std::move(params)] {
                auto& server = self->server_;
                self->ctx_ = server.context_for(self->info_, self->upload_method_->full_name);
                Outcome p = server.pipeline_.admit(
                    self->ctx_, server.credentials_for(self->info_, ""), self->upload_method_);
                if (!p) {
                  p = CallPipeline::guarded("create", self->ctx_, [&]() -> Outcome {
                    self->upload_ = (*self->upload_method_->upload)();
                    if (!self->upload_)
                      return internal_error("The upload handler could not be created.");
                    return std::nullopt;
                  });
                }
                if (!p) {
                  p = CallPipeline::guarded("start", self->ctx_, [&] {
                    return self->upload_->start(self->ctx_, type, params);
                  });
                }
                net::post(self->stream_.get_executor(), [self, p] {
                  if (p)
                    return self->send(self->server_.make_problem(self->info_, *p), /*close=*/true);
                  self->continue_then([self] { self->read_upload(); });
                });
              });
  }

  void read_upload() {
    if (upload_parser_->is_done()) return finish_upload();
    auto& body = upload_parser_->get().body();
    body.data = chunk_buffer_.data();
    body.size = chunk_buffer_.size();
    beast::get_lowest_layer(stream_).expires_after(server_.config_.body_timeout);
    http::async_read_some(
        stream_, buffer_, *upload_parser_,
        [self = this->shared_from_this()](beast::error_code ec, size_t) { self->on_upload(ec); });
  }

  void on_upload(beast::error_code ec) {
    if (ec == http::error::need_buffer) ec = {};
    if (ec == http::error::body_limit) return reject_too_large(server_.config_.max_upload_bytes);
    if (ec) return close();
    beast::get_lowest_layer(stream_).expires_never();
    size_t n = chunk_buffer_.size() - upload_parser_->get().body().size;
    if (n == 0) return read_upload();
    bytes_in_ += n;
    net::post(*server_.workers_, [self = this->shared_from_this(), n] {
      Outcome p = CallPipeline::guarded("chunk", self->ctx_, [&] {
        return self->upload_->chunk(std::string_view(self->chunk_buffer_.data(), n));
      });
      net::post(self->stream_.get_executor(), [self, p] {
        if (p) return self->send(self->server_.make_problem(self->info_, *p), /*close=*/true);
        self->read_upload();
      });
    });
  }

  void finish_upload() {
    upload_parser_.reset();
    net::post(*server_.workers_, [self = this->shared_from_this()] {
      std::unique_ptr<google::protobuf::Message> response(
          self->upload_method_->response_prototype->New());
      Outcome p = CallPipeline::guarded("finish", self->ctx_,
                                        [&] { return self->upload_->finish(*response); });
      self->upload_.reset();
      auto res = p ? self->server_.make_problem(self->info_, *p)
                   : self->server_.make_json(200, message_to_json(*response));
      net::post(self->stream_.get_executor(), [self, res] { self->send(res, false); });
    });
  }

  // ---- Server streams (SSE) -------------------------------------------------
  //
  // The strand owns the connection; the handler thread reaches it only by
  // posting (post_stream_bytes / post_stream_end) through its SseSink. Once
  // the stream is open a read stays pending to notice the client leaving.

  void admit_stream(std::shared_ptr<std::string> body) {
    net::post(*server_.workers_, [self = this->shared_from_this(), body] {
      auto& server = self->server_;
      const MethodInfo& method = *self->stream_match_->method;
      CallContext ctx = server.context_for(self->info_, method.full_name);
      std::shared_ptr<google::protobuf::Message> request(method.request_prototype->New());
      Outcome p = server.admit_stream(self->info_, *body, *self->stream_match_, ctx, *request);
      net::post(self->stream_.get_executor(),
                [self, p = std::move(p), ctx = std::move(ctx), request]() mutable {
                  if (p) return self->send(self->server_.make_problem(self->info_, *p), false);
                  self->start_stream(std::move(ctx), std::move(request));
                });
    });
  }

  // On the strand: starting a thread here is cheap next to a stream's life.
  void start_stream(CallContext ctx, std::shared_ptr<google::protobuf::Message> request) {
    const MethodInfo* method = stream_match_->method;
    sink_ = std::make_shared<SseSink>(std::weak_ptr<SseConnection>(this->shared_from_this()),
                                      server_.config_.stream_buffer_bytes);
    auto run = [sink = sink_, method, ctx = std::move(ctx),
                request = std::move(request)]() mutable {
      Outcome p = CallPipeline::guarded("stream", ctx,
                                        [&] { return (*method->stream)(ctx, *request, *sink); });
      spdlog::debug("http.stream_end method={} request_id={} events={} problem={}", ctx.method,
                    ctx.request_id, sink->events(), p ? p->code : "");
      sink->end(std::move(p));
    };
    auto started = server_.streams_.start(std::move(run), [sink = sink_] { sink->cancel(); });
    if (started != StreamThreads::Start::kStarted) {
      sink_.reset();
      Problem p = started == StreamThreads::Start::kFull
                      ? problem(503, "too_many_streams", "Too many streams",
                                "The server has " + std::to_string(server_.config_.max_streams) +
                                    " streams open, its limit; retry later.")
                      : unavailable("The server is shutting down; retry shortly.");
      if (started == StreamThreads::Start::kFull) p.retry_after_s = 5;
      return send(server_.make_problem(info_, p), false);
    }
    streaming_ = true;
    write_timer_.emplace(stream_.get_executor());
    beast::get_lowest_layer(stream_).expires_never();
    watch_peer();
  }

  // Any bytes the client sends now are discarded; EOF or an error means it
  // has gone.
  void watch_peer() {
    stream_.async_read_some(
        net::buffer(probe_), [self = this->shared_from_this()](beast::error_code ec, size_t) {
          if (!ec) return self->watch_peer();
          if (!self->stream_closed_) {
            spdlog::debug("http.stream_client_gone remote={} request_id={} error=\"{}\"",
                          self->remote_, self->info_.request_id, ec.message());
          }
          self->close();
        });
  }

  void post_stream_bytes(std::string sse, bool first) override {
    net::post(stream_.get_executor(),
              [self = this->shared_from_this(), sse = std::move(sse), first]() mutable {
                self->on_stream_bytes(std::move(sse), first);
              });
  }

  void post_stream_end(Outcome problem, bool committed) override {
    net::post(stream_.get_executor(),
              [self = this->shared_from_this(), problem = std::move(problem), committed] {
                self->on_stream_end(problem, committed);
              });
  }

  void on_stream_bytes(std::string sse, bool first) {
    if (stream_closed_) return sink_->written(sse.size());
    if (first) outbox_ += stream_header();
    append_chunk(sse);
    outbox_payload_ += sse.size();
    flush_stream();
  }

  void on_stream_end(const Outcome& p, bool committed) {
    if (stream_closed_) return;
    if (!committed && p) return send(server_.make_problem(info_, *p), /*close=*/true);
    server_.log(info_, 200, bytes_in_);
    if (!committed) outbox_ += stream_header();
    if (chunked_) outbox_ += "0\r\n\r\n";
    ending_ = true;
    flush_stream();
  }

  std::string stream_header() const {
    std::string h =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        "X-Accel-Buffering: no\r\nX-Request-Id: " +
        info_.request_id + "\r\n";
    // HTTP/1.0 clients get the body delimited by the close.
    if (chunked_) h += "Transfer-Encoding: chunked\r\n";
    h += "Connection: close\r\n\r\n";
    return h;
  }

  void append_chunk(const std::string& data) {
    if (!chunked_) {
      outbox_ += data;
      return;
    }
    char size[20];
    int n = std::snprintf(size, sizeof size, "%zx\r\n", data.size());
    outbox_.append(size, static_cast<size_t>(n));
    outbox_ += data;
    outbox_ += "\r\n";
  }

  // Writes what is queued, everything at once, one write at a time; records
  // sent while a write is in flight go out together in the next one.
  void flush_stream() {
    if (writing_ || stream_closed_) return;
    if (outbox_.empty()) {
      if (ending_) close();
      return;
    }
    writing_ = true;
    inflight_.swap(outbox_);
    outbox_.clear();
    size_t payload = std::exchange(outbox_payload_, 0);
    uint64_t seq = ++write_seq_;
    write_timer_->expires_after(server_.config_.stream_write_timeout);
    write_timer_->async_wait([self = this->shared_from_this(), seq](beast::error_code ec) {
      if (ec || !self->writing_ || self->write_seq_ != seq) return;
      spdlog::info("http.stream_write_timeout remote={} request_id={}", self->remote_,
                   self->info_.request_id);
      self->close();
    });
    net::async_write(stream_, net::buffer(inflight_),
                     [self = this->shared_from_this(), payload](beast::error_code ec, size_t) {
                       self->writing_ = false;
                       self->write_timer_->cancel();
                       self->sink_->written(payload);
                       if (ec) return self->close();
                       self->flush_stream();
                     });
  }

  // ---- Responses -----------------------------------------------------------

  void send(std::shared_ptr<Response> res, bool close_after) {
    bool keep = keep_alive_ && !close_after && !server_.stopping_;
    res->set("X-Request-Id", info_.request_id);
    res->keep_alive(keep);
    res->prepare_payload();
    server_.log(info_, res->result_int(), bytes_in_);
    bytes_in_ = 0;
    beast::get_lowest_layer(stream_).expires_after(server_.config_.body_timeout);
    http::async_write(stream_, *res,
                      [self = this->shared_from_this(), res, keep](beast::error_code ec, size_t) {
                        if (ec || !keep) return self->close();
                        self->read_header();
                      });
  }

  void close() {
    idle_ = false;
    upload_.reset();
    if (streaming_ && !stream_closed_) {
      stream_closed_ = true;
      sink_->cancel();  // the handler's send() returns false from now on
      write_timer_->cancel();
      sink_->written(outbox_payload_);
      outbox_.clear();
      outbox_payload_ = 0;
    }
    auto& socket = beast::get_lowest_layer(stream_).socket();
    beast::error_code ignored;
    socket.shutdown(tcp::socket::shutdown_send, ignored);
    beast::get_lowest_layer(stream_).close();
  }

  HttpServerImpl& server_;
  Stream stream_;
  std::string remote_;
  bool secure_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::empty_body>> header_parser_;
  std::optional<http::request_parser<http::string_body>> body_parser_;
  std::optional<http::request_parser<http::buffer_body>> upload_parser_;
  std::optional<http::response<http::empty_body>> continue_res_;
  RequestInfo info_;
  bool keep_alive_ = true;
  bool expect_continue_ = false;
  bool idle_ = false;  // waiting for a request's first byte (strand only)
  size_t bytes_in_ = 0;
  // Upload state, touched by one thread at a time (strand, then worker).
  const MethodInfo* upload_method_ = nullptr;
  CallContext ctx_;
  std::unique_ptr<UploadHandler> upload_;
  std::vector<char> chunk_buffer_;
  // Stream state: strand only (stream_match_ is read by the admitting worker
  // while the strand waits for it).
  std::optional<MethodTable::Match> stream_match_;
  std::shared_ptr<SseSink> sink_;  // shared with the handler thread
  bool chunked_ = true;            // HTTP/1.1: chunked; 1.0: close-delimited
  bool streaming_ = false;         // the handler thread runs (or ran)
  bool stream_closed_ = false;     // the connection is closed or closing
  bool writing_ = false;
  bool ending_ = false;  // the handler returned: close once the outbox is written
  std::string outbox_;   // framed bytes waiting for the write in flight
  std::string inflight_;
  size_t outbox_payload_ = 0;  // record bytes in outbox_ (for SseSink::written)
  uint64_t write_seq_ = 0;
  std::optional<net::steady_timer> write_timer_;
  std::array<char, 512> probe_{};
};

}  // namespace

std::shared_ptr<Response> HttpServerImpl::serve_raw(const RawRoute& route, const RequestInfo& info,
                                                    const std::string& body) const {
  RawRequest req;
  req.method = info.method;
  req.target = info.target;
  req.path = info.path;
  req.query = info.query;
  req.headers = info.headers;
  req.body = body;
  req.context = context_for(info, "raw:" + route.path);
  if (!route.options.is_public) {
    if (auto p = pipeline_.admit(req.context, credentials_for(info, sha256_hex(body)), nullptr)) {
      return make_problem(info, *p);
    }
  }
  RawResponse out;
  try {
    out = route.handler(req);
  } catch (const std::exception& e) {
    spdlog::warn("http.raw_handler_exception path={} request_id={} error=\"{}\"", info.path,
                 info.request_id, e.what());
    return make_problem(
        info, internal_error("The server failed to handle the request; retry later or report "
                             "request id " +
                             info.request_id + "."));
  }
  auto res = std::make_shared<Response>(static_cast<http::status>(out.status), 11);
  res->set(http::field::content_type, out.content_type);
  for (const auto& [name, value] : out.headers)
    res->set(name, value);
  res->body() = std::move(out.body);
  return res;
}

Outcome HttpServerImpl::admit_stream(const RequestInfo& info, const std::string& body,
                                     const MethodTable::Match& match, CallContext& ctx,
                                     google::protobuf::Message& request) const {
  if (auto p = pipeline_.admit(ctx, credentials_for(info, sha256_hex(body)), match.method))
    return p;
  auto last = info.headers.find("last-event-id");
  if (last != info.headers.end()) ctx.last_event_id = last->second;
  QueryParams query;
  if (auto p = parse_query(info.query, query)) return p;
  return bind_rest_request(*match.binding, match.variables, query, body, request);
}

std::shared_ptr<Response> HttpServerImpl::serve_buffered(const RequestInfo& info,
                                                         const std::string& body) const {
  if (const RawRoute* raw = find_raw(info.method, info.path)) return serve_raw(*raw, info, body);

  MethodTable::Match match;
  std::string allow;
  switch (table_.route(info.method, info.path, match, allow)) {
    case MethodTable::RouteResult::kNoSuchPath:
      return make_problem(info,
                          problem(404, "route_not_found", "Not found",
                                  "No API route matches " + info.path + "; see /v1/openapi.json."));
    case MethodTable::RouteResult::kWrongMethod: {
      auto res = make_problem(
          info, problem(405, "method_not_allowed", "Method not allowed",
                        info.path + " does not accept " + info.method + "; use " + allow + "."));
      res->set(http::field::allow, allow);
      return res;
    }
    case MethodTable::RouteResult::kMatched:
      break;
  }
  const MethodInfo& method = *match.method;
  CallContext ctx = context_for(info, method.full_name);
  if (auto p = pipeline_.admit(ctx, credentials_for(info, sha256_hex(body)), &method))
    return make_problem(info, *p);

  std::unique_ptr<google::protobuf::Message> request(method.request_prototype->New());
  QueryParams query;
  if (auto p = parse_query(info.query, query)) return make_problem(info, *p);
  if (auto p = bind_rest_request(*match.binding, match.variables, query, body, *request)) {
    return make_problem(info, *p);
  }
  std::optional<std::string> key;
  auto it = info.headers.find("idempotency-key");
  if (it != info.headers.end()) key = it->second;

  UnaryAnswer answer = pipeline_.run_unary(ctx, method, *request, key);
  std::shared_ptr<Response> res;
  if (answer.replayed) {
    res = std::make_shared<Response>(static_cast<http::status>(answer.http_status), 11);
    res->set(http::field::content_type,
             answer.http_status >= 400 ? "application/problem+json" : "application/json");
    res->set("Idempotent-Replayed", "true");
    res->body() = std::move(answer.replayed_body);
  } else if (answer.problem) {
    res = make_problem(info, *answer.problem);
  } else {
    res = make_json(answer.http_status, message_to_json(*answer.response));
  }
  return res;
}

void HttpServerImpl::start() {
  if (started_) return;
  if (!config_.tls_cert_file.empty() || !config_.tls_key_file.empty()) {
    ssl_ctx_.emplace(ssl::context::tls_server);
    ssl_ctx_->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                          ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                          ssl::context::no_tlsv1_1);
    beast::error_code ec;
    ssl_ctx_->use_certificate_chain_file(config_.tls_cert_file, ec);
    if (!ec) ssl_ctx_->use_private_key_file(config_.tls_key_file, ssl::context::pem, ec);
    if (ec) {
      throw std::runtime_error("HTTP server: cannot load TLS certificate \"" +
                               config_.tls_cert_file + "\" / key \"" + config_.tls_key_file +
                               "\": " + ec.message() +
                               "; set both to readable PEM files or neither");
    }
  }
  beast::error_code ec;
  auto address = net::ip::make_address(config_.bind_address, ec);
  if (ec)
    throw std::runtime_error("HTTP server: invalid bind address \"" + config_.bind_address + "\"");
  tcp::endpoint endpoint(address, config_.port);
  acceptor_.emplace(net::make_strand(io_));
  acceptor_->open(endpoint.protocol(), ec);
  if (!ec) acceptor_->set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_->bind(endpoint, ec);
  if (!ec) acceptor_->listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    throw std::runtime_error("HTTP server: cannot listen on " + config_.bind_address + ":" +
                             std::to_string(config_.port) + ": " + ec.message() +
                             "; choose a free port or stop the other process");
  }
  port_ = acceptor_->local_endpoint().port();
  workers_ = std::make_unique<net::thread_pool>(std::max(1, config_.worker_threads));
  work_.emplace(io_.get_executor());
  started_ = true;
  do_accept();
  for (int i = 0; i < std::max(1, config_.io_threads); ++i) {
    io_threads_.emplace_back([this] { io_.run(); });
  }
  spdlog::info("http.started bind={} port={} tls={} io_threads={} workers={} methods={}",
               config_.bind_address, port_, ssl_ctx_.has_value(), config_.io_threads,
               config_.worker_threads, table_.methods().size());
}

void HttpServerImpl::do_accept() {
  acceptor_->async_accept(net::make_strand(io_), [this](beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || !acceptor_->is_open()) return;
    if (!ec && !stopping_) {
      beast::error_code rec;
      auto remote = socket.remote_endpoint(rec);
      std::string remote_text =
          rec ? "unknown" : remote.address().to_string() + ":" + std::to_string(remote.port());
      bool loopback = !rec && is_loopback(remote.address());
      if (ssl_ctx_) {
        using Stream = beast::ssl_stream<beast::tcp_stream>;
        auto s = std::make_shared<Session<Stream>>(
            *this, Stream(beast::tcp_stream(std::move(socket)), *ssl_ctx_), std::move(remote_text),
            true);
        s->start();
      } else {
        auto s = std::make_shared<Session<beast::tcp_stream>>(
            *this, beast::tcp_stream(std::move(socket)), std::move(remote_text), loopback);
        s->start();
      }
    }
    if (!stopping_) do_accept();
  });
}

void HttpServerImpl::stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  stopping_ = true;
  net::post(acceptor_->get_executor(), [this] {
    beast::error_code ignored;
    acceptor_->close(ignored);
  });
  // Streams last as long as their clients listen: cancel them (send() returns
  // false, blocked ones wake) and wait for their handlers; each session then
  // ends its response and closes, like any busy session below.
  streams_.close_and_join();
  // Close idle keep-alive connections; busy ones close after their answer.
  auto deadline = Clock::now() + config_.stop_grace;
  // Take the live sessions out under the lock, but touch (and release) them
  // outside it: dropping the last reference runs ~Session, which takes
  // sessions_mu_ to unregister itself.
  std::vector<std::shared_ptr<SessionBase>> live;
  {
    std::lock_guard lock(sessions_mu_);
    for (auto& [raw, weak] : sessions_) {
      if (auto s = weak.lock()) live.push_back(std::move(s));
    }
  }
  for (auto& s : live)
    s->close_if_idle();
  live.clear();
  {
    std::unique_lock lock(sessions_mu_);
    sessions_cv_.wait_until(lock, deadline, [this] { return sessions_.empty(); });
  }
  work_.reset();
  io_.stop();
  for (auto& t : io_threads_)
    t.join();
  io_threads_.clear();
  workers_->join();
  spdlog::info("http.stopped port={}", port_);
}

HttpServer::HttpServer(HttpServerConfig config, const ServiceRegistry& registry,
                       std::shared_ptr<CallAuthenticator> authenticator,
                       std::shared_ptr<RateLimiter> limiter, store::Store* idempotency_store)
    : impl_(std::make_unique<HttpServerImpl>(std::move(config), registry, std::move(authenticator),
                                             std::move(limiter), idempotency_store)) {}

HttpServer::~HttpServer() {
  impl_->stop();
}

void HttpServer::add_raw_route(std::string method, std::string path, RawHandler handler,
                               RawRouteOptions options) {
  impl_->raw_routes_.push_back(
      RawRoute{std::move(method), std::move(path), std::move(handler), options});
}

void HttpServer::start() {
  impl_->start();
}
void HttpServer::stop() {
  impl_->stop();
}
uint16_t HttpServer::port() const {
  return impl_->port_;
}
bool HttpServer::tls() const {
  return impl_->ssl_ctx_.has_value();
}

}  // namespace counterlink::api
