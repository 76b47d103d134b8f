// tests/bench_util.cpp: the machine peaks the benchmarks are held to (run book: bench_util.h).
#include "bench_util.h"

#include <omp.h>

#include <cstdio>
#include <fstream>
#include <string>

namespace pompc::test {

double host_triad_gbs() {
  static double cached = 0;
  if (cached > 0) return cached;
  const long long n = 16 << 20;
  std::vector<float> a(n), b(n, 1.0f), c(n, 2.0f);
  const double ms = time_ms(
      [&] {
#pragma omp parallel for schedule(static)
        for (long long i = 0; i < n; ++i) a[i] = b[i] + 0.5f * c[i];
      },
      5);
  cached = 3.0 * n * sizeof(float) / (ms * 1e6);
  return cached;
}

double host_cpuinfo_mhz() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("cpu MHz", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return std::stod(line.substr(colon + 1));
    }
  return 0;
}

// Every OpenMP thread runs independent chains of native-width vector FMAs (enough to cover
// latency x throughput on current cores, few enough to stay in registers: 16 of AVX-512's 32, 10
// of AVX2's 16) for a fixed count; the best of 3 runs.
double host_fma_peak_gflops() {
  static double cached = 0;
  if (cached > 0) return cached;
  typedef float vec __attribute__((vector_size(4 * kHostLanes)));
  constexpr int kChains = kHostLanes == 16 ? 16 : 10;
  const long iters = 20'000'000;
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    float sink = 0;
    const double t0 = omp_get_wtime();
    int threads = 1;
#pragma omp parallel reduction(+ : sink)
    {
#pragma omp single
      threads = omp_get_num_threads();
      vec acc[kChains];
      for (int c = 0; c < kChains; ++c) acc[c] = vec{} + 0.001f * static_cast<float>(c);
      const vec mul = vec{} + 0.999999f, add = vec{} + 1e-7f;
      for (long it = 0; it < iters / kChains; ++it) {
#pragma GCC unroll 16
        for (int c = 0; c < kChains; ++c) acc[c] = acc[c] * mul + add;
      }
      for (int c = 0; c < kChains; ++c)
        for (int l = 0; l < kHostLanes; ++l) sink += acc[c][l];
    }
    const double s = omp_get_wtime() - t0;
    const double flops =
        2.0 * kHostLanes * static_cast<double>(iters / kChains) * kChains * threads;
    best = std::max(best, flops / s * 1e-9);
    if (sink == 12345.0f) std::printf(" ");  // keep the chains alive
  }
  cached = best;
  return best;
}

}  // namespace pompc::test
