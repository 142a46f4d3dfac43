#include "printing/receipt_markup.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <utility>

#include <iconv.h>

#include "printing/barcode.h"

namespace counterlink::platform::printing {
namespace {

enum class Shape { kContainer, kVoid, kRaw };

struct TagInfo {
  std::string_view name;  // canonical spelling, used in messages
  Tag tag;
  Shape shape;
};

constexpr std::array<TagInfo, 13> kTags = {{
    {"C", Tag::kCentre, Shape::kContainer},
    {"L", Tag::kLeft, Shape::kContainer},
    {"R", Tag::kRight, Shape::kContainer},
    {"B", Tag::kBold, Shape::kContainer},
    {"W", Tag::kWide, Shape::kContainer},
    {"H", Tag::kTall, Shape::kContainer},
    {"BR", Tag::kBreak, Shape::kVoid},
    {"HR", Tag::kRule, Shape::kVoid},
    {"CUT", Tag::kCut, Shape::kVoid},
    {"LOGO", Tag::kLogo, Shape::kVoid},
    {"DRAWER", Tag::kDrawer, Shape::kVoid},
    {"QR", Tag::kQr, Shape::kRaw},
    {"BARCODE", Tag::kBarcode, Shape::kRaw},
}};

// QR byte-mode capacity at error correction M for versions 1..15 (ISO/IEC
// 18004 table 7). Version 15 is the first that holds kMaxQrDataBytes. Byte
// mode is the largest encoding, so the estimated width is an upper bound.
constexpr std::array<int, 15> kQrByteCapacityM = {14,  26,  42,  62,  84,  106, 122, 152,
                                                  180, 213, 251, 287, 331, 362, 412};
// Module size used when <QR> has no size attribute and the code fits.
constexpr int kDefaultQrModule = 6;
// Narrow bar width in dots: 0.25 mm at 203 dpi, the smallest width every
// ESC/POS printer accepts (GS w is 2..6 on Epson).
constexpr int kBarcodeModule = 2;
constexpr int kDefaultBarcodeHeight = 80;  // dots, 10 mm

bool equals_ignore_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::toupper(static_cast<unsigned char>(x)) ==
                  std::toupper(static_cast<unsigned char>(y));
         });
}

const TagInfo* find_tag(std::string_view name) {
  for (const TagInfo& info : kTags)
    if (equals_ignore_case(info.name, name)) return &info;
  return nullptr;
}

bool is_alignment(Tag tag) {
  return tag == Tag::kCentre || tag == Tag::kLeft || tag == Tag::kRight;
}

std::string at(int line, int column) {
  return std::to_string(line) + ":" + std::to_string(column);
}

// Length of the valid UTF-8 sequence at s[i] (2..4), or 0. Rejects overlong
// forms, surrogates and code points above U+10FFFF. ASCII is handled before.
std::size_t utf8_length(std::string_view s, std::size_t i, char32_t& code_point) {
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char lead = byte(i);
  std::size_t len = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC2 ? 2 : 0;
  if (len == 0 || lead > 0xF4 || i + len > s.size()) return 0;
  char32_t cp = lead & (0x7F >> len);
  for (std::size_t k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
      (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  code_point = cp;
  return len;
}

// UTF-8 -> GB18030, one character at a time, through glibc iconv.
class Gb18030Encoder {
 public:
  Gb18030Encoder() : cd_(iconv_open("GB18030", "UTF-8")) {}
  ~Gb18030Encoder() {
    if (cd_ != kInvalid) iconv_close(cd_);
  }
  Gb18030Encoder(const Gb18030Encoder&) = delete;
  Gb18030Encoder& operator=(const Gb18030Encoder&) = delete;

  // The GB18030 bytes of one UTF-8 character, or empty if iconv cannot
  // convert it (or the converter is not installed).
  std::string encode(std::string_view utf8_char) {
    if (cd_ == kInvalid) return {};
    char in[4];
    char out[8];
    std::memcpy(in, utf8_char.data(), utf8_char.size());
    char* in_ptr = in;
    std::size_t in_left = utf8_char.size();
    char* out_ptr = out;
    std::size_t out_left = sizeof(out);
    iconv(cd_, nullptr, nullptr, nullptr, nullptr);  // reset shift state
    if (iconv(cd_, &in_ptr, &in_left, &out_ptr, &out_left) == static_cast<std::size_t>(-1))
      return {};
    return std::string(out, sizeof(out) - out_left);
  }

 private:
  static inline const iconv_t kInvalid = reinterpret_cast<iconv_t>(-1);
  iconv_t cd_;
};

Event make_event(Event::Kind kind, Tag tag = Tag::kBreak) {
  Event event;
  event.kind = kind;
  event.tag = tag;
  return event;
}

struct OpenTag {
  const TagInfo* info;
  int line;
  int column;
};

struct Attribute {
  std::string name;  // lower case
  std::string value;
};

class Parser {
 public:
  Parser(std::string_view markup, PaperWidth paper) : in_(markup), paper_(paper) {}

  ParsedReceipt run() {
    while (!out_.error && pos_ < in_.size())
      step();
    if (!out_.error && !open_.empty()) {
      // Every open tag is unclosed; the first one opened is the first error.
      const OpenTag& first = open_.front();
      fail(first.line, first.column,
           "unclosed <" + std::string(first.info->name) + "> opened at " +
               at(first.line, first.column) + "; add </" + std::string(first.info->name) + ">");
    }
    if (out_.error) {
      out_.events.clear();
      out_.warnings.clear();
    }
    return std::move(out_);
  }

 private:
  char peek(std::size_t ahead = 0) const {
    return pos_ + ahead < in_.size() ? in_[pos_ + ahead] : '\0';
  }

  void advance(std::size_t n) {
    for (std::size_t k = 0; k < n && pos_ < in_.size(); ++k, ++pos_) {
      unsigned char c = static_cast<unsigned char>(in_[pos_]);
      if (c == '\n') {
        ++line_;
        column_ = 1;
      } else if ((c & 0xC0) != 0x80) {
        ++column_;
      }
    }
  }

  void fail(int line, int column, std::string message) {
    if (!out_.error) out_.error = MarkupError{line, column, std::move(message)};
  }

  void step() {
    char c = peek();
    if (c == '\r') {  // CRLF line ends: the '\n' does the work
      advance(1);
      return;
    }
    const bool absorb = absorb_newline_;
    absorb_newline_ = false;
    if (c == '<') {
      parse_tag();
    } else if (c == '\n') {
      if (!absorb) out_.events.push_back(make_event(Event::Kind::kNewline));
      advance(1);
    } else {
      std::string shown;
      last_line_ = line_;
      last_column_ = column_;
      if (!read_character(shown, /*raw=*/false)) return;
      if (shown.empty()) return;  // '\r'
      add_text(shown);
    }
  }

  // Reads one character of content (an escape counts as one) into `out` as
  // UTF-8. raw keeps tabs and newlines (QR data). False after an error.
  bool read_character(std::string& out, bool raw) {
    int line = line_;
    int column = column_;
    unsigned char c = static_cast<unsigned char>(peek());
    if (c == '&') {
      static constexpr std::array<std::pair<std::string_view, char>, 3> kEscapes = {
          {{"&lt;", '<'}, {"&gt;", '>'}, {"&amp;", '&'}}};
      for (const auto& [escape, value] : kEscapes) {
        if (in_.substr(pos_, escape.size()) == escape) {
          out.assign(1, value);
          advance(escape.size());
          return true;
        }
      }
      fail(line, column,
           "unknown escape at '&'; write &amp; for a literal '&' (escapes: &lt; &gt; &amp;)");
      return false;
    }
    if (c == '\r') {  // CRLF line ends: the '\n' does the work
      out.clear();
      advance(1);
      return true;
    }
    if (c == '\t' || (raw && c == '\n')) {
      out.assign(1, raw ? static_cast<char>(c) : ' ');
      advance(1);
      return true;
    }
    if (c < 0x20 || c == 0x7F) {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "0x%02X", c);
      fail(line, column,
           std::string("control character ") + hex +
               " is not allowed in receipt markup; use tags for printer commands");
      return false;
    }
    if (c < 0x80) {
      out.assign(1, static_cast<char>(c));
      advance(1);
      return true;
    }
    char32_t code_point = 0;
    std::size_t len = utf8_length(in_, pos_, code_point);
    if (len == 0) {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "0x%02X", c);
      fail(line, column, std::string("invalid UTF-8 byte ") + hex + "; send the markup as UTF-8");
      return false;
    }
    out.assign(in_.substr(pos_, len));
    advance(len);
    return true;
  }

  void add_text(const std::string& shown) {
    Glyph glyph{shown, shown};
    if (static_cast<unsigned char>(shown[0]) >= 0x80) {
      std::string gb = encoder_.encode(shown);
      if (gb.size() != 2) {
        // Printer fonts hold the two-byte (GBK) part of GB18030; four-byte
        // sequences (emoji, rare ideographs) print as garbage.
        char32_t cp = 0;
        utf8_length(shown, 0, cp);
        char name[16];
        std::snprintf(name, sizeof(name), "U+%04X", static_cast<unsigned>(cp));
        out_.warnings.push_back(at(last_line_, last_column_) + ": " + name +
                                " is not in the printer's GB18030 two-byte font; printed as '?'");
        glyph = Glyph{"?", "?"};
      } else {
        glyph.printed = gb;
      }
    }
    if (out_.events.empty() || out_.events.back().kind != Event::Kind::kText)
      out_.events.push_back(make_event(Event::Kind::kText));
    out_.events.back().glyphs.push_back(std::move(glyph));
  }

  void parse_tag() {
    const int line = line_;
    const int column = column_;
    std::size_t end = pos_ + 1;
    while (end < in_.size() && in_[end] != '>' && in_[end] != '<' && in_[end] != '\n')
      ++end;
    if (end >= in_.size() || in_[end] != '>') {
      fail(line, column,
           "'<' does not start a complete tag on this line; write &lt; for a literal '<'");
      return;
    }
    std::string_view body = in_.substr(pos_ + 1, end - pos_ - 1);
    const bool closing = !body.empty() && body.front() == '/';
    if (closing) body.remove_prefix(1);
    std::size_t name_len = 0;
    while (name_len < body.size() && std::isalnum(static_cast<unsigned char>(body[name_len])))
      ++name_len;
    std::string_view name = body.substr(0, name_len);
    if (name.empty()) {
      fail(line, column, "empty tag name after '<'; write &lt; for a literal '<'");
      return;
    }
    const TagInfo* info = find_tag(name);
    if (info == nullptr) {
      fail(line, column,
           "unknown tag <" + std::string(closing ? "/" : "") + std::string(name) +
               ">; see docs/receipt-markup.md for the tags, or write &lt; for a literal '<'");
      return;
    }
    std::vector<Attribute> attributes;
    if (!parse_attributes(body.substr(name_len), *info, line, column, attributes)) return;
    const std::string display = "<" + std::string(info->name) + ">";
    advance(end + 1 - pos_);

    if (closing) {
      if (!attributes.empty()) {
        fail(line, column, "closing tag </" + std::string(info->name) + "> takes no attributes");
      } else if (info->shape == Shape::kVoid) {
        fail(line, column,
             "</" + std::string(info->name) + "> is not allowed: " + display +
                 " has no closing tag");
      } else if (std::none_of(open_.begin(), open_.end(),
                              [&](const OpenTag& t) { return t.info == info; })) {
        fail(line, column, "</" + std::string(info->name) + "> has no matching " + display);
      } else if (open_.back().info != info) {
        const OpenTag& inner = open_.back();
        fail(line, column,
             "</" + std::string(info->name) + "> found while <" + std::string(inner.info->name) +
                 "> opened at " + at(inner.line, inner.column) +
                 " is still open; close tags in the reverse order of opening");
      } else {
        open_.pop_back();
        out_.events.push_back(make_event(Event::Kind::kClose, info->tag));
        absorb_newline_ = is_alignment(info->tag);
      }
      return;
    }

    if (info->shape == Shape::kRaw) {
      parse_raw(*info, attributes, line, column);
      return;
    }
    if (!attributes.empty()) {
      fail(line, column, display + " takes no attributes");
      return;
    }
    if (info->shape == Shape::kVoid) {
      out_.events.push_back(make_event(Event::Kind::kVoid, info->tag));
      absorb_newline_ =
          info->tag == Tag::kRule || info->tag == Tag::kCut || info->tag == Tag::kLogo;
      return;
    }
    for (const OpenTag& open : open_) {
      if (open.info == info) {
        fail(line, column,
             display + " is already open (opened at " + at(open.line, open.column) +
                 "); close it before opening it again");
        return;
      }
      if (is_alignment(info->tag) && is_alignment(open.info->tag)) {
        fail(line, column,
             display + " cannot be inside <" + std::string(open.info->name) + "> opened at " +
                 at(open.line, open.column) + "; close that alignment first");
        return;
      }
    }
    open_.push_back(OpenTag{info, line, column});
    out_.events.push_back(make_event(Event::Kind::kOpen, info->tag));
  }

  // Parses ` name="value"` pairs. Names are lower-cased; values take no
  // escapes and may not contain '"'.
  bool parse_attributes(std::string_view rest, const TagInfo& info, int line, int column,
                        std::vector<Attribute>& attributes) {
    const std::string malformed =
        "malformed tag <" + std::string(info.name) + ">: expected attributes as name=\"value\"";
    std::size_t i = 0;
    while (true) {
      std::size_t spaces = i;
      while (i < rest.size() && rest[i] == ' ')
        ++i;
      if (i == rest.size()) return true;
      if (i == spaces) {  // e.g. "<BR/>"
        fail(line, column,
             malformed + " (void tags are written <" + std::string(info.name) + ">, without '/')");
        return false;
      }
      std::size_t name_start = i;
      while (i < rest.size() && std::isalpha(static_cast<unsigned char>(rest[i])))
        ++i;
      std::string name(rest.substr(name_start, i - name_start));
      if (name.empty() || i + 1 >= rest.size() || rest[i] != '=' || rest[i + 1] != '"') {
        fail(line, column, malformed);
        return false;
      }
      i += 2;
      std::size_t close = rest.find('"', i);
      if (close == std::string_view::npos) {
        fail(line, column, malformed + " (missing closing '\"')");
        return false;
      }
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char c) { return std::tolower(c); });
      attributes.push_back(Attribute{std::move(name), std::string(rest.substr(i, close - i))});
      i = close + 1;
    }
  }

  // Integer attribute in [low, high]; `value` keeps its default when absent.
  bool integer_attribute(const Attribute& attribute, std::string_view tag, int low, int high,
                         int line, int column, int& value) {
    const std::string& text = attribute.value;
    bool digits =
        !text.empty() && text.size() <= 3 &&
        std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
    int parsed = digits ? std::stoi(text) : -1;
    if (parsed < low || parsed > high) {
      fail(line, column,
           std::string(tag) + " " + attribute.name + "=\"" + text + "\" is out of range; use " +
               std::to_string(low) + ".." + std::to_string(high));
      return false;
    }
    value = parsed;
    return true;
  }

  void parse_raw(const TagInfo& info, const std::vector<Attribute>& attributes, int line,
                 int column) {
    const std::string display = "<" + std::string(info.name) + ">";
    Event event =
        make_event(info.tag == Tag::kQr ? Event::Kind::kQr : Event::Kind::kBarcode, info.tag);
    int qr_size = 0;  // 0: choose
    event.barcode_height = kDefaultBarcodeHeight;
    for (const Attribute& attribute : attributes) {
      bool ok = true;
      if (info.tag == Tag::kQr && attribute.name == "size") {
        ok = integer_attribute(attribute, display, 1, 16, line, column, qr_size);
      } else if (info.tag == Tag::kBarcode && attribute.name == "height") {
        ok = integer_attribute(attribute, display, 1, 255, line, column, event.barcode_height);
      } else if (info.tag == Tag::kBarcode && attribute.name == "type") {
        if (equals_ignore_case(attribute.value, "code128")) {
          event.barcode_type = BarcodeType::kCode128;
        } else if (equals_ignore_case(attribute.value, "ean13")) {
          event.barcode_type = BarcodeType::kEan13;
        } else {
          fail(line, column,
               "unknown barcode type \"" + attribute.value + "\"; use code128 or ean13");
          ok = false;
        }
      } else {
        fail(line, column,
             "unknown attribute " + attribute.name + " on " + display + "; " +
                 (info.tag == Tag::kQr ? "<QR> takes size" : "<BARCODE> takes type and height"));
        ok = false;
      }
      if (!ok) return;
    }

    // Content up to the matching closing tag; no tags inside.
    const std::string closer = "</" + std::string(info.name) + ">";
    while (true) {
      if (pos_ >= in_.size()) {
        fail(line, column,
             "unclosed " + display + " opened at " + at(line, column) + "; add " + closer);
        return;
      }
      if (peek() == '<') {
        if (equals_ignore_case(in_.substr(pos_, closer.size()), closer)) {
          advance(closer.size());
          break;
        }
        fail(line_, column_,
             "tags are not allowed inside " + display + "; write &lt; for a literal '<'");
        return;
      }
      std::string piece;
      if (!read_character(piece, /*raw=*/info.tag == Tag::kQr)) return;
      event.data += piece;
    }

    if (info.tag == Tag::kQr) {
      if (event.data.empty()) {
        fail(line, column, "empty <QR>: put the text to encode between <QR> and </QR>");
        return;
      }
      if (event.data.size() > kMaxQrDataBytes) {
        fail(line, column,
             "QR data longer than " + std::to_string(kMaxQrDataBytes) + " bytes (" +
                 std::to_string(event.data.size()) + "); shorten it or print a link instead");
        return;
      }
      int version = 1;
      while (kQrByteCapacityM[version - 1] < static_cast<int>(event.data.size()))
        ++version;
      const int modules = 17 + 4 * version + 8;  // symbol plus a 4-module quiet zone each side
      const int largest = paper_dots(paper_) / modules;
      if (qr_size > largest) {
        fail(line, column,
             "QR code too wide for " + std::string(paper_ == PaperWidth::k58 ? "58" : "80") +
                 " mm paper: " + std::to_string(event.data.size()) + " bytes need up to " +
                 std::to_string(modules) + " modules; use size=\"" + std::to_string(largest) +
                 "\" or less");
        return;
      }
      event.qr_module_size = qr_size != 0 ? qr_size : std::min(kDefaultQrModule, largest);
    } else if (!validate_barcode(event, line, column)) {
      return;
    }
    out_.events.push_back(std::move(event));
    absorb_newline_ = true;
  }

  bool validate_barcode(Event& event, int line, int column) {
    event.barcode_module = kBarcodeModule;
    const std::string& data = event.data;
    if (event.barcode_type == BarcodeType::kEan13) {
      bool digits = std::all_of(data.begin(), data.end(),
                                [](unsigned char c) { return std::isdigit(c) != 0; });
      if (!digits || (data.size() != 12 && data.size() != 13)) {
        fail(line, column, "ean13 barcode data must be 12 or 13 digits (got \"" + data + "\")");
        return false;
      }
      const char check = ean13_check_digit(data);  // the one the preview draws
      if (data.size() == 13 && data[12] != check) {
        fail(line, column,
             std::string("ean13 check digit is wrong: expected ") + check + ", got " + data[12] +
                 "; or send the first 12 digits and the printer adds it");
        return false;
      }
      return true;
    }
    // Code 128, code set B: start + one symbol per character + check, 11
    // modules each, and a 13-module stop.
    const int max_chars = (paper_dots(paper_) / kBarcodeModule - 13) / 11 - 2;
    bool printable = std::all_of(data.begin(), data.end(),
                                 [](unsigned char c) { return c >= 0x20 && c <= 0x7E; });
    if (!printable || data.empty() || static_cast<int>(data.size()) > max_chars) {
      fail(line, column,
           "code128 barcode data must be 1.." + std::to_string(max_chars) +
               " printable ASCII characters on " +
               std::string(paper_ == PaperWidth::k58 ? "58" : "80") + " mm paper (got " +
               std::to_string(data.size()) + (printable ? "" : ", some not printable ASCII") + ")");
      return false;
    }
    return true;
  }

  std::string_view in_;
  PaperWidth paper_;
  std::size_t pos_ = 0;
  int line_ = 1;
  int column_ = 1;
  int last_line_ = 1;
  int last_column_ = 1;
  // A newline right after a block (</C>, </L>, </R>, <HR>, <CUT>, <LOGO>,
  // </QR>, </BARCODE>) is dropped: the block already ended the line, and
  // markup written one block per line should not print blank lines.
  bool absorb_newline_ = false;
  std::vector<OpenTag> open_;
  Gb18030Encoder encoder_;
  ParsedReceipt out_;
};

}  // namespace

ParsedReceipt parse_receipt_markup(std::string_view markup, PaperWidth paper) {
  if (markup.size() > kMaxMarkupBytes) {
    ParsedReceipt out;
    out.error = MarkupError{0, 0,
                            "receipt markup is " + std::to_string(markup.size()) +
                                " bytes; the limit is " + std::to_string(kMaxMarkupBytes)};
    return out;
  }
  return Parser(markup, paper).run();
}

}  // namespace counterlink::platform::printing
