// The test runner of test_emu, test_gpu and bench (doctest).
//
//   build/test_emu                 every suite but bench, kernels run in the host emulation
//   build/test_emu -ts=model       one suite (emu, ops, model, planner, env, io, agent, e2e)
//   build/bench -ts=bench          the benchmarks (suite bench runs only when asked for)
//   build/test_gpu                 the same tests against the real kernels; fails at once (exit
//                                  1), saying why, when there is no GPU it can use
//   build/test_race                test_emu with the kernels under the race detector (suite race
//                                  and the kernel suites; tests/emu/internal.h)
//   <binary> train key=value ...   pompc train itself: the local sweep's tests start this
//                                  binary as their runs (the sweep's children are
//                                  `<this binary> train ...`), so they train as pompc does
// Test cases whose name contains "[gpu-only]" run only in test_gpu. The decision is made here,
// in main, because doctest's skip decorators are evaluated before main runs.
// The last line is "<binary>: N passed, M failed" (test cases), the form CI reads.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "ops.h"
#include "test_util.h"
#include "train/trainer.h"

#ifdef POMPC_CUDA
#include <cuda_runtime.h>
#endif

namespace {

#if defined(POMPC_EMU)
const char* const kBinary = "test_emu";  // test_race when the race detector is on (main)
#elif defined(POMPC_CUDA)
const char* const kBinary = "test_gpu";
#else
const char* const kBinary = "test";
#endif

// Counts test cases and, in the emulation build, those that launched at least one kernel.
struct Counter : doctest::IReporter {
  static inline unsigned passed = 0, failed = 0, launched_kernels = 0;
  static inline unsigned long long launches = 0;
  unsigned long long at_start = 0;

  explicit Counter(const doctest::ContextOptions&) {}
  static unsigned long long launch_count() {
#ifdef POMPC_EMU
    return emu::launch_count();
#else
    return 0;
#endif
  }
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_start(const doctest::TestCaseData&) override { at_start = launch_count(); }
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats& s) override {
    (s.testCaseSuccess ? passed : failed)++;
    const unsigned long long n = launch_count() - at_start;
    launches += n;
    if (n > 0) launched_kernels++;
  }
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};
REGISTER_LISTENER("pompc_counter", 1, Counter);

bool asks_for_suite(int argc, char** argv, const char* suite) {
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    if ((std::strncmp(a, "-ts=", 4) == 0 || std::strncmp(a, "--test-suite=", 13) == 0 ||
         std::strncmp(a, "-dt-ts=", 7) == 0) &&
        std::strstr(a, suite))
      return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "train") == 0) {
    try {
      pompc::train::train(std::vector<std::string>(argv + 2, argv + argc));
      return 0;
    } catch (const pompc::Error& e) {
      std::fprintf(stderr, "pompc train: error: %s\n", e.what());
      return 1;
    }
  }
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--pompc-death=", 14) == 0) {
      const std::string name = argv[i] + 14;
      if (!pompc::test::run_death_scenario_in_process(name)) {
        std::fprintf(stderr, "unknown death scenario '%s'\n", name.c_str());
        return 2;
      }
      return 0;  // survived: the parent's assertion fails
    }

#if defined(POMPC_CUDA) && !defined(POMPC_EMU)
  // Asked to run the tests on a GPU and there is none it can use: a failure, not a skip.
  std::string why;
  if (!pompc::cuda_ops_available(&why)) {
    std::printf("%s: FAILED: cannot run the tests on a GPU: %s (build/test_emu runs them in the "
                "host emulation)\n",
                kBinary, why.c_str());
    return 1;
  }
#endif

#ifdef POMPC_EMU
  const char* const binary = emu::race_detection() ? "test_race" : kBinary;
#else
  const char* const binary = kBinary;
#endif
  doctest::Context context;
  if (!asks_for_suite(argc, argv, "bench")) context.addFilter("test-suite-exclude", "bench");
#ifdef POMPC_EMU
  context.addFilter("test-case-exclude", "*[gpu-only]*");
#endif
  context.applyCommandLine(argc, argv);
  const int rc = context.run();
  if (context.shouldExit()) return rc;

#ifdef POMPC_EMU
  std::printf("%s: %u test cases ran emulated CUDA kernels (%llu launches)\n", binary,
              Counter::launched_kernels, Counter::launches);
#endif
  std::printf("%s: %u passed, %u failed\n", binary, Counter::passed, Counter::failed);
  return rc;
}
