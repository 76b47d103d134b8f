// src/ref/two_hot.h: discrete regression for the reward and value heads (TD-MPC2 math.py).
//
// Maths (K = num_bins bins, centres linspace(vmin, vmax, K) in symlog space, bin_size
// = (vmax - vmin) / (K - 1) = 0.2 by default)
//   symlog(x) = sign(x) log(1 + |x|),  symexp(x) = sign(x) (exp(|x|) - 1)
//     symexp'(x) = exp(|x|), taken as 0 at x == 0 exactly (what PyTorch's autograd gives for the
//     sign(x) * f(|x|) form).
//   two_hot(x): y = clamp(symlog(x), vmin, vmax); k = floor((y - vmin) / bin_size);
//     f = (y - vmin) / bin_size - k; target[k] = 1 - f, target[(k + 1) mod K] = f (the second
//     write wins; the modulo only matters when y = vmax, where f = 0). Computed in T with
//     bin_size rounded to T, as PyTorch does with a Python-float bin size on a float tensor.
//   soft_ce(logits, x) = -sum_k two_hot(x)_k * log_softmax(logits)_k
//     d/dlogits_k = p_k * sum_j two_hot_j - two_hot_k   (p = softmax(logits); sum_j = 1 up to
//     rounding, kept as computed to mirror autograd)
//   two_hot_inv(logits) = symexp(m), m = sum_k softmax(logits)_k * bin_k
//     d/dlogits_k = symexp'(m) * p_k * (bin_k - m)
//   two_hot_inv_pair: out_r = pair_select(two_hot_inv(logits of head i, row r), two_hot_inv(...
//     head j, row r)) with (i, j) = pick_pair(Qn, seed, offset) and pair_select's min / avg rule
//     (src/ref/loss.h): two_hot_inv_forward over Qn heads then pair_select_forward in one op,
//     the same operations on the two picked heads (the others are not computed); forward only.
//   Both forward two_hot_inv ops may take the logits' layer bias ([K]; pair: [Qn, K]) that the
//   layer left out (model::LastBias::leave: one bias launch fewer per inference head) and add it
//   to each logit as they read it: the same bits as the layer adding it (src/ref/linear.h).
//   Bin centres use torch.linspace's formula: start + step*i for i < K/2, end - step*(K-1-i) after.
//
// Shapes: x, loss, two_hot_inv out: [rows] (one scalar per row: rows = B, or B*H, or Qn*B...);
//   logits: [rows, K] (K = 101); two_hot_inv_pair: logits [Qn, rows, K], out [rows].
//
// Overwritten / accumulated: forward outputs overwritten; gradients (dlogits) ACCUMULATED
//   (+=). dloss / dout hold one upstream gradient per row (e.g. rho^t * 0.1 / (B * H)).
//   Targets x get no gradient (they are detached in every TD-MPC2 loss).
//
// Test: build/test_emu -ts=ops -tc='sym*,two_hot*,soft_ce*'
#pragma once

#include <cstdint>

#include "op_types.h"  // Bins, bin_center, PairMode, pick_pair

namespace pompc::ref {

template <typename T>
T symlog(T x);
template <typename T>
T symexp(T x);

template <typename T>
void soft_ce_forward(T* loss, const T* logits, const T* x, int rows, const Bins& bins);
template <typename T>
void soft_ce_backward(T* dlogits, const T* dloss, const T* logits, const T* x, int rows,
                      const Bins& bins);

// bias: nullptr, or the logits' layer bias [K] (pair: [Qn, K]), added to each logit as it is
// read: the value of logits + bias, bit for bit (the layer leaves its bias to this op).
template <typename T>
void two_hot_inv_forward(T* out, const T* logits, const T* bias, int rows, const Bins& bins);
template <typename T>
void two_hot_inv_backward(T* dlogits, const T* dout, const T* logits, int rows, const Bins& bins);

template <typename T>
void two_hot_inv_pair_forward(T* out, const T* logits, const T* bias, int Qn, int rows,
                              const Bins& bins, PairMode mode, uint64_t seed, uint64_t offset);

}  // namespace pompc::ref
