#include "counterlink/platform/announcement.h"

#include <string>

#include <gtest/gtest.h>

namespace counterlink::platform {
namespace {

Amount amount(std::string_view text) {
  Checked<Amount> parsed = parse_amount(text);
  EXPECT_TRUE(parsed.ok()) << text << ": " << parsed.error;
  return parsed.value;
}

std::string amount_error(std::string_view text) {
  Checked<Amount> parsed = parse_amount(text);
  EXPECT_FALSE(parsed.ok()) << text << " parsed as " << parsed.value.fen() << " fen";
  return parsed.error;
}

std::string render(Channel channel, Locale locale, const AnnouncementWording& wording = {}) {
  Checked<std::string> text = render_announcement(amount("128.5"), channel, locale, wording);
  EXPECT_TRUE(text.ok()) << text.error;
  return text.value;
}

std::string render_error(const AnnouncementWording& wording) {
  Checked<std::string> text =
      render_announcement(amount("128.5"), Channel::kWechat, Locale::kZhCn, wording);
  EXPECT_FALSE(text.ok()) << "rendered " << text.value;
  return text.error;
}

// ---- Amount ------------------------------------------------------------------

TEST(ParseAmount, AcceptsYuanWithZeroOneOrTwoDecimals) {
  EXPECT_EQ(amount("128.5").fen(), 12850);
  EXPECT_EQ(amount("128.50").fen(), 12850);
  EXPECT_EQ(amount("0.01").fen(), 1);
  EXPECT_EQ(amount("0.5").fen(), 50);
  EXPECT_EQ(amount("1000000").fen(), 100000000);
  EXPECT_EQ(amount("7").fen(), 700);
}

TEST(ParseAmount, AcceptsExactlyTheMaximum) {
  EXPECT_EQ(amount("99999999.99").fen(), Amount::kMaxFen);
  EXPECT_EQ(amount("99999999.99").fen(), 9'999'999'999);
}

TEST(ParseAmount, RejectsEmpty) {
  EXPECT_EQ(amount_error(""), R"(amount is empty; send yuan as a decimal string such as "128.50")");
}

TEST(ParseAmount, RejectsZeroBecauseNothingWasPaid) {
  const std::string zero = "amount must be greater than 0; a payment of nothing is not announced";
  EXPECT_EQ(amount_error("0"), zero);
  EXPECT_EQ(amount_error("0.0"), zero);
  EXPECT_EQ(amount_error("0.00"), zero);
}

TEST(ParseAmount, RejectsNegatives) {
  const std::string negative = "amount must be positive; negative amounts are not announced";
  EXPECT_EQ(amount_error("-1"), negative);
  EXPECT_EQ(amount_error("-0.01"), negative);
  EXPECT_EQ(amount_error("-0"), negative);
}

TEST(ParseAmount, RejectsLeadingPlus) {
  EXPECT_EQ(amount_error("+1.00"), R"(amount must not have a '+' sign; send it like "128.50")");
}

TEST(ParseAmount, RejectsMoreThanTwoDecimalsInsteadOfRounding) {
  const std::string precision =
      "amount has more than 2 decimal places; fen (0.01 yuan) is the smallest unit";
  EXPECT_EQ(amount_error("1.005"), precision);
  EXPECT_EQ(amount_error("1.000"), precision);
}

TEST(ParseAmount, RejectsExponents) {
  const std::string exponent =
      R"(amount must be a plain decimal, not exponent notation; send "1000", not "1e3")";
  EXPECT_EQ(amount_error("1e3"), exponent);
  EXPECT_EQ(amount_error("1E3"), exponent);
  EXPECT_EQ(amount_error("1.5e+2"), exponent);
}

TEST(ParseAmount, RejectsWhitespaceAnywhere) {
  const std::string spaces = R"(amount must not contain spaces; send it like "128.50")";
  EXPECT_EQ(amount_error(" 1.00"), spaces);
  EXPECT_EQ(amount_error("1.00 "), spaces);
  EXPECT_EQ(amount_error("1 000"), spaces);
  EXPECT_EQ(amount_error("1.00\n"), spaces);
  EXPECT_EQ(amount_error("\t1"), spaces);
}

TEST(ParseAmount, RejectsNonAsciiDigitsAndCurrencySigns) {
  const std::string ascii =
      "amount must use ASCII digits 0-9 and '.' only (no full-width digits or currency signs)";
  EXPECT_EQ(amount_error("１２８"), ascii);  // full-width digits
  EXPECT_EQ(amount_error("٣"), ascii);       // Arabic-Indic digit three
  EXPECT_EQ(amount_error("¥5"), ascii);
  EXPECT_EQ(amount_error("5元"), ascii);
}

TEST(ParseAmount, RejectsOtherCharacters) {
  const std::string other = R"(amount may contain only digits and one '.'; send it like "128.50")";
  EXPECT_EQ(amount_error("1,000"), other);
  EXPECT_EQ(amount_error("0x10"), other);
  EXPECT_EQ(amount_error("12a"), other);
  EXPECT_EQ(amount_error("nan"), other);
  EXPECT_EQ(amount_error("1-2"), other);
  EXPECT_EQ(amount_error(std::string_view("1\0", 2)), other);
}

TEST(ParseAmount, RejectsMoreThanOnePoint) {
  EXPECT_EQ(amount_error("1.2.3"), R"(amount has more than one '.'; send it like "128.50")");
}

TEST(ParseAmount, RejectsAPointWithoutDigitsOnBothSides) {
  const std::string point = R"(amount needs digits on both sides of '.'; send "0.50" or "128")";
  EXPECT_EQ(amount_error("128."), point);
  EXPECT_EQ(amount_error(".5"), point);
  EXPECT_EQ(amount_error("."), point);
}

TEST(ParseAmount, RejectsLeadingZerosAsAmbiguous) {
  const std::string zeros = R"(amount must not have leading zeros; send "7.50", not "007.50")";
  EXPECT_EQ(amount_error("007"), zeros);
  EXPECT_EQ(amount_error("00.5"), zeros);
  EXPECT_EQ(amount_error("01"), zeros);
}

TEST(ParseAmount, RejectsAboveTheMaximumWithoutOverflowing) {
  const std::string too_large = "amount is above the maximum of 99999999.99 yuan";
  EXPECT_EQ(amount_error("100000000"), too_large);
  EXPECT_EQ(amount_error("100000000.00"), too_large);
  EXPECT_EQ(amount_error("9223372036854775807"), too_large);  // INT64_MAX yuan
  EXPECT_EQ(amount_error("92233720368547758.08"), too_large);
  EXPECT_EQ(amount_error(std::string(10000, '9')), too_large);
}

TEST(AmountFromFen, AcceptsOneFenUpToTheMaximum) {
  ASSERT_TRUE(amount_from_fen(1).ok());
  EXPECT_EQ(amount_from_fen(1).value.fen(), 1);
  ASSERT_TRUE(amount_from_fen(Amount::kMaxFen).ok());
  EXPECT_EQ(amount_from_fen(Amount::kMaxFen).value, amount("99999999.99"));
}

TEST(AmountFromFen, RejectsZeroNegativeAndAboveTheMaximum) {
  EXPECT_EQ(amount_from_fen(0).error,
            "amount must be greater than 0; a payment of nothing is not announced");
  EXPECT_EQ(amount_from_fen(-5).error,
            "amount must be greater than 0; a payment of nothing is not announced");
  EXPECT_EQ(amount_from_fen(Amount::kMaxFen + 1).error,
            "amount is above the maximum of 99999999.99 yuan");
}

TEST(FormatAmount, AlwaysWritesTwoDecimals) {
  EXPECT_EQ(amount("128.5").to_string(), "128.50");
  EXPECT_EQ(amount("128.50").to_string(), "128.50");
  EXPECT_EQ(amount("0.01").to_string(), "0.01");
  EXPECT_EQ(amount("0.1").to_string(), "0.10");
  EXPECT_EQ(amount("7").to_string(), "7.00");
  EXPECT_EQ(amount("1000000").to_string(), "1000000.00");
  EXPECT_EQ(amount("99999999.99").to_string(), "99999999.99");
}

// ---- Channel and locale ----------------------------------------------------

TEST(Channel, RoundTripsEveryWireName) {
  for (std::string_view name : {"wechat", "alipay", "unionpay", "cash", "other"}) {
    Checked<Channel> channel = parse_channel(name);
    ASSERT_TRUE(channel.ok()) << name;
    EXPECT_EQ(channel_name(channel.value), name);
  }
  EXPECT_EQ(parse_channel("wechat").value, Channel::kWechat);
  EXPECT_EQ(parse_channel("alipay").value, Channel::kAlipay);
  EXPECT_EQ(parse_channel("unionpay").value, Channel::kUnionpay);
  EXPECT_EQ(parse_channel("cash").value, Channel::kCash);
  EXPECT_EQ(parse_channel("other").value, Channel::kOther);
}

TEST(Channel, RejectsUnknownNamesListingTheValidOnes) {
  const std::string unknown = "unknown channel; use one of wechat, alipay, unionpay, cash, other";
  EXPECT_EQ(parse_channel("paypal").error, unknown);
  EXPECT_EQ(parse_channel("WeChat").error, unknown);  // wire names are exact
  EXPECT_EQ(parse_channel("").error, unknown);
}

TEST(Locale, RoundTripsEveryTag) {
  ASSERT_TRUE(parse_locale("zh-CN").ok());
  EXPECT_EQ(parse_locale("zh-CN").value, Locale::kZhCn);
  EXPECT_EQ(locale_tag(Locale::kZhCn), "zh-CN");
  ASSERT_TRUE(parse_locale("en").ok());
  EXPECT_EQ(parse_locale("en").value, Locale::kEn);
  EXPECT_EQ(locale_tag(Locale::kEn), "en");
}

TEST(Locale, RejectsUnknownTagsListingTheValidOnes) {
  const std::string unknown = "unknown locale; use zh-CN or en";
  EXPECT_EQ(parse_locale("fr").error, unknown);
  EXPECT_EQ(parse_locale("zh-TW").error, unknown);
  EXPECT_EQ(parse_locale("zh_CN").error, unknown);
  EXPECT_EQ(parse_locale("").error, unknown);
}

// ---- Default announcement ----------------------------------------------------

TEST(RenderAnnouncement, SaysTheDefaultChineseSentencePerChannel) {
  EXPECT_EQ(render(Channel::kWechat, Locale::kZhCn), "微信收款128.50元");
  EXPECT_EQ(render(Channel::kAlipay, Locale::kZhCn), "支付宝收款128.50元");
  EXPECT_EQ(render(Channel::kUnionpay, Locale::kZhCn), "云闪付收款128.50元");
  EXPECT_EQ(render(Channel::kCash, Locale::kZhCn), "现金收款128.50元");
  EXPECT_EQ(render(Channel::kOther, Locale::kZhCn), "收款128.50元");
}

TEST(RenderAnnouncement, SaysTheDefaultEnglishSentencePerChannel) {
  EXPECT_EQ(render(Channel::kWechat, Locale::kEn), "WeChat payment received 128.50 yuan");
  EXPECT_EQ(render(Channel::kAlipay, Locale::kEn), "Alipay payment received 128.50 yuan");
  EXPECT_EQ(render(Channel::kUnionpay, Locale::kEn), "UnionPay payment received 128.50 yuan");
  EXPECT_EQ(render(Channel::kCash, Locale::kEn), "Cash payment received 128.50 yuan");
  EXPECT_EQ(render(Channel::kOther, Locale::kEn), "Payment received 128.50 yuan");
}

TEST(RenderAnnouncement, SaysTheSmallestAmountWithTwoDecimals) {
  Checked<std::string> text = render_announcement(amount("0.01"), Channel::kWechat, Locale::kZhCn);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(text.value, "微信收款0.01元");
}

// ---- Free text -------------------------------------------------------------

TEST(RenderAnnouncement, SaysFreeTextVerbatimWithBracesLiteral) {
  EXPECT_EQ(render(Channel::kWechat, Locale::kZhCn, {.free_text = "谢谢惠顾"}), "谢谢惠顾");
  EXPECT_EQ(render(Channel::kCash, Locale::kEn, {.free_text = "Paid {amount} }{"}),
            "Paid {amount} }{");
}

TEST(RenderAnnouncement, RejectsTextAndTemplateTogether) {
  EXPECT_EQ(render_error({.free_text = "a", .text_template = "b"}),
            "send either text or template, not both");
}

TEST(RenderAnnouncement, RejectsEmptyFreeText) {
  EXPECT_EQ(render_error({.free_text = ""}),
            "text is empty; omit it to use the default announcement");
}

TEST(RenderAnnouncement, AcceptsFreeTextOfExactly200CodePoints) {
  std::string text;
  for (int i = 0; i < 200; ++i)
    text += "元";  // 3 bytes each: the limit counts code points, not bytes
  EXPECT_EQ(render(Channel::kWechat, Locale::kZhCn, {.free_text = text}), text);
  std::string emoji;
  for (int i = 0; i < 200; ++i)
    emoji += "😀";  // 4 bytes each
  EXPECT_EQ(render(Channel::kWechat, Locale::kZhCn, {.free_text = emoji}), emoji);
}

TEST(RenderAnnouncement, RejectsFreeTextOver200CodePoints) {
  std::string text;
  for (int i = 0; i < 201; ++i)
    text += "元";
  EXPECT_EQ(render_error({.free_text = text}), "text is longer than 200 characters; shorten it");
  EXPECT_EQ(render_error({.free_text = std::string(201, 'a')}),
            "text is longer than 200 characters; shorten it");
}

TEST(RenderAnnouncement, RejectsFreeTextThatIsNotValidUtf8) {
  const std::string invalid = "text is not valid UTF-8";
  EXPECT_EQ(render_error({.free_text = "\xff"}), invalid);      // never a UTF-8 byte
  EXPECT_EQ(render_error({.free_text = "abc\x80"}), invalid);   // stray continuation
  EXPECT_EQ(render_error({.free_text = "\xe5\x85"}), invalid);  // truncated 元
  EXPECT_EQ(render_error({.free_text = "\xe5\x85"
                                       "a"}),
            invalid);                                                   // broken sequence
  EXPECT_EQ(render_error({.free_text = "\xc0\xaf"}), invalid);          // overlong '/'
  EXPECT_EQ(render_error({.free_text = "\xed\xa0\x80"}), invalid);      // surrogate U+D800
  EXPECT_EQ(render_error({.free_text = "\xf4\x90\x80\x80"}), invalid);  // above U+10FFFF
}

TEST(RenderAnnouncement, RejectsFreeTextWithControlCharacters) {
  const std::string control =
      "text contains a control character (such as a newline or tab); send one line of text";
  EXPECT_EQ(render_error({.free_text = "line\nbreak"}), control);
  EXPECT_EQ(render_error({.free_text = "tab\there"}), control);
  EXPECT_EQ(render_error({.free_text = std::string("nul\0", 4)}), control);
  EXPECT_EQ(render_error({.free_text = "del\x7f"}), control);
  EXPECT_EQ(render_error({.free_text = "c1\xc2\x85"}), control);  // U+0085 next line
}

// ---- Templates -------------------------------------------------------------

TEST(RenderAnnouncement, FillsAmountAndChannelInTheLocale) {
  const AnnouncementWording wording{.text_template = "{channel}到账{amount}元"};
  EXPECT_EQ(render(Channel::kWechat, Locale::kZhCn, wording), "微信到账128.50元");
  EXPECT_EQ(render(Channel::kAlipay, Locale::kZhCn, wording), "支付宝到账128.50元");
  EXPECT_EQ(render(Channel::kUnionpay, Locale::kZhCn, wording), "云闪付到账128.50元");
  EXPECT_EQ(render(Channel::kCash, Locale::kZhCn, wording), "现金到账128.50元");
  EXPECT_EQ(render(Channel::kOther, Locale::kZhCn, wording), "到账128.50元");

  const AnnouncementWording english{.text_template = "[{channel}] {amount} yuan, thanks"};
  EXPECT_EQ(render(Channel::kWechat, Locale::kEn, english), "[WeChat] 128.50 yuan, thanks");
  EXPECT_EQ(render(Channel::kAlipay, Locale::kEn, english), "[Alipay] 128.50 yuan, thanks");
  EXPECT_EQ(render(Channel::kUnionpay, Locale::kEn, english), "[UnionPay] 128.50 yuan, thanks");
  EXPECT_EQ(render(Channel::kCash, Locale::kEn, english), "[Cash] 128.50 yuan, thanks");
  EXPECT_EQ(render(Channel::kOther, Locale::kEn, english), "[] 128.50 yuan, thanks");
}

TEST(RenderAnnouncement, FillsRepeatedPlaceholdersAndKeepsPlainTemplates) {
  EXPECT_EQ(render(Channel::kCash, Locale::kZhCn, {.text_template = "{amount}，{amount}"}),
            "128.50，128.50");
  EXPECT_EQ(render(Channel::kCash, Locale::kZhCn, {.text_template = "谢谢"}), "谢谢");
}

TEST(RenderAnnouncement, TurnsDoubledBracesIntoLiteralBraces) {
  EXPECT_EQ(render(Channel::kWechat, Locale::kEn, {.text_template = "{{amount}} = {amount}"}),
            "{amount} = 128.50");
  EXPECT_EQ(render(Channel::kWechat, Locale::kEn, {.text_template = "{{{amount}}}"}), "{128.50}");
  EXPECT_EQ(render(Channel::kWechat, Locale::kEn, {.text_template = "}}{{"}), "}{");
}

TEST(RenderAnnouncement, RejectsAnUnknownPlaceholderNamingIt) {
  EXPECT_EQ(render_error({.text_template = "收款{price}元"}),
            "template has unknown placeholder {price}; use {amount} or {channel}, and {{ or }} "
            "for literal braces");
  EXPECT_EQ(render_error({.text_template = "{Amount}"}),
            "template has unknown placeholder {Amount}; use {amount} or {channel}, and {{ or }} "
            "for literal braces");
  EXPECT_EQ(render_error({.text_template = "{}"}),
            "template has unknown placeholder {}; use {amount} or {channel}, and {{ or }} for "
            "literal braces");
}

TEST(RenderAnnouncement, RejectsAnUnclosedBrace) {
  const std::string unclosed =
      "template has a '{' without a closing '}'; write {{ for a literal brace";
  EXPECT_EQ(render_error({.text_template = "{amount"}), unclosed);
  EXPECT_EQ(render_error({.text_template = "a{"}), unclosed);
  EXPECT_EQ(render_error({.text_template = "{am{amount}"}), unclosed);
}

TEST(RenderAnnouncement, RejectsAStrayClosingBrace) {
  const std::string stray =
      "template has a '}' without a matching '{'; write }} for a literal brace";
  EXPECT_EQ(render_error({.text_template = "amount}"}), stray);
  EXPECT_EQ(render_error({.text_template = "{amount}}"}), stray);
}

TEST(RenderAnnouncement, RejectsEmptyTemplateAndTemplateThatRendersEmpty) {
  EXPECT_EQ(render_error({.text_template = ""}),
            "template is empty; omit it to use the default announcement");
  Checked<std::string> text = render_announcement(amount("1"), Channel::kOther, Locale::kEn,
                                                  {.text_template = "{channel}"});
  EXPECT_EQ(text.error,
            "template renders to empty text (e.g. only {channel} for channel other); add words");
}

TEST(RenderAnnouncement, RejectsInvalidTemplatesWithTheTemplatesName) {
  EXPECT_EQ(render_error({.text_template = "\xff{amount}"}), "template is not valid UTF-8");
  EXPECT_EQ(render_error({.text_template = "{amount}\n"}),
            "template contains a control character (such as a newline or tab); send one line of "
            "text");
  EXPECT_EQ(render_error({.text_template = std::string(201, 'a')}),
            "template is longer than 200 characters; shorten it");
}

TEST(RenderAnnouncement, RejectsATemplateThatGrowsPast200CodePoints) {
  // 24 × "{amount}" is 192 code points; each becomes "128.50" (6): 144. With
  // the maximum amount each becomes 11: 264.
  std::string text_template;
  for (int i = 0; i < 24; ++i)
    text_template += "{amount}";
  EXPECT_TRUE(render_announcement(amount("128.5"), Channel::kCash, Locale::kEn,
                                  {.text_template = text_template})
                  .ok());
  EXPECT_EQ(render_announcement(amount("99999999.99"), Channel::kCash, Locale::kEn,
                                {.text_template = text_template})
                .error,
            "template renders to more than 200 characters once placeholders are filled in; "
            "shorten it");
}

}  // namespace
}  // namespace counterlink::platform
