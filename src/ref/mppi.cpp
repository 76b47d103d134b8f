// Reference MPPI ops (see mppi.h for the maths and shapes).
#include "ref/mppi.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "common.h"
#include "ref/loss.h"

namespace pompc::ref {

void mppi_init(float* mean, float* std, const float* prev_mean, const uint8_t* first,
               const MppiShape& sh, float max_std) {
  check_mppi_shape("mppi_init", sh);
  const int HA = sh.H * sh.A;
  for (int s = 0; s < sh.S; ++s) {
    float* m = mean + static_cast<int64_t>(s) * HA;
    std::fill(m, m + HA, 0.0f);
    std::fill(std + static_cast<int64_t>(s) * HA, std + static_cast<int64_t>(s + 1) * HA, max_std);
    if (!first[s])
      std::copy(prev_mean + static_cast<int64_t>(s) * HA + sh.A,
                prev_mean + static_cast<int64_t>(s + 1) * HA, m);
  }
}

void mppi_sample(float* actions, const float* mean, const float* std, const MppiShape& sh,
                 uint64_t seed, uint64_t offset, float* rows_out, int64_t rows_ld) {
  check_mppi_shape("mppi_sample", sh);
  check_sample_rows("mppi_sample", sh, rows_out, rows_ld);
#pragma omp parallel for collapse(2) schedule(static) if (int64_t{sh.S} * sh.H * sh.N * sh.A > 65536)
  for (int t = 0; t < sh.H; ++t)
    for (int s = 0; s < sh.S; ++s)
      for (int n = 0; n < sh.N; ++n) {
        const int64_t row = (static_cast<int64_t>(t) * sh.S + s) * sh.N + n;
        for (int j = 0; j < sh.A; ++j) {
          if (n >= sh.P) {
            const int64_t ms = (static_cast<int64_t>(s) * sh.H + t) * sh.A + j;
            const uint64_t i = ((static_cast<uint64_t>(s) * sh.H + t) * sh.N + n) * sh.A + j;
            const float a = mean[ms] + std[ms] * philox_normal(seed, offset, i);
            actions[row * sh.A + j] = std::min(1.0f, std::max(-1.0f, a));
          }
          if (rows_out != nullptr) rows_out[row * rows_ld + j] = actions[row * sh.A + j];
        }
      }
}

void mppi_elites(int32_t* elite_idx, float* elite_value, const float* value, const MppiShape& sh) {
  check_mppi_shape("mppi_elites", sh);
  std::vector<int32_t> order(sh.N);
  for (int s = 0; s < sh.S; ++s) {
    const float* v = value + static_cast<int64_t>(s) * sh.N;
    auto val = [&](int32_t n) { return std::isnan(v[n]) ? 0.0f : v[n]; };
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + sh.E, order.end(), [&](int32_t a, int32_t b) {
      return val(a) > val(b) || (val(a) == val(b) && a < b);
    });
    for (int e = 0; e < sh.E; ++e) {
      elite_idx[static_cast<int64_t>(s) * sh.E + e] = order[e];
      elite_value[static_cast<int64_t>(s) * sh.E + e] = val(order[e]);
    }
  }
}

void mppi_update(float* mean, float* std, float* score, const float* actions,
                 const int32_t* elite_idx, const float* elite_value, const MppiShape& sh,
                 float temperature, float min_std, float max_std) {
  check_mppi_shape("mppi_update", sh);
  for (int s = 0; s < sh.S; ++s) {
    const float* v = elite_value + static_cast<int64_t>(s) * sh.E;
    const int32_t* idx = elite_idx + static_cast<int64_t>(s) * sh.E;
    float* sc = score + static_cast<int64_t>(s) * sh.E;
    float mx = v[0];
    for (int e = 1; e < sh.E; ++e) mx = std::max(mx, v[e]);
    float z = 0.0f;
    for (int e = 0; e < sh.E; ++e) {
      sc[e] = std::exp(temperature * (v[e] - mx));
      z += sc[e];
    }
    for (int e = 0; e < sh.E; ++e) sc[e] /= z;
    for (int t = 0; t < sh.H; ++t)
      for (int j = 0; j < sh.A; ++j) {
        auto a = [&](int e) {
          return actions[((static_cast<int64_t>(t) * sh.S + s) * sh.N + idx[e]) * sh.A + j];
        };
        float m = 0.0f;
        for (int e = 0; e < sh.E; ++e) m += sc[e] * a(e);
        float var = 0.0f;
        for (int e = 0; e < sh.E; ++e) var += sc[e] * (a(e) - m) * (a(e) - m);
        const int64_t o = (static_cast<int64_t>(s) * sh.H + t) * sh.A + j;
        mean[o] = m;
        std[o] = std::min(max_std, std::max(min_std, std::sqrt(var)));
      }
  }
}

void mppi_elites_update(int32_t* elite_idx, float* elite_value, float* mean, float* std,
                        float* score, float* value, const float* terms, const TermWeights& w,
                        const float* actions, const MppiShape& sh, float temperature, float min_std,
                        float max_std) {
  check_mppi_shape("mppi_elites_update", sh);
  discounted_sum(value, terms, int64_t{sh.S} * sh.N, w);
  mppi_elites(elite_idx, elite_value, value, sh);
  mppi_update(mean, std, score, actions, elite_idx, elite_value, sh, temperature, min_std, max_std);
}

void mppi_select(float* action, float* mu_p, float* sigma_p, const float* actions,
                 const int32_t* elite_idx, const float* score, const float* std,
                 const MppiShape& sh, bool explore, uint64_t seed, uint64_t offset) {
  check_mppi_shape("mppi_select", sh);
  for (int s = 0; s < sh.S; ++s) {
    int best = 0;
    double best_key = -INFINITY;
    for (int e = 0; e < sh.E; ++e) {
      const double u = gumbel_uniform(philox_u32(seed, offset, static_cast<uint64_t>(s) * sh.E + e));
      const double key = std::log(static_cast<double>(score[static_cast<int64_t>(s) * sh.E + e])) -
                         std::log(-std::log(u));
      if (key > best_key) {
        best_key = key;
        best = e;
      }
    }
    const int32_t n = elite_idx[static_cast<int64_t>(s) * sh.E + best];
    for (int j = 0; j < sh.A; ++j) {
      const float mu = actions[(static_cast<int64_t>(s) * sh.N + n) * sh.A + j];  // t = 0
      const float sigma = std[static_cast<int64_t>(s) * sh.H * sh.A + j];          // std[s, 0, j]
      const int64_t o = static_cast<int64_t>(s) * sh.A + j;
      mu_p[o] = mu;
      sigma_p[o] = sigma;
      const float noise = explore ? sigma * philox_normal(seed, offset + 1, o) : 0.0f;
      action[o] = std::min(1.0f, std::max(-1.0f, mu + noise));
    }
  }
}

}  // namespace pompc::ref
