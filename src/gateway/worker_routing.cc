// The publish path: inbound PUBLISH and acks, routing through the topic tree,
// per-session flow control, queues and retained messages.
#include <algorithm>

#include <spdlog/spdlog.h>

#include "counterlink/mqtt/topic.h"

#include "broker.h"

namespace counterlink::gateway {

using mqtt::PacketType;
using mqtt::ReasonCode;
using mqtt::Version;

namespace {

bool is_expired(const Message& m, int64_t now_ms) {
  return m.expires_at_ms != 0 && m.expires_at_ms <= now_ms;
}

// Index of the in-flight entry with `packet_id`, or -1. Acks nearly always
// arrive in order, so the front is checked first.
long find_inflight(RingQueue<Outbound>& inflight, uint16_t packet_id) {
  if (inflight.empty()) return -1;
  if (inflight.front().packet_id == packet_id) return 0;
  for (size_t i = 1; i < inflight.size(); ++i) {
    if (inflight[i].packet_id == packet_id) return static_cast<long>(i);
  }
  return -1;
}

}  // namespace

// --- inbound PUBLISH -----------------------------------------------------------

void Worker::on_publish(Connection& conn, mqtt::Publish& publish) {
  const GatewayConfig& cfg = config();
  Session& session = *conn.session_;
  const bool v5 = conn.version_ == Version::kV5;

  if (!publish.properties.subscription_identifiers.empty()) {
    conn.protocol_error(
        mqtt::DecodeError{ReasonCode::kProtocolError,
                          "a client PUBLISH must not carry a Subscription Identifier",
                          {}});  // MQTT-3.3.4-6
    return;
  }
  if (v5 && publish.properties.topic_alias) {
    uint16_t alias = *publish.properties.topic_alias;
    if (alias == 0 || alias > conn.topic_alias_max_) {
      metrics().limit(Limit::kTopicAliasMaximum);
      conn.disconnect(ReasonCode::kTopicAliasInvalid, DisconnectReason::kProtocolViolation,
                      "topic alias " + std::to_string(alias) + " is outside 1.." +
                          std::to_string(conn.topic_alias_max_));
      return;
    }
    if (conn.topic_aliases_.size() < alias) conn.topic_aliases_.resize(alias);
    if (!publish.topic.empty()) {
      conn.topic_aliases_[alias - 1] = publish.topic;
    } else if (conn.topic_aliases_[alias - 1].empty()) {
      conn.protocol_error(
          mqtt::DecodeError{ReasonCode::kProtocolError,
                            "topic alias " + std::to_string(alias) + " used before it was set",
                            {}});
      return;
    } else {
      publish.topic = conn.topic_aliases_[alias - 1];
    }
  }
  if (topic_levels(publish.topic) > kMaxTopicLevels) {
    metrics().protocol_errors.inc();
    conn.disconnect(ReasonCode::kTopicNameInvalid, DisconnectReason::kProtocolViolation,
                    "topic has more than " + std::to_string(kMaxTopicLevels) + " levels");
    return;
  }
  if (publish.qos > cfg.maximum_qos) {
    conn.disconnect(ReasonCode::kQosNotSupported, DisconnectReason::kProtocolViolation,
                    "QoS " + std::to_string(publish.qos) + " is above the server maximum");
    return;
  }
  if (publish.retain && !cfg.retain_available) {
    conn.disconnect(ReasonCode::kRetainNotSupported, DisconnectReason::kProtocolViolation,
                    "retained messages are not supported");
    return;
  }
  const bool duplicate_qos2 =
      publish.qos == 2 && std::find(session.inbound_qos2.begin(), session.inbound_qos2.end(),
                                    publish.packet_id) != session.inbound_qos2.end();
  if (publish.qos == 2 && !duplicate_qos2 && session.inbound_qos2.size() >= cfg.receive_maximum) {
    metrics().limit(Limit::kReceiveMaximum);
    conn.disconnect(
        ReasonCode::kReceiveMaximumExceeded, DisconnectReason::kProtocolViolation,
        "more than " + std::to_string(cfg.receive_maximum) + " QoS 2 messages unacknowledged");
    return;
  }
  auto acknowledge = [&](ReasonCode reason) {
    if (publish.qos == 1) {
      conn.send(mqtt::Ack{PacketType::kPuback, publish.packet_id, reason, {}});
    } else if (publish.qos == 2) {
      if (reason == ReasonCode::kSuccess || reason == ReasonCode::kNoMatchingSubscribers) {
        if (!duplicate_qos2) session.inbound_qos2.push_back(publish.packet_id);
      }
      conn.send(mqtt::Ack{PacketType::kPubrec, publish.packet_id, reason, {}});
    }
  };
  if (duplicate_qos2) {
    // A retransmission of a QoS 2 message already received: exactly once
    // means it is acknowledged again but not routed again.
    acknowledge(ReasonCode::kSuccess);
    return;
  }
  if (v5 && publish.properties.payload_format_indicator.value_or(0) == 1 &&
      !mqtt::is_valid_mqtt_utf8(publish.payload)) {
    acknowledge(ReasonCode::kPayloadFormatInvalid);
    return;
  }
  if (!gateway_.authorizer().authorize(conn.info_, Action::kPublish, publish.topic)) {
    metrics().authz_denied_publish.inc();
    spdlog::debug("client.publish_denied client_id={} topic={}", conn.info_.client_id,
                  publish.topic);
    // 3.1.1 has no way to say no on PUBACK: acknowledge and discard.
    acknowledge(v5 ? ReasonCode::kNotAuthorized : ReasonCode::kSuccess);
    return;
  }
  metrics().received[publish.qos]->inc();

  auto message = std::make_shared<Message>();
  message->topic = std::move(publish.topic);
  message->payload = std::move(publish.payload);
  message->qos = publish.qos;
  message->retain = publish.retain;
  message->origin_session = session.serial;
  uint32_t expiry = publish.properties.message_expiry_interval.value_or(0);
  if (cfg.message_expiry_max != 0 && (expiry == 0 || expiry > cfg.message_expiry_max)) {
    expiry = cfg.message_expiry_max;
  }
  if (expiry != 0) message->expires_at_ms = loop_.now_ms() + int64_t{expiry} * 1000;
  if (v5) message->properties = take_forwarded_properties(publish.properties);
  MessagePtr shared = std::move(message);
  if (auto& events = gateway_.hooks().events) events->on_publish(conn.info_, shared);
  if (shared->retain) gateway_.retained().put(shared);
  route(shared);
  acknowledge(ReasonCode::kSuccess);
}

// --- routing -------------------------------------------------------------------

void Worker::route(const MessagePtr& message) {
  route_local(message);
  for (unsigned w = 0; w < gateway_.worker_count(); ++w) {
    if (w == index_) continue;
    if (gateway_.worker(w).subscription_count().load(std::memory_order_relaxed) > 0) {
      route_outbox_[w].push_back(message);
    }
  }
}

void Worker::route_remote(std::vector<MessagePtr>& batch) {
  for (const MessagePtr& m : batch)
    route_local(m);
}

void Worker::route_local(const MessagePtr& message) {
  if (tree_.size() == 0) return;
  matches_.clear();
  // Copies owed through shared subscriptions whose chosen member is local.
  // They are never merged with the session's other matches: a client gets one
  // copy per matching shared subscription besides its non-shared one (MQTT
  // 5.0 section 4.8.2), whichever worker the group lives on.
  shared_matches_.clear();
  bool need_merge = false;
  const Message& m = *message;
  tree_.match(
      m.topic,
      [&](const Subscriber& sub) {
        if (sub.options.no_local && sub.session->serial == m.origin_session) return;
        need_merge |= sub.session->subscriptions.size() > 1;
        matches_.push_back(Match{sub.session, std::min(m.qos, sub.options.max_qos),
                                 sub.options.retain_as_published, sub.subscription_id});
      },
      [&](SharedGroup& group) {
        const SharedMember* picked = group.pick();
        if (picked == nullptr) return;
        const SharedMember& member = *picked;
        if (member.worker == index_) {
          Session* s = find_session(member.client_id);
          if (s == nullptr || s->serial != member.session_serial) return;
          shared_matches_.push_back(Match{s, std::min(m.qos, member.options.max_qos),
                                          member.options.retain_as_published,
                                          member.subscription_id});
        } else {
          directed_outbox_[member.worker].push_back(DirectedDelivery{member.client_id,
                                                                     member.session_serial,
                                                                     message,
                                                                     member.options,
                                                                     member.subscription_id,
                                                                     {}});
        }
      });
  std::vector<uint32_t> ids;
  for (const Match& copy : shared_matches_) {
    ids.clear();
    if (copy.subscription_id) ids.push_back(copy.subscription_id);
    deliver_to_session(*copy.session, message, copy.qos, copy.retain_as_published && m.retain,
                       ids.empty() ? nullptr : &ids);
  }
  if (matches_.empty()) return;
  if (need_merge) {
    // One copy per session when several of its subscriptions match: the
    // highest QoS, and every subscription identifier (MQTT-3.3.4-3/4/5).
    std::sort(matches_.begin(), matches_.end(),
              [](const Match& a, const Match& b) { return a.session < b.session; });
  }
  for (size_t i = 0; i < matches_.size();) {
    Match first = matches_[i];
    size_t j = i + 1;
    ids.clear();
    if (first.subscription_id) ids.push_back(first.subscription_id);
    if (need_merge) {
      for (; j < matches_.size() && matches_[j].session == first.session; ++j) {
        first.qos = std::max(first.qos, matches_[j].qos);
        first.retain_as_published |= matches_[j].retain_as_published;
        if (matches_[j].subscription_id) ids.push_back(matches_[j].subscription_id);
      }
    }
    deliver_to_session(*first.session, message, first.qos, first.retain_as_published && m.retain,
                       ids.empty() ? nullptr : &ids);
    i = j;
  }
}

void Worker::deliver_directed(DirectedDelivery& d) {
  Session* s = find_session(d.client_id);
  if (s == nullptr || (d.session_serial != 0 && s->serial != d.session_serial)) {
    if (d.done) d.done(DeliverStatus::kNoSession);
    return;
  }
  std::vector<uint32_t> ids;
  if (d.subscription_id) ids.push_back(d.subscription_id);
  DeliverStatus status = deliver_to_session(
      *s, d.message, std::min(d.message->qos, d.options.max_qos),
      d.options.retain_as_published && d.message->retain, ids.empty() ? nullptr : &ids);
  if (d.done) d.done(status);
}

DeliverStatus Worker::deliver_to_session(Session& session, const MessagePtr& message, uint8_t qos,
                                         bool retain,
                                         const std::vector<uint32_t>* subscription_ids) {
  Outbound out;
  out.message = message;
  out.qos = qos;
  out.retain = retain;
  if (subscription_ids) out.subscription_ids = *subscription_ids;
  if (is_expired(*message, loop_.now_ms())) {
    drop(session, out, DropReason::kExpired);
    return DeliverStatus::kQueued;
  }
  if (session.connection == nullptr) {
    if (qos == 0 && !config().queue_qos0) return DeliverStatus::kOffline;
    return enqueue(session, std::move(out)) ? DeliverStatus::kQueued : DeliverStatus::kQueueFull;
  }
  if (qos == 0) {
    return send_publish(session, out, false) ? DeliverStatus::kSent : DeliverStatus::kTooLarge;
  }
  if (session.pending.empty() && session.inflight.size() < session.send_window) {
    out.packet_id = next_packet_id(session);
    if (!send_publish(session, out, false)) return DeliverStatus::kTooLarge;
    session.inflight.push_back(std::move(out));
    return DeliverStatus::kSent;
  }
  metrics().limit(Limit::kMaxInflight);
  return enqueue(session, std::move(out)) ? DeliverStatus::kSent : DeliverStatus::kQueueFull;
}

bool Worker::enqueue(Session& session, Outbound out) {
  const GatewayConfig& cfg = config();
  if (session.pending.size() >= cfg.max_queued_messages) {
    metrics().limit(Limit::kMaxQueued);
    if (cfg.queue_overflow == QueueOverflow::kDropNewest || cfg.max_queued_messages == 0) {
      drop(session, out, DropReason::kQueueFull);
      return false;
    }
    drop(session, session.pending.front(), DropReason::kQueueFull);
    session.pending.pop_front();
  }
  session.pending.push_back(std::move(out));
  return true;
}

void Worker::drop(Session& session, const Outbound& out, DropReason reason) {
  metrics().drop(reason);
  if (out.message->tag != 0) {
    if (auto& events = gateway_.hooks().events) {
      events->on_dropped(session.client_id, out.message->tag);
    }
  }
}

uint16_t Worker::next_packet_id(Session& session) {
  // Identifiers are handed out in sequence and in-flight entries stay in send
  // order, so the next one in sequence is free whenever the window (at most
  // 65535) is not full.
  uint16_t id = static_cast<uint16_t>(session.last_packet_id + 1);
  if (id == 0) id = 1;
  session.last_packet_id = id;
  return id;
}

bool Worker::send_publish(Session& session, Outbound& out, bool dup) {
  Connection& conn = *session.connection;
  const Message& m = *out.message;
  const bool v5 = conn.version_ == Version::kV5;
  const int64_t now = loop_.now_ms();
  if (out.qos == 0 && conn.pending_output() > slow_consumer_bytes_) {
    drop(session, out, DropReason::kSlowConsumer);
    return false;
  }
  mqtt::PublishRef ref;
  ref.topic = m.topic;
  ref.payload = m.payload;
  ref.qos = out.qos;
  ref.retain = out.retain;
  ref.dup = dup;
  ref.packet_id = out.packet_id;

  std::string& buffer = conn.output();
  const bool simple =
      !v5 || (out.subscription_ids.empty() && m.expires_at_ms == 0 && m.properties == nullptr);
  if (simple && !dup) {
    // The common case: the same bytes for every subscriber of this variant,
    // encoded once per message and patched with each session's packet id.
    EncodedVariant& variant = encode_cache_.get(out.message, v5, out.qos, out.retain);
    if (!variant.valid) {
      variant.bytes.clear();
      mqtt::encode(ref, conn.version_, variant.bytes, &variant.packet_id_offset);
      variant.valid = true;
    }
    if (session.client_max_packet_size != 0 &&
        variant.bytes.size() > session.client_max_packet_size) {
      drop(session, out, DropReason::kTooLarge);
      return false;
    }
    size_t base = buffer.size();
    buffer.append(variant.bytes);
    if (out.qos > 0) {
      buffer[base + variant.packet_id_offset] = static_cast<char>(out.packet_id >> 8);
      buffer[base + variant.packet_id_offset + 1] = static_cast<char>(out.packet_id & 0xFF);
    }
  } else {
    mqtt::Properties props;
    if (v5) {
      if (m.properties) {
        props.payload_format_indicator = m.properties->payload_format_indicator;
        props.content_type = m.properties->content_type;
        props.response_topic = m.properties->response_topic;
        props.correlation_data = m.properties->correlation_data;
        props.user_properties = m.properties->user_properties;
      }
      props.subscription_identifiers = out.subscription_ids;
      if (m.expires_at_ms != 0) {
        // The remaining lifetime, rounded up so it never reads 0 while alive.
        props.message_expiry_interval =
            static_cast<uint32_t>(std::max<int64_t>(1, (m.expires_at_ms - now + 999) / 1000));
      }
      ref.properties = &props;
    }
    if (session.client_max_packet_size != 0 &&
        mqtt::encoded_size(ref, conn.version_) > session.client_max_packet_size) {
      drop(session, out, DropReason::kTooLarge);
      return false;
    }
    mqtt::encode(ref, conn.version_, buffer);
  }
  metrics().sent[out.qos]->inc();
  conn.mark_dirty();
  if (out.qos == 0 && m.tag != 0) {
    if (auto& events = gateway_.hooks().events) events->on_delivered(session.client_id, m.tag);
  }
  return true;
}

void Worker::fill_window(Session& session) {
  const int64_t now = loop_.now_ms();
  while (session.connection && !session.pending.empty() &&
         session.inflight.size() < session.send_window) {
    Outbound out = std::move(session.pending.front());
    session.pending.pop_front();
    if (is_expired(*out.message, now)) {
      drop(session, out, DropReason::kExpired);
      continue;
    }
    if (out.qos == 0) {
      send_publish(session, out, false);
      continue;
    }
    out.packet_id = next_packet_id(session);
    if (send_publish(session, out, false)) session.inflight.push_back(std::move(out));
  }
}

void Worker::resume_session(Session& session) {
  // Unacknowledged messages go again, in order, with DUP set; QoS 2 messages
  // already acknowledged with PUBREC continue with PUBREL (MQTT-4.4.0-1).
  for (size_t i = 0; i < session.inflight.size();) {
    Outbound& out = session.inflight[i];
    if (out.pubrec_received) {
      session.connection->send(
          mqtt::Ack{PacketType::kPubrel, out.packet_id, ReasonCode::kSuccess, {}});
    } else if (!send_publish(session, out, true)) {
      // Too large for this connection's Maximum Packet Size (counted as
      // dropped): it will never be acknowledged, so it must leave the window.
      session.inflight.erase(i);
      continue;
    }
    ++i;
  }
  fill_window(session);
}

// --- acknowledgements ------------------------------------------------------------

void Worker::ack_not_in_flight(Connection& conn, const mqtt::Ack& ack) {
  conn.protocol_error(mqtt::DecodeError{ReasonCode::kProtocolError,
                                        std::string(mqtt::to_string(ack.type)) + " for packet id " +
                                            std::to_string(ack.packet_id) +
                                            " which is not in flight",
                                        {}});
}

void Worker::complete(Session& session, size_t index) {
  const uint64_t tag = session.inflight[index].message->tag;
  if (index == 0) {
    session.inflight.pop_front();
  } else {
    session.inflight.erase(index);
  }
  if (tag != 0) {
    if (auto& events = gateway_.hooks().events) events->on_delivered(session.client_id, tag);
  }
  fill_window(session);
}

void Worker::on_puback(Connection& conn, const mqtt::Ack& ack) {
  Session& session = *conn.session_;
  long i = find_inflight(session.inflight, ack.packet_id);
  if (i < 0 || session.inflight[i].qos != 1) {
    ack_not_in_flight(conn, ack);
    return;
  }
  complete(session, static_cast<size_t>(i));
}

void Worker::on_pubrec(Connection& conn, const mqtt::Ack& ack) {
  Session& session = *conn.session_;
  long i = find_inflight(session.inflight, ack.packet_id);
  if (i < 0 || session.inflight[i].qos != 2) {
    ack_not_in_flight(conn, ack);
    return;
  }
  if (static_cast<uint8_t>(ack.reason) >= 0x80) {
    // The receiver refused the message: its exchange ends here.
    complete(session, static_cast<size_t>(i));
    return;
  }
  session.inflight[i].pubrec_received = true;
  conn.send(mqtt::Ack{PacketType::kPubrel, ack.packet_id, ReasonCode::kSuccess, {}});
}

void Worker::on_pubrel(Connection& conn, const mqtt::Ack& ack) {
  Session& session = *conn.session_;
  auto it = std::find(session.inbound_qos2.begin(), session.inbound_qos2.end(), ack.packet_id);
  ReasonCode reason = ReasonCode::kSuccess;
  if (it == session.inbound_qos2.end()) {
    // After a reconnect the client may repeat a PUBREL we already completed;
    // the specification answers with PUBCOMP (0x92 in 5.0), not a disconnect.
    reason = ReasonCode::kPacketIdentifierNotFound;
  } else {
    session.inbound_qos2.erase(it);
    if (session.inbound_qos2.empty()) session.inbound_qos2.shrink_to_fit();
  }
  conn.send(mqtt::Ack{PacketType::kPubcomp, ack.packet_id, reason, {}});
}

void Worker::on_pubcomp(Connection& conn, const mqtt::Ack& ack) {
  Session& session = *conn.session_;
  long i = find_inflight(session.inflight, ack.packet_id);
  if (i < 0 || session.inflight[i].qos != 2 || !session.inflight[i].pubrec_received) {
    ack_not_in_flight(conn, ack);
    return;
  }
  complete(session, static_cast<size_t>(i));
}

// --- SUBSCRIBE / UNSUBSCRIBE ---------------------------------------------------------

unsigned Worker::shared_home(std::string_view group, std::string_view filter) const {
  std::string key(group);
  key += '/';
  key += filter;
  return static_cast<unsigned>(std::hash<std::string>{}(key) % gateway_.worker_count());
}

void Worker::apply_subscription(Session& session, const Session::Subscription& sub) {
  bool valid = true;
  auto shared = mqtt::parse_shared_subscription(sub.filter, valid);
  if (shared) {
    SharedMember member{index_, session.client_id, session.serial, sub.options,
                        sub.subscription_id};
    unsigned home = shared_home(shared->group, shared->filter);
    if (home == index_) {
      add_shared_member(std::string(shared->group), std::string(shared->filter), std::move(member));
    } else {
      Worker& target = gateway_.worker(home);
      target.loop().post([&target, group = std::string(shared->group),
                          filter = std::string(shared->filter), member]() mutable {
        target.add_shared_member(std::move(group), std::move(filter), std::move(member));
      });
    }
    return;
  }
  if (!tree_.subscribe(sub.filter, Subscriber{&session, sub.options, sub.subscription_id})) {
    subscription_count_.fetch_add(1, std::memory_order_relaxed);
    metrics().subscriptions.add(1);
  }
}

void Worker::announce_shared_presence(Session& session, bool online) {
  for (const Session::Subscription& sub : session.subscriptions) {
    bool valid = true;
    auto shared = mqtt::parse_shared_subscription(sub.filter, valid);
    if (!shared) continue;
    Worker& home = gateway_.worker(shared_home(shared->group, shared->filter));
    auto apply = [&home, group = std::string(shared->group), filter = std::string(shared->filter),
                  client_id = session.client_id, serial = session.serial, online] {
      home.tree_.set_shared_online(group, filter, client_id, serial, online);
    };
    if (&home == this) {
      apply();
    } else {
      home.loop().post(apply);
    }
  }
}

void Worker::add_shared_member(std::string group, std::string filter, SharedMember member) {
  if (!tree_.add_shared(group, filter, std::move(member))) {
    subscription_count_.fetch_add(1, std::memory_order_relaxed);
    metrics().subscriptions.add(1);
  }
}

void Worker::remove_shared_member(std::string group, std::string filter, std::string client_id,
                                  uint64_t serial) {
  if (tree_.remove_shared(group, filter, client_id, serial)) {
    subscription_count_.fetch_sub(1, std::memory_order_relaxed);
    metrics().subscriptions.sub(1);
  }
}

void Worker::remove_subscription(Session& session, const std::string& filter) {
  auto it = std::find_if(session.subscriptions.begin(), session.subscriptions.end(),
                         [&](const Session::Subscription& s) { return s.filter == filter; });
  if (it == session.subscriptions.end()) return;
  bool valid = true;
  auto shared = mqtt::parse_shared_subscription(filter, valid);
  if (shared) {
    unsigned home = shared_home(shared->group, shared->filter);
    if (home == index_) {
      remove_shared_member(std::string(shared->group), std::string(shared->filter),
                           session.client_id, session.serial);
    } else {
      Worker& target = gateway_.worker(home);
      target.loop().post(
          [&target, group = std::string(shared->group), f = std::string(shared->filter),
           client_id = session.client_id,
           serial = session.serial] { target.remove_shared_member(group, f, client_id, serial); });
    }
  } else if (tree_.unsubscribe(filter, &session)) {
    subscription_count_.fetch_sub(1, std::memory_order_relaxed);
    metrics().subscriptions.sub(1);
  }
  session.subscriptions.erase(it);
  if (session.subscriptions.empty()) session.subscriptions.shrink_to_fit();
}

void Worker::on_subscribe(Connection& conn, mqtt::Subscribe& subscribe) {
  const GatewayConfig& cfg = config();
  Session& session = *conn.session_;
  const bool v5 = conn.version_ == Version::kV5;
  uint32_t subscription_id = 0;
  if (!subscribe.properties.subscription_identifiers.empty()) {
    if (!cfg.subscription_identifiers) {
      conn.disconnect(ReasonCode::kSubscriptionIdentifiersNotSupported,
                      DisconnectReason::kProtocolViolation,
                      "subscription identifiers are not supported");
      return;
    }
    subscription_id = subscribe.properties.subscription_identifiers.front();
  }
  struct RetainedRequest {
    std::string filter;
    mqtt::SubscribeOptions options;
  };
  std::vector<RetainedRequest> retained_requests;
  mqtt::Suback suback;
  suback.packet_id = subscribe.packet_id;
  for (mqtt::TopicSubscription& ts : subscribe.subscriptions) {
    bool valid = true;
    auto shared = mqtt::parse_shared_subscription(ts.filter, valid);
    std::string_view plain = shared ? shared->filter : std::string_view(ts.filter);
    if (!valid || !mqtt::is_valid_topic_filter(plain) || topic_levels(plain) > kMaxTopicLevels) {
      suback.reasons.push_back(ReasonCode::kTopicFilterInvalid);
      continue;
    }
    if (shared && ts.options.no_local) {
      conn.protocol_error(mqtt::DecodeError{
          ReasonCode::kProtocolError, "No Local is not allowed on a shared subscription", {}});
      return;
    }
    if (shared && !cfg.shared_subscriptions) {
      suback.reasons.push_back(ReasonCode::kSharedSubscriptionsNotSupported);
      continue;
    }
    if (!cfg.wildcard_subscriptions && plain.find_first_of("+#") != std::string_view::npos) {
      suback.reasons.push_back(ReasonCode::kWildcardSubscriptionsNotSupported);
      continue;
    }
    if (!gateway_.authorizer().authorize(conn.info_, Action::kSubscribe, plain)) {
      metrics().authz_denied_subscribe.inc();
      spdlog::debug("client.subscribe_denied client_id={} filter={}", conn.info_.client_id,
                    ts.filter);
      suback.reasons.push_back(ReasonCode::kNotAuthorized);
      continue;
    }
    ts.options.max_qos = std::min(ts.options.max_qos, cfg.maximum_qos);
    auto existing =
        std::find_if(session.subscriptions.begin(), session.subscriptions.end(),
                     [&](const Session::Subscription& s) { return s.filter == ts.filter; });
    const bool is_new = existing == session.subscriptions.end();
    Session::Subscription sub{ts.filter, ts.options, subscription_id};
    if (is_new) {
      session.subscriptions.push_back(sub);
    } else {
      *existing = sub;
    }
    apply_subscription(session, sub);
    suback.reasons.push_back(static_cast<ReasonCode>(ts.options.max_qos));
    // Retained messages are not sent to shared subscriptions (MQTT-3.8.4-... 4.8.2).
    const uint8_t rh = ts.options.retain_handling;
    if (!shared && cfg.retain_available && (rh == 0 || (rh == 1 && is_new))) {
      retained_requests.push_back({std::string(plain), ts.options});
    }
  }
  if (!v5) {
    for (auto& r : suback.reasons) {
      if (static_cast<uint8_t>(r) >= 0x80) r = ReasonCode::kUnspecifiedError;
    }
  }
  conn.send(suback);
  for (const RetainedRequest& r : retained_requests) {
    send_retained(session, r.filter, r.options, subscription_id);
  }
}

void Worker::send_retained(Session& session, const std::string& filter,
                           const mqtt::SubscribeOptions& options, uint32_t subscription_id) {
  std::vector<MessagePtr> messages = gateway_.retained().match(filter, loop_.now_ms());
  std::vector<uint32_t> ids;
  if (subscription_id) ids.push_back(subscription_id);
  for (const MessagePtr& m : messages) {
    // Retained messages sent because of a new subscription keep RETAIN=1.
    deliver_to_session(session, m, std::min(m->qos, options.max_qos), true,
                       ids.empty() ? nullptr : &ids);
  }
}

void Worker::on_unsubscribe(Connection& conn, mqtt::Unsubscribe& unsubscribe) {
  Session& session = *conn.session_;
  mqtt::Unsuback unsuback;
  unsuback.packet_id = unsubscribe.packet_id;
  for (const std::string& filter : unsubscribe.filters) {
    auto it = std::find_if(session.subscriptions.begin(), session.subscriptions.end(),
                           [&](const Session::Subscription& s) { return s.filter == filter; });
    if (it == session.subscriptions.end()) {
      unsuback.reasons.push_back(ReasonCode::kNoSubscriptionExisted);
    } else {
      remove_subscription(session, filter);
      unsuback.reasons.push_back(ReasonCode::kSuccess);
    }
  }
  conn.send(unsuback);
}

}  // namespace counterlink::gateway
