// counterlink.v1.WebhookService: webhook endpoints, their signing secrets and
// their delivery log. The deliveries themselves are made by the
// WebhookDispatcher (counterlink/platform/webhooks.h).
#include <algorithm>

#include <google/protobuf/empty.pb.h>

#include "counterlink/platform/crypto.h"
#include "counterlink/platform/webhooks.h"
#include "counterlink/v1/webhooks.pb.h"

#include "common.h"

namespace counterlink::platform::services {

namespace {

using api::CallContext;
using api::Outcome;

// Endpoints per tenant: each is a fan-out of every event, and business
// systems need one or two (production, staging).
constexpr size_t kMaxWebhooksPerTenant = 20;
constexpr int kMaxEventTypes = 64;
constexpr size_t kMaxDescriptionChars = 256;
constexpr size_t kPingBodyBytes = 1024;
constexpr int32_t kMaxGracePeriodS = 86400;
// A filtered delivery listing reads at most this many rows per call, then
// answers what it found with a token to continue.
constexpr int kMaxScannedDeliveries = 5000;

size_t utf8_chars(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) {
    if ((c & 0xC0) != 0x80) ++n;
  }
  return n;
}

// Text for a proto string field (which must be UTF-8): bytes of a broken
// sequence become '?'. Response bodies and errors come from outside.
std::string printable(std::string_view text, size_t max_bytes) {
  size_t end = std::min(text.size(), max_bytes);
  if (end < text.size()) {
    while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80)
      --end;  // not inside a character
  }
  const std::string_view cut = text.substr(0, end);
  if (is_valid_utf8(cut)) return std::string(cut);
  std::string out;
  for (unsigned char c : cut)
    out.push_back(c < 0x80 ? static_cast<char>(c) : '?');
  return out;
}

void to_proto(const store::WebhookEndpoint& row, v1::Webhook& out) {
  out.set_id(row.id);
  out.set_tenant_id(row.tenant_id);
  out.set_url(row.url);
  out.set_description(row.description);
  for (const auto& t : row.event_types)
    out.add_event_types(t);
  out.set_disabled(row.disabled);
  if (row.created_ms) set_time(out.mutable_create_time(), row.created_ms);
  if (row.updated_ms) set_time(out.mutable_update_time(), row.updated_ms);
}

void to_proto(const store::WebhookDelivery& row, v1::WebhookDelivery& out) {
  out.set_id(std::to_string(row.id));
  out.set_webhook_id(row.endpoint_id);
  out.set_event_id(std::to_string(row.event_seq));
  out.set_event_type(row.event_type);
  out.set_state(row.state);
  out.set_attempts(row.attempts);
  if (row.state == "pending" && row.next_attempt_ms) {
    set_time(out.mutable_next_attempt_time(), row.next_attempt_ms);
  }
  if (row.last_attempt_ms) set_time(out.mutable_last_attempt_time(), row.last_attempt_ms);
  out.set_last_status_code(row.last_status_code);
  out.set_last_error(printable(row.last_error, 256));
  if (row.created_ms) set_time(out.mutable_create_time(), row.created_ms);
  if (row.updated_ms) set_time(out.mutable_update_time(), row.updated_ms);
}

void to_proto(const store::WebhookAttempt& row, v1::WebhookAttempt& out) {
  out.set_attempt(row.attempt);
  set_time(out.mutable_time(), row.at_ms);
  out.set_status_code(row.status_code);
  out.set_duration_ms(row.duration_ms);
  out.set_error(printable(row.error, 256));
}

Outcome check_url(const Env& env, const std::string& url) {
  const std::string problem = check_webhook_url(url, env.webhook_options.allow_http);
  if (!problem.empty()) return api::invalid_argument("url", problem);
  return std::nullopt;
}

Outcome check_description(const std::string& text) {
  if (!is_valid_utf8(text))
    return api::invalid_argument("description", "description is not UTF-8.");
  if (utf8_chars(text) > kMaxDescriptionChars) {
    return api::invalid_argument("description",
                                 "description is longer than 256 characters; shorten it.");
  }
  for (unsigned char c : text) {
    if (c < 0x20 || c == 0x7f) {
      return api::invalid_argument("description",
                                   "description contains control characters; remove them.");
    }
  }
  return std::nullopt;
}

template <typename Repeated>
Outcome check_event_types(const Repeated& patterns, std::vector<std::string>& out) {
  if (patterns.size() > kMaxEventTypes) {
    return api::invalid_argument("event_types",
                                 "At most 64 event type patterns; use families such as "
                                 "\"broadcast.*\" or \"*\".");
  }
  out.clear();
  for (const std::string& p : patterns) {
    const std::string problem = check_webhook_event_pattern(p);
    if (!problem.empty()) return api::invalid_argument("event_types", problem);
    if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
  }
  return std::nullopt;
}

Outcome load_webhook(const CallContext& ctx, const Env& env, const std::string& id,
                     store::WebhookEndpoint& out) {
  std::string tenant;
  if (auto p = resolve_tenant(ctx, env, "", TenantNeed::kOptional, tenant)) return p;
  if (auto p = check_id("webhook_id", id, "wh_")) return p;
  auto row = env.store->get_webhook(tenant, id);
  if (!row.ok()) return store_problem(row.status(), "webhook", id);
  out = std::move(row).value();
  return std::nullopt;
}

Outcome parse_delivery_id(const std::string& text, int64_t& id) {
  bool ok = !text.empty() && text.size() <= 18;
  for (char c : text)
    ok = ok && c >= '0' && c <= '9';
  if (!ok || (id = std::stoll(text)) <= 0) {
    return api::invalid_argument("delivery_id",
                                 "delivery_id is a decimal number, e.g. \"42\" (the "
                                 "Counterlink-Delivery-Id header).");
  }
  return std::nullopt;
}

Outcome load_delivery(const CallContext& ctx, const Env& env, const std::string& text,
                      store::WebhookDelivery& out) {
  std::string tenant;
  if (auto p = resolve_tenant(ctx, env, "", TenantNeed::kOptional, tenant)) return p;
  int64_t id = 0;
  if (auto p = parse_delivery_id(text, id)) return p;
  auto row = env.store->get_webhook_delivery(tenant, id);
  if (!row.ok()) return store_problem(row.status(), "webhook_delivery", text);
  out = std::move(row).value();
  return std::nullopt;
}

store::Result<int64_t> end_of_log(const Env& env) {
  return latest_event_seq(*env.store, env.commands ? env.commands->events().last_seq() : 0);
}

// Moves a (disabled) endpoint's cursor to the end of the log, so enabling it
// does not send what happened while it was off.
store::Status skip_to_end(const Env& env, store::WebhookEndpoint& row) {
  for (int tries = 0; tries < 3; ++tries) {
    auto latest = end_of_log(env);
    if (!latest.ok()) return latest.status();
    if (latest.value() <= row.cursor_seq) return store::Status::Ok();
    auto status = env.store->enqueue_webhook_deliveries(row.id, row.cursor_seq, latest.value(), {});
    if (status.code != store::Code::kConflict) return status;
    auto fresh = env.store->get_webhook(row.tenant_id, row.id);
    if (!fresh.ok()) return fresh.status();
    row.cursor_seq = fresh.value().cursor_seq;
  }
  return store::Status{store::Code::kUnavailable, "endpoint cursor kept moving"};
}

}  // namespace

void register_webhook_service(api::ServiceRegistry& registry, EnvPtr env) {
  registry.unary<v1::CreateWebhookRequest, v1::CreateWebhookResponse>(
      "counterlink.v1.WebhookService.CreateWebhook",
      [env](CallContext& ctx, const v1::CreateWebhookRequest& req,
            v1::CreateWebhookResponse& resp) -> Outcome {
        std::string tenant;
        if (auto p = resolve_tenant(ctx, *env, req.tenant_id(), TenantNeed::kRequired, tenant)) {
          return p;
        }
        if (auto p = check_url(*env, req.url())) return p;
        if (auto p = check_description(req.description())) return p;
        store::WebhookEndpoint row;
        if (auto p = check_event_types(req.event_types(), row.event_types)) return p;
        store::Page page;
        page.limit = kMaxWebhooksPerTenant;
        auto existing = env->store->list_webhooks(tenant, page);
        if (!existing.ok()) return store_problem(existing.status(), "webhook", "");
        if (existing.value().items.size() >= kMaxWebhooksPerTenant) {
          api::Problem p = api::failed_precondition(
              "webhook_limit_reached",
              "The tenant has its maximum of 20 webhook endpoints; delete one, or subscribe an "
              "existing endpoint to more event types.");
          p.title = "Webhook limit reached";
          return p;
        }
        auto latest = end_of_log(*env);
        if (!latest.ok()) return store_problem(latest.status(), "webhook", "");
        row.created_ms = env->now();
        row.updated_ms = row.created_ms;
        row.id = new_resource_id("wh_", row.created_ms);
        row.tenant_id = tenant;
        row.url = req.url();
        row.description = req.description();
        row.disabled = req.disabled();
        row.cursor_seq = latest.value();  // from now on, no history
        const std::string secret = generate_webhook_secret();
        row.secret_sealed = seal_webhook_secrets(*env->keys, {secret, "", 0}, row.id);
        auto status = env->store->create_webhook(row);
        if (!status.ok()) return store_problem(status, "webhook", row.id);
        to_proto(row, *resp.mutable_webhook());
        resp.set_secret(secret);
        return std::nullopt;
      });

  registry.unary<v1::GetWebhookRequest, v1::Webhook>(
      "counterlink.v1.WebhookService.GetWebhook",
      [env](CallContext& ctx, const v1::GetWebhookRequest& req, v1::Webhook& resp) -> Outcome {
        store::WebhookEndpoint row;
        if (auto p = load_webhook(ctx, *env, req.webhook_id(), row)) return p;
        to_proto(row, resp);
        return std::nullopt;
      });

  registry.unary<v1::ListWebhooksRequest, v1::ListWebhooksResponse>(
      "counterlink.v1.WebhookService.ListWebhooks",
      [env](CallContext& ctx, const v1::ListWebhooksRequest& req,
            v1::ListWebhooksResponse& resp) -> Outcome {
        std::string tenant;
        if (auto p = resolve_tenant(ctx, *env, req.tenant_id(), TenantNeed::kOptional, tenant)) {
          return p;
        }
        store::Page page;
        if (auto p = page_limit(req.page_size(), page.limit)) return p;
        const std::string filters = "webhooks\n" + tenant;
        if (!req.page_token().empty()) {
          if (auto p = decode_page_token(req.page_token(), filters, page.after_id)) return p;
        }
        auto listing = env->store->list_webhooks(tenant, page);
        if (!listing.ok()) return store_problem(listing.status(), "webhook", "");
        for (const auto& row : listing.value().items)
          to_proto(row, *resp.add_webhooks());
        if (listing.value().more && !listing.value().items.empty()) {
          resp.set_next_page_token(encode_page_token(filters, listing.value().items.back().id));
        }
        return std::nullopt;
      });

  registry.unary<v1::UpdateWebhookRequest, v1::Webhook>(
      "counterlink.v1.WebhookService.UpdateWebhook",
      [env](CallContext& ctx, const v1::UpdateWebhookRequest& req, v1::Webhook& resp) -> Outcome {
        store::WebhookEndpoint row;
        if (auto p = load_webhook(ctx, *env, req.webhook_id(), row)) return p;
        if (req.has_url()) {
          if (auto p = check_url(*env, req.url())) return p;
          row.url = req.url();
        }
        if (req.has_description()) {
          if (auto p = check_description(req.description())) return p;
          row.description = req.description();
        }
        if (req.event_types_size() > 0) {
          if (auto p = check_event_types(req.event_types(), row.event_types)) return p;
        }
        if (req.has_disabled()) {
          if (row.disabled && !req.disabled()) {
            // Before it is enabled, so the dispatcher never sees it enabled
            // with the old cursor.
            auto status = skip_to_end(*env, row);
            if (!status.ok()) return store_problem(status, "webhook", row.id);
          }
          row.disabled = req.disabled();
        }
        row.updated_ms = env->now();
        auto status = env->store->update_webhook(row);
        if (!status.ok()) return store_problem(status, "webhook", row.id);
        to_proto(row, resp);
        return std::nullopt;
      });

  registry.unary<v1::DeleteWebhookRequest, google::protobuf::Empty>(
      "counterlink.v1.WebhookService.DeleteWebhook",
      [env](CallContext& ctx, const v1::DeleteWebhookRequest& req,
            google::protobuf::Empty&) -> Outcome {
        store::WebhookEndpoint row;
        if (auto p = load_webhook(ctx, *env, req.webhook_id(), row)) return p;
        auto status = env->store->delete_webhook(row.tenant_id, row.id);
        if (!status.ok()) return store_problem(status, "webhook", row.id);
        return std::nullopt;
      });

  registry.unary<v1::RotateWebhookSecretRequest, v1::RotateWebhookSecretResponse>(
      "counterlink.v1.WebhookService.RotateWebhookSecret",
      [env](CallContext& ctx, const v1::RotateWebhookSecretRequest& req,
            v1::RotateWebhookSecretResponse& resp) -> Outcome {
        if (req.grace_period_s() < 0 || req.grace_period_s() > kMaxGracePeriodS) {
          return api::invalid_argument("grace_period_s",
                                       "grace_period_s must be 0 to 86400 (24 hours).");
        }
        store::WebhookEndpoint row;
        if (auto p = load_webhook(ctx, *env, req.webhook_id(), row)) return p;
        const store::TimeMs now = env->now();
        WebhookSecrets secrets;
        secrets.current = generate_webhook_secret();
        if (req.grace_period_s() > 0) {
          // An old secret that no longer opens has nothing left to sign.
          if (auto old = open_webhook_secrets(*env->keys, row.secret_sealed, row.id)) {
            secrets.previous = old->current;
            secrets.previous_until_ms = now + int64_t{req.grace_period_s()} * 1000;
          }
        }
        row.secret_sealed = seal_webhook_secrets(*env->keys, secrets, row.id);
        row.updated_ms = now;
        auto status = env->store->update_webhook(row);
        if (!status.ok()) return store_problem(status, "webhook", row.id);
        to_proto(row, *resp.mutable_webhook());
        resp.set_secret(secrets.current);
        return std::nullopt;
      });

  registry.unary<v1::PingWebhookRequest, v1::PingWebhookResponse>(
      "counterlink.v1.WebhookService.PingWebhook",
      [env](CallContext& ctx, const v1::PingWebhookRequest& req,
            v1::PingWebhookResponse& resp) -> Outcome {
        store::WebhookEndpoint row;
        if (auto p = load_webhook(ctx, *env, req.webhook_id(), row)) return p;
        auto secrets = open_webhook_secrets(*env->keys, row.secret_sealed, row.id);
        if (!secrets) {
          return api::internal_error(
              "The endpoint's signing secret cannot be opened (its master key is missing from "
              "the server's configuration); rotate the secret.");
        }
        const WebhookResponse r = ping_webhook(row, *secrets, env->webhook_options, env->now());
        resp.set_success(r.outcome == WebhookOutcome::kSuccess);
        resp.set_status_code(r.status_code);
        resp.set_duration_ms(r.duration_ms);
        resp.set_error(printable(r.error, 256));
        resp.set_response_body(printable(r.body, kPingBodyBytes));
        return std::nullopt;
      });

  registry.unary<v1::ListWebhookDeliveriesRequest, v1::ListWebhookDeliveriesResponse>(
      "counterlink.v1.WebhookService.ListWebhookDeliveries",
      [env](CallContext& ctx, const v1::ListWebhookDeliveriesRequest& req,
            v1::ListWebhookDeliveriesResponse& resp) -> Outcome {
        store::WebhookEndpoint webhook;
        if (auto p = load_webhook(ctx, *env, req.webhook_id(), webhook)) return p;
        const std::string& state = req.state();
        if (!state.empty() && state != "pending" && state != "succeeded" && state != "failed") {
          return api::invalid_argument("state",
                                       "state must be pending, succeeded or failed (or absent).");
        }
        store::Page page;
        int32_t limit = 0;
        if (auto p = page_limit(req.page_size(), limit)) return p;
        const std::string filters = "webhook_deliveries\n" + webhook.id + "\n" + state;
        if (!req.page_token().empty()) {
          if (auto p = decode_page_token(req.page_token(), filters, page.after_id)) return p;
        }
        page.limit = state.empty() ? limit : 1000;
        bool more = false;
        int scanned = 0;
        for (;;) {
          auto listing = env->store->list_webhook_deliveries(webhook.tenant_id, webhook.id, page);
          if (!listing.ok()) return store_problem(listing.status(), "webhook", webhook.id);
          const auto& rows = listing.value().items;
          bool full = false;
          for (size_t i = 0; i < rows.size(); ++i) {
            page.after_id = std::to_string(rows[i].id);
            ++scanned;
            if (state.empty() || rows[i].state == state) to_proto(rows[i], *resp.add_deliveries());
            if (resp.deliveries_size() == limit) {
              more = i + 1 < rows.size() || listing.value().more;
              full = true;
              break;
            }
          }
          if (full) break;
          more = listing.value().more && !rows.empty();
          if (!more || scanned >= kMaxScannedDeliveries) break;
        }
        if (more) resp.set_next_page_token(encode_page_token(filters, page.after_id));
        return std::nullopt;
      });

  registry.unary<v1::GetWebhookDeliveryRequest, v1::WebhookDelivery>(
      "counterlink.v1.WebhookService.GetWebhookDelivery",
      [env](CallContext& ctx, const v1::GetWebhookDeliveryRequest& req,
            v1::WebhookDelivery& resp) -> Outcome {
        store::WebhookDelivery row;
        if (auto p = load_delivery(ctx, *env, req.delivery_id(), row)) return p;
        auto attempts = env->store->list_webhook_attempts(row.tenant_id, row.id);
        if (!attempts.ok()) {
          return store_problem(attempts.status(), "webhook_delivery", req.delivery_id());
        }
        to_proto(row, resp);
        for (const auto& a : attempts.value())
          to_proto(a, *resp.add_attempt_log());
        return std::nullopt;
      });

  registry.unary<v1::RedeliverWebhookDeliveryRequest, v1::WebhookDelivery>(
      "counterlink.v1.WebhookService.RedeliverWebhookDelivery",
      [env](CallContext& ctx, const v1::RedeliverWebhookDeliveryRequest& req,
            v1::WebhookDelivery& resp) -> Outcome {
        store::WebhookDelivery row;
        if (auto p = load_delivery(ctx, *env, req.delivery_id(), row)) return p;
        auto endpoint = env->store->get_webhook(row.tenant_id, row.endpoint_id);
        if (!endpoint.ok()) return store_problem(endpoint.status(), "webhook", row.endpoint_id);
        if (endpoint.value().disabled) {
          api::Problem p = api::failed_precondition(
              "webhook_disabled", "Webhook " + row.endpoint_id +
                                      " is disabled; enable it (PATCH disabled: false), then "
                                      "redeliver.");
          p.title = "Webhook disabled";
          return p;
        }
        const store::TimeMs now = env->now();
        auto status = env->store->reschedule_webhook_delivery(row.tenant_id, row.id, now);
        if (!status.ok()) return store_problem(status, "webhook_delivery", req.delivery_id());
        if (env->webhooks) env->webhooks->wake();
        row.state = "pending";
        row.next_attempt_ms = now;
        to_proto(row, resp);
        return std::nullopt;
      });
}

}  // namespace counterlink::platform::services
