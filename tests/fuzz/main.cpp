// build/fuzz: the seeded mutation fuzzers of tests/fuzz/fuzz.h from the command line.
//
//   make fuzz                       every target, FUZZ_ITERS=200000 inputs each, FUZZ_SEED
//                                   (default: from the clock; printed) under ASan + UBSan
//   build/fuzz [TARGET...] [iters=N] [seed=N]
//                                   TARGET: json, safetensors, replay, config, config-args (all
//                                   when none is named); the same seed replays the same inputs
//   build/fuzz TARGET input=FILE    one saved input (fuzz-failure-<target>.bin,
//                                   fuzz-crash-<target>.bin) through the target, with a verdict
//
// A failed verdict prints the target, seed, iteration and input, writes the input to
// fuzz-failure-<target>.bin and exits 1. A sanitizer report aborts the process; a death callback
// first writes the input in flight to fuzz-crash-<target>.bin.
#include <fcntl.h>
#include <sanitizer/common_interface_defs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "common.h"
#include "fuzz.h"
#include "io/atomic_file.h"

namespace {

std::string g_input;       // the input being run
std::string g_crash_file;  // where the death callback writes it

void write_raw(const std::string& path, const std::string& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  if (::write(fd, bytes.data(), bytes.size()) < 0) std::perror(path.c_str());
  ::close(fd);
}

void on_sanitizer_death() {
  write_raw(g_crash_file, g_input);
  std::fprintf(stderr, "fuzz: the input in flight is in %s (build/fuzz TARGET input=%s)\n",
               g_crash_file.c_str(), g_crash_file.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t iters = 200000, seed = std::random_device{}() ^ uint64_t(::time(nullptr));
  std::string input;
  std::vector<std::string> names;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("iters=", 0) == 0)
      iters = std::strtoull(a.c_str() + 6, nullptr, 10);
    else if (a.rfind("seed=", 0) == 0)
      seed = std::strtoull(a.c_str() + 5, nullptr, 10);
    else if (a.rfind("input=", 0) == 0)
      input = a.substr(6);
    else
      names.push_back(a);
  }
  const std::vector<pompc::fuzz::Target> all = pompc::fuzz::targets();
  std::vector<const pompc::fuzz::Target*> chosen;
  for (const auto& t : all)
    if (names.empty() || std::find(names.begin(), names.end(), t.name) != names.end())
      chosen.push_back(&t);
  if (chosen.size() != (names.empty() ? all.size() : names.size())) {
    std::fprintf(stderr,
                 "fuzz: unknown target among the arguments; targets: json, safetensors, "
                 "replay, config, config-args; keys: iters=N seed=N input=FILE\n");
    return 2;
  }
  __sanitizer_set_death_callback(on_sanitizer_death);
  int status = 0;
  try {
    if (!input.empty()) {
      if (chosen.size() != 1) throw pompc::Error("input=FILE needs exactly one TARGET");
      g_crash_file = "fuzz-crash-" + chosen[0]->name + ".bin";
      g_input = pompc::io::read_file(input);
      const bool ok = pompc::fuzz::run_one(*chosen[0], g_input);
      std::printf("fuzz %s: %s %s\n", chosen[0]->name.c_str(), input.c_str(),
                  ok ? "accepted (oracles hold)" : "refused with pompc::Error");
    } else {
      std::printf("fuzz: seed %llu, %llu inputs per target (FUZZ_SEED=%llu make fuzz replays)\n",
                  static_cast<unsigned long long>(seed), static_cast<unsigned long long>(iters),
                  static_cast<unsigned long long>(seed));
      std::fflush(stdout);
      for (const pompc::fuzz::Target* t : chosen) {
        g_crash_file = "fuzz-crash-" + t->name + ".bin";
        const auto t0 = std::chrono::steady_clock::now();
        pompc::fuzz::Stats st;
        try {
          st = pompc::fuzz::run(*t, iters, seed, &g_input);
        } catch (const pompc::fuzz::Failure&) {
          write_raw("fuzz-failure-" + t->name + ".bin", g_input);
          std::fprintf(stderr, "fuzz: the input is in fuzz-failure-%s.bin\n", t->name.c_str());
          throw;
        }
        const double s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf(
            "fuzz %-12s %llu inputs: %llu accepted (oracles hold), %llu refused with "
            "pompc::Error; %.1f s\n",
            t->name.c_str(), static_cast<unsigned long long>(st.inputs),
            static_cast<unsigned long long>(st.accepted),
            static_cast<unsigned long long>(st.refused), s);
        std::fflush(stdout);
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz: FAILED: %s\n", e.what());
    status = 1;
  }
  return status;
}
