// Receipt markup -> PNG preview. The PNG is decoded back with libpng and its
// dots inspected; QR codes are checked module by module against libqrencode's
// matrix and, where zbar is installed (libzbar-dev, in scripts/bootstrap),
// QR and bar codes are decoded from the image the way a scanner would.
#include "counterlink/platform/receipt_preview.h"

#include <algorithm>
#include <csetjmp>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <png.h>
#include <qrencode.h>
#include <unistd.h>

#include "counterlink/platform/receipt.h"

#include "printing/barcode.h"

#ifdef COUNTERLINK_HAVE_ZBAR
#include <zbar.h>
#endif

namespace counterlink::platform {
namespace {

using printing::code128_modules;
using printing::code128_widths;
using printing::code128b_symbols;
using printing::ean13_check_digit;
using printing::ean13_full_number;
using printing::ean13_modules;

// ---------------------------------------------------------------------------
// Reading the PNG back.

struct DecodedPng {
  int width = 0;
  int height = 0;
  int bit_depth = 0;
  int color_type = -1;
  png_uint_32 pixels_per_metre = 0;
  std::map<std::string, std::string> text;
  std::vector<std::uint8_t> gray;  // 8-bit, 0 black .. 255 white

  bool ink(int x, int y) const { return gray[static_cast<std::size_t>(y) * width + x] < 128; }
};

struct ReadCursor {
  const std::string* data;
  std::size_t offset;
};

void read_from_string(png_structp png, png_bytep out, png_size_t length) {
  auto* cursor = static_cast<ReadCursor*>(png_get_io_ptr(png));
  if (cursor->offset + length > cursor->data->size()) png_error(png, "truncated PNG");
  std::memcpy(out, cursor->data->data() + cursor->offset, length);
  cursor->offset += length;
}

// Plain C data between setjmp and the libpng calls that may longjmp.
bool read_png_rows(png_structp png, png_infop info, ReadCursor* cursor, DecodedPng* out) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_read_fn(png, cursor, read_from_string);
  png_read_info(png, info);
  out->width = static_cast<int>(png_get_image_width(png, info));
  out->height = static_cast<int>(png_get_image_height(png, info));
  out->bit_depth = png_get_bit_depth(png, info);
  out->color_type = png_get_color_type(png, info);
  png_uint_32 x_res = 0;
  png_uint_32 y_res = 0;
  int unit = 0;
  if (png_get_pHYs(png, info, &x_res, &y_res, &unit) != 0 && unit == PNG_RESOLUTION_METER)
    out->pixels_per_metre = x_res;
  png_textp texts = nullptr;
  int count = 0;
  png_get_text(png, info, &texts, &count);
  for (int i = 0; i < count; ++i)
    out->text[texts[i].key] = texts[i].text;
  if (out->bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  png_read_update_info(png, info);
  out->gray.resize(static_cast<std::size_t>(out->width) * out->height);
  for (int y = 0; y < out->height; ++y)
    png_read_row(png, &out->gray[static_cast<std::size_t>(y) * out->width], nullptr);
  png_read_end(png, nullptr);
  return true;
}

DecodedPng decode(const std::string& png_bytes) {
  DecodedPng out;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  ReadCursor cursor{&png_bytes, 0};
  const bool ok = read_png_rows(png, info, &cursor, &out);
  png_destroy_read_struct(&png, &info, nullptr);
  EXPECT_TRUE(ok) << "libpng could not decode the preview";
  return out;
}

// Renders and decodes; fails the test on a render error.
DecodedPng render(std::string_view markup, PaperWidth paper = PaperWidth::k58) {
  PreviewResult result = render_preview_png(markup, paper);
  EXPECT_TRUE(result.ok()) << (result.error ? result.error->to_string() : "");
  if (!result.ok()) return {};
  return decode(result.png);
}

// ---------------------------------------------------------------------------
// Looking at the dots.

struct Box {
  int left = 1 << 30;
  int top = 1 << 30;
  int right = -1;  // inclusive
  int bottom = -1;
  bool empty() const { return right < 0; }
  int width() const { return right - left + 1; }
  int height() const { return bottom - top + 1; }
};

Box ink_box(const DecodedPng& image, int x0 = 0, int y0 = 0, int x1 = -1, int y1 = -1) {
  if (x1 < 0) x1 = image.width;
  if (y1 < 0) y1 = image.height;
  Box box;
  for (int y = y0; y < y1; ++y)
    for (int x = x0; x < x1; ++x)
      if (image.ink(x, y)) {
        box.left = std::min(box.left, x);
        box.right = std::max(box.right, x);
        box.top = std::min(box.top, y);
        box.bottom = std::max(box.bottom, y);
      }
  return box;
}

int ink_count(const DecodedPng& image) {
  return static_cast<int>(
      std::count_if(image.gray.begin(), image.gray.end(), [](std::uint8_t g) { return g < 128; }));
}

// Rows that hold ink, grouped into bands separated by blank rows.
std::vector<std::pair<int, int>> ink_bands(const DecodedPng& image) {
  std::vector<std::pair<int, int>> bands;
  for (int y = 0; y < image.height; ++y) {
    bool any = false;
    for (int x = 0; x < image.width && !any; ++x)
      any = image.ink(x, y);
    if (!any) continue;
    if (!bands.empty() && bands.back().second == y - 1) {
      bands.back().second = y;
    } else {
      bands.emplace_back(y, y);
    }
  }
  return bands;
}

// Run lengths of ink/no-ink along row y from the first ink to the last,
// starting with an ink run.
std::vector<int> runs_along_row(const DecodedPng& image, int y) {
  const Box box = ink_box(image, 0, y, image.width, y + 1);
  std::vector<int> runs;
  bool current = true;
  int length = 0;
  for (int x = box.left; x <= box.right; ++x) {
    if (image.ink(x, y) == current) {
      ++length;
    } else {
      runs.push_back(length);
      current = !current;
      length = 1;
    }
  }
  runs.push_back(length);
  return runs;
}

// Run lengths of a module sequence (bars first), scaled to dots.
std::vector<int> runs_of_modules(const std::vector<bool>& modules, int dots_per_module) {
  std::vector<int> runs;
  for (std::size_t i = 0; i < modules.size(); ++i) {
    if (i == 0 || modules[i] != modules[i - 1]) runs.push_back(0);
    runs.back() += dots_per_module;
  }
  return runs;
}

#ifdef COUNTERLINK_HAVE_ZBAR
// Everything zbar finds in the image, as "TYPE:data", the image padded with
// white as paper would be.
std::vector<std::string> scan(const DecodedPng& image) {
  using namespace zbar;  // zbar.h declares its C API in namespace zbar for C++
  constexpr int kPad = 48;
  const int width = image.width + 2 * kPad;
  const int height = image.height + 2 * kPad;
  std::vector<std::uint8_t> padded(static_cast<std::size_t>(width) * height, 255);
  for (int y = 0; y < image.height; ++y)
    std::memcpy(&padded[static_cast<std::size_t>(y + kPad) * width + kPad],
                &image.gray[static_cast<std::size_t>(y) * image.width], image.width);
  zbar_image_scanner_t* scanner = zbar_image_scanner_create();
  zbar_image_scanner_set_config(scanner, ZBAR_NONE, ZBAR_CFG_ENABLE, 1);
  zbar_image_t* frame = zbar_image_create();
  zbar_image_set_format(frame, zbar_fourcc('Y', '8', '0', '0'));
  zbar_image_set_size(frame, width, height);
  zbar_image_set_data(frame, padded.data(), padded.size(), nullptr);
  zbar_scan_image(scanner, frame);
  std::vector<std::string> found;
  for (const zbar_symbol_t* symbol = zbar_image_first_symbol(frame); symbol != nullptr;
       symbol = zbar_symbol_next(symbol)) {
    found.push_back(std::string(zbar_get_symbol_name(zbar_symbol_get_type(symbol))) + ":" +
                    std::string(zbar_symbol_get_data(symbol), zbar_symbol_get_data_length(symbol)));
  }
  zbar_image_destroy(frame);
  zbar_image_scanner_destroy(scanner);
  std::sort(found.begin(), found.end());
  return found;
}
#endif

constexpr int kLinePitch = 30;  // 24-dot cell + 6-dot gap

// ---------------------------------------------------------------------------
// The image.

TEST(ReceiptPreview, IsAOneBitGrayscalePngAtThePaperWidthSignedByCounterlink) {
  const DecodedPng narrow = render("Hello", PaperWidth::k58);
  EXPECT_EQ(narrow.width, 384);
  EXPECT_EQ(narrow.bit_depth, 1);
  EXPECT_EQ(narrow.color_type, PNG_COLOR_TYPE_GRAY);
  EXPECT_EQ(narrow.text.at("Software"), "Counterlink");
  EXPECT_EQ(narrow.pixels_per_metre, 7992u);  // 203 dpi
  EXPECT_FALSE(ink_box(narrow).empty());
  // White paper: the corners are blank.
  EXPECT_FALSE(narrow.ink(0, 0));
  EXPECT_FALSE(narrow.ink(383, narrow.height - 1));

  const DecodedPng wide = render("Hello", PaperWidth::k80);
  EXPECT_EQ(wide.width, 576);
  EXPECT_EQ(wide.height, narrow.height);
}

TEST(ReceiptPreview, HeightGrowsByOneLinePerLine) {
  const int one = render("a").height;
  const int two = render("a\nb").height;
  const int three = render("a<BR>b<BR>c").height;
  EXPECT_EQ(two - one, kLinePitch);
  EXPECT_EQ(three - two, kLinePitch);
  EXPECT_EQ(render("a\n\nb").height - two, kLinePitch);  // a blank line feeds too
  EXPECT_EQ(render("<H>a</H>").height - one, 24);        // double height
}

TEST(ReceiptPreview, WrapsWherePlainTextPreviewWraps) {
  const std::string forty(40, 'x');
  ASSERT_EQ(plain_text_preview(forty, PaperWidth::k58),
            std::string(32, 'x') + "\n" + std::string(8, 'x') + "\n");
  const DecodedPng image = render(forty);
  const auto bands = ink_bands(image);
  ASSERT_EQ(bands.size(), 2u);
  const Box first = ink_box(image, 0, bands[0].first, -1, bands[0].second + 1);
  const Box second = ink_box(image, 0, bands[1].first, -1, bands[1].second + 1);
  EXPECT_LT(first.left, 12);
  EXPECT_GT(first.right, 384 - 12);  // 32 cells fill the line
  EXPECT_LT(second.left, 12);
  EXPECT_GT(second.right, 7 * 12);  // 8 cells
  EXPECT_LT(second.right, 8 * 12);
  // On 80 mm paper the same line fits.
  EXPECT_EQ(ink_bands(render(forty, PaperWidth::k80)).size(), 1u);

  // Chinese characters take two columns: 17 wrap after 16.
  std::string seventeen;
  for (int i = 0; i < 17; ++i)
    seventeen += "收";
  const DecodedPng chinese = render(seventeen);
  const auto rows = ink_bands(chinese);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_LT(ink_box(chinese, 0, rows[1].first, -1, rows[1].second + 1).right, 24);
}

TEST(ReceiptPreview, CentredTextIsCentredAndRightAlignedTextTouchesTheRightEdge) {
  for (PaperWidth paper : {PaperWidth::k58, PaperWidth::k80}) {
    const int dots = paper_dots(paper);
    const Box centred = ink_box(render("<C>Total 86.00</C>", paper));
    const int left_gap = centred.left;
    const int right_gap = dots - 1 - centred.right;
    EXPECT_LE(std::abs(left_gap - right_gap), 12) << left_gap << " vs " << right_gap;

    const Box right = ink_box(render("<R>9.00</R>", paper));
    EXPECT_GE(right.right, dots - 12);
    EXPECT_GE(right.left, dots - 4 * 12);

    const Box left = ink_box(render("9.00", paper));
    EXPECT_LT(left.left, 12);
  }
}

TEST(ReceiptPreview, BoldHasMoreInkThanNormal) {
  const int normal = ink_count(render("Kung Pao 38.00 宫保鸡丁"));
  const int bold = ink_count(render("<B>Kung Pao 38.00 宫保鸡丁</B>"));
  EXPECT_GT(bold, normal * 11 / 10) << normal << " vs " << bold;
  // Same layout: bold does not change the width.
  EXPECT_LE(ink_box(render("<B>MMMM</B>")).right, 4 * 12 + 1);
}

TEST(ReceiptPreview, DoubleWidthAndHeightScaleTheGlyphs) {
  const Box normal = ink_box(render("ABC"));
  const Box wide = ink_box(render("<W>ABC</W>"));
  EXPECT_NEAR(wide.width(), 2 * normal.width(), 2);
  EXPECT_EQ(wide.height(), normal.height());
  const Box tall = ink_box(render("<H>ABC</H>"));
  EXPECT_EQ(tall.width(), normal.width());
  EXPECT_NEAR(tall.height(), 2 * normal.height(), 1);
  const Box both = ink_box(render("<W><H>ABC</H></W>"));
  EXPECT_NEAR(both.width(), 2 * normal.width(), 2);
  EXPECT_NEAR(both.height(), 2 * normal.height(), 1);
  // Normal and double-height cells on one line share the line's bottom (the
  // printer scales the whole cell, so descenders end at the same row).
  const DecodedPng mixed = render("y<H>y</H>");
  const Box normal_y = ink_box(mixed, 0, 0, 12);
  const Box tall_y = ink_box(mixed, 12, 0, 24);
  EXPECT_NEAR(tall_y.height(), 2 * normal_y.height(), 1);
  EXPECT_NEAR(normal_y.bottom, tall_y.bottom, 2);
}

TEST(ReceiptPreview, ChineseCharactersAreDrawnInTwentyFourDotCells) {
  const DecodedPng image = render("收款中文");
  const auto bands = ink_bands(image);
  ASSERT_EQ(bands.size(), 1u);
  for (int cell = 0; cell < 4; ++cell) {
    const Box box = ink_box(image, cell * 24, 0, cell * 24 + 24);
    ASSERT_FALSE(box.empty()) << "cell " << cell;
    EXPECT_GT(box.width(), 14) << "cell " << cell;  // a full-width ideograph, not a '?'
    EXPECT_GT(box.height(), 14) << "cell " << cell;
    EXPECT_LE(box.height(), 24);
  }
  EXPECT_TRUE(ink_box(image, 4 * 24, 0).empty());
  // Mixed with ASCII: "A收" puts the ideograph at columns 1..2 (dots 12..35).
  const DecodedPng mixed = render("A收");
  EXPECT_FALSE(ink_box(mixed, 12, 0, 36).empty());
  EXPECT_TRUE(ink_box(mixed, 36, 0).empty());
}

TEST(ReceiptPreview, RuleIsDashedAcrossThePaper) {
  const DecodedPng image = render("<HR>");
  const Box box = ink_box(image);
  EXPECT_LT(box.left, 12);
  EXPECT_GT(box.right, 384 - 12);
  EXPECT_LE(box.height(), 4);
  // Dashed: the rule's row has gaps.
  const std::vector<int> runs = runs_along_row(image, (box.top + box.bottom) / 2);
  EXPECT_GE(runs.size(), 2u * 32 - 1);
}

TEST(ReceiptPreview, LogoIsALabelledBoxCutIsADashedLineAndTheDrawerIsInvisible) {
  const DecodedPng logo = render("<C><LOGO></C>");
  const Box box = ink_box(logo);
  EXPECT_EQ(box.width(), 192);  // half the paper, centred
  EXPECT_EQ(box.left, 96);
  // The label inside the box.
  EXPECT_FALSE(ink_box(logo, box.left + 8, box.top + 8, box.right - 8, box.bottom - 8).empty());

  const DecodedPng cut = render("<CUT>");
  const Box line = ink_box(cut, 12, 0, 384 - 12);  // between the end marks
  EXPECT_LE(line.height(), 2);
  EXPECT_GE(runs_along_row(cut, line.top).size(), 40u);  // dashes

  EXPECT_EQ(render_preview_png("Paid<DRAWER>", PaperWidth::k58).png,
            render_preview_png("Paid", PaperWidth::k58).png);
}

// ---------------------------------------------------------------------------
// QR codes.

TEST(ReceiptPreview, QrCodeModulesMatchLibqrencodesMatrix) {
  const std::string data = "https://pay.example.com/o/1042";
  QRcode* expected = QRcode_encodeString(data.c_str(), 0, QR_ECLEVEL_M, QR_MODE_8, 1);
  ASSERT_NE(expected, nullptr);
  const int modules = expected->width;
  for (int size : {3, 5}) {
    const DecodedPng image = render("<QR size=\"" + std::to_string(size) + "\">" + data + "</QR>");
    const Box box = ink_box(image);
    // Finder patterns put dark modules in three corners: the symbol's box.
    ASSERT_EQ(box.width(), modules * size);
    ASSERT_EQ(box.height(), modules * size);
    EXPECT_EQ(box.left, 4 * size);  // left aligned after the 4-module quiet zone
    int mismatches = 0;
    for (int row = 0; row < modules; ++row)
      for (int col = 0; col < modules; ++col) {
        const bool dark = (expected->data[row * modules + col] & 1) != 0;
        const int x = box.left + col * size + size / 2;
        const int y = box.top + row * size + size / 2;
        if (image.ink(x, y) != dark) ++mismatches;
      }
    EXPECT_EQ(mismatches, 0) << "module size " << size;
  }
  QRcode_free(expected);
}

TEST(ReceiptPreview, QrCodeIsCentredUnderCentreAlignment) {
  const Box box = ink_box(render("<C><QR size=\"4\">x</QR></C>"));
  EXPECT_LE(std::abs(box.left - (383 - box.right)), 1);
}

#ifdef COUNTERLINK_HAVE_ZBAR
TEST(ReceiptPreview, QrCodeScansBackToItsData) {
  EXPECT_EQ(scan(render("<C><QR size=\"4\">https://pay.example.com/o/1042?t=9&amp;a=86</QR></C>")),
            std::vector<std::string>{"QR-Code:https://pay.example.com/o/1042?t=9&a=86"});
  // 400 bytes with the default (largest fitting) module size, UTF-8 inside.
  std::string long_data = "订单 ";
  long_data += std::string(400 - long_data.size(), 'z');
  EXPECT_EQ(scan(render("<QR>" + long_data + "</QR>")),
            std::vector<std::string>{"QR-Code:" + long_data});
}
#endif

// ---------------------------------------------------------------------------
// Bar codes: the encoders.

TEST(BarcodeEncoders, Ean13CheckDigitMatchesKnownNumbers) {
  EXPECT_EQ(ean13_check_digit("400638133393"), '1');  // 4006381333931
  EXPECT_EQ(ean13_check_digit("590123412345"), '7');  // 5901234123457
  EXPECT_EQ(ean13_check_digit("978030640615"), '7');  // ISBN 978-0-306-40615-7
  EXPECT_EQ(ean13_check_digit("000000000000"), '0');  // sum 0: check 0, not 10
  EXPECT_EQ(ean13_check_digit("12345678901"), '\0');  // too short
  EXPECT_EQ(ean13_full_number("400638133393"), "4006381333931");
  EXPECT_EQ(ean13_full_number("4006381333931"), "4006381333931");
  EXPECT_EQ(ean13_full_number("40063813339"), "");
  EXPECT_TRUE(ean13_modules("4006381333932").empty());  // wrong check digit
}

TEST(BarcodeEncoders, Ean13ModulesHaveGuardsParityAndNinetyFiveModules) {
  const std::vector<bool> modules = ean13_modules("4006381333931");
  ASSERT_EQ(modules.size(), 95u);
  auto slice = [&](int from, int count) {
    std::string s;
    for (int i = from; i < from + count; ++i)
      s += modules[i] ? '1' : '0';
    return s;
  };
  EXPECT_EQ(slice(0, 3), "101");
  EXPECT_EQ(slice(45, 5), "01010");
  EXPECT_EQ(slice(92, 3), "101");
  // First digit 4 selects parity LGLLGG for digits 2..7 (0 0 6 3 8 1):
  // 0 in L = 0001101, 0 in G = 0100111, 6 in L = 0101111, 3 in L = 0111101,
  // 8 in G = 0001001, 1 in G = 0110011.
  EXPECT_EQ(slice(3, 42),
            "0001101"
            "0100111"
            "0101111"
            "0111101"
            "0001001"
            "0110011");
  // Right-hand digits 3 3 3 9 3 1 in R: 1000010 x3, 1110100, 1000010, 1100110.
  EXPECT_EQ(slice(50, 42),
            "1000010"
            "1000010"
            "1000010"
            "1110100"
            "1000010"
            "1100110");
}

TEST(BarcodeEncoders, Code128SymbolValuesAndChecksumForAKnownString) {
  // "PJJ123C" in code set B: start B = 104; values are ASCII - 32:
  // P=48 J=42 J=42 1=17 2=18 3=19 C=35. Check = (104 + 1*48 + 2*42 + 3*42
  // + 4*17 + 5*18 + 6*19 + 7*35) mod 103 = (104+48+84+126+68+90+114+245)
  // mod 103 = 879 mod 103 = 55. Stop = 106.
  EXPECT_EQ(code128b_symbols("PJJ123C"),
            (std::vector<int>{104, 48, 42, 42, 17, 18, 19, 35, 55, 106}));
  // "ORD1042": 104 + 47 + 2*50 + 3*36 + 4*17 + 5*16 + 6*20 + 7*18 = 753;
  // 753 mod 103 = 32.
  EXPECT_EQ(code128b_symbols("ORD1042"),
            (std::vector<int>{104, 47, 50, 36, 17, 16, 20, 18, 32, 106}));
  EXPECT_TRUE(code128b_symbols("").empty());
  EXPECT_TRUE(code128b_symbols("tab\there").empty());
}

TEST(BarcodeEncoders, Code128PatternsAreElevenModulesWithEvenBarsAndAllDistinct) {
  std::vector<std::array<int, 7>> seen;
  for (int value = 0; value <= 106; ++value) {
    const std::array<int, 7> w = code128_widths(value);
    int total = 0;
    int bars = 0;
    for (int i = 0; i < 7; ++i) {
      total += w[i];
      if (i % 2 == 0) bars += w[i];
      EXPECT_LE(w[i], 4) << value;
    }
    EXPECT_EQ(total, value == 106 ? 13 : 11) << value;
    EXPECT_EQ(bars % 2, 0) << value;
    EXPECT_EQ(std::count(seen.begin(), seen.end(), w), 0) << value;
    seen.push_back(w);
  }
  // Known patterns: start B 211214, "0" (value 16) 123122, stop 2331112.
  EXPECT_EQ(code128_widths(104), (std::array<int, 7>{2, 1, 1, 2, 1, 4, 0}));
  EXPECT_EQ(code128_widths(16), (std::array<int, 7>{1, 2, 3, 1, 2, 2, 0}));
  EXPECT_EQ(code128_widths(106), (std::array<int, 7>{2, 3, 3, 1, 1, 1, 2}));
  // 11 modules a symbol, 13 for the stop.
  EXPECT_EQ(code128_modules(code128b_symbols("ORD1042")).size(), 9u * 11 + 13);
}

// ---------------------------------------------------------------------------
// Bar codes in the image.

TEST(ReceiptPreview, BarcodeBarsAreTheEncodersModulesTwoDotsEachWithDigitsBelow) {
  {
    const DecodedPng image = render("<BARCODE height=\"60\">ORD1042</BARCODE>");
    const Box bars = ink_box(image, 0, 0, -1, 16 + 30);  // the bars' top rows
    EXPECT_EQ(runs_along_row(image, bars.top + 10),
              runs_of_modules(code128_modules(code128b_symbols("ORD1042")), 2));
    // 60 dots of bars, then the human-readable text under them.
    const auto bands = ink_bands(image);
    ASSERT_EQ(bands.size(), 2u);
    EXPECT_EQ(bands[0].second - bands[0].first + 1, 60);
    const Box text = ink_box(image, 0, bands[1].first, -1, bands[1].second + 1);
    EXPECT_GT(text.width(), 6 * 12);  // seven characters
    EXPECT_LE(text.width(), 7 * 12);
  }
  {
    const DecodedPng image = render("<BARCODE type=\"ean13\">400638133393</BARCODE>");
    const Box bars = ink_box(image);
    EXPECT_EQ(runs_along_row(image, bars.top + 10),
              runs_of_modules(ean13_modules("4006381333931"), 2));
    EXPECT_EQ(ink_bands(image)[0].second - ink_bands(image)[0].first + 1, 80);  // default height
  }
}

#ifdef COUNTERLINK_HAVE_ZBAR
TEST(ReceiptPreview, BarcodesScanBackToTheirData) {
  EXPECT_EQ(scan(render("<C><BARCODE>ORD1042</BARCODE></C>")),
            std::vector<std::string>{"CODE-128:ORD1042"});
  EXPECT_EQ(scan(render("<C><BARCODE type=\"ean13\">400638133393</BARCODE></C>")),
            std::vector<std::string>{"EAN-13:4006381333931"});
  // Every printable ASCII character, 14 at a time (the most 58 mm allows).
  std::string all;
  for (char c = 0x20; c <= 0x7E; ++c)
    all += c;
  for (std::size_t i = 0; i < all.size(); i += 14) {
    const std::string chunk = all.substr(i, 14);
    std::string escaped;
    for (char c : chunk)
      escaped += c == '<' ? "&lt;" : c == '&' ? "&amp;" : std::string(1, c);
    EXPECT_EQ(scan(render("<C><BARCODE>" + escaped + "</BARCODE></C>")),
              std::vector<std::string>{"CODE-128:" + chunk});
  }
}
#endif

// ---------------------------------------------------------------------------
// Errors and limits.

TEST(ReceiptPreview, InvalidMarkupGivesTheSameErrorAsRenderEscpos) {
  for (std::string_view markup : {"ok\n<B>bold", "a<X>", "<W>x</B>", "fish & chips",
                                  "<BARCODE>123456789012345</BARCODE>", "<QR size=\"17\">x</QR>"}) {
    const PreviewResult preview = render_preview_png(markup, PaperWidth::k58);
    const RenderResult escpos = render_escpos(markup, PaperWidth::k58, 1);
    ASSERT_FALSE(escpos.ok()) << markup;
    EXPECT_EQ(preview.failure, PreviewResult::Failure::kInvalidMarkup) << markup;
    ASSERT_TRUE(preview.error.has_value()) << markup;
    EXPECT_EQ(preview.error->to_string(), escpos.error->to_string());
    EXPECT_EQ(preview.error->line, escpos.error->line);
    EXPECT_EQ(preview.error->column, escpos.error->column);
    EXPECT_TRUE(preview.png.empty());
  }
  EXPECT_EQ(render_preview_png("ok\n<B>bold", PaperWidth::k58).error->to_string().substr(0, 18),
            "2:1: unclosed <B> ");
}

TEST(ReceiptPreview, MissingFontIsAClearErrorNotACrash) {
  PreviewOptions options;
  options.font_path = "/nonexistent/wqy-microhei.ttc";
  const PreviewResult result = render_preview_png("Hi", PaperWidth::k58, options);
  EXPECT_EQ(result.failure, PreviewResult::Failure::kNoFont);
  ASSERT_TRUE(result.error.has_value());
  EXPECT_NE(result.error->message.find("fonts-wqy-microhei"), std::string::npos)
      << result.error->message;
  EXPECT_NE(result.error->message.find("/nonexistent/wqy-microhei.ttc"), std::string::npos);
  EXPECT_EQ(result.error->line, 0);
  EXPECT_TRUE(result.png.empty());

  // Markup errors come first, whatever the font.
  EXPECT_EQ(render_preview_png("<X>", PaperWidth::k58, options).failure,
            PreviewResult::Failure::kInvalidMarkup);
}

TEST(ReceiptPreview, TheEnvironmentVariableOverridesTheSearchPath) {
  ASSERT_EQ(setenv(kPreviewFontEnv, "/nonexistent/from-env.ttf", 1), 0);
  const PreviewResult missing = render_preview_png("Hi", PaperWidth::k58);
  const PreviewFont located = locate_preview_font();
  ASSERT_EQ(setenv(kPreviewFontEnv, kPreviewFontSearchPath[0], 1), 0);
  const PreviewResult present = render_preview_png("Hi", PaperWidth::k58);
  unsetenv(kPreviewFontEnv);
  EXPECT_EQ(missing.failure, PreviewResult::Failure::kNoFont);
  EXPECT_NE(missing.error->message.find("COUNTERLINK_PREVIEW_FONT"), std::string::npos);
  EXPECT_TRUE(located.path.empty());
  EXPECT_TRUE(present.ok());
  // Explicit options win over the environment.
  EXPECT_EQ(locate_preview_font(PreviewOptions{kPreviewFontSearchPath[0]}).path,
            kPreviewFontSearchPath[0]);
}

TEST(ReceiptPreview, AFileThatIsNotAFontOrHasNoChineseIsAClearError) {
  const std::filesystem::path bogus =
      std::filesystem::temp_directory_path() / ("not-a-font-" + std::to_string(getpid()) + ".ttf");
  std::ofstream(bogus) << "this is not a font";
  const PreviewResult result =
      render_preview_png("Hi", PaperWidth::k58, PreviewOptions{bogus.string()});
  std::filesystem::remove(bogus);
  EXPECT_EQ(result.failure, PreviewResult::Failure::kNoFont);
  EXPECT_NE(result.error->message.find("fonts-wqy-microhei"), std::string::npos)
      << result.error->message;

  const std::string latin_only = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
  if (!std::filesystem::exists(latin_only)) GTEST_SKIP() << "no DejaVu font to try";
  const PreviewResult latin = render_preview_png("Hi", PaperWidth::k58, PreviewOptions{latin_only});
  EXPECT_EQ(latin.failure, PreviewResult::Failure::kNoFont);
  EXPECT_NE(latin.error->message.find("no scalable Chinese glyphs"), std::string::npos);
}

TEST(ReceiptPreview, ATallerReceiptThanTheCapIsRefusedAndTheLargestMarkupStaysBounded) {
  // 64 KiB of line feeds would be ~2 million dots.
  const std::string feeds(kMaxMarkupBytes, '\n');
  const PreviewResult tall = render_preview_png(feeds, PaperWidth::k58);
  EXPECT_EQ(tall.failure, PreviewResult::Failure::kTooTall);
  EXPECT_NE(tall.error->message.find("20000 dots"), std::string::npos) << tall.error->message;
  EXPECT_TRUE(tall.png.empty());

  // Nearly 64 KiB that fits: 650 full lines of Chinese (16 x 3 bytes + LF).
  std::string line;
  for (int i = 0; i < 16; ++i)
    line += i % 2 == 0 ? "宫" : "保";
  line += "\n";
  std::string big;
  for (int i = 0; i < 650; ++i)
    big += line;
  ASSERT_LE(big.size(), kMaxMarkupBytes);
  const DecodedPng image = render(big);
  EXPECT_EQ(image.height, 16 + 650 * kLinePitch + 16);
  EXPECT_LE(image.height, kPreviewMaxHeightDots);
}

TEST(ReceiptPreview, ConcurrentRendersProduceIdenticalImages) {
  const std::string markup =
      "<C><B><W>老王川菜馆</W></B></C>\n合计 Total: ￥86.00\n<QR size=\"3\">x</QR>";
  const std::string reference = render_preview_png(markup, PaperWidth::k80).png;
  ASSERT_FALSE(reference.empty());
  std::vector<std::string> results(4);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < results.size(); ++i)
    threads.emplace_back([&, i] {
      for (int k = 0; k < 3; ++k)
        results[i] = render_preview_png(markup, PaperWidth::k80).png;
    });
  for (std::thread& t : threads)
    t.join();
  for (const std::string& png : results)
    EXPECT_EQ(png, reference);
}

// Writes the sample a person can look at, when asked:
// COUNTERLINK_PREVIEW_SAMPLE=/tmp/preview-sample.png receipt_preview_unit_tests
TEST(ReceiptPreview, RendersTheDocumentedRestaurantOrder) {
  const std::string markup =
      "<LOGO>\n"
      "<C><B><W><H>老王川菜馆</H></W></B>\n"
      "Lao Wang Sichuan Kitchen</C>\n"
      "桌号 Table: 12  单号 Order: 1042\n"
      "2026-11-25 12:31\n"
      "<HR>\n"
      "宫保鸡丁 Kung Pao     x1  38.00\n"
      "麻婆豆腐 Mapo Tofu    x2  44.00\n"
      "米饭 Rice             x2   4.00\n"
      "<HR>\n"
      "<R><B>合计 Total: ￥86.00</B></R>\n"
      "备注: 少辣 &amp; no peanuts\n"
      "<C><QR size=\"5\">https://pay.example.com/o/1042</QR>\n"
      "扫码付款 Scan to pay</C>\n"
      "<C><BARCODE type=\"code128\">ORD1042</BARCODE></C>\n"
      "<CUT><DRAWER>";
  const PreviewResult result = render_preview_png(markup, PaperWidth::k58);
  ASSERT_TRUE(result.ok()) << result.error->to_string();
  const DecodedPng image = decode(result.png);
  EXPECT_EQ(image.width, 384);
  EXPECT_GT(image.height, 600);
#ifdef COUNTERLINK_HAVE_ZBAR
  EXPECT_EQ(scan(image), (std::vector<std::string>{"CODE-128:ORD1042",
                                                   "QR-Code:https://pay.example.com/o/1042"}));
#endif
  if (const char* path = std::getenv("COUNTERLINK_PREVIEW_SAMPLE"))
    std::ofstream(path, std::ios::binary) << result.png;
}

}  // namespace
}  // namespace counterlink::platform
