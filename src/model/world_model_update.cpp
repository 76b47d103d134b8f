// src/model/world_model_update.cpp: one update of the world model and its policies, a function per
// step of SPEC section 2 in SPEC's order (td_target, rollout, model_loss, update_model,
// update_prior, update_pi, polyak), each loss beside the weights it uses. Maths, shapes and the
// Philox purposes: the run book in world_model.h; the buffers of each step: its struct there.
#include <cmath>
#include <cstddef>
#include <cstring>
#include <utility>

#include "common.h"
#include "model/world_model.h"
#include "nvtx.h"

namespace pompc::model {
namespace {
constexpr uint64_t kUpdateOffset = uint64_t{1} << 63;  // + 16 u + purpose: one update's draws
constexpr uint64_t kPurposes = 16;                     // offsets reserved per update
constexpr float kModelAdamEps = 1e-8f;                 // TD-MPC2's optim (the model)
constexpr float kPiAdamEps = 1e-5f;  // TD-MPC2's pi_optim eps (also the learned prior's)

KlDir kl_dir(Divergence d) {
  return d == Divergence::reverse ? KlDir::reverse : KlDir::forward;
}

// rho^t for t = 0..n-1, in double (the weights are computed in double and rounded once).
std::vector<double> rho_powers(float rho, int n) {
  std::vector<double> r(static_cast<size_t>(n));
  for (int t = 0; t < n; ++t) r[static_cast<size_t>(t)] = std::pow(static_cast<double>(rho), t);
  return r;
}
}  // namespace

uint64_t WorldModel::update_offset(uint64_t u, int purpose) {
  return kUpdateOffset + kPurposes * u + static_cast<uint64_t>(purpose);
}

PhiloxOffset WorldModel::draw(int purpose) const {
  return PhiloxOffset(static_cast<uint64_t>(purpose), offset_base_);
}

void WorldModel::set_updates(uint64_t u) {
  updates_ = u;
  const uint64_t base = update_offset(u, 0);
  ops_.copy_to_backend(offset_base_, &base, sizeof base);
}

Dropout WorldModel::pair_dropout(Dropout d, const CriticPair& pair) {
  d.heads = pair.heads;
  return d;
}

Dropout WorldModel::q_dropout(bool on, int purpose) const {
  if (!on || cfg_.dropout <= 0.0f) return Dropout{};
  return Dropout{cfg_.dropout, cfg_.seed, draw(purpose)};
}

void WorldModel::update(const Batch& batch, UpdateStats* stats, bool policy) {
  NvtxRange range("update");
  check_update_args(batch, stats);
  update_steps(batch, stats, policy);
  ++updates_;
}

void WorldModel::update_graph(const Batch& batch, UpdateStats* stats, bool policy) {
  NvtxRange range("update (graph)");
  check_update_args(batch, stats);
  GraphedUpdate& g = graphs_[policy ? 1 : 0];
  if (g.calls > 0)
    POMPC_REQUIRE(std::memcmp(&g.batch, &batch, sizeof batch) == 0 && g.stats == stats,
                  "update_graph: the batch and stats pointers must be those of the first call "
                  "(the captured graph reads them); copy new data into the same buffers");
  g.batch = batch;
  g.stats = stats;
  if (g.calls++ == 0) {
    update_steps(batch, stats, policy);  // eager: every op sizes its scratch before capture
  } else {
    if (!g.graph)  // by value: the reference backend's recording runs at every replay
      g.graph = ops_.capture([this, b = batch, stats, policy] { update_steps(b, stats, policy); });
    ops_.replay(*g.graph);
  }
  ++updates_;
}

void WorldModel::check_update_args(const Batch& batch, const UpdateStats* stats) const {
  POMPC_REQUIRE(batch.obs && batch.action && batch.reward && stats,
                "update: batch.obs, batch.action, batch.reward and stats must all be set");
  POMPC_REQUIRE(cfg_.prior == Prior::none || (batch.mu_p && batch.sigma_p),
                "update: prior=%s needs the batch's planner targets (batch.mu_p, batch.sigma_p)",
                cfg_.prior == Prior::planner ? "planner"
                : cfg_.prior == Prior::learned ? "learned"
                                               : "intermediate");
}

// SPEC 2 steps 1-6 in order, then the update counter (the PhiloxOffset base of the next update's
// draws) advances in backend memory: the same ops eagerly or as one captured graph.
void WorldModel::update_steps(const Batch& batch, UpdateStats* stats, bool policy) {
  zero_grads();
  td_target(batch);            // SPEC 2.1
  rollout(batch);              // SPEC 2.2
  model_loss(batch, stats);    // SPEC 2.3
  update_model(batch, stats);  // SPEC 2.4
  if (policy) {                // SPEC 2.5 (section 4)
    if (cfg_.prior == Prior::learned) update_prior(batch, stats);
    update_pi(batch, stats);
  }
  polyak();                    // SPEC 2.6
  ops_.counter_add(offset_base_, kPurposes);
}

void WorldModel::zero_grads() {  // every trained set's gradients are in the block (allocate())
  ops_.fill(grad_block_, static_cast<int64_t>(grad_block_floats_), 0.0f);
}

// Clip the set's global gradient norm at grad_clip_norm (*grad_norm: the norm before), then Adam.
void WorldModel::optimizer_step(Trained& set, float eps, float* grad_norm) {
  ops_.clip_grad_norm(set.grads, set.n, cfg_.grad_clip_norm, grad_norm);
  AdamSettings s;
  s.eps = eps;
  ops_.adam_update(s, set.groups, set.params, set.grads, set.m, set.v, set.adam);
}

// ---- 1. TD targets (no gradients, dropout off) --------------------------------------------------

void WorldModel::td_target(const Batch& batch) {
  NvtxRange range("update/td_target");
  if (cfg_.critic == Critic::v) {
    td_target_v(batch);
    return;
  }
  TdTargetBuffers& b = td_target_;
  const int RH = H_ * B_;
  const size_t BO = static_cast<size_t>(B_) * O_;
  // next_z = encoder(obs[1..H]); a' ~ pi(next_z)
  mlp_forward(ops_, encoder_, model_set_.params, batch.obs + BO, RH, b.encoder, b.next_z,
              Dropout{});
  mlp_forward(ops_, pi_, pi_set_.params, b.next_z, RH, b.pi, b.pi_raw, Dropout{});
  ops_.policy_head_forward(b.a, nullptr, nullptr, nullptr, nullptr, b.pi_raw, nullptr, RH, A_,
                           cfg_.policy_head(), cfg_.seed, draw(kTdNoise));
  // min2 of the target heads at (next_z, a'): only the picked pair runs (CriticPair)
  ops_.concat_forward(b.za, b.next_z, b.a, RH, Z_, A_);
  gather_critic_pair(b.pair, target_qs_, cfg_.seed, draw(kTdPair));
  mlp_forward(ops_, pair_, b.pair.params, b.za, RH, b.target_qs, b.q_logits, Dropout{},
              LastBias::leave);
  ops_.two_hot_inv_pair_forward(b.q_pair, b.q_logits, last_bias(pair_, b.pair.params), 2, RH,
                                cfg_.bins(), PairMode::min, cfg_.seed, draw(kTdPair));
  if (cfg_.kl_critic) {
    // PO-MPC: min2 -= lambda (log pi(a') - log pi_psi(a')), pi_psi as the last update left it.
    mlp_forward(ops_, prior_, prior_set_.params, b.next_z, RH, b.prior, b.prior_raw, Dropout{});
    ops_.policy_log_ratio(b.log_ratio, b.pi_raw, b.prior_raw, RH, A_, cfg_.policy_head(), cfg_.seed,
                          draw(kTdNoise));
    ops_.scale_add(b.q_pair, b.log_ratio, RH, -cfg_.kl_lambda(), nullptr, 1.0f);
  }
  ops_.scale_add(b.td, batch.reward, RH, 1.0f, nullptr, 0.0f);      // td = reward
  ops_.scale_add(b.td, b.q_pair, RH, cfg_.discount, nullptr, 1.0f);  // td += gamma min2
}

// BMPC's _td_target_V with td_horizon 1: z_t = encoder(obs[t]), a ~ pi(z_t),
// td_t = two_hot_inv(reward(z_t, a)) + gamma avg2(target Vs(dynamics(z_t, a))), t = 0..H-1.
void WorldModel::td_target_v(const Batch& batch) {
  TdTargetBuffers& b = td_target_;
  const int RH = H_ * B_, RH1 = (H_ + 1) * B_;
  mlp_forward(ops_, encoder_, model_set_.params, batch.obs, RH1, b.encoder, b.z, Dropout{});
  const float* z = b.z;  // z_0..z_{H-1}
  mlp_forward(ops_, pi_, pi_set_.params, z, RH, b.pi, b.pi_raw, Dropout{});
  ops_.policy_head_forward(b.a, nullptr, nullptr, nullptr, nullptr, b.pi_raw, nullptr, RH, A_,
                           cfg_.policy_head(), cfg_.seed, draw(kTdNoise));
  ops_.concat_forward(b.za, z, b.a, RH, Z_, A_);
  const float* dr_params = model_set_.params + dr_offset_;
  mlp_forward(ops_, reward_, dr_params, b.za, RH, b.reward, nullptr, Dropout{}, LastBias::leave);
  ops_.two_hot_inv_forward(b.rhat, b.reward.out.back(), last_bias(reward_, dr_params), RH,
                           cfg_.bins());
  mlp_forward(ops_, dynamics_, dr_params, b.za, RH, b.dynamics, b.z_next, Dropout{});
  gather_critic_pair(b.pair, target_qs_, cfg_.seed, draw(kTdPair));
  mlp_forward(ops_, pair_, b.pair.params, b.z_next, RH, b.target_qs, b.q_logits, Dropout{},
              LastBias::leave);
  ops_.two_hot_inv_pair_forward(b.q_pair, b.q_logits, last_bias(pair_, b.pair.params), 2, RH,
                                cfg_.bins(), PairMode::avg, cfg_.seed, draw(kTdPair));
  ops_.scale_add(b.td, b.rhat, RH, 1.0f, nullptr, 0.0f);            // td = rhat
  ops_.scale_add(b.td, b.q_pair, RH, cfg_.discount, nullptr, 1.0f);  // td += gamma avg2 V
}

// ---- 2. latent rollout --------------------------------------------------------------------------

void WorldModel::rollout(const Batch& batch) {
  NvtxRange range("update/rollout");
  RolloutBuffers& r = rollout_;
  const size_t BZ = static_cast<size_t>(B_) * Z_, BZA = static_cast<size_t>(B_) * (Z_ + A_),
               BA = static_cast<size_t>(B_) * A_;
  mlp_forward(ops_, encoder_, model_set_.params, batch.obs, B_, r.encoder, r.z, Dropout{});
  for (int t = 0; t < H_; ++t) {  // z[t+1] = dynamics([z[t], action[t]])
    float* za = r.za + t * BZA;
    ops_.concat_forward(za, r.z + t * BZ, batch.action + t * BA, B_, Z_, A_);
    mlp_forward(ops_, dynamics_, model_set_.params + dr_offset_, za, B_, r.dynamics[t],
                r.z + (t + 1) * BZ, Dropout{});
  }
}

// ---- 3. model losses ----------------------------------------------------------------------------

// The weights of model_loss: rho^t / H over the steps (consistency per step; reward and value per
// row, with the batch mean 1 / B and the heads' 1 / Qn folded in), and their gradients scaled by
// the coefficients of total (the consistency's is a per-step scalar: model_loss_backward).
void WorldModel::model_loss_weights() {
  ModelLossBuffers& l = model_loss_;
  const size_t B = static_cast<size_t>(B_), RH = static_cast<size_t>(H_) * B,
               Qn = static_cast<size_t>(Qn_);
  const double H = H_, Bd = B_, Qd = Qn_;
  const std::vector<double> rho = rho_powers(cfg_.rho, H_);
  std::vector<float> w_cons(static_cast<size_t>(H_)), w_rew(RH), g_rew(RH), w_val(Qn * RH),
      g_val(RH);
  for (int t = 0; t < H_; ++t) {
    const double rt = rho[static_cast<size_t>(t)];
    w_cons[static_cast<size_t>(t)] = static_cast<float>(rt / H);
    for (size_t b = 0; b < B; ++b) {
      const size_t i = static_cast<size_t>(t) * B + b;
      w_rew[i] = static_cast<float>(rt / (Bd * H));
      g_rew[i] = static_cast<float>(cfg_.reward_coef * rt / (Bd * H));
      g_val[i] = static_cast<float>(cfg_.value_coef * rt / (Bd * H * Qd));
      for (size_t q = 0; q < Qn; ++q) w_val[q * RH + i] = static_cast<float>(rt / (Bd * H * Qd));
    }
  }
  const float coefs[3] = {cfg_.consistency_coef, cfg_.reward_coef, cfg_.value_coef};
  ops_.copy_to_backend(l.w_consistency, w_cons.data(), w_cons.size() * sizeof(float));
  ops_.copy_to_backend(l.w_reward, w_rew.data(), w_rew.size() * sizeof(float));
  ops_.copy_to_backend(l.g_reward, g_rew.data(), g_rew.size() * sizeof(float));
  ops_.copy_to_backend(l.w_value, w_val.data(), w_val.size() * sizeof(float));
  ops_.copy_to_backend(l.g_value, g_val.data(), g_val.size() * sizeof(float));
  ops_.copy_to_backend(l.coefs, coefs, sizeof coefs);
}

void WorldModel::model_loss(const Batch& batch, UpdateStats* stats, bool dropout) {
  NvtxRange range("update/model_loss");
  ModelLossBuffers& l = model_loss_;
  const RolloutBuffers& r = rollout_;
  const int RH = H_ * B_;
  const size_t BZ = static_cast<size_t>(B_) * Z_;
  // consistency_t = mean((z[t+1] - next_z[t])^2)
  ops_.mse_segments_forward(l.consistency, r.z + BZ, td_target_.next_z, H_,
                            static_cast<int64_t>(BZ));
  // reward: soft_ce(reward(z[t], a[t]), reward[t])
  mlp_forward(ops_, reward_, model_set_.params + dr_offset_, r.za, RH, l.reward, l.reward_logits,
              Dropout{});
  ops_.soft_ce_forward(l.reward_ce, l.reward_logits, batch.reward, RH, cfg_.bins());
  // value: soft_ce(Q_q(z[t], a[t]) | V_q(z[t]), td[t]) per head, dropout on
  const float* critic_in = cfg_.critic == Critic::q ? r.za : r.z;  // [z, a] or z[0..H-1]
  mlp_forward(ops_, qs_, model_set_.params + q_offset_, critic_in, RH, l.qs, l.q_logits,
              q_dropout(dropout, kValueDropout));
  ops_.soft_ce_heads_forward(l.value_ce, l.q_logits, td_target_.td, Qn_, RH, cfg_.bins());
  ops_.weighted_sum(&stats->consistency_loss, l.consistency, l.w_consistency, H_, 1.0f, nullptr,
                    0.0f);
  ops_.weighted_sum(&stats->reward_loss, l.reward_ce, l.w_reward, RH, 1.0f, nullptr, 0.0f);
  ops_.weighted_sum(&stats->value_loss, l.value_ce, l.w_value, static_cast<int64_t>(Qn_) * RH,
                    1.0f, nullptr, 0.0f);
  // total = consistency_coef consistency + reward_coef reward + value_coef value (the three
  // losses are consecutive in UpdateStats)
  ops_.weighted_sum(&stats->total_loss, &stats->consistency_loss, l.coefs, 3, 1.0f, nullptr, 0.0f);
}

// ---- 4. the model's gradient step ---------------------------------------------------------------

void WorldModel::model_loss_backward(const Batch& batch, bool dropout) {
  NvtxRange range("update/model_loss_backward");
  ModelLossBuffers& l = model_loss_;
  RolloutBuffers& r = rollout_;
  float* grads = model_set_.grads;
  const float* params = model_set_.params;
  const int RH = H_ * B_;
  const size_t BZ = static_cast<size_t>(B_) * Z_, BZA = static_cast<size_t>(B_) * (Z_ + A_);
  // Heads: soft_ce -> logits -> reward / Q MLPs -> [z, a] of steps 0..H-1.
  ops_.soft_ce_backward(l.d_reward_logits, l.g_reward, l.reward_logits, batch.reward, RH,
                        cfg_.bins());
  ops_.soft_ce_heads_backward(l.d_q_logits, l.g_value, l.q_logits, td_target_.td, Qn_, RH,
                              cfg_.bins());
  mlp_backward(ops_, reward_, params + dr_offset_, grads + dr_offset_, r.za, RH, l.reward,
               l.d_reward_logits, l.d_reward, l.d_heads_in, Dropout{});
  if (cfg_.critic == Critic::q)
    mlp_backward(ops_, qs_, params + q_offset_, grads + q_offset_, r.za, RH, l.qs, l.d_q_logits,
                 l.d_qs, l.d_heads_in, q_dropout(dropout, kValueDropout));
  else  // V heads read z[0..H-1] directly: their input gradient lands in dz[0..H-1]
    mlp_backward(ops_, qs_, params + q_offset_, grads + q_offset_, r.z, RH, l.qs, l.d_q_logits,
                 l.d_qs, r.dz, q_dropout(dropout, kValueDropout));
  ops_.concat_backward(r.dz, nullptr, l.d_heads_in, RH, Z_, A_);  // actions get no gradient
  // Consistency: d z[t+1] += consistency_coef rho^t / H * 2 (z[t+1] - next_z[t]) / (B Z).
  TermWeights dloss;  // one per step t, in one op
  dloss.count = H_;
  for (int t = 0; t < H_; ++t)
    dloss.w[t] =
        static_cast<float>(cfg_.consistency_coef * std::pow(static_cast<double>(cfg_.rho), t) / H_);
  ops_.mse_segments_backward(r.dz + BZ, r.z + BZ, td_target_.next_z, dloss,
                             static_cast<int64_t>(BZ));
  // Latent rollout backwards: dz[t+1] is complete before dynamics step t propagates it to z[t].
  for (int t = H_ - 1; t >= 0; --t) {
    mlp_backward(ops_, dynamics_, params + dr_offset_, grads + dr_offset_, r.za + t * BZA, B_,
                 r.dynamics[t], r.dz + (t + 1) * BZ, r.d_dynamics[t], r.d_za + t * BZA, Dropout{});
    ops_.concat_backward(r.dz + t * BZ, nullptr, r.d_za + t * BZA, B_, Z_, A_);
  }
  // z[0] = encoder(obs[0]).
  mlp_backward(ops_, encoder_, params, grads, batch.obs, B_, r.encoder, r.dz, r.d_encoder, nullptr,
               Dropout{});
}

void WorldModel::update_model(const Batch& batch, UpdateStats* stats) {
  NvtxRange range("update/update_model");
  model_loss_backward(batch);
  optimizer_step(model_set_, kModelAdamEps, &stats->grad_norm);
}

// ---- 5a. the learned prior's fit (prior=learned, SPEC section 4) --------------------------------

void WorldModel::prior_fit_loss(const Batch& batch, UpdateStats* stats) {
  NvtxRange range("update/prior_fit_loss");
  PriorFitBuffers& f = prior_fit_;
  const int R = H_ * B_;  // the latents z[0..H-1] that have planner targets
  mlp_forward(ops_, prior_, prior_set_.params, rollout_.z, R, f.prior, f.raw, Dropout{});
  ops_.policy_head_forward(f.a, f.mu, f.log_std, nullptr, nullptr, f.raw, nullptr, R, A_,
                           cfg_.policy_head(), cfg_.seed, draw(kPiNoise));
  ops_.gauss_kl_forward(f.div, f.mu, f.log_std, batch.mu_p, batch.sigma_p, R, A_,
                        kl_dir(cfg_.prior_fit));
  // prior_fit_loss = sum_{t<H} rho^t / (B H) D_I (f.w: filled by pi_loss_weights)
  ops_.weighted_sum(&stats->prior_fit_loss, f.div, f.w, R, 1.0f, nullptr, 0.0f);
}

void WorldModel::prior_fit_loss_backward(const Batch& batch) {
  NvtxRange range("update/prior_fit_loss_backward");
  PriorFitBuffers& f = prior_fit_;
  const int R = H_ * B_;
  ops_.scale_add(f.d_div, f.w, R, 1.0f, nullptr, 0.0f);
  ops_.gauss_kl_backward(f.d_mu, f.d_log_std, f.d_div, f.mu, f.log_std, batch.mu_p, batch.sigma_p,
                         R, A_, kl_dir(cfg_.prior_fit));
  ops_.policy_head_backward(f.d_raw, nullptr, f.d_mu, f.d_log_std, nullptr, f.raw, R, A_,
                            cfg_.policy_head(), cfg_.seed, draw(kPiNoise));
  mlp_backward(ops_, prior_, prior_set_.params, prior_set_.grads, rollout_.z, R, f.prior, f.d_raw,
               f.d_prior, nullptr, Dropout{});
}

void WorldModel::update_prior(const Batch& batch, UpdateStats* stats) {
  NvtxRange range("update/update_prior");
  prior_fit_loss(batch, stats);
  prior_fit_loss_backward(batch);
  optimizer_step(prior_set_, kPiAdamEps, &stats->prior_grad_norm);
}

// ---- 5b. the policy step (SPEC 2.5, section 4) --------------------------------------------------

bool WorldModel::pi_needs_qbar() const {
  return cfg_.q_coef > 0.0f || cfg_.prior == Prior::intermediate;  // (S_Q scales beta)
}

bool WorldModel::pi_has_prior_term() const {
  return cfg_.prior != Prior::none && cfg_.prior_weight() > 0.0f;
}

bool WorldModel::pi_grad_through_q() const {
  return cfg_.q_coef > 0.0f ||
         (cfg_.prior == Prior::intermediate && cfg_.divergence == Divergence::reverse);
}

std::pair<const float*, const float*> WorldModel::prior_gaussian(const Batch& batch) const {
  if (cfg_.prior == Prior::learned) return {prior_fit_.mu, prior_fit_.sigma};
  return {batch.mu_p, batch.sigma_p};
}

const float* WorldModel::prior_divisor() {
  const float* s = cfg_.prior_scale == PriorScale::own ? d_scale_
                   : cfg_.prior_scale == PriorScale::q ? q_scale_
                                                       : nullptr;
  if (cfg_.prior_scale_threshold <= 0.0f) return s;
  // The term is 0 while S_D <= threshold: dividing by +inf (S_D = 1 when prior_scale=none).
  float* gate = pi_loss_.gate;
  if (!s) {
    ops_.fill(gate, 1, 1.0f);
    s = gate;
  }
  ops_.scale_gate(gate, s, cfg_.prior_scale_threshold);
  return gate;
}

// The weights of pi_loss: w_t = rho^t / T over its T = pi_steps() latents (the batch mean 1 / B
// folded in; rows t >= T weigh 0), the entropy term's alpha w_t, and the learned prior's fit
// weights rho^t / (B H) over the H latents with planner targets.
void WorldModel::pi_loss_weights() {
  const size_t B = static_cast<size_t>(B_), RH1 = static_cast<size_t>(H_ + 1) * B;
  const double Bd = B_, T = T_pi_, H = H_;
  const std::vector<double> rho = rho_powers(cfg_.rho, H_ + 1);
  std::vector<float> w(RH1, 0.0f), g_log_pi(RH1, 0.0f), w_fit(static_cast<size_t>(H_) * B);
  for (int t = 0; t <= H_; ++t) {
    const double rt = rho[static_cast<size_t>(t)];
    for (size_t b = 0; b < B; ++b) {
      const size_t i = static_cast<size_t>(t) * B + b;
      if (t < T_pi_) {
        w[i] = static_cast<float>(rt / (Bd * T));
        g_log_pi[i] = static_cast<float>(cfg_.entropy_coef * rt / (Bd * T));
      }
      if (t < H_) w_fit[i] = static_cast<float>(rt / (Bd * H));
    }
  }
  ops_.copy_to_backend(pi_loss_.w, w.data(), w.size() * sizeof(float));
  ops_.copy_to_backend(pi_loss_.g_log_pi, g_log_pi.data(), g_log_pi.size() * sizeof(float));
  if (prior_fit_.w)
    ops_.copy_to_backend(prior_fit_.w, w_fit.data(), w_fit.size() * sizeof(float));
}

void WorldModel::intermediate_weights(const Batch& batch) {
  IntermediateBuffers& im = intermediate_;
  const int R = T_pi_ * B_, S = cfg_.prior_samples, ZA = Z_ + A_;
  const size_t RZA = static_cast<size_t>(R) * ZA, RA = static_cast<size_t>(R) * A_;
  ops_.prior_sample(im.a, batch.mu_p, batch.sigma_p, S, R, A_, cfg_.seed, draw(kPriorSample));
  for (int k = 0; k < S; ++k)
    ops_.concat_forward(im.za + k * RZA, rollout_.z, im.a + k * RA, R, Z_, A_);
  gather_critic_pair(im.pair, model_set_.params + q_offset_, cfg_.seed, draw(kPriorPair));
  mlp_forward(ops_, pair_, im.pair.params, im.za, S * R, im.qs, im.q_logits, Dropout{},
              LastBias::leave);
  ops_.two_hot_inv_pair_forward(im.qbar, im.q_logits, last_bias(pair_, im.pair.params), 2, S * R,
                                cfg_.bins(), PairMode::avg, cfg_.seed, draw(kPriorPair));
  // beta acts on Qbar / S_Q (S_Q of this pi step), so its scale does not depend on the task.
  ops_.scale_add(im.qbar, im.qbar, static_cast<int64_t>(S) * R, 1.0f, q_scale_, 0.0f);
  ops_.sample_weights(im.w, im.log_z, im.qbar, S, R, cfg_.beta);
}

void WorldModel::pi_loss(const Batch& batch, UpdateStats* stats, bool update_scale,
                         bool dropout) {
  NvtxRange range("update/pi_loss");
  PiLossBuffers& p = pi_loss_;
  const float* z = rollout_.z;  // detached
  const int R = T_pi_ * B_;
  const Prior prior = cfg_.prior;
  const Divergence div = cfg_.divergence;
  const bool use_q = cfg_.q_coef > 0.0f, need_q = pi_needs_qbar();
  mlp_forward(ops_, pi_, pi_set_.params, z, R, p.pi, p.raw, Dropout{});
  ops_.policy_head_forward(p.a, p.mu, p.log_std, p.log_pi, nullptr, p.raw, nullptr, R, A_,
                           cfg_.policy_head(), cfg_.seed, draw(kPiNoise));
  // pi_loss = sum w alpha log_pi
  ops_.weighted_sum(&stats->pi_loss, p.log_pi, p.w, R, cfg_.entropy_coef, nullptr, 0.0f);
  if (need_q) {  // Qbar = avg2 Qs(z, a), the Qs frozen, their dropout on; only the pair runs
    ops_.concat_forward(p.za, z, p.a, R, Z_, A_);
    gather_critic_pair(p.pair, model_set_.params + q_offset_, cfg_.seed, draw(kPiPair));
    mlp_forward(ops_, pair_, p.pair.params, p.za, R, p.qs, p.q_logits,
                pair_dropout(q_dropout(dropout, kPiDropout), p.pair));
    ops_.two_hot_inv_forward(p.q, p.q_logits, nullptr, 2 * R, cfg_.bins());
    ops_.pair_select_forward(p.qbar, p.q, 2, R, PairMode::avg, cfg_.seed, draw(kPiPair));
  }
  if (need_q && update_scale) ops_.running_scale_update(q_scale_, p.qbar, B_, cfg_.tau);
  if (use_q) {
    // pi_loss -= q_coef sum w Qbar / S_Q
    ops_.weighted_sum(&stats->pi_loss, p.qbar, p.w, R, -cfg_.q_coef, q_scale_, 1.0f);
  }
  ops_.scale_add(&stats->pi_scale, q_scale_, 1, 1.0f, nullptr, 0.0f);
  if (prior != Prior::learned) {
    static_assert(offsetof(UpdateStats, prior_grad_norm) ==
                  offsetof(UpdateStats, prior_fit_loss) + sizeof(float));
    ops_.fill(&stats->prior_fit_loss, 2, 0.0f);  // and prior_grad_norm, the next field
  }
  if (!pi_has_prior_term()) {  // no prior, or prior_coef = 0: the objective is TD-MPC2's
    ops_.fill(&stats->prior_loss, 1, 0.0f);
    ops_.fill(&stats->prior_scale, 1, 1.0f);
    return;
  }

  // The prior's Gaussian (mu_t, sigma_t) and D per row.
  if (prior == Prior::learned) {  // pi_psi after its fit step (detached)
    PriorFitBuffers& f = prior_fit_;
    mlp_forward(ops_, prior_, prior_set_.params, z, R, f.prior, f.raw, Dropout{});
    ops_.policy_head_forward(f.a, f.mu, f.log_std, nullptr, nullptr, f.raw, nullptr, R, A_,
                             cfg_.policy_head(), cfg_.seed, draw(kPiNoise));
    ops_.exp_forward(f.sigma, f.log_std, static_cast<int64_t>(R) * A_);
  }
  const auto [pm, ps] = prior_gaussian(batch);
  if (prior == Prior::intermediate) intermediate_weights(batch);
  if (div == Divergence::nll) {
    ops_.gauss_nll_forward(p.div, p.a, pm, ps, R, A_, cfg_.min_std);
  } else if (prior == Prior::intermediate && div == Divergence::forward) {
    const IntermediateBuffers& im = intermediate_;
    ops_.weighted_nll_forward(p.div, im.a, im.w, p.mu, p.log_std, cfg_.prior_samples, R, A_);
  } else {
    ops_.gauss_kl_forward(p.div, p.mu, p.log_std, pm, ps, R, A_, kl_dir(div));
    if (prior == Prior::intermediate) {  // KL(pi || planner) - Qbar / (beta S_Q) + log_z
      ops_.scale_add(p.div, p.qbar, R, -1.0f / cfg_.beta, q_scale_, 1.0f);
      ops_.scale_add(p.div, intermediate_.log_z, R, 1.0f, nullptr, 1.0f);
    }
  }
  if (cfg_.prior_scale == PriorScale::own && update_scale)
    ops_.running_scale_update(d_scale_, p.div, B_, cfg_.tau);
  p.divisor = prior_divisor();  // pi_loss_backward divides by the same S_D
  // prior_loss = sum w D / S_D; pi_loss += prior_weight sum w D / S_D
  ops_.weighted_sum(&stats->prior_loss, p.div, p.w, R, 1.0f, p.divisor, 0.0f);
  ops_.weighted_sum(&stats->pi_loss, p.div, p.w, R, cfg_.prior_weight(), p.divisor, 1.0f);
  if (cfg_.prior_scale == PriorScale::none)
    ops_.fill(&stats->prior_scale, 1, 1.0f);
  else
    ops_.scale_add(&stats->prior_scale,
                   cfg_.prior_scale == PriorScale::own ? d_scale_ : q_scale_, 1, 1.0f, nullptr,
                   0.0f);
}

void WorldModel::pi_loss_backward(const Batch& batch, bool dropout) {
  NvtxRange range("update/pi_loss_backward");
  PiLossBuffers& p = pi_loss_;
  const float* z = rollout_.z;
  const int R = T_pi_ * B_;
  const Prior prior = cfg_.prior;
  const Divergence div = cfg_.divergence;
  const bool grad_q = pi_grad_through_q();
  // dL/dQbar = -q_coef rho^t / (B T) / S_Q
  if (grad_q) ops_.scale_add(p.d_qbar, p.w, R, -cfg_.q_coef, q_scale_, 0.0f);
  const bool prior_term = pi_has_prior_term();
  if (prior_term) {
    // dL/dD = prior_weight rho^t / (B T) / S_D, S_D as pi_loss used it
    ops_.scale_add(p.d_div, p.w, R, cfg_.prior_weight(), p.divisor, 0.0f);
    const auto [pm, ps] = prior_gaussian(batch);
    if (div == Divergence::nll) {
      ops_.gauss_nll_backward(p.d_a, p.d_div, p.a, pm, ps, R, A_, cfg_.min_std);
    } else if (prior == Prior::intermediate && div == Divergence::forward) {
      const IntermediateBuffers& im = intermediate_;
      ops_.weighted_nll_backward(p.d_mu, p.d_log_std, p.d_div, im.a, im.w, p.mu, p.log_std,
                                 cfg_.prior_samples, R, A_);
    } else {
      ops_.gauss_kl_backward(p.d_mu, p.d_log_std, p.d_div, p.mu, p.log_std, pm, ps, R, A_,
                             kl_dir(div));
      if (prior == Prior::intermediate)  // D contains -Qbar / (beta S_Q)
        ops_.scale_add(p.d_qbar, p.d_div, R, -1.0f / cfg_.beta, q_scale_, 1.0f);
    }
  }
  if (grad_q) {
    // Through the frozen Q heads (no parameter gradients) to the action.
    ops_.pair_select_backward(p.d_q, p.d_qbar, p.q, 2, R, PairMode::avg, cfg_.seed, draw(kPiPair));
    ops_.two_hot_inv_backward(p.d_q_logits, p.d_q, p.q_logits, 2 * R, cfg_.bins());
    // The pair's heads in ascending order add into d_za as the whole ensemble's would (the
    // others' gradients are zero).
    mlp_backward(ops_, pair_, p.pair.params, nullptr, p.za, R, p.qs, p.d_q_logits, p.d_qs, p.d_za,
                 pair_dropout(q_dropout(dropout, kPiDropout), p.pair));
    ops_.concat_backward(nullptr, p.d_a, p.d_za, R, Z_, A_);  // z is detached
  }
  const bool kl = prior_term && div != Divergence::nll;  // D reads mu and log_std
  ops_.policy_head_backward(p.d_raw, p.d_a, kl ? p.d_mu : nullptr, kl ? p.d_log_std : nullptr,
                            p.g_log_pi, p.raw, R, A_, cfg_.policy_head(), cfg_.seed,
                            draw(kPiNoise));
  mlp_backward(ops_, pi_, pi_set_.params, pi_set_.grads, z, R, p.pi, p.d_raw, p.d_pi, nullptr,
               Dropout{});
}

void WorldModel::update_pi(const Batch& batch, UpdateStats* stats) {
  NvtxRange range("update/update_pi");
  pi_loss(batch, stats);
  pi_loss_backward(batch);
  optimizer_step(pi_set_, kPiAdamEps, &stats->pi_grad_norm);
}

// ---- 6. Polyak averaging of the target Qs -------------------------------------------------------

void WorldModel::polyak() {
  NvtxRange range("update/polyak");
  ops_.polyak(target_qs_, model_set_.params + q_offset_, n_q_, cfg_.tau);
}

}  // namespace pompc::model
