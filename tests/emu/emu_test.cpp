// tests/emu/emu_test.cpp: tests of the CUDA host emulation itself (suite "emu", test_emu only).
//
// Run: build/test_emu -ts=emu
// What is checked (run book of the emulation: tests/emu/include/cuda_runtime.h):
//   block      a 1024-thread shared-memory tree reduction is exact (and timed); a big grid of
//              256-thread blocks with barriers (timed); 2D/3D grids and blocks index correctly
//              and warps are 32 consecutive linear ids; dynamic shared memory via
//              pompc::dynamic_smem (aligned, per block, 0xff-poisoned, 48 KiB limit and opt-in)
//   warp       shuffles (idx/up/down/xor, widths, double), ballot/any/all, reduce, match, full and
//              partial masks, against values computed here
//   atomics    float/int/double adds, a CAS loop and min/max stay exact with many blocks on more
//              than one OS thread
//   streams    events order work across streams, elapsed time >= 0, timing errors
//   graphs     capture bakes kernel scalars but replays on current device data; fork/join; the
//              calls a capture forbids invalidate it; unjoined forks are refused
//   cuBLAS     Sgemm / SgemmStridedBatched at odd shapes and every transpose pair against a triple
//              loop; TF32 mode rounds; bad lda / null handle statuses
//   counters   emu/counters.h on a known sequence: eager launches, GEMMs, copies by direction
//              (pinned vs pageable), memsets, waits, allocations and frees; a capture counts
//              nothing, each replay its launch and nodes (nested graphs too); refused calls
//              count nothing; every field is listed in counter_fields(); the counts by name
//              (kernel_counts, cublas_counts) of eager launches and replayed nodes
//   pinned     a device-to-host cudaMemcpyAsync into pinned memory (eager or a graph node) leaves
//              the destination poisoned until a host wait that covers it (each kind of wait, and
//              the calls that do not wait), a copy into pageable memory lands at once; a host
//              write into a pending destination, or into the pinned source of a copy not yet
//              waited for, is reported by the wait, naming the copy and its call site
//   failures   a __syncthreads not reached by every thread, a lane missing from a collective and
//              a wrong launch configuration make LAUNCH throw with an explanation, and the next
//              launch works; out-of-bounds writes (global and dynamic shared memory) die under
//              AddressSanitizer (death scenarios)
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <emu/counters.h>

#include "../test_util.h"
#include "common.cuh"

namespace {

// ---- helpers ------------------------------------------------------------------------------------
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAsan = true;  // also: the sanitizer runtime symbolises call sites in messages
#else
constexpr bool kAsan = false;
#endif

template <class T>
struct DeviceBuffer {
  T* p = nullptr;
  size_t n = 0;
  explicit DeviceBuffer(size_t count) : n(count) { CUDA_CHECK(cudaMalloc(&p, count * sizeof(T))); }
  DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() { cudaFree(p); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void upload(const std::vector<T>& host) {
    CUDA_CHECK(cudaMemcpy(p, host.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    std::vector<T> host(n);
    CUDA_CHECK(cudaMemcpy(host.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }
};

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Runs f, which must throw pompc::Error; returns its message ("" if it did not throw).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const pompc::Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const char* part) {
  return s.find(part) != std::string::npos;
}

// Pinned host memory the tests below copy to and from; freed with cudaFreeHost.
struct PinnedBuffer {
  float* p = nullptr;
  explicit PinnedBuffer(size_t n) { CUDA_CHECK(cudaMallocHost(&p, n * sizeof(float))); }
  ~PinnedBuffer() { cudaFreeHost(p); }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
};

// True when every byte of [p, p + bytes) is the emulation's poison (0xff: NaN floats).
bool poisoned(const void* p, size_t bytes) {
  const auto* b = static_cast<const unsigned char*>(p);
  return std::all_of(b, b + bytes, [](unsigned char c) { return c == 0xff; });
}

// True when `msg` names one of the bytes of *f as the first changed byte.
bool names_byte_of(const std::string& msg, const float* f) {
  for (size_t i = 0; i < sizeof *f; ++i) {
    char at[64];
    std::snprintf(at, sizeof at, "first changed byte at %p",
                  static_cast<const void*>(reinterpret_cast<const char*>(f) + i));
    if (contains(msg, at)) return true;
  }
  return false;
}

// True when host[i] == i for i < n (the pattern the tests upload).
bool holds_iota(const float* host, int n) {
  for (int i = 0; i < n; ++i)
    if (host[i] != static_cast<float>(i)) return false;
  return true;
}

// ---- kernels ------------------------------------------------------------------------------------
__global__ void tree_reduce_kernel(const float* __restrict__ x, float* __restrict__ out) {
  __shared__ float s[1024];
  const unsigned t = threadIdx.x;
  s[t] = x[blockIdx.x * blockDim.x + t];
  __syncthreads();
  for (unsigned stride = blockDim.x / 2; stride > 0; stride >>= 1) {
    if (t < stride) s[t] += s[t + stride];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = s[0];
}

// Block sum by warp shuffles + one shared-memory stage, plus a grid-wide atomic total.
__global__ void block_sum_kernel(const float* __restrict__ x, float* __restrict__ per_block,
                                 unsigned long long* __restrict__ total) {
  __shared__ float warp_sums[32];
  const unsigned t = threadIdx.x, lane = t & 31, warp = t >> 5;
  float v = x[blockIdx.x * blockDim.x + t];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < blockDim.x / 32 ? warp_sums[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane == 0) {
      per_block[blockIdx.x] = v;
      atomicAdd(total, static_cast<unsigned long long>(v));
    }
  }
}

constexpr int kShuffleOps = 20;
// Each of 64 threads (two warps) writes kShuffleOps results; see the host-side expectations.
__global__ void shuffle_kernel(int* __restrict__ out, double* __restrict__ dout) {
  const int t = static_cast<int>(threadIdx.x), lane = t & 31, warp = t >> 5;
  const int v = 1000 * warp + lane;
  int* o = out + t * kShuffleOps;
  const unsigned full = 0xffffffffu;
  o[0] = __shfl_sync(full, v, 7);
  o[1] = __shfl_sync(full, v, 3, 8);
  o[2] = __shfl_up_sync(full, v, 5);
  o[3] = __shfl_down_sync(full, v, 3);
  o[4] = __shfl_down_sync(full, v, 2, 16);
  o[5] = __shfl_xor_sync(full, v, 1);
  o[6] = __shfl_xor_sync(full, v, 8, 8);
  o[7] = static_cast<int>(__ballot_sync(full, lane % 3 == 0));
  o[8] = __any_sync(full, lane == 17);
  o[9] = __any_sync(full, 0);
  o[10] = __all_sync(full, lane < 32);
  o[11] = __all_sync(full, lane != 5);
  o[12] = __reduce_add_sync(full, lane);
  o[13] = static_cast<int>(__match_any_sync(full, lane / 4));
  o[14] = __reduce_max_sync(full, (lane * 7) % 32 - 10);
  // Partial masks: the two half-warps run different collectives at the same time.
  if (lane < 16) {
    o[15] = __shfl_down_sync(0x0000ffffu, v, 1);
    o[16] = static_cast<int>(__ballot_sync(0x0000ffffu, lane & 1));
  } else {
    o[15] = __shfl_xor_sync(0xffff0000u, v, 1);
    o[16] = static_cast<int>(__ballot_sync(0xffff0000u, lane & 2));
  }
  // A subset of lanes (every fourth) with a sparse mask.
  if (lane % 4 == 0) o[17] = __shfl_sync(0x11111111u, v, 8);
  __syncwarp();
  o[18] = static_cast<int>(__activemask());
  o[19] = __shfl_up_sync(full, static_cast<unsigned>(v), 1, 4);
  dout[t] = __shfl_xor_sync(full, 0.125 + v * 1e-9, 16);
}

__global__ void atomics_kernel(float* fsum, int* isum, double* dsum, unsigned* cas_count, int* imax,
                               int* imin, unsigned* block_ids) {
  const int g = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  atomicAdd(fsum, 1.0f);
  atomicAdd(isum, 1);
  atomicAdd(dsum, 0.5);
  unsigned old = *cas_count, assumed;
  do {
    assumed = old;
    old = atomicCAS(cas_count, assumed, assumed + 1);
  } while (old != assumed);
  atomicMax(imax, (g * 7919) % 100003);
  atomicMin(imin, -((g * 7919) % 100003));
  if (threadIdx.x == 0) block_ids[blockIdx.x] = atomicInc(block_ids + gridDim.x, 0xffffffffu);
}

__global__ void reverse_in_smem_kernel(const float* __restrict__ in, float* __restrict__ out,
                                       unsigned* __restrict__ info) {
  float* s = pompc::dynamic_smem<float>();
  const unsigned t = threadIdx.x, n = blockDim.x, base = blockIdx.x * n;
  if (t == 0) {
    info[2 * blockIdx.x] = static_cast<unsigned>(reinterpret_cast<uintptr_t>(s) % 16);
    info[2 * blockIdx.x + 1] = __float_as_uint(s[n]);  // never written in this block: poison
  }
  __syncthreads();
  s[t] = in[base + t];
  __syncthreads();
  out[base + t] = s[n - 1 - t];
  if (t == 0) s[n] = 1.0f;  // dirty the poison slot: the next block must see it poisoned again
}

__global__ void index_kernel(uint32_t* __restrict__ out) {
  const unsigned bx = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned tl = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned g = bx * (blockDim.x * blockDim.y * blockDim.z) + tl;
  out[4 * g + 0] = threadIdx.x | threadIdx.y << 8 | threadIdx.z << 16;
  out[4 * g + 1] = blockIdx.x | blockIdx.y << 8 | blockIdx.z << 16;
  out[4 * g + 2] = blockDim.x | blockDim.y << 8 | blockDim.z << 16 | gridDim.x << 24;
  // Lane 9 of each warp: warps are 32 consecutive linear ids, x fastest.
  out[4 * g + 3] = __shfl_sync(0xffffffffu, threadIdx.x | threadIdx.y << 8 | threadIdx.z << 16, 9);
}

__global__ void axpb_kernel(const float* __restrict__ x, float* __restrict__ y, int n, float a,
                            float b) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) y[i] = a * x[i] + b;
}

__global__ void add_kernel(float* __restrict__ y, const float* __restrict__ x, int n) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) y[i] += x[i];
}

__global__ void early_exit_barrier_kernel(float* y, int n) {
  const int i = static_cast<int>(threadIdx.x);
  if (i >= n) return;  // the bug: these threads never reach the barrier below
  y[i] = 1.0f;
  __syncthreads();
  y[i] += y[(i + 1) % n];
}

__global__ void barrier_vs_warp_kernel(int* y) {
  if (threadIdx.x < 16) {
    __syncthreads();
  } else {
    y[threadIdx.x] = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x), 0);
  }
}

__global__ void lane_exits_kernel(int* y) {
  const int lane = static_cast<int>(threadIdx.x & 31);
  if (lane == 5) return;
  y[lane] = __shfl_sync(0xffffffffu, lane, 0);
}

__global__ void lane_exits_late_kernel(int* y) {
  const int lane = static_cast<int>(threadIdx.x & 31);
  if (lane < 16) {
    y[lane] = __shfl_sync(0x0000ffffu, lane, 0);
    return;  // exits while lanes 16-31 wait for the full warp below
  }
  y[lane] = __shfl_sync(0xffffffffu, lane, 0);
}

__global__ void syncthreads_count_kernel(int* out) {
  const int c = __syncthreads_count(threadIdx.x % 3 == 0);
  const int a = __syncthreads_and(threadIdx.x < 1000);
  const int o = __syncthreads_or(threadIdx.x == 77);
  if (threadIdx.x == 0) {
    out[0] = c;
    out[1] = a;
    out[2] = o;
  }
}

__global__ void write_one_past_kernel(float* x, int n) {
  if (threadIdx.x == 0) x[n] = 1.0f;
}

__global__ void smem_one_past_kernel(float* out) {
  float* s = pompc::dynamic_smem<float>();
  s[threadIdx.x + 1] = 2.0f;  // one past the end for the last thread
  out[threadIdx.x] = s[threadIdx.x];
}

// ---- death scenarios (run in a child process by the tests below) --------------------------------
POMPC_DEATH_SCENARIO(emu_oob_global_write) {
  float* x = nullptr;
  CUDA_CHECK(cudaMalloc(&x, 100 * sizeof(float)));
  LAUNCH(write_one_past_kernel, dim3(1), dim3(32), 0, nullptr, x, 100);
}

POMPC_DEATH_SCENARIO(emu_oob_dynamic_smem_write) {
  float* out = nullptr;
  CUDA_CHECK(cudaMalloc(&out, 64 * sizeof(float)));
  LAUNCH(smem_one_past_kernel, dim3(1), dim3(64), 64 * sizeof(float), nullptr, out);
}

// Column-major naive product for the cuBLAS tests (double sums).
void naive_gemm(bool ta, bool tb, int m, int n, int k, float alpha, const float* A, int lda,
                const float* B, int ldb, float beta, float* C, int ldc) {
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      double s = 0;
      for (int l = 0; l < k; ++l)
        s += static_cast<double>(ta ? A[l + i * lda] : A[i + l * lda]) *
             (tb ? B[j + l * ldb] : B[l + j * ldb]);
      C[i + j * ldc] = static_cast<float>(alpha * s + (beta == 0 ? 0.0 : beta * C[i + j * ldc]));
    }
}

std::vector<float> pattern(size_t n, unsigned seed) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = static_cast<float>(static_cast<int>((i * 2654435761u + seed * 97u) % 2001u) - 1000) /
           256.0f;
  return v;
}

}  // namespace

TEST_SUITE("emu") {
  TEST_CASE("emu: 1024-thread shared-memory tree reduction is exact") {
    std::vector<float> x(1024);
    double want = 0;
    for (int i = 0; i < 1024; ++i) want += x[i] = static_cast<float>(i % 37) - 11.0f;
    DeviceBuffer<float> dx(x), dout(1);
    auto t0 = std::chrono::steady_clock::now();
    LAUNCH(tree_reduce_kernel, dim3(1), dim3(1024), 0, nullptr, dx.p, dout.p);
    const double first_ms = ms_since(t0);
    CHECK(dout.download()[0] == static_cast<float>(want));
    t0 = std::chrono::steady_clock::now();
    LAUNCH(tree_reduce_kernel, dim3(1), dim3(1024), 0, nullptr, dx.p, dout.p);
    const double warm_ms = ms_since(t0);
    CHECK(dout.download()[0] == static_cast<float>(want));
    MESSAGE("1024-thread reduction (11 barriers): first launch " << first_ms
                                                                 << " ms (maps fiber "
                                                                    "stacks), warm "
                                                                 << warm_ms << " ms");
  }

  TEST_CASE("emu: big grid of 256-thread blocks with barriers, shuffles and atomics") {
    constexpr unsigned kBlocks = 2048, kThreads = 256;
    std::vector<float> x(static_cast<size_t>(kBlocks) * kThreads);
    for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 5);
    DeviceBuffer<float> dx(x), per_block(kBlocks);
    DeviceBuffer<unsigned long long> total(1);
    CUDA_CHECK(cudaMemset(total.p, 0, sizeof(unsigned long long)));
    const auto t0 = std::chrono::steady_clock::now();
    LAUNCH(block_sum_kernel, dim3(kBlocks), dim3(kThreads), 0, nullptr, dx.p, per_block.p, total.p);
    const double ms = ms_since(t0);
    const std::vector<float> got = per_block.download();
    size_t bad = 0;
    unsigned long long want_total = 0;
    for (unsigned b = 0; b < kBlocks; ++b) {
      double s = 0;
      for (unsigned t = 0; t < kThreads; ++t) s += x[b * kThreads + t];
      bad += got[b] != static_cast<float>(s);
      want_total += static_cast<unsigned long long>(s);
    }
    CHECK(bad == 0);
    CHECK(total.download()[0] == want_total);
    CHECK(emu::last_launch_os_threads() == std::min(emu::os_threads(), static_cast<int>(kBlocks)));
    MESSAGE(kBlocks << " blocks x " << kThreads << " threads (1 barrier, 10 shuffle rounds): " << ms
                    << " ms on " << emu::last_launch_os_threads() << " OS threads");
  }

  TEST_CASE("emu: warp shuffles, votes, reductions and matches, full and partial masks") {
    DeviceBuffer<int> out(64 * kShuffleOps);
    DeviceBuffer<double> dout(64);
    CUDA_CHECK(cudaMemset(out.p, 0, out.n * sizeof(int)));
    LAUNCH(shuffle_kernel, dim3(1), dim3(64), 0, nullptr, out.p, dout.p);
    const std::vector<int> o = out.download();
    const std::vector<double> d = dout.download();
    const int poison = -1;  // all-ones bits: a source lane outside the mask
    int mismatches = 0;
    for (int t = 0; t < 64; ++t) {
      const int lane = t & 31, warp = t >> 5;
      auto v = [&](int l) { return 1000 * warp + l; };
      int want[kShuffleOps];
      want[0] = v(7);
      want[1] = v((lane & ~7) + 3);
      want[2] = lane >= 5 ? v(lane - 5) : v(lane);
      want[3] = lane + 3 < 32 ? v(lane + 3) : v(lane);
      want[4] = (lane & 15) + 2 < 16 ? v(lane + 2) : v(lane);
      want[5] = v(lane ^ 1);
      // width 8, laneMask 8: lane ^ 8 lies in a later group for the low half of each 16 (own value)
      // and in an earlier group for the high half (allowed).
      want[6] = (lane ^ 8) >= (lane & ~7) + 8 ? v(lane) : v(lane ^ 8);
      want[7] = static_cast<int>(0x49249249u);
      want[8] = 1;
      want[9] = 0;
      want[10] = 1;
      want[11] = 0;
      want[12] = 496;
      want[13] = static_cast<int>(0xfu << (lane & ~3));
      want[14] = 21;  // max over l of (7 l mod 32) - 10
      if (lane < 16) {
        want[15] = lane < 15 ? v(lane + 1) : poison;
        want[16] = static_cast<int>(0xaaaau);
      } else {
        want[15] = v(lane ^ 1);
        want[16] = static_cast<int>(0xccccccccu & 0xffff0000u);
      }
      want[17] = lane % 4 == 0 ? v(8) : 0;
      want[18] = static_cast<int>(0xffffffffu);
      want[19] = (lane & 3) >= 1 ? v(lane - 1) : v(lane);
      for (int k = 0; k < kShuffleOps; ++k)
        if (o[t * kShuffleOps + k] != want[k] && mismatches++ < 10)
          MESSAGE("thread " << t << " op " << k << ": got " << o[t * kShuffleOps + k] << " want "
                            << want[k]);
      const double wd = 0.125 + (1000 * warp + (lane ^ 16)) * 1e-9;
      if (d[t] != wd && mismatches++ < 10) MESSAGE("thread " << t << " double xor: got " << d[t]);
    }
    CHECK(mismatches == 0);
  }

  TEST_CASE("emu: atomics stay exact across many blocks on several OS threads") {
    REQUIRE_MESSAGE(emu::os_threads() >= 2,
                    "run without POMPC_EMU_THREADS=1: this test needs blocks on >= 2 OS threads");
    constexpr unsigned kBlocks = 512, kThreads = 128, kTotal = kBlocks * kThreads;
    DeviceBuffer<float> fsum(1);
    DeviceBuffer<int> isum(1), imax(1), imin(1);
    DeviceBuffer<double> dsum(1);
    DeviceBuffer<unsigned> cas(1), ids(kBlocks + 1);
    CUDA_CHECK(cudaMemset(fsum.p, 0, sizeof(float)));
    CUDA_CHECK(cudaMemset(isum.p, 0, sizeof(int)));
    CUDA_CHECK(cudaMemset(dsum.p, 0, sizeof(double)));
    CUDA_CHECK(cudaMemset(cas.p, 0, sizeof(unsigned)));
    CUDA_CHECK(cudaMemset(ids.p, 0, ids.n * sizeof(unsigned)));
    imax.upload({-1});
    imin.upload({1});
    LAUNCH(atomics_kernel, dim3(kBlocks), dim3(kThreads), 0, nullptr, fsum.p, isum.p, dsum.p, cas.p,
           imax.p, imin.p, ids.p);
    CHECK(emu::last_launch_os_threads() > 1);
    CHECK(fsum.download()[0] == static_cast<float>(kTotal));
    CHECK(isum.download()[0] == static_cast<int>(kTotal));
    CHECK(dsum.download()[0] == 0.5 * kTotal);
    CHECK(cas.download()[0] == kTotal);
    int want_max = -1, want_min = 1;
    for (unsigned g = 0; g < kTotal; ++g) {
      const int r = static_cast<int>((g * 7919ull) % 100003);
      want_max = std::max(want_max, r);
      want_min = std::min(want_min, -r);
    }
    CHECK(imax.download()[0] == want_max);
    CHECK(imin.download()[0] == want_min);
    // atomicInc handed every block a distinct ticket 0..kBlocks-1.
    std::vector<unsigned> tickets = ids.download();
    CHECK(tickets[kBlocks] == kBlocks);
    tickets.resize(kBlocks);
    std::sort(tickets.begin(), tickets.end());
    bool distinct = true;
    for (unsigned b = 0; b < kBlocks; ++b) distinct &= tickets[b] == b;
    CHECK(distinct);
  }

  TEST_CASE("emu: dynamic shared memory is per block, aligned, poisoned and size-checked") {
    constexpr unsigned kBlocks = 5, kThreads = 96;
    std::vector<float> in(kBlocks * kThreads);
    for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i);
    DeviceBuffer<float> din(in), dout(in.size());
    DeviceBuffer<unsigned> info(2 * kBlocks);
    LAUNCH(reverse_in_smem_kernel, dim3(kBlocks), dim3(kThreads), (kThreads + 1) * sizeof(float),
           nullptr, din.p, dout.p, info.p);
    const std::vector<float> out = dout.download();
    const std::vector<unsigned> inf = info.download();
    size_t bad = 0;
    for (unsigned b = 0; b < kBlocks; ++b)
      for (unsigned t = 0; t < kThreads; ++t)
        bad += out[b * kThreads + t] != in[b * kThreads + (kThreads - 1 - t)];
    CHECK(bad == 0);
    for (unsigned b = 0; b < kBlocks; ++b) {
      CHECK(inf[2 * b] == 0);                // 16-byte aligned
      CHECK(inf[2 * b + 1] == 0xffffffffu);  // unwritten dynamic shared memory reads as poison
    }
    // More than 48 KiB needs the opt-in, as on a GPU.
    const size_t big = 64 << 10;
    const std::string msg = error_of([&] {
      LAUNCH(reverse_in_smem_kernel, dim3(1), dim3(kThreads), big, nullptr, din.p, dout.p, info.p);
    });
    CHECK(contains(msg, "invalid argument"));
    CHECK(contains(msg, "cudaFuncAttributeMaxDynamicSharedMemorySize"));
    CUDA_CHECK(cudaFuncSetAttribute(reverse_in_smem_kernel,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    static_cast<int>(big)));
    CHECK_NOTHROW(LAUNCH(reverse_in_smem_kernel, dim3(1), dim3(kThreads), big, nullptr, din.p,
                         dout.p, info.p));
    CUDA_CHECK(cudaFuncSetAttribute(reverse_in_smem_kernel,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, 48 << 10));
  }

  TEST_CASE("emu: 2D/3D grids and blocks index correctly; warps are consecutive linear ids") {
    const dim3 grid(3, 2, 2), block(8, 4, 2);  // 64 threads per block: two warps, 4 rows each
    const unsigned threads = block.x * block.y * block.z,
                   total = grid.x * grid.y * grid.z * threads;
    DeviceBuffer<uint32_t> out(4 * total);
    LAUNCH(index_kernel, grid, block, 0, nullptr, out.p);
    const std::vector<uint32_t> o = out.download();
    size_t bad = 0;
    for (unsigned bz = 0; bz < grid.z; ++bz)
      for (unsigned by = 0; by < grid.y; ++by)
        for (unsigned bx = 0; bx < grid.x; ++bx)
          for (unsigned tz = 0; tz < block.z; ++tz)
            for (unsigned ty = 0; ty < block.y; ++ty)
              for (unsigned tx = 0; tx < block.x; ++tx) {
                const unsigned b = bx + grid.x * (by + grid.y * bz);
                const unsigned tl = tx + block.x * (ty + block.y * tz);
                const uint32_t* r = &o[4 * (b * threads + tl)];
                const unsigned lane9 = (tl & ~31u) + 9;  // x = 1, y = 1 within the warp's 4 rows
                const unsigned l9x = lane9 % block.x, l9y = lane9 / block.x % block.y,
                               l9z = lane9 / block.x / block.y;
                bad += r[0] != (tx | ty << 8 | tz << 16);
                bad += r[1] != (bx | by << 8 | bz << 16);
                bad += r[2] != (block.x | block.y << 8 | block.z << 16 | grid.x << 24);
                bad += r[3] != (l9x | l9y << 8 | l9z << 16);
              }
    CHECK(bad == 0);
  }

  TEST_CASE("emu: __syncthreads_count/_and/_or") {
    DeviceBuffer<int> out(3);
    LAUNCH(syncthreads_count_kernel, dim3(1), dim3(300), 0, nullptr, out.p);
    const std::vector<int> o = out.download();
    CHECK(o[0] == 100);
    CHECK(o[1] == 1);
    CHECK(o[2] == 1);
  }

  TEST_CASE("emu: streams and events order work; elapsed time is measured") {
    constexpr int n = 1000;
    std::vector<float> x(n);
    for (int i = 0; i < n; ++i) x[i] = static_cast<float>(i);
    DeviceBuffer<float> dx(x), dy(n);
    cudaStream_t s1 = nullptr, s2 = nullptr;
    cudaEvent_t e0 = nullptr, e1 = nullptr, e2 = nullptr, untimed = nullptr, never = nullptr;
    CUDA_CHECK(cudaStreamCreate(&s1));
    CUDA_CHECK(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    CUDA_CHECK(cudaEventCreate(&e2));
    CUDA_CHECK(cudaEventCreateWithFlags(&untimed, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreate(&never));
    CUDA_CHECK(cudaEventRecord(e0, s1));
    LAUNCH(axpb_kernel, dim3(pompc::ceil_div(n, 256)), dim3(256), 0, s1, dx.p, dy.p, n, 2.0f, 1.0f);
    CUDA_CHECK(cudaEventRecord(e1, s1));
    CUDA_CHECK(cudaStreamWaitEvent(s2, e1, 0));
    LAUNCH(add_kernel, dim3(pompc::ceil_div(n, 256)), dim3(256), 0, s2, dy.p, dx.p, n);
    CUDA_CHECK(cudaEventRecord(e2, s2));
    CUDA_CHECK(cudaEventRecord(untimed, s2));
    CUDA_CHECK(cudaEventSynchronize(e2));
    CHECK(cudaEventQuery(e2) == cudaSuccess);
    const std::vector<float> y = dy.download();
    size_t bad = 0;
    for (int i = 0; i < n; ++i) bad += y[i] != 3.0f * i + 1.0f;
    CHECK(bad == 0);
    float ms01 = -1, ms02 = -1, ms12 = -1;
    CUDA_CHECK(cudaEventElapsedTime(&ms01, e0, e1));
    CUDA_CHECK(cudaEventElapsedTime(&ms02, e0, e2));
    CUDA_CHECK(cudaEventElapsedTime(&ms12, e1, e2));
    CHECK(ms01 >= 0.0f);
    CHECK(ms12 >= 0.0f);
    CHECK(ms02 >= ms01);
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, e0, untimed) == cudaErrorInvalidResourceHandle);
    CHECK(cudaEventElapsedTime(&ms, never, e2) == cudaErrorInvalidResourceHandle);
    CHECK(cudaGetLastError() == cudaErrorInvalidResourceHandle);
    CHECK(cudaGetLastError() == cudaSuccess);
    CUDA_CHECK(cudaStreamSynchronize(s1));
    CUDA_CHECK(cudaStreamSynchronize(s2));
    for (cudaEvent_t e : {e0, e1, e2, untimed, never}) CUDA_CHECK(cudaEventDestroy(e));
    CUDA_CHECK(cudaStreamDestroy(s1));
    CUDA_CHECK(cudaStreamDestroy(s2));
    CHECK(cudaStreamDestroy(s1) == cudaErrorInvalidResourceHandle);
    (void)cudaGetLastError();
  }

  TEST_CASE("emu: graph capture bakes scalars, replays on current data, and forks/joins") {
    constexpr int n = 300;
    std::vector<float> x(n), host_y(n, -1.0f);
    for (int i = 0; i < n; ++i) x[i] = static_cast<float>(i);
    DeviceBuffer<float> dx(x), dy(n), dz(n);
    CUDA_CHECK(cudaMemset(dy.p, 0, n * sizeof(float)));
    CUDA_CHECK(cudaMemset(dz.p, 0, n * sizeof(float)));
    cudaStream_t s = nullptr, side = nullptr;
    cudaEvent_t fork = nullptr, join = nullptr;
    CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    CUDA_CHECK(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&join, cudaEventDisableTiming));

    float a = 2.0f;
    const uint64_t launches_before = emu::launch_count();
    CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    CUDA_CHECK(cudaStreamIsCapturing(s, &status));
    CHECK(status == cudaStreamCaptureStatusActive);
    LAUNCH(axpb_kernel, dim3(pompc::ceil_div(n, 128)), dim3(128), 0, s, dx.p, dy.p, n, a, 0.5f);
    CUDA_CHECK(cudaEventRecord(fork, s));
    CUDA_CHECK(cudaStreamWaitEvent(side, fork, 0));  // side joins the capture
    LAUNCH(add_kernel, dim3(pompc::ceil_div(n, 128)), dim3(128), 0, side, dz.p, dx.p, n);
    CUDA_CHECK(cudaEventRecord(join, side));
    CUDA_CHECK(cudaStreamWaitEvent(s, join, 0));
    CUDA_CHECK(cudaMemcpyAsync(host_y.data(), dy.p, n * sizeof(float), cudaMemcpyDeviceToHost, s));
    cudaGraph_t graph = nullptr;
    CUDA_CHECK(cudaStreamEndCapture(s, &graph));
    REQUIRE(graph != nullptr);
    a = 100.0f;                                     // the capture baked 2.0
    CHECK(emu::launch_count() == launches_before);  // recorded, not run
    CHECK(dy.download()[7] == 0.0f);
    CHECK(host_y[7] == -1.0f);
    size_t nodes = 0;
    CUDA_CHECK(cudaGraphGetNodes(graph, nullptr, &nodes));
    CHECK(nodes == 3);

    cudaGraphExec_t exec = nullptr;
    CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    for (int round = 1; round <= 2; ++round) {
      for (int i = 0; i < n; ++i) x[i] = static_cast<float>(round * 1000 + i);
      dx.upload(x);  // new data at the baked pointer
      CUDA_CHECK(cudaGraphLaunch(exec, s));
      CUDA_CHECK(cudaStreamSynchronize(s));
      const std::vector<float> z = dz.download();
      size_t bad = 0;
      float z_want = 0;
      for (int i = 0; i < n; ++i) {
        bad += host_y[i] != 2.0f * x[i] + 0.5f;
        z_want = (round == 1 ? 0.0f : static_cast<float>(1000 + i)) + x[i];
        bad += z[i] != z_want;
      }
      CHECK(bad == 0);
    }
    CHECK(emu::launch_count() == launches_before + 4);
    CUDA_CHECK(cudaGraphExecDestroy(exec));
    CUDA_CHECK(cudaGraphDestroy(graph));
    // An event last recorded in a capture that has ended, on a stream since destroyed: no-op.
    CUDA_CHECK(cudaStreamDestroy(side));
    CHECK(cudaStreamWaitEvent(s, join, 0) == cudaSuccess);
    CUDA_CHECK(cudaEventDestroy(fork));
    CUDA_CHECK(cudaEventDestroy(join));
    CUDA_CHECK(cudaStreamDestroy(s));
  }

  TEST_CASE("emu: calls a capture forbids invalidate it; unjoined forks are refused") {
    DeviceBuffer<float> dx(64), dy(64);
    cudaStream_t s = nullptr, blocking = nullptr, side = nullptr;
    cudaEvent_t fork = nullptr;
    CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    CUDA_CHECK(cudaStreamCreate(&blocking));
    CUDA_CHECK(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreate(&fork));
    cudaGraph_t graph = nullptr;

    SUBCASE("cudaMalloc during a global capture") {
      CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
      float* p = nullptr;
      CHECK(cudaMalloc(&p, 16) == cudaErrorStreamCaptureUnsupported);
      CHECK(contains(cudaGetErrorString(cudaErrorStreamCaptureUnsupported), "cudaMalloc"));
      CHECK(contains(error_of([&] { LAUNCH(add_kernel, dim3(1), dim3(64), 0, s, dy.p, dx.p, 64); }),
                     "invalidated"));
      CHECK(cudaStreamEndCapture(s, &graph) == cudaErrorStreamCaptureInvalidated);
      CHECK(graph == nullptr);
    }
    SUBCASE("cudaMalloc during a relaxed capture is fine") {
      CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed));
      float* p = nullptr;
      CHECK(cudaMalloc(&p, 16) == cudaSuccess);
      CUDA_CHECK(cudaFree(p));
      CUDA_CHECK(cudaStreamEndCapture(s, &graph));
      CHECK(graph != nullptr);
      CUDA_CHECK(cudaGraphDestroy(graph));
    }
    SUBCASE("legacy-stream work while a blocking stream captures") {
      CUDA_CHECK(cudaStreamBeginCapture(blocking, cudaStreamCaptureModeThreadLocal));
      CHECK(contains(
          error_of([&] { LAUNCH(add_kernel, dim3(1), dim3(64), 0, nullptr, dy.p, dx.p, 64); }),
          "legacy"));
      CHECK(cudaStreamEndCapture(blocking, &graph) == cudaErrorStreamCaptureInvalidated);
    }
    SUBCASE("a fork that is never joined") {
      CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
      CUDA_CHECK(cudaEventRecord(fork, s));
      CUDA_CHECK(cudaStreamWaitEvent(side, fork, 0));
      LAUNCH(add_kernel, dim3(1), dim3(64), 0, side, dy.p, dx.p, 64);
      CHECK(cudaStreamEndCapture(s, &graph) == cudaErrorStreamCaptureUnjoined);
      CHECK(graph == nullptr);
      cudaStreamCaptureStatus st = cudaStreamCaptureStatusActive;
      CUDA_CHECK(cudaStreamIsCapturing(side, &st));
      CHECK(st == cudaStreamCaptureStatusNone);
    }
    SUBCASE("the legacy stream cannot be captured") {
      CHECK(cudaStreamBeginCapture(nullptr, cudaStreamCaptureModeGlobal) ==
            cudaErrorStreamCaptureUnsupported);
    }
    (void)cudaGetLastError();
    CUDA_CHECK(cudaEventDestroy(fork));
    CUDA_CHECK(cudaStreamDestroy(side));
    CUDA_CHECK(cudaStreamDestroy(blocking));
    CUDA_CHECK(cudaStreamDestroy(s));
  }

  TEST_CASE("emu: counters count what a GPU would see: eager work, replays, waits, copies") {
    // Every field of Counters is listed once in counter_fields() (the test below reads them all).
    {
      emu::Counters c;
      uint64_t v = 0;
      for (const emu::CounterField& f : emu::counter_fields()) c.*f.member = ++v;
      uint64_t raw[sizeof(emu::Counters) / sizeof(uint64_t)];
      std::memcpy(raw, &c, sizeof c);
      std::sort(std::begin(raw), std::end(raw));
      for (size_t i = 0; i < std::size(raw); ++i) CHECK(raw[i] == i + 1);
    }
    // Each field against the expected value, named when it differs.
    auto expect = [](const emu::Counters& want, const char* after) {
      const emu::Counters got = emu::counters();
      CAPTURE(after);
      for (const emu::CounterField& f : emu::counter_fields()) {
        CAPTURE(f.name);
        CHECK(got.*f.member == want.*f.member);
      }
      CHECK(got == want);
    };
    constexpr int n = 64;  // 64 floats: also an 8 x 8 matrix
    constexpr uint64_t bytes = n * sizeof(float);
    cudaStream_t s = nullptr;
    CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    cublasHandle_t h = nullptr;
    CUBLAS_CHECK(cublasCreate(&h));
    CUBLAS_CHECK(cublasSetStream(h, s));
    cudaEvent_t ev = nullptr;
    CUDA_CHECK(cudaEventCreate(&ev));
    const float one = 1.0f, zero = 0.0f;
    emu::reset_counters();
    emu::Counters want;
    expect(want, "reset");

    float *x = nullptr, *y = nullptr, *pinned = nullptr;
    CUDA_CHECK(cudaMalloc(&x, bytes));
    CUDA_CHECK(cudaMalloc(&y, bytes));
    CUDA_CHECK(cudaMallocHost(&pinned, bytes));
    std::vector<float> pageable(n, 1.0f);
    for (int i = 0; i < n; ++i) pinned[i] = static_cast<float>(i);
    want.allocs = 3;
    want.alloc_bytes = 3 * bytes;
    expect(want, "allocations");

    // Eager work on a stream: nothing waits but the copy into pageable memory.
    CUDA_CHECK(cudaMemcpyAsync(x, pinned, bytes, cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaMemcpyAsync(y, pageable.data(), bytes, cudaMemcpyDefault, s));  // resolved: H2D
    LAUNCH(axpb_kernel, dim3(1), dim3(n), 0, s, x, y, n, 2.0f, 1.0f);
    CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 8, 8, 8, &one, x, 8, x, 8, &zero, y, 8));
    CUDA_CHECK(cudaMemsetAsync(x, 0, bytes, s));
    CUDA_CHECK(cudaMemcpyAsync(pinned, y, bytes, cudaMemcpyDeviceToHost, s));
    CUDA_CHECK(cudaMemcpyAsync(pageable.data(), y, bytes, cudaMemcpyDeviceToHost, s));  // waits
    CUDA_CHECK(cudaMemcpyAsync(x, y, bytes, cudaMemcpyDeviceToDevice, s));
    want.kernels = 1;
    want.cublas = 1;
    want.memsets = 1;
    want.h2d = 2;
    want.h2d_bytes = 2 * bytes;
    want.d2h = 2;
    want.d2h_bytes = 2 * bytes;
    want.d2d = 1;
    want.d2d_bytes = bytes;
    want.sync_copy = 1;
    expect(want, "eager work");

    // Waits; queries and records do not wait, nor does a device-to-device cudaMemcpy or a
    // cudaMemset.
    CUDA_CHECK(cudaStreamQuery(s));
    CUDA_CHECK(cudaEventRecord(ev, s));
    CUDA_CHECK(cudaEventQuery(ev));
    CUDA_CHECK(cudaStreamSynchronize(s));
    CUDA_CHECK(cudaEventSynchronize(ev));
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaMemcpy(y, pageable.data(), bytes, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(pageable.data(), y, 8, cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaMemcpy(x, y, bytes, cudaMemcpyDeviceToDevice));
    CUDA_CHECK(cudaMemset(y, 0, 4));
    want.sync_stream = 1;
    want.sync_event = 1;
    want.sync_device = 1;
    want.sync_copy = 3;
    want.h2d = 3;
    want.h2d_bytes = 3 * bytes;
    want.d2h = 3;
    want.d2h_bytes = 2 * bytes + 8;
    want.d2d = 2;
    want.d2d_bytes = 2 * bytes;
    want.memsets = 2;
    expect(want, "waits");

    // A capture records and counts nothing (but the instantiation); each replay counts one graph
    // launch, its nodes, and the copies and memsets it ran, without a host wait.
    CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    CUDA_CHECK(cudaMemcpyAsync(x, pinned, bytes, cudaMemcpyHostToDevice, s));
    LAUNCH(axpb_kernel, dim3(1), dim3(n), 0, s, x, y, n, 2.0f, 1.0f);
    LAUNCH(add_kernel, dim3(1), dim3(n), 0, s, y, x, n);
    CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 8, 8, 8, &one, x, 8, x, 8, &zero, y, 8));
    CUDA_CHECK(cudaMemsetAsync(x, 0, bytes, s));
    CUDA_CHECK(cudaMemcpyAsync(pinned, y, bytes, cudaMemcpyDeviceToHost, s));
    cudaGraph_t graph = nullptr;
    CUDA_CHECK(cudaStreamEndCapture(s, &graph));
    cudaGraphExec_t exec = nullptr;
    CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    want.graph_instantiations = 1;
    expect(want, "capture");
    for (int r = 0; r < 3; ++r) CUDA_CHECK(cudaGraphLaunch(exec, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
    want.graph_launches = 3;
    want.graph_kernels = 6;
    want.graph_cublas = 3;
    want.h2d += 3;
    want.h2d_bytes += 3 * bytes;
    want.d2h += 3;
    want.d2h_bytes += 3 * bytes;
    want.memsets += 3;
    want.sync_stream = 2;
    expect(want, "3 replays");

    // A graph launched inside a capture is a node: replaying the outer graph is one launch.
    CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    CUDA_CHECK(cudaGraphLaunch(exec, s));
    LAUNCH(add_kernel, dim3(1), dim3(n), 0, s, y, x, n);
    cudaGraph_t outer = nullptr;
    CUDA_CHECK(cudaStreamEndCapture(s, &outer));
    cudaGraphExec_t outer_exec = nullptr;
    CUDA_CHECK(cudaGraphInstantiate(&outer_exec, outer, 0));
    CUDA_CHECK(cudaGraphLaunch(outer_exec, s));
    want.graph_instantiations = 2;
    want.graph_launches = 4;
    want.graph_kernels += 3;
    want.graph_cublas += 1;
    want.h2d += 1;
    want.h2d_bytes += bytes;
    want.d2h += 1;
    want.d2h_bytes += bytes;
    want.memsets += 1;
    expect(want, "nested replay");

    // Calls a capture refuses count nothing: a cudaMemcpy, then a synchronisation of the
    // capturing stream.
    CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    CHECK(cudaMemcpy(y, pageable.data(), bytes, cudaMemcpyHostToDevice) ==
          cudaErrorStreamCaptureUnsupported);
    CHECK(cudaStreamSynchronize(s) == cudaErrorStreamCaptureUnsupported);
    cudaGraph_t broken = nullptr;
    CHECK(cudaStreamEndCapture(s, &broken) == cudaErrorStreamCaptureInvalidated);
    CHECK(broken == nullptr);
    (void)cudaGetLastError();
    expect(want, "refused calls");

    // Frees wait for the device (cudaFree of null does nothing); destroying graphs, streams,
    // events and handles counts nothing.
    CUDA_CHECK(cudaFree(x));
    CUDA_CHECK(cudaFree(y));
    CUDA_CHECK(cudaFree(nullptr));
    CUDA_CHECK(cudaFreeHost(pinned));
    CUDA_CHECK(cudaGraphExecDestroy(outer_exec));
    CUDA_CHECK(cudaGraphDestroy(outer));
    CUDA_CHECK(cudaGraphExecDestroy(exec));
    CUDA_CHECK(cudaGraphDestroy(graph));
    CUDA_CHECK(cudaEventDestroy(ev));
    CUBLAS_CHECK(cublasDestroy(h));
    CUDA_CHECK(cudaStreamDestroy(s));
    want.frees = 3;
    want.sync_free = 3;
    expect(want, "frees");
    CHECK(emu::counters().syncs() == 2 + 1 + 1 + 3 + 3);
    emu::reset_counters();
    expect(emu::Counters{}, "second reset");
  }

  TEST_CASE("emu: counts by name: kernels by kernel name, cuBLAS by function, eager and replayed") {
    constexpr int n = 64;  // also an 8 x 8 matrix
    DeviceBuffer<float> x(n), y(n);
    DeviceBuffer<uint32_t> idx(4 * 32);  // index_kernel: 4 words per thread
    cudaStream_t s = nullptr;
    CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    cublasHandle_t h = nullptr;
    CUBLAS_CHECK(cublasCreate(&h));
    CUBLAS_CHECK(cublasSetStream(h, s));
    const float one = 1.0f, zero = 0.0f;
    auto sgemm = [&] {
      CUBLAS_CHECK(
          cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 8, 8, 8, &one, x.p, 8, x.p, 8, &zero, y.p, 8));
    };
    emu::reset_counters();
    CHECK(emu::kernel_counts().empty());
    CHECK(emu::cublas_counts().empty());
    // Eager: two axpb, one add, one GEMM.
    LAUNCH(axpb_kernel, dim3(1), dim3(n), 0, s, x.p, y.p, n, 2.0f, 1.0f);
    LAUNCH(axpb_kernel, dim3(1), dim3(n), 0, s, x.p, y.p, n, 2.0f, 1.0f);
    LAUNCH(add_kernel, dim3(1), dim3(n), 0, s, y.p, x.p, n);
    sgemm();
    // A capture counts nothing; each of two replays counts its nodes by name.
    CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    LAUNCH(add_kernel, dim3(1), dim3(n), 0, s, y.p, x.p, n);
    LAUNCH(add_kernel, dim3(1), dim3(n), 0, s, y.p, x.p, n);
    LAUNCH(index_kernel, dim3(1), dim3(32), 0, s, idx.p);
    sgemm();
    cudaGraph_t graph = nullptr;
    CUDA_CHECK(cudaStreamEndCapture(s, &graph));
    cudaGraphExec_t exec = nullptr;
    CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    CHECK(emu::kernel_counts().count("index_kernel") == 0);
    for (int r = 0; r < 2; ++r) CUDA_CHECK(cudaGraphLaunch(exec, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
    const std::map<std::string, emu::NamedCount> kernels = emu::kernel_counts(),
                                                 cublas = emu::cublas_counts();
    CHECK(kernels.size() == 3);
    CHECK(kernels.at("axpb_kernel") == emu::NamedCount{2, 0});
    CHECK(kernels.at("add_kernel") == emu::NamedCount{1, 4});
    CHECK(kernels.at("index_kernel") == emu::NamedCount{0, 2});
    CHECK(cublas.size() == 1);
    CHECK(cublas.at("cublasSgemm") == emu::NamedCount{1, 2});
    // The sums by name are the totals of Counters.
    const emu::Counters c = emu::counters();
    CHECK(c.kernels == 3);
    CHECK(c.graph_kernels == 6);
    CHECK(c.cublas == 1);
    CHECK(c.graph_cublas == 2);
    emu::reset_counters();
    CHECK(emu::kernel_counts().empty());
    CHECK(emu::cublas_counts().empty());
    CUDA_CHECK(cudaGraphExecDestroy(exec));
    CUDA_CHECK(cudaGraphDestroy(graph));
    CUBLAS_CHECK(cublasDestroy(h));
    CUDA_CHECK(cudaStreamDestroy(s));
  }

  TEST_CASE("emu: a device-to-host cudaMemcpyAsync into pinned memory lands at the host's wait") {
    constexpr int n = 100;
    constexpr size_t bytes = n * sizeof(float);
    std::vector<float> iota(n);
    for (int i = 0; i < n; ++i) iota[i] = static_cast<float>(i);
    DeviceBuffer<float> d(iota), scratch(n);
    PinnedBuffer h(n);
    cudaStream_t s = nullptr, other = nullptr, blocking = nullptr;
    CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    CUDA_CHECK(cudaStreamCreateWithFlags(&other, cudaStreamNonBlocking));
    CUDA_CHECK(cudaStreamCreate(&blocking));
    cudaEvent_t before = nullptr, after = nullptr;
    CUDA_CHECK(cudaEventCreateWithFlags(&before, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&after, cudaEventDisableTiming));
    std::vector<float> pageable(n);

    // Issued on `s`; then calls that do not wait for it leave the destination poisoned.
    CUDA_CHECK(cudaEventRecord(before, s));
    CUDA_CHECK(cudaMemcpyAsync(h.p, d.p, bytes, cudaMemcpyDeviceToHost, s));
    CHECK(poisoned(h.p, bytes));
    CHECK(std::isnan(h.p[7]));
    CUDA_CHECK(cudaStreamSynchronize(other));     // another stream
    CUDA_CHECK(cudaEventSynchronize(before));     // an event recorded before the copy
    CUDA_CHECK(cudaStreamSynchronize(nullptr));   // the legacy stream: s is non-blocking
    CUDA_CHECK(cudaMemset(scratch.p, 0, bytes));  // asynchronous for the host
    CUDA_CHECK(cudaMemcpy(scratch.p, d.p, bytes, cudaMemcpyDeviceToDevice));  // likewise
    CHECK(poisoned(h.p, bytes));

    SUBCASE("cudaStreamSynchronize of its stream") {
      CUDA_CHECK(cudaStreamSynchronize(s));
    }
    SUBCASE("cudaStreamQuery of its stream") {
      CUDA_CHECK(cudaStreamQuery(s));
    }
    SUBCASE("cudaDeviceSynchronize") {
      CUDA_CHECK(cudaDeviceSynchronize());
    }
    SUBCASE("cudaEventSynchronize of an event recorded after it") {
      CUDA_CHECK(cudaEventRecord(after, s));
      CUDA_CHECK(cudaEventSynchronize(after));
    }
    SUBCASE("cudaEventQuery of an event recorded after it") {
      CUDA_CHECK(cudaEventRecord(after, s));
      CUDA_CHECK(cudaEventQuery(after));
    }
    SUBCASE("cudaStreamSynchronize of a stream that waited for it") {
      CUDA_CHECK(cudaEventRecord(after, s));
      CUDA_CHECK(cudaStreamWaitEvent(other, after, 0));
      CUDA_CHECK(cudaStreamSynchronize(other));
    }
    SUBCASE("a device-to-host copy into pageable memory on its stream, delivered at once") {
      CUDA_CHECK(cudaMemcpyAsync(pageable.data(), d.p, bytes, cudaMemcpyDeviceToHost, s));
      CHECK(holds_iota(pageable.data(), n));
    }
    SUBCASE("cudaFree") {
      float* tmp = nullptr;
      CUDA_CHECK(cudaMalloc(&tmp, 4));
      CUDA_CHECK(cudaFree(tmp));
    }
    SUBCASE("on a blocking stream: cudaStreamSynchronize(0)") {
      CUDA_CHECK(cudaStreamSynchronize(s));
      CUDA_CHECK(cudaMemcpyAsync(h.p, d.p, bytes, cudaMemcpyDeviceToHost, blocking));
      CHECK(poisoned(h.p, bytes));
      CUDA_CHECK(cudaStreamSynchronize(nullptr));
    }
    SUBCASE("on a blocking stream: a synchronous cudaMemcpy") {
      CUDA_CHECK(cudaStreamSynchronize(s));
      CUDA_CHECK(cudaMemcpyAsync(h.p, d.p, bytes, cudaMemcpyDeviceToHost, blocking));
      CHECK(poisoned(h.p, bytes));
      CUDA_CHECK(cudaMemcpy(pageable.data(), d.p, 4, cudaMemcpyDeviceToHost));
    }
    CHECK(holds_iota(h.p, n));
    CUDA_CHECK(cudaStreamSynchronize(s));  // nothing left to deliver: the bytes stay
    CHECK(holds_iota(h.p, n));
    CHECK(cudaGetLastError() == cudaSuccess);
    for (cudaEvent_t e : {before, after}) CUDA_CHECK(cudaEventDestroy(e));
    for (cudaStream_t x : {s, other, blocking}) CUDA_CHECK(cudaStreamDestroy(x));
  }

  TEST_CASE("emu: a host write into a pending pinned destination is reported by the wait") {
    constexpr int n = 64;
    constexpr size_t bytes = n * sizeof(float);
    std::vector<float> iota(n);
    for (int i = 0; i < n; ++i) iota[i] = static_cast<float>(i);
    DeviceBuffer<float> d(iota);
    PinnedBuffer h(n);
    cudaStream_t s = nullptr;
    CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    CUDA_CHECK(cudaMemcpyAsync(h.p, d.p, bytes, cudaMemcpyDeviceToHost, s));
    float* const at3 = h.p + 3;
    *at3 = 42.0f;  // the race: on a GPU the copy lands before or after this write
    cudaError_t e = cudaSuccess;
    SUBCASE("at cudaStreamSynchronize") {
      e = cudaStreamSynchronize(s);
    }
    SUBCASE("at cudaFreeHost, which waits first") {
      e = cudaFreeHost(h.p);
      h.p = nullptr;
    }
    SUBCASE("at the wait, though a second copy into it was issued in between") {
      CUDA_CHECK(cudaMemcpyAsync(h.p, d.p, bytes, cudaMemcpyDeviceToHost, s));
      e = cudaDeviceSynchronize();
    }
    REQUIRE(e == cudaErrorIllegalState);
    const std::string msg = cudaGetErrorString(e);
    CAPTURE(msg);
    CHECK(contains(msg, "the host wrote pinned memory"));
    CHECK(names_byte_of(msg, at3));
    CHECK(contains(msg, "cudaMemcpyDeviceToHost"));
    // The call site of the cudaMemcpyAsync (addresses where no symboliser is linked), not the
    // emulation's own frames.
    CHECK(contains(msg, kAsan ? "emu_test.cpp" : " from 0x"));
    CHECK(!contains(msg, "runtime.cpp"));
    CHECK(contains(msg, "still writes"));
    if (h.p) CHECK(holds_iota(h.p, n));  // delivered all the same: the copy overwrote the write
    CHECK(cudaGetLastError() == cudaErrorIllegalState);
    CUDA_CHECK(cudaStreamSynchronize(s));  // reported once
    CUDA_CHECK(cudaStreamDestroy(s));
  }

  TEST_CASE("emu: a pinned source changed before the host waited for its copy is reported") {
    constexpr int n = 64;
    constexpr size_t bytes = n * sizeof(float);
    DeviceBuffer<float> d(n);
    PinnedBuffer h(n);
    for (int i = 0; i < n; ++i) h.p[i] = static_cast<float>(i);
    std::vector<float> pageable(h.p, h.p + n);
    cudaStream_t s = nullptr;
    CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    SUBCASE("changed before the wait: reported by it") {
      CUDA_CHECK(cudaMemcpyAsync(d.p, h.p, bytes, cudaMemcpyHostToDevice, s));
      h.p[5] = -1.0f;
      const cudaError_t e = cudaStreamSynchronize(s);
      REQUIRE(e == cudaErrorIllegalState);
      const std::string msg = cudaGetErrorString(e);
      CAPTURE(msg);
      CHECK(contains(msg, "cudaStreamSynchronize: the host wrote pinned memory"));
      CHECK(names_byte_of(msg, h.p + 5));
      CHECK(contains(msg, "could still be reading"));
      CHECK(contains(msg, "cudaMemcpyHostToDevice"));
      CHECK(contains(msg, kAsan ? "emu_test.cpp" : " from 0x"));
      CHECK(contains(msg, "or use a second buffer"));
      CHECK(holds_iota(d.download().data(), n));  // the copy read the bytes at issue
      (void)cudaGetLastError();
    }
    SUBCASE("changed before cudaFreeHost: reported by it") {
      CUDA_CHECK(cudaMemcpyAsync(d.p, h.p, bytes, cudaMemcpyHostToDevice, s));
      h.p[0] = -1.0f;
      CHECK(cudaFreeHost(h.p) == cudaErrorIllegalState);
      CHECK(contains(cudaGetErrorString(cudaErrorIllegalState), "cudaFreeHost: the host wrote"));
      CHECK(cudaFreeHost(h.p) == cudaErrorInvalidValue);  // freed all the same
      h.p = nullptr;
      (void)cudaGetLastError();
    }
    SUBCASE("changed after the wait: fine") {
      CUDA_CHECK(cudaMemcpyAsync(d.p, h.p, bytes, cudaMemcpyHostToDevice, s));
      CUDA_CHECK(cudaStreamSynchronize(s));
      h.p[5] = -1.0f;
      CUDA_CHECK(cudaDeviceSynchronize());
    }
    SUBCASE("changed after a wait for an event recorded after the copy: fine") {
      cudaEvent_t ev = nullptr;
      CUDA_CHECK(cudaEventCreate(&ev));
      CUDA_CHECK(cudaMemcpyAsync(d.p, h.p, bytes, cudaMemcpyHostToDevice, s));
      CUDA_CHECK(cudaEventRecord(ev, s));
      CUDA_CHECK(cudaEventSynchronize(ev));
      h.p[5] = -1.0f;
      CUDA_CHECK(cudaDeviceSynchronize());
      CUDA_CHECK(cudaEventDestroy(ev));
    }
    SUBCASE("a pageable source may change at once (the call staged it)") {
      CUDA_CHECK(cudaMemcpyAsync(d.p, pageable.data(), bytes, cudaMemcpyHostToDevice, s));
      pageable[5] = -1.0f;
      CUDA_CHECK(cudaStreamSynchronize(s));
      CHECK(holds_iota(d.download().data(), n));
    }
    SUBCASE("written by a later device-to-host copy on the stream: fine, in stream order") {
      DeviceBuffer<float> other(std::vector<float>(n, 7.0f));
      CUDA_CHECK(cudaMemcpyAsync(d.p, h.p, bytes, cudaMemcpyHostToDevice, s));
      CUDA_CHECK(cudaMemcpyAsync(h.p, other.p, bytes, cudaMemcpyDeviceToHost, s));
      CUDA_CHECK(cudaStreamSynchronize(s));
      CHECK(h.p[5] == 7.0f);
      CHECK(holds_iota(d.download().data(), n));
    }
    SUBCASE("read after a pending device-to-host copy on the stream: the copy's bytes") {
      DeviceBuffer<float> other(std::vector<float>(n, 7.0f));
      CUDA_CHECK(cudaMemcpyAsync(h.p, other.p, bytes, cudaMemcpyDeviceToHost, s));
      CUDA_CHECK(cudaMemcpyAsync(d.p, h.p, bytes, cudaMemcpyHostToDevice, s));
      CUDA_CHECK(cudaStreamSynchronize(s));
      CHECK(d.download()[5] == 7.0f);
      CHECK(h.p[5] == 7.0f);
    }
    CHECK(cudaGetLastError() == cudaSuccess);
    CUDA_CHECK(cudaStreamDestroy(s));
  }

  TEST_CASE("emu: device-to-host nodes of a replayed graph land at the host's wait too") {
    constexpr int n = 32;
    constexpr uint64_t bytes = n * sizeof(float);
    std::vector<float> iota(n);
    for (int i = 0; i < n; ++i) iota[i] = static_cast<float>(i);
    DeviceBuffer<float> d(iota), y(n);
    PinnedBuffer h(n), src(n);
    for (int i = 0; i < n; ++i) src.p[i] = static_cast<float>(i);
    cudaStream_t s = nullptr;
    CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    CUDA_CHECK(cudaMemcpyAsync(y.p, src.p, bytes, cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaMemcpyAsync(h.p, d.p, bytes, cudaMemcpyDeviceToHost, s));
    cudaGraph_t graph = nullptr;
    CUDA_CHECK(cudaStreamEndCapture(s, &graph));
    cudaGraphExec_t exec = nullptr;
    CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    for (int i = 0; i < n; ++i) h.p[i] = -1.0f;
    CHECK(h.p[0] == -1.0f);  // capture ran nothing
    emu::reset_counters();
    CUDA_CHECK(cudaGraphLaunch(exec, s));
    CHECK(poisoned(h.p, bytes));
    // Counted when the copies ran, as before; the wait counts as one stream synchronisation.
    emu::Counters want;
    want.graph_launches = 1;
    want.h2d = 1;
    want.h2d_bytes = bytes;
    want.d2h = 1;
    want.d2h_bytes = bytes;
    CHECK(emu::counters() == want);
    CUDA_CHECK(cudaStreamSynchronize(s));
    want.sync_stream = 1;
    CHECK(emu::counters() == want);
    CHECK(holds_iota(h.p, n));
    // The replay's pinned source is watched until the wait as well.
    CUDA_CHECK(cudaGraphLaunch(exec, s));
    src.p[1] = -1.0f;
    CHECK(cudaStreamSynchronize(s) == cudaErrorIllegalState);
    const std::string msg = cudaGetErrorString(cudaErrorIllegalState);
    CAPTURE(msg);
    CHECK(contains(msg, "captured on stream"));
    CHECK(contains(msg, "replayed by cudaGraphLaunch"));
    (void)cudaGetLastError();
    CUDA_CHECK(cudaGraphExecDestroy(exec));
    CUDA_CHECK(cudaGraphDestroy(graph));
    CUDA_CHECK(cudaStreamDestroy(s));
  }

  TEST_CASE("emu: cublasSgemm and cublasSgemmStridedBatched match a triple loop") {
    cublasHandle_t h = nullptr;
    CUBLAS_CHECK(cublasCreate(&h));
    cudaStream_t s = nullptr;
    CUDA_CHECK(cudaStreamCreate(&s));
    CUBLAS_CHECK(cublasSetStream(h, s));
    const int m = 33, n = 17, k = 65;
    unsigned seed = 1;
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        CAPTURE(ta);
        CAPTURE(tb);
        const int lda = (ta ? k : m) + 3, ldb = (tb ? n : k) + 1, ldc = m + 2;
        const std::vector<float> A = pattern(static_cast<size_t>(lda) * (ta ? m : k), seed++),
                                 B = pattern(static_cast<size_t>(ldb) * (tb ? k : n), seed++);
        std::vector<float> C = pattern(static_cast<size_t>(ldc) * n, seed++), want = C;
        DeviceBuffer<float> dA(A), dB(B), dC(C);
        const float alpha = 0.75f, beta = -1.5f;
        CUBLAS_CHECK(cublasSgemm(h, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                                 m, n, k, &alpha, dA.p, lda, dB.p, ldb, &beta, dC.p, ldc));
        naive_gemm(ta, tb, m, n, k, alpha, A.data(), lda, B.data(), ldb, beta, want.data(), ldc);
        // Both sum in double and round once; they may differ in the last bit of the final float.
        CHECK(pompc::test::check_close("sgemm", dC.download(), want, 1e-6, 1e-6));
      }

    // Strided batched, beta = 0 ignores NaN in C, strides with padding between entries.
    const int batch = 3, lda = k, ldb = n, ldc = m;  // op(A) = A (m x k), op(B) = B^T (B is n x k)
    const long long sA = static_cast<long long>(lda) * k + 5,
                    sB = static_cast<long long>(ldb) * k + 7,
                    sC = static_cast<long long>(ldc) * n + 3;
    const std::vector<float> A = pattern(static_cast<size_t>(sA) * batch, 11),
                             B = pattern(static_cast<size_t>(sB) * batch, 12);
    std::vector<float> C(static_cast<size_t>(sC) * batch, NAN), want(C.size(), NAN);
    DeviceBuffer<float> dA(A), dB(B), dC(C);
    const float alpha = 1.25f, beta = 0.0f;
    CUBLAS_CHECK(cublasSgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_T, m, n, k, &alpha, dA.p, lda,
                                           sA, dB.p, ldb, sB, &beta, dC.p, ldc, sC, batch));
    for (int i = 0; i < batch; ++i)
      naive_gemm(false, true, m, n, k, alpha, A.data() + i * sA, lda, B.data() + i * sB, ldb, beta,
                 want.data() + i * sC, ldc);
    const std::vector<float> got = dC.download();
    size_t bad = 0;
    for (int i = 0; i < batch; ++i)
      for (int j = 0; j < n; ++j)
        for (int r = 0; r < m; ++r) {
          const size_t at = static_cast<size_t>(i * sC + j * ldc + r);
          bad += !(std::fabs(got[at] - want[at]) <= 1e-6 + 1e-6 * std::fabs(want[at]));
        }
    CHECK(bad == 0);
    CHECK(std::isnan(got[static_cast<size_t>(sC) - 1]));  // padding between entries untouched

    // Argument checks, as cuBLAS does them.
    const cublasStatus_t st = cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, dA.p, m - 1,
                                          dB.p, k, &beta, dC.p, m);
    CHECK(st == CUBLAS_STATUS_INVALID_VALUE);
    CHECK(contains(cublasGetStatusString(st), "lda (32)"));
    CHECK(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, dA.p, k - 1, dB.p, k, &beta,
                      dC.p, m) == CUBLAS_STATUS_INVALID_VALUE);
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, dA.p, m, dB.p, k - 1, &beta,
                      dC.p, m) == CUBLAS_STATUS_INVALID_VALUE);
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, dA.p, m, dB.p, k, &beta, dC.p,
                      m - 1) == CUBLAS_STATUS_INVALID_VALUE);
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, -1, n, k, &alpha, dA.p, m, dB.p, k, &beta, dC.p,
                      m) == CUBLAS_STATUS_INVALID_VALUE);
    CHECK(cublasSgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, dA.p, m, sA, dB.p,
                                    k, sB, &beta, dC.p, m, sC, -1) == CUBLAS_STATUS_INVALID_VALUE);
    std::vector<float> host(static_cast<size_t>(m) * n);
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, dA.p, m, dB.p, k, &beta,
                      host.data(), m) == CUBLAS_STATUS_EXECUTION_FAILED);  // C in host memory
    CUBLAS_CHECK(cublasDestroy(h));
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, dA.p, m, dB.p, k, &beta, dC.p,
                      m) == CUBLAS_STATUS_NOT_INITIALIZED);
    CUDA_CHECK(cudaStreamDestroy(s));
  }

  TEST_CASE("emu: cuBLAS TF32 math mode rounds the operands; capture bakes alpha") {
    cublasHandle_t h = nullptr;
    CUBLAS_CHECK(cublasCreate(&h));
    const int m = 8, n = 8, k = 64;
    std::vector<float> A(m * k), B(k * n);
    for (size_t i = 0; i < A.size(); ++i) A[i] = 1.0f + static_cast<float>(i % 13) * 1.0e-4f;
    for (size_t i = 0; i < B.size(); ++i) B[i] = 1.0f - static_cast<float>(i % 11) * 1.0e-4f;
    DeviceBuffer<float> dA(A), dB(B), dC(m * n);
    const float alpha = 1.0f, beta = 0.0f;
    CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, dA.p, m, dB.p, k, &beta,
                             dC.p, m));
    const std::vector<float> full = dC.download();
    CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_TF32_TENSOR_OP_MATH));
    CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, dA.p, m, dB.p, k, &beta,
                             dC.p, m));
    const std::vector<float> tf32 = dC.download();
    double max_diff = 0;
    for (int i = 0; i < m * n; ++i)
      max_diff = std::max(max_diff, std::fabs(double(tf32[i]) - full[i]));
    CHECK(max_diff > 0);  // the 1e-4 steps are below TF32's resolution (2^-10)
    CHECK(max_diff <= k * 2.0 * std::ldexp(1.0, -11) * 1.01);

    // Captured GEMM: alpha (host pointer mode) is read at the call; B is read at replay.
    CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
    cudaStream_t s = nullptr;
    CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    CUBLAS_CHECK(cublasSetStream(h, s));
    float alpha2 = 2.0f;
    CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha2, dA.p, m, dB.p, k, &beta,
                             dC.p, m));
    cudaGraph_t graph = nullptr;
    CUDA_CHECK(cudaStreamEndCapture(s, &graph));
    alpha2 = 50.0f;
    std::vector<float> B2(B.size(), 0.5f);
    dB.upload(B2);
    cudaGraphExec_t exec = nullptr;
    CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    CUDA_CHECK(cudaGraphLaunch(exec, s));
    std::vector<float> want(m * n);
    naive_gemm(false, false, m, n, k, 2.0f, A.data(), m, B2.data(), k, 0.0f, want.data(), m);
    CHECK(pompc::test::check_close("captured sgemm", dC.download(), want, 1e-6, 1e-6));
    CUDA_CHECK(cudaGraphExecDestroy(exec));
    CUDA_CHECK(cudaGraphDestroy(graph));
    CUDA_CHECK(cudaStreamDestroy(s));
    CUBLAS_CHECK(cublasDestroy(h));
  }

  TEST_CASE("emu: a __syncthreads not reached by every thread is reported, then launches recover") {
    DeviceBuffer<float> y(64);
    const std::string msg = error_of(
        [&] { LAUNCH(early_exit_barrier_kernel, dim3(2), dim3(64), 0, nullptr, y.p, 40); });
    CHECK(contains(msg, "divergent __syncthreads"));
    CHECK(contains(msg, "early_exit_barrier_kernel"));
    CHECK(contains(msg, "threads 0-39 wait at __syncthreads"));
    CHECK(contains(msg, "threads 40-63 exited"));
    CHECK(contains(msg, "emu_test.cpp"));
    CHECK(contains(emu::last_error_message(), "divergent __syncthreads"));
    CHECK(cudaGetLastError() == cudaSuccess);  // LAUNCH consumed the error

    const std::string msg2 = error_of([&] {
      LAUNCH(barrier_vs_warp_kernel, dim3(1), dim3(32), 0, nullptr, reinterpret_cast<int*>(y.p));
    });
    CHECK(contains(msg2, "divergent __syncthreads"));
    CHECK(contains(msg2, "threads 0-15 wait at __syncthreads"));
    CHECK(contains(msg2, "threads 16-31 wait at __shfl_sync mask 0xffffffff"));

    // The same kernel with every thread taking part works, on the recycled fibers.
    std::vector<float> x(1024, 1.0f);
    DeviceBuffer<float> dx(x), dout(1);
    LAUNCH(tree_reduce_kernel, dim3(1), dim3(1024), 0, nullptr, dx.p, dout.p);
    CHECK(dout.download()[0] == 1024.0f);
    LAUNCH(early_exit_barrier_kernel, dim3(1), dim3(64), 0, nullptr, y.p, 64);
    CHECK(y.download()[0] == 2.0f);
  }

  TEST_CASE("emu: warp collectives with a missing lane are reported") {
    DeviceBuffer<int> y(32);
    const std::string exited =
        error_of([&] { LAUNCH(lane_exits_kernel, dim3(1), dim3(32), 0, nullptr, y.p); });
    CHECK(contains(exited, "divergent warp collective"));
    CHECK(contains(exited, "lane_exits_kernel"));
    CHECK(contains(exited, "(warp 0 lane 5) exited while lanes 0x0000001f of its warp wait"));
    // Lanes 0-15 finish their half-warp shuffle and exit before lane 16 reaches the full one.
    const std::string late =
        error_of([&] { LAUNCH(lane_exits_late_kernel, dim3(1), dim3(32), 0, nullptr, y.p); });
    CHECK(contains(late, "invalid warp collective"));
    CHECK(contains(late, "lane 15 of mask 0xffffffff has exited"));
    // A full mask in a block of 16 threads names lanes that do not exist.
    const std::string missing =
        error_of([&] { LAUNCH(lane_exits_late_kernel, dim3(1), dim3(24), 0, nullptr, y.p); });
    CHECK(contains(missing, "do not exist"));
  }

  TEST_CASE("emu: the launch helper rejects launch configurations a GPU rejects") {
    DeviceBuffer<float> x(16), y(16);
    const std::string msg = error_of(
        [&] { LAUNCH(axpb_kernel, dim3(1), dim3(2048), 0, nullptr, x.p, y.p, 16, 1.0f, 0.0f); });
    CHECK(contains(msg, "invalid configuration argument"));
    CHECK(contains(msg, "2048 threads"));
    CHECK(contains(error_of([&] {
                     LAUNCH(axpb_kernel, dim3(1), dim3(1, 1, 65), 0, nullptr, x.p, y.p, 16, 1.0f,
                            0.0f);
                   }),
                   "invalid configuration argument"));
    CHECK(contains(error_of([&] {
                     LAUNCH(axpb_kernel, dim3(1, 70000), dim3(32), 0, nullptr, x.p, y.p, 16, 1.0f,
                            0.0f);
                   }),
                   "invalid configuration argument"));
    // Called directly, the error is left for cudaGetLastError, as after kernel<<<...>>>.
    emu::launch("axpb_kernel", axpb_kernel, dim3(1), dim3(32, 33), 0, nullptr, x.p, y.p, 16, 1.0f,
                0.0f);
    CHECK(cudaPeekAtLastError() == cudaErrorInvalidConfiguration);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
    CHECK(cudaGetLastError() == cudaSuccess);
    // A bad stream handle.
    CHECK(contains(error_of([&] {
                     LAUNCH(axpb_kernel, dim3(1), dim3(16), 0,
                            reinterpret_cast<cudaStream_t>(0x1234), x.p, y.p, 16, 1.0f, 0.0f);
                   }),
                   "invalid resource handle"));
  }

  TEST_CASE("emu: a host pointer passed to a kernel or to cuBLAS is refused, naming the call") {
    DeviceBuffer<float> x(16), y(16);
    std::vector<float> host(16, 1.0f);
    float* pinned = nullptr;
    CUDA_CHECK(cudaMallocHost(&pinned, 16 * sizeof(float)));
    // Argument 2 of axpb_kernel(x, y, n, a, b) is host memory: the grid does not run.
    const std::string msg = error_of([&] {
      LAUNCH(axpb_kernel, dim3(1), dim3(16), 0, nullptr, x.p, host.data(), 16, 1.0f, 0.0f);
    });
    CHECK(contains(msg, "kernel axpb_kernel: argument 2 of 5"));
    CHECK(contains(msg, "not inside any cudaMalloc allocation"));
    CHECK(host == std::vector<float>(16, 1.0f));
    CHECK(contains(error_of([&] {
                     LAUNCH(axpb_kernel, dim3(1), dim3(16), 0, nullptr, pinned, y.p, 16, 1.0f,
                            0.0f);
                   }),
                   "argument 1 of 5 is 0x"));
    CHECK(contains(emu::last_error_message(), "pinned host memory"));
    // Null, interior and one-past-the-end device pointers are fine (an empty tail range).
    LAUNCH(axpb_kernel, dim3(1), dim3(8), 0, nullptr, x.p + 8, y.p + 8, 8, 1.0f, 0.0f);
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaFreeHost(pinned));
    // Stream-ordered allocations are device memory too; once freed, a pointer into one is not.
    cudaStream_t s = nullptr;
    CUDA_CHECK(cudaStreamCreate(&s));
    float* async = nullptr;
    CUDA_CHECK(cudaMallocAsync(&async, 16 * sizeof(float), s));
    LAUNCH(axpb_kernel, dim3(1), dim3(16), 0, s, x.p, async, 16, 2.0f, 1.0f);
    CUDA_CHECK(cudaStreamSynchronize(s));
    CUDA_CHECK(cudaFreeAsync(async, s));
    CHECK(contains(error_of([&] {
                     LAUNCH(axpb_kernel, dim3(1), dim3(16), 0, s, x.p, async, 16, 2.0f, 1.0f);
                   }),
                   "argument 2 of 5"));
    CUDA_CHECK(cudaStreamDestroy(s));
    CHECK(cudaMallocAsync(&async, 16, s) == cudaErrorInvalidResourceHandle);
    CHECK(contains(emu::last_error_message(), "cudaMallocAsync: stream"));
    // cuBLAS: C in host memory.
    cublasHandle_t h = nullptr;
    CUBLAS_CHECK(cublasCreate(&h));
    const float one = 1.0f, zero = 0.0f;
    const cublasStatus_t st = cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, x.p, 4, y.p,
                                          4, &zero, host.data(), 4);
    CHECK(st == CUBLAS_STATUS_EXECUTION_FAILED);
    CHECK(contains(cublasGetStatusString(st), "C of batch entry 0 is not inside one cudaMalloc"));
    CUBLAS_CHECK(cublasDestroy(h));
  }

  TEST_CASE("emu: memory API checks pointers and directions") {
    float* d = nullptr;
    CUDA_CHECK(cudaMalloc(&d, 64 * sizeof(float)));
    std::vector<float> h(64, 1.0f);
    CHECK(cudaMemcpy(h.data(), d, 64 * sizeof(float), cudaMemcpyHostToDevice) ==
          cudaErrorInvalidValue);
    CHECK(contains(cudaGetErrorString(cudaErrorInvalidValue), "dst"));
    CHECK(cudaMemcpy(d, h.data(), 65 * sizeof(float), cudaMemcpyHostToDevice) ==
          cudaErrorInvalidValue);
    CHECK(cudaMemcpy(d + 1, h.data(), 63 * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess);
    CHECK(cudaMemset(d, 0, 65 * sizeof(float)) == cudaErrorInvalidValue);
    CHECK(cudaFree(h.data()) == cudaErrorInvalidDevicePointer);
    float* pinned = nullptr;
    CUDA_CHECK(cudaMallocHost(&pinned, 16 * sizeof(float)));
    CHECK(cudaFree(pinned) == cudaErrorInvalidDevicePointer);
    CUDA_CHECK(cudaFreeHost(pinned));
    CUDA_CHECK(cudaFree(d));
    CHECK(cudaFree(d) == cudaErrorInvalidDevicePointer);  // double free
    size_t free_b = 0, total_b = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    float* huge = nullptr;
    CHECK(cudaMalloc(&huge, total_b + 1) == cudaErrorMemoryAllocation);
    (void)cudaGetLastError();
    int count = 0;
    CUDA_CHECK(cudaGetDeviceCount(&count));
    CHECK(count == 1);
    cudaDeviceProp prop{};
    CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    CHECK(std::string(prop.name) == "pompc host emulation");
    CHECK(prop.warpSize == 32);
    CHECK(prop.major == 9);
    CHECK(prop.sharedMemPerBlock == 48u << 10);
    CHECK(prop.multiProcessorCount == emu::os_threads());
    CHECK(cudaSetDevice(1) == cudaErrorInvalidDevice);
    (void)cudaGetLastError();
  }

  TEST_CASE("emu: an out-of-bounds global write dies under AddressSanitizer" *
            doctest::skip(!kAsan)) {
    std::string out;
    const int rc = pompc::test::run_death_scenario("emu_oob_global_write", &out);
    CHECK(rc != 0);
    CHECK(contains(out, "AddressSanitizer"));
    CHECK(contains(out, "heap-buffer-overflow"));
    CHECK(contains(out, "write_one_past_kernel"));
  }

  TEST_CASE("emu: an out-of-bounds dynamic shared memory write dies under AddressSanitizer" *
            doctest::skip(!kAsan)) {
    std::string out;
    const int rc = pompc::test::run_death_scenario("emu_oob_dynamic_smem_write", &out);
    CHECK(rc != 0);
    CHECK(contains(out, "AddressSanitizer"));
    CHECK(contains(out, "smem_one_past_kernel"));
  }

}  // TEST_SUITE("emu")
