// tests/emu/include/cuda_runtime.h: CUDA on the CPU, for build/test_emu. Run book.
//
// WHAT: kernels/*.cu compiled by g++ (-DPOMPC_EMU, this directory first on the include path) run
// unmodified on the host, under AddressSanitizer and UBSan. `#include <cuda_runtime.h>` gives the
// kernel language (emu/device.h), the runtime API (emu/runtime_api.h, emu/types.h) and
// emu::launch (emu/launch.h); <cublas_v2.h> gives cuBLAS's SGEMMs. Implementation:
// tests/emu/scheduler.cpp (threads, blocks, barriers, warps), tests/emu/runtime.cpp (memory,
// streams, events, graphs, errors), tests/emu/cublas.cpp (on src/ref/gemm.h). Tests:
// `build/test_emu -ts=emu`
// (tests/emu/emu_test.cpp).
//
// DESIGN
// - Threads are fibers. Each CUDA thread of a block is a cooperative fiber (on x86-64 a
//   hand-written register switch, elsewhere makecontext + swapcontext) on one OS thread. A fiber
//   runs its thread until it blocks (__syncthreads, a warp collective) or exits, and an exiting
//   fiber goes straight on with the next not-yet-started thread on the same stack, so a kernel
//   without barriers costs no context switch per thread. Blocked threads resume in arrival order
//   (round robin): the schedule of a block is deterministic. build/test_race randomises it instead
//   and checks every access of kernel code for data races (run book: tests/emu/internal.h). Fiber
//   stacks (256 KiB, POMPC_EMU_STACK_KB; mmap with a guard page below) are pooled per OS thread and
//   reused across blocks and launches. Every switch is announced to AddressSanitizer
//   (__sanitizer_start/finish_switch_fiber).
// - Blocks run on OS threads: POMPC_EMU_THREADS of them (default max(2, min(cores, 4))): the
//   launching thread and persistent workers. Block b runs on thread b mod T (a fixed assignment:
//   reruns place blocks identically), so atomics across blocks are really concurrent. There is no
//   forward-progress guarantee between blocks (as on a GPU without a cooperative launch): a block
//   that spins waiting for a later block can hang.
// - Shared memory rule: `__shared__` is `static thread_local`. This is exact because one OS thread
//   runs one block at a time from its first thread to its last, and all fibers of that block run on
//   that OS thread (a fiber never migrates). Static shared memory keeps what the previous block on
//   that OS thread left (zero at first use) and, being TLS, has no ASan redzones. Dynamic shared
//   memory (pompc::dynamic_smem<T>(), i.e. emu::dynamic_shared_memory()) is an exact-size heap
//   buffer per OS thread, poisoned with 0xff bytes per block; `extern __shared__` arrays are not
//   supported (use pompc::dynamic_smem).
// - Barriers: __syncthreads waits for every thread of the block. When nothing can run any more
//   (threads at a barrier while others have exited or wait at a warp collective) the launch fails
//   with cudaErrorIllegalInstruction, and cudaGetErrorString / emu::last_error_message() say
//   "divergent __syncthreads (host emulation: kernel K, block (x,y,z): threads 0-31 wait at
//   __syncthreads (file:line); threads 32-63 exited)". The remaining fibers are abandoned (their
//   stacks are reset; destructors of their locals do not run).
// - Warps are 32 consecutive linear thread ids (x fastest, then y, then z). A collective is a
//   rendezvous of exactly the lanes in its mask; partial masks work. A mask that omits the caller,
//   names lanes beyond the block, or names an exited lane, lanes that disagree on the collective,
//   and a width that is not a power of two <= 32 fail the launch the same way ("invalid warp
//   collective" / "divergent warp collective"). A shuffle whose source lane is outside the mask
//   returns all-ones bits (NaN as float): reading it is a bug the GPU would hide.
// - Execution is synchronous: a launch, memcpy or memset on any stream has finished when the call
//   returns, so every stream is trivially in order, events are complete when recorded
//   (cudaEventElapsedTime measures host time between the records) and kernel faults are reported
//   by the launch itself rather than by a later synchronisation. Errors are not sticky.
// - ...but the host sees asynchronous copies as a GPU would make it see them. A cudaMemcpyAsync
//   from the device into pinned memory (cudaMallocHost / cudaHostAlloc), eager or a node of a
//   replayed graph, leaves the destination poisoned (0xff bytes: NaN floats, -1 integers) until a
//   host wait that covers the copy delivers the bytes: cudaStreamSynchronize / cudaStreamQuery of
//   its stream (or of the legacy stream, for a blocking stream), cudaEventSynchronize /
//   cudaEventQuery of an event recorded after it (on its stream, or on one that waited for it),
//   cudaDeviceSynchronize, a synchronous cudaMemcpy except device to device, a cudaMemcpyAsync into
//   pageable memory on its stream, cudaFree / cudaFreeHost. A cudaMemset, a device-to-device
//   cudaMemcpy and waits for other streams deliver nothing. From pinned memory to the device, the
//   source must stay unchanged until such a wait. The wait reports the host's misuse,
//   cudaErrorIllegalState naming the copy and where it was issued: "the host wrote pinned memory
//   [p, p+n) ... that cudaMemcpyAsync(...) issued on stream S from f (file:line) still writes" (a
//   GPU lets the copy land over the host's write at an unknown time) or "... could still be
//   reading" (reuse of a staging buffer before its upload is known done). Copies into pageable
//   memory return when done and copies from it stage the source, so both are unaffected. Details:
//   tests/emu/runtime.cpp ("ordering", "pending").
// - Graph capture: on a capturing stream, launches, memcpy/memset and cuBLAS calls are recorded,
//   not run, with kernel arguments (and cuBLAS's host-pointer alpha/beta) copied at capture time;
//   cudaGraphLaunch replays the nodes in capture order, which respects every dependency. Streams
//   join a capture through cudaStreamWaitEvent on an event recorded in it (fork/join). Calls a
//   capture forbids (cudaMalloc, cudaMemcpy, cudaDeviceSynchronize, ... in Global/ThreadLocal mode,
//   work on the legacy stream) fail and invalidate the capture as they do on a GPU.
// - Memory: cudaMalloc and cudaMallocHost are posix_memalign(256) of the exact size, so ASan sees
//   every out-of-bounds access and use after free; memcpy/memset check that the device side lies
//   inside one cudaMalloc allocation. A pointer argument of a kernel (or of a cuBLAS call) must be
//   null or point into a live cudaMalloc/cudaMallocAsync allocation: host memory, pinned or not,
//   is refused before the grid runs, naming the kernel and the argument (a GPU would fault or read
//   garbage).
// - Launch checks as on a GPU: block <= 1024 threads (x, y <= 1024, z <= 64), grid y, z <= 65535,
//   dynamic shared memory <= 48 KiB unless raised with cudaFuncSetAttribute (<= 227 KiB).
//
// NOT SUPPORTED: `<<< >>>` (use LAUNCH), `extern __shared__`, __noinline__, cooperative groups,
// dynamic parallelism, textures/surfaces, half/bfloat16 types, cudaMallocManaged/Async,
// cudaMemcpy2D, cudaLaunchKernel, events/streams across devices (there is one device), the
// fast-math error of __expf & co. (the exact function is used), TF32 except in cuBLAS (see
// cublas_v2.h). Static shared memory size is not checked against the 48 KiB limit.
#pragma once

#include "emu/types.h"
#include "emu/runtime_api.h"
#include "emu/device.h"
#include "emu/launch.h"
