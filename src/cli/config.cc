// Loading, layering and validation of the `counterlink serve` configuration.
//
// The built-in defaults, the YAML file, the environment and the --set
// overrides are merged into one tree of plain values (ConfigValue) that
// remembers where each value came from. The tree is then converted to
// AppConfig field by field; every problem is reported under its full dotted
// key, followed by its origin (file:line:column, environment variable or
// --set flag), and all problems are reported together.
#include "cli/config.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include "counterlink/mqtt/topic.h"

namespace counterlink::cli {
namespace {

using gateway::AclAction;
using gateway::AclEffect;
using gateway::AclRule;
using gateway::ListenerConfig;
using gateway::ListenerKind;
using gateway::QueueOverflow;
using gateway::StaticUser;
using gateway::TlsConfig;

constexpr std::string_view kEnvPrefix = "COUNTERLINK_";
constexpr std::string_view kRedacted = "<redacted>";
constexpr std::string_view kDevCertHint =
    "for development, create a self-signed pair with: openssl req -x509 -newkey rsa:2048 -nodes "
    "-days 365 -subj /CN=localhost -keyout key.pem -out cert.pem";

// ---------------------------------------------------------------------------
// Known keys, in the order of the schema (used for suggestions and messages).

constexpr std::string_view kRootKeys[] = {"node_name", "data_dir", "log",      "http",
                                          "grpc",      "store",    "security", "device_auth",
                                          "commands",  "scans",    "webhooks", "gateway"};
constexpr std::string_view kCommandsKeys[] = {"max_queue_per_device", "window_per_device",
                                              "max_attempts",         "retry_backoff_ms",
                                              "sweep_interval_ms",    "history_retention_days"};
constexpr std::string_view kScansKeys[] = {"answer_timeout_ms", "duplicate_window_ms"};
constexpr std::string_view kWebhooksKeys[] = {"dispatch", "allow_http", "request_timeout_ms",
                                              "retry_window_ms", "retry_delays_ms"};
constexpr std::string_view kHttpKeys[] = {
    "enabled",          "bind",         "port",
    "tls_cert_file",    "tls_key_file", "max_body_bytes",
    "max_upload_bytes", "workers",      "allow_insecure_bearer"};
constexpr std::string_view kGrpcKeys[] = {"enabled", "bind", "port"};
constexpr std::string_view kStoreKeys[] = {"url", "pool_size"};
constexpr std::string_view kSecurityKeys[] = {"master_keys", "active_key", "bootstrap_admin_token"};
constexpr std::string_view kMasterKeyKeys[] = {"id", "key"};
constexpr std::string_view kDeviceAuthKeys[] = {"enabled", "replay_window_s",
                                                "max_failures_per_address",
                                                "max_failures_per_device", "public_host"};
constexpr std::string_view kLogKeys[] = {"level", "format"};
constexpr std::string_view kGatewayKeys[] = {"workers",
                                             "listeners",
                                             "max_connections",
                                             "max_packet_size",
                                             "receive_maximum",
                                             "max_inflight",
                                             "max_queued_messages",
                                             "queue_overflow",
                                             "queue_qos0",
                                             "topic_alias_maximum",
                                             "connect_timeout_ms",
                                             "max_keepalive",
                                             "session_expiry_max",
                                             "message_expiry_max",
                                             "max_client_id_length",
                                             "maximum_qos",
                                             "retain_available",
                                             "wildcard_subscriptions",
                                             "shared_subscriptions",
                                             "subscription_identifiers",
                                             "allow_anonymous",
                                             "users",
                                             "acl_default",
                                             "acl"};
constexpr std::string_view kListenerKeys[] = {"name", "kind", "bind", "port", "ws_path", "tls"};
constexpr std::string_view kTlsKeys[] = {"cert_file", "key_file", "ca_file", "verify_client",
                                         "require_client"};
constexpr std::string_view kUserKeys[] = {"username", "password", "password_sha256"};
constexpr std::string_view kAclKeys[] = {"effect", "action", "username", "anonymous", "topic"};

constexpr std::string_view kLogLevels[] = {"trace", "debug",    "info", "warn",
                                           "error", "critical", "off"};
constexpr std::string_view kLogFormats[] = {"text", "json"};

template <typename E>
struct EnumName {
  std::string_view name;
  E value;
};

constexpr EnumName<ListenerKind> kListenerKinds[] = {{"tcp", ListenerKind::kTcp},
                                                     {"tls", ListenerKind::kTls},
                                                     {"ws", ListenerKind::kWebSocket},
                                                     {"wss", ListenerKind::kWebSocketTls}};
constexpr EnumName<QueueOverflow> kQueueOverflows[] = {{"drop_oldest", QueueOverflow::kDropOldest},
                                                       {"drop_newest", QueueOverflow::kDropNewest}};
constexpr EnumName<AclEffect> kAclEffects[] = {{"allow", AclEffect::kAllow},
                                               {"deny", AclEffect::kDeny}};
constexpr EnumName<AclAction> kAclActions[] = {{"publish", AclAction::kPublish},
                                               {"subscribe", AclAction::kSubscribe},
                                               {"all", AclAction::kAll}};

template <typename E, size_t N>
std::string_view enum_name(const EnumName<E> (&table)[N], E value) {
  for (const auto& entry : table) {
    if (entry.value == value) return entry.name;
  }
  return "?";
}

bool is_tls_kind(ListenerKind kind) {
  return kind == ListenerKind::kTls || kind == ListenerKind::kWebSocketTls;
}

bool is_ws_kind(ListenerKind kind) {
  return kind == ListenerKind::kWebSocket || kind == ListenerKind::kWebSocketTls;
}

// ---------------------------------------------------------------------------
// Small string helpers.

// True for standard or URL-safe base64 (padding optional) of exactly 32 bytes.
bool is_base64_of_32_bytes(std::string_view text) {
  while (!text.empty() && text.back() == '=')
    text.remove_suffix(1);
  if (text.size() != 43) return false;  // ceil(32 * 4 / 3)
  for (char c : text) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '+' || c == '/' || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

// "ak_" + 26 Crockford base32 characters (the key id) + "." + a secret of at
// least 32 printable characters: the form of an API token.
bool is_api_token(std::string_view token) {
  constexpr std::string_view kCrockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
  const size_t dot = token.find('.');
  if (dot != 29 || !token.starts_with("ak_") || token.size() - dot - 1 < 32) return false;
  for (char c : token.substr(3, 26)) {
    if (kCrockford.find(c) == std::string_view::npos) return false;
  }
  for (char c : token.substr(dot + 1)) {
    if (c <= ' ' || c > '~') return false;
  }
  return true;
}

// "postgres://user:secret@host/db" -> "postgres://user:<redacted>@host/db".
std::string redact_url_password(const std::string& url) {
  const size_t scheme = url.find("://");
  if (scheme == std::string::npos) return url;
  const size_t at = url.find('@', scheme + 3);
  if (at == std::string::npos) return url;
  const size_t colon = url.find(':', scheme + 3);
  if (colon == std::string::npos || colon > at) return url;
  return url.substr(0, colon + 1) + "<redacted>" + url.substr(at);
}

std::string join_path(std::string_view parent, std::string_view key) {
  if (parent.empty()) return std::string(key);
  std::string path(parent);
  path += '.';
  path += key;
  return path;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string join_names(std::span<const std::string_view> names) {
  std::string out;
  for (const auto& name : names) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

std::vector<std::string> split(std::string_view s, std::string_view separator) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t end = s.find(separator, start);
    if (end == std::string_view::npos) {
      parts.emplace_back(s.substr(start));
      return parts;
    }
    parts.emplace_back(s.substr(start, end - start));
    start = end + separator.size();
  }
}

// Optimal string alignment distance (Levenshtein plus adjacent transposition).
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i)
    d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j)
    d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

std::optional<std::string_view> closest_key(std::string_view key,
                                            std::span<const std::string_view> known) {
  const std::string needle = lower(key);
  std::optional<std::string_view> best;
  size_t best_distance = 3;  // suggest only within an edit distance of 2
  for (const auto& candidate : known) {
    const size_t distance = edit_distance(needle, candidate);
    if (distance < best_distance) {
      best_distance = distance;
      best = candidate;
    }
  }
  return best;
}

std::optional<size_t> parse_index(std::string_view s) {
  if (s.empty() || s.size() > 9) return std::nullopt;
  size_t value = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<size_t>(c - '0');
  }
  return value;
}

// ---------------------------------------------------------------------------
// The configuration tree.

struct ConfigValue {
  enum class Kind : uint8_t { kNull, kScalar, kMap, kList };

  Kind kind = Kind::kNull;
  std::string key;                    // set when this value is an entry of a map
  std::string text;                   // kScalar
  std::vector<ConfigValue> children;  // kMap entries (unique keys, in order) or kList items
  std::string origin;  // "file:line:column", an env variable, a --set flag; "" = default

  ConfigValue* find(std::string_view name) {
    for (auto& child : children) {
      if (child.key == name) return &child;
    }
    return nullptr;
  }
  const ConfigValue* find(std::string_view name) const {
    for (const auto& child : children) {
      if (child.key == name) return &child;
    }
    return nullptr;
  }
};

ConfigValue scalar_entry(std::string key, std::string text) {
  ConfigValue v;
  v.kind = ConfigValue::Kind::kScalar;
  v.key = std::move(key);
  v.text = std::move(text);
  return v;
}

ConfigValue map_value(std::string key = {}) {
  ConfigValue v;
  v.kind = ConfigValue::Kind::kMap;
  v.key = std::move(key);
  return v;
}

void set_origin(ConfigValue& v, const std::string& origin) {
  v.origin = origin;
  for (auto& child : v.children)
    set_origin(child, origin);
}

// Only the listener list needs a default in the tree: every other default is
// the struct's, and the list must exist for overlays to index into it.
ConfigValue default_tree() {
  ConfigValue tcp = map_value();
  tcp.children = {scalar_entry("name", "tcp"), scalar_entry("kind", "tcp"),
                  scalar_entry("bind", "0.0.0.0"), scalar_entry("port", "1883")};
  ConfigValue ws = map_value();
  ws.children = {scalar_entry("name", "ws"), scalar_entry("kind", "ws"),
                 scalar_entry("bind", "0.0.0.0"), scalar_entry("port", "8083")};
  ConfigValue listeners;
  listeners.kind = ConfigValue::Kind::kList;
  listeners.key = "listeners";
  listeners.children = {std::move(tcp), std::move(ws)};
  ConfigValue gateway = map_value("gateway");
  gateway.children.push_back(std::move(listeners));
  ConfigValue root = map_value();
  root.children.push_back(std::move(gateway));
  set_origin(root, "built-in default");
  return root;
}

// ---------------------------------------------------------------------------
// Problems found while loading; thrown together as one ConfigError.

class Diagnostics {
 public:
  void add(std::string_view path, std::string_view reason, std::string_view origin) {
    std::string message(path);
    message += ": ";
    message += reason;
    if (!origin.empty()) {
      message += " [";
      message += origin;
      message += ']';
    }
    messages_.push_back(std::move(message));
  }

  size_t count() const { return messages_.size(); }

  void throw_if_any() const {
    if (messages_.empty()) return;
    std::string what;
    for (const auto& message : messages_) {
      if (!what.empty()) what += '\n';
      what += message;
    }
    throw ConfigError(what);
  }

 private:
  std::vector<std::string> messages_;
};

// ---------------------------------------------------------------------------
// YAML file -> tree.

std::string file_origin(const std::string& file, const YAML::Mark& mark) {
  if (mark.is_null()) return file;
  return file + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
}

ConfigValue from_yaml(const YAML::Node& node, const std::string& file, const std::string& path,
                      std::string origin, Diagnostics& diag) {
  ConfigValue v;
  v.origin = node.Mark().is_null() ? std::move(origin) : file_origin(file, node.Mark());
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      break;
    case YAML::NodeType::Scalar:
      v.kind = ConfigValue::Kind::kScalar;
      v.text = node.Scalar();
      break;
    case YAML::NodeType::Sequence: {
      v.kind = ConfigValue::Kind::kList;
      size_t index = 0;
      for (const auto& item : node) {
        v.children.push_back(
            from_yaml(item, file, join_path(path, std::to_string(index++)), v.origin, diag));
      }
      break;
    }
    case YAML::NodeType::Map:
      v.kind = ConfigValue::Kind::kMap;
      for (const auto& entry : node) {
        const std::string key_origin = file_origin(file, entry.first.Mark());
        if (!entry.first.IsScalar()) {
          diag.add(path.empty() ? "(top level)" : path, "keys must be plain strings", key_origin);
          continue;
        }
        const std::string key = entry.first.Scalar();
        if (v.find(key) != nullptr) {
          diag.add(join_path(path, key), "duplicate key", key_origin);
          continue;
        }
        ConfigValue child = from_yaml(entry.second, file, join_path(path, key), key_origin, diag);
        child.key = key;
        child.origin = key_origin;  // point at the key: it names the setting
        v.children.push_back(std::move(child));
      }
      break;
  }
  return v;
}

ConfigValue load_file(const std::string& file, Diagnostics& diag) {
  struct stat st {};
  if (::stat(file.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    throw ConfigError("config file '" + file + "': is a directory, expected a YAML file");
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    const int error = errno;
    throw ConfigError("config file '" + file +
                      "': cannot open: " + std::system_category().message(error));
  }
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) throw ConfigError("config file '" + file + "': read error");

  std::vector<YAML::Node> documents;
  try {
    documents = YAML::LoadAll(content.str());
  } catch (const YAML::Exception& e) {
    std::string where;
    if (!e.mark.is_null()) {
      where = " at line " + std::to_string(e.mark.line + 1) + ", column " +
              std::to_string(e.mark.column + 1);
    }
    throw ConfigError("config file '" + file + "': invalid YAML" + where + ": " + e.msg);
  }
  if (documents.size() > 1) {
    throw ConfigError("config file '" + file + "': contains " + std::to_string(documents.size()) +
                      " YAML documents, expected one");
  }
  if (documents.empty() || documents[0].IsNull()) return map_value();  // empty file: defaults
  if (!documents[0].IsMap()) {
    throw ConfigError("config file '" + file + "': expected a map of settings at the top level (" +
                      join_names(kRootKeys) + ")");
  }
  return from_yaml(documents[0], file, "", file, diag);
}

// Deep merge: maps merge key by key, anything else (lists included) replaces.
void merge(ConfigValue& base, ConfigValue&& over) {
  if (base.kind == ConfigValue::Kind::kMap &&
      (over.kind == ConfigValue::Kind::kMap || over.kind == ConfigValue::Kind::kNull)) {
    for (auto& child : over.children) {
      if (ConfigValue* existing = base.find(child.key)) {
        merge(*existing, std::move(child));
      } else {
        base.children.push_back(std::move(child));
      }
    }
    if (!over.origin.empty()) base.origin = std::move(over.origin);
    return;
  }
  std::string key = std::move(base.key);
  base = std::move(over);
  base.key = std::move(key);
}

// ---------------------------------------------------------------------------
// Environment and --set overlays.

// Sets the value at `segments` to the scalar `text`, creating maps on the way;
// in a list, an index one past the end appends an element.
void overlay(ConfigValue& root, const std::vector<std::string>& segments, const std::string& text,
             const std::string& origin, Diagnostics& diag) {
  ConfigValue* node = &root;
  std::string path;
  for (const auto& segment : segments) {
    const std::string child_path = join_path(path, segment);
    if (node->kind == ConfigValue::Kind::kNull) {
      node->kind = parse_index(segment) ? ConfigValue::Kind::kList : ConfigValue::Kind::kMap;
    }
    ConfigValue* child = nullptr;
    if (node->kind == ConfigValue::Kind::kMap) {
      child = node->find(segment);
      if (child == nullptr) {
        ConfigValue created;
        created.key = segment;
        created.origin = origin;
        node->children.push_back(std::move(created));
        child = &node->children.back();
      }
    } else if (node->kind == ConfigValue::Kind::kList) {
      const size_t size = node->children.size();
      const auto index = parse_index(segment);
      if (!index) {
        diag.add(child_path,
                 path + " is a list; expected an index 0.." + std::to_string(size) +
                     " (the last appends an element)",
                 origin);
        return;
      }
      if (*index > size) {
        diag.add(child_path,
                 "index out of range: " + path + " has " + std::to_string(size) +
                     " element(s); use " + std::to_string(size) + " to append one",
                 origin);
        return;
      }
      if (*index == size) {
        ConfigValue created;
        created.origin = origin;
        node->children.push_back(std::move(created));
      }
      child = &node->children[*index];
    } else {
      diag.add(child_path, "cannot set a key inside " + path + ", which is a single value", origin);
      return;
    }
    node = child;
    path = child_path;
  }
  node->kind = ConfigValue::Kind::kScalar;
  node->text = text;
  node->children.clear();
  node->origin = origin;
}

bool is_root_key(std::string_view key) {
  return std::find(std::begin(kRootKeys), std::end(kRootKeys), key) != std::end(kRootKeys);
}

void apply_environment(ConfigValue& root, const std::vector<std::string>& env, Diagnostics& diag) {
  for (const auto& entry : env) {
    const size_t eq = entry.find('=');
    if (eq == std::string::npos) continue;
    const std::string_view name = std::string_view(entry).substr(0, eq);
    if (!name.starts_with(kEnvPrefix)) continue;
    const std::string origin = "environment variable " + std::string(name);
    std::vector<std::string> segments = split(name.substr(kEnvPrefix.size()), "__");
    for (auto& segment : segments)
      segment = lower(segment);
    if (segments.size() == 1 && !is_root_key(segments[0])) {
      // Other COUNTERLINK_ variables (COUNTERLINK_ENV, ...) are not settings,
      // unless they look like a setting written with a single underscore.
      for (const auto& root_key : kRootKeys) {
        const std::string prefix = std::string(root_key) + "_";
        if (segments[0].starts_with(prefix) && segments[0].size() > prefix.size()) {
          diag.add(segments[0],
                   "unknown key; separate levels with '__', e.g. " + std::string(kEnvPrefix) +
                       upper(root_key) + "__" + upper(segments[0].substr(prefix.size())),
                   origin);
        }
      }
      continue;
    }
    if (std::any_of(segments.begin(), segments.end(), [](const auto& s) { return s.empty(); })) {
      diag.add(std::string(name), "empty key level; separate levels with exactly '__'", origin);
      continue;
    }
    overlay(root, segments, entry.substr(eq + 1), origin, diag);
  }
}

void apply_overrides(ConfigValue& root, const std::vector<std::string>& overrides,
                     Diagnostics& diag) {
  for (const auto& entry : overrides) {
    const size_t eq = entry.find('=');
    if (eq == std::string::npos || eq == 0) {
      diag.add("--set " + entry, "expected key=value, e.g. gateway.max_connections=5000", "");
      continue;
    }
    const std::string key = entry.substr(0, eq);
    const std::string origin = "--set " + key;
    const std::vector<std::string> segments = split(key, ".");
    if (std::any_of(segments.begin(), segments.end(), [](const auto& s) { return s.empty(); })) {
      diag.add(key, "empty key level in dotted key", origin);
      continue;
    }
    overlay(root, segments, entry.substr(eq + 1), origin, diag);
  }
}

// ---------------------------------------------------------------------------
// Tree -> AppConfig.

std::string describe(const ConfigValue& v) {
  switch (v.kind) {
    case ConfigValue::Kind::kNull:
      return "nothing";
    case ConfigValue::Kind::kMap:
      return "a map";
    case ConfigValue::Kind::kList:
      return "a list";
    case ConfigValue::Kind::kScalar:
      break;
  }
  constexpr size_t kMaxShown = 60;
  if (v.text.size() > kMaxShown) return "'" + v.text.substr(0, kMaxShown) + "...'";
  return "'" + v.text + "'";
}

// A map in the tree, checked against its known keys. A missing or null map
// reads as empty, so every key takes its default.
class MapView {
 public:
  MapView(Diagnostics& diag, const ConfigValue* value, std::string path,
          std::span<const std::string_view> known, const std::string& parent_origin)
      : value_(value), path_(std::move(path)), origin_(parent_origin) {
    if (value_ == nullptr) return;
    if (!value_->origin.empty()) origin_ = value_->origin;
    if (value_->kind == ConfigValue::Kind::kNull) {
      value_ = nullptr;
      return;
    }
    if (value_->kind != ConfigValue::Kind::kMap) {
      diag.add(path_,
               "expected a map with keys " + join_names(known) + ", got " + describe(*value_),
               origin_);
      value_ = nullptr;
      valid_ = false;
      return;
    }
    for (const auto& child : value_->children) {
      if (std::find(known.begin(), known.end(), child.key) != known.end()) continue;
      std::string reason = "unknown key";
      if (const auto suggestion = closest_key(child.key, known)) {
        reason += " (did you mean " + std::string(*suggestion) + "?)";
      } else {
        reason += " (allowed: " + join_names(known) + ")";
      }
      diag.add(join_path(path_, child.key), reason, child.origin);
      valid_ = false;
    }
  }

  const ConfigValue* get(std::string_view key) const {
    return value_ == nullptr ? nullptr : value_->find(key);
  }
  bool has(std::string_view key) const { return get(key) != nullptr; }
  std::string path_of(std::string_view key) const { return join_path(path_, key); }
  const std::string& path() const { return path_; }
  const std::string& origin() const { return origin_; }
  std::string origin_of(std::string_view key) const {
    const ConfigValue* v = get(key);
    return v != nullptr && !v->origin.empty() ? v->origin : origin_;
  }
  bool valid() const { return valid_; }

 private:
  const ConfigValue* value_;
  std::string path_;
  std::string origin_;
  bool valid_ = true;
};

class Converter {
 public:
  explicit Converter(Diagnostics& diag) : diag_(diag) {}

  AppConfig convert(const ConfigValue& root) {
    AppConfig config;
    const MapView top(diag_, &root, "", kRootKeys, "");
    read_string(top, "data_dir", config.data_dir);
    if (config.data_dir.empty()) {
      fail(top, "data_dir", "must not be empty (a directory for persistent state)");
    }

    const MapView log(diag_, top.get("log"), "log", kLogKeys, top.origin());
    read_string_choice(log, "level", config.log.level, kLogLevels);
    read_string_choice(log, "format", config.log.format, kLogFormats);

    const MapView http(diag_, top.get("http"), "http", kHttpKeys, top.origin());
    read_bool(http, "enabled", config.http.enabled);
    if (read_string(http, "bind", config.http.bind) && !is_ip_literal(config.http.bind)) {
      fail(http, "bind", "must be an IPv4 or IPv6 address literal, e.g. 0.0.0.0 or ::");
    }
    read_integer(http, "port", config.http.port, 0, 65535);
    read_string(http, "tls_cert_file", config.http.tls_cert_file);
    read_string(http, "tls_key_file", config.http.tls_key_file);
    if (config.http.tls_cert_file.empty() != config.http.tls_key_file.empty()) {
      fail(http, config.http.tls_cert_file.empty() ? "tls_cert_file" : "tls_key_file",
           "tls_cert_file and tls_key_file go together (both set = HTTPS); " +
               std::string(kDevCertHint));
    } else if (!config.http.tls_cert_file.empty()) {
      check_file(http, "tls_cert_file", config.http.tls_cert_file, kDevCertHint);
      check_file(http, "tls_key_file", config.http.tls_key_file, kDevCertHint);
    }
    read_integer(http, "max_body_bytes", config.http.max_body_bytes, 1024, 64 << 20);
    read_integer(http, "max_upload_bytes", config.http.max_upload_bytes, 1024, int64_t{16} << 30);
    read_integer(http, "workers", config.http.workers, 1, 256);
    read_bool(http, "allow_insecure_bearer", config.http.allow_insecure_bearer);

    const MapView grpc(diag_, top.get("grpc"), "grpc", kGrpcKeys, top.origin());
    read_bool(grpc, "enabled", config.grpc.enabled);
    if (read_string(grpc, "bind", config.grpc.bind) && !is_ip_literal(config.grpc.bind)) {
      fail(grpc, "bind", "must be an IPv4 or IPv6 address literal, e.g. 0.0.0.0 or ::");
    }
    read_integer(grpc, "port", config.grpc.port, 0, 65535);

    const MapView store(diag_, top.get("store"), "store", kStoreKeys, top.origin());
    if (read_string(store, "url", config.store.url) && !config.store.url.empty() &&
        !config.store.url.starts_with("sqlite://") &&
        !config.store.url.starts_with("postgres://") &&
        !config.store.url.starts_with("postgresql://")) {
      fail(store, "url",
           "expected sqlite:///path/to/file.db or postgres://user:password@host:5432/db "
           "(empty = SQLite in the data directory)");
    }
    read_integer(store, "pool_size", config.store.pool_size, 1, 256);

    const MapView security(diag_, top.get("security"), "security", kSecurityKeys, top.origin());
    for_each_item(security, "master_keys",
                  [&](const ConfigValue& item, const std::string& path, const std::string& origin) {
                    const MapView k(diag_, &item, path, kMasterKeyKeys, origin);
                    MasterKey key;
                    read_string(k, "id", key.id);
                    read_string(k, "key", key.key);
                    if (key.id.empty() || key.id.size() > 32) {
                      fail(k, "id", "required: a short name of 1..32 characters, e.g. k2026a");
                    }
                    if (!is_base64_of_32_bytes(key.key)) {
                      fail(k, "key",
                           "expected 32 random bytes in base64; create one with: openssl rand "
                           "-base64 32");
                    }
                    config.security.master_keys.push_back(std::move(key));
                  });
    if (read_string(security, "active_key", config.security.active_key) &&
        !config.security.active_key.empty()) {
      bool known = false;
      for (const auto& k : config.security.master_keys)
        known |= k.id == config.security.active_key;
      if (!known) fail(security, "active_key", "must name one of security.master_keys by its id");
    }
    if (read_string(security, "bootstrap_admin_token", config.security.bootstrap_admin_token) &&
        !config.security.bootstrap_admin_token.empty() &&
        !is_api_token(config.security.bootstrap_admin_token)) {
      fail(security, "bootstrap_admin_token",
           "expected an operator token \"ak_<26 characters>.<secret of at least 32 "
           "characters>\"; create one with `counterlink admin generate-token`");
    }

    const MapView device_auth(diag_, top.get("device_auth"), "device_auth", kDeviceAuthKeys,
                              top.origin());
    read_bool(device_auth, "enabled", config.device_auth.enabled);
    read_integer(device_auth, "replay_window_s", config.device_auth.replay_window_s, 10, 86400);
    read_integer(device_auth, "max_failures_per_address",
                 config.device_auth.max_failures_per_address, 1, 1000000);
    read_integer(device_auth, "max_failures_per_device", config.device_auth.max_failures_per_device,
                 1, 1000000);
    read_string(device_auth, "public_host", config.device_auth.public_host);

    const MapView commands(diag_, top.get("commands"), "commands", kCommandsKeys, top.origin());
    read_integer(commands, "max_queue_per_device", config.commands.max_queue_per_device, 1, 100000);
    read_integer(commands, "window_per_device", config.commands.window_per_device, 1, 1000);
    read_integer(commands, "max_attempts", config.commands.max_attempts, 1, 100);
    read_integer(commands, "retry_backoff_ms", config.commands.retry_backoff_ms, 10, 600000);
    read_integer(commands, "sweep_interval_ms", config.commands.sweep_interval_ms, 10, 60000);
    read_integer(commands, "history_retention_days", config.commands.history_retention_days, 1,
                 3650);

    const MapView scans(diag_, top.get("scans"), "scans", kScansKeys, top.origin());
    read_integer(scans, "answer_timeout_ms", config.scans.answer_timeout_ms, 100, 600000);
    read_integer(scans, "duplicate_window_ms", config.scans.duplicate_window_ms, 0, 3600000);

    const MapView webhooks(diag_, top.get("webhooks"), "webhooks", kWebhooksKeys, top.origin());
    read_bool(webhooks, "dispatch", config.webhooks.dispatch);
    read_bool(webhooks, "allow_http", config.webhooks.allow_http);
    read_integer(webhooks, "request_timeout_ms", config.webhooks.request_timeout_ms, 100, 60000);
    read_integer(webhooks, "retry_window_ms", config.webhooks.retry_window_ms, 0,
                 int64_t{30} * 86400000);
    if (webhooks.has("retry_delays_ms")) {
      std::vector<uint32_t> delays;
      bool bad_item = false;
      const bool is_list = for_each_item(
          webhooks, "retry_delays_ms",
          [&](const ConfigValue& item, const std::string& path, const std::string& origin) {
            int64_t value = 0;
            const char* end = item.text.data() + item.text.size();
            const auto parsed = std::from_chars(item.text.data(), end, value);
            if (item.kind != ConfigValue::Kind::kScalar || parsed.ec != std::errc() ||
                parsed.ptr != end || value < 10 || value > 86400000) {
              diag_.add(path, "expected milliseconds 10..86400000, got " + describe(item), origin);
              bad_item = true;
              return;
            }
            delays.push_back(static_cast<uint32_t>(value));
          });
      if (!delays.empty()) {
        config.webhooks.retry_delays_ms = std::move(delays);
      } else if (is_list && !bad_item) {
        fail(webhooks, "retry_delays_ms", "needs at least one delay, e.g. [5000, 30000, 120000]");
      }
    }

    read_string(top, "node_name", config.node_name);

    convert_gateway(MapView(diag_, top.get("gateway"), "gateway", kGatewayKeys, top.origin()),
                    config.gateway);
    return config;
  }

 private:
  void fail(const MapView& m, std::string_view key, std::string_view reason) {
    diag_.add(m.path_of(key), reason, m.origin_of(key));
  }

  // Each read_* leaves `out` unchanged when the key is absent; it returns
  // false (and reports) when the key is present but invalid.

  bool read_string(const MapView& m, std::string_view key, std::string& out) {
    const ConfigValue* v = m.get(key);
    if (v == nullptr) return true;
    if (v->kind == ConfigValue::Kind::kNull) {
      out.clear();
      return true;
    }
    if (v->kind != ConfigValue::Kind::kScalar) {
      fail(m, key, "expected a string, got " + describe(*v));
      return false;
    }
    out = v->text;
    return true;
  }

  template <typename T>
  bool read_integer(const MapView& m, std::string_view key, T& out, int64_t min, int64_t max) {
    const ConfigValue* v = m.get(key);
    if (v == nullptr) return true;
    const std::string range = std::to_string(min) + ".." + std::to_string(max);
    int64_t value = 0;
    bool parsed = false;
    if (v->kind == ConfigValue::Kind::kScalar) {
      std::string_view text = v->text;
      if (text.starts_with('+')) text.remove_prefix(1);
      const char* end = text.data() + text.size();
      const auto result = std::from_chars(text.data(), end, value);
      parsed = !text.empty() && result.ec == std::errc() && result.ptr == end;
    }
    if (!parsed) {
      fail(m, key, "expected an integer " + range + ", got " + describe(*v));
      return false;
    }
    if (value < min || value > max) {
      fail(m, key,
           "must be between " + std::to_string(min) + " and " + std::to_string(max) + " (got " +
               std::to_string(value) + ")");
      return false;
    }
    out = static_cast<T>(value);
    return true;
  }

  template <typename T>
  bool read_integer(const MapView& m, std::string_view key, T& out, int64_t min) {
    return read_integer(m, key, out, min, static_cast<int64_t>(std::numeric_limits<T>::max()));
  }

  bool read_bool(const MapView& m, std::string_view key, bool& out) {
    const ConfigValue* v = m.get(key);
    if (v == nullptr) return true;
    if (v->kind == ConfigValue::Kind::kScalar) {
      const std::string& t = v->text;
      if (t == "true" || t == "True" || t == "TRUE") {
        out = true;
        return true;
      }
      if (t == "false" || t == "False" || t == "FALSE") {
        out = false;
        return true;
      }
    }
    fail(m, key, "expected true or false, got " + describe(*v));
    return false;
  }

  template <typename E, size_t N>
  bool read_enum(const MapView& m, std::string_view key, E& out, const EnumName<E> (&table)[N]) {
    const ConfigValue* v = m.get(key);
    if (v == nullptr) return true;
    std::vector<std::string_view> names;
    for (const auto& entry : table) {
      if (v->kind == ConfigValue::Kind::kScalar && v->text == entry.name) {
        out = entry.value;
        return true;
      }
      names.push_back(entry.name);
    }
    fail(m, key, "expected one of " + join_names(names) + ", got " + describe(*v));
    return false;
  }

  bool read_string_choice(const MapView& m, std::string_view key, std::string& out,
                          std::span<const std::string_view> allowed) {
    const ConfigValue* v = m.get(key);
    if (v == nullptr) return true;
    if (v->kind == ConfigValue::Kind::kScalar &&
        std::find(allowed.begin(), allowed.end(), v->text) != allowed.end()) {
      out = v->text;
      return true;
    }
    fail(m, key, "expected one of " + join_names(allowed) + ", got " + describe(*v));
    return false;
  }

  // Calls `each(item, path, origin)` for every element of the list at `key`.
  // A null value reads as an empty list.
  template <typename F>
  bool for_each_item(const MapView& m, std::string_view key, F&& each) {
    const ConfigValue* v = m.get(key);
    if (v == nullptr || v->kind == ConfigValue::Kind::kNull) return true;
    if (v->kind != ConfigValue::Kind::kList) {
      fail(m, key, "expected a list, got " + describe(*v));
      return false;
    }
    const std::string origin = m.origin_of(key);
    for (size_t i = 0; i < v->children.size(); ++i) {
      const ConfigValue& item = v->children[i];
      each(item, join_path(m.path_of(key), std::to_string(i)),
           item.origin.empty() ? origin : item.origin);
    }
    return true;
  }

  void convert_gateway(const MapView& m, gateway::GatewayConfig& g) {
    read_integer(m, "workers", g.workers, 0, 256);
    read_integer(m, "max_connections", g.max_connections, 1);
    read_integer(m, "max_packet_size", g.max_packet_size, 16, 268435455);
    read_integer(m, "receive_maximum", g.receive_maximum, 1);
    read_integer(m, "max_inflight", g.max_inflight, 1);
    read_integer(m, "max_queued_messages", g.max_queued_messages, 0, 10000000);
    read_enum(m, "queue_overflow", g.queue_overflow, kQueueOverflows);
    read_bool(m, "queue_qos0", g.queue_qos0);
    read_integer(m, "topic_alias_maximum", g.topic_alias_maximum, 0);
    read_integer(m, "connect_timeout_ms", g.connect_timeout_ms, 100, 600000);
    read_integer(m, "max_keepalive", g.max_keepalive, 0);
    read_integer(m, "session_expiry_max", g.session_expiry_max, 0);
    read_integer(m, "message_expiry_max", g.message_expiry_max, 0);
    read_integer(m, "max_client_id_length", g.max_client_id_length, 23);
    read_integer(m, "maximum_qos", g.maximum_qos, 0, 2);
    read_bool(m, "retain_available", g.retain_available);
    read_bool(m, "wildcard_subscriptions", g.wildcard_subscriptions);
    read_bool(m, "shared_subscriptions", g.shared_subscriptions);
    read_bool(m, "subscription_identifiers", g.subscription_identifiers);
    read_bool(m, "allow_anonymous", g.allow_anonymous);
    read_enum(m, "acl_default", g.acl_default, kAclEffects);

    convert_listeners(m, g.listeners);
    convert_users(m, g.users);
    for_each_item(m, "acl",
                  [&](const ConfigValue& item, const std::string& path, const std::string& origin) {
                    AclRule rule;
                    convert_acl_rule(MapView(diag_, &item, path, kAclKeys, origin), rule);
                    g.acl.push_back(std::move(rule));
                  });
  }

  struct ListenerEntry {
    ListenerConfig config;
    std::string path;
    std::string name_origin;
    std::string port_origin;
    bool valid = true;
  };

  void convert_listeners(const MapView& m, std::vector<ListenerConfig>& out) {
    std::vector<ListenerEntry> entries;
    const bool is_list = for_each_item(
        m, "listeners",
        [&](const ConfigValue& item, const std::string& path, const std::string& origin) {
          const size_t errors_before = diag_.count();
          const MapView view(diag_, &item, path, kListenerKeys, origin);
          ListenerEntry entry;
          entry.path = path;
          entry.name_origin = view.origin_of("name");
          entry.port_origin = view.origin_of("port");
          convert_listener(view, entry.config);
          entry.valid = diag_.count() == errors_before;
          entries.push_back(std::move(entry));
        });
    if (is_list && entries.empty()) {
      fail(m, "listeners", "at least one listener is required (kinds: tcp, tls, ws, wss)");
    }

    for (size_t j = 0; j < entries.size(); ++j) {
      const ListenerEntry& b = entries[j];
      if (!b.valid) continue;
      for (size_t i = 0; i < j; ++i) {
        const ListenerEntry& a = entries[i];
        if (!a.valid) continue;
        if (a.config.name == b.config.name) {
          diag_.add(b.path + ".name",
                    "duplicate listener name '" + b.config.name + "' (also " + a.path +
                        "); each listener needs a unique name",
                    b.name_origin);
        }
        if (a.config.port != 0 && a.config.port == b.config.port &&
            addresses_overlap(a.config.bind, b.config.bind)) {
          diag_.add(b.path + ".port",
                    b.config.bind + ":" + std::to_string(b.config.port) + " conflicts with " +
                        a.config.bind + ":" + std::to_string(a.config.port) + " of listener '" +
                        a.config.name + "' (" + a.path +
                        "); use another port or bind address (port 0 picks a free port)",
                    b.port_origin);
        }
      }
    }
    out.clear();
    for (auto& entry : entries)
      out.push_back(std::move(entry.config));
  }

  // Two bind addresses of one port collide if equal or if one is the
  // wildcard of the other's family (Linux refuses the second bind()).
  static bool addresses_overlap(const std::string& a, const std::string& b) {
    in6_addr a6{}, b6{};
    in_addr a4{}, b4{};
    if (::inet_pton(AF_INET, a.c_str(), &a4) == 1 && ::inet_pton(AF_INET, b.c_str(), &b4) == 1) {
      return a4.s_addr == b4.s_addr || a4.s_addr == INADDR_ANY || b4.s_addr == INADDR_ANY;
    }
    if (::inet_pton(AF_INET6, a.c_str(), &a6) == 1 && ::inet_pton(AF_INET6, b.c_str(), &b6) == 1) {
      static const in6_addr any = IN6ADDR_ANY_INIT;
      const auto same = [](const in6_addr& x, const in6_addr& y) {
        return std::memcmp(&x, &y, sizeof x) == 0;
      };
      return same(a6, b6) || same(a6, any) || same(b6, any);
    }
    return false;
  }

  static bool is_ip_literal(const std::string& s) {
    in6_addr addr6{};
    in_addr addr4{};
    return ::inet_pton(AF_INET, s.c_str(), &addr4) == 1 ||
           ::inet_pton(AF_INET6, s.c_str(), &addr6) == 1;
  }

  void convert_listener(const MapView& m, ListenerConfig& l) {
    read_enum(m, "kind", l.kind, kListenerKinds);
    l.name = std::string(enum_name(kListenerKinds, l.kind));  // default name: the kind
    if (read_string(m, "name", l.name) && l.name.empty()) {
      fail(m, "name", "must not be empty (a label such as tcp, tls, ws, wss)");
    }
    if (read_string(m, "bind", l.bind) && !is_ip_literal(l.bind)) {
      fail(m, "bind",
           "expected an IPv4 or IPv6 address literal (e.g. 0.0.0.0, 127.0.0.1, ::), got '" +
               l.bind + "'");
    }
    read_integer(m, "port", l.port, 0, 65535);

    const std::string kind_name(enum_name(kListenerKinds, l.kind));
    if (m.has("ws_path")) {
      if (!is_ws_kind(l.kind)) {
        fail(m, "ws_path", "only used by ws and wss listeners, but kind is " + kind_name);
      } else if (read_string(m, "ws_path", l.ws_path) && !l.ws_path.starts_with('/')) {
        fail(m, "ws_path", "must start with '/', got '" + l.ws_path + "'");
      }
    }
    if (m.has("tls") && !is_tls_kind(l.kind)) {
      fail(m, "tls",
           "only used by tls and wss listeners, but kind is " + kind_name +
               " (set kind: tls or wss, or remove tls)");
      return;
    }
    if (is_tls_kind(l.kind)) {
      convert_tls(MapView(diag_, m.get("tls"), m.path_of("tls"), kTlsKeys, m.origin()), kind_name,
                  l.tls);
    }
  }

  // Empty when `file` is a readable regular file, else the reason it is not.
  static std::optional<std::string> unreadable(const std::string& file) {
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return std::system_category().message(errno);
    struct stat st {};
    const bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    ::close(fd);
    if (!regular) return std::string("not a regular file");
    return std::nullopt;
  }

  void check_file(const MapView& m, std::string_view key, const std::string& file,
                  std::string_view hint) {
    if (const auto reason = unreadable(file)) {
      fail(m, key, "cannot read '" + file + "': " + *reason + "; " + std::string(hint));
    }
  }

  void convert_tls(const MapView& m, const std::string& kind_name, TlsConfig& tls) {
    const size_t errors_before = diag_.count();
    read_string(m, "cert_file", tls.cert_file);
    read_string(m, "key_file", tls.key_file);
    read_string(m, "ca_file", tls.ca_file);
    read_bool(m, "verify_client", tls.verify_client);
    read_bool(m, "require_client", tls.require_client);
    if (diag_.count() != errors_before || !m.valid()) return;

    const std::string dev_hint(kDevCertHint);
    if (tls.cert_file.empty()) {
      fail(m, "cert_file",
           "required for a " + kind_name + " listener (PEM certificate chain); " + dev_hint);
    } else {
      check_file(m, "cert_file", tls.cert_file, dev_hint);
    }
    if (tls.key_file.empty()) {
      fail(m, "key_file",
           "required for a " + kind_name + " listener (PEM private key); " + dev_hint);
    } else {
      check_file(m, "key_file", tls.key_file, dev_hint);
    }
    if (!tls.ca_file.empty()) {
      check_file(m, "ca_file", tls.ca_file,
                 "expected the PEM bundle of the CAs that sign client certificates");
    }
    if (tls.require_client && (!tls.verify_client || tls.ca_file.empty())) {
      fail(m, "require_client",
           "needs verify_client: true and a ca_file (the CAs that sign client certificates)");
    }
  }

  void convert_users(const MapView& m, std::vector<StaticUser>& out) {
    struct Seen {
      std::string username;
      std::string path;
    };
    std::vector<Seen> seen;
    for_each_item(m, "users",
                  [&](const ConfigValue& item, const std::string& path, const std::string& origin) {
                    const MapView u(diag_, &item, path, kUserKeys, origin);
                    StaticUser user;
                    if (read_string(u, "username", user.username)) {
                      if (user.username.empty()) {
                        fail(u, "username", "required: a non-empty user name");
                      } else {
                        for (const auto& other : seen) {
                          if (other.username == user.username) {
                            fail(
                                u, "username",
                                "duplicate user '" + user.username + "' (also " + other.path + ")");
                          }
                        }
                        seen.push_back({user.username, path});
                      }
                    }
                    const bool password_ok = read_string(u, "password", user.password);
                    const bool hash_ok = read_string(u, "password_sha256", user.password_sha256);
                    if (password_ok && hash_ok) check_credentials(u, user);
                    out.push_back(std::move(user));
                  });
  }

  void check_credentials(const MapView& u, const StaticUser& user) {
    const bool has_password = !user.password.empty();
    const bool has_hash = !user.password_sha256.empty();
    if (has_password == has_hash) {
      diag_.add(u.path(),
                std::string("set exactly one of password and password_sha256 (") +
                    (has_password ? "both are set" : "neither is set") + ")",
                u.origin());
      return;
    }
    if (user.password == kRedacted || user.password_sha256 == kRedacted) {
      fail(u, has_password ? "password" : "password_sha256",
           "is the placeholder '<redacted>' from --print-config output; set the real value");
      return;
    }
    if (has_hash) {
      const bool hex =
          user.password_sha256.size() == 64 &&
          std::all_of(user.password_sha256.begin(), user.password_sha256.end(),
                      [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
      if (!hex) {
        fail(u, "password_sha256",
             "expected 64 lower-case hex characters (the SHA-256 of the password, e.g. from: "
             "printf %s 'secret' | sha256sum)");
      }
    }
  }

  void convert_acl_rule(const MapView& m, AclRule& rule) {
    if (!m.has("effect")) {
      diag_.add(m.path_of("effect"), "required: allow or deny", m.origin());
    }
    read_enum(m, "effect", rule.effect, kAclEffects);
    read_enum(m, "action", rule.action, kAclActions);
    if (read_string(m, "username", rule.username) && m.has("username") && rule.username.empty()) {
      fail(m, "username", "must not be empty (omit username to match every client)");
    }
    read_bool(m, "anonymous", rule.anonymous);
    if (!rule.username.empty() && rule.anonymous) {
      diag_.add(m.path(),
                "set at most one subject: username or anonymous: true (neither = every client)",
                m.origin());
    }
    if (read_string(m, "topic", rule.topic)) {
      if (rule.topic.empty()) {
        fail(m, "topic", "required: a topic filter, e.g. devices/%c/#");
      } else if (!is_valid_acl_filter(rule.topic)) {
        fail(m, "topic",
             "'" + rule.topic +
                 "' is not a valid topic filter ('+' only as a whole level, '#' only as the "
                 "whole last level; %u and %c stand for the username and client id)");
      }
    }
  }

  static bool is_valid_acl_filter(const std::string& topic) {
    std::string filter;
    for (size_t i = 0; i < topic.size(); ++i) {
      if (topic[i] == '%' && i + 1 < topic.size() && (topic[i + 1] == 'u' || topic[i + 1] == 'c')) {
        filter += 'x';
        ++i;
      } else {
        filter += topic[i];
      }
    }
    return mqtt::is_valid_mqtt_utf8(filter) && mqtt::is_valid_topic_filter(filter);
  }

  Diagnostics& diag_;
};

// ---------------------------------------------------------------------------
// AppConfig -> YAML.

void emit_tls(YAML::Emitter& out, const TlsConfig& tls) {
  out << YAML::Key << "tls" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "cert_file" << YAML::Value << tls.cert_file;
  out << YAML::Key << "key_file" << YAML::Value << tls.key_file;
  out << YAML::Key << "ca_file" << YAML::Value << tls.ca_file;
  out << YAML::Key << "verify_client" << YAML::Value << tls.verify_client;
  out << YAML::Key << "require_client" << YAML::Value << tls.require_client;
  out << YAML::EndMap;
}

void emit_gateway(YAML::Emitter& out, const gateway::GatewayConfig& g) {
  const auto number = [&](const char* key, uint64_t value) {
    out << YAML::Key << key << YAML::Value << static_cast<unsigned long long>(value);
  };
  const auto flag = [&](const char* key, bool value) {
    out << YAML::Key << key << YAML::Value << value;
  };
  const auto name = [&](const char* key, std::string_view value) {
    out << YAML::Key << key << YAML::Value << std::string(value);
  };

  out << YAML::Key << "gateway" << YAML::Value << YAML::BeginMap;
  number("workers", g.workers);
  out << YAML::Key << "listeners" << YAML::Value << YAML::BeginSeq;
  for (const auto& l : g.listeners) {
    out << YAML::BeginMap;
    name("name", l.name);
    name("kind", enum_name(kListenerKinds, l.kind));
    name("bind", l.bind);
    number("port", l.port);
    if (is_ws_kind(l.kind)) name("ws_path", l.ws_path);
    if (is_tls_kind(l.kind)) emit_tls(out, l.tls);
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;
  number("max_connections", g.max_connections);
  number("max_packet_size", g.max_packet_size);
  number("receive_maximum", g.receive_maximum);
  number("max_inflight", g.max_inflight);
  number("max_queued_messages", g.max_queued_messages);
  name("queue_overflow", enum_name(kQueueOverflows, g.queue_overflow));
  flag("queue_qos0", g.queue_qos0);
  number("topic_alias_maximum", g.topic_alias_maximum);
  number("connect_timeout_ms", g.connect_timeout_ms);
  number("max_keepalive", g.max_keepalive);
  number("session_expiry_max", g.session_expiry_max);
  number("message_expiry_max", g.message_expiry_max);
  number("max_client_id_length", g.max_client_id_length);
  number("maximum_qos", g.maximum_qos);
  flag("retain_available", g.retain_available);
  flag("wildcard_subscriptions", g.wildcard_subscriptions);
  flag("shared_subscriptions", g.shared_subscriptions);
  flag("subscription_identifiers", g.subscription_identifiers);
  flag("allow_anonymous", g.allow_anonymous);

  out << YAML::Key << "users" << YAML::Value;
  if (g.users.empty()) out << YAML::Flow;
  out << YAML::BeginSeq;
  for (const auto& user : g.users) {
    out << YAML::BeginMap;
    name("username", user.username);
    if (!user.password.empty()) name("password", kRedacted);
    if (!user.password_sha256.empty()) name("password_sha256", kRedacted);
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;

  name("acl_default", enum_name(kAclEffects, g.acl_default));
  out << YAML::Key << "acl" << YAML::Value;
  if (g.acl.empty()) out << YAML::Flow;
  out << YAML::BeginSeq;
  for (const auto& rule : g.acl) {
    out << YAML::BeginMap;
    name("effect", enum_name(kAclEffects, rule.effect));
    name("action", enum_name(kAclActions, rule.action));
    if (!rule.username.empty()) name("username", rule.username);
    if (rule.anonymous) flag("anonymous", true);
    name("topic", rule.topic);
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;
  out << YAML::EndMap;
}

}  // namespace

AppConfig load_config(const std::string& yaml_file, const std::vector<std::string>& env,
                      const std::vector<std::string>& overrides) {
  Diagnostics diag;
  ConfigValue tree = default_tree();
  if (!yaml_file.empty()) merge(tree, load_file(yaml_file, diag));
  apply_environment(tree, env, diag);
  apply_overrides(tree, overrides, diag);
  // An overlay that failed was not applied, so the tree is still consistent:
  // convert it anyway to report every problem at once.
  AppConfig config = Converter(diag).convert(tree);
  diag.throw_if_any();
  return config;
}

std::string to_yaml(const AppConfig& config) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "node_name" << YAML::Value << config.node_name;
  out << YAML::Key << "data_dir" << YAML::Value << config.data_dir;
  out << YAML::Key << "log" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "level" << YAML::Value << config.log.level;
  out << YAML::Key << "format" << YAML::Value << config.log.format;
  out << YAML::EndMap;
  out << YAML::Key << "http" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "enabled" << YAML::Value << config.http.enabled;
  out << YAML::Key << "bind" << YAML::Value << config.http.bind;
  out << YAML::Key << "port" << YAML::Value << config.http.port;
  out << YAML::Key << "tls_cert_file" << YAML::Value << config.http.tls_cert_file;
  out << YAML::Key << "tls_key_file" << YAML::Value << config.http.tls_key_file;
  out << YAML::Key << "max_body_bytes" << YAML::Value << config.http.max_body_bytes;
  out << YAML::Key << "max_upload_bytes" << YAML::Value
      << static_cast<unsigned long long>(config.http.max_upload_bytes);
  out << YAML::Key << "workers" << YAML::Value << config.http.workers;
  out << YAML::Key << "allow_insecure_bearer" << YAML::Value << config.http.allow_insecure_bearer;
  out << YAML::EndMap;
  out << YAML::Key << "grpc" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "enabled" << YAML::Value << config.grpc.enabled;
  out << YAML::Key << "bind" << YAML::Value << config.grpc.bind;
  out << YAML::Key << "port" << YAML::Value << config.grpc.port;
  out << YAML::EndMap;
  out << YAML::Key << "store" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "url" << YAML::Value << redact_url_password(config.store.url);
  out << YAML::Key << "pool_size" << YAML::Value << config.store.pool_size;
  out << YAML::EndMap;
  out << YAML::Key << "security" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "master_keys" << YAML::Value << YAML::BeginSeq;
  for (const auto& k : config.security.master_keys) {
    out << YAML::BeginMap << YAML::Key << "id" << YAML::Value << k.id << YAML::Key << "key"
        << YAML::Value << std::string(kRedacted) << YAML::EndMap;
  }
  out << YAML::EndSeq;
  out << YAML::Key << "active_key" << YAML::Value << config.security.active_key;
  out << YAML::Key << "bootstrap_admin_token" << YAML::Value
      << (config.security.bootstrap_admin_token.empty() ? std::string() : std::string(kRedacted));
  out << YAML::EndMap;
  out << YAML::Key << "device_auth" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "enabled" << YAML::Value << config.device_auth.enabled;
  out << YAML::Key << "replay_window_s" << YAML::Value << config.device_auth.replay_window_s;
  out << YAML::Key << "max_failures_per_address" << YAML::Value
      << config.device_auth.max_failures_per_address;
  out << YAML::Key << "max_failures_per_device" << YAML::Value
      << config.device_auth.max_failures_per_device;
  out << YAML::Key << "public_host" << YAML::Value << config.device_auth.public_host;
  out << YAML::EndMap;
  out << YAML::Key << "commands" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "max_queue_per_device" << YAML::Value << config.commands.max_queue_per_device;
  out << YAML::Key << "window_per_device" << YAML::Value << config.commands.window_per_device;
  out << YAML::Key << "max_attempts" << YAML::Value << config.commands.max_attempts;
  out << YAML::Key << "retry_backoff_ms" << YAML::Value << config.commands.retry_backoff_ms;
  out << YAML::Key << "sweep_interval_ms" << YAML::Value << config.commands.sweep_interval_ms;
  out << YAML::Key << "history_retention_days" << YAML::Value
      << config.commands.history_retention_days;
  out << YAML::EndMap;
  out << YAML::Key << "scans" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "answer_timeout_ms" << YAML::Value << config.scans.answer_timeout_ms;
  out << YAML::Key << "duplicate_window_ms" << YAML::Value << config.scans.duplicate_window_ms;
  out << YAML::EndMap;
  out << YAML::Key << "webhooks" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "dispatch" << YAML::Value << config.webhooks.dispatch;
  out << YAML::Key << "allow_http" << YAML::Value << config.webhooks.allow_http;
  out << YAML::Key << "request_timeout_ms" << YAML::Value << config.webhooks.request_timeout_ms;
  out << YAML::Key << "retry_window_ms" << YAML::Value
      << static_cast<unsigned long long>(config.webhooks.retry_window_ms);
  out << YAML::Key << "retry_delays_ms" << YAML::Value << YAML::Flow << YAML::BeginSeq;
  for (uint32_t delay : config.webhooks.retry_delays_ms)
    out << delay;
  out << YAML::EndSeq;
  out << YAML::EndMap;
  emit_gateway(out, config.gateway);
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace counterlink::cli
