// Incremental readers for the device import formats: RFC 4180 CSV and JSON
// lines. Both take the upload in chunks split anywhere (inside a quoted
// field, between CR and LF, inside a UTF-8 sequence) and hand out complete
// records. Memory is bounded by `max_record_bytes`: a longer record is
// reported as one oversized record (its content dropped) and reading goes
// on with the next one.
//
// Not thread-safe: one reader per upload.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace counterlink::platform::services {

// What is wrong with a record, if anything.
enum class RecordError {
  kNone,
  kTooLong,            // longer than max_record_bytes
  kUnterminatedQuote,  // CSV: the file ended inside a quoted field
  kStrayQuote,         // CSV: a character follows a closing quote
};

class CsvReader {
 public:
  explicit CsvReader(size_t max_record_bytes) : max_record_bytes_(max_record_bytes) {}

  // Calls on_record(std::vector<std::string>& fields, RecordError) for every
  // record completed by `data`. Blank lines are skipped (not records).
  template <typename OnRecord>
  void feed(std::string_view data, OnRecord&& on_record);

  // Completes a last record without a line break.
  template <typename OnRecord>
  void finish(OnRecord&& on_record);

 private:
  enum class State { kFieldStart, kUnquoted, kQuoted, kQuoteInQuoted };

  void append(char c) {
    if (record_bytes_ >= max_record_bytes_) {
      too_long_ = true;
      return;
    }
    ++record_bytes_;
    field_ += c;
  }
  // A field ends at a separator: the comma counts towards the record's size,
  // so a record of nothing but commas is bounded like any other.
  void end_field_at_comma() {
    if (record_bytes_ >= max_record_bytes_) {
      too_long_ = true;
    } else {
      ++record_bytes_;
    }
    end_field();
  }
  void end_field() {
    // Once a record is too long its content is dropped: memory stays bounded
    // by max_record_bytes whatever the record holds.
    if (!too_long_) fields_.push_back(std::move(field_));
    field_.clear();
  }
  template <typename OnRecord>
  void end_record(OnRecord& on_record);

  size_t max_record_bytes_;
  State state_ = State::kFieldStart;
  std::vector<std::string> fields_;
  std::string field_;
  size_t record_bytes_ = 0;
  bool too_long_ = false;
  bool stray_quote_ = false;
  bool quoted_ = false;   // the record had a quoted field (so it is not blank)
  bool skip_lf_ = false;  // the previous chunk ended a record with CR
};

class LineReader {
 public:
  explicit LineReader(size_t max_record_bytes) : max_record_bytes_(max_record_bytes) {}

  // Calls on_line(std::string_view line, RecordError) for every line ended by
  // `data` (LF or CRLF). Lines of only whitespace are skipped.
  template <typename OnLine>
  void feed(std::string_view data, OnLine&& on_line);

  template <typename OnLine>
  void finish(OnLine&& on_line);

 private:
  template <typename OnLine>
  void emit(OnLine& on_line);

  size_t max_record_bytes_;
  std::string line_;
  bool too_long_ = false;
};

// ---- Implementation ------------------------------------------------------------

template <typename OnRecord>
void CsvReader::end_record(OnRecord& on_record) {
  end_field();
  const bool blank = fields_.size() == 1 && fields_[0].empty() && !quoted_ && !too_long_;
  if (!blank) {
    RecordError error = too_long_      ? RecordError::kTooLong
                        : stray_quote_ ? RecordError::kStrayQuote
                                       : RecordError::kNone;
    if (too_long_) fields_.clear();
    on_record(fields_, error);
  }
  fields_.clear();
  record_bytes_ = 0;
  too_long_ = stray_quote_ = quoted_ = false;
  state_ = State::kFieldStart;
}

template <typename OnRecord>
void CsvReader::feed(std::string_view data, OnRecord&& on_record) {
  for (char c : data) {
    if (skip_lf_) {
      skip_lf_ = false;
      if (c == '\n') continue;
    }
    switch (state_) {
      case State::kFieldStart:
        if (c == '"') {
          state_ = State::kQuoted;
          quoted_ = true;
        } else if (c == ',') {
          end_field_at_comma();
        } else if (c == '\r' || c == '\n') {
          skip_lf_ = c == '\r';
          end_record(on_record);
        } else {
          append(c);
          state_ = State::kUnquoted;
        }
        break;
      case State::kUnquoted:
        if (c == ',') {
          end_field_at_comma();
          state_ = State::kFieldStart;
        } else if (c == '\r' || c == '\n') {
          skip_lf_ = c == '\r';
          end_record(on_record);
        } else {
          append(c);  // a quote inside an unquoted field is kept as is
        }
        break;
      case State::kQuoted:
        if (c == '"') {
          state_ = State::kQuoteInQuoted;
        } else {
          append(c);
        }
        break;
      case State::kQuoteInQuoted:
        if (c == '"') {
          append('"');
          state_ = State::kQuoted;
        } else if (c == ',') {
          end_field_at_comma();
          state_ = State::kFieldStart;
        } else if (c == '\r' || c == '\n') {
          skip_lf_ = c == '\r';
          end_record(on_record);
        } else {
          stray_quote_ = true;
          append(c);
          state_ = State::kUnquoted;
        }
        break;
    }
  }
}

template <typename OnRecord>
void CsvReader::finish(OnRecord&& on_record) {
  if (state_ == State::kQuoted) {
    end_field();
    fields_.clear();
    on_record(fields_, RecordError::kUnterminatedQuote);
    fields_.clear();
    state_ = State::kFieldStart;
    return;
  }
  if (!fields_.empty() || !field_.empty() || state_ != State::kFieldStart || quoted_ || too_long_) {
    end_record(on_record);
  }
}

template <typename OnLine>
void LineReader::emit(OnLine& on_line) {
  std::string_view line = line_;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  bool blank = line.find_first_not_of(" \t\r") == std::string_view::npos;
  if (too_long_) {
    on_line(std::string_view{}, RecordError::kTooLong);
  } else if (!blank) {
    on_line(line, RecordError::kNone);
  }
  line_.clear();
  too_long_ = false;
}

template <typename OnLine>
void LineReader::feed(std::string_view data, OnLine&& on_line) {
  while (!data.empty()) {
    size_t nl = data.find('\n');
    std::string_view part = data.substr(0, nl);
    if (!too_long_) {
      if (line_.size() + part.size() > max_record_bytes_) {
        too_long_ = true;
        line_.clear();
      } else {
        line_.append(part);
      }
    }
    if (nl == std::string_view::npos) return;
    emit(on_line);
    data.remove_prefix(nl + 1);
  }
}

template <typename OnLine>
void LineReader::finish(OnLine&& on_line) {
  if (!line_.empty() || too_long_) emit(on_line);
}

}  // namespace counterlink::platform::services
