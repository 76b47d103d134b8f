// src/ref/layernorm.cpp: fused bias + dropout + LayerNorm + Mish / SimNorm. Run book: layernorm.h.
//
// Row statistics are summed in double and rounded to T once; the forward then uses the rounded
// mean / rstd, so the backward (which only has the saved T values) differentiates exactly the
// function the forward computed. Parameter gradients are summed per thread (static row split,
// double partials) and reduced in thread order: deterministic for a given thread count.
#include "ref/layernorm.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "common.h"

namespace pompc::ref {

template <typename T>
T mish(T x) {
  const T sp = x > T(20) ? x : std::log1p(std::exp(x));
  return x * std::tanh(sp);
}

template <typename T>
T mish_grad(T x) {
  if (x > T(20)) {  // softplus(x) = x here, so d softplus / dx = 1
    const T t = std::tanh(x);
    return t + x * (T(1) - t * t);
  }
  const T t = std::tanh(std::log1p(std::exp(x)));
  const T sig = T(1) / (T(1) + std::exp(-x));
  return t + x * sig * (T(1) - t * t);
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

// d_c = (inp + bias) with dropout applied, into dst.
template <typename T>
void dropped_input(T* dst, const T* x, const T* b, int C, const Dropout& dr, int64_t row_base) {
  const T scale = dr.p > 0.0f ? static_cast<T>(1.0 / (1.0 - static_cast<double>(dr.p))) : T(1);
  for (int c = 0; c < C; ++c) {
    T v = x[c] + (b != nullptr ? b[c] : T(0));
    if (dr.p > 0.0f) v = dropout_keep(dr.p, dr.seed, dr.offset, row_base + c) ? v * scale : T(0);
    dst[c] = v;
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

template <typename T>
void forward_impl(Act act, T* out, T* mean, T* rstd, const T* inp, const T* bias, const T* gamma,
                  const T* beta, int rows, int C, int groups, const Dropout& dr) {
  const int per_group = groups > 0 && rows > 0 ? rows / groups : 1;
#pragma omp parallel for schedule(static) if (int64_t{rows} * C > 8192)
  for (int r = 0; r < rows; ++r) {
    const int g = r / per_group;
    const int64_t base = static_cast<int64_t>(r) * C;
    T* o = out + base;
    dropped_input(o, inp + base, bias != nullptr ? bias + static_cast<int64_t>(g) * C : nullptr, C,
                  dr, base);
    double s = 0;
    for (int c = 0; c < C; ++c) s += o[c];
    const T mu = static_cast<T>(s / C);
    double v = 0;
    for (int c = 0; c < C; ++c) {
      const double dv = static_cast<double>(o[c]) - static_cast<double>(mu);
      v += dv * dv;
    }
    const T rs = static_cast<T>(1.0 / std::sqrt(v / C + kLayerNormEps));
    const T* ga = gamma + static_cast<int64_t>(g) * C;
    const T* be = beta + static_cast<int64_t>(g) * C;
    for (int c = 0; c < C; ++c) {
      const T h = ga[c] * ((o[c] - mu) * rs) + be[c];
      o[c] = act == Act::mish ? mish(h) : h;
    }
    if (act == Act::simnorm) simnorm_inplace(o, C);
    if (mean != nullptr) mean[r] = mu;
    if (rstd != nullptr) rstd[r] = rs;
  }
}

template <typename T>
void backward_impl(Act act, T* dinp, T* dbias, T* dgamma, T* dbeta, const T* dout, const T* inp,
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
    T* d = scratch<T>(static_cast<size_t>(2) * C, 1);  // this thread's row buffers
    T* dh = d + C;
#pragma omp for schedule(static)
    for (int r = 0; r < rows; ++r) {
      const int g = r / per_group;
      const int64_t base = static_cast<int64_t>(r) * C;
      const T* ga = gamma + static_cast<int64_t>(g) * C;
      const T* be = beta + static_cast<int64_t>(g) * C;
      const T* dy = dout + base;
      dropped_input(d, inp + base, bias != nullptr ? bias + static_cast<int64_t>(g) * C : nullptr,
                    C, dr, base);
      const T mu = mean[r], rs = rstd[r];
      // d becomes xhat, dh the gradient w.r.t. h.
      for (int c = 0; c < C; ++c) d[c] = (d[c] - mu) * rs;
      if (act == Act::mish) {
        for (int c = 0; c < C; ++c) dh[c] = dy[c] * mish_grad(ga[c] * d[c] + be[c]);
      } else {
        for (int c = 0; c < C; ++c) dh[c] = ga[c] * d[c] + be[c];
        simnorm_inplace(dh, C);  // dh holds y = simnorm(h) for now
        for (int c0 = 0; c0 < C; c0 += kSimNormGroup) {
          T dot = 0;
          for (int j = 0; j < kSimNormGroup; ++j) dot += dy[c0 + j] * dh[c0 + j];
          for (int j = 0; j < kSimNormGroup; ++j) dh[c0 + j] = dh[c0 + j] * (dy[c0 + j] - dot);
        }
      }
      double s1 = 0, s2 = 0;
      for (int c = 0; c < C; ++c) {
        const double gdh = static_cast<double>(ga[c]) * dh[c];
        s1 += gdh;
        s2 += gdh * d[c];
      }
      const T m1 = static_cast<T>(s1 / C), m2 = static_cast<T>(s2 / C);
      double* pgam = pg != nullptr ? pg + static_cast<int64_t>(g) * C : nullptr;
      for (int c = 0; c < C; ++c) {
        const T dd = rs * (ga[c] * dh[c] - m1 - d[c] * m2);
        T dx = dd;
        if (dr.p > 0.0f) dx = dropout_keep(dr.p, dr.seed, dr.offset, base + c) ? dd * scale : T(0);
        if (dinp != nullptr) dinp[base + c] += dx;
        if (pgam != nullptr) {
          pgam[c] += static_cast<double>(dh[c]) * d[c];  // dgamma
          pgam[GC + c] += dh[c];                         // dbeta
          pgam[2 * GC + c] += dx;                        // dbias
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
                            const T* beta, int rows, int C, int groups, const Dropout& dropout) {
  check_args("layernorm_mish_forward", Act::mish, rows, C, groups, dropout.p);
  forward_impl(Act::mish, out, mean, rstd, inp, bias, gamma, beta, rows, C, groups, dropout);
}

template <typename T>
void layernorm_mish_backward(T* dinp, T* dbias, T* dgamma, T* dbeta, const T* dout, const T* inp,
                             const T* bias, const T* gamma, const T* beta, const T* mean,
                             const T* rstd, int rows, int C, int groups, const Dropout& dropout) {
  check_args("layernorm_mish_backward", Act::mish, rows, C, groups, dropout.p);
  check_backward_ptrs("layernorm_mish_backward", mean, rstd);
  backward_impl(Act::mish, dinp, dbias, dgamma, dbeta, dout, inp, bias, gamma, beta, mean, rstd,
                rows, C, groups, dropout);
}

template <typename T>
void layernorm_simnorm_forward(T* out, T* mean, T* rstd, const T* inp, const T* bias,
                               const T* gamma, const T* beta, int rows, int C, int groups) {
  check_args("layernorm_simnorm_forward", Act::simnorm, rows, C, groups, 0.0f);
  forward_impl(Act::simnorm, out, mean, rstd, inp, bias, gamma, beta, rows, C, groups, Dropout{});
}

template <typename T>
void layernorm_simnorm_backward(T* dinp, T* dbias, T* dgamma, T* dbeta, const T* dout, const T* inp,
                                const T* bias, const T* gamma, const T* beta, const T* mean,
                                const T* rstd, int rows, int C, int groups) {
  check_args("layernorm_simnorm_backward", Act::simnorm, rows, C, groups, 0.0f);
  check_backward_ptrs("layernorm_simnorm_backward", mean, rstd);
  backward_impl(Act::simnorm, dinp, dbias, dgamma, dbeta, dout, inp, bias, gamma, beta, mean, rstd,
                rows, C, groups, Dropout{});
}

#define POMPC_INSTANTIATE_LAYERNORM(T)                                                             \
  template T mish<T>(T);                                                                           \
  template T mish_grad<T>(T);                                                                      \
  template void layernorm_mish_forward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, int, \
                                          int, int, const Dropout&);                               \
  template void layernorm_mish_backward<T>(T*, T*, T*, T*, const T*, const T*, const T*, const T*, \
                                           const T*, const T*, const T*, int, int, int,            \
                                           const Dropout&);                                        \
  template void layernorm_simnorm_forward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,   \
                                             int, int, int);                                       \
  template void layernorm_simnorm_backward<T>(T*, T*, T*, T*, const T*, const T*, const T*,        \
                                              const T*, const T*, const T*, const T*, int, int,    \
                                              int);
POMPC_INSTANTIATE_LAYERNORM(float)
POMPC_INSTANTIATE_LAYERNORM(double)
#undef POMPC_INSTANTIATE_LAYERNORM

}  // namespace pompc::ref
