// The tuned reference paths against the plain loops of tests/plain_ref.h (the GEMM's are in
// test_ref_gemm.cpp and test_ref_linear.cpp, the LayerNorm forward's in test_ref_layernorm.cpp):
//   - mish / mish' in float: one exponential by a Cody-Waite reduction and a degree-7 polynomial
//     (src/ref/layernorm.cpp), held to an ulp bound over a dense sweep of [-100, 30];
//   - layernorm_mish / _simnorm backward: vectorised rows, the dropout mask four Philox words at a
//     time, per-thread double partials of the parameter gradients; float and double, odd sizes;
//   - add_column_sums: 64-column chunks split between OpenMP threads.
// Each tolerance is stated beside its check with the reason for its size.
//   build/test_emu -ts=ops -tc='plain*'
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

#include "plain_ref.h"
#include "ref/layernorm.h"
#include "ref/linear.h"
#include "test_ref_fd.h"

using namespace pompc::test::fd;
namespace plain = pompc::test::plain;
using plain::Act;
using pompc::Dropout;

namespace {

constexpr double kU32 = std::numeric_limits<float>::epsilon() / 2;  // fp32 unit roundoff, 2^-24

// Largest |got - ref| / (rel * |ref| + abs) over a sweep of x, printed with its x when over 1.
template <typename F, typename G>
bool sweep(const char* what, F tuned, G ref, double rel, double abs) {
  double worst = 0, worst_x = 0;
  for (int i = 0; i <= 260000; ++i) {
    const float x = static_cast<float>(-100.0 + i * (130.0 / 260000));
    const double want = ref(static_cast<double>(x));
    const double got = static_cast<double>(tuned(x));
    const double r = std::fabs(got - want) / (rel * std::fabs(want) + abs);
    if (!(r <= worst)) {
      worst = std::isnan(r) ? INFINITY : r;
      worst_x = x;
    }
  }
  if (worst > 1)
    std::printf("%s: error %.3g x the tolerance at x = %.9g (got %.9g, want %.9g)\n", what, worst,
                worst_x, static_cast<double>(tuned(static_cast<float>(worst_x))), ref(worst_x));
  return worst <= 1;
}

// Runs the tuned forward (saving mean / rstd) and the accumulating backward in T, and returns the
// backward's increments (after - before, the buffers pre-filled with random values).
template <typename T>
plain::LayerNormGrads tuned_backward(Act act, Rng& rng, const std::vector<double>& dy,
                                     const std::vector<double>& x, const std::vector<double>& b,
                                     const std::vector<double>& g, const std::vector<double>& be,
                                     int rows, int C, int groups, const Dropout& dr) {
  auto cast = [](const std::vector<double>& v) { return std::vector<T>(v.begin(), v.end()); };
  const std::vector<T> xt = cast(x), bt = cast(b), gt = cast(g), bet = cast(be), dyt = cast(dy);
  const size_t n = x.size(), pn = b.size();
  std::vector<T> y(n), mean(rows), rstd(rows);
  const std::vector<T> dx0 = cast(rng.vec(n, -1, 1)), db0 = cast(rng.vec(pn, -1, 1)),
                       dg0 = cast(rng.vec(pn, -1, 1)), dbe0 = cast(rng.vec(pn, -1, 1));
  std::vector<T> dx = dx0, db = db0, dg = dg0, dbe = dbe0;
  if (act == Act::mish) {
    pompc::ref::layernorm_mish_forward<T>(y.data(), mean.data(), rstd.data(), xt.data(), bt.data(),
                                          gt.data(), bet.data(), rows, C, groups, dr);
    pompc::ref::layernorm_mish_backward<T>(dx.data(), db.data(), dg.data(), dbe.data(), dyt.data(),
                                           xt.data(), bt.data(), gt.data(), bet.data(), mean.data(),
                                           rstd.data(), rows, C, groups, dr);
  } else {
    pompc::ref::layernorm_simnorm_forward<T>(y.data(), mean.data(), rstd.data(), xt.data(),
                                             bt.data(), gt.data(), bet.data(), rows, C, groups);
    pompc::ref::layernorm_simnorm_backward<T>(
        dx.data(), db.data(), dg.data(), dbe.data(), dyt.data(), xt.data(), bt.data(), gt.data(),
        bet.data(), mean.data(), rstd.data(), rows, C, groups);
  }
  auto diff = [](const std::vector<T>& after, const std::vector<T>& before) {
    std::vector<double> d(after.size());
    for (size_t i = 0; i < d.size(); ++i)
      d[i] = static_cast<double>(after[i]) - static_cast<double>(before[i]);
    return d;
  };
  return {diff(dx, dx0), diff(db, db0), diff(dg, dg0), diff(dbe, dbe0)};
}

struct Case {
  int rows, C, groups;
  float p;
};

void check_backward(Act act, Rng& rng, const Case& k) {
  CAPTURE(k.rows);
  CAPTURE(k.C);
  CAPTURE(k.groups);
  CAPTURE(k.p);
  const size_t n = static_cast<size_t>(k.rows) * k.C, pn = static_cast<size_t>(k.groups) * k.C;
  // Float-representable inputs, so that the float and double runs see the same numbers.
  auto fl = [](std::vector<double> v) { return to_double(to_float(v)); };
  const std::vector<double> x = fl(rng.vec(n, -2, 2)), b = fl(rng.vec(pn, -0.5, 0.5)),
                            g = fl(rng.vec(pn, 0.5, 1.5)), be = fl(rng.vec(pn, -0.5, 0.5)),
                            dy = fl(rng.vec(n, -1, 1));
  const Dropout dr{k.p, 4321, 19};
  const plain::LayerNormGrads want =
      plain::layernorm_backward(act, dy, x, &b, g, be, k.rows, k.C, k.groups, dr);
  const plain::LayerNormGrads d =
      tuned_backward<double>(act, rng, dy, x, b, g, be, k.rows, k.C, k.groups, dr);
  // double: only the order of the sums differs (and mish' takes the one-exponential form), and
  // the increments are read back from buffers that held O(1) values: a few 1e-16 (measured
  // 5e-15 at most), so 1e-12.
  CHECK(close("dinp<double>", d.dinp, want.dinp, 1e-12, 1e-12));
  CHECK(close("dbias<double>", d.dbias, want.dbias, 1e-12, 1e-12));
  CHECK(close("dgamma<double>", d.dgamma, want.dgamma, 1e-12, 1e-12));
  CHECK(close("dbeta<double>", d.dbeta, want.dbeta, 1e-12, 1e-12));
  const plain::LayerNormGrads f =
      tuned_backward<float>(act, rng, dy, x, b, g, be, k.rows, k.C, k.groups, dr);
  // float: each per-element value is about eight fp32 roundings (8 * 2^-24 = 5e-7) of O(1)
  // quantities (xhat, h, mish' within a few ulp, the saved fp32 mean / rstd), amplified by rstd
  // (~1 here) and by 1 / (1 - p) <= 2: 5e-7 + 5e-6 relative (measured: at most 0.06 of twice
  // that), while a wrong term moves it by 1e-4 or more. The parameter gradients add one such
  // term per row of their group in double, so the absolute part grows with the rows per group;
  // the pre-filled buffer adds one fp32 rounding of an O(rows) sum.
  const double per = static_cast<double>(k.rows / k.groups);
  CHECK(close("dinp<float>", f.dinp, want.dinp, 5e-7, 5e-6));
  CHECK(close("dbias<float>", f.dbias, want.dbias, 5e-7 * per, 5e-6));
  CHECK(close("dgamma<float>", f.dgamma, want.dgamma, 5e-7 * per, 5e-6));
  CHECK(close("dbeta<float>", f.dbeta, want.dbeta, 5e-7 * per, 5e-6));
}

template <typename T>
void check_column_sums(Rng& rng, int rows, int cols) {
  CAPTURE(rows);
  CAPTURE(cols);
  std::vector<T> src(static_cast<size_t>(rows) * cols), dst(cols);
  for (T& v : src) v = static_cast<T>(rng.uniform(-1, 1));
  for (T& v : dst) v = static_cast<T>(rng.uniform(-1, 1));
  const std::vector<T> dst0 = dst;
  const std::vector<double> want = plain::add_column_sums(dst, src, rows, cols);
  pompc::ref::add_column_sums<T>(dst.data(), src.data(), rows, cols);
  // The tuned path sums each column in double, rounds the sum to T and adds it to dst in T; the
  // plain loop sums everything in double. Higham's bound for a recursive sum, |err| <= (terms)
  // u sum |x|, for both double sums plus two roundings to T:
  // |err| <= ((2 rows + 2) 2^-53 + 2 u_T) (|dst| + sum_r |src|), u_T the unit roundoff of T.
  const double u = std::numeric_limits<T>::epsilon() / 2;
  int bad = 0;
  for (int c = 0; c < cols; ++c) {
    double mag = std::fabs(static_cast<double>(dst0[c]));
    for (int r = 0; r < rows; ++r)
      mag += std::fabs(static_cast<double>(src[static_cast<size_t>(r) * cols + c]));
    const double tol = ((2.0 * rows + 2) * 0x1p-53 + 2 * u) * mag;
    if (!(std::fabs(static_cast<double>(dst[c]) - want[c]) <= tol) && bad++ < 3)
      std::printf("add_column_sums rows=%d cols=%d: [%d] = %.17g, plain %.17g (tol %.3g)\n", rows,
                  cols, c, static_cast<double>(dst[c]), want[c], tol);
  }
  CHECK(bad == 0);
}

}  // namespace

TEST_SUITE("ops") {
  TEST_CASE("plain: mish and mish' in float within a few ulp of the double definition") {
    // mish<float>: the polynomial exp is within ~1 ulp; n = e (e + 2), n / (n + 2) and x * t add
    // four roundings, and an error in e reaches t at most doubled (dt/t = 2/(n+2) dn/n): a bound
    // of 8 units of 2^-24 relative (measured on this machine: 4.5, near x = -7.5). Below x = -87
    // the exp returns 0 where e^x < 1.7e-38, so mish's values there (|mish| < 1e-35) get an
    // absolute allowance of 1e-35.
    CHECK(sweep(
        "mish<float>", [](float x) { return pompc::ref::mish(x); }, plain::mish, 8 * kU32, 1e-35));
    // mish'<float> = t + x sigmoid(x) (1 - t^2) adds two O(1) terms of opposite signs for x < 0
    // (zero near x = -1.19): relative bound as above plus an absolute 8 * 2^-24 for the
    // cancellation (measured: 1.4 of the 2^-24 units).
    CHECK(sweep(
        "mish_grad<float>", [](float x) { return pompc::ref::mish_grad(x); }, plain::mish_grad,
        8 * kU32, 8 * kU32));
    // double: the same one-exponential formulas with std::exp; 1e-14 of the value (1e-14 absolute
    // at the derivative's zero) is a few dozen double roundings.
    CHECK(sweep(
        "mish<double>", [](float x) { return pompc::ref::mish(static_cast<double>(x)); },
        plain::mish, 1e-14, 1e-300));
    CHECK(sweep(
        "mish_grad<double>", [](float x) { return pompc::ref::mish_grad(static_cast<double>(x)); },
        plain::mish_grad, 1e-14, 1e-14));
  }

  TEST_CASE("plain: layernorm_mish backward (float, double) against the plain loop") {
    Rng rng(31);
    const Case cases[] = {{1, 1, 1, 0},           {1, 33, 1, 0.1f},    {3, 7, 1, 0.5f},
                          {10, 257, 5, 0.3f},     {33, 132, 1, 0.01f}, {256, 512, 1, 0},
                          {5 * 64, 512, 5, 0.01f}};
    for (const Case& k : cases) check_backward(Act::mish, rng, k);
  }

  TEST_CASE("plain: layernorm_simnorm backward (float, double) against the plain loop") {
    Rng rng(32);
    const Case cases[] = {{1, 8, 1, 0}, {3, 136, 1, 0}, {10, 64, 5, 0}, {256, 512, 1, 0}};
    for (const Case& k : cases) check_backward(Act::simnorm, rng, k);
  }

  TEST_CASE("plain: add_column_sums (64-column chunks, OpenMP) against the plain loop") {
    Rng rng(33);
    for (int rows : {1, 3, 300})
      for (int cols : {1, 63, 64, 65, 130, 1000}) {
        check_column_sums<float>(rng, rows, cols);
        check_column_sums<double>(rng, rows, cols);
      }
    check_column_sums<float>(rng, 768, 512);  // B (H + 1) rows of M: the model's bias gradients
  }
}
