// pompc sweep: the grid, its validation, the local backend and the Slurm script (run book:
// sweep.h).
#include "train/sweep.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <utility>

#include "common.h"
#include "env/env.h"
#include "io/atomic_file.h"
#include "io/csv.h"
#include "train/trainer.h"

extern char** environ;

namespace pompc::train {

using io::ConfigKey;

namespace {

using Clock = std::chrono::steady_clock;

std::string join(const std::vector<std::string>& items, const char* sep) {
  std::string out;
  for (const std::string& s : items) out += (out.empty() ? "" : sep) + s;
  return out;
}

// "1 run", "2 runs".
std::string count(size_t n, const char* noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

// "a,b" -> {"a", "b"}; an empty or repeated item is an error naming the key.
std::vector<std::string> split_list(const std::string& key, const std::string& text) {
  std::vector<std::string> items;
  size_t b = 0;
  for (;;) {
    const size_t e = text.find(',', b);
    const std::string item = text.substr(b, e == std::string::npos ? std::string::npos : e - b);
    POMPC_REQUIRE(!item.empty(), "%s=%s has an empty item: write %s=a,b", key.c_str(), text.c_str(),
                  key.c_str());
    POMPC_REQUIRE(std::find(items.begin(), items.end(), item) == items.end(),
                  "%s=%s names %s twice", key.c_str(), text.c_str(), item.c_str());
    items.push_back(item);
    if (e == std::string::npos) return items;
    b = e + 1;
  }
}

std::string key_of(const std::string& arg) {
  const size_t eq = arg.find('=');
  POMPC_REQUIRE(eq != std::string::npos && eq > 0, "argument '%s' is not key=value", arg.c_str());
  POMPC_REQUIRE(arg.find('\n') == std::string::npos, "argument '%s' holds a newline", arg.c_str());
  return arg.substr(0, eq);
}

bool only_chars(const std::string& s, const char* extra) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [&](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || (c != '\0' && std::strchr(extra, c));
  });
}

// A word bash reads back as exactly `s`.
std::string shell_quote(const std::string& s) {
  if (only_chars(s, "_-.,/:=+@%")) return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string quoted_words(const std::vector<std::string>& words) {
  std::string out;
  for (const std::string& w : words) {  // appended piecewise: "x" + string&& trips GCC 12's
    if (!out.empty()) out += ' ';        // -O3 -Wrestrict false positive
    out += shell_quote(w);
  }
  return out;
}

// The absolute path of this executable (what the Slurm script runs, what the logs name).
std::string this_program() {
  std::error_code ec;
  const auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  POMPC_REQUIRE(!ec, "cannot read /proc/self/exe (%s): the sweep needs Linux's /proc",
                ec.message().c_str());
  return p.string();
}

std::string date_time_name() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
  return buf;
}

std::vector<uint64_t> parse_seeds(const std::string& text) {
  std::vector<uint64_t> seeds;
  for (const std::string& item : split_list("seeds", text)) {
    uint64_t v = 0;
    const auto r = std::from_chars(item.data(), item.data() + item.size(), v);
    POMPC_REQUIRE(r.ec == std::errc() && r.ptr == item.data() + item.size(),
                  "seeds=%s: '%s' is not a seed (a non-negative integer)", text.c_str(),
                  item.c_str());
    seeds.push_back(v);
  }
  return seeds;
}

// Slurm's time forms: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S (numbers only).
bool is_slurm_time(const std::string& t) {
  auto digits = [](auto b, auto e) {
    return b != e && std::all_of(b, e, [](char c) { return c >= '0' && c <= '9'; });
  };
  const size_t dash = t.find('-');
  const std::string hms = dash == std::string::npos ? t : t.substr(dash + 1);
  if (dash != std::string::npos && !digits(t.begin(), t.begin() + std::ptrdiff_t(dash)))
    return false;
  int fields = 0;
  size_t b = 0;
  for (;;) {
    const size_t e = hms.find(':', b);
    const std::string f = hms.substr(b, e == std::string::npos ? std::string::npos : e - b);
    if (!digits(f.begin(), f.end())) return false;
    ++fields;
    if (e == std::string::npos) break;
    b = e + 1;
  }
  return fields <= 3;
}

// Slurm reads #SBATCH values up to white space and expands % patterns in paths.
void check_slurm_settings(const SweepSettings& s) {
  POMPC_REQUIRE(only_chars(s.name, "_.-"),
                "name=%s: use letters, digits, '_', '.' and '-' (it names the script "
                "and the Slurm job)",
                s.name.c_str());
  POMPC_REQUIRE(s.slurm_partition.empty() || only_chars(s.slurm_partition, "_.,-"),
                "slurm_partition=%s is not a partition name (letters, digits, '_', '.', "
                "'-'; a comma between several)",
                s.slurm_partition.c_str());
  POMPC_REQUIRE(is_slurm_time(s.slurm_time),
                "slurm_time=%s is not a Slurm time: write minutes (90), H:M:S (24:00:00) "
                "or D-H:M:S (2-00:00:00)",
                s.slurm_time.c_str());
  POMPC_REQUIRE(s.out.find_first_of(" \t\n%") == std::string::npos,
                "out=%s holds white space or '%%', which #SBATCH --output cannot carry: "
                "choose a directory without them",
                s.out.c_str());
}

}  // namespace

std::string SweepRun::label() const {
  return task + "/" + preset + "/" + std::to_string(seed);
}

io::Config sweep_config() {
  const SweepSettings d;
  return io::Config({
      ConfigKey::String("tasks", "", "comma-separated task names (pompc tasks); required"),
      ConfigKey::String("seeds", "", "comma-separated seeds; required"),
      ConfigKey::String("presets", "",
                        "comma-separated presets; empty = the train keys' preset= (tdmpc2)"),
      ConfigKey::Enum("backend", d.backend, {"local", "slurm"},
                      "local: child processes here; slurm: a job array script"),
      ConfigKey::Int("jobs", d.jobs, 1, 4096,
                     "local: runs at once, each with available cores / jobs threads"),
      ConfigKey::String("out", d.out, "run dirs <out>/<task>/<preset>/<seed>; slurm's script"),
      ConfigKey::String("name", d.name,
                        "slurm: script <out>/sweep-<name>.sbatch, job pompc-<name>; empty = the "
                        "date and time"),
      ConfigKey::Bool("submit", d.submit, "slurm: run sbatch on the script"),
      ConfigKey::String("slurm_partition", d.slurm_partition,
                        "slurm: --partition; empty = the cluster's default"),
      ConfigKey::Int("slurm_gpus", d.slurm_gpus, 0, 64, "slurm: --gres=gpu:N; 0 = none"),
      ConfigKey::String("slurm_time", d.slurm_time,
                        "slurm: --time per run (minutes, H:M:S or D-H:M:S)"),
      ConfigKey::Int("slurm_cpus", d.slurm_cpus, 1, 4096,
                     "slurm: --cpus-per-task, each run's num_threads"),
  });
}

SweepPlan plan_sweep(const std::vector<std::string>& args) {
  io::Config sc = sweep_config();
  const io::Config train_keys = train_config();
  SweepPlan plan;
  SweepSettings& s = plan.settings;
  std::vector<std::string> sweep_args;
  for (const std::string& a : args) {
    const std::string key = key_of(a);
    if (sc.has(key)) {
      sweep_args.push_back(a);
      continue;
    }
    POMPC_REQUIRE(key != "task", "task= is the sweep's: list the tasks in tasks=a,b");
    POMPC_REQUIRE(key != "seed", "seed= is the sweep's: list the seeds in seeds=1,2");
    POMPC_REQUIRE(key != "run_dir",
                  "run_dir= is the sweep's (<out>/<task>/<preset>/<seed>): move the runs "
                  "with out=DIR");
    POMPC_REQUIRE(key != "resume",
                  "resume= is the sweep's: a run with a checkpoint resumes, a finished "
                  "one is skipped");
    if (!train_keys.has(key)) {
      std::string why;  // the trainer's own message: did you mean, and its valid keys
      try {
        train_config().set(key, "");
      } catch (const Error& e) {
        why = e.what();
      }
      throw Error(strfmt("%s (pompc train's keys); the sweep's own keys: %s", why.c_str(),
                         join(sc.key_names(), ", ").c_str()));
    }
    s.train_args.push_back(a);
  }
  sc.apply(sweep_args);
  s.backend = sc.get_string("backend");
  s.jobs = int(sc.get_int("jobs"));
  s.out = sc.get_string("out");
  s.name = sc.get_string("name");
  s.submit = sc.get_bool("submit");
  s.slurm_partition = sc.get_string("slurm_partition");
  s.slurm_gpus = int(sc.get_int("slurm_gpus"));
  s.slurm_time = sc.get_string("slurm_time");
  s.slurm_cpus = int(sc.get_int("slurm_cpus"));
  POMPC_REQUIRE(!s.out.empty(), "out= is empty: name the directory of the runs (runs)");

  POMPC_REQUIRE(!sc.get_string("tasks").empty(),
                "name the tasks, e.g. tasks=cartpole-balance,walker-walk (pompc tasks "
                "lists them)");
  s.tasks = split_list("tasks", sc.get_string("tasks"));
  for (const std::string& t : s.tasks) {
    try {
      env::find_task(t);
    } catch (const Error& e) {
      throw Error(strfmt("tasks=: %s", e.what()));
    }
  }
  POMPC_REQUIRE(!sc.get_string("seeds").empty(), "name the seeds, e.g. seeds=1,2,3");
  s.seeds = parse_seeds(sc.get_string("seeds"));
  if (!sc.get_string("presets").empty()) {
    for (const std::string& a : s.train_args)
      POMPC_REQUIRE(key_of(a) != "preset",
                    "both presets= and %s: list every preset in presets=", a.c_str());
    s.presets = split_list("presets", sc.get_string("presets"));
  } else {
    io::Config c = train_config();
    c.apply(s.train_args);
    s.presets = {c.get_string("preset")};
  }
  if (s.backend == "slurm") {
    if (s.name.empty()) s.name = date_time_name();
    s.out = std::filesystem::absolute(s.out).lexically_normal().string();
    if (s.out.size() > 1 && s.out.back() == '/') s.out.pop_back();
    check_slurm_settings(s);
  }

  // Every run's config as pompc train will read it, resolved against its task.
  std::map<std::pair<std::string, int>, int> episode_length;  // (task, action_repeat)
  for (const std::string& task : s.tasks)
    for (const std::string& preset : s.presets)
      for (uint64_t seed : s.seeds) {
        SweepRun r;
        r.task = task;
        r.preset = preset;
        r.seed = seed;
        r.run_dir = s.out + "/" + task + "/" + preset + "/" + std::to_string(seed);
        r.train_args = s.train_args;
        for (const std::string& kv : {"task=" + task, "preset=" + preset,
                                      "seed=" + std::to_string(seed), "run_dir=" + r.run_dir})
          r.train_args.push_back(kv);
        try {
          io::Config c = train_config();
          c.apply(r.train_args);
          TrainSettings ts = settings_from(c);
          const auto key = std::make_pair(task, ts.action_repeat);
          if (!episode_length.count(key))
            episode_length[key] = env::Env(task, 0, ts.action_repeat).episode_length();
          const env::TaskSpec& spec = env::find_task(task);
          resolve_model(ts, spec.obs_dim, spec.act_dim, episode_length[key]);
          r.steps = ts.steps;
          r.num_threads = ts.num_threads;
        } catch (const Error& e) {
          throw Error(strfmt("run %s: %s", r.label().c_str(), e.what()));
        }
        plan.runs.push_back(std::move(r));
      }
  return plan;
}

RunState run_state(const SweepRun& run) {
  const std::string eval = run.run_dir + "/eval.csv";
  if (io::path_exists(eval)) {
    const io::CsvTable t = io::read_csv(eval);
    const size_t col = t.column("env_step", eval);
    for (size_t i = 0; i < t.rows.size(); ++i)
      if (io::csv_number(t, i, col, eval) >= double(run.steps)) return RunState::finished;
  }
  return io::path_exists(checkpoint_path(run.run_dir)) ? RunState::resume : RunState::fresh;
}

namespace {

// ---- local backend ------------------------------------------------------------------------

int g_wake_fd = -1;  // the self-pipe's write end while a local sweep waits

extern "C" void on_sweep_signal(int sig) {
  const int saved = errno;
  const unsigned char c = static_cast<unsigned char>(sig);
  [[maybe_unused]] const ssize_t n = write(g_wake_fd, &c, 1);
  errno = saved;
}

constexpr int kSignals[] = {SIGCHLD, SIGINT, SIGTERM, SIGHUP};

// The handlers of kSignals write the signal's number to a pipe that wait() sleeps on, so no
// signal is lost between two waits; the previous handlers come back on destruction.
class SignalPipe {
 public:
  SignalPipe() {
    int fds[2];
    POMPC_REQUIRE(pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0, "pipe2 failed: %s",
                  std::strerror(errno));
    read_fd_ = fds[0];
    g_wake_fd = write_fd_ = fds[1];
    struct sigaction sa {};
    sa.sa_handler = on_sweep_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    for (size_t i = 0; i < std::size(kSignals); ++i) sigaction(kSignals[i], &sa, &old_[i]);
  }
  ~SignalPipe() {
    for (size_t i = 0; i < std::size(kSignals); ++i) sigaction(kSignals[i], &old_[i], nullptr);
    g_wake_fd = -1;
    close(read_fd_);
    close(write_fd_);
  }
  SignalPipe(const SignalPipe&) = delete;
  SignalPipe& operator=(const SignalPipe&) = delete;

  // Sleeps until a signal has come; returns the signals since the last call.
  std::vector<int> wait() {
    pollfd p{read_fd_, POLLIN, 0};
    while (poll(&p, 1, -1) < 0)
      POMPC_REQUIRE(errno == EINTR, "poll failed: %s", std::strerror(errno));
    std::vector<int> sigs;
    unsigned char buf[64];
    for (ssize_t n; (n = read(read_fd_, buf, sizeof buf)) > 0;)
      sigs.insert(sigs.end(), buf, buf + n);
    return sigs;
  }

 private:
  int read_fd_ = -1, write_fd_ = -1;
  struct sigaction old_[std::size(kSignals)]{};
};

std::string exit_text(int status) {
  if (WIFSIGNALED(status))
    return strfmt("killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
  return strfmt("exit %d", WEXITSTATUS(status));
}

// The last non-empty line of a file (its last 4 KB), "" when there is none.
std::string last_line(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) return "";
  const std::streamoff size = f.tellg();
  const std::streamoff from = std::max<std::streamoff>(0, size - 4096);
  f.seekg(from);
  std::string tail(static_cast<size_t>(size - from), '\0');
  f.read(tail.data(), static_cast<std::streamsize>(tail.size()));
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == '\r')) tail.pop_back();
  const size_t nl = tail.find_last_of("\n\r");
  return nl == std::string::npos ? tail : tail.substr(nl + 1);
}

// Starts `program train args...` with stdout and stderr appended to log (after a line with the
// command), in its own process group, with the given OpenMP threads.
pid_t spawn_run(const std::string& program, const std::vector<std::string>& args,
                const std::string& log, int threads) {
  std::vector<std::string> argv_s = {program, "train"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  POMPC_REQUIRE(fd >= 0, "cannot open %s: %s", log.c_str(), std::strerror(errno));
  const std::string head = "# pompc sweep: " + quoted_words(argv_s) + "\n";
  [[maybe_unused]] const ssize_t wrote = write(fd, head.data(), head.size());

  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e)
    if (std::strncmp(*e, "OMP_NUM_THREADS=", 16) != 0) env_s.push_back(*e);
  env_s.push_back("OMP_NUM_THREADS=" + std::to_string(threads));
  if (!std::getenv("OMP_WAIT_POLICY")) env_s.push_back("OMP_WAIT_POLICY=passive");
  std::vector<char*> argv, envp;
  for (std::string& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (std::string& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, fd, 1);
  posix_spawn_file_actions_adddup2(&fa, fd, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int sig : kSignals) sigaddset(&defaults, sig);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, program.c_str(), &fa, &attr, argv.data(), envp.data());
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  close(fd);
  POMPC_REQUIRE(rc == 0, "cannot start %s: %s", program.c_str(), std::strerror(rc));
  return pid;
}

SweepResult run_local(const SweepPlan& plan) {
  const SweepSettings& s = plan.settings;
  const std::string program = this_program();
  const size_t K = plan.runs.size();
  SweepResult res;
  std::deque<size_t> pending;
  std::vector<RunState> state(K);
  for (size_t i = 0; i < K; ++i) {
    state[i] = run_state(plan.runs[i]);
    if (state[i] != RunState::finished) pending.push_back(i);
  }
  const size_t jobs = std::max<size_t>(1, std::min<size_t>(size_t(s.jobs), pending.size()));
  const int cores = env::available_cores();
  // Every run has the same pass-through keys, so an explicit num_threads= is every run's.
  const int threads =
      plan.runs[0].num_threads > 0 ? plan.runs[0].num_threads : std::max(1, cores / int(jobs));
  std::printf(
      "sweep: %s (%s x %s x %s), %zu to run, %zu at a time with %s each (%s "
      "available); logs <run_dir>/train.log\n",
      count(K, "run").c_str(), count(s.tasks.size(), "task").c_str(),
      count(s.presets.size(), "preset").c_str(), count(s.seeds.size(), "seed").c_str(),
      pending.size(), jobs, count(size_t(threads), "thread").c_str(),
      count(size_t(cores), "core").c_str());
  for (size_t i = 0; i < K; ++i) {
    const SweepRun& r = plan.runs[i];
    if (state[i] != RunState::finished) continue;
    std::printf("sweep: [%zu/%zu] skip   %s: finished (%s/eval.csv reached %lld env steps)\n",
                i + 1, K, r.label().c_str(), r.run_dir.c_str(), static_cast<long long>(r.steps));
    res.skipped++;
  }
  std::fflush(stdout);

  struct Child {
    size_t run;
    pid_t pid;
    Clock::time_point t0;
  };
  std::vector<Child> running;
  std::vector<std::string> failed(K);  // by run, so the list comes out in grid order
  SignalPipe signals;                  // before the first child can exit
  bool stopping = false;
  for (;;) {
    while (!stopping && running.size() < jobs && !pending.empty()) {
      const size_t i = pending.front();
      pending.pop_front();
      const SweepRun& r = plan.runs[i];
      std::vector<std::string> args = r.train_args;
      if (r.num_threads == 0) args.push_back("num_threads=" + std::to_string(threads));
      if (state[i] == RunState::resume) args.push_back("resume=true");
      const std::string log = r.run_dir + "/train.log";
      try {
        std::filesystem::create_directories(r.run_dir);
        const pid_t pid = spawn_run(program, args, log, threads);
        running.push_back({i, pid, Clock::now()});
        std::printf("sweep: [%zu/%zu] start  %s (%s), pid %d: %s\n", i + 1, K, r.label().c_str(),
                    state[i] == RunState::resume ? "resumed" : "new run", int(pid), log.c_str());
      } catch (const std::exception& e) {
        failed[i] = r.label() + " (not started: " + e.what() + ")";
        std::printf("sweep: [%zu/%zu] FAILED %s: not started: %s\n", i + 1, K, r.label().c_str(),
                    e.what());
      }
      std::fflush(stdout);
    }
    if (running.empty()) break;
    for (int sig : signals.wait()) {
      if (sig == SIGCHLD) continue;
      if (!stopping)
        std::printf("sweep: %s: forwarding it to %s; no further run starts\n", strsignal(sig),
                    count(running.size(), "running run").c_str());
      stopping = res.interrupted = true;
      for (const Child& c : running) kill(c.pid, sig);
    }
    for (size_t c = 0; c < running.size();) {
      int status = 0;
      const pid_t got = waitpid(running[c].pid, &status, WNOHANG);
      if (got == 0) {
        ++c;
        continue;
      }
      const Child ch = running[c];
      running.erase(running.begin() + std::ptrdiff_t(c));
      const SweepRun& r = plan.runs[ch.run];
      const double secs = std::chrono::duration<double>(Clock::now() - ch.t0).count();
      const std::string log = r.run_dir + "/train.log";
      if (got == ch.pid && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        res.ok++;
        std::printf("sweep: [%zu/%zu] done   %s: exit 0 after %.1f s\n", ch.run + 1, K,
                    r.label().c_str(), secs);
      } else {
        const std::string what =
            got == ch.pid ? exit_text(status) : strfmt("waitpid failed: %s", std::strerror(errno));
        failed[ch.run] = r.label() + " (" + what + "; " + log + ")";
        std::printf("sweep: [%zu/%zu] FAILED %s: %s after %.1f s; %s ends: %s\n", ch.run + 1, K,
                    r.label().c_str(), what.c_str(), secs, log.c_str(), last_line(log).c_str());
      }
      std::fflush(stdout);
    }
  }
  for (size_t i : pending)
    failed[i] = plan.runs[i].label() + " (not started: the sweep was interrupted)";
  for (const std::string& f : failed)
    if (!f.empty()) res.failed.push_back(f);
  std::printf("sweep: %d finished, %d skipped (already finished), %zu failed%s\n", res.ok,
              res.skipped, res.failed.size(), res.interrupted ? " (interrupted)" : "");
  if (!res.failed.empty()) std::printf("sweep: failed runs: %s\n", join(res.failed, ", ").c_str());
  std::fflush(stdout);
  return res;
}

// ---- slurm backend ------------------------------------------------------------------------

SweepResult run_slurm(const SweepPlan& plan, const std::string& command_line) {
  const SweepSettings& s = plan.settings;
  std::filesystem::create_directories(s.out + "/slurm");
  SweepResult res;
  res.script = s.out + "/sweep-" + s.name + ".sbatch";
  io::write_file_atomic(res.script, slurm_script(plan, this_program(), command_line));
  std::printf("sweep: wrote %s: %s as a Slurm job array (indices 0-%zu), logs %s/slurm/\n",
              res.script.c_str(), count(plan.runs.size(), "run").c_str(), plan.runs.size() - 1,
              s.out.c_str());
  if (!s.submit) {
    std::printf("sweep: submit it with: sbatch %s\n", res.script.c_str());
    return res;
  }
  std::printf("sweep: sbatch %s\n", res.script.c_str());
  std::fflush(stdout);
  std::string sbatch = "sbatch", script = res.script;
  char* argv[] = {sbatch.data(), script.data(), nullptr};
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, "sbatch", nullptr, nullptr, argv, environ);
  POMPC_REQUIRE(rc == 0,
                "cannot run sbatch (%s): run this on a Slurm submit host, or drop "
                "submit=true and run `sbatch %s` there",
                std::strerror(rc), res.script.c_str());
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    POMPC_REQUIRE(errno == EINTR, "waitpid(sbatch) failed: %s", std::strerror(errno));
  POMPC_REQUIRE(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "sbatch %s: %s (its message is above); the script stays there", res.script.c_str(),
                exit_text(status).c_str());
  return res;
}

}  // namespace

std::string slurm_script(const SweepPlan& plan, const std::string& program,
                         const std::string& command_line) {
  const SweepSettings& s = plan.settings;
  const size_t K = plan.runs.size();
  POMPC_REQUIRE(K >= 1, "the grid is empty");
  const std::string who = "pompc sweep " + s.name;
  const std::string range = "0-" + std::to_string(K - 1);
  std::string t;
  auto line = [&](const std::string& l) { t += l + "\n"; };
  line("#!/bin/bash");
  line(strfmt("# %s: %s of pompc train (%s x %s x %s), one per array index.", who.c_str(),
              count(K, "run").c_str(), count(s.tasks.size(), "task").c_str(),
              count(s.presets.size(), "preset").c_str(), count(s.seeds.size(), "seed").c_str()));
  line("# Written by: " + command_line);
  line("# Submit: sbatch " + s.out + "/sweep-" + s.name + ".sbatch; logs: " + s.out +
       "/slurm/<job>_<index>.out.");
  line("# resume=auto: a requeued or resubmitted run continues from its checkpoint; a finished");
  line("# one loads it and exits. POMPC_BIN=/path/to/pompc runs another binary.");
  line("#SBATCH --job-name=pompc-" + s.name);
  line("#SBATCH --array=" + range);
  line("#SBATCH --cpus-per-task=" + std::to_string(s.slurm_cpus));
  line("#SBATCH --time=" + s.slurm_time);
  line("#SBATCH --output=" + s.out + "/slurm/%A_%a.out");
  line("#SBATCH --requeue");
  if (!s.slurm_partition.empty()) line("#SBATCH --partition=" + s.slurm_partition);
  if (s.slurm_gpus > 0) line("#SBATCH --gres=gpu:" + std::to_string(s.slurm_gpus));
  line("set -euo pipefail");
  line("pompc=\"${POMPC_BIN:-" + program + "}\"");
  line("index=\"${SLURM_ARRAY_TASK_ID:-unset}\"");
  line("case \"$index\" in");
  for (size_t i = 0; i < K; ++i) {
    const SweepRun& r = plan.runs[i];
    // The run's own keys: the last four of its train_args (task, preset, seed, run_dir).
    const std::vector<std::string> keys(r.train_args.end() - 4, r.train_args.end());
    line("  " + std::to_string(i) + ") run=(" + quoted_words(keys) + ") ;;");
  }
  line("  *) echo \"" + who + ": SLURM_ARRAY_TASK_ID=$index is not in " + range +
       ": submit this script with sbatch\" >&2");
  line("     exit 2 ;;");
  line("esac");
  const int user_threads = plan.runs[0].num_threads;
  line(user_threads > 0
           ? "threads=" + std::to_string(user_threads)
           : "threads=\"${SLURM_CPUS_PER_TASK:-" + std::to_string(s.slurm_cpus) + "}\"");
  line("export OMP_NUM_THREADS=\"$threads\"");
  line("export OMP_WAIT_POLICY=\"${OMP_WAIT_POLICY:-passive}\"");
  line("echo \"" + who + ": array index $index of " + range + " on ${HOSTNAME:-?}: ${run[*]}\"");
  std::string exec = "exec \"$pompc\" train";
  for (const std::string& a : s.train_args) exec += " " + shell_quote(a);
  line(exec + " \"${run[@]}\" num_threads=\"$threads\" resume=auto");
  return t;
}

SweepResult sweep(const std::vector<std::string>& args) {
  const SweepPlan plan = plan_sweep(args);
  if (plan.settings.backend == "slurm") return run_slurm(plan, "pompc sweep " + quoted_words(args));
  return run_local(plan);
}

}  // namespace pompc::train
