// One simulated device's firmware behaviour, driven with explicit times.
#include "device_behavior.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "counterlink/platform/crypto.h"

namespace counterlink::sim {
namespace {

using nlohmann::json;

constexpr int64_t kNow = 1'767'225'600'000;  // 2026-01-01T00:00:00Z

std::string broadcast(const std::string& id, int64_t expires_at_ms = kNow + 60'000) {
  return json{{"v", 1},
              {"id", id},
              {"type", "broadcast"},
              {"expires_at_ms", expires_at_ms},
              {"broadcast",
               {{"amount", "128.50"},
                {"channel", "wechat"},
                {"locale", "zh-CN"},
                {"text", "微信收款128.50元"},
                {"order_id", "T20260101-0001"}}}}
      .dump();
}

std::string print_job(const std::string& id, const std::string& data, int part = 0, int parts = 0) {
  json print = {{"copies", 1}, {"encoding", "escpos"}, {"data", data}};
  if (parts > 0) {
    print["part"] = part;
    print["parts"] = parts;
  }
  return json{
      {"v", 1}, {"id", id}, {"type", "print"}, {"expires_at_ms", kNow + 600'000}, {"print", print}}
      .dump();
}

// The messages of `fx` as "channel:payload-json" for compact assertions.
std::vector<std::pair<std::string, json>> sent(const Effects& fx) {
  std::vector<std::pair<std::string, json>> out;
  for (const auto& m : fx.messages)
    out.emplace_back(to_string(m.channel), json::parse(m.payload));
  return out;
}

json ack(const std::string& id) {
  return {{"v", 1}, {"id", id}, {"status", "received"}};
}
json result(const std::string& id, const std::string& r) {
  return {{"v", 1}, {"id", id}, {"result", r}};
}
json failed(const std::string& id, const std::string& code) {
  return {{"v", 1}, {"id", id}, {"result", "failed"}, {"code", code}};
}

TEST(SpeakerBehavior, AcknowledgesThenPlaysAndLogsTheText) {
  DeviceBehavior speaker("dv_spk", DeviceKind::kSpeaker, {});
  Effects fx;
  speaker.on_command(broadcast("cm_1"), kNow, fx);
  EXPECT_EQ(sent(fx), (std::vector<std::pair<std::string, json>>{
                          {"acks", ack("cm_1")}, {"results", result("cm_1", "played")}}));
  EXPECT_EQ(fx.counters.played, 1u);
  ASSERT_EQ(fx.logs.size(), 1u);
  EXPECT_NE(fx.logs[0].find("sim.play device=dv_spk command=cm_1"), std::string::npos);
  EXPECT_NE(fx.logs[0].find("text=\"微信收款128.50元\""), std::string::npos);
}

TEST(SpeakerBehavior, RepeatGetsTheSameAckAndResultWithoutPlayingAgain) {
  DeviceBehavior speaker("dv_spk", DeviceKind::kSpeaker, {});
  Effects first;
  speaker.on_command(broadcast("cm_1"), kNow, first);
  Effects again;
  speaker.on_command(broadcast("cm_1"), kNow + 1000, again);
  EXPECT_EQ(again.counters.played, 0u);
  EXPECT_EQ(again.counters.duplicates, 1u);
  EXPECT_EQ(sent(again), sent(first));
}

TEST(SpeakerBehavior, RemembersOnlyTheLast64CompletedIds) {
  DeviceBehavior speaker("dv_spk", DeviceKind::kSpeaker, {});
  Effects fx;
  for (int i = 0; i < 65; ++i)
    speaker.on_command(broadcast("cm_" + std::to_string(i)), kNow, fx);
  EXPECT_EQ(fx.counters.played, 65u);
  Effects recent;
  speaker.on_command(broadcast("cm_1"), kNow, recent);
  EXPECT_EQ(recent.counters.duplicates, 1u) << "cm_1 is among the last 64";
  Effects old;
  speaker.on_command(broadcast("cm_0"), kNow, old);
  EXPECT_EQ(old.counters.played, 1u) << "cm_0 left the window, so it runs again";
}

TEST(SpeakerBehavior, RefusesACommandThatArrivesAfterItsExpiry) {
  DeviceBehavior speaker("dv_spk", DeviceKind::kSpeaker, {});
  Effects fx;
  speaker.on_command(broadcast("cm_late", kNow - 1), kNow, fx);
  EXPECT_EQ(sent(fx),
            (std::vector<std::pair<std::string, json>>{{"results", failed("cm_late", "expired")}}));
  EXPECT_EQ(fx.counters.played, 0u);
  EXPECT_EQ(fx.counters.expired, 1u);
  // Final: the repeat is answered the same way and still not played.
  Effects again;
  speaker.on_command(broadcast("cm_late", kNow - 1), kNow, again);
  EXPECT_EQ(sent(again), sent(fx));
  EXPECT_EQ(again.counters.played, 0u);
}

TEST(SpeakerBehavior, ACommandThatExpiresWhileQueuedIsNeverPlayedLate) {
  BehaviorOptions options;
  options.play_ms = 800;
  DeviceBehavior speaker("dv_spk", DeviceKind::kSpeaker, options);
  Effects fx;
  speaker.on_command(broadcast("cm_a"), kNow, fx);
  speaker.on_command(broadcast("cm_b", kNow + 500), kNow + 10, fx);
  EXPECT_EQ(fx.counters.played, 0u) << "cm_a is still being announced";
  EXPECT_EQ(speaker.next_deadline(), kNow + 800);
  Effects later;
  speaker.tick(kNow + 800, true, later);
  EXPECT_EQ(later.counters.played, 1u);
  EXPECT_EQ(later.counters.expired, 1u);
  EXPECT_EQ(sent(later),
            (std::vector<std::pair<std::string, json>>{{"results", result("cm_a", "played")},
                                                       {"results", failed("cm_b", "expired")}}));
}

TEST(SpeakerBehavior, AnswersOtherVersionsAndForeignTypes) {
  DeviceBehavior speaker("dv_spk", DeviceKind::kSpeaker, {});
  Effects fx;
  speaker.on_command(R"({"v":2,"id":"cm_v2","type":"broadcast"})", kNow, fx);
  speaker.on_command(print_job("cm_print", "QQ=="), kNow, fx);
  speaker.on_command(R"({"v":1,"id":"cm_bad","type":"broadcast","broadcast":{}})", kNow, fx);
  ASSERT_EQ(fx.messages.size(), 3u);
  EXPECT_EQ(json::parse(fx.messages[0].payload)["code"], "unsupported_version");
  EXPECT_EQ(json::parse(fx.messages[1].payload)["code"], "unsupported_type");
  EXPECT_EQ(json::parse(fx.messages[2].payload)["code"], "invalid_command");
  EXPECT_EQ(fx.counters.failed, 3u);
  EXPECT_EQ(fx.counters.played, 0u);
}

TEST(SpeakerBehavior, BusyIsNotRememberedSoTheResendPlays) {
  BehaviorOptions options;
  options.play_ms = 1000;
  options.max_pending = 1;
  DeviceBehavior speaker("dv_spk", DeviceKind::kSpeaker, options);
  Effects fx;
  speaker.on_command(broadcast("cm_a"), kNow, fx);
  Effects busy;
  speaker.on_command(broadcast("cm_b"), kNow + 1, busy);
  ASSERT_EQ(busy.messages.size(), 1u) << "refused: no ack";
  EXPECT_EQ(json::parse(busy.messages[0].payload)["code"], "busy");
  Effects done;
  speaker.tick(kNow + 1000, true, done);
  Effects resend;
  speaker.on_command(broadcast("cm_b"), kNow + 1001, resend);
  EXPECT_EQ(resend.counters.duplicates, 0u);
  speaker.tick(kNow + 2001, true, resend);
  EXPECT_EQ(resend.counters.played, 1u);
}

TEST(PrinterBehavior, PrintsPartsReassembledInPartOrderAndAcksWhenWhole) {
  const std::string receipt =
      "\x1b@Counterlink receipt\n\x1d"
      "VA";
  const std::string encoded = platform::base64url_encode(receipt);  // unpadded, URL-safe
  const size_t third = encoded.size() / 3;
  const std::string parts[3] = {encoded.substr(0, third), encoded.substr(third, third),
                                encoded.substr(2 * third)};
  DeviceBehavior printer("dv_prn", DeviceKind::kPrinter, {});
  Effects fx;
  printer.on_command(print_job("cm_job", parts[2], 3, 3), kNow, fx);
  printer.on_command(print_job("cm_job", parts[0], 1, 3), kNow, fx);
  EXPECT_TRUE(fx.messages.empty()) << "no ack before every part is here";
  printer.on_command(print_job("cm_job", parts[1], 2, 3), kNow, fx);
  EXPECT_EQ(sent(fx), (std::vector<std::pair<std::string, json>>{
                          {"acks", ack("cm_job")}, {"results", result("cm_job", "printed")}}));
  ASSERT_EQ(fx.receipts.size(), 1u);
  EXPECT_EQ(fx.receipts[0].escpos, receipt);
  EXPECT_EQ(fx.counters.printed, 1u);
}

TEST(PrinterBehavior, PaperOutFailureIsNotRememberedSoTheResendPrintsAfterRefill) {
  BehaviorOptions options;
  options.paper_out_every = 2;
  options.paper_refill_ms = 3000;
  DeviceBehavior printer("dv_prn", DeviceKind::kPrinter, options);
  Effects first;
  printer.on_command(print_job("cm_1", "QQ=="), kNow, first);
  EXPECT_EQ(first.counters.printed, 1u);

  Effects out;
  printer.on_command(print_job("cm_2", "QQ=="), kNow + 10, out);
  EXPECT_EQ(sent(out), (std::vector<std::pair<std::string, json>>{
                           {"acks", ack("cm_2")},
                           {"events", json::parse(printer_status_payload("paper_out"))},
                           {"results", failed("cm_2", "paper_out")}}));
  EXPECT_TRUE(printer.paper_out());

  Effects while_out;
  printer.on_command(print_job("cm_2", "QQ=="), kNow + 20, while_out);
  printer.on_command(print_job("cm_3", "QQ=="), kNow + 30, while_out);
  EXPECT_EQ(sent(while_out),
            (std::vector<std::pair<std::string, json>>{{"results", failed("cm_2", "paper_out")},
                                                       {"results", failed("cm_3", "paper_out")}}));
  EXPECT_EQ(while_out.counters.duplicates, 0u) << "paper_out is retryable: not remembered";

  EXPECT_EQ(printer.next_deadline(), kNow + 10 + 3000);
  Effects refill;
  printer.tick(kNow + 3010, true, refill);
  EXPECT_EQ(sent(refill), (std::vector<std::pair<std::string, json>>{
                              {"events", json::parse(printer_status_payload("ready"))}}));

  Effects resend;
  printer.on_command(print_job("cm_2", "QQ=="), kNow + 3020, resend);
  EXPECT_EQ(sent(resend), (std::vector<std::pair<std::string, json>>{
                              {"acks", ack("cm_2")}, {"results", result("cm_2", "printed")}}));
}

TEST(PrinterBehavior, RefusesDataThatIsNotBase64) {
  DeviceBehavior printer("dv_prn", DeviceKind::kPrinter, {});
  Effects fx;
  printer.on_command(print_job("cm_x", "***"), kNow, fx);
  ASSERT_EQ(fx.messages.size(), 1u);
  EXPECT_EQ(json::parse(fx.messages[0].payload)["code"], "invalid_command");
}

TEST(ScanBoxBehavior, ShowsAScanResult) {
  DeviceBehavior box("dv_scn", DeviceKind::kScanBox, {});
  Effects fx;
  box.on_command(json{{"v", 1},
                      {"id", "cm_s"},
                      {"type", "scan_result"},
                      {"scan_result",
                       {{"scan_id", "s-1"},
                        {"outcome", "unknown"},
                        {"display", "请核对订单"},
                        {"voice", "结果未知"}}}}
                     .dump(),
                 kNow, fx);
  EXPECT_EQ(sent(fx), (std::vector<std::pair<std::string, json>>{
                          {"acks", ack("cm_s")}, {"results", result("cm_s", "shown")}}));
  ASSERT_EQ(fx.logs.size(), 1u);
  EXPECT_NE(fx.logs[0].find("outcome=unknown"), std::string::npos);
}

TEST(ScanBoxBehavior, ScansAtItsRateOnlyWhileConnected) {
  BehaviorOptions options;
  options.scan_rate_per_min = 600;  // one every 100 ms on average
  options.scan_id_prefix = "s-run-1";
  DeviceBehavior box("dv_scn", DeviceKind::kScanBox, options);
  Effects fx;
  int64_t now = kNow;
  box.tick(now, true, fx);  // schedules the first scan
  for (int i = 0; i < 200; ++i) {
    now = std::max(now, box.next_deadline());
    box.tick(now, true, fx);
  }
  EXPECT_EQ(fx.counters.scans, 200u);
  EXPECT_GT(now - kNow, 10'000) << "200 scans at 10/s take about 20 s";
  EXPECT_LT(now - kNow, 40'000);
  const json scan = json::parse(fx.messages.back().payload);
  EXPECT_EQ(scan["type"], "scan");
  EXPECT_EQ(scan["scan_id"], "s-run-1-000200");
  const std::string code = scan["code"];
  EXPECT_EQ(code.size(), 18u);
  EXPECT_EQ(code.substr(0, 2), "13");
  EXPECT_EQ(code.find_first_not_of("0123456789"), std::string::npos);

  Effects offline;
  now = box.next_deadline();
  box.tick(now, false, offline);
  EXPECT_EQ(offline.counters.scans, 0u);
}

}  // namespace
}  // namespace counterlink::sim
