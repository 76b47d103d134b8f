// kernels/layernorm.cu: NormedLinear's tail, fused: bias + (dropout) + LayerNorm + Mish / SimNorm.
//
// Maths: exactly src/ref/layernorm.h (same names, same Philox dropout rule dropout_keep() of
// src/op_types.h).
//   x = inp + bias[g]; d = dropout(x); mu, var over the row (biased); xhat = (d - mu) rstd;
//   h = gamma[g] xhat + beta[g]; out = mish(h)  or  softmax over groups of 8 (SimNorm).
// Shapes: inp/out [rows, C]; bias/gamma/beta [groups, C]; mean/rstd [rows]; rows = groups * batch
//   (groups = Qn for the Q ensemble's per-head LayerNorms, else 1). C = M or Z (512 at 5M). The
//   forward writes row r at out + out_rows.row(r) (RowLayout, src/op_types.h; dense by default).
//
// Kernels
//   layernorm_forward_kernel        one warp per row, 8 rows per 256-thread block. Three passes
//                                   over the row (d -> out as scratch, mean, centred variance:
//                                   the same two-pass numerics as the reference, in fp32 with
//                                   warp-shuffle sums). Overwrites out, mean, rstd.
//   layernorm_backward_row_kernel   one warp per row: dh from the activation, the row means
//                                   m1 = mean(gamma dh), m2 = mean(gamma dh xhat) -> rowstats,
//                                   dinp += rstd (gamma dh - m1 - xhat m2) (dropout-masked).
//   layernorm_backward_param_kernel grid (ceil(C / 32) column tiles, ceil(per_group / 128) row
//                                   chunks, groups) of 32 columns x 16 row lanes (512 threads; a
//                                   warp is one row lane: 32 consecutive floats of a row). Lane l
//                                   sums, at its column, the chunk's rows l, l + 16, ... in order
//                                   (8 at most), recomputing xhat and dh: dh xhat (dgamma), dh
//                                   (dbeta), dx from rowstats (dbias); the 16 lane sums are then
//                                   added in lane order through shared memory. One chunk per
//                                   group: += into the gradients; otherwise into partials
//                                   [3][groups][chunks][C] of the scratch, and
//   layernorm_param_finish_kernel   one thread per (column, group, quantity), 128-thread blocks,
//                                   += the chunks' partials in chunk order.
//   Deterministic run to run (fixed summation orders, no atomics). Gradients are ACCUMULATED (+=)
//   as in the reference. Scratch: layernorm_backward_scratch(rows, C, groups) floats = rowstats
//   (2 per row, overwritten) then the partials (overwritten) when a group has > 128 rows.
//
// Launch shapes at the 5M sizes (C = 512; encoder rows 1024 in one group; Q heads 5 groups of
// 768 rows), param kernel before -> after:
//   encoder  2 x 256 threads, 1024 rows in sequence each  ->  (16, 8, 1) = 128 blocks x 512, 8
//            rows each + 16 lane sums; finish (4, 1, 3) = 12 x 128, 8 partials each.
//   Q heads  (2, 5) = 10 x 256, 768 rows each  ->  (16, 6, 5) = 480 x 512, 8 rows each; finish
//            (4, 5, 3) = 60 x 128, 6 partials each.
// A row costs each thread ~5 loads (dout, inp, mean, rstd, rowstats) and mish' (4 transcendentals)
// plus a Philox draw under dropout: ~1000 cycles of dependent latency, so 1024 rows in sequence on
// 2 of 132 SMs cost ~0.5 ms. At 8 rows per thread and >= 16 warps on nearly every SM the kernel
// nears the H100's issue rate (~5 us encoder, ~20 us Q heads, Philox-bound), and the finish pass
// (one more launch, a few us) is cheaper than the 16x longer chains of a grid without row chunks.
// (Estimates from block counts and chains; not measured on a GPU yet.)
//
// Test: build/test_emu -ts=ops -tc='*layernorm*cuda*'; races: build/test_race -ts=race,ops
// -tc='*layernorm*'. Bench: build/test_gpu -ts=bench.
#include "common.cuh"
#include "launchers.h"
#include "reduce.cuh"

namespace pompc {
namespace {

constexpr int kWarps = 8;  // rows per block in the row kernels
// The param kernel's blocks: kParamCols columns x kParamLanes row lanes, kParamRows rows of one
// group (kParamRows / kParamLanes = 8 per thread); the finish kernel's blocks: kFinishThreads.
constexpr int kParamCols = 32, kParamLanes = 16, kParamRows = 128, kFinishThreads = 128;
constexpr int kParamThreads = kParamCols * kParamLanes;
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
  PhiloxOffset offset;   // as passed (its base may be device memory); see resolve_offset
  const int32_t* heads;  // Dropout::heads: null, or the ensemble head of each group
};

// Every kernel's first statement, on its own per-thread copy of the arguments: the dropout
// offset's device-memory base is read once, and ln_keep / ln_input use the plain value after.
__device__ __forceinline__ void resolve_offset(LnArgs& a) {
  if (a.p > 0.0f) a.offset = PhiloxOffset(a.offset.resolve());
}

// Whether flat element i = r * C + c survives dropout (a resolved offset: see resolve_offset),
// drawn at row dropout_row(heads, r, per_group) when the groups are gathered heads.
__device__ __forceinline__ bool ln_keep(const LnArgs& a, int64_t i) {
  if (a.p <= 0.0f) return true;
  if (a.heads) {
    const int64_t r = i / a.C;
    i += (dropout_row(a.heads, r, a.per_group) - r) * a.C;
  }
  return dropout_keep(a.p, a.seed, a.offset.value, static_cast<uint64_t>(i));
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
__global__ void layernorm_forward_kernel(LnArgs a, float* __restrict__ out, RowLayout out_rows,
                                         float* __restrict__ mean, float* __restrict__ rstd) {
  resolve_offset(a);
  const int r = blockIdx.x * kWarps + (threadIdx.x >> 5), lane = threadIdx.x & 31;
  if (r >= a.rows) return;  // whole warps leave together: no warp op is left half-attended
  const int g = r / a.per_group, C = a.C;
  const int64_t base = static_cast<int64_t>(r) * C;
  float* o = out + out_rows.row(r, a.per_group, C);
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

// Which parameter gradient quantity q of the param kernels is: 0 dgamma, 1 dbeta, 2 dbias. A null
// pointer: that gradient is not wanted.
struct LnParamGrads {
  float* dgamma;
  float* dbeta;
  float* dbias;
  __device__ __forceinline__ float* of(int q) const {
    return q == 0 ? dgamma : q == 1 ? dbeta : dbias;
  }
};

// Block (column tile x, row chunk y, group z) of blockDim (kParamCols, kParamLanes): row lane
// threadIdx.y sums the chunk's rows lane, lane + kParamLanes, ... at column threadIdx.x (a warp
// is one row lane: 32 consecutive floats of one row), then the lanes' sums are added in lane
// order through shared memory. partials null (one chunk per group): dst += the block's sums;
// otherwise partials[q, g, chunk, c] = them, and layernorm_param_finish_kernel adds the chunks.
template <bool kSimNorm>
__global__ void __launch_bounds__(kParamThreads)
    layernorm_backward_param_kernel(LnArgs a, LnParamGrads grads, float* __restrict__ partials,
                                    const float* __restrict__ dout, const float* __restrict__ mean,
                                    const float* __restrict__ rstd,
                                    const float* __restrict__ rowstats) {
  resolve_offset(a);
  __shared__ float part[3][kParamLanes][kParamCols];
  const int tx = threadIdx.x, lane = threadIdx.y;
  const int c = blockIdx.x * kParamCols + tx, chunk = blockIdx.y, g = blockIdx.z;
  float sg = 0.0f, sb = 0.0f, sx = 0.0f;
  if (c < a.C) {
    const float gam = a.gamma[static_cast<int64_t>(g) * a.C + c];
    const float keep_scale = a.p > 0.0f ? 1.0f / (1.0f - a.p) : 1.0f;
    const int r0 = g * a.per_group, k0 = chunk * kParamRows;
    const int k1 = min(a.per_group, k0 + kParamRows);  // the chunk's rows r0 + [k0, k1)
    for (int r = r0 + k0 + lane; r < r0 + k1; r += kParamLanes) {
      const float mu = mean[r], rs = rstd[r];
      const int64_t base = static_cast<int64_t>(r) * a.C;
      float xhat;
      const float dh = ln_dh<kSimNorm>(a, g, r, c, mu, rs, dout + base, &xhat);
      sg += dh * xhat;
      sb += dh;
      const float dd = rs * (gam * dh - rowstats[2 * r] - xhat * rowstats[2 * r + 1]);
      sx += ln_keep(a, base + c) ? dd * keep_scale : 0.0f;
    }
  }
  part[0][lane][tx] = sg;
  part[1][lane][tx] = sb;
  part[2][lane][tx] = sx;
  __syncthreads();
  const int q = lane;  // row lanes 0, 1, 2 finish dgamma, dbeta, dbias
  float* const dst = q < 3 ? grads.of(q) : nullptr;
  if (!dst || c >= a.C) return;
  float s = 0.0f;
  for (int l = 0; l < kParamLanes; ++l) s += part[q][l][tx];
  if (partials)
    partials[((static_cast<int64_t>(q) * gridDim.z + g) * gridDim.y + chunk) * a.C + c] = s;
  else
    dst[static_cast<int64_t>(g) * a.C + c] += s;
}

// Second pass when a group has several chunks: dst_q[g, c] += sum over chunks k (in order) of
// partials[q, g, k, c]. Grid (column blocks, groups, 3 quantities), one thread per column.
__global__ void layernorm_param_finish_kernel(LnParamGrads grads,
                                              const float* __restrict__ partials, int C,
                                              int chunks) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x, g = blockIdx.y, q = blockIdx.z;
  float* const dst = grads.of(q);
  if (!dst || c >= C) return;
  const float* p = partials + (static_cast<int64_t>(q) * gridDim.y + g) * chunks * C + c;
  float s = 0.0f;
  for (int k = 0; k < chunks; ++k) s += p[static_cast<int64_t>(k) * C];
  dst[static_cast<int64_t>(g) * C + c] += s;
}

int param_chunks(int per_group) {
  return static_cast<int>(ceil_div(per_group, kParamRows));
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
  const int per_group = rows > 0 ? rows / groups : 1;
  return LnArgs{inp, bias, gamma, beta, rows, C, per_group, dr.p, dr.seed, dr.offset, dr.heads};
}

// LAUNCH of a kernel's kSimNorm instance under its own name, "<kernel><simnorm>" or
// "<kernel><mish>" (NVTX ranges, the emulator's per-name counts); LAUNCH's source text would
// name both "<kernel><kSimNorm>".
#define LAUNCH_LN(kernel, ...)                                                           \
  ::pompc::launch(kSimNorm ? #kernel "<simnorm>" : #kernel "<mish>", __FILE__, __LINE__, \
                  kernel<kSimNorm>, __VA_ARGS__)

template <bool kSimNorm>
void forward(const LnArgs& a, float* out, const RowLayout& out_rows, float* mean, float* rstd,
             cudaStream_t stream) {
  LAUNCH_LN(layernorm_forward_kernel, ceil_div(a.rows, kWarps), 32 * kWarps, 0, stream, a, out,
            out_rows, mean, rstd);
}

template <bool kSimNorm>
void backward(const LnArgs& a, float* dinp, float* dbias, float* dgamma, float* dbeta,
              const float* dout, const float* mean, const float* rstd, float* scratch,
              cudaStream_t stream) {
  POMPC_REQUIRE(mean && rstd, "layernorm backward: pass the mean and rstd the forward filled");
  float* const rowstats = scratch;
  LAUNCH_LN(layernorm_backward_row_kernel, ceil_div(a.rows, kWarps), 32 * kWarps, 0, stream, a,
            dinp, dout, mean, rstd, rowstats);
  if (!dbias && !dgamma && !dbeta) return;
  const int groups = a.rows > 0 ? a.rows / a.per_group : 0, chunks = param_chunks(a.per_group);
  POMPC_REQUIRE(groups <= 65535 && chunks <= 65535,
                "layernorm backward: groups (%d) and rows per group / %d (%d) must be <= 65535 "
                "(grid limits): split the call",
                groups, kParamRows, chunks);
  const LnParamGrads grads{dgamma, dbeta, dbias};
  float* const partials = chunks > 1 ? scratch + 2 * static_cast<size_t>(a.rows) : nullptr;
  LAUNCH_LN(
      layernorm_backward_param_kernel,
      dim3(ceil_div(a.C, kParamCols), static_cast<unsigned>(chunks), static_cast<unsigned>(groups)),
      dim3(kParamCols, kParamLanes), 0, stream, a, grads, partials, dout, mean, rstd, rowstats);
  if (partials)
    LAUNCH(layernorm_param_finish_kernel,
           dim3(ceil_div(a.C, kFinishThreads), static_cast<unsigned>(groups), 3), kFinishThreads, 0,
           stream, grads, partials, a.C, chunks);
}

}  // namespace

namespace cuda {

void layernorm_mish_forward(float* out, float* mean, float* rstd, const float* inp,
                            const float* bias, const float* gamma, const float* beta, int rows,
                            int C, int groups, const Dropout& dropout, const RowLayout& out_rows,
                            cudaStream_t stream) {
  check_row_layout("layernorm_mish_forward", out_rows, rows, C, groups);
  forward<false>(
      make_args("layernorm_mish_forward", false, inp, bias, gamma, beta, rows, C, groups, dropout),
      out, out_rows, mean, rstd, stream);
}

void layernorm_mish_backward(float* dinp, float* dbias, float* dgamma, float* dbeta,
                             const float* dout, const float* inp, const float* bias,
                             const float* gamma, const float* beta, const float* mean,
                             const float* rstd, int rows, int C, int groups, const Dropout& dropout,
                             float* scratch, cudaStream_t stream) {
  backward<false>(
      make_args("layernorm_mish_backward", false, inp, bias, gamma, beta, rows, C, groups, dropout),
      dinp, dbias, dgamma, dbeta, dout, mean, rstd, scratch, stream);
}

void layernorm_simnorm_forward(float* out, float* mean, float* rstd, const float* inp,
                               const float* bias, const float* gamma, const float* beta, int rows,
                               int C, int groups, const RowLayout& out_rows, cudaStream_t stream) {
  check_row_layout("layernorm_simnorm_forward", out_rows, rows, C, groups);
  forward<true>(make_args("layernorm_simnorm_forward", true, inp, bias, gamma, beta, rows, C,
                          groups, Dropout{}),
                out, out_rows, mean, rstd, stream);
}

void layernorm_simnorm_backward(float* dinp, float* dbias, float* dgamma, float* dbeta,
                                const float* dout, const float* inp, const float* bias,
                                const float* gamma, const float* beta, const float* mean,
                                const float* rstd, int rows, int C, int groups, float* scratch,
                                cudaStream_t stream) {
  backward<true>(make_args("layernorm_simnorm_backward", true, inp, bias, gamma, beta, rows, C,
                           groups, Dropout{}),
                 dinp, dbias, dgamma, dbeta, dout, mean, rstd, scratch, stream);
}

size_t layernorm_backward_scratch(int rows, int C, int groups) {
  if (rows <= 0 || C < 1 || groups < 1) return 0;
  const int chunks = param_chunks(rows / groups);
  return 2 * static_cast<size_t>(rows) +
         (chunks > 1 ? size_t{3} * static_cast<size_t>(groups) * chunks * C : 0);
}

}  // namespace cuda
}  // namespace pompc
