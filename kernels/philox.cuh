// kernels/philox.cuh: counter-based random numbers, one definition for host and device.
//
// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11). The CUDA
// kernels and the reference ops (src/ref/) draw from these same functions, so both backends see
// identical noise and tests can compare planners exactly. Known-answer test: tests/test_rng.cpp.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define POMPC_HD __host__ __device__ __forceinline__
#else
#define POMPC_HD inline
#endif

namespace pompc {

// ---- Philox4x32-10 (Salmon et al., SC'11), one function for host and device --------------------
// Counter (4 words) and key (2 words) -> 4 random words.
struct u32x4 {
  uint32_t x, y, z, w;
};

POMPC_HD uint32_t mulhi32(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __umulhi(a, b);
#else
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
#endif
}

POMPC_HD u32x4 philox4x32_10(u32x4 c, uint32_t k0, uint32_t k1) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;  // round multipliers
  constexpr uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;  // Weyl key increments
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      k0 += W0;
      k1 += W1;
    }
    const uint32_t hi0 = mulhi32(M0, c.x), lo0 = M0 * c.x;
    const uint32_t hi1 = mulhi32(M1, c.z), lo1 = M1 * c.z;
    c = u32x4{hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0};
  }
  return c;
}

// Stream convention used everywhere in pompc: the key is the 64-bit seed, the counter is
// (block index lo, block index hi, offset lo, offset hi). `offset` separates independent uses of
// one seed (a step counter times a purpose tag, say); `i` numbers the draws within a use. One
// Philox call yields four words, so draw i uses word i % 4 of block i / 4.
POMPC_HD uint32_t philox_u32(uint64_t seed, uint64_t offset, uint64_t i) {
  const uint64_t blk = i >> 2;
  const u32x4 r = philox4x32_10(u32x4{static_cast<uint32_t>(blk), static_cast<uint32_t>(blk >> 32),
                                      static_cast<uint32_t>(offset),
                                      static_cast<uint32_t>(offset >> 32)},
                                static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  switch (i & 3) {
    case 0: return r.x;
    case 1: return r.y;
    case 2: return r.z;
    default: return r.w;
  }
}

// Where an op's Philox offset comes from: `value`, plus the uint64 at `base` when base is set
// (backend memory, read when the op runs, not when it is issued). The world model keeps its
// update counter there and advances it with an op, so a captured CUDA graph of an update draws
// fresh numbers on every replay (the planner keeps its plan step's base there the same way); a
// plain uint64_t converts to {value, no base}; `offset + k` moves the value, not the base.
struct PhiloxOffset {
  uint64_t value = 0;
  const uint64_t* base = nullptr;
  POMPC_HD PhiloxOffset(uint64_t v = 0, const uint64_t* b = nullptr) : value(v), base(b) {}
  POMPC_HD uint64_t resolve() const { return base ? value + *base : value; }
  POMPC_HD PhiloxOffset operator+(uint64_t k) const { return PhiloxOffset(value + k, base); }
};

// Uniform in (0, 1]: the top 24 bits, shifted by half an ulp so that 0 never appears (log-safe).
POMPC_HD float philox_uniform(uint64_t seed, uint64_t offset, uint64_t i) {
  return (static_cast<float>(philox_u32(seed, offset, i) >> 8) + 1.0f) * (1.0f / 16777216.0f);
}

// Box-Muller on one word pair: r cos t (sine: r sin t), r = sqrt(-2 log u1), t = 2 pi u2, u1 =
// (a + 1) 2^-32 in (0, 1], u2 = b 2^-32 in [0, 1). Computed in double and rounded once, so host
// and device agree bit for bit (their float log/cos may differ by an ulp; in double the
// difference does not survive the rounding to float except in vanishingly rare ties).
POMPC_HD float box_muller(uint32_t a, uint32_t b, bool sine) {
  const double u1 = (static_cast<double>(a) + 1.0) * (1.0 / 4294967296.0);  // (0, 1]
  const double u2 = static_cast<double>(b) * (1.0 / 4294967296.0);          // [0, 1)
  const double r = sqrt(-2.0 * log(u1));
  const double t = 6.283185307179586 * u2;
  return static_cast<float>(sine ? r * sin(t) : r * cos(t));
}

// Standard normal draw i: box_muller on the word pair (2j, 2j+1) of j = i / 2, the cosine branch
// for even i and the sine branch for odd i. The definition of pompc's noise: the reference ops
// and the golden fixtures use it; some kernels use philox_normal_f below.
POMPC_HD float philox_normal(uint64_t seed, uint64_t offset, uint64_t i) {
  const uint64_t j = i >> 1;
  const uint32_t a = philox_u32(seed, offset, 2 * j), b = philox_u32(seed, offset, 2 * j + 1);
  return box_muller(a, b, i & 1);
}

// box_muller in float, for kernels where the double Box-Muller would be the serial bottleneck
// (kernels/policy.cu, kernels/prior.cu): the same words and branch, computed with float logf /
// log1pf / sqrtf / sincosf (the accurate functions, no fast-math intrinsics) so that every step
// has a small RELATIVE error:
//   -log u1:  logf((a + 1) 2^-32) for u1 < 1/2; above, log1pf(-(~a) 2^-32) (1 - u1 = ~a 2^-32
//             exactly: u1 itself would round to 1 in float near 1 and lose the small r, ~2^-15)
//   angle:    2 pi b 2^-32 = k pi/2 + d with |d| <= pi/4, k and d from b's bits in integers (the
//             octant o = b >> 29; d = +-(pi/4) 2^-29 times a 29-bit integer), then cos t =
//             +-cos d or +-sin d by k mod 4 (sin t = cos(t - pi/2)): a result near 0 comes from
//             sin d with d near 0, so it too is accurate relative to itself.
// Error bound against box_muller, relative to its |result|, in units of u = 2^-24 (CUDA's
// documented maxima: logf, log1pf 1 ulp, sqrtf correctly rounded, sincosf 2 ulp):
//   d 2.5 (the rounding of the integer, of pi/4 2^-29 and of their product); cos d or sin d:
//   2.5 from d (d tan d <= 1, d / tan d <= 1) + 4 (2 ulp); -log u1: 1.44 (the rounding of u1 or
//   1 - u1 times the condition number, largest at u1 = 1/2) + 2 (1 ulp), so r 1.72 + 1 (sqrtf);
//   the product 1; box_muller's own rounding to float 1. In all:
//     |box_muller_f - box_muller| <= 12 u |box_muller| + 1e-14   (~7e-7 relative)
//   (1e-14: box_muller's own error near a zero of cos or sin, r times the double rounding of t,
//   where box_muller_f returns an exact 0 or a relatively accurate tiny value). With glibc's
//   functions (< 1 ulp) up to ~6 u is reached (tests/test_rng.cpp checks the bound over 2^22
//   draws and the extreme words; tests/test_kernels_prior.cpp with the device's own functions,
//   through prior_sample).
constexpr float kBoxMullerFRelErr = 12.0f * 0x1p-24f;

POMPC_HD float box_muller_f(uint32_t a, uint32_t b, bool sine) {
  const float nl = a < 0x80000000u ? -logf(static_cast<float>(a + 1u) * 0x1p-32f)
                                   : -log1pf(-static_cast<float>(~a) * 0x1p-32f);
  const float r = sqrtf(2.0f * nl);
  // t = o pi/4 + (pi/4) m 2^-29 = k pi/2 + d; an odd octant rounds up to the next k, d < 0.
  const uint32_t o = b >> 29, m = b & 0x1FFFFFFFu;
  constexpr float kPi4 = 1.46291807926715968e-9f;  // pi/4 2^-29
  const float d =
      (o & 1) ? -static_cast<float>(0x20000000u - m) * kPi4 : static_cast<float>(m) * kPi4;
  const uint32_t k = ((o + 1) >> 1) - (sine ? 1u : 0u);  // mod 4
  float s, c;
  sincosf(d, &s, &c);
  const float v = (k & 1) ? s : c;  // cos(k pi/2 + d) = c, -s, -c, s for k mod 4 = 0, 1, 2, 3
  return (((k + 1) & 2) ? -v : v) * r;
}

// philox_normal(seed, offset, i) in float: box_muller_f on the same words. Draw i's pair j = i / 2
// is words 2j, 2j + 1: words 0, 1 or 2, 3 of Philox block i / 4, computed once (philox_normal
// runs the block twice).
POMPC_HD float philox_normal_f(uint64_t seed, uint64_t offset, uint64_t i) {
  const u32x4 w =
      philox4x32_10(u32x4{static_cast<uint32_t>(i >> 2), static_cast<uint32_t>(i >> 34),
                          static_cast<uint32_t>(offset), static_cast<uint32_t>(offset >> 32)},
                    static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  const bool hi = i & 2;
  return box_muller_f(hi ? w.z : w.x, hi ? w.w : w.y, i & 1);
}

}  // namespace pompc
