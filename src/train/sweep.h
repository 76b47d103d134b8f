// src/train/sweep.h: pompc sweep, a grid of pompc train runs on this machine or on Slurm.
//
// Run book
//   grid       tasks=a,b seeds=1,2 [presets=p,q]: one `pompc train` run per (task, preset,
//              seed), task-major, into <out>/<task>/<preset>/<seed> (out=runs: the trainer's
//              own default run_dir). Without presets= the preset is the train keys' (preset=,
//              else tdmpc2). Every key that is not the sweep's (sweep_config(), `pompc sweep
//              help=1`) passes through to every run; task=, seed=, run_dir= and resume= are the
//              sweep's to set and are refused. Before anything starts, every run's arguments
//              are applied to train_config() and resolved against the task (unknown keys with
//              the valid ones listed, ranges, presets, model vs planner), so a typo fails at once.
//   local      backend=local jobs=N: N child processes `<this binary> train ...` at a time
//              (the file /proc/self/exe points to; posix_spawn, each in its own process group,
//              stdin /dev/null, stdout and stderr appended to <run_dir>/train.log after a
//              '# pompc sweep:' line with the command).
//              Each child gets num_threads=T and OMP_NUM_THREADS=T with T = available cores
//              (env::available_cores()) / min(N, runs to start), at least 1 (an explicit
//              num_threads= wins), and OMP_WAIT_POLICY=passive unless it is set. A run whose
//              eval.csv has reached its steps is skipped; one whose run_dir holds a checkpoint is
//              resumed (resume=true); others start fresh. One line per start, finish (exit status
//              and time) and skip; a failed run's line repeats the last line of its log. The
//              parent sleeps in poll() on a self-pipe written by its SIGCHLD / SIGINT / SIGTERM /
//              SIGHUP handlers (never spins); SIGINT, SIGTERM or SIGHUP is forwarded to every
//              running child and no further run starts. The previous signal handlers are
//              restored at the end (the tests run sweeps in-process).
//   slurm      backend=slurm: writes <out>/sweep-<name>.sbatch (bash; out made absolute), a job
//              array with one index per run: #SBATCH --array=0-(K-1), --cpus-per-task=
//              (slurm_cpus), --time= (slurm_time), --output=<out>/slurm/%A_%a.out, --requeue,
//              --partition= (slurm_partition) and --gres=gpu:G (slurm_gpus) when set. A case
//              statement maps SLURM_ARRAY_TASK_ID to its run's keys; the script execs
//              "${POMPC_BIN:-<absolute path of this pompc>}" train <pass-through keys> <the
//              run's task, preset, seed, run_dir> num_threads=$SLURM_CPUS_PER_TASK resume=auto,
//              so a requeued or resubmitted task resumes from its checkpoint and a finished one
//              loads it and exits. submit=true runs `sbatch <script>`; otherwise the command is
//              printed. tests/slurm_check.sh submits one to a single-node Slurm.
//   result     SweepResult; the CLI exits 1 when a run failed or the sweep was interrupted.
//   tests      build/test_emu -ts=sweep (the local sweep runs this test binary as its children:
//              tests/main.cpp answers `train` as pompc does); tests/slurm_check.sh (real Slurm)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/config.h"

namespace pompc::train {

// The sweep's own keys; sweep_config() reads its defaults from these initialisers.
struct SweepSettings {
  std::vector<std::string> tasks;    // tasks=a,b (required): TD-MPC2 task names
  std::vector<uint64_t> seeds;       // seeds=1,2 (required)
  std::vector<std::string> presets;  // presets=p,q; empty = the train keys' preset
  std::string backend = "local";     // local | slurm
  int jobs = 1;                      // local: runs at once
  std::string out = "runs";          // run dirs <out>/<task>/<preset>/<seed>; slurm's script
  std::string name;                  // slurm: <out>/sweep-<name>.sbatch; empty = date-time
  bool submit = false;               // slurm: run sbatch on the script (false: print the command)
  std::string slurm_partition;       // slurm: --partition; empty = the cluster's default
  int slurm_gpus = 0;                // slurm: --gres=gpu:N; 0 = no GPU asked for
  std::string slurm_time = "24:00:00";  // slurm: --time (minutes, H:M:S or D-H:M:S)
  int slurm_cpus = 4;                   // slurm: --cpus-per-task, each run's num_threads
  std::vector<std::string> train_args;  // every other key=value, passed to each pompc train
};

// One run of the grid.
struct SweepRun {
  std::string task, preset;
  uint64_t seed = 0;
  std::string run_dir;                  // <out>/<task>/<preset>/<seed>
  std::vector<std::string> train_args;  // the pass-through keys, then task, preset, seed, run_dir
  int64_t steps = 0;                    // its env steps (eval.csv reaching them: finished)
  int num_threads = 0;                  // num_threads= of the pass-through keys; 0 = unset
  std::string label() const;            // <task>/<preset>/<seed>
};

struct SweepPlan {
  SweepSettings settings;
  std::vector<SweepRun> runs;  // task-major, then preset, then seed
};

// The sweep's key table (`pompc sweep help=1`).
io::Config sweep_config();
// Splits args into sweep and train keys, validates every run's train config and expands the
// grid; throws pompc::Error naming the fix.
SweepPlan plan_sweep(const std::vector<std::string>& args);

enum class RunState { fresh, resume, finished };
// finished: <run_dir>/eval.csv has a row at env_step >= steps; resume: a checkpoint exists.
RunState run_state(const SweepRun& run);

struct SweepResult {
  int ok = 0;                       // runs that exited 0
  int skipped = 0;                  // runs already finished
  std::vector<std::string> failed;  // "<label> (exit 1; <run_dir>/train.log)", in grid order
  bool interrupted = false;         // a SIGINT / SIGTERM / SIGHUP was forwarded
  std::string script;               // slurm: the script written
};

// The whole sweep on the chosen backend (progress on stdout).
SweepResult sweep(const std::vector<std::string>& args);
// The Slurm job array script for a plan; program is the pompc binary it runs by default.
std::string slurm_script(const SweepPlan& plan, const std::string& program,
                         const std::string& command_line);

}  // namespace pompc::train
