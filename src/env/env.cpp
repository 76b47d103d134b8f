// src/env/env.cpp: models, Physics (dm_control's call sequences) and Env (reset/step, action
// scaling, action repeat, physics errors). Run book: env.h.
#pragma GCC optimize("fp-contract=off")  // ctrl = lo + scale * (a + 1) rounds like numpy

#include "env/env.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "common.h"
#include "env/tasks.h"

#ifndef POMPC_DMC_DIR
#error "POMPC_DMC_DIR must be defined (the Makefile passes the pinned dm_control suite directory)"
#endif

namespace pompc::env {

namespace detail {

// ---- MuJoCo warnings ------------------------------------------------------------------------
namespace {

thread_local char t_last_warning[256] = "";

void keep_warning(const char* msg) {
  std::snprintf(t_last_warning, sizeof t_last_warning, "%s", msg);
}

const char* const kWarningNames[mjNWARNING] = {"INERTIA", "CONTACTFULL", "CNSTRFULL", "BADQPOS",
                                               "BADQVEL", "BADQACC",     "BADCTRL"};

}  // namespace

const char* last_mujoco_warning() {
  return t_last_warning;
}
void clear_last_mujoco_warning() {
  t_last_warning[0] = '\0';
}

void install_mujoco_warning_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (!mju_user_warning) mju_user_warning = keep_warning;
  });
}

std::string warning_message(unsigned mask, const mjData* d) {
  std::string s = "MuJoCo warning";
  bool first = true;
  for (int i = 0; i < mjNWARNING; ++i)
    if (mask & (1u << i)) {
      s += strfmt("%s%s (count %d, info %d)", first ? " " : ", ", kWarningNames[i],
                  d->warning[i].number, d->warning[i].lastinfo);
      first = false;
    }
  if (last_mujoco_warning()[0]) s += strfmt(": %s", last_mujoco_warning());
  return s;
}

// ---- Physics --------------------------------------------------------------------------------
Physics::Physics(const mjModel* shared, bool private_copy) {
  if (private_copy) {
    own_ = mj_copyModel(nullptr, shared);
    POMPC_REQUIRE(own_, "mj_copyModel failed (out of memory?)");
  }
  m = own_ ? own_ : shared;
  noact_ = *m;  // shares every array with *m
  noact_.opt.disableflags |= mjDSBL_ACTUATION;
  d = mj_makeData(m);
  if (!d) {
    if (own_) mj_deleteModel(own_);
    throw Error("mj_makeData failed (out of memory?)");
  }
  snapshot();
}

Physics::~Physics() {
  mj_deleteData(d);
  if (own_) mj_deleteModel(own_);
}

mjModel* Physics::model_for_edit() {
  POMPC_REQUIRE(own_, "this task edits its model per episode but the Env shares it (bug)");
  return own_;
}

void Physics::snapshot() {
  for (int i = 0; i < mjNWARNING; ++i) before_[i] = d->warning[i].number;
}

unsigned Physics::new_warnings() const {
  unsigned mask = 0;
  for (int i = 0; i < mjNWARNING; ++i)
    if (d->warning[i].number > before_[i]) mask |= 1u << i;
  return mask;
}

unsigned Physics::reset() {
  mj_resetData(m, d);
  return after_reset();
}

unsigned Physics::after_reset() {
  snapshot();
  mj_forward(&noact_, d);
  return new_warnings();
}

unsigned Physics::step(int nstep) {
  snapshot();
  if (m->opt.integrator != mjINT_RK4) {
    mj_step2(m, d);
    for (int i = 1; i < nstep; ++i) mj_step(m, d);
  } else {
    for (int i = 0; i < nstep; ++i) mj_step(m, d);
  }
  mj_step1(m, d);
  return new_warnings();
}

void Physics::check(unsigned mask, const char* where) const {
  if (mask) throw PhysicsError(strfmt("%s: %s", where, warning_message(mask, d).c_str()));
}

// ---- models ---------------------------------------------------------------------------------
namespace {

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

struct ModelDeleter {
  void operator()(mjModel* m) const { mj_deleteModel(m); }
};
using ModelPtr = std::shared_ptr<const mjModel>;

}  // namespace

ModelPtr compile_model(const TaskSpec& spec) {
  const std::string dir = dmc_dir();
  const std::string path = dir + "/" + spec.domain + ".xml";
  POMPC_REQUIRE(file_exists(path),
                "DMC model file %s is missing: run `make deps` (it unpacks the pinned dm-control "
                "wheel into .deps/py), or set POMPC_DMC_DIR to dm_control's suite directory",
                path.c_str());
  char err[1024] = "";
  mjSpec* s = mj_parseXML(path.c_str(), nullptr, err, sizeof err);
  POMPC_REQUIRE(s, "parsing %s failed: %s (run `make deps` to restore the pinned suite files)",
                path.c_str(), err);
  mjModel* m = nullptr;
  try {
    edit_spec(spec, s);
    m = mj_compile(s, nullptr);
    POMPC_REQUIRE(m,
                  "compiling %s for %s failed: %s (run `make deps` to restore the pinned "
                  "suite files)",
                  path.c_str(), spec.name.c_str(), mjs_getError(s));
  } catch (...) {
    mj_deleteSpec(s);
    throw;
  }
  mj_deleteSpec(s);
  ModelPtr model(m, ModelDeleter());
  edit_model(spec, m);
  POMPC_REQUIRE(m->nu == spec.act_dim, "%s: the model has %d actuators, the task table says %d",
                spec.name.c_str(), static_cast<int>(m->nu), spec.act_dim);
  POMPC_REQUIRE(m->opt.timestep == spec.physics_dt && (m->opt.integrator == mjINT_RK4) == spec.rk4,
                "%s: the model's timestep %g / integrator %d differ from dm-control 1.0.50's; run "
                "`make deps`",
                spec.name.c_str(), m->opt.timestep, m->opt.integrator);
  for (int a = 0; a < m->nu; ++a)
    POMPC_REQUIRE(m->actuator_ctrllimited[a], "%s: actuator %d has no ctrlrange", spec.name.c_str(),
                  a);
  return model;
}

namespace {

// One compiled model per task, shared by every Env of that task for the life of the process.
ModelPtr shared_model(const TaskSpec& spec) {
  static std::mutex mutex;
  static std::map<std::string, ModelPtr> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(spec.name);
  if (it != cache.end()) return it->second;
  ModelPtr m = compile_model(spec);
  cache.emplace(spec.name, m);
  return m;
}

}  // namespace
}  // namespace detail

// ---- task list ------------------------------------------------------------------------------
const std::vector<TaskSpec>& tasks() {
  return detail::task_table();
}

const TaskSpec& find_task(const std::string& name) {
  for (const TaskSpec& t : tasks())
    if (t.name == name) return t;
  std::string valid;
  for (const TaskSpec& t : tasks()) valid += (valid.empty() ? "" : ", ") + t.name;
  throw Error(strfmt("unknown task '%s'; valid tasks: %s", name.c_str(), valid.c_str()));
}

void print_tasks(FILE* f) {
  std::fprintf(f, "%-24s %5s %5s  %-24s %9s %6s %10s\n", "task", "obs", "act", "dm_control",
               "physics", "n_sub", "control dt");
  for (const TaskSpec& t : tasks())
    std::fprintf(f, "%-24s %5d %5d  %-24s %9g %6d %10g\n", t.name.c_str(), t.obs_dim, t.act_dim,
                 (t.domain + "/" + t.dmc_task).c_str(), t.physics_dt, t.n_sub,
                 t.physics_dt * t.n_sub);
  std::fprintf(f,
               "episodes: %d control steps (%d agent steps at action_repeat 2); actions in "
               "[-1, 1]; models from %s\n",
               kEpisodeControlSteps, kEpisodeControlSteps / 2, dmc_dir().c_str());
}

std::string dmc_dir() {
  const char* e = std::getenv("POMPC_DMC_DIR");
  return e && *e ? std::string(e) : std::string(POMPC_DMC_DIR);
}

// ---- Env ------------------------------------------------------------------------------------
struct Env::Impl {
  Impl(const TaskSpec& s, uint32_t sd, int repeat)
      : spec(s),
        model(detail::shared_model(s)),
        physics(model.get(), detail::needs_private_model(s)),
        task(detail::make_task(s, physics.m)),
        random(sd),
        seed(sd),
        action_repeat(repeat) {
    const mjModel* m = physics.m;
    ctrl_lo.resize(m->nu);
    ctrl_scale.resize(m->nu);
    for (int a = 0; a < m->nu; ++a) {
      const double lo = m->actuator_ctrlrange[2 * a], hi = m->actuator_ctrlrange[2 * a + 1];
      ctrl_lo[a] = lo;
      ctrl_scale[a] = (hi - lo) / (1.0 - -1.0);  // action_scale.Wrapper(minimum=-1, maximum=1)
    }
  }

  void observe(float* obs) {
    const int n = task->get_observation(physics, obs);
    POMPC_REQUIRE(n == spec.obs_dim, "%s wrote %d observation entries, the task table says %d",
                  spec.name.c_str(), n, spec.obs_dim);
  }

  const TaskSpec& spec;
  std::shared_ptr<const mjModel> model;  // keeps the shared model alive
  detail::Physics physics;
  std::unique_ptr<detail::Task> task;
  NumpyRandom random;
  uint32_t seed;
  int action_repeat;
  std::vector<double> ctrl_lo, ctrl_scale;
  int control_steps = 0;
  long episode = -1;         // episodes started
  bool episode_over = true;  // step() needs a reset() first
  std::string error;         // the physics error that ended this episode
};

Env::Env(const std::string& task, uint32_t seed, int action_repeat) {
  const TaskSpec& spec = find_task(task);
  POMPC_REQUIRE(action_repeat >= 1 && action_repeat <= kEpisodeControlSteps,
                "action_repeat (%d) must be in [1, %d]", action_repeat, kEpisodeControlSteps);
  detail::install_mujoco_warning_handler();
  impl_ = std::make_unique<Impl>(spec, seed, action_repeat);
}

Env::~Env() = default;
Env::Env(Env&&) noexcept = default;
Env& Env::operator=(Env&&) noexcept = default;

void Env::reset(float* obs) {
  Impl& s = *impl_;
  s.episode++;
  s.control_steps = 0;
  s.episode_over = true;  // until the reset succeeds
  s.error.clear();
  constexpr int kTries = 10;
  for (int attempt = 1;; ++attempt) {
    try {
      detail::clear_last_mujoco_warning();
      s.physics.reset();  // errors here are swallowed by dm_control's reset_context
      s.task->initialize_episode(s.physics, s.random);
      s.physics.check(s.physics.after_reset(), "reset");
      s.episode_over = false;
      break;
    } catch (const detail::PhysicsError& e) {
      std::fprintf(stderr, "env: %s seed %u episode %ld: physics error in reset (%s); %s\n",
                   s.spec.name.c_str(), s.seed, s.episode, e.what(),
                   attempt < kTries ? "drawing a new initial state" : "giving up");
      if (attempt == kTries)
        throw Error(strfmt("%s seed %u: %d resets in a row hit physics errors; last: %s",
                           s.spec.name.c_str(), s.seed, kTries, e.what()));
    }
  }
  s.observe(obs);
}

StepResult Env::step(const float* action, float* obs) {
  Impl& s = *impl_;
  POMPC_REQUIRE(!s.episode_over,
                "%s: step() after the episode ended (or before the first "
                "reset()): call reset() first",
                s.spec.name.c_str());
  const mjModel* m = s.physics.m;
  mjData* d = s.physics.d;
  StepResult r;
  double reward = 0.0;
  detail::clear_last_mujoco_warning();
  for (int k = 0; k < s.action_repeat && s.control_steps < kEpisodeControlSteps; ++k) {
    for (int a = 0; a < m->nu; ++a)
      d->ctrl[a] = s.ctrl_lo[a] + s.ctrl_scale[a] * (static_cast<double>(action[a]) + 1.0);
    const unsigned warnings = s.physics.step(s.spec.n_sub);
    s.control_steps++;
    if (warnings) {
      s.error = strfmt("physics error at control step %d: %s", s.control_steps,
                       detail::warning_message(warnings, d).c_str());
      break;
    }
    const double rk = s.task->get_reward(s.physics);
    if (!std::isfinite(rk)) {
      s.error = strfmt("non-finite reward at control step %d", s.control_steps);
      break;
    }
    reward += rk;
  }
  s.observe(obs);
  if (s.error.empty())
    for (int i = 0; i < s.spec.obs_dim; ++i)
      if (!std::isfinite(obs[i])) {
        s.error = strfmt("non-finite observation entry %d at control step %d", i, s.control_steps);
        break;
      }
  if (!s.error.empty()) {
    for (int i = 0; i < s.spec.obs_dim; ++i)
      if (!std::isfinite(obs[i])) obs[i] = 0.0f;
    std::fprintf(stderr, "env: %s seed %u episode %ld: %s; episode ended\n", s.spec.name.c_str(),
                 s.seed, s.episode, s.error.c_str());
    r.physics_error = s.error.c_str();
  }
  r.reward = static_cast<float>(reward);
  r.done = !s.error.empty() || s.control_steps >= kEpisodeControlSteps;
  s.episode_over = r.done;
  return r;
}

double Env::set_state_and_evaluate(const double* qpos, const double* qvel, const double* act,
                                   const double* ctrl, float* obs) {
  Impl& s = *impl_;
  const mjModel* m = s.physics.m;
  mjData* d = s.physics.d;
  if (qpos) std::copy(qpos, qpos + m->nq, d->qpos);
  if (qvel) std::copy(qvel, qvel + m->nv, d->qvel);
  if (act) std::copy(act, act + m->na, d->act);
  if (ctrl) std::copy(ctrl, ctrl + m->nu, d->ctrl);
  mj_forward(m, d);
  s.episode_over = true;
  const double r = s.task->get_reward(s.physics);
  s.observe(obs);
  return r;
}

const TaskSpec& Env::spec() const {
  return impl_->spec;
}
int Env::action_repeat() const {
  return impl_->action_repeat;
}
int Env::episode_length() const {
  return (kEpisodeControlSteps + impl_->action_repeat - 1) / impl_->action_repeat;
}
int Env::control_steps() const {
  return impl_->control_steps;
}
uint32_t Env::seed() const {
  return impl_->seed;
}
const mjModel* Env::model() const {
  return impl_->physics.m;
}
const mjData* Env::data() const {
  return impl_->physics.d;
}

}  // namespace pompc::env
