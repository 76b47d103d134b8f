// src/train/trainer.h: the training loop (SPEC section 2's schedule, section 3's planner, section
// 5's planner targets) and evaluation of checkpoints, with the run directory of DESIGN.md.
//
// Run book
//   settings   TrainSettings: one commented default per field; train_config() is the key table
//              (src/io/config.h, keys named as TD-MPC2's config.yaml) with the presets of SPEC
//              section 4 (tdmpc2, bmpc, tdmpc2sq, pompc: the key=value lists in train_config()),
//              so `pompc train key=value ...` rejects an unknown key with the list of valid ones.
//              model dims left at 0 come from model_size; lambda >= 0 (unbounded, PO-MPC's
//              KL weight) sets q_coef = 1 and prior_coef = lambda.
//   loop       (trainer.cpp: class Run, one member function per step below: round, act,
//              step_envs, store, update, end_episodes, evaluate, print_progress, save)
//              num_envs = S environments of the task (env::VecEnv, stepped on its thread pool;
//              env i seeded VecEnv::env_seed(seed, i), so env 0 is the S = 1 run's env) and one
//              Agent built for S states (action_repeat 2: an agent step is two control steps;
//              `steps`, eval_freq and checkpoint_freq count env steps = agent steps *
//              action_repeat over all envs, seed_steps counts agent steps over all envs, 0 =
//              max(1000, 5 L)). The run goes in rounds: all envs reset, then vector steps until
//              every env's episode is over (DMC episodes have a fixed length, so all end at the
//              same step; an env that ends early, e.g. on a physics error, is ended alone and
//              sits out the rest of the round). Per vector step, the active envs' actions are
//              agent steps k, k + 1, ... in env order (k = agent steps so far):
//                env i's action = uniform in [-1, 1] (Philox(seed, kUniformOffset, k_i * A + j))
//                  while k_i < seed_steps, else the planner's: one Agent::act for all S states
//                  (explore = true, plan step k, warm start except at a round's first step,
//                  first[i] = 1 there)
//                one update per planned agent step (k_i >= seed_steps), S per vector step; the
//                  first time a slice can be sampled (an episode has ended), the pretraining
//                  burst of seed_steps updates in a row takes the place of one of them (so
//                  after the seed phase, updates = agent steps - 1 when seed_steps >= S L:
//                  an episode has ended by then). An update samples a batch (with the planner
//                  targets and ring indices when the objective has a prior), runs
//                  Agent::update (burst = true inside the burst: no reanalysis, and no policy
//                  step when pretrain_policy=false) and writes the slices lazy reanalysis
//                  re-planned back into the buffer (ReplayBuffer::write_batch_targets)
//                VecEnv step; replay.add(i, obs, action, reward, planner target or sentinel).
//                  The updates come before the env step and the add: a batch never holds the
//                  step's transitions, since an episode becomes sampleable only when it ends
//                  (after the add, below), so this is TD-MPC2's act, step, add, update order in
//                  its numbers, and on a GPU the update runs there (launched, not waited for)
//                  while MuJoCo steps the envs on the CPU (issue 12's overlap).
//              At an env's episode end: replay.end_episode(i); the last update's UpdateStats
//              start their copy to the host (Agent::stage_stats, no wait); one train.csv row
//              per ended episode, in env order (the episode's return and length, that last
//              update's losses, nan before the first update, the round's env steps/s over all
//              envs so far), written once the stats have arrived: after the next round's first
//              act (its wait covers the copy) or, before an evaluation or checkpoint, at once.
//              NaN / inf in a loss stops the run there, naming the loss and the step, before
//              the row, an evaluation or a checkpoint is written, so the last checkpoint stays
//              good. At a round's end: one progress line on stdout;
//              evaluation when env_step has reached the next multiple of eval_freq; a
//              checkpoint when it has reached the next multiple of checkpoint_freq. The run
//              ends at the first round end with env_step >= steps (final eval and checkpoint
//              there). With S = 1 this is the one-env loop exactly (same draws, same updates).
//   threads    num_threads=N: N OpenMP threads (omp_set_num_threads) and an env pool of
//              min(N, S) threads; 0: OpenMP's default and env::available_cores() (pompc sweep
//              gives each of its parallel runs available cores / jobs)
//   eval       eval_episodes episodes on a second Env (seed + kEvalSeedOffset), planner with
//              explore = false; eval.csv rows: env_step, return_mean, return_std, episodes.
//   videos     save_video=true: the first video_episodes episodes of each evaluation (all of
//              them when eval_episodes is smaller), one after another, into
//              run_dir/videos/eval_<env_step>.mp4 (ffmpeg on PATH) or .gif (pompc's own encoder),
//              written atomically (io/video.h). As TD-MPC2's VideoRecorder: a frame of the reset
//              state, then one per agent step (an episode is L + 1 frames), video_size x
//              video_size from TD-MPC2's DMC camera (env/render.h), played in real time (a frame
//              lasts the control timestep x action_repeat; TD-MPC2's wandb videos play at a
//              fixed 15 frames/s). Rendering reads a copy of the eval Env's state, so eval
//              returns do not depend on it. The renderer is made at the start, so a machine
//              without headless OpenGL fails then, with the packages to install.
//   run dir    run_dir (default runs/<task>/<preset>/<seed>): config.txt (key=value lines),
//              train.csv, eval.csv, checkpoint.safetensors, replay.safetensors (save_buffer;
//              replay.next.safetensors while a save is in flight, see faults).
//   checkpoint safetensors, atomic: every WorldModel tensor by its state_dict name (model, pi,
//              target Qs, the learned prior "_pi_prior.*"), Adam moments
//              "optim.<model|pi|prior>.exp_avg|exp_avg_sq", Adam step and bias corrections,
//              "q_scale", "prior_scale"; metadata: config lines, counters (agent/env steps,
//              episodes, num_envs and episodes per env, eval episodes run, updates, the agent's
//              policy updates and reanalyses, next eval / checkpoint step, elapsed time), the
//              replay buffer's episode count; "checksum": FNV-1a over the tensors (name, bytes,
//              name order) and every other metadata entry (io/checksum.h; format
//              pompc-checkpoint-2; format 1, still read, covered the tensors only).
//              src/tools/tdmpc2_ckpt.py converts TD-MPC2's .pt files to this format (Adam state,
//              scales and counters as a fresh model's) and back (the model tensors only).
//              Checkpoints fall between rounds. resume=auto is resume=true when the checkpoint
//              exists and a new run otherwise (a job that may be requeued: pompc sweep's Slurm
//              script). resume=true loads it (its config, then the command line's key=value on top,
//              e.g. a larger steps=; a num_envs unlike the checkpoint's is refused), the replay
//              buffer (replay.safetensors, when saved) and replays each env's reset draws (its own
//              episode count) so the initial-state streams continue where they stopped; the CSV
//              logs drop rows after the checkpoint's env_step. With save_buffer=true the resumed
//              run repeats the uninterrupted one bit for bit (tested, S = 1 and 2, and bmpc across
//              reanalyses). Without it the buffer restarts empty.
//   faults     (tests/test_faults.cpp, build/test_emu -ts=e2e -tc='*faults*')
//              kill -9 at any moment: a save writes the buffer to replay.next.safetensors, then
//                the checkpoint (the commit point), then renames the buffer file over
//                replay.safetensors; resume loads whichever of the two holds the checkpoint's
//                episode count. A run killed before its first checkpoint has nothing to resume
//                (resume=true says so): start it again without resume=true; a fresh start
//                removes the logs and replay files it left. Temp files of killed writes are
//                ignored and removed by the next write (io/atomic_file.h). Killed and resumed
//                any number of times, the run ends with the uninterrupted run's checkpoint,
//                train.csv (but its steps_per_s and elapsed_s) and eval.csv, bit for bit.
//              damage: open_checkpoint checks format, config record and checksum before anything
//                in the file is used, so a truncated or bit-flipped checkpoint (any single bit,
//                header or data) is refused with "is corrupted" / "is not readable" and nothing
//                in run_dir is written. The trainer never replaces a good checkpoint by a bad
//                one: a failed save throws before its rename, and a non-finite loss stops the
//                run before the save. No checkpoint.prev is kept: the atomic replacement is the
//                guarantee, and a second copy would double the disk a large model needs.
//                The replay buffer file carries its own checksum (replay/replay_buffer.h): a
//                damaged one is refused by resume before anything in it is used, with an error
//                that names the file ("is corrupted" / "is damaged") and says to resume with
//                save_buffer=false, and nothing in run_dir is written (load_replay). A buffer
//                file of an older pompc (no checksum) is loaded, with one line saying that it
//                was not verified.
//              full disk: a failed write (ENOSPC, EFBIG) stops the run with an error naming the
//                file and the OS error; the last checkpoint and its buffer still resume.
//   tests      build/test_emu -ts=e2e,agent
//   bench      build/bench -ts=bench -tc='*train*' (env steps/s of make run's CPU configuration
//              with num_envs 1 and 2; build/test_gpu adds the 5M dog-run model on a GPU)
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

// The defaults' one home (with ModelConfig, PlannerSettings, AgentSettings): train_config()'s
// key table reads its defaults from these initialisers.
struct TrainSettings {
  std::string task = "dog-run";    // TD-MPC2 task name (pompc tasks)
  std::string preset = "tdmpc2";   // algorithm preset: tdmpc2 | bmpc | tdmpc2sq | pompc
  int64_t steps = 10'000'000;      // env steps to train (action repeat counted)
  int64_t seed_steps = 0;          // random-action agent steps; 0 = max(1000, 5 episode_length)
  int64_t eval_freq = 50'000;      // env steps between evaluations
  int eval_episodes = 10;          // episodes per evaluation
  bool save_video = false;         // render evaluations to run_dir/videos/ (env/render.h)
  int video_episodes = 1;          // evaluation episodes per video, one after another
  int video_size = 384;            // square frames of video_size pixels (TD-MPC2: 384)
  int64_t checkpoint_freq = 100'000;  // env steps between checkpoints (and one at the end)
  bool save_buffer = true;         // also save the replay buffer at each checkpoint (resume)
  int action_repeat = 2;           // control steps per agent step (TD-MPC2 DMC: 2)
  int num_envs = 1;                // S: envs stepped in lockstep and planned for as one batch
  int64_t buffer_size = 1'000'000; // replay capacity in records
  std::string device = "auto";     // auto | cpu | cuda
  uint64_t seed = 1;               // seeds the env, model init, planner, sampler
  std::string run_dir;             // default runs/<task>/<preset>/<seed>
  bool resume = false;             // continue from run_dir/checkpoint.safetensors (the key's
                                   // auto: when that file exists, else a new run)
  int num_threads = 0;             // CPU threads of OpenMP and the env pool; 0 = OpenMP's own
                                   // default (OMP_NUM_THREADS, else the available cores)
  model::ModelConfig model;        // sizes and update settings (model_size, mlp_dim, ...)
  agent::PlannerSettings planner;  // iterations, num_samples, num_elites, ...
  agent::AgentSettings agent;      // reanalysis and the burst's policy step (max_states: envs)
};

// The key table with presets.
io::Config train_config();
// Settings from an applied config (model dims still unresolved against the task: see
// resolve_model).
TrainSettings settings_from(const io::Config& cfg);
// run_dir/checkpoint.safetensors: the run's checkpoint (what resume=true loads).
std::string checkpoint_path(const std::string& run_dir);
// Fills obs/action dims and the discount from the task and checks model vs planner settings.
void resolve_model(TrainSettings& s, int obs_dim, int action_dim, int episode_length);

struct TrainResult {
  int64_t env_steps = 0;           // env steps done when the run ended
  int64_t episodes = 0;            // training episodes done
  uint64_t updates = 0;            // model updates taken
  double last_eval_mean = 0;       // mean return of the last evaluation
  double steps_per_s = 0;          // env steps per second over this process's episodes
  double last_steps_per_s = 0;     // the last round's env steps/s (its train.csv steps_per_s)
  double planned_steps_per_s = 0;  // env steps/s of this process's vector steps with planning,
                                   // the burst's time left out (0: none)
  uint64_t burst_updates = 0;      // updates of the pretraining burst if this process ran it
  double burst_s = 0;              // its wall time
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
// checkpoint's; seed 0 = the checkpoint's seed + kEvalSeedOffset). A non-empty `video` (.mp4 or
// .gif) records the first episode there, as save_video does, at the checkpoint's video_size.
EvalResult evaluate_checkpoint(const std::string& path, int episodes, const std::string& device,
                               uint64_t seed, const std::string& video = "");

constexpr uint64_t kEvalSeedOffset = 1'000'003;       // eval Env seed = seed + this
constexpr uint64_t kUniformOffset = 3ull << 60;       // Philox offset of seed-phase actions
constexpr uint64_t kEvalPlanStep = 1ull << 50;        // eval planner steps start here

}  // namespace pompc::train
