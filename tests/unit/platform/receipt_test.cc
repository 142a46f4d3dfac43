// Receipt markup -> ESC/POS. Every expected byte sequence is written out by
// hand from the ESC/POS command reference (Epson "ESC/POS Command Reference
// for TM printers"); GB18030 bytes were produced with `iconv -t GB18030` and
// hard-coded here.
#include "counterlink/platform/receipt.h"

#include <initializer_list>
#include <string>

#include <gtest/gtest.h>

namespace counterlink::platform {
namespace {

std::string bytes(std::initializer_list<int> values) {
  std::string out;
  for (int v : values)
    out += static_cast<char>(static_cast<unsigned char>(v));
  return out;
}

std::string hex(const std::string& s) {
  static const char* kDigits = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (!out.empty()) out += ' ';
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

const std::string kInit = bytes({0x1B, 0x40});  // ESC @: initialise

// Renders one copy on 58 mm paper and returns the bytes after ESC @, as hex.
std::string body(std::string_view markup, PaperWidth paper = PaperWidth::k58) {
  RenderResult result = render_escpos(markup, paper, 1);
  EXPECT_TRUE(result.ok()) << result.error->to_string();
  EXPECT_EQ(result.bytes.substr(0, 2), kInit);
  return hex(result.bytes.substr(2));
}

MarkupError error_of(std::string_view markup, PaperWidth paper = PaperWidth::k58) {
  RenderResult result = render_escpos(markup, paper, 1);
  EXPECT_FALSE(result.ok()) << markup;
  EXPECT_TRUE(result.bytes.empty());
  EXPECT_TRUE(result.warnings.empty());
  return result.error.value_or(MarkupError{-1, -1, "no error"});
}

TEST(RenderEscpos, PlainTextStartsWithInitAndEndsWithLineFeed) {
  EXPECT_EQ(body("Hi"), hex(bytes({0x48, 0x69,  // "Hi"
                                   0x0A})));    // LF: print the pending line
}

TEST(RenderEscpos, AlignmentTagsAreBlocksThatStartAndEndALine) {
  EXPECT_EQ(body("<C>Hi</C>"), hex(bytes({0x1B, 0x61, 0x01,      // ESC a 1: centre
                                          0x48, 0x69,            // "Hi"
                                          0x0A,                  // LF
                                          0x1B, 0x61, 0x00})));  // ESC a 0: left
  EXPECT_EQ(body("<R>9</R>"), hex(bytes({0x1B, 0x61, 0x02,       // ESC a 2: right
                                         0x39, 0x0A,             // "9" LF
                                         0x1B, 0x61, 0x00})));   // ESC a 0
  EXPECT_EQ(body("<L>a</L>"), hex(bytes({0x1B, 0x61, 0x00,       // ESC a 0: left
                                         0x61, 0x0A,             // "a" LF
                                         0x1B, 0x61, 0x00})));   // ESC a 0
  // Text already on the line is printed first: ESC a acts at a line start.
  EXPECT_EQ(body("a<C>b</C>"), hex(bytes({0x61, 0x0A,            // "a" LF
                                          0x1B, 0x61, 0x01,      // ESC a 1
                                          0x62, 0x0A,            // "b" LF
                                          0x1B, 0x61, 0x00})));  // ESC a 0
}

TEST(RenderEscpos, BoldWideAndTallSwitchTheirModes) {
  EXPECT_EQ(body("<B>x</B>"), hex(bytes({0x1B, 0x45, 0x01,  // ESC E 1: bold on
                                         0x78,              // "x"
                                         0x1B, 0x45, 0x00,  // ESC E 0: bold off
                                         0x0A})));
  EXPECT_EQ(body("<W>A</W>"), hex(bytes({0x1D, 0x21, 0x10,  // GS ! 0x10: double width
                                         0x41,              // "A"
                                         0x1D, 0x21, 0x00,  // GS ! 0: normal size
                                         0x0A})));
  EXPECT_EQ(body("<H>A</H>"), hex(bytes({0x1D, 0x21, 0x01,  // GS ! 0x01: double height
                                         0x41, 0x1D, 0x21, 0x00, 0x0A})));
  EXPECT_EQ(body("<W><H>A</H></W>"), hex(bytes({0x1D, 0x21, 0x10,  // GS ! 0x10
                                                0x1D, 0x21, 0x11,  // GS ! 0x11: both
                                                0x41,              // "A"
                                                0x1D, 0x21, 0x10,  // GS ! 0x10: width only
                                                0x1D, 0x21, 0x00,  // GS ! 0
                                                0x0A})));
}

TEST(RenderEscpos, BreaksNewlinesAndEscapesBecomeTextBytes) {
  EXPECT_EQ(body("a<BR>b\nc\r\n"), hex(bytes({0x61, 0x0A, 0x62, 0x0A, 0x63, 0x0A})));
  EXPECT_EQ(body("&lt;B&gt; &amp; >"),
            hex(bytes({0x3C, 0x42, 0x3E, 0x20, 0x26, 0x20, 0x3E, 0x0A})));
  EXPECT_EQ(body("a\tb"), hex(bytes({0x61, 0x20, 0x62, 0x0A})));  // tab prints as a space
}

TEST(RenderEscpos, CutLogoAndDrawer) {
  EXPECT_EQ(body("a<CUT>"), hex(bytes({0x61, 0x0A,                  // "a" LF
                                       0x1D, 0x56, 0x42, 0x00})));  // GS V 66 0: feed, cut
  EXPECT_EQ(body("<LOGO>"), hex(bytes({0x1C, 0x70, 0x01, 0x00})));  // FS p 1 0: NV image 1
  EXPECT_EQ(body("<DRAWER>"),
            hex(bytes({0x1B, 0x70, 0x00, 0x19, 0xFA})));  // ESC p 0 25 250: kick pin 2
}

TEST(RenderEscpos, NewlineAfterABlockIsAbsorbed) {
  EXPECT_EQ(body("<C>T</C>\nx\n<HR>\n<CUT>\n"),
            hex(bytes({0x1B, 0x61, 0x01, 0x54, 0x0A, 0x1B, 0x61, 0x00,  // centred "T"
                       0x78, 0x0A})                                     // "x" LF
                + std::string(32, '-') + "\n" + bytes({0x1D, 0x56, 0x42, 0x00})));
}

TEST(RenderEscpos, RuleSpansThePaperWidth) {
  EXPECT_EQ(body("<HR>", PaperWidth::k58), hex(std::string(32, '-') + "\n"));
  EXPECT_EQ(body("<HR>", PaperWidth::k80), hex(std::string(48, '-') + "\n"));
  // Under <W> each dash is two columns wide: half as many.
  EXPECT_EQ(
      body("<W><HR></W>", PaperWidth::k80),
      hex(bytes({0x1D, 0x21, 0x10}) + std::string(24, '-') + "\n" + bytes({0x1D, 0x21, 0x00})));
}

TEST(RenderEscpos, QrCodeIsModel2ErrorCorrectionMStoredThenPrinted) {
  EXPECT_EQ(body("<QR>abc</QR>", PaperWidth::k80),
            hex(bytes({0x1D, 0x28, 0x6B, 0x04, 0x00, 0x31, 0x41, 0x32, 0x00,  // fn 165: model 2
                       0x1D, 0x28, 0x6B, 0x03, 0x00, 0x31, 0x43, 0x06,      // fn 167: module 6 dots
                       0x1D, 0x28, 0x6B, 0x03, 0x00, 0x31, 0x45, 0x31,      // fn 169: level M
                       0x1D, 0x28, 0x6B, 0x06, 0x00, 0x31, 0x50, 0x30,      // fn 180: store 3+3
                       0x61, 0x62, 0x63,                                    // "abc"
                       0x1D, 0x28, 0x6B, 0x03, 0x00, 0x31, 0x51, 0x30})));  // fn 181: print
  EXPECT_NE(body("<QR size=\"3\">abc</QR>").find("1D 28 6B 03 00 31 43 03"), std::string::npos);
}

TEST(RenderEscpos, LargeQrCodeShrinksItsModulesOnNarrowPaper) {
  // 400 bytes need version 15 (77 modules + 8 quiet): 384/85 = 4 dots on
  // 58 mm, 576/85 = 6 on 80 mm.
  const std::string markup = "<QR>" + std::string(400, 'a') + "</QR>";
  const std::string module4 = hex(bytes({0x1D, 0x28, 0x6B, 0x03, 0x00, 0x31, 0x43, 0x04}));
  const std::string module6 = hex(bytes({0x1D, 0x28, 0x6B, 0x03, 0x00, 0x31, 0x43, 0x06}));
  const std::string store = hex(bytes({0x1D, 0x28, 0x6B, 0x93, 0x01, 0x31, 0x50, 0x30}));  // 403
  EXPECT_NE(body(markup, PaperWidth::k58).find(module4), std::string::npos);
  EXPECT_NE(body(markup, PaperWidth::k80).find(module6), std::string::npos);
  EXPECT_NE(body(markup, PaperWidth::k58).find(store), std::string::npos);
  MarkupError error = error_of("<QR size=\"5\">" + std::string(400, 'a') + "</QR>");
  EXPECT_EQ(error.to_string(),
            "1:1: QR code too wide for 58 mm paper: 400 bytes need up to 85 modules; use "
            "size=\"4\" or less");
  EXPECT_TRUE(
      render_escpos("<QR size=\"5\">" + std::string(400, 'a') + "</QR>", PaperWidth::k80, 1).ok());
}

TEST(RenderEscpos, Code128BarcodeSelectsCodeSetBWithHriBelow) {
  EXPECT_EQ(body("<BARCODE type=\"code128\">AB{1</BARCODE>"),
            hex(bytes({0x1D, 0x48, 0x02,                  // GS H 2: HRI below
                       0x1D, 0x68, 0x50,                  // GS h 80: 80 dots high
                       0x1D, 0x77, 0x02,                  // GS w 2: narrow bar 2 dots
                       0x1D, 0x6B, 0x49, 0x07,            // GS k 73 7: CODE128, 7 bytes
                       0x7B, 0x42,                        // "{B": code set B
                       0x41, 0x42, 0x7B, 0x7B, 0x31})));  // "AB" "{{" (a '{') "1"
  // type defaults to code128.
  EXPECT_EQ(body("<BARCODE>1</BARCODE>"), body("<BARCODE type=\"code128\">1</BARCODE>"));
}

TEST(RenderEscpos, Ean13BarcodeTakesItsHeight) {
  EXPECT_EQ(body("<BARCODE type=\"ean13\" height=\"60\">4006381333931</BARCODE>"),
            hex(bytes({0x1D, 0x48, 0x02,        // GS H 2
                       0x1D, 0x68, 0x3C,        // GS h 60
                       0x1D, 0x77, 0x02,        // GS w 2
                       0x1D, 0x6B, 0x43, 0x0D,  // GS k 67 13: EAN13, 13 digits
                       '4',  '0',  '0',  '6',  '3', '8', '1', '3', '3', '3', '9', '3', '1'})));
  // Twelve digits: the printer adds the check digit.
  EXPECT_TRUE(
      render_escpos("<BARCODE type=\"ean13\">400638133393</BARCODE>", PaperWidth::k58, 1).ok());
}

TEST(RenderEscpos, Code128FitsFourteenCharactersOn58mmAndTwentyThreeOn80mm) {
  auto code128 = [](int n) { return "<BARCODE>" + std::string(n, '7') + "</BARCODE>"; };
  EXPECT_TRUE(render_escpos(code128(14), PaperWidth::k58, 1).ok());
  EXPECT_EQ(error_of(code128(15)).to_string(),
            "1:1: code128 barcode data must be 1..14 printable ASCII characters on 58 mm paper "
            "(got 15)");
  EXPECT_TRUE(render_escpos(code128(23), PaperWidth::k80, 1).ok());
  EXPECT_FALSE(render_escpos(code128(24), PaperWidth::k80, 1).ok());
}

TEST(RenderEscpos, ChineseTextIsGb18030InChineseMode) {
  EXPECT_EQ(body("收款"), hex(bytes({0x1C, 0x26,              // FS &: Chinese mode on
                                     0xCA, 0xD5, 0xBF, 0xEE,  // 收 款 (GB18030)
                                     0x0A})));
  // Chinese mode is entered once per copy; ASCII prints unchanged in it.
  EXPECT_EQ(body("合计 ￥12<BR>宫保鸡丁"),
            hex(bytes({0x1C, 0x26,                                      // FS &
                       0xBA, 0xCF, 0xBC, 0xC6,                          // 合计
                       0x20, 0xA3, 0xA4,                                // " " ￥ (fullwidth yen)
                       0x31, 0x32, 0x0A,                                // "12" LF
                       0xB9, 0xAC, 0xB1, 0xA3, 0xBC, 0xA6, 0xB6, 0xA1,  // 宫保鸡丁
                       0x0A})));
}

TEST(RenderEscpos, CharactersOutsideTheTwoByteFontPrintAsQuestionMarkWithAWarning) {
  RenderResult result = render_escpos("ok😀\n¥5", PaperWidth::k58, 1);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result.bytes, kInit + "ok?\n?5\n");
  ASSERT_EQ(result.warnings.size(), 2u);
  EXPECT_EQ(result.warnings[0],
            "1:3: U+1F600 is not in the printer's GB18030 two-byte font; printed as '?'");
  EXPECT_EQ(result.warnings[1].substr(0, 11), "2:1: U+00A5");
}

TEST(RenderEscpos, CopiesRepeatTheWholeReceiptWithItsCut) {
  const std::string one = kInit + bytes({0x61, 0x0A, 0x1D, 0x56, 0x42, 0x00});
  EXPECT_EQ(render_escpos("a<CUT>", PaperWidth::k58, 2).bytes, one + one);
  EXPECT_EQ(render_escpos("a", PaperWidth::k58, 3).bytes,
            kInit + "a\n" + kInit + "a\n" + kInit + "a\n");
  EXPECT_EQ(render_escpos("a", PaperWidth::k58, 0).error->to_string(),
            "copies must be 1..10, got 0");
  EXPECT_FALSE(render_escpos("a", PaperWidth::k58, 11).ok());
  EXPECT_TRUE(render_escpos("a", PaperWidth::k58, 10).ok());
}

TEST(RenderEscpos, RendersASmallRestaurantReceipt) {
  const std::string markup =
      "<LOGO>\n"
      "<C><B><W>桌号 12</W></B></C>\n"
      "Kung Pao 宫保鸡丁 x1\n"
      "<R>38.00</R>\n"
      "<C><QR size=\"4\">T12</QR></C>\n"
      "<CUT><DRAWER>";
  const std::string expected =
      kInit + bytes({0x1C, 0x70, 0x01, 0x00,  // FS p 1 0: logo
                     0x1B, 0x61, 0x01,        // ESC a 1: centre
                     0x1B, 0x45, 0x01,        // ESC E 1: bold
                     0x1D, 0x21, 0x10,        // GS ! 0x10: double width
                     0x1C, 0x26,              // FS &: Chinese mode
                     0xD7, 0xC0, 0xBA, 0xC5,  // 桌号
                     0x20, 0x31, 0x32,        // " 12"
                     0x1D, 0x21, 0x00,        // GS ! 0
                     0x1B, 0x45, 0x00,        // ESC E 0
                     0x0A,                    // LF (</C> ends the line)
                     0x1B, 0x61, 0x00}) +     // ESC a 0
      "Kung Pao " +
      bytes({0xB9, 0xAC, 0xB1, 0xA3, 0xBC, 0xA6, 0xB6, 0xA1}) + " x1\n" +
      bytes({0x1B, 0x61, 0x02}) + "38.00\n" + bytes({0x1B, 0x61, 0x00}) +     // right-aligned
      bytes({0x1B, 0x61, 0x01,                                                // ESC a 1
             0x1D, 0x28, 0x6B, 0x04, 0x00, 0x31, 0x41, 0x32, 0x00,            // model 2
             0x1D, 0x28, 0x6B, 0x03, 0x00, 0x31, 0x43, 0x04,                  // module 4
             0x1D, 0x28, 0x6B, 0x03, 0x00, 0x31, 0x45, 0x31,                  // level M
             0x1D, 0x28, 0x6B, 0x06, 0x00, 0x31, 0x50, 0x30, 'T',  '1', '2',  // store
             0x1D, 0x28, 0x6B, 0x03, 0x00, 0x31, 0x51, 0x30,                  // print
             0x1B, 0x61, 0x00,                                                // ESC a 0
             0x1D, 0x56, 0x42, 0x00,                                          // GS V 66 0: cut
             0x1B, 0x70, 0x00, 0x19, 0xFA});                                  // ESC p: drawer
  RenderResult result = render_escpos(markup, PaperWidth::k80, 1);
  ASSERT_TRUE(result.ok()) << result.error->to_string();
  EXPECT_EQ(hex(result.bytes), hex(expected));
  EXPECT_TRUE(result.warnings.empty());
}

TEST(MarkupErrors, ReportTheFirstErrorWithLineAndColumn) {
  struct Case {
    std::string markup;
    std::string error;
  };
  const Case cases[] = {
      {"x\ny\nabcd<B>z", "3:5: unclosed <B> opened at 3:5; add </B>"},
      {"<B>x<W>y", "1:1: unclosed <B> opened at 1:1; add </B>"},
      {"a<X>",
       "1:2: unknown tag <X>; see docs/receipt-markup.md for the tags, or write &lt; for a literal "
       "'<'"},
      {"收款<X>",
       "1:3: unknown tag <X>; see docs/receipt-markup.md for the tags, or write &lt; for a literal "
       "'<'"},
      {"<X><Y>",
       "1:1: unknown tag <X>; see docs/receipt-markup.md for the tags, or write &lt; for a literal "
       "'<'"},
      {"<QR>" + std::string(401, 'a') + "</QR>",
       "1:1: QR data longer than 400 bytes (401); shorten it or print a link instead"},
      {"<B><W>x</B></W>",
       "1:8: </B> found while <W> opened at 1:4 is still open; close tags in the reverse order of "
       "opening"},
      {"x</B>", "1:2: </B> has no matching <B>"},
      {"<B>a<B>", "1:5: <B> is already open (opened at 1:1); close it before opening it again"},
      {"<C><R>", "1:4: <R> cannot be inside <C> opened at 1:1; close that alignment first"},
      {"</BR>", "1:1: </BR> is not allowed: <BR> has no closing tag"},
      {"a < b",
       "1:3: '<' does not start a complete tag on this line; write &lt; for a literal '<'"},
      {"<>", "1:1: empty tag name after '<'; write &lt; for a literal '<'"},
      {"Fish & Chips",
       "1:6: unknown escape at '&'; write &amp; for a literal '&' (escapes: &lt; &gt; &amp;)"},
      {"a\x1B@",
       "1:2: control character 0x1B is not allowed in receipt markup; use tags for printer "
       "commands"},
      {"a\xFF", "1:2: invalid UTF-8 byte 0xFF; send the markup as UTF-8"},
      {"<B x=\"1\">", "1:1: <B> takes no attributes"},
      {"<BR/>",
       "1:1: malformed tag <BR>: expected attributes as name=\"value\" (void tags are written "
       "<BR>, "
       "without '/')"},
      {"<QR size=4>x</QR>", "1:1: malformed tag <QR>: expected attributes as name=\"value\""},
      {"<QR level=\"H\">x</QR>", "1:1: unknown attribute level on <QR>; <QR> takes size"},
      {"<QR size=\"17\">x</QR>", "1:1: <QR> size=\"17\" is out of range; use 1..16"},
      {"<QR>a<B>b</B></QR>", "1:6: tags are not allowed inside <QR>; write &lt; for a literal '<'"},
      {"\n <QR>abc", "2:2: unclosed <QR> opened at 2:2; add </QR>"},
      {"<QR></QR>", "1:1: empty <QR>: put the text to encode between <QR> and </QR>"},
      {"<BARCODE type=\"upc\">1</BARCODE>",
       "1:1: unknown barcode type \"upc\"; use code128 or ean13"},
      {"<BARCODE height=\"0\">1</BARCODE>",
       "1:1: <BARCODE> height=\"0\" is out of range; use 1..255"},
      {"<BARCODE type=\"ean13\">4006381333932</BARCODE>",
       "1:1: ean13 check digit is wrong: expected 1, got 2; or send the first 12 digits and the "
       "printer adds it"},
      {"<BARCODE type=\"ean13\">12345</BARCODE>",
       "1:1: ean13 barcode data must be 12 or 13 digits (got \"12345\")"},
      {"<BARCODE>收</BARCODE>",
       "1:1: code128 barcode data must be 1..14 printable ASCII characters on 58 mm paper (got 3, "
       "some not printable ASCII)"},
  };
  for (const Case& c : cases)
    EXPECT_EQ(error_of(c.markup).to_string(), c.error) << c.markup;
}

TEST(MarkupErrors, TagNamesAreCaseInsensitive) {
  EXPECT_EQ(body("<b>x</B>"), body("<B>x</B>"));
}

TEST(MarkupErrors, AnErrorAfterAWarningDiscardsBoth) {
  error_of("😀<B>");  // asserts no bytes and no warnings
}

TEST(MarkupErrors, MarkupOverTheSizeLimitIsRefusedWithoutPosition) {
  MarkupError error = error_of(std::string(kMaxMarkupBytes + 1, 'a'));
  EXPECT_EQ(error.line, 0);
  EXPECT_EQ(error.to_string(), "receipt markup is 65537 bytes; the limit is 65536");
}

TEST(PlainTextPreview, AlignsAndWrapsAtThePaperColumns) {
  EXPECT_EQ(plain_text_preview("<C>Hi</C>", PaperWidth::k58), std::string(15, ' ') + "Hi\n");
  EXPECT_EQ(plain_text_preview("<C>Hi</C>", PaperWidth::k80), std::string(23, ' ') + "Hi\n");
  EXPECT_EQ(plain_text_preview("<R>9.00</R>", PaperWidth::k58), std::string(28, ' ') + "9.00\n");
  const std::string forty(40, 'a');
  EXPECT_EQ(plain_text_preview(forty, PaperWidth::k58),
            std::string(32, 'a') + "\n" + std::string(8, 'a') + "\n");
  EXPECT_EQ(plain_text_preview(forty, PaperWidth::k80), forty + "\n");
}

TEST(PlainTextPreview, ChineseCharactersTakeTwoColumnsAndWideTextIsSpaced) {
  std::string seventeen;
  for (int i = 0; i < 17; ++i)
    seventeen += "收";
  std::string sixteen;
  for (int i = 0; i < 16; ++i)
    sixteen += "收";
  EXPECT_EQ(plain_text_preview(seventeen, PaperWidth::k58), sixteen + "\n收\n");
  EXPECT_EQ(plain_text_preview("<W>AB</W>", PaperWidth::k58), "A B\n");
}

TEST(PlainTextPreview, ShowsNonTextItemsAsMarkers) {
  EXPECT_EQ(plain_text_preview("<LOGO>\nHi<HR><QR>x</QR><BARCODE>12</BARCODE><DRAWER><CUT>",
                               PaperWidth::k58),
            "[LOGO]\nHi\n" + std::string(32, '-') +
                "\n[QR: x]\n[BARCODE code128: 12]\n[DRAWER]\n[CUT]\n");
  EXPECT_EQ(plain_text_preview("<X>", PaperWidth::k58).substr(0, 40),
            "invalid receipt markup: 1:1: unknown tag");
}

TEST(SplitForPackets, KeepsCommandsAndChineseCharactersWhole) {
  const std::string stream = render_escpos("<B>收款</B>", PaperWidth::k58, 1).bytes;
  ASSERT_EQ(stream.size(), 15u);
  std::vector<std::string> chunks = split_for_packets(stream, 4);
  std::vector<std::string> expected = {
      bytes({0x1B, 0x40}),              // ESC @
      bytes({0x1B, 0x45, 0x01}),        // ESC E 1
      bytes({0x1C, 0x26, 0xCA, 0xD5}),  // FS & 收
      bytes({0xBF, 0xEE}),              // 款
      bytes({0x1B, 0x45, 0x00, 0x0A}),  // ESC E 0, LF
  };
  EXPECT_EQ(chunks, expected);
}

TEST(SplitForPackets, ChunksConcatenateToTheOriginalForEveryChunkSize) {
  const std::string stream = render_escpos("<C><B>桌号 12</B></C>\n<QR>" + std::string(60, 'q') +
                                               "</QR><BARCODE>AB12</BARCODE><CUT><DRAWER>",
                                           PaperWidth::k58, 2)
                                 .bytes;
  for (std::size_t max = 1; max <= stream.size() + 1; ++max) {
    std::vector<std::string> chunks = split_for_packets(stream, max);
    std::string joined;
    for (const std::string& chunk : chunks) {
      EXPECT_LE(chunk.size(), max);
      EXPECT_FALSE(chunk.empty());
      joined += chunk;
    }
    ASSERT_EQ(joined, stream) << "max_chunk " << max;
  }
}

TEST(SplitForPackets, CutsAUnitLongerThanAChunkAtArbitraryBoundaries) {
  // The QR store command (8 + 60 bytes) cannot fit in 16-byte chunks.
  const std::string stream =
      render_escpos("<QR>" + std::string(60, 'q') + "</QR>", PaperWidth::k58, 1).bytes;
  std::vector<std::string> chunks = split_for_packets(stream, 16);
  for (const std::string& chunk : chunks)
    EXPECT_LE(chunk.size(), 16u);
  EXPECT_GT(chunks.size(), stream.size() / 16);
}

TEST(SplitForPackets, EmptyStreamAndZeroChunkSize) {
  EXPECT_TRUE(split_for_packets("", 10).empty());
  EXPECT_EQ(split_for_packets("ab", 0), (std::vector<std::string>{"a", "b"}));
}

}  // namespace
}  // namespace counterlink::platform
