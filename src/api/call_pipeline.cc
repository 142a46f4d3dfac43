#include "call_pipeline.h"

#include <chrono>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/message.h>
#include <spdlog/spdlog.h>

#include "counterlink/store/store.h"

#include "json_codec.h"

namespace counterlink::api {

namespace gp = google::protobuf;

namespace {

std::string deterministic_bytes(const gp::Message& message) {
  std::string out;
  {
    gp::io::StringOutputStream stream(&out);
    gp::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    message.SerializeToCodedStream(&coded);
  }
  return out;
}

// A 4xx other than 429 is the final answer to that request; retrying the same
// request gets the same answer, so it is remembered. 429 and 5xx are not.
bool final_status(int status) {
  return status < 500 && status != 429;
}

store::TimeMs now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

bool valid_idempotency_key(std::string_view key) {
  if (key.empty() || key.size() > 255) return false;
  for (char c : key) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

CallPipeline::CallPipeline(std::shared_ptr<CallAuthenticator> authenticator,
                           std::shared_ptr<RateLimiter> limiter, store::Store* idempotency_store,
                           std::shared_ptr<const AnswerSealer> sealer)
    : authenticator_(std::move(authenticator)),
      limiter_(std::move(limiter)),
      idempotency_store_(idempotency_store),
      sealer_(std::move(sealer)) {}

Outcome CallPipeline::guarded(const char* step, const CallContext& ctx,
                              const std::function<Outcome()>& fn) {
  try {
    return fn();
  } catch (const std::exception& e) {
    spdlog::warn("api.handler_exception method={} step={} request_id={} error=\"{}\"", ctx.method,
                 step, ctx.request_id, e.what());
  } catch (...) {
    spdlog::warn("api.handler_exception method={} step={} request_id={} error=unknown", ctx.method,
                 step, ctx.request_id);
  }
  return internal_error(
      "The server failed to handle the request; retry later or report request id " +
      ctx.request_id + ".");
}

Outcome CallPipeline::admit(CallContext& ctx, const CallCredentials& credentials,
                            const MethodInfo* method) const {
  if (authenticator_) {
    Principal principal;
    if (auto problem = guarded("authenticate", ctx, [&] {
          return authenticator_->authenticate(credentials, principal);
        })) {
      return problem;
    }
    ctx.principal = std::move(principal);
  }
  if (limiter_) {
    if (auto problem = guarded("rate_limit", ctx, [&] { return limiter_->admit(ctx.principal); }))
      return problem;
  }
  if (method && method->admin_only && !ctx.principal.admin) {
    return permission_denied("Only operator keys may call " + method->full_name +
                             "; use an operator key.");
  }
  return std::nullopt;
}

UnaryAnswer CallPipeline::run_handler(CallContext& ctx, const MethodInfo& method,
                                      const gp::Message& request) const {
  UnaryAnswer answer;
  answer.response.reset(method.response_prototype->New());
  answer.problem =
      guarded("handle", ctx, [&] { return (*method.unary)(ctx, request, *answer.response); });
  if (answer.problem) {
    answer.http_status = answer.problem->http_status;
    answer.response.reset();
  }
  return answer;
}

UnaryAnswer CallPipeline::run_unary(CallContext& ctx, const MethodInfo& method,
                                    const gp::Message& request,
                                    const std::optional<std::string>& idempotency_key) const {
  auto fail = [](Problem p) {
    UnaryAnswer a;
    a.http_status = p.http_status;
    a.problem = std::move(p);
    return a;
  };
  if (idempotency_key && !valid_idempotency_key(*idempotency_key)) {
    return fail(invalid_argument(
        "Idempotency-Key",
        "Idempotency-Key must be 1 to 255 printable ASCII characters; a UUID works well."));
  }
  if (!idempotency_key || !method.idempotent_create || !idempotency_store_) {
    return run_handler(ctx, method, request);
  }

  store::IdempotencyRecord record;
  record.scope = !ctx.principal.tenant_id.empty() ? ctx.principal.tenant_id
                 : !ctx.principal.key_id.empty()  ? "admin:" + ctx.principal.key_id
                                                  : "anonymous";
  record.key = *idempotency_key;
  record.request_hash = sha256_hex(method.full_name + "\n" + deterministic_bytes(request));
  record.created_ms = now_ms();
  auto begun = idempotency_store_->begin_idempotent(record);
  if (!begun.ok()) {
    spdlog::warn("api.idempotency_unavailable method={} request_id={} error=\"{}\"",
                 method.full_name, ctx.request_id, begun.status().message);
    return fail(unavailable(
        "The idempotency record could not be stored; retry with the same Idempotency-Key."));
  }
  if (const auto& existing = begun.value()) {
    if (existing->request_hash != record.request_hash) {
      Problem p = failed_precondition(
          "idempotency_key_reused",
          "This Idempotency-Key was used for a different request; use a new key for a "
          "new request.");
      p.title = "Idempotency key reused";
      p.field = "Idempotency-Key";
      return fail(std::move(p));
    }
    if (!existing->completed) {
      Problem p;
      p.http_status = 409;
      p.code = "idempotency_request_in_progress";
      p.title = "Request in progress";
      p.detail = "A request with this Idempotency-Key is still being processed; retry shortly.";
      p.retry_after_s = 1;
      return fail(std::move(p));
    }
    UnaryAnswer replay;
    replay.replayed = true;
    replay.http_status = existing->http_status;
    if (sealer_) {
      auto opened = sealer_->open(existing->response_body, record.scope + "\n" + record.key);
      if (!opened) {
        spdlog::error("api.idempotency_unreadable method={} request_id={}", method.full_name,
                      ctx.request_id);
        return fail(internal_error(
            "The stored answer for this Idempotency-Key cannot be read (was a master key "
            "removed?); use a new key."));
      }
      replay.replayed_body = std::move(*opened);
    } else {
      replay.replayed_body = existing->response_body;
    }
    return replay;
  }

  UnaryAnswer answer = run_handler(ctx, method, request);
  const auto stored = [&](std::string body) {
    return sealer_ ? sealer_->seal(body, record.scope + "\n" + record.key) : body;
  };
  store::Status done;
  if (!answer.problem) {
    done = idempotency_store_->complete_idempotent(record.scope, record.key, answer.http_status,
                                                   stored(message_to_json(*answer.response)));
  } else if (final_status(answer.http_status)) {
    done = idempotency_store_->complete_idempotent(
        record.scope, record.key, answer.http_status,
        stored(problem_to_json(*answer.problem, ctx.request_id)));
  } else {
    done = idempotency_store_->abandon_idempotent(record.scope, record.key);
  }
  if (!done.ok()) {
    // The answer stands; a retry may run the handler again (or see 409 until
    // the record expires), which is the best the store allows.
    spdlog::warn("api.idempotency_complete_failed method={} request_id={} error=\"{}\"",
                 method.full_name, ctx.request_id, done.message);
  }
  return answer;
}

}  // namespace counterlink::api
