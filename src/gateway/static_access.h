// Authentication and authorization from the static configuration (users and
// ACL rules), for deployments without the platform. Private to the gateway.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "counterlink/gateway/config.h"
#include "counterlink/gateway/gateway.h"
#include "counterlink/gateway/hooks.h"

namespace counterlink::gateway {

class StaticAuthenticator : public Authenticator {
 public:
  explicit StaticAuthenticator(const GatewayConfig& config) : config_(config) {}
  // Completes synchronously.
  void authenticate(const AuthRequest& request, std::function<void(AuthResult)> done) override;

 private:
  const GatewayConfig& config_;
};

class StaticAuthorizer : public Authorizer {
 public:
  explicit StaticAuthorizer(const GatewayConfig& config) : config_(config) {}
  bool authorize(const ClientInfo& client, Action action, std::string_view topic) override;

 private:
  const GatewayConfig& config_;
};

// True if every topic that `filter` can match is also matched by `rule`
// (both valid topic filters). Used to check a subscription against a rule.
bool filter_covers(std::string_view rule, std::string_view filter);

// True if some topic name is matched by both `a` and `b` (valid topic
// filters). Used to refuse subscriptions that overlap a deny rule.
bool filters_intersect(std::string_view a, std::string_view b);

}  // namespace counterlink::gateway
