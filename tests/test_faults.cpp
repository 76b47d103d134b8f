// Faults (issue 14): the program killed with SIGKILL at random moments and resumed until it
// finishes, damaged checkpoints, a full disk. The guarantees are in src/train/trainer.h (run
// book: faults) and src/io/atomic_file.h.
//
//   kill -9       build/pompc (next to this binary: make build/pompc) trains a tiny
//                 pendulum-swingup model for 7 episodes (a checkpoint after each), once without
//                 interruption and once killed 9 times: at seeded random delays (the first one
//                 before the first save, so the driver must start over without resume=true),
//                 inside the replay buffer's write, inside the checkpoint's write (the buffer
//                 already written) and between the checkpoint and the buffer's rename (inotify
//                 on the run directory triggers those). The driver resumes when run_dir holds a
//                 checkpoint, else starts afresh; the last process runs to the end.
//                 The final checkpoint's tensors and metadata (but elapsed_s and checksum), the
//                 replay buffer file, eval.csv and train.csv (but steps_per_s and elapsed_s) must
//                 equal the uninterrupted run's. POMPC_FAULT_SEED=N picks other kill moments.
//   damage        single-bit flips in 1024 random bytes of the checkpoint's header, in 128 of its
//                 data and 32 truncations are refused by resume=true with a message naming the
//                 damage, and the run directory is left untouched. The same for replay.safetensors
//                 (64 header bytes, 64 data bytes, 8 truncations: its checksum), whose error also
//                 says to resume with save_buffer=false; the buffer file as an older pompc wrote
//                 it (no checksum) resumes, saying it was not verified.
//   full disk     RLIMIT_FSIZE with SIGXFSZ ignored (write fails with EFBIG, as on a full disk):
//                 AtomicWriter names the file and the OS error, removes its temp file and keeps
//                 the old file; the program (build/pompc) stops at a checkpoint save with that
//                 error, and the last checkpoint resumes to the uninterrupted run's result bit
//                 for bit.
//   stale temps   `<path>.tmp.<pid>` of dead processes are removed by the next write, others kept.
//   no checkpoint resume=true in a run_dir left without a checkpoint says to start over; a fresh
//                 start there replaces what the stopped run left.
//
// Run: build/test_emu -ts=e2e -tc='*faults*'   (about 30 s on 2 busy cores)
//      build/test_emu -ts=io -tc='*atomic*'
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "common.h"
#include "io/atomic_file.h"
#include "io/csv.h"
#include "io/safetensors.h"
#include "replay_file_v1.h"
#include "test_io_tmp.h"
#include "test_util.h"
#include "train/trainer.h"

using pompc::test::TempDir;

namespace {

using Clock = std::chrono::steady_clock;

constexpr int64_t kSteps = 7000;  // 7 episodes of 1000 env steps, a checkpoint after each

// make build/pompc's tiniest run: pendulum-swingup at action_repeat 8 (125 agent steps per
// episode), the first episode random, then a 125-update burst and one update per step.
std::vector<std::string> run_args(const std::string& run_dir, int64_t steps) {
  return {"task=pendulum-swingup",
          "action_repeat=8",
          "steps=" + std::to_string(steps),
          "seed_steps=125",
          "eval_freq=1000",
          "eval_episodes=1",
          "checkpoint_freq=1000",
          "save_buffer=true",
          "model_size=1",
          "enc_dim=32",
          "mlp_dim=32",
          "latent_dim=16",
          "batch_size=16",
          "buffer_size=10000",
          "iterations=2",
          "num_samples=32",
          "num_elites=8",
          "num_pi_trajs=4",
          "device=cpu",
          "seed=3",
          "run_dir=" + run_dir};
}

// The program (build/pompc) in this test binary's directory (/proc/self/exe's).
std::string pompc_binary() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  REQUIRE(n > 0);
  std::string dir(buf, size_t(n));
  dir = dir.substr(0, dir.find_last_of('/'));
  const std::string bin = dir + "/pompc";
  if (::access(bin.c_str(), X_OK) != 0)
    FAIL("the fault tests run the program " << bin << ", which does not exist: make " << bin);
  return bin;
}

// Starts build/pompc train `args` with stdout and stderr into `log`; with fsize_limit > 0 under
// RLIMIT_FSIZE with SIGXFSZ ignored (writes past the limit fail with EFBIG).
pid_t spawn_pompc(const std::vector<std::string>& args, const std::string& log,
                  rlim_t fsize_limit = 0) {
  static const std::string bin = pompc_binary();
  std::vector<std::string> words = {bin, "train"};
  words.insert(words.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_words = {"OMP_NUM_THREADS=1", "PATH=/usr/bin:/bin"};
  std::vector<char*> envp;
  for (std::string& w : env_words) envp.push_back(w.data());
  envp.push_back(nullptr);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {  // async-signal-safe calls only until execve
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) ::_exit(126);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    if (fsize_limit > 0) {
      ::signal(SIGXFSZ, SIG_IGN);
      const rlimit rl{fsize_limit, fsize_limit};
      ::setrlimit(RLIMIT_FSIZE, &rl);
    }
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  return pid;
}

// Waits for a child; its exit code, or 128 + signal.
int wait_child(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) REQUIRE(errno == EINTR);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool child_exited(pid_t pid, int* code) {
  int status = 0;
  const pid_t r = ::waitpid(pid, &status, WNOHANG);
  if (r != pid) return false;
  *code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return true;
}

std::vector<std::string> temp_files(const TempDir& tmp, const std::string& sub) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(tmp.file(sub).c_str())) {
    while (const dirent* e = ::readdir(d))
      if (std::strstr(e->d_name, ".tmp.")) out.push_back(e->d_name);
    ::closedir(d);
  }
  return out;
}

// The run directory's files and their bytes.
std::map<std::string, std::string> snapshot(const std::string& dir) {
  std::map<std::string, std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n != "." && n != "..") out[n] = pompc::io::read_file(dir + "/" + n);
    }
    ::closedir(d);
  }
  return out;
}

// A CSV with the named columns removed (wall-clock figures).
std::vector<std::vector<std::string>> csv_without(const std::string& path,
                                                  const std::vector<std::string>& drop) {
  const pompc::io::CsvTable t = pompc::io::read_csv(path);
  std::vector<std::vector<std::string>> out;
  for (const auto& row : t.rows) {
    std::vector<std::string> kept;
    for (size_t c = 0; c < row.size(); ++c)
      if (std::find(drop.begin(), drop.end(), t.header[c]) == drop.end()) kept.push_back(row[c]);
    out.push_back(kept);
  }
  return out;
}

// Checks that run_dir `b` ended exactly as the uninterrupted run `a`: every tensor's bytes, the
// metadata but elapsed_s, checksum (which covers elapsed_s), resume= and run_dir= in the
// config, the replay buffer file, eval.csv, and train.csv but its wall-clock columns.
void check_same_run(const std::string& a, const std::string& b) {
  pompc::io::SafetensorsFile fa(a + "/checkpoint.safetensors"), fb(b + "/checkpoint.safetensors");
  REQUIRE(fa.tensors().size() == fb.tensors().size());
  size_t differing = 0;
  for (size_t i = 0; i < fa.tensors().size(); ++i) {
    const auto& ta = fa.tensors()[i];
    const auto& tb = fb.tensors()[i];
    std::string da(ta.nbytes(), '\0'), db(tb.nbytes(), '\0');
    fa.read(ta, da.data(), da.size());
    if (tb.name == ta.name && tb.nbytes() == ta.nbytes()) fb.read(tb, db.data(), db.size());
    if (ta.name != tb.name || da != db) {
      if (differing++ < 5) MESSAGE("tensor differs from the uninterrupted run: " << ta.name);
    }
  }
  CHECK(differing == 0);
  auto meta = [](const pompc::io::SafetensorsFile& f) {
    pompc::io::Metadata m = f.metadata();
    m.erase("elapsed_s");
    m.erase("checksum");
    std::string& cfg = m["config"];
    for (const char* key : {"\nresume=", "\nrun_dir="}) {
      const size_t r = cfg.find(key);
      if (r != std::string::npos) cfg.erase(r, cfg.find('\n', r + 1) - r);
    }
    return m;
  };
  const pompc::io::Metadata ma = meta(fa), mb = meta(fb);
  for (const auto& [k, v] : ma) {
    const std::string w = mb.count(k) ? mb.at(k) : "(none)";
    CHECK_MESSAGE(w == v, "metadata " << k << ": " << v << " vs " << w);
  }
  CHECK(ma.size() == mb.size());
  CHECK(pompc::io::read_file(a + "/replay.safetensors") ==
        pompc::io::read_file(b + "/replay.safetensors"));
  CHECK(pompc::io::read_file(a + "/eval.csv") == pompc::io::read_file(b + "/eval.csv"));
  const std::vector<std::string> clock = {"steps_per_s", "elapsed_s"};
  const auto tra = csv_without(a + "/train.csv", clock);
  CHECK(tra.size() == size_t(kSteps / 1000));
  CHECK(tra == csv_without(b + "/train.csv", clock));
}

// The uninterrupted run, once per test process.
const std::string& reference_run() {
  static TempDir tmp;
  static const std::string dir = [] {
    const std::string d = tmp.file("reference");
    const int code = wait_child(spawn_pompc(run_args(d, kSteps), tmp.file("reference.log")));
    INFO(pompc::io::read_file(tmp.file("reference.log")));
    REQUIRE(code == 0);
    return d;
  }();
  return dir;
}

// How a run is stopped. Every kind advances the run by at most one checkpoint per process (a
// fresh start's in-write kills wait for its second save), so the plan never finishes the run.
enum class Kill {
  early,             // at a random delay, at the latest when the first save starts
  delay,             // at a random delay, at the latest when the second save starts
  in_buffer,         // when replay.next.safetensors.tmp.<pid> appears (the buffer's write)
  in_checkpoint,     // when checkpoint.safetensors.tmp.<pid> appears (buffer written, not the ckpt)
  after_checkpoint,  // when checkpoint.safetensors is renamed into place (buffer not renamed)
};

const char* kill_name(Kill k) {
  switch (k) {
    case Kill::early:
      return "at a random delay before the first save";
    case Kill::delay:
      return "at a random delay";
    case Kill::in_buffer:
      return "inside the replay buffer's write";
    case Kill::in_checkpoint:
      return "inside the checkpoint's write";
    case Kill::after_checkpoint:
      return "between the checkpoint and the buffer's rename";
  }
  return "?";
}

// Runs until the child exits (returns its code) or the kill condition fires (SIGKILL, returns
// 128 + 9). Event kills fire at the `nth` matching event of this process.
int run_and_kill(pid_t pid, const std::string& run_dir, Kill kill, double delay_s, int nth) {
  const int ino = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  REQUIRE(ino >= 0);
  const std::string tmp = ".tmp." + std::to_string(pid);
  // The run directory exists once the process has created it (before its first save): watch
  // as soon as it does.
  int wd = -1;
  int buffer_tmp = 0, checkpoint_tmp = 0, checkpoint_moved = 0, code = 0;
  const auto t0 = Clock::now();
  for (;;) {
    if (child_exited(pid, &code)) {
      ::close(ino);
      return code;
    }
    if (wd < 0) wd = ::inotify_add_watch(ino, run_dir.c_str(), IN_CREATE | IN_MOVED_TO);
    pollfd p{ino, POLLIN, 0};
    ::poll(&p, 1, wd < 0 ? 1 : 5);
    alignas(inotify_event) char buf[8192];
    for (ssize_t n; (n = ::read(ino, buf, sizeof buf)) > 0;) {
      for (ssize_t off = 0; off < n;) {
        const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
        off += ssize_t(sizeof(inotify_event) + ev->len);
        const std::string name = ev->len ? ev->name : "";
        buffer_tmp += (ev->mask & IN_CREATE) && name == "replay.next.safetensors" + tmp;
        checkpoint_tmp += (ev->mask & IN_CREATE) && name == "checkpoint.safetensors" + tmp;
        checkpoint_moved += (ev->mask & IN_MOVED_TO) && name == "checkpoint.safetensors";
      }
    }
    const double t = std::chrono::duration<double>(Clock::now() - t0).count();
    const bool fire = (kill == Kill::early && (t >= delay_s || buffer_tmp >= 1)) ||
                      (kill == Kill::delay && (t >= delay_s || buffer_tmp >= 2)) ||
                      (kill == Kill::in_buffer && buffer_tmp >= nth) ||
                      (kill == Kill::in_checkpoint && checkpoint_tmp >= nth) ||
                      (kill == Kill::after_checkpoint && checkpoint_moved >= nth);
    if (fire) break;
  }
  ::kill(pid, SIGKILL);
  ::close(ino);
  return wait_child(pid);
}

// A copy of the reference run's directory in `tmp` (its "damaged" folder) for a test to damage.
std::string copy_of_reference_run(const TempDir& tmp) {
  const std::string dir = tmp.file("damaged");
  REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
  for (const auto& [name, bytes] : snapshot(reference_run()))
    pompc::io::write_file_atomic(dir + "/" + name, bytes);
  return dir;
}

// Writes `bytes` over the file at `path` (in place, as damage would) and runs the trainer with
// `args`: the error it stopped with, or "" when it ran through.
std::string train_error_with(const std::string& path, const std::string& bytes,
                             const std::vector<std::string>& args) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_TRUNC);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, bytes.data(), bytes.size()) == ssize_t(bytes.size()));
  ::close(fd);
  try {
    pompc::train::train(args);
  } catch (const pompc::Error& e) {
    return e.what();
  }
  return "";
}

// Damaged copies of a file `good` whose safetensors header ends at header_end: one random bit
// flipped in each of `header_bytes`, then in `data_flips` random data bytes, then `cuts` random
// truncations, each handed to refused(bytes, what); returns {refused, tried}.
template <typename Refused>
std::pair<int, int> refuse_damaged(const std::string& good, size_t header_end,
                                   const std::vector<size_t>& header_bytes, int data_flips,
                                   int cuts, std::mt19937_64& rng, Refused refused) {
  int tried = 0, ok = 0;
  for (size_t i : header_bytes) {
    std::string flipped = good;
    flipped[i] ^= char(1 << (rng() % 8));
    ok += refused(flipped, "flipped bit in header byte " + std::to_string(i));
    ++tried;
  }
  for (int i = 0; i < data_flips; ++i) {
    const size_t at = header_end + rng() % (good.size() - header_end);
    std::string flipped = good;
    flipped[at] ^= char(1 << (rng() % 8));
    ok += refused(flipped, "flipped bit in data byte " + std::to_string(at));
    ++tried;
  }
  for (int i = 0; i < cuts; ++i) {
    const size_t len = rng() % good.size();
    ok += refused(good.substr(0, len), "truncated to " + std::to_string(len) + " bytes");
    ++tried;
  }
  return {ok, tried};
}

}  // namespace

TEST_SUITE("e2e") {
  TEST_CASE("faults: kill -9 at random moments; resumed until done, the run ends bit for bit") {
    const std::string& ref = reference_run();
    TempDir tmp;
    const std::string dir = tmp.file("killed");
    const char* seed_env = std::getenv("POMPC_FAULT_SEED");
    const uint64_t seed = seed_env ? std::strtoull(seed_env, nullptr, 10) : 14;
    std::mt19937_64 rng(seed);
    // The plan: the first kill lands before any checkpoint; then each kind, twice. It advances
    // the run by at most 5 of its 7 checkpoints (one more if a kill arrives after the write it
    // aimed at), so every kill lands before the run is done.
    const std::vector<Kill> plan = {
        Kill::early,    Kill::in_checkpoint, Kill::in_buffer,        Kill::after_checkpoint,
        Kill::delay,    Kill::in_checkpoint, Kill::after_checkpoint, Kill::delay,
        Kill::in_buffer};
    int fresh = 0, resumed = 0, kills = 0, left_temp = 0;
    const auto t0 = Clock::now();
    for (size_t attempt = 0;; ++attempt) {
      REQUIRE(attempt <= plan.size());
      const bool resume = pompc::io::path_exists(dir + "/checkpoint.safetensors");
      auto args = run_args(dir, kSteps);
      if (resume) args.push_back("resume=true");
      (resume ? resumed : fresh)++;
      const std::string log = tmp.file("log." + std::to_string(attempt));
      const pid_t pid = spawn_pompc(args, log);
      if (attempt == plan.size()) {  // the last process runs to the end
        const int code = wait_child(pid);
        INFO(pompc::io::read_file(log));
        REQUIRE(code == 0);
        break;
      }
      const Kill k = plan[attempt];
      const double delay = std::uniform_real_distribution<double>(0, 1.0)(rng);
      // In-write kills: at the first save of a resumed process, at the second of a fresh one,
      // so that each lands in a save that replaces a checkpoint.
      const int nth = resume || k == Kill::after_checkpoint ? 1 : 2;
      const int code = run_and_kill(pid, dir, k, delay, nth);
      INFO("attempt " << attempt << " (" << std::string(kill_name(k)) << "), log:\n"
                      << pompc::io::read_file(log));
      REQUIRE(code == 128 + SIGKILL);
      ++kills;
      const auto temps = temp_files(tmp, "killed");
      left_temp += int(std::count_if(temps.begin(), temps.end(), [&](const std::string& n) {
        return n.find(".tmp." + std::to_string(pid)) != std::string::npos;
      }));
      if (attempt == 0) CHECK_FALSE(pompc::io::path_exists(dir + "/checkpoint.safetensors"));
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    MESSAGE("POMPC_FAULT_SEED=" << seed << ": " << kills << " kills (" << left_temp
                                << " inside an atomic write: their temp file was left), " << fresh
                                << " fresh starts, " << resumed << " resumes, " << seconds << " s");
    CHECK(kills == int(plan.size()));
    CHECK(fresh >= 2);  // the first kill came before any checkpoint
    // Inside-a-write kills leave their temp file unless the write finished before SIGKILL
    // arrived (on a fast tmpfs it may): a warning, not a failure.
    WARN(left_temp >= 1);
    check_same_run(ref, dir);
    // Temp files of the killed writes are gone: the next write of each path removed them.
    for (const std::string& n : temp_files(tmp, "killed")) {
      const bool ours = n.rfind("checkpoint.", 0) == 0 || n.rfind("replay.", 0) == 0;
      CHECK_MESSAGE(!ours, "stale temp file left: " << n);
    }
    CHECK_FALSE(pompc::io::path_exists(dir + "/replay.next.safetensors"));
  }

  TEST_CASE("faults: a damaged checkpoint is refused before use and run_dir is left untouched") {
    TempDir tmp;
    const std::string dir = copy_of_reference_run(tmp);
    const std::string ckpt = dir + "/checkpoint.safetensors";
    const std::string good = pompc::io::read_file(ckpt);
    auto args = run_args(dir, 2 * kSteps);
    args.push_back("resume=true");

    // Writes `bytes` as the checkpoint and resumes: the error must name the damage.
    auto refused = [&](const std::string& bytes, const std::string& what) {
      const std::string msg = train_error_with(ckpt, bytes, args);
      const bool named = msg.find("is corrupted") != std::string::npos ||
                         msg.find("is not readable") != std::string::npos ||
                         msg.find("is not a pompc checkpoint") != std::string::npos ||
                         msg.find("lacks its config or checksum") != std::string::npos;
      if (!named) FAIL_CHECK(what << ": resume did not refuse it as damaged: '" << msg << "'");
      return named;
    };

    // One flip in the data, one in the config text, one in a counter: the files are unchanged.
    const std::map<std::string, std::string> before = snapshot(dir);
    std::string flipped = good;
    flipped[flipped.size() - 5] ^= 0x10;
    CHECK(refused(flipped, "a flipped data bit"));
    const size_t header_end =
        size_t(pompc::io::SafetensorsFile(reference_run() + "/checkpoint.safetensors").data_start());
    const size_t mlp = good.find("mlp_dim=32");
    REQUIRE(mlp < header_end);
    flipped = good;
    flipped[mlp + 9] ^= 0x01;  // mlp_dim=33: the model would not fit; the checksum says why
    CHECK(refused(flipped, "mlp_dim=32 -> 33 in the config record"));
    const size_t step = good.find("\"env_step\":\"7000\"");
    REQUIRE(step < header_end);
    flipped = good;
    flipped[step + 12] ^= 0x02;  // env_step 7000 -> 5000
    CHECK(refused(flipped, "env_step 7000 -> 5000"));
    std::map<std::string, std::string> after = snapshot(dir);
    after["checkpoint.safetensors"] = good;
    CHECK(after == before);

    // 1024 distinct header bytes (one random bit each: the counters and config lines, the
    // tensor table, the padding, the length prefix), random data bytes, truncations.
    std::mt19937_64 rng(14);
    std::vector<size_t> header_bytes(header_end);
    for (size_t i = 0; i < header_end; ++i) header_bytes[i] = i;
    std::shuffle(header_bytes.begin(), header_bytes.end(), rng);
    header_bytes.resize(std::min<size_t>(header_end, 1024));
    const auto [ok, tried] = refuse_damaged(good, header_end, header_bytes, 128, 32, rng, refused);
    MESSAGE(ok << " of " << tried << " damaged checkpoints refused (" << header_end
               << " header bytes)");
    CHECK(ok == tried);
    after = snapshot(dir);
    after["checkpoint.safetensors"] = good;
    CHECK(after == before);
  }

  TEST_CASE("faults: a damaged replay buffer file is refused before use, run_dir left untouched") {
    TempDir tmp;
    const std::string dir = copy_of_reference_run(tmp);
    const std::string replay = dir + "/replay.safetensors";
    const std::string good = pompc::io::read_file(replay);
    const size_t header_end = size_t(pompc::io::SafetensorsFile(replay).data_start());
    auto args = run_args(dir, 2 * kSteps);
    args.push_back("resume=true");

    // Writes `bytes` as the buffer file and resumes: the error (kept in `msg`) names the file
    // and the damage, and says how to go on.
    std::string msg;
    auto refused = [&](const std::string& bytes, const std::string& what) {
      msg = train_error_with(replay, bytes, args);
      const bool named = msg.find(replay) != std::string::npos &&
                         (msg.find("is corrupted") != std::string::npos ||
                          msg.find("damaged") != std::string::npos) &&
                         msg.find("Resume with save_buffer=false") != std::string::npos;
      if (!named) FAIL_CHECK(what << ": resume did not refuse it as damaged: '" << msg << "'");
      return named;
    };

    const std::map<std::string, std::string> before = snapshot(dir);
    std::string flipped = good;
    flipped[header_end + 1000] ^= 0x08;  // one bit of one observation
    CHECK(refused(flipped, "a flipped data bit"));
    MESSAGE(msg);
    CHECK(msg.rfind("resume: no replay buffer file in " + dir +
                        " can be restored with the "
                        "checkpoint, which expects 7 episodes:\n  replay buffer file " +
                        replay + " is corrupted: ",
                    0) == 0);
    CHECK(msg.find("\nNothing in " + dir +
                   " was changed. Resume with save_buffer=false to "
                   "continue from the checkpoint with an empty buffer.") != std::string::npos);
    std::map<std::string, std::string> after = snapshot(dir);
    after["replay.safetensors"] = good;
    CHECK(after == before);

    // Random header bytes (one random bit each), data bytes, truncations.
    std::mt19937_64 rng(15);
    std::vector<size_t> header_bytes(64);
    for (size_t& at : header_bytes) at = rng() % header_end;
    const auto [ok, tried] = refuse_damaged(good, header_end, header_bytes, 64, 8, rng, refused);
    MESSAGE(ok << " of " << tried << " damaged replay buffer files refused");
    CHECK(ok == tried);
    after = snapshot(dir);
    after["replay.safetensors"] = good;
    CHECK(after == before);

    // The same buffer as an older pompc wrote it (version 1, no checksum) resumes, saying that
    // it was not verified.
    pompc::io::write_file_atomic(replay, good);
    pompc::io::write_file_atomic(replay, pompc::test::replay_file_v1(replay));
    std::vector<std::string> more = run_args(dir, kSteps + 1000);
    more.push_back("resume=true");
    const int code = wait_child(spawn_pompc(more, tmp.file("v1.log")));
    const std::string log = pompc::io::read_file(tmp.file("v1.log"));
    INFO(log);
    REQUIRE(code == 0);
    CHECK(log.find("resume: " + replay +
                   " has no checksum (written by an older pompc): its contents were not "
                   "verified\n") != std::string::npos);
  }

  TEST_CASE("faults: a run stopped before its first checkpoint is started over, not resumed") {
    TempDir tmp;
    const std::string dir = tmp.file("early");
    REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
    // What a run killed inside its first save leaves (the temp file of a dead pid).
    const pid_t dead = ::fork();
    REQUIRE(dead >= 0);
    if (dead == 0) ::_exit(0);
    REQUIRE(wait_child(dead) == 0);
    const std::string stale = "replay.next.safetensors.tmp." + std::to_string(dead);
    for (const char* f : {"config.txt", "train.csv", "eval.csv"})
      pompc::io::write_file_atomic(dir + "/" + f, "left by the stopped run\n");
    pompc::io::write_file_atomic(dir + "/" + stale, "partial");
    auto args = run_args(dir, 1000);
    args.push_back("resume=true");
    CHECK_THROWS_WITH_AS(pompc::train::train(args),
                         doctest::Contains("stopped before its first checkpoint; drop "
                                           "resume=true to start it over"),
                         pompc::Error);
    const int code = wait_child(spawn_pompc(run_args(dir, 1000), tmp.file("log")));
    INFO(pompc::io::read_file(tmp.file("log")));
    REQUIRE(code == 0);
    CHECK(pompc::io::read_csv(dir + "/train.csv").rows.size() == 1);
    CHECK(pompc::io::read_csv(dir + "/eval.csv").rows.size() == 1);
    CHECK(temp_files(tmp, "early").empty());
    CHECK(pompc::io::path_exists(dir + "/replay.safetensors"));
    CHECK_FALSE(pompc::io::path_exists(dir + "/replay.next.safetensors"));
  }

  TEST_CASE("faults: a full disk at a checkpoint stops the run; the last checkpoint resumes") {
    const std::string& ref = reference_run();
    TempDir tmp;
    const std::string dir = tmp.file("full");
    // One episode and its checkpoint, then a resume whose next checkpoint save hits the limit
    // (the replay buffer file, a few KB, still fits; the 290 KB checkpoint does not).
    REQUIRE(wait_child(spawn_pompc(run_args(dir, 1000), tmp.file("log.0"))) == 0);
    const std::map<std::string, std::string> before = snapshot(dir);
    const rlim_t limit = before.at("checkpoint.safetensors").size() / 2;
    REQUIRE(before.at("replay.safetensors").size() * 4 < limit);
    auto args = run_args(dir, kSteps);
    args.push_back("resume=true");
    const int code = wait_child(spawn_pompc(args, tmp.file("log.1"), limit));
    const std::string log = pompc::io::read_file(tmp.file("log.1"));
    INFO(log);
    CHECK(code == 1);
    CHECK(log.find("checkpoint.safetensors.tmp.") != std::string::npos);
    CHECK(log.find(std::strerror(EFBIG)) != std::string::npos);
    CHECK(log.find("checkpoint.safetensors was left unchanged") != std::string::npos);
    CHECK(temp_files(tmp, "full").empty());
    const std::map<std::string, std::string> after = snapshot(dir);
    CHECK(after.at("checkpoint.safetensors") == before.at("checkpoint.safetensors"));
    CHECK(after.at("replay.safetensors") == before.at("replay.safetensors"));
    // The last good checkpoint resumes; the run ends as the uninterrupted one.
    const int code2 = wait_child(spawn_pompc(args, tmp.file("log.2")));
    INFO(pompc::io::read_file(tmp.file("log.2")));
    REQUIRE(code2 == 0);
    check_same_run(ref, dir);
  }
}

TEST_SUITE("io") {
  TEST_CASE("atomic write: a full disk (EFBIG) names the file and the error, keeps the old file") {
    TempDir dir;
    const std::string p = dir.file("ckpt.bin");
    pompc::io::write_file_atomic(p, "old contents");
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {  // the child writes 1 MB under a 64 KB file size limit
      ::close(fds[0]);
      ::signal(SIGXFSZ, SIG_IGN);
      const rlimit rl{65536, 65536};
      ::setrlimit(RLIMIT_FSIZE, &rl);
      std::string msg = "no error";
      try {
        pompc::io::write_file_atomic(p, std::string(1 << 20, 'x'));
      } catch (const pompc::Error& e) {
        msg = e.what();
      }
      if (::write(fds[1], msg.data(), msg.size()) < 0) ::_exit(2);
      ::_exit(0);
    }
    ::close(fds[1]);
    std::string msg;
    char buf[4096];
    for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) msg.append(buf, size_t(n));
    ::close(fds[0]);
    CHECK(wait_child(pid) == 0);
    INFO(msg);
    CHECK(msg.find(p + ".tmp." + std::to_string(pid)) != std::string::npos);
    CHECK(msg.find(std::strerror(EFBIG)) != std::string::npos);
    CHECK(msg.find("after 65536 bytes") != std::string::npos);
    CHECK(msg.find(p + " was left unchanged") != std::string::npos);
    CHECK(pompc::io::read_file(p) == "old contents");
    CHECK(dir.entries() == std::vector<std::string>{"ckpt.bin"});
  }

  TEST_CASE("atomic write: temp files of dead processes are removed, others kept") {
    TempDir dir;
    const std::string p = dir.file("ckpt.bin");
    const pid_t dead = ::fork();
    REQUIRE(dead >= 0);
    if (dead == 0) ::_exit(0);
    REQUIRE(wait_child(dead) == 0);
    const std::string stale = "ckpt.bin.tmp." + std::to_string(dead);
    const std::vector<std::string> kept = {"ckpt.bin.tmp.1",  // pid 1 is alive
                                           "ckpt.bin.tmp.x",
                                           "other.bin.tmp." + std::to_string(dead)};
    for (const std::string& n : kept) pompc::io::write_file_atomic(dir.file(n), "keep");
    pompc::io::write_file_atomic(dir.file(stale), "stale");
    pompc::io::write_file_atomic(p, "new");
    CHECK(pompc::io::read_file(p) == "new");
    CHECK_FALSE(pompc::io::path_exists(dir.file(stale)));
    for (const std::string& n : kept) CHECK(pompc::io::path_exists(dir.file(n)));
    CHECK(pompc::io::remove_stale_temp_files(p) == 0);
  }
}
