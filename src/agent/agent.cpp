// The agent: acting through the planner, updating the world model, lazy reanalysis (see agent.h).
#include "agent/agent.h"

#include <algorithm>
#include <cstring>

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
  // The batch: one backend block and two host staging slots of the same layout (obs | action |
  // reward | mu | sigma), so that one asynchronous copy uploads it.
  const size_t HBA = size_t(H_) * B_ * A_;
  batch_floats_ = size_t(H_ + 1) * B_ * O_ + HBA + size_t(H_) * B_ + (prior_ ? 2 * HBA : 0);
  batch_dev_ = ops.alloc<float>(batch_floats_);
  for (float*& slot : batch_host_)
    slot = static_cast<float*>(ops.alloc_host(batch_floats_ * sizeof(float)));
  plan_obs_host_ = static_cast<float*>(ops.alloc_host(size_t(states) * O_ * sizeof(float)));
  plan_first_host_ = static_cast<uint8_t*>(ops.alloc_host(size_t(states)));
  plan_step_host_ = static_cast<uint64_t*>(ops.alloc_host(sizeof(uint64_t)));
  plan_out_host_ = static_cast<float*>(ops.alloc_host(3 * size_t(states) * A_ * sizeof(float)));
  stats_ = ops.alloc<model::UpdateStats>(1);
  stats_host_ = static_cast<model::UpdateStats*>(ops.alloc_host(sizeof(model::UpdateStats)));
}

Agent::~Agent() {
  planner_.reset();
  latent_.reset();
  wm_.reset();
  ops_.free_bytes(batch_dev_);
  ops_.free_bytes(stats_);
  for (void* p : {static_cast<void*>(batch_host_[0]), static_cast<void*>(batch_host_[1]),
                  static_cast<void*>(plan_obs_host_), static_cast<void*>(plan_first_host_),
                  static_cast<void*>(plan_step_host_), static_cast<void*>(plan_out_host_),
                  static_cast<void*>(stats_host_)})
    ops_.free_host(p);
}

void Agent::act(const float* obs, const uint8_t* first, int S, bool explore, uint64_t seed,
                uint64_t step, float* action, float* mu_p, float* sigma_p) {
  POMPC_REQUIRE(S >= 1 && S <= settings_.max_states, "agent: act for %d states, built for 1..%d",
                S, settings_.max_states);
  const size_t SA = size_t(S) * A_;
  std::memcpy(plan_obs_host_, obs, size_t(S) * O_ * sizeof(float));
  std::memcpy(plan_first_host_, first, size_t(S));
  ops_.copy_to_backend_async(planner_->obs_buffer(), plan_obs_host_,
                             size_t(S) * O_ * sizeof(float));
  ops_.copy_to_backend_async(planner_->first_buffer(), plan_first_host_, size_t(S));
  stage_plan_step(step);
  planner_->plan_graph(S, explore, /*warm=*/true, seed);
  float* const out[3] = {action, mu_p, sigma_p};
  const float* const from[3] = {planner_->action(), planner_->mu_p(), planner_->sigma_p()};
  for (int i = 0; i < 3; ++i)
    if (out[i]) ops_.copy_to_host_async(plan_out_host_ + i * SA, from[i], SA * sizeof(float));
  synchronize();  // the agent step's one wait: the env needs the action
  for (int i = 0; i < 3; ++i)
    if (out[i]) std::memcpy(out[i], plan_out_host_ + i * SA, SA * sizeof(float));
}

void Agent::stage_plan_step(uint64_t step) {
  *plan_step_host_ = Planner::offset_base(step);
  ops_.copy_to_backend_async(planner_->step_buffer(), plan_step_host_, sizeof(uint64_t));
}

void Agent::synchronize() {
  ops_.synchronize();
  batch_pending_[0] = batch_pending_[1] = false;  // every staged batch has been uploaded
  stats_landed_ = stats_staged_;                  // and staged stats have arrived
}

void Agent::reanalyze(const replay::SliceBatch& b, int n, uint64_t seed) {
  NvtxRange range("reanalyze");
  const size_t O = size_t(O_), A = size_t(A_), B = size_t(B_), N = size_t(n);
  // States t-major: state t n + j is obs[t, j] (BMPC's obs[:-1, :n] flattened).
  for (int t = 0; t < H_; ++t)
    std::memcpy(plan_obs_host_ + size_t(t) * N * O, b.obs + size_t(t) * B * O,
                N * O * sizeof(float));
  ops_.copy_to_backend_async(planner_->obs_buffer(), plan_obs_host_, H_ * N * O * sizeof(float));
  stage_plan_step(kReanalyzeStep + reanalyses_);
  wm_->set_explore_head(true);
  planner_->plan_graph(H_ * n, /*explore=*/false, /*warm=*/false, seed);
  wm_->set_explore_head(false);
  const size_t HNA = size_t(H_) * N * A;
  ops_.copy_to_host_async(plan_out_host_, planner_->mu_p(), HNA * sizeof(float));
  ops_.copy_to_host_async(plan_out_host_ + HNA, planner_->sigma_p(), HNA * sizeof(float));
  synchronize();
  // The new targets straight into the batch's rows (t, b < n).
  for (int t = 0; t < H_; ++t) {
    const size_t row = size_t(t) * B * A, state = size_t(t) * N * A, bytes = N * A * sizeof(float);
    std::memcpy(b.mu + row, plan_out_host_ + state, bytes);
    std::memcpy(b.sigma + row, plan_out_host_ + HNA + state, bytes);
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
  // Stage the batch in a host slot whose previous upload is done (act() and reanalysis wait for
  // everything; in the burst, with no act() in between, the slot used two updates ago is waited
  // for; a batch sampled into staging_batch() is in that slot already), then upload it with one
  // asynchronous copy.
  const int slot = int(batch_uploads_ % 2);
  const replay::SliceBatch host = staging_batch(slot);
  const size_t HBA = size_t(H_) * B_ * A_, n_obs = size_t(H_ + 1) * B_ * O_,
               n_reward = size_t(H_) * B_;
  model::Batch mb;
  mb.obs = batch_dev_;
  mb.action = batch_dev_ + n_obs;
  mb.reward = mb.action + HBA;
  if (prior_) {
    mb.mu_p = batch_dev_ + (host.mu - host.obs);
    mb.sigma_p = batch_dev_ + (host.sigma - host.obs);
  }
  if (b.obs != host.obs) {
    std::memcpy(host.obs, b.obs, n_obs * sizeof(float));
    std::memcpy(host.action, b.action, HBA * sizeof(float));
    std::memcpy(host.reward, b.reward, n_reward * sizeof(float));
    if (prior_) {
      std::memcpy(host.mu, b.mu, HBA * sizeof(float));
      std::memcpy(host.sigma, b.sigma, HBA * sizeof(float));
    }
  } else {
    POMPC_REQUIRE(b.action == host.action && b.reward == host.reward &&
                      (!prior_ || (b.mu == host.mu && b.sigma == host.sigma)),
                  "agent: update on a batch whose obs is the staging slot but whose other "
                  "arrays are not: pass staging_batch() unchanged (index may be set)");
  }
  ops_.copy_to_backend_async(batch_dev_, host.obs, batch_floats_ * sizeof(float));
  ++batch_uploads_;
  batch_pending_[slot] = true;
  // One captured graph per policy flag (the batch is always uploaded into batch_dev_).
  wm_->update_graph(mb, stats_, /*policy=*/!burst || settings_.pretrain_policy);
  return reanalysed;
}

replay::SliceBatch Agent::staging_batch() {
  return staging_batch(int(batch_uploads_ % 2));
}

replay::SliceBatch Agent::staging_batch(int slot) {
  if (batch_pending_[slot]) synchronize();
  const size_t HBA = size_t(H_) * B_ * A_, n_obs = size_t(H_ + 1) * B_ * O_,
               n_reward = size_t(H_) * B_;
  replay::SliceBatch s;
  s.batch = B_;
  s.obs = batch_host_[slot];
  s.action = s.obs + n_obs;
  s.reward = s.action + HBA;
  if (prior_) {
    s.mu = s.reward + n_reward;
    s.sigma = s.mu + HBA;
  }
  return s;
}

void Agent::stage_stats() {
  ops_.copy_to_host_async(stats_host_, stats_, sizeof(model::UpdateStats));
  stats_staged_ = true;
  stats_landed_ = false;
}

model::UpdateStats Agent::read_stats() {
  if (!stats_staged_) stage_stats();
  if (!stats_landed_) synchronize();
  stats_staged_ = stats_landed_ = false;
  return *stats_host_;
}

}  // namespace pompc::agent
