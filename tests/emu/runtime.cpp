// tests/emu/runtime.cpp: the CUDA runtime API of the host emulation. Run book.
//
// The CUDA-level picture is in tests/emu/include/cuda_runtime.h; this file holds the host side.
//   errors    per host thread: the last error (cleared by cudaGetLastError) and the explanation
//             of the most recent failure, which cudaGetErrorString returns for that code
//             ("invalid argument (host emulation: cudaMemcpy: dst ... is not device memory)")
//   memory    cudaMalloc/cudaMallocHost = posix_memalign(256, exact size), tracked in a map so
//             that cudaFree, memcpy and memset can check their pointers and cudaMemGetInfo and
//             the out-of-memory limit (half the host's RAM) can be honoured
//   streams   objects that carry flags, capture state and a clock (below): all work runs
//             synchronously in the calling thread (submit), so every stream is in order
//   events    timestamps of the host clock taken when recorded, and the recording stream's clock
//   ordering  what a host wait covers, as on a GPU, although the work itself has already run:
//             each piece of work submitted outside a capture (a launch, copy, memset, cuBLAS
//             call, or a whole cudaGraphLaunch, whose nodes share its number) and each event
//             record gets an issue number; a stream's clock (stream id -> latest issue number
//             covered) is its own latest work joined with what that work waits for:
//             cudaStreamWaitEvent joins the event's clock; work on the legacy stream waits for
//             every blocking stream's (cudaStreamPerThread counts as blocking), and work on a
//             blocking stream for the legacy stream's. Waiting for the legacy stream
//             (cudaStreamSynchronize(0), a synchronous copy) covers every blocking stream too
//   pending   copies between the device and pinned host memory (cudaMallocHost/cudaHostAlloc)
//             are asynchronous for the host: cudaMemcpyAsync device to host, eager or a replayed
//             graph node, poisons the destination with 0xff bytes (NaN floats, -1 integers) and
//             keeps the bytes; host to device keeps the bytes it read (a pending device-to-host
//             copy's where they overlap, as the stream sees them). A host wait that covers the
//             copy (wait_for) delivers the former and retires the latter: cudaStreamSynchronize
//             or a cudaStreamQuery of its stream (or of the legacy stream, for a blocking
//             stream), cudaEventSynchronize or cudaEventQuery of an event recorded after it,
//             cudaDeviceSynchronize, a synchronous cudaMemcpy / cudaMemcpyToSymbol /
//             cudaMemcpyFromSymbol except device to device (they wait for the legacy stream
//             first), a cudaMemcpyAsync into pageable memory on its stream, and cudaFree /
//             cudaFreeHost (every copy; cudaFreeHost of a pinned buffer thus waits for its
//             copies before freeing it). cudaMemset, cudaFreeAsync, cudaStreamDestroy, a
//             device-to-device cudaMemcpy and a query of the stream or event of other work do
//             not wait. The host's misuse is reported by the wait with set_error
//             (cudaErrorIllegalState, naming the copy, its stream and call site): a destination
//             that no longer holds the poison (the host wrote it while the copy could still land
//             over it), or a watched source byte that changed (the host reused the buffer while
//             the copy could still read it); the copy is delivered all the same. A later
//             device-to-host copy into bytes a pending copy reads or writes checks them at once
//             (the stream orders it after that copy). Not covered: host-to-host copies (they run
//             at issue), a host write of 0xff bytes into a pending destination
//   capture   a stream in capture appends nodes (a name and a closure that does the work, with
//             arguments baked) to its capture's graph instead of running them; cudaStreamWaitEvent
//             on an event recorded inside a capture makes another stream join it (fork), and
//             recording an event on a forked stream after its last work and waiting on it from
//             another member joins it back; cudaStreamEndCapture refuses unjoined forks
//   graphs    cudaGraphInstantiate shares the node list; cudaGraphLaunch runs the nodes in
//             capture order (or records them, when launched into a capturing stream)
//   counters  emu/counters.h: counted where the work runs (inside the closures submit runs or a
//             capture records), so a recorded node counts once per replay and nothing at
//             capture; a per-thread replay depth tells a graph's nodes from eager work
// One mutex (g_mu) guards the registries, clocks and pending copies; work itself runs outside it.
#include "internal.h"

#include <execinfo.h>
#include <unistd.h>

#include <chrono>
#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

// Work known to be done, as a vector clock: stream id -> issue number of that stream's latest
// work covered ("ordering" in the run book above).
using WorkClock = std::map<uint64_t, uint64_t>;

struct CUstream_st {
  unsigned flags = cudaStreamDefault;
  int priority = 0;
  bool legacy = false;     // the NULL stream (0 or cudaStreamLegacy)
  uint64_t cap = 0;        // id of the capture this stream belongs to, 0: none
  size_t cap_work = 0;     // nodes this stream added to that capture
  bool cap_joined = true;  // a forked stream whose last work is joined back
  uint64_t id = 0;         // names the stream in clocks; never reused
  uint64_t last = 0;       // issue number of its latest work (0: none yet)
  WorkClock after;         // other streams' work that its work waits for (events, legacy rules)
};

struct CUevent_st {
  enum class Kind { Never, Timed, Captured };
  unsigned flags = cudaEventDefault;
  Kind kind = Kind::Never;
  std::chrono::steady_clock::time_point t{};
  WorkClock done;  // Timed: the work its completion implies
  uint64_t cap = 0;
  CUstream_st* cap_stream = nullptr;
  size_t cap_work = 0;
};

// The sanitizer runtime's symboliser, where one is linked (call sites in reports).
extern "C" [[gnu::weak]] void __sanitizer_symbolize_pc(void* pc, const char* fmt, char* out,
                                                       size_t out_size);

struct CUgraphNode_st {
  std::string what;
  std::function<cudaError_t()> run;
};

struct CUgraph_st {
  std::deque<CUgraphNode_st> nodes;  // deque: node handles stay valid while recording
};

struct CUgraphExec_st {
  std::shared_ptr<const std::vector<CUgraphNode_st>> nodes;
};

namespace emu::detail {
namespace {

// ---- errors -------------------------------------------------------------------------------------
struct LastError {
  cudaError_t code = cudaSuccess;         // cudaGetLastError
  cudaError_t detail_code = cudaSuccess;  // the code `detail` explains
  std::string detail;
};
thread_local LastError tls_error;

const char* cuda_text(cudaError_t e) {
  switch (e) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorInsufficientDriver:
      return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorNoKernelImageForDevice:
      return "no kernel image is available for execution on the device";
    case cudaErrorInvalidSymbol:
      return "invalid device symbol";
    case cudaErrorInvalidDevicePointer:
      return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection:
      return "invalid copy direction for memcpy";
    case cudaErrorInvalidDeviceFunction:
      return "invalid device function";
    case cudaErrorNoDevice:
      return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice:
      return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle:
      return "invalid resource handle";
    case cudaErrorIllegalState:
      return "the operation cannot be performed in the present state";
    case cudaErrorNotReady:
      return "device not ready";
    case cudaErrorIllegalAddress:
      return "an illegal memory access was encountered";
    case cudaErrorLaunchOutOfResources:
      return "too many resources requested for launch";
    case cudaErrorAssert:
      return "device-side assert triggered";
    case cudaErrorIllegalInstruction:
      return "an illegal instruction was encountered";
    case cudaErrorLaunchFailure:
      return "unspecified launch failure";
    case cudaErrorNotPermitted:
      return "operation not permitted";
    case cudaErrorNotSupported:
      return "operation not supported";
    case cudaErrorStreamCaptureUnsupported:
      return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated:
      return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureMerge:
      return "operation would result in a merge of separate capture sequences";
    case cudaErrorStreamCaptureUnmatched:
      return "capture was not ended in the same stream as it began";
    case cudaErrorStreamCaptureUnjoined:
      return "capturing stream has unjoined work";
    case cudaErrorStreamCaptureIsolation:
      return "dependency created on uncaptured work in another stream";
    case cudaErrorStreamCaptureImplicit:
      return "operation would make the legacy stream depend on a capturing blocking stream";
    case cudaErrorStreamCaptureWrongThread:
      return "attempt to terminate a thread-local capture sequence from another thread";
    case cudaErrorUnknown:
      return "unknown error";
  }
  return "unrecognized error code";
}

const char* cuda_name(cudaError_t e) {
  switch (e) {
#define EMU_NAME(c) \
  case c:           \
    return #c;
    EMU_NAME(cudaSuccess)
    EMU_NAME(cudaErrorInvalidValue)
    EMU_NAME(cudaErrorMemoryAllocation)
    EMU_NAME(cudaErrorInvalidConfiguration)
    EMU_NAME(cudaErrorInvalidSymbol)
    EMU_NAME(cudaErrorInsufficientDriver)
    EMU_NAME(cudaErrorNoKernelImageForDevice)
    EMU_NAME(cudaErrorInvalidDevicePointer)
    EMU_NAME(cudaErrorInvalidMemcpyDirection)
    EMU_NAME(cudaErrorInvalidDeviceFunction)
    EMU_NAME(cudaErrorNoDevice)
    EMU_NAME(cudaErrorInvalidDevice)
    EMU_NAME(cudaErrorInvalidResourceHandle)
    EMU_NAME(cudaErrorIllegalState)
    EMU_NAME(cudaErrorNotReady)
    EMU_NAME(cudaErrorIllegalAddress)
    EMU_NAME(cudaErrorLaunchOutOfResources)
    EMU_NAME(cudaErrorAssert)
    EMU_NAME(cudaErrorIllegalInstruction)
    EMU_NAME(cudaErrorLaunchFailure)
    EMU_NAME(cudaErrorNotPermitted)
    EMU_NAME(cudaErrorNotSupported)
    EMU_NAME(cudaErrorStreamCaptureUnsupported)
    EMU_NAME(cudaErrorStreamCaptureInvalidated)
    EMU_NAME(cudaErrorStreamCaptureMerge)
    EMU_NAME(cudaErrorStreamCaptureUnmatched)
    EMU_NAME(cudaErrorStreamCaptureUnjoined)
    EMU_NAME(cudaErrorStreamCaptureIsolation)
    EMU_NAME(cudaErrorStreamCaptureImplicit)
    EMU_NAME(cudaErrorStreamCaptureWrongThread)
    EMU_NAME(cudaErrorUnknown)
#undef EMU_NAME
  }
  return "cudaErrorUnknown";
}

const char* kind_name(cudaMemcpyKind k) {
  switch (k) {
    case cudaMemcpyHostToHost:
      return "cudaMemcpyHostToHost";
    case cudaMemcpyHostToDevice:
      return "cudaMemcpyHostToDevice";
    case cudaMemcpyDeviceToHost:
      return "cudaMemcpyDeviceToHost";
    case cudaMemcpyDeviceToDevice:
      return "cudaMemcpyDeviceToDevice";
    case cudaMemcpyDefault:
      return "cudaMemcpyDefault";
  }
  return "an unknown cudaMemcpyKind";
}

// ---- registries (guarded by g_mu) ---------------------------------------------------------------
std::mutex g_mu;

struct Alloc {
  size_t bytes;
  bool device;  // cudaMalloc (else cudaMallocHost / cudaHostAlloc)
};
std::map<uintptr_t, Alloc> g_allocs;
size_t g_device_bytes = 0;

struct Capture {
  uint64_t id;
  CUgraph_st* graph;
  cudaStreamCaptureMode mode;
  std::thread::id owner;
  CUstream_st* origin;
  std::vector<CUstream_st*> members;  // origin first
  bool invalidated = false;
  std::string why;  // what invalidated it
};
std::map<uint64_t, std::unique_ptr<Capture>> g_captures;
uint64_t g_next_capture = 1;

std::set<CUstream_st*> g_streams;
std::set<CUevent_st*> g_events;
std::set<CUgraph_st*> g_graphs;
std::set<CUgraphExec_st*> g_execs;
std::map<const void*, int> g_max_dynamic_smem;  // cudaFuncSetAttribute

uint64_t g_last_stream_id = 1;  // the legacy stream is 1
CUstream_st g_legacy_stream = [] {
  CUstream_st s;
  s.legacy = true;
  s.id = 1;
  return s;
}();
thread_local std::unique_ptr<CUstream_st> tls_per_thread_stream;

constexpr size_t kDefaultDynamicSmem = 48 << 10;
constexpr int kMaxDynamicSmemOptin = 232448;  // sm_90: 227 KiB

size_t total_memory() {
  static const size_t total = [] {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page) / 2
                                 : size_t{8} << 30;
  }();
  return total;
}

// The stream object behind a handle, or nullptr when it is not a live stream.
CUstream_st* resolve(cudaStream_t s) {
  if (s == nullptr || s == cudaStreamLegacy) return &g_legacy_stream;
  if (s == cudaStreamPerThread) {
    if (!tls_per_thread_stream) {
      tls_per_thread_stream = std::make_unique<CUstream_st>();
      tls_per_thread_stream->id = ++g_last_stream_id;
    }
    return tls_per_thread_stream.get();
  }
  return g_streams.count(s) ? s : nullptr;
}

// The active capture with this id (0: none), or nullptr once it has ended.
Capture* capture_by_id(uint64_t id) {
  auto it = id ? g_captures.find(id) : g_captures.end();
  return it == g_captures.end() ? nullptr : it->second.get();
}

Capture* capture_of(const CUstream_st* s) {
  return s ? capture_by_id(s->cap) : nullptr;
}

// cudaErrorInvalidResourceHandle naming `call` unless `stream` is live.
cudaError_t check_stream(const char* call, cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (resolve(stream)) return cudaSuccess;
  return set_error(cudaErrorInvalidResourceHandle,
                   "%s: stream %p is not a live stream (never created, or destroyed)", call,
                   static_cast<void*>(stream));
}

const char* mode_name(cudaStreamCaptureMode m) {
  switch (m) {
    case cudaStreamCaptureModeGlobal:
      return "cudaStreamCaptureModeGlobal";
    case cudaStreamCaptureModeThreadLocal:
      return "cudaStreamCaptureModeThreadLocal";
    case cudaStreamCaptureModeRelaxed:
      return "cudaStreamCaptureModeRelaxed";
  }
  return "an unknown capture mode";
}

// A call that may synchronise implicitly (cudaMalloc, cudaMemcpy, ...) is refused while a capture
// forbids it: any Global-mode capture, or a ThreadLocal one of this thread. The capture is
// invalidated, as CUDA does.
cudaError_t refuse_if_capturing(const char* call) {
  for (auto& [id, c] : g_captures) {
    if (c->invalidated) continue;
    const bool forbids =
        c->mode == cudaStreamCaptureModeGlobal ||
        (c->mode == cudaStreamCaptureModeThreadLocal && c->owner == std::this_thread::get_id());
    if (!forbids) continue;
    c->invalidated = true;
    c->why = std::string(call) + " during the capture";
    return set_error(cudaErrorStreamCaptureUnsupported,
                     "%s is not allowed while stream %p is capturing in %s; do it before "
                     "cudaStreamBeginCapture (this invalidated the capture)",
                     call, static_cast<void*>(c->origin), mode_name(c->mode));
  }
  return cudaSuccess;
}

// Work on the legacy stream waits for every blocking stream: refused while one is capturing.
cudaError_t refuse_legacy_during_capture(const char* call) {
  for (auto& [id, c] : g_captures) {
    if (c->invalidated) continue;
    for (CUstream_st* m : c->members) {
      if (m->flags & cudaStreamNonBlocking) continue;
      c->invalidated = true;
      c->why = std::string(call) + " on the legacy stream during the capture";
      return set_error(cudaErrorStreamCaptureImplicit,
                       "%s on the legacy (NULL) stream while blocking stream %p is capturing; use "
                       "the capturing stream, or create it with cudaStreamNonBlocking (this "
                       "invalidated the capture)",
                       call, static_cast<void*>(m));
    }
  }
  return cudaSuccess;
}

// The allocation containing [p, p + bytes), or nullptr.
const Alloc* find_alloc(const void* p, size_t bytes) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = g_allocs.upper_bound(a);
  if (it == g_allocs.begin()) return nullptr;
  --it;
  if (a < it->first || a - it->first > it->second.bytes ||
      bytes > it->second.bytes - (a - it->first))
    return nullptr;
  return &it->second;
}

bool device_range_locked(const void* p, size_t bytes) {
  const Alloc* a = find_alloc(p, bytes);
  return a && a->device;
}

// ---- ordering: the work a host wait covers (guarded by g_mu) ------------------------------------
uint64_t g_last_issue = 0;
WorkClock g_blocking;  // every blocking stream's clock joined: what legacy-stream work waits for

void join(WorkClock& into, const WorkClock& from) {
  for (const auto& [id, issue] : from) into[id] = std::max(into[id], issue);
}

// into |= the clock of s: its latest work and everything that work waited for.
void join_stream(WorkClock& into, const CUstream_st& s) {
  join(into, s.after);
  into[s.id] = std::max(into[s.id], s.last);
}

bool blocking(const CUstream_st& s) {
  return !s.legacy && !(s.flags & cudaStreamNonBlocking);
}

// New work on s (outside a capture): its issue number. Work on the legacy stream waits for the work
// issued so far on every blocking stream, and work on a blocking stream for the legacy stream's.
uint64_t issue(CUstream_st& s) {
  if (s.legacy)
    join(s.after, g_blocking);
  else if (blocking(s))
    join_stream(s.after, g_legacy_stream);
  s.last = ++g_last_issue;
  if (blocking(s)) join_stream(g_blocking, s);
  return s.last;
}

// The work done once the host has waited for stream s; waiting for the legacy stream
// (cudaStreamSynchronize(0), a synchronous cudaMemcpy) also waits for every blocking stream.
WorkClock completion(const CUstream_st& s) {
  WorkClock c;
  join_stream(c, s);
  if (s.legacy) join(c, g_blocking);
  return c;
}

// The submitted work this host thread is running (set by submit; a graph's nodes share their
// cudaGraphLaunch's).
struct Work {
  uint64_t stream = 0, issue = 0;
};
thread_local Work tls_work;

// Graph replays this host thread is running (nested: a graph launched inside a captured one).
thread_local int tls_replay_depth = 0;

// ---- asynchronous copies to and from pinned memory (guarded by g_mu) ----------------------------
// printf into a string of any length.
std::string vformat(const char* fmt, va_list ap) {
  va_list again;
  va_copy(again, ap);
  std::string out(std::max(0, std::vsnprintf(nullptr, 0, fmt, ap)), '\0');
  std::vsnprintf(out.data(), out.size() + 1, fmt, again);
  va_end(again);
  return out;
}
[[gnu::format(printf, 1, 2)]] std::string format(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::string out = vformat(fmt, ap);
  va_end(ap);
  return out;
}

// Where a cudaMemcpyAsync was called, for reports: its stream and callers.
struct CallSite {
  cudaStream_t stream = nullptr;
  int frames = 0;
  void* pc[3] = {};
};

// The callers of the cudaMemcpyAsync that called this.
[[gnu::noinline]] CallSite call_site(cudaStream_t stream) {
  // The stack from backtrace (which a sanitizer may wrap: one frame more) up to cudaMemcpyAsync,
  // the frame this function returns to, then its callers.
  void* pc[8];
  const int n = backtrace(pc, 8);
  const int into = static_cast<int>(std::find(pc, pc + n, __builtin_return_address(0)) - pc);
  CallSite c;
  c.stream = stream;
  for (int i = into + 1; i < n && c.frames < 3; ++i) c.pc[c.frames++] = pc[i];
  return c;
}

// "on stream S from f (file:line) < g (file:line)": symbolised by the sanitizer runtime where it is
// linked (test_emu, test_race), as addresses otherwise (bench).
std::string describe(const CallSite& c) {
  std::string out = format("on stream %p", static_cast<void*>(c.stream));
  for (int i = 0; i < c.frames; ++i) {
    char buf[512];
    if (__sanitizer_symbolize_pc)
      __sanitizer_symbolize_pc(c.pc[i], "%f (%L)", buf, sizeof buf);
    else
      std::snprintf(buf, sizeof buf, "%p", c.pc[i]);
    out += i ? " < " : " from ";
    out += buf;
  }
  return out;
}

// A copy between pinned host memory and the device that the host has not yet waited for.
struct PendingCopy {
  bool to_host;         // device to host (writes `host`), else host to device
  unsigned char* host;  // the pinned bytes it writes or reads
  size_t bytes;
  const void* device;                // the other side, for reports
  std::vector<unsigned char> data;   // to host: the bytes to deliver; to device: what it read
  std::vector<unsigned char> watch = {};  // to device: nonzero for bytes the host must not change
  std::string early = {};                 // a misuse found before the wait (copy_into_pinned)
  Work work;                         // the work it belongs to
  CallSite site;
  bool replayed;  // a node of a captured graph, run by cudaGraphLaunch
};
std::vector<PendingCopy> g_pending;  // in issue order

std::string describe(const PendingCopy& p) {
  const void* dst = p.to_host ? static_cast<const void*>(p.host) : p.device;
  const void* src = p.to_host ? p.device : static_cast<const void*>(p.host);
  return format("cudaMemcpyAsync(%p, %p, %zu bytes, %s) %s %s%s", dst, src, p.bytes,
                p.to_host ? "cudaMemcpyDeviceToHost" : "cudaMemcpyHostToDevice",
                p.replayed ? "captured" : "issued", describe(p.site).c_str(),
                p.replayed ? ", replayed by cudaGraphLaunch" : "");
}

// The host wrote byte i of the pinned range that p reads or writes.
std::string misuse(const PendingCopy& p, size_t i) {
  const void* lo = p.host;
  const void* hi = p.host + p.bytes;
  const void* at = p.host + i;
  if (p.to_host)
    return format(
        "the host wrote pinned memory [%p, %p) (first changed byte at %p) that %s "
        "still writes: on a GPU the copy lands over the host's bytes at an unknown "
        "time; wait for the copy (cudaStreamSynchronize, or an event recorded after it) "
        "before touching the buffer",
        lo, hi, at, describe(p).c_str());
  return format(
      "the host wrote pinned memory [%p, %p) (first changed byte at %p) that %s could "
      "still be reading: wait (cudaStreamSynchronize, or an event recorded after the "
      "copy) before reusing the buffer, or use a second buffer",
      lo, hi, at, describe(p).c_str());
}

// The overlap [lo, hi) of p's pinned range with [b, b + n) (empty when lo >= hi).
std::pair<unsigned char*, unsigned char*> overlap(const PendingCopy& p, unsigned char* b,
                                                  size_t n) {
  return {std::max(p.host, b), std::min(p.host + p.bytes, b + n)};
}

// A cudaMemcpyAsync from pinned memory to the device runs: the device reads the source as its
// stream sees it (the bytes of device-to-host copies still pending, the host's elsewhere), and
// the host must leave the watched bytes alone until it has waited for the copy.
void copy_from_pinned(void* dst, const void* src, size_t n, const CallSite& site) {
  std::lock_guard<std::mutex> lock(g_mu);
  auto* host = static_cast<unsigned char*>(const_cast<void*>(src));
  PendingCopy p{.to_host = false,
                .host = host,
                .bytes = n,
                .device = dst,
                .data = {host, host + n},
                .watch = std::vector<unsigned char>(n, 1),
                .work = tls_work,
                .site = site,
                .replayed = tls_replay_depth > 0};
  for (const PendingCopy& q : g_pending) {
    if (!q.to_host) continue;
    const auto [lo, hi] = overlap(q, host, n);
    for (unsigned char* b = lo; b < hi; ++b) {
      p.data[b - host] = q.data[b - q.host];
      p.watch[b - host] = 0;
    }
  }
  std::memcpy(dst, p.data.data(), n);
  g_pending.push_back(std::move(p));
}

// A cudaMemcpyAsync from the device into pinned memory runs: the destination is poisoned (0xff
// bytes: NaN floats, -1 integers) and the bytes are delivered at the host's next wait that covers
// the copy (wait_for).
void copy_into_pinned(void* dst, const void* src, size_t n, const CallSite& site) {
  std::lock_guard<std::mutex> lock(g_mu);
  auto* host = static_cast<unsigned char*>(dst);
  for (PendingCopy& q : g_pending) {
    // This device write ends the watch of earlier copies that read these bytes, and re-poisons
    // bytes that earlier copies into them still owe: check both now.
    const auto [lo, hi] = overlap(q, host, n);
    for (unsigned char* b = lo; b < hi; ++b) {
      const size_t i = b - q.host;
      const bool changed = q.to_host ? *b != 0xff : q.watch[i] && *b != q.data[i];
      if (changed && q.early.empty()) q.early = misuse(q, i);
      if (!q.to_host) q.watch[i] = 0;
    }
  }
  const auto* from = static_cast<const unsigned char*>(src);
  g_pending.push_back(PendingCopy{.to_host = true,
                                  .host = host,
                                  .bytes = n,
                                  .device = src,
                                  .data = {from, from + n},
                                  .work = tls_work,
                                  .site = site,
                                  .replayed = tls_replay_depth > 0});
  std::memset(dst, 0xff, n);
}

// The host has waited for the work in `done` (nullptr: all work): the device-to-host copies it
// covers are delivered and the host-to-device ones retired. A pinned byte the host changed while
// a covered copy could still write or read it is reported (set_error, naming `call`); the copy
// is delivered all the same, as a GPU would.
cudaError_t wait_for(const char* call, const WorkClock* done) {
  auto covered = [done](const PendingCopy& p) {
    if (!done) return true;
    auto it = done->find(p.work.stream);
    return it != done->end() && it->second >= p.work.issue;
  };
  std::string first;
  size_t misuses = 0;
  auto report = [&](std::string text) {
    if (misuses++ == 0) first = std::move(text);
  };
  // Destinations are checked before any is delivered (copies may overlap).
  for (const PendingCopy& p : g_pending) {
    if (!p.to_host || !covered(p)) continue;
    if (!p.early.empty()) {
      report(p.early);
      continue;
    }
    const unsigned char* b =
        std::find_if(p.host, p.host + p.bytes, [](unsigned char c) { return c != 0xff; });
    if (b != p.host + p.bytes) report(misuse(p, b - p.host));
  }
  for (const PendingCopy& p : g_pending)
    if (p.to_host && covered(p)) std::memcpy(p.host, p.data.data(), p.bytes);
  // Bytes that a copy still pending writes stay poisoned.
  for (const PendingCopy& q : g_pending) {
    if (!q.to_host || covered(q)) continue;
    for (const PendingCopy& p : g_pending) {
      if (!p.to_host || !covered(p)) continue;
      const auto [lo, hi] = overlap(q, p.host, p.bytes);
      if (lo < hi) std::memset(lo, 0xff, hi - lo);
    }
  }
  for (const PendingCopy& p : g_pending) {
    if (p.to_host || !covered(p)) continue;
    if (!p.early.empty()) {
      report(p.early);
      continue;
    }
    for (size_t i = 0; i < p.bytes; ++i)
      if (p.watch[i] && p.host[i] != p.data[i]) {
        report(misuse(p, i));
        break;
      }
  }
  std::erase_if(g_pending, covered);
  if (misuses == 0) return cudaSuccess;
  return set_error(cudaErrorIllegalState, "%s: %s%s", call, first.c_str(),
                   misuses > 1 ? format(" (and %zu more such copies)", misuses - 1).c_str() : "");
}
cudaError_t wait_for(const char* call, const WorkClock& done) {
  return wait_for(call, &done);
}

// A synchronous copy waits for the legacy stream (and so for every blocking stream). Takes g_mu.
cudaError_t wait_for_legacy(const char* call) {
  std::lock_guard<std::mutex> lock(g_mu);
  return wait_for(call, completion(g_legacy_stream));
}

// Checks a copy's pointers against its kind: the device side must lie in one cudaMalloc block.
cudaError_t check_copy(const char* call, void* dst, const void* src, size_t count,
                       cudaMemcpyKind kind) {
  if (static_cast<int>(kind) < 0 || static_cast<int>(kind) > 4)
    return set_error(cudaErrorInvalidMemcpyDirection, "%s: kind %d is not a cudaMemcpyKind", call,
                     static_cast<int>(kind));
  if (count == 0) return cudaSuccess;
  if (!dst || !src) return set_error(cudaErrorInvalidValue, "%s: null pointer", call);
  const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  std::lock_guard<std::mutex> lock(g_mu);
  if (dst_dev && !device_range_locked(dst, count))
    return set_error(cudaErrorInvalidValue,
                     "%s(%s, %zu bytes): dst %p is not %zu bytes inside one cudaMalloc allocation",
                     call, kind_name(kind), count, dst, count);
  if (src_dev && !device_range_locked(src, count))
    return set_error(cudaErrorInvalidValue,
                     "%s(%s, %zu bytes): src %p is not %zu bytes inside one cudaMalloc allocation",
                     call, kind_name(kind), count, src, count);
  return cudaSuccess;
}

cudaError_t host_alloc(const char* call, void** ptr, size_t size, bool device) {
  if (!ptr) return set_error(cudaErrorInvalidValue, "%s: the pointer to the result is null", call);
  std::lock_guard<std::mutex> lock(g_mu);
  if (cudaError_t e = refuse_if_capturing(call)) return e;
  *ptr = nullptr;
  if (size == 0) return cudaSuccess;
  if (device && size > total_memory() - g_device_bytes)
    return set_error(cudaErrorMemoryAllocation,
                     "%s(%zu bytes): %zu of the emulated device's %zu bytes are allocated", call,
                     size, g_device_bytes, total_memory());
  void* p = nullptr;
  if (size > total_memory() || posix_memalign(&p, 256, size) != 0)
    return set_error(cudaErrorMemoryAllocation, "%s(%zu bytes): the host is out of memory", call,
                     size);
  g_allocs[reinterpret_cast<uintptr_t>(p)] = Alloc{size, device};
  if (device) g_device_bytes += size;
  *ptr = p;
  count([size](Counters& c) {
    ++c.allocs;
    c.alloc_bytes += size;
  });
  return cudaSuccess;
}

// `waits`: the call waits for the device to go idle (cudaFree, cudaFreeHost; not cudaFreeAsync).
cudaError_t host_free(const char* call, void* ptr, bool device, bool waits) {
  if (!ptr) return cudaSuccess;
  std::lock_guard<std::mutex> lock(g_mu);
  if (cudaError_t e = refuse_if_capturing(call)) return e;
  auto it = g_allocs.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == g_allocs.end() || it->second.device != device)
    return set_error(device ? cudaErrorInvalidDevicePointer : cudaErrorInvalidValue,
                     "%s(%p): not a pointer from %s, or already freed%s", call, ptr,
                     device ? "cudaMalloc" : "cudaMallocHost/cudaHostAlloc",
                     it != g_allocs.end() ? (device ? " (it is pinned host memory: cudaFreeHost)"
                                                    : " (it is device memory: cudaFree)")
                                          : "");
  // Waiting for the device delivers every pending copy (cudaFreeHost of a buffer that a copy
  // still writes or reads waits for it first).
  const cudaError_t misuse = waits ? wait_for(call, nullptr) : cudaSuccess;
  if (device) g_device_bytes -= it->second.bytes;
  g_allocs.erase(it);
  std::free(ptr);
  count([waits](Counters& c) {
    ++c.frees;
    c.sync_free += waits;
  });
  return misuse;
}

// The direction of a copy: `kind`, or for cudaMemcpyDefault where the pointers lie. Takes g_mu.
cudaMemcpyKind direction(cudaMemcpyKind kind, const void* dst, const void* src, size_t count) {
  if (kind != cudaMemcpyDefault) return kind;
  std::lock_guard<std::mutex> lock(g_mu);
  const bool d = device_range_locked(dst, count), s = device_range_locked(src, count);
  return d ? (s ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
           : (s ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
}

// A copy that runs now, by direction (host to host moves nothing over the bus).
void count_copy(cudaMemcpyKind dir, size_t bytes) {
  count([dir, bytes](Counters& c) {
    if (dir == cudaMemcpyHostToDevice) {
      ++c.h2d;
      c.h2d_bytes += bytes;
    } else if (dir == cudaMemcpyDeviceToHost) {
      ++c.d2h;
      c.d2h_bytes += bytes;
    } else if (dir == cudaMemcpyDeviceToDevice) {
      ++c.d2d;
      c.d2d_bytes += bytes;
    }
  });
}

// True when [p, p + bytes) lies in one cudaMallocHost / cudaHostAlloc block. Takes g_mu.
bool pinned_range(const void* p, size_t bytes) {
  std::lock_guard<std::mutex> lock(g_mu);
  const Alloc* a = find_alloc(p, bytes);
  return a && !a->device;
}

CUevent_st* live_event(cudaEvent_t e) {
  return g_events.count(e) ? e : nullptr;
}

cudaError_t run_nodes(const std::vector<CUgraphNode_st>& nodes) {
  struct Depth {
    Depth() { ++tls_replay_depth; }
    ~Depth() { --tls_replay_depth; }
  } depth;
  for (const CUgraphNode_st& n : nodes)
    if (cudaError_t e = n.run()) return e;
  return cudaSuccess;
}

std::mutex g_count_mu;  // guards g_counts and the named counts; taken after g_mu when both are held
Counters g_counts;
std::map<std::string, NamedCount> g_kernel_counts, g_cublas_counts;

}  // namespace

// ---- counters (internal.h, emu/counters.h) ------------------------------------------------------
void count(const std::function<void(Counters&)>& add) {
  std::lock_guard<std::mutex> lock(g_count_mu);
  add(g_counts);
}

void count_work(bool cublas, const char* name) {
  const bool replay = tls_replay_depth > 0;
  std::lock_guard<std::mutex> lock(g_count_mu);
  Counters& c = g_counts;
  NamedCount& n = (cublas ? g_cublas_counts : g_kernel_counts)[name];
  if (cublas)
    ++(replay ? c.graph_cublas : c.cublas);
  else
    ++(replay ? c.graph_kernels : c.kernels);
  ++(replay ? n.graph : n.eager);
}

// ---- shared with the other translation units (internal.h) ---------------------------------------
cudaError_t set_error(cudaError_t code, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const std::string text = vformat(fmt, ap);
  va_end(ap);
  tls_error.code = code;
  tls_error.detail_code = code;
  if (text[0] == '!')
    tls_error.detail = text.substr(1);
  else if (!text.empty())
    tls_error.detail = std::string(cuda_text(code)) + " (host emulation: " + text + ")";
  else
    tls_error.detail = cuda_text(code);
  return code;
}

cudaError_t submit(cudaStream_t stream, const char* what, std::function<cudaError_t()> work) {
  Work issued;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    CUstream_st* s = resolve(stream);
    if (!s)
      return set_error(cudaErrorInvalidResourceHandle,
                       "%s: stream %p is not a live stream (never created, or destroyed)", what,
                       static_cast<void*>(stream));
    if (s->legacy)
      if (cudaError_t e = refuse_legacy_during_capture(what)) return e;
    if (Capture* c = capture_of(s)) {
      if (c->invalidated)
        return set_error(cudaErrorStreamCaptureInvalidated,
                         "%s on stream %p: its capture was invalidated earlier by %s", what,
                         static_cast<void*>(s), c->why.c_str());
      c->graph->nodes.push_back(CUgraphNode_st{what, std::move(work)});
      ++s->cap_work;
      s->cap_joined = s == c->origin;
      return cudaSuccess;
    }
    issued = Work{s->id, issue(*s)};
  }
  struct Running {  // tls_work for the copies the work runs
    Work saved = tls_work;
    explicit Running(Work w) { tls_work = w; }
    ~Running() { tls_work = saved; }
  } running(issued);
  return work();
}

bool device_allocation_of(const void* ptr, uintptr_t* base, size_t* bytes) {
  std::lock_guard<std::mutex> lock(g_mu);
  const uintptr_t a = reinterpret_cast<uintptr_t>(ptr);
  auto it = g_allocs.upper_bound(a);
  if (it == g_allocs.begin()) return false;
  --it;
  if (!it->second.device || a - it->first >= it->second.bytes) return false;
  *base = it->first;
  *bytes = it->second.bytes;
  return true;
}

bool is_device_range(const void* ptr, size_t bytes) {
  std::lock_guard<std::mutex> lock(g_mu);
  return device_range_locked(ptr, bytes);
}

bool kernel_pointer_ok(const char* name, int index, int count, const void* p) {
  if (p == nullptr) return true;
  const Alloc* a = nullptr;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    a = find_alloc(p, 0);
    if (a && a->device) return true;
  }
  set_error(cudaErrorInvalidValue,
            "kernel %s: argument %d of %d is %p, %s; a kernel reads and writes device memory "
            "only (a GPU would fault or read garbage): allocate it with cudaMalloc and copy",
            name, index + 1, count, p,
            a ? "pinned host memory (cudaMallocHost)" : "not inside any cudaMalloc allocation");
  return false;
}

void launch_erased(const char* name, const void* fn, std::shared_ptr<const KernelCall> call,
                   dim3 grid, dim3 block, size_t smem, cudaStream_t stream) {
  const unsigned long long threads = 1ull * block.x * block.y * block.z;
  if (threads == 0 || threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64) {
    set_error(cudaErrorInvalidConfiguration,
              "kernel %s: block (%u,%u,%u) has %llu threads; a block needs 1 to 1024 threads with "
              "x, y <= 1024 and z <= 64",
              name, block.x, block.y, block.z, threads);
    return;
  }
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 ||
      grid.z > 65535) {
    set_error(cudaErrorInvalidConfiguration,
              "kernel %s: grid (%u,%u,%u) must be >= 1 in every dimension with x < 2^31 and y, z "
              "<= 65535",
              name, grid.x, grid.y, grid.z);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(g_mu);
    auto it = g_max_dynamic_smem.find(fn);
    const size_t limit =
        it == g_max_dynamic_smem.end() ? kDefaultDynamicSmem : static_cast<size_t>(it->second);
    if (smem > limit) {
      set_error(cudaErrorInvalidValue,
                "kernel %s: %zu bytes of dynamic shared memory exceed its limit of %zu; raise it "
                "with cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, "
                "bytes), at most %d",
                name, smem, limit, kMaxDynamicSmemOptin);
      return;
    }
  }
  Grid g{name, std::move(call), grid, block, smem};
  submit(stream, name, [g = std::move(g)]() -> cudaError_t {
    count_work(/*cublas=*/false, g.name);
    const GridResult r = execute_grid(g);
    if (r.code != cudaSuccess) return set_error(r.code, "!%s", r.message.c_str());
    return cudaSuccess;
  });
}

}  // namespace emu::detail

namespace emu {
std::string last_error_message() {
  return detail::tls_error.detail;
}

Counters counters() {
  std::lock_guard<std::mutex> lock(detail::g_count_mu);
  return detail::g_counts;
}
void reset_counters() {
  std::lock_guard<std::mutex> lock(detail::g_count_mu);
  detail::g_counts = Counters{};
  detail::g_kernel_counts.clear();
  detail::g_cublas_counts.clear();
}
std::map<std::string, NamedCount> kernel_counts() {
  std::lock_guard<std::mutex> lock(detail::g_count_mu);
  return detail::g_kernel_counts;
}
std::map<std::string, NamedCount> cublas_counts() {
  std::lock_guard<std::mutex> lock(detail::g_count_mu);
  return detail::g_cublas_counts;
}
const std::vector<CounterField>& counter_fields() {
  static const std::vector<CounterField> fields = {
      {"kernels", &Counters::kernels},
      {"cublas", &Counters::cublas},
      {"graph_launches", &Counters::graph_launches},
      {"graph_kernels", &Counters::graph_kernels},
      {"graph_cublas", &Counters::graph_cublas},
      {"graph_instantiations", &Counters::graph_instantiations},
      {"sync_stream", &Counters::sync_stream},
      {"sync_device", &Counters::sync_device},
      {"sync_event", &Counters::sync_event},
      {"sync_copy", &Counters::sync_copy},
      {"sync_free", &Counters::sync_free},
      {"h2d", &Counters::h2d},
      {"h2d_bytes", &Counters::h2d_bytes},
      {"d2h", &Counters::d2h},
      {"d2h_bytes", &Counters::d2h_bytes},
      {"d2d", &Counters::d2d},
      {"d2d_bytes", &Counters::d2d_bytes},
      {"memsets", &Counters::memsets},
      {"allocs", &Counters::allocs},
      {"alloc_bytes", &Counters::alloc_bytes},
      {"frees", &Counters::frees}};
  // Every field listed: Counters holds nothing but these uint64_t counts.
  static_assert(sizeof(Counters) == 21 * sizeof(uint64_t));
  return fields;
}
}  // namespace emu

using emu::detail::g_mu;
using emu::detail::set_error;
using Lock = std::lock_guard<std::mutex>;

// ---- errors -------------------------------------------------------------------------------------
const char* cudaGetErrorString(cudaError_t error) {
  const auto& e = emu::detail::tls_error;
  if (error != cudaSuccess && error == e.detail_code && !e.detail.empty()) return e.detail.c_str();
  return emu::detail::cuda_text(error);
}
const char* cudaGetErrorName(cudaError_t error) {
  return emu::detail::cuda_name(error);
}
cudaError_t cudaGetLastError() {
  const cudaError_t e = emu::detail::tls_error.code;
  emu::detail::tls_error.code = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() {
  return emu::detail::tls_error.code;
}

// ---- device -------------------------------------------------------------------------------------
cudaError_t cudaDriverGetVersion(int* driverVersion) {
  if (!driverVersion)
    return set_error(cudaErrorInvalidValue, "cudaDriverGetVersion: driverVersion is null");
  *driverVersion = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* runtimeVersion) {
  if (!runtimeVersion)
    return set_error(cudaErrorInvalidValue, "cudaRuntimeGetVersion: runtimeVersion is null");
  *runtimeVersion = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, const void* func) {
  if (!attr) return set_error(cudaErrorInvalidValue, "cudaFuncGetAttributes: attr is null");
  if (!func) return set_error(cudaErrorInvalidDeviceFunction, "cudaFuncGetAttributes: null kernel");
  *attr = cudaFuncAttributes{0, 1024, 32, 90, 90};
  return cudaSuccess;
}
cudaError_t cudaGetDeviceCount(int* count) {
  if (!count) return set_error(cudaErrorInvalidValue, "cudaGetDeviceCount: count is null");
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  if (!device) return set_error(cudaErrorInvalidValue, "cudaGetDevice: device is null");
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  if (device != 0)
    return set_error(cudaErrorInvalidDevice, "cudaSetDevice(%d): the emulation has device 0 only",
                     device);
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (!prop) return set_error(cudaErrorInvalidValue, "cudaGetDeviceProperties: prop is null");
  if (device != 0)
    return set_error(cudaErrorInvalidDevice,
                     "cudaGetDeviceProperties(device %d): the emulation has device 0 only", device);
  std::memset(prop, 0, sizeof *prop);
  std::snprintf(prop->name, sizeof prop->name, "pompc host emulation");
  prop->totalGlobalMem = emu::detail::total_memory();
  prop->sharedMemPerBlock = 48 << 10;
  prop->regsPerBlock = 65536;
  prop->warpSize = 32;
  prop->memPitch = 2147483647;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = 1024;
  prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 2147483647;
  prop->maxGridSize[1] = 65535;
  prop->maxGridSize[2] = 65535;
  prop->totalConstMem = 65536;
  prop->major = 9;
  prop->minor = 0;
  prop->textureAlignment = 512;
  prop->multiProcessorCount = emu::os_threads();
  prop->canMapHostMemory = 1;
  prop->concurrentKernels = 1;
  prop->asyncEngineCount = 2;
  prop->unifiedAddressing = 1;
  prop->memoryBusWidth = 5120;
  prop->l2CacheSize = 50 << 20;
  prop->maxThreadsPerMultiProcessor = 2048;
  prop->streamPrioritiesSupported = 1;
  prop->sharedMemPerMultiprocessor = 233472;
  prop->regsPerMultiprocessor = 65536;
  prop->sharedMemPerBlockOptin = emu::detail::kMaxDynamicSmemOptin;
  prop->maxBlocksPerMultiProcessor = 32;
  prop->reservedSharedMemPerBlock = 1024;
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() {
  Lock lock(g_mu);
  if (cudaError_t e = emu::detail::refuse_if_capturing("cudaDeviceSynchronize")) return e;
  emu::detail::count([](emu::Counters& c) { ++c.sync_device; });
  return emu::detail::wait_for("cudaDeviceSynchronize", nullptr);
}
cudaError_t cudaDeviceGetStreamPriorityRange(int* leastPriority, int* greatestPriority) {
  if (leastPriority) *leastPriority = 0;
  if (greatestPriority) *greatestPriority = -5;
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free, size_t* total) {
  if (!free || !total) return set_error(cudaErrorInvalidValue, "cudaMemGetInfo: null pointer");
  Lock lock(g_mu);
  *total = emu::detail::total_memory();
  *free = *total - emu::detail::g_device_bytes;
  return cudaSuccess;
}
cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (!func) return set_error(cudaErrorInvalidDeviceFunction, "cudaFuncSetAttribute: null kernel");
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize)
    return set_error(cudaErrorInvalidValue,
                     "cudaFuncSetAttribute: attribute %d is not emulated (only "
                     "cudaFuncAttributeMaxDynamicSharedMemorySize)",
                     static_cast<int>(attr));
  if (value < 0 || value > emu::detail::kMaxDynamicSmemOptin)
    return set_error(
        cudaErrorInvalidValue,
        "cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize, %d): must be "
        "in [0, %d]",
        value, emu::detail::kMaxDynamicSmemOptin);
  Lock lock(g_mu);
  emu::detail::g_max_dynamic_smem[func] = value;
  return cudaSuccess;
}

// ---- memory -------------------------------------------------------------------------------------
cudaError_t cudaMalloc(void** devPtr, size_t size) {
  return emu::detail::host_alloc("cudaMalloc", devPtr, size, true);
}
cudaError_t cudaFree(void* devPtr) {
  return emu::detail::host_free("cudaFree", devPtr, true, true);
}
cudaError_t cudaMallocHost(void** ptr, size_t size) {
  return emu::detail::host_alloc("cudaMallocHost", ptr, size, false);
}
cudaError_t cudaHostAlloc(void** pHost, size_t size, unsigned int flags) {
  if (flags > 0xf)
    return set_error(cudaErrorInvalidValue, "cudaHostAlloc: unknown flags 0x%x", flags);
  return emu::detail::host_alloc("cudaHostAlloc", pHost, size, false);
}
cudaError_t cudaFreeHost(void* ptr) {
  return emu::detail::host_free("cudaFreeHost", ptr, false, true);
}

cudaError_t cudaMallocAsync(void** devPtr, size_t size, cudaStream_t stream) {
  // Stream-ordered in CUDA; here the stream's work has already run (in-order emulation), so
  // allocating now is the same as allocating in stream order. A capture would need a memory node,
  // which the emulation does not record: host_alloc refuses it with that explanation.
  if (cudaError_t e = emu::detail::check_stream("cudaMallocAsync", stream)) return e;
  return emu::detail::host_alloc("cudaMallocAsync", devPtr, size, true);
}
cudaError_t cudaFreeAsync(void* devPtr, cudaStream_t stream) {
  if (cudaError_t e = emu::detail::check_stream("cudaFreeAsync", stream)) return e;
  return emu::detail::host_free("cudaFreeAsync", devPtr, true, false);
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  {
    Lock lock(g_mu);
    if (cudaError_t e = emu::detail::refuse_if_capturing("cudaMemcpy")) return e;
  }
  if (cudaError_t e = emu::detail::check_copy("cudaMemcpy", dst, src, count, kind)) return e;
  // Synchronous for the host unless device to device (CUDA's API synchronization behavior): it
  // waits for the legacy stream first.
  const cudaMemcpyKind dir = emu::detail::direction(kind, dst, src, count);
  const cudaError_t misuse =
      dir == cudaMemcpyDeviceToDevice ? cudaSuccess : emu::detail::wait_for_legacy("cudaMemcpy");
  if (count) std::memcpy(dst, src, count);
  emu::detail::count_copy(dir, count);
  if (dir != cudaMemcpyDeviceToDevice) emu::detail::count([](emu::Counters& c) { ++c.sync_copy; });
  return misuse;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  if (cudaError_t e = emu::detail::check_copy("cudaMemcpyAsync", dst, src, count, kind)) return e;
  const cudaMemcpyKind dir = emu::detail::direction(kind, dst, src, count);
  // Pinned memory on the host side: the copy is asynchronous for the host, which must wait for
  // it before reading the destination or reusing the source (run book: pending copies). Into
  // pageable host memory the call returns only once the copy is done: a host wait when issued
  // eagerly (a replayed graph node does not block the host). From pageable memory the bytes are
  // staged before the call returns.
  const bool to_pinned = dir == cudaMemcpyDeviceToHost && emu::detail::pinned_range(dst, count);
  const bool from_pinned = dir == cudaMemcpyHostToDevice && emu::detail::pinned_range(src, count);
  const bool waits = dir == cudaMemcpyDeviceToHost && !to_pinned;
  emu::detail::CallSite site;
  if (count && (to_pinned || from_pinned)) site = emu::detail::call_site(stream);
  return emu::detail::submit(stream, "cudaMemcpyAsync", [=]() -> cudaError_t {
    emu::detail::count_copy(dir, count);
    if (count == 0) return cudaSuccess;
    if (to_pinned) {
      emu::detail::copy_into_pinned(dst, src, count, site);
      return cudaSuccess;
    }
    if (from_pinned) {
      emu::detail::copy_from_pinned(dst, src, count, site);
      return cudaSuccess;
    }
    std::memcpy(dst, src, count);
    if (!waits || emu::detail::tls_replay_depth > 0) return cudaSuccess;
    emu::detail::count([](emu::Counters& c) { ++c.sync_copy; });
    Lock lock(g_mu);
    return emu::detail::wait_for("cudaMemcpyAsync",
                                 emu::detail::completion(*emu::detail::resolve(stream)));
  });
}
cudaError_t cudaMemset(void* devPtr, int value, size_t count) {
  Lock lock(g_mu);
  if (cudaError_t e = emu::detail::refuse_if_capturing("cudaMemset")) return e;
  if (count && !emu::detail::device_range_locked(devPtr, count))
    return set_error(cudaErrorInvalidValue,
                     "cudaMemset(%p, %zu bytes): not inside one cudaMalloc allocation", devPtr,
                     count);
  if (count) std::memset(devPtr, value, count);
  emu::detail::count([](emu::Counters& c) { ++c.memsets; });
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* devPtr, int value, size_t count, cudaStream_t stream) {
  if (count && !emu::detail::is_device_range(devPtr, count))
    return set_error(cudaErrorInvalidValue,
                     "cudaMemsetAsync(%p, %zu bytes): not inside one cudaMalloc allocation", devPtr,
                     count);
  return emu::detail::submit(stream, "cudaMemsetAsync", [devPtr, value, count]() -> cudaError_t {
    if (count) std::memset(devPtr, value, count);
    emu::detail::count([](emu::Counters& c) { ++c.memsets; });
    return cudaSuccess;
  });
}
cudaError_t cudaMemcpyToSymbol(const void* symbol, const void* src, size_t count, size_t offset,
                               cudaMemcpyKind kind) {
  if (!symbol) return set_error(cudaErrorInvalidSymbol, "cudaMemcpyToSymbol: null symbol");
  if (kind != cudaMemcpyHostToDevice && kind != cudaMemcpyDeviceToDevice &&
      kind != cudaMemcpyDefault)
    return set_error(cudaErrorInvalidMemcpyDirection, "cudaMemcpyToSymbol: %s",
                     emu::detail::kind_name(kind));
  {
    Lock lock(g_mu);
    if (cudaError_t e = emu::detail::refuse_if_capturing("cudaMemcpyToSymbol")) return e;
  }
  // A symbol is device memory; the copy is synchronous (waits for the legacy stream) unless its
  // source is too.
  const bool from_device = kind == cudaMemcpyDeviceToDevice ||
                           (kind == cudaMemcpyDefault && emu::detail::is_device_range(src, count));
  const cudaError_t misuse =
      from_device ? cudaSuccess : emu::detail::wait_for_legacy("cudaMemcpyToSymbol");
  if (count) std::memcpy(static_cast<char*>(const_cast<void*>(symbol)) + offset, src, count);
  emu::detail::count_copy(from_device ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice, count);
  if (!from_device) emu::detail::count([](emu::Counters& c) { ++c.sync_copy; });
  return misuse;
}
cudaError_t cudaMemcpyFromSymbol(void* dst, const void* symbol, size_t count, size_t offset,
                                 cudaMemcpyKind kind) {
  if (!symbol) return set_error(cudaErrorInvalidSymbol, "cudaMemcpyFromSymbol: null symbol");
  if (kind != cudaMemcpyDeviceToHost && kind != cudaMemcpyDeviceToDevice &&
      kind != cudaMemcpyDefault)
    return set_error(cudaErrorInvalidMemcpyDirection, "cudaMemcpyFromSymbol: %s",
                     emu::detail::kind_name(kind));
  {
    Lock lock(g_mu);
    if (cudaError_t e = emu::detail::refuse_if_capturing("cudaMemcpyFromSymbol")) return e;
  }
  const bool to_device = kind == cudaMemcpyDeviceToDevice ||
                         (kind == cudaMemcpyDefault && emu::detail::is_device_range(dst, count));
  const cudaError_t misuse =
      to_device ? cudaSuccess : emu::detail::wait_for_legacy("cudaMemcpyFromSymbol");
  if (count) std::memcpy(dst, static_cast<const char*>(symbol) + offset, count);
  emu::detail::count_copy(to_device ? cudaMemcpyDeviceToDevice : cudaMemcpyDeviceToHost, count);
  if (!to_device) emu::detail::count([](emu::Counters& c) { ++c.sync_copy; });
  return misuse;
}

// ---- streams ------------------------------------------------------------------------------------
cudaError_t cudaStreamCreate(cudaStream_t* pStream) {
  return cudaStreamCreateWithPriority(pStream, cudaStreamDefault, 0);
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* pStream, unsigned int flags) {
  return cudaStreamCreateWithPriority(pStream, flags, 0);
}
cudaError_t cudaStreamCreateWithPriority(cudaStream_t* pStream, unsigned int flags, int priority) {
  if (!pStream) return set_error(cudaErrorInvalidValue, "cudaStreamCreate: pStream is null");
  if (flags & ~static_cast<unsigned>(cudaStreamNonBlocking))
    return set_error(cudaErrorInvalidValue,
                     "cudaStreamCreateWithFlags: flags 0x%x (cudaStreamDefault or "
                     "cudaStreamNonBlocking)",
                     flags);
  auto* s = new CUstream_st;
  s->flags = flags;
  s->priority = priority < -5 ? -5 : (priority > 0 ? 0 : priority);  // CUDA clamps
  Lock lock(g_mu);
  s->id = ++emu::detail::g_last_stream_id;
  emu::detail::g_streams.insert(s);
  *pStream = s;
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  Lock lock(g_mu);
  if (!emu::detail::g_streams.count(stream))
    return set_error(cudaErrorInvalidResourceHandle,
                     "cudaStreamDestroy(%p): not a stream from cudaStreamCreate (or destroyed)",
                     static_cast<void*>(stream));
  if (stream->cap)
    return set_error(cudaErrorIllegalState,
                     "cudaStreamDestroy(%p): the stream is capturing; end the capture first",
                     static_cast<void*>(stream));
  emu::detail::g_streams.erase(stream);
  delete stream;
  return cudaSuccess;
}
// Both wait (a query reports completion: the emulated work is done), so both deliver the pending
// copies the stream's work covers; `sync` counts a host synchronisation.
static cudaError_t sync_or_query(const char* call, cudaStream_t stream, bool sync) {
  Lock lock(g_mu);
  CUstream_st* s = emu::detail::resolve(stream);
  if (!s)
    return set_error(cudaErrorInvalidResourceHandle, "%s(%p): not a live stream", call,
                     static_cast<void*>(stream));
  if (emu::detail::Capture* c = emu::detail::capture_of(s)) {
    c->invalidated = true;
    c->why = std::string(call) + " on a capturing stream";
    return set_error(cudaErrorStreamCaptureUnsupported,
                     "%s(%p): the stream is capturing (this invalidated the capture)", call,
                     static_cast<void*>(stream));
  }
  if (s->legacy)
    if (cudaError_t e = emu::detail::refuse_legacy_during_capture(call)) return e;
  if (sync) emu::detail::count([](emu::Counters& c) { ++c.sync_stream; });
  return emu::detail::wait_for(call, emu::detail::completion(*s));
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  return sync_or_query("cudaStreamSynchronize", stream, true);
}
cudaError_t cudaStreamQuery(cudaStream_t stream) {
  return sync_or_query("cudaStreamQuery", stream, false);
}
cudaError_t cudaStreamGetFlags(cudaStream_t hStream, unsigned int* flags) {
  if (!flags) return set_error(cudaErrorInvalidValue, "cudaStreamGetFlags: flags is null");
  Lock lock(g_mu);
  CUstream_st* s = emu::detail::resolve(hStream);
  if (!s) return set_error(cudaErrorInvalidResourceHandle, "cudaStreamGetFlags: not a live stream");
  *flags = s->flags;
  return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags) {
  if (flags > 1) return set_error(cudaErrorInvalidValue, "cudaStreamWaitEvent: flags 0x%x", flags);
  Lock lock(g_mu);
  CUstream_st* s = emu::detail::resolve(stream);
  CUevent_st* e = emu::detail::live_event(event);
  if (!s || !e)
    return set_error(cudaErrorInvalidResourceHandle, "cudaStreamWaitEvent(%p, %p): %s",
                     static_cast<void*>(stream), static_cast<void*>(event),
                     s ? "not a live event" : "not a live stream");
  // e->cap_stream is only valid while its capture is active (a capturing stream cannot be
  // destroyed), so the capture is looked up by id.
  emu::detail::Capture* c =
      e->kind == CUevent_st::Kind::Captured ? emu::detail::capture_by_id(e->cap) : nullptr;
  if (!c) {
    // Everything recorded before has already run (an event last recorded in a capture that has
    // ended, or never recorded, is a no-op), but the stream's later work now waits for the
    // event's: a host wait for the stream covers it (pending copies). A legacy-stream wait is
    // still an implicit dependency on capturing blocking streams.
    if (s->legacy)
      if (cudaError_t err = emu::detail::refuse_legacy_during_capture("cudaStreamWaitEvent"))
        return err;
    if (e->kind == CUevent_st::Kind::Timed && s->cap == 0) emu::detail::join(s->after, e->done);
    return cudaSuccess;
  }
  if (s->legacy) return emu::detail::refuse_legacy_during_capture("cudaStreamWaitEvent");
  if (s->cap != 0 && s->cap != c->id)
    return set_error(cudaErrorStreamCaptureIsolation,
                     "cudaStreamWaitEvent: stream %p belongs to another capture than event %p",
                     static_cast<void*>(stream), static_cast<void*>(event));
  if (s->cap == 0) {  // fork: the stream joins the capture
    s->cap = c->id;
    s->cap_work = 0;
    s->cap_joined = true;
    c->members.push_back(s);
  }
  // Join: the event covers all the work its stream had recorded.
  if (e->cap_stream != s && e->cap_work == e->cap_stream->cap_work)
    e->cap_stream->cap_joined = true;
  return cudaSuccess;
}

// ---- events -------------------------------------------------------------------------------------
cudaError_t cudaEventCreate(cudaEvent_t* event) {
  return cudaEventCreateWithFlags(event, cudaEventDefault);
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  if (!event) return set_error(cudaErrorInvalidValue, "cudaEventCreate: event is null");
  if (flags & ~7u)
    return set_error(cudaErrorInvalidValue, "cudaEventCreateWithFlags: unknown flags 0x%x", flags);
  auto* e = new CUevent_st;
  e->flags = flags;
  Lock lock(g_mu);
  emu::detail::g_events.insert(e);
  *event = e;
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  Lock lock(g_mu);
  if (!emu::detail::g_events.erase(event))
    return set_error(cudaErrorInvalidResourceHandle, "cudaEventDestroy(%p): not a live event",
                     static_cast<void*>(event));
  delete event;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  Lock lock(g_mu);
  CUstream_st* s = emu::detail::resolve(stream);
  CUevent_st* e = emu::detail::live_event(event);
  if (!s || !e)
    return set_error(cudaErrorInvalidResourceHandle, "cudaEventRecord(%p, %p): %s",
                     static_cast<void*>(event), static_cast<void*>(stream),
                     e ? "not a live stream" : "not a live event");
  if (s->legacy)
    if (cudaError_t err = emu::detail::refuse_legacy_during_capture("cudaEventRecord")) return err;
  if (emu::detail::Capture* c = emu::detail::capture_of(s)) {
    if (c->invalidated)
      return set_error(cudaErrorStreamCaptureInvalidated,
                       "cudaEventRecord: the capture was invalidated earlier by %s",
                       c->why.c_str());
    e->kind = CUevent_st::Kind::Captured;
    e->cap = c->id;
    e->cap_stream = s;
    e->cap_work = s->cap_work;
    return cudaSuccess;
  }
  e->kind = CUevent_st::Kind::Timed;
  e->t = std::chrono::steady_clock::now();
  emu::detail::issue(*s);
  e->done = emu::detail::completion(*s);
  return cudaSuccess;
}
// Both wait for the event's work (a query reports completion: the emulated work is done), so both
// deliver the pending copies it covers; `sync` counts a host synchronisation.
static cudaError_t event_wait(const char* call, cudaEvent_t event, bool sync) {
  Lock lock(g_mu);
  CUevent_st* e = emu::detail::live_event(event);
  if (!e)
    return set_error(cudaErrorInvalidResourceHandle, "%s(%p): not a live event", call,
                     static_cast<void*>(event));
  if (e->kind == CUevent_st::Kind::Captured) {
    if (emu::detail::Capture* c = emu::detail::capture_by_id(e->cap)) {
      c->invalidated = true;
      c->why = std::string(call) + " on an event recorded in the capture";
      return set_error(cudaErrorStreamCaptureUnsupported,
                       "%s(%p): the event was recorded in an active capture (this invalidated it)",
                       call, static_cast<void*>(event));
    }
  }
  if (sync) emu::detail::count([](emu::Counters& c) { ++c.sync_event; });
  return e->kind == CUevent_st::Kind::Timed ? emu::detail::wait_for(call, e->done) : cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  return event_wait("cudaEventSynchronize", event, true);
}
cudaError_t cudaEventQuery(cudaEvent_t event) {
  return event_wait("cudaEventQuery", event, false);
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (!ms) return set_error(cudaErrorInvalidValue, "cudaEventElapsedTime: ms is null");
  Lock lock(g_mu);
  CUevent_st* a = emu::detail::live_event(start);
  CUevent_st* b = emu::detail::live_event(end);
  if (!a || !b)
    return set_error(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: %s is not a live event",
                     a ? "end" : "start");
  if ((a->flags | b->flags) & cudaEventDisableTiming)
    return set_error(cudaErrorInvalidResourceHandle,
                     "cudaEventElapsedTime: an event was created with cudaEventDisableTiming");
  if (a->kind != CUevent_st::Kind::Timed || b->kind != CUevent_st::Kind::Timed)
    return set_error(cudaErrorInvalidResourceHandle,
                     "cudaEventElapsedTime: both events must have been recorded outside a capture");
  *ms = std::chrono::duration<float, std::milli>(b->t - a->t).count();
  return cudaSuccess;
}

// ---- graph capture ------------------------------------------------------------------------------
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  if (static_cast<int>(mode) < 0 || static_cast<int>(mode) > 2)
    return set_error(cudaErrorInvalidValue, "cudaStreamBeginCapture: unknown mode %d",
                     static_cast<int>(mode));
  Lock lock(g_mu);
  CUstream_st* s = emu::detail::resolve(stream);
  if (!s)
    return set_error(cudaErrorInvalidResourceHandle,
                     "cudaStreamBeginCapture(%p): not a live stream", static_cast<void*>(stream));
  if (s->legacy)
    return set_error(cudaErrorStreamCaptureUnsupported,
                     "cudaStreamBeginCapture: the legacy (NULL) stream cannot be captured; capture "
                     "a stream from cudaStreamCreate");
  if (s->cap)
    return set_error(cudaErrorIllegalState, "cudaStreamBeginCapture(%p): already capturing",
                     static_cast<void*>(stream));
  auto c = std::make_unique<emu::detail::Capture>();
  c->id = emu::detail::g_next_capture++;
  c->graph = new CUgraph_st;
  c->mode = mode;
  c->owner = std::this_thread::get_id();
  c->origin = s;
  c->members.push_back(s);
  s->cap = c->id;
  s->cap_work = 0;
  s->cap_joined = true;
  emu::detail::g_captures[c->id] = std::move(c);
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* pGraph) {
  if (!pGraph) return set_error(cudaErrorInvalidValue, "cudaStreamEndCapture: pGraph is null");
  Lock lock(g_mu);
  CUstream_st* s = emu::detail::resolve(stream);
  if (!s)
    return set_error(cudaErrorInvalidResourceHandle, "cudaStreamEndCapture(%p): not a live stream",
                     static_cast<void*>(stream));
  emu::detail::Capture* c = emu::detail::capture_of(s);
  if (!c)
    return set_error(cudaErrorIllegalState, "cudaStreamEndCapture(%p): the stream is not capturing",
                     static_cast<void*>(stream));
  if (c->origin != s) {
    c->invalidated = true;
    c->why = "cudaStreamEndCapture on a forked stream";
    return set_error(cudaErrorStreamCaptureUnmatched,
                     "cudaStreamEndCapture(%p): the capture began on stream %p",
                     static_cast<void*>(stream), static_cast<void*>(c->origin));
  }
  if (c->mode != cudaStreamCaptureModeRelaxed && c->owner != std::this_thread::get_id())
    return set_error(cudaErrorStreamCaptureWrongThread,
                     "cudaStreamEndCapture(%p): the capture (%s) began on another thread",
                     static_cast<void*>(stream), emu::detail::mode_name(c->mode));
  const CUstream_st* unjoined = nullptr;
  for (CUstream_st* m : c->members) {
    if (m != s && !m->cap_joined && !unjoined) unjoined = m;
    m->cap = 0;
  }
  std::unique_ptr<emu::detail::Capture> owned = std::move(emu::detail::g_captures[c->id]);
  emu::detail::g_captures.erase(owned->id);
  *pGraph = nullptr;
  if (owned->invalidated || unjoined) {
    delete owned->graph;
    if (owned->invalidated)
      return set_error(cudaErrorStreamCaptureInvalidated,
                       "cudaStreamEndCapture: the capture was invalidated by %s",
                       owned->why.c_str());
    return set_error(cudaErrorStreamCaptureUnjoined,
                     "cudaStreamEndCapture: stream %p joined the capture (cudaStreamWaitEvent) and "
                     "recorded work that the origin stream never waited for; record an event on it "
                     "after its last work and cudaStreamWaitEvent(origin, event)",
                     static_cast<const void*>(unjoined));
  }
  emu::detail::g_graphs.insert(owned->graph);
  *pGraph = owned->graph;
  return cudaSuccess;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* pCaptureStatus) {
  if (!pCaptureStatus)
    return set_error(cudaErrorInvalidValue, "cudaStreamIsCapturing: pCaptureStatus is null");
  Lock lock(g_mu);
  CUstream_st* s = emu::detail::resolve(stream);
  if (!s)
    return set_error(cudaErrorInvalidResourceHandle, "cudaStreamIsCapturing(%p): not a live stream",
                     static_cast<void*>(stream));
  const emu::detail::Capture* c = emu::detail::capture_of(s);
  *pCaptureStatus =
      !c ? cudaStreamCaptureStatusNone
         : (c->invalidated ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive);
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* pGraphExec, cudaGraph_t graph,
                                 unsigned long long flags) {
  if (!pGraphExec)
    return set_error(cudaErrorInvalidValue, "cudaGraphInstantiate: pGraphExec is null");
  if (flags > 0xf)
    return set_error(cudaErrorInvalidValue, "cudaGraphInstantiate: unknown flags 0x%llx", flags);
  Lock lock(g_mu);
  if (!emu::detail::g_graphs.count(graph))
    return set_error(cudaErrorInvalidResourceHandle, "cudaGraphInstantiate(%p): not a live graph",
                     static_cast<void*>(graph));
  auto* exec = new CUgraphExec_st;
  exec->nodes =
      std::make_shared<const std::vector<CUgraphNode_st>>(graph->nodes.begin(), graph->nodes.end());
  emu::detail::g_execs.insert(exec);
  *pGraphExec = exec;
  emu::detail::count([](emu::Counters& c) { ++c.graph_instantiations; });
  return cudaSuccess;
}
cudaError_t cudaGraphGetNodes(cudaGraph_t graph, cudaGraphNode_t* nodes, size_t* numNodes) {
  if (!numNodes) return set_error(cudaErrorInvalidValue, "cudaGraphGetNodes: numNodes is null");
  Lock lock(g_mu);
  if (!emu::detail::g_graphs.count(graph))
    return set_error(cudaErrorInvalidResourceHandle, "cudaGraphGetNodes(%p): not a live graph",
                     static_cast<void*>(graph));
  const size_t count = graph->nodes.size();
  if (nodes) {
    for (size_t i = 0; i < *numNodes; ++i) nodes[i] = i < count ? &graph->nodes[i] : nullptr;
    *numNodes = std::min(*numNodes, count);
  } else {
    *numNodes = count;
  }
  return cudaSuccess;
}
cudaError_t cudaGraphUpload(cudaGraphExec_t graphExec, cudaStream_t stream) {
  Lock lock(g_mu);
  if (!emu::detail::g_execs.count(graphExec) || !emu::detail::resolve(stream))
    return set_error(cudaErrorInvalidResourceHandle,
                     "cudaGraphUpload: not a live graph exec/stream");
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t graphExec, cudaStream_t stream) {
  std::shared_ptr<const std::vector<CUgraphNode_st>> nodes;
  {
    Lock lock(g_mu);
    if (!emu::detail::g_execs.count(graphExec))
      return set_error(cudaErrorInvalidResourceHandle, "cudaGraphLaunch(%p): not a live graph exec",
                       static_cast<void*>(graphExec));
    nodes = graphExec->nodes;
  }
  return emu::detail::submit(stream, "cudaGraphLaunch", [nodes = std::move(nodes)] {
    // Launched by the host, or a graph node of an enclosing replay (which counts its nodes only).
    if (emu::detail::tls_replay_depth == 0)
      emu::detail::count([](emu::Counters& c) { ++c.graph_launches; });
    return emu::detail::run_nodes(*nodes);
  });
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t graphExec) {
  Lock lock(g_mu);
  if (!emu::detail::g_execs.erase(graphExec))
    return set_error(cudaErrorInvalidResourceHandle, "cudaGraphExecDestroy(%p): not a live exec",
                     static_cast<void*>(graphExec));
  delete graphExec;
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  Lock lock(g_mu);
  if (!emu::detail::g_graphs.erase(graph))
    return set_error(cudaErrorInvalidResourceHandle, "cudaGraphDestroy(%p): not a live graph",
                     static_cast<void*>(graph));
  delete graph;
  return cudaSuccess;
}
