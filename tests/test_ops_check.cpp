// pompc check (src/ops_check.h) on the CUDA backend (emulated here, a GPU in test_gpu): every op
// of src/ops.h within its tolerance at the odd sizes and the dog 5M sizes, and every op covered.
//
// Run: build/test_emu -ts=ops -tc='*pompc check*'
#include <doctest/doctest.h>

#include <set>
#include <string>

#include "ops.h"
#include "ops_check.h"

TEST_SUITE("ops") {
  TEST_CASE("pompc check: every op of the CUDA backend agrees with the reference") {
    auto ref = pompc::make_ref_ops();
    auto gpu = pompc::make_cuda_ops();
    const auto rows = pompc::check_ops(*gpu, *ref, "all");
    std::set<std::string> ops;
    for (const auto& r : rows) {
      CAPTURE(r.op);
      CAPTURE(r.shape);
      CAPTURE(r.max_err);
      CAPTURE(r.tol);
      CHECK(r.ok);
      ops.insert(r.op.substr(0, r.op.find(' ')));
    }
    // Every op of the interface but the memory and graph plumbing (exercised everywhere else).
    // clang-format off
    for (const char* op :
         {"adam_update", "clip_grad_norm", "polyak", "linear_forward", "linear_backward",
          "linear_ensemble_forward", "linear_ensemble_backward", "layernorm_mish_forward",
          "layernorm_mish_backward", "layernorm_simnorm_forward", "layernorm_simnorm_backward",
          "copy_rows", "repeat_rows", "concat_forward", "concat_backward", "mse_forward",
          "mse_backward", "mse_segments_forward", "mse_segments_backward", "soft_ce_forward",
          "soft_ce_backward", "soft_ce_heads_forward", "soft_ce_heads_backward",
          "two_hot_inv_forward", "two_hot_inv_pair_forward", "two_hot_inv_backward",
          "policy_head_forward", "policy_head_backward", "policy_log_ratio", "gauss_kl_forward",
          "gauss_kl_backward", "gauss_nll_forward", "gauss_nll_backward", "prior_sample",
          "sample_weights", "weighted_nll_forward", "weighted_nll_backward", "exp_forward",
          "scale_gate", "running_scale_update", "fill", "scale_add", "discounted_sum",
          "weighted_sum", "pair_select_forward", "pair_select_backward", "mppi_init", "mppi_sample",
          "mppi_elites", "mppi_update", "mppi_elites_update", "mppi_select"}) {
      // clang-format on
      const std::string name = op;
      CAPTURE(name);
      CHECK(ops.count(op) == 1);
    }
    MESSAGE("pompc check: " << rows.size() << " op outputs");
  }
}
