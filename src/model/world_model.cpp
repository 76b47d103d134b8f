// src/model/world_model.cpp: the TD-MPC2 world model's layout, buffers, initialisation and
// inference. The update step: world_model_update.cpp. Run book (maths, shapes, Philox
// convention): world_model.h.
#include "model/world_model.h"

#include <algorithm>
#include <cmath>

#include "common.h"
#include "nvtx.h"
#include "philox.cuh"

namespace pompc::model {
namespace {

constexpr uint64_t kInitOffset = uint64_t{1} << 62;    // + tensor index: initial weights
constexpr float kTruncStd = 0.02f;                     // trunc_normal_(std=0.02)
constexpr float kTruncBound = 2.0f;                    // its default a = -2, b = 2 (absolute)

// Offsets of each layer's tensors relative to the module's start, each tensor starting on a
// kTensorAlign boundary (a module's span is a multiple of it too); returns the module.
Mlp make_mlp(const std::string& name, int groups, std::vector<Layer> layers) {
  size_t at = 0;
  auto place = [&at](size_t floats) {
    const size_t offset = at;
    at = (at + floats + kTensorAlign - 1) / kTensorAlign * kTensorAlign;
    return offset;
  };
  for (Layer& l : layers) {
    const size_t g = static_cast<size_t>(groups);
    l.weight = place(g * l.out * l.in);
    l.bias = place(g * l.out);
    if (l.act != Act::linear) {
      l.gamma = place(g * l.out);
      l.beta = place(g * l.out);
    }
  }
  Mlp m;
  m.name = name;
  m.groups = groups;
  m.layers = std::move(layers);
  m.floats = at;
  return m;
}

// `l` with its weight offset moved by `weight_by` floats and its vectors' (bias, gamma, beta) by
// `vector_by`.
Layer moved(Layer l, size_t weight_by, size_t vector_by) {
  l.weight += weight_by;
  l.bias += vector_by;
  if (l.act != Act::linear) {
    l.gamma += vector_by;
    l.beta += vector_by;
  }
  return l;
}

// `m` with every offset moved by `by` floats (a module placed after another in one region).
Mlp shifted(Mlp m, size_t by) {
  for (Layer& l : m.layers) l = moved(l, by, by);
  return m;
}

// Head q of an ensemble's layer as a single-head layer (its slice of each stacked tensor).
Layer head_of(const Layer& l, int q) {
  const size_t per_out = static_cast<size_t>(q) * l.out;
  return moved(l, per_out * l.in, per_out);
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
  // Dynamics and reward: the same first two layers' shapes on the same input [z, a], so their
  // parameters are stacked as a two-head ensemble, the trunk (head 0 dynamics, head 1 reward),
  // which rollout_terms runs once for both; then the dynamics' last layer, then the reward's. Each
  // module's layers point into that region (offsets from dr_offset_).
  trunk_ = make_mlp("_dynamics|_reward", 2, {layer(ZA, M, Act::mish), layer(M, M, Act::mish)});
  dynamics_tail_ = shifted(make_mlp("_dynamics", 1, {layer(M, Z_, Act::simnorm)}), trunk_.floats);
  reward_tail_ = shifted(make_mlp("_reward", 1, {layer(M, K_, Act::linear)}),
                         trunk_.floats + dynamics_tail_.floats);
  dynamics_ =
      Mlp{"_dynamics",
          1,
          {head_of(trunk_.layers[0], 0), head_of(trunk_.layers[1], 0), dynamics_tail_.layers[0]},
          0};
  reward_ =
      Mlp{"_reward",
          1,
          {head_of(trunk_.layers[0], 1), head_of(trunk_.layers[1], 1), reward_tail_.layers[0]},
          0};
  pi_ = make_mlp("_pi", 1,
                 {layer(Z_, M, Act::mish), layer(M, M, Act::mish), layer(M, 2 * A_, Act::linear)});
  qs_ = make_mlp(
      "_Qs.params", Qn_,
      {layer(critic_in_, M, Act::mish, true), layer(M, M, Act::mish), layer(M, K_, Act::linear)});
  pair_ = make_mlp("_Qs.pair", 2, qs_.layers);
  pair_gather_ = PairGather{};
  pair_gather_.Qn = Qn_;
  auto gather = [this](size_t src, size_t dst, int64_t per_head) {
    POMPC_REQUIRE(pair_gather_.tensors < PairGather::kMaxTensors,
                  "the Q heads have more than %d tensors (raise PairGather::kMaxTensors)",
                  PairGather::kMaxTensors);
    const int k = pair_gather_.tensors++;
    pair_gather_.src[k] = static_cast<int64_t>(src);
    pair_gather_.dst[k] = static_cast<int64_t>(dst);
    pair_gather_.per_head[k] = per_head;
  };
  for (size_t l = 0; l < qs_.layers.size(); ++l) {  // every tensor of each layer, head by head
    const Layer &from = qs_.layers[l], &to = pair_.layers[l];
    gather(from.weight, to.weight, static_cast<int64_t>(from.out) * from.in);
    gather(from.bias, to.bias, from.out);
    if (from.act != Act::linear) {
      gather(from.gamma, to.gamma, from.out);
      gather(from.beta, to.beta, from.out);
    }
  }
  const bool learned = cfg_.prior == Prior::learned;
  if (learned)
    prior_ = make_mlp("_pi_prior", 1,
                      {layer(Z_, M, Act::mish), layer(M, M, Act::mish),
                       layer(M, 2 * A_, Act::linear)});

  n_encoder_ = encoder_.floats;
  dr_offset_ = n_encoder_;
  q_offset_ = dr_offset_ + trunk_.floats + dynamics_tail_.floats + reward_tail_.floats;
  n_q_ = qs_.floats;
  model_set_.n = q_offset_ + n_q_;
  pi_set_.n = pi_.floats;
  prior_set_.n = learned ? prior_.floats : 0;

  tensors_.clear();
  add_tensors(&tensors_, encoder_, "_encoder.state", ParamSet::model, 0);
  add_tensors(&tensors_, dynamics_, "_dynamics", ParamSet::model, dr_offset_);
  add_tensors(&tensors_, reward_, "_reward", ParamSet::model, dr_offset_);
  add_tensors(&tensors_, qs_, "_Qs.params", ParamSet::model, q_offset_);
  add_tensors(&tensors_, pi_, "_pi", ParamSet::pi, 0);
  add_tensors(&tensors_, qs_, "_target_Qs_params", ParamSet::target_q, 0);
  if (learned) add_tensors(&tensors_, prior_, "_pi_prior", ParamSet::prior, 0);

  model_set_.groups = AdamGroups{};
  model_set_.groups.add(n_encoder_, cfg_.lr * cfg_.enc_lr_scale);
  model_set_.groups.add(model_set_.n - n_encoder_, cfg_.lr);
  pi_set_.groups = AdamGroups{};
  pi_set_.groups.add(pi_set_.n, cfg_.lr);
  prior_set_.groups = AdamGroups{};
  if (learned) prior_set_.groups.add(prior_set_.n, cfg_.lr);
}

// Three blocks: persistent state and constants, forward activations (update and inference), and
// the parameter and activation gradients (one block, so that zero_grads() clears it with one
// fill). Sizes per step: the buffer structs in world_model.h.
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

  // Persistent state and the loss weights.
  Arena state;
  for (Trained* t : {&model_set_, &pi_set_, &prior_set_}) {
    if (!t->n) continue;
    state.add(&t->params, t->n);
    state.add(&t->m, t->n);
    state.add(&t->v, t->n);
  }
  state.add(&target_qs_, n_q_);
  state.add(&q_scale_, 1);
  state.add(&d_scale_, 1);
  ModelLossBuffers& ml = model_loss_;
  state.add(&ml.w_consistency, static_cast<size_t>(H_));
  state.add(&ml.w_reward, RH);
  state.add(&ml.g_reward, RH);
  state.add(&ml.w_value, Qn * RH);
  state.add(&ml.g_value, RH);
  state.add(&ml.coefs, 3);
  state.add(&pi_loss_.w, RH1);
  state.add(&pi_loss_.g_log_pi, RH1);
  if (learned) state.add(&prior_fit_.w, RH);
  allocated_bytes_ += state.floats() * sizeof(float) + 3 * sizeof(AdamScalars);
  blocks_.push_back(state.allocate(ops_));
  for (Trained* t : {&model_set_, &pi_set_, &prior_set_}) {
    t->adam = ops_.alloc<AdamScalars>(1);
    blocks_.push_back(t->adam);
  }
  offset_base_ = ops_.alloc<uint64_t>(1);
  blocks_.push_back(offset_base_);
  allocated_bytes_ += sizeof(uint64_t);

  // Forward activations, then (grads) the activation gradients, step by step.
  Arena acts, grads;
  // The parameter gradients first, then the activation gradients: one block, one fill.
  for (Trained* t : {&model_set_, &pi_set_, &prior_set_})
    if (t->n) grads.add(&t->grads, t->n);
  constexpr size_t P = 2;  // the critic heads a min2 / avg2 runs (CriticPair)
  auto reserve_pair = [&](CriticPair* p) {
    acts.add(&p->params, pair_.floats);
    p->heads = ops_.alloc<int32_t>(2);
    blocks_.push_back(p->heads);
    allocated_bytes_ += 2 * sizeof(int32_t);
  };
  TdTargetBuffers& td = td_target_;
  reserve_acts(acts, encoder_, iRH1, false, &td.encoder);
  reserve_acts(acts, pi_, iRH, false, &td.pi);
  reserve_acts(acts, pair_, iRH, false, &td.target_qs);
  reserve_pair(&td.pair);
  acts.add(&td.z, RH1 * Z);
  acts.add(&td.pi_raw, RH * 2 * A);
  acts.add(&td.a, RH * A);
  acts.add(&td.za, RH * ZA);
  acts.add(&td.q_logits, P * RH * K);
  acts.add(&td.q_pair, RH);
  acts.add(&td.td, RH);
  if (v_critic) {
    reserve_acts(acts, reward_, iRH, false, &td.reward);
    reserve_acts(acts, dynamics_, iRH, false, &td.dynamics);
    acts.add(&td.rhat, RH);
    acts.add(&td.z_next, RH * Z);
  }
  if (cfg_.kl_critic) {
    reserve_acts(acts, prior_, iRH, false, &td.prior);
    acts.add(&td.prior_raw, RH * 2 * A);
    acts.add(&td.log_ratio, RH);
  }

  RolloutBuffers& ro = rollout_;
  reserve_acts(acts, encoder_, iB, true, &ro.encoder);
  ro.dynamics.resize(static_cast<size_t>(H_));
  for (MlpActs& a : ro.dynamics) reserve_acts(acts, dynamics_, iB, true, &a);
  acts.add(&ro.z, RH1 * Z);
  acts.add(&ro.za, RH * ZA);
  reserve_grads(grads, encoder_, iB, &ro.d_encoder);
  ro.d_dynamics.resize(static_cast<size_t>(H_));
  for (MlpGrads& g : ro.d_dynamics) reserve_grads(grads, dynamics_, iB, &g);
  grads.add(&ro.dz, RH1 * Z);
  grads.add(&ro.d_za, RH * ZA);

  reserve_acts(acts, reward_, iRH, true, &ml.reward);
  reserve_acts(acts, qs_, iRH, true, &ml.qs);
  acts.add(&ml.consistency, static_cast<size_t>(H_));
  acts.add(&ml.reward_logits, RH * K);
  acts.add(&ml.reward_ce, RH);
  acts.add(&ml.q_logits, Qn * RH * K);
  acts.add(&ml.value_ce, Qn * RH);
  reserve_grads(grads, reward_, iRH, &ml.d_reward);
  reserve_grads(grads, qs_, iRH, &ml.d_qs);
  grads.add(&ml.d_reward_logits, RH * K);
  grads.add(&ml.d_q_logits, Qn * RH * K);
  grads.add(&ml.d_heads_in, RH * ZA);

  if (learned) {
    PriorFitBuffers& pf = prior_fit_;
    reserve_acts(acts, prior_, iRH1, true, &pf.prior);
    acts.add(&pf.raw, RH1 * 2 * A);
    acts.add(&pf.a, RH1 * A);
    acts.add(&pf.mu, RH1 * A);
    acts.add(&pf.log_std, RH1 * A);
    acts.add(&pf.sigma, RH1 * A);
    acts.add(&pf.div, RH);
    reserve_grads(grads, prior_, iRH, &pf.d_prior);  // the fit's rows (planner targets: t < H)
    grads.add(&pf.d_div, RH);
    grads.add(&pf.d_mu, RH * A);
    grads.add(&pf.d_log_std, RH * A);
    grads.add(&pf.d_raw, RH * 2 * A);
  }
  if (intermediate) {
    IntermediateBuffers& im = intermediate_;
    reserve_acts(acts, pair_, static_cast<int>(S) * iRH, false, &im.qs);
    reserve_pair(&im.pair);
    acts.add(&im.a, S * RH * A);
    acts.add(&im.za, S * RH * ZA);
    acts.add(&im.q_logits, P * S * RH * K);
    acts.add(&im.qbar, S * RH);
    acts.add(&im.w, S * RH);
    acts.add(&im.log_z, RH);
  }

  PiLossBuffers& pl = pi_loss_;
  reserve_acts(acts, pi_, iRH1, true, &pl.pi);
  reserve_acts(acts, pair_, iRH1, true, &pl.qs);
  reserve_pair(&pl.pair);
  acts.add(&pl.raw, RH1 * 2 * A);
  acts.add(&pl.a, RH1 * A);
  acts.add(&pl.log_pi, RH1);
  acts.add(&pl.mu, RH1 * A);
  acts.add(&pl.log_std, RH1 * A);
  acts.add(&pl.za, RH1 * ZA);
  acts.add(&pl.q_logits, P * RH1 * K);
  acts.add(&pl.q, P * RH1);
  acts.add(&pl.qbar, RH1);
  acts.add(&pl.div, RH1);
  acts.add(&pl.gate, 1);
  reserve_grads(grads, pi_, iRH1, &pl.d_pi);
  reserve_grads(grads, pair_, iRH1, &pl.d_qs);
  grads.add(&pl.d_qbar, RH1);
  grads.add(&pl.d_q, P * RH1);
  grads.add(&pl.d_q_logits, P * RH1 * K);
  grads.add(&pl.d_za, RH1 * ZA);
  grads.add(&pl.d_a, RH1 * A);
  grads.add(&pl.d_raw, RH1 * 2 * A);
  grads.add(&pl.d_mu, RH1 * A);
  grads.add(&pl.d_log_std, RH1 * A);
  grads.add(&pl.d_div, RH1);

  InferenceBuffers& inf = infer_;
  reserve_acts(acts, encoder_, max_rows_, false, &inf.encoder);
  reserve_acts(acts, dynamics_, max_rows_, false, &inf.dynamics);
  reserve_acts(acts, reward_, max_rows_, false, &inf.reward);
  reserve_acts(acts, pi_, max_rows_, false, &inf.pi);
  reserve_acts(acts, qs_, max_rows_, false, &inf.qs);
  reserve_acts(acts, pair_, max_rows_, false, &inf.pair_qs);
  reserve_acts(acts, trunk_, max_rows_, false, &inf.trunk);
  reserve_pair(&inf.pair);
  acts.add(&inf.za, R * ZA);

  allocated_bytes_ += acts.floats() * sizeof(float);
  blocks_.push_back(acts.allocate(ops_));
  // The tails reuse the last layer's buffers of the whole modules' (next(), reward()).
  auto last_layer = [](const MlpActs& whole) {
    MlpActs a;
    a.rows = whole.rows;
    a.pre = {whole.pre.back()};
    a.mean = {whole.mean.back()};
    a.rstd = {whole.rstd.back()};
    a.out = {whole.out.back()};
    return a;
  };
  inf.dynamics_tail = last_layer(inf.dynamics);
  td.next_z = td.z + static_cast<size_t>(B_) * Z_;
  grad_block_floats_ = grads.floats();
  allocated_bytes_ += grad_block_floats_ * sizeof(float);
  grad_block_ = grads.allocate(ops_);
  blocks_.push_back(grad_block_);

  model_loss_weights();
  pi_loss_weights();
}

void WorldModel::init() {
  std::vector<float> model(model_set_.n, 0.0f), pi(pi_set_.n, 0.0f), prior(prior_set_.n, 0.0f);
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
  ops_.copy_to_backend(model_set_.params, model.data(), model_set_.n * sizeof(float));
  ops_.copy_to_backend(pi_set_.params, pi.data(), pi_set_.n * sizeof(float));
  ops_.copy_to_backend(target_qs_, model.data() + q_offset_, n_q_ * sizeof(float));
  if (prior_set_.n)
    ops_.copy_to_backend(prior_set_.params, prior.data(), prior_set_.n * sizeof(float));
  const AdamScalars zero{};
  for (Trained* t : {&model_set_, &pi_set_, &prior_set_}) {
    for (float* p : {t->grads, t->m, t->v})
      if (t->n) ops_.fill(p, static_cast<int64_t>(t->n), 0.0f);
    ops_.copy_to_backend(t->adam, &zero, sizeof zero);
  }
  ops_.fill(q_scale_, 1, 1.0f);
  ops_.fill(d_scale_, 1, 1.0f);
  set_updates(0);
}

WorldModel::Trained& WorldModel::trained(ParamSet set) {
  POMPC_REQUIRE(set != ParamSet::target_q, "the target Qs have no gradients or optimizer");
  return set == ParamSet::model ? model_set_ : set == ParamSet::pi ? pi_set_ : prior_set_;
}

float* WorldModel::params(ParamSet set) {
  return set == ParamSet::target_q ? target_qs_ : trained(set).params;
}

size_t WorldModel::param_floats(ParamSet set) const {
  switch (set) {
    case ParamSet::model:
      return model_set_.n;
    case ParamSet::pi:
      return pi_set_.n;
    case ParamSet::prior:
      return prior_set_.n;
    default:
      return n_q_;
  }
}

size_t WorldModel::param_count(ParamSet set) const {
  size_t n = 0;
  for (const NamedTensor& t : tensors_)
    if (t.set == set) n += t.numel();
  return n;
}

size_t WorldModel::trainable_param_count() const {
  return param_count(ParamSet::model) + param_count(ParamSet::pi) + param_count(ParamSet::prior);
}

// Packed: each set's tensors in table order (TD-MPC2's module order, not buffer order: the
// dynamics' and reward's first layers are interleaved in the buffer), one after the other.
void WorldModel::pack(ParamSet set, const float* buffer, float* packed) const {
  for (const NamedTensor& t : tensors_)
    if (t.set == set) packed = std::copy_n(buffer + t.offset, t.numel(), packed);
}

void WorldModel::unpack(ParamSet set, const float* packed, float* buffer) const {
  std::fill_n(buffer, param_floats(set), 0.0f);
  for (const NamedTensor& t : tensors_) {
    if (t.set != set) continue;
    std::copy_n(packed, t.numel(), buffer + t.offset);
    packed += t.numel();
  }
}

float* WorldModel::grads(ParamSet set) { return trained(set).grads; }
float* WorldModel::adam_m(ParamSet set) { return trained(set).m; }
float* WorldModel::adam_v(ParamSet set) { return trained(set).v; }
AdamScalars* WorldModel::adam_scalars(ParamSet set) { return trained(set).adam; }

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
  mlp_forward(ops_, encoder_, model_set_.params, obs, rows, infer_.encoder, z, Dropout{});
}

void WorldModel::next(float* z_next, const float* z, const float* a, int rows) {
  check_rows("next", rows, max_rows_);
  ops_.concat_forward(infer_.za, z, a, rows, Z_, A_);
  next_from_za(z_next, rows);
}

void WorldModel::reward(float* r, const float* z, const float* a, int rows) {
  check_rows("reward", rows, max_rows_);
  ops_.concat_forward(infer_.za, z, a, rows, Z_, A_);
  reward_from_za(r, rows);
}

// work: the steps' inputs [H + 1, rows, Z+A] (z_0 and the actions written by the caller; the
// last slot [z_H, pi(z_H)], the Q critic's input), the trunk's last outputs (the current step's
// dynamics rows [rows, M], then every step's reward rows [H, rows, M]), the reward logits
// [H, rows, K], then z_H [rows, Z] alone (the V critic's input).
size_t WorldModel::rollout_work(int H, int rows) const {
  const size_t R = static_cast<size_t>(rows), Hs = static_cast<size_t>(H);
  return R *
         ((Hs + 1) * static_cast<size_t>(Z_ + A_) + (Hs + 1) * static_cast<size_t>(cfg_.mlp_dim) +
          Hs * static_cast<size_t>(K_) + static_cast<size_t>(Z_));
}

// No [z, a] concatenation: the caller wrote z_0 and the actions into the [z, a] rows, and the
// dynamics' last LayerNorm writes z_{t+1} straight into the z columns of the next step's (a
// RowLayout of stride Z + A). Per step the trunk writes its dynamics rows into one slot and its
// reward rows into the step's slot after it (a RowLayout whose group stride is t + 1 slots: the
// reward rows of all steps end up contiguous), then the dynamics' last layer turns the dynamics
// rows into z_{t+1}. After the loop one GEMM and one two_hot_inv give every step's reward, and
// the value: for a Q critic the policy reads z_H out of the last slot's rows and writes its
// action beside it, and the Q pair reads those rows. The same float operations per row as
// reward(), next(), pi() and Q() / V().
void WorldModel::rollout_terms(float* terms, int H, int rows, uint64_t seed, PhiloxOffset offset,
                               float* work) {
  check_rows("rollout_terms", rows, max_rows_);
  POMPC_REQUIRE(H >= 1, "rollout_terms: H (%d) must be >= 1", H);
  const int M = cfg_.mlp_dim, ZA = Z_ + A_;
  const size_t slot = static_cast<size_t>(rows) * M, HR = static_cast<size_t>(H) * rows;
  const size_t za_slot = static_cast<size_t>(rows) * ZA;
  const float* params = model_set_.params + dr_offset_;
  float* const za = work;                            // [H + 1, rows, Z+A]
  float* const h_dynamics = za + (H + 1) * za_slot;  // [rows, M]
  float* const h_reward = h_dynamics + slot;         // [H, rows, M]
  float* const logits = h_reward + H * slot;         // [H, rows, K]
  float* const z_alone = logits + HR * K_;           // [rows, Z]
  const bool q_critic = cfg_.critic == Critic::q;
  for (int t = 0; t < H; ++t) {
    const RowLayout trunk_rows{M, static_cast<int64_t>((t + 1) * slot)};  // reward: slot t
    mlp_forward(ops_, trunk_, params, za + t * za_slot, rows, infer_.trunk, h_dynamics, Dropout{},
                LastBias::add, trunk_rows);
    const bool dense = t + 1 == H && !q_critic;  // z_H for the V critic: its own rows
    mlp_forward(ops_, dynamics_tail_, params, h_dynamics, rows, infer_.dynamics_tail,
                dense ? z_alone : za + (t + 1) * za_slot, Dropout{}, LastBias::add,
                dense ? RowLayout{} : RowLayout{ZA, 0});
  }
  // The reward's last layer (one Linear, its bias left to two_hot_inv) on all H steps' rows.
  const Layer& head = reward_tail_.layers[0];
  ops_.linear_forward(logits, h_reward, params + head.weight, nullptr, static_cast<int>(HR), M, K_);
  ops_.two_hot_inv_forward(terms, logits, last_bias(reward_tail_, params), static_cast<int>(HR),
                           cfg_.bins());
  // The bootstrap value (WorldModelLatent::value's draws: the action at offset, the pair at + 1).
  float* const v = terms + HR;
  if (!q_critic) {
    critic_heads(v, z_alone, rows, QMode::avg, false, seed, offset + 1);
    return;
  }
  float* const za_H = za + H * za_slot;
  pi_rows(za_H + Z_, ZA, za_H, ZA, rows, seed, offset);
  critic_heads(v, za_H, rows, QMode::avg, false, seed, offset + 1);
}

void WorldModel::next_from_za(float* z_next, int rows) {
  mlp_forward(ops_, dynamics_, model_set_.params + dr_offset_, infer_.za, rows, infer_.dynamics,
              z_next, Dropout{});
}

void WorldModel::reward_from_za(float* r, int rows) {
  const float* params = model_set_.params + dr_offset_;
  mlp_forward(ops_, reward_, params, infer_.za, rows, infer_.reward, nullptr, Dropout{},
              LastBias::leave);
  ops_.two_hot_inv_forward(r, infer_.reward.out.back(), last_bias(reward_, params), rows,
                           cfg_.bins());
}

void WorldModel::pi(float* action, float* mu, float* log_std, float* log_pi, const float* z,
                    int rows, uint64_t seed, PhiloxOffset offset) {
  check_rows("pi", rows, max_rows_);
  pi_rows(action, 0, z, 0, rows, seed, offset, mu, log_std, log_pi);
}

void WorldModel::pi_rows(float* action, int64_t action_ld, const float* z, int64_t z_ld, int rows,
                         uint64_t seed, PhiloxOffset offset, float* mu, float* log_std,
                         float* log_pi) {
  mlp_forward(ops_, pi_, pi_set_.params, z, rows, infer_.pi, nullptr, Dropout{}, LastBias::leave,
              RowLayout{}, z_ld);
  ops_.policy_head_forward(action, mu, log_std, log_pi, nullptr, infer_.pi.out.back(),
                           last_bias(pi_, pi_set_.params), rows, A_,
                           cfg_.policy_head(explore_head_), seed, offset, action_ld);
}

void WorldModel::Q(float* out, const float* z, const float* a, int rows, QMode mode, bool target,
                   uint64_t seed, PhiloxOffset offset) {
  check_rows("Q", rows, max_rows_);
  POMPC_REQUIRE(cfg_.critic == Critic::q, "Q: this model has a V critic (critic=v); call V");
  ops_.concat_forward(infer_.za, z, a, rows, Z_, A_);
  critic_heads(out, infer_.za, rows, mode, target, seed, offset);
}

void WorldModel::V(float* out, const float* z, int rows, QMode mode, bool target, uint64_t seed,
                   PhiloxOffset offset) {
  check_rows("V", rows, max_rows_);
  POMPC_REQUIRE(cfg_.critic == Critic::v, "V: this model has a Q critic (critic=q); call Q");
  critic_heads(out, z, rows, mode, target, seed, offset);
}

void WorldModel::gather_critic_pair(const CriticPair& p, const float* ensemble, uint64_t seed,
                                    PhiloxOffset offset) {
  ops_.gather_pair(p.params, p.heads, ensemble, pair_gather_, seed, offset);
}

void WorldModel::critic_heads(float* out, const float* in, int rows, QMode mode, bool target,
                              uint64_t seed, PhiloxOffset offset) {
  const float* params = target ? target_qs_ : model_set_.params + q_offset_;
  if (mode == QMode::all) {
    mlp_forward(ops_, qs_, params, in, rows, infer_.qs, out, Dropout{});
    return;
  }
  // Only the two heads the pair takes run; the pair's min / avg over them (Qn = 2) is the same.
  gather_critic_pair(infer_.pair, params, seed, offset);
  mlp_forward(ops_, pair_, infer_.pair.params, in, rows, infer_.pair_qs, nullptr, Dropout{},
              LastBias::leave);
  ops_.two_hot_inv_pair_forward(out, infer_.pair_qs.out.back(),
                                last_bias(pair_, infer_.pair.params), 2, rows, cfg_.bins(),
                                mode == QMode::min ? PairMode::min : PairMode::avg, seed, offset);
}

}  // namespace pompc::model
