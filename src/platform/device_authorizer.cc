#include <spdlog/spdlog.h>

#include "counterlink/platform/device_access.h"
#include "counterlink/platform/device_credential.h"

#include "device_metrics.h"

namespace counterlink::platform {

std::string device_topic_prefix(std::string_view device_id) {
  std::string out = "devices/";
  out.append(device_id);
  out.push_back('/');
  return out;
}

DeviceAuthorizer::DeviceAuthorizer(std::shared_ptr<gateway::Authorizer> fallback)
    : fallback_(std::move(fallback)) {
  device_access_metrics();  // register the counters at start-up, not on the first denial
}

bool DeviceAuthorizer::authorize(const gateway::ClientInfo& client, gateway::Action action,
                                 std::string_view topic) {
  const std::string& id = client.client_id;
  if (is_device_id(id)) {
    // A device id has no '/', '+' or '#', so the prefix is literal: every
    // topic or filter starting with it stays inside the namespace.
    const size_t n = std::string_view("devices/").size();
    bool allowed = topic.size() > n + id.size() + 1 && topic.substr(0, n) == "devices/" &&
                   topic.substr(n, id.size()) == id && topic[n + id.size()] == '/';
    if (!allowed) {
      auto& m = device_access_metrics();
      (action == gateway::Action::kPublish ? m.acl_denied_publish : m.acl_denied_subscribe).inc();
      spdlog::debug("device_acl.denied device={} action={} topic={}", id,
                    action == gateway::Action::kPublish ? "publish" : "subscribe", log_safe(topic));
    }
    return allowed;
  }
  // "dv_..." ids that are not valid device ids never authenticate; refuse
  // them here too rather than trusting the fallback with them.
  if (id.substr(0, kDeviceIdPrefix.size()) == kDeviceIdPrefix) return false;
  return fallback_ && fallback_->authorize(client, action, topic);
}

}  // namespace counterlink::platform
