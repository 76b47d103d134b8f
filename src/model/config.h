// src/model/config.h: the settings of the TD-MPC2 world model and its update step (SPEC sections
// 1 and 2). One struct, a commented default on every field; keys are the reference config names
// (nicklashansen/tdmpc2 tdmpc2/config.yaml), settable as key=value strings.
//
// Run book
//   sizes      model_size=1|5|19|48|317 (also "5M") sets (enc_dim, mlp_dim, latent_dim,
//              num_enc_layers, num_q) to SPEC section 1's table:
//                1M (256, 384, 128, 2, 2)     5M (256, 512, 512, 2, 5)  <- default
//                19M (1024, 1024, 768, 3, 5)  48M (1792, 1792, 768, 4, 5)
//                317M (4096, 4096, 1376, 5, 8)
//              Applied when the key is set (as TD-MPC2's parser does, the size wins over dims set
//              before it; dims set after it override it).
//   set/get    set("horizon", "3") parses and assigns one key (pompc::Error naming the key and
//              the accepted form otherwise); items() lists every key with its current value, in
//              declaration order (for logs and the checkpoint's config record).
//   validate   checks every range and relation the world model relies on (latent_dim a multiple
//              of simnorm_dim, simnorm_dim == 8, num_q >= 2, ...) and throws pompc::Error naming
//              the key and the fix. WorldModel's constructor calls it.
//   discount   discount_for_episode_length(L) = clip((L/5 - 1) / (L/5), 0.95, 0.995) (SPEC 2;
//              DMC: L = 500 -> 0.99, the default of `discount`).
//   objective  the policy objective of SPEC section 4 (every knob; the trainer's presets tdmpc2,
//              bmpc, tdmpc2sq and pompc set them, see src/train/trainer.cpp):
//                L_pi = mean_t rho^t mean_b [ -q_coef Qbar / S_Q + alpha log_pi
//                                             + prior_coef' D(pi_theta, prior_t) / S_D ]
//              prior_coef' = prior_coef (* A / 61 with prior_coef_per_action); t runs over
//              pi_steps() = H + 1 latents without a prior (TD-MPC2) and with the learned prior
//              (PO-MPC), H with the planner's targets (they exist for steps 0..H-1: BMPC,
//              TD-M(PC)^2). The maths of each prior / divergence / scale is in world_model.h.
//   critic     kl_critic=true (PO-MPC, SPEC 6): the Q target subtracts kl_lambda() times pi's
//              log-ratio to the learned prior at a' ~ pi(z').
//
// Test: build/test_emu -ts=model -tc='*config*'
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ops.h"

namespace pompc::model {

enum class Critic { q, v };  // q: Qn heads over [z, a] (TD-MPC2); v: heads over z (BMPC, SPEC 6)
enum class Prior { none, planner, intermediate, learned };  // prior_t of SPEC 4
enum class Divergence { reverse, forward, nll };            // D of SPEC 4
enum class PriorScale { none, own, q };                     // S_D of SPEC 4

struct ModelConfig {
  // ---- sizes (SPEC 1) ----
  int model_size = 5;      // size preset in millions of parameters: 1, 5, 19, 48 or 317
  int obs_dim = 0;         // O: state observation size (from the task; must be set)
  int action_dim = 0;      // A: action size (from the task; must be set)
  int enc_dim = 256;       // width of the encoder's hidden NormedLinear layers
  int mlp_dim = 512;       // M: width of the hidden layers of dynamics, reward, pi and Qs
  int latent_dim = 512;    // Z: latent size (SimNorm groups of simnorm_dim)
  int num_enc_layers = 2;  // encoder layers: max(num_enc_layers - 1, 1) hidden + the latent one
  int num_q = 5;           // Qn: critic heads in the ensemble (min2 / avg2 pick two of them)
  int num_bins = 101;      // K: two-hot bins of the reward and value heads
  float vmin = -10.0f;     // lowest bin centre (symlog space)
  float vmax = 10.0f;      // highest bin centre (symlog space)
  int simnorm_dim = 8;     // SimNorm group size (the ops implement 8 only)
  float dropout = 0.01f;   // dropout of the Q heads' first NormedLinear (training only)
  // ---- policy head (SPEC 1) ----
  float log_std_min = -10.0f;  // log_std squashed into [log_std_min, log_std_max]
  float log_std_max = 2.0f;    // upper end of the log_std squash
  EntropyForm entropy_form = EntropyForm::paper;  // paper (first release) | current
  PolicyForm policy_form = PolicyForm::squashed;   // squashed: tanh(u) (TD-MPC2); clamped: BMPC's
                                                   // clamp(tanh(mean) + std eps, -1, 1)
  float expl_log_std_min = -10.0f;  // log_std range of pi inside reanalysis (the planner's policy
  float expl_log_std_max = 2.0f;    // trajectories; BMPC's expl_log_std_min/max = -2, 1)
  // ---- critic (SPEC 6) ----
  Critic critic = Critic::q;  // q: TD target r + gamma min2 Q_target(z', a'); v: BMPC's model-based
                              // target rhat(z, a) + gamma avg2 V_target(next(z, a)), a ~ pi(z)
  // ---- policy objective (SPEC 4; see the run book) ----
  float q_coef = 1.0f;                  // weight of -Qbar / S_Q (PO-MPC: 1 - lambda)
  float prior_coef = 0.0f;              // weight of D / S_D (PO-MPC: lambda)
  bool prior_coef_per_action = false;   // multiply prior_coef by A / 61 (TD-M(PC)^2)
  Prior prior = Prior::none;            // none | planner | intermediate | learned
  Divergence divergence = Divergence::reverse;  // reverse | forward | nll (nll: planner prior)
  PriorScale prior_scale = PriorScale::own;     // S_D: none (1) | own RunningScale | q (S_Q)
  float prior_scale_threshold = 0.0f;   // the prior term is 0 while S_D <= this (TD-M(PC)^2: 2)
  float beta = 1.0f;                    // intermediate prior: w_k = softmax_k(Qbar_k / (beta S_Q))
  int prior_samples = 8;                // intermediate prior: planner samples per latent
  Divergence prior_fit = Divergence::forward;  // learned prior pi_psi's D_I: forward | reverse
  float min_std = 0.05f;                // nll: floor of sigma_p (the planner's min_std)
  bool kl_critic = false;               // PO-MPC's KL-regularised TD target (SPEC 6): td = r +
                                        // gamma (min2 Q' - kl_lambda() log pi / pi_psi), needs
                                        // prior=learned, critic=q and q_coef > 0
  // ---- update (SPEC 2, 4) ----
  float rho = 0.5f;                // temporal weight rho^t of every loss term
  float lr = 3e-4f;                // Adam learning rate of the model and of pi
  float enc_lr_scale = 0.3f;       // the encoder's Adam group uses lr * enc_lr_scale
  float grad_clip_norm = 20.0f;    // global gradient-norm clip (model and pi separately)
  float tau = 0.01f;               // Polyak rate of the target Qs and the RunningScale's lerp
  float discount = 0.99f;          // gamma (discount_for_episode_length(500) for DMC)
  float entropy_coef = 1e-4f;      // alpha: weight of log_pi in the pi loss
  float consistency_coef = 20.0f;  // weight of the latent consistency loss
  float reward_coef = 0.1f;        // weight of the reward loss
  float value_coef = 0.1f;         // weight of the value loss
  int batch_size = 256;            // B: sub-trajectories per update
  int horizon = 3;                 // H: rollout length of the update (and of planning)
  uint64_t seed = 1;               // Philox key of the initialisation, dropout and policy noise
  bool tf32 = true;                // TF32 GEMMs on the CUDA backend (off for parity tests)

  // Bins of the two-hot heads and the policy head's settings, as the ops take them.
  Bins bins() const { return Bins{num_bins, vmin, vmax}; }
  // The policy head as the ops take it; explore = the reanalysis range expl_log_std_min/max.
  PolicyHead policy_head(bool explore = false) const;
  // Latents the policy objective averages over: H + 1 without a prior (TD-MPC2) and with the
  // learned prior (pi_psi is a function of z, defined at every latent, so lambda = 0 is TD-MPC2
  // exactly); H with the planner's targets (they exist for steps 0..H-1: BMPC, TD-M(PC)^2).
  int pi_steps() const {
    return prior == Prior::none || prior == Prior::learned ? horizon + 1 : horizon;
  }
  // prior_coef with the per-action scaling applied.
  float prior_weight() const {
    return prior_coef_per_action ? prior_coef * static_cast<float>(action_dim) / 61.0f
                                 : prior_coef;
  }

  // lambda of the KL-regularised TD target: the policy objective's KL weight per unit of Q
  // weight, prior_weight() / q_coef (= lambda for PO-MPC's q_coef = 1; the same objective for the
  // [0, 1] split q_coef = 1 - l, prior_coef = l).
  float kl_lambda() const { return prior_weight() / q_coef; }

  void set(const std::string& key, const std::string& value);
  std::vector<std::pair<std::string, std::string>> items() const;
  void validate() const;
};

// Applies a model_size preset (1, 5, 19, 48, 317; "5M" also accepted) to cfg.
void set_model_size(ModelConfig& cfg, const std::string& size);

// gamma = clip((L/5 - 1) / (L/5), 0.95, 0.995) for episodes of L agent steps.
float discount_for_episode_length(int episode_length);

}  // namespace pompc::model
