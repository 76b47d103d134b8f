// tests/emu/include/emu/types.h: the CUDA runtime's plain types for the host emulation.
//
// Part of the CUDA host emulation (run book: tests/emu/include/cuda_runtime.h). Names, enum values
// and layouts follow the CUDA 13 headers so that code written against this file compiles with
// nvcc unchanged: vector types (float2, float4, int2, uint4, ... with CUDA's alignments and
// make_* helpers), dim3, cudaError_t (the codes the emulation can return, numbered as in CUDA),
// the enums and flags of memcpy, streams, events and capture, the opaque handle types, and a
// subset of cudaDeviceProp (every field present has its CUDA name and meaning).
#pragma once

#include <cstddef>

// ---- qualifiers that also appear in type declarations -------------------------------------------
#define __align__(n) __attribute__((aligned(n)))
#define __device_builtin__

// ---- vector types -------------------------------------------------------------------------------
// One- to four-component structs; two- and four-component ones carry CUDA's alignment (2 and 4
// times the component size, at most 16), three-component ones are naturally aligned, as in CUDA.
#define EMU_VEC1(name, T) \
  struct name {           \
    T x;                  \
  };
#define EMU_VEC2(name, T)                \
  struct __align__(2 * sizeof(T)) name { \
    T x, y;                              \
  };
#define EMU_VEC3(name, T) \
  struct name {           \
    T x, y, z;            \
  };
#define EMU_VEC4(name, T)                                          \
  struct __align__(4 * sizeof(T) > 16 ? 16 : 4 * sizeof(T)) name { \
    T x, y, z, w;                                                  \
  };
#define EMU_MAKE1(name, T)                 \
  inline constexpr name make_##name(T x) { \
    return name{x};                        \
  }
#define EMU_MAKE2(name, T)                      \
  inline constexpr name make_##name(T x, T y) { \
    return name{x, y};                          \
  }
#define EMU_MAKE3(name, T)                           \
  inline constexpr name make_##name(T x, T y, T z) { \
    return name{x, y, z};                            \
  }
#define EMU_MAKE4(name, T)                                \
  inline constexpr name make_##name(T x, T y, T z, T w) { \
    return name{x, y, z, w};                              \
  }
#define EMU_VEC_1TO4(base, T) \
  EMU_VEC1(base##1, T)        \
  EMU_VEC2(base##2, T)        \
  EMU_VEC3(base##3, T)        \
  EMU_VEC4(base##4, T)        \
  EMU_MAKE1(base##1, T)       \
  EMU_MAKE2(base##2, T)       \
  EMU_MAKE3(base##3, T) EMU_MAKE4(base##4, T)
#define EMU_VEC_1TO3(base, T) \
  EMU_VEC1(base##1, T)        \
  EMU_VEC2(base##2, T)        \
  EMU_VEC3(base##3, T)        \
  EMU_MAKE1(base##1, T)       \
  EMU_MAKE2(base##2, T)       \
  EMU_MAKE3(base##3, T)

EMU_VEC_1TO4(char, signed char)
EMU_VEC_1TO4(uchar, unsigned char)
EMU_VEC_1TO4(short, short)
EMU_VEC_1TO4(ushort, unsigned short)
EMU_VEC_1TO4(int, int)
EMU_VEC_1TO4(uint, unsigned int)
EMU_VEC_1TO4(float, float)
// CUDA 13 deprecates the 32-byte four-component types (double4, longlong4, ...): not provided.
EMU_VEC_1TO3(double, double)
EMU_VEC_1TO3(longlong, long long)
EMU_VEC_1TO3(ulonglong, unsigned long long)

#undef EMU_VEC1
#undef EMU_VEC2
#undef EMU_VEC3
#undef EMU_VEC4
#undef EMU_MAKE1
#undef EMU_MAKE2
#undef EMU_MAKE3
#undef EMU_MAKE4
#undef EMU_VEC_1TO4
#undef EMU_VEC_1TO3

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1)
      : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return uint3{x, y, z}; }
};

// ---- errors -------------------------------------------------------------------------------------
// The codes the emulation returns, with CUDA's numbers. cudaGetErrorString gives CUDA's text, or,
// right after the emulation failed a call, that text with the emulation's explanation.
enum cudaError {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidSymbol = 13,
  cudaErrorInsufficientDriver = 35,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorInvalidDeviceFunction = 98,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorNoKernelImageForDevice = 209,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorIllegalState = 401,
  cudaErrorNotReady = 600,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorAssert = 710,
  cudaErrorIllegalInstruction = 715,
  cudaErrorLaunchFailure = 719,
  cudaErrorNotPermitted = 800,
  cudaErrorNotSupported = 801,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorStreamCaptureMerge = 902,
  cudaErrorStreamCaptureUnmatched = 903,
  cudaErrorStreamCaptureUnjoined = 904,
  cudaErrorStreamCaptureIsolation = 905,
  cudaErrorStreamCaptureImplicit = 906,
  cudaErrorStreamCaptureWrongThread = 908,
  cudaErrorUnknown = 999
};
typedef enum cudaError cudaError_t;

// ---- memcpy, streams, events, capture -----------------------------------------------------------
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
};

enum cudaStreamCaptureMode {
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2
};

enum cudaStreamCaptureStatus {
  cudaStreamCaptureStatusNone = 0,
  cudaStreamCaptureStatusActive = 1,
  cudaStreamCaptureStatusInvalidated = 2
};

enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };

#define cudaHostAllocDefault 0x00
#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
#define cudaEventDefault 0x00
#define cudaEventBlockingSync 0x01
#define cudaEventDisableTiming 0x02

// Opaque handles, with the struct names CUDA uses.
typedef struct CUstream_st* cudaStream_t;
typedef struct CUevent_st* cudaEvent_t;
typedef struct CUgraph_st* cudaGraph_t;
typedef struct CUgraphExec_st* cudaGraphExec_t;
typedef struct CUgraphNode_st* cudaGraphNode_t;

#define cudaStreamLegacy ((cudaStream_t)0x1)
#define cudaStreamPerThread ((cudaStream_t)0x2)

// ---- device properties --------------------------------------------------------------------------
// The fields that describe the execution model and limits; the emulation fills them with the
// values of an sm_90 part, except multiProcessorCount (the emulation's OS threads) and
// totalGlobalMem (half the host's RAM, the emulation's allocation limit).
// The subset of cudaFuncAttributes the project reads (CUDA's names and meanings).
struct cudaFuncAttributes {
  size_t sharedSizeBytes;
  int maxThreadsPerBlock;
  int numRegs;
  int ptxVersion;     // 10 * major + minor of the PTX the kernel came from
  int binaryVersion;  // 10 * major + minor of the kernel image that runs
};

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  int regsPerBlock;
  int warpSize;
  size_t memPitch;
  int maxThreadsPerBlock;
  int maxThreadsDim[3];
  int maxGridSize[3];
  size_t totalConstMem;
  int major;
  int minor;
  size_t textureAlignment;
  int multiProcessorCount;
  int integrated;
  int canMapHostMemory;
  int concurrentKernels;
  int ECCEnabled;
  int pciBusID;
  int pciDeviceID;
  int pciDomainID;
  int asyncEngineCount;
  int unifiedAddressing;
  int memoryBusWidth;
  int l2CacheSize;
  int persistingL2CacheMaxSize;
  int maxThreadsPerMultiProcessor;
  int streamPrioritiesSupported;
  size_t sharedMemPerMultiprocessor;
  int regsPerMultiprocessor;
  int managedMemory;
  int cooperativeLaunch;
  size_t sharedMemPerBlockOptin;
  int maxBlocksPerMultiProcessor;
  size_t reservedSharedMemPerBlock;
  int memoryPoolsSupported;
  int clusterLaunch;
};
