// The MPPI planner (src/agent/planner.h) over hand-built latent models: a known optimum, the
// policy trajectories' floor, parity of whole plans across backends, edge shapes, reanalysis
// leaving the warm-start memory alone, and CUDA graph capture/replay.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "agent/planner.h"
#include "agent/world_model_latent.h"
#include "bench_util.h"
#include "model/world_model.h"
#include "common.h"
#include "ops.h"
#include "test_util.h"

namespace {

using pompc::Ops;
using pompc::agent::LatentModel;
using pompc::agent::Planner;
using pompc::agent::PlannerSettings;
using pompc::test::check_close;
using pompc::model::ModelConfig;
using pompc::model::WorldModel;
using Array = pompc::test::BackendArray<float>;

std::vector<float> host(Ops& o, const float* p, size_t n) {
  std::vector<float> h(n);
  o.copy_to_host(h.data(), p, n * sizeof(float));
  return h;
}

// Identity encoder and dynamics (z = obs, Z = O): the part both hand-built models share.
struct IdentityLatent : LatentModel {
  Ops& o;
  int Z, A;
  IdentityLatent(Ops& ops, int z, int a) : o(ops), Z(z), A(a) {}
  int obs_dim() const override { return Z; }
  int latent_dim() const override { return Z; }
  int action_dim() const override { return A; }
  void encode(const float* obs, int rows, float* z) override {
    o.copy_within(z, obs, size_t(rows) * Z * sizeof(float));
  }
  void next(const float* z, const float*, int rows, float* z_next) override {
    o.copy_within(z_next, z, size_t(rows) * Z * sizeof(float));
  }
};

// Reward -scale |a - a*|^2, zero terminal value, a policy that always proposes `pi_action`. Its
// maths runs on the host (copies in and out), so it is exact and independent of the backend.
struct QuadraticModel final : IdentityLatent {
  std::vector<float> target, pi_action;
  float scale;
  QuadraticModel(Ops& ops, int z, std::vector<float> a_star, std::vector<float> pi, float sc)
      : IdentityLatent(ops, z, int(a_star.size())),
        target(std::move(a_star)),
        pi_action(std::move(pi)),
        scale(sc) {}
  void reward(const float*, const float* a, int rows, float* r) override {
    const auto ha = host(o, a, size_t(rows) * A);
    std::vector<float> hr(rows);
    for (int i = 0; i < rows; ++i) {
      float d2 = 0;
      for (int j = 0; j < A; ++j) d2 += (ha[size_t(i) * A + j] - target[j]) * (ha[size_t(i) * A + j] - target[j]);
      hr[i] = -scale * d2;
    }
    o.copy_to_backend(r, hr.data(), hr.size() * sizeof(float));
  }
  void pi(const float*, int rows, uint64_t, pompc::PhiloxOffset, float* a) override {
    std::vector<float> ha(size_t(rows) * A);
    for (int i = 0; i < rows; ++i)
      for (int j = 0; j < A; ++j) ha[size_t(i) * A + j] = pi_action[j];
    o.copy_to_backend(a, ha.data(), ha.size() * sizeof(float));
  }
  void value(const float*, int rows, uint64_t, pompc::PhiloxOffset, float* v) override {
    o.fill(v, rows, 0.0f);
  }
};

// The same idea written with backend ops only (no host round trip), so a plan over it can be
// captured as a CUDA graph: reward = w . a + b (a linear head), pi = tanh of a fixed linear map
// of z, value = a linear head of z.
struct LinearModel final : IdentityLatent {
  float *w_r, *b_r, *w_pi, *w_v, *b_v;
  LinearModel(Ops& ops, int z, int a) : IdentityLatent(ops, z, a) {
    auto put = [&](size_t n, float s0, float step) {
      std::vector<float> h(n);
      for (size_t i = 0; i < n; ++i) h[i] = s0 + step * float(i % 7) - 0.3f * float(i % 3);
      float* p = o.alloc<float>(n);
      o.copy_to_backend(p, h.data(), n * sizeof(float));
      return p;
    };
    w_r = put(size_t(A), 0.5f, 0.1f);
    b_r = put(1, 0.1f, 0.0f);
    w_pi = put(size_t(A) * Z, -0.2f, 0.05f);
    w_v = put(size_t(Z), 0.3f, -0.02f);
    b_v = put(1, 0.0f, 0.0f);
  }
  ~LinearModel() override {
    for (float* p : {w_r, b_r, w_pi, w_v, b_v}) o.free_bytes(p);
  }
  void reward(const float*, const float* a, int rows, float* r) override {
    o.linear_forward(r, a, w_r, b_r, rows, A, 1);
  }
  void pi(const float* z, int rows, uint64_t, pompc::PhiloxOffset, float* a) override {
    o.linear_forward(a, z, w_pi, nullptr, rows, Z, A);
  }
  void value(const float* z, int rows, uint64_t, pompc::PhiloxOffset, float* v) override {
    o.linear_forward(v, z, w_v, b_v, rows, Z, 1);
  }
};

void put_obs(Ops& o, Planner& p, int S, int Z, uint8_t first) {
  std::vector<float> obs(size_t(S) * Z);
  for (size_t i = 0; i < obs.size(); ++i) obs[i] = 0.1f * float(i % 11) - 0.5f;
  o.copy_to_backend(p.obs_buffer(), obs.data(), obs.size() * sizeof(float));
  std::vector<uint8_t> f(S, first);
  o.copy_to_backend(p.first_buffer(), f.data(), f.size());
}

// A small world model (3 Q heads, fp32 GEMMs) and planner for whole plans on both backends.
ModelConfig small_world_model() {
  ModelConfig c;
  c.obs_dim = 7;
  c.action_dim = 3;
  c.latent_dim = 16;
  c.mlp_dim = 24;
  c.enc_dim = 20;
  c.num_q = 3;
  c.seed = 5;
  c.tf32 = false;
  return c;
}
PlannerSettings small_planner() {
  PlannerSettings cfg;
  cfg.num_samples = 64;
  cfg.num_elites = 8;
  cfg.num_pi_trajs = 6;
  return cfg;
}

}  // namespace

TEST_SUITE("planner") {
  TEST_CASE("planner: the mean reaches a known optimum and the std shrinks to min_std") {
    const std::vector<float> a_star = {0.3f, -0.5f, 0.8f};
    const int A = int(a_star.size());
    for (bool cuda : {false, true}) {
      CAPTURE(cuda);
      auto o = cuda ? pompc::make_cuda_ops() : pompc::make_ref_ops();
      QuadraticModel m(*o, 4, a_star, std::vector<float>(A, 0.0f), 1.0f);
      PlannerSettings cfg;
      cfg.iterations = 12;  // from std 2, about 10 elite updates reach min_std
      Planner p(*o, m, cfg, 2);
      put_obs(*o, p, 2, 4, 1);
      p.plan(2, false, true, 5, 0);
      const auto mean = host(*o, p.mean(), 2 * 3 * A), std = host(*o, p.std(), 2 * 3 * A);
      for (size_t i = 0; i < mean.size(); ++i) {
        CHECK(std::fabs(mean[i] - a_star[i % A]) < 0.05f);
        CHECK(std[i] == doctest::Approx(cfg.min_std));
      }
      // Without exploration the action is the chosen elite's first action: near a* too.
      const auto act = host(*o, p.action(), 2 * A);
      for (size_t i = 0; i < act.size(); ++i) CHECK(std::fabs(act[i] - a_star[i % A]) < 0.1f);
    }
  }

  TEST_CASE("planner: the plan is never worse than the best policy-prior trajectory") {
    // The policy proposes a* itself; random samples are poor (max_std 2, few samples). With one
    // elite, the chosen sequence is the best one: the policy's (value 0) or one at least as good.
    const std::vector<float> a_star = {0.7f, -0.2f};
    auto o = pompc::make_ref_ops();
    QuadraticModel m(*o, 3, a_star, a_star, 1.0f);
    PlannerSettings cfg;
    cfg.num_samples = 16;
    cfg.num_pi_trajs = 2;
    cfg.num_elites = 1;
    Planner p(*o, m, cfg, 4);
    put_obs(*o, p, 4, 3, 1);
    p.plan(4, false, true, 9, 0);
    const auto value = host(*o, p.value(), 4 * 16);
    for (int s = 0; s < 4; ++s) {
      float best = -INFINITY;
      for (int n = 0; n < 16; ++n) best = std::fmax(best, value[size_t(s) * 16 + n]);
      CHECK(best >= 0.0f);  // the policy trajectories' return is exactly 0, the maximum
    }
    const auto mu = host(*o, p.mu_p(), 4 * 2);
    for (size_t i = 0; i < mu.size(); ++i) CHECK(mu[i] == doctest::Approx(a_star[i % 2]));
  }

  TEST_CASE("planner: whole plans agree across backends, at edge shapes") {
    struct Case {
      int S, A, N, E, P, H;
    };
    for (const Case c : {Case{1, 6, 512, 64, 24, 3}, Case{8, 38, 512, 64, 24, 3},
                         Case{3, 1, 64, 64, 0, 1}, Case{64, 2, 32, 8, 4, 2}}) {
      CAPTURE(c.S);
      CAPTURE(c.A);
      CAPTURE(c.N);
      CAPTURE(c.E);
      CAPTURE(c.P);
      CAPTURE(c.H);
      PlannerSettings cfg;
      cfg.num_samples = c.N;
      cfg.num_elites = c.E;
      cfg.num_pi_trajs = c.P;
      cfg.horizon = c.H;
      std::vector<float> out[2][5];
      for (int b = 0; b < 2; ++b) {
        auto o = b ? pompc::make_cuda_ops() : pompc::make_ref_ops();
        o->set_tf32(false);
        LinearModel m(*o, 5, c.A);
        Planner p(*o, m, cfg, c.S);
        put_obs(*o, p, c.S, 5, 1);
        p.plan(c.S, true, true, 3, 1);
        put_obs(*o, p, c.S, 5, 0);  // a second step, warm-started from the first
        p.plan(c.S, true, true, 3, 2);
        const size_t sa = size_t(c.S) * c.A, sha = sa * c.H;
        out[b][0] = host(*o, p.action(), sa);
        out[b][1] = host(*o, p.mu_p(), sa);
        out[b][2] = host(*o, p.sigma_p(), sa);
        out[b][3] = host(*o, p.mean(), sha);
        out[b][4] = host(*o, p.std(), sha);
      }
      // Linear rewards: sums of A products in fp32 (GEMM order differs) decide near-ties among
      // elites only through differences far below these tolerances.
      CHECK(check_close("action", out[1][0], out[0][0], 1e-5, 1e-4));
      CHECK(check_close("mu_p", out[1][1], out[0][1], 1e-5, 1e-4));
      CHECK(check_close("sigma_p", out[1][2], out[0][2], 1e-5, 1e-4));
      CHECK(check_close("mean", out[1][3], out[0][3], 1e-5, 1e-4));
      CHECK(check_close("std", out[1][4], out[0][4], 1e-5, 1e-4));
    }
  }

  TEST_CASE("planner: reanalysis is a cold start and leaves the warm-start memory alone") {
    auto o = pompc::make_ref_ops();
    LinearModel m(*o, 5, 3);
    PlannerSettings cfg;
    cfg.num_samples = 64;
    cfg.num_elites = 8;
    cfg.num_pi_trajs = 4;
    Planner p(*o, m, cfg, 6);
    put_obs(*o, p, 6, 5, 1);
    p.plan(6, false, true, 1, 0);  // acting: sets the warm-start memory
    put_obs(*o, p, 6, 5, 0);
    p.plan(6, false, false, 1, 7);  // reanalysis with first = 0: must still start cold
    const auto cold = host(*o, p.mean(), 6 * 3 * 3);
    p.plan(6, false, true, 1, 7);  // the same step acting: warm-started from the first plan
    const auto warm = host(*o, p.mean(), 6 * 3 * 3);
    CHECK(cold != warm);
    // A cold acting plan with first = 1 reproduces the reanalysis plan exactly.
    put_obs(*o, p, 6, 5, 1);
    p.plan(6, false, true, 1, 7);
    CHECK(host(*o, p.mean(), 6 * 3 * 3) == cold);
  }

  // plan_graph (eager, then capture, then replays) against plan() on a twin planner over the
  // same model: the same actions, targets and MPPI mean / std bit for bit, plan after plan, with
  // new observations, first flags and steps each time (read by the replays from the buffers),
  // warm-start memory carried between plans, and two keys (acting, reanalysis) interleaved.
  TEST_CASE("planner: plan_graph's replays equal plan() bit for bit at every step") {
    for (bool cuda : {false, true}) {
      CAPTURE(cuda);
      auto o = cuda ? pompc::make_cuda_ops() : pompc::make_ref_ops();
      o->set_tf32(false);
      LinearModel m(*o, 5, 6);
      PlannerSettings cfg;
      cfg.num_samples = 64;
      cfg.num_elites = 8;
      cfg.num_pi_trajs = 4;
      Planner graphed(*o, m, cfg, 3), eager(*o, m, cfg, 3);
      const int S = 3, A = 6, H = cfg.horizon;
      std::vector<float> last_action;
      for (int k = 0; k < 6; ++k) {
        CAPTURE(k);
        const bool reanalysis = k % 3 == 2;  // a second key between acting plans
        const uint64_t step = reanalysis ? (uint64_t{1} << 51) + uint64_t(k) : uint64_t(k);
        std::vector<float> obs(size_t(S) * 5);
        for (size_t i = 0; i < obs.size(); ++i)
          obs[i] = 0.07f * float((i * 5 + size_t(k) * 3) % 13) - 0.4f;
        const std::vector<uint8_t> first = {uint8_t(k == 0), 0, uint8_t(k == 3)};
        for (Planner* p : {&graphed, &eager}) {
          o->copy_to_backend(p->obs_buffer(), obs.data(), obs.size() * sizeof(float));
          o->copy_to_backend(p->first_buffer(), first.data(), first.size());
        }
        const uint64_t base = Planner::offset_base(step);
        o->copy_to_backend(graphed.step_buffer(), &base, sizeof base);
        graphed.plan_graph(S, /*explore=*/true, /*warm=*/!reanalysis, 11);
        eager.plan(S, /*explore=*/true, /*warm=*/!reanalysis, 11, step);
        CHECK(host(*o, graphed.action(), size_t(S) * A) == host(*o, eager.action(), size_t(S) * A));
        CHECK(host(*o, graphed.mu_p(), size_t(S) * A) == host(*o, eager.mu_p(), size_t(S) * A));
        CHECK(host(*o, graphed.sigma_p(), size_t(S) * A) ==
              host(*o, eager.sigma_p(), size_t(S) * A));
        CHECK(host(*o, graphed.mean(), size_t(S) * H * A) ==
              host(*o, eager.mean(), size_t(S) * H * A));
        CHECK(host(*o, graphed.warm_mean(), size_t(S) * H * A) ==
              host(*o, eager.warm_mean(), size_t(S) * H * A));
        // The step reaches the replays: consecutive plans draw different exploration noise.
        const auto action = host(*o, graphed.action(), size_t(S) * A);
        if (!reanalysis) CHECK(action != last_action);
        if (!reanalysis) last_action = action;
      }
      CHECK(graphed.graphs() == 2);
    }
  }

  TEST_CASE("planner settings out of range name the fix") {
    PlannerSettings cfg;
    cfg.num_elites = 600;
    CHECK_THROWS_WITH_AS(cfg.validate(), "num_elites (600) must be in [1, num_samples = 512]",
                         pompc::Error);
    cfg = PlannerSettings{};
    cfg.num_pi_trajs = 513;
    CHECK_THROWS_WITH_AS(cfg.validate(), "num_pi_trajs (513) must be in [0, num_samples = 512]",
                         pompc::Error);
    cfg = PlannerSettings{};
    cfg.horizon = 0;
    CHECK_THROWS_WITH_AS(cfg.validate(), "horizon (0) must be >= 1", pompc::Error);
    CHECK(PlannerSettings{}.iterations_for(38) == 8);
    CHECK(PlannerSettings{}.iterations_for(6) == 6);
  }
  TEST_CASE("planner over the world model: whole plans agree across backends") {
    const ModelConfig c = small_world_model();
    PlannerSettings cfg = small_planner();
    const int S = 3;
    std::vector<float> out[2][3];
    for (int b = 0; b < 2; ++b) {
      auto o = b ? pompc::make_cuda_ops() : pompc::make_ref_ops();
      WorldModel wm(*o, c, S * cfg.num_samples);
      pompc::agent::WorldModelLatent latent(wm, S * cfg.num_samples);
      Planner p(*o, latent, cfg, S);
      std::vector<float> obs = pompc::test::normals(size_t(S) * c.obs_dim, 4, 1.0f);
      o->copy_to_backend(p.obs_buffer(), obs.data(), obs.size() * sizeof(float));
      std::vector<uint8_t> first(S, 1);
      o->copy_to_backend(p.first_buffer(), first.data(), S);
      p.plan(S, true, true, 21, 0);
      out[b][0] = host(*o, p.action(), size_t(S) * c.action_dim);
      out[b][1] = host(*o, p.mu_p(), size_t(S) * c.action_dim);
      out[b][2] = host(*o, p.value(), size_t(S) * cfg.num_samples);
    }
    // The returns: fp32 MLP passes whose sums run in different orders on the two backends; the
    // elites they select are far from ties at this size, so the chosen actions agree closely.
    CHECK(check_close("value", out[1][2], out[0][2], 1e-5, 1e-4));
    CHECK(check_close("mu_p", out[1][1], out[0][1], 1e-5, 1e-4));
    CHECK(check_close("action", out[1][0], out[0][0], 1e-5, 1e-4));
  }

  TEST_CASE("planner over the world model: G is the unfused chain's bit for bit (both backends)") {
    // The plan's fused path (WorldModel::rollout_terms on [z, a] rows the planner and the model
    // write in place: no concatenation, the dynamics' and reward's stacked first layers per step,
    // the reward's last layer once for all steps, the policy's action written beside z_H for the
    // Q pair; the returns inside mppi_elites_update) against the chain it replaces, run here op
    // by op on the last iteration's samples: repeat_rows, fill(G, 0), then per t reward, next
    // and scale_add(G, r_t, gamma^t), then value and scale_add(G, V, gamma^H). Both critics (Q:
    // TD-MPC2's pi + Q pair; V: BMPC's). Every parameter drawn at random (at init the reward and
    // Q heads are zero, and so would G be). Bit for bit on the reference backend and under the
    // emulation; on a real GPU within 1e-6 + 1e-5 |G| (below).
    PlannerSettings cfg = small_planner();
    cfg.iterations = 2;
    for (pompc::model::Critic critic : {pompc::model::Critic::q, pompc::model::Critic::v}) {
      ModelConfig c = small_world_model();
      c.critic = critic;
      if (critic == pompc::model::Critic::v) {  // BMPC: no Q term, the planner as the prior
        c.q_coef = 0.0f;
        c.prior_coef = 1.0f;
        c.prior = pompc::model::Prior::planner;
      }
      const int S = 3, N = cfg.num_samples, rows = S * N, H = cfg.horizon, Z = c.latent_dim,
                A = c.action_dim;
      for (int b = 0; b < 2; ++b) {
        CAPTURE(critic == pompc::model::Critic::q);
        CAPTURE(b);
        auto o = b ? pompc::make_cuda_ops() : pompc::make_ref_ops();
        WorldModel wm(*o, c, rows);
        for (auto set : {pompc::model::ParamSet::model, pompc::model::ParamSet::pi}) {
          const size_t n = wm.param_floats(set);
          const std::vector<float> w = pompc::test::normals(n, 30 + int(set), 0.3f);
          o->copy_to_backend(wm.params(set), w.data(), n * sizeof(float));
        }
        pompc::agent::WorldModelLatent latent(wm, rows);
        Planner p(*o, latent, cfg, S);
        const std::vector<float> obs = pompc::test::normals(size_t(S) * c.obs_dim, 4, 1.0f);
        o->copy_to_backend(p.obs_buffer(), obs.data(), obs.size() * sizeof(float));
        const std::vector<uint8_t> first(S, 1);
        o->copy_to_backend(p.first_buffer(), first.data(), S);
        p.plan(S, true, true, 21, 3);
        Array z0(*o, size_t(S) * Z), z(*o, size_t(rows) * Z), zn(*o, size_t(rows) * Z),
            r(*o, size_t(rows)), g(*o, size_t(rows));
        latent.encode(p.obs_buffer(), S, z0.p);
        o->repeat_rows(z.p, Z, z0.p, S, N, Z);
        o->fill(g.p, rows, 0.0f);
        float* zt = z.p;
        float* znext = zn.p;
        float discount = 1.0f;
        for (int t = 0; t < H; ++t) {
          const float* a = p.actions() + size_t(t) * rows * A;
          latent.reward(zt, a, rows, r.p);
          latent.next(zt, a, rows, znext);
          std::swap(zt, znext);
          o->scale_add(g.p, r.p, rows, discount, nullptr, 1.0f);
          discount *= cfg.discount;
        }
        const int last = cfg.iterations_for(A) - 1;
        latent.value(zt, rows, 21, pompc::PhiloxOffset(Planner::kValueBase + last, p.step_buffer()),
                     r.p);
        o->scale_add(g.p, r.p, rows, discount, nullptr, 1.0f);
        const std::vector<float> fused = host(*o, p.value(), size_t(rows)), chain = g.get();
        double spread = 0;  // the returns differ from sample to sample: G is not a constant
        for (float v : chain) spread = std::max(spread, std::fabs(double(v) - double(chain[0])));
        CHECK(spread > 1e-3);
#ifndef POMPC_EMU
        // On a real GPU the rollout's trunk is one strided-batched GEMM per layer where the chain
        // makes one GEMM per module: cuBLAS may pick other kernels (summation orders) for the
        // two.
        if (b == 1) {
          CHECK(check_close("G", fused, chain, 1e-6, 1e-5));
          continue;
        }
#endif
        CHECK(std::memcmp(fused.data(), chain.data(), fused.size() * sizeof(float)) == 0);
      }
    }
  }
}

namespace {
// Plan steps at dog 5M (default planner) for 1 and 8 states on a backend.
void bench_plan(pompc::Ops* o, int reps) {
  for (int S : {1, 8}) {
    ModelConfig c;
    pompc::model::set_model_size(c, "5");
    c.obs_dim = 223;
    c.action_dim = 38;
    PlannerSettings cfg;
    WorldModel wm(*o, c, S * cfg.num_samples);
    pompc::agent::WorldModelLatent latent(wm, S * cfg.num_samples);
    Planner p(*o, latent, cfg, S);
    std::vector<uint8_t> first(S, 0);
    o->copy_to_backend(p.first_buffer(), first.data(), S);
    uint64_t step = 0;
    const double ms = pompc::test::time_ms([&] { p.plan(S, true, true, 1, step++); }, reps,
                                           [&] { o->synchronize(); });
    std::printf(
        "bench: planner/plan dog 5M N=%d iterations=%d S=%d (%s): %.1f ms per plan step, "
        "%.1f ms per state\n",
        cfg.num_samples, cfg.iterations_for(c.action_dim), S, o->description().c_str(), ms,
        ms / S);
  }
}
}  // namespace

TEST_SUITE("bench") {
  TEST_CASE("bench plan: dog 5M, 512 samples, 8 iterations, 1 and 8 states") {
    auto o = pompc::make_ref_ops();
    bench_plan(o.get(), 1);
  }
  TEST_CASE("bench plan: dog 5M, 512 samples, 8 iterations, 1 and 8 states, CUDA [gpu-only]") {
    auto o = pompc::make_cuda_ops();
    bench_plan(o.get(), 20);
  }
}
