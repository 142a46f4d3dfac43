// Payment announcements: the amount, channel and locale a merchant's speaker
// announces, and the sentence it says ("微信收款128.50元", "WeChat payment
// received 128.50 yuan"). Issue 4: POST /v1/devices/{id}/broadcasts sends the
// device the structured data plus the text rendered here.
//
// Contract
// - Amount: a decimal string of yuan with fen (0.01 yuan) precision, stored as
//   int64 fen. Accepted: ("0" | [1-9][0-9]*) ["." 1..2 digits], i.e.
//   "128.5", "128.50", "0.01", "1000000". Rejected, each with its own message:
//   empty; whitespace anywhere; a leading '+' or '-' (negatives are never
//   payments); exponents ("1e3"); more than 2 decimals ("1.005", even
//   "1.000" — fen is the unit, extra digits are a client bug, not rounded);
//   a '.' without digits on both sides ("128.", ".5"); leading zeros ("007",
//   "00.5": ambiguous, often an octal or padding bug in the client); any byte
//   that is not an ASCII digit or '.' (full-width "１２８", "1,000", "¥5");
//   zero ("0", "0.00": announcing a payment of nothing makes no sense); more
//   than kMaxFen. Overflow is impossible: more than 8 integer digits is
//   rejected before any arithmetic.
// - Formatting: always two decimals, no grouping ("128.50", "0.01").
// - Channel wire names: wechat, alipay, unionpay, cash, other (exact,
//   lowercase). Locale tags: zh-CN, en (exact spelling).
// - Default sentence per channel × locale (amount as formatted above):
//     zh-CN  微信收款X元 / 支付宝收款X元 / 云闪付收款X元 / 现金收款X元 / 收款X元
//     en     WeChat payment received X yuan / Alipay … / UnionPay … /
//            Cash … / Payment received X yuan
//   (云闪付 is UnionPay's consumer brand, what a Chinese merchant hears.)
// - Custom wording replaces the default: either free text, said verbatim
//   (braces are literal), or a template with {amount} ("128.50") and
//   {channel} (微信/支付宝/云闪付/现金 or WeChat/Alipay/UnionPay/Cash; empty
//   for other), "{{" and "}}" for literal braces. Not both. Either must be
//   valid UTF-8, non-empty, at most kMaxAnnouncementCodePoints code points,
//   and free of control characters (C0 including tab and newline, DEL, C1):
//   the speaker says one line. The rendered text obeys the same limit.
// - Every error is one English sentence for the API caller that says what
//   to send instead. Errors never echo amount, channel or locale input; an
//   unknown placeholder is named (the template is validated first, so the
//   echo is valid, bounded UTF-8).
//
// Pure functions, no I/O; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace counterlink::platform {

// A value, or why there is none. `value` is meaningful only when ok().
template <typename T>
struct Checked {
  T value{};
  std::string error;  // empty on success; otherwise says what to send instead
  bool ok() const { return error.empty(); }
};

// A positive payment amount in fen (1 yuan = 100 fen).
class Amount {
 public:
  // 99,999,999.99 yuan: more than any counter payment, and 8 integer digits
  // keep parsing overflow-free (int64 holds 9.2e18 fen).
  static constexpr int64_t kMaxFen = 9'999'999'999;

  Amount() = default;  // 0 fen; only ever seen in a failed Checked<Amount>
  int64_t fen() const { return fen_; }
  // "128.50": yuan, '.', exactly two fen digits.
  std::string to_string() const;
  friend bool operator==(Amount, Amount) = default;

 private:
  explicit Amount(int64_t fen) : fen_(fen) {}
  friend Checked<Amount> parse_amount(std::string_view text);
  friend Checked<Amount> amount_from_fen(int64_t fen);

  int64_t fen_ = 0;
};

// Parses a decimal yuan string (rules in the contract above).
Checked<Amount> parse_amount(std::string_view text);
// 1..kMaxFen fen, for amounts that are already integers (e.g. from storage).
Checked<Amount> amount_from_fen(int64_t fen);

enum class Channel { kWechat, kAlipay, kUnionpay, kCash, kOther };
// "wechat", "alipay", "unionpay", "cash", "other".
std::string_view channel_name(Channel channel);
// Exact wire name; otherwise an error listing the valid ones.
Checked<Channel> parse_channel(std::string_view name);

enum class Locale { kZhCn, kEn };
// "zh-CN", "en".
std::string_view locale_tag(Locale locale);
// Exact tag; otherwise an error listing the valid ones.
Checked<Locale> parse_locale(std::string_view tag);

// The channel as a listener hears it: 微信, 支付宝, 云闪付, 现金 / WeChat,
// Alipay, UnionPay, Cash; empty for kOther.
std::string_view channel_display_name(Channel channel, Locale locale);

// Longest free text, template, or rendered announcement, in Unicode code
// points: about 40 s of speech, and fits one MQTT message with room to spare.
inline constexpr size_t kMaxAnnouncementCodePoints = 200;

// What the merchant wants said instead of the default sentence. At most one
// member is set; neither means the default.
struct AnnouncementWording {
  std::optional<std::string> free_text;      // said verbatim
  std::optional<std::string> text_template;  // {amount}, {channel}, {{, }}
};

// The sentence the speaker says: the default for channel × locale, or the
// wording's free text or expanded template. Fails on invalid wording (see
// the contract); never fails for the default.
Checked<std::string> render_announcement(Amount amount, Channel channel, Locale locale,
                                         const AnnouncementWording& wording = {});

}  // namespace counterlink::platform
