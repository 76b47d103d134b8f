// pompc sweep (src/train/sweep.h): the grid and its validation, the run states (fresh, resume,
// finished), the Slurm job array script (bash -n, its directives, each array index's command,
// run by bash with POMPC_BIN=echo), and local sweeps whose children are this test binary
// answering `train` (tests/main.cpp): 2 tasks x 2 seeds to completion with jobs=2 and a second
// sweep that skips them, a run that fails (a damaged checkpoint to resume) reported while the
// other finishes, and SIGTERM forwarded to the running children. Also env::available_cores.
//
// Run: build/test_emu -ts=sweep      (about 15 s under ASan on 2 cores)
#include <doctest/doctest.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "common.h"
#include "env/env.h"
#include "io/atomic_file.h"
#include "test_io_tmp.h"
#include "test_util.h"
#include "train/sweep.h"

namespace {

using pompc::test::error_of;
namespace tr = pompc::train;

// A tiny run: cartpole-balance with action_repeat 20 (50 agent steps per episode), a random
// first episode, a 50-update burst and a planned second one, one evaluation episode at the end
// (about 2 s under ASan).
std::vector<std::string> tiny_keys() {
  return {"action_repeat=20", "steps=2000",           "seed_steps=50", "eval_freq=2000",
          "eval_episodes=1",  "checkpoint_freq=2000", "model_size=1",  "enc_dim=32",
          "mlp_dim=32",       "latent_dim=16",        "batch_size=16", "buffer_size=10000",
          "iterations=2",     "num_samples=32",       "num_elites=8",  "num_pi_trajs=4",
          "device=cpu"};
}

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// The shell's answer to `command`: stdout and stderr, and the exit status.
struct Shell {
  int status = -1;
  std::string out;
};
Shell shell(const std::string& command) {
  Shell r;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  REQUIRE(p);
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) r.out.append(buf, n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

std::string last_line(std::string s) {
  while (!s.empty() && s.back() == '\n') s.pop_back();
  const size_t nl = s.rfind('\n');
  return nl == std::string::npos ? s : s.substr(nl + 1);
}

}  // namespace

TEST_SUITE("sweep") {
  TEST_CASE("sweep: the grid is tasks x presets x seeds, each with the pass-through keys") {
    const tr::SweepPlan p =
        tr::plan_sweep({"tasks=cartpole-balance,pendulum-swingup", "seeds=1,2",
                        "presets=tdmpc2,bmpc", "out=sw", "steps=3000", "num_samples=64"});
    REQUIRE(p.runs.size() == 8);
    size_t i = 0;
    for (const char* task : {"cartpole-balance", "pendulum-swingup"})
      for (const char* preset : {"tdmpc2", "bmpc"})
        for (uint64_t seed : {1, 2}) {
          const tr::SweepRun& r = p.runs[i++];
          CHECK(r.task == task);
          CHECK(r.preset == preset);
          CHECK(r.seed == seed);
          const std::string dir = "sw/" + r.task + "/" + r.preset + "/" + std::to_string(seed);
          CHECK(r.run_dir == dir);
          CHECK(r.label() == r.task + "/" + r.preset + "/" + std::to_string(seed));
          CHECK(r.steps == 3000);
          CHECK(r.num_threads == 0);
          CHECK(r.train_args == std::vector<std::string>{"steps=3000", "num_samples=64",
                                                         "task=" + r.task, "preset=" + r.preset,
                                                         "seed=" + std::to_string(seed),
                                                         "run_dir=" + dir});
        }
    CHECK(p.settings.backend == "local");
    CHECK(p.settings.jobs == 1);

    // Without presets=: the train keys' preset, else tdmpc2; out= defaults to runs.
    const auto one = tr::plan_sweep({"tasks=walker-walk", "seeds=7", "preset=pompc"});
    REQUIRE(one.runs.size() == 1);
    CHECK(one.runs[0].preset == "pompc");
    CHECK(one.runs[0].run_dir == "runs/walker-walk/pompc/7");
    CHECK(one.runs[0].steps == 10'000'000);
    CHECK(tr::plan_sweep({"tasks=walker-walk", "seeds=7"}).runs[0].preset == "tdmpc2");
    CHECK(tr::plan_sweep({"tasks=walker-walk", "seeds=7", "num_threads=3"}).runs[0].num_threads ==
          3);
  }

  TEST_CASE("sweep: arguments are validated before anything starts, with what to change") {
    auto err = [](std::vector<std::string> args) {
      return error_of([&] { tr::plan_sweep(args); });
    };
    const std::vector<std::string> grid = {"tasks=cartpole-balance", "seeds=1"};
    const std::string typo = err(with(grid, {"stpes=100"}));
    CHECK(typo.find("unknown config key 'stpes' (did you mean 'steps'?)") != std::string::npos);
    CHECK(typo.find("valid keys: action_repeat") != std::string::npos);
    CHECK(typo.find("the sweep's own keys: tasks, seeds, presets, backend, jobs") !=
          std::string::npos);
    CHECK(err(with(grid, {"task=walker-walk"})).find("tasks=a,b") != std::string::npos);
    CHECK(err(with(grid, {"seed=3"})).find("seeds=1,2") != std::string::npos);
    CHECK(err(with(grid, {"run_dir=x"})).find("out=DIR") != std::string::npos);
    CHECK(err(with(grid, {"resume=true"})).find("resume= is the sweep's") != std::string::npos);
    CHECK(err({"seeds=1"}).find("name the tasks") != std::string::npos);
    CHECK(err({"tasks=cartpole-balance"}).find("name the seeds") != std::string::npos);
    CHECK(err({"tasks=cartpole-balanse", "seeds=1"}).find("valid tasks: cartpole-balance") !=
          std::string::npos);
    CHECK(err({"tasks=cartpole-balance,,walker-walk", "seeds=1"}).find("empty item") !=
          std::string::npos);
    CHECK(err({"tasks=cartpole-balance", "seeds=1,x"}).find("'x' is not a seed") !=
          std::string::npos);
    CHECK(err({"tasks=cartpole-balance", "seeds=1,1"}).find("names 1 twice") != std::string::npos);
    CHECK(err(with(grid, {"presets=bmpc", "preset=pompc"})).find("list every preset in presets=") !=
          std::string::npos);
    CHECK(err(with(grid, {"presets=tdmpc2,bmcp"})).find("run cartpole-balance/bmcp/1") !=
          std::string::npos);
    CHECK(err(with(grid, {"horizon=40"})).find("it must be in [1, 16]") != std::string::npos);
    CHECK(err(with(grid, {"num_samples=16", "num_elites=32"})).find("num_elites (32)") !=
          std::string::npos);
    CHECK(err(with(grid, {"jobs=0"})).find("jobs=0 is out of range") != std::string::npos);
    CHECK(err(with(grid, {"backend=pbs"})).find("local, slurm") != std::string::npos);
    CHECK(err(with(grid, {"backend=slurm", "slurm_time=1 day"})).find("not a Slurm time") !=
          std::string::npos);
    CHECK(err(with(grid, {"backend=slurm", "name=a b"})).find("name=a b") != std::string::npos);
    CHECK(err(with(grid, {"backend=slurm", "out=my runs"})).find("white space") !=
          std::string::npos);
    CHECK(err(with(grid, {"steps"})).find("is not key=value") != std::string::npos);
  }

  TEST_CASE("sweep: a run is fresh, resumed when it has a checkpoint, finished at its steps") {
    pompc::test::TempDir tmp;
    tr::SweepRun r;
    r.run_dir = tmp.file("run");
    r.steps = 2000;
    CHECK(tr::run_state(r) == tr::RunState::fresh);
    std::filesystem::create_directories(r.run_dir);
    pompc::io::write_file_atomic(r.run_dir + "/checkpoint.safetensors", "x");
    CHECK(tr::run_state(r) == tr::RunState::resume);
    const std::string head = "env_step,return_mean,return_std,episodes\n";
    pompc::io::write_file_atomic(r.run_dir + "/eval.csv", head + "1000,5,0,1\n");
    CHECK(tr::run_state(r) == tr::RunState::resume);
    pompc::io::write_file_atomic(r.run_dir + "/eval.csv", head + "1000,5,0,1\n2000,7,0,1\n");
    CHECK(tr::run_state(r) == tr::RunState::finished);
    r.steps = 4000;  // a sweep asking for more steps resumes it
    CHECK(tr::run_state(r) == tr::RunState::resume);
  }

  TEST_CASE("sweep: the Slurm script is valid bash; each array index runs its row's command") {
    pompc::test::TempDir tmp;
    const std::string out = tmp.file("o");
    const std::vector<std::string> args = {"tasks=cartpole-balance,pendulum-swingup",
                                           "seeds=1,2",
                                           "backend=slurm",
                                           "name=t1",
                                           "out=" + out,
                                           "slurm_partition=gpu",
                                           "slurm_gpus=1",
                                           "slurm_time=90",
                                           "slurm_cpus=3",
                                           "steps=1000",
                                           "lr=0.001"};
    const tr::SweepResult res = tr::sweep(args);
    CHECK(res.failed.empty());
    CHECK(res.script == out + "/sweep-t1.sbatch");
    CHECK(std::filesystem::is_directory(out + "/slurm"));
    const std::string text = pompc::io::read_file(res.script);
    CHECK(text.rfind("#!/bin/bash\n", 0) == 0);
    for (const std::string& d :
         std::vector<std::string>{"--job-name=pompc-t1", "--array=0-3", "--cpus-per-task=3",
                                  "--time=90", "--output=" + out + "/slurm/%A_%a.out", "--requeue",
                                  "--partition=gpu", "--gres=gpu:1"})
      CHECK_MESSAGE(text.find("\n#SBATCH " + d + "\n") != std::string::npos, d);
    // sbatch reads directives only before the first command.
    CHECK(text.rfind("#SBATCH") < text.find("\nset -euo pipefail\n"));
    CHECK(shell("bash -n '" + res.script + "'").status == 0);

    const std::string program = std::filesystem::read_symlink("/proc/self/exe").string();
    CHECK(text.find("pompc=\"${POMPC_BIN:-" + program + "}\"") != std::string::npos);
    const char* tasks[] = {"cartpole-balance", "cartpole-balance", "pendulum-swingup",
                           "pendulum-swingup"};
    for (int i = 0; i < 4; ++i) {
      const std::string task = tasks[i], seed = std::to_string(i % 2 + 1);
      const Shell sh = shell("env -u SLURM_CPUS_PER_TASK SLURM_ARRAY_TASK_ID=" + std::to_string(i) +
                             " POMPC_BIN=echo bash '" + res.script + "'");
      CHECK(sh.status == 0);
      CHECK(last_line(sh.out) == "train steps=1000 lr=0.001 task=" + task +
                                     " preset=tdmpc2 seed=" + seed + " run_dir=" + out + "/" +
                                     task + "/tdmpc2/" + seed + " num_threads=3 resume=auto");
    }
    // Slurm's CPU count sets the threads; an index outside the array is refused.
    const Shell cpus = shell("SLURM_CPUS_PER_TASK=2 SLURM_ARRAY_TASK_ID=3 POMPC_BIN=echo bash '" +
                             res.script + "'");
    CHECK(last_line(cpus.out).find(" num_threads=2 resume=auto") != std::string::npos);
    const Shell bad = shell("SLURM_ARRAY_TASK_ID=4 POMPC_BIN=echo bash '" + res.script + "'");
    CHECK(bad.status == 2);
    CHECK(bad.out.find("is not in 0-3") != std::string::npos);
    CHECK(shell("env -u SLURM_ARRAY_TASK_ID bash '" + res.script + "'").status == 2);

    // No partition or GPU asked for: no such directives.
    const tr::SweepResult plain =
        tr::sweep({"tasks=cartpole-balance", "seeds=5", "backend=slurm", "name=t2", "out=" + out});
    const std::string text2 = pompc::io::read_file(plain.script);
    CHECK(text2.find("--array=0-0\n") != std::string::npos);
    CHECK(text2.find("--partition") == std::string::npos);
    CHECK(text2.find("--gres") == std::string::npos);
    CHECK(shell("bash -n '" + plain.script + "'").status == 0);
  }

  TEST_CASE("sweep: local, 2 tasks x 2 seeds with jobs=2 run to completion; a rerun skips them") {
    pompc::test::TempDir tmp;
    const std::string out = tmp.file("runs");
    const auto args =
        with({"tasks=cartpole-balance,pendulum-swingup", "seeds=1,2", "jobs=2", "out=" + out},
             tiny_keys());
    const auto t0 = std::chrono::steady_clock::now();
    const tr::SweepResult r = tr::sweep(args);
    MESSAGE("4 tiny runs, jobs=2: "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()
            << " s");
    CHECK(r.ok == 4);
    CHECK(r.failed.empty());
    CHECK_FALSE(r.interrupted);
    for (const char* task : {"cartpole-balance", "pendulum-swingup"})
      for (const char* seed : {"1", "2"}) {
        const std::string dir = out + "/" + task + "/tdmpc2/" + seed;
        CHECK_MESSAGE(pompc::io::read_file(dir + "/eval.csv").find("\n2000,") != std::string::npos,
                      dir);
        CHECK(pompc::io::path_exists(dir + "/checkpoint.safetensors"));
        const std::string log = pompc::io::read_file(dir + "/train.log");
        CHECK(log.rfind("# pompc sweep: ", 0) == 0);
        CHECK(log.find(" num_threads=") != std::string::npos);
        CHECK(log.find("train: done at env step 2000") != std::string::npos);
      }
    const tr::SweepResult again = tr::sweep(args);
    CHECK(again.skipped == 4);
    CHECK(again.ok == 0);
    CHECK(again.failed.empty());
  }

  TEST_CASE("sweep: a failed run is reported by name and log; the other run finishes") {
    pompc::test::TempDir tmp;
    const std::string out = tmp.file("runs");
    // Seed 2's run dir holds a damaged checkpoint: the sweep resumes it and its train fails.
    const std::string bad = out + "/cartpole-balance/tdmpc2/2";
    std::filesystem::create_directories(bad);
    pompc::io::write_file_atomic(bad + "/checkpoint.safetensors", "not a checkpoint");
    const tr::SweepResult r = tr::sweep(
        with({"tasks=cartpole-balance", "seeds=1,2", "jobs=2", "out=" + out}, tiny_keys()));
    CHECK(r.ok == 1);
    REQUIRE(r.failed.size() == 1);
    CHECK(r.failed[0] == "cartpole-balance/tdmpc2/2 (exit 1; " + bad + "/train.log)");
    const std::string log = pompc::io::read_file(bad + "/train.log");
    CHECK(log.find(" resume=true") != std::string::npos);
    CHECK(log.find("pompc train: error: ") != std::string::npos);
  }

  TEST_CASE("sweep: SIGTERM to the sweep is forwarded to its running children") {
    pompc::test::TempDir tmp;
    const std::string out = tmp.file("runs");
    auto keys = tiny_keys();
    keys[1] = "steps=10000000";  // runs that would not end by themselves
    const std::string log1 = out + "/cartpole-balance/tdmpc2/1/train.log";
    const std::string log2 = out + "/cartpole-balance/tdmpc2/2/train.log";
    // Both children have started once both logs exist (each is opened right before its
    // spawn, after the sweep's handlers are in place); then the signal.
    struct sigaction before {};
    sigaction(SIGTERM, nullptr, &before);
    std::thread killer([&] {
      for (int i = 0; i < 3000 && !(pompc::io::path_exists(log1) && pompc::io::path_exists(log2));
           ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      kill(getpid(), SIGTERM);
    });
    const tr::SweepResult r =
        tr::sweep(with({"tasks=cartpole-balance", "seeds=1,2,3", "jobs=2", "out=" + out}, keys));
    killer.join();
    CHECK(r.interrupted);
    CHECK(r.ok == 0);
    REQUIRE(r.failed.size() == 3);
    CHECK(r.failed[0].find("cartpole-balance/tdmpc2/1 (killed by signal 15") == 0);
    CHECK(r.failed[1].find("cartpole-balance/tdmpc2/2 (killed by signal 15") == 0);
    CHECK(r.failed[2] == "cartpole-balance/tdmpc2/3 (not started: the sweep was interrupted)");
    // The sweep's handler is gone again: SIGTERM's is the one from before the sweep.
    struct sigaction now {};
    sigaction(SIGTERM, nullptr, &now);
    CHECK(reinterpret_cast<void*>(now.sa_handler) == reinterpret_cast<void*>(before.sa_handler));
  }

  TEST_CASE("sweep: available_cores counts the affinity mask") {
    cpu_set_t set;
    CPU_ZERO(&set);
    REQUIRE(sched_getaffinity(0, sizeof set, &set) == 0);
    CHECK(pompc::env::available_cores() == CPU_COUNT(&set));
    // Restricted to one CPU (on a thread of its own, so the test process keeps its mask).
    int rc = -1, one = 0;
    std::thread t([&] {
      cpu_set_t single;
      CPU_ZERO(&single);
      for (int c = 0; c < CPU_SETSIZE; ++c)
        if (CPU_ISSET(c, &set)) {
          CPU_SET(c, &single);
          break;
        }
      rc = sched_setaffinity(0, sizeof single, &single);
      one = pompc::env::available_cores();
    });
    t.join();
    REQUIRE(rc == 0);
    CHECK(one == 1);
  }
}
