// Parity of the policy-prior kernels (kernels/prior.cu) with their reference twins
// (src/ref/prior.h), through the Ops interface of both backends (the shipped path), at rows in
// {1, 33, 257} (not multiples of a warp or of the 128-thread block), A in {1, 6, 38, 300} (300:
// more than one element per thread) and S in {1, 8}. The same cases run emulated in test_emu and
// on the GPU in test_gpu.
//
// Tolerances: both sides compute in fp32, the kernels' row sums in a tree order (reduce.cuh
// row_sum) instead of the reference's sequential one; they differ by the ulp or two between
// libm's and CUDA's expf / logf, by fma contraction on the GPU and by the summation order,
// relative to the largest term of a row sum (KL terms reach ~1e3 at sigma_p = 0.05, exp(-2
// log_std) ~ 400). prior_sample's noise is the float Box-Muller (kernels/philox.cuh: within
// 12 u |eps| of the reference's).
//   build/test_emu -ts=ops -tc='prior*cuda*'
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "common.h"
#include "ops.h"
#include "philox.cuh"
#include "test_util.h"

namespace {

using pompc::KlDir;
using pompc::test::check_close;
using Array = pompc::test::BackendArray<float>;

// n reproducible draws uniform in [lo, hi) (Philox: seed, offset 1).
std::vector<float> uniforms(size_t n, uint64_t seed, float lo, float hi) {
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i)
    x[i] = lo + (hi - lo) * static_cast<float>(pompc::philox_u32(seed, 1, i) >> 8) / 16777216.0f;
  return x;
}

}  // namespace

TEST_SUITE("ops") {
  TEST_CASE("prior: gauss_kl and gauss_nll, cuda matches the reference") {
    auto ref = pompc::make_ref_ops();
    auto gpu = pompc::make_cuda_ops();
    for (int rows : {1, 33, 257})
      for (int A : {1, 6, 38, 300}) {
        CAPTURE(rows);
        CAPTURE(A);
        const size_t n = static_cast<size_t>(rows) * A, ur = static_cast<size_t>(rows);
        // The losses' ranges: mu in [-1, 1], log_std in BMPC's [-3, 1], sigma_p in [0.05, 2].
        const auto mu = uniforms(n, 1, -1, 1), ls = uniforms(n, 2, -3, 1),
                   mu_p = uniforms(n, 3, -1, 1), sigma_p = uniforms(n, 4, 0.05f, 2),
                   dout = uniforms(ur, 5, -1, 1), g0 = uniforms(n, 6, -0.1f, 0.1f);
        Array mur(*ref, mu), mug(*gpu, mu), lsr(*ref, ls), lsg(*gpu, ls), mpr(*ref, mu_p),
            mpg(*gpu, mu_p), spr(*ref, sigma_p), spg(*gpu, sigma_p), dor(*ref, dout),
            dog(*gpu, dout), outr(*ref, ur), outg(*gpu, ur);
        for (KlDir dir : {KlDir::reverse, KlDir::forward}) {
          CAPTURE(static_cast<int>(dir));
          ref->gauss_kl_forward(outr.p, mur.p, lsr.p, mpr.p, spr.p, rows, A, dir);
          gpu->gauss_kl_forward(outg.p, mug.p, lsg.p, mpg.p, spg.p, rows, A, dir);
          // A terms of up to ~1e3 summed in fp32: a few ulps of the largest term.
          CHECK(check_close("gauss_kl", outg.get(), outr.get(), 1e-4, 1e-5));
          Array dmr(*ref, g0), dmg(*gpu, g0), dlr(*ref, g0), dlg(*gpu, g0);
          ref->gauss_kl_backward(dmr.p, dlr.p, dor.p, mur.p, lsr.p, mpr.p, spr.p, rows, A, dir);
          gpu->gauss_kl_backward(dmg.p, dlg.p, dog.p, mug.p, lsg.p, mpg.p, spg.p, rows, A, dir);
          // Elementwise: one expf and a division (d / 0.05^2 ~ 800) added to the pre-filled
          // buffer: a few ulps of the gradient.
          CHECK(check_close("gauss_kl dmu", dmg.get(), dmr.get(), 1e-5, 1e-5));
          CHECK(check_close("gauss_kl dlog_std", dlg.get(), dlr.get(), 1e-5, 1e-5));
          // A null gradient is skipped on the GPU as well.
          gpu->gauss_kl_backward(nullptr, dlg.p, dog.p, mug.p, lsg.p, mpg.p, spg.p, rows, A, dir);
          ref->gauss_kl_backward(nullptr, dlr.p, dor.p, mur.p, lsr.p, mpr.p, spr.p, rows, A, dir);
          CHECK(check_close("gauss_kl dlog_std (dmu null)", dlg.get(), dlr.get(), 1e-5, 1e-5));
          CHECK(check_close("gauss_kl dmu untouched", dmg.get(), dmr.get(), 1e-5, 1e-5));
        }
        // gauss_nll at TD-M(PC)^2's min_std, with sigma_p in [0.01, 2] (some entries floored).
        const auto a = uniforms(n, 7, -1, 1), sp_low = uniforms(n, 8, 0.01f, 2);
        Array ar(*ref, a), ag(*gpu, a), slr(*ref, sp_low), slg(*gpu, sp_low), dar(*ref, g0),
            dag(*gpu, g0);
        ref->gauss_nll_forward(outr.p, ar.p, mpr.p, slr.p, rows, A, 0.05f);
        gpu->gauss_nll_forward(outg.p, ag.p, mpg.p, slg.p, rows, A, 0.05f);
        // A (sum of A terms up to 800 each): a few ulps of A * A * 800 ~ 1e6 at A = 38.
        CHECK(check_close("gauss_nll", outg.get(), outr.get(), 1e-3, 1e-5));
        ref->gauss_nll_backward(dar.p, dor.p, ar.p, mpr.p, slr.p, rows, A, 0.05f);
        gpu->gauss_nll_backward(dag.p, dog.p, ag.p, mpg.p, slg.p, rows, A, 0.05f);
        // Elementwise A e / s (up to 38 * 800): fma contraction, a few ulps.
        CHECK(check_close("gauss_nll da", dag.get(), dar.get(), 1e-5, 1e-5));
      }
  }

  TEST_CASE("prior: prior_sample, sample_weights and weighted_nll, cuda matches the reference") {
    auto ref = pompc::make_ref_ops();
    auto gpu = pompc::make_cuda_ops();
    for (int rows : {1, 33, 257})
      for (int A : {1, 6, 38, 300})
        for (int S : {1, 8}) {
          CAPTURE(rows);
          CAPTURE(A);
          CAPTURE(S);
          const size_t n = static_cast<size_t>(rows) * A, ur = static_cast<size_t>(rows),
                       nk = static_cast<size_t>(S) * n, sr = static_cast<size_t>(S) * rows;
          const auto mu_p = uniforms(n, 11, -1, 1), sigma_p = uniforms(n, 12, 0.05f, 2);
          Array mpr(*ref, mu_p), mpg(*gpu, mu_p), spr(*ref, sigma_p), spg(*gpu, sigma_p),
              akr(*ref, nk), akg(*gpu, nk);
          ref->prior_sample(akr.p, mpr.p, spr.p, S, rows, A, 21, 4);
          gpu->prior_sample(akg.p, mpg.p, spg.p, S, rows, A, 21, 4);
          // The same Philox words; eps within 12 u |eps| (the float Box-Muller), times sigma_p
          // with |sigma_p eps| = |a - mu_p| < 2 where not clamped, and mu_p + sigma_p eps may be
          // one fma on the GPU: <= 1 ulp of the product.
          const auto a_k = akr.get();
          CHECK(check_close("prior_sample", akg.get(), a_k, 1e-6, 0));
          // q ~ Qbar values (scale 10), beta in {0.5, 1, 3} (PO-MPC's default 1).
          const auto q = pompc::test::normals(sr, 13, 10.0f);
          Array qr(*ref, q), qg(*gpu, q), wr(*ref, sr), wg(*gpu, sr), zr(*ref, ur), zg(*gpu, ur);
          for (float beta : {0.5f, 1.0f, 3.0f}) {
            CAPTURE(beta);
            ref->sample_weights(wr.p, zr.p, qr.p, S, rows, beta);
            gpu->sample_weights(wg.p, zg.p, qg.p, S, rows, beta);
            // expf differs by an ulp or two; the sum is in the same order: a few ulps of w.
            CHECK(check_close("sample_weights w", wg.get(), wr.get(), 1e-7, 1e-5));
            // m + log(sum) - log S with |m| up to ~80: a few ulps of |m|.
            CHECK(check_close("sample_weights log_z", zg.get(), zr.get(), 1e-5, 1e-5));
          }
          gpu->sample_weights(wg.p, nullptr, qg.p, S, rows, 1.0f);  // log_z may be null
          ref->sample_weights(wr.p, nullptr, qr.p, S, rows, 1.0f);
          CHECK(check_close("sample_weights w (no log_z)", wg.get(), wr.get(), 1e-7, 1e-5));
          // weighted_nll on the reference's samples and weights (identical inputs).
          const auto w = wr.get();
          const auto mu = uniforms(n, 14, -1, 1), ls = uniforms(n, 15, -3, 1),
                     dout = uniforms(ur, 16, -1, 1), g0 = uniforms(n, 17, -0.1f, 0.1f);
          Array a2r(*ref, a_k), a2g(*gpu, a_k), w2r(*ref, w), w2g(*gpu, w), mur(*ref, mu),
              mug(*gpu, mu), lsr(*ref, ls), lsg(*gpu, ls), dor(*ref, dout), dog(*gpu, dout),
              outr(*ref, ur), outg(*gpu, ur), dmr(*ref, g0), dmg(*gpu, g0), dlr(*ref, g0),
              dlg(*gpu, g0);
          ref->weighted_nll_forward(outr.p, a2r.p, w2r.p, mur.p, lsr.p, S, rows, A);
          gpu->weighted_nll_forward(outg.p, a2g.p, w2g.p, mug.p, lsg.p, S, rows, A);
          // S A terms of up to 0.5 (2 / e^-3)^2 ~ 800 each: a few ulps of the largest.
          CHECK(check_close("weighted_nll", outg.get(), outr.get(), 1e-4, 1e-5));
          ref->weighted_nll_backward(dmr.p, dlr.p, dor.p, a2r.p, w2r.p, mur.p, lsr.p, S, rows, A);
          gpu->weighted_nll_backward(dmg.p, dlg.p, dog.p, a2g.p, w2g.p, mug.p, lsg.p, S, rows, A);
          // Sums over S of y / s (up to 800) and y^2 (up to 1600): a few ulps of the largest.
          CHECK(check_close("weighted_nll dmu", dmg.get(), dmr.get(), 1e-4, 1e-5));
          CHECK(check_close("weighted_nll dlog_std", dlg.get(), dlr.get(), 1e-4, 1e-5));
        }
  }

  TEST_CASE(
      "prior: prior_sample's float Box-Muller on the backend is within 12 u of philox_normal") {
    // The device's own logf / log1pf / sqrtf / sincosf (on a GPU; libm's under emulation): a_k =
    // 0 + 0.125 eps is exact and never clamped (|eps| <= 6.7), so 8 a_k is the kernel's eps.
    auto gpu = pompc::make_cuda_ops();
    const int S = 4, rows = 256, A = 256;
    const size_t n = size_t{S} * rows * A, per = size_t{rows} * A;
    Array mu_p(*gpu, std::vector<float>(per, 0.0f)), sigma_p(*gpu, std::vector<float>(per, 0.125f)),
        a_k(*gpu, n);
    gpu->prior_sample(a_k.p, mu_p.p, sigma_p.p, S, rows, A, 77, 5);
    const auto got = a_k.get();
    double worst = 0;
    for (size_t i = 0; i < n; ++i) {
      const double d = pompc::philox_normal(77, 5, i), err = std::fabs(8.0 * got[i] - d);
      // kernels/philox.cuh: |philox_normal_f - philox_normal| <= 12 u |philox_normal| + 1e-14.
      if (err > 1e-14) worst = std::fmax(worst, (err - 1e-14) / (0x1p-24 * std::fabs(d)));
    }
    MESSAGE("prior_sample eps: max |f - d| / (u |d|) " << worst << " over " << n << " draws");
    CHECK(worst <= 12);
  }

  TEST_CASE("prior: exp_forward and scale_gate, cuda matches the reference") {
    auto ref = pompc::make_ref_ops();
    auto gpu = pompc::make_cuda_ops();
    for (int n : {1, 33, 257, 257 * 38}) {
      CAPTURE(n);
      const auto x = uniforms(static_cast<size_t>(n), 31, -10, 2);  // log_std ranges
      Array xr(*ref, x), xg(*gpu, x), yr(*ref, static_cast<size_t>(n)),
          yg(*gpu, static_cast<size_t>(n));
      ref->exp_forward(yr.p, xr.p, n);
      gpu->exp_forward(yg.p, xg.p, n);
      // CUDA's expf is within 2 ulps of the correctly rounded value, libm's within 1.
      CHECK(check_close("exp_forward", yg.get(), yr.get(), 0, 4e-7));
    }
    const float inf = std::numeric_limits<float>::infinity();
    for (float s : {0.5f, 2.0f, 2.0000002f, 7.0f}) {
      CAPTURE(s);
      Array sr(*ref, std::vector<float>{s}), sg(*gpu, std::vector<float>{s}), outr(*ref, 1),
          outg(*gpu, 1);
      ref->scale_gate(outr.p, sr.p, 2.0f);
      gpu->scale_gate(outg.p, sg.p, 2.0f);
      // A comparison and a copy: exact.
      CHECK(outg.get() == outr.get());
      CHECK(outr.get()[0] == (s > 2.0f ? s : inf));
    }
  }
}
