// What the transports know about each registered method, read once at start
// from the generated descriptor pool: the google.api.http bindings (compiled
// path templates), the counterlink.* method options and the handler.
//
// Private to the api component (includes protobuf headers). Immutable after
// build(): safe to read from any thread.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "counterlink/api/service.h"

#include "path_template.h"

namespace google::protobuf {
class MethodDescriptor;
class Descriptor;
}  // namespace google::protobuf

namespace counterlink::api {

struct HttpBinding {
  std::string http_method;  // "GET", "POST", ... (custom kinds as written)
  PathTemplate path;
  std::string body;  // "" (no body), "*" or a top-level request field name
};

struct MethodInfo {
  std::string full_name;  // "counterlink.v1.DeviceService.CreateDevice"
  std::string grpc_path;  // "/counterlink.v1.DeviceService/CreateDevice"
  const google::protobuf::MethodDescriptor* descriptor = nullptr;
  const google::protobuf::Message* request_prototype = nullptr;
  const google::protobuf::Message* response_prototype = nullptr;
  bool admin_only = false;
  bool idempotent_create = false;
  std::vector<std::string> upload_media_types;  // non-empty: an upload method
  // `returns (stream M)` without a client stream: served as SSE / a
  // server-streaming call; the response prototype is M.
  bool server_stream = false;
  std::vector<HttpBinding> bindings;
  // Exactly one is set (each points into the ServiceRegistry).
  const UnaryHandler* unary = nullptr;
  const UploadFactory* upload = nullptr;
  const StreamHandler* stream = nullptr;

  bool is_upload() const { return upload != nullptr; }
  bool is_stream() const { return stream != nullptr; }
};

// Method options and bindings of one descriptor (no handler needed); the
// OpenAPI generator uses it too. Throws std::runtime_error on a bad template.
MethodInfo describe_method(const google::protobuf::MethodDescriptor& method);

class MethodTable {
 public:
  // Throws std::runtime_error (start-up) when a registered method is not in
  // the generated pool (link its proto library), or an annotation is invalid.
  // The registry must outlive the table.
  explicit MethodTable(const ServiceRegistry& registry);

  const MethodInfo* find(std::string_view full_name) const;
  const MethodInfo* find_grpc(std::string_view grpc_path) const;

  enum class RouteResult { kMatched, kNoSuchPath, kWrongMethod };
  struct Match {
    const MethodInfo* method = nullptr;
    const HttpBinding* binding = nullptr;
    PathTemplate::Bindings variables;
  };
  // kWrongMethod fills `allow` with the methods the path supports ("GET, POST").
  RouteResult route(std::string_view http_method, std::string_view path, Match& match,
                    std::string& allow) const;

  const std::vector<std::unique_ptr<MethodInfo>>& methods() const { return methods_; }

 private:
  std::vector<std::unique_ptr<MethodInfo>> methods_;
  std::map<std::string, const MethodInfo*, std::less<>> by_name_;
  std::map<std::string, const MethodInfo*, std::less<>> by_grpc_path_;
};

}  // namespace counterlink::api
