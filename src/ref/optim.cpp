// Reference optimizer ops (see optim.h and the formulas in src/ops.h).
#include "ref/optim.h"

#include <cmath>

namespace pompc::ref {

void adam_update(const AdamSettings& cfg, const AdamGroups& groups, float* param,
                 const float* grad, float* m, float* v, AdamScalars* s) {
  s->step += 1;
  s->bias1 = static_cast<float>(1.0 - std::pow(static_cast<double>(cfg.beta1), s->step));
  s->bias2 = static_cast<float>(1.0 - std::pow(static_cast<double>(cfg.beta2), s->step));
  const float sqrt_bias2 = std::sqrt(s->bias2);
  size_t begin = 0;
  for (int g = 0; g < groups.count; ++g) {
    const float step_size = groups.lr[g] / s->bias1;
    const long long lo = static_cast<long long>(begin), hi = static_cast<long long>(groups.end[g]);
#pragma omp parallel for schedule(static)
    for (long long i = lo; i < hi; ++i) {
      const float gi = grad[i];
      m[i] += (1.0f - cfg.beta1) * (gi - m[i]);
      v[i] = cfg.beta2 * v[i] + (1.0f - cfg.beta2) * gi * gi;
      param[i] -= step_size * m[i] / (std::sqrt(v[i]) / sqrt_bias2 + cfg.eps);
    }
    begin = groups.end[g];
  }
}

float global_norm(const float* x, size_t n) {
  double sum = 0;
  const long long nn = static_cast<long long>(n);
#pragma omp parallel for reduction(+ : sum) schedule(static)
  for (long long i = 0; i < nn; ++i) sum += static_cast<double>(x[i]) * x[i];
  return static_cast<float>(std::sqrt(sum));
}

void clip_grad_norm(float* grad, size_t n, float max_norm, float* norm) {
  *norm = global_norm(grad, n);
  const float scale = std::fmin(1.0f, max_norm / (*norm + 1e-6f));
  const long long nn = static_cast<long long>(n);
#pragma omp parallel for schedule(static)
  for (long long i = 0; i < nn; ++i) grad[i] *= scale;
}

void polyak(float* target, const float* online, size_t n, float tau) {
  const long long nn = static_cast<long long>(n);
#pragma omp parallel for schedule(static)
  for (long long i = 0; i < nn; ++i) target[i] += tau * (online[i] - target[i]);
}

}  // namespace pompc::ref
