// kernels/reduce.cuh: warp and block reductions shared by the kernels.
//
// block_reduce_sum(v, scratch): every thread passes its value; thread 0 receives the block's sum
// (other threads get partial sums). scratch is __shared__ T[32] owned by the caller. Needs
// blockDim.x a multiple of 32 (every launcher here uses 256) and every thread of the block to
// call it (it contains __syncthreads). The summation order is fixed by the block shape, so the
// result is deterministic run to run.
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
