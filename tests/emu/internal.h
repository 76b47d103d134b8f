// tests/emu/internal.h: what the emulation's translation units share (not part of the CUDA API).
//
// Run book: tests/emu/include/cuda_runtime.h.
//   scheduler.cpp  execute_grid: runs one grid on the OS threads, every block's threads as fibers
//   runtime.cpp    set_error (the per-host-thread last error and its explanation) and submit
//                  (run work on a stream now, numbered for the clocks that decide what a host
//                  wait covers, or record it into the stream's capture)
//   cublas.cpp     uses submit for the GEMMs and count_work for the counters (emu/counters.h)
#pragma once

#include <cuda_runtime.h>
#include <emu/counters.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace emu::detail {

// A grid ready to run: the validated launch configuration and the kernel with baked arguments.
struct Grid {
  const char* name;
  std::shared_ptr<const KernelCall> call;
  dim3 grid, block;
  size_t smem;
};

// Outcome of a grid: cudaSuccess, or the failure and its explanation.
struct GridResult {
  cudaError_t code = cudaSuccess;
  std::string message;
};

// Runs every block of the grid; returns when all are done or the first failure stopped the grid.
// Serialises grids from different host threads (the device runs one grid at a time).
GridResult execute_grid(const Grid& g);

// Records `code` as this host thread's last error with an explanation (printf-style; may be
// empty) and returns it. cudaGetErrorString(code) then returns "<CUDA's text> (host emulation:
// <explanation>)", or the explanation alone when it starts with '!' (used for divergence
// reports, whose text replaces CUDA's).
[[gnu::format(printf, 2, 3)]] cudaError_t set_error(cudaError_t code, const char* fmt, ...);

// Work on `stream`: recorded as a graph node when the stream is capturing (what names it in
// messages), otherwise run now. Returns the stream/capture error or the work's result; errors
// are already recorded with set_error.
cudaError_t submit(cudaStream_t stream, const char* what, std::function<cudaError_t()> work);

// True when ptr..ptr+bytes lies inside one live cudaMalloc allocation.
bool is_device_range(const void* ptr, size_t bytes);
// The live cudaMalloc allocation holding ptr: true and its start and size, or false.
bool device_allocation_of(const void* ptr, uintptr_t* base, size_t* bytes);

// ---- counters (runtime.cpp; emu/counters.h) -----------------------------------------------------
// Adds to the process-wide counts, under their lock.
void count(const std::function<void(Counters&)>& add);
// Kernel or cuBLAS work named `name` (the kernel, or the cuBLAS function) that runs now: issued
// by the host (kernels, cublas), or a node of the graph replay this host thread is running
// (graph_kernels, graph_cublas); also counted by name (kernel_counts, cublas_counts).
void count_work(bool cublas, const char* name);

// ---- race detection (build/test_race; scheduler.cpp) ---------------------------------------------
// test_race compiles kernels with GCC's -fsanitize=thread instrumentation and links
// tests/emu/race.cpp instead of ThreadSanitizer's runtime: every load and store of kernel code
// calls race_access. For each 4-byte granule of device memory (per grid) and of any other
// non-stack memory (static and dynamic shared memory; per block) it keeps the last write and up
// to four reads since, each as (thread, block, barrier interval, warp clock), and reports a data
// race (the launch fails with cudaErrorLaunchFailure and says who and where) when an access
// conflicts with one that is not ordered before it: a write against any access, a read against a
// write, by another thread, unless both are atomics. Ordered means the same thread, an earlier
// barrier interval of the same block (a __syncthreads in between), or, within one warp, a
// __syncwarp both lanes took part in after the earlier access (vector clocks over the lanes).
// Nothing else orders memory: warp shuffles and votes exchange registers, not memory; blocks of
// one grid are never ordered; a kernel boundary orders everything. The thread's own stack is not
// tracked. race_enable also randomises the schedule: threads start in a random order, the ready
// thread to resume is drawn at random, and about one access in 16 first yields to another ready
// thread of the block (seeded: POMPC_EMU_SCHEDULE_SEED), so a missing barrier also changes the
// result. Blocks run on one OS thread.
void race_enable(uint64_t schedule_seed);
bool race_enabled();
void race_access(const void* p, size_t size, bool write, bool atomic);

}  // namespace emu::detail
