// src/ref/policy.cpp: the policy head (squash, reparameterised sample, log-probs), squashed and
// clamped forms. Run book: policy.h.
#include "ref/policy.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include "common.h"
#include "ref/linear.h"
#include "philox.cuh"

namespace pompc::ref {
namespace {

constexpr double kHalfLog2Pi = 0.91893853320467274178;  // 0.5 * log(2 pi)
constexpr double kSquashEps = 1e-6;                     // TD-MPC2 squash: log(relu(1-a^2) + 1e-6)
constexpr double kScaleEps = 1e-8;                      // current form: / (log_prob + 1e-8)

void check_args(const char* who, int B, int A, const PolicyHead& h) {
  POMPC_REQUIRE(B >= 0 && A >= 1, "%s: B (%d) must be >= 0 and A (%d) >= 1", who, B, A);
  POMPC_REQUIRE(h.log_std_min < h.log_std_max, "%s: log_std_min (%g) must be < log_std_max (%g)",
                who, static_cast<double>(h.log_std_min), static_cast<double>(h.log_std_max));
  POMPC_REQUIRE(h.entropy_form == EntropyForm::paper || h.entropy_form == EntropyForm::current,
                "%s: entropy_form must be paper or current", who);
  POMPC_REQUIRE(h.form == PolicyForm::squashed || h.form == PolicyForm::clamped,
                "%s: form must be squashed or clamped", who);
}

// What both forms compute first for one element: the squashed log_std, its std and the noise.
template <typename T>
struct StdNoise {
  T ts;  // tanh(s)
  T ls;  // log_std
  T sd;  // exp(log_std)
  T e;   // eps
};

template <typename T>
void std_noise(StdNoise<T>* el, const T* row, int A, int b, int j, const PolicyHead& h,
               uint64_t seed, uint64_t offset) {
  const T lo = static_cast<T>(h.log_std_min);
  const T dif = static_cast<T>(h.log_std_max) - lo;
  el->ts = std::tanh(row[A + j]);
  el->ls = lo + T(0.5) * dif * (el->ts + T(1));
  el->sd = std::exp(el->ls);
  el->e = static_cast<T>(philox_normal(seed, offset, static_cast<uint64_t>(b) * A + j));
}

// Everything the squashed forward computes for one element.
template <typename T>
struct Elem : StdNoise<T> {
  T a;     // action = tanh(u)
  T om;    // 1 - action^2
  T corr;  // log(relu(1 - action^2) + 1e-6)
};

template <typename T>
Elem<T> element(const T* raw, int A, int b, int j, const PolicyHead& h, uint64_t seed,
                uint64_t offset) {
  const T* row = raw + static_cast<int64_t>(b) * 2 * A;
  Elem<T> el;
  std_noise<T>(&el, row, A, b, j, h, seed, offset);
  const T u = row[j] + el.e * el.sd;
  el.a = std::tanh(u);
  el.om = T(1) - el.a * el.a;
  el.corr = std::log((el.om > T(0) ? el.om : T(0)) + static_cast<T>(kSquashEps));
  return el;
}

// Row sums: res = sum(-0.5 eps^2 - log_std), lp = sum(-0.5 eps^2 - log_std - c), corr.
template <typename T>
struct RowSums {
  T res = 0, lp = 0, corr = 0;
};

// The clamped form's element: u = tanh(mean) + exp(log_std) eps.
template <typename T>
struct ClampedElem : StdNoise<T> {
  T m;  // mu = tanh(mean)
  T u;  // the Gaussian sample before the clamp
};

template <typename T>
ClampedElem<T> clamped_element(const T* raw, int A, int b, int j, const PolicyHead& h,
                               uint64_t seed, uint64_t offset) {
  const T* row = raw + static_cast<int64_t>(b) * 2 * A;
  ClampedElem<T> el;
  std_noise<T>(&el, row, A, b, j, h, seed, offset);
  el.m = std::tanh(row[j]);
  el.u = el.m + el.e * el.sd;
  return el;
}

template <typename T>
void clamped_forward(T* action, T* mu, T* log_std, T* log_pi, T* log_prob, const T* raw, int B,
                     int A, const PolicyHead& head, uint64_t seed, uint64_t offset,
                     int64_t action_ld) {
  const T c = static_cast<T>(kHalfLog2Pi);
#pragma omp parallel for schedule(static) if (int64_t{B} * A > 4096)
  for (int b = 0; b < B; ++b) {
    T lp = 0;
    for (int j = 0; j < A; ++j) {
      const ClampedElem<T> el = clamped_element(raw, A, b, j, head, seed, offset);
      const int64_t i = static_cast<int64_t>(b) * A + j;
      // torch.clamp: NaN stays NaN (no fmin/fmax)
      action[b * action_ld + j] = el.u < T(-1) ? T(-1) : (el.u > T(1) ? T(1) : el.u);
      if (mu != nullptr) mu[i] = el.m;
      if (log_std != nullptr) log_std[i] = el.ls;
      lp += T(-0.5) * el.e * el.e - el.ls - c;
    }
    if (log_prob != nullptr) log_prob[b] = lp;
    if (log_pi != nullptr) log_pi[b] = static_cast<T>(A) * lp;
  }
}

template <typename T>
void clamped_backward(T* draw, const T* daction, const T* dmu, const T* dlog_std, const T* dlog_pi,
                      const T* raw, int B, int A, const PolicyHead& head, uint64_t seed,
                      uint64_t offset) {
  const T half_dif = T(0.5) * (static_cast<T>(head.log_std_max) - static_cast<T>(head.log_std_min));
  const T nA = static_cast<T>(A);
#pragma omp parallel for schedule(static) if (int64_t{B} * A > 4096)
  for (int b = 0; b < B; ++b) {
    const T g_ls_pi = dlog_pi != nullptr ? dlog_pi[b] * -nA : T(0);  // d log_pi / d log_std_j = -A
    T* d = draw + static_cast<int64_t>(b) * 2 * A;
    for (int j = 0; j < A; ++j) {
      const ClampedElem<T> el = clamped_element(raw, A, b, j, head, seed, offset);
      const int64_t i = static_cast<int64_t>(b) * A + j;
      const T g_u = daction != nullptr && el.u >= T(-1) && el.u <= T(1) ? daction[i] : T(0);
      const T g_m = g_u + (dmu != nullptr ? dmu[i] : T(0));
      T g_ls = g_u * el.sd * el.e + g_ls_pi;
      if (dlog_std != nullptr) g_ls += dlog_std[i];
      d[j] += g_m * (T(1) - el.m * el.m);
      d[A + j] += g_ls * half_dif * (T(1) - el.ts * el.ts);
    }
  }
}

}  // namespace

template <typename T>
void policy_head_forward(T* action, T* mu, T* log_std, T* log_pi, T* log_prob, const T* raw,
                         const T* bias, int B, int A, const PolicyHead& head, uint64_t seed,
                         uint64_t offset, int64_t action_ld) {
  check_args("policy_head_forward", B, A, head);
  action_ld = resolve_row_stride("policy_head_forward", "action", action_ld, A);
  std::vector<T> biased;  // raw + bias, as linear_forward would have left it
  if (bias != nullptr) {
    biased = with_bias(raw, bias, B, 2 * A);
    raw = biased.data();
  }
  if (head.form == PolicyForm::clamped) {
    clamped_forward(action, mu, log_std, log_pi, log_prob, raw, B, A, head, seed, offset,
                    action_ld);
    return;
  }
  const T c = static_cast<T>(kHalfLog2Pi);
#pragma omp parallel for schedule(static) if (int64_t{B} * A > 4096)
  for (int b = 0; b < B; ++b) {
    RowSums<T> s;
    for (int j = 0; j < A; ++j) {
      const Elem<T> el = element(raw, A, b, j, head, seed, offset);
      const int64_t i = static_cast<int64_t>(b) * A + j;
      action[b * action_ld + j] = el.a;
      if (mu != nullptr) mu[i] = std::tanh(raw[static_cast<int64_t>(b) * 2 * A + j]);
      if (log_std != nullptr) log_std[i] = el.ls;
      const T r = T(-0.5) * el.e * el.e - el.ls;
      s.res += r;
      s.lp += r - c;
      s.corr += el.corr;
    }
    const T nA = static_cast<T>(A);
    const T lprob = s.lp - s.corr;  // current code's log_prob (true squashed log-density)
    if (log_prob != nullptr) log_prob[b] = (s.res - nA * c) - s.corr;
    if (log_pi != nullptr) {
      if (head.entropy_form == EntropyForm::paper) {
        log_pi[b] = (s.res - c) * nA - s.corr;
      } else {
        const T scaled = s.lp * nA;
        log_pi[b] = lprob * (scaled / (lprob + static_cast<T>(kScaleEps)));
      }
    }
  }
}

template <typename T>
void policy_head_backward(T* draw, const T* daction, const T* dmu, const T* dlog_std,
                          const T* dlog_pi, const T* raw, int B, int A, const PolicyHead& head,
                          uint64_t seed, uint64_t offset) {
  check_args("policy_head_backward", B, A, head);
  if (head.form == PolicyForm::clamped) {
    clamped_backward(draw, daction, dmu, dlog_std, dlog_pi, raw, B, A, head, seed, offset);
    return;
  }
  const T c = static_cast<T>(kHalfLog2Pi);
  const T half_dif = T(0.5) * (static_cast<T>(head.log_std_max) - static_cast<T>(head.log_std_min));
  const T nA = static_cast<T>(A);
#pragma omp parallel for schedule(static) if (int64_t{B} * A > 4096)
  for (int b = 0; b < B; ++b) {
    // Coefficients of log_pi: direct on log_std (c_l) and on -dcorr/du (c_u).
    T c_l = 0, c_u = 0;
    const T glp = dlog_pi != nullptr ? dlog_pi[b] : T(0);
    if (glp != T(0)) {
      if (head.entropy_form == EntropyForm::paper) {
        c_l = -nA;
        c_u = T(1);
      } else {
        RowSums<T> s;
        for (int j = 0; j < A; ++j) {
          const Elem<T> el = element(raw, A, b, j, head, seed, offset);
          s.lp += T(-0.5) * el.e * el.e - el.ls - c;
          s.corr += el.corr;
        }
        const T P = s.lp * nA, Q = s.lp - s.corr, D = Q + static_cast<T>(kScaleEps);
        c_u = P * static_cast<T>(kScaleEps) / (D * D);
        c_l = -c_u - nA * (Q / D);
      }
    }
    T* d = draw + static_cast<int64_t>(b) * 2 * A;
    for (int j = 0; j < A; ++j) {
      const Elem<T> el = element(raw, A, b, j, head, seed, offset);
      const int64_t i = static_cast<int64_t>(b) * A + j;
      const T dcorr_du =
          el.om > T(0) ? T(-2) * el.a * el.om / (el.om + static_cast<T>(kSquashEps)) : T(0);
      T g_u = glp * c_u * (-dcorr_du);
      if (daction != nullptr) g_u += daction[i] * el.om;
      T g_ls = g_u * el.sd * el.e + glp * c_l;
      if (dlog_std != nullptr) g_ls += dlog_std[i];
      T g_mean = g_u;
      if (dmu != nullptr) {
        const T m = std::tanh(raw[static_cast<int64_t>(b) * 2 * A + j]);
        g_mean += dmu[i] * (T(1) - m * m);
      }
      d[j] += g_mean;
      d[A + j] += g_ls * half_dif * (T(1) - el.ts * el.ts);
    }
  }
}

template <typename T>
void policy_log_ratio(T* out, const T* raw, const T* raw_prior, int B, int A,
                      const PolicyHead& head, uint64_t seed, uint64_t offset) {
  check_args("policy_log_ratio", B, A, head);
  const bool clamped = head.form == PolicyForm::clamped;
#pragma omp parallel for schedule(static) if (int64_t{B} * A > 4096)
  for (int b = 0; b < B; ++b) {
    const T* row = raw + static_cast<int64_t>(b) * 2 * A;
    const T* prow = raw_prior + static_cast<int64_t>(b) * 2 * A;
    T sum = 0;
    for (int j = 0; j < A; ++j) {
      StdNoise<T> p, q;  // pi's noise and std; the prior's std (its eps unused)
      std_noise<T>(&p, row, A, b, j, head, seed, offset);
      std_noise<T>(&q, prow, A, b, j, head, seed, offset);
      const T c = clamped ? std::tanh(row[j]) : row[j];
      const T cq = clamped ? std::tanh(prow[j]) : prow[j];
      const T y = (c + p.sd * p.e - cq) / q.sd;
      sum += (T(-0.5) * p.e * p.e - p.ls) - (T(-0.5) * y * y - q.ls);
    }
    out[b] = sum;
  }
}

#define POMPC_INSTANTIATE_POLICY(T)                                                                \
  template void policy_head_forward<T>(T*, T*, T*, T*, T*, const T*, const T*, int, int,           \
                                       const PolicyHead&, uint64_t, uint64_t, int64_t);            \
  template void policy_head_backward<T>(T*, const T*, const T*, const T*, const T*, const T*, int, \
                                        int, const PolicyHead&, uint64_t, uint64_t);               \
  template void policy_log_ratio<T>(T*, const T*, const T*, int, int, const PolicyHead&, uint64_t, \
                                    uint64_t);
POMPC_INSTANTIATE_POLICY(float)
POMPC_INSTANTIATE_POLICY(double)
#undef POMPC_INSTANTIATE_POLICY

}  // namespace pompc::ref
