// src/model/world_model.h: the TD-MPC2 world model (SPEC section 1) and its update step (SPEC
// section 2 with the TD-MPC2 policy objective of section 4), written once against the Ops
// interface, so the same code runs on the reference (CPU) and CUDA backends.
//
// Modules (SPEC letters; NL = NormedLinear, Mish unless noted; "5M" sizes in config.h)
//   encoder   obs [O] -> NL(O, enc_dim) (x max(num_enc_layers - 1, 1)) -> NL(., Z, SimNorm) -> z
//   dynamics  [z, a] -> NL(Z+A, M) -> NL(M, M) -> NL(M, Z, SimNorm) -> z'
//   reward    [z, a] -> NL(Z+A, M) -> NL(M, M) -> Linear(M, K) -> K logits
//   pi        z -> NL(Z, M) -> NL(M, M) -> Linear(M, 2A) -> (mean, log_std) -> policy head
//   Qs        Qn heads of [z, a] -> NL(Z+A, M, dropout) -> NL(M, M) -> Linear(M, K)
//   target Qs the same layout, a Polyak copy of Qs (never trained, never dropout)
//
// Parameters: one buffer per ParamSet, carved into named tensors (tensors()), each 16-byte
//   aligned (zero gaps between them, mlp.h; checkpoints store the tensors without the gaps):
//   model     encoder | dynamics, reward | Qs    (one Adam: the encoder's group at lr *
//             enc_lr_scale, the rest at lr; eps 1e-8); the Qs part starts at q_offset();
//             dynamics' and reward's first two layers stacked as a two-head ensemble
//             (rollout_terms runs them as one), then the dynamics' last layer, then the reward's
//   pi        pi                                 (its own Adam: lr, eps 1e-5)
//   target_q  the target Qs, the same layout as the model buffer's Qs part
//   prior     pi_psi, prior=learned only         (its own Adam: lr, eps 1e-5)
// Names follow the TD-MPC2 state_dict of nicklashansen/tdmpc2 at commit 13ef0039 (the tensordict
// Ensemble API, world_model.py / layers.py): "_encoder.state.0.weight", "_encoder.state.0.ln.bias",
// "_dynamics.2.ln.weight", "_reward.2.weight", "_pi.0.bias", "_Qs.params.0.weight" (stacked
// [Qn, M, Z+A]), "_target_Qs_params.2.bias" ([Qn, K]). Within a layer: weight [out, in], bias
// [out], ln.weight [out], ln.bias [out] (a leading Qn for the ensembles). The first release (the
// published results) named the stacked ensemble "_Qs.params.<4 l + k>" with k over (weight, bias,
// ln.weight, ln.bias); its api_model_conversion maps between the two.
//
// Initialisation (SPEC 1): every Linear weight ~ N(0, 0.02^2) truncated at +-2 (absolute, as
//   torch.nn.init.trunc_normal_(w, std=0.02)), drawn from Philox(seed, 2^62 + tensor index,
//   element index); biases 0; LayerNorm gamma 1, beta 0; the last Linear of reward and of every Q
//   head all zeros; target Qs an exact copy; Adam moments and steps 0; S_Q = 1.
//
// Inference API (the planner's; dropout off, batched over rows, pointers in backend memory,
//   outputs overwritten, rows <= max_rows, no allocation; calls share one workspace, so they run
//   one at a time, in issue order on the backend's stream):
//   encode(z [rows, Z], obs [rows, O])
//   next(z_next [rows, Z], z, a [rows, A])              z_next may alias z (in-place rollout)
//   reward(r [rows], z, a)                              two_hot_inv of the reward logits
//   rollout_terms(terms [H + 1, rows], H, seed, offset, work)
//                                                       the planner's rollouts: from z_0 with
//                                                       actions a_t, both written by the caller
//                                                       into work's [z, a] rows (row i of z_0
//                                                       at i (Z+A), of a_t at (t rows + i)
//                                                       (Z+A) + Z), for t < H: terms[t] =
//                                                       reward(z_t, a_t), z_{t+1} = next(z_t,
//                                                       a_t); terms[H] = avg2 Q(z_H, a ~
//                                                       pi(z_H)) (pi at offset, the pair at
//                                                       offset + 1), or avg2 V(z_H). No [z, a]
//                                                       concatenation; the reward's last layer
//                                                       and two_hot_inv once for all H steps.
//                                                       work: rollout_work(H, rows) floats. Bit
//                                                       for bit those calls on the reference
//                                                       backend and emulated
//   pi(action [rows, A], mu, log_std [rows, A], log_pi [rows], z, seed, offset)
//                                                       mu / log_std / log_pi may be null;
//                                                       noise eps[r, j] = philox_normal(seed,
//                                                       offset, r A + j) (src/ref/policy.h; the
//                                                       CUDA backend: philox_normal_f, within
//                                                       12 u |eps|, kernels/policy.cu)
//   Q(out, z, a, mode, target, seed, offset)            min / avg: out [rows], two heads picked
//                                                       by pick_pair(Qn, seed, offset) for the
//                                                       whole batch; all: out = the logits
//                                                       [Qn, rows, K] (seed, offset unused)
//
// Update (update(batch, stats, policy), src/model/world_model_update.cpp, one function per step of
//   SPEC section 2 in its order). batch in backend memory, time-major: obs [H+1, B, O], action
//   [H, B, A], reward [H, B] (row b of step t at t * B + b), and with a prior the planner targets
//   mu_p, sigma_p [H, B, A] (sentinels already replaced by N(0, 1)).
//   zero_grads()   parameter and activation gradients to 0 (the backward passes accumulate)
//   td_target      SPEC 2.1, no dropout, no grads:
//      critic q: next_z = encoder(obs[1..H]); a' ~ pi(next_z);
//                td = reward + gamma * min2(target Qs(next_z, a'))
//                kl_critic (PO-MPC): td = reward + gamma * (min2(target Qs(next_z, a'))
//                  - kl_lambda (log pi(a'|next_z) - log pi_psi(a'|next_z))), both densities of
//                  the same a' (policy_log_ratio), pi_psi as the previous update left it
//      critic v: z_t = encoder(obs[t]) for t = 0..H (next_z = z_1..H); a ~ pi(z_t), t < H;
//                td = two_hot_inv(reward(z_t, a)) + gamma * avg2(target Vs(dynamics(z_t, a)))
//   rollout        SPEC 2.2: z[0] = encoder(obs[0]), z[t+1] = dynamics(z[t], action[t])
//   model_loss     SPEC 2.3 (Q heads' dropout on):
//      consistency = sum_t rho^t mean((z[t+1] - next_z[t])^2) / H
//      reward      = sum_t rho^t mean_b soft_ce(reward(z[t], a[t]), reward[t]) / H
//      value       = sum_t rho^t sum_q mean_b soft_ce(Q_q(z[t], a[t]) | V_q(z[t]), td[t]) / (H Qn)
//      total = consistency_coef consistency + reward_coef reward + value_coef value
//   update_model   SPEC 2.4: model_loss_backward (the gradient of total through the heads, the
//      rollout and the encoder), clip the global norm at grad_clip_norm, Adam.
//   update_prior   prior=learned only (SPEC 4, before the pi step): pi_psi (its own MLP, same
//      layout as pi, "_pi_prior.*") on the H latents with planner targets:
//      prior_fit_loss = sum_{t<H} rho^t / H mean_b D_I(pi_psi, planner), D_I = prior_fit
//      (gauss_kl forward | reverse); backward, clip, Adam (lr, eps 1e-5).
//   update_pi      SPEC 2.5 and 4 (skipped with policy = false: BMPC's pretraining burst):
//      pi_loss, pi_loss_backward, clip, pi's Adam, on the detached latents z[t], t < T =
//      cfg.pi_steps() (H + 1 without a prior or with the learned one, H with the planner's
//      targets), rows R = T B:
//      a ~ pi(z[t]) with mu = tanh(mean), s = exp(log_std) (both policy forms);
//      Qbar = avg2(Qs(z[t], a)) with the just-updated Qs frozen and their dropout on (computed when
//        q_coef > 0 or with the intermediate prior); S_Q <- RunningScale(Qbar at t = 0);
//      prior (mu_t, sigma_t) and D per row:
//        planner       the batch's (mu_p, sigma_p)
//        learned       pi_psi(z[t]) as update_prior left it (detached)
//        intermediate  S = prior_samples planner samples a_k = clamp(mu_p + sigma_p eps_k, -1, 1),
//                      Qbar_k = avg2 Qs(z, a_k) (no dropout, no grads), w_k = softmax_k(Qbar_k /
//                      (beta S_Q)), log_z = log mean_k exp(Qbar_k / (beta S_Q)) (an extension,
//                      not in the PO-MPC paper; S_Q makes beta task-independent)
//        D: reverse  gauss_kl(N(mu, s) || prior), mean over action dims (BMPC's kl_div)
//           forward  gauss_kl(prior || N(mu, s)); intermediate: the weighted negative
//                    log-likelihood -sum_k w_k mean_j log N(a_kj; mu_j, s_j) (MPO projection)
//           reverse, intermediate: KL(N(mu, s) || planner) - Qbar / (beta S_Q) + log_z, the
//                    exact KL(pi_theta || pi_I) up to its Monte-Carlo estimates (pi_I = planner *
//                    exp(Qbar / (beta S_Q)) / Z), reparameterised through a
//           nll      -A (sum_j(-0.5 e_j^2 - log s_j) - 0.5 log 2 pi), e = (a - mu_p) / max(sigma_p,
//                    min_std): TD-M(PC)^2's prior log-likelihood of the sampled action
//      S_D: own RunningScale of D at t = 0 (prior_scale()), S_Q, or 1; the term is 0 while S_D <=
//        prior_scale_threshold (scale_gate);
//      pi_loss = sum_t w_t mean_b (alpha log_pi - q_coef Qbar / S_Q + prior_weight D / S_D),
//        w_t = rho^t / T; gradients reach pi's parameters through a, mu, log_std and log_pi.
//   polyak         SPEC 2.6: target Qs += tau (Qs - target Qs).
//   then the update counter in backend memory advances (counter_add; see Randomness below).
//   update_graph() runs the same steps as one captured graph (Ops::capture / replay), bit for bit
//   update(): what the agent calls.
//   The forward / backward halves (model_loss / model_loss_backward, pi_loss / pi_loss_backward,
//   prior_fit_loss / prior_fit_loss_backward) are public for the gradient-check tests.
//   Stats (UpdateStats, backend memory) are written by the steps; nothing synchronises with the
//   host, so the caller reads them (copy_to_host) when it wants. grad_norm / pi_grad_norm are the
//   norms before clipping (what clip_grad_norm_ returns).
//
// Randomness of one update u = updates() (the key is cfg.seed): offset = 2^63 + 16 u + purpose,
// purpose
//   0 policy noise of a' in the TD target (kl_critic's log-ratio scores the same a')
//                                               1 the min2 / avg2 pair of target heads
//   2 dropout of the Qs in the value loss      3 policy noise of the pi step
//   4 dropout of the Qs in the pi step         5 the avg2 pair of heads in the pi step
//   6 the intermediate prior's planner samples 7 the avg2 pair of its sample values
// The ops get it as draw(purpose) = PhiloxOffset{purpose, base}: base points at 2^63 + 16 u in
// backend memory, read when the op runs and advanced by 16 (counter_add) as the update's last op.
// So update() never synchronises, and update_graph() captures one update and replays it with
// fresh dropout masks, policy noise and head pairs each time. updates() is its host copy.
// Inference callers (planner) choose their own (seed, offset) and keep offsets below 2^62.
//
// Overwritten / accumulated: forward activations and stats are overwritten; all gradients
// (parameter and activation) are zeroed by zero_grads() (update() does it first) and then
// ACCUMULATED by the backward passes. Everything is allocated in the constructor (the backends
// size a little scratch of their own on an op's first call: the reference RunningScale's sort
// buffer, the CUDA LayerNorm backward's row statistics).
//
// Test: build/test_emu -ts=model      Bench: build/bench -ts=bench -tc='*update*'
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/config.h"
#include "model/mlp.h"
#include "ops.h"

namespace pompc::model {

// model: encoder, dynamics, reward, Qs; pi: the sampling policy; target_q: the Polyak Qs;
// prior: the learned prior pi_psi (empty unless prior=learned).
enum class ParamSet { model, pi, target_q, prior };
constexpr ParamSet kParamSets[] = {ParamSet::model, ParamSet::pi, ParamSet::target_q,
                                   ParamSet::prior};
// The sets with an optimizer.
constexpr ParamSet kTrainedSets[] = {ParamSet::model, ParamSet::pi, ParamSet::prior};
enum class QMode { min, avg, all };

// One named tensor of a parameter buffer (for checkpoints: src/io/safetensors).
struct NamedTensor {
  std::string name;            // TD-MPC2 state_dict key
  ParamSet set;                // the buffer it lives in
  size_t offset;               // in floats, from the start of that buffer
  std::vector<int64_t> shape;  // row-major (PyTorch) shape
  size_t numel() const;
};

// The update's input, in backend memory (time-major, see the header comment).
struct Batch {
  const float* obs = nullptr;      // [H+1, B, O]
  const float* action = nullptr;   // [H, B, A]
  const float* reward = nullptr;   // [H, B]
  const float* mu_p = nullptr;     // [H, B, A] planner targets (needed with a prior)
  const float* sigma_p = nullptr;  // [H, B, A]
};

// What one update reports, in backend memory (allocate with ops.alloc<UpdateStats>(1)).
struct UpdateStats {
  float consistency_loss;  // sum_t rho^t mse_t / H
  float reward_loss;       // sum_t rho^t mean_b soft_ce / H
  float value_loss;        // sum_t rho^t sum_q mean_b soft_ce / (H Qn)
  float total_loss;        // the weighted sum that was differentiated
  float grad_norm;         // the model's global gradient norm before clipping
  float pi_loss;           // the policy objective (see the header comment)
  float pi_grad_norm;      // pi's gradient norm before clipping
  float pi_scale;          // S_Q after this update's RunningScale step
  float prior_loss;        // sum_t w_t mean_b D / S_D (without prior_weight); 0 without a prior
  float prior_scale;       // S_D after this update (1 unless prior_scale=own)
  float prior_fit_loss;    // the learned prior's fit loss; 0 unless prior=learned
  float prior_grad_norm;   // the learned prior's gradient norm before clipping; 0 otherwise
};

class WorldModel {
 public:
  // Validates cfg, allocates every buffer (parameters, optimizer state, the update's workspace
  // for B = cfg.batch_size and H = cfg.horizon, the inference workspace for max_rows rows) and
  // initialises the parameters. Sets ops.set_tf32(cfg.tf32).
  WorldModel(Ops& ops, const ModelConfig& cfg, int max_rows);
  ~WorldModel();
  WorldModel(const WorldModel&) = delete;
  WorldModel& operator=(const WorldModel&) = delete;

  const ModelConfig& config() const { return cfg_; }
  Ops& ops() { return ops_; }
  int max_rows() const { return max_rows_; }

  // ---- parameters and optimizer state ----
  // Re-initialises parameters, target Qs, Adam state, S_Q and the update counter (SPEC 1).
  void init();
  const std::vector<NamedTensor>& tensors() const { return tensors_; }
  float* params(ParamSet set);
  // Floats of the buffer of `set` (its tensors and their 16-byte alignment gaps, mlp.h) and the
  // number of its parameters (the tensors alone).
  size_t param_floats(ParamSet set) const;
  size_t param_count(ParamSet set) const;
  // Parameters trained by gradient (model + pi): TD-MPC2's printed total_params.
  size_t trainable_param_count() const;
  // A buffer of `set` (parameters, gradients, Adam moments; host memory) packed: its tensors one
  // after the other in tensors() order, param_count(set) floats (the checkpoint's optimizer-state
  // layout); unpack writes the tensors back and zeros in the gaps.
  void pack(ParamSet set, const float* buffer, float* packed) const;
  void unpack(ParamSet set, const float* packed, float* buffer) const;
  size_t q_offset() const { return q_offset_; }  // start of the Qs in the model buffer
  float* grads(ParamSet set);                    // model, pi or prior
  float* adam_m(ParamSet set);                   // model, pi or prior
  float* adam_v(ParamSet set);                   // model, pi or prior
  AdamScalars* adam_scalars(ParamSet set);       // model, pi or prior (backend memory)
  float* q_scale() { return q_scale_; }          // RunningScale S_Q (a backend scalar)
  float* prior_scale() { return d_scale_; }      // RunningScale S_D (a backend scalar)
  uint64_t updates() const { return updates_; }  // updates taken (the Philox stream counter)
  // Backend memory held (parameters, optimizer state, constants and both workspaces).
  size_t allocated_bytes() const { return allocated_bytes_; }
  // Sets the update counter (host and backend copies; synchronises: for init and resume).
  void set_updates(uint64_t u);

  // ---- inference (see the header comment) ----
  void encode(float* z, const float* obs, int rows);
  void next(float* z_next, const float* z, const float* a, int rows);
  void reward(float* r, const float* z, const float* a, int rows);
  size_t rollout_work(int H, int rows) const;
  void rollout_terms(float* terms, int H, int rows, uint64_t seed, PhiloxOffset offset,
                     float* work);
  void pi(float* action, float* mu, float* log_std, float* log_pi, const float* z, int rows,
          uint64_t seed, PhiloxOffset offset);
  void Q(float* out, const float* z, const float* a, int rows, QMode mode, bool target,
         uint64_t seed, PhiloxOffset offset);
  // critic v: the state values (min / avg of a random pair, or all logits), as Q without a.
  void V(float* out, const float* z, int rows, QMode mode, bool target, uint64_t seed,
         PhiloxOffset offset);
  // The TD targets of the last td_target() call, [H B] in backend memory (read by tests).
  const float* td() const { return td_target_.td; }
  // The pi head inference uses: the regular log_std range, or reanalysis' (expl_log_std_*).
  void set_explore_head(bool on) { explore_head_ = on; }

  // ---- update (the steps in the header comment, in update()'s order) ----
  // One full update (SPEC 2 steps 1-6; policy = false skips step 5, BMPC's pretraining burst);
  // then updates() += 1.
  void update(const Batch& batch, UpdateStats* stats, bool policy = true);
  // The same update through a captured graph, bit for bit the same numbers: the first call for
  // each value of `policy` runs eagerly (every op sizes its scratch), the second captures the
  // update (Ops::capture) and replays it, later calls replay. batch and stats must be the same
  // pointers on every call (the graph bakes them): copy new data into the same buffers.
  void update_graph(const Batch& batch, UpdateStats* stats, bool policy = true);

  // `dropout = false` turns the Q heads' dropout off; `update_scale = false` keeps S_Q and S_D as
  // they are (the tests' gradient checks).
  void zero_grads();
  void td_target(const Batch& batch);
  void rollout(const Batch& batch);
  void model_loss(const Batch& batch, UpdateStats* stats, bool dropout = true);
  void model_loss_backward(const Batch& batch, bool dropout = true);
  void update_model(const Batch& batch, UpdateStats* stats);
  void prior_fit_loss(const Batch& batch, UpdateStats* stats);  // prior=learned only
  void prior_fit_loss_backward(const Batch& batch);
  void update_prior(const Batch& batch, UpdateStats* stats);
  void pi_loss(const Batch& batch, UpdateStats* stats, bool update_scale = true,
               bool dropout = true);
  void pi_loss_backward(const Batch& batch, bool dropout = true);
  void update_pi(const Batch& batch, UpdateStats* stats);
  void polyak();

  // The Philox offset of one purpose (see the header comment) of update u.
  static uint64_t update_offset(uint64_t u, int purpose);
  // The current update's offset of one purpose, read by the ops when they run: the purpose plus
  // the counter update_offset(updates(), 0) that update() advances in backend memory.
  PhiloxOffset draw(int purpose) const;
  enum Purpose : int {
    kTdNoise = 0,
    kTdPair = 1,
    kValueDropout = 2,
    kPiNoise = 3,
    kPiDropout = 4,
    kPiPair = 5,
    kPriorSample = 6,
    kPriorPair = 7
  };

 private:
  // A parameter set trained by gradient (model, pi, prior) and its optimizer state.
  struct Trained {
    size_t n = 0;                 // floats
    float* params = nullptr;
    float* grads = nullptr;       // zeroed by zero_grads(), then accumulated
    float* m = nullptr;           // Adam's moments
    float* v = nullptr;
    AdamScalars* adam = nullptr;  // Adam's step and bias corrections (backend memory)
    AdamGroups groups;            // learning rate per parameter range
  };
  Trained& trained(ParamSet set);

  // The two critic heads a min2 / avg2 call combines, gathered out of the ensemble (gather_pair)
  // so that only they run: TD-MPC2 computes all Qn heads and keeps two; their parameters copied
  // into the two-head layout pair_, and which heads they are (dropout draws their masks).
  struct CriticPair {
    float* params = nullptr;   // [pair_.floats]
    int32_t* heads = nullptr;  // [2] ascending
  };

  // Buffers of the update, one struct per step (shapes: H B rows per step t < H, T = pi_steps()).
  // Weights are constants filled at construction (model_loss_weights / pi_loss_weights, beside
  // the losses they weight); activations are overwritten; d_* gradients are zeroed by
  // zero_grads() and accumulated.
  struct TdTargetBuffers {
    MlpActs encoder, pi, target_qs;  // target_qs: the picked pair (pair_)
    CriticPair pair;                 // of the target heads
    MlpActs reward, dynamics;       // critic v: rhat(z_t, a), dynamics(z_t, a)
    MlpActs prior;                  // kl_critic: pi_psi(next_z)
    float* z = nullptr;             // [(H+1) B, Z] encoder(obs[0..H]) (critic q fills next_z only)
    float* next_z = nullptr;        // [H B, Z] = z + B Z: the consistency targets
    float* pi_raw = nullptr;        // [H B, 2A] pi's head input at next_z (critic v: at z_t)
    float* a = nullptr;             // [H B, A] a' ~ pi
    float* za = nullptr;            // [H B, Z+A] [next_z, a'] (critic v: [z_t, a])
    float* q_logits = nullptr;      // [2, H B, K] of the picked target heads
    float* q_pair = nullptr;        // [H B] min2 (critic q; minus the KL term) / avg2 (critic v)
    float* td = nullptr;            // [H B] the targets
    float* rhat = nullptr;          // [H B] (critic v)
    float* z_next = nullptr;        // [H B, Z] dynamics(z_t, a) (critic v)
    float* prior_raw = nullptr;     // [H B, 2A] pi_psi's head input (kl_critic)
    float* log_ratio = nullptr;     // [H B] log pi(a') - log pi_psi(a') (kl_critic)
  };
  struct RolloutBuffers {
    MlpActs encoder;
    std::vector<MlpActs> dynamics;  // one per step t
    float* z = nullptr;             // [(H+1) B, Z] z[0..H]
    float* za = nullptr;            // [H B, Z+A] [z[t], action[t]]: dynamics, reward and Q input
    MlpGrads d_encoder;
    std::vector<MlpGrads> d_dynamics;
    float* dz = nullptr;            // [(H+1) B, Z]
    float* d_za = nullptr;          // [H B, Z+A] from the dynamics
  };
  struct ModelLossBuffers {
    float* w_consistency = nullptr;  // [H]       rho^t / H
    float* w_reward = nullptr;       // [H B]     rho^t / (B H)
    float* w_value = nullptr;        // [Qn H B]  rho^t / (B H Qn)
    float* coefs = nullptr;          // [3]       consistency_coef, reward_coef, value_coef
    float* g_reward = nullptr;       // [H B]     d total / d ce_r = reward_coef rho^t / (B H)
    float* g_value = nullptr;        // [H B]     d total / d ce_v = value_coef rho^t / (B H Qn)
    MlpActs reward, qs;
    float* consistency = nullptr;    // [H] mse per step
    float* reward_logits = nullptr;  // [H B, K]
    float* reward_ce = nullptr;      // [H B]
    float* q_logits = nullptr;       // [Qn, H B, K]
    float* value_ce = nullptr;       // [Qn H B]
    MlpGrads d_reward, d_qs;
    float* d_reward_logits = nullptr;  // [H B, K]
    float* d_q_logits = nullptr;       // [Qn, H B, K]
    float* d_heads_in = nullptr;       // [H B, Z+A] from the reward and Q heads
  };
  struct PriorFitBuffers {           // prior=learned
    float* w = nullptr;              // [H B] rho^t / (B H)
    MlpActs prior;
    float* raw = nullptr;            // [T B, 2A] pi_psi's head input (the fit reads rows t < H)
    float* a = nullptr;              // [T B, A] (an unused sample of pi_psi's head)
    float* mu = nullptr;             // [T B, A]
    float* log_std = nullptr;        // [T B, A]
    float* sigma = nullptr;          // [T B, A] exp(log_std): the pi step's prior
    float* div = nullptr;            // [H B] D_I per row
    MlpGrads d_prior;
    float* d_div = nullptr;          // [H B]
    float* d_mu = nullptr;           // [H B, A]
    float* d_log_std = nullptr;      // [H B, A]
    float* d_raw = nullptr;          // [H B, 2A]
  };
  struct IntermediateBuffers {       // prior=intermediate: S planner samples per row
    MlpActs qs;                      // the picked pair (pair_)
    CriticPair pair;
    float* a = nullptr;              // [S, T B, A]
    float* za = nullptr;             // [S T B, Z+A]
    float* q_logits = nullptr;       // [2, S T B, K]
    float* qbar = nullptr;           // [S T B] avg2, then / S_Q
    float* w = nullptr;              // [S T B] softmax weights
    float* log_z = nullptr;          // [T B]
  };
  struct PiLossBuffers {
    float* w = nullptr;              // [T B] rho^t / (B T) (rows t >= T: 0)
    float* g_log_pi = nullptr;       // [T B] entropy_coef rho^t / (B T)
    MlpActs pi, qs;                  // qs: the picked pair (pair_)
    CriticPair pair;
    float* raw = nullptr;            // [T B, 2A]
    float* a = nullptr;              // [T B, A]
    float* log_pi = nullptr;         // [T B]
    float* mu = nullptr;             // [T B, A] tanh(mean)
    float* log_std = nullptr;        // [T B, A]
    float* za = nullptr;             // [T B, Z+A] [z, a]
    float* q_logits = nullptr;       // [2, T B, K]
    float* q = nullptr;              // [2 T B]
    float* qbar = nullptr;           // [T B] avg2
    float* div = nullptr;            // [T B] D per row
    float* gate = nullptr;           // [1] the gated S_D (scale_gate)
    const float* divisor = nullptr;  // S_D as the last pi_loss took it (pi_loss_backward's)
    MlpGrads d_pi, d_qs;
    float* d_qbar = nullptr;         // [T B]
    float* d_q = nullptr;            // [2 T B]
    float* d_q_logits = nullptr;     // [2, T B, K]
    float* d_za = nullptr;           // [T B, Z+A]
    float* d_a = nullptr;            // [T B, A]
    float* d_raw = nullptr;          // [T B, 2A]
    float* d_mu = nullptr;           // [T B, A]
    float* d_log_std = nullptr;      // [T B, A]
    float* d_div = nullptr;          // [T B]
  };
  struct InferenceBuffers {          // max_rows rows
    MlpActs encoder, dynamics, reward, pi, qs;  // qs: every head (QMode::all)
    MlpActs pair_qs;                            // the picked pair (QMode::min / avg)
    MlpActs trunk;                              // [2, rows, M] per layer (rollout_terms)
    MlpActs dynamics_tail;                      // the dynamics' last layer's buffers
    CriticPair pair;
    float* za = nullptr;  // [rows, Z+A]
  };

  void build_layout();
  void allocate();
  void check_update_args(const Batch& batch, const UpdateStats* stats) const;
  void update_steps(const Batch& batch, UpdateStats* stats, bool policy);
  void model_loss_weights();  // fills model_loss_'s weights (beside model_loss)
  void pi_loss_weights();     // fills pi_loss_'s and prior_fit_'s weights (beside pi_loss)
  Dropout q_dropout(bool on, int purpose) const;
  // d for the heads of `pair` (their masks as drawn among all Qn heads: Dropout::heads).
  static Dropout pair_dropout(Dropout d, const CriticPair& pair);
  void td_target_v(const Batch& batch);
  // The pair a min2 / avg2 call with (seed, offset) combines, out of `ensemble` (the Qs or the
  // target Qs) into p.
  void gather_critic_pair(const CriticPair& p, const float* ensemble, uint64_t seed,
                          PhiloxOffset offset);
  // Q / V inference on the heads' input rows ([z, a] or z).
  // reward and next from the concatenation [z, a] already in infer_.za.
  void reward_from_za(float* r, int rows);
  void next_from_za(float* z_next, int rows);
  void critic_heads(float* out, const float* in, int rows, QMode mode, bool target, uint64_t seed,
                    PhiloxOffset offset);
  // pi() on z rows of stride z_ld, the action written at rows of stride action_ld (0: dense).
  void pi_rows(float* action, int64_t action_ld, const float* z, int64_t z_ld, int rows,
               uint64_t seed, PhiloxOffset offset, float* mu = nullptr, float* log_std = nullptr,
               float* log_pi = nullptr);
  // The pi step evaluates Qbar(z, a): for the Q term, or for the intermediate prior (S_Q scales
  // beta); its gradient reaches a through the Q term and the intermediate prior's reverse KL.
  bool pi_needs_qbar() const;
  bool pi_grad_through_q() const;
  // The objective has a prior term: a prior and prior_coef > 0 (0 leaves TD-MPC2's objective).
  bool pi_has_prior_term() const;
  // Qbar_k of the intermediate prior's samples, weights w_k and log_z (pi_loss's helper).
  void intermediate_weights(const Batch& batch);
  // The prior's Gaussian (mean, std) per row: the batch's planner targets, or pi_psi's output
  // (valid after pi_loss computed it).
  std::pair<const float*, const float*> prior_gaussian(const Batch& batch) const;
  // The prior term's divisor S_D (gated by prior_scale_threshold), or nullptr for 1.
  const float* prior_divisor();
  // Clip and Adam step of one trained set (update_model / update_prior / update_pi).
  void optimizer_step(Trained& set, float eps, float* grad_norm);

  Ops& ops_;
  ModelConfig cfg_;
  int max_rows_;
  int B_, H_, O_, A_, Z_, K_, Qn_;

  // Modules (layouts) and where they live in the parameter buffers.
  Mlp encoder_, dynamics_, reward_, pi_, qs_, prior_;
  // Dynamics' and reward's first two layers as one two-head ensemble (their stacked parameters)
  // and each one's last layer alone: what rollout_terms runs (build_layout).
  Mlp trunk_, dynamics_tail_, reward_tail_;
  Mlp pair_;                // qs_'s layout with two heads (CriticPair)
  PairGather pair_gather_;  // qs_ -> pair_, tensor by tensor
  // In the model buffer: dynamics and reward (their layers' offsets count from dr_offset_), Qs.
  size_t dr_offset_ = 0, q_offset_ = 0;
  size_t n_encoder_ = 0, n_q_ = 0;
  int critic_in_ = 0;         // the critic heads' input width: Z + A (q) or Z (v)
  int T_pi_ = 0;              // cfg.pi_steps()
  bool explore_head_ = false;
  std::vector<NamedTensor> tensors_;
  uint64_t updates_ = 0;

  // Persistent state.
  Trained model_set_, pi_set_, prior_set_;
  float* target_qs_ = nullptr;  // the Polyak Qs, the model buffer's Qs layout
  float* q_scale_ = nullptr;    // S_Q
  float* d_scale_ = nullptr;    // S_D
  uint64_t* offset_base_ = nullptr;  // update_offset(updates(), 0) in backend memory

  // update_graph's graphs, one per value of `policy`.
  struct GraphedUpdate {
    int calls = 0;
    Batch batch;
    UpdateStats* stats = nullptr;
    std::unique_ptr<Ops::Graph> graph;
  };
  GraphedUpdate graphs_[2];

  TdTargetBuffers td_target_;
  RolloutBuffers rollout_;
  ModelLossBuffers model_loss_;
  PriorFitBuffers prior_fit_;
  IntermediateBuffers intermediate_;
  PiLossBuffers pi_loss_;
  InferenceBuffers infer_;

  // The blocks behind everything above (freed by the destructor); grad_block_ holds every
  // activation gradient (zeroed by zero_grads()).
  std::vector<void*> blocks_;
  size_t allocated_bytes_ = 0;
  float* grad_block_ = nullptr;
  size_t grad_block_floats_ = 0;
};

}  // namespace pompc::model
