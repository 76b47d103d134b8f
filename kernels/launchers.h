// kernels/launchers.h: host-side entry points of the hand-written kernels (namespace
// pompc::cuda). Each launcher enqueues its kernels on `stream` and returns without synchronising;
// pointers are device pointers. The reference twin of each has the same name in pompc::ref.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "op_types.h"
#include "ops.h"

namespace pompc::cuda {

// Whether this build's kernels can run on the current device (an image for its architecture, or
// PTX it can compile); otherwise false and *why names the GPU, the build's archs and the fix.
bool kernels_loadable(std::string* why);

// kernels/optim.cu
void adam_update(const AdamSettings& cfg, const AdamGroups& groups, float* param,
                 const float* grad, float* m, float* v, AdamScalars* s, cudaStream_t stream);
// scratch: kNormPartials doubles of device memory for the first reduction stage.
constexpr unsigned kNormPartials = 256;
void global_norm(const float* x, size_t n, float* norm, double* scratch, cudaStream_t stream);
void clip_grad_norm(float* grad, size_t n, float max_norm, float* norm, double* scratch,
                    cudaStream_t stream);
void polyak(float* target, const float* online, size_t n, float tau, cudaStream_t stream);

// kernels/layernorm.cu (twins of src/ref/layernorm.h). The backward's scratch: device memory of
// layernorm_backward_scratch(rows, C, groups) floats (row statistics, then the parameter
// gradients' per-chunk partial sums when a group has more than 128 rows).
size_t layernorm_backward_scratch(int rows, int C, int groups);
void layernorm_mish_forward(float* out, float* mean, float* rstd, const float* inp,
                            const float* bias, const float* gamma, const float* beta, int rows,
                            int C, int groups, const Dropout& dropout, const RowLayout& out_rows,
                            cudaStream_t stream);
void layernorm_mish_backward(float* dinp, float* dbias, float* dgamma, float* dbeta,
                             const float* dout, const float* inp, const float* bias,
                             const float* gamma, const float* beta, const float* mean,
                             const float* rstd, int rows, int C, int groups, const Dropout& dropout,
                             float* scratch, cudaStream_t stream);
void layernorm_simnorm_forward(float* out, float* mean, float* rstd, const float* inp,
                               const float* bias, const float* gamma, const float* beta, int rows,
                               int C, int groups, const RowLayout& out_rows, cudaStream_t stream);
void layernorm_simnorm_backward(float* dinp, float* dbias, float* dgamma, float* dbeta,
                                const float* dout, const float* inp, const float* bias,
                                const float* gamma, const float* beta, const float* mean,
                                const float* rstd, int rows, int C, int groups, float* scratch,
                                cudaStream_t stream);

// kernels/two_hot.cu (twins of src/ref/two_hot.h)
void soft_ce_forward(float* loss, const float* logits, const float* x, int rows, const Bins& bins,
                     cudaStream_t stream);
void soft_ce_backward(float* dlogits, const float* dloss, const float* logits, const float* x,
                      int rows, const Bins& bins, cudaStream_t stream);
void soft_ce_heads_forward(float* loss, const float* logits, const float* x, int heads, int rows,
                           const Bins& bins, cudaStream_t stream);
void soft_ce_heads_backward(float* dlogits, const float* dloss, const float* logits, const float* x,
                            int heads, int rows, const Bins& bins, cudaStream_t stream);
void two_hot_inv_forward(float* out, const float* logits, const float* bias, int rows,
                         const Bins& bins, cudaStream_t stream);
void two_hot_inv_pair_forward(float* out, const float* logits, const float* bias, int Qn, int rows,
                              const Bins& bins, PairMode mode, uint64_t seed, PhiloxOffset offset,
                              cudaStream_t stream);
void two_hot_inv_backward(float* dlogits, const float* dout, const float* logits, int rows,
                          const Bins& bins, cudaStream_t stream);

// kernels/linear.cu (twins of src/ref/gemm.h and src/ref/linear.h; row-major, cuBLAS underneath)
void gemm(cublasHandle_t h, bool transa, bool transb, int m, int n, int k, float alpha,
          const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc);
void gemm_strided_batched(cublasHandle_t h, bool transa, bool transb, int m, int n, int k,
                          float alpha, const float* A, int lda, int64_t strideA, const float* B,
                          int ldb, int64_t strideB, float beta, float* C, int ldc,
                          int64_t strideC, int batch);
// dst[g, c] += sum_r src[g, r, c] over `groups` consecutive [rows, cols] blocks.
void add_column_sums(float* dst, const float* src, int rows, int cols, int groups,
                     cudaStream_t stream);
void linear_forward(cublasHandle_t h, float* out, const float* inp, const float* weight,
                    const float* bias, int B, int in, int out_features, int64_t ld_inp,
                    cudaStream_t stream);
void linear_backward(cublasHandle_t h, float* dinp, float* dweight, float* dbias,
                     const float* dout, const float* inp, const float* weight, int B, int in,
                     int out_features, cudaStream_t stream);
void linear_ensemble_forward(cublasHandle_t h, float* out, const float* inp, const float* weight,
                             const float* bias, int Qn, int B, int in, int out_features,
                             bool shared_input, cudaStream_t stream);
void linear_ensemble_backward(cublasHandle_t h, float* dinp, float* dweight, float* dbias,
                              const float* dout, const float* inp, const float* weight, int Qn,
                              int B, int in, int out_features, bool shared_input,
                              cudaStream_t stream);

// kernels/policy.cu (twins of src/ref/policy.h)
void policy_head_forward(float* action, float* mu, float* log_std, float* log_pi, float* log_prob,
                         const float* raw, const float* bias, int B, int A, const PolicyHead& head,
                         uint64_t seed, PhiloxOffset offset, int64_t action_ld,
                         cudaStream_t stream);
void policy_head_backward(float* draw, const float* daction, const float* dmu,
                          const float* dlog_std, const float* dlog_pi, const float* raw, int B,
                          int A, const PolicyHead& head, uint64_t seed, PhiloxOffset offset,
                          cudaStream_t stream);
void policy_log_ratio(float* out, const float* raw, const float* raw_prior, int B, int A,
                      const PolicyHead& head, uint64_t seed, PhiloxOffset offset,
                      cudaStream_t stream);

// kernels/prior.cu (twins of src/ref/prior.h)
void gauss_kl_forward(float* out, const float* mu, const float* log_std, const float* mu_p,
                      const float* sigma_p, int rows, int A, KlDir dir, cudaStream_t stream);
void gauss_kl_backward(float* dmu, float* dlog_std, const float* dout, const float* mu,
                       const float* log_std, const float* mu_p, const float* sigma_p, int rows,
                       int A, KlDir dir, cudaStream_t stream);
void gauss_nll_forward(float* out, const float* a, const float* mu_p, const float* sigma_p,
                       int rows, int A, float min_std, cudaStream_t stream);
void gauss_nll_backward(float* da, const float* dout, const float* a, const float* mu_p,
                        const float* sigma_p, int rows, int A, float min_std, cudaStream_t stream);
void prior_sample(float* a_k, const float* mu_p, const float* sigma_p, int S, int rows, int A,
                  uint64_t seed, PhiloxOffset offset, cudaStream_t stream);
void sample_weights(float* w, float* log_z, const float* q, int S, int rows, float beta,
                    cudaStream_t stream);
void weighted_nll_forward(float* out, const float* a_k, const float* w, const float* mu,
                          const float* log_std, int S, int rows, int A, cudaStream_t stream);
void weighted_nll_backward(float* dmu, float* dlog_std, const float* dout, const float* a_k,
                           const float* w, const float* mu, const float* log_std, int S, int rows,
                           int A, cudaStream_t stream);
void exp_forward(float* y, const float* x, int64_t n, cudaStream_t stream);
void scale_gate(float* out, const float* scale, float threshold, cudaStream_t stream);

// kernels/basic.cu (twins of src/ref/basic.h; mse scratch: kMsePartials doubles)
constexpr unsigned kMsePartials = 256;
void copy_rows(float* dst, int64_t ldd, const float* src, int64_t lds, int rows, int cols,
               cudaStream_t stream);
void repeat_rows(float* dst, int64_t ldd, const float* src, int rows, int reps, int cols,
                 cudaStream_t stream);
void concat_forward(float* out, const float* x1, const float* x2, int rows, int n1, int n2,
                    cudaStream_t stream);
void concat_backward(float* dx1, float* dx2, const float* dout, int rows, int n1, int n2,
                     cudaStream_t stream);
void mse_forward(float* loss, const float* pred, const float* target, int64_t n, double* scratch,
                 cudaStream_t stream);
void mse_segments_forward(float* loss, const float* pred, const float* target, int T, int64_t n,
                          double* scratch, cudaStream_t stream);
void mse_segments_backward(float* dpred, const float* pred, const float* target,
                           const TermWeights& dloss, int64_t n, cudaStream_t stream);
void mse_backward(float* dpred, const float* pred, const float* target, float dloss, int64_t n,
                  cudaStream_t stream);
void counter_add(uint64_t* counter, uint64_t k, cudaStream_t stream);

// kernels/scale.cu (twin of src/ref/scale.h running_scale_update; the batch must fit one block)
constexpr int kScaleMaxN = 4096;
void running_scale_update(float* value, const float* x, int n, float tau, cudaStream_t stream);

// kernels/mppi.cu (twins of src/ref/mppi.h)
constexpr int kMppiMaxN = 4096;  // num_samples sorted per block in shared memory (32 KiB)
void mppi_init(float* mean, float* std, const float* prev_mean, const uint8_t* first,
               const MppiShape& sh, float max_std, cudaStream_t stream);
void mppi_sample(float* actions, const float* mean, const float* std, const MppiShape& sh,
                 uint64_t seed, PhiloxOffset offset, float* rows_out, int64_t rows_ld,
                 cudaStream_t stream);
void mppi_elites(int32_t* elite_idx, float* elite_value, const float* value, const MppiShape& sh,
                 cudaStream_t stream);
void mppi_elites_update(int32_t* elite_idx, float* elite_value, float* mean, float* std,
                        float* score, float* value, const float* terms, const TermWeights& w,
                        const float* actions, const MppiShape& sh, float temperature, float min_std,
                        float max_std, cudaStream_t stream);
void mppi_update(float* mean, float* std, float* score, const float* actions,
                 const int32_t* elite_idx, const float* elite_value, const MppiShape& sh,
                 float temperature, float min_std, float max_std, cudaStream_t stream);
void mppi_select(float* action, float* mu_p, float* sigma_p, const float* actions,
                 const int32_t* elite_idx, const float* score, const float* std,
                 const MppiShape& sh, bool explore, uint64_t seed, PhiloxOffset offset,
                 cudaStream_t stream);

// kernels/loss.cu (twins of src/ref/loss.h)
void fill(float* x, int64_t n, float value, cudaStream_t stream);
void discounted_sum(float* out, const float* x, int64_t n, const TermWeights& w,
                    cudaStream_t stream);
void scale_add(float* y, const float* x, int64_t n, float alpha, const float* divisor, float beta,
               cudaStream_t stream);
void weighted_sum(float* out, const float* x, const float* w, int64_t n, float alpha,
                  const float* divisor, float beta, cudaStream_t stream);
void pair_select_forward(float* out, const float* q, int Qn, int rows, PairMode mode, uint64_t seed,
                         PhiloxOffset offset, cudaStream_t stream);
void pair_select_backward(float* dq, const float* dout, const float* q, int Qn, int rows,
                          PairMode mode, uint64_t seed, PhiloxOffset offset, cudaStream_t stream);
void gather_pair(float* dst, int32_t* heads, const float* src, const PairGather& g, uint64_t seed,
                 PhiloxOffset offset, cudaStream_t stream);

}  // namespace pompc::cuda
