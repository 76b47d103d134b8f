// Reference Linear and ensemble Linear (src/ref/linear.h): forward against the plain GEMM loop,
// every backward against double central differences (and proven to accumulate), the float path
// against the double path at the real layer sizes (B = 256, Z + A = 550 -> M = 512, Qn = 5).
//   build/test_emu -ts=ops -tc='linear*'
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "plain_ref.h"
#include "ref/linear.h"
#include "test_ref_fd.h"

using namespace pompc::test::fd;
using pompc::ref::linear_backward;
using pompc::ref::linear_ensemble_backward;
using pompc::ref::linear_ensemble_forward;
using pompc::ref::linear_forward;

namespace {

constexpr double kU32 = std::numeric_limits<float>::epsilon() / 2;  // fp32 unit roundoff

// y[b, o] = sum_i x[b, i] W[o, i] (+ bias[o]) and the magnitude sum |x||W| + |bias|.
void naive_forward(const std::vector<double>& x, const std::vector<double>& W,
                   const std::vector<double>* bias, int B, int in, int out, std::vector<double>* y,
                   std::vector<double>* mag) {
  y->assign(static_cast<size_t>(B) * out, 0);
  mag->assign(y->size(), 0);
  for (int b = 0; b < B; ++b)
    for (int o = 0; o < out; ++o) {
      // x [B, in] times W^T: W [out, in] is op(B) = W^T transposed
      const pompc::test::plain::Dot d =
          pompc::test::plain::gemm_dot(x.data(), in, false, W.data(), in, true, b, o, in);
      (*y)[static_cast<size_t>(b) * out + o] = d.sum + (bias ? (*bias)[o] : 0);
      (*mag)[static_cast<size_t>(b) * out + o] = d.mag + (bias ? std::fabs((*bias)[o]) : 0);
    }
}

// |got - ref| <= (terms + 3) u mag elementwise: Higham's bound for an fp32 sum of `terms`
// products, rigorous, so a wrong index or a dropped term fails it.
bool within_fp32_sum_bound(const char* what, const std::vector<float>& got,
                           const std::vector<double>& ref, const std::vector<double>& mag,
                           int terms) {
  std::vector<double> g(got.begin(), got.end());
  int bad = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double tol = (terms + 3) * kU32 / (1 - (terms + 3) * kU32) * mag[i] + 1e-30;
    if (!(std::fabs(g[i] - ref[i]) <= tol) && bad++ < 5)
      std::printf("%s[%zu]: got %.9g want %.9g (tol %.3g)\n", what, i, g[i], ref[i], tol);
  }
  return bad == 0;
}

void check_linear_fd(Rng& rng, int B, int in, int out, bool with_bias) {
  CAPTURE(B);
  CAPTURE(in);
  CAPTURE(out);
  CAPTURE(with_bias);
  std::vector<double> x = rng.vec(static_cast<size_t>(B) * in, -1, 1),
                      W = rng.vec(static_cast<size_t>(out) * in, -1, 1), b = rng.vec(out, -1, 1),
                      w = rng.vec(static_cast<size_t>(B) * out, -1, 1);
  std::vector<double> y(w.size());
  auto loss = [&] {
    linear_forward<double>(y.data(), x.data(), W.data(), with_bias ? b.data() : nullptr, B, in,
                           out);
    return dot(w, y);
  };
  const std::vector<double> dx0 = rng.vec(x.size(), -1, 1), dW0 = rng.vec(W.size(), -1, 1),
                            db0 = rng.vec(b.size(), -1, 1);
  std::vector<double> dx = dx0, dW = dW0, db = db0;
  linear_backward<double>(dx.data(), dW.data(), with_bias ? db.data() : nullptr, w.data(), x.data(),
                          W.data(), B, in, out);
  CHECK(check_gradient("linear dinp", x, added(dx, dx0), loss, rng));
  CHECK(check_gradient("linear dweight", W, added(dW, dW0), loss, rng));
  if (with_bias) CHECK(check_gradient("linear dbias", b, added(db, db0), loss, rng));
  if (!with_bias) CHECK(db == db0);
}

void check_ensemble_fd(Rng& rng, int Qn, int B, int in, int out, bool shared) {
  CAPTURE(Qn);
  CAPTURE(B);
  CAPTURE(shared);
  std::vector<double> x = rng.vec(static_cast<size_t>(shared ? 1 : Qn) * B * in, -1, 1),
                      W = rng.vec(static_cast<size_t>(Qn) * out * in, -1, 1),
                      b = rng.vec(static_cast<size_t>(Qn) * out, -1, 1),
                      w = rng.vec(static_cast<size_t>(Qn) * B * out, -1, 1);
  std::vector<double> y(w.size());
  auto loss = [&] {
    linear_ensemble_forward<double>(y.data(), x.data(), W.data(), b.data(), Qn, B, in, out, shared);
    return dot(w, y);
  };
  const std::vector<double> dx0 = rng.vec(x.size(), -1, 1), dW0 = rng.vec(W.size(), -1, 1),
                            db0 = rng.vec(b.size(), -1, 1);
  std::vector<double> dx = dx0, dW = dW0, db = db0;
  linear_ensemble_backward<double>(dx.data(), dW.data(), db.data(), w.data(), x.data(), W.data(),
                                   Qn, B, in, out, shared);
  CHECK(check_gradient("ensemble dinp", x, added(dx, dx0), loss, rng));
  CHECK(check_gradient("ensemble dweight", W, added(dW, dW0), loss, rng));
  CHECK(check_gradient("ensemble dbias", b, added(db, db0), loss, rng));
}

}  // namespace

TEST_SUITE("ops") {
  TEST_CASE("linear: forward (float and double) matches a naive loop, with and without bias") {
    Rng rng(11);
    struct S {
      int B, in, out;
    } shapes[] = {{1, 1, 1}, {33, 132, 257}, {257, 33, 1}, {256, 550, 512}};
    for (const S& s : shapes)
      for (bool with_bias : {true, false}) {
        CAPTURE(s.B);
        CAPTURE(s.in);
        CAPTURE(s.out);
        const std::vector<double> x = rng.vec(static_cast<size_t>(s.B) * s.in, -1, 1),
                                  W = rng.vec(static_cast<size_t>(s.out) * s.in, -0.1, 0.1),
                                  b = rng.vec(s.out, -1, 1);
        // The float run sees the float-rounded inputs; so does the naive reference.
        const std::vector<float> xf = to_float(x), Wf = to_float(W), bf = to_float(b);
        const std::vector<double> xr = to_double(xf), Wr = to_double(Wf), br = to_double(bf);
        std::vector<double> ref, mag;
        naive_forward(xr, Wr, with_bias ? &br : nullptr, s.B, s.in, s.out, &ref, &mag);
        std::vector<float> yf(ref.size(), std::numeric_limits<float>::quiet_NaN());
        linear_forward<float>(yf.data(), xf.data(), Wf.data(), with_bias ? bf.data() : nullptr, s.B,
                              s.in, s.out);
        CHECK(within_fp32_sum_bound("linear_forward<float>", yf, ref, mag, s.in + 1));
        std::vector<double> yd(ref.size());
        linear_forward<double>(yd.data(), xr.data(), Wr.data(), with_bias ? br.data() : nullptr,
                               s.B, s.in, s.out);
        // double sums of <= 551 terms of magnitude <= 1: rounding <= 1e-13, far below any bug
        CHECK(close("linear_forward<double>", yd, ref, 1e-12, 1e-12));
      }
  }

  TEST_CASE("linear: backward matches double finite differences and accumulates") {
    Rng rng(12);
    check_linear_fd(rng, 1, 1, 1, true);
    check_linear_fd(rng, 1, 33, 7, true);
    check_linear_fd(rng, 33, 13, 9, false);
    check_linear_fd(rng, 17, 40, 33, true);
    check_linear_fd(rng, 3, 132, 5, true);
  }

  TEST_CASE("linear: float backward equals the double backward at B = 256, 550 -> 512") {
    Rng rng(13);
    const int B = 256, in = 550, out = 512;
    const std::vector<float> x = to_float(rng.vec(static_cast<size_t>(B) * in, -1, 1)),
                             W = to_float(rng.vec(static_cast<size_t>(out) * in, -0.1, 0.1)),
                             dy = to_float(rng.vec(static_cast<size_t>(B) * out, -1, 1));
    std::vector<float> dx(x.size(), 0.25f), dW(W.size(), -0.5f), db(out, 1.0f);
    linear_backward<float>(dx.data(), dW.data(), db.data(), dy.data(), x.data(), W.data(), B, in,
                           out);
    // Double results, and the same products on absolute values (the magnitude of each sum).
    auto dbl = [](const std::vector<float>& v, bool abs) {
      std::vector<double> d(v.begin(), v.end());
      if (abs)
        for (double& e : d) e = std::fabs(e);
      return d;
    };
    std::vector<double> rx(dx.size(), 0.25), rW(dW.size(), -0.5), rb(out, 1.0);
    std::vector<double> mx(dx.size(), 0.25), mW(dW.size(), 0.5), mb(out, 1.0);
    linear_backward<double>(rx.data(), rW.data(), rb.data(), dbl(dy, false).data(),
                            dbl(x, false).data(), dbl(W, false).data(), B, in, out);
    linear_backward<double>(mx.data(), mW.data(), mb.data(), dbl(dy, true).data(),
                            dbl(x, true).data(), dbl(W, true).data(), B, in, out);
    CHECK(within_fp32_sum_bound("dinp", dx, rx, mx, out + 1));
    CHECK(within_fp32_sum_bound("dweight", dW, rW, mW, B + 1));
    CHECK(within_fp32_sum_bound("dbias", db, rb, mb, B + 1));
  }

  TEST_CASE("linear_ensemble: backward matches finite differences, shared and per-head input") {
    Rng rng(14);
    for (bool shared : {true, false}) {
      check_ensemble_fd(rng, 1, 1, 1, 1, shared);
      check_ensemble_fd(rng, 5, 3, 7, 4, shared);
      check_ensemble_fd(rng, 2, 33, 9, 13, shared);
    }
  }

  TEST_CASE("linear_ensemble: equals Qn separate Linears at Qn = 5, 550 -> 512") {
    Rng rng(15);
    const int Qn = 5, in = 550, out = 512;
    for (bool shared : {true, false}) {
      CAPTURE(shared);
      const int B = shared ? 256 : 64;  // per-head inputs: the same code path, a quarter the work
      const size_t xs = static_cast<size_t>(B) * in, ws = static_cast<size_t>(out) * in,
                   ys = static_cast<size_t>(B) * out;
      const std::vector<float> x = to_float(rng.vec((shared ? 1 : Qn) * xs, -1, 1)),
                               W = to_float(rng.vec(Qn * ws, -0.1, 0.1)),
                               b = to_float(rng.vec(static_cast<size_t>(Qn) * out, -1, 1)),
                               dy = to_float(rng.vec(Qn * ys, -1, 1));
      std::vector<float> y(Qn * ys), y1(Qn * ys);
      linear_ensemble_forward<float>(y.data(), x.data(), W.data(), b.data(), Qn, B, in, out,
                                     shared);
      std::vector<float> dx(x.size(), 0.5f), dW(W.size(), 0.0f), db(b.size(), 0.0f);
      std::vector<float> dx1 = dx, dW1 = dW, db1 = db;
      linear_ensemble_backward<float>(dx.data(), dW.data(), db.data(), dy.data(), x.data(),
                                      W.data(), Qn, B, in, out, shared);
      for (int q = 0; q < Qn; ++q) {
        const size_t xo = shared ? 0 : q * xs;
        linear_forward<float>(y1.data() + q * ys, x.data() + xo, W.data() + q * ws,
                              b.data() + static_cast<size_t>(q) * out, B, in, out);
        linear_backward<float>(dx1.data() + xo, dW1.data() + q * ws,
                               db1.data() + static_cast<size_t>(q) * out, dy.data() + q * ys,
                               x.data() + xo, W.data() + q * ws, B, in, out);
      }
      // Same products in the same order (heads accumulate into a shared dinp in head order).
      CHECK(y == y1);
      CHECK(dx == dx1);
      CHECK(dW == dW1);
      CHECK(db == db1);
    }
  }
}
