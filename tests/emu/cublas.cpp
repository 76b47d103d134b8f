// tests/emu/cublas.cpp: cuBLAS for the CUDA host emulation. Run book.
//
// What is emulated and how it behaves: tests/emu/include/cublas_v2.h. A handle carries a stream,
// a math mode and a pointer mode. A GEMM call checks its arguments as cuBLAS does (and, beyond
// cuBLAS, that A, B and C lie inside cudaMalloc allocations: a GPU would fault on host memory),
// then submits one closure to the handle's stream: it runs now, or is recorded when the stream
// is capturing, with every argument (and host-mode alpha/beta) baked. The closure counts the
// call (emu/counters.h: cublas, or graph_cublas in a replay) and calls the project's reference
// GEMM (pompc::ref::gemm_colmajor, src/ref/gemm.h) once per batch entry. A failed call's
// explanation is returned by cublasGetStatusString for that status, like cudaGetErrorString does
// for CUDA errors.
#include <cublas_v2.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "internal.h"
#include "ref/gemm.h"

struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
  cublasPointerMode_t pointer_mode = CUBLAS_POINTER_MODE_HOST;
};

namespace emu::detail {
namespace {

std::mutex g_handles_mu;
std::set<cublasContext*> g_handles;

struct StatusDetail {
  cublasStatus_t status = CUBLAS_STATUS_SUCCESS;
  std::string text;
};
thread_local StatusDetail tls_status;

const char* status_text(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS:
      return "the operation completed successfully";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "an absent device architectural feature is required";
    case CUBLAS_STATUS_MAPPING_ERROR:
      return "an access to GPU memory space failed";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "the GPU program failed to execute";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "an internal operation failed";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "the functionality requested is not supported";
    case CUBLAS_STATUS_LICENSE_ERROR:
      return "an error detected when checking the current licensing";
  }
  return "unknown cuBLAS status";
}

[[gnu::format(printf, 2, 3)]] cublasStatus_t fail(cublasStatus_t s, const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  tls_status.status = s;
  tls_status.text = std::string(status_text(s)) + " (host emulation: " + buf + ")";
  return s;
}

bool live(cublasHandle_t h) {
  std::lock_guard<std::mutex> lock(g_handles_mu);
  return g_handles.count(h) != 0;
}

const char* op_name(cublasOperation_t op) {
  switch (op) {
    case CUBLAS_OP_N:
      return "CUBLAS_OP_N";
    case CUBLAS_OP_T:
      return "CUBLAS_OP_T";
    case CUBLAS_OP_C:
      return "CUBLAS_OP_C";
    case CUBLAS_OP_CONJG:
      return "CUBLAS_OP_CONJG";
  }
  return "an unknown cublasOperation_t";
}

// TF32 as the tensor cores see it: round to nearest (ties away) at 10 mantissa bits.
float to_tf32(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & 0xffffe000u;
  std::memcpy(&x, &u, 4);
  return x;
}

// Elements spanned by a column-major rows x cols matrix with leading dimension ld.
int64_t extent(int rows, int cols, int ld) {
  return rows == 0 || cols == 0 ? 0 : static_cast<int64_t>(cols - 1) * ld + rows;
}

struct Gemm {
  bool ta, tb;
  int m, n, k;
  const float *alpha, *beta;  // device pointer mode: read when the GEMM runs
  float alpha_v, beta_v;      // host pointer mode: read at the call
  bool device_scalars;
  const float* A;
  int lda;
  long long sA;
  const float* B;
  int ldb;
  long long sB;
  float* C;
  int ldc;
  long long sC;
  int batch;
  bool tf32;

  void run() const {
    const float al = device_scalars ? *alpha : alpha_v, be = device_scalars ? *beta : beta_v;
    const int64_t ea = extent(ta ? k : m, ta ? m : k, lda),
                  eb = extent(tb ? n : k, tb ? k : n, ldb);
    std::vector<float> a32, b32;
    for (int i = 0; i < batch; ++i) {
      const float* a = A + i * sA;
      const float* b = B + i * sB;
      if (tf32 && al != 0.0f && k > 0) {
        a32.assign(a, a + ea);
        b32.assign(b, b + eb);
        for (float& x : a32) x = to_tf32(x);
        for (float& x : b32) x = to_tf32(x);
        a = a32.data();
        b = b32.data();
      }
      pompc::ref::gemm_colmajor<float>(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, al, a, lda, b, ldb,
                                        be, C + i * sC, ldc);
    }
  }
};

cublasStatus_t sgemm(const char* call, cublasHandle_t h, cublasOperation_t transa,
                     cublasOperation_t transb, int m, int n, int k, const float* alpha,
                     const float* A, int lda, long long sA, const float* B, int ldb, long long sB,
                     const float* beta, float* C, int ldc, long long sC, int batch) {
  if (!h || !live(h))
    return fail(CUBLAS_STATUS_NOT_INITIALIZED,
                "%s: handle %p is not from cublasCreate (or was "
                "destroyed)",
                call, static_cast<void*>(h));
  for (cublasOperation_t op : {transa, transb})
    if (op != CUBLAS_OP_N && op != CUBLAS_OP_T && op != CUBLAS_OP_C)
      return fail(CUBLAS_STATUS_INVALID_VALUE, "%s: operation %d (%s) is not N, T or C", call,
                  static_cast<int>(op), op_name(op));
  const bool ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;
  if (m < 0 || n < 0 || k < 0 || batch < 0)
    return fail(CUBLAS_STATUS_INVALID_VALUE, "%s: m=%d n=%d k=%d batchCount=%d must be >= 0", call,
                m, n, k, batch);
  const int rows_a = ta ? k : m, rows_b = tb ? n : k;
  if (lda < std::max(1, rows_a))
    return fail(CUBLAS_STATUS_INVALID_VALUE,
                "%s: lda (%d) must be >= max(1, %d), the rows of A as stored (%s)", call, lda,
                rows_a, ta ? "op(A) = A^T, A is k x m" : "A is m x k");
  if (ldb < std::max(1, rows_b))
    return fail(CUBLAS_STATUS_INVALID_VALUE,
                "%s: ldb (%d) must be >= max(1, %d), the rows of B as stored (%s)", call, ldb,
                rows_b, tb ? "op(B) = B^T, B is n x k" : "B is k x n");
  if (ldc < std::max(1, m))
    return fail(CUBLAS_STATUS_INVALID_VALUE, "%s: ldc (%d) must be >= max(1, m = %d)", call, ldc,
                m);
  if (!alpha || !beta)
    return fail(CUBLAS_STATUS_INVALID_VALUE, "%s: alpha and beta must not be null", call);

  cudaStream_t stream;
  Gemm g{};
  {
    std::lock_guard<std::mutex> lock(g_handles_mu);
    stream = h->stream;
    g.device_scalars = h->pointer_mode == CUBLAS_POINTER_MODE_DEVICE;
    g.tf32 = h->math == CUBLAS_TF32_TENSOR_OP_MATH;
  }
  if (m == 0 || n == 0 || batch == 0) return CUBLAS_STATUS_SUCCESS;
  g.ta = ta;
  g.tb = tb;
  g.m = m;
  g.n = n;
  g.k = k;
  g.alpha = alpha;
  g.beta = beta;
  if (!g.device_scalars) {
    g.alpha_v = *alpha;
    g.beta_v = *beta;
  }
  g.A = A, g.lda = lda, g.sA = sA;
  g.B = B, g.ldb = ldb, g.sB = sB;
  g.C = C, g.ldc = ldc, g.sC = sC;
  g.batch = batch;

  // Device memory checks (a GPU would fault on anything else).
  const int64_t ea = extent(rows_a, ta ? m : k, lda), eb = extent(rows_b, tb ? k : n, ldb),
                ec = extent(m, n, ldc);
  auto on_device = [](const float* p, int64_t elems) {
    return elems == 0 || emu::detail::is_device_range(p, static_cast<size_t>(elems) * 4);
  };
  if (g.device_scalars && (!on_device(alpha, 1) || !on_device(beta, 1)))
    return fail(CUBLAS_STATUS_EXECUTION_FAILED,
                "%s: CUBLAS_POINTER_MODE_DEVICE but alpha/beta are not in device memory", call);
  for (int i = 0; i < batch; ++i) {
    const char* bad = !on_device(A + i * sA, k ? ea : 0)   ? "A"
                      : !on_device(B + i * sB, k ? eb : 0) ? "B"
                      : !on_device(C + i * sC, ec)         ? "C"
                                                           : nullptr;
    if (bad)
      return fail(CUBLAS_STATUS_EXECUTION_FAILED,
                  "%s: %s of batch entry %d is not inside one cudaMalloc allocation (m=%d n=%d "
                  "k=%d lda=%d ldb=%d ldc=%d)",
                  call, bad, i, m, n, k, lda, ldb, ldc);
  }

  const cudaError_t e = emu::detail::submit(stream, call, [g, call]() -> cudaError_t {
    emu::detail::count_work(/*cublas=*/true, call);
    g.run();
    return cudaSuccess;
  });
  if (e != cudaSuccess)
    return fail(CUBLAS_STATUS_EXECUTION_FAILED, "%s: %s", call, cudaGetErrorString(e));
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace
}  // namespace emu::detail

using emu::detail::fail;
using emu::detail::live;

cublasStatus_t cublasCreate_v2(cublasHandle_t* handle) {
  if (!handle) return fail(CUBLAS_STATUS_INVALID_VALUE, "cublasCreate: handle is null");
  auto* h = new cublasContext;
  std::lock_guard<std::mutex> lock(emu::detail::g_handles_mu);
  emu::detail::g_handles.insert(h);
  *handle = h;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
  std::lock_guard<std::mutex> lock(emu::detail::g_handles_mu);
  if (!emu::detail::g_handles.erase(handle))
    return fail(CUBLAS_STATUS_NOT_INITIALIZED, "cublasDestroy(%p): not a live handle",
                static_cast<void*>(handle));
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

#define EMU_HANDLE_SETTER(fn, field, T, check)                                             \
  cublasStatus_t fn(cublasHandle_t handle, T value) {                                      \
    if (!live(handle))                                                                     \
      return fail(CUBLAS_STATUS_NOT_INITIALIZED, #fn ": handle %p is not live",            \
                  static_cast<void*>(handle));                                             \
    if (!(check))                                                                          \
      return fail(CUBLAS_STATUS_INVALID_VALUE, #fn ": value %d", static_cast<int>(value)); \
    std::lock_guard<std::mutex> lock(emu::detail::g_handles_mu);                           \
    handle->field = value;                                                                 \
    return CUBLAS_STATUS_SUCCESS;                                                          \
  }
#define EMU_HANDLE_GETTER(fn, field, T)                                         \
  cublasStatus_t fn(cublasHandle_t handle, T* value) {                          \
    if (!live(handle))                                                          \
      return fail(CUBLAS_STATUS_NOT_INITIALIZED, #fn ": handle %p is not live", \
                  static_cast<void*>(handle));                                  \
    if (!value) return fail(CUBLAS_STATUS_INVALID_VALUE, #fn ": null output");  \
    std::lock_guard<std::mutex> lock(emu::detail::g_handles_mu);                \
    *value = handle->field;                                                     \
    return CUBLAS_STATUS_SUCCESS;                                               \
  }

cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t streamId) {
  if (!live(handle))
    return fail(CUBLAS_STATUS_NOT_INITIALIZED, "cublasSetStream: handle %p is not live",
                static_cast<void*>(handle));
  std::lock_guard<std::mutex> lock(emu::detail::g_handles_mu);
  handle->stream = streamId;
  return CUBLAS_STATUS_SUCCESS;
}
EMU_HANDLE_GETTER(cublasGetStream_v2, stream, cudaStream_t)
EMU_HANDLE_SETTER(cublasSetMathMode, math, cublasMath_t,
                  (static_cast<int>(value) & ~16) >= 0 && (static_cast<int>(value) & ~16) <= 3)
EMU_HANDLE_GETTER(cublasGetMathMode, math, cublasMath_t)
EMU_HANDLE_SETTER(cublasSetPointerMode_v2, pointer_mode, cublasPointerMode_t,
                  value == CUBLAS_POINTER_MODE_HOST || value == CUBLAS_POINTER_MODE_DEVICE)
EMU_HANDLE_GETTER(cublasGetPointerMode_v2, pointer_mode, cublasPointerMode_t)
#undef EMU_HANDLE_SETTER
#undef EMU_HANDLE_GETTER

cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t handle, void* workspace,
                                     size_t workspaceSizeInBytes) {
  if (!live(handle))
    return fail(CUBLAS_STATUS_NOT_INITIALIZED, "cublasSetWorkspace: handle %p is not live",
                static_cast<void*>(handle));
  if (workspaceSizeInBytes && !emu::detail::is_device_range(workspace, workspaceSizeInBytes))
    return fail(CUBLAS_STATUS_INVALID_VALUE,
                "cublasSetWorkspace: %zu bytes at %p are not inside one cudaMalloc allocation",
                workspaceSizeInBytes, workspace);
  return CUBLAS_STATUS_SUCCESS;
}

const char* cublasGetStatusString(cublasStatus_t status) {
  const auto& d = emu::detail::tls_status;
  if (status != CUBLAS_STATUS_SUCCESS && status == d.status && !d.text.empty())
    return d.text.c_str();
  return emu::detail::status_text(status);
}
const char* cublasGetStatusName(cublasStatus_t status) {
  switch (status) {
#define EMU_NAME(c) \
  case c:           \
    return #c;
    EMU_NAME(CUBLAS_STATUS_SUCCESS)
    EMU_NAME(CUBLAS_STATUS_NOT_INITIALIZED)
    EMU_NAME(CUBLAS_STATUS_ALLOC_FAILED)
    EMU_NAME(CUBLAS_STATUS_INVALID_VALUE)
    EMU_NAME(CUBLAS_STATUS_ARCH_MISMATCH)
    EMU_NAME(CUBLAS_STATUS_MAPPING_ERROR)
    EMU_NAME(CUBLAS_STATUS_EXECUTION_FAILED)
    EMU_NAME(CUBLAS_STATUS_INTERNAL_ERROR)
    EMU_NAME(CUBLAS_STATUS_NOT_SUPPORTED)
    EMU_NAME(CUBLAS_STATUS_LICENSE_ERROR)
#undef EMU_NAME
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

cublasStatus_t cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t transa,
                              cublasOperation_t transb, int m, int n, int k, const float* alpha,
                              const float* A, int lda, const float* B, int ldb, const float* beta,
                              float* C, int ldc) {
  return emu::detail::sgemm("cublasSgemm", handle, transa, transb, m, n, k, alpha, A, lda, 0, B,
                            ldb, 0, beta, C, ldc, 0, 1);
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa,
                                         cublasOperation_t transb, int m, int n, int k,
                                         const float* alpha, const float* A, int lda,
                                         long long int strideA, const float* B, int ldb,
                                         long long int strideB, const float* beta, float* C,
                                         int ldc, long long int strideC, int batchCount) {
  return emu::detail::sgemm("cublasSgemmStridedBatched", handle, transa, transb, m, n, k, alpha, A,
                            lda, strideA, B, ldb, strideB, beta, C, ldc, strideC, batchCount);
}
