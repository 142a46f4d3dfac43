#include "printing/printer_font.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <string_view>

#include <ft2build.h>
#include FT_FREETYPE_H
#include FT_OUTLINE_H

namespace counterlink::platform::printing {
namespace {

// Em size of the two-byte characters: 22 of the cell's 24 dots leaves the
// one-dot gap between ideographs that the printer's 24x24 font has.
constexpr int kWideEmPixels = 22;
// ASCII is drawn at the same height, condensed so that a digit's advance
// fits the 12-dot cell (see Face::narrow_x_pixels).
constexpr int kNarrowEmPixels = 22;
// Emboldening for ESC E, in 26.6 fixed point: widens stems by about one dot,
// like the printer's double-struck bold.
constexpr FT_Pos kBoldStrength = 56;
// Anti-aliased coverage at or above this becomes a dot (the printer has no
// grey); slightly under half keeps thin CJK strokes unbroken.
constexpr int kInkThreshold = 112;

// Glyphs whose union box decides where the baseline sits in each cell, so
// that ascenders, descenders and brackets of the whole font stay inside it.
constexpr std::array<char32_t, 10> kNarrowReference = {'H', 'g', 'j', 'y', '|',
                                                       '(', ')', '[', '_', '$'};
constexpr std::array<char32_t, 6> kWideReference = {0x4E2D, 0x56FD, 0x9F98, 0x6C38, 0x5E7F, 0xFFE5};

std::string freetype_error(std::string_view what, FT_Error code) {
  const char* text = FT_Error_String(code);
  return std::string(what) + " (FreeType error " + std::to_string(code) +
         (text != nullptr ? std::string(": ") + text : std::string()) + ")";
}

}  // namespace

struct PrinterFont::Face {
  FT_Library library = nullptr;
  FT_Face face = nullptr;
  int narrow_x_pixels = kNarrowEmPixels;
  int narrow_baseline = 18;  // dots from the cell's top row
  int wide_baseline = 20;

  ~Face() {
    if (face != nullptr) FT_Done_Face(face);
    if (library != nullptr) FT_Done_FreeType(library);
  }

  // Baseline row that centres the union box of `reference` in the cell.
  int baseline_for(const char32_t* reference, std::size_t count) const {
    FT_Pos above = 0;
    FT_Pos below = 0;
    for (std::size_t i = 0; i < count; ++i) {
      if (FT_Get_Char_Index(face, reference[i]) == 0) continue;
      if (FT_Load_Char(face, reference[i], FT_LOAD_NO_BITMAP) != 0) continue;
      const FT_Glyph_Metrics& m = face->glyph->metrics;
      above = std::max(above, m.horiBearingY);
      below = std::max(below, m.height - m.horiBearingY);
    }
    const int top = static_cast<int>((above + 63) / 64);
    const int bottom = static_cast<int>((below + 63) / 64);
    if (top + bottom == 0) return kCellHeight * 3 / 4;
    // Taller than the cell: clip top and bottom evenly.
    return top + (kCellHeight - top - bottom) / 2;
  }
};

std::unique_ptr<PrinterFont> PrinterFont::open(const std::string& path, std::string& error) {
  auto face = std::make_unique<Face>();
  if (FT_Error e = FT_Init_FreeType(&face->library); e != 0) {
    face->library = nullptr;
    error = freetype_error("cannot start FreeType", e);
    return nullptr;
  }
  // A collection holds several faces; prefer the monospaced one.
  FT_Face probe = nullptr;
  if (FT_Error e = FT_New_Face(face->library, path.c_str(), -1, &probe); e != 0) {
    error = freetype_error("cannot read font file " + path, e);
    return nullptr;
  }
  const FT_Long faces = probe->num_faces;
  FT_Done_Face(probe);
  FT_Long chosen = 0;
  for (FT_Long i = 0; i < faces && chosen == 0; ++i) {
    if (FT_New_Face(face->library, path.c_str(), i, &probe) != 0) continue;
    if (probe->family_name != nullptr &&
        std::string_view(probe->family_name).find("Mono") != std::string_view::npos)
      chosen = i;
    FT_Done_Face(probe);
  }
  if (FT_Error e = FT_New_Face(face->library, path.c_str(), chosen, &face->face); e != 0) {
    face->face = nullptr;
    error = freetype_error("cannot read font file " + path, e);
    return nullptr;
  }
  if (!FT_IS_SCALABLE(face->face) || FT_Get_Char_Index(face->face, 0x4E2D) == 0) {
    error = "font file " + path +
            " has no scalable Chinese glyphs (no U+4E2D); use wqy-microhei.ttc from the "
            "Debian package fonts-wqy-microhei";
    return nullptr;
  }

  FT_Set_Pixel_Sizes(face->face, kWideEmPixels, kWideEmPixels);
  face->wide_baseline = face->baseline_for(kWideReference.data(), kWideReference.size());
  FT_Set_Pixel_Sizes(face->face, kNarrowEmPixels, kNarrowEmPixels);
  if (FT_Load_Char(face->face, '0', FT_LOAD_NO_BITMAP) == 0) {
    const FT_Pos advance = face->face->glyph->advance.x;  // 26.6
    if (advance > kNarrowCellWidth * 64)
      face->narrow_x_pixels = static_cast<int>(kNarrowEmPixels * kNarrowCellWidth * 64 / advance);
  }
  FT_Set_Pixel_Sizes(face->face, face->narrow_x_pixels, kNarrowEmPixels);
  face->narrow_baseline = face->baseline_for(kNarrowReference.data(), kNarrowReference.size());
  return std::unique_ptr<PrinterFont>(new PrinterFont(std::move(face)));
}

PrinterFont::PrinterFont(std::unique_ptr<Face> face) : face_(std::move(face)) {}

PrinterFont::~PrinterFont() = default;

const CellBitmap& PrinterFont::cell(char32_t code_point, int width, bool bold) {
  const std::uint64_t key = static_cast<std::uint64_t>(code_point) |
                            (static_cast<std::uint64_t>(width) << 32) |
                            (static_cast<std::uint64_t>(bold) << 40);
  auto it = cache_.find(key);
  if (it == cache_.end()) it = cache_.emplace(key, draw(code_point, width, bold)).first;
  return it->second;
}

CellBitmap PrinterFont::draw(char32_t code_point, int width, bool bold) {
  CellBitmap cell;
  cell.width = width;
  cell.ink.assign(static_cast<std::size_t>(width) * kCellHeight, 0);
  const bool wide = width >= kWideCellWidth;
  FT_Face face = face_->face;
  if (wide) {
    FT_Set_Pixel_Sizes(face, kWideEmPixels, kWideEmPixels);
  } else {
    FT_Set_Pixel_Sizes(face, face_->narrow_x_pixels, kNarrowEmPixels);
  }
  if (FT_Load_Char(face, code_point, FT_LOAD_NO_BITMAP) != 0) return cell;  // blank
  FT_GlyphSlot slot = face->glyph;
  const int advance = static_cast<int>((slot->advance.x + 32) / 64);
  if (bold && slot->format == FT_GLYPH_FORMAT_OUTLINE)
    FT_Outline_EmboldenXY(&slot->outline, kBoldStrength, kBoldStrength / 4);
  if (FT_Render_Glyph(slot, FT_RENDER_MODE_NORMAL) != 0) return cell;

  const FT_Bitmap& bitmap = slot->bitmap;
  const int baseline = wide ? face_->wide_baseline : face_->narrow_baseline;
  // Centre the glyph's advance in the cell; a glyph wider than its cell
  // (a proportional font's 'W') is clipped, as it could not be printed either.
  const int left = (width - advance) / 2 + slot->bitmap_left;
  const int top = baseline - slot->bitmap_top;
  for (unsigned row = 0; row < bitmap.rows; ++row) {
    const int y = top + static_cast<int>(row);
    if (y < 0 || y >= kCellHeight) continue;
    const unsigned char* src = bitmap.buffer + static_cast<std::ptrdiff_t>(row) * bitmap.pitch;
    for (unsigned col = 0; col < bitmap.width; ++col) {
      const int x = left + static_cast<int>(col);
      if (x < 0 || x >= width) continue;
      if (src[col] >= kInkThreshold) cell.ink[static_cast<std::size_t>(y) * width + x] = 1;
    }
  }
  return cell;
}

}  // namespace counterlink::platform::printing
