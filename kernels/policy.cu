// kernels/policy.cu: the Gaussian policy head of pi (TD-MPC2 world_model.py `pi`; BMPC
// bmpc/common/world_model.py `pi` with policy_loss_type "kl").
//
// Maths: src/ref/policy.h (same names), with the noise eps[b, j] = philox_normal_f(seed, offset,
//   b * A + j): the same Philox words and Box-Muller branch as the reference's philox_normal, in
//   float (kernels/philox.cuh), so eps differs from the reference's by float rounding: at most
//   12 u |eps| (u = 2^-24, ~7e-7 relative; a few ulp in practice). That is below every parity
//   tolerance: eps enters each output through a product (exp(log_std) eps, eps^2) whose relative
//   error it adds to, and the tests already allow several ulps of each product or row sum. Both
//   forms share
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
// Launch: one thread per element (b, j): blocks of R = max(1, 256 / A) rows x min(A, 256)
//   threads (reduce.cuh row_block; for A > 256 a thread loops over j += 256), ceil(B / R)
//   blocks. Per-element outputs are written by their thread; the row sums (res, lp, corr; the
//   clamped lp; the log ratio) are reduced in shared memory by reduce.cuh's row_sum (a fixed
//   tree: deterministic, no atomics), then thread j = 0 writes the row's scalars. The squashed
//   backward runs in two phases: the `current` form's row sums give c_l, c_u to every thread of
//   the row, then each thread finishes its element (its eps kept from phase 1). At A = 38: 6
//   rows x 38 threads = 228 per block, so B = 24 (planner) is 4 blocks, B = 1024 (update) 171,
//   each thread one element plus log2(64) = 6 tree steps.
// The forward may take the policy layer's bias [2A] (model::LastBias::leave) and add it to raw as
// it reads it (BiasedRow, common.cuh: linear_forward's rounding).
// Forward outputs overwritten (mu, log_std, log_pi, log_prob may be null; with both row outputs
// null the sums are skipped); draw ACCUMULATED; null upstream gradients count as zero.
//
// Test: build/test_emu -ts=ops -tc='*policy*'
//   (test_kernels_nn.cpp, test_ref_policy.cpp: parity with the reference at A in {1, 6, 21, 38,
//   300}), and under the shared-memory race detector:
//   build/test_race -ts=race,ops -tc='*policy*'
#include "common.cuh"
#include "launchers.h"
#include "reduce.cuh"

namespace pompc {
namespace {

constexpr float kHalfLog2Pi = 0.91893853320467274178f;
constexpr float kSquashEps = 1e-6f;
constexpr float kScaleEps = 1e-8f;

// What both forms share per element: the squashed log_std, its std and the noise.
struct StdNoise {
  float ts, ls, sd, e;  // tanh(s), log_std, std, eps
};

// row: a pointer to [mean logits | log_std logits] of row b, or a BiasedRow over it.
template <class Row>
__device__ __forceinline__ void std_noise(StdNoise* el, const Row& row, int A, int b, int j,
                                          float lo, float dif, uint64_t seed, uint64_t offset) {
  el->ts = tanhf(row[A + j]);
  el->ls = lo + 0.5f * dif * (el->ts + 1.0f);
  el->sd = expf(el->ls);
  el->e = philox_normal_f(seed, offset, static_cast<uint64_t>(b) * A + j);
}

struct Elem : StdNoise {
  float a, om, corr;  // action, 1 - a^2, log term
};

template <class Row>
__device__ __forceinline__ Elem element(const Row& row, int A, int b, int j, float lo, float dif,
                                        uint64_t seed, uint64_t offset) {
  Elem el;
  std_noise(&el, row, A, b, j, lo, dif, seed, offset);
  el.a = tanhf(row[j] + el.e * el.sd);
  el.om = 1.0f - el.a * el.a;
  el.corr = logf((el.om > 0.0f ? el.om : 0.0f) + kSquashEps);
  return el;
}

// The row this thread works on (blocks of blockDim.y rows x blockDim.x threads, reduce.cuh's
// row_block); its elements are j = threadIdx.x, threadIdx.x + blockDim.x, ... < A.
__device__ __forceinline__ int block_row() {
  return static_cast<int>(blockIdx.x * blockDim.y + threadIdx.y);
}

__global__ void policy_head_forward_kernel(float* __restrict__ action, float* __restrict__ mu,
                                           float* __restrict__ log_std, float* __restrict__ log_pi,
                                           float* __restrict__ log_prob,
                                           const float* __restrict__ raw,
                                           const float* __restrict__ bias, int B, int A,
                                           PolicyHead h, uint64_t seed, PhiloxOffset offset_at,
                                           int64_t action_ld) {
  __shared__ float scratch[3 * kRowSumScratch];
  const uint64_t offset = offset_at.resolve();  // device memory: read at run time
  const int b = block_row();
  const float lo = h.log_std_min, dif = h.log_std_max - h.log_std_min;
  float sum[3] = {0.0f, 0.0f, 0.0f};  // res, lp, corr
  if (b < B) {
    const BiasedRow row{raw + static_cast<int64_t>(b) * 2 * A, bias};
    for (int j = threadIdx.x; j < A; j += blockDim.x) {
      const Elem el = element(row, A, b, j, lo, dif, seed, offset);
      const int64_t i = static_cast<int64_t>(b) * A + j;
      action[b * action_ld + j] = el.a;
      if (mu) mu[i] = tanhf(row[j]);
      if (log_std) log_std[i] = el.ls;
      const float r = -0.5f * el.e * el.e - el.ls;
      sum[0] += r;
      sum[1] += r - kHalfLog2Pi;
      sum[2] += el.corr;
    }
  }
  if (!log_prob && !log_pi) return;  // the same for the whole block
  row_sum(sum, scratch);
  if (b >= B || threadIdx.x != 0) return;
  const float res = sum[0], lp = sum[1], corr = sum[2], nA = static_cast<float>(A);
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
  __shared__ float scratch[2 * kRowSumScratch];
  const uint64_t offset = offset_at.resolve();  // device memory: read at run time
  const int b = block_row(), x = static_cast<int>(threadIdx.x);
  const bool live = b < B;
  const float lo = h.log_std_min, dif = h.log_std_max - h.log_std_min;
  const float nA = static_cast<float>(A);
  const float* row = live ? raw + static_cast<int64_t>(b) * 2 * A : raw;
  // Phase 1: the row's coefficients of log_pi (c_l on log_std, c_u on -dcorr/du); the current
  // form needs its row sums first. el0 (element j = x) is kept for phase 2.
  Elem el0{};
  if (live) el0 = element(row, A, b, x, lo, dif, seed, offset);
  float c_l = 0.0f, c_u = 0.0f;
  const float glp = live && dlog_pi ? dlog_pi[b] : 0.0f;
  if (h.entropy_form == EntropyForm::current && dlog_pi) {  // the same for the whole block
    float sum[2] = {0.0f, 0.0f};                            // lp, corr
    if (live)
      for (int j = x; j < A; j += blockDim.x) {
        const Elem el = j == x ? el0 : element(row, A, b, j, lo, dif, seed, offset);
        sum[0] += -0.5f * el.e * el.e - el.ls - kHalfLog2Pi;
        sum[1] += el.corr;
      }
    row_sum(sum, scratch);
    if (glp != 0.0f) {
      const float P = sum[0] * nA, Q = sum[0] - sum[1], D = Q + kScaleEps;
      c_u = P * kScaleEps / (D * D);
      c_l = -c_u - nA * (Q / D);
    }
  } else if (glp != 0.0f) {
    c_l = -nA;
    c_u = 1.0f;
  }
  if (!live) return;
  // Phase 2: the elements' gradients.
  float* d = draw + static_cast<int64_t>(b) * 2 * A;
  for (int j = x; j < A; j += blockDim.x) {
    const Elem el = j == x ? el0 : element(row, A, b, j, lo, dif, seed, offset);
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

template <class Row>
__device__ __forceinline__ ClampedElem clamped_element(const Row& row, int A, int b, int j,
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
    float* __restrict__ log_pi, float* __restrict__ log_prob, const float* __restrict__ raw,
    const float* __restrict__ bias, int B, int A, PolicyHead h, uint64_t seed,
    PhiloxOffset offset_at, int64_t action_ld) {
  __shared__ float scratch[kRowSumScratch];
  const uint64_t offset = offset_at.resolve();  // device memory: read at run time
  const int b = block_row();
  const float lo = h.log_std_min, dif = h.log_std_max - h.log_std_min;
  float lp[1] = {0.0f};
  if (b < B) {
    const BiasedRow row{raw + static_cast<int64_t>(b) * 2 * A, bias};
    for (int j = threadIdx.x; j < A; j += blockDim.x) {
      const ClampedElem el = clamped_element(row, A, b, j, lo, dif, seed, offset);
      const int64_t i = static_cast<int64_t>(b) * A + j;
      // NaN stays NaN (torch)
      action[b * action_ld + j] = el.u < -1.0f ? -1.0f : (el.u > 1.0f ? 1.0f : el.u);
      if (mu) mu[i] = el.m;
      if (log_std) log_std[i] = el.ls;
      lp[0] += -0.5f * el.e * el.e - el.ls - kHalfLog2Pi;
    }
  }
  if (!log_prob && !log_pi) return;  // the same for the whole block
  row_sum(lp, scratch);
  if (b >= B || threadIdx.x != 0) return;
  if (log_prob) log_prob[b] = lp[0];
  if (log_pi) log_pi[b] = static_cast<float>(A) * lp[0];
}

__global__ void policy_head_clamped_backward_kernel(
    float* __restrict__ draw, const float* __restrict__ daction, const float* __restrict__ dmu,
    const float* __restrict__ dlog_std, const float* __restrict__ dlog_pi,
    const float* __restrict__ raw, int B, int A, PolicyHead h, uint64_t seed,
    PhiloxOffset offset_at) {
  const uint64_t offset = offset_at.resolve();  // device memory: read at run time
  const int b = block_row();
  if (b >= B) return;  // no row sums: elementwise
  const float lo = h.log_std_min, dif = h.log_std_max - h.log_std_min;
  const float* row = raw + static_cast<int64_t>(b) * 2 * A;
  const float g_ls_pi = dlog_pi ? dlog_pi[b] * -static_cast<float>(A) : 0.0f;
  float* d = draw + static_cast<int64_t>(b) * 2 * A;
  for (int j = threadIdx.x; j < A; j += blockDim.x) {
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
  __shared__ float scratch[kRowSumScratch];
  const uint64_t offset = offset_at.resolve();  // device memory: read at run time
  const int b = block_row();
  const float lo = h.log_std_min, dif = h.log_std_max - h.log_std_min;
  const bool clamped = h.form == PolicyForm::clamped;
  float sum[1] = {0.0f};
  if (b < B) {
    const float* row = raw + static_cast<int64_t>(b) * 2 * A;
    const float* prow = raw_prior + static_cast<int64_t>(b) * 2 * A;
    for (int j = threadIdx.x; j < A; j += blockDim.x) {
      StdNoise p, q;  // pi's noise and std; the prior's std (its eps unused)
      std_noise(&p, row, A, b, j, lo, dif, seed, offset);
      q.ts = tanhf(prow[A + j]);
      q.ls = lo + 0.5f * dif * (q.ts + 1.0f);
      q.sd = expf(q.ls);
      const float c = clamped ? tanhf(row[j]) : row[j];
      const float cq = clamped ? tanhf(prow[j]) : prow[j];
      const float y = (c + p.sd * p.e - cq) / q.sd;
      sum[0] += (-0.5f * p.e * p.e - p.ls) - (-0.5f * y * y - q.ls);
    }
  }
  row_sum(sum, scratch);
  if (b < B && threadIdx.x == 0) out[b] = sum[0];
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
                         const float* raw, const float* bias, int B, int A, const PolicyHead& head,
                         uint64_t seed, PhiloxOffset offset, int64_t action_ld,
                         cudaStream_t stream) {
  check("policy_head_forward", B, A, head);
  const int64_t ld = resolve_row_stride("policy_head_forward", "action", action_ld, A);
  const RowBlock rb = row_block(A);
  if (head.form == PolicyForm::clamped) {
    LAUNCH(policy_head_clamped_forward_kernel, ceil_div(B, rb.rows), dim3(rb.tx, rb.rows), 0,
           stream, action, mu, log_std, log_pi, log_prob, raw, bias, B, A, head, seed, offset, ld);
    return;
  }
  LAUNCH(policy_head_forward_kernel, ceil_div(B, rb.rows), dim3(rb.tx, rb.rows), 0, stream, action,
         mu, log_std, log_pi, log_prob, raw, bias, B, A, head, seed, offset, ld);
}

void policy_head_backward(float* draw, const float* daction, const float* dmu,
                          const float* dlog_std, const float* dlog_pi, const float* raw, int B,
                          int A, const PolicyHead& head, uint64_t seed, PhiloxOffset offset,
                          cudaStream_t stream) {
  check("policy_head_backward", B, A, head);
  const RowBlock rb = row_block(A);
  if (head.form == PolicyForm::clamped) {
    LAUNCH(policy_head_clamped_backward_kernel, ceil_div(B, rb.rows), dim3(rb.tx, rb.rows), 0,
           stream, draw, daction, dmu, dlog_std, dlog_pi, raw, B, A, head, seed, offset);
    return;
  }
  LAUNCH(policy_head_backward_kernel, ceil_div(B, rb.rows), dim3(rb.tx, rb.rows), 0, stream, draw,
         daction, dmu, dlog_std, dlog_pi, raw, B, A, head, seed, offset);
}

void policy_log_ratio(float* out, const float* raw, const float* raw_prior, int B, int A,
                      const PolicyHead& head, uint64_t seed, PhiloxOffset offset,
                      cudaStream_t stream) {
  check("policy_log_ratio", B, A, head);
  const RowBlock rb = row_block(A);
  LAUNCH(policy_log_ratio_kernel, ceil_div(B, rb.rows), dim3(rb.tx, rb.rows), 0, stream, out, raw,
         raw_prior, B, A, head, seed, offset);
}

}  // namespace cuda
}  // namespace pompc
