// src/model/mlp.cpp: forward / backward of TD-MPC2's mlp on the Ops interface. Run book: mlp.h.
#include "model/mlp.h"

#include "common.h"

namespace pompc::model {
namespace {

constexpr size_t kAlignFloats = 64;  // 256 bytes: every carved buffer starts aligned

bool normed(const Layer& l) {
  return l.act != Act::linear;
}

}  // namespace

size_t Mlp::param_count() const {
  size_t n = 0;
  for (const Layer& l : layers) {
    const size_t per_head = static_cast<size_t>(l.out) * l.in + l.out + (normed(l) ? 2 * l.out : 0);
    n += per_head * groups;
  }
  return n;
}

void Arena::add(float** p, size_t n) {
  req_.emplace_back(p, n);
}

size_t Arena::floats() const {
  size_t total = 0;
  for (const auto& r : req_) total += (r.second + kAlignFloats - 1) / kAlignFloats * kAlignFloats;
  return total;
}

float* Arena::allocate(Ops& ops) {
  const size_t total = floats();
  float* base = ops.alloc<float>(total > 0 ? total : 1);
  size_t at = 0;
  for (const auto& r : req_) {
    *r.first = base + at;
    at += (r.second + kAlignFloats - 1) / kAlignFloats * kAlignFloats;
  }
  req_.clear();
  return base;
}

void reserve_acts(Arena& arena, const Mlp& mlp, int rows, bool saved, MlpActs* acts) {
  const size_t L = mlp.layers.size();
  acts->rows = rows;
  acts->saved = saved;
  acts->pre.assign(L, nullptr);
  acts->mean.assign(L, nullptr);
  acts->rstd.assign(L, nullptr);
  acts->out.assign(L, nullptr);
  const size_t gr = static_cast<size_t>(mlp.groups) * rows;
  for (size_t l = 0; l < L; ++l) {
    const Layer& ly = mlp.layers[l];
    arena.add(&acts->out[l], gr * ly.out);
    if (!normed(ly)) continue;
    arena.add(&acts->pre[l], gr * ly.out);
    if (saved) {
      arena.add(&acts->mean[l], gr);
      arena.add(&acts->rstd[l], gr);
    }
  }
}

void reserve_grads(Arena& arena, const Mlp& mlp, int rows, MlpGrads* grads) {
  const size_t L = mlp.layers.size();
  grads->rows = rows;
  grads->dpre.assign(L, nullptr);
  grads->dout.assign(L, nullptr);
  const size_t gr = static_cast<size_t>(mlp.groups) * rows;
  for (size_t l = 0; l < L; ++l) {
    const Layer& ly = mlp.layers[l];
    if (l + 1 < L) arena.add(&grads->dout[l], gr * ly.out);
    if (normed(ly)) arena.add(&grads->dpre[l], gr * ly.out);
  }
}

const float* last_bias(const Mlp& mlp, const float* params) {
  const Layer& ly = mlp.layers.back();
  POMPC_REQUIRE(!normed(ly), "%s: its last layer's bias belongs to its LayerNorm",
                mlp.name.c_str());
  return params + ly.bias;
}

void mlp_forward(Ops& ops, const Mlp& mlp, const float* params, const float* x, int rows,
                 const MlpActs& acts, float* final_out, const Dropout& drop, LastBias last_bias,
                 const RowLayout& final_rows, int64_t x_ld) {
  POMPC_REQUIRE(rows >= 0 && rows <= acts.rows,
                "%s: %d rows exceed the %d rows its workspace was sized for (raise max_rows)",
                mlp.name.c_str(), rows, acts.rows);
  POMPC_REQUIRE(last_bias == LastBias::add || !normed(mlp.layers.back()),
                "%s: its last layer's bias belongs to its LayerNorm and cannot be left out",
                mlp.name.c_str());
  const bool dense = final_rows.ld == 0 && final_rows.group_stride == 0;
  POMPC_REQUIRE(dense || (final_out != nullptr && normed(mlp.layers.back())),
                "%s: a strided output needs final_out and a last NormedLinear (its LayerNorm "
                "writes the rows)",
                mlp.name.c_str());
  const int G = mlp.groups;
  POMPC_REQUIRE(x_ld == 0 || G == 1, "%s: a strided input (x_ld %lld) needs a single network",
                mlp.name.c_str(), static_cast<long long>(x_ld));
  const size_t L = mlp.layers.size();
  const float* inp = x;
  for (size_t l = 0; l < L; ++l) {
    const Layer& ly = mlp.layers[l];
    const bool last = l + 1 == L;
    float* out = (last && final_out != nullptr) ? final_out : acts.out[l];
    const RowLayout out_rows = last ? final_rows : RowLayout{};
    const int64_t ld_in = l == 0 ? x_ld : 0;
    const bool shared = (l == 0);
    if (!normed(ly)) {
      const float* bias = last && last_bias == LastBias::leave ? nullptr : params + ly.bias;
      if (G == 1)
        ops.linear_forward(out, inp, params + ly.weight, bias, rows, ly.in, ly.out, ld_in);
      else
        ops.linear_ensemble_forward(out, inp, params + ly.weight, bias, G, rows, ly.in, ly.out,
                                    shared);
    } else {
      if (G == 1)
        ops.linear_forward(acts.pre[l], inp, params + ly.weight, nullptr, rows, ly.in, ly.out,
                           ld_in);
      else
        ops.linear_ensemble_forward(acts.pre[l], inp, params + ly.weight, nullptr, G, rows, ly.in,
                                    ly.out, shared);
      if (ly.act == Act::simnorm)
        ops.layernorm_simnorm_forward(out, acts.mean[l], acts.rstd[l], acts.pre[l],
                                      params + ly.bias, params + ly.gamma, params + ly.beta,
                                      G * rows, ly.out, G, out_rows);
      else
        ops.layernorm_mish_forward(out, acts.mean[l], acts.rstd[l], acts.pre[l], params + ly.bias,
                                   params + ly.gamma, params + ly.beta, G * rows, ly.out, G,
                                   ly.dropout ? drop : Dropout{}, out_rows);
    }
    inp = out;
  }
}

void mlp_backward(Ops& ops, const Mlp& mlp, const float* params, float* grads, const float* x,
                  int rows, const MlpActs& acts, const float* dfinal, const MlpGrads& g, float* dx,
                  const Dropout& drop) {
  POMPC_REQUIRE(acts.saved, "%s: backward needs a forward that saved its statistics",
                mlp.name.c_str());
  POMPC_REQUIRE(rows >= 0 && rows <= acts.rows && rows <= g.rows,
                "%s: backward at %d rows exceeds its workspace (%d rows)", mlp.name.c_str(), rows,
                acts.rows < g.rows ? acts.rows : g.rows);
  const int G = mlp.groups;
  const size_t L = mlp.layers.size();
  auto grad = [&](size_t off) { return grads ? grads + off : nullptr; };
  for (size_t l = L; l-- > 0;) {
    const Layer& ly = mlp.layers[l];
    const float* dy = (l + 1 == L) ? dfinal : g.dout[l];
    const float* inp = (l == 0) ? x : acts.out[l - 1];
    float* dinp = (l == 0) ? dx : g.dout[l - 1];
    const bool shared = (l == 0);
    const float* dlin = dy;  // gradient w.r.t. the Linear's output
    if (normed(ly)) {
      if (ly.act == Act::simnorm)
        ops.layernorm_simnorm_backward(g.dpre[l], grad(ly.bias), grad(ly.gamma), grad(ly.beta), dy,
                                       acts.pre[l], params + ly.bias, params + ly.gamma,
                                       params + ly.beta, acts.mean[l], acts.rstd[l], G * rows,
                                       ly.out, G);
      else
        ops.layernorm_mish_backward(g.dpre[l], grad(ly.bias), grad(ly.gamma), grad(ly.beta), dy,
                                    acts.pre[l], params + ly.bias, params + ly.gamma,
                                    params + ly.beta, acts.mean[l], acts.rstd[l], G * rows, ly.out,
                                    G, ly.dropout ? drop : Dropout{});
      dlin = g.dpre[l];
    }
    if (dinp == nullptr && grads == nullptr) continue;
    float* dbias = normed(ly) ? nullptr : grad(ly.bias);
    if (G == 1)
      ops.linear_backward(dinp, grad(ly.weight), dbias, dlin, inp, params + ly.weight, rows, ly.in,
                          ly.out);
    else
      ops.linear_ensemble_backward(dinp, grad(ly.weight), dbias, dlin, inp, params + ly.weight, G,
                                   rows, ly.in, ly.out, shared);
  }
}

}  // namespace pompc::model
