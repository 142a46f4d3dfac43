// The REST/JSON server on the HTTP port: routes from the google.api.http
// annotations of the registered methods, plus raw routes registered by the
// app (/metrics, /healthz, /readyz, /v1/openapi.json, ...).
//
// Every call: X-Request-Id (a valid incoming one is echoed, else generated) ->
// route (404 / 405 with Allow) -> CallCredentials -> CallAuthenticator ->
// RateLimiter -> admin-only (403) -> request bound from path, query and JSON
// body (400 naming the field, 413 over the body limit) -> Idempotency-Key ->
// handler -> JSON (snake_case, defaults printed) or application/problem+json.
//
// Threading: start()/stop() from one controlling thread. Socket I/O runs on
// `io_threads` threads (one strand per connection); handlers, the
// authenticator, the rate limiter and the store run on a separate pool of
// `worker_threads` (they block), and answers are posted back to the
// connection's strand. Raw route handlers run on the worker pool too; stream
// handlers run on threads of their own (below).
// add_raw_route() only before start().
//
// Uploads (methods with counterlink.upload_media_types): the body is passed to
// the UploadHandler in chunks as it arrives (at most `upload_chunk_bytes`
// each, the next read starts after chunk() returned), up to
// `max_upload_bytes`; query parameters and path variables are the params.
//
// Server streams (methods that `return (stream M)`): authenticated, limited
// and bound like a unary GET (no Idempotency-Key), Last-Event-ID into
// CallContext::last_event_id, then the StreamHandler runs on a thread of its
// own (at most `max_streams` at once, 503 too_many_streams above). A Problem
// before the first send() is an ordinary problem+json answer; the first
// send() / heartbeat() commits `200 text/event-stream` (chunked, one record
// per send: `id:` (omitted when empty), `event:` (omitted when empty),
// `data:` the message's one-line JSON; heartbeat() is a `: keepalive`
// comment), written as soon as it is sent. The connection closes when the
// handler returns. send() blocks while `stream_buffer_bytes` are unwritten
// and returns false once the client has gone (its read side closed, a write
// failed or made no progress for `stream_write_timeout`) or stop() began;
// stop() cancels the open streams and waits for their handlers to return.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "counterlink/api/service.h"

namespace counterlink::store {
class Store;
}

namespace counterlink::api {

class HttpServerImpl;

struct HttpServerConfig {
  // Seals stored idempotent answers (null = stored as they are).
  std::shared_ptr<const AnswerSealer> idempotency_sealer;
  std::string bind_address = "0.0.0.0";
  uint16_t port = 8080;  // 0 = any free port (see port())
  int io_threads = 1;
  int worker_threads = 4;
  // TLS when both are set (PEM files); otherwise plain HTTP.
  std::string tls_cert_file;
  std::string tls_key_file;
  size_t max_json_body_bytes = 1 << 20;  // 413 above
  size_t max_upload_bytes = 256u << 20;  // 413 above
  size_t upload_chunk_bytes = 64 << 10;
  size_t max_header_bytes = 16 << 10;
  std::chrono::milliseconds header_timeout{10'000};  // idle keep-alive and slow headers
  std::chrono::milliseconds body_timeout{60'000};    // between body reads
  std::chrono::milliseconds stop_grace{10'000};      // in-flight calls finish within
  // Open server streams (one thread each); 503 too_many_streams above. 256
  // threads with their default stacks reserve 2 GiB of address space but
  // touch little of it.
  size_t max_streams = 256;
  // Per stream: send() blocks while this much is queued but not yet written
  // to the socket (a slow reader slows its handler, not the server).
  size_t stream_buffer_bytes = 1 << 20;
  // A stream write that does not complete within this closes the stream (a
  // client that stopped reading without closing).
  std::chrono::milliseconds stream_write_timeout{60'000};
};

struct RawRequest {
  std::string method;                          // "GET"
  std::string target;                          // path and query as sent
  std::string path;                            // without the query
  std::string query;                           // without '?'
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  CallContext context;  // request id, remote address, principal (non-public routes)
};

struct RawResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::map<std::string, std::string> headers;  // extra headers
};

using RawHandler = std::function<RawResponse(const RawRequest&)>;

struct RawRouteOptions {
  // Public routes skip authentication and the quota (health, metrics, docs).
  bool is_public = false;
};

// A problem as a raw route's answer: application/problem+json with the same
// body, status and Retry-After as the proto routes give.
RawResponse problem_response(const Problem& problem, const CallContext& context);

class HttpServer {
 public:
  // `registry` and `idempotency_store` (may be null) must outlive the server.
  // Throws std::runtime_error (start-up) on an invalid annotation or a
  // registered method missing from the descriptor pool.
  HttpServer(HttpServerConfig config, const ServiceRegistry& registry,
             std::shared_ptr<CallAuthenticator> authenticator, std::shared_ptr<RateLimiter> limiter,
             store::Store* idempotency_store);
  ~HttpServer();  // stop()s
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // `method` is "GET", "POST", ... or "*" for any. `path` matches exactly, or
  // as a prefix when it ends with '/' ("/console/"). Raw routes are looked up
  // before the proto routes.
  void add_raw_route(std::string method, std::string path, RawHandler handler,
                     RawRouteOptions options = {});

  // Binds and starts serving. Throws std::runtime_error when the address
  // cannot be bound or the TLS files cannot be loaded.
  void start();
  // Stops accepting, lets in-flight requests finish (up to stop_grace),
  // closes idle connections, joins all threads. Idempotent.
  void stop();

  uint16_t port() const;  // the bound port (after start())
  bool tls() const;

 private:
  std::unique_ptr<HttpServerImpl> impl_;
};

}  // namespace counterlink::api
