// tests/emu/scheduler.cpp: how the CUDA host emulation runs a grid. Run book.
//
// The CUDA-level picture is in tests/emu/include/cuda_runtime.h; this file is the machinery.
//
// GRID -> OS THREADS. execute_grid hands blocks to T OS threads (the calling thread is part 0,
// persistent workers are parts 1..T-1; T = os_threads()). Part p runs blocks p, p+T, p+2T, ...
// in order, so placement is the same on every run. Grids are serialised by g_exec_mutex (the device
// runs one grid at a time), and the first failing block stops the others (Job::abort).
//
// BLOCK -> FIBERS. Each OS thread owns an OsThread: a pool of fibers (ucontext, mmap'd stacks
// with a guard page) and the state of the block it is running (Block). run_block switches from
// the OS thread's own stack (the "scheduler") to an idle fiber. A fiber (fiber_loop) takes the
// next not-yet-started CUDA thread, runs the kernel body for it and, when the body returns, takes
// the next one on the same stack: no switch unless something blocks (so unstarted threads start
// before released ones resume). A thread that blocks (a barrier or a warp collective that is
// still waiting for others) switches directly to the next runnable fiber (switch_next): the
// oldest released thread first (FIFO), else a new fiber for the next unstarted thread, else back
// to the scheduler. The scheduler gets control back when nothing
// can run: either every thread is done, or the block is stuck (a divergent barrier or collective)
// or failed; then the fibers still holding threads are abandoned (marked fresh: a new
// makecontext and an unpoisoned stack before reuse).
//
// BARRIER: sync_block counts arrivals; the last arriver releases the waiters (in arrival order)
// and carries on. WARP COLLECTIVE: warp_op gathers the lanes of one mask into a Group (one per
// in-flight mask per warp); the last lane to arrive releases the others, and each lane computes
// its own result from the gathered values.
//
// SWITCH: on x86-64 a fiber switch is emu_switch (below): it saves the callee-saved registers,
// MXCSR and the x87 control word on the running stack and moves the stack pointer, a few
// nanoseconds. glibc's swapcontext also saves and restores the signal mask with a system call on
// every switch, which made it most of the cost of a collective-heavy kernel; it remains the
// fallback on other architectures (makecontext/swapcontext).
//
// ASAN: every switch is bracketed by __sanitizer_start_switch_fiber /
// __sanitizer_finish_switch_fiber with the target stack's bounds (the scheduler's own stack bounds
// are learnt from the first switch out of it). On the fallback path the glibc swapcontext is
// called directly, not ASan's interceptor: the interceptor would print a warning on first use and
// clear the shadow of the whole target stack on every switch, which the annotations make
// unnecessary.
#include "internal.h"

#include <dlfcn.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#else
#define EMU_ASAN 0
#endif

namespace emu::detail {

__thread BlockBuiltins tls_block;
__thread const uint3* tls_thread_idx;

namespace {

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char buf[1024];
  const int n = std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return std::string(buf, n < 0 ? 0 : std::min<size_t>(static_cast<size_t>(n), sizeof buf - 1));
}

// ---- configuration (environment, read once) -----------------------------------------------------
struct Config {
  int threads = 2;
  size_t stack_bytes = 256u << 10;
  std::string problem;
};

bool parse_int(const char* s, long lo, long hi, long* out) {
  char* end = nullptr;
  const long v = std::strtol(s, &end, 10);
  if (end == s || *end != '\0' || v < lo || v > hi) return false;
  *out = v;
  return true;
}

const Config& config() {
  static const Config c = [] {
    Config r;
    const unsigned hw = std::thread::hardware_concurrency();
    r.threads = std::max(2, std::min(static_cast<int>(hw == 0 ? 1 : hw), 4));
    long v = 0;
    if (const char* s = std::getenv("POMPC_EMU_THREADS")) {
      if (parse_int(s, 1, 64, &v))
        r.threads = static_cast<int>(v);
      else
        r.problem = format("POMPC_EMU_THREADS='%s' must be an integer in [1, 64]", s);
    }
    if (const char* s = std::getenv("POMPC_EMU_STACK_KB")) {
      if (parse_int(s, 64, 1 << 20, &v))
        r.stack_bytes = static_cast<size_t>(v) << 10;
      else
        r.problem = format("POMPC_EMU_STACK_KB='%s' must be an integer in [64, 1048576]", s);
    }
    return r;
  }();
  return c;
}

// ---- fibers -------------------------------------------------------------------------------------
#if defined(__x86_64__)
#define EMU_FAST_SWITCH 1
}  // namespace
}  // namespace emu::detail

// emu_switch(&from_sp, to_sp): pushes rbp rbx r12-r15 and an 8-byte slot with MXCSR and the x87
// control word (the System V callee-saved state) on the running stack, stores the stack pointer in
// *from_sp, loads to_sp and pops the same frame from it. A fresh fiber's stack is laid out as such
// a frame whose return address is fiber_entry (see prepare()).
extern "C" void emu_switch(void** from_sp, void* to_sp);
asm(R"(
  .text
  .p2align 4
  .globl emu_switch
  .type emu_switch, @function
emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size emu_switch, .-emu_switch
  .section .note.GNU-stack,"",@progbits
  .text
)");

namespace emu::detail {
namespace {
#else
#define EMU_FAST_SWITCH 0
using SwapFn = int (*)(ucontext_t*, const ucontext_t*);

SwapFn find_swapcontext() {
  SwapFn fn = &swapcontext;
#if EMU_ASAN
  if (void* libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD))
    if (void* sym = dlsym(libc, "swapcontext")) fn = reinterpret_cast<SwapFn>(sym);
#endif
  return fn;
}
#endif

struct Fiber {
#if EMU_FAST_SWITCH
  void* sp = nullptr;  // saved stack pointer while switched out
#else
  ucontext_t ctx;
#endif
  char* map = nullptr;  // guard page + stack
  size_t map_bytes = 0;
  char* stack = nullptr;  // lowest usable address
  size_t stack_bytes = 0;
  bool fresh = true;  // needs makecontext before the next switch to it
};

enum class St : uint8_t { NotStarted, Running, Ready, AtBarrier, AtWarp, Done };

struct Thread {  // one CUDA thread of the current block
  uint3 idx;
  unsigned linear;
  St st;
  Fiber* fiber;      // while started and not done
  const char* file;  // where it waits
  int line;
  WarpOp op;
  unsigned mask;
};

struct Group {  // one warp collective being gathered (or read) by the lanes of `mask`
  unsigned mask = 0, arrived = 0;
  WarpOp op = WarpOp::Shfl;
  int readers = 0;
  bool in_use = false;
  unsigned long long vals[32];
};

struct Warp {
  std::vector<Group> groups;
  unsigned done = 0;  // lanes that have exited
};

struct Block {
  const Grid* grid = nullptr;
  uint3 idx{};
  unsigned n = 0;
  std::vector<Thread> threads;
  std::vector<unsigned> ring;  // ready queue (each thread at most once): FIFO ring
  unsigned ring_head = 0, ring_count = 0;
  unsigned next_unstarted = 0, ndone = 0;
  unsigned bar_arrived = 0, bar_true = 0, bar_last_true = 0;
  std::vector<unsigned> bar_waiters;
  std::vector<Warp> warps;
  // Race detection (test_race): barrier intervals completed, each thread's view of its warp's
  // lane clocks (advanced by __syncwarp), the start order of the threads.
  uint32_t epoch = 0;
  std::vector<std::array<uint32_t, 32>> vc;
  std::vector<unsigned> order;
  bool aborting = false;
  cudaError_t err = cudaSuccess;
  std::string msg;
  Fiber* fail_fiber = nullptr;
};

constexpr unsigned kMaxThreads = 1024;

struct OsThread {
#if EMU_FAST_SWITCH
  void* sched_sp = nullptr;  // the scheduler's stack pointer while a fiber runs
#else
  SwapFn swap = find_swapcontext();
  ucontext_t sched;
#endif
  const void* sched_bottom = nullptr;  // the OS thread's stack, as ASan knows it
  size_t sched_size = 0;
  bool from_sched = false;
  Fiber* running = nullptr;  // nullptr: the scheduler
  Thread* cur = nullptr;
  std::vector<std::unique_ptr<Fiber>> fibers;
  std::vector<Fiber*> idle;
  Block block;
  void* dsmem = nullptr;
  uint64_t rng = 0x9E3779B97F4A7C15ull;  // the randomised schedule's xorshift state (test_race)

  OsThread() {
    block.threads.reserve(kMaxThreads);
    block.ring.resize(kMaxThreads);
    block.bar_waiters.reserve(kMaxThreads);
    block.warps.reserve(kMaxThreads / 32);
    idle.reserve(kMaxThreads);
  }
  ~OsThread() {
    for (auto& f : fibers) {
#if EMU_ASAN
      __asan_unpoison_memory_region(f->stack, f->stack_bytes);
#endif
      munmap(f->map, f->map_bytes);
    }
  }
  OsThread(const OsThread&) = delete;
  OsThread& operator=(const OsThread&) = delete;
};

thread_local std::unique_ptr<OsThread> tls_os_owner;
__thread OsThread* tls_os;

// ---- race detection state (test_race; see the run book in internal.h) -------------------------
std::atomic<bool> g_race{false};
std::atomic<bool> g_race_reports{true};
uint64_t g_schedule_seed = 1;

struct Rec {  // one access, who and when, in 8 bytes (block ids modulo 2^24, epochs 2^16)
  uint64_t thread : 10, clock : 14, epoch : 16, block : 24;
};
struct Cell {  // a 4-byte granule's last write and up to four reads since (bit i: byte i)
  Rec w{}, r[4]{};
  uint8_t wmask = 0, rmask[4] = {}, nr = 0, next = 0, atomics = 0;  // bit 4: w, bit i: r[i]
};

// Shadow memory: an open-addressing hash table from granule address to Cell (linear probing,
// load <= 1/2, no allocation per entry; clear() costs what was inserted).
class Shadow {
 public:
  [[gnu::no_sanitize_address]] Cell& at(uintptr_t key) {  // key != 0
    if (2 * (used_.size() + 1) > slots_.size()) grow();
    size_t i = index(key);
    while (slots_[i].key != 0 && slots_[i].key != key) i = (i + 1) & (slots_.size() - 1);
    if (slots_[i].key == 0) {
      slots_[i].key = key;
      slots_[i].cell = Cell{};
      used_.push_back(static_cast<uint32_t>(i));
    }
    return slots_[i].cell;
  }
  [[gnu::no_sanitize_address]] void clear() {
    for (uint32_t i : used_) slots_[i].key = 0;
    used_.clear();
  }

 private:
  struct Slot {
    uintptr_t key = 0;
    Cell cell;
  };
  size_t index(uintptr_t key) const {
    return static_cast<size_t>((key >> 2) * 0x9E3779B97F4A7C15ull >> 20) & (slots_.size() - 1);
  }
  void grow() {
    std::vector<Slot> old(std::max<size_t>(1024, slots_.size() * 2));
    old.swap(slots_);
    std::vector<uint32_t> used;
    used.swap(used_);
    for (uint32_t i : used) {
      size_t j = index(old[i].key);
      while (slots_[j].key != 0) j = (j + 1) & (slots_.size() - 1);
      slots_[j] = old[i];
      used_.push_back(static_cast<uint32_t>(j));
    }
  }
  std::vector<Slot> slots_;
  std::vector<uint32_t> used_;
};
Shadow g_global_shadow;  // device memory, per grid
Shadow g_block_shadow;   // everything else, per block
struct Range {
  uintptr_t lo = 0, hi = 0;
};
Range g_alloc_cache[8];  // recently hit device allocations (reset per grid)
unsigned g_alloc_next = 0;
constexpr size_t kHostCache = 4096;
uintptr_t g_host_cache[kHostCache];  // addresses found outside device memory (reset per grid)

uint64_t next_random(OsThread& os) {
  os.rng ^= os.rng << 13;
  os.rng ^= os.rng >> 7;
  os.rng ^= os.rng << 17;
  return os.rng;
}

OsThread& os_thread() {
  if (!tls_os) {
    tls_os_owner = std::make_unique<OsThread>();
    tls_os = tls_os_owner.get();
    tls_os->rng ^= g_schedule_seed * 0xD1B54A32D192ED03ull;
  }
  return *tls_os;
}

[[noreturn]] void fiber_entry();

void prepare(Fiber* f) {
#if EMU_ASAN
  // An abandoned fiber's stack still carries the shadow of the frames it held.
  __asan_unpoison_memory_region(f->stack, f->stack_bytes);
#endif
#if EMU_FAST_SWITCH
  // emu_switch's frame, top down: a null return address for fiber_entry (it never returns), the
  // address emu_switch returns to (fiber_entry, entered with rsp = 8 mod 16 as after a call),
  // six zero registers, then MXCSR and the x87 control word at their power-on values.
  auto* top = reinterpret_cast<uint64_t*>(
      (reinterpret_cast<uintptr_t>(f->stack + f->stack_bytes) & ~uintptr_t{15}));
  uint64_t* sp = top - 9;
  sp[8] = 0;
  sp[7] = reinterpret_cast<uint64_t>(&fiber_entry);
  for (int i = 1; i <= 6; ++i) sp[i] = 0;
  sp[0] = 0x1F80u | (uint64_t{0x037Fu} << 32);
  f->sp = sp;
#else
  getcontext(&f->ctx);
  f->ctx.uc_stack.ss_sp = f->stack;
  f->ctx.uc_stack.ss_size = f->stack_bytes;
  f->ctx.uc_link = nullptr;
  makecontext(&f->ctx, fiber_entry, 0);
  // Only makecontext reads uc_stack. A zero size keeps ASan's swapcontext interceptor (used if
  // libc's symbol could not be found) from clearing the whole stack's shadow on every switch.
  f->ctx.uc_stack.ss_size = 0;
#endif
  f->fresh = false;
}

Fiber* new_fiber(OsThread& os) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t bytes = (config().stack_bytes + page - 1) / page * page;
  void* m = mmap(nullptr, bytes + page, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (m == MAP_FAILED) return nullptr;
  if (mprotect(m, page, PROT_NONE) != 0) {
    munmap(m, bytes + page);
    return nullptr;
  }
  auto f = std::make_unique<Fiber>();
  f->map = static_cast<char*>(m);
  f->map_bytes = bytes + page;
  f->stack = f->map + page;
  f->stack_bytes = bytes;
  os.fibers.push_back(std::move(f));
  return os.fibers.back().get();
}

// Switches from the running context (a fiber or the scheduler) to `to` (nullptr: scheduler).
void switch_to(OsThread& os, Fiber* to) {
  Fiber* from = os.running;
  if (to == from) return;
  if (to && to->fresh) prepare(to);
  os.running = to;
  os.from_sched = from == nullptr;
#if EMU_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, to ? to->stack : os.sched_bottom,
                                 to ? to->stack_bytes : os.sched_size);
#endif
#if EMU_FAST_SWITCH
  emu_switch(from ? &from->sp : &os.sched_sp, to ? to->sp : os.sched_sp);
#else
  os.swap(from ? &from->ctx : &os.sched, to ? &to->ctx : &os.sched);
#endif
#if EMU_ASAN
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
}

// ---- block bookkeeping --------------------------------------------------------------------------
void push_ready(Block& b, unsigned id) {
  b.threads[id].st = St::Ready;
  b.ring[(b.ring_head + b.ring_count) % kMaxThreads] = id;
  ++b.ring_count;
}

// A fiber for the next unstarted thread; nullptr (and the block aborting) if none can be mapped.
Fiber* take_fiber(OsThread& os) {
  if (!os.idle.empty()) {
    Fiber* f = os.idle.back();
    os.idle.pop_back();
    return f;
  }
  if (Fiber* f = new_fiber(os)) return f;
  Block& b = os.block;
  if (!b.aborting) {
    b.aborting = true;
    b.err = cudaErrorLaunchOutOfResources;
    b.msg = format(
        "too many resources requested for launch (host emulation: could not map a "
        "%zu KiB fiber stack for kernel %s; lower POMPC_EMU_STACK_KB or the block size)",
        config().stack_bytes >> 10, b.grid->name);
  }
  return nullptr;
}

// Leaves the running fiber for the next runnable thing (see the run book at the top).
void switch_next(OsThread& os) {
  Block& b = os.block;
  Fiber* to = nullptr;
  if (!b.aborting) {
    if (b.ring_count > 0) {
      if (!b.order.empty() && b.ring_count > 1)  // randomised schedule: any ready thread next
        std::swap(b.ring[b.ring_head],
                  b.ring[(b.ring_head + next_random(os) % b.ring_count) % kMaxThreads]);
      const unsigned id = b.ring[b.ring_head];
      b.ring_head = (b.ring_head + 1) % kMaxThreads;
      --b.ring_count;
      to = b.threads[id].fiber;
    } else if (b.next_unstarted < b.n) {
      to = take_fiber(os);
    }
  }
  switch_to(os, to);
}

void resume(OsThread& os, Thread& me) {
  os.cur = &me;
  tls_thread_idx = &me.idx;
  me.st = St::Running;
}

std::string where(const Block& b) {
  const Grid& g = *b.grid;
  return format("kernel %s<<<(%u,%u,%u), (%u,%u,%u)>>>, block (%u,%u,%u)", g.name, g.grid.x,
                g.grid.y, g.grid.z, g.block.x, g.block.y, g.block.z, b.idx.x, b.idx.y, b.idx.z);
}

std::string who(const Thread& t) {
  return format("thread (%u,%u,%u) (warp %u lane %u)", t.idx.x, t.idx.y, t.idx.z, t.linear >> 5,
                t.linear & 31);
}

// Fails the block from inside a fiber: records the error and never returns (the scheduler
// abandons this fiber, so destructors of everything on its stack never run). Callers therefore
// build the message in a statement of its own, free every other heap string they hold, and pass
// the message by std::move: `std::string msg = format(...); fail(os, code, std::move(msg));`.
[[noreturn]] void fail(OsThread& os, cudaError_t code, std::string&& msg) {
  Block& b = os.block;
  {
    std::string taken(std::move(msg));  // leaves msg empty (no heap)
    if (!b.aborting) {
      b.aborting = true;
      b.err = code;
      b.msg.swap(taken);  // taken (destroyed here) gets b.msg's old buffer
    }
  }
  b.fail_fiber = os.running;
  switch_to(os, nullptr);
  std::abort();  // an aborted block's fibers are never resumed
}

const char* op_name(WarpOp op) {
  switch (op) {
    case WarpOp::Shfl:
      return "__shfl_sync";
    case WarpOp::ShflUp:
      return "__shfl_up_sync";
    case WarpOp::ShflDown:
      return "__shfl_down_sync";
    case WarpOp::ShflXor:
      return "__shfl_xor_sync";
    case WarpOp::Ballot:
      return "__ballot_sync";
    case WarpOp::Any:
      return "__any_sync";
    case WarpOp::All:
      return "__all_sync";
    case WarpOp::SyncWarp:
      return "__syncwarp";
    case WarpOp::ReduceAddU:
    case WarpOp::ReduceAddS:
      return "__reduce_add_sync";
    case WarpOp::ReduceMinU:
    case WarpOp::ReduceMinS:
      return "__reduce_min_sync";
    case WarpOp::ReduceMaxU:
    case WarpOp::ReduceMaxS:
      return "__reduce_max_sync";
    case WarpOp::ReduceAnd:
      return "__reduce_and_sync";
    case WarpOp::ReduceOr:
      return "__reduce_or_sync";
    case WarpOp::ReduceXor:
      return "__reduce_xor_sync";
    case WarpOp::MatchAny:
      return "__match_any_sync";
    case WarpOp::MatchAll:
      return "__match_all_sync";
  }
  return "?";
}

bool is_shuffle(WarpOp op) {
  return op == WarpOp::Shfl || op == WarpOp::ShflUp || op == WarpOp::ShflDown ||
         op == WarpOp::ShflXor;
}

std::string state_of(const Thread& t) {
  switch (t.st) {
    case St::NotStarted:
      return "not started";
    case St::Running:
    case St::Ready:
      return "runnable";
    case St::AtBarrier:
      return format("wait at __syncthreads (%s:%d)", t.file, t.line);
    case St::AtWarp:
      return format("wait at %s mask 0x%08x (%s:%d)", op_name(t.op), t.mask, t.file, t.line);
    case St::Done:
      return "exited";
  }
  return "?";
}

// "threads 0-31 wait at __syncthreads (f:12); threads 32-63 exited" (linear ids).
std::string block_states(const Block& b) {
  std::string out;
  int segments = 0;
  unsigned first = 0;
  std::string cur = b.n ? state_of(b.threads[0]) : std::string();
  for (unsigned i = 1; i <= b.n; ++i) {
    std::string s = i < b.n ? state_of(b.threads[i]) : std::string();
    if (i < b.n && s == cur) continue;
    if (++segments > 12) {
      out += "; ...";
      break;
    }
    if (!out.empty()) out += "; ";
    out += first + 1 == i ? format("thread %u ", first) : format("threads %u-%u ", first, i - 1);
    out += cur;
    first = i;
    cur = std::move(s);
  }
  return out;
}

// Called by the scheduler when no thread of the block can run but not all have exited.
void report_stuck(Block& b) {
  bool barrier = false;
  for (unsigned i = 0; i < b.n; ++i) barrier |= b.threads[i].st == St::AtBarrier;
  const bool multi = b.grid->block.y > 1 || b.grid->block.z > 1;
  b.aborting = true;
  b.err = cudaErrorIllegalInstruction;
  b.msg =
      format("%s (host emulation: %s: ",
             barrier ? "divergent __syncthreads" : "divergent warp collective", where(b).c_str()) +
      block_states(b) + (multi ? " [linear thread ids, x fastest]" : "") +
      (barrier ? ". Every thread of a block must reach each __syncthreads; none may exit "
                 "before a barrier the others wait at)"
               : ". Every lane named in a collective's mask must reach that collective)");
}

// Returns the fibers still holding threads of an aborted block to the idle pool, reset.
void abandon(OsThread& os, Block& b) {
  auto reset = [&os](Fiber* f) {
    if (!f || f->fresh) return;
    f->fresh = true;
    os.idle.push_back(f);
  };
  for (unsigned i = 0; i < b.n; ++i) {
    Thread& t = b.threads[i];
    if (t.fiber && t.st != St::Done) reset(t.fiber);
    t.fiber = nullptr;
  }
  if (b.fail_fiber) {
    // The failing fiber may already be back in the idle list (it failed between threads).
    if (std::find(os.idle.begin(), os.idle.end(), b.fail_fiber) == os.idle.end())
      reset(b.fail_fiber);
    else
      b.fail_fiber->fresh = true;
  }
}

// A lane that exits while lanes of a gathering collective wait for it: fail now, naming it.
void check_exit_in_collective(OsThread& os, Block& b, const Thread& t) {
  const unsigned bit = 1u << (t.linear & 31);
  for (const Group& g : b.warps[t.linear >> 5].groups) {
    if (!g.in_use || g.arrived == g.mask || !(g.mask & bit) || (g.arrived & bit)) continue;
    const Thread* waiter = nullptr;
    for (unsigned l = 0; l < 32 && !waiter; ++l)
      if (g.arrived & (1u << l)) waiter = &b.threads[(t.linear & ~31u) + l];
    std::string msg = format(
        "divergent warp collective (host emulation: %s: %s exited while lanes 0x%08x of "
        "its warp wait for it at %s mask 0x%08x (%s:%d))",
        where(b).c_str(), who(t).c_str(), g.arrived, op_name(g.op), g.mask,
        waiter ? waiter->file : "?", waiter ? waiter->line : 0);
    fail(os, cudaErrorIllegalInstruction, std::move(msg));
  }
}

void run_body(OsThread& os, Block& b, Thread& t) {
  bool threw = false;
  std::string what;
  try {
    b.grid->call->run();
  } catch (const std::exception& e) {
    threw = true;
    what = e.what();
  } catch (...) {
    threw = true;
    what = "an exception that is not a std::exception";
  }
  if (threw) {
    std::string msg = format("unspecified launch failure (host emulation: %s: %s threw %s)",
                             where(b).c_str(), who(t).c_str(), what.c_str());
    std::string().swap(what);
    fail(os, cudaErrorLaunchFailure, std::move(msg));
  }
}

// The body of every fiber: run unstarted threads back to back, park when there are none left.
[[noreturn]] void fiber_loop(OsThread& os) {
  Fiber* const self = os.running;
  for (;;) {
    Block& b = os.block;
    while (!b.aborting && b.next_unstarted < b.n) {
      Thread& t = b.threads[b.order.empty() ? b.next_unstarted++ : b.order[b.next_unstarted++]];
      t.fiber = self;
      resume(os, t);
      run_body(os, b, t);
      check_exit_in_collective(os, b, t);
      t.st = St::Done;
      b.warps[t.linear >> 5].done |= 1u << (t.linear & 31);
      t.fiber = nullptr;
      ++b.ndone;
    }
    os.idle.push_back(self);
    switch_next(os);
  }
}

void fiber_entry() {
  OsThread& os = *tls_os;
#if EMU_ASAN
  const void* bottom = nullptr;
  size_t size = 0;
  __sanitizer_finish_switch_fiber(nullptr, &bottom, &size);
  if (os.from_sched && !os.sched_bottom) {
    os.sched_bottom = bottom;
    os.sched_size = size;
  }
#endif
  fiber_loop(os);
}

void run_block(OsThread& os, const Grid& g, uint64_t linear_block) {
  Block& b = os.block;
  b.grid = &g;
  b.idx = uint3{static_cast<unsigned>(linear_block % g.grid.x),
                static_cast<unsigned>(linear_block / g.grid.x % g.grid.y),
                static_cast<unsigned>(linear_block / g.grid.x / g.grid.y)};
  b.n = g.block.x * g.block.y * g.block.z;
  b.threads.resize(b.n);
  for (unsigned i = 0; i < b.n; ++i) {
    Thread& t = b.threads[i];
    t.idx = uint3{i % g.block.x, i / g.block.x % g.block.y, i / g.block.x / g.block.y};
    t.linear = i;
    t.st = St::NotStarted;
    t.fiber = nullptr;
    t.file = nullptr;
    t.line = 0;
  }
  b.ring_head = b.ring_count = 0;
  b.next_unstarted = b.ndone = 0;
  if (g_race.load(std::memory_order_relaxed)) {
    b.epoch = 0;
    b.vc.assign(b.n, std::array<uint32_t, 32>{});
    b.order.resize(b.n);
    for (unsigned i = 0; i < b.n; ++i) b.order[i] = i;
    for (unsigned i = b.n; i > 1; --i) std::swap(b.order[i - 1], b.order[next_random(os) % i]);
    g_block_shadow.clear();
  } else {
    b.order.clear();
  }
  b.bar_arrived = b.bar_true = b.bar_last_true = 0;
  b.bar_waiters.clear();
  b.warps.resize((b.n + 31) / 32);
  for (Warp& w : b.warps) {
    for (Group& gr : w.groups) gr.in_use = false;
    w.done = 0;
  }
  b.aborting = false;
  b.err = cudaSuccess;
  b.msg.clear();
  b.fail_fiber = nullptr;

  tls_block = BlockBuiltins{b.idx, uint3{g.block.x, g.block.y, g.block.z},
                            uint3{g.grid.x, g.grid.y, g.grid.z}};
  if (g.smem) std::memset(os.dsmem, 0xff, g.smem);

  if (Fiber* f = take_fiber(os)) switch_to(os, f);
  if (!b.aborting && b.ndone < b.n) report_stuck(b);
  if (b.aborting) abandon(os, b);
  os.cur = nullptr;
  tls_thread_idx = nullptr;
}

// ---- OS threads ---------------------------------------------------------------------------------
struct Job {
  const Grid* grid = nullptr;
  uint64_t nblocks = 0;
  unsigned parts = 1;
  std::atomic<bool> abort{false};
  std::atomic<unsigned> ran{0};  // bit p: part p ran a block
  std::mutex mu;
  uint64_t err_block = UINT64_MAX;
  GridResult result;
};

void run_part(Job& job, unsigned part) {
  OsThread& os = os_thread();
  const Grid& g = *job.grid;
  os.dsmem = ::operator new (g.smem, std::align_val_t{16});
  bool ran = false;
  for (uint64_t b = part; b < job.nblocks; b += job.parts) {
    if (job.abort.load(std::memory_order_relaxed)) break;
    run_block(os, g, b);
    ran = true;
    if (os.block.aborting) {
      std::lock_guard<std::mutex> lock(job.mu);
      if (b < job.err_block) {
        job.err_block = b;
        job.result.code = os.block.err;
        job.result.message = std::move(os.block.msg);
      }
      job.abort = true;
      break;
    }
  }
  ::operator delete (os.dsmem, std::align_val_t{16});
  os.dsmem = nullptr;
  if (ran) job.ran.fetch_or(1u << part);
}

class Pool {
 public:
  explicit Pool(int n) : n_(n) {
    for (int i = 1; i < n; ++i)
      threads_.emplace_back([this, i] { worker(static_cast<unsigned>(i)); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    work_cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  int size() const { return n_; }

  void run(Job& job) {
    job.parts = static_cast<unsigned>(std::min<uint64_t>(job.nblocks, static_cast<uint64_t>(n_)));
    if (job.parts > 1) {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = &job;
      pending_ = job.parts - 1;
      ++generation_;
    }
    if (job.parts > 1) work_cv_.notify_all();
    run_part(job, 0);
    if (job.parts > 1) {
      std::unique_lock<std::mutex> lock(mu_);
      done_cv_.wait(lock, [this] { return pending_ == 0; });
      job_ = nullptr;
    }
  }

 private:
  void worker(unsigned index) {
    uint64_t seen = 0;
    for (;;) {
      Job* job = nullptr;
      {
        std::unique_lock<std::mutex> lock(mu_);
        work_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        if (job_ && index < job_->parts) job = job_;
      }
      if (!job) continue;
      run_part(*job, index);
      {
        std::lock_guard<std::mutex> lock(mu_);
        --pending_;
      }
      done_cv_.notify_all();
    }
  }

  int n_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  Job* job_ = nullptr;
  uint64_t generation_ = 0;
  unsigned pending_ = 0;
  bool stop_ = false;
};

Pool& pool() {
  // Race detection keeps one shadow of device memory per grid: one OS thread runs the blocks.
  static Pool p(g_race.load() ? 1 : config().threads);
  return p;
}

std::atomic<uint64_t> g_launches{0};
std::atomic<int> g_last_os_threads{0};
std::mutex g_exec_mutex;

}  // namespace

// ---- device-side entry points (emu/device.h) ----------------------------------------------------
[[gnu::no_sanitize_address]] int sync_block(SyncKind kind, int predicate, const char* file,
                                            int line) {
  OsThread& os = *tls_os;
  Block& b = os.block;
  Thread& me = *os.cur;
  ++b.bar_arrived;
  b.bar_true += predicate != 0;
  if (b.bar_arrived == b.n) {
    if (!b.vc.empty()) {  // race detection: a new barrier interval, warp clocks restart
      ++b.epoch;
      std::fill(b.vc.begin(), b.vc.end(), std::array<uint32_t, 32>{});
    }
    b.bar_last_true = b.bar_true;
    b.bar_arrived = b.bar_true = 0;
    for (unsigned id : b.bar_waiters) push_ready(b, id);
    b.bar_waiters.clear();
  } else {
    me.st = St::AtBarrier;
    me.file = file;
    me.line = line;
    b.bar_waiters.push_back(me.linear);
    switch_next(os);
    resume(os, me);
  }
  switch (kind) {
    case SyncKind::Plain:
      return 0;
    case SyncKind::Count:
      return static_cast<int>(b.bar_last_true);
    case SyncKind::And:
      return b.bar_last_true == b.n;
    case SyncKind::Or:
      return b.bar_last_true > 0;
  }
  return 0;
}

namespace {
// The failure path of warp_op's argument checks, out of line so that the hot path's frame holds
// no strings.
[[noreturn, gnu::noinline, gnu::cold]] void invalid_collective(OsThread& os, WarpOp op,
                                                               unsigned mask, int width,
                                                               const char* file, int line) {
  Block& b = os.block;
  const Thread& me = *os.cur;
  const unsigned lane = me.linear & 31, warp = me.linear >> 5, base = warp * 32;
  const unsigned lanes = std::min(32u, b.n - base);
  const unsigned exist = lanes == 32 ? ~0u : (1u << lanes) - 1;
  std::string why;
  if (!(mask & (1u << lane))) {
    why = format("mask 0x%08x does not include the calling lane %u", mask, lane);
  } else if (mask & ~exist) {
    why = format(
        "mask 0x%08x names lanes that do not exist (the block has %u threads, so warp "
        "%u has lanes 0-%u)",
        mask, b.n, warp, lanes - 1);
  } else if (is_shuffle(op) && (width < 1 || width > 32 || (width & (width - 1)) != 0)) {
    why = format("width %d must be a power of 2 in [1, 32]", width);
  } else {
    why = format("lane %d of mask 0x%08x has exited", __builtin_ctz(mask & b.warps[warp].done),
                 mask);
  }
  std::string msg =
      format("invalid warp collective (host emulation: %s: %s at %s (%s:%d): ", where(b).c_str(),
             who(me).c_str(), op_name(op), file, line) +
      why + ")";
  std::string().swap(why);
  fail(os, cudaErrorIllegalInstruction, std::move(msg));
}
}  // namespace

// Not instrumented by AddressSanitizer (like sync_block): the emulation's own bookkeeping, run
// once per lane per collective; ASan's frame poisoning was a third of an emulated training step.
// Kernel code stays instrumented.
[[gnu::no_sanitize_address]] unsigned long long warp_op(WarpOp op, unsigned mask,
                                                        unsigned long long value, int arg,
                                                        int width, const char* file, int line,
                                                        int* pred) {
  OsThread& os = *tls_os;
  Block& b = os.block;
  Thread& me = *os.cur;
  const unsigned lane = me.linear & 31, warp = me.linear >> 5, base = warp * 32;
  const unsigned lanes = std::min(32u, b.n - base);
  const unsigned exist = lanes == 32 ? ~0u : (1u << lanes) - 1;
  const unsigned bit = 1u << lane;
  Warp& w = b.warps[warp];
  if (!(mask & bit) || (mask & ~exist) || (mask & w.done) ||
      (is_shuffle(op) && (width < 1 || width > 32 || (width & (width - 1)) != 0)))
    invalid_collective(os, op, mask, width, file, line);

  int gi = -1, free_gi = -1;
  for (int i = 0; i < static_cast<int>(w.groups.size()); ++i) {
    const Group& g = w.groups[i];
    if (!g.in_use) {
      if (free_gi < 0) free_gi = i;
    } else if (g.mask == mask && g.arrived != mask) {
      gi = i;
      break;
    }
  }
  if (gi >= 0 && w.groups[gi].op != op) {
    const Group& g = w.groups[gi];
    const Thread* other = nullptr;
    for (unsigned l = 0; l < 32 && !other; ++l)
      if (g.arrived & (1u << l)) other = &b.threads[base + l];
    std::string msg = format(
        "divergent warp collective (host emulation: %s: %s is at %s (%s:%d) while lanes "
        "0x%08x of mask 0x%08x wait at %s (%s:%d))",
        where(b).c_str(), who(me).c_str(), op_name(op), file, line, g.arrived, mask, op_name(g.op),
        other ? other->file : "?", other ? other->line : 0);
    fail(os, cudaErrorIllegalInstruction, std::move(msg));
  }
  if (gi < 0) {
    if (free_gi < 0) {
      w.groups.emplace_back();
      free_gi = static_cast<int>(w.groups.size()) - 1;
    }
    gi = free_gi;
    Group& g = w.groups[gi];
    g.mask = mask;
    g.arrived = 0;
    g.op = op;
    g.readers = __builtin_popcount(mask);
    g.in_use = true;
  }
  {
    Group& g = w.groups[gi];
    g.vals[lane] = value;
    g.arrived |= bit;
    if (g.arrived != mask) {
      me.st = St::AtWarp;
      me.op = op;
      me.mask = mask;
      me.file = file;
      me.line = line;
      switch_next(os);
      resume(os, me);
    } else {
      for (unsigned l = 0; l < 32; ++l)
        if ((mask >> l & 1u) && l != lane) push_ready(b, base + l);
      if (op == WarpOp::SyncWarp && !b.vc.empty()) {
        // Race detection: each lane ends its interval, then all take the merged clocks.
        std::array<uint32_t, 32> merged{};
        for (unsigned l = 0; l < 32; ++l)
          if (mask >> l & 1u) {
            ++b.vc[base + l][l];
            for (unsigned k = 0; k < 32; ++k) merged[k] = std::max(merged[k], b.vc[base + l][k]);
          }
        for (unsigned l = 0; l < 32; ++l)
          if (mask >> l & 1u) b.vc[base + l] = merged;
      }
    }
  }

  Group& g = b.warps[warp].groups[gi];           // re-read: the vector may have grown meanwhile
  constexpr unsigned long long kPoison = ~0ull;  // a source lane outside the mask
  auto from = [&](int src) { return (mask >> src & 1u) ? g.vals[src] : kPoison; };
  const int seg = static_cast<int>(lane) & ~(width - 1);
  unsigned long long r = 0;
  switch (op) {
    case WarpOp::Shfl:
      r = from(seg + (arg & (width - 1)));
      break;
    case WarpOp::ShflUp: {
      const int src = static_cast<int>(lane) - arg;
      r = src < seg ? value : from(src);
      break;
    }
    case WarpOp::ShflDown: {
      const int src = static_cast<int>(lane) + arg;
      r = src >= seg + width ? value : from(src);
      break;
    }
    case WarpOp::ShflXor: {
      const int src = static_cast<int>(lane) ^ (arg & 31);
      r = src >= seg + width ? value : from(src);
      break;
    }
    case WarpOp::Ballot:
    case WarpOp::Any:
    case WarpOp::All: {
      unsigned ballot = 0;
      for (unsigned l = 0; l < 32; ++l)
        if ((mask >> l & 1u) && g.vals[l]) ballot |= 1u << l;
      r = op == WarpOp::Ballot ? ballot : op == WarpOp::Any ? ballot != 0 : ballot == mask;
      break;
    }
    case WarpOp::SyncWarp:
      break;
    default: {
      unsigned acc = op == WarpOp::ReduceAnd ? ~0u : 0u;
      bool first = true, all_equal = true;
      unsigned match = 0;
      for (unsigned l = 0; l < 32; ++l) {
        if (!(mask >> l & 1u)) continue;
        const unsigned u = static_cast<unsigned>(g.vals[l]);
        const int s = static_cast<int>(u);
        switch (op) {
          case WarpOp::ReduceAddU:
          case WarpOp::ReduceAddS:
            acc += u;
            break;
          case WarpOp::ReduceMinU:
            acc = first || u < acc ? u : acc;
            break;
          case WarpOp::ReduceMaxU:
            acc = first || u > acc ? u : acc;
            break;
          case WarpOp::ReduceMinS:
            acc = first || s < static_cast<int>(acc) ? u : acc;
            break;
          case WarpOp::ReduceMaxS:
            acc = first || s > static_cast<int>(acc) ? u : acc;
            break;
          case WarpOp::ReduceAnd:
            acc &= u;
            break;
          case WarpOp::ReduceOr:
            acc |= u;
            break;
          case WarpOp::ReduceXor:
            acc ^= u;
            break;
          default:
            if (g.vals[l] == value) match |= 1u << l;
            all_equal &= g.vals[l] == value;
            break;
        }
        first = false;
      }
      if (op == WarpOp::MatchAny) {
        r = match;
      } else if (op == WarpOp::MatchAll) {
        r = all_equal ? mask : 0;
        if (pred) *pred = all_equal;
      } else {
        r = acc;
      }
      break;
    }
  }
  if (--g.readers == 0) g.in_use = false;
  return r;
}

// ---- race detection ---------------------------------------------------------------------------
namespace {

[[gnu::no_sanitize_address]] bool in_device_memory(uintptr_t a) {
  for (const Range& r : g_alloc_cache)
    if (a >= r.lo && a < r.hi) return true;
  // Host memory seen before in this grid (kernel arguments, constants): by exact address.
  uintptr_t& host = g_host_cache[(a >> 3) % kHostCache];
  if (host == a) return false;
  uintptr_t base = 0;
  size_t bytes = 0;
  if (!device_allocation_of(reinterpret_cast<const void*>(a), &base, &bytes)) {
    host = a;
    return false;
  }
  g_alloc_cache[g_alloc_next++ % 8] = Range{base, base + bytes};
  return true;
}

// Whether the access `p` happened before the current thread's present point.
[[gnu::no_sanitize_address]] bool ordered(const Block& b, const Rec& p, const Rec& cur) {
  if (p.block != cur.block) return false;  // blocks of one grid are never ordered
  if (p.thread == cur.thread || p.epoch != cur.epoch) return true;
  if (p.thread >> 5 != cur.thread >> 5) return false;
  return b.vc[cur.thread][p.thread & 31] > p.clock;
}

std::string who_rec(const Block& b, const Rec& r) {
  const Grid& g = *b.grid;
  const unsigned bx = g.block.x, by = g.block.y;
  const unsigned th = static_cast<unsigned>(r.thread);
  std::string t = format("thread (%u,%u,%u) (warp %u lane %u)", th % bx, th / bx % by,
                         th / bx / by, th >> 5, th & 31);
  const unsigned blk = static_cast<unsigned>(r.block);
  Rec self{};
  self.block = b.idx.x + g.grid.x * (b.idx.y + g.grid.y * b.idx.z);
  if (r.block == self.block) return t + " of the same block";
  const unsigned gx = g.grid.x, gy = g.grid.y;
  return t + format(" of block (%u,%u,%u)", blk % gx, blk / gx % gy, blk / gx / gy);
}

[[noreturn, gnu::noinline, gnu::cold]] void report_race(OsThread& os, uintptr_t addr, bool global,
                                                        bool write, const Rec& other,
                                                        bool other_write) {
  Block& b = os.block;
  std::string space;
  if (global) {
    uintptr_t base = 0;
    size_t bytes = 0;
    device_allocation_of(reinterpret_cast<const void*>(addr), &base, &bytes);
    space = format("global memory at %p (byte %zu of a %zu-byte cudaMalloc block)",
                   reinterpret_cast<void*>(addr), size_t(addr - base), bytes);
  } else {
    space = format("shared memory at %p", reinterpret_cast<void*>(addr));
  }
  std::string msg = format(
      "data race (host emulation: %s: %s %s %s that %s %s in the same barrier interval; no "
      "__syncthreads (or __syncwarp, between lanes of one warp) orders the two accesses, so "
      "on a GPU either may come first)",
      where(b).c_str(), who(*os.cur).c_str(), write ? "writes" : "reads", space.c_str(),
      who_rec(b, other).c_str(), other_write ? "wrote" : "read");
  std::string().swap(space);
  fail(os, cudaErrorLaunchFailure, std::move(msg));
}

}  // namespace

void race_enable(uint64_t schedule_seed) {
  g_schedule_seed = schedule_seed ? schedule_seed : 1;
  g_race = true;
}

bool race_enabled() {
  return g_race.load(std::memory_order_relaxed);
}

// Not instrumented by AddressSanitizer: it runs on every access of every emulated thread.
[[gnu::no_sanitize_address]] void race_access(const void* p, size_t size, bool write,
                                              bool atomic) {
  OsThread* osp = tls_os;
  if (!osp || !osp->cur || size == 0) return;  // host code of a kernel's translation unit
  OsThread& os = *osp;
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  const Fiber* f = os.running;
  const uintptr_t lo = reinterpret_cast<uintptr_t>(f->stack);
  if (a >= lo && a < lo + f->stack_bytes) return;  // the thread's own locals
  Block& b = os.block;
  Thread& me = *os.cur;
  // The emulation's builtins (threadIdx points into b.threads; blockIdx/blockDim/gridDim are
  // tls_block): read-only for kernels, never shared data.
  const uintptr_t th = reinterpret_cast<uintptr_t>(b.threads.data());
  if ((a >= th && a < th + b.n * sizeof(Thread)) ||
      (a >= reinterpret_cast<uintptr_t>(&tls_block) &&
       a < reinterpret_cast<uintptr_t>(&tls_block) + sizeof tls_block) ||
      (a >= reinterpret_cast<uintptr_t>(&tls_thread_idx) &&
       a < reinterpret_cast<uintptr_t>(&tls_thread_idx) + sizeof tls_thread_idx))
    return;
  const bool global = in_device_memory(a);
  auto& shadow = global ? g_global_shadow : g_block_shadow;
  Rec cur{};
  cur.thread = me.linear;
  cur.block = b.idx.x + b.grid->grid.x * (b.idx.y + b.grid->grid.y * b.idx.z);
  cur.epoch = b.epoch;
  cur.clock = b.vc[me.linear][me.linear & 31];
  for (uintptr_t g = a & ~uintptr_t{3}; g < a + size; g += 4) {
    const uintptr_t from = std::max(g, a), to = std::min(g + 4, a + size);
    const uint8_t mask = static_cast<uint8_t>(((1u << (to - from)) - 1) << (from - g));
    Cell& c = shadow.at(g);
    const bool report = g_race_reports.load(std::memory_order_relaxed);
    if (report && (c.wmask & mask) && !(atomic && (c.atomics & 16)) && !ordered(b, c.w, cur))
      report_race(os, g, global, write, c.w, true);
    if (write) {
      for (unsigned i = 0; report && i < c.nr; ++i)
        if ((c.rmask[i] & mask) && !(atomic && (c.atomics >> i & 1)) && !ordered(b, c.r[i], cur))
          report_race(os, g, global, true, c.r[i], false);
      c.w = cur;
      c.wmask = mask;
      c.atomics = atomic ? 16 : 0;
      c.nr = 0;
      c.next = 0;
    } else {
      unsigned slot = c.nr;
      for (unsigned i = 0; i < c.nr; ++i)
        if (c.r[i].thread == cur.thread && c.r[i].block == cur.block) slot = i;
      if (slot == c.nr) {
        if (c.nr < 4) {
          ++c.nr;
        } else {
          slot = c.next;
          c.next = static_cast<uint8_t>((c.next + 1) % 4);
        }
      }
      c.r[slot] = cur;
      c.rmask[slot] = mask;
      c.atomics = static_cast<uint8_t>((c.atomics & ~(1u << slot)) | (atomic ? 1u << slot : 0u));
    }
  }
  // The randomised schedule: now and then another ready thread of the block runs first.
  if ((next_random(os) & 15) == 0 && (b.ring_count > 0 || b.next_unstarted < b.n)) {
    push_ready(b, me.linear);
    switch_next(os);
    resume(os, me);
  }
}

unsigned active_mask() {
  const OsThread& os = *tls_os;
  const Block& b = os.block;
  const unsigned base = os.cur->linear & ~31u;
  const unsigned lanes = std::min(32u, b.n - base);
  const unsigned exist = lanes == 32 ? ~0u : (1u << lanes) - 1;
  return exist & ~b.warps[base >> 5].done;
}

void trap(const char* file, int line) {
  OsThread& os = *tls_os;
  std::string msg =
      format("unspecified launch failure (host emulation: %s: %s called __trap() at %s:%d)",
             where(os.block).c_str(), who(*os.cur).c_str(), file, line);
  fail(os, cudaErrorLaunchFailure, std::move(msg));
}

// ---- host-side entry points ---------------------------------------------------------------------
GridResult execute_grid(const Grid& g) {
  if (!config().problem.empty())
    return GridResult{cudaErrorInvalidValue,
                      "invalid argument (host emulation: " + config().problem + ")"};
  std::lock_guard<std::mutex> lock(g_exec_mutex);
  if (g_race.load(std::memory_order_relaxed)) {  // a kernel boundary orders every access
    g_global_shadow.clear();
    for (Range& r : g_alloc_cache) r = Range{};
    std::fill(std::begin(g_host_cache), std::end(g_host_cache), uintptr_t{0});
  }
  Job job;
  job.grid = &g;
  job.nblocks = static_cast<uint64_t>(g.grid.x) * g.grid.y * g.grid.z;
  g_launches.fetch_add(1);
  pool().run(job);
  g_last_os_threads = __builtin_popcount(job.ran.load());
  return std::move(job.result);
}

}  // namespace emu::detail

namespace emu {

void* dynamic_shared_memory() {
  return detail::tls_os ? detail::tls_os->dsmem : nullptr;
}
uint64_t launch_count() {
  return detail::g_launches.load();
}
int os_threads() {
  return detail::config().threads;
}
int last_launch_os_threads() {
  return detail::g_last_os_threads.load();
}
bool race_detection() {
  return detail::race_enabled();
}
bool set_race_reports(bool on) {
  return detail::g_race_reports.exchange(on);
}

}  // namespace emu
