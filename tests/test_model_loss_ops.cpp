// The loss-glue ops (src/ref/loss.h, kernels/loss.cu): the reference against closed forms, then
// the CUDA kernels against the reference at sizes 1, 33, 1025 and 5000 (not multiples of a warp;
// 5000 ~ Qn B (H+1) at the 5M size with B = 256); discounted_sum bit-for-bit the fill +
// scale_add chain it fuses, on both backends; two_hot_inv_pair bit for bit two_hot_inv then
// pair_select; soft_ce_heads bit for bit one soft_ce per head; mse_segments one mse per segment.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <vector>

#include "common.h"
#include "ops.h"
#include "ref/loss.h"
#include "ref/two_hot.h"
#include "test_util.h"

namespace {

using pompc::Ops;
using pompc::PairMode;
using pompc::test::check_close;
using pompc::test::normals;
using Array = pompc::test::BackendArray<float>;

}  // namespace

TEST_SUITE("ops") {
  TEST_CASE("loss: reference fill, scale_add and weighted_sum against closed forms") {
    std::vector<float> x = {1.0f, -2.0f, 3.0f, 0.5f};
    pompc::ref::fill(x.data(), 3, 7.0f);
    CHECK(x == std::vector<float>{7.0f, 7.0f, 7.0f, 0.5f});

    const std::vector<float> a = {1.0f, -2.0f, 4.0f};
    std::vector<float> y = {NAN, NAN, NAN};  // beta = 0: y is not read
    const float div = 2.0f;
    pompc::ref::scale_add(y.data(), a.data(), 3, 3.0f, &div, 0.0f);
    CHECK(y == std::vector<float>{1.5f, -3.0f, 6.0f});
    pompc::ref::scale_add(y.data(), a.data(), 3, 1.0f, static_cast<const float*>(nullptr), 2.0f);
    CHECK(y == std::vector<float>{4.0f, -8.0f, 16.0f});

    // discounted_sum: x [T = 3, n = 2], out overwritten (NaN not read).
    const std::vector<float> terms = {1.0f, -2.0f, 4.0f, 8.0f, 0.5f, -0.25f};
    std::vector<float> g = {NAN, NAN};
    pompc::ref::discounted_sum(g.data(), terms.data(), 2,
                               pompc::TermWeights{3, {1.0f, 0.5f, 2.0f}});
    CHECK(g == std::vector<float>{1.0f + 2.0f + 1.0f, -2.0f + 4.0f - 0.5f});
    pompc::ref::discounted_sum(g.data(), terms.data(), 2, pompc::TermWeights{});
    CHECK(g == std::vector<float>{0.0f, 0.0f});  // no terms: +0
    CHECK_THROWS_WITH_AS(
        pompc::ref::discounted_sum(g.data(), terms.data(), 2, pompc::TermWeights{18, {}}),
        doctest::Contains("at most 17"), pompc::Error);

    const std::vector<float> w = {0.5f, 0.25f, 1.0f};
    float out = NAN;
    pompc::ref::weighted_sum(&out, a.data(), w.data(), 3, 2.0f, &div, 0.0f);
    CHECK(out == doctest::Approx((0.5 - 0.5 + 4.0) * 2.0 / 2.0));
    pompc::ref::weighted_sum(&out, a.data(), static_cast<const float*>(nullptr), 3, -1.0f,
                             static_cast<const float*>(nullptr), 1.0f);
    CHECK(out == doctest::Approx(4.0 - 3.0));
    float empty = NAN;
    pompc::ref::weighted_sum(&empty, a.data(), w.data(), 0, 1.0f,
                             static_cast<const float*>(nullptr), 0.0f);
    CHECK(empty == 0.0f);
  }

  TEST_CASE("loss: pick_pair gives two distinct heads, every ordered pair about equally often") {
    for (int Qn : {2, 5, 8}) {
      CAPTURE(Qn);
      std::vector<int> count(static_cast<size_t>(Qn * Qn), 0);
      const int draws = 20000;
      for (int k = 0; k < draws; ++k) {
        int i = -1, j = -1;
        pompc::pick_pair(Qn, 3, static_cast<uint64_t>(k), &i, &j);
        REQUIRE(i >= 0);
        REQUIRE(i < Qn);
        REQUIRE(j >= 0);
        REQUIRE(j < Qn);
        REQUIRE(i != j);
        count[static_cast<size_t>(i * Qn + j)]++;
      }
      // Each of the Qn (Qn - 1) ordered pairs: binomial with mean m; 5 sigma bounds.
      const double m = static_cast<double>(draws) / (Qn * (Qn - 1)), sd = std::sqrt(m);
      for (int i = 0; i < Qn; ++i)
        for (int j = 0; j < Qn; ++j)
          if (i != j) CHECK(std::fabs(count[static_cast<size_t>(i * Qn + j)] - m) < 5 * sd);
    }
  }

  TEST_CASE("loss: reference pair_select min / avg, ties, NaN, and the backward routing") {
    const int Qn = 4, rows = 5;
    int hi = 0, hj = 0;
    pompc::pick_pair(Qn, 9, 17, &hi, &hj);
    std::vector<float> q(static_cast<size_t>(Qn * rows), 100.0f);
    const float vi[rows] = {1.0f, 5.0f, 2.0f, NAN, 3.0f};
    const float vj[rows] = {2.0f, 4.0f, 2.0f, 1.0f, NAN};
    for (int r = 0; r < rows; ++r) {
      q[static_cast<size_t>(hi * rows + r)] = vi[r];
      q[static_cast<size_t>(hj * rows + r)] = vj[r];
    }
    std::vector<float> mn(rows), avg(rows);
    pompc::ref::pair_select_forward(mn.data(), q.data(), Qn, rows, PairMode::min, 9, 17);
    pompc::ref::pair_select_forward(avg.data(), q.data(), Qn, rows, PairMode::avg, 9, 17);
    CHECK(mn[0] == 1.0f);
    CHECK(mn[1] == 4.0f);
    CHECK(mn[2] == 2.0f);
    CHECK(std::isnan(mn[3]));
    CHECK(std::isnan(mn[4]));
    CHECK(avg[0] == 1.5f);
    CHECK(avg[1] == 4.5f);
    // Backward: min routes to the head taken (a tie to head i), avg halves to both.
    const std::vector<float> dout = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f};
    std::vector<float> dq(static_cast<size_t>(Qn * rows), 0.5f);
    pompc::ref::pair_select_backward(dq.data(), dout.data(), q.data(), Qn, rows, PairMode::min, 9,
                                     17);
    auto at = [&](int h, int r) { return dq[static_cast<size_t>(h * rows + r)]; };
    CHECK(at(hi, 0) == 1.5f);
    CHECK(at(hj, 0) == 0.5f);
    CHECK(at(hi, 1) == 0.5f);
    CHECK(at(hj, 1) == 2.5f);
    CHECK(at(hi, 2) == 3.5f);  // tie: head i
    CHECK(at(hj, 2) == 0.5f);
    CHECK(at(hi, 3) == 4.5f);  // NaN taken from head i
    CHECK(at(hj, 4) == 5.5f);  // NaN taken from head j
    for (int h = 0; h < Qn; ++h)
      if (h != hi && h != hj)
        for (int r = 0; r < rows; ++r) CHECK(at(h, r) == 0.5f);  // untouched
    std::fill(dq.begin(), dq.end(), 0.0f);
    pompc::ref::pair_select_backward(dq.data(), dout.data(), q.data(), Qn, rows, PairMode::avg, 9,
                                     17);
    for (int r = 0; r < rows; ++r) {
      CHECK(at(hi, r) == dout[static_cast<size_t>(r)] / 2);
      CHECK(at(hj, r) == dout[static_cast<size_t>(r)] / 2);
    }
    CHECK_THROWS_WITH_AS(
        pompc::ref::pair_select_forward(mn.data(), q.data(), 1, rows, PairMode::min, 9, 17),
        doctest::Contains("Qn (1) must be >= 2"), pompc::Error);
  }

  TEST_CASE("loss: gather_pair copies pair_select's two heads, lower first, on both backends") {
    // Three tensors of an ensemble of Qn heads (per-head sizes 7, 1 and 300), laid out one after
    // another from offset 5, gathered into a two-head layout from offset 2.
    auto ref = pompc::make_ref_ops();
    auto gpu = pompc::make_cuda_ops();
    for (int Qn : {2, 5}) {
      CAPTURE(Qn);
      pompc::PairGather g;
      g.Qn = Qn;
      int64_t src = 5, dst = 2;
      for (int64_t n : {7, 1, 300}) {
        g.src[g.tensors] = src;
        g.dst[g.tensors] = dst;
        g.per_head[g.tensors++] = n;
        src += Qn * n;
        dst += 2 * n;
      }
      const auto ens = normals(static_cast<size_t>(src), 7, 1.0f);
      for (uint64_t off : {0u, 1u, 2u, 3u, 4u, 5u}) {
        CAPTURE(off);
        int i = 0, j = 0;
        pompc::pick_pair(Qn, 11, off, &i, &j);
        const int lo = std::min(i, j), hi = std::max(i, j);
        std::vector<float> want(static_cast<size_t>(dst), -1.0f);
        for (int t = 0; t < g.tensors; ++t)
          for (int k = 0; k < 2; ++k)
            for (int64_t e = 0; e < g.per_head[t]; ++e)
              want[static_cast<size_t>(g.dst[t] + k * g.per_head[t] + e)] =
                  ens[static_cast<size_t>(g.src[t] + (k == 0 ? lo : hi) * g.per_head[t] + e)];
        for (pompc::Ops* ops : {ref.get(), gpu.get()}) {
          CAPTURE(ops->description());
          Array e(*ops, ens), d(*ops, std::vector<float>(static_cast<size_t>(dst), -1.0f));
          pompc::test::BackendArray<int32_t> heads(*ops, std::vector<int32_t>{-1, -1});
          ops->gather_pair(d.p, heads.p, e.p, g, 11, off);
          CHECK(heads.get() == std::vector<int32_t>{lo, hi});
          CHECK(d.get() == want);
        }
      }
      g.tensors = 0;
      std::vector<float> none(1);
      int32_t h2[2];
      CHECK_THROWS_WITH_AS(pompc::ref::gather_pair(none.data(), h2, none.data(), g, 11, 0),
                           doctest::Contains("tensors (1 to 16"), pompc::Error);
    }
  }

  TEST_CASE("loss: CUDA kernels match the reference at n = 1, 33, 1025, 5000") {
    auto ref = pompc::make_ref_ops();
    auto gpu = pompc::make_cuda_ops();
    for (int n : {1, 33, 1025, 5000}) {
      CAPTURE(n);
      const size_t un = static_cast<size_t>(n);
      const auto x = normals(un, 1, 1.0f), w = normals(un, 2, 0.1f), y0 = normals(un, 3, 1.0f);
      const std::vector<float> div = {1.7f};
      // fill
      Array fr(*ref, y0), fg(*gpu, y0);
      ref->fill(fr.p, n, 0.25f);
      gpu->fill(fg.p, n, 0.25f);
      CHECK(fg.get() == fr.get());
      // scale_add, both betas, with and without divisor: the same fp32 formula per element.
      Array xr(*ref, x), xg(*gpu, x), yr(*ref, y0), yg(*gpu, y0), dr(*ref, div), dg(*gpu, div);
      ref->scale_add(yr.p, xr.p, n, -0.3f, dr.p, 1.0f);
      gpu->scale_add(yg.p, xg.p, n, -0.3f, dg.p, 1.0f);
      CHECK(yg.get() == yr.get());
      ref->scale_add(yr.p, xr.p, n, 2.0f, nullptr, 0.0f);
      gpu->scale_add(yg.p, xg.p, n, 2.0f, nullptr, 0.0f);
      CHECK(yg.get() == yr.get());
      // discounted_sum over T = 4 terms (the planner's H = 3 rewards and the terminal value, its
      // float gamma^t): bit-for-bit the chain it fuses, fill(0) then one scale_add per term (on
      // both backends), and the reference. A -0 term and a NaN term in element 0 and 1.
      {
        auto terms = normals(4 * un, 7, 3.0f);
        terms[0] = -0.0f;
        if (n > 1) terms[un + 1] = NAN;
        pompc::TermWeights disc{4, {}};
        float gamma = 1.0f;
        for (int t = 0; t < 4; ++t, gamma *= 0.99f) disc.w[t] = gamma;
        Array tr(*ref, terms), tg(*gpu, terms), gr(*ref, y0), gg(*gpu, y0), cr(*ref, y0),
            cg(*gpu, y0);
        ref->discounted_sum(gr.p, tr.p, n, disc);
        gpu->discounted_sum(gg.p, tg.p, n, disc);
        for (auto [ops, c, t] :
             {std::tuple{ref.get(), &cr, &tr}, std::tuple{gpu.get(), &cg, &tg}}) {
          ops->fill(c->p, n, 0.0f);
          for (int k = 0; k < 4; ++k)
            ops->scale_add(c->p, t->p + k * un, n, disc.w[k], nullptr, 1.0f);
        }
        const auto bits = [](const std::vector<float>& v) {  // any NaN as one pattern (a GPU's
          std::vector<uint32_t> b(v.size());                 // are canonical, x86's keep theirs)
          std::memcpy(b.data(), v.data(), v.size() * sizeof(float));
          for (size_t i = 0; i < v.size(); ++i)
            if (std::isnan(v[i])) b[i] = 0x7fffffffu;
          return b;
        };
        CHECK(bits(gr.get()) == bits(cr.get()));
        CHECK(bits(gg.get()) == bits(cg.get()));
        CHECK(bits(gg.get()) == bits(gr.get()));
      }
      // weighted_sum: double sums in a different order, rounded once to float.
      Array wr(*ref, w), wg(*gpu, w), outr(*ref, std::vector<float>{0.5f}),
          outg(*gpu, std::vector<float>{0.5f});
      ref->weighted_sum(outr.p, xr.p, wr.p, n, 0.7f, dr.p, 1.0f);
      gpu->weighted_sum(outg.p, xg.p, wg.p, n, 0.7f, dg.p, 1.0f);
      CHECK(check_close("weighted_sum", outg.get(), outr.get(), 1e-7, 1e-6));
      ref->weighted_sum(outr.p, xr.p, nullptr, n, 1.0f, nullptr, 0.0f);
      gpu->weighted_sum(outg.p, xg.p, nullptr, n, 1.0f, nullptr, 0.0f);
      CHECK(check_close("weighted_sum (w = 1)", outg.get(), outr.get(), 1e-7, 1e-6));
      // pair_select over Qn heads of n rows: selection and routing are exact.
      for (int Qn : {2, 5}) {
        CAPTURE(Qn);
        auto q = normals(static_cast<size_t>(Qn) * un, 4, 3.0f);
        q[0] = q[un];  // a tie in row 0 between heads 0 and 1
        const auto dout = normals(un, 5, 1.0f);
        const auto dq0 = normals(static_cast<size_t>(Qn) * un, 6, 0.1f);
        for (PairMode mode : {PairMode::min, PairMode::avg}) {
          for (uint64_t off : {0u, 1u, 2u}) {
            Array qr(*ref, q), qg(*gpu, q), or_(*ref, std::vector<float>(un)),
                og(*gpu, std::vector<float>(un)), dor(*ref, dout), dog(*gpu, dout), dqr(*ref, dq0),
                dqg(*gpu, dq0);
            ref->pair_select_forward(or_.p, qr.p, Qn, n, mode, 11, off);
            gpu->pair_select_forward(og.p, qg.p, Qn, n, mode, 11, off);
            CHECK(og.get() == or_.get());
            ref->pair_select_backward(dqr.p, dor.p, qr.p, Qn, n, mode, 11, off);
            gpu->pair_select_backward(dqg.p, dog.p, qg.p, Qn, n, mode, 11, off);
            CHECK(dqg.get() == dqr.get());
          }
        }
      }
    }
  }

  TEST_CASE("two_hot_inv_pair: bit for bit two_hot_inv then pair_select, on both backends") {
    // The inference Q's fused op against the two ops it replaces, on each backend: Qn heads of
    // rows logits (a tie between heads 0 and 1 in row 0, a NaN logit in row 1 of head 0), both
    // modes, three Philox offsets (different head pairs).
    const pompc::Bins bins;
    const int K = bins.num_bins;
    auto ref = pompc::make_ref_ops();
    auto gpu = pompc::make_cuda_ops();
    for (int rows : {1, 33, 257}) {
      for (int Qn : {2, 5}) {
        CAPTURE(rows);
        CAPTURE(Qn);
        const size_t RK = static_cast<size_t>(rows) * K;
        auto logits = normals(static_cast<size_t>(Qn) * RK, 8, 2.0f);
        std::copy(logits.begin(), logits.begin() + K, logits.begin() + RK);  // row 0: a tie
        if (rows > 1) logits[static_cast<size_t>(K) + 3] = NAN;
        for (Ops* o : {ref.get(), gpu.get()}) {
          for (PairMode mode : {PairMode::min, PairMode::avg}) {
            for (uint64_t off : {0u, 1u, 2u}) {
              Array l(*o, logits), q(*o, static_cast<size_t>(Qn) * rows),
                  chain(*o, static_cast<size_t>(rows)), fused(*o, static_cast<size_t>(rows));
              o->two_hot_inv_forward(q.p, l.p, nullptr, Qn * rows, bins);
              o->pair_select_forward(chain.p, q.p, Qn, rows, mode, 11, off);
              o->two_hot_inv_pair_forward(fused.p, l.p, nullptr, Qn, rows, bins, mode, 11, off);
              const auto a = chain.get(), b = fused.get();
              CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
            }
          }
        }
      }
    }
  }

  TEST_CASE("a head's bias left to the op reading it: the same bits as the layer adding it") {
    // linear_forward and linear_ensemble_forward add the bias to the finished product (one
    // rounding per logit), so the inference heads that leave their last bias to
    // two_hot_inv_forward, two_hot_inv_pair_forward or policy_head_forward
    // (model::LastBias::leave) read the same values, on both backends. in = 600 spans two
    // of the reference GEMM's depth blocks (a bias added with the first one would differ).
    const pompc::Bins bins;
    const int K = bins.num_bins, rows = 33, Qn = 2;
    const auto same = [](const std::vector<float>& a, const std::vector<float>& b) {
      return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
    };
    auto ref = pompc::make_ref_ops();
    auto gpu = pompc::make_cuda_ops();
    for (Ops* o : {ref.get(), gpu.get()}) {
      for (int in : {40, 600}) {
        CAPTURE(in);
        const size_t RK = size_t(rows) * K;
        const auto x = normals(size_t(rows) * in, 21, 1.0f);
        const auto w = normals(size_t(Qn) * K * in, 22, 0.1f),
                   b = normals(size_t(Qn) * K, 23, 1.0f);
        Array X(*o, x), W(*o, w), B(*o, b), with(*o, Qn * RK), without(*o, Qn * RK);
        Array v1(*o, size_t(rows)), v2(*o, size_t(rows));
        o->linear_forward(with.p, X.p, W.p, B.p, rows, in, K);
        o->linear_forward(without.p, X.p, W.p, nullptr, rows, in, K);
        auto sum = without.get();
        for (size_t i = 0; i < RK; ++i) sum[i] = sum[i] + b[i % size_t(K)];
        const auto got = with.get();
        CHECK(std::memcmp(got.data(), sum.data(), RK * 4) == 0);
        o->two_hot_inv_forward(v1.p, with.p, nullptr, rows, bins);
        o->two_hot_inv_forward(v2.p, without.p, B.p, rows, bins);
        CHECK(same(v1.get(), v2.get()));
        o->linear_ensemble_forward(with.p, X.p, W.p, B.p, Qn, rows, in, K, true);
        o->linear_ensemble_forward(without.p, X.p, W.p, nullptr, Qn, rows, in, K, true);
        for (PairMode mode : {PairMode::min, PairMode::avg}) {
          o->two_hot_inv_pair_forward(v1.p, with.p, nullptr, Qn, rows, bins, mode, 5, 1);
          o->two_hot_inv_pair_forward(v2.p, without.p, B.p, Qn, rows, bins, mode, 5, 1);
          CHECK(same(v1.get(), v2.get()));
        }
        // The policy head (A = 6: raw [rows, 2A], the first 2A rows of W and entries of b), both
        // forms: actions and log_pi.
        const int A = 6;
        o->linear_forward(with.p, X.p, W.p, B.p, rows, in, 2 * A);
        o->linear_forward(without.p, X.p, W.p, nullptr, rows, in, 2 * A);
        for (const pompc::PolicyHead head :
             {pompc::PolicyHead{},
              pompc::PolicyHead{-3, 1, pompc::EntropyForm::paper, pompc::PolicyForm::clamped}}) {
          Array a1(*o, size_t(rows) * A), a2(*o, size_t(rows) * A);
          o->policy_head_forward(a1.p, nullptr, nullptr, v1.p, nullptr, with.p, nullptr, rows, A,
                                 head, 5, 2);
          o->policy_head_forward(a2.p, nullptr, nullptr, v2.p, nullptr, without.p, B.p, rows, A,
                                 head, 5, 2);
          CHECK(same(a1.get(), a2.get()));
          CHECK(same(v1.get(), v2.get()));
        }
      }
    }
  }

  TEST_CASE("soft_ce_heads: bit for bit one soft_ce per head, on both backends") {
    // The value loss's Qn heads against one shared target row each, in one op; the backward
    // accumulates into dlogits with one shared dloss per row.
    const pompc::Bins bins;
    const int K = bins.num_bins;
    auto ref = pompc::make_ref_ops();
    auto gpu = pompc::make_cuda_ops();
    for (int rows : {1, 33, 257}) {
      for (int heads : {1, 5}) {
        CAPTURE(rows);
        CAPTURE(heads);
        const size_t RK = static_cast<size_t>(rows) * K, n = static_cast<size_t>(heads) * RK;
        const auto logits = normals(n, 9, 2.0f), x = normals(rows, 10, 30.0f),
                   dloss = normals(rows, 11, 1.0f), d0 = normals(n, 12, 0.1f);
        for (Ops* o : {ref.get(), gpu.get()}) {
          Array l(*o, logits), xs(*o, x), g(*o, dloss), fl(*o, static_cast<size_t>(heads) * rows),
              pl(*o, static_cast<size_t>(heads) * rows), fd(*o, d0), pd(*o, d0);
          o->soft_ce_heads_forward(fl.p, l.p, xs.p, heads, rows, bins);
          o->soft_ce_heads_backward(fd.p, g.p, l.p, xs.p, heads, rows, bins);
          for (int h = 0; h < heads; ++h) {
            o->soft_ce_forward(pl.p + static_cast<size_t>(h) * rows, l.p + h * RK, xs.p, rows,
                               bins);
            o->soft_ce_backward(pd.p + h * RK, g.p, l.p + h * RK, xs.p, rows, bins);
          }
          const auto a = fl.get(), b = pl.get(), da = fd.get(), db = pd.get();
          CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
          CHECK(std::memcmp(da.data(), db.data(), da.size() * sizeof(float)) == 0);
        }
      }
    }
  }

  TEST_CASE("mse_segments: bit for bit one mse per segment, on both backends") {
    // The consistency loss's H steps in one op: T segments of n, each segment's loss and its
    // accumulated gradient exactly mse_forward's and mse_backward's (n = 1, 33 and 5000; one
    // segment too).
    auto ref = pompc::make_ref_ops();
    auto gpu = pompc::make_cuda_ops();
    for (int n : {1, 33, 5000}) {
      for (int T : {1, 3}) {
        CAPTURE(n);
        CAPTURE(T);
        const size_t tn = static_cast<size_t>(T) * n;
        const auto pred = normals(tn, 13, 1.0f), target = normals(tn, 14, 1.0f),
                   d0 = normals(tn, 15, 0.1f);
        pompc::TermWeights dloss{T, {}};
        for (int t = 0; t < T; ++t) dloss.w[t] = 0.3f / static_cast<float>(t + 1);
        for (Ops* o : {ref.get(), gpu.get()}) {
          Array p(*o, pred), g(*o, target), fl(*o, static_cast<size_t>(T)),
              pl(*o, static_cast<size_t>(T)), fd(*o, d0), pd(*o, d0);
          o->mse_segments_forward(fl.p, p.p, g.p, T, n);
          o->mse_segments_backward(fd.p, p.p, g.p, dloss, n);
          for (int t = 0; t < T; ++t) {
            const size_t at = static_cast<size_t>(t) * n;
            o->mse_forward(pl.p + t, p.p + at, g.p + at, n);
            o->mse_backward(pd.p + at, p.p + at, g.p + at, dloss.w[t], n);
          }
          const auto a = fl.get(), b = pl.get(), da = fd.get(), db = pd.get();
          CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
          CHECK(std::memcmp(da.data(), db.data(), da.size() * sizeof(float)) == 0);
        }
      }
    }
  }
}
