// kernels/scale.cu: RunningScale (TD-MPC2 common/scale.py) with its percentiles on the device.
//
// Maths: exactly src/ref/scale.h. sorted = sort(x) (NaN last); P_q by linear interpolation at
//   pos = q (n - 1) / 100; v = max(P95 - P5, 1) (NaN stays NaN); S += tau (v - S).
// Shapes: x [n] with n <= kScaleMaxN (the batch at t = 0: B = 256); *value one device scalar.
// One block of kScaleThreads threads: x is copied into shared memory padded with NaN to the next
//   power of two and bitonic-sorted there (NaN compares greater than every number, so the padding
//   lands after the real values and real NaNs, as in torch.sort). Thread 0 then updates *value.
//   The step needs no host round trip, so it lives inside a captured update graph.
//
// Test: build/test_emu -ts=ops -tc='*scale*cuda*'.
#include "common.cuh"
#include "launchers.h"

namespace pompc {
namespace {

constexpr int kScaleThreads = 256;

__device__ __forceinline__ bool nan_last_less(float a, float b) {
  return !isnan(a) && (isnan(b) || a < b);
}

__device__ __forceinline__ float percentile_sorted_f(const float* s, int n, float q) {
  const float pos = q * static_cast<float>(n - 1) / 100.0f;
  const float lo = floorf(pos);
  const float hi = fminf(lo + 1.0f, static_cast<float>(n - 1));
  const float w_hi = pos - lo;
  return s[static_cast<int>(lo)] * (1.0f - w_hi) + s[static_cast<int>(hi)] * w_hi;
}

__global__ void running_scale_kernel(float* __restrict__ value, const float* __restrict__ x, int n,
                                     int n_pow2, float tau) {
  __shared__ float s[cuda::kScaleMaxN];
  for (int i = threadIdx.x; i < n_pow2; i += blockDim.x) s[i] = i < n ? x[i] : NAN;
  __syncthreads();
  for (int k = 2; k <= n_pow2; k <<= 1) {
    for (int j = k >> 1; j > 0; j >>= 1) {
      for (int i = threadIdx.x; i < n_pow2; i += blockDim.x) {
        const int partner = i ^ j;
        if (partner > i) {
          const bool ascending = (i & k) == 0;
          const float a = s[i], b = s[partner];
          if (ascending ? nan_last_less(b, a) : nan_last_less(a, b)) {
            s[i] = b;
            s[partner] = a;
          }
        }
      }
      __syncthreads();
    }
  }
  if (threadIdx.x == 0) {
    const float d = percentile_sorted_f(s, n, 95.0f) - percentile_sorted_f(s, n, 5.0f);
    const float v = isnan(d) ? d : fmaxf(d, 1.0f);
    *value = *value + tau * (v - *value);
  }
}

}  // namespace

namespace cuda {

void running_scale_update(float* value, const float* x, int n, float tau, cudaStream_t stream) {
  POMPC_REQUIRE(n >= 1 && n <= kScaleMaxN,
                "running_scale_update: n (%d) must be in [1, %d] (the batch size; raise "
                "kScaleMaxN in kernels/launchers.h for larger batches)",
                n, kScaleMaxN);
  int n_pow2 = 1;
  while (n_pow2 < n) n_pow2 <<= 1;
  LAUNCH(running_scale_kernel, 1, kScaleThreads, 0, stream, value, x, n, n_pow2, tau);
}

}  // namespace cuda
}  // namespace pompc
