// kernels/linear.cu: GEMM (cuBLAS) and the Linear layers built on it.
//
// Maths: exactly src/ref/gemm.h and src/ref/linear.h (same names, same shapes, row-major).
//   gemm:   C[m,n] = alpha op(A)[m,k] op(B)[k,n] + beta C. cuBLAS is column-major, so a row-major
//           product is issued as the column-major C^T = op(B)^T op(A)^T: operands swapped, m and n
//           swapped, leading dimensions unchanged.
//   linear_forward:   out[B,out] = inp[B,in] W[out,in]^T + bias  (GEMM with beta 0, then the bias
//           added to the finished product, as the reference does: one rounding, the same bits as
//           the ops that take a layer's bias from it)
//   linear_backward:  dinp += dout W;  dW += dout^T inp;  dbias += column sums of dout
//   linear_ensemble_*: the same per head q < Qn through strided-batched GEMMs; a shared input
//           (the Q heads' first layer) has stride 0 and its gradient sums the heads in order.
//   Gradients are ACCUMULATED (+=); forward outputs overwritten.
// Precision: the cuBLAS handle's math mode decides (TF32 tensor cores when the backend's `tf32`
//   setting is on, the default on a GPU; off in parity tests, which then hold cuBLAS to fp32).
//
// Kernels: add_bias_rows_kernel (out += bias, every head of an ensemble in one launch: 256
//   threads, grid-stride);
//   add_column_sums_kernel (the bias gradients dbias[g, c] += sum_r dout[g, r, c]; accumulated):
//   grid (ceil(cols / 32), groups) of 32 columns x 32 row lanes (1024 threads). Row lane l sums
//   rows l, l + 32, ... of its column in order (coalesced: a warp reads 32 consecutive floats of
//   one row), then one warp per column adds the 32 lane sums with a fixed shuffle tree.
//   Deterministic run to run, no atomics, no scratch.
//   At the 5M sizes (cols = M = 512; rows = B (H + 1) = 1024 for the encoder, 768 per Q head,
//   groups 1 or Qn = 5), before -> after: 2 (x 5) blocks x 256 threads with 1024 (768) rows in
//   sequence each  ->  16 (x 5) blocks x 1024 threads with 32 (24) loads each, 8 in flight
//   (8 loads issued before their adds), + a 5-step shuffle tree. Pure memory work (2 MB at 1024 x
//   512): 16 x 1024 threads x 8 loads = 512 KB in flight, ~4 round trips to L2/HBM, a few us
//   (estimated, not measured); a grid split over row chunks would add a second launch and a scratch
//   buffer to save about one of them, so there is none.
// Test: build/test_emu -ts=ops -tc='*linear*cuda*'; races: build/test_race -ts=race,ops
//   -tc='*linear*'.
#include "common.cuh"
#include "launchers.h"
#include "reduce.cuh"

namespace pompc {
namespace {

constexpr int kSumCols = 32, kSumLanes = 32;  // add_column_sums_kernel's block: 1024 threads
constexpr int kSumThreads = kSumCols * kSumLanes;

// out[g, r, c] += bias[g, c] for `groups` consecutive [rows, cols] blocks (every head's bias in
// one launch).
__global__ void add_bias_rows_kernel(float* __restrict__ out, const float* __restrict__ bias,
                                     int groups, int64_t rows, int cols) {
  const int64_t per_group = rows * cols;
  POMPC_GRID_STRIDE(i, groups * per_group) {
    out[i] = __fadd_rn(out[i], bias[i / per_group * cols + i % cols]);
  }
}

// dst[g, c] += sum_r src[g, r, c] for groups g = blockIdx.y (src [groups, rows, cols]). Block of
// kSumCols columns x kSumLanes row lanes (a warp is one row lane: 32 consecutive floats of a
// row): lane l sums rows l, l + 32, ... in order, then warp w adds the 32 lane sums of column w
// with a fixed shuffle tree (deterministic; the transpose goes through padded shared memory).
__global__ void __launch_bounds__(kSumThreads)
    add_column_sums_kernel(float* __restrict__ dst, const float* __restrict__ src, int rows,
                           int cols) {
  __shared__ float part[kSumLanes][kSumCols + 1];  // +1: the column-wise reads hit 32 banks
  const int tx = threadIdx.x, lane = threadIdx.y, c0 = blockIdx.x * kSumCols;
  const float* s = src + static_cast<int64_t>(blockIdx.y) * rows * cols + c0 + tx;
  float acc = 0.0f;
  if (c0 + tx < cols) {
    int r = lane;
    for (; r + 7 * kSumLanes < rows; r += 8 * kSumLanes) {  // 8 loads in flight, then 8 adds
      float v[8];
      for (int k = 0; k < 8; ++k) v[k] = s[static_cast<int64_t>(r + k * kSumLanes) * cols];
      for (int k = 0; k < 8; ++k) acc += v[k];
    }
    for (; r < rows; r += kSumLanes) acc += s[static_cast<int64_t>(r) * cols];
  }
  part[lane][tx] = acc;
  __syncthreads();
  // Warp `lane` now reduces column c0 + lane; its thread tx holds row lane tx's sum.
  const float v = warp_reduce_sum(part[tx][lane]);
  if (tx == 0 && c0 + lane < cols) dst[static_cast<int64_t>(blockIdx.y) * cols + c0 + lane] += v;
}

void check_sizes(const char* who, int B, int in, int out_features, int Qn = 1) {
  POMPC_REQUIRE(B >= 0, "%s: row count B (%d) must be >= 0", who, B);
  POMPC_REQUIRE(in >= 1 && out_features >= 1, "%s: in (%d) and out_features (%d) must be >= 1",
                who, in, out_features);
  POMPC_REQUIRE(Qn >= 1, "%s: Qn (%d) must be >= 1", who, Qn);
}

void add_bias(float* out, const float* bias, int groups, int64_t rows, int cols,
              cudaStream_t stream) {
  LAUNCH(add_bias_rows_kernel, grid_stride_blocks(size_t(groups) * rows * cols), 256, 0, stream,
         out, bias, groups, rows, cols);
}

}  // namespace

namespace cuda {

void gemm(cublasHandle_t h, bool transa, bool transb, int m, int n, int k, float alpha,
          const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  if (m == 0 || n == 0) return;
  CUBLAS_CHECK(cublasSgemm(h, transb ? CUBLAS_OP_T : CUBLAS_OP_N, transa ? CUBLAS_OP_T : CUBLAS_OP_N,
                           n, m, k, &alpha, B, ldb, A, lda, &beta, C, ldc));
}

void gemm_strided_batched(cublasHandle_t h, bool transa, bool transb, int m, int n, int k,
                          float alpha, const float* A, int lda, int64_t strideA, const float* B,
                          int ldb, int64_t strideB, float beta, float* C, int ldc,
                          int64_t strideC, int batch) {
  if (m == 0 || n == 0 || batch == 0) return;
  CUBLAS_CHECK(cublasSgemmStridedBatched(
      h, transb ? CUBLAS_OP_T : CUBLAS_OP_N, transa ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha,
      B, ldb, strideB, A, lda, strideA, &beta, C, ldc, strideC, batch));
}

void add_column_sums(float* dst, const float* src, int rows, int cols, int groups,
                     cudaStream_t stream) {
  POMPC_REQUIRE(
      rows >= 0 && cols >= 1 && groups >= 0 && groups <= 65535,
      "add_column_sums: rows (%d) must be >= 0, cols (%d) >= 1, groups (%d) in [0, 65535]", rows,
      cols, groups);
  LAUNCH(add_column_sums_kernel, dim3(ceil_div(cols, kSumCols), static_cast<unsigned>(groups)),
         dim3(kSumCols, kSumLanes), 0, stream, dst, src, rows, cols);
}

void linear_forward(cublasHandle_t h, float* out, const float* inp, const float* weight,
                    const float* bias, int B, int in, int out_features, int64_t ld_inp,
                    cudaStream_t stream) {
  check_sizes("linear_forward", B, in, out_features);
  const int lda = resolve_row_stride("linear_forward", "input", ld_inp, in);
  gemm(h, false, true, B, out_features, in, 1.0f, inp, lda, weight, in, 0.0f, out, out_features);
  if (bias) add_bias(out, bias, 1, B, out_features, stream);
}

void linear_backward(cublasHandle_t h, float* dinp, float* dweight, float* dbias,
                     const float* dout, const float* inp, const float* weight, int B, int in,
                     int out_features, cudaStream_t stream) {
  check_sizes("linear_backward", B, in, out_features);
  if (dinp)
    gemm(h, false, false, B, in, out_features, 1.0f, dout, out_features, weight, in, 1.0f, dinp,
         in);
  if (dweight)
    gemm(h, true, false, out_features, in, B, 1.0f, dout, out_features, inp, in, 1.0f, dweight,
         in);
  if (dbias) add_column_sums(dbias, dout, B, out_features, 1, stream);
}

void linear_ensemble_forward(cublasHandle_t h, float* out, const float* inp, const float* weight,
                             const float* bias, int Qn, int B, int in, int out_features,
                             bool shared_input, cudaStream_t stream) {
  check_sizes("linear_ensemble_forward", B, in, out_features, Qn);
  const int64_t out_stride = static_cast<int64_t>(B) * out_features;
  gemm_strided_batched(h, false, true, B, out_features, in, 1.0f, inp, in,
                       shared_input ? 0 : static_cast<int64_t>(B) * in, weight, in,
                       static_cast<int64_t>(out_features) * in, 0.0f, out, out_features, out_stride,
                       Qn);
  if (bias) add_bias(out, bias, Qn, B, out_features, stream);  // every head at once
}

void linear_ensemble_backward(cublasHandle_t h, float* dinp, float* dweight, float* dbias,
                              const float* dout, const float* inp, const float* weight, int Qn,
                              int B, int in, int out_features, bool shared_input,
                              cudaStream_t stream) {
  check_sizes("linear_ensemble_backward", B, in, out_features, Qn);
  const int64_t dout_stride = static_cast<int64_t>(B) * out_features;
  const int64_t inp_stride = shared_input ? 0 : static_cast<int64_t>(B) * in;
  const int64_t w_stride = static_cast<int64_t>(out_features) * in;
  if (dinp) {
    if (shared_input) {  // every head adds into the same dinp: one product per head, in order
      for (int q = 0; q < Qn; ++q)
        gemm(h, false, false, B, in, out_features, 1.0f, dout + q * dout_stride, out_features,
             weight + q * w_stride, in, 1.0f, dinp, in);
    } else {
      gemm_strided_batched(h, false, false, B, in, out_features, 1.0f, dout, out_features,
                           dout_stride, weight, in, w_stride, 1.0f, dinp, in, inp_stride, Qn);
    }
  }
  if (dweight)
    gemm_strided_batched(h, true, false, out_features, in, B, 1.0f, dout, out_features,
                         dout_stride, inp, in, inp_stride, 1.0f, dweight, in, w_stride, Qn);
  if (dbias) add_column_sums(dbias, dout, B, out_features, Qn, stream);
}

}  // namespace cuda
}  // namespace pompc
