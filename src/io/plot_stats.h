// src/io/plot_stats.h: the statistics drawn by `pompc plot`: mean curves over seeds with
// percentile bootstrap confidence intervals, and the interquartile mean (IQM) over tasks with a
// stratified bootstrap interval (Agarwal et al. 2021, "Deep RL at the edge of the statistical
// precipice").
//
// Run book
//   step grid            the curves of one group (one method on one task, one curve per seed)
//                        are aligned on their eval steps: the grid is the sorted union of the
//                        seeds' env_step values, and at each step the seeds that logged it
//                        contribute (a seed missing a step is left out there, not interpolated;
//                        n[i] says how many were used). A seed with two rows at one step
//                        contributes the later row.
//   mean and CI          mean_curve: at each step the mean over the seeds present and, when at
//                        least 2 are, the percentile bootstrap interval: `resamples` times draw
//                        n of the n values with replacement, take the mean; the interval is the
//                        (100 - level)/2 and (100 + level)/2 percentiles of those means
//                        (quantile_sorted: linear interpolation between order statistics, as
//                        numpy's default). With 1 seed, or level 0, lo = hi = the mean.
//   IQM                  iqm(v): the mean of the middle half of the sorted values, with
//                        fractional weights at the quartiles: value k of n (0-based, sorted)
//                        stands for the quantile interval [k/n, (k+1)/n), weighted by its
//                        overlap with [1/4, 3/4], and the weights (summing to n/2) average the
//                        values. When 4 divides n this is the mean of values n/4 .. 3n/4 - 1
//                        (scipy.stats.trim_mean(v, 0.25), which rliable uses); otherwise the
//                        two boundary values count in part (n = 5: weights 0, 3/4, 1, 3/4, 0),
//                        so the statistic moves smoothly as runs are added. n = 1, 2: the mean.
//   aggregate            iqm_curve over tasks (one entry per task, each with its seeds' curves):
//                        a step is on the grid when every task has at least one seed there (the
//                        aggregate stops where the shortest task stops, so it never mixes
//                        different sets of tasks); the centre is the IQM of all runs x tasks at
//                        that step, the interval a stratified bootstrap: each resample draws,
//                        within every task, as many of its values as it has, with replacement,
//                        and takes the IQM of the pooled draws.
//   randomness           Philox4x32-10 (kernels/philox.cuh) with the fixed seed of
//                        BootstrapSettings and one stream per grid step (the step's index, plus
//                        2^32 for the IQM), so a figure is reproducible and a group's band does
//                        not depend on which other groups are drawn. Draw i of a stream is
//                        philox_u32(seed, stream, i); an index in [0, n) is (u32 * n) >> 32 (bias
//                        below n / 2^32).
//   tests                build/test_emu -ts=io -tc='*bootstrap*,*IQM*,*grid*'
#pragma once

#include <cstdint>
#include <vector>

namespace pompc::io {

struct BootstrapSettings {
  double level = 95;             // confidence level in percent, in [0, 100); 0: no interval
  int resamples = 2000;          // bootstrap resamples per grid step (at least 10 when level > 0)
  uint64_t seed = 0x504C4F54ul;  // Philox seed ("PLOT"): fixed, so the same runs give one figure
};

struct Interval {
  double lo, hi;
};

struct Curve {
  std::vector<double> x, y;  // env steps (any order) and values, one per step
};

// A curve on a step grid with its interval and the number of values behind each step.
struct BandCurve {
  std::vector<double> x, center, lo, hi;
  std::vector<int> n;
};

double mean_of(const std::vector<double>& v);  // throws on an empty vector
// The q-quantile (q in [0, 1]) of sorted values, linear interpolation between order statistics.
double quantile_sorted(const std::vector<double>& sorted, double q);
double iqm(std::vector<double> v);  // throws on an empty vector

Interval bootstrap_mean_ci(const std::vector<double>& v, const BootstrapSettings& bs,
                           uint64_t stream);
// per_task[t]: the values of task t (each non-empty).
Interval stratified_bootstrap_iqm_ci(const std::vector<std::vector<double>>& per_task,
                                     const BootstrapSettings& bs, uint64_t stream);

BandCurve mean_curve(const std::vector<Curve>& seeds, const BootstrapSettings& bs);
// tasks[t]: the seeds' curves of task t (tasks without any point make the grid empty).
BandCurve iqm_curve(const std::vector<std::vector<Curve>>& tasks, const BootstrapSettings& bs);

}  // namespace pompc::io
