// A small blocking client for Counterlink's REST API, used by `counterlink
// admin`. It speaks JSON over HTTP(S) with a bearer token and turns RFC 9457
// problem answers into readable errors. One client per thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace counterlink::cli {

struct ApiAnswer {
  long status = 0;  // HTTP status; 0 = no answer (connection failed)
  nlohmann::json body;
  std::string error;  // transport error, when status == 0
  bool ok() const { return status >= 200 && status < 300; }
  // "Device not found: no device dv_… in this tenant (code device_not_found)"
  std::string describe() const;
};

// Called while an upload runs: bytes sent so far and the total.
using UploadProgress = std::function<void(uint64_t sent, uint64_t total)>;

class ApiClient {
 public:
  // base_url: "http://127.0.0.1:8080"; token: "ak_….secret" (may be empty).
  ApiClient(std::string base_url, std::string token);
  ~ApiClient();
  ApiClient(const ApiClient&) = delete;
  ApiClient& operator=(const ApiClient&) = delete;

  ApiAnswer get(const std::string& path);
  ApiAnswer post(const std::string& path, const nlohmann::json& body);
  ApiAnswer patch(const std::string& path, const nlohmann::json& body);
  ApiAnswer del(const std::string& path);
  // Streams the file as the request body (not loaded into memory).
  ApiAnswer upload(const std::string& path, const std::string& file,
                   const std::string& content_type, const UploadProgress& progress);

 private:
  ApiAnswer send(const std::string& method, const std::string& path, const std::string* body);
  // `configure` receives the CURL* handle; timeout_s 0 = none.
  ApiAnswer perform(const std::string& path, const std::vector<std::string>& headers,
                    const std::function<void(void*)>& configure, long timeout_s);

  std::string base_url_;
  std::string token_;
  void* curl_;  // CURL*, kept out of this header
};

// Percent-encodes a query parameter value.
std::string url_encode(const std::string& value);

}  // namespace counterlink::cli
