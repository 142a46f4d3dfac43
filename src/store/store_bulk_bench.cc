// store_bulk_bench: store-only throughput figures. Not a test; the figures
// go into docs/benchmarks.md.
//
//   store_bulk_bench --url sqlite:///tmp/bench.db [--rows 100000] [--batch 1000]
//
// Bulk import (Store::create_devices): creates a tenant and a product (ids
// unique per run, so the same database can be reused), then inserts --rows
// devices in batches of --batch and prints one line: rows, batches,
// seconds, rows/s.
//
//   store_bulk_bench --url URL --writes 20000 [--batch 200] [--devices 1000]
//
// Command group commits (Store::apply_writes), the delivery engine's write
// path: --writes broadcast creates (dedup key and a broadcast.queued event
// each) in batches of --batch spread over --devices devices, then the same
// commands through queued -> sent and sent -> played (guarded transitions,
// an event each). Every batch is one durable commit. Prints one line per
// phase: writes, batches, seconds, writes/s, and the median and worst batch.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "counterlink/store/store.h"

namespace {

using counterlink::store::Code;
using counterlink::store::Device;
using counterlink::store::Store;
using counterlink::store::Write;
using Clock = std::chrono::steady_clock;

int usage() {
  std::fprintf(stderr,
               "usage: store_bulk_bench --url URL [--rows N] [--batch B] [--pool P]\n"
               "       store_bulk_bench --url URL --writes N [--batch B] [--devices D] [--pool P]\n"
               "  URL: sqlite:///path.db or postgresql://user@host:port/db\n");
  return 2;
}

double ms(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// Applies `writes` in batches of `batch`; prints the phase's line. Returns
// false if a batch failed or a write did not apply.
bool run_phase(Store& store, const char* phase, const std::vector<Write>& writes, long batch) {
  std::vector<Clock::duration> latencies;
  Clock::duration spent{};
  long applied = 0;
  std::vector<Write> chunk;
  for (size_t start = 0; start < writes.size(); start += batch) {
    const size_t end = std::min(writes.size(), start + static_cast<size_t>(batch));
    chunk.assign(writes.begin() + start, writes.begin() + end);
    const auto began = Clock::now();
    auto result = store.apply_writes(chunk);
    const auto took = Clock::now() - began;
    spent += took;
    latencies.push_back(took);
    if (!result.ok()) {
      std::fprintf(stderr, "store_bulk_bench: apply_writes failed: %s\n",
                   result.status().message.c_str());
      return false;
    }
    for (const auto& outcome : result.value())
      applied += outcome.code == Code::kOk ? 1 : 0;
  }
  std::sort(latencies.begin(), latencies.end());
  const double seconds = std::chrono::duration<double>(spent).count();
  std::printf(
      "store_bulk_bench: %s %s writes=%ld batch=%ld batches=%zu seconds=%.3f writes/s=%.0f "
      "batch_ms_p50=%.2f batch_ms_max=%.2f\n",
      store.kind(), phase, applied, batch, latencies.size(), seconds, applied / seconds,
      ms(latencies[latencies.size() / 2]), ms(latencies.back()));
  return applied == static_cast<long>(writes.size());
}

Write transition(const std::string& id, const char* from, const char* to, int64_t at,
                 const char* event_type) {
  Write w;
  w.kind = Write::Kind::kTransition;
  w.transition.command_id = id;
  w.transition.from_states = {from};
  w.transition.to_state = to;
  w.transition.at_ms = at;
  w.transition.attempts_delta = std::string(to) == "sent" ? 1 : 0;
  w.event.type = event_type;
  w.event.at_ms = at;
  return w;
}

// The --writes mode (see the top of the file).
int bench_writes(Store& store, const std::string& run, long count, long batch, long devices) {
  const int64_t now = 1700000000000;
  const std::string tenant_id = "tn_bench" + run;
  std::vector<Write> creates;
  std::vector<std::string> ids;
  creates.reserve(count);
  for (long n = 0; n < count; ++n) {
    Write w;
    w.kind = Write::Kind::kCreateCommand;
    auto& c = w.command;
    c.id = "cm_" + run + "_" + std::to_string(n);
    c.tenant_id = tenant_id;
    c.device_id = "dv_" + run + "_" + std::to_string(n % devices);
    c.type = "broadcast";
    c.state = "queued";
    c.dedup_key = "order-" + std::to_string(n);
    // Sizes of a real broadcast: the device payload and the caller's request.
    c.payload_json =
        R"({"type":"broadcast","amount_fen":1250,"text":"收款12.50元","order_id":"order-)" +
        std::to_string(n) + R"("})";
    c.request_json = R"({"device_id":")" + c.device_id +
                     R"(","amount_fen":1250,"order_id":"order-)" + std::to_string(n) +
                     R"(","voice":"standard"})";
    c.created_ms = c.updated_ms = now + n;
    c.expires_at_ms = now + n + 60000;
    c.request_id = "req-" + std::to_string(n);
    w.event.type = "broadcast.queued";
    w.event.at_ms = c.created_ms;
    w.event.data_json = R"({"id":")" + c.id + R"(","state":"queued"})";
    ids.push_back(c.id);
    creates.push_back(std::move(w));
  }
  if (!run_phase(store, "create", creates, batch)) return 1;
  std::vector<Write> sends;
  std::vector<Write> plays;
  for (const auto& id : ids) {
    sends.push_back(transition(id, "queued", "sent", now + 100000, "broadcast.sent"));
    plays.push_back(transition(id, "sent", "played", now + 100500, "broadcast.played"));
  }
  if (!run_phase(store, "transition-sent", sends, batch)) return 1;
  if (!run_phase(store, "transition-played", plays, batch)) return 1;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string url;
  long rows = 100000;
  long batch = 1000;
  int pool = 4;
  long writes = 0;
  long devices = 1000;
  bool batch_given = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (i + 1 >= argc) return usage();
    if (arg == "--url") {
      url = argv[++i];
    } else if (arg == "--rows") {
      rows = std::atol(argv[++i]);
    } else if (arg == "--batch") {
      batch = std::atol(argv[++i]);
      batch_given = true;
    } else if (arg == "--writes") {
      writes = std::atol(argv[++i]);
    } else if (arg == "--devices") {
      devices = std::atol(argv[++i]);
    } else if (arg == "--pool") {
      pool = std::atoi(argv[++i]);
    } else {
      return usage();
    }
  }
  if (writes > 0 && !batch_given) batch = 200;
  if (url.empty() || rows < 1 || batch < 1 || writes < 0 || devices < 1) return usage();

  try {
    auto store = counterlink::store::open_store({url, pool});
    const auto run = std::to_string(
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch())
            .count());
    if (writes > 0) return bench_writes(*store, run, writes, batch, devices);
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
