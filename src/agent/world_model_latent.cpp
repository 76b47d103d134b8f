// WorldModel as the planner's LatentModel (see world_model_latent.h).
#include "agent/world_model_latent.h"

#include "common.h"

namespace pompc::agent {

WorldModelLatent::WorldModelLatent(model::WorldModel& wm, int max_rows)
    : wm_(wm), max_rows_(max_rows) {
  POMPC_REQUIRE(max_rows >= 1 && max_rows <= wm.max_rows(),
                "planner rows (%d) must be in [1, the world model's max_rows = %d]: build the "
                "WorldModel with max_rows >= num_samples * states planned at once",
                max_rows, wm.max_rows());
  action_ = wm.ops().alloc<float>(size_t(max_rows) * wm.config().action_dim);
}

WorldModelLatent::~WorldModelLatent() { wm_.ops().free_bytes(action_); }

int WorldModelLatent::obs_dim() const { return wm_.config().obs_dim; }
int WorldModelLatent::latent_dim() const { return wm_.config().latent_dim; }
int WorldModelLatent::action_dim() const { return wm_.config().action_dim; }

void WorldModelLatent::encode(const float* obs, int rows, float* z) { wm_.encode(z, obs, rows); }

void WorldModelLatent::next(const float* z, const float* a, int rows, float* z_next) {
  wm_.next(z_next, z, a, rows);
}

void WorldModelLatent::reward(const float* z, const float* a, int rows, float* r) {
  wm_.reward(r, z, a, rows);
}

size_t WorldModelLatent::rollout_work(int H, int rows) const {
  return wm_.rollout_work(H, rows);
}

// WorldModel::rollout_terms's [z, a] rows: z_0 in the first slot's z columns, a_t in slot t's a
// columns.
RolloutRows WorldModelLatent::rollout_rows(int, int) const {
  const int Z = wm_.config().latent_dim, ZA = Z + wm_.config().action_dim;
  return RolloutRows{0, ZA, size_t(Z), ZA};
}

void WorldModelLatent::rollout_terms(int H, int rows, uint64_t seed, PhiloxOffset offset,
                                     float* terms, float* work) {
  wm_.rollout_terms(terms, H, rows, seed, offset, work);
}

void WorldModelLatent::pi(const float* z, int rows, uint64_t seed, PhiloxOffset offset, float* a) {
  wm_.pi(a, nullptr, nullptr, nullptr, z, rows, seed, offset);
}

void WorldModelLatent::value(const float* z, int rows, uint64_t seed, PhiloxOffset offset,
                             float* v) {
  POMPC_REQUIRE(rows <= max_rows_, "value: rows (%d) > max_rows (%d)", rows, max_rows_);
  if (wm_.config().critic == model::Critic::v) {  // BMPC: gamma^H avg2 V(z_H)
    wm_.V(v, z, rows, model::QMode::avg, false, seed, offset + 1);
    return;
  }
  wm_.pi(action_, nullptr, nullptr, nullptr, z, rows, seed, offset);
  wm_.Q(v, z, action_, rows, model::QMode::avg, false, seed, offset + 1);
}

}  // namespace pompc::agent
