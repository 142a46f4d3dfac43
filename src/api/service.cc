#include "counterlink/api/service.h"

#include <utility>

namespace counterlink::api {

// A method has one kind: registering it again replaces the earlier handler.
void ServiceRegistry::add_unary(std::string full_method, UnaryHandler handler) {
  upload_.erase(full_method);
  stream_.erase(full_method);
  unary_[std::move(full_method)] = std::move(handler);
}

void ServiceRegistry::add_upload(std::string full_method, UploadFactory factory) {
  unary_.erase(full_method);
  stream_.erase(full_method);
  upload_[std::move(full_method)] = std::move(factory);
}

void ServiceRegistry::add_stream(std::string full_method, StreamHandler handler) {
  unary_.erase(full_method);
  upload_.erase(full_method);
  stream_[std::move(full_method)] = std::move(handler);
}

const UnaryHandler* ServiceRegistry::find_unary(std::string_view full_method) const {
  auto it = unary_.find(full_method);
  return it == unary_.end() ? nullptr : &it->second;
}

const UploadFactory* ServiceRegistry::find_upload(std::string_view full_method) const {
  auto it = upload_.find(full_method);
  return it == upload_.end() ? nullptr : &it->second;
}

const StreamHandler* ServiceRegistry::find_stream(std::string_view full_method) const {
  auto it = stream_.find(full_method);
  return it == stream_.end() ? nullptr : &it->second;
}

std::vector<std::string> ServiceRegistry::methods() const {
  std::vector<std::string> names;
  names.reserve(unary_.size() + upload_.size() + stream_.size());
  for (const auto& [name, handler] : unary_)
    names.push_back(name);
  for (const auto& [name, factory] : upload_)
    names.push_back(name);
  for (const auto& [name, handler] : stream_)
    names.push_back(name);
  return names;
}

namespace {

Problem make(int status, std::string code, std::string title, std::string detail,
             std::string field = {}) {
  Problem p;
  p.http_status = status;
  p.code = std::move(code);
  p.title = std::move(title);
  p.detail = std::move(detail);
  p.field = std::move(field);
  return p;
}

// "device" -> "Device"
std::string capitalized(std::string s) {
  if (!s.empty() && s[0] >= 'a' && s[0] <= 'z') s[0] = static_cast<char>(s[0] - 'a' + 'A');
  for (auto& c : s) {
    if (c == '_') c = ' ';
  }
  return s;
}

}  // namespace

Problem invalid_argument(std::string field, std::string detail) {
  return make(400, "invalid_argument", "Invalid argument", std::move(detail), std::move(field));
}

Problem not_found(std::string what, std::string detail) {
  std::string title = capitalized(what) + " not found";
  return make(404, what + "_not_found", std::move(title), std::move(detail));
}

Problem already_exists(std::string code, std::string detail) {
  return make(409, std::move(code), "Already exists", std::move(detail));
}

Problem failed_precondition(std::string code, std::string detail) {
  return make(422, std::move(code), "Failed precondition", std::move(detail));
}

Problem unauthenticated(std::string detail) {
  return make(401, "unauthenticated", "Unauthenticated", std::move(detail));
}

Problem permission_denied(std::string detail) {
  return make(403, "permission_denied", "Permission denied", std::move(detail));
}

Problem rate_limited(int retry_after_s, std::string detail) {
  Problem p = make(429, "rate_limited", "Too many requests", std::move(detail));
  p.retry_after_s = retry_after_s;
  return p;
}

Problem unavailable(std::string detail) {
  Problem p = make(503, "unavailable", "Service unavailable", std::move(detail));
  p.retry_after_s = 1;
  return p;
}

Problem internal_error(std::string detail) {
  return make(500, "internal", "Internal error", std::move(detail));
}

}  // namespace counterlink::api
