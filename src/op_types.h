// src/op_types.h: the value types that appear in the op signatures of both backends (src/ops.h),
// and the few rules that both backends must compute bit-for-bit alike: the dropout mask, the Q
// ensemble's random pair, MPPI's Gumbel uniform, the two-hot bin centres and the argument checks
// that the reference ops (src/ref/) and the CUDA launchers (kernels/) share.
//
// The maths of each op lives in its family's run book (src/ref/<family>.h, same name as
// kernels/<family>.cu); this header only holds what both sides include. Everything here is in
// namespace pompc and is plain data or an inline function; the POMPC_HD ones also compile as
// device code (kernels/philox.cuh defines POMPC_HD).
//
// Test: build/test_emu -ts=ops -tc='dropout*,loss*,prior*,two_hot*'
#pragma once

#include <cstdint>

#include "common.h"
#include "philox.cuh"

namespace pompc {

// ---- layernorm (src/ref/layernorm.h) -----------------------------------------------------------

constexpr double kLayerNormEps = 1e-5;  // torch.nn.LayerNorm default, used by TD-MPC2
constexpr int kSimNormGroup = 8;        // SimNorm's group size (TD-MPC2 simnorm_dim)

struct Dropout {
  float p = 0.0f;       // drop probability in [0, 1); 0 disables dropout (eval / target nets)
  uint64_t seed = 0;    // Philox key
  PhiloxOffset offset;  // Philox stream: a different offset per use of the same seed
  // Null, or (for the two heads of an ensemble that gather_pair copied out) the ensemble head
  // each group of rows is, in the backend's memory: group g then draws the mask that head
  // heads[g] would draw in the whole ensemble (dropout_row), so two heads run alone drop
  // exactly what they drop among all Qn.
  const int32_t* heads = nullptr;
};

// The dropout rule of both backends: element i (flat index into [rows, C]) survives iff this
// returns true (PyTorch semantics: dropped with probability p; uniform in (0, 1]).
POMPC_HD bool dropout_keep(float p, uint64_t seed, uint64_t offset, uint64_t i) {
  return p <= 0.0f || philox_uniform(seed, offset, i) > p;
}

// The row whose mask row `row` of a grouped layer ([groups * per_group, C], group g = row /
// per_group) draws: itself, or with `heads` (Dropout::heads) the same row of head heads[g].
POMPC_HD int64_t dropout_row(const int32_t* heads, int64_t row, int per_group) {
  if (heads == nullptr) return row;
  const int64_t g = row / per_group;
  return row + (static_cast<int64_t>(heads[g]) - g) * per_group;
}

// Where a LayerNorm forward writes row r of its [rows, C] output (rows = groups * per_group):
// at out + (r / per_group) * group_stride + (r % per_group) * ld. Both 0 (the default) is dense:
// ld = C, group_stride = per_group * C. A strided layout writes into a slice of a larger buffer:
// the world model's rollout puts each step's reward rows beside the other steps' (rollout).
struct RowLayout {
  int64_t ld = 0;            // floats from a row to the next within a group (0: C)
  int64_t group_stride = 0;  // floats from a group's first row to the next group's (0: dense)

  POMPC_HD int64_t row_stride(int C) const { return ld != 0 ? ld : C; }
  POMPC_HD int64_t row(int64_t r, int per_group, int C) const {
    const int64_t l = row_stride(C);
    const int64_t gs = group_stride != 0 ? group_stride : per_group * l;
    return (r / per_group) * gs + (r % per_group) * l;
  }
};

// Checks a layout against [rows, C] in `groups` groups: rows that do not overlap.
inline void check_row_layout(const char* who, const RowLayout& o, int rows, int C, int groups) {
  POMPC_REQUIRE(o.ld == 0 || o.ld >= C, "%s: the output row stride (%lld) must be 0 or >= C (%d)",
                who, static_cast<long long>(o.ld), C);
  const int per_group = groups > 0 && rows > 0 ? rows / groups : 1;
  const int64_t l = o.row_stride(C);
  POMPC_REQUIRE(o.group_stride == 0 || groups <= 1 || o.group_stride >= (per_group - 1) * l + C,
                "%s: the output group stride (%lld) must be 0 or leave room for a group's %d rows "
                "of stride %lld",
                who, static_cast<long long>(o.group_stride), per_group, static_cast<long long>(l));
}

// A row-stride argument (linear_forward's input, policy_head_forward's action): 0 (dense: cols)
// or in [cols, 2^31) (a GEMM's int ld). Returns the stride.
inline int resolve_row_stride(const char* who, const char* what, int64_t ld, int cols) {
  POMPC_REQUIRE(ld == 0 || (ld >= cols && ld <= INT32_MAX),
                "%s: the %s row stride (%lld) must be 0 or in [%d, 2^31)", who, what,
                static_cast<long long>(ld), cols);
  return ld == 0 ? cols : static_cast<int>(ld);
}

// ---- losses' glue (src/ref/loss.h) -------------------------------------------------------------

enum class PairMode { min, avg };  // how pair_select combines the two picked Q heads

// Per-term weights passed by value (baked into a captured graph): discounted_sum's (the planner's
// gamma^t, t = 0..H) and mse_segments_backward's upstream gradients (one per rollout step).
// count in [0, kMax]; kMax = the planner's largest horizon + 1.
struct TermWeights {
  static constexpr int kMax = 17;
  int count = 0;       // terms in use
  float w[kMax] = {};  // w[t] multiplies term t
};

inline void check_term_weights(const char* who, const TermWeights& w) {
  POMPC_REQUIRE(w.count >= 0 && w.count <= TermWeights::kMax,
                "%s: %d weighted terms; at most %d (a horizon of at most %d)", who, w.count,
                TermWeights::kMax, TermWeights::kMax - 1);
}

// The two distinct heads (i, j) that a Q call with (seed, offset) uses. Qn >= 2.
// i = floor(u0 Qn), j' = floor(u1 (Qn - 1)), j = j' + (j' >= i), u0, u1 = Philox words 0 and 1
// of (seed, offset) scaled to [0, 1) by a multiply-shift.
POMPC_HD void pick_pair(int Qn, uint64_t seed, uint64_t offset, int* i, int* j) {
  const uint32_t a = philox_u32(seed, offset, 0), b = philox_u32(seed, offset, 1);
  const int hi = static_cast<int>((static_cast<uint64_t>(a) * static_cast<uint32_t>(Qn)) >> 32);
  const int lo = static_cast<int>((static_cast<uint64_t>(b) * static_cast<uint32_t>(Qn - 1)) >> 32);
  *i = hi;
  *j = lo >= hi ? lo + 1 : lo;
}

// Where gather_pair copies an ensemble's two picked heads: per tensor t of the ensemble's
// parameters (laid out [Qn, per_head[t]] from src[t]), their rows go to [2, per_head[t]] from
// dst[t] of a two-head copy of the same layout (offsets in floats).
struct PairGather {
  static constexpr int kMaxTensors = 16;
  int Qn = 0, tensors = 0;
  int64_t src[kMaxTensors] = {}, dst[kMaxTensors] = {}, per_head[kMaxTensors] = {};
};

// The argument checks of the ops that pick a pair (pair_select, two_hot_inv_pair_forward,
// gather_pair), shared by both backends.
inline void check_pair(const char* who, int Qn, int rows, PairMode mode) {
  POMPC_REQUIRE(Qn >= 2, "%s: Qn (%d) must be >= 2 (two distinct heads are picked)", who, Qn);
  POMPC_REQUIRE(rows >= 0, "%s: rows (%d) must be >= 0", who, rows);
  POMPC_REQUIRE(mode == PairMode::min || mode == PairMode::avg, "%s: mode must be min or avg", who);
}
inline void check_pair_gather(const char* who, const PairGather& g) {
  check_pair(who, g.Qn, 0, PairMode::min);
  POMPC_REQUIRE(g.tensors >= 1 && g.tensors <= PairGather::kMaxTensors,
                "%s: %d tensors (1 to %d: raise PairGather::kMaxTensors)", who, g.tensors,
                PairGather::kMaxTensors);
  for (int t = 0; t < g.tensors; ++t)
    POMPC_REQUIRE(g.src[t] >= 0 && g.dst[t] >= 0 && g.per_head[t] >= 0,
                  "%s: tensor %d has a negative offset or size", who, t);
}

// The pair gather_pair copies, lower head first: pick_pair's (i, j) in ascending order.
POMPC_HD void pick_pair_sorted(int Qn, uint64_t seed, uint64_t offset, int* lo, int* hi) {
  int i = 0, j = 0;
  pick_pair(Qn, seed, offset, &i, &j);
  *lo = i < j ? i : j;
  *hi = i < j ? j : i;
}

// ---- MPPI (src/ref/mppi.h) ---------------------------------------------------------------------

struct MppiShape {
  int S = 1;    // states planned at once
  int H = 3;    // horizon
  int N = 512;  // num_samples (policy trajectories included)
  int P = 24;   // num_pi_trajs: columns n < P hold policy-prior trajectories
  int E = 64;   // num_elites
  int A = 1;    // action dim
};

// The Gumbel uniform of mppi_select: (bits >> 8 + 0.5) / 2^24, in (0, 1), never 0 or 1.
POMPC_HD double gumbel_uniform(uint32_t bits) {
  return (static_cast<double>(bits >> 8) + 0.5) * (1.0 / 16777216.0);
}

// mppi_sample's second output: none, or rows of stride rows_ld >= A.
inline void check_sample_rows(const char* who, const MppiShape& sh, const float* rows_out,
                              int64_t rows_ld) {
  POMPC_REQUIRE(rows_out == nullptr || rows_ld >= sh.A,
                "%s: the rows' stride (%lld) must be >= the action dim A (%d)", who,
                static_cast<long long>(rows_ld), sh.A);
}

// Checks a shape (P <= N, 1 <= E <= N, H >= 1, ...) with errors that name the fix.
inline void check_mppi_shape(const char* who, const MppiShape& sh) {
  POMPC_REQUIRE(sh.S >= 1, "%s: the number of states S (%d) must be >= 1", who, sh.S);
  POMPC_REQUIRE(sh.H >= 1, "%s: horizon (%d) must be >= 1", who, sh.H);
  POMPC_REQUIRE(sh.A >= 1, "%s: action_dim (%d) must be >= 1", who, sh.A);
  POMPC_REQUIRE(sh.N >= 1, "%s: num_samples (%d) must be >= 1", who, sh.N);
  POMPC_REQUIRE(sh.P >= 0 && sh.P <= sh.N, "%s: num_pi_trajs (%d) must be in [0, num_samples = %d]",
                who, sh.P, sh.N);
  POMPC_REQUIRE(sh.E >= 1 && sh.E <= sh.N, "%s: num_elites (%d) must be in [1, num_samples = %d]",
                who, sh.E, sh.N);
}

// ---- policy head (src/ref/policy.h) ------------------------------------------------------------

enum class EntropyForm { paper, current };
enum class PolicyForm { squashed, clamped };

struct PolicyHead {
  float log_std_min = -10.0f;  // lower end of the log_std squash (TD-MPC2 log_std_min; BMPC -3)
  float log_std_max = 2.0f;    // upper end (TD-MPC2 log_std_max; BMPC 1)
  EntropyForm entropy_form = EntropyForm::paper;  // entropy_form: which scaled log-prob log_pi is
  // form: squashed = TD-MPC2 action tanh(u); clamped = BMPC (policy_loss_type "kl"), action
  // clamp(tanh(mean) + std eps, -1, 1), log_pi = A * Gaussian log-prob (entropy_form ignored)
  PolicyForm form = PolicyForm::squashed;
};

// ---- policy-prior divergences (src/ref/prior.h) ------------------------------------------------

// Direction of gauss_kl: reverse = KL(pi_theta || prior), forward = KL(prior || pi_theta).
enum class KlDir { reverse, forward };

// The argument checks of the prior ops; each throws pompc::Error naming the op (`who`).
// Shape: rows >= 0, A >= 1, S >= 1 (pass S = 1 for the ops without samples).
inline void check_prior_shape(const char* who, int rows, int A, int S) {
  POMPC_REQUIRE(rows >= 0, "%s: rows (%d) must be >= 0", who, rows);
  POMPC_REQUIRE(A >= 1, "%s: A (%d) must be >= 1", who, A);
  POMPC_REQUIRE(S >= 1, "%s: S (%d) must be >= 1 (samples per row)", who, S);
}

inline void check_prior_dir(const char* who, KlDir dir) {
  POMPC_REQUIRE(dir == KlDir::reverse || dir == KlDir::forward,
                "%s: dir must be KlDir::reverse or KlDir::forward", who);
}

inline void check_prior_min_std(const char* who, float min_std) {
  POMPC_REQUIRE(min_std >= 0.0f, "%s: min_std (%g) must be >= 0", who,
                static_cast<double>(min_std));
}

// Upstream gradients and the gradients of the ops without optional ones must be given.
inline void check_prior_given(const char* who, const char* name, const void* p) {
  POMPC_REQUIRE(p != nullptr, "%s: %s is null; pass a buffer (this op takes no null gradients)",
                who, name);
}

// ---- two-hot regression (src/ref/two_hot.h) ----------------------------------------------------

struct Bins {
  int num_bins = 101;   // K: bins of the reward / value heads (TD-MPC2 num_bins)
  float vmin = -10.0f;  // lowest bin centre, symlog space (TD-MPC2 vmin)
  float vmax = 10.0f;   // highest bin centre, symlog space (TD-MPC2 vmax)
};

// Centre of bin k in T, by torch.linspace's formula: start + step k for k < K/2,
// end - step (K - 1 - k) after, step = (vmax - vmin) / (K - 1) rounded to T.
template <typename T>
POMPC_HD T bin_center(const Bins& bins, int k) {
  const int K = bins.num_bins;
  const T lo = static_cast<T>(bins.vmin), hi = static_cast<T>(bins.vmax);
  const T step = (hi - lo) / static_cast<T>(K - 1);
  return k < K / 2 ? lo + step * static_cast<T>(k) : hi - step * static_cast<T>(K - 1 - k);
}

}  // namespace pompc
