// The seam between the API transports (REST/JSON on the HTTP port, gRPC) and
// the platform services that implement the methods declared in proto/.
//
// A service registers one handler per proto method (by full name, e.g.
// "counterlink.v1.DeviceService.CreateDevice"). Both transports find the
// handler by method, decode the request into the proto message, run the
// handler, and encode the response (protobuf JSON mapping for REST, binary
// for gRPC). Routes, path parameters, admin-only methods and which calls are
// "creating" (idempotent by key) come from the annotations in the protos.
//
// Threading: handlers run on the API worker pool and may block on the store.
// A handler must be safe to call concurrently.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace google::protobuf {
class Message;
}

namespace counterlink::api {

// Who is calling; set by the CallAuthenticator before any handler runs.
struct Principal {
  std::string key_id;
  std::string tenant_id;  // empty for operators
  bool admin = false;     // operator scope: may manage tenants, any tenant's data
};

struct CallContext {
  std::string request_id;  // from X-Request-Id / grpc metadata, or generated
  std::string method;      // full proto method name
  std::string transport;   // "rest" | "grpc"
  std::string remote_address;
  std::string last_event_id;  // REST Last-Event-ID header (server streams), or ""
  Principal principal;
};

// An error for the caller: RFC 9457 problem+json for REST, a gRPC status with
// the same code and message for gRPC.
struct Problem {
  int http_status = 500;
  std::string code;       // stable snake_case code, e.g. "device_not_found"
  std::string title;      // short, stable summary, e.g. "Device not found"
  std::string detail;     // a sentence that says what happened and what to do
  std::string field;      // offending request field (JSON name, dotted), or ""
  int retry_after_s = 0;  // sets Retry-After for 429/503 when > 0
};

// Helpers for the common problems (codes are part of the API contract).
Problem invalid_argument(std::string field, std::string detail);    // 400 invalid_argument
Problem not_found(std::string what, std::string detail);            // 404 <what>_not_found
Problem already_exists(std::string code, std::string detail);       // 409 <code>
Problem failed_precondition(std::string code, std::string detail);  // 422 <code>
Problem unauthenticated(std::string detail);                        // 401 unauthenticated
Problem permission_denied(std::string detail);                      // 403 permission_denied
Problem rate_limited(int retry_after_s, std::string detail);        // 429 rate_limited
Problem unavailable(std::string detail);                            // 503 unavailable
Problem internal_error(std::string detail);                         // 500 internal

// nullopt = success.
using Outcome = std::optional<Problem>;

using UnaryHandler =
    std::function<Outcome(CallContext& ctx, const google::protobuf::Message& request,
                          google::protobuf::Message& response)>;

// A request whose payload is a stream of bytes rather than one message: the
// REST body as it arrives (CSV, JSON lines), or the `data` chunks of a gRPC
// client stream. One object per call.
class UploadHandler {
 public:
  virtual ~UploadHandler() = default;
  // `content_type` is the media type without parameters ("text/csv",
  // "application/x-ndjson"); `params` are the query parameters / the first
  // message's other fields.
  virtual Outcome start(CallContext& ctx, std::string_view content_type,
                        const std::map<std::string, std::string>& params) = 0;
  virtual Outcome chunk(std::string_view data) = 0;  // any split, in order
  virtual Outcome finish(google::protobuf::Message& response) = 0;
};
using UploadFactory = std::function<std::unique_ptr<UploadHandler>()>;

// The sending side of a server stream (a proto method `returns (stream M)`):
// REST serves it as server-sent events (text/event-stream, one `id:` /
// `event:` / `data:` record per message, the data being the message's JSON),
// gRPC as a server-streaming call. Used from the handler's thread only.
class StreamSink {
 public:
  virtual ~StreamSink() = default;
  // Sends one message. `id` is the resume point the client echoes back
  // (SSE `id:`; REST clients send it as Last-Event-ID), `event` the SSE
  // event name (ignored by gRPC). Blocks while the client is slow (bounded
  // buffer). False once the client has gone or the server is stopping: the
  // handler should return.
  virtual bool send(const google::protobuf::Message& message, std::string_view id,
                    std::string_view event) = 0;
  // Keeps an idle stream alive (an SSE comment line; a no-op for gRPC) and
  // reports, like send(), whether the client is still there.
  virtual bool heartbeat() = 0;
  // True once the client has gone or the server is stopping.
  virtual bool cancelled() const = 0;
};

// Runs on a thread of its own (not the worker pool) for as long as the
// stream lasts. A Problem returned before the first send() is answered like a
// unary error; after it, it ends the stream (gRPC status; REST: the SSE
// response ends). `ctx.last_event_id` carries the REST Last-Event-ID header.
using StreamHandler = std::function<Outcome(
    CallContext& ctx, const google::protobuf::Message& request, StreamSink& sink)>;

class ServiceRegistry {
 public:
  void add_unary(std::string full_method, UnaryHandler handler);
  void add_upload(std::string full_method, UploadFactory factory);
  void add_stream(std::string full_method, StreamHandler handler);

  // Typed convenience: the Req/Resp types must be the method's messages.
  template <typename Req, typename Resp, typename Fn>
  void unary(std::string full_method, Fn fn) {
    add_unary(std::move(full_method),
              [fn = std::move(fn)](CallContext& ctx, const google::protobuf::Message& req,
                                   google::protobuf::Message& resp) -> Outcome {
                return fn(ctx, static_cast<const Req&>(req), static_cast<Resp&>(resp));
              });
  }

  template <typename Req, typename Fn>
  void stream(std::string full_method, Fn fn) {
    add_stream(std::move(full_method),
               [fn = std::move(fn)](CallContext& ctx, const google::protobuf::Message& req,
                                    StreamSink& sink) -> Outcome {
                 return fn(ctx, static_cast<const Req&>(req), sink);
               });
  }

  const UnaryHandler* find_unary(std::string_view full_method) const;
  const UploadFactory* find_upload(std::string_view full_method) const;
  const StreamHandler* find_stream(std::string_view full_method) const;
  // Every registered method name (unary, upload and stream), sorted per kind.
  std::vector<std::string> methods() const;

 private:
  std::map<std::string, UnaryHandler, std::less<>> unary_;
  std::map<std::string, UploadFactory, std::less<>> upload_;
  std::map<std::string, StreamHandler, std::less<>> stream_;
};

// What the transports know about a request's credentials.
struct CallCredentials {
  std::string authorization;                   // "Bearer <key_id>.<secret>" or "CL-HMAC-SHA256 ..."
  std::map<std::string, std::string> headers;  // lower-case names (x-cl-timestamp, ...)
  std::string http_method;                     // "POST" (REST) or "POST" for gRPC
  std::string path;                            // path and query as sent
  std::string body_sha256_hex;                 // of the request body; "" for streamed uploads
  bool secure_transport = false;               // TLS, or loopback
};

// Verifies credentials and yields the principal. Implemented by the platform
// (API keys in the store).
class CallAuthenticator {
 public:
  virtual ~CallAuthenticator() = default;
  virtual Outcome authenticate(const CallCredentials& credentials, Principal& principal) = 0;
};

// Protects the stored first answers of idempotent calls at rest: they may
// carry secrets shown only once (a new device's secret, a new API key). The
// platform seals them with the master key; `aad` binds a sealed answer to its
// (scope, key) record.
class AnswerSealer {
 public:
  virtual ~AnswerSealer() = default;
  virtual std::string seal(std::string_view answer, std::string_view aad) const = 0;
  // nullopt when the sealed bytes do not open (tampered, unknown key).
  virtual std::optional<std::string> open(std::string_view sealed, std::string_view aad) const = 0;
};

// Per-tenant request quota; called after authentication for every call.
class RateLimiter {
 public:
  virtual ~RateLimiter() = default;
  virtual Outcome admit(const Principal& principal) = 0;  // 429 with Retry-After when over
};

}  // namespace counterlink::api
