// src/ref/policy.h: the Gaussian policy head of pi (TD-MPC2 world_model.py `pi`, math.py; BMPC
// bmpc/common/world_model.py `pi`).
//
// Two forms (PolicyHead::form). Common to both, per row b and action dim j (raw = the pi MLP
// output [mean | s], torch's chunk(2, -1)):
//   log_std_j = lo + 0.5 (hi - lo) (tanh(s_j) + 1)               lo, hi = log_std_min, log_std_max
//   eps_j     = philox_normal(seed, offset, b * A + j)            reparameterised noise (the
//               kernels draw philox_normal_f, its float twin within 12 u |eps|: kernels/policy.cu)
//   mu_j      = tanh(mean_j),  c = 0.5 log(2 pi)
//
// squashed (TD-MPC2): the Gaussian lives before a tanh.
//   u_j       = mean_j + exp(log_std_j) eps_j,  action_j = tanh(u_j)
//   log_prob  = sum_j(-0.5 eps_j^2 - log_std_j) - A c - corr      (the true log-density of action)
//   corr      = sum_j log(relu(1 - action_j^2) + 1e-6)            (tanh change of variables)
//   log_pi, by entropy_form (SPEC section 1; the losses add alpha * log_pi, i.e. subtract
//   alpha * scaled_entropy):
//     paper:   log_pi = A (sum_j(-0.5 eps_j^2 - log_std_j) - c) - corr       (first release)
//     current: lp = sum_j(-0.5 eps_j^2 - log_std_j - c);  log_pi = log_prob * (A lp) /
//              (log_prob + 1e-8)   (today's code: entropy_scale = scaled_log_prob / (log_prob +
//              1e-8), scaled_entropy = -log_prob * entropy_scale, with gradients through every
//              factor; numerically A * lp, the tanh correction cancels up to the 1e-8).
//   Backward (g_x = dL/dx; a loss may use action, mu, log_std and log_pi):
//     g_u_j      = g_action_j (1 - action_j^2) + g_log_pi * c_u * (-dcorr_j/du_j)
//                  dcorr_j/du_j = [1 - action_j^2 > 0] (-2 action_j (1 - action_j^2)) /
//                                 (1 - action_j^2 + 1e-6)
//     g_logstd_j = g_u_j exp(log_std_j) eps_j + g_log_pi * c_l + g_log_std_j
//     paper: c_l = -A, c_u = 1.  current: with P = A lp, Q = log_prob, D = Q + 1e-8:
//       c_u = P 1e-8 / D^2 (= d log_pi / dQ, computed without cancellation), c_l = -c_u - A Q / D
//     draw[b, j]     += g_u_j + g_mu_j (1 - mu_j^2)
//     draw[b, A + j] += g_logstd_j * 0.5 (hi - lo) (1 - tanh(s_j)^2)
//   For |u| large enough that action rounds to +-1, 1 - action^2 = 0 and both tanh paths give 0
//   (PyTorch's relu gradient at 0 is 0, and so is tanh's).
//
// clamped (BMPC, cfg.bmpc with policy_loss_type "kl"): the Gaussian's mean is already squashed
// and the sample is clamped to the action box.
//   u_j       = mu_j + exp(log_std_j) eps_j,  action_j = clamp(u_j, -1, 1)
//   log_prob  = sum_j(-0.5 eps_j^2 - log_std_j - c)               (Gaussian density of u; no
//                                                                  tanh correction)
//   log_pi    = A * log_prob                                      (BMPC's scaled_log_prob)
//   entropy_form is ignored: with lp = log_prob, BMPC's entropy_scale = A lp / (lp + 1e-8) makes
//   scaled_entropy = -A lp * lp / (lp + 1e-8), which differs from -A lp by a relative 1e-8 / |lp|,
//   below fp32 precision for |lp| > 0.2 (lp sums A terms of O(1)); its gradient differs by the
//   square of that.
//   BMPC passes lo, hi = -3, 1 for its policy and -2, 1 for the planner's policy trajectories in
//   reanalysis: two PolicyHead values, one op.
//   Backward:
//     g_u_j      = g_action_j [-1 <= u_j <= 1]           (torch.clamp: gradient passes inclusively)
//     g_logstd_j = g_u_j exp(log_std_j) eps_j - A g_log_pi + g_log_std_j
//     draw[b, j]     += (g_u_j + g_mu_j) (1 - mu_j^2)
//     draw[b, A + j] += g_logstd_j * 0.5 (hi - lo) (1 - tanh(s_j)^2)
//
// Log-ratio of two heads (PO-MPC's KL-regularised TD target, SPEC 6 kl_critic): pi's sample of
//   each row (the forward's eps, the same (seed, offset)) scored by both heads, raw and
//   raw_prior [B, 2A] of the same layout and PolicyHead:
//     x_j = c_j + exp(log_std_j) eps_j  (c = mean: squashed; c = tanh(mean): clamped)
//     log_ratio_b = sum_j [(-0.5 eps_j^2 - log_std_j) - (-0.5 y_j^2 - log_std'_j)],
//     y_j = (x_j - c'_j) / exp(log_std'_j)      (' = the prior head; the 0.5 log(2 pi) cancel)
//   squashed: log pi(a) - log pi_prior(a) of a = tanh(x) exactly (the tanh Jacobian is the same for
//   both densities and cancels); clamped: the ratio of the two Gaussian densities of the sample
//   before the clamp (exact for actions inside the box; BMPC's own log_pi ignores the clamp
//   too). Forward only (the target has no gradient); out [B] overwritten.
//
// Shapes: raw / draw [B, 2A]; action, mu, log_std (and their gradients) [B, A] (the forward's
//   action at rows of stride action_ld >= A when non-zero: a written beside z in [z, a] rows);
//   log_pi, log_prob, dlog_pi [B]. B is any row count (batch B, B * (H+1), planner P, ...);
//   A in {1, 6, 21, 38} on the DMC tasks.
//
// Overwritten / accumulated: forward outputs overwritten (mu, log_std, log_pi, log_prob may be
//   nullptr to skip); draw ACCUMULATED (+=); the upstream gradients daction, dmu, dlog_std,
//   dlog_pi may each be nullptr (treated as zero). The backward recomputes eps from (seed,
//   offset): pass the values the forward used.
// bias: the forward may take the layer's bias [2A] that the layer left out
//   (model::LastBias::leave) and add it to raw as it reads it: the same bits as the layer adding it
//   (src/ref/linear.h); nullptr when raw already holds it.
//
// Test: build/test_emu -ts=ops -tc='policy*'
#pragma once

#include <cstdint>

#include "op_types.h"  // PolicyHead, EntropyForm, PolicyForm

namespace pompc::ref {

template <typename T>
void policy_head_forward(T* action, T* mu, T* log_std, T* log_pi, T* log_prob, const T* raw,
                         const T* bias, int B, int A, const PolicyHead& head, uint64_t seed,
                         uint64_t offset, int64_t action_ld = 0);

template <typename T>
void policy_head_backward(T* draw, const T* daction, const T* dmu, const T* dlog_std,
                          const T* dlog_pi, const T* raw, int B, int A, const PolicyHead& head,
                          uint64_t seed, uint64_t offset);

template <typename T>
void policy_log_ratio(T* out, const T* raw, const T* raw_prior, int B, int A,
                      const PolicyHead& head, uint64_t seed, uint64_t offset);

}  // namespace pompc::ref
