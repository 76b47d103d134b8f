// kernels/optim.cu: Adam, global gradient-norm clipping and Polyak averaging.
//
// adam_update   one step over one contiguous parameter buffer of n = groups.total() floats.
//   adam_scalars_kernel (1 thread): s.step += 1; s.bias1 = 1 - b1^step; s.bias2 = 1 - b2^step
//   (in double, rounded once, exactly as src/ref/optim.cpp), so the step counter lives in device
//   memory and a captured graph advances it on every replay.
//   adam_kernel (grid-stride, 256 threads): i in group g:
//     m = m + (1-b1)(g_i - m)       v = b2 v + (1-b2) g_i^2
//     p -= lr_g / bias1 * m / (sqrt(v) / sqrt(bias2) + eps)          (PyTorch's Adam)
//   overwrites param, m, v, s. Memory-bound: 20 bytes read + 12 written per parameter.
// clip_grad_norm  norm = ||grad||_2; grad *= min(1, max_norm / (norm + 1e-6))
//   sumsq_partial_kernel: kNormPartials blocks, each a grid-stride sum of squares in double,
//   reduced in the block -> scratch[block]; norm_final_kernel: one block sums the partials in a
//   fixed order -> *norm (deterministic for a given n); scale_by_clip_kernel reads *norm on the
//   device. Overwrites grad, *norm, scratch.
// polyak  target += tau (online - target). Overwrites target.
//
// Test: build/test_emu -ts=ops -tc='*optim*' (parity with src/ref/optim.cpp at n = 1, 33, 1025,
// 5.2M). Bench: build/bench -ts=bench -tc='*optim*'.
#include "common.cuh"
#include "launchers.h"
#include "reduce.cuh"

namespace pompc {
namespace {

constexpr unsigned kThreads = 256;
__global__ void adam_scalars_kernel(AdamScalars* s, float beta1, float beta2) {
  const uint32_t step = s->step + 1;
  s->step = step;
  s->bias1 = static_cast<float>(1.0 - pow(static_cast<double>(beta1), static_cast<double>(step)));
  s->bias2 = static_cast<float>(1.0 - pow(static_cast<double>(beta2), static_cast<double>(step)));
}

__global__ void adam_kernel(AdamSettings cfg, AdamGroups groups, float* __restrict__ param,
                            const float* __restrict__ grad, float* __restrict__ m,
                            float* __restrict__ v, const AdamScalars* __restrict__ s) {
  const size_t n = groups.end[groups.count - 1];
  const float bias1 = s->bias1, sqrt_bias2 = sqrtf(s->bias2);
  int g = 0;
  POMPC_GRID_STRIDE(i, n) {
    while (static_cast<size_t>(i) >= groups.end[g]) ++g;  // i only grows, so g only moves forward
    const float gi = grad[i];
    const float mi = m[i] + (1.0f - cfg.beta1) * (gi - m[i]);
    const float vi = cfg.beta2 * v[i] + (1.0f - cfg.beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    param[i] -= (groups.lr[g] / bias1) * mi / (sqrtf(vi) / sqrt_bias2 + cfg.eps);
  }
}

__global__ void sumsq_partial_kernel(const float* __restrict__ x, size_t n,
                                     double* __restrict__ partial) {
  __shared__ double scratch[32];
  double acc = 0;
  POMPC_GRID_STRIDE(i, n) acc += static_cast<double>(x[i]) * x[i];
  acc = block_reduce_sum(acc, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void norm_final_kernel(const double* __restrict__ partial, unsigned count,
                                  float* __restrict__ norm) {
  __shared__ double scratch[32];
  double acc = 0;
  for (unsigned i = threadIdx.x; i < count; i += blockDim.x) acc += partial[i];
  acc = block_reduce_sum(acc, scratch);
  if (threadIdx.x == 0) *norm = static_cast<float>(sqrt(acc));
}

__global__ void scale_by_clip_kernel(float* __restrict__ grad, size_t n, float max_norm,
                                     const float* __restrict__ norm) {
  const float scale = fminf(1.0f, max_norm / (*norm + 1e-6f));
  POMPC_GRID_STRIDE(i, n) grad[i] *= scale;
}

__global__ void polyak_kernel(float* __restrict__ target, const float* __restrict__ online,
                              size_t n, float tau) {
  POMPC_GRID_STRIDE(i, n) target[i] += tau * (online[i] - target[i]);
}

}  // namespace

namespace cuda {

void adam_update(const AdamSettings& cfg, const AdamGroups& groups, float* param,
                 const float* grad, float* m, float* v, AdamScalars* s, cudaStream_t stream) {
  POMPC_REQUIRE(groups.count > 0, "adam_update: no parameter groups");
  LAUNCH(adam_scalars_kernel, 1, 1, 0, stream, s, cfg.beta1, cfg.beta2);
  LAUNCH(adam_kernel, grid_stride_blocks(groups.total()), kThreads, 0, stream, cfg, groups, param, grad,
         m, v, s);
}

void global_norm(const float* x, size_t n, float* norm, double* scratch, cudaStream_t stream) {
  const unsigned parts = n == 0 ? 1 : (ceil_div(n, kThreads) < kNormPartials ? ceil_div(n, kThreads)
                                                                            : kNormPartials);
  LAUNCH(sumsq_partial_kernel, parts, kThreads, 0, stream, x, n, scratch);
  LAUNCH(norm_final_kernel, 1, kThreads, 0, stream, scratch, parts, norm);
}

void clip_grad_norm(float* grad, size_t n, float max_norm, float* norm, double* scratch,
                    cudaStream_t stream) {
  global_norm(grad, n, norm, scratch, stream);
  LAUNCH(scale_by_clip_kernel, grid_stride_blocks(n), kThreads, 0, stream, grad, n, max_norm, norm);
}

void polyak(float* target, const float* online, size_t n, float tau, cudaStream_t stream) {
  LAUNCH(polyak_kernel, grid_stride_blocks(n), kThreads, 0, stream, target, online, n, tau);
}

}  // namespace cuda
}  // namespace pompc
