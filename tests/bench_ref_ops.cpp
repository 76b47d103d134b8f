// Bench: per-op micro-benchmarks of the reference (CPU) backend at SPEC.md's sizes (suite bench),
// beside bench_optim.cpp's optimizer rows and test_ref_gemm.cpp's 512x512x1024 GEMM.
//   build/bench -ts=bench -tc='*gemm shapes*'   GEMMs of the 5M and 1M models and the planner
//   build/test_gpu -ts=bench -tc='*gemm*'      the same, then on the GPU cuBLAS at those shapes
//                                               (as stored, leading dims padded, bases 4 B off)
//   build/bench -ts=bench -tc='*layernorm*'     LayerNorm + Mish / SimNorm, forward and backward
//   build/bench -ts=bench -tc='*mppi*'          the planner's sample, elites, update, select
//   build/bench -ts=bench -tc='*losses*'        soft_ce, two_hot_inv, gauss_kl
// Sizes (SPEC sections 1-3): batch B = 256, horizon H = 3, so B H = 768 rollout rows and
// (H + 1) B = 1024 encoded rows; 5M model Z = M = 512, enc_dim 256, Qn = 5; 1M model Z = 128,
// M = 384; dog's O = 223, A = 38 (the largest DMC action); planner N = 512, E = 64, P = 24;
// K = 101 bins. Figures: ms or us per call (median of 5), GFLOP/s against the measured FMA peak
// for the GEMMs, GB/s against the measured triad for the rest (bytes counted per call are named
// in each row's comment; the small planner ops stay in cache, so theirs is only a rate), normal
// draws per second for mppi_sample. Nothing here asserts a timing. On a shared machine run them
// with OMP_NUM_THREADS=1 (README.md, Measured).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <vector>

#include "bench_util.h"
#include "ops.h"
#include "ref/gemm.h"

#ifndef POMPC_EMU
#include <cublas_v2.h>
#include <cuda_runtime.h>
#endif

namespace {

constexpr int kB = 256, kH = 3, kZ = 512, kM = 512, kA = 38, kQn = 5, kK = 101;
constexpr int kRollout = kB * kH;        // 768 rows: dynamics, reward and Q over t < H
constexpr int kEncoded = (kH + 1) * kB;  // 1024 rows: the encoder over obs[0..H]

// Uniform(-1, 1) floats from a fixed LCG (the benchmarks need data, not statistics).
std::vector<float> data(size_t n, uint64_t seed) {
  std::vector<float> v(n);
  uint64_t s = seed * 6364136223846793005ull + 1442695040888963407ull;
  for (float& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = static_cast<float>(static_cast<double>(s >> 40) / 8388608.0 - 1.0);
  }
  return v;
}

// Backend buffers filled from host data, freed together.
struct Buffers {
  pompc::Ops& o;
  std::vector<void*> owned;
  explicit Buffers(pompc::Ops& ops) : o(ops) {}
  ~Buffers() {
    for (void* p : owned) o.free_bytes(p);
  }
  float* f(size_t n, uint64_t seed = 0, float lo = -1, float hi = 1) {
    float* p = o.alloc<float>(n);
    owned.push_back(p);
    if (seed != 0) {
      std::vector<float> h = data(n, seed);
      for (float& x : h) x = lo + (hi - lo) * 0.5f * (x + 1);
      o.copy_to_backend(p, h.data(), n * sizeof(float));
    }
    return p;
  }
  template <typename T>
  T* any(size_t n) {
    T* p = o.alloc<T>(n);
    owned.push_back(p);
    return p;
  }
};

// The models' GEMMs, row-major: op(A) [m, k] times op(B) [k, n]; a Linear's forward is (N, T)
// with W [out, in], its input gradient (N, N), its weight gradient (T, N) summed over the rows.
struct GemmShape {
  const char* name;
  bool ta, tb;
  int m, n, k;
};
constexpr GemmShape kGemmShapes[] = {
    {"5M encoder fwd (H+1)*B=1024 O=223->256", false, true, kEncoded, 256, 223},
    {"5M layer-1 fwd B*H=768 Z+A=550->M=512", false, true, kRollout, kM, kZ + kA},
    {"5M hidden fwd 768 512->512", false, true, kRollout, kM, kM},
    {"5M layer-1 dinp 768 512->550", false, false, kRollout, kZ + kA, kM},
    {"5M layer-1 dW 512x550 over 768 rows", true, false, kM, kZ + kA, kRollout},
    {"5M Q head fwd 768 512->K=101", false, true, kRollout, kK, kM},
    {"planner N=512 550->512", false, true, 512, kM, kZ + kA},
    {"1M layer-1 fwd 768 Z+A=166->M=384", false, true, kRollout, 384, 128 + kA},
    {"1M hidden fwd 768 384->384", false, true, kRollout, 384, 384},
};

// One row: median ms per call over `iters` calls, and GB/s for `bytes` per call.
void row_gbs(pompc::Ops& o, const char* area, const char* what, double bytes, int iters,
             const std::function<void()>& fn) {
  const double ms = pompc::test::time_ms(fn, iters, [&] { o.synchronize(); });
  const double gbs = bytes / (ms * 1e6), peak = pompc::test::host_triad_gbs();
  if (ms < 0.1)
    std::printf("bench: %s/%s ref: %.2f us, %.1f GB/s (%.0f%% of measured triad %.0f GB/s)\n", area,
                what, ms * 1e3, gbs, 100 * gbs / peak, peak);
  else
    std::printf("bench: %s/%s ref: %.3f ms, %.1f GB/s (%.0f%% of measured triad %.0f GB/s)\n", area,
                what, ms, gbs, 100 * gbs / peak, peak);
}

void bench_layernorm(pompc::Ops& o) {
  Buffers b(o);
  struct Shape {
    const char* name;
    bool simnorm;
    int rows, groups;
    float p;
  } shapes[] = {
      {"mish B*H=768 x M=512", false, kRollout, 1, 0.0f},
      {"mish Q ensemble Qn*B*H=3840 x 512, dropout 0.01", false, kQn * kRollout, kQn, 0.01f},
      {"simnorm (H+1)*B=1024 x Z=512", true, kEncoded, 1, 0.0f},
  };
  for (const Shape& s : shapes) {
    const int C = s.simnorm ? kZ : kM;
    const size_t n = static_cast<size_t>(s.rows) * C, pn = static_cast<size_t>(s.groups) * C;
    float *x = b.f(n, 1), *bias = b.f(pn, 2), *g = b.f(pn, 3, 0.5f, 1.5f), *be = b.f(pn, 4),
          *y = b.f(n), *mean = b.f(s.rows), *rstd = b.f(s.rows), *dy = b.f(n, 5), *dx = b.f(n),
          *db = b.f(pn), *dg = b.f(pn), *dbe = b.f(pn);
    const pompc::Dropout dr{s.p, 7, 1};
    auto fwd = [&] {
      if (s.simnorm)
        o.layernorm_simnorm_forward(y, mean, rstd, x, bias, g, be, s.rows, C, s.groups);
      else
        o.layernorm_mish_forward(y, mean, rstd, x, bias, g, be, s.rows, C, s.groups, dr);
    };
    auto bwd = [&] {
      if (s.simnorm)
        o.layernorm_simnorm_backward(dx, db, dg, dbe, dy, x, bias, g, be, mean, rstd, s.rows, C,
                                     s.groups);
      else
        o.layernorm_mish_backward(dx, db, dg, dbe, dy, x, bias, g, be, mean, rstd, s.rows, C,
                                  s.groups, dr);
    };
    char what[128];
    // forward: reads inp, writes out (4 + 4 B per element; parameters and row stats are small)
    std::snprintf(what, sizeof what, "forward %s", s.name);
    row_gbs(o, "layernorm", what, 8.0 * n, 20, fwd);
    // backward: reads dout and inp, reads and writes dinp (16 B per element)
    std::snprintf(what, sizeof what, "backward %s", s.name);
    row_gbs(o, "layernorm", what, 16.0 * n, 20, bwd);
  }
}

void bench_mppi(pompc::Ops& o, int A) {
  Buffers b(o);
  pompc::MppiShape sh;  // S = 1, H = 3, N = 512, P = 24, E = 64
  sh.A = A;
  const size_t HA = static_cast<size_t>(sh.H) * A, total = HA * sh.N;
  float *actions = b.f(total, 11), *mean = b.f(HA, 12, -0.5f, 0.5f), *std = b.f(HA, 13, 0.1f, 2.0f),
        *prev = b.f(HA, 14), *value = b.f(sh.N, 15, -5, 5), *elite_value = b.f(sh.E),
        *score = b.f(sh.E), *action = b.f(A), *mu_p = b.f(A), *sigma_p = b.f(A);
  auto* elite_idx = b.any<int32_t>(sh.E);
  auto* first = b.any<uint8_t>(1);  // 0: warm start from prev
  o.mppi_init(mean, std, prev, first, sh, 2.0f);
  o.mppi_elites(elite_idx, elite_value, value, sh);
  o.mppi_update(mean, std, score, actions, elite_idx, elite_value, sh, 0.5f, 0.05f, 2.0f);
  char what[96];
  // sample: one Philox normal per element of the N - P sampled sequences, written once. Bound by
  // the normals' arithmetic, not by memory: printed as draws per second.
  const double draws = static_cast<double>(HA) * (sh.N - sh.P);
  const double ms = pompc::test::time_ms([&] { o.mppi_sample(actions, mean, std, sh, 21, 0); }, 200,
                                         [&] { o.synchronize(); });
  std::printf(
      "bench: mppi/sample H=3 N=512 P=24 A=%d ref: %.3f ms, %.1f M normal draws/s (%.0f ns "
      "each)\n",
      A, ms, draws / (ms * 1e3), ms * 1e6 / draws);
  // elites: reads N values, writes E indices and values (exact top-k)
  std::snprintf(what, sizeof what, "elites N=512 E=64 A=%d", A);
  row_gbs(o, "mppi", what, 4.0 * sh.N + 8.0 * sh.E, 2000,
          [&] { o.mppi_elites(elite_idx, elite_value, value, sh); });
  // update: reads the E elite sequences (H A each), writes mean, std and the E scores
  std::snprintf(what, sizeof what, "update E=64 H=3 A=%d", A);
  row_gbs(o, "mppi", what, 4.0 * sh.E * HA + 8.0 * HA + 4.0 * sh.E, 2000, [&] {
    o.mppi_update(mean, std, score, actions, elite_idx, elite_value, sh, 0.5f, 0.05f, 2.0f);
  });
  // select: one Gumbel draw per elite, reads the chosen first action and std[0]
  std::snprintf(what, sizeof what, "select E=64 A=%d", A);
  row_gbs(o, "mppi", what, 4.0 * sh.E + 12.0 * A, 2000, [&] {
    o.mppi_select(action, mu_p, sigma_p, actions, elite_idx, score, std, sh, true, 22, 0);
  });
}

void bench_losses(pompc::Ops& o) {
  Buffers b(o);
  const pompc::Bins bins;  // K = 101 over [-10, 10]
  char what[128];
  // soft_ce: the reward head (B H rows) and the Q ensemble (Qn B H rows) against two-hot targets.
  for (int rows : {kRollout, kQn * kRollout}) {
    const size_t n = static_cast<size_t>(rows) * kK;
    float *logits = b.f(n, 31, -3, 3), *x = b.f(rows, 32, -50, 50), *loss = b.f(rows),
          *dloss = b.f(rows, 33), *dlogits = b.f(n);
    // forward: reads the logits (4 B per logit); backward: reads them and reads + writes dlogits
    std::snprintf(what, sizeof what, "soft_ce forward %d x K=101", rows);
    row_gbs(o, "loss", what, 4.0 * n, 50, [&] { o.soft_ce_forward(loss, logits, x, rows, bins); });
    std::snprintf(what, sizeof what, "soft_ce backward %d x K=101", rows);
    row_gbs(o, "loss", what, 12.0 * n, 50,
            [&] { o.soft_ce_backward(dlogits, dloss, logits, x, rows, bins); });
  }
  // two_hot_inv: the planner's rewards (N = 512 rows) and the policy update's two Q heads over
  // (H + 1) B rows (2048), with its backward.
  for (int rows : {512, 2 * kEncoded}) {
    const size_t n = static_cast<size_t>(rows) * kK;
    float *logits = b.f(n, 41, -3, 3), *out = b.f(rows), *dout = b.f(rows, 42), *dlogits = b.f(n);
    std::snprintf(what, sizeof what, "two_hot_inv forward %d x K=101", rows);
    row_gbs(o, "loss", what, 4.0 * n, 50,
            [&] { o.two_hot_inv_forward(out, logits, nullptr, rows, bins); });
    if (rows == 2 * kEncoded) {
      std::snprintf(what, sizeof what, "two_hot_inv backward %d x K=101", rows);
      row_gbs(o, "loss", what, 12.0 * n, 50,
              [&] { o.two_hot_inv_backward(dlogits, dout, logits, rows, bins); });
    }
  }
  // gauss_kl (BMPC / PO-MPC prior term) over (H + 1) B rows of A = 38: forward reads mu,
  // log_std, mu_p, sigma_p (16 B per element); backward also reads + writes dmu, dlog_std (32 B).
  {
    const int rows = kEncoded;
    const size_t n = static_cast<size_t>(rows) * kA;
    float *mu = b.f(n, 51), *log_std = b.f(n, 52, -3, 1), *mu_p = b.f(n, 53),
          *sigma_p = b.f(n, 54, 0.05f, 2.0f), *out = b.f(rows), *dout = b.f(rows, 55),
          *dmu = b.f(n), *dlog_std = b.f(n);
    for (pompc::KlDir dir : {pompc::KlDir::reverse, pompc::KlDir::forward}) {
      const char* d = dir == pompc::KlDir::reverse ? "KL=reverse" : "KL=forward";
      std::snprintf(what, sizeof what, "gauss_kl %s forward %d x A=38", d, rows);
      row_gbs(o, "loss", what, 16.0 * n, 50,
              [&] { o.gauss_kl_forward(out, mu, log_std, mu_p, sigma_p, rows, kA, dir); });
      std::snprintf(what, sizeof what, "gauss_kl %s backward %d x A=38", d, rows);
      row_gbs(o, "loss", what, 32.0 * n, 50, [&] {
        o.gauss_kl_backward(dmu, dlog_std, dout, mu, log_std, mu_p, sigma_p, rows, kA, dir);
      });
    }
  }
}

}  // namespace

TEST_SUITE("bench") {
  TEST_CASE("bench gemm shapes: reference GEMM at the 5M and 1M models' and the planner's shapes") {
    const double peak = pompc::test::host_fma_peak_gflops();
    for (const GemmShape& s : kGemmShapes) {
      const std::vector<float> A = data(static_cast<size_t>(s.m) * s.k, 61),
                               B = data(static_cast<size_t>(s.k) * s.n, 62);
      std::vector<float> C(static_cast<size_t>(s.m) * s.n);
      const int lda = s.ta ? s.m : s.k, ldb = s.tb ? s.k : s.n;
      const double flop = 2.0 * s.m * s.n * s.k;
      const double ms = pompc::test::time_ms(
          [&] {
            pompc::ref::gemm<float>(s.ta, s.tb, s.m, s.n, s.k, 1.0f, A.data(), lda, B.data(), ldb,
                                    0.0f, C.data(), s.n);
          },
          std::max(2, static_cast<int>(2e9 / flop)));
      const double gflops = flop / (ms * 1e6);
      std::printf("bench: ref/gemm %s: %.3f ms, %.1f GFLOP/s (%.0f%% of measured FMA peak %.0f)\n",
                  s.name, ms, gflops, 100 * gflops / peak, peak);
    }
  }

#ifndef POMPC_EMU
  // What 16-byte alignment is worth to cuBLAS at the models' shapes (issue 12, item 3): each GEMM
  // as the model stores its operands (packed rows: lda 550, 223 or 101; 256-byte aligned
  // bases), with every leading dimension padded to a multiple of 4 floats, and with every base
  // 4 bytes off (what a tensor after a [101] bias had before tensors were aligned), in TF32 (as
  // trained) and in plain fp32 (the parity tests' mode).
  TEST_CASE(
      "bench gemm alignment: cuBLAS at the models' shapes, 16-byte aligned or not [gpu-only]") {
    cublasHandle_t h = nullptr;
    REQUIRE(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
    auto pad4 = [](int x) { return (x + 3) / 4 * 4; };
    const size_t cap = size_t(1) << 22;  // floats per operand (the largest needs 0.43 M)
    float *A = nullptr, *B = nullptr, *C = nullptr;
    REQUIRE(cudaMalloc(&A, (cap + 4) * sizeof(float)) == cudaSuccess);
    REQUIRE(cudaMalloc(&B, (cap + 4) * sizeof(float)) == cudaSuccess);
    REQUIRE(cudaMalloc(&C, (cap + 4) * sizeof(float)) == cudaSuccess);
    {
      const std::vector<float> h_data = data(cap + 4, 63);
      for (float* p : {A, B, C})
        cudaMemcpy(p, h_data.data(), h_data.size() * sizeof(float), cudaMemcpyHostToDevice);
    }
    const struct {
      cublasMath_t mode;
      const char* name;
    } modes[] = {{CUBLAS_TF32_TENSOR_OP_MATH, "TF32"}, {CUBLAS_PEDANTIC_MATH, "fp32"}};
    for (const auto& mode : modes) {
      REQUIRE(cublasSetMathMode(h, mode.mode) == CUBLAS_STATUS_SUCCESS);
      for (const GemmShape& s : kGemmShapes) {
        // Row-major C [m, n] = op(A) op(B) as cuBLAS's column-major C^T = op(B)^T op(A)^T.
        auto run = [&](bool padded, int off) {
          const int lda = s.ta ? s.m : s.k, ldb = s.tb ? s.k : s.n, ldc = s.n;
          const int la = padded ? pad4(lda) : lda, lb = padded ? pad4(ldb) : ldb,
                    lc = padded ? pad4(ldc) : ldc;
          const float one = 1.0f, zero = 0.0f;
          return pompc::test::time_ms(
              [&] {
                cublasSgemm(h, s.tb ? CUBLAS_OP_T : CUBLAS_OP_N, s.ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                            s.n, s.m, s.k, &one, B + off, lb, A + off, la, &zero, C + off, lc);
              },
              50, [] { cudaDeviceSynchronize(); });
        };
        const double packed = run(false, 0), padded = run(true, 0), off4 = run(false, 1);
        const double flop = 2.0 * s.m * s.n * s.k;
        std::printf(
            "bench: gpu/gemm-align %s %s: as stored %.4f ms (%.1f TFLOP/s), leading dims padded "
            "to 16 B %.4f ms (%.2fx), bases 4 B off %.4f ms (%.2fx slower)\n",
            s.name, mode.name, packed, flop / (packed * 1e9), padded, packed / padded, off4,
            off4 / packed);
      }
    }
    cublasDestroy(h);
    for (float* p : {A, B, C}) cudaFree(p);
  }
#endif

  TEST_CASE("bench layernorm: reference backend") {
    auto ref = pompc::make_ref_ops();
    bench_layernorm(*ref);
  }

  TEST_CASE("bench mppi: reference backend, A = 6 and 38") {
    auto ref = pompc::make_ref_ops();
    bench_mppi(*ref, 6);
    bench_mppi(*ref, kA);
  }

  TEST_CASE("bench losses: reference backend") {
    auto ref = pompc::make_ref_ops();
    bench_losses(*ref);
  }
}
