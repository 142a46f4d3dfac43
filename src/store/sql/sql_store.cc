#include "sql/sql_store.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <map>
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
constexpr const char* kEventColumns =
    "seq, device_id, online, at_ms, remote_address, protocol_version, gateway_node, reason";
constexpr const char* kIdempotencyColumns =
    "scope, key, request_hash, completed, http_status, response_body, created_ms";

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

PresenceEvent event_from(const Row& row) {
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
      // since_ms moves only when the state flips: a reconnect that takes
      // over a live session keeps "online since" of the first connect.
      // An offline event changes the current state only if it comes from
      // the node the device is online at: a late disconnect from node A
      // must not mark offline a device that has already moved to node B
      // (it still goes into the history).
      auto status = session.exec(
          "UPDATE devices SET "
          "presence_since_ms = CASE WHEN online = ? THEN presence_since_ms ELSE ? END, "
          "online = ?, remote_address = ?, protocol_version = ?, gateway_node = ?, "
          "last_seen_ms = CASE WHEN last_seen_ms < ? THEN ? ELSE last_seen_ms END "
          "WHERE id = ? AND (? OR NOT online OR gateway_node = ?)",
          {bool_param(e.online), int_param(e.at_ms), bool_param(e.online),
           text_param(e.remote_address), text_param(e.protocol_version), text_param(e.gateway_node),
           int_param(e.at_ms), int_param(e.at_ms), text_param(e.device_id), bool_param(e.online),
           text_param(e.gateway_node)},
          result);
      if (!status.ok()) return status;
      if (result.affected == 0) {
        ExecResult exists;
        status =
            session.exec("SELECT 1 FROM devices WHERE id = ?", {text_param(e.device_id)}, exists);
        if (!status.ok()) return status;
        if (exists.rows.empty()) {
          return Status{Code::kNotFound, "device " + e.device_id + " not found"};
        }
      }
      return session.exec(
          "INSERT INTO presence_events(device_id, online, at_ms, remote_address, "
          "protocol_version, gateway_node, reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
          {text_param(e.device_id), bool_param(e.online), int_param(e.at_ms),
           text_param(e.remote_address), text_param(e.protocol_version), text_param(e.gateway_node),
           text_param(e.reason)},
          result);
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
      s = session.exec(std::string("SELECT ") + kEventColumns + " FROM presence_events" +
                           where.sql() + " ORDER BY seq DESC LIMIT ?",
                       params, result);
      if (s.ok()) listing = to_listing<PresenceEvent>(result.rows, limit, event_from);
      return s;
    });
    if (!status.ok()) return status;
    return listing;
  }

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
      return session.exec(
          "UPDATE devices SET online = FALSE, presence_since_ms = ? "
          "WHERE online = TRUE AND gateway_node = ?",
          {int_param(at_ms), text_param(gateway_node)}, result);
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

 private:
  Status read(const TransactionBody& body) { return database_->transact(Access::kRead, body); }
  Status write(const TransactionBody& body) { return database_->transact(Access::kWrite, body); }

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
