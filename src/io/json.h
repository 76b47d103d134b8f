// src/io/json.h: the small JSON reader and writer that the safetensors header needs.
//
// Run book
//   what                 parse(text) builds a Value tree of a complete JSON document (RFC 8259:
//                        objects, arrays, strings with every escape incl. \uXXXX surrogate pairs,
//                        numbers, true/false/null; whitespace around it allowed, nothing else).
//                        Numbers keep their source text, so integers up to 2^64 - 1 are read
//                        exactly (as_u64) and never pass through a double.
//   errors               pompc::Error "JSON syntax error at byte P: <what was expected>" with P
//                        the 0-based offset in `text` (callers add their own base offset, e.g.
//                        safetensors adds 8 for the length prefix). Duplicate object keys are
//                        refused; nesting deeper than 64 levels is refused (no stack overflow
//                        on hostile input).
//   writer               append_string(out, s) appends s quoted and escaped (control characters
//                        as \u00XX; UTF-8 bytes pass through unchanged).
//   tests                build/test_emu -ts=io -tc='*json*'
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pompc::io::json {

struct Value {
  enum class Kind { Null, Bool, Number, String, Array, Object };
  Kind kind = Kind::Null;
  bool boolean = false;                                // Kind::Bool
  std::string text;                                    // String: decoded; Number: source text
  std::vector<Value> items;                            // Kind::Array
  std::vector<std::pair<std::string, Value>> members;  // Kind::Object, in document order
  size_t pos = 0;                                      // byte offset where the value starts

  // The member named `key`, or nullptr (objects only).
  const Value* find(std::string_view key) const;
};

const char* kind_name(Value::Kind k);

// Parses a complete document; throws pompc::Error on any syntax error (see the run book).
// Error positions (and Value::pos) are base + the offset in `text`.
Value parse(std::string_view text, size_t base = 0);

// A Number that is a non-negative integer without fraction or exponent, as uint64_t; throws
// pompc::Error naming `what` otherwise (including on overflow).
uint64_t as_u64(const Value& v, const std::string& what);

// Appends s as a JSON string literal (quotes included).
void append_string(std::string& out, std::string_view s);

}  // namespace pompc::io::json
