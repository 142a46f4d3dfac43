// Receipt previews as PNG: GET /v1/print-jobs/{id}/preview.png for a stored
// job, POST /v1/print-jobs:preview for markup not sent yet. Raw routes (the
// answer is an image, not a proto message); same authentication, quota and
// tenant scoping as the proto routes.
#include <nlohmann/json.hpp>

#include "counterlink/api/http_server.h"
#include "counterlink/platform/receipt_preview.h"

#include "common.h"

namespace counterlink::platform::services {

namespace {

using nlohmann::json;

api::RawResponse png_or_problem(std::string_view markup, PaperWidth paper,
                                const api::CallContext& ctx, std::string_view field) {
  PreviewResult preview = render_preview_png(markup, paper);
  if (preview.ok()) {
    api::RawResponse r;
    r.content_type = "image/png";
    r.body = std::move(preview.png);
    r.headers["Cache-Control"] = "private, max-age=60";
    return r;
  }
  const std::string why = preview.error ? preview.error->to_string() : "unknown error";
  switch (preview.failure) {
    case PreviewResult::Failure::kInvalidMarkup: {
      api::Problem p =
          api::invalid_argument(std::string(field), "The receipt markup is invalid: " + why);
      p.code = "invalid_markup";
      return api::problem_response(p, ctx);
    }
    case PreviewResult::Failure::kTooTall: {
      api::Problem p = api::failed_precondition("preview_too_tall", why);
      p.title = "Receipt too long to preview";
      return api::problem_response(p, ctx);
    }
    case PreviewResult::Failure::kNoFont: {
      api::Problem p = api::unavailable("This server cannot draw previews: " + why);
      p.code = "preview_unavailable";
      return api::problem_response(p, ctx);
    }
    default:
      return api::problem_response(api::internal_error("Preview failed: " + why), ctx);
  }
}

}  // namespace

void add_print_preview_routes(api::HttpServer& server, EnvPtr env) {
  // GET /v1/print-jobs/{command_id}/preview.png
  server.add_raw_route("GET", "/v1/print-jobs/", [env](const api::RawRequest& req) {
    const api::CallContext& ctx = req.context;
    constexpr std::string_view kPrefix = "/v1/print-jobs/";
    constexpr std::string_view kSuffix = "/preview.png";
    std::string_view path = req.path;
    if (path.size() <= kPrefix.size() + kSuffix.size() ||
        path.substr(path.size() - kSuffix.size()) != kSuffix) {
      return api::problem_response(api::not_found("route",
                                                  "No such route; the preview is at "
                                                  "/v1/print-jobs/{command_id}/preview.png."),
                                   ctx);
    }
    std::string id(path.substr(kPrefix.size(), path.size() - kPrefix.size() - kSuffix.size()));
    std::string tenant;
    if (auto p = resolve_tenant(ctx, *env, "", TenantNeed::kOptional, tenant)) {
      return api::problem_response(*p, ctx);
    }
    if (auto p = check_id("command_id", id, "cm_")) return api::problem_response(*p, ctx);
    auto row = env->store->get_command(tenant, id);
    if (!row.ok()) return api::problem_response(store_problem(row.status(), "command", id), ctx);
    const store::Command& c = row.value();
    json request = json::parse(c.request_json, nullptr, false);
    if (c.type != command_type::kPrint || !request.is_object() || !request.contains("content") ||
        !request["content"].is_string()) {
      api::Problem p = api::failed_precondition(
          "not_a_print_job",
          "Command " + id + " is not a print job; only print jobs have previews.");
      return api::problem_response(p, ctx);
    }
    PaperWidth paper =
        request.value("paper_width_mm", 58) == 80 ? PaperWidth::k80 : PaperWidth::k58;
    return png_or_problem(request["content"].get<std::string>(), paper, ctx, "content");
  });

  // POST /v1/print-jobs:preview {"content": "...", "paper_width_mm": 58|80}
  server.add_raw_route("POST", "/v1/print-jobs:preview", [](const api::RawRequest& req) {
    const api::CallContext& ctx = req.context;
    json body = json::parse(req.body, nullptr, false);
    if (!body.is_object() || !body.contains("content") || !body["content"].is_string()) {
      return api::problem_response(
          api::invalid_argument("content",
                                "Send a JSON object with `content` (receipt markup) and "
                                "optionally `paper_width_mm` (58 or 80)."),
          ctx);
    }
    int width = 58;
    if (body.contains("paper_width_mm")) {
      if (!body["paper_width_mm"].is_number_integer() ||
          (body["paper_width_mm"] != 58 && body["paper_width_mm"] != 80)) {
        return api::problem_response(
            api::invalid_argument("paper_width_mm", "paper_width_mm must be 58 or 80."), ctx);
      }
      width = body["paper_width_mm"].get<int>();
    }
    return png_or_problem(body["content"].get<std::string>(),
                          width == 80 ? PaperWidth::k80 : PaperWidth::k58, ctx, "content");
  });
}

}  // namespace counterlink::platform::services
