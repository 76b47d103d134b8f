// src/agent/agent.h: the TD-MPC2 agent (SPEC sections 2 and 3): one WorldModel, the MPPI planner
// over it (through WorldModelLatent), and the buffers that carry host data in and out, all
// allocated once at construction.
//
// Run book
//   act        act(obs [S, O], first [S], S, explore, seed, step, action, mu_p, sigma_p): host
//              arrays in and out. Copies obs and the first-step flags into the planner's backend
//              buffers, plans (warm start unless first[s]; exploration noise when explore), and
//              copies back action [S, A] and the planner targets mu_p / sigma_p [S, A] (either
//              may be null). One host synchronisation per call (the copies back).
//   update     update(obs, action, reward): one replay batch as the replay buffer samples it
//              (host, time-major: obs [H+1, B, O], action [H, B, A], reward [H, B]) is uploaded
//              into backend buffers allocated at construction and WorldModel::update runs on it
//              (SPEC 2 steps 1-6). Nothing synchronises: the UpdateStats stay in backend memory
//              until read_stats() copies them to the host (the trainer does it once per
//              episode).
//   sizes      the WorldModel is built with max_rows = max_states * num_samples, the rows one
//              plan step needs; the planner's horizon and discount must equal the model's.
//   tests      build/test_emu -ts=agent
#pragma once

#include <cstdint>
#include <memory>

#include "agent/planner.h"
#include "agent/world_model_latent.h"
#include "model/world_model.h"
#include "ops.h"

namespace pompc::agent {

class Agent {
 public:
  Agent(Ops& ops, const model::ModelConfig& model_cfg, const PlannerSettings& planner_cfg,
        int max_states = 1);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  int obs_dim() const { return O_; }
  int action_dim() const { return A_; }
  int max_states() const { return max_states_; }
  model::WorldModel& world_model() { return *wm_; }
  Planner& planner() { return *planner_; }
  Ops& ops() { return ops_; }

  // Plans for S states (see the run book); action, mu_p, sigma_p are host [S, A] (may be null).
  void act(const float* obs, const uint8_t* first, int S, bool explore, uint64_t seed,
           uint64_t step, float* action, float* mu_p, float* sigma_p);

  // One model + policy update on a host batch (time-major, B = batch_size, H = horizon).
  void update(const float* obs, const float* action, const float* reward);

  // The last update's statistics, copied to the host (synchronises).
  model::UpdateStats read_stats();

 private:
  Ops& ops_;
  int O_, A_, B_, H_, max_states_;
  std::unique_ptr<model::WorldModel> wm_;
  std::unique_ptr<WorldModelLatent> latent_;
  std::unique_ptr<Planner> planner_;
  float* batch_obs_ = nullptr;     // [H+1, B, O]
  float* batch_action_ = nullptr;  // [H, B, A]
  float* batch_reward_ = nullptr;  // [H, B]
  model::UpdateStats* stats_ = nullptr;
};

}  // namespace pompc::agent
