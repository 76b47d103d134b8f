// The training loop, checkpoints and checkpoint evaluation (see trainer.h for the run book).
#include "train/trainer.h"

#include <omp.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>

#include "agent/agent.h"
#include "common.h"
#include "env/env.h"
#include "env/render.h"
#include "io/atomic_file.h"
#include "io/checksum.h"
#include "io/csv.h"
#include "io/progress.h"
#include "io/safetensors.h"
#include "io/video.h"
#include "ops.h"
#include "philox.cuh"
#include "replay/replay_buffer.h"

namespace pompc::train {

using io::ConfigKey;

io::Config train_config() {
  // Every default comes from the settings structs (TrainSettings, model::ModelConfig,
  // agent::PlannerSettings, agent::AgentSettings), their one home; only the table's own
  // sentinels are written here (enc_dim ... num_q = 0: from model_size; lambda = -1: unset).
  const TrainSettings d;
  const model::ModelConfig& m = d.model;
  const agent::PlannerSettings& p = d.planner;
  const agent::AgentSettings& a = d.agent;
  const auto model_items = m.items();
  auto model_text = [&](const std::string& key) {
    for (const auto& [k, v] : model_items)
      if (k == key) return v;
    throw Error("train_config: ModelConfig has no key " + key);
  };
  // A float field's default as the double its shortest decimal text reads back as (3e-4f ->
  // 0.0003), so the key prints and parses as written.
  auto f = [](float x) {
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, x);
    return std::strtod(std::string(buf, r.ptr).c_str(), nullptr);
  };
  std::vector<ConfigKey> t = {
      ConfigKey::String("task", d.task, "DMC task, TD-MPC2 name (pompc tasks lists them)"),
      ConfigKey::Enum("preset", d.preset, {"tdmpc2", "bmpc", "tdmpc2sq", "pompc"},
                      "algorithm preset (SPEC 4): tdmpc2 | bmpc | tdmpc2sq (TD-M(PC)^2) | pompc"),
      ConfigKey::Int("steps", d.steps, 1, int64_t(1) << 40,
                     "env steps to train (action repeat counted)"),
      ConfigKey::Int("seed_steps", d.seed_steps, 0, int64_t(1) << 40,
                     "random-action agent steps; 0 = max(1000, 5 * episode length)"),
      ConfigKey::Int("eval_freq", d.eval_freq, 1, int64_t(1) << 40,
                     "env steps between evaluations"),
      ConfigKey::Int("eval_episodes", d.eval_episodes, 1, 1000, "episodes per evaluation"),
      ConfigKey::Bool("save_video", d.save_video,
                      "render the first video_episodes episodes of each evaluation to "
                      "<run_dir>/videos/eval_<env_step>.mp4 (ffmpeg on PATH) or .gif"),
      ConfigKey::Int("video_episodes", d.video_episodes, 1, 1000,
                     "evaluation episodes per video, one after another"),
      ConfigKey::Int("video_size", d.video_size, 16, 4096,
                     "video frames are video_size x video_size pixels (even; TD-MPC2: 384)"),
      ConfigKey::Int("checkpoint_freq", d.checkpoint_freq, 1, int64_t(1) << 40,
                     "env steps between checkpoints (and one at the end)"),
      ConfigKey::Bool("save_buffer", d.save_buffer, "save the replay buffer with each checkpoint"),
      ConfigKey::Int("action_repeat", d.action_repeat, 1, 1000, "control steps per agent step"),
      ConfigKey::Int("num_envs", d.num_envs, 1, 64,
                     "S: environments stepped in lockstep, planned for as one batch (env i "
                     "seeded as VecEnv env i; S updates per vector step)"),
      ConfigKey::Int("buffer_size", d.buffer_size, 16, int64_t(1) << 36,
                     "replay capacity (records)"),
      ConfigKey::Enum("device", d.device, {"auto", "cpu", "cuda"}, "numeric backend"),
      ConfigKey::Bool("tf32", m.tf32,
                      "TF32 tensor-core GEMMs on the CUDA backend (false: full fp32, as the "
                      "reference)"),
      ConfigKey::Int("seed", int64_t(d.seed), 0, int64_t(1) << 31,
                     "seed of env, init, planner, sampler"),
      ConfigKey::String("run_dir", d.run_dir, "run directory; empty = runs/<task>/<preset>/<seed>"),
      ConfigKey::Enum("resume", d.resume ? "true" : "false", {"false", "true", "auto"},
                      "continue from run_dir/checkpoint.safetensors (auto: when it exists)"),
      ConfigKey::Int("num_threads", d.num_threads, 0, 4096,
                     "CPU threads of OpenMP and the env pool; 0 = OMP_NUM_THREADS, else the "
                     "available cores"),
      ConfigKey::Int("model_size", m.model_size, 1, 317,
                     "model size preset: 1, 5, 19, 48 or 317 (M params)"),
      ConfigKey::Int("enc_dim", 0, 0, 1 << 16, "encoder width; 0 = from model_size"),
      ConfigKey::Int("mlp_dim", 0, 0, 1 << 16, "M; 0 = from model_size"),
      ConfigKey::Int("latent_dim", 0, 0, 1 << 16, "Z (multiple of 8); 0 = from model_size"),
      ConfigKey::Int("num_q", 0, 0, 64, "Q heads; 0 = from model_size"),
      ConfigKey::Int("batch_size", m.batch_size, 1, 1 << 16, "B: slices per update"),
      ConfigKey::Int("horizon", m.horizon, 1, 16, "H: update and planning horizon"),
      ConfigKey::Float("lr", f(m.lr), 0, 1, "Adam learning rate (model and pi)"),
      ConfigKey::Int("iterations", p.iterations, 1, 100, "MPPI iterations (+2 when A >= 20)"),
      ConfigKey::Int("num_samples", p.num_samples, 1, 1 << 16, "N: planner samples per state"),
      ConfigKey::Int("num_elites", p.num_elites, 1, 1 << 16, "E: elites per iteration"),
      ConfigKey::Int("num_pi_trajs", p.num_pi_trajs, 0, 1 << 16,
                     "P: policy trajectories among the samples"),
      ConfigKey::Float("min_std", f(p.min_std), 0, 10, "lower clamp of the planner std"),
      ConfigKey::Float("max_std", f(p.max_std), 0, 10, "initial planner std and its upper clamp"),
      ConfigKey::Float("temperature", f(p.temperature), 0, 1e6,
                       "multiplies values in the elite scores"),
      // The policy parameterisation, the critic and the policy objective (SPEC 1, 4, 6).
      ConfigKey::Enum("policy_form", model_text("policy_form"), {"squashed", "clamped"},
                      "pi's action: tanh(u) (TD-MPC2) or clamp(tanh(mean) + std eps) (BMPC)"),
      ConfigKey::Float("log_std_min", f(m.log_std_min), -20, 10,
                       "lower end of pi's log_std squash"),
      ConfigKey::Float("log_std_max", f(m.log_std_max), -20, 10,
                       "upper end of pi's log_std squash"),
      ConfigKey::Float("expl_log_std_min", f(m.expl_log_std_min), -20, 10,
                       "log_std_min of pi inside reanalysis"),
      ConfigKey::Float("expl_log_std_max", f(m.expl_log_std_max), -20, 10,
                       "log_std_max of pi inside reanalysis"),
      ConfigKey::Enum("entropy_form", model_text("entropy_form"), {"paper", "current"},
                      "TD-MPC2's log_pi form: first release (published curves) or current code"),
      ConfigKey::Float("entropy_coef", f(m.entropy_coef), 0, 10,
                       "alpha: weight of log_pi in the pi loss"),
      ConfigKey::Enum("critic", model_text("critic"), {"q", "v"},
                      "q: Q(z, a) heads, TD target r + gamma min2 Q'; v: BMPC's V(z) heads"),
      ConfigKey::Float("q_coef", f(m.q_coef), 0, 1e6, "weight of -Qbar / S_Q in the pi loss"),
      ConfigKey::Float("prior_coef", f(m.prior_coef), 0, 1e6,
                       "weight of D(pi, prior) / S_D in the pi loss"),
      ConfigKey::Float("lambda", -1, -1, 1e6,
                       "PO-MPC's KL weight, unbounded >= 0: prior_coef = lambda, q_coef = 1 (the "
                       "paper's grid: 0.1, 1, 9; -1: unset, use q_coef / prior_coef)"),
      ConfigKey::Bool("prior_coef_per_action", m.prior_coef_per_action,
                      "multiply prior_coef by A / 61 (TD-M(PC)^2)"),
      ConfigKey::Enum("prior", model_text("prior"), {"none", "planner", "intermediate", "learned"},
                      "the policy prior: planner targets, PO-MPC's intermediate or learned prior"),
      ConfigKey::Enum("divergence", model_text("divergence"), {"reverse", "forward", "nll"},
                      "D: KL(pi || prior), KL(prior || pi), or -log prior(a) (TD-M(PC)^2)"),
      ConfigKey::Enum("prior_scale", model_text("prior_scale"), {"none", "own", "q"},
                      "S_D: 1, D's own RunningScale (BMPC), or S_Q (TD-M(PC)^2)"),
      ConfigKey::Float("prior_scale_threshold", f(m.prior_scale_threshold), 0, 1e6,
                       "the prior term is 0 while S_D <= this (TD-M(PC)^2: 2)"),
      ConfigKey::Float("beta", f(m.beta), 1e-6, 1e9,
                       "intermediate prior temperature: w = softmax(Qbar / (beta S_Q))"),
      ConfigKey::Int("prior_samples", m.prior_samples, 1, 256,
                     "planner samples per latent (intermediate prior)"),
      ConfigKey::Enum("prior_fit", model_text("prior_fit"), {"forward", "reverse"},
                      "the learned prior's divergence to the planner targets"),
      ConfigKey::Bool("kl_critic", m.kl_critic,
                      "PO-MPC's TD target r + gamma (min2 Q' - lambda log pi / pi_psi)"),
      ConfigKey::Int("reanalyze_interval", a.reanalyze_interval, 0, 1 << 20,
                     "updates between lazy reanalyses (BMPC: 10); 0 = never"),
      ConfigKey::Int("reanalyze_batch", a.reanalyze_batch, 1, 1 << 16,
                     "slices re-planned per reanalysis"),
      ConfigKey::Bool("pretrain_policy", a.pretrain_policy,
                      "take the policy step in the seed_steps burst (BMPC: false)"),
  };
  // SPEC section 4's table; each reproduces its published method.
  const std::vector<std::string> bmpc_base = {"policy_form=clamped", "log_std_min=-3",
                                              "log_std_max=1",       "expl_log_std_min=-2",
                                              "expl_log_std_max=1",  "reanalyze_interval=10",
                                              "reanalyze_batch=20",  "pretrain_policy=false"};
  std::vector<std::string> bmpc = bmpc_base, pompc = bmpc_base;
  for (const char* kv : {"critic=v", "num_q=2", "q_coef=0", "prior_coef=1", "prior=planner",
                         "divergence=reverse", "prior_scale=own"})
    bmpc.push_back(kv);
  // PO-MPC as published: the learned adaptive prior fitted to the (reanalysed) planner targets,
  // pi regularised towards it by lambda (reverse KL, S_D), the KL-regularised Q target.
  for (const char* kv : {"critic=q", "q_coef=1", "prior_coef=1", "prior=learned",
                         "prior_fit=forward", "divergence=reverse", "prior_scale=own",
                         "kl_critic=true"})
    pompc.push_back(kv);
  return io::Config(std::move(t),
                    {io::Preset{"tdmpc2", {}}, io::Preset{"bmpc", bmpc},
                     io::Preset{"tdmpc2sq",
                                {"prior=planner", "divergence=nll", "q_coef=1", "prior_coef=1",
                                 "prior_coef_per_action=true", "prior_scale=q",
                                 "prior_scale_threshold=2"}},
                     io::Preset{"pompc", pompc}});
}

std::string checkpoint_path(const std::string& run_dir) {
  return run_dir + "/checkpoint.safetensors";
}

TrainSettings settings_from(const io::Config& c) {
  TrainSettings s;
  s.task = c.get_string("task");
  s.preset = c.get_string("preset");
  s.steps = c.get_int("steps");
  s.seed_steps = c.get_int("seed_steps");
  s.eval_freq = c.get_int("eval_freq");
  s.eval_episodes = int(c.get_int("eval_episodes"));
  s.save_video = c.get_bool("save_video");
  s.video_episodes = int(c.get_int("video_episodes"));
  s.video_size = int(c.get_int("video_size"));
  POMPC_REQUIRE(s.video_size % 2 == 0,
                "video_size=%d: make it even (an MP4's yuv420p frames have even sizes)",
                s.video_size);
  s.checkpoint_freq = c.get_int("checkpoint_freq");
  s.save_buffer = c.get_bool("save_buffer");
  s.action_repeat = int(c.get_int("action_repeat"));
  s.num_envs = int(c.get_int("num_envs"));
  s.buffer_size = c.get_int("buffer_size");
  s.device = c.get_string("device");
  s.seed = uint64_t(c.get_int("seed"));
  s.run_dir = c.get_string("run_dir");
  if (s.run_dir.empty())
    s.run_dir = "runs/" + s.task + "/" + s.preset + "/" + std::to_string(s.seed);
  const std::string& resume = c.get_string("resume");
  s.resume = resume == "true" || (resume == "auto" && io::path_exists(checkpoint_path(s.run_dir)));
  s.num_threads = int(c.get_int("num_threads"));
  model::ModelConfig& m = s.model;
  model::set_model_size(m, std::to_string(c.get_int("model_size")));
  if (c.get_int("enc_dim") > 0) m.enc_dim = int(c.get_int("enc_dim"));
  if (c.get_int("mlp_dim") > 0) m.mlp_dim = int(c.get_int("mlp_dim"));
  if (c.get_int("latent_dim") > 0) m.latent_dim = int(c.get_int("latent_dim"));
  if (c.get_int("num_q") > 0) m.num_q = int(c.get_int("num_q"));
  m.batch_size = int(c.get_int("batch_size"));
  m.horizon = int(c.get_int("horizon"));
  m.lr = float(c.get_float("lr"));
  m.tf32 = c.get_bool("tf32");
  m.seed = s.seed;
  agent::PlannerSettings& p = s.planner;
  p.iterations = int(c.get_int("iterations"));
  p.num_samples = int(c.get_int("num_samples"));
  p.num_elites = int(c.get_int("num_elites"));
  p.num_pi_trajs = int(c.get_int("num_pi_trajs"));
  p.min_std = float(c.get_float("min_std"));
  p.max_std = float(c.get_float("max_std"));
  p.temperature = float(c.get_float("temperature"));
  p.horizon = m.horizon;
  auto set = [&](const char* key) { m.set(key, c.value_text(key)); };
  for (const char* key :
       {"policy_form", "log_std_min", "log_std_max", "expl_log_std_min", "expl_log_std_max",
        "entropy_form", "entropy_coef", "critic", "q_coef", "prior_coef", "prior_coef_per_action",
        "prior", "divergence", "prior_scale", "prior_scale_threshold", "beta", "prior_samples",
        "prior_fit", "min_std", "kl_critic"})
    set(key);
  const double lambda = c.get_float("lambda");
  POMPC_REQUIRE(lambda == -1 || lambda >= 0,
                "lambda=%g: PO-MPC's KL weight must be >= 0 (or -1: unset, q_coef / prior_coef "
                "apply)",
                lambda);
  if (lambda >= 0) {
    m.q_coef = 1.0f;
    m.prior_coef = float(lambda);
  }
  s.agent.reanalyze_interval = int(c.get_int("reanalyze_interval"));
  s.agent.reanalyze_batch = int(c.get_int("reanalyze_batch"));
  s.agent.pretrain_policy = c.get_bool("pretrain_policy");
  return s;
}

void resolve_model(TrainSettings& s, int obs_dim, int action_dim, int episode_length) {
  s.model.obs_dim = obs_dim;
  s.model.action_dim = action_dim;
  s.model.discount = model::discount_for_episode_length(episode_length);
  s.planner.discount = s.model.discount;
  s.planner.horizon = s.model.horizon;
  s.model.validate();
  s.planner.validate();
}

namespace {

using Clock = std::chrono::steady_clock;
// Format 2's checksum covers the tensors and the metadata; format 1 (still read) covered the
// tensors only, so a damaged counter or config line went unnoticed.
constexpr const char* kFormat = "pompc-checkpoint-2";
constexpr const char* kFormatV1 = "pompc-checkpoint-1";

// Counters a checkpoint carries (metadata, decimal text).
struct RunState {
  int64_t agent_step = 0;             // agent steps taken
  int64_t env_step = 0;               // env steps taken (agent steps * action_repeat)
  int64_t episodes = 0;               // training episodes finished (all envs)
  std::vector<int64_t> env_episodes;  // episodes finished per env (its resets to replay)
  int64_t eval_episodes_run = 0;      // evaluation episodes run (the eval Env's resets)
  int64_t next_eval = 0;              // env step of the next evaluation
  int64_t next_checkpoint = 0;        // env step of the next checkpoint
  bool pretrained = false;            // the seed_steps burst has run
  double elapsed_s = 0;               // wall time of all processes of this run before this one
};

// Host mirror of every checkpointed buffer of the world model, with the safetensors table: the
// parameter sets (model, pi, target Qs, the learned prior when there is one), the Adam state of
// each trained set ("optim.<model|pi|prior>.*") and the running scales S_Q and S_D.
struct ModelState {
  static constexpr int kSets = 4, kTrained = 3;
  std::vector<float> params[kSets], m[kTrained], v[kTrained];
  AdamScalars scalars[kTrained]{};
  uint32_t step[kTrained]{};
  float bias[kTrained][2]{};
  float q_scale = 1, prior_scale = 1;

  explicit ModelState(model::WorldModel& wm) {
    for (model::ParamSet set : model::kParamSets) params[int(set)].resize(wm.param_floats(set));
    for (int k = 0; k < kTrained; ++k) {  // packed: the tensors without the buffer's gaps
      m[k].resize(wm.param_count(model::kTrainedSets[k]));
      v[k].resize(m[k].size());
    }
  }
  // (name, dtype, shape, pointer) of every tensor, sorted by name.
  std::vector<io::TensorDest> table(const model::WorldModel& wm) {
    std::vector<io::TensorDest> t;
    for (const model::NamedTensor& nt : wm.tensors())
      t.push_back({nt.name, io::DType::F32, nt.shape, params[int(nt.set)].data() + nt.offset});
    const char* set_name[kTrained] = {"model", "pi", "prior"};
    for (int k = 0; k < kTrained; ++k) {
      if (m[k].empty()) continue;  // no learned prior
      const std::string p = std::string("optim.") + set_name[k] + ".";
      t.push_back({p + "exp_avg", io::DType::F32, {int64_t(m[k].size())}, m[k].data()});
      t.push_back({p + "exp_avg_sq", io::DType::F32, {int64_t(v[k].size())}, v[k].data()});
      t.push_back({p + "step", io::DType::U32, {}, &step[k]});
      t.push_back({p + "bias_correction", io::DType::F32, {2}, bias[k]});
    }
    t.push_back({"q_scale", io::DType::F32, {}, &q_scale});
    t.push_back({"prior_scale", io::DType::F32, {}, &prior_scale});
    std::sort(t.begin(), t.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
    return t;
  }
  void download(model::WorldModel& wm) {
    Ops& o = wm.ops();
    for (model::ParamSet set : model::kParamSets)
      if (!params[int(set)].empty())
        o.copy_to_host(params[int(set)].data(), wm.params(set), params[int(set)].size() * 4);
    for (int k = 0; k < kTrained; ++k) {
      if (m[k].empty()) continue;
      const model::ParamSet set = model::kTrainedSets[k];
      std::vector<float> buffer(wm.param_floats(set));
      o.copy_to_host(buffer.data(), wm.adam_m(set), buffer.size() * 4);
      wm.pack(set, buffer.data(), m[k].data());
      o.copy_to_host(buffer.data(), wm.adam_v(set), buffer.size() * 4);
      wm.pack(set, buffer.data(), v[k].data());
      o.copy_to_host(&scalars[k], wm.adam_scalars(set), sizeof(AdamScalars));
      step[k] = scalars[k].step;
      bias[k][0] = scalars[k].bias1;
      bias[k][1] = scalars[k].bias2;
    }
    o.copy_to_host(&q_scale, wm.q_scale(), sizeof(float));
    o.copy_to_host(&prior_scale, wm.prior_scale(), sizeof(float));
  }
  void upload(model::WorldModel& wm) {
    Ops& o = wm.ops();
    for (model::ParamSet set : model::kParamSets)
      if (!params[int(set)].empty())
        o.copy_to_backend(wm.params(set), params[int(set)].data(), params[int(set)].size() * 4);
    for (int k = 0; k < kTrained; ++k) {
      if (m[k].empty()) continue;
      const model::ParamSet set = model::kTrainedSets[k];
      std::vector<float> buffer(wm.param_floats(set));
      wm.unpack(set, m[k].data(), buffer.data());
      o.copy_to_backend(wm.adam_m(set), buffer.data(), buffer.size() * 4);
      wm.unpack(set, v[k].data(), buffer.data());
      o.copy_to_backend(wm.adam_v(set), buffer.data(), buffer.size() * 4);
      scalars[k] = AdamScalars{step[k], bias[k][0], bias[k][1]};
      o.copy_to_backend(wm.adam_scalars(set), &scalars[k], sizeof(AdamScalars));
    }
    o.copy_to_backend(wm.q_scale(), &q_scale, sizeof(float));
    o.copy_to_backend(wm.prior_scale(), &prior_scale, sizeof(float));
  }
};

// The agent's world model and its reanalysis clock (policy updates, reanalyses) with `st`.
void save_checkpoint(const std::string& path, agent::Agent& ag, const io::Config& cfg,
                     const RunState& st, int64_t replay_episodes) {
  model::WorldModel& wm = ag.world_model();
  ModelState ms(wm);
  ms.download(wm);
  const std::vector<io::TensorDest> table = ms.table(wm);
  std::vector<io::TensorView> views;
  for (const io::TensorDest& d : table) views.push_back({d.name, d.dtype, d.shape, d.data});
  io::Metadata meta;
  meta["format"] = kFormat;
  meta["config"] = cfg.to_lines();
  meta["updates"] = std::to_string(wm.updates());
  meta["agent_step"] = std::to_string(st.agent_step);
  meta["env_step"] = std::to_string(st.env_step);
  meta["episodes"] = std::to_string(st.episodes);
  meta["num_envs"] = std::to_string(st.env_episodes.size());
  std::string per_env;
  for (int64_t n : st.env_episodes) {
    if (!per_env.empty()) per_env += ',';
    per_env += std::to_string(n);
  }
  meta["env_episodes"] = per_env;
  meta["eval_episodes_run"] = std::to_string(st.eval_episodes_run);
  meta["next_eval"] = std::to_string(st.next_eval);
  meta["next_checkpoint"] = std::to_string(st.next_checkpoint);
  meta["pretrained"] = st.pretrained ? "1" : "0";
  meta["elapsed_s"] = io::format_double(st.elapsed_s);
  meta["replay_episodes"] = std::to_string(replay_episodes);
  meta["policy_updates"] = std::to_string(ag.policy_updates());
  meta["reanalyses"] = std::to_string(ag.reanalyses());
  meta["checksum"] = io::checksum(io::Hash::fnv1a, views, &meta);
  io::save_safetensors(path, views, meta);
}

int64_t meta_int(const io::SafetensorsFile& f, const std::string& key) {
  const std::string& v = f.meta(key);
  char* end = nullptr;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  POMPC_REQUIRE(end && *end == '\0' && !v.empty(), "checkpoint %s: metadata %s='%s' is not an integer",
                f.path().c_str(), key.c_str(), v.c_str());
  return x;
}

// Opens a checkpoint and checks it before anything in it is used: the format tag, the config
// record and the checksum (so a damaged config line is reported as damage, not as a model that
// does not fit).
std::unique_ptr<io::SafetensorsFile> open_checkpoint(const std::string& path) {
  std::unique_ptr<io::SafetensorsFile> f;
  try {
    f = std::make_unique<io::SafetensorsFile>(path);
  } catch (const Error& e) {
    throw Error(strfmt("checkpoint %s is not readable (%s): it is damaged or not a checkpoint; "
                       "use an intact one (pompc writes them atomically)",
                       path.c_str(), e.what()));
  }
  const auto it = f->metadata().find("format");
  POMPC_REQUIRE(it != f->metadata().end() && (it->second == kFormat || it->second == kFormatV1),
                "checkpoint %s is not a pompc checkpoint (metadata format is not %s): it is "
                "damaged or was not written by pompc",
                path.c_str(), kFormat);
  POMPC_REQUIRE(f->metadata().count("config") && f->metadata().count("checksum"),
                "checkpoint %s lacks its config or checksum record: it is damaged or was not "
                "written by pompc",
                path.c_str());
  const std::string sum = io::file_checksum(*f, io::Hash::fnv1a, it->second == kFormat);
  POMPC_REQUIRE(sum == f->meta("checksum"),
                "checkpoint %s is corrupted: the checksum of its %s is %s, the file records %s; "
                "use an intact checkpoint (a run directory's checkpoint is replaced atomically, "
                "so this one was damaged after it was written)",
                path.c_str(), it->second == kFormat ? "tensors and metadata" : "tensors",
                sum.c_str(), f->meta("checksum").c_str());
  return f;
}

// Loads the agent's world model and reanalysis clock from a checkpoint open_checkpoint checked;
// returns the run counters.
RunState load_checkpoint(const io::SafetensorsFile& f, agent::Agent& ag) {
  model::WorldModel& wm = ag.world_model();
  ModelState ms(wm);
  const std::vector<io::TensorDest> table = ms.table(wm);
  io::load_tensors(f, table);
  ms.upload(wm);
  wm.set_updates(uint64_t(meta_int(f, "updates")));
  RunState st;
  st.agent_step = meta_int(f, "agent_step");
  st.env_step = meta_int(f, "env_step");
  st.episodes = meta_int(f, "episodes");
  // Checkpoints from before num_envs: one env, all episodes its own.
  const bool multi = f.metadata().count("num_envs") > 0;
  const int64_t num_envs = multi ? meta_int(f, "num_envs") : 1;
  if (multi) {
    const std::string& list = f.meta("env_episodes");
    size_t pos = 0;
    while (pos <= list.size() && !list.empty()) {
      const size_t comma = std::min(list.find(',', pos), list.size());
      const std::string item = list.substr(pos, comma - pos);
      char* end = nullptr;
      const long long n = std::strtoll(item.c_str(), &end, 10);
      POMPC_REQUIRE(!item.empty() && end && *end == '\0' && n >= 0,
                    "checkpoint %s: metadata env_episodes='%s' is not a list of counts",
                    f.path().c_str(), list.c_str());
      st.env_episodes.push_back(n);
      pos = comma + 1;
    }
  } else {
    st.env_episodes = {st.episodes};
  }
  POMPC_REQUIRE(int64_t(st.env_episodes.size()) == num_envs,
                "checkpoint %s: metadata env_episodes has %zu counts, num_envs is %lld",
                f.path().c_str(), st.env_episodes.size(), static_cast<long long>(num_envs));
  st.eval_episodes_run = meta_int(f, "eval_episodes_run");
  st.next_eval = meta_int(f, "next_eval");
  st.next_checkpoint = meta_int(f, "next_checkpoint");
  st.pretrained = meta_int(f, "pretrained") != 0;
  st.elapsed_s = std::strtod(f.meta("elapsed_s").c_str(), nullptr);
  ag.set_counters(uint64_t(meta_int(f, "policy_updates")), uint64_t(meta_int(f, "reanalyses")));
  return st;
}

// Deterministic episodes (explore = false); plan steps from `plan_step` on.
// The frames of an evaluation's first `episodes` episodes (trainer.h, videos).
struct EvalVideo {
  env::Renderer& renderer;
  io::VideoWriter& writer;
  int episodes;
  std::vector<uint8_t> rgb;
  double render_s = 0;  // time spent rendering and encoding
  void frame(const env::Env& e) {
    const auto t0 = std::chrono::steady_clock::now();
    renderer.render(e, rgb.data());
    writer.add_frame(rgb.data());
    render_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
};

std::vector<double> run_eval(agent::Agent& ag, env::Env& env, int episodes, uint64_t seed,
                             uint64_t plan_step, EvalVideo* video) {
  const int O = ag.obs_dim(), A = ag.action_dim();
  std::vector<float> obs(O), action(A);
  std::vector<double> returns;
  for (int e = 0; e < episodes; ++e) {
    env.reset(obs.data());
    const bool record = video && e < video->episodes;
    if (record) video->frame(env);
    uint8_t first = 1;
    double ret = 0;
    for (bool done = false; !done;) {
      ag.act(obs.data(), &first, 1, /*explore=*/false, seed, plan_step++, action.data(), nullptr,
             nullptr);
      first = 0;
      const env::StepResult r = env.step(action.data(), obs.data());
      if (record) video->frame(env);
      ret += r.reward;
      done = r.done;
    }
    returns.push_back(ret);
  }
  return returns;
}

// run_eval, recording the first video_episodes episodes into `path` with `renderer` (none:
// run_eval alone).
std::vector<double> run_eval_with_video(agent::Agent& ag, env::Env& env, int episodes,
                                        uint64_t seed, uint64_t plan_step, env::Renderer* renderer,
                                        const std::string& path, int video_episodes) {
  if (!renderer) return run_eval(ag, env, episodes, seed, plan_step, nullptr);
  const env::TaskSpec& t = env.spec();
  const double frame_s = t.physics_dt * t.n_sub * env.action_repeat();
  io::VideoWriter writer(path, renderer->width(), renderer->height(), frame_s);
  EvalVideo video{*renderer, writer, video_episodes,
                  std::vector<uint8_t>(size_t(renderer->width()) * renderer->height() * 3)};
  std::vector<double> returns = run_eval(ag, env, episodes, seed, plan_step, &video);
  writer.close();
  std::printf("video: %s (%d frames, %.1f s rendering)\n", path.c_str(), writer.frames(),
              video.render_s);
  return returns;
}

void mean_std(const std::vector<double>& x, double* mean, double* std) {
  double s = 0, s2 = 0;
  for (double v : x) s += v;
  *mean = x.empty() ? 0 : s / double(x.size());
  for (double v : x) s2 += (v - *mean) * (v - *mean);
  *std = x.empty() ? 0 : std::sqrt(s2 / double(x.size()));
}

}  // namespace

void check_losses_finite(const model::UpdateStats& st, int64_t env_step, uint64_t updates) {
  const std::pair<const char*, float> losses[] = {
      {"consistency_loss", st.consistency_loss}, {"reward_loss", st.reward_loss},
      {"value_loss", st.value_loss},             {"total_loss", st.total_loss},
      {"grad_norm", st.grad_norm},               {"pi_loss", st.pi_loss},
      {"pi_grad_norm", st.pi_grad_norm},         {"pi_scale", st.pi_scale},
      {"prior_loss", st.prior_loss},             {"prior_scale", st.prior_scale},
      {"prior_fit_loss", st.prior_fit_loss},     {"prior_grad_norm", st.prior_grad_norm}};
  for (const auto& [name, v] : losses)
    POMPC_REQUIRE(std::isfinite(v),
                  "%s is %s at env step %lld (update %llu): the run stops here; the last "
                  "checkpoint (written before this episode) is intact: try a smaller lr= or "
                  "another seed=",
                  name, std::isnan(v) ? "nan" : "inf", static_cast<long long>(env_step),
                  static_cast<unsigned long long>(updates));
}

namespace {

// The run's config: the command line over the defaults or, with resume=true, over the
// checkpoint's config (the checkpoint is returned open in *ckpt). Refuses a fresh run into a
// run_dir that holds a checkpoint, and a resume that moves the run_dir or changes num_envs.
io::Config run_config(const std::vector<std::string>& args,
                      std::unique_ptr<io::SafetensorsFile>* ckpt) {
  io::Config cfg = train_config();
  cfg.apply(args);
  const TrainSettings s = settings_from(cfg);
  const std::string ckpt_path = checkpoint_path(s.run_dir);
  if (!s.resume) {
    POMPC_REQUIRE(!io::path_exists(ckpt_path),
                  "run_dir %s already holds a checkpoint: pass resume=true to continue that run, "
                  "or choose another run_dir= / seed=",
                  s.run_dir.c_str());
    return cfg;
  }
  if (!io::path_exists(ckpt_path)) {
    // A run stopped before its first checkpoint leaves config.txt and logs but nothing to resume.
    POMPC_REQUIRE(!io::path_exists(s.run_dir + "/config.txt"),
                  "resume=true but %s does not exist: run_dir %s holds a run that stopped before "
                  "its first checkpoint; drop resume=true to start it over (its logs and replay "
                  "files are replaced)",
                  ckpt_path.c_str(), s.run_dir.c_str());
    throw Error(
        strfmt("resume=true but %s does not exist: point run_dir= at a run with a "
               "checkpoint, or drop resume=true to start a new run",
               ckpt_path.c_str()));
  }
  *ckpt = open_checkpoint(ckpt_path);
  std::vector<std::string> merged = io::Config::parse_lines((*ckpt)->meta("config"));
  merged.insert(merged.end(), args.begin(), args.end());
  cfg = train_config();
  cfg.apply(merged);
  const TrainSettings r = settings_from(cfg);
  POMPC_REQUIRE(r.run_dir == s.run_dir, "resume: run_dir changed from %s to %s",
                s.run_dir.c_str(), r.run_dir.c_str());
  const io::SafetensorsFile& f = **ckpt;
  const int64_t ckpt_envs = f.metadata().count("num_envs") ? meta_int(f, "num_envs") : 1;
  POMPC_REQUIRE(ckpt_envs == r.num_envs,
                "resume: %s was written by a run with num_envs=%lld, this run asks for "
                "num_envs=%d: the replay buffer and the environments' streams are per env, so "
                "resume with num_envs=%lld, or start a new run in another run_dir=",
                ckpt_path.c_str(), static_cast<long long>(ckpt_envs), r.num_envs,
                static_cast<long long>(ckpt_envs));
  return cfg;
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// One training run: the loop of trainer.h's run book, one named step per member function.
//   train():   rounds until env_step >= steps; after each: evaluate, progress line, checkpoint
//   round():   every env plays one episode: act, update, step_envs, store, end_episodes
class Run {
 public:
  explicit Run(const std::vector<std::string>& args);
  TrainResult train();

 private:
  void resume_from_checkpoint();
  void load_replay(int64_t episodes);
  void open_logs();
  void round();
  int64_t act();                   // the active envs' actions; returns how many were planned
  void step_envs();
  void store();                    // the transitions into the replay buffer
  double update(int64_t planned);  // one update per planned step (the burst first); burst's s
  void one_update(bool burst);
  void end_episodes(Clock::time_point t_round);
  void flush_train_rows();
  void evaluate();
  void print_progress() const;
  void save();
  TrainResult finish();
  void allocate_buffers(bool targets);
  double elapsed() const { return elapsed_before_ + seconds_since(t_start_); }

  const Clock::time_point t_start_ = Clock::now();
  std::unique_ptr<io::SafetensorsFile> ckpt_;  // resume: open until loaded
  const io::Config cfg_;
  TrainSettings s_;
  const std::string ckpt_path_, replay_path_, replay_next_path_;
  env::VecEnv envs_;
  env::Env eval_env_;
  std::optional<env::Renderer> renderer_;  // save_video: frames of eval_env_
  const int S_, O_, A_, L_;
  int64_t seed_steps_ = 0;
  std::unique_ptr<Ops> ops_;
  std::optional<agent::Agent> ag_;
  replay::ReplaySettings replay_settings_;
  std::optional<replay::ReplayBuffer> replay_;
  std::optional<io::CsvLogger> train_log_, eval_log_;
  RunState st_;

  // Per env (S of each; obs O, actions A per env).
  std::vector<float> obs_, next_obs_, action_, mu_, sigma_;
  std::vector<uint8_t> first_, active_;
  std::vector<env::StepResult> res_;
  std::vector<int64_t> step_of_, ep_len_;  // agent step of env i's action; episode length
  std::vector<double> ep_return_;
  std::vector<int> ended_;  // the envs whose episode ended at this vector step
  // train.csv rows of ended episodes waiting for their losses (flush_train_rows).
  struct PendingRow {
    int64_t env_step, episode;
    double ret;
    int64_t length;
    uint64_t updates, reanalyses;
    double sps, elapsed;
  };
  std::vector<PendingRow> pending_;
  int n_active_ = 0;  // envs still in this round's episode
  // The sampled batch's arrays the agent's staging (Agent::staging_batch) does not hold: the
  // slice indices, and the planner targets when the objective does not read them.
  std::vector<float> b_mu_, b_sigma_;
  std::vector<int64_t> b_index_;

  // This process's figures.
  TrainResult result_;
  std::optional<double> last_eval_;
  int64_t last_eval_step_ = 0;
  int64_t round_steps_ = 0;  // env steps of this round, all envs
  double round_s_ = 0, round_sps_ = 0;
  int64_t steps_this_process_ = 0, planned_steps_ = 0;
  double seconds_this_process_ = 0, planned_seconds_ = 0;
  double elapsed_before_ = 0;  // the run's wall time before this process
};

Run::Run(const std::vector<std::string>& args)
    : cfg_(run_config(args, &ckpt_)),
      s_(settings_from(cfg_)),
      ckpt_path_(checkpoint_path(s_.run_dir)),
      replay_path_(s_.run_dir + "/replay.safetensors"),
      replay_next_path_(s_.run_dir + "/replay.next.safetensors"),
      envs_(s_.task, s_.num_envs, uint32_t(s_.seed), s_.action_repeat, s_.num_threads),
      eval_env_(s_.task, uint32_t(s_.seed + kEvalSeedOffset), s_.action_repeat),
      S_(s_.num_envs),
      O_(envs_.spec().obs_dim),
      A_(envs_.spec().act_dim),
      L_(envs_.env(0).episode_length()) {
  resolve_model(s_, O_, A_, L_);
  seed_steps_ = s_.seed_steps > 0 ? s_.seed_steps : std::max<int64_t>(1000, 5 * L_);

  if (s_.num_threads > 0) omp_set_num_threads(s_.num_threads);
  if (s_.save_video) renderer_.emplace(eval_env_, s_.video_size, s_.video_size);
  ops_ = make_ops(s_.device);
  s_.agent.max_states = S_;
  ag_.emplace(*ops_, s_.model, s_.planner, s_.agent);
  const bool targets = s_.model.prior != model::Prior::none;
  replay::ReplaySettings& rs = replay_settings_;
  rs.capacity = s_.buffer_size;
  rs.obs_dim = O_;
  rs.action_dim = A_;
  rs.horizon = s_.model.horizon;
  rs.planner_targets = targets;
  rs.num_envs = S_;
  rs.seed = s_.seed;
  replay_.emplace(rs);

  st_.next_eval = s_.eval_freq;
  st_.next_checkpoint = s_.checkpoint_freq;
  st_.env_episodes.assign(size_t(S_), 0);
  if (ckpt_) resume_from_checkpoint();
  elapsed_before_ = st_.elapsed_s;
  open_logs();

  allocate_buffers(targets);
  result_.run_dir = s_.run_dir;
}

// The per-env step buffers and the host side of the sampled batch.
void Run::allocate_buffers(bool targets) {
  const size_t SO = size_t(S_) * O_, SA = size_t(S_) * A_;
  obs_.resize(SO);
  next_obs_.resize(SO);
  action_.resize(SA);
  mu_.resize(SA);
  sigma_.resize(SA);
  first_.resize(S_);
  active_.resize(S_);
  res_.resize(S_);
  step_of_.resize(S_);
  ep_len_.resize(S_);
  ep_return_.resize(S_);
  const int B = s_.model.batch_size, H = s_.model.horizon;
  b_mu_.resize(targets ? size_t(H) * B * A_ : 0);
  b_sigma_.resize(b_mu_.size());
  b_index_.resize(size_t(H + 1) * B);
  ended_.reserve(size_t(S_));
}

// The model, counters and replay buffer of the checkpoint; every env's reset stream moved past
// its finished episodes.
void Run::resume_from_checkpoint() {
  st_ = load_checkpoint(*ckpt_, *ag_);
  if (s_.save_buffer)
    load_replay(meta_int(*ckpt_, "replay_episodes"));
  else
    std::printf("resume: no replay buffer restored (save_buffer=false): the buffer starts empty\n");
  // Checkpoints fall between rounds: every env continues its initial-state stream after as
  // many resets as it has finished episodes.
  std::vector<float> scratch(O_);
  for (int i = 0; i < S_; ++i)
    for (int64_t n = 0; n < st_.env_episodes[size_t(i)]; ++n) envs_.env(i).reset(scratch.data());
  for (int64_t i = 0; i < st_.eval_episodes_run; ++i) eval_env_.reset(scratch.data());
  std::printf("resume: %s at env step %lld (%llu updates)\n", ckpt_path_.c_str(),
              static_cast<long long>(st_.env_step),
              static_cast<unsigned long long>(ag_->world_model().updates()));
  ckpt_.reset();
}

// The replay buffer that belongs to the checkpoint (it holds `episodes` episodes):
// replay.safetensors, or replay.next.safetensors when the run stopped after writing the
// checkpoint and before renaming the buffer file over the old one (see save()); that rename is
// done here then, so the run directory looks as if the save had finished. A damaged file (its
// checksum) or one of another episode count is passed over; when neither file fits, the error
// lists why and nothing in run_dir has been changed.
void Run::load_replay(int64_t episodes) {
  std::string found;
  for (const std::string& path : {replay_path_, replay_next_path_}) {
    if (!io::path_exists(path)) continue;
    try {
      replay_.emplace(replay_settings_);
      const bool verified = replay_->load(path);
      if (replay_->episodes_added() == episodes) {
        if (!verified)
          std::printf(
              "resume: %s has no checksum (written by an older pompc): its contents were not "
              "verified\n",
              path.c_str());
        if (path == replay_next_path_) {  // finish the interrupted save
          io::rename_file(replay_next_path_, replay_path_);
          std::printf(
              "resume: replay buffer from %s (the last save stopped before renaming it "
              "to %s; renamed now)\n",
              path.c_str(), replay_path_.c_str());
        }
        return;
      }
      found += strfmt("\n  %s holds %lld episodes", path.c_str(),
                      static_cast<long long>(replay_->episodes_added()));
    } catch (const Error& e) {
      found += strfmt("\n  %s", e.what());
    }
  }
  replay_.emplace(replay_settings_);
  POMPC_REQUIRE(found.empty(),
                "resume: no replay buffer file in %s can be restored with the checkpoint, which "
                "expects %lld episodes:%s\nNothing in %s was changed. Resume with "
                "save_buffer=false to continue from the checkpoint with an empty buffer.",
                s_.run_dir.c_str(), static_cast<long long>(episodes), found.c_str(),
                s_.run_dir.c_str());
  std::printf("resume: no replay buffer restored (no %s): the buffer starts empty\n",
              replay_path_.c_str());
}

// config.txt, train.csv and eval.csv (a resumed run drops rows after its checkpoint; a fresh
// one removes what a run stopped before its first checkpoint left) and the banner line.
void Run::open_logs() {
  std::filesystem::create_directories(s_.run_dir);
  std::optional<io::CsvLogger::Resume> resume_rows;
  if (s_.resume) {
    resume_rows = io::CsvLogger::Resume{"env_step", st_.env_step};
  } else {
    for (const std::string& f :
         {s_.run_dir + "/train.csv", s_.run_dir + "/eval.csv", replay_path_, replay_next_path_})
      std::remove(f.c_str());
  }
  io::write_file_atomic(s_.run_dir + "/config.txt", cfg_.to_lines());
  train_log_.emplace(s_.run_dir + "/train.csv",
                     std::vector<std::string>{
                         "env_step", "episode", "episode_return", "episode_length", "updates",
                         "consistency_loss", "reward_loss", "value_loss", "total_loss",
                         "grad_norm", "pi_loss", "pi_grad_norm", "pi_scale", "prior_loss",
                         "prior_scale", "prior_fit_loss", "reanalyses", "steps_per_s",
                         "elapsed_s"},
                     resume_rows);
  eval_log_.emplace(s_.run_dir + "/eval.csv",
                    std::vector<std::string>{"env_step", "return_mean", "return_std", "episodes"},
                    resume_rows);
  std::printf("train: %s, preset %s, %s, %zu parameters, run_dir %s, seed_steps %lld, "
              "num_envs %d\n",
              s_.task.c_str(), s_.preset.c_str(), ops_->description().c_str(),
              ag_->world_model().trainable_param_count(), s_.run_dir.c_str(),
              static_cast<long long>(seed_steps_), S_);
  if (renderer_)
    std::printf(
        "video: the first %d episode(s) of each evaluation to %s/videos/eval_<env_step>.%s, "
        "%dx%d, camera %d, %s\n",
        s_.video_episodes, s_.run_dir.c_str(), io::video_extension().c_str(), s_.video_size,
        s_.video_size, renderer_->camera(), env::Renderer::platform().c_str());
  std::fflush(stdout);
}

TrainResult Run::train() {
  for (bool finished = st_.env_step >= s_.steps; !finished;) {
    round();
    finished = st_.env_step >= s_.steps;
    const bool eval = st_.env_step >= st_.next_eval || finished;
    const bool checkpoint = st_.env_step >= st_.next_checkpoint || finished;
    if (eval || checkpoint) flush_train_rows();  // else after the next round's first act
    if (eval) evaluate();
    print_progress();
    if (checkpoint) save();
  }
  return finish();
}

// Every env plays one episode, in lockstep while all are running.
void Run::round() {
  const auto t_round = Clock::now();
  envs_.reset_all(obs_.data());
  std::fill(first_.begin(), first_.end(), uint8_t(1));
  std::fill(active_.begin(), active_.end(), uint8_t(1));
  std::fill(ep_return_.begin(), ep_return_.end(), 0.0);
  std::fill(ep_len_.begin(), ep_len_.end(), int64_t(0));
  round_steps_ = 0;
  round_s_ = 0;
  for (n_active_ = S_; n_active_ > 0;) {
    const auto t_step = Clock::now();
    const int64_t planned = act();
    flush_train_rows();  // the last round's rows: act has waited for their losses
    // The updates come before the env step: a batch never holds this step's transitions (an
    // episode becomes sampleable when it ends, in end_episodes), so the order changes no number,
    // and on a GPU the update runs there while MuJoCo steps the envs here.
    const double burst_s = update(planned);
    step_envs();
    store();
    if (planned > 0) {
      planned_steps_ += int64_t(n_active_) * s_.action_repeat;
      planned_seconds_ += seconds_since(t_step) - burst_s;
    }
    end_episodes(t_round);
  }
  round_sps_ = double(round_steps_) / std::max(round_s_, 1e-9);
  result_.last_steps_per_s = round_sps_;
  steps_this_process_ += round_steps_;
  seconds_this_process_ += round_s_;
}

// The active envs' actions are agent steps k, k + 1, ... in env order: uniform in [-1, 1] in the
// seed phase, else the planner's (one Agent::act for all S states).
int64_t Run::act() {
  const int64_t k = st_.agent_step;
  int64_t planned = 0;
  for (int i = 0, rank = 0; i < S_; ++i)
    if (active_[i]) {
      step_of_[i] = k + rank++;
      planned += step_of_[i] >= seed_steps_;
    }
  if (planned > 0)
    ag_->act(obs_.data(), first_.data(), S_, /*explore=*/true, s_.seed, uint64_t(k),
             action_.data(), mu_.data(), sigma_.data());
  for (int i = 0; i < S_; ++i)
    if (active_[i] && step_of_[i] < seed_steps_)
      for (int j = 0; j < A_; ++j)
        action_[size_t(i) * A_ + j] =
            2.0f * philox_uniform(s_.seed, kUniformOffset, uint64_t(step_of_[i]) * A_ + j) - 1.0f;
  std::fill(first_.begin(), first_.end(), uint8_t(0));
  return planned;
}

void Run::step_envs() {
  if (n_active_ == S_) {
    envs_.step_all(action_.data(), next_obs_.data(), res_.data());
    return;
  }
  // Only after an episode ended early (a physics error): step the others alone.
  for (int i = 0; i < S_; ++i) {
    if (active_[i])
      res_[i] = envs_.env(i).step(&action_[size_t(i) * A_], &next_obs_[size_t(i) * O_]);
    else
      std::copy_n(&obs_[size_t(i) * O_], O_, &next_obs_[size_t(i) * O_]);
  }
}

// Each active env's transition (with the planner's target when it planned) into the replay
// buffer; advances the step counters.
void Run::store() {
  for (int i = 0; i < S_; ++i) {
    if (!active_[i]) continue;
    const bool p = step_of_[i] >= seed_steps_;
    replay_->add(i, &obs_[size_t(i) * O_], &action_[size_t(i) * A_], res_[i].reward,
                 p ? &mu_[size_t(i) * A_] : nullptr, p ? &sigma_[size_t(i) * A_] : nullptr);
    ep_return_[i] += res_[i].reward;
    ++ep_len_[i];
  }
  obs_.swap(next_obs_);
  st_.agent_step += n_active_;
  st_.env_step += int64_t(n_active_) * s_.action_repeat;
  round_steps_ += int64_t(n_active_) * s_.action_repeat;
}

// One update per planned agent step; the first time a slice can be sampled, the pretraining
// burst of seed_steps updates takes the place of one of them. Returns the burst's seconds.
double Run::update(int64_t planned) {
  if (planned == 0 || replay_->valid_starts() == 0) return 0;
  double burst_s = 0;
  if (!st_.pretrained) {
    const auto t_burst = Clock::now();
    for (int64_t i = 0; i < seed_steps_; ++i) one_update(/*burst=*/true);
    burst_s = seconds_since(t_burst);
    result_.burst_updates = uint64_t(seed_steps_);
    result_.burst_s = burst_s;
    st_.pretrained = true;
    --planned;
  }
  for (int64_t i = 0; i < planned; ++i) one_update(/*burst=*/false);
  return burst_s;
}

// One update; lazy reanalysis (bmpc, pompc) rewrites the first slices' targets, written back.
void Run::one_update(bool burst) {
  // Sampled straight into the agent's upload staging (no host copy of the batch); the slice
  // indices, and the targets an objective without a prior does not read, into the run's own.
  replay::SliceBatch b = ag_->staging_batch();
  b.index = b_index_.data();
  if (!b.mu && !b_mu_.empty()) {
    b.mu = b_mu_.data();
    b.sigma = b_sigma_.data();
  }
  replay_->sample(b);
  const int reanalysed = ag_->update(b, burst);
  if (reanalysed) replay_->write_batch_targets(b, reanalysed);
}

// Episode ends (DMC: all envs at once, episodes have a fixed length): replay.end_episode and one
// train.csv row per ended env with the last update's losses. The losses are copied to the host
// asynchronously (Agent::stage_stats) and the rows wait in pending_ until flush_train_rows,
// after the next host wait, so that logging adds none.
void Run::end_episodes(Clock::time_point t_round) {
  ended_.clear();
  for (int i = 0; i < S_; ++i)
    if (active_[i] && res_[i].done) {
      active_[i] = 0;
      --n_active_;
      replay_->end_episode(i, &obs_[size_t(i) * O_]);
      ++st_.env_episodes[size_t(i)];
      ended_.push_back(i);
    }
  if (ended_.empty()) return;
  const uint64_t updates = ag_->world_model().updates();
  if (updates > 0) ag_->stage_stats();
  round_s_ = seconds_since(t_round);
  const double sps = double(round_steps_) / std::max(round_s_, 1e-9);
  for (int i : ended_) {
    ++st_.episodes;
    pending_.push_back(PendingRow{st_.env_step, st_.episodes, ep_return_[i], ep_len_[i], updates,
                                  ag_->reanalyses(), sps, elapsed()});
  }
}

// The pending train.csv rows with their losses (NaN before the first update); a non-finite loss
// stops the run here, before it writes a row, an evaluation or a checkpoint.
void Run::flush_train_rows() {
  if (pending_.empty()) return;
  const float nan = std::nanf("");
  model::UpdateStats us{nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan};
  if (pending_.front().updates > 0) {
    us = ag_->read_stats();
    check_losses_finite(us, pending_.front().env_step, pending_.front().updates);
  }
  for (const PendingRow& r : pending_)
    train_log_->row({r.env_step, r.episode, r.ret, r.length,
                     static_cast<unsigned long long>(r.updates), us.consistency_loss,
                     us.reward_loss, us.value_loss, us.total_loss, us.grad_norm, us.pi_loss,
                     us.pi_grad_norm, us.pi_scale, us.prior_loss, us.prior_scale, us.prior_fit_loss,
                     static_cast<unsigned long long>(r.reanalyses), r.sps, r.elapsed});
  pending_.clear();
}

void Run::evaluate() {
  const uint64_t base = kEvalPlanStep + uint64_t(st_.eval_episodes_run) * uint64_t(L_ + 1);
  std::string video_path;
  if (renderer_) {
    std::filesystem::create_directories(s_.run_dir + "/videos");
    video_path = strfmt("%s/videos/eval_%lld.%s", s_.run_dir.c_str(),
                        static_cast<long long>(st_.env_step), io::video_extension().c_str());
  }
  const std::vector<double> rets =
      run_eval_with_video(*ag_, eval_env_, s_.eval_episodes, s_.seed, base,
                          renderer_ ? &*renderer_ : nullptr, video_path, s_.video_episodes);
  st_.eval_episodes_run += s_.eval_episodes;
  double m = 0, sd = 0;
  mean_std(rets, &m, &sd);
  eval_log_->row({st_.env_step, m, sd, s_.eval_episodes});
  last_eval_ = m;
  last_eval_step_ = st_.env_step;
  while (st_.next_eval <= st_.env_step) st_.next_eval += s_.eval_freq;
}

void Run::print_progress() const {
  io::Progress p;
  p.step = st_.env_step;
  p.total_steps = s_.steps;
  p.elapsed_s = elapsed();
  p.steps_per_s = round_sps_;
  p.last_eval_return = last_eval_;
  p.last_eval_step = last_eval_step_;
  if (S_ == 1) {
    std::printf("%s | episode %lld return %.1f\n", io::format_progress(p).c_str(),
                static_cast<long long>(st_.episodes), ep_return_[0]);
  } else {
    double mean_return = 0;
    for (double r : ep_return_) mean_return += r / S_;
    std::printf("%s | episodes %lld-%lld mean return %.1f\n", io::format_progress(p).c_str(),
                static_cast<long long>(st_.episodes - S_ + 1),
                static_cast<long long>(st_.episodes), mean_return);
  }
  std::fflush(stdout);
}

// The replay buffer into replay.next.safetensors, the checkpoint that names its episode count
// (the commit point), then the buffer file renamed over replay.safetensors: a run killed at any
// moment leaves a checkpoint with its own buffer in one of the two files (load_replay).
void Run::save() {
  while (st_.next_checkpoint <= st_.env_step) st_.next_checkpoint += s_.checkpoint_freq;
  st_.elapsed_s = elapsed();
  if (s_.save_buffer) replay_->save(replay_next_path_);
  save_checkpoint(ckpt_path_, *ag_, cfg_, st_, replay_->episodes_added());
  if (s_.save_buffer) io::rename_file(replay_next_path_, replay_path_);
}

TrainResult Run::finish() {
  result_.env_steps = st_.env_step;
  result_.episodes = st_.episodes;
  result_.updates = ag_->world_model().updates();
  result_.last_eval_mean = last_eval_.value_or(std::nan(""));
  result_.steps_per_s =
      seconds_this_process_ > 0 ? steps_this_process_ / seconds_this_process_ : 0;
  result_.planned_steps_per_s = planned_seconds_ > 0 ? planned_steps_ / planned_seconds_ : 0;
  std::printf("train: done at env step %lld, %.1f env steps/s, last eval %.1f; %s\n",
              static_cast<long long>(st_.env_step), result_.steps_per_s, result_.last_eval_mean,
              ckpt_path_.c_str());
  return result_;
}

}  // namespace

TrainResult train(const std::vector<std::string>& args) { return Run(args).train(); }

EvalResult evaluate_checkpoint(const std::string& path, int episodes, const std::string& device,
                               uint64_t seed, const std::string& video) {
  POMPC_REQUIRE(episodes >= 1, "eval: episodes (%d) must be >= 1", episodes);
  std::unique_ptr<io::SafetensorsFile> f = open_checkpoint(path);
  io::Config cfg = train_config();
  std::vector<std::string> lines = io::Config::parse_lines(f->meta("config"));
  if (!device.empty()) lines.push_back("device=" + device);
  cfg.apply(lines);
  TrainSettings s = settings_from(cfg);
  const uint64_t env_seed = seed ? seed : s.seed + kEvalSeedOffset;
  env::Env env(s.task, uint32_t(env_seed), s.action_repeat);
  resolve_model(s, env.obs_dim(), env.act_dim(), env.episode_length());
  auto ops = make_ops(s.device);
  agent::AgentSettings as = s.agent;
  as.reanalyze_interval = 0;  // evaluation only acts
  agent::Agent ag(*ops, s.model, s.planner, as);
  load_checkpoint(*f, ag);
  std::optional<env::Renderer> renderer;
  if (!video.empty()) renderer.emplace(env, s.video_size, s.video_size);
  EvalResult r;
  r.returns = run_eval_with_video(ag, env, episodes, s.seed, kEvalPlanStep,
                                  renderer ? &*renderer : nullptr, video, 1);
  mean_std(r.returns, &r.mean, &r.std);
  return r;
}

}  // namespace pompc::train
