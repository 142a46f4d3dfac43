// MQTT control packets (3.1, 3.1.1 and 5.0) as plain values.
//
// This header is the whole vocabulary of the codec: the packet structs, the
// reason codes and the version-5 properties. It has no I/O and no threads;
// every type here is a value that may be moved between threads freely.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace counterlink::mqtt {

// Protocol level byte of CONNECT.
enum class Version : uint8_t { kV31 = 3, kV311 = 4, kV5 = 5 };

enum class PacketType : uint8_t {
  kConnect = 1,
  kConnack = 2,
  kPublish = 3,
  kPuback = 4,
  kPubrec = 5,
  kPubrel = 6,
  kPubcomp = 7,
  kSubscribe = 8,
  kSuback = 9,
  kUnsubscribe = 10,
  kUnsuback = 11,
  kPingreq = 12,
  kPingresp = 13,
  kDisconnect = 14,
  kAuth = 15,
};

const char* to_string(PacketType type);

// MQTT 5.0 reason codes (section 2.4). For 3.1.1 the encoder maps them onto
// the older CONNACK return codes and SUBACK granted-QoS/0x80 values.
enum class ReasonCode : uint8_t {
  kSuccess = 0x00,  // also "Normal disconnection" and "Granted QoS 0"
  kGrantedQos1 = 0x01,
  kGrantedQos2 = 0x02,
  kDisconnectWithWill = 0x04,
  kNoMatchingSubscribers = 0x10,
  kNoSubscriptionExisted = 0x11,
  kContinueAuthentication = 0x18,
  kReAuthenticate = 0x19,
  kUnspecifiedError = 0x80,
  kMalformedPacket = 0x81,
  kProtocolError = 0x82,
  kImplementationSpecificError = 0x83,
  kUnsupportedProtocolVersion = 0x84,
  kClientIdentifierNotValid = 0x85,
  kBadUserNameOrPassword = 0x86,
  kNotAuthorized = 0x87,
  kServerUnavailable = 0x88,
  kServerBusy = 0x89,
  kBanned = 0x8A,
  kServerShuttingDown = 0x8B,
  kBadAuthenticationMethod = 0x8C,
  kKeepAliveTimeout = 0x8D,
  kSessionTakenOver = 0x8E,
  kTopicFilterInvalid = 0x8F,
  kTopicNameInvalid = 0x90,
  kPacketIdentifierInUse = 0x91,
  kPacketIdentifierNotFound = 0x92,
  kReceiveMaximumExceeded = 0x93,
  kTopicAliasInvalid = 0x94,
  kPacketTooLarge = 0x95,
  kMessageRateTooHigh = 0x96,
  kQuotaExceeded = 0x97,
  kAdministrativeAction = 0x98,
  kPayloadFormatInvalid = 0x99,
  kRetainNotSupported = 0x9A,
  kQosNotSupported = 0x9B,
  kUseAnotherServer = 0x9C,
  kServerMoved = 0x9D,
  kSharedSubscriptionsNotSupported = 0x9E,
  kConnectionRateExceeded = 0x9F,
  kMaximumConnectTime = 0xA0,
  kSubscriptionIdentifiersNotSupported = 0xA1,
  kWildcardSubscriptionsNotSupported = 0xA2,
};

// Human-readable name, e.g. "Protocol Error". Never null.
const char* to_string(ReasonCode code);

struct UserProperty {
  std::string key;
  std::string value;
  bool operator==(const UserProperty&) const = default;
};

// MQTT 5.0 properties (section 2.2.2). Absent properties are nullopt. Binary
// data (correlation data, authentication data) is held in std::string.
// For 3.1/3.1.1 packets the struct is always empty and is never encoded.
struct Properties {
  std::optional<uint8_t> payload_format_indicator;           // 0x01
  std::optional<uint32_t> message_expiry_interval;           // 0x02
  std::optional<std::string> content_type;                   // 0x03
  std::optional<std::string> response_topic;                 // 0x08
  std::optional<std::string> correlation_data;               // 0x09
  std::vector<uint32_t> subscription_identifiers;            // 0x0B (PUBLISH may carry several)
  std::optional<uint32_t> session_expiry_interval;           // 0x11
  std::optional<std::string> assigned_client_identifier;     // 0x12
  std::optional<uint16_t> server_keep_alive;                 // 0x13
  std::optional<std::string> authentication_method;          // 0x15
  std::optional<std::string> authentication_data;            // 0x16
  std::optional<uint8_t> request_problem_information;        // 0x17
  std::optional<uint32_t> will_delay_interval;               // 0x18
  std::optional<uint8_t> request_response_information;       // 0x19
  std::optional<std::string> response_information;           // 0x1A
  std::optional<std::string> server_reference;               // 0x1C
  std::optional<std::string> reason_string;                  // 0x1F
  std::optional<uint16_t> receive_maximum;                   // 0x21
  std::optional<uint16_t> topic_alias_maximum;               // 0x22
  std::optional<uint16_t> topic_alias;                       // 0x23
  std::optional<uint8_t> maximum_qos;                        // 0x24
  std::optional<uint8_t> retain_available;                   // 0x25
  std::vector<UserProperty> user_properties;                 // 0x26
  std::optional<uint32_t> maximum_packet_size;               // 0x27
  std::optional<uint8_t> wildcard_subscription_available;    // 0x28
  std::optional<uint8_t> subscription_identifier_available;  // 0x29
  std::optional<uint8_t> shared_subscription_available;      // 0x2A

  bool empty() const;
  bool operator==(const Properties&) const = default;
};

struct Will {
  std::string topic;
  std::string payload;
  uint8_t qos = 0;
  bool retain = false;
  Properties properties;  // will properties (delay, expiry, content type, ...)
  bool operator==(const Will&) const = default;
};

struct Connect {
  Version version = Version::kV311;
  bool clean_start = true;  // "clean session" in 3.1.1
  uint16_t keep_alive = 0;  // seconds
  std::string client_id;
  std::optional<std::string> username;
  std::optional<std::string> password;  // binary data
  std::optional<Will> will;
  Properties properties;
  bool operator==(const Connect&) const = default;
};

struct Connack {
  bool session_present = false;
  // 5.0 reason code. For 3.1.1 the encoder maps it onto the return codes
  // 0 accepted, 1 unsupported version, 2 identifier rejected, 3 server
  // unavailable, 4 bad user name or password, 5 not authorized.
  ReasonCode reason = ReasonCode::kSuccess;
  Properties properties;
  bool operator==(const Connack&) const = default;
};

struct Publish {
  std::string topic;  // may be empty in 5.0 when a topic alias is set
  std::string payload;
  uint8_t qos = 0;
  bool retain = false;
  bool dup = false;
  uint16_t packet_id = 0;  // 0 for QoS 0
  Properties properties;
  bool operator==(const Publish&) const = default;
};

// PUBACK, PUBREC, PUBREL, PUBCOMP share one shape.
struct Ack {
  PacketType type = PacketType::kPuback;
  uint16_t packet_id = 0;
  ReasonCode reason = ReasonCode::kSuccess;
  Properties properties;
  bool operator==(const Ack&) const = default;
};

struct SubscribeOptions {
  uint8_t max_qos = 0;
  bool no_local = false;             // 5.0 only
  bool retain_as_published = false;  // 5.0 only
  uint8_t retain_handling = 0;       // 5.0 only: 0 send, 1 send if new, 2 never
  bool operator==(const SubscribeOptions&) const = default;
};

struct TopicSubscription {
  std::string filter;
  SubscribeOptions options;
  bool operator==(const TopicSubscription&) const = default;
};

struct Subscribe {
  uint16_t packet_id = 0;
  std::vector<TopicSubscription> subscriptions;  // never empty once decoded
  Properties properties;                         // subscription identifier, user properties
  bool operator==(const Subscribe&) const = default;
};

struct Suback {
  uint16_t packet_id = 0;
  // One per requested filter: kSuccess/kGrantedQos1/kGrantedQos2 or a
  // failure code. For 3.1.1 any failure is encoded as 0x80.
  std::vector<ReasonCode> reasons;
  Properties properties;
  bool operator==(const Suback&) const = default;
};

struct Unsubscribe {
  uint16_t packet_id = 0;
  std::vector<std::string> filters;  // never empty once decoded
  Properties properties;
  bool operator==(const Unsubscribe&) const = default;
};

struct Unsuback {
  uint16_t packet_id = 0;
  std::vector<ReasonCode> reasons;  // 5.0 only; not encoded for 3.1.1
  Properties properties;
  bool operator==(const Unsuback&) const = default;
};

struct Pingreq {
  bool operator==(const Pingreq&) const = default;
};
struct Pingresp {
  bool operator==(const Pingresp&) const = default;
};

struct Disconnect {
  ReasonCode reason = ReasonCode::kSuccess;
  Properties properties;
  bool operator==(const Disconnect&) const = default;
};

struct Auth {
  ReasonCode reason = ReasonCode::kSuccess;
  Properties properties;
  bool operator==(const Auth&) const = default;
};

using Packet = std::variant<Connect, Connack, Publish, Ack, Subscribe, Suback, Unsubscribe,
                            Unsuback, Pingreq, Pingresp, Disconnect, Auth>;

PacketType type_of(const Packet& packet);

}  // namespace counterlink::mqtt
