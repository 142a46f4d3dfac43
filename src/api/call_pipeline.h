// The transport-neutral part of every API call: authentication, quota,
// admin-only, Idempotency-Key, and running the handler. REST and gRPC both
// go through it, so a method behaves the same on either.
//
// Threading: all calls block (authenticator, store, handler) and run on the
// API worker pool, never on an I/O thread. The object is immutable after
// construction and shared by both servers.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "counterlink/api/service.h"

#include "method_table.h"

namespace counterlink::store {
class Store;
}

namespace counterlink::api {

struct UnaryAnswer {
  int http_status = 200;
  Outcome problem;                                      // set: the call failed
  std::unique_ptr<google::protobuf::Message> response;  // set on a fresh success
  bool replayed = false;                                // answer from the idempotency store
  std::string replayed_body;                            // its JSON (a response or a problem)
};

class CallPipeline {
 public:
  // Any pointer may be null: no authenticator = anonymous non-admin caller
  // (development and tests only), no limiter = no quota, no store = the
  // Idempotency-Key header is validated but not remembered.
  CallPipeline(std::shared_ptr<CallAuthenticator> authenticator,
               std::shared_ptr<RateLimiter> limiter, store::Store* idempotency_store,
               std::shared_ptr<const AnswerSealer> sealer = nullptr);

  // Authentication, then the quota, then (for `method` non-null) admin-only.
  // Fills ctx.principal. Public raw routes do not call it.
  Outcome admit(CallContext& ctx, const CallCredentials& credentials,
                const MethodInfo* method) const;

  // Runs a unary method after admit(). `idempotency_key` is the header or
  // metadata value when the caller sent one.
  UnaryAnswer run_unary(CallContext& ctx, const MethodInfo& method,
                        const google::protobuf::Message& request,
                        const std::optional<std::string>& idempotency_key) const;

  // Upload calls: runs the handler's steps, turning exceptions into 500s.
  static Outcome guarded(const char* step, const CallContext& ctx,
                         const std::function<Outcome()>& fn);

 private:
  UnaryAnswer run_handler(CallContext& ctx, const MethodInfo& method,
                          const google::protobuf::Message& request) const;

  std::shared_ptr<CallAuthenticator> authenticator_;
  std::shared_ptr<RateLimiter> limiter_;
  store::Store* idempotency_store_;
  std::shared_ptr<const AnswerSealer> sealer_;
};

// 1..255 printable ASCII characters.
bool valid_idempotency_key(std::string_view key);

}  // namespace counterlink::api
