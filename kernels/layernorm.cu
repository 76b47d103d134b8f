// kernels/layernorm.cu: NormedLinear's tail, fused: bias + (dropout) + LayerNorm + Mish / SimNorm.
//
// Maths: exactly src/ref/layernorm.h (same names, same Philox dropout rule dropout_keep() of
// src/op_types.h).
//   x = inp + bias[g]; d = dropout(x); mu, var over the row (biased); xhat = (d - mu) rstd;
//   h = gamma[g] xhat + beta[g]; out = mish(h)  or  softmax over groups of 8 (SimNorm).
// Shapes: inp/out [rows, C]; bias/gamma/beta [groups, C]; mean/rstd [rows]; rows = groups * batch
//   (groups = Qn for the Q ensemble's per-head LayerNorms, else 1). C = M or Z (512 at 5M).
//
// Kernels
//   layernorm_forward_kernel        one warp per row, 8 rows per 256-thread block. Three passes
//                                   over the row (d -> out as scratch, mean, centred variance:
//                                   the same two-pass numerics as the reference, in fp32 with
//                                   warp-shuffle sums). Overwrites out, mean, rstd.
//   layernorm_backward_row_kernel   one warp per row: dh from the activation, the row means
//                                   m1 = mean(gamma dh), m2 = mean(gamma dh xhat) -> rowstats,
//                                   dinp += rstd (gamma dh - m1 - xhat m2) (dropout-masked).
//   layernorm_backward_param_kernel one thread per (column, group), looping over the group's rows
//                                   in order (deterministic, no atomics): recomputes xhat and dh
//                                   and accumulates dgamma += sum dh xhat, dbeta += sum dh,
//                                   dbias += sum dx (dx from rowstats).
//   Gradients are ACCUMULATED (+=), as in the reference. rowstats: 2 * rows floats of scratch.
//
// Test: build/test_emu -ts=ops -tc='*layernorm*cuda*'. Bench: build/test_gpu -ts=bench.
#include "common.cuh"
#include "launchers.h"
#include "reduce.cuh"

namespace pompc {
namespace {

constexpr int kWarps = 8;  // rows per block in the row kernels
constexpr float kEps = static_cast<float>(kLayerNormEps);
constexpr int kG = kSimNormGroup;

__device__ __forceinline__ float mish_f(float x) {
  const float sp = x > 20.0f ? x : log1pf(expf(x));
  return x * tanhf(sp);
}

__device__ __forceinline__ float mish_grad_f(float x) {
  if (x > 20.0f) {
    const float t = tanhf(x);
    return t + x * (1.0f - t * t);
  }
  const float t = tanhf(log1pf(expf(x)));
  const float sig = 1.0f / (1.0f + expf(-x));
  return t + x * sig * (1.0f - t * t);
}

struct LnArgs {
  const float* inp;
  const float* bias;  // may be null
  const float* gamma;
  const float* beta;
  int rows, C, per_group;
  float p;  // dropout probability (0: none)
  uint64_t seed;
  PhiloxOffset offset;  // as passed (its base may be device memory); see resolve_offset
};

// Every kernel's first statement, on its own per-thread copy of the arguments: the dropout
// offset's device-memory base is read once, and ln_keep / ln_input use the plain value after.
__device__ __forceinline__ void resolve_offset(LnArgs& a) {
  if (a.p > 0.0f) a.offset = PhiloxOffset(a.offset.resolve());
}

// Whether flat element i = r * C + c survives dropout (a resolved offset: see resolve_offset).
__device__ __forceinline__ bool ln_keep(const LnArgs& a, int64_t i) {
  return a.p <= 0.0f || dropout_keep(a.p, a.seed, a.offset.value, static_cast<uint64_t>(i));
}

// d = dropout(inp + bias) at flat element i = r * C + c of group g.
__device__ __forceinline__ float ln_input(const LnArgs& a, int g, int c, int64_t i) {
  float v = a.inp[i] + (a.bias ? a.bias[static_cast<int64_t>(g) * a.C + c] : 0.0f);
  if (a.p > 0.0f) v = ln_keep(a, i) ? v * (1.0f / (1.0f - a.p)) : 0.0f;
  return v;
}

__device__ __forceinline__ float ln_h(const LnArgs& a, int g, int c, float xhat) {
  const int64_t gc = static_cast<int64_t>(g) * a.C + c;
  return a.gamma[gc] * xhat + a.beta[gc];
}

// SimNorm's gradient w.r.t. h at column c of row r: y_c (dy_c - sum_j dy_j y_j) over c's group
// of 8. Recomputes the group's h and softmax from the saved row statistics.
__device__ __forceinline__ float simnorm_dh(const LnArgs& a, int g, int r, int c, float mu,
                                            float rs, const float* dy_row) {
  const int c0 = c - c % kG;
  const int64_t base = static_cast<int64_t>(r) * a.C;
  float h[kG], mx = -INFINITY;
  for (int j = 0; j < kG; ++j) {
    h[j] = ln_h(a, g, c0 + j, (ln_input(a, g, c0 + j, base + c0 + j) - mu) * rs);
    mx = fmaxf(mx, h[j]);
  }
  float s = 0.0f;
  for (int j = 0; j < kG; ++j) {
    h[j] = expf(h[j] - mx);
    s += h[j];
  }
  float dot = 0.0f;
  for (int j = 0; j < kG; ++j) {
    h[j] /= s;
    dot += dy_row[c0 + j] * h[j];
  }
  return h[c - c0] * (dy_row[c] - dot);
}

template <bool kSimNorm>
__global__ void layernorm_forward_kernel(LnArgs a, float* __restrict__ out, float* __restrict__ mean,
                                         float* __restrict__ rstd) {
  resolve_offset(a);
  const int r = blockIdx.x * kWarps + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (r >= a.rows) return;  // whole warps leave together: no warp op is left half-attended
  const int g = r / a.per_group, C = a.C;
  const int64_t base = static_cast<int64_t>(r) * C;
  float* o = out + base;
  float s = 0.0f;
  for (int c = lane; c < C; c += 32) {
    const float d = ln_input(a, g, c, base + c);
    o[c] = d;
    s += d;
  }
  const float mu = warp_allreduce_sum(s) / C;
  float v = 0.0f;
  for (int c = lane; c < C; c += 32) {
    const float dc = o[c] - mu;
    v += dc * dc;
  }
  const float rs = 1.0f / sqrtf(warp_allreduce_sum(v) / C + kEps);
  if (kSimNorm) {
    __syncwarp();  // every lane has read o[] before any lane overwrites a group
    for (int c0 = lane * kG; c0 < C; c0 += 32 * kG) {
      float h[kG], mx = -INFINITY, z = 0.0f;
      for (int j = 0; j < kG; ++j) {
        h[j] = ln_h(a, g, c0 + j, (o[c0 + j] - mu) * rs);
        mx = fmaxf(mx, h[j]);
      }
      for (int j = 0; j < kG; ++j) {
        h[j] = expf(h[j] - mx);
        z += h[j];
      }
      for (int j = 0; j < kG; ++j) o[c0 + j] = h[j] / z;
    }
  } else {
    for (int c = lane; c < C; c += 32) o[c] = mish_f(ln_h(a, g, c, (o[c] - mu) * rs));
  }
  if (lane == 0) {
    if (mean) mean[r] = mu;
    if (rstd) rstd[r] = rs;
  }
}

template <bool kSimNorm>
__device__ __forceinline__ float ln_dh(const LnArgs& a, int g, int r, int c, float mu, float rs,
                                       const float* dy_row, float* xhat_out) {
  const float xhat = (ln_input(a, g, c, static_cast<int64_t>(r) * a.C + c) - mu) * rs;
  *xhat_out = xhat;
  if (kSimNorm) return simnorm_dh(a, g, r, c, mu, rs, dy_row);
  return dy_row[c] * mish_grad_f(ln_h(a, g, c, xhat));
}

template <bool kSimNorm>
__global__ void layernorm_backward_row_kernel(LnArgs a, float* __restrict__ dinp,
                                              const float* __restrict__ dout,
                                              const float* __restrict__ mean,
                                              const float* __restrict__ rstd,
                                              float* __restrict__ rowstats) {
  resolve_offset(a);
  const int r = blockIdx.x * kWarps + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (r >= a.rows) return;
  const int g = r / a.per_group, C = a.C;
  const int64_t base = static_cast<int64_t>(r) * C;
  const float mu = mean[r], rs = rstd[r];
  const float* dy = dout + base;
  const float* ga = a.gamma + static_cast<int64_t>(g) * C;
  float s1 = 0.0f, s2 = 0.0f;
  for (int c = lane; c < C; c += 32) {
    float xhat;
    const float gdh = ga[c] * ln_dh<kSimNorm>(a, g, r, c, mu, rs, dy, &xhat);
    s1 += gdh;
    s2 += gdh * xhat;
  }
  const float m1 = warp_allreduce_sum(s1) / C, m2 = warp_allreduce_sum(s2) / C;
  if (lane == 0) {
    rowstats[2 * r] = m1;
    rowstats[2 * r + 1] = m2;
  }
  if (!dinp) return;
  const float keep_scale = a.p > 0.0f ? 1.0f / (1.0f - a.p) : 1.0f;
  for (int c = lane; c < C; c += 32) {
    float xhat;
    const float dh = ln_dh<kSimNorm>(a, g, r, c, mu, rs, dy, &xhat);
    const float dd = rs * (ga[c] * dh - m1 - xhat * m2);
    dinp[base + c] += ln_keep(a, base + c) ? dd * keep_scale : 0.0f;
  }
}

template <bool kSimNorm>
__global__ void layernorm_backward_param_kernel(LnArgs a, float* __restrict__ dbias,
                                                float* __restrict__ dgamma,
                                                float* __restrict__ dbeta,
                                                const float* __restrict__ dout,
                                                const float* __restrict__ mean,
                                                const float* __restrict__ rstd,
                                                const float* __restrict__ rowstats) {
  resolve_offset(a);
  const int c = blockIdx.x * blockDim.x + threadIdx.x, g = blockIdx.y;
  if (c >= a.C) return;
  const int64_t gc = static_cast<int64_t>(g) * a.C + c;
  const float gam = a.gamma[gc];
  const float keep_scale = a.p > 0.0f ? 1.0f / (1.0f - a.p) : 1.0f;
  float sg = 0.0f, sb = 0.0f, sx = 0.0f;
  for (int r = g * a.per_group; r < (g + 1) * a.per_group; ++r) {
    const float mu = mean[r], rs = rstd[r];
    const int64_t base = static_cast<int64_t>(r) * a.C;
    float xhat;
    const float dh = ln_dh<kSimNorm>(a, g, r, c, mu, rs, dout + base, &xhat);
    sg += dh * xhat;
    sb += dh;
    const float dd = rs * (gam * dh - rowstats[2 * r] - xhat * rowstats[2 * r + 1]);
    sx += ln_keep(a, base + c) ? dd * keep_scale : 0.0f;
  }
  if (dgamma) dgamma[gc] += sg;
  if (dbeta) dbeta[gc] += sb;
  if (dbias) dbias[gc] += sx;
}

LnArgs make_args(const char* who, bool simnorm, const float* inp, const float* bias,
                 const float* gamma, const float* beta, int rows, int C, int groups,
                 const Dropout& dr) {
  POMPC_REQUIRE(rows >= 0 && C >= 1, "%s: rows (%d) must be >= 0 and C (%d) >= 1", who, rows, C);
  POMPC_REQUIRE(groups >= 1 && rows % groups == 0,
                "%s: groups (%d) must be >= 1 and divide rows (%d)", who, groups, rows);
  POMPC_REQUIRE(!simnorm || C % kG == 0, "%s: C (%d) must be a multiple of the SimNorm group %d",
                who, C, kG);
  POMPC_REQUIRE(dr.p >= 0.0f && dr.p < 1.0f, "%s: dropout p (%g) must be in [0, 1)", who,
                static_cast<double>(dr.p));
  return LnArgs{inp, bias, gamma, beta, rows, C, rows > 0 ? rows / groups : 1,
                dr.p, dr.seed, dr.offset};
}

template <bool kSimNorm>
void forward(const LnArgs& a, float* out, float* mean, float* rstd, cudaStream_t stream) {
  LAUNCH(layernorm_forward_kernel<kSimNorm>, ceil_div(a.rows, kWarps), 32 * kWarps, 0, stream, a,
         out, mean, rstd);
}

template <bool kSimNorm>
void backward(const LnArgs& a, float* dinp, float* dbias, float* dgamma, float* dbeta,
              const float* dout, const float* mean, const float* rstd, float* rowstats,
              cudaStream_t stream) {
  POMPC_REQUIRE(mean && rstd, "layernorm backward: pass the mean and rstd the forward filled");
  LAUNCH(layernorm_backward_row_kernel<kSimNorm>, ceil_div(a.rows, kWarps), 32 * kWarps, 0,
         stream, a, dinp, dout, mean, rstd, rowstats);
  if (dbias || dgamma || dbeta) {
    const unsigned groups = a.rows > 0 ? static_cast<unsigned>(a.rows / a.per_group) : 0;
    LAUNCH(layernorm_backward_param_kernel<kSimNorm>, dim3(ceil_div(a.C, 256), groups), 256, 0,
           stream, a, dbias, dgamma, dbeta, dout, mean, rstd, rowstats);
  }
}

}  // namespace

namespace cuda {

void layernorm_mish_forward(float* out, float* mean, float* rstd, const float* inp,
                            const float* bias, const float* gamma, const float* beta, int rows,
                            int C, int groups, const Dropout& dropout, cudaStream_t stream) {
  forward<false>(make_args("layernorm_mish_forward", false, inp, bias, gamma, beta, rows, C,
                           groups, dropout),
                 out, mean, rstd, stream);
}

void layernorm_mish_backward(float* dinp, float* dbias, float* dgamma, float* dbeta,
                             const float* dout, const float* inp, const float* bias,
                             const float* gamma, const float* beta, const float* mean,
                             const float* rstd, int rows, int C, int groups, const Dropout& dropout,
                             float* rowstats, cudaStream_t stream) {
  backward<false>(make_args("layernorm_mish_backward", false, inp, bias, gamma, beta, rows, C,
                            groups, dropout),
                  dinp, dbias, dgamma, dbeta, dout, mean, rstd, rowstats, stream);
}

void layernorm_simnorm_forward(float* out, float* mean, float* rstd, const float* inp,
                               const float* bias, const float* gamma, const float* beta, int rows,
                               int C, int groups, cudaStream_t stream) {
  forward<true>(make_args("layernorm_simnorm_forward", true, inp, bias, gamma, beta, rows, C,
                          groups, Dropout{}),
                out, mean, rstd, stream);
}

void layernorm_simnorm_backward(float* dinp, float* dbias, float* dgamma, float* dbeta,
                                const float* dout, const float* inp, const float* bias,
                                const float* gamma, const float* beta, const float* mean,
                                const float* rstd, int rows, int C, int groups, float* rowstats,
                                cudaStream_t stream) {
  backward<true>(make_args("layernorm_simnorm_backward", true, inp, bias, gamma, beta, rows, C,
                           groups, Dropout{}),
                 dinp, dbias, dgamma, dbeta, dout, mean, rstd, rowstats, stream);
}

}  // namespace cuda
}  // namespace pompc
