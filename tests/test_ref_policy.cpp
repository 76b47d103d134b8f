// The policy head (src/ref/policy.h): forward against closed forms (the Gaussian density of u
// computed from u itself, the change of variables through tanh, both entropy forms), the log_std
// squash bounds, Philox noise and determinism, and the backward against double central
// differences for every upstream gradient and both entropy forms, A in {1, 6, 21, 38}.
//   build-ref/test_emu -ts=ops -tc='policy*'
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "philox.cuh"
#include "ref/policy.h"
#include "test_ref_fd.h"

using namespace pompc::test::fd;
using pompc::ref::EntropyForm;
using pompc::ref::PolicyHead;

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
                                          o.log_pi.data(), o.log_prob.data(), raw.data(), B, A, h,
                                          seed, offset);
  return o;
}

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
                                             lprobf.data(), rawf.data(), B, A, paper, seed, offset);
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
                                           raw.data(), 1, A, td, 1, 2);
    CHECK(ls[0] == -10.0f);
    CHECK(ls[1] == -4.0f);
    CHECK(ls[2] == 2.0f);
    PolicyHead bmpc{-3.0f, 1.0f, EntropyForm::paper};
    pompc::ref::policy_head_forward<float>(a.data(), nullptr, ls.data(), nullptr, nullptr,
                                           raw.data(), 1, A, bmpc, 1, 2);
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
                                             raw.data(), B, A, PolicyHead{}, seed, offset);
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
}
