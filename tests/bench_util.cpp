// tests/bench_util.cpp: the machine peaks the benchmarks are held to (run book: bench_util.h).
#include "bench_util.h"

#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>

namespace pompc::test {

double host_triad_gbs() {
  static double cached = 0;
  if (cached > 0) return cached;
  const long long n = 16 << 20;
  std::vector<float> a(n), b(n, 1.0f), c(n, 2.0f);
  const double ms = time_ms(
      [&] {
#pragma omp parallel for schedule(static)
        for (long long i = 0; i < n; ++i) a[i] = b[i] + 0.5f * c[i];
      },
      5);
  cached = 3.0 * n * sizeof(float) / (ms * 1e6);
  return cached;
}

double host_cpuinfo_mhz() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("cpu MHz", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return std::stod(line.substr(colon + 1));
    }
  return 0;
}

// Every OpenMP thread runs independent chains of native-width vector FMAs (enough to cover
// latency x throughput on current cores, few enough to stay in registers: 16 of AVX-512's 32, 10
// of AVX2's 16) for a fixed count; the best of 3 runs.
double host_fma_peak_gflops() {
  static double cached = 0;
  if (cached > 0) return cached;
  typedef float vec __attribute__((vector_size(4 * kHostLanes)));
  constexpr int kChains = kHostLanes == 16 ? 16 : 10;
  const long iters = 20'000'000;
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    float sink = 0;
    const double t0 = omp_get_wtime();
    int threads = 1;
#pragma omp parallel reduction(+ : sink)
    {
#pragma omp single
      threads = omp_get_num_threads();
      vec acc[kChains];
      for (int c = 0; c < kChains; ++c) acc[c] = vec{} + 0.001f * static_cast<float>(c);
      const vec mul = vec{} + 0.999999f, add = vec{} + 1e-7f;
      for (long it = 0; it < iters / kChains; ++it) {
#pragma GCC unroll 16
        for (int c = 0; c < kChains; ++c) acc[c] = acc[c] * mul + add;
      }
      for (int c = 0; c < kChains; ++c)
        for (int l = 0; l < kHostLanes; ++l) sink += acc[c][l];
    }
    const double s = omp_get_wtime() - t0;
    const double flops =
        2.0 * kHostLanes * static_cast<double>(iters / kChains) * kChains * threads;
    best = std::max(best, flops / s * 1e-9);
    if (sink == 12345.0f) std::printf(" ");  // keep the chains alive
  }
  cached = best;
  return best;
}

namespace {

struct Layer {
  double in, out;
};
using Module = std::vector<Layer>;

// The Linear layers of each module (world_model.h; one Q head: `heads` of them run as one
// batched GEMM per layer).
struct Modules {
  Module enc, dyn, rew, pi, q;
  double heads;
};

Modules modules(const model::ModelConfig& c) {
  const double O = c.obs_dim, A = c.action_dim, Z = c.latent_dim, M = c.mlp_dim, E = c.enc_dim,
               K = c.num_bins;
  Modules m;
  m.enc.push_back({O, E});
  for (int l = 1; l < std::max(c.num_enc_layers - 1, 1); ++l) m.enc.push_back({E, E});
  m.enc.push_back({E, Z});
  m.dyn = {{Z + A, M}, {M, M}, {M, Z}};
  m.rew = {{Z + A, M}, {M, M}, {M, K}};
  m.pi = {{Z, M}, {M, M}, {M, 2 * A}};
  m.q = m.rew;
  m.heads = c.num_q;
  return m;
}

double params(const Module& m, double heads = 1) {
  double n = 0;
  for (const Layer& l : m) n += l.in * l.out + 3 * l.out;  // weight, bias, LayerNorm gamma, beta
  return heads * n;
}

struct Pass {
  bool fwd = false, wgrad = false, igrad = false;
  bool first_igrad = false;  // the module's input takes a gradient too
};

// `pass` of module `m` over `rows` rows (times `heads` for an ensemble).
Cost pass(const Module& m, double rows, Pass p, const Peaks& peaks, double heads = 1) {
  Cost c;
  auto gemm = [&](double flop, double bytes) {
    c.flop += heads * flop;
    c.bytes += heads * bytes;
    c.gemms += 1;
    c.roofline_s += std::max(heads * flop / peaks.gemm_flops, heads * bytes / peaks.mem_bw);
  };
  for (size_t i = 0; i < m.size(); ++i) {
    const double r = rows, in = m[i].in, out = m[i].out, f = 2 * r * in * out;
    if (p.fwd) gemm(f, 4 * (in * out + r * in + r * out) + 4 * 2 * r * out);
    if (p.wgrad) gemm(f, 4 * (r * out + r * in + in * out) + 4 * 3 * r * out);
    if (p.igrad && (i > 0 || p.first_igrad)) gemm(f, 4 * (r * out + in * out + r * in));
  }
  return c;
}

// A min2 / avg2 of the Q heads runs only the picked pair (WorldModel's CriticPair): gather_pair
// first copies the two heads' parameters (read and written once: 8 B per parameter).
constexpr double kPair = 2;
Cost gather_pair_cost(const Module& q, const Peaks& peaks) {
  Cost c;
  c.bytes = 8 * params(q, kPair);
  c.roofline_s = c.bytes / peaks.mem_bw;
  return c;
}

}  // namespace

Cost update_cost(const model::ModelConfig& c, const Peaks& peaks) {
  const Modules m = modules(c);
  const double B = c.batch_size, HB = double(c.horizon) * B, H1B = (c.horizon + 1.0) * B;
  const Pass fwd{true, false, false, false};
  const Pass bwd_latent{false, true, true, true};   // input gradient reaches the latent
  const Pass bwd_inner{false, true, true, false};   // the first layer's input takes none
  const Pass igrad_only{false, false, true, true};  // through the Qs to the action, weights fixed
  Cost t;
  // TD targets: encode the next observations, a' ~ pi(z'), min2 of the target Qs (no gradient;
  // the picked pair only).
  t += pass(m.enc, HB, fwd, peaks);
  t += pass(m.pi, HB, fwd, peaks);
  t += gather_pair_cost(m.q, peaks);
  t += pass(m.q, HB, fwd, peaks, kPair);
  // Model loss: encode obs[0], roll the dynamics one step at a time (B rows each), reward and
  // Qs on all H latents at once, and back.
  t += pass(m.enc, B, fwd, peaks);
  t += pass(m.enc, B, bwd_inner, peaks);
  for (int h = 0; h < c.horizon; ++h) {
    t += pass(m.dyn, B, fwd, peaks);
    t += pass(m.dyn, B, bwd_latent, peaks);
  }
  t += pass(m.rew, HB, fwd, peaks);
  t += pass(m.rew, HB, bwd_latent, peaks);
  t += pass(m.q, HB, fwd, peaks, m.heads);
  t += pass(m.q, HB, bwd_latent, peaks, m.heads);
  // Policy step on the H + 1 detached latents: pi, the Qs (avg2: the pair), and back through both.
  t += pass(m.pi, H1B, fwd, peaks);
  t += gather_pair_cost(m.q, peaks);
  t += pass(m.q, H1B, fwd, peaks, kPair);
  t += pass(m.q, H1B, igrad_only, peaks, kPair);
  t += pass(m.pi, H1B, bwd_inner, peaks);
  // Optimizer: Adam, clipping and zeroing of the trained parameters, Polyak of the target Qs.
  const double model_params = params(m.enc) + params(m.dyn) + params(m.rew) + params(m.q, m.heads);
  const double trained = model_params + params(m.pi), target_q = params(m.q, m.heads);
  const double opt_bytes = (28 + 12 + 4) * trained + 12 * target_q;
  t.bytes += opt_bytes;
  t.roofline_s += opt_bytes / peaks.mem_bw;
  return t;
}

Cost plan_cost(const model::ModelConfig& c, const agent::PlannerSettings& p, const Peaks& peaks) {
  const Modules m = modules(c);
  const Pass fwd{true, false, false, false};
  const double N = p.num_samples, P = p.num_pi_trajs;
  Cost t = pass(m.enc, 1, fwd, peaks);
  for (int h = 0; h < p.horizon; ++h) {  // policy trajectories
    if (P > 0) t += pass(m.pi, P, fwd, peaks);
    if (P > 0 && h + 1 < p.horizon) t += pass(m.dyn, P, fwd, peaks);
  }
  for (int it = 0; it < p.iterations_for(c.action_dim); ++it) {
    for (int h = 0; h < p.horizon; ++h) {
      t += pass(m.rew, N, fwd, peaks);
      t += pass(m.dyn, N, fwd, peaks);
    }
    t += pass(m.pi, N, fwd, peaks);  // terminal value: a ~ pi(z_H), avg2 of the Q heads' pair
    t += gather_pair_cost(m.q, peaks);
    t += pass(m.q, N, fwd, peaks, kPair);
  }
  return t;
}

}  // namespace pompc::test
