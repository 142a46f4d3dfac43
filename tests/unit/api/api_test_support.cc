#include "api_test_support.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include <curl/curl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "echo_test.pb.h"

namespace counterlink::api::testing {

namespace v1 = counterlink::test::v1;

namespace {

class ImportHandler : public UploadHandler {
 public:
  explicit ImportHandler(std::shared_ptr<ThingServiceState> state) : state_(std::move(state)) {}

  Outcome start(CallContext& ctx, std::string_view content_type,
                const std::map<std::string, std::string>& params) override {
    std::lock_guard lock(state_->mu);
    state_->upload_content_type = std::string(content_type);
    state_->upload_params = params;
    state_->last_principal_tenant = ctx.principal.tenant_id;
    return std::nullopt;
  }

  Outcome chunk(std::string_view data) override {
    std::lock_guard lock(state_->mu);
    state_->chunk_sizes.push_back(data.size());
    state_->upload_bytes.append(data);
    if (data.find("FAIL") != std::string_view::npos) {
      return failed_precondition("bad_row", "A row says FAIL; fix the row and upload again.");
    }
    bytes_ += data.size();
    ++chunks_;
    return std::nullopt;
  }

  Outcome finish(google::protobuf::Message& response) override {
    auto& out = static_cast<v1::ImportThingsResponse&>(response);
    std::lock_guard lock(state_->mu);
    out.set_bytes(static_cast<int64_t>(bytes_));
    out.set_chunks(chunks_);
    out.set_content_type(state_->upload_content_type);
    auto batch = state_->upload_params.find("batch");
    if (batch != state_->upload_params.end()) out.set_batch(batch->second);
    state_->upload_finished = true;
    return std::nullopt;
  }

 private:
  std::shared_ptr<ThingServiceState> state_;
  size_t bytes_ = 0;
  int chunks_ = 0;
};

Problem test_problem(int status) {
  Problem p;
  p.http_status = status;
  p.code = "test_failure";
  p.title = "Test failure";
  p.detail = "Failing as asked.";
  p.field = "fail_with_status";
  if (status == 429 || status == 503) p.retry_after_s = 3;
  return p;
}

// WatchShelf: see WatchShelfRequest.
Outcome watch_shelf(ThingServiceState& state, CallContext& ctx, const v1::WatchShelfRequest& req,
                    StreamSink& sink) {
  {
    std::lock_guard lock(state.mu);
    ++state.streams_started;
    state.stream_last_event_id = ctx.last_event_id;
    state.stream_transport = ctx.transport;
  }
  state.cv.notify_all();
  struct Finished {
    ThingServiceState& state;
    ~Finished() {
      {
        std::lock_guard lock(state.mu);
        ++state.streams_finished;
      }
      state.cv.notify_all();
    }
  } finished{state};
  // Waits for the test; false when the stream was cancelled meanwhile.
  auto wait_until = [&](auto ready) {
    std::unique_lock lock(state.mu);
    while (!ready()) {
      if (sink.cancelled()) return false;
      state.cv.wait_for(lock, std::chrono::milliseconds(5));
    }
    return true;
  };

  if (req.fail_with_status() != 0) return test_problem(req.fail_with_status());
  if (req.heartbeat() && !sink.heartbeat()) return std::nullopt;
  const long first = std::strtol(ctx.last_event_id.c_str(), nullptr, 10) + 1;
  for (int i = 0; i < req.count(); ++i) {
    if (req.gated() && !wait_until([&] { return state.stream_released >= i; })) return std::nullopt;
    v1::ShelfEvent event;
    event.set_id(std::to_string(first + i));
    event.set_shelf(req.shelf());
    event.set_resumed_after(ctx.last_event_id);
    event.mutable_thing()->set_name("line one\nline two");  // JSON escapes it
    event.set_padding(std::string(static_cast<size_t>(std::max(0, req.padding())), 'p'));
    if (!sink.send(event, event.id(), "thing")) return std::nullopt;
    {
      std::lock_guard lock(state.mu);
      ++state.stream_events_sent;
    }
    state.cv.notify_all();
  }
  if (req.linger()) {
    wait_until([] { return false; });  // until cancelled
    bool sent = sink.send(v1::ShelfEvent(), "late", "");
    {
      std::lock_guard lock(state.mu);
      state.stream_saw_cancel = sink.cancelled();
      state.send_after_cancel_ok = sent;
    }
    state.cv.notify_all();
  }
  if (req.fail_after_status() != 0) return test_problem(req.fail_after_status());
  return std::nullopt;
}

}  // namespace

void register_thing_service(ServiceRegistry& registry, std::shared_ptr<ThingServiceState> state) {
  registry.unary<v1::GetThingRequest, v1::Thing>(
      "counterlink.test.v1.ThingService.GetThing",
      [state](CallContext&, const v1::GetThingRequest& req, v1::Thing& resp) -> Outcome {
        ++state->get_calls;
        if (req.fail_with_status() != 0) return test_problem(req.fail_with_status());
        resp.set_id(req.thing_id());
        resp.set_name("thing " + req.thing_id());
        return std::nullopt;
      });
  registry.unary<v1::ListThingsRequest, v1::ListThingsResponse>(
      "counterlink.test.v1.ThingService.ListThings",
      [](CallContext&, const v1::ListThingsRequest& req, v1::ListThingsResponse& resp) -> Outcome {
        auto* t = resp.add_things();
        t->set_shelf(req.shelf());
        t->set_size_bytes(req.page_size());
        for (const auto& tag : req.tags())
          t->add_tags(tag);
        t->set_state(req.state());
        t->set_name(req.include_retired() ? "with retired" : "active only");
        resp.set_next_page_token(std::to_string(req.min_score()));
        return std::nullopt;
      });
  registry.unary<v1::CreateThingRequest, v1::Thing>(
      "counterlink.test.v1.ThingService.CreateThing",
      [state](CallContext& ctx, const v1::CreateThingRequest& req, v1::Thing& resp) -> Outcome {
        ++state->create_calls;
        {
          std::unique_lock lock(state->mu);
          ++state->creates_waiting;
          state->cv.notify_all();
          state->cv.wait(lock, [&] { return !state->hold_creates; });
          --state->creates_waiting;
          state->last_principal_tenant = ctx.principal.tenant_id;
        }
        if (req.thing().name().empty())
          return invalid_argument("thing.name", "Give the thing a name.");
        resp = req.thing();
        resp.set_id("th_" + std::to_string(state->next_id++));
        return std::nullopt;
      });
  registry.unary<v1::UpdateThingRequest, v1::Thing>(
      "counterlink.test.v1.ThingService.UpdateThing",
      [](CallContext&, const v1::UpdateThingRequest& req, v1::Thing& resp) -> Outcome {
        resp = req.thing();
        return std::nullopt;
      });
  registry.unary<v1::RotateSecretRequest, v1::RotateSecretResponse>(
      "counterlink.test.v1.ThingService.RotateSecret",
      [](CallContext&, const v1::RotateSecretRequest& req,
         v1::RotateSecretResponse& resp) -> Outcome {
        resp.set_thing_id(req.thing_id());
        resp.set_secret(std::string(static_cast<size_t>(std::max(0, req.length())), 's'));
        return std::nullopt;
      });
  registry.unary<v1::DeleteThingRequest, google::protobuf::Empty>(
      "counterlink.test.v1.ThingService.DeleteThing",
      [](CallContext&, const v1::DeleteThingRequest&, google::protobuf::Empty&) -> Outcome {
        return std::nullopt;
      });
  registry.add_upload("counterlink.test.v1.ThingService.ImportThings",
                      [state] { return std::make_unique<ImportHandler>(state); });
  registry.stream<v1::WatchShelfRequest>(
      "counterlink.test.v1.ThingService.WatchShelf",
      [state](CallContext& ctx, const v1::WatchShelfRequest& req, StreamSink& sink) {
        return watch_shelf(*state, ctx, req, sink);
      });
}

Outcome TestAuthenticator::authenticate(const CallCredentials& credentials, Principal& principal) {
  {
    std::lock_guard lock(mu_);
    last_ = credentials;
  }
  const std::string& auth = credentials.authorization;
  if (auth.empty()) return unauthenticated("Send an API key: Authorization: Bearer <key>.");
  if (auth == "Bearer tenant") {
    principal = Principal{"key_tenant", "tn_1", false};
  } else if (auth == "Bearer tenant2") {
    principal = Principal{"key_tenant2", "tn_2", false};
  } else if (auth == "Bearer admin") {
    principal = Principal{"key_admin", "", true};
  } else if (auth == "Bearer limited") {
    principal = Principal{"key_limited", "tn_limited", false};
  } else {
    return unauthenticated("The API key is not valid; check it or create a new one.");
  }
  return std::nullopt;
}

CallCredentials TestAuthenticator::last() const {
  std::lock_guard lock(mu_);
  return last_;
}

Outcome TestRateLimiter::admit(const Principal& principal) {
  if (principal.tenant_id == "tn_limited")
    return rate_limited(7, "Over the request quota; retry after 7 s.");
  return std::nullopt;
}

namespace {

size_t write_body(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

size_t write_header(char* data, size_t size, size_t n, void* user) {
  std::string line(data, size * n);
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(' '));
    value.erase(value.find_last_not_of("\r\n ") + 1);
    (*static_cast<std::map<std::string, std::string>*>(user))[name] = value;
  }
  return size * n;
}

struct ReadState {
  const std::string* body;
  size_t offset = 0;
  size_t max_per_call;
};

size_t read_body(char* buffer, size_t size, size_t n, void* user) {
  auto* st = static_cast<ReadState*>(user);
  size_t room = std::min(size * n, st->max_per_call);
  size_t left = st->body->size() - st->offset;
  size_t take = std::min(room, left);
  std::memcpy(buffer, st->body->data() + st->offset, take);
  st->offset += take;
  return take;
}

}  // namespace

HttpResult http(const HttpRequest& request) {
  HttpResult result;
  CURL* curl = curl_easy_init();
  curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, write_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &result.body);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, write_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &result.headers);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 20L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  if (request.insecure_tls) {
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  curl_slist* headers = nullptr;
  for (const auto& h : request.headers)
    headers = curl_slist_append(headers, h.c_str());
  ReadState rs{&request.body, 0, request.chunk_bytes};
  if (request.chunked) {
    headers = curl_slist_append(headers, "Transfer-Encoding: chunked");
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, read_body);
    curl_easy_setopt(curl, CURLOPT_READDATA, &rs);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  } else if (!request.body.empty()) {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request.body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(request.body.size()));
  }
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  CURLcode rc = curl_easy_perform(curl);
  if (rc != CURLE_OK) result.error = curl_easy_strerror(rc);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &result.status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  return result;
}

// ---- SseClient --------------------------------------------------------------

struct SseClient::Shared {
  std::mutex mu;
  std::condition_variable cv;
  HttpResult result;
  bool done = false;
  bool hung_up = false;
  curl_socket_t fd = CURL_SOCKET_BAD;  // the transfer's socket while open
};

namespace {

size_t sse_body(char* data, size_t size, size_t n, void* user) {
  auto* shared = static_cast<SseClient::Shared*>(user);
  {
    std::lock_guard lock(shared->mu);
    if (shared->hung_up) return 0;  // aborts the transfer
    shared->result.body.append(data, size * n);
  }
  shared->cv.notify_all();
  return size * n;
}

size_t sse_header(char* data, size_t size, size_t n, void* user) {
  auto* shared = static_cast<SseClient::Shared*>(user);
  std::string line(data, size * n);
  {
    std::lock_guard lock(shared->mu);
    if (line.rfind("HTTP/", 0) == 0) {
      shared->result.status = std::strtol(line.c_str() + line.find(' '), nullptr, 10);
    } else {
      write_header(data, size, n, &shared->result.headers);
    }
  }
  shared->cv.notify_all();
  return size * n;
}

// Socket open/close go through here so hang_up() never shuts down a
// descriptor number libcurl already closed (and the process reused).
curl_socket_t sse_open_socket(void* user, curlsocktype, curl_sockaddr* address) {
  auto* shared = static_cast<SseClient::Shared*>(user);
  curl_socket_t fd = ::socket(address->family, address->socktype, address->protocol);
  std::lock_guard lock(shared->mu);
  shared->fd = fd;
  return fd;
}

int sse_close_socket(void* user, curl_socket_t fd) {
  auto* shared = static_cast<SseClient::Shared*>(user);
  std::lock_guard lock(shared->mu);
  if (shared->fd == fd) shared->fd = CURL_SOCKET_BAD;
  return ::close(fd);
}

}  // namespace

SseClient::SseClient(std::string url, std::vector<std::string> headers)
    : shared_(std::make_shared<Shared>()) {
  thread_ = std::thread([shared = shared_, url = std::move(url), headers = std::move(headers)] {
    CURL* curl = curl_easy_init();
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, sse_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, shared.get());
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, sse_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, shared.get());
    curl_easy_setopt(curl, CURLOPT_OPENSOCKETFUNCTION, sse_open_socket);
    curl_easy_setopt(curl, CURLOPT_OPENSOCKETDATA, shared.get());
    curl_easy_setopt(curl, CURLOPT_CLOSESOCKETFUNCTION, sse_close_socket);
    curl_easy_setopt(curl, CURLOPT_CLOSESOCKETDATA, shared.get());
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_slist* list = nullptr;
    for (const auto& h : headers)
      list = curl_slist_append(list, h.c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
    CURLcode rc = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(curl);
    curl_slist_free_all(list);
    {
      std::lock_guard lock(shared->mu);
      if (status != 0) shared->result.status = status;
      if (rc != CURLE_OK) shared->result.error = curl_easy_strerror(rc);
      shared->done = true;
    }
    shared->cv.notify_all();
  });
}

SseClient::~SseClient() {
  hang_up();
  thread_.join();
}

bool SseClient::wait_for_body(const std::string& text, std::chrono::milliseconds timeout) {
  std::unique_lock lock(shared_->mu);
  return shared_->cv.wait_for(lock, timeout,
                              [&] { return shared_->result.body.find(text) != std::string::npos; });
}

bool SseClient::wait_done(std::chrono::milliseconds timeout) {
  std::unique_lock lock(shared_->mu);
  return shared_->cv.wait_for(lock, timeout, [&] { return shared_->done; });
}

std::string SseClient::body() const {
  std::lock_guard lock(shared_->mu);
  return shared_->result.body;
}

HttpResult SseClient::result() const {
  std::lock_guard lock(shared_->mu);
  return shared_->result;
}

void SseClient::hang_up() {
  std::lock_guard lock(shared_->mu);
  shared_->hung_up = true;
  if (shared_->fd != CURL_SOCKET_BAD) ::shutdown(shared_->fd, SHUT_RDWR);
}

}  // namespace counterlink::api::testing
