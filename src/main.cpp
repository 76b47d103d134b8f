// pompc command line.
//
//   pompc check [device=auto|cuda|cpu] [sizes=all|dog|odd]
//                                        which backends this build has, and every op of the
//                                        chosen backend against the reference ops at the dog 5M
//                                        sizes and odd ones (src/ops_check.h)
//   pompc tasks                          the DeepMind Control Suite tasks, obs and action dims
//   pompc plot DIR... [out=curves.svg] [png=curves.png] [task=NAME] [reference=CSV] [ci=95]
//              [resamples=2000]
//                                        eval return against env steps of every run directory
//                                        (runs/<task>/<preset>/<seed>, holding eval.csv) at or
//                                        below each DIR: per task and preset the mean over seeds
//                                        with a percentile bootstrap band (ci=0: none), one panel
//                                        per task, an IQM panel over tasks, the published TD-MPC2
//                                        and BMPC numbers as reference points; SVG and PNG
//                                        (src/io/plot.h). out= names the SVG (its stem also names
//                                        the PNG unless png= does; an empty value skips a file)
//   pompc train [key=value ...]          train (src/train/trainer.h: keys, run directory,
//                                        checkpoints, resume=true); `pompc train help=1` lists
//                                        the keys with their defaults
//   pompc eval checkpoint=PATH [episodes=10] [device=...] [seed=N] [video=PATH.mp4|.gif]
//                                        deterministic episodes of a checkpoint: mean and std of
//                                        the return; video= records the first episode
//   pompc sweep tasks=a,b seeds=1,2 [presets=p,q] [backend=local|slurm] [jobs=N] [out=runs]
//               [key=value ...]          the grid of pompc train runs, N at a time here or as a
//                                        Slurm job array (src/train/sweep.h); `pompc sweep
//                                        help=1` lists its keys
//
// Every subcommand takes key=value arguments. Errors are pompc::Error messages that name the fix;
// main prints them and returns 1.
//
// OpenMP threads wait passively: libgomp reads OMP_WAIT_POLICY once, when it is loaded (before
// main), and by default spins at every barrier before it sleeps, which takes the cores from
// whatever else runs there (a sweep's parallel runs, other jobs). So for the commands that run
// OpenMP work (train, eval, check), when OMP_WAIT_POLICY is unset, main() sets it to passive and
// re-executes itself (the file /proc/self/exe points to) with the same arguments; the new process
// finds it set and goes on (the variable is the guard: one re-exec at most). The re-exec costs a
// second start of the program (about 0.5 s with the CUDA libraries). OMP_WAIT_POLICY=active keeps
// libgomp's spinning. pompc sweep sets passive in its runs' environment itself.
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common.h"
#include "env/env.h"
#include "io/plot.h"
#include "ops.h"
#include "ops_check.h"
#include "train/sweep.h"
#include "train/trainer.h"

namespace {

using Args = std::map<std::string, std::string>;

Args parse_args(int argc, char** argv, int first, const std::vector<std::string>& keys) {
  Args args;
  for (int i = first; i < argc; ++i) {
    const char* eq = std::strchr(argv[i], '=');
    POMPC_REQUIRE(eq, "argument '%s' is not key=value", argv[i]);
    const std::string key(argv[i], static_cast<size_t>(eq - argv[i]));
    bool known = false;
    for (const auto& k : keys) known |= k == key;
    if (!known) {
      std::string valid;
      for (const auto& k : keys) valid += (valid.empty() ? "" : ", ") + k;
      throw pompc::Error(pompc::strfmt("unknown key '%s'; valid keys: %s", key.c_str(),
                                       valid.c_str()));
    }
    args[key] = eq + 1;
  }
  return args;
}

// Every op of the chosen backend against the reference (src/ops_check.h): one line per op and
// shape, its largest normalised error and tolerance; exit status 1 when any is out of tolerance.
int cmd_check(const Args& args) {
  const auto device = args.count("device") ? args.at("device") : std::string("auto");
  const auto sizes = args.count("sizes") ? args.at("sizes") : std::string("all");
  std::string why;
  const bool have_cuda = pompc::cuda_ops_available(&why);
  std::printf("cuda backend: %s\n", have_cuda ? "available" : why.c_str());
  auto ops = pompc::make_ops(device);
  std::printf("backend: %s\n", ops->description().c_str());
  if (ops->backend() == pompc::Backend::cpu) {
    std::printf("the cpu backend is the reference itself: no kernel check to run\n");
    return 0;
  }
  auto ref = pompc::make_ref_ops();
  const auto rows = pompc::check_ops(*ops, *ref, sizes);
  int failed = 0;
  std::printf("%-44s %-52s %10s %10s\n", "op", "shape", "max err", "tolerance");
  for (const auto& r : rows) {
    std::printf("%-44s %-52s %10.3g %10.3g %s\n", r.op.c_str(), r.shape.c_str(), r.max_err, r.tol,
                r.ok ? "ok" : "MISMATCH");
    failed += !r.ok;
  }
  std::printf("check: %zu op outputs, %d out of tolerance\n", rows.size(), failed);
  return failed ? 1 : 0;
}

// pompc plot: positional directories (run directories or any directory above them), then
// key=value options.
int cmd_plot(int argc, char** argv) {
  std::vector<std::string> dirs;
  int first_kv = 2;
  while (first_kv < argc && !std::strchr(argv[first_kv], '=')) dirs.push_back(argv[first_kv++]);
  const Args args =
      parse_args(argc, argv, first_kv, {"out", "png", "task", "reference", "ci", "resamples"});
  pompc::io::PlotSettings settings;
  if (args.count("task")) settings.task = args.at("task");
  settings.reference_csv = args.count("reference")
                               ? args.at("reference")
                               : std::string(POMPC_DATA_DIR) + "/reference_curves.csv";
  auto number = [&](const char* key, double fallback) {
    if (!args.count(key)) return fallback;
    const std::string& v = args.at(key);
    char* end = nullptr;
    const double x = std::strtod(v.c_str(), &end);
    POMPC_REQUIRE(!v.empty() && *end == '\0' && std::isfinite(x), "%s=%s is not a number", key,
                  v.c_str());
    return x;
  };
  settings.bootstrap.level = number("ci", settings.bootstrap.level);
  const double resamples = number("resamples", settings.bootstrap.resamples);
  POMPC_REQUIRE(resamples == std::floor(resamples) && resamples >= 1 && resamples <= 1e7,
                "resamples=%g must be a whole number in [1, 10000000]", resamples);
  settings.bootstrap.resamples = static_cast<int>(resamples);
  const auto opt = [&](const char* key) {
    return args.count(key) ? std::optional<std::string>(args.at(key)) : std::nullopt;
  };
  const pompc::io::PlotOutputs outputs = pompc::io::plot_outputs(opt("out"), opt("png"));
  const std::string summary = pompc::io::plot_runs(dirs, settings, outputs);
  std::string wrote = outputs.svg;
  if (!outputs.png.empty()) wrote += (wrote.empty() ? "" : " and ") + outputs.png;
  std::printf("wrote %s (%s)\n", wrote.c_str(), summary.c_str());
  return 0;
}

// See the header: libgomp must find OMP_WAIT_POLICY when it loads, so set it and start again.
// The binary's own path first (ps and top then show pompc, not exe), /proc/self/exe when that
// fails (the file was replaced since).
void wait_passively(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY")) return;
  setenv("OMP_WAIT_POLICY", "passive", 1);
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    self[n] = '\0';
    execv(self, argv);
  }
  execv("/proc/self/exe", argv);
  std::fprintf(stderr,
               "pompc: note: could not re-execute /proc/self/exe (%s), so OpenMP threads spin "
               "while they wait: run with OMP_WAIT_POLICY=passive set\n",
               std::strerror(errno));
}

void usage(FILE* f) {
  std::fprintf(f,
               "usage: pompc <command> [key=value ...]\n"
               "  check [device=auto|cuda|cpu] [sizes=all|dog|odd]\n"
               "                                every op of the backend against the reference\n"
               "  tasks                         the DMC tasks with their obs and action dims\n"
               "  plot DIR... [out=curves.svg] [png=curves.png] [task=NAME] [reference=CSV]\n"
               "       [ci=95] [resamples=2000]\n"
               "                                eval curves of the runs under DIR...: mean over\n"
               "                                seeds with a bootstrap band per task and method,\n"
               "                                IQM over tasks, the published reference numbers\n"
               "  train [key=value ...]         train a preset on a task (train help=1: the keys)\n"
               "  eval checkpoint=PATH [episodes=10] [device=auto|cpu|cuda] [seed=N]\n"
               "       [video=PATH.mp4|.gif]    mean and std of the return of a checkpoint;\n"
               "                                video= records the first episode\n"
               "  sweep tasks=a,b seeds=1,2 [backend=local|slurm] [jobs=N] [key=value ...]\n"
               "                                a grid of train runs (sweep help=1: the keys)\n"
               "  help                          this text\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const std::string cmd = argv[1];
  if (cmd == "train" || cmd == "eval" || cmd == "check") wait_passively(argv);
  try {
    if (cmd == "check") return cmd_check(parse_args(argc, argv, 2, {"device", "sizes"}));
    if (cmd == "tasks") {
      parse_args(argc, argv, 2, {});
      pompc::env::print_tasks(stdout);
      return 0;
    }
    if (cmd == "plot") return cmd_plot(argc, argv);
    if (cmd == "train") {
      const std::vector<std::string> args(argv + 2, argv + argc);
      if (args.size() == 1 && args[0] == "help=1") {
        std::printf("%s", pompc::train::train_config().help_text().c_str());
        return 0;
      }
      pompc::train::train(args);
      return 0;
    }
    if (cmd == "sweep") {
      const std::vector<std::string> args(argv + 2, argv + argc);
      if (args.size() == 1 && args[0] == "help=1") {
        std::printf(
            "pompc sweep: its own keys below; every other key=value goes to each pompc "
            "train run (pompc train help=1)\n%s",
            pompc::train::sweep_config().help_text().c_str());
        return 0;
      }
      const auto r = pompc::train::sweep(args);
      return r.failed.empty() && !r.interrupted ? 0 : 1;
    }
    if (cmd == "eval") {
      const Args a =
          parse_args(argc, argv, 2, {"checkpoint", "episodes", "device", "seed", "video"});
      POMPC_REQUIRE(a.count("checkpoint"), "eval: pass checkpoint=PATH (runs/<task>/<preset>/<seed>/checkpoint.safetensors)");
      const int episodes = a.count("episodes") ? std::atoi(a.at("episodes").c_str()) : 10;
      const uint64_t seed = a.count("seed") ? std::strtoull(a.at("seed").c_str(), nullptr, 10) : 0;
      const auto r = pompc::train::evaluate_checkpoint(a.at("checkpoint"), episodes,
                                                       a.count("device") ? a.at("device") : "",
                                                       seed, a.count("video") ? a.at("video") : "");
      for (size_t i = 0; i < r.returns.size(); ++i)
        std::printf("episode %zu return %.2f\n", i + 1, r.returns[i]);
      std::printf("return mean %.2f std %.2f over %zu episodes\n", r.mean, r.std, r.returns.size());
      return 0;
    }
    if (cmd == "help" || cmd == "--help" || cmd == "-h") {
      usage(stdout);
      return 0;
    }
    std::fprintf(stderr, "pompc: unknown command '%s'\n", cmd.c_str());
    usage(stderr);
    return 2;
  } catch (const pompc::Error& e) {
    std::fprintf(stderr, "pompc %s: error: %s\n", cmd.c_str(), e.what());
    return 1;
  }
}
