// A webhook receiver for tests: a tiny HTTP/1.1 server on 127.0.0.1, port 0,
// one thread per connection, `Connection: close` after every answer. It
// records every request and answers from a script (status, body, delay),
// then with a default answer.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace counterlink::platform::testing {

struct ReceivedRequest {
  std::string method;
  std::string path;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
};

struct ScriptedAnswer {
  int status = 200;
  std::string body = "ok";
  int delay_ms = 0;  // before answering (a slow endpoint)
};

class Receiver {
 public:
  Receiver() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listen_fd_, 64) != 0) {
      throw std::runtime_error("receiver: bind/listen failed");
    }
    socklen_t len = sizeof addr;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  ~Receiver() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    ::shutdown(listen_fd_, SHUT_RDWR);
    acceptor_.join();
    ::close(listen_fd_);
    std::vector<std::thread> threads;
    {
      std::lock_guard lock(mutex_);
      threads.swap(connections_);
    }
    for (auto& t : threads)
      t.join();
  }

  std::string url(const std::string& path = "/hooks") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

  // Answers for the next requests, in order.
  void script(std::vector<ScriptedAnswer> answers) {
    std::lock_guard lock(mutex_);
    for (auto& a : answers)
      script_.push_back(std::move(a));
  }
  void set_default(ScriptedAnswer answer) {
    std::lock_guard lock(mutex_);
    default_ = std::move(answer);
  }

  std::vector<ReceivedRequest> requests() {
    std::lock_guard lock(mutex_);
    return requests_;
  }
  size_t count() {
    std::lock_guard lock(mutex_);
    return requests_.size();
  }
  // Waits until `n` requests arrived; false after `timeout`.
  bool wait_for(size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return requests_.size() >= n; });
  }

 private:
  void accept_loop() {
    for (;;) {
      const int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      std::lock_guard lock(mutex_);
      if (stopping_) {
        ::close(fd);
        return;
      }
      connections_.emplace_back([this, fd] { serve(fd); });
    }
  }

  // Reads one request; false if the peer went away first.
  bool read_request(int fd, ReceivedRequest& req) {
    std::string data;
    char buffer[8192];
    size_t header_end = std::string::npos;
    size_t content_length = 0;
    for (;;) {
      if (header_end != std::string::npos && data.size() >= header_end + 4 + content_length) break;
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 10000) <= 0) return false;
      const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
      if (n <= 0) return false;
      data.append(buffer, static_cast<size_t>(n));
      if (header_end == std::string::npos) {
        header_end = data.find("\r\n\r\n");
        if (header_end != std::string::npos) {
          parse_head(data.substr(0, header_end), req);
          auto it = req.headers.find("content-length");
          if (it != req.headers.end()) content_length = std::stoul(it->second);
        }
      }
    }
    req.body = data.substr(header_end + 4, content_length);
    return true;
  }

  static void parse_head(const std::string& head, ReceivedRequest& req) {
    size_t line_end = head.find("\r\n");
    const std::string first = head.substr(0, line_end);
    const size_t sp1 = first.find(' ');
    const size_t sp2 = first.find(' ', sp1 + 1);
    req.method = first.substr(0, sp1);
    req.path = first.substr(sp1 + 1, sp2 - sp1 - 1);
    size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
    while (pos < head.size()) {
      size_t end = head.find("\r\n", pos);
      if (end == std::string::npos) end = head.size();
      const std::string line = head.substr(pos, end - pos);
      const size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string name = line.substr(0, colon);
        std::transform(name.begin(), name.end(), name.begin(), ::tolower);
        size_t v = colon + 1;
        while (v < line.size() && line[v] == ' ')
          ++v;
        req.headers[name] = line.substr(v);
      }
      pos = end + 2;
    }
  }

  void serve(int fd) {
    ReceivedRequest req;
    if (!read_request(fd, req)) {
      ::close(fd);
      return;
    }
    ScriptedAnswer answer;
    {
      std::lock_guard lock(mutex_);
      if (!script_.empty()) {
        answer = std::move(script_.front());
        script_.pop_front();
      } else {
        answer = default_;
      }
      requests_.push_back(req);
    }
    cv_.notify_all();
    if (answer.delay_ms > 0) {
      std::unique_lock lock(mutex_);
      cv_.wait_for(lock, std::chrono::milliseconds(answer.delay_ms), [&] { return stopping_; });
    }
    const std::string response = "HTTP/1.1 " + std::to_string(answer.status) +
                                 " X\r\nContent-Type: application/json\r\nContent-Length: " +
                                 std::to_string(answer.body.size()) +
                                 "\r\nConnection: close\r\n\r\n" + answer.body;
    (void)::send(fd, response.data(), response.size(), MSG_NOSIGNAL);
    ::shutdown(fd, SHUT_WR);
    ::close(fd);
  }

  int listen_fd_ = -1;
  int port_ = 0;
  std::thread acceptor_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::vector<std::thread> connections_;
  std::deque<ScriptedAnswer> script_;
  ScriptedAnswer default_;
  std::vector<ReceivedRequest> requests_;
};

}  // namespace counterlink::platform::testing
