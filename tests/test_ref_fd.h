// Helpers for the reference-op tests (tests/test_ref_*.cpp): random data and the double-precision
// central-difference gradient check every reference backward is held to.
//
// check_gradient(what, x, analytic, loss, rng): for a sample of coordinates i of x (all of them
// when x is small), fd_i = (loss(x + h e_i) - loss(x - h e_i)) / (2h) with loss() evaluating the
// op's double instantiation on the current x; it must match analytic[i] within
// atol + rtol * max(|fd_i|, |analytic_i|).
// Default tolerance (h = 1e-5, atol 1e-6, rtol 1e-5): in double the truncation error is
// h^2 |f'''| / 6 ~ 1e-11 and the rounding error ~ 1e-16 |loss| / h <= 1e-8 for |loss| <= 1e3, two
// orders below the tolerance, while a wrong or missing term is off by O(1e-3) or more.
//
// The scalar loss of an op with output y is sum_i w_i y_i with random weights w, so w is the
// upstream gradient dout. Gradients are checked as (buffer after backward - buffer before), with
// the buffer pre-filled with random values: that also proves the backward accumulates.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace pompc::test::fd {

struct Rng {
  std::mt19937_64 gen;
  explicit Rng(uint64_t seed) : gen(seed) {}
  double uniform(double lo, double hi) {
    return std::uniform_real_distribution<double>(lo, hi)(gen);
  }
  int index(int n) { return std::uniform_int_distribution<int>(0, n - 1)(gen); }
  std::vector<double> vec(size_t n, double lo, double hi) {
    std::vector<double> v(n);
    for (double& x : v) x = uniform(lo, hi);
    return v;
  }
};

inline std::vector<float> to_float(const std::vector<double>& x) {
  return std::vector<float>(x.begin(), x.end());
}
inline std::vector<double> to_double(const std::vector<float>& x) {
  return std::vector<double>(x.begin(), x.end());
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// after - before, elementwise: the gradient a backward added to a pre-filled buffer.
inline std::vector<double> added(const std::vector<double>& after,
                                 const std::vector<double>& before) {
  std::vector<double> d(after.size());
  for (size_t i = 0; i < d.size(); ++i) d[i] = after[i] - before[i];
  return d;
}

inline bool check_gradient(const char* what, std::vector<double>& x,
                           const std::vector<double>& analytic, const std::function<double()>& loss,
                           Rng& rng, int max_checks = 300, double h = 1e-5, double atol = 1e-6,
                           double rtol = 1e-5) {
  REQUIRE(x.size() == analytic.size());
  const int n = static_cast<int>(x.size());
  std::vector<int> idx;
  if (n <= max_checks) {
    for (int i = 0; i < n; ++i) idx.push_back(i);
  } else {
    idx.push_back(0);
    idx.push_back(n - 1);
    while (static_cast<int>(idx.size()) < max_checks) idx.push_back(rng.index(n));
  }
  int bad = 0;
  double worst = 0;
  std::string first;
  for (int i : idx) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double lp = loss();
    x[i] = x0 - h;
    const double lm = loss();
    x[i] = x0;
    const double fd = (lp - lm) / (2 * h), an = analytic[i];
    const double err = std::fabs(fd - an);
    const double tol = atol + rtol * std::max(std::fabs(fd), std::fabs(an));
    worst = std::max(worst, err / tol);
    if (!(err <= tol) && bad++ < 5) {
      char buf[160];
      std::snprintf(buf, sizeof buf, "  [%d] analytic %.10g finite-diff %.10g\n", i, an, fd);
      first += buf;
    }
  }
  if (bad)
    std::printf("%s: %d of %zu gradient entries mismatch (worst err/tol %.3g)\n%s", what, bad,
                idx.size(), worst, first.c_str());
  return bad == 0;
}

// max |a - b| / (atol + rtol |b|) <= 1 over all entries, with a report on failure.
inline bool close(const char* what, const std::vector<double>& got, const std::vector<double>& ref,
                  double atol, double rtol) {
  if (got.size() != ref.size()) {
    std::printf("%s: size %zu vs %zu\n", what, got.size(), ref.size());
    return false;
  }
  size_t bad = 0;
  double max_abs = 0;
  std::string first;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = std::fabs(got[i] - ref[i]);
    if (d > max_abs || std::isnan(d)) max_abs = std::isnan(d) ? INFINITY : d;
    if (!(d <= atol + rtol * std::fabs(ref[i])) && bad++ < 5) {
      char buf[160];
      std::snprintf(buf, sizeof buf, "  [%zu] got %.10g ref %.10g\n", i, got[i], ref[i]);
      first += buf;
    }
  }
  if (bad)
    std::printf("%s: %zu of %zu mismatch (atol %g rtol %g), max abs err %.3g\n%s", what, bad,
                got.size(), atol, rtol, max_abs, first.c_str());
  return bad == 0;
}

}  // namespace pompc::test::fd
