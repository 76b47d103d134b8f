// kernels/common.cuh: what every kernel file includes.
//
//   CUDA_CHECK(expr), CUBLAS_CHECK(expr)  throw pompc::Error naming file:line and the call
//   LAUNCH(kernel, grid, block, smem, stream, args...)
//                                         the one launch helper: no `<<< >>>` anywhere else
//   dynamic_smem<T>()                     the block's dynamic shared memory
//   philox.cuh                            counter-based RNG, bit-identical on host and device
//
// The same file compiles two ways: nvcc (real GPU), and g++ against tests/emu/include, where the
// host emulation runs the kernels on the CPU (POMPC_EMU is defined).
#pragma once

#include <cstdint>

#include "common.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "nvtx.h"

#include "op_types.h"  // TermWeights
#include "philox.cuh"

#define CUDA_CHECK(expr)                                                                      \
  do {                                                                                        \
    const cudaError_t pompc_err_ = (expr);                                                    \
    if (pompc_err_ != cudaSuccess)                                                            \
      throw ::pompc::Error(::pompc::strfmt("%s:%d: %s failed: %s", __FILE__, __LINE__, #expr, \
                                           cudaGetErrorString(pompc_err_)));                  \
  } while (0)

#define CUBLAS_CHECK(expr)                                                                     \
  do {                                                                                         \
    const cublasStatus_t pompc_st_ = (expr);                                                   \
    if (pompc_st_ != CUBLAS_STATUS_SUCCESS)                                                    \
      throw ::pompc::Error(::pompc::strfmt("%s:%d: %s failed: %s", __FILE__, __LINE__, #expr,  \
                                           cublasGetStatusString(pompc_st_)));                 \
  } while (0)

namespace pompc {

#if defined(__CUDACC__) || defined(POMPC_EMU)  // kernel-language parts; host-only .cpp skip them

// The one launch helper. Arguments are converted to the kernel's parameter types here, so what a
// graph capture bakes is exactly what the kernel receives. An empty grid launches nothing (CUDA
// would reject it), which lets launchers pass n = 0 through without special cases.
template <typename... Params, typename... Args>
inline void launch(const char* name, const char* file, int line, void (*kernel)(Params...),
                   dim3 grid, dim3 block, size_t smem, cudaStream_t stream, Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "LAUNCH: wrong number of kernel arguments");
  if (static_cast<uint64_t>(grid.x) * grid.y * grid.z == 0) return;
  NvtxRange range(name);
#ifdef POMPC_EMU
  emu::launch(name, kernel, grid, block, smem, stream, static_cast<Params>(args)...);
#else
  kernel<<<grid, block, smem, stream>>>(static_cast<Params>(args)...);
#endif
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw Error(strfmt("%s:%d: launch of %s<<<(%u,%u,%u), (%u,%u,%u), %zu>>> failed: %s", file,
                       line, name, grid.x, grid.y, grid.z, block.x, block.y, block.z, smem,
                       cudaGetErrorString(err)));
}

// The block's dynamic shared memory (the `smem` bytes of LAUNCH), 16-byte aligned.
#ifdef POMPC_EMU
template <typename T>
inline T* dynamic_smem() {
  return static_cast<T*>(emu::dynamic_shared_memory());
}
#else
template <typename T>
__device__ __forceinline__ T* dynamic_smem() {
  extern __shared__ __align__(16) unsigned char pompc_dynamic_smem[];
  return reinterpret_cast<T*>(pompc_dynamic_smem);
}
#endif

// for (int64_t i ...) over [0, n) with a grid-stride loop: kernels launched with
// grid_stride_blocks(n) blocks cover any n.
#define POMPC_GRID_STRIDE(i, n)                                                        \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;        \
       i < static_cast<int64_t>(n); i += static_cast<int64_t>(gridDim.x) * blockDim.x)

// A row of a layer's output as an op that took the layer's left-out bias reads it: l[k], or
// l[k] + bias[k] with linear_forward's rounding (model::LastBias::leave; two_hot.cu, policy.cu).
struct BiasedRow {
  const float* l;
  const float* bias;  // nullptr: none
  __device__ __forceinline__ float operator[](int64_t k) const {
    return bias ? __fadd_rn(l[k], bias[k]) : l[k];
  }
};

// sum_t w_t x[t * n + i] from +0 in t order, every product and sum rounded on its own (no fma):
// discounted_sum_kernel's element (kernels/loss.cu), and the planner's returns inside
// mppi_elites_update_kernel (kernels/mppi.cu).
__device__ __forceinline__ float discounted_sum_at(const TermWeights& w, const float* x, int64_t n,
                                                   int64_t i) {
  float acc = 0.0f;
  for (int t = 0; t < w.count; ++t) acc = __fadd_rn(acc, __fmul_rn(w.w[t], x[t * n + i]));
  return acc;
}

#endif  // __CUDACC__ || POMPC_EMU

inline unsigned ceil_div(size_t n, unsigned d) { return static_cast<unsigned>((n + d - 1) / d); }

// Blocks for a grid-stride kernel over n elements: one element per thread up to 4096 blocks
// (enough to fill any current GPU), then each thread loops.
inline unsigned grid_stride_blocks(size_t n, unsigned threads = 256) {
  const unsigned b = ceil_div(n, threads);
  return b < 4096u ? b : 4096u;
}

}  // namespace pompc

#define LAUNCH(kernel, grid, block, smem, stream, ...) \
  ::pompc::launch(#kernel, __FILE__, __LINE__, kernel, grid, block, smem, stream, __VA_ARGS__)

