// The application wiring of `counterlink serve`: the only code that knows the
// concrete types (which Store adapter, which hooks on the gateway, which
// services on the API servers). Everything else talks through interfaces.
//
// Threading: construct, start() and stop() from the main thread.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "cli/config.h"

namespace counterlink::cli {

// The OpenAPI document of the business API (docs/openapi.yaml is this with
// kYaml; /v1/openapi.json serves it with kJson). `yaml` picks the format.
std::string api_document(bool yaml);

class App {
 public:
  explicit App(AppConfig config);
  ~App();
  App(const App&) = delete;
  App& operator=(const App&) = delete;

  // Opens the store (migrations), loads or creates the master key and the
  // operator token, starts the gateway and the API servers, and logs one
  // `counterlink.listening name=… port=…` line per listener. Throws
  // std::runtime_error with a message that says what to fix.
  void start();
  // Readiness false, stop accepting, close sessions, flush presence. Idempotent.
  void stop();

  // After start(): where this node listens (0 = that listener is off) and
  // the operator token, for in-process tools such as the demo fleet.
  struct Endpoints {
    int http_port = 0;
    int mqtt_port = 0;  // the first plain-TCP MQTT listener
    std::string admin_token;
    std::string data_dir;
  };
  Endpoints endpoints() const;

 private:
  struct Parts;
  AppConfig config_;
  std::unique_ptr<Parts> parts_;
  std::string admin_token_;
  std::atomic<bool> ready_{false};
};

}  // namespace counterlink::cli
