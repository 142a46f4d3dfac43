// The protocol's pure parts: command parsing, the completed-id window and
// the reassembly of multi-part print jobs.
#include "protocol.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace counterlink::sim {
namespace {

using nlohmann::json;

TEST(ParseCommand, ReadsAWellFormedBroadcast) {
  const auto parsed = parse_command(
      R"({"v":1,"id":"cm_1","type":"broadcast","expires_at_ms":1767225660000,)"
      R"("broadcast":{"amount":"128.50","text":"微信收款128.50元"},"later_field":true})");
  ASSERT_TRUE(parsed.command) << parsed.detail;
  EXPECT_TRUE(parsed.failure.empty());
  EXPECT_EQ(parsed.command->id, "cm_1");
  EXPECT_EQ(parsed.command->type, "broadcast");
  EXPECT_EQ(parsed.command->expires_at_ms, 1767225660000);
  ASSERT_NE(parsed.command->field("text"), nullptr);
  EXPECT_EQ(parsed.command->field("text")->get<std::string>(), "微信收款128.50元");
  EXPECT_EQ(parsed.command->field("missing"), nullptr);
}

TEST(ParseCommand, FieldsFallBackToTheTopLevelWhenTheTypeObjectLacksThem) {
  const auto parsed = parse_command(
      R"({"v":1,"id":"cm_2","type":"print","part":2,"parts":3,"print":{"data":"QQ=="}})");
  ASSERT_TRUE(parsed.command);
  EXPECT_EQ(parsed.command->field("data")->get<std::string>(), "QQ==");
  EXPECT_EQ(parsed.command->field("part")->get<int>(), 2);
}

TEST(ParseCommand, AnswersAnotherVersionWithUnsupportedVersionForItsId) {
  const auto parsed = parse_command(R"({"v":2,"id":"cm_3","type":"broadcast"})");
  EXPECT_FALSE(parsed.command);
  EXPECT_EQ(parsed.id, "cm_3");
  EXPECT_EQ(parsed.failure, "unsupported_version");
}

TEST(ParseCommand, PayloadsWithoutAnIdCannotBeAnswered) {
  for (const char* payload : {"not json", "[1,2]", R"({"v":1,"type":"broadcast"})",
                              R"({"v":1,"id":42,"type":"broadcast"})"}) {
    const auto parsed = parse_command(payload);
    EXPECT_FALSE(parsed.command) << payload;
    EXPECT_TRUE(parsed.id.empty()) << payload;
    EXPECT_EQ(parsed.failure, "invalid_command") << payload;
  }
}

TEST(ParseCommand, RefusesMissingTypeAndNonIntegerExpiry) {
  EXPECT_EQ(parse_command(R"({"v":1,"id":"a"})").failure, "invalid_command");
  EXPECT_EQ(parse_command(R"({"v":1,"id":"a","type":"broadcast","expires_at_ms":"soon"})").failure,
            "invalid_command");
  EXPECT_EQ(parse_command(R"({"id":"a","type":"broadcast"})").failure, "invalid_command");
}

TEST(Payloads, MatchTheDocumentedShapes) {
  EXPECT_EQ(json::parse(ack_payload("cm_1")),
            json::parse(R"({"v":1,"id":"cm_1","status":"received"})"));
  EXPECT_EQ(json::parse(result_payload("cm_1", "played")),
            json::parse(R"({"v":1,"id":"cm_1","result":"played"})"));
  EXPECT_EQ(json::parse(failed_payload("cm_1", "paper_out")),
            json::parse(R"({"v":1,"id":"cm_1","result":"failed","code":"paper_out"})"));
  EXPECT_EQ(json::parse(printer_status_payload("ready")),
            json::parse(R"({"v":1,"type":"printer_status","status":"ready"})"));
  EXPECT_EQ(json::parse(scan_payload("s-1", "134567890123456789", "12.00")),
            json::parse(R"({"v":1,"type":"scan","scan_id":"s-1","code":"134567890123456789",)"
                        R"("amount":"12.00"})"));
}

TEST(Retryable, CoversExactlyTheFailuresThePlatformSendsAgain) {
  for (const char* c : {"busy", "paper_out", "cover_open", "overheated"})
    EXPECT_TRUE(is_retryable(c)) << c;
  for (const char* c :
       {"expired", "invalid_command", "unsupported_type", "unsupported_version", "device_error"})
    EXPECT_FALSE(is_retryable(c)) << c;
}

TEST(CompletedWindow, KeepsTheLast64IdsAndForgetsTheOldest) {
  CompletedWindow window(64);
  for (int i = 0; i < 65; ++i)
    window.remember({"cm_" + std::to_string(i), true, "r" + std::to_string(i)});
  EXPECT_EQ(window.size(), 64u);
  EXPECT_EQ(window.find("cm_0"), nullptr);
  ASSERT_NE(window.find("cm_1"), nullptr);
  EXPECT_EQ(window.find("cm_64")->result, "r64");
}

TEST(PartAssembler, ReassemblesOutOfOrderPartsInPartOrder) {
  PartAssembler parts;
  EXPECT_EQ(parts.add("cm_p", 3, 3, "C"), PartAssembler::Status::kIncomplete);
  EXPECT_EQ(parts.add("cm_p", 1, 3, "A"), PartAssembler::Status::kIncomplete);
  EXPECT_EQ(parts.add("cm_p", 1, 3, "A"), PartAssembler::Status::kRepeat);
  EXPECT_EQ(parts.add("cm_p", 2, 3, "B"), PartAssembler::Status::kComplete);
  EXPECT_EQ(parts.take("cm_p"), (std::vector<std::string>{"A", "B", "C"}));
  EXPECT_FALSE(parts.has("cm_p"));
}

TEST(PartAssembler, RefusesPartsThatDoNotFit) {
  PartAssembler parts;
  EXPECT_EQ(parts.add("cm_q", 0, 2, "x"), PartAssembler::Status::kInvalid);
  EXPECT_EQ(parts.add("cm_q", 3, 2, "x"), PartAssembler::Status::kInvalid);
  EXPECT_EQ(parts.add("cm_q", 1, 2, "x"), PartAssembler::Status::kIncomplete);
  EXPECT_EQ(parts.add("cm_q", 2, 5, "y"), PartAssembler::Status::kInvalid) << "parts changed";
}

TEST(PartAssembler, EvictsTheOldestIncompleteJobBeyondItsLimit) {
  PartAssembler parts(2);
  parts.add("a", 1, 2, "x");
  parts.add("b", 1, 2, "x");
  parts.add("c", 1, 2, "x");
  EXPECT_FALSE(parts.has("a"));
  EXPECT_TRUE(parts.has("b"));
  EXPECT_TRUE(parts.has("c"));
}

TEST(DecodePrintData, AcceptsJobsSplitInTheBase64OrPerPart) {
  // "hello world" split inside the base64 text.
  EXPECT_EQ(decode_print_data({"aGVsbG8g", "d29y", "bGQ="}), "hello world");
  EXPECT_EQ(decode_print_data({"aGVsbG8gd2", "9ybGQ="}), "hello world");
  // The bytes split and each part encoded with its own padding.
  EXPECT_EQ(decode_print_data({"aGU=", "bGxv", "IHdvcmxk"}), "hello world");
  EXPECT_FALSE(decode_print_data({"not base64!"}));
}

}  // namespace
}  // namespace counterlink::sim
