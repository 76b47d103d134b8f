// The reference backend of the Ops interface: host memory, each op forwarded to its plain C++
// implementation in src/ref/.
#include <omp.h>

#include <cstdlib>
#include <cstring>

#include "common.h"
#include "ops.h"
#include "ref/optim.h"
#include "ref/mppi.h"
#include "ref/prior.h"
#include "ref/ref.h"

#include <vector>

namespace pompc {
namespace {

class RefOps final : public Ops {
 public:
  Backend backend() const override { return Backend::cpu; }
  std::string description() const override {
    return strfmt("cpu (reference, %d OpenMP threads)", omp_get_max_threads());
  }

  void* alloc_bytes(size_t bytes) override {
    const size_t rounded = (bytes + 255) / 256 * 256;
    void* p = std::aligned_alloc(256, rounded ? rounded : 256);
    POMPC_REQUIRE(p, "out of host memory allocating %zu bytes", bytes);
    std::memset(p, 0, rounded ? rounded : 256);
    return p;
  }
  void free_bytes(void* p) override { std::free(p); }
  void copy_to_backend(void* dst, const void* src, size_t bytes) override {
    std::memcpy(dst, src, bytes);
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    std::memcpy(dst, src, bytes);
  }
  void synchronize() override {}
  void* alloc_host(size_t bytes) override { return alloc_bytes(bytes); }
  void free_host(void* p) override { std::free(p); }
  void copy_to_backend_async(void* dst, const void* src, size_t bytes) override {
    std::memcpy(dst, src, bytes);
  }
  void copy_to_host_async(void* dst, const void* src, size_t bytes) override {
    std::memcpy(dst, src, bytes);
  }
  struct RefGraph final : Graph {
    std::function<void()> fn;
  };
  std::unique_ptr<Graph> capture(const std::function<void()>& record) override {
    auto g = std::make_unique<RefGraph>();
    g->fn = record;
    return g;
  }
  void replay(Graph& graph) override { static_cast<RefGraph&>(graph).fn(); }
  void counter_add(uint64_t* counter, uint64_t k) override { *counter += k; }
  void copy_within(void* dst, const void* src, size_t bytes) override {
    std::memmove(dst, src, bytes);
  }

  void adam_update(const AdamSettings& cfg, const AdamGroups& groups, float* param,
                   const float* grad, float* m, float* v, AdamScalars* s) override {
    ref::adam_update(cfg, groups, param, grad, m, v, s);
  }
  void clip_grad_norm(float* grad, size_t n, float max_norm, float* norm) override {
    ref::clip_grad_norm(grad, n, max_norm, norm);
  }
  void polyak(float* target, const float* online, size_t n, float tau) override {
    ref::polyak(target, online, n, tau);
  }

  void linear_forward(float* out, const float* inp, const float* w, const float* b, int B, int in,
                      int out_features, int64_t ld_inp) override {
    ref::linear_forward(out, inp, w, b, B, in, out_features, ld_inp);
  }
  void linear_backward(float* dinp, float* dw, float* db, const float* dout, const float* inp,
                       const float* w, int B, int in, int out_features) override {
    ref::linear_backward(dinp, dw, db, dout, inp, w, B, in, out_features);
  }
  void linear_ensemble_forward(float* out, const float* inp, const float* w, const float* b, int Qn,
                               int B, int in, int out_features, bool shared) override {
    ref::linear_ensemble_forward(out, inp, w, b, Qn, B, in, out_features, shared);
  }
  void linear_ensemble_backward(float* dinp, float* dw, float* db, const float* dout,
                                const float* inp, const float* w, int Qn, int B, int in,
                                int out_features, bool shared) override {
    ref::linear_ensemble_backward(dinp, dw, db, dout, inp, w, Qn, B, in, out_features, shared);
  }
  void layernorm_mish_forward(float* out, float* mean, float* rstd, const float* inp,
                              const float* bias, const float* gamma, const float* beta, int rows,
                              int C, int groups, const Dropout& dropout,
                              const RowLayout& out_rows) override {
    ref::layernorm_mish_forward(out, mean, rstd, inp, bias, gamma, beta, rows, C, groups, dropout,
                                out_rows);
  }
  void layernorm_mish_backward(float* dinp, float* dbias, float* dgamma, float* dbeta,
                               const float* dout, const float* inp, const float* bias,
                               const float* gamma, const float* beta, const float* mean,
                               const float* rstd, int rows, int C, int groups,
                               const Dropout& dropout) override {
    ref::layernorm_mish_backward(dinp, dbias, dgamma, dbeta, dout, inp, bias, gamma, beta, mean,
                                 rstd, rows, C, groups, dropout);
  }
  void layernorm_simnorm_forward(float* out, float* mean, float* rstd, const float* inp,
                                 const float* bias, const float* gamma, const float* beta, int rows,
                                 int C, int groups, const RowLayout& out_rows) override {
    ref::layernorm_simnorm_forward(out, mean, rstd, inp, bias, gamma, beta, rows, C, groups,
                                   out_rows);
  }
  void layernorm_simnorm_backward(float* dinp, float* dbias, float* dgamma, float* dbeta,
                                  const float* dout, const float* inp, const float* bias,
                                  const float* gamma, const float* beta, const float* mean,
                                  const float* rstd, int rows, int C, int groups) override {
    ref::layernorm_simnorm_backward(dinp, dbias, dgamma, dbeta, dout, inp, bias, gamma, beta,
                                    mean, rstd, rows, C, groups);
  }
  void copy_rows(float* dst, int64_t ldd, const float* src, int64_t lds, int rows,
                 int cols) override {
    ref::copy_rows(dst, ldd, src, lds, rows, cols);
  }
  void repeat_rows(float* dst, int64_t ldd, const float* src, int rows, int reps,
                   int cols) override {
    ref::repeat_rows(dst, ldd, src, rows, reps, cols);
  }
  void concat_forward(float* out, const float* x1, const float* x2, int rows, int n1,
                      int n2) override {
    ref::concat_forward(out, x1, x2, rows, n1, n2);
  }
  void concat_backward(float* dx1, float* dx2, const float* dout, int rows, int n1,
                       int n2) override {
    ref::concat_backward(dx1, dx2, dout, rows, n1, n2);
  }
  void mse_segments_forward(float* loss, const float* pred, const float* target, int T,
                            int64_t n) override {
    POMPC_REQUIRE(T >= 1, "mse_forward: segments (%d) must be >= 1", T);
    for (int t = 0; t < T; ++t) ref::mse_forward(loss + t, pred + t * n, target + t * n, n);
  }
  void mse_segments_backward(float* dpred, const float* pred, const float* target,
                             const TermWeights& dloss, int64_t n) override {
    check_term_weights("mse_backward", dloss);
    for (int t = 0; t < dloss.count; ++t)
      ref::mse_backward(dpred + t * n, pred + t * n, target + t * n, dloss.w[t], n);
  }
  void mse_forward(float* loss, const float* pred, const float* target, int64_t n) override {
    ref::mse_forward(loss, pred, target, n);
  }
  void mse_backward(float* dpred, const float* pred, const float* target, float dloss,
                    int64_t n) override {
    ref::mse_backward(dpred, pred, target, dloss, n);
  }
  void soft_ce_forward(float* loss, const float* logits, const float* x, int rows,
                       const Bins& bins) override {
    ref::soft_ce_forward(loss, logits, x, rows, bins);
  }
  void soft_ce_backward(float* dlogits, const float* dloss, const float* logits, const float* x,
                        int rows, const Bins& bins) override {
    ref::soft_ce_backward(dlogits, dloss, logits, x, rows, bins);
  }
  void soft_ce_heads_forward(float* loss, const float* logits, const float* x, int heads, int rows,
                             const Bins& bins) override {
    POMPC_REQUIRE(heads >= 1, "soft_ce_forward: heads (%d) must be >= 1", heads);
    const int64_t RK = int64_t{rows} * bins.num_bins;
    for (int h = 0; h < heads; ++h)  // the reference: soft_ce per head
      ref::soft_ce_forward(loss + int64_t{h} * rows, logits + h * RK, x, rows, bins);
  }
  void soft_ce_heads_backward(float* dlogits, const float* dloss, const float* logits,
                              const float* x, int heads, int rows, const Bins& bins) override {
    POMPC_REQUIRE(heads >= 1, "soft_ce_backward: heads (%d) must be >= 1", heads);
    const int64_t RK = int64_t{rows} * bins.num_bins;
    for (int h = 0; h < heads; ++h)
      ref::soft_ce_backward(dlogits + h * RK, dloss, logits + h * RK, x, rows, bins);
  }
  void two_hot_inv_pair_forward(float* out, const float* logits, const float* bias, int Qn,
                                int rows, const Bins& bins, PairMode mode, uint64_t seed,
                                PhiloxOffset offset) override {
    ref::two_hot_inv_pair_forward(out, logits, bias, Qn, rows, bins, mode, seed, offset.resolve());
  }
  void two_hot_inv_forward(float* out, const float* logits, const float* bias, int rows,
                           const Bins& bins) override {
    ref::two_hot_inv_forward(out, logits, bias, rows, bins);
  }
  void two_hot_inv_backward(float* dlogits, const float* dout, const float* logits, int rows,
                            const Bins& bins) override {
    ref::two_hot_inv_backward(dlogits, dout, logits, rows, bins);
  }
  void policy_head_forward(float* action, float* mu, float* log_std, float* log_pi, float* log_prob,
                           const float* raw, const float* bias, int B, int A,
                           const PolicyHead& head, uint64_t seed, PhiloxOffset offset,
                           int64_t action_ld) override {
    ref::policy_head_forward(action, mu, log_std, log_pi, log_prob, raw, bias, B, A, head, seed,
                             offset.resolve(), action_ld);
  }
  void policy_head_backward(float* draw, const float* daction, const float* dmu,
                            const float* dlog_std, const float* dlog_pi, const float* raw, int B,
                            int A, const PolicyHead& head, uint64_t seed,
                            PhiloxOffset offset) override {
    ref::policy_head_backward(draw, daction, dmu, dlog_std, dlog_pi, raw, B, A, head, seed,
                              offset.resolve());
  }
  void policy_log_ratio(float* out, const float* raw, const float* raw_prior, int B, int A,
                        const PolicyHead& head, uint64_t seed, PhiloxOffset offset) override {
    ref::policy_log_ratio(out, raw, raw_prior, B, A, head, seed, offset.resolve());
  }
  void gauss_kl_forward(float* out, const float* mu, const float* log_std, const float* mu_p,
                        const float* sigma_p, int rows, int A, KlDir dir) override {
    ref::gauss_kl_forward(out, mu, log_std, mu_p, sigma_p, rows, A, dir);
  }
  void gauss_kl_backward(float* dmu, float* dlog_std, const float* dout, const float* mu,
                         const float* log_std, const float* mu_p, const float* sigma_p, int rows,
                         int A, KlDir dir) override {
    ref::gauss_kl_backward(dmu, dlog_std, dout, mu, log_std, mu_p, sigma_p, rows, A, dir);
  }
  void gauss_nll_forward(float* out, const float* a, const float* mu_p, const float* sigma_p,
                         int rows, int A, float min_std) override {
    ref::gauss_nll_forward(out, a, mu_p, sigma_p, rows, A, min_std);
  }
  void gauss_nll_backward(float* da, const float* dout, const float* a, const float* mu_p,
                          const float* sigma_p, int rows, int A, float min_std) override {
    ref::gauss_nll_backward(da, dout, a, mu_p, sigma_p, rows, A, min_std);
  }
  void prior_sample(float* a_k, const float* mu_p, const float* sigma_p, int S, int rows, int A,
                    uint64_t seed, PhiloxOffset offset) override {
    ref::prior_sample(a_k, mu_p, sigma_p, S, rows, A, seed, offset.resolve());
  }
  void sample_weights(float* w, float* log_z, const float* q, int S, int rows,
                      float beta) override {
    ref::sample_weights(w, log_z, q, S, rows, beta);
  }
  void weighted_nll_forward(float* out, const float* a_k, const float* w, const float* mu,
                            const float* log_std, int S, int rows, int A) override {
    ref::weighted_nll_forward(out, a_k, w, mu, log_std, S, rows, A);
  }
  void weighted_nll_backward(float* dmu, float* dlog_std, const float* dout, const float* a_k,
                             const float* w, const float* mu, const float* log_std, int S,
                             int rows, int A) override {
    ref::weighted_nll_backward(dmu, dlog_std, dout, a_k, w, mu, log_std, S, rows, A);
  }
  void exp_forward(float* y, const float* x, int64_t n) override { ref::exp_forward(y, x, n); }
  void scale_gate(float* out, const float* scale, float threshold) override {
    ref::scale_gate(out, scale, threshold);
  }
  void running_scale_update(float* value, const float* x, int n, float tau) override {
    if (scale_scratch_.size() < static_cast<size_t>(n)) scale_scratch_.resize(n);
    ref::running_scale_update(value, x, n, scale_scratch_.data(), tau);
  }
  void fill(float* x, int64_t n, float value) override { ref::fill(x, n, value); }
  void discounted_sum(float* out, const float* x, int64_t n, const TermWeights& w) override {
    ref::discounted_sum(out, x, n, w);
  }
  void scale_add(float* y, const float* x, int64_t n, float alpha, const float* divisor,
                 float beta) override {
    ref::scale_add(y, x, n, alpha, divisor, beta);
  }
  void weighted_sum(float* out, const float* x, const float* w, int64_t n, float alpha,
                    const float* divisor, float beta) override {
    ref::weighted_sum(out, x, w, n, alpha, divisor, beta);
  }
  void pair_select_forward(float* out, const float* q, int Qn, int rows, PairMode mode,
                           uint64_t seed, PhiloxOffset offset) override {
    ref::pair_select_forward(out, q, Qn, rows, mode, seed, offset.resolve());
  }
  void pair_select_backward(float* dq, const float* dout, const float* q, int Qn, int rows,
                            PairMode mode, uint64_t seed, PhiloxOffset offset) override {
    ref::pair_select_backward(dq, dout, q, Qn, rows, mode, seed, offset.resolve());
  }
  void gather_pair(float* dst, int32_t* heads, const float* src, const PairGather& g, uint64_t seed,
                   PhiloxOffset offset) override {
    ref::gather_pair(dst, heads, src, g, seed, offset.resolve());
  }
  void set_tf32(bool) override {}

  void mppi_init(float* mean, float* std, const float* prev_mean, const uint8_t* first,
                 const MppiShape& sh, float max_std) override {
    ref::mppi_init(mean, std, prev_mean, first, sh, max_std);
  }
  void mppi_sample(float* actions, const float* mean, const float* std, const MppiShape& sh,
                   uint64_t seed, PhiloxOffset offset, float* rows_out, int64_t rows_ld) override {
    ref::mppi_sample(actions, mean, std, sh, seed, offset.resolve(), rows_out, rows_ld);
  }
  void mppi_elites(int32_t* elite_idx, float* elite_value, const float* value,
                   const MppiShape& sh) override {
    ref::mppi_elites(elite_idx, elite_value, value, sh);
  }
  void mppi_update(float* mean, float* std, float* score, const float* actions,
                   const int32_t* elite_idx, const float* elite_value, const MppiShape& sh,
                   float temperature, float min_std, float max_std) override {
    ref::mppi_update(mean, std, score, actions, elite_idx, elite_value, sh, temperature, min_std,
                    max_std);
  }
  void mppi_elites_update(int32_t* elite_idx, float* elite_value, float* mean, float* std,
                          float* score, float* value, const float* terms, const TermWeights& w,
                          const float* actions, const MppiShape& sh, float temperature,
                          float min_std, float max_std) override {
    ref::mppi_elites_update(elite_idx, elite_value, mean, std, score, value, terms, w, actions, sh,
                            temperature, min_std, max_std);
  }
  void mppi_select(float* action, float* mu_p, float* sigma_p, const float* actions,
                   const int32_t* elite_idx, const float* score, const float* std,
                   const MppiShape& sh, bool explore, uint64_t seed, PhiloxOffset offset) override {
    ref::mppi_select(action, mu_p, sigma_p, actions, elite_idx, score, std, sh, explore, seed,
                     offset.resolve());
  }

 private:
  std::vector<float> scale_scratch_;  // grows to the batch size once
};

}  // namespace

std::unique_ptr<Ops> make_ref_ops() { return std::make_unique<RefOps>(); }

}  // namespace pompc
