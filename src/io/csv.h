// src/io/csv.h: append-only CSV logs (train.csv, eval.csv) and a small CSV reader.
//
// Run book
//   writing              CsvLogger(path, columns) creates the file with the header line, or
//                        reopens an existing one (resume): its header must equal `columns`
//                        exactly, else an error shows both headers. Each row() is formatted in
//                        memory and written with a single write() on an O_APPEND descriptor,
//                        then fdatasync'ed ("flushed per row"), so a reader never sees a row
//                        torn by another writer and a crash loses at most the row in flight.
//   crash tails          if a crash (power loss) still left a partial last line, reopening cuts
//                        the file back to its last complete line; dropped_tail_bytes() says how
//                        much was cut, for the caller to report.
//   resume               CsvLogger(path, columns, Resume{"env_step", 150000}) also drops rows
//                        whose env_step is above 150000 (rows logged after the checkpoint the
//                        run resumes from), rewriting the file atomically; dropped_rows() counts
//                        them. Without it, rows are appended after whatever is there.
//   cells                CsvCell from integers, floating point (shortest round-trip text; nan,
//                        inf as "nan", "inf", "-inf") or strings (quoted per RFC 4180 when they
//                        hold a comma, quote or newline).
//   reading              read_csv(path) parses a whole file: lines starting with '#' and blank
//                        lines are skipped, the first remaining line is the header, quoted
//                        fields are unquoted; a row with the wrong number of fields is an error
//                        naming the line. CsvTable::column("x") finds a column by name.
//   tests                build/test_emu -ts=io -tc='*csv*'
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pompc::io {

class CsvCell {
 public:
  CsvCell(int v) : text_(std::to_string(v)) {}
  CsvCell(long v) : text_(std::to_string(v)) {}
  CsvCell(long long v) : text_(std::to_string(v)) {}
  CsvCell(unsigned v) : text_(std::to_string(v)) {}
  CsvCell(unsigned long v) : text_(std::to_string(v)) {}
  CsvCell(unsigned long long v) : text_(std::to_string(v)) {}
  CsvCell(double v);
  CsvCell(float v) : CsvCell(static_cast<double>(v)) {}
  CsvCell(const char* s) : CsvCell(std::string_view(s)) {}
  CsvCell(const std::string& s) : CsvCell(std::string_view(s)) {}
  CsvCell(std::string_view s);
  const std::string& text() const { return text_; }  // already quoted when needed

 private:
  std::string text_;
};

class CsvLogger {
 public:
  struct Resume {
    std::string column;  // an integer column, e.g. "env_step"
    int64_t max_value;   // rows with a larger value are dropped
  };

  CsvLogger(std::string path, std::vector<std::string> columns,
            std::optional<Resume> resume = std::nullopt);
  ~CsvLogger();
  CsvLogger(const CsvLogger&) = delete;
  CsvLogger& operator=(const CsvLogger&) = delete;

  // One row, one cell per column (throws if the count differs).
  void row(const std::vector<CsvCell>& cells);

  uint64_t dropped_tail_bytes() const { return dropped_tail_; }
  uint64_t dropped_rows() const { return dropped_rows_; }

 private:
  std::string path_;
  std::vector<std::string> columns_;
  int fd_ = -1;
  uint64_t dropped_tail_ = 0, dropped_rows_ = 0;
};

struct CsvTable {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::vector<int> line_of_row;  // 1-based source line of each row (for messages)
  // Index of a column; throws naming the file's columns when absent.
  size_t column(std::string_view name, const std::string& source) const;
  std::optional<size_t> find_column(std::string_view name) const;
};

CsvTable parse_csv(std::string_view text, const std::string& source);
CsvTable read_csv(const std::string& path);

// One CSV line (no newline) of already-formatted cells.
std::string csv_line(const std::vector<std::string>& cells);
// A field parsed as a double; throws naming source:line and column on bad input.
double csv_number(const CsvTable& t, size_t row, size_t col, const std::string& source);

}  // namespace pompc::io
