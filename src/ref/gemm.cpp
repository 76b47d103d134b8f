// src/ref/gemm.cpp: reference GEMM. The run book (maths, shapes, overwrite rules) is in gemm.h.
//
// Loop structure of the float path (Goto / BLIS blocking, arranged for few barriers):
//   for jc in n, step NC; for ic in m, step MCH; for pg in k, step KG depth blocks of KC:
//     all threads pack op(B)[pg.., jc..] into KC x NR micro-panels and op(A)[ic.., pg..] into
//     MR x KC micro-panels, zero-padded at the edges; one barrier;
//     the MR x NR tiles of C are split between threads once (by rows when there are at least as
//     many row tiles as column tiles, else by columns); each thread then runs all depth blocks
//     over its own tiles with no further synchronisation: rows in groups of MCP tiles (their
//     packed A slice stays in L2), and per depth block a B micro-panel is reused from L1 across
//     the group.
//   For the model's sizes (k <= 2048, m <= 1024 rows, n <= 2048 per chunk) that is one pack
//   phase and one barrier per call: cheap, and robust when the two cores are shared with other
//   work (a barrier per depth block made a descheduled thread stall everyone).
// The micro-kernel keeps an MR x 2W tile of C in 2 MR vector registers of W floats (AVX-512:
// 14 x 32 in 28 of the 32 zmm registers; AVX2: 6 x 16 in 12 of the 16 ymm registers; SSE or
// other: 6 x 8) and does one broadcast of A and two loads of B per 2 MR FMAs. Each element of C
// is the same sequence of fused multiply-adds over k whatever the tile, so the result does not
// depend on the vector width (only on whether the machine has FMA). C is scaled by beta only in the first depth
// block; later blocks add into it. Edge tiles are computed whole from zero-padded panels into a
// scratch tile and only their valid part is stored.
#include "ref/gemm.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <type_traits>

#if defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif

#include "common.h"

namespace pompc::ref {
namespace {

// ---- argument checks (row-major terms) ------------------------------------------------------
void check_rowmajor(const char* who, bool transa, bool transb, int m, int n, int k, int lda,
                    int ldb, int ldc) {
  POMPC_REQUIRE(m >= 0 && n >= 0 && k >= 0, "%s: sizes must be >= 0 (got m=%d n=%d k=%d)", who, m,
                n, k);
  const int a_cols = transa ? m : k, b_cols = transb ? k : n;
  POMPC_REQUIRE(lda >= std::max(1, a_cols),
                "%s: lda (%d) must be >= max(1, %d), the row length of A as stored (%s)", who, lda,
                a_cols, transa ? "A^T is used, A is [k, m]" : "A is [m, k]");
  POMPC_REQUIRE(ldb >= std::max(1, b_cols),
                "%s: ldb (%d) must be >= max(1, %d), the row length of B as stored (%s)", who, ldb,
                b_cols, transb ? "B^T is used, B is [n, k]" : "B is [k, n]");
  POMPC_REQUIRE(ldc >= std::max(1, n), "%s: ldc (%d) must be >= max(1, n = %d)", who, ldc, n);
}

// C = beta * C for the m x n block (beta == 0 writes zeros without reading C).
template <typename T>
void scale_c(int m, int n, T beta, T* C, int ldc) {
  if (beta == T(1)) return;
  for (int i = 0; i < m; ++i) {
    T* c = C + static_cast<int64_t>(i) * ldc;
    if (beta == T(0)) {
      std::fill(c, c + n, T(0));
    } else {
      for (int j = 0; j < n; ++j) c[j] *= beta;
    }
  }
}

// ---- double (and any non-float) path: a plain loop, for finite-difference tests --------------
template <typename T>
void gemm_simple(bool transa, bool transb, int m, int n, int k, T alpha, const T* A, int lda,
                 const T* B, int ldb, T beta, T* C, int ldc) {
#pragma omp parallel for schedule(static) if (int64_t{m} * n * k > 100000)
  for (int i = 0; i < m; ++i) {
    T* c = C + static_cast<int64_t>(i) * ldc;
    for (int j = 0; j < n; ++j) {
      T acc = 0;
      for (int p = 0; p < k; ++p) {
        const T a =
            transa ? A[static_cast<int64_t>(p) * lda + i] : A[static_cast<int64_t>(i) * lda + p];
        const T b =
            transb ? B[static_cast<int64_t>(j) * ldb + p] : B[static_cast<int64_t>(p) * ldb + j];
        acc += a * b;
      }
      c[j] = beta == T(0) ? alpha * acc : alpha * acc + beta * c[j];
    }
  }
}

// ---- float path ----------------------------------------------------------------------------
// Vector width W (floats) and tile rows MR follow the ISA the file is compiled for, so that the
// 2 MR accumulators, two B vectors and the A broadcast fit the register file.
#if defined(__AVX512F__)
constexpr int kVW = 16, kMR = 14;
#elif defined(__AVX__)
constexpr int kVW = 8, kMR = 6;
#else
constexpr int kVW = 4, kMR = 6;
#endif
typedef float vec __attribute__((vector_size(4 * kVW)));
typedef float vecu __attribute__((vector_size(4 * kVW), aligned(4)));  // unaligned access to C

constexpr int kNV = 2;          // vectors per tile row
constexpr int kNR = kVW * kNV;  // columns of the register tile
constexpr int kKC = 512;       // max depth of a block (k is cut into equal blocks)
constexpr int kKG = 4;         // depth blocks packed together (one barrier per group)
constexpr int kMCP = 8;        // row tiles per L2 group (8 * 14 = 112 rows)
constexpr int kNC = 2048;      // columns of packed B per chunk
constexpr int kMCH = 1024;     // rows of packed A per chunk

// a * b + c, fused where the machine has FMA (the intrinsics keep it fused even where the
// compiler is told not to contract, as in the emulation build).
inline vec fma_vec(vec a, vec b, vec c) {
#if defined(__AVX512F__)
  return _mm512_fmadd_ps(a, b, c);
#elif defined(__AVX__) && defined(__FMA__)
  return _mm256_fmadd_ps(a, b, c);
#elif defined(__FMA__)
  return _mm_fmadd_ps(a, b, c);
#else
  return a * b + c;
#endif
}

// Per-calling-thread packing buffers (64-byte aligned), grown on demand and kept.
struct PackBuffer {
  float* data = nullptr;
  size_t cap = 0;
  ~PackBuffer() { std::free(data); }
  float* get(size_t n) {
    if (n > cap) {
      std::free(data);
      data = nullptr;
      cap = 0;
      const size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
      data = static_cast<float*>(std::aligned_alloc(64, bytes));
      POMPC_REQUIRE(data != nullptr, "gemm: out of memory allocating a %zu-byte packing buffer",
                    bytes);
      cap = n;
    }
    return data;
  }
};

// Pack op(A)[i0 : i0+mch, p0 : p0+kc] as ceil(mch/MR) panels of [kc][MR], zero-padded rows.
void pack_a_panel(bool transa, const float* A, int lda, int i0, int rows, int p0, int kc,
                  float* dst) {
  if (rows < kMR) std::memset(dst, 0, sizeof(float) * kc * kMR);
  if (!transa) {
    for (int r = 0; r < rows; ++r) {
      const float* src = A + static_cast<int64_t>(i0 + r) * lda + p0;
      for (int p = 0; p < kc; ++p) dst[p * kMR + r] = src[p];
    }
  } else {
    for (int p = 0; p < kc; ++p) {
      const float* src = A + static_cast<int64_t>(p0 + p) * lda + i0;
      for (int r = 0; r < rows; ++r) dst[p * kMR + r] = src[r];
    }
  }
}

// Pack op(B)[p0 : p0+kc, j0 : j0+cols] as one panel [kc][NR], zero-padded columns.
void pack_b_panel(bool transb, const float* B, int ldb, int p0, int kc, int j0, int cols,
                  float* dst) {
  if (cols < kNR) std::memset(dst, 0, sizeof(float) * kc * kNR);
  if (!transb) {
    for (int p = 0; p < kc; ++p) {
      const float* src = B + static_cast<int64_t>(p0 + p) * ldb + j0;
      float* d = dst + p * kNR;
      for (int c = 0; c < cols; ++c) d[c] = src[c];
    }
  } else {
    for (int c = 0; c < cols; ++c) {
      const float* src = B + static_cast<int64_t>(j0 + c) * ldb + p0;
      for (int p = 0; p < kc; ++p) dst[p * kNR + c] = src[p];
    }
  }
}

// One MR x NR tile: acc = Ap^T Bp over kc, then C[0:mr, 0:nr] = alpha*acc + beta*C
// (beta == 0: C not read).
void micro_kernel(int kc, const float* __restrict Ap, const float* __restrict Bp, float* C, int ldc,
                  int mr, int nr, float alpha, float beta) {
  vec acc[kMR][kNV];
#pragma GCC unroll 16
  for (int r = 0; r < kMR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < kNV; ++v) acc[r][v] = vec{};
  for (int p = 0; p < kc; ++p) {
    vec b[kNV];
#pragma GCC unroll 4
    for (int v = 0; v < kNV; ++v) b[v] = *reinterpret_cast<const vec*>(Bp + p * kNR + kVW * v);
#pragma GCC unroll 16
    for (int r = 0; r < kMR; ++r) {
      const vec a = vec{} + Ap[p * kMR + r];
#pragma GCC unroll 4
      for (int v = 0; v < kNV; ++v) acc[r][v] = fma_vec(a, b[v], acc[r][v]);
    }
  }
  if (mr == kMR && nr == kNR) {
#pragma GCC unroll 16
    for (int r = 0; r < kMR; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < kNV; ++v) {
        vecu* c = reinterpret_cast<vecu*>(C + static_cast<int64_t>(r) * ldc + kVW * v);
        const vec x = acc[r][v] * alpha;
        if (beta == 0.0f) {
          *c = x;
        } else if (beta == 1.0f) {
          *c = *c + x;
        } else {
          *c = x + beta * *c;
        }
      }
    return;
  }
  alignas(64) float tile[kMR][kNR];
  for (int r = 0; r < kMR; ++r)
    for (int v = 0; v < kNV; ++v) *reinterpret_cast<vec*>(&tile[r][kVW * v]) = acc[r][v];
  for (int r = 0; r < mr; ++r) {
    float* c = C + static_cast<int64_t>(r) * ldc;
    for (int j = 0; j < nr; ++j) {
      const float x = alpha * tile[r][j];
      c[j] = beta == 0.0f ? x : x + beta * c[j];
    }
  }
}

void gemm_blocked(bool transa, bool transb, int m, int n, int k, float alpha, const float* A,
                  int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  static thread_local PackBuffer apack, bpack;
  // Depth blocks of equal size (550 -> 2 x 275 rather than 512 + 38), grouped kKG at a time.
  const int nkb_total = (k + kKC - 1) / kKC;
  const int kc_step = (k + nkb_total - 1) / nkb_total;
  const int kg_step = kc_step * kKG;
  const int nc_max = std::min(n, kNC), kg_max = std::min(k, kg_step), mch_max = std::min(m, kMCH);
  const int nt_max = (nc_max + kNR - 1) / kNR, mt_max = (mch_max + kMR - 1) / kMR;
  float* Bp = bpack.get(static_cast<size_t>(nt_max) * kNR * kg_max);
  float* Ap = apack.get(static_cast<size_t>(mt_max) * kMR * kg_max);
  const bool parallel = static_cast<int64_t>(m) * n * k >= (int64_t{1} << 18);

#pragma omp parallel if (parallel)
  {
    const int nthreads = omp_get_num_threads(), tid = omp_get_thread_num();
    bool first_chunk = true;
    for (int jc = 0; jc < n; jc += kNC) {
      const int nc = std::min(kNC, n - jc);
      const int nt = (nc + kNR - 1) / kNR;
      for (int ic = 0; ic < m; ic += kMCH) {
        const int mch = std::min(kMCH, m - ic);
        const int mt = (mch + kMR - 1) / kMR;
        for (int pg = 0; pg < k; pg += kg_step) {
          const int kg = std::min(kg_step, k - pg);      // depth of this group
          const int nkb = (kg + kc_step - 1) / kc_step;  // its depth blocks
          if (!first_chunk) {
#pragma omp barrier
          }
          first_chunk = false;
          // Pack every (depth block, panel) of this chunk; panel (b, q) of a block starting at
          // relative depth p0 sits at (p0 * tiles + q * kc) * width.
#pragma omp for schedule(static) nowait
          for (int t = 0; t < nkb * nt; ++t) {
            const int b = t / nt, q = t % nt, p0 = b * kc_step;
            const int kc = std::min(kc_step, kg - p0);
            pack_b_panel(transb, B, ldb, pg + p0, kc, jc + q * kNR, std::min(kNR, nc - q * kNR),
                         Bp + (static_cast<int64_t>(p0) * nt + static_cast<int64_t>(q) * kc) * kNR);
          }
#pragma omp for schedule(static)
          for (int t = 0; t < nkb * mt; ++t) {
            const int b = t / mt, q = t % mt, p0 = b * kc_step;
            const int kc = std::min(kc_step, kg - p0);
            pack_a_panel(transa, A, lda, ic + q * kMR, std::min(kMR, mch - q * kMR), pg + p0, kc,
                         Ap + (static_cast<int64_t>(p0) * mt + static_cast<int64_t>(q) * kc) * kMR);
          }
          // Split the tile grid once per chunk (by rows when there are at least as many row tiles
          // as column tiles, else by columns); a thread owns its C tiles across all depth blocks,
          // so the compute below needs no further synchronisation.
          int ib = 0, ie = mt, jb = 0, je = nt;
          if (mt >= nt) {
            ib = static_cast<int>(static_cast<int64_t>(mt) * tid / nthreads);
            ie = static_cast<int>(static_cast<int64_t>(mt) * (tid + 1) / nthreads);
          } else {
            jb = static_cast<int>(static_cast<int64_t>(nt) * tid / nthreads);
            je = static_cast<int>(static_cast<int64_t>(nt) * (tid + 1) / nthreads);
          }
          for (int i0 = ib; i0 < ie; i0 += kMCP) {
            const int i1 = std::min(ie, i0 + kMCP);
            for (int b = 0; b < nkb; ++b) {
              const int p0 = b * kc_step, kc = std::min(kc_step, kg - p0);
              const float beta_eff = pg + p0 == 0 ? beta : 1.0f;
              for (int jp = jb; jp < je; ++jp) {
                const float* bp =
                    Bp + (static_cast<int64_t>(p0) * nt + static_cast<int64_t>(jp) * kc) * kNR;
                const int nr = std::min(kNR, nc - jp * kNR);
                for (int ip = i0; ip < i1; ++ip) {
                  const int mr = std::min(kMR, mch - ip * kMR);
                  float* c = C + static_cast<int64_t>(ic + ip * kMR) * ldc + jc + jp * kNR;
                  micro_kernel(
                      kc,
                      Ap + (static_cast<int64_t>(p0) * mt + static_cast<int64_t>(ip) * kc) * kMR,
                      bp, c, ldc, mr, nr, alpha, beta_eff);
                }
              }
            }
          }
        }
      }
    }
  }
}

}  // namespace

template <typename T>
void gemm(bool transa, bool transb, int m, int n, int k, T alpha, const T* A, int lda, const T* B,
          int ldb, T beta, T* C, int ldc) {
  check_rowmajor("gemm", transa, transb, m, n, k, lda, ldb, ldc);
  if (m == 0 || n == 0) return;
  if (k == 0 || alpha == T(0)) {
    scale_c(m, n, beta, C, ldc);
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    gemm_blocked(transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
  } else {
    gemm_simple(transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
  }
}

template <typename T>
void gemm_strided_batched(bool transa, bool transb, int m, int n, int k, T alpha, const T* A,
                          int lda, int64_t strideA, const T* B, int ldb, int64_t strideB, T beta,
                          T* C, int ldc, int64_t strideC, int batch) {
  check_rowmajor("gemm_strided_batched", transa, transb, m, n, k, lda, ldb, ldc);
  POMPC_REQUIRE(batch >= 0, "gemm_strided_batched: batch (%d) must be >= 0", batch);
  const int64_t c_extent = m > 0 && n > 0 ? static_cast<int64_t>(m - 1) * ldc + n : 0;
  POMPC_REQUIRE(batch <= 1 || strideC >= c_extent || strideC <= -c_extent,
                "gemm_strided_batched: strideC (%lld) must be >= (m-1)*ldc + n = %lld so the "
                "batch entries of C do not overlap (cuBLAS leaves overlapping C undefined)",
                static_cast<long long>(strideC), static_cast<long long>(c_extent));
  for (int i = 0; i < batch; ++i)
    gemm(transa, transb, m, n, k, alpha, A + i * strideA, lda, B + i * strideB, ldb, beta,
         C + i * strideC, ldc);
}

namespace {
bool parse_op(const char* who, const char* name, char op) {
  switch (op) {
    case 'N':
    case 'n':
      return false;
    case 'T':
    case 't':
    case 'C':
    case 'c':
      return true;
    default:
      throw Error(
          strfmt("%s: %s must be 'N' or 'T' ('C' = 'T' for real data), got '%c'", who, name, op));
  }
}

void check_colmajor(const char* who, bool ta, bool tb, int m, int n, int k, int lda, int ldb,
                    int ldc) {
  POMPC_REQUIRE(m >= 0 && n >= 0 && k >= 0, "%s: sizes must be >= 0 (got m=%d n=%d k=%d)", who, m,
                n, k);
  const int a_rows = ta ? k : m, b_rows = tb ? n : k;
  POMPC_REQUIRE(lda >= std::max(1, a_rows),
                "%s: lda (%d) must be >= max(1, %d), the row count of column-major A (%s)", who,
                lda, a_rows, ta ? "transa 'T': A is k x m" : "transa 'N': A is m x k");
  POMPC_REQUIRE(ldb >= std::max(1, b_rows),
                "%s: ldb (%d) must be >= max(1, %d), the row count of column-major B (%s)", who,
                ldb, b_rows, tb ? "transb 'T': B is n x k" : "transb 'N': B is k x n");
  POMPC_REQUIRE(ldc >= std::max(1, m), "%s: ldc (%d) must be >= max(1, m = %d)", who, ldc, m);
}
}  // namespace

// Column-major C (m x n) is row-major C^T [n, m] with the same leading dimension, and
// C^T = op(B)^T op(A)^T: a row-major product with the operands swapped and the same flags.
template <typename T>
void gemm_colmajor(char transa, char transb, int m, int n, int k, T alpha, const T* A, int lda,
                   const T* B, int ldb, T beta, T* C, int ldc) {
  const bool ta = parse_op("gemm_colmajor", "transa", transa);
  const bool tb = parse_op("gemm_colmajor", "transb", transb);
  check_colmajor("gemm_colmajor", ta, tb, m, n, k, lda, ldb, ldc);
  gemm(tb, ta, n, m, k, alpha, B, ldb, A, lda, beta, C, ldc);
}

#define POMPC_INSTANTIATE_GEMM(T)                                                                \
  template void gemm<T>(bool, bool, int, int, int, T, const T*, int, const T*, int, T, T*, int); \
  template void gemm_strided_batched<T>(bool, bool, int, int, int, T, const T*, int, int64_t,    \
                                        const T*, int, int64_t, T, T*, int, int64_t, int);       \
  template void gemm_colmajor<T>(char, char, int, int, int, T, const T*, int, const T*, int, T,  \
                                 T*, int);
POMPC_INSTANTIATE_GEMM(float)
POMPC_INSTANTIATE_GEMM(double)
#undef POMPC_INSTANTIATE_GEMM

}  // namespace pompc::ref
