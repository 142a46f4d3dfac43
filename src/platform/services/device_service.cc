// counterlink.v1.DeviceService (everything but ImportDevices, which is in
// device_import.cc).
#include <google/protobuf/empty.pb.h>

#include "counterlink/platform/crypto.h"
#include "counterlink/v1/devices.pb.h"

#include "devices.h"

namespace counterlink::platform::services {

namespace {

using api::CallContext;
using api::Outcome;

Outcome write_device(const Env& env, store::Device& device) {
  device.updated_ms = env.now();
  auto status = env.store->update_device(device);
  if (!status.ok()) return store_problem(status, "device", device.id);
  return std::nullopt;
}

api::Problem serial_taken(const std::string& serial) {
  api::Problem p =
      api::already_exists("serial_taken", "A device of this product already has serial \"" +
                                              serial + "\"; serials are unique per product.");
  p.title = "Serial taken";
  p.field = "serial";
  return p;
}

Outcome set_disabled(const CallContext& ctx, const Env& env, const std::string& device_id,
                     bool disabled, v1::Device& resp) {
  store::Device device;
  if (auto p = load_device(ctx, env, device_id, device)) return p;
  if (device.disabled != disabled) {
    device.disabled = disabled;
    if (auto p = write_device(env, device)) return p;
  }
  // Also when it was disabled already: a session that slipped in between
  // (another node's cache) is closed.
  if (disabled) env.disconnect(device.id);
  to_proto(device, resp);
  return std::nullopt;
}

// Canonical filter string of ListDevices (binds page tokens to filters).
std::string device_filters(const store::DeviceFilter& f) {
  std::string s = "devices\ntenant=" + f.tenant_id + "\nproduct=" + f.product_id +
                  "\ntype=" + f.product_type + "\nmerchant=" + f.merchant_id +
                  "\noutlet=" + f.outlet_id + "\nserial=" + f.serial +
                  "\nserial_prefix=" + f.serial_prefix + "\nfirmware=" + f.firmware_version;
  s += "\nonline=" + std::string(f.online ? (*f.online ? "1" : "0") : "-");
  s += "\ndisabled=" + std::string(f.disabled ? (*f.disabled ? "1" : "0") : "-");
  for (const auto& [key, value] : f.labels)
    s += "\nlabel=" + key + "=" + value;
  return s;
}

}  // namespace

std::mutex& device_quota_mutex() {
  static std::mutex mutex;
  return mutex;
}

Outcome tenant_device_quota(const Env& env, const std::string& tenant, int64_t& max_devices) {
  auto row = env.store->get_tenant(tenant);
  if (!row.ok()) return store_problem(row.status(), "tenant", tenant);
  max_devices = row.value().max_devices;
  return std::nullopt;
}

Outcome resolve_placement(const Env& env, const std::string& tenant, std::string& merchant_id,
                          std::string& outlet_id) {
  if (auto p = check_optional_id("merchant_id", merchant_id, "mc_")) return p;
  if (auto p = check_optional_id("outlet_id", outlet_id, "st_")) return p;
  if (!outlet_id.empty()) {
    auto outlet = env.store->get_outlet(tenant, outlet_id);
    if (!outlet.ok()) {
      if (outlet.status().code == store::Code::kNotFound) {
        return not_found_problem("outlet", outlet_id, "outlet_id");
      }
      return store_problem(outlet.status(), "outlet", outlet_id);
    }
    if (merchant_id.empty()) {
      merchant_id = outlet.value().merchant_id;
    } else if (merchant_id != outlet.value().merchant_id) {
      return api::invalid_argument(
          "outlet_id",
          "Outlet \"" + outlet_id + "\" belongs to another merchant than \"" + merchant_id + "\".");
    }
    return std::nullopt;
  }
  if (!merchant_id.empty()) {
    auto merchant = env.store->get_merchant(tenant, merchant_id);
    if (!merchant.ok()) {
      if (merchant.status().code == store::Code::kNotFound) {
        return not_found_problem("merchant", merchant_id, "merchant_id");
      }
      return store_problem(merchant.status(), "merchant", merchant_id);
    }
  }
  return std::nullopt;
}

void register_device_service(api::ServiceRegistry& registry, EnvPtr env) {
  registry.unary<v1::CreateDeviceRequest, v1::CreateDeviceResponse>(
      "counterlink.v1.DeviceService.CreateDevice",
      [env](CallContext& ctx, const v1::CreateDeviceRequest& req,
            v1::CreateDeviceResponse& resp) -> Outcome {
        std::string tenant;
        if (auto p = resolve_tenant(ctx, *env, req.tenant_id(), TenantNeed::kRequired, tenant)) {
          return p;
        }
        if (auto p = check_id("product_id", req.product_id(), "pd_")) return p;
        if (auto p = check_serial("serial", req.serial())) return p;
        std::map<std::string, std::string> labels(req.labels().begin(), req.labels().end());
        if (auto p = check_labels("labels", labels)) return p;
        if (auto p = check_firmware_version("firmware_version", req.firmware_version())) return p;
        if (!req.secret().empty()) {
          if (auto p = check_device_secret("secret", req.secret())) return p;
        }
        auto product = env->store->get_product(tenant, req.product_id());
        if (!product.ok()) {
          if (product.status().code == store::Code::kNotFound) {
            return not_found_problem("product", req.product_id(), "product_id");
          }
          return store_problem(product.status(), "product", req.product_id());
        }
        store::Device row;
        row.tenant_id = tenant;
        row.product_id = req.product_id();
        row.serial = req.serial();
        row.merchant_id = req.merchant_id();
        row.outlet_id = req.outlet_id();
        if (auto p = resolve_placement(*env, tenant, row.merchant_id, row.outlet_id)) return p;
        row.labels = std::move(labels);
        row.firmware_version = req.firmware_version();
        row.created_ms = row.updated_ms = env->now();
        row.id = new_resource_id("dv_", row.created_ms);
        const std::string secret = req.secret().empty() ? generate_device_secret() : req.secret();
        row.secret_sealed = env->keys->seal(secret, row.id);

        int64_t max_devices = 0;
        if (auto p = tenant_device_quota(*env, tenant, max_devices)) return p;
        store::Status status;
        if (max_devices > 0) {
          std::lock_guard lock(device_quota_mutex());
          auto count = env->store->count_devices(tenant);
          if (!count.ok()) return store_problem(count.status(), "device", "");
          if (count.value() >= max_devices) return device_quota_problem(max_devices);
          status = env->store->create_device(row);
        } else {
          status = env->store->create_device(row);
        }
        if (status.code == store::Code::kConflict) return serial_taken(row.serial);
        if (status.code == store::Code::kInvalid) {
          return not_found_problem("product", req.product_id(), "product_id");
        }
        if (!status.ok()) return store_problem(status, "device", row.id);
        to_proto(row, *resp.mutable_device());
        if (req.secret().empty()) resp.set_secret(secret);
        return std::nullopt;
      });

  registry.unary<v1::GetDeviceRequest, v1::Device>(
      "counterlink.v1.DeviceService.GetDevice",
      [env](CallContext& ctx, const v1::GetDeviceRequest& req, v1::Device& resp) -> Outcome {
        store::Device device;
        if (auto p = load_device(ctx, *env, req.device_id(), device)) return p;
        to_proto(device, resp);
        return std::nullopt;
      });

  registry.unary<v1::UpdateDeviceRequest, v1::Device>(
      "counterlink.v1.DeviceService.UpdateDevice",
      [env](CallContext& ctx, const v1::UpdateDeviceRequest& req, v1::Device& resp) -> Outcome {
        if (auto p = check_id("device_id", req.device_id(), "dv_")) return p;
        std::map<std::string, std::string> labels(req.labels().begin(), req.labels().end());
        if (auto p = check_labels("labels", labels)) return p;
        if (req.replace_labels() && req.remove_labels_size() > 0) {
          return api::invalid_argument(
              "remove_labels", "remove_labels cannot be combined with replace_labels: true.");
        }
        for (const auto& key : req.remove_labels()) {
          if (auto p = check_label_key("remove_labels", key)) return p;
        }
        if (req.has_firmware_version()) {
          if (auto p = check_firmware_version("firmware_version", req.firmware_version())) {
            return p;
          }
        }
        store::Device device;
        if (auto p = load_device(ctx, *env, req.device_id(), device)) return p;

        if (req.replace_labels()) {
          device.labels = std::move(labels);
        } else {
          for (const auto& key : req.remove_labels())
            device.labels.erase(key);
          for (auto& [key, value] : labels)
            device.labels[key] = value;
          if (auto p = check_labels("labels", device.labels)) return p;
        }
        if (req.has_firmware_version()) device.firmware_version = req.firmware_version();
        if (req.has_merchant_id() || req.has_outlet_id()) {
          std::string merchant = req.has_merchant_id() ? req.merchant_id() : device.merchant_id;
          std::string outlet = req.has_outlet_id() ? req.outlet_id() : device.outlet_id;
          // Moving to another merchant leaves the old outlet unless one is given.
          if (req.has_merchant_id() && !req.has_outlet_id() && merchant != device.merchant_id) {
            outlet.clear();
          }
          // An outlet given alone decides the merchant.
          if (req.has_outlet_id() && !req.has_merchant_id() && !outlet.empty()) merchant.clear();
          if (auto p = resolve_placement(*env, device.tenant_id, merchant, outlet)) return p;
          device.merchant_id = merchant;
          device.outlet_id = outlet;
        }
        if (auto p = write_device(*env, device)) return p;
        to_proto(device, resp);
        return std::nullopt;
      });

  registry.unary<v1::DisableDeviceRequest, v1::Device>(
      "counterlink.v1.DeviceService.DisableDevice",
      [env](CallContext& ctx, const v1::DisableDeviceRequest& req, v1::Device& resp) -> Outcome {
        return set_disabled(ctx, *env, req.device_id(), true, resp);
      });

  registry.unary<v1::EnableDeviceRequest, v1::Device>(
      "counterlink.v1.DeviceService.EnableDevice",
      [env](CallContext& ctx, const v1::EnableDeviceRequest& req, v1::Device& resp) -> Outcome {
        return set_disabled(ctx, *env, req.device_id(), false, resp);
      });

  registry.unary<v1::DeleteDeviceRequest, google::protobuf::Empty>(
      "counterlink.v1.DeviceService.DeleteDevice",
      [env](CallContext& ctx, const v1::DeleteDeviceRequest& req,
            google::protobuf::Empty&) -> Outcome {
        store::Device device;
        if (auto p = load_device(ctx, *env, req.device_id(), device)) return p;
        auto status = env->store->delete_device(device.tenant_id, device.id);
        if (!status.ok()) return store_problem(status, "device", device.id);
        env->disconnect(device.id);
        return std::nullopt;
      });

  registry.unary<v1::RotateDeviceSecretRequest, v1::RotateDeviceSecretResponse>(
      "counterlink.v1.DeviceService.RotateDeviceSecret",
      [env](CallContext& ctx, const v1::RotateDeviceSecretRequest& req,
            v1::RotateDeviceSecretResponse& resp) -> Outcome {
        store::Device device;
        if (auto p = load_device(ctx, *env, req.device_id(), device)) return p;
        const std::string secret = generate_device_secret();
        device.updated_ms = env->now();
        auto status = env->store->set_device_secret(
            device.tenant_id, device.id, env->keys->seal(secret, device.id), device.updated_ms);
        if (!status.ok()) return store_problem(status, "device", device.id);
        // The live session stays (session_control.h: it may be how the new
        // secret reaches the device); the old secret fails from the next
        // CONNECT. Disable + rotate + enable cuts a leaked secret off now.
        to_proto(device, *resp.mutable_device());
        resp.set_secret(secret);
        return std::nullopt;
      });

  registry.unary<v1::ListDevicesRequest, v1::ListDevicesResponse>(
      "counterlink.v1.DeviceService.ListDevices",
      [env](CallContext& ctx, const v1::ListDevicesRequest& req,
            v1::ListDevicesResponse& resp) -> Outcome {
        store::DeviceFilter filter;
        if (auto p = resolve_tenant(ctx, *env, req.tenant_id(), TenantNeed::kOptional,
                                    filter.tenant_id)) {
          return p;
        }
        store::Page page;
        if (auto p = page_limit(req.page_size(), page.limit)) return p;
        if (auto p = check_optional_id("product_id", req.product_id(), "pd_")) return p;
        if (auto p = check_optional_id("merchant_id", req.merchant_id(), "mc_")) return p;
        if (auto p = check_optional_id("outlet_id", req.outlet_id(), "st_")) return p;
        if (!req.serial().empty()) {
          if (auto p = check_serial("serial", req.serial())) return p;
        }
        if (auto p = check_serial_prefix("serial_prefix", req.serial_prefix())) return p;
        if (auto p = check_firmware_version("firmware_version", req.firmware_version())) return p;
        if (!v1::ProductType_IsValid(req.type())) {
          return api::invalid_argument("type",
                                       "type must be speaker, printer, scanbox or generic.");
        }
        filter.product_id = req.product_id();
        if (req.type() != v1::product_type_unspecified) {
          filter.product_type = v1::ProductType_Name(req.type());
        }
        filter.merchant_id = req.merchant_id();
        filter.outlet_id = req.outlet_id();
        filter.serial = req.serial();
        filter.serial_prefix = req.serial_prefix();
        filter.firmware_version = req.firmware_version();
        if (req.has_online()) filter.online = req.online();
        if (req.has_disabled()) filter.disabled = req.disabled();
        for (const auto& pair : req.label()) {
          size_t eq = pair.find('=');
          if (eq == std::string::npos) {
            return api::invalid_argument("label", "label filters are key=value, e.g. region=east.");
          }
          std::string key = pair.substr(0, eq);
          if (auto p = check_label_key("label", key)) return p;
          if (filter.labels.count(key)) {
            return api::invalid_argument("label", "Label \"" + key + "\" is filtered twice.");
          }
          filter.labels.emplace(std::move(key), pair.substr(eq + 1));
        }
        const std::string filters = device_filters(filter);
        if (!req.page_token().empty()) {
          if (auto p = decode_page_token(req.page_token(), filters, page.after_id)) return p;
        }
        auto listing = env->store->list_devices(filter, page);
        if (!listing.ok()) return store_problem(listing.status(), "device", "");
        for (const auto& row : listing.value().items)
          to_proto(row, *resp.add_devices());
        if (listing.value().more && !listing.value().items.empty()) {
          resp.set_next_page_token(encode_page_token(filters, listing.value().items.back().id));
        }
        return std::nullopt;
      });

  registry.add_upload("counterlink.v1.DeviceService.ImportDevices",
                      [env] { return make_import_handler(env); });

  registry.unary<v1::GetDevicePresenceRequest, v1::DevicePresence>(
      "counterlink.v1.DeviceService.GetDevicePresence",
      [env](CallContext& ctx, const v1::GetDevicePresenceRequest& req,
            v1::DevicePresence& resp) -> Outcome {
        store::Device device;
        if (auto p = load_device(ctx, *env, req.device_id(), device)) return p;
        to_proto_presence(device, resp);
        return std::nullopt;
      });

  registry.unary<v1::ListPresenceHistoryRequest, v1::ListPresenceHistoryResponse>(
      "counterlink.v1.DeviceService.ListPresenceHistory",
      [env](CallContext& ctx, const v1::ListPresenceHistoryRequest& req,
            v1::ListPresenceHistoryResponse& resp) -> Outcome {
        store::Device device;
        if (auto p = load_device(ctx, *env, req.device_id(), device)) return p;
        store::Page page;
        if (auto p = page_limit(req.page_size(), page.limit)) return p;
        const std::string filters = "presence\n" + device.id;
        if (!req.page_token().empty()) {
          if (auto p = decode_page_token(req.page_token(), filters, page.after_id)) return p;
          for (char c : page.after_id) {
            if (c < '0' || c > '9') {
              return invalid_page_token_problem("page_token is damaged; omit it to start again.");
            }
          }
        }
        auto listing = env->store->list_presence(device.tenant_id, device.id, page);
        if (!listing.ok()) return store_problem(listing.status(), "device", device.id);
        for (const auto& event : listing.value().items) {
          auto* out = resp.add_events();
          out->set_online(event.online);
          set_time(out->mutable_time(), event.at_ms);
          out->set_remote_address(event.remote_address);
          out->set_protocol_version(event.protocol_version);
          out->set_gateway_node(event.gateway_node);
          out->set_reason(event.reason);
        }
        if (listing.value().more && !listing.value().items.empty()) {
          resp.set_next_page_token(
              encode_page_token(filters, std::to_string(listing.value().items.back().seq)));
        }
        return std::nullopt;
      });

  registry.unary<v1::GetConnectionInfoRequest, v1::ConnectionInfo>(
      "counterlink.v1.DeviceService.GetConnectionInfo",
      [env](CallContext& ctx, const v1::GetConnectionInfoRequest& req,
            v1::ConnectionInfo& resp) -> Outcome {
        store::Device device;
        if (auto p = load_device(ctx, *env, req.device_id(), device)) return p;
        if (!env->connection_info) {
          api::Problem p = api::unavailable(
              "This server has no MQTT gateway configured, so there is no connection info; ask "
              "the operator which gateway to use.");
          p.code = "connection_info_unavailable";
          p.retry_after_s = 0;
          return p;
        }
        DeviceConnectionInfo info = env->connection_info->connection_info(device);
        resp.set_device_id(device.id);
        for (const auto& endpoint : info.endpoints) {
          auto* out = resp.add_endpoints();
          out->set_scheme(endpoint.scheme);
          out->set_host(endpoint.host);
          out->set_port(endpoint.port);
          out->set_tls(endpoint.tls);
          out->set_path(endpoint.path);
        }
        resp.set_client_id(device.id);
        resp.set_username_format(info.username_format);
        resp.set_password_format(info.password_format);
        resp.set_topic_prefix(info.topic_prefix);
        resp.set_command_topic(info.command_topic);
        resp.set_timestamp_window_s(info.timestamp_window_s);
        for (const auto& version : info.protocol_versions)
          resp.add_protocol_versions(version);
        return std::nullopt;
      });
}

}  // namespace counterlink::platform::services
