// src/ops_check.h: every op of the Ops interface (src/ops.h) on one backend against the reference
// backend, on the same random inputs, at the sizes of the default 5M model on dog (SPEC: B 256,
// H 3, N 512, E 64, P 24, Z = M = 512, O 223, A 38, K 101, Qn 5) and at odd sizes (1, 33, 67, not
// multiples of 32 or of a vector width), as `pompc check` reports them (like ggml's
// test-backend-ops): one row per op and shape with the largest error.
//
// Error of an output element: |got - ref| / (|ref| + rms(ref)), rms over that output (so an
// element near zero in an output of magnitude 1 is judged on the output's scale). Tolerance: the
// op's longest reduction K gives 16 sqrt(K) u + 64 u (u = 2^-24): two fp32 sums of K terms in
// different orders differ by about 2 sqrt(K) u, with a safety factor of 8, plus a few ulps of
// transcendental functions. Integer outputs (elite indices) and copies must match exactly. GEMMs
// run with TF32 off (the CUDA default is TF32: its own row says by how much TF32 differs).
//
// Gradients are accumulated by the ops, so their buffers start from the same random values on
// both backends. Ops that draw noise use the same Philox (seed, offset) on both.
//
// Tests: build/test_emu -ts=ops -tc='*pompc check*' (every op of the emulated CUDA backend at
// the odd sizes); on a GPU: build/pompc check device=cuda (make gpu-check).
#pragma once

#include <string>
#include <vector>

#include "ops.h"

namespace pompc {

struct OpCheckRow {
  std::string op;      // e.g. "layernorm_mish_backward dgamma"
  std::string shape;   // e.g. "rows 1024 C 512"
  double max_err = 0;  // largest normalised error (see above)
  double tol = 0;      // its tolerance
  bool ok = true;
};

// Which sizes: "dog" (the 5M model's), "odd", or "all".
std::vector<OpCheckRow> check_ops(Ops& backend, Ops& reference, const std::string& sizes);

}  // namespace pompc
