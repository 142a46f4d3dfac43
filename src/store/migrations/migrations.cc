#include "migrations/migrations.h"

#include <stdexcept>
#include <string>

namespace counterlink::store::migrations {
namespace {

// SQLite: ids are TEXT compared bytewise (BINARY), booleans are 0/1,
// labels are JSON text queried with json_extract.
//
// Migration 2 (both dialects):
// - commands and events have no foreign keys: a command's history outlives
//   its device (delete_device must keep working and keep the history), and
//   the delivery engine's hot path skips the checks. Webhook deliveries and
//   attempts do cascade from their endpoint.
// - seqs are never reused (AUTOINCREMENT / BIGSERIAL): a webhook endpoint's
//   cursor_seq and event stream readers rely on it even after
//   purge_history deleted the newest rows. On SQLite the seq is the rowid
//   (commands.id is UNIQUE instead of the primary key), so it costs no
//   extra index.
// - The state lists in the partial indexes are repeated verbatim in the
//   queries of sql_store.cc (kNonFinalStates): a partial index serves only
//   queries whose WHERE visibly implies its own.
constexpr Migration kSqlite[] = {
    {1, "initial schema", R"sql(
CREATE TABLE tenants (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  kind TEXT NOT NULL,
  disabled INTEGER NOT NULL DEFAULT 0,
  max_devices INTEGER NOT NULL DEFAULT 0,
  api_rate_limit INTEGER NOT NULL DEFAULT 0,
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL
);
CREATE TABLE merchants (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  name TEXT NOT NULL,
  created_ms INTEGER NOT NULL
);
CREATE INDEX merchants_by_tenant ON merchants(tenant_id, id);
CREATE TABLE outlets (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  merchant_id TEXT NOT NULL REFERENCES merchants(id),
  name TEXT NOT NULL,
  address TEXT NOT NULL DEFAULT '',
  created_ms INTEGER NOT NULL
);
CREATE INDEX outlets_by_tenant ON outlets(tenant_id, id);
CREATE INDEX outlets_by_merchant ON outlets(merchant_id, id);
CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  tenant_id TEXT REFERENCES tenants(id),
  scope TEXT NOT NULL,
  name TEXT NOT NULL,
  secret_hash BLOB NOT NULL,
  signing_key_sealed BLOB NOT NULL,
  created_ms INTEGER NOT NULL,
  last_used_ms INTEGER NOT NULL DEFAULT 0,
  revoked_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX api_keys_by_tenant ON api_keys(tenant_id, id);
CREATE TABLE products (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  name TEXT NOT NULL,
  type TEXT NOT NULL,
  capabilities TEXT NOT NULL DEFAULT '{}',
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL
);
CREATE INDEX products_by_tenant ON products(tenant_id, id);
CREATE TABLE devices (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  product_id TEXT NOT NULL REFERENCES products(id),
  serial TEXT NOT NULL,
  merchant_id TEXT REFERENCES merchants(id),
  outlet_id TEXT REFERENCES outlets(id),
  secret_sealed BLOB NOT NULL,
  labels TEXT NOT NULL DEFAULT '{}',
  firmware_version TEXT NOT NULL DEFAULT '',
  disabled INTEGER NOT NULL DEFAULT 0,
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  last_seen_ms INTEGER NOT NULL DEFAULT 0,
  online INTEGER NOT NULL DEFAULT 0,
  presence_since_ms INTEGER NOT NULL DEFAULT 0,
  remote_address TEXT NOT NULL DEFAULT '',
  protocol_version TEXT NOT NULL DEFAULT '',
  gateway_node TEXT NOT NULL DEFAULT '',
  UNIQUE (product_id, serial)
);
CREATE INDEX devices_by_tenant ON devices(tenant_id, id);
CREATE INDEX devices_online_by_node ON devices(gateway_node) WHERE online = 1;
CREATE TABLE presence_events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
  online INTEGER NOT NULL,
  at_ms INTEGER NOT NULL,
  remote_address TEXT NOT NULL DEFAULT '',
  protocol_version TEXT NOT NULL DEFAULT '',
  gateway_node TEXT NOT NULL DEFAULT '',
  reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX presence_events_by_device ON presence_events(device_id, seq);
CREATE TABLE idempotency (
  scope TEXT NOT NULL,
  key TEXT NOT NULL,
  request_hash TEXT NOT NULL,
  completed INTEGER NOT NULL DEFAULT 0,
  http_status INTEGER NOT NULL DEFAULT 0,
  response_body TEXT NOT NULL DEFAULT '',
  created_ms INTEGER NOT NULL,
  PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_by_age ON idempotency(created_ms);
)sql"},
    {2, "commands, events, webhooks and scans", R"sql(
CREATE TABLE commands (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  tenant_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  type TEXT NOT NULL,
  state TEXT NOT NULL,
  dedup_key TEXT,
  payload TEXT NOT NULL DEFAULT '{}',
  request TEXT NOT NULL DEFAULT '{}',
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  expires_at_ms INTEGER NOT NULL DEFAULT 0,
  attempts INTEGER NOT NULL DEFAULT 0,
  code TEXT NOT NULL DEFAULT '',
  detail TEXT NOT NULL DEFAULT '',
  request_id TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX commands_dedup ON commands(device_id, dedup_key) WHERE dedup_key IS NOT NULL;
CREATE INDEX commands_by_device ON commands(device_id, seq);
CREATE INDEX commands_by_tenant ON commands(tenant_id, seq);
CREATE INDEX commands_pending ON commands(device_id, seq)
  WHERE state IN ('queued', 'sent', 'delivered', 'waiting');
CREATE INDEX commands_expiring ON commands(expires_at_ms)
  WHERE state IN ('queued', 'sent', 'delivered', 'waiting') AND expires_at_ms > 0;
CREATE TABLE events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  tenant_id TEXT NOT NULL,
  type TEXT NOT NULL,
  subject_id TEXT NOT NULL DEFAULT '',
  device_id TEXT NOT NULL DEFAULT '',
  at_ms INTEGER NOT NULL,
  data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_by_tenant ON events(tenant_id, seq);
CREATE INDEX events_by_subject ON events(subject_id, seq);
CREATE INDEX events_by_age ON events(at_ms);
CREATE TABLE webhook_endpoints (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  url TEXT NOT NULL,
  description TEXT NOT NULL DEFAULT '',
  event_types TEXT NOT NULL DEFAULT '[]',
  secret_sealed BLOB NOT NULL,
  disabled INTEGER NOT NULL DEFAULT 0,
  cursor_seq INTEGER NOT NULL DEFAULT 0,
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL
);
CREATE INDEX webhook_endpoints_by_tenant ON webhook_endpoints(tenant_id, id);
CREATE TABLE webhook_deliveries (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
  tenant_id TEXT NOT NULL,
  event_seq INTEGER NOT NULL,
  event_type TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_ms INTEGER NOT NULL DEFAULT 0,
  last_attempt_ms INTEGER NOT NULL DEFAULT 0,
  last_status_code INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT '',
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_ms, id)
  WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries(endpoint_id, id);
CREATE INDEX webhook_deliveries_by_tenant ON webhook_deliveries(tenant_id, id);
CREATE TABLE webhook_attempts (
  delivery_id INTEGER NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
  attempt INTEGER NOT NULL,
  at_ms INTEGER NOT NULL,
  status_code INTEGER NOT NULL DEFAULT 0,
  duration_ms INTEGER NOT NULL DEFAULT 0,
  error TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (delivery_id, attempt)
);
CREATE TABLE scans (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  box_scan_id TEXT NOT NULL DEFAULT '',
  code TEXT NOT NULL DEFAULT '',
  code_hash TEXT NOT NULL DEFAULT '',
  amount_fen INTEGER NOT NULL DEFAULT -1,
  state TEXT NOT NULL,
  outcome TEXT NOT NULL DEFAULT '',
  display TEXT NOT NULL DEFAULT '',
  voice TEXT NOT NULL DEFAULT '',
  result_command_id TEXT NOT NULL DEFAULT '',
  created_ms INTEGER NOT NULL,
  deadline_ms INTEGER NOT NULL DEFAULT 0,
  answered_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX scans_by_code ON scans(device_id, code_hash, created_ms);
CREATE UNIQUE INDEX scans_by_box_id ON scans(device_id, box_scan_id) WHERE box_scan_id <> '';
CREATE INDEX scans_overdue ON scans(deadline_ms, id) WHERE state = 'pending';
CREATE INDEX scans_by_tenant ON scans(tenant_id, id);
CREATE INDEX scans_by_device ON scans(device_id, id);
)sql"},
};

// PostgreSQL: ids are COLLATE "C" so keyset order (and page boundaries) are
// bytewise and equal to SQLite's, whatever the database's locale; labels are
// jsonb (filtered with @>), blobs bytea.
constexpr Migration kPostgres[] = {
    {1, "initial schema", R"sql(
CREATE TABLE tenants (
  id TEXT COLLATE "C" PRIMARY KEY,
  name TEXT NOT NULL,
  kind TEXT NOT NULL,
  disabled BOOLEAN NOT NULL DEFAULT FALSE,
  max_devices BIGINT NOT NULL DEFAULT 0,
  api_rate_limit INTEGER NOT NULL DEFAULT 0,
  created_ms BIGINT NOT NULL,
  updated_ms BIGINT NOT NULL
);
CREATE TABLE merchants (
  id TEXT COLLATE "C" PRIMARY KEY,
  tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
  name TEXT NOT NULL,
  created_ms BIGINT NOT NULL
);
CREATE INDEX merchants_by_tenant ON merchants(tenant_id, id);
CREATE TABLE outlets (
  id TEXT COLLATE "C" PRIMARY KEY,
  tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
  merchant_id TEXT COLLATE "C" NOT NULL REFERENCES merchants(id),
  name TEXT NOT NULL,
  address TEXT NOT NULL DEFAULT '',
  created_ms BIGINT NOT NULL
);
CREATE INDEX outlets_by_tenant ON outlets(tenant_id, id);
CREATE INDEX outlets_by_merchant ON outlets(merchant_id, id);
CREATE TABLE api_keys (
  id TEXT COLLATE "C" PRIMARY KEY,
  tenant_id TEXT COLLATE "C" REFERENCES tenants(id),
  scope TEXT NOT NULL,
  name TEXT NOT NULL,
  secret_hash BYTEA NOT NULL,
  signing_key_sealed BYTEA NOT NULL,
  created_ms BIGINT NOT NULL,
  last_used_ms BIGINT NOT NULL DEFAULT 0,
  revoked_ms BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX api_keys_by_tenant ON api_keys(tenant_id, id);
CREATE TABLE products (
  id TEXT COLLATE "C" PRIMARY KEY,
  tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
  name TEXT NOT NULL,
  type TEXT NOT NULL,
  capabilities TEXT NOT NULL DEFAULT '{}',
  created_ms BIGINT NOT NULL,
  updated_ms BIGINT NOT NULL
);
CREATE INDEX products_by_tenant ON products(tenant_id, id);
CREATE TABLE devices (
  id TEXT COLLATE "C" PRIMARY KEY,
  tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
  product_id TEXT COLLATE "C" NOT NULL REFERENCES products(id),
  serial TEXT COLLATE "C" NOT NULL,
  merchant_id TEXT COLLATE "C" REFERENCES merchants(id),
  outlet_id TEXT COLLATE "C" REFERENCES outlets(id),
  secret_sealed BYTEA NOT NULL,
  labels JSONB NOT NULL DEFAULT '{}',
  firmware_version TEXT NOT NULL DEFAULT '',
  disabled BOOLEAN NOT NULL DEFAULT FALSE,
  created_ms BIGINT NOT NULL,
  updated_ms BIGINT NOT NULL,
  last_seen_ms BIGINT NOT NULL DEFAULT 0,
  online BOOLEAN NOT NULL DEFAULT FALSE,
  presence_since_ms BIGINT NOT NULL DEFAULT 0,
  remote_address TEXT NOT NULL DEFAULT '',
  protocol_version TEXT NOT NULL DEFAULT '',
  gateway_node TEXT NOT NULL DEFAULT '',
  UNIQUE (product_id, serial)
);
CREATE INDEX devices_by_tenant ON devices(tenant_id, id);
CREATE INDEX devices_online_by_node ON devices(gateway_node) WHERE online;
CREATE INDEX devices_labels ON devices USING gin (labels jsonb_path_ops);
CREATE TABLE presence_events (
  seq BIGSERIAL PRIMARY KEY,
  device_id TEXT COLLATE "C" NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
  online BOOLEAN NOT NULL,
  at_ms BIGINT NOT NULL,
  remote_address TEXT NOT NULL DEFAULT '',
  protocol_version TEXT NOT NULL DEFAULT '',
  gateway_node TEXT NOT NULL DEFAULT '',
  reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX presence_events_by_device ON presence_events(device_id, seq);
CREATE TABLE idempotency (
  scope TEXT COLLATE "C" NOT NULL,
  key TEXT COLLATE "C" NOT NULL,
  request_hash TEXT NOT NULL,
  completed BOOLEAN NOT NULL DEFAULT FALSE,
  http_status INTEGER NOT NULL DEFAULT 0,
  response_body TEXT NOT NULL DEFAULT '',
  created_ms BIGINT NOT NULL,
  PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_by_age ON idempotency(created_ms);
)sql"},
    {2, "commands, events, webhooks and scans", R"sql(
CREATE TABLE commands (
  id TEXT COLLATE "C" PRIMARY KEY,
  seq BIGSERIAL NOT NULL UNIQUE,
  tenant_id TEXT COLLATE "C" NOT NULL,
  device_id TEXT COLLATE "C" NOT NULL,
  type TEXT NOT NULL,
  state TEXT NOT NULL,
  dedup_key TEXT COLLATE "C",
  payload TEXT NOT NULL DEFAULT '{}',
  request TEXT NOT NULL DEFAULT '{}',
  created_ms BIGINT NOT NULL,
  updated_ms BIGINT NOT NULL,
  expires_at_ms BIGINT NOT NULL DEFAULT 0,
  attempts INTEGER NOT NULL DEFAULT 0,
  code TEXT NOT NULL DEFAULT '',
  detail TEXT NOT NULL DEFAULT '',
  request_id TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX commands_dedup ON commands(device_id, dedup_key) WHERE dedup_key IS NOT NULL;
CREATE INDEX commands_by_device ON commands(device_id, seq);
CREATE INDEX commands_by_tenant ON commands(tenant_id, seq);
CREATE INDEX commands_pending ON commands(device_id, seq)
  WHERE state IN ('queued', 'sent', 'delivered', 'waiting');
CREATE INDEX commands_expiring ON commands(expires_at_ms)
  WHERE state IN ('queued', 'sent', 'delivered', 'waiting') AND expires_at_ms > 0;
CREATE TABLE events (
  seq BIGSERIAL PRIMARY KEY,
  tenant_id TEXT COLLATE "C" NOT NULL,
  type TEXT NOT NULL,
  subject_id TEXT COLLATE "C" NOT NULL DEFAULT '',
  device_id TEXT COLLATE "C" NOT NULL DEFAULT '',
  at_ms BIGINT NOT NULL,
  data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_by_tenant ON events(tenant_id, seq);
CREATE INDEX events_by_subject ON events(subject_id, seq);
CREATE INDEX events_by_age ON events(at_ms);
CREATE TABLE webhook_endpoints (
  id TEXT COLLATE "C" PRIMARY KEY,
  tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants(id),
  url TEXT NOT NULL,
  description TEXT NOT NULL DEFAULT '',
  event_types TEXT NOT NULL DEFAULT '[]',
  secret_sealed BYTEA NOT NULL,
  disabled BOOLEAN NOT NULL DEFAULT FALSE,
  cursor_seq BIGINT NOT NULL DEFAULT 0,
  created_ms BIGINT NOT NULL,
  updated_ms BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_by_tenant ON webhook_endpoints(tenant_id, id);
CREATE TABLE webhook_deliveries (
  id BIGSERIAL PRIMARY KEY,
  endpoint_id TEXT COLLATE "C" NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
  tenant_id TEXT COLLATE "C" NOT NULL,
  event_seq BIGINT NOT NULL,
  event_type TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_ms BIGINT NOT NULL DEFAULT 0,
  last_attempt_ms BIGINT NOT NULL DEFAULT 0,
  last_status_code INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT '',
  created_ms BIGINT NOT NULL,
  updated_ms BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_ms, id)
  WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries(endpoint_id, id);
CREATE INDEX webhook_deliveries_by_tenant ON webhook_deliveries(tenant_id, id);
CREATE TABLE webhook_attempts (
  delivery_id BIGINT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
  attempt INTEGER NOT NULL,
  at_ms BIGINT NOT NULL,
  status_code INTEGER NOT NULL DEFAULT 0,
  duration_ms INTEGER NOT NULL DEFAULT 0,
  error TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (delivery_id, attempt)
);
CREATE TABLE scans (
  id TEXT COLLATE "C" PRIMARY KEY,
  tenant_id TEXT COLLATE "C" NOT NULL,
  device_id TEXT COLLATE "C" NOT NULL,
  box_scan_id TEXT COLLATE "C" NOT NULL DEFAULT '',
  code TEXT NOT NULL DEFAULT '',
  code_hash TEXT COLLATE "C" NOT NULL DEFAULT '',
  amount_fen BIGINT NOT NULL DEFAULT -1,
  state TEXT NOT NULL,
  outcome TEXT NOT NULL DEFAULT '',
  display TEXT NOT NULL DEFAULT '',
  voice TEXT NOT NULL DEFAULT '',
  result_command_id TEXT NOT NULL DEFAULT '',
  created_ms BIGINT NOT NULL,
  deadline_ms BIGINT NOT NULL DEFAULT 0,
  answered_ms BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX scans_by_code ON scans(device_id, code_hash, created_ms);
CREATE UNIQUE INDEX scans_by_box_id ON scans(device_id, box_scan_id) WHERE box_scan_id <> '';
CREATE INDEX scans_overdue ON scans(deadline_ms, id) WHERE state = 'pending';
CREATE INDEX scans_by_tenant ON scans(tenant_id, id);
CREATE INDEX scans_by_device ON scans(device_id, id);
)sql"},
};

// Serializes migrations of one PostgreSQL database across processes
// (transaction-scoped advisory lock; the number is arbitrary but fixed).
constexpr const char* kPostgresMigrationLock = "SELECT pg_advisory_xact_lock(7264001)";

Status lock_for_migration(sql::Database& database, sql::Session& session) {
  // SQLite: the write transaction (BEGIN IMMEDIATE) already excludes others.
  if (database.dialect() != sql::Dialect::kPostgres) return Status::Ok();
  sql::ExecResult ignored;
  return session.exec(kPostgresMigrationLock, {}, ignored);
}

Status read_version(sql::Session& session, int& version) {
  sql::ExecResult result;
  auto status = session.exec("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", {}, result);
  if (!status.ok()) return status;
  version = result.rows.empty() || !result.rows[0][0] ? 0 : std::stoi(*result.rows[0][0]);
  return Status::Ok();
}

[[noreturn]] void fail(const std::string& what, const Status& status) {
  throw std::runtime_error("store: " + what + ": " + status.message +
                           "; check that the database is reachable and writable by this user");
}

}  // namespace

std::span<const Migration> for_dialect(sql::Dialect dialect) {
  if (dialect == sql::Dialect::kPostgres) return kPostgres;
  return kSqlite;
}

int latest_version(sql::Dialect dialect) {
  return for_dialect(dialect).back().version;
}

int apply(sql::Database& database, TimeMs now_ms) {
  int version = 0;
  auto status = database.transact(sql::Access::kWrite, [&](sql::Session& session) {
    auto locked = lock_for_migration(database, session);
    if (!locked.ok()) return locked;
    auto created = session.exec_script(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)");
    if (!created.ok()) return created;
    return read_version(session, version);
  });
  if (!status.ok()) fail("cannot read the schema version", status);

  const int latest = latest_version(database.dialect());
  if (version > latest) {
    throw std::runtime_error("store: the " + std::string(database.kind()) +
                             " database has schema version " + std::to_string(version) +
                             ", newer than this binary knows (" + std::to_string(latest) +
                             "); run a newer counterlink against it, or point store.url at "
                             "another database");
  }

  for (const auto& migration : for_dialect(database.dialect())) {
    if (migration.version <= version) continue;
    status = database.transact(sql::Access::kWrite, [&](sql::Session& session) {
      auto locked = lock_for_migration(database, session);
      if (!locked.ok()) return locked;
      int current = 0;
      auto read = read_version(session, current);
      if (!read.ok()) return read;
      if (current >= migration.version) return Status::Ok();  // another process did it
      auto applied = session.exec_script(std::string(migration.sql));
      if (!applied.ok()) return applied;
      sql::ExecResult ignored;
      return session.exec("INSERT INTO schema_migrations(version, applied_at) VALUES(?, ?)",
                          {sql::int_param(migration.version), sql::int_param(now_ms)}, ignored);
    });
    if (!status.ok()) {
      fail("migration " + std::to_string(migration.version) + " (" +
               std::string(migration.description) + ") failed",
           status);
    }
    version = migration.version;
  }
  return version;
}

}  // namespace counterlink::store::migrations
