// src/env/tasks.h: internals of the environment layer (not for use outside src/env and its
// tests). The public API is env.h.
//
// Physics mirrors dm_control's mujoco.Physics: reset(), after_reset() (mj_forward with actuation
// disabled), step(n) (the legacy step: Euler models mj_step2, (n - 1) x mj_step, mj_step1; RK4
// models n x mj_step, mj_step1), each returning the mask of MuJoCo warning counters that went up
// (dm_control's check_invalid_state). Actuation is disabled through a shallow copy of the
// mjModel struct whose opt.disableflags has mjDSBL_ACTUATION: it shares every array with the
// real model, so the shared model is never written and threads cannot race on its flags.
//
// Task mirrors dm_control's suite Task: initialize_episode / get_observation / get_reward, one
// class per domain in tasks.cpp, written from dm_control's suite/<domain>.py.
#pragma once

#include <mujoco/mujoco.h>

#include <memory>
#include <stdexcept>
#include <string>

#include "env/env.h"
#include "env/numpy_random.h"

namespace pompc::env::detail {

// A physics error during reset (dm_control raises PhysicsError out of env.reset()).
struct PhysicsError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// "BADQACC (last: <MuJoCo's text>)" for the warnings in mask (bit i = mjtWarning i).
std::string warning_message(unsigned mask, const mjData* d);
// Installs a MuJoCo warning handler (once per process, when none is installed) that keeps the
// text in a thread-local buffer instead of writing MUJOCO_LOG.TXT; returns that buffer.
const char* last_mujoco_warning();
void clear_last_mujoco_warning();
void install_mujoco_warning_handler();

class Physics {
 public:
  // private_copy: copy the model (mj_copyModel) instead of sharing it.
  Physics(const mjModel* shared, bool private_copy);
  ~Physics();
  Physics(const Physics&) = delete;
  Physics& operator=(const Physics&) = delete;

  unsigned reset();          // mj_resetData, then after_reset()
  unsigned after_reset();    // mj_forward with actuation disabled
  unsigned step(int nstep);  // dm_control's legacy step (see above)
  // Throws PhysicsError naming `where` when mask != 0.
  void check(unsigned mask, const char* where) const;

  // The Env's private model copy, for tasks that edit the model every episode (throws for a
  // shared model).
  mjModel* model_for_edit();

  const mjModel* m;  // the model the task sees (shared, or the Env's private copy)
  mjData* d;

 private:
  unsigned new_warnings() const;  // counters above the snapshot
  void snapshot();

  mjModel* own_ = nullptr;  // private copy, or null
  mjModel noact_;           // shallow copy of *m with actuation disabled
  int before_[mjNWARNING];
};

class Task {
 public:
  virtual ~Task() = default;
  virtual void initialize_episode(Physics& physics, NumpyRandom& random) = 0;
  // Writes the observation (at most the task table's obs_dim entries); returns the entry count.
  virtual int get_observation(const Physics& physics, float* obs) const = 0;
  virtual double get_reward(const Physics& physics) const = 0;
};

// Parses <dmc_dir>/<domain>.xml, applies the task's edits and compiles it (dm_control's
// Physics.from_xml_string of make_model()'s output); not cached (Env shares one per task).
// Throws pompc::Error naming `make deps` when files are missing.
std::shared_ptr<const mjModel> compile_model(const TaskSpec& spec);
// The task table (tasks() in env.h returns it).
const std::vector<TaskSpec>& task_table();
// Task-specific edits of the parsed XML (dm_control's make_model) and of the compiled model
// (constant edits dm_control makes in initialize_episode, e.g. finger-spin's hinge damping).
void edit_spec(const TaskSpec& spec, mjSpec* s);
void edit_model(const TaskSpec& spec, mjModel* m);
// True when dm_control edits the model every episode: the Env needs a private copy.
bool needs_private_model(const TaskSpec& spec);
// The task object; looks up every name it needs in m (throws pompc::Error when one is missing).
std::unique_ptr<Task> make_task(const TaskSpec& spec, const mjModel* m);

// dm_control.utils.rewards.tolerance for the sigmoids the suite tasks use.
enum class Sigmoid { gaussian, linear, quadratic };
double tolerance(double x, double lo, double hi, double margin = 0.0,
                 Sigmoid sigmoid = Sigmoid::gaussian, double value_at_margin = 0.1);
// numpy's sum (pairwise with 8 accumulators from 8 elements on), so means match bit for bit.
double np_sum(const double* a, int n);
// numpy's a.dot(b) for 1-D float64 vectors of n < 16 entries: BLAS ddot, whose OpenBLAS kernels
// on AVX2 machines (Haswell and later; numpy 2.4.6's scipy-openblas 0.3.31 picks Haswell here)
// run vectors shorter than 16 through a sequential loop compiled to fused multiply-add:
// s = fma(a[i], b[i], s) from s = +0, in order. Checked against numpy on 20000 random vectors
// each of lengths 2, 3, 4, 5, 8 (all equal; the plain sum of rounded products agreed on 70 to
// 84%) and 5000 each of 6, 7, 12, 15 (all equal); from 16 on OpenBLAS's unrolled kernel
// reorders the sum (the sequential form agreed on 29 to 45% at 16), so n >= 16 throws.
double np_dot(const double* a, const double* b, int n);
// np.linalg.norm(v) of a 1-D float64 vector: sqrt(v.dot(v)), so np_dot's fused multiply-add.
double np_norm(const double* v, int n);
// numpy's v.dot(R) for a vector v[3] and a row-major 3x3 R (BLAS dgemv): out[j] is the
// sequential fused multiply-add over v[i] R[i][j], i = 0, 1, 2, from +0 (numpy agreed on all
// of 20000 random cases; the plain sum on 29%).
void vec_dot_mat3(const double* v, const double* r, double* out);

}  // namespace pompc::env::detail
