// kernels/launchers.h: host-side entry points of the hand-written kernels (namespace
// pompc::cuda). Each launcher enqueues its kernels on `stream` and returns without synchronising;
// pointers are device pointers. The reference twin of each has the same name in pompc::ref.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "ops.h"

namespace pompc::cuda {

// kernels/optim.cu
void adam_update(const AdamSettings& cfg, const AdamGroups& groups, float* param,
                 const float* grad, float* m, float* v, AdamScalars* s, cudaStream_t stream);
// scratch: kNormPartials doubles of device memory for the first reduction stage.
constexpr unsigned kNormPartials = 256;
void global_norm(const float* x, size_t n, float* norm, double* scratch, cudaStream_t stream);
void clip_grad_norm(float* grad, size_t n, float max_norm, float* norm, double* scratch,
                    cudaStream_t stream);
void polyak(float* target, const float* online, size_t n, float tau, cudaStream_t stream);

}  // namespace pompc::cuda
