// Small helpers shared by the REST and gRPC servers. Private.
#pragma once

#include <string>
#include <string_view>

namespace counterlink::api {

// A caller-supplied request id we echo: 1..128 of [A-Za-z0-9._:-].
bool valid_request_id(std::string_view id);
// 32 lower-case hex characters from a per-thread CSPRNG-seeded generator.
std::string generate_request_id();

}  // namespace counterlink::api
