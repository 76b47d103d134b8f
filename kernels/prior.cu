// kernels/prior.cu: the policy-prior divergences of the PO-MPC family (SPEC section 4): Gaussian
// KL in both directions, TD-M(PC)^2's prior NLL, the intermediate prior's samples, weights and
// weighted NLL, exp, and the scale gate.
//
// Maths: src/ref/prior.h (same names), with c = 0.5 log(2 pi):
//   gauss_kl       out_r = mean_j kl_j, reverse KL(N(mu, s) || N(mu_p, sp)) or forward
//                  KL(N(mu_p, sp) || N(mu, s)), s = exp(log_std); backward to mu and log_std
//   gauss_nll      out_r = -A (sum_j(-0.5 e_j^2 - log s_j) - c), s = max(sigma_p, min_std),
//                  e = (a - mu_p) / s; backward da += dout_r A e / s
//   prior_sample   a_k = clamp(mu_p + sigma_p eps, -1, 1)
//   sample_weights w = softmax_k(q / beta) per row, log_z = log mean_k exp(q / beta)
//   weighted_nll   out_r = -sum_k w_k mean_j log N(a_k; mu, exp(log_std)); backward to mu, log_std
//   exp_forward    y = exp(x);  scale_gate  *out = *scale > threshold ? *scale : +inf
// Noise: prior_sample draws eps = philox_normal_f(seed, offset, (k rows + r) A + j), the
//   reference's Philox words and Box-Muller branch computed in float (kernels/philox.cuh), so it
//   differs from the reference's philox_normal by float rounding, <= 12 u |eps| (u = 2^-24; ~5 u
//   reached with glibc). a_k moves by sigma_p times that: where unclamped |sigma_p eps| = |a_k -
//   mu_p| <= 2, so <= 1.4e-6 at the documented worst case of every CUDA function at once and
//   ~5e-7 measured, inside the parity tolerance (1e-6 absolute; pompc check's 80 u relative).
// Shapes: mu, log_std, mu_p, sigma_p, a (and gradients) [rows, A]; out, dout, log_z [rows];
//   a_k [S, rows, A]; q, w [S, rows]; x, y [n]; scale and scale_gate's out: one device scalar.
// Launch shapes: the row sums (gauss_kl_forward, gauss_nll_forward, weighted_nll_forward) give one
//   thread to each element (r, j): blocks of max(1, 256 / A) rows x min(A, 256) threads
//   (reduce.cuh row_block; for A > 256 a thread loops over j += 256), reduced per row in shared
//   memory in a fixed tree order (reduce.cuh row_sum: deterministic, no atomics), thread j = 0
//   writing out[r]; weighted_nll_forward's thread sums its element over the S samples first. The
//   elementwise ops (the backwards, prior_sample, exp_forward) grid-stride over their elements,
//   128 threads per block (weighted_nll_backward's element loops over S). sample_weights keeps
//   one thread per row (its sums run over S, 8 by default, and its q / w reads are coalesced
//   across rows, [S, rows]); scale_gate is one thread. Forward outputs overwritten (log_z may be
//   null), gradients ACCUMULATED (gauss_kl_backward's dmu or dlog_std may be null: skipped;
//   no other pointer may be null).
//
// Test: build/test_emu -ts=ops -tc='prior*'
//   (parity at rows {1, 33, 257}, A {1, 6, 38, 300}; the backend's float Box-Muller through
//   prior_sample), and under the shared-memory race detector:
//   build/test_race -ts=race,ops -tc='prior*'
#include <cmath>

#include "common.cuh"
#include "launchers.h"
#include "reduce.cuh"

namespace pompc {
namespace {

constexpr float kHalfLog2Pi = 0.91893853320467274178f;
constexpr unsigned kThreads = 128;

// The row this thread works on (blocks of blockDim.y rows x blockDim.x threads, reduce.cuh's
// row_block); its elements are j = threadIdx.x, threadIdx.x + blockDim.x, ... < A.
__device__ __forceinline__ int block_row() {
  return static_cast<int>(blockIdx.x * blockDim.y + threadIdx.y);
}

__global__ void gauss_kl_forward_kernel(float* __restrict__ out, const float* __restrict__ mu,
                                        const float* __restrict__ log_std,
                                        const float* __restrict__ mu_p,
                                        const float* __restrict__ sigma_p, int rows, int A,
                                        KlDir dir) {
  __shared__ float scratch[kRowSumScratch];
  const int r = block_row();
  float sum[1] = {0.0f};
  if (r < rows)
    for (int j = threadIdx.x; j < A; j += blockDim.x) {
      const int64_t i = static_cast<int64_t>(r) * A + j;
      const float ls = log_std[i], s2 = expf(2.0f * ls), sp = sigma_p[i], sp2 = sp * sp;
      const float d = mu[i] - mu_p[i];
      if (dir == KlDir::reverse)
        sum[0] += logf(sp) - ls + (s2 + d * d) / (2.0f * sp2) - 0.5f;
      else
        sum[0] += ls - logf(sp) + (sp2 + d * d) / (2.0f * s2) - 0.5f;
    }
  row_sum(sum, scratch);
  if (r < rows && threadIdx.x == 0) out[r] = sum[0] / static_cast<float>(A);
}

// Elementwise (no row sums): grid-stride over the rows * A elements.
__global__ void gauss_kl_backward_kernel(
    float* __restrict__ dmu, float* __restrict__ dlog_std, const float* __restrict__ dout,
    const float* __restrict__ mu, const float* __restrict__ log_std, const float* __restrict__ mu_p,
    const float* __restrict__ sigma_p, int64_t n, int A, KlDir dir) {
  POMPC_GRID_STRIDE(i, n) {
    const float g = dout[i / A] / static_cast<float>(A);
    const float s2 = expf(2.0f * log_std[i]), sp = sigma_p[i], sp2 = sp * sp;
    const float d = mu[i] - mu_p[i];
    if (dir == KlDir::reverse) {
      if (dmu) dmu[i] += g * d / sp2;
      if (dlog_std) dlog_std[i] += g * (s2 / sp2 - 1.0f);
    } else {
      if (dmu) dmu[i] += g * d / s2;
      if (dlog_std) dlog_std[i] += g * (1.0f - (sp2 + d * d) / s2);
    }
  }
}

__global__ void gauss_nll_forward_kernel(float* __restrict__ out, const float* __restrict__ a,
                                         const float* __restrict__ mu_p,
                                         const float* __restrict__ sigma_p, int rows, int A,
                                         float min_std) {
  __shared__ float scratch[kRowSumScratch];
  const int r = block_row();
  float res[1] = {0.0f};
  if (r < rows)
    for (int j = threadIdx.x; j < A; j += blockDim.x) {
      const int64_t i = static_cast<int64_t>(r) * A + j;
      const float s = fmaxf(sigma_p[i], min_std);
      const float e = (a[i] - mu_p[i]) / s;
      res[0] += -0.5f * e * e - logf(s);
    }
  row_sum(res, scratch);
  if (r < rows && threadIdx.x == 0) out[r] = -static_cast<float>(A) * (res[0] - kHalfLog2Pi);
}

// Elementwise: grid-stride over the rows * A elements.
__global__ void gauss_nll_backward_kernel(float* __restrict__ da, const float* __restrict__ dout,
                                          const float* __restrict__ a,
                                          const float* __restrict__ mu_p,
                                          const float* __restrict__ sigma_p, int64_t n, int A,
                                          float min_std) {
  POMPC_GRID_STRIDE(i, n) {
    const float g = dout[i / A] * static_cast<float>(A);
    const float s = fmaxf(sigma_p[i], min_std);
    const float e = (a[i] - mu_p[i]) / s;
    da[i] += g * e / s;
  }
}

__global__ void prior_sample_kernel(float* __restrict__ a_k, const float* __restrict__ mu_p,
                                    const float* __restrict__ sigma_p, int64_t n, int64_t per,
                                    uint64_t seed, PhiloxOffset offset_at) {
  const uint64_t offset = offset_at.resolve();  // device memory: read at run time
  POMPC_GRID_STRIDE(i, n) {
    const int64_t rj = i % per;
    const float eps = philox_normal_f(seed, offset, static_cast<uint64_t>(i));
    a_k[i] = fminf(fmaxf(mu_p[rj] + sigma_p[rj] * eps, -1.0f), 1.0f);
  }
}

__global__ void sample_weights_kernel(float* __restrict__ w, float* __restrict__ log_z,
                                      const float* __restrict__ q, int S, int rows, float beta) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  float m = -INFINITY;
  for (int k = 0; k < S; ++k) m = fmaxf(m, q[static_cast<int64_t>(k) * rows + r] / beta);
  float sum = 0.0f;
  for (int k = 0; k < S; ++k) {
    const int64_t i = static_cast<int64_t>(k) * rows + r;
    const float e = expf(q[i] / beta - m);
    w[i] = e;
    sum += e;
  }
  for (int k = 0; k < S; ++k) w[static_cast<int64_t>(k) * rows + r] /= sum;
  if (log_z) log_z[r] = m + logf(sum) - logf(static_cast<float>(S));
}

// Thread (r, j) sums its element's terms over the S samples, sum_k w_k (-0.5 y^2 - log_std_j -
// c), then the row sums over j (the reference sums over j first, then over k: the same terms).
__global__ void weighted_nll_forward_kernel(float* __restrict__ out, const float* __restrict__ a_k,
                                            const float* __restrict__ w,
                                            const float* __restrict__ mu,
                                            const float* __restrict__ log_std, int S, int rows,
                                            int A) {
  __shared__ float scratch[kRowSumScratch];
  const int r = block_row();
  float total[1] = {0.0f};
  if (r < rows)
    for (int j = threadIdx.x; j < A; j += blockDim.x) {
      const int64_t i = static_cast<int64_t>(r) * A + j;
      const float m = mu[i], ls = log_std[i], s = expf(ls);
      for (int k = 0; k < S; ++k) {
        const int64_t rk = static_cast<int64_t>(k) * rows + r;
        const float y = (a_k[rk * A + j] - m) / s;
        total[0] += w[rk] * (-0.5f * y * y - ls - kHalfLog2Pi);
      }
    }
  row_sum(total, scratch);
  if (r < rows && threadIdx.x == 0) out[r] = -total[0] / static_cast<float>(A);
}

// Elementwise: grid-stride over the rows * A elements, each summing over the S samples.
__global__ void weighted_nll_backward_kernel(
    float* __restrict__ dmu, float* __restrict__ dlog_std, const float* __restrict__ dout,
    const float* __restrict__ a_k, const float* __restrict__ w, const float* __restrict__ mu,
    const float* __restrict__ log_std, int64_t n, int S, int rows, int A) {
  POMPC_GRID_STRIDE(i, n) {
    const int r = static_cast<int>(i / A);
    const int64_t j = i - static_cast<int64_t>(r) * A;
    const float g = -dout[r] / static_cast<float>(A);
    const float s = expf(log_std[i]);
    float gy = 0.0f, gy2 = 0.0f;  // sum_k w_k y, sum_k w_k (y^2 - 1)
    for (int k = 0; k < S; ++k) {
      const int64_t rk = static_cast<int64_t>(k) * rows + r;
      const float y = (a_k[rk * A + j] - mu[i]) / s;
      gy += w[rk] * y;
      gy2 += w[rk] * (y * y - 1.0f);
    }
    dmu[i] += g * gy / s;
    dlog_std[i] += g * gy2;
  }
}

__global__ void exp_forward_kernel(float* __restrict__ y, const float* __restrict__ x, int64_t n) {
  POMPC_GRID_STRIDE(i, n) y[i] = expf(x[i]);
}

__global__ void scale_gate_kernel(float* __restrict__ out, const float* __restrict__ scale,
                                  float threshold) {
  const float s = *scale;
  *out = s > threshold ? s : INFINITY;
}

}  // namespace

namespace cuda {

void gauss_kl_forward(float* out, const float* mu, const float* log_std, const float* mu_p,
                      const float* sigma_p, int rows, int A, KlDir dir, cudaStream_t stream) {
  check_prior_shape("gauss_kl_forward", rows, A, 1);
  check_prior_dir("gauss_kl_forward", dir);
  const RowBlock rb = row_block(A);
  LAUNCH(gauss_kl_forward_kernel, ceil_div(rows, rb.rows), dim3(rb.tx, rb.rows), 0, stream, out, mu,
         log_std, mu_p, sigma_p, rows, A, dir);
}

void gauss_kl_backward(float* dmu, float* dlog_std, const float* dout, const float* mu,
                       const float* log_std, const float* mu_p, const float* sigma_p, int rows,
                       int A, KlDir dir, cudaStream_t stream) {
  check_prior_shape("gauss_kl_backward", rows, A, 1);
  check_prior_dir("gauss_kl_backward", dir);
  check_prior_given("gauss_kl_backward", "dout", dout);
  const int64_t n = int64_t{rows} * A;
  LAUNCH(gauss_kl_backward_kernel, grid_stride_blocks(n, kThreads), kThreads, 0, stream, dmu,
         dlog_std, dout, mu, log_std, mu_p, sigma_p, n, A, dir);
}

void gauss_nll_forward(float* out, const float* a, const float* mu_p, const float* sigma_p,
                       int rows, int A, float min_std, cudaStream_t stream) {
  check_prior_shape("gauss_nll_forward", rows, A, 1);
  check_prior_min_std("gauss_nll_forward", min_std);
  const RowBlock rb = row_block(A);
  LAUNCH(gauss_nll_forward_kernel, ceil_div(rows, rb.rows), dim3(rb.tx, rb.rows), 0, stream, out, a,
         mu_p, sigma_p, rows, A, min_std);
}

void gauss_nll_backward(float* da, const float* dout, const float* a, const float* mu_p,
                        const float* sigma_p, int rows, int A, float min_std, cudaStream_t stream) {
  check_prior_shape("gauss_nll_backward", rows, A, 1);
  check_prior_min_std("gauss_nll_backward", min_std);
  check_prior_given("gauss_nll_backward", "da", da);
  check_prior_given("gauss_nll_backward", "dout", dout);
  const int64_t n = int64_t{rows} * A;
  LAUNCH(gauss_nll_backward_kernel, grid_stride_blocks(n, kThreads), kThreads, 0, stream, da, dout,
         a, mu_p, sigma_p, n, A, min_std);
}

void prior_sample(float* a_k, const float* mu_p, const float* sigma_p, int S, int rows, int A,
                  uint64_t seed, PhiloxOffset offset, cudaStream_t stream) {
  check_prior_shape("prior_sample", rows, A, S);
  const int64_t per = int64_t{rows} * A, n = per * S;
  LAUNCH(prior_sample_kernel, grid_stride_blocks(n, kThreads), kThreads, 0, stream, a_k, mu_p,
         sigma_p, n, per, seed, offset);
}

void sample_weights(float* w, float* log_z, const float* q, int S, int rows, float beta,
                    cudaStream_t stream) {
  check_prior_shape("sample_weights", rows, 1, S);
  POMPC_REQUIRE(beta > 0.0f, "sample_weights: beta (%g) must be > 0 (the temperature of Qbar)",
                static_cast<double>(beta));
  LAUNCH(sample_weights_kernel, ceil_div(rows, kThreads), kThreads, 0, stream, w, log_z, q, S, rows,
         beta);
}

void weighted_nll_forward(float* out, const float* a_k, const float* w, const float* mu,
                          const float* log_std, int S, int rows, int A, cudaStream_t stream) {
  check_prior_shape("weighted_nll_forward", rows, A, S);
  const RowBlock rb = row_block(A);
  LAUNCH(weighted_nll_forward_kernel, ceil_div(rows, rb.rows), dim3(rb.tx, rb.rows), 0, stream, out,
         a_k, w, mu, log_std, S, rows, A);
}

void weighted_nll_backward(float* dmu, float* dlog_std, const float* dout, const float* a_k,
                           const float* w, const float* mu, const float* log_std, int S, int rows,
                           int A, cudaStream_t stream) {
  check_prior_shape("weighted_nll_backward", rows, A, S);
  check_prior_given("weighted_nll_backward", "dmu", dmu);
  check_prior_given("weighted_nll_backward", "dlog_std", dlog_std);
  check_prior_given("weighted_nll_backward", "dout", dout);
  const int64_t n = int64_t{rows} * A;
  LAUNCH(weighted_nll_backward_kernel, grid_stride_blocks(n, kThreads), kThreads, 0, stream, dmu,
         dlog_std, dout, a_k, w, mu, log_std, n, S, rows, A);
}

void exp_forward(float* y, const float* x, int64_t n, cudaStream_t stream) {
  POMPC_REQUIRE(n >= 0, "exp_forward: n (%lld) must be >= 0", static_cast<long long>(n));
  LAUNCH(exp_forward_kernel, grid_stride_blocks(n, kThreads), kThreads, 0, stream, y, x, n);
}

void scale_gate(float* out, const float* scale, float threshold, cudaStream_t stream) {
  LAUNCH(scale_gate_kernel, 1, 1, 0, stream, out, scale, threshold);
}

}  // namespace cuda
}  // namespace pompc
