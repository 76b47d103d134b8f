// Bench: the optimizer ops on the 5.2M-parameter dog-sized model (suite bench).
//   build/bench -ts=bench -tc='*optim*'          reference backend (this machine's CPU)
//   build/test_gpu -ts=bench -tc='*optim*'       CUDA backend (on a GPU machine)
// Memory traffic per parameter: Adam reads p, g, m, v and writes p, m, v (28 B); clipping reads g
// twice and writes it once (12 B); Polyak reads two arrays and writes one (12 B).
#include <doctest/doctest.h>

#include <cstdio>
#include <functional>
#include <memory>
#include <vector>

#include "bench_util.h"
#include "ops.h"

#ifndef POMPC_EMU
#include <cuda_runtime.h>
#endif

namespace {

void bench_optim(pompc::Ops& o, const char* label, double peak_gbs, const char* peak_name) {
  const size_t n = 5'200'000;
  float* p = o.alloc<float>(n);
  float* g = o.alloc<float>(n);
  float* m = o.alloc<float>(n);
  float* v = o.alloc<float>(n);
  float* norm = o.alloc<float>(1);
  auto* s = o.alloc<pompc::AdamScalars>(1);
  pompc::AdamGroups groups;
  groups.add(n / 10, 0.3f * 3e-4f);
  groups.add(n - n / 10, 3e-4f);
  auto sync = [&] { o.synchronize(); };
  struct Row {
    const char* name;
    double bytes_per_param;
    std::function<void()> fn;
  } rows[] = {
      {"adam_update", 28, [&] { o.adam_update({}, groups, p, g, m, v, s); }},
      {"clip_grad_norm", 12, [&] { o.clip_grad_norm(g, n, 20.0f, norm); }},
      {"polyak", 12, [&] { o.polyak(m, v, n, 0.01f); }},
  };
  for (const Row& r : rows) {
    const double ms = pompc::test::time_ms(r.fn, 20, sync);
    const double gbs = r.bytes_per_param * n / (ms * 1e6);
    std::printf("bench: optim/%s %s n=5.2M: %.3f ms, %.1f GB/s (%.0f%% of %s %.0f GB/s)\n", r.name,
                label, ms, gbs, 100 * gbs / peak_gbs, peak_name, peak_gbs);
  }
  for (void* q : {static_cast<void*>(p), static_cast<void*>(g), static_cast<void*>(m),
                  static_cast<void*>(v), static_cast<void*>(norm), static_cast<void*>(s)})
    o.free_bytes(q);
}

}  // namespace

TEST_SUITE("bench") {
  TEST_CASE("bench optim: reference backend") {
    auto ref = pompc::make_ref_ops();
    bench_optim(*ref, "ref", pompc::test::host_triad_gbs(), "measured triad");
  }

#ifndef POMPC_EMU
  TEST_CASE("bench optim: CUDA backend [gpu-only]") {
    auto gpu = pompc::make_cuda_ops();
    int dev = 0, khz = 0, bits = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&khz, cudaDevAttrMemoryClockRate, dev);
    cudaDeviceGetAttribute(&bits, cudaDevAttrGlobalMemoryBusWidth, dev);
    const double peak = 2.0 * khz * 1e3 * (bits / 8) / 1e9;  // DDR: two transfers per clock
    bench_optim(*gpu, "cuda", peak, "DRAM peak");
  }
#endif
}
