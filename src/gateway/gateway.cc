#include "counterlink/gateway/gateway.h"

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <thread>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker.h"
#include "static_access.h"

namespace counterlink::gateway {

namespace {

// A listening socket with SO_REUSEPORT so that every worker can accept on the
// same port and the kernel spreads connections between them.
int open_listener(const ListenerConfig& config, uint16_t port) {
  sockaddr_storage addr{};
  socklen_t len = 0;
  int family = AF_INET;
  auto* in4 = reinterpret_cast<sockaddr_in*>(&addr);
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&addr);
  if (::inet_pton(AF_INET, config.bind.c_str(), &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons(port);
    len = sizeof(sockaddr_in);
  } else if (::inet_pton(AF_INET6, config.bind.c_str(), &in6->sin6_addr) == 1) {
    family = AF_INET6;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    len = sizeof(sockaddr_in6);
  } else {
    throw std::runtime_error("listener '" + config.name + "': bind address '" + config.bind +
                             "' is not an IPv4 or IPv6 address");
  }
  int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    int err = errno;
    ::close(fd);
    throw std::runtime_error("listener '" + config.name + "': cannot bind " + config.bind + ":" +
                             std::to_string(port) + ": " + std::strerror(err) +
                             (err == EADDRINUSE ? " (another process uses this port; change "
                                                  "the port in the configuration)"
                                                : ""));
  }
  if (::listen(fd, 4096) != 0) {
    int err = errno;
    ::close(fd);
    throw std::runtime_error("listener '" + config.name + "': listen: " + std::strerror(err));
  }
  return fd;
}

uint16_t bound_port(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
}

const char* kind_name(ListenerKind kind) {
  switch (kind) {
    case ListenerKind::kTcp:
      return "tcp";
    case ListenerKind::kTls:
      return "tls";
    case ListenerKind::kWebSocket:
      return "ws";
    case ListenerKind::kWebSocketTls:
      return "wss";
  }
  return "?";
}

}  // namespace

const char* to_string(DeliverStatus status) {
  switch (status) {
    case DeliverStatus::kSent:
      return "sent";
    case DeliverStatus::kQueued:
      return "queued";
    case DeliverStatus::kOffline:
      return "offline";
    case DeliverStatus::kNoSession:
      return "no_session";
    case DeliverStatus::kQueueFull:
      return "queue_full";
    case DeliverStatus::kTooLarge:
      return "too_large";
  }
  return "unknown";
}

// --- GatewayImpl ------------------------------------------------------------------

GatewayImpl::GatewayImpl(GatewayConfig config, Hooks hooks)
    : config_(std::move(config)), hooks_(std::move(hooks)), retained_(&metrics_.retained_messages) {
  authenticator_ = hooks_.authenticator;
  authorizer_ = hooks_.authorizer;
  if (!authenticator_) authenticator_ = std::make_shared<StaticAuthenticator>(config_);
  if (!authorizer_) authorizer_ = std::make_shared<StaticAuthorizer>(config_);
  unsigned n = config_.workers;
  if (n == 0) n = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < n; ++i)
    workers_.push_back(std::make_unique<Worker>(*this, i, n));
}

GatewayImpl::~GatewayImpl() {
  stop();
}

unsigned GatewayImpl::worker_for(std::string_view client_id) const {
  return static_cast<unsigned>(std::hash<std::string_view>{}(client_id) % workers_.size());
}

void GatewayImpl::start() {
  if (started_) return;
  for (const ListenerConfig& lc : config_.listeners) {
    const TlsContext* tls = nullptr;
    if (lc.kind == ListenerKind::kTls || lc.kind == ListenerKind::kWebSocketTls) {
      tls_contexts_.push_back(std::make_unique<TlsContext>(lc.tls));
      tls = tls_contexts_.back().get();
    }
    // The first socket may bind port 0; the others then share its port.
    uint16_t port = lc.port;
    for (auto& worker : workers_) {
      int fd = open_listener(lc, port);
      port = bound_port(fd);
      worker->add_listener(fd, lc, tls);
    }
    listener_addresses_.push_back(ListenerAddress{lc.name, lc.kind, port});
    spdlog::info("listener.started name={} kind={} bind={} port={} workers={}", lc.name,
                 kind_name(lc.kind), lc.bind, port, workers_.size());
  }
  for (auto& worker : workers_)
    worker->start_thread();
  started_ = true;
}

void GatewayImpl::stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  for (auto& worker : workers_) {
    Worker* w = worker.get();
    w->loop().post([w] { w->shutdown(); });
  }
  for (auto& worker : workers_)
    worker->loop().stop();
  for (auto& worker : workers_)
    worker->join();
  spdlog::info("gateway.stopped");
}

// --- Gateway ----------------------------------------------------------------------

Gateway::Gateway(GatewayConfig config, Hooks hooks)
    : impl_(std::make_unique<GatewayImpl>(std::move(config), std::move(hooks))) {}

Gateway::~Gateway() {
  impl_->stop();
}

void Gateway::start() {
  impl_->start();
}
void Gateway::stop() {
  impl_->stop();
}

std::vector<ListenerAddress> Gateway::listeners() const {
  return impl_->listeners();
}

void Gateway::deliver(const std::string& client_id, MessagePtr message,
                      std::function<void(DeliverStatus)> done) {
  Worker& w = impl_->worker(impl_->worker_for(client_id));
  w.loop().post([&w, client_id, message = std::move(message), done = std::move(done)]() mutable {
    mqtt::SubscribeOptions options;
    options.max_qos = 2;
    DirectedDelivery d{client_id, 0, std::move(message), options, 0, std::move(done)};
    w.deliver_directed(d);
  });
}

void Gateway::publish(MessagePtr message) {
  Worker& w = impl_->worker(0);
  w.loop().post([&w, message = std::move(message)] {
    if (message->retain) w.gateway().retained().put(message);
    w.route(message);
  });
}

void Gateway::disconnect_client(const std::string& client_id, mqtt::ReasonCode reason) {
  Worker& w = impl_->worker(impl_->worker_for(client_id));
  w.loop().post([&w, client_id, reason] { w.kick(client_id, reason); });
}

uint64_t Gateway::connection_count() const {
  return static_cast<uint64_t>(impl_->open_connections().load());
}

}  // namespace counterlink::gateway
