// src/io/plot_stats: the percentile bootstrap interval (known cases and coverage), the IQM with
// fractional weights, the stratified bootstrap and the step grid (suite io).
//
//   build/test_emu -ts=io -tc='*bootstrap*,*IQM*,*grid*'
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "io/plot_stats.h"
#include "test_util.h"

using namespace pompc::io;
using pompc::test::error_of;

TEST_SUITE("io") {
  TEST_CASE("plot bootstrap: equal seeds give a zero-width band; a band holds the mean") {
    const BootstrapSettings bs;
    const Interval same = bootstrap_mean_ci({412.5, 412.5, 412.5, 412.5}, bs, 0);
    CHECK(same.lo == 412.5);
    CHECK(same.hi == 412.5);

    const std::vector<double> v = {120, 340, 95, 610, 280, 455};
    const double m = mean_of(v);
    const Interval ci = bootstrap_mean_ci(v, bs, 7);
    CHECK(ci.lo < m);
    CHECK(m < ci.hi);
    CHECK(ci.lo >= 95);
    CHECK(ci.hi <= 610);
    // About mean +- 1.96 standard errors (the bootstrap's: the sd with divisor n, over sqrt(n)).
    double var = 0;
    for (double x : v) var += (x - m) * (x - m) / static_cast<double>(v.size());
    const double se = std::sqrt(var / static_cast<double>(v.size()));
    CHECK(ci.hi - ci.lo == doctest::Approx(2 * 1.96 * se).epsilon(0.15));
    // Reproducible for one stream; another stream draws other resamples.
    const Interval again = bootstrap_mean_ci(v, bs, 7), other = bootstrap_mean_ci(v, bs, 8);
    CHECK(again.lo == ci.lo);
    CHECK(again.hi == ci.hi);
    CHECK((other.lo != ci.lo || other.hi != ci.hi));

    // Two seeds: the resampled means are a, (a+b)/2, b with odds 1/4, 1/2, 1/4, so the 2.5% and
    // 97.5% percentiles are the two values.
    const Interval two = bootstrap_mean_ci({200, 600}, bs, 3);
    CHECK(two.lo == 200);
    CHECK(two.hi == 600);
    // One value, or level 0: no interval.
    const Interval one = bootstrap_mean_ci({5}, bs, 0);
    CHECK((one.lo == 5 && one.hi == 5));
    BootstrapSettings off;
    off.level = 0;
    const Interval none = bootstrap_mean_ci(v, off, 0);
    CHECK((none.lo == m && none.hi == m));

    BootstrapSettings bad;
    bad.level = 100;
    CHECK(error_of([&] { bootstrap_mean_ci(v, bad, 0); }).find("must be in [0, 100)") !=
          std::string::npos);
    bad = {};
    bad.resamples = 5;
    CHECK(error_of([&] { bootstrap_mean_ci(v, bad, 0); }).find("at least 10") != std::string::npos);
    CHECK(error_of([&] { bootstrap_mean_ci({}, bs, 0); }).find("no values") != std::string::npos);
  }

  TEST_CASE(
      "plot bootstrap: the percentile interval covers the true mean about as often as it says") {
    // 200 samples of 20 draws from N(3, 2^2) (Philox, fixed seeds). The 95% interval should hold
    // 3 in about 93% of them (the percentile bootstrap runs a little narrow at n = 20), the 50%
    // interval in about half.
    BootstrapSettings b95;
    b95.resamples = 500;
    BootstrapSettings b50 = b95;
    b50.level = 50;
    const int trials = 200;
    int hit95 = 0, hit50 = 0;
    for (int t = 0; t < trials; ++t) {
      const std::vector<float> f = pompc::test::normals(20, 1000 + t, 2.0f, 3.0f);
      const std::vector<double> v(f.begin(), f.end());
      const Interval a = bootstrap_mean_ci(v, b95, t), b = bootstrap_mean_ci(v, b50, t);
      hit95 += a.lo <= 3 && 3 <= a.hi;
      hit50 += b.lo <= 3 && 3 <= b.hi;
    }
    MESSAGE("95% interval covered the mean in " << hit95 << " of " << trials << ", 50% in "
                                                << hit50);
    CHECK(hit95 >= 0.88 * trials);
    CHECK(hit95 <= 0.98 * trials);
    CHECK(hit50 >= 0.38 * trials);
    CHECK(hit50 <= 0.60 * trials);
  }

  TEST_CASE("plot IQM: the middle half, with fractional weights at the quartiles") {
    CHECK(iqm({1, 2, 3, 4, 5, 6, 7, 8}) == doctest::Approx(4.5));     // the mean of 3, 4, 5, 6
    CHECK(iqm({8, 1, 7, 2, 6, 3, 5, 4}) == doctest::Approx(4.5));     // in any order
    CHECK(iqm({1, 2, 3, 4, 5, 6, 7, 1000}) == doctest::Approx(4.5));  // outliers do not count
    CHECK(iqm({1, 1, 1, 5, 6, 9, 9, 9, 9, 9, 9, 9}) ==
          doctest::Approx((5 + 6 + 9 + 9 + 9 + 9) / 6.0));
    // n = 5: weights 0, 3/4, 1, 3/4, 0 (scipy's trim_mean(v, 0.25) would give (2 + 4 + 8) / 3).
    CHECK(iqm({1, 2, 4, 8, 100}) == doctest::Approx((0.75 * 2 + 4 + 0.75 * 8) / 2.5));
    // n = 3: weights 1/4, 1, 1/4.
    CHECK(iqm({0, 10, 100}) == doctest::Approx((10 + 25) / 1.5));
    CHECK(iqm({7}) == 7);
    CHECK(iqm({2, 10}) == doctest::Approx(6));
    CHECK(error_of([] { iqm({}); }).find("no values") != std::string::npos);

    CHECK(quantile_sorted({1, 2, 3, 4}, 0) == 1);
    CHECK(quantile_sorted({1, 2, 3, 4}, 1) == 4);
    CHECK(quantile_sorted({1, 2, 3, 4}, 0.5) == doctest::Approx(2.5));
    CHECK(quantile_sorted({1, 2, 3, 4}, 1.0 / 3) == doctest::Approx(2));
  }

  TEST_CASE("plot IQM: the stratified bootstrap resamples seeds within each task") {
    const BootstrapSettings bs;
    // Seeds agree within each task: every stratified resample is the same pool, so the band has
    // no width (resampling the pool as a whole would mix the tasks and give one).
    const std::vector<std::vector<double>> agree = {
        {100, 100, 100}, {500, 500}, {900, 900, 900, 900}};
    const double center = iqm({100, 100, 100, 500, 500, 900, 900, 900, 900});
    const Interval z = stratified_bootstrap_iqm_ci(agree, bs, 0);
    CHECK(z.lo == doctest::Approx(center));
    CHECK(z.hi == doctest::Approx(center));
    // Spread within tasks: a band around the IQM.
    const std::vector<std::vector<double>> spread = {
        {80, 120, 100}, {450, 560}, {850, 930, 910, 870}};
    const double c2 = iqm({80, 120, 100, 450, 560, 850, 930, 910, 870});
    const Interval w = stratified_bootstrap_iqm_ci(spread, bs, 0);
    CHECK(w.lo < c2);
    CHECK(c2 < w.hi);
    CHECK(w.hi - w.lo > 20);
    CHECK(w.hi - w.lo < 400);  // the between-task spread (100 .. 900) is not resampled
    CHECK(error_of([&] {
            stratified_bootstrap_iqm_ci({{1}, {}}, bs, 0);
          }).find("a task without values") != std::string::npos);
  }

  TEST_CASE("plot grid: curves aligned on eval steps, a seed missing a step left out there") {
    const BootstrapSettings bs;
    const Curve a{{0, 10, 20}, {100, 200, 300}};
    const Curve b{{10, 0}, {400, 300}};         // rows out of order, no step 20
    const Curve c{{0, 10, 10}, {500, 1, 600}};  // step 10 twice: the later row counts
    const BandCurve m = mean_curve({a, b, c}, bs);
    CHECK(m.x == std::vector<double>{0, 10, 20});
    CHECK(m.n == std::vector<int>{3, 3, 1});
    CHECK(m.center[0] == doctest::Approx(300));
    CHECK(m.center[1] == doctest::Approx(400));
    CHECK(m.center[2] == 300);  // seed a alone
    CHECK((m.lo[2] == 300 && m.hi[2] == 300));
    CHECK((m.lo[1] < 400 && 400 < m.hi[1]));

    // The IQM over tasks stops at the last step that every task reached.
    const BandCurve q = iqm_curve({{a, b}, {Curve{{0, 10}, {700, 800}}}}, bs);
    CHECK(q.x == std::vector<double>{0, 10});
    CHECK(q.n == std::vector<int>{3, 3});
    CHECK(q.center[0] == doctest::Approx(iqm({100, 300, 700})));
    CHECK(q.center[1] == doctest::Approx(iqm({200, 400, 800})));
    CHECK((q.lo[0] <= q.center[0] && q.center[0] <= q.hi[0]));
    CHECK(iqm_curve({{a}, {}}, bs).x.empty());
  }
}
