// Bench (suite bench): what one dog-run agent step asks of the GPU, and what it would cost on an
// H100. Speed figures only: nothing here is timed, and no figure is held to its target.
//   build/bench -ts=bench -tc='*counters*'      (the emulation's counts: not in test_gpu)
//
// Counted (tests/emu/include/emu/counters.h): the real Agent on the CUDA backend, run by the host
// emulation, for dog-run's dimensions (obs 223, action 38, from the task) with the default
// structure of the 5M model and planner (tdmpc2 preset: horizon 3, 6 + 2 MPPI iterations of 512
// samples, 64 elites, 24 policy trajectories, 5 Q heads, 2 encoder layers) but narrow layers and a
// small batch, so that the emulation is quick. An agent step is what the trainer does per planned
// step (src/train/trainer.cpp, Run::act and Run::one_update): Agent::act for one state with the
// action and the planner targets copied back, then one Agent::update (outside the burst) on a
// host batch. After warm-up steps, each counted step must repeat the previous one exactly. The
// counts do not depend on the widths or the batch (the same launches, waits, copies and
// allocations, only larger): a second, wider configuration must give the same counts (bytes
// apart), which the bench checks. Targets (issue 12): <= 2 graph launches (and no eager launch
// besides), <= 1 host synchronisation, 0 allocations per agent step; printed as met / not met.
// Then the plan graph's and the update graph's nodes by kernel name (cuBLAS calls by function),
// most frequent first (emu::kernel_counts, emu::cublas_counts): also width-independent.
//
// Analytic H100 time per agent step at the real configuration (5M model, batch 256): GEMM FLOPs
// and bytes of plan and update from tests/bench_util.h (update_cost, plan_cost; the traffic
// model is stated there), then
//   as counted = roofline + (eager launches + copies) x 3 us + graph nodes x 1 us
//                + graph launches x 5 us + host syncs x 10 us + host bytes / 25 GB/s
//   eagerly    = roofline + (eager launches + graph nodes + copies) x 3 us + host syncs x 10 us
//                + host bytes / 25 GB/s   (the same work without graphs, for comparison)
// with the launch, node and copy counts measured here. Assumed: 3 us of host time per eager launch
// or copy (cudaLaunchKernel / cuBLAS / cudaMemcpyAsync cost 2-4 us, and with kernels this short
// the host is the bottleneck); 1 us per kernel node inside a graph replay; 5 us per
// cudaGraphLaunch; 10 us per host synchronisation (the wait's wake-up plus the next launch
// reaching an idle GPU); 25 GB/s between pageable host memory and the device (PCIe Gen5 x16 is
// 64 GB/s raw). The trainer's once-per-episode stats copy (1 asynchronous copy per 500 agent
// steps, read after act's wait) is left out.
#include <doctest/doctest.h>

#ifdef POMPC_EMU

#include <emu/counters.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "agent/agent.h"
#include "bench_util.h"
#include "common.h"
#include "env/env.h"
#include "ops.h"
#include "replay/replay_buffer.h"
#include "train/trainer.h"

namespace {

using emu::Counters;
using pompc::train::TrainSettings;

Counters plus(const Counters& a, const Counters& b) {
  Counters c;
  for (const emu::CounterField& f : emu::counter_fields()) c.*f.member = a.*f.member + b.*f.member;
  return c;
}

bool is_bytes(const emu::CounterField& f) {
  return std::strstr(f.name, "bytes") != nullptr;
}

using Named = std::map<std::string, emu::NamedCount>;

// Since the last reset_counters(): kernels by name, then cuBLAS calls by function (marked).
Named named_counts() {
  Named all = emu::kernel_counts();
  for (const auto& [name, n] : emu::cublas_counts()) all[name + " (cuBLAS)"] = n;
  return all;
}

struct StepCounts {
  Counters plan, update;
  Named plan_named, update_named;  // the same work by kernel name (named_counts)
  Counters step() const { return plus(plan, update); }
};

// The graph nodes of `named` by name, most frequent first (then by name).
void print_nodes_by_name(const char* what, const Named& named, uint64_t total) {
  std::vector<std::pair<std::string, uint64_t>> rows;
  for (const auto& [name, n] : named)
    if (n.graph) rows.emplace_back(name, n.graph);
  std::stable_sort(rows.begin(), rows.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  std::printf("bench: counters/%s graph nodes by name (%llu nodes, %zu names)\n", what,
              (unsigned long long)total, rows.size());
  for (const auto& [name, n] : rows)
    std::printf("bench: counters/%s %6llu  %s\n", what, (unsigned long long)n, name.c_str());
}

// dog-run with the defaults (tdmpc2, model_size 5, the planner's defaults) and `extra` on top.
TrainSettings dog_run(const pompc::env::Env& env, const std::vector<std::string>& extra) {
  pompc::io::Config cfg = pompc::train::train_config();
  std::vector<std::string> args = {"task=dog-run"};
  args.insert(args.end(), extra.begin(), extra.end());
  cfg.apply(args);
  TrainSettings s = pompc::train::settings_from(cfg);
  pompc::train::resolve_model(s, env.obs_dim(), env.act_dim(), env.episode_length());
  s.agent.max_states = 1;
  return s;
}

std::string describe(const TrainSettings& s) {
  const auto& m = s.model;
  return pompc::strfmt("enc_dim=%d mlp_dim=%d latent_dim=%d batch_size=%d", m.enc_dim, m.mlp_dim,
                       m.latent_dim, m.batch_size);
}

// Bytes an agent step moves between host and device (src/agent/agent.cpp): act uploads the
// observation, the first-step flag and the step's Philox base (a uint64) and downloads the action
// and the planner targets; update uploads the batch (obs [H+1, B, O], action [H, B, A], reward
// [H, B]; mu and sigma [H, B, A] with a prior).
void host_bytes(const TrainSettings& s, double* h2d, double* d2h) {
  const auto& m = s.model;
  const double O = m.obs_dim, A = m.action_dim, B = m.batch_size, H = m.horizon;
  const bool prior = m.prior != pompc::model::Prior::none;
  *h2d = 4 * O + 1 + 8 + 4 * ((H + 1) * B * O + H * B * A + H * B + (prior ? 2 * H * B * A : 0));
  *d2h = 3 * 4 * A;
}

// Builds the agent, takes `warmup` agent steps (>= 2: the first update runs eagerly, the second
// captures the update graph), then counts `steps` more (each must repeat the one before).
StepCounts count_agent_step(const TrainSettings& s, pompc::env::Env& env, int warmup, int steps) {
  auto ops = pompc::make_cuda_ops();
  pompc::agent::Agent agent(*ops, s.model, s.planner, s.agent);
  const int O = s.model.obs_dim, A = s.model.action_dim, B = s.model.batch_size,
            H = s.model.horizon;
  const bool prior = s.model.prior != pompc::model::Prior::none;
  std::vector<float> obs(O), action(A), mu(A), sigma(A);
  std::vector<uint8_t> first = {1};
  // A batch of plausible values (the counts do not depend on them).
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  auto fill = [&](size_t n) {
    std::vector<float> v(n);
    for (float& x : v) x = u(rng);
    return v;
  };
  std::vector<float> b_obs = fill(size_t(H + 1) * B * O), b_act = fill(size_t(H) * B * A),
                     b_rew = fill(size_t(H) * B), b_mu = fill(prior ? size_t(H) * B * A : 0),
                     b_sigma = fill(b_mu.size());
  for (float& x : b_sigma) x = 0.5f + 0.25f * x;
  pompc::replay::SliceBatch batch;
  batch.batch = B;
  batch.obs = b_obs.data();
  batch.action = b_act.data();
  batch.reward = b_rew.data();
  if (prior) {
    batch.mu = b_mu.data();
    batch.sigma = b_sigma.data();
  }
  env.reset(obs.data());
  StepCounts counted;
  for (int k = 0; k < warmup + steps; ++k) {
    emu::reset_counters();
    agent.act(obs.data(), first.data(), 1, /*explore=*/true, s.seed, uint64_t(k), action.data(),
              mu.data(), sigma.data());
    const Counters plan = emu::counters();
    const Named plan_named = named_counts();
    env.step(action.data(), obs.data());
    first[0] = 0;
    emu::reset_counters();
    agent.update(batch, /*burst=*/false);
    const Counters update = emu::counters();
    const Named update_named = named_counts();
    if (k > warmup) {  // steady state: the same requests every step
      CHECK(plan == counted.plan);
      CHECK(update == counted.update);
      CHECK(plan_named == counted.plan_named);
      CHECK(update_named == counted.update_named);
    }
    counted = {plan, update, plan_named, update_named};
  }
  return counted;
}

const char* met(bool ok) {
  return ok ? "met" : "not met";
}

}  // namespace

TEST_SUITE("bench") {
  TEST_CASE("bench counters: launches, graph launches, syncs, copies, allocations per agent step") {
    pompc::env::Env env("dog-run", 1, 2);
    const TrainSettings narrow =
        dog_run(env, {"enc_dim=16", "mlp_dim=16", "latent_dim=16", "batch_size=4"});
    const TrainSettings wider =
        dog_run(env, {"enc_dim=24", "mlp_dim=32", "latent_dim=24", "batch_size=6"});
    const TrainSettings real = dog_run(env, {});
    const StepCounts c = count_agent_step(narrow, env, 2, 2);
    const StepCounts w = count_agent_step(wider, env, 2, 2);
    // The counts, not the bytes, are the same at both widths.
    for (const emu::CounterField& f : emu::counter_fields()) {
      if (is_bytes(f)) continue;
      CAPTURE(f.name);
      CHECK(c.plan.*f.member == w.plan.*f.member);
      CHECK(c.update.*f.member == w.update.*f.member);
    }
    CHECK(c.plan_named == w.plan_named);
    CHECK(c.update_named == w.update_named);
    // The host-transfer model (used below at the real size) against the emulation's bytes.
    double h2d = 0, d2h = 0;
    host_bytes(narrow, &h2d, &d2h);
    CHECK(double(c.step().h2d_bytes) == h2d);
    CHECK(double(c.step().d2h_bytes) == d2h);

    const auto& m = real.model;
    const auto& p = real.planner;
    std::printf(
        "bench: counters dog-run (O=%d A=%d) tdmpc2, the 5M structure (H=%d, %d MPPI iterations "
        "of %d samples, %d elites, %d pi trajectories, num_q=%d, %d encoder layers) on the CUDA "
        "backend under emulation, at %s; the counts (not the bytes) are width-independent: "
        "identical at %s\n",
        m.obs_dim, m.action_dim, m.horizon, p.iterations_for(m.action_dim), p.num_samples,
        p.num_elites, p.num_pi_trajs, m.num_q, m.num_enc_layers, describe(narrow).c_str(),
        describe(wider).c_str());
    const Counters step = c.step();
    std::printf("bench: counters/%-21s %10s %10s %12s\n", "(per call)", "plan", "update",
                "agent step");
    auto row = [](const char* name, uint64_t a, uint64_t b, uint64_t s) {
      std::printf("bench: counters/%-21s %10llu %10llu %12llu\n", name, (unsigned long long)a,
                  (unsigned long long)b, (unsigned long long)s);
    };
    for (const emu::CounterField& f : emu::counter_fields()) {
      row(f.name, c.plan.*f.member, c.update.*f.member, step.*f.member);
      if (std::strcmp(f.name, "sync_free") == 0)
        row("syncs (all causes)", c.plan.syncs(), c.update.syncs(), step.syncs());
    }
    // The graph target is the work in at most 2 graph launches: no eager launch left over.
    const uint64_t eager = step.kernels + step.cublas + step.memsets;
    std::printf(
        "bench: counters/targets per agent step: work in <= 2 graph launches (%llu graph launches, "
        "%llu eager launches) %s; host syncs %llu <= 1 %s; allocations %llu == 0 %s\n",
        (unsigned long long)step.graph_launches, (unsigned long long)eager,
        met(step.graph_launches <= 2 && eager == 0), (unsigned long long)step.syncs(),
        met(step.syncs() <= 1), (unsigned long long)step.allocs, met(step.allocs == 0));

    // What the graphs' nodes are: the candidates for fusion (issue 12 item 3).
    print_nodes_by_name("plan", c.plan_named, c.plan.graph_kernels + c.plan.graph_cublas);
    print_nodes_by_name("update", c.update_named, c.update.graph_kernels + c.update.graph_cublas);

    // Analytic H100 time at the real configuration.
    const pompc::test::Cost plan = pompc::test::plan_cost(m, p),
                            update = pompc::test::update_cost(m);
    pompc::test::Cost both = plan;
    both += update;
    host_bytes(real, &h2d, &d2h);
    const double copies = double(step.h2d + step.d2h + step.d2d);
    const double launches = double(step.kernels + step.cublas + step.memsets);
    const double nodes = double(step.graph_kernels + step.graph_cublas);
    const double transfer_us = (h2d + d2h) / 25e9 * 1e6, roof_us = both.roofline_s * 1e6;
    // The step as counted: eager launches and copies at 3 us, graph nodes at 1 us, graph
    // launches at 5 us, syncs at 10 us; and the same work issued eagerly, for comparison.
    const double step_us = roof_us + (launches + copies) * 3.0 + nodes * 1.0 +
                           double(step.graph_launches) * 5.0 + double(step.syncs()) * 10.0 +
                           transfer_us;
    const double eager_us =
        roof_us + (launches + nodes + copies) * 3.0 + double(step.syncs()) * 10.0 + transfer_us;
    std::printf(
        "bench: counters/h100 dog-run 5M B=%d plan: %.1f GFLOP, %.0f MB, %.0f GEMM passes, "
        "roofline %.0f us; update: %.1f GFLOP, %.0f MB, %.0f GEMM passes, roofline %.0f us (%s)\n",
        m.batch_size, plan.flop * 1e-9, plan.bytes * 1e-6, plan.gemms, plan.roofline_s * 1e6,
        update.flop * 1e-9, update.bytes * 1e-6, update.gemms, update.roofline_s * 1e6,
        pompc::test::kH100.name);
    std::printf(
        "bench: counters/h100 agent step as counted: %.0f us = roofline %.0f + (%.0f eager "
        "launches + %.0f copies) x 3 us + %.0f graph nodes x 1 us + %llu graph launches x 5 us + "
        "%llu syncs x 10 us + %.0f KB over PCIe at 25 GB/s (%.0f us); the same work issued "
        "eagerly (every node a 3 us launch): %.0f us\n",
        step_us, roof_us, launches, copies, nodes, (unsigned long long)step.graph_launches,
        (unsigned long long)step.syncs(), (h2d + d2h) * 1e-3, transfer_us, eager_us);
    std::fflush(stdout);
  }
}

// What the speed work built, held as behaviour (not speed): an agent step on the CUDA backend
// waits for the host once (act's action); its plan is one graph launch after three uploads
// (observation, first flag, the step's Philox base), its update one graph launch after one
// upload (the batch), neither with an eager launch left over; nothing allocates.
TEST_SUITE("agent") {
  TEST_CASE("agent: one host wait and two graph launches per agent step (CUDA, emulated)") {
    pompc::env::Env env("dog-run", 1, 2);
    for (const char* preset : {"preset=tdmpc2", "preset=pompc"}) {
      CAPTURE(preset);
      const TrainSettings s = dog_run(
          env, {preset, "enc_dim=16", "mlp_dim=16", "latent_dim=16", "batch_size=4"});
      const StepCounts c = count_agent_step(s, env, 2, 2);
      CHECK(c.plan.syncs() == 1);
      CHECK(c.plan.graph_launches == 1);
      CHECK(c.plan.graph_kernels > 100);  // the whole plan is in the graph
      CHECK(c.plan.kernels + c.plan.cublas + c.plan.memsets == 0);
      CHECK(c.plan.h2d == 3);
      CHECK(c.update.syncs() == 0);
      CHECK(c.update.graph_launches == 1);
      CHECK(c.update.graph_kernels > 100);  // the whole update is in the graph
      CHECK(c.update.kernels + c.update.cublas + c.update.memsets == 0);
      CHECK(c.update.h2d == 1);
      CHECK(c.step().allocs == 0);
      CHECK(c.step().frees == 0);
    }
  }
}

#endif  // POMPC_EMU
