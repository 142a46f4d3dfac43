// counterlink.v1.ProductService.
#include <google/protobuf/empty.pb.h>
#include <google/protobuf/util/json_util.h>

#include "counterlink/v1/products.pb.h"

#include "common.h"

namespace counterlink::platform::services {

namespace {

using api::CallContext;
using api::Outcome;

std::string capabilities_json(const v1::ProductCapabilities& caps) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(caps, &json, options);
  return json;
}

}  // namespace

void register_product_service(api::ServiceRegistry& registry, EnvPtr env) {
  registry.unary<v1::CreateProductRequest, v1::Product>(
      "counterlink.v1.ProductService.CreateProduct",
      [env](CallContext& ctx, const v1::CreateProductRequest& req, v1::Product& resp) -> Outcome {
        std::string tenant;
        if (auto p = resolve_tenant(ctx, *env, req.tenant_id(), TenantNeed::kRequired, tenant)) {
          return p;
        }
        if (auto p = check_name("name", req.name())) return p;
        if (req.type() == v1::product_type_unspecified || !v1::ProductType_IsValid(req.type())) {
          return api::invalid_argument("type",
                                       "type is required: speaker, printer, scanbox or generic.");
        }
        const std::string type = v1::ProductType_Name(req.type());
        if (auto p = check_capabilities(req.capabilities(), type, "capabilities.")) return p;
        store::Product row;
        row.created_ms = row.updated_ms = env->now();
        row.id = new_resource_id("pd_", row.created_ms);
        row.tenant_id = tenant;
        row.name = req.name();
        row.type = type;
        row.capabilities_json = capabilities_json(req.capabilities());
        auto status = env->store->create_product(row);
        if (!status.ok()) return store_problem(status, "product", row.id);
        to_proto(row, resp);
        return std::nullopt;
      });

  registry.unary<v1::GetProductRequest, v1::Product>(
      "counterlink.v1.ProductService.GetProduct",
      [env](CallContext& ctx, const v1::GetProductRequest& req, v1::Product& resp) -> Outcome {
        std::string tenant;
        if (auto p = resolve_tenant(ctx, *env, "", TenantNeed::kOptional, tenant)) return p;
        if (auto p = check_id("product_id", req.product_id(), "pd_")) return p;
        auto row = env->store->get_product(tenant, req.product_id());
        if (!row.ok()) return store_problem(row.status(), "product", req.product_id());
        to_proto(row.value(), resp);
        return std::nullopt;
      });

  registry.unary<v1::ListProductsRequest, v1::ListProductsResponse>(
      "counterlink.v1.ProductService.ListProducts",
      [env](CallContext& ctx, const v1::ListProductsRequest& req,
            v1::ListProductsResponse& resp) -> Outcome {
        std::string tenant;
        if (auto p = resolve_tenant(ctx, *env, req.tenant_id(), TenantNeed::kOptional, tenant)) {
          return p;
        }
        store::Page page;
        if (auto p = page_limit(req.page_size(), page.limit)) return p;
        const std::string filters = "products\n" + tenant;
        if (!req.page_token().empty()) {
          if (auto p = decode_page_token(req.page_token(), filters, page.after_id)) return p;
        }
        auto listing = env->store->list_products(tenant, page);
        if (!listing.ok()) return store_problem(listing.status(), "product", "");
        for (const auto& row : listing.value().items)
          to_proto(row, *resp.add_products());
        if (listing.value().more && !listing.value().items.empty()) {
          resp.set_next_page_token(encode_page_token(filters, listing.value().items.back().id));
        }
        return std::nullopt;
      });

  registry.unary<v1::UpdateProductRequest, v1::Product>(
      "counterlink.v1.ProductService.UpdateProduct",
      [env](CallContext& ctx, const v1::UpdateProductRequest& req, v1::Product& resp) -> Outcome {
        std::string tenant;
        if (auto p = resolve_tenant(ctx, *env, "", TenantNeed::kOptional, tenant)) return p;
        if (auto p = check_id("product_id", req.product_id(), "pd_")) return p;
        if (req.has_name()) {
          if (auto p = check_name("name", req.name())) return p;
        }
        auto current = env->store->get_product(tenant, req.product_id());
        if (!current.ok()) return store_problem(current.status(), "product", req.product_id());
        store::Product row = current.value();
        if (req.has_capabilities()) {
          if (auto p = check_capabilities(req.capabilities(), row.type, "capabilities.")) return p;
          row.capabilities_json = capabilities_json(req.capabilities());
        }
        if (req.has_name()) row.name = req.name();
        row.updated_ms = env->now();
        auto status = env->store->update_product(row);
        if (!status.ok()) return store_problem(status, "product", row.id);
        to_proto(row, resp);
        return std::nullopt;
      });

  registry.unary<v1::DeleteProductRequest, google::protobuf::Empty>(
      "counterlink.v1.ProductService.DeleteProduct",
      [env](CallContext& ctx, const v1::DeleteProductRequest& req,
            google::protobuf::Empty&) -> Outcome {
        std::string tenant;
        if (auto p = resolve_tenant(ctx, *env, "", TenantNeed::kOptional, tenant)) return p;
        if (auto p = check_id("product_id", req.product_id(), "pd_")) return p;
        // Operators delete in the product's own tenant.
        auto current = env->store->get_product(tenant, req.product_id());
        if (!current.ok()) return store_problem(current.status(), "product", req.product_id());
        auto status = env->store->delete_product(current.value().tenant_id, req.product_id());
        if (status.code == store::Code::kConflict) {
          api::Problem p = api::already_exists("product_has_devices",
                                               "The product still has devices; delete them first.");
          p.title = "Product has devices";
          return p;
        }
        if (!status.ok()) return store_problem(status, "product", req.product_id());
        return std::nullopt;
      });
}

}  // namespace counterlink::platform::services
