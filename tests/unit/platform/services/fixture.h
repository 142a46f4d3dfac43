// Test fixture: the platform services registered into a ServiceRegistry
// over a real SQLite store in a temp dir, with a settable clock.
#pragma once

#include <atomic>
#include <filesystem>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "counterlink/api/service.h"
#include "counterlink/platform/crypto.h"
#include "counterlink/platform/services.h"
#include "counterlink/platform/session_control.h"
#include "counterlink/store/store.h"
#include "counterlink/v1/devices.pb.h"
#include "counterlink/v1/products.pb.h"
#include "counterlink/v1/tenants.pb.h"

namespace counterlink::platform::testing {

class ServicesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    dir_ = std::filesystem::temp_directory_path() /
           ("cl_services_" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(dir_);
    store_ = store::open_store({"sqlite://" + (dir_ / "t.db").string(), 2});
    keys_ = std::make_unique<KeyRing>(std::map<std::string, std::string>{{"k1", random_bytes(32)}},
                                      "k1");
    PlatformDeps deps;
    deps.store = store_.get();
    deps.keys = keys_.get();
    deps.clock = [this] { return now_ms_.load(); };
    deps.sessions = &sessions_;
    deps.import = import_options_;
    register_platform_services(registry_, deps);
    admin_.admin = true;
    admin_.key_id = "ak_admin";
    tenant_a_ = make_tenant("Tenant A");
    tenant_b_ = make_tenant("Tenant B");
    a_.tenant_id = tenant_a_;
    a_.key_id = "ak_a";
    b_.tenant_id = tenant_b_;
    b_.key_id = "ak_b";
  }

  void TearDown() override {
    store_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Calls a unary method as `who`; the problem, if any.
  api::Outcome call(const std::string& method, const api::Principal& who,
                    const google::protobuf::Message& request, google::protobuf::Message& response) {
    const api::UnaryHandler* handler = registry_.find_unary("counterlink.v1." + method);
    EXPECT_NE(handler, nullptr) << method;
    if (!handler) return api::internal_error("no handler");
    api::CallContext ctx;
    ctx.method = "counterlink.v1." + method;
    ctx.transport = "rest";
    ctx.principal = who;
    response.Clear();  // the transports hand every call a fresh message
    return (*handler)(ctx, request, response);
  }

  std::string make_tenant(const std::string& name, int max_devices = 0) {
    v1::CreateTenantRequest req;
    req.set_name(name);
    req.set_kind("saas");
    req.set_max_devices(max_devices);
    v1::Tenant tenant;
    auto p = call("TenantService.CreateTenant", admin_, req, tenant);
    EXPECT_FALSE(p) << p->detail;
    return tenant.id();
  }

  std::string make_product(const api::Principal& who, v1::ProductType type = v1::speaker) {
    v1::CreateProductRequest req;
    req.set_name("SP-2");
    req.set_type(type);
    v1::Product product;
    auto p = call("ProductService.CreateProduct", who, req, product);
    EXPECT_FALSE(p) << p->detail;
    return product.id();
  }

  v1::CreateDeviceResponse make_device(const api::Principal& who, const std::string& product,
                                       const std::string& serial,
                                       std::map<std::string, std::string> labels = {}) {
    v1::CreateDeviceRequest req;
    req.set_product_id(product);
    req.set_serial(serial);
    for (auto& [k, v] : labels)
      (*req.mutable_labels())[k] = v;
    v1::CreateDeviceResponse resp;
    auto p = call("DeviceService.CreateDevice", who, req, resp);
    EXPECT_FALSE(p) << p->code << ": " << p->detail;
    return resp;
  }

  // Records which devices the services asked the gateway to disconnect.
  class RecordingSessions : public SessionControl {
   public:
    void disconnect_device(const std::string& device_id) override {
      std::lock_guard lock(mutex_);
      ids_.push_back(device_id);
    }
    std::vector<std::string> ids() {
      std::lock_guard lock(mutex_);
      return ids_;
    }

   private:
    std::mutex mutex_;
    std::vector<std::string> ids_;
  };

  std::vector<std::string> disconnected() { return sessions_.ids(); }

  std::filesystem::path dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<KeyRing> keys_;
  api::ServiceRegistry registry_;
  ImportOptions import_options_;
  std::atomic<store::TimeMs> now_ms_{1767225600000};  // 2026-01-01T00:00:00Z
  api::Principal admin_, a_, b_;
  std::string tenant_a_, tenant_b_;
  RecordingSessions sessions_;
};

}  // namespace counterlink::platform::testing
