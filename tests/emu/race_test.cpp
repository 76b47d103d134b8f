// tests/emu/race_test.cpp: the race detector of the CUDA host emulation (suite "race", built into
// build/test_race only, with this file's kernels instrumented like kernels/*.cu; run book:
// tests/emu/internal.h).
//
// Run: make build/test_race && build/test_race -ts=race
// Planted faults, each reported as a data race naming the kernel, the two threads and the memory:
//   - a __syncthreads missing after thread 0 writes a shared value that every thread then reads
//     (the pattern of mppi_update / mppi_select's shared scalars);
//   - a __syncwarp missing between lanes writing shared memory and reading their neighbours'
//     (SimNorm's group exchange), and the same exchange "ordered" by a shuffle instead (shuffles
//     move registers, not memory);
//   - two blocks writing the same global element (blocks of a grid are never ordered).
// Their correct versions run clean, and with reports off the randomised schedule makes the
// missing __syncwarp change the result.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "../test_util.h"
#include "common.cuh"

namespace {

bool contains(const std::string& s, const char* part) {
  return s.find(part) != std::string::npos;
}

using pompc::test::error_of;

struct Buf {
  float* p = nullptr;
  size_t n;
  explicit Buf(const std::vector<float>& h) : n(h.size()) {
    CUDA_CHECK(cudaMalloc(&p, n * sizeof(float)));
    CUDA_CHECK(cudaMemcpy(p, h.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  }
  explicit Buf(size_t count) : Buf(std::vector<float>(count, 0.0f)) {}
  ~Buf() { cudaFree(p); }
  std::vector<float> get() const {
    std::vector<float> h(n);
    CUDA_CHECK(cudaMemcpy(h.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost));
    return h;
  }
};

// y[i] = x[i] + 2 x[0]: thread 0 puts 2 x[0] in shared memory, everyone reads it.
__global__ void broadcast_kernel(const float* x, float* y, int n, int sync) {
  __shared__ float s;
  if (threadIdx.x == 0) s = 2.0f * x[0];
  if (sync) __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) y[i] = x[i] + s;
}

// y[lane] = x[(lane + 1) % 32] through shared memory. mode 0: __syncwarp between the write and
// the read (correct); 1: nothing; 2: a shuffle instead of __syncwarp.
__global__ void rotate_kernel(const float* x, float* y, int mode) {
  __shared__ float sh[32];
  const unsigned lane = threadIdx.x;
  sh[lane] = x[lane];
  float v = 0.0f;
  if (mode == 0) __syncwarp();
  if (mode == 2) v = __shfl_sync(0xffffffffu, x[lane], 0) * 0.0f;
  y[lane] = sh[(lane + 1) & 31] + v;
}

// Every block's thread 0 stores its block's first element into out[0] (a lost update: the
// correct version writes out[blockIdx.x]).
__global__ void collide_kernel(const float* x, float* out, int correct) {
  if (threadIdx.x == 0) out[correct ? blockIdx.x : 0] = x[blockIdx.x * blockDim.x];
}

std::vector<float> iota(size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = 1.0f + float(i);
  return v;
}

}  // namespace

TEST_SUITE("race") {
  TEST_CASE("race: the detector is on in this build") { CHECK(emu::race_detection()); }

  TEST_CASE("race: a missing __syncthreads after thread 0 writes shared memory is reported") {
    Buf x(iota(300)), y(300);
    LAUNCH(broadcast_kernel, dim3(1), dim3(128), 0, nullptr, x.p, y.p, 300, 1);
    const auto good = y.get();
    for (int i = 0; i < 300; ++i) CHECK(good[i] == 1.0f + float(i) + 2.0f);
    const std::string msg = error_of([&] {
      LAUNCH(broadcast_kernel, dim3(1), dim3(128), 0, nullptr, x.p, y.p, 300, 0);
    });
    CHECK(contains(msg, "data race"));
    CHECK(contains(msg, "kernel broadcast_kernel"));
    CHECK(contains(msg, "shared memory"));
    MESSAGE(msg);
    CHECK(contains(msg, "thread (0,0,0) (warp 0 lane 0)"));  // thread 0's write, either side
    // The next launch works.
    LAUNCH(broadcast_kernel, dim3(1), dim3(128), 0, nullptr, x.p, y.p, 300, 1);
  }

  TEST_CASE("race: a missing __syncwarp between lanes is reported; a shuffle does not order memory") {
    Buf x(iota(32)), y(32);
    LAUNCH(rotate_kernel, dim3(1), dim3(32), 0, nullptr, x.p, y.p, 0);
    const auto good = y.get();
    for (int l = 0; l < 32; ++l) CHECK(good[l] == 1.0f + float((l + 1) % 32));
    for (int mode : {1, 2}) {
      CAPTURE(mode);
      const std::string msg =
          error_of([&] { LAUNCH(rotate_kernel, dim3(1), dim3(32), 0, nullptr, x.p, y.p, mode); });
      CHECK(contains(msg, "data race"));
      CHECK(contains(msg, "kernel rotate_kernel"));
      CHECK(contains(msg, "of the same block"));
    }
  }

  TEST_CASE("race: with reports off, the randomised schedule makes the missing __syncwarp show") {
    Buf y(32);
    const bool was = emu::set_race_reports(false);
    int wrong_runs = 0;
    for (int run = 0; run < 8; ++run) {  // new inputs each time: a stale read shows
      std::vector<float> xs = iota(32);
      for (float& v : xs) v += 100.0f * float(run);
      Buf x(xs);
      LAUNCH(rotate_kernel, dim3(1), dim3(32), 0, nullptr, x.p, y.p, 1);
      const auto got = y.get();
      bool wrong = false;
      for (int l = 0; l < 32; ++l) wrong |= got[l] != xs[(l + 1) % 32];
      wrong_runs += wrong;
    }
    emu::set_race_reports(was);
    MESSAGE("missing __syncwarp: " << wrong_runs << " of 8 launches read a stale neighbour");
    CHECK(wrong_runs > 0);
  }

  TEST_CASE("race: two blocks writing one global element are reported") {
    Buf x(iota(4 * 64)), out(4);
    LAUNCH(collide_kernel, dim3(4), dim3(64), 0, nullptr, x.p, out.p, 1);
    CHECK(out.get() == std::vector<float>{1.0f, 65.0f, 129.0f, 193.0f});
    const std::string msg =
        error_of([&] { LAUNCH(collide_kernel, dim3(4), dim3(64), 0, nullptr, x.p, out.p, 0); });
    CHECK(contains(msg, "data race"));
    CHECK(contains(msg, "global memory"));
    CHECK(contains(msg, "byte 0 of a 16-byte cudaMalloc block"));
    CHECK(contains(msg, "of block (0,0,0)"));
  }
}
