// src/agent/world_model_latent.h: the TD-MPC2 world model seen through the planner's
// LatentModel interface (src/agent/planner.h).
//
//   encode / next / reward   forward to WorldModel (dropout off, outputs overwritten);
//   rollout_terms            WorldModel::rollout_terms: the rewards and the value of every
//                            rollout, on [z, a] rows it keeps in its scratch (no
//                            concatenation; the reward's last layer once for all steps)
//   pi(z)                    the sampled action of the policy head (Philox (seed, offset))
//   value(z)                 critic q: avg2 of the online Q heads at (z, a ~ pi(z)), TD-MPC2's
//                            terminal value in `_estimate_value` (the pi draw uses offset, the
//                            head pair offset + 1); critic v: avg2 V(z) (BMPC, pair offset + 1)
// The scratch for the terminal action is allocated once, for max_rows rows (the planner's
// S * num_samples).
#pragma once

#include "agent/planner.h"
#include "model/world_model.h"

namespace pompc::agent {

class WorldModelLatent final : public LatentModel {
 public:
  WorldModelLatent(model::WorldModel& wm, int max_rows);
  ~WorldModelLatent() override;
  WorldModelLatent(const WorldModelLatent&) = delete;
  WorldModelLatent& operator=(const WorldModelLatent&) = delete;

  int obs_dim() const override;
  int latent_dim() const override;
  int action_dim() const override;
  void encode(const float* obs, int rows, float* z) override;
  void next(const float* z, const float* a, int rows, float* z_next) override;
  void reward(const float* z, const float* a, int rows, float* r) override;
  size_t rollout_work(int H, int rows) const override;
  RolloutRows rollout_rows(int H, int rows) const override;
  void rollout_terms(int H, int rows, uint64_t seed, PhiloxOffset offset, float* terms,
                     float* work) override;
  void pi(const float* z, int rows, uint64_t seed, PhiloxOffset offset, float* a) override;
  void value(const float* z, int rows, uint64_t seed, PhiloxOffset offset, float* v) override;

 private:
  model::WorldModel& wm_;
  int max_rows_;
  float* action_ = nullptr;  // [max_rows, A]: the terminal value's policy action
};

}  // namespace pompc::agent
