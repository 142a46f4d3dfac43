#include "engine.h"

#include <cstring>
#include <string>
#include <utility>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

namespace counterlink::bench {

namespace {

constexpr size_t kScratchSize = 256 * 1024;
constexpr int kMaxEvents = 1024;
constexpr int kMaxReadsPerEvent = 8;
constexpr uint32_t kMaxPacketSize = 268'435'455;

uint64_t event_key(uint32_t slot, uint32_t generation) {
  return (uint64_t{slot} << 32) | generation;
}

std::string errno_text(int e) {
  return std::string(std::strerror(e));
}

}  // namespace

int64_t now_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * kNsPerSec + ts.tv_nsec;
}

bool resolve_endpoint(const std::string& host, uint16_t port, Endpoint& out, std::string& error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  const std::string service = std::to_string(port);
  int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &result);
  if (rc != 0 || result == nullptr) {
    error = "cannot resolve host '" + host + "': " + ::gai_strerror(rc) +
            "; pass a numeric address with --host (e.g. 127.0.0.1)";
    return false;
  }
  std::memcpy(&out.addr, result->ai_addr, result->ai_addrlen);
  out.length = result->ai_addrlen;
  ::freeaddrinfo(result);
  char text[INET6_ADDRSTRLEN] = {0};
  if (out.addr.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&out.addr);
    ::inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
    out.loopback = (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    out.text = std::string(text) + ":" + service;
  } else {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&out.addr);
    ::inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
    out.loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
    out.text = "[" + std::string(text) + "]:" + service;
  }
  return true;
}

Client::~Client() {
  if (fd_ >= 0) ::close(fd_);
}

Engine::Engine(Endpoint server, ConnectConfig config, Handler& handler)
    : server_(std::move(server)), config_(std::move(config)), handler_(handler) {
  scratch_.resize(kScratchSize);
  ack_packet_ = mqtt::Ack{mqtt::PacketType::kPuback, 1, mqtt::ReasonCode::kSuccess, {}};
}

Engine::~Engine() {
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
}

bool Engine::init(std::string& error) {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) {
    error = "epoll_create1 failed: " + errno_text(errno);
    return false;
  }
  loop_now_ns_ = now_ns();
  return true;
}

bool Engine::connect(Client& client, std::string& error, int& errno_value) {
  if (client.state_ != Client::State::kClosed) close(client);
  errno_value = 0;
  client.refusal_ = mqtt::ReasonCode::kSuccess;
  int fd = ::socket(server_.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    errno_value = errno;
    error = "socket() failed: " + errno_text(errno_value);
    return false;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (!sources_.empty() && server_.addr.ss_family == AF_INET) {
    // Defer the port choice to connect(), so ports are unique per
    // (source, destination) pair instead of per source address.
    ::setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    sockaddr_in source{};
    source.sin_family = AF_INET;
    source.sin_addr = sources_[next_source_++ % sources_.size()];
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&source), sizeof source) != 0) {
      errno_value = errno;
      char text[INET_ADDRSTRLEN] = {0};
      ::inet_ntop(AF_INET, &source.sin_addr, text, sizeof text);
      error =
          std::string("bind() to source address ") + text + " failed: " + errno_text(errno_value);
      ::close(fd);
      return false;
    }
  }
  int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&server_.addr), server_.length);
  if (rc != 0 && errno != EINPROGRESS) {
    errno_value = errno;
    error = "connect() to " + server_.text + " failed: " + errno_text(errno_value);
    ::close(fd);
    return false;
  }
  if (client.slot_ == UINT32_MAX) {
    client.slot_ = static_cast<uint32_t>(all_.size());
    all_.push_back(&client);
  }
  client.fd_ = fd;
  ++client.generation_;
  client.next_packet_id_ = 0;
  client.in_.clear();
  client.out_.clear();
  client.out_offset_ = 0;
  client.last_tx_ns_ = loop_now_ns_;
  // Send CONNECT at once: on loopback the handshake has usually completed
  // inside connect(), which saves a wake-up per connection. A socket still
  // connecting answers EAGAIN and gets CONNECT when it becomes writable.
  encode_connect(client);
  uint32_t events = EPOLLIN;
  ssize_t w = ::send(fd, client.out_.data(), client.out_.size(), MSG_NOSIGNAL);
  if (w > 0) {
    bytes_written_ += static_cast<uint64_t>(w);
    client.out_offset_ = static_cast<size_t>(w);
    client.state_ = Client::State::kAwaitConnack;
    if (client.out_offset_ == client.out_.size()) {
      client.out_.clear();
      client.out_offset_ = 0;
    } else {
      events |= EPOLLOUT;
    }
  } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    client.state_ = Client::State::kConnecting;
    events = EPOLLOUT;
  } else {
    errno_value = w < 0 ? errno : EPIPE;
    error = "connect() to " + server_.text + " failed: " + errno_text(errno_value);
    ::close(fd);
    client.fd_ = -1;
    client.state_ = Client::State::kClosed;
    ++client.generation_;
    return false;
  }
  client.events_ = events;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = event_key(client.slot_, client.generation_);
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    errno_value = errno;
    error = "epoll_ctl failed: " + errno_text(errno_value);
    ::close(fd);
    client.fd_ = -1;
    client.state_ = Client::State::kClosed;
    ++client.generation_;
    return false;
  }
  ++open_;
  return true;
}

void Engine::encode_connect(Client& client) {
  mqtt::Connect connect;
  connect.version = config_.version;
  connect.clean_start = config_.clean_start;
  connect.keep_alive = config_.keep_alive;
  connect.client_id = client.client_id;
  connect.username = client.username ? client.username : config_.username;
  connect.password = client.password ? client.password : config_.password;
  if (config_.version == mqtt::Version::kV5) {
    connect.properties.receive_maximum = 65535;
    connect.properties.session_expiry_interval = config_.session_expiry_interval;
  }
  mqtt::encode(mqtt::Packet{std::move(connect)}, config_.version, client.out_);
}

void Engine::subscribe(Client& client, std::string_view filter, uint8_t qos) {
  mqtt::Subscribe subscribe;
  if (++client.next_packet_id_ == 0) client.next_packet_id_ = 1;
  subscribe.packet_id = client.next_packet_id_;
  auto& entry = subscribe.subscriptions.emplace_back();
  entry.filter.assign(filter);
  entry.options.max_qos = qos;
  mqtt::encode(mqtt::Packet{std::move(subscribe)}, config_.version, client.out_);
  mark_dirty(client);
}

uint16_t Engine::publish(Client& client, std::string_view topic, std::string_view payload,
                         uint8_t qos) {
  mqtt::PublishRef ref;
  ref.topic = topic;
  ref.payload = payload;
  ref.qos = qos;
  if (qos > 0) {
    if (++client.next_packet_id_ == 0) client.next_packet_id_ = 1;
    ref.packet_id = client.next_packet_id_;
  }
  mqtt::encode(ref, config_.version, client.out_);
  mark_dirty(client);
  return ref.packet_id;
}

void Engine::disconnect(Client& client, bool wait_for_close) {
  if (client.state_ == Client::State::kClosed) return;
  mqtt::encode(mqtt::Packet{mqtt::Disconnect{}}, config_.version, client.out_);
  if (client.state_ == Client::State::kConnecting) {
    close(client);
    return;
  }
  if (!wait_for_close) {
    write_out(client);
    close(client);
    return;
  }
  client.state_ = Client::State::kDisconnecting;
  mark_dirty(client);
}

void Engine::close(Client& client) {
  if (client.fd_ < 0) return;
  ::close(client.fd_);  // also removes it from the epoll set
  client.fd_ = -1;
  client.state_ = Client::State::kClosed;
  client.events_ = 0;
  ++client.generation_;
  client.out_.clear();
  client.out_offset_ = 0;
  --open_;
}

void Engine::mark_dirty(Client& client) {
  if (client.dirty_) return;
  client.dirty_ = true;
  dirty_.push_back(&client);
}

void Engine::watch(Client& client, uint32_t events) {
  if (client.events_ == events || client.fd_ < 0) return;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = event_key(client.slot_, client.generation_);
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, client.fd_, &ev);
  client.events_ = events;
}

void Engine::fail(Client& client, const std::string& why, int errno_value) {
  close(client);
  handler_.on_closed(client, why, errno_value);
}

int Engine::poll(int64_t timeout_ns) {
  epoll_event events[kMaxEvents];
  int n;
  if (timeout_ns <= 0) {
    n = ::epoll_wait(epoll_fd_, events, kMaxEvents, 0);
  } else if (epoll_pwait2_works_) {
    timespec ts{static_cast<time_t>(timeout_ns / kNsPerSec),
                static_cast<long>(timeout_ns % kNsPerSec)};
    n = ::epoll_pwait2(epoll_fd_, events, kMaxEvents, &ts, nullptr);
    if (n < 0 && errno == ENOSYS) {
      epoll_pwait2_works_ = false;
      n = ::epoll_wait(epoll_fd_, events, kMaxEvents,
                       static_cast<int>((timeout_ns + kNsPerMs - 1) / kNsPerMs));
    }
  } else {
    n = ::epoll_wait(epoll_fd_, events, kMaxEvents,
                     static_cast<int>((timeout_ns + kNsPerMs - 1) / kNsPerMs));
  }
  loop_now_ns_ = now_ns();
  if (n < 0) return 0;  // EINTR
  for (int i = 0; i < n; ++i) {
    const uint64_t key = events[i].data.u64;
    const auto slot = static_cast<uint32_t>(key >> 32);
    if (slot >= all_.size()) continue;
    Client& client = *all_[slot];
    const auto generation = static_cast<uint32_t>(key);
    if (client.generation_ != generation || client.fd_ < 0) continue;  // stale
    const uint32_t ev = events[i].events;
    if (client.state_ == Client::State::kConnecting) {
      if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_writable(client);
      continue;
    }
    if (ev & EPOLLOUT) {
      if (!write_out(client)) continue;
    }
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) {
      if (client.generation_ == generation) on_readable(client);
    }
  }
  if (loop_now_ns_ >= next_keepalive_check_ns_) {
    keep_alive(loop_now_ns_);
    next_keepalive_check_ns_ = loop_now_ns_ + kNsPerSec;
  }
  return n;
}

void Engine::on_writable(Client& client) {
  if (client.state_ == Client::State::kConnecting) {
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(client.fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      fail(client, "connect() to " + server_.text + " failed: " + errno_text(err), err);
      return;
    }
    client.state_ = Client::State::kAwaitConnack;
    watch(client, EPOLLIN);
    write_out(client);  // the CONNECT queued by connect()
    return;
  }
  write_out(client);
}

void Engine::flush() {
  flushing_.swap(dirty_);
  for (Client* client : flushing_) {
    client->dirty_ = false;
    if (client->fd_ < 0 || client->state_ == Client::State::kConnecting) continue;
    write_out(*client);
  }
  flushing_.clear();
}

bool Engine::write_out(Client& client) {
  while (client.out_offset_ < client.out_.size()) {
    const size_t want = client.out_.size() - client.out_offset_;
    ssize_t w = ::send(client.fd_, client.out_.data() + client.out_offset_, want, MSG_NOSIGNAL);
    if (w > 0) {
      bytes_written_ += static_cast<uint64_t>(w);
      client.out_offset_ += static_cast<size_t>(w);
      if (static_cast<size_t>(w) < want) {
        // The socket buffer is full; resume when epoll says it drained.
        watch(client, EPOLLIN | EPOLLOUT);
        return true;
      }
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      watch(client, EPOLLIN | EPOLLOUT);
      return true;
    }
    const int err = errno;
    fail(client, "write to " + server_.text + " failed: " + errno_text(err), err);
    return false;
  }
  client.out_.clear();
  client.out_offset_ = 0;
  client.last_tx_ns_ = loop_now_ns_;
  if (client.events_ & EPOLLOUT) watch(client, EPOLLIN);
  return true;
}

void Engine::on_readable(Client& client) {
  const uint32_t generation = client.generation_;
  for (int i = 0; i < kMaxReadsPerEvent; ++i) {
    ssize_t r = ::read(client.fd_, scratch_.data(), scratch_.size());
    if (r > 0) {
      bytes_read_ += static_cast<uint64_t>(r);
      const auto bytes = static_cast<size_t>(r);
      if (client.in_.empty()) {
        size_t used = process(client, std::string_view(scratch_.data(), bytes));
        if (used == SIZE_MAX || client.generation_ != generation) return;
        if (used < bytes) client.in_.assign(scratch_.data() + used, bytes - used);
      } else {
        client.in_.append(scratch_.data(), bytes);
        size_t used = process(client, client.in_);
        if (used == SIZE_MAX || client.generation_ != generation) return;
        client.in_.erase(0, used);
      }
      if (bytes < scratch_.size()) return;
      continue;
    }
    if (r == 0) {
      if (client.state_ == Client::State::kDisconnecting) {
        close(client);
        handler_.on_disconnected(client);
        return;
      }
      fail(client,
           client.state_ == Client::State::kAwaitConnack
               ? "the broker closed the connection before CONNACK"
               : "the broker closed the connection",
           0);
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    const int err = errno;
    if (client.state_ == Client::State::kDisconnecting && err == ECONNRESET) {
      close(client);
      handler_.on_disconnected(client);
      return;
    }
    fail(client, "read from " + server_.text + " failed: " + errno_text(err), err);
    return;
  }
}

size_t Engine::process(Client& client, std::string_view data) {
  const uint32_t generation = client.generation_;
  size_t offset = 0;
  while (offset < data.size()) {
    std::string_view rest = data.substr(offset);
    mqtt::FrameHeader header;
    mqtt::DecodeError error;
    mqtt::DecodeStatus status = mqtt::peek_frame(rest, kMaxPacketSize, header, error);
    if (status == mqtt::DecodeStatus::kNeedMore) break;
    if (status == mqtt::DecodeStatus::kError) {
      fail(client, "malformed packet from the broker: " + error.message, 0);
      return SIZE_MAX;
    }
    if (rest.size() < header.total_size()) break;
    if (!handle_packet(client, header, rest.substr(0, header.total_size()))) return SIZE_MAX;
    if (client.generation_ != generation) return SIZE_MAX;
    offset += header.total_size();
  }
  return offset;
}

bool Engine::handle_packet(Client& client, const mqtt::FrameHeader& header,
                           std::string_view bytes) {
  const mqtt::PacketType type = header.type();
  mqtt::Packet& packet = type == mqtt::PacketType::kPublish ? publish_packet_ : other_packet_;
  mqtt::DecodeError error;
  if (mqtt::decode(header, bytes, config_.version, packet, error) != mqtt::DecodeStatus::kOk) {
    fail(client, "malformed packet from the broker: " + error.message, 0);
    return false;
  }
  const uint32_t generation = client.generation_;
  switch (type) {
    case mqtt::PacketType::kConnack: {
      const auto& connack = std::get<mqtt::Connack>(packet);
      if (client.state_ != Client::State::kAwaitConnack) {
        fail(client, "the broker sent a second CONNACK", 0);
        return false;
      }
      if (connack.reason != mqtt::ReasonCode::kSuccess) {
        client.refusal_ = connack.reason;
        std::string why =
            std::string("the broker refused CONNECT: ") + mqtt::to_string(connack.reason);
        if (connack.properties.reason_string) why += " (" + *connack.properties.reason_string + ")";
        if (connack.reason == mqtt::ReasonCode::kNotAuthorized ||
            connack.reason == mqtt::ReasonCode::kBadUserNameOrPassword) {
          why += "; allow anonymous clients on the broker or pass --username/--password";
        }
        fail(client, why, 0);
        return false;
      }
      client.state_ = Client::State::kReady;
      handler_.on_connected(client, connack);
      return true;
    }
    case mqtt::PacketType::kPublish: {
      const auto& publish = std::get<mqtt::Publish>(packet);
      handler_.on_publish(client, publish);
      if (publish.qos == 1 && client.generation_ == generation && client.fd_ >= 0) {
        std::get<mqtt::Ack>(ack_packet_).packet_id = publish.packet_id;
        mqtt::encode(ack_packet_, config_.version, client.out_);
        mark_dirty(client);
      } else if (publish.qos == 2) {
        fail(client, "the broker sent a QoS 2 PUBLISH, which bench never subscribes to", 0);
        return false;
      }
      return true;
    }
    case mqtt::PacketType::kPuback:
      handler_.on_puback(client, std::get<mqtt::Ack>(packet));
      return true;
    case mqtt::PacketType::kSuback:
      handler_.on_suback(client, std::get<mqtt::Suback>(packet));
      return true;
    case mqtt::PacketType::kDisconnect: {
      const auto& disconnect = std::get<mqtt::Disconnect>(packet);
      std::string why =
          std::string("the broker sent DISCONNECT: ") + mqtt::to_string(disconnect.reason);
      if (disconnect.properties.reason_string) {
        why += " (" + *disconnect.properties.reason_string + ")";
      }
      fail(client, why, 0);
      return false;
    }
    default:
      return true;  // PINGRESP, UNSUBACK, ...: nothing to do
  }
}

void Engine::keep_alive(int64_t now) {
  if (config_.keep_alive == 0) return;
  const int64_t idle_limit = int64_t{config_.keep_alive} * kNsPerSec / 2;
  for (Client* client : all_) {
    if (client->state_ != Client::State::kReady) continue;
    if (now - client->last_tx_ns_ < idle_limit || client->pending_output() > 0) continue;
    mqtt::encode(mqtt::Packet{mqtt::Pingreq{}}, config_.version, client->out_);
    client->last_tx_ns_ = now;
    mark_dirty(*client);
  }
}

}  // namespace counterlink::bench
