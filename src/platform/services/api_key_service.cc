// counterlink.v1.ApiKeyService.
#include "counterlink/platform/crypto.h"
#include "counterlink/v1/api_keys.pb.h"

#include "common.h"

namespace counterlink::platform::services {

namespace {
using api::CallContext;
using api::Outcome;
}  // namespace

void register_api_key_service(api::ServiceRegistry& registry, EnvPtr env) {
  registry.unary<v1::CreateApiKeyRequest, v1::CreateApiKeyResponse>(
      "counterlink.v1.ApiKeyService.CreateApiKey",
      [env](CallContext& ctx, const v1::CreateApiKeyRequest& req,
            v1::CreateApiKeyResponse& resp) -> Outcome {
        if (auto p = check_name("name", req.name())) return p;
        std::string scope = req.scope().empty() ? "tenant" : req.scope();
        if (scope != "tenant" && scope != "admin") {
          return api::invalid_argument("scope", "scope must be \"tenant\" or \"admin\".");
        }
        std::string tenant;
        if (scope == "admin") {
          if (!ctx.principal.admin) {
            return api::permission_denied("Only operator (admin) keys may create admin keys.");
          }
          if (!req.tenant_id().empty()) {
            return api::invalid_argument(
                "tenant_id", "An admin key belongs to no tenant; leave tenant_id empty.");
          }
        } else if (auto p =
                       resolve_tenant(ctx, *env, req.tenant_id(), TenantNeed::kRequired, tenant)) {
          return p;
        }
        store::ApiKey row;
        row.created_ms = env->now();
        row.id = new_resource_id("ak_", row.created_ms);
        row.tenant_id = tenant;
        row.scope = scope;
        row.name = req.name();
        const std::string secret = generate_api_key_secret();
        row.secret_hash = sha256(secret);
        row.signing_key_sealed = env->keys->seal(api_signing_key(secret), row.id);
        auto status = env->store->create_api_key(row);
        if (!status.ok()) return store_problem(status, "api_key", row.id);
        to_proto(row, *resp.mutable_api_key());
        resp.set_secret(secret);
        resp.set_token(row.id + "." + secret);
        return std::nullopt;
      });

  registry.unary<v1::ListApiKeysRequest, v1::ListApiKeysResponse>(
      "counterlink.v1.ApiKeyService.ListApiKeys",
      [env](CallContext& ctx, const v1::ListApiKeysRequest& req,
            v1::ListApiKeysResponse& resp) -> Outcome {
        std::string tenant;
        if (auto p = resolve_tenant(ctx, *env, req.tenant_id(), TenantNeed::kOptional, tenant)) {
          return p;
        }
        store::Page page;
        if (auto p = page_limit(req.page_size(), page.limit)) return p;
        const std::string filters = "api_keys\n" + tenant;
        if (!req.page_token().empty()) {
          if (auto p = decode_page_token(req.page_token(), filters, page.after_id)) return p;
        }
        auto listing = env->store->list_api_keys(tenant, page);
        if (!listing.ok()) return store_problem(listing.status(), "api_key", "");
        for (const auto& row : listing.value().items)
          to_proto(row, *resp.add_api_keys());
        if (listing.value().more && !listing.value().items.empty()) {
          resp.set_next_page_token(encode_page_token(filters, listing.value().items.back().id));
        }
        return std::nullopt;
      });

  registry.unary<v1::RevokeApiKeyRequest, v1::ApiKey>(
      "counterlink.v1.ApiKeyService.RevokeApiKey",
      [env](CallContext& ctx, const v1::RevokeApiKeyRequest& req, v1::ApiKey& resp) -> Outcome {
        std::string tenant;
        if (auto p = resolve_tenant(ctx, *env, "", TenantNeed::kOptional, tenant)) return p;
        if (auto p = check_id("key_id", req.key_id(), "ak_")) return p;
        auto key = env->store->get_api_key(req.key_id());
        if (!key.ok()) return store_problem(key.status(), "api_key", req.key_id());
        store::ApiKey row = key.value();
        // A tenant sees only its own keys (operator keys have no tenant).
        if (!ctx.principal.admin && row.tenant_id != tenant) {
          return not_found_problem("api_key", req.key_id());
        }
        if (row.revoked_ms == 0) {
          row.revoked_ms = env->now();
          auto status = env->store->revoke_api_key(row.tenant_id, row.id, row.revoked_ms);
          if (!status.ok()) return store_problem(status, "api_key", row.id);
        }
        to_proto(row, resp);
        return std::nullopt;
      });
}

}  // namespace counterlink::platform::services
