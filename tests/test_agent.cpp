// The agent (src/agent/agent.h) on a tiny TD-MPC2 model: acting returns actions and planner
// targets in range, warm starts only after the first step; an update on a host batch runs and
// reports finite losses; lazy reanalysis re-plans exactly the first slices' states and writes back
// exactly those records; the trainer's settings table rejects unknown keys naming the valid ones,
// and its presets set SPEC section 4's table.
//
// Run: build/test_emu -ts=agent
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "agent/agent.h"
#include "common.h"
#include "ops.h"
#include "philox.cuh"
#include "replay/replay_buffer.h"
#include "test_util.h"
#include "train/trainer.h"

namespace {

using pompc::agent::Agent;

pompc::model::ModelConfig tiny_model(int O, int A) {
  pompc::model::ModelConfig m;
  pompc::model::set_model_size(m, "1");
  m.obs_dim = O;
  m.action_dim = A;
  m.enc_dim = 32;
  m.mlp_dim = 32;
  m.latent_dim = 16;
  m.batch_size = 8;
  return m;
}

pompc::agent::PlannerSettings tiny_planner() {
  pompc::agent::PlannerSettings p;
  p.iterations = 2;
  p.num_samples = 32;
  p.num_elites = 8;
  p.num_pi_trajs = 4;
  return p;
}

}  // namespace

TEST_SUITE("agent") {
  TEST_CASE("agent: act gives actions in [-1, 1] and planner targets; update reports finite losses") {
    auto ops = pompc::make_ref_ops();
    const int O = 5, A = 2, S = 2;
    const auto mc = tiny_model(O, A);
    pompc::agent::AgentSettings as;
    as.max_states = S;
    Agent ag(*ops, mc, tiny_planner(), as);
    CHECK(ag.obs_dim() == O);
    CHECK(ag.action_dim() == A);
    const std::vector<float> obs = pompc::test::normals(size_t(S) * O, 3, 1.0f);
    const uint8_t first[S] = {1, 1};
    std::vector<float> a(S * A), mu(S * A), sigma(S * A);
    ag.act(obs.data(), first, S, /*explore=*/true, 7, 0, a.data(), mu.data(), sigma.data());
    for (int i = 0; i < S * A; ++i) {
      CHECK(a[i] >= -1.0f);
      CHECK(a[i] <= 1.0f);
      CHECK(mu[i] >= -1.0f);
      CHECK(mu[i] <= 1.0f);
      CHECK(sigma[i] >= 0.05f - 1e-6f);
      CHECK(sigma[i] <= 2.0f + 1e-6f);
    }
    // Deterministic acting: the same inputs and step give the same action.
    std::vector<float> d1(S * A), d2(S * A);
    ag.act(obs.data(), first, S, false, 7, 5, d1.data(), nullptr, nullptr);
    ag.act(obs.data(), first, S, false, 7, 5, d2.data(), nullptr, nullptr);
    CHECK(d1 == d2);

    const int B = mc.batch_size, H = mc.horizon;
    const auto b_obs = pompc::test::normals(size_t(H + 1) * B * O, 11, 1.0f);
    auto b_act = pompc::test::normals(size_t(H) * B * A, 12, 0.5f);
    for (float& x : b_act) x = std::fmax(-1.0f, std::fmin(1.0f, x));
    auto b_rew = pompc::test::normals(size_t(H) * B, 13, 1.0f);
    pompc::replay::SliceBatch sb;
    sb.batch = B;
    sb.obs = const_cast<float*>(b_obs.data());
    sb.action = b_act.data();
    sb.reward = b_rew.data();
    const uint64_t before = ag.world_model().updates();
    CHECK(ag.update(sb) == 0);
    CHECK(ag.update(sb, /*burst=*/true) == 0);
    CHECK(ag.world_model().updates() == before + 2);
    const auto st = ag.read_stats();
    for (float v : {st.consistency_loss, st.reward_loss, st.value_loss, st.total_loss,
                    st.grad_norm, st.pi_loss, st.pi_grad_norm, st.pi_scale})
      CHECK(std::isfinite(v));
    CHECK(st.reward_loss > 0.0f);
  }

  TEST_CASE("agent: a batch sampled into staging_batch() updates as the same batch passed in") {
    auto ops = pompc::make_ref_ops();
    const int O = 5, A = 2;
    for (const auto prior : {pompc::model::Prior::none, pompc::model::Prior::planner}) {
      CAPTURE(static_cast<int>(prior));
      auto mc = tiny_model(O, A);
      mc.prior = prior;
      const int B = mc.batch_size, H = mc.horizon;
      Agent own(*ops, mc, tiny_planner(), {}), staged(*ops, mc, tiny_planner(), {});
      std::vector<float> obs, act, rew, mu, sigma;
      pompc::replay::SliceBatch sb;
      sb.batch = B;
      for (int u = 0; u < 3; ++u) {  // the two staging slots in turn, burst and not
        obs = pompc::test::normals(size_t(H + 1) * B * O, 20 + u, 1.0f);
        act = pompc::test::normals(size_t(H) * B * A, 30 + u, 0.5f);
        rew = pompc::test::normals(size_t(H) * B, 40 + u, 1.0f);
        mu = pompc::test::normals(act.size(), 50 + u, 0.5f);
        sigma = pompc::test::normals(act.size(), 60 + u, 0.1f);
        for (float& x : act) x = std::fmax(-1.0f, std::fmin(1.0f, x));
        for (float& x : mu) x = std::fmax(-1.0f, std::fmin(1.0f, x));
        for (float& x : sigma) x = 0.5f + std::fabs(x);
        sb.obs = obs.data();
        sb.action = act.data();
        sb.reward = rew.data();
        sb.mu = prior == pompc::model::Prior::none ? nullptr : mu.data();
        sb.sigma = sb.mu ? sigma.data() : nullptr;
        const pompc::replay::SliceBatch slot = staged.staging_batch();
        REQUIRE(slot.batch == B);
        CHECK((slot.mu != nullptr) == (sb.mu != nullptr));
        std::copy(obs.begin(), obs.end(), slot.obs);
        std::copy(act.begin(), act.end(), slot.action);
        std::copy(rew.begin(), rew.end(), slot.reward);
        if (slot.mu) {
          std::copy(mu.begin(), mu.end(), slot.mu);
          std::copy(sigma.begin(), sigma.end(), slot.sigma);
        }
        own.update(sb, /*burst=*/u == 1);
        staged.update(slot, /*burst=*/u == 1);
      }
      for (pompc::model::ParamSet set : pompc::model::kParamSets) {
        const size_t n = own.world_model().param_floats(set);
        if (n == 0) continue;  // no learned prior
        std::vector<float> a(n), b(n);
        ops->copy_to_host(a.data(), own.world_model().params(set), n * sizeof(float));
        ops->copy_to_host(b.data(), staged.world_model().params(set), n * sizeof(float));
        CHECK(a == b);
      }
      // The staging slot's obs with other arrays of the caller's is refused.
      pompc::replay::SliceBatch mixed = staged.staging_batch();
      mixed.action = act.data();
      CHECK_THROWS_WITH_AS(staged.update(mixed),
                           doctest::Contains("pass staging_batch() unchanged"), pompc::Error);
    }
  }

  TEST_CASE("agent: a planner horizon unlike the model's is refused, naming both") {
    auto ops = pompc::make_ref_ops();
    auto p = tiny_planner();
    p.horizon = 5;
    try {
      Agent ag(*ops, tiny_model(3, 1), p);
      FAIL("expected an error");
    } catch (const pompc::Error& e) {
      CHECK(std::string(e.what()).find("horizon (5)") != std::string::npos);
    }
  }

  TEST_CASE("train settings: an unknown key is refused with the valid keys listed") {
    try {
      pompc::train::train({"task=pendulum-swingup", "horizn=3"});
      FAIL("expected an error");
    } catch (const pompc::Error& e) {
      const std::string msg = e.what();
      CHECK(msg.find("horizn") != std::string::npos);
      CHECK(msg.find("did you mean 'horizon'") != std::string::npos);
      CHECK(msg.find("valid keys") != std::string::npos);
      CHECK(msg.find("seed_steps") != std::string::npos);
    }
  }

  TEST_CASE("train: a non-finite loss stops the run, naming the loss and the step") {
    pompc::model::UpdateStats st{0.1f, 0.2f, 0.3f, 0.4f, 1.0f, -0.5f,
                                 1.0f, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f};
    CHECK_NOTHROW(pompc::train::check_losses_finite(st, 1000, 10));
    st.value_loss = std::nanf("");
    CHECK_THROWS_WITH_AS(pompc::train::check_losses_finite(st, 4000, 1234),
                         doctest::Contains("value_loss is nan at env step 4000 (update 1234)"),
                         pompc::Error);
    st.value_loss = 0.3f;
    st.pi_loss = -INFINITY;
    CHECK_THROWS_WITH_AS(pompc::train::check_losses_finite(st, 6000, 9),
                         doctest::Contains("pi_loss is inf"), pompc::Error);
  }

  TEST_CASE("train settings: model dims come from model_size unless set; defaults are TD-MPC2's") {
    auto cfg = pompc::train::train_config();
    cfg.apply({"model_size=1", "mlp_dim=64"});
    auto s = pompc::train::settings_from(cfg);
    CHECK(s.model.mlp_dim == 64);
    CHECK(s.model.latent_dim == 128);
    CHECK(s.model.num_q == 2);
    CHECK(s.planner.num_samples == 512);
    CHECK(s.model.batch_size == 256);
    CHECK(s.run_dir == "runs/dog-run/tdmpc2/1");
    CHECK(s.num_envs == 1);
    pompc::train::resolve_model(s, 3, 1, 500);
    CHECK(s.model.discount == doctest::Approx(0.99));
    CHECK(s.planner.discount == s.model.discount);
  }

  TEST_CASE("train settings: the default key table gives the settings structs' defaults") {
    // train_config() reads its defaults from the structs; model_size=5's dims and the sentinels
    // (0 = from model_size, lambda = -1) must land on the same values.
    auto cfg = pompc::train::train_config();
    cfg.apply({});
    const auto s = pompc::train::settings_from(cfg);
    const pompc::train::TrainSettings d;
    CHECK(s.model.items() == d.model.items());
    CHECK(s.planner.iterations == d.planner.iterations);
    CHECK(s.planner.num_samples == d.planner.num_samples);
    CHECK(s.planner.num_elites == d.planner.num_elites);
    CHECK(s.planner.num_pi_trajs == d.planner.num_pi_trajs);
    CHECK(s.planner.min_std == d.planner.min_std);
    CHECK(s.planner.max_std == d.planner.max_std);
    CHECK(s.planner.temperature == d.planner.temperature);
    CHECK(s.agent.reanalyze_interval == d.agent.reanalyze_interval);
    CHECK(s.agent.reanalyze_batch == d.agent.reanalyze_batch);
    CHECK(s.agent.pretrain_policy == d.agent.pretrain_policy);
    CHECK(s.steps == d.steps);
    CHECK(s.eval_freq == d.eval_freq);
    CHECK(s.seed == d.seed);
    CHECK(s.task == d.task);
    // Float defaults print as written (3e-4f reads back from "0.0003").
    CHECK(cfg.value_text("lr") == "0.0003");
    CHECK(cfg.value_text("min_std") == "0.05");
  }

  TEST_CASE("train settings: the presets set SPEC 4's table; overrides win; bad values say why") {
    using pompc::model::Critic;
    using pompc::model::Divergence;
    using pompc::model::Prior;
    using pompc::model::PriorScale;
    auto settings = [](std::vector<std::string> args) {
      auto cfg = pompc::train::train_config();
      cfg.apply(args);
      auto s = pompc::train::settings_from(cfg);
      pompc::train::resolve_model(s, 5, 6, 500);
      return s;
    };
    const auto td = settings({"preset=tdmpc2"});
    CHECK(td.model.critic == Critic::q);
    CHECK(td.model.prior == Prior::none);
    CHECK(td.model.q_coef == 1.0f);
    CHECK(td.model.pi_steps() == 4);
    CHECK(td.agent.reanalyze_interval == 0);

    const auto bm = settings({"preset=bmpc"});
    CHECK(bm.model.critic == Critic::v);
    CHECK(bm.model.num_q == 2);
    CHECK(bm.model.policy_form == pompc::PolicyForm::clamped);
    CHECK(bm.model.log_std_min == -3.0f);
    CHECK(bm.model.log_std_max == 1.0f);
    CHECK(bm.model.expl_log_std_min == -2.0f);
    CHECK(bm.model.q_coef == 0.0f);
    CHECK(bm.model.prior == Prior::planner);
    CHECK(bm.model.divergence == Divergence::reverse);
    CHECK(bm.model.prior_scale == PriorScale::own);
    CHECK(bm.model.pi_steps() == 3);
    CHECK(bm.agent.reanalyze_interval == 10);
    CHECK(bm.agent.reanalyze_batch == 20);
    CHECK_FALSE(bm.agent.pretrain_policy);

    const auto sq = settings({"preset=tdmpc2sq"});
    CHECK(sq.model.divergence == Divergence::nll);
    CHECK(sq.model.prior_weight() == doctest::Approx(6.0 / 61.0));
    CHECK(sq.model.prior_scale == PriorScale::q);
    CHECK(sq.model.prior_scale_threshold == 2.0f);
    CHECK(sq.agent.reanalyze_interval == 0);

    // PO-MPC as published: learned prior (forward fit), lambda = 1 unbounded, reverse KL, S_D,
    // the KL-regularised Q target, lazy reanalysis.
    const auto po = settings({"preset=pompc"});
    CHECK(po.model.q_coef == 1.0f);
    CHECK(po.model.prior_coef == 1.0f);
    CHECK(po.model.prior == Prior::learned);
    CHECK(po.model.prior_fit == Divergence::forward);
    CHECK(po.model.divergence == Divergence::reverse);
    CHECK(po.model.prior_scale == PriorScale::own);
    CHECK(po.model.kl_critic);
    CHECK(po.model.kl_lambda() == 1.0f);
    CHECK(po.model.critic == Critic::q);
    CHECK(po.model.num_q == 5);
    CHECK(po.model.pi_steps() == 4);  // H + 1: pi_psi is defined at every latent
    CHECK(po.agent.reanalyze_interval == 10);
    CHECK_FALSE(po.agent.pretrain_policy);
    const auto po2 = settings({"preset=pompc", "lambda=9", "prior_fit=reverse"});
    CHECK(po2.model.q_coef == 1.0f);
    CHECK(po2.model.prior_coef == 9.0f);
    CHECK(po2.model.kl_lambda() == 9.0f);
    CHECK(po2.model.prior_fit == Divergence::reverse);
    CHECK(po2.run_dir == "runs/dog-run/pompc/1");
    // The [0, 1] split is the same objective up to scale: the critic's lambda is the ratio.
    const auto po3 = settings({"preset=pompc", "q_coef=0.25", "prior_coef=0.75"});
    CHECK(po3.model.kl_lambda() == 3.0f);
    const auto pi = settings({"preset=pompc", "prior=intermediate", "kl_critic=false"});
    CHECK(pi.model.pi_steps() == 3);

    CHECK_THROWS_WITH_AS(settings({"preset=pompc", "lambda=-0.5"}),
                         doctest::Contains("lambda=-0.5: PO-MPC's KL weight must be >= 0"),
                         pompc::Error);
    CHECK_THROWS_WITH_AS(settings({"preset=pompc", "prior=planner"}),
                         doctest::Contains("kl_critic=true regularises the Q target"),
                         pompc::Error);
    CHECK_THROWS_WITH_AS(settings({"preset=pompc", "q_coef=0"}),
                         doctest::Contains("needs prior=learned, critic=q and q_coef > 0"),
                         pompc::Error);
    CHECK_THROWS_WITH_AS(settings({"prior=prior"}), doctest::Contains("planner, intermediate"),
                         pompc::Error);
    CHECK_THROWS_WITH_AS(settings({"preset=bmpc", "q_coef=1"}),
                         doctest::Contains("critic=v has no action input"), pompc::Error);
    CHECK_THROWS_WITH_AS(settings({"preset=bmpc", "prior=intermediate"}),
                         doctest::Contains("needs critic=q"), pompc::Error);
    CHECK_THROWS_WITH_AS(settings({"divergence=nll"}), doctest::Contains("needs prior=planner"),
                         pompc::Error);
  }

  TEST_CASE("reanalysis: re-plans the first slices' states and writes back exactly those records") {
    auto ops = pompc::make_ref_ops();
    const int O = 4, A = 2;
    pompc::model::ModelConfig mc = tiny_model(O, A);
    mc.policy_form = pompc::PolicyForm::clamped;
    mc.log_std_min = -3.0f;
    mc.log_std_max = 1.0f;
    mc.expl_log_std_min = -2.0f;
    mc.expl_log_std_max = 1.0f;
    mc.critic = pompc::model::Critic::v;
    mc.q_coef = 0.0f;
    mc.prior_coef = 1.0f;
    mc.prior = pompc::model::Prior::planner;
    mc.seed = 4;
    const int B = mc.batch_size, H = mc.horizon, n = 3;
    pompc::agent::AgentSettings as;
    as.reanalyze_interval = 2;
    as.reanalyze_batch = n;
    Agent ag(*ops, mc, tiny_planner(), as);
    // A twin agent (same seed, same initial model) to plan the expected targets independently.
    Agent twin(*ops, mc, tiny_planner(), as);

    pompc::replay::ReplaySettings rs;
    rs.capacity = 200;
    rs.obs_dim = O;
    rs.action_dim = A;
    rs.horizon = H;
    rs.seed = 2;
    pompc::replay::ReplayBuffer replay(rs);
    std::vector<float> o(O), a(A), mu(A), sg(A);
    for (int ep = 0; ep < 3; ++ep) {
      for (int t = 0; t < 20; ++t) {
        for (int i = 0; i < O; ++i) o[i] = pompc::philox_normal(1, ep, uint64_t(t * O + i));
        for (int j = 0; j < A; ++j) {
          a[j] = 0.5f * std::tanh(pompc::philox_normal(2, ep, uint64_t(t * A + j)));
          mu[j] = 0.1f * float(j + 1);
          sg[j] = 0.3f;
        }
        const bool planned = t % 2 == 0;  // half the records are sentinels
        replay.add(0, o.data(), a.data(), 0.5f, planned ? mu.data() : nullptr,
                   planned ? sg.data() : nullptr);
      }
      replay.end_episode(0, o.data());
    }
    std::vector<float> b_obs(size_t(H + 1) * B * O), b_act(size_t(H) * B * A), b_rew(size_t(H) * B),
        b_mu(size_t(H) * B * A), b_sigma(b_mu.size());
    std::vector<int64_t> b_index(size_t(H + 1) * B);
    pompc::replay::SliceBatch sb{B, b_obs.data(), b_act.data(), b_rew.data(),
                                 b_mu.data(), b_sigma.data(), b_index.data()};
    replay.sample(sb);
    const std::vector<float> mu0 = b_mu, sigma0 = b_sigma;
    // Every record's targets before.
    struct Rec {
      std::vector<float> mu, sigma;
      bool has;
    };
    auto records = [&] {
      std::vector<Rec> r;
      for (int64_t i = 0; i < replay.size(); ++i) {
        Rec x{{}, {}, replay.has_target(i)};
        if (!replay.is_final(i)) {
          x.mu.assign(replay.mu_at(i), replay.mu_at(i) + A);
          x.sigma.assign(replay.sigma_at(i), replay.sigma_at(i) + A);
        }
        r.push_back(x);
      }
      return r;
    };
    const auto before = records();

    // The states reanalysis plans: obs[t, b], t < H, b < n, t-major.
    std::vector<float> states(size_t(H) * n * O);
    for (int t = 0; t < H; ++t)
      for (int b = 0; b < n; ++b)
        std::copy_n(b_obs.data() + (size_t(t) * B + b) * O, O,
                    states.data() + (size_t(t) * n + b) * O);
    std::vector<float> want_mu(size_t(H) * n * A), want_sigma(want_mu.size());

    CHECK(ag.update(sb) == 0);  // update 1 of the interval 2: no reanalysis, batch untouched
    CHECK(b_mu == mu0);
    // Update 2 reanalyses with the model as update 1 left it. The expected targets: the twin takes
    // the same first update, then plans the states cold (no warm start), pi's exploration head.
    CHECK(twin.update(sb) == 0);
    twin.world_model().set_explore_head(true);
    ops->copy_to_backend(twin.planner().obs_buffer(), states.data(), states.size() * sizeof(float));
    twin.planner().plan(H * n, false, false, mc.seed, Agent::kReanalyzeStep);
    twin.world_model().set_explore_head(false);
    ops->copy_to_host(want_mu.data(), twin.planner().mu_p(), want_mu.size() * sizeof(float));
    ops->copy_to_host(want_sigma.data(), twin.planner().sigma_p(), want_mu.size() * sizeof(float));
    REQUIRE(ag.update(sb) == n);
    CHECK(ag.reanalyses() == 1);
    for (int t = 0; t < H; ++t)
      for (int b = 0; b < B; ++b)
        for (int j = 0; j < A; ++j) {
          const size_t i = (size_t(t) * B + b) * A + j;
          if (b < n) {
            const size_t k = (size_t(t) * n + b) * A + j;
            CHECK(b_mu[i] == want_mu[k]);
            CHECK(b_sigma[i] == want_sigma[k]);
          } else {
            CHECK(b_mu[i] == mu0[i]);
            CHECK(b_sigma[i] == sigma0[i]);
          }
        }
    replay.write_batch_targets(sb, n);
    // The records written: index[t, b], t < H, b < n (the last write wins for a repeated record).
    std::vector<int> written(size_t(replay.size()), -1);
    for (int t = 0; t < H; ++t)
      for (int b = 0; b < n; ++b) written[size_t(b_index[size_t(t) * B + b])] = t * B + b;
    const auto after = records();
    int changed = 0;
    for (int64_t i = 0; i < replay.size(); ++i) {
      CAPTURE(i);
      const int w = written[size_t(i)];
      if (w < 0) {
        CHECK(after[i].has == before[i].has);
        CHECK(after[i].mu == before[i].mu);
        CHECK(after[i].sigma == before[i].sigma);
      } else {
        ++changed;
        CHECK(after[i].has);
        CHECK(std::equal(after[i].mu.begin(), after[i].mu.end(), b_mu.begin() + size_t(w) * A));
        CHECK(std::equal(after[i].sigma.begin(), after[i].sigma.end(),
                         b_sigma.begin() + size_t(w) * A));
      }
    }
    CHECK(changed >= 1);
  }

  TEST_CASE("train settings: num_envs is read and checked against 1..64") {
    auto cfg = pompc::train::train_config();
    cfg.apply({"num_envs=8"});
    CHECK(pompc::train::settings_from(cfg).num_envs == 8);
    for (const char* bad : {"num_envs=0", "num_envs=65"}) {
      auto c = pompc::train::train_config();
      CHECK_THROWS_WITH_AS(c.apply({bad}), doctest::Contains("out of range"), pompc::Error);
    }
  }

  TEST_CASE("agent: acting for S = 2 states plans each as if alone") {
    // State s's plan depends on its own observation and first flag only: planning obs[1] alone
    // in slot 1 with slot 0 holding something else gives the same action for slot 1.
    auto ops = pompc::make_ref_ops();
    const int O = 5, A = 2, S = 2;
    pompc::agent::AgentSettings as;
    as.max_states = S;
    Agent ag(*ops, tiny_model(O, A), tiny_planner(), as);
    const std::vector<float> obs = pompc::test::normals(size_t(S) * O, 3, 1.0f);
    std::vector<float> other = obs;
    for (int k = 0; k < O; ++k) other[k] = -obs[k];
    const uint8_t first[S] = {1, 1};
    std::vector<float> a1(S * A), a2(S * A);
    ag.act(obs.data(), first, S, /*explore=*/true, 7, 0, a1.data(), nullptr, nullptr);
    ag.act(other.data(), first, S, /*explore=*/true, 7, 0, a2.data(), nullptr, nullptr);
    CHECK(a1[2] == a2[2]);
    CHECK(a1[3] == a2[3]);
    CHECK(a1[0] != a2[0]);
  }
}
