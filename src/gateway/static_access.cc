#include "static_access.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "counterlink/mqtt/topic.h"

namespace counterlink::gateway {
namespace {

std::string sha256_hex(const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 0xF];
  }
  return out;
}

bool equal_constant_time(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

// Splits off the next level of `s`; returns false when none is left.
bool next_level(std::string_view& s, bool& done, std::string_view& level) {
  if (done) return false;
  size_t slash = s.find('/');
  if (slash == std::string_view::npos) {
    level = s;
    done = true;
  } else {
    level = s.substr(0, slash);
    s.remove_prefix(slash + 1);
  }
  return true;
}

// Substitutes %u and %c. For an allow rule (`literal` false) a value that
// could change the shape of the filter (contains '/', '+' or '#') or a missing
// username makes the rule not apply. A deny rule substitutes the value as it
// is: that can only widen what it denies.
bool expand(const std::string& pattern, const ClientInfo& client, bool literal, std::string& out) {
  out.clear();
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '%' && i + 1 < pattern.size() &&
        (pattern[i + 1] == 'u' || pattern[i + 1] == 'c')) {
      const bool user = pattern[i + 1] == 'u';
      if (user && !client.has_username) return false;
      const std::string& value = user ? client.username : client.client_id;
      if (!literal && (value.empty() || value.find_first_of("/+#") != std::string::npos)) {
        return false;
      }
      out += value;
      ++i;
    } else {
      out += pattern[i];
    }
  }
  return true;
}

}  // namespace

void StaticAuthenticator::authenticate(const AuthRequest& request,
                                       std::function<void(AuthResult)> done) {
  const ClientInfo& client = request.client;
  if (!client.has_username) {
    if (config_.allow_anonymous) {
      done(AuthResult{});
    } else {
      done(AuthResult{mqtt::ReasonCode::kNotAuthorized,
                      "anonymous clients are not allowed; connect with a username and password"});
    }
    return;
  }
  for (const StaticUser& user : config_.users) {
    if (user.username != client.username) continue;
    const std::string password = request.password.value_or(std::string());
    bool ok = !user.password_sha256.empty()
                  ? equal_constant_time(sha256_hex(password), user.password_sha256)
                  : equal_constant_time(password, user.password);
    if (ok) {
      done(AuthResult{});
      return;
    }
    break;
  }
  if (config_.users.empty() && config_.allow_anonymous) {
    // Without a user list a username is only a label.
    done(AuthResult{});
    return;
  }
  done(AuthResult{mqtt::ReasonCode::kBadUserNameOrPassword, "bad user name or password"});
}

bool filter_covers(std::string_view rule, std::string_view filter) {
  const bool dollar = !filter.empty() && filter.front() == '$';
  bool rule_done = false, filter_done = false;
  std::string_view r, f;
  bool first = true;
  while (true) {
    bool has_r = next_level(rule, rule_done, r);
    bool has_f = next_level(filter, filter_done, f);
    if (!has_r && !has_f) return true;
    if (has_r && r == "#") return !(first && dollar);
    if (!has_r) return false;  // the filter is longer than the rule
    if (!has_f) {
      // The rule is longer; it still covers if it ends in "/#".
      return next_level(rule, rule_done, r) && r == "#" && rule_done;
    }
    if (f == "#") return false;
    if (r == "+") {
      if (first && dollar) return false;
    } else if (f == "+" || r != f) {
      return false;
    }
    first = false;
  }
}

bool filters_intersect(std::string_view a, std::string_view b) {
  bool a_done = false, b_done = false;
  std::string_view x, y;
  bool first = true;
  while (true) {
    bool has_a = next_level(a, a_done, x);
    bool has_b = next_level(b, b_done, y);
    if (!has_a && !has_b) return true;
    if (first && has_a && has_b) {
      // Topics beginning with '$' are matched only by a filter whose first
      // level is that same literal, never by a leading wildcard.
      const bool a_wild = x == "+" || x == "#";
      const bool b_wild = y == "+" || y == "#";
      if ((a_wild && !b_wild && !y.empty() && y.front() == '$') ||
          (b_wild && !a_wild && !x.empty() && x.front() == '$')) {
        return false;
      }
    }
    if ((has_a && x == "#") || (has_b && y == "#")) return true;
    if (!has_a || !has_b) return false;  // different number of levels
    if (x != "+" && y != "+" && x != y) return false;
    first = false;
  }
}

bool StaticAuthorizer::authorize(const ClientInfo& client, Action action, std::string_view topic) {
  std::string expanded;
  for (const AclRule& rule : config_.acl) {
    const auto bit = static_cast<uint8_t>(action == Action::kPublish ? AclAction::kPublish
                                                                     : AclAction::kSubscribe);
    if ((static_cast<uint8_t>(rule.action) & bit) == 0) continue;
    if (!rule.username.empty()) {
      if (!client.has_username || client.username != rule.username) continue;
    } else if (rule.anonymous && client.has_username) {
      continue;
    }
    const bool deny = rule.effect == AclEffect::kDeny;
    if (!expand(rule.topic, client, deny, expanded)) continue;
    if (deny && !mqtt::is_valid_topic_filter(expanded)) {
      // The value made the filter unreadable ("#" mid-filter): fail closed.
      return false;
    }
    bool matches = action == Action::kPublish ? mqtt::topic_matches(expanded, topic)
                                              : filter_covers(expanded, topic);
    if (!matches) {
      // A deny rule also applies to a subscription that merely overlaps it:
      // "deny a/#" refuses a subscription to "#", and to "+/b" (which would
      // receive "a/b").
      if (rule.effect == AclEffect::kDeny && action == Action::kSubscribe &&
          filters_intersect(topic, expanded)) {
        return false;
      }
      continue;
    }
    return rule.effect == AclEffect::kAllow;
  }
  return config_.acl_default == AclEffect::kAllow;
}

std::shared_ptr<Authenticator> make_static_authenticator(const GatewayConfig& config) {
  return std::make_shared<StaticAuthenticator>(config);
}

std::shared_ptr<Authorizer> make_static_authorizer(const GatewayConfig& config) {
  return std::make_shared<StaticAuthorizer>(config);
}

}  // namespace counterlink::gateway
