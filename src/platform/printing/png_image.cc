#include "printing/png_image.h"

#include <algorithm>
#include <csetjmp>
#include <cstring>

#include <png.h>

namespace counterlink::platform::printing {
namespace {

// libpng reports errors by longjmp to the setjmp in encode_rows(); the state
// it needs lives here, outside that function's frame, so no C++ object with
// a destructor is skipped by the jump.
struct WriteState {
  std::string* out = nullptr;
  std::string error;
  bool out_of_memory = false;
};

void on_error(png_structp png, png_const_charp message) {
  auto* state = static_cast<WriteState*>(png_get_error_ptr(png));
  state->error = message != nullptr ? message : "unknown libpng error";
  png_longjmp(png, 1);
}

void on_warning(png_structp, png_const_charp) {}

void on_write(png_structp png, png_bytep data, png_size_t length) {
  auto* state = static_cast<WriteState*>(png_get_io_ptr(png));
  try {
    state->out->append(reinterpret_cast<const char*>(data), length);
  } catch (const std::bad_alloc&) {
    state->out_of_memory = true;
    png_error(png, "out of memory writing the PNG");
  }
}

void on_flush(png_structp) {}

// Packs a row of 0/1 ink bytes into 1-bit PNG samples, most significant bit
// first, 1 = white (the maximum grey level).
void pack_row(const std::uint8_t* ink, int width, png_bytep row) {
  std::memset(row, 0, static_cast<std::size_t>(width + 7) / 8);
  for (int x = 0; x < width; ++x)
    if (ink[x] == 0) row[x / 8] |= static_cast<png_byte>(0x80 >> (x % 8));
}

// The libpng calls. Plain C data only between setjmp and the calls that may
// longjmp back to it.
bool encode_rows(png_structp png, png_infop info, const MonoImage& image, int dots_per_inch,
                 png_textp text, png_bytep row) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_IHDR(png, info, static_cast<png_uint_32>(image.width),
               static_cast<png_uint_32>(image.height), 1, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  // pHYs counts pixels per metre: 203 dpi is 7992.
  const auto per_metre = static_cast<png_uint_32>(dots_per_inch / 0.0254 + 0.5);
  png_set_pHYs(png, info, per_metre, per_metre, PNG_RESOLUTION_METER);
  png_set_text(png, info, text, 1);
  png_write_info(png, info);
  for (int y = 0; y < image.height; ++y) {
    pack_row(&image.ink[static_cast<std::size_t>(y) * image.width], image.width, row);
    png_write_row(png, row);
  }
  png_write_end(png, info);
  return true;
}

}  // namespace

void MonoImage::fill(int x, int y, int w, int h) {
  const int x0 = std::max(x, 0);
  const int y0 = std::max(y, 0);
  const int x1 = std::min(x + w, width);
  const int y1 = std::min(y + h, height);
  for (int row = y0; row < y1; ++row)
    std::fill_n(&ink[static_cast<std::size_t>(row) * width + x0], std::max(x1 - x0, 0), 1);
}

bool encode_png(const MonoImage& image, int dots_per_inch, const std::string& software,
                std::string& png_out, std::string& error) {
  if (image.width <= 0 || image.height <= 0) {
    error = "empty image";
    return false;
  }
  WriteState state;
  state.out = &png_out;
  png_out.clear();
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &state, on_error, on_warning);
  if (png == nullptr) {
    error = "libpng could not create a write structure (out of memory)";
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_write_struct(&png, nullptr);
    error = "libpng could not create an info structure (out of memory)";
    return false;
  }
  png_set_write_fn(png, &state, on_write, on_flush);

  std::string key = "Software";
  std::string value = software;
  png_text text{};
  text.compression = PNG_TEXT_COMPRESSION_NONE;
  text.key = key.data();
  text.text = value.data();
  text.text_length = value.size();
  std::vector<png_byte> row(static_cast<std::size_t>(image.width + 7) / 8);

  const bool ok = encode_rows(png, info, image, dots_per_inch, &text, row.data());
  png_destroy_write_struct(&png, &info);
  if (!ok) error = "PNG encoding failed: " + state.error;
  return ok;
}

}  // namespace counterlink::platform::printing
