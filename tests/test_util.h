// Shared test helpers: array comparison with a report, death scenarios, problem sizes.
//
// check_close(what, got, ref, n, atol, rtol): every element must satisfy
// |got - ref| <= atol + rtol * |ref|; on failure it prints the max abs/rel error and the first
// mismatches, so a failing parity test says where and by how much.
//
// POMPC_DEATH_SCENARIO(name) { ... } registers code that is expected to kill the process (an
// AddressSanitizer report, an abort). run_death_scenario(name, &out) re-runs the test binary as
// `<exe> --pompc-death=name` in a child process, returns its exit status (128 + signal when
// killed by a signal) and its stdout+stderr in out.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common.h"
#include "ops.h"

namespace pompc::test {

// n reproducible draws shift + scale * N(0, 1) (Philox: seed, offset 0).
std::vector<float> normals(size_t n, uint64_t seed, float scale, float shift = 0.0f);

// A typed array in a backend's memory, filled from and read back to the host through the Ops
// interface (so its copies are ordered with the backend's ops).
template <typename T>
struct BackendArray {
  Ops& ops;
  T* p;
  size_t n;
  BackendArray(Ops& o, size_t count) : ops(o), p(o.alloc<T>(count ? count : 1)), n(count) {}
  BackendArray(Ops& o, const std::vector<T>& host) : BackendArray(o, host.size()) { put(host); }
  ~BackendArray() { ops.free_bytes(p); }
  BackendArray(const BackendArray&) = delete;
  BackendArray& operator=(const BackendArray&) = delete;
  void put(const std::vector<T>& host) {
    ops.copy_to_backend(p, host.data(), host.size() * sizeof(T));
  }
  std::vector<T> get() const {
    std::vector<T> host(n);
    ops.copy_to_host(host.data(), p, n * sizeof(T));
    return host;
  }
};

// Returns true when all n elements match; prints a report (and fails nothing by itself: wrap it
// in CHECK(...)).
bool check_close(const char* what, const float* got, const float* ref, size_t n, double atol,
                 double rtol);
inline bool check_close(const char* what, const std::vector<float>& got,
                        const std::vector<float>& ref, double atol, double rtol) {
  if (got.size() != ref.size()) return false;
  return check_close(what, got.data(), ref.data(), got.size(), atol, rtol);
}

// The message of the pompc::Error that fn throws, or "" when it throws none.
template <class F>
std::string error_of(F&& fn) {
  try {
    fn();
  } catch (const pompc::Error& e) {
    return e.what();
  }
  return "";
}

using DeathFn = void (*)();
int register_death_scenario(const char* name, DeathFn fn);
int run_death_scenario(const char* name, std::string* output);
// Used by main(): runs the scenario named by --pompc-death=NAME; returns false if unknown.
bool run_death_scenario_in_process(const std::string& name);

}  // namespace pompc::test

#define POMPC_DEATH_CAT2(a, b) a##b
#define POMPC_DEATH_CAT(a, b) POMPC_DEATH_CAT2(a, b)
#define POMPC_DEATH_SCENARIO(name)                                                      \
  static void POMPC_DEATH_CAT(pompc_death_, name)();                                    \
  [[maybe_unused]] static const int POMPC_DEATH_CAT(pompc_death_reg_, name) =           \
      ::pompc::test::register_death_scenario(#name, POMPC_DEATH_CAT(pompc_death_, name)); \
  static void POMPC_DEATH_CAT(pompc_death_, name)()
