// The CUDA backend of the Ops interface: device memory, one stream, each op forwarded to its
// launcher in kernels/ (declared in kernels/launchers.h). Compiled only when CUDA is available
// (nvcc at build time) and into test_emu, where the kernels run in the host emulation.
#include <cuda_runtime.h>

#include <algorithm>

#include "common.cuh"
#include "launchers.h"
#include "ops.h"

namespace pompc {
namespace {

class CudaOps final : public Ops {
 public:
  CudaOps() {
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    CUDA_CHECK(cudaMalloc(&norm_scratch_, cuda::kNormPartials * sizeof(double)));
    CUBLAS_CHECK(cublasCreate(&cublas_));
    CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
    // A workspace of our own (32 MiB: the cuBLAS guide's size for Hopper, 4 MiB before it), so
    // that GEMMs inside a captured graph never make cuBLAS allocate one.
    CUDA_CHECK(cudaMalloc(&cublas_workspace_, kCublasWorkspace));
    CUBLAS_CHECK(cublasSetWorkspace(cublas_, cublas_workspace_, kCublasWorkspace));
    set_tf32(true);
  }
  ~CudaOps() override {
    cudaFree(cublas_workspace_);
    cudaFree(ln_scratch_);
    cudaFree(mse_scratch_);
    cudaFree(norm_scratch_);
    cublasDestroy(cublas_);
    cudaStreamDestroy(stream_);
  }

  // TF32 tensor cores for the GEMMs (the default on a GPU); off gives fp32 GEMMs (parity tests).
  void set_tf32(bool on) override {
    CUBLAS_CHECK(cublasSetMathMode(cublas_, on ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_PEDANTIC_MATH));
  }
  CudaOps(const CudaOps&) = delete;
  CudaOps& operator=(const CudaOps&) = delete;

  Backend backend() const override { return Backend::cuda; }
  std::string description() const override {
    int dev = 0;
    cudaDeviceProp prop{};
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
    return strfmt("cuda (%s, sm_%d%d)", prop.name, prop.major, prop.minor);
  }

  void* alloc_bytes(size_t bytes) override {
    void* p = nullptr;
    CUDA_CHECK(cudaMalloc(&p, bytes ? bytes : 1));
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes ? bytes : 1, stream_));
    return p;
  }
  void free_bytes(void* p) override {
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    CUDA_CHECK(cudaFree(p));
  }
  void copy_to_backend(void* dst, const void* src, size_t bytes) override {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));  // src may be a temporary of the caller
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void synchronize() override { CUDA_CHECK(cudaStreamSynchronize(stream_)); }
  void* alloc_host(size_t bytes) override {
    void* p = nullptr;
    CUDA_CHECK(cudaMallocHost(&p, bytes ? bytes : 1));
    return p;
  }
  void free_host(void* p) override {
    CUDA_CHECK(cudaStreamSynchronize(stream_));  // a copy may still read or write it
    CUDA_CHECK(cudaFreeHost(p));
  }
  void copy_to_backend_async(void* dst, const void* src, size_t bytes) override {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
  }
  void copy_to_host_async(void* dst, const void* src, size_t bytes) override {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
  }
  struct CudaGraph final : Graph {
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    ~CudaGraph() override {
      if (exec) cudaGraphExecDestroy(exec);
      if (graph) cudaGraphDestroy(graph);
    }
  };
  std::unique_ptr<Graph> capture(const std::function<void()>& record) override {
    auto g = std::make_unique<CudaGraph>();
    CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    try {
      record();
    } catch (...) {
      cudaGraph_t broken = nullptr;
      cudaStreamEndCapture(stream_, &broken);  // leave the stream usable
      if (broken) cudaGraphDestroy(broken);
      throw;
    }
    CUDA_CHECK(cudaStreamEndCapture(stream_, &g->graph));
    CUDA_CHECK(cudaGraphInstantiate(&g->exec, g->graph, 0));
    return g;
  }
  void replay(Graph& graph) override {
    CUDA_CHECK(cudaGraphLaunch(static_cast<CudaGraph&>(graph).exec, stream_));
  }
  void counter_add(uint64_t* counter, uint64_t k) override {
    cuda::counter_add(counter, k, stream_);
  }
  void copy_within(void* dst, const void* src, size_t bytes) override {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
  }

  void adam_update(const AdamSettings& cfg, const AdamGroups& groups, float* param,
                   const float* grad, float* m, float* v, AdamScalars* s) override {
    cuda::adam_update(cfg, groups, param, grad, m, v, s, stream_);
  }
  void clip_grad_norm(float* grad, size_t n, float max_norm, float* norm) override {
    cuda::clip_grad_norm(grad, n, max_norm, norm, norm_scratch_, stream_);
  }
  void polyak(float* target, const float* online, size_t n, float tau) override {
    cuda::polyak(target, online, n, tau, stream_);
  }

  void linear_forward(float* out, const float* inp, const float* w, const float* b, int B, int in,
                      int out_features, int64_t ld_inp) override {
    cuda::linear_forward(cublas_, out, inp, w, b, B, in, out_features, ld_inp, stream_);
  }
  void linear_backward(float* dinp, float* dw, float* db, const float* dout, const float* inp,
                       const float* w, int B, int in, int out_features) override {
    cuda::linear_backward(cublas_, dinp, dw, db, dout, inp, w, B, in, out_features, stream_);
  }
  void linear_ensemble_forward(float* out, const float* inp, const float* w, const float* b, int Qn,
                               int B, int in, int out_features, bool shared) override {
    cuda::linear_ensemble_forward(cublas_, out, inp, w, b, Qn, B, in, out_features, shared,
                                  stream_);
  }
  void linear_ensemble_backward(float* dinp, float* dw, float* db, const float* dout,
                                const float* inp, const float* w, int Qn, int B, int in,
                                int out_features, bool shared) override {
    cuda::linear_ensemble_backward(cublas_, dinp, dw, db, dout, inp, w, Qn, B, in, out_features,
                                   shared, stream_);
  }
  void layernorm_mish_forward(float* out, float* mean, float* rstd, const float* inp,
                              const float* bias, const float* gamma, const float* beta, int rows,
                              int C, int groups, const Dropout& dropout,
                              const RowLayout& out_rows) override {
    cuda::layernorm_mish_forward(out, mean, rstd, inp, bias, gamma, beta, rows, C, groups, dropout,
                                 out_rows, stream_);
  }
  void layernorm_mish_backward(float* dinp, float* dbias, float* dgamma, float* dbeta,
                               const float* dout, const float* inp, const float* bias,
                               const float* gamma, const float* beta, const float* mean,
                               const float* rstd, int rows, int C, int groups,
                               const Dropout& dropout) override {
    cuda::layernorm_mish_backward(dinp, dbias, dgamma, dbeta, dout, inp, bias, gamma, beta, mean,
                                  rstd, rows, C, groups, dropout, ln_scratch(rows, C, groups),
                                  stream_);
  }
  void layernorm_simnorm_forward(float* out, float* mean, float* rstd, const float* inp,
                                 const float* bias, const float* gamma, const float* beta, int rows,
                                 int C, int groups, const RowLayout& out_rows) override {
    cuda::layernorm_simnorm_forward(out, mean, rstd, inp, bias, gamma, beta, rows, C, groups,
                                    out_rows, stream_);
  }
  void layernorm_simnorm_backward(float* dinp, float* dbias, float* dgamma, float* dbeta,
                                  const float* dout, const float* inp, const float* bias,
                                  const float* gamma, const float* beta, const float* mean,
                                  const float* rstd, int rows, int C, int groups) override {
    cuda::layernorm_simnorm_backward(dinp, dbias, dgamma, dbeta, dout, inp, bias, gamma, beta, mean,
                                     rstd, rows, C, groups, ln_scratch(rows, C, groups), stream_);
  }
  void copy_rows(float* dst, int64_t ldd, const float* src, int64_t lds, int rows,
                 int cols) override {
    cuda::copy_rows(dst, ldd, src, lds, rows, cols, stream_);
  }
  void repeat_rows(float* dst, int64_t ldd, const float* src, int rows, int reps,
                   int cols) override {
    cuda::repeat_rows(dst, ldd, src, rows, reps, cols, stream_);
  }
  void concat_forward(float* out, const float* x1, const float* x2, int rows, int n1,
                      int n2) override {
    cuda::concat_forward(out, x1, x2, rows, n1, n2, stream_);
  }
  void concat_backward(float* dx1, float* dx2, const float* dout, int rows, int n1,
                       int n2) override {
    cuda::concat_backward(dx1, dx2, dout, rows, n1, n2, stream_);
  }
  void mse_segments_forward(float* loss, const float* pred, const float* target, int T,
                            int64_t n) override {
    cuda::mse_segments_forward(loss, pred, target, T, n, mse_scratch(T), stream_);
  }
  void mse_segments_backward(float* dpred, const float* pred, const float* target,
                             const TermWeights& dloss, int64_t n) override {
    cuda::mse_segments_backward(dpred, pred, target, dloss, n, stream_);
  }
  void mse_forward(float* loss, const float* pred, const float* target, int64_t n) override {
    cuda::mse_forward(loss, pred, target, n, norm_scratch_, stream_);
  }
  void mse_backward(float* dpred, const float* pred, const float* target, float dloss,
                    int64_t n) override {
    cuda::mse_backward(dpred, pred, target, dloss, n, stream_);
  }
  void soft_ce_forward(float* loss, const float* logits, const float* x, int rows,
                       const Bins& bins) override {
    cuda::soft_ce_forward(loss, logits, x, rows, bins, stream_);
  }
  void soft_ce_backward(float* dlogits, const float* dloss, const float* logits, const float* x,
                        int rows, const Bins& bins) override {
    cuda::soft_ce_backward(dlogits, dloss, logits, x, rows, bins, stream_);
  }
  void soft_ce_heads_forward(float* loss, const float* logits, const float* x, int heads, int rows,
                             const Bins& bins) override {
    cuda::soft_ce_heads_forward(loss, logits, x, heads, rows, bins, stream_);
  }
  void soft_ce_heads_backward(float* dlogits, const float* dloss, const float* logits,
                              const float* x, int heads, int rows, const Bins& bins) override {
    cuda::soft_ce_heads_backward(dlogits, dloss, logits, x, heads, rows, bins, stream_);
  }
  void two_hot_inv_pair_forward(float* out, const float* logits, const float* bias, int Qn,
                                int rows, const Bins& bins, PairMode mode, uint64_t seed,
                                PhiloxOffset offset) override {
    cuda::two_hot_inv_pair_forward(out, logits, bias, Qn, rows, bins, mode, seed, offset, stream_);
  }
  void two_hot_inv_forward(float* out, const float* logits, const float* bias, int rows,
                           const Bins& bins) override {
    cuda::two_hot_inv_forward(out, logits, bias, rows, bins, stream_);
  }
  void two_hot_inv_backward(float* dlogits, const float* dout, const float* logits, int rows,
                            const Bins& bins) override {
    cuda::two_hot_inv_backward(dlogits, dout, logits, rows, bins, stream_);
  }
  void policy_head_forward(float* action, float* mu, float* log_std, float* log_pi, float* log_prob,
                           const float* raw, const float* bias, int B, int A,
                           const PolicyHead& head, uint64_t seed, PhiloxOffset offset,
                           int64_t action_ld) override {
    cuda::policy_head_forward(action, mu, log_std, log_pi, log_prob, raw, bias, B, A, head, seed,
                              offset, action_ld, stream_);
  }
  void policy_head_backward(float* draw, const float* daction, const float* dmu,
                            const float* dlog_std, const float* dlog_pi, const float* raw, int B,
                            int A, const PolicyHead& head, uint64_t seed,
                            PhiloxOffset offset) override {
    cuda::policy_head_backward(draw, daction, dmu, dlog_std, dlog_pi, raw, B, A, head, seed,
                               offset, stream_);
  }
  void policy_log_ratio(float* out, const float* raw, const float* raw_prior, int B, int A,
                        const PolicyHead& head, uint64_t seed, PhiloxOffset offset) override {
    cuda::policy_log_ratio(out, raw, raw_prior, B, A, head, seed, offset, stream_);
  }
  void gauss_kl_forward(float* out, const float* mu, const float* log_std, const float* mu_p,
                        const float* sigma_p, int rows, int A, KlDir dir) override {
    cuda::gauss_kl_forward(out, mu, log_std, mu_p, sigma_p, rows, A, dir, stream_);
  }
  void gauss_kl_backward(float* dmu, float* dlog_std, const float* dout, const float* mu,
                         const float* log_std, const float* mu_p, const float* sigma_p, int rows,
                         int A, KlDir dir) override {
    cuda::gauss_kl_backward(dmu, dlog_std, dout, mu, log_std, mu_p, sigma_p, rows, A, dir, stream_);
  }
  void gauss_nll_forward(float* out, const float* a, const float* mu_p, const float* sigma_p,
                         int rows, int A, float min_std) override {
    cuda::gauss_nll_forward(out, a, mu_p, sigma_p, rows, A, min_std, stream_);
  }
  void gauss_nll_backward(float* da, const float* dout, const float* a, const float* mu_p,
                          const float* sigma_p, int rows, int A, float min_std) override {
    cuda::gauss_nll_backward(da, dout, a, mu_p, sigma_p, rows, A, min_std, stream_);
  }
  void prior_sample(float* a_k, const float* mu_p, const float* sigma_p, int S, int rows, int A,
                    uint64_t seed, PhiloxOffset offset) override {
    cuda::prior_sample(a_k, mu_p, sigma_p, S, rows, A, seed, offset, stream_);
  }
  void sample_weights(float* w, float* log_z, const float* q, int S, int rows,
                      float beta) override {
    cuda::sample_weights(w, log_z, q, S, rows, beta, stream_);
  }
  void weighted_nll_forward(float* out, const float* a_k, const float* w, const float* mu,
                            const float* log_std, int S, int rows, int A) override {
    cuda::weighted_nll_forward(out, a_k, w, mu, log_std, S, rows, A, stream_);
  }
  void weighted_nll_backward(float* dmu, float* dlog_std, const float* dout, const float* a_k,
                             const float* w, const float* mu, const float* log_std, int S,
                             int rows, int A) override {
    cuda::weighted_nll_backward(dmu, dlog_std, dout, a_k, w, mu, log_std, S, rows, A, stream_);
  }
  void exp_forward(float* y, const float* x, int64_t n) override {
    cuda::exp_forward(y, x, n, stream_);
  }
  void scale_gate(float* out, const float* scale, float threshold) override {
    cuda::scale_gate(out, scale, threshold, stream_);
  }
  void running_scale_update(float* value, const float* x, int n, float tau) override {
    cuda::running_scale_update(value, x, n, tau, stream_);
  }
  void fill(float* x, int64_t n, float value) override { cuda::fill(x, n, value, stream_); }
  void discounted_sum(float* out, const float* x, int64_t n, const TermWeights& w) override {
    cuda::discounted_sum(out, x, n, w, stream_);
  }
  void scale_add(float* y, const float* x, int64_t n, float alpha, const float* divisor,
                 float beta) override {
    cuda::scale_add(y, x, n, alpha, divisor, beta, stream_);
  }
  void weighted_sum(float* out, const float* x, const float* w, int64_t n, float alpha,
                    const float* divisor, float beta) override {
    cuda::weighted_sum(out, x, w, n, alpha, divisor, beta, stream_);
  }
  void pair_select_forward(float* out, const float* q, int Qn, int rows, PairMode mode,
                           uint64_t seed, PhiloxOffset offset) override {
    cuda::pair_select_forward(out, q, Qn, rows, mode, seed, offset, stream_);
  }
  void pair_select_backward(float* dq, const float* dout, const float* q, int Qn, int rows,
                            PairMode mode, uint64_t seed, PhiloxOffset offset) override {
    cuda::pair_select_backward(dq, dout, q, Qn, rows, mode, seed, offset, stream_);
  }
  void gather_pair(float* dst, int32_t* heads, const float* src, const PairGather& g, uint64_t seed,
                   PhiloxOffset offset) override {
    cuda::gather_pair(dst, heads, src, g, seed, offset, stream_);
  }

  void mppi_init(float* mean, float* std, const float* prev_mean, const uint8_t* first,
                 const MppiShape& sh, float max_std) override {
    cuda::mppi_init(mean, std, prev_mean, first, sh, max_std, stream_);
  }
  void mppi_sample(float* actions, const float* mean, const float* std, const MppiShape& sh,
                   uint64_t seed, PhiloxOffset offset, float* rows_out, int64_t rows_ld) override {
    cuda::mppi_sample(actions, mean, std, sh, seed, offset, rows_out, rows_ld, stream_);
  }
  void mppi_elites(int32_t* elite_idx, float* elite_value, const float* value,
                   const MppiShape& sh) override {
    cuda::mppi_elites(elite_idx, elite_value, value, sh, stream_);
  }
  void mppi_update(float* mean, float* std, float* score, const float* actions,
                   const int32_t* elite_idx, const float* elite_value, const MppiShape& sh,
                   float temperature, float min_std, float max_std) override {
    cuda::mppi_update(mean, std, score, actions, elite_idx, elite_value, sh, temperature, min_std,
                    max_std, stream_);
  }
  void mppi_elites_update(int32_t* elite_idx, float* elite_value, float* mean, float* std,
                          float* score, float* value, const float* terms, const TermWeights& w,
                          const float* actions, const MppiShape& sh, float temperature,
                          float min_std, float max_std) override {
    cuda::mppi_elites_update(elite_idx, elite_value, mean, std, score, value, terms, w, actions, sh,
                             temperature, min_std, max_std, stream_);
  }
  void mppi_select(float* action, float* mu_p, float* sigma_p, const float* actions,
                   const int32_t* elite_idx, const float* score, const float* std,
                   const MppiShape& sh, bool explore, uint64_t seed, PhiloxOffset offset) override {
    cuda::mppi_select(action, mu_p, sigma_p, actions, elite_idx, score, std, sh, explore, seed,
                    offset, stream_);
  }

 private:
  // Grow-on-demand scratch: *buf (holding *size elements) grown to `need` (at least 1) elements.
  // Kernels in flight may still read the old buffer, so it waits for the stream first; callers
  // reach a new size at an eager call, never inside a graph capture (the model runs one eager
  // step before capturing).
  template <typename T>
  T* grown(T** buf, size_t* size, size_t need) {
    need = std::max<size_t>(need, 1);
    if (need > *size) {
      CUDA_CHECK(cudaStreamSynchronize(stream_));
      CUDA_CHECK(cudaFree(*buf));
      CUDA_CHECK(cudaMalloc(buf, need * sizeof(T)));
      *size = need;
    }
    return *buf;
  }
  // The segmented MSE's: T kMsePartials doubles.
  double* mse_scratch(int T) {
    return grown(&mse_scratch_, &mse_scratch_size_, size_t(std::max(T, 1)) * cuda::kMsePartials);
  }
  // The LayerNorm backward's: cuda::layernorm_backward_scratch floats (row statistics and
  // per-chunk partial sums).
  float* ln_scratch(int rows, int C, int groups) {
    return grown(&ln_scratch_, &ln_scratch_size_,
                 cuda::layernorm_backward_scratch(rows, C, groups));
  }

  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  static_assert(cuda::kMsePartials <= cuda::kNormPartials, "MSE partials share norm_scratch_");
  double* norm_scratch_ = nullptr;  // kNormPartials doubles: norm and MSE partial sums
  float* ln_scratch_ = nullptr;
  double* mse_scratch_ = nullptr;
  size_t mse_scratch_size_ = 0;
  size_t ln_scratch_size_ = 0;
  static constexpr size_t kCublasWorkspace = size_t{32} << 20;
  void* cublas_workspace_ = nullptr;
};

// A usable GPU: the driver is new enough for this build's CUDA runtime, a device is present, and
// this build's kernels can run on it. Otherwise false and *why_not says what to change.
bool probe(std::string* why_not) {
  std::string why;
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  int driver = 0;
  if (err == cudaErrorInsufficientDriver) (void)cudaDriverGetVersion(&driver);
  if (err == cudaErrorInsufficientDriver && driver == 0) {
    why = "no usable GPU: no NVIDIA driver is loaded on this machine";
  } else if (err == cudaErrorInsufficientDriver) {
    why = strfmt(
        "the NVIDIA driver supports CUDA up to %d.%d, this build's runtime is CUDA %d.%d: update "
        "the driver, or build with a CUDA toolkit no newer than the driver",
        driver / 1000, driver % 1000 / 10, CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10);
  } else if (err != cudaSuccess) {
    why = strfmt("no usable GPU: %s", cudaGetErrorString(err));
  } else if (count == 0) {
    why = "no GPU found";
  } else if (cuda::kernels_loadable(&why)) {
    return true;
  }
  (void)cudaGetLastError();
  if (why_not) *why_not = why;
  return false;
}

std::unique_ptr<Ops> create() { return std::make_unique<CudaOps>(); }

[[maybe_unused]] const int registered = register_cuda_ops(create, probe);

}  // namespace
}  // namespace pompc
