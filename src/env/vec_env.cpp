// src/env/vec_env.cpp: K environments of one task stepped on a thread pool (run book: env.h).
//
// The pool has num_threads - 1 workers plus the calling thread. Each call hands out environment
// indices from an atomic counter (dog steps vary in cost with the number of contacts, so dynamic
// hand-out balances better than fixed slices). Idle threads spin (pause, then yield) for a
// short while, then sleep on a condition variable. Every Env owns its mjData and RNG and the model
// is only read, so which thread steps which environment cannot change any result.
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>

#include "common.h"
#include "env/env.h"
#include "nvtx.h"

namespace pompc::env {

namespace {

// Waits briefly before sleeping: a control step of a cheap task takes microseconds, far less
// than a futex wake-up, while a dog step takes about 0.3 ms. The first spins pause; later ones
// yield, so a waiting thread gives its core away when the machine is oversubscribed.
inline void relax(int spin) {
#if defined(__x86_64__) || defined(__i386__)
  if (spin < 64) {
    __builtin_ia32_pause();
    return;
  }
#endif
  std::this_thread::yield();
}
constexpr int kSpins = 1000;  // then block on the condition variable

class ThreadPool {
 public:
  explicit ThreadPool(int num_threads) {
    for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this] { work(); });
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_.store(true);
    }
    start_.notify_all();
    for (std::thread& t : workers_) t.join();
  }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs fn(i) for every i in [0, count) and returns when all are done; rethrows the first
  // exception any call threw. No allocation (fn is passed by address, not as std::function).
  template <class F>
  void parallel_for(int count, F& fn) {
    run(
        count, [](void* f, int i) { (*static_cast<F*>(f))(i); }, &fn);
  }

 private:
  void run(int count, void (*call)(void*, int), void* ctx) {
    if (workers_.empty() || count <= 1) {
      for (int i = 0; i < count; ++i) call(ctx, i);
      return;
    }
    call_ = call;
    ctx_ = ctx;
    count_ = count;
    error_ = nullptr;
    next_.store(0, std::memory_order_relaxed);
    busy_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lock(mutex_);  // orders the writes above before the wake-up
      generation_.fetch_add(1, std::memory_order_release);
    }
    start_.notify_all();
    run_items();
    for (int spin = 0; busy_.load(std::memory_order_acquire) != 0; ++spin) {
      if (spin < kSpins) {
        relax(spin);
        continue;
      }
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [this] { return busy_.load(std::memory_order_acquire) == 0; });
    }
    call_ = nullptr;
    ctx_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

  void run_items() {
    for (int i = next_.fetch_add(1); i < count_; i = next_.fetch_add(1)) {
      try {
        call_(ctx_, i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
      }
    }
  }

  void work() {
    long seen = 0;
    for (;;) {
      for (int spin = 0; generation_.load(std::memory_order_acquire) == seen && !stop_.load();
           ++spin) {
        if (spin < kSpins) {
          relax(spin);
          continue;
        }
        std::unique_lock<std::mutex> lock(mutex_);
        start_.wait(lock, [&] { return stop_.load() || generation_.load() != seen; });
      }
      if (stop_.load()) return;
      seen = generation_.load(std::memory_order_acquire);
      run_items();
      if (busy_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lock(mutex_);  // the caller may be about to sleep
        done_.notify_one();
      }
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable start_, done_;
  void (*call_)(void*, int) = nullptr;  // the current parallel_for's body and its closure
  void* ctx_ = nullptr;
  int count_ = 0;
  std::exception_ptr error_;
  std::atomic<int> next_{0};
  std::atomic<int> busy_{0};
  std::atomic<long> generation_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace

// sched_getaffinity fails only for masks wider than cpu_set_t's 1024 CPUs: the machine's count
// is then the best answer.
int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0)
    return std::max(1, int(std::thread::hardware_concurrency()));
  return std::max(1, CPU_COUNT(&set));
}

struct VecEnv::Impl {
  std::vector<Env> envs;
  std::unique_ptr<ThreadPool> pool;
};

VecEnv::VecEnv(const std::string& task, int num_envs, uint32_t seed, int action_repeat,
               int num_threads)
    : impl_(std::make_unique<Impl>()) {
  POMPC_REQUIRE(num_envs >= 1, "num_envs (%d) must be >= 1", num_envs);
  POMPC_REQUIRE(num_threads >= 0, "num_threads (%d) must be >= 0 (0: one per available core)",
                num_threads);
  if (num_threads == 0) num_threads = available_cores();
  num_threads = std::min(num_threads, num_envs);
  impl_->envs.reserve(num_envs);
  for (int i = 0; i < num_envs; ++i)
    impl_->envs.emplace_back(task, env_seed(seed, i), action_repeat);
  impl_->pool = std::make_unique<ThreadPool>(num_threads);
}

VecEnv::~VecEnv() = default;

void VecEnv::reset_all(float* obs) {
  const int od = spec().obs_dim;
  auto body = [&](int i) { impl_->envs[i].reset(obs + size_t(i) * od); };
  impl_->pool->parallel_for(size(), body);
}

void VecEnv::reset_where(const uint8_t* mask, float* obs) {
  const int od = spec().obs_dim;
  if (std::none_of(mask, mask + size(), [](uint8_t m) { return m != 0; })) return;
  auto body = [&](int i) {
    if (mask[i]) impl_->envs[i].reset(obs + size_t(i) * od);
  };
  impl_->pool->parallel_for(size(), body);
}

void VecEnv::step_all(const float* actions, float* obs, StepResult* results) {
  NvtxRange range("env/step");
  const int od = spec().obs_dim, ad = spec().act_dim;
  auto body = [&](int i) {
    results[i] = impl_->envs[i].step(actions + size_t(i) * ad, obs + size_t(i) * od);
  };
  impl_->pool->parallel_for(size(), body);
}

int VecEnv::size() const {
  return static_cast<int>(impl_->envs.size());
}
int VecEnv::num_threads() const {
  return impl_->pool->size();
}
const TaskSpec& VecEnv::spec() const {
  return impl_->envs[0].spec();
}
Env& VecEnv::env(int i) {
  POMPC_REQUIRE(i >= 0 && i < size(), "env index %d out of range [0, %d)", i, size());
  return impl_->envs[i];
}

}  // namespace pompc::env
