#include "counterlink/platform/receipt_preview.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <utility>
#include <vector>

#include <qrencode.h>

#include "printing/barcode.h"
#include "printing/png_image.h"
#include "printing/printer_font.h"
#include "printing/receipt_markup.h"

namespace counterlink::platform {
namespace {

using printing::BarcodeType;
using printing::Event;
using printing::Glyph;
using printing::kCellHeight;
using printing::kNarrowCellWidth;
using printing::kWideCellWidth;
using printing::MonoImage;
using printing::PrinterFont;
using printing::Tag;

constexpr int kDotsPerInch = 203;
// Paper above the first line and below the last (2 mm).
constexpr int kMarginDots = 16;
// A text line is its tallest cell plus this gap: 30-dot lines, close to the
// default line spacing (ESC 2) of 203-dpi receipt printers.
constexpr int kLineGapDots = 6;
// A bare line feed advances one default line.
constexpr int kEmptyLineDots = kCellHeight + kLineGapDots;
// QR codes keep the 4-module quiet zone the parser's width check reserves.
constexpr int kQrQuietModules = 4;
// Between a bar code's bars and its human-readable digits.
constexpr int kHriGapDots = 4;
// The logo placeholder: the NV image's size is unknown here, so a box of half
// the paper's width and 9 mm, labelled "LOGO".
constexpr int kLogoHeightDots = 72;
constexpr int kLogoBorderDots = 2;
// <CUT>: the paper feeds to the cutter; the preview marks it with a dashed line
// in a band of this height.
constexpr int kCutBandDots = 32;
constexpr int kCutDashDots = 8;
constexpr int kCutGapDots = 6;

std::string paper_name(PaperWidth paper) {
  return paper == PaperWidth::k58 ? "58 mm" : "80 mm";
}

// The code point of one UTF-8 character (validated by the parser).
char32_t decode_utf8(const std::string& s) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  if (s.empty()) return U' ';
  const unsigned char lead = byte(0);
  if (lead < 0x80) return lead;
  const std::size_t len = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
  if (s.size() < len) return U'?';
  char32_t cp = lead & (0x7F >> len);
  for (std::size_t i = 1; i < len; ++i)
    cp = (cp << 6) | (byte(i) & 0x3F);
  return cp;
}

// One encoded QR symbol from libqrencode, freed with it.
struct QrSymbolDeleter {
  void operator()(QRcode* code) const { QRcode_free(code); }
};
using QrSymbol = std::unique_ptr<QRcode, QrSymbolDeleter>;

// Model 2, level M, as the printer is told (GS ( k fn 165, 169). libqrencode
// picks the smallest version and switches to numeric or alphanumeric mode
// where that is shorter, as printers do; the parser's width check assumed
// byte mode, an upper bound, so the symbol always fits.
QrSymbol encode_qr(const std::string& data) {
  return QrSymbol(QRcode_encodeString(data.c_str(), 0, QR_ECLEVEL_M, QR_MODE_8, 1));
}

// What the layout draws. The layout runs twice: once with no canvas to
// measure the height (and refuse an image over the cap before allocating
// it), then onto the canvas.
struct Canvas {
  MonoImage& image;
  PrinterFont& font;
};

// One character as the printer holds it in its line buffer.
struct Cell {
  char32_t code_point;
  int columns;  // in normal-width columns, after <W>
  bool double_byte;
  bool bold;
  bool wide;
  bool tall;
};

// Places the events of one copy top to bottom, mirroring the printer (and
// PreviewWriter in receipt.cc, whose wrapping docs/receipt-markup.md
// specifies): a line buffer of cells wrapped at the paper's columns, alignment
// applied per printed line, blocks that end the current line first.
class Layout {
 public:
  Layout(PaperWidth paper, Canvas* canvas)
      : columns_(paper_columns(paper)),
        dots_(paper_dots(paper)),
        canvas_(canvas),
        y_(kMarginDots) {}

  // False once the content is taller than the cap; stop feeding events then.
  bool write(const Event& event) {
    switch (event.kind) {
      case Event::Kind::kText:
        for (const Glyph& glyph : event.glyphs) {
          const bool double_byte = glyph.printed.size() == 2;
          line_.push_back(Cell{decode_utf8(glyph.shown),
                               static_cast<int>(glyph.printed.size()) * (wide_ ? 2 : 1),
                               double_byte, bold_, wide_, tall_});
        }
        break;
      case Event::Kind::kNewline:
        flush(true);
        break;
      case Event::Kind::kOpen:
      case Event::Kind::kClose:
        style(event.tag, event.kind == Event::Kind::kOpen);
        break;
      case Event::Kind::kVoid:
        void_tag(event.tag);
        break;
      case Event::Kind::kQr:
        flush(false);
        qr(event);
        break;
      case Event::Kind::kBarcode:
        flush(false);
        barcode(event);
        break;
    }
    return !too_tall();
  }

  // Total image height, margins included.
  int finish() {
    flush(false);
    return y_ + kMarginDots;
  }

  bool too_tall() const { return y_ + kMarginDots > kPreviewMaxHeightDots; }
  bool failed() const { return failed_; }

 private:
  void style(Tag tag, bool on) {
    switch (tag) {
      case Tag::kCentre:
      case Tag::kLeft:
      case Tag::kRight:
        flush(false);
        align_ = on ? tag : Tag::kLeft;
        break;
      case Tag::kBold:
        bold_ = on;
        break;
      case Tag::kWide:
        wide_ = on;
        break;
      case Tag::kTall:
        tall_ = on;
        break;
      default:
        break;
    }
  }

  void void_tag(Tag tag) {
    switch (tag) {
      case Tag::kBreak:
        flush(true);
        break;
      case Tag::kRule: {
        // The printer prints a row of '-' in the current style (half as
        // many under <W>), so the rule is drawn with the font too.
        flush(false);
        const int count = columns_ / (wide_ ? 2 : 1);
        for (int i = 0; i < count; ++i)
          line_.push_back(Cell{U'-', wide_ ? 2 : 1, false, bold_, wide_, tall_});
        flush(false);
        break;
      }
      case Tag::kCut:
        flush(false);
        cut();
        break;
      case Tag::kLogo:
        flush(false);
        logo();
        break;
      case Tag::kDrawer:  // opens the cash drawer: nothing on paper
      default:
        break;
    }
  }

  // x of a block `width` dots wide under the current alignment.
  int aligned_x(int width) const {
    if (align_ == Tag::kCentre) return std::max(0, (dots_ - width) / 2);
    if (align_ == Tag::kRight) return std::max(0, dots_ - width);
    return 0;
  }

  // Prints the line buffer; `always` also feeds a line when it is empty.
  void flush(bool always) {
    if (line_.empty()) {
      if (always) y_ += kEmptyLineDots;
      return;
    }
    std::size_t start = 0;
    int used = 0;
    for (std::size_t i = 0; i < line_.size(); ++i) {
      if (used + line_[i].columns > columns_ && used > 0) {  // the printer wraps here
        print_line(start, i, used);
        start = i;
        used = 0;
      }
      used += line_[i].columns;
    }
    print_line(start, line_.size(), used);
    line_.clear();
  }

  // One printed line: cells [begin, end) of the buffer, `columns` wide.
  // Cells sit on the line's bottom, as the printer aligns double height.
  void print_line(std::size_t begin, std::size_t end, int columns) {
    int height = kCellHeight;
    for (std::size_t i = begin; i < end; ++i)
      if (line_[i].tall) height = 2 * kCellHeight;
    if (canvas_ != nullptr && !too_tall()) {
      int x = aligned_x(columns * kNarrowCellWidth);
      for (std::size_t i = begin; i < end; ++i) {
        const Cell& cell = line_[i];
        const int scale_y = cell.tall ? 2 : 1;
        draw_cell(cell, x, y_ + height - kCellHeight * scale_y);
        x += cell.columns * kNarrowCellWidth;
      }
    }
    y_ += height + kLineGapDots;
  }

  // Double width and height scale the cell dot by dot, as the printer does.
  void draw_cell(const Cell& cell, int x, int y) {
    if (cell.code_point == U' ') return;
    const printing::CellBitmap& bitmap = canvas_->font.cell(
        cell.code_point, cell.double_byte ? kWideCellWidth : kNarrowCellWidth, cell.bold);
    const int scale_x = cell.wide ? 2 : 1;
    const int scale_y = cell.tall ? 2 : 1;
    for (int row = 0; row < kCellHeight; ++row)
      for (int col = 0; col < bitmap.width; ++col)
        if (bitmap.ink[static_cast<std::size_t>(row) * bitmap.width + col] != 0)
          canvas_->image.fill(x + col * scale_x, y + row * scale_y, scale_x, scale_y);
  }

  // Draws `text` (ASCII) in the normal font, left edge at x.
  void draw_ascii(const std::string& text, int x, int y) {
    for (char c : text) {
      draw_cell(Cell{static_cast<unsigned char>(c), 1, false, false, false, false}, x, y);
      x += kNarrowCellWidth;
    }
  }

  void qr(const Event& event) {
    QrSymbol symbol = encode_qr(event.data);
    if (symbol == nullptr) {
      failed_ = true;  // libqrencode is out of memory, or the data beyond QR
      return;
    }
    const int modules = symbol->width;
    const int size = event.qr_module_size;
    // The parser guarantees symbol plus quiet zone fits; keep what fits anyway.
    const int quiet = std::clamp((dots_ / size - modules) / 2, 0, kQrQuietModules);
    const int block = (modules + 2 * quiet) * size;
    if (canvas_ != nullptr && y_ + block + kMarginDots <= kPreviewMaxHeightDots) {
      const int left = aligned_x(block) + quiet * size;
      const int top = y_ + quiet * size;
      for (int row = 0; row < modules; ++row)
        for (int col = 0; col < modules; ++col)
          if ((symbol->data[row * modules + col] & 1) != 0)  // bit 0: dark module
            canvas_->image.fill(left + col * size, top + row * size, size, size);
    }
    y_ += block;
  }

  void barcode(const Event& event) {
    const bool ean = event.barcode_type == BarcodeType::kEan13;
    const std::vector<bool> modules =
        ean ? printing::ean13_modules(event.data)
            : printing::code128_modules(printing::code128b_symbols(event.data));
    // Human-readable interpretation: the printer prints EAN-13 with its
    // check digit, Code 128 as the data.
    const std::string text = ean ? printing::ean13_full_number(event.data) : event.data;
    if (modules.empty()) {
      failed_ = true;  // the parser validated the data; not reached
      return;
    }
    const int width = static_cast<int>(modules.size()) * event.barcode_module;
    const int height = event.barcode_height;
    const int block = height + kHriGapDots + kCellHeight + kLineGapDots;
    if (canvas_ != nullptr && y_ + block + kMarginDots <= kPreviewMaxHeightDots) {
      const int left = aligned_x(width);
      for (std::size_t i = 0; i < modules.size(); ++i)
        if (modules[i])
          canvas_->image.fill(left + static_cast<int>(i) * event.barcode_module, y_,
                              event.barcode_module, height);
      const int text_width = static_cast<int>(text.size()) * kNarrowCellWidth;
      const int text_x = std::clamp(left + (width - text_width) / 2, 0, dots_ - text_width);
      draw_ascii(text, text_x, y_ + height + kHriGapDots);
    }
    y_ += block;
  }

  void logo() {
    const int width = dots_ / 2;
    if (canvas_ != nullptr && !too_tall()) {
      const int left = aligned_x(width);
      MonoImage& image = canvas_->image;
      image.fill(left, y_, width, kLogoBorderDots);
      image.fill(left, y_ + kLogoHeightDots - kLogoBorderDots, width, kLogoBorderDots);
      image.fill(left, y_, kLogoBorderDots, kLogoHeightDots);
      image.fill(left + width - kLogoBorderDots, y_, kLogoBorderDots, kLogoHeightDots);
      const std::string label = "LOGO";
      draw_ascii(label, left + (width - static_cast<int>(label.size()) * kNarrowCellWidth) / 2,
                 y_ + (kLogoHeightDots - kCellHeight) / 2);
    }
    y_ += kLogoHeightDots + kLineGapDots;
  }

  // A dashed line across the paper with a small solid triangle at each end
  // pointing at it: where the cutter cuts.
  void cut() {
    if (canvas_ != nullptr && !too_tall()) {
      MonoImage& image = canvas_->image;
      const int line_y = y_ + kCutBandDots / 2 - 1;
      for (int x = 0; x < dots_; x += kCutDashDots + kCutGapDots)
        image.fill(x, line_y, kCutDashDots, 2);
      constexpr int kMark = 6;
      for (int i = 0; i < kMark; ++i) {
        image.fill(0, line_y - kMark + i, kMark - i, 1);
        image.fill(0, line_y + 2 + kMark - 1 - i, kMark - i, 1);
        image.fill(dots_ - (kMark - i), line_y - kMark + i, kMark - i, 1);
        image.fill(dots_ - (kMark - i), line_y + 2 + kMark - 1 - i, kMark - i, 1);
      }
    }
    y_ += kCutBandDots;
  }

  int columns_;
  int dots_;
  Canvas* canvas_;  // null while measuring
  int y_;           // top of the next line, in dots from the image's top
  std::vector<Cell> line_;
  Tag align_ = Tag::kLeft;
  bool bold_ = false;
  bool wide_ = false;
  bool tall_ = false;
  bool failed_ = false;
};

PreviewResult failure(PreviewResult::Failure kind, std::string message) {
  PreviewResult result;
  result.failure = kind;
  result.error = MarkupError{0, 0, std::move(message)};
  return result;
}

bool is_file(const std::string& path) {
  std::error_code ignored;
  return std::filesystem::is_regular_file(path, ignored);
}

}  // namespace

PreviewFont locate_preview_font(const PreviewOptions& options) {
  PreviewFont found;
  std::string named = options.font_path;
  std::string source = "PreviewOptions::font_path";
  if (named.empty()) {
    const char* env = std::getenv(kPreviewFontEnv);
    if (env != nullptr && *env != '\0') {
      named = env;
      source = kPreviewFontEnv;
    }
  }
  if (!named.empty()) {
    if (is_file(named)) {
      found.path = named;
    } else {
      found.error = "receipt preview font " + named + " (from " + source +
                    ") does not exist; install the Debian package fonts-wqy-microhei and "
                    "point it at /usr/share/fonts/truetype/wqy/wqy-microhei.ttc, or unset it";
    }
    return found;
  }
  for (const char* candidate : kPreviewFontSearchPath) {
    if (is_file(candidate)) {
      found.path = candidate;
      return found;
    }
  }
  found.error = std::string(
                    "no font for receipt previews: install the Debian package "
                    "fonts-wqy-microhei (") +
                kPreviewFontSearchPath[0] + "), or set " + kPreviewFontEnv +
                " to a TrueType font with Chinese glyphs";
  return found;
}

PreviewResult render_preview_png(std::string_view markup, PaperWidth paper,
                                 const PreviewOptions& options) {
  printing::ParsedReceipt parsed = printing::parse_receipt_markup(markup, paper);
  if (parsed.error) {
    PreviewResult result;
    result.failure = PreviewResult::Failure::kInvalidMarkup;
    result.error = std::move(parsed.error);
    return result;
  }

  // Pass 1: measure, without a font or a raster.
  Layout measure(paper, nullptr);
  for (const Event& event : parsed.events)
    if (!measure.write(event)) break;
  const int height = measure.finish();
  if (measure.failed())
    return failure(PreviewResult::Failure::kInternal,
                   "the QR code could not be encoded (libqrencode out of memory)");
  if (measure.too_tall())
    return failure(PreviewResult::Failure::kTooTall,
                   "the receipt is too long to preview: more than " +
                       std::to_string(kPreviewMaxHeightDots) + " dots (" +
                       std::to_string(kPreviewMaxHeightDots * 254 / (kDotsPerInch * 10)) +
                       " mm of paper); preview a shorter receipt or split it into several jobs");

  PreviewFont font_file = locate_preview_font(options);
  if (font_file.path.empty()) return failure(PreviewResult::Failure::kNoFont, font_file.error);
  std::string font_error;
  std::unique_ptr<PrinterFont> font = PrinterFont::open(font_file.path, font_error);
  if (font == nullptr)
    return failure(PreviewResult::Failure::kNoFont,
                   "receipt preview font unusable: " + font_error +
                       "; install the Debian package fonts-wqy-microhei");

  // Pass 2: draw.
  MonoImage image(paper_dots(paper), height);
  Canvas canvas{image, *font};
  Layout draw(paper, &canvas);
  for (const Event& event : parsed.events)
    draw.write(event);
  draw.finish();
  if (draw.failed())
    return failure(PreviewResult::Failure::kInternal,
                   "the QR code could not be encoded (libqrencode out of memory)");

  PreviewResult result;
  std::string png_error;
  if (!printing::encode_png(image, kDotsPerInch, "Counterlink", result.png, png_error))
    return failure(PreviewResult::Failure::kInternal,
                   "receipt preview for " + paper_name(paper) + " paper: " + png_error);
  return result;
}

}  // namespace counterlink::platform
