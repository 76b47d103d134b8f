// The reference backend of the Ops interface: host memory, each op forwarded to its plain C++
// implementation in src/ref/.
#include <omp.h>

#include <cstdlib>
#include <cstring>

#include "common.h"
#include "ops.h"
#include "ref/optim.h"

namespace pompc {
namespace {

class RefOps final : public Ops {
 public:
  Backend backend() const override { return Backend::cpu; }
  std::string description() const override {
    return strfmt("cpu (reference, %d OpenMP threads)", omp_get_max_threads());
  }

  void* alloc_bytes(size_t bytes) override {
    const size_t rounded = (bytes + 255) / 256 * 256;
    void* p = std::aligned_alloc(256, rounded ? rounded : 256);
    POMPC_REQUIRE(p, "out of host memory allocating %zu bytes", bytes);
    std::memset(p, 0, rounded ? rounded : 256);
    return p;
  }
  void free_bytes(void* p) override { std::free(p); }
  void copy_to_backend(void* dst, const void* src, size_t bytes) override {
    std::memcpy(dst, src, bytes);
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    std::memcpy(dst, src, bytes);
  }
  void synchronize() override {}

  void adam_update(const AdamSettings& cfg, const AdamGroups& groups, float* param,
                   const float* grad, float* m, float* v, AdamScalars* s) override {
    ref::adam_update(cfg, groups, param, grad, m, v, s);
  }
  void clip_grad_norm(float* grad, size_t n, float max_norm, float* norm) override {
    ref::clip_grad_norm(grad, n, max_norm, norm);
  }
  void polyak(float* target, const float* online, size_t n, float tau) override {
    ref::polyak(target, online, n, tau);
  }
};

}  // namespace

std::unique_ptr<Ops> make_ref_ops() { return std::make_unique<RefOps>(); }

}  // namespace pompc
