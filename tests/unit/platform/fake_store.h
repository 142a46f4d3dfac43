// An in-memory Store with just enough behaviour for the device-access tests:
// devices by id, presence events, and switches to make it fail or stall.
// Every other method answers kUnavailable.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <vector>

#include "counterlink/store/store.h"

namespace counterlink::platform::testing {

class FakeStore : public store::Store {
 public:
  void put_device(store::Device device) {
    std::lock_guard lock(mutex_);
    devices_[device.id] = std::move(device);
  }
  void set_disabled(const std::string& id, bool disabled) {
    std::lock_guard lock(mutex_);
    devices_.at(id).disabled = disabled;
  }
  std::vector<store::PresenceEvent> presence() {
    std::lock_guard lock(mutex_);
    return presence_;
  }
  std::vector<std::string> resets() {
    std::lock_guard lock(mutex_);
    return resets_;
  }
  // Stalls record_presence until release_presence().
  void hold_presence() {
    std::lock_guard lock(mutex_);
    held_ = true;
  }
  void release_presence() {
    {
      std::lock_guard lock(mutex_);
      held_ = false;
    }
    cv_.notify_all();
  }

  std::atomic<int> device_lookups{0};
  std::atomic<int> presence_calls{0};
  std::atomic<bool> unavailable{false};

  const char* kind() const override { return "fake"; }
  store::Status ping() override { return {}; }
  int schema_version() override { return 0; }

  store::Result<store::Device> get_device(const std::string& tenant_id,
                                          const std::string& id) override {
    ++device_lookups;
    if (unavailable) return store::Status{store::Code::kUnavailable, "fake outage"};
    std::lock_guard lock(mutex_);
    auto it = devices_.find(id);
    if (it == devices_.end() || (!tenant_id.empty() && it->second.tenant_id != tenant_id)) {
      return store::Status{store::Code::kNotFound, "no such device"};
    }
    return it->second;
  }
  store::Status record_presence(const store::PresenceEvent& event) override {
    ++presence_calls;
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return !held_; });
    if (unavailable) return store::Status{store::Code::kUnavailable, "fake outage"};
    if (devices_.count(event.device_id) == 0) {
      return store::Status{store::Code::kNotFound, "no such device"};
    }
    presence_.push_back(event);
    return {};
  }
  store::Status reset_presence(const std::string& node, store::TimeMs) override {
    if (unavailable) return store::Status{store::Code::kUnavailable, "fake outage"};
    std::lock_guard lock(mutex_);
    resets_.push_back(node);
    return {};
  }

  // ---- not used by these tests ----
  static store::Status no() { return store::Status{store::Code::kUnavailable, "not in fake"}; }
  store::Status create_tenant(const store::Tenant&) override { return no(); }
  store::Result<store::Tenant> get_tenant(const std::string&) override { return no(); }
  store::Status update_tenant(const store::Tenant&) override { return no(); }
  store::Result<store::Listing<store::Tenant>> list_tenants(const store::Page&) override {
    return no();
  }
  store::Status create_merchant(const store::Merchant&) override { return no(); }
  store::Result<store::Merchant> get_merchant(const std::string&, const std::string&) override {
    return no();
  }
  store::Result<store::Listing<store::Merchant>> list_merchants(const std::string&,
                                                                const store::Page&) override {
    return no();
  }
  store::Status create_outlet(const store::Outlet&) override { return no(); }
  store::Result<store::Outlet> get_outlet(const std::string&, const std::string&) override {
    return no();
  }
  store::Result<store::Listing<store::Outlet>> list_outlets(const std::string&, const std::string&,
                                                            const store::Page&) override {
    return no();
  }
  store::Status create_api_key(const store::ApiKey&) override { return no(); }
  store::Result<store::ApiKey> get_api_key(const std::string&) override { return no(); }
  store::Result<store::Listing<store::ApiKey>> list_api_keys(const std::string&,
                                                             const store::Page&) override {
    return no();
  }
  store::Status revoke_api_key(const std::string&, const std::string&, store::TimeMs) override {
    return no();
  }
  store::Status touch_api_key(const std::string&, store::TimeMs) override { return no(); }
  store::Status set_api_key_signing_key(const std::string&, const std::string&) override {
    return no();
  }
  store::Status create_product(const store::Product&) override { return no(); }
  store::Result<store::Product> get_product(const std::string&, const std::string&) override {
    return no();
  }
  store::Status update_product(const store::Product&) override { return no(); }
  store::Status delete_product(const std::string&, const std::string&) override { return no(); }
  store::Result<store::Listing<store::Product>> list_products(const std::string&,
                                                              const store::Page&) override {
    return no();
  }
  store::Status create_device(const store::Device&) override { return no(); }
  store::Result<std::vector<store::RowOutcome>> create_devices(
      const std::vector<store::Device>&) override {
    return no();
  }
  store::Result<store::Device> get_device_by_serial(const std::string&, const std::string&,
                                                    const std::string&) override {
    return no();
  }
  store::Status update_device(const store::Device&) override { return no(); }
  store::Status set_device_secret(const std::string&, const std::string&, const std::string&,
                                  store::TimeMs) override {
    return no();
  }
  store::Status delete_device(const std::string&, const std::string&) override { return no(); }
  store::Result<store::Listing<store::Device>> list_devices(const store::DeviceFilter&,
                                                            const store::Page&) override {
    return no();
  }
  store::Result<int64_t> count_devices(const std::string&) override { return no(); }
  store::Result<store::Listing<store::PresenceEvent>> list_presence(const std::string&,
                                                                    const std::string&,
                                                                    const store::Page&) override {
    return no();
  }
  store::Result<std::optional<store::IdempotencyRecord>> begin_idempotent(
      const store::IdempotencyRecord&) override {
    return no();
  }
  store::Status complete_idempotent(const std::string&, const std::string&, int32_t,
                                    const std::string&) override {
    return no();
  }
  store::Status abandon_idempotent(const std::string&, const std::string&) override { return no(); }
  store::Result<int64_t> expire_idempotent(store::TimeMs) override { return no(); }
  store::Result<std::vector<store::WriteOutcome>> apply_writes(
      const std::vector<store::Write>&) override {
    return no();
  }
  store::Result<store::Command> get_command(const std::string&, const std::string&) override {
    return no();
  }
  store::Result<store::Listing<store::Command>> list_commands(const store::CommandFilter&,
                                                              const store::Page&) override {
    return no();
  }
  store::Result<std::vector<store::Command>> pending_commands(const std::string&,
                                                              int32_t) override {
    return no();
  }
  store::Result<int64_t> count_pending_commands(const std::string&) override { return no(); }
  store::Result<std::vector<store::Command>> expired_commands(store::TimeMs, int32_t) override {
    return no();
  }
  store::Result<std::vector<store::Event>> subject_events(const std::string&,
                                                          const std::string&) override {
    return no();
  }
  store::Result<std::vector<store::Event>> list_events(const std::string&, int64_t,
                                                       int32_t) override {
    return no();
  }
  store::Result<store::Event> get_event(const std::string&, int64_t) override { return no(); }
  store::Result<int64_t> purge_history(store::TimeMs) override { return no(); }
  store::Status create_webhook(const store::WebhookEndpoint&) override { return no(); }
  store::Result<store::WebhookEndpoint> get_webhook(const std::string&,
                                                    const std::string&) override {
    return no();
  }
  store::Status update_webhook(const store::WebhookEndpoint&) override { return no(); }
  store::Status delete_webhook(const std::string&, const std::string&) override { return no(); }
  store::Result<store::Listing<store::WebhookEndpoint>> list_webhooks(const std::string&,
                                                                      const store::Page&) override {
    return no();
  }
  store::Status enqueue_webhook_deliveries(const std::string&, int64_t, int64_t,
                                           const std::vector<store::WebhookDelivery>&) override {
    return no();
  }
  store::Result<std::vector<store::WebhookDelivery>> due_webhook_deliveries(store::TimeMs,
                                                                            int32_t) override {
    return no();
  }
  store::Status record_webhook_attempt(const store::WebhookDelivery&,
                                       const store::WebhookAttempt&) override {
    return no();
  }
  store::Result<store::WebhookDelivery> get_webhook_delivery(const std::string&, int64_t) override {
    return no();
  }
  store::Result<store::Listing<store::WebhookDelivery>> list_webhook_deliveries(
      const std::string&, const std::string&, const store::Page&) override {
    return no();
  }
  store::Result<std::vector<store::WebhookAttempt>> list_webhook_attempts(const std::string&,
                                                                          int64_t) override {
    return no();
  }
  store::Status reschedule_webhook_delivery(const std::string&, int64_t, store::TimeMs) override {
    return no();
  }
  store::Status create_scan(const store::Scan&, store::TimeMs, store::Scan*) override {
    return no();
  }
  store::Result<store::Scan> get_scan(const std::string&, const std::string&) override {
    return no();
  }
  store::Status finish_scan(const store::Scan&, store::Scan*) override { return no(); }
  store::Result<std::vector<store::Scan>> overdue_scans(store::TimeMs, int32_t) override {
    return no();
  }
  store::Result<store::Listing<store::Scan>> list_scans(const std::string&, const std::string&,
                                                        const store::Page&) override {
    return no();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::map<std::string, store::Device> devices_;
  std::vector<store::PresenceEvent> presence_;
  std::vector<std::string> resets_;
  bool held_ = false;
};

}  // namespace counterlink::platform::testing
