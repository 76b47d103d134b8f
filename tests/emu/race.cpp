// tests/emu/race.cpp: the entry points GCC's -fsanitize=thread instrumentation calls, for
// build/test_race only (the run book of the race detector: tests/emu/internal.h).
//
// test_race compiles kernels/*.cu (and tests/emu/race_test.cpp) with -fsanitize=thread but does
// not link ThreadSanitizer's runtime: these definitions take its place and hand every load and
// store of kernel code to the emulation's race detector (emu::detail::race_access), which looks
// at accesses made by emulated CUDA threads only. This file itself is compiled without the
// instrumentation. Atomics are performed here (sequentially consistent) and recorded as atomic
// accesses.
#include <cstdint>
#include <cstdlib>

#include "internal.h"

namespace {
using emu::detail::race_access;
inline void rd(const volatile void* p, size_t n) {
  race_access(const_cast<const void*>(p), n, false, false);
}
inline void wr(const volatile void* p, size_t n) {
  race_access(const_cast<const void*>(p), n, true, false);
}
inline void at(const volatile void* p, size_t n, bool write) {
  race_access(const_cast<const void*>(p), n, write, true);
}
}  // namespace

extern "C" {

void __tsan_init() {
  uint64_t seed = 1;
  if (const char* s = std::getenv("POMPC_EMU_SCHEDULE_SEED")) seed = std::strtoull(s, nullptr, 10);
  emu::detail::race_enable(seed);
}

void __tsan_func_entry(void*) {}
void __tsan_func_exit() {}
void __tsan_vptr_update(void**, void*) {}
void __tsan_vptr_read(void**) {}
void __tsan_ignore_thread_begin() {}
void __tsan_ignore_thread_end() {}

#define POMPC_TSAN_RW(N)                                                         \
  void __tsan_read##N(void* p) { rd(p, N); }                                     \
  void __tsan_write##N(void* p) { wr(p, N); }                                    \
  void __tsan_unaligned_read##N(const void* p) { rd(p, N); }                     \
  void __tsan_unaligned_write##N(void* p) { wr(p, N); }                          \
  void __tsan_volatile_read##N(void* p) { rd(p, N); }                            \
  void __tsan_volatile_write##N(void* p) { wr(p, N); }                           \
  void __tsan_read##N##_pc(void* p, void*) { rd(p, N); }                         \
  void __tsan_write##N##_pc(void* p, void*) { wr(p, N); }
POMPC_TSAN_RW(1)
POMPC_TSAN_RW(2)
POMPC_TSAN_RW(4)
POMPC_TSAN_RW(8)
POMPC_TSAN_RW(16)
#undef POMPC_TSAN_RW

void __tsan_read_range(void* p, unsigned long n) { rd(p, n); }
void __tsan_write_range(void* p, unsigned long n) { wr(p, n); }

// Atomics (the memory-order argument is ignored: everything is sequentially consistent here).
#define POMPC_TSAN_ATOMIC(N, T)                                                              \
  T __tsan_atomic##N##_load(const volatile T* a, int) {                                     \
    at(a, sizeof(T), false);                                                                 \
    return __atomic_load_n(a, __ATOMIC_SEQ_CST);                                             \
  }                                                                                          \
  void __tsan_atomic##N##_store(volatile T* a, T v, int) {                                  \
    at(a, sizeof(T), true);                                                                  \
    __atomic_store_n(a, v, __ATOMIC_SEQ_CST);                                                \
  }                                                                                          \
  T __tsan_atomic##N##_exchange(volatile T* a, T v, int) {                                  \
    at(a, sizeof(T), true);                                                                  \
    return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST);                                      \
  }                                                                                          \
  T __tsan_atomic##N##_fetch_add(volatile T* a, T v, int) {                                 \
    at(a, sizeof(T), true);                                                                  \
    return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST);                                       \
  }                                                                                          \
  T __tsan_atomic##N##_fetch_sub(volatile T* a, T v, int) {                                 \
    at(a, sizeof(T), true);                                                                  \
    return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST);                                       \
  }                                                                                          \
  T __tsan_atomic##N##_fetch_and(volatile T* a, T v, int) {                                 \
    at(a, sizeof(T), true);                                                                  \
    return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST);                                       \
  }                                                                                          \
  T __tsan_atomic##N##_fetch_or(volatile T* a, T v, int) {                                  \
    at(a, sizeof(T), true);                                                                  \
    return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST);                                        \
  }                                                                                          \
  T __tsan_atomic##N##_fetch_xor(volatile T* a, T v, int) {                                 \
    at(a, sizeof(T), true);                                                                  \
    return __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST);                                       \
  }                                                                                          \
  int __tsan_atomic##N##_compare_exchange_strong(volatile T* a, T* c, T v, int, int) {      \
    at(a, sizeof(T), true);                                                                  \
    return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);  \
  }                                                                                          \
  int __tsan_atomic##N##_compare_exchange_weak(volatile T* a, T* c, T v, int, int) {        \
    at(a, sizeof(T), true);                                                                  \
    return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);  \
  }                                                                                          \
  T __tsan_atomic##N##_compare_exchange_val(volatile T* a, T c, T v, int, int) {            \
    at(a, sizeof(T), true);                                                                  \
    __atomic_compare_exchange_n(a, &c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);        \
    return c;                                                                                \
  }
POMPC_TSAN_ATOMIC(8, int8_t)
POMPC_TSAN_ATOMIC(16, int16_t)
POMPC_TSAN_ATOMIC(32, int32_t)
POMPC_TSAN_ATOMIC(64, int64_t)
#undef POMPC_TSAN_ATOMIC

void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
void __tsan_atomic_signal_fence(int) {}

}  // extern "C"
