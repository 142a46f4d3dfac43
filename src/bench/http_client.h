// A minimal HTTP/1.1 load client for `counterlink bench broadcasts`: a fixed
// set of keep-alive connections on one epoll loop, at most one request in
// flight per connection (no pipelining), answers delimited by Content-Length
// or chunked encoding.
//
// Threading: one thread owns a HttpLoadClient and calls every method; the
// answer callback runs on that thread inside poll(). Not a general HTTP
// client: it keeps only the status and the body of each answer, and it
// reconnects a connection the server closed (the request that was in flight
// on it is reported as a transport error).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "engine.h"

namespace counterlink::bench {

class HttpLoadClient {
 public:
  // `status` 0 = transport error (then `error` says what happened). `tag` is
  // the caller's, given to send(). `body` is valid during the call only.
  using OnAnswer = std::function<void(size_t connection, uint64_t tag, int status,
                                      std::string_view body, const std::string& error)>;

  HttpLoadClient(Endpoint server, OnAnswer on_answer);
  ~HttpLoadClient();
  HttpLoadClient(const HttpLoadClient&) = delete;
  HttpLoadClient& operator=(const HttpLoadClient&) = delete;

  // Opens `connections` connections and waits (up to `timeout_ns`) until all
  // are established. False and `error` (a sentence saying what to do) if not.
  bool open(size_t connections, int64_t timeout_ns, std::string& error);

  size_t connections() const { return conns_.size(); }
  // A connection with no request in flight, or SIZE_MAX. The caller must
  // send() on it before the next poll() (it is no longer listed as idle).
  size_t take_idle();
  size_t busy() const { return busy_; }

  // Writes `request` (complete HTTP/1.1 bytes) on an idle connection.
  void send(size_t connection, std::string_view request, uint64_t tag);

  // Waits up to `timeout_ns` (0 = do not wait) for events and delivers the
  // complete answers. Requests older than the request timeout fail.
  void poll(int64_t timeout_ns);

  // Answers slower than this are transport errors (the connection is
  // closed and opened again).
  void set_request_timeout(int64_t ns) { request_timeout_ns_ = ns; }
  uint64_t reconnects() const { return reconnects_; }

 private:
  enum class State : uint8_t { kClosed, kConnecting, kIdle, kBusy };
  struct Conn {
    int fd = -1;
    uint32_t generation = 0;
    State state = State::kClosed;
    bool want_write = false;  // EPOLLOUT registered
    std::string out;
    size_t out_offset = 0;
    std::string in;
    uint64_t tag = 0;
    int64_t sent_ns = 0;
  };

  bool connect_one(size_t index, std::string& error);
  void close_conn(size_t index);
  // Fails the request in flight (if any), then reconnects.
  void fail(size_t index, const std::string& why);
  void on_writable(size_t index);
  void on_readable(size_t index);
  void write_out(size_t index);
  void update_events(size_t index);
  // Parses complete answers in conn.in; false if the connection failed.
  bool parse(size_t index);

  Endpoint server_;
  OnAnswer on_answer_;
  int epoll_fd_ = -1;
  std::vector<Conn> conns_;
  std::vector<size_t> idle_;  // stack of idle connection indices
  size_t busy_ = 0;
  std::vector<char> scratch_;
  int64_t request_timeout_ns_ = 30 * kNsPerSec;
  int64_t next_timeout_check_ns_ = 0;
  uint64_t reconnects_ = 0;
};

}  // namespace counterlink::bench
