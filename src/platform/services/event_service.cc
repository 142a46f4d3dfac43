// counterlink.v1.EventService: the tenant's event log, read in pages or
// followed as a stream (server-sent events / gRPC server stream).
#include <chrono>
#include <thread>

#include <google/protobuf/util/json_util.h>

#include "counterlink/v1/events.pb.h"

#include "common.h"

namespace counterlink::platform::services {

namespace {

using api::CallContext;
using api::Outcome;

// How long a stream waits for the event bus before it reads the store
// anyway (events written by another node, or presence, which does not ring
// the bus) and, when there was nothing, sends a keep-alive.
constexpr int64_t kStreamPollMs = 1000;
constexpr int64_t kHeartbeatMs = 15'000;
constexpr int32_t kStreamBatch = 200;

struct TypeFilter {
  std::vector<std::string> exact;
  std::vector<std::string> prefixes;  // "broadcast." for "broadcast.*"
  bool matches(const std::string& type) const {
    if (exact.empty() && prefixes.empty()) return true;
    for (const auto& e : exact) {
      if (e == type) return true;
    }
    for (const auto& p : prefixes) {
      if (type.rfind(p, 0) == 0) return true;
    }
    return false;
  }
};

template <typename Repeated>
Outcome parse_types(const Repeated& types, TypeFilter& out) {
  for (const std::string& t : types) {
    if (t.empty() || t.size() > 64) {
      return api::invalid_argument("types", "Each type is 1..64 characters, e.g. broadcast.*.");
    }
    if (t == "*") return std::nullopt;  // everything
    if (t.size() > 2 && t.compare(t.size() - 2, 2, ".*") == 0) {
      out.prefixes.push_back(t.substr(0, t.size() - 1));
    } else {
      out.exact.push_back(t);
    }
  }
  return std::nullopt;
}

Outcome parse_event_id(std::string_view field, const std::string& text, int64_t& seq) {
  seq = 0;
  if (text.empty()) return std::nullopt;
  if (text.size() > 18) return api::invalid_argument(std::string(field), "Not an event id.");
  for (char c : text) {
    if (c < '0' || c > '9') return api::invalid_argument(std::string(field), "Not an event id.");
  }
  seq = std::stoll(text);
  return std::nullopt;
}

void to_proto(const store::Event& e, bool admin, v1::Event& out) {
  out.set_id(std::to_string(e.seq));
  out.set_type(e.type);
  set_time(out.mutable_create_time(), e.at_ms);
  out.set_device_id(e.device_id);
  out.set_subject_id(e.subject_id);
  if (!e.data_json.empty()) {
    (void)google::protobuf::util::JsonStringToMessage(e.data_json, out.mutable_data());
  }
  if (admin) out.set_tenant_id(e.tenant_id);
}

}  // namespace

void register_event_service(api::ServiceRegistry& registry, EnvPtr env) {
  registry.unary<v1::ListEventsRequest, v1::ListEventsResponse>(
      "counterlink.v1.EventService.ListEvents",
      [env](CallContext& ctx, const v1::ListEventsRequest& req,
            v1::ListEventsResponse& resp) -> Outcome {
        std::string tenant;
        if (auto p = resolve_tenant(ctx, *env, "", TenantNeed::kOptional, tenant)) return p;
        int64_t after = 0;
        if (auto p = parse_event_id("after_id", req.after_id(), after)) return p;
        int32_t limit = req.page_size() == 0 ? 100 : req.page_size();
        if (limit < 1 || limit > 1000) {
          return api::invalid_argument("page_size", "page_size must be 1..1000.");
        }
        TypeFilter filter;
        if (auto p = parse_types(req.types(), filter)) return p;
        // Read until a page is full of matches or the log ends; `last_id`
        // moves past what was skipped so the next call does not read it again.
        int64_t cursor = after;
        bool more = false;
        while (resp.events_size() < limit) {
          auto rows = env->store->list_events(tenant, cursor, limit);
          if (!rows.ok()) return store_problem(rows.status(), "event", "");
          for (const auto& e : rows.value()) {
            cursor = e.seq;
            if (filter.matches(e.type)) to_proto(e, ctx.principal.admin, *resp.add_events());
            if (resp.events_size() == limit) break;
          }
          if (static_cast<int32_t>(rows.value().size()) < limit) break;
          if (resp.events_size() == limit) {
            more = true;
            break;
          }
        }
        resp.set_last_id(cursor > 0 ? std::to_string(cursor) : req.after_id());
        resp.set_more(more);
        return std::nullopt;
      });

  registry.unary<v1::GetEventRequest, v1::Event>(
      "counterlink.v1.EventService.GetEvent",
      [env](CallContext& ctx, const v1::GetEventRequest& req, v1::Event& resp) -> Outcome {
        std::string tenant;
        if (auto p = resolve_tenant(ctx, *env, "", TenantNeed::kOptional, tenant)) return p;
        int64_t seq = 0;
        if (auto p = parse_event_id("event_id", req.event_id(), seq)) return p;
        if (seq == 0) return api::invalid_argument("event_id", "event_id is required.");
        auto row = env->store->get_event(tenant, seq);
        if (!row.ok()) return store_problem(row.status(), "event", req.event_id());
        to_proto(row.value(), ctx.principal.admin, resp);
        return std::nullopt;
      });

  registry.stream<v1::StreamEventsRequest>(
      "counterlink.v1.EventService.StreamEvents",
      [env](CallContext& ctx, const v1::StreamEventsRequest& req,
            api::StreamSink& sink) -> Outcome {
        std::string tenant;
        if (auto p = resolve_tenant(ctx, *env, "", TenantNeed::kOptional, tenant)) return p;
        TypeFilter filter;
        if (auto p = parse_types(req.types(), filter)) return p;
        const std::string& resume = !req.after_id().empty() ? req.after_id() : ctx.last_event_id;
        int64_t cursor = 0;
        if (auto p = parse_event_id(req.after_id().empty() ? "Last-Event-ID" : "after_id", resume,
                                    cursor)) {
          return p;
        }
        if (resume.empty()) {
          // Only new events: start at the end of the log.
          for (;;) {
            auto rows = env->store->list_events(tenant, cursor, 1000);
            if (!rows.ok()) return store_problem(rows.status(), "event", "");
            if (rows.value().empty()) break;
            cursor = rows.value().back().seq;
            if (rows.value().size() < 1000) break;
          }
        }
        // Answer at once (headers and a comment line), so a client knows
        // it is subscribed before the first event.
        if (!sink.heartbeat()) return std::nullopt;
        EventBus* bus = env->commands ? &env->commands->events() : nullptr;
        int64_t idle_since = env->now();
        v1::Event message;
        while (!sink.cancelled()) {
          auto rows = env->store->list_events(tenant, cursor, kStreamBatch);
          if (!rows.ok()) {
            // Say so and end; the client resumes from its last id.
            return store_problem(rows.status(), "event", "");
          }
          for (const auto& e : rows.value()) {
            cursor = e.seq;
            if (!filter.matches(e.type)) continue;
            message.Clear();
            to_proto(e, ctx.principal.admin, message);
            if (!sink.send(message, message.id(), e.type)) return std::nullopt;
            idle_since = env->now();
          }
          if (static_cast<int32_t>(rows.value().size()) == kStreamBatch) continue;
          if (env->now() - idle_since >= kHeartbeatMs) {
            if (!sink.heartbeat()) return std::nullopt;
            idle_since = env->now();
          }
          if (bus) {
            bus->wait(cursor, kStreamPollMs);
          } else {
            std::this_thread::sleep_for(std::chrono::milliseconds(kStreamPollMs));
          }
        }
        return std::nullopt;
      });
}

}  // namespace counterlink::platform::services
