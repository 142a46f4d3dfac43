// `counterlink serve --demo`: a small simulated fleet (docs/simulator.md)
// in a tenant named "Demo", provisioned through the node's own REST API with
// the operator token, so a fresh install has devices to look at and a
// tenant key to try the API with (written to <data_dir>/demo.token).
#pragma once

#include <memory>

#include "cli/app.h"

namespace counterlink::sim {
class Fleet;
}

namespace counterlink::cli {

class Demo {
 public:
  Demo();
  ~Demo();
  // Provisions and starts the fleet. Throws std::runtime_error saying what
  // failed; the server keeps running without the demo then.
  void start(const App::Endpoints& endpoints);
  void stop();

 private:
  std::unique_ptr<sim::Fleet> fleet_;
};

}  // namespace counterlink::cli
