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
// Parameters: three contiguous buffers (ParamSet), each carved into named tensors (tensors()):
//   model     encoder | dynamics | reward | Qs   (one Adam: the encoder's group at lr *
//             enc_lr_scale, the rest at lr; eps 1e-8); the Qs part starts at q_offset()
//   pi        pi                                 (its own Adam: lr, eps 1e-5)
//   target_q  the target Qs, the same layout as the model buffer's Qs part
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
//   pi(action [rows, A], mu, log_std [rows, A], log_pi [rows], z, seed, offset)
//                                                       mu / log_std / log_pi may be null;
//                                                       noise eps[r, j] = philox_normal(seed,
//                                                       offset, r A + j) (src/ref/policy.h)
//   Q(out, z, a, mode, target, seed, offset)            min / avg: out [rows], two heads picked
//                                                       by pick_pair(Qn, seed, offset) for the
//                                                       whole batch; all: out = the logits
//                                                       [Qn, rows, K] (seed, offset unused)
//
// Update (update(batch, stats)): batch in backend memory, time-major:
//   obs [H+1, B, O], action [H, B, A], reward [H, B] (row b of step t at t * B + b).
//   1. td_target: next_z = encoder(obs[1..H]); a' ~ pi(next_z);
//      td = reward + gamma * min2(target Qs(next_z, a'))                (no dropout, no grads)
//   2-3. model_forward: z[0] = encoder(obs[0]), z[t+1] = dynamics(z[t], action[t]);
//      consistency = sum_t rho^t mean((z[t+1] - next_z[t])^2) / H
//      reward      = sum_t rho^t mean_b soft_ce(reward(z[t], a[t]), reward[t]) / H
//      value       = sum_t rho^t sum_q mean_b soft_ce(Q_q(z[t], a[t]), td[t]) / (H Qn)  (dropout)
//      total = consistency_coef consistency + reward_coef reward + value_coef value
//   4. model_backward + model_step: gradients of total (hand-written backward through every
//      module), clip the global norm at grad_clip_norm, Adam.
//   5. pi_forward / pi_backward / pi_step on the detached z[0..H] (H+1 steps): a ~ pi(z[t]);
//      Qbar = avg2(Qs(z[t], a)) with the just-updated Qs frozen and their dropout on;
//      S_Q <- RunningScale update with Qbar at t = 0;
//      pi_loss = sum_t rho^t mean_b (entropy_coef log_pi - Qbar / S_Q) / (H + 1);
//      gradients reach pi's parameters through a (and log_pi); clip; pi's Adam.
//   6. target_update: target Qs += tau (Qs - target Qs).
//   Stats (UpdateStats, backend memory) are written by the phases; nothing synchronises with the
//   host, so the caller reads them (copy_to_host) when it wants. grad_norm / pi_grad_norm are the
//   norms before clipping (what clip_grad_norm_ returns).
//
// Randomness of one update (host counter u = updates(), advanced by update() at its end; the
// key is cfg.seed): offset = 2^63 + 16 u + purpose, purpose
//   0 policy noise of a' in the TD target      1 the min2 pair of target heads
//   2 dropout of the Qs in the value loss      3 policy noise of the pi step
//   4 dropout of the Qs in the pi step         5 the avg2 pair of heads in the pi step
// Inference callers (planner) choose their own (seed, offset) and keep offsets below 2^62.
// The offsets are host values passed by value to the ops, so a captured CUDA graph would bake
// them: replaying one capture of update() would repeat the first update's dropout masks, policy
// noise and head pairs. Capturing the update needs ops that read the Philox offset from backend
// memory (not there yet); until then update() runs eagerly (it never synchronises either way).
//
// Overwritten / accumulated: forward activations and stats are overwritten; all gradients
// (parameter and activation) are zeroed by zero_grads() (update() does it first) and then
// ACCUMULATED by the backward phases. Everything is allocated in the constructor (the backends
// size a little scratch of their own on an op's first call: the reference RunningScale's sort
// buffer, the CUDA LayerNorm backward's row statistics).
//
// Test: build-wm/test_emu -ts=model      Bench: build-wm/bench -ts=bench -tc='*update*'
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/mlp.h"
#include "ops.h"

namespace pompc::model {

enum class ParamSet { model, pi, target_q };
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
  const float* obs = nullptr;     // [H+1, B, O]
  const float* action = nullptr;  // [H, B, A]
  const float* reward = nullptr;  // [H, B]
};

// What one update reports, in backend memory (allocate with ops.alloc<UpdateStats>(1)).
struct UpdateStats {
  float consistency_loss;  // sum_t rho^t mse_t / H
  float reward_loss;       // sum_t rho^t mean_b soft_ce / H
  float value_loss;        // sum_t rho^t sum_q mean_b soft_ce / (H Qn)
  float total_loss;        // the weighted sum that was differentiated
  float grad_norm;         // the model's global gradient norm before clipping
  float pi_loss;           // sum_t rho^t mean_b (alpha log_pi - Qbar / S_Q) / (H + 1)
  float pi_grad_norm;      // pi's gradient norm before clipping
  float pi_scale;          // S_Q after this update's RunningScale step
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
  size_t param_count(ParamSet set) const;
  // Parameters trained by gradient (model + pi): TD-MPC2's printed total_params.
  size_t trainable_param_count() const;
  size_t q_offset() const { return q_offset_; }  // start of the Qs in the model buffer
  float* grads(ParamSet set);                    // model or pi
  float* adam_m(ParamSet set);                   // model or pi
  float* adam_v(ParamSet set);                   // model or pi
  AdamScalars* adam_scalars(ParamSet set);       // model or pi (backend memory)
  float* q_scale() { return q_scale_; }          // RunningScale S_Q (a backend scalar)
  uint64_t updates() const { return updates_; }  // updates taken (the Philox stream counter)
  // Backend memory held (parameters, optimizer state, constants and both workspaces).
  size_t allocated_bytes() const { return allocated_bytes_; }
  void set_updates(uint64_t u) { updates_ = u; }

  // ---- inference (see the header comment) ----
  void encode(float* z, const float* obs, int rows);
  void next(float* z_next, const float* z, const float* a, int rows);
  void reward(float* r, const float* z, const float* a, int rows);
  void pi(float* action, float* mu, float* log_std, float* log_pi, const float* z, int rows,
          uint64_t seed, uint64_t offset);
  void Q(float* out, const float* z, const float* a, int rows, QMode mode, bool target,
         uint64_t seed, uint64_t offset);

  // ---- update ----
  // One full update (SPEC 2 steps 1-6); then updates() += 1.
  void update(const Batch& batch, UpdateStats* stats);

  // Its phases, in the order update() runs them (public for the agent's variants and the
  // gradient-check tests; `dropout = false` turns the Q heads' dropout off, `update_scale =
  // false` keeps S_Q as it is).
  void zero_grads();
  void td_target(const Batch& batch);
  void model_forward(const Batch& batch, UpdateStats* stats, bool dropout = true);
  void model_backward(const Batch& batch, bool dropout = true);
  void model_step(UpdateStats* stats);
  void pi_forward(UpdateStats* stats, bool update_scale = true, bool dropout = true);
  void pi_backward(bool dropout = true);
  void pi_step(UpdateStats* stats);
  void target_update();

  // The Philox offset of one purpose (0..5, see the header comment) of update u.
  static uint64_t update_offset(uint64_t u, int purpose);

 private:
  void build_layout();
  void allocate();
  Dropout q_dropout(bool on, int purpose) const;

  Ops& ops_;
  ModelConfig cfg_;
  int max_rows_;
  int B_, H_, O_, A_, Z_, K_, Qn_;

  Mlp encoder_, dynamics_, reward_, pi_, qs_;
  std::vector<NamedTensor> tensors_;
  size_t n_model_ = 0, n_pi_ = 0, n_q_ = 0, n_encoder_ = 0, q_offset_ = 0;
  uint64_t updates_ = 0;

  // Persistent state.
  float* params_model_ = nullptr;
  float* grads_model_ = nullptr;
  float* m_model_ = nullptr;
  float* v_model_ = nullptr;
  float* params_pi_ = nullptr;
  float* grads_pi_ = nullptr;
  float* m_pi_ = nullptr;
  float* v_pi_ = nullptr;
  float* params_target_ = nullptr;
  float* q_scale_ = nullptr;
  AdamScalars* adam_model_ = nullptr;
  AdamScalars* adam_pi_ = nullptr;
  AdamGroups groups_model_, groups_pi_;

  // Loss weights (constants, filled at construction).
  float* w_cons_ = nullptr;   // [H]        rho^t / H
  float* w_rew_ = nullptr;    // [H B]      rho^t / (B H)
  float* g_rew_ = nullptr;    // [H B]      reward_coef rho^t / (B H)
  float* w_val_ = nullptr;    // [Qn H B]   rho^t / (B H Qn)
  float* g_val_ = nullptr;    // [H B]      value_coef rho^t / (B H Qn)
  float* coef3_ = nullptr;    // [3]        consistency_coef, reward_coef, value_coef
  float* w_pi_ = nullptr;     // [(H+1) B]  rho^t / (B (H+1))
  float* g_logpi_ = nullptr;  // [(H+1) B]  entropy_coef rho^t / (B (H+1))

  // Update workspace: forward activations (overwritten).
  MlpActs enc_td_acts_, enc_acts_, pi_td_acts_, tq_acts_, rew_acts_, q_acts_, pi_acts_, pq_acts_;
  std::vector<MlpActs> dyn_acts_;  // one per step t
  float* next_z_ = nullptr;        // [H B, Z] encoder(obs[1..H]) (the consistency targets)
  float* raw_td_ = nullptr;        // [H B, 2A]
  float* a_td_ = nullptr;          // [H B, A]
  float* tq_in_ = nullptr;         // [H B, Z+A]
  float* tq_logits_ = nullptr;     // [Qn, H B, K]
  float* tq_val_ = nullptr;        // [Qn H B]
  float* qmin_ = nullptr;          // [H B]
  float* td_ = nullptr;            // [H B]
  float* zs_ = nullptr;            // [(H+1) B, Z] z[0..H] of the rollout
  float* dyn_in_ = nullptr;        // [H B, Z+A] [z[t], action[t]]: dynamics, reward and Q input
  float* cons_t_ = nullptr;        // [H] mse per step
  float* rlogits_ = nullptr;       // [H B, K]
  float* ce_r_ = nullptr;          // [H B]
  float* qlogits_ = nullptr;       // [Qn, H B, K]
  float* ce_v_ = nullptr;          // [Qn H B]
  float* raw_pi_ = nullptr;        // [(H+1) B, 2A]
  float* a_pi_ = nullptr;          // [(H+1) B, A]
  float* log_pi_ = nullptr;        // [(H+1) B]
  float* pq_in_ = nullptr;         // [(H+1) B, Z+A]
  float* pq_logits_ = nullptr;     // [Qn, (H+1) B, K]
  float* pq_val_ = nullptr;        // [Qn (H+1) B]
  float* qavg_ = nullptr;          // [(H+1) B]
  // Update workspace: gradients (zeroed by zero_grads(), then accumulated).
  MlpGrads enc_g_, rew_g_, q_g_, pi_g_, pq_g_;
  std::vector<MlpGrads> dyn_g_;
  float* d_rlogits_ = nullptr;    // [H B, K]
  float* d_qlogits_ = nullptr;    // [Qn, H B, K]
  float* d_rq_in_ = nullptr;      // [H B, Z+A] from reward and Qs
  float* d_dyn_in_ = nullptr;     // [H B, Z+A] from dynamics
  float* dzs_ = nullptr;          // [(H+1) B, Z]
  float* d_qavg_ = nullptr;       // [(H+1) B]
  float* d_pq_val_ = nullptr;     // [Qn (H+1) B]
  float* d_pq_logits_ = nullptr;  // [Qn, (H+1) B, K]
  float* d_pq_in_ = nullptr;      // [(H+1) B, Z+A]
  float* d_a_pi_ = nullptr;       // [(H+1) B, A]
  float* d_raw_pi_ = nullptr;     // [(H+1) B, 2A]
  // Inference workspace (max_rows rows).
  MlpActs enc_inf_, dyn_inf_, rew_inf_, pi_inf_, q_inf_;
  float* inf_za_ = nullptr;    // [rows, Z+A]
  float* inf_qval_ = nullptr;  // [Qn rows]

  // The blocks behind everything above (freed by the destructor).
  std::vector<void*> blocks_;
  size_t allocated_bytes_ = 0;
  float* grad_block_ = nullptr;
  size_t grad_block_floats_ = 0;
};

}  // namespace pompc::model
