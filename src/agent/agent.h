// src/agent/agent.h: the TD-MPC2 agent (SPEC sections 2 and 3): one WorldModel, the MPPI planner
// over it (through WorldModelLatent), and the buffers that carry host data in and out, all
// allocated once at construction.
//
// Run book
//   act        act(obs [S, O], first [S], S, explore, seed, step, action, mu_p, sigma_p): host
//              arrays in and out. Copies obs, the first-step flags and the plan step's Philox
//              base into the planner's backend buffers, plans (Planner::plan_graph: one graph
//              launch per plan from the third plan of a kind; warm start unless first[s];
//              exploration noise when explore), and copies back action [S, A] and the planner
//              targets mu_p / sigma_p [S, A] (either may be null). Every copy is asynchronous
//              through page-locked staging buffers; the one host synchronisation of an agent step
//              is act()'s wait for its outputs.
//   update     update(batch, burst): one replay batch as the replay buffer samples it (host,
//              time-major: obs [H+1, B, O], action [H, B, A], reward [H, B], and with a prior
//              mu / sigma [H, B, A]) is staged in one of two host slots and uploaded with one
//              asynchronous copy into a backend block allocated at construction (a batch
//              sampled into staging_batch(), the trainer's, is that slot already: no host copy),
//              and
//              WorldModel::update_graph runs on it (SPEC 2 steps 1-6 as one captured graph,
//              bit for bit WorldModel::update; burst = true in the pretraining burst, where the
//              policy step is skipped unless pretrain_policy: a second graph). It waits only
//              when its slot's previous upload may still be running (the burst: every second
//              update); after an act() it never waits. The UpdateStats stay in backend memory;
//              stage_stats() copies them to the host asynchronously and read_stats() returns
//              them after the next host wait (the trainer: once per episode, read one agent
//              step late, so that logging adds no wait).
//   reanalyze  lazy reanalysis (SPEC 5, BMPC `reanalyze`): with reanalyze_interval > 0, every
//              reanalyze_interval-th update outside the burst first re-plans the H states of the
//              first n = min(reanalyze_batch, B) slices (obs[t, b], t < H, b < n; H n states in
//              one cold-start planner call, t-major, pi's log_std in the expl_log_std range) and
//              overwrites the batch's mu / sigma rows (t, b < n) with the new planner targets
//              before the update uses them. update() returns n then (0 otherwise); the caller
//              writes those rows back into its replay buffer (ReplayBuffer::write_batch_targets).
//              Planner steps of reanalysis: kReanalyzeStep + reanalysis count. One host
//              synchronisation per reanalysis (its targets are written into the host batch).
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
#include "replay/replay_buffer.h"

namespace pompc::agent {

struct AgentSettings {
  int max_states = 1;           // states act() plans for at once (environments)
  int reanalyze_interval = 0;   // updates between lazy reanalyses (BMPC: 10); 0 = never
  int reanalyze_batch = 20;     // slices of the batch re-planned (their H states each)
  bool pretrain_policy = true;  // take the policy step in the pretraining burst (BMPC: false)
};

class Agent {
 public:
  // Planner steps used by reanalysis start here (acting uses the agent step, evaluation 2^50+).
  static constexpr uint64_t kReanalyzeStep = uint64_t{1} << 51;

  Agent(Ops& ops, const model::ModelConfig& model_cfg, const PlannerSettings& planner_cfg,
        const AgentSettings& settings = AgentSettings{});
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  int obs_dim() const { return O_; }
  int action_dim() const { return A_; }
  int max_states() const { return settings_.max_states; }
  // Updates taken outside the burst and reanalyses run (checkpointed: they time reanalysis).
  uint64_t policy_updates() const { return policy_updates_; }
  uint64_t reanalyses() const { return reanalyses_; }
  void set_counters(uint64_t policy_updates, uint64_t reanalyses) {
    policy_updates_ = policy_updates;
    reanalyses_ = reanalyses;
  }
  model::WorldModel& world_model() { return *wm_; }
  Planner& planner() { return *planner_; }
  Ops& ops() { return ops_; }

  // Plans for S states (see the run book); action, mu_p, sigma_p are host [S, A] (may be null).
  void act(const float* obs, const uint8_t* first, int S, bool explore, uint64_t seed,
           uint64_t step, float* action, float* mu_p, float* sigma_p);

  // One model + policy update on a host batch (time-major, B = batch_size, H = horizon; mu and
  // sigma needed with a prior). Returns the slices reanalysed (their mu / sigma rows rewritten).
  int update(const replay::SliceBatch& batch, bool burst = false);
  // The host staging slot the next update() uploads from, as a batch to sample into: obs,
  // action, reward, and mu / sigma with a prior (else null, as index is). update() on a batch
  // whose obs is this slot's uploads it without copying it first. Waits when the slot's
  // previous upload may still be running (as update() would).
  replay::SliceBatch staging_batch();

  // The update statistics, without a wait of their own: stage_stats() starts the copy of the
  // last update's UpdateStats to the host (asynchronous, page-locked memory); read_stats()
  // returns what the last stage_stats() copied, waiting only if no host wait (act's) has
  // happened since, and with nothing staged stages the last update's stats first (then it
  // waits: the simple way to read them, as tests do).
  void stage_stats();
  model::UpdateStats read_stats();

 private:
  // Host staging slot `slot` (0 or 1) as a batch, after its previous upload.
  replay::SliceBatch staging_batch(int slot);
  // Re-plans the first n slices' states and rewrites their targets in `batch`.
  void reanalyze(const replay::SliceBatch& batch, int n, uint64_t seed);
  // Puts the plan step's Philox base into the planner's step_buffer() (asynchronous copy from
  // page-locked memory, free again at the plan's wait).
  void stage_plan_step(uint64_t step);
  // ops.synchronize(); afterwards no staged batch is still being uploaded.
  void synchronize();

  Ops& ops_;
  int O_, A_, B_, H_;
  AgentSettings settings_;
  bool prior_;               // the objective reads planner targets
  uint64_t seed_;
  uint64_t policy_updates_ = 0, reanalyses_ = 0;
  std::unique_ptr<model::WorldModel> wm_;
  std::unique_ptr<WorldModelLatent> latent_;
  std::unique_ptr<Planner> planner_;
  // The update's batch: obs [H+1, B, O] | action [H, B, A] | reward [H, B] | mu, sigma [H, B, A]
  // (with a prior), in backend memory and in two host staging slots (alloc_host memory).
  size_t batch_floats_ = 0;
  float* batch_dev_ = nullptr;
  float* batch_host_[2] = {nullptr, nullptr};
  bool batch_pending_[2] = {false, false};  // the slot's upload may not have run yet
  uint64_t batch_uploads_ = 0;
  // Planner staging (alloc_host memory, sized for the most states one plan takes): observations,
  // first-step flags, the plan step's Philox base, and the outputs (action | mu_p | sigma_p,
  // [states, A] each).
  float* plan_obs_host_ = nullptr;
  uint8_t* plan_first_host_ = nullptr;
  uint64_t* plan_step_host_ = nullptr;
  float* plan_out_host_ = nullptr;
  model::UpdateStats* stats_ = nullptr;       // the last update's, backend memory
  model::UpdateStats* stats_host_ = nullptr;  // alloc_host memory: stage_stats' copy
  bool stats_staged_ = false;                 // stage_stats() called and not read yet
  bool stats_landed_ = false;                 // a host wait has happened since (the copy is done)
};

}  // namespace pompc::agent
