// src/model/world_model_pi.cpp: the policy step of the world model's update: the PO-MPC family of
// policy objectives (SPEC section 4) and the learned prior's fit. Maths, shapes and the Philox
// purposes: the run book in world_model.h.
#include <cmath>
#include <utility>

#include "common.h"
#include "model/world_model.h"
#include "nvtx.h"

namespace pompc::model {
namespace {
constexpr float kPiAdamEps = 1e-5f;  // TD-MPC2's pi_optim eps (also the learned prior's)

KlDir kl_dir(Divergence d) {
  return d == Divergence::reverse ? KlDir::reverse : KlDir::forward;
}
}  // namespace

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
  if (cfg_.prior == Prior::learned) return {mu_psi_, sigma_psi_};
  return {batch.mu_p, batch.sigma_p};
}

const float* WorldModel::prior_divisor() {
  const float* s = cfg_.prior_scale == PriorScale::own ? d_scale_
                   : cfg_.prior_scale == PriorScale::q ? q_scale_
                                                       : nullptr;
  if (cfg_.prior_scale_threshold <= 0.0f) return s;
  // The term is 0 while S_D <= threshold: dividing by +inf (S_D = 1 when prior_scale=none).
  if (!s) {
    ops_.fill(gate_, 1, 1.0f);
    s = gate_;
  }
  ops_.scale_gate(gate_, s, cfg_.prior_scale_threshold);
  return gate_;
}

void WorldModel::prior_fit_forward(const Batch& batch, UpdateStats* stats) {
  NvtxRange range("update/prior_fit_forward");
  const int R = H_ * B_;  // the latents z[0..H-1] that have planner targets
  mlp_forward(ops_, prior_, params_prior_, zs_, R, psi_acts_, raw_psi_, Dropout{});
  ops_.policy_head_forward(a_psi_, mu_psi_, log_std_psi_, nullptr, nullptr, raw_psi_, R, A_,
                           cfg_.policy_head(), cfg_.seed, update_offset(updates_, kPiNoise));
  ops_.gauss_kl_forward(fit_div_, mu_psi_, log_std_psi_, batch.mu_p, batch.sigma_p, R, A_,
                        kl_dir(cfg_.prior_fit));
  // prior_fit_loss = sum_{t<H} rho^t / (B H) D_I
  ops_.weighted_sum(&stats->prior_fit_loss, fit_div_, w_fit_, R, 1.0f, nullptr, 0.0f);
}

void WorldModel::prior_fit_backward(const Batch& batch) {
  NvtxRange range("update/prior_fit_backward");
  const int R = H_ * B_;
  const KlDir dir = kl_dir(cfg_.prior_fit);
  ops_.scale_add(d_fit_div_, w_fit_, R, 1.0f, nullptr, 0.0f);
  ops_.gauss_kl_backward(d_mu_psi_, d_log_std_psi_, d_fit_div_, mu_psi_, log_std_psi_, batch.mu_p,
                         batch.sigma_p, R, A_, dir);
  ops_.policy_head_backward(d_raw_psi_, nullptr, d_mu_psi_, d_log_std_psi_, nullptr, raw_psi_, R,
                            A_, cfg_.policy_head(), cfg_.seed, update_offset(updates_, kPiNoise));
  mlp_backward(ops_, prior_, params_prior_, grads_prior_, zs_, R, psi_acts_, d_raw_psi_, psi_g_,
               nullptr, Dropout{});
}

void WorldModel::prior_fit_step(UpdateStats* stats) {
  NvtxRange range("update/prior_fit_step");
  ops_.clip_grad_norm(grads_prior_, n_prior_, cfg_.grad_clip_norm, &stats->prior_grad_norm);
  AdamSettings s;
  s.eps = kPiAdamEps;
  ops_.adam_update(s, groups_prior_, params_prior_, grads_prior_, m_prior_, v_prior_, adam_prior_);
}

void WorldModel::intermediate_weights(const Batch& batch) {
  const int R = T_pi_ * B_, S = cfg_.prior_samples, ZA = Z_ + A_;
  const size_t RZA = static_cast<size_t>(R) * ZA, RA = static_cast<size_t>(R) * A_;
  ops_.prior_sample(a_k_, batch.mu_p, batch.sigma_p, S, R, A_, cfg_.seed,
                    update_offset(updates_, kPriorSample));
  for (int k = 0; k < S; ++k)
    ops_.concat_forward(zk_in_ + k * RZA, zs_, a_k_ + k * RA, R, Z_, A_);
  mlp_forward(ops_, qs_, params_model_ + q_offset_, zk_in_, S * R, qk_acts_, qk_logits_,
              Dropout{});
  ops_.two_hot_inv_forward(qk_val_, qk_logits_, Qn_ * S * R, cfg_.bins());
  ops_.pair_select_forward(qk_avg_, qk_val_, Qn_, S * R, PairMode::avg, cfg_.seed,
                           update_offset(updates_, kPriorPair));
  // beta acts on Qbar / S_Q (S_Q of this pi step), so its scale does not depend on the task.
  ops_.scale_add(qk_avg_, qk_avg_, static_cast<int64_t>(S) * R, 1.0f, q_scale_, 0.0f);
  ops_.sample_weights(w_k_, log_z_, qk_avg_, S, R, cfg_.beta);
}

void WorldModel::pi_forward(const Batch& batch, UpdateStats* stats, bool update_scale,
                            bool dropout) {
  NvtxRange range("update/pi_forward");
  const int R = T_pi_ * B_;
  const Prior prior = cfg_.prior;
  const Divergence div = cfg_.divergence;
  const bool use_q = cfg_.q_coef > 0.0f, need_q = pi_needs_qbar();
  mlp_forward(ops_, pi_, params_pi_, zs_, R, pi_acts_, raw_pi_, Dropout{});
  ops_.policy_head_forward(a_pi_, mu_pi_, log_std_pi_, log_pi_, nullptr, raw_pi_, R, A_,
                           cfg_.policy_head(), cfg_.seed, update_offset(updates_, kPiNoise));
  // pi_loss = sum w alpha log_pi
  ops_.weighted_sum(&stats->pi_loss, log_pi_, w_pi_, R, cfg_.entropy_coef, nullptr, 0.0f);
  if (need_q) {
    ops_.concat_forward(pq_in_, zs_, a_pi_, R, Z_, A_);
    mlp_forward(ops_, qs_, params_model_ + q_offset_, pq_in_, R, pq_acts_, pq_logits_,
                q_dropout(dropout, kPiDropout));
    ops_.two_hot_inv_forward(pq_val_, pq_logits_, Qn_ * R, cfg_.bins());
    ops_.pair_select_forward(qavg_, pq_val_, Qn_, R, PairMode::avg, cfg_.seed,
                             update_offset(updates_, kPiPair));
  }
  if (need_q && update_scale) ops_.running_scale_update(q_scale_, qavg_, B_, cfg_.tau);
  if (use_q) {
    // pi_loss -= q_coef sum w Qbar / S_Q
    ops_.weighted_sum(&stats->pi_loss, qavg_, w_pi_, R, -cfg_.q_coef, q_scale_, 1.0f);
  }
  ops_.scale_add(&stats->pi_scale, q_scale_, 1, 1.0f, nullptr, 0.0f);
  if (prior != Prior::learned) {
    ops_.fill(&stats->prior_fit_loss, 1, 0.0f);
    ops_.fill(&stats->prior_grad_norm, 1, 0.0f);
  }
  if (!pi_has_prior_term()) {  // no prior, or prior_coef = 0: the objective is TD-MPC2's
    ops_.fill(&stats->prior_loss, 1, 0.0f);
    ops_.fill(&stats->prior_scale, 1, 1.0f);
    return;
  }

  // The prior's Gaussian (mu_t, sigma_t) and D per row.
  if (prior == Prior::learned) {  // pi_psi after its fit step (detached)
    mlp_forward(ops_, prior_, params_prior_, zs_, R, psi_acts_, raw_psi_, Dropout{});
    ops_.policy_head_forward(a_psi_, mu_psi_, log_std_psi_, nullptr, nullptr, raw_psi_, R, A_,
                             cfg_.policy_head(), cfg_.seed, update_offset(updates_, kPiNoise));
    ops_.exp_forward(sigma_psi_, log_std_psi_, static_cast<int64_t>(R) * A_);
  }
  const auto [pm, ps] = prior_gaussian(batch);
  if (prior == Prior::intermediate) intermediate_weights(batch);
  if (div == Divergence::nll) {
    ops_.gauss_nll_forward(div_, a_pi_, pm, ps, R, A_, cfg_.min_std);
  } else if (prior == Prior::intermediate && div == Divergence::forward) {
    ops_.weighted_nll_forward(div_, a_k_, w_k_, mu_pi_, log_std_pi_, cfg_.prior_samples, R, A_);
  } else {
    ops_.gauss_kl_forward(div_, mu_pi_, log_std_pi_, pm, ps, R, A_, kl_dir(div));
    if (prior == Prior::intermediate) {  // KL(pi || planner) - Qbar / (beta S_Q) + log_z
      ops_.scale_add(div_, qavg_, R, -1.0f / cfg_.beta, q_scale_, 1.0f);
      ops_.scale_add(div_, log_z_, R, 1.0f, nullptr, 1.0f);
    }
  }
  if (cfg_.prior_scale == PriorScale::own && update_scale)
    ops_.running_scale_update(d_scale_, div_, B_, cfg_.tau);
  pi_divisor_ = prior_divisor();  // pi_backward divides by the same S_D
  ops_.weighted_sum(&stats->prior_loss, div_, w_pi_, R, 1.0f, pi_divisor_, 0.0f);
  ops_.weighted_sum(&stats->pi_loss, div_, w_pi_, R, cfg_.prior_weight(), pi_divisor_, 1.0f);
  if (cfg_.prior_scale == PriorScale::none)
    ops_.fill(&stats->prior_scale, 1, 1.0f);
  else
    ops_.scale_add(&stats->prior_scale,
                   cfg_.prior_scale == PriorScale::own ? d_scale_ : q_scale_, 1, 1.0f, nullptr,
                   0.0f);
}

void WorldModel::pi_backward(const Batch& batch, bool dropout) {
  NvtxRange range("update/pi_backward");
  const int R = T_pi_ * B_;
  const Prior prior = cfg_.prior;
  const Divergence div = cfg_.divergence;
  const bool grad_q = pi_grad_through_q();
  // dL/dQbar = -q_coef rho^t / (B T) / S_Q
  if (grad_q) ops_.scale_add(d_qavg_, w_pi_, R, -cfg_.q_coef, q_scale_, 0.0f);
  const bool prior_term = pi_has_prior_term();
  if (prior_term) {
    // dL/dD = prior_weight rho^t / (B T) / S_D, S_D as pi_forward used it
    ops_.scale_add(d_div_, w_pi_, R, cfg_.prior_weight(), pi_divisor_, 0.0f);
    const auto [pm, ps] = prior_gaussian(batch);
    if (div == Divergence::nll) {
      ops_.gauss_nll_backward(d_a_pi_, d_div_, a_pi_, pm, ps, R, A_, cfg_.min_std);
    } else if (prior == Prior::intermediate && div == Divergence::forward) {
      ops_.weighted_nll_backward(d_mu_pi_, d_log_std_pi_, d_div_, a_k_, w_k_, mu_pi_, log_std_pi_,
                                 cfg_.prior_samples, R, A_);
    } else {
      ops_.gauss_kl_backward(d_mu_pi_, d_log_std_pi_, d_div_, mu_pi_, log_std_pi_, pm, ps, R, A_,
                             kl_dir(div));
      if (prior == Prior::intermediate)  // D contains -Qbar / (beta S_Q)
        ops_.scale_add(d_qavg_, d_div_, R, -1.0f / cfg_.beta, q_scale_, 1.0f);
    }
  }
  if (grad_q) {
    // Through the frozen Q heads (no parameter gradients) to the action.
    ops_.pair_select_backward(d_pq_val_, d_qavg_, pq_val_, Qn_, R, PairMode::avg, cfg_.seed,
                              update_offset(updates_, kPiPair));
    ops_.two_hot_inv_backward(d_pq_logits_, d_pq_val_, pq_logits_, Qn_ * R, cfg_.bins());
    mlp_backward(ops_, qs_, params_model_ + q_offset_, nullptr, pq_in_, R, pq_acts_, d_pq_logits_,
                 pq_g_, d_pq_in_, q_dropout(dropout, kPiDropout));
    ops_.concat_backward(nullptr, d_a_pi_, d_pq_in_, R, Z_, A_);  // z is detached
  }
  const bool kl = prior_term && div != Divergence::nll;  // D reads mu and log_std
  ops_.policy_head_backward(d_raw_pi_, d_a_pi_, kl ? d_mu_pi_ : nullptr,
                            kl ? d_log_std_pi_ : nullptr, g_logpi_, raw_pi_, R, A_,
                            cfg_.policy_head(), cfg_.seed, update_offset(updates_, kPiNoise));
  mlp_backward(ops_, pi_, params_pi_, grads_pi_, zs_, R, pi_acts_, d_raw_pi_, pi_g_, nullptr,
               Dropout{});
}

void WorldModel::pi_step(UpdateStats* stats) {
  NvtxRange range("update/pi_step");
  ops_.clip_grad_norm(grads_pi_, n_pi_, cfg_.grad_clip_norm, &stats->pi_grad_norm);
  AdamSettings s;
  s.eps = kPiAdamEps;
  ops_.adam_update(s, groups_pi_, params_pi_, grads_pi_, m_pi_, v_pi_, adam_pi_);
}

}  // namespace pompc::model
