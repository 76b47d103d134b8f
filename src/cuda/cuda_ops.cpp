// The CUDA backend of the Ops interface: device memory, one stream, each op forwarded to its
// launcher in kernels/ (declared in kernels/launchers.h). Compiled only when CUDA is available
// (nvcc at build time) and into test_emu, where the kernels run in the host emulation.
#include <cuda_runtime.h>

#include "common.cuh"
#include "launchers.h"
#include "ops.h"

namespace pompc {
namespace {

class CudaOps final : public Ops {
 public:
  CudaOps() {
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    CUDA_CHECK(cudaMalloc(&norm_scratch_, cuda::kNormPartials * sizeof(double)));
  }
  ~CudaOps() override {
    cudaFree(norm_scratch_);
    cudaStreamDestroy(stream_);
  }
  CudaOps(const CudaOps&) = delete;
  CudaOps& operator=(const CudaOps&) = delete;

  Backend backend() const override { return Backend::cuda; }
  std::string description() const override {
    int dev = 0;
    cudaDeviceProp prop{};
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
    return strfmt("cuda (%s, sm_%d%d)", prop.name, prop.major, prop.minor);
  }

  void* alloc_bytes(size_t bytes) override {
    void* p = nullptr;
    CUDA_CHECK(cudaMalloc(&p, bytes ? bytes : 1));
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes ? bytes : 1, stream_));
    return p;
  }
  void free_bytes(void* p) override {
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    CUDA_CHECK(cudaFree(p));
  }
  void copy_to_backend(void* dst, const void* src, size_t bytes) override {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));  // src may be a temporary of the caller
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void synchronize() override { CUDA_CHECK(cudaStreamSynchronize(stream_)); }

  void adam_update(const AdamSettings& cfg, const AdamGroups& groups, float* param,
                   const float* grad, float* m, float* v, AdamScalars* s) override {
    cuda::adam_update(cfg, groups, param, grad, m, v, s, stream_);
  }
  void clip_grad_norm(float* grad, size_t n, float max_norm, float* norm) override {
    cuda::clip_grad_norm(grad, n, max_norm, norm, norm_scratch_, stream_);
  }
  void polyak(float* target, const float* online, size_t n, float tau) override {
    cuda::polyak(target, online, n, tau, stream_);
  }

 private:
  cudaStream_t stream_ = nullptr;
  double* norm_scratch_ = nullptr;
};

bool probe(std::string* why_not) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    if (why_not)
      *why_not = err != cudaSuccess ? strfmt("no usable GPU: %s", cudaGetErrorString(err))
                                    : std::string("no GPU found");
    return false;
  }
  return true;
}

std::unique_ptr<Ops> create() { return std::make_unique<CudaOps>(); }

[[maybe_unused]] const int registered = register_cuda_ops(create, probe);

}  // namespace
}  // namespace pompc
