// src/ref/layernorm.h: NormedLinear's tail, fused: bias + (dropout) + LayerNorm + Mish or SimNorm.
//
// Maths (per row r of C features; g = the row's parameter group, see `groups` below)
//   x_c   = inp[r, c] + bias[g, c]                 (bias optional)
//   d_c   = x_c * keep_c / (1 - p)                 (dropout, layernorm_mish only; p = 0: d = x)
//   mu    = mean_c d_c,  var = mean_c (d_c - mu)^2 (biased, as torch.nn.LayerNorm)
//   rstd  = 1 / sqrt(var + 1e-5),  xhat_c = (d_c - mu) * rstd
//   h_c   = gamma[g, c] * xhat_c + beta[g, c]
//   layernorm_mish:    out_c = mish(h_c) = h_c * tanh(softplus(h_c)),
//                      softplus(h) = h for h > 20 (PyTorch's threshold), log1p(exp(h)) otherwise
//   layernorm_simnorm: out = softmax of h within each group of 8 consecutive features (SimNorm)
//   Backward (dh from the activation, then LayerNorm):
//     mish'(h) = tanh(sp) + h * (1 - tanh(sp)^2) * sp'(h),  sp' = sigmoid(h) (1 for h > 20)
//     simnorm: dh_c = y_c * (dy_c - sum_{c' in group} dy_c' y_c')
//     dgamma[g,c] += sum_r dh_c xhat_c,  dbeta[g,c] += sum_r dh_c
//     dd_c = rstd * (gamma_c dh_c - mean_c'(gamma dh) - xhat_c * mean_c'(gamma dh xhat))
//     dinp[r,c] += dd_c * keep_c / (1 - p),  dbias[g,c] += sum_r (that same value)
//
// Dropout (PyTorch semantics: zero with probability p, scale survivors by 1/(1-p)):
//   keep_c = philox_uniform(seed, offset, r * C + c) > p   (uniform in (0, 1]; index = the flat
//   element index of [rows, C], so every head of an ensemble draws its own mask). The backward
//   recomputes the mask from (seed, offset); both backends use dropout_keep() (src/op_types.h).
//   With Dropout::heads (two heads gathered out of an ensemble by gather_pair), row r of group g
//   draws at row dropout_row(heads, r, rows / groups): the mask head heads[g] draws among all.
//
// Shapes: inp/out [rows, C]; bias, gamma, beta [groups, C]; mean, rstd [rows].
//   rows is B (or N, B*H, ...) times `groups`: groups = 1 for a single network; groups = Qn for
//   the Q ensemble, whose activations are [Qn, B, C] and whose LayerNorms have per-head
//   parameters (row r belongs to group r / (rows / groups)). SimNorm needs C % 8 == 0
//   (C = Z = 512 for the encoder and dynamics latents).
//
// Overwritten / accumulated
//   forward: out overwritten; mean, rstd overwritten when non-null (saved for the backward; pass
//   nullptr at inference). out may not alias inp. out_rows (RowLayout, src/op_types.h): where
//   each output row goes (default: dense [rows, C]); the backward reads no output.
//   backward: dinp, dbias, dgamma, dbeta ACCUMULATED (+=); each may be nullptr to skip. It
//   recomputes xhat, h and the dropout mask from inp, bias and the saved mean / rstd.
//
// Test: build/test_emu -ts=ops -tc='layernorm*,dropout*,mish*'
#pragma once

#include <cstdint>

#include "op_types.h"  // Dropout, dropout_keep, kLayerNormEps, kSimNormGroup, RowLayout

namespace pompc::ref {

// Mish with PyTorch's softplus threshold (softplus(x) = x for x > 20).
template <typename T>
T mish(T x);
template <typename T>
T mish_grad(T x);  // d mish / dx, consistent with the threshold

template <typename T>
void layernorm_mish_forward(T* out, T* mean, T* rstd, const T* inp, const T* bias, const T* gamma,
                            const T* beta, int rows, int C, int groups, const Dropout& dropout,
                            const RowLayout& out_rows = {});

template <typename T>
void layernorm_mish_backward(T* dinp, T* dbias, T* dgamma, T* dbeta, const T* dout, const T* inp,
                             const T* bias, const T* gamma, const T* beta, const T* mean,
                             const T* rstd, int rows, int C, int groups, const Dropout& dropout);

template <typename T>
void layernorm_simnorm_forward(T* out, T* mean, T* rstd, const T* inp, const T* bias,
                               const T* gamma, const T* beta, int rows, int C, int groups,
                               const RowLayout& out_rows = {});

template <typename T>
void layernorm_simnorm_backward(T* dinp, T* dbias, T* dgamma, T* dbeta, const T* dout, const T* inp,
                                const T* bias, const T* gamma, const T* beta, const T* mean,
                                const T* rstd, int rows, int C, int groups);

}  // namespace pompc::ref
