// src/ref/two_hot.cpp: symlog / symexp, two-hot targets, soft cross-entropy, two_hot_inv.
// Run book: two_hot.h.
#include "ref/two_hot.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "common.h"
#include "ref/linear.h"

namespace pompc::ref {

template <typename T>
T symlog(T x) {
  const T s = x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
  return s * std::log(T(1) + std::fabs(x));
}

template <typename T>
T symexp(T x) {
  const T s = x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
  return s * (std::exp(std::fabs(x)) - T(1));
}

namespace {

void check_bins(const char* who, const Bins& b, int rows) {
  POMPC_REQUIRE(rows >= 0, "%s: rows (%d) must be >= 0", who, rows);
  POMPC_REQUIRE(b.num_bins >= 2,
                "%s: num_bins (%d) must be >= 2 (TD-MPC2's 0 / 1 bin modes are not supported)", who,
                b.num_bins);
  POMPC_REQUIRE(b.vmin < b.vmax, "%s: vmin (%g) must be < vmax (%g)", who,
                static_cast<double>(b.vmin), static_cast<double>(b.vmax));
}

// The two non-zero entries of two_hot(x): weight w0 at k0 and w1 at k1 = (k0 + 1) mod K.
// Returns false for NaN input.
template <typename T>
bool two_hot_entries(T x, const Bins& b, int* k0, int* k1, T* w0, T* w1) {
  const T lo = static_cast<T>(b.vmin), hi = static_cast<T>(b.vmax);
  const T bin_size = static_cast<T>((static_cast<double>(b.vmax) - static_cast<double>(b.vmin)) /
                                    (b.num_bins - 1));
  T y = symlog(x);
  if (std::isnan(y)) return false;
  y = std::min(std::max(y, lo), hi);
  const T pos = (y - lo) / bin_size;
  const T k = std::floor(pos);
  const T f = pos - k;
  // pos is within [0, K-1] up to rounding; clamp the index so rounding can never index outside.
  *k0 = std::min(std::max(static_cast<int>(k), 0), b.num_bins - 1);
  *k1 = (*k0 + 1) % b.num_bins;
  *w0 = T(1) - f;
  *w1 = f;
  return true;
}

[[noreturn]] void throw_nan(const char* who, int row) {
  throw Error(strfmt("%s: target x[%d] is NaN (a NaN reward or TD target upstream)", who, row));
}

template <typename T>
void row_softmax(const T* x, int K, T* p) {
  T mx = x[0];
  for (int k = 1; k < K; ++k) mx = std::max(mx, x[k]);
  double s = 0;
  for (int k = 0; k < K; ++k) {
    p[k] = std::exp(x[k] - mx);
    s += p[k];
  }
  const T inv = static_cast<T>(1.0 / s);
  for (int k = 0; k < K; ++k) p[k] *= inv;
}

// m = sum_k softmax(logits)_k bin_k (summed in double), with the softmax left in p: the
// expectation in symlog space that two_hot_inv and its backward share.
template <typename T>
T softmax_bin_mean(const T* logits, const Bins& bins, T* p) {
  row_softmax(logits, bins.num_bins, p);
  double m = 0;
  for (int k = 0; k < bins.num_bins; ++k) m += static_cast<double>(p[k]) * bin_center<T>(bins, k);
  return static_cast<T>(m);
}

}  // namespace

template <typename T>
void soft_ce_forward(T* loss, const T* logits, const T* x, int rows, const Bins& bins) {
  check_bins("soft_ce_forward", bins, rows);
  const int K = bins.num_bins;
  int bad = -1;
#pragma omp parallel for schedule(static) if (int64_t{rows} * K > (1 << 14))
  for (int r = 0; r < rows; ++r) {
    int k0, k1;
    T w0, w1;
    if (!two_hot_entries(x[r], bins, &k0, &k1, &w0, &w1)) {
#pragma omp critical(pompc_soft_ce_bad)
      bad = bad < 0 ? r : std::min(bad, r);
      continue;
    }
    const T* l = logits + static_cast<int64_t>(r) * K;
    T mx = l[0];
    for (int k = 1; k < K; ++k) mx = std::max(mx, l[k]);
    double s = 0;
    for (int k = 0; k < K; ++k) s += std::exp(static_cast<double>(l[k] - mx));
    const T lse = static_cast<T>(std::log(s));
    loss[r] = -(w0 * (l[k0] - mx - lse) + w1 * (l[k1] - mx - lse));
  }
  if (bad >= 0) throw_nan("soft_ce_forward", bad);
}

template <typename T>
void soft_ce_backward(T* dlogits, const T* dloss, const T* logits, const T* x, int rows,
                      const Bins& bins) {
  check_bins("soft_ce_backward", bins, rows);
  const int K = bins.num_bins;
  int bad = -1;
#pragma omp parallel if (int64_t{rows} * K > (1 << 14))
  {
    static thread_local std::vector<T> pbuf;
    if (static_cast<int>(pbuf.size()) < K) pbuf.resize(K);
    T* p = pbuf.data();
#pragma omp for schedule(static)
    for (int r = 0; r < rows; ++r) {
      int k0, k1;
      T w0, w1;
      if (!two_hot_entries(x[r], bins, &k0, &k1, &w0, &w1)) {
#pragma omp critical(pompc_soft_ce_bad)
        bad = bad < 0 ? r : std::min(bad, r);
        continue;
      }
      row_softmax(logits + static_cast<int64_t>(r) * K, K, p);
      const T g = dloss[r];
      const T tsum = w0 + w1;
      T* d = dlogits + static_cast<int64_t>(r) * K;
      for (int k = 0; k < K; ++k) d[k] += g * p[k] * tsum;
      d[k0] -= g * w0;
      d[k1] -= g * w1;
    }
  }
  if (bad >= 0) throw_nan("soft_ce_backward", bad);
}

template <typename T>
void two_hot_inv_forward(T* out, const T* logits, const T* bias, int rows, const Bins& bins) {
  check_bins("two_hot_inv_forward", bins, rows);
  const int K = bins.num_bins;
  std::vector<T> biased;
  if (bias != nullptr) {
    biased = with_bias(logits, bias, rows, K);
    logits = biased.data();
  }
#pragma omp parallel if (int64_t{rows} * K > (1 << 14))
  {
    static thread_local std::vector<T> pbuf;
    if (static_cast<int>(pbuf.size()) < K) pbuf.resize(K);
    T* p = pbuf.data();
#pragma omp for schedule(static)
    for (int r = 0; r < rows; ++r) {
      out[r] = symexp(softmax_bin_mean(logits + static_cast<int64_t>(r) * K, bins, p));
    }
  }
}

template <typename T>
void two_hot_inv_pair_forward(T* out, const T* logits, const T* bias, int Qn, int rows,
                              const Bins& bins, PairMode mode, uint64_t seed, uint64_t offset) {
  check_bins("two_hot_inv_pair_forward", bins, rows);
  check_pair("two_hot_inv_pair_forward", Qn, rows, mode);
  const int K = bins.num_bins;
  int hi = 0, hj = 0;
  pick_pair(Qn, seed, offset, &hi, &hj);
  const T* li = logits + static_cast<int64_t>(hi) * rows * K;
  const T* lj = logits + static_cast<int64_t>(hj) * rows * K;
  std::vector<T> bi, bj;  // the two heads' logits + their biases
  if (bias != nullptr) {
    bi = with_bias(li, bias + static_cast<int64_t>(hi) * K, rows, K);
    bj = with_bias(lj, bias + static_cast<int64_t>(hj) * K, rows, K);
    li = bi.data();
    lj = bj.data();
  }
#pragma omp parallel if (int64_t{rows} * K > (1 << 14))
  {
    static thread_local std::vector<T> pbuf;
    if (static_cast<int>(pbuf.size()) < K) pbuf.resize(K);
    T* p = pbuf.data();
#pragma omp for schedule(static)
    for (int r = 0; r < rows; ++r) {  // two_hot_inv_forward's value of each head, pair_select's
      const int64_t o = static_cast<int64_t>(r) * K;  // rule
      const T qi = symexp(softmax_bin_mean(li + o, bins, p));
      const T qj = symexp(softmax_bin_mean(lj + o, bins, p));
      if (mode == PairMode::avg)
        out[r] = (qi + qj) / T(2);
      else
        out[r] = (qi <= qj || std::isnan(qi)) ? qi : qj;  // NaN propagates, a tie takes head i
    }
  }
}

template <typename T>
void two_hot_inv_backward(T* dlogits, const T* dout, const T* logits, int rows, const Bins& bins) {
  check_bins("two_hot_inv_backward", bins, rows);
  const int K = bins.num_bins;
#pragma omp parallel if (int64_t{rows} * K > (1 << 14))
  {
    static thread_local std::vector<T> pbuf;
    if (static_cast<int>(pbuf.size()) < K) pbuf.resize(K);
    T* p = pbuf.data();
#pragma omp for schedule(static)
    for (int r = 0; r < rows; ++r) {
      const T m = softmax_bin_mean(logits + static_cast<int64_t>(r) * K, bins, p);
      const T dm = m != T(0) ? dout[r] * std::exp(std::fabs(m)) : T(0);
      T* d = dlogits + static_cast<int64_t>(r) * K;
      for (int k = 0; k < K; ++k) d[k] += dm * p[k] * (bin_center<T>(bins, k) - m);
    }
  }
}

#define POMPC_INSTANTIATE_TWO_HOT(T)                                                       \
  template T symlog<T>(T);                                                                 \
  template T symexp<T>(T);                                                                 \
  template void soft_ce_forward<T>(T*, const T*, const T*, int, const Bins&);              \
  template void soft_ce_backward<T>(T*, const T*, const T*, const T*, int, const Bins&);   \
  template void two_hot_inv_forward<T>(T*, const T*, const T*, int, const Bins&);          \
  template void two_hot_inv_backward<T>(T*, const T*, const T*, int, const Bins&);         \
  template void two_hot_inv_pair_forward<T>(T*, const T*, const T*, int, int, const Bins&, \
                                            PairMode, uint64_t, uint64_t);
POMPC_INSTANTIATE_TWO_HOT(float)
POMPC_INSTANTIATE_TWO_HOT(double)
#undef POMPC_INSTANTIATE_TWO_HOT

}  // namespace pompc::ref
