// src/ref/basic.cpp: concat / split, MSE, softmax and log-softmax rows. Run book: basic.h.
#include "ref/basic.h"

#include <algorithm>
#include <cmath>

#include "common.h"

namespace pompc::ref {
namespace {

void check_rows(const char* who, int rows, int C) {
  POMPC_REQUIRE(rows >= 0 && C >= 1, "%s: rows (%d) must be >= 0 and C (%d) >= 1", who, rows, C);
}

// Row maximum and log-sum-exp of a row (shifted by the max), summed in double.
template <typename T>
void row_max_lse(const T* x, int C, T* mx, T* lse) {
  T m = x[0];
  for (int c = 1; c < C; ++c) m = std::max(m, x[c]);
  double s = 0;
  for (int c = 0; c < C; ++c) s += std::exp(static_cast<double>(x[c] - m));
  *mx = m;
  *lse = static_cast<T>(std::log(s));
}

}  // namespace

void copy_rows(float* dst, int64_t ldd, const float* src, int64_t lds, int rows, int cols) {
  POMPC_REQUIRE(rows >= 0 && cols >= 0 && ldd >= cols && lds >= cols,
                "copy_rows: rows (%d), cols (%d) must be >= 0 and the strides (%lld, %lld) >= cols",
                rows, cols, static_cast<long long>(ldd), static_cast<long long>(lds));
  for (int r = 0; r < rows; ++r) std::copy(src + r * lds, src + r * lds + cols, dst + r * ldd);
}

void repeat_rows(float* dst, const float* src, int rows, int reps, int cols) {
  POMPC_REQUIRE(rows >= 0 && reps >= 0 && cols >= 0,
                "repeat_rows: rows (%d), reps (%d), cols (%d) must be >= 0", rows, reps, cols);
  for (int r = 0; r < rows; ++r)
    for (int k = 0; k < reps; ++k)
      std::copy(src + static_cast<int64_t>(r) * cols, src + static_cast<int64_t>(r + 1) * cols,
                dst + (static_cast<int64_t>(r) * reps + k) * cols);
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

template <typename T>
void softmax_forward(T* out, const T* inp, int rows, int C) {
  check_rows("softmax_forward", rows, C);
#pragma omp parallel for schedule(static) if (int64_t{rows} * C > (1 << 14))
  for (int r = 0; r < rows; ++r) {
    const T* x = inp + static_cast<int64_t>(r) * C;
    T* y = out + static_cast<int64_t>(r) * C;
    T mx, lse;
    row_max_lse(x, C, &mx, &lse);
    for (int c = 0; c < C; ++c) y[c] = std::exp(x[c] - mx - lse);
  }
}

template <typename T>
void softmax_backward(T* dinp, const T* dout, const T* out, int rows, int C) {
  check_rows("softmax_backward", rows, C);
#pragma omp parallel for schedule(static) if (int64_t{rows} * C > (1 << 14))
  for (int r = 0; r < rows; ++r) {
    const T* dy = dout + static_cast<int64_t>(r) * C;
    const T* y = out + static_cast<int64_t>(r) * C;
    double dot = 0;
    for (int c = 0; c < C; ++c) dot += static_cast<double>(dy[c]) * y[c];
    const T d = static_cast<T>(dot);
    for (int c = 0; c < C; ++c) dinp[static_cast<int64_t>(r) * C + c] += y[c] * (dy[c] - d);
  }
}

template <typename T>
void log_softmax_forward(T* out, const T* inp, int rows, int C) {
  check_rows("log_softmax_forward", rows, C);
#pragma omp parallel for schedule(static) if (int64_t{rows} * C > (1 << 14))
  for (int r = 0; r < rows; ++r) {
    const T* x = inp + static_cast<int64_t>(r) * C;
    T* y = out + static_cast<int64_t>(r) * C;
    T mx, lse;
    row_max_lse(x, C, &mx, &lse);
    for (int c = 0; c < C; ++c) y[c] = x[c] - mx - lse;
  }
}

template <typename T>
void log_softmax_backward(T* dinp, const T* dout, const T* out, int rows, int C) {
  check_rows("log_softmax_backward", rows, C);
#pragma omp parallel for schedule(static) if (int64_t{rows} * C > (1 << 14))
  for (int r = 0; r < rows; ++r) {
    const T* dy = dout + static_cast<int64_t>(r) * C;
    const T* y = out + static_cast<int64_t>(r) * C;
    double s = 0;
    for (int c = 0; c < C; ++c) s += dy[c];
    const T st = static_cast<T>(s);
    for (int c = 0; c < C; ++c)
      dinp[static_cast<int64_t>(r) * C + c] += dy[c] - std::exp(y[c]) * st;
  }
}

#define POMPC_INSTANTIATE_BASIC(T)                                        \
  template void concat_forward<T>(T*, const T*, const T*, int, int, int); \
  template void concat_backward<T>(T*, T*, const T*, int, int, int);      \
  template void mse_forward<T>(T*, const T*, const T*, int64_t);          \
  template void mse_backward<T>(T*, const T*, const T*, T, int64_t);      \
  template void softmax_forward<T>(T*, const T*, int, int);               \
  template void softmax_backward<T>(T*, const T*, const T*, int, int);    \
  template void log_softmax_forward<T>(T*, const T*, int, int);           \
  template void log_softmax_backward<T>(T*, const T*, const T*, int, int);
POMPC_INSTANTIATE_BASIC(float)
POMPC_INSTANTIATE_BASIC(double)
#undef POMPC_INSTANTIATE_BASIC

}  // namespace pompc::ref
