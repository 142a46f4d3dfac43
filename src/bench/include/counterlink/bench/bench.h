// `counterlink bench`: an epoll-driven MQTT load generator that measures a
// broker (ours or any other) with fan-in, fan-out, one-to-one, idle, latency
// and connect-rate scenarios. See bench/README.md.
#pragma once

namespace counterlink::bench {

// Parses its own arguments with CLI11 (argv[0] is "bench") and runs one
// scenario. Returns the process exit code: 0 success, 1 the measurement
// failed verification (loss, stall, broker closed connections), 2 usage
// error, 3 could not connect or set up.
int run_bench(int argc, char** argv);

}  // namespace counterlink::bench
