// src/ref/mppi.h: the MPPI planner's own ops (SPEC section 3; TD-MPC2 tdmpc2.py `_plan`),
// batched over S states planned at once (several environments, or reanalysis of replay states).
// The world-model passes between them (value estimation) are made of the model's ops.
//
// Maths, per state s (t < H, j < A, n < N, e < E):
//   mppi_init:    std = max_std; mean = 0; unless first[s]: mean[t] = prev_mean[t + 1], t < H - 1
//                 (the warm start: the last step stays 0)
//   mppi_sample:  actions[t, s, n] = clamp(mean[s, t] + std[s, t] * eps, -1, 1) for n >= P;
//                 eps = philox_normal(seed, offset, ((s * H + t) * N + n) * A + j). Columns n < P
//                 (the policy trajectories) are left as they are. With rows_out (the world
//                 model's rollout input rows), every column's a[t, s, n] is also written at
//                 rows_out + ((t S + s) N + n) rows_ld (rows_ld >= A), the policy's copied.
//   mppi_elites:  v = value with NaN -> 0; the E largest, ties to the lower index (an exact top-k,
//                 identical on both backends); writes their indices (descending value) and values
//   mppi_update:  score_e = exp(temperature (v_e - max v)) / sum; mean = sum_e score_e a_e;
//                 std = clamp(sqrt(sum_e score_e (a_e - mean)^2), min_std, max_std)
//   mppi_elites_update: value = discounted_sum(terms, w) (src/ref/loss.h: the returns G from the
//                 rewards and the terminal value, [w.count, S N] -> [S, N], written out), then
//                 mppi_elites on it, then mppi_update on its elites (one op: the planner's path)
//   mppi_select:  k = argmax_e (log score_e + g_e), g_e = -log(-log u_e) (Gumbel-max: elite k is
//                 drawn with probability score_k), u_e = (philox_u32(seed, offset, s E + e) >> 8
//                 + 0.5) / 2^24 in (0, 1), in double; mu_p = a_k[t = 0]; sigma_p = std[s, 0];
//                 action = clamp(mu_p + (explore ? sigma_p * philox_normal(seed, offset + 1,
//                 s A + j) : 0), -1, 1)
//
// Shapes (row-major): actions [H, S, N, A] (time-major, so the world model sees [S * N, A] rows
//   at each t); mean, std, prev_mean [S, H, A]; value [S, N]; elite_idx (int32) and elite_value
//   [S, E]; score [S, E]; action, mu_p, sigma_p [S, A]; first [S] (uint8, 1 = episode start or
//   reanalysis: no warm start).
// Overwritten: every output; nothing is accumulated.
// Test: build/test_emu -ts=planner.
#pragma once

#include <cstdint>

#include "op_types.h"  // MppiShape, TermWeights, gumbel_uniform, check_mppi_shape

namespace pompc::ref {

void mppi_init(float* mean, float* std, const float* prev_mean, const uint8_t* first,
               const MppiShape& sh, float max_std);
void mppi_sample(float* actions, const float* mean, const float* std, const MppiShape& sh,
                 uint64_t seed, uint64_t offset, float* rows_out = nullptr, int64_t rows_ld = 0);
void mppi_elites(int32_t* elite_idx, float* elite_value, const float* value, const MppiShape& sh);
void mppi_update(float* mean, float* std, float* score, const float* actions,
                 const int32_t* elite_idx, const float* elite_value, const MppiShape& sh,
                 float temperature, float min_std, float max_std);
void mppi_elites_update(int32_t* elite_idx, float* elite_value, float* mean, float* std,
                        float* score, float* value, const float* terms, const TermWeights& w,
                        const float* actions, const MppiShape& sh, float temperature, float min_std,
                        float max_std);
void mppi_select(float* action, float* mu_p, float* sigma_p, const float* actions,
                 const int32_t* elite_idx, const float* score, const float* std,
                 const MppiShape& sh, bool explore, uint64_t seed, uint64_t offset);

}  // namespace pompc::ref
