// Errors and preconditions shared by every layer.
//
// pompc reports bad input and failed library calls by throwing pompc::Error with a message that
// says what to change ("num_elites (600) must be <= num_samples (512)"). Nothing below the CLI
// prints and exits; the CLI catches, prints the message and returns non-zero.
#pragma once

#include <cstdarg>
#include <cstdio>
#include <stdexcept>
#include <string>

namespace pompc {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// printf-style formatting into a std::string.
[[gnu::format(printf, 1, 2)]] inline std::string strfmt(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  va_list ap2;
  va_copy(ap2, ap);
  const int n = std::vsnprintf(nullptr, 0, fmt, ap);
  va_end(ap);
  std::string s(n > 0 ? static_cast<size_t>(n) : 0, '\0');
  if (n > 0) std::vsnprintf(s.data(), s.size() + 1, fmt, ap2);
  va_end(ap2);
  return s;
}

}  // namespace pompc

// POMPC_REQUIRE(cond, "fmt", args...): throw pompc::Error with the formatted message when cond
// is false. For preconditions at a component's boundary; the message names the fix.
#define POMPC_REQUIRE(cond, ...)                                   \
  do {                                                             \
    if (!(cond)) throw ::pompc::Error(::pompc::strfmt(__VA_ARGS__)); \
  } while (0)
