#include <cstdlib>
#include <iostream>
#include <memory>
#include <stdexcept>

#include <signal.h>
#include <spdlog/spdlog.h>

#include "counterlink/obs/log.h"
#include "counterlink/version.h"

#include "cli/app.h"
#include "cli/config.h"
#include "cli/demo.h"
#include "commands.h"

extern char** environ;

namespace counterlink::cli {
namespace {

std::vector<std::string> environment() {
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e)
    env.emplace_back(*e);
  return env;
}

// Blocks SIGINT/SIGTERM in every thread (threads inherit the mask) and waits
// for one of them on the main thread.
sigset_t block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

}  // namespace

int run_serve(const ServeOptions& options) {
  AppConfig config;
  try {
    config = load_config(options.config_file, environment(), options.overrides);
  } catch (const ConfigError& e) {
    std::cerr << "counterlink: configuration error: " << e.what() << "\n";
    return 2;
  }
  if (options.print_config) {
    std::cout << to_yaml(config);
    return 0;
  }
  try {
    obs::init_logging(config.log);
  } catch (const std::exception& e) {
    std::cerr << "counterlink: " << e.what() << "\n";
    return 2;
  }
  ::signal(SIGPIPE, SIG_IGN);
  sigset_t stop_signals = block_stop_signals();

  spdlog::info("counterlink.starting version={} commit={}", COUNTERLINK_VERSION,
               COUNTERLINK_GIT_COMMIT);
  App app(std::move(config));
  try {
    app.start();
  } catch (const std::exception& e) {
    spdlog::critical("counterlink.start_failed error=\"{}\"", e.what());
    return 1;
  }
  spdlog::info("counterlink.ready");
  Demo demo;
  if (options.demo) {
    try {
      demo.start(app.endpoints());
    } catch (const std::exception& e) {
      spdlog::error("demo.failed error=\"{}\" hint=\"the server runs on without the demo\"",
                    e.what());
    }
  }
  int sig = 0;
  sigwait(&stop_signals, &sig);
  spdlog::info("counterlink.stopping signal={}", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  demo.stop();
  app.stop();
  return 0;
}

}  // namespace counterlink::cli
