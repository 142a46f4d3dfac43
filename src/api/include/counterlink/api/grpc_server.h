// The gRPC server on its own port. Every method is dispatched by name through
// the same ServiceRegistry (and the same CallPipeline: authentication, quota,
// admin-only, Idempotency-Key) as REST, via a generic service, so no
// generated service classes are needed.
//
// Credentials come from metadata: `authorization`, the signature headers
// (x-cl-timestamp, ...) under the same lower-case names as REST, and
// `idempotency-key`; `x-request-id` is echoed (or generated) in the initial
// metadata. The CallCredentials of a gRPC call: http_method "POST", path
// "/package.Service/Method", body_sha256_hex of the request message bytes
// ("" for uploads).
//
// A Problem becomes a grpc::Status: 400 INVALID_ARGUMENT, 401
// UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 NOT_FOUND, 409 ALREADY_EXISTS
// (ABORTED for idempotency_request_in_progress), 412/422 FAILED_PRECONDITION,
// 413/429 RESOURCE_EXHAUSTED, 415 INVALID_ARGUMENT, 501 UNIMPLEMENTED, 503
// UNAVAILABLE, else INTERNAL; the detail is the message and the trailing
// metadata carries counterlink-problem-code, counterlink-problem-field and
// retry-after. Unknown methods: UNIMPLEMENTED.
//
// Upload methods are client streams: the first message's fields other than
// `content_type` and `data` are the params, every message's `data` is a chunk.
//
// Server streams (`returns (stream M)`): the one request message goes
// through the pipeline like a unary call (no idempotency), the
// `last-event-id` metadata (if sent) becomes CallContext::last_event_id, and
// the StreamHandler runs on a thread of its own (at most `max_streams` at
// once: UNAVAILABLE too_many_streams above). Each send() writes one message
// (one write in flight, send() blocks while `stream_buffer_bytes` are
// queued); heartbeat() writes nothing. The handler's Outcome is the status,
// mapped as above. Client cancellation or a failed write makes send() return
// false; stop() cancels open streams, waits for their handlers, and ends a
// stream whose handler then returned OK with UNAVAILABLE (reconnect).
//
// Threading: start()/stop() from one controlling thread. gRPC's own threads
// receive; handlers run on `worker_threads` workers (they block), stream
// handlers on threads of their own.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "counterlink/api/service.h"

namespace counterlink::store {
class Store;
}

namespace counterlink::api {

class GrpcServerImpl;

struct GrpcServerConfig {
  // Seals stored idempotent answers (null = stored as they are).
  std::shared_ptr<const AnswerSealer> idempotency_sealer;
  std::string bind_address = "0.0.0.0";
  uint16_t port = 9090;  // 0 = any free port (see port())
  int worker_threads = 4;
  std::string tls_cert_file;  // TLS when both are set (PEM files)
  std::string tls_key_file;
  int max_message_bytes = 4 << 20;       // per message; uploads stream many
  size_t max_upload_bytes = 256u << 20;  // all `data` of one upload stream (413 above)
  std::chrono::milliseconds stop_grace{10'000};
  // Open server streams (one thread each), as HttpServerConfig::max_streams.
  size_t max_streams = 256;
  // Per stream: send() blocks while this many message bytes are not yet
  // handed to gRPC (its own flow control then holds them).
  size_t stream_buffer_bytes = 1 << 20;
};

// The gRPC status code (grpc::StatusCode value) for a problem.
int grpc_status_code(const Problem& problem);

class GrpcServer {
 public:
  // Same ownership and start-up errors as HttpServer.
  GrpcServer(GrpcServerConfig config, const ServiceRegistry& registry,
             std::shared_ptr<CallAuthenticator> authenticator, std::shared_ptr<RateLimiter> limiter,
             store::Store* idempotency_store);
  ~GrpcServer();  // stop()s
  GrpcServer(const GrpcServer&) = delete;
  GrpcServer& operator=(const GrpcServer&) = delete;

  // Throws std::runtime_error when the port cannot be bound or TLS files
  // cannot be read.
  void start();
  // Stops accepting calls, waits up to stop_grace for in-flight ones, then
  // cancels the rest. Idempotent.
  void stop();
  uint16_t port() const;

 private:
  std::unique_ptr<GrpcServerImpl> impl_;
};

}  // namespace counterlink::api
