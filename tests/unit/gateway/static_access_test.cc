#include "static_access.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

namespace counterlink::gateway {
namespace {

ClientInfo client(std::string id, std::optional<std::string> user) {
  ClientInfo c;
  c.client_id = std::move(id);
  c.has_username = user.has_value();
  c.username = user.value_or("");
  return c;
}

AuthResult authenticate(StaticAuthenticator& a, const ClientInfo& c,
                        std::optional<std::string> password) {
  AuthResult out{mqtt::ReasonCode::kUnspecifiedError, "not called"};
  a.authenticate(AuthRequest{c, password}, [&](AuthResult r) { out = r; });
  return out;
}

TEST(FilterCovers, WildcardRulesCoverNarrowerFilters) {
  EXPECT_TRUE(filter_covers("a/#", "a/b/c"));
  EXPECT_TRUE(filter_covers("a/#", "a/+/c"));
  EXPECT_TRUE(filter_covers("a/#", "a"));
  EXPECT_TRUE(filter_covers("a/+", "a/b"));
  EXPECT_TRUE(filter_covers("a/+", "a/+"));
  EXPECT_FALSE(filter_covers("a/+", "a/#"));
  EXPECT_FALSE(filter_covers("a/b", "a/+"));
  EXPECT_FALSE(filter_covers("a/+", "a/b/c"));
  EXPECT_FALSE(filter_covers("#", "$SYS/x"));
  EXPECT_TRUE(filter_covers("$SYS/#", "$SYS/x"));
}

TEST(StaticAuthenticator, RefusesAnonymousUnlessAllowed) {
  GatewayConfig cfg;
  StaticAuthenticator auth(cfg);
  EXPECT_EQ(authenticate(auth, client("c", std::nullopt), std::nullopt).reason,
            mqtt::ReasonCode::kNotAuthorized);
  cfg.allow_anonymous = true;
  EXPECT_EQ(authenticate(auth, client("c", std::nullopt), std::nullopt).reason,
            mqtt::ReasonCode::kSuccess);
}

TEST(StaticAuthenticator, ChecksPlainAndHashedPasswords) {
  GatewayConfig cfg;
  cfg.users.push_back(StaticUser{"alice", "s3cret", ""});
  // sha256("hunter2")
  cfg.users.push_back(
      StaticUser{"bob", "", "f52fbd32b2b3b86ff88ef6c490628285f482af15ddcb29541f94bcf526a3f6c7"});
  StaticAuthenticator auth(cfg);
  EXPECT_EQ(authenticate(auth, client("c", "alice"), "s3cret").reason, mqtt::ReasonCode::kSuccess);
  EXPECT_EQ(authenticate(auth, client("c", "alice"), "wrong").reason,
            mqtt::ReasonCode::kBadUserNameOrPassword);
  EXPECT_EQ(authenticate(auth, client("c", "bob"), "hunter2").reason, mqtt::ReasonCode::kSuccess);
  EXPECT_EQ(authenticate(auth, client("c", "bob"), std::nullopt).reason,
            mqtt::ReasonCode::kBadUserNameOrPassword);
  EXPECT_EQ(authenticate(auth, client("c", "mallory"), "x").reason,
            mqtt::ReasonCode::kBadUserNameOrPassword);
}

TEST(StaticAuthorizer, FirstMatchingRuleDecidesWithSubstitution) {
  GatewayConfig cfg;
  cfg.acl_default = AclEffect::kDeny;
  cfg.acl.push_back(AclRule{AclEffect::kDeny, AclAction::kAll, "alice", false, "secret/#"});
  cfg.acl.push_back(AclRule{AclEffect::kAllow, AclAction::kAll, "", false, "devices/%c/#"});
  cfg.acl.push_back(AclRule{AclEffect::kAllow, AclAction::kSubscribe, "alice", false, "#"});
  cfg.acl.push_back(AclRule{AclEffect::kAllow, AclAction::kPublish, "", true, "public/%u"});
  StaticAuthorizer authz(cfg);
  auto alice = client("sp-1", "alice");
  auto anon = client("sp-2", std::nullopt);
  EXPECT_TRUE(authz.authorize(alice, Action::kPublish, "devices/sp-1/up"));
  EXPECT_FALSE(authz.authorize(alice, Action::kPublish, "devices/sp-2/up"));
  EXPECT_TRUE(authz.authorize(alice, Action::kSubscribe, "news/+"));
  EXPECT_FALSE(authz.authorize(alice, Action::kSubscribe, "secret/x"));
  // A subscription overlapping a deny rule is refused as a whole.
  EXPECT_FALSE(authz.authorize(alice, Action::kSubscribe, "#"));
  // %u never matches a client without a username.
  EXPECT_FALSE(authz.authorize(anon, Action::kPublish, "public/"));
  EXPECT_TRUE(authz.authorize(anon, Action::kSubscribe, "devices/sp-2/cmd"));
}

TEST(StaticAuthorizer, SubstitutedValuesCannotWidenAFilter) {
  GatewayConfig cfg;
  cfg.acl_default = AclEffect::kDeny;
  cfg.acl.push_back(AclRule{AclEffect::kAllow, AclAction::kAll, "", false, "devices/%c/#"});
  StaticAuthorizer authz(cfg);
  EXPECT_FALSE(authz.authorize(client("+", std::nullopt), Action::kSubscribe, "devices/+/#"));
  EXPECT_FALSE(authz.authorize(client("#", std::nullopt), Action::kSubscribe, "devices/#"));
}

TEST(StaticAuthorizer, DenyRulesFailClosedWhenSubstitutionIsUnsafe) {
  GatewayConfig cfg;
  cfg.acl.push_back(AclRule{AclEffect::kDeny, AclAction::kPublish, "", false, "locked/%c"});
  StaticAuthorizer authz(cfg);  // acl_default allow
  EXPECT_TRUE(authz.authorize(client("ok-1", std::nullopt), Action::kPublish, "open/x"));
  EXPECT_FALSE(authz.authorize(client("ok-1", std::nullopt), Action::kPublish, "locked/ok-1"));
  // A client id with a '/' or a wildcard must not sidestep the deny rule...
  EXPECT_FALSE(authz.authorize(client("a/b", std::nullopt), Action::kPublish, "locked/a/b"));
  EXPECT_FALSE(authz.authorize(client("+", std::nullopt), Action::kPublish, "locked/x"));
  EXPECT_FALSE(authz.authorize(client("#/x", std::nullopt), Action::kPublish, "open/x"));
  // ...nor deny more than the rule says when the value is harmless.
  EXPECT_TRUE(authz.authorize(client("a/b", std::nullopt), Action::kPublish, "open/x"));
}

}  // namespace
}  // namespace counterlink::gateway
