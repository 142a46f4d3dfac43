#include "counterlink/platform/receipt.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "printing/receipt_markup.h"

namespace counterlink::platform {
namespace {

using printing::BarcodeType;
using printing::Event;
using printing::Glyph;
using printing::Tag;

constexpr char kEsc = 0x1B;
constexpr char kGs = 0x1D;
constexpr char kFs = 0x1C;
constexpr char kLf = 0x0A;

char byte(int value) {
  return static_cast<char>(static_cast<uint8_t>(value));
}

// One copy of the receipt as ESC/POS. The byte table is docs/receipt-markup.md.
class EscPosWriter {
 public:
  explicit EscPosWriter(PaperWidth paper) : paper_(paper) { put({kEsc, '@'}); }  // ESC @: init

  void write(const Event& event) {
    switch (event.kind) {
      case Event::Kind::kText:
        for (const Glyph& glyph : event.glyphs) {
          if (static_cast<uint8_t>(glyph.printed[0]) >= 0x80 && !chinese_mode_) {
            put({kFs, '&'});  // FS &: Chinese (GB18030 two-byte) character mode on
            chinese_mode_ = true;
          }
          out_ += glyph.printed;
        }
        line_has_content_ = true;
        break;
      case Event::Kind::kNewline:
        line_feed();
        break;
      case Event::Kind::kOpen:
      case Event::Kind::kClose:
        style(event.tag, event.kind == Event::Kind::kOpen);
        break;
      case Event::Kind::kVoid:
        void_tag(event.tag);
        break;
      case Event::Kind::kQr:
        qr(event);
        break;
      case Event::Kind::kBarcode:
        barcode(event);
        break;
    }
  }

  // Ends the copy: text still in the printer's line buffer would otherwise
  // wait for the next job.
  std::string finish() && {
    end_line();
    return std::move(out_);
  }

 private:
  void put(std::initializer_list<char> bytes) { out_.append(bytes.begin(), bytes.end()); }

  void line_feed() {
    out_ += kLf;
    line_has_content_ = false;
  }
  // Alignment, images and cuts act at the start of a line.
  void end_line() {
    if (line_has_content_) line_feed();
  }

  void style(Tag tag, bool on) {
    switch (tag) {
      case Tag::kCentre:
      case Tag::kLeft:
      case Tag::kRight: {
        end_line();
        int n = !on || tag == Tag::kLeft ? 0 : tag == Tag::kCentre ? 1 : 2;
        put({kEsc, 'a', byte(n)});  // ESC a n: 0 left, 1 centre, 2 right
        break;
      }
      case Tag::kBold:
        put({kEsc, 'E', byte(on ? 1 : 0)});  // ESC E n: emphasis on/off
        break;
      case Tag::kWide:
      case Tag::kTall:
        (tag == Tag::kWide ? wide_ : tall_) = on;
        put({kGs, '!', byte((wide_ ? 0x10 : 0) | (tall_ ? 0x01 : 0))});  // GS ! n: size
        break;
      default:
        break;
    }
  }

  void void_tag(Tag tag) {
    switch (tag) {
      case Tag::kBreak:
        line_feed();
        break;
      case Tag::kRule:
        end_line();
        out_.append(paper_columns(paper_) / (wide_ ? 2 : 1), '-');
        line_feed();
        break;
      case Tag::kCut:
        end_line();
        put({kGs, 'V', 66, 0});  // GS V 66 0: feed to the cutter and partial cut
        break;
      case Tag::kLogo:
        end_line();
        put({kFs, 'p', 1, 0});  // FS p 1 0: NV bit image 1, normal size
        break;
      case Tag::kDrawer:
        put({kEsc, 'p', 0, 25, byte(250)});  // ESC p 0 25 250: pin 2, 50 ms on, 500 ms off
        break;
      default:
        break;
    }
  }

  void qr(const Event& event) {
    end_line();
    // GS ( k pL pH cn fn ...: cn 49 is QR code.
    put({kGs, '(', 'k', 4, 0, 49, 65, 50, 0});                       // fn 165: model 2
    put({kGs, '(', 'k', 3, 0, 49, 67, byte(event.qr_module_size)});  // fn 167: module size
    put({kGs, '(', 'k', 3, 0, 49, 69, 49});                          // fn 169: error correction M
    const std::size_t store = event.data.size() + 3;
    put({kGs, '(', 'k', byte(store & 0xFF), byte(store >> 8), 49, 80, 48});  // fn 180: store
    out_ += event.data;
    put({kGs, '(', 'k', 3, 0, 49, 81, 48});  // fn 181: print the stored symbol
  }

  void barcode(const Event& event) {
    end_line();
    put({kGs, 'H', 2});                           // GS H 2: HRI text below
    put({kGs, 'h', byte(event.barcode_height)});  // GS h n: height in dots
    put({kGs, 'w', byte(event.barcode_module)});  // GS w n: narrow bar width
    if (event.barcode_type == BarcodeType::kEan13) {
      put({kGs, 'k', 67, byte(event.data.size())});  // GS k 67 n: EAN-13
      out_ += event.data;
    } else {
      // GS k 73 n: CODE128; data starts with a code set ("{B"), '{' is "{{".
      std::string data = "{B";
      for (char c : event.data)
        data += c == '{' ? std::string("{{") : std::string(1, c);
      put({kGs, 'k', 73, byte(data.size())});
      out_ += data;
    }
  }

  PaperWidth paper_;
  std::string out_;
  bool line_has_content_ = false;
  bool chinese_mode_ = false;
  bool wide_ = false;
  bool tall_ = false;
};

// One copy as text. Lines are glyph lists wrapped at the paper's columns.
class PreviewWriter {
 public:
  explicit PreviewWriter(PaperWidth paper) : columns_(paper_columns(paper)) {}

  void write(const Event& event) {
    switch (event.kind) {
      case Event::Kind::kText:
        for (const Glyph& glyph : event.glyphs) {
          const int width = static_cast<int>(glyph.printed.size()) * (wide_ ? 2 : 1);
          std::string shown = glyph.shown;
          // Pad so the text occupies the columns the printer uses.
          shown.append(width - static_cast<int>(glyph.printed.size()), ' ');
          line_.push_back({std::move(shown), width});
        }
        break;
      case Event::Kind::kNewline:
        flush(true);
        break;
      case Event::Kind::kOpen:
      case Event::Kind::kClose: {
        const bool on = event.kind == Event::Kind::kOpen;
        if (event.tag == Tag::kCentre || event.tag == Tag::kRight || event.tag == Tag::kLeft) {
          flush(false);
          align_ = on ? event.tag : Tag::kLeft;
        } else if (event.tag == Tag::kWide) {
          wide_ = on;
        }
        break;
      }
      case Event::Kind::kVoid:
        switch (event.tag) {
          case Tag::kBreak:
            flush(true);
            break;
          case Tag::kRule:
            flush(false);
            text_ += std::string(columns_, '-') + "\n";
            break;
          case Tag::kCut:
            marker("[CUT]");
            break;
          case Tag::kLogo:
            marker("[LOGO]");
            break;
          case Tag::kDrawer:
            marker("[DRAWER]");
            break;
          default:
            break;
        }
        break;
      case Event::Kind::kQr:
        marker("[QR: " + event.data + "]");
        break;
      case Event::Kind::kBarcode:
        marker(std::string("[BARCODE ") +
               (event.barcode_type == BarcodeType::kEan13 ? "ean13" : "code128") + ": " +
               event.data + "]");
        break;
    }
  }

  std::string finish() && {
    flush(false);
    return std::move(text_);
  }

 private:
  struct Cell {
    std::string shown;
    int width;
  };

  void marker(const std::string& text) {
    flush(false);
    emit(text, static_cast<int>(text.size()));
  }

  // Ends the current line; `always` also emits an empty line (a bare LF).
  void flush(bool always) {
    if (line_.empty()) {
      if (always) text_ += "\n";
      return;
    }
    std::string physical;
    int used = 0;
    for (Cell& cell : line_) {
      if (used + cell.width > columns_ && used > 0) {  // the printer wraps here
        emit(physical, used);
        physical.clear();
        used = 0;
      }
      physical += cell.shown;
      used += cell.width;
    }
    emit(physical, used);
    line_.clear();
  }

  void emit(const std::string& text, int width) {
    int pad = 0;
    if (align_ == Tag::kCentre) pad = std::max(0, (columns_ - width) / 2);
    if (align_ == Tag::kRight) pad = std::max(0, columns_ - width);
    std::string line = std::string(pad, ' ') + text;
    while (!line.empty() && line.back() == ' ')
      line.pop_back();
    text_ += line + "\n";
  }

  int columns_;
  std::vector<Cell> line_;
  std::string text_;
  Tag align_ = Tag::kLeft;
  bool wide_ = false;
};

// Length of the ESC/POS command or character starting at s[i], for the
// commands this renderer emits; anything else counts as one byte.
std::size_t unit_length(std::string_view s, std::size_t i) {
  auto at = [&](std::size_t k) -> int {
    return i + k < s.size() ? static_cast<uint8_t>(s[i + k]) : -1;
  };
  std::size_t len = 1;
  const int lead = at(0);
  const int command = at(1);
  if (lead == kEsc) {
    len = command == '@' ? 2 : (command == 'a' || command == 'E') ? 3 : command == 'p' ? 5 : 1;
  } else if (lead == kGs) {
    if (command == '!' || command == 'H' || command == 'h' || command == 'w') {
      len = 3;
    } else if (command == 'V') {
      len = at(2) >= 65 ? 4 : 3;
    } else if (command == '(' && at(2) == 'k' && at(4) >= 0) {
      len = 5 + static_cast<std::size_t>(at(3)) + (static_cast<std::size_t>(at(4)) << 8);
    } else if (command == 'k' && at(2) >= 65 && at(3) >= 0) {
      len = 4 + static_cast<std::size_t>(at(3));
    }
  } else if (lead == kFs) {
    len = (command == '&' || command == '.') ? 2 : command == 'p' ? 4 : 1;
  } else if (lead >= 0x81 && lead <= 0xFE && command >= 0) {
    len = (command >= 0x30 && command <= 0x39) ? 4 : 2;  // GB18030 four- or two-byte
  }
  return std::min(len, s.size() - i);
}

}  // namespace

int paper_columns(PaperWidth paper) {
  return paper == PaperWidth::k58 ? 32 : 48;
}

int paper_dots(PaperWidth paper) {
  return paper == PaperWidth::k58 ? 384 : 576;
}

std::string MarkupError::to_string() const {
  if (line == 0) return message;
  return std::to_string(line) + ":" + std::to_string(column) + ": " + message;
}

RenderResult render_escpos(std::string_view markup, PaperWidth paper, int copies) {
  RenderResult result;
  if (copies < 1 || copies > kMaxCopies) {
    result.error = MarkupError{
        0, 0,
        "copies must be 1.." + std::to_string(kMaxCopies) + ", got " + std::to_string(copies)};
    return result;
  }
  printing::ParsedReceipt parsed = printing::parse_receipt_markup(markup, paper);
  if (parsed.error) {
    result.error = std::move(parsed.error);
    return result;
  }
  EscPosWriter writer(paper);
  for (const Event& event : parsed.events)
    writer.write(event);
  const std::string copy = std::move(writer).finish();
  result.bytes.reserve(copy.size() * copies);
  for (int i = 0; i < copies; ++i)
    result.bytes += copy;
  result.warnings = std::move(parsed.warnings);
  return result;
}

std::string plain_text_preview(std::string_view markup, PaperWidth paper) {
  printing::ParsedReceipt parsed = printing::parse_receipt_markup(markup, paper);
  if (parsed.error) return "invalid receipt markup: " + parsed.error->to_string();
  PreviewWriter writer(paper);
  for (const Event& event : parsed.events)
    writer.write(event);
  return std::move(writer).finish();
}

std::vector<std::string> split_for_packets(std::string_view escpos, std::size_t max_chunk) {
  max_chunk = std::max<std::size_t>(max_chunk, 1);
  std::vector<std::string> chunks;
  std::string current;
  std::size_t i = 0;
  while (i < escpos.size()) {
    std::string_view unit = escpos.substr(i, unit_length(escpos, i));
    i += unit.size();
    if (current.size() + unit.size() > max_chunk && !current.empty()) {
      chunks.push_back(std::move(current));
      current.clear();
    }
    // A unit longer than a chunk is cut at arbitrary boundaries.
    while (unit.size() > max_chunk) {
      chunks.emplace_back(unit.substr(0, max_chunk));
      unit.remove_prefix(max_chunk);
    }
    current += unit;
  }
  if (!current.empty()) chunks.push_back(std::move(current));
  return chunks;
}

}  // namespace counterlink::platform
