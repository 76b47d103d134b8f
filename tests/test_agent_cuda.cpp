// The whole agent on the CUDA backend (emulated here, real in test_gpu) in lockstep with the CPU
// reference: every preset (tdmpc2, bmpc, tdmpc2sq, pompc), lazy reanalysis, and two
// environments planned as one batch. The CPU agent drives pendulum-swingup; before every agent
// step the CUDA agent is given the CPU agent's whole state (parameters, target Qs, Adam moments
// and counters, S_Q, S_D, update and reanalysis counters, the planner's warm-start memory), then
// both plan for the same observations and update on the same replay batch, and what they produce
// is compared. Each comparison is therefore one step's backend discrepancy, bounded a priori:
//
// Error model. Both backends compute in fp32 but sum in different orders (cuBLAS-style tiling,
// warp-shuffle reductions). A length-K reduction in another order moves its result by about
// sqrt(K) u sum|terms| (u = 2^-24; rounding errors as a random walk; Higham's worst case is
// K u), so each backend sits within that of the exact value and the two within twice it. A
// normalised layer (Linear -> LayerNorm -> Mish/SimNorm) passes relative error through with gain
// about 1 and adds its own, so a quantity at the end of a chain of D such layers differs by about
// D * 2 sqrt(K) u relative, K the largest reduction on the way (the 101 two-hot bins here). The
// tolerance is that bound with a safety factor of 4:
//   planner values G   D = 2 (encoder) + H (3 dynamics + 3 reward) + 3 (pi) + 3 (Q) = 26
//   update statistics  D = 2 (encoder) + 3 H (dynamics) + 3 (Q) + 1 (soft-ce)        = 15
// From the values, MPPI's softmax weights w = softmax(temperature G_e) move by at most
// 2 temperature |dG| relative, so the mean moves by <= 2 temperature max|dG| (actions in
// [-1, 1]), std^2 by <= 8 temperature max|dG| + 4 |dmean|, std by that / (2 min_std).
// Parameters after an update: the update-parity rule of test_model (every element within 0.25 lr,
// the 99.9th percentile within 1e-3 lr: Adam moves a parameter whose gradient is rounding noise
// by a backend-dependent fraction of lr).
//
// Discrete choices are where the backends may legitimately part: the elite set, when the values'
// discrepancy reorders a near tie at the E-th place (each backend's elites must be exactly the
// top E of its own values, so a differing set is explained by values that agree within their
// tolerance), and the Gumbel-max draw among the elites (mu_p is then another elite's first
// action).
// Such states are not compared further, an update whose reanalysed targets took such a turn is
// not compared, and the test requires them to be rare (a wrong kernel turns every step into one).
//
// Run: build/test_emu -ts=agent -tc='*lockstep*'
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "agent/agent.h"
#include "common.h"
#include "env/env.h"
#include "ops.h"
#include "philox.cuh"
#include "replay/replay_buffer.h"
#include "test_util.h"
#include "train/trainer.h"

namespace {

using pompc::Ops;
using pompc::agent::Agent;
using pompc::model::ParamSet;
using pompc::model::WorldModel;

constexpr double kU = 0x1p-24;  // fp32 unit roundoff
constexpr double kSafety = 4;

template <typename T>
std::vector<T> host(Ops& o, const T* p, size_t n) {
  std::vector<T> h(n);
  o.copy_to_host(h.data(), p, n * sizeof(T));
  return h;
}

template <typename T>
void put(Ops& o, T* p, const std::vector<T>& h) {
  o.copy_to_backend(p, h.data(), h.size() * sizeof(T));
}

// dst := src, everything an agent step reads (the checkpoint's contents and the warm starts).
void copy_state(Agent& dst, Agent& src) {
  WorldModel &a = src.world_model(), &b = dst.world_model();
  Ops &oa = a.ops(), &ob = b.ops();
  for (ParamSet set : pompc::model::kParamSets) {
    const size_t n = a.param_floats(set);
    REQUIRE(n == b.param_floats(set));
    if (n) put(ob, b.params(set), host(oa, a.params(set), n));
  }
  for (ParamSet set : pompc::model::kTrainedSets) {
    const size_t n = a.param_floats(set);
    if (!n) continue;
    put(ob, b.adam_m(set), host(oa, a.adam_m(set), n));
    put(ob, b.adam_v(set), host(oa, a.adam_v(set), n));
    put(ob, b.adam_scalars(set), host(oa, a.adam_scalars(set), 1));
  }
  put(ob, b.q_scale(), host(oa, a.q_scale(), 1));
  put(ob, b.prior_scale(), host(oa, a.prior_scale(), 1));
  b.set_updates(a.updates());
  dst.set_counters(src.policy_updates(), src.reanalyses());
  const size_t warm = size_t(src.max_states()) * src.planner().settings().horizon *
                      size_t(src.action_dim());
  put(ob, dst.planner().warm_mean(), host(oa, src.planner().warm_mean(), warm));
}

struct Tolerances {
  double g_rel, stats_rel, sample, temperature, min_std, lr;
  int E;
  double g_abs(double g) const { return g_rel * (1.0 + std::fabs(g)); }
};

Tolerances tolerances(const pompc::train::TrainSettings& s) {
  const auto& m = s.model;
  const double K = std::max({m.obs_dim, m.enc_dim, m.latent_dim + m.action_dim, m.mlp_dim,
                             m.num_bins});
  const double per_layer = 2 * std::sqrt(K) * kU;
  const int H = m.horizon;
  Tolerances t;
  t.g_rel = kSafety * (2 + 6 * H + 3 + 3) * per_layer;
  t.stats_rel = kSafety * (2 + 3 * H + 3 + 1) * per_layer;
  // A sampled first action: mean + std eps from identical inputs (rounding only), or for the
  // policy's trajectories pi's action (encoder + pi: 5 layers).
  t.sample = kSafety * (2 + 3) * per_layer;
  t.temperature = s.planner.temperature;
  t.min_std = s.planner.min_std;
  t.lr = m.lr;
  t.E = s.planner.num_elites;
  return t;
}

// The indices of the E largest of v[0..N) (NaN counts as 0; equal values: the lower index),
// sorted ascending.
std::vector<int32_t> top_e(const float* v, int N, int E) {
  std::vector<int32_t> idx(N);
  for (int n = 0; n < N; ++n) idx[n] = n;
  auto key = [&](int32_t n) { return std::isnan(v[n]) ? 0.0f : v[n]; };
  std::stable_sort(idx.begin(), idx.end(), [&](int32_t x, int32_t y) { return key(x) > key(y); });
  idx.resize(E);
  std::sort(idx.begin(), idx.end());
  return idx;
}

std::vector<int32_t> sorted_copy(std::vector<int32_t>::const_iterator first, int n) {
  std::vector<int32_t> v(first, first + n);
  std::sort(v.begin(), v.end());
  return v;
}

struct Counts {
  int states = 0, ties = 0, selection_flips = 0;
  int updates = 0, updates_skipped = 0, reanalyses = 0;
};

// Compares the last plan of both planners for S states (the CPU's as reference). Returns, per
// state, whether the CUDA planner chose what the CPU chose (false: a near tie or a Gumbel flip,
// counted in c). Checks values, elites, mean, std, sigma_p always and mu_p / action unless the
// draw went to another elite.
std::vector<bool> compare_plan(Agent& cpu, Agent& gpu, int S, const Tolerances& tol, Counts& c,
                               const std::vector<float>* act_cpu = nullptr,
                               const std::vector<float>* act_gpu = nullptr) {
  auto &pc = cpu.planner(), &pg = gpu.planner();
  Ops &oc = cpu.ops(), &og = gpu.ops();
  const int N = pc.settings().num_samples, E = pc.settings().num_elites;
  const int H = pc.settings().horizon, A = cpu.action_dim();
  const size_t SN = size_t(S) * N, SE = size_t(S) * E, SHA = size_t(S) * H * A;
  const auto gc = host(oc, pc.value(), SN), gg = host(og, pg.value(), SN);
  const auto ec = host(oc, pc.elite_index(), SE), eg = host(og, pg.elite_index(), SE);
  const auto mc = host(oc, pc.mean(), SHA), mg = host(og, pg.mean(), SHA);
  const auto sc = host(oc, pc.std(), SHA), sg = host(og, pg.std(), SHA);
  const auto muc = host(oc, pc.mu_p(), size_t(S) * A), mug = host(og, pg.mu_p(), size_t(S) * A);
  const auto sic = host(oc, pc.sigma_p(), size_t(S) * A),
             sig = host(og, pg.sigma_p(), size_t(S) * A);
  const auto samples = host(oc, pc.actions(), size_t(H) * SN * A);  // t = 0 rows first
  std::vector<bool> same(S, true);
  for (int s = 0; s < S; ++s) {
    ++c.states;
    CAPTURE(s);
    double gmax = 0;
    for (int n = 0; n < N; ++n) gmax = std::max(gmax, tol.g_abs(gc[size_t(s) * N + n]));
    CHECK(pompc::test::check_close("planner values G", &gg[size_t(s) * N], &gc[size_t(s) * N],
                                   size_t(N), tol.g_rel, tol.g_rel));
    // Each backend's elites are the top E of its own values (ties to the lower index, NaN as 0);
    // the two sets differ only where the values' discrepancy reorders a near tie at the elite
    // boundary, and then nothing downstream is comparable.
    const std::vector<int32_t> a = top_e(&gc[size_t(s) * N], N, E),
                               b = top_e(&gg[size_t(s) * N], N, E);
    CHECK(sorted_copy(ec.begin() + s * E, E) == a);
    CHECK(sorted_copy(eg.begin() + s * E, E) == b);
    if (a != b) {
      ++c.ties;
      same[s] = false;
      continue;
    }
    const double dmean = 2 * tol.temperature * gmax + tol.sample + 4 * tol.E * kU;
    // std^2 moves by at most dvar, so std by dvar / (2 std) (std >= min_std).
    const double dvar = 8 * tol.temperature * gmax + 4 * dmean + 4 * tol.E * kU;
    CHECK(pompc::test::check_close("plan mean", &mg[size_t(s) * H * A], &mc[size_t(s) * H * A],
                                   size_t(H) * A, dmean, 0));
    auto std_close = [&](const char* what, const float* got, const float* ref, int n) {
      bool ok = true;
      for (int j = 0; j < n; ++j)
        ok &= pompc::test::check_close(what, got + j, ref + j, 1,
                                       dvar / (2 * std::max(double(ref[j]), tol.min_std)), 0);
      return ok;
    };
    CHECK(std_close("plan std", &sg[size_t(s) * H * A], &sc[size_t(s) * H * A], H * A));
    CHECK(std_close("sigma_p", &sig[size_t(s) * A], &sic[size_t(s) * A], A));
    const double dstd = dvar / (2 * tol.min_std);
    // mu_p is the drawn elite's first action (a sample: equal up to tol.sample).
    const double dsample = tol.sample;
    bool mu_same = true;
    for (int j = 0; j < A; ++j)
      mu_same &= std::fabs(mug[size_t(s) * A + j] - muc[size_t(s) * A + j]) <= dsample;
    if (!mu_same) {
      // Another elite's first action: the Gumbel draw between near-equal perturbed scores.
      bool is_elite = false;
      for (int32_t e : b) {
        bool match = true;
        for (int j = 0; j < A; ++j)
          match &= std::fabs(mug[size_t(s) * A + j] -
                             samples[(size_t(s) * N + size_t(e)) * A + j]) <= dsample;
        is_elite |= match;
      }
      CHECK_MESSAGE(is_elite, "the CUDA planner's mu_p is not the first action of an elite");
      ++c.selection_flips;
      same[s] = false;
      continue;
    }
    if (act_cpu && act_gpu)  // action = mu_p + sigma_p * eps (|eps| < 6), clamped
      CHECK(pompc::test::check_close("action", &(*act_gpu)[size_t(s) * A],
                                     &(*act_cpu)[size_t(s) * A], A, dsample + 6 * dstd, 0));
  }
  return same;
}

// Compares the parameters and statistics of both agents after the same update.
void compare_update(Agent& cpu, Agent& gpu, const Tolerances& tol) {
  WorldModel &a = cpu.world_model(), &b = gpu.world_model();
  const auto sa = cpu.read_stats(), sb = gpu.read_stats();
  const float* fa = &sa.consistency_loss;
  const float* fb = &sb.consistency_loss;
  CHECK(pompc::test::check_close("update stats", fb, fa,
                                 sizeof(pompc::model::UpdateStats) / sizeof(float), tol.stats_rel,
                                 tol.stats_rel));
  for (ParamSet set : pompc::model::kParamSets) {
    const size_t n = a.param_floats(set);
    if (!n) continue;
    const auto pa = host(a.ops(), a.params(set), n), pb = host(b.ops(), b.params(set), n);
    CHECK(pompc::test::check_close("parameters after the update", pb, pa, 0.25 * tol.lr, 0));
    std::vector<double> d(n);
    for (size_t i = 0; i < n; ++i) d[i] = std::fabs(double(pa[i]) - pb[i]);
    std::sort(d.begin(), d.end());
    CHECK(d[size_t(0.999 * double(n - 1))] <= 1e-3 * tol.lr);
  }
}

struct Lockstep {
  pompc::train::TrainSettings s;
  std::unique_ptr<Ops> ops_cpu, ops_gpu;
  std::unique_ptr<Agent> cpu, gpu;
  std::unique_ptr<pompc::env::VecEnv> envs;
  std::unique_ptr<pompc::replay::ReplayBuffer> replay;
  int O = 0, A = 0, L = 0, S = 1;

  explicit Lockstep(const std::vector<std::string>& extra) {
    auto cfg = pompc::train::train_config();
    std::vector<std::string> args = {
        "task=cartpole-balance", "action_repeat=20", "model_size=1", "enc_dim=32",
        "mlp_dim=32", "latent_dim=16", "batch_size=16", "iterations=1", "num_samples=32",
        "num_elites=8", "num_pi_trajs=4", "seed=3", "tf32=false"};
    args.insert(args.end(), extra.begin(), extra.end());
    cfg.apply(args);
    s = pompc::train::settings_from(cfg);
    S = s.num_envs;
    envs = std::make_unique<pompc::env::VecEnv>(s.task, S, uint32_t(s.seed), s.action_repeat);
    O = envs->spec().obs_dim;
    A = envs->spec().act_dim;
    L = envs->env(0).episode_length();
    pompc::train::resolve_model(s, O, A, L);
    s.agent.max_states = S;
    ops_cpu = pompc::make_ref_ops();
    ops_gpu = pompc::make_cuda_ops();
    cpu = std::make_unique<Agent>(*ops_cpu, s.model, s.planner, s.agent);
    gpu = std::make_unique<Agent>(*ops_gpu, s.model, s.planner, s.agent);
    pompc::replay::ReplaySettings rs;
    rs.capacity = 10000;
    rs.obs_dim = O;
    rs.action_dim = A;
    rs.horizon = s.model.horizon;
    rs.planner_targets = s.model.prior != pompc::model::Prior::none;
    rs.num_envs = S;
    rs.seed = s.seed;
    replay = std::make_unique<pompc::replay::ReplayBuffer>(rs);
  }

  // One episode per env, lockstep; planned unless `random`. Updates (after the episode's first
  // step) when `update`.
  void episode(bool random, bool update, const Tolerances& tol, Counts& c, uint64_t& step) {
    const int H = s.model.horizon, B = s.model.batch_size;
    const bool targets = s.model.prior != pompc::model::Prior::none;
    std::vector<float> obs(size_t(S) * O), next(size_t(S) * O), act(size_t(S) * A),
        act_gpu(act.size()), mu(act.size()), sigma(act.size()), mu_g(act.size()),
        sigma_g(act.size());
    std::vector<uint8_t> first(S, 1);
    std::vector<pompc::env::StepResult> res(S);
    std::vector<float> b_obs(size_t(H + 1) * B * O), b_act(size_t(H) * B * A), b_rew(size_t(H) * B);
    std::vector<float> b_mu(targets ? size_t(H) * B * A : 0), b_sigma(b_mu.size());
    std::vector<float> g_mu(b_mu.size()), g_sigma(b_mu.size());
    std::vector<int64_t> b_index(size_t(H + 1) * B);
    pompc::replay::SliceBatch sb;
    sb.batch = B;
    sb.obs = b_obs.data();
    sb.action = b_act.data();
    sb.reward = b_rew.data();
    sb.index = b_index.data();
    envs->reset_all(obs.data());
    for (int k = 0; k < L; ++k, step += uint64_t(S)) {
      if (random) {
        for (size_t i = 0; i < act.size(); ++i)
          act[i] = 2.0f * pompc::philox_uniform(s.seed, 99, step * A + i) - 1.0f;
      } else {
        copy_state(*gpu, *cpu);
        cpu->act(obs.data(), first.data(), S, true, s.seed, step, act.data(), mu.data(),
                 sigma.data());
        gpu->act(obs.data(), first.data(), S, true, s.seed, step, act_gpu.data(), mu_g.data(),
                 sigma_g.data());
        compare_plan(*cpu, *gpu, S, tol, c, &act, &act_gpu);
      }
      std::fill(first.begin(), first.end(), uint8_t(0));
      envs->step_all(act.data(), next.data(), res.data());
      for (int i = 0; i < S; ++i)
        replay->add(i, &obs[size_t(i) * O], &act[size_t(i) * A], res[i].reward,
                    random || !targets ? nullptr : &mu[size_t(i) * A],
                    random || !targets ? nullptr : &sigma[size_t(i) * A]);
      obs.swap(next);
      if (update && replay->valid_starts() > 0)
        for (int i = 0; i < S; ++i) {
          sb.mu = targets ? b_mu.data() : nullptr;
          sb.sigma = targets ? b_sigma.data() : nullptr;
          replay->sample(sb);
          g_mu = b_mu;
          g_sigma = b_sigma;
          copy_state(*gpu, *cpu);
          const int n = cpu->update(sb);
          pompc::replay::SliceBatch sg = sb;
          sg.mu = targets ? g_mu.data() : nullptr;
          sg.sigma = targets ? g_sigma.data() : nullptr;
          CHECK(gpu->update(sg) == n);
          ++c.updates;
          bool comparable = true;
          if (n > 0) {  // both planners last planned the reanalysis' H n states
            ++c.reanalyses;
            const std::vector<bool> same = compare_plan(*cpu, *gpu, H * n, tol, c);
            comparable = std::all_of(same.begin(), same.end(), [](bool x) { return x; });
          }
          if (comparable)
            compare_update(*cpu, *gpu, tol);
          else
            ++c.updates_skipped;
          if (n > 0) replay->write_batch_targets(sb, n);
        }
    }
    for (int i = 0; i < S; ++i) {
      CHECK(res[i].done);
      replay->end_episode(i, &obs[size_t(i) * O]);
    }
  }
};

void run_lockstep(const std::vector<std::string>& args, int expect_reanalyses) {
  CAPTURE(args[0]);
  Lockstep ls(args);
  const Tolerances tol = tolerances(ls.s);
  MESSAGE("lockstep " << args[0] << ": value tolerance " << tol.g_rel << " relative, update "
                      << tol.stats_rel);
  // Both agents start from the same host-initialised parameters, bit for bit.
  for (ParamSet set : pompc::model::kParamSets) {
    const size_t n = ls.cpu->world_model().param_floats(set);
    if (n)
      CHECK(host(*ls.ops_cpu, ls.cpu->world_model().params(set), n) ==
            host(*ls.ops_gpu, ls.gpu->world_model().params(set), n));
  }
  Counts c;
  uint64_t step = 0;
  ls.episode(/*random=*/true, /*update=*/false, tol, c, step);
  // A short pretraining burst on the CPU agent gives the policy and critic some shape.
  {
    const int H = ls.s.model.horizon, B = ls.s.model.batch_size, O = ls.O, A = ls.A;
    std::vector<float> b_obs(size_t(H + 1) * B * O), b_act(size_t(H) * B * A),
        b_rew(size_t(H) * B), b_mu(size_t(H) * B * A), b_sigma(b_mu.size());
    pompc::replay::SliceBatch sb;
    sb.batch = B;
    sb.obs = b_obs.data();
    sb.action = b_act.data();
    sb.reward = b_rew.data();
    if (ls.s.model.prior != pompc::model::Prior::none) {
      sb.mu = b_mu.data();
      sb.sigma = b_sigma.data();
    }
    for (int k = 0; k < 50; ++k) {
      ls.replay->sample(sb);
      ls.cpu->update(sb, /*burst=*/true);
    }
  }
  ls.episode(/*random=*/false, /*update=*/true, tol, c, step);
  MESSAGE("lockstep " << args[0] << ": " << c.states << " planned states (" << c.ties
                      << " near ties at the elite boundary, " << c.selection_flips
                      << " Gumbel draws of another elite), " << c.updates << " updates ("
                      << c.reanalyses << " with reanalysis, " << c.updates_skipped
                      << " not comparable)");
  CHECK(c.reanalyses == expect_reanalyses);
  CHECK(c.ties + c.selection_flips <= c.states / 20 + 1);
  CHECK(c.updates_skipped <= c.updates / 10 + 1);
}

}  // namespace

TEST_SUITE("agent") {
  TEST_CASE("agent lockstep: tdmpc2 on the CUDA kernels plans and updates as on the CPU") {
    run_lockstep({"preset=tdmpc2"}, 0);
  }
  TEST_CASE("agent lockstep: bmpc (V critic, reanalysis) on the CUDA kernels as on the CPU") {
    run_lockstep({"preset=bmpc"}, 5);
  }
  TEST_CASE("agent lockstep: tdmpc2sq with two environments on the CUDA kernels as on the CPU") {
    run_lockstep({"preset=tdmpc2sq", "num_envs=2"}, 0);
  }
  TEST_CASE("agent lockstep: pompc (learned prior, KL critic) on the CUDA kernels as on the CPU") {
    run_lockstep({"preset=pompc"}, 5);
  }
}
