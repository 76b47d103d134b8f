// src/ops.h: the one numeric interface that the model, planner, agent and trainer are written
// against. Two implementations:
//   reference  src/ref/    plain C++ (OpenMP), readable, the ground truth      (make_ref_ops)
//   CUDA       kernels/    hand-written kernels + cuBLAS, the fast path        (make_cuda_ops)
// Every CUDA op is checked against its reference op in tests/ (emulated in CI, on a GPU when one
// is lent).
//
// Memory: every pointer an op takes lives in the backend's memory space (device memory for CUDA,
// host memory for the reference); move data with copy_to_backend / copy_to_host. Ops run in
// order on the backend's one stream and do not synchronise with the host: scalars an op produces
// (a norm, a step counter) stay in backend memory, so a captured CUDA graph sees fresh values on
// every replay.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "op_types.h"  // the value types of the op signatures: Dropout, PairMode, MppiShape, ...

namespace pompc {

enum class Backend { cpu, cuda };

// ---- optimizer types ---------------------------------------------------------------------------

// Adam hyper-parameters (PyTorch semantics, no weight decay, no amsgrad).
struct AdamSettings {
  float beta1 = 0.9f;   // first-moment decay
  float beta2 = 0.999f; // second-moment decay
  float eps = 1e-8f;    // added to the bias-corrected sqrt(v); the policy optimizer uses 1e-5
};

// Learning-rate groups of one contiguous parameter buffer: group g covers [end[g-1], end[g]),
// with end[-1] = 0. TD-MPC2's model optimizer has two: the encoder (lr * enc_lr_scale = 0.3) and
// everything else. Passed by value to the kernel (baked into a captured graph).
struct AdamGroups {
  static constexpr int kMax = 8;
  int count = 0;           // number of groups in use
  size_t end[kMax] = {};   // exclusive end offset of each group, increasing
  float lr[kMax] = {};     // learning rate of each group

  // Appends a group of n parameters; returns its offset.
  size_t add(size_t n, float lr);
  size_t total() const { return count ? end[count - 1] : 0; }
};

// Step-varying Adam scalars, kept in backend memory and advanced by adam_update itself.
struct AdamScalars {
  uint32_t step;  // number of updates taken (PyTorch's `step`), 0 before the first
  float bias1;    // 1 - beta1^step
  float bias2;    // 1 - beta2^step
};

// ---- the interface -----------------------------------------------------------------------------

class Ops {
 public:
  virtual ~Ops() = default;
  virtual Backend backend() const = 0;
  virtual std::string description() const = 0;  // e.g. "cpu (reference, 2 OpenMP threads)"

  // Memory in the backend's space. alloc_bytes returns zero-filled, 256-byte aligned memory.
  virtual void* alloc_bytes(size_t bytes) = 0;
  virtual void free_bytes(void* p) = 0;
  virtual void copy_to_backend(void* dst, const void* host_src, size_t bytes) = 0;
  virtual void copy_to_host(void* host_dst, const void* src, size_t bytes) = 0;
  // Waits until every op issued so far has finished (a no-op for the reference).
  virtual void synchronize() = 0;
  // Host memory for the asynchronous copies below (page-locked on CUDA, so that a copy runs
  // while the host goes on; plain aligned memory on the reference). Freed with free_host.
  virtual void* alloc_host(size_t bytes) = 0;
  virtual void free_host(void* p) = 0;
  // Copies in stream order that do not wait for completion: the host side must be alloc_host
  // memory, left unchanged (to the backend) or unread (to the host) until the next synchronize()
  // (or blocking copy_to_backend / copy_to_host / free_bytes).
  virtual void copy_to_backend_async(void* dst, const void* host_src, size_t bytes) = 0;
  virtual void copy_to_host_async(void* host_dst, const void* src, size_t bytes) = 0;

  // Records the ops `record` issues as one replayable unit: a CUDA graph on the CUDA backend
  // (kernel arguments baked at capture, so the recorded ops must not allocate or synchronise:
  // run them once before capturing so that every scratch buffer has its size); on the reference
  // backend, the function itself. replay() runs the recording again in stream order.
  class Graph {
   public:
    virtual ~Graph() = default;
  };
  virtual std::unique_ptr<Graph> capture(const std::function<void()>& record) = 0;
  virtual void replay(Graph& graph) = 0;

  // A copy inside backend memory, in stream order (no host synchronisation; capturable).
  virtual void copy_within(void* dst, const void* src, size_t bytes) = 0;
  // *counter += k for a uint64 in backend memory, in stream order (capturable): how a captured
  // graph advances the PhiloxOffset base its ops read (kernels/philox.cuh).
  virtual void counter_add(uint64_t* counter, uint64_t k) = 0;

  template <typename T>
  T* alloc(size_t n) {
    return static_cast<T*>(alloc_bytes(n * sizeof(T)));
  }

  // ---- optimizer (src/ref/optim.cpp, kernels/optim.cu) ----
  // One Adam step over the whole buffer: advances s->step and the bias corrections, then for
  // every i in group g: m = m + (1-b1)(g - m); v = b2 v + (1-b2) g^2;
  // p -= lr_g / bias1 * m / (sqrt(v) / sqrt(bias2) + eps). Overwrites param, m, v, *s.
  virtual void adam_update(const AdamSettings& cfg, const AdamGroups& groups, float* param,
                           const float* grad, float* m, float* v, AdamScalars* s) = 0;
  // *norm = ||grad||_2 over n elements, then grad *= min(1, max_norm / (norm + 1e-6))
  // (torch.nn.utils.clip_grad_norm_). Overwrites grad and *norm (a backend scalar).
  virtual void clip_grad_norm(float* grad, size_t n, float max_norm, float* norm) = 0;
  // target += tau * (online - target), elementwise (Polyak averaging). Overwrites target.
  virtual void polyak(float* target, const float* online, size_t n, float tau) = 0;

  // ---- the world model's ops: maths, shapes and accumulation rules in the src/ref/ header of
  // the same name (every gradient is ACCUMULATED; forward outputs overwritten). ----
  // src/ref/linear.h | kernels/linear.cu
  // ld_inp: inp's row stride (0: in), e.g. z read out of [z, a] rows.
  virtual void linear_forward(float* out, const float* inp, const float* weight, const float* bias,
                              int B, int in, int out_features, int64_t ld_inp = 0) = 0;
  virtual void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                               const float* inp, const float* weight, int B, int in,
                               int out_features) = 0;
  virtual void linear_ensemble_forward(float* out, const float* inp, const float* weight,
                                       const float* bias, int Qn, int B, int in, int out_features,
                                       bool shared_input) = 0;
  virtual void linear_ensemble_backward(float* dinp, float* dweight, float* dbias,
                                        const float* dout, const float* inp, const float* weight,
                                        int Qn, int B, int in, int out_features,
                                        bool shared_input) = 0;
  // src/ref/layernorm.h | kernels/layernorm.cu
  virtual void layernorm_mish_forward(float* out, float* mean, float* rstd, const float* inp,
                                      const float* bias, const float* gamma, const float* beta,
                                      int rows, int C, int groups, const Dropout& dropout,
                                      const RowLayout& out_rows = {}) = 0;
  virtual void layernorm_mish_backward(float* dinp, float* dbias, float* dgamma, float* dbeta,
                                       const float* dout, const float* inp, const float* bias,
                                       const float* gamma, const float* beta, const float* mean,
                                       const float* rstd, int rows, int C, int groups,
                                       const Dropout& dropout) = 0;
  virtual void layernorm_simnorm_forward(float* out, float* mean, float* rstd, const float* inp,
                                         const float* bias, const float* gamma, const float* beta,
                                         int rows, int C, int groups,
                                         const RowLayout& out_rows = {}) = 0;
  virtual void layernorm_simnorm_backward(float* dinp, float* dbias, float* dgamma, float* dbeta,
                                          const float* dout, const float* inp, const float* bias,
                                          const float* gamma, const float* beta,
                                          const float* mean, const float* rstd, int rows, int C,
                                          int groups) = 0;
  // src/ref/basic.h | kernels/basic.cu (*loss: a backend scalar)
  virtual void copy_rows(float* dst, int64_t ldd, const float* src, int64_t lds, int rows,
                         int cols) = 0;
  virtual void repeat_rows(float* dst, int64_t ldd, const float* src, int rows, int reps,
                           int cols) = 0;
  virtual void concat_forward(float* out, const float* x1, const float* x2, int rows, int n1,
                              int n2) = 0;
  virtual void concat_backward(float* dx1, float* dx2, const float* dout, int rows, int n1,
                               int n2) = 0;
  virtual void mse_forward(float* loss, const float* pred, const float* target, int64_t n) = 0;
  // mse_forward / mse_backward of T = dloss.count consecutive segments of n (loss[t] of segment
  // t; dloss.w[t] its upstream gradient) in one op each.
  virtual void mse_segments_forward(float* loss, const float* pred, const float* target, int T,
                                    int64_t n) = 0;
  virtual void mse_segments_backward(float* dpred, const float* pred, const float* target,
                                     const TermWeights& dloss, int64_t n) = 0;
  virtual void mse_backward(float* dpred, const float* pred, const float* target, float dloss,
                            int64_t n) = 0;
  // src/ref/two_hot.h | kernels/two_hot.cu
  virtual void soft_ce_forward(float* loss, const float* logits, const float* x, int rows,
                               const Bins& bins) = 0;
  virtual void soft_ce_backward(float* dlogits, const float* dloss, const float* logits,
                                const float* x, int rows, const Bins& bins) = 0;
  // bias: nullptr, or the logits' layer bias [K] (pair: [Qn, K]) that the layer left to this op
  // (linear_forward with a null bias): the result is the same as with the bias added there.
  virtual void two_hot_inv_forward(float* out, const float* logits, const float* bias, int rows,
                                   const Bins& bins) = 0;
  // soft_ce of `heads` logit blocks [heads, rows, K] against the same x [rows] (backward: the
  // same dloss [rows]): one soft_ce call per head in one op; loss [heads, rows].
  virtual void soft_ce_heads_forward(float* loss, const float* logits, const float* x, int heads,
                                     int rows, const Bins& bins) = 0;
  virtual void soft_ce_heads_backward(float* dlogits, const float* dloss, const float* logits,
                                      const float* x, int heads, int rows, const Bins& bins) = 0;
  // two_hot_inv_forward of Qn heads' logits [Qn, rows, K] then pair_select_forward in one op
  // (only the two picked heads are computed; forward only).
  virtual void two_hot_inv_pair_forward(float* out, const float* logits, const float* bias, int Qn,
                                        int rows, const Bins& bins, PairMode mode, uint64_t seed,
                                        PhiloxOffset offset) = 0;
  virtual void two_hot_inv_backward(float* dlogits, const float* dout, const float* logits,
                                    int rows, const Bins& bins) = 0;
  // src/ref/policy.h | kernels/policy.cu
  // bias: nullptr, or the layer's bias [2A] that it left to this op (as two_hot_inv_forward's).
  // action_ld: action's row stride (0: A), e.g. a written beside z in [z, a] rows.
  virtual void policy_head_forward(float* action, float* mu, float* log_std, float* log_pi,
                                   float* log_prob, const float* raw, const float* bias, int B,
                                   int A, const PolicyHead& head, uint64_t seed,
                                   PhiloxOffset offset, int64_t action_ld = 0) = 0;
  virtual void policy_head_backward(float* draw, const float* daction, const float* dmu,
                                    const float* dlog_std, const float* dlog_pi, const float* raw,
                                    int B, int A, const PolicyHead& head, uint64_t seed,
                                    PhiloxOffset offset) = 0;
  // out_b = log pi(a_b) - log pi_prior(a_b), a_b pi's sample (seed, offset) of row b; forward only.
  virtual void policy_log_ratio(float* out, const float* raw, const float* raw_prior, int B, int A,
                                const PolicyHead& head, uint64_t seed, PhiloxOffset offset) = 0;
  // src/ref/prior.h | kernels/prior.cu: the policy-prior divergences of the PO-MPC family.
  // Rows of [rows, A] (mu, log_std of pi_theta; mu_p, sigma_p of the prior, sigma_p a std);
  // samples a_k [S, rows, A] and their values q / weights w [S, rows]. out / log_z [rows] are
  // overwritten, gradients ACCUMULATED; only gauss_kl_backward's dmu / dlog_std may be null.
  // gauss_kl: out_r = mean_j KL_j, reverse KL(N(mu, e^log_std) || N(mu_p, sigma_p)) or forward.
  virtual void gauss_kl_forward(float* out, const float* mu, const float* log_std,
                                const float* mu_p, const float* sigma_p, int rows, int A,
                                KlDir dir) = 0;
  virtual void gauss_kl_backward(float* dmu, float* dlog_std, const float* dout, const float* mu,
                                 const float* log_std, const float* mu_p, const float* sigma_p,
                                 int rows, int A, KlDir dir) = 0;
  // gauss_nll (TD-M(PC)^2): out_r = -A (sum_j(-0.5 e_j^2 - log s_j) - 0.5 log(2 pi)),
  // s = max(sigma_p, min_std), e = (a - mu_p) / s.
  virtual void gauss_nll_forward(float* out, const float* a, const float* mu_p,
                                 const float* sigma_p, int rows, int A, float min_std) = 0;
  virtual void gauss_nll_backward(float* da, const float* dout, const float* a, const float* mu_p,
                                  const float* sigma_p, int rows, int A, float min_std) = 0;
  // prior_sample: a_k = clamp(mu_p + sigma_p philox_normal(seed, offset, flat index), -1, 1)
  // (the CUDA backend draws philox_normal_f, its float twin within 12 u |eps|: kernels/philox.cuh).
  virtual void prior_sample(float* a_k, const float* mu_p, const float* sigma_p, int S, int rows,
                            int A, uint64_t seed, PhiloxOffset offset) = 0;
  // sample_weights: w = softmax_k(q / beta) per row; log_z = log mean_k exp(q / beta) (or null).
  virtual void sample_weights(float* w, float* log_z, const float* q, int S, int rows,
                              float beta) = 0;
  // weighted_nll: out_r = -sum_k w_k mean_j log N(a_k; mu, exp(log_std)) (MPO-style projection).
  virtual void weighted_nll_forward(float* out, const float* a_k, const float* w, const float* mu,
                                    const float* log_std, int S, int rows, int A) = 0;
  virtual void weighted_nll_backward(float* dmu, float* dlog_std, const float* dout,
                                     const float* a_k, const float* w, const float* mu,
                                     const float* log_std, int S, int rows, int A) = 0;
  // y = exp(x) elementwise; *out = *scale > threshold ? *scale : +inf (backend scalars).
  virtual void exp_forward(float* y, const float* x, int64_t n) = 0;
  virtual void scale_gate(float* out, const float* scale, float threshold) = 0;
  // src/ref/scale.h | kernels/scale.cu: *value (a backend scalar) moves towards the batch's
  // P95 - P5 (at least 1) by tau.
  virtual void running_scale_update(float* value, const float* x, int n, float tau) = 0;
  // src/ref/loss.h | kernels/loss.cu: the losses' glue (divisor: a backend scalar or nullptr).
  virtual void fill(float* x, int64_t n, float value) = 0;
  virtual void scale_add(float* y, const float* x, int64_t n, float alpha, const float* divisor,
                         float beta) = 0;
  // out[n] = sum_t w_t x[t, n] in t order from +0 (fill + scale_adds fused; src/ref/loss.h).
  virtual void discounted_sum(float* out, const float* x, int64_t n, const TermWeights& w) = 0;
  virtual void weighted_sum(float* out, const float* x, const float* w, int64_t n, float alpha,
                            const float* divisor, float beta) = 0;
  virtual void pair_select_forward(float* out, const float* q, int Qn, int rows, PairMode mode,
                                   uint64_t seed, PhiloxOffset offset) = 0;
  virtual void pair_select_backward(float* dq, const float* dout, const float* q, int Qn, int rows,
                                    PairMode mode, uint64_t seed, PhiloxOffset offset) = 0;
  // The two heads pair_select would pick with (seed, offset), ascending, into heads[2] (backend
  // int32s), and their parameters out of the ensemble's into a two-head layout (PairGather).
  virtual void gather_pair(float* dst, int32_t* heads, const float* src, const PairGather& g,
                           uint64_t seed, PhiloxOffset offset) = 0;

  // GEMM precision: TF32 tensor cores (the CUDA backend's default) or full fp32 (parity tests set
  // it off). The reference backend always computes in fp32 and ignores it.
  virtual void set_tf32(bool on) = 0;

  // ---- the MPPI planner's own ops: src/ref/mppi.h | kernels/mppi.cu ----
  virtual void mppi_init(float* mean, float* std, const float* prev_mean, const uint8_t* first,
                         const MppiShape& sh, float max_std) = 0;
  // rows_out: null, or every sample's actions also written at rows of stride rows_ld (the world
  // model's rollout input rows; the policy columns n < P copied from actions).
  virtual void mppi_sample(float* actions, const float* mean, const float* std, const MppiShape& sh,
                           uint64_t seed, PhiloxOffset offset, float* rows_out = nullptr,
                           int64_t rows_ld = 0) = 0;
  virtual void mppi_elites(int32_t* elite_idx, float* elite_value, const float* value,
                           const MppiShape& sh) = 0;
  virtual void mppi_update(float* mean, float* std, float* score, const float* actions,
                           const int32_t* elite_idx, const float* elite_value,
                           const MppiShape& sh, float temperature, float min_std,
                           float max_std) = 0;
  // The planner's iteration end in one op (one launch on CUDA): value [S, N] = discounted_sum of
  // terms [w.count, S N] (the returns G), then mppi_elites on it, then mppi_update.
  virtual void mppi_elites_update(int32_t* elite_idx, float* elite_value, float* mean, float* std,
                                  float* score, float* value, const float* terms,
                                  const TermWeights& w, const float* actions, const MppiShape& sh,
                                  float temperature, float min_std, float max_std) = 0;
  virtual void mppi_select(float* action, float* mu_p, float* sigma_p, const float* actions,
                           const int32_t* elite_idx, const float* score, const float* std,
                           const MppiShape& sh, bool explore, uint64_t seed,
                           PhiloxOffset offset) = 0;
};

std::unique_ptr<Ops> make_ref_ops();
// Throws pompc::Error saying why when there is no CUDA backend (built without nvcc) or no GPU.
std::unique_ptr<Ops> make_cuda_ops();
bool cuda_ops_available(std::string* why_not = nullptr);
// device = "cuda" | "cpu" | "auto" (cuda when available, else cpu); auto prints one line to
// stderr naming the backend it chose and, for cpu, why CUDA was not usable.
std::unique_ptr<Ops> make_ops(const std::string& device);

// The CUDA backend registers its factory here at static-initialisation time (src/cuda/), so the
// CPU-only build links without it.
using OpsFactory = std::unique_ptr<Ops> (*)();
using OpsProbe = bool (*)(std::string* why_not);
int register_cuda_ops(OpsFactory factory, OpsProbe probe);

}  // namespace pompc
