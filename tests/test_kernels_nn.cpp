// Parity of the world-model kernels (kernels/layernorm.cu, two_hot.cu, linear.cu) with their
// reference twins in src/ref/, at shapes chosen to break kernels (1, 33, 257: not multiples of a
// warp) and the real ones (Z = M = 512, K = 101, Qn = 5, B = 256). The same cases run emulated in
// test_emu and on the GPU in test_gpu.
//
// Tolerances: the reference accumulates row sums in double, the kernels in fp32 with warp
// shuffles (a different order), so results agree to a few fp32 ulps of the summed magnitude.
#include <cuda_runtime.h>
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common.cuh"
#include "launchers.h"
#include "ops.h"
#include "philox.cuh"
#include "ref/basic.h"
#include "ref/layernorm.h"
#include "ref/linear.h"
#include "ref/policy.h"
#include "ref/scale.h"
#include "ref/two_hot.h"
#include "test_dev.h"
#include "test_util.h"

namespace {

using pompc::test::check_close;
using pompc::test::normals;

using pompc::test::Dev;

// device_offset: the kernels get the dropout offset 3 as 1 + a base of 2 in device memory (as the
// model passes its per-step offsets), the reference the plain 3.
void layernorm_case(bool simnorm, int rows, int C, int groups, float p,
                    bool device_offset = false) {
  CAPTURE(simnorm);
  CAPTURE(rows);
  CAPTURE(C);
  CAPTURE(groups);
  CAPTURE(p);
  CAPTURE(device_offset);
  const pompc::Dropout dr{p, 11, 3};
  Dev d_base(2);  // 8 bytes: the uint64 base
  const uint64_t base = 2;
  CUDA_CHECK(cudaMemcpy(d_base.p, &base, sizeof base, cudaMemcpyHostToDevice));
  const pompc::Dropout d_dr{
      p, 11,
      device_offset ? pompc::PhiloxOffset(1, reinterpret_cast<const uint64_t*>(d_base.p))
                    : dr.offset};
  const size_t n = static_cast<size_t>(rows) * C, gc = static_cast<size_t>(groups) * C;
  const auto inp = normals(n, 1, 1.0f), bias = normals(gc, 2, 0.1f),
             gamma = normals(gc, 3, 0.2f, 1.0f), beta = normals(gc, 4, 0.1f),
             dout = normals(n, 5, 1.0f);
  // Reference.
  // mean and rstd: at least one element, so that rows = 0 still passes non-null buffers.
  const size_t nstat = static_cast<size_t>(std::max(rows, 1));
  std::vector<float> out(n), mean(nstat), rstd(nstat),
      dinp = normals(n, 6, 0.1f), dbias = normals(gc, 7, 0.1f), dgamma(gc, 0.5f), dbeta(gc, -0.5f);
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
  Dev d_inp(inp), d_bias(bias), d_gamma(gamma), d_beta(beta), d_dout(dout), d_out(n), d_mean(nstat),
      d_rstd(nstat), d_dinp(dinp0), d_dbias(dbias0), d_dgamma(dgamma0), d_dbeta(dbeta0),
      scratch(pompc::cuda::layernorm_backward_scratch(rows, C, groups));
  if (simnorm) {
    pompc::cuda::layernorm_simnorm_forward(d_out.p, d_mean.p, d_rstd.p, d_inp.p, d_bias.p,
                                           d_gamma.p, d_beta.p, rows, C, groups, pompc::RowLayout{},
                                           nullptr);
    pompc::cuda::layernorm_simnorm_backward(d_dinp.p, d_dbias.p, d_dgamma.p, d_dbeta.p, d_dout.p,
                                            d_inp.p, d_bias.p, d_gamma.p, d_beta.p, d_mean.p,
                                            d_rstd.p, rows, C, groups, scratch.p, nullptr);
  } else {
    pompc::cuda::layernorm_mish_forward(d_out.p, d_mean.p, d_rstd.p, d_inp.p, d_bias.p, d_gamma.p,
                                        d_beta.p, rows, C, groups, d_dr, pompc::RowLayout{},
                                        nullptr);
    pompc::cuda::layernorm_mish_backward(d_dinp.p, d_dbias.p, d_dgamma.p, d_dbeta.p, d_dout.p,
                                         d_inp.p, d_bias.p, d_gamma.p, d_beta.p, d_mean.p, d_rstd.p,
                                         rows, C, groups, d_dr, scratch.p, nullptr);
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
    layernorm_case(false, 35, 257, 5, 0.01f, true);
    layernorm_case(false, 66, 512, 1, 0.3f);
    layernorm_case(false, 256, 512, 1, 0.0f);  // B x M at the 5M size
    layernorm_case(false, 0, 33, 1, 0.0f);     // no rows: nothing launched, gradients unchanged
    // 131 rows a group: the param kernel's row chunks of 128 + 3 per group, then the finish pass.
    layernorm_case(false, 3 * 131, 40, 3, 0.01f, true);
  }

  TEST_CASE("layernorm forward into a strided RowLayout: the dense rows' bits, gaps untouched") {
    // Two groups of R rows written with a row stride and a group stride (the rollout's layouts:
    // [z | a] rows, each step's reward rows beside the other steps'): every row holds the bits
    // the dense call gives it, and every float between rows keeps its sentinel. Both backends,
    // both activations.
    const int G = 2, R = 37, C = 40, ld = C + 7;
    const int64_t gs = int64_t{3} * R * ld;  // room for three groups: the second starts 3 R rows on
    const size_t n = size_t(G) * R * C, gc = size_t(G) * C, span = size_t(gs) + size_t(R) * ld;
    const auto inp = normals(n, 1, 1.0f), bias = normals(gc, 2, 0.1f),
               gamma = normals(gc, 3, 0.2f, 1.0f), beta = normals(gc, 4, 0.1f);
    auto ref = pompc::make_ref_ops();
    auto gpu = pompc::make_cuda_ops();
    for (pompc::Ops* ops : {ref.get(), gpu.get()}) {
      for (bool simnorm : {false, true}) {
        CAPTURE(ops->description());
        CAPTURE(simnorm);
        using A = pompc::test::BackendArray<float>;
        A x(*ops, inp), b(*ops, bias), g(*ops, gamma), be(*ops, beta), dense(*ops, n),
            strided(*ops, std::vector<float>(span, -7.0f));
        auto run = [&](float* out, const pompc::RowLayout& rows) {
          if (simnorm)
            ops->layernorm_simnorm_forward(out, nullptr, nullptr, x.p, b.p, g.p, be.p, G * R, C, G,
                                           rows);
          else
            ops->layernorm_mish_forward(out, nullptr, nullptr, x.p, b.p, g.p, be.p, G * R, C, G,
                                        pompc::Dropout{}, rows);
        };
        run(dense.p, pompc::RowLayout{});
        run(strided.p, pompc::RowLayout{ld, gs});
        const std::vector<float> d = dense.get(), s = strided.get();
        std::vector<float> want(span, -7.0f);
        for (int r = 0; r < G * R; ++r)
          std::copy_n(d.begin() + int64_t{r} * C, C,
                      want.begin() + (r / R) * gs + int64_t{r % R} * ld);
        CHECK(std::memcmp(s.data(), want.data(), span * sizeof(float)) == 0);
      }
    }
    // A row stride below C would overlap rows: refused, naming the stride.
    auto ops = pompc::make_ref_ops();
    pompc::test::BackendArray<float> x(*ops, inp), b(*ops, bias), g(*ops, gamma), be(*ops, beta),
        out(*ops, span);
    CHECK_THROWS_WITH(ops->layernorm_simnorm_forward(out.p, nullptr, nullptr, x.p, b.p, g.p, be.p,
                                                     G * R, C, G, pompc::RowLayout{C - 8, 0}),
                      doctest::Contains("output row stride (32) must be 0 or >= C (40)"));
  }

  TEST_CASE("layernorm_mish: two gathered heads (Dropout::heads) drop what they drop among all") {
    // Qn = 5 groups of R rows with dropout; heads 1 and 3 run alone as a two-group layer (their
    // rows, biases and LayerNorm parameters copied out) with heads = {1, 3}: out and dinp equal
    // those heads' rows of the whole layer bit for bit, on both backends.
    const int Qn = 5, R = 37, C = 72;
    const int32_t pick[2] = {1, 3};
    const size_t RC = static_cast<size_t>(R) * C, uC = static_cast<size_t>(C);
    const auto inp = normals(Qn * RC, 1, 1.0f), bias = normals(Qn * uC, 2, 0.1f),
               gamma = normals(Qn * uC, 3, 0.2f, 1.0f), beta = normals(Qn * uC, 4, 0.1f),
               dout = normals(Qn * RC, 5, 1.0f);
    auto two = [&](const std::vector<float>& v, size_t per) {
      std::vector<float> o;
      for (int32_t h : pick) o.insert(o.end(), v.begin() + h * per, v.begin() + (h + 1) * per);
      return o;
    };
    auto ref = pompc::make_ref_ops();
    auto gpu = pompc::make_cuda_ops();
    for (pompc::Ops* ops : {ref.get(), gpu.get()}) {
      CAPTURE(ops->description());
      using A = pompc::test::BackendArray<float>;
      pompc::test::BackendArray<int32_t> heads(*ops, std::vector<int32_t>{pick[0], pick[1]});
      const pompc::Dropout all{0.3f, 11, 3};
      pompc::Dropout pair = all;
      pair.heads = heads.p;
      A i5(*ops, inp), b5(*ops, bias), g5(*ops, gamma), be5(*ops, beta), d5(*ops, dout),
          o5(*ops, Qn * RC), m5(*ops, Qn * R), r5(*ops, Qn * R),
          di5(*ops, std::vector<float>(Qn * RC, 0.0f));
      A i2(*ops, two(inp, RC)), b2(*ops, two(bias, uC)), g2(*ops, two(gamma, uC)),
          be2(*ops, two(beta, uC)), d2(*ops, two(dout, RC)), o2(*ops, 2 * RC), m2(*ops, 2 * R),
          r2(*ops, 2 * R), di2(*ops, std::vector<float>(2 * RC, 0.0f));
      ops->layernorm_mish_forward(o5.p, m5.p, r5.p, i5.p, b5.p, g5.p, be5.p, Qn * R, C, Qn, all);
      ops->layernorm_mish_forward(o2.p, m2.p, r2.p, i2.p, b2.p, g2.p, be2.p, 2 * R, C, 2, pair);
      ops->layernorm_mish_backward(di5.p, nullptr, nullptr, nullptr, d5.p, i5.p, b5.p, g5.p, be5.p,
                                   m5.p, r5.p, Qn * R, C, Qn, all);
      ops->layernorm_mish_backward(di2.p, nullptr, nullptr, nullptr, d2.p, i2.p, b2.p, g2.p, be2.p,
                                   m2.p, r2.p, 2 * R, C, 2, pair);
      CHECK(o2.get() == two(o5.get(), RC));
      CHECK(di2.get() == two(di5.get(), RC));
      // Without heads the two groups would draw heads 0 and 1's masks: a different output.
      ops->layernorm_mish_forward(o2.p, m2.p, r2.p, i2.p, b2.p, g2.p, be2.p, 2 * R, C, 2, all);
      CHECK(o2.get() != two(o5.get(), RC));
    }
  }

  TEST_CASE("layernorm_simnorm: cuda matches the reference") {
    layernorm_case(true, 1, 8, 1, 0.0f);
    layernorm_case(true, 33, 136, 1, 0.0f);
    layernorm_case(true, 30, 264, 3, 0.0f);
    layernorm_case(true, 256, 512, 1, 0.0f);  // B x Z at the 5M size
    layernorm_case(true, 2 * 257, 72, 2, 0.0f);  // 257 rows a group: chunks of 128 + 128 + 1
  }

  TEST_CASE("two_hot: soft_ce and two_hot_inv, cuda matches the reference") {
    const pompc::Bins bins;
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
      pompc::ref::two_hot_inv_forward<float>(inv.data(), logits.data(), nullptr, rows, bins);
      pompc::ref::two_hot_inv_backward(dl2.data(), dloss.data(), logits.data(), rows, bins);
      Dev d_logits(logits), d_x(x), d_dloss(dloss), d_loss(rows), d_inv(rows),
          d_dl1(normals(static_cast<size_t>(rows) * K, 4, 0.1f)),
          d_dl2(normals(static_cast<size_t>(rows) * K, 4, 0.1f));
      pompc::cuda::soft_ce_forward(d_loss.p, d_logits.p, d_x.p, rows, bins, nullptr);
      pompc::cuda::soft_ce_backward(d_dl1.p, d_dloss.p, d_logits.p, d_x.p, rows, bins, nullptr);
      pompc::cuda::two_hot_inv_forward(d_inv.p, d_logits.p, nullptr, rows, bins, nullptr);
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
    // B = 0: no rows (the bias gradients gain 0); B = 300 with 40 columns in 3 groups: the bias
    // gradient kernel's 8-row steps and remainder rows, a partial column tile.
    for (const Shape s :
         {Shape{1, 1, 1, 1, false}, Shape{1, 33, 33, 257, false}, Shape{1, 256, 512, 512, false},
          Shape{5, 33, 38 + 512, 512, true}, Shape{5, 256, 512, 101, false},
          Shape{1, 0, 7, 65, false}, Shape{3, 300, 20, 40, false}}) {
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
        pompc::cuda::linear_forward(h, d_out.p, d_inp.p, d_w.p, d_b.p, s.B, s.in, s.out, 0,
                                    nullptr);
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

  TEST_CASE("strided rows: linear_forward reads them, policy_head_forward writes them") {
    // What the planner's value does on [z, a] rows (stride Z + A): the policy reads z out of
    // them (linear_forward's ld_inp) and writes its action beside it (policy_head_forward's
    // action_ld). Each gives the dense call's bits; the floats it does not own keep theirs.
    // Both backends, both policy forms.
    const int B = 37, Z = 24, A = 6, ZA = Z + A, M = 20;
    const auto zs = normals(size_t(B) * ZA, 1, 1.0f), w = normals(size_t(M) * Z, 2, 0.2f),
               bias = normals(size_t(M), 3, 0.1f), raw = normals(size_t(B) * 2 * A, 4, 1.0f);
    std::vector<float> z_dense(size_t(B) * Z);
    for (int r = 0; r < B; ++r)
      std::copy_n(zs.begin() + int64_t{r} * ZA, Z, z_dense.begin() + int64_t{r} * Z);
    auto ref = pompc::make_ref_ops();
    auto gpu = pompc::make_cuda_ops();
    for (pompc::Ops* ops : {ref.get(), gpu.get()}) {
      CAPTURE(ops->description());
      ops->set_tf32(false);
      using Arr = pompc::test::BackendArray<float>;
      Arr x(*ops, zs), xd(*ops, z_dense), W(*ops, w), b(*ops, bias), out(*ops, size_t(B) * M),
          out_d(*ops, size_t(B) * M), r(*ops, raw);
      ops->linear_forward(out.p, x.p, W.p, b.p, B, Z, M, ZA);
      ops->linear_forward(out_d.p, xd.p, W.p, b.p, B, Z, M);
      const std::vector<float> o1 = out.get(), o2 = out_d.get();
      CHECK(std::memcmp(o1.data(), o2.data(), o1.size() * sizeof(float)) == 0);
      for (auto form : {pompc::PolicyForm::squashed, pompc::PolicyForm::clamped}) {
        CAPTURE(static_cast<int>(form));
        pompc::PolicyHead head;
        head.form = form;
        Arr rows(*ops, std::vector<float>(size_t(B) * ZA, -7.0f)), dense(*ops, size_t(B) * A);
        ops->policy_head_forward(rows.p + Z, nullptr, nullptr, nullptr, nullptr, r.p, nullptr, B, A,
                                 head, 9, 2, ZA);
        ops->policy_head_forward(dense.p, nullptr, nullptr, nullptr, nullptr, r.p, nullptr, B, A,
                                 head, 9, 2);
        const std::vector<float> d = dense.get(), got = rows.get();
        std::vector<float> want(size_t(B) * ZA, -7.0f);
        for (int i = 0; i < B; ++i)
          std::copy_n(d.begin() + int64_t{i} * A, A, want.begin() + int64_t{i} * ZA + Z);
        CHECK(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0);
      }
    }
    CHECK_THROWS_WITH(ref->linear_forward(nullptr, nullptr, nullptr, nullptr, B, Z, M, Z - 1),
                      doctest::Contains("the input row stride (23) must be 0 or in [24, 2^31)"));
  }

  TEST_CASE("policy_head: cuda matches the reference, both entropy forms") {
    for (auto form : {pompc::EntropyForm::paper, pompc::EntropyForm::current}) {
      for (int A : {1, 6, 21, 38, 300}) {  // 300: more than one element per thread
        for (int B : {1, 33, 256}) {
          CAPTURE(A);
          CAPTURE(B);
          CAPTURE(static_cast<int>(form));
          pompc::PolicyHead head;
          head.entropy_form = form;
          const size_t nA = static_cast<size_t>(B) * A;
          const auto raw = normals(2 * nA, 1, 1.5f);
          const auto da = normals(nA, 2, 1.0f), dm = normals(nA, 3, 1.0f), dls = normals(nA, 4, 1.0f);
          const auto dlp = normals(B, 5, 1.0f);
          std::vector<float> act(nA), mu(nA), ls(nA), lpi(B), lprob(B), draw = normals(2 * nA, 6, 0.1f);
          const auto draw0 = draw;
          pompc::ref::policy_head_forward<float>(act.data(), mu.data(), ls.data(), lpi.data(),
                                                 lprob.data(), raw.data(), nullptr, B, A, head, 9,
                                                 2);
          pompc::ref::policy_head_backward(draw.data(), da.data(), dm.data(), dls.data(), dlp.data(),
                                           raw.data(), B, A, head, 9, 2);
          Dev d_raw(raw), d_da(da), d_dm(dm), d_dls(dls), d_dlp(dlp), d_act(nA), d_mu(nA), d_ls(nA),
              d_lpi(B), d_lprob(B), d_draw(draw0);
          pompc::cuda::policy_head_forward(d_act.p, d_mu.p, d_ls.p, d_lpi.p, d_lprob.p, d_raw.p,
                                           nullptr, B, A, head, 9, 2, 0, nullptr);
          pompc::cuda::policy_head_backward(d_draw.p, d_da.p, d_dm.p, d_dls.p, d_dlp.p, d_raw.p, B, A,
                                            head, 9, 2, nullptr);
          // The same Philox words; the kernels' float Box-Muller moves eps by <= 12 u |eps|
          // (kernels/philox.cuh), entering each output through a product (exp(log_std) eps, eps^2)
          // with float tanh/exp/log's ulp or two between libm and CUDA.
          CHECK(check_close("action", d_act.host(), act, 1e-6, 1e-5));
          CHECK(check_close("mu", d_mu.host(), mu, 1e-6, 1e-5));
          CHECK(check_close("log_std", d_ls.host(), ls, 1e-5, 1e-5));
          // Sums over A terms (a tree order in the kernels, reduce.cuh row_sum), the paper form
          // scaled by A: a few ulps of A * |row sum|.
          CHECK(check_close("log_prob", d_lprob.host(), lprob, 1e-3, 1e-4));
          CHECK(check_close("log_pi", d_lpi.host(), lpi, 1e-2, 1e-4));
          CHECK(check_close("draw", d_draw.host(), draw, 1e-3, 1e-3));
        }
      }
    }
  }

  TEST_CASE("basic: concat, mse, cuda matches the reference") {
    for (int rows : {1, 33, 257}) {
      for (auto [n1, n2] : {std::pair{1, 1}, std::pair{512, 38}, std::pair{33, 0}}) {
        CAPTURE(rows);
        CAPTURE(n1);
        CAPTURE(n2);
        const size_t r = static_cast<size_t>(rows);
        const auto x1 = normals(r * n1, 1, 1.0f), x2 = normals(r * n2, 2, 1.0f);
        const auto dout = normals(r * (n1 + n2), 3, 1.0f);
        std::vector<float> out(r * (n1 + n2)), dx1 = normals(r * n1, 4, 0.1f),
                                               dx2 = normals(r * n2, 5, 0.1f);
        Dev d_x1(x1), d_x2(x2), d_dout(dout), d_out(out.size()), d_dx1(dx1), d_dx2(dx2);
        pompc::ref::concat_forward(out.data(), x1.data(), x2.data(), rows, n1, n2);
        pompc::ref::concat_backward(dx1.data(), dx2.data(), dout.data(), rows, n1, n2);
        pompc::cuda::concat_forward(d_out.p, d_x1.p, d_x2.p, rows, n1, n2, nullptr);
        pompc::cuda::concat_backward(d_dx1.p, d_dx2.p, d_dout.p, rows, n1, n2, nullptr);
        CHECK(check_close("concat", d_out.host(), out, 0, 0));  // copies: exact
        CHECK(check_close("dx1", d_dx1.host(), dx1, 0, 0));     // one add each: exact
        CHECK(check_close("dx2", d_dx2.host(), dx2, 0, 0));
      }
      const size_t n = static_cast<size_t>(rows) * 101;
      const auto pred = normals(n, 6, 1.0f), target = normals(n, 7, 1.0f);
      float loss = 0;
      std::vector<float> dpred = normals(n, 9, 0.1f);
      const auto dpred0 = dpred;
      pompc::ref::mse_forward(&loss, pred.data(), target.data(), static_cast<int64_t>(n));
      pompc::ref::mse_backward(dpred.data(), pred.data(), target.data(), 0.7f, static_cast<int64_t>(n));
      Dev d_pred(pred), d_target(target), d_loss(1), d_dpred(dpred0);
      double* scratch = nullptr;
      CUDA_CHECK(cudaMalloc(&scratch, pompc::cuda::kMsePartials * sizeof(double)));
      pompc::cuda::mse_forward(d_loss.p, d_pred.p, d_target.p, static_cast<int64_t>(n), scratch, nullptr);
      pompc::cuda::mse_backward(d_dpred.p, d_pred.p, d_target.p, 0.7f, static_cast<int64_t>(n), nullptr);
      CHECK(d_loss.host()[0] == doctest::Approx(loss).epsilon(1e-6));  // double sums both sides
      CHECK(check_close("dpred", d_dpred.host(), dpred, 1e-7, 1e-6));
      CUDA_CHECK(cudaFree(scratch));
    }
  }

  TEST_CASE("basic: repeat_rows into strided rows, cuda matches the reference, gaps untouched") {
    // Each of S rows repeated N times into rows of stride ldd > cols (the planner's z0 into the
    // rollout's [z, a] rows): row s N + k holds src row s, the ldd - cols floats after it keep
    // their sentinel.
    const int S = 3, N = 5, cols = 7;
    const int64_t ldd = 11;
    const auto src = normals(size_t(S) * cols, 1, 1.0f);
    const size_t span = size_t(S) * N * ldd;
    std::vector<float> want(span, -7.0f), out(span, -7.0f);
    for (int s = 0; s < S; ++s)
      for (int k = 0; k < N; ++k)
        std::copy_n(src.begin() + s * cols, cols, want.begin() + (int64_t{s} * N + k) * ldd);
    pompc::ref::repeat_rows(out.data(), ldd, src.data(), S, N, cols);
    CHECK(check_close("ref", out, want, 0, 0));
    Dev d_src(src), d_out(std::vector<float>(span, -7.0f));
    pompc::cuda::repeat_rows(d_out.p, ldd, d_src.p, S, N, cols, nullptr);
    CHECK(check_close("cuda", d_out.host(), want, 0, 0));
    CHECK_THROWS_WITH(pompc::ref::repeat_rows(out.data(), cols - 1, src.data(), S, N, cols),
                      doctest::Contains("the stride (6) >= cols"));
  }

  TEST_CASE("running_scale: cuda percentiles and update match the reference") {
    for (int n : {1, 2, 33, 256, 1000}) {
      CAPTURE(n);
      auto x = normals(n, 11, 3.0f);
      if (n >= 33) x[7] = x[3];  // ties
      float s_ref = 1.0f;
      std::vector<float> scratch(n);
      for (int step = 0; step < 3; ++step)
        pompc::ref::running_scale_update(&s_ref, x.data(), n, scratch.data());
      Dev d_x(x), d_s(std::vector<float>{1.0f});
      for (int step = 0; step < 3; ++step)
        pompc::cuda::running_scale_update(d_s.p, d_x.p, n, 0.01f, nullptr);
      CHECK(d_s.host()[0] == doctest::Approx(s_ref).epsilon(1e-6));
    }
    // A batch with NaN: the scale becomes NaN on both backends (torch keeps NaN through clamp).
    std::vector<float> x = normals(64, 12, 1.0f);
    x[5] = NAN;
    float s_ref = 1.0f;
    std::vector<float> scratch(64);
    pompc::ref::running_scale_update(&s_ref, x.data(), 64, scratch.data());
    Dev d_x(x), d_s(std::vector<float>{1.0f});
    pompc::cuda::running_scale_update(d_s.p, d_x.p, 64, 0.01f, nullptr);
    CHECK(std::isnan(s_ref) == std::isnan(d_s.host()[0]));
    CHECK_THROWS_WITH_AS(pompc::cuda::running_scale_update(d_s.p, d_x.p, 5000, 0.01f, nullptr),
                         doctest::Contains("must be in [1, 4096]"), pompc::Error);
  }
}
