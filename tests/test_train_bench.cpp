// Full-training throughput (suite bench): env steps per second of pompc train, environments,
// planner, replay and updates together, on short runs just past the seed phase.
//
//   make bench                                   (every benchmark)
//   build/bench -ts=bench -tc='*train*'          (these; about 1 minute on 2 CPU cores)
//   build/test_gpu -ts=bench -tc='*train*'       (adds the 5M dog-run figure on a GPU)
//
// CPU: `make run`'s configuration without a GPU (Makefile RUN_ARGS: cartpole-balance, model_size=1
// with enc_dim=mlp_dim=64, latent_dim=32, batch_size=64, 4 iterations of 128 samples, seed_steps
// 1000, device=cpu, one OpenMP thread unless OMP_NUM_THREADS says otherwise), with num_envs 1 and
// 2: the seed phase (1000 random agent steps), the pretraining burst of 1000 updates, then one
// planned episode per env. GPU: the default 5M model on dog-run, seed_steps 500 (one episode),
// the burst, then one planned episode. Printed per run: env steps/s of the planned steps
// (plan + env step + replay + updates, burst left out), the burst's updates/s, and the whole
// run's env steps/s (evaluation and checkpoint excluded). No timing is asserted.
#include <doctest/doctest.h>
#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "ops.h"
#include "test_io_tmp.h"
#include "train/trainer.h"

namespace {

// Runs pompc train with `args` (one final evaluation episode, no intermediate ones) and prints
// the figures under `name`.
void bench_train(const std::string& name, std::vector<std::string> args) {
  pompc::test::TempDir tmp;
  std::string config;
  for (const std::string& a : args) config += (config.empty() ? "" : " ") + a;
  args.insert(args.end(), {"eval_freq=100000000", "eval_episodes=1", "save_buffer=false",
                           "run_dir=" + tmp.file("run")});
  const pompc::train::TrainResult r = pompc::train::train(args);
  CHECK(r.updates > 0);
  std::printf(
      "bench: train/%s planned: %.0f env steps/s; burst %llu updates: %.1f updates/s; whole run "
      "%lld env steps: %.0f env steps/s (%d OpenMP threads; %s)\n",
      name.c_str(), r.planned_steps_per_s, static_cast<unsigned long long>(r.burst_updates),
      r.burst_s > 0 ? double(r.burst_updates) / r.burst_s : 0.0,
      static_cast<long long>(r.env_steps), r.steps_per_s, omp_get_max_threads(), config.c_str());
  std::fflush(stdout);
}

// `make run`'s CPU arguments (Makefile RUN_ARGS without a GPU), steps cut to the seed phase plus
// one planned round.
std::vector<std::string> make_run_cpu_args(int num_envs) {
  const int64_t steps = 2000 + 1000 * int64_t(num_envs);  // 2 seed episodes + 1 per env
  return {"task=cartpole-balance", "steps=" + std::to_string(steps), "seed_steps=1000",
          "model_size=1", "enc_dim=64", "mlp_dim=64", "latent_dim=32", "batch_size=64",
          "iterations=4", "num_samples=128", "num_elites=16", "num_pi_trajs=8", "device=cpu",
          "num_envs=" + std::to_string(num_envs)};
}

}  // namespace

TEST_SUITE("bench") {
  TEST_CASE("bench train: make run's CPU configuration, num_envs 1 and 2") {
    // make run sets OMP_NUM_THREADS=1 unless the caller set it.
    const int threads = omp_get_max_threads();
    if (!std::getenv("OMP_NUM_THREADS")) omp_set_num_threads(1);
    bench_train("cartpole-balance 1M-cpu num_envs=1", make_run_cpu_args(1));
    bench_train("cartpole-balance 1M-cpu num_envs=2", make_run_cpu_args(2));
    omp_set_num_threads(threads);
  }

  TEST_CASE("bench train: dog-run, default 5M model on the GPU") {
#ifdef POMPC_EMU
    std::printf(
        "bench: train/dog-run 5M-cuda: skipped (this build emulates CUDA on the CPU; "
        "build/test_gpu -ts=bench -tc='*train*' runs it on a GPU)\n");
#else
    std::string why;
    if (!pompc::cuda_ops_available(&why)) {
      std::printf("bench: train/dog-run 5M-cuda: skipped (%s)\n", why.c_str());
      return;
    }
    bench_train("dog-run 5M-cuda num_envs=1",
                {"task=dog-run", "steps=2000", "seed_steps=500", "model_size=5",
                 "buffer_size=100000", "device=cuda"});
#endif
  }
}
