#include "api_test_support.h"

#include <algorithm>
#include <cstring>

#include <curl/curl.h>

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

}  // namespace

void register_thing_service(ServiceRegistry& registry, std::shared_ptr<ThingServiceState> state) {
  registry.unary<v1::GetThingRequest, v1::Thing>(
      "counterlink.test.v1.ThingService.GetThing",
      [state](CallContext&, const v1::GetThingRequest& req, v1::Thing& resp) -> Outcome {
        ++state->get_calls;
        if (req.fail_with_status() != 0) {
          Problem p;
          p.http_status = req.fail_with_status();
          p.code = "test_failure";
          p.title = "Test failure";
          p.detail = "Failing as asked.";
          p.field = "fail_with_status";
          if (p.http_status == 429 || p.http_status == 503) p.retry_after_s = 3;
          return p;
        }
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

}  // namespace counterlink::api::testing
