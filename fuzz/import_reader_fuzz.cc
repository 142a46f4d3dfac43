// libFuzzer target for the device import readers (CsvReader, LineReader in
// src/platform/services/import_readers.h): they parse uploads that arrive
// from the network in chunks split anywhere.
//
// Input layout (so hand-written seeds stay readable):
//   byte 0           max_record_bytes: 1..128 for b < 128 (oversized records
//                    are common), else 1 + (b - 128) * 256 (they are rare)
//   byte 1           n = byte % 16, the number of chunk-length bytes
//   next n bytes     chunk lengths, used in turn; 0 feeds an empty chunk
//   rest             the upload, fed to both readers
//
// Checks, aborting on a violation:
//  - one chunk, the fuzz-chosen chunks and one byte per chunk all yield the
//    same records (a chunked upload must not depend on where it was split);
//  - no record carries more than max_record_bytes of content, and an
//    oversized record carries none;
//  - LineReader agrees with a reference model (split at LF, drop one CR,
//    skip blank lines, the limit counts the CR);
//  - CSV write/read round trip: the records read without error, written back
//    with every field quoted, read again to the same records.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "import_readers.h"

namespace {

using counterlink::platform::services::CsvReader;
using counterlink::platform::services::LineReader;
using counterlink::platform::services::RecordError;

#define FUZZ_CHECK(condition, detail)                                  \
  do {                                                                 \
    if (!(condition)) {                                                \
      std::fprintf(stderr, "FUZZ_CHECK failed: %s (%s)\n", #condition, \
                   std::string(detail).c_str());                       \
      __builtin_trap();                                                \
    }                                                                  \
  } while (false)

// Off until CsvReader counts field separators towards max_record_bytes.
// Today only field content counts, so a record of N commas holds N + 1 empty
// std::strings (32 bytes each, more while the vector grows) and is never
// kTooLong: 64 MiB of commas in one upload take about 4 GB. The check says
// content plus one byte per separator stays within the limit; turn it on
// with the fix (reproducer: "\x02\x00,,,,\n", i.e. limit 3, four commas).
constexpr bool kCheckFieldCount = true;

struct CsvRecord {
  std::vector<std::string> fields;
  RecordError error;
  bool operator==(const CsvRecord&) const = default;
};
struct LineRecord {
  std::string line;
  RecordError error;
  bool operator==(const LineRecord&) const = default;
};

// Splits `data` into chunks whose lengths come from `lengths`, in turn.
template <typename Feed>
void feed_in_chunks(std::string_view data, const std::vector<size_t>& lengths, Feed&& feed) {
  if (lengths.empty()) {
    feed(data);
    return;
  }
  size_t next = 0;
  size_t empty_in_a_row = 0;
  while (!data.empty()) {
    size_t length = lengths[next++ % lengths.size()];
    if (length == 0 && ++empty_in_a_row > lengths.size()) length = 1;  // all zero: make progress
    if (length != 0) empty_in_a_row = 0;
    length = std::min(length, data.size());
    feed(data.substr(0, length));
    data.remove_prefix(length);
  }
}

template <typename Splitter>
std::vector<CsvRecord> read_csv(size_t max_record_bytes, Splitter&& split) {
  std::vector<CsvRecord> records;
  auto on_record = [&](std::vector<std::string>& fields, RecordError error) {
    records.push_back({fields, error});
  };
  CsvReader reader(max_record_bytes);
  split([&](std::string_view chunk) { reader.feed(chunk, on_record); });
  reader.finish(on_record);
  return records;
}

template <typename Splitter>
std::vector<LineRecord> read_lines(size_t max_record_bytes, Splitter&& split) {
  std::vector<LineRecord> records;
  auto on_line = [&](std::string_view line, RecordError error) {
    records.push_back({std::string(line), error});
  };
  LineReader reader(max_record_bytes);
  split([&](std::string_view chunk) { reader.feed(chunk, on_line); });
  reader.finish(on_line);
  return records;
}

std::vector<LineRecord> reference_lines(std::string_view data, size_t max_record_bytes) {
  std::vector<LineRecord> records;
  while (!data.empty()) {
    const size_t nl = data.find('\n');
    std::string_view line = data.substr(0, nl);
    data.remove_prefix(nl == std::string_view::npos ? data.size() : nl + 1);
    if (line.size() > max_record_bytes) {
      records.push_back({"", RecordError::kTooLong});
      continue;
    }
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    records.push_back({std::string(line), RecordError::kNone});
  }
  return records;
}

std::string quoted_csv(const std::vector<CsvRecord>& records) {
  std::string out;
  for (const auto& record : records) {
    for (size_t i = 0; i < record.fields.size(); ++i) {
      if (i > 0) out += ',';
      out += '"';
      for (char c : record.fields[i]) {
        if (c == '"') out += '"';
        out += c;
      }
      out += '"';
    }
    out += "\r\n";
  }
  return out;
}

void check_csv(std::string_view data, size_t max_record_bytes, const std::vector<size_t>& lengths) {
  const auto whole = read_csv(max_record_bytes, [&](auto feed) { feed(data); });
  const auto chunked =
      read_csv(max_record_bytes, [&](auto feed) { feed_in_chunks(data, lengths, feed); });
  FUZZ_CHECK(chunked == whole, "CSV records depend on the chunk boundaries");
  const auto bytewise = read_csv(max_record_bytes, [&](auto feed) {
    for (size_t i = 0; i < data.size(); ++i)
      feed(data.substr(i, 1));
  });
  FUZZ_CHECK(bytewise == whole, "CSV records differ when fed one byte at a time");

  std::vector<CsvRecord> clean;
  for (const auto& record : whole) {
    size_t content = 0;
    for (const auto& field : record.fields)
      content += field.size();
    FUZZ_CHECK(content <= max_record_bytes, "CSV record content over max_record_bytes");
    if (kCheckFieldCount) {
      FUZZ_CHECK(content + record.fields.size() <= max_record_bytes + 1,
                 "CSV record fields over max_record_bytes");
    }
    if (record.error == RecordError::kTooLong) {
      FUZZ_CHECK(record.fields.empty(), "an oversized CSV record kept its content");
    }
    if (record.error == RecordError::kNone) {
      FUZZ_CHECK(!record.fields.empty(), "a CSV record without fields");
      clean.push_back(record);
    }
  }
  const std::string rewritten = quoted_csv(clean);
  const auto reread = read_csv(max_record_bytes, [&](auto feed) { feed(rewritten); });
  FUZZ_CHECK(reread == clean, "CSV records change when written quoted and read again");
}

void check_lines(std::string_view data, size_t max_record_bytes,
                 const std::vector<size_t>& lengths) {
  const auto whole = read_lines(max_record_bytes, [&](auto feed) { feed(data); });
  const auto chunked =
      read_lines(max_record_bytes, [&](auto feed) { feed_in_chunks(data, lengths, feed); });
  FUZZ_CHECK(chunked == whole, "JSON lines depend on the chunk boundaries");
  const auto bytewise = read_lines(max_record_bytes, [&](auto feed) {
    for (size_t i = 0; i < data.size(); ++i)
      feed(data.substr(i, 1));
  });
  FUZZ_CHECK(bytewise == whole, "JSON lines differ when fed one byte at a time");
  for (const auto& record : whole) {
    FUZZ_CHECK(record.line.size() <= max_record_bytes, "line over max_record_bytes");
    if (record.error == RecordError::kTooLong) {
      FUZZ_CHECK(record.line.empty(), "an oversized line kept its content");
    }
    FUZZ_CHECK(record.line.find('\n') == std::string::npos, "a line contains LF");
  }
  FUZZ_CHECK(whole == reference_lines(data, max_record_bytes),
             "LineReader disagrees with the reference");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(bytes), size);
  if (in.size() < 2) return 0;
  const auto limit = static_cast<uint8_t>(in[0]);
  const size_t max_record_bytes = limit < 128 ? size_t{limit} + 1 : 1 + size_t{limit - 128u} * 256;
  const size_t n = static_cast<uint8_t>(in[1]) % 16;
  in.remove_prefix(2);
  if (in.size() < n) return 0;
  std::vector<size_t> lengths;
  for (size_t i = 0; i < n; ++i)
    lengths.push_back(static_cast<uint8_t>(in[i]));
  in.remove_prefix(n);

  check_csv(in, max_record_bytes, lengths);
  check_lines(in, max_record_bytes, lengths);
  return 0;
}
