// The TD-MPC2 agent: acting through the planner, updating the world model (see agent.h).
#include "agent/agent.h"

#include "common.h"

namespace pompc::agent {

Agent::Agent(Ops& ops, const model::ModelConfig& model_cfg, const PlannerSettings& planner_cfg,
             int max_states)
    : ops_(ops),
      O_(model_cfg.obs_dim),
      A_(model_cfg.action_dim),
      B_(model_cfg.batch_size),
      H_(model_cfg.horizon),
      max_states_(max_states) {
  POMPC_REQUIRE(max_states >= 1, "agent: max_states (%d) must be >= 1", max_states);
  POMPC_REQUIRE(planner_cfg.horizon == model_cfg.horizon,
                "agent: the planner's horizon (%d) must equal the model's horizon (%d)",
                planner_cfg.horizon, model_cfg.horizon);
  planner_cfg.validate();
  const int rows = max_states * planner_cfg.num_samples;
  wm_ = std::make_unique<model::WorldModel>(ops, model_cfg, rows);
  latent_ = std::make_unique<WorldModelLatent>(*wm_, rows);
  planner_ = std::make_unique<Planner>(ops, *latent_, planner_cfg, max_states);
  batch_obs_ = ops.alloc<float>(size_t(H_ + 1) * B_ * O_);
  batch_action_ = ops.alloc<float>(size_t(H_) * B_ * A_);
  batch_reward_ = ops.alloc<float>(size_t(H_) * B_);
  stats_ = ops.alloc<model::UpdateStats>(1);
}

Agent::~Agent() {
  planner_.reset();
  latent_.reset();
  wm_.reset();
  for (void* p : {static_cast<void*>(batch_obs_), static_cast<void*>(batch_action_),
                  static_cast<void*>(batch_reward_), static_cast<void*>(stats_)})
    ops_.free_bytes(p);
}

void Agent::act(const float* obs, const uint8_t* first, int S, bool explore, uint64_t seed,
                uint64_t step, float* action, float* mu_p, float* sigma_p) {
  POMPC_REQUIRE(S >= 1 && S <= max_states_, "agent: act for %d states, built for 1..%d", S,
                max_states_);
  ops_.copy_to_backend(planner_->obs_buffer(), obs, size_t(S) * O_ * sizeof(float));
  ops_.copy_to_backend(planner_->first_buffer(), first, size_t(S));
  planner_->plan(S, explore, /*warm=*/true, seed, step);
  const size_t bytes = size_t(S) * A_ * sizeof(float);
  if (action) ops_.copy_to_host(action, planner_->action(), bytes);
  if (mu_p) ops_.copy_to_host(mu_p, planner_->mu_p(), bytes);
  if (sigma_p) ops_.copy_to_host(sigma_p, planner_->sigma_p(), bytes);
}

void Agent::update(const float* obs, const float* action, const float* reward) {
  ops_.copy_to_backend(batch_obs_, obs, size_t(H_ + 1) * B_ * O_ * sizeof(float));
  ops_.copy_to_backend(batch_action_, action, size_t(H_) * B_ * A_ * sizeof(float));
  ops_.copy_to_backend(batch_reward_, reward, size_t(H_) * B_ * sizeof(float));
  model::Batch b;
  b.obs = batch_obs_;
  b.action = batch_action_;
  b.reward = batch_reward_;
  wm_->update(b, stats_);
}

model::UpdateStats Agent::read_stats() {
  model::UpdateStats s{};
  ops_.copy_to_host(&s, stats_, sizeof(s));
  return s;
}

}  // namespace pompc::agent
