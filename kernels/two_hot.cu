// kernels/two_hot.cu: discrete regression of the reward and value heads (TD-MPC2 math.py).
//
// Maths: exactly src/ref/two_hot.h (same names). K bins over [vmin, vmax] in symlog space.
//   soft_ce(logits, x) = -sum_k two_hot(x)_k log_softmax(logits)_k
//     dlogits_k += dloss * (p_k (w0 + w1) - two_hot_k)
//   two_hot_inv(logits) = symexp(m), m = sum_k softmax(logits)_k bin_k
//     dlogits_k += dout * symexp'(m) p_k (bin_k - m)
// Shapes: logits [rows, K], x / loss / out / dloss / dout [rows]; rows = B, B*H, Qn*B, N, ...
//   soft_ce_heads: soft_ce of Qn heads' logits [Qn, rows, K] against the same x [rows] (backward:
//     the same dloss [rows]) in one launch, not one per head: row r of Qn * rows takes x[r % rows].
//   two_hot_inv_pair: two_hot_inv of the two heads pick_pair(Qn, seed, offset) chose, then
//     pair_select's min / avg (kernels/loss.cu): the inference Q's two kernels in one, bit for
//     bit (the same warp code per head row; the other Qn - 2 heads are not computed).
//   two_hot_inv_forward / two_hot_inv_pair_forward may take the layer's bias and add it to each
//     logit as they read it (BiasedRow: __fadd_rn, the rounding linear_forward's add_bias makes).
// One warp per row (K = 101: four logits per lane), 8 rows per 256-thread block. Forward outputs
// are overwritten, gradients ACCUMULATED. A NaN target x gives a NaN loss here (the reference
// throws; a kernel cannot): the trainer's finite-loss check reports it.
//
// Test: build/test_emu -ts=ops -tc='*two_hot*cuda*,*two_hot_inv_pair*,*soft_ce_heads*'.
#include "common.cuh"
#include "launchers.h"
#include "reduce.cuh"

namespace pompc {
namespace {

constexpr int kWarps = 8;

__device__ __forceinline__ float sign_f(float x) { return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f); }
__device__ __forceinline__ float symlog_f(float x) { return sign_f(x) * logf(1.0f + fabsf(x)); }
__device__ __forceinline__ float symexp_f(float x) { return sign_f(x) * (expf(fabsf(x)) - 1.0f); }

// The two non-zero entries of two_hot(x); NaN x gives NaN weights at bin 0.
__device__ __forceinline__ void two_hot_entries(float x, const Bins& b, int* k0, int* k1, float* w0,
                                                float* w1) {
  const float bin_size = static_cast<float>(
      (static_cast<double>(b.vmax) - static_cast<double>(b.vmin)) / (b.num_bins - 1));
  float y = symlog_f(x);
  if (isnan(y)) {
    *k0 = 0;
    *k1 = 1;
    *w0 = *w1 = y;
    return;
  }
  y = fminf(fmaxf(y, b.vmin), b.vmax);
  const float pos = (y - b.vmin) / bin_size;
  const float k = floorf(pos);
  *k0 = min(max(static_cast<int>(k), 0), b.num_bins - 1);
  *k1 = (*k0 + 1) % b.num_bins;
  *w0 = 1.0f - (pos - k);
  *w1 = pos - k;
}

// Row max and sum of exp(l - max) over the warp's row (l: a pointer or a BiasedRow).
template <class Row>
__device__ __forceinline__ void row_stats(const Row& l, int K, int lane, float* mx, float* z) {
  float m = -INFINITY;
  for (int k = lane; k < K; k += 32) m = fmaxf(m, l[k]);
  m = warp_allreduce_max(m);
  float s = 0.0f;
  for (int k = lane; k < K; k += 32) s += expf(l[k] - m);
  *mx = m;
  *z = warp_allreduce_sum(s);
}

// soft_ce over `heads` consecutive [rows, K] logit blocks sharing the targets x [rows] (and, in
// the backward, dloss [rows]): logit row r (of heads * rows) takes target r % rows.
__global__ void soft_ce_forward_kernel(float* __restrict__ loss, const float* __restrict__ logits,
                                       const float* __restrict__ x, int rows, int heads, Bins b) {
  const int r = blockIdx.x * kWarps + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (r >= heads * rows) return;
  const float* l = logits + static_cast<int64_t>(r) * b.num_bins;
  float mx, z;
  row_stats(l, b.num_bins, lane, &mx, &z);
  if (lane == 0) {
    int k0, k1;
    float w0, w1;
    two_hot_entries(x[r % rows], b, &k0, &k1, &w0, &w1);
    const float lse = logf(z);
    loss[r] = -(w0 * (l[k0] - mx - lse) + w1 * (l[k1] - mx - lse));
  }
}

__global__ void soft_ce_backward_kernel(float* __restrict__ dlogits,
                                        const float* __restrict__ dloss,
                                        const float* __restrict__ logits,
                                        const float* __restrict__ x, int rows, int heads, Bins b) {
  const int r = blockIdx.x * kWarps + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (r >= heads * rows) return;
  const int K = b.num_bins;
  const float* l = logits + static_cast<int64_t>(r) * K;
  float* d = dlogits + static_cast<int64_t>(r) * K;
  float mx, z;
  row_stats(l, K, lane, &mx, &z);
  int k0, k1;
  float w0, w1;
  two_hot_entries(x[r % rows], b, &k0, &k1, &w0, &w1);
  const float g = dloss[r % rows], tsum = w0 + w1;
  for (int k = lane; k < K; k += 32) {
    const float p = expf(l[k] - mx) / z;
    d[k] += g * p * tsum - (k == k0 ? g * w0 : 0.0f) - (k == k1 ? g * w1 : 0.0f);
  }
}

// m = sum_k softmax(l)_k bin_k over the warp's row l (every lane gets it).
__device__ __forceinline__ float row_bin_mean(const BiasedRow& l, const Bins& b, int lane) {
  float mx, z;
  row_stats(l, b.num_bins, lane, &mx, &z);
  float m = 0.0f;
  for (int k = lane; k < b.num_bins; k += 32) m += expf(l[k] - mx) / z * bin_center<float>(b, k);
  return warp_allreduce_sum(m);
}

__global__ void two_hot_inv_forward_kernel(float* __restrict__ out,
                                           const float* __restrict__ logits,
                                           const float* __restrict__ bias, int rows, Bins b) {
  const int r = blockIdx.x * kWarps + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (r >= rows) return;
  const float m = row_bin_mean({logits + static_cast<int64_t>(r) * b.num_bins, bias}, b, lane);
  if (lane == 0) out[r] = symexp_f(m);
}

// two_hot_inv_forward_kernel's value for row r of the two heads pick_pair chose, then
// pair_select_forward_kernel's rule (kernels/loss.cu), one warp per row.
__global__ void two_hot_inv_pair_forward_kernel(float* __restrict__ out,
                                                const float* __restrict__ logits,
                                                const float* __restrict__ bias, int Qn, int rows,
                                                Bins b, PairMode mode, uint64_t seed,
                                                PhiloxOffset offset_at) {
  const int r = blockIdx.x * kWarps + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (r >= rows) return;
  int hi = 0, hj = 0;
  pick_pair(Qn, seed, offset_at.resolve(), &hi, &hj);  // device memory: read at run time
  const int64_t K = b.num_bins;
  const float mi =
      row_bin_mean({logits + (int64_t{hi} * rows + r) * K, bias ? bias + hi * K : bias}, b, lane);
  const float mj =
      row_bin_mean({logits + (int64_t{hj} * rows + r) * K, bias ? bias + hj * K : bias}, b, lane);
  if (lane == 0) {
    const float qi = symexp_f(mi), qj = symexp_f(mj);
    if (mode == PairMode::avg)
      out[r] = (qi + qj) / 2.0f;
    else
      out[r] = (qi <= qj || isnan(qi)) ? qi : qj;  // NaN propagates, a tie takes head i
  }
}

__global__ void two_hot_inv_backward_kernel(float* __restrict__ dlogits,
                                            const float* __restrict__ dout,
                                            const float* __restrict__ logits, int rows, Bins b) {
  const int r = blockIdx.x * kWarps + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (r >= rows) return;
  const int K = b.num_bins;
  const float* l = logits + static_cast<int64_t>(r) * K;
  float mx, z;
  row_stats(l, K, lane, &mx, &z);
  float m = 0.0f;
  for (int k = lane; k < K; k += 32) m += expf(l[k] - mx) / z * bin_center<float>(b, k);
  m = warp_allreduce_sum(m);
  const float dm = m != 0.0f ? dout[r] * expf(fabsf(m)) : 0.0f;
  float* d = dlogits + static_cast<int64_t>(r) * K;
  for (int k = lane; k < K; k += 32)
    d[k] += dm * (expf(l[k] - mx) / z) * (bin_center<float>(b, k) - m);
}

void check(const char* who, int rows, const Bins& b) {
  POMPC_REQUIRE(rows >= 0, "%s: rows (%d) must be >= 0", who, rows);
  POMPC_REQUIRE(b.num_bins >= 2, "%s: num_bins (%d) must be >= 2", who, b.num_bins);
  POMPC_REQUIRE(b.vmin < b.vmax, "%s: vmin (%g) must be < vmax (%g)", who,
                static_cast<double>(b.vmin), static_cast<double>(b.vmax));
}

}  // namespace

namespace cuda {

void soft_ce_heads_forward(float* loss, const float* logits, const float* x, int heads, int rows,
                           const Bins& bins, cudaStream_t stream) {
  check("soft_ce_forward", rows, bins);
  POMPC_REQUIRE(heads >= 1 && int64_t{heads} * rows <= INT32_MAX,
                "soft_ce_forward: heads (%d) must be >= 1 with heads * rows (%d) < 2^31", heads,
                rows);
  LAUNCH(soft_ce_forward_kernel, ceil_div(heads * rows, kWarps), 32 * kWarps, 0, stream, loss,
         logits, x, rows, heads, bins);
}

void soft_ce_heads_backward(float* dlogits, const float* dloss, const float* logits, const float* x,
                            int heads, int rows, const Bins& bins, cudaStream_t stream) {
  check("soft_ce_backward", rows, bins);
  POMPC_REQUIRE(heads >= 1 && int64_t{heads} * rows <= INT32_MAX,
                "soft_ce_backward: heads (%d) must be >= 1 with heads * rows (%d) < 2^31", heads,
                rows);
  LAUNCH(soft_ce_backward_kernel, ceil_div(heads * rows, kWarps), 32 * kWarps, 0, stream, dlogits,
         dloss, logits, x, rows, heads, bins);
}

void soft_ce_forward(float* loss, const float* logits, const float* x, int rows, const Bins& bins,
                     cudaStream_t stream) {
  soft_ce_heads_forward(loss, logits, x, 1, rows, bins, stream);
}

void soft_ce_backward(float* dlogits, const float* dloss, const float* logits, const float* x,
                      int rows, const Bins& bins, cudaStream_t stream) {
  soft_ce_heads_backward(dlogits, dloss, logits, x, 1, rows, bins, stream);
}

void two_hot_inv_forward(float* out, const float* logits, const float* bias, int rows,
                         const Bins& bins, cudaStream_t stream) {
  check("two_hot_inv_forward", rows, bins);
  LAUNCH(two_hot_inv_forward_kernel, ceil_div(rows, kWarps), 32 * kWarps, 0, stream, out, logits,
         bias, rows, bins);
}

void two_hot_inv_pair_forward(float* out, const float* logits, const float* bias, int Qn, int rows,
                              const Bins& bins, PairMode mode, uint64_t seed, PhiloxOffset offset,
                              cudaStream_t stream) {
  check("two_hot_inv_pair_forward", rows, bins);
  check_pair("two_hot_inv_pair_forward", Qn, rows, mode);
  LAUNCH(two_hot_inv_pair_forward_kernel, ceil_div(rows, kWarps), 32 * kWarps, 0, stream, out,
         logits, bias, Qn, rows, bins, mode, seed, offset);
}

void two_hot_inv_backward(float* dlogits, const float* dout, const float* logits, int rows,
                          const Bins& bins, cudaStream_t stream) {
  check("two_hot_inv_backward", rows, bins);
  LAUNCH(two_hot_inv_backward_kernel, ceil_div(rows, kWarps), 32 * kWarps, 0, stream, dlogits,
         dout, logits, rows, bins);
}

}  // namespace cuda
}  // namespace pompc
