#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "broker.h"

namespace counterlink::gateway {

using mqtt::PacketType;
using mqtt::ReasonCode;

Connection::Connection(Worker* worker, int fd, std::unique_ptr<Transport> transport,
                       std::string remote, std::string listener, uint64_t id)
    : worker_(worker),
      fd_(fd),
      transport_(std::move(transport)),
      id_(id),
      max_packet_size_(worker->config().max_packet_size) {
  info_.remote_address = std::move(remote);
  info_.listener = std::move(listener);
  accepted_ms_ = last_rx_ms_ = worker->loop().now_ms();
}

Connection::~Connection() {
  if (fd_ >= 0) ::close(fd_);
}

void Connection::on_io(uint32_t events) {
  if (state_ == State::kClosed) return;
  if (events & EPOLLOUT) {
    if (!flush()) return;
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) handle_readable();
}

void Connection::handle_readable() {
  // Bounded work per wake-up so that one busy client cannot starve the others;
  // epoll is level-triggered and reports the rest on the next iteration.
  constexpr int kMaxReads = 16;
  for (int i = 0; i < kMaxReads; ++i) {
    if (state_ == State::kAuthenticating) break;  // resumes once authenticated
    char* buf = worker_->scratch();
    IoResult r = transport_->read(buf, worker_->scratch_size());
    if (r.status == IoStatus::kWouldBlock) break;
    if (r.status != IoStatus::kOk) {
      close(DisconnectReason::kConnectionLost);
      return;
    }
    last_rx_ms_ = worker_->loop().now_ms();
    if (in_.empty()) {
      size_t used = process(std::string_view(buf, r.bytes));
      if (state_ == State::kClosed) return;
      if (used < r.bytes) in_.assign(buf + used, r.bytes - used);
    } else {
      // Parse from a local buffer: a CONNECT may complete synchronously and
      // call process_buffered(), which must neither re-parse these bytes nor
      // move the buffer that `process` is reading.
      std::string data = std::move(in_);
      in_.clear();
      data.append(buf, r.bytes);
      size_t used = process(data);
      if (state_ == State::kClosed) return;
      data.erase(0, used);
      data.append(in_);  // empty unless process_buffered() left bytes
      in_ = std::move(data);
    }
    if (handoff_connect_) {
      worker_->hand_off(this);
      return;
    }
    if (r.bytes < worker_->scratch_size()) break;
  }
  if (in_.empty() && in_.capacity() > 4096) std::string().swap(in_);
  if (transport_->wants_write()) mark_dirty();
}

size_t Connection::process(std::string_view data) {
  size_t offset = 0;
  while (offset < data.size()) {
    if (state_ == State::kClosed || state_ == State::kAuthenticating || handoff_connect_) break;
    std::string_view rest = data.substr(offset);
    mqtt::FrameHeader header;
    mqtt::DecodeError error;
    mqtt::DecodeStatus status = mqtt::peek_frame(rest, max_packet_size_, header, error);
    if (status == mqtt::DecodeStatus::kNeedMore) break;
    if (status == mqtt::DecodeStatus::kError) {
      protocol_error(error);
      return data.size();
    }
    if (header.total_size() > rest.size()) {
      // Reserve once for the whole packet rather than growing piecewise, but
      // only for an authenticated client: before CONNECT a header alone must
      // not make us commit memory.
      if (state_ == State::kConnected && in_.capacity() < header.total_size()) {
        in_.reserve(header.total_size());
      }
      break;
    }
    if (state_ == State::kAwaitConnect && header.type() != PacketType::kConnect) {
      spdlog::info("client.rejected remote={} reason=\"first packet is {} not CONNECT\"",
                   info_.remote_address, mqtt::to_string(header.type()));
      worker_->metrics().protocol_errors.inc();
      close(DisconnectReason::kProtocolViolation);
      return data.size();
    }
    mqtt::Packet packet;
    status = mqtt::decode(header, rest.substr(0, header.total_size()), version_, packet, error);
    offset += header.total_size();
    if (status != mqtt::DecodeStatus::kOk) {
      protocol_error(error);
      return data.size();
    }
    handle_packet(packet);
  }
  return offset;
}

void Connection::process_buffered() {
  if (in_.empty() || state_ != State::kConnected) return;
  std::string pending = std::move(in_);
  in_.clear();
  size_t used = process(pending);
  if (state_ == State::kClosed) return;
  pending.erase(0, used);
  if (!pending.empty()) {
    pending.append(in_);
    in_ = std::move(pending);
  }
}

void Connection::protocol_error(const mqtt::DecodeError& error) {
  GatewayMetrics& m = worker_->metrics();
  if (error.reason == ReasonCode::kPacketTooLarge) {
    m.limit(Limit::kMaxPacketSize);
  } else if (error.reason == ReasonCode::kMalformedPacket) {
    m.malformed_packets.inc();
  } else {
    m.protocol_errors.inc();
  }
  spdlog::info("client.protocol_error client_id={} remote={} reason=0x{:02x} detail=\"{}\"",
               info_.client_id, info_.remote_address, static_cast<int>(error.reason),
               error.message);
  DisconnectReason why = error.reason == ReasonCode::kPacketTooLarge
                             ? DisconnectReason::kPacketTooLarge
                             : DisconnectReason::kProtocolViolation;
  if (state_ == State::kAwaitConnect) {
    // No CONNACK has been sent: answer in the dialect the client announced.
    // A protocol level we do not know at all (e.g. 6) is answered in the
    // 3.1.1 form, return code 0x01, which every client version can read
    // (MQTT-3.1.2-2).
    if (!error.connect_version && error.reason == ReasonCode::kUnsupportedProtocolVersion) {
      version_ = mqtt::Version::kV311;
      mqtt::Connack connack;
      connack.reason = error.reason;
      send(connack);
      flush();
    } else if (error.connect_version) {
      version_ = *error.connect_version;
      mqtt::Connack connack;
      connack.reason = error.reason;
      if (version_ == mqtt::Version::kV5) {
        connack.properties.reason_string = error.message;
        send(connack);
      } else if (error.reason == ReasonCode::kUnsupportedProtocolVersion) {
        send(connack);  // 3.1.1 return code 0x01
      }
      flush();
    }
    close(why);
    return;
  }
  disconnect(error.reason, why, error.message);
}

void Connection::handle_packet(mqtt::Packet& packet) {
  if (state_ == State::kAwaitConnect) {
    auto& connect = std::get<mqtt::Connect>(packet);
    version_ = connect.version;
    worker_->on_connect(*this, connect);
    return;
  }
  switch (mqtt::type_of(packet)) {
    case PacketType::kPublish:
      worker_->on_publish(*this, std::get<mqtt::Publish>(packet));
      return;
    case PacketType::kPuback:
      worker_->on_puback(*this, std::get<mqtt::Ack>(packet));
      return;
    case PacketType::kPubrec:
      worker_->on_pubrec(*this, std::get<mqtt::Ack>(packet));
      return;
    case PacketType::kPubrel:
      worker_->on_pubrel(*this, std::get<mqtt::Ack>(packet));
      return;
    case PacketType::kPubcomp:
      worker_->on_pubcomp(*this, std::get<mqtt::Ack>(packet));
      return;
    case PacketType::kSubscribe:
      worker_->on_subscribe(*this, std::get<mqtt::Subscribe>(packet));
      return;
    case PacketType::kUnsubscribe:
      worker_->on_unsubscribe(*this, std::get<mqtt::Unsubscribe>(packet));
      return;
    case PacketType::kPingreq:
      send(mqtt::Pingresp{});
      return;
    case PacketType::kDisconnect:
      worker_->on_disconnect_packet(*this, std::get<mqtt::Disconnect>(packet));
      return;
    case PacketType::kConnect: {
      mqtt::DecodeError error{ReasonCode::kProtocolError, "second CONNECT on one connection", {}};
      protocol_error(error);
      return;
    }
    case PacketType::kAuth: {
      // Enhanced authentication is never negotiated (no Authentication
      // Method is accepted at CONNECT), so AUTH is out of place.
      mqtt::DecodeError error{
          ReasonCode::kProtocolError, "AUTH without an authentication method", {}};
      protocol_error(error);
      return;
    }
    case PacketType::kConnack:
    case PacketType::kSuback:
    case PacketType::kUnsuback:
    case PacketType::kPingresp: {
      mqtt::DecodeError error{
          ReasonCode::kProtocolError,
          std::string("a client must not send ") + mqtt::to_string(mqtt::type_of(packet)),
          {}};
      protocol_error(error);
      return;
    }
  }
}

void Connection::send(const mqtt::Packet& packet) {
  mqtt::encode(packet, version_, out_);
  mark_dirty();
}

void Connection::mark_dirty() {
  if (dirty_ || state_ == State::kClosed) return;
  dirty_ = true;
  worker_->add_dirty(this);
}

bool Connection::flush() {
  if (state_ == State::kClosed) return false;
  while (out_offset_ < out_.size()) {
    IoResult r = transport_->write(out_.data() + out_offset_, out_.size() - out_offset_);
    if (r.status == IoStatus::kOk) {
      out_offset_ += r.bytes;
      continue;
    }
    if (r.status == IoStatus::kWouldBlock) break;
    close(DisconnectReason::kConnectionLost);
    return false;
  }
  if (transport_->wants_write()) {
    IoResult r = transport_->flush();
    if (r.status == IoStatus::kError || r.status == IoStatus::kClosed) {
      close(DisconnectReason::kConnectionLost);
      return false;
    }
  }
  if (out_offset_ == out_.size()) {
    out_offset_ = 0;
    // Give memory back after a burst: idle connections must stay small.
    if (out_.capacity() > 16384) {
      std::string().swap(out_);
    } else {
      out_.clear();
    }
  }
  update_interest();
  return true;
}

void Connection::update_interest() {
  if (state_ == State::kClosed || fd_ < 0) return;
  uint32_t events = EPOLLRDHUP;
  if (state_ != State::kAuthenticating) events |= EPOLLIN;
  if (pending_output() > 0 || transport_->wants_write()) events |= EPOLLOUT;
  if (events != registered_events_) {
    registered_events_ = events;
    worker_->loop().modify(fd_, events, this);
  }
}

void Connection::disconnect(ReasonCode reason, DisconnectReason why, std::string reason_string) {
  if (state_ == State::kClosed) return;
  if (version_ == mqtt::Version::kV5 && state_ == State::kConnected) {
    mqtt::Disconnect d;
    d.reason = reason;
    if (!reason_string.empty()) d.properties.reason_string = std::move(reason_string);
    send(d);
  }
  flush();
  close(why);
}

void Connection::close(DisconnectReason why) {
  if (state_ == State::kClosed) return;
  transport_->close_gracefully();
  State previous = state_;
  state_ = State::kClosed;
  worker_->on_connection_closed(*this, why, previous);
  if (fd_ >= 0) {
    worker_->loop().remove(fd_);
    ::close(fd_);
    fd_ = -1;
  }
  worker_->schedule_delete(this);
}

}  // namespace counterlink::gateway
