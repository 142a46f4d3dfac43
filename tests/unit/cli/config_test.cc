// Tests of the `counterlink serve` configuration loader: layering of defaults,
// file, environment and --set overrides; validation messages; to_yaml().
#include "cli/config.h"

#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#ifndef COUNTERLINK_SOURCE_DIR
#error "COUNTERLINK_SOURCE_DIR must name the repository root (for config/*.yaml)"
#endif

namespace counterlink::cli {
namespace {

namespace fs = std::filesystem;
using gateway::AclAction;
using gateway::AclEffect;
using gateway::ListenerKind;
using gateway::QueueOverflow;

using Strings = std::vector<std::string>;

::testing::AssertionResult Contains(const std::string& haystack, const std::string& needle) {
  if (haystack.find(needle) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "expected to find\n  " << needle << "\nin\n  " << haystack;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

// The error message of `load`, or "<no error>" when it succeeds.
std::string error_of(const std::function<void()>& load) {
  try {
    load();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "<no error>";
}

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "cl-config-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }

  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  std::string write(const std::string& name, const std::string& content) {
    const fs::path path = dir_ / name;
    std::ofstream(path) << content;
    return path.string();
  }

  // Placeholder PEM files: the loader checks they exist and are readable.
  void make_tls_files() {
    cert_ = write("cert.pem", "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n");
    key_ = write("key.pem", "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n");
    ca_ = write("ca.pem", "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n");
  }

  AppConfig load(const std::string& yaml, const Strings& env = {}, const Strings& overrides = {}) {
    return load_config(write("counterlink.yaml", yaml), env, overrides);
  }

  std::string load_error(const std::string& yaml, const Strings& env = {},
                         const Strings& overrides = {}) {
    return error_of([&] { load(yaml, env, overrides); });
  }

  std::string set_error(const Strings& overrides) {
    return error_of([&] { load_config("", {}, overrides); });
  }

  // A YAML listener list with one TLS listener using the temp files.
  std::string tls_listener_yaml(const std::string& tls_extra = "") {
    return "gateway:\n"
           "  listeners:\n"
           "    - name: tls\n"
           "      kind: tls\n"
           "      port: 8883\n"
           "      tls:\n"
           "        cert_file: " +
           cert_ + "\n        key_file: " + key_ + "\n" + tls_extra;
  }

  fs::path dir_;
  std::string cert_, key_, ca_;
};

// ---------------------------------------------------------------------------
// Defaults and layering.

TEST_F(ConfigTest, LoadsBuiltInDefaultsWithoutFile) {
  const AppConfig config = load_config("", {}, {});

  AppConfig expected;
  gateway::ListenerConfig tcp;
  tcp.name = "tcp";
  gateway::ListenerConfig ws;
  ws.name = "ws";
  ws.kind = ListenerKind::kWebSocket;
  ws.port = 8083;
  expected.gateway.listeners = {tcp, ws};
  EXPECT_EQ(to_yaml(config), to_yaml(expected));

  ASSERT_EQ(config.gateway.listeners.size(), 2u);
  EXPECT_EQ(config.gateway.listeners[0].kind, ListenerKind::kTcp);
  EXPECT_EQ(config.gateway.listeners[0].bind, "0.0.0.0");
  EXPECT_EQ(config.gateway.listeners[0].port, 1883);
  EXPECT_EQ(config.gateway.listeners[1].kind, ListenerKind::kWebSocket);
  EXPECT_EQ(config.gateway.listeners[1].port, 8083);
  EXPECT_EQ(config.gateway.listeners[1].ws_path, "/mqtt");
  EXPECT_EQ(config.data_dir, "./data");
  EXPECT_EQ(config.log.level, "info");
  EXPECT_FALSE(config.gateway.allow_anonymous);
}

TEST_F(ConfigTest, EmptyFileMeansDefaults) {
  EXPECT_EQ(to_yaml(load("")), to_yaml(load_config("", {}, {})));
  EXPECT_EQ(to_yaml(load("# only a comment\n")), to_yaml(load_config("", {}, {})));
}

TEST_F(ConfigTest, FileOverridesDefaultsAndKeepsTheRest) {
  const AppConfig config = load(
      "data_dir: /var/lib/counterlink\n"
      "log: {level: debug, format: json}\n"
      "gateway:\n"
      "  max_connections: 5000\n"
      "  queue_overflow: drop_newest\n"
      "  queue_qos0: true\n"
      "  maximum_qos: 1\n"
      "  acl_default: deny\n");
  EXPECT_EQ(config.data_dir, "/var/lib/counterlink");
  EXPECT_EQ(config.log.level, "debug");
  EXPECT_EQ(config.log.format, "json");
  EXPECT_EQ(config.gateway.max_connections, 5000u);
  EXPECT_EQ(config.gateway.queue_overflow, QueueOverflow::kDropNewest);
  EXPECT_TRUE(config.gateway.queue_qos0);
  EXPECT_EQ(config.gateway.maximum_qos, 1);
  EXPECT_EQ(config.gateway.acl_default, AclEffect::kDeny);
  EXPECT_EQ(config.gateway.max_packet_size, 1024u * 1024u);  // untouched default
  EXPECT_EQ(config.gateway.listeners.size(), 2u);            // default listeners kept
}

TEST_F(ConfigTest, FileListenersReplaceTheDefaultList) {
  const AppConfig config = load(
      "gateway:\n"
      "  listeners:\n"
      "    - {name: local, bind: 127.0.0.1, port: 11883}\n");
  ASSERT_EQ(config.gateway.listeners.size(), 1u);
  EXPECT_EQ(config.gateway.listeners[0].name, "local");
  EXPECT_EQ(config.gateway.listeners[0].kind, ListenerKind::kTcp);
  EXPECT_EQ(config.gateway.listeners[0].bind, "127.0.0.1");
  EXPECT_EQ(config.gateway.listeners[0].port, 11883);
}

TEST_F(ConfigTest, ListenerWithoutNameIsNamedAfterItsKind) {
  const AppConfig config = load("gateway:\n  listeners:\n    - {kind: ws, port: 9001}\n");
  ASSERT_EQ(config.gateway.listeners.size(), 1u);
  EXPECT_EQ(config.gateway.listeners[0].name, "ws");
  EXPECT_EQ(config.gateway.listeners[0].ws_path, "/mqtt");
}

TEST_F(ConfigTest, EnvironmentOverridesScalarsParsedByType) {
  const AppConfig config = load_config(
      "",
      {"PATH=/usr/bin", "COUNTERLINK_GATEWAY__MAX_CONNECTIONS=42",
       "COUNTERLINK_GATEWAY__QUEUE_QOS0=true", "COUNTERLINK_GATEWAY__RETAIN_AVAILABLE=false",
       "COUNTERLINK_GATEWAY__QUEUE_OVERFLOW=drop_newest", "COUNTERLINK_LOG__LEVEL=debug",
       "COUNTERLINK_DATA_DIR=/srv/data"},
      {});
  EXPECT_EQ(config.gateway.max_connections, 42u);
  EXPECT_TRUE(config.gateway.queue_qos0);
  EXPECT_FALSE(config.gateway.retain_available);
  EXPECT_EQ(config.gateway.queue_overflow, QueueOverflow::kDropNewest);
  EXPECT_EQ(config.log.level, "debug");
  EXPECT_EQ(config.data_dir, "/srv/data");
}

TEST_F(ConfigTest, EnvironmentIndexesIntoDefaultListenerList) {
  const AppConfig config = load_config("", {"COUNTERLINK_GATEWAY__LISTENERS__0__PORT=2883"}, {});
  ASSERT_EQ(config.gateway.listeners.size(), 2u);
  EXPECT_EQ(config.gateway.listeners[0].port, 2883);
  EXPECT_EQ(config.gateway.listeners[0].name, "tcp");
  EXPECT_EQ(config.gateway.listeners[1].port, 8083);
}

TEST_F(ConfigTest, EnvironmentIndexesIntoFileListenerList) {
  const AppConfig config = load("gateway:\n  listeners:\n    - {name: a, port: 1000}\n",
                                {"COUNTERLINK_GATEWAY__LISTENERS__0__BIND=127.0.0.1"});
  ASSERT_EQ(config.gateway.listeners.size(), 1u);
  EXPECT_EQ(config.gateway.listeners[0].bind, "127.0.0.1");
  EXPECT_EQ(config.gateway.listeners[0].port, 1000);
}

TEST_F(ConfigTest, EnvironmentIndexOnePastTheEndAppendsAnElement) {
  const AppConfig config = load_config("",
                                       {"COUNTERLINK_GATEWAY__LISTENERS__2__NAME=local",
                                        "COUNTERLINK_GATEWAY__LISTENERS__2__BIND=127.0.0.1",
                                        "COUNTERLINK_GATEWAY__LISTENERS__2__PORT=9999",
                                        "COUNTERLINK_GATEWAY__USERS__0__USERNAME=alice",
                                        "COUNTERLINK_GATEWAY__USERS__0__PASSWORD=secret"},
                                       {});
  ASSERT_EQ(config.gateway.listeners.size(), 3u);
  EXPECT_EQ(config.gateway.listeners[2].name, "local");
  EXPECT_EQ(config.gateway.listeners[2].port, 9999);
  ASSERT_EQ(config.gateway.users.size(), 1u);
  EXPECT_EQ(config.gateway.users[0].username, "alice");
  EXPECT_EQ(config.gateway.users[0].password, "secret");
}

TEST_F(ConfigTest, EnvironmentIgnoresVariablesThatAreNotSettings) {
  const AppConfig config = load_config("", {"COUNTERLINK_ENV=prod", "HOME=/root", "NOEQUALS"}, {});
  EXPECT_EQ(to_yaml(config), to_yaml(load_config("", {}, {})));
}

TEST_F(ConfigTest, EnvironmentRejectsSingleUnderscoreBetweenLevels) {
  const std::string error =
      error_of([] { load_config("", {"COUNTERLINK_GATEWAY_MAX_CONNECTIONS=5"}, {}); });
  EXPECT_TRUE(Contains(error, "gateway_max_connections: unknown key"));
  EXPECT_TRUE(Contains(error, "COUNTERLINK_GATEWAY__MAX_CONNECTIONS"));
}

TEST_F(ConfigTest, EnvironmentRejectsEmptyLevel) {
  const std::string error =
      error_of([] { load_config("", {"COUNTERLINK_GATEWAY____WORKERS=5"}, {}); });
  EXPECT_TRUE(Contains(error, "COUNTERLINK_GATEWAY____WORKERS: empty key level"));
}

TEST_F(ConfigTest, OverridesIndexIntoDefaultListenerList) {
  const AppConfig config = load_config("", {}, {"gateway.listeners.1.port=0"});
  ASSERT_EQ(config.gateway.listeners.size(), 2u);
  EXPECT_EQ(config.gateway.listeners[1].port, 0);
  EXPECT_EQ(config.gateway.listeners[1].kind, ListenerKind::kWebSocket);
}

TEST_F(ConfigTest, SetBeatsEnvironmentWhichBeatsFile) {
  const std::string yaml = "gateway:\n  max_connections: 10\n  workers: 1\n  max_inflight: 7\n";
  const Strings env = {"COUNTERLINK_GATEWAY__MAX_CONNECTIONS=20", "COUNTERLINK_GATEWAY__WORKERS=2"};
  const AppConfig config = load(yaml, env, {"gateway.max_connections=30"});
  EXPECT_EQ(config.gateway.max_connections, 30u);  // --set
  EXPECT_EQ(config.gateway.workers, 2u);           // environment
  EXPECT_EQ(config.gateway.max_inflight, 7);       // file
}

TEST_F(ConfigTest, OverrideWithoutEqualsSignIsRejected) {
  EXPECT_TRUE(
      Contains(set_error({"gateway.workers"}), "--set gateway.workers: expected key=value"));
}

TEST_F(ConfigTest, OverrideIndexBeyondTheEndIsRejected) {
  const std::string error = set_error({"gateway.listeners.3.port=1"});
  EXPECT_TRUE(Contains(error, "gateway.listeners.3: index out of range"));
  EXPECT_TRUE(Contains(error, "use 2 to append"));
}

TEST_F(ConfigTest, OverrideNonIndexIntoListIsRejected) {
  EXPECT_TRUE(Contains(set_error({"gateway.listeners.tcp.port=1"}),
                       "gateway.listeners.tcp: gateway.listeners is a list"));
}

TEST_F(ConfigTest, OverrideInsideScalarIsRejected) {
  EXPECT_TRUE(Contains(load_error("gateway: {workers: 1}\n", {}, {"gateway.workers.x=1"}),
                       "gateway.workers.x: cannot set a key inside gateway.workers"));
  EXPECT_TRUE(Contains(set_error({"gateway.workers.x=1"}),
                       "gateway.workers: expected an integer 0..256, got a map"));
}

// ---------------------------------------------------------------------------
// The file itself.

TEST_F(ConfigTest, MissingFileIsNamedInTheError) {
  const std::string missing = (dir_ / "nope.yaml").string();
  const std::string error = error_of([&] { load_config(missing, {}, {}); });
  EXPECT_TRUE(Contains(error, missing));
  EXPECT_TRUE(Contains(error, "No such file or directory"));
}

TEST_F(ConfigTest, UnparsableFileReportsLineAndColumn) {
  const std::string error = load_error("gateway:\n  workers: [1, 2\n  x: y\n");
  EXPECT_TRUE(Contains(error, (dir_ / "counterlink.yaml").string()));
  EXPECT_TRUE(Contains(error, "line "));
  EXPECT_TRUE(Contains(error, "column "));
}

TEST_F(ConfigTest, RejectsTopLevelThatIsNotAMap) {
  EXPECT_TRUE(Contains(load_error("- a\n- b\n"), "expected a map of settings at the top level"));
}

TEST_F(ConfigTest, RejectsDuplicateKey) {
  EXPECT_TRUE(Contains(load_error("gateway:\n  workers: 1\n  workers: 2\n"),
                       "gateway.workers: duplicate key"));
}

// ---------------------------------------------------------------------------
// Unknown keys and types.

TEST_F(ConfigTest, RejectsUnknownKeyAndSuggestsClosest) {
  const std::string error = load_error("gateway:\n  max_conections: 5\n");
  EXPECT_TRUE(
      Contains(error, "gateway.max_conections: unknown key (did you mean max_connections?)"));
  EXPECT_TRUE(Contains(error, "counterlink.yaml:2:3"));  // where the key is
}

TEST_F(ConfigTest, SuggestsKeyForTransposedLetters) {
  EXPECT_TRUE(
      Contains(load_error("log: {levle: info}\n"), "log.levle: unknown key (did you mean level?)"));
}

TEST_F(ConfigTest, RejectsUnknownKeyAndListsAllowedKeysWhenNothingIsClose) {
  EXPECT_TRUE(Contains(load_error("log: {colour: red}\n"),
                       "log.colour: unknown key (allowed: level, format)"));
}

TEST_F(ConfigTest, RejectsUnknownNestedKeyInListElement) {
  EXPECT_TRUE(Contains(load_error("gateway:\n  listeners:\n    - {name: a, prot: 1}\n"),
                       "gateway.listeners.0.prot: unknown key (did you mean port?)"));
}

TEST_F(ConfigTest, RejectsUnknownKeyFromEnvironmentNamingTheVariable) {
  const std::string error =
      error_of([] { load_config("", {"COUNTERLINK_GATEWAY__MAX_CONECTIONS=5"}, {}); });
  EXPECT_TRUE(
      Contains(error, "gateway.max_conections: unknown key (did you mean max_connections?)"));
  EXPECT_TRUE(Contains(error, "environment variable COUNTERLINK_GATEWAY__MAX_CONECTIONS"));
}

TEST_F(ConfigTest, RejectsUnknownTopLevelKeyFromSet) {
  const std::string error = set_error({"gatway.workers=1"});
  EXPECT_TRUE(Contains(error, "gatway: unknown key (did you mean gateway?)"));
  EXPECT_TRUE(Contains(error, "--set gatway.workers"));
}

TEST_F(ConfigTest, RejectsNonIntegerWithAllowedRange) {
  EXPECT_TRUE(Contains(set_error({"gateway.listeners.0.port=abc"}),
                       "gateway.listeners.0.port: expected an integer 0..65535, got 'abc'"));
  EXPECT_TRUE(Contains(set_error({"gateway.workers=1.5"}),
                       "gateway.workers: expected an integer 0..256, got '1.5'"));
  EXPECT_TRUE(Contains(load_error("gateway: {workers: [1]}\n"),
                       "gateway.workers: expected an integer 0..256, got a list"));
}

TEST_F(ConfigTest, RejectsNonBoolean) {
  EXPECT_TRUE(Contains(set_error({"gateway.queue_qos0=yes"}),
                       "gateway.queue_qos0: expected true or false, got 'yes'"));
}

TEST_F(ConfigTest, RejectsScalarWhereMapIsExpected) {
  EXPECT_TRUE(Contains(load_error("log: debug\n"), "log: expected a map with keys level, format"));
}

TEST_F(ConfigTest, RejectsScalarWhereListIsExpected) {
  EXPECT_TRUE(
      Contains(load_error("gateway: {users: alice}\n"), "gateway.users: expected a list, got"));
}

TEST_F(ConfigTest, RejectsEmptyDataDir) {
  EXPECT_TRUE(Contains(set_error({"data_dir="}), "data_dir: must not be empty"));
}

TEST_F(ConfigTest, ReportsEveryErrorAtOnce) {
  const std::string error = load_error("gateway:\n  workers: 999\n  maximum_qos: 7\n");
  EXPECT_TRUE(Contains(error, "gateway.workers: must be between 0 and 256 (got 999)"));
  EXPECT_TRUE(Contains(error, "gateway.maximum_qos: must be between 0 and 2 (got 7)"));
}

// ---------------------------------------------------------------------------
// Ranges and enumerations.

struct BadValueCase {
  const char* name;
  const char* setting;   // --set argument
  const char* expected;  // substring of the error
};

class RejectsBadValue : public ConfigTest, public ::testing::WithParamInterface<BadValueCase> {};

TEST_P(RejectsBadValue, NamingKeyAndAllowedValues) {
  EXPECT_TRUE(Contains(set_error({GetParam().setting}), GetParam().expected));
}

INSTANTIATE_TEST_SUITE_P(
    Ranges, RejectsBadValue,
    ::testing::Values(
        BadValueCase{"MaxPacketSizeBelow16", "gateway.max_packet_size=15",
                     "gateway.max_packet_size: must be between 16 and 268435455 (got 15)"},
        BadValueCase{"MaxPacketSizeAboveMqttLimit", "gateway.max_packet_size=268435456",
                     "gateway.max_packet_size: must be between 16 and 268435455 (got 268435456)"},
        BadValueCase{"ReceiveMaximumZero", "gateway.receive_maximum=0",
                     "gateway.receive_maximum: must be between 1 and 65535 (got 0)"},
        BadValueCase{"ReceiveMaximumAbove65535", "gateway.receive_maximum=65536",
                     "gateway.receive_maximum: must be between 1 and 65535 (got 65536)"},
        BadValueCase{"MaxInflightZero", "gateway.max_inflight=0",
                     "gateway.max_inflight: must be between 1 and 65535 (got 0)"},
        BadValueCase{"MaxQueuedMessagesAboveTenMillion", "gateway.max_queued_messages=10000001",
                     "gateway.max_queued_messages: must be between 0 and 10000000 (got 10000001)"},
        BadValueCase{"WorkersAbove256", "gateway.workers=257",
                     "gateway.workers: must be between 0 and 256 (got 257)"},
        BadValueCase{"WorkersNegative", "gateway.workers=-1",
                     "gateway.workers: must be between 0 and 256 (got -1)"},
        BadValueCase{"MaximumQosAbove2", "gateway.maximum_qos=3",
                     "gateway.maximum_qos: must be between 0 and 2 (got 3)"},
        BadValueCase{"PortAbove65535", "gateway.listeners.0.port=65536",
                     "gateway.listeners.0.port: must be between 0 and 65535 (got 65536)"},
        BadValueCase{"MaxConnectionsZero", "gateway.max_connections=0",
                     "gateway.max_connections: must be between 1 and 4294967295 (got 0)"},
        BadValueCase{"ConnectTimeoutBelow100", "gateway.connect_timeout_ms=99",
                     "gateway.connect_timeout_ms: must be between 100 and 600000 (got 99)"},
        BadValueCase{"ConnectTimeoutAbove600000", "gateway.connect_timeout_ms=600001",
                     "gateway.connect_timeout_ms: must be between 100 and 600000 (got 600001)"},
        BadValueCase{"MaxClientIdLengthBelow23", "gateway.max_client_id_length=22",
                     "gateway.max_client_id_length: must be between 23 and 65535 (got 22)"},
        BadValueCase{"TopicAliasMaximumAbove65535", "gateway.topic_alias_maximum=70000",
                     "gateway.topic_alias_maximum: must be between 0 and 65535 (got 70000)"},
        BadValueCase{"SessionExpiryBeyond32Bits", "gateway.session_expiry_max=4294967296",
                     "gateway.session_expiry_max: must be between 0 and 4294967295"}),
    [](const auto& info) { return std::string(info.param.name); });

INSTANTIATE_TEST_SUITE_P(
    Enumerations, RejectsBadValue,
    ::testing::Values(
        BadValueCase{"ListenerKind", "gateway.listeners.0.kind=udp",
                     "gateway.listeners.0.kind: expected one of tcp, tls, ws, wss, got 'udp'"},
        BadValueCase{"QueueOverflow", "gateway.queue_overflow=drop_all",
                     "gateway.queue_overflow: expected one of drop_oldest, drop_newest, got "
                     "'drop_all'"},
        BadValueCase{"AclDefault", "gateway.acl_default=maybe",
                     "gateway.acl_default: expected one of allow, deny, got 'maybe'"},
        BadValueCase{"LogLevel", "log.level=verbose",
                     "log.level: expected one of trace, debug, info, warn, error, critical, off, "
                     "got 'verbose'"},
        BadValueCase{"LogFormat", "log.format=xml",
                     "log.format: expected one of text, json, got 'xml'"},
        BadValueCase{"AclEffect", "gateway.acl.0.effect=permit",
                     "gateway.acl.0.effect: expected one of allow, deny, got 'permit'"},
        BadValueCase{"AclAction", "gateway.acl.0.action=read",
                     "gateway.acl.0.action: expected one of publish, subscribe, all, got 'read'"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST_F(ConfigTest, AcceptsRangeBoundaries) {
  const AppConfig low = load_config(
      "", {},
      {"gateway.max_packet_size=16", "gateway.receive_maximum=1", "gateway.max_inflight=1",
       "gateway.max_queued_messages=0", "gateway.workers=0", "gateway.maximum_qos=0",
       "gateway.listeners.0.port=0", "gateway.max_connections=1", "gateway.connect_timeout_ms=100",
       "gateway.max_client_id_length=23"});
  EXPECT_EQ(low.gateway.max_packet_size, 16u);
  EXPECT_EQ(low.gateway.max_client_id_length, 23);
  const AppConfig high =
      load_config("", {},
                  {"gateway.max_packet_size=268435455", "gateway.receive_maximum=65535",
                   "gateway.max_inflight=65535", "gateway.max_queued_messages=10000000",
                   "gateway.workers=256", "gateway.maximum_qos=2", "gateway.listeners.0.port=65535",
                   "gateway.max_connections=4294967295", "gateway.connect_timeout_ms=600000",
                   "gateway.max_client_id_length=65535", "gateway.session_expiry_max=4294967295"});
  EXPECT_EQ(high.gateway.max_packet_size, 268435455u);
  EXPECT_EQ(high.gateway.receive_maximum, 65535);
  EXPECT_EQ(high.gateway.max_connections, 4294967295u);
  EXPECT_EQ(high.gateway.listeners[0].port, 65535);
  EXPECT_EQ(high.gateway.session_expiry_max, 4294967295u);
}

// ---------------------------------------------------------------------------
// Listeners.

TEST_F(ConfigTest, RejectsEmptyListenerList) {
  EXPECT_TRUE(Contains(load_error("gateway: {listeners: []}\n"),
                       "gateway.listeners: at least one listener is required"));
}

TEST_F(ConfigTest, RejectsDuplicateListenerNames) {
  const std::string error =
      load_error("gateway:\n  listeners:\n    - {name: a, port: 1}\n    - {name: a, port: 2}\n");
  EXPECT_TRUE(Contains(error, "gateway.listeners.1.name: duplicate listener name 'a'"));
  EXPECT_TRUE(Contains(error, "also gateway.listeners.0"));
}

TEST_F(ConfigTest, RejectsListenersSharingBindAndPort) {
  const std::string error = set_error({"gateway.listeners.1.port=1883"});
  EXPECT_TRUE(Contains(error, "gateway.listeners.1.port: 0.0.0.0:1883 conflicts with"));
  EXPECT_TRUE(Contains(error, "listener 'tcp' (gateway.listeners.0)"));
}

TEST_F(ConfigTest, RejectsSpecificAddressOverlappingWildcardOnSamePort) {
  EXPECT_TRUE(
      Contains(set_error({"gateway.listeners.1.port=1883", "gateway.listeners.1.bind=127.0.0.1"}),
               "gateway.listeners.1.port: 127.0.0.1:1883 conflicts with 0.0.0.0:1883"));
}

TEST_F(ConfigTest, AllowsSamePortOnDifferentAddressesAndSharedPortZero) {
  const AppConfig config = load(
      "gateway:\n  listeners:\n"
      "    - {name: a, bind: 127.0.0.1, port: 1883}\n"
      "    - {name: b, bind: 127.0.0.2, port: 1883}\n"
      "    - {name: c, bind: '::1', port: 1883}\n"
      "    - {name: d, port: 0}\n"
      "    - {name: e, kind: ws, port: 0}\n");
  EXPECT_EQ(config.gateway.listeners.size(), 5u);
}

TEST_F(ConfigTest, RejectsBindThatIsNotAnAddressLiteral) {
  EXPECT_TRUE(Contains(set_error({"gateway.listeners.0.bind=localhost"}),
                       "gateway.listeners.0.bind: expected an IPv4 or IPv6 address literal"));
}

TEST_F(ConfigTest, RejectsWsPathOnNonWebSocketListener) {
  EXPECT_TRUE(Contains(set_error({"gateway.listeners.0.ws_path=/mqtt"}),
                       "gateway.listeners.0.ws_path: only used by ws and wss listeners"));
}

TEST_F(ConfigTest, RejectsWsPathWithoutLeadingSlash) {
  EXPECT_TRUE(Contains(set_error({"gateway.listeners.1.ws_path=mqtt"}),
                       "gateway.listeners.1.ws_path: must start with '/'"));
}

TEST_F(ConfigTest, RejectsTlsSettingsOnPlainListener) {
  make_tls_files();
  EXPECT_TRUE(Contains(set_error({"gateway.listeners.0.tls.cert_file=" + cert_}),
                       "gateway.listeners.0.tls: only used by tls and wss listeners, but kind is "
                       "tcp"));
}

TEST_F(ConfigTest, TlsListenerRequiresCertAndKeyFiles) {
  const std::string error = set_error({"gateway.listeners.0.kind=tls"});
  EXPECT_TRUE(Contains(error, "gateway.listeners.0.tls.cert_file: required for a tls listener"));
  EXPECT_TRUE(Contains(error, "gateway.listeners.0.tls.key_file: required for a tls listener"));
  EXPECT_TRUE(Contains(error, "openssl req -x509"));
}

TEST_F(ConfigTest, TlsListenerRejectsMissingCertFileAndSuggestsOpenssl) {
  make_tls_files();
  const std::string missing = (dir_ / "missing.pem").string();
  const std::string error =
      set_error({"gateway.listeners.1.kind=wss", "gateway.listeners.1.tls.cert_file=" + missing,
                 "gateway.listeners.1.tls.key_file=" + key_});
  EXPECT_TRUE(Contains(error, "gateway.listeners.1.tls.cert_file: cannot read '" + missing +
                                  "': No such file or directory"));
  EXPECT_TRUE(Contains(error, "openssl req -x509"));
}

TEST_F(ConfigTest, TlsListenerRejectsKeyFileThatIsADirectory) {
  make_tls_files();
  const std::string error =
      load_error(tls_listener_yaml(), {}, {"gateway.listeners.0.tls.key_file=" + dir_.string()});
  EXPECT_TRUE(Contains(error, "gateway.listeners.0.tls.key_file: cannot read '" + dir_.string() +
                                  "': not a regular file"));
}

TEST_F(ConfigTest, TlsListenerRejectsUnreadableKeyFile) {
  if (::geteuid() == 0) GTEST_SKIP() << "root can read any file";
  make_tls_files();
  fs::permissions(key_, fs::perms::none);
  EXPECT_TRUE(
      Contains(load_error(tls_listener_yaml()),
               "gateway.listeners.0.tls.key_file: cannot read '" + key_ + "': Permission denied"));
}

TEST_F(ConfigTest, TlsListenerRejectsMissingCaFile) {
  make_tls_files();
  const std::string missing = (dir_ / "no-ca.pem").string();
  EXPECT_TRUE(Contains(load_error(tls_listener_yaml("        ca_file: " + missing + "\n")),
                       "gateway.listeners.0.tls.ca_file: cannot read '" + missing + "'"));
}

TEST_F(ConfigTest, TlsListenerAcceptsReadableFiles) {
  make_tls_files();
  const AppConfig config = load(tls_listener_yaml("        ca_file: " + ca_ +
                                                  "\n        verify_client: true\n"
                                                  "        require_client: true\n"));
  ASSERT_EQ(config.gateway.listeners.size(), 1u);
  const auto& tls = config.gateway.listeners[0].tls;
  EXPECT_EQ(config.gateway.listeners[0].kind, ListenerKind::kTls);
  EXPECT_EQ(tls.cert_file, cert_);
  EXPECT_EQ(tls.key_file, key_);
  EXPECT_EQ(tls.ca_file, ca_);
  EXPECT_TRUE(tls.verify_client);
  EXPECT_TRUE(tls.require_client);
}

TEST_F(ConfigTest, RequireClientNeedsVerifyClientAndCaFile) {
  make_tls_files();
  const std::string needs = "gateway.listeners.0.tls.require_client: needs verify_client: true";
  EXPECT_TRUE(Contains(load_error(tls_listener_yaml("        require_client: true\n")), needs));
  EXPECT_TRUE(Contains(load_error(tls_listener_yaml("        require_client: true\n"
                                                    "        verify_client: true\n")),
                       needs));
  EXPECT_TRUE(Contains(load_error(tls_listener_yaml("        require_client: true\n"
                                                    "        ca_file: " +
                                                    ca_ + "\n")),
                       needs));
}

TEST_F(ConfigTest, RejectsUnknownTlsKey) {
  make_tls_files();
  EXPECT_TRUE(Contains(load_error(tls_listener_yaml("        cert: x\n")),
                       "gateway.listeners.0.tls.cert: unknown key"));
}

// ---------------------------------------------------------------------------
// Users.

constexpr const char* kSha256OfSecret =
    "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";

TEST_F(ConfigTest, AcceptsUsersWithPasswordOrHash) {
  const AppConfig config =
      load(std::string("gateway:\n  users:\n") + "    - {username: alice, password: secret}\n" +
           "    - {username: bob, password_sha256: " + kSha256OfSecret + "}\n");
  ASSERT_EQ(config.gateway.users.size(), 2u);
  EXPECT_EQ(config.gateway.users[0].password, "secret");
  EXPECT_EQ(config.gateway.users[1].password_sha256, kSha256OfSecret);
}

TEST_F(ConfigTest, RejectsUserWithoutUsername) {
  EXPECT_TRUE(Contains(load_error("gateway:\n  users:\n    - {username: '', password: x}\n"),
                       "gateway.users.0.username: required"));
}

TEST_F(ConfigTest, RejectsDuplicateUsername) {
  EXPECT_TRUE(Contains(load_error("gateway:\n  users:\n"
                                  "    - {username: alice, password: x}\n"
                                  "    - {username: alice, password: y}\n"),
                       "gateway.users.1.username: duplicate user 'alice' (also gateway.users.0)"));
}

TEST_F(ConfigTest, RejectsUserWithBothPasswordForms) {
  EXPECT_TRUE(Contains(
      load_error(std::string("gateway:\n  users:\n") +
                 "    - {username: a, password: x, password_sha256: " + kSha256OfSecret + "}\n"),
      "gateway.users.0: set exactly one of password and password_sha256 (both"));
}

TEST_F(ConfigTest, RejectsUserWithNoPassword) {
  EXPECT_TRUE(Contains(load_error("gateway:\n  users:\n    - {username: a}\n"),
                       "gateway.users.0: set exactly one of password and password_sha256 "
                       "(neither"));
}

TEST_F(ConfigTest, RejectsPasswordHashThatIsNotLowerCaseHexSha256) {
  const std::string upper = "2BB80D537B1DA3E38BD30361AA855686BDE0EACD7162FEF6A25FE97BF527A25B";
  for (const std::string& hash :
       {upper, std::string(kSha256OfSecret).substr(1), std::string(63, 'a') + "g"}) {
    EXPECT_TRUE(Contains(
        set_error({"gateway.users.0.username=a", "gateway.users.0.password_sha256=" + hash}),
        "gateway.users.0.password_sha256: expected 64 lower-case hex characters"))
        << hash;
  }
}

TEST_F(ConfigTest, RejectsRedactedPlaceholderAsPassword) {
  EXPECT_TRUE(
      Contains(set_error({"gateway.users.0.username=a", "gateway.users.0.password=<redacted>"}),
               "gateway.users.0.password: is the placeholder '<redacted>'"));
}

// ---------------------------------------------------------------------------
// ACL rules.

TEST_F(ConfigTest, AcceptsAclRulesWithEachSubjectAndPlaceholders) {
  const AppConfig config = load(
      "gateway:\n"
      "  acl_default: deny\n"
      "  acl:\n"
      "    - {effect: allow, action: publish, username: alice, topic: \"devices/%c/#\"}\n"
      "    - {effect: deny, action: subscribe, anonymous: true, topic: \"#\"}\n"
      "    - {effect: allow, topic: \"users/%u/+/status\"}\n");
  ASSERT_EQ(config.gateway.acl.size(), 3u);
  EXPECT_EQ(config.gateway.acl[0].effect, AclEffect::kAllow);
  EXPECT_EQ(config.gateway.acl[0].action, AclAction::kPublish);
  EXPECT_EQ(config.gateway.acl[0].username, "alice");
  EXPECT_EQ(config.gateway.acl[0].topic, "devices/%c/#");
  EXPECT_EQ(config.gateway.acl[1].effect, AclEffect::kDeny);
  EXPECT_EQ(config.gateway.acl[1].action, AclAction::kSubscribe);
  EXPECT_TRUE(config.gateway.acl[1].anonymous);
  EXPECT_EQ(config.gateway.acl[2].action, AclAction::kAll);
  EXPECT_TRUE(config.gateway.acl[2].username.empty());
  EXPECT_FALSE(config.gateway.acl[2].anonymous);
}

TEST_F(ConfigTest, RejectsAclRuleWithoutTopic) {
  EXPECT_TRUE(Contains(load_error("gateway:\n  acl:\n    - {effect: allow}\n"),
                       "gateway.acl.0.topic: required"));
  EXPECT_TRUE(Contains(load_error("gateway:\n  acl:\n    - {effect: allow, topic: ''}\n"),
                       "gateway.acl.0.topic: required"));
}

TEST_F(ConfigTest, RejectsAclRuleWithInvalidTopicFilter) {
  for (const char* topic : {"a/#/b", "a+/b", "devices/%c#"}) {
    EXPECT_TRUE(
        Contains(load_error(std::string("gateway:\n  acl:\n    - {effect: allow, topic: \"") +
                            topic + "\"}\n"),
                 std::string("gateway.acl.0.topic: '") + topic + "' is not a valid topic filter"))
        << topic;
  }
}

TEST_F(ConfigTest, RejectsAclRuleWithTwoSubjects) {
  EXPECT_TRUE(
      Contains(load_error("gateway:\n  acl:\n"
                          "    - {effect: deny, username: bob, anonymous: true, topic: x}\n"),
               "gateway.acl.0: set at most one subject"));
}

TEST_F(ConfigTest, RejectsAclRuleWithoutEffect) {
  EXPECT_TRUE(Contains(load_error("gateway:\n  acl:\n    - {action: publish, topic: x}\n"),
                       "gateway.acl.0.effect: required: allow or deny"));
}

TEST_F(ConfigTest, RejectsAclRuleWithEmptyUsername) {
  EXPECT_TRUE(Contains(load_error("gateway:\n  acl:\n    - {effect: allow, username: '', "
                                  "topic: x}\n"),
                       "gateway.acl.0.username: must not be empty"));
}

// ---------------------------------------------------------------------------
// to_yaml().

TEST_F(ConfigTest, ToYamlRoundTripsTheEffectiveConfig) {
  make_tls_files();
  const std::string yaml =
      "data_dir: /tmp/x y\n"
      "log: {level: warn, format: json}\n"
      "gateway:\n"
      "  workers: 3\n"
      "  listeners:\n"
      "    - {name: plain, kind: tcp, bind: 127.0.0.1, port: 0}\n"
      "    - {name: web, kind: ws, bind: '::', port: 0, ws_path: /ws}\n"
      "    - name: secure\n"
      "      kind: wss\n"
      "      port: 8884\n"
      "      ws_path: /secure\n"
      "      tls: {cert_file: " +
      cert_ + ", key_file: " + key_ + ", ca_file: " + ca_ +
      ", verify_client: true, require_client: true}\n"
      "  max_connections: 77\n"
      "  max_packet_size: 4096\n"
      "  receive_maximum: 10\n"
      "  max_inflight: 11\n"
      "  max_queued_messages: 12\n"
      "  queue_overflow: drop_newest\n"
      "  queue_qos0: true\n"
      "  topic_alias_maximum: 0\n"
      "  connect_timeout_ms: 500\n"
      "  max_keepalive: 60\n"
      "  session_expiry_max: 1\n"
      "  message_expiry_max: 2\n"
      "  max_client_id_length: 64\n"
      "  maximum_qos: 1\n"
      "  retain_available: false\n"
      "  wildcard_subscriptions: false\n"
      "  shared_subscriptions: false\n"
      "  subscription_identifiers: false\n"
      "  allow_anonymous: true\n"
      "  acl_default: deny\n"
      "  acl:\n"
      "    - {effect: allow, action: publish, username: 'true', topic: \"devices/%c/#\"}\n"
      "    - {effect: deny, action: subscribe, anonymous: true, topic: \"#\"}\n"
      "    - {effect: allow, action: all, topic: \"+/status\"}\n";
  const AppConfig original = load(yaml);
  const std::string printed = to_yaml(original);

  const AppConfig reloaded = load_config(write("printed.yaml", printed), {}, {});
  EXPECT_EQ(to_yaml(reloaded), printed);
  EXPECT_EQ(reloaded.data_dir, "/tmp/x y");
  ASSERT_EQ(reloaded.gateway.listeners.size(), 3u);
  EXPECT_EQ(reloaded.gateway.listeners[1].bind, "::");
  EXPECT_EQ(reloaded.gateway.listeners[2].ws_path, "/secure");
  EXPECT_EQ(reloaded.gateway.listeners[2].tls.ca_file, ca_);
  EXPECT_TRUE(reloaded.gateway.listeners[2].tls.require_client);
  ASSERT_EQ(reloaded.gateway.acl.size(), 3u);
  EXPECT_EQ(reloaded.gateway.acl[0].username, "true");
  EXPECT_EQ(reloaded.gateway.acl[1].topic, "#");
  EXPECT_EQ(reloaded.gateway.acl[2].topic, "+/status");
  EXPECT_EQ(reloaded.gateway.max_keepalive, 60);
}

TEST_F(ConfigTest, ToYamlOfDefaultsRoundTrips) {
  const std::string printed = to_yaml(load_config("", {}, {}));
  EXPECT_EQ(to_yaml(load_config(write("printed.yaml", printed), {}, {})), printed);
}

TEST_F(ConfigTest, ToYamlRedactsPasswordsAndHashes) {
  const AppConfig config =
      load(std::string("gateway:\n  users:\n") + "    - {username: alice, password: hunter2}\n" +
           "    - {username: bob, password_sha256: " + kSha256OfSecret + "}\n");
  const std::string printed = to_yaml(config);
  EXPECT_EQ(printed.find("hunter2"), std::string::npos);
  EXPECT_EQ(printed.find(kSha256OfSecret), std::string::npos);
  EXPECT_TRUE(Contains(printed, "password: <redacted>"));
  EXPECT_TRUE(Contains(printed, "password_sha256: <redacted>"));
  EXPECT_TRUE(Contains(printed, "username: alice"));

  // Printed secrets must not silently become real credentials.
  const std::string error = error_of([&] { load_config(write("p.yaml", printed), {}, {}); });
  EXPECT_TRUE(Contains(error, "gateway.users.0.password: is the placeholder '<redacted>'"));
  EXPECT_TRUE(Contains(error, "gateway.users.1.password_sha256: is the placeholder"));
}

// ---------------------------------------------------------------------------
// The shipped configuration files.

const fs::path kSourceDir = COUNTERLINK_SOURCE_DIR;

TEST_F(ConfigTest, ShippedDevelopmentConfigHoldsTheDefaultsWithAnonymousAccess) {
  const AppConfig config = load_config((kSourceDir / "config/counterlink.yaml").string(), {}, {});
  EXPECT_TRUE(config.gateway.allow_anonymous);
  EXPECT_EQ(to_yaml(config), to_yaml(load_config("", {}, {"gateway.allow_anonymous=true"})));
}

TEST_F(ConfigTest, ShippedDevelopmentConfigMentionsEveryKey) {
  const std::string shipped = read_file(kSourceDir / "config/counterlink.yaml");
  const std::regex key_line(R"(^\s*(?:- )?([a-z_0-9]+):)");
  std::istringstream printed(to_yaml(load_config("", {}, {})));
  std::set<std::string> keys;
  for (std::string line; std::getline(printed, line);) {
    std::smatch match;
    if (std::regex_search(line, match, key_line)) keys.insert(match[1]);
  }
  EXPECT_GT(keys.size(), 25u);
  for (const auto& key : keys) {
    EXPECT_TRUE(std::regex_search(shipped, std::regex("(^|\\n)[ -]*" + key + ":"))) << key;
  }
}

TEST_F(ConfigTest, StoreUrlWithUnknownSchemeIsRefusedWithTheAcceptedForms) {
  const std::string error =
      error_of([] { load_config("", {}, {"store.url=mysql://db/counterlink"}); });
  EXPECT_TRUE(Contains(error, "store.url: expected sqlite:///"));
  EXPECT_TRUE(Contains(error, "postgres://"));
}

TEST_F(ConfigTest, MasterKeyMustBe32BytesOfBase64AndActiveKeyMustExist) {
  const std::string error = error_of([] {
    load_config("", {},
                {"security.master_keys.0.id=k1", "security.master_keys.0.key=short",
                 "security.active_key=k9"});
  });
  EXPECT_TRUE(Contains(error, "security.master_keys.0.key: expected 32 random bytes"));
  EXPECT_TRUE(Contains(error, "openssl rand -base64 32"));
  EXPECT_TRUE(Contains(error, "security.active_key: must name one of"));
  const AppConfig ok =
      load_config("", {},
                  {"security.master_keys.0.id=k1",
                   "security.master_keys.0.key=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="});
  ASSERT_EQ(ok.security.master_keys.size(), 1u);
}

TEST_F(ConfigTest, PrintedConfigRedactsMasterKeysAdminTokenAndDatabasePassword) {
  const AppConfig config =
      load_config("", {},
                  {"security.master_keys.0.id=k1",
                   "security.master_keys.0.key=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
                   "security.bootstrap_admin_token=ak_01M882GVT2BZ2QB19R8YTPZT89.sk_"
                   "abcdefghijklmnopqrstuvwxyz0123456789",
                   "store.url=postgres://app:hunter2@db:5432/cl"});
  const std::string printed = to_yaml(config);
  EXPECT_EQ(printed.find("MDEyMzQ1"), std::string::npos);
  EXPECT_EQ(printed.find("abcdefghijklmnop"), std::string::npos);
  EXPECT_EQ(printed.find("hunter2"), std::string::npos);
  EXPECT_TRUE(Contains(printed, "postgres://app:<redacted>@db:5432/cl"));
}

TEST_F(ConfigTest, ShippedProductionExampleLoadsWithCertificatePathsOverridden) {
  make_tls_files();
  const AppConfig config = load_config(
      (kSourceDir / "config/examples/production.yaml").string(), {},
      {"gateway.listeners.0.tls.cert_file=" + cert_, "gateway.listeners.0.tls.key_file=" + key_,
       "gateway.listeners.0.tls.ca_file=" + ca_, "gateway.listeners.1.tls.cert_file=" + cert_,
       "gateway.listeners.1.tls.key_file=" + key_, "http.tls_cert_file=" + cert_,
       "http.tls_key_file=" + key_});
  EXPECT_FALSE(config.gateway.allow_anonymous);
  EXPECT_TRUE(config.store.url.starts_with("postgres://"));
  ASSERT_EQ(config.security.master_keys.size(), 1u);
  EXPECT_EQ(config.security.active_key, config.security.master_keys[0].id);
  ASSERT_EQ(config.gateway.listeners.size(), 2u);
  EXPECT_EQ(config.gateway.listeners[0].kind, ListenerKind::kTls);
  EXPECT_EQ(config.gateway.listeners[0].port, 8883);
  EXPECT_EQ(config.gateway.listeners[1].kind, ListenerKind::kWebSocketTls);
  EXPECT_FALSE(config.gateway.users.empty());
  for (const auto& user : config.gateway.users) {
    EXPECT_TRUE(user.password.empty()) << user.username;
    EXPECT_EQ(user.password_sha256.size(), 64u) << user.username;
  }
  EXPECT_EQ(config.gateway.acl_default, AclEffect::kDeny);
  EXPECT_GE(config.gateway.acl.size(), 3u);
}

}  // namespace
}  // namespace counterlink::cli
