// tests/emu/include/cublas_v2.h: the cuBLAS subset pompc uses, for the CUDA host emulation.
//
// Run book of the emulation: tests/emu/include/cuda_runtime.h. Implementation:
// tests/emu/cublas.cpp, computing with the project's reference GEMM (src/ref/gemm.h,
// pompc::ref::gemm_colmajor).
//   handles    cublasCreate/Destroy, cublasSetStream/GetStream, cublasSetMathMode/GetMathMode,
//              cublasSetPointerMode/GetPointerMode, cublasSetWorkspace (accepted, unused)
//   GEMMs      cublasSgemm, cublasSgemmStridedBatched: column-major BLAS semantics, alpha/beta
//              by host pointer (CUBLAS_POINTER_MODE_HOST, read at call time, so baked into a
//              capture) or device pointer (read when the GEMM runs); beta == 0 never reads C
//   errors     cublasStatus_t with cuBLAS's numbers, cublasGetStatusString/Name; arguments are
//              checked as cuBLAS does (m, n, k, batchCount >= 0; lda >= max(1, rows of op(A))
//              etc.; unknown cublasOperation_t) -> CUBLAS_STATUS_INVALID_VALUE; a destroyed or
//              null handle -> CUBLAS_STATUS_NOT_INITIALIZED
//   math mode  CUBLAS_TF32_TENSOR_OP_MATH rounds A and B to TF32 (10 mantissa bits, nearest,
//              ties away, as cvt.rna.tf32.f32) before the product, so a tolerance chosen under
//              the emulation also holds for the GPU's tensor cores; the other modes compute in
//              full precision.
// The calls run synchronously on the handle's stream, or are recorded when it is capturing.
// Function names are the _v2 entry points with cuBLAS's #defines, as in the real header.
#pragma once

#include "cuda_runtime.h"

typedef enum {
  CUBLAS_STATUS_SUCCESS = 0,
  CUBLAS_STATUS_NOT_INITIALIZED = 1,
  CUBLAS_STATUS_ALLOC_FAILED = 3,
  CUBLAS_STATUS_INVALID_VALUE = 7,
  CUBLAS_STATUS_ARCH_MISMATCH = 8,
  CUBLAS_STATUS_MAPPING_ERROR = 11,
  CUBLAS_STATUS_EXECUTION_FAILED = 13,
  CUBLAS_STATUS_INTERNAL_ERROR = 14,
  CUBLAS_STATUS_NOT_SUPPORTED = 15,
  CUBLAS_STATUS_LICENSE_ERROR = 16
} cublasStatus_t;

typedef enum {
  CUBLAS_OP_N = 0,
  CUBLAS_OP_T = 1,
  CUBLAS_OP_C = 2,
  CUBLAS_OP_HERMITAN = 2,
  CUBLAS_OP_CONJG = 3
} cublasOperation_t;

typedef enum { CUBLAS_POINTER_MODE_HOST = 0, CUBLAS_POINTER_MODE_DEVICE = 1 } cublasPointerMode_t;

typedef enum {
  CUBLAS_DEFAULT_MATH = 0,
  CUBLAS_TENSOR_OP_MATH = 1,
  CUBLAS_PEDANTIC_MATH = 2,
  CUBLAS_TF32_TENSOR_OP_MATH = 3,
  CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION = 16
} cublasMath_t;

struct cublasContext;
typedef struct cublasContext* cublasHandle_t;

cublasStatus_t cublasCreate_v2(cublasHandle_t* handle);
cublasStatus_t cublasDestroy_v2(cublasHandle_t handle);
cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t streamId);
cublasStatus_t cublasGetStream_v2(cublasHandle_t handle, cudaStream_t* streamId);
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode);
cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t* mode);
cublasStatus_t cublasSetPointerMode_v2(cublasHandle_t handle, cublasPointerMode_t mode);
cublasStatus_t cublasGetPointerMode_v2(cublasHandle_t handle, cublasPointerMode_t* mode);
cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t handle, void* workspace,
                                     size_t workspaceSizeInBytes);
const char* cublasGetStatusString(cublasStatus_t status);
const char* cublasGetStatusName(cublasStatus_t status);

cublasStatus_t cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t transa,
                              cublasOperation_t transb, int m, int n, int k, const float* alpha,
                              const float* A, int lda, const float* B, int ldb, const float* beta,
                              float* C, int ldc);
cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa,
                                         cublasOperation_t transb, int m, int n, int k,
                                         const float* alpha, const float* A, int lda,
                                         long long int strideA, const float* B, int ldb,
                                         long long int strideB, const float* beta, float* C,
                                         int ldc, long long int strideC, int batchCount);

#define cublasCreate cublasCreate_v2
#define cublasDestroy cublasDestroy_v2
#define cublasSetStream cublasSetStream_v2
#define cublasGetStream cublasGetStream_v2
#define cublasSetPointerMode cublasSetPointerMode_v2
#define cublasGetPointerMode cublasGetPointerMode_v2
#define cublasSetWorkspace cublasSetWorkspace_v2
#define cublasSgemm cublasSgemm_v2
