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
// ASAN: every swapcontext is bracketed by __sanitizer_start_switch_fiber /
// __sanitizer_finish_switch_fiber with the target stack's bounds (the scheduler's own stack bounds
// are learnt from the first switch out of it). The glibc swapcontext is called directly, not
// ASan's interceptor: the interceptor would print a warning on first use and clear the shadow of
// the whole target stack on every switch, which the annotations make unnecessary.
#include "internal.h"

#include <dlfcn.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
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
using SwapFn = int (*)(ucontext_t*, const ucontext_t*);

SwapFn find_swapcontext() {
  SwapFn fn = &swapcontext;
#if EMU_ASAN
  if (void* libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD))
    if (void* sym = dlsym(libc, "swapcontext")) fn = reinterpret_cast<SwapFn>(sym);
#endif
  return fn;
}

struct Fiber {
  ucontext_t ctx;
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
  bool aborting = false;
  cudaError_t err = cudaSuccess;
  std::string msg;
  Fiber* fail_fiber = nullptr;
};

constexpr unsigned kMaxThreads = 1024;

struct OsThread {
  SwapFn swap = find_swapcontext();
  ucontext_t sched;
  const void* sched_bottom = nullptr;  // the OS thread's stack, as ASan knows it
  size_t sched_size = 0;
  bool from_sched = false;
  Fiber* running = nullptr;  // nullptr: the scheduler
  Thread* cur = nullptr;
  std::vector<std::unique_ptr<Fiber>> fibers;
  std::vector<Fiber*> idle;
  Block block;
  void* dsmem = nullptr;

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

OsThread& os_thread() {
  if (!tls_os) {
    tls_os_owner = std::make_unique<OsThread>();
    tls_os = tls_os_owner.get();
  }
  return *tls_os;
}

[[noreturn]] void fiber_entry();

void prepare(Fiber* f) {
  getcontext(&f->ctx);
  f->ctx.uc_stack.ss_sp = f->stack;
  f->ctx.uc_stack.ss_size = f->stack_bytes;
  f->ctx.uc_link = nullptr;
  makecontext(&f->ctx, fiber_entry, 0);
  // Only makecontext reads uc_stack. A zero size keeps ASan's swapcontext interceptor (used if
  // libc's symbol could not be found) from clearing the whole stack's shadow on every switch.
  f->ctx.uc_stack.ss_size = 0;
#if EMU_ASAN
  __asan_unpoison_memory_region(f->stack, f->stack_bytes);
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
  os.swap(from ? &from->ctx : &os.sched, to ? &to->ctx : &os.sched);
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
      Thread& t = b.threads[b.next_unstarted++];
      t.fiber = self;
      resume(os, t);
      run_body(os, b, t);
      check_exit_in_collective(os, b, t);
      t.st = St::Done;
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
  b.bar_arrived = b.bar_true = b.bar_last_true = 0;
  b.bar_waiters.clear();
  b.warps.resize((b.n + 31) / 32);
  for (Warp& w : b.warps)
    for (Group& gr : w.groups) gr.in_use = false;
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
  static Pool p(config().threads);
  return p;
}

std::atomic<uint64_t> g_launches{0};
std::atomic<int> g_last_os_threads{0};
std::mutex g_exec_mutex;

}  // namespace

// ---- device-side entry points (emu/device.h) ----------------------------------------------------
int sync_block(SyncKind kind, int predicate, const char* file, int line) {
  OsThread& os = *tls_os;
  Block& b = os.block;
  Thread& me = *os.cur;
  ++b.bar_arrived;
  b.bar_true += predicate != 0;
  if (b.bar_arrived == b.n) {
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

unsigned long long warp_op(WarpOp op, unsigned mask, unsigned long long value, int arg, int width,
                           const char* file, int line, int* pred) {
  OsThread& os = *tls_os;
  Block& b = os.block;
  Thread& me = *os.cur;
  const unsigned lane = me.linear & 31, warp = me.linear >> 5, base = warp * 32;
  const unsigned lanes = std::min(32u, b.n - base);
  const unsigned exist = lanes == 32 ? ~0u : (1u << lanes) - 1;
  const unsigned bit = 1u << lane;
  std::string why;
  if (!(mask & bit)) {
    why = format("mask 0x%08x does not include the calling lane %u", mask, lane);
  } else if (mask & ~exist) {
    why = format(
        "mask 0x%08x names lanes that do not exist (the block has %u threads, so warp "
        "%u has lanes 0-%u)",
        mask, b.n, warp, lanes - 1);
  } else if (is_shuffle(op) && (width < 1 || width > 32 || (width & (width - 1)) != 0)) {
    why = format("width %d must be a power of 2 in [1, 32]", width);
  } else {
    for (unsigned l = 0; l < 32 && why.empty(); ++l)
      if ((mask >> l & 1u) && b.threads[base + l].st == St::Done)
        why = format("lane %u of mask 0x%08x has exited", l, mask);
  }
  if (!why.empty()) {
    std::string msg =
        format("invalid warp collective (host emulation: %s: %s at %s (%s:%d): ", where(b).c_str(),
               who(me).c_str(), op_name(op), file, line) +
        why + ")";
    std::string().swap(why);
    fail(os, cudaErrorIllegalInstruction, std::move(msg));
  }

  Warp& w = b.warps[warp];
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

unsigned active_mask() {
  const OsThread& os = *tls_os;
  const Block& b = os.block;
  const unsigned base = os.cur->linear & ~31u;
  unsigned m = 0;
  for (unsigned l = 0; l < 32 && base + l < b.n; ++l)
    if (b.threads[base + l].st != St::Done) m |= 1u << l;
  return m;
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

}  // namespace emu
