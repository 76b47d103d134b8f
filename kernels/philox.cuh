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

// Standard normal draw i: Box-Muller on the word pair (2j, 2j+1) of j = i / 2, the cosine branch
// for even i and the sine branch for odd i. Computed in double and rounded once, so host and
// device agree bit for bit (their float log/cos may differ by an ulp; in double the difference
// does not survive the rounding to float except in vanishingly rare ties).
POMPC_HD float philox_normal(uint64_t seed, uint64_t offset, uint64_t i) {
  const uint64_t j = i >> 1;
  const uint32_t a = philox_u32(seed, offset, 2 * j), b = philox_u32(seed, offset, 2 * j + 1);
  const double u1 = (static_cast<double>(a) + 1.0) * (1.0 / 4294967296.0);  // (0, 1]
  const double u2 = static_cast<double>(b) * (1.0 / 4294967296.0);          // [0, 1)
  const double r = sqrt(-2.0 * log(u1));
  const double t = 6.283185307179586 * u2;
  return static_cast<float>((i & 1) ? r * sin(t) : r * cos(t));
}

}  // namespace pompc
