// tests/test_dev.h: Dev, a device copy of a host vector for the kernel parity tests that call
// launchers directly (cudaMalloc'd: device memory on a GPU, host memory in the emulation).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <vector>

#include "common.cuh"

namespace pompc::test {

struct Dev {
  float* p = nullptr;
  size_t n;
  explicit Dev(const std::vector<float>& h) : n(h.size()) {
    CUDA_CHECK(cudaMalloc(&p, (n ? n : 1) * sizeof(float)));
    if (n) CUDA_CHECK(cudaMemcpy(p, h.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  }
  explicit Dev(size_t count) : Dev(std::vector<float>(count, 0.0f)) {}
  ~Dev() { cudaFree(p); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  // Synchronises, then copies back.
  std::vector<float> host() const {
    std::vector<float> h(n);
    CUDA_CHECK(cudaDeviceSynchronize());
    if (n) CUDA_CHECK(cudaMemcpy(h.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost));
    return h;
  }
};

}  // namespace pompc::test
