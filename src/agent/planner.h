// src/agent/planner.h: the MPPI planner over a learned latent model (SPEC section 3; TD-MPC2
// tdmpc2.py `_plan` and `_estimate_value`), batched over S states at once.
//
// One plan step, per state s (all S states in the same launches, rows = S * N):
//   z = encode(obs)                                            [S, Z]
//   policy trajectories: P copies of z; a_t ~ pi(z_t); z_{t+1} = next(z_t, a_t)   t < H
//   mean = 0, std = max_std; warm start mean[0..H-2] = prev_mean[1..H-1] unless first[s]
//   repeat `iterations` times (+2 when A >= 20):
//     actions[t, s, n >= P] = clamp(mean + std * eps, -1, 1); columns n < P: the policy's
//     G = sum_t gamma^t reward(z_t, a_t) + gamma^H value(z_H), z_{t+1} = next(z_t, a_t)
//     elites = top E of G (NaN -> 0); score = softmax(temperature * G_e);
//     mean, std = score-weighted mean and std of the elites (std clamped to [min_std, max_std])
//   choose one elite by Gumbel-max over score; action = its first action (+ std[0] * noise when
//   exploring), clamped; planner targets (BMPC): mu_p = that first action, sigma_p = std[0].
//   The final mean becomes prev_mean for the next warm start (acting mode only: reanalysis is a
//   cold start that leaves prev_mean untouched).
//
// Usage: fill obs_buffer() [S, O] and first_buffer() [S] (backend memory; copy_to_backend), then
// either plan(S, explore, warm, seed, step) (eager; writes the step for you, a blocking copy)
// or, on the hot path, write offset_base(step) into step_buffer() too (copy_to_backend_async)
// and call plan_graph(S, explore, warm, seed); read action(), mu_p(), sigma_p() [S, A].
// Everything is allocated at construction for up to max_states states; a plan issues a fixed
// sequence of ops with no allocation and no host synchronisation for a given (S, explore, warm,
// seed), so plan_graph runs it eagerly the first time, captures it as one graph (Ops::capture:
// a CUDA graph) the second, and replays it after that: bit for bit plan().
// Randomness: Philox (seed, offset_base(step) + purpose), kOffsetsPerStep purposes per step; the
// base is read from step_buffer() in backend memory when each op runs (PhiloxOffset), which is
// what lets one graph serve every step.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "ops.h"

namespace pompc::agent {

// Where the planner writes the rollouts' inputs in the model's scratch (LatentModel::
// rollout_rows; float offsets from the scratch's start): row i of z_0 at z0 + i z0_ld, row i of
// step t's actions at actions + (t rows + i) actions_ld.
struct RolloutRows {
  size_t z0 = 0;
  int64_t z0_ld = 0;
  size_t actions = 0;
  int64_t actions_ld = 0;
};

// What the planner needs from a world model: batched, inference-only passes (dropout off) on
// backend memory. pompc's WorldModel provides it; tests provide hand-built models.
class LatentModel {
 public:
  virtual ~LatentModel() = default;
  virtual int obs_dim() const = 0;
  virtual int latent_dim() const = 0;
  virtual int action_dim() const = 0;
  virtual void encode(const float* obs, int rows, float* z) = 0;
  virtual void next(const float* z, const float* a, int rows, float* z_next) = 0;
  // Scalar rewards (two_hot_inv of the reward head).
  virtual void reward(const float* z, const float* a, int rows, float* r) = 0;
  // The MPPI rollouts of one plan, in `work`: rollout_work(H, rows) floats of backend scratch
  // (rows = S N). The planner writes each rollout's inputs where rollout_rows says: z_0 once
  // per plan, every iteration's actions a_t as it samples them. Then per iteration rollout_terms()
  // writes the terms of G, [H + 1, rows]: reward(z_t, a_t) for t < H (z_{t+1} = next(z_t, a_t)),
  // then value(z_H) with (seed, offset). It leaves z_0 and the actions as they were. A model may
  // share work between the steps (WorldModelLatent: no [z, a] concatenations, the reward's last
  // layer once for all H); the results must equal these calls'.
  virtual RolloutRows rollout_rows(int H, int rows) const {
    (void)H;  // z_0, two latents, then the actions [H, rows, A]
    return RolloutRows{0, latent_dim(), 3 * size_t(rows) * latent_dim(), action_dim()};
  }
  virtual size_t rollout_work(int H, int rows) const {
    return rollout_rows(H, rows).actions + size_t(H) * size_t(rows) * size_t(action_dim());
  }
  virtual void rollout_terms(int H, int rows, uint64_t seed, PhiloxOffset offset, float* terms,
                             float* work) {
    const size_t block = size_t(rows) * latent_dim();
    const float* actions = work + rollout_rows(H, rows).actions;
    const float* z = work;
    for (int t = 0; t < H; ++t) {  // z_{t+1} alternates between the two latents after z_0
      const float* a = actions + size_t(t) * rows * action_dim();
      float* z_next = work + (1 + t % 2) * block;
      reward(z, a, rows, terms + size_t(t) * rows);
      next(z, a, rows, z_next);
      z = z_next;
    }
    value(z, rows, seed, offset, terms + size_t(H) * rows);
  }
  // The sampling policy's action a ~ pi(z) (noise from Philox (seed, offset)). What pi and
  // value compute may depend on the model's parameters' values, not on other host state that
  // changes between the plans of one plan_graph key (the graph bakes every argument).
  virtual void pi(const float* z, int rows, uint64_t seed, PhiloxOffset offset, float* a) = 0;
  // The bootstrap value at z_H: avg2 Q(z, a ~ pi(z)) for a Q critic, avg2 V(z) for a V critic.
  virtual void value(const float* z, int rows, uint64_t seed, PhiloxOffset offset, float* v) = 0;
};

struct PlannerSettings {
  int iterations = 6;         // MPPI iterations (+2 when action_dim >= 20, TD-MPC2's rule)
  int num_samples = 512;      // N: sampled sequences per state, policy trajectories included
  int num_elites = 64;        // E: elites kept per iteration
  int num_pi_trajs = 24;      // P: sequences drawn from the policy prior
  int horizon = 3;            // H: planning horizon
  float min_std = 0.05f;      // lower clamp of the sampling std
  float max_std = 2.0f;       // initial std and its upper clamp
  float temperature = 0.5f;   // multiplies values in the elite scores
  float discount = 0.99f;     // gamma (DMC: episode length 500 agent steps -> 0.99)

  // Iterations actually run for an action dim (the +2 rule).
  int iterations_for(int action_dim) const { return iterations + (action_dim >= 20 ? 2 : 0); }
  // Throws pompc::Error naming the fix ("num_elites (600) must be <= num_samples (512)").
  void validate() const;
};

class Planner {
 public:
  // Philox offsets used per plan step: offset = step * kOffsetsPerStep + purpose.
  static constexpr uint64_t kOffsetsPerStep = 64;
  // The purposes within one plan step (tests replay single ops at the planner's offsets).
  enum Purpose : uint64_t {
    kPiTraj = 0,      // policy trajectories: + t
    kSelect = 16,     // Gumbel choice (+ 1: exploration noise), see ref::mppi_select
    kSample = 18,     // MPPI samples: + iteration
    kValueBase = 40,  // the terminal value's policy action: + iteration
  };

  Planner(Ops& ops, LatentModel& model, const PlannerSettings& settings, int max_states);
  ~Planner();
  Planner(const Planner&) = delete;
  Planner& operator=(const Planner&) = delete;

  // The Philox offset base of plan step `step` (what step_buffer() holds for plan_graph).
  static uint64_t offset_base(uint64_t step) { return step * kOffsetsPerStep; }

  float* obs_buffer() { return obs_; }        // [max_states, O], filled by the caller
  uint8_t* first_buffer() { return first_; }  // [max_states], 1 = no warm start for that state
  uint64_t* step_buffer() { return step_base_; }  // [1]: offset_base(step), for plan_graph

  // Plans for states 0..S-1. explore: add std[0] * noise to the chosen action (training).
  // warm: read and update the per-state warm-start memory (acting); false for reanalysis.
  // Writes offset_base(step) into step_buffer() (a blocking copy), then runs the plan's ops.
  void plan(int S, bool explore, bool warm, uint64_t seed, uint64_t step);
  // The same plan for the step whose offset_base the caller has put in step_buffer() (in stream
  // order: an asynchronous copy before the call is enough), as one graph launch from its third
  // call per (S, explore, warm, seed) on; bit for bit plan(). Graphs captured so far: graphs().
  void plan_graph(int S, bool explore, bool warm, uint64_t seed);
  size_t graphs() const { return graphs_.size(); }

  const float* action() const { return action_; }    // [S, A]
  const float* mu_p() const { return mu_p_; }        // [S, A] planner target mean
  const float* sigma_p() const { return sigma_p_; }  // [S, A] planner target std
  const float* mean() const { return mean_; }        // [S, H, A] final MPPI mean
  const float* std() const { return std_; }          // [S, H, A] final MPPI std
  const float* value() const { return value_; }      // [S, N] last iteration's returns G
  // The last iteration's samples [H, S, N, A] and elites [S, E] (indices into N), and the
  // warm-start memory [max_states, H, A] (the final mean of each state's last acting plan): for
  // tests that hold two planners in lockstep and for inspection.
  const float* actions() const { return actions_; }
  const int32_t* elite_index() const { return elite_idx_; }
  float* warm_mean() { return prev_mean_; }
  const PlannerSettings& settings() const { return cfg_; }

 private:
  // The plan's ops (Philox bases read from step_buffer()); plan and plan_graph run these.
  void plan_steps(int S, bool explore, bool warm, uint64_t seed);
  // Philox offset `purpose` of the step in step_buffer().
  PhiloxOffset draw(uint64_t purpose) const { return PhiloxOffset(purpose, step_base_); }

  // plan_graph's recordings, one per key; calls counts the key's plans (1st eager, 2nd capture).
  struct GraphedPlan {
    int S;
    bool explore, warm;
    uint64_t seed;
    int calls = 0;
    std::unique_ptr<Ops::Graph> graph;
  };
  std::vector<GraphedPlan> graphs_;

  Ops& ops_;
  LatentModel& model_;
  PlannerSettings cfg_;
  int max_states_, O_, Z_, A_;
  TermWeights gamma_;  // gamma^t, t = 0..H: G = sum_t gamma^t r_t + gamma^H V(z_H)
  // Backend buffers, allocated once.
  float* obs_ = nullptr;
  uint8_t* first_ = nullptr;
  uint8_t* cold_ = nullptr;  // all ones: the `first` flags of a cold start (reanalysis)
  uint64_t* step_base_ = nullptr;  // [1] offset_base of the step being planned
  float *z0_ = nullptr, *value_ = nullptr;
  float* rollout_work_ = nullptr;  // the model's rollout scratch at S * N rows (z0 per sample)
  float* r_ = nullptr;  // [H + 1, S * N]: the rewards r_t, then V(z_H): the terms of G
  float *zpi_ = nullptr, *zpi_next_ = nullptr;
  float* api_ = nullptr;  // [H, S * P, A]: the policy trajectories' actions
  float *actions_ = nullptr, *mean_ = nullptr, *std_ = nullptr, *prev_mean_ = nullptr;
  float *elite_value_ = nullptr, *score_ = nullptr;
  int32_t* elite_idx_ = nullptr;
  float *action_ = nullptr, *mu_p_ = nullptr, *sigma_p_ = nullptr;
};

}  // namespace pompc::agent
