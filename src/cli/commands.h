// Subcommands of the counterlink binary. Each returns the process exit code.
#pragma once

#include <string>
#include <vector>

namespace counterlink::cli {

struct ServeOptions {
  std::string config_file;
  std::vector<std::string> overrides;  // --set key=value
  bool print_config = false;
  // Also run a small simulated fleet (speakers, printers, scan boxes) in a
  // "Demo" tenant, so the console and the API have something to show.
  bool demo = false;
};

int run_serve(const ServeOptions& options);

// `counterlink admin ...`: argv[0] is "admin".
int run_admin(int argc, char** argv);

}  // namespace counterlink::cli
