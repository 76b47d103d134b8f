// End to end: short training runs of a tiny TD-MPC2 model on pendulum-swingup (action_repeat 8,
// so an episode is 125 agent steps = 1000 env steps): the run directory's files and columns, the
// seed phase's uniform random actions (read back from the saved replay buffer), bit-exact resume
// from the checkpoint, `pompc eval` of the checkpoint, and refusal of a damaged checkpoint; then
// num_envs = 2 (action_repeat 20: 50 agent steps per episode): per-env seed-phase draws, one
// train.csv row per env episode, bit-exact resume, refusal of a resume with another num_envs.
//
// Run: build/test_emu -ts=e2e      (about 10-20 s under ASan)
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "common.h"
#include "io/atomic_file.h"
#include "io/csv.h"
#include "io/safetensors.h"
#include "philox.cuh"
#include "replay/replay_buffer.h"
#include "test_io_tmp.h"
#include "train/trainer.h"

namespace {

// Two episodes: the first in the seed phase, the second planned, with a 125-update burst.
std::vector<std::string> tiny_run(const std::string& run_dir, int64_t steps) {
  return {"task=pendulum-swingup", "action_repeat=8", "steps=" + std::to_string(steps),
          "seed_steps=125", "eval_freq=1000", "eval_episodes=1", "checkpoint_freq=1000",
          "model_size=1", "enc_dim=32", "mlp_dim=32", "latent_dim=16", "batch_size=16",
          "buffer_size=10000", "iterations=2", "num_samples=32", "num_elites=8",
          "num_pi_trajs=4", "device=cpu", "seed=3", "run_dir=" + run_dir};
}

// Two envs, two rounds of 2 x 50 agent steps: seed_steps = 75 ends inside the first round (env
// 1's action at vector step k = 74 is planned, env 0's is random), so the burst waits for the
// first episodes to end and runs at the second round's first vector step.
std::vector<std::string> two_env_run(const std::string& run_dir, int64_t steps) {
  auto args = tiny_run(run_dir, steps);
  for (std::string& a : args) {
    if (a == "action_repeat=8") a = "action_repeat=20";
    if (a == "seed_steps=125") a = "seed_steps=75";
  }
  args.push_back("num_envs=2");
  args.push_back("preset=tdmpc2sq");  // stores planner targets, never reanalyses them
  return args;
}

// Every F32 tensor of a checkpoint, by name.
std::vector<std::pair<std::string, std::vector<float>>> tensors_of(const std::string& path) {
  pompc::io::SafetensorsFile f(path);
  std::vector<std::pair<std::string, std::vector<float>>> out;
  for (const auto& t : f.tensors())
    if (t.dtype == pompc::io::DType::F32) out.emplace_back(t.name, f.read_vector<float>(t.name));
  return out;
}

// Tensors of two checkpoints that differ (by name and bits), the first five named.
size_t count_differing(const std::vector<std::pair<std::string, std::vector<float>>>& ta,
                       const std::vector<std::pair<std::string, std::vector<float>>>& tb) {
  REQUIRE(ta.size() == tb.size());
  size_t differing = 0;
  for (size_t i = 0; i < ta.size(); ++i)
    if (ta[i].first != tb[i].first || ta[i].second != tb[i].second) {
      if (differing++ < 5) MESSAGE("differs after resume: " << ta[i].first);
    }
  return differing;
}

}  // namespace

TEST_SUITE("e2e") {
  TEST_CASE("e2e: a short run writes its run directory; resume repeats the uninterrupted run") {
    pompc::test::TempDir tmp;
    const std::string a = tmp.file("a"), b = tmp.file("b");

    const auto ra = pompc::train::train(tiny_run(a, 2000));
    CHECK(ra.env_steps == 2000);
    CHECK(ra.episodes == 2);
    CHECK(ra.updates == 249);  // a burst of 125 at step 125, then one per step 126..249
    CHECK(std::isfinite(ra.last_eval_mean));

    // config.txt: key=value lines, the command line's values in them.
    const std::string cfg = pompc::io::read_file(a + "/config.txt");
    CHECK(cfg.find("task=pendulum-swingup\n") != std::string::npos);
    CHECK(cfg.find("mlp_dim=32\n") != std::string::npos);
    CHECK(cfg.find("preset=tdmpc2\n") != std::string::npos);
    // train.csv / eval.csv columns and rows.
    const auto tr = pompc::io::read_csv(a + "/train.csv");
    CHECK(tr.header == std::vector<std::string>{"env_step", "episode", "episode_return",
                                                "episode_length", "updates", "consistency_loss",
                                                "reward_loss", "value_loss", "total_loss",
                                                "grad_norm", "pi_loss", "pi_grad_norm",
                                                "pi_scale", "prior_loss", "prior_scale",
                                                "prior_fit_loss", "reanalyses", "steps_per_s",
                                                "elapsed_s"});
    REQUIRE(tr.rows.size() == 2);
    CHECK(tr.rows[0][0] == "1000");
    CHECK(tr.rows[1][0] == "2000");
    CHECK(tr.rows[0][5] == "nan");  // no update during the seed phase
    CHECK(std::isfinite(std::stod(tr.rows[1][5])));
    const auto ev = pompc::io::read_csv(a + "/eval.csv");
    CHECK(ev.header == std::vector<std::string>{"env_step", "return_mean", "return_std", "episodes"});
    REQUIRE(ev.rows.size() == 2);
    CHECK(ev.rows[1][0] == "2000");
    CHECK(pompc::io::path_exists(a + "/checkpoint.safetensors"));

    // The seed phase's actions: uniform in [-1, 1] (tdmpc2 stores no planner targets).
    pompc::replay::ReplaySettings rs;
    rs.capacity = 10000;
    rs.obs_dim = 3;
    rs.action_dim = 1;
    rs.seed = 3;
    rs.planner_targets = false;
    pompc::replay::ReplayBuffer buf(rs);
    buf.load(a + "/replay.safetensors");
    REQUIRE(buf.size() == 2 * 126);
    double sum = 0, sum2 = 0;
    for (int64_t i = 0; i < 125; ++i) {
      CHECK_FALSE(buf.has_target(i));
      const float x = buf.action_at(i)[0];
      CHECK(x >= -1.0f);
      CHECK(x <= 1.0f);
      sum += x;
      sum2 += double(x) * x;
    }
    CHECK(std::fabs(sum / 125) < 0.15);                // mean of U(-1, 1): 0 (+- 2.6 sigma)
    CHECK(std::fabs(sum2 / 125 - 1.0 / 3.0) < 0.1);     // second moment: 1/3

    // Interrupted run: one episode, then resume=true with the larger step count.
    const auto rb1 = pompc::train::train(tiny_run(b, 1000));
    CHECK(rb1.env_steps == 1000);
    auto args = tiny_run(b, 2000);
    args.push_back("resume=true");
    const auto rb2 = pompc::train::train(args);
    CHECK(rb2.env_steps == 2000);
    CHECK(rb2.episodes == 2);
    CHECK(rb2.updates == 249);
    const auto trb = pompc::io::read_csv(b + "/train.csv");
    REQUIRE(trb.rows.size() == 2);
    CHECK(trb.rows[1][0] == "2000");
    // Bit for bit: every tensor (weights, target Qs, Adam moments, q_scale) equals run a's.
    const auto ta = tensors_of(a + "/checkpoint.safetensors");
    const auto tb = tensors_of(b + "/checkpoint.safetensors");
    CHECK(count_differing(ta, tb) == 0);

    // A fresh run into a directory with a checkpoint is refused.
    CHECK_THROWS_WITH_AS(pompc::train::train(tiny_run(a, 2000)),
                         doctest::Contains("resume=true"), pompc::Error);

    // pompc eval: deterministic episodes of the checkpoint.
    const auto e1 = pompc::train::evaluate_checkpoint(a + "/checkpoint.safetensors", 1, "cpu", 0);
    REQUIRE(e1.returns.size() == 1);
    CHECK(e1.returns[0] >= 0.0);
    CHECK(e1.returns[0] <= 1000.0);
    CHECK(e1.std == 0.0);

    // A damaged checkpoint is refused: a flipped data byte (checksum), a truncated file.
    const std::string good = pompc::io::read_file(a + "/checkpoint.safetensors");
    std::string bad = good;
    bad[bad.size() - 3] ^= 0x40;
    pompc::io::write_file_atomic(tmp.file("flipped.safetensors"), bad);
    CHECK_THROWS_WITH_AS(
        pompc::train::evaluate_checkpoint(tmp.file("flipped.safetensors"), 1, "cpu", 0),
        doctest::Contains("is corrupted"), pompc::Error);
    pompc::io::write_file_atomic(tmp.file("short.safetensors"), good.substr(0, good.size() / 2));
    CHECK_THROWS_WITH_AS(
        pompc::train::evaluate_checkpoint(tmp.file("short.safetensors"), 1, "cpu", 0),
        doctest::Contains("is not readable"), pompc::Error);
    pompc::io::write_file_atomic(tmp.file("other.safetensors"), "not a checkpoint at all");
    CHECK_THROWS_WITH_AS(
        pompc::train::evaluate_checkpoint(tmp.file("other.safetensors"), 1, "cpu", 0),
        doctest::Contains("not readable"), pompc::Error);
  }

  TEST_CASE("e2e: resume=true without a checkpoint says what to do") {
    pompc::test::TempDir tmp;
    auto args = tiny_run(tmp.file("none"), 1000);
    args.push_back("resume=true");
    CHECK_THROWS_WITH_AS(pompc::train::train(args), doctest::Contains("does not exist"),
                         pompc::Error);
  }

  TEST_CASE("e2e: every preset trains a few hundred steps; bmpc and pompc resume bit for bit") {
    pompc::test::TempDir tmp;
    struct Case {
      std::vector<std::string> args;
      int reanalyses;  // 124 updates after the burst, one reanalysis every 10: 12
    };
    const Case cases[] = {{{"preset=bmpc"}, 12},
                          {{"preset=tdmpc2sq"}, 0},
                          {{"preset=pompc"}, 12},
                          {{"preset=pompc", "prior_fit=reverse", "lambda=9"}, 12},
                          {{"preset=pompc", "prior=intermediate", "divergence=forward",
                            "kl_critic=false"},
                           12}};
    int k = 0;
    for (const Case& c : cases) {
      std::string name = "p";  // (not "p" + to_string: GCC 12 -O3 -Wrestrict false positive)
      name += std::to_string(k++);
      const std::string dir = tmp.file(name);
      CAPTURE(dir);
      CAPTURE(c.args[0]);
      auto args = tiny_run(dir, 2000);
      args.insert(args.end(), c.args.begin(), c.args.end());
      const auto r = pompc::train::train(args);
      CHECK(r.env_steps == 2000);
      CHECK(r.updates == 249);
      const auto tr = pompc::io::read_csv(dir + "/train.csv");
      REQUIRE(tr.rows.size() == 2);
      const auto& row = tr.rows[1];
      for (size_t i = 5; i < 16; ++i) {  // consistency_loss .. prior_fit_loss
        CAPTURE(tr.header[i]);
        CHECK(std::isfinite(std::stod(row[i])));
      }
      CHECK(tr.header[16] == "reanalyses");
      CHECK(std::stoi(row[16]) == c.reanalyses);
      // Planned steps store planner targets (seed-phase records get them when reanalysed).
      pompc::replay::ReplaySettings rs;
      rs.capacity = 10000;
      rs.obs_dim = 3;
      rs.action_dim = 1;
      rs.seed = 3;
      pompc::replay::ReplayBuffer buf(rs);
      buf.load(dir + "/replay.safetensors");
      for (int64_t i = 126; i < 126 + 125; ++i) CHECK(buf.has_target(i));
    }
    // bmpc and pompc interrupted after the second episode (12 reanalyses in, targets written
    // back; pompc's learned prior and its Adam state in the checkpoint) and resumed for a third:
    // every tensor equals the uninterrupted 3-episode run's.
    for (const char* preset : {"preset=bmpc", "preset=pompc"}) {
      CAPTURE(preset);
      const std::string a = tmp.file(std::string(preset + 7) + "-3"),
                        b = tmp.file(std::string(preset + 7) + "-resume");
      auto whole = tiny_run(a, 3000);
      whole.push_back(preset);
      pompc::train::train(whole);
      auto first = tiny_run(b, 2000);
      first.push_back(preset);
      pompc::train::train(first);
      auto second = tiny_run(b, 3000);
      second.push_back(preset);
      second.push_back("resume=true");
      const auto rs2 = pompc::train::train(second);
      CHECK(rs2.updates == 374);
      const auto tra = pompc::io::read_csv(a + "/train.csv"),
                 trb = pompc::io::read_csv(b + "/train.csv");
      REQUIRE(tra.rows.size() == 3);
      REQUIRE(trb.rows.size() == 3);
      CHECK(tra.rows[2][16] == "24");
      CHECK(tra.rows[2][10] == trb.rows[2][10]);  // the last pi_loss, printed in full
      const auto ta = tensors_of(a + "/checkpoint.safetensors");
      CHECK(count_differing(ta, tensors_of(b + "/checkpoint.safetensors")) == 0);
      const size_t prior_tensors = size_t(std::count_if(ta.begin(), ta.end(), [](const auto& t) {
        return t.first.find("_pi_prior") != std::string::npos;
      }));
      CHECK((prior_tensors > 0) == (std::string(preset) == "preset=pompc"));
    }
  }

  // PO-MPC at lambda = 0 without the critic's KL is TD-MPC2: the learned prior is fitted (its own
  // parameters) but nothing else sees it, so every shared tensor of the checkpoint is identical.
  TEST_CASE("e2e: prior=learned lambda=0 kl_critic=false trains exactly as tdmpc2") {
    pompc::test::TempDir tmp;
    const std::string a = tmp.file("tdmpc2"), b = tmp.file("lambda0");
    pompc::train::train(tiny_run(a, 2000));
    auto args = tiny_run(b, 2000);
    for (const char* kv : {"prior=learned", "lambda=0", "kl_critic=false"}) args.push_back(kv);
    pompc::train::train(args);
    const auto ta = tensors_of(a + "/checkpoint.safetensors");
    const auto tb = tensors_of(b + "/checkpoint.safetensors");
    size_t shared = 0, differing = 0;
    for (const auto& [name, value] : ta)
      for (const auto& [name_b, value_b] : tb)
        if (name == name_b) {
          ++shared;
          if (value != value_b && differing++ < 5) MESSAGE("differs: " << name);
        }
    CHECK(shared == ta.size());
    CHECK(tb.size() > ta.size());  // b also holds the prior and its Adam state
    CHECK(differing == 0);
  }

  // Learning, not just running: make run's small CPU model (README) with action_repeat 4 (an
  // episode is 250 agent steps, so 16k env steps are 4000 agent steps: 500 random, a 500-update
  // burst, then one update per step). A uniformly random policy scores 220-400 on this task (the
  // seed-phase episodes); TD-MPC2 balances the pole and scores about 600 here (measured: 642 with
  // the -O2 build, 579 with this test build, whose figure is printed below; 3m40s on one core).
  TEST_CASE("e2e: a small TD-MPC2 model learns cartpole-balance (eval return >= 500 at 16k steps)") {
    pompc::test::TempDir tmp;
    const std::string dir = tmp.file("learn");
    const auto r = pompc::train::train(
        {"task=cartpole-balance", "action_repeat=4", "steps=16000", "seed_steps=500",
         "eval_freq=16000", "eval_episodes=3", "checkpoint_freq=16000", "model_size=1",
         "enc_dim=64", "mlp_dim=64", "latent_dim=32", "batch_size=64", "iterations=4",
         "num_samples=128", "num_elites=16", "num_pi_trajs=8", "device=cpu", "seed=1",
         "save_buffer=false", "run_dir=" + dir});
    MESSAGE("cartpole-balance eval return at 16k env steps: " << r.last_eval_mean);
    const auto tr = pompc::io::read_csv(dir + "/train.csv");
    REQUIRE(tr.rows.size() >= 2);
    const double random_return = std::stod(tr.rows[0][2]);  // a seed-phase episode
    CHECK(random_return < 450.0);
    CHECK(r.last_eval_mean >= 500.0);
  }

  TEST_CASE("e2e: num_envs=2 logs one row per env episode and resumes bit for bit") {
    pompc::test::TempDir tmp;
    const std::string a = tmp.file("a"), b = tmp.file("b");
    const auto ra = pompc::train::train(two_env_run(a, 4000));
    CHECK(ra.env_steps == 4000);
    CHECK(ra.episodes == 4);
    // 125 planned agent steps; the 25 of round 1 find no slice to sample (no episode has ended),
    // the burst of 75 takes the place of one of round 2's 100.
    CHECK(ra.updates == 174);
    CHECK(ra.burst_updates == 75);
    CHECK(std::isfinite(ra.last_eval_mean));
    CHECK(pompc::io::read_file(a + "/config.txt").find("num_envs=2\n") != std::string::npos);
    const auto tr = pompc::io::read_csv(a + "/train.csv");
    REQUIRE(tr.rows.size() == 4);
    const char* env_step[4] = {"2000", "2000", "4000", "4000"};
    for (int r = 0; r < 4; ++r) {
      CHECK(tr.rows[r][0] == env_step[r]);
      CHECK(tr.rows[r][1] == std::to_string(r + 1));
      CHECK(tr.rows[r][3] == "50");
    }
    CHECK(tr.rows[1][5] == "nan");  // no update in round 1
    CHECK(std::isfinite(std::stod(tr.rows[3][5])));
    CHECK(pompc::io::read_csv(a + "/eval.csv").rows.size() == 2);

    // The buffer: env 0's episodes first at each round end. Seed-phase actions are agent steps
    // 2t (env 0) and 2t + 1 (env 1) of the uniform stream; planned from agent step 75 on.
    pompc::replay::ReplaySettings rs;
    rs.capacity = 10000;
    rs.obs_dim = 3;
    rs.action_dim = 1;
    rs.num_envs = 2;
    rs.seed = 3;
    pompc::replay::ReplayBuffer buf(rs);
    buf.load(a + "/replay.safetensors");
    REQUIRE(buf.size() == 4 * 51);
    CHECK(buf.episode_of(0) != buf.episode_of(51));
    CHECK(buf.obs_at(0)[0] != buf.obs_at(51)[0]);  // env 1's own initial state
    for (int env = 0; env < 2; ++env)
      for (int64_t t = 0; t < 50; ++t) {
        const int64_t step = 2 * t + env, rec = env * 51 + t;
        if (step < 75) {
          CHECK_FALSE(buf.has_target(rec));
          const float want =
              2.0f * pompc::philox_uniform(3, pompc::train::kUniformOffset, step) - 1.0f;
          CHECK(buf.action_at(rec)[0] == want);
        } else {
          CHECK(buf.has_target(rec));
        }
      }

    // Interrupted after round 1, resumed: the same final tensors.
    const auto rb1 = pompc::train::train(two_env_run(b, 2000));
    CHECK(rb1.env_steps == 2000);
    CHECK(rb1.updates == 0);
    auto args = two_env_run(b, 4000);
    args.push_back("resume=true");
    // A resume with another num_envs is refused, naming both.
    auto other = args;
    other.push_back("num_envs=1");
    CHECK_THROWS_WITH_AS(pompc::train::train(other),
                         doctest::Contains("num_envs=2, this run asks for num_envs=1"),
                         pompc::Error);
    const auto rb2 = pompc::train::train(args);
    CHECK(rb2.env_steps == 4000);
    CHECK(rb2.episodes == 4);
    CHECK(rb2.updates == 174);
    const auto trb = pompc::io::read_csv(b + "/train.csv");
    REQUIRE(trb.rows.size() == 4);
    CHECK(trb.rows[3][0] == "4000");
    CHECK(trb.rows[3][2] == tr.rows[3][2]);  // the same returns
    CHECK(trb.rows[2][2] == tr.rows[2][2]);
    CHECK(count_differing(tensors_of(a + "/checkpoint.safetensors"),
                          tensors_of(b + "/checkpoint.safetensors")) == 0);
  }
}


// The trainer on the CUDA backend (emulated here; test_gpu runs the same on a GPU): every preset
// trains through the seed phase, the burst and planned steps with reanalysis, evaluates,
// checkpoints and resumes, with the same step, update and reanalysis counts as on the CPU. (How
// close its numbers are to the CPU's, step by step: tests/test_agent_cuda.cpp.)
namespace {
// cartpole-balance with action_repeat 20: 50 agent steps per episode. S = 1: episode 1 random;
// at step 50 (the first with a sampleable slice) the burst of 50 updates, then one update per
// step: 99 updates and 4 reanalyses by the end of episode 2.
std::vector<std::string> cuda_run(const std::string& run_dir, int64_t steps,
                                  const std::string& device) {
  return {"task=cartpole-balance", "action_repeat=20", "steps=" + std::to_string(steps),
          "seed_steps=50", "eval_freq=" + std::to_string(steps), "eval_episodes=1",
          "checkpoint_freq=1000",
          "model_size=1", "enc_dim=32", "mlp_dim=32", "latent_dim=16", "batch_size=16",
          "buffer_size=10000", "iterations=2", "num_samples=32", "num_elites=8",
          "num_pi_trajs=4", "seed=5", "device=" + device, "run_dir=" + run_dir};
}
}  // namespace

TEST_SUITE("e2e") {
  TEST_CASE("e2e: every preset trains, evaluates and resumes on the CUDA backend") {
    pompc::test::TempDir tmp;
    struct Case {
      std::vector<std::string> args;
      uint64_t updates;
      int reanalyses;
    };
    // S = 2: 4 episodes (2 rounds); round 1 has no sampleable slice, round 2's first vector step
    // runs the burst in place of one of its 2 updates: 50 + 1 + 49 * 2 = 149 updates.
    const Case cases[] = {{{"preset=tdmpc2"}, 99, 0},
                          {{"preset=bmpc"}, 99, 4},
                          {{"preset=tdmpc2sq", "num_envs=2"}, 149, 0},
                          {{"preset=pompc"}, 99, 4}};
    int k = 0;
    for (const Case& c : cases) {
      CAPTURE(c.args[0]);
      std::string name = "cuda";
      name += std::to_string(k++);
      const bool two_envs = c.updates == 149;
      const int64_t steps = two_envs ? 4000 : 2000;
      std::vector<std::string> args[2] = {cuda_run(tmp.file(name), steps, "cuda"),
                                          cuda_run(tmp.file(name + "-cpu"), steps, "cpu")};
      pompc::train::TrainResult r[2];
      for (int b = 0; b < 2; ++b) {
        args[b].insert(args[b].end(), c.args.begin(), c.args.end());
        r[b] = pompc::train::train(args[b]);
        CHECK(r[b].env_steps == steps);
        CHECK(r[b].updates == c.updates);
        CHECK(std::isfinite(r[b].last_eval_mean));
      }
      const auto tr = pompc::io::read_csv(tmp.file(name) + "/train.csv");
      const auto tr_cpu = pompc::io::read_csv(tmp.file(name + "-cpu") + "/train.csv");
      REQUIRE(tr.rows.size() == tr_cpu.rows.size());
      const auto& last = tr.rows.back();
      for (size_t i = 5; i < 16; ++i) {  // consistency_loss .. prior_fit_loss
        CAPTURE(tr.header[i]);
        CHECK(std::isfinite(std::stod(last[i])));
      }
      CHECK(std::stoi(last[16]) == c.reanalyses);
      CHECK(tr_cpu.rows.back()[16] == last[16]);
      // The seed-phase episode does not depend on the backend: the same return, bit for bit.
      if (!two_envs) CHECK(tr.rows[0][2] == tr_cpu.rows[0][2]);
      // Checkpoints load on either backend: the CUDA run's evaluates on the CPU and vice versa.
      const auto e1 = pompc::train::evaluate_checkpoint(
          tmp.file(name) + "/checkpoint.safetensors", 1, "cpu", 0);
      const auto e2 = pompc::train::evaluate_checkpoint(
          tmp.file(name + "-cpu") + "/checkpoint.safetensors", 1, "cuda", 0);
      CHECK(std::isfinite(e1.mean));
      CHECK(std::isfinite(e2.mean));
    }
    // pompc interrupted after the first episode (the burst) and resumed on the CUDA backend: the
    // same tensors as the uninterrupted CUDA run (the learned prior, its Adam state, S_D and the
    // reanalysis clock restored onto device memory).
    const std::string b = tmp.file("cuda-resume");
    auto first = cuda_run(b, 1000, "cuda");
    first.push_back("preset=pompc");
    pompc::train::train(first);
    auto second = cuda_run(b, 2000, "cuda");
    second.push_back("preset=pompc");
    second.push_back("resume=true");
    CHECK(pompc::train::train(second).updates == 99);
    CHECK(count_differing(tensors_of(tmp.file("cuda3") + "/checkpoint.safetensors"),
                          tensors_of(b + "/checkpoint.safetensors")) == 0);
  }
}
