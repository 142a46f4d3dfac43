#include "counterlink/api/http_server.h"

#include "json_codec.h"

namespace counterlink::api {

RawResponse problem_response(const Problem& problem, const CallContext& context) {
  RawResponse r;
  r.status = problem.http_status;
  r.content_type = "application/problem+json";
  r.body = problem_to_json(problem, context.request_id);
  if (problem.retry_after_s > 0) r.headers["Retry-After"] = std::to_string(problem.retry_after_s);
  return r;
}

}  // namespace counterlink::api
