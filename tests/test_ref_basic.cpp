// concat / split, MSE, softmax and log-softmax rows (src/ref/basic.h): forward values, backward
// against double central differences (proving accumulation), stability for large logits.
//   build-ref/test_emu -ts=ops -tc='concat*,mse*,softmax*,log_softmax*'
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "ref/basic.h"
#include "test_ref_fd.h"

using namespace pompc::test::fd;

TEST_SUITE("ops") {
  TEST_CASE("concat: [z, a] rows and the split backward (Z = 512, A in {1, 6, 21, 38})") {
    Rng rng(31);
    for (int A : {1, 6, 21, 38})
      for (int B : {1, 33, 256}) {
        CAPTURE(A);
        CAPTURE(B);
        const int Z = 512;
        const std::vector<double> z = rng.vec(static_cast<size_t>(B) * Z, -1, 1),
                                  a = rng.vec(static_cast<size_t>(B) * A, -1, 1);
        std::vector<double> out(static_cast<size_t>(B) * (Z + A));
        pompc::ref::concat_forward<double>(out.data(), z.data(), a.data(), B, Z, A);
        bool ok = true;
        for (int b = 0; b < B; ++b)
          for (int c = 0; c < Z + A; ++c)
            ok &=
                out[static_cast<size_t>(b) * (Z + A) + c] ==
                (c < Z ? z[static_cast<size_t>(b) * Z + c] : a[static_cast<size_t>(b) * A + c - Z]);
        CHECK(ok);
        const std::vector<double> dout = rng.vec(out.size(), -1, 1), dz0 = rng.vec(z.size(), -1, 1),
                                  da0 = rng.vec(a.size(), -1, 1);
        std::vector<double> dz = dz0, da = da0;
        pompc::ref::concat_backward<double>(dz.data(), da.data(), dout.data(), B, Z, A);
        bool split_ok = true;
        for (int b = 0; b < B; ++b)
          for (int c = 0; c < Z + A; ++c) {
            const double d = dout[static_cast<size_t>(b) * (Z + A) + c];
            split_ok &= c < Z ? dz[static_cast<size_t>(b) * Z + c] ==
                                    dz0[static_cast<size_t>(b) * Z + c] + d
                              : da[static_cast<size_t>(b) * A + c - Z] ==
                                    da0[static_cast<size_t>(b) * A + c - Z] + d;
          }
        CHECK(split_ok);
        std::vector<double> dz2 = dz0;  // nullptr skips the action part
        pompc::ref::concat_backward<double>(dz2.data(), nullptr, dout.data(), B, Z, A);
        CHECK(dz2 == dz);
      }
  }

  TEST_CASE("mse: value, and the backward against finite differences") {
    std::vector<float> p = {1, 2, 3, 4}, t = {0, 2, 5, 4};
    float loss = -1;
    pompc::ref::mse_forward<float>(&loss, p.data(), t.data(), 4);
    CHECK(loss == 1.25f);  // (1 + 0 + 4 + 0) / 4, exact in fp32
    Rng rng(32);
    for (int n : {1, 33, 256 * 512}) {
      CAPTURE(n);
      std::vector<double> pred = rng.vec(n, -1, 1);
      const std::vector<double> target = rng.vec(n, -1, 1);
      const double dloss = 0.37;
      auto f = [&] {
        double l;
        pompc::ref::mse_forward<double>(&l, pred.data(), target.data(), n);
        return dloss * l;
      };
      const std::vector<double> d0 = rng.vec(n, -1, 1);
      std::vector<double> d = d0;
      pompc::ref::mse_backward<double>(d.data(), pred.data(), target.data(), dloss, n);
      CHECK(check_gradient("mse dpred", pred, added(d, d0), f, rng, 40));
    }
  }

  TEST_CASE("softmax / log_softmax: forward values, stability, backward vs finite differences") {
    Rng rng(33);
    // Known values: softmax(0, ln 3) = (1/4, 3/4), also after shifting by a huge constant.
    std::vector<float> x = {0.0f, std::log(3.0f), 1000.0f, 1000.0f + std::log(3.0f)}, y(4), ly(4);
    pompc::ref::softmax_forward<float>(y.data(), x.data(), 2, 2);
    pompc::ref::log_softmax_forward<float>(ly.data(), x.data(), 2, 2);
    for (int r = 0; r < 2; ++r) {
      // fp32: log(3) and the row max subtraction carry ~1e-7 relative rounding (1000 + log 3
      // rounds by 3e-5 absolute in fp32, hence the wider tolerance on the shifted row)
      const double tol = r == 0 ? 1e-6 : 1e-4;
      CHECK(y[2 * r] == doctest::Approx(0.25).epsilon(tol));
      CHECK(y[2 * r + 1] == doctest::Approx(0.75).epsilon(tol));
      CHECK(ly[2 * r] == doctest::Approx(std::log(0.25)).epsilon(tol));
      CHECK(ly[2 * r + 1] == doctest::Approx(std::log(0.75)).epsilon(tol));
    }
    for (int C : {1, 33, 101, 257})
      for (int rows : {1, 7}) {
        CAPTURE(C);
        CAPTURE(rows);
        const size_t n = static_cast<size_t>(rows) * C;
        std::vector<double> in = rng.vec(n, -3, 3), out(n);
        const std::vector<double> w = rng.vec(n, -1, 1);
        for (bool log_form : {false, true}) {
          CAPTURE(log_form);
          auto fwd = [&] {
            if (log_form)
              pompc::ref::log_softmax_forward<double>(out.data(), in.data(), rows, C);
            else
              pompc::ref::softmax_forward<double>(out.data(), in.data(), rows, C);
            return dot(w, out);
          };
          fwd();
          double worst = 0;  // rows of softmax sum to 1; log_softmax rows logsumexp to 0
          for (int r = 0; r < rows; ++r) {
            double s = 0;
            for (int c = 0; c < C; ++c)
              s += log_form ? std::exp(out[static_cast<size_t>(r) * C + c])
                            : out[static_cast<size_t>(r) * C + c];
            worst = std::max(worst, std::fabs(s - 1));
          }
          CHECK(worst < 1e-12);  // double sums of <= 257 terms
          const std::vector<double> d0 = rng.vec(n, -1, 1);
          std::vector<double> d = d0;
          if (log_form)
            pompc::ref::log_softmax_backward<double>(d.data(), w.data(), out.data(), rows, C);
          else
            pompc::ref::softmax_backward<double>(d.data(), w.data(), out.data(), rows, C);
          CHECK(check_gradient(log_form ? "log_softmax dinp" : "softmax dinp", in, added(d, d0),
                               fwd, rng));
        }
      }
  }
}
