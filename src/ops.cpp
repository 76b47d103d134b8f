// Backend selection for the Ops interface (src/ops.h).
#include "ops.h"

#include <cstdio>

#include "common.h"

namespace pompc {

size_t AdamGroups::add(size_t n, float group_lr) {
  POMPC_REQUIRE(count < kMax, "AdamGroups: at most %d learning-rate groups", kMax);
  const size_t offset = total();
  end[count] = offset + n;
  lr[count] = group_lr;
  ++count;
  return offset;
}

namespace {
OpsFactory g_cuda_factory = nullptr;
OpsProbe g_cuda_probe = nullptr;
}  // namespace

int register_cuda_ops(OpsFactory factory, OpsProbe probe) {
  g_cuda_factory = factory;
  g_cuda_probe = probe;
  return 0;
}

bool cuda_ops_available(std::string* why_not) {
  if (!g_cuda_factory) {
    if (why_not) *why_not = "this pompc was built without CUDA (no nvcc at build time)";
    return false;
  }
  return g_cuda_probe(why_not);
}

std::unique_ptr<Ops> make_cuda_ops() {
  std::string why;
  if (!cuda_ops_available(&why)) throw Error("device=cuda is not available: " + why);
  return g_cuda_factory();
}

std::unique_ptr<Ops> make_ops(const std::string& device) {
  if (device == "cpu") return make_ref_ops();
  if (device == "cuda") return make_cuda_ops();
  POMPC_REQUIRE(device == "auto", "device=%s is not one of cuda, cpu, auto", device.c_str());
  std::string why;
  if (cuda_ops_available(&why)) {
    auto ops = g_cuda_factory();
    std::fprintf(stderr, "pompc: device=auto chose %s\n", ops->description().c_str());
    return ops;
  }
  auto ops = make_ref_ops();
  std::fprintf(stderr, "pompc: device=auto chose %s: no CUDA backend (%s)\n",
               ops->description().c_str(), why.c_str());
  return ops;
}

}  // namespace pompc
