// src/ref/basic.h: small row-wise ops: row copies, concat [z, a] and its split, MSE.
//
// Maths
//   concat:       out[b] = [x1[b], x2[b]]   (n1 + n2 features; [z, a] feeding dynamics, reward, Q)
//   concat back:  dx1[b] += dout[b, 0:n1],  dx2[b] += dout[b, n1:n1+n2]
//   mse:          loss = mean_i (pred_i - target_i)^2 over all n elements (consistency loss:
//                 n = B * Z, target = next_z, detached)
//   mse back:     dpred_i += dloss * 2 (pred_i - target_i) / n
//
// Shapes: x1 [rows, n1] (z: [B, Z]), x2 [rows, n2] (a: [B, A]), out [rows, n1 + n2];
//   pred / target [n].
//
// Overwritten / accumulated: forward outputs (out, *loss) overwritten; every gradient
//   ACCUMULATED (+=). dx1 / dx2 may be nullptr (no gradient for that part, e.g. a replayed action).
//
// Test: build/test_emu -ts=ops -tc='concat*,mse*'
#pragma once

#include <cstdint>

namespace pompc::ref {

// Row movers without gradients (float only):
//   copy_rows:   dst[r * ldd + c] = src[r * lds + c] for c < cols (a strided 2-D copy, e.g. the
//                policy trajectories' actions [H, S, P, A] into the first P of each state's N
//                samples, or the samples' actions into the rollout's [z, a] rows)
//   repeat_rows: dst[(r * reps + k) * ldd + c] = src[r * cols + c] for c < cols (each state's
//                latent repeated for its N samples, into rows of stride ldd >= cols)
void copy_rows(float* dst, int64_t ldd, const float* src, int64_t lds, int rows, int cols);
void repeat_rows(float* dst, int64_t ldd, const float* src, int rows, int reps, int cols);

template <typename T>
void concat_forward(T* out, const T* x1, const T* x2, int rows, int n1, int n2);
template <typename T>
void concat_backward(T* dx1, T* dx2, const T* dout, int rows, int n1, int n2);

template <typename T>
void mse_forward(T* loss, const T* pred, const T* target, int64_t n);
template <typename T>
void mse_backward(T* dpred, const T* pred, const T* target, T dloss, int64_t n);

}  // namespace pompc::ref
