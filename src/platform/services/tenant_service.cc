// counterlink.v1.TenantService and counterlink.v1.MerchantService.
#include "counterlink/v1/tenants.pb.h"

#include "common.h"

namespace counterlink::platform::services {

namespace {

using api::CallContext;
using api::Outcome;

api::Outcome check_kind(std::string_view kind) {
  if (kind == "aggregator" || kind == "saas" || kind == "merchant_group" || kind == "other") {
    return std::nullopt;
  }
  return api::invalid_argument("kind", "kind must be aggregator, saas, merchant_group or other.");
}

api::Outcome check_quota(const char* field, int32_t value) {
  if (value < 0) return api::invalid_argument(field, std::string(field) + " must be >= 0.");
  return std::nullopt;
}

// The admin_only option makes the transports refuse tenant keys before the
// handler runs; this keeps the handlers safe when called another way.
api::Outcome require_admin(const CallContext& ctx) {
  if (ctx.principal.admin) return std::nullopt;
  return api::permission_denied("Tenant management needs an operator (admin) API key.");
}

}  // namespace

void register_tenant_service(api::ServiceRegistry& registry, EnvPtr env) {
  registry.unary<v1::CreateTenantRequest, v1::Tenant>(
      "counterlink.v1.TenantService.CreateTenant",
      [env](CallContext& ctx, const v1::CreateTenantRequest& req, v1::Tenant& resp) -> Outcome {
        if (auto p = require_admin(ctx)) return p;
        if (auto p = check_name("name", req.name())) return p;
        std::string kind = req.kind().empty() ? "other" : req.kind();
        if (auto p = check_kind(kind)) return p;
        if (auto p = check_quota("max_devices", req.max_devices())) return p;
        if (auto p = check_quota("api_rate_limit", req.api_rate_limit())) return p;
        store::Tenant row;
        row.created_ms = row.updated_ms = env->now();
        row.id = new_resource_id("tn_", row.created_ms);
        row.name = req.name();
        row.kind = kind;
        row.max_devices = req.max_devices();
        row.api_rate_limit = req.api_rate_limit();
        auto status = env->store->create_tenant(row);
        if (!status.ok()) return store_problem(status, "tenant", row.id);
        to_proto(row, resp);
        return std::nullopt;
      });

  registry.unary<v1::GetTenantRequest, v1::Tenant>(
      "counterlink.v1.TenantService.GetTenant",
      [env](CallContext& ctx, const v1::GetTenantRequest& req, v1::Tenant& resp) -> Outcome {
        if (auto p = require_admin(ctx)) return p;
        if (auto p = check_id("tenant_id", req.tenant_id(), "tn_")) return p;
        auto row = env->store->get_tenant(req.tenant_id());
        if (!row.ok()) return store_problem(row.status(), "tenant", req.tenant_id());
        to_proto(row.value(), resp);
        return std::nullopt;
      });

  registry.unary<v1::ListTenantsRequest, v1::ListTenantsResponse>(
      "counterlink.v1.TenantService.ListTenants",
      [env](CallContext& ctx, const v1::ListTenantsRequest& req,
            v1::ListTenantsResponse& resp) -> Outcome {
        if (auto p = require_admin(ctx)) return p;
        store::Page page;
        if (auto p = page_limit(req.page_size(), page.limit)) return p;
        const std::string filters = "tenants";
        if (!req.page_token().empty()) {
          if (auto p = decode_page_token(req.page_token(), filters, page.after_id)) return p;
        }
        auto listing = env->store->list_tenants(page);
        if (!listing.ok()) return store_problem(listing.status(), "tenant", "");
        for (const auto& row : listing.value().items)
          to_proto(row, *resp.add_tenants());
        if (listing.value().more && !listing.value().items.empty()) {
          resp.set_next_page_token(encode_page_token(filters, listing.value().items.back().id));
        }
        return std::nullopt;
      });

  registry.unary<v1::UpdateTenantRequest, v1::Tenant>(
      "counterlink.v1.TenantService.UpdateTenant",
      [env](CallContext& ctx, const v1::UpdateTenantRequest& req, v1::Tenant& resp) -> Outcome {
        if (auto p = require_admin(ctx)) return p;
        if (auto p = check_id("tenant_id", req.tenant_id(), "tn_")) return p;
        if (req.has_name()) {
          if (auto p = check_name("name", req.name())) return p;
        }
        if (req.has_kind()) {
          if (auto p = check_kind(req.kind())) return p;
        }
        if (req.has_max_devices()) {
          if (auto p = check_quota("max_devices", req.max_devices())) return p;
        }
        if (req.has_api_rate_limit()) {
          if (auto p = check_quota("api_rate_limit", req.api_rate_limit())) return p;
        }
        auto current = env->store->get_tenant(req.tenant_id());
        if (!current.ok()) return store_problem(current.status(), "tenant", req.tenant_id());
        store::Tenant row = current.value();
        if (req.has_name()) row.name = req.name();
        if (req.has_kind()) row.kind = req.kind();
        if (req.has_disabled()) row.disabled = req.disabled();
        if (req.has_max_devices()) row.max_devices = req.max_devices();
        if (req.has_api_rate_limit()) row.api_rate_limit = req.api_rate_limit();
        row.updated_ms = env->now();
        auto status = env->store->update_tenant(row);
        if (!status.ok()) return store_problem(status, "tenant", row.id);
        to_proto(row, resp);
        return std::nullopt;
      });
}

void register_merchant_service(api::ServiceRegistry& registry, EnvPtr env) {
  registry.unary<v1::CreateMerchantRequest, v1::Merchant>(
      "counterlink.v1.MerchantService.CreateMerchant",
      [env](CallContext& ctx, const v1::CreateMerchantRequest& req, v1::Merchant& resp) -> Outcome {
        std::string tenant;
        if (auto p = resolve_tenant(ctx, *env, req.tenant_id(), TenantNeed::kRequired, tenant)) {
          return p;
        }
        if (auto p = check_name("name", req.name())) return p;
        store::Merchant row;
        row.created_ms = env->now();
        row.id = new_resource_id("mc_", row.created_ms);
        row.tenant_id = tenant;
        row.name = req.name();
        auto status = env->store->create_merchant(row);
        if (!status.ok()) return store_problem(status, "merchant", row.id);
        to_proto(row, resp);
        return std::nullopt;
      });

  registry.unary<v1::GetMerchantRequest, v1::Merchant>(
      "counterlink.v1.MerchantService.GetMerchant",
      [env](CallContext& ctx, const v1::GetMerchantRequest& req, v1::Merchant& resp) -> Outcome {
        std::string tenant;
        if (auto p = resolve_tenant(ctx, *env, "", TenantNeed::kOptional, tenant)) return p;
        if (auto p = check_id("merchant_id", req.merchant_id(), "mc_")) return p;
        auto row = env->store->get_merchant(tenant, req.merchant_id());
        if (!row.ok()) return store_problem(row.status(), "merchant", req.merchant_id());
        to_proto(row.value(), resp);
        return std::nullopt;
      });

  registry.unary<v1::ListMerchantsRequest, v1::ListMerchantsResponse>(
      "counterlink.v1.MerchantService.ListMerchants",
      [env](CallContext& ctx, const v1::ListMerchantsRequest& req,
            v1::ListMerchantsResponse& resp) -> Outcome {
        std::string tenant;
        if (auto p = resolve_tenant(ctx, *env, req.tenant_id(), TenantNeed::kOptional, tenant)) {
          return p;
        }
        store::Page page;
        if (auto p = page_limit(req.page_size(), page.limit)) return p;
        const std::string filters = "merchants\n" + tenant;
        if (!req.page_token().empty()) {
          if (auto p = decode_page_token(req.page_token(), filters, page.after_id)) return p;
        }
        auto listing = env->store->list_merchants(tenant, page);
        if (!listing.ok()) return store_problem(listing.status(), "merchant", "");
        for (const auto& row : listing.value().items)
          to_proto(row, *resp.add_merchants());
        if (listing.value().more && !listing.value().items.empty()) {
          resp.set_next_page_token(encode_page_token(filters, listing.value().items.back().id));
        }
        return std::nullopt;
      });

  registry.unary<v1::CreateOutletRequest, v1::Outlet>(
      "counterlink.v1.MerchantService.CreateOutlet",
      [env](CallContext& ctx, const v1::CreateOutletRequest& req, v1::Outlet& resp) -> Outcome {
        std::string tenant;
        if (auto p = resolve_tenant(ctx, *env, "", TenantNeed::kOptional, tenant)) return p;
        if (auto p = check_id("merchant_id", req.merchant_id(), "mc_")) return p;
        if (auto p = check_name("name", req.name())) return p;
        if (auto p = check_address("address", req.address())) return p;
        // Operators create outlets in the merchant's tenant.
        auto merchant = env->store->get_merchant(tenant, req.merchant_id());
        if (!merchant.ok()) return store_problem(merchant.status(), "merchant", req.merchant_id());
        store::Outlet row;
        row.created_ms = env->now();
        row.id = new_resource_id("st_", row.created_ms);
        row.tenant_id = merchant.value().tenant_id;
        row.merchant_id = req.merchant_id();
        row.name = req.name();
        row.address = req.address();
        auto status = env->store->create_outlet(row);
        if (status.code == store::Code::kInvalid) {
          return not_found_problem("merchant", req.merchant_id(), "merchant_id");
        }
        if (!status.ok()) return store_problem(status, "outlet", row.id);
        to_proto(row, resp);
        return std::nullopt;
      });

  registry.unary<v1::GetOutletRequest, v1::Outlet>(
      "counterlink.v1.MerchantService.GetOutlet",
      [env](CallContext& ctx, const v1::GetOutletRequest& req, v1::Outlet& resp) -> Outcome {
        std::string tenant;
        if (auto p = resolve_tenant(ctx, *env, "", TenantNeed::kOptional, tenant)) return p;
        if (auto p = check_id("merchant_id", req.merchant_id(), "mc_")) return p;
        if (auto p = check_id("outlet_id", req.outlet_id(), "st_")) return p;
        auto row = env->store->get_outlet(tenant, req.outlet_id());
        if (!row.ok()) return store_problem(row.status(), "outlet", req.outlet_id());
        if (row.value().merchant_id != req.merchant_id()) {
          return not_found_problem("outlet", req.outlet_id());
        }
        to_proto(row.value(), resp);
        return std::nullopt;
      });

  registry.unary<v1::ListOutletsRequest, v1::ListOutletsResponse>(
      "counterlink.v1.MerchantService.ListOutlets",
      [env](CallContext& ctx, const v1::ListOutletsRequest& req,
            v1::ListOutletsResponse& resp) -> Outcome {
        std::string tenant;
        if (auto p = resolve_tenant(ctx, *env, req.tenant_id(), TenantNeed::kOptional, tenant)) {
          return p;
        }
        std::string merchant_id = req.merchant_id() == "-" ? "" : req.merchant_id();
        if (!merchant_id.empty()) {
          if (auto p = check_id("merchant_id", merchant_id, "mc_")) return p;
          auto merchant = env->store->get_merchant(tenant, merchant_id);
          if (!merchant.ok()) return store_problem(merchant.status(), "merchant", merchant_id);
        }
        store::Page page;
        if (auto p = page_limit(req.page_size(), page.limit)) return p;
        const std::string filters = "outlets\n" + tenant + "\n" + merchant_id;
        if (!req.page_token().empty()) {
          if (auto p = decode_page_token(req.page_token(), filters, page.after_id)) return p;
        }
        auto listing = env->store->list_outlets(tenant, merchant_id, page);
        if (!listing.ok()) return store_problem(listing.status(), "outlet", "");
        for (const auto& row : listing.value().items)
          to_proto(row, *resp.add_outlets());
        if (listing.value().more && !listing.value().items.empty()) {
          resp.set_next_page_token(encode_page_token(filters, listing.value().items.back().id));
        }
        return std::nullopt;
      });
}

}  // namespace counterlink::platform::services
