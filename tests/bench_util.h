// Helpers for the bench suite (build/bench -ts=bench; build/test_gpu -ts=bench on a GPU).
//
// Every benchmark prints one line per figure:
//   bench: <area>/<what> <shape>: <value> <unit> [(<fraction> of <peak>)]
// Timings are wall-clock over repeated calls after a warm-up, with the backend synchronised
// before the clock stops; figures are medians of 5 repetitions.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

namespace pompc::test {

// Median over 5 repetitions of the mean time of one call (ms); `sync` waits for the backend.
inline double time_ms(const std::function<void()>& fn, int iters,
                      const std::function<void()>& sync = [] {}) {
  fn();
  sync();
  std::vector<double> reps;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) fn();
    sync();
    const auto t1 = std::chrono::steady_clock::now();
    reps.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count() / iters);
  }
  std::sort(reps.begin(), reps.end());
  return reps[2];
}

// Host memory bandwidth measured on the spot with a STREAM-style triad a = b + s c over 3 x 64 MiB
// (GB/s, counting 3 arrays of traffic): the "peak" that memory-bound reference ops are held to.
double host_triad_gbs();

// fp32 lanes of the widest vector unit the tests are compiled for (-march=native).
#if defined(__AVX512F__)
constexpr int kHostLanes = 16;
#elif defined(__AVX__)
constexpr int kHostLanes = 8;
#else
constexpr int kHostLanes = 4;
#endif

// Measured fp32 FMA peak (GFLOP/s) of all OpenMP threads: the "peak" compute-bound reference ops
// (the GEMM) are held to. Measured once, then cached.
double host_fma_peak_gflops();

// The clock /proc/cpuinfo reports ("cpu MHz"; a VM reports its base clock), 0 when unavailable.
double host_cpuinfo_mhz();

}  // namespace pompc::test
