// Reference optimizer ops: Adam over one contiguous buffer with learning-rate groups, global
// gradient-norm clipping, Polyak averaging. The CUDA twins with the same names are in
// kernels/optim.cu; the formulas are in src/ops.h.
#pragma once

#include <cstddef>

#include "ops.h"

namespace pompc::ref {

void adam_update(const AdamSettings& cfg, const AdamGroups& groups, float* param,
                 const float* grad, float* m, float* v, AdamScalars* s);
// Sum of squares accumulated in double: the ground truth the CUDA reduction is held to.
float global_norm(const float* x, size_t n);
void clip_grad_norm(float* grad, size_t n, float max_norm, float* norm);
void polyak(float* target, const float* online, size_t n, float tau);

}  // namespace pompc::ref
