#include "cli/api_client.h"

#include <cstdio>
#include <mutex>
#include <stdexcept>

#include <curl/curl.h>

namespace counterlink::cli {
namespace {

size_t collect(char* data, size_t size, size_t count, void* out) {
  static_cast<std::string*>(out)->append(data, size * count);
  return size * count;
}

struct UploadState {
  FILE* file = nullptr;
  uint64_t total = 0;
  const UploadProgress* progress = nullptr;
};

size_t read_file(char* buffer, size_t size, size_t count, void* user) {
  auto* state = static_cast<UploadState*>(user);
  return std::fread(buffer, 1, size * count, state->file);
}

int report_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t sent) {
  auto* state = static_cast<UploadState*>(user);
  if (state->progress && *state->progress) {
    (*state->progress)(static_cast<uint64_t>(sent), state->total);
  }
  return 0;
}

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

ApiAnswer finish(CURL* curl, CURLcode rc, const std::string& response) {
  ApiAnswer answer;
  if (rc != CURLE_OK) {
    answer.error = curl_easy_strerror(rc);
    return answer;
  }
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &answer.status);
  if (!response.empty()) {
    answer.body = nlohmann::json::parse(response, nullptr, /*allow_exceptions=*/false);
    if (answer.body.is_discarded()) answer.body = response;
  }
  return answer;
}

}  // namespace

std::string ApiAnswer::describe() const {
  if (status == 0) {
    return "cannot reach the API: " + error +
           " (is `counterlink serve` running? set --api or COUNTERLINK_API)";
  }
  if (body.is_object() && body.contains("code")) {
    std::string text = body.value("title", std::string("error"));
    const std::string detail = body.value("detail", std::string());
    if (!detail.empty()) text += ": " + detail;
    text += " (HTTP " + std::to_string(status) + ", code " + body.value("code", std::string());
    const std::string field = body.value("field", std::string());
    if (!field.empty()) text += ", field " + field;
    return text + ")";
  }
  return "HTTP " + std::to_string(status) + ": " +
         (body.is_string() ? body.get<std::string>() : body.dump());
}

ApiClient::ApiClient(std::string base_url, std::string token)
    : base_url_(std::move(base_url)), token_(std::move(token)) {
  global_init();
  while (!base_url_.empty() && base_url_.back() == '/')
    base_url_.pop_back();
  curl_ = curl_easy_init();
  if (curl_ == nullptr) throw std::runtime_error("libcurl could not create a handle");
}

ApiClient::~ApiClient() {
  curl_easy_cleanup(static_cast<CURL*>(curl_));
}

// The part every request shares: URL, headers, the answer collected, and
// the timeouts; `configure` sets the method and body.
ApiAnswer ApiClient::perform(const std::string& path, const std::vector<std::string>& headers,
                             const std::function<void(void*)>& configure, long timeout_s) {
  CURL* curl = static_cast<CURL*>(curl_);
  curl_easy_reset(curl);
  const std::string url = base_url_ + path;
  std::string response;
  curl_slist* list = curl_slist_append(nullptr, "Accept: application/json");
  if (!token_.empty()) list = curl_slist_append(list, ("Authorization: Bearer " + token_).c_str());
  for (const auto& h : headers)
    list = curl_slist_append(list, h.c_str());
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, timeout_s);
  configure(curl);
  const CURLcode rc = curl_easy_perform(curl);
  curl_slist_free_all(list);
  return finish(curl, rc, response);
}

ApiAnswer ApiClient::send(const std::string& method, const std::string& path,
                          const std::string* body) {
  std::vector<std::string> headers;
  if (body != nullptr) headers.push_back("Content-Type: application/json");
  return perform(
      path, headers,
      [&](void* handle) {
        CURL* curl = static_cast<CURL*>(handle);
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
        if (body != nullptr) {
          curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body->c_str());
          curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body->size()));
        }
      },
      120L);
}

ApiAnswer ApiClient::get(const std::string& path) {
  return send("GET", path, nullptr);
}

ApiAnswer ApiClient::post(const std::string& path, const nlohmann::json& body) {
  const std::string text = body.dump();
  return send("POST", path, &text);
}

ApiAnswer ApiClient::patch(const std::string& path, const nlohmann::json& body) {
  const std::string text = body.dump();
  return send("PATCH", path, &text);
}

ApiAnswer ApiClient::del(const std::string& path) {
  return send("DELETE", path, nullptr);
}

ApiAnswer ApiClient::upload(const std::string& path, const std::string& file,
                            const std::string& content_type, const UploadProgress& progress) {
  UploadState state;
  state.file = std::fopen(file.c_str(), "rb");
  if (state.file == nullptr) {
    ApiAnswer answer;
    answer.error = "cannot open " + file;
    return answer;
  }
  std::fseek(state.file, 0, SEEK_END);
  state.total = static_cast<uint64_t>(std::ftell(state.file));
  std::fseek(state.file, 0, SEEK_SET);
  state.progress = &progress;

  ApiAnswer answer = perform(
      path, {"Content-Type: " + content_type, "Expect:"},
      [&](void* handle) {
        CURL* curl = static_cast<CURL*>(handle);
        curl_easy_setopt(curl, CURLOPT_POST, 1L);
        curl_easy_setopt(curl, CURLOPT_READFUNCTION, read_file);
        curl_easy_setopt(curl, CURLOPT_READDATA, &state);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(state.total));
        curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, report_progress);
        curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &state);
      },
      0L);  // no overall limit: a large import may take minutes
  std::fclose(state.file);
  return answer;
}

std::string url_encode(const std::string& value) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : value) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

}  // namespace counterlink::cli
