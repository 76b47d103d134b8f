// Discrete regression (src/ref/two_hot.h): symlog / symexp, the two-hot targets soft_ce trains
// towards (bins, clamping, the modulo-K wrap), the two_hot -> two_hot_inv round trip, soft_ce of
// a two-hot target, and the soft_ce / two_hot_inv backward against double central differences.
// K = 101 over [-10, 10].
//   build/test_emu -ts=ops -tc='sym*,two_hot*,soft_ce*'
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common.h"
#include "ref/two_hot.h"
#include "test_ref_fd.h"

using namespace pompc::test::fd;
using pompc::Bins;

namespace {

// two_hot(x) of src/ref/two_hot.h as rows of K, computed in T as soft_ce computes its two
// non-zero entries (the tests' oracle: the product never materialises the rows).
template <typename T>
std::vector<T> two_hot(const std::vector<T>& x, const Bins& b) {
  const int K = b.num_bins;
  const T lo = static_cast<T>(b.vmin), hi = static_cast<T>(b.vmax);
  const T bin_size =
      static_cast<T>((static_cast<double>(b.vmax) - static_cast<double>(b.vmin)) / (K - 1));
  std::vector<T> t(x.size() * K, T(0));
  for (size_t r = 0; r < x.size(); ++r) {
    const T y = std::min(std::max(pompc::ref::symlog(x[r]), lo), hi);
    const T pos = (y - lo) / bin_size, k = std::floor(pos);
    const int k0 = std::min(std::max(static_cast<int>(k), 0), K - 1);
    t[r * K + k0] = T(1) - (pos - k);
    t[r * K + (k0 + 1) % K] = pos - k;  // the second write wins (y = vmax: f = 0 on bin 0)
  }
  return t;
}

// soft_ce's gradient at uniform logits (p_k = 1 / K) with dloss = 1 is p sum_j t_j - t_k for its
// target t: the largest |dlogits_k - (p sum_j t_j - t_k)| with the oracle's t says whether
// soft_ce trains towards exactly that target, entry by entry.
template <typename T>
double soft_ce_target_err(const std::vector<T>& x, const std::vector<T>& t, const Bins& b) {
  const int K = b.num_bins, rows = static_cast<int>(x.size());
  const std::vector<T> logits(t.size(), T(0)), ones(x.size(), T(1));
  std::vector<T> d(t.size(), T(0));
  pompc::ref::soft_ce_backward<T>(d.data(), ones.data(), logits.data(), x.data(), rows, b);
  double worst = 0;
  for (int r = 0; r < rows; ++r) {
    double tsum = 0;
    for (int k = 0; k < K; ++k) tsum += t[static_cast<size_t>(r) * K + k];
    for (int k = 0; k < K; ++k) {
      const size_t i = static_cast<size_t>(r) * K + k;
      worst = std::max(worst, std::fabs(double(d[i]) - (tsum / K - double(t[i]))));
    }
  }
  return worst;
}

// log_softmax of rows of C, in double: the oracle of soft_ce's composition.
std::vector<double> log_softmax(const std::vector<double>& x, int C) {
  std::vector<double> y(x.size());
  for (size_t r = 0; r < x.size() / C; ++r) {
    const double* xr = x.data() + r * C;
    const double mx = *std::max_element(xr, xr + C);
    double s = 0;
    for (int c = 0; c < C; ++c) s += std::exp(xr[c] - mx);
    for (int c = 0; c < C; ++c) y[r * C + c] = xr[c] - mx - std::log(s);
  }
  return y;
}

// log of a two-hot target with zeros floored at 1e-300 (double) or mapped to -inf (float):
// logits whose softmax is exactly that target.
template <typename T>
std::vector<T> log_target(const std::vector<T>& t) {
  std::vector<T> l(t.size());
  for (size_t i = 0; i < t.size(); ++i)
    l[i] = t[i] > T(0)
               ? std::log(t[i])
               : (sizeof(T) == 8 ? T(std::log(1e-300)) : -std::numeric_limits<T>::infinity());
  return l;
}

}  // namespace

TEST_SUITE("ops") {
  TEST_CASE("symlog / symexp: values and the inverse pair") {
    using pompc::ref::symexp;
    using pompc::ref::symlog;
    CHECK(symlog(std::exp(1.0) - 1) == doctest::Approx(1.0).epsilon(1e-15));
    CHECK(symlog(-(std::exp(2.0) - 1)) == doctest::Approx(-2.0).epsilon(1e-15));
    CHECK(symexp(1.0) == doctest::Approx(std::exp(1.0) - 1).epsilon(1e-15));
    CHECK(symlog(0.0) == 0.0);
    CHECK(symexp(0.0) == 0.0);
    std::vector<double> x = {-2e4, -3.0, -0.01, 0.02, 0.7, 150.0, 9.5};
    int off = 0;
    for (double v : x) off += std::fabs(symexp(symlog(v)) - v) > 1e-12 * (1 + std::fabs(v));
    CHECK(off == 0);  // double round trip: a few ulp
  }

  TEST_CASE(
      "two_hot: two neighbouring bins, weights sum to 1, interpolation, clamp and modulo; "
      "soft_ce's own targets") {
    const Bins bins;  // K = 101, [-10, 10]
    const int K = bins.num_bins;
    Rng rng(42);
    std::vector<double> x = rng.vec(200, -3e4, 3e4);
    for (double& v : rng.vec(200, -3, 3)) x.push_back(v);
    x.push_back(0.0);
    const std::vector<double> t = two_hot(x, bins);
    CHECK(soft_ce_target_err(x, t, bins) < 1e-15);  // double roundings of p sum_j t_j - t_k
    int bad = 0;
    for (size_t r = 0; r < x.size(); ++r) {
      const double* tr = t.data() + r * K;
      int nonzero = 0, first = -1;
      double sum = 0, interp = 0;
      for (int k = 0; k < K; ++k) {
        if (tr[k] != 0 && first < 0) first = k;
        nonzero += tr[k] != 0;
        sum += tr[k];
        interp += tr[k] * pompc::bin_center<double>(bins, k);
      }
      const double y = std::min(10.0, std::max(-10.0, pompc::ref::symlog(x[r])));
      const bool neighbours = nonzero == 1 || (nonzero == 2 && tr[first + 1] != 0);
      // sum t_k bin_k = y exactly in real arithmetic; double rounding ~1e-14
      if (!(neighbours && std::fabs(sum - 1) < 1e-14 && std::fabs(interp - y) < 1e-12) && bad++ < 3)
        std::printf("two_hot(%g): %d non-zero from %d, sum %.17g, interp %.17g vs %.17g\n", x[r],
                    nonzero, first, sum, interp, y);
    }
    CHECK(bad == 0);
    // Clamping: far above vmax -> all mass on bin K-1 (bin 0 gets the modulo write of f = 0);
    // far below vmin -> all on bin 0. symlog(x) = 0.3 exactly between bins 51 and 52.
    const std::vector<float> xs = {1e6f, -1e6f, std::expm1(0.3f)}, ts = two_hot(xs, bins);
    CHECK(soft_ce_target_err(xs, ts, bins) < 1e-6);  // fp32 roundings of values <= 1
    CHECK(ts[K - 1] == 1.0f);
    CHECK(ts[0] == 0.0f);
    CHECK(ts[K] == 1.0f);
    CHECK(ts[2 * K + 51] == doctest::Approx(0.5).epsilon(1e-5));  // fp32 symlog / division
    CHECK(ts[2 * K + 52] == doctest::Approx(0.5).epsilon(1e-5));
    // The same wrap with other bins (K = 5 over [-1, 1]): the top bin gets 1 - f = 1 and the
    // write of f = 0 lands on bin (4 + 1) mod 5 = 0, not past the end.
    const Bins small{5, -1.0f, 1.0f};
    const std::vector<double> top = {1e9}, tt = two_hot(top, small);
    CHECK(tt == std::vector<double>{0, 0, 0, 0, 1});
    CHECK(soft_ce_target_err(top, tt, small) < 1e-15);
  }

  TEST_CASE("two_hot_inv: round trip with two_hot (double exact, float to fp32 precision)") {
    const Bins bins;
    std::vector<double> x = {-2e4, -100, -3, -0.5, -1e-3, 0.0, 1e-3, 0.5, 3, 100, 2e4};
    Rng rng(43);
    for (double v : rng.vec(50, -5e3, 5e3)) x.push_back(v);
    const int n = static_cast<int>(x.size());
    std::vector<double> back(n);
    const std::vector<double> l = log_target(two_hot(x, bins));
    pompc::ref::two_hot_inv_forward<double>(back.data(), l.data(), nullptr, n, bins);
    // double: floor 1e-300 leaks nothing measurable; rounding of y ~1e-15, times (1 + |x|)
    CHECK(close("two_hot_inv(two_hot(x)) double", back, x, 1e-12, 1e-11));
    const std::vector<float> xf = to_float(x);
    std::vector<float> backf(n);
    const std::vector<float> lf = log_target(two_hot(xf, bins));
    pompc::ref::two_hot_inv_forward<float>(backf.data(), lf.data(), nullptr, n, bins);
    // fp32 bin centres and weights near |y| <= 10 carry a few ulp(10) ~ 4e-6 of absolute error
    // in symlog space, which symexp scales by (1 + |x|): tolerance 5e-6 (1 + |x|).
    int bad = 0;
    for (int i = 0; i < n; ++i)
      if (!(std::fabs(backf[i] - xf[i]) <= 5e-6 * (1 + std::fabs(xf[i]))) && bad++ < 3)
        std::printf("float round trip: x %.8g -> %.8g\n", xf[i], backf[i]);
    CHECK(bad == 0);
    // Outside the bins the value saturates at symexp(vmax).
    double inv = 0;
    const std::vector<double> lb = log_target(two_hot<double>({1e9}, bins));
    pompc::ref::two_hot_inv_forward<double>(&inv, lb.data(), nullptr, 1, bins);
    CHECK(inv == doctest::Approx(std::expm1(10.0)).epsilon(1e-12));
  }

  TEST_CASE("soft_ce: equals -sum two_hot * log_softmax; at logits = log(target) it is H(target)") {
    const Bins bins;
    const int K = bins.num_bins, rows = 33;
    Rng rng(44);
    const std::vector<double> logits = rng.vec(static_cast<size_t>(rows) * K, -4, 4),
                              x = rng.vec(rows, -500, 500);
    std::vector<double> loss(rows), want(rows, 0);
    pompc::ref::soft_ce_forward<double>(loss.data(), logits.data(), x.data(), rows, bins);
    const std::vector<double> t = two_hot(x, bins), ls = log_softmax(logits, K);
    for (int r = 0; r < rows; ++r)
      for (int k = 0; k < K; ++k)
        want[r] -= t[static_cast<size_t>(r) * K + k] * ls[static_cast<size_t>(r) * K + k];
    CHECK(close("soft_ce vs composition", loss, want, 1e-12, 1e-12));  // double, 101 terms
    // At logits = log(t): loss = entropy of the target, gradient softmax - t = 0.
    const std::vector<double> lt = log_target(t);
    pompc::ref::soft_ce_forward<double>(loss.data(), lt.data(), x.data(), rows, bins);
    std::vector<double> ent(rows, 0), grad(lt.size(), 0), ones(rows, 1.0);
    for (int r = 0; r < rows; ++r)
      for (int k = 0; k < K; ++k) {
        const double p = t[static_cast<size_t>(r) * K + k];
        if (p > 0) ent[r] -= p * std::log(p);
      }
    CHECK(close("soft_ce at its minimum", loss, ent, 1e-12, 1e-12));
    pompc::ref::soft_ce_backward<double>(grad.data(), ones.data(), lt.data(), x.data(), rows, bins);
    double gmax = 0;
    for (double g : grad) gmax = std::max(gmax, std::fabs(g));
    CHECK(gmax < 1e-12);
  }

  TEST_CASE("soft_ce / two_hot_inv: backward w.r.t. logits matches finite differences") {
    Rng rng(45);
    for (int K : {2, 33, 101})
      for (int rows : {1, 33}) {
        CAPTURE(K);
        CAPTURE(rows);
        const Bins bins{K, -10.0f, 10.0f};
        std::vector<double> logits = rng.vec(static_cast<size_t>(rows) * K, -3, 3);
        std::vector<double> x = rng.vec(rows, -200, 200);
        x[0] = 1e7;  // clamped to vmax: exercises the modulo-K wrap
        if (rows > 1) x[1] = 0.0;
        const std::vector<double> w = rng.vec(rows, -1, 1);
        std::vector<double> out(rows);
        auto ce = [&] {
          pompc::ref::soft_ce_forward<double>(out.data(), logits.data(), x.data(), rows, bins);
          return dot(w, out);
        };
        auto inv = [&] {
          pompc::ref::two_hot_inv_forward<double>(out.data(), logits.data(), nullptr, rows, bins);
          return dot(w, out);
        };
        const std::vector<double> d0 = rng.vec(logits.size(), -1, 1);
        std::vector<double> d = d0;
        pompc::ref::soft_ce_backward<double>(d.data(), w.data(), logits.data(), x.data(), rows,
                                             bins);
        CHECK(check_gradient("soft_ce dlogits", logits, added(d, d0), ce, rng, 200));
        d = d0;
        pompc::ref::two_hot_inv_backward<double>(d.data(), w.data(), logits.data(), rows, bins);
        CHECK(check_gradient("two_hot_inv dlogits", logits, added(d, d0), inv, rng, 200));
      }
  }

  TEST_CASE("soft_ce / two_hot_inv: float equals double at B = 256, K = 101") {
    const Bins bins;
    const int rows = 256, K = bins.num_bins;
    Rng rng(46);
    const std::vector<float> lf = to_float(rng.vec(static_cast<size_t>(rows) * K, -5, 5)),
                             xf = to_float(rng.vec(rows, -1e3, 1e3)),
                             wf = to_float(rng.vec(rows, -1, 1));
    const std::vector<double> ld = to_double(lf), xd = to_double(xf), wd = to_double(wf);
    std::vector<float> of(rows), gf(lf.size(), 0.0f), qf(rows), hf(lf.size(), 0.0f);
    std::vector<double> od(rows), gd(ld.size(), 0.0), qd(rows), hd(ld.size(), 0.0);
    pompc::ref::soft_ce_forward<float>(of.data(), lf.data(), xf.data(), rows, bins);
    pompc::ref::soft_ce_forward<double>(od.data(), ld.data(), xd.data(), rows, bins);
    pompc::ref::soft_ce_backward<float>(gf.data(), wf.data(), lf.data(), xf.data(), rows, bins);
    pompc::ref::soft_ce_backward<double>(gd.data(), wd.data(), ld.data(), xd.data(), rows, bins);
    pompc::ref::two_hot_inv_forward<float>(qf.data(), lf.data(), nullptr, rows, bins);
    pompc::ref::two_hot_inv_forward<double>(qd.data(), ld.data(), nullptr, rows, bins);
    pompc::ref::two_hot_inv_backward<float>(hf.data(), wf.data(), lf.data(), rows, bins);
    pompc::ref::two_hot_inv_backward<double>(hd.data(), wd.data(), ld.data(), rows, bins);
    // Elementwise fp32 roundings of O(1..10) values with sums accumulated in double: ~1e-6
    // relative; the target weights themselves differ by fp32 rounding of symlog(x) / 0.2f
    // (~1e-6 absolute), hence 1e-5 abs + 1e-5 rel.
    CHECK(close("soft_ce float", to_double(of), od, 1e-5, 1e-5));
    CHECK(close("soft_ce grad float", to_double(gf), gd, 1e-5, 1e-5));
    CHECK(close("two_hot_inv float", to_double(qf), qd, 1e-5, 1e-5));
    CHECK(close("two_hot_inv grad float", to_double(hf), hd, 1e-5, 1e-5));
  }

  TEST_CASE("two_hot: a NaN target throws pompc::Error naming the row") {
    const Bins bins;
    std::vector<float> x = {1.0f, std::numeric_limits<float>::quiet_NaN()}, l(2 * 101, 0.0f),
                       loss(2);
    CHECK_THROWS_WITH_AS(
        pompc::ref::soft_ce_forward<float>(loss.data(), l.data(), x.data(), 2, bins),
        doctest::Contains("x[1] is NaN"), pompc::Error);
    std::vector<float> dl(l.size(), 0.0f), dloss(2, 1.0f);
    CHECK_THROWS_WITH_AS(
        pompc::ref::soft_ce_backward<float>(dl.data(), dloss.data(), l.data(), x.data(), 2, bins),
        doctest::Contains("x[1] is NaN"), pompc::Error);
  }
}
