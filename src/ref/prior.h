// src/ref/prior.h: the policy-prior divergences of the PO-MPC family (SPEC section 4, D options
// and prior_t options): closed-form Gaussian KL in both directions (BMPC's reverse KL to the
// planner), TD-M(PC)^2's prior negative log-likelihood, the intermediate prior's samples and
// self-normalised weights, the MPO-style weighted NLL of pi_theta on them, and two scalars' glue.
//
// Maths, per row r and action dim j (c = 0.5 log(2 pi)):
//   gauss_kl:     s = exp(log_std), sp = sigma_p (a std, > 0), d = mu - mu_p
//     reverse     KL(N(mu, s) || N(mu_p, sp)): kl_j = log sp - log_std + (s^2 + d^2)/(2 sp^2) - 1/2
//     forward     KL(N(mu_p, sp) || N(mu, s)): kl_j = log_std - log sp + (sp^2 + d^2)/(2 s^2) - 1/2
//                 out_r = (1/A) sum_j kl_j  (BMPC's kl_div(...).mean(-1))
//     backward    reverse: dmu += dout_r/A * d/sp^2;  dlog_std += dout_r/A * (s^2/sp^2 - 1)
//                 forward: dmu += dout_r/A * d/s^2;   dlog_std += dout_r/A * (1 - (sp^2 + d^2)/s^2)
//                 (the prior is a constant: no gradient to mu_p, sigma_p)
//   gauss_nll:    TD-M(PC)^2's prior term, TD-MPC2's first-release gaussian_logprob (scaled by A):
//                 s_j = max(sigma_p_j, min_std), e_j = (a_j - mu_p_j) / s_j,
//                 out_r = -A (sum_j(-0.5 e_j^2 - log s_j) - c)
//     backward    da_j += dout_r A e_j / s_j  (no gradient to the prior)
//   prior_sample: a_k[k, r, j] = clamp(mu_p[r, j] + sigma_p[r, j] eps, -1, 1),
//                 eps = philox_normal(seed, offset, (k rows + r) A + j) (kernels/prior.cu:
//                 philox_normal_f, its float twin within 12 u |eps|)
//                 (the intermediate prior's S samples a_k ~ planner)
//   sample_weights: x_k = q[k, r] / beta; m = max_k x_k;
//                 w[k, r] = exp(x_k - m) / sum_k exp(x_k - m)  (softmax_k(Qbar / beta));
//                 log_z_r = m + log(sum_k exp(x_k - m)) - log S  (log mean_k exp(x_k)).
//                 Forward only: the weights are constants of the loss.
//   weighted_nll: out_r = -sum_k w[k, r] (1/A) sum_j log N(a_k[k, r, j]; mu_j, s_j),
//                 s = exp(log_std), log N(x; m, s) = -0.5 ((x - m) / s)^2 - log s - c
//                 (forward KL to the intermediate prior: MPO-style projection of the samples)
//     backward    y = (a_kj - mu_j) / s_j:  dmu_j += dout_r (-1/A) sum_k w_k y / s_j;
//                 dlog_std_j += dout_r (-1/A) sum_k w_k (y^2 - 1)
//   exp_forward:  y_i = exp(x_i)  (a learned prior's std from its log_std)
//   scale_gate:   *out = *scale > threshold ? *scale : +inf  (TD-M(PC)^2's scale_threshold: a
//                 loss term divided by it is zero while the RunningScale is at or below it)
//
// Shapes (row-major): mu, log_std, mu_p, sigma_p, a, and dmu, dlog_std, da [rows, A]; out, dout,
//   log_z [rows]; a_k [S, rows, A]; q, w [S, rows] (sample-major, as the world model evaluates
//   the S * rows sampled actions); x, y [n]; scale, out of scale_gate: one backend scalar each.
//   rows is any row count (B, B H, ...); A in {1, 6, 21, 38} on DMC; S = samples per row.
//
// Overwritten / accumulated: every forward output is overwritten (log_z may be nullptr);
//   every gradient is ACCUMULATED (+=). gauss_kl_backward's dmu or dlog_std may be nullptr (that
//   gradient is skipped); every other gradient and every upstream gradient (dout) must be given.
//
// Test: build/test_emu -ts=ops -tc='prior*'
#pragma once

#include <cstdint>

#include "op_types.h"  // KlDir, check_prior_shape / _dir / _min_std / _given

namespace pompc::ref {

template <typename T>
void gauss_kl_forward(T* out, const T* mu, const T* log_std, const T* mu_p, const T* sigma_p,
                      int rows, int A, KlDir dir);

template <typename T>
void gauss_kl_backward(T* dmu, T* dlog_std, const T* dout, const T* mu, const T* log_std,
                       const T* mu_p, const T* sigma_p, int rows, int A, KlDir dir);

template <typename T>
void gauss_nll_forward(T* out, const T* a, const T* mu_p, const T* sigma_p, int rows, int A,
                       float min_std);

template <typename T>
void gauss_nll_backward(T* da, const T* dout, const T* a, const T* mu_p, const T* sigma_p, int rows,
                        int A, float min_std);

template <typename T>
void prior_sample(T* a_k, const T* mu_p, const T* sigma_p, int S, int rows, int A, uint64_t seed,
                  uint64_t offset);

template <typename T>
void sample_weights(T* w, T* log_z, const T* q, int S, int rows, float beta);

template <typename T>
void weighted_nll_forward(T* out, const T* a_k, const T* w, const T* mu, const T* log_std, int S,
                          int rows, int A);

template <typename T>
void weighted_nll_backward(T* dmu, T* dlog_std, const T* dout, const T* a_k, const T* w,
                           const T* mu, const T* log_std, int S, int rows, int A);

template <typename T>
void exp_forward(T* y, const T* x, int64_t n);

template <typename T>
void scale_gate(T* out, const T* scale, float threshold);

}  // namespace pompc::ref
