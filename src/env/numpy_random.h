// src/env/numpy_random.h: numpy's legacy RandomState, bit for bit, so a seed means what it means
// in dm_control (suite.load(domain, task, task_kwargs={'random': seed}) builds
// np.random.RandomState(seed) and every initial state is drawn from it).
//
//   MT19937 seeded with init_genrand(seed): the same stream as std::mt19937(seed).
//   random_sample()  ((a >> 5) * 2^26 + (b >> 6)) / 2^53 from two 32-bit words a, b (rand()).
//   uniform(lo, hi)  lo + (hi - lo) * random_sample().
//   randn()          polar Box-Muller: draw x1, x2 = 2 u - 1 until 0 < r2 = x1^2 + x2^2 < 1,
//                    f = sqrt(-2 ln(r2) / r2); return f x2 and keep f x1 for the next call.
// The arithmetic is compiled without fused multiply-add (numpy's is), see numpy_random.cpp.
// Test: build/test_emu -ts=env -tc='*numpy*' (known values from numpy 2.x, seed 1 and 12345).
#pragma once

#include <cstdint>
#include <random>

namespace pompc::env {

class NumpyRandom {
 public:
  explicit NumpyRandom(uint32_t seed) : mt_(seed) {}

  double random_sample();                // numpy rand(): uniform in [0, 1), 53 bits
  double uniform(double lo, double hi);  // numpy uniform(lo, hi)
  double randn();                        // numpy randn(): standard normal, cached pair

 private:
  std::mt19937 mt_;
  bool has_gauss_ = false;  // a cached second normal is waiting
  double gauss_ = 0.0;
};

}  // namespace pompc::env
