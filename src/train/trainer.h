// src/train/trainer.h: the training loop (SPEC section 2's schedule, section 3's planner, section
// 5's planner targets) and evaluation of checkpoints, with the run directory of DESIGN.md.
//
// Run book
//   settings   TrainSettings: one commented default per field; train_config() is the key table
//              (src/io/config.h, keys named as TD-MPC2's config.yaml) with the presets (tdmpc2
//              only for now), so `pompc train key=value ...` rejects an unknown key with the list
//              of valid ones. model dims left at 0 come from model_size.
//   loop       one environment (action_repeat 2: an agent step is two control steps; `steps`,
//              eval_freq and checkpoint_freq count env steps = agent steps * action_repeat,
//              seed_steps counts agent steps, 0 = max(1000, 5 L)). Per agent step:
//                action = uniform in [-1, 1] (Philox(seed, kUniformOffset, step * A + j)) while
//                  step < seed_steps, else the planner's (explore = true, warm start except at
//                  an episode's first step, first flag = 1 there)
//                env step; replay.add(obs, action, reward, planner target or sentinel)
//                step == seed_steps: seed_steps updates in a row (the pretraining burst; deferred
//                  to the first step with a sampleable slice if no episode has ended yet);
//                  step > seed_steps: one update
//              At an episode's end: replay.end_episode; the last update's UpdateStats copied to
//              the host (NaN / inf in a loss stops the run, naming the loss and the step, before
//              anything is written, so the last checkpoint stays good); one train.csv row (the
//              episode's return and length, that last update's losses, nan before the first
//              update, the episode's env steps/s) and one progress line on stdout; evaluation when env_step has reached the next multiple of
//              eval_freq; a checkpoint when it has reached the next multiple of checkpoint_freq.
//              The run ends at the first episode end with env_step >= steps (final eval and
//              checkpoint there).
//   eval       eval_episodes episodes on a second Env (seed + kEvalSeedOffset), planner with
//              explore = false; eval.csv rows: env_step, return_mean, return_std, episodes.
//   run dir    run_dir (default runs/<task>/<preset>/<seed>): config.txt (key=value lines),
//              train.csv, eval.csv, checkpoint.safetensors, replay.safetensors (save_buffer).
//   checkpoint safetensors, atomic: every WorldModel tensor by its state_dict name (model, pi,
//              target Qs), Adam moments "optim.<model|pi>.exp_avg|exp_avg_sq", Adam step and bias
//              corrections, "q_scale"; metadata: config lines, counters (agent/env steps,
//              episodes, eval episodes run, updates, next eval / checkpoint step, elapsed time),
//              the replay buffer's episode count. resume=true loads it (its config, then the
//              command line's key=value on top, e.g. a larger steps=), the replay buffer
//              (replay.safetensors, when saved) and replays the environments' reset draws so
//              their initial-state streams continue where they stopped; the CSV logs drop rows
//              after the checkpoint's env_step. With save_buffer=true the resumed run repeats the
//              uninterrupted one bit for bit (tested). Without it the buffer restarts empty.
//   tests      build/test_emu -ts=e2e,agent
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "agent/agent.h"
#include "agent/planner.h"
#include "io/config.h"
#include "model/config.h"
#include "model/world_model.h"

namespace pompc::train {

struct TrainSettings {
  std::string task = "dog-run";    // TD-MPC2 task name (pompc tasks)
  std::string preset = "tdmpc2";   // algorithm preset: tdmpc2 | bmpc | tdmpc2sq | pompc
  int64_t steps = 10'000'000;      // env steps to train (action repeat counted)
  int64_t seed_steps = 0;          // random-action agent steps; 0 = max(1000, 5 episode_length)
  int64_t eval_freq = 50'000;      // env steps between evaluations
  int eval_episodes = 10;          // episodes per evaluation
  int64_t checkpoint_freq = 100'000;  // env steps between checkpoints (and one at the end)
  bool save_buffer = true;         // also save the replay buffer at each checkpoint (resume)
  int action_repeat = 2;           // control steps per agent step (TD-MPC2 DMC: 2)
  int64_t buffer_size = 1'000'000; // replay capacity in records
  std::string device = "auto";     // auto | cpu | cuda
  uint64_t seed = 1;               // seeds the env, model init, planner, sampler
  std::string run_dir;             // default runs/<task>/<preset>/<seed>
  bool resume = false;             // continue from run_dir/checkpoint.safetensors
  model::ModelConfig model;        // sizes and update settings (model_size, mlp_dim, ...)
  agent::PlannerSettings planner;  // iterations, num_samples, num_elites, ...
  agent::AgentSettings agent;      // reanalysis and the burst's policy step (max_states: envs)
};

// The key table with presets.
io::Config train_config();
// Settings from an applied config (model dims still unresolved against the task: see
// resolve_model).
TrainSettings settings_from(const io::Config& cfg);
// Fills obs/action dims and the discount from the task and checks model vs planner settings.
void resolve_model(TrainSettings& s, int obs_dim, int action_dim, int episode_length);

struct TrainResult {
  int64_t env_steps = 0;       // env steps done when the run ended
  int64_t episodes = 0;        // training episodes done
  uint64_t updates = 0;        // model updates taken
  double last_eval_mean = 0;   // mean return of the last evaluation
  double steps_per_s = 0;      // env steps per second over this process's episodes
  std::string run_dir;
};

// pompc train key=value ...: the whole run (see the run book). Progress goes to stdout.
TrainResult train(const std::vector<std::string>& args);

// Throws pompc::Error naming the first non-finite field of `stats` (a loss, a gradient norm or
// S_Q), the env step and the update, and saying that the last checkpoint is intact.
void check_losses_finite(const model::UpdateStats& stats, int64_t env_step, uint64_t updates);

struct EvalResult {
  std::vector<double> returns;
  double mean = 0, std = 0;
};

// pompc eval: loads a checkpoint and runs `episodes` deterministic episodes (device "" = the
// checkpoint's; seed 0 = the checkpoint's seed + kEvalSeedOffset).
EvalResult evaluate_checkpoint(const std::string& path, int episodes, const std::string& device,
                               uint64_t seed);

constexpr uint64_t kEvalSeedOffset = 1'000'003;       // eval Env seed = seed + this
constexpr uint64_t kUniformOffset = 3ull << 60;       // Philox offset of seed-phase actions
constexpr uint64_t kEvalPlanStep = 1ull << 50;        // eval planner steps start here

}  // namespace pompc::train
