// src/io/progress.cpp: the progress line (see progress.h).
#include "io/progress.h"

#include <cmath>
#include <cstdlib>

#include "common.h"

namespace pompc::io {

std::string format_count(int64_t n) {
  const char* sign = n < 0 ? "-" : "";
  const double a = std::fabs(static_cast<double>(n));
  if (a < 1000) return strfmt("%s%lld", sign, static_cast<long long>(std::llabs(n)));
  static const char* const suffix[] = {"k", "M", "G", "T"};
  double v = a / 1000;
  int k = 0;
  while (v >= 999.5 && k < 3) v /= 1000, ++k;
  // 3 significant digits, trailing zeros removed: 1.5k, 200k, 12.3M, 1M.
  const int decimals = v >= 99.95 ? 0 : v >= 9.995 ? 1 : 2;
  std::string s = strfmt("%.*f", decimals, v);
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  return sign + s + suffix[k];
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--";
  const long long t = std::llround(seconds);
  if (t < 60) return strfmt("%llds", t);
  if (t < 3600) return strfmt("%lldm%02llds", t / 60, t % 60);
  if (t < 86400) return strfmt("%lldh%02lldm", t / 3600, (t % 3600) / 60);
  return strfmt("%lldd%02lldh", t / 86400, (t % 86400) / 3600);
}

std::string format_progress(const Progress& p) {
  const double frac =
      p.total_steps > 0 ? static_cast<double>(p.step) / static_cast<double>(p.total_steps) : 0.0;
  std::string s = strfmt("step %s/%s (%.1f%%)", format_count(p.step).c_str(),
                         format_count(p.total_steps).c_str(), 100.0 * frac);
  const bool rate_known = std::isfinite(p.steps_per_s) && p.steps_per_s > 0;
  s += rate_known ? strfmt(" | %.1f steps/s", p.steps_per_s) : std::string(" | -- steps/s");
  s += " | elapsed " + format_duration(p.elapsed_s);
  const int64_t left = p.total_steps > p.step ? p.total_steps - p.step : 0;
  s += " | ETA " + (rate_known ? format_duration(static_cast<double>(left) / p.steps_per_s)
                               : std::string("--"));
  if (p.last_eval_return)
    s += strfmt(" | eval %.1f @ %s", *p.last_eval_return, format_count(p.last_eval_step).c_str());
  else
    s += " | eval --";
  return s;
}

}  // namespace pompc::io
