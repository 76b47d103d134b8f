// Reference GEMM (src/ref/gemm.h): the packed micro-kernel path against the plain double loop
// (tests/plain_ref.h) at sizes that break blocking (1, 33, 257, 1025-ish; the float micro-tile is
// 14 x 32 or 6 x 16 and the depth block <= 512), every transpose, padded leading dimensions,
// alpha / beta cases including beta = 0 over NaN and beta = 1 accumulation; the column-major
// cuBLAS-convention wrapper and the strided-batched variant; argument errors.
// Bench (suite bench): GFLOP/s at 512x512x1024 against the machine's FMA peak.
//   build/test_emu -ts=ops -tc='gemm*'
//   build/bench -ts=bench -tc='*gemm*'
#include <doctest/doctest.h>
#include <omp.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "bench_util.h"
#include "common.h"
#include "plain_ref.h"
#include "ref/gemm.h"
#include "test_ref_fd.h"

using pompc::test::fd::Rng;
namespace plain = pompc::test::plain;

namespace {

// Runs one row-major gemm<T> and compares entries (all when small, else a sample that includes
// the last row and column) with the plain double loop (plain::gemm_dot). Tolerance: Higham's bound
// for a recursively summed dot product, |err| <= gamma_{k+2} (|alpha| sum|a||b| + |beta c|) with
// gamma_n = n u / (1 - n u) and u the unit roundoff of T: rigorous, so any indexing or blocking
// error (an O(1) change) fails it.
template <typename T>
bool run_case(Rng& rng, bool ta, bool tb, int m, int n, int k, double alpha, double beta,
              bool nan_c) {
  const int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2;
  std::vector<T> A(static_cast<size_t>(ta ? k : m) * lda), B(static_cast<size_t>(tb ? n : k) * ldb),
      C(static_cast<size_t>(m) * ldc);
  for (T& x : A) x = static_cast<T>(rng.uniform(-1, 1));
  for (T& x : B) x = static_cast<T>(rng.uniform(-1, 1));
  for (T& x : C)
    x = nan_c ? std::numeric_limits<T>::quiet_NaN() : static_cast<T>(rng.uniform(-1, 1));
  // Padding columns of C hold a sentinel that must survive.
  for (int i = 0; i < m; ++i)
    for (int j = n; j < ldc; ++j) C[static_cast<size_t>(i) * ldc + j] = static_cast<T>(7.5);
  const std::vector<T> C0 = C;
  pompc::ref::gemm<T>(ta, tb, m, n, k, static_cast<T>(alpha), A.data(), lda, B.data(), ldb,
                      static_cast<T>(beta), C.data(), ldc);
  const double u = std::numeric_limits<T>::epsilon() / 2;
  const double gamma = (k + 2) * u / (1 - (k + 2) * u);
  const bool full = static_cast<double>(m) * n * k <= 2e7;
  std::vector<std::pair<int, int>> entries;
  if (full) {
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) entries.push_back({i, j});
  } else {
    for (int i = 0; i < m; ++i) entries.push_back({i, n - 1});
    for (int j = 0; j < n; ++j) entries.push_back({m - 1, j});
    for (int s = 0; s < 3000; ++s) entries.push_back({rng.index(m), rng.index(n)});
  }
  int bad = 0;
  for (auto [i, j] : entries) {
    const plain::Dot dot = plain::gemm_dot(A.data(), lda, ta, B.data(), ldb, tb, i, j, k);
    double ref = dot.sum;
    const double mag = dot.mag;
    const double c0 = C0[static_cast<size_t>(i) * ldc + j];
    ref = alpha * ref + (beta != 0 ? beta * c0 : 0.0);
    const double tol = gamma * (std::fabs(alpha) * mag + (beta != 0 ? std::fabs(beta * c0) : 0.0)) +
                       std::numeric_limits<T>::denorm_min();
    const double got = C[static_cast<size_t>(i) * ldc + j];
    if (!(std::fabs(got - ref) <= tol) && bad++ < 3)
      std::printf(
          "gemm<%s> ta=%d tb=%d m=%d n=%d k=%d alpha=%g beta=%g: C[%d,%d] = %.9g, plain "
          "%.9g (tol %.3g)\n",
          sizeof(T) == 4 ? "float" : "double", ta, tb, m, n, k, alpha, beta, i, j, got, ref, tol);
  }
  for (int i = 0; i < m; ++i)
    for (int j = n; j < ldc; ++j)
      if (C[static_cast<size_t>(i) * ldc + j] != static_cast<T>(7.5) && bad++ < 3)
        std::printf("gemm: padding C[%d,%d] was written (ldc %d, n %d)\n", i, j, ldc, n);
  return bad == 0;
}

}  // namespace

TEST_SUITE("ops") {
  TEST_CASE("gemm: float and double match the plain loop at sizes 1, 33, 257, every transpose") {
    Rng rng(1);
    const int sizes[] = {1, 33, 257};
    for (int m : sizes)
      for (int n : sizes)
        for (int k : sizes)
          for (int t = 0; t < 4; ++t) {
            const bool ta = t & 1, tb = t & 2;
            CAPTURE(m);
            CAPTURE(n);
            CAPTURE(k);
            CHECK(run_case<float>(rng, ta, tb, m, n, k, 1.0, 0.0, false));
            CHECK(run_case<double>(rng, ta, tb, m, n, k, 0.7, -0.3, false));
          }
    // Accumulation (beta = 1) and a negative alpha at sizes that are not multiples of the tile.
    for (int m : {1, 7, 97})
      for (int n : {1, 17, 95})
        for (int k : {1, 5, 515})
          for (int t = 0; t < 4; ++t) {
            CAPTURE(m);
            CAPTURE(n);
            CAPTURE(k);
            CHECK(run_case<float>(rng, t & 1, t & 2, m, n, k, -0.7, 1.0, false));
          }
  }

  TEST_CASE("gemm: 1025-ish sizes, several chunks and K blocks, beta = 0 ignores NaN in C") {
    Rng rng(2);
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      CHECK(run_case<float>(rng, ta, tb, 1025, 1031, 1029, 1.0, 0.0, true));
      CHECK(run_case<float>(rng, ta, tb, 131, 1025, 800, -0.5, 1.0, false));
      CHECK(run_case<float>(rng, ta, tb, 1029, 45, 390, 0.7, -0.3, false));
    }
    CHECK(run_case<double>(rng, true, false, 1025, 40, 1025, 1.0, 0.5, false));
    // More than one packed chunk in n (2048 columns) and in depth (4 blocks of <= 512).
    CHECK(run_case<float>(rng, false, true, 5, 2085, 3100, 1.0, 0.5, false));
    CHECK(run_case<float>(rng, true, false, 30, 2049, 3500, -1.0, 0.0, true));
  }

  TEST_CASE("gemm: the real layer shapes (B = 256, Z + A = 550, M = 512, K = 101)") {
    Rng rng(3);
    CHECK(run_case<float>(rng, false, true, 256, 512, 550, 1.0, 1.0, false));   // forward
    CHECK(run_case<float>(rng, false, false, 256, 550, 512, 1.0, 1.0, false));  // dinp
    CHECK(run_case<float>(rng, true, false, 512, 550, 256, 1.0, 1.0, false));   // dweight
    CHECK(run_case<float>(rng, false, true, 512, 101, 512, 1.0, 0.0, true));    // planner N x K
  }

  TEST_CASE("gemm: k == 0 or alpha == 0 scales C by beta and reads neither A nor B") {
    std::vector<float> C = {1, 2, std::numeric_limits<float>::quiet_NaN(), 4};
    pompc::ref::gemm<float>(false, false, 2, 2, 0, 1.0f, nullptr, 1, nullptr, 2, 0.0f, C.data(), 2);
    CHECK(C == std::vector<float>{0, 0, 0, 0});
    C = {1, 2, 3, 4};
    pompc::ref::gemm<float>(true, true, 2, 2, 5, 0.0f, nullptr, 2, nullptr, 5, 2.0f, C.data(), 2);
    CHECK(C == std::vector<float>{2, 4, 6, 8});
    C = {1, 2, 3, 4};
    pompc::ref::gemm<float>(false, false, 0, 2, 3, 1.0f, nullptr, 3, nullptr, 2, 0.0f, C.data(), 2);
    CHECK(C == std::vector<float>{1, 2, 3, 4});  // m == 0: nothing happens
  }

  TEST_CASE("gemm_colmajor: cuBLAS Sgemm semantics against the plain loop") {
    Rng rng(4);
    const char ops[][2] = {{'N', 'N'}, {'T', 'n'}, {'n', 'T'}, {'C', 't'}};
    const std::array<int, 3> shapes[] = {{1, 1, 1}, {33, 7, 257}, {257, 33, 40}, {64, 130, 513}};
    for (auto [m, n, k] : shapes)
      for (const auto& op : ops) {
        const bool ta = op[0] != 'N' && op[0] != 'n', tb = op[1] != 'N' && op[1] != 'n';
        const int lda = (ta ? k : m) + 2, ldb = (tb ? n : k) + 3, ldc = m + 1;
        std::vector<float> A(static_cast<size_t>(lda) * (ta ? m : k)),
            B(static_cast<size_t>(ldb) * (tb ? k : n)), C(static_cast<size_t>(ldc) * n);
        for (float& x : A) x = static_cast<float>(rng.uniform(-1, 1));
        for (float& x : B) x = static_cast<float>(rng.uniform(-1, 1));
        for (float& x : C) x = static_cast<float>(rng.uniform(-1, 1));
        const std::vector<float> C0 = C;
        pompc::ref::gemm_colmajor<float>(op[0], op[1], m, n, k, 0.5f, A.data(), lda, B.data(), ldb,
                                         2.0f, C.data(), ldc);
        int bad = 0;
        for (int j = 0; j < n; ++j)
          for (int i = 0; i < ldc; ++i) {
            const size_t at_ij = static_cast<size_t>(j) * ldc + i;
            // rows i >= m of each column are padding and must be untouched; a column-major
            // matrix is the row-major storage of its transpose, hence !ta, !tb
            const double ref =
                i < m ? 0.5 * plain::gemm_dot(A.data(), lda, !ta, B.data(), ldb, !tb, i, j, k).sum +
                            2.0 * C0[at_ij]
                      : C0[at_ij];
            // fp32 sum of k products of magnitude <= 1, plus the beta term: k * 2^-23 bound
            if (!(std::fabs(C[at_ij] - ref) <= (k + 4) * 1.2e-7 * (1 + std::fabs(ref))) &&
                bad++ < 3)
              std::printf("gemm_colmajor %c%c m=%d n=%d k=%d: C(%d,%d) = %.8g, want %.8g\n", op[0],
                          op[1], m, n, k, i, j, C[at_ij], ref);
          }
        CHECK(bad == 0);
      }
  }

  TEST_CASE("gemm_strided_batched: each entry equals its own gemm; stride 0 shares an operand") {
    Rng rng(5);
    const int m = 33, n = 45, k = 70, batch = 5;
    std::vector<float> A(static_cast<size_t>(batch) * m * k), B(static_cast<size_t>(k) * n),
        C(static_cast<size_t>(batch) * m * n), want(C.size());
    for (float& x : A) x = static_cast<float>(rng.uniform(-1, 1));
    for (float& x : B) x = static_cast<float>(rng.uniform(-1, 1));
    for (float& x : C) x = static_cast<float>(rng.uniform(-1, 1));
    want = C;
    for (int i = 0; i < batch; ++i)
      pompc::ref::gemm<float>(false, false, m, n, k, 1.5f, A.data() + i * m * k, k, B.data(), n,
                              0.5f, want.data() + i * m * n, n);
    pompc::ref::gemm_strided_batched<float>(false, false, m, n, k, 1.5f, A.data(), k, m * k,
                                            B.data(), n, 0, 0.5f, C.data(), n, m * n, batch);
    CHECK(C == want);  // the same products in the same order: bitwise equal
  }

  TEST_CASE("gemm: bad arguments throw pompc::Error naming the fix") {
    std::vector<float> A(64), B(64), C(64);
    auto message = [](auto&& fn) {
      try {
        fn();
      } catch (const pompc::Error& e) {
        return std::string(e.what());
      }
      return std::string("(no error)");
    };
    // A is [4, 8] untransposed: lda must be >= k = 8.
    CHECK(message([&] {
            pompc::ref::gemm<float>(false, false, 4, 4, 8, 1, A.data(), 4, B.data(), 4, 0, C.data(),
                                    4);
          }).find("lda (4) must be >= max(1, 8)") != std::string::npos);
    CHECK(message([&] {
            pompc::ref::gemm_colmajor<float>('X', 'N', 2, 2, 2, 1, A.data(), 2, B.data(), 2, 0,
                                             C.data(), 2);
          }).find("transa must be 'N' or 'T'") != std::string::npos);
    CHECK(message([&] {
            pompc::ref::gemm_colmajor<float>('N', 'N', 4, 2, 2, 1, A.data(), 4, B.data(), 2, 0,
                                             C.data(), 3);
          }).find("ldc (3) must be >= max(1, m = 4)") != std::string::npos);
    CHECK(message([&] {
            pompc::ref::gemm_strided_batched<float>(false, false, 2, 2, 2, 1, A.data(), 2, 4,
                                                    B.data(), 2, 4, 0, C.data(), 2, 3, 2);
          }).find("do not overlap") != std::string::npos);
  }
}

TEST_SUITE("bench") {
  TEST_CASE("bench gemm: reference 512x512x1024 against the FMA peak") {
    Rng rng(6);
    const double peak = pompc::test::host_fma_peak_gflops();
    const double mhz = pompc::test::host_cpuinfo_mhz();
    const int kLanes = pompc::test::kHostLanes;
    const int threads = omp_get_max_threads();
    // cpuinfo peak: threads x clock x 2 FMA pipes x lanes x 2 FLOP (two FMA pipes of the native
    // width, as on the AMD EPYCs seen here: Zen 5 with AVX-512, Zen 2/3 with AVX2; the VM
    // reports its base clock).
    const double cpuinfo_peak = threads * mhz * 1e-3 * 2 * kLanes * 2;
    std::printf(
        "bench: ref/fma_peak %d threads: %.1f GFLOP/s measured; %.1f GFLOP/s from "
        "/proc/cpuinfo (%d x %.0f MHz x %d FLOP/cycle)\n",
        threads, peak, cpuinfo_peak, threads, mhz, 4 * kLanes);
    struct Shape {
      const char* name;
      bool ta, tb;
      int m, n, k;
    } shapes[] = {
        {"512x512x1024", false, false, 512, 512, 1024},
        {"512x512x1024 (A^T B^T)", true, true, 512, 512, 1024},
        {"linear fwd B=256 550->512", false, true, 256, 512, 550},
        {"linear dW 512x550 over B=256", true, false, 512, 550, 256},
    };
    for (const Shape& s : shapes) {
      std::vector<float> A(static_cast<size_t>(s.m) * s.k), B(static_cast<size_t>(s.k) * s.n),
          C(static_cast<size_t>(s.m) * s.n);
      for (float& x : A) x = static_cast<float>(rng.uniform(-1, 1));
      for (float& x : B) x = static_cast<float>(rng.uniform(-1, 1));
      const int lda = s.ta ? s.m : s.k, ldb = s.tb ? s.k : s.n;
      const double ms = pompc::test::time_ms(
          [&] {
            pompc::ref::gemm<float>(s.ta, s.tb, s.m, s.n, s.k, 1.0f, A.data(), lda, B.data(), ldb,
                                    0.0f, C.data(), s.n);
          },
          20);
      const double gflops = 2.0 * s.m * s.n * s.k / (ms * 1e6);
      std::printf(
          "bench: ref/gemm %s: %.3f ms, %.1f GFLOP/s (%.0f%% of measured peak %.0f, "
          "%.0f%% of cpuinfo peak %.0f)\n",
          s.name, ms, gflops, 100 * gflops / peak, peak, 100 * gflops / cpuinfo_peak, cpuinfo_peak);
      // A figure, not a verdict (a busy machine would fail any timing bound): flagged in the
      // output when the square-ish GEMM falls under half of the lower peak.
      if (s.m == 512 && !s.ta && gflops < 0.5 * std::min(peak, cpuinfo_peak))
        std::printf("bench: ref/gemm %s: below half of peak (a shared machine, or a regression)\n",
                    s.name);
    }
  }
}
