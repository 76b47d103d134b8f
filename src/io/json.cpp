// src/io/json.cpp: recursive-descent JSON parser and string writer (see json.h).
#include "io/json.h"

#include <cstring>

#include "common.h"

namespace pompc::io::json {

namespace {

constexpr int kMaxDepth = 64;

class Parser {
 public:
  Parser(std::string_view s, size_t base) : s_(s), base_(base) {}

  Value document() {
    skip_ws();
    Value v = value(0);
    skip_ws();
    if (p_ != s_.size()) fail("unexpected data after the end of the JSON document");
    return v;
  }

 private:
  std::string_view s_;
  size_t base_;
  size_t p_ = 0;

  [[noreturn]] void fail(const std::string& what) const { fail_at(p_, what); }
  [[noreturn]] void fail_at(size_t at, const std::string& what) const {
    throw Error(strfmt("JSON syntax error at byte %zu: %s", base_ + at, what.c_str()));
  }
  std::string here() const {
    if (p_ >= s_.size()) return "end of input";
    const unsigned char c = static_cast<unsigned char>(s_[p_]);
    if (c >= 0x20 && c < 0x7f) return strfmt("'%c'", c);
    return strfmt("byte 0x%02x", c);
  }

  void skip_ws() {
    while (p_ < s_.size() && (s_[p_] == ' ' || s_[p_] == '\t' || s_[p_] == '\n' || s_[p_] == '\r'))
      ++p_;
  }

  void expect_literal(const char* lit) {
    const size_t n = std::strlen(lit);
    if (s_.substr(p_, n) != lit) fail(strfmt("expected '%s', found %s", lit, here().c_str()));
    p_ += n;
  }

  Value value(int depth) {
    if (depth > kMaxDepth) fail(strfmt("nesting deeper than %d levels", kMaxDepth));
    Value v;
    v.pos = base_ + p_;
    if (p_ >= s_.size()) fail("expected a value, found end of input");
    switch (s_[p_]) {
      case '{':
        object(v, depth);
        break;
      case '[':
        array(v, depth);
        break;
      case '"':
        v.kind = Value::Kind::String;
        v.text = string();
        break;
      case 't':
        expect_literal("true");
        v.kind = Value::Kind::Bool;
        v.boolean = true;
        break;
      case 'f':
        expect_literal("false");
        v.kind = Value::Kind::Bool;
        break;
      case 'n':
        expect_literal("null");
        break;
      default:
        if (s_[p_] == '-' || (s_[p_] >= '0' && s_[p_] <= '9')) {
          v.kind = Value::Kind::Number;
          v.text = number();
        } else {
          fail(strfmt("expected a value, found %s", here().c_str()));
        }
    }
    return v;
  }

  void object(Value& v, int depth) {
    v.kind = Value::Kind::Object;
    ++p_;  // '{'
    skip_ws();
    if (p_ < s_.size() && s_[p_] == '}') {
      ++p_;
      return;
    }
    for (;;) {
      skip_ws();
      if (p_ >= s_.size() || s_[p_] != '"')
        fail(strfmt("expected '\"' to start an object key, found %s", here().c_str()));
      const size_t key_pos = p_;
      std::string key = string();
      for (const auto& m : v.members)
        if (m.first == key) fail_at(key_pos, strfmt("duplicate key \"%s\"", key.c_str()));
      skip_ws();
      if (p_ >= s_.size() || s_[p_] != ':')
        fail(strfmt("expected ':' after an object key, found %s", here().c_str()));
      ++p_;
      skip_ws();
      Value member = value(depth + 1);
      v.members.emplace_back(std::move(key), std::move(member));
      skip_ws();
      if (p_ < s_.size() && s_[p_] == ',') {
        ++p_;
        continue;
      }
      if (p_ < s_.size() && s_[p_] == '}') {
        ++p_;
        return;
      }
      fail(strfmt("expected ',' or '}' in an object, found %s", here().c_str()));
    }
  }

  void array(Value& v, int depth) {
    v.kind = Value::Kind::Array;
    ++p_;  // '['
    skip_ws();
    if (p_ < s_.size() && s_[p_] == ']') {
      ++p_;
      return;
    }
    for (;;) {
      skip_ws();
      v.items.push_back(value(depth + 1));
      skip_ws();
      if (p_ < s_.size() && s_[p_] == ',') {
        ++p_;
        continue;
      }
      if (p_ < s_.size() && s_[p_] == ']') {
        ++p_;
        return;
      }
      fail(strfmt("expected ',' or ']' in an array, found %s", here().c_str()));
    }
  }

  std::string number() {
    const size_t start = p_;
    auto digits = [&] {
      const size_t d0 = p_;
      while (p_ < s_.size() && s_[p_] >= '0' && s_[p_] <= '9') ++p_;
      return p_ - d0;
    };
    if (s_[p_] == '-') ++p_;
    if (p_ < s_.size() && s_[p_] == '0') {
      ++p_;
    } else if (digits() == 0) {
      fail(strfmt("expected a digit, found %s", here().c_str()));
    }
    if (p_ < s_.size() && s_[p_] == '.') {
      ++p_;
      if (digits() == 0) fail(strfmt("expected a digit after '.', found %s", here().c_str()));
    }
    if (p_ < s_.size() && (s_[p_] == 'e' || s_[p_] == 'E')) {
      ++p_;
      if (p_ < s_.size() && (s_[p_] == '+' || s_[p_] == '-')) ++p_;
      if (digits() == 0) fail(strfmt("expected a digit in the exponent, found %s", here().c_str()));
    }
    return std::string(s_.substr(start, p_ - start));
  }

  unsigned hex4() {
    unsigned u = 0;
    for (int i = 0; i < 4; ++i, ++p_) {
      if (p_ >= s_.size()) fail("unterminated \\u escape");
      const char c = s_[p_];
      u <<= 4;
      if (c >= '0' && c <= '9')
        u |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f')
        u |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        u |= static_cast<unsigned>(c - 'A' + 10);
      else
        fail(strfmt("expected a hex digit in a \\u escape, found %s", here().c_str()));
    }
    return u;
  }

  static void put_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  // One raw UTF-8 sequence starting at p_ (first byte >= 0x80), validated and copied.
  void utf8_sequence(std::string& out) {
    const unsigned char c = static_cast<unsigned char>(s_[p_]);
    int n = 0;
    unsigned cp = 0;
    if (c >= 0xC2 && c <= 0xDF)
      n = 1, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF)
      n = 2, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4)
      n = 3, cp = c & 0x07;
    else
      fail(strfmt("invalid UTF-8 lead byte 0x%02x in a string", c));
    if (p_ + static_cast<size_t>(n) >= s_.size()) fail("truncated UTF-8 sequence");
    for (int i = 1; i <= n; ++i) {
      const unsigned char d = static_cast<unsigned char>(s_[p_ + i]);
      if ((d & 0xC0) != 0x80) fail_at(p_ + i, "invalid UTF-8 continuation byte in a string");
      cp = (cp << 6) | (d & 0x3F);
    }
    const unsigned min_cp[] = {0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      fail("invalid UTF-8 sequence (overlong, surrogate or beyond U+10FFFF) in a string");
    out.append(s_.data() + p_, static_cast<size_t>(n + 1));
    p_ += static_cast<size_t>(n + 1);
  }

  std::string string() {
    ++p_;  // opening quote
    std::string out;
    for (;;) {
      if (p_ >= s_.size()) fail("unterminated string");
      const unsigned char c = static_cast<unsigned char>(s_[p_]);
      if (c == '"') {
        ++p_;
        return out;
      }
      if (c < 0x20) fail(strfmt("control character 0x%02x inside a string (must be escaped)", c));
      if (c >= 0x80) {
        utf8_sequence(out);
        continue;
      }
      if (c != '\\') {
        out += static_cast<char>(c);
        ++p_;
        continue;
      }
      ++p_;
      if (p_ >= s_.size()) fail("unterminated escape");
      const char e = s_[p_++];
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (s_.substr(p_, 2) != "\\u") fail("high surrogate \\u escape without its low half");
            p_ += 2;
            const unsigned lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("invalid low surrogate in a \\u escape pair");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail("lone low surrogate in a \\u escape");
          }
          put_utf8(out, cp);
          break;
        }
        default:
          p_ -= 1;
          fail(strfmt("invalid escape '\\%c' in a string", e));
      }
    }
  }
};

}  // namespace

const Value* Value::find(std::string_view key) const {
  for (const auto& m : members)
    if (m.first == key) return &m.second;
  return nullptr;
}

const char* kind_name(Value::Kind k) {
  switch (k) {
    case Value::Kind::Null:
      return "null";
    case Value::Kind::Bool:
      return "a boolean";
    case Value::Kind::Number:
      return "a number";
    case Value::Kind::String:
      return "a string";
    case Value::Kind::Array:
      return "an array";
    case Value::Kind::Object:
      return "an object";
  }
  return "?";
}

Value parse(std::string_view text, size_t base) {
  return Parser(text, base).document();
}

uint64_t as_u64(const Value& v, const std::string& what) {
  POMPC_REQUIRE(v.kind == Value::Kind::Number, "%s must be a non-negative integer, found %s",
                what.c_str(), kind_name(v.kind));
  const std::string& t = v.text;
  const bool plain = !t.empty() && t.find_first_not_of("0123456789") == std::string::npos;
  POMPC_REQUIRE(plain, "%s must be a non-negative integer, found %s", what.c_str(), t.c_str());
  uint64_t x = 0;
  for (char c : t) {
    const uint64_t d = static_cast<uint64_t>(c - '0');
    POMPC_REQUIRE(x <= (UINT64_MAX - d) / 10, "%s = %s does not fit in 64 bits", what.c_str(),
                  t.c_str());
    x = x * 10 + d;
  }
  return x;
}

void append_string(std::string& out, std::string_view s) {
  out += '"';
  for (char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20)
          out += strfmt("\\u%04x", c);
        else
          out += ch;
    }
  }
  out += '"';
}

}  // namespace pompc::io::json
