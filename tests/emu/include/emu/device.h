// tests/emu/include/emu/device.h: the CUDA kernel language for the host emulation.
//
// Part of the CUDA host emulation (run book: tests/emu/include/cuda_runtime.h; the scheduler that
// gives these functions their meaning: tests/emu/scheduler.cpp). Everything a kernel in
// kernels/*.cu may use besides plain C++:
//   qualifiers   __global__ __device__ __host__ __forceinline__ __launch_bounds__(...)
//                __grid_constant__ (all empty or `inline`), __shared__ (= static thread_local,
//                see the shared-memory rule in the run book), __constant__ (a plain global)
//   builtins     threadIdx blockIdx (uint3), blockDim gridDim (dim3), warpSize (32)
//   block        __syncthreads, __syncthreads_count/_and/_or, __threadfence(_block/_system)
//   warp         __shfl_sync, __shfl_up_sync, __shfl_down_sync, __shfl_xor_sync (int, unsigned,
//                long, unsigned long, long long, unsigned long long, float, double; width
//                defaults to 32), __ballot_sync, __any_sync, __all_sync, __activemask,
//                __syncwarp, __reduce_{add,min,max}_sync (int, unsigned),
//                __reduce_{and,or,xor}_sync (unsigned), __match_any_sync, __match_all_sync
//   atomics      atomicAdd (int, unsigned, unsigned long long, float, double), atomicSub (int,
//                unsigned), atomicMin/atomicMax (int, unsigned, long long, unsigned long long),
//                atomicExch (int, unsigned, unsigned long long, float), atomicCAS (int,
//                unsigned, unsigned long long, unsigned short), atomicAnd/Or/Xor (int, unsigned,
//                unsigned long long), atomicInc/atomicDec (unsigned)
//   intrinsics   __expf __exp10f __logf __log2f __log10f __powf __sinf __cosf __tanf __sincosf
//                __fdividef fdividef __frcp_rn __fsqrt_rn __frsqrt_rn __fdiv_rn __fadd_rn
//                __fsub_rn __fmul_rn __fmaf_rn __saturatef rsqrtf rsqrt normcdff normcdf
//                erfinvf erfcinvf sinpif cospif sincospif, bit casts (__float_as_uint and
//                friends), conversions (__float2int_rn and friends), __popc(ll) __clz(ll)
//                __ffs(ll) __brev(ll) __umulhi __mulhi __umul64hi __mul64hi __funnelshift_l/_r
//                __byte_perm, min/max overloads, __ldg/__ldcg/__ldcs/__stcg/__stcs, clock64,
//                __nanosleep, __trap. The rest of the maths (expf, fmaxf, ...) is <cmath>'s.
// Intrinsics compute the exact C library result: __expf is as accurate as expf here, so a
// tolerance that relies on the GPU's fast-math error must be checked on the GPU too.
#pragma once

#include <atomic>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <thread>
// CUDA's maths functions are global overloads (exp(float), isnan, ...); libstdc++'s <math.h>
// wrapper brings std's float/double overloads and classification functions into the global
// namespace the same way.
#include <math.h>

#include "emu/types.h"

// ---- qualifiers ---------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __grid_constant__
#define __constant__
// One OS thread runs one block at a time, and all of that block's fibers, so a per-OS-thread
// variable is exactly a per-block variable (run book: "shared memory").
#define __shared__ static thread_local

inline constexpr int warpSize = 32;

namespace emu::detail {

// The current block's builtins and the current CUDA thread's threadIdx; set by the scheduler
// before any kernel code of that block or thread runs (tests/emu/scheduler.cpp).
struct BlockBuiltins {
  uint3 block_idx, block_dim, grid_dim;
};
extern __thread BlockBuiltins tls_block;
extern __thread const uint3* tls_thread_idx;

enum class SyncKind : int { Plain, Count, And, Or };
int sync_block(SyncKind kind, int predicate, const char* file, int line);

enum class WarpOp : int {
  Shfl,
  ShflUp,
  ShflDown,
  ShflXor,
  Ballot,
  Any,
  All,
  SyncWarp,
  ReduceAddU,
  ReduceAddS,
  ReduceMinU,
  ReduceMinS,
  ReduceMaxU,
  ReduceMaxS,
  ReduceAnd,
  ReduceOr,
  ReduceXor,
  MatchAny,
  MatchAll
};
// Rendezvous of the lanes in `mask` of the calling thread's warp at one collective; returns the
// calling lane's result (raw bits). `arg` is srcLane / delta / laneMask for shuffles. For
// MatchAll, *pred receives the predicate.
unsigned long long warp_op(WarpOp op, unsigned mask, unsigned long long value, int arg, int width,
                           const char* file, int line, int* pred = nullptr);
unsigned active_mask();
[[noreturn]] void trap(const char* file, int line);

template <class T>
inline unsigned long long to_bits(T v) {
  static_assert(sizeof(T) <= 8);
  unsigned long long b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}
template <class T>
inline T from_bits(unsigned long long b) {
  T v;
  std::memcpy(&v, &b, sizeof(T));
  return v;
}

// Atomic read-modify-write through a compare-and-swap loop (relaxed, as CUDA's atomics are).
template <class T, class F>
inline T atomic_update(T* address, F f) {
  T old = __atomic_load_n(address, __ATOMIC_RELAXED);
  while (!__atomic_compare_exchange_n(address, &old, f(old), true, __ATOMIC_RELAXED,
                                      __ATOMIC_RELAXED)) {
  }
  return old;
}
template <class T, class Bits, class F>
inline T atomic_update_float(T* address, F f) {
  static_assert(sizeof(T) == sizeof(Bits));
  Bits* p = reinterpret_cast<Bits*>(address);
  Bits old = __atomic_load_n(p, __ATOMIC_RELAXED);
  for (;;) {
    const Bits next = to_bits(f(from_bits<T>(old)));
    if (__atomic_compare_exchange_n(p, &old, next, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
      return from_bits<T>(old);
  }
}

}  // namespace emu::detail

#define threadIdx (*::emu::detail::tls_thread_idx)
#define blockIdx (static_cast<const uint3&>(::emu::detail::tls_block.block_idx))
#define blockDim (::dim3(::emu::detail::tls_block.block_dim))
#define gridDim (::dim3(::emu::detail::tls_block.grid_dim))

// ---- block synchronisation ----------------------------------------------------------------------
// The hidden file/line defaults name the call site in divergence reports.
inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::emu::detail::sync_block(::emu::detail::SyncKind::Plain, 0, file, line);
}
inline int __syncthreads_count(int predicate, const char* file = __builtin_FILE(),
                               int line = __builtin_LINE()) {
  return ::emu::detail::sync_block(::emu::detail::SyncKind::Count, predicate, file, line);
}
inline int __syncthreads_and(int predicate, const char* file = __builtin_FILE(),
                             int line = __builtin_LINE()) {
  return ::emu::detail::sync_block(::emu::detail::SyncKind::And, predicate, file, line);
}
inline int __syncthreads_or(int predicate, const char* file = __builtin_FILE(),
                            int line = __builtin_LINE()) {
  return ::emu::detail::sync_block(::emu::detail::SyncKind::Or, predicate, file, line);
}
inline void __threadfence() {
  std::atomic_thread_fence(std::memory_order_seq_cst);
}
inline void __threadfence_block() {
  std::atomic_thread_fence(std::memory_order_seq_cst);
}
inline void __threadfence_system() {
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

// ---- warp collectives ---------------------------------------------------------------------------
#define EMU_SHFL(T)                                                                                \
  inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = warpSize,                    \
                       const char* file = __builtin_FILE(), int line = __builtin_LINE()) {         \
    return ::emu::detail::from_bits<T>(::emu::detail::warp_op(::emu::detail::WarpOp::Shfl, mask,   \
                                                              ::emu::detail::to_bits(var),         \
                                                              srcLane, width, file, line));        \
  }                                                                                                \
  inline T __shfl_up_sync(unsigned mask, T var, unsigned int delta, int width = warpSize,          \
                          const char* file = __builtin_FILE(), int line = __builtin_LINE()) {      \
    return ::emu::detail::from_bits<T>(                                                            \
        ::emu::detail::warp_op(::emu::detail::WarpOp::ShflUp, mask, ::emu::detail::to_bits(var),   \
                               static_cast<int>(delta > 64 ? 64 : delta), width, file, line));     \
  }                                                                                                \
  inline T __shfl_down_sync(unsigned mask, T var, unsigned int delta, int width = warpSize,        \
                            const char* file = __builtin_FILE(), int line = __builtin_LINE()) {    \
    return ::emu::detail::from_bits<T>(                                                            \
        ::emu::detail::warp_op(::emu::detail::WarpOp::ShflDown, mask, ::emu::detail::to_bits(var), \
                               static_cast<int>(delta > 64 ? 64 : delta), width, file, line));     \
  }                                                                                                \
  inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = warpSize,               \
                           const char* file = __builtin_FILE(), int line = __builtin_LINE()) {     \
    return ::emu::detail::from_bits<T>(::emu::detail::warp_op(::emu::detail::WarpOp::ShflXor,      \
                                                              mask, ::emu::detail::to_bits(var),   \
                                                              laneMask, width, file, line));       \
  }
EMU_SHFL(int)
EMU_SHFL(unsigned int)
EMU_SHFL(long)
EMU_SHFL(unsigned long)
EMU_SHFL(long long)
EMU_SHFL(unsigned long long)
EMU_SHFL(float)
EMU_SHFL(double)
#undef EMU_SHFL

inline unsigned __ballot_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
  return static_cast<unsigned>(::emu::detail::warp_op(::emu::detail::WarpOp::Ballot, mask,
                                                      predicate != 0, 0, 32, file, line));
}
inline int __any_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
  return static_cast<int>(
      ::emu::detail::warp_op(::emu::detail::WarpOp::Any, mask, predicate != 0, 0, 32, file, line));
}
inline int __all_sync(unsigned mask, int predicate, const char* file = __builtin_FILE(),
                      int line = __builtin_LINE()) {
  return static_cast<int>(
      ::emu::detail::warp_op(::emu::detail::WarpOp::All, mask, predicate != 0, 0, 32, file, line));
}
inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
  ::emu::detail::warp_op(::emu::detail::WarpOp::SyncWarp, mask, 0, 0, 32, file, line);
}
// The lanes of the warp that exist and have not exited (the emulation has no notion of a lane
// being inside or outside the current branch).
inline unsigned __activemask() {
  return ::emu::detail::active_mask();
}

#define EMU_REDUCE(name, T, op)                                                             \
  inline T name(unsigned mask, T value, const char* file = __builtin_FILE(),                \
                int line = __builtin_LINE()) {                                              \
    return static_cast<T>(::emu::detail::warp_op(                                           \
        ::emu::detail::WarpOp::op, mask, static_cast<unsigned>(value), 0, 32, file, line)); \
  }
EMU_REDUCE(__reduce_add_sync, unsigned, ReduceAddU)
EMU_REDUCE(__reduce_add_sync, int, ReduceAddS)
EMU_REDUCE(__reduce_min_sync, unsigned, ReduceMinU)
EMU_REDUCE(__reduce_min_sync, int, ReduceMinS)
EMU_REDUCE(__reduce_max_sync, unsigned, ReduceMaxU)
EMU_REDUCE(__reduce_max_sync, int, ReduceMaxS)
EMU_REDUCE(__reduce_and_sync, unsigned, ReduceAnd)
EMU_REDUCE(__reduce_or_sync, unsigned, ReduceOr)
EMU_REDUCE(__reduce_xor_sync, unsigned, ReduceXor)
#undef EMU_REDUCE

#define EMU_MATCH(T)                                                                               \
  inline unsigned __match_any_sync(unsigned mask, T value, const char* file = __builtin_FILE(),    \
                                   int line = __builtin_LINE()) {                                  \
    return static_cast<unsigned>(::emu::detail::warp_op(                                           \
        ::emu::detail::WarpOp::MatchAny, mask, ::emu::detail::to_bits(value), 0, 32, file, line)); \
  }                                                                                                \
  inline unsigned __match_all_sync(unsigned mask, T value, int* pred,                              \
                                   const char* file = __builtin_FILE(),                            \
                                   int line = __builtin_LINE()) {                                  \
    return static_cast<unsigned>(::emu::detail::warp_op(::emu::detail::WarpOp::MatchAll, mask,     \
                                                        ::emu::detail::to_bits(value), 0, 32,      \
                                                        file, line, pred));                        \
  }
EMU_MATCH(int)
EMU_MATCH(unsigned int)
EMU_MATCH(long)
EMU_MATCH(unsigned long)
EMU_MATCH(long long)
EMU_MATCH(unsigned long long)
EMU_MATCH(float)
EMU_MATCH(double)
#undef EMU_MATCH

// ---- atomics ------------------------------------------------------------------------------------
#define EMU_ATOMIC_INT(T)                                                                         \
  inline T atomicAdd(T* address, T val) {                                                         \
    return __atomic_fetch_add(address, val, __ATOMIC_RELAXED);                                    \
  }                                                                                               \
  inline T atomicExch(T* address, T val) {                                                        \
    return __atomic_exchange_n(address, val, __ATOMIC_RELAXED);                                   \
  }                                                                                               \
  inline T atomicCAS(T* address, T compare, T val) {                                              \
    __atomic_compare_exchange_n(address, &compare, val, false, __ATOMIC_RELAXED,                  \
                                __ATOMIC_RELAXED);                                                \
    return compare;                                                                               \
  }                                                                                               \
  inline T atomicAnd(T* address, T val) {                                                         \
    return __atomic_fetch_and(address, val, __ATOMIC_RELAXED);                                    \
  }                                                                                               \
  inline T atomicOr(T* address, T val) {                                                          \
    return __atomic_fetch_or(address, val, __ATOMIC_RELAXED);                                     \
  }                                                                                               \
  inline T atomicXor(T* address, T val) {                                                         \
    return __atomic_fetch_xor(address, val, __ATOMIC_RELAXED);                                    \
  }                                                                                               \
  inline T atomicMin(T* address, T val) {                                                         \
    return ::emu::detail::atomic_update(address, [val](T old) { return old < val ? old : val; }); \
  }                                                                                               \
  inline T atomicMax(T* address, T val) {                                                         \
    return ::emu::detail::atomic_update(address, [val](T old) { return old > val ? old : val; }); \
  }
EMU_ATOMIC_INT(int)
EMU_ATOMIC_INT(unsigned int)
EMU_ATOMIC_INT(unsigned long long)
#undef EMU_ATOMIC_INT
inline int atomicSub(int* address, int val) {
  return __atomic_fetch_sub(address, val, __ATOMIC_RELAXED);
}
inline unsigned atomicSub(unsigned* address, unsigned val) {
  return __atomic_fetch_sub(address, val, __ATOMIC_RELAXED);
}
inline long long atomicMin(long long* address, long long val) {
  return ::emu::detail::atomic_update(address,
                                      [val](long long old) { return old < val ? old : val; });
}
inline long long atomicMax(long long* address, long long val) {
  return ::emu::detail::atomic_update(address,
                                      [val](long long old) { return old > val ? old : val; });
}
inline unsigned short atomicCAS(unsigned short* address, unsigned short compare,
                                unsigned short val) {
  __atomic_compare_exchange_n(address, &compare, val, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  return compare;
}
inline unsigned atomicInc(unsigned* address, unsigned val) {
  return ::emu::detail::atomic_update(address,
                                      [val](unsigned old) { return old >= val ? 0u : old + 1; });
}
inline unsigned atomicDec(unsigned* address, unsigned val) {
  return ::emu::detail::atomic_update(
      address, [val](unsigned old) { return (old == 0 || old > val) ? val : old - 1; });
}
inline float atomicAdd(float* address, float val) {
  return ::emu::detail::atomic_update_float<float, uint32_t>(
      address, [val](float old) { return old + val; });
}
inline double atomicAdd(double* address, double val) {
  return ::emu::detail::atomic_update_float<double, uint64_t>(
      address, [val](double old) { return old + val; });
}
inline float atomicExch(float* address, float val) {
  return ::emu::detail::from_bits<float>(
      __atomic_exchange_n(reinterpret_cast<uint32_t*>(address),
                          static_cast<uint32_t>(::emu::detail::to_bits(val)), __ATOMIC_RELAXED));
}

// ---- maths intrinsics ---------------------------------------------------------------------------
inline float __expf(float x) {
  return expf(x);
}
inline float __exp10f(float x) {
  return powf(10.0f, x);
}
inline float __logf(float x) {
  return logf(x);
}
inline float __log2f(float x) {
  return log2f(x);
}
inline float __log10f(float x) {
  return log10f(x);
}
inline float __powf(float x, float y) {
  return powf(x, y);
}
inline float __sinf(float x) {
  return sinf(x);
}
inline float __cosf(float x) {
  return cosf(x);
}
inline float __tanf(float x) {
  return tanf(x);
}
inline void __sincosf(float x, float* s, float* c) {
  *s = sinf(x);
  *c = cosf(x);
}
inline float __fdividef(float x, float y) {
  return x / y;
}
inline float fdividef(float x, float y) {
  return x / y;
}
inline float __frcp_rn(float x) {
  return 1.0f / x;
}
inline float __fsqrt_rn(float x) {
  return sqrtf(x);
}
inline float __frsqrt_rn(float x) {
  return 1.0f / sqrtf(x);
}
inline float __fdiv_rn(float x, float y) {
  return x / y;
}
inline float __fadd_rn(float x, float y) {
  return x + y;
}
inline float __fsub_rn(float x, float y) {
  return x - y;
}
inline float __fmul_rn(float x, float y) {
  return x * y;
}
inline float __fmaf_rn(float x, float y, float z) {
  return fmaf(x, y, z);
}
inline float __saturatef(float x) {
  return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f;
}
inline float rsqrtf(float x) {
  return 1.0f / sqrtf(x);
}
inline double rsqrt(double x) {
  return 1.0 / sqrt(x);
}
inline float normcdff(float x) {
  return 0.5f * erfcf(-x * 0.70710678118654752f);
}
inline double normcdf(double x) {
  return 0.5 * erfc(-x * 0.70710678118654752);
}
inline double erfinv(double y) {
  if (!(y > -1.0 && y < 1.0)) return y == 1.0 ? INFINITY : (y == -1.0 ? -INFINITY : NAN);
  // Giles' single-precision approximation as a start, then Newton steps on erf in double.
  const double w = -log((1.0 - y) * (1.0 + y));
  double x = w < 5.0 ? y * (1.50140941 + (w - 2.5) * (0.246640727 + (w - 2.5) * -0.00417768164))
                     : y * (2.83297682 + (sqrt(w) - 3.0) * 1.00167406);
  for (int i = 0; i < 4; ++i) x -= (erf(x) - y) / (1.1283791670955126 * exp(-x * x));
  return x;
}
inline float erfinvf(float y) {
  return static_cast<float>(erfinv(y));
}
inline float erfcinvf(float y) {
  return static_cast<float>(erfinv(1.0 - static_cast<double>(y)));
}
inline float sinpif(float x) {
  return static_cast<float>(sin(3.14159265358979323846 * x));
}
inline float cospif(float x) {
  return static_cast<float>(cos(3.14159265358979323846 * x));
}
inline void sincospif(float x, float* s, float* c) {
  *s = sinpif(x);
  *c = cospif(x);
}

// ---- bit casts, conversions, integer intrinsics -------------------------------------------------
inline unsigned __float_as_uint(float x) {
  return ::emu::detail::from_bits<unsigned>(::emu::detail::to_bits(x));
}
inline float __uint_as_float(unsigned x) {
  return ::emu::detail::from_bits<float>(x);
}
inline int __float_as_int(float x) {
  return ::emu::detail::from_bits<int>(::emu::detail::to_bits(x));
}
inline float __int_as_float(int x) {
  return ::emu::detail::from_bits<float>(static_cast<unsigned>(x));
}
inline long long __double_as_longlong(double x) {
  return ::emu::detail::from_bits<long long>(::emu::detail::to_bits(x));
}
inline double __longlong_as_double(long long x) {
  return ::emu::detail::from_bits<double>(static_cast<unsigned long long>(x));
}
namespace emu::detail {
// float -> integer with CUDA's saturating semantics (NaN -> 0).
template <class I>
inline I saturate_to(double v) {
  if (v != v) return 0;
  if (v <= static_cast<double>(std::numeric_limits<I>::min())) return std::numeric_limits<I>::min();
  if (v >= static_cast<double>(std::numeric_limits<I>::max())) return std::numeric_limits<I>::max();
  return static_cast<I>(v);
}
}  // namespace emu::detail
inline int __float2int_rn(float x) {
  return ::emu::detail::saturate_to<int>(nearbyint(x));
}
inline int __float2int_rz(float x) {
  return ::emu::detail::saturate_to<int>(trunc(x));
}
inline int __float2int_rd(float x) {
  return ::emu::detail::saturate_to<int>(floor(x));
}
inline int __float2int_ru(float x) {
  return ::emu::detail::saturate_to<int>(ceil(x));
}
inline unsigned __float2uint_rn(float x) {
  return ::emu::detail::saturate_to<unsigned>(nearbyint(x));
}
inline unsigned __float2uint_rz(float x) {
  return ::emu::detail::saturate_to<unsigned>(trunc(x));
}
inline long long __float2ll_rn(float x) {
  return ::emu::detail::saturate_to<long long>(nearbyint(x));
}
inline long long __float2ll_rz(float x) {
  return ::emu::detail::saturate_to<long long>(trunc(x));
}
inline int __double2int_rn(double x) {
  return ::emu::detail::saturate_to<int>(nearbyint(x));
}
inline float __int2float_rn(int x) {
  return static_cast<float>(x);
}
inline float __uint2float_rn(unsigned x) {
  return static_cast<float>(x);
}
inline float __ll2float_rn(long long x) {
  return static_cast<float>(x);
}
inline float __double2float_rn(double x) {
  return static_cast<float>(x);
}

inline int __popc(unsigned x) {
  return __builtin_popcount(x);
}
inline int __popcll(unsigned long long x) {
  return __builtin_popcountll(x);
}
inline int __clz(int x) {
  return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x));
}
inline int __clzll(long long x) {
  return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x));
}
inline int __ffs(int x) {
  return __builtin_ffs(x);
}
inline int __ffsll(long long x) {
  return __builtin_ffsll(x);
}
inline unsigned __brev(unsigned x) {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}
inline unsigned long long __brevll(unsigned long long x) {
  return (static_cast<unsigned long long>(__brev(static_cast<unsigned>(x))) << 32) |
         __brev(static_cast<unsigned>(x >> 32));
}
inline unsigned __umulhi(unsigned x, unsigned y) {
  return static_cast<unsigned>((static_cast<unsigned long long>(x) * y) >> 32);
}
inline int __mulhi(int x, int y) {
  return static_cast<int>((static_cast<long long>(x) * y) >> 32);
}
inline unsigned long long __umul64hi(unsigned long long x, unsigned long long y) {
  return static_cast<unsigned long long>((static_cast<unsigned __int128>(x) * y) >> 64);
}
inline long long __mul64hi(long long x, long long y) {
  return static_cast<long long>((static_cast<__int128>(x) * y) >> 64);
}
inline unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned shift) {
  const unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
  return static_cast<unsigned>((v << (shift & 31)) >> 32);
}
inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned shift) {
  const unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
  return static_cast<unsigned>(v >> (shift & 31));
}
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
  const unsigned long long v = (static_cast<unsigned long long>(y) << 32) | x;
  unsigned r = 0;
  for (int i = 0; i < 4; ++i)
    r |= static_cast<unsigned>((v >> (8 * ((s >> (4 * i)) & 7))) & 0xff) << (8 * i);
  return r;
}

// CUDA's global min/max overloads (device and host).
inline int min(int a, int b) {
  return a < b ? a : b;
}
inline int max(int a, int b) {
  return a > b ? a : b;
}
inline unsigned min(unsigned a, unsigned b) {
  return a < b ? a : b;
}
inline unsigned max(unsigned a, unsigned b) {
  return a > b ? a : b;
}
inline unsigned min(int a, unsigned b) {
  return min(static_cast<unsigned>(a), b);
}
inline unsigned max(int a, unsigned b) {
  return max(static_cast<unsigned>(a), b);
}
inline unsigned min(unsigned a, int b) {
  return min(a, static_cast<unsigned>(b));
}
inline unsigned max(unsigned a, int b) {
  return max(a, static_cast<unsigned>(b));
}
inline long long min(long long a, long long b) {
  return a < b ? a : b;
}
inline long long max(long long a, long long b) {
  return a > b ? a : b;
}
inline unsigned long long min(unsigned long long a, unsigned long long b) {
  return a < b ? a : b;
}
inline unsigned long long max(unsigned long long a, unsigned long long b) {
  return a > b ? a : b;
}
inline float min(float a, float b) {
  return fminf(a, b);
}
inline float max(float a, float b) {
  return fmaxf(a, b);
}
inline double min(double a, double b) {
  return fmin(a, b);
}
inline double max(double a, double b) {
  return fmax(a, b);
}
inline double min(float a, double b) {
  return fmin(a, b);
}
inline double max(float a, double b) {
  return fmax(a, b);
}
inline double min(double a, float b) {
  return fmin(a, b);
}
inline double max(double a, float b) {
  return fmax(a, b);
}

// Cache-hinted loads and stores: plain accesses here.
template <class T>
inline T __ldg(const T* p) {
  return *p;
}
template <class T>
inline T __ldcg(const T* p) {
  return *p;
}
template <class T>
inline T __ldcs(const T* p) {
  return *p;
}
template <class T>
inline void __stcg(T* p, T v) {
  *p = v;
}
template <class T>
inline void __stcs(T* p, T v) {
  *p = v;
}

inline long long clock64() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
inline void __nanosleep(unsigned ns) {
  std::this_thread::sleep_for(std::chrono::nanoseconds(ns));
}
// Fails the launch with cudaErrorLaunchFailure, naming the call site.
[[noreturn]] inline void __trap(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::emu::detail::trap(file, line);
}
