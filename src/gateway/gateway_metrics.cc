#include "gateway_metrics.h"

namespace counterlink::gateway {
namespace {
obs::Registry& reg() {
  return obs::metrics();
}
}  // namespace

const char* to_string(DropReason reason) {
  switch (reason) {
    case DropReason::kQueueFull:
      return "queue_full";
    case DropReason::kExpired:
      return "expired";
    case DropReason::kTooLarge:
      return "too_large";
    case DropReason::kSlowConsumer:
      return "slow_consumer";
    case DropReason::kSessionEnded:
      return "session_ended";
    case DropReason::kCount:
      break;
  }
  return "unknown";
}

const char* to_string(Limit limit) {
  switch (limit) {
    case Limit::kMaxConnections:
      return "max_connections";
    case Limit::kMaxPacketSize:
      return "max_packet_size";
    case Limit::kReceiveMaximum:
      return "receive_maximum";
    case Limit::kMaxInflight:
      return "max_inflight";
    case Limit::kMaxQueued:
      return "max_queued_messages";
    case Limit::kConnectTimeout:
      return "connect_timeout";
    case Limit::kTopicAliasMaximum:
      return "topic_alias_maximum";
    case Limit::kCount:
      break;
  }
  return "unknown";
}

const char* to_string(DisconnectReason reason) {
  switch (reason) {
    case DisconnectReason::kClientDisconnect:
      return "client_disconnect";
    case DisconnectReason::kConnectionLost:
      return "connection_lost";
    case DisconnectReason::kKeepAliveTimeout:
      return "keepalive_timeout";
    case DisconnectReason::kProtocolViolation:
      return "protocol_violation";
    case DisconnectReason::kTakenOver:
      return "taken_over";
    case DisconnectReason::kServerShutdown:
      return "server_shutdown";
    case DisconnectReason::kAdministrative:
      return "administrative";
    case DisconnectReason::kPacketTooLarge:
      return "packet_too_large";
    case DisconnectReason::kNotAuthorized:
      return "not_authorized";
  }
  return "unknown";
}

GatewayMetrics::GatewayMetrics()
    : connections(reg().gauge("counterlink_mqtt_connections", "Open MQTT network connections")),
      sessions(reg().gauge("counterlink_mqtt_sessions", "MQTT sessions, online and offline")),
      subscriptions(reg().gauge("counterlink_mqtt_subscriptions", "Active subscriptions")),
      retained_messages(reg().gauge("counterlink_mqtt_retained_messages", "Retained messages")),
      connects_accepted(reg().counter("counterlink_mqtt_connects_total",
                                      "CONNECT attempts by result", {{"result", "accepted"}})),
      connects_refused(reg().counter("counterlink_mqtt_connects_total",
                                     "CONNECT attempts by result", {{"result", "refused"}})),
      auth_failures(reg().counter("counterlink_mqtt_auth_failures_total",
                                  "Connections refused by authentication")),
      authz_denied_publish(reg().counter("counterlink_mqtt_authorization_denied_total",
                                         "Publishes and subscriptions refused by authorization",
                                         {{"action", "publish"}})),
      authz_denied_subscribe(reg().counter("counterlink_mqtt_authorization_denied_total",
                                           "Publishes and subscriptions refused by authorization",
                                           {{"action", "subscribe"}})),
      malformed_packets(reg().counter("counterlink_mqtt_bad_packets_total",
                                      "Connections closed for invalid packets",
                                      {{"kind", "malformed"}})),
      protocol_errors(reg().counter("counterlink_mqtt_bad_packets_total",
                                    "Connections closed for invalid packets",
                                    {{"kind", "protocol_error"}})),
      takeovers(reg().counter("counterlink_mqtt_session_takeovers_total",
                              "Connections replaced by a new one with the same client id")),
      wills_published(
          reg().counter("counterlink_mqtt_wills_published_total", "Will messages published")) {
  for (int q = 0; q < 3; ++q) {
    received[q] = &reg().counter("counterlink_mqtt_messages_received_total",
                                 "PUBLISH packets received from clients, by QoS",
                                 {{"qos", std::to_string(q)}});
    sent[q] = &reg().counter("counterlink_mqtt_messages_sent_total",
                             "PUBLISH packets sent to clients, by QoS (retransmissions included)",
                             {{"qos", std::to_string(q)}});
  }
  for (size_t i = 0; i < dropped.size(); ++i) {
    dropped[i] = &reg().counter("counterlink_mqtt_messages_dropped_total",
                                "Messages not delivered to a session, by reason",
                                {{"reason", to_string(static_cast<DropReason>(i))}});
  }
  for (size_t i = 0; i < limits.size(); ++i) {
    limits[i] = &reg().counter("counterlink_mqtt_limit_hits_total",
                               "Times a configured limit was reached, by limit",
                               {{"limit", to_string(static_cast<Limit>(i))}});
  }
  for (size_t i = 0; i < disconnects.size(); ++i) {
    disconnects[i] =
        &reg().counter("counterlink_mqtt_disconnects_total", "Closed client connections, by reason",
                       {{"reason", to_string(static_cast<DisconnectReason>(i))}});
  }
}

}  // namespace counterlink::gateway
