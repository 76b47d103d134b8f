// src/env/numpy_random.cpp: numpy's legacy RandomState draws (see numpy_random.h).
//
// numpy computes r2 = x1*x1 + x2*x2 with two roundings; g++ would fuse it into one FMA at -O2
// with -march=native, which changes r2 in the last bit and with it every normal draw. Hence:
#pragma GCC optimize("fp-contract=off")

#include "env/numpy_random.h"

#include <cmath>

namespace pompc::env {

double NumpyRandom::random_sample() {
  const uint32_t a = static_cast<uint32_t>(mt_()) >> 5;
  const uint32_t b = static_cast<uint32_t>(mt_()) >> 6;
  return (a * 67108864.0 + b) / 9007199254740992.0;
}

double NumpyRandom::uniform(double lo, double hi) {
  const double range = hi - lo;
  return lo + range * random_sample();
}

double NumpyRandom::randn() {
  if (has_gauss_) {
    has_gauss_ = false;
    const double g = gauss_;
    gauss_ = 0.0;
    return g;
  }
  double x1, x2, r2;
  do {
    x1 = 2.0 * random_sample() - 1.0;
    x2 = 2.0 * random_sample() - 1.0;
    r2 = x1 * x1 + x2 * x2;
  } while (r2 >= 1.0 || r2 == 0.0);
  const double f = std::sqrt(-2.0 * std::log(r2) / r2);
  gauss_ = f * x1;
  has_gauss_ = true;
  return f * x2;
}

}  // namespace pompc::env
