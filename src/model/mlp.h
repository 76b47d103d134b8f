// src/model/mlp.h: TD-MPC2's `mlp` building block (layers.py) on the Ops interface: a stack of
// NormedLinear layers (Linear without bias -> fused bias + dropout + LayerNorm + Mish / SimNorm)
// ending in a plain Linear or a SimNorm NormedLinear, optionally as an ensemble of G heads (the
// Q ensemble: G = Qn, stacked parameters, the first layer's input shared by every head).
//
// Maths (per layer l with fan-in I_l and fan-out C_l, G heads, rows R per head)
//   NormedLinear: pre = x W^T (no bias), out = act(LayerNorm(Dropout_p(pre + b))),
//                 act = Mish | SimNorm
//   Linear:       out = x W^T + b
//   Backward, from dout of the last layer down to layer 0 (every buffer ACCUMULATED):
//     NormedLinear: dpre += LN/act backward(dout) (also dbias, dgamma, dbeta);
//                   dx += dpre W, dW += dpre^T x
//     Linear:       dx += dout W, dW += dout^T x, db += sum_rows dout
//
// Shapes: x [R, I_0] (or the per-head [G, R, I] for layers > 0 of an ensemble); pre / out / dout /
//   dpre of layer l [G, R, C_l]; mean / rstd [G R]. Parameters of layer l at offsets into one
//   parameter buffer: weight [G, C_l, I_l], bias [G, C_l], ln.weight (gamma) [G, C_l], ln.bias
//   (beta) [G, C_l] (the last Linear has no LayerNorm). G = 1 drops the leading dim. Each tensor
//   starts on a kTensorAlign boundary (16 bytes, what cuBLAS's vectorised kernels need of a
//   matrix's address); the gaps between tensors (< kTensorAlign floats) hold zeros, their
//   gradients stay zero and Adam leaves them at zero.
//
// Overwritten / accumulated: forward overwrites pre, mean, rstd, out (and the final output);
//   backward ACCUMULATES into dpre, dout (MlpGrads, zeroed by the caller before each backward
//   pass), the parameter gradients (grads may be null: frozen parameters, e.g. the Q heads in
//   the pi step) and dx (null: no input gradient, e.g. observations).
//   A backward pass runs at the rows of the forward it follows (the layout [G, R, C] depends on R).
//
// Test: build/test_emu -ts=model (through the world model's gradient checks).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "ops.h"

namespace pompc::model {

enum class Act { mish, simnorm, linear };  // linear: a plain Linear layer (the last one only)

constexpr size_t kTensorAlign = 4;  // floats: every parameter tensor starts 16-byte aligned

struct Layer {
  int in = 0, out = 0;   // fan-in, fan-out
  Act act = Act::mish;   // the NormedLinear activation, or linear
  bool dropout = false;  // the layer's NormedLinear has Dropout(p) (the Q heads' first layer)
  size_t weight = 0, bias = 0, gamma = 0, beta = 0;  // offsets in the parameter buffer
};

struct Mlp {
  std::string name;  // "_encoder.state", "_dynamics", "_Qs.params", ...
  int groups = 1;    // G: 1, or Qn for the ensemble
  std::vector<Layer> layers;
  size_t floats = 0;  // its span in the parameter buffer: the tensors and their alignment gaps

  // Number of its parameters (the tensors' sizes, without the gaps).
  size_t param_count() const;
};

// Forward activations of one use of an Mlp at up to `rows` rows per head.
struct MlpActs {
  int rows = 0;
  bool saved = false;                        // mean / rstd kept for a backward pass
  std::vector<float*> pre, mean, rstd, out;  // per layer; pre / mean / rstd null for a Linear
};

// Backward workspace of one use (zeroed by the caller before each backward pass).
struct MlpGrads {
  int rows = 0;
  std::vector<float*> dpre, dout;  // per layer; dout of the last layer is the caller's
};

// Where an Mlp's buffers come from: a list of (pointer, floats) requests served by one
// allocation (WorldModel's arenas).
class Arena {
 public:
  void add(float** p, size_t n);
  size_t floats() const;
  // One ops.alloc for all requests (zero-filled), pointers assigned; returns the block.
  float* allocate(Ops& ops);

 private:
  std::vector<std::pair<float**, size_t>> req_;
};

void reserve_acts(Arena& arena, const Mlp& mlp, int rows, bool saved, MlpActs* acts);
void reserve_grads(Arena& arena, const Mlp& mlp, int rows, MlpGrads* grads);

// The last layer's bias: added by the layer, or left out for the op that reads the output to add
// (two_hot_inv_forward's `bias` argument: one launch fewer, the same bits). Only a last layer
// without a LayerNorm has a bias of its own to leave.
enum class LastBias { add, leave };

// out = mlp(x) at `rows` rows per head; the last layer writes to `final_out` when non-null
// (else acts.out.back()), at the rows `final_rows` says (a last NormedLinear only: its
// LayerNorm's RowLayout; dense by default). x's rows are x_ld floats apart (0: dense; one group
// only), e.g. z read out of [z, a] rows. `drop` applies to layers with `dropout` set (p = 0:
// off).
void mlp_forward(Ops& ops, const Mlp& mlp, const float* params, const float* x, int rows,
                 const MlpActs& acts, float* final_out, const Dropout& drop,
                 LastBias last_bias = LastBias::add, const RowLayout& final_rows = {},
                 int64_t x_ld = 0);

// The last layer's bias in params ([groups, out]): what an op after LastBias::leave adds.
const float* last_bias(const Mlp& mlp, const float* params);

// Backward of the forward above (same x, params and drop); dfinal [G, rows, layers.back().out].
void mlp_backward(Ops& ops, const Mlp& mlp, const float* params, float* grads, const float* x,
                  int rows, const MlpActs& acts, const float* dfinal, const MlpGrads& g, float* dx,
                  const Dropout& drop);

}  // namespace pompc::model
