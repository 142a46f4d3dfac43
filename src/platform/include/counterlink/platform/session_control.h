// How the API services end a device's live MQTT session when its access
// changes. The services hold a SessionControl; the app wires it to the
// gateway (GatewaySessionControl) or to nothing (tests, API-only processes).
//
// When to call disconnect_device(), after the change is committed:
//   - device disabled: yes. A reconnect is then refused (0x87 / code 5).
//   - device deleted:  yes. A reconnect is then refused (0x86 / code 4).
//   - secret rotated:  no. The live session was authenticated with the then
//     valid secret and is often how the new secret reaches the device; ending
//     it would strand a device that has not stored the new secret yet. The
//     new secret applies from the next CONNECT. To cut off a leaked secret
//     now: disable (ends the session), rotate, enable.
#pragma once

#include <string>

namespace counterlink::gateway {
class Gateway;
}

namespace counterlink::platform {

class SessionControl {
 public:
  virtual ~SessionControl() = default;
  // Ends the device's session on this node if it is connected; no-op
  // otherwise. Any thread; does not block.
  virtual void disconnect_device(const std::string& device_id) = 0;
};

// Closes the connection through the gateway (5.0: DISCONNECT 0x87 Not
// authorized). The gateway must outlive this object.
class GatewaySessionControl : public SessionControl {
 public:
  explicit GatewaySessionControl(gateway::Gateway& gateway) : gateway_(gateway) {}
  void disconnect_device(const std::string& device_id) override;

 private:
  gateway::Gateway& gateway_;
};

}  // namespace counterlink::platform
