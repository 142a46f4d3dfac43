// The webhook dispatcher (counterlink/platform/webhooks.h): the fan-out from
// the event log into deliveries, and the sender that POSTs due deliveries
// with libcurl's multi interface on one thread.
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include <curl/curl.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/timestamp.pb.h>
#include <google/protobuf/util/json_util.h>
#include <spdlog/spdlog.h>

#include "counterlink/obs/metrics.h"
#include "counterlink/platform/commands.h"
#include "counterlink/platform/crypto.h"
#include "counterlink/platform/webhooks.h"
#include "counterlink/v1/events.pb.h"

#include "device_metrics.h"

namespace counterlink::platform {

namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMaxUrlBytes = 2048;
constexpr size_t kMaxPatternBytes = 64;
constexpr size_t kErrorExcerptBytes = 256;
constexpr const char* kUserAgent = "User-Agent: Counterlink-Webhooks/1";
constexpr const char* kScanReceived = "scan.received";
// Fan-out: events read per store call, and calls per endpoint per round (so
// one busy tenant cannot hold the others back for long).
constexpr int32_t kFanOutBatch = 500;
constexpr int kFanOutBatchesPerRound = 20;
// Sender: due deliveries read per round. Larger than max_in_flight, since
// the deliveries in flight are still due in the store and come back first.
constexpr int32_t kDueBatch = 500;
// A completion asks for the next due deliveries, but not more often than this.
constexpr int64_t kMinRefillGapMs = 20;
// The fan-out thread's wait on the event bus, in slices so stop() is prompt.
constexpr int64_t kWaitSliceMs = 100;

void ensure_curl() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

obs::Counter& attempts_counter(WebhookOutcome outcome) {
  static const std::array<obs::Counter*, 4> counters = [] {
    std::array<obs::Counter*, 4> c{};
    for (size_t i = 0; i < c.size(); ++i) {
      c[i] = &obs::metrics().counter("counterlink_webhook_attempts_total",
                                     "Webhook delivery attempts by outcome",
                                     {{"outcome", to_string(static_cast<WebhookOutcome>(i))}});
    }
    return c;
  }();
  return *counters[static_cast<size_t>(outcome)];
}

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != prefix[i]) return false;
  }
  return true;
}

// At most `max` bytes of `text`, cut at a UTF-8 character boundary.
std::string excerpt(std::string_view text, size_t max) {
  if (text.size() <= max) return std::string(text);
  size_t end = max;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80)
    --end;
  return std::string(text.substr(0, end));
}

// Header values come from our own event types and ids; never let a CR/LF
// through anyway.
std::string header(std::string_view name, std::string_view value) {
  std::string line(name);
  line += ": ";
  for (char c : value)
    line.push_back(c == '\r' || c == '\n' ? ' ' : c);
  return line;
}

// ---- One HTTP request ------------------------------------------------------------

// A POST in flight: owns its easy handle, headers, body and what came back.
struct Transfer {
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  std::string body;
  std::string response;
  size_t max_response = 0;
  bool truncated = false;
  char error[CURL_ERROR_SIZE] = {};
  Clock::time_point started;
  store::TimeMs started_ms = 0;
  // The sender's bookkeeping (unused by ping).
  store::WebhookDelivery delivery;
  store::Event event;

  Transfer() = default;
  Transfer(const Transfer&) = delete;
  Transfer& operator=(const Transfer&) = delete;
  ~Transfer() {
    if (easy) curl_easy_cleanup(easy);
    if (headers) curl_slist_free_all(headers);
  }
};

size_t on_response_bytes(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t bytes = size * count;
  const size_t room = t->max_response - std::min(t->max_response, t->response.size());
  if (bytes > room) {
    // Enough: keep what fits and end the transfer (the status is known).
    t->response.append(data, room);
    t->truncated = true;
    return 0;
  }
  t->response.append(data, bytes);
  return bytes;
}

// Sets up `t` to POST `t.body` to `url` with the delivery headers. False if
// libcurl could not give a handle.
bool prepare(Transfer& t, const std::string& url, const store::Event& event,
             const std::string& delivery_id, int32_t attempt, const WebhookSecrets& secrets,
             const WebhookOptions& options, store::TimeMs now_ms) {
  ensure_curl();
  t.easy = curl_easy_init();
  if (!t.easy) return false;
  t.body = webhook_event_body(event);
  t.max_response = options.max_response_bytes;
  for (const std::string& line :
       {std::string("Content-Type: application/json"), std::string(kUserAgent),
        header("Counterlink-Event-Id", std::to_string(event.seq)),
        header("Counterlink-Event-Type", event.type),
        header("Counterlink-Delivery-Id", delivery_id),
        header("Counterlink-Delivery-Attempt", std::to_string(attempt)),
        header("Counterlink-Signature", webhook_signature(secrets, now_ms, t.body)),
        // No "Expect: 100-continue" round trip before the body.
        std::string("Expect:")}) {
    curl_slist* next = curl_slist_append(t.headers, line.c_str());
    if (!next) return false;
    t.headers = next;
  }
  CURL* e = t.easy;
  curl_easy_setopt(e, CURLOPT_URL, url.c_str());
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, options.allow_http ? "http,https" : "https");
  curl_easy_setopt(e, CURLOPT_POST, 1L);
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, t.body.data());
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(t.body.size()));
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, t.headers);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_response_bytes);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t.error);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(options.request_timeout_ms));
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  // A redirect is an answer like any other non-2xx: the URL is to be fixed.
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_PRIVATE, &t);
  t.started = Clock::now();
  t.started_ms = now_ms;
  return true;
}

WebhookResponse result_of(Transfer& t, CURLcode code, const WebhookOptions& options) {
  WebhookResponse r;
  r.duration_ms = static_cast<int32_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t.started).count());
  if (code == CURLE_OK || (code == CURLE_WRITE_ERROR && t.truncated)) {
    long status = 0;
    curl_easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &status);
    r.status_code = static_cast<int32_t>(status);
    r.body = std::move(t.response);
    if (status >= 200 && status < 300) {
      r.outcome = WebhookOutcome::kSuccess;
    } else {
      r.outcome = WebhookOutcome::kHttpError;
      r.error = excerpt(r.body, kErrorExcerptBytes);
    }
    return r;
  }
  std::string detail = t.error[0] ? std::string(t.error) : std::string(curl_easy_strerror(code));
  if (code == CURLE_OPERATION_TIMEDOUT) {
    r.outcome = WebhookOutcome::kTimeout;
    r.error =
        "no answer within " + std::to_string(options.request_timeout_ms) + " ms (" + detail + ")";
  } else {
    r.outcome = WebhookOutcome::kTransportError;
    r.error = detail;
  }
  r.error = excerpt(r.error, kErrorExcerptBytes);
  return r;
}

}  // namespace

// ---- Free functions ---------------------------------------------------------------

const char* to_string(WebhookOutcome outcome) {
  switch (outcome) {
    case WebhookOutcome::kSuccess:
      return "success";
    case WebhookOutcome::kHttpError:
      return "http_error";
    case WebhookOutcome::kTimeout:
      return "timeout";
    case WebhookOutcome::kTransportError:
      return "transport_error";
  }
  return "unknown";
}

std::string check_webhook_url(std::string_view url, bool allow_http) {
  if (url.empty()) return "url is required, e.g. https://example.com/counterlink/events.";
  if (url.size() > kMaxUrlBytes) return "url is longer than 2048 characters; shorten it.";
  size_t rest = 0;
  if (starts_with_nocase(url, "https://")) {
    rest = 8;
  } else if (starts_with_nocase(url, "http://")) {
    if (!allow_http) {
      return "url must start with https://: events carry payment data (this server accepts "
             "plain http:// only when webhooks.allow_http is set).";
    }
    rest = 7;
  } else {
    return "url must start with https://.";
  }
  for (unsigned char c : url) {
    if (c <= 0x20 || c == 0x7f) {
      return "url contains spaces or control characters; percent-encode them.";
    }
  }
  const size_t end = url.find_first_of("/?#", rest);
  const std::string_view authority =
      url.substr(rest, end == std::string_view::npos ? std::string_view::npos : end - rest);
  if (authority.empty()) return "url has no host.";
  if (authority.find('@') != std::string_view::npos) {
    return "url must not contain user:password@; authenticate requests by their signature.";
  }
  if (url.find('#') != std::string_view::npos) return "url must not contain a #fragment.";
  // host[:port], or [v6]:port.
  std::string_view host = authority;
  std::string_view port;
  if (host.front() == '[') {
    const size_t close = host.find(']');
    if (close == std::string_view::npos) return "url has an unterminated [IPv6] host.";
    if (close + 1 < host.size()) {
      if (host[close + 1] != ':') return "url has a malformed host.";
      port = host.substr(close + 2);
    }
    host = host.substr(0, close + 1);
  } else if (const size_t colon = host.rfind(':'); colon != std::string_view::npos) {
    port = host.substr(colon + 1);
    host = host.substr(0, colon);
  }
  if (host.empty() || host == "[]") return "url has no host.";
  if (authority.find(':') != std::string_view::npos && host.front() != '[') {
    if (port.empty() || port.size() > 5 ||
        !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
        std::stoi(std::string(port)) == 0 || std::stoi(std::string(port)) > 65535) {
      return "url has a bad port; use 1 to 65535.";
    }
  }
  return "";
}

std::string check_webhook_event_pattern(std::string_view pattern) {
  const std::string shown = "\"" + excerpt(pattern, 40) + "\"";
  if (pattern.empty() || pattern.size() > kMaxPatternBytes) {
    return "Event type patterns are 1 to 64 characters, e.g. \"broadcast.*\".";
  }
  if (pattern == "*") return "";
  std::string_view name = pattern;
  if (name.size() > 2 && name.substr(name.size() - 2) == ".*") name.remove_suffix(2);
  bool segment_empty = true;
  for (char c : name) {
    if (c == '.') {
      if (segment_empty) break;
      segment_empty = true;
      continue;
    }
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
      return "Event type pattern " + shown +
             " may hold only a-z 0-9 _ and dots, with \"*\" alone or as a last \".*\" "
             "(\"broadcast.*\").";
    }
    segment_empty = false;
  }
  if (segment_empty) return "Event type pattern " + shown + " has an empty part between dots.";
  return "";
}

bool webhook_event_matches(const std::vector<std::string>& patterns, std::string_view type) {
  if (patterns.empty()) return true;
  for (const std::string& p : patterns) {
    if (p == "*") return true;
    if (p.size() > 2 && p.compare(p.size() - 2, 2, ".*") == 0) {
      // "broadcast.*" matches "broadcast.played" (and "broadcast.x.y"), not "broadcast".
      const std::string_view family = std::string_view(p).substr(0, p.size() - 1);
      if (type.size() > family.size() && type.substr(0, family.size()) == family) return true;
    } else if (type == p) {
      return true;
    }
  }
  return false;
}

std::string generate_webhook_secret() {
  return "whsec_" + base64url_encode(random_bytes(32));
}

std::string seal_webhook_secrets(const KeyRing& keys, const WebhookSecrets& secrets,
                                 std::string_view endpoint_id) {
  // Secrets are base64url with a prefix: a space cannot occur in them.
  std::string plain = secrets.current;
  if (!secrets.previous.empty()) {
    plain += " " + secrets.previous + " " + std::to_string(secrets.previous_until_ms);
  }
  return keys.seal(plain, endpoint_id);
}

std::optional<WebhookSecrets> open_webhook_secrets(const KeyRing& keys, std::string_view sealed,
                                                   std::string_view endpoint_id) {
  OpenResult opened = keys.open(sealed, endpoint_id);
  if (!opened.ok()) return std::nullopt;
  const std::string& plain = opened.plaintext;
  WebhookSecrets s;
  const size_t first = plain.find(' ');
  if (first == std::string::npos) {
    s.current = plain;
  } else {
    s.current = plain.substr(0, first);
    const size_t second = plain.find(' ', first + 1);
    if (second == std::string::npos) return std::nullopt;
    s.previous = plain.substr(first + 1, second - first - 1);
    s.previous_until_ms = std::strtoll(plain.c_str() + second + 1, nullptr, 10);
  }
  if (s.current.empty()) return std::nullopt;
  return s;
}

std::string webhook_signature(const WebhookSecrets& secrets, int64_t now_ms,
                              std::string_view body) {
  const std::string t = std::to_string(now_ms / 1000);
  std::string signed_text = t;
  signed_text += '.';
  signed_text += body;
  std::string value = "t=" + t + ",v1=" + hex(hmac_sha256(secrets.current, signed_text));
  if (!secrets.previous.empty() && now_ms < secrets.previous_until_ms) {
    value += ",v1=" + hex(hmac_sha256(secrets.previous, signed_text));
  }
  return value;
}

std::string webhook_event_body(const store::Event& e) {
  v1::Event out;
  out.set_id(std::to_string(e.seq));
  out.set_type(e.type);
  auto* time = out.mutable_create_time();
  int64_t seconds = e.at_ms / 1000;
  int64_t ms = e.at_ms % 1000;
  if (ms < 0) {
    ms += 1000;
    seconds -= 1;
  }
  time->set_seconds(seconds);
  time->set_nanos(static_cast<int32_t>(ms * 1'000'000));
  out.set_device_id(e.device_id);
  out.set_subject_id(e.subject_id);
  if (!e.data_json.empty()) {
    (void)google::protobuf::util::JsonStringToMessage(e.data_json, out.mutable_data());
  }
  out.mutable_data();  // {} rather than absent
  out.set_tenant_id(e.tenant_id);
  // As the REST API prints messages: snake_case names, defaults included.
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(out, &json, options);
  return json;
}

std::optional<int64_t> webhook_next_attempt_ms(const WebhookOptions& options,
                                               store::TimeMs created_ms, int32_t failed_attempts,
                                               store::TimeMs now_ms) {
  if (options.retry_delays_ms.empty() || failed_attempts < 1) return std::nullopt;
  const size_t index =
      std::min(static_cast<size_t>(failed_attempts - 1), options.retry_delays_ms.size() - 1);
  const int64_t next = now_ms + options.retry_delays_ms[index];
  if (next > created_ms + options.retry_window_ms) return std::nullopt;
  return next;
}

store::Result<int64_t> latest_event_seq(store::Store& store, int64_t hint) {
  // Invariant below: `lo` is an assigned seq (or 0); no event is above `hi`.
  auto first_after = [&](int64_t seq) -> store::Result<std::optional<int64_t>> {
    auto rows = store.list_events("", seq, 1);
    if (!rows.ok()) return rows.status();
    if (rows.value().empty()) return std::optional<int64_t>();
    return std::optional<int64_t>(rows.value().front().seq);
  };
  int64_t lo = std::max<int64_t>(hint, 0);
  auto next = first_after(lo);
  if (!next.ok()) return next.status();
  if (!next.value()) return lo;
  lo = *next.value();
  // Gallop up...
  int64_t step = 1;
  int64_t hi = 0;
  for (;;) {
    auto probe = first_after(lo + step);
    if (!probe.ok()) return probe.status();
    if (!probe.value()) {
      hi = lo + step;
      break;
    }
    lo = *probe.value();
    step *= 2;
  }
  // ... then bisect [lo, hi].
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    auto probe = first_after(mid);
    if (!probe.ok()) return probe.status();
    if (probe.value()) {
      lo = *probe.value();
    } else {
      hi = mid;
    }
  }
  return lo;
}

WebhookResponse ping_webhook(const store::WebhookEndpoint& endpoint, const WebhookSecrets& secrets,
                             const WebhookOptions& options, store::TimeMs now_ms) {
  store::Event ping;
  ping.seq = 0;
  ping.tenant_id = endpoint.tenant_id;
  ping.type = "webhook.ping";
  ping.subject_id = endpoint.id;
  ping.at_ms = now_ms;
  ping.data_json = "{\"webhook_id\":\"" + endpoint.id + "\"}";
  Transfer t;
  WebhookResponse r;
  if (!prepare(t, endpoint.url, ping, "0", 1, secrets, options, now_ms)) {
    r.error = "could not set up the request (out of memory?)";
    return r;
  }
  const CURLcode code = curl_easy_perform(t.easy);
  return result_of(t, code, options);
}

// ---- The dispatcher ------------------------------------------------------------------

struct WebhookDispatcher::Impl {
  Impl(store::Store& s, const KeyRing& k, EventBus& b, WebhookOptions o, ClockMs c)
      : store(s),
        keys(k),
        bus(b),
        options(std::move(o)),
        clock(c ? std::move(c) : system_clock_ms) {
    ensure_curl();
    multi = curl_multi_init();
    if (!multi) throw std::runtime_error("webhooks: curl_multi_init failed (out of memory?)");
    for (int i = 0; i < 4; ++i)
      (void)attempts_counter(static_cast<WebhookOutcome>(i));  // listed from the start
  }
  ~Impl() {
    abandon_in_flight();
    curl_multi_cleanup(multi);
  }

  store::Store& store;
  const KeyRing& keys;
  EventBus& bus;
  const WebhookOptions options;
  ClockMs clock;
  WebhookResponseHandler handler;

  CURLM* multi = nullptr;
  std::thread sender;
  std::thread fanout;
  std::atomic<bool> stopping{false};
  std::atomic<bool> refill_requested{false};
  std::mutex stop_mutex;  // with stop_cv: the fan-out's fallback sleep
  std::condition_variable stop_cv;
  bool running = false;  // control thread only

  // ---- Sender state (sender thread only) ----
  struct CachedEndpoint {
    store::WebhookEndpoint row;
    std::optional<WebhookSecrets> secrets;
    int64_t loaded_ms = 0;
  };
  std::unordered_map<int64_t, std::unique_ptr<Transfer>> in_flight;  // by delivery id
  std::unordered_map<std::string, int> in_flight_per_endpoint;
  std::unordered_map<std::string, CachedEndpoint> endpoints;
  int64_t last_refill_ms = 0;
  LogThrottle store_log{2};

  // ---- Fan-out state (fan-out thread only) ----
  struct Checked {
    int64_t cursor = 0;   // the endpoint's cursor when checked
    int64_t through = 0;  // no event of its tenant up to this seq was left
  };
  int64_t latest_seq = 0;
  std::unordered_map<std::string, Checked> checked;

  void warn_store(const char* what, const store::Status& status) {
    uint64_t suppressed = 0;
    if (store_log.allow(clock(), suppressed)) {
      spdlog::warn("webhook.store_failed op={} error=\"{}\" suppressed={}", what,
                   log_safe(status.message), suppressed);
    }
  }

  // ---- Fan-out --------------------------------------------------------------------

  void fanout_loop() {
    while (!stopping) {
      const int64_t mark = bus.last_seq();
      if (fan_out_round()) wake();
      const auto until = Clock::now() + std::chrono::milliseconds(options.poll_interval_ms);
      while (!stopping && Clock::now() < until) {
        const auto before = Clock::now();
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(until - before).count();
        const int64_t slice = std::clamp<int64_t>(left, 1, kWaitSliceMs);
        if (bus.wait(mark, slice)) break;
        if (Clock::now() - before < std::chrono::milliseconds(slice / 2)) {
          // The bus was stopped (it answers at once): sleep on our own.
          std::unique_lock lock(stop_mutex);
          stop_cv.wait_for(lock, std::chrono::milliseconds(slice), [&] { return stopping.load(); });
        }
      }
    }
  }

  // One pass over every enabled endpoint; true if deliveries were enqueued.
  bool fan_out_round() {
    auto latest = latest_event_seq(store, std::max(latest_seq, bus.last_seq()));
    if (!latest.ok()) {
      warn_store("latest_event_seq", latest.status());
      return false;
    }
    latest_seq = latest.value();
    bool enqueued = false;
    std::unordered_map<std::string, Checked> still_checked;
    store::Page page;
    page.limit = 1000;
    for (;;) {
      if (stopping) return enqueued;
      auto listing = store.list_webhooks("", page);
      if (!listing.ok()) {
        warn_store("list_webhooks", listing.status());
        return enqueued;
      }
      for (const store::WebhookEndpoint& endpoint : listing.value().items) {
        if (endpoint.disabled || endpoint.cursor_seq >= latest_seq) continue;
        auto it = checked.find(endpoint.id);
        if (it != checked.end() && it->second.cursor == endpoint.cursor_seq &&
            it->second.through >= latest_seq) {
          still_checked.insert(*it);
          continue;
        }
        Checked done;
        if (fan_out(endpoint, done, enqueued)) still_checked[endpoint.id] = done;
      }
      if (!listing.value().more || listing.value().items.empty()) break;
      page.after_id = listing.value().items.back().id;
    }
    checked = std::move(still_checked);
    return enqueued;
  }

  // Turns the endpoint's new events into deliveries. True (with `done`) if
  // every event of its tenant up to latest_seq is behind its cursor now.
  bool fan_out(const store::WebhookEndpoint& endpoint, Checked& done, bool& enqueued) {
    int64_t cursor = endpoint.cursor_seq;
    for (int batch = 0; batch < kFanOutBatchesPerRound; ++batch) {
      auto events = store.list_events(endpoint.tenant_id, cursor, kFanOutBatch);
      if (!events.ok()) {
        warn_store("list_events", events.status());
        return false;
      }
      const auto& rows = events.value();
      if (rows.empty()) {
        done = {cursor, latest_seq};
        return true;
      }
      const int64_t now = clock();
      std::vector<store::WebhookDelivery> deliveries;
      for (const store::Event& e : rows) {
        if (!webhook_event_matches(endpoint.event_types, e.type)) continue;
        store::WebhookDelivery d;
        d.endpoint_id = endpoint.id;
        d.tenant_id = endpoint.tenant_id;
        d.event_seq = e.seq;
        d.event_type = e.type;
        d.state = "pending";
        d.next_attempt_ms = now;
        d.created_ms = now;
        d.updated_ms = now;
        deliveries.push_back(std::move(d));
      }
      const int64_t next_cursor = rows.back().seq;
      const store::Status status =
          store.enqueue_webhook_deliveries(endpoint.id, cursor, next_cursor, deliveries);
      if (status.code == store::Code::kConflict || status.code == store::Code::kNotFound) {
        return false;  // changed or deleted meanwhile: read again next round
      }
      if (!status.ok()) {
        warn_store("enqueue_webhook_deliveries", status);
        return false;
      }
      if (!deliveries.empty()) enqueued = true;
      cursor = next_cursor;
      if (static_cast<int32_t>(rows.size()) < kFanOutBatch) {
        done = {cursor, latest_seq};
        return true;
      }
    }
    return false;  // more next round
  }

  // ---- Sender ----------------------------------------------------------------------

  void wake() {
    refill_requested = true;
    curl_multi_wakeup(multi);
  }

  void sender_loop() {
    int64_t next_poll_ms = 0;
    while (!stopping) {
      const int64_t now = clock();
      const bool requested = refill_requested.load();
      if (now >= next_poll_ms || (requested && now - last_refill_ms >= kMinRefillGapMs)) {
        refill_requested = false;
        last_refill_ms = now;
        refill(now);
        next_poll_ms = clock() + options.poll_interval_ms;
      }
      int running_handles = 0;
      curl_multi_perform(multi, &running_handles);
      if (finish_completed()) refill_requested = true;
      int64_t wait_ms = next_poll_ms - clock();
      if (refill_requested) wait_ms = std::min(wait_ms, last_refill_ms + kMinRefillGapMs - clock());
      wait_ms = std::clamp<int64_t>(wait_ms, 0, options.poll_interval_ms);
      curl_multi_poll(multi, nullptr, 0, static_cast<int>(wait_ms), nullptr);
    }
    abandon_in_flight();
  }

  // Requests in flight are dropped; their deliveries stay due in the store.
  void abandon_in_flight() {
    for (auto& [id, t] : in_flight)
      curl_multi_remove_handle(multi, t->easy);
    in_flight.clear();
    in_flight_per_endpoint.clear();
  }

  const CachedEndpoint* endpoint(const std::string& id, int64_t now) {
    auto it = endpoints.find(id);
    if (it != endpoints.end() && now - it->second.loaded_ms < options.poll_interval_ms) {
      return &it->second;
    }
    auto row = store.get_webhook("", id);
    if (!row.ok()) {
      if (row.status().code != store::Code::kNotFound) warn_store("get_webhook", row.status());
      if (it != endpoints.end()) endpoints.erase(it);
      return nullptr;
    }
    CachedEndpoint& cached = endpoints[id];
    cached.row = std::move(row).value();
    cached.secrets = open_webhook_secrets(keys, cached.row.secret_sealed, cached.row.id);
    cached.loaded_ms = now;
    if (endpoints.size() > 10000) {  // bound the cache; it refills on demand
      CachedEndpoint keep = std::move(cached);
      endpoints.clear();
      return &(endpoints[id] = std::move(keep));
    }
    return &cached;
  }

  void refill(int64_t now) {
    if (static_cast<int32_t>(in_flight.size()) >= options.max_in_flight) return;
    auto due = store.due_webhook_deliveries(now, kDueBatch);
    if (!due.ok()) {
      warn_store("due_webhook_deliveries", due.status());
      return;
    }
    // Deliveries of endpoints at their limit, in due order.
    std::unordered_map<std::string, std::vector<const store::WebhookDelivery*>> blocked;
    for (const store::WebhookDelivery& d : due.value()) {
      if (stopping) return;
      if (in_flight.count(d.id)) continue;
      if (static_cast<int32_t>(in_flight.size()) >= options.max_in_flight) break;
      const CachedEndpoint* ep = endpoint(d.endpoint_id, now);
      if (!ep) continue;  // deleted: its deliveries go with it
      if (ep->row.disabled) {
        give_up(d, now, "endpoint disabled; enable it and redeliver");
        continue;
      }
      if (in_flight_per_endpoint[d.endpoint_id] >= options.max_in_flight_per_endpoint) {
        blocked[d.endpoint_id].push_back(&d);
        continue;
      }
      start(d, *ep, now);
    }
    // A full batch may hide due deliveries of other endpoints behind those
    // of endpoints at their limit (a slow endpoint's backlog): move the
    // blocked ones back by about the time their endpoint needs to reach them.
    if (static_cast<int32_t>(due.value().size()) < kDueBatch) return;
    for (const auto& [endpoint_id, rows] : blocked) {
      for (size_t i = 0; i < rows.size(); ++i) {
        const int64_t later =
            now + static_cast<int64_t>(i / std::max(1, options.max_in_flight_per_endpoint) + 1) *
                      options.request_timeout_ms;
        const store::Status s =
            store.reschedule_webhook_delivery(rows[i]->tenant_id, rows[i]->id, later);
        if (!s.ok() && s.code != store::Code::kNotFound) {
          warn_store("reschedule_webhook_delivery", s);
          return;
        }
      }
    }
  }

  void start(const store::WebhookDelivery& d, const CachedEndpoint& ep, int64_t now) {
    if (!ep.secrets) {
      retry_or_give_up(d, now, 0, 0,
                       "signing secret cannot be opened (a master key missing from "
                       "security.master_keys?)");
      return;
    }
    auto event = store.get_event(d.tenant_id, d.event_seq);
    if (!event.ok()) {
      if (event.status().code == store::Code::kNotFound) {
        give_up(d, now, "event " + std::to_string(d.event_seq) + " is no longer in the log");
      } else {
        warn_store("get_event", event.status());
      }
      return;
    }
    auto t = std::make_unique<Transfer>();
    t->delivery = d;
    t->event = std::move(event).value();
    if (!prepare(*t, ep.row.url, t->event, std::to_string(d.id), d.attempts + 1, *ep.secrets,
                 options, now) ||
        curl_multi_add_handle(multi, t->easy) != CURLM_OK) {
      spdlog::error("webhook.request_setup_failed delivery={}", d.id);
      return;
    }
    ++in_flight_per_endpoint[d.endpoint_id];
    in_flight.emplace(d.id, std::move(t));
  }

  // Records the outcome of every finished request; true if any finished.
  bool finish_completed() {
    bool any = false;
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      Transfer* raw = nullptr;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &raw);
      const CURLcode code = msg->data.result;
      curl_multi_remove_handle(multi, msg->easy_handle);
      if (!raw) continue;
      auto it = in_flight.find(raw->delivery.id);
      if (it == in_flight.end()) continue;
      std::unique_ptr<Transfer> t = std::move(it->second);
      in_flight.erase(it);
      if (--in_flight_per_endpoint[t->delivery.endpoint_id] <= 0) {
        in_flight_per_endpoint.erase(t->delivery.endpoint_id);
      }
      any = true;
      finish(*t, result_of(*t, code, options));
    }
    return any;
  }

  void finish(Transfer& t, const WebhookResponse& r) {
    attempts_counter(r.outcome).inc();
    // The scan's answer first: the box is waiting.
    if (handler && r.status_code > 0 && t.event.type == kScanReceived) {
      handler(t.event, r.status_code, r.body);
    }
    const int64_t now = clock();
    store::WebhookDelivery d = t.delivery;
    store::WebhookAttempt a;
    a.delivery_id = d.id;
    a.attempt = d.attempts + 1;
    a.at_ms = t.started_ms;
    a.status_code = r.status_code;
    a.duration_ms = r.duration_ms;
    a.error = r.error;
    d.attempts = a.attempt;
    d.last_attempt_ms = a.at_ms;
    d.last_status_code = r.status_code;
    d.last_error = r.error;
    d.updated_ms = now;
    if (r.outcome == WebhookOutcome::kSuccess) {
      d.state = "succeeded";
      d.next_attempt_ms = 0;
    } else if (auto next = webhook_next_attempt_ms(options, d.created_ms, d.attempts, now)) {
      d.state = "pending";
      d.next_attempt_ms = *next;
      spdlog::debug(
          "webhook.attempt_failed delivery={} endpoint={} event={} attempt={} "
          "outcome={} status={} retry_in_ms={}",
          d.id, d.endpoint_id, d.event_seq, d.attempts, to_string(r.outcome), r.status_code,
          *next - now);
    } else {
      d.state = "failed";
      d.next_attempt_ms = 0;
      log_failed(d, to_string(r.outcome));
    }
    record(d, a);
  }

  void retry_or_give_up(const store::WebhookDelivery& delivery, int64_t now, int32_t status,
                        int32_t duration_ms, const std::string& error) {
    store::WebhookDelivery d = delivery;
    auto next = webhook_next_attempt_ms(options, d.created_ms, d.attempts + 1, now);
    write_attempt(d, now, status, duration_ms, error, next);
  }

  void give_up(const store::WebhookDelivery& delivery, int64_t now, const std::string& error) {
    store::WebhookDelivery d = delivery;
    write_attempt(d, now, 0, 0, error, std::nullopt);
  }

  // An attempt that sent nothing (the delivery could not be sent at all).
  void write_attempt(store::WebhookDelivery& d, int64_t now, int32_t status, int32_t duration_ms,
                     const std::string& error, std::optional<int64_t> next) {
    store::WebhookAttempt a;
    a.delivery_id = d.id;
    a.attempt = d.attempts + 1;
    a.at_ms = now;
    a.status_code = status;
    a.duration_ms = duration_ms;
    a.error = excerpt(error, kErrorExcerptBytes);
    d.attempts = a.attempt;
    d.last_attempt_ms = now;
    d.last_status_code = status;
    d.last_error = a.error;
    d.updated_ms = now;
    d.state = next ? "pending" : "failed";
    d.next_attempt_ms = next.value_or(0);
    if (!next) log_failed(d, "not_sent");
    record(d, a);
  }

  void log_failed(const store::WebhookDelivery& d, const char* outcome) {
    spdlog::warn(
        "webhook.delivery_failed delivery={} endpoint={} tenant={} event={} type={} attempts={} "
        "outcome={} status={} error=\"{}\" hint=\"fix the endpoint, then redeliver: POST "
        "/v1/webhook-deliveries/{}:redeliver\"",
        d.id, d.endpoint_id, d.tenant_id, d.event_seq, log_safe(d.event_type), d.attempts, outcome,
        d.last_status_code, log_safe(d.last_error), d.id);
  }

  void record(const store::WebhookDelivery& d, const store::WebhookAttempt& a) {
    const store::Status s = store.record_webhook_attempt(d, a);
    if (s.ok() || s.code == store::Code::kNotFound) return;  // not found: endpoint deleted
    if (s.code == store::Code::kConflict) {
      // Another dispatcher recorded this attempt: two nodes dispatch.
      spdlog::warn(
          "webhook.attempt_conflict delivery={} attempt={} hint=\"run the webhook "
          "dispatcher on one node only (webhooks.dispatch)\"",
          d.id, a.attempt);
      return;
    }
    // Still pending and due in the store: it is sent again (at least once).
    warn_store("record_webhook_attempt", s);
  }
};

WebhookDispatcher::WebhookDispatcher(store::Store& store, const KeyRing& keys, EventBus& bus,
                                     WebhookOptions options, ClockMs clock)
    : impl_(std::make_shared<Impl>(store, keys, bus, std::move(options), std::move(clock))) {}

WebhookDispatcher::~WebhookDispatcher() {
  stop();
}

void WebhookDispatcher::set_response_handler(WebhookResponseHandler handler) {
  impl_->handler = std::move(handler);
}

void WebhookDispatcher::start() {
  Impl& impl = *impl_;
  if (impl.running) return;
  impl.running = true;
  impl.stopping = false;
  impl.sender = std::thread([&impl] { impl.sender_loop(); });
  impl.fanout = std::thread([&impl] { impl.fanout_loop(); });
  spdlog::info(
      "webhook.dispatcher_started request_timeout_ms={} retry_window_ms={} "
      "max_in_flight={} per_endpoint={}",
      impl.options.request_timeout_ms, impl.options.retry_window_ms, impl.options.max_in_flight,
      impl.options.max_in_flight_per_endpoint);
}

void WebhookDispatcher::stop() {
  Impl& impl = *impl_;
  if (!impl.running) return;
  impl.running = false;
  {
    std::lock_guard lock(impl.stop_mutex);
    impl.stopping = true;
  }
  impl.stop_cv.notify_all();
  curl_multi_wakeup(impl.multi);
  if (impl.fanout.joinable()) impl.fanout.join();
  if (impl.sender.joinable()) impl.sender.join();
}

void WebhookDispatcher::wake() {
  impl_->wake();
}

const WebhookOptions& WebhookDispatcher::options() const {
  return impl_->options;
}

}  // namespace counterlink::platform
