// store_bulk_bench: bulk-import throughput of Store::create_devices.
//
//   store_bulk_bench --url sqlite:///tmp/bench.db [--rows 100000] [--batch 1000]
//
// Creates a tenant and a product (ids unique per run, so the same database
// can be reused), then inserts --rows devices in batches of --batch and
// prints one line: rows, batches, seconds, rows/s. Not a test; the figures
// go into docs/benchmarks.md.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "counterlink/store/store.h"

namespace {

using counterlink::store::Device;
using Clock = std::chrono::steady_clock;

int usage() {
  std::fprintf(stderr,
               "usage: store_bulk_bench --url URL [--rows N] [--batch B] [--pool P]\n"
               "  URL: sqlite:///path.db or postgresql://user@host:port/db\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string url;
  long rows = 100000;
  long batch = 1000;
  int pool = 4;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (i + 1 >= argc) return usage();
    if (arg == "--url") {
      url = argv[++i];
    } else if (arg == "--rows") {
      rows = std::atol(argv[++i]);
    } else if (arg == "--batch") {
      batch = std::atol(argv[++i]);
    } else if (arg == "--pool") {
      pool = std::atoi(argv[++i]);
    } else {
      return usage();
    }
  }
  if (url.empty() || rows < 1 || batch < 1) return usage();

  try {
    auto store = counterlink::store::open_store({url, pool});
    const auto run = std::to_string(
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch())
            .count());
    const std::string tenant_id = "tn_bench" + run;
    const std::string product_id = "pd_bench" + run;
    if (!store->create_tenant({tenant_id, "bench", "other"}).ok() ||
        !store->create_product({product_id, tenant_id, "bench", "speaker", "{}"}).ok()) {
      std::fprintf(stderr, "store_bulk_bench: cannot create the tenant and product\n");
      return 1;
    }

    long inserted = 0;
    long batches = 0;
    Clock::duration spent{};
    std::vector<Device> devices;
    for (long start = 0; start < rows; start += batch) {
      devices.clear();
      for (long n = start; n < rows && n < start + batch; ++n) {
        Device d;
        d.id = "dv_" + run + "_" + std::to_string(n);
        d.tenant_id = tenant_id;
        d.product_id = product_id;
        d.serial = "SN" + std::to_string(n);
        d.secret_sealed = std::string(60, '\x5a');  // size of a sealed 32-byte secret
        d.labels = {{"batch", std::to_string(batches)}, {"site", "bench"}};
        d.firmware_version = "1.0.0";
        d.created_ms = d.updated_ms = 1700000000000;
        devices.push_back(std::move(d));
      }
      const auto began = Clock::now();
      auto result = store->create_devices(devices);
      spent += Clock::now() - began;
      if (!result.ok()) {
        std::fprintf(stderr, "store_bulk_bench: create_devices failed: %s\n",
                     result.status().message.c_str());
        return 1;
      }
      for (const auto& outcome : result.value())
        inserted += outcome.status.ok() ? 1 : 0;
      ++batches;
    }
    const double seconds = std::chrono::duration<double>(spent).count();
    std::printf("store_bulk_bench: %s rows=%ld batch=%ld batches=%ld seconds=%.3f rows/s=%.0f\n",
                store->kind(), inserted, batch, batches, seconds, inserted / seconds);
    return inserted == rows ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "store_bulk_bench: %s\n", e.what());
    return 1;
  }
}
