// The printer's character cells drawn with FreeType, for the receipt
// preview. Private to the printing library.
//
// A receipt printer has two fonts: 12x24-dot cells for ASCII (font A) and
// 24x24-dot cells for the two-byte GB18030 characters. PrinterFont draws a
// character into such a cell from a scalable CJK font, black and white like
// the printer, optionally emboldened (ESC E); double width and height are the
// caller's (the printer scales the cell, so does the preview).
//
// Not thread-safe: one instance per render call. It owns its FreeType
// library, so instances on different threads share nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace counterlink::platform::printing {

inline constexpr int kCellHeight = 24;       // dots, both fonts
inline constexpr int kNarrowCellWidth = 12;  // ASCII
inline constexpr int kWideCellWidth = 24;    // two-byte characters

// A cell of `width` x kCellHeight dots, row-major, 1 = ink.
struct CellBitmap {
  int width = 0;
  std::vector<std::uint8_t> ink;
};

class PrinterFont {
 public:
  // Opens the font file. In a collection (.ttc) the first face whose family
  // name contains "Mono" is used (WenQuanYi Micro Hei Mono has ASCII at half
  // the ideograph width), else face 0. Returns null and sets `error` when
  // FreeType cannot read the file or the font has no Chinese ideographs.
  static std::unique_ptr<PrinterFont> open(const std::string& path, std::string& error);

  ~PrinterFont();
  PrinterFont(const PrinterFont&) = delete;
  PrinterFont& operator=(const PrinterFont&) = delete;

  // The cell for `code_point`, kNarrowCellWidth or kWideCellWidth wide.
  // Characters the font lacks come out as its missing-glyph box. Cached: the
  // reference stays valid for the life of the font.
  const CellBitmap& cell(char32_t code_point, int width, bool bold);

 private:
  struct Face;
  explicit PrinterFont(std::unique_ptr<Face> face);
  CellBitmap draw(char32_t code_point, int width, bool bold);

  std::unique_ptr<Face> face_;
  std::unordered_map<std::uint64_t, CellBitmap> cache_;
};

}  // namespace counterlink::platform::printing
