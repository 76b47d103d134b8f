// concat / split and MSE (src/ref/basic.h): forward values, backward against double central
// differences (proving accumulation).
//   build/test_emu -ts=ops -tc='concat*,mse*'
#include <doctest/doctest.h>

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
}
