// src/io/progress.h: the one-line training progress report (pure formatting).
//
// Run book
//   format_progress(p)   "step 123k/1M (12.3%) | 85.2 steps/s | elapsed 24m10s | ETA 2h52m |
//                         eval 812.3 @ 100k"
//                        (one line, no newline). Unknown parts print "--": ETA before a rate is
//                        known (steps_per_s <= 0 or not finite), eval before the first one. The
//                        ETA is (total - step) / steps_per_s. The caller decides how the rate is
//                        measured (e.g. over the last minute) and where the line goes (stderr,
//                        with '\r' on a terminal).
//   helpers              format_count(1234567) = "1.23M", format_duration(3725) = "1h02m".
//   tests                build/test_emu -ts=io -tc='*progress*'
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace pompc::io {

struct Progress {
  int64_t step = 0;                        // env steps done
  int64_t total_steps = 0;                 // env steps of the run
  double elapsed_s = 0;                    // wall time of this process so far
  double steps_per_s = 0;                  // measured rate; <= 0 when unknown
  std::optional<double> last_eval_return;  // mean return of the last evaluation
  int64_t last_eval_step = 0;              // env step of that evaluation
};

std::string format_progress(const Progress& p);

// Counts with k/M/G suffixes and 3 significant digits ("999", "1.5k", "200k", "1M", "12.3M").
std::string format_count(int64_t n);
// Durations: "42s", "12m05s", "3h07m", "2d04h"; "--" for negative or non-finite input.
std::string format_duration(double seconds);

}  // namespace pompc::io
