// The TD-MPC2 world model (src/model/): settings, layout and initialisation, the inference API,
// the update's losses against SPEC's formulas, gradient checks by central finite differences,
// a golden update from a float64 JAX autodiff implementation (data/fixtures/model/, made by
// tests/fixtures/gen_golden.py), parity of the whole update between the reference and the CUDA
// backend (emulated in test_emu), determinism, and the update-step benchmark (suite bench).
//
//   build/test_emu -ts=model                       everything here but the benchmark
//   build/bench -ts=bench -tc='*update*'           the update step, dog 5M and 1M
//
// Finite differences run on the reference backend, whose ops are float only (the world model is
// written against the float Ops interface), so the step size and tolerances are chosen for float:
// see fd_case below.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "bench_util.h"
#include "common.h"
#include "model/config.h"
#include "model/world_model.h"
#include "ops.h"
#include "philox.cuh"
#include "ref/loss.h"
#include "ref/scale.h"
#include "ref/two_hot.h"
#include "test_util.h"

namespace {

using pompc::Ops;
using pompc::model::Batch;
using pompc::model::ModelConfig;
using pompc::model::NamedTensor;
using pompc::model::ParamSet;
using pompc::model::QMode;
using pompc::model::UpdateStats;
using pompc::model::WorldModel;
using pompc::test::check_close;

std::vector<float> host(Ops& ops, const float* p, size_t n) {
  std::vector<float> h(n);
  if (n) ops.copy_to_host(h.data(), p, n * sizeof(float));
  return h;
}

// A tiny model at odd sizes (Z must be a multiple of 8).
ModelConfig tiny(int O, int A, int Z, int M, int B, int H, int Qn) {
  ModelConfig c;
  c.obs_dim = O;
  c.action_dim = A;
  c.latent_dim = Z;
  c.mlp_dim = M;
  c.enc_dim = M + 3;
  c.num_q = Qn;
  c.batch_size = B;
  c.horizon = H;
  c.seed = 7;
  c.tf32 = false;
  return c;
}

// A batch in backend memory: obs ~ N(0, 1), actions in (-1, 1), rewards in [0, 1] (DMC's range),
// planner targets mu_p in (-1, 1), sigma_p in [0.05, 2] (the planner's std range).
struct BatchData {
  Ops& ops;
  std::vector<float> ob, ac, rw, mp, sp;  // host copies
  float *obs, *action, *reward, *mu_p, *sigma_p;
  BatchData(Ops& o, const ModelConfig& c, uint64_t seed) : ops(o) {
    const size_t B = static_cast<size_t>(c.batch_size), H = static_cast<size_t>(c.horizon);
    ob.resize((H + 1) * B * c.obs_dim);
    ac.resize(H * B * c.action_dim);
    rw.resize(H * B);
    mp.resize(ac.size());
    sp.resize(ac.size());
    for (size_t i = 0; i < ob.size(); ++i) ob[i] = pompc::philox_normal(seed, 1, i);
    for (size_t i = 0; i < ac.size(); ++i) ac[i] = std::tanh(pompc::philox_normal(seed, 2, i));
    for (size_t i = 0; i < rw.size(); ++i) rw[i] = pompc::philox_uniform(seed, 3, i);
    for (size_t i = 0; i < mp.size(); ++i) mp[i] = std::tanh(pompc::philox_normal(seed, 4, i));
    for (size_t i = 0; i < sp.size(); ++i)
      sp[i] = 0.05f + 1.95f * pompc::philox_uniform(seed, 5, i);
    obs = upload(ob);
    action = upload(ac);
    reward = upload(rw);
    mu_p = upload(mp);
    sigma_p = upload(sp);
  }
  float* upload(const std::vector<float>& h) {
    float* p = ops.alloc<float>(h.size());
    ops.copy_to_backend(p, h.data(), h.size() * sizeof(float));
    return p;
  }
  ~BatchData() {
    for (float* p : {obs, action, reward, mu_p, sigma_p}) ops.free_bytes(p);
  }
  BatchData(const BatchData&) = delete;
  BatchData& operator=(const BatchData&) = delete;
  Batch batch() const { return Batch{obs, action, reward, mu_p, sigma_p}; }
};

// Parameters away from the initialisation (whose zero heads make most gradients exactly 0):
// weights ~ N(0, 1 / fan_in), biases and LayerNorm betas ~ N(0, 0.1^2), gammas ~ 1 + N(0, 0.1^2);
// target Qs = online Qs perturbed by N(0, 0.01^2) so that they differ.
void randomize(WorldModel& wm, uint64_t seed) {
  Ops& ops = wm.ops();
  for (ParamSet set : pompc::model::kParamSets) {
    if (wm.param_floats(set) == 0) continue;  // no learned prior
    std::vector<float> p(wm.param_floats(set));
    const auto& ts = wm.tensors();
    for (size_t ti = 0; ti < ts.size(); ++ti) {
      const NamedTensor& t = ts[ti];
      if (t.set != set) continue;
      const bool weight = t.name.size() > 7 &&
                          t.name.compare(t.name.size() - 7, 7, ".weight") == 0 &&
                          t.name.find("ln.weight") == std::string::npos;
      const bool gamma = t.name.find("ln.weight") != std::string::npos;
      const double fan_in = static_cast<double>(t.shape.back());
      for (size_t i = 0; i < t.numel(); ++i) {
        const float n = pompc::philox_normal(seed, ti, i);
        float v = 0.1f * n;
        if (weight) v = static_cast<float>(n / std::sqrt(fan_in));
        if (gamma) v = 1.0f + 0.1f * n;
        p[t.offset + i] = v;
      }
    }
    ops.copy_to_backend(wm.params(set), p.data(), p.size() * sizeof(float));
  }
}

UpdateStats read_stats(Ops& ops, const UpdateStats* s) {
  UpdateStats h;
  ops.copy_to_host(&h, s, sizeof h);
  return h;
}

// One float parameter in backend memory.
float get_param(Ops& ops, float* p) {
  float v = 0;
  ops.copy_to_host(&v, p, sizeof v);
  return v;
}
void set_param(Ops& ops, float* p, float v) {
  ops.copy_to_backend(p, &v, sizeof v);
}

struct FdStats {
  int checked = 0, failed = 0;
  double max_abs = 0, max_rel = 0;  // max_rel over |fd| > 1e-2
};

// Central differences with Richardson extrapolation, D = (4 D(h/2) - D(h)) / 3 (error O(h^4)).
// Float noise: the loss (~1) carries float rounding of ~1e-7 relative, so one difference quotient
// has ~1e-7 / h of noise: h = 1e-2 gives ~1e-5 (measured: max |fd - analytic| 2.5e-5 over ~900
// parameters, gradients up to 0.1); a smaller h only raises the noise, and the O(h^4) truncation
// is below it. Tolerance: atol 5e-5 (twice the measured noise) + rtol 2e-3, which a missing or
// wrong term (errors of the gradient's own size) cannot pass.
template <typename LossFn>
void fd_check(const char* module, Ops& ops, float* params, const std::vector<float>& grad,
              const std::vector<size_t>& idx, LossFn loss, FdStats* st) {
  const float h = 1e-2f;
  for (size_t i : idx) {
    float* p = params + i;
    const float p0 = get_param(ops, p);
    auto f = [&](float x) {
      set_param(ops, p, x);
      return static_cast<double>(loss());
    };
    const double d1 = (f(p0 + h) - f(p0 - h)) / (2.0 * h);
    const double d2 = (f(p0 + h / 2) - f(p0 - h / 2)) / static_cast<double>(h);
    set_param(ops, p, p0);
    const double fd = (4 * d2 - d1) / 3, g = grad[i];
    const double err = std::fabs(fd - g), tol = 5e-5 + 2e-3 * std::fabs(fd);
    st->checked++;
    st->max_abs = std::max(st->max_abs, err);
    if (std::fabs(fd) > 1e-2) st->max_rel = std::max(st->max_rel, err / std::fabs(fd));
    if (err > tol) {
      st->failed++;
      std::printf("fd %s [%zu]: analytic %.7g finite-difference %.7g\n", module, i, g, fd);
    }
  }
}

// Parameter indices to check in [begin, end): the 6 largest |grad| and 6 at random.
std::vector<size_t> sample(const std::vector<float>& grad, size_t begin, size_t end,
                           uint64_t seed) {
  std::vector<size_t> all(end - begin);
  for (size_t i = 0; i < all.size(); ++i) all[i] = begin + i;
  const size_t top = std::min<size_t>(6, all.size());
  std::partial_sort(all.begin(), all.begin() + static_cast<ptrdiff_t>(top), all.end(),
                    [&](size_t a, size_t b) { return std::fabs(grad[a]) > std::fabs(grad[b]); });
  std::vector<size_t> out(all.begin(), all.begin() + static_cast<ptrdiff_t>(top));
  for (int k = 0; k < 6; ++k)
    out.push_back(begin + pompc::philox_u32(seed, 0, static_cast<uint64_t>(k)) % (end - begin));
  return out;
}

// Range of the parameters of a module (tensors whose names start with prefix).
std::pair<size_t, size_t> range_of(const WorldModel& wm, const std::string& prefix) {
  size_t lo = SIZE_MAX, hi = 0;
  for (const NamedTensor& t : wm.tensors()) {
    if (t.name.rfind(prefix, 0) != 0) continue;
    lo = std::min(lo, t.offset);
    hi = std::max(hi, t.offset + t.numel());
  }
  REQUIRE(lo < hi);
  return {lo, hi};
}

// The model loss (steps 2-3 with the TD targets of step 1 held fixed) and the pi loss (step 5 with
// z[0..H] and S_Q held fixed) against their hand-written backward passes.
// `variant` sets the critic and the policy objective (SPEC 4 and 6): the same checks run for every
// preset's combination.
void fd_case(float dropout, const char* label = "tdmpc2",
             const std::function<void(ModelConfig&)>& variant = nullptr) {
  CAPTURE(dropout);
  CAPTURE(label);
  auto ops = pompc::make_ref_ops();
  ModelConfig c = tiny(5, 2, 16, 12, 4, 2, 3);
  c.dropout = dropout;
  c.entropy_coef = 0.05f;  // large enough that the log_pi path shows in the pi loss
  if (variant) variant(c);
  WorldModel wm(*ops, c, 8);
  randomize(wm, 3);
  BatchData data(*ops, c, 5);
  const Batch b = data.batch();
  UpdateStats* st = ops->alloc<UpdateStats>(1);
  const bool on = dropout > 0;

  wm.td_target(b);
  wm.zero_grads();
  wm.rollout(b);
  wm.model_loss(b, st, on);
  wm.model_loss_backward(b, on);
  const auto g_model = host(*ops, wm.grads(ParamSet::model), wm.param_floats(ParamSet::model));
  auto model_loss = [&] {
    wm.rollout(b);
    wm.model_loss(b, st, on);
    return read_stats(*ops, st).total_loss;
  };
  FdStats fs;
  float* pm = wm.params(ParamSet::model);
  uint64_t seed = 11;
  for (const char* m : {"_encoder", "_dynamics", "_reward"}) {
    const auto [lo, hi] = range_of(wm, m);
    fd_check(m, *ops, pm, g_model, sample(g_model, lo, hi, seed++), model_loss, &fs);
  }
  // Each Q head separately: head q's slice of every stacked tensor.
  for (int q = 0; q < c.num_q; ++q) {
    std::vector<size_t> idx;
    for (const NamedTensor& t : wm.tensors()) {
      if (t.set != ParamSet::model || t.name.rfind("_Qs.params", 0) != 0) continue;
      const size_t per = t.numel() / static_cast<size_t>(c.num_q);
      const size_t lo = t.offset + per * static_cast<size_t>(q);
      for (size_t i : sample(g_model, lo, lo + per, seed++))
        if (std::find(idx.begin(), idx.end(), i) == idx.end()) idx.push_back(i);
    }
    const std::string name = "_Qs head " + std::to_string(q);
    fd_check(name.c_str(), *ops, pm, g_model, idx, model_loss, &fs);
  }

  // pi: S_Q and S_D moved away from 1 so that the divisions are exercised.
  const float s_q = 2.5f, s_d = 1.5f;
  ops->copy_to_backend(wm.q_scale(), &s_q, sizeof s_q);
  ops->copy_to_backend(wm.prior_scale(), &s_d, sizeof s_d);
  wm.zero_grads();
  wm.pi_loss(b, st, false, on);
  wm.pi_loss_backward(b, on);
  const auto g_pi = host(*ops, wm.grads(ParamSet::pi), wm.param_floats(ParamSet::pi));
  auto pi_loss = [&] {
    wm.pi_loss(b, st, false, on);
    return read_stats(*ops, st).pi_loss;
  };
  for (const NamedTensor& t : wm.tensors())
    if (t.set == ParamSet::pi)
      fd_check(t.name.c_str(), *ops, wm.params(ParamSet::pi), g_pi,
               sample(g_pi, t.offset, t.offset + t.numel(), seed++), pi_loss, &fs);
  if (c.prior == pompc::model::Prior::learned) {
    // The learned prior's fit loss (D_I to the planner targets over z[0..H-1]) against pi_psi's
    // parameters, z[0..H] as the rollout above left them.
    wm.zero_grads();
    wm.prior_fit_loss(b, st);
    wm.prior_fit_loss_backward(b);
    const auto g_psi = host(*ops, wm.grads(ParamSet::prior), wm.param_floats(ParamSet::prior));
    auto fit_loss = [&] {
      wm.prior_fit_loss(b, st);
      return read_stats(*ops, st).prior_fit_loss;
    };
    for (const NamedTensor& t : wm.tensors())
      if (t.set == ParamSet::prior)
        fd_check(t.name.c_str(), *ops, wm.params(ParamSet::prior), g_psi,
                 sample(g_psi, t.offset, t.offset + t.numel(), seed++), fit_loss, &fs);
  }
  std::printf(
      "fd %s (dropout %g): %d gradients checked, %d outside tolerance, max abs err %.2g, "
      "max rel err %.2g (|g| > 1e-2)\n",
      label, static_cast<double>(dropout), fs.checked, fs.failed, fs.max_abs, fs.max_rel);
  CHECK(fs.failed == 0);
  ops->free_bytes(st);
}

// Every buffer of the model, read back: parameters, target, moments, grads, S_Q, Adam scalars.
struct Snapshot {
  std::vector<float> model, pi, target, prior, m_model, v_model, m_pi, v_pi, scale, dscale;
  pompc::AdamScalars adam_model{}, adam_pi{};
  UpdateStats stats{};
};

Snapshot snapshot(WorldModel& wm, const UpdateStats* st) {
  Ops& ops = wm.ops();
  Snapshot s;
  s.model = host(ops, wm.params(ParamSet::model), wm.param_floats(ParamSet::model));
  s.pi = host(ops, wm.params(ParamSet::pi), wm.param_floats(ParamSet::pi));
  s.target = host(ops, wm.params(ParamSet::target_q), wm.param_floats(ParamSet::target_q));
  s.m_model = host(ops, wm.adam_m(ParamSet::model), wm.param_floats(ParamSet::model));
  s.v_model = host(ops, wm.adam_v(ParamSet::model), wm.param_floats(ParamSet::model));
  s.m_pi = host(ops, wm.adam_m(ParamSet::pi), wm.param_floats(ParamSet::pi));
  s.v_pi = host(ops, wm.adam_v(ParamSet::pi), wm.param_floats(ParamSet::pi));
  s.prior = host(ops, wm.params(ParamSet::prior), wm.param_floats(ParamSet::prior));
  s.scale = host(ops, wm.q_scale(), 1);
  s.dscale = host(ops, wm.prior_scale(), 1);
  ops.copy_to_host(&s.adam_model, wm.adam_scalars(ParamSet::model), sizeof s.adam_model);
  ops.copy_to_host(&s.adam_pi, wm.adam_scalars(ParamSet::pi), sizeof s.adam_pi);
  if (st) s.stats = read_stats(ops, st);
  return s;
}

// Runs `steps` updates from a randomised state on a backend; returns the snapshot.
Snapshot run_updates(Ops& ops, const ModelConfig& c, int steps, bool randomized) {
  WorldModel wm(ops, c, 4);
  if (randomized) randomize(wm, 9);
  UpdateStats* st = ops.alloc<UpdateStats>(1);
  for (int k = 0; k < steps; ++k) {
    BatchData data(ops, c, 100 + static_cast<uint64_t>(k));
    wm.update(data.batch(), st);
  }
  Snapshot s = snapshot(wm, st);
  ops.free_bytes(st);
  return s;
}

void parity_case(const ModelConfig& c, bool randomized) {
  CAPTURE(c.obs_dim);
  CAPTURE(c.action_dim);
  CAPTURE(c.latent_dim);
  CAPTURE(randomized);
  auto ref = pompc::make_ref_ops();
  auto gpu = pompc::make_cuda_ops();
  const int steps = 2;
  const Snapshot r = run_updates(*ref, c, steps, randomized);
  const Snapshot g = run_updates(*gpu, c, steps, randomized);
  const float lr = c.lr;
  // Losses and norms: the kernels sum rows (LayerNorm, soft_ce, MSE, norms) in another order than
  // the reference; after two steps the parameters differ by ~1e-7 relative, the losses by ~1e-6.
  const float* rs = &r.stats.consistency_loss;
  const float* gs = &g.stats.consistency_loss;
  CHECK(check_close("stats", gs, rs, sizeof(UpdateStats) / sizeof(float), 1e-6, 2e-5));
  CHECK(check_close("S_Q", g.scale, r.scale, 1e-6, 1e-6));
  CHECK(check_close("S_D", g.dscale, r.dscale, 1e-6, 1e-5));
  // Parameters: Adam's first steps move each parameter by ~lr whatever |grad| is
  // (m / sqrt(v) ~ sign(g)), so a gradient that is mostly rounding noise (a sum that cancels) moves
  // its parameter by a different fraction of lr on each backend; the bulk agrees to float
  // rounding. Tolerance: 0.25 lr for every element (measured worst: 0.02 lr), and the 99.9th
  // percentile of the differences below 1e-3 lr (measured: 1e-4 lr).
  auto params_close = [&](const char* what, const std::vector<float>& a,
                          const std::vector<float>& b) {
    CHECK(check_close(what, a, b, 0.25 * lr, 0.0));
    std::vector<double> d(a.size());
    for (size_t i = 0; i < a.size(); ++i) d[i] = std::fabs(static_cast<double>(a[i]) - b[i]);
    std::sort(d.begin(), d.end());
    const double p999 = d[static_cast<size_t>(0.999 * static_cast<double>(d.size() - 1))];
    std::printf("parity %s: max diff %.3g, 99.9th percentile %.3g (lr %.3g)\n", what, d.back(),
                p999, static_cast<double>(lr));
    CHECK(p999 < 1e-3 * lr);
  };
  params_close("model params", g.model, r.model);
  params_close("pi params", g.pi, r.pi);
  params_close("target Qs", g.target, r.target);
  if (!r.prior.empty()) params_close("learned prior params", g.prior, r.prior);
  // Moments: m ~ 0.19 g after two steps, v ~ 0.002 g^2; relative agreement of the gradients
  // (~1e-5 where they are not rounding noise), absolute floors at the scale of noise gradients.
  CHECK(check_close("adam m (model)", g.m_model, r.m_model, 1e-6, 1e-3));
  CHECK(check_close("adam v (model)", g.v_model, r.v_model, 1e-9, 1e-3));
  CHECK(check_close("adam m (pi)", g.m_pi, r.m_pi, 1e-6, 1e-3));
  CHECK(check_close("adam v (pi)", g.v_pi, r.v_pi, 1e-9, 1e-3));
  CHECK(g.adam_model.step == r.adam_model.step);
  CHECK(g.adam_pi.step == r.adam_pi.step);
  CHECK(g.adam_model.bias1 == r.adam_model.bias1);
  CHECK(g.adam_model.bias2 == r.adam_model.bias2);
}

ModelConfig dog(int size_m) {
  ModelConfig c;
  pompc::model::set_model_size(c, std::to_string(size_m));
  c.obs_dim = 223;
  c.action_dim = 38;
  return c;
}

// data/fixtures/model/golden_update.bin (tests/fixtures/gen_golden.py): a float64 JAX
// implementation of the update with autodiff gradients.
struct Golden {
  ModelConfig cfg;
  int updates = 0;
  float q_scale = 1.0f;
  std::vector<std::pair<std::string, size_t>> tensors;  // name, numel
  std::vector<std::vector<double>> stats;               // per update, UpdateStats order
  std::vector<std::vector<float>> initial, final_;      // per tensor
  std::vector<std::vector<float>> obs, action, reward;  // per update
};

std::string fixture_path() {
  if (const char* e = std::getenv("POMPC_FIXTURE_DIR"))
    return std::string(e) + "/model/golden_update.bin";
  std::string f = __FILE__;  // "tests/test_model.cpp" (relative to the repository root) or absolute
  return f.substr(0, f.rfind("tests/")) + "data/fixtures/model/golden_update.bin";
}

Golden load_golden() {
  const std::string path = fixture_path();
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw pompc::Error(
        pompc::strfmt("fixture %s not found: run the tests from the repository root "
                      "or set POMPC_FIXTURE_DIR to data/fixtures",
                      path.c_str()));
  Golden g;
  std::string line;
  while (std::getline(in, line) && line != "end_header") {
    std::istringstream ls(line);
    std::string key;
    ls >> key;
    if (key == "config") {
      std::string kv;
      while (ls >> kv) {
        const size_t eq = kv.find('=');
        g.cfg.set(kv.substr(0, eq), kv.substr(eq + 1));
      }
    } else if (key == "updates") {
      ls >> g.updates;
    } else if (key == "q_scale") {
      ls >> g.q_scale;
    } else if (key == "tensor") {
      std::string name;
      size_t n = 0;
      ls >> name >> n;
      g.tensors.emplace_back(name, n);
    } else if (key == "stats") {
      int u = 0;
      ls >> u;
      std::vector<double> v;
      double x = 0;
      while (ls >> x) v.push_back(x);
      g.stats.push_back(v);
    }
  }
  auto read = [&](size_t n) {
    std::vector<float> v(n);
    in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * sizeof(float)));
    return v;
  };
  const ModelConfig& c = g.cfg;
  const size_t B = static_cast<size_t>(c.batch_size), H = static_cast<size_t>(c.horizon);
  for (const auto& t : g.tensors) g.initial.push_back(read(t.second));
  for (int u = 0; u < g.updates; ++u) {
    g.obs.push_back(read((H + 1) * B * c.obs_dim));
    g.action.push_back(read(H * B * c.action_dim));
    g.reward.push_back(read(H * B));
  }
  for (const auto& t : g.tensors) g.final_.push_back(read(t.second));
  if (!in) throw pompc::Error(pompc::strfmt("fixture %s is truncated", path.c_str()));
  return g;
}

}  // namespace

TEST_SUITE("model") {
  TEST_CASE("config: model_size presets, key=value, items round trip") {
    ModelConfig c;
    CHECK(c.model_size == 5);
    for (const auto& [size, dims] :
         std::vector<std::pair<std::string, std::vector<int>>>{{"1", {256, 384, 128, 2, 2}},
                                                               {"5M", {256, 512, 512, 2, 5}},
                                                               {"19", {1024, 1024, 768, 3, 5}},
                                                               {"48m", {1792, 1792, 768, 4, 5}},
                                                               {"317", {4096, 4096, 1376, 5, 8}}}) {
      CAPTURE(size);
      c.set("model_size", size);
      CHECK(std::vector<int>{c.enc_dim, c.mlp_dim, c.latent_dim, c.num_enc_layers, c.num_q} ==
            dims);
    }
    c.set("mlp_dim", "33");  // a dim set after the size overrides it
    CHECK(c.mlp_dim == 33);
    c.set("entropy_form", "current");
    c.set("tf32", "false");
    c.set("rho", "0.25");
    c.set("seed", "12345678901");
    ModelConfig d;
    for (const auto& [k, v] : c.items()) d.set(k, v);
    CHECK(d.items() == c.items());
    CHECK(d.mlp_dim == 33);
    CHECK(d.entropy_form == pompc::EntropyForm::current);
    CHECK(d.seed == 12345678901ULL);
    CHECK(pompc::model::discount_for_episode_length(500) == doctest::Approx(0.99));
    CHECK(pompc::model::discount_for_episode_length(10) == doctest::Approx(0.95));
    CHECK(pompc::model::discount_for_episode_length(100000) == doctest::Approx(0.995));
  }

  TEST_CASE("config: bad settings give errors that name the fix") {
    auto throws = [](const ModelConfig& c, const char* what) {
      CAPTURE(what);
      CHECK_THROWS_WITH_AS(c.validate(), doctest::Contains(what), pompc::Error);
    };
    ModelConfig c = tiny(5, 1, 16, 24, 4, 3, 5);
    c.validate();
    ModelConfig bad = c;
    bad.latent_dim = 20;
    throws(bad, "latent_dim (20) must be a positive multiple of simnorm_dim (8), e.g. 24");
    bad = c;
    bad.simnorm_dim = 4;
    bad.latent_dim = 16;
    throws(bad, "simnorm_dim (4) must be 8");
    bad = c;
    bad.num_q = 1;
    throws(bad, "num_q (1) must be in [2, 64]");
    bad = c;
    bad.obs_dim = 0;
    throws(bad, "obs_dim (0) must be >= 1: set it to the task's observation size");
    bad = c;
    bad.dropout = 1.0f;
    throws(bad, "dropout (1) must be in [0, 1)");
    bad = c;
    bad.log_std_min = 3.0f;
    throws(bad, "log_std_min (3) must be < log_std_max (2)");
    CHECK_THROWS_WITH_AS(c.set("model_size", "7"),
                         doctest::Contains("model_size=7 is not one of 1, 5, 19, 48, 317"),
                         pompc::Error);
    CHECK_THROWS_WITH_AS(c.set("latent_dimm", "8"),
                         doctest::Contains("unknown model setting 'latent_dimm'"), pompc::Error);
    CHECK_THROWS_WITH_AS(c.set("horizon", "three"),
                         doctest::Contains("horizon=three: expected an integer"), pompc::Error);
    CHECK_THROWS_WITH_AS(c.set("entropy_form", "new"),
                         doctest::Contains("expected one of paper, current"), pompc::Error);
    auto ops = pompc::make_ref_ops();
    bad = c;
    bad.latent_dim = 12;
    CHECK_THROWS_WITH_AS(static_cast<void>(WorldModel(*ops, bad, 4)),
                         doctest::Contains("latent_dim (12)"), pompc::Error);
    CHECK_THROWS_WITH_AS(static_cast<void>(WorldModel(*ops, c, 0)),
                         doctest::Contains("max_rows (0) must be >= 1"), pompc::Error);
  }

  TEST_CASE("init: dog 5M has 5,159,082 trainable parameters (TD-MPC2 prints 5.16M)") {
    auto ops = pompc::make_ref_ops();
    ModelConfig c = dog(5);
    c.batch_size = 2;  // the count does not depend on the workspace
    WorldModel wm(*ops, c, 1);
    // encoder 57,856 + 132,608; dynamics 283,136 + 263,680 + 263,680; reward 283,136 + 263,680
    // + 51,813; pi 263,680 + 263,680 + 38,988; each Q head 283,136 + 263,680 + 51,813 (x5).
    CHECK(wm.param_count(ParamSet::model) == 4592734u);
    CHECK(wm.param_count(ParamSet::pi) == 566348u);
    CHECK(wm.param_count(ParamSet::target_q) == 2993145u);
    CHECK(wm.trainable_param_count() == 5159082u);
    // The buffers add 16-byte alignment gaps: 3 floats after the reward's last bias ([101]) and
    // 3 after the Qs' ([5, 101]); every other tensor's size is a multiple of 4 floats here.
    CHECK(wm.q_offset() == 4592734u - 2993145u + 3u);
    CHECK(wm.param_floats(ParamSet::model) == 4592734u + 6u);
    CHECK(wm.param_floats(ParamSet::target_q) == 2993145u + 3u);
    CHECK(wm.param_floats(ParamSet::pi) == 566348u);
    // The other sizes for the record (dog, trainable = model + pi).
    for (int size : {1, 19}) {
      ModelConfig s = dog(size);
      s.batch_size = 2;
      WorldModel w(*ops, s, 1);
      std::printf("dog %dM: %zu trainable parameters (+%zu target Qs)\n", size,
                  w.trainable_param_count(), w.param_count(ParamSet::target_q));
    }
  }

  TEST_CASE("init: the tensor table tiles each buffer; names follow the TD-MPC2 state_dict") {
    auto ops = pompc::make_ref_ops();
    ModelConfig c = dog(5);
    c.batch_size = 2;
    WorldModel wm(*ops, c, 1);
    // Here and at odd sizes (O = 5, A = 3, M = 10: few tensor sizes are multiples of 4): the
    // tensors tile each buffer with less than 4 floats of gap before each one (the alignment
    // gaps); at dog's sizes every tensor starts 16-byte aligned (at odd ones the reward's
    // slices of the trunk, stacked after the dynamics', cannot all be).
    ModelConfig odd = tiny(5, 3, 16, 10, 3, 2, 3);
    odd.prior = pompc::model::Prior::learned;
    WorldModel wo(*ops, odd, 1);
    for (const WorldModel* w : {&wm, &wo}) {
      for (ParamSet set : pompc::model::kParamSets) {
        std::vector<std::pair<size_t, size_t>> spans;
        size_t count = 0;
        for (const NamedTensor& t : w->tensors()) {
          if (t.set != set) continue;
          if (w == &wm) CHECK(t.offset % pompc::model::kTensorAlign == 0);
          spans.emplace_back(t.offset, t.offset + t.numel());
          count += t.numel();
        }
        std::sort(spans.begin(), spans.end());
        size_t at = 0;
        for (const auto& sp : spans) {
          CHECK(sp.first >= at);  // no overlap
          CHECK(sp.first - at < pompc::model::kTensorAlign);
          at = sp.second;
        }
        CHECK(w->param_floats(set) >= at);
        CHECK(w->param_floats(set) - at < pompc::model::kTensorAlign);
        CHECK(w->param_count(set) == count);
      }
    }
    auto find = [&](const std::string& name) -> const NamedTensor* {
      for (const NamedTensor& t : wm.tensors())
        if (t.name == name) return &t;
      return nullptr;
    };
    const NamedTensor* e0 = find("_encoder.state.0.weight");
    REQUIRE(e0);
    CHECK(e0->shape == std::vector<int64_t>{256, 223});
    CHECK(e0->offset == 0);
    REQUIRE(find("_encoder.state.1.ln.bias"));
    CHECK(find("_encoder.state.1.ln.bias")->shape == std::vector<int64_t>{512});
    REQUIRE(find("_dynamics.0.weight"));
    CHECK(find("_dynamics.0.weight")->shape == std::vector<int64_t>{512, 550});
    REQUIRE(find("_dynamics.2.ln.weight"));
    REQUIRE(find("_reward.2.weight"));
    CHECK(find("_reward.2.weight")->shape == std::vector<int64_t>{101, 512});
    CHECK(find("_reward.2.ln.weight") == nullptr);
    REQUIRE(find("_pi.2.bias"));
    CHECK(find("_pi.2.bias")->shape == std::vector<int64_t>{76});
    CHECK(find("_pi.2.bias")->set == ParamSet::pi);
    REQUIRE(find("_Qs.params.0.weight"));
    CHECK(find("_Qs.params.0.weight")->shape == std::vector<int64_t>{5, 512, 550});
    CHECK(find("_Qs.params.0.weight")->offset == wm.q_offset());
    REQUIRE(find("_Qs.params.1.ln.weight"));
    CHECK(find("_Qs.params.1.ln.weight")->shape == std::vector<int64_t>{5, 512});
    REQUIRE(find("_target_Qs_params.2.bias"));
    CHECK(find("_target_Qs_params.2.bias")->shape == std::vector<int64_t>{5, 101});
    CHECK(find("_target_Qs_params.0.weight")->offset == 0);
    CHECK(wm.tensors().size() == 8u + 12u + 10u + 10u + 10u + 10u);
  }

  TEST_CASE("init: zero heads, exact zero predictions, target == online, weight statistics") {
    auto ops = pompc::make_ref_ops();
    ModelConfig c = tiny(7, 3, 24, 40, 4, 3, 5);
    WorldModel wm(*ops, c, 9);
    const auto model = host(*ops, wm.params(ParamSet::model), wm.param_floats(ParamSet::model));
    const auto target =
        host(*ops, wm.params(ParamSet::target_q), wm.param_floats(ParamSet::target_q));
    CHECK(std::memcmp(target.data(), model.data() + wm.q_offset(), target.size() * 4) == 0);
    double sum = 0, sq = 0, mx = 0;
    size_t n = 0;
    for (const NamedTensor& t : wm.tensors()) {
      if (t.set != ParamSet::model) continue;
      const float* p = model.data() + t.offset;
      const bool zero_head =
          t.name.rfind("_reward.2.", 0) == 0 || t.name.rfind("_Qs.params.2.", 0) == 0;
      for (size_t i = 0; i < t.numel(); ++i) {
        if (t.name.find("ln.weight") != std::string::npos) {
          CHECK(p[i] == 1.0f);
        } else if (t.name.find("bias") != std::string::npos || zero_head) {
          CHECK(p[i] == 0.0f);
        } else {
          sum += p[i];
          sq += static_cast<double>(p[i]) * p[i];
          mx = std::max(mx, std::fabs(static_cast<double>(p[i])));
          n++;
        }
      }
    }
    const double mean = sum / n, sd = std::sqrt(sq / n - mean * mean);
    CHECK(std::fabs(mean) < 5 * 0.02 / std::sqrt(static_cast<double>(n)));
    CHECK(sd == doctest::Approx(0.02).epsilon(0.03));
    CHECK(mx <= 2.0);
    // Predictions at random latents and actions: reward and every Q (logits and values) are 0.
    const int rows = 9;
    std::vector<float> obs(rows * 7), a(rows * 3);
    for (size_t i = 0; i < obs.size(); ++i) obs[i] = 3.0f * pompc::philox_normal(1, 0, i);
    for (size_t i = 0; i < a.size(); ++i) a[i] = std::tanh(pompc::philox_normal(2, 0, i));
    float* d_obs = ops->alloc<float>(obs.size());
    float* d_a = ops->alloc<float>(a.size());
    float* z = ops->alloc<float>(rows * 24);
    float* out = ops->alloc<float>(5 * rows * 101);
    ops->copy_to_backend(d_obs, obs.data(), obs.size() * 4);
    ops->copy_to_backend(d_a, a.data(), a.size() * 4);
    wm.encode(z, d_obs, rows);
    const auto zh = host(*ops, z, rows * 24);
    for (int r = 0; r < rows; ++r)
      for (int g = 0; g < 3; ++g) {  // SimNorm: each group of 8 sums to 1
        double s = 0;
        for (int k = 0; k < 8; ++k) s += zh[static_cast<size_t>(r * 24 + g * 8 + k)];
        CHECK(s == doctest::Approx(1.0).epsilon(1e-5));
      }
    wm.reward(out, z, d_a, rows);
    for (float v : host(*ops, out, rows)) CHECK(v == 0.0f);
    for (bool target : {false, true}) {
      wm.Q(out, z, d_a, rows, QMode::all, target, 1, 2);
      for (float v : host(*ops, out, 5 * rows * 101)) CHECK(v == 0.0f);
      for (QMode m : {QMode::min, QMode::avg}) {
        wm.Q(out, z, d_a, rows, m, target, 1, 2);
        for (float v : host(*ops, out, rows)) CHECK(v == 0.0f);
      }
    }
    for (float* p : {d_obs, d_a, z, out}) ops->free_bytes(p);
  }

  TEST_CASE("inference: next in place, Q min / avg from the all-heads logits, pi in (-1, 1)") {
    auto ops = pompc::make_ref_ops();
    ModelConfig c = tiny(6, 4, 16, 20, 4, 2, 4);
    WorldModel wm(*ops, c, 11);
    randomize(wm, 5);
    const int rows = 11, Z = 16, A = 4, K = 101, Qn = 4;
    std::vector<float> obs(rows * 6), a(rows * A);
    for (size_t i = 0; i < obs.size(); ++i) obs[i] = pompc::philox_normal(3, 0, i);
    for (size_t i = 0; i < a.size(); ++i) a[i] = std::tanh(pompc::philox_normal(4, 0, i));
    float* d_obs = ops->alloc<float>(obs.size());
    float* d_a = ops->alloc<float>(a.size());
    float* z = ops->alloc<float>(rows * Z);
    float* z2 = ops->alloc<float>(rows * Z);
    float* logits = ops->alloc<float>(Qn * rows * K);
    float* q = ops->alloc<float>(rows);
    float* act = ops->alloc<float>(rows * A);
    float* mu = ops->alloc<float>(rows * A);
    float* ls = ops->alloc<float>(rows * A);
    float* lp = ops->alloc<float>(rows);
    ops->copy_to_backend(d_obs, obs.data(), obs.size() * 4);
    ops->copy_to_backend(d_a, a.data(), a.size() * 4);
    wm.encode(z, d_obs, rows);
    wm.next(z2, z, d_a, rows);
    wm.next(z, z, d_a, rows);  // in place
    CHECK(host(*ops, z, rows * Z) == host(*ops, z2, rows * Z));
    // Q: min / avg equal the pair picked by pick_pair over two_hot_inv of the heads' logits (only
    // the picked pair runs for min / avg: gather_pair; offsets 0..7 pick pairs in both orders).
    for (bool target : {false, true}) {
      wm.Q(logits, z, d_a, rows, QMode::all, target, 0, 0);
      const auto lg = host(*ops, logits, Qn * rows * K);
      std::vector<float> val(Qn * rows);
      pompc::ref::two_hot_inv_forward<float>(val.data(), lg.data(), nullptr, Qn * rows, c.bins());
      for (uint64_t off = 0; off < 8; ++off) {
        CAPTURE(off);
        int i = 0, j = 0;
        pompc::pick_pair(Qn, 21, off, &i, &j);
        wm.Q(q, z, d_a, rows, QMode::min, target, 21, off);
        const auto mn = host(*ops, q, rows);
        wm.Q(q, z, d_a, rows, QMode::avg, target, 21, off);
        const auto av = host(*ops, q, rows);
        for (int r = 0; r < rows; ++r) {
          const float qi = val[static_cast<size_t>(i * rows + r)],
                      qj = val[static_cast<size_t>(j * rows + r)];
          CHECK(mn[r] == std::min(qi, qj));
          CHECK(av[r] == (qi + qj) / 2);
        }
      }
    }
    // Online and target differ after randomize (different draws), so target=true is not online.
    wm.Q(q, z, d_a, rows, QMode::avg, false, 1, 1);
    const auto online = host(*ops, q, rows);
    wm.Q(q, z, d_a, rows, QMode::avg, true, 1, 1);
    CHECK(host(*ops, q, rows) != online);
    wm.pi(act, mu, ls, lp, z, rows, 5, 6);
    for (float v : host(*ops, act, rows * A)) CHECK(std::fabs(v) < 1.0f);
    for (float v : host(*ops, ls, rows * A)) CHECK((v >= -10.0f && v <= 2.0f));
    wm.pi(act, nullptr, nullptr, nullptr, z, rows, 5, 6);  // optional outputs may be null
    CHECK_THROWS_WITH_AS(wm.encode(z, d_obs, 12), doctest::Contains("max_rows = 11"), pompc::Error);
    for (float* p : {d_obs, d_a, z, z2, logits, q, act, mu, ls, lp}) ops->free_bytes(p);
  }

  TEST_CASE("gradients: update losses vs central finite differences, every module (reference)") {
    fd_case(0.0f);   // as the reference trains the heads, dropout off (brief)
    fd_case(0.25f);  // dropout on: the backward must replay the forward's masks
  }

  TEST_CASE("gradients: every critic and policy objective vs central finite differences") {
    using pompc::model::Critic;
    using pompc::model::Divergence;
    using pompc::model::Prior;
    using pompc::model::PriorScale;
    auto bmpc_head = [](ModelConfig& c) {
      c.policy_form = pompc::PolicyForm::clamped;
      c.log_std_min = -3.0f;
      c.log_std_max = 1.0f;
    };
    fd_case(0.25f, "bmpc: V critic, clamped pi, reverse KL to the planner", [&](ModelConfig& c) {
      bmpc_head(c);
      c.critic = Critic::v;
      c.q_coef = 0.0f;
      c.prior_coef = 1.0f;
      c.prior = Prior::planner;
    });
    fd_case(0.0f, "tdmpc2sq: nll of the action, S_Q", [](ModelConfig& c) {
      c.prior_coef = 1.0f;
      c.prior_coef_per_action = true;
      c.prior = Prior::planner;
      c.divergence = Divergence::nll;
      c.prior_scale = PriorScale::q;
      c.prior_scale_threshold = 2.0f;
    });
    // Forward KLs divide by pi's variance: log_std >= -1 keeps the loss O(1), so that float
    // finite differences resolve its gradient (with log_std near -3 the loss reaches ~1e3 and the
    // differences carry ~1e-3 of rounding noise). Such wide stds put many clamped actions at the
    // clamp's kink, where differences are wrong: these two cases use the smooth squashed head
    // (the clamped head's backward is checked by the bmpc and learned-prior cases).
    fd_case(0.0f, "planner prior, forward KL", [&](ModelConfig& c) {
      c.log_std_min = -1.0f;
      c.log_std_max = 1.0f;
      c.q_coef = 0.5f;
      c.prior_coef = 0.5f;
      c.prior = Prior::planner;
      c.divergence = Divergence::forward;
    });
    fd_case(0.25f, "pompc: intermediate prior, forward (weighted nll)", [&](ModelConfig& c) {
      c.log_std_min = -1.0f;
      c.log_std_max = 1.0f;
      c.q_coef = 0.5f;
      c.prior_coef = 0.5f;
      c.prior = Prior::intermediate;
      c.divergence = Divergence::forward;
      c.prior_samples = 4;
      c.beta = 0.5f;
    });
    fd_case(0.0f, "pompc: intermediate prior, reverse", [&](ModelConfig& c) {
      c.q_coef = 0.5f;
      c.prior_coef = 0.5f;
      c.prior = Prior::intermediate;
      c.divergence = Divergence::reverse;
      c.prior_samples = 4;
    });
    // The learned prior regularises z[0..H]: with BMPC's clamped head and a Q term, some of the
    // extra rows' actions sit within a difference step of the clamp's kink, so the Q term runs
    // with the smooth squashed head and the clamped head without a Q term (no action gradient).
    // The KLs divide by pi_psi's variance: log_std >= -1, as the forward cases above.
    fd_case(0.0f, "pompc: learned prior, reverse, reverse fit", [&](ModelConfig& c) {
      c.log_std_min = -1.0f;
      c.log_std_max = 1.0f;
      c.q_coef = 0.5f;
      c.prior_coef = 0.5f;
      c.prior = Prior::learned;
      c.divergence = Divergence::reverse;
      c.prior_fit = Divergence::reverse;
    });
    fd_case(0.25f, "pompc: learned prior, clamped pi, imitation (q_coef 0)", [&](ModelConfig& c) {
      bmpc_head(c);
      c.q_coef = 0.0f;
      c.prior_coef = 1.0f;
      c.prior = Prior::learned;
      c.divergence = Divergence::reverse;
      c.prior_fit = Divergence::reverse;
    });
    // As published: lambda = 1, forward fit, the KL-regularised TD target (held fixed, as every
    // target: the model loss's gradient does not flow into it). The forward fit divides by
    // pi_psi's variance: the smooth squashed head with log_std >= -1, as the forward cases above.
    fd_case(0.25f, "pompc as published: learned prior, forward fit, kl_critic", [](ModelConfig& c) {
      c.log_std_min = -1.0f;
      c.log_std_max = 1.0f;
      c.prior_coef = 1.0f;
      c.prior = Prior::learned;
      c.divergence = Divergence::reverse;
      c.prior_fit = Divergence::forward;
      c.kl_critic = true;
    });
  }

  TEST_CASE("update: prior=learned at lambda = 0 is the TD-MPC2 update bit for bit (2 backends)") {
    // The prior is fitted (its own parameters), nothing else reads it; kl_critic at lambda 0
    // subtracts exactly 0 from the TD target.
    auto ref = pompc::make_ref_ops();
    auto gpu = pompc::make_cuda_ops();
    for (Ops* ops : {ref.get(), gpu.get()})
      for (const bool kl : {false, true}) {
        CAPTURE(ops->description());
        CAPTURE(kl);
        ModelConfig c = tiny(5, 3, 16, 24, 7, 3, 5);
        const Snapshot a = run_updates(*ops, c, 3, true);
        c.prior = pompc::model::Prior::learned;
        c.prior_coef = 0.0f;
        c.kl_critic = kl;
        const Snapshot b = run_updates(*ops, c, 3, true);
        CHECK(a.model == b.model);
        CHECK(a.pi == b.pi);
        CHECK(a.target == b.target);
        CHECK(a.m_pi == b.m_pi);
        CHECK(a.scale == b.scale);
        CHECK(a.stats.pi_loss == b.stats.pi_loss);
        CHECK(a.stats.value_loss == b.stats.value_loss);
        CHECK(b.prior != std::vector<float>(b.prior.size(), 0.0f));
      }
  }

  TEST_CASE("update: as lambda grows the pi gradient turns into the imitation gradient") {
    // L_pi / lambda = D / S_D - Qbar / (S_Q lambda) (entropy off): the pi gradient of lambda,
    // divided by lambda, approaches that of q_coef = 0, prior_coef = 1 as 1 / lambda.
    auto ops = pompc::make_ref_ops();
    auto pi_grad = [&](float q_coef, float prior_coef) {
      ModelConfig c = tiny(5, 3, 16, 24, 7, 3, 5);
      c.policy_form = pompc::PolicyForm::clamped;
      c.log_std_min = -3.0f;
      c.log_std_max = 1.0f;
      c.entropy_coef = 0.0f;
      c.prior = pompc::model::Prior::learned;
      c.q_coef = q_coef;
      c.prior_coef = prior_coef;
      WorldModel wm(*ops, c, 4);
      randomize(wm, 3);
      BatchData data(*ops, c, 5);
      const Batch b = data.batch();
      UpdateStats* st = ops->alloc<UpdateStats>(1);
      wm.zero_grads();
      wm.td_target(b);
      wm.rollout(b);
      wm.model_loss(b, st, false);
      wm.pi_loss(b, st, false, false);
      wm.pi_loss_backward(b, false);
      auto g = host(*ops, wm.grads(ParamSet::pi), wm.param_floats(ParamSet::pi));
      for (float& x : g) x /= prior_coef;
      ops->free_bytes(st);
      return g;
    };
    const auto imitation = pi_grad(0.0f, 1.0f);
    double norm = 0;
    for (float x : imitation) norm += double(x) * x;
    norm = std::sqrt(norm);
    REQUIRE(norm > 0);
    std::vector<double> err;
    for (const float lambda : {1.0f, 1e2f, 1e4f}) {
      const auto g = pi_grad(1.0f, lambda);
      double e = 0;
      for (size_t i = 0; i < g.size(); ++i) e += std::pow(double(g[i]) - imitation[i], 2);
      err.push_back(std::sqrt(e) / norm);
      std::printf("lambda %g: |g / lambda - g_imitation| / |g_imitation| = %.3g\n",
                  double(lambda), err.back());
    }
    CHECK(err[0] > 1e-2);                                      // lambda 1: the Q term matters
    CHECK(err[1] == doctest::Approx(err[0] / 1e2).epsilon(0.05));  // exactly 1 / lambda
    CHECK(err[2] < 1e-3 * err[0] + 1e-6);
  }

  TEST_CASE("update: the losses equal SPEC's formulas recomputed through the inference API") {
    // Dropout off (the inference API has none), randomised parameters, the reward head's last
    // Linear set to weight 0 and a known bias (its logits are then that bias in every row).
    auto ops = pompc::make_ref_ops();
    ModelConfig c = tiny(5, 3, 16, 20, 6, 3, 4);
    c.dropout = 0.0f;
    c.entropy_coef = 0.05f;
    const int B = 6, H = 3, O = 5, A = 3, Z = 16, K = 101, Qn = 4, RH = H * B, RH1 = (H + 1) * B;
    WorldModel wm(*ops, c, RH1);
    randomize(wm, 4);
    const NamedTensor *rw_w = nullptr, *rw_b = nullptr;
    for (const NamedTensor& t : wm.tensors()) {
      if (t.name == "_reward.2.weight") rw_w = &t;
      if (t.name == "_reward.2.bias") rw_b = &t;
    }
    REQUIRE(rw_w);
    REQUIRE(rw_b);
    std::vector<float> bias(K);
    for (int k = 0; k < K; ++k) bias[k] = pompc::philox_normal(8, 0, k);
    ops->fill(wm.params(ParamSet::model) + rw_w->offset, static_cast<int64_t>(rw_w->numel()), 0.0f);
    ops->copy_to_backend(wm.params(ParamSet::model) + rw_b->offset, bias.data(), K * 4);
    BatchData data(*ops, c, 2);
    UpdateStats* st = ops->alloc<UpdateStats>(1);
    wm.td_target(data.batch());
    wm.rollout(data.batch());
    wm.model_loss(data.batch(), st, false);
    const float s0 = 3.0f;  // S_Q away from 1 (a fresh model's spread is < 1: S would stay 1)
    ops->copy_to_backend(wm.q_scale(), &s0, sizeof s0);
    wm.pi_loss(data.batch(), st, true, false);
    const UpdateStats got = read_stats(*ops, st);

    // The same quantities through encode / next / pi / Q, summed on the host.
    float* zs = ops->alloc<float>(RH1 * Z);
    float* next_z = ops->alloc<float>(RH * Z);
    float* a2 = ops->alloc<float>(RH1 * A);
    float* lp = ops->alloc<float>(RH1);
    float* q = ops->alloc<float>(RH1);
    float* logits = ops->alloc<float>(Qn * RH * K);
    wm.encode(zs, data.obs, B);
    for (int t = 0; t < H; ++t)
      wm.next(zs + (t + 1) * B * Z, zs + t * B * Z, data.action + t * B * A, B);
    wm.encode(next_z, data.obs + B * O, RH);
    const uint64_t seed = c.seed;
    wm.pi(a2, nullptr, nullptr, nullptr, next_z, RH, seed, WorldModel::update_offset(0, 0));
    wm.Q(q, next_z, a2, RH, QMode::min, true, seed, WorldModel::update_offset(0, 1));
    const auto qmin = host(*ops, q, RH);
    std::vector<float> td(RH);
    for (int i = 0; i < RH; ++i) td[i] = data.rw[i] + c.discount * qmin[i];
    const auto zh = host(*ops, zs, RH1 * Z), nz = host(*ops, next_z, RH * Z);
    double cons = 0, rew = 0, val = 0;
    std::vector<float> ce(B);
    std::vector<float> blog(static_cast<size_t>(B) * K);
    for (int b = 0; b < B; ++b) std::copy(bias.begin(), bias.end(), blog.begin() + b * K);
    wm.Q(logits, zs, data.action, RH, QMode::all, false, 0, 0);
    const auto lg = host(*ops, logits, Qn * RH * K);
    for (int t = 0; t < H; ++t) {
      const double rt = std::pow(0.5, t);
      double se = 0;
      for (int i = 0; i < B * Z; ++i) {
        const double d = zh[(t + 1) * B * Z + i] - nz[t * B * Z + i];
        se += d * d;
      }
      cons += rt * se / (B * Z) / H;
      pompc::ref::soft_ce_forward(ce.data(), blog.data(), data.rw.data() + t * B, B, c.bins());
      for (float v : ce) rew += rt * v / B / H;
      for (int qh = 0; qh < Qn; ++qh) {
        pompc::ref::soft_ce_forward(ce.data(),
                                    lg.data() + (static_cast<size_t>(qh) * RH + t * B) * K,
                                    td.data() + t * B, B, c.bins());
        for (float v : ce) val += rt * v / B / H / Qn;
      }
    }
    CHECK(got.consistency_loss == doctest::Approx(cons).epsilon(1e-5));
    CHECK(got.reward_loss == doctest::Approx(rew).epsilon(1e-5));
    CHECK(got.value_loss == doctest::Approx(val).epsilon(1e-5));
    CHECK(got.total_loss == doctest::Approx(20 * cons + 0.1 * rew + 0.1 * val).epsilon(1e-5));
    // pi: a ~ pi(z[0..H]), Qbar = avg2 of the online heads, S_Q updated with Qbar at t = 0.
    wm.pi(a2, nullptr, nullptr, lp, zs, RH1, seed, WorldModel::update_offset(0, 3));
    wm.Q(q, zs, a2, RH1, QMode::avg, false, seed, WorldModel::update_offset(0, 5));
    const auto qa = host(*ops, q, RH1), lph = host(*ops, lp, RH1);
    std::vector<float> scratch(B);
    const double spread = pompc::ref::percentile_linear(scratch.data(), qa.data(), B, 95.0f) -
                          pompc::ref::percentile_linear(scratch.data(), qa.data(), B, 5.0f);
    const double S = s0 + 0.01 * (std::max(spread, 1.0) - s0);
    double pil = 0;
    for (int t = 0; t <= H; ++t)
      for (int b = 0; b < B; ++b)
        pil += std::pow(0.5, t) / (H + 1) / B * (0.05 * lph[t * B + b] - qa[t * B + b] / S);
    CHECK(got.pi_scale == doctest::Approx(S).epsilon(1e-6));
    CHECK(got.pi_loss == doctest::Approx(pil).epsilon(1e-5));
    for (float* p : {zs, next_z, a2, lp, q, logits}) ops->free_bytes(p);
    ops->free_bytes(st);
  }

  TEST_CASE("golden: two updates match a float64 JAX autodiff implementation (both backends)") {
    const Golden g = load_golden();
    REQUIRE(g.updates >= 1);
    REQUIRE(g.stats.size() == static_cast<size_t>(g.updates));
    for (bool cuda : {false, true}) {
      CAPTURE(cuda);
      auto ops = cuda ? pompc::make_cuda_ops() : pompc::make_ref_ops();
      WorldModel wm(*ops, g.cfg, 4);
      // The fixture's tensors, by name, into the model's buffers; every tensor must be covered.
      REQUIRE(g.tensors.size() == wm.tensors().size());
      for (size_t k = 0; k < g.tensors.size(); ++k) {
        const NamedTensor* t = nullptr;
        for (const NamedTensor& x : wm.tensors())
          if (x.name == g.tensors[k].first) t = &x;
        REQUIRE_MESSAGE(t, "fixture tensor " << g.tensors[k].first << " is not in the model");
        REQUIRE(t->numel() == g.tensors[k].second);
        ops->copy_to_backend(wm.params(t->set) + t->offset, g.initial[k].data(), t->numel() * 4);
      }
      ops->copy_to_backend(wm.q_scale(), &g.q_scale, sizeof g.q_scale);
      UpdateStats* st = ops->alloc<UpdateStats>(1);
      for (int u = 0; u < g.updates; ++u) {
        CAPTURE(u);
        BatchData data(*ops, g.cfg, 0);  // sized by the config, filled from the fixture below
        ops->copy_to_backend(data.obs, g.obs[u].data(), g.obs[u].size() * 4);
        ops->copy_to_backend(data.action, g.action[u].data(), g.action[u].size() * 4);
        ops->copy_to_backend(data.reward, g.reward[u].data(), g.reward[u].size() * 4);
        wm.update(data.batch(), st);
        const UpdateStats s = read_stats(*ops, st);
        const float* got = &s.consistency_loss;
        // fp32 against float64: ~1e-6 relative after the sums; the norms and pi loss run through
        // symexp of Q values in the hundreds, hence 1e-5.
        for (size_t k = 0; k < g.stats[u].size(); ++k) {
          CAPTURE(k);
          CHECK(got[k] == doctest::Approx(g.stats[u][k]).epsilon(1e-5));
        }
      }
      // Parameters after the updates: as in the backend parity test, Adam moves every parameter
      // by ~lr whatever the size of its gradient, so fp32 rounding of a near-zero gradient shows
      // as a fraction of lr: 0.25 lr per element, and the 99.9th percentile below 1e-3 lr once
      // the fp32 storage of the values (the fixture's and ours, ~2 ulp = 2.4e-7 |p|) is allowed.
      std::vector<double> diffs;
      const float lr = g.cfg.lr;
      for (size_t k = 0; k < g.tensors.size(); ++k) {
        const NamedTensor* t = nullptr;
        for (const NamedTensor& x : wm.tensors())
          if (x.name == g.tensors[k].first) t = &x;
        const auto got = host(*ops, wm.params(t->set) + t->offset, t->numel());
        CHECK(check_close(t->name.c_str(), got, g.final_[k], 0.25 * lr, 2.4e-7));
        for (size_t i = 0; i < got.size(); ++i) {
          const double ref = g.final_[k][i];
          diffs.push_back(std::max(0.0, std::fabs(got[i] - ref) - 2.4e-7 * std::fabs(ref)));
        }
      }
      std::sort(diffs.begin(), diffs.end());
      const double p999 = diffs[static_cast<size_t>(0.999 * static_cast<double>(diffs.size() - 1))];
      std::printf(
          "golden (%s): params max diff beyond fp32 storage %.3g, 99.9th percentile "
          "%.3g (lr %.3g)\n",
          cuda ? "cuda" : "reference", diffs.back(), p999, static_cast<double>(lr));
      CHECK(p999 < 1e-3 * lr);
      ops->free_bytes(st);
    }
  }

  TEST_CASE("update: one step moves what it should and reports finite statistics") {
    auto ops = pompc::make_ref_ops();
    ModelConfig c = tiny(5, 1, 16, 24, 8, 3, 5);
    WorldModel wm(*ops, c, 4);
    BatchData data(*ops, c, 1);
    UpdateStats* st = ops->alloc<UpdateStats>(1);
    const Snapshot before = snapshot(wm, nullptr);
    wm.update(data.batch(), st);
    CHECK(wm.updates() == 1u);
    const Snapshot after = snapshot(wm, st);
    const UpdateStats& s = after.stats;
    for (float v : {s.consistency_loss, s.reward_loss, s.value_loss, s.total_loss, s.grad_norm,
                    s.pi_loss, s.pi_grad_norm, s.pi_scale})
      CHECK(std::isfinite(v));
    // At init the reward / Q logits are 0: soft_ce = log(K) for any target; so reward_loss =
    // value_loss = log(101) sum_t rho^t / H.
    const double wsum = (1 + 0.5 + 0.25) / 3;
    CHECK(s.reward_loss == doctest::Approx(std::log(101.0) * wsum).epsilon(1e-5));
    CHECK(s.value_loss == doctest::Approx(std::log(101.0) * wsum).epsilon(1e-5));
    CHECK(s.total_loss ==
          doctest::Approx(20 * s.consistency_loss + 0.1 * s.reward_loss + 0.1 * s.value_loss)
              .epsilon(1e-6));
    CHECK(s.pi_scale == 1.0f);  // Q = 0 at init -> percentile spread 0 -> v = 1
    CHECK(after.adam_model.step == 1u);
    CHECK(after.adam_pi.step == 1u);
    CHECK(after.model != before.model);
    CHECK(after.pi != before.pi);
    // Polyak: target = target + 0.01 (Q_new - target) with target = Q_old.
    const size_t qo = wm.q_offset();
    for (size_t i = 0; i < after.target.size(); ++i) {
      const float t0 = before.target[i];
      const float want = t0 + c.tau * (after.model[qo + i] - t0);
      REQUIRE(after.target[i] == want);
    }
    // The encoder's Adam group has lr * 0.3: first step |delta| = lr * 0.3 where the grad is not
    // tiny (m / sqrt(v) = sign(g) after bias correction up to eps).
    const auto [elo, ehi] = range_of(wm, "_encoder");
    const auto [dlo, dhi] = range_of(wm, "_dynamics");
    double emax = 0, dmax = 0;
    for (size_t i = elo; i < ehi; ++i)
      emax = std::max(emax, std::fabs(double(after.model[i]) - before.model[i]));
    for (size_t i = dlo; i < dhi; ++i)
      dmax = std::max(dmax, std::fabs(double(after.model[i]) - before.model[i]));
    CHECK(emax == doctest::Approx(c.lr * c.enc_lr_scale).epsilon(1e-2));
    CHECK(dmax == doctest::Approx(c.lr).epsilon(1e-2));
    ops->free_bytes(st);
  }

  TEST_CASE("update: the same seed gives a bitwise identical update (reference, 3 steps)") {
    auto ops = pompc::make_ref_ops();
    ModelConfig c = tiny(5, 3, 16, 24, 8, 3, 5);
    const Snapshot a = run_updates(*ops, c, 3, true);
    const Snapshot b = run_updates(*ops, c, 3, true);
    auto same = [](const std::vector<float>& x, const std::vector<float>& y) {
      return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * 4) == 0;
    };
    CHECK(same(a.model, b.model));
    CHECK(same(a.pi, b.pi));
    CHECK(same(a.target, b.target));
    CHECK(same(a.m_model, b.m_model));
    CHECK(same(a.v_model, b.v_model));
    CHECK(same(a.m_pi, b.m_pi));
    CHECK(same(a.v_pi, b.v_pi));
    CHECK(same(a.scale, b.scale));
    CHECK(std::memcmp(&a.stats, &b.stats, sizeof a.stats) == 0);
    // A different seed changes the update (dropout masks and policy noise).
    ModelConfig c2 = c;
    c2.seed = c.seed + 1;
    const Snapshot d = run_updates(*ops, c2, 1, false);
    const Snapshot e = run_updates(*ops, c, 1, false);
    CHECK(!same(d.model, e.model));
  }

  TEST_CASE("parity: a whole update, reference vs CUDA kernels, odd shapes (O=5 A=1 Z=16 M=24)") {
    parity_case(tiny(5, 1, 16, 24, 7, 3, 5), false);
    parity_case(tiny(5, 1, 16, 24, 7, 3, 5), true);
  }

  TEST_CASE("parity: a whole update, reference vs CUDA kernels (A=6 Z=M=64)") {
    ModelConfig c = tiny(17, 6, 64, 64, 16, 3, 5);
    c.enc_dim = 64;
    parity_case(c, true);
  }

  TEST_CASE("parity: bmpc and pompc updates, reference vs CUDA kernels (O=5 A=3 Z=16 M=24)") {
    using pompc::model::Divergence;
    using pompc::model::Prior;
    auto bmpc_head = [](ModelConfig& c) {
      c.policy_form = pompc::PolicyForm::clamped;
      c.log_std_min = -3.0f;
      c.log_std_max = 1.0f;
    };
    ModelConfig b = tiny(5, 3, 16, 24, 7, 3, 2);  // bmpc: V critic, reverse KL to the planner
    bmpc_head(b);
    b.critic = pompc::model::Critic::v;
    b.q_coef = 0.0f;
    b.prior_coef = 1.0f;
    b.prior = Prior::planner;
    parity_case(b, true);
    ModelConfig p = tiny(5, 3, 16, 24, 7, 3, 5);  // pompc: intermediate prior, forward
    bmpc_head(p);
    p.q_coef = 0.5f;
    p.prior_coef = 0.5f;
    p.prior = Prior::intermediate;
    p.divergence = Divergence::forward;
    p.prior_samples = 4;
    parity_case(p, true);
    ModelConfig l = p;  // pompc as published: learned prior, reverse, kl_critic; tdmpc2sq's nll
    l.q_coef = 1.0f;
    l.prior_coef = 1.0f;
    l.prior = Prior::learned;
    l.divergence = Divergence::reverse;
    l.kl_critic = true;
    parity_case(l, true);
    ModelConfig q = tiny(5, 3, 16, 24, 7, 3, 5);
    q.prior_coef = 1.0f;
    q.prior_coef_per_action = true;
    q.prior = Prior::planner;
    q.divergence = Divergence::nll;
    q.prior_scale = pompc::model::PriorScale::q;
    parity_case(q, true);
  }

  // update_graph captures one update and replays it; its random draws (dropout masks, policy
  // noise, head pairs, the intermediate prior's samples) read the update counter from backend
  // memory, so every replay must give exactly what update() gives at that step. A graph that
  // baked its first update's offsets would repeat that update's draws and differ from step 2 on.
  TEST_CASE("graphs: update_graph's replays equal update() bit for bit (both backends, presets)") {
    using pompc::model::Divergence;
    using pompc::model::Prior;
    ModelConfig td = tiny(5, 3, 16, 24, 6, 3, 5);  // tdmpc2 with dropout in the Q heads
    td.dropout = 0.25f;
    ModelConfig po = td;  // pompc as published: learned prior, kl_critic
    po.prior_coef = 1.0f;
    po.prior = Prior::learned;
    po.kl_critic = true;
    ModelConfig im = td;  // the intermediate prior's samples and their head pairs
    im.q_coef = 0.5f;
    im.prior_coef = 0.5f;
    im.prior = Prior::intermediate;
    im.divergence = Divergence::forward;
    im.prior_samples = 3;
    ModelConfig bm = tiny(5, 3, 16, 24, 6, 3, 2);  // bmpc: V critic, reverse KL, no policy burst
    bm.critic = pompc::model::Critic::v;
    bm.policy_form = pompc::PolicyForm::clamped;
    bm.q_coef = 0.0f;
    bm.prior_coef = 1.0f;
    bm.prior = Prior::planner;
    const bool policy[] = {false, true, false, true, true, false, true, true};
    for (const bool cuda : {false, true}) {
      for (const ModelConfig* c : {&td, &po, &im, &bm}) {
        CAPTURE(cuda);
        CAPTURE(c->prior);
        auto ops = cuda ? pompc::make_cuda_ops() : pompc::make_ref_ops();
        WorldModel eager(*ops, *c, 4), graphed(*ops, *c, 4);
        randomize(eager, 9);
        randomize(graphed, 9);
        BatchData slot(*ops, *c, 1);  // the graphed model always reads these buffers
        UpdateStats* st_e = ops->alloc<UpdateStats>(1);
        UpdateStats* st_g = ops->alloc<UpdateStats>(1);
        for (size_t k = 0; k < std::size(policy); ++k) {
          BatchData data(*ops, *c, 100 + k);
          const std::pair<float*, const std::vector<float>*> into[] = {{slot.obs, &data.ob},
                                                                       {slot.action, &data.ac},
                                                                       {slot.reward, &data.rw},
                                                                       {slot.mu_p, &data.mp},
                                                                       {slot.sigma_p, &data.sp}};
          for (const auto& [dst, src] : into)
            ops->copy_to_backend(dst, src->data(), src->size() * sizeof(float));
          eager.update(data.batch(), st_e, policy[k]);
          graphed.update_graph(slot.batch(), st_g, policy[k]);
          const Snapshot a = snapshot(eager, st_e), b = snapshot(graphed, st_g);
          CAPTURE(k);
          CHECK(a.model == b.model);
          CHECK(a.pi == b.pi);
          CHECK(a.target == b.target);
          CHECK(a.prior == b.prior);
          CHECK(a.m_model == b.m_model);
          CHECK(a.v_pi == b.v_pi);
          CHECK(a.scale == b.scale);
          CHECK(a.dscale == b.dscale);
          CHECK(std::memcmp(&a.stats, &b.stats, sizeof a.stats) == 0);
          CHECK(graphed.updates() == eager.updates());
        }
        ops->free_bytes(st_e);
        ops->free_bytes(st_g);
      }
    }
  }
}

namespace {
// One world-model update at dog 5M and 1M on a backend (TF32 on, as trained, on CUDA).
void bench_update(Ops& ops, int reps) {
  for (int size : {5, 1}) {
    ModelConfig c = dog(size);
    WorldModel wm(ops, c, 1);
    BatchData data(ops, c, 1);
    UpdateStats* st = ops.alloc<UpdateStats>(1);
    const double ms = pompc::test::time_ms([&] { wm.update(data.batch(), st); }, reps,
                                           [&] { ops.synchronize(); });
    const double gflop = pompc::test::update_cost(c).flop * 1e-9;  // tests/bench_util.h
    std::printf(
        "bench: model/update dog %dM B=%d H=%d (%s): %.2f ms, %.1f GFLOP of GEMMs, "
        "%.1f GFLOP/s; %.0f MiB of parameters, optimizer state and workspace\n",
        size, c.batch_size, c.horizon, ops.description().c_str(), ms, gflop, gflop / (ms * 1e-3),
        static_cast<double>(wm.allocated_bytes()) / (1 << 20));
    ops.free_bytes(st);
  }
}
}  // namespace

TEST_SUITE("bench") {
  TEST_CASE("bench update: world-model update step, dog 5M and 1M, CUDA backend [gpu-only]") {
    auto ops = pompc::make_cuda_ops();
    bench_update(*ops, 20);
  }
  TEST_CASE("bench update: world-model update step, dog 5M and 1M, reference backend") {
    auto ops = pompc::make_ref_ops();
    bench_update(*ops, 1);
  }
}
