// Binding REST requests to proto messages and back, the proto3 JSON mapping
// with snake_case names. Errors are Problems naming the offending field.
// Private to the api component.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "counterlink/api/service.h"

#include "method_table.h"

namespace counterlink::api {

using QueryParams = std::vector<std::pair<std::string, std::string>>;

// Splits and percent-decodes "a=1&b=x+y"; 400 invalid_argument on a bad escape.
Outcome parse_query(std::string_view query, QueryParams& out);

// Sets one field, addressed by a dotted path of proto or JSON names, from its
// text form (path variables, query parameters). Repeated fields append.
Outcome set_field_from_text(google::protobuf::Message& root, std::string_view field_path,
                            std::string_view value);

// Parses `json` into `message` (unknown fields rejected). `field_prefix` names
// where the JSON sits in the request ("thing" for body: "thing") so problems
// name the full field path.
Outcome parse_json(std::string_view json, google::protobuf::Message& message);

// The whole REST request -> message: query parameters, then the body per the
// binding's `body`, then the path variables.
Outcome bind_rest_request(const HttpBinding& binding, const PathTemplate::Bindings& variables,
                          const QueryParams& query, std::string_view body,
                          google::protobuf::Message& request);

// proto3 JSON, snake_case names, default values printed.
std::string message_to_json(const google::protobuf::Message& message);

// Problem as RFC 9457 application/problem+json.
std::string problem_to_json(const Problem& problem, std::string_view request_id);
// Inverse of problem_to_json (for replaying stored answers over gRPC);
// unknown members ignored.
Problem problem_from_json(std::string_view json, int http_status);

// Lower-case hex SHA-256.
std::string sha256_hex(std::string_view data);

}  // namespace counterlink::api
