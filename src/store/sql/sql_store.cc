#include "sql/sql_store.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <initializer_list>
#include <map>
#include <set>
#include <string_view>
#include <tuple>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "guarded.h"

namespace counterlink::store::sql {
namespace {

// Page sizes: the API promises 1..1000 per page; out-of-range asks are
// clamped, not refused.
constexpr int32_t kMaxPageLimit = 1000;
// PostgreSQL bulk insert: rows per multi-row INSERT (13 parameters each, far
// below libpq's 65535). Shorter tails use power-of-two sizes so a connection
// prepares at most a dozen distinct bulk statements.
constexpr size_t kPostgresBulkRows = 512;
// touch_api_key writes are coalesced: at most one transaction per interval
// carries every key touched since the last one. last_used_ms is for "last
// used" displays; a commit (an fsync on SQLite) per API request is not worth
// it. A crash loses at most this much of it.
constexpr std::chrono::milliseconds kTouchFlushInterval{1000};

constexpr const char* kTenantColumns =
    "id, name, kind, disabled, max_devices, api_rate_limit, created_ms, updated_ms";
constexpr const char* kMerchantColumns = "id, tenant_id, name, created_ms";
constexpr const char* kOutletColumns = "id, tenant_id, merchant_id, name, address, created_ms";
constexpr const char* kApiKeyColumns =
    "id, tenant_id, scope, name, secret_hash, signing_key_sealed, created_ms, last_used_ms, "
    "revoked_ms";
constexpr const char* kProductColumns =
    "id, tenant_id, name, type, capabilities, created_ms, updated_ms";
constexpr const char* kDeviceColumns =
    "d.id, d.tenant_id, d.product_id, d.serial, d.merchant_id, d.outlet_id, d.secret_sealed, "
    "d.labels, d.firmware_version, d.disabled, d.created_ms, d.updated_ms, d.last_seen_ms, "
    "d.online, d.presence_since_ms, d.remote_address, d.protocol_version, d.gateway_node";
constexpr const char* kPresenceColumns =
    "seq, device_id, online, at_ms, remote_address, protocol_version, gateway_node, reason";
constexpr const char* kIdempotencyColumns =
    "scope, key, request_hash, completed, http_status, response_body, created_ms";
constexpr const char* kCommandColumns =
    "id, tenant_id, device_id, type, state, dedup_key, payload, request, seq, created_ms, "
    "updated_ms, expires_at_ms, attempts, code, detail, request_id";
constexpr const char* kLogEventColumns = "seq, tenant_id, type, subject_id, device_id, at_ms, data";
constexpr const char* kWebhookColumns =
    "id, tenant_id, url, description, event_types, secret_sealed, disabled, cursor_seq, "
    "created_ms, updated_ms";
constexpr const char* kDeliveryColumns =
    "id, endpoint_id, tenant_id, event_seq, event_type, state, attempts, next_attempt_ms, "
    "last_attempt_ms, last_status_code, last_error, created_ms, updated_ms";
constexpr const char* kAttemptColumns =
    "delivery_id, attempt, at_ms, status_code, duration_ms, error";
constexpr const char* kScanColumns =
    "id, tenant_id, device_id, box_scan_id, code, code_hash, amount_fen, state, outcome, display, "
    "voice, result_command_id, created_ms, deadline_ms, answered_ms";

// Command states. These lists are written as literals (not parameters) and
// exactly as in the partial indexes of migration 2 (commands_pending,
// commands_expiring): both databases use a partial index only when the
// query's WHERE visibly implies the index's.
constexpr const char* kNonFinalStates = "('queued', 'sent', 'delivered', 'waiting')";
constexpr const char* kFinalStates =
    "('played', 'printed', 'shown', 'failed', 'expired', 'cancelled')";

// PostgreSQL: every transaction that appends to `events` holds this
// transaction-scoped advisory lock from before its first insert until it
// commits. BIGSERIAL hands out seqs at insert time, not at commit, so
// without it a transaction could commit seq 10 after another committed seq
// 11 and a reader that already moved its cursor past 11 (the webhook
// dispatcher) would never see 10. Transactions take it right before their
// event inserts and then wait for no other lock, so holding it cannot
// deadlock with the row locks they took before. SQLite has a single writer:
// no lock needed.
constexpr const char* kEventOrderLock = "SELECT pg_advisory_xact_lock(7264002)";
// PostgreSQL: create_scan's duplicate check and insert hold this per-device
// lock (class 7264003, key hashtext(device_id)), so two scans of one code
// arriving at once cannot both pass the check.
constexpr const char* kScanDeviceLock = "SELECT pg_advisory_xact_lock(7264003, hashtext(?))";

constexpr const char* kDeviceInsertColumns =
    "INSERT INTO devices(id, tenant_id, product_id, serial, merchant_id, outlet_id, "
    "secret_sealed, labels, firmware_version, disabled, created_ms, updated_ms, last_seen_ms) "
    "VALUES ";
constexpr const char* kDeviceValues = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

// ---- Cells -> values ---------------------------------------------------------

int64_t to_int(const Cell& cell) {
  int64_t value = 0;
  if (cell) std::from_chars(cell->data(), cell->data() + cell->size(), value);
  return value;
}
bool to_bool(const Cell& cell) {
  return cell && (*cell == "1" || *cell == "t" || *cell == "true");
}
std::string to_text(const Cell& cell) {
  return cell.value_or(std::string());
}

std::string labels_to_json(const std::map<std::string, std::string>& labels) {
  nlohmann::json object = nlohmann::json::object();
  for (const auto& [key, value] : labels)
    object[key] = value;
  return object.dump();
}

std::map<std::string, std::string> labels_from_json(const std::string& text) {
  std::map<std::string, std::string> labels;
  auto object = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!object.is_object()) return labels;
  for (const auto& [key, value] : object.items()) {
    if (value.is_string()) labels.emplace(key, value.get<std::string>());
  }
  return labels;
}

Tenant tenant_from(const Row& row) {
  Tenant t;
  t.id = to_text(row[0]);
  t.name = to_text(row[1]);
  t.kind = to_text(row[2]);
  t.disabled = to_bool(row[3]);
  t.max_devices = to_int(row[4]);
  t.api_rate_limit = static_cast<int32_t>(to_int(row[5]));
  t.created_ms = to_int(row[6]);
  t.updated_ms = to_int(row[7]);
  return t;
}

Merchant merchant_from(const Row& row) {
  return {to_text(row[0]), to_text(row[1]), to_text(row[2]), to_int(row[3])};
}

Outlet outlet_from(const Row& row) {
  return {to_text(row[0]), to_text(row[1]), to_text(row[2]),
          to_text(row[3]), to_text(row[4]), to_int(row[5])};
}

ApiKey api_key_from(const Row& row) {
  ApiKey k;
  k.id = to_text(row[0]);
  k.tenant_id = to_text(row[1]);
  k.scope = to_text(row[2]);
  k.name = to_text(row[3]);
  k.secret_hash = to_text(row[4]);
  k.signing_key_sealed = to_text(row[5]);
  k.created_ms = to_int(row[6]);
  k.last_used_ms = to_int(row[7]);
  k.revoked_ms = to_int(row[8]);
  return k;
}

Product product_from(const Row& row) {
  return {to_text(row[0]), to_text(row[1]), to_text(row[2]), to_text(row[3]),
          to_text(row[4]), to_int(row[5]),  to_int(row[6])};
}

Device device_from(const Row& row) {
  Device d;
  d.id = to_text(row[0]);
  d.tenant_id = to_text(row[1]);
  d.product_id = to_text(row[2]);
  d.serial = to_text(row[3]);
  d.merchant_id = to_text(row[4]);
  d.outlet_id = to_text(row[5]);
  d.secret_sealed = to_text(row[6]);
  d.labels = labels_from_json(to_text(row[7]));
  d.firmware_version = to_text(row[8]);
  d.disabled = to_bool(row[9]);
  d.created_ms = to_int(row[10]);
  d.updated_ms = to_int(row[11]);
  d.last_seen_ms = to_int(row[12]);
  d.presence.online = to_bool(row[13]);
  d.presence.since_ms = to_int(row[14]);
  d.presence.remote_address = to_text(row[15]);
  d.presence.protocol_version = to_text(row[16]);
  d.presence.gateway_node = to_text(row[17]);
  return d;
}

PresenceEvent presence_from(const Row& row) {
  PresenceEvent e;
  e.seq = to_int(row[0]);
  e.device_id = to_text(row[1]);
  e.online = to_bool(row[2]);
  e.at_ms = to_int(row[3]);
  e.remote_address = to_text(row[4]);
  e.protocol_version = to_text(row[5]);
  e.gateway_node = to_text(row[6]);
  e.reason = to_text(row[7]);
  return e;
}

IdempotencyRecord idempotency_from(const Row& row) {
  IdempotencyRecord r;
  r.scope = to_text(row[0]);
  r.key = to_text(row[1]);
  r.request_hash = to_text(row[2]);
  r.completed = to_bool(row[3]);
  r.http_status = static_cast<int32_t>(to_int(row[4]));
  r.response_body = to_text(row[5]);
  r.created_ms = to_int(row[6]);
  return r;
}

Command command_from(const Row& row) {
  Command c;
  c.id = to_text(row[0]);
  c.tenant_id = to_text(row[1]);
  c.device_id = to_text(row[2]);
  c.type = to_text(row[3]);
  c.state = to_text(row[4]);
  c.dedup_key = to_text(row[5]);
  c.payload_json = to_text(row[6]);
  c.request_json = to_text(row[7]);
  c.seq = to_int(row[8]);
  c.created_ms = to_int(row[9]);
  c.updated_ms = to_int(row[10]);
  c.expires_at_ms = to_int(row[11]);
  c.attempts = static_cast<int32_t>(to_int(row[12]));
  c.code = to_text(row[13]);
  c.detail = to_text(row[14]);
  c.request_id = to_text(row[15]);
  return c;
}

Event log_event_from(const Row& row) {
  Event e;
  e.seq = to_int(row[0]);
  e.tenant_id = to_text(row[1]);
  e.type = to_text(row[2]);
  e.subject_id = to_text(row[3]);
  e.device_id = to_text(row[4]);
  e.at_ms = to_int(row[5]);
  e.data_json = to_text(row[6]);
  return e;
}

std::string strings_to_json(const std::vector<std::string>& strings) {
  return nlohmann::json(strings).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::vector<std::string> strings_from_json(const std::string& text) {
  std::vector<std::string> strings;
  auto array = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!array.is_array()) return strings;
  for (const auto& value : array) {
    if (value.is_string()) strings.push_back(value.get<std::string>());
  }
  return strings;
}

WebhookEndpoint webhook_from(const Row& row) {
  WebhookEndpoint w;
  w.id = to_text(row[0]);
  w.tenant_id = to_text(row[1]);
  w.url = to_text(row[2]);
  w.description = to_text(row[3]);
  w.event_types = strings_from_json(to_text(row[4]));
  w.secret_sealed = to_text(row[5]);
  w.disabled = to_bool(row[6]);
  w.cursor_seq = to_int(row[7]);
  w.created_ms = to_int(row[8]);
  w.updated_ms = to_int(row[9]);
  return w;
}

WebhookDelivery delivery_from(const Row& row) {
  WebhookDelivery d;
  d.id = to_int(row[0]);
  d.endpoint_id = to_text(row[1]);
  d.tenant_id = to_text(row[2]);
  d.event_seq = to_int(row[3]);
  d.event_type = to_text(row[4]);
  d.state = to_text(row[5]);
  d.attempts = static_cast<int32_t>(to_int(row[6]));
  d.next_attempt_ms = to_int(row[7]);
  d.last_attempt_ms = to_int(row[8]);
  d.last_status_code = static_cast<int32_t>(to_int(row[9]));
  d.last_error = to_text(row[10]);
  d.created_ms = to_int(row[11]);
  d.updated_ms = to_int(row[12]);
  return d;
}

WebhookAttempt attempt_from(const Row& row) {
  WebhookAttempt a;
  a.delivery_id = to_int(row[0]);
  a.attempt = static_cast<int32_t>(to_int(row[1]));
  a.at_ms = to_int(row[2]);
  a.status_code = static_cast<int32_t>(to_int(row[3]));
  a.duration_ms = static_cast<int32_t>(to_int(row[4]));
  a.error = to_text(row[5]);
  return a;
}

Scan scan_from(const Row& row) {
  Scan s;
  s.id = to_text(row[0]);
  s.tenant_id = to_text(row[1]);
  s.device_id = to_text(row[2]);
  s.box_scan_id = to_text(row[3]);
  s.code = to_text(row[4]);
  s.code_hash = to_text(row[5]);
  s.amount_fen = to_int(row[6]);
  s.state = to_text(row[7]);
  s.outcome = to_text(row[8]);
  s.display = to_text(row[9]);
  s.voice = to_text(row[10]);
  s.result_command_id = to_text(row[11]);
  s.created_ms = to_int(row[12]);
  s.deadline_ms = to_int(row[13]);
  s.answered_ms = to_int(row[14]);
  return s;
}

// The data of a device.online / device.offline event. ordered_json keeps
// the documented key order; invalid UTF-8 is replaced, never thrown.
std::string presence_event_json(const std::string& device_id, bool online,
                                const std::string& remote_address,
                                const std::string& protocol_version,
                                const std::string& gateway_node, const std::string& reason) {
  nlohmann::ordered_json data;
  data["device_id"] = device_id;
  data["online"] = online;
  data["remote_address"] = remote_address;
  data["protocol_version"] = protocol_version;
  data["gateway_node"] = gateway_node;
  data["reason"] = reason;
  return data.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

// Length of the UTF-8 sequence starting at text[i], or 0 if it is not one
// PostgreSQL accepts (malformed, overlong, a surrogate, beyond U+10FFFF, or
// NUL, at which libpq would cut the value).
size_t utf8_sequence_length(std::string_view text, size_t i) {
  const auto c = static_cast<unsigned char>(text[i]);
  if (c == 0) return 0;
  if (c < 0x80) return 1;
  size_t length = 0;
  uint32_t code_point = 0;
  if ((c & 0xE0) == 0xC0) {
    length = 2;
    code_point = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    length = 3;
    code_point = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    length = 4;
    code_point = c & 0x07;
  } else {
    return 0;
  }
  if (i + length > text.size()) return 0;
  for (size_t k = 1; k < length; ++k) {
    const auto next = static_cast<unsigned char>(text[i + k]);
    if ((next & 0xC0) != 0x80) return 0;
    code_point = (code_point << 6) | (next & 0x3F);
  }
  static constexpr uint32_t kSmallest[] = {0, 0, 0x80, 0x800, 0x10000};
  if (code_point < kSmallest[length] || code_point > 0x10FFFF ||
      (code_point >= 0xD800 && code_point <= 0xDFFF)) {
    return 0;
  }
  return length;
}

// Text both databases store alike. apply_writes refuses other text up
// front (kInvalid for that write) because on PostgreSQL a refused statement
// aborts the whole transaction, and one bad write must not fail the others
// of its batch.
bool storable_text(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const size_t length = utf8_sequence_length(text, i);
    if (length == 0) return false;
    i += length;
  }
  return true;
}

// For diagnostics that may hold arbitrary bytes (an HTTP body excerpt cut
// anywhere): invalid sequences become U+FFFD instead of failing the write.
std::string storable_copy(std::string_view text) {
  if (storable_text(text)) return std::string(text);
  std::string out;
  out.reserve(text.size() + 8);
  for (size_t i = 0; i < text.size();) {
    const size_t length = utf8_sequence_length(text, i);
    if (length == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(text.substr(i, length));
      i += length;
    }
  }
  return out;
}

bool storable(std::initializer_list<std::string_view> texts) {
  return std::all_of(texts.begin(), texts.end(), storable_text);
}

bool storable_event(const Event& e) {
  return storable({e.tenant_id, e.type, e.subject_id, e.device_id, e.data_json});
}

// "(?, ?, ?)" for `count` values.
std::string placeholders(size_t count) {
  std::string out = "(";
  for (size_t i = 0; i < count; ++i)
    out += i == 0 ? "?" : ", ?";
  return out + ")";
}

std::vector<Param> text_params(const std::vector<std::string>& values) {
  std::vector<Param> params;
  params.reserve(values.size());
  for (const auto& value : values)
    params.push_back(text_param(value));
  return params;
}

// A decimal seq or id page token (exclusive bound); nullopt when empty.
Status parse_number_token(const std::string& token, const char* what,
                          std::optional<int64_t>& value) {
  value.reset();
  if (token.empty()) return Status::Ok();
  int64_t number = 0;
  const char* end = token.data() + token.size();
  auto [ptr, error] = std::from_chars(token.data(), end, number);
  if (error != std::errc() || ptr != end) {
    return {Code::kInvalid, std::string(what) + " page token '" + token + "' is not a number"};
  }
  value = number;
  return Status::Ok();
}

void append_device_params(const Device& d, std::vector<Param>& params) {
  params.push_back(text_param(d.id));
  params.push_back(text_param(d.tenant_id));
  params.push_back(text_param(d.product_id));
  params.push_back(text_param(d.serial));
  params.push_back(optional_text_param(d.merchant_id));
  params.push_back(optional_text_param(d.outlet_id));
  params.push_back(blob_param(d.secret_sealed));
  params.push_back(text_param(labels_to_json(d.labels)));
  params.push_back(text_param(d.firmware_version));
  params.push_back(bool_param(d.disabled));
  params.push_back(int_param(d.created_ms));
  params.push_back(int_param(d.updated_ms));
  params.push_back(int_param(d.last_seen_ms));
}

// ---- Statement building -------------------------------------------------------

// AND-ed conditions with their parameters, in placeholder order.
class Where {
 public:
  void add(std::string condition, std::vector<Param> values = {}) {
    conditions_.push_back(std::move(condition));
    for (auto& value : values)
      params_.push_back(std::move(value));
  }
  // Tenant scoping: an empty tenant id means any tenant (gateway, operators).
  void scope(const std::string& column, const std::string& tenant_id) {
    if (!tenant_id.empty()) add(column + " = ?", {text_param(tenant_id)});
  }
  std::string sql() const {
    std::string out;
    for (size_t i = 0; i < conditions_.size(); ++i) {
      out += i == 0 ? " WHERE " : " AND ";
      out += conditions_[i];
    }
    return out;
  }
  std::vector<Param>& params() { return params_; }

 private:
  std::vector<std::string> conditions_;
  std::vector<Param> params_;
};

Status with_context(Status status, const std::string& context) {
  if (!status.ok()) status.message = context + ": " + status.message;
  return status;
}

// Characters, not bytes: substr() counts characters on both databases.
int64_t utf8_length(const std::string& text) {
  return std::count_if(text.begin(), text.end(),
                       [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; });
}

// Checks that a device's product, merchant and outlet belong to its tenant,
// looking each distinct id up once per transaction (bulk imports name the
// same product thousands of times).
class ReferenceCheck {
 public:
  explicit ReferenceCheck(Session& session) : session_(session) {}

  // kOk, kInvalid naming the bad reference, or a database error. Empty ids
  // are not checked.
  Status check(const std::string& tenant_id, const std::string& product_id,
               const std::string& merchant_id, const std::string& outlet_id) {
    const std::optional<Row>* row = nullptr;
    if (!product_id.empty()) {
      if (auto s =
              lookup(products_, "SELECT tenant_id FROM products WHERE id = ?", product_id, row);
          !s.ok()) {
        return s;
      }
      if (!*row || to_text((**row)[0]) != tenant_id) {
        return {Code::kInvalid,
                "product " + product_id + " is not a product of tenant " + tenant_id};
      }
    }
    if (!merchant_id.empty()) {
      if (auto s =
              lookup(merchants_, "SELECT tenant_id FROM merchants WHERE id = ?", merchant_id, row);
          !s.ok()) {
        return s;
      }
      if (!*row || to_text((**row)[0]) != tenant_id) {
        return {Code::kInvalid,
                "merchant " + merchant_id + " is not a merchant of tenant " + tenant_id};
      }
    }
    if (!outlet_id.empty()) {
      if (auto s = lookup(outlets_, "SELECT tenant_id, merchant_id FROM outlets WHERE id = ?",
                          outlet_id, row);
          !s.ok()) {
        return s;
      }
      if (!*row || to_text((**row)[0]) != tenant_id) {
        return {Code::kInvalid, "outlet " + outlet_id + " is not an outlet of tenant " + tenant_id};
      }
      if (!merchant_id.empty() && to_text((**row)[1]) != merchant_id) {
        return {Code::kInvalid,
                "outlet " + outlet_id + " does not belong to merchant " + merchant_id};
      }
    }
    return Status::Ok();
  }

 private:
  using Cache = std::map<std::string, std::optional<Row>>;

  Status lookup(Cache& cache, const char* sql, const std::string& id,
                const std::optional<Row>*& row) {
    auto it = cache.find(id);
    if (it == cache.end()) {
      ExecResult result;
      auto status = session_.exec(sql, {text_param(id)}, result);
      if (!status.ok()) return status;
      std::optional<Row> found;
      if (!result.rows.empty()) found = std::move(result.rows[0]);
      it = cache.emplace(id, std::move(found)).first;
    }
    row = &it->second;
    return Status::Ok();
  }

  Session& session_;
  Cache products_;
  Cache merchants_;
  Cache outlets_;
};

// ---- The store ----------------------------------------------------------------

class SqlStore final : public Store {
 public:
  SqlStore(std::unique_ptr<Database> database, int schema_version)
      : database_(std::move(database)),
        dialect_(database_->dialect()),
        schema_version_(schema_version) {}

  ~SqlStore() override { flush_touches(take_touches(/*force=*/true)); }
  SqlStore(const SqlStore&) = delete;
  SqlStore& operator=(const SqlStore&) = delete;

  const char* kind() const override { return database_->kind(); }

  Status ping() override {
    return read([](Session& session) {
      ExecResult result;
      return session.exec("SELECT 1", {}, result);
    });
  }

  int schema_version() override { return schema_version_; }

  // ---- Tenants ----

  Status create_tenant(const Tenant& t) override {
    return insert_new(
        std::string("INSERT INTO tenants(") + kTenantColumns +
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        {text_param(t.id), text_param(t.name), text_param(t.kind), bool_param(t.disabled),
         int_param(t.max_devices), int_param(t.api_rate_limit), int_param(t.created_ms),
         int_param(t.updated_ms)},
        "tenant " + t.id);
  }

  Result<Tenant> get_tenant(const std::string& id) override {
    Where where;
    where.add("id = ?", {text_param(id)});
    return one<Tenant>(std::string("SELECT ") + kTenantColumns + " FROM tenants", where,
                       tenant_from, "tenant " + id);
  }

  Status update_tenant(const Tenant& t) override {
    return update_one(
        "UPDATE tenants SET name = ?, kind = ?, disabled = ?, max_devices = ?, "
        "api_rate_limit = ?, updated_ms = ? WHERE id = ?",
        {text_param(t.name), text_param(t.kind), bool_param(t.disabled), int_param(t.max_devices),
         int_param(t.api_rate_limit), int_param(t.updated_ms), text_param(t.id)},
        "tenant " + t.id);
  }

  Result<Listing<Tenant>> list_tenants(const Page& page) override {
    return page_of<Tenant>(std::string("SELECT ") + kTenantColumns + " FROM tenants", Where(), "id",
                           page, tenant_from);
  }

  // ---- Merchants and outlets ----

  Status create_merchant(const Merchant& m) override {
    return insert_new(
        std::string("INSERT INTO merchants(") + kMerchantColumns +
            ") VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        {text_param(m.id), text_param(m.tenant_id), text_param(m.name), int_param(m.created_ms)},
        "merchant " + m.id);
  }

  Result<Merchant> get_merchant(const std::string& tenant_id, const std::string& id) override {
    Where where;
    where.add("id = ?", {text_param(id)});
    where.scope("tenant_id", tenant_id);
    return one<Merchant>(std::string("SELECT ") + kMerchantColumns + " FROM merchants", where,
                         merchant_from, "merchant " + id);
  }

  Result<Listing<Merchant>> list_merchants(const std::string& tenant_id,
                                           const Page& page) override {
    Where where;
    where.scope("tenant_id", tenant_id);
    return page_of<Merchant>(std::string("SELECT ") + kMerchantColumns + " FROM merchants",
                             std::move(where), "id", page, merchant_from);
  }

  Status create_outlet(const Outlet& o) override {
    return write([&](Session& session) {
      ReferenceCheck references(session);
      if (auto s = references.check(o.tenant_id, "", o.merchant_id, ""); !s.ok()) return s;
      if (o.merchant_id.empty()) return Status{Code::kInvalid, "an outlet needs a merchant"};
      return insert_in(session,
                       std::string("INSERT INTO outlets(") + kOutletColumns +
                           ") VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                       {text_param(o.id), text_param(o.tenant_id), text_param(o.merchant_id),
                        text_param(o.name), text_param(o.address), int_param(o.created_ms)},
                       "outlet " + o.id);
    });
  }

  Result<Outlet> get_outlet(const std::string& tenant_id, const std::string& id) override {
    Where where;
    where.add("id = ?", {text_param(id)});
    where.scope("tenant_id", tenant_id);
    return one<Outlet>(std::string("SELECT ") + kOutletColumns + " FROM outlets", where,
                       outlet_from, "outlet " + id);
  }

  Result<Listing<Outlet>> list_outlets(const std::string& tenant_id, const std::string& merchant_id,
                                       const Page& page) override {
    Where where;
    where.scope("tenant_id", tenant_id);
    if (!merchant_id.empty()) where.add("merchant_id = ?", {text_param(merchant_id)});
    return page_of<Outlet>(std::string("SELECT ") + kOutletColumns + " FROM outlets",
                           std::move(where), "id", page, outlet_from);
  }

  // ---- API keys ----

  Status create_api_key(const ApiKey& k) override {
    return insert_new(
        std::string("INSERT INTO api_keys(") + kApiKeyColumns +
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        {text_param(k.id), optional_text_param(k.tenant_id), text_param(k.scope),
         text_param(k.name), blob_param(k.secret_hash), blob_param(k.signing_key_sealed),
         int_param(k.created_ms), int_param(k.last_used_ms), int_param(k.revoked_ms)},
        "API key " + k.id);
  }

  Result<ApiKey> get_api_key(const std::string& id) override {
    Where where;
    where.add("id = ?", {text_param(id)});
    auto key = one<ApiKey>(std::string("SELECT ") + kApiKeyColumns + " FROM api_keys", where,
                           api_key_from, "API key " + id);
    if (key.ok()) apply_pending_touch(key.value());
    return key;
  }

  Result<Listing<ApiKey>> list_api_keys(const std::string& tenant_id, const Page& page) override {
    Where where;
    where.scope("tenant_id", tenant_id);
    auto listing = page_of<ApiKey>(std::string("SELECT ") + kApiKeyColumns + " FROM api_keys",
                                   std::move(where), "id", page, api_key_from);
    if (listing.ok()) {
      for (auto& key : listing.value().items)
        apply_pending_touch(key);
    }
    return listing;
  }

  Status revoke_api_key(const std::string& tenant_id, const std::string& id,
                        TimeMs at_ms) override {
    // The first revocation time stands; revoking again is not an error.
    Where where;
    where.add("id = ?", {text_param(id)});
    where.scope("tenant_id", tenant_id);
    std::vector<Param> params{int_param(at_ms)};
    for (auto& p : where.params())
      params.push_back(std::move(p));
    return update_one(
        "UPDATE api_keys SET revoked_ms = CASE WHEN revoked_ms = 0 THEN ? ELSE revoked_ms END" +
            where.sql(),
        std::move(params), "API key " + id);
  }

  Status set_api_key_signing_key(const std::string& id,
                                 const std::string& signing_key_sealed) override {
    return update_one("UPDATE api_keys SET signing_key_sealed = ? WHERE id = ?",
                      {blob_param(signing_key_sealed), text_param(id)}, "API key " + id);
  }

  // Coalesced (kTouchFlushInterval): recorded in memory now, written with
  // the other pending touches by the first touch after the interval, or when
  // the store closes. Reads of API keys see pending touches at once. Unknown
  // ids are ignored (best effort, as the interface allows).
  Status touch_api_key(const std::string& id, TimeMs at_ms) override {
    {
      auto touches = touches_.lock();
      TimeMs& latest = touches->latest[id];
      latest = std::max(latest, at_ms);
    }
    flush_touches(take_touches(/*force=*/false));
    return Status::Ok();
  }

  // ---- Products ----

  Status create_product(const Product& p) override {
    return insert_new(
        std::string("INSERT INTO products(") + kProductColumns +
            ") VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        {text_param(p.id), text_param(p.tenant_id), text_param(p.name), text_param(p.type),
         text_param(p.capabilities_json), int_param(p.created_ms), int_param(p.updated_ms)},
        "product " + p.id);
  }

  Result<Product> get_product(const std::string& tenant_id, const std::string& id) override {
    Where where;
    where.add("id = ?", {text_param(id)});
    where.scope("tenant_id", tenant_id);
    return one<Product>(std::string("SELECT ") + kProductColumns + " FROM products", where,
                        product_from, "product " + id);
  }

  Status update_product(const Product& p) override {
    Where where;
    where.add("id = ?", {text_param(p.id)});
    where.scope("tenant_id", p.tenant_id);
    std::vector<Param> params{text_param(p.name), text_param(p.capabilities_json),
                              int_param(p.updated_ms)};
    for (auto& param : where.params())
      params.push_back(std::move(param));
    return update_one(
        "UPDATE products SET name = ?, capabilities = ?, updated_ms = ?" + where.sql(),
        std::move(params), "product " + p.id);
  }

  Status delete_product(const std::string& tenant_id, const std::string& id) override {
    return write([&](Session& session) {
      Where where;
      where.add("id = ?", {text_param(id)});
      where.scope("tenant_id", tenant_id);
      ExecResult result;
      auto status = session.exec("SELECT id FROM products" + where.sql(), where.params(), result);
      if (!status.ok()) return status;
      if (result.rows.empty()) return Status{Code::kNotFound, "product " + id + " not found"};
      status = session.exec("SELECT id FROM devices WHERE product_id = ? LIMIT 1", {text_param(id)},
                            result);
      if (!status.ok()) return status;
      if (!result.rows.empty()) {
        return Status{Code::kConflict,
                      "product " + id + " still has devices; delete or move them first"};
      }
      return session.exec("DELETE FROM products WHERE id = ?", {text_param(id)}, result);
    });
  }

  Result<Listing<Product>> list_products(const std::string& tenant_id, const Page& page) override {
    Where where;
    where.scope("tenant_id", tenant_id);
    return page_of<Product>(std::string("SELECT ") + kProductColumns + " FROM products",
                            std::move(where), "id", page, product_from);
  }

  // ---- Devices ----

  Status create_device(const Device& d) override {
    return write([&](Session& session) {
      ReferenceCheck references(session);
      auto status = references.check(d.tenant_id, d.product_id, d.merchant_id, d.outlet_id);
      if (!status.ok()) return status;
      std::vector<Param> params;
      append_device_params(d, params);
      return insert_in(
          session, std::string(kDeviceInsertColumns) + kDeviceValues + " ON CONFLICT DO NOTHING",
          std::move(params),
          "device " + d.id + " or serial " + d.serial + " of product " + d.product_id);
    });
  }

  Result<std::vector<RowOutcome>> create_devices(const std::vector<Device>& devices) override {
    std::vector<RowOutcome> outcomes;
    if (devices.empty()) return outcomes;
    auto status = write([&](Session& session) {
      outcomes.assign(devices.size(), RowOutcome{});
      std::vector<size_t> valid;
      valid.reserve(devices.size());
      ReferenceCheck references(session);
      for (size_t i = 0; i < devices.size(); ++i) {
        const auto& d = devices[i];
        outcomes[i].index = i;
        auto checked = references.check(d.tenant_id, d.product_id, d.merchant_id, d.outlet_id);
        if (checked.code == Code::kInvalid) {
          outcomes[i].status = std::move(checked);
        } else if (!checked.ok()) {
          return checked;
        } else {
          valid.push_back(i);
        }
      }
      return dialect_ == Dialect::kPostgres
                 ? insert_devices_multirow(session, devices, valid, outcomes)
                 : insert_devices_each(session, devices, valid, outcomes);
    });
    if (!status.ok()) return status;
    return outcomes;
  }

  Result<Device> get_device(const std::string& tenant_id, const std::string& id) override {
    Where where;
    where.add("d.id = ?", {text_param(id)});
    where.scope("d.tenant_id", tenant_id);
    return one<Device>(std::string("SELECT ") + kDeviceColumns + " FROM devices d", where,
                       device_from, "device " + id);
  }

  Result<Device> get_device_by_serial(const std::string& tenant_id, const std::string& product_id,
                                      const std::string& serial) override {
    Where where;
    where.add("d.product_id = ?", {text_param(product_id)});
    where.add("d.serial = ?", {text_param(serial)});
    where.scope("d.tenant_id", tenant_id);
    return one<Device>(std::string("SELECT ") + kDeviceColumns + " FROM devices d", where,
                       device_from, "device with serial " + serial + " of product " + product_id);
  }

  Status update_device(const Device& d) override {
    return write([&](Session& session) {
      Where where;
      where.add("id = ?", {text_param(d.id)});
      where.scope("tenant_id", d.tenant_id);
      ExecResult result;
      auto status =
          session.exec("SELECT tenant_id FROM devices" + where.sql(), where.params(), result);
      if (!status.ok()) return status;
      if (result.rows.empty()) return Status{Code::kNotFound, "device " + d.id + " not found"};
      const std::string owner = to_text(result.rows[0][0]);
      ReferenceCheck references(session);
      status = references.check(owner, "", d.merchant_id, d.outlet_id);
      if (!status.ok()) return status;
      return session.exec(
          "UPDATE devices SET labels = ?, firmware_version = ?, merchant_id = ?, outlet_id = ?, "
          "disabled = ?, updated_ms = ? WHERE id = ?",
          {text_param(labels_to_json(d.labels)), text_param(d.firmware_version),
           optional_text_param(d.merchant_id), optional_text_param(d.outlet_id),
           bool_param(d.disabled), int_param(d.updated_ms), text_param(d.id)},
          result);
    });
  }

  Status set_device_secret(const std::string& tenant_id, const std::string& id,
                           const std::string& secret_sealed, TimeMs at_ms) override {
    Where where;
    where.add("id = ?", {text_param(id)});
    where.scope("tenant_id", tenant_id);
    std::vector<Param> params{blob_param(secret_sealed), int_param(at_ms)};
    for (auto& p : where.params())
      params.push_back(std::move(p));
    return update_one("UPDATE devices SET secret_sealed = ?, updated_ms = ?" + where.sql(),
                      std::move(params), "device " + id);
  }

  Status delete_device(const std::string& tenant_id, const std::string& id) override {
    // Its presence history goes with it (ON DELETE CASCADE).
    Where where;
    where.add("id = ?", {text_param(id)});
    where.scope("tenant_id", tenant_id);
    return update_one("DELETE FROM devices" + where.sql(), std::move(where.params()),
                      "device " + id);
  }

  Result<Listing<Device>> list_devices(const DeviceFilter& filter, const Page& page) override {
    Where where;
    std::string from = " FROM devices d";
    where.scope("d.tenant_id", filter.tenant_id);
    if (!filter.product_id.empty()) where.add("d.product_id = ?", {text_param(filter.product_id)});
    if (!filter.product_type.empty()) {
      from += " JOIN products p ON p.id = d.product_id";
      where.add("p.type = ?", {text_param(filter.product_type)});
    }
    if (!filter.merchant_id.empty())
      where.add("d.merchant_id = ?", {text_param(filter.merchant_id)});
    if (!filter.outlet_id.empty()) where.add("d.outlet_id = ?", {text_param(filter.outlet_id)});
    if (!filter.serial.empty()) where.add("d.serial = ?", {text_param(filter.serial)});
    if (!filter.serial_prefix.empty()) {
      // substr, not LIKE: SQLite's LIKE ignores ASCII case and both need
      // escaping of % and _.
      where.add("substr(d.serial, 1, CAST(? AS INTEGER)) = ?",
                {int_param(utf8_length(filter.serial_prefix)), text_param(filter.serial_prefix)});
    }
    if (!filter.firmware_version.empty()) {
      where.add("d.firmware_version = ?", {text_param(filter.firmware_version)});
    }
    if (!filter.labels.empty()) {
      if (dialect_ == Dialect::kPostgres) {
        where.add("d.labels @> ?::jsonb", {text_param(labels_to_json(filter.labels))});
      } else {
        for (const auto& [key, value] : filter.labels) {
          if (key.find('"') != std::string::npos) {
            return Status{Code::kInvalid, "label keys in filters cannot contain '\"'"};
          }
          where.add("json_extract(d.labels, ?) = ?",
                    {text_param("$.\"" + key + "\""), text_param(value)});
        }
      }
    }
    if (filter.online) where.add("d.online = ?", {bool_param(*filter.online)});
    if (filter.disabled) where.add("d.disabled = ?", {bool_param(*filter.disabled)});
    return page_of<Device>(std::string("SELECT ") + kDeviceColumns + from, std::move(where), "d.id",
                           page, device_from);
  }

  Result<int64_t> count_devices(const std::string& tenant_id) override {
    Where where;
    where.scope("tenant_id", tenant_id);
    int64_t count = 0;
    auto status = read([&](Session& session) {
      ExecResult result;
      auto s = session.exec("SELECT COUNT(*) FROM devices" + where.sql(), where.params(), result);
      if (s.ok()) count = result.rows.empty() ? 0 : to_int(result.rows[0][0]);
      return s;
    });
    if (!status.ok()) return status;
    return count;
  }

  // ---- Presence ----

  Status record_presence(const PresenceEvent& e) override {
    return write([&](Session& session) {
      ExecResult result;
      // The row is read (and on PostgreSQL locked) first: whether this
      // event flips the online state decides whether a device.online /
      // device.offline Event is appended, and no other transaction may flip
      // it in between.
      auto status = session.exec(
          dialect_ == Dialect::kPostgres
              ? "SELECT tenant_id, online, gateway_node FROM devices WHERE id = ? FOR UPDATE"
              : "SELECT tenant_id, online, gateway_node FROM devices WHERE id = ?",
          {text_param(e.device_id)}, result);
      if (!status.ok()) return status;
      if (result.rows.empty()) {
        return Status{Code::kNotFound, "device " + e.device_id + " not found"};
      }
      const std::string tenant_id = to_text(result.rows[0][0]);
      const bool was_online = to_bool(result.rows[0][1]);
      // An offline event changes the current state only if it comes from
      // the node the device is online at: a late disconnect from node A
      // must not mark offline a device that has already moved to node B
      // (it still goes into the history).
      const bool applies = e.online || !was_online || to_text(result.rows[0][2]) == e.gateway_node;
      const bool flips = applies && was_online != e.online;
      if (applies) {
        // since_ms moves only when the state flips: a reconnect that takes
        // over a live session keeps "online since" of the first connect.
        status = session.exec(
            "UPDATE devices SET "
            "presence_since_ms = CASE WHEN online = ? THEN presence_since_ms ELSE ? END, "
            "online = ?, remote_address = ?, protocol_version = ?, gateway_node = ?, "
            "last_seen_ms = CASE WHEN last_seen_ms < ? THEN ? ELSE last_seen_ms END "
            "WHERE id = ?",
            {bool_param(e.online), int_param(e.at_ms), bool_param(e.online),
             text_param(e.remote_address), text_param(e.protocol_version),
             text_param(e.gateway_node), int_param(e.at_ms), int_param(e.at_ms),
             text_param(e.device_id)},
            result);
        if (!status.ok()) return status;
      }
      status = session.exec(
          "INSERT INTO presence_events(device_id, online, at_ms, remote_address, "
          "protocol_version, gateway_node, reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
          {text_param(e.device_id), bool_param(e.online), int_param(e.at_ms),
           text_param(e.remote_address), text_param(e.protocol_version), text_param(e.gateway_node),
           text_param(e.reason)},
          result);
      if (!status.ok() || !flips) return status;
      // The event order lock comes after the device row (see kEventOrderLock).
      if (status = lock_event_order(session); !status.ok()) return status;
      Event event;
      event.tenant_id = tenant_id;
      event.type = e.online ? "device.online" : "device.offline";
      event.subject_id = e.device_id;
      event.device_id = e.device_id;
      event.at_ms = e.at_ms;
      event.data_json = presence_event_json(e.device_id, e.online, e.remote_address,
                                            e.protocol_version, e.gateway_node, e.reason);
      int64_t seq = 0;
      return insert_event(session, event, seq);
    });
  }

  Result<Listing<PresenceEvent>> list_presence(const std::string& tenant_id,
                                               const std::string& device_id,
                                               const Page& page) override {
    std::optional<int64_t> before_seq;
    if (!page.after_id.empty()) {
      int64_t seq = 0;
      const char* end = page.after_id.data() + page.after_id.size();
      auto [ptr, error] = std::from_chars(page.after_id.data(), end, seq);
      if (error != std::errc() || ptr != end) {
        return Status{Code::kInvalid, "presence page token '" + page.after_id + "' is not a seq"};
      }
      before_seq = seq;
    }
    const int32_t limit = std::clamp(page.limit, 1, kMaxPageLimit);
    Listing<PresenceEvent> listing;
    auto status = read([&](Session& session) {
      Where owner;
      owner.add("id = ?", {text_param(device_id)});
      owner.scope("tenant_id", tenant_id);
      ExecResult result;
      auto s = session.exec("SELECT id FROM devices" + owner.sql(), owner.params(), result);
      if (!s.ok()) return s;
      if (result.rows.empty()) return Status{Code::kNotFound, "device " + device_id + " not found"};
      Where where;
      where.add("device_id = ?", {text_param(device_id)});
      if (before_seq) where.add("seq < ?", {int_param(*before_seq)});
      auto params = where.params();
      params.push_back(int_param(limit + 1));
      s = session.exec(std::string("SELECT ") + kPresenceColumns + " FROM presence_events" +
                           where.sql() + " ORDER BY seq DESC LIMIT ?",
                       params, result);
      if (s.ok()) listing = to_listing<PresenceEvent>(result.rows, limit, presence_from);
      return s;
    });
    if (!status.ok()) return status;
    return listing;
  }

  // Appends a device.offline Event per device taken offline, like
  // record_presence does for a flip.
  Status reset_presence(const std::string& gateway_node, TimeMs at_ms) override {
    return write([&](Session& session) {
      ExecResult result;
      // History first, while the rows still say who was online.
      auto status = session.exec(
          "INSERT INTO presence_events(device_id, online, at_ms, remote_address, "
          "protocol_version, gateway_node, reason) "
          "SELECT id, FALSE, CAST(? AS BIGINT), remote_address, protocol_version, gateway_node, "
          "'gateway_reset' FROM devices WHERE online = TRUE AND gateway_node = ? ORDER BY id",
          {int_param(at_ms), text_param(gateway_node)}, result);
      if (!status.ok()) return status;
      status = session.exec(
          "UPDATE devices SET online = FALSE, presence_since_ms = ? "
          "WHERE online = TRUE AND gateway_node = ? "
          "RETURNING id, tenant_id, remote_address, protocol_version",
          {int_param(at_ms), text_param(gateway_node)}, result);
      if (!status.ok() || result.rows.empty()) return status;
      // The UPDATE holds the device rows; the event order lock comes after
      // them, the same order as in record_presence.
      if (status = lock_event_order(session); !status.ok()) return status;
      std::sort(result.rows.begin(), result.rows.end());
      for (const auto& row : result.rows) {
        Event event;
        event.device_id = event.subject_id = to_text(row[0]);
        event.tenant_id = to_text(row[1]);
        event.type = "device.offline";
        event.at_ms = at_ms;
        event.data_json = presence_event_json(event.device_id, false, to_text(row[2]),
                                              to_text(row[3]), gateway_node, "gateway_reset");
        int64_t seq = 0;
        if (status = insert_event(session, event, seq); !status.ok()) return status;
      }
      return Status::Ok();
    });
  }

  // ---- Idempotency ----

  Result<std::optional<IdempotencyRecord>> begin_idempotent(const IdempotencyRecord& r) override {
    std::optional<IdempotencyRecord> existing;
    auto status = write([&](Session& session) {
      existing.reset();
      ExecResult result;
      // ON CONFLICT DO NOTHING makes a concurrent second caller wait for the
      // first one's commit and then insert nothing: exactly one caller wins.
      auto s =
          session.exec(std::string("INSERT INTO idempotency(") + kIdempotencyColumns +
                           ") VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                       {text_param(r.scope), text_param(r.key), text_param(r.request_hash),
                        bool_param(false), int_param(0), text_param(""), int_param(r.created_ms)},
                       result);
      if (!s.ok() || result.affected == 1) return s;
      s = session.exec(std::string("SELECT ") + kIdempotencyColumns +
                           " FROM idempotency WHERE scope = ? AND key = ?",
                       {text_param(r.scope), text_param(r.key)}, result);
      if (!s.ok()) return s;
      if (result.rows.empty()) {
        // Only if the winner's row vanished in between (abandoned): retryable.
        return Status{Code::kUnavailable, "idempotency record changed concurrently; retry"};
      }
      existing = idempotency_from(result.rows[0]);
      return s;
    });
    if (!status.ok()) return status;
    return existing;
  }

  Status complete_idempotent(const std::string& scope, const std::string& key, int32_t http_status,
                             const std::string& response_body) override {
    return update_one(
        "UPDATE idempotency SET completed = ?, http_status = ?, response_body = ? "
        "WHERE scope = ? AND key = ?",
        {bool_param(true), int_param(http_status), text_param(response_body), text_param(scope),
         text_param(key)},
        "idempotency record " + key);
  }

  Status abandon_idempotent(const std::string& scope, const std::string& key) override {
    // Completed answers stay: a retry must replay them, not run again.
    return update_one("DELETE FROM idempotency WHERE scope = ? AND key = ? AND completed = ?",
                      {text_param(scope), text_param(key), bool_param(false)},
                      "in-flight idempotency record " + key);
  }

  Result<int64_t> expire_idempotent(TimeMs before_ms) override {
    int64_t deleted = 0;
    auto status = write([&](Session& session) {
      ExecResult result;
      auto s = session.exec("DELETE FROM idempotency WHERE created_ms < ?", {int_param(before_ms)},
                            result);
      deleted = result.affected;
      return s;
    });
    if (!status.ok()) return status;
    return deleted;
  }

  // ---- Commands and the event log ----

  Result<std::vector<WriteOutcome>> apply_writes(const std::vector<Write>& writes) override {
    std::vector<WriteOutcome> outcomes;
    if (writes.empty()) return outcomes;
    auto status = write([&](Session& session) {
      outcomes.assign(writes.size(), WriteOutcome{});
      return dialect_ == Dialect::kPostgres ? apply_grouped(session, writes, outcomes)
                                            : apply_each(session, writes, outcomes);
    });
    if (!status.ok()) return status;
    return outcomes;
  }

  Result<Command> get_command(const std::string& tenant_id, const std::string& id) override {
    Where where;
    where.add("id = ?", {text_param(id)});
    where.scope("tenant_id", tenant_id);
    return one<Command>(std::string("SELECT ") + kCommandColumns + " FROM commands", where,
                        command_from, "command " + id);
  }

  Result<Listing<Command>> list_commands(const CommandFilter& filter, const Page& page) override {
    std::optional<int64_t> after;
    if (auto s = parse_number_token(page.after_id, "command", after); !s.ok()) return s;
    Where where;
    where.scope("tenant_id", filter.tenant_id);
    if (!filter.device_id.empty()) where.add("device_id = ?", {text_param(filter.device_id)});
    if (!filter.type.empty()) where.add("type = ?", {text_param(filter.type)});
    if (!filter.states.empty()) {
      where.add("state IN " + placeholders(filter.states.size()), text_params(filter.states));
    }
    if (after) where.add("seq > ?", {int_param(*after)});
    return ordered_page<Command>(std::string("SELECT ") + kCommandColumns + " FROM commands",
                                 std::move(where), "seq", page.limit, command_from);
  }

  Result<std::vector<Command>> pending_commands(const std::string& device_id,
                                                int32_t limit) override {
    return rows_of<Command>(
        std::string("SELECT ") + kCommandColumns + pending_from() + " ORDER BY seq LIMIT ?",
        {text_param(device_id), int_param(std::clamp(limit, 1, kMaxPageLimit))}, command_from);
  }

  Result<int64_t> count_pending_commands(const std::string& device_id) override {
    int64_t count = 0;
    auto status = read([&](Session& session) {
      ExecResult result;
      auto s = session.exec("SELECT COUNT(*)" + pending_from(), {text_param(device_id)}, result);
      if (s.ok()) count = result.rows.empty() ? 0 : to_int(result.rows[0][0]);
      return s;
    });
    if (!status.ok()) return status;
    return count;
  }

  Result<std::vector<Command>> expired_commands(TimeMs now_ms, int32_t limit) override {
    return rows_of<Command>(std::string("SELECT ") + kCommandColumns +
                                " FROM commands WHERE state IN " + kNonFinalStates +
                                " AND expires_at_ms > 0 AND expires_at_ms <= ? "
                                "ORDER BY expires_at_ms, seq LIMIT ?",
                            {int_param(now_ms), int_param(std::clamp(limit, 1, kMaxPageLimit))},
                            command_from);
  }

  Result<std::vector<Event>> subject_events(const std::string& tenant_id,
                                            const std::string& subject_id) override {
    Where where;
    where.add("subject_id = ?", {text_param(subject_id)});
    where.scope("tenant_id", tenant_id);
    return rows_of<Event>(
        std::string("SELECT ") + kLogEventColumns + " FROM events" + where.sql() + " ORDER BY seq",
        std::move(where.params()), log_event_from);
  }

  Result<std::vector<Event>> list_events(const std::string& tenant_id, int64_t after_seq,
                                         int32_t limit) override {
    Where where;
    where.add("seq > ?", {int_param(after_seq)});
    where.scope("tenant_id", tenant_id);
    auto params = std::move(where.params());
    params.push_back(int_param(std::clamp(limit, 1, kMaxPageLimit)));
    return rows_of<Event>(std::string("SELECT ") + kLogEventColumns + " FROM events" + where.sql() +
                              " ORDER BY seq LIMIT ?",
                          std::move(params), log_event_from);
  }

  Result<Event> get_event(const std::string& tenant_id, int64_t seq) override {
    Where where;
    where.add("seq = ?", {int_param(seq)});
    where.scope("tenant_id", tenant_id);
    return one<Event>(std::string("SELECT ") + kLogEventColumns + " FROM events", where,
                      log_event_from, "event " + std::to_string(seq));
  }

  // Also deletes finished scans created before `before_ms` and webhook
  // deliveries that are no longer pending, with their attempts, last
  // updated before it. One transaction.
  Result<int64_t> purge_history(TimeMs before_ms) override {
    static const std::string kPurges[] = {
        "DELETE FROM events WHERE at_ms < ?",
        std::string("DELETE FROM commands WHERE state IN ") + kFinalStates + " AND updated_ms < ?",
        "DELETE FROM scans WHERE state <> 'pending' AND created_ms < ?",
        // Attempts explicitly, not by cascade: so they are counted.
        "DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM webhook_deliveries "
        "WHERE state <> 'pending' AND updated_ms < ?)",
        "DELETE FROM webhook_deliveries WHERE state <> 'pending' AND updated_ms < ?",
    };
    int64_t deleted = 0;
    auto status = write([&](Session& session) {
      deleted = 0;
      ExecResult result;
      for (const auto& sql : kPurges) {
        auto s = session.exec(sql, {int_param(before_ms)}, result);
        if (!s.ok()) return s;
        deleted += result.affected;
      }
      return Status::Ok();
    });
    if (!status.ok()) return status;
    return deleted;
  }

  // ---- Webhooks ----

  Status create_webhook(const WebhookEndpoint& w) override {
    return insert_new(std::string("INSERT INTO webhook_endpoints(") + kWebhookColumns +
                          ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                      {text_param(w.id), text_param(w.tenant_id), text_param(w.url),
                       text_param(w.description), text_param(strings_to_json(w.event_types)),
                       blob_param(w.secret_sealed), bool_param(w.disabled), int_param(w.cursor_seq),
                       int_param(w.created_ms), int_param(w.updated_ms)},
                      "webhook " + w.id);
  }

  Result<WebhookEndpoint> get_webhook(const std::string& tenant_id,
                                      const std::string& id) override {
    Where where;
    where.add("id = ?", {text_param(id)});
    where.scope("tenant_id", tenant_id);
    return one<WebhookEndpoint>(
        std::string("SELECT ") + kWebhookColumns + " FROM webhook_endpoints", where, webhook_from,
        "webhook " + id);
  }

  Status update_webhook(const WebhookEndpoint& w) override {
    Where where;
    where.add("id = ?", {text_param(w.id)});
    where.scope("tenant_id", w.tenant_id);
    std::vector<Param> params{text_param(w.url),
                              text_param(w.description),
                              text_param(strings_to_json(w.event_types)),
                              blob_param(w.secret_sealed),
                              bool_param(w.disabled),
                              int_param(w.updated_ms)};
    for (auto& p : where.params())
      params.push_back(std::move(p));
    return update_one(
        "UPDATE webhook_endpoints SET url = ?, description = ?, event_types = ?, "
        "secret_sealed = ?, disabled = ?, updated_ms = ?" +
            where.sql(),
        std::move(params), "webhook " + w.id);
  }

  Status delete_webhook(const std::string& tenant_id, const std::string& id) override {
    // Its deliveries and their attempts go with it (ON DELETE CASCADE).
    Where where;
    where.add("id = ?", {text_param(id)});
    where.scope("tenant_id", tenant_id);
    return update_one("DELETE FROM webhook_endpoints" + where.sql(), std::move(where.params()),
                      "webhook " + id);
  }

  Result<Listing<WebhookEndpoint>> list_webhooks(const std::string& tenant_id,
                                                 const Page& page) override {
    Where where;
    where.scope("tenant_id", tenant_id);
    return page_of<WebhookEndpoint>(
        std::string("SELECT ") + kWebhookColumns + " FROM webhook_endpoints", std::move(where),
        "id", page, webhook_from);
  }

  // kNotFound if the endpoint is gone. The deliveries take the endpoint's
  // id and tenant, whatever their own fields say.
  Status enqueue_webhook_deliveries(const std::string& endpoint_id, int64_t expected_cursor,
                                    int64_t cursor_seq,
                                    const std::vector<WebhookDelivery>& deliveries) override {
    return write([&](Session& session) {
      ExecResult result;
      auto s = session.exec(
          "UPDATE webhook_endpoints SET cursor_seq = ? WHERE id = ? AND cursor_seq = ? "
          "RETURNING tenant_id",
          {int_param(cursor_seq), text_param(endpoint_id), int_param(expected_cursor)}, result);
      if (!s.ok()) return s;
      if (result.rows.empty()) {
        s = session.exec("SELECT cursor_seq FROM webhook_endpoints WHERE id = ?",
                         {text_param(endpoint_id)}, result);
        if (!s.ok()) return s;
        if (result.rows.empty())
          return Status{Code::kNotFound, "webhook " + endpoint_id + " not found"};
        return Status{Code::kConflict, "webhook " + endpoint_id + " cursor is at " +
                                           to_text(result.rows[0][0]) + ", not " +
                                           std::to_string(expected_cursor)};
      }
      const std::string tenant_id = to_text(result.rows[0][0]);
      for (const auto& d : deliveries) {
        s = session.exec(
            "INSERT INTO webhook_deliveries(endpoint_id, tenant_id, event_seq, event_type, state, "
            "attempts, next_attempt_ms, last_attempt_ms, last_status_code, last_error, "
            "created_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            {text_param(endpoint_id), text_param(tenant_id), int_param(d.event_seq),
             text_param(storable_copy(d.event_type)),
             text_param(d.state.empty() ? "pending" : d.state), int_param(d.attempts),
             int_param(d.next_attempt_ms), int_param(d.last_attempt_ms),
             int_param(d.last_status_code), text_param(storable_copy(d.last_error)),
             int_param(d.created_ms), int_param(d.updated_ms != 0 ? d.updated_ms : d.created_ms)},
            result);
        if (!s.ok())
          return with_context(std::move(s), "delivery of event " + std::to_string(d.event_seq));
      }
      return Status::Ok();
    });
  }

  Result<std::vector<WebhookDelivery>> due_webhook_deliveries(TimeMs now_ms,
                                                              int32_t limit) override {
    return rows_of<WebhookDelivery>(
        std::string("SELECT ") + kDeliveryColumns +
            " FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_ms <= ? "
            "ORDER BY next_attempt_ms, id LIMIT ?",
        {int_param(now_ms), int_param(std::clamp(limit, 1, kMaxPageLimit))}, delivery_from);
  }

  // By delivery.id alone (the dispatcher works across tenants). updated_ms
  // is delivery.updated_ms, or attempt.at_ms when that is 0. kNotFound for
  // an unknown delivery, kConflict if that attempt number is recorded
  // already (nothing is written then).
  Status record_webhook_attempt(const WebhookDelivery& d, const WebhookAttempt& a) override {
    return write([&](Session& session) {
      ExecResult result;
      auto s = session.exec(
          "UPDATE webhook_deliveries SET state = ?, attempts = ?, next_attempt_ms = ?, "
          "last_attempt_ms = ?, last_status_code = ?, last_error = ?, updated_ms = ? WHERE id = ?",
          {text_param(d.state), int_param(d.attempts), int_param(d.next_attempt_ms),
           int_param(d.last_attempt_ms), int_param(d.last_status_code),
           text_param(storable_copy(d.last_error)),
           int_param(d.updated_ms != 0 ? d.updated_ms : a.at_ms), int_param(d.id)},
          result);
      if (!s.ok()) return s;
      const std::string what = "webhook delivery " + std::to_string(d.id);
      if (result.affected == 0) return Status{Code::kNotFound, what + " not found"};
      s = session.exec(
          std::string("INSERT INTO webhook_attempts(") + kAttemptColumns +
              ") VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
          {int_param(d.id), int_param(a.attempt), int_param(a.at_ms), int_param(a.status_code),
           int_param(a.duration_ms), text_param(storable_copy(a.error))},
          result);
      if (!s.ok()) return s;
      if (result.affected == 0) {
        return Status{Code::kConflict,
                      "attempt " + std::to_string(a.attempt) + " of " + what + " already exists"};
      }
      return Status::Ok();
    });
  }

  Result<WebhookDelivery> get_webhook_delivery(const std::string& tenant_id, int64_t id) override {
    Where where;
    where.add("id = ?", {int_param(id)});
    where.scope("tenant_id", tenant_id);
    return one<WebhookDelivery>(
        std::string("SELECT ") + kDeliveryColumns + " FROM webhook_deliveries", where,
        delivery_from, "webhook delivery " + std::to_string(id));
  }

  Result<Listing<WebhookDelivery>> list_webhook_deliveries(const std::string& tenant_id,
                                                           const std::string& endpoint_id,
                                                           const Page& page) override {
    std::optional<int64_t> before;
    if (auto s = parse_number_token(page.after_id, "webhook delivery", before); !s.ok()) return s;
    Where where;
    where.scope("tenant_id", tenant_id);
    if (!endpoint_id.empty()) where.add("endpoint_id = ?", {text_param(endpoint_id)});
    if (before) where.add("id < ?", {int_param(*before)});
    return ordered_page<WebhookDelivery>(
        std::string("SELECT ") + kDeliveryColumns + " FROM webhook_deliveries", std::move(where),
        "id DESC", page.limit, delivery_from);
  }

  // Oldest attempt first; kNotFound if the delivery is not the tenant's.
  Result<std::vector<WebhookAttempt>> list_webhook_attempts(const std::string& tenant_id,
                                                            int64_t delivery_id) override {
    std::vector<WebhookAttempt> attempts;
    auto status = read([&](Session& session) {
      attempts.clear();
      Where owner;
      owner.add("id = ?", {int_param(delivery_id)});
      owner.scope("tenant_id", tenant_id);
      ExecResult result;
      auto s =
          session.exec("SELECT id FROM webhook_deliveries" + owner.sql(), owner.params(), result);
      if (!s.ok()) return s;
      if (result.rows.empty()) {
        return Status{Code::kNotFound,
                      "webhook delivery " + std::to_string(delivery_id) + " not found"};
      }
      s = session.exec(std::string("SELECT ") + kAttemptColumns +
                           " FROM webhook_attempts WHERE delivery_id = ? ORDER BY attempt",
                       {int_param(delivery_id)}, result);
      if (!s.ok()) return s;
      for (const auto& row : result.rows)
        attempts.push_back(attempt_from(row));
      return s;
    });
    if (!status.ok()) return status;
    return attempts;
  }

  // Keeps attempts and the last attempt's fields (the delivery log).
  Status reschedule_webhook_delivery(const std::string& tenant_id, int64_t id,
                                     TimeMs at_ms) override {
    Where where;
    where.add("id = ?", {int_param(id)});
    where.scope("tenant_id", tenant_id);
    std::vector<Param> params{int_param(at_ms)};
    for (auto& p : where.params())
      params.push_back(std::move(p));
    return update_one(
        "UPDATE webhook_deliveries SET state = 'pending', next_attempt_ms = ?" + where.sql(),
        std::move(params), "webhook delivery " + std::to_string(id));
  }

  // ---- Scans ----

  Status create_scan(const Scan& scan, TimeMs duplicate_since_ms, Scan* existing) override {
    const std::string select = std::string("SELECT ") + kScanColumns + " FROM scans WHERE ";
    return write([&](Session& session) {
      ExecResult result;
      Status s;
      if (dialect_ == Dialect::kPostgres) {
        s = session.exec(kScanDeviceLock, {text_param(scan.device_id)}, result);
        if (!s.ok()) return s;
      }
      auto duplicate = [&](const char* why) {
        if (existing != nullptr) *existing = scan_from(result.rows[0]);
        return Status{Code::kConflict, "scan " + scan.id + " duplicates scan " +
                                           to_text(result.rows[0][0]) + " (" + why + ")"};
      };
      if (!scan.box_scan_id.empty()) {
        s = session.exec(select + "device_id = ? AND box_scan_id = ?",
                         {text_param(scan.device_id), text_param(scan.box_scan_id)}, result);
        if (!s.ok()) return s;
        if (!result.rows.empty()) return duplicate("same box scan id");
      }
      if (!scan.code_hash.empty()) {
        s = session.exec(
            select +
                "device_id = ? AND code_hash = ? AND created_ms >= ? "
                "ORDER BY created_ms DESC, id DESC LIMIT 1",
            {text_param(scan.device_id), text_param(scan.code_hash), int_param(duplicate_since_ms)},
            result);
        if (!s.ok()) return s;
        if (!result.rows.empty()) return duplicate("same code within the window");
      }
      s = session.exec(
          std::string("INSERT INTO scans(") + kScanColumns +
              ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
          {text_param(scan.id), text_param(scan.tenant_id), text_param(scan.device_id),
           text_param(scan.box_scan_id), text_param(scan.code), text_param(scan.code_hash),
           int_param(scan.amount_fen), text_param(scan.state.empty() ? "pending" : scan.state),
           text_param(scan.outcome), text_param(scan.display), text_param(scan.voice),
           text_param(scan.result_command_id), int_param(scan.created_ms),
           int_param(scan.deadline_ms), int_param(scan.answered_ms)},
          result);
      if (!s.ok()) return with_context(std::move(s), "scan " + scan.id);
      if (result.affected == 1) return Status::Ok();
      // The id itself is taken; another tenant's row is not shown.
      s = session.exec(select + "id = ?", {text_param(scan.id)}, result);
      if (!s.ok()) return s;
      if (!result.rows.empty() && to_text(result.rows[0][1]) == scan.tenant_id) {
        return duplicate("same id");
      }
      return Status{Code::kConflict, "scan " + scan.id + " already exists"};
    });
  }

  Result<Scan> get_scan(const std::string& tenant_id, const std::string& id) override {
    Where where;
    where.add("id = ?", {text_param(id)});
    where.scope("tenant_id", tenant_id);
    return one<Scan>(std::string("SELECT ") + kScanColumns + " FROM scans", where, scan_from,
                     "scan " + id);
  }

  // kInvalid unless scan.state is answered or timed_out. Scoped by
  // scan.tenant_id ("" = any tenant).
  Status finish_scan(const Scan& scan, Scan* current) override {
    if (scan.state != "answered" && scan.state != "timed_out") {
      return {Code::kInvalid, "a scan finishes as answered or timed_out, not '" + scan.state + "'"};
    }
    Where where;
    where.add("id = ?", {text_param(scan.id)});
    where.scope("tenant_id", scan.tenant_id);
    return write([&](Session& session) {
      std::vector<Param> params{
          text_param(scan.state), text_param(scan.outcome),           text_param(scan.display),
          text_param(scan.voice), text_param(scan.result_command_id), int_param(scan.answered_ms)};
      for (const auto& p : where.params())
        params.push_back(p);
      ExecResult result;
      auto s = session.exec(
          "UPDATE scans SET state = ?, outcome = ?, display = ?, voice = ?, "
          "result_command_id = ?, answered_ms = ?" +
              where.sql() + " AND state = 'pending'",
          params, result);
      if (!s.ok()) return with_context(std::move(s), "scan " + scan.id);
      if (result.affected == 1) return Status::Ok();
      s = session.exec(std::string("SELECT ") + kScanColumns + " FROM scans" + where.sql(),
                       where.params(), result);
      if (!s.ok()) return s;
      if (result.rows.empty()) return Status{Code::kNotFound, "scan " + scan.id + " not found"};
      if (current != nullptr) *current = scan_from(result.rows[0]);
      return Status{Code::kConflict,
                    "scan " + scan.id + " is " + to_text(result.rows[0][7]) + ", not pending"};
    });
  }

  // Most overdue first.
  Result<std::vector<Scan>> overdue_scans(TimeMs now_ms, int32_t limit) override {
    return rows_of<Scan>(std::string("SELECT ") + kScanColumns +
                             " FROM scans WHERE state = 'pending' AND deadline_ms <= ? "
                             "ORDER BY deadline_ms, id LIMIT ?",
                         {int_param(now_ms), int_param(std::clamp(limit, 1, kMaxPageLimit))},
                         scan_from);
  }

  Result<Listing<Scan>> list_scans(const std::string& tenant_id, const std::string& device_id,
                                   const Page& page) override {
    Where where;
    where.scope("tenant_id", tenant_id);
    if (!device_id.empty()) where.add("device_id = ?", {text_param(device_id)});
    if (!page.after_id.empty()) where.add("id < ?", {text_param(page.after_id)});
    return ordered_page<Scan>(std::string("SELECT ") + kScanColumns + " FROM scans",
                              std::move(where), "id DESC", page.limit, scan_from);
  }

 private:
  Status read(const TransactionBody& body) { return database_->transact(Access::kRead, body); }
  Status write(const TransactionBody& body) { return database_->transact(Access::kWrite, body); }

  // ---- apply_writes ----
  //
  // The helpers return a database failure (fails the batch) or Ok with
  // each write's own outcome in `outcomes`.

  // Writes the store refuses as kInvalid without a statement (see
  // storable_text for why up front).
  static bool valid_write(const Write& w) {
    if (!w.event.type.empty() && !storable_event(w.event)) return false;
    switch (w.kind) {
      case Write::Kind::kCreateCommand: {
        const Command& c = w.command;
        return !c.id.empty() && !c.device_id.empty() && !c.state.empty() &&
               storable({c.id, c.tenant_id, c.device_id, c.type, c.state, c.dedup_key,
                         c.payload_json, c.request_json, c.code, c.detail, c.request_id});
      }
      case Write::Kind::kTransition: {
        const Transition& t = w.transition;
        return !t.command_id.empty() && !t.to_state.empty() &&
               storable({t.command_id, t.to_state, t.code, t.detail}) &&
               std::all_of(t.from_states.begin(), t.from_states.end(), storable_text);
      }
      case Write::Kind::kAppendEvent:
        return !w.event.type.empty();
    }
    return false;
  }

  static const std::string& command_insert_head() {
    static const std::string kHead =
        "INSERT INTO commands(id, tenant_id, device_id, type, state, dedup_key, payload, "
        "request, created_ms, updated_ms, expires_at_ms, attempts, code, detail, request_id) "
        "VALUES ";
    return kHead;
  }

  static void append_command_params(const Command& c, std::vector<Param>& params) {
    params.push_back(text_param(c.id));
    params.push_back(text_param(c.tenant_id));
    params.push_back(text_param(c.device_id));
    params.push_back(text_param(c.type));
    params.push_back(text_param(c.state));
    params.push_back(optional_text_param(c.dedup_key));
    params.push_back(text_param(c.payload_json));
    params.push_back(text_param(c.request_json));
    params.push_back(int_param(c.created_ms));
    params.push_back(int_param(c.updated_ms));
    params.push_back(int_param(c.expires_at_ms));
    params.push_back(int_param(c.attempts));
    params.push_back(text_param(c.code));
    params.push_back(text_param(c.detail));
    params.push_back(text_param(c.request_id));
  }

  // A create inserted nothing: its id or (device_id, dedup_key) is taken.
  // The outcome names the holder.
  static Status create_refused(Session& session, const Command& c, WriteOutcome& outcome) {
    outcome.code = Code::kConflict;
    ExecResult result;
    auto status = session.exec("SELECT id, state, seq FROM commands WHERE id = ?",
                               {text_param(c.id)}, result);
    if (!status.ok()) return status;
    if (result.rows.empty() && !c.dedup_key.empty()) {
      status =
          session.exec("SELECT id, state, seq FROM commands WHERE device_id = ? AND dedup_key = ?",
                       {text_param(c.device_id), text_param(c.dedup_key)}, result);
      if (!status.ok()) return status;
    }
    if (!result.rows.empty()) {
      outcome.existing_id = to_text(result.rows[0][0]);
      outcome.state = to_text(result.rows[0][1]);
      outcome.command_seq = to_int(result.rows[0][2]);
    }
    return Status::Ok();
  }

  // A transition's guard did not hold, or there is no such command.
  static Status transition_refused(Session& session, const std::string& id, WriteOutcome& outcome) {
    ExecResult result;
    auto status = session.exec("SELECT state FROM commands WHERE id = ?", {text_param(id)}, result);
    if (!status.ok()) return status;
    if (result.rows.empty()) {
      outcome.code = Code::kNotFound;
    } else {
      outcome.code = Code::kConflict;
      outcome.state = to_text(result.rows[0][0]);
    }
    return Status::Ok();
  }

  // SQLite: statement by statement (in-process, cached prepared statements;
  // a statement costs microseconds).
  Status apply_each(Session& session, const std::vector<Write>& writes,
                    std::vector<WriteOutcome>& outcomes) {
    const bool appends = std::any_of(writes.begin(), writes.end(),
                                     [](const Write& w) { return !w.event.type.empty(); });
    if (appends) {
      if (auto status = lock_event_order(session); !status.ok()) return status;
    }
    for (size_t i = 0; i < writes.size(); ++i) {
      const Write& w = writes[i];
      WriteOutcome& outcome = outcomes[i];
      Status status;
      if (!valid_write(w)) {
        outcome.code = Code::kInvalid;
      } else if (w.kind == Write::Kind::kCreateCommand) {
        status = create_command(session, w, outcome);
      } else if (w.kind == Write::Kind::kTransition) {
        status = transition_command(session, w, outcome);
      } else {
        status = insert_event(session, w.event, outcome.event_seq);
      }
      if (!status.ok()) return with_context(std::move(status), "write " + std::to_string(i));
    }
    return Status::Ok();
  }

  Status create_command(Session& session, const Write& w, WriteOutcome& outcome) {
    const Command& c = w.command;
    // ON CONFLICT DO NOTHING: a taken id or (device_id, dedup_key) inserts
    // nothing and, unlike a unique violation, keeps a PostgreSQL
    // transaction usable for the rest of the batch.
    static const std::string kInsert = command_insert_head() +
                                       "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                                       "ON CONFLICT DO NOTHING RETURNING seq";
    std::vector<Param> params;
    params.reserve(15);
    append_command_params(c, params);
    ExecResult result;
    auto status = session.exec(kInsert, params, result);
    if (!status.ok()) return status;
    if (result.rows.empty()) return create_refused(session, c, outcome);
    outcome.command_seq = to_int(result.rows[0][0]);
    outcome.state = c.state;
    if (w.event.type.empty()) return Status::Ok();
    Event event = w.event;
    fill_event(event, c.tenant_id, c.id, c.device_id, c.created_ms);
    return insert_event(session, event, outcome.event_seq);
  }

  Status transition_command(Session& session, const Write& w, WriteOutcome& outcome) {
    const Transition& t = w.transition;
    std::vector<Param> params{text_param(t.to_state),      int_param(t.at_ms),
                              text_param(t.code),          text_param(t.detail),
                              int_param(t.attempts_delta), text_param(t.command_id)};
    for (const auto& state : t.from_states)
      params.push_back(text_param(state));
    ExecResult result;
    auto status = session.exec(transition_sql(t.from_states.size()), params, result);
    if (!status.ok()) return status;
    if (result.rows.empty()) return transition_refused(session, t.command_id, outcome);
    outcome.state = t.to_state;
    outcome.command_seq = to_int(result.rows[0][2]);
    if (w.event.type.empty()) return Status::Ok();
    Event event = w.event;
    fill_event(event, to_text(result.rows[0][0]), t.command_id, to_text(result.rows[0][1]),
               t.at_ms);
    return insert_event(session, event, outcome.event_seq);
  }

  // The guarded UPDATE for `from_count` listed states (0: the non-final
  // ones). The common counts are built once, so every transition of a shape
  // sends the same text and hits the connection's prepared statement.
  static const std::string& transition_sql(size_t from_count) {
    static const auto build = [](size_t count) {
      return std::string(
                 "UPDATE commands SET state = ?, updated_ms = ?, code = ?, detail = ?, "
                 "attempts = attempts + ? WHERE id = ? AND state IN ") +
             (count == 0 ? std::string(kNonFinalStates) : placeholders(count)) +
             " RETURNING tenant_id, device_id, seq";
    };
    static const std::vector<std::string> kCommon = [] {
      std::vector<std::string> sql;
      for (size_t count = 0; count <= 10; ++count)
        sql.push_back(build(count));
      return sql;
    }();
    if (from_count < kCommon.size()) return kCommon[from_count];
    thread_local std::string rare;
    rare = build(from_count);
    return rare;
  }

  // PostgreSQL: a statement costs a round trip to the server, which is what
  // limits a batch, so the batch goes as few multi-row statements: each run
  // of consecutive creates is one INSERT, each run of transitions one
  // UPDATE ... FROM (VALUES ...) (a run ends before a second transition of
  // the same command, which must see the first), and the events of every
  // write that applied one INSERT at the end, in write order. Appends and
  // refused writes do not touch commands, so they do not end a run. Rows of
  // a VALUES list are inserted, and take their seqs, in list order, so seqs
  // still follow write order. Outcomes equal apply_each's.
  Status apply_grouped(Session& session, const std::vector<Write>& writes,
                       std::vector<WriteOutcome>& outcomes) {
    std::vector<size_t> command_writes;
    std::vector<PendingEvent> events;
    for (size_t i = 0; i < writes.size(); ++i) {
      if (!valid_write(writes[i])) {
        outcomes[i].code = Code::kInvalid;
      } else if (writes[i].kind == Write::Kind::kAppendEvent) {
        events.push_back({i, writes[i].event});
      } else {
        command_writes.push_back(i);
      }
    }
    std::vector<size_t> run;
    std::set<std::string> run_commands;
    for (size_t k = 0; k < command_writes.size();) {
      const Write::Kind kind = writes[command_writes[k]].kind;
      run.clear();
      run_commands.clear();
      while (k < command_writes.size() && writes[command_writes[k]].kind == kind) {
        if (kind == Write::Kind::kTransition &&
            !run_commands.insert(writes[command_writes[k]].transition.command_id).second) {
          break;
        }
        run.push_back(command_writes[k++]);
      }
      auto status = kind == Write::Kind::kCreateCommand
                        ? create_run(session, writes, run, outcomes, events)
                        : transition_run(session, writes, run, outcomes, events);
      if (!status.ok()) return status;
    }
    if (events.empty()) return Status::Ok();
    std::sort(events.begin(), events.end(),
              [](const PendingEvent& a, const PendingEvent& b) { return a.write < b.write; });
    // Taken last, so concurrent batches serialize only for their event
    // inserts and commit. No lock is awaited while holding it: no deadlock
    // with the command rows this transaction already holds.
    if (auto status = lock_event_order(session); !status.ok()) return status;
    return insert_events(session, events, outcomes);
  }

  struct PendingEvent {
    size_t write;  // index of the write it belongs to
    Event event;
  };

  // Rows per multi-row statement: kPostgresBulkRows, halved for the tail.
  static size_t chunk_size(size_t left) {
    size_t chunk = kPostgresBulkRows;
    while (chunk > left)
      chunk /= 2;
    return chunk;
  }

  static Status create_run(Session& session, const std::vector<Write>& writes,
                           const std::vector<size_t>& run, std::vector<WriteOutcome>& outcomes,
                           std::vector<PendingEvent>& events) {
    std::vector<Param> params;
    ExecResult result;
    for (size_t done = 0; done < run.size();) {
      const size_t chunk = chunk_size(run.size() - done);
      std::string sql = command_insert_head();
      params.clear();
      params.reserve(chunk * 15);
      for (size_t i = 0; i < chunk; ++i) {
        sql += i == 0 ? "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                      : ", (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
        append_command_params(writes[run[done + i]].command, params);
      }
      sql += " ON CONFLICT DO NOTHING RETURNING id, dedup_key, seq";
      auto status = session.exec(sql, params, result);
      if (!status.ok()) return with_context(std::move(status), "command insert");
      // (id, dedup_key) -> seq of the rows inserted. Writes with equal keys
      // in one statement: the first one's row went in (list order).
      std::map<std::pair<std::string, std::string>, int64_t> inserted;
      for (const auto& row : result.rows)
        inserted.emplace(std::pair{to_text(row[0]), to_text(row[1])}, to_int(row[2]));
      for (size_t i = 0; i < chunk; ++i) {
        const size_t index = run[done + i];
        const Write& w = writes[index];
        const Command& c = w.command;
        auto it = inserted.find({c.id, c.dedup_key});
        if (it == inserted.end()) {
          status = create_refused(session, c, outcomes[index]);
          if (!status.ok()) return status;
          continue;
        }
        outcomes[index].command_seq = it->second;
        outcomes[index].state = c.state;
        inserted.erase(it);
        if (w.event.type.empty()) continue;
        PendingEvent pending{index, w.event};
        fill_event(pending.event, c.tenant_id, c.id, c.device_id, c.created_ms);
        events.push_back(std::move(pending));
      }
      done += chunk;
    }
    return Status::Ok();
  }

  // `run` names each command once.
  static Status transition_run(Session& session, const std::vector<Write>& writes,
                               const std::vector<size_t>& run, std::vector<WriteOutcome>& outcomes,
                               std::vector<PendingEvent>& events) {
    // from_states travel as a JSON array ('[]': the non-final states).
    constexpr const char* kRow =
        "(CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS BIGINT), CAST(? AS TEXT), "
        "CAST(? AS TEXT), CAST(? AS INTEGER), CAST(? AS TEXT))";
    std::vector<Param> params;
    ExecResult result;
    for (size_t done = 0; done < run.size();) {
      const size_t chunk = chunk_size(run.size() - done);
      std::string sql =
          "UPDATE commands AS c SET state = v.to_state, updated_ms = v.at_ms, code = v.code, "
          "detail = v.detail, attempts = c.attempts + v.delta FROM (VALUES ";
      params.clear();
      params.reserve(chunk * 7);
      for (size_t i = 0; i < chunk; ++i) {
        if (i > 0) sql += ", ";
        sql += kRow;
        const Transition& t = writes[run[done + i]].transition;
        params.push_back(text_param(t.command_id));
        params.push_back(text_param(t.to_state));
        params.push_back(int_param(t.at_ms));
        params.push_back(text_param(t.code));
        params.push_back(text_param(t.detail));
        params.push_back(int_param(t.attempts_delta));
        params.push_back(text_param(strings_to_json(t.from_states)));
      }
      sql += std::string(
                 ") AS v(id, to_state, at_ms, code, detail, delta, from_states) "
                 "WHERE c.id = v.id AND CASE WHEN v.from_states = '[]' THEN c.state IN ") +
             kNonFinalStates +
             " ELSE c.state IN (SELECT jsonb_array_elements_text(CAST(v.from_states AS jsonb)))"
             " END RETURNING c.id, c.tenant_id, c.device_id, c.seq";
      auto status = session.exec(sql, params, result);
      if (!status.ok()) return with_context(std::move(status), "command transitions");
      std::map<std::string, const Row*> applied;
      for (const auto& row : result.rows)
        applied.emplace(to_text(row[0]), &row);
      for (size_t i = 0; i < chunk; ++i) {
        const size_t index = run[done + i];
        const Write& w = writes[index];
        const Transition& t = w.transition;
        auto it = applied.find(t.command_id);
        if (it == applied.end()) {
          status = transition_refused(session, t.command_id, outcomes[index]);
          if (!status.ok()) return status;
          continue;
        }
        const Row& row = *it->second;
        outcomes[index].state = t.to_state;
        outcomes[index].command_seq = to_int(row[3]);
        if (w.event.type.empty()) continue;
        PendingEvent pending{index, w.event};
        fill_event(pending.event, to_text(row[1]), t.command_id, to_text(row[2]), t.at_ms);
        events.push_back(std::move(pending));
      }
      done += chunk;
    }
    return Status::Ok();
  }

  // `events` in write order; their seqs follow it.
  static Status insert_events(Session& session, const std::vector<PendingEvent>& events,
                              std::vector<WriteOutcome>& outcomes) {
    std::vector<Param> params;
    ExecResult result;
    for (size_t done = 0; done < events.size();) {
      const size_t chunk = chunk_size(events.size() - done);
      std::string sql =
          "INSERT INTO events(tenant_id, type, subject_id, device_id, at_ms, data) VALUES ";
      params.clear();
      params.reserve(chunk * 6);
      for (size_t i = 0; i < chunk; ++i) {
        sql += i == 0 ? "(?, ?, ?, ?, ?, ?)" : ", (?, ?, ?, ?, ?, ?)";
        append_event_params(events[done + i].event, params);
      }
      sql += " RETURNING seq";
      auto status = session.exec(sql, params, result);
      if (!status.ok()) return with_context(std::move(status), "event insert");
      // Seqs were taken in list order, whatever order RETURNING lists them.
      std::vector<int64_t> seqs;
      for (const auto& row : result.rows)
        seqs.push_back(to_int(row[0]));
      std::sort(seqs.begin(), seqs.end());
      for (size_t i = 0; i < chunk && i < seqs.size(); ++i)
        outcomes[events[done + i].write].event_seq = seqs[i];
      done += chunk;
    }
    return Status::Ok();
  }

  static void append_event_params(const Event& e, std::vector<Param>& params) {
    params.push_back(text_param(e.tenant_id));
    params.push_back(text_param(e.type));
    params.push_back(text_param(e.subject_id));
    params.push_back(text_param(e.device_id));
    params.push_back(int_param(e.at_ms));
    params.push_back(text_param(e.data_json.empty() ? "{}" : e.data_json));
  }

  // A command write's event defaults to the command's tenant, id and device.
  static void fill_event(Event& event, const std::string& tenant_id, const std::string& command_id,
                         const std::string& device_id, TimeMs at_ms) {
    if (event.tenant_id.empty()) event.tenant_id = tenant_id;
    if (event.subject_id.empty()) event.subject_id = command_id;
    if (event.device_id.empty()) event.device_id = device_id;
    if (event.at_ms == 0) event.at_ms = at_ms;
  }

  // Callers hold the event order lock (lock_event_order).
  static Status insert_event(Session& session, const Event& e, int64_t& seq) {
    std::vector<Param> params;
    append_event_params(e, params);
    ExecResult result;
    auto status = session.exec(
        "INSERT INTO events(tenant_id, type, subject_id, device_id, at_ms, data) "
        "VALUES (?, ?, ?, ?, ?, ?) RETURNING seq",
        params, result);
    if (!status.ok()) return with_context(std::move(status), "event " + e.type);
    seq = result.rows.empty() ? 0 : to_int(result.rows[0][0]);
    return Status::Ok();
  }

  // See kEventOrderLock. Re-taking it in one transaction is harmless.
  Status lock_event_order(Session& session) {
    if (dialect_ != Dialect::kPostgres) return Status::Ok();
    ExecResult ignored;
    return session.exec(kEventOrderLock, {}, ignored);
  }

  // " FROM commands WHERE <the device's non-final commands>", one `?`.
  // SQLite's planner rates commands_by_device (device_id, seq) as good as
  // the partial commands_pending and may pick it, which walks the device's
  // whole history; INDEXED BY pins the small one. PostgreSQL picks it alone.
  std::string pending_from() const {
    return std::string(" FROM commands") +
           (dialect_ == Dialect::kSqlite ? " INDEXED BY commands_pending" : "") +
           " WHERE device_id = ? AND state IN " + kNonFinalStates;
  }

  // Rows of one query, in its order.
  template <typename T>
  Result<std::vector<T>> rows_of(const std::string& sql, std::vector<Param> params,
                                 T (*parse)(const Row&)) {
    std::vector<T> items;
    auto status = read([&](Session& session) {
      ExecResult result;
      auto s = session.exec(sql, params, result);
      items.clear();
      if (!s.ok()) return s;
      items.reserve(result.rows.size());
      for (const auto& row : result.rows)
        items.push_back(parse(row));
      return s;
    });
    if (!status.ok()) return status;
    return items;
  }

  // A keyset page whose bound the caller already put into `where`, in
  // `order_by` order ("seq", "id DESC"); one extra row tells `more`.
  template <typename T>
  Result<Listing<T>> ordered_page(const std::string& select_from, Where where,
                                  const std::string& order_by, int32_t requested_limit,
                                  T (*parse)(const Row&)) {
    const int32_t limit = std::clamp(requested_limit, 1, kMaxPageLimit);
    const std::string sql = select_from + where.sql() + " ORDER BY " + order_by + " LIMIT ?";
    auto params = std::move(where.params());
    params.push_back(int_param(limit + 1));
    Listing<T> listing;
    auto status = read([&](Session& session) {
      ExecResult result;
      auto s = session.exec(sql, params, result);
      if (s.ok()) listing = to_listing<T>(result.rows, limit, parse);
      return s;
    });
    if (!status.ok()) return status;
    return listing;
  }

  template <typename T>
  static Listing<T> to_listing(std::vector<Row>& rows, int32_t limit, T (*parse)(const Row&)) {
    Listing<T> listing;
    listing.more = rows.size() > static_cast<size_t>(limit);
    const size_t count = std::min(rows.size(), static_cast<size_t>(limit));
    listing.items.reserve(count);
    for (size_t i = 0; i < count; ++i)
      listing.items.push_back(parse(rows[i]));
    return listing;
  }

  template <typename T>
  Result<T> one(const std::string& select_from, Where& where, T (*parse)(const Row&),
                const std::string& what) {
    std::optional<T> found;
    auto status = read([&](Session& session) {
      ExecResult result;
      auto s = session.exec(select_from + where.sql(), where.params(), result);
      found.reset();
      if (s.ok() && !result.rows.empty()) found = parse(result.rows[0]);
      return s;
    });
    if (!status.ok()) return status;
    if (!found) return Status{Code::kNotFound, what + " not found"};
    return std::move(*found);
  }

  // Keyset page in `id_column` order: rows after page.after_id, one extra
  // fetched to know whether more exist.
  template <typename T>
  Result<Listing<T>> page_of(const std::string& select_from, Where where,
                             const std::string& id_column, const Page& page,
                             T (*parse)(const Row&)) {
    const int32_t limit = std::clamp(page.limit, 1, kMaxPageLimit);
    if (!page.after_id.empty()) where.add(id_column + " > ?", {text_param(page.after_id)});
    const std::string sql = select_from + where.sql() + " ORDER BY " + id_column + " LIMIT ?";
    auto params = where.params();
    params.push_back(int_param(limit + 1));
    Listing<T> listing;
    auto status = read([&](Session& session) {
      ExecResult result;
      auto s = session.exec(sql, params, result);
      if (s.ok()) listing = to_listing<T>(result.rows, limit, parse);
      return s;
    });
    if (!status.ok()) return status;
    return listing;
  }

  // `sql` is an INSERT ... ON CONFLICT DO NOTHING: no row means a key is taken.
  static Status insert_in(Session& session, const std::string& sql, std::vector<Param> params,
                          const std::string& what) {
    ExecResult result;
    auto status = session.exec(sql, params, result);
    if (!status.ok()) return with_context(std::move(status), what);
    if (result.affected == 0) return Status{Code::kConflict, what + " already exists"};
    return Status::Ok();
  }

  Status insert_new(const std::string& sql, std::vector<Param> params, const std::string& what) {
    return write([&](Session& session) { return insert_in(session, sql, params, what); });
  }

  // An UPDATE or DELETE of one row: no row touched means kNotFound.
  Status update_one(const std::string& sql, std::vector<Param> params, const std::string& what) {
    return write([&](Session& session) {
      ExecResult result;
      auto status = session.exec(sql, params, result);
      if (!status.ok()) return with_context(std::move(status), what);
      if (result.affected == 0) return Status{Code::kNotFound, what + " not found"};
      return Status::Ok();
    });
  }

  // SQLite: one cached prepared INSERT per row; changes() tells a conflict.
  static Status insert_devices_each(Session& session, const std::vector<Device>& devices,
                                    const std::vector<size_t>& valid,
                                    std::vector<RowOutcome>& outcomes) {
    const std::string sql =
        std::string(kDeviceInsertColumns) + kDeviceValues + " ON CONFLICT DO NOTHING";
    std::vector<Param> params;
    ExecResult result;
    for (size_t index : valid) {
      params.clear();
      append_device_params(devices[index], params);
      auto status = session.exec(sql, params, result);
      if (!status.ok()) return with_context(std::move(status), "device " + devices[index].id);
      if (result.affected == 0) outcomes[index].status = conflict(devices[index]);
    }
    return Status::Ok();
  }

  // PostgreSQL: multi-row INSERTs (one round trip per chunk); the rows
  // RETURNING lists were inserted, the others hit a unique key.
  static Status insert_devices_multirow(Session& session, const std::vector<Device>& devices,
                                        const std::vector<size_t>& valid,
                                        std::vector<RowOutcome>& outcomes) {
    size_t done = 0;
    std::vector<Param> params;
    ExecResult result;
    while (done < valid.size()) {
      size_t chunk = kPostgresBulkRows;
      while (chunk > valid.size() - done)
        chunk /= 2;
      std::string sql = kDeviceInsertColumns;
      params.clear();
      for (size_t i = 0; i < chunk; ++i) {
        if (i > 0) sql += ", ";
        sql += kDeviceValues;
        append_device_params(devices[valid[done + i]], params);
      }
      sql += " ON CONFLICT DO NOTHING RETURNING id, product_id, serial";
      auto status = session.exec(sql, params, result);
      if (!status.ok()) return with_context(std::move(status), "bulk device insert");
      std::map<std::tuple<std::string, std::string, std::string>, int> inserted;
      for (const auto& row : result.rows) {
        ++inserted[{to_text(row[0]), to_text(row[1]), to_text(row[2])}];
      }
      for (size_t i = 0; i < chunk; ++i) {
        const auto& d = devices[valid[done + i]];
        auto it = inserted.find({d.id, d.product_id, d.serial});
        if (it != inserted.end() && it->second > 0) {
          --it->second;  // identical rows twice in a batch: the first one wins
        } else {
          outcomes[valid[done + i]].status = conflict(d);
        }
      }
      done += chunk;
    }
    return Status::Ok();
  }

  static Status conflict(const Device& d) {
    return {Code::kConflict, "device " + d.id + " or serial " + d.serial + " of product " +
                                 d.product_id + " already exists"};
  }

  std::map<std::string, TimeMs> take_touches(bool force) {
    auto touches = touches_.lock();
    const auto now = std::chrono::steady_clock::now();
    if (touches->latest.empty() || (!force && now - touches->flushed < kTouchFlushInterval)) {
      return {};
    }
    touches->flushed = now;
    return std::exchange(touches->latest, {});
  }

  void flush_touches(const std::map<std::string, TimeMs>& latest) {
    if (latest.empty()) return;
    // Never moves last_used_ms backwards (touches may arrive out of order).
    auto status = write([&](Session& session) {
      ExecResult result;
      for (const auto& [id, at_ms] : latest) {
        auto s = session.exec(
            "UPDATE api_keys SET last_used_ms = CASE WHEN last_used_ms < ? THEN ? ELSE "
            "last_used_ms END WHERE id = ?",
            {int_param(at_ms), int_param(at_ms), text_param(id)}, result);
        if (!s.ok()) return s;
      }
      return Status::Ok();
    });
    if (!status.ok()) {
      spdlog::warn("store: dropped {} API key last-use updates: {}", latest.size(), status.message);
    }
  }

  void apply_pending_touch(ApiKey& key) {
    auto touches = touches_.lock();
    auto it = touches->latest.find(key.id);
    if (it != touches->latest.end()) key.last_used_ms = std::max(key.last_used_ms, it->second);
  }

  struct PendingTouches {
    std::map<std::string, TimeMs> latest;  // key id -> newest touch not yet written
    std::chrono::steady_clock::time_point flushed{};
  };

  const std::unique_ptr<Database> database_;
  const Dialect dialect_;
  const int schema_version_;
  Guarded<PendingTouches> touches_;
};

}  // namespace

std::unique_ptr<Store> make_store(std::unique_ptr<Database> database, int schema_version) {
  return std::make_unique<SqlStore>(std::move(database), schema_version);
}

}  // namespace counterlink::store::sql
