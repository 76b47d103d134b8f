// src/ref/loss.h: the glue ops of the world model's losses and targets: fill, scale_add,
// weighted_sum (loss reductions, also divided by a backend scalar such as the RunningScale S_Q),
// and pair_select (min / avg of two randomly picked Q heads, TD-MPC2 world_model.py `Q`).
//
// Maths
//   fill:          x_i = value
//   scale_add:     y_i = beta * y_i + (alpha * x_i) / d        d = *divisor, or 1 when null
//                  (beta == 0: y is not read, so it copies / scales into uninitialised memory).
//                  In the update: the pi loss's gradient w.r.t. Qbar, -rho^t / (B (H+1)) / S_Q;
//                  td = reward + gamma * min2(...); a copy of z[0] into the rollout buffer.
//   discounted_sum: out_i = sum_t w_t x[t, i] over t = 0..T-1 (T = w.count), accumulated in fp32
//                  in t order from +0: exactly fill(out, 0) then scale_add(out, x[t], n, w_t,
//                  null, 1) for t = 0, 1, ... (the same float operations in the same order, one
//                  op instead of T + 1). The planner's value G = sum_t gamma^t r_t + gamma^H V
//                  (TD-MPC2 `_estimate_value`), with x = [r_0 .. r_{H-1}, V], is formed so
//                  inside mppi_elites_update (src/ref/mppi.h).
//   weighted_sum:  s = sum_i w_i x_i  (w null: w_i = 1), summed in double;
//                  *out = beta * *out + alpha * s / d (in double, rounded once to T;
//                  beta == 0: *out is not read). The losses: reward = sum_t rho^t mean_b ce / H
//                  is weighted_sum(ce, w = rho^t / (B H)).
//   pair_select:   (i, j) = pick_pair(Qn, seed, offset): two distinct heads, the same for every row
//                  (TD-MPC2 draws torch.randperm(num_q)[:2] once per call; i is the first);
//                  min: out_r = min(q[i, r], q[j, r]) (NaN propagates; a tie picks head i)
//                  avg: out_r = (q[i, r] + q[j, r]) / 2
//     backward:    min: dq[k, r] += dout_r for the head k whose value was taken;
//                  avg: dq[i, r] += dout_r / 2, dq[j, r] += dout_r / 2.
//   gather_pair:   (lo, hi) = pick_pair's (i, j) in ascending order (pick_pair_sorted);
//                  heads = {lo, hi}; for every tensor t of g (PairGather, src/op_types.h):
//                  dst[g.dst[t] + k * n_t + e] = src[g.src[t] + head_k * n_t + e], k = 0, 1,
//                  n_t = g.per_head[t]: the parameters of the two heads a Q call with the same
//                  (seed, offset) averages or takes the min of, as a two-head ensemble. Run at
//                  rows R, its two heads compute exactly what heads lo and hi compute among all
//                  Qn (each head's GEMMs and LayerNorms are its own; Dropout::heads = heads keeps
//                  their dropout masks), and pair_select on the pair (Qn = 2) picks both: min
//                  and avg are symmetric, so the values equal pair_select's over all Qn heads
//                  (min's backward on an exact tie may credit the other head).
//   pick_pair:     i = floor(u0 Qn), j' = floor(u1 (Qn - 1)), j = j' + (j' >= i), with u0, u1 the
//                  32-bit Philox words 0 and 1 of (seed, offset) scaled to [0, 1) (multiply-shift).
//
// Shapes: x, y, w [n] (n = B, B H, Qn B H, ...); discounted_sum's x [T, n], out [n]; q / dq [Qn,
// rows] (the two_hot_inv values of every
//   head, head-major as the ensemble's outputs), out / dout [rows]. divisor, out of weighted_sum:
//   one backend scalar each.
//
// Overwritten / accumulated: fill, scale_add (with beta = 0), discounted_sum, weighted_sum
//   (beta = 0), gather_pair (dst, heads) and pair_select_forward overwrite their output;
//   pair_select_backward ACCUMULATES into dq (the heads not picked are left untouched). Nothing
//   here has parameters.
//
// Test: build/test_emu -ts=ops -tc='loss*'
#pragma once

#include <cstdint>

#include "op_types.h"  // PairMode, pick_pair, PairGather, TermWeights

namespace pompc::ref {

template <typename T>
void fill(T* x, int64_t n, T value);

template <typename T>
void scale_add(T* y, const T* x, int64_t n, T alpha, const T* divisor, T beta);

template <typename T>
void discounted_sum(T* out, const T* x, int64_t n, const TermWeights& w);

template <typename T>
void weighted_sum(T* out, const T* x, const T* w, int64_t n, T alpha, const T* divisor, T beta);

template <typename T>
void pair_select_forward(T* out, const T* q, int Qn, int rows, PairMode mode, uint64_t seed,
                         uint64_t offset);

template <typename T>
void pair_select_backward(T* dq, const T* dout, const T* q, int Qn, int rows, PairMode mode,
                          uint64_t seed, uint64_t offset);

void gather_pair(float* dst, int32_t* heads, const float* src, const PairGather& g, uint64_t seed,
                 uint64_t offset);

}  // namespace pompc::ref
