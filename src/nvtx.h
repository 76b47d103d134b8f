// NVTX ranges for Nsight Systems, free when off.
//
// NvtxRange r("plan/iter"); opens a named range until the end of the scope. Compiled to nothing
// unless the build defines POMPC_NVTX (`make profile`, which also puts the CUDA include directory
// on the host compiler's path: NVTX v3 is header-only). Used by the kernel launch helper (one
// range per launch, named after the kernel) and by the host phases (env/step, update/model, ...).
#pragma once

#if defined(POMPC_NVTX) && !defined(POMPC_EMU)
#include <nvtx3/nvToolsExt.h>
#endif

namespace pompc {

struct NvtxRange {
#if defined(POMPC_NVTX) && !defined(POMPC_EMU)
  explicit NvtxRange(const char* name) { nvtxRangePushA(name); }
  ~NvtxRange() { nvtxRangePop(); }
#else
  explicit NvtxRange(const char*) {}
#endif
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;
};

}  // namespace pompc
