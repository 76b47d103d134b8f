// Helpers for the bench suite (build/bench -ts=bench; build/test_gpu -ts=bench on a GPU).
//
// Every benchmark prints one line per figure:
//   bench: <area>/<what> <shape>: <value> <unit> [(<fraction> of <peak>)]
// Timings are wall-clock over repeated calls after a warm-up, with the backend synchronised
// before the clock stops; figures are medians of 5 repetitions.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

#include "agent/planner.h"
#include "model/config.h"

namespace pompc::test {

// Median over 5 repetitions of the mean time of one call (ms); `sync` waits for the backend.
inline double time_ms(const std::function<void()>& fn, int iters,
                      const std::function<void()>& sync = [] {}) {
  fn();
  sync();
  std::vector<double> reps;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) fn();
    sync();
    const auto t1 = std::chrono::steady_clock::now();
    reps.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count() / iters);
  }
  std::sort(reps.begin(), reps.end());
  return reps[2];
}

// Host memory bandwidth measured on the spot with a STREAM-style triad a = b + s c over 3 x 64 MiB
// (GB/s, counting 3 arrays of traffic): the "peak" that memory-bound reference ops are held to.
double host_triad_gbs();

// fp32 lanes of the widest vector unit the tests are compiled for (-march=native).
#if defined(__AVX512F__)
constexpr int kHostLanes = 16;
#elif defined(__AVX__)
constexpr int kHostLanes = 8;
#else
constexpr int kHostLanes = 4;
#endif

// Measured fp32 FMA peak (GFLOP/s) of all OpenMP threads: the "peak" compute-bound reference ops
// (the GEMM) are held to. Measured once, then cached.
double host_fma_peak_gflops();

// The clock /proc/cpuinfo reports ("cpu MHz"; a VM reports its base clock), 0 when unavailable.
double host_cpuinfo_mhz();

// ---- analytic cost of the TD-MPC2 agent step (the one home of these formulas) ------------------
// Counted: the GEMMs of every Linear layer (2 FLOP per multiply-add), for the modules of SPEC 1
// (encoder, dynamics, reward, pi, the num_q Q heads, or only the two a min2 / avg2 picks after
// gather_pair copied them out; layer widths as in world_model.h) in the passes each plan or
// update makes of them. Traffic model (fp32, every operand from and to device
// memory, nothing reused from cache between kernels):
//   forward GEMM        weights + input + output, plus the fused bias/LayerNorm/activation
//                       reading and writing the output once more
//   weight-gradient     dout + input + dweight, plus the LayerNorm/activation backward (reads
//                       dout and the pre-activation, writes dinp)
//   input-gradient      dout + weights + dinp (every layer but the module's first, unless the
//                       input takes a gradient: the latent of dynamics, reward and the Qs)
//   optimizer (update)  Adam 28 B, gradient clipping 12 B and zeroing 4 B per trained parameter
//                       (model and pi), Polyak 12 B per target-Q parameter
// Left out: the loss, two-hot, MPPI and policy-head kernels (elementwise on rows x A or rows x
// bins, small next to the GEMMs' operands). roofline_s sums max(FLOP / gemm_flops, bytes /
// mem_bw) over the GEMMs (each its own kernel) plus the optimizer's bytes / mem_bw: a lower bound
// of the device time with no launch overhead.
struct Peaks {
  const char* name;
  double gemm_flops;  // FLOP/s of the GEMMs (TF32 tensor cores, as trained)
  double mem_bw;      // device memory bytes/s
};
// H100 SXM5, dense (no sparsity): 494.7 TFLOP/s TF32 tensor core, 3.35 TB/s HBM3 (NVIDIA's H100
// datasheet; 66.9 TFLOP/s plain fp32 for the non-tensor-core kernels, unused by the model).
inline constexpr Peaks kH100{"H100 SXM (494.7 TFLOP/s TF32, 3.35 TB/s HBM3)", 494.7e12, 3.35e12};

struct Cost {
  double flop = 0;        // GEMM FLOPs
  double bytes = 0;       // device memory traffic (the model above)
  double gemms = 0;       // GEMM passes of a layer (an ensemble's heads as one)
  double roofline_s = 0;  // sum over kernels of max(compute, memory) time at the peaks
  Cost& operator+=(const Cost& o) {
    flop += o.flop, bytes += o.bytes, gemms += o.gemms, roofline_s += o.roofline_s;
    return *this;
  }
};

// One Agent::update (WorldModel::update, SPEC 2 steps 1-6, TD-MPC2's objective: no prior) on a
// batch of batch_size slices.
Cost update_cost(const model::ModelConfig& c, const Peaks& peaks = kH100);
// One plan step for one state (Planner::plan: encode, the policy trajectories, then
// iterations_for(A) MPPI iterations of H reward + dynamics steps and the terminal pi + Q value
// over num_samples rows).
Cost plan_cost(const model::ModelConfig& c, const agent::PlannerSettings& p,
               const Peaks& peaks = kH100);

}  // namespace pompc::test
