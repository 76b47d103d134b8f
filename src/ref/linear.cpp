// src/ref/linear.cpp: Linear and ensemble Linear on top of the reference GEMM. Run book: linear.h.
#include "ref/linear.h"

#include <algorithm>
#include <cstdint>

#include "common.h"
#include "op_types.h"  // resolve_row_stride
#include "ref/gemm.h"

namespace pompc::ref {
namespace {

void check_sizes(const char* who, int B, int in, int out_features) {
  POMPC_REQUIRE(B >= 0, "%s: row count B (%d) must be >= 0", who, B);
  POMPC_REQUIRE(in >= 1 && out_features >= 1,
                "%s: in (%d) and out_features (%d) must be >= 1 (a layer needs both dimensions)",
                who, in, out_features);
}

}  // namespace

template <typename T>
void add_bias(T* out, const T* bias, int rows, int cols) {
  if (bias == nullptr) return;
#pragma omp parallel for schedule(static) if (int64_t{rows} * cols > (1 << 16))
  for (int r = 0; r < rows; ++r) {
    T* o = out + static_cast<int64_t>(r) * cols;
    for (int c = 0; c < cols; ++c) o[c] = o[c] + bias[c];
  }
}

template <typename T>
void add_column_sums(T* dst, const T* src, int rows, int cols) {
  constexpr int kChunk = 64;
  const int nchunks = (cols + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (int64_t{rows} * cols > (1 << 15))
  for (int ch = 0; ch < nchunks; ++ch) {
    const int c0 = ch * kChunk, c1 = std::min(cols, c0 + kChunk);
    double acc[kChunk] = {};
    for (int r = 0; r < rows; ++r) {
      const T* s = src + static_cast<int64_t>(r) * cols;
      for (int c = c0; c < c1; ++c) acc[c - c0] += static_cast<double>(s[c]);
    }
    for (int c = c0; c < c1; ++c) dst[c] += static_cast<T>(acc[c - c0]);
  }
}

template <typename T>
void linear_forward(T* out, const T* inp, const T* weight, const T* bias, int B, int in,
                    int out_features, int64_t ld_inp) {
  check_sizes("linear_forward", B, in, out_features);
  const int lda = resolve_row_stride("linear_forward", "input", ld_inp, in);
  // out[B, out] = inp[B, in] * weight[out, in]^T, then + bias
  gemm<T>(false, true, B, out_features, in, T(1), inp, lda, weight, in, T(0), out, out_features);
  add_bias(out, bias, B, out_features);
}

template <typename T>
void linear_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                     int B, int in, int out_features) {
  check_sizes("linear_backward", B, in, out_features);
  if (dinp != nullptr)  // dinp[B, in] += dout[B, out] * weight[out, in]
    gemm<T>(false, false, B, in, out_features, T(1), dout, out_features, weight, in, T(1), dinp,
            in);
  if (dweight != nullptr)  // dweight[out, in] += dout^T[out, B] * inp[B, in]
    gemm<T>(true, false, out_features, in, B, T(1), dout, out_features, inp, in, T(1), dweight, in);
  if (dbias != nullptr) add_column_sums(dbias, dout, B, out_features);
}

template <typename T>
void linear_ensemble_forward(T* out, const T* inp, const T* weight, const T* bias, int Qn, int B,
                             int in, int out_features, bool shared_input) {
  check_sizes("linear_ensemble_forward", B, in, out_features);
  POMPC_REQUIRE(Qn >= 1, "linear_ensemble_forward: Qn (%d) must be >= 1", Qn);
  const int64_t out_stride = static_cast<int64_t>(B) * out_features;
  gemm_strided_batched<T>(false, true, B, out_features, in, T(1), inp, in,
                          shared_input ? 0 : static_cast<int64_t>(B) * in, weight, in,
                          static_cast<int64_t>(out_features) * in, T(0), out, out_features,
                          out_stride, Qn);
  if (bias != nullptr) {
    for (int q = 0; q < Qn; ++q)
      add_bias(out + q * out_stride, bias + static_cast<int64_t>(q) * out_features, B,
               out_features);
  }
}

template <typename T>
void linear_ensemble_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,
                              const T* weight, int Qn, int B, int in, int out_features,
                              bool shared_input) {
  check_sizes("linear_ensemble_backward", B, in, out_features);
  POMPC_REQUIRE(Qn >= 1, "linear_ensemble_backward: Qn (%d) must be >= 1", Qn);
  const int64_t dout_stride = static_cast<int64_t>(B) * out_features;
  const int64_t inp_stride = shared_input ? 0 : static_cast<int64_t>(B) * in;
  const int64_t w_stride = static_cast<int64_t>(out_features) * in;
  if (dinp != nullptr) {
    if (shared_input) {  // every head adds into the same dinp: one product per head, in order
      for (int q = 0; q < Qn; ++q)
        gemm<T>(false, false, B, in, out_features, T(1), dout + q * dout_stride, out_features,
                weight + q * w_stride, in, T(1), dinp, in);
    } else {
      gemm_strided_batched<T>(false, false, B, in, out_features, T(1), dout, out_features,
                              dout_stride, weight, in, w_stride, T(1), dinp, in, inp_stride, Qn);
    }
  }
  if (dweight != nullptr)
    gemm_strided_batched<T>(true, false, out_features, in, B, T(1), dout, out_features, dout_stride,
                            inp, in, inp_stride, T(1), dweight, in, w_stride, Qn);
  if (dbias != nullptr) {
    for (int q = 0; q < Qn; ++q)
      add_column_sums(dbias + static_cast<int64_t>(q) * out_features, dout + q * dout_stride, B,
                      out_features);
  }
}

#define POMPC_INSTANTIATE_LINEAR(T)                                                              \
  template void add_bias<T>(T*, const T*, int, int);                                             \
  template void add_column_sums<T>(T*, const T*, int, int);                                      \
  template void linear_forward<T>(T*, const T*, const T*, const T*, int, int, int, int64_t);     \
  template void linear_backward<T>(T*, T*, T*, const T*, const T*, const T*, int, int, int);     \
  template void linear_ensemble_forward<T>(T*, const T*, const T*, const T*, int, int, int, int, \
                                           bool);                                                \
  template void linear_ensemble_backward<T>(T*, T*, T*, const T*, const T*, const T*, int, int,  \
                                            int, int, bool);
POMPC_INSTANTIATE_LINEAR(float)
POMPC_INSTANTIATE_LINEAR(double)
#undef POMPC_INSTANTIATE_LINEAR

}  // namespace pompc::ref
