// The broker's internals: sessions, connections and workers. Private to the
// gateway.
//
// Ownership and threading, in one place:
//  - GatewayImpl owns N Workers; each Worker owns one EventLoop and runs it on
//    its own thread.
//  - A Worker owns the Connections accepted on it until CONNECT, and the
//    Sessions of the client ids that hash to it (hash(client id) % N). At
//    CONNECT a connection moves, whole, to the worker that owns its client id,
//    so a session is only ever touched by one thread and a takeover is local.
//  - A Worker's TopicTree holds only its own sessions' subscriptions (and the
//    shared-subscription groups whose home it is). A publish is matched on the
//    worker that received it and handed, by reference, to every other worker
//    that has subscriptions; each matches its own tree. No lock is taken on the
//    publish path; cross-worker hand-offs are batched once per loop iteration.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "counterlink/gateway/config.h"
#include "counterlink/gateway/gateway.h"
#include "counterlink/gateway/hooks.h"
#include "counterlink/mqtt/codec.h"

#include "event_loop.h"
#include "gateway_metrics.h"
#include "retained.h"
#include "ring_queue.h"
#include "topic_tree.h"
#include "transport.h"

namespace counterlink::gateway {

class Worker;
class GatewayImpl;
struct Session;

inline constexpr uint32_t kNeverExpire = 0xFFFFFFFF;

// Topic names and filters may have at most this many levels. Matching walks
// the topic tree (and the retained store) one level per stack frame, so the
// cap bounds the stack a client can make a worker use: a 65535-byte topic
// could otherwise have 32768 levels and overflow it.
inline constexpr size_t kMaxTopicLevels = 256;
inline size_t topic_levels(std::string_view topic) {
  return static_cast<size_t>(std::count(topic.begin(), topic.end(), '/')) + 1;
}

// A QoS 1/2 message on its way to one session (or a QoS 0 one queued while
// the session is offline).
struct Outbound {
  MessagePtr message;
  std::vector<uint32_t> subscription_ids;
  uint16_t packet_id = 0;
  uint8_t qos = 0;
  bool retain = false;
  bool pubrec_received = false;  // QoS 2: PUBREL sent, awaiting PUBCOMP
};

// The properties of a PUBLISH (or will) that travel on to subscribers, taken
// out of `p`; null when it has none.
std::unique_ptr<MessageProperties> take_forwarded_properties(mqtt::Properties& p);

class Connection;

struct Session {
  uint64_t serial = 0;  // unique per session, for No Local and stale references
  std::string client_id;
  Connection* connection = nullptr;  // null while offline
  mqtt::Version version = mqtt::Version::kV311;
  uint32_t expiry_interval = 0;  // seconds after disconnect; kNeverExpire
  EventLoop::TimerId expiry_timer = 0;

  struct Subscription {
    std::string filter;  // as requested, including any "$share/group/"
    mqtt::SubscribeOptions options;
    uint32_t subscription_id = 0;
  };
  std::vector<Subscription> subscriptions;

  RingQueue<Outbound> inflight;  // sent, awaiting PUBACK / PUBREC / PUBCOMP
  RingQueue<Outbound> pending;   // waiting for the window or for the client
  uint16_t last_packet_id = 0;
  std::vector<uint16_t> inbound_qos2;  // QoS 2 ids received, awaiting PUBREL

  // The will of the current (or last) connection.
  std::unique_ptr<mqtt::Will> will;
  std::unique_ptr<ClientInfo>
      will_client;  // who set it (with `will` only: idle sessions stay small)
  void clear_will() {
    will.reset();
    will_client.reset();
  }
  EventLoop::TimerId will_timer = 0;

  // Flow control negotiated with the current connection.
  uint16_t send_window = 0;             // min(client Receive Maximum, max_inflight)
  uint32_t client_max_packet_size = 0;  // 0 = no limit from the client
};

// One network connection, from accept to close.
class Connection : public IoHandler {
 public:
  enum class State : uint8_t { kAwaitConnect, kAuthenticating, kConnected, kClosed };

  Connection(Worker* worker, int fd, std::unique_ptr<Transport> transport, std::string remote,
             std::string listener, uint64_t id);
  ~Connection() override;

  void on_io(uint32_t events) override;

  uint64_t id() const { return id_; }
  int fd() const { return fd_; }
  State state() const { return state_; }
  mqtt::Version version() const { return version_; }
  const ClientInfo& info() const { return info_; }
  Session* session() const { return session_; }

  // Appends an encoded packet to the output; flushed at the end of the loop
  // iteration (or at once when `flush_now`).
  void send(const mqtt::Packet& packet);
  std::string& output() { return out_; }
  void mark_dirty();
  // Writes buffered output; returns false if the connection failed.
  bool flush();
  size_t pending_output() const { return out_.size() - out_offset_; }
  // Handles packets that arrived while the CONNECT was being authenticated.
  void process_buffered();

  // Sends a 5.0 DISCONNECT (when the version allows), flushes best effort and
  // closes. For 3.1.1 just closes.
  void disconnect(mqtt::ReasonCode reason, DisconnectReason why, std::string reason_string = {});
  // Closes the socket, detaches from the session and schedules deletion.
  void close(DisconnectReason why);

 private:
  friend class Worker;

  void handle_readable();
  // Parses and handles every complete packet in `data`; returns bytes used.
  size_t process(std::string_view data);
  void handle_packet(mqtt::Packet& packet);
  void protocol_error(const mqtt::DecodeError& error);
  void update_interest();

  Worker* worker_;
  int fd_;
  std::unique_ptr<Transport> transport_;
  uint64_t id_;
  State state_ = State::kAwaitConnect;
  mqtt::Version version_ = mqtt::Version::kV311;
  bool dirty_ = false;
  uint32_t registered_events_ = 0;   // what epoll currently watches
  bool clean_disconnect_ = false;    // DISCONNECT 0x00 received: no will
  bool assigned_client_id_ = false;  // the server chose the client id
  Session* session_ = nullptr;
  ClientInfo info_;
  int64_t accepted_ms_ = 0;
  int64_t last_rx_ms_ = 0;
  uint32_t keepalive_ms_ = 0;  // 1.5 x negotiated keep alive; 0 = none
  uint32_t max_packet_size_;   // inbound limit (ours)
  uint16_t topic_alias_max_ = 0;
  std::vector<std::string> topic_aliases_;  // inbound, index = alias - 1
  // CONNECT of a client whose session lives on another worker: set while
  // parsing, acted on (hand-off) once the read batch is saved.
  std::unique_ptr<mqtt::Connect> handoff_connect_;
  // CONNECT awaiting the authenticator's answer.
  std::unique_ptr<mqtt::Connect> pending_connect_;
  std::string in_;   // bytes of an incomplete packet
  std::string out_;  // encoded packets not yet written
  size_t out_offset_ = 0;
  Connection* prev_ = nullptr;  // worker's intrusive list
  Connection* next_ = nullptr;
};

// Cross-worker work items, batched per loop iteration.
struct DirectedDelivery {
  std::string client_id;
  uint64_t session_serial;  // 0 = any session of that client id
  MessagePtr message;
  mqtt::SubscribeOptions options;
  uint32_t subscription_id;
  std::function<void(DeliverStatus)> done;
};

// Encodings of the message being routed, one per (version, QoS, retain)
// variant, so that a fan-out encodes each variant once.
struct EncodedVariant {
  bool valid = false;
  std::string bytes;
  size_t packet_id_offset = 0;
};

class EncodeCache {
 public:
  EncodedVariant& get(const MessagePtr& message, bool v5, uint8_t qos, bool retain) {
    if (message != current_) {
      current_ = message;  // holding a reference keeps the address unique
      for (auto& v : variants_)
        v.valid = false;
    }
    return variants_[(v5 ? 6 : 0) + qos * 2 + (retain ? 1 : 0)];
  }
  void clear() { current_.reset(); }

 private:
  MessagePtr current_;
  EncodedVariant variants_[12];
};

class Worker {
 public:
  Worker(GatewayImpl& gateway, unsigned index, unsigned worker_count);
  ~Worker();

  unsigned index() const { return index_; }
  EventLoop& loop() { return loop_; }
  GatewayImpl& gateway() { return gateway_; }
  const GatewayConfig& config() const;
  GatewayMetrics& metrics();

  void start_thread();
  void join();

  // Listening sockets are created on the control thread before start.
  void add_listener(int fd, const ListenerConfig& config, const TlsContext* tls);
  // Loop thread: close listeners and disconnect everybody (server shutdown).
  void shutdown();

  // --- called by Connection (loop thread) ---
  void on_connect(Connection& conn, mqtt::Connect& connect);
  void on_publish(Connection& conn, mqtt::Publish& publish);
  void on_puback(Connection& conn, const mqtt::Ack& ack);
  void on_pubrec(Connection& conn, const mqtt::Ack& ack);
  void on_pubrel(Connection& conn, const mqtt::Ack& ack);
  void on_pubcomp(Connection& conn, const mqtt::Ack& ack);
  void on_subscribe(Connection& conn, mqtt::Subscribe& subscribe);
  void on_unsubscribe(Connection& conn, mqtt::Unsubscribe& unsubscribe);
  void on_disconnect_packet(Connection& conn, const mqtt::Disconnect& disconnect);
  void on_connection_closed(Connection& conn, DisconnectReason why, Connection::State previous);
  // Moves `conn` (with its handoff_connect_) to the worker owning its client id.
  void hand_off(Connection* conn);
  void schedule_delete(Connection* conn);
  void add_dirty(Connection* conn) { dirty_.push_back(conn); }
  char* scratch() { return scratch_.data(); }
  size_t scratch_size() const { return scratch_.size(); }

  // --- cross-worker entry points (run on this worker's loop) ---
  void adopt_connection(Connection* conn);
  void route_remote(std::vector<MessagePtr>& batch);
  void deliver_directed(DirectedDelivery& delivery);
  void add_shared_member(std::string group, std::string filter, SharedMember member);
  void remove_shared_member(std::string group, std::string filter, std::string client_id,
                            uint64_t serial);
  void kick(const std::string& client_id, mqtt::ReasonCode reason);

  // Routes a message published on this worker: local match, then hand-off to
  // the other workers that have subscriptions.
  void route(const MessagePtr& message);

  std::atomic<int64_t>& subscription_count() { return subscription_count_; }

 private:
  friend class Connection;
  class ListenerHandler;

  struct Match {
    Session* session;
    uint8_t qos;
    bool retain_as_published;
    uint32_t subscription_id;
  };

  void accept_ready(ListenerHandler& listener);
  void attach(Connection* conn);
  void detach(Connection* conn);
  void continue_connect(Connection& conn, std::unique_ptr<mqtt::Connect> connect);
  void finish_connect(uint64_t conn_id, AuthResult result);
  void refuse_connect(Connection& conn, mqtt::ReasonCode reason, const std::string& reason_string);
  void route_local(const MessagePtr& message);
  // Delivers to one session, now or into its queue.
  DeliverStatus deliver_to_session(Session& session, const MessagePtr& message, uint8_t qos,
                                   bool retain, const std::vector<uint32_t>* subscription_ids);
  // Encodes into the session's connection; false if the message was dropped.
  bool send_publish(Session& session, Outbound& outbound, bool dup);
  void fill_window(Session& session);
  bool enqueue(Session& session, Outbound outbound);
  void drop(Session& session, const Outbound& outbound, DropReason reason);
  void complete(Session& session, size_t inflight_index);
  void ack_not_in_flight(Connection& conn, const mqtt::Ack& ack);
  void resume_session(Session& session);
  void end_session(Session& session);
  void session_offline(Session& session);
  void publish_will(Session& session);
  void arm_will(Session& session);
  void apply_subscription(Session& session, const Session::Subscription& sub);
  void remove_subscription(Session& session, const std::string& filter);
  unsigned shared_home(std::string_view group, std::string_view filter) const;
  // Tells the home workers of the session's shared groups that it went
  // online or offline, so that members with a connection are preferred.
  void announce_shared_presence(Session& session, bool online);
  void send_retained(Session& session, const std::string& filter,
                     const mqtt::SubscribeOptions& options, uint32_t subscription_id);
  uint16_t next_packet_id(Session& session);
  void flush_dirty();
  void flush_outboxes();
  void housekeeping();
  Session* find_session(std::string_view client_id);

  GatewayImpl& gateway_;
  unsigned index_;
  EventLoop loop_;
  std::thread thread_;
  std::vector<std::unique_ptr<ListenerHandler>> listeners_;
  Connection* connections_ = nullptr;  // intrusive list head
  size_t connection_count_ = 0;
  std::unordered_map<uint64_t, Connection*> authenticating_;
  std::unordered_map<std::string, std::unique_ptr<Session>> sessions_;
  TopicTree tree_;
  std::atomic<int64_t> subscription_count_{0};
  std::vector<Connection*> dirty_;
  std::vector<Connection*> graveyard_;
  std::vector<char> scratch_;
  std::vector<Match> matches_;         // reused by route_local
  std::vector<Match> shared_matches_;  // reused by route_local: shared-subscription copies
  EncodeCache encode_cache_;
  size_t slow_consumer_bytes_;
  // Per destination worker: messages to route there, flushed per iteration.
  std::vector<std::vector<MessagePtr>> route_outbox_;
  std::vector<std::vector<DirectedDelivery>> directed_outbox_;
  bool shutting_down_ = false;
};

class GatewayImpl {
 public:
  GatewayImpl(GatewayConfig config, Hooks hooks);
  ~GatewayImpl();

  void start();
  void stop();

  const GatewayConfig& config() const { return config_; }
  const Hooks& hooks() const { return hooks_; }
  GatewayMetrics& metrics() { return metrics_; }
  RetainedStore& retained() { return retained_; }
  Worker& worker(unsigned i) { return *workers_[i]; }
  Authenticator& authenticator() { return *authenticator_; }
  Authorizer& authorizer() { return *authorizer_; }
  unsigned worker_count() const { return static_cast<unsigned>(workers_.size()); }
  unsigned worker_for(std::string_view client_id) const;
  uint64_t next_serial() { return serial_.fetch_add(1) + 1; }
  uint64_t next_connection_id() { return connection_id_.fetch_add(1) + 1; }
  std::atomic<int64_t>& open_connections() { return open_connections_; }
  std::vector<ListenerAddress> listeners() const { return listener_addresses_; }

 private:
  GatewayConfig config_;
  Hooks hooks_;
  std::shared_ptr<Authenticator> authenticator_;  // hooks_ or the static one
  std::shared_ptr<Authorizer> authorizer_;
  GatewayMetrics metrics_;
  RetainedStore retained_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::unique_ptr<TlsContext>> tls_contexts_;
  std::vector<ListenerAddress> listener_addresses_;
  std::atomic<uint64_t> serial_{0};
  std::atomic<uint64_t> connection_id_{0};
  std::atomic<int64_t> open_connections_{0};
  bool started_ = false;
  bool stopped_ = false;
};

}  // namespace counterlink::gateway
