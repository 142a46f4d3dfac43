// ApiKeyAuthenticator: bearer tokens and CL-HMAC-SHA256 request signatures
// against the API keys in the store.
//
// Key lookups (key row, its tenant's disabled flag, the opened signing key)
// are cached for cache_ttl_ms so a busy client costs no store round trip per
// call; the price is that a revocation or a tenant being disabled takes
// effect on this node within that time. Unknown key ids are cached too
// (negative entries), so guessing ids does not hammer the store.
#include <cctype>
#include <cstdlib>
#include <mutex>
#include <unordered_map>

#include "counterlink/platform/crypto.h"

#include "common.h"

namespace counterlink::platform {

namespace {

constexpr std::string_view kBearer = "Bearer ";
constexpr std::string_view kHmacScheme = "CL-HMAC-SHA256";
constexpr std::string_view kUnsignedPayload = "UNSIGNED-PAYLOAD";
// sha256("") in hex: the body hash of a request without a body.
constexpr std::string_view kEmptyBodySha256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

const char* const kBadCredentials =
    "The API key id or secret is wrong. Check the key id (ak_...) and the secret you were "
    "given when the key was created.";

struct CachedKey {
  bool found = false;
  store::ApiKey key;
  bool tenant_disabled = false;
  std::string signing_key;  // opened; empty if it could not be opened
  store::TimeMs fetched_ms = 0;
  store::TimeMs touched_ms = 0;
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

bool ascii_iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

}  // namespace

struct ApiKeyAuthenticator::State {
  store::Store& store;
  const KeyRing& keys;
  ApiKeyAuthOptions options;
  ClockMs clock;

  std::mutex mutex;
  std::unordered_map<std::string, CachedKey> cache;  // guarded by mutex

  // The key's cached state (fetched from the store when stale), or a
  // problem when the store cannot answer.
  api::Outcome lookup(const std::string& key_id, CachedKey& out) {
    const store::TimeMs now = clock();
    {
      std::lock_guard lock(mutex);
      auto it = cache.find(key_id);
      if (it != cache.end() && now - it->second.fetched_ms < options.cache_ttl_ms &&
          now >= it->second.fetched_ms) {
        out = it->second;
        return std::nullopt;
      }
    }
    CachedKey fresh;
    fresh.fetched_ms = now;
    auto row = store.get_api_key(key_id);
    if (row.ok()) {
      fresh.found = true;
      fresh.key = std::move(row).value();
      if (!fresh.key.tenant_id.empty()) {
        auto tenant = store.get_tenant(fresh.key.tenant_id);
        if (tenant.ok()) {
          fresh.tenant_disabled = tenant.value().disabled;
        } else if (tenant.status().code == store::Code::kNotFound) {
          fresh.tenant_disabled = true;
        } else {
          return api::unavailable("Credentials cannot be checked right now; retry in a moment.");
        }
      }
      auto opened = keys.open(fresh.key.signing_key_sealed, fresh.key.id);
      if (opened.ok()) fresh.signing_key = std::move(opened.plaintext);
    } else if (row.status().code != store::Code::kNotFound) {
      return api::unavailable("Credentials cannot be checked right now; retry in a moment.");
    }
    std::lock_guard lock(mutex);
    if (cache.size() >= options.max_cached_keys) cache.clear();
    auto& slot = cache[key_id];
    fresh.touched_ms = slot.touched_ms;
    slot = fresh;
    out = std::move(fresh);
    return std::nullopt;
  }

  // Writes last_used at most once per touch_interval_ms per key.
  void touch(const std::string& key_id) {
    const store::TimeMs now = clock();
    {
      std::lock_guard lock(mutex);
      auto it = cache.find(key_id);
      if (it == cache.end()) return;
      if (it->second.touched_ms != 0 && now - it->second.touched_ms < options.touch_interval_ms) {
        return;
      }
      it->second.touched_ms = now;
    }
    (void)store.touch_api_key(key_id, now);  // best effort
  }

  api::Outcome bearer(const api::CallCredentials& creds, std::string_view token,
                      api::Principal& principal) {
    if (!creds.secure_transport && !options.allow_insecure_bearer) {
      return api::unauthenticated(
          "Bearer tokens are accepted only over HTTPS (or from loopback): on plain HTTP the "
          "secret is readable by anyone on the network path. Use HTTPS, or sign the request with "
          "CL-HMAC-SHA256 (see docs/api.md).");
    }
    token = trim(token);
    size_t dot = token.find('.');
    if (dot == std::string_view::npos || dot == 0 || dot + 1 == token.size()) {
      return api::unauthenticated(
          "Malformed bearer token: expected \"Authorization: Bearer <key id>.<secret>\".");
    }
    std::string key_id(token.substr(0, dot));
    std::string_view secret = token.substr(dot + 1);
    if (services::check_id("key", key_id, "ak_")) return api::unauthenticated(kBadCredentials);
    CachedKey cached;
    if (auto p = lookup(key_id, cached)) return p;
    // Compare digests in constant time; an unknown key compares against a
    // dummy so the timing does not tell unknown ids from bad secrets.
    const std::string digest = sha256(secret);
    const std::string expected = cached.found ? cached.key.secret_hash : std::string(32, '\0');
    if (!constant_time_equal(digest, expected) || !cached.found) {
      return api::unauthenticated(kBadCredentials);
    }
    return accept(cached, principal);
  }

  api::Outcome signature(const api::CallCredentials& creds, std::string_view params,
                         api::Principal& principal) {
    const char* const kFormat =
        "Malformed CL-HMAC-SHA256 authorization: expected \"CL-HMAC-SHA256 Credential=<key id>, "
        "Timestamp=<unix seconds>, Signature=<hex>\".";
    std::string key_id, timestamp, signature_hex;
    size_t start = 0;
    while (start < params.size()) {
      size_t comma = params.find(',', start);
      if (comma == std::string_view::npos) comma = params.size();
      std::string_view part = trim(params.substr(start, comma - start));
      start = comma + 1;
      if (part.empty()) continue;
      size_t eq = part.find('=');
      if (eq == std::string_view::npos) return api::unauthenticated(kFormat);
      std::string_view name = trim(part.substr(0, eq));
      std::string value(trim(part.substr(eq + 1)));
      if (name == "Credential") {
        key_id = value;
      } else if (name == "Timestamp") {
        timestamp = value;
      } else if (name == "Signature") {
        signature_hex = value;
      } else {
        return api::unauthenticated(kFormat);
      }
    }
    if (key_id.empty() || timestamp.empty() || signature_hex.empty()) {
      return api::unauthenticated(kFormat);
    }
    if (timestamp.size() > 12 || timestamp.find_first_not_of("0123456789") != std::string::npos) {
      return api::unauthenticated("Timestamp must be the request time in Unix seconds.");
    }
    const int64_t ts = std::strtoll(timestamp.c_str(), nullptr, 10);
    const int64_t now_s = clock() / 1000;
    if (std::llabs(now_s - ts) > options.signature_window_s) {
      return api::unauthenticated(
          "The request Timestamp is more than " + std::to_string(options.signature_window_s) +
          " seconds away from the server time (" + std::to_string(now_s) +
          "); sync the client clock (NTP) and sign each request when it is sent.");
    }
    if (services::check_id("key", key_id, "ak_")) return api::unauthenticated(kBadCredentials);

    std::string body_hash;
    auto header = creds.headers.find("x-cl-content-sha256");
    if (creds.body_sha256_hex.empty()) {
      // A streamed upload (the server does not hash it before the handler
      // runs), or a request without a body.
      body_hash = header != creds.headers.end() && header->second == kUnsignedPayload
                      ? std::string(kUnsignedPayload)
                      : std::string(kEmptyBodySha256);
    } else {
      body_hash = creds.body_sha256_hex;
    }
    std::string canonical;
    canonical.reserve(128 + creds.path.size());
    canonical.append(kHmacScheme).append("\n");
    canonical.append(timestamp).append("\n");
    canonical.append(creds.http_method).append("\n");
    canonical.append(creds.path).append("\n");
    canonical.append(body_hash);

    CachedKey cached;
    if (auto p = lookup(key_id, cached)) return p;
    const std::string key =
        cached.found && !cached.signing_key.empty() ? cached.signing_key : std::string(32, '\0');
    const std::string expected = hex(hmac_sha256(key, canonical));
    std::string given = signature_hex;
    for (char& c : given)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!constant_time_equal(given, expected) || !cached.found || cached.signing_key.empty()) {
      return api::unauthenticated(
          "The signature does not match, or the key id is unknown. Sign \"CL-HMAC-SHA256\\n"
          "<timestamp>\\n<METHOD>\\n<path and query as sent>\\n<body SHA-256 hex>\" with "
          "HMAC-SHA256(secret, \"counterlink-request-signing\") as the key; see docs/api.md.");
    }
    return accept(cached, principal);
  }

  // The credential is genuine: now it may learn the key's state.
  api::Outcome accept(const CachedKey& cached, api::Principal& principal) {
    if (cached.key.revoked_ms != 0) {
      return api::unauthenticated("This API key was revoked; create a new key.");
    }
    if (cached.tenant_disabled) {
      return api::permission_denied(
          "The tenant of this API key is disabled; contact the Counterlink operator.");
    }
    principal.key_id = cached.key.id;
    principal.tenant_id = cached.key.tenant_id;
    principal.admin = cached.key.scope == "admin";
    touch(cached.key.id);
    return std::nullopt;
  }
};

ApiKeyAuthenticator::ApiKeyAuthenticator(store::Store& store, const KeyRing& keys,
                                         ApiKeyAuthOptions options, ClockMs clock)
    : state_(new State{
          store, keys, options, clock ? std::move(clock) : ClockMs(system_clock_ms), {}, {}}) {}

ApiKeyAuthenticator::~ApiKeyAuthenticator() = default;

api::Outcome ApiKeyAuthenticator::authenticate(const api::CallCredentials& credentials,
                                               api::Principal& principal) {
  std::string_view auth = trim(credentials.authorization);
  if (auth.empty()) {
    return api::unauthenticated(
        "Missing Authorization header: send \"Authorization: Bearer <key id>.<secret>\" (HTTPS) "
        "or a CL-HMAC-SHA256 signature.");
  }
  if (auth.size() >= kBearer.size() && ascii_iequal(auth.substr(0, kBearer.size()), kBearer)) {
    return state_->bearer(credentials, auth.substr(kBearer.size()), principal);
  }
  if (auth.size() > kHmacScheme.size() && auth.substr(0, kHmacScheme.size()) == kHmacScheme &&
      auth[kHmacScheme.size()] == ' ') {
    return state_->signature(credentials, auth.substr(kHmacScheme.size() + 1), principal);
  }
  return api::unauthenticated(
      "Unsupported Authorization scheme: use \"Bearer <key id>.<secret>\" or \"CL-HMAC-SHA256 "
      "Credential=..., Timestamp=..., Signature=...\".");
}

}  // namespace counterlink::platform
