// Receipt markup -> ESC/POS bytes for cloud receipt printers (issue 4).
//
// docs/receipt-markup.md is the specification of the markup and of the bytes
// each tag becomes; the unit tests pin those bytes. In short:
//
//   <C>..</C> <L>..</L> <R>..</R>   alignment blocks (do not nest in each other)
//   <B>..</B> <W>..</W> <H>..</H>   bold, double width, double height
//   <BR> or a newline               line feed
//   <HR>                            a dashed rule across the paper
//   <CUT> <LOGO> <DRAWER>           cut, NV logo slot 1, cash drawer kick
//   <QR size="1..16">data</QR>      QR code, model 2, error correction M
//   <BARCODE type="code128|ean13" height="1..255">data</BARCODE>
//   &lt; &gt; &amp;                 escapes
//
// Input is UTF-8; non-ASCII text is sent as GB18030 in the printer's Chinese
// mode (FS &). The printer wraps long lines itself (32 columns on 58 mm paper,
// 48 on 80 mm, half that under <W>); the renderer never inserts line breaks.
//
// Pure functions, no I/O; thread-safe (each call opens its own iconv handle).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace counterlink::platform {

enum class PaperWidth { k58, k80 };

// Characters per line in the normal-width ASCII font: 32 on 58 mm, 48 on 80 mm.
int paper_columns(PaperWidth paper);
// Printable dots per line at 203 dpi: 384 on 58 mm, 576 on 80 mm. Used to
// refuse bar codes and QR codes that would not fit across the paper.
int paper_dots(PaperWidth paper);

// Limits, each enforced with a MarkupError.
inline constexpr std::size_t kMaxMarkupBytes = 64 * 1024;
inline constexpr std::size_t kMaxQrDataBytes = 400;
inline constexpr int kMaxCopies = 10;

// The first problem found in the markup. line and column are 1-based
// (column counts UTF-8 characters, not bytes) and point at the start of the
// offending tag, escape or character; both are 0 for errors that belong to
// no position (copies out of range, markup too long).
struct MarkupError {
  int line = 0;
  int column = 0;
  std::string message;

  // "3:5: unclosed <B> opened at 3:5; ..." or just the message when unpositioned.
  std::string to_string() const;
};

// Either bytes (ok) or an error; never both. warnings hold non-fatal notes
// such as characters the printer's font cannot show, each "line:column: ...".
struct RenderResult {
  std::string bytes;
  std::vector<std::string> warnings;
  std::optional<MarkupError> error;

  bool ok() const { return !error.has_value(); }
};

// Renders `copies` (1..kMaxCopies) copies of the receipt. Each copy starts
// with ESC @ and repeats the whole receipt, including its <CUT>s. On any
// error the result holds the first error and no bytes.
RenderResult render_escpos(std::string_view markup, PaperWidth paper, int copies);

// The text a person would read on one copy, for logs and previews: lines
// wrapped by character at the paper's columns the way the printer wraps them,
// alignment applied with spaces, double-width characters followed by spaces
// to fill their columns, and non-text items as markers ([LOGO], [QR: data],
// [BARCODE code128: data], [DRAWER], [CUT]); <HR> is a row of '-'. Invalid
// markup yields "invalid receipt markup: " followed by MarkupError::to_string().
std::string plain_text_preview(std::string_view markup, PaperWidth paper);

// Splits an ESC/POS stream into chunks of at most max_chunk bytes (0 is
// treated as 1) whose concatenation is `escpos`. Boundaries fall between the
// commands and GB18030 characters this renderer emits wherever a unit fits in
// a chunk; a single unit longer than max_chunk (a long QR store command) is cut
// at arbitrary byte boundaries. That is safe because the device reassembles
// by chunk index before printing; the aligned boundaries only make a chunk
// that is printed on its own (older firmware) degrade gracefully.
std::vector<std::string> split_for_packets(std::string_view escpos, std::size_t max_chunk);

}  // namespace counterlink::platform
