// src/ref/gemm.h: the reference GEMM (plain C++ + OpenMP), ground truth for every matrix product.
//
// Maths
//   gemm:            C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C       (row-major)
//   gemm_colmajor:   the same in BLAS / cuBLAS column-major convention (Sgemm semantics); the CUDA
//                    host emulation's cublasSgemm calls it, so its argument checks mirror cuBLAS.
//   gemm_strided_batched: `batch` independent products, operand i at base + i * stride (a
//                    stride of 0 shares an operand; C may not overlap between batch entries, as
//                    in cuBLAS).
//   op(X) = X, or X^T when trans is set ('N' / 'T' in the column-major entry points; 'C' means 'T'
//   for real data).
//
// Shapes (row-major): op(A) is [m, k]; A is stored [m, lda >= k] (no transpose) or [k, lda >= m]
//   (transposed). op(B) is [k, n]; B is stored [k, ldb >= n] or [n, ldb >= k]. C is [m, ldc >= n].
//   Leading dimensions must be >= 1 even for empty matrices (as in BLAS).
//   In the world model: Linear forward is gemm(N, T) of x [B, in] and W [out, in]; its backward is
//   gemm(N, N) for dinp (dout [B, out] * W [out, in]) and gemm(T, N) for dW (dout^T [out, B] * x).
//
// Overwritten / accumulated
//   C is overwritten with alpha*op(A)op(B) + beta*C. beta == 0 means C is not read at all (NaN or
//   uninitialised memory in C is ignored, exactly as in BLAS/cuBLAS); beta == 1 accumulates.
//   k == 0 or alpha == 0 scales C by beta and reads neither A nor B.
//
// Implementation: float uses a packed, cache-blocked GEMM (Goto/BLIS loop structure: pack a
// KC x NC panel of op(B) and an MC x KC panel of op(A) into contiguous micro-panels, then a
// register-tiled micro-kernel written with GCC vector extensions whose tile follows the ISA:
// 14 x 32 with AVX-512 FMAs, 6 x 16 with AVX2 FMAs, 6 x 8 otherwise), OpenMP over
// the micro-tiles. Packing buffers are per calling thread and grow once (no allocation per call
// after the first of a given size). double (used by the finite-difference tests) takes a plain
// row-parallel triple loop: correctness only.
//
// Test:  build/test_emu -ts=ops -tc='gemm*'
// Bench: build/bench -ts=bench -tc='*gemm*'
//        prints GFLOP/s at 512x512x1024 against the FMA peak measured on the machine and the peak
//        from /proc/cpuinfo's clock.
#pragma once

#include <cstdint>

namespace pompc::ref {

// Row-major C[m,n] = alpha * op(A) * op(B) + beta * C. See the header comment for shapes.
template <typename T>
void gemm(bool transa, bool transb, int m, int n, int k, T alpha, const T* A, int lda, const T* B,
          int ldb, T beta, T* C, int ldc);

// Row-major strided-batched GEMM: for i in [0, batch): gemm on A + i*strideA, B + i*strideB,
// C + i*strideC. strideA / strideB may be 0 (shared operand); C entries must not overlap.
template <typename T>
void gemm_strided_batched(bool transa, bool transb, int m, int n, int k, T alpha, const T* A,
                          int lda, int64_t strideA, const T* B, int ldb, int64_t strideB, T beta,
                          T* C, int ldc, int64_t strideC, int batch);

// Column-major (BLAS / cuBLAS Sgemm convention): C(m x n, ldc) = alpha * op(A) op(B) + beta * C,
// A is m x k (transa 'N', lda >= m) or k x m (transa 'T', lda >= k), B is k x n ('N', ldb >= k)
// or n x k ('T', ldb >= n). transa / transb in {'N','n','T','t','C','c'}.
template <typename T>
void gemm_colmajor(char transa, char transb, int m, int n, int k, T alpha, const T* A, int lda,
                   const T* B, int ldb, T beta, T* C, int ldc);

}  // namespace pompc::ref
