// tests/emu/include/emu/launch.h: kernel launch and the emulation's own queries (namespace emu).
//
// Part of the CUDA host emulation (run book: tests/emu/include/cuda_runtime.h).
// kernels/common.cuh's pompc::launch calls emu::launch(name, kernel, grid, block, smem, stream,
// args...) with the arguments already converted to the kernel's parameter types; emu::launch copies
// them into a kernel call object (so a capture bakes them, exactly as a GPU graph does), then runs
// the grid now or records it into the stream's capture. Every pointer argument must be null or
// point into device memory (cudaMalloc): a host pointer is refused before the grid runs. Errors are reported like CUDA's: through
// cudaGetLastError(), with the emulation's explanation in cudaGetErrorString's text and in
// emu::last_error_message().
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "emu/types.h"

namespace emu {

namespace detail {

// One kernel with its baked arguments; run() executes the body for the current CUDA thread.
struct KernelCall {
  virtual ~KernelCall() = default;
  virtual void run() const = 0;
};

template <class... P>
struct KernelCallOf final : KernelCall {
  void (*fn)(P...);
  std::tuple<P...> args;
  KernelCallOf(void (*f)(P...), std::tuple<P...> a) : fn(f), args(std::move(a)) {}
  // std::apply copies the arguments for each CUDA thread, as every GPU thread gets its own.
  void run() const override { std::apply(fn, args); }
};

void launch_erased(const char* name, const void* fn, std::shared_ptr<const KernelCall> call,
                   dim3 grid, dim3 block, size_t smem, cudaStream_t stream);

// Argument `index` (0-based, of `count`) of kernel `name` is a pointer: null, or inside (or one
// past the end of) a live cudaMalloc allocation. Anything else, host memory above all (a GPU
// faults on it or reads garbage), records cudaErrorInvalidValue naming the kernel and argument
// and returns false.
bool kernel_pointer_ok(const char* name, int index, int count, const void* p);

template <class P>
bool pointer_arg_ok(const char* name, int index, int count, const P& arg) {
  if constexpr (std::is_pointer_v<P>)
    return kernel_pointer_ok(name, index, count, static_cast<const void*>(arg));
  else
    return true;
}

}  // namespace detail

// Runs (or, on a capturing stream, records) kernel<<<grid, block, smem, stream>>>(args...).
template <class... P>
void launch(const char* name, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem,
            cudaStream_t stream, std::type_identity_t<P>... args) {
  int index = 0;
  const bool ok = (detail::pointer_arg_ok<P>(name, index++, sizeof...(P), args) && ...);
  if (!ok) return;
  detail::launch_erased(name, reinterpret_cast<const void*>(kernel),
                        std::make_shared<const detail::KernelCallOf<P...>>(
                            kernel, std::tuple<P...>(std::move(args)...)),
                        grid, block, smem, stream);
}

// The current block's dynamic shared memory: exactly the launch's smem bytes, 16-byte aligned,
// heap-allocated per OS thread (so AddressSanitizer catches accesses past the end) and filled
// with 0xff bytes at the start of every block (NaN as float, -1 as int: reads of never-written
// dynamic shared memory show up in results).
void* dynamic_shared_memory();

// Grids executed since the process started (direct launches and kernel nodes of graph replays).
uint64_t launch_count();

// The explanation of this host thread's most recent error from the emulation ("" if none).
std::string last_error_message();

// OS threads that execute blocks (POMPC_EMU_THREADS, default max(2, min(cores, 4))).
int os_threads();

// How many distinct OS threads ran at least one block of the most recent grid.
int last_launch_os_threads();

// Race detection (build/test_race only; tests/emu/internal.h has the run book): on when kernels
// were compiled with -fsanitize=thread against tests/emu/race.cpp. set_race_reports(false) keeps
// the randomised schedule but stops reporting races, so that a test can show what a race does to
// a result; it returns the previous setting.
bool race_detection();
bool set_race_reports(bool on);

}  // namespace emu
