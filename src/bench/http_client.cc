#include "http_client.h"

#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include <errno.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace counterlink::bench {

namespace {

constexpr size_t kScratchSize = 64 * 1024;
constexpr int kMaxEvents = 256;
// Answers of the broadcast API are ~1 KB; anything near this is not ours.
constexpr size_t kMaxAnswerBytes = 16 * 1024 * 1024;

uint64_t event_key(size_t index, uint32_t generation) {
  return (uint64_t{static_cast<uint32_t>(index)} << 32) | generation;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
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

// The framing of one answer, from its head.
struct Head {
  int status = 0;
  size_t head_bytes = 0;        // through the blank line
  int64_t content_length = -1;  // -1 = not given
  bool chunked = false;
  bool close = false;  // Connection: close
};

// kNeedMore, kOk or kBad for the head at the start of `in`.
enum class ParseStatus { kNeedMore, kOk, kBad };

ParseStatus parse_head(std::string_view in, Head& head) {
  const size_t end = in.find("\r\n\r\n");
  if (end == std::string_view::npos) return ParseStatus::kNeedMore;
  head.head_bytes = end + 4;
  std::string_view lines = in.substr(0, end);
  size_t eol = lines.find("\r\n");
  std::string_view status_line = lines.substr(0, eol);
  // "HTTP/1.1 201 Created"
  if (status_line.size() < 12 || status_line.substr(0, 5) != "HTTP/") return ParseStatus::kBad;
  const size_t space = status_line.find(' ');
  if (space == std::string_view::npos || space + 4 > status_line.size()) return ParseStatus::kBad;
  int status = 0;
  for (size_t i = space + 1; i < space + 4; ++i) {
    const char c = status_line[i];
    if (c < '0' || c > '9') return ParseStatus::kBad;
    status = status * 10 + (c - '0');
  }
  head.status = status;
  head.close = status_line.substr(0, 8) == "HTTP/1.0";
  while (eol != std::string_view::npos) {
    const size_t start = eol + 2;
    eol = lines.find("\r\n", start);
    std::string_view line = lines.substr(start, eol == std::string_view::npos ? eol : eol - start);
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view name = trim(line.substr(0, colon));
    std::string_view value = trim(line.substr(colon + 1));
    if (iequals(name, "content-length")) {
      int64_t n = 0;
      for (char c : value) {
        if (c < '0' || c > '9') return ParseStatus::kBad;
        n = n * 10 + (c - '0');
        if (n > static_cast<int64_t>(kMaxAnswerBytes)) return ParseStatus::kBad;
      }
      head.content_length = n;
    } else if (iequals(name, "transfer-encoding")) {
      head.chunked = iequals(value, "chunked");
    } else if (iequals(name, "connection")) {
      if (iequals(value, "close")) head.close = true;
      if (iequals(value, "keep-alive")) head.close = false;
    }
  }
  return ParseStatus::kOk;
}

// Decodes a chunked body starting at `in`; `used` = bytes through the last
// chunk's trailer.
ParseStatus parse_chunked(std::string_view in, std::string& body, size_t& used) {
  body.clear();
  size_t pos = 0;
  while (true) {
    const size_t eol = in.find("\r\n", pos);
    if (eol == std::string_view::npos) return ParseStatus::kNeedMore;
    size_t size = 0;
    size_t i = pos;
    for (; i < eol; ++i) {
      const char c = in[i];
      int digit;
      if (c >= '0' && c <= '9') {
        digit = c - '0';
      } else if (c >= 'a' && c <= 'f') {
        digit = c - 'a' + 10;
      } else if (c >= 'A' && c <= 'F') {
        digit = c - 'A' + 10;
      } else {
        break;  // chunk extensions (";...") are ignored
      }
      size = size * 16 + static_cast<size_t>(digit);
      if (size > kMaxAnswerBytes) return ParseStatus::kBad;
    }
    if (i == pos) return ParseStatus::kBad;
    pos = eol + 2;
    if (size == 0) {
      // Trailers, then the blank line.
      while (true) {
        const size_t end = in.find("\r\n", pos);
        if (end == std::string_view::npos) return ParseStatus::kNeedMore;
        const bool blank = end == pos;
        pos = end + 2;
        if (blank) {
          used = pos;
          return ParseStatus::kOk;
        }
      }
    }
    if (in.size() < pos + size + 2) return ParseStatus::kNeedMore;
    body.append(in.data() + pos, size);
    pos += size + 2;
  }
}

}  // namespace

HttpLoadClient::HttpLoadClient(Endpoint server, OnAnswer on_answer)
    : server_(std::move(server)), on_answer_(std::move(on_answer)) {
  scratch_.resize(kScratchSize);
}

HttpLoadClient::~HttpLoadClient() {
  for (size_t i = 0; i < conns_.size(); ++i)
    close_conn(i);
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
}

bool HttpLoadClient::open(size_t connections, int64_t timeout_ns, std::string& error) {
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) {
    error = std::string("epoll_create1 failed: ") + std::strerror(errno);
    return false;
  }
  conns_.resize(connections);
  for (size_t i = 0; i < connections; ++i) {
    if (!connect_one(i, error)) return false;
  }
  const int64_t until = now_ns() + timeout_ns;
  while (now_ns() < until) {
    size_t ready = 0;
    for (const Conn& c : conns_)
      ready += c.state == State::kIdle ? 1 : 0;
    if (ready == connections) return true;
    poll(10 * kNsPerMs);
  }
  error = "could not open " + std::to_string(connections) + " HTTP connections to " + server_.text +
          " within " + std::to_string(timeout_ns / kNsPerSec) +
          " s: check --api and that the server's HTTP endpoint is enabled";
  return false;
}

bool HttpLoadClient::connect_one(size_t index, std::string& error) {
  Conn& c = conns_[index];
  const int fd = ::socket(server_.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::string("socket() failed: ") + std::strerror(errno);
    return false;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  const int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&server_.addr), server_.length);
  if (rc != 0 && errno != EINPROGRESS) {
    error = "connect() to " + server_.text + " failed: " + std::strerror(errno) +
            "; is `counterlink serve` running with its HTTP endpoint there (--api)?";
    ::close(fd);
    return false;
  }
  c.fd = fd;
  ++c.generation;
  c.in.clear();
  c.out.clear();
  c.out_offset = 0;
  c.state = rc == 0 ? State::kIdle : State::kConnecting;
  c.want_write = c.state == State::kConnecting;
  epoll_event ev{};
  ev.events = EPOLLIN | (c.want_write ? EPOLLOUT : 0u);
  ev.data.u64 = event_key(index, c.generation);
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    error = std::string("epoll_ctl failed: ") + std::strerror(errno);
    ::close(fd);
    c.fd = -1;
    c.state = State::kClosed;
    return false;
  }
  if (c.state == State::kIdle) idle_.push_back(index);
  return true;
}

void HttpLoadClient::close_conn(size_t index) {
  Conn& c = conns_[index];
  if (c.fd < 0) return;
  ::close(c.fd);
  c.fd = -1;
  ++c.generation;
  if (c.state == State::kBusy) --busy_;
  c.state = State::kClosed;
  c.want_write = false;
}

void HttpLoadClient::fail(size_t index, const std::string& why) {
  Conn& c = conns_[index];
  const bool had_request = c.state == State::kBusy;
  const uint64_t tag = c.tag;
  close_conn(index);
  ++reconnects_;
  std::string error;
  if (!connect_one(index, error)) {
    // Left closed; the load loop sees fewer connections. Reported through
    // the request that failed, if there was one.
    if (had_request) on_answer_(index, tag, 0, {}, why + "; reconnecting failed: " + error);
    return;
  }
  if (had_request) on_answer_(index, tag, 0, {}, why);
}

size_t HttpLoadClient::take_idle() {
  while (!idle_.empty()) {
    const size_t index = idle_.back();
    idle_.pop_back();
    if (conns_[index].state == State::kIdle) return index;  // else stale (closed meanwhile)
  }
  return SIZE_MAX;
}

void HttpLoadClient::send(size_t index, std::string_view request, uint64_t tag) {
  Conn& c = conns_[index];
  c.state = State::kBusy;
  ++busy_;
  c.tag = tag;
  c.sent_ns = now_ns();
  c.out.assign(request.data(), request.size());
  c.out_offset = 0;
  write_out(index);
}

void HttpLoadClient::write_out(size_t index) {
  Conn& c = conns_[index];
  while (c.out_offset < c.out.size()) {
    const ssize_t w =
        ::send(c.fd, c.out.data() + c.out_offset, c.out.size() - c.out_offset, MSG_NOSIGNAL);
    if (w > 0) {
      c.out_offset += static_cast<size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!c.want_write) {
        c.want_write = true;
        update_events(index);
      }
      return;
    }
    fail(index, std::string("write to ") + server_.text +
                    " failed: " + std::strerror(w < 0 ? errno : EPIPE));
    return;
  }
  c.out.clear();
  c.out_offset = 0;
  if (c.want_write) {
    c.want_write = false;
    update_events(index);
  }
}

void HttpLoadClient::update_events(size_t index) {
  Conn& c = conns_[index];
  epoll_event ev{};
  ev.events = EPOLLIN | (c.want_write ? EPOLLOUT : 0u);
  ev.data.u64 = event_key(index, c.generation);
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
}

void HttpLoadClient::poll(int64_t timeout_ns) {
  epoll_event events[kMaxEvents];
  int n;
  if (timeout_ns <= 0) {
    n = ::epoll_wait(epoll_fd_, events, kMaxEvents, 0);
  } else {
    timespec ts{static_cast<time_t>(timeout_ns / kNsPerSec),
                static_cast<long>(timeout_ns % kNsPerSec)};
    n = ::epoll_pwait2(epoll_fd_, events, kMaxEvents, &ts, nullptr);
    if (n < 0 && errno == ENOSYS) {
      n = ::epoll_wait(epoll_fd_, events, kMaxEvents,
                       static_cast<int>((timeout_ns + kNsPerMs - 1) / kNsPerMs));
    }
  }
  for (int i = 0; i < n; ++i) {
    const uint64_t key = events[i].data.u64;
    const auto index = static_cast<size_t>(key >> 32);
    if (index >= conns_.size()) continue;
    Conn& c = conns_[index];
    if (c.generation != static_cast<uint32_t>(key) || c.fd < 0) continue;  // stale
    const uint32_t ev = events[i].events;
    if (c.state == State::kConnecting) {
      if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_writable(index);
      continue;
    }
    if (ev & EPOLLOUT) {
      write_out(index);
      if (c.generation != static_cast<uint32_t>(key)) continue;
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(index);
  }
  const int64_t now = now_ns();
  if (now >= next_timeout_check_ns_) {
    next_timeout_check_ns_ = now + 100 * kNsPerMs;
    for (size_t i = 0; i < conns_.size(); ++i) {
      if (conns_[i].state == State::kBusy && now - conns_[i].sent_ns > request_timeout_ns_) {
        fail(i, "no answer within " + std::to_string(request_timeout_ns_ / kNsPerMs) + " ms");
      }
    }
  }
}

void HttpLoadClient::on_writable(size_t index) {
  Conn& c = conns_[index];
  int err = 0;
  socklen_t len = sizeof err;
  ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    // A connection that never came up: nothing was in flight on it.
    close_conn(index);
    return;
  }
  c.state = State::kIdle;
  c.want_write = false;
  update_events(index);
  idle_.push_back(index);
}

void HttpLoadClient::on_readable(size_t index) {
  Conn& c = conns_[index];
  const uint32_t generation = c.generation;
  while (true) {
    const ssize_t r = ::read(c.fd, scratch_.data(), scratch_.size());
    if (r > 0) {
      c.in.append(scratch_.data(), static_cast<size_t>(r));
      if (!parse(index) || c.generation != generation) return;
      if (static_cast<size_t>(r) < scratch_.size()) return;
      continue;
    }
    if (r == 0) {
      fail(index, "the server closed the connection");
      return;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    fail(index, std::string("read from ") + server_.text + " failed: " + std::strerror(errno));
    return;
  }
}

bool HttpLoadClient::parse(size_t index) {
  Conn& c = conns_[index];
  while (!c.in.empty()) {
    if (c.state != State::kBusy) {
      fail(index, "the server sent bytes with no request in flight");
      return false;
    }
    Head head;
    ParseStatus st = parse_head(c.in, head);
    if (st == ParseStatus::kNeedMore) {
      if (c.in.size() > kMaxAnswerBytes) {
        fail(index, "answer head too large");
        return false;
      }
      return true;
    }
    if (st == ParseStatus::kBad) {
      fail(index, "malformed HTTP answer from the server");
      return false;
    }
    if (head.status >= 100 && head.status < 200) {  // 100 Continue: skip
      c.in.erase(0, head.head_bytes);
      continue;
    }
    std::string chunked_body;
    std::string_view body;
    size_t total = 0;
    if (head.chunked) {
      size_t used = 0;
      st = parse_chunked(std::string_view(c.in).substr(head.head_bytes), chunked_body, used);
      if (st == ParseStatus::kNeedMore) return true;
      if (st == ParseStatus::kBad) {
        fail(index, "malformed chunked answer from the server");
        return false;
      }
      body = chunked_body;
      total = head.head_bytes + used;
    } else if (head.content_length >= 0) {
      total = head.head_bytes + static_cast<size_t>(head.content_length);
      if (c.in.size() < total) return true;
      body =
          std::string_view(c.in).substr(head.head_bytes, static_cast<size_t>(head.content_length));
    } else {
      // Delimited by the close: not used by counterlink; treat as an error.
      fail(index, "answer without Content-Length or chunked encoding");
      return false;
    }
    const uint64_t tag = c.tag;
    const uint32_t generation = c.generation;
    c.state = State::kIdle;
    --busy_;
    on_answer_(index, tag, head.status, body, std::string());
    if (c.generation != generation) return false;
    c.in.erase(0, total);
    if (head.close) {
      close_conn(index);
      ++reconnects_;
      std::string error;
      connect_one(index, error);
      return false;
    }
    idle_.push_back(index);
  }
  return true;
}

}  // namespace counterlink::bench
