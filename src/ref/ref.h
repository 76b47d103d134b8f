// src/ref/ref.h: the reference (plain C++ / OpenMP) numeric ops of the world model, all of them.
//
// Free functions in pompc::ref on host pointers, row-major, each templated on the scalar type
// and instantiated for float (production) and double (finite-difference tests). Each family's
// header opens with its run book: maths, shapes (SPEC letters), what is overwritten and what
// accumulated. The common rules:
//   - forward outputs are overwritten;
//   - every gradient buffer is ACCUMULATED (+=): zero gradients before a backward pass; a tensor
//     used several times sums its gradients without extra code;
//   - optional outputs / gradients may be nullptr;
//   - randomness (dropout masks, policy noise) comes from Philox (kernels/philox.cuh) indexed by
//     (seed, offset, flat element index), so the CUDA ops draw the same numbers;
//   - the value types in the signatures (Dropout, Bins, PolicyHead, KlDir, MppiShape, ...) and the
//     rules both backends share (dropout_keep, pick_pair, bin_center, ...) are in src/op_types.h,
//     namespace pompc; src/ref holds only the reference implementation.
//
//   gemm.h       gemm, gemm_strided_batched, gemm_colmajor  (cuBLAS semantics)
//   linear.h     linear_*, linear_ensemble_* (Qn heads), add_column_sums
//   layernorm.h  layernorm_mish_* (bias + dropout + LN + Mish), layernorm_simnorm_*
//   basic.h      copy_rows, repeat_rows, concat_*, mse_*
//   two_hot.h    symlog / symexp, bin_center, soft_ce_* (on two-hot targets), two_hot_inv_*
//   policy.h     policy_head_* (log_std squash, sample, tanh or clamp, log-probs, entropy forms)
//   prior.h      gauss_kl_*, gauss_nll_*, prior_sample, sample_weights, weighted_nll_*,
//                exp_forward, scale_gate (the PO-MPC family's policy-prior divergences)
//   scale.h      percentile_*, running_scale_update
//   loss.h       fill, scale_add, weighted_sum, pair_select_* (losses' glue, min2 / avg2 heads)
#pragma once

#include "ref/basic.h"
#include "ref/gemm.h"
#include "ref/layernorm.h"
#include "ref/linear.h"
#include "ref/loss.h"
#include "ref/policy.h"
#include "ref/prior.h"
#include "ref/scale.h"
#include "ref/two_hot.h"
