// kernels/loss.cu: the glue ops of the world model's losses: fill, scale_add, discounted_sum,
// weighted_sum, pair_select (min / avg of two randomly picked Q heads), gather_pair (the two picked
// heads' parameters copied out, so that only they run).
//
// Maths: exactly src/ref/loss.h (same names, same pick_pair from Philox, src/op_types.h).
//   fill: x = value.  scale_add: y = beta y + (alpha x) / *divisor (beta == 0: y not read).
//   discounted_sum: out_i = sum_t w_t x[t, i] from +0 in t order: the fusion of fill(out, 0) and
//   T scale_adds (alpha w_t, no divisor, beta 1) with the same roundings (__fmul_rn, __fadd_rn:
//   no contraction into an fma), bit-for-bit the reference; one launch instead of T + 1. The
//   planner forms its returns this way inside mppi_elites_update (kernels/mppi.cu).
//   weighted_sum: *out = beta *out + alpha sum_i w_i x_i / *divisor, summed in double.
//   pair_select: out_r = min / avg of heads (i, j) = pick_pair(Qn, seed, offset); backward
//   routes dout_r to the head min took (a tie: head i), or half to each for avg. gather_pair:
//   heads = pick_pair_sorted(Qn, seed, offset), each tensor's two head slices copied to dst.
// Shapes: x, y, w [n]; discounted_sum x [T, n], out [n] (T = w.count <= TermWeights::kMax);
//   q, dq [Qn, rows]; out, dout [rows]; divisor and *out single device scalars; gather_pair's
//   PairGather tensors (src/op_types.h).
// Launch shapes: grid-stride elementwise kernels (256 threads); weighted_sum is one 256-thread
//   block (n is a loss's row count, B H Qn at most a few thousand) with a fixed summation order:
//   deterministic run to run. gather_pair: grid (blocks over the largest tensor's per-head size,
//   tensors, 2 heads) of 256 threads, one copy per element. Forward outputs and gather_pair's
//   overwritten, pair_select_backward ACCUMULATES.
//
// Test: build/test_emu -ts=ops -tc='loss*'.
#include <algorithm>

#include "common.cuh"
#include "launchers.h"
#include "reduce.cuh"

namespace pompc {
namespace {

__global__ void fill_kernel(float* __restrict__ x, int64_t n, float value) {
  POMPC_GRID_STRIDE(i, n) x[i] = value;
}

__global__ void scale_add_kernel(float* __restrict__ y, const float* __restrict__ x, int64_t n,
                                 float alpha, const float* __restrict__ divisor, float beta) {
  const float d = divisor ? *divisor : 1.0f;
  POMPC_GRID_STRIDE(i, n) {
    const float v = alpha * x[i] / d;
    y[i] = beta == 0.0f ? v : beta * y[i] + v;
  }
}

__global__ void discounted_sum_kernel(float* __restrict__ out, const float* __restrict__ x,
                                      int64_t n, TermWeights w) {
  POMPC_GRID_STRIDE(i, n) out[i] = discounted_sum_at(w, x, n, i);
}

__global__ void weighted_sum_kernel(float* __restrict__ out, const float* __restrict__ x,
                                    const float* __restrict__ w, int64_t n, float alpha,
                                    const float* __restrict__ divisor, float beta) {
  __shared__ double scratch[32];
  double s = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    s += static_cast<double>(x[i]) * (w ? static_cast<double>(w[i]) : 1.0);
  s = block_reduce_sum(s, scratch);
  if (threadIdx.x == 0) {
    const double d = divisor ? static_cast<double>(*divisor) : 1.0;
    double r = static_cast<double>(alpha) * s / d;
    if (beta != 0.0f) r += static_cast<double>(beta) * static_cast<double>(*out);
    *out = static_cast<float>(r);
  }
}

__device__ __forceinline__ int min_side(float a, float b) {
  return (a <= b || isnan(a)) ? 0 : 1;
}

__global__ void pair_select_forward_kernel(float* __restrict__ out, const float* __restrict__ q,
                                           int Qn, int rows, PairMode mode, uint64_t seed,
                                           PhiloxOffset offset_at) {
  const uint64_t offset = offset_at.resolve();  // device memory: read at run time
  int hi = 0, hj = 0;
  pick_pair(Qn, seed, offset, &hi, &hj);
  const float* qi = q + static_cast<int64_t>(hi) * rows;
  const float* qj = q + static_cast<int64_t>(hj) * rows;
  POMPC_GRID_STRIDE(r, rows) {
    if (mode == PairMode::avg)
      out[r] = (qi[r] + qj[r]) / 2.0f;
    else
      out[r] = min_side(qi[r], qj[r]) == 0 ? qi[r] : qj[r];
  }
}

__global__ void pair_select_backward_kernel(float* __restrict__ dq, const float* __restrict__ dout,
                                            const float* __restrict__ q, int Qn, int rows,
                                            PairMode mode, uint64_t seed, PhiloxOffset offset_at) {
  const uint64_t offset = offset_at.resolve();  // device memory: read at run time
  int hi = 0, hj = 0;
  pick_pair(Qn, seed, offset, &hi, &hj);
  float* di = dq + static_cast<int64_t>(hi) * rows;
  float* dj = dq + static_cast<int64_t>(hj) * rows;
  const float* qi = q + static_cast<int64_t>(hi) * rows;
  const float* qj = q + static_cast<int64_t>(hj) * rows;
  POMPC_GRID_STRIDE(r, rows) {
    if (mode == PairMode::avg) {
      di[r] += dout[r] / 2.0f;
      dj[r] += dout[r] / 2.0f;
    } else if (min_side(qi[r], qj[r]) == 0) {
      di[r] += dout[r];
    } else {
      dj[r] += dout[r];
    }
  }
}

// Grid (x, tensors, 2): block (x, t, k) copies, grid-striding over x, tensor t of head k of the
// pair (the lower head for k = 0); thread 0 of block (0, 0, 0) also writes `heads`.
__global__ void gather_pair_kernel(float* __restrict__ dst, int32_t* __restrict__ heads,
                                   const float* __restrict__ src, PairGather g, uint64_t seed,
                                   PhiloxOffset offset_at) {
  const uint64_t offset = offset_at.resolve();  // device memory: read at run time
  int lo = 0, hi = 0;
  pick_pair_sorted(g.Qn, seed, offset, &lo, &hi);
  const int t = static_cast<int>(blockIdx.y), k = static_cast<int>(blockIdx.z);
  if (blockIdx.x == 0 && t == 0 && k == 0 && threadIdx.x == 0) {
    heads[0] = lo;
    heads[1] = hi;
  }
  const int64_t n = g.per_head[t];
  float* __restrict__ d = dst + g.dst[t] + k * n;
  const float* __restrict__ s = src + g.src[t] + (k == 0 ? lo : hi) * n;
  POMPC_GRID_STRIDE(e, n) d[e] = s[e];
}

void check_n(const char* who, int64_t n) {
  POMPC_REQUIRE(n >= 0, "%s: n (%lld) must be >= 0", who, static_cast<long long>(n));
}

}  // namespace

namespace cuda {

#ifndef POMPC_CUDA_ARCHS
#define POMPC_CUDA_ARCHS "sm_90 (emulated)"
#endif

bool kernels_loadable(std::string* why) {
  cudaFuncAttributes attr{};
  const cudaError_t e = cudaFuncGetAttributes(&attr, fill_kernel);
  if (e == cudaSuccess) return true;
  (void)cudaGetLastError();  // not sticky: leave no error behind for the next check
  int dev = 0;
  cudaDeviceProp prop{};
  if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess) {
    (void)cudaGetLastError();
    *why = strfmt("the kernels cannot be loaded: %s", cudaGetErrorString(e));
    return false;
  }
  *why = strfmt(
      "this build has no kernels the GPU (%s, sm_%d%d) can run (%s; built for %s): rebuild with "
      "`make clean && make GPU_ARCH=sm_%d%d`",
      prop.name, prop.major, prop.minor, cudaGetErrorString(e), POMPC_CUDA_ARCHS, prop.major,
      prop.minor);
  return false;
}

void fill(float* x, int64_t n, float value, cudaStream_t stream) {
  check_n("fill", n);
  LAUNCH(fill_kernel, grid_stride_blocks(n), 256, 0, stream, x, n, value);
}

void scale_add(float* y, const float* x, int64_t n, float alpha, const float* divisor, float beta,
               cudaStream_t stream) {
  check_n("scale_add", n);
  LAUNCH(scale_add_kernel, grid_stride_blocks(n), 256, 0, stream, y, x, n, alpha, divisor, beta);
}

void discounted_sum(float* out, const float* x, int64_t n, const TermWeights& w,
                    cudaStream_t stream) {
  check_n("discounted_sum", n);
  check_term_weights("discounted_sum", w);
  LAUNCH(discounted_sum_kernel, grid_stride_blocks(n), 256, 0, stream, out, x, n, w);
}

void weighted_sum(float* out, const float* x, const float* w, int64_t n, float alpha,
                  const float* divisor, float beta, cudaStream_t stream) {
  check_n("weighted_sum", n);
  LAUNCH(weighted_sum_kernel, 1, 256, 0, stream, out, x, w, n, alpha, divisor, beta);
}

void pair_select_forward(float* out, const float* q, int Qn, int rows, PairMode mode, uint64_t seed,
                         PhiloxOffset offset, cudaStream_t stream) {
  check_pair("pair_select_forward", Qn, rows, mode);
  LAUNCH(pair_select_forward_kernel, grid_stride_blocks(rows), 256, 0, stream, out, q, Qn, rows,
         mode, seed, offset);
}

void pair_select_backward(float* dq, const float* dout, const float* q, int Qn, int rows,
                          PairMode mode, uint64_t seed, PhiloxOffset offset, cudaStream_t stream) {
  check_pair("pair_select_backward", Qn, rows, mode);
  LAUNCH(pair_select_backward_kernel, grid_stride_blocks(rows), 256, 0, stream, dq, dout, q, Qn,
         rows, mode, seed, offset);
}

void gather_pair(float* dst, int32_t* heads, const float* src, const PairGather& g, uint64_t seed,
                 PhiloxOffset offset, cudaStream_t stream) {
  check_pair_gather("gather_pair", g);
  int64_t largest = 0;
  for (int t = 0; t < g.tensors; ++t) largest = std::max(largest, g.per_head[t]);
  const dim3 grid(grid_stride_blocks(static_cast<size_t>(std::max<int64_t>(largest, 1))),
                  static_cast<unsigned>(g.tensors), 2);
  LAUNCH(gather_pair_kernel, grid, 256, 0, stream, dst, heads, src, g, seed, offset);
}

}  // namespace cuda
}  // namespace pompc
