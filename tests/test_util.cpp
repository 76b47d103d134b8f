// Implementation of tests/test_util.h.
#include "test_util.h"

#include "philox.cuh"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <map>

extern char** environ;

namespace pompc::test {

std::vector<float> normals(size_t n, uint64_t seed, float scale, float shift) {
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) x[i] = shift + scale * philox_normal(seed, 0, i);
  return x;
}

bool check_close(const char* what, const float* got, const float* ref, size_t n, double atol,
                 double rtol) {
  double max_abs = 0, max_rel = 0;
  size_t bad = 0;
  std::string first;
  for (size_t i = 0; i < n; ++i) {
    const double g = got[i], r = ref[i], d = std::fabs(g - r);
    const bool ok = d <= atol + rtol * std::fabs(r);  // false for NaN too
    if (d > max_abs || std::isnan(d)) max_abs = std::isnan(d) ? INFINITY : d;
    if (r != 0 && d / std::fabs(r) > max_rel) max_rel = d / std::fabs(r);
    if (!ok && bad++ < 5) {
      char buf[128];
      std::snprintf(buf, sizeof buf, "  [%zu] got %.9g ref %.9g\n", i, g, r);
      first += buf;
    }
  }
  if (bad)
    std::printf("%s: %zu of %zu mismatch (atol %g rtol %g); max abs %.3g max rel %.3g\n%s", what,
                bad, n, atol, rtol, max_abs, max_rel, first.c_str());
  return bad == 0;
}

static std::map<std::string, DeathFn>& death_registry() {
  static std::map<std::string, DeathFn> r;
  return r;
}

int register_death_scenario(const char* name, DeathFn fn) {
  death_registry()[name] = fn;
  return 0;
}

bool run_death_scenario_in_process(const std::string& name) {
  auto it = death_registry().find(name);
  if (it == death_registry().end()) return false;
  it->second();
  return true;
}

int run_death_scenario(const char* name, std::string* output) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  const std::string arg = std::string("--pompc-death=") + name;
  char exe[] = "/proc/self/exe";
  char* argv[] = {exe, const_cast<char*>(arg.c_str()), nullptr};
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, exe, &fa, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    return -1;
  }
  char buf[4096];
  ssize_t got;
  while ((got = read(fds[0], buf, sizeof buf)) > 0)
    if (output) output->append(buf, static_cast<size_t>(got));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

}  // namespace pompc::test
