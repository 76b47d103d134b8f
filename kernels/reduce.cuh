// kernels/reduce.cuh: warp and block reductions shared by the kernels.
//
// block_reduce_sum(v, scratch): every thread passes its value; thread 0 receives the block's sum
// (other threads get partial sums). scratch is __shared__ T[32] owned by the caller. Needs
// blockDim.x a multiple of 32 (every launcher here uses 256) and every thread of the block to
// call it (it contains __syncthreads). The summation order is fixed by the block shape, so the
// result is deterministic run to run.
//
// row_sum<N>(v, scratch) with row_block(n): per-row sums for blocks of rows x threads, one thread
// per element of a row (below).
#pragma once

#include "common.cuh"

namespace pompc {

template <typename T>
__device__ __forceinline__ T warp_reduce_sum(T v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

template <typename T>
__device__ __forceinline__ T block_reduce_sum(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warps = blockDim.x >> 5;
  v = warp_reduce_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : T(0);
  if (warp == 0) v = warp_reduce_sum(v);
  __syncthreads();  // scratch may be reused by the caller right after
  return v;
}

// ---- per-row sums in blocks of rows x threads ---------------------------------------------------
// The shape for ops that give one thread to each element (r, j) of rows of n elements and then
// need per-row sums (kernels/policy.cu, kernels/prior.cu): blockDim = (tx, rows), tx =
// min(n, 256) threads per row (for n > 256 a thread loops over j = x, x + 256, ...), rows =
// max(1, 256 / tx) rows per block, ceil(R / rows) blocks.
struct RowBlock {
  unsigned tx, rows;
};
inline RowBlock row_block(int n) {
  const unsigned tx = n < 256 ? static_cast<unsigned>(n) : 256u;
  return {tx, tx < 256u ? 256u / tx : 1u};
}
// Floats of scratch row_sum needs for N sums in a block of that shape: N rows pow2(tx) (< 2 tx).
constexpr int kRowSumScratch = 2 * 256;

// row_sum<N>(v, scratch): each thread passes N values; every thread of a block row (the
// blockDim.x threads of one threadIdx.y) gets back that row's N sums. A tree over P =
// pow2 >= blockDim.x slots (zero padded) in shared memory: a fixed order set by the block
// shape, so results are deterministic; log2(P) steps. scratch: __shared__ float[N *
// kRowSumScratch]; every thread of the block must call it (it contains __syncthreads), and
// scratch may be reused right after it returns.
template <int N>
__device__ __forceinline__ void row_sum(float (&v)[N], float* scratch) {
  const unsigned x = threadIdx.x, tx = blockDim.x;
  const unsigned P = tx > 1 ? 1u << (32 - __clz(static_cast<int>(tx - 1))) : 1u;
  const unsigned stride = blockDim.y * P;  // between the N sums
  float* row = scratch + threadIdx.y * P;
  for (int k = 0; k < N; ++k) {
    row[k * stride + x] = v[k];
    if (x + tx < P) row[k * stride + x + tx] = 0.0f;
  }
  __syncthreads();
  for (unsigned h = P >> 1; h > 0; h >>= 1) {
    if (x < h)
      for (int k = 0; k < N; ++k) row[k * stride + x] += row[k * stride + x + h];
    __syncthreads();
  }
  for (int k = 0; k < N; ++k) v[k] = row[k * stride];
  __syncthreads();  // scratch may be reused by the caller right after
}

// Sum / max over the 32 lanes of a full warp, returned to every lane (butterfly shuffles).
__device__ __forceinline__ float warp_allreduce_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_allreduce_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

}  // namespace pompc
