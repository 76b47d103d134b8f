// src/ref/scale.cpp: RunningScale percentiles and update. Run book: scale.h.
#include "ref/scale.h"

#include <algorithm>
#include <cmath>

#include "common.h"

namespace pompc::ref {
namespace {

// torch.sort order: ascending with NaN after every number (a strict weak ordering).
template <typename T>
bool nan_last_less(T a, T b) {
  return !std::isnan(a) && (std::isnan(b) || a < b);
}

template <typename T>
void sort_into(T* scratch, const T* x, int n) {
  std::copy(x, x + n, scratch);
  std::sort(scratch, scratch + n, nan_last_less<T>);
}

}  // namespace

template <typename T>
T percentile_sorted(const T* sorted, int n, T q) {
  POMPC_REQUIRE(n >= 1, "percentile: n (%d) must be >= 1 (a percentile of nothing)", n);
  POMPC_REQUIRE(q >= T(0) && q <= T(100), "percentile: q (%g) must be in [0, 100]",
                static_cast<double>(q));
  const T pos = q * static_cast<T>(n - 1) / T(100);
  const T lo = std::floor(pos);
  const T hi = std::min(lo + T(1), static_cast<T>(n - 1));
  const T w_hi = pos - lo;
  const T w_lo = T(1) - w_hi;
  return sorted[static_cast<int>(lo)] * w_lo + sorted[static_cast<int>(hi)] * w_hi;
}

template <typename T>
T percentile_linear(T* scratch, const T* x, int n, T q) {
  POMPC_REQUIRE(n >= 1, "percentile_linear: n (%d) must be >= 1", n);
  sort_into(scratch, x, n);
  return percentile_sorted(scratch, n, q);
}

template <typename T>
void running_scale_update(T* value, const T* x, int n, T* scratch, T tau) {
  POMPC_REQUIRE(n >= 1, "running_scale_update: the batch must hold at least one value (n = %d)", n);
  sort_into(scratch, x, n);
  const T p5 = percentile_sorted(scratch, n, T(5));
  const T p95 = percentile_sorted(scratch, n, T(95));
  const T d = p95 - p5;
  const T v = std::isnan(d) ? d : std::max(d, T(1));  // torch.clamp(min=1) keeps NaN
  *value = *value + tau * (v - *value);
}

#define POMPC_INSTANTIATE_SCALE(T)                       \
  template T percentile_sorted<T>(const T*, int, T);     \
  template T percentile_linear<T>(T*, const T*, int, T); \
  template void running_scale_update<T>(T*, const T*, int, T*, T);
POMPC_INSTANTIATE_SCALE(float)
POMPC_INSTANTIATE_SCALE(double)
#undef POMPC_INSTANTIATE_SCALE

}  // namespace pompc::ref
