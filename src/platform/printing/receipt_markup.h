// Parser for the receipt markup (docs/receipt-markup.md). Private to
// cl_printing: receipt.cc turns the events into ESC/POS bytes or a text
// preview, receipt_preview.cc into a PNG.
//
// The parser does all validation, including the checks that depend on the
// paper width (bar code and QR code fit), so that rendering cannot fail.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "counterlink/platform/receipt.h"

namespace counterlink::platform::printing {

enum class Tag {
  kCentre,
  kLeft,
  kRight,
  kBold,
  kWide,
  kTall,
  kBreak,
  kRule,
  kCut,
  kLogo,
  kDrawer,
  kQr,
  kBarcode,
};

enum class BarcodeType { kCode128, kEan13 };

// One character as shown (UTF-8, or "?" when replaced) and as printed
// (ASCII, or two GB18030 bytes). printed.size() is also its width in columns
// in the normal-width font.
struct Glyph {
  std::string shown;
  std::string printed;
};

struct Event {
  enum class Kind { kText, kNewline, kOpen, kClose, kVoid, kQr, kBarcode };
  Kind kind = Kind::kText;
  Tag tag = Tag::kBreak;
  std::vector<Glyph> glyphs;  // kText
  std::string data;           // kQr, kBarcode: the bytes to encode
  int qr_module_size = 0;     // kQr: dots per module, 1..16
  BarcodeType barcode_type = BarcodeType::kCode128;
  int barcode_height = 0;  // kBarcode: dots, 1..255
  int barcode_module = 0;  // kBarcode: dots per narrow bar
};

struct ParsedReceipt {
  std::vector<Event> events;
  std::vector<std::string> warnings;
  std::optional<MarkupError> error;
};

ParsedReceipt parse_receipt_markup(std::string_view markup, PaperWidth paper);

}  // namespace counterlink::platform::printing
