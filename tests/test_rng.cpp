// Philox4x32-10 (kernels/philox.cuh): known answers and the derived uniform / normal draws.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "philox.cuh"

using pompc::u32x4;

TEST_SUITE("ops") {
  TEST_CASE("philox4x32_10 matches Random123's known-answer vectors") {
    struct Kat {
      u32x4 ctr;
      uint32_t k0, k1;
      u32x4 want;
    };
    const Kat kats[] = {
        {{0, 0, 0, 0}, 0, 0, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
         0xffffffff,
         0xffffffff,
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
         0xa4093822,
         0x299f31d0,
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (const Kat& k : kats) {
      const u32x4 got = pompc::philox4x32_10(k.ctr, k.k0, k.k1);
      CHECK(got.x == k.want.x);
      CHECK(got.y == k.want.y);
      CHECK(got.z == k.want.z);
      CHECK(got.w == k.want.w);
    }
  }

  TEST_CASE("philox_u32 numbers draws 4 to a block, keyed by seed and offset") {
    const u32x4 blk1 = pompc::philox4x32_10({1, 0, 7, 0}, 42, 0);
    CHECK(pompc::philox_u32(42, 7, 4) == blk1.x);
    CHECK(pompc::philox_u32(42, 7, 7) == blk1.w);
    CHECK(pompc::philox_u32(42, 7, 4) != pompc::philox_u32(43, 7, 4));
    CHECK(pompc::philox_u32(42, 7, 4) != pompc::philox_u32(42, 8, 4));
  }

  TEST_CASE("philox_uniform lies in (0, 1] and philox_normal has unit moments") {
    const int n = 200000;
    double sum = 0, sumsq = 0, usum = 0;
    float umin = 2, umax = -1;
    for (int i = 0; i < n; ++i) {
      const float u = pompc::philox_uniform(5, 1, i);
      umin = std::fmin(umin, u);
      umax = std::fmax(umax, u);
      usum += u;
      const double z = pompc::philox_normal(5, 2, i);
      sum += z;
      sumsq += z * z;
    }
    CHECK(umin > 0.0f);
    CHECK(umax <= 1.0f);
    // Standard errors at n = 2e5: mean 0.00065 (uniform), 0.0022 (normal), var 0.0032.
    CHECK(usum / n == doctest::Approx(0.5).epsilon(0.005));
    CHECK(std::fabs(sum / n) < 0.01);
    CHECK(sumsq / n == doctest::Approx(1.0).epsilon(0.015));
  }

  TEST_CASE("philox_normal_f: within 12 u of philox_normal (relative), tails and u1 near 1") {
    // (|f - d| - 1e-14) / (u |d|), u = 2^-24: the bound of kernels/philox.cuh is 12
    // (kBoxMullerFRelErr; 1e-14 absolute is the double reference's own error at a zero of cos).
    const double u = 0x1p-24;
    double worst = 0, worst_abs = 0;
    auto check = [&](float f, float d) {
      const double err = std::fabs(double(f) - double(d));
      worst_abs = std::fmax(worst_abs, err);
      if (err <= 1e-14) return;
      const double rel = d == 0 ? INFINITY : (err - 1e-14) / (u * std::fabs(double(d)));
      if (!(rel <= worst)) worst = rel;  // NaN stays
    };
    // Many draws through the public functions (the same words, the draw index's branch).
    const uint64_t n = uint64_t{1} << 22;
    for (uint64_t i = 0; i < n; ++i)
      check(pompc::philox_normal_f(77, 3, i), pompc::philox_normal(77, 3, i));
    const double worst_draws = worst;
    // The extreme words: u1 = 2^-32 (the largest r, 6.66), u1 around 1/2 (the log / log1p
    // switch), u1 within a few 2^-32 of 1 (r ~ 2^-15, where u1 in float would round to 1), and
    // angles at and around every octant boundary (t = k pi/4) in both branches.
    std::vector<uint32_t> as = {0,           1,           2,           3,           0x7FFFFFFEu,
                                0x7FFFFFFFu, 0x80000000u, 0x80000001u, 0xFFFFFFF0u, 0xFFFFFFFCu,
                                0xFFFFFFFDu, 0xFFFFFFFEu, 0xFFFFFFFFu};
    std::vector<uint32_t> bs;
    for (uint32_t o = 0; o < 8; ++o)
      for (int64_t dlt : {-2, -1, 0, 1, 2, 1000})
        bs.push_back(static_cast<uint32_t>(int64_t{o} * 0x20000000 + dlt));
    bs.push_back(0xFFFFFFFFu);
    for (uint64_t k = 0; k < 64; ++k) {  // and 64 random words of each
      as.push_back(pompc::philox_u32(9, 1, k));
      bs.push_back(pompc::philox_u32(9, 2, k));
    }
    for (uint32_t a : as)
      for (uint32_t b : bs)
        for (bool sine : {false, true})
          check(pompc::box_muller_f(a, b, sine), pompc::box_muller(a, b, sine));
    MESSAGE("philox_normal_f: max |f - d| / (u |d|) "
            << worst_draws << " over 2^22 draws, " << worst
            << " with the extreme words; max |f - d| " << worst_abs);
    CHECK(worst_draws <= 12);
    CHECK(worst <= 12);
    CHECK(double(pompc::kBoxMullerFRelErr) == 12 * u);
    // The tails are reached: the largest r and a tiny r (u1 one 2^-32 below 1).
    CHECK(pompc::box_muller_f(0, 0, false) == doctest::Approx(std::sqrt(64 * std::log(2.0))));
    CHECK(pompc::box_muller_f(0xFFFFFFFEu, 0, false) ==
          doctest::Approx(std::sqrt(2.0) * 0x1p-16).epsilon(1e-6));
    CHECK(pompc::box_muller_f(0xFFFFFFFFu, 0x12345678u, true) == 0.0f);
  }
}
