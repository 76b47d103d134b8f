// src/ops.h: the one numeric interface that the model, planner, agent and trainer are written
// against. Two implementations:
//   reference  src/ref/    plain C++ (OpenMP), readable, the ground truth      (make_ref_ops)
//   CUDA       kernels/    hand-written kernels + cuBLAS, the fast path        (make_cuda_ops)
// Every CUDA op is checked against its reference op in tests/ (emulated in CI, on a GPU when one
// is lent).
//
// Memory: every pointer an op takes lives in the backend's memory space (device memory for CUDA,
// host memory for the reference); move data with copy_to_backend / copy_to_host. Ops run in
// order on the backend's one stream and do not synchronise with the host: scalars an op produces
// (a norm, a step counter) stay in backend memory, so a captured CUDA graph sees fresh values on
// every replay.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace pompc {

enum class Backend { cpu, cuda };

// ---- optimizer types ---------------------------------------------------------------------------

// Adam hyper-parameters (PyTorch semantics, no weight decay, no amsgrad).
struct AdamSettings {
  float beta1 = 0.9f;   // first-moment decay
  float beta2 = 0.999f; // second-moment decay
  float eps = 1e-8f;    // added to the bias-corrected sqrt(v); the policy optimizer uses 1e-5
};

// Learning-rate groups of one contiguous parameter buffer: group g covers [end[g-1], end[g]),
// with end[-1] = 0. TD-MPC2's model optimizer has two: the encoder (lr * enc_lr_scale = 0.3) and
// everything else. Passed by value to the kernel (baked into a captured graph).
struct AdamGroups {
  static constexpr int kMax = 8;
  int count = 0;           // number of groups in use
  size_t end[kMax] = {};   // exclusive end offset of each group, increasing
  float lr[kMax] = {};     // learning rate of each group

  // Appends a group of n parameters; returns its offset.
  size_t add(size_t n, float lr);
  size_t total() const { return count ? end[count - 1] : 0; }
};

// Step-varying Adam scalars, kept in backend memory and advanced by adam_update itself.
struct AdamScalars {
  uint32_t step;  // number of updates taken (PyTorch's `step`), 0 before the first
  float bias1;    // 1 - beta1^step
  float bias2;    // 1 - beta2^step
};

// ---- the interface -----------------------------------------------------------------------------

class Ops {
 public:
  virtual ~Ops() = default;
  virtual Backend backend() const = 0;
  virtual std::string description() const = 0;  // e.g. "cpu (reference, 2 OpenMP threads)"

  // Memory in the backend's space. alloc_bytes returns zero-filled, 256-byte aligned memory.
  virtual void* alloc_bytes(size_t bytes) = 0;
  virtual void free_bytes(void* p) = 0;
  virtual void copy_to_backend(void* dst, const void* host_src, size_t bytes) = 0;
  virtual void copy_to_host(void* host_dst, const void* src, size_t bytes) = 0;
  // Waits until every op issued so far has finished (a no-op for the reference).
  virtual void synchronize() = 0;

  template <typename T>
  T* alloc(size_t n) {
    return static_cast<T*>(alloc_bytes(n * sizeof(T)));
  }

  // ---- optimizer (src/ref/optim.cpp, kernels/optim.cu) ----
  // One Adam step over the whole buffer: advances s->step and the bias corrections, then for
  // every i in group g: m = m + (1-b1)(g - m); v = b2 v + (1-b2) g^2;
  // p -= lr_g / bias1 * m / (sqrt(v) / sqrt(bias2) + eps). Overwrites param, m, v, *s.
  virtual void adam_update(const AdamSettings& cfg, const AdamGroups& groups, float* param,
                           const float* grad, float* m, float* v, AdamScalars* s) = 0;
  // *norm = ||grad||_2 over n elements, then grad *= min(1, max_norm / (norm + 1e-6))
  // (torch.nn.utils.clip_grad_norm_). Overwrites grad and *norm (a backend scalar).
  virtual void clip_grad_norm(float* grad, size_t n, float max_norm, float* norm) = 0;
  // target += tau * (online - target), elementwise (Polyak averaging). Overwrites target.
  virtual void polyak(float* target, const float* online, size_t n, float tau) = 0;
};

std::unique_ptr<Ops> make_ref_ops();
// Throws pompc::Error saying why when there is no CUDA backend (built without nvcc) or no GPU.
std::unique_ptr<Ops> make_cuda_ops();
bool cuda_ops_available(std::string* why_not = nullptr);
// device = "cuda" | "cpu" | "auto" (cuda when available, else cpu with a one-line notice).
std::unique_ptr<Ops> make_ops(const std::string& device);

// The CUDA backend registers its factory here at static-initialisation time (src/cuda/), so the
// CPU-only build links without it.
using OpsFactory = std::unique_ptr<Ops> (*)();
using OpsProbe = bool (*)(std::string* why_not);
int register_cuda_ops(OpsFactory factory, OpsProbe probe);

}  // namespace pompc
