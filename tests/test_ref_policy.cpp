// The policy head (src/ref/policy.h): forward against closed forms (the Gaussian density of u
// computed from u itself, the change of variables through tanh, both entropy forms), the log_std
// squash bounds, Philox noise and determinism, and the backward against double central
// differences for every upstream gradient and both entropy forms, A in {1, 6, 21, 38}.
// The clamped (BMPC) form: values against an independent double formula and a hand-computed
// A = 1 case, the clamp (actions in [-1, 1], no gradient through the action where |u| > 1, full
// gradient at |u| = 1 exactly), the backward against finite differences away from the clamp for
// each upstream gradient alone and all together, and kernels/policy.cu against the reference.
//   build/test_emu -ts=ops -tc='policy*'
#include <cuda_runtime.h>
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "common.cuh"
#include "launchers.h"
#include "philox.cuh"
#include "ref/policy.h"
#include "test_ref_fd.h"
#include "test_dev.h"
#include "test_util.h"

using namespace pompc::test::fd;
using pompc::EntropyForm;
using pompc::PolicyForm;
using pompc::PolicyHead;

namespace {

constexpr double kHalfLog2Pi = 0.91893853320467274178;

// raw [B, 2A]: means in [-1.5, 1.5], s in [-0.5, 1] (log_std in about [-6.8, 0.6] for the
// TD-MPC2 range), so |u| stays below ~9 and 1 - tanh(u)^2 stays positive in double: no kink.
std::vector<double> make_raw(Rng& rng, int B, int A) {
  std::vector<double> raw(static_cast<size_t>(B) * 2 * A);
  for (int b = 0; b < B; ++b)
    for (int j = 0; j < 2 * A; ++j)
      raw[static_cast<size_t>(b) * 2 * A + j] =
          j < A ? rng.uniform(-1.5, 1.5) : rng.uniform(-0.5, 1.0);
  return raw;
}

struct Outputs {
  std::vector<double> action, mu, log_std, log_pi, log_prob;
};

Outputs run_forward(const std::vector<double>& raw, int B, int A, const PolicyHead& h,
                    uint64_t seed, uint64_t offset) {
  Outputs o;
  o.action.resize(static_cast<size_t>(B) * A);
  o.mu.resize(o.action.size());
  o.log_std.resize(o.action.size());
  o.log_pi.resize(B);
  o.log_prob.resize(B);
  pompc::ref::policy_head_forward<double>(o.action.data(), o.mu.data(), o.log_std.data(),
                                          o.log_pi.data(), o.log_prob.data(), raw.data(), nullptr,
                                          B, A, h, seed, offset);
  return o;
}

// BMPC's heads: the policy's log_std range [-3, 1] and the reanalysis planner's [-2, 1].
PolicyHead clamped_head(float lo, float hi) {
  PolicyHead h;
  h.log_std_min = lo;
  h.log_std_max = hi;
  h.form = PolicyForm::clamped;
  return h;
}

// The clamped form's pre-clamp sample u = tanh(mean) + exp(log_std) eps, from the op's own mu and
// log_std outputs.
std::vector<double> clamped_u(const Outputs& o, uint64_t seed, uint64_t offset) {
  std::vector<double> u(o.mu.size());
  for (size_t i = 0; i < u.size(); ++i)
    u[i] = o.mu[i] + std::exp(o.log_std[i]) * pompc::philox_normal(seed, offset, i);
  return u;
}

// Re-draws the means whose sample u lies within 1e-3 of the clamp's kinks at +-1, so a central
// difference (h = 1e-5 moves u by < 1e-4) never straddles one.
void keep_off_clamp(std::vector<double>& raw, int B, int A, const PolicyHead& h, uint64_t seed,
                    uint64_t offset, Rng& rng) {
  for (bool moved = true; moved;) {
    moved = false;
    const std::vector<double> u = clamped_u(run_forward(raw, B, A, h, seed, offset), seed, offset);
    for (int b = 0; b < B; ++b)
      for (int j = 0; j < A; ++j)
        if (std::fabs(std::fabs(u[static_cast<size_t>(b) * A + j]) - 1) < 1e-3) {
          raw[static_cast<size_t>(b) * 2 * A + j] = rng.uniform(-1.5, 1.5);
          moved = true;
        }
  }
}

using pompc::test::Dev;

}  // namespace

TEST_SUITE("ops") {
  TEST_CASE("policy_head: forward against closed forms, both entropy forms, float vs double") {
    Rng rng(51);
    const uint64_t seed = 2024, offset = 17;
    for (int A : {1, 6, 21, 38}) {
      CAPTURE(A);
      const int B = 33;
      const std::vector<double> raw = make_raw(rng, B, A);
      PolicyHead paper, current;
      current.entropy_form = EntropyForm::current;
      const Outputs p = run_forward(raw, B, A, paper, seed, offset);
      const Outputs c = run_forward(raw, B, A, current, seed, offset);
      CHECK(p.action == c.action);
      std::vector<double> want_a(p.action.size()), want_mu(p.action.size()),
          want_ls(p.action.size()), want_lprob(B), want_paper(B), want_current(B);
      for (int b = 0; b < B; ++b) {
        double gauss = 0, res = 0, corr = 0;
        for (int j = 0; j < A; ++j) {
          const size_t i = static_cast<size_t>(b) * A + j;
          const double mean = raw[static_cast<size_t>(b) * 2 * A + j],
                       s = raw[static_cast<size_t>(b) * 2 * A + A + j];
          const double ls = -10 + 0.5 * 12 * (std::tanh(s) + 1);
          const double eps = pompc::philox_normal(seed, offset, i);
          const double sd = std::exp(ls), u = mean + sd * eps;
          want_a[i] = std::tanh(u);
          want_mu[i] = std::tanh(mean);
          want_ls[i] = ls;
          // log N(u; mean, sd) from u itself, not from eps
          gauss += -0.5 * ((u - mean) / sd) * ((u - mean) / sd) - std::log(sd) - kHalfLog2Pi;
          res += -0.5 * eps * eps - ls;
          // tanh change of variables, from the action via atanh
          const double a = std::tanh(std::atanh(want_a[i]));
          corr += std::log(1 - a * a + 1e-6);
        }
        want_lprob[b] = gauss - corr;
        want_paper[b] = A * (res - kHalfLog2Pi) - corr;
        const double lp = res - A * kHalfLog2Pi;
        want_current[b] = (lp - corr) * (A * lp) / (lp - corr + 1e-8);
      }
      // double vs double computed another way: rounding only (values are O(10..1e3))
      CHECK(close("action", p.action, want_a, 1e-12, 1e-12));
      CHECK(close("mu", p.mu, want_mu, 1e-15, 1e-15));
      CHECK(close("log_std", p.log_std, want_ls, 1e-12, 1e-12));
      CHECK(close("log_prob", p.log_prob, want_lprob, 1e-9, 1e-10));
      CHECK(close("log_pi paper", p.log_pi, want_paper, 1e-9, 1e-10));
      CHECK(close("log_pi current", c.log_pi, want_current, 1e-9, 1e-10));
      // The current form is A times the pre-squash log-prob up to the 1e-8 in its ratio.
      std::vector<double> a_lp(B);
      for (int b = 0; b < B; ++b) {
        double res = 0;
        for (int j = 0; j < A; ++j) {
          const double eps = pompc::philox_normal(seed, offset, static_cast<uint64_t>(b) * A + j);
          res += -0.5 * eps * eps - want_ls[static_cast<size_t>(b) * A + j];
        }
        a_lp[b] = A * (res - A * kHalfLog2Pi);
      }
      CHECK(close("current ~ A * pre-squash", c.log_pi, a_lp, 1e-5, 1e-6));
      // float instantiation
      const std::vector<float> rawf = to_float(raw);
      std::vector<float> af(p.action.size()), muf(af.size()), lsf(af.size()), lpf(B), lprobf(B);
      pompc::ref::policy_head_forward<float>(af.data(), muf.data(), lsf.data(), lpf.data(),
                                             lprobf.data(), rawf.data(), nullptr, B, A, paper, seed,
                                             offset);
      // fp32 rounding of O(1) values; log-probs sum A terms of O(1..10): 1e-5 abs + 1e-5 rel
      CHECK(close("action float", to_double(af), want_a, 1e-5, 1e-5));
      CHECK(close("log_std float", to_double(lsf), want_ls, 1e-5, 1e-5));
      CHECK(close("log_pi paper float", to_double(lpf), want_paper, 1e-3, 1e-5));
      CHECK(close("log_prob float", to_double(lprobf), want_lprob, 1e-4, 1e-5));
    }
  }

  TEST_CASE("policy_head: log_std is squashed into [log_std_min, log_std_max]") {
    const int A = 3;
    // s = -30, 0, 30 -> lo, midpoint, hi (tanh saturates to -1 / 1 in fp32)
    std::vector<float> raw = {0, 0, 0, -30, 0, 30}, a(A), ls(A);
    PolicyHead td;  // TD-MPC2: [-10, 2]
    pompc::ref::policy_head_forward<float>(a.data(), nullptr, ls.data(), nullptr, nullptr,
                                           raw.data(), nullptr, 1, A, td, 1, 2);
    CHECK(ls[0] == -10.0f);
    CHECK(ls[1] == -4.0f);
    CHECK(ls[2] == 2.0f);
    PolicyHead bmpc{-3.0f, 1.0f, EntropyForm::paper};
    pompc::ref::policy_head_forward<float>(a.data(), nullptr, ls.data(), nullptr, nullptr,
                                           raw.data(), nullptr, 1, A, bmpc, 1, 2);
    CHECK(ls[0] == -3.0f);
    CHECK(ls[1] == -1.0f);
    CHECK(ls[2] == 1.0f);
  }

  TEST_CASE("policy_head: noise is Philox (seed, offset, b * A + j), deterministic") {
    Rng rng(52);
    const int B = 4, A = 6;
    const std::vector<float> raw = to_float(make_raw(rng, B, A));
    auto act = [&](uint64_t seed, uint64_t offset) {
      std::vector<float> a(static_cast<size_t>(B) * A);
      pompc::ref::policy_head_forward<float>(a.data(), nullptr, nullptr, nullptr, nullptr,
                                             raw.data(), nullptr, B, A, PolicyHead{}, seed, offset);
      return a;
    };
    CHECK(act(5, 6) == act(5, 6));
    CHECK(act(5, 6) != act(5, 7));
    CHECK(act(5, 6) != act(6, 6));
  }

  TEST_CASE("policy_head: backward matches finite differences (both forms, all upstream grads)") {
    Rng rng(53);
    const uint64_t seed = 77, offset = 3;
    for (EntropyForm form : {EntropyForm::paper, EntropyForm::current})
      for (int A : {1, 6, 21, 38})
        for (int B : {1, 33}) {
          CAPTURE(static_cast<int>(form));
          CAPTURE(A);
          CAPTURE(B);
          PolicyHead h;
          h.entropy_form = form;
          std::vector<double> raw = make_raw(rng, B, A);
          const size_t n = static_cast<size_t>(B) * A;
          const std::vector<double> wa = rng.vec(n, -1, 1), wm = rng.vec(n, -1, 1),
                                    ws = rng.vec(n, -1, 1), wl = rng.vec(B, -1, 1);
          auto loss = [&] {
            const Outputs o = run_forward(raw, B, A, h, seed, offset);
            return dot(wa, o.action) + dot(wm, o.mu) + dot(ws, o.log_std) + dot(wl, o.log_pi);
          };
          // The current form's ratio is singular at log_prob = -1e-8; stay far from it.
          const Outputs o = run_forward(raw, B, A, h, seed, offset);
          double min_abs = 1e30;
          for (double v : o.log_prob) min_abs = std::min(min_abs, std::fabs(v));
          CHECK(min_abs > 1e-2);
          const std::vector<double> d0 = rng.vec(raw.size(), -1, 1);
          std::vector<double> d = d0;
          pompc::ref::policy_head_backward<double>(d.data(), wa.data(), wm.data(), ws.data(),
                                                   wl.data(), raw.data(), B, A, h, seed, offset);
          CHECK(check_gradient("policy_head draw", raw, added(d, d0), loss, rng));
          // nullptr upstream gradients mean zero
          std::vector<double> z(n, 0.0), zl(B, 0.0), d1(raw.size(), 0.0), d2(raw.size(), 0.0);
          pompc::ref::policy_head_backward<double>(d1.data(), nullptr, nullptr, nullptr, wl.data(),
                                                   raw.data(), B, A, h, seed, offset);
          pompc::ref::policy_head_backward<double>(d2.data(), z.data(), z.data(), z.data(),
                                                   wl.data(), raw.data(), B, A, h, seed, offset);
          CHECK(d1 == d2);
        }
  }

  TEST_CASE("policy_head: float backward equals double at B = 256, A = 38") {
    Rng rng(54);
    const int B = 256, A = 38;
    for (EntropyForm form : {EntropyForm::paper, EntropyForm::current}) {
      PolicyHead h;
      h.entropy_form = form;
      const std::vector<float> raw = to_float(make_raw(rng, B, A));
      const size_t n = static_cast<size_t>(B) * A;
      const std::vector<float> wa = to_float(rng.vec(n, -1, 1)), wl = to_float(rng.vec(B, -1, 1));
      std::vector<float> df(raw.size(), 0.0f);
      std::vector<double> dd(raw.size(), 0.0);
      pompc::ref::policy_head_backward<float>(df.data(), wa.data(), nullptr, nullptr, wl.data(),
                                              raw.data(), B, A, h, 9, 9);
      pompc::ref::policy_head_backward<double>(dd.data(), to_double(wa).data(), nullptr, nullptr,
                                               to_double(wl).data(), to_double(raw).data(), B, A, h,
                                               9, 9);
      // Elementwise fp32 rounding of O(A) = O(40) gradient terms (log_pi carries the factor A);
      // near-saturated tanh makes 1 - a^2 lose relative precision: 1e-4 abs + 1e-4 rel.
      CHECK(close(form == EntropyForm::paper ? "paper float" : "current float", to_double(df), dd,
                  1e-4, 1e-4));
    }
  }

  TEST_CASE("policy_head: clamped form against an independent formula, float vs double") {
    Rng rng(55);
    const uint64_t seed = 2025, offset = 19;
    for (auto [lo, hi] : {std::pair{-3.0f, 1.0f}, std::pair{-2.0f, 1.0f}})
      for (int A : {1, 6, 21, 38}) {
        CAPTURE(lo);
        CAPTURE(A);
        const int B = 33;
        const std::vector<double> raw = make_raw(rng, B, A);
        const PolicyHead h = clamped_head(lo, hi);
        PolicyHead hc = h;
        hc.entropy_form = EntropyForm::current;
        const Outputs o = run_forward(raw, B, A, h, seed, offset);
        const Outputs oc = run_forward(raw, B, A, hc, seed, offset);
        // entropy_form does not enter the clamped form
        CHECK(o.action == oc.action);
        CHECK(o.log_pi == oc.log_pi);
        CHECK(o.log_prob == oc.log_prob);
        std::vector<double> want_a(o.action.size()), want_mu(want_a.size()), want_ls(want_a.size()),
            want_lprob(B), want_lpi(B);
        int clamped = 0;
        for (int b = 0; b < B; ++b) {
          double gauss = 0;
          for (int j = 0; j < A; ++j) {
            const size_t i = static_cast<size_t>(b) * A + j;
            const double mean = raw[static_cast<size_t>(b) * 2 * A + j],
                         s = raw[static_cast<size_t>(b) * 2 * A + A + j];
            const double ls = lo + 0.5 * (hi - lo) * (std::tanh(s) + 1);
            const double m = std::tanh(mean), sd = std::exp(ls);
            const double u = m + sd * pompc::philox_normal(seed, offset, i);
            want_a[i] = std::min(1.0, std::max(-1.0, u));
            clamped += std::fabs(u) > 1;
            want_mu[i] = m;
            want_ls[i] = ls;
            // log N(u; mu, sd) from u itself, not from eps
            gauss += -0.5 * ((u - m) / sd) * ((u - m) / sd) - std::log(sd) - kHalfLog2Pi;
          }
          want_lprob[b] = gauss;
          want_lpi[b] = A * gauss;
        }
        // the data exercises both sides of the clamp
        CHECK(clamped > 0);
        CHECK(clamped < B * A);
        // double vs double computed another way: rounding only (log-probs are O(1..1e3))
        CHECK(close("action", o.action, want_a, 1e-12, 1e-12));
        CHECK(close("mu", o.mu, want_mu, 1e-15, 1e-15));
        CHECK(close("log_std", o.log_std, want_ls, 1e-12, 1e-12));
        CHECK(close("log_prob", o.log_prob, want_lprob, 1e-9, 1e-10));
        CHECK(close("log_pi", o.log_pi, want_lpi, 1e-9, 1e-10));
        // float instantiation
        const std::vector<float> rawf = to_float(raw);
        std::vector<float> af(o.action.size()), muf(af.size()), lsf(af.size()), lpf(B), lprobf(B);
        pompc::ref::policy_head_forward<float>(af.data(), muf.data(), lsf.data(), lpf.data(),
                                               lprobf.data(), rawf.data(), nullptr, B, A, h, seed,
                                               offset);
        // fp32 rounding of O(1) values (the clamp is continuous); log-probs sum A terms of
        // O(1..10), log_pi scales them by A: 1e-5 abs + 1e-5 rel and 1e-3 abs + 1e-5 rel
        CHECK(close("action float", to_double(af), want_a, 1e-5, 1e-5));
        CHECK(close("mu float", to_double(muf), want_mu, 1e-6, 1e-6));
        CHECK(close("log_std float", to_double(lsf), want_ls, 1e-5, 1e-5));
        CHECK(close("log_prob float", to_double(lprobf), want_lprob, 1e-4, 1e-5));
        CHECK(close("log_pi float", to_double(lpf), want_lpi, 1e-3, 1e-5));
      }
  }

  TEST_CASE("policy_head: clamped form, a hand-computed case (A = 1)") {
    // BMPC head [-3, 1], seed 7, offset 11. Row 0 raw = (0.5, 0.25), row 1 raw = (1, 0.75):
    //   tanh(0.25) = 0.24491866240370913 -> log_std = -3 + 2 (1 + tanh) = -0.51016267519258174
    //   tanh(0.5)  = 0.46211715726000976 = mu,  exp(log_std) = 0.60039790102343013
    //   tanh(0.75) = 0.63514895238728731 -> log_std = 0.27029790477457462
    //   tanh(1)    = 0.76159415595576489 = mu,  exp(log_std) = 1.3103547535312909
    // eps = philox_normal(7, 11, 0) = -0.207212..., philox_normal(7, 11, 1) = 0.782300...:
    //   row 0: u = 0.4621 + 0.6004 eps = 0.3377 (inside the box); row 1: u = 1.7867 -> action 1.
    const double c = 0.91893853320467274;  // 0.5 log(2 pi)
    const double e0 = pompc::philox_normal(7, 11, 0), e1 = pompc::philox_normal(7, 11, 1);
    REQUIRE(e0 == doctest::Approx(-0.2072123438).epsilon(1e-8));
    REQUIRE(e1 == doctest::Approx(0.7823000550).epsilon(1e-8));
    const double ls0 = -0.51016267519258174, mu0 = 0.46211715726000976, sd0 = 0.60039790102343013;
    const double ls1 = 0.27029790477457462, mu1 = 0.76159415595576489, sd1 = 1.3103547535312909;
    REQUIRE(mu1 + sd1 * e1 > 1);
    const std::vector<double> raw = {0.5, 0.25, 1.0, 0.75};
    const PolicyHead h = clamped_head(-3.0f, 1.0f);
    const Outputs o = run_forward(raw, 2, 1, h, 7, 11);
    // analytic values from the literals above: a few ulps of rounding
    CHECK(o.mu[0] == doctest::Approx(mu0).epsilon(1e-15));
    CHECK(o.mu[1] == doctest::Approx(mu1).epsilon(1e-15));
    CHECK(o.log_std[0] == doctest::Approx(ls0).epsilon(1e-14));
    CHECK(o.log_std[1] == doctest::Approx(ls1).epsilon(1e-14));
    CHECK(o.action[0] == doctest::Approx(mu0 + sd0 * e0).epsilon(1e-14));
    CHECK(o.action[1] == 1.0);
    CHECK(o.log_prob[0] == doctest::Approx(-0.5 * e0 * e0 - ls0 - c).epsilon(1e-14));
    CHECK(o.log_prob[1] == doctest::Approx(-0.5 * e1 * e1 - ls1 - c).epsilon(1e-14));
    CHECK(o.log_pi[0] == o.log_prob[0]);  // A = 1
    CHECK(o.log_pi[1] == o.log_prob[1]);
    // Backward with g_action = 1, g_mu = 0.5, g_log_std = 0.25, g_log_pi = -1 on both rows:
    //   1 - mu^2 = 0.78644773296592741 (row 0), 0.41997434161402607 (row 1);
    //   0.5 (hi - lo)(1 - tanh(s)^2) = 2 (1 - tanh(s)^2) = 1.8800296976127559, 1.1931716165626629
    //   row 0 (inside): draw = (1 + 0.5) 0.7864..., (1 sd0 e0 + 1 + 0.25) 1.8800...
    //   row 1 (clamped, g_u = 0): draw = 0.5 * 0.4199..., (1 + 0.25) 1.1931...
    const std::vector<double> ga = {1, 1}, gm = {0.5, 0.5}, gl = {0.25, 0.25}, gp = {-1, -1};
    std::vector<double> d(4, 0.0);
    pompc::ref::policy_head_backward<double>(d.data(), ga.data(), gm.data(), gl.data(), gp.data(),
                                             raw.data(), 2, 1, h, 7, 11);
    CHECK(d[0] == doctest::Approx(1.5 * 0.78644773296592741).epsilon(1e-14));
    CHECK(d[1] == doctest::Approx((sd0 * e0 + 1.25) * 1.8800296976127559).epsilon(1e-14));
    CHECK(d[2] == doctest::Approx(0.5 * 0.41997434161402607).epsilon(1e-14));
    CHECK(d[3] == doctest::Approx(1.25 * 1.1931716165626629).epsilon(1e-14));
  }

  TEST_CASE("policy_head: clamped actions stay in [-1, 1]; no gradient through them outside") {
    Rng rng(56);
    const uint64_t seed = 5, offset = 8;
    const int B = 64, A = 6;
    const PolicyHead h = clamped_head(-3.0f, 1.0f);
    // wide means and large std (s in [0.5, 1]: std in about [1.4, 2.6]): most samples clamp
    std::vector<double> raw(static_cast<size_t>(B) * 2 * A);
    for (int b = 0; b < B; ++b)
      for (int j = 0; j < 2 * A; ++j)
        raw[static_cast<size_t>(b) * 2 * A + j] =
            j < A ? rng.uniform(-3, 3) : rng.uniform(0.5, 1.0);
    const Outputs o = run_forward(raw, B, A, h, seed, offset);
    const std::vector<double> u = clamped_u(o, seed, offset);
    // daction alone: the mean gets g (1 - mu^2) inside the box, exactly 0 outside; log_std gets
    // g std eps inside, exactly 0 outside
    const std::vector<double> ga = rng.vec(u.size(), -1, 1);
    std::vector<double> d(raw.size(), 0.0);
    pompc::ref::policy_head_backward<double>(d.data(), ga.data(), nullptr, nullptr, nullptr,
                                             raw.data(), B, A, h, seed, offset);
    int inside = 0, outside = 0;
    for (int b = 0; b < B; ++b)
      for (int j = 0; j < A; ++j) {
        const size_t i = static_cast<size_t>(b) * A + j, r = static_cast<size_t>(b) * 2 * A;
        CHECK(o.action[i] >= -1.0);
        CHECK(o.action[i] <= 1.0);
        if (std::fabs(u[i]) > 1) {
          ++outside;
          CHECK(o.action[i] == (u[i] > 0 ? 1.0 : -1.0));
          CHECK(d[r + j] == 0.0);
          CHECK(d[r + A + j] == 0.0);
        } else {
          ++inside;
          CHECK(o.action[i] == u[i]);
          CHECK(d[r + j] == doctest::Approx(ga[i] * (1 - o.mu[i] * o.mu[i])).epsilon(1e-12));
          CHECK(d[r + j] != 0.0);
        }
      }
    CHECK(inside > 0);
    CHECK(outside > B * A / 2);
  }

  TEST_CASE("policy_head: clamped gradient passes at |u| = 1 exactly (torch.clamp is inclusive)") {
    // A = 1, s = -3 (std ~ 0.05): search the means next to atanh(+-1 - std eps) for one whose
    // sample lands on the box edge exactly; its gradient passes, one ulp further out it does not.
    const PolicyHead h = clamped_head(-3.0f, 1.0f);
    const uint64_t seed = 3, offset = 4;
    const double eps = pompc::philox_normal(seed, offset, 0);
    const double edge = eps > 0 ? 1.0 : -1.0;  // the edge the sample reaches from inside
    const double ls = -3.0 + 0.5 * 4.0 * (std::tanh(-3.0) + 1.0);
    std::vector<double> raw = {std::atanh(edge - std::exp(ls) * eps), -3.0};
    auto sample = [&](double mean) {
      raw[0] = mean;
      const Outputs o = run_forward(raw, 1, 1, h, seed, offset);
      return clamped_u(o, seed, offset)[0];
    };
    double on_edge = NAN;
    double lo = raw[0], hi = raw[0];
    for (int k = 0; k < 200 && std::isnan(on_edge); ++k) {
      if (sample(lo) == edge) on_edge = lo;
      if (sample(hi) == edge) on_edge = hi;
      lo = std::nextafter(lo, -INFINITY);
      hi = std::nextafter(hi, INFINITY);
    }
    REQUIRE(!std::isnan(on_edge));
    // several neighbouring means may round onto the edge: step out until the sample leaves it
    double outward = on_edge;
    while (sample(outward) == edge) outward = std::nextafter(outward, edge * INFINITY);
    const std::vector<double> ga = {1.0};
    for (const double mean : {on_edge, outward}) {
      const double u = sample(mean);
      CAPTURE(u);
      const Outputs o = run_forward(raw, 1, 1, h, seed, offset);
      CHECK(o.action[0] == edge);
      std::vector<double> d(2, 0.0);
      pompc::ref::policy_head_backward<double>(d.data(), ga.data(), nullptr, nullptr, nullptr,
                                               raw.data(), 1, 1, h, seed, offset);
      if (u == edge)
        CHECK(d[0] == doctest::Approx(1 - o.mu[0] * o.mu[0]).epsilon(1e-15));
      else
        CHECK(d[0] == 0.0);
    }
    CHECK(sample(outward) != edge);
  }

  TEST_CASE("policy_head: clamped backward matches finite differences (each upstream grad)") {
    Rng rng(57);
    const uint64_t seed = 78, offset = 4;
    for (auto [lo, hi] : {std::pair{-3.0f, 1.0f}, std::pair{-2.0f, 1.0f}})
      for (int A : {1, 6, 21, 38})
        for (int B : {1, 33}) {
          CAPTURE(lo);
          CAPTURE(A);
          CAPTURE(B);
          const PolicyHead h = clamped_head(lo, hi);
          std::vector<double> raw = make_raw(rng, B, A);
          keep_off_clamp(raw, B, A, h, seed, offset, rng);
          const size_t n = static_cast<size_t>(B) * A;
          // upstream gradients: action, mu, log_std, log_pi alone, then all four together
          for (int which = 0; which < 5; ++which) {
            CAPTURE(which);
            auto w = [&](int k, size_t count) {
              return which == k || which == 4 ? rng.vec(count, -1, 1)
                                              : std::vector<double>(count, 0.0);
            };
            const std::vector<double> wa = w(0, n), wm = w(1, n), ws = w(2, n), wl = w(3, B);
            auto loss = [&] {
              const Outputs o = run_forward(raw, B, A, h, seed, offset);
              return dot(wa, o.action) + dot(wm, o.mu) + dot(ws, o.log_std) + dot(wl, o.log_pi);
            };
            const std::vector<double> d0 = rng.vec(raw.size(), -1, 1);
            std::vector<double> d = d0;
            pompc::ref::policy_head_backward<double>(d.data(), wa.data(), wm.data(), ws.data(),
                                                     wl.data(), raw.data(), B, A, h, seed, offset);
            CHECK(check_gradient("policy_head clamped draw", raw, added(d, d0), loss, rng));
          }
          // nullptr upstream gradients mean zero
          const std::vector<double> wl = rng.vec(B, -1, 1), z(n, 0.0);
          std::vector<double> d1(raw.size(), 0.0), d2(raw.size(), 0.0);
          pompc::ref::policy_head_backward<double>(d1.data(), nullptr, nullptr, nullptr, wl.data(),
                                                   raw.data(), B, A, h, seed, offset);
          pompc::ref::policy_head_backward<double>(d2.data(), z.data(), z.data(), z.data(),
                                                   wl.data(), raw.data(), B, A, h, seed, offset);
          CHECK(d1 == d2);
        }
  }

  TEST_CASE("policy_head: cuda matches the reference, clamped form") {
    for (auto [lo, hi] : {std::pair{-3.0f, 1.0f}, std::pair{-2.0f, 1.0f}})
      for (int A : {1, 6, 38, 300})  // 300: more than one element per thread
        for (int B : {1, 33, 257}) {
          CAPTURE(lo);
          CAPTURE(A);
          CAPTURE(B);
          const PolicyHead head = clamped_head(lo, hi);
          const size_t nA = static_cast<size_t>(B) * A;
          const auto raw = pompc::test::normals(2 * nA, 1, 1.5f);
          const auto da = pompc::test::normals(nA, 2, 1.0f), dm = pompc::test::normals(nA, 3, 1.0f),
                     dls = pompc::test::normals(nA, 4, 1.0f);
          const auto dlp = pompc::test::normals(B, 5, 1.0f);
          std::vector<float> act(nA), mu(nA), ls(nA), lpi(B), lprob(B),
              draw = pompc::test::normals(2 * nA, 6, 0.1f);
          const auto draw0 = draw;
          pompc::ref::policy_head_forward<float>(act.data(), mu.data(), ls.data(), lpi.data(),
                                                 lprob.data(), raw.data(), nullptr, B, A, head, 9,
                                                 2);
          pompc::ref::policy_head_backward(draw.data(), da.data(), dm.data(), dls.data(),
                                           dlp.data(), raw.data(), B, A, head, 9, 2);
          Dev d_raw(raw), d_da(da), d_dm(dm), d_dls(dls), d_dlp(dlp), d_act(nA), d_mu(nA), d_ls(nA),
              d_lpi(B), d_lprob(B), d_draw(draw0);
          pompc::cuda::policy_head_forward(d_act.p, d_mu.p, d_ls.p, d_lpi.p, d_lprob.p, d_raw.p,
                                           nullptr, B, A, head, 9, 2, 0, nullptr);
          pompc::cuda::policy_head_backward(d_draw.p, d_da.p, d_dm.p, d_dls.p, d_dlp.p, d_raw.p, B,
                                            A, head, 9, 2, nullptr);
          // The same Philox words; the kernels' float Box-Muller moves eps by <= 12 u |eps|
          // (kernels/philox.cuh); float tanh/exp differ by an ulp or two between libm and CUDA.
          using pompc::test::check_close;
          CHECK(check_close("action", d_act.host(), act, 1e-6, 1e-5));
          CHECK(check_close("mu", d_mu.host(), mu, 1e-6, 1e-5));
          CHECK(check_close("log_std", d_ls.host(), ls, 1e-5, 1e-5));
          // Sums over A terms, log_pi scaled by A: a few ulps of A * |row sum|.
          CHECK(check_close("log_prob", d_lprob.host(), lprob, 1e-3, 1e-4));
          CHECK(check_close("log_pi", d_lpi.host(), lpi, 1e-2, 1e-4));
          // O(A) gradient terms (log_pi's factor A); a sample u within a few ulps of +-1 (eps's
          // float Box-Muller error times exp(log_std), an ulp of tanh) could flip the clamp's
          // mask (odds ~1e-2 over these shapes; not at these seeds under emulation).
          CHECK(check_close("draw", d_draw.host(), draw, 1e-3, 1e-3));
        }
  }
}

// policy_log_ratio (PO-MPC's KL-regularised TD target): the op against the two densities of the
// same action computed independently in double, for both forms; identical heads give exactly 0;
// float vs double; kernels/policy.cu against the reference.
namespace {

// log N(x; c, e^ls) summed over a row, without the constant (it cancels in the ratio).
double gauss_row(const std::vector<double>& x, const std::vector<double>& c,
                 const std::vector<double>& ls) {
  double s = 0;
  for (size_t j = 0; j < x.size(); ++j) {
    const double y = (x[j] - c[j]) / std::exp(ls[j]);
    s += -0.5 * y * y - ls[j];
  }
  return s;
}

}  // namespace

TEST_SUITE("ops") {
  TEST_CASE("policy_log_ratio: log pi(a) - log pi_prior(a) of pi's own sample, both forms") {
    Rng rng(17);
    for (const PolicyHead& h : {PolicyHead{}, clamped_head(-3.0f, 1.0f)})
      for (int A : {1, 6, 38}) {
        CAPTURE(A);
        const bool clamped = h.form == PolicyForm::clamped;
        CAPTURE(clamped);
        const int B = 5;
        // Means in [-1, 1], s in [0.3, 1] (TD-MPC2 range: log_std in [-2.2, 0.6]) keep |u| small
        // enough that atanh(tanh(u)) recovers u to ~1e-11 and the prior's stds away from 0.
        std::vector<double> raw(static_cast<size_t>(B) * 2 * A), rawp(raw.size());
        for (std::vector<double>* r : {&raw, &rawp})
          for (size_t i = 0; i < r->size(); ++i)
            (*r)[i] = int(i % (2 * A)) < A ? rng.uniform(-1.0, 1.0) : rng.uniform(0.3, 1.0);
        const uint64_t seed = 3, offset = 8;
        const Outputs o = run_forward(raw, B, A, h, seed, offset);
        const Outputs op = run_forward(rawp, B, A, h, seed, offset);
        std::vector<double> got(B);
        pompc::ref::policy_log_ratio<double>(got.data(), raw.data(), rawp.data(), B, A, h, seed,
                                             offset);
        for (int b = 0; b < B; ++b) {
          std::vector<double> x(A), c(A), cp(A), ls(A), lsp(A);
          for (int j = 0; j < A; ++j) {
            const size_t i = static_cast<size_t>(b) * A + j;
            ls[j] = o.log_std[i];
            lsp[j] = op.log_std[i];
            // The sample space: squashed, u = atanh(action) (the density of a = tanh(u) is the
            // density of u over the same Jacobian for both heads); clamped, the pre-clamp u.
            const double eps = pompc::philox_normal(seed, offset, i);
            c[j] = clamped ? o.mu[i] : raw[static_cast<size_t>(b) * 2 * A + j];
            cp[j] = clamped ? op.mu[i] : rawp[static_cast<size_t>(b) * 2 * A + j];
            x[j] = clamped ? o.mu[i] + std::exp(ls[j]) * eps : std::atanh(o.action[i]);
          }
          const double want = gauss_row(x, c, ls) - gauss_row(x, cp, lsp);
          CHECK(got[b] == doctest::Approx(want).epsilon(1e-9).scale(1.0));
        }
        // The same head on both sides: 0 up to the rounding of (c + std eps - c) / std.
        pompc::ref::policy_log_ratio<double>(got.data(), raw.data(), raw.data(), B, A, h, seed,
                                             offset);
        for (double g : got) CHECK(std::fabs(g) < 1e-12);
      }
  }

  TEST_CASE("policy_log_ratio: cuda matches the reference; float equals double") {
    for (const PolicyHead& h : {PolicyHead{}, clamped_head(-3.0f, 1.0f)})
      for (int A : {1, 6, 38, 300})  // 300: more than one element per thread
        for (int B : {1, 33, 257}) {
          CAPTURE(A);
          CAPTURE(B);
          const size_t nA = static_cast<size_t>(B) * A;
          const auto raw = pompc::test::normals(2 * nA, 1, 1.0f);
          const auto rawp = pompc::test::normals(2 * nA, 2, 1.0f);
          std::vector<float> out(B);
          pompc::ref::policy_log_ratio(out.data(), raw.data(), rawp.data(), B, A, h, 9, 2);
          std::vector<double> rawd(raw.begin(), raw.end()), rawpd(rawp.begin(), rawp.end()),
              outd(B);
          pompc::ref::policy_log_ratio<double>(outd.data(), rawd.data(), rawpd.data(), B, A, h, 9,
                                               2);
          // A sum of A terms (-0.5 y^2 can reach ~1e4 for the squashed head's small prior stds):
          // float rounding of a few ulps of the largest term.
          using pompc::test::check_close;
          CHECK(check_close("log_ratio float", std::vector<float>(outd.begin(), outd.end()), out,
                            1e-2, 1e-4));
          Dev d_raw(raw), d_rawp(rawp), d_out(static_cast<size_t>(B));
          pompc::cuda::policy_log_ratio(d_out.p, d_raw.p, d_rawp.p, B, A, h, 9, 2, nullptr);
          CHECK(check_close("log_ratio cuda", d_out.host(), out, 1e-2, 1e-4));
        }
  }
}
