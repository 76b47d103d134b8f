// Fused bias + dropout + LayerNorm + Mish / SimNorm (src/ref/layernorm.h): forward against the
// plain loop of tests/plain_ref.h, every backward against double central differences (also
// proving accumulation), dropout mask statistics and determinism, Mish values, float vs double at
// the real sizes (B = 256 rows of M = Z = 512, and the Qn = 5 ensemble).
//   build/test_emu -ts=ops -tc='layernorm*,dropout*,mish*'
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "common.h"
#include "plain_ref.h"
#include "ref/layernorm.h"
#include "test_ref_fd.h"

using namespace pompc::test::fd;
using pompc::Dropout;

namespace {

using pompc::test::plain::Act;

template <typename T>
void forward(Act act, T* y, T* mean, T* rstd, const T* x, const T* bias, const T* gamma,
             const T* beta, int rows, int C, int groups, const Dropout& dr) {
  if (act == Act::mish)
    pompc::ref::layernorm_mish_forward<T>(y, mean, rstd, x, bias, gamma, beta, rows, C, groups, dr);
  else
    pompc::ref::layernorm_simnorm_forward<T>(y, mean, rstd, x, bias, gamma, beta, rows, C, groups);
}

template <typename T>
void backward(Act act, T* dx, T* db, T* dg, T* dbe, const T* dy, const T* x, const T* bias,
              const T* gamma, const T* beta, const T* mean, const T* rstd, int rows, int C,
              int groups, const Dropout& dr) {
  if (act == Act::mish)
    pompc::ref::layernorm_mish_backward<T>(dx, db, dg, dbe, dy, x, bias, gamma, beta, mean, rstd,
                                           rows, C, groups, dr);
  else
    pompc::ref::layernorm_simnorm_backward<T>(dx, db, dg, dbe, dy, x, bias, gamma, beta, mean, rstd,
                                              rows, C, groups);
}

struct Case {
  int rows, C, groups;
  float p;
};

void check_fd(Act act, Rng& rng, const Case& k) {
  CAPTURE(k.rows);
  CAPTURE(k.C);
  CAPTURE(k.groups);
  CAPTURE(k.p);
  const size_t n = static_cast<size_t>(k.rows) * k.C, pn = static_cast<size_t>(k.groups) * k.C;
  std::vector<double> x = rng.vec(n, -2, 2), b = rng.vec(pn, -0.5, 0.5), g = rng.vec(pn, 0.5, 1.5),
                      be = rng.vec(pn, -0.5, 0.5), w = rng.vec(n, -1, 1);
  const Dropout dr{k.p, 1234, 77};
  std::vector<double> y(n), mean(k.rows), rstd(k.rows);
  auto loss = [&] {
    forward<double>(act, y.data(), nullptr, nullptr, x.data(), b.data(), g.data(), be.data(),
                    k.rows, k.C, k.groups, dr);
    return dot(w, y);
  };
  forward<double>(act, y.data(), mean.data(), rstd.data(), x.data(), b.data(), g.data(), be.data(),
                  k.rows, k.C, k.groups, dr);
  const std::vector<double> dx0 = rng.vec(n, -1, 1), db0 = rng.vec(pn, -1, 1),
                            dg0 = rng.vec(pn, -1, 1), dbe0 = rng.vec(pn, -1, 1);
  std::vector<double> dx = dx0, db = db0, dg = dg0, dbe = dbe0;
  backward<double>(act, dx.data(), db.data(), dg.data(), dbe.data(), w.data(), x.data(), b.data(),
                   g.data(), be.data(), mean.data(), rstd.data(), k.rows, k.C, k.groups, dr);
  const char* name = act == Act::mish ? "layernorm_mish" : "layernorm_simnorm";
  CHECK(check_gradient((std::string(name) + " dinp").c_str(), x, added(dx, dx0), loss, rng));
  CHECK(check_gradient((std::string(name) + " dbias").c_str(), b, added(db, db0), loss, rng));
  CHECK(check_gradient((std::string(name) + " dgamma").c_str(), g, added(dg, dg0), loss, rng));
  CHECK(check_gradient((std::string(name) + " dbeta").c_str(), be, added(dbe, dbe0), loss, rng));
}

// Forward (float and double) against the plain loop; `scale` shrinks the inputs so that
// eps = 1e-5 matters (variance ~ 1e-7), which catches eps placed outside the sqrt.
void check_forward(Act act, Rng& rng, const Case& k, double scale) {
  CAPTURE(k.rows);
  CAPTURE(k.C);
  CAPTURE(k.groups);
  CAPTURE(k.p);
  CAPTURE(scale);
  const size_t n = static_cast<size_t>(k.rows) * k.C, pn = static_cast<size_t>(k.groups) * k.C;
  const std::vector<float> xf = to_float(rng.vec(n, -2 * scale, 2 * scale)),
                           bf = to_float(rng.vec(pn, -scale, scale)),
                           gf = to_float(rng.vec(pn, 0.5, 1.5)),
                           bef = to_float(rng.vec(pn, -0.5, 0.5));
  const std::vector<double> x = to_double(xf), b = to_double(bf), g = to_double(gf),
                            be = to_double(bef);
  const Dropout dr{k.p, 99, 5};
  const std::vector<double> ref =
      pompc::test::plain::layernorm_forward(act, x, &b, g, be, k.rows, k.C, k.groups, dr);
  std::vector<double> yd(n);
  forward<double>(act, yd.data(), nullptr, nullptr, x.data(), b.data(), g.data(), be.data(), k.rows,
                  k.C, k.groups, dr);
  // double vs double: only summation order differs (~1e-15 relative)
  CHECK(close("forward<double>", yd, ref, 1e-11, 1e-11));
  std::vector<float> yf(n);
  forward<float>(act, yf.data(), nullptr, nullptr, xf.data(), bf.data(), gf.data(), bef.data(),
                 k.rows, k.C, k.groups, dr);
  // fp32: inputs are exact, statistics are summed in double, so the error is a few roundings of
  // O(1) values (~1e-7 relative, amplified at most ~10x by rstd / exp); 2e-6 abs + 2e-5 rel is
  // far below what a biased/unbiased variance mix-up (1/C relative) or a misplaced eps changes.
  CHECK(close("forward<float>", to_double(yf), ref, 2e-6, 2e-5));
}

}  // namespace

TEST_SUITE("ops") {
  TEST_CASE("mish: values, PyTorch's softplus threshold, derivative vs finite differences") {
    CHECK(pompc::ref::mish(0.0) == 0.0);
    CHECK(pompc::ref::mish(1.0) == doctest::Approx(0.8650983882673103).epsilon(1e-15));
    CHECK(pompc::ref::mish(-1.0) == doctest::Approx(-0.30340146137410895).epsilon(1e-15));
    CHECK(pompc::ref::mish(2.5) == doctest::Approx(2.471392304557881).epsilon(1e-15));
    CHECK(pompc::ref::mish(-4.0) == doctest::Approx(-0.07259174079202535).epsilon(1e-15));
    CHECK(pompc::ref::mish(30.0f) == 30.0f);   // softplus(x) = x above 20, tanh(30) = 1 in fp32
    CHECK(pompc::ref::mish(-200.0f) == 0.0f);  // exp underflows cleanly, no NaN
    for (double x : {-6.0, -1.3, -0.2, 0.3, 1.7, 4.0, 12.0, 19.5, 20.5, 25.0}) {
      CAPTURE(x);
      const double h = 1e-6;
      const double fd = (pompc::ref::mish(x + h) - pompc::ref::mish(x - h)) / (2 * h);
      // central difference in double: error ~1e-10 (smooth away from the threshold at 20)
      CHECK(pompc::ref::mish_grad(x) == doctest::Approx(fd).epsilon(1e-8).scale(1));
    }
  }

  TEST_CASE("layernorm_mish: forward matches the formula (bias, dropout, groups, tiny variance)") {
    Rng rng(21);
    const Case cases[] = {{1, 1, 1, 0},       {1, 33, 1, 0},    {33, 132, 1, 0.1f},
                          {10, 257, 5, 0.3f}, {256, 512, 1, 0}, {5 * 8, 512, 5, 0.01f}};
    for (const Case& k : cases) check_forward(Act::mish, rng, k, 1.0);
    check_forward(Act::mish, rng, {7, 132, 1, 0}, 1e-3);
  }

  TEST_CASE("layernorm_simnorm: forward matches the formula; each group of 8 sums to 1") {
    Rng rng(22);
    const Case cases[] = {{1, 8, 1, 0}, {33, 136, 1, 0}, {10, 64, 5, 0}, {256, 512, 1, 0}};
    for (const Case& k : cases) check_forward(Act::simnorm, rng, k, 1.0);
    check_forward(Act::simnorm, rng, {3, 512, 1, 0}, 1e-3);
    std::vector<float> x = to_float(rng.vec(512, -3, 3)), g(512, 1.0f), be(512, 0.0f), y(512);
    pompc::ref::layernorm_simnorm_forward<float>(y.data(), nullptr, nullptr, x.data(), nullptr,
                                                 g.data(), be.data(), 1, 512, 1);
    for (int c0 = 0; c0 < 512; c0 += 8) {
      double s = 0;
      for (int j = 0; j < 8; ++j) s += y[c0 + j];
      CHECK(s == doctest::Approx(1.0).epsilon(1e-6));  // 8 fp32 terms: a few ulp
    }
  }

  TEST_CASE("layernorm_mish: backward matches double finite differences and accumulates") {
    Rng rng(23);
    const Case cases[] = {{1, 1, 1, 0},       {1, 33, 1, 0},      {33, 132, 1, 0.1f},
                          {10, 257, 5, 0.3f}, {3, 512, 1, 0.01f}, {15, 40, 5, 0.5f}};
    for (const Case& k : cases) check_fd(Act::mish, rng, k);
  }

  TEST_CASE("layernorm_simnorm: backward matches double finite differences and accumulates") {
    Rng rng(24);
    const Case cases[] = {{1, 8, 1, 0}, {33, 136, 1, 0}, {10, 64, 5, 0}, {2, 512, 1, 0}};
    for (const Case& k : cases) check_fd(Act::simnorm, rng, k);
  }

  TEST_CASE("layernorm: float backward equals double at B = 256, M = 512 and Qn = 5 heads") {
    Rng rng(25);
    for (Act act : {Act::mish, Act::simnorm})
      for (int groups : {1, 5}) {
        CAPTURE(groups);
        const int rows = 256 * groups, C = 512;
        const size_t n = static_cast<size_t>(rows) * C, pn = static_cast<size_t>(groups) * C;
        const std::vector<float> x = to_float(rng.vec(n, -2, 2)), b = to_float(rng.vec(pn, -1, 1)),
                                 g = to_float(rng.vec(pn, 0.5, 1.5)),
                                 be = to_float(rng.vec(pn, -0.5, 0.5)),
                                 dy = to_float(rng.vec(n, -1, 1));
        const Dropout dr{act == Act::mish ? 0.01f : 0.0f, 7, 3};
        std::vector<float> y(n), mean(rows), rstd(rows), dx(n, 0), db(pn, 0), dg(pn, 0), dbe(pn, 0);
        forward<float>(act, y.data(), mean.data(), rstd.data(), x.data(), b.data(), g.data(),
                       be.data(), rows, C, groups, dr);
        backward<float>(act, dx.data(), db.data(), dg.data(), dbe.data(), dy.data(), x.data(),
                        b.data(), g.data(), be.data(), mean.data(), rstd.data(), rows, C, groups,
                        dr);
        const std::vector<double> xd = to_double(x), bd = to_double(b), gd = to_double(g),
                                  bed = to_double(be), dyd = to_double(dy);
        std::vector<double> yd(n), meand(rows), rstdd(rows), dxd(n, 0), dbd(pn, 0), dgd(pn, 0),
            dbed(pn, 0);
        forward<double>(act, yd.data(), meand.data(), rstdd.data(), xd.data(), bd.data(), gd.data(),
                        bed.data(), rows, C, groups, dr);
        backward<double>(act, dxd.data(), dbd.data(), dgd.data(), dbed.data(), dyd.data(),
                         xd.data(), bd.data(), gd.data(), bed.data(), meand.data(), rstdd.data(),
                         rows, C, groups, dr);
        // Per element: a handful of fp32 roundings of O(1) values (1e-6 scale). Parameter
        // gradients sum 256 rows of O(1) terms in double, each term carrying ~1e-6 error:
        // about 256 * 1e-6 worst case, so 1e-4 abs + 1e-4 rel.
        CHECK(close("y", to_double(y), yd, 1e-5, 1e-4));
        CHECK(close("dinp", to_double(dx), dxd, 1e-5, 1e-4));
        CHECK(close("dbias", to_double(db), dbd, 1e-4, 1e-4));
        CHECK(close("dgamma", to_double(dg), dgd, 1e-4, 1e-4));
        CHECK(close("dbeta", to_double(dbe), dbed, 1e-4, 1e-4));
      }
  }

  TEST_CASE("dropout: keep rate 1 - p, same seed and offset give the same mask") {
    const uint64_t n = 1 << 20;
    for (float p : {0.01f, 0.1f, 0.5f}) {
      CAPTURE(p);
      uint64_t dropped = 0, differ_offset = 0, differ_seed = 0, unstable = 0;
      for (uint64_t i = 0; i < n; ++i) {
        const bool k = pompc::dropout_keep(p, 42, 7, i);
        dropped += !k;
        unstable += k != pompc::dropout_keep(p, 42, 7, i);  // must be deterministic
        differ_offset += k != pompc::dropout_keep(p, 42, 8, i);
        differ_seed += k != pompc::dropout_keep(p, 43, 7, i);
      }
      // Binomial(n, p): the drop count is within 5 standard deviations of n p (fails with
      // probability < 1e-6 for a correct generator; a wrong threshold is off by >> 5 sigma).
      CHECK(unstable == 0);
      const double sd = std::sqrt(n * p * (1.0 - p));
      CHECK(std::fabs(static_cast<double>(dropped) - n * p) < 5 * sd);
      // Independent masks disagree on a fraction 2 p (1 - p) of elements.
      const double want = 2.0 * n * p * (1 - p), sd2 = std::sqrt(want);
      CHECK(std::fabs(static_cast<double>(differ_offset) - want) < 6 * sd2);
      CHECK(std::fabs(static_cast<double>(differ_seed) - want) < 6 * sd2);
    }
    int dropped_at_p0 = 0;
    for (uint64_t i = 0; i < 1000; ++i) dropped_at_p0 += !pompc::dropout_keep(0.0f, 1, 2, i);
    CHECK(dropped_at_p0 == 0);
  }

  TEST_CASE(
      "layernorm_mish dropout: deterministic per seed, per-head masks, no grad when dropped") {
    Rng rng(26);
    const int B = 64, C = 132, groups = 5, rows = B * groups;
    // Every head sees the same input: any difference between heads comes from the mask.
    std::vector<float> x1 = to_float(rng.vec(static_cast<size_t>(B) * C, -2, 2)), x;
    for (int q = 0; q < groups; ++q) x.insert(x.end(), x1.begin(), x1.end());
    std::vector<float> g(static_cast<size_t>(groups) * C, 1.0f), be(g.size(), 0.0f);
    auto run = [&](const Dropout& dr) {
      std::vector<float> y(x.size());
      pompc::ref::layernorm_mish_forward<float>(y.data(), nullptr, nullptr, x.data(), nullptr,
                                                g.data(), be.data(), rows, C, groups, dr);
      return y;
    };
    const Dropout d1{0.3f, 5, 9};
    CHECK(run(d1) == run(d1));
    CHECK(run(d1) != run(Dropout{0.3f, 6, 9}));
    CHECK(run(d1) != run(Dropout{0.3f, 5, 10}));
    const std::vector<float> y = run(d1);
    CHECK(!std::equal(y.begin(), y.begin() + B * C, y.begin() + B * C));  // heads 0 and 1 differ
    // dinp is exactly zero where the element was dropped, non-zero (almost surely) elsewhere.
    std::vector<float> mean(rows), rstd(rows), dx(x.size(), 0.0f), dy(x.size(), 1.0f);
    for (size_t i = 0; i < dy.size(); ++i) dy[i] = static_cast<float>(rng.uniform(-1, 1));
    std::vector<float> yy(x.size());
    pompc::ref::layernorm_mish_forward<float>(yy.data(), mean.data(), rstd.data(), x.data(),
                                              nullptr, g.data(), be.data(), rows, C, groups, d1);
    pompc::ref::layernorm_mish_backward<float>(dx.data(), nullptr, nullptr, nullptr, dy.data(),
                                               x.data(), nullptr, g.data(), be.data(), mean.data(),
                                               rstd.data(), rows, C, groups, d1);
    int wrong = 0;
    for (size_t i = 0; i < dx.size(); ++i)
      wrong += pompc::dropout_keep(d1.p, d1.seed, d1.offset.resolve(), i) ? dx[i] == 0.0f
                                                                          : dx[i] != 0.0f;
    CHECK(wrong == 0);
  }

  TEST_CASE("layernorm: bad shapes throw pompc::Error naming the fix") {
    std::vector<float> v(64, 1.0f);
    CHECK_THROWS_WITH_AS(
        pompc::ref::layernorm_simnorm_forward<float>(v.data(), nullptr, nullptr, v.data(), nullptr,
                                                     v.data(), v.data(), 2, 12, 1),
        doctest::Contains("multiple of the SimNorm group size 8"), pompc::Error);
    CHECK_THROWS_WITH_AS(
        pompc::ref::layernorm_mish_forward<float>(v.data(), nullptr, nullptr, v.data(), nullptr,
                                                  v.data(), v.data(), 3, 8, 2, Dropout{}),
        doctest::Contains("divide rows (3)"), pompc::Error);
    CHECK_THROWS_WITH_AS(
        pompc::ref::layernorm_mish_forward<float>(v.data(), nullptr, nullptr, v.data(), nullptr,
                                                  v.data(), v.data(), 2, 8, 1, Dropout{1.0f, 0, 0}),
        doctest::Contains("must be in [0, 1)"), pompc::Error);
  }
}
