// kernels/mppi.cu: the MPPI planner's own ops, batched over S states (SPEC section 3).
//
// Maths, shapes and draws: exactly src/ref/mppi.h (same names, same Philox indices), so a plan
// with the same seed selects the same elites on both backends.
//   mppi_init_kernel     one thread per (s, t, j): std = max_std, mean = 0 or the shifted
//                        previous mean (warm start)
//   mppi_sample_kernel   grid-stride over [H, S, N - P, A]: clamp(mean + std eps, -1, 1)
//   mppi_elites_kernel   one block per state: (value, index) pairs bitonic-sorted in dynamic
//                        shared memory (N padded to a power of two, <= kMppiMaxN): descending
//                        value, ties to the lower index, NaN counted as 0 -> the first E
//   mppi_update_kernel   one block per state: thread 0 forms the scores in the reference's order
//                        (max, exp, sum, divide), then one thread per (t, j) sums over the elites
//                        in order: mean, then the clamped std
//   mppi_elites_update_kernel  discounted_sum (kernels/loss.cu) and the two above fused (one
//                        launch per MPPI iteration instead of three; the planner's path): one
//                        256-thread block per state forms and writes its samples' returns G from
//                        the H + 1 terms, sorts them, then, after a barrier, forms the scores,
//                        mean and std exactly as above
//   mppi_select_kernel   one block per state: thread 0 draws the elite by Gumbel-max (double, as
//                        the reference), threads j write mu_p, sigma_p and the action
// Everything is overwritten. No host synchronisation: the plan step is a fixed
// launch sequence that a CUDA graph can capture (seed and offset are baked at capture).
//
// Test: build/test_emu -ts=planner.
#include "common.cuh"
#include "launchers.h"

namespace pompc {
namespace {

__global__ void mppi_init_kernel(float* __restrict__ mean, float* __restrict__ std,
                                 const float* __restrict__ prev_mean,
                                 const uint8_t* __restrict__ first, MppiShape sh, float max_std) {
  const int64_t n = int64_t{sh.S} * sh.H * sh.A;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int s = static_cast<int>(i / (sh.H * sh.A));
  const int t = static_cast<int>(i / sh.A % sh.H);
  std[i] = max_std;
  mean[i] = (!first[s] && t < sh.H - 1) ? prev_mean[i + sh.A] : 0.0f;
}

// A thread per (t, s, n, j) for the sampled columns n >= P; with rows_out, for every column (the
// policy columns n < P copied into rows_out).
__global__ void mppi_sample_kernel(float* __restrict__ actions, const float* __restrict__ mean,
                                   const float* __restrict__ std, MppiShape sh, uint64_t seed,
                                   PhiloxOffset offset_at, float* __restrict__ rows_out,
                                   int64_t rows_ld) {
  const uint64_t offset = offset_at.resolve();  // device memory: read at run time
  const int n0 = rows_out ? 0 : sh.P, M = sh.N - n0;
  const int64_t total = int64_t{sh.H} * sh.S * M * sh.A;
  POMPC_GRID_STRIDE(i, total) {
    const int j = static_cast<int>(i % sh.A);
    const int n = n0 + static_cast<int>(i / sh.A % M);
    const int s = static_cast<int>(i / (int64_t{sh.A} * M) % sh.S);
    const int t = static_cast<int>(i / (int64_t{sh.A} * M * sh.S));
    const int64_t row = (int64_t{t} * sh.S + s) * sh.N + n;
    float a;
    if (n < sh.P) {
      a = actions[row * sh.A + j];  // the policy's (only with rows_out)
    } else {
      const int64_t ms = (int64_t{s} * sh.H + t) * sh.A + j;
      const uint64_t k = ((static_cast<uint64_t>(s) * sh.H + t) * sh.N + n) * sh.A + j;
      a = fminf(1.0f, fmaxf(-1.0f, mean[ms] + std[ms] * philox_normal(seed, offset, k)));
      actions[row * sh.A + j] = a;
    }
    if (rows_out) rows_out[row * rows_ld + j] = a;
  }
}

// Does (va, ia) come before (vb, ib)? Higher value first, then lower index; padding (index
// -1) comes last.
__device__ __forceinline__ bool elite_before(float va, int ia, float vb, int ib) {
  if (ia < 0 || ib < 0) return ib < 0 && ia >= 0;
  return va > vb || (va == vb && ia < ib);
}

// The bodies of the elites and update kernels, one block per state s = blockIdx.x, shared by
// their own kernels and by the fused mppi_elites_update_kernel.
// value_of(i) gives sample i's value (i < N of state s = blockIdx.x); the block reads each once.
template <class ValueOf>
__device__ __forceinline__ void elites_block(int32_t* __restrict__ elite_idx,
                                             float* __restrict__ elite_value, ValueOf value_of,
                                             const MppiShape& sh, int n_pow2) {
  float* key = dynamic_smem<float>();
  int* idx = reinterpret_cast<int*>(key + n_pow2);
  const int s = blockIdx.x;
  for (int i = threadIdx.x; i < n_pow2; i += blockDim.x) {
    const float x = i < sh.N ? value_of(i) : 0.0f;
    key[i] = isnan(x) ? 0.0f : x;
    idx[i] = i < sh.N ? i : -1;
  }
  __syncthreads();
  for (int k = 2; k <= n_pow2; k <<= 1) {
    for (int j = k >> 1; j > 0; j >>= 1) {
      for (int i = threadIdx.x; i < n_pow2; i += blockDim.x) {
        const int p = i ^ j;
        if (p > i) {
          const bool first_half = (i & k) == 0;  // this sub-sequence runs in the final order
          const bool swap = first_half ? elite_before(key[p], idx[p], key[i], idx[i])
                                       : elite_before(key[i], idx[i], key[p], idx[p]);
          if (swap) {
            const float tk = key[i];
            key[i] = key[p];
            key[p] = tk;
            const int ti = idx[i];
            idx[i] = idx[p];
            idx[p] = ti;
          }
        }
      }
      __syncthreads();
    }
  }
  for (int e = threadIdx.x; e < sh.E; e += blockDim.x) {
    elite_idx[int64_t{s} * sh.E + e] = idx[e];
    elite_value[int64_t{s} * sh.E + e] = key[e];
  }
}

__device__ __forceinline__ void update_block(float* __restrict__ mean, float* __restrict__ std,
                                             float* __restrict__ score,
                                             const float* __restrict__ actions,
                                             const int32_t* __restrict__ elite_idx,
                                             const float* __restrict__ elite_value,
                                             const MppiShape& sh, float temperature, float min_std,
                                             float max_std) {
  const int s = blockIdx.x;
  float* sc = score + int64_t{s} * sh.E;
  const int32_t* idx = elite_idx + int64_t{s} * sh.E;
  if (threadIdx.x == 0) {  // E is small (64): sequential, in the reference's order
    const float* v = elite_value + int64_t{s} * sh.E;
    float mx = v[0];
    for (int e = 1; e < sh.E; ++e) mx = fmaxf(mx, v[e]);
    float z = 0.0f;
    for (int e = 0; e < sh.E; ++e) {
      sc[e] = expf(temperature * (v[e] - mx));
      z += sc[e];
    }
    for (int e = 0; e < sh.E; ++e) sc[e] /= z;
  }
  __syncthreads();  // global-memory scores: visible to the block after the barrier
  for (int tj = threadIdx.x; tj < sh.H * sh.A; tj += blockDim.x) {
    const int t = tj / sh.A, j = tj % sh.A;
    const float* col = actions + (int64_t{t} * sh.S + s) * sh.N * sh.A + j;
    float m = 0.0f;
    for (int e = 0; e < sh.E; ++e) m += sc[e] * col[int64_t{idx[e]} * sh.A];
    float var = 0.0f;
    for (int e = 0; e < sh.E; ++e) {
      const float d = col[int64_t{idx[e]} * sh.A] - m;
      var += sc[e] * d * d;
    }
    const int64_t o = int64_t{s} * sh.H * sh.A + tj;
    mean[o] = m;
    std[o] = fminf(max_std, fmaxf(min_std, sqrtf(var)));
  }
}

__global__ void mppi_elites_kernel(int32_t* __restrict__ elite_idx, float* __restrict__ elite_value,
                                   const float* __restrict__ value, MppiShape sh, int n_pow2) {
  const float* v = value + int64_t{blockIdx.x} * sh.N;
  const auto value_of = [v](int i) { return v[i]; };
  elites_block(elite_idx, elite_value, value_of, sh, n_pow2);
}

__global__ void mppi_update_kernel(float* __restrict__ mean, float* __restrict__ std,
                                   float* __restrict__ score, const float* __restrict__ actions,
                                   const int32_t* __restrict__ elite_idx,
                                   const float* __restrict__ elite_value, MppiShape sh,
                                   float temperature, float min_std, float max_std) {
  update_block(mean, std, score, actions, elite_idx, elite_value, sh, temperature, min_std,
               max_std);
}

// discounted_sum, mppi_elites and mppi_update in one launch: the block of state s forms each of
// its samples' returns as discounted_sum_kernel does (discounted_sum_at, common.cuh), writes them
// out and sorts them, then forms the scores, mean and std (the elites it wrote to
// global memory are visible to it after the barrier).
__global__ void mppi_elites_update_kernel(
    int32_t* __restrict__ elite_idx, float* __restrict__ elite_value, float* __restrict__ mean,
    float* __restrict__ std, float* __restrict__ score, float* __restrict__ value,
    const float* __restrict__ terms, TermWeights w, const float* __restrict__ actions, MppiShape sh,
    int n_pow2, float temperature, float min_std, float max_std) {
  const int64_t rows = int64_t{sh.S} * sh.N, s0 = int64_t{blockIdx.x} * sh.N;
  const auto value_of = [&](int i) {
    const float g = discounted_sum_at(w, terms, rows, s0 + i);
    value[s0 + i] = g;
    return g;
  };
  elites_block(elite_idx, elite_value, value_of, sh, n_pow2);
  __syncthreads();
  update_block(mean, std, score, actions, elite_idx, elite_value, sh, temperature, min_std,
               max_std);
}

__global__ void mppi_select_kernel(float* __restrict__ action, float* __restrict__ mu_p,
                                   float* __restrict__ sigma_p, const float* __restrict__ actions,
                                   const int32_t* __restrict__ elite_idx,
                                   const float* __restrict__ score, const float* __restrict__ std,
                                   MppiShape sh, bool explore, uint64_t seed,
                                   PhiloxOffset offset_at) {
  const uint64_t offset = offset_at.resolve();  // device memory: read at run time
  __shared__ int chosen;
  const int s = blockIdx.x;
  if (threadIdx.x == 0) {
    int best = 0;
    double best_key = -INFINITY;
    for (int e = 0; e < sh.E; ++e) {
      const double u = gumbel_uniform(philox_u32(seed, offset, uint64_t(s) * sh.E + e));
      const double key = log(static_cast<double>(score[int64_t{s} * sh.E + e])) - log(-log(u));
      if (key > best_key) {
        best_key = key;
        best = e;
      }
    }
    chosen = elite_idx[int64_t{s} * sh.E + best];
  }
  __syncthreads();
  for (int j = threadIdx.x; j < sh.A; j += blockDim.x) {
    const float mu = actions[(int64_t{s} * sh.N + chosen) * sh.A + j];
    const float sigma = std[int64_t{s} * sh.H * sh.A + j];
    const int64_t o = int64_t{s} * sh.A + j;
    mu_p[o] = mu;
    sigma_p[o] = sigma;
    const float noise = explore ? sigma * philox_normal(seed, offset + 1, o) : 0.0f;
    action[o] = fminf(1.0f, fmaxf(-1.0f, mu + noise));
  }
}

// Checks the shape; the power of two >= N that the elites' bitonic sort runs over.
int elites_sort_size(const char* who, const MppiShape& sh) {
  check_mppi_shape(who, sh);
  POMPC_REQUIRE(sh.N <= cuda::kMppiMaxN,
                "%s: num_samples (%d) must be <= %d (one block sorts a state's samples in shared "
                "memory)",
                who, sh.N, cuda::kMppiMaxN);
  int n_pow2 = 1;
  while (n_pow2 < sh.N) n_pow2 <<= 1;
  return n_pow2;
}

}  // namespace

namespace cuda {

void mppi_init(float* mean, float* std, const float* prev_mean, const uint8_t* first,
               const MppiShape& sh, float max_std, cudaStream_t stream) {
  check_mppi_shape("mppi_init", sh);
  LAUNCH(mppi_init_kernel, ceil_div(size_t(sh.S) * sh.H * sh.A, 256), 256, 0, stream, mean, std,
         prev_mean, first, sh, max_std);
}

void mppi_sample(float* actions, const float* mean, const float* std, const MppiShape& sh,
                 uint64_t seed, PhiloxOffset offset, float* rows_out, int64_t rows_ld,
                 cudaStream_t stream) {
  check_mppi_shape("mppi_sample", sh);
  check_sample_rows("mppi_sample", sh, rows_out, rows_ld);
  const size_t total = size_t(sh.H) * sh.S * (sh.N - (rows_out ? 0 : sh.P)) * sh.A;
  LAUNCH(mppi_sample_kernel, grid_stride_blocks(total), 256, 0, stream, actions, mean, std, sh,
         seed, offset, rows_out, rows_ld);
}

void mppi_elites(int32_t* elite_idx, float* elite_value, const float* value, const MppiShape& sh,
                 cudaStream_t stream) {
  const int n_pow2 = elites_sort_size("mppi_elites", sh);
  LAUNCH(mppi_elites_kernel, sh.S, 256, size_t(n_pow2) * (sizeof(float) + sizeof(int)), stream,
         elite_idx, elite_value, value, sh, n_pow2);
}

void mppi_elites_update(int32_t* elite_idx, float* elite_value, float* mean, float* std,
                        float* score, float* value, const float* terms, const TermWeights& w,
                        const float* actions, const MppiShape& sh, float temperature, float min_std,
                        float max_std, cudaStream_t stream) {
  const int n_pow2 = elites_sort_size("mppi_elites_update", sh);
  check_term_weights("mppi_elites_update", w);
  LAUNCH(mppi_elites_update_kernel, sh.S, 256, size_t(n_pow2) * (sizeof(float) + sizeof(int)),
         stream, elite_idx, elite_value, mean, std, score, value, terms, w, actions, sh, n_pow2,
         temperature, min_std, max_std);
}

void mppi_update(float* mean, float* std, float* score, const float* actions,
                 const int32_t* elite_idx, const float* elite_value, const MppiShape& sh,
                 float temperature, float min_std, float max_std, cudaStream_t stream) {
  check_mppi_shape("mppi_update", sh);
  LAUNCH(mppi_update_kernel, sh.S, 128, 0, stream, mean, std, score, actions, elite_idx,
         elite_value, sh, temperature, min_std, max_std);
}

void mppi_select(float* action, float* mu_p, float* sigma_p, const float* actions,
                 const int32_t* elite_idx, const float* score, const float* std,
                 const MppiShape& sh, bool explore, uint64_t seed, PhiloxOffset offset,
                 cudaStream_t stream) {
  check_mppi_shape("mppi_select", sh);
  LAUNCH(mppi_select_kernel, sh.S, 64, 0, stream, action, mu_p, sigma_p, actions, elite_idx,
         score, std, sh, explore, seed, offset);
}

}  // namespace cuda
}  // namespace pompc
