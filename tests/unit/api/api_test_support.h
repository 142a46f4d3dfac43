// A ThingService (testdata/echo_test.proto) wired into a ServiceRegistry, a
// test authenticator and rate limiter, and a small libcurl client, shared by
// the REST, gRPC and idempotency tests.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "counterlink/api/service.h"

namespace counterlink::api::testing {

// Observations of the handlers, shared with the test body.
struct ThingServiceState {
  std::atomic<int> create_calls{0};
  std::atomic<int> get_calls{0};
  std::atomic<int> next_id{1};
  // CreateThing blocks while `hold_creates` is set (concurrency tests).
  std::mutex mu;
  std::condition_variable cv;
  bool hold_creates = false;
  int creates_waiting = 0;
  // Upload observations.
  std::vector<size_t> chunk_sizes;
  std::string upload_bytes;
  std::string upload_content_type;
  std::map<std::string, std::string> upload_params;
  std::string last_principal_tenant;
  bool upload_finished = false;
  // WatchShelf (server stream) observations, under `mu`, `cv` notified.
  int stream_released = 0;  // gated events the test let through
  int streams_started = 0;
  int streams_finished = 0;
  int stream_events_sent = 0;  // send() calls that returned true
  std::string stream_last_event_id;
  std::string stream_transport;
  bool stream_saw_cancel = false;     // a lingering handler saw cancelled()
  bool send_after_cancel_ok = false;  // what send() returned after that
};

// Registers every ThingService method. Errors on request:
//   GetThing.fail_with_status != 0 -> a Problem with that status;
//   CreateThing with thing.name == "" -> 400 invalid_argument field thing.name;
//   ImportThings chunk containing "FAIL" -> 422 bad_row;
//   WatchShelf: see WatchShelfRequest (fail_with_status / fail_after_status).
void register_thing_service(ServiceRegistry& registry, std::shared_ptr<ThingServiceState> state);

// "Bearer tenant" -> tenant tn_1, "Bearer tenant2" -> tn_2, "Bearer admin" ->
// operator, "Bearer limited" -> tenant tn_limited; missing -> 401, other -> 401.
class TestAuthenticator : public CallAuthenticator {
 public:
  Outcome authenticate(const CallCredentials& credentials, Principal& principal) override;
  CallCredentials last() const;

 private:
  mutable std::mutex mu_;
  CallCredentials last_;
};

// 429 (Retry-After 7) for tenant tn_limited.
class TestRateLimiter : public RateLimiter {
 public:
  Outcome admit(const Principal& principal) override;
};

struct HttpResult {
  long status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string error;  // libcurl error, if any
};

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  std::string body;
  std::vector<std::string> headers;  // "Name: value"
  bool chunked = false;              // stream the body with chunked encoding
  size_t chunk_bytes = 16 << 10;     // read callback size when chunked
  bool insecure_tls = false;         // accept a self-signed certificate
};

HttpResult http(const HttpRequest& request);

// A streaming GET (server-sent events) read by libcurl on a thread of its
// own, so a test can look at the body while the response is still coming.
class SseClient {
 public:
  SseClient(std::string url, std::vector<std::string> headers);
  ~SseClient();  // hangs up (if still open) and joins
  SseClient(const SseClient&) = delete;
  SseClient& operator=(const SseClient&) = delete;

  // Waits until the body received so far contains `text`.
  bool wait_for_body(const std::string& text,
                     std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Waits until the response has ended (the server closed it, or hang_up()).
  bool wait_done(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  std::string body() const;
  HttpResult result() const;  // status and headers as soon as they arrived
  // The client goes away: the connection is shut down at once.
  void hang_up();

  struct Shared;  // between the test and libcurl's thread

 private:
  std::shared_ptr<Shared> shared_;
  std::thread thread_;
};

}  // namespace counterlink::api::testing
