// tests/emu/include/cuda_runtime_api.h: the host emulation's runtime API (see cuda_runtime.h).
#pragma once

#include "cuda_runtime.h"
