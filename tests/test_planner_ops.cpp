// The MPPI ops (src/ref/mppi.h, kernels/mppi.cu) through the Ops interface: parity of every
// stage with the same Philox noise (and the fused mppi_elites_update bit for bit its three stages),
// edge shapes, and MPPI converging on a known optimum with a hand-made objective on both backends.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "common.h"
#include "ops.h"
#include "philox.cuh"
#include "test_util.h"

namespace {

using pompc::MppiShape;
using pompc::Ops;
using pompc::test::BackendArray;
using pompc::test::check_close;
using pompc::test::normals;

// Everything one planner iteration touches, on one backend.
struct Plan {
  MppiShape sh;
  BackendArray<float> mean, std, prev, actions, value, elite_value, score, action, mu_p, sigma_p;
  BackendArray<int32_t> elite_idx;
  BackendArray<uint8_t> first;
  Plan(Ops& o, const MppiShape& s)
      : sh(s),
        mean(o, size_t(s.S) * s.H * s.A),
        std(o, size_t(s.S) * s.H * s.A),
        prev(o, size_t(s.S) * s.H * s.A),
        actions(o, size_t(s.H) * s.S * s.N * s.A),
        value(o, size_t(s.S) * s.N),
        elite_value(o, size_t(s.S) * s.E),
        score(o, size_t(s.S) * s.E),
        action(o, size_t(s.S) * s.A),
        mu_p(o, size_t(s.S) * s.A),
        sigma_p(o, size_t(s.S) * s.A),
        elite_idx(o, size_t(s.S) * s.E),
        first(o, size_t(s.S)) {}
};

// Runs init, sample, elites (on the given values), update and select on one backend.
void run_stages(Ops& o, Plan& p, const std::vector<float>& prev, const std::vector<uint8_t>& first,
                const std::vector<float>& pi_cols, const std::vector<float>& value) {
  p.prev.put(prev);
  p.first.put(first);
  p.actions.put(pi_cols);  // the policy columns n < P (the rest is overwritten by sampling)
  o.mppi_init(p.mean.p, p.std.p, p.prev.p, p.first.p, p.sh, 2.0f);
  o.mppi_sample(p.actions.p, p.mean.p, p.std.p, p.sh, 7, 3);
  p.value.put(value);
  o.mppi_elites(p.elite_idx.p, p.elite_value.p, p.value.p, p.sh);
  o.mppi_update(p.mean.p, p.std.p, p.score.p, p.actions.p, p.elite_idx.p, p.elite_value.p, p.sh,
                0.5f, 0.05f, 2.0f);
  o.mppi_select(p.action.p, p.mu_p.p, p.sigma_p.p, p.actions.p, p.elite_idx.p, p.score.p,
                p.std.p, p.sh, true, 7, 4);
}

void parity_case(const MppiShape& sh) {
  CAPTURE(sh.S);
  CAPTURE(sh.H);
  CAPTURE(sh.N);
  CAPTURE(sh.P);
  CAPTURE(sh.E);
  CAPTURE(sh.A);
  auto ref = pompc::make_ref_ops();
  auto gpu = pompc::make_cuda_ops();
  const auto prev = normals(size_t(sh.S) * sh.H * sh.A, 1, 0.5f);
  std::vector<uint8_t> first(sh.S);
  for (int s = 0; s < sh.S; ++s) first[s] = s % 3 == 0;  // a mix of warm and cold starts
  const auto pi_cols = normals(size_t(sh.H) * sh.S * sh.N * sh.A, 2, 0.5f);
  auto value = normals(size_t(sh.S) * sh.N, 3, 10.0f);
  for (size_t i = 0; i < value.size(); i += 7) value[i] = value[i / 2];  // ties
  if (value.size() > 5) value[5] = NAN;                                   // NaN counts as 0
  Plan a(*ref, sh), b(*gpu, sh);
  run_stages(*ref, a, prev, first, pi_cols, value);
  run_stages(*gpu, b, prev, first, pi_cols, value);
  // The policy columns are untouched; samples: the same draw, a GPU may fuse mean + std * eps.
  CHECK(check_close("actions", b.actions.get(), a.actions.get(), 1e-6, 1e-6));
  // Exact top-E on identical values, ties to the lower index: the same set in the same order.
  CHECK(b.elite_idx.get() == a.elite_idx.get());
  CHECK(check_close("elite_value", b.elite_value.get(), a.elite_value.get(), 0, 0));
  // Scores: expf vs std::exp (an ulp); mean/std: E-term sums in the same order.
  CHECK(check_close("score", b.score.get(), a.score.get(), 1e-7, 1e-5));
  CHECK(check_close("mean", b.mean.get(), a.mean.get(), 1e-6, 1e-5));
  CHECK(check_close("std", b.std.get(), a.std.get(), 1e-6, 1e-5));
  CHECK(check_close("mu_p", b.mu_p.get(), a.mu_p.get(), 1e-6, 1e-6));  // the same elite
  CHECK(check_close("sigma_p", b.sigma_p.get(), a.sigma_p.get(), 1e-6, 1e-5));
  CHECK(check_close("action", b.action.get(), a.action.get(), 1e-6, 1e-5));
  // The planner's fused mppi_elites_update: bit for bit elites then update, on each backend.
  const auto same_bits = [](const std::vector<float>& x, const std::vector<float>& y) {
    return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
  };
  // Its returns: value = w_0 terms_0 + w_1 terms_1 (discounted_sum), and terms_1 = 0 with w_0 = 1
  // gives back `value` exactly, so the fused op's elites, scores, mean and std must be the stages'
  // bits; a second call with other weights must write discounted_sum's bits into value.
  auto terms = value;
  terms.resize(2 * value.size(), 0.0f);
  const pompc::TermWeights keep{2, {1.0f, 0.5f}}, mix{2, {0.99f, -0.25f}};
  for (auto [o, p] : {std::pair{ref.get(), &a}, std::pair{gpu.get(), &b}}) {
    Plan f(*o, sh);
    BackendArray<float> t(*o, terms.size()), g(*o, value.size());
    t.put(terms);
    o->mppi_elites_update(f.elite_idx.p, f.elite_value.p, f.mean.p, f.std.p, f.score.p, f.value.p,
                          t.p, keep, p->actions.p, sh, 0.5f, 0.05f, 2.0f);
    const auto v = f.value.get(), v0 = p->value.get();  // a GPU may canonicalise the NaN's bits
    size_t differ = v.size() == v0.size() ? 0 : 1;
    for (size_t i = 0; i < v.size() && !differ; ++i)
      differ += !(std::isnan(v[i]) && std::isnan(v0[i])) && std::memcmp(&v[i], &v0[i], 4) != 0;
    CHECK(differ == 0);
    CHECK(f.elite_idx.get() == p->elite_idx.get());
    CHECK(same_bits(f.elite_value.get(), p->elite_value.get()));
    CHECK(same_bits(f.score.get(), p->score.get()));
    CHECK(same_bits(f.mean.get(), p->mean.get()));
    CHECK(same_bits(f.std.get(), p->std.get()));
    std::vector<float> t1(terms.size());
    for (size_t i = 0; i < t1.size(); ++i)
      t1[i] = i < value.size() ? terms[i] : 3 * terms[i - value.size()];
    t.put(t1);
    o->mppi_elites_update(f.elite_idx.p, f.elite_value.p, f.mean.p, f.std.p, f.score.p, f.value.p,
                          t.p, mix, p->actions.p, sh, 0.5f, 0.05f, 2.0f);
    o->discounted_sum(g.p, t.p, int64_t(value.size()), mix);
    CHECK(same_bits(f.value.get(), g.get()));
  }
}

}  // namespace

TEST_SUITE("planner") {
  TEST_CASE("mppi ops: cuda matches the reference, stage by stage") {
    parity_case({1, 3, 512, 24, 64, 6});   // the defaults, one state
    parity_case({8, 3, 512, 24, 64, 38});  // 8 states, dog's action dim
    parity_case({3, 1, 33, 0, 33, 1});     // horizon 1, no policy trajectories, E = N, A = 1
    parity_case({2, 4, 100, 100, 7, 21});  // P = N: nothing sampled
  }

  TEST_CASE("mppi_sample's second output: every column's actions at strided rows, gaps untouched") {
    // With rows_out (the world model's [z, a] rows: stride Z + A, actions at column Z), the
    // sampled actions are the ones without it, bit for bit, and rows_out holds every sample's
    // actions, the policy columns n < P copied; the floats between them keep their sentinel.
    const MppiShape sh{2, 3, 40, 5, 8, 6};
    const int64_t ld = 17;  // Z = 11 latent columns, then A = 6 action columns
    const int Z = 11;
    const size_t rows = size_t(sh.H) * sh.S * sh.N, span = rows * size_t(ld);
    const std::vector<float> pi_cols = pompc::test::normals(rows * sh.A, 3, 0.5f);
    for (int b = 0; b < 2; ++b) {
      CAPTURE(b);
      auto o = b ? pompc::make_cuda_ops() : pompc::make_ref_ops();
      Plan plain(*o, sh), with(*o, sh);
      for (Plan* p : {&plain, &with}) {
        p->prev.put(std::vector<float>(size_t(sh.S) * sh.H * sh.A, 0.3f));
        p->first.put({1, 0});
        p->actions.put(pi_cols);
        o->mppi_init(p->mean.p, p->std.p, p->prev.p, p->first.p, sh, 2.0f);
      }
      BackendArray<float> out(*o, std::vector<float>(span, -7.0f));
      o->mppi_sample(plain.actions.p, plain.mean.p, plain.std.p, sh, 7, 3);
      o->mppi_sample(with.actions.p, with.mean.p, with.std.p, sh, 7, 3, out.p + Z, ld);
      const std::vector<float> a = plain.actions.get(), got = out.get();
      CHECK(with.actions.get() == a);
      std::vector<float> want(span, -7.0f);
      for (size_t r = 0; r < rows; ++r)
        std::copy_n(a.begin() + int64_t(r) * sh.A, sh.A, want.begin() + int64_t(r) * ld + Z);
      CHECK(std::memcmp(got.data(), want.data(), span * sizeof(float)) == 0);
      CHECK_THROWS_WITH(
          o->mppi_sample(with.actions.p, with.mean.p, with.std.p, sh, 7, 3, out.p, sh.A - 1),
          doctest::Contains("the rows' stride (5) must be >= the action dim A (6)"));
    }
  }

  TEST_CASE("mppi_init: warm start shifts the previous mean, first steps start at 0") {
    auto o = pompc::make_ref_ops();
    const MppiShape sh{2, 3, 8, 0, 2, 2};
    Plan p(*o, sh);
    p.prev.put({1, 2, 3, 4, 5, 6, /*state 1*/ 7, 8, 9, 10, 11, 12});
    p.first.put({0, 1});
    o->mppi_init(p.mean.p, p.std.p, p.prev.p, p.first.p, sh, 2.0f);
    CHECK(p.mean.get() == std::vector<float>{3, 4, 5, 6, 0, 0, 0, 0, 0, 0, 0, 0});
    CHECK(p.std.get() == std::vector<float>(12, 2.0f));
  }

  TEST_CASE("mppi shapes out of range name the fix") {
    auto o = pompc::make_ref_ops();
    MppiShape sh{1, 3, 512, 24, 600, 1};
    Plan p(*o, {1, 3, 8, 0, 2, 1});
    CHECK_THROWS_WITH_AS(o->mppi_elites(p.elite_idx.p, p.elite_value.p, p.value.p, sh),
                         doctest::Contains("num_elites (600) must be in [1, num_samples = 512]"),
                         pompc::Error);
    sh = {1, 0, 512, 24, 64, 1};
    CHECK_THROWS_WITH_AS(o->mppi_sample(p.actions.p, p.mean.p, p.std.p, sh, 1, 1),
                         doctest::Contains("horizon (0) must be >= 1"), pompc::Error);
    sh = {1, 3, 512, 513, 64, 1};
    CHECK_THROWS_WITH_AS(o->mppi_sample(p.actions.p, p.mean.p, p.std.p, sh, 1, 1),
                         doctest::Contains("num_pi_trajs (513)"), pompc::Error);
  }

  TEST_CASE("mppi converges on a known optimum (reward -|a - a*|^2) on both backends") {
    // The objective stands in for the world model: value(n) = -sum_t |a_t,n - a*_t|^2.
    const MppiShape sh{2, 3, 512, 0, 64, 4};
    const std::vector<float> target = {0.3f, -0.5f, 0.8f, 0.0f};
    for (bool cuda : {false, true}) {
      CAPTURE(cuda);
      auto o = cuda ? pompc::make_cuda_ops() : pompc::make_ref_ops();
      Plan p(*o, sh);
      p.first.put(std::vector<uint8_t>(sh.S, 1));
      o->mppi_init(p.mean.p, p.std.p, p.prev.p, p.first.p, sh, 2.0f);
      for (int it = 0; it < 30; ++it) {
        o->mppi_sample(p.actions.p, p.mean.p, p.std.p, sh, 11, it);
        const auto act = p.actions.get();
        std::vector<float> value(size_t(sh.S) * sh.N, 0.0f);
        for (int t = 0; t < sh.H; ++t)
          for (int s = 0; s < sh.S; ++s)
            for (int n = 0; n < sh.N; ++n)
              for (int j = 0; j < sh.A; ++j) {
                const float d = act[((size_t(t) * sh.S + s) * sh.N + n) * sh.A + j] - target[j];
                value[size_t(s) * sh.N + n] -= d * d;
              }
        p.value.put(value);
        o->mppi_elites(p.elite_idx.p, p.elite_value.p, p.value.p, sh);
        o->mppi_update(p.mean.p, p.std.p, p.score.p, p.actions.p, p.elite_idx.p, p.elite_value.p,
                       sh, 0.5f, 0.05f, 2.0f);
      }
      const auto mean = p.mean.get(), std = p.std.get();
      for (int s = 0; s < sh.S; ++s)
        for (int t = 0; t < sh.H; ++t)
          for (int j = 0; j < sh.A; ++j) {
            CHECK(std::fabs(mean[(size_t(s) * sh.H + t) * sh.A + j] - target[j]) < 0.05f);
            CHECK(std[(size_t(s) * sh.H + t) * sh.A + j] == 0.05f);  // shrunk to min_std
          }
    }
  }

  TEST_CASE("mppi_select draws elites with probability score (Gumbel-max)") {
    // Two elites with scores 0.8 / 0.2 (values chosen so exp(0.5 dv) gives that ratio): over many
    // seeds the first is drawn ~80% of the time. 4000 draws: standard error 0.0063.
    auto o = pompc::make_ref_ops();
    const MppiShape sh{1, 1, 2, 0, 2, 1};
    Plan p(*o, sh);
    p.actions.put({-0.5f, 0.5f});
    p.std.put({0.1f});
    p.elite_idx.put({0, 1});
    p.score.put({0.8f, 0.2f});
    int first = 0;
    const int draws = 4000;
    for (int seed = 0; seed < draws; ++seed) {
      o->mppi_select(p.action.p, p.mu_p.p, p.sigma_p.p, p.actions.p, p.elite_idx.p, p.score.p,
                     p.std.p, sh, false, seed, 0);
      first += p.mu_p.get()[0] == -0.5f;
    }
    CHECK(first / double(draws) == doctest::Approx(0.8).epsilon(0.04));
  }
}
