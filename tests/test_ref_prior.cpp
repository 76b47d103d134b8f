// The policy-prior divergences (src/ref/prior.h): every forward against hand-checked closed-form
// numbers and against an independent double formula (log-densities written out), the KL
// identities (zero on coincidence, reverse(p, q) == forward(q, p), forward KL == the weighted NLL
// gap on many prior samples), the weights' limits, the sampler's Philox indexing, clamp and
// moments, and every backward against double central differences, A in {1, 6, 21, 38}.
//   build/test_emu -ts=ops -tc='prior*'
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "common.h"
#include "philox.cuh"
#include "ref/prior.h"
#include "test_ref_fd.h"

using namespace pompc::test::fd;
using pompc::KlDir;

namespace {

constexpr double kHalfLog2Pi = 0.91893853320467274178;

// log N(x; m, s) = log(exp(-z^2 / 2) / (s sqrt(2 pi))), the normaliser as one logarithm.
double log_normal(double x, double m, double s) {
  const double z = (x - m) / s;
  return -0.5 * z * z - std::log(s * std::sqrt(2 * M_PI));
}

// KL(N(m1, s1) || N(m2, s2)) in its textbook form.
double kl_normal(double m1, double s1, double m2, double s2) {
  return std::log(s2 / s1) + (s1 * s1 + (m1 - m2) * (m1 - m2)) / (2 * s2 * s2) - 0.5;
}

// pi_theta and prior rows in the ranges the losses see: mu = tanh(.) in [-1, 1], log_std in
// BMPC's [-3, 1], mu_p in [-1, 1], sigma_p in the planner's [0.05, 2].
struct Gauss {
  std::vector<double> mu, log_std, mu_p, sigma_p;
};

Gauss make_gauss(Rng& rng, int rows, int A) {
  const size_t n = static_cast<size_t>(rows) * A;
  return {rng.vec(n, -1, 1), rng.vec(n, -3, 1), rng.vec(n, -1, 1), rng.vec(n, 0.05, 2)};
}

std::vector<double> kl(const Gauss& g, int rows, int A, KlDir dir) {
  std::vector<double> out(rows);
  pompc::ref::gauss_kl_forward<double>(out.data(), g.mu.data(), g.log_std.data(), g.mu_p.data(),
                                       g.sigma_p.data(), rows, A, dir);
  return out;
}

std::vector<double> nll(const std::vector<double>& a, const Gauss& g, int rows, int A,
                        float min_std) {
  std::vector<double> out(rows);
  pompc::ref::gauss_nll_forward<double>(out.data(), a.data(), g.mu_p.data(), g.sigma_p.data(), rows,
                                        A, min_std);
  return out;
}

std::vector<double> wnll(const std::vector<double>& a_k, const std::vector<double>& w,
                         const std::vector<double>& mu, const std::vector<double>& log_std, int S,
                         int rows, int A) {
  std::vector<double> out(rows);
  pompc::ref::weighted_nll_forward<double>(out.data(), a_k.data(), w.data(), mu.data(),
                                           log_std.data(), S, rows, A);
  return out;
}

// Random self-normalised weights [S, rows] (each row sums to 1).
std::vector<double> make_weights(Rng& rng, int S, int rows) {
  std::vector<double> w = rng.vec(static_cast<size_t>(S) * rows, 0.05, 1);
  for (int r = 0; r < rows; ++r) {
    double sum = 0;
    for (int k = 0; k < S; ++k) sum += w[static_cast<size_t>(k) * rows + r];
    for (int k = 0; k < S; ++k) w[static_cast<size_t>(k) * rows + r] /= sum;
  }
  return w;
}

}  // namespace

TEST_SUITE("ops") {
  TEST_CASE("prior: gauss_kl hand-checked values and the textbook formula, both directions") {
    // A = 1: KL(N(0, 1) || N(1, 2)) = log 2 + (1 + 1) / 8 - 1/2; KL(N(1, 2) || N(0, 1)) =
    // log(1/2) + (4 + 1) / 2 - 1/2.
    const std::vector<double> mu = {0.0}, ls = {0.0}, mp = {1.0}, sp = {2.0};
    double out = 0;
    pompc::ref::gauss_kl_forward<double>(&out, mu.data(), ls.data(), mp.data(), sp.data(), 1, 1,
                                         KlDir::reverse);
    CHECK(out == doctest::Approx(0.4431471805599453).epsilon(1e-15));
    pompc::ref::gauss_kl_forward<double>(&out, mu.data(), ls.data(), mp.data(), sp.data(), 1, 1,
                                         KlDir::forward);
    CHECK(out == doctest::Approx(1.3068528194400546).epsilon(1e-15));
    // A = 2 takes the mean over action dims: the first dim as above, the second coincides (0).
    const std::vector<double> mu2 = {0.0, 0.3}, ls2 = {0.0, std::log(0.7)}, mp2 = {1.0, 0.3},
                              sp2 = {2.0, 0.7};
    pompc::ref::gauss_kl_forward<double>(&out, mu2.data(), ls2.data(), mp2.data(), sp2.data(), 1, 2,
                                         KlDir::reverse);
    CHECK(out == doctest::Approx(0.4431471805599453 / 2).epsilon(1e-15));

    Rng rng(61);
    for (int A : {1, 6, 21, 38}) {
      CAPTURE(A);
      const int rows = 33;
      const Gauss g = make_gauss(rng, rows, A);
      std::vector<double> want_rev(rows), want_fwd(rows);
      for (int r = 0; r < rows; ++r) {
        double rev = 0, fwd = 0;
        for (int j = 0; j < A; ++j) {
          const size_t i = static_cast<size_t>(r) * A + j;
          const double s = std::exp(g.log_std[i]);
          rev += kl_normal(g.mu[i], s, g.mu_p[i], g.sigma_p[i]);
          fwd += kl_normal(g.mu_p[i], g.sigma_p[i], g.mu[i], s);
        }
        want_rev[r] = rev / A;
        want_fwd[r] = fwd / A;
      }
      // double vs double computed another way; KL up to ~1e3 (sigma_p down to 0.05): rounding only
      CHECK(close("kl reverse", kl(g, rows, A, KlDir::reverse), want_rev, 1e-12, 1e-12));
      CHECK(close("kl forward", kl(g, rows, A, KlDir::forward), want_fwd, 1e-12, 1e-12));
      // float instantiation: fp32 rounding of A terms of up to ~1e3 each
      std::vector<float> outf(rows);
      pompc::ref::gauss_kl_forward<float>(outf.data(), to_float(g.mu).data(),
                                          to_float(g.log_std).data(), to_float(g.mu_p).data(),
                                          to_float(g.sigma_p).data(), rows, A, KlDir::reverse);
      CHECK(close("kl reverse float", to_double(outf), want_rev, 1e-4, 1e-5));
    }
  }

  TEST_CASE("prior: gauss_kl is zero on coincidence, >= 0, reverse(p, q) == forward(q, p)") {
    Rng rng(62);
    for (int A : {1, 6, 21, 38}) {
      CAPTURE(A);
      const int rows = 17;
      Gauss g = make_gauss(rng, rows, A);
      // Swapping the roles: pi_theta <-> prior (log_std <-> log sigma_p).
      Gauss swapped;
      swapped.mu = g.mu_p;
      swapped.mu_p = g.mu;
      for (size_t i = 0; i < g.mu.size(); ++i) {
        swapped.log_std.push_back(std::log(g.sigma_p[i]));
        swapped.sigma_p.push_back(std::exp(g.log_std[i]));
      }
      const auto rev = kl(g, rows, A, KlDir::reverse), fwd = kl(g, rows, A, KlDir::forward);
      CHECK(close("reverse(p, q) vs forward(q, p)", rev, kl(swapped, rows, A, KlDir::forward),
                  1e-12, 1e-12));
      CHECK(close("forward(p, q) vs reverse(q, p)", fwd, kl(swapped, rows, A, KlDir::reverse),
                  1e-12, 1e-12));
      for (int r = 0; r < rows; ++r) {
        CHECK(rev[r] >= 0);
        CHECK(fwd[r] >= 0);
      }
      // Coincident Gaussians: both directions vanish (up to rounding of log(exp(x))).
      g.mu_p = g.mu;
      for (size_t i = 0; i < g.mu.size(); ++i) g.sigma_p[i] = std::exp(g.log_std[i]);
      const std::vector<double> zero(rows, 0.0);
      CHECK(close("reverse, coincident", kl(g, rows, A, KlDir::reverse), zero, 1e-14, 0));
      CHECK(close("forward, coincident", kl(g, rows, A, KlDir::forward), zero, 1e-14, 0));
    }
  }

  TEST_CASE("prior: gauss_kl backward matches finite differences, both directions, null skips") {
    Rng rng(63);
    for (KlDir dir : {KlDir::reverse, KlDir::forward})
      for (int A : {1, 6, 21, 38})
        for (int rows : {1, 5}) {
          CAPTURE(static_cast<int>(dir));
          CAPTURE(A);
          CAPTURE(rows);
          Gauss g = make_gauss(rng, rows, A);
          // sigma_p >= 0.3 here so that the FD rounding error (~1e-16 |loss| / h) stays far below
          // the tolerance; the small-sigma range is covered by the forward and parity tests.
          g.sigma_p = rng.vec(g.mu.size(), 0.3, 2);
          const std::vector<double> wout = rng.vec(rows, -1, 1);
          auto loss = [&] { return dot(wout, kl(g, rows, A, dir)); };
          const size_t n = g.mu.size();
          const std::vector<double> dmu0 = rng.vec(n, -1, 1), dls0 = rng.vec(n, -1, 1);
          std::vector<double> dmu = dmu0, dls = dls0;
          pompc::ref::gauss_kl_backward<double>(dmu.data(), dls.data(), wout.data(), g.mu.data(),
                                                g.log_std.data(), g.mu_p.data(), g.sigma_p.data(),
                                                rows, A, dir);
          CHECK(check_gradient("gauss_kl dmu", g.mu, added(dmu, dmu0), loss, rng));
          CHECK(check_gradient("gauss_kl dlog_std", g.log_std, added(dls, dls0), loss, rng));
          // A null gradient is skipped; the other one is the same as with both.
          std::vector<double> only_mu = dmu0, only_ls = dls0;
          pompc::ref::gauss_kl_backward<double>(only_mu.data(), nullptr, wout.data(), g.mu.data(),
                                                g.log_std.data(), g.mu_p.data(), g.sigma_p.data(),
                                                rows, A, dir);
          pompc::ref::gauss_kl_backward<double>(nullptr, only_ls.data(), wout.data(), g.mu.data(),
                                                g.log_std.data(), g.mu_p.data(), g.sigma_p.data(),
                                                rows, A, dir);
          CHECK(only_mu == dmu);
          CHECK(only_ls == dls);
        }
  }

  TEST_CASE("prior: gauss_nll hand-checked values, the min_std floor and the log-density form") {
    // A = 1, a = 0.5 ~ N(0, 1): -(-0.5 * 0.25 - 0 - c) = 0.125 + c.
    const float min_std = 0.05f;
    double out = 0;
    {
      const std::vector<double> a = {0.5}, mp = {0.0}, sp = {1.0};
      pompc::ref::gauss_nll_forward<double>(&out, a.data(), mp.data(), sp.data(), 1, 1, min_std);
      CHECK(out == doctest::Approx(1.0439385332046727).epsilon(1e-15));
    }
    {  // sigma_p = 0.01 is floored at 0.05: e = 1, out = 0.5 + log(0.05) + c.
      const std::vector<double> a = {0.05}, mp = {0.0}, sp = {0.01};
      pompc::ref::gauss_nll_forward<double>(&out, a.data(), mp.data(), sp.data(), 1, 1, min_std);
      CHECK(out == doctest::Approx(-1.5767937403493182).epsilon(1e-14));
    }
    {  // A = 2 at the mode of N(0, 1): -2 (0 - c) = 2c (first-release scaling by A, c once).
      const std::vector<double> a = {0.0, 0.0}, mp = {0.0, 0.0}, sp = {1.0, 1.0};
      pompc::ref::gauss_nll_forward<double>(&out, a.data(), mp.data(), sp.data(), 1, 2, min_std);
      CHECK(out == doctest::Approx(1.8378770664093453).epsilon(1e-15));
    }
    Rng rng(64);
    for (int A : {1, 6, 21, 38}) {
      CAPTURE(A);
      const int rows = 33;
      Gauss g = make_gauss(rng, rows, A);
      g.sigma_p = rng.vec(g.mu.size(), 0.01, 2);  // some entries below min_std
      const std::vector<double> a = rng.vec(g.mu.size(), -1, 1);
      // -A (sum_j log N(a; mu_p, s) + (A - 1) c): the same quantity through the density.
      std::vector<double> want(rows);
      for (int r = 0; r < rows; ++r) {
        double lp = 0;
        for (int j = 0; j < A; ++j) {
          const size_t i = static_cast<size_t>(r) * A + j;
          lp += log_normal(a[i], g.mu_p[i], std::max(g.sigma_p[i], double{min_std}));
        }
        want[r] = -A * (lp + (A - 1) * kHalfLog2Pi);
      }
      // values up to A * A * 200 ~ 3e5: rounding of exp/log in the density form
      CHECK(close("gauss_nll", nll(a, g, rows, A, min_std), want, 1e-8, 1e-11));
    }
  }

  TEST_CASE("prior: gauss_nll backward matches finite differences (floor active and not)") {
    Rng rng(65);
    for (int A : {1, 6, 21, 38})
      for (int rows : {1, 5}) {
        CAPTURE(A);
        CAPTURE(rows);
        Gauss g = make_gauss(rng, rows, A);
        // Half the entries floored (sigma_p < min_std = 0.1): the floor is constant in a.
        g.sigma_p = rng.vec(g.mu.size(), 0.02, 1);
        std::vector<double> a = rng.vec(g.mu.size(), -1, 1);
        const std::vector<double> wout = rng.vec(rows, -1, 1);
        auto loss = [&] { return dot(wout, nll(a, g, rows, A, 0.1f)); };
        const std::vector<double> da0 = rng.vec(a.size(), -1, 1);
        std::vector<double> da = da0;
        pompc::ref::gauss_nll_backward<double>(da.data(), wout.data(), a.data(), g.mu_p.data(),
                                               g.sigma_p.data(), rows, A, 0.1f);
        // |loss| reaches A^2 / (2 0.01) (e up to 20 at s = 0.1): FD rounding ~1e-16 |loss| / h
        // ~ 1e-6, so atol 1e-5; values of da up to A * 200 sit under the 1e-5 rtol.
        CHECK(check_gradient("gauss_nll da", a, added(da, da0), loss, rng, 300, 1e-5, 1e-5, 1e-5));
      }
  }

  TEST_CASE("prior: prior_sample is Philox (seed, offset, (k rows + r) A + j), clamped, moments") {
    const int S = 3, rows = 5, A = 6;
    Rng rng(66);
    const Gauss g = make_gauss(rng, rows, A);
    std::vector<double> a_k(static_cast<size_t>(S) * rows * A);
    pompc::ref::prior_sample<double>(a_k.data(), g.mu_p.data(), g.sigma_p.data(), S, rows, A, 7,
                                     11);
    int clamped = 0;
    for (int k = 0; k < S; ++k)
      for (int r = 0; r < rows; ++r)
        for (int j = 0; j < A; ++j) {
          const size_t i = (static_cast<size_t>(k) * rows + r) * A + j;
          const size_t rj = static_cast<size_t>(r) * A + j;
          const double eps = pompc::philox_normal(7, 11, i);
          const double want = std::min(1.0, std::max(-1.0, g.mu_p[rj] + g.sigma_p[rj] * eps));
          CHECK(std::fabs(a_k[i] - want) <= 1e-15);  // the same draw (an fma at most)
          CHECK(std::fabs(a_k[i]) <= 1.0);
          clamped += std::fabs(a_k[i]) == 1.0;
        }
    CHECK(clamped > 0);  // sigma_p up to 2: the clamp is exercised
    // Deterministic in (seed, offset), different across offsets and seeds.
    auto draw = [&](uint64_t seed, uint64_t offset) {
      std::vector<float> out(a_k.size());
      pompc::ref::prior_sample<float>(out.data(), to_float(g.mu_p).data(),
                                      to_float(g.sigma_p).data(), S, rows, A, seed, offset);
      return out;
    };
    CHECK(draw(7, 11) == draw(7, 11));
    CHECK(draw(7, 11) != draw(7, 12));
    CHECK(draw(7, 11) != draw(8, 11));
    // Moments of many samples: rows far from the clamp (mu_p +- 5 sigma_p inside [-1, 1]).
    const int many = 20000;
    const std::vector<double> mp = {0.1, -0.3, 0.5}, sp = {0.15, 0.1, 0.05};
    std::vector<double> big(static_cast<size_t>(many) * 3);
    pompc::ref::prior_sample<double>(big.data(), mp.data(), sp.data(), many, 1, 3, 3, 0);
    for (int j = 0; j < 3; ++j) {
      double m = 0, v = 0;
      for (int k = 0; k < many; ++k) m += big[static_cast<size_t>(k) * 3 + j];
      m /= many;
      for (int k = 0; k < many; ++k) {
        const double d = big[static_cast<size_t>(k) * 3 + j] - m;
        v += d * d;
      }
      const double sd = std::sqrt(v / (many - 1));
      // 5-sigma bounds: se(mean) = sigma / sqrt(n), se(std) ~ sigma / sqrt(2 n)
      CHECK(std::fabs(m - mp[j]) < 5 * sp[j] / std::sqrt(many));
      CHECK(std::fabs(sd - sp[j]) < 5 * sp[j] / std::sqrt(2.0 * many));
    }
  }

  TEST_CASE("prior: sample_weights softmax, sums to 1, beta limits, log_z of equal q") {
    {  // S = 2, q = {0, log 3}, beta = 1: w = {1/4, 3/4}, log_z = log((1 + 3) / 2) = log 2.
      const std::vector<double> q = {0.0, std::log(3.0)};
      std::vector<double> w(2);
      double log_z = 0;
      pompc::ref::sample_weights<double>(w.data(), &log_z, q.data(), 2, 1, 1.0f);
      CHECK(w[0] == doctest::Approx(0.25).epsilon(1e-15));
      CHECK(w[1] == doctest::Approx(0.75).epsilon(1e-15));
      CHECK(log_z == doctest::Approx(0.6931471805599453).epsilon(1e-15));
    }
    Rng rng(67);
    for (int S : {1, 8, 64}) {
      CAPTURE(S);
      const int rows = 9;
      const std::vector<double> q = rng.vec(static_cast<size_t>(S) * rows, -5, 5);
      for (float beta : {0.5f, 1.0f, 3.0f}) {
        CAPTURE(beta);
        std::vector<double> w(q.size()), log_z(rows), want_w(q.size()), want_z(rows);
        pompc::ref::sample_weights<double>(w.data(), log_z.data(), q.data(), S, rows, beta);
        for (int r = 0; r < rows; ++r) {
          double sum = 0, wsum = 0;
          for (int k = 0; k < S; ++k) sum += std::exp(q[static_cast<size_t>(k) * rows + r] / beta);
          for (int k = 0; k < S; ++k) {
            const size_t i = static_cast<size_t>(k) * rows + r;
            want_w[i] = std::exp(q[i] / beta) / sum;  // without the max shift: |q / beta| <= 10
            wsum += w[i];
          }
          want_z[r] = std::log(sum / S);
          CHECK(wsum == doctest::Approx(1.0).epsilon(1e-14));
        }
        CHECK(close("w", w, want_w, 1e-15, 1e-13));
        CHECK(close("log_z", log_z, want_z, 1e-13, 1e-13));
      }
      // beta -> huge: uniform weights, log_z -> 0.
      std::vector<double> w(q.size()), log_z(rows);
      pompc::ref::sample_weights<double>(w.data(), log_z.data(), q.data(), S, rows, 1e30f);
      CHECK(close("w, beta huge", w, std::vector<double>(q.size(), 1.0 / S), 1e-15, 1e-12));
      CHECK(close("log_z, beta huge", log_z, std::vector<double>(rows, 0.0), 1e-14, 0));
      // Equal q in a row: uniform weights and log_z = q / beta.
      std::vector<double> eq(q.size());
      for (int k = 0; k < S; ++k)
        for (int r = 0; r < rows; ++r) eq[static_cast<size_t>(k) * rows + r] = 0.7 * r - 2;
      pompc::ref::sample_weights<double>(w.data(), log_z.data(), eq.data(), S, rows, 0.5f);
      std::vector<double> want_z(rows);
      for (int r = 0; r < rows; ++r) want_z[r] = (0.7 * r - 2) / 0.5;
      CHECK(close("w, equal q", w, std::vector<double>(q.size(), 1.0 / S), 1e-15, 1e-12));
      CHECK(close("log_z, equal q", log_z, want_z, 1e-14, 1e-14));
    }
    // Large values do not overflow (the max shift), log_z may be null.
    const std::vector<float> q = {1e4f, 1e4f - 1.0f, -1e4f};
    std::vector<float> w(3);
    pompc::ref::sample_weights<float>(w.data(), nullptr, q.data(), 3, 1, 1.0f);
    CHECK(w[0] == doctest::Approx(1.0 / (1.0 + std::exp(-1.0))).epsilon(1e-6));
    CHECK(w[1] == doctest::Approx(std::exp(-1.0) / (1.0 + std::exp(-1.0))).epsilon(1e-6));
    CHECK(w[2] == 0.0f);
  }

  TEST_CASE("prior: weighted_nll hand-checked values, the density form, forward KL as a gap") {
    double out = 0;
    {  // S = 1, A = 1: -log N(1; 0, 1) = 0.5 + c.
      const std::vector<double> a = {1.0}, w = {1.0}, mu = {0.0}, ls = {0.0};
      pompc::ref::weighted_nll_forward<double>(&out, a.data(), w.data(), mu.data(), ls.data(), 1, 1,
                                               1);
      CHECK(out == doctest::Approx(1.4189385332046727).epsilon(1e-15));
    }
    {  // S = 2, w = {1/4, 3/4}, a = {0, 2} under N(0, 2): log 2 + c + 0.75 * 0.5.
      const std::vector<double> a = {0.0, 2.0}, w = {0.25, 0.75}, mu = {0.0}, ls = {std::log(2.0)};
      pompc::ref::weighted_nll_forward<double>(&out, a.data(), w.data(), mu.data(), ls.data(), 2, 1,
                                               1);
      CHECK(out == doctest::Approx(1.987085713764618).epsilon(1e-15));
    }
    Rng rng(68);
    for (int S : {1, 8})
      for (int A : {1, 6, 21, 38}) {
        CAPTURE(S);
        CAPTURE(A);
        const int rows = 17;
        const Gauss g = make_gauss(rng, rows, A);
        const std::vector<double> a_k = rng.vec(static_cast<size_t>(S) * rows * A, -1, 1);
        const std::vector<double> w = make_weights(rng, S, rows);
        std::vector<double> want(rows);
        for (int r = 0; r < rows; ++r) {
          double s = 0;
          for (int k = 0; k < S; ++k) {
            double lp = 0;
            for (int j = 0; j < A; ++j) {
              const size_t i = static_cast<size_t>(r) * A + j;
              lp += log_normal(a_k[(static_cast<size_t>(k) * rows + r) * A + j], g.mu[i],
                               std::exp(g.log_std[i]));
            }
            s += w[static_cast<size_t>(k) * rows + r] * lp;
          }
          want[r] = -s / A;
        }
        // values up to ~4 / (2 e^-6) ~ 1e3: rounding of exp/log in the density form
        CHECK(close("weighted_nll", wnll(a_k, w, g.mu, g.log_std, S, rows, A), want, 1e-10, 1e-11));
      }
    // With a_k ~ N(mu_p, sigma_p) and uniform weights, weighted_nll(pi_theta) -
    // weighted_nll(prior) estimates E_prior[log prior - log pi_theta] / A = forward KL (its
    // mean over dims): the two prior families agree. Small sigma_p keeps the clamp out of play.
    const int S = 50000, rows = 3, A = 4;
    Gauss g = make_gauss(rng, rows, A);
    g.mu_p = rng.vec(g.mu.size(), -0.3, 0.3);
    g.sigma_p = rng.vec(g.mu.size(), 0.08, 0.12);
    std::vector<double> log_sp(g.mu.size());
    for (size_t i = 0; i < g.mu.size(); ++i) {
      g.mu[i] = g.mu_p[i] + rng.uniform(-0.1, 0.1);
      g.log_std[i] = std::log(g.sigma_p[i] * rng.uniform(0.7, 1.4));
      log_sp[i] = std::log(g.sigma_p[i]);
    }
    std::vector<double> a_k(static_cast<size_t>(S) * rows * A);
    pompc::ref::prior_sample<double>(a_k.data(), g.mu_p.data(), g.sigma_p.data(), S, rows, A, 5, 0);
    const std::vector<double> w(static_cast<size_t>(S) * rows, 1.0 / S);
    const auto cross = wnll(a_k, w, g.mu, g.log_std, S, rows, A);
    const auto self = wnll(a_k, w, g.mu_p, log_sp, S, rows, A);
    const auto fwd = kl(g, rows, A, KlDir::forward);
    for (int r = 0; r < rows; ++r) {
      CAPTURE(r);
      // Monte Carlo: the per-sample gap (mean over the 4 dims) has a std of at most ~1.3 here,
      // so its mean over 50000 samples has a standard error <= 0.006: 0.03 is 5 of them.
      CHECK(std::fabs((cross[r] - self[r]) - fwd[r]) < 0.03);
    }
  }

  TEST_CASE("prior: weighted_nll backward matches finite differences") {
    Rng rng(69);
    for (int S : {1, 8})
      for (int A : {1, 6, 21, 38})
        for (int rows : {1, 5}) {
          CAPTURE(S);
          CAPTURE(A);
          CAPTURE(rows);
          Gauss g = make_gauss(rng, rows, A);
          g.log_std = rng.vec(g.mu.size(), -1.5, 1);  // |loss| <= ~1e2: FD rounding << atol
          const std::vector<double> a_k = rng.vec(static_cast<size_t>(S) * rows * A, -1, 1);
          const std::vector<double> w = make_weights(rng, S, rows);
          const std::vector<double> wout = rng.vec(rows, -1, 1);
          auto loss = [&] { return dot(wout, wnll(a_k, w, g.mu, g.log_std, S, rows, A)); };
          const size_t n = g.mu.size();
          const std::vector<double> dmu0 = rng.vec(n, -1, 1), dls0 = rng.vec(n, -1, 1);
          std::vector<double> dmu = dmu0, dls = dls0;
          pompc::ref::weighted_nll_backward<double>(dmu.data(), dls.data(), wout.data(), a_k.data(),
                                                    w.data(), g.mu.data(), g.log_std.data(), S,
                                                    rows, A);
          CHECK(check_gradient("weighted_nll dmu", g.mu, added(dmu, dmu0), loss, rng));
          CHECK(check_gradient("weighted_nll dlog_std", g.log_std, added(dls, dls0), loss, rng));
        }
  }

  TEST_CASE("prior: exp_forward and scale_gate") {
    const std::vector<double> x = {0.0, std::log(2.0), -1.0, 3.5};
    std::vector<double> y(x.size());
    pompc::ref::exp_forward<double>(y.data(), x.data(), 4);
    CHECK(y[0] == 1.0);
    CHECK(y[1] == doctest::Approx(2.0).epsilon(1e-15));
    CHECK(y[2] == std::exp(-1.0));
    CHECK(y[3] == std::exp(3.5));
    // scale_gate: above the threshold passes the scale; at or below gives +inf, which zeroes a
    // term divided by it.
    const float inf = std::numeric_limits<float>::infinity();
    float out = 0;
    const float above = 2.5f, at = 2.0f, below = 1.0f;
    pompc::ref::scale_gate<float>(&out, &above, 2.0f);
    CHECK(out == 2.5f);
    pompc::ref::scale_gate<float>(&out, &at, 2.0f);
    CHECK(out == inf);
    CHECK(3.0f / out == 0.0f);
    pompc::ref::scale_gate<float>(&out, &below, 2.0f);
    CHECK(out == inf);
  }

  TEST_CASE("prior: bad shapes and arguments say what to change") {
    std::vector<float> b(64, 0.5f);
    float* p = b.data();
    CHECK_THROWS_WITH_AS(pompc::ref::gauss_kl_forward<float>(p, p, p, p, p, -1, 2, KlDir::reverse),
                         doctest::Contains("rows (-1) must be >= 0"), pompc::Error);
    CHECK_THROWS_WITH_AS(pompc::ref::gauss_nll_forward<float>(p, p, p, p, 2, 0, 0.05f),
                         doctest::Contains("A (0) must be >= 1"), pompc::Error);
    CHECK_THROWS_WITH_AS(pompc::ref::gauss_nll_forward<float>(p, p, p, p, 2, 2, -0.1f),
                         doctest::Contains("min_std (-0.1) must be >= 0"), pompc::Error);
    CHECK_THROWS_WITH_AS(pompc::ref::prior_sample<float>(p, p, p, 0, 2, 2, 1, 2),
                         doctest::Contains("S (0) must be >= 1"), pompc::Error);
    CHECK_THROWS_WITH_AS(pompc::ref::sample_weights<float>(p, p, p, 2, 2, 0.0f),
                         doctest::Contains("beta (0) must be > 0"), pompc::Error);
    CHECK_THROWS_WITH_AS(
        pompc::ref::weighted_nll_backward<float>(p, p, nullptr, p, p, p, p, 2, 2, 2),
        doctest::Contains("dout is null"), pompc::Error);
    CHECK_THROWS_WITH_AS(
        pompc::ref::gauss_kl_backward<float>(p, p, nullptr, p, p, p, p, 2, 2, KlDir::forward),
        doctest::Contains("gauss_kl_backward: dout is null"), pompc::Error);
  }
}
