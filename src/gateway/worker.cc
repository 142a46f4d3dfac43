#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "counterlink/mqtt/topic.h"

#include "broker.h"

namespace counterlink::gateway {

using mqtt::PacketType;
using mqtt::ReasonCode;
using mqtt::Version;

namespace {

constexpr size_t kScratchSize = 64 * 1024;
constexpr int64_t kHousekeepingMs = 1000;

// Output above this many bytes marks a slow consumer: further QoS 0 messages
// are dropped for it (QoS 1/2 are bounded by the in-flight window instead).
size_t slow_consumer_bytes(const GatewayConfig& config) {
  return std::max<size_t>(4 * 1024 * 1024, 2 * size_t{config.max_packet_size});
}

// Frames are streamed, not buffered, so a large limit costs no memory; a
// client may legally batch several MQTT packets into one frame.
uint32_t websocket_frame_limit(const GatewayConfig& config) {
  return static_cast<uint32_t>(std::min<uint64_t>(
      0xFFFFFFFFu, std::max<uint64_t>(16u << 20, 4ull * config.max_packet_size)));
}

std::string format_address(const sockaddr_storage& addr) {
  char host[INET6_ADDRSTRLEN] = {0};
  uint16_t port = 0;
  if (addr.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    port = ntohs(in->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  if (addr.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    port = ntohs(in6->sin6_port);
    return "[" + std::string(host) + "]:" + std::to_string(port);
  }
  return "unknown";
}

std::string random_client_id() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* kHex = "0123456789abcdef";
  std::string id = "auto-";
  uint64_t a = rng(), b = rng();
  for (int i = 0; i < 16; ++i)
    id += kHex[(a >> (i * 4)) & 0xF];
  for (int i = 0; i < 8; ++i)
    id += kHex[(b >> (i * 4)) & 0xF];
  return id;
}

}  // namespace

std::unique_ptr<MessageProperties> take_forwarded_properties(mqtt::Properties& p) {
  if (!p.payload_format_indicator && !p.content_type && !p.response_topic && !p.correlation_data &&
      p.user_properties.empty()) {
    return nullptr;
  }
  auto props = std::make_unique<MessageProperties>();
  props->payload_format_indicator = p.payload_format_indicator;
  props->content_type = std::move(p.content_type);
  props->response_topic = std::move(p.response_topic);
  props->correlation_data = std::move(p.correlation_data);
  props->user_properties = std::move(p.user_properties);
  return props;
}

// --- listener ---------------------------------------------------------------

class Worker::ListenerHandler : public IoHandler {
 public:
  ListenerHandler(Worker& worker, int fd, const ListenerConfig& config, const TlsContext* tls)
      : worker_(worker), fd_(fd), config_(config), tls_(tls) {}
  ~ListenerHandler() override { close_socket(); }
  void on_io(uint32_t) override { worker_.accept_ready(*this); }
  void close_socket() {
    if (fd_ >= 0) {
      worker_.loop().remove(fd_);
      ::close(fd_);
      fd_ = -1;
    }
  }
  int fd() const { return fd_; }
  const ListenerConfig& config() const { return config_; }
  const TlsContext* tls() const { return tls_; }

 private:
  Worker& worker_;
  int fd_;
  ListenerConfig config_;
  const TlsContext* tls_;
};

// --- worker lifecycle ---------------------------------------------------------

Worker::Worker(GatewayImpl& gateway, unsigned index, unsigned worker_count)
    : gateway_(gateway),
      index_(index),
      scratch_(kScratchSize),
      slow_consumer_bytes_(slow_consumer_bytes(gateway.config())) {
  route_outbox_.resize(worker_count);
  directed_outbox_.resize(worker_count);
  loop_.set_iteration_hook([this] {
    flush_outboxes();
    flush_dirty();
    encode_cache_.clear();
    for (Connection* c : graveyard_)
      delete c;
    graveyard_.clear();
  });
}

Worker::~Worker() {
  listeners_.clear();
  while (connections_ != nullptr) {
    Connection* c = connections_;
    detach(c);
    delete c;
  }
  for (Connection* c : graveyard_)
    delete c;
}

const GatewayConfig& Worker::config() const {
  return gateway_.config();
}
GatewayMetrics& Worker::metrics() {
  return gateway_.metrics();
}

void Worker::start_thread() {
  thread_ = std::thread([this] {
    obs::set_thread_shard(index_ + 1);
    loop_.add_timer(kHousekeepingMs, [this] { housekeeping(); });
    loop_.run();
  });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::add_listener(int fd, const ListenerConfig& config, const TlsContext* tls) {
  auto handler = std::make_unique<ListenerHandler>(*this, fd, config, tls);
  loop_.add(fd, EPOLLIN, handler.get());
  listeners_.push_back(std::move(handler));
}

void Worker::shutdown() {
  shutting_down_ = true;
  for (auto& l : listeners_)
    l->close_socket();
  for (Connection* c = connections_; c != nullptr;) {
    Connection* next = c->next_;
    c->disconnect(ReasonCode::kServerShuttingDown, DisconnectReason::kServerShutdown,
                  "server shutting down");
    c = next;
  }
}

void Worker::attach(Connection* conn) {
  conn->next_ = connections_;
  conn->prev_ = nullptr;
  if (connections_) connections_->prev_ = conn;
  connections_ = conn;
  ++connection_count_;
  conn->registered_events_ = EPOLLIN | EPOLLRDHUP;
  loop_.add(conn->fd_, conn->registered_events_, conn);
}

void Worker::detach(Connection* conn) {
  if (conn->prev_) {
    conn->prev_->next_ = conn->next_;
  } else if (connections_ == conn) {
    connections_ = conn->next_;
  }
  if (conn->next_) conn->next_->prev_ = conn->prev_;
  conn->prev_ = conn->next_ = nullptr;
  --connection_count_;
}

void Worker::accept_ready(ListenerHandler& listener) {
  const GatewayConfig& cfg = config();
  for (int i = 0; i < 64; ++i) {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    int fd = ::accept4(listener.fd(), reinterpret_cast<sockaddr*>(&addr), &len,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR) continue;
      if (errno == EMFILE || errno == ENFILE) {
        spdlog::warn(
            "listener.accept_failed listener={} error=\"{}\" hint=\"raise the open-files "
            "limit (ulimit -n) or lower gateway.max_connections\"",
            listener.config().name, std::strerror(errno));
      }
      return;
    }
    if (gateway_.open_connections().load(std::memory_order_relaxed) >=
        static_cast<int64_t>(cfg.max_connections)) {
      metrics().limit(Limit::kMaxConnections);
      ::close(fd);
      continue;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::unique_ptr<Transport> transport;
    const ListenerConfig& lc = listener.config();
    switch (lc.kind) {
      case ListenerKind::kTcp:
        transport = make_tcp_transport(fd);
        break;
      case ListenerKind::kTls:
        transport = make_tls_transport(fd, *listener.tls());
        break;
      case ListenerKind::kWebSocket:
        transport = make_websocket_transport(make_tcp_transport(fd), lc.ws_path,
                                             websocket_frame_limit(cfg));
        break;
      case ListenerKind::kWebSocketTls:
        transport = make_websocket_transport(make_tls_transport(fd, *listener.tls()), lc.ws_path,
                                             websocket_frame_limit(cfg));
        break;
    }
    auto* conn = new Connection(this, fd, std::move(transport), format_address(addr), lc.name,
                                gateway_.next_connection_id());
    attach(conn);
    gateway_.open_connections().fetch_add(1, std::memory_order_relaxed);
    metrics().connections.add(1);
  }
}

void Worker::schedule_delete(Connection* conn) {
  graveyard_.push_back(conn);
}

void Worker::flush_dirty() {
  // flush() may close a connection, which never adds to dirty_, so iterating
  // by index over a vector that does not grow is safe.
  for (size_t i = 0; i < dirty_.size(); ++i) {
    Connection* c = dirty_[i];
    c->dirty_ = false;
    if (c->state_ != Connection::State::kClosed) c->flush();
  }
  dirty_.clear();
}

void Worker::flush_outboxes() {
  for (unsigned w = 0; w < route_outbox_.size(); ++w) {
    if (!route_outbox_[w].empty()) {
      auto batch = std::make_shared<std::vector<MessagePtr>>(std::move(route_outbox_[w]));
      route_outbox_[w].clear();
      Worker& target = gateway_.worker(w);
      target.loop().post([&target, batch] { target.route_remote(*batch); });
    }
    if (!directed_outbox_[w].empty()) {
      auto batch = std::make_shared<std::vector<DirectedDelivery>>(std::move(directed_outbox_[w]));
      directed_outbox_[w].clear();
      Worker& target = gateway_.worker(w);
      target.loop().post([&target, batch] {
        for (auto& d : *batch)
          target.deliver_directed(d);
      });
    }
  }
}

void Worker::housekeeping() {
  const int64_t now = loop_.now_ms();
  const int64_t connect_timeout = config().connect_timeout_ms;
  for (Connection* c = connections_; c != nullptr;) {
    Connection* next = c->next_;
    if (c->state_ == Connection::State::kAwaitConnect) {
      if (now - c->accepted_ms_ > connect_timeout) {
        metrics().limit(Limit::kConnectTimeout);
        spdlog::info("client.connect_timeout remote={} listener={}", c->info_.remote_address,
                     c->info_.listener);
        c->close(DisconnectReason::kProtocolViolation);
      }
    } else if (c->state_ == Connection::State::kConnected && c->keepalive_ms_ > 0 &&
               now - c->last_rx_ms_ > c->keepalive_ms_) {
      spdlog::info("client.keepalive_timeout client_id={} remote={}", c->info_.client_id,
                   c->info_.remote_address);
      c->disconnect(ReasonCode::kKeepAliveTimeout, DisconnectReason::kKeepAliveTimeout,
                    "keep alive timeout");
    }
    c = next;
  }
  loop_.add_timer(kHousekeepingMs, [this] { housekeeping(); });
}

Session* Worker::find_session(std::string_view client_id) {
  auto it = sessions_.find(std::string(client_id));
  return it == sessions_.end() ? nullptr : it->second.get();
}

// --- CONNECT ------------------------------------------------------------------

void Worker::refuse_connect(Connection& conn, ReasonCode reason, const std::string& reason_string) {
  metrics().connects_refused.inc();
  // Debug: under a credential-stuffing flood one line per refusal would
  // drown the log; refusals are counted, and the platform's authenticator
  // logs its failures throttled.
  spdlog::debug("client.refused client_id={} username={} remote={} reason=\"{}\"",
                conn.info_.client_id, conn.info_.username, conn.info_.remote_address,
                reason_string.empty() ? mqtt::to_string(reason) : reason_string);
  mqtt::Connack connack;
  connack.reason = reason;
  if (conn.version_ == Version::kV5 && !reason_string.empty()) {
    connack.properties.reason_string = reason_string;
  }
  conn.send(connack);
  conn.flush();
  // Refusals decided by the authenticator (credentials, bans, rate limits,
  // an unavailable store) are not protocol violations.
  const bool by_authenticator =
      reason == ReasonCode::kNotAuthorized || reason == ReasonCode::kBadUserNameOrPassword ||
      reason == ReasonCode::kBanned || reason == ReasonCode::kServerUnavailable ||
      reason == ReasonCode::kServerBusy || reason == ReasonCode::kQuotaExceeded ||
      reason == ReasonCode::kConnectionRateExceeded;
  conn.close(by_authenticator ? DisconnectReason::kNotAuthorized
                              : DisconnectReason::kProtocolViolation);
}

void Worker::on_connect(Connection& conn, mqtt::Connect& connect) {
  const GatewayConfig& cfg = config();
  conn.info_.version = connect.version;
  conn.info_.client_id = connect.client_id;
  if (connect.client_id.size() > cfg.max_client_id_length) {
    refuse_connect(conn, ReasonCode::kClientIdentifierNotValid, "client identifier too long");
    return;
  }
  if (connect.client_id.empty()) {
    // 3.1.1 allows an empty id only with a clean session; 3.1 never.
    if (connect.version == Version::kV31 ||
        (connect.version == Version::kV311 && !connect.clean_start)) {
      refuse_connect(conn, ReasonCode::kClientIdentifierNotValid,
                     "empty client identifier requires a clean session");
      return;
    }
    connect.client_id = random_client_id();
    conn.assigned_client_id_ = true;
    conn.info_.client_id = connect.client_id;
  }
  if (connect.version == Version::kV5 && connect.properties.authentication_method) {
    refuse_connect(conn, ReasonCode::kBadAuthenticationMethod,
                   "enhanced authentication is not supported");
    return;
  }
  if (connect.will) {
    if (topic_levels(connect.will->topic) > kMaxTopicLevels) {
      refuse_connect(conn, ReasonCode::kTopicNameInvalid,
                     "will topic has more than " + std::to_string(kMaxTopicLevels) + " levels");
      return;
    }
    if (connect.will->qos > cfg.maximum_qos) {
      refuse_connect(conn, ReasonCode::kQosNotSupported, "will QoS above the server maximum");
      return;
    }
    if (connect.will->retain && !cfg.retain_available) {
      refuse_connect(conn, ReasonCode::kRetainNotSupported, "retained wills are not supported");
      return;
    }
  }
  unsigned owner = gateway_.worker_for(connect.client_id);
  if (owner != index_) {
    conn.handoff_connect_ = std::make_unique<mqtt::Connect>(std::move(connect));
    return;
  }
  continue_connect(conn, std::make_unique<mqtt::Connect>(std::move(connect)));
}

void Worker::hand_off(Connection* conn) {
  // Nothing of this worker may refer to the connection once it is posted.
  loop_.remove(conn->fd_);
  detach(conn);
  if (conn->dirty_) {
    dirty_.erase(std::remove(dirty_.begin(), dirty_.end(), conn), dirty_.end());
    conn->dirty_ = false;
  }
  conn->registered_events_ = 0;
  Worker& target = gateway_.worker(gateway_.worker_for(conn->handoff_connect_->client_id));
  target.loop().post([&target, conn] { target.adopt_connection(conn); });
}

void Worker::adopt_connection(Connection* conn) {
  conn->worker_ = this;
  attach(conn);
  if (shutting_down_) {
    conn->close(DisconnectReason::kServerShutdown);
    return;
  }
  std::unique_ptr<mqtt::Connect> connect = std::move(conn->handoff_connect_);
  continue_connect(*conn, std::move(connect));
}

void Worker::continue_connect(Connection& conn, std::unique_ptr<mqtt::Connect> connect) {
  conn.info_.has_username = connect->username.has_value();
  conn.info_.username = connect->username.value_or(std::string());
  if (auto cert = conn.transport_->peer_certificate()) {
    conn.info_.certificate_subject = cert->subject;
    conn.info_.certificate_cn = cert->common_name;
  }
  conn.state_ = Connection::State::kAuthenticating;
  conn.update_interest();
  conn.pending_connect_ = std::move(connect);
  const uint64_t id = conn.id_;
  authenticating_[id] = &conn;
  auto done = [this, id](AuthResult result) {
    if (loop_.in_loop_thread()) {
      finish_connect(id, std::move(result));
    } else {
      loop_.post([this, id, result = std::move(result)] { finish_connect(id, result); });
    }
  };
  gateway_.authenticator().authenticate(AuthRequest{conn.info_, conn.pending_connect_->password},
                                        std::move(done));
}

void Worker::finish_connect(uint64_t conn_id, AuthResult result) {
  auto it = authenticating_.find(conn_id);
  if (it == authenticating_.end()) return;  // closed while authenticating
  Connection& conn = *it->second;
  authenticating_.erase(it);
  std::unique_ptr<mqtt::Connect> connect = std::move(conn.pending_connect_);
  conn.state_ = Connection::State::kAwaitConnect;  // CONNACK not yet sent
  if (result.reason != ReasonCode::kSuccess) {
    metrics().auth_failures.inc();
    refuse_connect(conn, result.reason, result.reason_string);
    return;
  }
  const GatewayConfig& cfg = config();
  const bool v5 = connect->version == Version::kV5;

  // Session takeover: the old connection goes, the session may stay.
  Session* session = find_session(connect->client_id);
  if (session && session->connection) {
    Connection* old = session->connection;
    metrics().takeovers.inc();
    spdlog::info("client.taken_over client_id={} old_remote={} new_remote={}", connect->client_id,
                 old->info_.remote_address, conn.info_.remote_address);
    session->connection = nullptr;
    old->session_ = nullptr;
    if (auto& events = gateway_.hooks().events) {
      events->on_disconnected(old->info_, DisconnectReason::kTakenOver);
    }
    old->disconnect(ReasonCode::kSessionTakenOver, DisconnectReason::kTakenOver,
                    "another connection used this client identifier");
    // The old connection's will: published now unless the session carries on
    // and the will was delayed (a new connection arrived within the delay).
    if (session->will) {
      uint32_t delay = session->will->properties.will_delay_interval.value_or(0);
      if (connect->clean_start || delay == 0) {
        publish_will(*session);
      } else {
        session->clear_will();
      }
    }
  }
  bool session_present = false;
  if (session && connect->clean_start) {
    end_session(*session);
    session = nullptr;
  }
  if (session) {
    session_present = true;
    if (session->expiry_timer) loop_.cancel_timer(session->expiry_timer);
    session->expiry_timer = 0;
    if (session->will_timer) {
      // Reconnected within the will delay: the will is not sent.
      loop_.cancel_timer(session->will_timer);
      session->will_timer = 0;
      session->clear_will();
    }
  } else {
    auto fresh = std::make_unique<Session>();
    fresh->serial = gateway_.next_serial();
    fresh->client_id = connect->client_id;
    session = fresh.get();
    sessions_.emplace(session->client_id, std::move(fresh));
    metrics().sessions.add(1);
  }

  session->connection = &conn;
  session->version = connect->version;
  conn.session_ = session;

  mqtt::Connack connack;
  connack.session_present = session_present;
  // Session expiry: 5.0 asks for it; 3.1.1 persistent sessions get the maximum.
  if (v5) {
    uint32_t requested = connect->properties.session_expiry_interval.value_or(0);
    uint32_t granted = requested;
    if (cfg.session_expiry_max != 0 && requested > cfg.session_expiry_max) {
      granted = cfg.session_expiry_max;
      connack.properties.session_expiry_interval = granted;
    }
    session->expiry_interval = granted;
  } else {
    // session_expiry_max 0 is "no cap", as for 5.0: such a session never expires.
    session->expiry_interval = connect->clean_start     ? 0
                               : cfg.session_expiry_max ? cfg.session_expiry_max
                                                        : kNeverExpire;
  }

  session->clear_will();
  if (connect->will) {
    session->will = std::make_unique<mqtt::Will>(std::move(*connect->will));
    session->will_client = std::make_unique<ClientInfo>(conn.info_);
  }

  // Flow control toward the client.
  uint16_t client_receive_max = v5 ? connect->properties.receive_maximum.value_or(65535) : 65535;
  session->send_window = std::min<uint16_t>(client_receive_max, cfg.max_inflight);
  session->client_max_packet_size = v5 ? connect->properties.maximum_packet_size.value_or(0) : 0;

  // Keep alive: 5.0 clients are told the server's value when it differs.
  uint16_t keepalive = connect->keep_alive;
  if (v5 && cfg.max_keepalive != 0 && (keepalive == 0 || keepalive > cfg.max_keepalive)) {
    keepalive = cfg.max_keepalive;
    connack.properties.server_keep_alive = keepalive;
  }
  conn.keepalive_ms_ = static_cast<uint32_t>(keepalive) * 1500;

  if (v5) {
    conn.topic_alias_max_ = cfg.topic_alias_maximum;
    if (cfg.receive_maximum != 65535) connack.properties.receive_maximum = cfg.receive_maximum;
    if (cfg.maximum_qos < 2) connack.properties.maximum_qos = cfg.maximum_qos;
    if (!cfg.retain_available) connack.properties.retain_available = 0;
    connack.properties.maximum_packet_size = cfg.max_packet_size;
    if (cfg.topic_alias_maximum > 0) {
      connack.properties.topic_alias_maximum = cfg.topic_alias_maximum;
    }
    if (!cfg.wildcard_subscriptions) connack.properties.wildcard_subscription_available = 0;
    if (!cfg.subscription_identifiers) connack.properties.subscription_identifier_available = 0;
    if (!cfg.shared_subscriptions) connack.properties.shared_subscription_available = 0;
    if (conn.assigned_client_id_) {
      connack.properties.assigned_client_identifier = connect->client_id;
    }
  }
  conn.send(connack);
  conn.state_ = Connection::State::kConnected;
  conn.last_rx_ms_ = loop_.now_ms();
  metrics().connects_accepted.inc();
  spdlog::debug(
      "client.connected client_id={} username={} remote={} listener={} version={} "
      "clean_start={} session_present={} keepalive={}",
      conn.info_.client_id, conn.info_.username, conn.info_.remote_address, conn.info_.listener,
      static_cast<int>(connect->version), connect->clean_start, session_present, keepalive);
  if (auto& events = gateway_.hooks().events) events->on_connected(conn.info_, session_present);
  if (session_present) {
    announce_shared_presence(*session, true);
    resume_session(*session);
  }
  conn.update_interest();
  conn.process_buffered();
}

// --- disconnect and session life ---------------------------------------------

void Worker::on_disconnect_packet(Connection& conn, const mqtt::Disconnect& disconnect) {
  Session* session = conn.session_;
  if (conn.version_ == Version::kV5 && session && disconnect.properties.session_expiry_interval) {
    uint32_t requested = *disconnect.properties.session_expiry_interval;
    if (session->expiry_interval == 0 && requested != 0) {
      mqtt::DecodeError error{ReasonCode::kProtocolError,
                              "session expiry cannot be set on DISCONNECT when it was 0 at CONNECT",
                              {}};
      conn.protocol_error(error);
      return;
    }
    const uint32_t max = config().session_expiry_max;
    session->expiry_interval = (max != 0 && requested > max) ? max : requested;
  }
  // The will is discarded on a normal disconnection (0x00) only.
  conn.clean_disconnect_ = disconnect.reason == ReasonCode::kSuccess;
  conn.close(DisconnectReason::kClientDisconnect);
}

void Worker::on_connection_closed(Connection& conn, DisconnectReason why,
                                  Connection::State previous) {
  metrics().disconnect(why);
  metrics().connections.sub(1);
  gateway_.open_connections().fetch_sub(1, std::memory_order_relaxed);
  if (previous == Connection::State::kAuthenticating) authenticating_.erase(conn.id_);
  detach(&conn);
  // A closed connection may stay in dirty_: flush_dirty() skips it.
  Session* session = conn.session_;
  conn.session_ = nullptr;
  if (session == nullptr || session->connection != &conn) return;
  spdlog::debug("client.disconnected client_id={} remote={} reason={}", conn.info_.client_id,
                conn.info_.remote_address, to_string(why));
  if (auto& events = gateway_.hooks().events) events->on_disconnected(conn.info_, why);
  session->connection = nullptr;
  if (conn.clean_disconnect_) session->clear_will();
  announce_shared_presence(*session, false);
  session_offline(*session);
}

void Worker::session_offline(Session& session) {
  if (shutting_down_) {
    session.clear_will();
    return;
  }
  if (session.will) arm_will(session);
  if (session.expiry_interval == 0) {
    end_session(session);
    return;
  }
  if (session.expiry_interval != kNeverExpire) {
    const std::string client_id = session.client_id;
    const uint64_t serial = session.serial;
    session.expiry_timer =
        loop_.add_timer(int64_t{session.expiry_interval} * 1000, [this, client_id, serial] {
          Session* s = find_session(client_id);
          if (s && s->serial == serial && s->connection == nullptr) {
            s->expiry_timer = 0;
            end_session(*s);
          }
        });
  }
}

void Worker::arm_will(Session& session) {
  uint32_t delay = session.will->properties.will_delay_interval.value_or(0);
  if (delay == 0 || session.expiry_interval == 0) {
    publish_will(session);
    return;
  }
  // Published when the delay passes or the session ends, whichever is first.
  const std::string client_id = session.client_id;
  const uint64_t serial = session.serial;
  session.will_timer = loop_.add_timer(int64_t{delay} * 1000, [this, client_id, serial] {
    Session* s = find_session(client_id);
    if (s && s->serial == serial) {
      s->will_timer = 0;
      publish_will(*s);
    }
  });
}

void Worker::publish_will(Session& session) {
  if (session.will_timer) {
    loop_.cancel_timer(session.will_timer);
    session.will_timer = 0;
  }
  std::unique_ptr<mqtt::Will> will = std::move(session.will);
  std::unique_ptr<ClientInfo> owner = std::move(session.will_client);
  if (!will || !owner) return;
  if (!gateway_.authorizer().authorize(*owner, Action::kPublish, will->topic)) {
    metrics().authz_denied_publish.inc();
    spdlog::info("client.will_denied client_id={} topic={}", session.client_id, will->topic);
    return;
  }
  auto message = std::make_shared<Message>();
  message->topic = std::move(will->topic);
  message->payload = std::move(will->payload);
  message->qos = will->qos;
  message->retain = will->retain;
  message->origin_session = session.serial;
  mqtt::Properties& p = will->properties;
  if (p.message_expiry_interval) {
    message->expires_at_ms = loop_.now_ms() + int64_t{*p.message_expiry_interval} * 1000;
  }
  message->properties = take_forwarded_properties(p);
  metrics().wills_published.inc();
  MessagePtr shared = std::move(message);
  if (auto& events = gateway_.hooks().events) events->on_publish(*owner, shared);
  if (shared->retain) {
    if (config().retain_available) gateway_.retained().put(shared);
  }
  route(shared);
}

void Worker::end_session(Session& session) {
  if (session.will) publish_will(session);
  if (session.expiry_timer) loop_.cancel_timer(session.expiry_timer);
  if (session.will_timer) loop_.cancel_timer(session.will_timer);
  while (!session.subscriptions.empty()) {
    std::string filter = session.subscriptions.back().filter;
    remove_subscription(session, filter);
  }
  auto& events = gateway_.hooks().events;
  auto report = [&](RingQueue<Outbound>& q) {
    while (!q.empty()) {
      if (events && q.front().message->tag != 0) {
        events->on_dropped(session.client_id, q.front().message->tag);
      }
      q.pop_front();
    }
  };
  report(session.inflight);
  report(session.pending);
  metrics().sessions.sub(1);
  sessions_.erase(session.client_id);  // destroys `session`
}

void Worker::kick(const std::string& client_id, ReasonCode reason) {
  Session* s = find_session(client_id);
  if (s && s->connection) {
    s->connection->disconnect(reason, DisconnectReason::kAdministrative,
                              "disconnected by the platform");
  }
}

}  // namespace counterlink::gateway
