// Device identity and access at the gateway: who may connect (signed MQTT
// credentials or X.509 client certificates, with failure rate limiting) and
// what a connected device may touch (its own topic namespace).
//
// Wiring (done once, in the app): pass a DeviceAuthenticator and a
// DeviceAuthorizer as gateway::Hooks. Non-device clients (operators' tools)
// can be let through by fallback hooks, e.g. the gateway's static users.
//
// Who is a device: a client whose client id has the device id form
// (is_device_id(), "dv_..."). DeviceAuthenticator accepts such a client only
// after proving it is that device, and never hands a client id or username
// starting with "dv_" to the fallback. DeviceAuthorizer relies on that
// invariant to decide from ClientInfo alone, in memory.
//
// Spec for firmware: docs/device-protocol.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "counterlink/gateway/hooks.h"
#include "counterlink/platform/clock.h"

namespace counterlink::store {
class Store;
}

namespace counterlink::platform {

class KeyRing;

// A token bucket of authentication failures.
struct FailureRateLimit {
  uint32_t failures = 10;     // failures allowed at once; 0 disables the limit
  int64_t window_ms = 60000;  // time for an empty bucket to refill completely
};

struct DeviceAuthConfig {
  // A credential's timestamp may differ from the server clock by at most
  // this much either way (clock skew plus connect latency).
  int64_t timestamp_window_ms = 300000;
  // Accepted credentials remembered for single use (per node). Above this
  // the credentials closest to expiry are forgotten first (counted).
  size_t replay_cache_entries = 200000;
  // Failure limits by source address (without port) and by device id. A
  // device whose bucket is empty is still looked up when it connects from an
  // address without recent failures, so failures sent in its name from
  // elsewhere cannot lock it out.
  FailureRateLimit per_address{10, 60000};
  FailureRateLimit per_device{5, 60000};
  size_t rate_limit_entries = 100000;  // per limiter
  // Accept a verified TLS client certificate whose CN equals the client id
  // (= device id) instead of a signed password.
  bool allow_certificates = true;
  // Store lookups run on this many threads, never on the gateway loops.
  unsigned lookup_threads = 2;
  // Lookups waiting for a thread; beyond this CONNECTs are refused with
  // "server unavailable" instead of queueing without bound.
  size_t lookup_queue = 4096;
  // Failure log lines per second; the rest are counted and summarised.
  uint32_t log_lines_per_second = 20;
};

// Authenticates devices against the store.
//
// CONNACK answers (5.0 reason / 3.1.1 return code):
//   accepted                                   0x00 / 0
//   unknown device, bad signature, malformed
//   username, client id != device id, timestamp
//   outside the window, credential replayed    0x86 / 4 (bad user name or password)
//   device disabled                            0x87 / 5 (not authorized)
//   too many recent failures                   0x9F / 3 (connection rate exceeded)
//   store unreachable, secret unreadable,
//   lookup queue full                          0x88 / 3 (server unavailable)
// The reason string (5.0) never says which check failed.
//
// Threading: authenticate() may be called from any gateway loop; it never
// blocks on I/O. `done` is called exactly once, on the calling thread (cheap
// refusals) or on a lookup thread. The destructor finishes queued lookups.
class DeviceAuthenticator : public gateway::Authenticator {
 public:
  // `fallback` (optional) decides clients that are not devices (client id
  // and username not starting with "dv_"); without it they are refused.
  DeviceAuthenticator(std::shared_ptr<store::Store> store, std::shared_ptr<const KeyRing> keys,
                      DeviceAuthConfig config = {},
                      std::shared_ptr<gateway::Authenticator> fallback = nullptr,
                      ClockMs clock = system_clock_ms);
  ~DeviceAuthenticator() override;
  DeviceAuthenticator(const DeviceAuthenticator&) = delete;
  DeviceAuthenticator& operator=(const DeviceAuthenticator&) = delete;

  void authenticate(const gateway::AuthRequest& request,
                    std::function<void(gateway::AuthResult)> done) override;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// The topic prefix a device owns: "devices/<device id>/".
std::string device_topic_prefix(std::string_view device_id);

// A device may publish to topics and subscribe to filters under
// "devices/<its id>/" only (so "devices/<id>/#" is fine; "#",
// "devices/+/x" and other devices' topics are not). Other clients go to
// `fallback` (optional; without it they are refused). Denials of devices are
// counted in counterlink_device_acl_denied_total{action}.
//
// Threading: any loop thread; in memory, no locks.
class DeviceAuthorizer : public gateway::Authorizer {
 public:
  explicit DeviceAuthorizer(std::shared_ptr<gateway::Authorizer> fallback = nullptr);
  bool authorize(const gateway::ClientInfo& client, gateway::Action action,
                 std::string_view topic) override;

 private:
  std::shared_ptr<gateway::Authorizer> fallback_;
};

}  // namespace counterlink::platform
