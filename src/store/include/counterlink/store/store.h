// The system of record: tenants, API keys, products, devices, presence,
// idempotency records, commands and their event log, webhooks and scans. One
// interface, two adapters (SQLite for the embedded default, PostgreSQL for
// scale-out), chosen in one place: open_store().
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

// ---- Commands, events, webhooks, scans ---------------------------------------

// A command for one device: a payment broadcast, a print job, or the result
// of a scan shown on a scan box. The delivery engine owns the state machine
// (see counterlink/platform/commands.h); the store keeps rows and applies
// guarded transitions atomically with their events.
struct Command {
  std::string id;  // "cm_..."
  std::string tenant_id;
  std::string device_id;
  std::string type;   // broadcast | print | scan_result
  std::string state;  // queued | sent | delivered | waiting | played | printed |
                      // shown | failed | expired | cancelled
  // Unique per device when non-empty (a broadcast's order id): a second
  // create with the same (device_id, dedup_key) is refused with the id of the
  // command that holds it.
  std::string dedup_key;
  std::string payload_json;  // the type's object as sent to the device (JSON)
  std::string request_json;  // what the caller asked for, for reads (JSON)
  int64_t seq = 0;           // assigned on insert; increasing per database
  TimeMs created_ms = 0;
  TimeMs updated_ms = 0;
  TimeMs expires_at_ms = 0;  // 0 = never
  int32_t attempts = 0;      // times handed to the device
  std::string code;          // why it failed / waits (paper_out, expired, ...)
  std::string detail;
  std::string request_id;  // the API request that created it
};

// One entry of the event log: what webhooks deliver and the event stream
// serves. A command's history is its events (subject_id = command id).
struct Event {
  int64_t seq = 0;  // assigned on insert; increasing per database; the event id
  std::string tenant_id;
  std::string type;        // device.online, broadcast.played, print_job.failed, scan.received, ...
  std::string subject_id;  // command id, scan id or device id
  std::string device_id;
  TimeMs at_ms = 0;
  std::string data_json;  // the event's object (JSON)
};

// A guarded state change of one command.
struct Transition {
  std::string command_id;
  // Applies only if the current state is one of these (empty: any state that
  // is not final: queued, sent, delivered, waiting).
  std::vector<std::string> from_states;
  std::string to_state;
  TimeMs at_ms = 0;
  std::string code;    // replaces the row's code ("" clears it)
  std::string detail;  // replaces the row's detail
  int32_t attempts_delta = 0;
};

// One item of a group commit (apply_writes).
struct Write {
  enum class Kind : uint8_t {
    kCreateCommand,  // insert `command` (seq assigned)
    kTransition,     // apply `transition`
    kAppendEvent,    // only append `event`
  };
  Kind kind = Kind::kAppendEvent;
  Command command;
  Transition transition;
  // Appended (seq assigned) when the write applies; ignored when event.type
  // is empty (not allowed for kAppendEvent).
  Event event;
};

struct WriteOutcome {
  // kOk; kConflict: a create's dedup key or id is taken (existing_id says
  // by whom, state and command_seq are that command's) or a transition's
  // guard did not hold (state says the current state); kNotFound: a
  // transition of an unknown command; kInvalid: see apply_writes.
  Code code = Code::kOk;
  std::string existing_id;
  std::string state;        // the command's state after the write (creates, transitions)
  int64_t command_seq = 0;  // creates: the new (or existing) command's seq;
                            // applied transitions: the command's seq
  int64_t event_seq = 0;    // 0 when no event was appended
};

struct CommandFilter {
  std::string tenant_id;            // empty = all tenants
  std::string device_id;            // empty = all devices
  std::string type;                 // empty = all types
  std::vector<std::string> states;  // empty = all states
};

struct WebhookEndpoint {
  std::string id;  // "wh_..."
  std::string tenant_id;
  std::string url;
  std::string description;
  std::vector<std::string> event_types;  // patterns ("broadcast.*", "scan.received"); empty = all
  std::string secret_sealed;             // signing secret sealed by the platform; opaque bytes
  bool disabled = false;
  // Events with seq <= cursor_seq have been turned into deliveries.
  int64_t cursor_seq = 0;
  TimeMs created_ms = 0;
  TimeMs updated_ms = 0;
};

struct WebhookDelivery {
  int64_t id = 0;  // assigned on insert
  std::string endpoint_id;
  std::string tenant_id;
  int64_t event_seq = 0;
  std::string event_type;
  std::string state = "pending";  // pending | succeeded | failed (gave up)
  int32_t attempts = 0;
  TimeMs next_attempt_ms = 0;  // when pending
  TimeMs last_attempt_ms = 0;
  int32_t last_status_code = 0;  // HTTP status of the last attempt, 0 = no answer
  std::string last_error;        // transport error or a short body excerpt
  TimeMs created_ms = 0;
  TimeMs updated_ms = 0;
};

// One try of a delivery, for the delivery log.
struct WebhookAttempt {
  int64_t delivery_id = 0;
  int32_t attempt = 0;  // 1-based
  TimeMs at_ms = 0;
  int32_t status_code = 0;
  int32_t duration_ms = 0;
  std::string error;
};

struct Scan {
  std::string id;  // "sc_..."
  std::string tenant_id;
  std::string device_id;
  std::string box_scan_id;        // the box's own id for the scan
  std::string code;               // the payment code as scanned
  std::string code_hash;          // hex SHA-256 of the code, for duplicate detection
  int64_t amount_fen = -1;        // -1 = none entered
  std::string state = "pending";  // pending | answered | timed_out
  std::string outcome;            // success | failed | unknown ("" while pending)
  std::string display;
  std::string voice;
  std::string result_command_id;
  TimeMs created_ms = 0;
  TimeMs deadline_ms = 0;  // answered by then, or the box is told "unknown"
  TimeMs answered_ms = 0;
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
  // When the device's online state changes, also appends a `device.online` /
  // `device.offline` Event (subject = device id, data: device_id,
  // remote_address, protocol_version, gateway_node, reason) in the same
  // transaction.
  virtual Status record_presence(const PresenceEvent& event) = 0;
  // Newest first. `page.after_id` is a decimal seq (exclusive).
  virtual Result<Listing<PresenceEvent>> list_presence(const std::string& tenant_id,
                                                       const std::string& device_id,
                                                       const Page& page) = 0;
  // Marks every device online at `gateway_node` offline (after a crash),
  // appending a `device.offline` Event (reason "gateway_reset") for each.
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

  // Commands and the event log. apply_writes runs every write in one
  // transaction, in order, and reports one outcome per write; a write that
  // does not apply (conflict, guard) changes nothing and appends no event.
  // Only kUnavailable fails the whole batch (nothing is written). A write
  // the store refuses outright is kInvalid: a create without id, device or
  // state, a transition without command id or to_state, an append without
  // event type, or any text that is not valid UTF-8 or contains NUL.
  virtual Result<std::vector<WriteOutcome>> apply_writes(const std::vector<Write>& writes) = 0;
  virtual Result<Command> get_command(const std::string& tenant_id, const std::string& id) = 0;
  // In seq order (oldest first); `page.after_id` is a decimal seq (exclusive).
  virtual Result<Listing<Command>> list_commands(const CommandFilter& filter, const Page& page) = 0;
  // The device's commands that are not final, oldest first, at most `limit`
  // (1..1000).
  virtual Result<std::vector<Command>> pending_commands(const std::string& device_id,
                                                        int32_t limit) = 0;
  virtual Result<int64_t> count_pending_commands(const std::string& device_id) = 0;
  // Commands that are not final and whose expires_at_ms is in (0, now_ms],
  // soonest expired first, at most `limit` (1..1000).
  virtual Result<std::vector<Command>> expired_commands(TimeMs now_ms, int32_t limit) = 0;
  // The events of one subject (a command's history), oldest first, scoped.
  virtual Result<std::vector<Event>> subject_events(const std::string& tenant_id,
                                                    const std::string& subject_id) = 0;
  // Events with seq > after_seq, oldest first, at most `limit` (1..1000);
  // tenant "" = all tenants. Seqs become visible in order: once a reader has
  // seen seq N, no event with a smaller seq commits later, so a reader may
  // keep "last seq seen" as its cursor.
  virtual Result<std::vector<Event>> list_events(const std::string& tenant_id, int64_t after_seq,
                                                 int32_t limit) = 0;
  virtual Result<Event> get_event(const std::string& tenant_id, int64_t seq) = 0;
  // Retention: deletes events before `before_ms`, final commands last
  // updated before it, scans no longer pending created before it, and
  // deliveries no longer pending last updated before it (with their
  // attempts); returns how many rows went.
  virtual Result<int64_t> purge_history(TimeMs before_ms) = 0;

  // Webhook endpoints (scoped like every tenant row).
  virtual Status create_webhook(const WebhookEndpoint& endpoint) = 0;
  virtual Result<WebhookEndpoint> get_webhook(const std::string& tenant_id,
                                              const std::string& id) = 0;
  // Writes url, description, event_types, secret_sealed, disabled, updated_ms.
  virtual Status update_webhook(const WebhookEndpoint& endpoint) = 0;
  virtual Status delete_webhook(const std::string& tenant_id, const std::string& id) = 0;
  virtual Result<Listing<WebhookEndpoint>> list_webhooks(const std::string& tenant_id,
                                                         const Page& page) = 0;
  // Inserts the deliveries (ids assigned) and moves the endpoint's cursor to
  // `cursor_seq`, atomically; kConflict if the cursor is no longer
  // `expected_cursor` (another dispatcher got there first), kNotFound if the
  // endpoint is gone. The deliveries take the endpoint's id and tenant.
  virtual Status enqueue_webhook_deliveries(const std::string& endpoint_id, int64_t expected_cursor,
                                            int64_t cursor_seq,
                                            const std::vector<WebhookDelivery>& deliveries) = 0;
  // Pending deliveries with next_attempt_ms <= now_ms, across tenants, by
  // (next_attempt_ms, id), at most `limit` (1..1000).
  virtual Result<std::vector<WebhookDelivery>> due_webhook_deliveries(TimeMs now_ms,
                                                                      int32_t limit) = 0;
  // Writes the delivery's state, attempts, next/last attempt, last status,
  // error and updated_ms (attempt.at_ms when 0) by delivery.id, and appends
  // `attempt` to its log, atomically. kNotFound: no such delivery;
  // kConflict: that attempt number is logged already (nothing written).
  // Bytes that are not UTF-8 in the errors are replaced (U+FFFD).
  virtual Status record_webhook_attempt(const WebhookDelivery& delivery,
                                        const WebhookAttempt& attempt) = 0;
  virtual Result<WebhookDelivery> get_webhook_delivery(const std::string& tenant_id,
                                                       int64_t id) = 0;
  // Newest first; `page.after_id` is a decimal delivery id (exclusive).
  virtual Result<Listing<WebhookDelivery>> list_webhook_deliveries(const std::string& tenant_id,
                                                                   const std::string& endpoint_id,
                                                                   const Page& page) = 0;
  virtual Result<std::vector<WebhookAttempt>> list_webhook_attempts(const std::string& tenant_id,
                                                                    int64_t delivery_id) = 0;
  // Makes a delivery pending again, due at `at_ms` (manual redelivery);
  // attempts and the last attempt's fields stay.
  virtual Status reschedule_webhook_delivery(const std::string& tenant_id, int64_t id,
                                             TimeMs at_ms) = 0;

  // Scans. create_scan: kConflict (with the existing scan in `existing`) when
  // the device has a scan of the same code_hash created at or after
  // `duplicate_since_ms`, or one with the same box_scan_id.
  virtual Status create_scan(const Scan& scan, TimeMs duplicate_since_ms, Scan* existing) = 0;
  virtual Result<Scan> get_scan(const std::string& tenant_id, const std::string& id) = 0;
  // Moves a pending scan to `scan.state` (answered | timed_out) with outcome,
  // display, voice, result_command_id, answered_ms; kConflict (with the
  // current row in `current`) if it is no longer pending; kInvalid for
  // another target state. Scoped by scan.tenant_id.
  virtual Status finish_scan(const Scan& scan, Scan* current) = 0;
  // Pending scans with deadline_ms <= now_ms, most overdue first, at most
  // `limit` (1..1000).
  virtual Result<std::vector<Scan>> overdue_scans(TimeMs now_ms, int32_t limit) = 0;
  // Newest first; `page.after_id` is a scan id (exclusive).
  virtual Result<Listing<Scan>> list_scans(const std::string& tenant_id,
                                           const std::string& device_id, const Page& page) = 0;
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
