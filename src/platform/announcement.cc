#include "counterlink/platform/announcement.h"

#include <array>
#include <utility>

namespace counterlink::platform {
namespace {

// 8 integer digits, no leading zeros: at most 99,999,999 yuan.
constexpr size_t kMaxIntegerDigits = 8;
constexpr size_t kMaxFractionDigits = 2;

bool is_ascii_digit(char c) {
  return c >= '0' && c <= '9';
}

bool is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

template <typename T>
Checked<T> failure(std::string error) {
  Checked<T> result;
  result.error = std::move(error);
  return result;
}

template <typename T>
Checked<T> success(T value) {
  Checked<T> result;
  result.value = std::move(value);
  return result;
}

// Why `text` is not a well-formed amount string, or empty if it is. Checks
// the characters only; value limits come after.
std::string amount_syntax_error(std::string_view text) {
  if (text.empty()) return R"(amount is empty; send yuan as a decimal string such as "128.50")";
  for (char c : text) {
    if (is_ascii_space(c)) return R"(amount must not contain spaces; send it like "128.50")";
  }
  if (text.front() == '+') return R"(amount must not have a '+' sign; send it like "128.50")";
  if (text.front() == '-') return "amount must be positive; negative amounts are not announced";
  for (char c : text) {
    if (is_ascii_digit(c) || c == '.') continue;
    if (static_cast<unsigned char>(c) >= 0x80)
      return "amount must use ASCII digits 0-9 and '.' only (no full-width digits or currency "
             "signs)";
    if (c == 'e' || c == 'E')
      return R"(amount must be a plain decimal, not exponent notation; send "1000", not "1e3")";
    return R"(amount may contain only digits and one '.'; send it like "128.50")";
  }
  return {};
}

}  // namespace

std::string Amount::to_string() const {
  std::string fen = std::to_string(fen_ % 100);
  if (fen.size() == 1) fen.insert(0, 1, '0');
  return std::to_string(fen_ / 100) + "." + fen;
}

Checked<Amount> parse_amount(std::string_view text) {
  if (std::string error = amount_syntax_error(text); !error.empty())
    return failure<Amount>(std::move(error));

  // Only digits and '.' remain.
  const size_t point = text.find('.');
  std::string_view integer = text.substr(0, point);
  std::string_view fraction;
  if (point != std::string_view::npos) {
    fraction = text.substr(point + 1);
    if (fraction.find('.') != std::string_view::npos)
      return failure<Amount>(R"(amount has more than one '.'; send it like "128.50")");
    if (integer.empty() || fraction.empty())
      return failure<Amount>(R"(amount needs digits on both sides of '.'; send "0.50" or "128")");
  }
  if (fraction.size() > kMaxFractionDigits)
    return failure<Amount>(
        "amount has more than 2 decimal places; fen (0.01 yuan) is the smallest unit");
  if (integer.size() > 1 && integer.front() == '0')
    return failure<Amount>(R"(amount must not have leading zeros; send "7.50", not "007.50")");
  if (integer.size() > kMaxIntegerDigits)
    return failure<Amount>("amount is above the maximum of 99999999.99 yuan");

  // At most 8 + 2 digits: no overflow possible.
  int64_t fen = 0;
  for (char c : integer)
    fen = fen * 10 + (c - '0');
  for (size_t i = 0; i < kMaxFractionDigits; ++i)
    fen = fen * 10 + (i < fraction.size() ? fraction[i] - '0' : 0);
  if (fen == 0)
    return failure<Amount>("amount must be greater than 0; a payment of nothing is not announced");
  return success(Amount(fen));
}

Checked<Amount> amount_from_fen(int64_t fen) {
  if (fen <= 0)
    return failure<Amount>("amount must be greater than 0; a payment of nothing is not announced");
  if (fen > Amount::kMaxFen)
    return failure<Amount>("amount is above the maximum of 99999999.99 yuan");
  return success(Amount(fen));
}

namespace {

struct ChannelText {
  Channel channel;
  std::string_view name;     // wire name
  std::string_view zh_name;  // {channel} in zh-CN
  std::string_view en_name;  // {channel} in en
  std::string_view zh_default_prefix;
  std::string_view en_default_prefix;
};

constexpr std::array<ChannelText, 5> kChannels = {{
    {Channel::kWechat, "wechat", "微信", "WeChat", "微信收款", "WeChat payment received "},
    {Channel::kAlipay, "alipay", "支付宝", "Alipay", "支付宝收款", "Alipay payment received "},
    {Channel::kUnionpay, "unionpay", "云闪付", "UnionPay", "云闪付收款",
     "UnionPay payment received "},
    {Channel::kCash, "cash", "现金", "Cash", "现金收款", "Cash payment received "},
    {Channel::kOther, "other", "", "", "收款", "Payment received "},
}};

const ChannelText& channel_text(Channel channel) {
  for (const ChannelText& text : kChannels) {
    if (text.channel == channel) return text;
  }
  return kChannels.back();  // unreachable for a valid enumerator
}

}  // namespace

std::string_view channel_name(Channel channel) {
  return channel_text(channel).name;
}

Checked<Channel> parse_channel(std::string_view name) {
  for (const ChannelText& text : kChannels) {
    if (text.name == name) return success(text.channel);
  }
  return failure<Channel>("unknown channel; use one of wechat, alipay, unionpay, cash, other");
}

std::string_view locale_tag(Locale locale) {
  return locale == Locale::kZhCn ? "zh-CN" : "en";
}

Checked<Locale> parse_locale(std::string_view tag) {
  if (tag == "zh-CN") return success(Locale::kZhCn);
  if (tag == "en") return success(Locale::kEn);
  return failure<Locale>("unknown locale; use zh-CN or en");
}

std::string_view channel_display_name(Channel channel, Locale locale) {
  const ChannelText& text = channel_text(channel);
  return locale == Locale::kZhCn ? text.zh_name : text.en_name;
}

namespace {

// The code points of `text`, or the first reason it cannot be said: not
// valid UTF-8 (overlong forms, surrogates, above U+10FFFF, truncated
// sequences) or a control character (C0 including tab and newline, DEL, C1).
enum class TextProblem { kNone, kInvalidUtf8, kControlCharacter };
struct TextScan {
  TextProblem problem = TextProblem::kNone;
  size_t code_points = 0;
};

TextScan scan_text(std::string_view text) {
  TextScan scan;
  size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    uint32_t code_point = 0;
    size_t length = 0;
    uint32_t min_code_point = 0;
    if (lead < 0x80) {
      code_point = lead;
      length = 1;
    } else if ((lead & 0xE0) == 0xC0) {
      code_point = lead & 0x1F;
      length = 2;
      min_code_point = 0x80;
    } else if ((lead & 0xF0) == 0xE0) {
      code_point = lead & 0x0F;
      length = 3;
      min_code_point = 0x800;
    } else if ((lead & 0xF8) == 0xF0) {
      code_point = lead & 0x07;
      length = 4;
      min_code_point = 0x10000;
    } else {
      scan.problem = TextProblem::kInvalidUtf8;
      return scan;
    }
    if (text.size() - i < length) {
      scan.problem = TextProblem::kInvalidUtf8;
      return scan;
    }
    for (size_t k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) {
        scan.problem = TextProblem::kInvalidUtf8;
        return scan;
      }
      code_point = (code_point << 6) | (next & 0x3F);
    }
    if (code_point < min_code_point || code_point > 0x10FFFF ||
        (code_point >= 0xD800 && code_point <= 0xDFFF)) {
      scan.problem = TextProblem::kInvalidUtf8;
      return scan;
    }
    if (code_point < 0x20 || (code_point >= 0x7F && code_point <= 0x9F)) {
      scan.problem = TextProblem::kControlCharacter;
      return scan;
    }
    ++scan.code_points;
    i += length;
  }
  return scan;
}

// Why `text` (called `what` in the message) cannot be said, or empty.
std::string wording_error(std::string_view what, std::string_view text) {
  const std::string subject(what);
  if (text.empty()) return subject + " is empty; omit it to use the default announcement";
  const TextScan scan = scan_text(text);
  if (scan.problem == TextProblem::kInvalidUtf8) return subject + " is not valid UTF-8";
  if (scan.problem == TextProblem::kControlCharacter)
    return subject +
           " contains a control character (such as a newline or tab); send one line of text";
  if (scan.code_points > kMaxAnnouncementCodePoints)
    return subject + " is longer than " + std::to_string(kMaxAnnouncementCodePoints) +
           " characters; shorten it";
  return {};
}

Checked<std::string> expand_template(std::string_view text_template, Amount amount, Channel channel,
                                     Locale locale) {
  std::string out;
  size_t i = 0;
  while (i < text_template.size()) {
    const char c = text_template[i];
    if (c == '{' && i + 1 < text_template.size() && text_template[i + 1] == '{') {
      out += '{';
      i += 2;
    } else if (c == '}' && i + 1 < text_template.size() && text_template[i + 1] == '}') {
      out += '}';
      i += 2;
    } else if (c == '}') {
      return failure<std::string>(
          "template has a '}' without a matching '{'; write }} for a literal brace");
    } else if (c == '{') {
      const size_t close = text_template.find_first_of("{}", i + 1);
      if (close == std::string_view::npos || text_template[close] == '{')
        return failure<std::string>(
            "template has a '{' without a closing '}'; write {{ for a literal brace");
      const std::string_view name = text_template.substr(i + 1, close - i - 1);
      if (name == "amount") {
        out += amount.to_string();
      } else if (name == "channel") {
        out += channel_display_name(channel, locale);
      } else {
        return failure<std::string>(
            "template has unknown placeholder {" + std::string(name) +
            "}; use {amount} or {channel}, and {{ or }} for literal braces");
      }
      i = close + 1;
    } else {
      out += c;
      ++i;
    }
  }
  return success(std::move(out));
}

}  // namespace

Checked<std::string> render_announcement(Amount amount, Channel channel, Locale locale,
                                         const AnnouncementWording& wording) {
  if (wording.free_text && wording.text_template)
    return failure<std::string>("send either text or template, not both");

  if (wording.free_text) {
    if (std::string error = wording_error("text", *wording.free_text); !error.empty())
      return failure<std::string>(std::move(error));
    return success(*wording.free_text);
  }

  if (wording.text_template) {
    if (std::string error = wording_error("template", *wording.text_template); !error.empty())
      return failure<std::string>(std::move(error));
    Checked<std::string> expanded =
        expand_template(*wording.text_template, amount, channel, locale);
    if (!expanded.ok()) return expanded;
    // Placeholders only add valid text without control characters; what is
    // left to check is that the result is not empty or too long.
    if (expanded.value.empty())
      return failure<std::string>(
          "template renders to empty text (e.g. only {channel} for channel other); add words");
    if (scan_text(expanded.value).code_points > kMaxAnnouncementCodePoints)
      return failure<std::string>("template renders to more than " +
                                  std::to_string(kMaxAnnouncementCodePoints) +
                                  " characters once placeholders are filled in; shorten it");
    return expanded;
  }

  const ChannelText& text = channel_text(channel);
  if (locale == Locale::kZhCn)
    return success(std::string(text.zh_default_prefix) + amount.to_string() + "元");
  return success(std::string(text.en_default_prefix) + amount.to_string() + " yuan");
}

}  // namespace counterlink::platform
