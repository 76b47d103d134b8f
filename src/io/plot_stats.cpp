// src/io/plot_stats.cpp: mean / IQM curves and their bootstrap intervals (see plot_stats.h).
#include "io/plot_stats.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "common.h"
#include "philox.cuh"

namespace pompc::io {

namespace {

// Draw i of (seed, stream) is philox_u32(seed, stream, i): word i % 4 of block i / 4, each block
// computed once.
class Draws {
 public:
  Draws(uint64_t seed, uint64_t stream) : seed_(seed), stream_(stream) {}
  // A uniform index in [0, n).
  size_t index(size_t n) {
    if (i_ % 4 == 0) {
      const uint64_t blk = i_ / 4;
      block_ =
          philox4x32_10(u32x4{static_cast<uint32_t>(blk), static_cast<uint32_t>(blk >> 32),
                              static_cast<uint32_t>(stream_), static_cast<uint32_t>(stream_ >> 32)},
                        static_cast<uint32_t>(seed_), static_cast<uint32_t>(seed_ >> 32));
    }
    const uint32_t words[4] = {block_.x, block_.y, block_.z, block_.w};
    const uint32_t u = words[i_++ % 4];
    return static_cast<size_t>((static_cast<uint64_t>(u) * n) >> 32);
  }

 private:
  uint64_t seed_, stream_, i_ = 0;
  u32x4 block_{};
};

void check_settings(const BootstrapSettings& bs) {
  POMPC_REQUIRE(bs.level >= 0 && bs.level < 100,
                "confidence level ci=%g must be in [0, 100) percent (0 draws no bands)", bs.level);
  POMPC_REQUIRE(bs.level == 0 || bs.resamples >= 10,
                "resamples=%d is too few for a percentile interval: use at least 10 (2000 is the "
                "default)",
                bs.resamples);
}

// The interval of the sorted bootstrap statistics.
Interval percentile_interval(std::vector<double>& stats, double level) {
  std::sort(stats.begin(), stats.end());
  const double tail = (100 - level) / 200;
  return {quantile_sorted(stats, tail), quantile_sorted(stats, 1 - tail)};
}

// Each curve as step -> value (the later of two rows at one step).
std::vector<std::map<double, double>> by_step(const std::vector<Curve>& curves) {
  std::vector<std::map<double, double>> out;
  for (const Curve& c : curves) {
    POMPC_REQUIRE(c.x.size() == c.y.size(), "a curve has %zu steps and %zu values", c.x.size(),
                  c.y.size());
    std::map<double, double> m;
    for (size_t i = 0; i < c.x.size(); ++i) m[c.x[i]] = c.y[i];
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace

double mean_of(const std::vector<double>& v) {
  POMPC_REQUIRE(!v.empty(), "the mean of no values is undefined");
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

double quantile_sorted(const std::vector<double>& sorted, double q) {
  POMPC_REQUIRE(!sorted.empty(), "a quantile of no values is undefined");
  POMPC_REQUIRE(q >= 0 && q <= 1, "quantile %g must be in [0, 1]", q);
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const size_t k = static_cast<size_t>(std::floor(pos));
  if (k + 1 >= sorted.size()) return sorted.back();
  return sorted[k] + (pos - static_cast<double>(k)) * (sorted[k + 1] - sorted[k]);
}

double iqm(std::vector<double> v) {
  POMPC_REQUIRE(!v.empty(), "the IQM of no values is undefined");
  std::sort(v.begin(), v.end());
  const double n = static_cast<double>(v.size());
  double sum = 0, weight = 0;
  for (size_t k = 0; k < v.size(); ++k) {
    // Overlap of [k/n, (k+1)/n) with [1/4, 3/4], in units of 1/n.
    const double lo = std::max(static_cast<double>(k), n / 4);
    const double hi = std::min(static_cast<double>(k + 1), 3 * n / 4);
    if (hi <= lo) continue;
    sum += (hi - lo) * v[k];
    weight += hi - lo;
  }
  return sum / weight;
}

Interval bootstrap_mean_ci(const std::vector<double>& v, const BootstrapSettings& bs,
                           uint64_t stream) {
  check_settings(bs);
  const double m = mean_of(v);
  if (bs.level == 0 || v.size() < 2) return {m, m};
  Draws draws(bs.seed, stream);
  std::vector<double> stats(static_cast<size_t>(bs.resamples));
  for (double& s : stats) {
    double sum = 0;
    for (size_t j = 0; j < v.size(); ++j) sum += v[draws.index(v.size())];
    s = sum / static_cast<double>(v.size());
  }
  return percentile_interval(stats, bs.level);
}

Interval stratified_bootstrap_iqm_ci(const std::vector<std::vector<double>>& per_task,
                                     const BootstrapSettings& bs, uint64_t stream) {
  check_settings(bs);
  std::vector<double> pooled;
  for (const auto& t : per_task) {
    POMPC_REQUIRE(!t.empty(), "a task without values in the stratified bootstrap");
    pooled.insert(pooled.end(), t.begin(), t.end());
  }
  const double center = iqm(pooled);
  if (bs.level == 0) return {center, center};
  Draws draws(bs.seed, stream);
  std::vector<double> stats(static_cast<size_t>(bs.resamples));
  for (double& s : stats) {
    pooled.clear();
    for (const auto& t : per_task)
      for (size_t j = 0; j < t.size(); ++j) pooled.push_back(t[draws.index(t.size())]);
    s = iqm(pooled);
  }
  return percentile_interval(stats, bs.level);
}

BandCurve mean_curve(const std::vector<Curve>& seeds, const BootstrapSettings& bs) {
  check_settings(bs);
  const auto maps = by_step(seeds);
  std::map<double, std::vector<double>> grid;  // step -> the values of the seeds that have it
  for (const auto& m : maps)
    for (const auto& [x, y] : m) grid[x].push_back(y);
  BandCurve out;
  uint64_t stream = 0;
  for (const auto& [x, values] : grid) {
    const Interval ci = bootstrap_mean_ci(values, bs, stream++);
    out.x.push_back(x);
    out.center.push_back(mean_of(values));
    out.lo.push_back(ci.lo);
    out.hi.push_back(ci.hi);
    out.n.push_back(static_cast<int>(values.size()));
  }
  return out;
}

BandCurve iqm_curve(const std::vector<std::vector<Curve>>& tasks, const BootstrapSettings& bs) {
  check_settings(bs);
  std::vector<std::vector<std::map<double, double>>> maps;
  std::map<double, size_t> tasks_at;  // step -> how many tasks have a seed there
  for (const auto& t : tasks) {
    maps.push_back(by_step(t));
    std::map<double, bool> steps;
    for (const auto& m : maps.back())
      for (const auto& xy : m) steps[xy.first] = true;
    for (const auto& xy : steps) ++tasks_at[xy.first];
  }
  BandCurve out;
  uint64_t index = 0;
  for (const auto& [x, count] : tasks_at) {
    const uint64_t stream = (uint64_t{1} << 32) + index++;
    if (count < tasks.size()) continue;
    std::vector<std::vector<double>> per_task;
    int n = 0;
    for (const auto& t : maps) {
      per_task.emplace_back();
      for (const auto& m : t)
        if (auto it = m.find(x); it != m.end()) per_task.back().push_back(it->second);
      n += static_cast<int>(per_task.back().size());
    }
    const Interval ci = stratified_bootstrap_iqm_ci(per_task, bs, stream);
    std::vector<double> pooled;
    for (const auto& v : per_task) pooled.insert(pooled.end(), v.begin(), v.end());
    out.x.push_back(x);
    out.center.push_back(iqm(pooled));
    out.lo.push_back(ci.lo);
    out.hi.push_back(ci.hi);
    out.n.push_back(n);
  }
  return out;
}

}  // namespace pompc::io
