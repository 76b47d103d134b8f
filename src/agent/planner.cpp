// The MPPI planner (see planner.h for the algorithm and the buffer contract).
#include "agent/planner.h"

#include <utility>
#include <vector>

#include "common.h"
#include "nvtx.h"

namespace pompc::agent {
void PlannerSettings::validate() const {
  POMPC_REQUIRE(horizon >= 1, "horizon (%d) must be >= 1", horizon);
  POMPC_REQUIRE(horizon <= 16, "horizon (%d) must be <= 16 (Philox purposes per plan step)",
                horizon);
  POMPC_REQUIRE(iterations >= 1 && iterations <= 20, "iterations (%d) must be in [1, 20]",
                iterations);
  POMPC_REQUIRE(num_samples >= 1, "num_samples (%d) must be >= 1", num_samples);
  POMPC_REQUIRE(num_elites >= 1 && num_elites <= num_samples,
                "num_elites (%d) must be in [1, num_samples = %d]", num_elites, num_samples);
  POMPC_REQUIRE(num_pi_trajs >= 0 && num_pi_trajs <= num_samples,
                "num_pi_trajs (%d) must be in [0, num_samples = %d]", num_pi_trajs, num_samples);
  POMPC_REQUIRE(min_std > 0 && min_std <= max_std,
                "min_std (%g) must be > 0 and <= max_std (%g)", double(min_std), double(max_std));
  POMPC_REQUIRE(temperature > 0, "temperature (%g) must be > 0", double(temperature));
  POMPC_REQUIRE(discount > 0 && discount <= 1, "discount (%g) must be in (0, 1]",
                double(discount));
}

Planner::Planner(Ops& ops, LatentModel& model, const PlannerSettings& settings, int max_states)
    : ops_(ops),
      model_(model),
      cfg_(settings),
      max_states_(max_states),
      O_(model.obs_dim()),
      Z_(model.latent_dim()),
      A_(model.action_dim()) {
  cfg_.validate();
  POMPC_REQUIRE(max_states >= 1, "planner: max_states (%d) must be >= 1", max_states);
  // gamma^t as TD-MPC2 forms them (discount *= gamma after each term); G sums the terms from 0 in
  // t order (src/ref/loss.h discounted_sum).
  gamma_.count = cfg_.horizon + 1;
  float discount = 1.0f;
  for (int t = 0; t <= cfg_.horizon; ++t) {
    gamma_.w[t] = discount;
    discount *= cfg_.discount;
  }
  const size_t S = size_t(max_states), N = size_t(cfg_.num_samples), H = size_t(cfg_.horizon);
  const size_t P = size_t(cfg_.num_pi_trajs), E = size_t(cfg_.num_elites);
  obs_ = ops.alloc<float>(S * O_);
  first_ = ops.alloc<uint8_t>(S);
  cold_ = ops.alloc<uint8_t>(S);
  step_base_ = ops.alloc<uint64_t>(1);
  const std::vector<uint8_t> ones(S, 1);
  ops.copy_to_backend(cold_, ones.data(), S);
  z0_ = ops.alloc<float>(S * Z_);
  rollout_work_ = ops.alloc<float>(model.rollout_work(int(H), int(S * N)));
  r_ = ops.alloc<float>((H + 1) * S * N);
  value_ = ops.alloc<float>(S * N);
  zpi_ = ops.alloc<float>(S * P * Z_ + 1);
  zpi_next_ = ops.alloc<float>(S * P * Z_ + 1);
  api_ = ops.alloc<float>(H * S * P * A_ + 1);
  actions_ = ops.alloc<float>(H * S * N * A_);
  mean_ = ops.alloc<float>(S * H * A_);
  std_ = ops.alloc<float>(S * H * A_);
  prev_mean_ = ops.alloc<float>(S * H * A_);
  elite_value_ = ops.alloc<float>(S * E);
  score_ = ops.alloc<float>(S * E);
  elite_idx_ = ops.alloc<int32_t>(S * E);
  action_ = ops.alloc<float>(S * A_);
  mu_p_ = ops.alloc<float>(S * A_);
  sigma_p_ = ops.alloc<float>(S * A_);
}

Planner::~Planner() {
  void* const buffers[] = {obs_,    first_, cold_,      step_base_,   z0_,    rollout_work_,
                           r_,      value_, zpi_,       zpi_next_,    api_,   actions_,
                           mean_,   std_,   prev_mean_, elite_value_, score_, elite_idx_,
                           action_, mu_p_,  sigma_p_};
  for (void* p : buffers) ops_.free_bytes(p);
}

void Planner::plan(int S, bool explore, bool warm, uint64_t seed, uint64_t step) {
  POMPC_REQUIRE(S >= 1 && S <= max_states_, "planner: S (%d) must be in [1, max_states = %d]", S,
                max_states_);
  NvtxRange range("plan");
  const uint64_t base = offset_base(step);
  ops_.copy_to_backend(step_base_, &base, sizeof base);
  plan_steps(S, explore, warm, seed);
}

void Planner::plan_graph(int S, bool explore, bool warm, uint64_t seed) {
  POMPC_REQUIRE(S >= 1 && S <= max_states_, "planner: S (%d) must be in [1, max_states = %d]", S,
                max_states_);
  NvtxRange range("plan (graph)");
  GraphedPlan* g = nullptr;
  for (auto& c : graphs_)
    if (c.S == S && c.explore == explore && c.warm == warm && c.seed == seed) g = &c;
  if (!g) {
    graphs_.push_back(GraphedPlan{S, explore, warm, seed, 0, nullptr});
    g = &graphs_.back();
  }
  if (g->calls++ == 0) {
    plan_steps(S, explore, warm, seed);  // eager: every op sizes its scratch before capture
    return;
  }
  if (!g->graph)
    g->graph = ops_.capture([this, S, explore, warm, seed] { plan_steps(S, explore, warm, seed); });
  ops_.replay(*g->graph);
}

void Planner::plan_steps(int S, bool explore, bool warm, uint64_t seed) {
  const int N = cfg_.num_samples, P = cfg_.num_pi_trajs, H = cfg_.horizon;
  const MppiShape sh{S, H, N, P, cfg_.num_elites, A_};

  model_.encode(obs_, S, z0_);
  // Every iteration's rollout starts from z0 per sample, where the model reads it; the samples'
  // actions go where it reads them too (mppi_sample's second output).
  const RolloutRows in = model_.rollout_rows(H, S * N);
  ops_.repeat_rows(rollout_work_ + in.z0, in.z0_ld, z0_, S, N, Z_);

  // Policy trajectories: P rows per state, written into sample columns n < P at every t.
  if (P > 0) {
    float *zpi = zpi_, *zpi_next = zpi_next_;
    ops_.repeat_rows(zpi, Z_, z0_, S, P, Z_);
    for (int t = 0; t < H; ++t) {
      float* a = api_ + size_t(t) * S * P * A_;
      model_.pi(zpi, S * P, seed, draw(kPiTraj + t), a);
      if (t + 1 < H) {
        model_.next(zpi, a, S * P, zpi_next);
        std::swap(zpi, zpi_next);
      }
    }
    // Row (t, s) of both is P A floats: one copy for every step and state.
    ops_.copy_rows(actions_, int64_t(N) * A_, api_, int64_t(P) * A_, H * S, P * A_);
  }

  // Acting: warm start where first_ says so. Reanalysis: every state starts cold.
  ops_.mppi_init(mean_, std_, prev_mean_, warm ? first_ : cold_, sh, cfg_.max_std);
  const int iterations = cfg_.iterations_for(A_);
  for (int it = 0; it < iterations; ++it) {
    NvtxRange iter("plan/iter");
    ops_.mppi_sample(actions_, mean_, std_, sh, seed, draw(kSample + it),
                     rollout_work_ + in.actions, in.actions_ld);
    model_.rollout_terms(H, S * N, seed, draw(kValueBase + it), r_, rollout_work_);
    ops_.mppi_elites_update(elite_idx_, elite_value_, mean_, std_, score_, value_, r_, gamma_,
                            actions_, sh, cfg_.temperature, cfg_.min_std, cfg_.max_std);
  }
  ops_.mppi_select(action_, mu_p_, sigma_p_, actions_, elite_idx_, score_, std_, sh, explore, seed,
                   draw(kSelect));
  if (warm) ops_.copy_within(prev_mean_, mean_, size_t(S) * H * A_ * sizeof(float));
}

}  // namespace pompc::agent
