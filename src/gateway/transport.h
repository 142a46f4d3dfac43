// Byte-stream transports under the MQTT codec: plain TCP, TLS, WebSocket
// (over TCP or TLS). Private to the gateway.
//
// Threading: a transport belongs to the connection that owns it and is used
// only by the event loop that owns that connection. It may be handed to
// another loop together with its connection (no I/O in flight then).
//
// All sockets are non-blocking. No call blocks; "would block" is a status.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <openssl/types.h>

#include "counterlink/gateway/config.h"

namespace counterlink::gateway {

enum class IoStatus : uint8_t {
  kOk,          // `bytes` > 0 were read or accepted for writing
  kWouldBlock,  // nothing now; wait for the socket (see wants_write())
  kClosed,      // orderly end of stream from the peer
  kError,       // transport failure; the connection must be closed
};

struct IoResult {
  IoStatus status = IoStatus::kOk;
  size_t bytes = 0;
};

// What a verified TLS client certificate says about its holder.
struct PeerCertificate {
  std::string subject;             // RFC 2253 one-line form, e.g. "CN=sp-001,O=Acme"
  std::string common_name;         // CN, or empty
  std::string fingerprint_sha256;  // lower-case hex of the DER encoding
};

class Transport {
 public:
  virtual ~Transport() = default;

  // Reads application bytes (the MQTT byte stream) into buf[0..len).
  // Handshakes (TLS, WebSocket upgrade) progress inside read()/flush(); until
  // they finish, read() returns kWouldBlock.
  virtual IoResult read(char* buf, size_t len) = 0;

  // Offers application bytes for sending; returns how many were taken (all,
  // some, or kWouldBlock for none). Bytes taken are the transport's
  // responsibility: it may buffer them internally (see flush()).
  virtual IoResult write(const char* data, size_t len) = 0;

  // Sends internally buffered bytes (handshake replies, framed or encrypted
  // output). kOk when nothing is left, kWouldBlock when the socket is full.
  virtual IoResult flush() { return {IoStatus::kOk, 0}; }

  // True when the transport needs the socket to become writable before it
  // can progress (buffered output, or TLS wanting to write during a read).
  virtual bool wants_write() const { return false; }

  // Begins a graceful close: TLS close_notify, WebSocket close frame. Best
  // effort; the caller closes the socket afterwards.
  virtual void close_gracefully() {}

  // The verified client certificate, if any (TLS with verify_client).
  virtual std::optional<PeerCertificate> peer_certificate() const { return std::nullopt; }

  // "tcp", "tls", "ws" or "wss": for logs and metrics.
  virtual const char* name() const = 0;
};

// Plain TCP on `fd` (not owned: the connection closes the socket).
std::unique_ptr<Transport> make_tcp_transport(int fd);

// Server-side TLS context for one listener, shared by its connections.
// Created at start-up; throws std::runtime_error naming the file and the
// OpenSSL reason on a bad certificate, key or CA file.
class TlsContext {
 public:
  explicit TlsContext(const TlsConfig& config);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;
  SSL_CTX* native() const { return ctx_; }

 private:
  SSL_CTX* ctx_ = nullptr;
};

// Server-side TLS over `fd` (not owned). The handshake runs inside read().
std::unique_ptr<Transport> make_tls_transport(int fd, const TlsContext& context);

// Server-side WebSocket (RFC 6455) over `inner` (TCP or TLS): answers the
// HTTP Upgrade for `path` with subprotocol "mqtt" (also accepts "mqttv3.1"),
// then carries binary frames. Answers other requests with 400/404 and closes.
// Ping/pong and close frames are handled inside.
std::unique_ptr<Transport> make_websocket_transport(std::unique_ptr<Transport> inner,
                                                    std::string path, uint32_t max_frame_size);

}  // namespace counterlink::gateway
