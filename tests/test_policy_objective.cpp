// The policy objectives of the PO-MPC family (SPEC section 4) on a tiny fixed example, one per
// preset: the world model's pi step must give the loss that SPEC's formulas give.
//
// The example: A = 1, B = 2, H = 1. The last Linear of pi (and of the learned prior pi_psi) has
// zero weights, so every row's head input is its bias (mean_raw = 0.5, s = 0; pi_psi: 0.1, 0.5);
// the last Linear of every critic head has zero weights and the bias 20 at bins 60 and 61 (0
// elsewhere), so every Qbar is the same number, two_hot_inv = symexp(~2.1) = 7.1661681276; S_Q = 4
// and S_D = 2 are held fixed (no RunningScale step); the planner targets of the two rows are
// (mu_p, sigma_p) = (0.2, 0.5) and (-0.3, 1.0).
// With entropy_coef = 0 the losses of tdmpc2, bmpc and two pompc variants do not depend on the
// policy noise: their literal values were computed by hand (Python, math module only):
//   tdmpc2                  -Qbar / S_Q * sum_t rho^t / (H+1)  = -1.3436565239
//   bmpc                    mean_b KL(N(tanh .5, e^-1) || N(mu_p, sigma_p)) / S_D = 0.2682532791
//                           (rows: 0.2149341942, 0.8580789223; log_std = -3 + 2 (tanh 0 + 1))
//   pompc intermediate,     D = KL_rev - Qbar / beta + log_z = KL_rev (equal sample values);
//     reverse, lambda .5    -0.5 Qbar / S_Q + 0.5 mean_b KL_rev / S_D = -0.7616443764
//   pompc learned, forward  over H + 1 latents (pi_psi is defined at each), sum_t rho^t / (H+1) =
//                           0.75: -0.5 0.75 Qbar / S_Q + 0.5 0.75 KL(pi_psi || pi) / S_D
//                           = -0.2525487366 (pi_psi: tanh 0.1, log_std -3 + 2 (tanh 0.5 + 1);
//                           KL / S_D = 1.1180787343 per row, prior_loss 0.75 of it = 0.8385590507)
// The presets whose loss reads the noise (tdmpc2sq's nll of the sampled action, pompc's weighted
// nll of planner samples, every entropy term) are checked against the same formulas evaluated in
// double here, with the noise drawn from the Philox streams the model uses.
//
// Run: build/test_emu -ts=agent -tc='*objective*'
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "model/config.h"
#include "model/world_model.h"
#include "ops.h"
#include "philox.cuh"

namespace {

using pompc::Ops;
using pompc::model::Batch;
using pompc::model::ModelConfig;
using pompc::model::NamedTensor;
using pompc::model::UpdateStats;
using pompc::model::WorldModel;

constexpr double kQbar = 7.1661681276;  // two_hot_inv of the fixed head (see the header)
constexpr double kSQ = 4.0, kSD = 2.0;
constexpr double kC = 0.91893853320467274178;  // 0.5 log(2 pi)
const double kMuP[2] = {0.2, -0.3}, kSigmaP[2] = {0.5, 1.0};

ModelConfig tiny() {
  ModelConfig c;
  c.obs_dim = 3;
  c.action_dim = 1;
  c.latent_dim = 8;
  c.mlp_dim = 4;
  c.enc_dim = 5;
  c.num_q = 2;
  c.batch_size = 2;
  c.horizon = 1;
  c.seed = 5;
  c.tf32 = false;
  c.entropy_coef = 0.0f;
  return c;
}

// Preset settings as the trainer's presets set them (src/train/trainer.cpp).
void bmpc_form(ModelConfig& c) {
  c.policy_form = pompc::PolicyForm::clamped;
  c.log_std_min = -3.0f;
  c.log_std_max = 1.0f;
}

// PO-MPC at lambda = 0.5 with BMPC's policy form, the given prior and divergence, 3 samples.
ModelConfig pompc_example(pompc::model::Prior prior, pompc::model::Divergence div) {
  ModelConfig c = tiny();
  bmpc_form(c);
  c.q_coef = 0.5f;
  c.prior_coef = 0.5f;
  c.prior = prior;
  c.divergence = div;
  c.prior_samples = 3;
  return c;
}

const NamedTensor& tensor(const WorldModel& wm, const std::string& name) {
  for (const NamedTensor& t : wm.tensors())
    if (t.name == name) return t;
  FAIL("no tensor " << name);
  throw 0;
}

void put(WorldModel& wm, const std::string& name, const std::vector<float>& v) {
  const NamedTensor& t = tensor(wm, name);
  REQUIRE(v.size() == t.numel());
  wm.ops().copy_to_backend(wm.params(t.set) + t.offset, v.data(), v.size() * sizeof(float));
}

// Builds the fixed example for `c`, runs pi_loss once, returns the stats (and the TD targets
// of td_target, when asked).
UpdateStats run_example(const ModelConfig& c, std::vector<float>* td = nullptr) {
  auto ops = pompc::make_ref_ops();
  WorldModel wm(*ops, c, 4);
  const int A = c.action_dim, M = c.mlp_dim, K = c.num_bins, Qn = c.num_q;
  put(wm, "_pi.2.weight", std::vector<float>(size_t(2 * A) * M, 0.0f));
  put(wm, "_pi.2.bias", {0.5f, 0.0f});
  std::vector<float> qb(size_t(Qn) * K, 0.0f);
  for (int q = 0; q < Qn; ++q) qb[size_t(q) * K + 60] = qb[size_t(q) * K + 61] = 20.0f;
  put(wm, "_Qs.params.2.weight", std::vector<float>(size_t(Qn) * K * M, 0.0f));
  put(wm, "_Qs.params.2.bias", qb);
  put(wm, "_target_Qs_params.2.weight", std::vector<float>(size_t(Qn) * K * M, 0.0f));
  put(wm, "_target_Qs_params.2.bias", qb);
  if (c.prior == pompc::model::Prior::learned) {
    put(wm, "_pi_prior.2.weight", std::vector<float>(size_t(2 * A) * M, 0.0f));
    put(wm, "_pi_prior.2.bias", {0.1f, 0.5f});
  }
  const int B = c.batch_size, H = c.horizon, O = c.obs_dim;
  std::vector<float> obs(size_t(H + 1) * B * O), act(size_t(H) * B * A, 0.1f),
      rew(size_t(H) * B, 0.5f), mu = {float(kMuP[0]), float(kMuP[1])},
      sigma = {float(kSigmaP[0]), float(kSigmaP[1])};
  for (size_t i = 0; i < obs.size(); ++i) obs[i] = pompc::philox_normal(9, 0, i);
  auto up = [&](const std::vector<float>& h) {
    float* p = ops->alloc<float>(h.size());
    ops->copy_to_backend(p, h.data(), h.size() * sizeof(float));
    return p;
  };
  Batch b{up(obs), up(act), up(rew), up(mu), up(sigma)};
  UpdateStats* st = ops->alloc<UpdateStats>(1);
  wm.td_target(b);
  if (td) {
    td->resize(size_t(H) * B);
    ops->copy_to_host(td->data(), wm.td(), td->size() * sizeof(float));
  }
  wm.rollout(b);
  wm.model_loss(b, st, false);
  const float sq = float(kSQ), sd = float(kSD);
  ops->copy_to_backend(wm.q_scale(), &sq, sizeof sq);
  ops->copy_to_backend(wm.prior_scale(), &sd, sizeof sd);
  wm.pi_loss(b, st, /*update_scale=*/false, /*dropout=*/false);
  UpdateStats out{};
  ops->copy_to_host(&out, st, sizeof out);
  for (const float* p : {b.obs, b.action, b.reward, b.mu_p, b.sigma_p}) ops->free_bytes(const_cast<float*>(p));
  ops->free_bytes(st);
  return out;
}

double eps_pi(const ModelConfig& c, int row) {  // the pi step's noise of row `row` (A = 1)
  return pompc::philox_normal(c.seed, WorldModel::update_offset(0, WorldModel::kPiNoise),
                              uint64_t(row));
}

// PO-MPC's KL-regularised TD target on the example (H = 1, A = 1, reward 0.5, every target head
// Qbar): td_b = 0.5 + 0.99 (Qbar - lambda (log pi(a'_b) - log pi_psi(a'_b))), a'_b ~ pi with the
// TD noise; pi's head (0.5, 0), pi_psi's (0.1, 0.5); the sample space is u = mean + std eps
// (squashed: the tanh Jacobian cancels) or u = tanh(mean) + std eps (clamped).
double td_kl_expected(const ModelConfig& c, int b, double lambda) {
  const bool clamped = c.policy_form == pompc::PolicyForm::clamped;
  const double lo = c.log_std_min, dif = c.log_std_max - c.log_std_min;
  const double ls = lo + 0.5 * dif * (std::tanh(0.0) + 1);
  const double lsp = lo + 0.5 * dif * (std::tanh(0.5) + 1);
  const double m = clamped ? std::tanh(0.5) : 0.5, mp = clamped ? std::tanh(0.1) : 0.1;
  const double eps =
      pompc::philox_normal(c.seed, WorldModel::update_offset(0, WorldModel::kTdNoise), uint64_t(b));
  const double u = m + std::exp(ls) * eps, y = (u - mp) / std::exp(lsp);
  const double log_ratio = (-0.5 * eps * eps - ls) - (-0.5 * y * y - lsp);
  return 0.5 + 0.99 * (kQbar - lambda * log_ratio);
}

}  // namespace

TEST_SUITE("agent") {
  TEST_CASE("objective: tdmpc2 (Q term over H + 1 latents) equals the hand-computed value") {
    ModelConfig c = tiny();
    const UpdateStats s = run_example(c);
    CHECK(s.pi_loss == doctest::Approx(-1.3436565239).epsilon(1e-6));
    CHECK(s.prior_loss == 0.0f);
    // With the entropy term: + alpha sum_t w_t mean_b log_pi (paper form, squashed head).
    c.entropy_coef = 0.1f;
    const UpdateStats e = run_example(c);
    const double ls = -10.0 + 6.0 * (std::tanh(0.0) + 1.0), sd = std::exp(ls);
    double want = 0;
    for (int r = 0; r < 4; ++r) {  // rows t B + b, t = 0..H
      const double eps = eps_pi(c, r), a = std::tanh(0.5 + sd * eps);
      const double log_pi = (-0.5 * eps * eps - ls - kC) - std::log(1 - a * a + 1e-6);
      const double w = (r < 2 ? 1.0 : 0.5) / 4.0;
      want += w * (0.1 * log_pi - kQbar / kSQ);
    }
    CHECK(e.pi_loss == doctest::Approx(want).epsilon(1e-5));
  }

  TEST_CASE("objective: bmpc (reverse KL to the planner, S_D, no Q term) equals the hand value") {
    ModelConfig c = tiny();
    bmpc_form(c);
    c.critic = pompc::model::Critic::v;
    c.q_coef = 0.0f;
    c.prior_coef = 1.0f;
    c.prior = pompc::model::Prior::planner;
    c.divergence = pompc::model::Divergence::reverse;
    const UpdateStats s = run_example(c);
    CHECK(s.pi_loss == doctest::Approx(0.2682532791).epsilon(1e-6));
    CHECK(s.prior_loss == doctest::Approx(0.2682532791).epsilon(1e-6));
    CHECK(s.prior_scale == doctest::Approx(kSD));
    // BMPC's entropy: - alpha scaled_entropy = alpha A sum_j(-0.5 eps^2 - log_std - c).
    c.entropy_coef = 0.1f;
    const UpdateStats e = run_example(c);
    double want = 0.2682532791;
    for (int r = 0; r < 2; ++r) {
      const double eps = eps_pi(c, r);
      want += 0.5 * 0.1 * (-0.5 * eps * eps - (-1.0) - kC);
    }
    CHECK(e.pi_loss == doctest::Approx(want).epsilon(1e-5));
  }

  TEST_CASE("objective: tdmpc2sq (nll of the sampled action, A/61, S_Q, threshold 2)") {
    ModelConfig c = tiny();
    c.entropy_coef = 1e-4f;
    c.prior_coef = 1.0f;
    c.prior_coef_per_action = true;
    c.prior = pompc::model::Prior::planner;
    c.divergence = pompc::model::Divergence::nll;
    c.prior_scale = pompc::model::PriorScale::q;
    c.prior_scale_threshold = 2.0f;
    const UpdateStats s = run_example(c);  // S_Q = 4 > 2: the term is on
    const double ls = -4.0, sd = std::exp(ls);
    double want = 0, prior = 0;
    for (int r = 0; r < 2; ++r) {  // rows t = 0 only (H = 1 with a prior)
      const double eps = eps_pi(c, r), a = std::tanh(0.5 + sd * eps);
      const double log_pi = (-0.5 * eps * eps - ls - kC) - std::log(1 - a * a + 1e-6);
      const double s_p = std::max(kSigmaP[r], 0.05), e = (a - kMuP[r]) / s_p;
      const double nll = -((-0.5 * e * e - std::log(s_p)) - kC);
      prior += 0.5 * nll / kSQ;
      want += 0.5 * (1e-4 * log_pi - kQbar / kSQ + (1.0 / 61.0) * nll / kSQ);
    }
    CHECK(s.prior_loss == doctest::Approx(prior).epsilon(1e-5));
    CHECK(s.pi_loss == doctest::Approx(want).epsilon(1e-5));
  }

  TEST_CASE("objective: pompc, intermediate prior, reverse: KL - Qbar/beta + log_z (hand value)") {
    const ModelConfig c =
        pompc_example(pompc::model::Prior::intermediate, pompc::model::Divergence::reverse);
    const UpdateStats s = run_example(c);
    CHECK(s.pi_loss == doctest::Approx(-0.7616443764).epsilon(1e-5));
  }

  TEST_CASE("objective: pompc, intermediate prior, forward: weighted nll of planner samples") {
    const ModelConfig c =
        pompc_example(pompc::model::Prior::intermediate, pompc::model::Divergence::forward);
    const UpdateStats s = run_example(c);
    // Equal sample values: w_k = 1/3. pi = N(tanh 0.5, e^-1).
    const double mu = std::tanh(0.5), ls = -1.0, sd = std::exp(ls);
    double d_sum = 0;
    for (int r = 0; r < 2; ++r) {
      double d = 0;
      for (int k = 0; k < 3; ++k) {
        const double eps = pompc::philox_normal(
            c.seed, WorldModel::update_offset(0, WorldModel::kPriorSample), uint64_t(k * 2 + r));
        const double a = std::clamp(kMuP[r] + kSigmaP[r] * eps, -1.0, 1.0);
        const double y = (a - mu) / sd;
        d -= (-0.5 * y * y - ls - kC) / 3.0;
      }
      d_sum += 0.5 * d / kSD;
    }
    CHECK(s.prior_loss == doctest::Approx(d_sum).epsilon(1e-5));
    CHECK(s.pi_loss == doctest::Approx(-0.5 * kQbar / kSQ + 0.5 * d_sum).epsilon(1e-5));
  }

  TEST_CASE("objective: pompc, learned prior, forward KL(pi_psi || pi) (hand value)") {
    const ModelConfig c =
        pompc_example(pompc::model::Prior::learned, pompc::model::Divergence::forward);
    const UpdateStats s = run_example(c);
    CHECK(s.prior_loss == doctest::Approx(0.8385590507).epsilon(1e-5));
    CHECK(s.pi_loss == doctest::Approx(-0.2525487366).epsilon(1e-5));
  }

  TEST_CASE("critic: kl_critic's TD target subtracts lambda log pi / pi_psi (hand formula)") {
    for (const bool clamped : {true, false}) {
      CAPTURE(clamped);
      ModelConfig c =
          pompc_example(pompc::model::Prior::learned, pompc::model::Divergence::reverse);
      if (!clamped) {
        c.policy_form = pompc::PolicyForm::squashed;
        c.log_std_min = -10.0f;
        c.log_std_max = 2.0f;
      }
      std::vector<float> td_plain, td_kl;
      run_example(c, &td_plain);
      for (int b = 0; b < 2; ++b) CHECK(td_plain[b] == doctest::Approx(0.5 + 0.99 * kQbar));
      // PO-MPC's lambda = 9 (q_coef 1, prior_coef 9), and the [0, 1] split with the same ratio.
      for (const auto& [q, p] : {std::pair{1.0f, 9.0f}, std::pair{0.1f, 0.9f}}) {
        c.kl_critic = true;
        c.q_coef = q;
        c.prior_coef = p;
        run_example(c, &td_kl);
        for (int b = 0; b < 2; ++b)
          CHECK(td_kl[b] == doctest::Approx(td_kl_expected(c, b, 9.0)).epsilon(1e-5));
      }
      CHECK(td_kl[0] != td_plain[0]);
      // lambda = 0 leaves the TD-MPC2 target, bit for bit.
      c.q_coef = 1.0f;
      c.prior_coef = 0.0f;
      run_example(c, &td_kl);
      CHECK(td_kl == td_plain);
    }
  }

  TEST_CASE("objective: tdmpc2sq's prior term is 0 while S_Q <= 2") {
    ModelConfig c = tiny();
    c.prior_coef = 1.0f;
    c.prior_coef_per_action = true;
    c.prior = pompc::model::Prior::planner;
    c.divergence = pompc::model::Divergence::nll;
    c.prior_scale = pompc::model::PriorScale::q;
    c.prior_scale_threshold = 5.0f;  // above the fixed S_Q = 4
    const UpdateStats s = run_example(c);
    CHECK(s.prior_loss == 0.0f);
    CHECK(s.pi_loss == doctest::Approx(-kQbar / kSQ).epsilon(1e-6));
  }
}
