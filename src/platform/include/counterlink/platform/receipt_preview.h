// Receipt markup -> PNG: one copy of a receipt drawn the way the printer
// prints it, for a person to look at before printing (issue 4;
// GET /v1/print-jobs/{id}/preview.png). docs/receipt-markup.md, "Preview".
//
// The image is the paper's printable width at one pixel per printer dot
// (384 px on 58 mm paper, 576 px on 80 mm, 203 dpi), black on white, with a
// small top and bottom margin. It uses the printer's cells (12x24 dots for
// ASCII, 24x24 for Chinese), wraps lines where the printer wraps them
// (exactly as plain_text_preview), and draws QR codes and bar codes as
// scannable symbols. The PNG is 1-bit grayscale with a 203 dpi pHYs chunk and
// a tEXt "Software" = "Counterlink".
//
// Text is drawn with FreeType from a CJK font file: PreviewOptions::font_path,
// else $COUNTERLINK_PREVIEW_FONT, else the first file of
// kPreviewFontSearchPath that exists (Debian: the fonts-wqy-microhei package).
//
// Thread-safe: every call opens its own FreeType library and face; nothing is
// shared between calls. Memory is bounded by the height cap (at most
// 576 x kPreviewMaxHeightDots bytes of raster plus a glyph cache).
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

#include "counterlink/platform/receipt.h"

namespace counterlink::platform {

// Tallest image rendered, in dots (about 2.5 m of paper). A taller receipt is
// refused with PreviewResult::Failure::kTooTall before any raster is allocated.
inline constexpr int kPreviewMaxHeightDots = 20000;

// The environment variable naming the preview font file; overrides the search
// path, and an unusable file it names is an error (no silent fallback).
inline constexpr const char* kPreviewFontEnv = "COUNTERLINK_PREVIEW_FONT";

// Where the font is looked for when neither the options nor the environment
// name one. WenQuanYi Micro Hei ships a monospaced face whose ASCII is half
// the width of its ideographs, like the printer's fonts.
inline constexpr std::array<const char*, 3> kPreviewFontSearchPath = {
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",  // Debian, Ubuntu
    "/usr/share/fonts/wqy-microhei/wqy-microhei.ttc",  // Fedora, Arch
    "/usr/local/share/fonts/wqy-microhei.ttc",
};

struct PreviewOptions {
  // A TrueType/OpenType font file (a .ttc collection's monospaced face is
  // preferred). Empty: $COUNTERLINK_PREVIEW_FONT, then kPreviewFontSearchPath.
  std::string font_path;
};

// Either a PNG (ok) or a failure with a message saying what to do; never both.
struct PreviewResult {
  enum class Failure {
    kNone,
    kInvalidMarkup,  // error is exactly render_escpos's MarkupError (line:column)
    kTooTall,        // valid markup, taller than kPreviewMaxHeightDots; error is unpositioned
    kNoFont,         // the server lacks a usable font (install fonts-wqy-microhei)
    kInternal,       // a library failed (out of memory); error says which
  };

  std::string png;
  Failure failure = Failure::kNone;
  // Set when failure != kNone. Failures other than kInvalidMarkup belong to no
  // position in the markup: line and column are 0.
  std::optional<MarkupError> error;

  bool ok() const { return failure == Failure::kNone; }
};

// Renders one copy of the receipt as a PNG. Invalid markup is reported before
// the font is looked for, so it gets the same error on every server.
PreviewResult render_preview_png(std::string_view markup, PaperWidth paper,
                                 const PreviewOptions& options = {});

// The font file render_preview_png would use with `options`, or the
// kNoFont message when there is none; for a readiness check at start-up.
// Only checks that the file exists, not that FreeType can read it.
struct PreviewFont {
  std::string path;
  std::string error;  // empty when path is set
};
PreviewFont locate_preview_font(const PreviewOptions& options = {});

}  // namespace counterlink::platform
