// Plain TCP transport: a thin, non-blocking wrapper over recv()/send().
#include <cerrno>
#include <memory>

#include <sys/socket.h>
#include <sys/types.h>

#include "transport.h"

namespace counterlink::gateway {
namespace {

bool is_would_block(int err) {
  return err == EAGAIN || err == EWOULDBLOCK;
}

class TcpTransport final : public Transport {
 public:
  explicit TcpTransport(int fd) : fd_(fd) {}

  // A zero-length read cannot be told apart from EOF by recv(), so it is
  // answered without touching the socket.
  IoResult read(char* buf, size_t len) override {
    if (len == 0) return {IoStatus::kWouldBlock, 0};
    for (;;) {
      const ssize_t n = ::recv(fd_, buf, len, 0);
      if (n > 0) return {IoStatus::kOk, static_cast<size_t>(n)};
      if (n == 0) return {IoStatus::kClosed, 0};
      if (errno == EINTR) continue;
      if (is_would_block(errno)) return {IoStatus::kWouldBlock, 0};
      return {IoStatus::kError, 0};  // ECONNRESET, ETIMEDOUT, ...
    }
  }

  // MSG_NOSIGNAL: a peer that has gone away yields EPIPE (kError) instead of
  // SIGPIPE killing the process.
  IoResult write(const char* data, size_t len) override {
    if (len == 0) return {IoStatus::kOk, 0};
    for (;;) {
      const ssize_t n = ::send(fd_, data, len, MSG_NOSIGNAL);
      if (n > 0) return {IoStatus::kOk, static_cast<size_t>(n)};
      if (n == 0) return {IoStatus::kWouldBlock, 0};
      if (errno == EINTR) continue;
      if (is_would_block(errno)) return {IoStatus::kWouldBlock, 0};
      return {IoStatus::kError, 0};
    }
  }

  const char* name() const override { return "tcp"; }

 private:
  int fd_;
};

}  // namespace

std::unique_ptr<Transport> make_tcp_transport(int fd) {
  return std::make_unique<TcpTransport>(fd);
}

}  // namespace counterlink::gateway
