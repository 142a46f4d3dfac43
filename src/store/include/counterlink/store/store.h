// The system of record: tenants, API keys, products, devices, presence and
// idempotency records. One interface, two adapters (SQLite for the embedded
// default, PostgreSQL for scale-out), chosen in one place: open_store().
//
// Threading: every method may be called from any thread concurrently; each
// call is one transaction. Calls block on I/O, so callers on an event loop
// hand them to a worker pool first.
//
// Errors: methods return Status / Result<T>. kNotFound and kConflict are
// expected outcomes the API maps to 404 / 409; kUnavailable means the
// database could not be reached or failed and the caller may retry. Nothing
// here throws except open_store() on bad configuration.
//
// Scoping: every tenant-owned read and write takes the tenant id and treats a
// row of another tenant exactly like a missing row (kNotFound), so the API
// can never leak existence across tenants. An empty tenant id means "any
// tenant" and is for the gateway and operators only.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace counterlink::store {

// Milliseconds since the Unix epoch, UTC.
using TimeMs = int64_t;

enum class Code : uint8_t {
  kOk,
  kNotFound,     // no such row (or it belongs to another tenant)
  kConflict,     // a unique key is taken (e.g. serial per product)
  kInvalid,      // the request breaks a store rule (e.g. unknown product id)
  kUnavailable,  // database unreachable or failed; retry may succeed
};
const char* to_string(Code code);

struct Status {
  Code code = Code::kOk;
  std::string message;  // for logs; names the constraint or the SQL error
  bool ok() const { return code == Code::kOk; }
  static Status Ok() { return {}; }
};

template <typename T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : value_(std::move(status)) {}  // NOLINT
  bool ok() const { return std::holds_alternative<T>(value_); }
  const T& value() const& { return std::get<T>(value_); }
  T& value() & { return std::get<T>(value_); }
  T&& value() && { return std::get<T>(std::move(value_)); }
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(value_); }

 private:
  std::variant<T, Status> value_;
};

// ---- Domain rows -----------------------------------------------------------

struct Tenant {
  std::string id;    // "tn_..." (assigned by the platform)
  std::string name;  // display name
  std::string kind;  // aggregator | saas | merchant_group | other
  bool disabled = false;
  int64_t max_devices = 0;     // quota, 0 = unlimited
  int32_t api_rate_limit = 0;  // requests per second, 0 = unlimited
  TimeMs created_ms = 0;
  TimeMs updated_ms = 0;
};

// Grouping under a tenant: merchants, and the stores (outlets) of a merchant.
struct Merchant {
  std::string id;  // "mc_..."
  std::string tenant_id;
  std::string name;
  TimeMs created_ms = 0;
};

struct Outlet {
  std::string id;  // "st_..."
  std::string tenant_id;
  std::string merchant_id;
  std::string name;
  std::string address;
  TimeMs created_ms = 0;
};

struct ApiKey {
  std::string id;         // key id, "ak_..." (public half of the credential)
  std::string tenant_id;  // empty for operator keys
  std::string scope;      // "tenant" | "admin"
  std::string name;
  std::string secret_hash;  // SHA-256 of the secret, raw bytes; never the secret
  // Key for HMAC request signatures, derived from the secret and sealed with
  // the master key (AES-256-GCM); opaque bytes to the store.
  std::string signing_key_sealed;
  TimeMs created_ms = 0;
  TimeMs last_used_ms = 0;
  TimeMs revoked_ms = 0;  // 0 = active
};

struct Product {
  std::string id;  // "pd_..."
  std::string tenant_id;
  std::string name;
  std::string type;               // speaker | printer | scanbox | generic
  std::string capabilities_json;  // JSON object, opaque to the store
  TimeMs created_ms = 0;
  TimeMs updated_ms = 0;
};

struct Presence {
  bool online = false;
  TimeMs since_ms = 0;  // when the current state began; 0 = never connected
  std::string remote_address;
  std::string protocol_version;  // "3.1.1", "5.0"
  std::string gateway_node;
};

struct Device {
  std::string id;  // "dv_..." (also the MQTT client id)
  std::string tenant_id;
  std::string product_id;
  std::string serial;       // unique per product
  std::string merchant_id;  // empty = none
  std::string outlet_id;    // empty = none
  // The device secret sealed by the platform (AES-256-GCM, key id inside);
  // opaque bytes to the store.
  std::string secret_sealed;
  std::map<std::string, std::string> labels;
  std::string firmware_version;
  bool disabled = false;
  TimeMs created_ms = 0;
  TimeMs updated_ms = 0;
  TimeMs last_seen_ms = 0;
  Presence presence;
};

struct PresenceEvent {
  int64_t seq = 0;  // assigned by the store, increasing per database
  std::string device_id;
  bool online = false;
  TimeMs at_ms = 0;
  std::string remote_address;
  std::string protocol_version;
  std::string gateway_node;
  std::string reason;  // disconnect reason, e.g. "keepalive_timeout"
};

// ---- Paging and filters ----------------------------------------------------

// Keyset pagination in id order. The API turns `after_id` into an opaque
// page token; the store only sees ids.
struct Page {
  std::string after_id;  // exclusive; empty = from the start
  int32_t limit = 50;    // 1..1000
};

template <typename T>
struct Listing {
  std::vector<T> items;
  bool more = false;  // true if rows exist after items.back()
};

struct DeviceFilter {
  std::string tenant_id;  // empty = all tenants (operators)
  std::string product_id;
  std::string product_type;  // via the product: speaker | printer | ...
  std::string merchant_id;
  std::string outlet_id;
  std::string serial;         // exact match
  std::string serial_prefix;  // prefix match
  std::string firmware_version;
  std::map<std::string, std::string> labels;  // every pair must match
  std::optional<bool> online;
  std::optional<bool> disabled;
};

// ---- Idempotency -----------------------------------------------------------

// The first answer to a creating call, replayed for retries with the same key.
struct IdempotencyRecord {
  std::string scope;         // tenant id, or "admin:<key id>" for operator calls
  std::string key;           // the client's Idempotency-Key
  std::string request_hash;  // SHA-256 hex of method + path + body
  bool completed = false;    // false while the first call is in flight
  int32_t http_status = 0;
  std::string response_body;  // JSON
  TimeMs created_ms = 0;
};

// ---- Bulk insert -------------------------------------------------------------

struct RowOutcome {
  size_t index = 0;  // position in the batch
  Status status;     // kOk, kConflict (serial taken), kInvalid (bad product)
};

// ---- The interface -----------------------------------------------------------

class Store {
 public:
  virtual ~Store() = default;

  // "sqlite" or "postgres"; for logs and /readyz.
  virtual const char* kind() const = 0;
  // Cheap round trip to the database (readiness probe).
  virtual Status ping() = 0;
  // Schema version after migrations (migrations run inside open_store()).
  virtual int schema_version() = 0;

  // Tenants (operators only).
  virtual Status create_tenant(const Tenant& tenant) = 0;
  virtual Result<Tenant> get_tenant(const std::string& id) = 0;
  virtual Status update_tenant(const Tenant& tenant) = 0;  // by id; kNotFound
  virtual Result<Listing<Tenant>> list_tenants(const Page& page) = 0;

  // Merchants and outlets.
  virtual Status create_merchant(const Merchant& merchant) = 0;
  virtual Result<Merchant> get_merchant(const std::string& tenant_id, const std::string& id) = 0;
  virtual Result<Listing<Merchant>> list_merchants(const std::string& tenant_id,
                                                   const Page& page) = 0;
  virtual Status create_outlet(const Outlet& outlet) = 0;  // kInvalid: unknown merchant
  virtual Result<Outlet> get_outlet(const std::string& tenant_id, const std::string& id) = 0;
  virtual Result<Listing<Outlet>> list_outlets(const std::string& tenant_id,
                                               const std::string& merchant_id,  // "" = all
                                               const Page& page) = 0;

  // API keys. get_api_key is unscoped: the key id is what authenticates.
  virtual Status create_api_key(const ApiKey& key) = 0;
  virtual Result<ApiKey> get_api_key(const std::string& id) = 0;
  virtual Result<Listing<ApiKey>> list_api_keys(const std::string& tenant_id, const Page& page) = 0;
  virtual Status revoke_api_key(const std::string& tenant_id, const std::string& id,
                                TimeMs at_ms) = 0;
  // Replaces the sealed signing key (master-key rotation re-seals it).
  virtual Status set_api_key_signing_key(const std::string& id,
                                         const std::string& signing_key_sealed) = 0;
  // Best effort; may be batched or coalesced by the adapter.
  virtual Status touch_api_key(const std::string& id, TimeMs at_ms) = 0;

  // Products.
  virtual Status create_product(const Product& product) = 0;
  virtual Result<Product> get_product(const std::string& tenant_id, const std::string& id) = 0;
  virtual Status update_product(const Product& product) = 0;  // name, capabilities
  virtual Status delete_product(const std::string& tenant_id,
                                const std::string& id) = 0;  // kConflict: has devices
  virtual Result<Listing<Product>> list_products(const std::string& tenant_id,
                                                 const Page& page) = 0;

  // Devices. create_device: kConflict if (product, serial) is taken;
  // kInvalid if the product is not the tenant's.
  virtual Status create_device(const Device& device) = 0;
  // Inserts a batch in one transaction; rows that fail are skipped and
  // reported, the others are committed. Returns one outcome per row.
  virtual Result<std::vector<RowOutcome>> create_devices(const std::vector<Device>& devices) = 0;
  virtual Result<Device> get_device(const std::string& tenant_id, const std::string& id) = 0;
  virtual Result<Device> get_device_by_serial(const std::string& tenant_id,
                                              const std::string& product_id,
                                              const std::string& serial) = 0;
  // Writes labels, firmware_version, merchant_id, outlet_id, disabled,
  // updated_ms of the row with device.id (scoped by device.tenant_id).
  virtual Status update_device(const Device& device) = 0;
  virtual Status set_device_secret(const std::string& tenant_id, const std::string& id,
                                   const std::string& secret_sealed, TimeMs at_ms) = 0;
  virtual Status delete_device(const std::string& tenant_id, const std::string& id) = 0;
  virtual Result<Listing<Device>> list_devices(const DeviceFilter& filter, const Page& page) = 0;
  virtual Result<int64_t> count_devices(const std::string& tenant_id) = 0;

  // Presence: updates the device's presence columns and last_seen_ms and
  // appends the event to its history, atomically. kNotFound for unknown ids.
  virtual Status record_presence(const PresenceEvent& event) = 0;
  // Newest first. `page.after_id` is a decimal seq (exclusive).
  virtual Result<Listing<PresenceEvent>> list_presence(const std::string& tenant_id,
                                                       const std::string& device_id,
                                                       const Page& page) = 0;
  // Marks every device online at `gateway_node` offline (after a crash).
  virtual Status reset_presence(const std::string& gateway_node, TimeMs at_ms) = 0;

  // Idempotency. begin: inserts an in-flight record, or returns the existing
  // one (completed or not) for (scope, key) unchanged.
  virtual Result<std::optional<IdempotencyRecord>> begin_idempotent(
      const IdempotencyRecord& record) = 0;
  virtual Status complete_idempotent(const std::string& scope, const std::string& key,
                                     int32_t http_status, const std::string& response_body) = 0;
  // Drops an in-flight record whose call failed before it had an answer.
  virtual Status abandon_idempotent(const std::string& scope, const std::string& key) = 0;
  // Deletes records created before `before_ms`; returns how many.
  virtual Result<int64_t> expire_idempotent(TimeMs before_ms) = 0;
};

struct StoreOptions {
  // "sqlite:///abs/path.db", "sqlite://relative/path.db", or a libpq URL
  // "postgres://user:pass@host:port/db" / "postgresql://...".
  std::string url;
  int pool_size = 8;  // connections (PostgreSQL) or readers (SQLite)
};

// Opens the store and applies pending migrations. Throws std::runtime_error
// with a message that says what to fix (bad URL, unreachable server, a
// schema newer than this binary).
std::unique_ptr<Store> open_store(const StoreOptions& options);

}  // namespace counterlink::store
