// Webhooks: the tenant's events POSTed to the business system's endpoints,
// signed, retried with backoff for 24 hours, every try kept in the delivery
// log (docs/webhooks.md).
//
//   event log ──fan-out thread──► enqueue_webhook_deliveries (one cursor per endpoint)
//   due deliveries ──sender thread (libcurl multi)──► POST ──► record_webhook_attempt
//
// Contract:
//  - At least once: a delivery is pending until an attempt is recorded; a
//    crash, a stop() or a store failure mid-attempt leaves it due and it is
//    sent again. Receivers dedupe by Counterlink-Event-Id.
//  - No ordering: deliveries run concurrently (up to
//    max_in_flight_per_endpoint per endpoint) and retries overtake nothing
//    in particular; receivers order by the event id (increasing) if they care.
//  - Single-node dispatch: run one dispatcher per database. A second one
//    cannot duplicate deliveries (the fan-out cursor is compare-and-set) but
//    would send the same due delivery twice.
//  - A new endpoint starts at the current end of the event log (no history);
//    a disabled endpoint gets nothing, and its pending deliveries fail with
//    "endpoint disabled" (redeliver them after enabling it).
//
// Threading: start()/stop() from one control thread; wake() and
// set_response_handler() (before start()) from any thread. The response
// handler runs on the sender thread. The free functions are thread-safe.
//
// Errors: nothing here throws at run time; store failures are logged and
// retried on the next round. libcurl stays in dispatcher.cc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "counterlink/platform/clock.h"
#include "counterlink/store/store.h"

namespace counterlink::platform {

class EventBus;
class KeyRing;

struct WebhookOptions {
  // Accept http:// endpoint URLs (any host). Off in production: events carry
  // payment data and the signature does not hide them. Tests and local
  // development point endpoints at http://127.0.0.1.
  bool allow_http = false;
  // Per attempt, connect to last byte. 5 s is also the window in which a
  // `scan.received` receiver may answer the scan in its response body.
  int64_t request_timeout_ms = 5000;
  // A delivery is retried until this long after it was created, then fails.
  int64_t retry_window_ms = 24 * 3600 * 1000;
  // Delay before retry n (after n failed attempts): the n-th entry, the last
  // one repeated once the list is used up.
  std::vector<int64_t> retry_delays_ms = {5'000,     30'000,    120'000,   600'000,
                                          1'800'000, 3'600'000, 7'200'000, 14'400'000};
  // Concurrent requests to one endpoint, and in total: a slow endpoint holds
  // at most this many of the sender's slots.
  int32_t max_in_flight_per_endpoint = 4;
  int32_t max_in_flight = 64;
  // How often the log and the due deliveries are read when nothing woke the
  // dispatcher (events of other nodes, presence, retries coming due).
  int64_t poll_interval_ms = 1000;
  // Response bytes kept (the scan answer is read from them); the rest of a
  // longer response is not read.
  size_t max_response_bytes = 64 * 1024;
};

// ---- Endpoint rules -----------------------------------------------------------

// Error text for a URL the API refuses, "" if acceptable: https:// (or
// http:// with allow_http), a host, at most 2048 characters, no spaces,
// control characters or user:password@.
std::string check_webhook_url(std::string_view url, bool allow_http);

// Error text for an event-type pattern, "" if acceptable: "*", a family
// "broadcast.*", or a type "scan.received"; 1..64 characters of a-z 0-9 _ .
std::string check_webhook_event_pattern(std::string_view pattern);

// True if `type` matches one of `patterns`; an empty list matches every type.
bool webhook_event_matches(const std::vector<std::string>& patterns, std::string_view type);

// ---- Signing secrets ------------------------------------------------------------

// "whsec_" + base64url of 32 random bytes.
std::string generate_webhook_secret();

// What an endpoint's secret_sealed holds: the secret, and during a rotation's
// grace period the previous one (requests then carry a signature for each).
struct WebhookSecrets {
  std::string current;
  std::string previous;                 // "" = none
  store::TimeMs previous_until_ms = 0;  // the previous secret signs until then
};

// Sealed with the KeyRing, aad = the endpoint id.
std::string seal_webhook_secrets(const KeyRing& keys, const WebhookSecrets& secrets,
                                 std::string_view endpoint_id);
// nullopt if it does not open (wrong aad, key removed, damaged).
std::optional<WebhookSecrets> open_webhook_secrets(const KeyRing& keys, std::string_view sealed,
                                                   std::string_view endpoint_id);

// The Counterlink-Signature header value:
//   "t=<unix_s>,v1=<hex HMAC-SHA256(secret, "<unix_s>.<body>")>"
// with one more ",v1=..." for the previous secret while it still signs at
// `now_ms`.
std::string webhook_signature(const WebhookSecrets& secrets, int64_t now_ms, std::string_view body);

// ---- Deliveries ----------------------------------------------------------------------

// The request body: the event as the API's Event message in JSON (id, type,
// create_time, device_id, subject_id, data, tenant_id).
std::string webhook_event_body(const store::Event& event);

// When a delivery created at `created_ms` is tried again after its
// `failed_attempts`-th failed attempt at `now_ms`; nullopt = give up (the
// next try would fall outside the retry window).
std::optional<int64_t> webhook_next_attempt_ms(const WebhookOptions& options,
                                               store::TimeMs created_ms, int32_t failed_attempts,
                                               store::TimeMs now_ms);

// The seq of the newest event in the log (any tenant), 0 if none, found in
// O(log n) indexed reads. `hint`: a seq known to exist (e.g.
// EventBus::last_seq()), 0 if none. Where a new endpoint's cursor starts.
store::Result<int64_t> latest_event_seq(store::Store& store, int64_t hint);

// How one request went.
enum class WebhookOutcome : uint8_t { kSuccess, kHttpError, kTimeout, kTransportError };
const char* to_string(WebhookOutcome outcome);

struct WebhookResponse {
  WebhookOutcome outcome = WebhookOutcome::kTransportError;
  int32_t status_code = 0;  // 0 = no HTTP answer
  int32_t duration_ms = 0;
  std::string body;   // at most max_response_bytes
  std::string error;  // transport error, or up to 256 bytes of a non-2xx body
};

// PingWebhook: one signed POST of a `webhook.ping` event (id "0", not in the
// log, nothing recorded) to the endpoint now; blocks up to
// request_timeout_ms.
WebhookResponse ping_webhook(const store::WebhookEndpoint& endpoint, const WebhookSecrets& secrets,
                             const WebhookOptions& options, store::TimeMs now_ms);

// ---- The dispatcher --------------------------------------------------------------------

// Called on the sender thread for every HTTP answer (any status) to a
// `scan.received` delivery, with up to max_response_bytes of its body.
using WebhookResponseHandler =
    std::function<void(const store::Event& event, int status, std::string_view body)>;

class WebhookDispatcher {
 public:
  // `store`, `keys` and `bus` outlive the dispatcher.
  WebhookDispatcher(store::Store& store, const KeyRing& keys, EventBus& bus, WebhookOptions options,
                    ClockMs clock = {});
  ~WebhookDispatcher();  // stop()
  WebhookDispatcher(const WebhookDispatcher&) = delete;
  WebhookDispatcher& operator=(const WebhookDispatcher&) = delete;

  // Before start().
  void set_response_handler(WebhookResponseHandler handler);

  void start();
  // Prompt: requests in flight are abandoned, their deliveries stay pending
  // (sent again by the next start). Idempotent.
  void stop();

  // Look for due deliveries now (after a redelivery). Any thread.
  void wake();

  const WebhookOptions& options() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace counterlink::platform
