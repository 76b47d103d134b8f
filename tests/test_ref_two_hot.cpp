// Discrete regression (src/ref/two_hot.h): symlog / symexp, two_hot targets (bins, clamping,
// the modulo-K wrap), the two_hot -> two_hot_inv round trip, soft_ce of a two-hot target, and
// the soft_ce / two_hot_inv backward against double central differences. K = 101 over [-10, 10].
//   build-ref/test_emu -ts=ops -tc='sym*,two_hot*,soft_ce*'
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "common.h"
#include "ref/basic.h"
#include "ref/two_hot.h"
#include "test_ref_fd.h"

using namespace pompc::test::fd;
using pompc::ref::Bins;

namespace {

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
  TEST_CASE("symlog / symexp: values, inverse pair, derivatives (0 at x == 0)") {
    using pompc::ref::symexp;
    using pompc::ref::symlog;
    CHECK(symlog(std::exp(1.0) - 1) == doctest::Approx(1.0).epsilon(1e-15));
    CHECK(symlog(-(std::exp(2.0) - 1)) == doctest::Approx(-2.0).epsilon(1e-15));
    CHECK(symexp(1.0) == doctest::Approx(std::exp(1.0) - 1).epsilon(1e-15));
    CHECK(symlog(0.0) == 0.0);
    CHECK(symexp(0.0) == 0.0);
    Rng rng(41);
    std::vector<double> x = {-2e4, -3.0, -0.01, 0.02, 0.7, 150.0, 9.5};
    int off = 0;
    for (double v : x) off += std::fabs(symexp(symlog(v)) - v) > 1e-12 * (1 + std::fabs(v));
    CHECK(off == 0);  // double round trip: a few ulp
    const std::vector<double> w = rng.vec(x.size(), -1, 1);
    std::vector<double> y(x.size());
    for (bool exp_form : {false, true}) {
      std::vector<double> xin = exp_form ? std::vector<double>{-3.0, -0.01, 0.02, 0.7, 5.0} : x;
      const std::vector<double> ww(w.begin(), w.begin() + static_cast<long>(xin.size()));
      y.resize(xin.size());
      auto f = [&] {
        if (exp_form)
          pompc::ref::symexp_forward<double>(y.data(), xin.data(),
                                             static_cast<int64_t>(xin.size()));
        else
          pompc::ref::symlog_forward<double>(y.data(), xin.data(),
                                             static_cast<int64_t>(xin.size()));
        return dot(ww, y);
      };
      const std::vector<double> d0 = rng.vec(xin.size(), -1, 1);
      std::vector<double> d = d0;
      if (exp_form)
        pompc::ref::symexp_backward<double>(d.data(), ww.data(), xin.data(),
                                            static_cast<int64_t>(xin.size()));
      else
        pompc::ref::symlog_backward<double>(d.data(), ww.data(), xin.data(),
                                            static_cast<int64_t>(xin.size()));
      CHECK(check_gradient(exp_form ? "symexp" : "symlog", xin, added(d, d0), f, rng));
    }
    double zero = 0, dz = 0, one = 1;
    pompc::ref::symlog_backward<double>(&dz, &one, &zero, 1);
    pompc::ref::symexp_backward<double>(&dz, &one, &zero, 1);
    CHECK(dz == 0.0);  // PyTorch's autograd of sign(x) * f(|x|) at exactly 0
  }

  TEST_CASE("two_hot: two neighbouring bins, weights sum to 1, interpolation, clamp and modulo") {
    const Bins bins;  // K = 101, [-10, 10]
    const int K = bins.num_bins;
    Rng rng(42);
    std::vector<double> x = rng.vec(200, -3e4, 3e4);
    for (double& v : rng.vec(200, -3, 3)) x.push_back(v);
    x.push_back(0.0);
    std::vector<double> t(x.size() * K);
    pompc::ref::two_hot_forward<double>(t.data(), x.data(), static_cast<int>(x.size()), bins);
    int bad = 0;
    for (size_t r = 0; r < x.size(); ++r) {
      const double* tr = t.data() + r * K;
      int nonzero = 0, first = -1;
      double sum = 0, interp = 0;
      for (int k = 0; k < K; ++k) {
        if (tr[k] != 0 && first < 0) first = k;
        nonzero += tr[k] != 0;
        sum += tr[k];
        interp += tr[k] * pompc::ref::bin_center<double>(bins, k);
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
    std::vector<float> xs = {1e6f, -1e6f, std::expm1(0.3f)}, ts(3 * K);
    pompc::ref::two_hot_forward<float>(ts.data(), xs.data(), 3, bins);
    CHECK(ts[K - 1] == 1.0f);
    CHECK(ts[0] == 0.0f);
    CHECK(ts[K] == 1.0f);
    CHECK(ts[2 * K + 51] == doctest::Approx(0.5).epsilon(1e-5));  // fp32 symlog / division
    CHECK(ts[2 * K + 52] == doctest::Approx(0.5).epsilon(1e-5));
    // The same wrap with other bins (K = 5 over [-1, 1]): the top bin gets 1 - f = 1 and the
    // write of f = 0 lands on bin (4 + 1) mod 5 = 0, not past the end.
    const Bins small{5, -1.0f, 1.0f};
    std::vector<double> top = {1e9}, tt(5);
    pompc::ref::two_hot_forward<double>(tt.data(), top.data(), 1, small);
    CHECK(tt == std::vector<double>{0, 0, 0, 0, 1});
  }

  TEST_CASE("two_hot_inv: round trip with two_hot (double exact, float to fp32 precision)") {
    const Bins bins;
    const int K = bins.num_bins;
    std::vector<double> x = {-2e4, -100, -3, -0.5, -1e-3, 0.0, 1e-3, 0.5, 3, 100, 2e4};
    Rng rng(43);
    for (double v : rng.vec(50, -5e3, 5e3)) x.push_back(v);
    const int n = static_cast<int>(x.size());
    std::vector<double> t(static_cast<size_t>(n) * K), back(n);
    pompc::ref::two_hot_forward<double>(t.data(), x.data(), n, bins);
    const std::vector<double> l = log_target(t);
    pompc::ref::two_hot_inv_forward<double>(back.data(), l.data(), n, bins);
    // double: floor 1e-300 leaks nothing measurable; rounding of y ~1e-15, times (1 + |x|)
    CHECK(close("two_hot_inv(two_hot(x)) double", back, x, 1e-12, 1e-11));
    const std::vector<float> xf = to_float(x);
    std::vector<float> tf(t.size()), backf(n);
    pompc::ref::two_hot_forward<float>(tf.data(), xf.data(), n, bins);
    const std::vector<float> lf = log_target(tf);
    pompc::ref::two_hot_inv_forward<float>(backf.data(), lf.data(), n, bins);
    // fp32 bin centres and weights near |y| <= 10 carry a few ulp(10) ~ 4e-6 of absolute error
    // in symlog space, which symexp scales by (1 + |x|): tolerance 5e-6 (1 + |x|).
    int bad = 0;
    for (int i = 0; i < n; ++i)
      if (!(std::fabs(backf[i] - xf[i]) <= 5e-6 * (1 + std::fabs(xf[i]))) && bad++ < 3)
        std::printf("float round trip: x %.8g -> %.8g\n", xf[i], backf[i]);
    CHECK(bad == 0);
    // Outside the bins the value saturates at symexp(vmax).
    double big = 1e9, inv = 0;
    std::vector<double> tb(K);
    pompc::ref::two_hot_forward<double>(tb.data(), &big, 1, bins);
    pompc::ref::two_hot_inv_forward<double>(&inv, log_target(tb).data(), 1, bins);
    CHECK(inv == doctest::Approx(std::expm1(10.0)).epsilon(1e-12));
  }

  TEST_CASE("soft_ce: equals -sum two_hot * log_softmax; at logits = log(target) it is H(target)") {
    const Bins bins;
    const int K = bins.num_bins, rows = 33;
    Rng rng(44);
    const std::vector<double> logits = rng.vec(static_cast<size_t>(rows) * K, -4, 4),
                              x = rng.vec(rows, -500, 500);
    std::vector<double> loss(rows), t(logits.size()), ls(logits.size()), want(rows, 0);
    pompc::ref::soft_ce_forward<double>(loss.data(), logits.data(), x.data(), rows, bins);
    pompc::ref::two_hot_forward<double>(t.data(), x.data(), rows, bins);
    pompc::ref::log_softmax_forward<double>(ls.data(), logits.data(), rows, K);
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
          pompc::ref::two_hot_inv_forward<double>(out.data(), logits.data(), rows, bins);
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
    pompc::ref::two_hot_inv_forward<float>(qf.data(), lf.data(), rows, bins);
    pompc::ref::two_hot_inv_forward<double>(qd.data(), ld.data(), rows, bins);
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
    CHECK_THROWS_AS(pompc::ref::two_hot_forward<float>(l.data(), x.data(), 2, bins), pompc::Error);
  }
}
