// A black-and-white raster and its PNG encoding, for the receipt preview.
// Private to the printing library.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace counterlink::platform::printing {

// One byte per dot, row-major, 1 = ink (black), 0 = paper (white). Thermal
// printers have no grey: a dot is burnt or it is not.
struct MonoImage {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> ink;

  MonoImage(int w, int h) : width(w), height(h), ink(static_cast<std::size_t>(w) * h, 0) {}

  // Sets ink over the rectangle, clipped to the image.
  void fill(int x, int y, int w, int h);
  bool at(int x, int y) const { return ink[static_cast<std::size_t>(y) * width + x] != 0; }
};

// Encodes `image` as a 1-bit grayscale PNG with a pHYs chunk of
// `dots_per_inch` and a tEXt chunk "Software" = `software`. Returns false and
// sets `error` (libpng's message) on failure; `png` is then unspecified.
// Thread-safe: libpng keeps no global state for writing.
bool encode_png(const MonoImage& image, int dots_per_inch, const std::string& software,
                std::string& png, std::string& error);

}  // namespace counterlink::platform::printing
