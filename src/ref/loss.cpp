// src/ref/loss.cpp: fill, scale_add, discounted_sum, weighted_sum, pair_select, gather_pair.
// Run book: loss.h.
#include "ref/loss.h"

#include <cmath>
#include <cstring>

#include "common.h"

namespace pompc::ref {
namespace {

void check_n(const char* who, int64_t n) {
  POMPC_REQUIRE(n >= 0, "%s: n (%lld) must be >= 0", who, static_cast<long long>(n));
}

// Index (0 = head i, 1 = head j) of the value min takes: NaN propagates, a tie takes head i.
template <typename T>
int min_side(T a, T b) {
  return (a <= b || std::isnan(a)) ? 0 : 1;
}

}  // namespace

template <typename T>
void fill(T* x, int64_t n, T value) {
  check_n("fill", n);
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) x[i] = value;
}

template <typename T>
void scale_add(T* y, const T* x, int64_t n, T alpha, const T* divisor, T beta) {
  check_n("scale_add", n);
  const T d = divisor ? *divisor : T(1);
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    const T v = alpha * x[i] / d;
    y[i] = beta == T(0) ? v : beta * y[i] + v;
  }
}

template <typename T>
void discounted_sum(T* out, const T* x, int64_t n, const TermWeights& w) {
  check_n("discounted_sum", n);
  check_term_weights("discounted_sum", w);
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    T acc = T(0);  // fill(out, 0), then per term scale_add's beta * y + (alpha * x) / 1, beta = 1
    for (int t = 0; t < w.count; ++t) acc = acc + T(w.w[t]) * x[t * n + i];
    out[i] = acc;
  }
}

template <typename T>
void weighted_sum(T* out, const T* x, const T* w, int64_t n, T alpha, const T* divisor, T beta) {
  check_n("weighted_sum", n);
  double s = 0;
  for (int64_t i = 0; i < n; ++i)
    s += static_cast<double>(x[i]) * (w ? static_cast<double>(w[i]) : 1.0);
  const double d = divisor ? static_cast<double>(*divisor) : 1.0;
  double r = static_cast<double>(alpha) * s / d;
  if (beta != T(0)) r += static_cast<double>(beta) * static_cast<double>(*out);
  *out = static_cast<T>(r);
}

template <typename T>
void pair_select_forward(T* out, const T* q, int Qn, int rows, PairMode mode, uint64_t seed,
                         uint64_t offset) {
  check_pair("pair_select_forward", Qn, rows, mode);
  int hi = 0, hj = 0;
  pick_pair(Qn, seed, offset, &hi, &hj);
  const T* qi = q + static_cast<int64_t>(hi) * rows;
  const T* qj = q + static_cast<int64_t>(hj) * rows;
  for (int r = 0; r < rows; ++r) {
    if (mode == PairMode::avg)
      out[r] = (qi[r] + qj[r]) / T(2);
    else
      out[r] = min_side(qi[r], qj[r]) == 0 ? qi[r] : qj[r];
  }
}

template <typename T>
void pair_select_backward(T* dq, const T* dout, const T* q, int Qn, int rows, PairMode mode,
                          uint64_t seed, uint64_t offset) {
  check_pair("pair_select_backward", Qn, rows, mode);
  int hi = 0, hj = 0;
  pick_pair(Qn, seed, offset, &hi, &hj);
  T* di = dq + static_cast<int64_t>(hi) * rows;
  T* dj = dq + static_cast<int64_t>(hj) * rows;
  const T* qi = q + static_cast<int64_t>(hi) * rows;
  const T* qj = q + static_cast<int64_t>(hj) * rows;
  for (int r = 0; r < rows; ++r) {
    if (mode == PairMode::avg) {
      di[r] += dout[r] / T(2);
      dj[r] += dout[r] / T(2);
    } else if (min_side(qi[r], qj[r]) == 0) {
      di[r] += dout[r];
    } else {
      dj[r] += dout[r];
    }
  }
}

void gather_pair(float* dst, int32_t* heads, const float* src, const PairGather& g, uint64_t seed,
                 uint64_t offset) {
  check_pair_gather("gather_pair", g);
  int lo = 0, hi = 0;
  pick_pair_sorted(g.Qn, seed, offset, &lo, &hi);
  heads[0] = lo;
  heads[1] = hi;
  for (int t = 0; t < g.tensors; ++t) {
    const int64_t n = g.per_head[t];
    for (int k = 0; k < 2; ++k)
      std::memcpy(dst + g.dst[t] + k * n, src + g.src[t] + (k == 0 ? lo : hi) * n,
                  static_cast<size_t>(n) * sizeof(float));
  }
}

#define POMPC_INSTANTIATE(T)                                                                  \
  template void fill<T>(T*, int64_t, T);                                                      \
  template void scale_add<T>(T*, const T*, int64_t, T, const T*, T);                          \
  template void discounted_sum<T>(T*, const T*, int64_t, const TermWeights&);                 \
  template void weighted_sum<T>(T*, const T*, const T*, int64_t, T, const T*, T);             \
  template void pair_select_forward<T>(T*, const T*, int, int, PairMode, uint64_t, uint64_t); \
  template void pair_select_backward<T>(T*, const T*, const T*, int, int, PairMode, uint64_t, \
                                        uint64_t);
POMPC_INSTANTIATE(float)
POMPC_INSTANTIATE(double)
#undef POMPC_INSTANTIATE

}  // namespace pompc::ref
