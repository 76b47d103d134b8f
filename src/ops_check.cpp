// src/ops_check.cpp: pompc check (run book: src/ops_check.h).
#include "ops_check.h"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <functional>
#include <vector>

#include "common.h"
#include "philox.cuh"

namespace pompc {
namespace {

constexpr double kU = 0x1p-24;  // fp32 unit roundoff

double rtol_for(double K) { return 16 * std::sqrt(K) * kU + 64 * kU; }

// Buffers that exist on both backends with the same initial contents; ops run on each side in
// turn and outputs are compared element by element.
class Checker {
 public:
  Checker(Ops& backend, Ops& reference, std::vector<OpCheckRow>& rows)
      : ops_{&backend, &reference}, rows_(rows) {}
  ~Checker() {
    for (Buf& b : bufs_)
      for (int s = 0; s < 2; ++s) ops_[s]->free_bytes(b.p[s]);
  }
  Checker(const Checker&) = delete;
  Checker& operator=(const Checker&) = delete;

  // A float buffer of n values shift + scale N(0, 1) (scale 0: all `shift`).
  int f32(size_t n, float scale = 1.0f, float shift = 0.0f) {
    std::vector<float> h(n);
    const uint64_t stream = next_stream_++;
    for (size_t i = 0; i < n; ++i) h[i] = shift + scale * philox_normal(20251207, stream, i);
    return add(h.data(), n * sizeof(float));
  }
  // Uniform in [lo, hi).
  int uniform(size_t n, float lo, float hi) {
    std::vector<float> h(n);
    const uint64_t stream = next_stream_++;
    for (size_t i = 0; i < n; ++i) h[i] = lo + (hi - lo) * philox_uniform(20251207, stream, i);
    return add(h.data(), n * sizeof(float));
  }
  int host_f32(const std::vector<float>& h) { return add(h.data(), h.size() * sizeof(float)); }
  int bytes(const void* h, size_t n) { return add(h, n); }

  float* f(int h, int side) { return static_cast<float*>(bufs_[size_t(h)].p[side]); }
  int32_t* i32(int h, int side) { return static_cast<int32_t*>(bufs_[size_t(h)].p[side]); }
  uint8_t* u8(int h, int side) { return static_cast<uint8_t*>(bufs_[size_t(h)].p[side]); }
  template <typename T>
  T* as(int h, int side) {
    return static_cast<T*>(bufs_[size_t(h)].p[side]);
  }

  // Runs `body` on the backend (side 0), then on the reference (side 1).
  void run(const std::function<void(Ops&, int)>& body) {
    for (int s = 0; s < 2; ++s) {
      body(*ops_[s], s);
      ops_[s]->synchronize();
    }
  }

  // One row: the largest normalised error of float output h (n values) against tolerance
  // rtol_for(K); exact: it must match bit for bit.
  void expect(const std::string& op, const std::string& shape, int h, size_t n, double K,
              bool exact = false) {
    std::vector<float> got(n), ref(n);
    ops_[0]->copy_to_host(got.data(), bufs_[size_t(h)].p[0], n * sizeof(float));
    ops_[1]->copy_to_host(ref.data(), bufs_[size_t(h)].p[1], n * sizeof(float));
    double rms = 0;
    for (float r : ref) rms += double(r) * r;
    rms = std::sqrt(rms / double(std::max<size_t>(n, 1)));
    double worst = 0;
    for (size_t i = 0; i < n; ++i) {
      const double d = std::fabs(double(got[i]) - ref[i]);
      if (std::isnan(got[i]) != std::isnan(ref[i])) {
        worst = INFINITY;
        break;
      }
      if (std::isnan(ref[i]) || d == 0) continue;
      worst = std::max(worst, d / (std::fabs(double(ref[i])) + rms + 1e-30));
    }
    OpCheckRow row;
    row.op = op;
    row.shape = shape;
    row.max_err = worst;
    row.tol = exact ? 0 : rtol_for(K);
    row.ok = worst <= row.tol;
    rows_.push_back(row);
  }
  // Integer output: exact.
  void expect_i32(const std::string& op, const std::string& shape, int h, size_t n) {
    std::vector<int32_t> got(n), ref(n);
    ops_[0]->copy_to_host(got.data(), bufs_[size_t(h)].p[0], n * sizeof(int32_t));
    ops_[1]->copy_to_host(ref.data(), bufs_[size_t(h)].p[1], n * sizeof(int32_t));
    size_t differ = 0;
    for (size_t i = 0; i < n; ++i) differ += got[i] != ref[i];
    OpCheckRow row;
    row.op = op;
    row.shape = shape;
    row.max_err = double(differ);
    row.tol = 0;
    row.ok = differ == 0;
    rows_.push_back(row);
  }

 private:
  struct Buf {
    void* p[2];
  };
  int add(const void* host, size_t n) {
    Buf b{};
    for (int s = 0; s < 2; ++s) {
      b.p[s] = ops_[s]->alloc_bytes(n ? n : 1);
      if (n) ops_[s]->copy_to_backend(b.p[s], host, n);
    }
    bufs_.push_back(b);
    return int(bufs_.size()) - 1;
  }
  Ops* ops_[2];
  std::vector<OpCheckRow>& rows_;
  std::vector<Buf> bufs_;
  uint64_t next_stream_ = 1;
};

// The sizes one pass of the check uses.
struct Sizes {
  const char* name;
  int B, H, N, E, P, S, Z, M, O, A, K, Qn;
  size_t params;  // the optimizer's buffer (dog 5M: the model's trainable parameters)
};

std::string dims(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string dims(const char* fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

void check_optim(Ops& g, Ops& r, const Sizes& z, std::vector<OpCheckRow>& rows) {
  const size_t n = z.params;
  const std::string shape = dims("n %zu", n);
  Checker c(g, r, rows);
  const int p = c.f32(n, 0.02f), grad = c.f32(n), m = c.f32(n, 0.01f), v = c.uniform(n, 0, 1e-4f),
            norm = c.f32(1), target = c.f32(n, 0.02f);
  const AdamScalars s0{7, 1 - std::pow(0.9f, 7.0f), 1 - std::pow(0.999f, 7.0f)};
  const int s = c.bytes(&s0, sizeof s0);
  AdamGroups groups;
  groups.add(n / 4, 0.3f * 3e-4f);
  groups.add(n - n / 4, 3e-4f);
  c.run([&](Ops& o, int k) {
    o.clip_grad_norm(c.f(grad, k), n, 20.0f, c.f(norm, k));
    o.adam_update(AdamSettings{}, groups, c.f(p, k), c.f(grad, k), c.f(m, k), c.f(v, k),
                  c.as<AdamScalars>(s, k));
    o.polyak(c.f(target, k), c.f(p, k), n, 0.01f);
  });
  c.expect("clip_grad_norm norm", shape, norm, 1, double(n));
  c.expect("clip_grad_norm grad", shape, grad, n, double(n));
  c.expect("adam_update param", shape, p, n, double(n));
  c.expect("adam_update m", shape, m, n, double(n));
  c.expect("adam_update v", shape, v, n, double(n));
  c.expect("polyak", shape, target, n, double(n));
}

void check_nn(Ops& g, Ops& r, const Sizes& z, std::vector<OpCheckRow>& rows) {
  const int rows_bh = z.B * (z.H + 1);
  {  // linear forward/backward: encoder's first layer (O -> M)
    Checker c(g, r, rows);
    const int B = rows_bh, in = z.O, out = z.M;
    const int x = c.f32(size_t(B) * in), w = c.f32(size_t(out) * in, 0.05f), bias = c.f32(out),
              y = c.f32(size_t(B) * out), dy = c.f32(size_t(B) * out), dx = c.f32(size_t(B) * in),
              dw = c.f32(size_t(out) * in), db = c.f32(out), xs = c.f32(size_t(B) * (in + 5)),
              ys = c.f32(size_t(B) * out);
    c.run([&](Ops& o, int s) {
      o.linear_forward(c.f(y, s), c.f(x, s), c.f(w, s), c.f(bias, s), B, in, out);
      o.linear_forward(c.f(ys, s), c.f(xs, s), c.f(w, s), c.f(bias, s), B, in, out, in + 5);
      o.linear_backward(c.f(dx, s), c.f(dw, s), c.f(db, s), c.f(dy, s), c.f(x, s), c.f(w, s), B,
                        in, out);
    });
    const std::string sh = dims("B %d, %d -> %d", B, in, out);
    c.expect("linear_forward", sh, y, size_t(B) * out, in);
    c.expect("linear_forward (input rows of stride in + 5)", sh, ys, size_t(B) * out, in);
    c.expect("linear_backward dinp", sh, dx, size_t(B) * in, out);
    c.expect("linear_backward dweight", sh, dw, size_t(out) * in, B);
    c.expect("linear_backward dbias", sh, db, out, B);
  }
  {  // linear_ensemble: the Q heads' first layer (shared input) and a later one
    for (bool shared : {true, false}) {
      Checker c(g, r, rows);
      const int B = rows_bh, Qn = z.Qn, in = shared ? z.Z + z.A : z.M, out = z.M;
      const size_t xin = size_t(shared ? 1 : Qn) * B * in;
      const int x = c.f32(xin), w = c.f32(size_t(Qn) * out * in, 0.05f),
                bias = c.f32(size_t(Qn) * out), y = c.f32(size_t(Qn) * B * out),
                dy = c.f32(size_t(Qn) * B * out), dx = c.f32(xin), dw = c.f32(size_t(Qn) * out * in),
                db = c.f32(size_t(Qn) * out);
      c.run([&](Ops& o, int s) {
        o.linear_ensemble_forward(c.f(y, s), c.f(x, s), c.f(w, s), c.f(bias, s), Qn, B, in, out,
                                  shared);
        o.linear_ensemble_backward(c.f(dx, s), c.f(dw, s), c.f(db, s), c.f(dy, s), c.f(x, s),
                                   c.f(w, s), Qn, B, in, out, shared);
      });
      const std::string sh = dims("Qn %d B %d, %d -> %d%s", Qn, B, in, out,
                                  shared ? ", shared input" : "");
      c.expect("linear_ensemble_forward", sh, y, size_t(Qn) * B * out, in);
      c.expect("linear_ensemble_backward dinp", sh, dx, xin, double(out) * (shared ? Qn : 1));
      c.expect("linear_ensemble_backward dweight", sh, dw, size_t(Qn) * out * in, B);
      c.expect("linear_ensemble_backward dbias", sh, db, size_t(Qn) * out, B);
    }
  }
  // LayerNorm + Mish (a hidden layer, with dropout) and + SimNorm (a latent), forward then
  // backward on each side's own mean / rstd.
  for (int simnorm = 0; simnorm < 2; ++simnorm) {
    Checker c(g, r, rows);
    const int groups = simnorm ? 1 : z.Qn, rows_n = rows_bh * groups, C = simnorm ? z.Z : z.M;
    const int inp = c.f32(size_t(rows_n) * C), bias = c.f32(size_t(groups) * C),
              gamma = c.f32(size_t(groups) * C, 0.1f, 1.0f), beta = c.f32(size_t(groups) * C, 0.1f),
              out = c.f32(size_t(rows_n) * C), mean = c.f32(rows_n), rstd = c.f32(rows_n),
              dout = c.f32(size_t(rows_n) * C), dinp = c.f32(size_t(rows_n) * C),
              dbias = c.f32(size_t(groups) * C), dgamma = c.f32(size_t(groups) * C),
              dbeta = c.f32(size_t(groups) * C);
    // The same forward into rows of stride C + 3, each group 2 rows further on (RowLayout).
    const int per = rows_n / groups;
    const RowLayout strided{C + 3, int64_t(per + 2) * (C + 3)};
    const size_t span = size_t(groups) * size_t(strided.group_stride);
    const int out_s = c.f32(span);
    const Dropout drop{0.01f, 3, 5};
    c.run([&](Ops& o, int s) {
      if (simnorm) {
        o.layernorm_simnorm_forward(c.f(out, s), c.f(mean, s), c.f(rstd, s), c.f(inp, s),
                                    c.f(bias, s), c.f(gamma, s), c.f(beta, s), rows_n, C, groups);
        o.layernorm_simnorm_forward(c.f(out_s, s), nullptr, nullptr, c.f(inp, s), c.f(bias, s),
                                    c.f(gamma, s), c.f(beta, s), rows_n, C, groups, strided);
        o.layernorm_simnorm_backward(c.f(dinp, s), c.f(dbias, s), c.f(dgamma, s), c.f(dbeta, s),
                                     c.f(dout, s), c.f(inp, s), c.f(bias, s), c.f(gamma, s),
                                     c.f(beta, s), c.f(mean, s), c.f(rstd, s), rows_n, C, groups);
      } else {
        o.layernorm_mish_forward(c.f(out, s), c.f(mean, s), c.f(rstd, s), c.f(inp, s),
                                 c.f(bias, s), c.f(gamma, s), c.f(beta, s), rows_n, C, groups, drop);
        o.layernorm_mish_forward(c.f(out_s, s), nullptr, nullptr, c.f(inp, s), c.f(bias, s),
                                 c.f(gamma, s), c.f(beta, s), rows_n, C, groups, drop, strided);
        o.layernorm_mish_backward(c.f(dinp, s), c.f(dbias, s), c.f(dgamma, s), c.f(dbeta, s),
                                  c.f(dout, s), c.f(inp, s), c.f(bias, s), c.f(gamma, s),
                                  c.f(beta, s), c.f(mean, s), c.f(rstd, s), rows_n, C, groups,
                                  drop);
      }
    });
    const std::string name = simnorm ? "layernorm_simnorm" : "layernorm_mish";
    const std::string sh = dims("rows %d C %d groups %d", rows_n, C, groups);
    const size_t RC = size_t(rows_n) * C, GC = size_t(groups) * C;
    c.expect(name + "_forward out", sh, out, RC, C);
    c.expect(name + "_forward out (rows of stride C + 3, groups 2 rows apart)", sh, out_s, span, C);
    c.expect(name + "_forward mean", sh, mean, rows_n, C);
    c.expect(name + "_forward rstd", sh, rstd, rows_n, C);
    c.expect(name + "_backward dinp", sh, dinp, RC, C);
    c.expect(name + "_backward dbias", sh, dbias, GC, double(rows_n) / groups);
    c.expect(name + "_backward dgamma", sh, dgamma, GC, double(rows_n) / groups);
    c.expect(name + "_backward dbeta", sh, dbeta, GC, double(rows_n) / groups);
  }
}

void check_basic(Ops& g, Ops& r, const Sizes& z, std::vector<OpCheckRow>& rows) {
  const int R = z.B * z.H, n1 = z.Z, n2 = z.A;
  Checker c(g, r, rows);
  const size_t n = size_t(R) * z.Z;
  const int x1 = c.f32(size_t(R) * n1), x2 = c.f32(size_t(R) * n2),
            cat = c.f32(size_t(R) * (n1 + n2)), dcat = c.f32(size_t(R) * (n1 + n2)),
            dx1 = c.f32(size_t(R) * n1), dx2 = c.f32(size_t(R) * n2),
            rows_out = c.f32(size_t(R) * n1), rep = c.f32(size_t(z.S) * z.N * n1), pred = c.f32(n),
            target = c.f32(n), loss = c.f32(1), dpred = c.f32(n), fillb = c.f32(n), y = c.f32(n),
            terms = c.f32(4 * n), terms2 = c.f32(4 * n), sloss = c.f32(4), sdpred = c.f32(4 * n),
            dsum = c.f32(n), sum = c.f32(1), w = c.f32(n), divisor = c.uniform(1, 1, 3),
            ex = c.f32(n), gate = c.f32(1), scale = c.uniform(1, 0.5f, 4), rs = c.uniform(1, 1, 2),
            q = c.f32(size_t(z.Qn) * R), sel = c.f32(R), dsel = c.f32(R),
            dq = c.f32(size_t(z.Qn) * R);
  // gather_pair: two tensors of the Q ensemble (a weight of M x 33 and a bias of M per head).
  PairGather pg;
  pg.Qn = z.Qn;
  pg.tensors = 2;
  pg.src[1] = int64_t(z.Qn) * z.M * 33;
  pg.dst[1] = int64_t(2) * z.M * 33;
  pg.per_head[0] = int64_t(z.M) * 33;
  pg.per_head[1] = z.M;
  const int32_t no_heads[2] = {-1, -1};
  const size_t pair_n = size_t(2) * z.M * 34;
  const int ens = c.f32(size_t(z.Qn) * z.M * 34), pair = c.f32(pair_n),
            heads = c.bytes(no_heads, sizeof no_heads);
  c.run([&](Ops& o, int s) {
    o.concat_forward(c.f(cat, s), c.f(x1, s), c.f(x2, s), R, n1, n2);
    o.concat_backward(c.f(dx1, s), c.f(dx2, s), c.f(dcat, s), R, n1, n2);
    o.copy_rows(c.f(rows_out, s), n1, c.f(cat, s), n1 + n2, R, n1);
    o.repeat_rows(c.f(rep, s), n1, c.f(x1, s), z.S, z.N, n1);
    o.mse_forward(c.f(loss, s), c.f(pred, s), c.f(target, s), int64_t(n));
    o.mse_backward(c.f(dpred, s), c.f(pred, s), c.f(target, s), 0.7f, int64_t(n));
    o.mse_segments_forward(c.f(sloss, s), c.f(terms, s), c.f(terms2, s), 4, int64_t(n));
    o.mse_segments_backward(c.f(sdpred, s), c.f(terms, s), c.f(terms2, s),
                            TermWeights{4, {0.5f, 0.25f, 0.125f, 1.0f}}, int64_t(n));
    o.fill(c.f(fillb, s), int64_t(n), 0.25f);
    o.scale_add(c.f(y, s), c.f(pred, s), int64_t(n), 0.5f, c.f(divisor, s), 0.9f);
    o.discounted_sum(c.f(dsum, s), c.f(terms, s), int64_t(n),
                     TermWeights{4, {1.0f, 0.99f, 0.9801f, 0.970299f}});
    o.weighted_sum(c.f(sum, s), c.f(pred, s), c.f(w, s), int64_t(n), 0.5f, c.f(divisor, s), 0.0f);
    o.exp_forward(c.f(ex, s), c.f(pred, s), int64_t(n));
    o.scale_gate(c.f(gate, s), c.f(scale, s), 2.0f);
    o.running_scale_update(c.f(rs, s), c.f(pred, s), R, 0.01f);
    o.pair_select_forward(c.f(sel, s), c.f(q, s), z.Qn, R, PairMode::min, 9, 4);
    o.pair_select_backward(c.f(dq, s), c.f(dsel, s), c.f(q, s), z.Qn, R, PairMode::avg, 9, 4);
    o.gather_pair(c.f(pair, s), c.i32(heads, s), c.f(ens, s), pg, 9, 4);
  });
  const std::string sh = dims("rows %d", R);
  c.expect("concat_forward", sh, cat, size_t(R) * (n1 + n2), 1, true);
  c.expect("concat_backward dx1", sh, dx1, size_t(R) * n1, 1, true);
  c.expect("concat_backward dx2", sh, dx2, size_t(R) * n2, 1, true);
  c.expect("copy_rows", sh, rows_out, size_t(R) * n1, 1, true);
  c.expect("repeat_rows", dims("S %d N %d", z.S, z.N), rep, size_t(z.S) * z.N * n1, 1, true);
  c.expect("mse_forward", dims("n %zu", n), loss, 1, double(n));
  c.expect("mse_backward", dims("n %zu", n), dpred, n, 1);
  c.expect("mse_segments_forward", dims("T 4 n %zu", n), sloss, 4, double(n));
  c.expect("mse_segments_backward", dims("T 4 n %zu", n), sdpred, 4 * n, 1);
  c.expect("fill", dims("n %zu", n), fillb, n, 1, true);
  c.expect("scale_add", dims("n %zu", n), y, n, 1);
  c.expect("discounted_sum", dims("T 4 n %zu", n), dsum, n, 1, true);
  c.expect("weighted_sum", dims("n %zu", n), sum, 1, double(n));
  c.expect("exp_forward", dims("n %zu", n), ex, n, 1);
  c.expect("scale_gate", "1", gate, 1, 1, true);
  c.expect("running_scale_update", sh, rs, 1, R);
  c.expect("pair_select_forward (min)", dims("Qn %d rows %d", z.Qn, R), sel, R, 1);
  c.expect("pair_select_backward (avg)", dims("Qn %d rows %d", z.Qn, R), dq, size_t(z.Qn) * R, 1);
  c.expect("gather_pair", dims("Qn %d M %d", z.Qn, z.M), pair, pair_n, 1, true);
}

void check_heads(Ops& g, Ops& r, const Sizes& z, std::vector<OpCheckRow>& rows) {
  const Bins bins;
  const int R = z.B * z.H, K = bins.num_bins;
  {  // two-hot regression heads
    Checker c(g, r, rows);
    const int logits = c.f32(size_t(R) * K), x = c.f32(R, 3.0f), loss = c.f32(R), dloss = c.f32(R),
              dl = c.f32(size_t(R) * K), inv = c.f32(R), dinv = c.f32(R),
              dl2 = c.f32(size_t(R) * K), qlogits = c.f32(size_t(z.Qn) * R * K), qpair = c.f32(R),
              hloss = c.f32(size_t(z.Qn) * R), hdl = c.f32(size_t(z.Qn) * R * K), kb = c.f32(K),
              qb = c.f32(size_t(z.Qn) * K), invb = c.f32(R), qpairb = c.f32(R);
    c.run([&](Ops& o, int s) {
      o.soft_ce_forward(c.f(loss, s), c.f(logits, s), c.f(x, s), R, bins);
      o.soft_ce_backward(c.f(dl, s), c.f(dloss, s), c.f(logits, s), c.f(x, s), R, bins);
      o.two_hot_inv_forward(c.f(inv, s), c.f(logits, s), nullptr, R, bins);
      o.two_hot_inv_forward(c.f(invb, s), c.f(logits, s), c.f(kb, s), R, bins);
      o.two_hot_inv_backward(c.f(dl2, s), c.f(dinv, s), c.f(logits, s), R, bins);
      o.soft_ce_heads_forward(c.f(hloss, s), c.f(qlogits, s), c.f(x, s), z.Qn, R, bins);
      o.soft_ce_heads_backward(c.f(hdl, s), c.f(dloss, s), c.f(qlogits, s), c.f(x, s), z.Qn, R,
                               bins);
      o.two_hot_inv_pair_forward(c.f(qpair, s), c.f(qlogits, s), nullptr, z.Qn, R, bins,
                                 PairMode::avg, 9, 4);
      o.two_hot_inv_pair_forward(c.f(qpairb, s), c.f(qlogits, s), c.f(qb, s), z.Qn, R, bins,
                                 PairMode::min, 9, 5);
    });
    const std::string sh = dims("rows %d K %d", R, K);
    c.expect("soft_ce_forward", sh, loss, R, K);
    c.expect("soft_ce_backward", sh, dl, size_t(R) * K, K);
    c.expect("two_hot_inv_forward", sh, inv, R, K);
    c.expect("two_hot_inv_forward (bias)", sh, invb, R, K);
    c.expect("two_hot_inv_backward", sh, dl2, size_t(R) * K, K);
    const std::string hs = dims("heads %d rows %d K %d", z.Qn, R, K);
    c.expect("soft_ce_heads_forward", hs, hloss, size_t(z.Qn) * R, K);
    c.expect("soft_ce_heads_backward", hs, hdl, size_t(z.Qn) * R * K, K);
    c.expect("two_hot_inv_pair_forward (avg)", dims("Qn %d rows %d K %d", z.Qn, R, K), qpair, R, K);
    c.expect("two_hot_inv_pair_forward (min, bias)", dims("Qn %d rows %d K %d", z.Qn, R, K), qpairb,
             R, K);
  }
  // Policy heads: TD-MPC2's squashed form (both entropy forms) and BMPC's clamped form.
  const PolicyHead heads[] = {PolicyHead{-10, 2, EntropyForm::paper, PolicyForm::squashed},
                              PolicyHead{-10, 2, EntropyForm::current, PolicyForm::squashed},
                              PolicyHead{-3, 1, EntropyForm::paper, PolicyForm::clamped}};
  const char* names[] = {"squashed, paper", "squashed, current", "clamped"};
  for (int h = 0; h < 3; ++h) {
    Checker c(g, r, rows);
    const int B = z.B * (z.H + 1), A = z.A;
    const size_t BA = size_t(B) * A;
    const int raw = c.f32(2 * BA), raw_prior = c.f32(2 * BA), act = c.f32(BA), mu = c.f32(BA),
              ls = c.f32(BA), lpi = c.f32(B), lprob = c.f32(B), dact = c.f32(BA), dmu = c.f32(BA),
              dls = c.f32(BA), dlpi = c.f32(B), draw = c.f32(2 * BA), ratio = c.f32(B),
              bias = c.f32(2 * size_t(A)), actb = c.f32(BA), lpib = c.f32(B),
              acts = c.f32(size_t(B) * (A + 4));
    c.run([&](Ops& o, int s) {
      o.policy_head_forward(c.f(act, s), c.f(mu, s), c.f(ls, s), c.f(lpi, s), c.f(lprob, s),
                            c.f(raw, s), nullptr, B, A, heads[h], 11, 7);
      o.policy_head_forward(c.f(actb, s), nullptr, nullptr, c.f(lpib, s), nullptr, c.f(raw, s),
                            c.f(bias, s), B, A, heads[h], 11, 8);
      o.policy_head_forward(c.f(acts, s) + 4, nullptr, nullptr, nullptr, nullptr, c.f(raw, s),
                            nullptr, B, A, heads[h], 11, 7, A + 4);
      o.policy_head_backward(c.f(draw, s), c.f(dact, s), c.f(dmu, s), c.f(dls, s), c.f(dlpi, s),
                             c.f(raw, s), B, A, heads[h], 11, 7);
      o.policy_log_ratio(c.f(ratio, s), c.f(raw, s), c.f(raw_prior, s), B, A, heads[h], 11, 7);
    });
    const std::string sh = dims("B %d A %d, %s", B, A, names[h]);
    c.expect("policy_head_forward action", sh, act, BA, 1);
    c.expect("policy_head_forward mu", sh, mu, BA, 1);
    c.expect("policy_head_forward log_std", sh, ls, BA, 1);
    c.expect("policy_head_forward log_pi", sh, lpi, B, A);
    c.expect("policy_head_forward log_prob", sh, lprob, B, A);
    c.expect("policy_head_forward action (bias)", sh, actb, BA, 1);
    c.expect("policy_head_forward log_pi (bias)", sh, lpib, B, A);
    c.expect("policy_head_forward action (rows of stride A + 4)", sh, acts, size_t(B) * (A + 4), 1);
    c.expect("policy_head_backward", sh, draw, 2 * BA, A);
    c.expect("policy_log_ratio", sh, ratio, B, A);
  }
}

void check_prior(Ops& g, Ops& r, const Sizes& z, std::vector<OpCheckRow>& rows) {
  const int R = z.B * z.H, A = z.A, S = 8;
  const size_t RA = size_t(R) * A;
  Checker c(g, r, rows);
  const int mu = c.uniform(RA, -0.9f, 0.9f), ls = c.uniform(RA, -2, 0.5f),
            mu_p = c.uniform(RA, -0.9f, 0.9f), sig_p = c.uniform(RA, 0.05f, 2),
            kl_r = c.f32(R), kl_f = c.f32(R), dout = c.f32(R), dmu = c.f32(RA), dls = c.f32(RA),
            dmu_f = c.f32(RA), dls_f = c.f32(RA), a = c.uniform(RA, -1, 1), nll = c.f32(R),
            da = c.f32(RA), ak = c.f32(size_t(S) * RA), qk = c.f32(size_t(S) * R, 2.0f),
            w = c.f32(size_t(S) * R), logz = c.f32(R), wnll = c.f32(R), dmu_w = c.f32(RA),
            dls_w = c.f32(RA);
  c.run([&](Ops& o, int s) {
    o.gauss_kl_forward(c.f(kl_r, s), c.f(mu, s), c.f(ls, s), c.f(mu_p, s), c.f(sig_p, s), R, A,
                       KlDir::reverse);
    o.gauss_kl_forward(c.f(kl_f, s), c.f(mu, s), c.f(ls, s), c.f(mu_p, s), c.f(sig_p, s), R, A,
                       KlDir::forward);
    o.gauss_kl_backward(c.f(dmu, s), c.f(dls, s), c.f(dout, s), c.f(mu, s), c.f(ls, s),
                        c.f(mu_p, s), c.f(sig_p, s), R, A, KlDir::reverse);
    o.gauss_kl_backward(c.f(dmu_f, s), c.f(dls_f, s), c.f(dout, s), c.f(mu, s), c.f(ls, s),
                        c.f(mu_p, s), c.f(sig_p, s), R, A, KlDir::forward);
    o.gauss_nll_forward(c.f(nll, s), c.f(a, s), c.f(mu_p, s), c.f(sig_p, s), R, A, 0.05f);
    o.gauss_nll_backward(c.f(da, s), c.f(dout, s), c.f(a, s), c.f(mu_p, s), c.f(sig_p, s), R, A,
                         0.05f);
    o.prior_sample(c.f(ak, s), c.f(mu_p, s), c.f(sig_p, s), S, R, A, 13, 2);
    o.sample_weights(c.f(w, s), c.f(logz, s), c.f(qk, s), S, R, 0.7f);
    o.weighted_nll_forward(c.f(wnll, s), c.f(ak, s), c.f(w, s), c.f(mu, s), c.f(ls, s), S, R, A);
    o.weighted_nll_backward(c.f(dmu_w, s), c.f(dls_w, s), c.f(dout, s), c.f(ak, s), c.f(w, s),
                            c.f(mu, s), c.f(ls, s), S, R, A);
  });
  const std::string sh = dims("rows %d A %d", R, A), shs = dims("S %d rows %d A %d", S, R, A);
  c.expect("gauss_kl_forward (reverse)", sh, kl_r, R, A);
  c.expect("gauss_kl_forward (forward)", sh, kl_f, R, A);
  c.expect("gauss_kl_backward dmu (reverse)", sh, dmu, RA, 1);
  c.expect("gauss_kl_backward dlog_std (reverse)", sh, dls, RA, 1);
  c.expect("gauss_kl_backward dmu (forward)", sh, dmu_f, RA, 1);
  c.expect("gauss_kl_backward dlog_std (forward)", sh, dls_f, RA, 1);
  c.expect("gauss_nll_forward", sh, nll, R, A);
  c.expect("gauss_nll_backward", sh, da, RA, 1);
  c.expect("prior_sample", shs, ak, size_t(S) * RA, 1);
  c.expect("sample_weights w", shs, w, size_t(S) * R, S);
  c.expect("sample_weights log_z", shs, logz, R, S);
  c.expect("weighted_nll_forward", shs, wnll, R, double(S) * A);
  c.expect("weighted_nll_backward dmu", shs, dmu_w, RA, S);
  c.expect("weighted_nll_backward dlog_std", shs, dls_w, RA, S);
}

void check_mppi(Ops& g, Ops& r, const Sizes& z, std::vector<OpCheckRow>& rows) {
  const MppiShape sh{z.S, z.H, z.N, z.P, z.E, z.A};
  const size_t SHA = size_t(z.S) * z.H * z.A, SN = size_t(z.S) * z.N, SE = size_t(z.S) * z.E;
  Checker c(g, r, rows);
  std::vector<uint8_t> first(size_t(z.S));
  for (int s = 0; s < z.S; ++s) first[size_t(s)] = s % 2;
  const int mean0 = c.f32(SHA), std0 = c.f32(SHA), mean = c.f32(SHA), stdv = c.f32(SHA),
            prev = c.uniform(SHA, -1, 1), fst = c.bytes(first.data(), first.size()),
            actions = c.f32(size_t(z.H) * SN * z.A), value = c.f32(SN, 5.0f),
            eidx = c.bytes(std::vector<int32_t>(SE).data(), SE * 4), evalue = c.f32(SE),
            score = c.f32(SE), act = c.f32(size_t(z.S) * z.A), mu_p = c.f32(size_t(z.S) * z.A),
            sig_p = c.f32(size_t(z.S) * z.A),
            eidx2 = c.bytes(std::vector<int32_t>(SE).data(), SE * 4), evalue2 = c.f32(SE),
            mean2 = c.f32(SHA), std2 = c.f32(SHA), score2 = c.f32(SE), value2 = c.f32(SN),
            returns = c.f32(2 * SN, 5.0f), actions2 = c.f32(size_t(z.H) * SN * z.A),
            rows_out = c.f32(size_t(z.H) * SN * (z.A + 3));
  c.run([&](Ops& o, int s) {
    o.mppi_init(c.f(mean0, s), c.f(std0, s), c.f(prev, s), c.u8(fst, s), sh, 2.0f);
    o.mppi_init(c.f(mean, s), c.f(stdv, s), c.f(prev, s), c.u8(fst, s), sh, 2.0f);
    o.mppi_sample(c.f(actions, s), c.f(mean, s), c.f(stdv, s), sh, 17, 3);
    o.mppi_sample(c.f(actions2, s), c.f(mean, s), c.f(stdv, s), sh, 17, 3, c.f(rows_out, s) + 3,
                  z.A + 3);
    o.mppi_elites_update(c.i32(eidx2, s), c.f(evalue2, s), c.f(mean2, s), c.f(std2, s),
                         c.f(score2, s), c.f(value2, s), c.f(returns, s),
                         TermWeights{2, {1.0f, 0.99f}}, c.f(actions, s), sh, 0.5f, 0.05f, 2.0f);
    o.mppi_elites(c.i32(eidx, s), c.f(evalue, s), c.f(value, s), sh);
    o.mppi_update(c.f(mean, s), c.f(stdv, s), c.f(score, s), c.f(actions, s), c.i32(eidx, s),
                  c.f(evalue, s), sh, 0.5f, 0.05f, 2.0f);
    o.mppi_select(c.f(act, s), c.f(mu_p, s), c.f(sig_p, s), c.f(actions, s), c.i32(eidx, s),
                  c.f(score, s), c.f(stdv, s), sh, true, 17, 9);
  });
  const std::string d = dims("S %d H %d N %d E %d A %d", z.S, z.H, z.N, z.E, z.A);
  c.expect("mppi_init mean", d, mean0, SHA, 1, true);
  c.expect("mppi_init std", d, std0, SHA, 1, true);
  c.expect("mppi_sample", d, actions, size_t(z.H) * SN * z.A, 1);
  c.expect("mppi_sample rows_out (stride A + 3)", d, rows_out, size_t(z.H) * SN * (z.A + 3), 1);
  c.expect_i32("mppi_elites indices", d, eidx, SE);
  c.expect("mppi_elites values", d, evalue, SE, 1, true);
  c.expect("mppi_update mean", d, mean, SHA, z.E);
  c.expect("mppi_update std", d, stdv, SHA, z.E);
  c.expect("mppi_update score", d, score, SE, z.E);
  c.expect("mppi_elites_update value", d, value2, SN, 1, true);
  c.expect_i32("mppi_elites_update indices", d, eidx2, SE);
  c.expect("mppi_elites_update mean", d, mean2, SHA, z.E);
  c.expect("mppi_elites_update std", d, std2, SHA, z.E);
  c.expect("mppi_elites_update score", d, score2, SE, z.E);
  c.expect("mppi_select action", d, act, size_t(z.S) * z.A, z.E);
  c.expect("mppi_select mu_p", d, mu_p, size_t(z.S) * z.A, 1);
  c.expect("mppi_select sigma_p", d, sig_p, size_t(z.S) * z.A, z.E);
}

}  // namespace

std::vector<OpCheckRow> check_ops(Ops& backend, Ops& reference, const std::string& which) {
  POMPC_REQUIRE(which == "dog" || which == "odd" || which == "all",
                "check: sizes=%s is not one of dog, odd, all", which.c_str());
  //               name      B    H  N    E   P   S  Z    M    O    A   K    Qn params
  const Sizes dog{"dog 5M", 256, 3, 512, 64, 24, 4, 512, 512, 223, 38, 101, 5, 5'159'082};
  const Sizes odd{"odd", 33, 3, 67, 7, 3, 3, 24, 40, 5, 1, 101, 2, 4'133};
  std::vector<Sizes> sizes;
  if (which != "dog") sizes.push_back(odd);
  if (which != "odd") sizes.push_back(dog);
  std::vector<OpCheckRow> rows;
  backend.set_tf32(false);
  for (const Sizes& z : sizes) {
    const size_t first = rows.size();
    check_optim(backend, reference, z, rows);
    check_nn(backend, reference, z, rows);
    check_basic(backend, reference, z, rows);
    check_heads(backend, reference, z, rows);
    check_prior(backend, reference, z, rows);
    check_mppi(backend, reference, z, rows);
    for (size_t i = first; i < rows.size(); ++i) rows[i].shape = std::string(z.name) + ": " + rows[i].shape;
  }
  // TF32: how far the CUDA backend's default GEMMs are from fp32 (informational tolerance:
  // 10-bit mantissas, 2^-11 relative per product, sqrt(K) growth): a Linear forward without a
  // bias, i.e. one GEMM (N,T) of [m, k] by [n, k].
  if (backend.backend() == Backend::cuda) {
    const Sizes& z = sizes.back();
    backend.set_tf32(true);
    Checker c(backend, reference, rows);
    const int m = z.B * (z.H + 1), n = z.M, k = z.Z + z.A;
    const int a = c.f32(size_t(m) * k), b = c.f32(size_t(n) * k), out = c.f32(size_t(m) * n);
    c.run([&](Ops& o, int s) {
      o.linear_forward(c.f(out, s), c.f(a, s), c.f(b, s), nullptr, m, k, n);
    });
    c.expect("linear_forward (no bias), TF32",
             std::string(z.name) + dims(": %d x %d x %d", m, n, k), out, size_t(m) * n, k);
    rows.back().tol = 4 * std::sqrt(double(k)) * 0x1p-11;
    rows.back().ok = rows.back().max_err <= rows.back().tol;
    backend.set_tf32(true);
  }
  return rows;
}

}  // namespace pompc
