// Optimizer ops: the reference against closed forms, and the CUDA kernels (kernels/optim.cu)
// against the reference at sizes 1, 33, 1025 and 5.2M (the dog-sized 5M model).
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "ops.h"
#include "philox.cuh"
#include "ref/optim.h"
#include "test_util.h"

#ifdef POMPC_EMU
#include <cuda_runtime.h>  // emu::race_detection
#endif

using pompc::AdamGroups;
using pompc::AdamScalars;
using pompc::AdamSettings;
using pompc::Ops;
using pompc::test::BackendArray;
using pompc::test::normals;

namespace {

// Two groups like TD-MPC2's model optimizer: the first third is the "encoder" at 0.3 x lr.
AdamGroups two_groups(size_t n) {
  AdamGroups g;
  g.add(n / 3, 3e-4f * 0.3f);
  g.add(n - n / 3, 3e-4f);
  return g;
}

}  // namespace

TEST_SUITE("ops") {
  TEST_CASE("optim: reference Adam matches a hand-computed PyTorch step") {
    // One parameter, lr 0.1, two steps with grads 0.5 and -1 (PyTorch's formulas by hand):
    // step 1: m = 0.05, v = 0.00025, bias1 = 0.1, bias2 = 0.001 -> p -= 0.1/0.1 * 0.05 /
    //   (sqrt(0.00025)/sqrt(0.001) + 1e-8) = 0.1 * ... -> p = 1 - 0.1 = 0.9 (up to eps)
    // step 2: m = 0.045 - 0.1 = -0.055, v = 0.00024975 + 0.001 = 0.00124975,
    //   bias1 = 0.19, bias2 = 0.001999 -> p += 0.1/0.19 * 0.055 / sqrt(0.00124975/0.001999)
    AdamSettings cfg;
    AdamGroups g;
    g.add(1, 0.1f);
    float p = 1, m = 0, v = 0;
    AdamScalars s{};
    float grad = 0.5f;
    pompc::ref::adam_update(cfg, g, &p, &grad, &m, &v, &s);
    CHECK(s.step == 1);
    CHECK(p == doctest::Approx(0.9).epsilon(1e-6));
    grad = -1.0f;
    pompc::ref::adam_update(cfg, g, &p, &grad, &m, &v, &s);
    const double want = 0.9 + 0.1 / 0.19 * 0.055 / std::sqrt(0.00124975 / 0.001999);
    CHECK(s.step == 2);
    CHECK(s.bias1 == doctest::Approx(0.19));
    CHECK(p == doctest::Approx(want).epsilon(1e-6));
  }

  TEST_CASE("optim: reference Adam applies each group's learning rate") {
    AdamSettings cfg;
    AdamGroups g;
    g.add(2, 0.01f);
    g.add(3, 0.1f);
    std::vector<float> p(5, 0.0f), m(5, 0.0f), v(5, 0.0f), grad(5, 1.0f);
    AdamScalars s{};
    pompc::ref::adam_update(cfg, g, p.data(), grad.data(), m.data(), v.data(), &s);
    // First step of Adam moves every parameter by -lr * sign(grad) (up to eps).
    for (int i = 0; i < 2; ++i) CHECK(p[i] == doctest::Approx(-0.01).epsilon(1e-5));
    for (int i = 2; i < 5; ++i) CHECK(p[i] == doctest::Approx(-0.1).epsilon(1e-5));
  }

  TEST_CASE("optim: reference clip_grad_norm and polyak") {
    std::vector<float> g = {3, 4};
    float norm = 0;
    pompc::ref::clip_grad_norm(g.data(), 2, 1.0f, &norm);
    CHECK(norm == 5.0f);
    CHECK(g[0] == doctest::Approx(0.6).epsilon(1e-6));
    CHECK(g[1] == doctest::Approx(0.8).epsilon(1e-6));
    std::vector<float> small = {0.3f, -0.4f};
    pompc::ref::clip_grad_norm(small.data(), 2, 20.0f, &norm);
    CHECK(small[0] == 0.3f);  // below max_norm: untouched (scale clamped to 1)
    CHECK(small[1] == -0.4f);
    std::vector<float> target = {1, 2}, online = {3, -2};
    pompc::ref::polyak(target.data(), online.data(), 2, 0.01f);
    CHECK(target[0] == doctest::Approx(1.02));
    CHECK(target[1] == doctest::Approx(1.96));
  }

  TEST_CASE("optim: CUDA kernels match the reference at n = 1, 33, 1025, 5.2M") {
    auto ref = pompc::make_ref_ops();
    auto gpu = pompc::make_cuda_ops();
    // Under the race detector (test_race) 1.1M stands for 5.2M: still past one grid-stride pass
    // (4096 blocks x 256 threads), at a fifth of the shadow memory.
#ifdef POMPC_EMU
    const size_t big = emu::race_detection() ? 1'100'000 : 5'200'000;
#else
    const size_t big = 5'200'000;
#endif
    for (size_t n : {size_t(1), size_t(33), size_t(1025), big}) {
      CAPTURE(n);
      const auto p0 = normals(n, 1, 0.02f), g0 = normals(n, 2, 1.0f);
      const AdamGroups groups = n >= 3 ? two_groups(n) : [&] { AdamGroups g; g.add(n, 3e-4f); return g; }();
      AdamSettings cfg;
      struct Side {
        BackendArray<float> p, g, m, v, target;
        AdamScalars* s;
        float* norm;
      };
      auto make_side = [&](Ops& o) {
        return Side{BackendArray<float>(o, p0), BackendArray<float>(o, g0),
                    BackendArray<float>(o, n), BackendArray<float>(o, n),
                    BackendArray<float>(o, normals(n, 3, 0.02f)),
                    o.alloc<AdamScalars>(1), o.alloc<float>(1)};
      };
      Side a = make_side(*ref), b = make_side(*gpu);
      // Three updates: clip (max_norm well below the norm, so the scale matters), Adam, Polyak.
      for (int step = 0; step < 3; ++step) {
        for (auto [o, sd] : {std::pair<Ops*, Side*>{ref.get(), &a}, {gpu.get(), &b}}) {
          o->copy_to_backend(sd->g.p, g0.data(), n * sizeof(float));
          o->clip_grad_norm(sd->g.p, n, 0.5f * std::sqrt(float(n)), sd->norm);
          o->adam_update(cfg, groups, sd->p.p, sd->g.p, sd->m.p, sd->v.p, sd->s);
          o->polyak(sd->target.p, sd->p.p, n, 0.01f);
        }
      }
      float norm_a, norm_b;
      AdamScalars sa, sb;
      ref->copy_to_host(&norm_a, a.norm, sizeof(float));
      gpu->copy_to_host(&norm_b, b.norm, sizeof(float));
      ref->copy_to_host(&sa, a.s, sizeof sa);
      gpu->copy_to_host(&sb, b.s, sizeof sb);
      CHECK(sb.step == 3);
      CHECK(sb.step == sa.step);
      CHECK(sb.bias1 == sa.bias1);  // both computed in double and rounded once
      CHECK(sb.bias2 == sa.bias2);
      // The norm: double accumulation on both sides, different order -> float rounding only.
      CHECK(norm_b == doctest::Approx(norm_a).epsilon(1e-6));
      // Elementwise results: a few ulps from FMA contraction and sqrt/div rounding on the GPU.
      CHECK(pompc::test::check_close("grad", b.g.get(), a.g.get(), 1e-7, 1e-6));
      CHECK(pompc::test::check_close("m", b.m.get(), a.m.get(), 1e-9, 1e-5));
      CHECK(pompc::test::check_close("v", b.v.get(), a.v.get(), 1e-12, 1e-5));
      CHECK(pompc::test::check_close("param", b.p.get(), a.p.get(), 1e-7, 1e-5));
      CHECK(pompc::test::check_close("target", b.target.get(), a.target.get(), 1e-7, 1e-5));
      for (Side* sd : {&a, &b}) {
        Ops& o = sd == &a ? *ref : *gpu;
        o.free_bytes(sd->s);
        o.free_bytes(sd->norm);
      }
    }
  }
}
