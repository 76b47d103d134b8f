// kernels/basic.cu: small row-wise ops: row copies, concat [z, a] and its split, MSE.
//
// Maths: exactly src/ref/basic.h (same names).
//   copy_rows / repeat_rows: strided row copies and row repetition (no gradients)
//   concat: out[r] = [x1[r], x2[r]]; backward dx1 += dout[:, :n1], dx2 += dout[:, n1:]
//   mse: loss = mean (pred - target)^2 (the consistency loss, n = B Z); dpred += 2 dloss (p - t) /
//   n counter_add: *counter += k on a uint64 (a Philox offset base, kernels/philox.cuh)
// Shapes: x1 [rows, n1], x2 [rows, n2], out [rows, n1 + n2]; pred / target [n].
// mse_forward: kMsePartials blocks of double partial sums, then one block sums them in order
//   (deterministic); *loss is a device scalar. Forward outputs overwritten, gradients ACCUMULATED.
// mse_backward takes dloss as a host float (a loss weight, fixed for a captured graph).
// mse_segments_forward / _backward: the same over T consecutive segments of n (the consistency
//   loss's H rollout steps) in one pair of launches / one launch instead of T: the partial grid
//   gets a y dimension (segment), the final kernel one block per segment, the backward one
//   weight per segment; each segment's numbers are exactly mse_forward's / mse_backward's.
//   Scratch: T kMsePartials doubles.
//
// Test: build/test_emu -ts=ops -tc='*basic*cuda*,*mse_segments*'.
#include <algorithm>

#include "common.cuh"
#include "launchers.h"
#include "reduce.cuh"

namespace pompc {
namespace {

__global__ void copy_rows_kernel(float* __restrict__ dst, int64_t ldd, const float* __restrict__ src,
                                 int64_t lds, int rows, int cols) {
  POMPC_GRID_STRIDE(i, int64_t{rows} * cols) {
    const int64_t r = i / cols, c = i - r * cols;
    dst[r * ldd + c] = src[r * lds + c];
  }
}

__global__ void repeat_rows_kernel(float* __restrict__ dst, int64_t ldd,
                                   const float* __restrict__ src, int rows, int reps, int cols) {
  POMPC_GRID_STRIDE(i, int64_t{rows} * reps * cols) {
    const int64_t c = i % cols, out_row = i / cols, r = out_row / reps;
    dst[out_row * ldd + c] = src[r * cols + c];
  }
}

__global__ void concat_forward_kernel(float* __restrict__ out, const float* __restrict__ x1,
                                      const float* __restrict__ x2, int rows, int n1, int n2) {
  const int n = n1 + n2;
  POMPC_GRID_STRIDE(i, static_cast<int64_t>(rows) * n) {
    const int64_t r = i / n;
    const int c = static_cast<int>(i - r * n);
    out[i] = c < n1 ? x1[r * n1 + c] : x2[r * n2 + (c - n1)];
  }
}

__global__ void concat_backward_kernel(float* __restrict__ dx1, float* __restrict__ dx2,
                                       const float* __restrict__ dout, int rows, int n1, int n2) {
  const int n = n1 + n2;
  POMPC_GRID_STRIDE(i, static_cast<int64_t>(rows) * n) {
    const int64_t r = i / n;
    const int c = static_cast<int>(i - r * n);
    if (c < n1) {
      if (dx1) dx1[r * n1 + c] += dout[i];
    } else if (dx2) {
      dx2[r * n2 + (c - n1)] += dout[i];
    }
  }
}

// Segment blockIdx.y of n elements (pred, target + y n): partial[y * gridDim.x + blockIdx.x].
__global__ void mse_partial_kernel(double* __restrict__ partial, const float* __restrict__ pred,
                                   const float* __restrict__ target, int64_t n) {
  __shared__ double scratch[32];
  pred += static_cast<int64_t>(blockIdx.y) * n;
  target += static_cast<int64_t>(blockIdx.y) * n;
  partial += static_cast<int64_t>(blockIdx.y) * gridDim.x;
  double acc = 0;
  POMPC_GRID_STRIDE(i, n) {
    const double d = static_cast<double>(pred[i]) - static_cast<double>(target[i]);
    acc += d * d;
  }
  acc = block_reduce_sum(acc, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// Block t: loss[t] from segment t's `count` partial sums, in order.
__global__ void mse_final_kernel(float* __restrict__ loss, const double* __restrict__ partial,
                                 unsigned count, int64_t n) {
  __shared__ double scratch[32];
  partial += static_cast<int64_t>(blockIdx.x) * count;
  double acc = 0;
  for (unsigned i = threadIdx.x; i < count; i += blockDim.x) acc += partial[i];
  acc = block_reduce_sum(acc, scratch);
  if (threadIdx.x == 0) loss[blockIdx.x] = static_cast<float>(acc / static_cast<double>(n));
}

// Segments t < k.count of n elements: dpred += k_t (pred - target) in segment t.
__global__ void mse_backward_kernel(float* __restrict__ dpred, const float* __restrict__ pred,
                                    const float* __restrict__ target, TermWeights k, int64_t n) {
  POMPC_GRID_STRIDE(i, k.count * n) dpred[i] += k.w[i / n] * (pred[i] - target[i]);
}

// One thread: the world model's Philox update counter (PhiloxOffset base) advances in stream order.
__global__ void counter_add_kernel(uint64_t* counter, uint64_t k) {
  *counter += k;
}

}  // namespace

namespace cuda {

void copy_rows(float* dst, int64_t ldd, const float* src, int64_t lds, int rows, int cols,
               cudaStream_t stream) {
  POMPC_REQUIRE(rows >= 0 && cols >= 0 && ldd >= cols && lds >= cols,
                "copy_rows: rows (%d), cols (%d) must be >= 0 and the strides >= cols", rows, cols);
  LAUNCH(copy_rows_kernel, grid_stride_blocks(size_t(rows) * cols), 256, 0, stream, dst, ldd, src,
         lds, rows, cols);
}

void repeat_rows(float* dst, int64_t ldd, const float* src, int rows, int reps, int cols,
                 cudaStream_t stream) {
  POMPC_REQUIRE(rows >= 0 && reps >= 0 && cols >= 0 && ldd >= cols,
                "repeat_rows: rows (%d), reps (%d), cols (%d) must be >= 0 and the stride (%lld) "
                ">= cols",
                rows, reps, cols, static_cast<long long>(ldd));
  LAUNCH(repeat_rows_kernel, grid_stride_blocks(size_t(rows) * reps * cols), 256, 0, stream, dst,
         ldd, src, rows, reps, cols);
}

void concat_forward(float* out, const float* x1, const float* x2, int rows, int n1, int n2,
                    cudaStream_t stream) {
  POMPC_REQUIRE(rows >= 0 && n1 >= 0 && n2 >= 0, "concat_forward: rows, n1, n2 must be >= 0");
  LAUNCH(concat_forward_kernel, grid_stride_blocks(int64_t{rows} * (n1 + n2)), 256, 0, stream, out, x1, x2,
         rows, n1, n2);
}

void concat_backward(float* dx1, float* dx2, const float* dout, int rows, int n1, int n2,
                     cudaStream_t stream) {
  POMPC_REQUIRE(rows >= 0 && n1 >= 0 && n2 >= 0, "concat_backward: rows, n1, n2 must be >= 0");
  LAUNCH(concat_backward_kernel, grid_stride_blocks(int64_t{rows} * (n1 + n2)), 256, 0, stream, dx1, dx2,
         dout, rows, n1, n2);
}

void mse_segments_forward(float* loss, const float* pred, const float* target, int T, int64_t n,
                          double* scratch, cudaStream_t stream) {
  POMPC_REQUIRE(n >= 1, "mse_forward: n (%lld) must be >= 1", static_cast<long long>(n));
  POMPC_REQUIRE(T >= 1 && T <= 65535, "mse_forward: segments (%d) must be in [1, 65535]", T);
  const unsigned parts = std::min(grid_stride_blocks(n), kMsePartials);
  LAUNCH(mse_partial_kernel, dim3(parts, static_cast<unsigned>(T)), 256, 0, stream, scratch, pred,
         target, n);
  LAUNCH(mse_final_kernel, static_cast<unsigned>(T), 256, 0, stream, loss, scratch, parts, n);
}

void mse_segments_backward(float* dpred, const float* pred, const float* target,
                           const TermWeights& dloss, int64_t n, cudaStream_t stream) {
  POMPC_REQUIRE(n >= 1, "mse_backward: n (%lld) must be >= 1", static_cast<long long>(n));
  check_term_weights("mse_backward", dloss);
  TermWeights k = dloss;  // per segment 2 dloss_t / n, rounded to float as the reference does
  for (int t = 0; t < k.count; ++t)
    k.w[t] = static_cast<float>(2.0 * dloss.w[t] / static_cast<double>(n));
  LAUNCH(mse_backward_kernel, grid_stride_blocks(size_t(k.count) * n), 256, 0, stream, dpred, pred,
         target, k, n);
}

void mse_forward(float* loss, const float* pred, const float* target, int64_t n, double* scratch,
                 cudaStream_t stream) {
  mse_segments_forward(loss, pred, target, 1, n, scratch, stream);
}

void mse_backward(float* dpred, const float* pred, const float* target, float dloss, int64_t n,
                  cudaStream_t stream) {
  mse_segments_backward(dpred, pred, target, TermWeights{1, {dloss}}, n, stream);
}

void counter_add(uint64_t* counter, uint64_t k, cudaStream_t stream) {
  LAUNCH(counter_add_kernel, 1, 1, 0, stream, counter, k);
}

}  // namespace cuda
}  // namespace pompc
