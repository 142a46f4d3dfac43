// counterlink: one binary, several roles (see docs and DESIGN.md).
#include <cstring>
#include <iostream>

#include <CLI/CLI.hpp>

#include "counterlink/bench/bench.h"
#include "counterlink/sim/sim.h"
#include "counterlink/version.h"

#include "cli/app.h"
#include "commands.h"

int main(int argc, char** argv) {
  // The load generator parses its own options (see `counterlink bench --help`).
  if (argc >= 2 && std::strcmp(argv[1], "bench") == 0) {
    return counterlink::bench::run_bench(argc - 1, argv + 1);
  }
  // The device simulator parses its own options (see `counterlink sim --help`).
  if (argc >= 2 && std::strcmp(argv[1], "sim") == 0) {
    return counterlink::sim::run_sim(argc - 1, argv + 1);
  }
  // The operator CLI has its own subcommand tree (see `counterlink admin --help`).
  if (argc >= 2 && std::strcmp(argv[1], "admin") == 0) {
    return counterlink::cli::run_admin(argc - 1, argv + 1);
  }
  CLI::App app{"Counterlink: the cloud for merchant-counter IoT devices"};
  app.require_subcommand(0, 1);
  app.set_version_flag("--version", std::string("counterlink ") + COUNTERLINK_VERSION +
                                        " (commit " + COUNTERLINK_GIT_COMMIT + ")");

  counterlink::cli::ServeOptions serve;
  CLI::App* serve_cmd = app.add_subcommand("serve", "Run the server (device gateway)");
  serve_cmd->add_option("-c,--config", serve.config_file, "YAML configuration file")
      ->check(CLI::ExistingFile);
  serve_cmd
      ->add_option("--set", serve.overrides,
                   "Override a configuration key, e.g. --set gateway.max_connections=5000")
      ->take_all();
  serve_cmd->add_flag("--demo", serve.demo,
                      "Also run a simulated fleet in a \"Demo\" tenant (docs/simulator.md)");
  serve_cmd->add_flag("--print-config", serve.print_config,
                      "Print the effective configuration as YAML and exit");

  bool openapi_json = false;
  CLI::App* openapi_cmd = app.add_subcommand(
      "openapi", "Print the OpenAPI document of the REST API (docs/openapi.yaml)");
  openapi_cmd->add_flag("--json", openapi_json, "JSON instead of YAML");
  app.add_subcommand(
      "admin", "Operator CLI: tenants, keys, products, devices (see `counterlink admin --help`)");
  app.add_subcommand("bench", "Load generator for benchmarks (see `counterlink bench --help`)");
  app.add_subcommand("sim",
                     "Device simulator: a fleet of speakers, printers and scan boxes (see "
                     "`counterlink sim --help`)");

  CLI11_PARSE(app, argc, argv);
  if (serve_cmd->parsed()) return counterlink::cli::run_serve(serve);
  if (openapi_cmd->parsed()) {
    std::cout << counterlink::cli::api_document(/*yaml=*/!openapi_json);
    return 0;
  }
  std::cout << app.help();
  return 0;
}
