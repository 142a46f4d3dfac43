#include "method_table.h"

#include <algorithm>
#include <set>
#include <stdexcept>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

#include "counterlink/options.pb.h"

#include "google/api/annotations.pb.h"

namespace counterlink::api {

namespace gp = google::protobuf;

namespace {

std::vector<std::string> split_media_types(const std::string& list) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    std::string item = list.substr(start, end - start);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) out.push_back(item);
    start = end + 1;
  }
  return out;
}

void add_binding(MethodInfo& info, const google::api::HttpRule& rule) {
  std::string verb;
  std::string pattern;
  switch (rule.pattern_case()) {
    case google::api::HttpRule::kGet:
      verb = "GET", pattern = rule.get();
      break;
    case google::api::HttpRule::kPut:
      verb = "PUT", pattern = rule.put();
      break;
    case google::api::HttpRule::kPost:
      verb = "POST", pattern = rule.post();
      break;
    case google::api::HttpRule::kDelete:
      verb = "DELETE", pattern = rule.delete_();
      break;
    case google::api::HttpRule::kPatch:
      verb = "PATCH", pattern = rule.patch();
      break;
    case google::api::HttpRule::kCustom:
      verb = rule.custom().kind(), pattern = rule.custom().path();
      break;
    default:
      return;
  }
  std::string error;
  auto tmpl = PathTemplate::parse(pattern, &error);
  if (!tmpl) throw std::runtime_error(info.full_name + ": google.api.http " + error);
  const gp::Descriptor* request = info.descriptor->input_type();
  for (const auto& var : tmpl->variables()) {
    // Every segment of the field path must name a field (messages on the way).
    const gp::Descriptor* msg = request;
    size_t start = 0;
    while (true) {
      size_t dot = var.field_path.find('.', start);
      std::string part =
          var.field_path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
      const gp::FieldDescriptor* field = msg ? msg->FindFieldByName(part) : nullptr;
      if (!field) {
        throw std::runtime_error(info.full_name + ": path variable {" + var.field_path +
                                 "} names no field of " + request->full_name());
      }
      if (dot == std::string::npos) break;
      msg = field->message_type();
      start = dot + 1;
    }
  }
  if (!rule.body().empty() && rule.body() != "*" && info.upload_media_types.empty() &&
      !request->FindFieldByName(rule.body())) {
    throw std::runtime_error(info.full_name + ": google.api.http body \"" + rule.body() +
                             "\" names no field of " + request->full_name());
  }
  info.bindings.push_back(HttpBinding{verb, std::move(*tmpl), rule.body()});
}

}  // namespace

MethodInfo describe_method(const gp::MethodDescriptor& method) {
  MethodInfo info;
  info.full_name = method.full_name();
  info.grpc_path = "/" + method.service()->full_name() + "/" + method.name();
  info.descriptor = &method;
  auto* factory = gp::MessageFactory::generated_factory();
  info.request_prototype = factory->GetPrototype(method.input_type());
  info.response_prototype = factory->GetPrototype(method.output_type());
  const gp::MethodOptions& options = method.options();
  info.admin_only = options.GetExtension(counterlink::admin_only);
  info.idempotent_create = options.GetExtension(counterlink::idempotent_create);
  info.upload_media_types =
      split_media_types(options.GetExtension(counterlink::upload_media_types));
  info.server_stream = method.server_streaming() && !method.client_streaming();
  if (options.HasExtension(google::api::http)) {
    const auto& rule = options.GetExtension(google::api::http);
    add_binding(info, rule);
    for (const auto& extra : rule.additional_bindings())
      add_binding(info, extra);
  }
  return info;
}

MethodTable::MethodTable(const ServiceRegistry& registry) {
  const gp::DescriptorPool* pool = gp::DescriptorPool::generated_pool();
  for (const auto& name : registry.methods()) {
    const gp::MethodDescriptor* method = pool->FindMethodByName(name);
    if (!method) {
      throw std::runtime_error(
          "API method " + name +
          " is registered but not in the generated descriptor pool: check the name "
          "(package.Service.Method) and link the proto library that declares it");
    }
    auto info = std::make_unique<MethodInfo>(describe_method(*method));
    info->unary = registry.find_unary(name);
    info->upload = registry.find_upload(name);
    info->stream = registry.find_stream(name);
    if (info->stream && !info->server_stream) {
      throw std::runtime_error(name +
                               " is registered as a stream but does not return `stream M` (or "
                               "also takes a stream); register it with add_unary / add_upload");
    }
    if (!info->stream && method->server_streaming()) {
      throw std::runtime_error(name +
                               " returns a stream; register it with add_stream (streams in both "
                               "directions are not supported)");
    }
    if (info->upload && info->upload_media_types.empty()) {
      throw std::runtime_error(
          name + " is registered as an upload but has no (counterlink.upload_media_types)");
    }
    if (info->unary && !info->upload_media_types.empty()) {
      throw std::runtime_error(
          name + " has (counterlink.upload_media_types); register it with add_upload");
    }
    if (info->upload && !method->client_streaming()) {
      throw std::runtime_error(name + " is an upload; declare its request as `stream` for gRPC");
    }
    by_name_[info->full_name] = info.get();
    by_grpc_path_[info->grpc_path] = info.get();
    methods_.push_back(std::move(info));
  }
}

const MethodInfo* MethodTable::find(std::string_view full_name) const {
  auto it = by_name_.find(full_name);
  return it == by_name_.end() ? nullptr : it->second;
}

const MethodInfo* MethodTable::find_grpc(std::string_view grpc_path) const {
  auto it = by_grpc_path_.find(grpc_path);
  return it == by_grpc_path_.end() ? nullptr : it->second;
}

MethodTable::RouteResult MethodTable::route(std::string_view http_method, std::string_view path,
                                            Match& match, std::string& allow) const {
  int best = -1;
  std::set<std::string> allowed;
  PathTemplate::Bindings vars;
  for (const auto& method : methods_) {
    for (const auto& binding : method->bindings) {
      if (!binding.path.match(path, vars)) continue;
      if (binding.http_method != http_method) {
        allowed.insert(binding.http_method);
        continue;
      }
      if (binding.path.specificity() > best) {
        best = binding.path.specificity();
        match.method = method.get();
        match.binding = &binding;
        match.variables = std::move(vars);
      }
    }
  }
  if (best >= 0) return RouteResult::kMatched;
  if (allowed.empty()) return RouteResult::kNoSuchPath;
  allow.clear();
  for (const auto& m : allowed) {
    if (!allow.empty()) allow += ", ";
    allow += m;
  }
  return RouteResult::kWrongMethod;
}

}  // namespace counterlink::api
