// The client engine of `counterlink bench`: many MQTT client connections
// driven by one epoll loop on the calling thread, using the counterlink codec.
//
// The engine owns sockets and byte buffers; the scenario owns the clients
// (Client objects, which it may reconnect) and reacts to packets through a
// Handler. Output is batched: publish() and friends only append to the
// client's buffer, and every dirty client is written once per poll() (or on
// flush()), so a burst of packets to one connection costs one write().
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <netinet/in.h>
#include <sys/socket.h>

#include "counterlink/mqtt/codec.h"
#include "counterlink/mqtt/packet.h"

namespace counterlink::bench {

// CLOCK_MONOTONIC in nanoseconds.
int64_t now_ns();

inline constexpr int64_t kNsPerSec = 1'000'000'000;
inline constexpr int64_t kNsPerMs = 1'000'000;

struct Endpoint {
  sockaddr_storage addr{};
  socklen_t length = 0;
  std::string text;  // "host:port", for messages
  bool loopback = false;
};

// Resolves a numeric address or a host name. On failure returns false and
// sets `error` to a sentence saying what to do.
bool resolve_endpoint(const std::string& host, uint16_t port, Endpoint& out, std::string& error);

// What every connection sends in CONNECT.
struct ConnectConfig {
  mqtt::Version version = mqtt::Version::kV311;
  uint16_t keep_alive = 60;  // seconds; the engine sends PINGREQ when idle
  std::optional<std::string> username;
  std::optional<std::string> password;
  // false asks the broker to keep the session ("clean session" 0 in 3.1.1).
  bool clean_start = true;
  // 5.0 only: how long the broker keeps the session after a disconnect.
  std::optional<uint32_t> session_expiry_interval;
};

class Engine;

class Client {
 public:
  enum class State : uint8_t {
    kClosed,         // no socket
    kConnecting,     // TCP handshake in progress
    kAwaitConnack,   // CONNECT sent
    kReady,          // CONNACK accepted
    kDisconnecting,  // DISCONNECT sent, waiting for the broker to close
  };

  Client() = default;
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  State state() const { return state_; }
  bool ready() const { return state_ == State::kReady; }
  bool open() const { return state_ != State::kClosed; }
  size_t pending_output() const { return out_.size() - out_offset_; }

  // Owned by the scenario.
  uint32_t index = 0;     // position in the scenario's client list
  std::string client_id;  // sent in CONNECT
  uint64_t seq = 0;       // next sequence number this client publishes
  uint32_t unacked = 0;   // QoS 1 publishes awaiting PUBACK
  uint64_t user = 0;      // free for the scenario
  // When set, sent in the next CONNECT instead of ConnectConfig's (e.g. a
  // device credential signed per connection attempt).
  std::optional<std::string> username;
  std::optional<std::string> password;

  // The reason of the last refused CONNACK of this client (kSuccess when the
  // last connection was not refused), for on_closed() to choose a back-off.
  mqtt::ReasonCode refusal() const { return refusal_; }

 private:
  friend class Engine;

  int fd_ = -1;
  uint32_t slot_ = UINT32_MAX;  // index in the engine's table, for epoll
  uint32_t generation_ = 0;     // bumped per connection, to drop stale events
  State state_ = State::kClosed;
  mqtt::ReasonCode refusal_ = mqtt::ReasonCode::kSuccess;
  uint32_t events_ = 0;  // what epoll watches
  bool dirty_ = false;   // in the engine's dirty list
  uint16_t next_packet_id_ = 0;
  int64_t last_tx_ns_ = 0;
  std::string in_;   // bytes of an incomplete packet
  std::string out_;  // encoded packets not yet written
  size_t out_offset_ = 0;
};

// Callbacks from Engine::poll(). A handler may call any Engine method on any
// client, including the one it is called for, except that after close() the
// client receives no further callbacks for the old connection.
class Handler {
 public:
  virtual ~Handler() = default;
  // CONNACK with reason Success. (A refusal is reported through on_closed.)
  virtual void on_connected(Client&, const mqtt::Connack&) {}
  virtual void on_suback(Client&, const mqtt::Suback&) {}
  // QoS 1 messages are acknowledged by the engine after this returns.
  virtual void on_publish(Client&, const mqtt::Publish&) {}
  virtual void on_puback(Client&, const mqtt::Ack&) {}
  // The broker closed the connection after our DISCONNECT (expected).
  virtual void on_disconnected(Client&) {}
  // The connection failed or the broker closed it unexpectedly. `errno_value`
  // is the socket error when there is one (ECONNREFUSED, ...), else 0.
  virtual void on_closed(Client&, const std::string& /*why*/, int /*errno_value*/) {}
};

class Engine {
 public:
  Engine(Endpoint server, ConnectConfig config, Handler& handler);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Creates the epoll instance. False and `error` on failure.
  bool init(std::string& error);

  // Source addresses to bind() before connect(), used round-robin (empty =
  // let the kernel choose). With several loopback sources each (source,
  // server) pair has its own ephemeral port range.
  void set_sources(std::vector<in_addr> sources) { sources_ = std::move(sources); }

  // Opens a socket, connects and sends CONNECT (at once, or when the TCP
  // handshake completes). Returns false (and `error`, `errno_value`) if the
  // socket could not be created or the connection failed at once.
  bool connect(Client& client, std::string& error, int& errno_value);

  // Append packets to the client's output (written at the end of poll()).
  void subscribe(Client& client, std::string_view filter, uint8_t qos);
  // Returns the packet identifier (0 for QoS 0).
  uint16_t publish(Client& client, std::string_view topic, std::string_view payload, uint8_t qos);
  // Sends DISCONNECT; the client is closed when the broker closes (then
  // on_disconnected) or immediately with `wait_for_close` false.
  void disconnect(Client& client, bool wait_for_close);
  // Closes the socket now, without callbacks.
  void close(Client& client);

  // Waits up to `timeout_ns` (0 = do not wait) for events, handles them and
  // queues keep-alive pings when due. Output is not written: call flush()
  // afterwards (after queuing what the events made possible), so one write
  // per connection carries everything. Returns the number of events.
  int poll(int64_t timeout_ns);
  // Writes every dirty client's output.
  void flush();
  // The time poll() last woke up.
  int64_t loop_now_ns() const { return loop_now_ns_; }

  size_t open_connections() const { return open_; }
  uint64_t bytes_read() const { return bytes_read_; }
  uint64_t bytes_written() const { return bytes_written_; }
  const ConnectConfig& connect_config() const { return config_; }

 private:
  void mark_dirty(Client& client);
  void watch(Client& client, uint32_t events);
  void on_writable(Client& client);
  void on_readable(Client& client);
  // Parses every complete packet in `data`; returns the bytes consumed, or
  // SIZE_MAX if the client was closed meanwhile.
  size_t process(Client& client, std::string_view data);
  bool handle_packet(Client& client, const mqtt::FrameHeader& header, std::string_view bytes);
  // Writes pending output; false if the connection failed (it is closed).
  bool write_out(Client& client);
  void fail(Client& client, const std::string& why, int errno_value);
  void encode_connect(Client& client);
  void keep_alive(int64_t now);

  Endpoint server_;
  ConnectConfig config_;
  Handler& handler_;
  int epoll_fd_ = -1;
  std::vector<in_addr> sources_;
  size_t next_source_ = 0;
  std::vector<Client*> dirty_;
  std::vector<Client*> all_;  // every client ever connected (slot -> client)
  std::vector<Client*> flushing_;
  std::vector<char> scratch_;
  mqtt::Packet publish_packet_;  // reused so PUBLISH decoding keeps its buffers
  mqtt::Packet other_packet_;
  mqtt::Packet ack_packet_;  // reused PUBACK for encoding
  int64_t loop_now_ns_ = 0;
  size_t open_ = 0;
  uint64_t bytes_read_ = 0;
  uint64_t bytes_written_ = 0;
  int64_t next_keepalive_check_ns_ = 0;
  bool epoll_pwait2_works_ = true;
};

}  // namespace counterlink::bench
