// src/model/world_model.cpp: layout, initialisation, inference and the update step of the TD-MPC2
// world model. Run book (maths, shapes, Philox convention): world_model.h.
#include "model/world_model.h"

#include <algorithm>
#include <cmath>

#include "common.h"
#include "nvtx.h"
#include "philox.cuh"

namespace pompc::model {
namespace {

constexpr uint64_t kInitOffset = uint64_t{1} << 62;    // + tensor index: initial weights
constexpr uint64_t kUpdateOffset = uint64_t{1} << 63;  // + 16 u + purpose: one update's draws
constexpr float kTruncStd = 0.02f;                     // trunc_normal_(std=0.02)
constexpr float kTruncBound = 2.0f;                    // its default a = -2, b = 2 (absolute)

// Offsets of each layer's tensors relative to the module's start; returns the module.
Mlp make_mlp(const std::string& name, int groups, std::vector<Layer> layers) {
  size_t at = 0;
  for (Layer& l : layers) {
    const size_t g = static_cast<size_t>(groups);
    l.weight = at;
    at += g * l.out * l.in;
    l.bias = at;
    at += g * l.out;
    if (l.act != Act::linear) {
      l.gamma = at;
      at += g * l.out;
      l.beta = at;
      at += g * l.out;
    }
  }
  Mlp m;
  m.name = name;
  m.groups = groups;
  m.layers = std::move(layers);
  return m;
}

Layer layer(int in, int out, Act act, bool dropout = false) {
  Layer l;
  l.in = in;
  l.out = out;
  l.act = act;
  l.dropout = dropout;
  return l;
}

// Appends the tensors of `m` (living at `base` in buffer `set`) to the table, named `prefix`.
void add_tensors(std::vector<NamedTensor>* out, const Mlp& m, const std::string& prefix,
                 ParamSet set, size_t base) {
  auto shape = [&](std::vector<int64_t> s) {
    if (m.groups > 1) s.insert(s.begin(), m.groups);
    return s;
  };
  for (size_t i = 0; i < m.layers.size(); ++i) {
    const Layer& l = m.layers[i];
    const std::string p = prefix + "." + std::to_string(i) + ".";
    out->push_back({p + "weight", set, base + l.weight, shape({l.out, l.in})});
    out->push_back({p + "bias", set, base + l.bias, shape({l.out})});
    if (l.act != Act::linear) {
      out->push_back({p + "ln.weight", set, base + l.gamma, shape({l.out})});
      out->push_back({p + "ln.bias", set, base + l.beta, shape({l.out})});
    }
  }
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

size_t NamedTensor::numel() const {
  size_t n = 1;
  for (int64_t d : shape) n *= static_cast<size_t>(d);
  return n;
}

uint64_t WorldModel::update_offset(uint64_t u, int purpose) {
  return kUpdateOffset + 16 * u + static_cast<uint64_t>(purpose);
}

WorldModel::WorldModel(Ops& ops, const ModelConfig& cfg, int max_rows)
    : ops_(ops), cfg_(cfg), max_rows_(max_rows) {
  cfg_.validate();
  POMPC_REQUIRE(max_rows >= 1, "max_rows (%d) must be >= 1 (the largest inference batch)",
                max_rows);
  B_ = cfg_.batch_size;
  H_ = cfg_.horizon;
  O_ = cfg_.obs_dim;
  A_ = cfg_.action_dim;
  Z_ = cfg_.latent_dim;
  K_ = cfg_.num_bins;
  Qn_ = cfg_.num_q;
  ops_.set_tf32(cfg_.tf32);
  build_layout();
  allocate();
  init();
}

WorldModel::~WorldModel() {
  for (void* p : blocks_) ops_.free_bytes(p);
}

void WorldModel::build_layout() {
  const int ZA = Z_ + A_, M = cfg_.mlp_dim, E = cfg_.enc_dim;
  critic_in_ = cfg_.critic == Critic::q ? ZA : Z_;
  T_pi_ = cfg_.pi_steps();
  std::vector<Layer> enc;
  const int hidden = std::max(cfg_.num_enc_layers - 1, 1);
  for (int i = 0; i < hidden; ++i) enc.push_back(layer(i == 0 ? O_ : E, E, Act::mish));
  enc.push_back(layer(E, Z_, Act::simnorm));
  encoder_ = make_mlp("_encoder.state", 1, enc);
  dynamics_ =
      make_mlp("_dynamics", 1,
               {layer(ZA, M, Act::mish), layer(M, M, Act::mish), layer(M, Z_, Act::simnorm)});
  reward_ = make_mlp("_reward", 1,
                     {layer(ZA, M, Act::mish), layer(M, M, Act::mish), layer(M, K_, Act::linear)});
  pi_ = make_mlp("_pi", 1,
                 {layer(Z_, M, Act::mish), layer(M, M, Act::mish), layer(M, 2 * A_, Act::linear)});
  qs_ = make_mlp(
      "_Qs.params", Qn_,
      {layer(critic_in_, M, Act::mish, true), layer(M, M, Act::mish), layer(M, K_, Act::linear)});
  const bool learned = cfg_.prior == Prior::learned;
  if (learned)
    prior_ = make_mlp("_pi_prior", 1,
                      {layer(Z_, M, Act::mish), layer(M, M, Act::mish),
                       layer(M, 2 * A_, Act::linear)});

  n_encoder_ = encoder_.param_count();
  const size_t dyn_off = n_encoder_;
  const size_t rew_off = dyn_off + dynamics_.param_count();
  q_offset_ = rew_off + reward_.param_count();
  n_q_ = qs_.param_count();
  n_model_ = q_offset_ + n_q_;
  n_pi_ = pi_.param_count();
  n_prior_ = learned ? prior_.param_count() : 0;

  tensors_.clear();
  add_tensors(&tensors_, encoder_, "_encoder.state", ParamSet::model, 0);
  add_tensors(&tensors_, dynamics_, "_dynamics", ParamSet::model, dyn_off);
  add_tensors(&tensors_, reward_, "_reward", ParamSet::model, rew_off);
  add_tensors(&tensors_, qs_, "_Qs.params", ParamSet::model, q_offset_);
  add_tensors(&tensors_, pi_, "_pi", ParamSet::pi, 0);
  add_tensors(&tensors_, qs_, "_target_Qs_params", ParamSet::target_q, 0);
  if (learned) add_tensors(&tensors_, prior_, "_pi_prior", ParamSet::prior, 0);

  groups_model_ = AdamGroups{};
  groups_model_.add(n_encoder_, cfg_.lr * cfg_.enc_lr_scale);
  groups_model_.add(n_model_ - n_encoder_, cfg_.lr);
  groups_pi_ = AdamGroups{};
  groups_pi_.add(n_pi_, cfg_.lr);
  groups_prior_ = AdamGroups{};
  if (learned) groups_prior_.add(n_prior_, cfg_.lr);
}

void WorldModel::allocate() {
  const int ZA = Z_ + A_;
  const size_t B = static_cast<size_t>(B_), RH = static_cast<size_t>(H_) * B,
               RH1 = static_cast<size_t>(H_ + 1) * B, Qn = static_cast<size_t>(Qn_),
               K = static_cast<size_t>(K_), A = static_cast<size_t>(A_),
               Z = static_cast<size_t>(Z_), R = static_cast<size_t>(max_rows_);
  const int iB = B_, iRH = H_ * B_, iRH1 = (H_ + 1) * B_;
  const bool v_critic = cfg_.critic == Critic::v, learned = cfg_.prior == Prior::learned,
             intermediate = cfg_.prior == Prior::intermediate;
  const size_t S = static_cast<size_t>(cfg_.prior_samples);

  // Persistent state and constants.
  Arena state;
  state.add(&params_model_, n_model_);
  state.add(&grads_model_, n_model_);
  state.add(&m_model_, n_model_);
  state.add(&v_model_, n_model_);
  state.add(&params_pi_, n_pi_);
  state.add(&grads_pi_, n_pi_);
  state.add(&m_pi_, n_pi_);
  state.add(&v_pi_, n_pi_);
  state.add(&params_target_, n_q_);
  if (learned) {
    state.add(&params_prior_, n_prior_);
    state.add(&grads_prior_, n_prior_);
    state.add(&m_prior_, n_prior_);
    state.add(&v_prior_, n_prior_);
  }
  state.add(&q_scale_, 1);
  state.add(&d_scale_, 1);
  state.add(&w_cons_, static_cast<size_t>(H_));
  state.add(&w_rew_, RH);
  state.add(&g_rew_, RH);
  state.add(&w_val_, Qn * RH);
  state.add(&g_val_, RH);
  state.add(&coef3_, 3);
  state.add(&w_pi_, RH1);
  state.add(&g_logpi_, RH1);
  if (learned) state.add(&w_fit_, RH);
  allocated_bytes_ += state.floats() * sizeof(float) + 3 * sizeof(AdamScalars);
  blocks_.push_back(state.allocate(ops_));
  adam_model_ = ops_.alloc<AdamScalars>(1);
  blocks_.push_back(adam_model_);
  adam_pi_ = ops_.alloc<AdamScalars>(1);
  blocks_.push_back(adam_pi_);
  adam_prior_ = ops_.alloc<AdamScalars>(1);
  blocks_.push_back(adam_prior_);

  // Forward activations of the update and of inference.
  Arena acts;
  reserve_acts(acts, encoder_, iRH1, false, &enc_td_acts_);
  reserve_acts(acts, encoder_, iB, true, &enc_acts_);
  reserve_acts(acts, pi_, iRH, false, &pi_td_acts_);
  reserve_acts(acts, qs_, iRH, false, &tq_acts_);
  dyn_acts_.resize(static_cast<size_t>(H_));
  for (MlpActs& a : dyn_acts_) reserve_acts(acts, dynamics_, iB, true, &a);
  reserve_acts(acts, reward_, iRH, true, &rew_acts_);
  reserve_acts(acts, qs_, iRH, true, &q_acts_);
  reserve_acts(acts, pi_, iRH1, true, &pi_acts_);
  reserve_acts(acts, qs_, iRH1, true, &pq_acts_);
  acts.add(&true_z_, RH1 * Z);
  next_z_ = nullptr;  // true_z_ + B Z, set after allocation
  acts.add(&raw_td_, RH * 2 * A);
  acts.add(&a_td_, RH * A);
  acts.add(&tq_in_, RH * ZA);
  acts.add(&tq_logits_, Qn * RH * K);
  acts.add(&tq_val_, Qn * RH);
  acts.add(&qmin_, RH);
  acts.add(&td_, RH);
  acts.add(&zs_, RH1 * Z);
  acts.add(&dyn_in_, RH * ZA);
  acts.add(&cons_t_, static_cast<size_t>(H_));
  acts.add(&rlogits_, RH * K);
  acts.add(&ce_r_, RH);
  acts.add(&qlogits_, Qn * RH * K);
  acts.add(&ce_v_, Qn * RH);
  acts.add(&raw_pi_, RH1 * 2 * A);
  acts.add(&a_pi_, RH1 * A);
  acts.add(&log_pi_, RH1);
  acts.add(&pq_in_, RH1 * ZA);
  acts.add(&pq_logits_, Qn * RH1 * K);
  acts.add(&pq_val_, Qn * RH1);
  acts.add(&qavg_, RH1);
  acts.add(&mu_pi_, RH1 * A);
  acts.add(&log_std_pi_, RH1 * A);
  acts.add(&div_, RH1);
  acts.add(&gate_, 1);
  if (v_critic) {
    reserve_acts(acts, reward_, iRH, false, &rew_td_acts_);
    reserve_acts(acts, dynamics_, iRH, false, &dyn_td_acts_);
    acts.add(&rhat_, RH);
    acts.add(&zn_td_, RH * Z);
  }
  if (learned) {
    reserve_acts(acts, prior_, iRH1, true, &psi_acts_);
    acts.add(&raw_psi_, RH1 * 2 * A);
    acts.add(&a_psi_, RH1 * A);
    acts.add(&mu_psi_, RH1 * A);
    acts.add(&log_std_psi_, RH1 * A);
    acts.add(&sigma_psi_, RH1 * A);
    acts.add(&fit_div_, RH);
  }
  if (cfg_.kl_critic) {
    reserve_acts(acts, prior_, iRH, false, &psi_td_acts_);
    acts.add(&raw_psi_td_, RH * 2 * A);
    acts.add(&log_ratio_td_, RH);
  }
  if (intermediate) {
    reserve_acts(acts, qs_, static_cast<int>(S) * iRH, false, &qk_acts_);
    acts.add(&a_k_, S * RH * A);
    acts.add(&zk_in_, S * RH * ZA);
    acts.add(&qk_logits_, Qn * S * RH * K);
    acts.add(&qk_val_, Qn * S * RH);
    acts.add(&qk_avg_, S * RH);
    acts.add(&w_k_, S * RH);
    acts.add(&log_z_, RH);
  }
  reserve_acts(acts, encoder_, max_rows_, false, &enc_inf_);
  reserve_acts(acts, dynamics_, max_rows_, false, &dyn_inf_);
  reserve_acts(acts, reward_, max_rows_, false, &rew_inf_);
  reserve_acts(acts, pi_, max_rows_, false, &pi_inf_);
  reserve_acts(acts, qs_, max_rows_, false, &q_inf_);
  acts.add(&inf_za_, R * ZA);
  acts.add(&inf_qval_, Qn * R);
  allocated_bytes_ += acts.floats() * sizeof(float);
  blocks_.push_back(acts.allocate(ops_));
  next_z_ = true_z_ + static_cast<size_t>(B_) * Z_;

  // Activation gradients of the update (zeroed once per update).
  Arena grads;
  reserve_grads(grads, encoder_, iB, &enc_g_);
  dyn_g_.resize(static_cast<size_t>(H_));
  for (MlpGrads& g : dyn_g_) reserve_grads(grads, dynamics_, iB, &g);
  reserve_grads(grads, reward_, iRH, &rew_g_);
  reserve_grads(grads, qs_, iRH, &q_g_);
  reserve_grads(grads, pi_, iRH1, &pi_g_);
  reserve_grads(grads, qs_, iRH1, &pq_g_);
  grads.add(&d_rlogits_, RH * K);
  grads.add(&d_qlogits_, Qn * RH * K);
  grads.add(&d_rq_in_, RH * ZA);
  grads.add(&d_dyn_in_, RH * ZA);
  grads.add(&dzs_, RH1 * Z);
  grads.add(&d_qavg_, RH1);
  grads.add(&d_pq_val_, Qn * RH1);
  grads.add(&d_pq_logits_, Qn * RH1 * K);
  grads.add(&d_pq_in_, RH1 * ZA);
  grads.add(&d_a_pi_, RH1 * A);
  grads.add(&d_raw_pi_, RH1 * 2 * A);
  grads.add(&d_mu_pi_, RH1 * A);
  grads.add(&d_log_std_pi_, RH1 * A);
  grads.add(&d_div_, RH1);
  if (learned) {
    reserve_grads(grads, prior_, iRH, &psi_g_);  // the fit's rows (planner targets: t < H)
    grads.add(&d_fit_div_, RH);
    grads.add(&d_mu_psi_, RH * A);
    grads.add(&d_log_std_psi_, RH * A);
    grads.add(&d_raw_psi_, RH * 2 * A);
  }
  grad_block_floats_ = grads.floats();
  allocated_bytes_ += grad_block_floats_ * sizeof(float);
  grad_block_ = grads.allocate(ops_);
  blocks_.push_back(grad_block_);

  // Loss weights: rho^t over the steps, computed in double and rounded once.
  std::vector<float> w_cons(H_), w_rew(RH), g_rew(RH), w_val(Qn * RH), g_val(RH), w_pi(RH1),
      g_logpi(RH1), w_fit(RH);
  const double H = H_, Bd = B_, Qd = Qn_, T = T_pi_;
  for (int t = 0; t <= H_; ++t) {
    const double rt = std::pow(static_cast<double>(cfg_.rho), t);
    for (size_t b = 0; b < B; ++b) {
      const size_t i = static_cast<size_t>(t) * B + b;
      w_pi[i] = t < T_pi_ ? static_cast<float>(rt / (Bd * T)) : 0.0f;
      g_logpi[i] = t < T_pi_ ? static_cast<float>(cfg_.entropy_coef * rt / (Bd * T)) : 0.0f;
      if (t == H_) continue;
      w_rew[i] = static_cast<float>(rt / (Bd * H));
      w_fit[i] = w_rew[i];
      g_rew[i] = static_cast<float>(cfg_.reward_coef * rt / (Bd * H));
      g_val[i] = static_cast<float>(cfg_.value_coef * rt / (Bd * H * Qd));
      for (size_t q = 0; q < Qn; ++q) w_val[q * RH + i] = static_cast<float>(rt / (Bd * H * Qd));
    }
    if (t < H_) w_cons[t] = static_cast<float>(rt / H);
  }
  const float coef3[3] = {cfg_.consistency_coef, cfg_.reward_coef, cfg_.value_coef};
  ops_.copy_to_backend(w_cons_, w_cons.data(), w_cons.size() * sizeof(float));
  ops_.copy_to_backend(w_rew_, w_rew.data(), w_rew.size() * sizeof(float));
  ops_.copy_to_backend(g_rew_, g_rew.data(), g_rew.size() * sizeof(float));
  ops_.copy_to_backend(w_val_, w_val.data(), w_val.size() * sizeof(float));
  ops_.copy_to_backend(g_val_, g_val.data(), g_val.size() * sizeof(float));
  ops_.copy_to_backend(coef3_, coef3, sizeof coef3);
  ops_.copy_to_backend(w_pi_, w_pi.data(), w_pi.size() * sizeof(float));
  ops_.copy_to_backend(g_logpi_, g_logpi.data(), g_logpi.size() * sizeof(float));
  if (w_fit_) ops_.copy_to_backend(w_fit_, w_fit.data(), w_fit.size() * sizeof(float));
}

void WorldModel::init() {
  std::vector<float> model(n_model_, 0.0f), pi(n_pi_, 0.0f), prior(n_prior_, 0.0f);
  const std::string reward_last = "_reward." + std::to_string(reward_.layers.size() - 1) + ".";
  const std::string q_last = "_Qs.params." + std::to_string(qs_.layers.size() - 1) + ".";
  for (size_t ti = 0; ti < tensors_.size(); ++ti) {
    const NamedTensor& t = tensors_[ti];
    if (t.set == ParamSet::target_q) continue;  // copied from the Qs below
    float* dst = (t.set == ParamSet::model ? model.data()
                  : t.set == ParamSet::pi  ? pi.data()
                                           : prior.data()) +
                 t.offset;
    const size_t n = t.numel();
    if (ends_with(t.name, "ln.weight")) {
      for (size_t i = 0; i < n; ++i) dst[i] = 1.0f;
    } else if (ends_with(t.name, ".weight") && t.name.rfind(reward_last, 0) != 0 &&
               t.name.rfind(q_last, 0) != 0) {
      // trunc_normal_(std=0.02, a=-2, b=2): redraw (a later draw index) outside the bounds.
      for (size_t i = 0; i < n; ++i) {
        float x = 0.0f;
        for (uint64_t k = 0;; ++k) {
          x = kTruncStd * philox_normal(cfg_.seed, kInitOffset + ti, i + k * n);
          if (std::fabs(x) <= kTruncBound) break;
        }
        dst[i] = x;
      }
    }
    // Biases, LayerNorm betas and the last Linear of reward and of every Q head stay 0.
  }
  ops_.copy_to_backend(params_model_, model.data(), n_model_ * sizeof(float));
  ops_.copy_to_backend(params_pi_, pi.data(), n_pi_ * sizeof(float));
  ops_.copy_to_backend(params_target_, model.data() + q_offset_, n_q_ * sizeof(float));
  ops_.fill(grads_model_, static_cast<int64_t>(n_model_), 0.0f);
  ops_.fill(m_model_, static_cast<int64_t>(n_model_), 0.0f);
  ops_.fill(v_model_, static_cast<int64_t>(n_model_), 0.0f);
  ops_.fill(grads_pi_, static_cast<int64_t>(n_pi_), 0.0f);
  ops_.fill(m_pi_, static_cast<int64_t>(n_pi_), 0.0f);
  ops_.fill(v_pi_, static_cast<int64_t>(n_pi_), 0.0f);
  if (n_prior_) {
    ops_.copy_to_backend(params_prior_, prior.data(), n_prior_ * sizeof(float));
    for (float* p : {grads_prior_, m_prior_, v_prior_})
      ops_.fill(p, static_cast<int64_t>(n_prior_), 0.0f);
  }
  ops_.fill(q_scale_, 1, 1.0f);
  ops_.fill(d_scale_, 1, 1.0f);
  const AdamScalars zero{};
  ops_.copy_to_backend(adam_model_, &zero, sizeof zero);
  ops_.copy_to_backend(adam_pi_, &zero, sizeof zero);
  ops_.copy_to_backend(adam_prior_, &zero, sizeof zero);
  updates_ = 0;
}

float* WorldModel::params(ParamSet set) {
  switch (set) {
    case ParamSet::model:
      return params_model_;
    case ParamSet::pi:
      return params_pi_;
    case ParamSet::prior:
      return params_prior_;
    default:
      return params_target_;
  }
}

size_t WorldModel::param_count(ParamSet set) const {
  switch (set) {
    case ParamSet::model:
      return n_model_;
    case ParamSet::pi:
      return n_pi_;
    case ParamSet::prior:
      return n_prior_;
    default:
      return n_q_;
  }
}

size_t WorldModel::trainable_param_count() const {
  return n_model_ + n_pi_ + n_prior_;
}

namespace {
template <typename P>
P pick_trained(ParamSet set, P model, P pi, P prior) {
  POMPC_REQUIRE(set != ParamSet::target_q, "the target Qs have no gradients or optimizer");
  return set == ParamSet::model ? model : set == ParamSet::pi ? pi : prior;
}
}  // namespace

float* WorldModel::grads(ParamSet set) {
  return pick_trained(set, grads_model_, grads_pi_, grads_prior_);
}
float* WorldModel::adam_m(ParamSet set) { return pick_trained(set, m_model_, m_pi_, m_prior_); }
float* WorldModel::adam_v(ParamSet set) { return pick_trained(set, v_model_, v_pi_, v_prior_); }
AdamScalars* WorldModel::adam_scalars(ParamSet set) {
  return pick_trained(set, adam_model_, adam_pi_, adam_prior_);
}

Dropout WorldModel::q_dropout(bool on, int purpose) const {
  if (!on || cfg_.dropout <= 0.0f) return Dropout{};
  return Dropout{cfg_.dropout, cfg_.seed, update_offset(updates_, purpose)};
}

// ---- inference ---------------------------------------------------------------------------------

namespace {
void check_rows(const char* who, int rows, int max_rows) {
  POMPC_REQUIRE(rows >= 0 && rows <= max_rows,
                "%s: rows (%d) must be in [0, max_rows = %d] (raise max_rows of the WorldModel)",
                who, rows, max_rows);
}
}  // namespace

void WorldModel::encode(float* z, const float* obs, int rows) {
  check_rows("encode", rows, max_rows_);
  mlp_forward(ops_, encoder_, params_model_, obs, rows, enc_inf_, z, Dropout{});
}

void WorldModel::next(float* z_next, const float* z, const float* a, int rows) {
  check_rows("next", rows, max_rows_);
  const size_t dyn_off = n_encoder_;
  ops_.concat_forward(inf_za_, z, a, rows, Z_, A_);
  mlp_forward(ops_, dynamics_, params_model_ + dyn_off, inf_za_, rows, dyn_inf_, z_next, Dropout{});
}

void WorldModel::reward(float* r, const float* z, const float* a, int rows) {
  check_rows("reward", rows, max_rows_);
  const size_t rew_off = n_encoder_ + dynamics_.param_count();
  ops_.concat_forward(inf_za_, z, a, rows, Z_, A_);
  mlp_forward(ops_, reward_, params_model_ + rew_off, inf_za_, rows, rew_inf_, nullptr, Dropout{});
  ops_.two_hot_inv_forward(r, rew_inf_.out.back(), rows, cfg_.bins());
}

void WorldModel::pi(float* action, float* mu, float* log_std, float* log_pi, const float* z,
                    int rows, uint64_t seed, uint64_t offset) {
  check_rows("pi", rows, max_rows_);
  mlp_forward(ops_, pi_, params_pi_, z, rows, pi_inf_, nullptr, Dropout{});
  ops_.policy_head_forward(action, mu, log_std, log_pi, nullptr, pi_inf_.out.back(), rows, A_,
                           cfg_.policy_head(explore_head_), seed, offset);
}

void WorldModel::Q(float* out, const float* z, const float* a, int rows, QMode mode, bool target,
                   uint64_t seed, uint64_t offset) {
  check_rows("Q", rows, max_rows_);
  POMPC_REQUIRE(cfg_.critic == Critic::q, "Q: this model has a V critic (critic=v); call V");
  ops_.concat_forward(inf_za_, z, a, rows, Z_, A_);
  critic_heads(out, inf_za_, rows, mode, target, seed, offset);
}

void WorldModel::V(float* out, const float* z, int rows, QMode mode, bool target, uint64_t seed,
                   uint64_t offset) {
  check_rows("V", rows, max_rows_);
  POMPC_REQUIRE(cfg_.critic == Critic::v, "V: this model has a Q critic (critic=q); call Q");
  critic_heads(out, z, rows, mode, target, seed, offset);
}

void WorldModel::critic_heads(float* out, const float* in, int rows, QMode mode, bool target,
                              uint64_t seed, uint64_t offset) {
  const float* params = target ? params_target_ : params_model_ + q_offset_;
  if (mode == QMode::all) {
    mlp_forward(ops_, qs_, params, in, rows, q_inf_, out, Dropout{});
    return;
  }
  mlp_forward(ops_, qs_, params, in, rows, q_inf_, nullptr, Dropout{});
  ops_.two_hot_inv_forward(inf_qval_, q_inf_.out.back(), Qn_ * rows, cfg_.bins());
  ops_.pair_select_forward(out, inf_qval_, Qn_, rows,
                           mode == QMode::min ? PairMode::min : PairMode::avg, seed, offset);
}

// ---- update ------------------------------------------------------------------------------------

void WorldModel::zero_grads() {
  ops_.fill(grads_model_, static_cast<int64_t>(n_model_), 0.0f);
  ops_.fill(grads_pi_, static_cast<int64_t>(n_pi_), 0.0f);
  if (n_prior_) ops_.fill(grads_prior_, static_cast<int64_t>(n_prior_), 0.0f);
  ops_.fill(grad_block_, static_cast<int64_t>(grad_block_floats_), 0.0f);
}

void WorldModel::td_target(const Batch& batch) {
  NvtxRange range("update/td_target");
  if (cfg_.critic == Critic::v) {
    td_target_v(batch);
    return;
  }
  const int RH = H_ * B_;
  const size_t BO = static_cast<size_t>(B_) * O_;
  const float* next_z = next_z_;
  mlp_forward(ops_, encoder_, params_model_, batch.obs + BO, RH, enc_td_acts_, next_z_, Dropout{});
  mlp_forward(ops_, pi_, params_pi_, next_z, RH, pi_td_acts_, raw_td_, Dropout{});
  ops_.policy_head_forward(a_td_, nullptr, nullptr, nullptr, nullptr, raw_td_, RH, A_,
                           cfg_.policy_head(), cfg_.seed, update_offset(updates_, kTdNoise));
  ops_.concat_forward(tq_in_, next_z, a_td_, RH, Z_, A_);
  mlp_forward(ops_, qs_, params_target_, tq_in_, RH, tq_acts_, tq_logits_, Dropout{});
  ops_.two_hot_inv_forward(tq_val_, tq_logits_, Qn_ * RH, cfg_.bins());
  ops_.pair_select_forward(qmin_, tq_val_, Qn_, RH, PairMode::min, cfg_.seed,
                           update_offset(updates_, kTdPair));
  if (cfg_.kl_critic) {
    // PO-MPC: min2 -= lambda (log pi(a') - log pi_psi(a')), pi_psi as the last update left it.
    mlp_forward(ops_, prior_, params_prior_, next_z, RH, psi_td_acts_, raw_psi_td_, Dropout{});
    ops_.policy_log_ratio(log_ratio_td_, raw_td_, raw_psi_td_, RH, A_, cfg_.policy_head(),
                          cfg_.seed, update_offset(updates_, kTdNoise));
    ops_.scale_add(qmin_, log_ratio_td_, RH, -cfg_.kl_lambda(), nullptr, 1.0f);
  }
  ops_.scale_add(td_, batch.reward, RH, 1.0f, nullptr, 0.0f);    // td = reward
  ops_.scale_add(td_, qmin_, RH, cfg_.discount, nullptr, 1.0f);  // td += gamma min2
}

// BMPC's _td_target_V with td_horizon 1: z_t = encoder(obs[t]), a ~ pi(z_t),
// td_t = two_hot_inv(reward(z_t, a)) + gamma avg2(target Vs(dynamics(z_t, a))), t = 0..H-1.
void WorldModel::td_target_v(const Batch& batch) {
  const int RH = H_ * B_, RH1 = (H_ + 1) * B_;
  const size_t dyn_off = n_encoder_, rew_off = n_encoder_ + dynamics_.param_count();
  mlp_forward(ops_, encoder_, params_model_, batch.obs, RH1, enc_td_acts_, true_z_, Dropout{});
  const float* z = true_z_;  // z_0..z_{H-1}
  mlp_forward(ops_, pi_, params_pi_, z, RH, pi_td_acts_, raw_td_, Dropout{});
  ops_.policy_head_forward(a_td_, nullptr, nullptr, nullptr, nullptr, raw_td_, RH, A_,
                           cfg_.policy_head(), cfg_.seed, update_offset(updates_, kTdNoise));
  ops_.concat_forward(tq_in_, z, a_td_, RH, Z_, A_);
  mlp_forward(ops_, reward_, params_model_ + rew_off, tq_in_, RH, rew_td_acts_, nullptr,
              Dropout{});
  ops_.two_hot_inv_forward(rhat_, rew_td_acts_.out.back(), RH, cfg_.bins());
  mlp_forward(ops_, dynamics_, params_model_ + dyn_off, tq_in_, RH, dyn_td_acts_, zn_td_,
              Dropout{});
  mlp_forward(ops_, qs_, params_target_, zn_td_, RH, tq_acts_, tq_logits_, Dropout{});
  ops_.two_hot_inv_forward(tq_val_, tq_logits_, Qn_ * RH, cfg_.bins());
  ops_.pair_select_forward(qmin_, tq_val_, Qn_, RH, PairMode::avg, cfg_.seed,
                           update_offset(updates_, kTdPair));
  ops_.scale_add(td_, rhat_, RH, 1.0f, nullptr, 0.0f);           // td = rhat
  ops_.scale_add(td_, qmin_, RH, cfg_.discount, nullptr, 1.0f);  // td += gamma avg2 V
}

void WorldModel::model_forward(const Batch& batch, UpdateStats* stats, bool dropout) {
  NvtxRange range("update/model_forward");
  const int RH = H_ * B_, ZA = Z_ + A_;
  const size_t BZ = static_cast<size_t>(B_) * Z_, BZA = static_cast<size_t>(B_) * ZA,
               BA = static_cast<size_t>(B_) * A_;
  const size_t dyn_off = n_encoder_, rew_off = n_encoder_ + dynamics_.param_count();
  const float* next_z = next_z_;
  mlp_forward(ops_, encoder_, params_model_, batch.obs, B_, enc_acts_, zs_, Dropout{});  // z[0]
  for (int t = 0; t < H_; ++t) {
    float* in = dyn_in_ + t * BZA;
    ops_.concat_forward(in, zs_ + t * BZ, batch.action + t * BA, B_, Z_, A_);
    mlp_forward(ops_, dynamics_, params_model_ + dyn_off, in, B_, dyn_acts_[t], zs_ + (t + 1) * BZ,
                Dropout{});
    ops_.mse_forward(cons_t_ + t, zs_ + (t + 1) * BZ, next_z + t * BZ, static_cast<int64_t>(BZ));
  }
  mlp_forward(ops_, reward_, params_model_ + rew_off, dyn_in_, RH, rew_acts_, rlogits_, Dropout{});
  ops_.soft_ce_forward(ce_r_, rlogits_, batch.reward, RH, cfg_.bins());
  const float* critic_in = cfg_.critic == Critic::q ? dyn_in_ : zs_;  // [z, a] or z[0..H-1]
  mlp_forward(ops_, qs_, params_model_ + q_offset_, critic_in, RH, q_acts_, qlogits_,
              q_dropout(dropout, kValueDropout));
  for (int q = 0; q < Qn_; ++q)
    ops_.soft_ce_forward(ce_v_ + static_cast<size_t>(q) * RH,
                         qlogits_ + static_cast<size_t>(q) * RH * K_, td_, RH, cfg_.bins());
  ops_.weighted_sum(&stats->consistency_loss, cons_t_, w_cons_, H_, 1.0f, nullptr, 0.0f);
  ops_.weighted_sum(&stats->reward_loss, ce_r_, w_rew_, RH, 1.0f, nullptr, 0.0f);
  ops_.weighted_sum(&stats->value_loss, ce_v_, w_val_, static_cast<int64_t>(Qn_) * RH, 1.0f,
                    nullptr, 0.0f);
  ops_.weighted_sum(&stats->total_loss, &stats->consistency_loss, coef3_, 3, 1.0f, nullptr, 0.0f);
}

void WorldModel::model_backward(const Batch& batch, bool dropout) {
  NvtxRange range("update/model_backward");
  const int RH = H_ * B_, ZA = Z_ + A_;
  const size_t BZ = static_cast<size_t>(B_) * Z_, BZA = static_cast<size_t>(B_) * ZA;
  const size_t dyn_off = n_encoder_, rew_off = n_encoder_ + dynamics_.param_count();
  const float* next_z = next_z_;
  // Heads: soft_ce -> logits -> reward / Q MLPs -> [z, a] of steps 0..H-1.
  ops_.soft_ce_backward(d_rlogits_, g_rew_, rlogits_, batch.reward, RH, cfg_.bins());
  for (int q = 0; q < Qn_; ++q)
    ops_.soft_ce_backward(d_qlogits_ + static_cast<size_t>(q) * RH * K_, g_val_,
                          qlogits_ + static_cast<size_t>(q) * RH * K_, td_, RH, cfg_.bins());
  mlp_backward(ops_, reward_, params_model_ + rew_off, grads_model_ + rew_off, dyn_in_, RH,
               rew_acts_, d_rlogits_, rew_g_, d_rq_in_, Dropout{});
  if (cfg_.critic == Critic::q)
    mlp_backward(ops_, qs_, params_model_ + q_offset_, grads_model_ + q_offset_, dyn_in_, RH,
                 q_acts_, d_qlogits_, q_g_, d_rq_in_, q_dropout(dropout, kValueDropout));
  else  // V heads read z[0..H-1] directly: their input gradient lands in dz[0..H-1]
    mlp_backward(ops_, qs_, params_model_ + q_offset_, grads_model_ + q_offset_, zs_, RH, q_acts_,
                 d_qlogits_, q_g_, dzs_, q_dropout(dropout, kValueDropout));
  ops_.concat_backward(dzs_, nullptr, d_rq_in_, RH, Z_, A_);  // actions get no gradient
  // Consistency: d z[t+1] += consistency_coef rho^t / H * 2 (z[t+1] - next_z[t]) / (B Z).
  for (int t = 0; t < H_; ++t) {
    const float dloss =
        static_cast<float>(cfg_.consistency_coef * std::pow(static_cast<double>(cfg_.rho), t) / H_);
    ops_.mse_backward(dzs_ + (t + 1) * BZ, zs_ + (t + 1) * BZ, next_z + t * BZ, dloss,
                      static_cast<int64_t>(BZ));
  }
  // Latent rollout backwards: dz[t+1] is complete before dynamics step t propagates it to z[t].
  for (int t = H_ - 1; t >= 0; --t) {
    mlp_backward(ops_, dynamics_, params_model_ + dyn_off, grads_model_ + dyn_off,
                 dyn_in_ + t * BZA, B_, dyn_acts_[t], dzs_ + (t + 1) * BZ, dyn_g_[t],
                 d_dyn_in_ + t * BZA, Dropout{});
    ops_.concat_backward(dzs_ + t * BZ, nullptr, d_dyn_in_ + t * BZA, B_, Z_, A_);
  }
  // z[0] = encoder(obs[0]).
  mlp_backward(ops_, encoder_, params_model_, grads_model_, batch.obs, B_, enc_acts_, dzs_, enc_g_,
               nullptr, Dropout{});
}

void WorldModel::model_step(UpdateStats* stats) {
  NvtxRange range("update/model_step");
  ops_.clip_grad_norm(grads_model_, n_model_, cfg_.grad_clip_norm, &stats->grad_norm);
  ops_.adam_update(AdamSettings{}, groups_model_, params_model_, grads_model_, m_model_, v_model_,
                   adam_model_);
}

void WorldModel::target_update() {
  ops_.polyak(params_target_, params_model_ + q_offset_, n_q_, cfg_.tau);
}

void WorldModel::update(const Batch& batch, UpdateStats* stats, bool policy) {
  NvtxRange range("update");
  POMPC_REQUIRE(batch.obs && batch.action && batch.reward && stats,
                "update: batch.obs, batch.action, batch.reward and stats must all be set");
  POMPC_REQUIRE(cfg_.prior == Prior::none || (batch.mu_p && batch.sigma_p),
                "update: prior=%s needs the batch's planner targets (batch.mu_p, batch.sigma_p)",
                cfg_.prior == Prior::planner ? "planner"
                : cfg_.prior == Prior::learned ? "learned"
                                               : "intermediate");
  zero_grads();
  td_target(batch);
  {
    NvtxRange model("update/model");
    model_forward(batch, stats);
    model_backward(batch);
    model_step(stats);
  }
  if (policy) {
    NvtxRange pi("update/pi");
    if (cfg_.prior == Prior::learned) {
      prior_fit_forward(batch, stats);
      prior_fit_backward(batch);
      prior_fit_step(stats);
    }
    pi_forward(batch, stats);
    pi_backward(batch);
    pi_step(stats);
  }
  target_update();
  ++updates_;
}

}  // namespace pompc::model
