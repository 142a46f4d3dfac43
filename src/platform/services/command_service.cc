// counterlink.v1.CommandService: payment broadcasts, print jobs, command
// reads and cancellation. The delivery itself is the engine's (commands.h).
#include <nlohmann/json.hpp>

#include "counterlink/platform/announcement.h"
#include "counterlink/platform/crypto.h"
#include "counterlink/platform/receipt.h"
#include "counterlink/v1/commands.pb.h"

#include "commands/device_messages.h"
#include "commands/json_text.h"
#include "common.h"

namespace counterlink::platform::services {

namespace {

using api::CallContext;
using api::Outcome;
using nlohmann::json;

constexpr int32_t kDefaultBroadcastExpiryS = 60;
constexpr int32_t kMaxBroadcastExpiryS = 3600;
constexpr int32_t kDefaultPrintExpiryS = 86'400;
constexpr int32_t kMaxPrintExpiryS = 7 * 86'400;

Outcome engine_missing() {
  return api::unavailable(
      "This server runs without the delivery engine; send commands to a node that runs it.");
}

v1::CommandState state_enum(std::string_view s) {
  v1::CommandState out = v1::command_state_unspecified;
  if (!v1::CommandState_Parse(std::string(s), &out)) return v1::command_state_unspecified;
  return out;
}

v1::CommandType type_enum(std::string_view s) {
  v1::CommandType out = v1::command_type_unspecified;
  if (!v1::CommandType_Parse(std::string(s), &out)) return v1::command_type_unspecified;
  return out;
}

std::string str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

int32_t int_of(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int32_t>() : 0;
}

void to_proto(const store::Command& c, v1::Command& out) {
  out.set_id(c.id);
  out.set_device_id(c.device_id);
  out.set_type(type_enum(c.type));
  out.set_state(state_enum(c.state));
  out.set_code(c.code);
  out.set_detail(c.detail);
  out.set_attempts(c.attempts);
  set_time(out.mutable_create_time(), c.created_ms);
  set_time(out.mutable_update_time(), c.updated_ms);
  if (c.expires_at_ms > 0) set_time(out.mutable_expire_time(), c.expires_at_ms);
  out.set_request_id(c.request_id);
  json request = json::parse(c.request_json, nullptr, false);
  json payload = json::parse(c.payload_json, nullptr, false);
  if (!request.is_object()) request = json::object();
  if (!payload.is_object()) payload = json::object();
  if (c.type == command_type::kBroadcast) {
    auto* b = out.mutable_broadcast();
    b->set_amount(str(payload, "amount"));
    b->set_channel(str(payload, "channel"));
    b->set_locale(str(payload, "locale"));
    b->set_order_id(str(payload, "order_id"));
    b->set_text(str(request, "text"));
    b->set_text_template(str(request, "text_template"));
    b->set_rendered_text(str(payload, "text"));
  } else if (c.type == command_type::kPrint) {
    auto* p = out.mutable_print_job();
    p->set_content(str(request, "content"));
    p->set_copies(int_of(payload, "copies"));
    p->set_on_printer_error(str(payload, "on_printer_error"));
    p->set_paper_width_mm(int_of(request, "paper_width_mm"));
    p->set_escpos_bytes(int_of(request, "escpos_bytes"));
    p->set_parts(int_of(request, "parts"));
  } else if (c.type == command_type::kScanResult) {
    auto* s = out.mutable_scan_result();
    s->set_scan_id(str(payload, "scan_id"));
    s->set_outcome(str(payload, "outcome"));
    s->set_display(str(payload, "display"));
    s->set_voice(str(payload, "voice"));
  }
}

void add_history(const std::vector<store::Event>& events, v1::Command& out) {
  for (const auto& e : events) {
    auto dot = e.type.rfind('.');
    if (dot == std::string::npos) continue;
    auto* t = out.add_history();
    t->set_state(state_enum(std::string_view(e.type).substr(dot + 1)));
    set_time(t->mutable_time(), e.at_ms);
    json data = json::parse(e.data_json, nullptr, false);
    if (data.is_object()) {
      t->set_code(str(data, "code"));
      t->set_detail(str(data, "detail"));
    }
    t->set_event_id(std::to_string(e.seq));
  }
}

// The device a command is for, with its product: must be of `type`.
Outcome load_target(const CallContext& ctx, const Env& env, const std::string& device_id,
                    std::string_view want_type, store::Device& device, store::Product& product) {
  if (auto p = load_device(ctx, env, device_id, device)) return p;
  auto row = env.store->get_product(device.tenant_id, device.product_id);
  if (!row.ok()) return store_problem(row.status(), "product", device.product_id);
  product = std::move(row).value();
  if (product.type != want_type && product.type != "generic") {
    api::Problem p = api::failed_precondition("device_type_mismatch",
                                              "Device " + device.id + " is a " + product.type +
                                                  "; this call is for " + std::string(want_type) +
                                                  "s (or generic devices).");
    p.title = "Wrong device type";
    p.field = "device_id";
    return p;
  }
  if (device.disabled) {
    api::Problem p = api::failed_precondition(
        "device_disabled", "Device " + device.id + " is disabled; enable it first.");
    p.title = "Device disabled";
    p.field = "device_id";
    return p;
  }
  return std::nullopt;
}

DeviceTarget target_of(const store::Device& device, const store::Product& product) {
  DeviceTarget t;
  t.device_id = device.id;
  t.tenant_id = device.tenant_id;
  t.product_type = product.type;
  json caps = json::parse(product.capabilities_json, nullptr, false);
  if (caps.is_object()) t.max_payload_bytes = int_of(caps, "max_payload_bytes");
  return t;
}

Outcome submit_problem(const store::Status& status, const std::string& device_id) {
  if (status.code == store::Code::kInvalid && status.message == "queue_full") {
    api::Problem p = api::rate_limited(
        1, "Device " + device_id +
               " has too many commands waiting; wait for it to catch up (is it offline?).");
    p.code = "device_queue_full";
    p.title = "Device queue full";
    return p;
  }
  return store_problem(status, "device", device_id);
}

Outcome expiry(int32_t requested, int32_t def, int32_t max, int32_t& out) {
  if (requested == 0) {
    out = def;
    return std::nullopt;
  }
  if (requested < 1 || requested > max) {
    return api::invalid_argument("expires_in_s",
                                 "expires_in_s must be 1.." + std::to_string(max) + " seconds.");
  }
  out = requested;
  return std::nullopt;
}

bool printable_ascii(std::string_view s) {
  for (char c : s) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

Outcome create_broadcast(CallContext& ctx, const Env& env, const v1::CreateBroadcastRequest& req,
                         v1::Command& resp) {
  if (!env.commands) return engine_missing();
  store::Device device;
  store::Product product;
  if (auto p = load_target(ctx, env, req.device_id(), "speaker", device, product)) return p;
  auto amount = parse_amount(req.amount());
  if (!amount.ok()) return api::invalid_argument("amount", amount.error);
  if (amount.value.fen() == 0) {
    return api::invalid_argument("amount", "amount must be at least 0.01.");
  }
  auto channel = parse_channel(req.channel());
  if (!channel.ok()) return api::invalid_argument("channel", channel.error);
  auto locale = parse_locale(req.locale().empty() ? "zh-CN" : req.locale());
  if (!locale.ok()) return api::invalid_argument("locale", locale.error);
  if (req.order_id().empty() || req.order_id().size() > 64 || !printable_ascii(req.order_id())) {
    return api::invalid_argument("order_id",
                                 "order_id is required: 1..64 printable ASCII characters.");
  }
  if (!req.text().empty() && !req.text_template().empty()) {
    return api::invalid_argument("text_template", "Give text or text_template, not both.");
  }
  AnnouncementWording wording;
  if (!req.text().empty()) wording.free_text = req.text();
  if (!req.text_template().empty()) wording.text_template = req.text_template();
  auto text = render_announcement(amount.value, channel.value, locale.value, wording);
  if (!text.ok()) {
    return api::invalid_argument(req.text().empty() ? "text_template" : "text", text.error);
  }
  int32_t expires_s = 0;
  if (auto p =
          expiry(req.expires_in_s(), kDefaultBroadcastExpiryS, kMaxBroadcastExpiryS, expires_s)) {
    return p;
  }

  const int64_t now = env.now();
  store::Command c;
  c.id = new_resource_id("cm_", now);
  c.tenant_id = device.tenant_id;
  c.device_id = device.id;
  c.type = command_type::kBroadcast;
  c.dedup_key = "order:" + req.order_id();
  json payload;
  payload["amount"] = amount.value.to_string();
  payload["channel"] = std::string(channel_name(channel.value));
  payload["locale"] = std::string(locale_tag(locale.value));
  payload["text"] = text.value;
  payload["order_id"] = req.order_id();
  c.payload_json = json_text(payload);
  json request;
  if (!req.text().empty()) request["text"] = req.text();
  if (!req.text_template().empty()) request["text_template"] = req.text_template();
  request["expires_in_s"] = expires_s;
  c.request_json = json_text(request);
  c.created_ms = now;
  c.updated_ms = now;
  c.expires_at_ms = now + int64_t{expires_s} * 1000;
  c.request_id = ctx.request_id;

  auto submitted = env.commands->submit(c, target_of(device, product));
  if (!submitted.ok()) return submit_problem(submitted.status(), device.id);
  const store::Command& stored = submitted.value().command;
  if (submitted.value().duplicate) {
    // The same order: the same broadcast, if it is the same payment.
    json first = json::parse(stored.payload_json, nullptr, false);
    if (!first.is_object() || str(first, "amount") != payload["amount"].get<std::string>() ||
        str(first, "channel") != payload["channel"].get<std::string>()) {
      api::Problem p = api::already_exists(
          "order_id_conflict", "Order " + req.order_id() + " was already announced on " +
                                   device.id + " as command " + stored.id +
                                   " with a different amount or channel.");
      p.title = "Order id already used";
      p.field = "order_id";
      return p;
    }
  }
  to_proto(stored, resp);
  return std::nullopt;
}

Outcome create_print_job(CallContext& ctx, const Env& env, const v1::CreatePrintJobRequest& req,
                         v1::Command& resp) {
  if (!env.commands) return engine_missing();
  store::Device device;
  store::Product product;
  if (auto p = load_target(ctx, env, req.device_id(), "printer", device, product)) return p;
  if (req.content().empty()) {
    return api::invalid_argument("content", "content is required: the receipt markup to print.");
  }
  int copies = req.copies() == 0 ? 1 : req.copies();
  if (copies < 1 || copies > kMaxCopies) {
    return api::invalid_argument("copies", "copies must be 1.." + std::to_string(kMaxCopies) + ".");
  }
  const std::string& policy = req.on_printer_error();
  if (!policy.empty() && policy != "wait" && policy != "fail") {
    return api::invalid_argument("on_printer_error", "on_printer_error must be wait or fail.");
  }
  int32_t expires_s = 0;
  if (auto p = expiry(req.expires_in_s(), kDefaultPrintExpiryS, kMaxPrintExpiryS, expires_s)) {
    return p;
  }
  json caps = json::parse(product.capabilities_json, nullptr, false);
  int width = caps.is_object() ? int_of(caps, "paper_width_mm") : 0;
  if (width != 80) width = 58;
  // One copy rendered; the device prints `copies` of it.
  auto rendered = render_escpos(req.content(), width == 80 ? PaperWidth::k80 : PaperWidth::k58, 1);
  if (!rendered.ok()) {
    api::Problem p = api::invalid_argument(
        "content", "The receipt markup is invalid: " + rendered.error->to_string());
    p.code = "invalid_markup";
    return p;
  }

  const int64_t now = env.now();
  store::Command c;
  c.id = new_resource_id("cm_", now);
  c.tenant_id = device.tenant_id;
  c.device_id = device.id;
  c.type = command_type::kPrint;
  json payload;
  payload["copies"] = copies;
  payload["encoding"] = "escpos";
  payload["data"] = base64_encode(rendered.bytes);
  payload["on_printer_error"] = policy.empty() ? "wait" : policy;
  c.payload_json = json_text(payload);
  c.created_ms = now;
  c.updated_ms = now;
  c.expires_at_ms = now + int64_t{expires_s} * 1000;
  c.request_id = ctx.request_id;
  DeviceTarget target = target_of(device, product);
  std::string error;
  size_t max = target.max_payload_bytes > 0 ? static_cast<size_t>(target.max_payload_bytes) : 65536;
  auto parts = encode_command(c, max, error);
  if (parts.empty()) {
    return api::failed_precondition("print_job_too_large",
                                    "The job cannot be split for this printer: " + error);
  }
  json request;
  request["content"] = req.content();
  request["paper_width_mm"] = width;
  request["escpos_bytes"] = rendered.bytes.size();
  request["parts"] = parts.size();
  request["expires_in_s"] = expires_s;
  c.request_json = json_text(request);

  auto submitted = env.commands->submit(c, target);
  if (!submitted.ok()) return submit_problem(submitted.status(), device.id);
  to_proto(submitted.value().command, resp);
  return std::nullopt;
}

Outcome load_command(const CallContext& ctx, const Env& env, const std::string& id,
                     store::Command& out) {
  std::string tenant;
  if (auto p = resolve_tenant(ctx, env, "", TenantNeed::kOptional, tenant)) return p;
  if (auto p = check_id("command_id", id, "cm_")) return p;
  auto row = env.store->get_command(tenant, id);
  if (!row.ok()) return store_problem(row.status(), "command", id);
  out = std::move(row).value();
  return std::nullopt;
}

Outcome cancel_problem(const store::Status& status, const std::string& id) {
  if (status.code == store::Code::kConflict) {
    if (status.message == "finished") {
      api::Problem p =
          api::already_exists("command_finished", "Command " + id + " has already finished.");
      p.title = "Command finished";
      return p;
    }
    api::Problem p = api::already_exists(
        "command_in_flight",
        "Command " + id + " is at the device already and can no longer be cancelled.");
    p.title = "Command in flight";
    return p;
  }
  return store_problem(status, "command", id);
}

}  // namespace

void register_command_service(api::ServiceRegistry& registry, EnvPtr env) {
  registry.unary<v1::CreateBroadcastRequest, v1::Command>(
      "counterlink.v1.CommandService.CreateBroadcast",
      [env](CallContext& ctx, const v1::CreateBroadcastRequest& req, v1::Command& resp) {
        return create_broadcast(ctx, *env, req, resp);
      });

  registry.unary<v1::CreatePrintJobRequest, v1::Command>(
      "counterlink.v1.CommandService.CreatePrintJob",
      [env](CallContext& ctx, const v1::CreatePrintJobRequest& req, v1::Command& resp) {
        return create_print_job(ctx, *env, req, resp);
      });

  registry.unary<v1::GetCommandRequest, v1::Command>(
      "counterlink.v1.CommandService.GetCommand",
      [env](CallContext& ctx, const v1::GetCommandRequest& req, v1::Command& resp) -> Outcome {
        store::Command c;
        if (auto p = load_command(ctx, *env, req.command_id(), c)) return p;
        to_proto(c, resp);
        auto events = env->store->subject_events(c.tenant_id, c.id);
        if (!events.ok()) return store_problem(events.status(), "command", c.id);
        add_history(events.value(), resp);
        return std::nullopt;
      });

  registry.unary<v1::ListCommandsRequest, v1::ListCommandsResponse>(
      "counterlink.v1.CommandService.ListCommands",
      [env](CallContext& ctx, const v1::ListCommandsRequest& req,
            v1::ListCommandsResponse& resp) -> Outcome {
        store::Device device;
        if (auto p = load_device(ctx, *env, req.device_id(), device)) return p;
        store::CommandFilter filter;
        filter.tenant_id = device.tenant_id;
        filter.device_id = device.id;
        if (req.type() != v1::command_type_unspecified) {
          filter.type = v1::CommandType_Name(req.type());
        }
        for (int s : req.states()) {
          if (s == v1::command_state_unspecified || !v1::CommandState_IsValid(s)) {
            return api::invalid_argument("states", "states holds an unknown state.");
          }
          filter.states.push_back(v1::CommandState_Name(static_cast<v1::CommandState>(s)));
        }
        store::Page page;
        if (auto p = page_limit(req.page_size(), page.limit)) return p;
        std::string filters = "commands\n" + device.id + "\n" + filter.type;
        for (const auto& s : filter.states)
          filters += "\n" + s;
        if (!req.page_token().empty()) {
          if (auto p = decode_page_token(req.page_token(), filters, page.after_id)) return p;
        }
        auto listing = env->store->list_commands(filter, page);
        if (!listing.ok()) return store_problem(listing.status(), "device", device.id);
        for (const auto& c : listing.value().items)
          to_proto(c, *resp.add_commands());
        if (listing.value().more && !listing.value().items.empty()) {
          resp.set_next_page_token(
              encode_page_token(filters, std::to_string(listing.value().items.back().seq)));
        }
        return std::nullopt;
      });

  registry.unary<v1::CancelCommandRequest, v1::Command>(
      "counterlink.v1.CommandService.CancelCommand",
      [env](CallContext& ctx, const v1::CancelCommandRequest& req, v1::Command& resp) -> Outcome {
        if (!env->commands) return engine_missing();
        store::Command c;
        if (auto p = load_command(ctx, *env, req.command_id(), c)) return p;
        auto cancelled = env->commands->cancel(c.tenant_id, c.id);
        if (!cancelled.ok()) return cancel_problem(cancelled.status(), c.id);
        to_proto(cancelled.value(), resp);
        return std::nullopt;
      });

  registry.unary<v1::ClearPrintQueueRequest, v1::ClearPrintQueueResponse>(
      "counterlink.v1.CommandService.ClearPrintQueue",
      [env](CallContext& ctx, const v1::ClearPrintQueueRequest& req,
            v1::ClearPrintQueueResponse& resp) -> Outcome {
        if (!env->commands) return engine_missing();
        store::Device device;
        if (auto p = load_device(ctx, *env, req.device_id(), device)) return p;
        store::CommandFilter filter;
        filter.tenant_id = device.tenant_id;
        filter.device_id = device.id;
        filter.type = command_type::kPrint;
        filter.states = {command_state::kQueued, command_state::kSent, command_state::kDelivered,
                         command_state::kWaiting};
        store::Page page;
        page.limit = 1000;
        for (;;) {
          auto listing = env->store->list_commands(filter, page);
          if (!listing.ok()) return store_problem(listing.status(), "device", device.id);
          for (const auto& c : listing.value().items) {
            auto cancelled = env->commands->cancel(c.tenant_id, c.id);
            if (cancelled.ok()) {
              resp.add_cancelled_ids(c.id);
            } else if (cancelled.status().code == store::Code::kConflict) {
              if (cancelled.status().message != "finished") resp.add_in_flight_ids(c.id);
            } else if (cancelled.status().code != store::Code::kNotFound) {
              return store_problem(cancelled.status(), "command", c.id);
            }
          }
          if (!listing.value().more || listing.value().items.empty()) break;
          page.after_id = std::to_string(listing.value().items.back().seq);
        }
        return std::nullopt;
      });
}

}  // namespace counterlink::platform::services
