// The agent (src/agent/agent.h) on a tiny TD-MPC2 model: acting returns actions and planner
// targets in range, warm starts only after the first step; an update on a host batch runs and
// reports finite losses; the trainer's settings table rejects unknown keys naming the valid ones.
//
// Run: build/test_emu -ts=agent
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "agent/agent.h"
#include "common.h"
#include "ops.h"
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
    Agent ag(*ops, mc, tiny_planner(), S);
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
    const auto b_rew = pompc::test::normals(size_t(H) * B, 13, 1.0f);
    const uint64_t before = ag.world_model().updates();
    ag.update(b_obs.data(), b_act.data(), b_rew.data());
    ag.update(b_obs.data(), b_act.data(), b_rew.data());
    CHECK(ag.world_model().updates() == before + 2);
    const auto st = ag.read_stats();
    for (float v : {st.consistency_loss, st.reward_loss, st.value_loss, st.total_loss,
                    st.grad_norm, st.pi_loss, st.pi_grad_norm, st.pi_scale})
      CHECK(std::isfinite(v));
    CHECK(st.reward_loss > 0.0f);
  }

  TEST_CASE("agent: a planner horizon unlike the model's is refused, naming both") {
    auto ops = pompc::make_ref_ops();
    auto p = tiny_planner();
    p.horizon = 5;
    try {
      Agent ag(*ops, tiny_model(3, 1), p, 1);
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
    pompc::model::UpdateStats st{0.1f, 0.2f, 0.3f, 0.4f, 1.0f, -0.5f, 1.0f, 1.0f};
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
    Agent ag(*ops, tiny_model(O, A), tiny_planner(), S);
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
