// src/ref/linear.h: Linear layers (PyTorch nn.Linear layout) and the Qn-head ensemble Linear.
//
// Maths
//   linear:           out[b, o] = (sum_i inp[b, i] * weight[o, i]) + bias[o]: the bias is added
//                     to the finished product (one rounding), as the ops that take a layer's bias
//                     from it (two_hot_inv, policy_head, LayerNorm) add it, bit for bit
//   backward:         dinp[b, i]   += sum_o dout[b, o] * weight[o, i]
//                     dweight[o, i] += sum_b dout[b, o] * inp[b, i]
//                     dbias[o]     += sum_b dout[b, o]
//   linear_ensemble:  the same for q = 0 .. Qn-1 with weight[q], bias[q]; the input is either
//                     shared by all heads (inp [B, in], shared_input = true: the Q heads' first
//                     layer on [z, a]) or per head (inp [Qn, B, in]: their later layers). With a
//                     shared input its gradient sums over the heads:
//                     dinp[b] += sum_q dout[q, b] W[q].
//
// Shapes (SPEC letters; `in` / `out` are the layer's fan-in / fan-out, e.g. Z + A -> M, M -> K)
//   inp [B, in] (or [Qn, B, in]), weight [out, in] ([Qn, out, in]), bias [out] ([Qn, out]),
//   out [B, out] ([Qn, B, out]). B is any row count (batch B, B*H, planner N, ...).
//   linear_forward's inp rows may be strided: ld_inp >= in (0: dense), e.g. the latent z read
//   out of [z, a] rows; the GEMM's arithmetic does not depend on it.
//
// Overwritten / accumulated
//   forward: `out` is overwritten. bias may be nullptr (no bias: NormedLinear passes its bias to
//   the fused layernorm op instead).
//   backward: every gradient buffer is ACCUMULATED (+=), so a tensor used several times (shared
//   dynamics weights over the horizon, a latent feeding several heads) sums its gradients
//   naturally; zero the buffers before the backward pass. Any of dinp / dweight / dbias may be
//   nullptr to skip that gradient.
//
// Test: build/test_emu -ts=ops -tc='linear*'
#pragma once

#include <cstdint>
#include <vector>

namespace pompc::ref {

template <typename T>
void linear_forward(T* out, const T* inp, const T* weight, const T* bias, int B, int in,
                    int out_features, int64_t ld_inp = 0);

template <typename T>
void linear_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                     int B, int in, int out_features);

template <typename T>
void linear_ensemble_forward(T* out, const T* inp, const T* weight, const T* bias, int Qn, int B,
                             int in, int out_features, bool shared_input);

template <typename T>
void linear_ensemble_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,
                              const T* weight, int Qn, int B, int in, int out_features,
                              bool shared_input);

// out[r, c] = out[r, c] + bias[c] for every row (nothing when bias is null): how a layer's bias
// meets its product, here and in the ops that take a layer's left-out bias (two_hot, policy).
template <typename T>
void add_bias(T* out, const T* bias, int rows, int cols);

// A copy of in [rows, cols] with add_bias applied: the values an op that takes a layer's left-out
// bias reads (two_hot_inv_forward, two_hot_inv_pair_forward, policy_head_forward).
template <typename T>
std::vector<T> with_bias(const T* in, const T* bias, int rows, int cols) {
  std::vector<T> out(in, in + static_cast<int64_t>(rows) * cols);
  add_bias(out.data(), bias, rows, cols);
  return out;
}

// dst[c] += sum_r src[r * cols + c] (the bias gradient), parallel over columns, summed in double
// in row order (deterministic).
template <typename T>
void add_column_sums(T* dst, const T* src, int rows, int cols);

}  // namespace pompc::ref
