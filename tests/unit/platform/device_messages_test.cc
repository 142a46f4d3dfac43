// The device protocol's command and report messages (docs/device-protocol.md).
#include "commands/device_messages.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "counterlink/platform/crypto.h"
#include "counterlink/platform/receipt.h"

namespace counterlink::platform {
namespace {

using nlohmann::json;

store::Command broadcast() {
  store::Command c;
  c.id = "cm_01JQ8Z3K7QW2XJ5N6M4R9T0ABC";
  c.type = "broadcast";
  c.expires_at_ms = 1767225660000;
  c.payload_json =
      R"({"amount":"128.50","channel":"wechat","locale":"zh-CN","text":"微信收款128.50元","order_id":"T1"})";
  return c;
}

TEST(EncodeCommand, BroadcastIsOneMessageInTheDocumentedShape) {
  std::string error;
  auto out = encode_command(broadcast(), 65536, error);
  ASSERT_EQ(out.size(), 1u) << error;
  json j = json::parse(out[0]);
  EXPECT_EQ(j["v"], 1);
  EXPECT_EQ(j["id"], "cm_01JQ8Z3K7QW2XJ5N6M4R9T0ABC");
  EXPECT_EQ(j["type"], "broadcast");
  EXPECT_EQ(j["expires_at_ms"], 1767225660000);
  EXPECT_EQ(j["broadcast"]["text"], "微信收款128.50元");
  EXPECT_EQ(j["broadcast"]["amount"], "128.50");
}

TEST(EncodeCommand, TooLargeForTheDeviceIsAnError) {
  std::string error;
  EXPECT_TRUE(encode_command(broadcast(), 50, error).empty());
  EXPECT_NE(error.find("maximum payload"), std::string::npos);
}

TEST(EncodeCommand, LargePrintJobIsSplitIntoOrderedPartsThatReassemble) {
  std::string markup;
  for (int i = 0; i < 300; ++i)
    markup += "<B>Line " + std::to_string(i) + "</B> 小计 12.00\n";
  auto rendered = render_escpos(markup, PaperWidth::k58, 1);
  ASSERT_TRUE(rendered.ok());
  store::Command c;
  c.id = "cm_01JQ8Z3K7QW2XJ5N6M4R9T0ABD";
  c.type = "print";
  json payload;
  payload["copies"] = 2;
  payload["encoding"] = "escpos";
  payload["data"] = base64_encode(rendered.bytes);
  c.payload_json = payload.dump();
  std::string error;
  auto parts = encode_command(c, 2048, error);
  ASSERT_GT(parts.size(), 3u) << error;
  std::string joined;
  for (size_t i = 0; i < parts.size(); ++i) {
    EXPECT_LE(parts[i].size(), 2048u);
    json j = json::parse(parts[i]);
    EXPECT_EQ(j["id"], c.id);
    EXPECT_EQ(j["print"]["part"], i + 1);
    EXPECT_EQ(j["print"]["parts"], parts.size());
    EXPECT_EQ(j["print"]["copies"], 2);
    auto chunk = base64url_decode(j["print"]["data"].get<std::string>());
    ASSERT_TRUE(chunk);
    joined += *chunk;
  }
  EXPECT_EQ(joined, rendered.bytes);
  // Small enough: one message, no part numbers.
  auto whole = encode_command(c, 1 << 20, error);
  ASSERT_EQ(whole.size(), 1u);
  EXPECT_FALSE(json::parse(whole[0])["print"].contains("part"));
}

TEST(ParseReport, AcksResultsAndEvents) {
  std::string error;
  auto ack = parse_report("acks", R"({"v":1,"id":"cm_A","status":"received"})", error);
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->kind, DeviceReport::Kind::kAck);
  EXPECT_EQ(ack->id, "cm_A");

  auto played = parse_report("results", R"({"v":1,"id":"cm_A","result":"played","x":1})", error);
  ASSERT_TRUE(played);
  EXPECT_EQ(played->result, "played");

  auto failed =
      parse_report("results", R"({"v":1,"id":"cm_A","result":"failed","code":"paper_out"})", error);
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed->code, "paper_out");
  EXPECT_EQ(classify_failure(failed->code), FailureClass::kPrinterProblem);

  auto odd =
      parse_report("results", R"({"v":1,"id":"cm_A","result":"failed","code":"Bad Code!"})", error);
  ASSERT_TRUE(odd);
  EXPECT_EQ(odd->code, "device_error");

  auto status =
      parse_report("events", R"({"v":1,"type":"printer_status","status":"paper_out"})", error);
  ASSERT_TRUE(status);
  EXPECT_EQ(status->type, "printer_status");
  EXPECT_EQ(status->status, "paper_out");

  auto v2 = parse_report("results", R"({"v":2,"id":"cm_A"})", error);
  ASSERT_TRUE(v2);
  EXPECT_TRUE(v2->unsupported_version);
}

TEST(ParseReport, MalformedReportsAreRefusedWithAReason) {
  for (auto [channel, payload] : std::vector<std::pair<std::string, std::string>>{
           {"acks", "not json"},
           {"acks", "[1]"},
           {"acks", R"({"id":"cm_A","status":"received"})"},
           {"acks", R"({"v":1,"id":"dv_A","status":"received"})"},
           {"acks", R"({"v":1,"id":"cm_A","status":"done"})"},
           {"results", R"({"v":1,"id":"cm_A","result":"exploded"})"},
           {"events", R"({"v":1,"type":"printer_status","status":"on fire"})"},
           {"events", R"({"v":1})"},
           {"other", R"({"v":1})"}}) {
    std::string error;
    EXPECT_FALSE(parse_report(channel, payload, error)) << channel << " " << payload;
    EXPECT_FALSE(error.empty());
  }
}

TEST(ClassifyFailure, EveryDocumentedCode) {
  EXPECT_EQ(classify_failure("expired"), FailureClass::kExpired);
  EXPECT_EQ(classify_failure("cover_open"), FailureClass::kPrinterProblem);
  EXPECT_EQ(classify_failure("overheated"), FailureClass::kPrinterProblem);
  EXPECT_EQ(classify_failure("busy"), FailureClass::kBusy);
  for (auto code : {"invalid_command", "unsupported_type", "unsupported_version", "device_error"}) {
    EXPECT_EQ(classify_failure(code), FailureClass::kFinal) << code;
  }
}

}  // namespace
}  // namespace counterlink::platform
