#include "bench_util.h"

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

}  // namespace pompc::test
