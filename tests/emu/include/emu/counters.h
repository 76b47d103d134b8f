// tests/emu/include/emu/counters.h: what the host asked of the emulated GPU, counted (namespace
// emu). Run book of the emulation: tests/emu/include/cuda_runtime.h; implementation:
// tests/emu/runtime.cpp and tests/emu/cublas.cpp; test: build/test_emu -ts=emu -tc='*counters*'.
// Emulation builds only (test_emu, test_race, bench): include <emu/counters.h> under POMPC_EMU;
// <cuda_runtime.h> does not pull it in.
//
// The counts are those a real GPU and driver would see, not the emulation's internals:
//   - work is counted when it runs, never when a capture records it: a launch, copy, memset or
//     cuBLAS call on a capturing stream counts nothing until cudaGraphLaunch replays it, and then
//     counts as a node of that replay (graph_kernels, graph_cublas; copies and memsets count
//     the same whether they ran eagerly or in a replay: the bytes cross the bus either way);
//   - a call refused with an error (a cudaMemcpy or cudaStreamSynchronize that a capture forbids,
//     a launch with a bad configuration, a bad pointer) counts nothing;
//   - host synchronisations are the calls after which the host has waited for the device, as
//     the CUDA runtime API documents them ("API synchronization behavior"): cudaStreamSynchronize,
//     cudaDeviceSynchronize, cudaEventSynchronize; a synchronous cudaMemcpy (and
//     cudaMemcpyToSymbol / FromSymbol) except device to device; a cudaMemcpyAsync from device to
//     pageable host memory (one not from cudaMallocHost / cudaHostAlloc), which returns only
//     once the copy is done; and cudaFree / cudaFreeHost, which wait for the device to go idle.
//     Queries (cudaStreamQuery, cudaEventQuery) do not wait and count nothing. (A
//     device-to-host copy into pinned memory counts when it runs, at issue or in its replay,
//     though the emulation hands its bytes to the host only at a later wait: cuda_runtime.h.)
// Counts are process-wide (every host thread), since the last reset_counters().
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace emu {

struct Counters {
  // Work issued by the host one call at a time (outside a capture).
  uint64_t kernels = 0;  // kernel launches (LAUNCH / emu::launch)
  uint64_t cublas = 0;   // cuBLAS GEMM calls (cublasSgemm, cublasSgemmStridedBatched)
  // CUDA graphs.
  uint64_t graph_launches = 0;        // cudaGraphLaunch calls run from the host
  uint64_t graph_kernels = 0;         // kernel nodes those launches ran
  uint64_t graph_cublas = 0;          // cuBLAS nodes those launches ran
  uint64_t graph_instantiations = 0;  // cudaGraphInstantiate calls
  // Host synchronisations, by cause (syncs() is their sum).
  uint64_t sync_stream = 0;  // cudaStreamSynchronize
  uint64_t sync_device = 0;  // cudaDeviceSynchronize
  uint64_t sync_event = 0;   // cudaEventSynchronize
  uint64_t sync_copy = 0;    // synchronous copies (see above)
  uint64_t sync_free = 0;    // cudaFree, cudaFreeHost (of a non-null pointer)
  // Copies that ran (eagerly or as graph nodes), by direction; cudaMemcpyDefault is resolved from
  // the pointers.
  uint64_t h2d = 0, h2d_bytes = 0;  // host to device
  uint64_t d2h = 0, d2h_bytes = 0;  // device to host
  uint64_t d2d = 0, d2d_bytes = 0;  // device to device
  uint64_t memsets = 0;             // cudaMemset / cudaMemsetAsync that ran
  // Memory management.
  uint64_t allocs = 0;       // cudaMalloc, cudaMallocAsync, cudaMallocHost, cudaHostAlloc
  uint64_t alloc_bytes = 0;  // their sizes
  uint64_t frees = 0;        // cudaFree, cudaFreeAsync, cudaFreeHost (of a non-null pointer)

  uint64_t syncs() const { return sync_stream + sync_device + sync_event + sync_copy + sync_free; }
  bool operator==(const Counters&) const = default;
};

// The counts since the last reset_counters() (or since the process started).
Counters counters();
void reset_counters();

// The kernel and cuBLAS work above by name: kernels by the name LAUNCH gives emu::launch (the
// kernel function's name), cuBLAS calls by their function ("cublasSgemm",
// "cublasSgemmStridedBatched"). Counted with the same rules as Counters, since the same
// reset_counters(); for each map the eager counts sum to Counters::kernels (cublas) and the graph
// counts to Counters::graph_kernels (graph_cublas). A name that ran neither way is absent.
struct NamedCount {
  uint64_t eager = 0;  // run one call at a time (Counters::kernels, Counters::cublas)
  uint64_t graph = 0;  // run as nodes of graph replays (graph_kernels, graph_cublas)
  bool operator==(const NamedCount&) const = default;
};
std::map<std::string, NamedCount> kernel_counts();
std::map<std::string, NamedCount> cublas_counts();

// Every field of Counters, in declaration order, with its name: for tables and comparisons.
struct CounterField {
  const char* name;
  uint64_t Counters::*member;
};
const std::vector<CounterField>& counter_fields();

}  // namespace emu
