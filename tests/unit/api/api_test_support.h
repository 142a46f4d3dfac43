// A ThingService (testdata/echo_test.proto) wired into a ServiceRegistry, a
// test authenticator and rate limiter, and a small libcurl client, shared by
// the REST, gRPC and idempotency tests.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
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
};

// Registers every ThingService method. Errors on request:
//   GetThing.fail_with_status != 0 -> a Problem with that status;
//   CreateThing with thing.name == "" -> 400 invalid_argument field thing.name;
//   ImportThings chunk containing "FAIL" -> 422 bad_row.
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

}  // namespace counterlink::api::testing
