// The device simulator: a fleet of payment speakers, receipt printers and
// scan boxes that speak the real device protocol (docs/device-protocol.md)
// to a Counterlink gateway. Used by `counterlink sim`, by tests, and by a
// demo server that wants live devices in-process.
//
// Two separable halves:
//   provision()  registers the devices through the public REST API and
//                learns their secrets (blocking, libcurl, calling thread);
//   Fleet        connects them over MQTT and behaves like firmware, on one
//                thread of its own.
// A test that has ids and secrets already (or a gateway that accepts any
// credential) skips provision() and builds SimDevice values itself.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace counterlink::sim {

enum class DeviceKind : uint8_t { kSpeaker, kPrinter, kScanBox };
// "speaker", "printer", "scanbox": the product type names of the API.
const char* to_string(DeviceKind kind);

// One device the fleet runs.
struct SimDevice {
  std::string id;      // dv_..., also the MQTT client id
  std::string secret;  // the 32-character device secret
  DeviceKind kind = DeviceKind::kSpeaker;
  std::string serial;  // SIM-SPK-000001, for logs (may be empty)
};

// ---- Provisioning (REST) ------------------------------------------------------

struct ProvisionOptions {
  std::string api_url = "http://127.0.0.1:8080";
  // A tenant API key (ak_....sk_...), or an operator key together with
  // `tenant`.
  std::string token;
  std::string tenant;  // tn_..., for operator keys; empty for tenant keys
  uint32_t speakers = 0;
  uint32_t printers = 0;
  uint32_t scanboxes = 0;
  std::string serial_prefix = "SIM";  // serials <prefix>-SPK-000001, ...
  // Devices missing from the API are created with one bulk import instead
  // of one call each when at least this many are missing.
  uint32_t bulk_threshold = 50;
  // Progress lines ("provision: 1200/5000 devices") go here; may be empty.
  std::function<void(const std::string&)> progress;
};

struct Provisioned {
  std::vector<SimDevice> devices;  // speakers, then printers, then scan boxes
  // The plain-TCP MQTT endpoint from the API's connection-info, if the
  // server reported one (empty host otherwise).
  std::string mqtt_host;
  uint16_t mqtt_port = 0;
};

// Ensures the three products ("Simulated speaker", "Simulated printer",
// "Simulated scan box") and the devices exist, and learns a fresh secret for
// every device: from its creation, or by rotating the secret of a device
// that existed already. Blocking; throws std::runtime_error with a message
// that says what to do when the API refuses (bad token, quota, no tenant).
Provisioned provision(const ProvisionOptions& options);

// ---- The fleet (MQTT) -----------------------------------------------------------

// Username and password for one CONNECT of `device`, signed at `timestamp_ms`.
struct Credential {
  std::string username;
  std::string password;
};
using CredentialFunction = std::function<Credential(const SimDevice& device, int64_t timestamp_ms)>;

struct FleetOptions {
  std::string mqtt_host = "127.0.0.1";
  uint16_t mqtt_port = 1883;
  int mqtt_version = 4;        // 4 = 3.1.1, 5 = 5.0
  uint16_t keep_alive_s = 60;  // the protocol asks for 60..300
  // false: persistent sessions (commands queued while a device is offline
  // reach it when it returns); true: a clean session per connection.
  bool clean_start = false;
  uint32_t session_expiry_s = 86400;  // 5.0 persistent sessions only

  // Device behaviour.
  int64_t play_ms = 0;           // how long a broadcast takes to announce
  int64_t print_ms = 0;          // how long a print job takes
  uint32_t paper_out_every = 0;  // every Nth print job runs out of paper; 0 = never
  int64_t paper_refill_ms = 3000;
  double scan_rate_per_min = 0;  // scans per minute per box (Poisson); 0 = never
  std::string receipts_dir;      // write printed ESC/POS here; empty = do not
  uint32_t max_pending = 64;     // queued commands per device before "busy"

  // Network behaviour.
  double churn_every_s = 0;    // every S seconds one random device drops; 0 = off
  double offline_s = 5;        // how long a churned device stays away
  double connect_rate = 1000;  // new connections per second, all devices; 0 = unlimited

  // Credentials: by default each CONNECT is signed with the device secret
  // (docs/device-protocol.md, "Connecting"). Tests against a gateway with
  // other authentication pass their own.
  CredentialFunction credential;
  // Wall clock in Unix milliseconds (credential timestamps, expires_at_ms).
  std::function<int64_t()> wall_clock_ms;
  // Log one structured line per command and per connection event (info
  // level of the default spdlog logger).
  bool log_events = true;
  uint64_t seed = 0;  // 0 = random
};

// Counters since start(); a consistent-enough snapshot for reports.
struct FleetStats {
  uint64_t devices = 0;
  uint64_t connected = 0;         // connections up now
  uint64_t connects = 0;          // successful CONNACKs
  uint64_t connect_failures = 0;  // refused or failed attempts
  uint64_t commands = 0;          // commands received (repeats included)
  uint64_t duplicates = 0;        // repeats answered without acting
  uint64_t played = 0;
  uint64_t printed = 0;
  uint64_t shown = 0;
  uint64_t scans = 0;      // scan events published
  uint64_t paper_out = 0;  // print jobs answered failed/paper_out
  uint64_t expired = 0;
  uint64_t failed = 0;     // other failed results (invalid, unsupported, busy)
  uint64_t published = 0;  // acks, results and events sent
  uint64_t churned = 0;    // planned disconnects
};

class FleetImpl;

// Threading: construct, start() and stop() from one thread; stats() from any
// thread. The fleet's devices run on one thread that start() creates.
class Fleet {
 public:
  Fleet(FleetOptions options, std::vector<SimDevice> devices);
  ~Fleet();  // stop()s
  Fleet(const Fleet&) = delete;
  Fleet& operator=(const Fleet&) = delete;

  // Resolves the endpoint and starts the devices' thread; devices connect
  // at connect_rate. Throws std::runtime_error if the endpoint does not
  // resolve or the file-descriptor limit is too low for the fleet.
  void start();
  // Disconnects every device cleanly (DISCONNECT, waits up to 2 s for the
  // gateway to close) and joins the thread. Idempotent.
  void stop();

  FleetStats stats() const;

 private:
  std::unique_ptr<FleetImpl> impl_;
};

// "connected=… commands=… duplicates=… played=… …", for report lines.
std::string format_stats(const FleetStats& stats);

// `counterlink sim ...`: argv[0] is "sim". Returns the exit code.
int run_sim(int argc, char** argv);

}  // namespace counterlink::sim
