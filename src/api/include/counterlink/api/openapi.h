// The OpenAPI 3.0 document of the REST API, generated from the same
// descriptors and google.api.http annotations the REST router uses, so it
// cannot drift from what the server accepts.
//
// Descriptions: the generated descriptor pool keeps no comments, so pass the
// descriptor set that counterlink_proto_library(... DESCRIPTOR_SET) embeds
// (`counterlink::proto_gen::<target>_descriptor_set()`); the leading comments
// of services, methods, messages, fields and enum values become descriptions.
// Without it the document is complete but terse.
//
// Pure function of its inputs; thread-safe. Throws std::runtime_error when a
// named service or registered method is not in the generated pool, or the
// descriptor set cannot be parsed (start-up / CLI errors).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "counterlink/api/service.h"

namespace counterlink::api {

enum class OpenApiFormat { kJson, kYaml };

struct OpenApiInfo {
  std::string title = "Counterlink API";
  std::string version = "v1";
  std::string description;
  // "/" = the host that serves the document (/v1/openapi.json).
  std::vector<std::string> server_urls = {"/"};
  std::string license_name = "Proprietary";
  std::string license_url;    // optional
  std::string contact_email;  // optional
};

// Every method with a google.api.http binding of the named services
// ("counterlink.v1.DeviceService").
std::string openapi_document(const std::vector<std::string>& services, OpenApiFormat format,
                             const OpenApiInfo& info, std::string_view descriptor_set = {});

// The methods registered in `registry` that have an HTTP binding.
std::string openapi_document(const ServiceRegistry& registry, OpenApiFormat format,
                             const OpenApiInfo& info, std::string_view descriptor_set = {});

}  // namespace counterlink::api
