// src/ref/scale.h: RunningScale (TD-MPC2 common/scale.py), the normaliser S_Q / S_D of the
// policy losses.
//
// Maths
//   Percentile q of n values x (linear interpolation, TD-MPC2's _percentile, which equals
//   torch.quantile(..., interpolation='linear') up to rounding):
//     sorted = sort(x) (NaN last, as torch.sort); pos = q * (n - 1) / 100 (in T);
//     lo = floor(pos); hi = min(lo + 1, n - 1); w = pos - lo;
//     P_q = sorted[lo] * (1 - w) + sorted[hi] * w
//   Update with a batch x (the values at t = 0): v = max(P95 - P5, 1); S += tau * (v - S),
//   tau = 0.01 (torch lerp_ with weight < 0.5). S starts at 1 (the caller initialises it).
//
// Shapes: x [n] (n = B, the batch of Q values or divergences at t = 0); S a single scalar;
//   scratch [n] caller-provided (so the update allocates nothing).
//
// Overwritten / accumulated: *value is updated in place (read, then overwritten); scratch
//   overwritten with the sorted batch. x is read only. No gradients (S is a statistic).
//
// Test: build/test_emu -ts=ops -tc='running_scale*,percentile*'
#pragma once

namespace pompc::ref {

constexpr double kRunningScaleTau = 0.01;  // TD-MPC2 tau: RunningScale's lerp weight

// Sorts x [n] into scratch [n] (NaN last) and returns percentile q (0..100) of it.
template <typename T>
T percentile_linear(T* scratch, const T* x, int n, T q);

// Percentile q of an already sorted array (the TD-MPC2 formula above).
template <typename T>
T percentile_sorted(const T* sorted, int n, T q);

// S <- S + tau * (max(P95(x) - P5(x), 1) - S).
template <typename T>
void running_scale_update(T* value, const T* x, int n, T* scratch, T tau = T(kRunningScaleTau));

}  // namespace pompc::ref
