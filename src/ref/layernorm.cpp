// src/ref/layernorm.cpp: fused bias + dropout + LayerNorm + Mish / SimNorm. Run book: layernorm.h.
//
// Row statistics are summed in double and rounded to T once; the forward then uses the rounded
// mean / rstd, so the backward (which only has the saved T values) differentiates exactly the
// function the forward computed. Parameter gradients are summed per thread (static row split,
// double partials) and reduced in thread order: deterministic for a given thread count.
#include "ref/layernorm.h"

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common.h"

namespace pompc::ref {

namespace {

// e^x for float, branch-free so that the row loops vectorise (std::exp does not without
// -ffast-math): Cody-Waite reduction x = n ln2 + r, |r| <= ln2 / 2, Cephes' degree-7 polynomial
// for e^r (~1 ulp), then the exponent n added into the bits. Valid for x <= 88; returns 0 below
// -87 (where e^x would be subnormal: < 1.7e-38 and irrelevant next to the O(1) terms it meets).
// NaN in, NaN out.
inline float exp_f(float x) {
  const float xc = x < -87.0f ? -87.0f : x;
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float f = xc * 1.44269504088896341f + kMagic;
  const float n = f - kMagic;
  const uint32_t scale_bits =
      (std::bit_cast<uint32_t>(f) - std::bit_cast<uint32_t>(kMagic) + 127u) << 23;
  float r = std::fma(-n, 0.693359375f, xc);  // ln2 split: hi has few bits, so n * hi is exact
  r = std::fma(n, 2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = std::fma(p, r, 1.3981999507e-3f);
  p = std::fma(p, r, 8.3334519073e-3f);
  p = std::fma(p, r, 4.1665795894e-2f);
  p = std::fma(p, r, 1.6666665459e-1f);
  p = std::fma(p, r, 5.0000001201e-1f);
  p = std::fma(p, r * r, r) + 1.0f;
  const float e = p * std::bit_cast<float>(scale_bits);
  return x < -87.0f ? 0.0f : e;
}

inline float exp_t(float x) { return exp_f(x); }
inline double exp_t(double x) { return std::exp(x); }

// Mish from one exponential. With e = e^x and n = e (e + 2) = (1 + e)^2 - 1:
//   tanh(softplus(x)) = tanh(log(1 + e)) = ((1+e)^2 - 1) / ((1+e)^2 + 1) = n / (n + 2)
//   mish(x)  = x n / (n + 2)
//   mish'(x) = t + x sigmoid(x) (1 - t^2),  t = n / (n + 2),  with sigmoid(x) = e / (1 + e) and
//              1 - t^2 = 4 (n + 1) / (n + 2)^2 = 4 (1 + e)^2 / (n + 2)^2, so
//            = t + 4 x e (1 + e) / (n + 2)^2.
// Above PyTorch's threshold (x > 20) softplus(x) = x and tanh(x) = 1 in float and in double, so
// mish = x and mish' = 1 there (as the tanh(x) formulas give); x is clamped to 20 before the
// exponential so n (<= e^40) stays finite ((n + 2)^2 is never formed: q * q). The same formulas serve both
// types; only the exponential differs (std::exp for double, the polynomial above for float).
template <typename T>
inline T mish_inl(T x) {
  const T e = exp_t(std::min(x, T(20)));
  const T n = e * (e + T(2));
  const T m = x * (n / (n + T(2)));
  return x > T(20) ? x : m;
}

template <typename T>
inline T mish_grad_inl(T x) {
  const T e = exp_t(std::min(x, T(20)));
  const T n = e * (e + T(2));
  const T q = T(1) / (n + T(2));
  const T g = n * q + x * ((T(4) * e * (T(1) + e) * q) * q);
  return x > T(20) ? T(1) : g;
}

}  // namespace

template <typename T>
T mish(T x) {
  return mish_inl(x);
}

template <typename T>
T mish_grad(T x) {
  return mish_grad_inl(x);
}

namespace {

enum class Act { mish, simnorm };

void check_args(const char* who, Act act, int rows, int C, int groups, float p) {
  POMPC_REQUIRE(rows >= 0 && C >= 1, "%s: rows (%d) must be >= 0 and C (%d) >= 1", who, rows, C);
  POMPC_REQUIRE(groups >= 1 && rows % groups == 0,
                "%s: groups (%d) must be >= 1 and divide rows (%d): rows = groups * batch, one "
                "parameter set per group (groups = Qn for the Q ensemble, else 1)",
                who, groups, rows);
  POMPC_REQUIRE(act != Act::simnorm || C % kSimNormGroup == 0,
                "%s: C (%d) must be a multiple of the SimNorm group size %d (latent_dim)", who, C,
                kSimNormGroup);
  POMPC_REQUIRE(p >= 0.0f && p < 1.0f, "%s: dropout p (%g) must be in [0, 1)", who,
                static_cast<double>(p));
}

void check_backward_ptrs(const char* who, const void* mean, const void* rstd) {
  POMPC_REQUIRE(mean != nullptr && rstd != nullptr,
                "%s: mean and rstd are required: pass the buffers the forward filled", who);
}

// Reusable per-thread scratch (grows, never shrinks): no allocation in steady state.
template <typename T>
T* scratch(size_t n, int slot) {
  static thread_local std::vector<T> bufs[2];
  if (bufs[slot].size() < n) bufs[slot].resize(n);
  return bufs[slot].data();
}

// The row loops below are written so that g++ vectorises them at -O2 as well as -O3 (`omp simd`
// lifts the -O2 cost model; mish / mish' inline to branch-free code). The double row sums use
// `omp simd reduction`: a fixed, compile-time summation order (deterministic), rounded to T once.

// keep[c] = dropout_keep(dr.p, dr.seed, dr.offset, row_base + c) for c < C (dr.p > 0), bit for
// bit, but with one Philox call per block of 4 draws (philox_u32 computes all 4 words and keeps
// one) and the blocks in a vectorisable loop.
inline void dropout_mask(uint8_t* __restrict keep, const Dropout& dr, int64_t row_base, int C) {
  const uint64_t first = static_cast<uint64_t>(row_base), b0 = first >> 2;
  const int64_t nblk = static_cast<int64_t>(((first + static_cast<uint64_t>(C) + 3) >> 2) - b0);
  uint32_t* __restrict w = scratch<uint32_t>(static_cast<size_t>(4 * nblk), 0);
  const uint64_t offset = dr.offset.resolve();
  const uint32_t o0 = static_cast<uint32_t>(offset), o1 = static_cast<uint32_t>(offset >> 32);
  const uint32_t k0 = static_cast<uint32_t>(dr.seed), k1 = static_cast<uint32_t>(dr.seed >> 32);
#pragma omp simd
  for (int64_t j = 0; j < nblk; ++j) {
    const uint64_t blk = b0 + static_cast<uint64_t>(j);
    const u32x4 r = philox4x32_10(
        u32x4{static_cast<uint32_t>(blk), static_cast<uint32_t>(blk >> 32), o0, o1}, k0, k1);
    w[4 * j] = r.x;
    w[4 * j + 1] = r.y;
    w[4 * j + 2] = r.z;
    w[4 * j + 3] = r.w;
  }
  const uint32_t* __restrict ws = w + (first & 3);
  const float p = dr.p;
#pragma omp simd
  for (int c = 0; c < C; ++c)  // philox_uniform(...) > p
    keep[c] = (static_cast<float>(ws[c] >> 8) + 1.0f) * (1.0f / 16777216.0f) > p;
}

// d_c = (inp + bias) with dropout applied, into dst. With dropout, keep[c] = 1 marks survivors
// (the Philox mask, computed once per row and reused by the caller).
template <typename T>
void dropped_input(T* __restrict dst, uint8_t* __restrict keep, const T* __restrict x,
                   const T* __restrict b, int C, const Dropout& dr, int64_t row_base) {
  if (b != nullptr) {
#pragma omp simd
    for (int c = 0; c < C; ++c) dst[c] = x[c] + b[c];
  } else {
#pragma omp simd
    for (int c = 0; c < C; ++c) dst[c] = x[c] + T(0);
  }
  if (dr.p > 0.0f) {
    const T scale = static_cast<T>(1.0 / (1.0 - static_cast<double>(dr.p)));
    dropout_mask(keep, dr, row_base, C);
#pragma omp simd
    for (int c = 0; c < C; ++c) dst[c] = keep[c] != 0 ? dst[c] * scale : T(0);
  }
}

// In-place softmax over groups of 8.
template <typename T>
void simnorm_inplace(T* h, int C) {
  for (int c0 = 0; c0 < C; c0 += kSimNormGroup) {
    T mx = h[c0];
    for (int j = 1; j < kSimNormGroup; ++j) mx = std::max(mx, h[c0 + j]);
    T s = 0;
    for (int j = 0; j < kSimNormGroup; ++j) {
      h[c0 + j] = std::exp(h[c0 + j] - mx);
      s += h[c0 + j];
    }
    const T inv = T(1) / s;
    for (int j = 0; j < kSimNormGroup; ++j) h[c0 + j] *= inv;
  }
}

template <Act act, typename T>
void forward_impl(T* out, T* mean, T* rstd, const T* inp, const T* bias, const T* gamma,
                  const T* beta, int rows, int C, int groups, const Dropout& dr,
                  const RowLayout& out_rows) {
  const int per_group = groups > 0 && rows > 0 ? rows / groups : 1;
#pragma omp parallel if (int64_t{rows} * C > 8192)
  {
    uint8_t* keep = dr.p > 0.0f ? scratch<uint8_t>(static_cast<size_t>(C), 0) : nullptr;
#pragma omp for schedule(static)
    for (int r = 0; r < rows; ++r) {
      const int g = r / per_group;
      const int64_t base = static_cast<int64_t>(r) * C;
      T* __restrict o = out + out_rows.row(r, per_group, C);
      dropped_input(o, keep, inp + base,
                    bias != nullptr ? bias + static_cast<int64_t>(g) * C : nullptr, C, dr,
                    dropout_row(dr.heads, r, per_group) * C);
      double s = 0;
#pragma omp simd reduction(+ : s)
      for (int c = 0; c < C; ++c) s += o[c];
      const T mu = static_cast<T>(s / C);
      double v = 0;
#pragma omp simd reduction(+ : v)
      for (int c = 0; c < C; ++c) {
        const double dv = static_cast<double>(o[c]) - static_cast<double>(mu);
        v += dv * dv;
      }
      const T rs = static_cast<T>(1.0 / std::sqrt(v / C + kLayerNormEps));
      const T* __restrict ga = gamma + static_cast<int64_t>(g) * C;
      const T* __restrict be = beta + static_cast<int64_t>(g) * C;
      if constexpr (act == Act::mish) {
#pragma omp simd
        for (int c = 0; c < C; ++c) o[c] = mish_inl(ga[c] * ((o[c] - mu) * rs) + be[c]);
      } else {
#pragma omp simd
        for (int c = 0; c < C; ++c) o[c] = ga[c] * ((o[c] - mu) * rs) + be[c];
        simnorm_inplace(o, C);
      }
      if (mean != nullptr) mean[r] = mu;
      if (rstd != nullptr) rstd[r] = rs;
    }
  }
}

template <Act act, typename T>
void backward_impl(T* dinp, T* dbias, T* dgamma, T* dbeta, const T* dout, const T* inp,
                   const T* bias, const T* gamma, const T* beta, const T* mean, const T* rstd,
                   int rows, int C, int groups, const Dropout& dr) {
  const int per_group = groups > 0 && rows > 0 ? rows / groups : 1;
  const int64_t GC = static_cast<int64_t>(groups) * C;
  const bool want_params = dgamma != nullptr || dbeta != nullptr || dbias != nullptr;
  const int max_threads = omp_get_max_threads();
  double* partial =
      want_params ? scratch<double>(static_cast<size_t>(max_threads) * 3 * GC, 0) : nullptr;
  int used_threads = 1;
  const T scale = dr.p > 0.0f ? static_cast<T>(1.0 / (1.0 - static_cast<double>(dr.p))) : T(1);

#pragma omp parallel if (int64_t{rows} * C > 8192)
  {
    const int tid = omp_get_thread_num();
#pragma omp single
    used_threads = omp_get_num_threads();
    double* pg = want_params ? partial + static_cast<int64_t>(tid) * 3 * GC : nullptr;
    if (pg != nullptr) std::fill(pg, pg + 3 * GC, 0.0);
    T* __restrict d = scratch<T>(static_cast<size_t>(3) * C, 1);  // this thread's row buffers
    T* __restrict dh = d + C;
    T* __restrict dx = d + 2 * C;
    uint8_t* keep = dr.p > 0.0f ? scratch<uint8_t>(static_cast<size_t>(C), 0) : nullptr;
#pragma omp for schedule(static)
    for (int r = 0; r < rows; ++r) {
      const int g = r / per_group;
      const int64_t base = static_cast<int64_t>(r) * C;
      const T* __restrict ga = gamma + static_cast<int64_t>(g) * C;
      const T* __restrict be = beta + static_cast<int64_t>(g) * C;
      const T* __restrict dy = dout + base;
      dropped_input(d, keep, inp + base,
                    bias != nullptr ? bias + static_cast<int64_t>(g) * C : nullptr, C, dr,
                    dropout_row(dr.heads, r, per_group) * C);
      const T mu = mean[r], rs = rstd[r];
      // d becomes xhat, dh the gradient w.r.t. h.
      if constexpr (act == Act::mish) {
#pragma omp simd
        for (int c = 0; c < C; ++c) {
          const T xh = (d[c] - mu) * rs;
          d[c] = xh;
          dh[c] = dy[c] * mish_grad_inl(ga[c] * xh + be[c]);
        }
      } else {
#pragma omp simd
        for (int c = 0; c < C; ++c) {
          const T xh = (d[c] - mu) * rs;
          d[c] = xh;
          dh[c] = ga[c] * xh + be[c];
        }
        simnorm_inplace(dh, C);  // dh holds y = simnorm(h) for now
        for (int c0 = 0; c0 < C; c0 += kSimNormGroup) {
          T dot = 0;
          for (int j = 0; j < kSimNormGroup; ++j) dot += dy[c0 + j] * dh[c0 + j];
          for (int j = 0; j < kSimNormGroup; ++j) dh[c0 + j] = dh[c0 + j] * (dy[c0 + j] - dot);
        }
      }
      double s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
      for (int c = 0; c < C; ++c) {
        const double gdh = static_cast<double>(ga[c]) * dh[c];
        s1 += gdh;
        s2 += gdh * d[c];
      }
      const T m1 = static_cast<T>(s1 / C), m2 = static_cast<T>(s2 / C);
#pragma omp simd
      for (int c = 0; c < C; ++c) dx[c] = rs * (ga[c] * dh[c] - m1 - d[c] * m2);
      if (dr.p > 0.0f) {
#pragma omp simd
        for (int c = 0; c < C; ++c) dx[c] = keep[c] != 0 ? dx[c] * scale : T(0);
      }
      if (dinp != nullptr) {
        T* __restrict di = dinp + base;
#pragma omp simd
        for (int c = 0; c < C; ++c) di[c] += dx[c];
      }
      if (pg != nullptr) {
        double* __restrict pgam = pg + static_cast<int64_t>(g) * C;  // dgamma
        double* __restrict pbet = pgam + GC;                         // dbeta
        double* __restrict pbia = pgam + 2 * GC;                     // dbias
#pragma omp simd
        for (int c = 0; c < C; ++c) {
          pgam[c] += static_cast<double>(dh[c]) * d[c];
          pbet[c] += dh[c];
          pbia[c] += dx[c];
        }
      }
    }
  }
  if (!want_params) return;
  for (int64_t i = 0; i < GC; ++i) {
    double sg = 0, sb = 0, sx = 0;
    for (int t = 0; t < used_threads; ++t) {
      const double* pg = partial + static_cast<int64_t>(t) * 3 * GC;
      sg += pg[i];
      sb += pg[GC + i];
      sx += pg[2 * GC + i];
    }
    if (dgamma != nullptr) dgamma[i] += static_cast<T>(sg);
    if (dbeta != nullptr) dbeta[i] += static_cast<T>(sb);
    if (dbias != nullptr) dbias[i] += static_cast<T>(sx);
  }
}

}  // namespace

template <typename T>
void layernorm_mish_forward(T* out, T* mean, T* rstd, const T* inp, const T* bias, const T* gamma,
                            const T* beta, int rows, int C, int groups, const Dropout& dropout,
                            const RowLayout& out_rows) {
  check_args("layernorm_mish_forward", Act::mish, rows, C, groups, dropout.p);
  check_row_layout("layernorm_mish_forward", out_rows, rows, C, groups);
  forward_impl<Act::mish>(out, mean, rstd, inp, bias, gamma, beta, rows, C, groups, dropout,
                          out_rows);
}

template <typename T>
void layernorm_mish_backward(T* dinp, T* dbias, T* dgamma, T* dbeta, const T* dout, const T* inp,
                             const T* bias, const T* gamma, const T* beta, const T* mean,
                             const T* rstd, int rows, int C, int groups, const Dropout& dropout) {
  check_args("layernorm_mish_backward", Act::mish, rows, C, groups, dropout.p);
  check_backward_ptrs("layernorm_mish_backward", mean, rstd);
  backward_impl<Act::mish>(dinp, dbias, dgamma, dbeta, dout, inp, bias, gamma, beta, mean, rstd,
                rows, C, groups, dropout);
}

template <typename T>
void layernorm_simnorm_forward(T* out, T* mean, T* rstd, const T* inp, const T* bias,
                               const T* gamma, const T* beta, int rows, int C, int groups,
                               const RowLayout& out_rows) {
  check_args("layernorm_simnorm_forward", Act::simnorm, rows, C, groups, 0.0f);
  check_row_layout("layernorm_simnorm_forward", out_rows, rows, C, groups);
  forward_impl<Act::simnorm>(out, mean, rstd, inp, bias, gamma, beta, rows, C, groups, Dropout{},
                             out_rows);
}

template <typename T>
void layernorm_simnorm_backward(T* dinp, T* dbias, T* dgamma, T* dbeta, const T* dout, const T* inp,
                                const T* bias, const T* gamma, const T* beta, const T* mean,
                                const T* rstd, int rows, int C, int groups) {
  check_args("layernorm_simnorm_backward", Act::simnorm, rows, C, groups, 0.0f);
  check_backward_ptrs("layernorm_simnorm_backward", mean, rstd);
  backward_impl<Act::simnorm>(dinp, dbias, dgamma, dbeta, dout, inp, bias, gamma, beta, mean, rstd,
                rows, C, groups, Dropout{});
}

#define POMPC_INSTANTIATE_LAYERNORM(T)                                                             \
  template T mish<T>(T);                                                                           \
  template T mish_grad<T>(T);                                                                      \
  template void layernorm_mish_forward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, int, \
                                          int, int, const Dropout&, const RowLayout&);             \
  template void layernorm_mish_backward<T>(T*, T*, T*, T*, const T*, const T*, const T*, const T*, \
                                           const T*, const T*, const T*, int, int, int,            \
                                           const Dropout&);                                        \
  template void layernorm_simnorm_forward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,   \
                                             int, int, int, const RowLayout&);                     \
  template void layernorm_simnorm_backward<T>(T*, T*, T*, T*, const T*, const T*, const T*,        \
                                              const T*, const T*, const T*, const T*, int, int,    \
                                              int);
POMPC_INSTANTIATE_LAYERNORM(float)
POMPC_INSTANTIATE_LAYERNORM(double)
#undef POMPC_INSTANTIATE_LAYERNORM

}  // namespace pompc::ref
