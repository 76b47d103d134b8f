// src/io/csv.cpp: append-only CSV logger and reader (see csv.h).
#include "io/csv.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>

#include "common.h"
#include "io/atomic_file.h"
#include "io/config.h"

namespace pompc::io {

namespace {

std::string quote_if_needed(std::string_view s) {
  if (s.find_first_of(",\"\n\r") == std::string_view::npos) return std::string(s);
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + v[i];
  return out;
}

void write_all(int fd, const std::string& s, const std::string& path) {
  const char* p = s.data();
  size_t left = s.size();
  while (left > 0) {
    const ssize_t w = ::write(fd, p, left);
    if (w < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      throw Error(strfmt("appending to %s failed: %s", path.c_str(), std::strerror(e)));
    }
    p += w;
    left -= static_cast<size_t>(w);
  }
}

}  // namespace

CsvCell::CsvCell(double v) {
  if (std::isnan(v))
    text_ = "nan";
  else if (std::isinf(v))
    text_ = v > 0 ? "inf" : "-inf";
  else
    text_ = format_double(v);
}

CsvCell::CsvCell(std::string_view s) : text_(quote_if_needed(s)) {}

std::string csv_line(const std::vector<std::string>& cells) {
  std::string out;
  for (size_t i = 0; i < cells.size(); ++i) {
    if (i) out += ',';
    out += cells[i];
  }
  return out;
}

CsvLogger::CsvLogger(std::string path, std::vector<std::string> columns,
                     std::optional<Resume> resume)
    : path_(std::move(path)), columns_(std::move(columns)) {
  POMPC_REQUIRE(!columns_.empty(), "CSV log %s needs at least one column", path_.c_str());
  std::vector<std::string> quoted;
  for (const std::string& c : columns_) quoted.push_back(quote_if_needed(c));
  const std::string header = csv_line(quoted) + "\n";

  std::string existing;
  if (path_exists(path_)) existing = read_file(path_);
  // Cut a partial last line (a crash in the middle of a write by some other writer).
  const size_t last_nl = existing.rfind('\n');
  const size_t keep = last_nl == std::string::npos ? 0 : last_nl + 1;
  dropped_tail_ = existing.size() - keep;
  existing.resize(keep);

  if (existing.empty()) {
    write_file_atomic(path_, header);
  } else {
    const CsvTable t = parse_csv(existing, path_);
    POMPC_REQUIRE(t.header == columns_,
                  "%s has columns %s but this run logs %s: resume with the settings that wrote "
                  "it, or move the old file away",
                  path_.c_str(), joined(t.header).c_str(), joined(columns_).c_str());
    bool rewrite = false;
    std::string kept = header;
    if (resume) {
      const size_t col = t.column(resume->column, path_);
      for (size_t r = 0; r < t.rows.size(); ++r) {
        if (csv_number(t, r, col, path_) > static_cast<double>(resume->max_value)) {
          ++dropped_rows_;
          rewrite = true;
          continue;
        }
        std::vector<std::string> q;
        for (const std::string& f : t.rows[r]) q.push_back(quote_if_needed(f));
        kept += csv_line(q) + "\n";
      }
    }
    if (rewrite) {
      write_file_atomic(path_, kept);
    } else if (dropped_tail_ > 0) {
      POMPC_REQUIRE(::truncate(path_.c_str(), static_cast<off_t>(keep)) == 0,
                    "cannot cut the partial last line of %s: %s", path_.c_str(),
                    std::strerror(errno));
    }
  }
  fd_ = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd_ < 0) {
    const int e = errno;
    throw Error(strfmt("cannot open %s for appending: %s", path_.c_str(), std::strerror(e)));
  }
}

CsvLogger::~CsvLogger() {
  if (fd_ >= 0) ::close(fd_);
}

void CsvLogger::row(const std::vector<CsvCell>& cells) {
  POMPC_REQUIRE(cells.size() == columns_.size(), "%s: a row has %zu cells, the log has %zu columns",
                path_.c_str(), cells.size(), columns_.size());
  std::string line;
  for (size_t i = 0; i < cells.size(); ++i) {
    if (i) line += ',';
    line += cells[i].text();
  }
  line += '\n';
  write_all(fd_, line, path_);
  ::fdatasync(fd_);
}

// ---- reader ------------------------------------------------------------------------------------

std::optional<size_t> CsvTable::find_column(std::string_view name) const {
  for (size_t i = 0; i < header.size(); ++i)
    if (header[i] == name) return i;
  return std::nullopt;
}

size_t CsvTable::column(std::string_view name, const std::string& source) const {
  const auto c = find_column(name);
  POMPC_REQUIRE(c.has_value(), "%s has no column '%.*s' (its columns: %s)", source.c_str(),
                static_cast<int>(name.size()), name.data(), joined(header).c_str());
  return *c;
}

CsvTable parse_csv(std::string_view text, const std::string& source) {
  CsvTable t;
  size_t p = 0;
  int line = 1;
  bool have_header = false;
  while (p < text.size()) {
    const int start_line = line;
    // Skip blank and comment lines.
    if (text[p] == '\n' || text[p] == '\r' || text[p] == '#') {
      const size_t e = text.find('\n', p);
      p = e == std::string_view::npos ? text.size() : e + 1;
      ++line;
      continue;
    }
    std::vector<std::string> fields;
    std::string cur;
    bool in_quotes = false, done = false;
    while (!done) {
      if (p >= text.size()) {
        POMPC_REQUIRE(!in_quotes, "%s:%d: unterminated quoted field", source.c_str(), start_line);
        break;
      }
      const char c = text[p++];
      if (in_quotes) {
        if (c == '"') {
          if (p < text.size() && text[p] == '"') {
            cur += '"';
            ++p;
          } else {
            in_quotes = false;
          }
        } else {
          if (c == '\n') ++line;
          cur += c;
        }
      } else if (c == '"' && cur.empty()) {
        in_quotes = true;
      } else if (c == ',') {
        fields.push_back(std::move(cur));
        cur.clear();
      } else if (c == '\n') {
        ++line;
        done = true;
      } else if (c != '\r') {
        cur += c;
      }
    }
    fields.push_back(std::move(cur));
    if (!have_header) {
      t.header = std::move(fields);
      have_header = true;
    } else {
      POMPC_REQUIRE(fields.size() == t.header.size(),
                    "%s:%d: the row has %zu fields, the header has %zu", source.c_str(), start_line,
                    fields.size(), t.header.size());
      t.rows.push_back(std::move(fields));
      t.line_of_row.push_back(start_line);
    }
  }
  POMPC_REQUIRE(have_header, "%s has no header line", source.c_str());
  return t;
}

CsvTable read_csv(const std::string& path) {
  return parse_csv(read_file(path), path);
}

double csv_number(const CsvTable& t, size_t row, size_t col, const std::string& source) {
  const std::string& s = t.rows[row][col];
  if (s == "nan") return NAN;
  if (s == "inf") return INFINITY;
  if (s == "-inf") return -INFINITY;
  double x = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), x);
  POMPC_REQUIRE(r.ec == std::errc() && r.ptr == s.data() + s.size() && !s.empty(),
                "%s:%d: column %s holds '%s', not a number", source.c_str(), t.line_of_row[row],
                t.header[col].c_str(), s.c_str());
  return x;
}

}  // namespace pompc::io
