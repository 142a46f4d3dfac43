// Server-side WebSocket (RFC 6455) over an inner byte-stream transport.
//
// The framing is written here rather than taken from wslay: wslay's frame
// context embeds a fixed 4 KiB input buffer for the life of the connection
// (and its event API reassembles and queues whole messages), which alone
// would exceed the ~1.5 KiB budget for an idle connection. The format is
// small: the decoder below unmasks payload in place in the caller's buffer,
// so an idle, upgraded connection owns no heap buffers at all.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include <openssl/evp.h>

#include "transport.h"

namespace counterlink::gateway {
namespace {

constexpr size_t kMaxRequestHead = 8 * 1024;  // request line + headers + blank line
constexpr size_t kHeadReadChunk = 2048;       // stack buffer for reading the request head
constexpr size_t kWriteStaging = 16 * 1024;   // stack buffer: frame header + first payload bytes
// Output (unsent frames) beyond which a pong is deferred instead of queued; a
// peer that pings without reading cannot grow our memory (RFC 6455 5.5.3
// allows answering only the most recent ping).
constexpr size_t kPongBacklogLimit = 4 * 1024;
constexpr size_t kMaxControlPayload = 125;
constexpr std::string_view kAcceptGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";  // RFC 6455 1.3

constexpr uint8_t kOpContinuation = 0x0;
constexpr uint8_t kOpText = 0x1;
constexpr uint8_t kOpBinary = 0x2;
constexpr uint8_t kOpClose = 0x8;
constexpr uint8_t kOpPing = 0x9;
constexpr uint8_t kOpPong = 0xA;

constexpr uint16_t kCloseNormal = 1000;
constexpr uint16_t kCloseProtocolError = 1002;
constexpr uint16_t kCloseUnsupportedData = 1003;
constexpr uint16_t kCloseMessageTooBig = 1009;

bool is_control(uint8_t opcode) {
  return (opcode & 0x8) != 0;
}

// Close codes a peer may send (RFC 6455 7.4): the defined ones that are not
// reserved for local use, and the registered/private ranges.
bool is_valid_close_code(uint16_t code) {
  if (code >= 3000 && code <= 4999) return true;
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011);
}

void release(std::string& s) {
  std::string().swap(s);
}

char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

// Calls f(token) for each non-empty, trimmed element of a comma list.
template <typename F>
void for_each_token(std::string_view list, F&& f) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    const std::string_view token = trim(list.substr(0, comma));
    if (!token.empty()) f(token);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
}

bool is_base64_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

// Sec-WebSocket-Key must be the base64 encoding of 16 bytes: 22 symbols and
// "==" padding.
bool is_valid_key(std::string_view key) {
  if (key.size() != 24 || key.substr(22) != "==") return false;
  return std::all_of(key.begin(), key.begin() + 22, is_base64_char);
}

// base64(SHA-1(key + GUID)), RFC 6455 4.2.2. Empty if OpenSSL fails.
std::string accept_value(std::string_view key) {
  std::string input(key);
  input += kAcceptGuid;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (EVP_Digest(input.data(), input.size(), digest, &digest_len, EVP_sha1(), nullptr) != 1) {
    return {};
  }
  unsigned char encoded[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
  const int n = EVP_EncodeBlock(encoded, digest, static_cast<int>(digest_len));
  return n > 0 ? std::string(reinterpret_cast<char*>(encoded), static_cast<size_t>(n))
               : std::string();
}

// Writes a server frame header (FIN=1, unmasked) into out[0..10); returns its
// length.
size_t encode_header(uint8_t opcode, uint64_t len, char* out) {
  out[0] = static_cast<char>(0x80 | opcode);
  if (len < 126) {
    out[1] = static_cast<char>(len);
    return 2;
  }
  if (len <= 0xFFFF) {
    out[1] = 126;
    out[2] = static_cast<char>(len >> 8);
    out[3] = static_cast<char>(len);
    return 4;
  }
  out[1] = 127;
  for (int i = 0; i < 8; ++i)
    out[2 + i] = static_cast<char>(len >> (56 - 8 * i));
  return 10;
}

// dst[i] = src[i] ^ mask[(offset + i) % 4]. dst may equal or precede src
// (in-place compaction): each 8-byte block is read before it is written.
void unmask_move(char* dst, const char* src, size_t len, const uint8_t mask[4], uint8_t& offset) {
  size_t i = 0;
  if (len >= 16) {
    uint8_t rotated[8];
    for (size_t k = 0; k < 8; ++k)
      rotated[k] = mask[(offset + k) & 3];
    uint64_t m;
    std::memcpy(&m, rotated, sizeof m);
    for (; i + 8 <= len; i += 8) {
      uint64_t w;
      std::memcpy(&w, src + i, sizeof w);
      w ^= m;
      std::memcpy(dst + i, &w, sizeof w);
    }
  }
  for (; i < len; ++i)
    dst[i] = static_cast<char>(src[i] ^ mask[(offset + i) & 3]);
  offset = static_cast<uint8_t>((offset + len) & 3);
}

class WebSocketTransport final : public Transport {
 public:
  WebSocketTransport(std::unique_ptr<Transport> inner, std::string path, uint32_t max_frame_size)
      : inner_(std::move(inner)),
        path_(std::move(path)),
        max_frame_size_(max_frame_size),
        secure_(std::string_view(inner_->name()) == "tls") {}

  IoResult read(char* buf, size_t len) override;
  IoResult write(const char* data, size_t len) override;
  IoResult flush() override;
  // Also true while a close or failure decoded together with payload has not
  // been reported by read() yet: flush() then reports it. The event loop
  // watches the socket, which may hold nothing more to wake a read() for it.
  bool wants_write() const override {
    return has_output() || inner_->wants_write() || (ended() && !end_reported_);
  }
  void close_gracefully() override;
  std::optional<PeerCertificate> peer_certificate() const override {
    return inner_->peer_certificate();
  }
  const char* name() const override { return secure_ ? "wss" : "ws"; }

 private:
  enum class State : uint8_t {
    kUpgrading,  // reading the HTTP request head
    kOpen,       // exchanging frames
    kClosed,     // close handshake done or peer EOF: read() says kClosed
    kFailed,     // refused or protocol error: read() says kError
  };

  IoResult read_upgrade();
  bool answer_upgrade(std::string_view head);
  void refuse(int status, std::string_view reason, std::string_view body,
              std::string_view extra_headers = {});
  size_t decode(char* buf, size_t n);
  size_t take_header_bytes(const char* p, size_t n, size_t want);
  size_t header_size() const;
  bool check_frame_start();
  bool begin_payload();
  bool end_frame();
  void handle_close();
  void queue_frame(uint8_t opcode, const char* payload, size_t len);
  void queue_close(uint16_t code);
  void queue_pong(const std::string& payload);
  void fail(uint16_t close_code);
  IoResult drain_output();
  bool has_output() const { return out_sent_ < out_.size() || has_pending_pong_; }
  bool ended() const { return state_ == State::kClosed || state_ == State::kFailed; }
  IoResult report_end() {
    end_reported_ = true;
    return {state_ == State::kClosed ? IoStatus::kClosed : IoStatus::kError, 0};
  }

  std::unique_ptr<Transport> inner_;
  std::string path_;          // released once the upgrade is answered
  std::string in_;            // request head, then the frame bytes that came with it
  size_t in_consumed_ = 0;    // of in_, after the upgrade
  std::string out_;           // whole frames (or the HTTP reply) not yet taken by inner_
  size_t out_sent_ = 0;       // of out_
  std::string control_;       // payload of the control frame being received (≤ 125 bytes)
  std::string pending_pong_;  // payload of the latest ping while pongs are deferred
  uint64_t payload_left_ = 0;
  const uint32_t max_frame_size_;
  uint8_t header_[14] = {};  // frame header being received: 2 + 8 length + 4 mask
  uint8_t header_len_ = 0;
  uint8_t mask_[4] = {};
  uint8_t mask_offset_ = 0;  // payload position modulo 4
  uint8_t opcode_ = 0;
  bool in_payload_ = false;
  bool fragmented_ = false;  // a binary message is open: continuations expected
  bool close_sent_ = false;
  bool has_pending_pong_ = false;
  bool end_reported_ = false;  // read() or flush() has returned kClosed/kError
  const bool secure_;
  State state_ = State::kUpgrading;
};

// --- Reading ---------------------------------------------------------------

IoResult WebSocketTransport::read(char* buf, size_t len) {
  if (len == 0) return {IoStatus::kWouldBlock, 0};
  if (state_ == State::kUpgrading) {
    const IoResult r = read_upgrade();
    if (r.status != IoStatus::kOk) {
      if (ended()) end_reported_ = true;
      return r;
    }
  }
  for (;;) {
    if (ended()) return report_end();

    size_t n = 0;
    if (in_consumed_ < in_.size()) {  // frame bytes that arrived with the request head
      n = std::min(len, in_.size() - in_consumed_);
      std::memcpy(buf, in_.data() + in_consumed_, n);
      in_consumed_ += n;
      if (in_consumed_ == in_.size()) {
        release(in_);
        in_consumed_ = 0;
      }
    } else {
      const IoResult r = inner_->read(buf, len);
      if (r.status == IoStatus::kWouldBlock) return r;
      if (r.status == IoStatus::kClosed) state_ = State::kClosed;
      if (r.status == IoStatus::kError) state_ = State::kFailed;
      if (r.status != IoStatus::kOk) continue;  // reported at the top of the loop
      n = r.bytes;
    }

    const size_t produced = decode(buf, n);
    // Pongs and close replies go out at once; a failure surfaces on the next
    // call so that payload decoded before it is still delivered.
    if (has_output() && drain_output().status == IoStatus::kError && state_ == State::kOpen) {
      state_ = State::kFailed;
    }
    if (produced > 0) return {IoStatus::kOk, produced};
  }
}

// Reads the request head (bounded by kMaxRequestHead) and answers it. kOk
// once upgraded; frame bytes read past the head stay in in_.
IoResult WebSocketTransport::read_upgrade() {
  for (;;) {
    if (in_.size() >= kMaxRequestHead) {
      refuse(431, "Request Header Fields Too Large",
             "The WebSocket upgrade request head exceeds 8192 bytes.\n");
    } else {
      char chunk[kHeadReadChunk];
      const size_t want = std::min(sizeof chunk, kMaxRequestHead - in_.size());
      const IoResult r = inner_->read(chunk, want);
      if (r.status == IoStatus::kClosed) state_ = State::kClosed;
      if (r.status == IoStatus::kError) state_ = State::kFailed;
      if (r.status != IoStatus::kOk) return r;
      const size_t old_size = in_.size();
      in_.append(chunk, r.bytes);
      const size_t end = in_.find("\r\n\r\n", old_size >= 3 ? old_size - 3 : 0);
      if (end == std::string::npos) continue;
      const size_t head_len = end + 4;
      if (answer_upgrade(std::string_view(in_).substr(0, head_len))) {
        in_consumed_ = head_len;
        if (in_consumed_ == in_.size()) {
          release(in_);
          in_consumed_ = 0;
        }
        release(path_);
        state_ = State::kOpen;
        if (drain_output().status == IoStatus::kError) {
          state_ = State::kFailed;
          return {IoStatus::kError, 0};
        }
        return {IoStatus::kOk, 0};
      }
    }
    // Refused: the reply is queued; send what the socket takes, then fail.
    release(in_);
    drain_output();
    state_ = State::kFailed;
    return {IoStatus::kError, 0};
  }
}

// Validates the request head (which ends with CRLF CRLF) and queues the 101
// reply, or an error reply and returns false.
bool WebSocketTransport::answer_upgrade(std::string_view head) {
  std::string_view rest = head.substr(0, head.size() - 4);  // lines separated by CRLF
  const size_t line_end = rest.find("\r\n");
  const std::string_view request_line = rest.substr(0, line_end);
  rest = line_end == std::string_view::npos ? std::string_view() : rest.substr(line_end + 2);

  const size_t sp1 = request_line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : request_line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || sp2 == sp1 + 1 ||
      request_line.find(' ', sp2 + 1) != std::string_view::npos) {
    refuse(400, "Bad Request", "Malformed HTTP request line.\n");
    return false;
  }
  const std::string_view method = request_line.substr(0, sp1);
  const std::string_view target = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = request_line.substr(sp2 + 1);

  bool upgrade_websocket = false;
  bool connection_upgrade = false;
  bool has_version = false;
  std::string_view ws_version;
  std::string_view key;
  std::string_view protocol_mqtt;
  std::string_view protocol_mqttv31;
  while (!rest.empty()) {
    const size_t end = rest.find("\r\n");
    const std::string_view line = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 2);
    const size_t colon = line.find(':');
    // Obsolete line folding (a line starting with whitespace) is refused too.
    if (colon == std::string_view::npos || colon == 0 || line[0] == ' ' || line[0] == '\t') {
      refuse(400, "Bad Request", "Malformed HTTP header line.\n");
      return false;
    }
    const std::string_view name = line.substr(0, colon);
    const std::string_view value = trim(line.substr(colon + 1));
    if (iequals(name, "Upgrade")) {
      for_each_token(value, [&](std::string_view t) {
        if (iequals(t, "websocket")) upgrade_websocket = true;
      });
    } else if (iequals(name, "Connection")) {
      for_each_token(value, [&](std::string_view t) {
        if (iequals(t, "upgrade")) connection_upgrade = true;
      });
    } else if (iequals(name, "Sec-WebSocket-Version")) {
      has_version = true;
      ws_version = value;
    } else if (iequals(name, "Sec-WebSocket-Key")) {
      key = value;
    } else if (iequals(name, "Sec-WebSocket-Protocol")) {
      // Echo the client's own spelling so its exact-match check passes.
      for_each_token(value, [&](std::string_view t) {
        if (iequals(t, "mqtt")) protocol_mqtt = t;
        if (iequals(t, "mqttv3.1")) protocol_mqttv31 = t;
      });
    }
  }

  if (method != "GET") {
    refuse(405, "Method Not Allowed", "MQTT over WebSockets needs a GET upgrade request.\n",
           "Allow: GET\r\n");
    return false;
  }
  if (version != "HTTP/1.1") {
    refuse(400, "Bad Request", "A WebSocket upgrade needs HTTP/1.1.\n");
    return false;
  }
  // The path is the target up to any query string.
  if (target.substr(0, target.find('?')) != path_) {
    refuse(404, "Not Found", "No WebSocket endpoint here; MQTT is served at " + path_ + ".\n");
    return false;
  }
  if (!upgrade_websocket || !connection_upgrade) {
    refuse(400, "Bad Request",
           "Expected a WebSocket upgrade (Upgrade: websocket, Connection: Upgrade).\n");
    return false;
  }
  if (!has_version || ws_version != "13") {
    refuse(426, "Upgrade Required", "Only WebSocket version 13 is supported.\n",
           "Sec-WebSocket-Version: 13\r\n");
    return false;
  }
  if (!is_valid_key(key)) {
    refuse(400, "Bad Request",
           "Sec-WebSocket-Key must be the base64 encoding of 16 random bytes.\n");
    return false;
  }
  const std::string_view protocol = !protocol_mqtt.empty() ? protocol_mqtt : protocol_mqttv31;
  if (protocol.empty()) {
    refuse(400, "Bad Request",
           "MQTT over WebSockets requires the subprotocol: send "
           "\"Sec-WebSocket-Protocol: mqtt\" (or \"mqttv3.1\").\n");
    return false;
  }
  const std::string accept = accept_value(key);
  if (accept.empty()) {
    refuse(500, "Internal Server Error", "Cannot compute Sec-WebSocket-Accept.\n");
    return false;
  }
  out_ += "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
  out_ += "Sec-WebSocket-Accept: ";
  out_ += accept;
  out_ += "\r\nSec-WebSocket-Protocol: ";
  out_ += protocol;
  out_ += "\r\n\r\n";
  return true;
}

void WebSocketTransport::refuse(int status, std::string_view reason, std::string_view body,
                                std::string_view extra_headers) {
  out_ += "HTTP/1.1 " + std::to_string(status) + " ";
  out_ += reason;
  out_ += "\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ";
  out_ += std::to_string(body.size());
  out_ += "\r\n";
  out_ += extra_headers;
  out_ += "\r\n";
  out_ += body;
}

// Decodes n raw bytes in buf, moving unmasked data-frame payload to the front
// of buf (it never overtakes the bytes still to be decoded). Returns the
// payload byte count. Stops early when the connection closes or fails.
size_t WebSocketTransport::decode(char* buf, size_t n) {
  size_t in = 0;
  size_t out = 0;
  while (in < n && state_ == State::kOpen) {
    if (!in_payload_) {
      if (header_len_ < 2) {
        in += take_header_bytes(buf + in, n - in, 2);
        if (header_len_ < 2) break;
        if (!check_frame_start()) break;  // fail fast, before the rest of the header
      }
      in += take_header_bytes(buf + in, n - in, header_size());
      if (header_len_ < header_size()) break;
      if (!begin_payload()) break;
      if (payload_left_ == 0 && !end_frame()) break;
      continue;
    }
    const size_t take = static_cast<size_t>(std::min<uint64_t>(payload_left_, n - in));
    if (is_control(opcode_)) {
      const size_t at = control_.size();
      control_.resize(at + take);
      unmask_move(control_.data() + at, buf + in, take, mask_, mask_offset_);
    } else {
      unmask_move(buf + out, buf + in, take, mask_, mask_offset_);
      out += take;
    }
    in += take;
    payload_left_ -= take;
    if (payload_left_ == 0 && !end_frame()) break;
  }
  return out;
}

size_t WebSocketTransport::take_header_bytes(const char* p, size_t n, size_t want) {
  const size_t take = std::min(n, want - header_len_);
  std::memcpy(header_ + header_len_, p, take);
  header_len_ = static_cast<uint8_t>(header_len_ + take);
  return take;
}

// Full header size, known once the first two bytes are in.
size_t WebSocketTransport::header_size() const {
  const uint8_t len7 = header_[1] & 0x7F;
  const size_t extended = len7 == 126 ? 2 : (len7 == 127 ? 8 : 0);
  return 2 + extended + ((header_[1] & 0x80) != 0 ? 4 : 0);
}

// Checks the first two header bytes: reserved bits, masking, opcode and
// fragmentation rules.
bool WebSocketTransport::check_frame_start() {
  const uint8_t b0 = header_[0];
  const uint8_t b1 = header_[1];
  const bool fin = (b0 & 0x80) != 0;
  const uint8_t opcode = b0 & 0x0F;
  if ((b0 & 0x70) != 0) {  // RSV1-3: no extension was negotiated
    fail(kCloseProtocolError);
    return false;
  }
  if ((b1 & 0x80) == 0) {  // RFC 6455 5.1: client frames must be masked
    fail(kCloseProtocolError);
    return false;
  }
  switch (opcode) {
    case kOpText:  // MQTT requires binary frames
      fail(kCloseUnsupportedData);
      return false;
    case kOpBinary:
      if (fragmented_) break;  // a new message inside an unfinished one
      return true;
    case kOpContinuation:
      if (!fragmented_) break;  // nothing to continue
      return true;
    case kOpClose:
    case kOpPing:
    case kOpPong:
      if (!fin || (b1 & 0x7F) > kMaxControlPayload) break;
      return true;
    default:  // reserved opcodes
      break;
  }
  fail(kCloseProtocolError);
  return false;
}

bool WebSocketTransport::begin_payload() {
  const uint8_t len7 = header_[1] & 0x7F;
  uint64_t len = len7;
  size_t pos = 2;
  if (len7 == 126) {
    len = (uint64_t{header_[2]} << 8) | header_[3];
    pos = 4;
  } else if (len7 == 127) {
    len = 0;
    for (size_t i = 0; i < 8; ++i)
      len = (len << 8) | header_[2 + i];
    pos = 10;
    if ((len >> 63) != 0) {  // the most significant bit must be 0
      fail(kCloseProtocolError);
      return false;
    }
  }
  if (len > max_frame_size_) {
    fail(kCloseMessageTooBig);
    return false;
  }
  std::memcpy(mask_, header_ + pos, sizeof mask_);
  mask_offset_ = 0;
  opcode_ = header_[0] & 0x0F;
  if (!is_control(opcode_)) fragmented_ = (header_[0] & 0x80) == 0;
  payload_left_ = len;
  header_len_ = 0;
  in_payload_ = true;
  return true;
}

bool WebSocketTransport::end_frame() {
  in_payload_ = false;
  switch (opcode_) {
    case kOpPing:
      queue_pong(control_);
      break;
    case kOpClose:
      handle_close();
      break;
    default:  // pong: ignored; data frames: payload already delivered
      break;
  }
  release(control_);
  return state_ == State::kOpen;
}

// Answers a close frame by echoing its status code (RFC 6455 5.5.1).
void WebSocketTransport::handle_close() {
  if (control_.empty()) {
    if (!close_sent_) queue_frame(kOpClose, nullptr, 0);
    close_sent_ = true;
    state_ = State::kClosed;
    return;
  }
  if (control_.size() < 2) {  // a body starts with a 2-byte status code
    fail(kCloseProtocolError);
    return;
  }
  const uint16_t code = static_cast<uint16_t>((static_cast<uint8_t>(control_[0]) << 8) |
                                              static_cast<uint8_t>(control_[1]));
  if (!is_valid_close_code(code)) {
    fail(kCloseProtocolError);
    return;
  }
  if (!close_sent_) queue_close(code);
  state_ = State::kClosed;
}

// --- Writing ---------------------------------------------------------------

void WebSocketTransport::queue_frame(uint8_t opcode, const char* payload, size_t len) {
  char header[10];
  out_.append(header, encode_header(opcode, len, header));
  if (len > 0) out_.append(payload, len);
}

void WebSocketTransport::queue_close(uint16_t code) {
  const char payload[2] = {static_cast<char>(code >> 8), static_cast<char>(code)};
  queue_frame(kOpClose, payload, sizeof payload);
  close_sent_ = true;
}

void WebSocketTransport::queue_pong(const std::string& payload) {
  if (has_pending_pong_ || out_.size() - out_sent_ > kPongBacklogLimit) {
    pending_pong_ = payload;  // replaces an older unanswered ping
    has_pending_pong_ = true;
    return;
  }
  queue_frame(kOpPong, payload.data(), payload.size());
}

// Queues a close frame with `close_code` (best effort: read() drains it) and
// marks the connection failed.
void WebSocketTransport::fail(uint16_t close_code) {
  if (!close_sent_) queue_close(close_code);
  state_ = State::kFailed;
}

// Hands out_ (then a deferred pong) to the inner transport and flushes it.
IoResult WebSocketTransport::drain_output() {
  for (;;) {
    while (out_sent_ < out_.size()) {
      const IoResult r = inner_->write(out_.data() + out_sent_, out_.size() - out_sent_);
      if (r.status == IoStatus::kOk) {
        out_sent_ += r.bytes;
      } else if (r.status == IoStatus::kWouldBlock) {
        return r;
      } else {
        return {IoStatus::kError, 0};
      }
    }
    // Fully handed over: give the memory back (idle connections keep none).
    release(out_);
    out_sent_ = 0;
    if (!has_pending_pong_ || close_sent_) break;
    has_pending_pong_ = false;
    queue_frame(kOpPong, pending_pong_.data(), pending_pong_.size());
    release(pending_pong_);
  }
  has_pending_pong_ = false;
  release(pending_pong_);
  const IoResult r = inner_->flush();
  if (r.status == IoStatus::kOk || r.status == IoStatus::kWouldBlock) return r;
  return {IoStatus::kError, 0};
}

// One unmasked binary frame per call, FIN set. Either nothing is taken
// (kWouldBlock: the inner transport took no byte of the frame) or all of it;
// what the inner transport does not take at once is kept in out_. A new frame
// is started only when out_ is empty, so frames never interleave.
IoResult WebSocketTransport::write(const char* data, size_t len) {
  if (state_ == State::kFailed || state_ == State::kClosed || close_sent_) {
    return {IoStatus::kError, 0};
  }
  if (state_ == State::kUpgrading) return {IoStatus::kWouldBlock, 0};  // nothing before the 101
  if (len == 0) return {IoStatus::kOk, 0};
  if (has_output()) {
    const IoResult r = drain_output();
    if (r.status == IoStatus::kError) {
      state_ = State::kFailed;
      return r;
    }
    if (has_output()) return {IoStatus::kWouldBlock, 0};
  }

  // Header and the first payload bytes go out in one inner write; the rest is
  // written straight from the caller's buffer.
  char staging[kWriteStaging];
  const size_t header_len = encode_header(kOpBinary, len, staging);
  const size_t first = std::min(len, sizeof staging - header_len);
  std::memcpy(staging + header_len, data, first);
  IoResult r = inner_->write(staging, header_len + first);
  if (r.status == IoStatus::kWouldBlock) return r;
  if (r.status != IoStatus::kOk) {
    state_ = State::kFailed;
    return {IoStatus::kError, 0};
  }
  if (r.bytes < header_len + first) {
    out_.assign(staging + r.bytes, header_len + first - r.bytes);
    out_.append(data + first, len - first);
    return {IoStatus::kOk, len};
  }
  size_t sent = first;
  while (sent < len) {
    r = inner_->write(data + sent, len - sent);
    if (r.status == IoStatus::kOk) {
      sent += r.bytes;
    } else if (r.status == IoStatus::kWouldBlock) {
      out_.assign(data + sent, len - sent);
      break;
    } else {
      state_ = State::kFailed;
      return {IoStatus::kError, 0};
    }
  }
  return {IoStatus::kOk, len};
}

// Before the upgrade this only drives the inner transport (TLS handshake).
// Once the connection has ended, it sends what is queued (the close reply)
// and then reports kClosed/kError.
IoResult WebSocketTransport::flush() {
  if (state_ == State::kFailed) return report_end();
  const IoResult r = drain_output();
  if (r.status == IoStatus::kError) {
    state_ = State::kFailed;
    return report_end();
  }
  if (r.status == IoStatus::kOk && state_ == State::kClosed) return report_end();
  return r;
}

// Sends a close frame (1000) after any queued frames, then closes the inner
// transport gracefully. Best effort; read() reports kClosed afterwards.
void WebSocketTransport::close_gracefully() {
  if (state_ == State::kOpen && !close_sent_) {
    queue_close(kCloseNormal);
    drain_output();
  }
  if (state_ == State::kOpen || state_ == State::kUpgrading) state_ = State::kClosed;
  end_reported_ = true;  // the caller is closing: nothing left to report
  inner_->close_gracefully();
}

}  // namespace

std::unique_ptr<Transport> make_websocket_transport(std::unique_ptr<Transport> inner,
                                                    std::string path, uint32_t max_frame_size) {
  return std::make_unique<WebSocketTransport>(std::move(inner), std::move(path), max_frame_size);
}

}  // namespace counterlink::gateway
