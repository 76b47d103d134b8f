// RunningScale (src/ref/scale.h): P5 / P95 linear-interpolated percentiles against hand-computed
// values, the clamp at 1, the lerp towards the batch value, NaN ordering as torch.sort.
//   build/test_emu -ts=ops -tc='percentile*,running_scale*'
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "common.h"
#include "ref/scale.h"
#include "test_ref_fd.h"

using pompc::ref::percentile_linear;
using pompc::ref::running_scale_update;

TEST_SUITE("ops") {
  TEST_CASE("percentile_linear: hand-computed values (torch.quantile 'linear')") {
    std::vector<double> scratch(256);
    // 0..255 shuffled: position q * 255 / 100 -> P5 = 12.75, P95 = 242.25, P50 = 127.5.
    std::vector<double> x(256);
    std::iota(x.begin(), x.end(), 0.0);
    std::shuffle(x.begin(), x.end(), std::mt19937(7));
    CHECK(percentile_linear<double>(scratch.data(), x.data(), 256, 5.0) == 12.75);
    CHECK(percentile_linear<double>(scratch.data(), x.data(), 256, 95.0) == 242.25);
    CHECK(percentile_linear<double>(scratch.data(), x.data(), 256, 50.0) == 127.5);
    CHECK(percentile_linear<double>(scratch.data(), x.data(), 256, 0.0) == 0.0);
    CHECK(percentile_linear<double>(scratch.data(), x.data(), 256, 100.0) == 255.0);
    // Two values {3, 1}: P5 = 1 * 0.95 + 3 * 0.05 = 1.1, P95 = 1 * 0.05 + 3 * 0.95 = 2.9.
    std::vector<double> two = {3.0, 1.0};
    CHECK(percentile_linear<double>(scratch.data(), two.data(), 2, 5.0) ==
          doctest::Approx(1.1).epsilon(1e-15));
    CHECK(percentile_linear<double>(scratch.data(), two.data(), 2, 95.0) ==
          doctest::Approx(2.9).epsilon(1e-15));
    // Eleven values 0, 10, ..., 100 (descending): position 0.5 -> 5, position 9.5 -> 95.
    std::vector<float> tens(11), fs(11);
    for (int i = 0; i < 11; ++i) tens[i] = 100.0f - 10.0f * i;
    CHECK(percentile_linear<float>(fs.data(), tens.data(), 11, 5.0f) == 5.0f);
    CHECK(percentile_linear<float>(fs.data(), tens.data(), 11, 95.0f) == 95.0f);
    // A single value is every percentile.
    const float one = -4.0f;
    CHECK(percentile_linear<float>(fs.data(), &one, 1, 5.0f) == -4.0f);
    CHECK(percentile_linear<float>(fs.data(), &one, 1, 95.0f) == -4.0f);
  }

  TEST_CASE("running_scale_update: v = max(P95 - P5, 1), S += 0.01 (v - S)") {
    std::vector<float> x(256), scratch(256);
    std::iota(x.begin(), x.end(), 0.0f);
    float S = 1.0f;
    running_scale_update<float>(&S, x.data(), 256, scratch.data());
    // v = 242.25 - 12.75 = 229.5; S = 1 + 0.01 * 228.5 = 3.285 (fp32 lerp: a few ulp)
    CHECK(S == doctest::Approx(3.285).epsilon(1e-6));
    // A narrow batch (spread < 1) pulls S towards 1, not towards the spread.
    std::vector<float> narrow(64, 0.0f);
    for (int i = 0; i < 64; ++i) narrow[i] = 0.001f * i;
    float S2 = 3.0f;
    running_scale_update<float>(&S2, narrow.data(), 64, scratch.data());
    CHECK(S2 == doctest::Approx(3.0 + 0.01 * (1.0 - 3.0)).epsilon(1e-6));
    // Repeated updates with the same batch converge to v geometrically: S_t - v = 0.99^t (S_0 - v).
    double Sd = 1.0;
    std::vector<double> xd(x.begin(), x.end()), sd(256);
    for (int t = 0; t < 500; ++t) running_scale_update<double>(&Sd, xd.data(), 256, sd.data());
    CHECK(Sd == doctest::Approx(229.5 + std::pow(0.99, 500) * (1.0 - 229.5)).epsilon(1e-12));
  }

  TEST_CASE("running_scale_update: NaN sorts last (torch.sort), so P5 / P95 of 256 stay finite") {
    std::vector<float> x(256), scratch(256);
    std::iota(x.begin(), x.end(), 0.0f);
    x[17] = std::numeric_limits<float>::quiet_NaN();  // the value 17 is gone, NaN at the end
    // sorted: 0..16, 18..255, NaN. P5 at 12.75 -> 12.75; P95 at 242.25 -> between 243 and 244.
    CHECK(percentile_linear<float>(scratch.data(), x.data(), 256, 5.0f) == 12.75f);
    CHECK(percentile_linear<float>(scratch.data(), x.data(), 256, 95.0f) == 243.25f);
    CHECK(std::isnan(scratch[255]));
    float S = 1.0f;
    running_scale_update<float>(&S, x.data(), 256, scratch.data());
    CHECK(S == doctest::Approx(1.0 + 0.01 * (243.25 - 12.75 - 1.0)).epsilon(1e-6));
    CHECK_THROWS_AS(running_scale_update<float>(&S, x.data(), 0, scratch.data()), pompc::Error);
  }
}
