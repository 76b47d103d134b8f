// src/env/tasks.cpp: the 27 DeepMind Control Suite tasks (dm-control 1.0.50's suite/<domain>.py,
// facts in ../shared/DMC.md), one class per domain, named like dm_control's methods.
//
// Every random draw happens in dm_control's order from the Env's NumpyRandom, so a seed gives
// dm_control's initial state; observations and rewards repeat numpy's arithmetic (sums in numpy's
// pairwise order; dot products and norms, random unit quaternions included, as OpenBLAS's
// sequential fused multiply-add: np_dot, np_norm, vec_dot_mat3; no other multiply-add fused)
// so they agree to the last bit or within float32 rounding. Checked against dm_control itself
// by tests/test_env.cpp with the fixtures of tests/fixtures/gen_dmc.py.
#pragma GCC optimize("fp-contract=off")  // std::fma only where numpy fuses

#include "env/tasks.h"

#include <cmath>
#include <limits>

#include "common.h"

namespace pompc::env::detail {

namespace {

constexpr double kPi = 3.141592653589793;  // np.pi
constexpr double kInf = std::numeric_limits<double>::infinity();

// ---- task table ---------------------------------------------------------------------------
// name, domain, dm_control task, obs, act, physics dt, n_sub, rk4
const std::vector<TaskSpec> kTasks = {
    {"cartpole-balance", "cartpole", "balance", 5, 1, 0.01, 1, true},
    {"cartpole-balance-sparse", "cartpole", "balance_sparse", 5, 1, 0.01, 1, true},
    {"cartpole-swingup", "cartpole", "swingup", 5, 1, 0.01, 1, true},
    {"cartpole-swingup-sparse", "cartpole", "swingup_sparse", 5, 1, 0.01, 1, true},
    {"pendulum-swingup", "pendulum", "swingup", 3, 1, 0.02, 1, false},
    {"acrobot-swingup", "acrobot", "swingup", 6, 1, 0.01, 1, true},
    {"cheetah-run", "cheetah", "run", 17, 6, 0.01, 1, false},
    {"walker-stand", "walker", "stand", 24, 6, 0.0025, 10, false},
    {"walker-walk", "walker", "walk", 24, 6, 0.0025, 10, false},
    {"walker-run", "walker", "run", 24, 6, 0.0025, 10, false},
    {"hopper-stand", "hopper", "stand", 15, 4, 0.005, 4, false},
    {"hopper-hop", "hopper", "hop", 15, 4, 0.005, 4, false},
    {"humanoid-stand", "humanoid", "stand", 67, 21, 0.005, 5, false},
    {"humanoid-walk", "humanoid", "walk", 67, 21, 0.005, 5, false},
    {"humanoid-run", "humanoid", "run", 67, 21, 0.005, 5, false},
    {"quadruped-walk", "quadruped", "walk", 78, 12, 0.005, 4, false},
    {"quadruped-run", "quadruped", "run", 78, 12, 0.005, 4, false},
    {"dog-stand", "dog", "stand", 223, 38, 0.005, 3, false},
    {"dog-walk", "dog", "walk", 223, 38, 0.005, 3, false},
    {"dog-trot", "dog", "trot", 223, 38, 0.005, 3, false},
    {"dog-run", "dog", "run", 223, 38, 0.005, 3, false},
    {"finger-spin", "finger", "spin", 9, 2, 0.01, 2, false},
    {"finger-turn-easy", "finger", "turn_easy", 12, 2, 0.01, 2, false},
    {"finger-turn-hard", "finger", "turn_hard", 12, 2, 0.01, 2, false},
    {"reacher-easy", "reacher", "easy", 6, 2, 0.02, 1, false},
    {"reacher-hard", "reacher", "hard", 6, 2, 0.02, 1, false},
    {"cup-catch", "ball_in_cup", "catch", 8, 2, 0.002, 10, false},
};

// Target speed of the parametrised tasks (dm_control's _WALK_SPEED, _RUN_SPEED, ...).
double move_speed(const TaskSpec& s) {
  if (s.domain == "walker") return s.dmc_task == "stand" ? 0.0 : s.dmc_task == "walk" ? 1.0 : 8.0;
  if (s.domain == "humanoid")
    return s.dmc_task == "stand" ? 0.0 : s.dmc_task == "walk" ? 1.0 : 10.0;
  if (s.domain == "quadruped") return s.dmc_task == "walk" ? 0.5 : 5.0;
  if (s.domain == "dog") {
    if (s.dmc_task == "stand") return 0.0;
    return s.dmc_task == "walk" ? 1.0 : s.dmc_task == "trot" ? 3.0 : 9.0;
  }
  return 0.0;
}

// ---- model lookups --------------------------------------------------------------------------
int id_of(const mjModel* m, mjtObj type, const char* name) {
  const int id = mj_name2id(m, type, name);
  POMPC_REQUIRE(id >= 0,
                "the model has no %s named '%s': the suite XMLs in %s are not dm-control "
                "1.0.50's; run `make deps` (or fix POMPC_DMC_DIR)",
                mju_type2Str(type), name, dmc_dir().c_str());
  return id;
}
int body_id(const mjModel* m, const char* name) {
  return id_of(m, mjOBJ_BODY, name);
}
int site_id(const mjModel* m, const char* name) {
  return id_of(m, mjOBJ_SITE, name);
}
int geom_id(const mjModel* m, const char* name) {
  return id_of(m, mjOBJ_GEOM, name);
}
int joint_id(const mjModel* m, const char* name) {
  return id_of(m, mjOBJ_JOINT, name);
}
int qpos_of(const mjModel* m, const char* joint) {
  return m->jnt_qposadr[joint_id(m, joint)];
}
int dof_of(const mjModel* m, const char* joint) {
  return m->jnt_dofadr[joint_id(m, joint)];
}
int sensor_of(const mjModel* m, const char* name) {
  return m->sensor_adr[id_of(m, mjOBJ_SENSOR, name)];
}

// xmat entries, row-major (xx xy xz yx yy yz zx zy zz).
enum { XX = 0, XZ = 2, ZX = 6, ZY = 7, ZZ = 8 };
double xmat(const Physics& p, int body, int k) {
  return p.d->xmat[9 * body + k];
}

// Writes observation entries (at most n) and counts them; the Env checks the count against the
// task table.
class Obs {
 public:
  Obs(float* p, int n) : p_(p), end_(p + n) {}
  void put(double v) {
    if (p_ < end_) *p_++ = static_cast<float>(v);
    ++count_;
  }
  void put(const double* v, int n) {
    for (int i = 0; i < n; ++i) put(v[i]);
  }
  // Entries written (put beyond n writes nothing but still counts).
  int count() const { return count_; }

 private:
  float* p_;
  float* end_;
  int count_ = 0;
};

// ---- dm_control.suite.utils.randomizers -----------------------------------------------------
void random_limited_quaternion(NumpyRandom& random, double limit, double* quat) {
  double axis[3];
  for (double& a : axis) a = random.randn();
  const double n = np_norm(axis, 3);
  for (double& a : axis) a /= n;
  const double angle = random.random_sample() * limit;
  mju_axisAngle2Quat(quat, axis, angle);
}

void randomize_limited_and_rotational_joints(Physics& p, NumpyRandom& random) {
  const mjModel* m = p.m;
  double* qpos = p.d->qpos;
  for (int j = 0; j < m->njnt; ++j) {
    const int type = m->jnt_type[j];
    const int adr = m->jnt_qposadr[j];
    const double lo = m->jnt_range[2 * j], hi = m->jnt_range[2 * j + 1];
    if (m->jnt_limited[j]) {
      if (type == mjJNT_HINGE || type == mjJNT_SLIDE)
        qpos[adr] = random.uniform(lo, hi);
      else if (type == mjJNT_BALL)
        random_limited_quaternion(random, hi, qpos + adr);
    } else {
      if (type == mjJNT_HINGE) {
        qpos[adr] = random.uniform(-kPi, kPi);
      } else if (type == mjJNT_BALL) {
        double q[4];
        for (double& x : q) x = random.randn();
        const double n = np_norm(q, 4);
        for (int k = 0; k < 4; ++k) qpos[adr + k] = q[k] / n;
      } else if (type == mjJNT_FREE) {
        double q[4];  // dm_control draws rand(4) here (its comment: "should be randn")
        for (double& x : q) x = random.random_sample();
        const double n = np_norm(q, 4);
        for (int k = 0; k < 4; ++k) qpos[adr + 3 + k] = q[k] / n;
      }
    }
  }
}

// Mean of q(ctrl) = tolerance(ctrl, margin=1, value_at_margin=0, sigmoid='quadratic').
double small_control_mean(const Physics& p, double* scratch) {
  const int nu = p.m->nu;
  for (int i = 0; i < nu; ++i)
    scratch[i] = tolerance(p.d->ctrl[i], 0.0, 0.0, 1.0, Sigmoid::quadratic, 0.0);
  return np_sum(scratch, nu) / nu;
}

// ---- cartpole -------------------------------------------------------------------------------
class Cartpole : public Task {
 public:
  Cartpole(const mjModel* m, bool swing_up, bool sparse)
      : swing_up_(swing_up),
        sparse_(sparse),
        slider_(qpos_of(m, "slider")),
        hinge_(qpos_of(m, "hinge_1")),
        pole_(body_id(m, "pole_1")) {
    POMPC_REQUIRE(m->nq == 2 && m->nv == 2, "cartpole: expected one pole (nq = nv = 2)");
  }
  void initialize_episode(Physics& p, NumpyRandom& r) override {
    double* qpos = p.d->qpos;
    if (swing_up_) {
      qpos[slider_] = .01 * r.randn();
      qpos[hinge_] = kPi + .01 * r.randn();
    } else {
      qpos[slider_] = r.uniform(-.1, .1);
      for (int i = 1; i < p.m->nv; ++i) qpos[i] = r.uniform(-.034, .034);
    }
    for (int i = 0; i < p.m->nv; ++i) p.d->qvel[i] = 0.01 * r.randn();
  }
  int get_observation(const Physics& p, float* obs) const override {
    Obs o(obs, 5);
    o.put(p.d->qpos[slider_]);
    o.put(xmat(p, pole_, ZZ));
    o.put(xmat(p, pole_, XZ));
    o.put(p.d->qvel, 2);
    return o.count();
  }
  double get_reward(const Physics& p) const override {
    const double x = p.d->qpos[slider_];
    const double cos = xmat(p, pole_, ZZ);
    if (sparse_) return tolerance(x, -.25, .25) * tolerance(cos, .995, 1.0);
    const double upright = (cos + 1) / 2;
    const double centered = (1 + tolerance(x, 0.0, 0.0, 2.0)) / 2;
    double small_control = tolerance(p.d->ctrl[0], 0.0, 0.0, 1.0, Sigmoid::quadratic, 0.0);
    small_control = (4 + small_control) / 5;
    const double small_velocity = (1 + tolerance(p.d->qvel[1], 0.0, 0.0, 5.0)) / 2;
    return upright * small_control * small_velocity * centered;
  }

 private:
  bool swing_up_, sparse_;
  int slider_, hinge_, pole_;
};

// ---- pendulum -------------------------------------------------------------------------------
class Pendulum : public Task {
 public:
  explicit Pendulum(const mjModel* m)
      : hinge_q_(qpos_of(m, "hinge")), hinge_v_(dof_of(m, "hinge")), pole_(body_id(m, "pole")) {}
  void initialize_episode(Physics& p, NumpyRandom& r) override {
    p.d->qpos[hinge_q_] = r.uniform(-kPi, kPi);
  }
  int get_observation(const Physics& p, float* obs) const override {
    Obs o(obs, 3);
    o.put(xmat(p, pole_, ZZ));
    o.put(xmat(p, pole_, XZ));
    o.put(p.d->qvel[hinge_v_]);
    return o.count();
  }
  double get_reward(const Physics& p) const override {
    const double cos_bound = std::cos(8.0 * (kPi / 180.0));  // np.cos(np.deg2rad(8))
    return tolerance(xmat(p, pole_, ZZ), cos_bound, 1.0);
  }

 private:
  int hinge_q_, hinge_v_, pole_;
};

// ---- acrobot --------------------------------------------------------------------------------
class Acrobot : public Task {
 public:
  explicit Acrobot(const mjModel* m)
      : shoulder_(qpos_of(m, "shoulder")),
        elbow_(qpos_of(m, "elbow")),
        upper_(body_id(m, "upper_arm")),
        lower_(body_id(m, "lower_arm")),
        target_(site_id(m, "target")),
        tip_(site_id(m, "tip")) {}
  void initialize_episode(Physics& p, NumpyRandom& r) override {
    p.d->qpos[shoulder_] = r.uniform(-kPi, kPi);
    p.d->qpos[elbow_] = r.uniform(-kPi, kPi);
  }
  int get_observation(const Physics& p, float* obs) const override {
    Obs o(obs, 6);
    o.put(xmat(p, upper_, XZ));
    o.put(xmat(p, lower_, XZ));
    o.put(xmat(p, upper_, ZZ));
    o.put(xmat(p, lower_, ZZ));
    o.put(p.d->qvel, 2);
    return o.count();
  }
  double get_reward(const Physics& p) const override {
    double v[3];
    for (int k = 0; k < 3; ++k)
      v[k] = p.d->site_xpos[3 * target_ + k] - p.d->site_xpos[3 * tip_ + k];
    const double radius = p.m->site_size[3 * target_];
    return tolerance(np_norm(v, 3), 0.0, radius, 1.0);
  }

 private:
  int shoulder_, elbow_, upper_, lower_, target_, tip_;
};

// ---- cheetah --------------------------------------------------------------------------------
class Cheetah : public Task {
 public:
  explicit Cheetah(const mjModel* m) : speed_(sensor_of(m, "torso_subtreelinvel")) {
    POMPC_REQUIRE(m->nq == m->njnt, "cheetah: expected one qpos per joint");
  }
  void initialize_episode(Physics& p, NumpyRandom& r) override {
    for (int j = 0; j < p.m->njnt; ++j)
      if (p.m->jnt_limited[j])
        p.d->qpos[j] = r.uniform(p.m->jnt_range[2 * j], p.m->jnt_range[2 * j + 1]);
    p.check(p.step(200), "cheetah's 200 settling steps");
    p.d->time = 0;
  }
  int get_observation(const Physics& p, float* obs) const override {
    Obs o(obs, 17);
    o.put(p.d->qpos + 1, p.m->nq - 1);
    o.put(p.d->qvel, p.m->nv);
    return o.count();
  }
  double get_reward(const Physics& p) const override {
    return tolerance(p.d->sensordata[speed_], 10.0, kInf, 10.0, Sigmoid::linear, 0.0);
  }

 private:
  int speed_;
};

// ---- walker ---------------------------------------------------------------------------------
class Walker : public Task {
 public:
  Walker(const mjModel* m, double speed)
      : speed_(speed), torso_(body_id(m, "torso")), vel_(sensor_of(m, "torso_subtreelinvel")) {}
  void initialize_episode(Physics& p, NumpyRandom& r) override {
    randomize_limited_and_rotational_joints(p, r);
  }
  int get_observation(const Physics& p, float* obs) const override {
    Obs o(obs, 24);
    for (int b = 1; b < p.m->nbody; ++b) {
      o.put(xmat(p, b, XX));
      o.put(xmat(p, b, XZ));
    }
    o.put(p.d->xpos[3 * torso_ + 2]);
    o.put(p.d->qvel, p.m->nv);
    return o.count();
  }
  double get_reward(const Physics& p) const override {
    const double standing = tolerance(p.d->xpos[3 * torso_ + 2], 1.2, kInf, 1.2 / 2);
    const double upright = (1 + xmat(p, torso_, ZZ)) / 2;
    const double stand_reward = (3 * standing + upright) / 4;
    if (speed_ == 0) return stand_reward;
    const double move =
        tolerance(p.d->sensordata[vel_], speed_, kInf, speed_ / 2, Sigmoid::linear, 0.5);
    return stand_reward * (5 * move + 1) / 6;
  }

 private:
  double speed_;
  int torso_, vel_;
};

// ---- hopper ---------------------------------------------------------------------------------
class Hopper : public Task {
 public:
  Hopper(const mjModel* m, bool hopping)
      : hopping_(hopping),
        torso_(body_id(m, "torso")),
        foot_(body_id(m, "foot")),
        vel_(sensor_of(m, "torso_subtreelinvel")),
        toe_(sensor_of(m, "touch_toe")),
        heel_(sensor_of(m, "touch_heel")) {}
  void initialize_episode(Physics& p, NumpyRandom& r) override {
    randomize_limited_and_rotational_joints(p, r);
  }
  int get_observation(const Physics& p, float* obs) const override {
    Obs o(obs, 15);
    o.put(p.d->qpos + 1, p.m->nq - 1);
    o.put(p.d->qvel, p.m->nv);
    o.put(std::log1p(p.d->sensordata[toe_]));
    o.put(std::log1p(p.d->sensordata[heel_]));
    return o.count();
  }
  double get_reward(const Physics& p) const override {
    const double height = p.d->xipos[3 * torso_ + 2] - p.d->xipos[3 * foot_ + 2];
    const double standing = tolerance(height, 0.6, 2.0);
    if (hopping_)
      return standing * tolerance(p.d->sensordata[vel_], 2.0, kInf, 2.0 / 2, Sigmoid::linear, 0.5);
    double scratch[4];
    const double small_control = (small_control_mean(p, scratch) + 4) / 5;
    return standing * small_control;
  }

 private:
  bool hopping_;
  int torso_, foot_, vel_, toe_, heel_;
};

// ---- humanoid -------------------------------------------------------------------------------
class Humanoid : public Task {
 public:
  Humanoid(const mjModel* m, double speed)
      : speed_(speed),
        torso_(body_id(m, "torso")),
        head_(body_id(m, "head")),
        limbs_{body_id(m, "left_hand"), body_id(m, "left_foot"), body_id(m, "right_hand"),
               body_id(m, "right_foot")},
        com_vel_(sensor_of(m, "torso_subtreelinvel")) {
    POMPC_REQUIRE(m->nu == 21, "humanoid: expected 21 actuators, the model has %d",
                  static_cast<int>(m->nu));
  }
  void initialize_episode(Physics& p, NumpyRandom& r) override {
    for (int attempt = 0;; ++attempt) {
      if (attempt == 10000)
        throw PhysicsError("humanoid: no contact-free initial pose in 10000 draws");
      randomize_limited_and_rotational_joints(p, r);
      p.check(p.after_reset(), "humanoid initial pose");
      if (p.d->ncon == 0) break;
    }
  }
  int get_observation(const Physics& p, float* obs) const override {
    Obs o(obs, 67);
    o.put(p.d->qpos + 7, p.m->nq - 7);
    o.put(p.d->xpos[3 * head_ + 2]);
    const double* frame = p.d->xmat + 9 * torso_;
    const double* torso_pos = p.d->xpos + 3 * torso_;
    for (int limb : limbs_) {
      double v[3], e[3];
      for (int k = 0; k < 3; ++k) v[k] = p.d->xpos[3 * limb + k] - torso_pos[k];
      vec_dot_mat3(v, frame, e);
      o.put(e, 3);
    }
    o.put(frame[ZX]);
    o.put(frame[ZY]);
    o.put(frame[ZZ]);
    o.put(p.d->sensordata + com_vel_, 3);
    o.put(p.d->qvel, p.m->nv);
    return o.count();
  }
  double get_reward(const Physics& p) const override {
    const double standing = tolerance(p.d->xpos[3 * head_ + 2], 1.4, kInf, 1.4 / 4);
    const double upright = tolerance(xmat(p, torso_, ZZ), 0.9, kInf, 1.9, Sigmoid::linear, 0.0);
    const double stand_reward = standing * upright;
    double scratch[21];
    const double small_control = (4 + small_control_mean(p, scratch)) / 5;
    const double* v = p.d->sensordata + com_vel_;
    if (speed_ == 0) {
      const double t[2] = {tolerance(v[0], 0.0, 0.0, 2.0), tolerance(v[1], 0.0, 0.0, 2.0)};
      const double dont_move = np_sum(t, 2) / 2;
      return small_control * stand_reward * dont_move;
    }
    const double com_velocity = np_norm(v, 2);
    double move = tolerance(com_velocity, speed_, kInf, speed_, Sigmoid::linear, 0.0);
    move = (5 * move + 1) / 6;
    return small_control * stand_reward * move;
  }

 private:
  double speed_;
  int torso_, head_, limbs_[4], com_vel_;
};

// ---- quadruped ------------------------------------------------------------------------------
class Quadruped : public Task {
 public:
  Quadruped(const mjModel* m, double speed)
      : speed_(speed),
        root_(qpos_of(m, "root")),
        torso_(body_id(m, "torso")),
        velocimeter_(sensor_of(m, "velocimeter")) {
    for (int j = 0; j < m->njnt; ++j)
      if (m->jnt_type[j] == mjJNT_HINGE) {
        hinge_q_.push_back(m->jnt_qposadr[j]);
        hinge_v_.push_back(m->jnt_dofadr[j]);
      }
    // Sensors by type, in sensor order (dm_control's _get_sensor_names).
    for (int s = 0; s < m->nsensor; ++s) {
      const int t = m->sensor_type[s];
      if (t == mjSENS_GYRO || t == mjSENS_ACCELEROMETER)
        for (int k = 0; k < m->sensor_dim[s]; ++k) imu_.push_back(m->sensor_adr[s] + k);
      if (t == mjSENS_FORCE || t == mjSENS_TORQUE)
        for (int k = 0; k < m->sensor_dim[s]; ++k) force_torque_.push_back(m->sensor_adr[s] + k);
    }
    const int n = static_cast<int>(2 * hinge_q_.size()) + m->na + 3 + 1 +
                  static_cast<int>(imu_.size() + force_torque_.size());
    POMPC_REQUIRE(n == 78, "quadruped: observation has %d entries, expected 78", n);
  }
  void initialize_episode(Physics& p, NumpyRandom& r) override {
    double q[4];
    for (double& x : q) x = r.randn();
    const double n = np_norm(q, 4);
    for (double& x : q) x /= n;
    find_non_contacting_height(p, q);
  }
  int get_observation(const Physics& p, float* obs) const override {
    Obs o(obs, 78);
    for (int a : hinge_q_) o.put(p.d->qpos[a]);
    for (int a : hinge_v_) o.put(p.d->qvel[a]);
    o.put(p.d->act, p.m->na);
    o.put(p.d->sensordata + velocimeter_, 3);
    o.put(xmat(p, torso_, ZZ));
    for (int a : imu_) o.put(p.d->sensordata[a]);
    for (int a : force_torque_) o.put(std::asinh(p.d->sensordata[a]));
    return o.count();
  }
  double get_reward(const Physics& p) const override {
    const double deviation = std::cos(0.0);  // np.cos(np.deg2rad(0))
    const double upright =
        tolerance(xmat(p, torso_, ZZ), deviation, kInf, 1 + deviation, Sigmoid::linear, 0.0);
    const double move =
        tolerance(p.d->sensordata[velocimeter_], speed_, kInf, speed_, Sigmoid::linear, 0.5);
    return upright * move;
  }

 private:
  // dm_control's _find_non_contacting_height at x = y = 0: each try is a full reset_context
  // (whose physics errors dm_control swallows), raising z by 0.01 until there is no contact.
  void find_non_contacting_height(Physics& p, const double* orientation) const {
    double z = 0.0;
    int num_contacts = 1, num_attempts = 0;
    while (num_contacts > 0) {
      p.reset();
      double* q = p.d->qpos + root_;
      q[0] = 0.0;
      q[1] = 0.0;
      q[2] = z;
      for (int k = 0; k < 4; ++k) q[3 + k] = orientation[k];
      p.after_reset();
      num_contacts = p.d->ncon;
      z += 0.01;
      if (++num_attempts > 10000)
        throw PhysicsError("quadruped: failed to find a non-contacting configuration");
    }
  }

  double speed_;
  int root_, torso_, velocimeter_;
  std::vector<int> hinge_q_, hinge_v_, imu_, force_torque_;
};

// ---- dog ------------------------------------------------------------------------------------
class Dog : public Task {
 public:
  Dog(const mjModel* m, double speed)
      : speed_(speed),
        root_q_(qpos_of(m, "root")),
        torso_(body_id(m, "torso")),
        pelvis_(body_id(m, "pelvis")),
        skull_(body_id(m, "skull")),
        torso_linvel_(sensor_of(m, "torso_linvel")),
        inertial_{sensor_of(m, "accelerometer"), sensor_of(m, "velocimeter"), sensor_of(m, "gyro")},
        foot_{sensor_of(m, "foot_L"), sensor_of(m, "foot_R"), sensor_of(m, "hand_L"),
              sensor_of(m, "hand_R")},
        touch_{sensor_of(m, "palm_L"), sensor_of(m, "palm_R"), sensor_of(m, "sole_L"),
               sensor_of(m, "sole_R")} {
    POMPC_REQUIRE(m->nu == m->na, "dog: expected one activation per actuator");
    for (int j = 0; j < m->njnt; ++j)
      if (m->jnt_type[j] == mjJNT_HINGE) {
        hinge_q_.push_back(m->jnt_qposadr[j]);
        hinge_v_.push_back(m->jnt_dofadr[j]);
      }
    POMPC_REQUIRE(hinge_q_.size() == 73, "dog: expected 73 hinges, the model has %zu",
                  hinge_q_.size());
  }
  void initialize_episode(Physics& p, NumpyRandom& r) override {
    p.check(p.reset(), "dog reset");
    stand_height_[0] = p.d->xpos[3 * torso_ + 2] * 0.9;
    stand_height_[1] = p.d->xpos[3 * pelvis_ + 2] * 0.9;
    body_weight_ = -p.m->opt.gravity[2] * p.m->body_subtreemass[torso_];
    const double azimuth = r.uniform(0, 2 * kPi);
    double* q = p.d->qpos + root_q_;
    q[3] = std::cos(azimuth / 2);
    q[4] = 0;
    q[5] = 0;
    q[6] = std::sin(azimuth / 2);
    p.d->qvel[0] = 2 * r.randn();
    p.d->qvel[1] = 2 * r.randn();
    p.d->qvel[5] = 2 * r.randn();
    for (int a = 0; a < p.m->nu; ++a)
      p.d->act[a] = r.uniform(p.m->actuator_ctrlrange[2 * a], p.m->actuator_ctrlrange[2 * a + 1]);
  }
  int get_observation(const Physics& p, float* obs) const override {
    Obs o(obs, 223);
    for (int a : hinge_q_) o.put(p.d->qpos[a]);
    for (int a : hinge_v_) o.put(p.d->qvel[a]);
    o.put(p.d->xpos[3 * torso_ + 2]);
    o.put(p.d->xpos[3 * pelvis_ + 2]);
    for (int b : {skull_, torso_, pelvis_}) {
      o.put(xmat(p, b, ZX));
      o.put(xmat(p, b, ZY));
      o.put(xmat(p, b, ZZ));
    }
    double v[3];
    torso_com_velocity(p, v);
    o.put(v, 3);
    for (int s : inertial_) o.put(p.d->sensordata + s, 3);
    for (int s : foot_) o.put(p.d->sensordata + s, 3);
    for (int s : touch_) o.put(p.d->sensordata[s]);
    o.put(p.d->act, p.m->na);
    return o.count();
  }
  double get_reward(const Physics& p) const override {
    const double min_upright = std::cos(30.0 * (kPi / 180.0));  // np.cos(np.deg2rad(30))
    double f[7];
    f[0] = tolerance(p.d->xpos[3 * torso_ + 2], stand_height_[0], kInf, stand_height_[0]);
    f[1] = tolerance(p.d->xpos[3 * pelvis_ + 2], stand_height_[1], kInf, stand_height_[1]);
    int k = 2;
    for (int b : {skull_, torso_, pelvis_})
      f[k++] = tolerance(xmat(p, b, ZZ), min_upright, kInf, min_upright + 1, Sigmoid::linear, 0.0);
    double touch[4];
    for (int i = 0; i < 4; ++i) touch[i] = p.d->sensordata[touch_[i]];
    f[5] = tolerance(np_sum(touch, 4), body_weight_, kInf, body_weight_, Sigmoid::linear, 0.9);
    int n = 6;
    if (speed_ > 0) {
      double v[3];
      torso_com_velocity(p, v);
      const double forward =
          tolerance(v[0], speed_, 2 * speed_, std::fmax(1.0, speed_), Sigmoid::linear, 0.0);
      f[n++] = (4 * forward + 1) / 5;
    }
    double r = 1.0;
    for (int i = 0; i < n; ++i) r *= f[i];
    return r;
  }

 private:
  void torso_com_velocity(const Physics& p, double* out) const {
    vec_dot_mat3(p.d->sensordata + torso_linvel_, p.d->xmat + 9 * torso_, out);
  }

  double speed_;
  int root_q_, torso_, pelvis_, skull_, torso_linvel_, inertial_[3], foot_[4], touch_[4];
  std::vector<int> hinge_q_, hinge_v_;
  double stand_height_[2] = {0, 0};  // 0.9 x torso and pelvis heights of the reset pose
  double body_weight_ = 0;           // -g_z * subtree mass of the torso
};

// ---- finger ---------------------------------------------------------------------------------
// dm_control's _set_random_joint_angles: redraw every joint until the pose has no contact.
void set_random_joint_angles(Physics& p, NumpyRandom& r) {
  for (int attempt = 0; attempt < 1000; ++attempt) {
    randomize_limited_and_rotational_joints(p, r);
    p.check(p.after_reset(), "finger initial pose");
    if (p.d->ncon == 0) return;
  }
  throw PhysicsError("finger: could not find a collision-free state after 1000 attempts");
}

class Finger : public Task {
 public:
  Finger(const mjModel* m, bool turn, double target_radius)
      : turn_(turn),
        target_radius_(target_radius),
        hinge_(joint_id(m, "hinge")),
        cap1_(geom_id(m, "cap1")),
        target_site_(site_id(m, "target")),
        proximal_(sensor_of(m, "proximal")),
        distal_(sensor_of(m, "distal")),
        proximal_velocity_(sensor_of(m, "proximal_velocity")),
        distal_velocity_(sensor_of(m, "distal_velocity")),
        hinge_velocity_(sensor_of(m, "hinge_velocity")),
        tip_(sensor_of(m, "tip")),
        target_(sensor_of(m, "target")),
        spinner_(sensor_of(m, "spinner")),
        touchtop_(sensor_of(m, "touchtop")),
        touchbottom_(sensor_of(m, "touchbottom")) {}
  void initialize_episode(Physics& p, NumpyRandom& r) override {
    if (turn_) {
      const double target_angle = r.uniform(-kPi, kPi);
      const double hinge_x = p.d->xanchor[3 * hinge_], hinge_z = p.d->xanchor[3 * hinge_ + 2];
      const double radius = np_sum(p.m->geom_size + 3 * cap1_, 3);
      mjModel* m = p.model_for_edit();
      m->site_pos[3 * target_site_] = hinge_x + radius * std::sin(target_angle);
      m->site_pos[3 * target_site_ + 2] = hinge_z + radius * std::cos(target_angle);
      m->site_size[3 * target_site_] = target_radius_;
    }
    set_random_joint_angles(p, r);
  }
  int get_observation(const Physics& p, float* obs) const override {
    const double* s = p.d->sensordata;
    Obs o(obs, turn_ ? 12 : 9);
    o.put(s[proximal_]);
    o.put(s[distal_]);
    double tip[2];
    tip_position(p, tip);
    o.put(tip, 2);
    o.put(s[proximal_velocity_]);
    o.put(s[distal_velocity_]);
    o.put(s[hinge_velocity_]);
    o.put(std::log1p(s[touchtop_]));
    o.put(std::log1p(s[touchbottom_]));
    if (turn_) {
      double target[2];
      target_position(p, target);
      o.put(target, 2);
      o.put(dist_to_target(p));
    }
    return o.count();
  }
  double get_reward(const Physics& p) const override {
    if (turn_) return dist_to_target(p) <= 0 ? 1.0 : 0.0;
    return p.d->sensordata[hinge_velocity_] <= -15.0 ? 1.0 : 0.0;
  }

 private:
  void tip_position(const Physics& p, double* out) const {
    const double* s = p.d->sensordata;
    out[0] = s[tip_] - s[spinner_];
    out[1] = s[tip_ + 2] - s[spinner_ + 2];
  }
  void target_position(const Physics& p, double* out) const {
    const double* s = p.d->sensordata;
    out[0] = s[target_] - s[spinner_];
    out[1] = s[target_ + 2] - s[spinner_ + 2];
  }
  double dist_to_target(const Physics& p) const {
    double tip[2], target[2];
    tip_position(p, tip);
    target_position(p, target);
    const double to_target[2] = {target[0] - tip[0], target[1] - tip[1]};
    return np_norm(to_target, 2) - p.m->site_size[3 * target_site_];
  }

  bool turn_;
  double target_radius_;
  int hinge_, cap1_, target_site_;
  int proximal_, distal_, proximal_velocity_, distal_velocity_, hinge_velocity_, tip_, target_,
      spinner_, touchtop_, touchbottom_;
};

// ---- reacher --------------------------------------------------------------------------------
class Reacher : public Task {
 public:
  Reacher(const mjModel* m, double target_size)
      : target_size_(target_size), target_(geom_id(m, "target")), finger_(geom_id(m, "finger")) {}
  void initialize_episode(Physics& p, NumpyRandom& r) override {
    mjModel* m = p.model_for_edit();
    m->geom_size[3 * target_] = target_size_;
    randomize_limited_and_rotational_joints(p, r);
    const double angle = r.uniform(0, 2 * kPi);
    const double radius = r.uniform(.05, .20);
    m->geom_pos[3 * target_] = radius * std::sin(angle);
    m->geom_pos[3 * target_ + 1] = radius * std::cos(angle);
  }
  int get_observation(const Physics& p, float* obs) const override {
    Obs o(obs, 6);
    o.put(p.d->qpos, 2);
    double v[2];
    finger_to_target(p, v);
    o.put(v, 2);
    o.put(p.d->qvel, 2);
    return o.count();
  }
  double get_reward(const Physics& p) const override {
    const double sizes[2] = {p.m->geom_size[3 * target_], p.m->geom_size[3 * finger_]};
    const double radii = np_sum(sizes, 2);
    double v[2];
    finger_to_target(p, v);
    return tolerance(np_norm(v, 2), 0.0, radii);
  }

 private:
  void finger_to_target(const Physics& p, double* out) const {
    for (int k = 0; k < 2; ++k)
      out[k] = p.d->geom_xpos[3 * target_ + k] - p.d->geom_xpos[3 * finger_ + k];
  }
  double target_size_;
  int target_, finger_;
};

// ---- ball_in_cup ----------------------------------------------------------------------------
class BallInCup : public Task {
 public:
  explicit BallInCup(const mjModel* m)
      : ball_x_(qpos_of(m, "ball_x")),
        ball_z_(qpos_of(m, "ball_z")),
        target_(site_id(m, "target")),
        ball_body_(body_id(m, "ball")),
        ball_geom_(geom_id(m, "ball")) {}
  void initialize_episode(Physics& p, NumpyRandom& r) override {
    for (int attempt = 0;; ++attempt) {
      if (attempt == 10000)
        throw PhysicsError("ball_in_cup: no contact-free ball position in 10000 draws");
      p.d->qpos[ball_x_] = r.uniform(-.2, .2);
      p.d->qpos[ball_z_] = r.uniform(.2, .5);
      p.check(p.after_reset(), "ball_in_cup initial pose");
      if (p.d->ncon == 0) break;
    }
  }
  int get_observation(const Physics& p, float* obs) const override {
    Obs o(obs, 8);
    o.put(p.d->qpos, 4);
    o.put(p.d->qvel, 4);
    return o.count();
  }
  double get_reward(const Physics& p) const override {
    const double ball_size = p.m->geom_size[3 * ball_geom_];
    bool in = true;
    for (int k : {0, 2}) {
      const double to_target =
          std::fabs(p.d->site_xpos[3 * target_ + k] - p.d->xpos[3 * ball_body_ + k]);
      in = in && to_target < p.m->site_size[3 * target_ + k] - ball_size;
    }
    return in ? 1.0 : 0.0;
  }

 private:
  int ball_x_, ball_z_, target_, ball_body_, ball_geom_;
};

// ---- spec edits -----------------------------------------------------------------------------
mjsElement* find_element(mjSpec* s, mjtObj type, const char* name) {
  mjsElement* e = mjs_findElement(s, type, name);
  POMPC_REQUIRE(e,
                "the suite XML has no %s named '%s': the files in %s are not dm-control "
                "1.0.50's; run `make deps`",
                mju_type2Str(type), name, dmc_dir().c_str());
  return e;
}

void delete_element(mjSpec* s, mjtObj type, const char* name) {
  mjsElement* e = find_element(s, type, name);
  POMPC_REQUIRE(mjs_delete(s, e) == 0, "mjSpec: deleting %s '%s' failed: %s", mju_type2Str(type),
                name, mjs_getError(s));
}

void set_floor_size(mjSpec* s, double size, double z) {
  mjsGeom* floor = mjs_asGeom(find_element(s, mjOBJ_GEOM, "floor"));
  floor->size[0] = size;
  floor->size[1] = size;
  floor->size[2] = z;
}

}  // namespace

// ---- public (detail) functions --------------------------------------------------------------
const std::vector<TaskSpec>& task_table() {
  return kTasks;
}

double tolerance(double x, double lo, double hi, double margin, Sigmoid sigmoid,
                 double value_at_margin) {
  const bool in_bounds = lo <= x && x <= hi;
  if (margin == 0) return in_bounds ? 1.0 : 0.0;
  if (in_bounds) return 1.0;
  const double d = (x < lo ? lo - x : x - hi) / margin;
  switch (sigmoid) {
    case Sigmoid::gaussian: {
      const double scale = std::sqrt(-2 * std::log(value_at_margin));
      const double t = d * scale;
      return std::exp(-0.5 * (t * t));
    }
    case Sigmoid::linear: {
      const double t = d * (1 - value_at_margin);
      return std::fabs(t) < 1 ? 1 - t : 0.0;
    }
    case Sigmoid::quadratic: {
      const double t = d * std::sqrt(1 - value_at_margin);
      return std::fabs(t) < 1 ? 1 - t * t : 0.0;
    }
  }
  return 0.0;
}

double np_sum(const double* a, int n) {
  if (n < 8) {
    double r = 0.0;
    for (int i = 0; i < n; ++i) r += a[i];
    return r;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    int i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  int n2 = n / 2;
  n2 -= n2 % 8;
  return np_sum(a, n2) + np_sum(a + n2, n - n2);
}

double np_dot(const double* a, const double* b, int n) {
  POMPC_REQUIRE(n < 16,
                "np_dot: n = %d; numpy (OpenBLAS) reorders sums of 16 or more products, emulate "
                "that order before using np_dot for them",
                n);
  double s = 0.0;
  for (int i = 0; i < n; ++i) s = std::fma(a[i], b[i], s);
  return s;
}

double np_norm(const double* v, int n) {
  return std::sqrt(np_dot(v, v, n));
}

void vec_dot_mat3(const double* v, const double* r, double* out) {
  for (int j = 0; j < 3; ++j) {
    double s = 0.0;
    for (int i = 0; i < 3; ++i) s = std::fma(v[i], r[3 * i + j], s);
    out[j] = s;
  }
}

void edit_spec(const TaskSpec& spec, mjSpec* s) {
  if (spec.domain == "quadruped") {  // quadruped.make_model(floor_size=20 * speed)
    set_floor_size(s, 20 * move_speed(spec), .5);
    for (const char* wall : {"wall_px", "wall_py", "wall_nx", "wall_ny"})
      delete_element(s, mjOBJ_GEOM, wall);
    delete_element(s, mjOBJ_BODY, "ball");
    delete_element(s, mjOBJ_SITE, "target");
    delete_element(s, mjOBJ_GEOM, "terrain");
    std::vector<mjsElement*> rangefinders;
    for (mjsElement* e = mjs_firstElement(s, mjOBJ_SENSOR); e; e = mjs_nextElement(s, e))
      if (mjs_asSensor(e)->type == mjSENS_RANGEFINDER) rangefinders.push_back(e);
    for (mjsElement* e : rangefinders)
      POMPC_REQUIRE(mjs_delete(s, e) == 0, "mjSpec: deleting a rangefinder failed: %s",
                    mjs_getError(s));
  } else if (spec.domain == "dog") {  // dog.make_model(floor_size=15 * speed, remove_ball=True)
    const double speed = move_speed(spec);
    set_floor_size(s, 15 * (speed > 0 ? speed : 1.0), .1);
    delete_element(s, mjOBJ_BODY, "ball");
    delete_element(s, mjOBJ_GEOM, "target");
    delete_element(s, mjOBJ_CAMERA, "ball");
    delete_element(s, mjOBJ_CAMERA, "head");
    for (const char* wall : {"wall_px", "wall_nx", "wall_py", "wall_ny"})
      delete_element(s, mjOBJ_GEOM, wall);
  }
}

void edit_model(const TaskSpec& spec, mjModel* m) {
  if (spec.name == "finger-spin")  // Spin.initialize_episode sets it every episode
    m->dof_damping[dof_of(m, "hinge")] = .03;
}

bool needs_private_model(const TaskSpec& spec) {
  return spec.domain == "reacher" || spec.name == "finger-turn-easy" ||
         spec.name == "finger-turn-hard";
}

std::unique_ptr<Task> make_task(const TaskSpec& spec, const mjModel* m) {
  const std::string& d = spec.domain;
  const std::string& t = spec.dmc_task;
  if (d == "cartpole")
    return std::make_unique<Cartpole>(m, t.rfind("swingup", 0) == 0,
                                      t.find("sparse") != std::string::npos);
  if (d == "pendulum") return std::make_unique<Pendulum>(m);
  if (d == "acrobot") return std::make_unique<Acrobot>(m);
  if (d == "cheetah") return std::make_unique<Cheetah>(m);
  if (d == "walker") return std::make_unique<Walker>(m, move_speed(spec));
  if (d == "hopper") return std::make_unique<Hopper>(m, t == "hop");
  if (d == "humanoid") return std::make_unique<Humanoid>(m, move_speed(spec));
  if (d == "quadruped") return std::make_unique<Quadruped>(m, move_speed(spec));
  if (d == "dog") return std::make_unique<Dog>(m, move_speed(spec));
  if (d == "finger")
    return std::make_unique<Finger>(m, t != "spin", t == "turn_easy" ? 0.07 : 0.03);
  if (d == "reacher") return std::make_unique<Reacher>(m, t == "easy" ? .05 : .015);
  if (d == "ball_in_cup") return std::make_unique<BallInCup>(m);
  throw Error(strfmt("no task code for domain '%s'", d.c_str()));
}

}  // namespace pompc::env::detail
