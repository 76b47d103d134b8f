// The agent: acting through the planner, updating the world model, lazy reanalysis (see agent.h).
#include "agent/agent.h"

#include <algorithm>

#include "common.h"
#include "nvtx.h"

namespace pompc::agent {

Agent::Agent(Ops& ops, const model::ModelConfig& model_cfg, const PlannerSettings& planner_cfg,
             const AgentSettings& settings)
    : ops_(ops),
      O_(model_cfg.obs_dim),
      A_(model_cfg.action_dim),
      B_(model_cfg.batch_size),
      H_(model_cfg.horizon),
      settings_(settings),
      prior_(model_cfg.prior != model::Prior::none),
      seed_(model_cfg.seed) {
  POMPC_REQUIRE(settings.max_states >= 1, "agent: max_states (%d) must be >= 1",
                settings.max_states);
  POMPC_REQUIRE(settings.reanalyze_interval >= 0, "reanalyze_interval (%d) must be >= 0",
                settings.reanalyze_interval);
  POMPC_REQUIRE(settings.reanalyze_interval == 0 || settings.reanalyze_batch >= 1,
                "reanalyze_batch (%d) must be >= 1 (or reanalyze_interval=0)",
                settings.reanalyze_batch);
  POMPC_REQUIRE(settings.reanalyze_interval == 0 || prior_,
                "reanalyze_interval=%d re-plans planner targets that prior=none never reads: set "
                "reanalyze_interval=0 or choose a prior",
                settings.reanalyze_interval);
  POMPC_REQUIRE(planner_cfg.horizon == model_cfg.horizon,
                "agent: the planner's horizon (%d) must equal the model's horizon (%d)",
                planner_cfg.horizon, model_cfg.horizon);
  planner_cfg.validate();
  const int re_states =
      settings.reanalyze_interval > 0 ? H_ * std::min(settings.reanalyze_batch, B_) : 0;
  const int states = std::max(settings.max_states, re_states);
  const int rows = states * planner_cfg.num_samples;
  wm_ = std::make_unique<model::WorldModel>(ops, model_cfg, rows);
  latent_ = std::make_unique<WorldModelLatent>(*wm_, rows);
  planner_ = std::make_unique<Planner>(ops, *latent_, planner_cfg, states);
  batch_obs_ = ops.alloc<float>(size_t(H_ + 1) * B_ * O_);
  batch_action_ = ops.alloc<float>(size_t(H_) * B_ * A_);
  batch_reward_ = ops.alloc<float>(size_t(H_) * B_);
  if (prior_) {
    batch_mu_ = ops.alloc<float>(size_t(H_) * B_ * A_);
    batch_sigma_ = ops.alloc<float>(size_t(H_) * B_ * A_);
  }
  stats_ = ops.alloc<model::UpdateStats>(1);
}

Agent::~Agent() {
  planner_.reset();
  latent_.reset();
  wm_.reset();
  for (void* p : {static_cast<void*>(batch_obs_), static_cast<void*>(batch_action_),
                  static_cast<void*>(batch_reward_), static_cast<void*>(batch_mu_),
                  static_cast<void*>(batch_sigma_), static_cast<void*>(stats_)})
    if (p) ops_.free_bytes(p);
}

void Agent::act(const float* obs, const uint8_t* first, int S, bool explore, uint64_t seed,
                uint64_t step, float* action, float* mu_p, float* sigma_p) {
  POMPC_REQUIRE(S >= 1 && S <= settings_.max_states, "agent: act for %d states, built for 1..%d",
                S, settings_.max_states);
  ops_.copy_to_backend(planner_->obs_buffer(), obs, size_t(S) * O_ * sizeof(float));
  ops_.copy_to_backend(planner_->first_buffer(), first, size_t(S));
  planner_->plan(S, explore, /*warm=*/true, seed, step);
  const size_t bytes = size_t(S) * A_ * sizeof(float);
  if (action) ops_.copy_to_host(action, planner_->action(), bytes);
  if (mu_p) ops_.copy_to_host(mu_p, planner_->mu_p(), bytes);
  if (sigma_p) ops_.copy_to_host(sigma_p, planner_->sigma_p(), bytes);
}

void Agent::reanalyze(const replay::SliceBatch& b, int n, uint64_t seed) {
  NvtxRange range("reanalyze");
  const size_t O = size_t(O_), A = size_t(A_), B = size_t(B_), N = size_t(n);
  // States t-major: state t n + j is obs[t, j] (BMPC's obs[:-1, :n] flattened).
  for (int t = 0; t < H_; ++t)
    ops_.copy_to_backend(planner_->obs_buffer() + size_t(t) * N * O, b.obs + size_t(t) * B * O,
                         N * O * sizeof(float));
  wm_->set_explore_head(true);
  planner_->plan(H_ * n, /*explore=*/false, /*warm=*/false, seed, kReanalyzeStep + reanalyses_);
  wm_->set_explore_head(false);
  // The new targets straight into the batch's rows (t, b < n).
  for (int t = 0; t < H_; ++t) {
    const size_t row = size_t(t) * B * A, state = size_t(t) * N * A, bytes = N * A * sizeof(float);
    ops_.copy_to_host(b.mu + row, planner_->mu_p() + state, bytes);
    ops_.copy_to_host(b.sigma + row, planner_->sigma_p() + state, bytes);
  }
  ++reanalyses_;
}

int Agent::update(const replay::SliceBatch& b, bool burst) {
  POMPC_REQUIRE(b.batch == B_, "agent: update on a batch of %d slices, the model's batch_size is %d",
                b.batch, B_);
  POMPC_REQUIRE(!prior_ || (b.mu && b.sigma),
                "agent: this objective reads planner targets: sample the batch with mu and sigma");
  int reanalysed = 0;
  if (!burst) {
    ++policy_updates_;
    const int interval = settings_.reanalyze_interval;
    if (interval > 0 && policy_updates_ % uint64_t(interval) == 0) {
      reanalysed = std::min(settings_.reanalyze_batch, B_);
      reanalyze(b, reanalysed, seed_);
    }
  }
  const size_t HBA = size_t(H_) * B_ * A_;
  ops_.copy_to_backend(batch_obs_, b.obs, size_t(H_ + 1) * B_ * O_ * sizeof(float));
  ops_.copy_to_backend(batch_action_, b.action, HBA * sizeof(float));
  ops_.copy_to_backend(batch_reward_, b.reward, size_t(H_) * B_ * sizeof(float));
  model::Batch mb;
  mb.obs = batch_obs_;
  mb.action = batch_action_;
  mb.reward = batch_reward_;
  if (prior_) {
    ops_.copy_to_backend(batch_mu_, b.mu, HBA * sizeof(float));
    ops_.copy_to_backend(batch_sigma_, b.sigma, HBA * sizeof(float));
    mb.mu_p = batch_mu_;
    mb.sigma_p = batch_sigma_;
  }
  wm_->update(mb, stats_, /*policy=*/!burst || settings_.pretrain_policy);
  return reanalysed;
}

model::UpdateStats Agent::read_stats() {
  model::UpdateStats s{};
  ops_.copy_to_host(&s, stats_, sizeof(s));
  return s;
}

}  // namespace pompc::agent
