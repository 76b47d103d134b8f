// kernels/policy.cu: the Gaussian policy head of pi (TD-MPC2 world_model.py `pi`; BMPC
// bmpc/common/world_model.py `pi` with policy_loss_type "kl").
//
// Maths: exactly src/ref/policy.h (same names, same Philox noise eps[b, j] =
//   philox_normal(seed, offset, b * A + j)); both forms share
//   log_std = lo + 0.5 (hi - lo)(tanh(s) + 1), mu = tanh(mean), c = 0.5 log(2 pi).
//   squashed (TD-MPC2): u = mean + exp(log_std) eps; action = tanh(u); log_prob (true squashed
//     density); log_pi in the `paper` or `current` form.
//   clamped (BMPC): u = mu + exp(log_std) eps; action = clamp(u, -1, 1);
//     log_prob = sum_j(-0.5 eps_j^2 - log_std_j - c); log_pi = A log_prob (entropy_form ignored);
//     backward: g_u = g_action [-1 <= u <= 1], draw[mean] += (g_u + g_mu)(1 - mu^2),
//     draw[s] += (g_u exp(log_std) eps - A g_log_pi + g_log_std) 0.5 (hi - lo)(1 - tanh(s)^2).
//   One kernel pair per form, chosen by the launcher on head.form.
//   policy_log_ratio (forward only): out_b = sum_j [(-0.5 eps_j^2 - log_std_j) - (-0.5 y_j^2 -
//     log_std'_j)], y = (c + exp(log_std) eps - c') / exp(log_std'), c = mean (squashed) or
//     tanh(mean) (clamped), ' = the prior head raw_prior [B, 2A] (src/ref/policy.h).
// Shapes: raw / draw [B, 2A]; action, mu, log_std [B, A]; log_pi, log_prob, dlog_pi [B].
// One thread per row b (A <= 38 on the DMC tasks: the row sums stay in registers), 128 threads per
// block. Forward outputs overwritten (mu, log_std, log_pi, log_prob may be null); draw
// ACCUMULATED; null upstream gradients count as zero.
//
// Test: build/test_emu -ts=ops -tc='*policy*cuda*'.
#include "common.cuh"
#include "launchers.h"

namespace pompc {
namespace {

constexpr float kHalfLog2Pi = 0.91893853320467274178f;
constexpr float kSquashEps = 1e-6f;
constexpr float kScaleEps = 1e-8f;

// What both forms share per element: the squashed log_std, its std and the noise.
struct StdNoise {
  float ts, ls, sd, e;  // tanh(s), log_std, std, eps
};

__device__ __forceinline__ void std_noise(StdNoise* el, const float* row, int A, int b, int j,
                                          float lo, float dif, uint64_t seed, uint64_t offset) {
  el->ts = tanhf(row[A + j]);
  el->ls = lo + 0.5f * dif * (el->ts + 1.0f);
  el->sd = expf(el->ls);
  el->e = philox_normal(seed, offset, static_cast<uint64_t>(b) * A + j);
}

struct Elem : StdNoise {
  float a, om, corr;  // action, 1 - a^2, log term
};

__device__ __forceinline__ Elem element(const float* row, int A, int b, int j, float lo,
                                        float dif, uint64_t seed, uint64_t offset) {
  Elem el;
  std_noise(&el, row, A, b, j, lo, dif, seed, offset);
  el.a = tanhf(row[j] + el.e * el.sd);
  el.om = 1.0f - el.a * el.a;
  el.corr = logf((el.om > 0.0f ? el.om : 0.0f) + kSquashEps);
  return el;
}

__global__ void policy_head_forward_kernel(float* __restrict__ action, float* __restrict__ mu,
                                           float* __restrict__ log_std, float* __restrict__ log_pi,
                                           float* __restrict__ log_prob,
                                           const float* __restrict__ raw, int B, int A,
                                           PolicyHead h, uint64_t seed, PhiloxOffset offset_at) {
  const uint64_t offset = offset_at.resolve();  // device memory: read at run time
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= B) return;
  const float lo = h.log_std_min, dif = h.log_std_max - h.log_std_min;
  const float* row = raw + static_cast<int64_t>(b) * 2 * A;
  float res = 0.0f, lp = 0.0f, corr = 0.0f;
  for (int j = 0; j < A; ++j) {
    const Elem el = element(row, A, b, j, lo, dif, seed, offset);
    const int64_t i = static_cast<int64_t>(b) * A + j;
    action[i] = el.a;
    if (mu) mu[i] = tanhf(row[j]);
    if (log_std) log_std[i] = el.ls;
    const float r = -0.5f * el.e * el.e - el.ls;
    res += r;
    lp += r - kHalfLog2Pi;
    corr += el.corr;
  }
  const float nA = static_cast<float>(A);
  if (log_prob) log_prob[b] = (res - nA * kHalfLog2Pi) - corr;
  if (log_pi) {
    if (h.entropy_form == EntropyForm::paper) {
      log_pi[b] = (res - kHalfLog2Pi) * nA - corr;
    } else {
      const float q = lp - corr;
      log_pi[b] = q * ((lp * nA) / (q + kScaleEps));
    }
  }
}

__global__ void policy_head_backward_kernel(float* __restrict__ draw,
                                            const float* __restrict__ daction,
                                            const float* __restrict__ dmu,
                                            const float* __restrict__ dlog_std,
                                            const float* __restrict__ dlog_pi,
                                            const float* __restrict__ raw, int B, int A,
                                            PolicyHead h, uint64_t seed, PhiloxOffset offset_at) {
  const uint64_t offset = offset_at.resolve();  // device memory: read at run time
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= B) return;
  const float lo = h.log_std_min, dif = h.log_std_max - h.log_std_min;
  const float nA = static_cast<float>(A);
  const float* row = raw + static_cast<int64_t>(b) * 2 * A;
  float c_l = 0.0f, c_u = 0.0f;
  const float glp = dlog_pi ? dlog_pi[b] : 0.0f;
  if (glp != 0.0f) {
    if (h.entropy_form == EntropyForm::paper) {
      c_l = -nA;
      c_u = 1.0f;
    } else {
      float lp = 0.0f, corr = 0.0f;
      for (int j = 0; j < A; ++j) {
        const Elem el = element(row, A, b, j, lo, dif, seed, offset);
        lp += -0.5f * el.e * el.e - el.ls - kHalfLog2Pi;
        corr += el.corr;
      }
      const float P = lp * nA, Q = lp - corr, D = Q + kScaleEps;
      c_u = P * kScaleEps / (D * D);
      c_l = -c_u - nA * (Q / D);
    }
  }
  float* d = draw + static_cast<int64_t>(b) * 2 * A;
  for (int j = 0; j < A; ++j) {
    const Elem el = element(row, A, b, j, lo, dif, seed, offset);
    const int64_t i = static_cast<int64_t>(b) * A + j;
    const float dcorr_du = el.om > 0.0f ? -2.0f * el.a * el.om / (el.om + kSquashEps) : 0.0f;
    float g_u = glp * c_u * (-dcorr_du);
    if (daction) g_u += daction[i] * el.om;
    float g_ls = g_u * el.sd * el.e + glp * c_l;
    if (dlog_std) g_ls += dlog_std[i];
    float g_mean = g_u;
    if (dmu) {
      const float m = tanhf(row[j]);
      g_mean += dmu[i] * (1.0f - m * m);
    }
    d[j] += g_mean;
    d[A + j] += g_ls * 0.5f * dif * (1.0f - el.ts * el.ts);
  }
}

// The clamped form's element: u = tanh(mean) + exp(log_std) eps.
struct ClampedElem : StdNoise {
  float m, u;  // mu, the sample before the clamp
};

__device__ __forceinline__ ClampedElem clamped_element(const float* row, int A, int b, int j,
                                                       float lo, float dif, uint64_t seed,
                                                       uint64_t offset) {
  ClampedElem el;
  std_noise(&el, row, A, b, j, lo, dif, seed, offset);
  el.m = tanhf(row[j]);
  el.u = el.m + el.e * el.sd;
  return el;
}

__global__ void policy_head_clamped_forward_kernel(
    float* __restrict__ action, float* __restrict__ mu, float* __restrict__ log_std,
    float* __restrict__ log_pi, float* __restrict__ log_prob, const float* __restrict__ raw, int B,
    int A, PolicyHead h, uint64_t seed, PhiloxOffset offset_at) {
  const uint64_t offset = offset_at.resolve();  // device memory: read at run time
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= B) return;
  const float lo = h.log_std_min, dif = h.log_std_max - h.log_std_min;
  const float* row = raw + static_cast<int64_t>(b) * 2 * A;
  float lp = 0.0f;
  for (int j = 0; j < A; ++j) {
    const ClampedElem el = clamped_element(row, A, b, j, lo, dif, seed, offset);
    const int64_t i = static_cast<int64_t>(b) * A + j;
    action[i] = el.u < -1.0f ? -1.0f : (el.u > 1.0f ? 1.0f : el.u);  // NaN stays NaN (torch)
    if (mu) mu[i] = el.m;
    if (log_std) log_std[i] = el.ls;
    lp += -0.5f * el.e * el.e - el.ls - kHalfLog2Pi;
  }
  if (log_prob) log_prob[b] = lp;
  if (log_pi) log_pi[b] = static_cast<float>(A) * lp;
}

__global__ void policy_head_clamped_backward_kernel(
    float* __restrict__ draw, const float* __restrict__ daction, const float* __restrict__ dmu,
    const float* __restrict__ dlog_std, const float* __restrict__ dlog_pi,
    const float* __restrict__ raw, int B, int A, PolicyHead h, uint64_t seed,
    PhiloxOffset offset_at) {
  const uint64_t offset = offset_at.resolve();  // device memory: read at run time
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= B) return;
  const float lo = h.log_std_min, dif = h.log_std_max - h.log_std_min;
  const float* row = raw + static_cast<int64_t>(b) * 2 * A;
  const float g_ls_pi = dlog_pi ? dlog_pi[b] * -static_cast<float>(A) : 0.0f;
  float* d = draw + static_cast<int64_t>(b) * 2 * A;
  for (int j = 0; j < A; ++j) {
    const ClampedElem el = clamped_element(row, A, b, j, lo, dif, seed, offset);
    const int64_t i = static_cast<int64_t>(b) * A + j;
    const float g_u = daction && el.u >= -1.0f && el.u <= 1.0f ? daction[i] : 0.0f;
    const float g_m = g_u + (dmu ? dmu[i] : 0.0f);
    float g_ls = g_u * el.sd * el.e + g_ls_pi;
    if (dlog_std) g_ls += dlog_std[i];
    d[j] += g_m * (1.0f - el.m * el.m);
    d[A + j] += g_ls * 0.5f * dif * (1.0f - el.ts * el.ts);
  }
}

__global__ void policy_log_ratio_kernel(float* __restrict__ out, const float* __restrict__ raw,
                                        const float* __restrict__ raw_prior, int B, int A,
                                        PolicyHead h, uint64_t seed, PhiloxOffset offset_at) {
  const uint64_t offset = offset_at.resolve();  // device memory: read at run time
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= B) return;
  const float lo = h.log_std_min, dif = h.log_std_max - h.log_std_min;
  const bool clamped = h.form == PolicyForm::clamped;
  const float* row = raw + static_cast<int64_t>(b) * 2 * A;
  const float* prow = raw_prior + static_cast<int64_t>(b) * 2 * A;
  float sum = 0.0f;
  for (int j = 0; j < A; ++j) {
    StdNoise p, q;  // pi's noise and std; the prior's std (its eps unused)
    std_noise(&p, row, A, b, j, lo, dif, seed, offset);
    std_noise(&q, prow, A, b, j, lo, dif, seed, offset);
    const float c = clamped ? tanhf(row[j]) : row[j];
    const float cq = clamped ? tanhf(prow[j]) : prow[j];
    const float y = (c + p.sd * p.e - cq) / q.sd;
    sum += (-0.5f * p.e * p.e - p.ls) - (-0.5f * y * y - q.ls);
  }
  out[b] = sum;
}

void check(const char* who, int B, int A, const PolicyHead& h) {
  POMPC_REQUIRE(B >= 0 && A >= 1, "%s: B (%d) must be >= 0 and A (%d) >= 1", who, B, A);
  POMPC_REQUIRE(h.log_std_min < h.log_std_max, "%s: log_std_min (%g) must be < log_std_max (%g)",
                who, static_cast<double>(h.log_std_min), static_cast<double>(h.log_std_max));
  POMPC_REQUIRE(h.form == PolicyForm::squashed || h.form == PolicyForm::clamped,
                "%s: form must be squashed or clamped", who);
}

}  // namespace

namespace cuda {

void policy_head_forward(float* action, float* mu, float* log_std, float* log_pi, float* log_prob,
                         const float* raw, int B, int A, const PolicyHead& head, uint64_t seed,
                         PhiloxOffset offset, cudaStream_t stream) {
  check("policy_head_forward", B, A, head);
  if (head.form == PolicyForm::clamped) {
    LAUNCH(policy_head_clamped_forward_kernel, ceil_div(B, 128), 128, 0, stream, action, mu,
           log_std, log_pi, log_prob, raw, B, A, head, seed, offset);
    return;
  }
  LAUNCH(policy_head_forward_kernel, ceil_div(B, 128), 128, 0, stream, action, mu, log_std,
         log_pi, log_prob, raw, B, A, head, seed, offset);
}

void policy_head_backward(float* draw, const float* daction, const float* dmu,
                          const float* dlog_std, const float* dlog_pi, const float* raw, int B,
                          int A, const PolicyHead& head, uint64_t seed, PhiloxOffset offset,
                          cudaStream_t stream) {
  check("policy_head_backward", B, A, head);
  if (head.form == PolicyForm::clamped) {
    LAUNCH(policy_head_clamped_backward_kernel, ceil_div(B, 128), 128, 0, stream, draw, daction,
           dmu, dlog_std, dlog_pi, raw, B, A, head, seed, offset);
    return;
  }
  LAUNCH(policy_head_backward_kernel, ceil_div(B, 128), 128, 0, stream, draw, daction, dmu,
         dlog_std, dlog_pi, raw, B, A, head, seed, offset);
}

void policy_log_ratio(float* out, const float* raw, const float* raw_prior, int B, int A,
                      const PolicyHead& head, uint64_t seed, PhiloxOffset offset,
                      cudaStream_t stream) {
  check("policy_log_ratio", B, A, head);
  LAUNCH(policy_log_ratio_kernel, ceil_div(B, 128), 128, 0, stream, out, raw, raw_prior, B, A,
         head, seed, offset);
}

}  // namespace cuda
}  // namespace pompc
