// Parity of the world-model kernels (kernels/layernorm.cu, two_hot.cu, linear.cu) with their
// reference twins in src/ref/, at shapes chosen to break kernels (1, 33, 257: not multiples of a
// warp) and the real ones (Z = M = 512, K = 101, Qn = 5, B = 256). The same cases run emulated in
// test_emu and on the GPU in test_gpu.
//
// Tolerances: the reference accumulates row sums in double, the kernels in fp32 with warp
// shuffles (a different order), so results agree to a few fp32 ulps of the summed magnitude.
#include <cuda_runtime.h>
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "common.cuh"
#include "launchers.h"
#include "philox.cuh"
#include "ref/layernorm.h"
#include "ref/linear.h"
#include "ref/two_hot.h"
#include "test_util.h"

namespace {

using pompc::test::check_close;

std::vector<float> normals(size_t n, uint64_t seed, float scale, float shift = 0.0f) {
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) x[i] = shift + scale * pompc::philox_normal(seed, 0, i);
  return x;
}

// Device copy of a host vector (cudaMalloc'd: real device memory on a GPU).
struct Dev {
  float* p = nullptr;
  size_t n;
  explicit Dev(const std::vector<float>& h) : n(h.size()) {
    CUDA_CHECK(cudaMalloc(&p, (n ? n : 1) * sizeof(float)));
    if (n) CUDA_CHECK(cudaMemcpy(p, h.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  }
  explicit Dev(size_t count) : Dev(std::vector<float>(count, 0.0f)) {}
  ~Dev() { cudaFree(p); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  std::vector<float> host() const {
    std::vector<float> h(n);
    CUDA_CHECK(cudaDeviceSynchronize());
    if (n) CUDA_CHECK(cudaMemcpy(h.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost));
    return h;
  }
};

void layernorm_case(bool simnorm, int rows, int C, int groups, float p) {
  CAPTURE(simnorm);
  CAPTURE(rows);
  CAPTURE(C);
  CAPTURE(groups);
  CAPTURE(p);
  const pompc::ref::Dropout dr{p, 11, 3};
  const size_t n = static_cast<size_t>(rows) * C, gc = static_cast<size_t>(groups) * C;
  const auto inp = normals(n, 1, 1.0f), bias = normals(gc, 2, 0.1f),
             gamma = normals(gc, 3, 0.2f, 1.0f), beta = normals(gc, 4, 0.1f),
             dout = normals(n, 5, 1.0f);
  // Reference.
  std::vector<float> out(n), mean(rows), rstd(rows), dinp = normals(n, 6, 0.1f),
                                                    dbias = normals(gc, 7, 0.1f),
                                                    dgamma(gc, 0.5f), dbeta(gc, -0.5f);
  const auto dinp0 = dinp, dbias0 = dbias, dgamma0 = dgamma, dbeta0 = dbeta;
  if (simnorm) {
    pompc::ref::layernorm_simnorm_forward(out.data(), mean.data(), rstd.data(), inp.data(),
                                          bias.data(), gamma.data(), beta.data(), rows, C, groups);
    pompc::ref::layernorm_simnorm_backward(dinp.data(), dbias.data(), dgamma.data(), dbeta.data(),
                                           dout.data(), inp.data(), bias.data(), gamma.data(),
                                           beta.data(), mean.data(), rstd.data(), rows, C, groups);
  } else {
    pompc::ref::layernorm_mish_forward(out.data(), mean.data(), rstd.data(), inp.data(),
                                       bias.data(), gamma.data(), beta.data(), rows, C, groups, dr);
    pompc::ref::layernorm_mish_backward(dinp.data(), dbias.data(), dgamma.data(), dbeta.data(),
                                        dout.data(), inp.data(), bias.data(), gamma.data(),
                                        beta.data(), mean.data(), rstd.data(), rows, C, groups, dr);
  }
  // CUDA.
  Dev d_inp(inp), d_bias(bias), d_gamma(gamma), d_beta(beta), d_dout(dout), d_out(n),
      d_mean(static_cast<size_t>(rows)), d_rstd(static_cast<size_t>(rows)), d_dinp(dinp0),
      d_dbias(dbias0), d_dgamma(dgamma0), d_dbeta(dbeta0), rowstats(2 * static_cast<size_t>(rows));
  if (simnorm) {
    pompc::cuda::layernorm_simnorm_forward(d_out.p, d_mean.p, d_rstd.p, d_inp.p, d_bias.p,
                                           d_gamma.p, d_beta.p, rows, C, groups, nullptr);
    pompc::cuda::layernorm_simnorm_backward(d_dinp.p, d_dbias.p, d_dgamma.p, d_dbeta.p, d_dout.p,
                                            d_inp.p, d_bias.p, d_gamma.p, d_beta.p, d_mean.p,
                                            d_rstd.p, rows, C, groups, rowstats.p, nullptr);
  } else {
    pompc::cuda::layernorm_mish_forward(d_out.p, d_mean.p, d_rstd.p, d_inp.p, d_bias.p,
                                        d_gamma.p, d_beta.p, rows, C, groups, dr, nullptr);
    pompc::cuda::layernorm_mish_backward(d_dinp.p, d_dbias.p, d_dgamma.p, d_dbeta.p, d_dout.p,
                                         d_inp.p, d_bias.p, d_gamma.p, d_beta.p, d_mean.p,
                                         d_rstd.p, rows, C, groups, dr, rowstats.p, nullptr);
  }
  // fp32 row sums in a different order; rstd can amplify tiny differences when var is small.
  CHECK(check_close("out", d_out.host(), out, 1e-5, 1e-4));
  CHECK(check_close("mean", d_mean.host(), mean, 1e-6, 1e-4));
  CHECK(check_close("rstd", d_rstd.host(), rstd, 1e-6, 1e-4));
  CHECK(check_close("dinp", d_dinp.host(), dinp, 1e-4, 1e-3));
  // Parameter gradients sum over up to 257 rows in fp32 (the reference in double).
  CHECK(check_close("dgamma", d_dgamma.host(), dgamma, 1e-3, 1e-3));
  CHECK(check_close("dbeta", d_dbeta.host(), dbeta, 1e-3, 1e-3));
  CHECK(check_close("dbias", d_dbias.host(), dbias, 1e-3, 1e-3));
}

}  // namespace

TEST_SUITE("ops") {
  TEST_CASE("layernorm_mish: cuda matches the reference") {
    layernorm_case(false, 1, 1, 1, 0.0f);
    layernorm_case(false, 33, 33, 1, 0.0f);
    layernorm_case(false, 35, 257, 5, 0.01f);  // Q ensemble: per-head params, dropout 0.01
    layernorm_case(false, 66, 512, 1, 0.3f);
    layernorm_case(false, 256, 512, 1, 0.0f);  // B x M at the 5M size
  }

  TEST_CASE("layernorm_simnorm: cuda matches the reference") {
    layernorm_case(true, 1, 8, 1, 0.0f);
    layernorm_case(true, 33, 136, 1, 0.0f);
    layernorm_case(true, 30, 264, 3, 0.0f);
    layernorm_case(true, 256, 512, 1, 0.0f);  // B x Z at the 5M size
  }

  TEST_CASE("two_hot: soft_ce and two_hot_inv, cuda matches the reference") {
    const pompc::ref::Bins bins;
    for (int rows : {1, 33, 1025}) {
      CAPTURE(rows);
      const int K = bins.num_bins;
      const auto logits = normals(static_cast<size_t>(rows) * K, 1, 2.0f);
      std::vector<float> x = normals(rows, 2, 50.0f);  // symlog(50) ~ 3.9: spans many bins
      x[0] = 0.0f;                                     // exactly the centre bin
      if (rows > 2) x[1] = 1e6f, x[2] = -3e5f;         // clamped at +-vmax
      const auto dloss = normals(rows, 3, 1.0f);
      std::vector<float> loss(rows), inv(rows), dl1 = normals(static_cast<size_t>(rows) * K, 4, 0.1f);
      auto dl2 = dl1;
      pompc::ref::soft_ce_forward(loss.data(), logits.data(), x.data(), rows, bins);
      pompc::ref::soft_ce_backward(dl1.data(), dloss.data(), logits.data(), x.data(), rows, bins);
      pompc::ref::two_hot_inv_forward(inv.data(), logits.data(), rows, bins);
      pompc::ref::two_hot_inv_backward(dl2.data(), dloss.data(), logits.data(), rows, bins);
      Dev d_logits(logits), d_x(x), d_dloss(dloss), d_loss(rows), d_inv(rows),
          d_dl1(normals(static_cast<size_t>(rows) * K, 4, 0.1f)),
          d_dl2(normals(static_cast<size_t>(rows) * K, 4, 0.1f));
      pompc::cuda::soft_ce_forward(d_loss.p, d_logits.p, d_x.p, rows, bins, nullptr);
      pompc::cuda::soft_ce_backward(d_dl1.p, d_dloss.p, d_logits.p, d_x.p, rows, bins, nullptr);
      pompc::cuda::two_hot_inv_forward(d_inv.p, d_logits.p, rows, bins, nullptr);
      pompc::cuda::two_hot_inv_backward(d_dl2.p, d_dloss.p, d_logits.p, rows, bins, nullptr);
      // Log-sum-exp over 101 logits in fp32 vs double: a few ulps of |loss| ~ 5.
      CHECK(check_close("soft_ce loss", d_loss.host(), loss, 1e-5, 1e-5));
      CHECK(check_close("soft_ce dlogits", d_dl1.host(), dl1, 1e-6, 1e-5));
      // two_hot_inv: m in symlog space then symexp, so relative error grows with exp(|m|).
      CHECK(check_close("two_hot_inv", d_inv.host(), inv, 1e-5, 1e-4));
      CHECK(check_close("two_hot_inv dlogits", d_dl2.host(), dl2, 1e-5, 1e-4));
    }
  }

  TEST_CASE("linear and linear_ensemble: cuda (cuBLAS) matches the reference") {
    cublasHandle_t h;
    CUBLAS_CHECK(cublasCreate(&h));
    CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_PEDANTIC_MATH));  // fp32, no TF32: parity
    struct Shape {
      int Qn, B, in, out;
      bool shared;
    };
    for (const Shape s : {Shape{1, 1, 1, 1, false}, Shape{1, 33, 33, 257, false},
                          Shape{1, 256, 512, 512, false}, Shape{5, 33, 38 + 512, 512, true},
                          Shape{5, 256, 512, 101, false}}) {
      CAPTURE(s.Qn);
      CAPTURE(s.B);
      CAPTURE(s.in);
      CAPTURE(s.out);
      const size_t in_rows = s.shared ? 1 : s.Qn;
      const auto inp = normals(in_rows * s.B * s.in, 1, 1.0f);
      const auto w = normals(static_cast<size_t>(s.Qn) * s.out * s.in, 2, 0.02f);
      const auto b = normals(static_cast<size_t>(s.Qn) * s.out, 3, 0.1f);
      const auto dout = normals(static_cast<size_t>(s.Qn) * s.B * s.out, 4, 1.0f);
      std::vector<float> out(dout.size()), dinp = normals(inp.size(), 5, 0.1f),
                                           dw = normals(w.size(), 6, 0.1f),
                                           db = normals(b.size(), 7, 0.1f);
      Dev d_inp(inp), d_w(w), d_b(b), d_dout(dout), d_out(out.size()), d_dinp(dinp), d_dw(dw),
          d_db(db);
      if (s.Qn == 1) {
        pompc::ref::linear_forward(out.data(), inp.data(), w.data(), b.data(), s.B, s.in, s.out);
        pompc::ref::linear_backward(dinp.data(), dw.data(), db.data(), dout.data(), inp.data(),
                                    w.data(), s.B, s.in, s.out);
        pompc::cuda::linear_forward(h, d_out.p, d_inp.p, d_w.p, d_b.p, s.B, s.in, s.out, nullptr);
        pompc::cuda::linear_backward(h, d_dinp.p, d_dw.p, d_db.p, d_dout.p, d_inp.p, d_w.p, s.B,
                                     s.in, s.out, nullptr);
      } else {
        pompc::ref::linear_ensemble_forward(out.data(), inp.data(), w.data(), b.data(), s.Qn,
                                            s.B, s.in, s.out, s.shared);
        pompc::ref::linear_ensemble_backward(dinp.data(), dw.data(), db.data(), dout.data(),
                                             inp.data(), w.data(), s.Qn, s.B, s.in, s.out,
                                             s.shared);
        pompc::cuda::linear_ensemble_forward(h, d_out.p, d_inp.p, d_w.p, d_b.p, s.Qn, s.B, s.in,
                                             s.out, s.shared, nullptr);
        pompc::cuda::linear_ensemble_backward(h, d_dinp.p, d_dw.p, d_db.p, d_dout.p, d_inp.p,
                                              d_w.p, s.Qn, s.B, s.in, s.out, s.shared, nullptr);
      }
      // fp32 dot products of length up to 550 (forward), 512 (dinp) and 256 (dW) in different
      // orders: errors ~ sqrt(len) ulps of the partial sums' magnitude.
      CHECK(check_close("out", d_out.host(), out, 1e-5, 1e-4));
      CHECK(check_close("dinp", d_dinp.host(), dinp, 1e-5, 1e-4));
      CHECK(check_close("dweight", d_dw.host(), dw, 1e-4, 1e-4));
      CHECK(check_close("dbias", d_db.host(), db, 1e-4, 1e-4));
    }
    CUBLAS_CHECK(cublasDestroy(h));
  }
}
