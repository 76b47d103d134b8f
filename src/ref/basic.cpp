// src/ref/basic.cpp: row copies, concat / split, MSE. Run book: basic.h.
#include "ref/basic.h"

#include <algorithm>

#include "common.h"

namespace pompc::ref {

void copy_rows(float* dst, int64_t ldd, const float* src, int64_t lds, int rows, int cols) {
  POMPC_REQUIRE(rows >= 0 && cols >= 0 && ldd >= cols && lds >= cols,
                "copy_rows: rows (%d), cols (%d) must be >= 0 and the strides (%lld, %lld) >= cols",
                rows, cols, static_cast<long long>(ldd), static_cast<long long>(lds));
  for (int r = 0; r < rows; ++r) std::copy(src + r * lds, src + r * lds + cols, dst + r * ldd);
}

void repeat_rows(float* dst, int64_t ldd, const float* src, int rows, int reps, int cols) {
  POMPC_REQUIRE(rows >= 0 && reps >= 0 && cols >= 0 && ldd >= cols,
                "repeat_rows: rows (%d), reps (%d), cols (%d) must be >= 0 and the stride (%lld) "
                ">= cols",
                rows, reps, cols, static_cast<long long>(ldd));
  for (int r = 0; r < rows; ++r)
    for (int k = 0; k < reps; ++k)
      std::copy(src + static_cast<int64_t>(r) * cols, src + static_cast<int64_t>(r + 1) * cols,
                dst + (static_cast<int64_t>(r) * reps + k) * ldd);
}

template <typename T>
void concat_forward(T* out, const T* x1, const T* x2, int rows, int n1, int n2) {
  POMPC_REQUIRE(rows >= 0 && n1 >= 0 && n2 >= 0,
                "concat_forward: rows (%d), n1 (%d), n2 (%d) must be >= 0", rows, n1, n2);
  const int n = n1 + n2;
#pragma omp parallel for schedule(static) if (int64_t{rows} * n > (1 << 16))
  for (int r = 0; r < rows; ++r) {
    T* o = out + static_cast<int64_t>(r) * n;
    std::copy(x1 + static_cast<int64_t>(r) * n1, x1 + static_cast<int64_t>(r + 1) * n1, o);
    std::copy(x2 + static_cast<int64_t>(r) * n2, x2 + static_cast<int64_t>(r + 1) * n2, o + n1);
  }
}

template <typename T>
void concat_backward(T* dx1, T* dx2, const T* dout, int rows, int n1, int n2) {
  POMPC_REQUIRE(rows >= 0 && n1 >= 0 && n2 >= 0,
                "concat_backward: rows (%d), n1 (%d), n2 (%d) must be >= 0", rows, n1, n2);
  const int n = n1 + n2;
#pragma omp parallel for schedule(static) if (int64_t{rows} * n > (1 << 16))
  for (int r = 0; r < rows; ++r) {
    const T* d = dout + static_cast<int64_t>(r) * n;
    if (dx1 != nullptr)
      for (int c = 0; c < n1; ++c) dx1[static_cast<int64_t>(r) * n1 + c] += d[c];
    if (dx2 != nullptr)
      for (int c = 0; c < n2; ++c) dx2[static_cast<int64_t>(r) * n2 + c] += d[n1 + c];
  }
}

template <typename T>
void mse_forward(T* loss, const T* pred, const T* target, int64_t n) {
  POMPC_REQUIRE(n >= 1, "mse_forward: n (%lld) must be >= 1 (the mean of nothing is undefined)",
                static_cast<long long>(n));
  // Fixed chunks summed in order: the result does not depend on the thread count.
  constexpr int kChunks = 64;
  double part[kChunks];
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int ch = 0; ch < kChunks; ++ch) {
    double s = 0;
    for (int64_t i = n * ch / kChunks; i < n * (ch + 1) / kChunks; ++i) {
      const double d = static_cast<double>(pred[i]) - static_cast<double>(target[i]);
      s += d * d;
    }
    part[ch] = s;
  }
  double s = 0;
  for (int ch = 0; ch < kChunks; ++ch) s += part[ch];
  *loss = static_cast<T>(s / static_cast<double>(n));
}

template <typename T>
void mse_backward(T* dpred, const T* pred, const T* target, T dloss, int64_t n) {
  POMPC_REQUIRE(n >= 1, "mse_backward: n (%lld) must be >= 1", static_cast<long long>(n));
  const T k = static_cast<T>(2.0 * static_cast<double>(dloss) / static_cast<double>(n));
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) dpred[i] += k * (pred[i] - target[i]);
}

#define POMPC_INSTANTIATE_BASIC(T)                                        \
  template void concat_forward<T>(T*, const T*, const T*, int, int, int); \
  template void concat_backward<T>(T*, T*, const T*, int, int, int);      \
  template void mse_forward<T>(T*, const T*, const T*, int64_t);          \
  template void mse_backward<T>(T*, const T*, const T*, T, int64_t);
POMPC_INSTANTIATE_BASIC(float)
POMPC_INSTANTIATE_BASIC(double)
#undef POMPC_INSTANTIATE_BASIC

}  // namespace pompc::ref
