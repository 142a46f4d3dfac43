// A small HTTP/1.1 endpoint for operations: GET /metrics (Prometheus text),
// /healthz (the process is alive) and /readyz (ready for traffic).
//
// One background thread serves requests one at a time with Connection: close;
// scrapes and probes are rare and tiny. It stands until the business API
// server takes these routes over.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

namespace counterlink::obs {

class OpsServer {
 public:
  // `ready` is polled for /readyz; it may be called from the server thread.
  OpsServer(std::string bind, uint16_t port, std::function<bool()> ready);
  ~OpsServer();
  OpsServer(const OpsServer&) = delete;
  OpsServer& operator=(const OpsServer&) = delete;

  // Binds and starts the thread. Throws std::runtime_error naming the address
  // on failure.
  void start();
  void stop();
  uint16_t port() const { return port_; }

 private:
  void serve();
  void handle(int fd);

  std::string bind_;
  uint16_t port_;
  std::function<bool()> ready_;
  int listen_fd_ = -1;
  int wake_fds_[2] = {-1, -1};
  std::thread thread_;
};

}  // namespace counterlink::obs
