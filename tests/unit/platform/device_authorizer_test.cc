#include <gtest/gtest.h>

#include "counterlink/obs/metrics.h"
#include "counterlink/platform/device_access.h"

namespace counterlink::platform {
namespace {

using gateway::Action;
using gateway::ClientInfo;

ClientInfo device(const std::string& id) {
  ClientInfo c;
  c.client_id = id;
  return c;
}

class AllowOpsAuthorizer : public gateway::Authorizer {
 public:
  bool authorize(const ClientInfo& c, Action, std::string_view) override {
    return c.client_id == "ops-tool";
  }
};

TEST(DeviceAuthorizer, DeviceMayUseItsOwnNamespace) {
  DeviceAuthorizer authz;
  ClientInfo me = device("dv_me");
  for (Action a : {Action::kPublish, Action::kSubscribe}) {
    EXPECT_TRUE(authz.authorize(me, a, "devices/dv_me/events"));
    EXPECT_TRUE(authz.authorize(me, a, "devices/dv_me/a/b/c"));
  }
  EXPECT_TRUE(authz.authorize(me, Action::kSubscribe, "devices/dv_me/#"));
  EXPECT_TRUE(authz.authorize(me, Action::kSubscribe, "devices/dv_me/+/status"));
}

TEST(DeviceAuthorizer, DeviceIsRefusedOutsideItsNamespace) {
  DeviceAuthorizer authz;
  ClientInfo me = device("dv_me");
  for (const char* topic :
       {"devices/dv_other/events", "devices/dv_me", "devices/dv_me/", "devices/dv_mex/events",
        "devices/dv_m/events", "devices/+/events", "devices/#", "#", "+/dv_me/events",
        "other/topic", "$SYS/x", "Devices/dv_me/x"}) {
    EXPECT_FALSE(authz.authorize(me, Action::kSubscribe, topic)) << topic;
    EXPECT_FALSE(authz.authorize(me, Action::kPublish, topic)) << topic;
  }
}

TEST(DeviceAuthorizer, CountsDenialsByAction) {
  DeviceAuthorizer authz;
  auto denied = [](const char* action) {
    return obs::metrics().value("counterlink_device_acl_denied_total", {{"action", action}});
  };
  int64_t pub = denied("publish"), sub = denied("subscribe");
  authz.authorize(device("dv_me"), Action::kPublish, "devices/dv_x/y");
  authz.authorize(device("dv_me"), Action::kSubscribe, "#");
  authz.authorize(device("dv_me"), Action::kSubscribe, "#");
  EXPECT_EQ(denied("publish"), pub + 1);
  EXPECT_EQ(denied("subscribe"), sub + 2);
}

TEST(DeviceAuthorizer, NonDevicesGoToTheFallbackOrAreRefused) {
  DeviceAuthorizer without;
  EXPECT_FALSE(without.authorize(device("ops-tool"), Action::kSubscribe, "devices/#"));
  DeviceAuthorizer with(std::make_shared<AllowOpsAuthorizer>());
  EXPECT_TRUE(with.authorize(device("ops-tool"), Action::kSubscribe, "devices/#"));
  EXPECT_FALSE(with.authorize(device("someone"), Action::kSubscribe, "devices/#"));
  // Malformed device ids never reach the fallback.
  EXPECT_FALSE(with.authorize(device("dv_a/b"), Action::kSubscribe, "devices/dv_a/b/x"));
}

}  // namespace
}  // namespace counterlink::platform
