// src/ref/prior.cpp: the policy-prior divergences (Gaussian KL both ways, prior NLL, intermediate
// prior samples and weights, weighted NLL) and their glue. Run book: prior.h.
#include "ref/prior.h"

#include <cmath>
#include <limits>

#include "common.h"
#include "philox.cuh"

namespace pompc::ref {
namespace {

constexpr double kHalfLog2Pi = 0.91893853320467274178;  // 0.5 * log(2 pi)

// Parallel only when there is work enough to pay for the threads.
bool big(int64_t elements) {
  return elements > 4096;
}

}  // namespace

template <typename T>
void gauss_kl_forward(T* out, const T* mu, const T* log_std, const T* mu_p, const T* sigma_p,
                      int rows, int A, KlDir dir) {
  check_prior_shape("gauss_kl_forward", rows, A, 1);
  check_prior_dir("gauss_kl_forward", dir);
#pragma omp parallel for schedule(static) if (big(int64_t{rows} * A))
  for (int r = 0; r < rows; ++r) {
    T sum = 0;
    for (int j = 0; j < A; ++j) {
      const int64_t i = static_cast<int64_t>(r) * A + j;
      const T ls = log_std[i], s2 = std::exp(T(2) * ls), sp = sigma_p[i], sp2 = sp * sp;
      const T d = mu[i] - mu_p[i];
      if (dir == KlDir::reverse)
        sum += std::log(sp) - ls + (s2 + d * d) / (T(2) * sp2) - T(0.5);
      else
        sum += ls - std::log(sp) + (sp2 + d * d) / (T(2) * s2) - T(0.5);
    }
    out[r] = sum / static_cast<T>(A);
  }
}

template <typename T>
void gauss_kl_backward(T* dmu, T* dlog_std, const T* dout, const T* mu, const T* log_std,
                       const T* mu_p, const T* sigma_p, int rows, int A, KlDir dir) {
  check_prior_shape("gauss_kl_backward", rows, A, 1);
  check_prior_dir("gauss_kl_backward", dir);
  check_prior_given("gauss_kl_backward", "dout", dout);
#pragma omp parallel for schedule(static) if (big(int64_t{rows} * A))
  for (int r = 0; r < rows; ++r) {
    const T g = dout[r] / static_cast<T>(A);
    for (int j = 0; j < A; ++j) {
      const int64_t i = static_cast<int64_t>(r) * A + j;
      const T s2 = std::exp(T(2) * log_std[i]), sp = sigma_p[i], sp2 = sp * sp;
      const T d = mu[i] - mu_p[i];
      if (dir == KlDir::reverse) {
        if (dmu != nullptr) dmu[i] += g * d / sp2;
        if (dlog_std != nullptr) dlog_std[i] += g * (s2 / sp2 - T(1));
      } else {
        if (dmu != nullptr) dmu[i] += g * d / s2;
        if (dlog_std != nullptr) dlog_std[i] += g * (T(1) - (sp2 + d * d) / s2);
      }
    }
  }
}

template <typename T>
void gauss_nll_forward(T* out, const T* a, const T* mu_p, const T* sigma_p, int rows, int A,
                       float min_std) {
  check_prior_shape("gauss_nll_forward", rows, A, 1);
  check_prior_min_std("gauss_nll_forward", min_std);
  const T lo = static_cast<T>(min_std), c = static_cast<T>(kHalfLog2Pi), nA = static_cast<T>(A);
#pragma omp parallel for schedule(static) if (big(int64_t{rows} * A))
  for (int r = 0; r < rows; ++r) {
    T res = 0;
    for (int j = 0; j < A; ++j) {
      const int64_t i = static_cast<int64_t>(r) * A + j;
      const T s = sigma_p[i] > lo ? sigma_p[i] : lo;
      const T e = (a[i] - mu_p[i]) / s;
      res += T(-0.5) * e * e - std::log(s);
    }
    out[r] = -nA * (res - c);
  }
}

template <typename T>
void gauss_nll_backward(T* da, const T* dout, const T* a, const T* mu_p, const T* sigma_p, int rows,
                        int A, float min_std) {
  check_prior_shape("gauss_nll_backward", rows, A, 1);
  check_prior_min_std("gauss_nll_backward", min_std);
  check_prior_given("gauss_nll_backward", "da", da);
  check_prior_given("gauss_nll_backward", "dout", dout);
  const T lo = static_cast<T>(min_std), nA = static_cast<T>(A);
#pragma omp parallel for schedule(static) if (big(int64_t{rows} * A))
  for (int r = 0; r < rows; ++r) {
    const T g = dout[r] * nA;
    for (int j = 0; j < A; ++j) {
      const int64_t i = static_cast<int64_t>(r) * A + j;
      const T s = sigma_p[i] > lo ? sigma_p[i] : lo;
      const T e = (a[i] - mu_p[i]) / s;
      da[i] += g * e / s;
    }
  }
}

template <typename T>
void prior_sample(T* a_k, const T* mu_p, const T* sigma_p, int S, int rows, int A, uint64_t seed,
                  uint64_t offset) {
  check_prior_shape("prior_sample", rows, A, S);
  const int64_t per = int64_t{rows} * A, n = per * S;
#pragma omp parallel for schedule(static) if (big(n))
  for (int64_t i = 0; i < n; ++i) {
    const int64_t rj = i % per;
    const T eps = static_cast<T>(philox_normal(seed, offset, static_cast<uint64_t>(i)));
    const T v = mu_p[rj] + sigma_p[rj] * eps;
    a_k[i] = v < T(-1) ? T(-1) : (v > T(1) ? T(1) : v);
  }
}

template <typename T>
void sample_weights(T* w, T* log_z, const T* q, int S, int rows, float beta) {
  check_prior_shape("sample_weights", rows, 1, S);
  POMPC_REQUIRE(beta > 0.0f, "sample_weights: beta (%g) must be > 0 (the temperature of Qbar)",
                static_cast<double>(beta));
  const T b = static_cast<T>(beta);
#pragma omp parallel for schedule(static) if (big(int64_t{rows} * S))
  for (int r = 0; r < rows; ++r) {
    T m = -std::numeric_limits<T>::infinity();
    for (int k = 0; k < S; ++k) {
      const T x = q[static_cast<int64_t>(k) * rows + r] / b;
      m = x > m ? x : m;
    }
    T sum = 0;
    for (int k = 0; k < S; ++k) {
      const int64_t i = static_cast<int64_t>(k) * rows + r;
      const T e = std::exp(q[i] / b - m);
      w[i] = e;
      sum += e;
    }
    for (int k = 0; k < S; ++k) w[static_cast<int64_t>(k) * rows + r] /= sum;
    if (log_z != nullptr) log_z[r] = m + std::log(sum) - std::log(static_cast<T>(S));
  }
}

template <typename T>
void weighted_nll_forward(T* out, const T* a_k, const T* w, const T* mu, const T* log_std, int S,
                          int rows, int A) {
  check_prior_shape("weighted_nll_forward", rows, A, S);
  const T c = static_cast<T>(kHalfLog2Pi);
#pragma omp parallel for schedule(static) if (big(int64_t{rows} * A * S))
  for (int r = 0; r < rows; ++r) {
    T total = 0;
    for (int k = 0; k < S; ++k) {
      const int64_t rk = static_cast<int64_t>(k) * rows + r;
      T lp = 0;
      for (int j = 0; j < A; ++j) {
        const int64_t i = static_cast<int64_t>(r) * A + j;
        const T ls = log_std[i];
        const T y = (a_k[rk * A + j] - mu[i]) / std::exp(ls);
        lp += T(-0.5) * y * y - ls - c;
      }
      total += w[rk] * lp;
    }
    out[r] = -total / static_cast<T>(A);
  }
}

template <typename T>
void weighted_nll_backward(T* dmu, T* dlog_std, const T* dout, const T* a_k, const T* w,
                           const T* mu, const T* log_std, int S, int rows, int A) {
  check_prior_shape("weighted_nll_backward", rows, A, S);
  check_prior_given("weighted_nll_backward", "dmu", dmu);
  check_prior_given("weighted_nll_backward", "dlog_std", dlog_std);
  check_prior_given("weighted_nll_backward", "dout", dout);
#pragma omp parallel for schedule(static) if (big(int64_t{rows} * A * S))
  for (int r = 0; r < rows; ++r) {
    const T g = -dout[r] / static_cast<T>(A);
    for (int j = 0; j < A; ++j) {
      const int64_t i = static_cast<int64_t>(r) * A + j;
      const T s = std::exp(log_std[i]);
      T gy = 0, gy2 = 0;  // sum_k w_k y, sum_k w_k (y^2 - 1)
      for (int k = 0; k < S; ++k) {
        const int64_t rk = static_cast<int64_t>(k) * rows + r;
        const T y = (a_k[rk * A + j] - mu[i]) / s;
        gy += w[rk] * y;
        gy2 += w[rk] * (y * y - T(1));
      }
      dmu[i] += g * gy / s;
      dlog_std[i] += g * gy2;
    }
  }
}

template <typename T>
void exp_forward(T* y, const T* x, int64_t n) {
  POMPC_REQUIRE(n >= 0, "exp_forward: n (%lld) must be >= 0", static_cast<long long>(n));
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i]);
}

template <typename T>
void scale_gate(T* out, const T* scale, float threshold) {
  *out = *scale > static_cast<T>(threshold) ? *scale : std::numeric_limits<T>::infinity();
}

#define POMPC_INSTANTIATE_PRIOR(T)                                                                 \
  template void gauss_kl_forward<T>(T*, const T*, const T*, const T*, const T*, int, int, KlDir);  \
  template void gauss_kl_backward<T>(T*, T*, const T*, const T*, const T*, const T*, const T*,     \
                                     int, int, KlDir);                                             \
  template void gauss_nll_forward<T>(T*, const T*, const T*, const T*, int, int, float);           \
  template void gauss_nll_backward<T>(T*, const T*, const T*, const T*, const T*, int, int,        \
                                      float);                                                      \
  template void prior_sample<T>(T*, const T*, const T*, int, int, int, uint64_t, uint64_t);        \
  template void sample_weights<T>(T*, T*, const T*, int, int, float);                              \
  template void weighted_nll_forward<T>(T*, const T*, const T*, const T*, const T*, int, int,      \
                                        int);                                                      \
  template void weighted_nll_backward<T>(T*, T*, const T*, const T*, const T*, const T*, const T*, \
                                         int, int, int);                                           \
  template void exp_forward<T>(T*, const T*, int64_t);                                             \
  template void scale_gate<T>(T*, const T*, float);
POMPC_INSTANTIATE_PRIOR(float)
POMPC_INSTANTIATE_PRIOR(double)
#undef POMPC_INSTANTIATE_PRIOR

}  // namespace pompc::ref
