// counterlink.v1.ScanService: scans read by scan boxes, and their answers.
#include "counterlink/platform/announcement.h"
#include "counterlink/v1/scans.pb.h"

#include "common.h"

namespace counterlink::platform::services {

namespace {

using api::CallContext;
using api::Outcome;

void to_proto(const store::Scan& s, v1::Scan& out) {
  out.set_id(s.id);
  out.set_device_id(s.device_id);
  out.set_box_scan_id(s.box_scan_id);
  out.set_code(s.code);
  if (s.amount_fen >= 0) {
    auto a = amount_from_fen(s.amount_fen);
    if (a.ok()) out.set_amount(a.value.to_string());
  }
  out.set_state(s.state);
  out.set_outcome(s.outcome);
  out.set_display(s.display);
  out.set_voice(s.voice);
  out.set_result_command_id(s.result_command_id);
  set_time(out.mutable_create_time(), s.created_ms);
  set_time(out.mutable_deadline_time(), s.deadline_ms);
  if (s.answered_ms > 0) set_time(out.mutable_answer_time(), s.answered_ms);
}

Outcome load_scan(const CallContext& ctx, const Env& env, const std::string& id, store::Scan& out) {
  std::string tenant;
  if (auto p = resolve_tenant(ctx, env, "", TenantNeed::kOptional, tenant)) return p;
  if (auto p = check_id("scan_id", id, "sc_")) return p;
  auto row = env.store->get_scan(tenant, id);
  if (!row.ok()) return store_problem(row.status(), "scan", id);
  out = std::move(row).value();
  return std::nullopt;
}

}  // namespace

void register_scan_service(api::ServiceRegistry& registry, EnvPtr env) {
  registry.unary<v1::GetScanRequest, v1::Scan>(
      "counterlink.v1.ScanService.GetScan",
      [env](CallContext& ctx, const v1::GetScanRequest& req, v1::Scan& resp) -> Outcome {
        store::Scan s;
        if (auto p = load_scan(ctx, *env, req.scan_id(), s)) return p;
        to_proto(s, resp);
        return std::nullopt;
      });

  registry.unary<v1::ListScansRequest, v1::ListScansResponse>(
      "counterlink.v1.ScanService.ListScans",
      [env](CallContext& ctx, const v1::ListScansRequest& req,
            v1::ListScansResponse& resp) -> Outcome {
        store::Device device;
        if (auto p = load_device(ctx, *env, req.device_id(), device)) return p;
        store::Page page;
        if (auto p = page_limit(req.page_size(), page.limit)) return p;
        const std::string filters = "scans\n" + device.id;
        if (!req.page_token().empty()) {
          if (auto p = decode_page_token(req.page_token(), filters, page.after_id)) return p;
        }
        auto listing = env->store->list_scans(device.tenant_id, device.id, page);
        if (!listing.ok()) return store_problem(listing.status(), "device", device.id);
        for (const auto& s : listing.value().items)
          to_proto(s, *resp.add_scans());
        if (listing.value().more && !listing.value().items.empty()) {
          resp.set_next_page_token(encode_page_token(filters, listing.value().items.back().id));
        }
        return std::nullopt;
      });

  registry.unary<v1::SubmitScanResultRequest, v1::Scan>(
      "counterlink.v1.ScanService.SubmitScanResult",
      [env](CallContext& ctx, const v1::SubmitScanResultRequest& req, v1::Scan& resp) -> Outcome {
        if (!env->scans) {
          return api::unavailable("This server does not handle scan boxes; try another node.");
        }
        store::Scan s;
        if (auto p = load_scan(ctx, *env, req.scan_id(), s)) return p;
        ScanAnswer answer{req.outcome(), req.display(), req.voice()};
        auto done = env->scans->answer(s.tenant_id, s.id, answer, "api");
        if (!done.ok()) {
          const auto& status = done.status();
          if (status.code == store::Code::kInvalid) {
            std::string field = status.message.rfind("display", 0) == 0 ? "display"
                                : status.message.rfind("voice", 0) == 0 ? "voice"
                                                                        : "outcome";
            return api::invalid_argument(field, status.message + ".");
          }
          if (status.code == store::Code::kConflict) {
            if (status.message == "timed_out") {
              api::Problem p = api::already_exists(
                  "scan_timed_out", "Scan " + s.id +
                                        " passed its deadline; the box was told the result is "
                                        "unknown. Check the order with the payment provider.");
              p.title = "Scan timed out";
              return p;
            }
            api::Problem p = api::already_exists("scan_already_answered",
                                                 "Scan " + s.id + " was answered already.");
            p.title = "Scan already answered";
            return p;
          }
          return store_problem(status, "scan", s.id);
        }
        to_proto(done.value(), resp);
        return std::nullopt;
      });
}

}  // namespace counterlink::platform::services
