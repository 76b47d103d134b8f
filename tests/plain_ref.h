// tests/plain_ref.h: the plain reference, one straightforward loop per tuned reference op, in
// double, written from SPEC.md and the run books (src/ref/<family>.h) so that a reader can check
// each against the formula by eye. The tuned CPU paths in src/ref/ (the packed GEMM micro-kernel,
// the one-exponential Mish with its polynomial exp, the vectorised and fused LayerNorm, the
// chunked column sums) are tested equal to these within stated tolerances; nothing else uses them.
//
//   plain::gemm_dot        op(A)[i, :] . op(B)[:, j] and its magnitude sum   (src/ref/gemm.h)
//   plain::mish, mish_grad x tanh(softplus(x)) and its derivative           (src/ref/layernorm.h)
//   plain::layernorm_forward / _backward   bias + dropout + LayerNorm + Mish / SimNorm
//   plain::add_column_sums dst[c] += sum_r src[r, c]                         (src/ref/linear.h)
//
// Where the tests use them:
//   build/test_emu -ts=ops -tc='gemm*,linear*,layernorm*,plain*'
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "op_types.h"

namespace pompc::test::plain {

// ---- GEMM ------------------------------------------------------------------------------------

// Row-major op(X)[r, c] of a stored matrix X with leading dimension ld, as a double.
template <typename T>
double at(const T* X, int ld, bool trans, int r, int c) {
  return trans ? static_cast<double>(X[static_cast<int64_t>(c) * ld + r])
               : static_cast<double>(X[static_cast<int64_t>(r) * ld + c]);
}

struct Dot {
  double sum = 0;  // sum_p a_p b_p, in double
  double mag = 0;  // sum_p |a_p b_p|: the scale of the rounding error of a float sum
};

// sum_{p < k} op(A)[i, p] op(B)[p, j] with row-major storage (gemm.h's convention). A column-major
// matrix with leading dimension ld is the row-major storage of its transpose: a column-major
// op(A)(i, p) is at(A, ld, !trans, i, p).
template <typename T>
Dot gemm_dot(const T* A, int lda, bool ta, const T* B, int ldb, bool tb, int i, int j, int k) {
  Dot d;
  for (int p = 0; p < k; ++p) {
    const double prod = at(A, lda, ta, i, p) * at(B, ldb, tb, p, j);
    d.sum += prod;
    d.mag += std::fabs(prod);
  }
  return d;
}

// ---- Mish --------------------------------------------------------------------------------------

// softplus with PyTorch's threshold: x above 20 is returned as is.
inline double softplus(double x) {
  return x > 20 ? x : std::log1p(std::exp(x));
}

inline double sigmoid(double x) {
  return 1 / (1 + std::exp(-x));
}

// mish(x) = x tanh(softplus(x))
inline double mish(double x) {
  return x * std::tanh(softplus(x));
}

// mish'(x) = tanh(sp) + x (1 - tanh(sp)^2) sp',  sp' = sigmoid(x), or 1 above the threshold
inline double mish_grad(double x) {
  const double t = std::tanh(softplus(x));
  return t + x * (1 - t * t) * (x > 20 ? 1.0 : sigmoid(x));
}

// ---- LayerNorm + Mish / SimNorm ----------------------------------------------------------------

enum class Act { mish, simnorm };

// One row's d = dropout(inp + bias): the shared dropout_keep rule, survivors scaled by 1 / (1 - p).
inline std::vector<double> dropped_row(const std::vector<double>& x,
                                       const std::vector<double>* bias, int r, int C, int g,
                                       const Dropout& dr) {
  std::vector<double> d(C);
  for (int c = 0; c < C; ++c) {
    const int64_t i = static_cast<int64_t>(r) * C + c;
    d[c] = x[i] + (bias ? (*bias)[static_cast<size_t>(g) * C + c] : 0.0);
    if (dr.p > 0)
      d[c] = dropout_keep(dr.p, dr.seed, dr.offset.resolve(), i) ? d[c] / (1.0 - dr.p) : 0.0;
  }
  return d;
}

// One row's mean and 1 / sqrt(biased variance + 1e-5).
inline void row_stats(const std::vector<double>& d, double* mu, double* rstd) {
  double s = 0, v = 0;
  for (double e : d) s += e;
  *mu = s / static_cast<double>(d.size());
  for (double e : d) v += (e - *mu) * (e - *mu);
  *rstd = 1 / std::sqrt(v / static_cast<double>(d.size()) + 1e-5);
}

// y = act(gamma (d - mu) rstd + beta) row by row; rows = groups * batch, row r uses the
// parameters of group r / (rows / groups). SimNorm: softmax over each group of 8 features.
inline std::vector<double> layernorm_forward(Act act, const std::vector<double>& x,
                                             const std::vector<double>* bias,
                                             const std::vector<double>& gamma,
                                             const std::vector<double>& beta, int rows, int C,
                                             int groups, const Dropout& dr) {
  std::vector<double> y(x.size());
  const int per = rows / groups;
  for (int r = 0; r < rows; ++r) {
    const int g = r / per;
    const std::vector<double> d = dropped_row(x, bias, r, C, g, dr);
    double mu, rstd;
    row_stats(d, &mu, &rstd);
    double* yr = y.data() + static_cast<int64_t>(r) * C;
    for (int c = 0; c < C; ++c) {
      const double h = gamma[static_cast<size_t>(g) * C + c] * (d[c] - mu) * rstd +
                       beta[static_cast<size_t>(g) * C + c];
      yr[c] = act == Act::mish ? mish(h) : h;
    }
    if (act == Act::simnorm)
      for (int c0 = 0; c0 < C; c0 += 8) {
        double s = 0;
        for (int j = 0; j < 8; ++j) s += std::exp(yr[c0 + j]);
        for (int j = 0; j < 8; ++j) yr[c0 + j] = std::exp(yr[c0 + j]) / s;
      }
  }
  return y;
}

struct LayerNormGrads {
  std::vector<double> dinp, dbias, dgamma, dbeta;  // [rows, C], then [groups, C] each
};

// The backward of layernorm_forward for upstream gradient dy, from the run book's formulas:
//   dh_c = dy_c mish'(h_c)   or (SimNorm)  y_c (dy_c - sum_{c' in group} dy_c' y_c')
//   dgamma += dh xhat,  dbeta += dh
//   dd_c = rstd (gamma_c dh_c - mean(gamma dh) - xhat_c mean(gamma dh xhat))
//   dinp = dd keep / (1 - p),  dbias += dinp
inline LayerNormGrads layernorm_backward(Act act, const std::vector<double>& dy,
                                         const std::vector<double>& x,
                                         const std::vector<double>* bias,
                                         const std::vector<double>& gamma,
                                         const std::vector<double>& beta, int rows, int C,
                                         int groups, const Dropout& dr) {
  LayerNormGrads gr;
  const size_t pn = static_cast<size_t>(groups) * C;
  gr.dinp.assign(x.size(), 0.0);
  gr.dbias.assign(pn, 0.0);
  gr.dgamma.assign(pn, 0.0);
  gr.dbeta.assign(pn, 0.0);
  const int per = rows / groups;
  for (int r = 0; r < rows; ++r) {
    const int g = r / per;
    const std::vector<double> d = dropped_row(x, bias, r, C, g, dr);
    double mu, rstd;
    row_stats(d, &mu, &rstd);
    const double* ga = gamma.data() + static_cast<size_t>(g) * C;
    const double* be = beta.data() + static_cast<size_t>(g) * C;
    const double* dyr = dy.data() + static_cast<int64_t>(r) * C;
    std::vector<double> xhat(C), h(C), dh(C);
    for (int c = 0; c < C; ++c) {
      xhat[c] = (d[c] - mu) * rstd;
      h[c] = ga[c] * xhat[c] + be[c];
    }
    if (act == Act::mish) {
      for (int c = 0; c < C; ++c) dh[c] = dyr[c] * mish_grad(h[c]);
    } else {
      for (int c0 = 0; c0 < C; c0 += 8) {
        double s = 0, dot = 0, y[8];
        for (int j = 0; j < 8; ++j) s += std::exp(h[c0 + j]);
        for (int j = 0; j < 8; ++j) y[j] = std::exp(h[c0 + j]) / s;
        for (int j = 0; j < 8; ++j) dot += dyr[c0 + j] * y[j];
        for (int j = 0; j < 8; ++j) dh[c0 + j] = y[j] * (dyr[c0 + j] - dot);
      }
    }
    double m1 = 0, m2 = 0;
    for (int c = 0; c < C; ++c) {
      m1 += ga[c] * dh[c];
      m2 += ga[c] * dh[c] * xhat[c];
    }
    m1 /= C;
    m2 /= C;
    for (int c = 0; c < C; ++c) {
      const int64_t i = static_cast<int64_t>(r) * C + c;
      double dd = rstd * (ga[c] * dh[c] - m1 - xhat[c] * m2);
      if (dr.p > 0)
        dd = dropout_keep(dr.p, dr.seed, dr.offset.resolve(), i) ? dd / (1.0 - dr.p) : 0.0;
      gr.dinp[i] = dd;
      gr.dbias[static_cast<size_t>(g) * C + c] += dd;
      gr.dgamma[static_cast<size_t>(g) * C + c] += dh[c] * xhat[c];
      gr.dbeta[static_cast<size_t>(g) * C + c] += dh[c];
    }
  }
  return gr;
}

// ---- column sums (bias gradients) --------------------------------------------------------------

// dst[c] + sum_r src[r, c] for src [rows, cols], in double.
template <typename T>
std::vector<double> add_column_sums(const std::vector<T>& dst, const std::vector<T>& src, int rows,
                                    int cols) {
  std::vector<double> out(dst.begin(), dst.end());
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c)
      out[c] += static_cast<double>(src[static_cast<size_t>(r) * cols + c]);
  return out;
}

}  // namespace pompc::test::plain
