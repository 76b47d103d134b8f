# pompc build. `make help` lists the targets; `make print-config` shows what was found where.
#
# Products (BUILD=build by default; a second BUILD=dir keeps parallel work apart):
#   $(BUILD)/pompc     the program: g++ alone without nvcc (CPU reference backend only),
#                      nvcc + cuBLAS otherwise (CUDA backend, used when a GPU is present)
#   $(BUILD)/test_emu  every test; kernels/*.cu compiled by g++ against tests/emu (host emulation
#                      of CUDA), AddressSanitizer + UBSan
#   $(BUILD)/test_race test_emu's objects with kernels/*.cu instrumented for the emulation's race
#                      detector (tests/emu/internal.h)
#   $(BUILD)/test_gpu  the same tests against the real kernels (only with nvcc; runs on a GPU)
#   $(BUILD)/bench     the tests built -O3 without sanitizers, run with the bench suite
#   $(BUILD)/fuzz      the parser fuzzers (tests/fuzz/fuzz.h) on test_emu's objects (ASan + UBSan)

SHELL := /bin/bash
.DEFAULT_GOAL := all
.DELETE_ON_ERROR:

BUILD ?= build
DEPS := .deps
PYTHON ?= python3

# ---- pinned dependencies --------------------------------------------------------------------
MUJOCO_VERSION := 3.17.0
DMCONTROL_VERSION := 1.0.50
DEPS_STAMP := $(DEPS)/.stamp-mujoco-$(MUJOCO_VERSION)-dmc-$(DMCONTROL_VERSION)

# MuJoCo: the pinned wheel unpacked into .deps/py, or MUJOCO_DIR=<release tarball root>.
ifdef MUJOCO_DIR
  MUJOCO_FROM := MUJOCO_DIR
  MUJOCO_INC := $(MUJOCO_DIR)/include
  MUJOCO_LIBDIR := $(MUJOCO_DIR)/lib
  DEPS_STAMP :=  # the caller provides MuJoCo (and DMC_DIR, DOCTEST_INC): nothing to fetch
else
  MUJOCO_FROM := pinned wheel mujoco==$(MUJOCO_VERSION) in $(DEPS)/py
  MUJOCO_INC := $(DEPS)/py/mujoco/include
  MUJOCO_LIBDIR := $(DEPS)/py/mujoco
endif
MUJOCO_LIB = $(notdir $(firstword $(wildcard $(MUJOCO_LIBDIR)/libmujoco.so.*.*.*)))
DMC_DIR ?= $(DEPS)/py/dm_control/suite

DOCTEST_INC ?= $(firstword $(wildcard /usr/include/doctest /usr/local/include/doctest))
# A doctest outside the system include path (DOCTEST_INC=<dir>/doctest): its parent joins -I.
DOCTEST_FLAG := $(if $(filter /usr/%,$(abspath $(DOCTEST_INC))),,$(if $(DOCTEST_INC),-I$(patsubst %/,%,$(dir $(abspath $(DOCTEST_INC))))))

# Headless OpenGL for eval videos (save_video=true; src/env/render.h opens libEGL.so.1 at run
# time, so nothing is linked and no headers are needed): EGL with Mesa's software renderer.
GL_DEBS := libegl1 libegl-mesa0 libgl1-mesa-dri

# ---- CUDA probe -----------------------------------------------------------------------------
NVCC ?= $(shell command -v nvcc 2>/dev/null)
ifneq ($(NVCC),)
  CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(realpath $(NVCC)))
  HAVE_NVCC := 1
endif
# The compile check always covers sm_80 and sm_90; GPU_ARCH=NN or the local GPU adds its arch.
ifdef GPU_ARCH
  ARCH_FROM := GPU_ARCH=$(GPU_ARCH)
  LOCAL_ARCH := $(GPU_ARCH:sm_%=%)
else
  LOCAL_ARCH := $(shell nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.')
  ifneq ($(LOCAL_ARCH),)
    ARCH_FROM := nvidia-smi probe (sm_$(LOCAL_ARCH))
  else
    ARCH_FROM := default sm_80 + sm_90 (no GPU_ARCH, nvidia-smi found no GPU)
  endif
endif
NVCC_ARCHS := $(sort 80 90 $(LOCAL_ARCH))
HAVE_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)

# ---- flags ----------------------------------------------------------------------------------
WARN := -Wall -Wextra -Werror
CXXSTD := -std=c++20
INCS := -Isrc -Ikernels -I$(MUJOCO_INC) $(DOCTEST_FLAG)
DEFS := -DPOMPC_DMC_DIR='"$(abspath $(DMC_DIR))"' -DPOMPC_DATA_DIR='"$(abspath data)"'
LDMUJOCO = -L$(MUJOCO_LIBDIR) -l:$(MUJOCO_LIB) -Wl,-rpath,$(abspath $(MUJOCO_LIBDIR))
OPT ?= -O2

HOST_CXXFLAGS := $(CXXSTD) $(OPT) -g -march=native -fopenmp $(WARN) $(INCS) $(DEFS) -MMD -MP
EMU_CXXFLAGS := $(CXXSTD) -O1 -g -march=native -fopenmp $(WARN) $(INCS) $(DEFS) -MMD -MP \
  -Itests/emu/include -DPOMPC_CUDA -DPOMPC_EMU -fno-omit-frame-pointer \
  -fsanitize=address,undefined -fno-sanitize-recover=undefined
# test_race: kernels instrumented by GCC's ThreadSanitizer pass, whose calls tests/emu/race.cpp
# answers (ThreadSanitizer's own runtime is not linked); everything else is test_emu's objects.
RACE_CXXFLAGS := $(CXXSTD) -O1 -g -march=native -fopenmp $(WARN) $(INCS) $(DEFS) -MMD -MP \
  -Itests/emu/include -DPOMPC_CUDA -DPOMPC_EMU -fno-omit-frame-pointer -fsanitize=thread
BENCH_CXXFLAGS := $(CXXSTD) -O3 -g -march=native -fopenmp $(WARN) $(INCS) $(DEFS) -MMD -MP \
  -Itests/emu/include -DPOMPC_CUDA -DPOMPC_EMU
# PROFILE=1 (make profile): NVTX ranges on, -lineinfo for Nsight Compute's source view.
ifdef PROFILE
  HOST_CXXFLAGS += -DPOMPC_NVTX $(if $(CUDA_HOME),-I$(CUDA_HOME)/include)
  NVCC_PROFILE := -lineinfo -DPOMPC_NVTX
endif
CUDA_CXXFLAGS = $(HOST_CXXFLAGS) -DPOMPC_CUDA -I$(CUDA_HOME)/include
# SASS for each arch, and PTX of the newest so that a newer GPU can JIT-compile the kernels.
NVCC_PTX_ARCH := $(shell echo $(NVCC_ARCHS) | tr ' ' '\n' | sort -n | tail -1)
NVCC_ARCHS_TEXT = sm_$(subst $() $(), + sm_,$(NVCC_ARCHS)) + PTX compute_$(NVCC_PTX_ARCH)
NVCC_GENCODE = $(foreach a,$(NVCC_ARCHS),-gencode arch=compute_$(a),code=sm_$(a)) \
  -gencode arch=compute_$(NVCC_PTX_ARCH),code=compute_$(NVCC_PTX_ARCH)
NVCC_FLAGS = $(CXXSTD) -O3 $(NVCC_GENCODE) -Werror all-warnings -Xcompiler -Wall,-Wextra,-Werror \
  -Isrc -Ikernels -DPOMPC_CUDA -DPOMPC_CUDA_ARCHS='"$(NVCC_ARCHS_TEXT)"' -MMD -MP $(NVCC_PROFILE)
CUDA_LDFLAGS = -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcudart

# ---- sources --------------------------------------------------------------------------------
# EXCLUDE=<files> leaves sources out of a build (for working on one area while another is broken).
EXCLUDE ?=
SRC_HOST := $(filter-out src/main.cpp $(EXCLUDE),$(wildcard src/*.cpp src/*/*.cpp))
SRC_HOST := $(filter-out src/cuda/%,$(SRC_HOST))
SRC_CUDA := $(wildcard src/cuda/*.cpp)
KERNELS := $(filter-out $(EXCLUDE),$(wildcard kernels/*.cu))
# tests/fuzz/fuzz.cpp: the fuzz engine, shared by build/fuzz and a short test in test_emu.
TESTS := $(filter-out $(EXCLUDE),$(wildcard tests/*.cpp) tests/fuzz/fuzz.cpp)
EMU := $(filter-out $(EXCLUDE) tests/emu/race.cpp tests/emu/race_test.cpp,$(wildcard tests/emu/*.cpp))

obj = $(patsubst %,$(BUILD)/obj-$(1)/%.o,$(2))

HOST_OBJ := $(call obj,host,$(SRC_HOST))
EMU_OBJ := $(call obj,emu,$(SRC_HOST) $(SRC_CUDA) $(KERNELS) $(TESTS) $(EMU))
# The bench binary holds the test files with a bench suite (and the runner and helpers) only.
BENCH_TESTS := $(filter-out $(EXCLUDE),$(shell grep -l 'TEST_SUITE("bench")' tests/*.cpp) \
  tests/main.cpp tests/test_util.cpp tests/bench_util.cpp)
BENCH_OBJ := $(call obj,bench,$(SRC_HOST) $(SRC_CUDA) $(KERNELS) $(BENCH_TESTS) $(EMU))
RACE_OBJ := $(call obj,emu,$(SRC_HOST) $(SRC_CUDA) $(TESTS) $(EMU) tests/emu/race.cpp) \
  $(call obj,race,$(KERNELS) tests/emu/race_test.cpp)
ifdef HAVE_NVCC
  PROGRAM_OBJ := $(HOST_OBJ) $(call obj,cudahost,$(SRC_CUDA) src/main.cpp) $(call obj,cuda,$(KERNELS))
  PROGRAM_LD := $(CUDA_LDFLAGS)
  GPU_OBJ := $(HOST_OBJ) $(call obj,cudahost,$(SRC_CUDA) $(TESTS)) $(call obj,cuda,$(KERNELS))
else
  PROGRAM_OBJ := $(HOST_OBJ) $(call obj,host,src/main.cpp)
endif

# ---- targets --------------------------------------------------------------------------------
.PHONY: all deps test bench bench-build bench-torch check-docs profile sass run clean print-config probe help \
  gpu-bundle gpu-check fuzz

all: probe $(BUILD)/pompc

help:
	@echo "make            build $(BUILD)/pompc (installs .deps/ first when missing)"
	@echo "make run        the main job (see README.md)"
	@echo "make test       build and run $(BUILD)/test_emu, $(BUILD)/test_race, tests/test_convert.py (+ $(BUILD)/test_gpu on a GPU machine)"
	@echo "make bench      the bench suite (-O3, no sanitizers; plus the GPU build on a GPU)"
	@echo "make bench-build  build $(BUILD)/bench without running it (CI does, so it cannot rot)"
	@echo "make bench-torch  the update in PyTorch (eager, torch.compile; needs torch) beside pompc's, one thread"
	@echo "make check-docs the run-book commands in comments and README select tests (and the cheap ones pass)"
	@echo "make fuzz       seeded parser fuzzers under ASan + UBSan (FUZZ_ITERS, FUZZ_SEED)"
	@echo "make profile    build with -lineinfo and NVTX ranges into build-profile/"
	@echo "make sass       SASS of every kernel into $(BUILD)/sass/"
	@echo "make gpu-check  on a GPU machine: build, GPU tests, pompc check, GPU benchmarks, a dog-run run; one report"
	@echo "make gpu-bundle .deps/gpu-bundle: the dependencies gpu-check needs on a machine without network"
	@echo "make deps       doctest and headless OpenGL (Debian), pinned mujoco + dm-control wheels into .deps/"
	@echo "make print-config  what was found where"
	@echo "make clean      remove build directories"

probe:
	@if [ -n "$(HAVE_NVCC)" ]; then echo "  [x] nvcc $(NVCC)"; else echo "  [ ] nvcc not found: CPU reference backend only"; fi
	@if [ -n "$(HAVE_GPU)" ]; then echo "  [x] GPU present"; else echo "  [ ] no GPU (nvidia-smi)"; fi
	@echo "  GPU arch: $(NVCC_ARCHS_TEXT) -- from $(ARCH_FROM)"

print-config: probe
	@echo "  CXX         $(CXX) ($$($(CXX) -dumpfullversion))"
	@echo "  CUDA_HOME   $(or $(CUDA_HOME),-)"
	@echo "  MuJoCo      $(MUJOCO_FROM): include $(MUJOCO_INC), library $(MUJOCO_LIBDIR)/$(or $(MUJOCO_LIB),<missing: make deps>)"
	@echo "  DMC models  $(DMC_DIR) (pinned wheel dm-control==$(DMCONTROL_VERSION))"
	@echo "  doctest     $(or $(DOCTEST_INC),<missing: make deps>) (Debian doctest-dev)"
	@echo "  OpenGL      $$(ldconfig -p 2>/dev/null | grep -q 'libEGL.so.1 ' && echo libEGL.so.1 || echo '<no libEGL.so.1: make deps>') (opened at run time by save_video; Debian $(GL_DEBS))"
	@echo "  BUILD       $(BUILD)"

# make deps: idempotent; `make`, `make test` and `make bench` call it when the stamp is missing.
deps: $(DEPS_STAMP)

$(DEPS_STAMP):
	@if [ ! -f /usr/include/doctest/doctest.h ] && [ ! -f /usr/local/include/doctest/doctest.h ]; then \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "error: doctest is missing; run 'sudo apt-get install doctest-dev' (or make deps as root)"; exit 1; fi; \
	  echo "deps: installing doctest-dev (Debian)"; \
	  (apt-get install -y -q doctest-dev >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null && apt-get install -y -q doctest-dev >/dev/null)) || \
	   { echo "error: apt-get install doctest-dev failed"; exit 1; }; fi
	@missing=$$(for p in $(GL_DEBS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | \
	    grep -q 'ok installed' || echo $$p; done | tr '\n' ' '); \
	if [ -n "$$missing" ]; then \
	  if ! command -v apt-get >/dev/null; then \
	    echo "note: not Debian: install EGL and Mesa's software renderer for save_video=true"; \
	  elif [ "$$(id -u)" != 0 ]; then \
	    echo "error: $$missing missing (eval videos); run 'sudo apt-get install $$missing' (or make deps as root)"; exit 1; \
	  else echo "deps: installing $$missing(Debian: headless OpenGL for eval videos)"; \
	    (apt-get install -y -q $$missing >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null && apt-get install -y -q $$missing >/dev/null)) || \
	     { echo "error: apt-get install $$missing failed"; exit 1; }; fi; fi
	@echo "deps: mujoco==$(MUJOCO_VERSION) dm-control==$(DMCONTROL_VERSION) -> $(DEPS)/py (pip --no-deps)"
	@rm -rf $(DEPS)/py.tmp && mkdir -p $(DEPS) && \
	  $(PYTHON) -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps --no-compile \
	    --target $(DEPS)/py.tmp mujoco==$(MUJOCO_VERSION) dm-control==$(DMCONTROL_VERSION) && \
	  rm -rf $(DEPS)/py && mv $(DEPS)/py.tmp $(DEPS)/py && touch $@

# ---- the program ----------------------------------------------------------------------------
$(BUILD)/pompc: $(PROGRAM_OBJ)
	$(CXX) $(CXXSTD) -fopenmp $^ -o $@ $(LDMUJOCO) $(PROGRAM_LD)

# make run: the kernel self-check, then a fresh TD-MPC2 run on RUN_TASK into RUN_DIR (removed
# first) and its learning curve. Without a GPU: a small model and planner that learn
# cartpole-balance in minutes on 2 CPU cores (README.md, Set up), one OpenMP thread unless
# OMP_NUM_THREADS says otherwise (the reference ops gain nothing from threads at these sizes and
# lose badly when another process shares the cores); with a GPU: the default 5M model.
RUN_TASK ?= cartpole-balance
RUN_DIR ?= runs/make-run/$(RUN_TASK)
ifdef HAVE_GPU
  RUN_ARGS ?= task=$(RUN_TASK) steps=100000 eval_freq=10000 eval_episodes=5
else
  RUN_ARGS ?= task=$(RUN_TASK) steps=100000 seed_steps=1000 eval_freq=10000 eval_episodes=5 \
    model_size=1 enc_dim=64 mlp_dim=64 latent_dim=32 batch_size=64 \
    iterations=4 num_samples=128 num_elites=16 num_pi_trajs=8 device=cpu
endif
run: all
	$(BUILD)/pompc check
	rm -rf $(RUN_DIR)
	$(if $(HAVE_GPU),,OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1}) $(BUILD)/pompc train $(RUN_ARGS) run_dir=$(RUN_DIR)
	$(BUILD)/pompc plot $(RUN_DIR) task=$(RUN_TASK) out=$(RUN_DIR)/curves.svg

# ---- tests ----------------------------------------------------------------------------------
$(BUILD)/test_emu: $(EMU_OBJ)
	$(CXX) $(CXXSTD) -fopenmp -fsanitize=address,undefined $^ -o $@ $(LDMUJOCO)

$(BUILD)/test_race: $(RACE_OBJ)
	$(CXX) $(CXXSTD) -fopenmp -fsanitize=address,undefined $^ -o $@ $(LDMUJOCO)

$(BUILD)/test_gpu: $(GPU_OBJ)
	$(CXX) $(CXXSTD) -fopenmp $^ -o $@ $(LDMUJOCO) $(CUDA_LDFLAGS)

$(BUILD)/bench: $(BENCH_OBJ)
	$(CXX) $(CXXSTD) -fopenmp $^ -o $@ $(LDMUJOCO)

# make test = test-emu + test-race + test-convert (+ test-gpu with nvcc); `make -j2 test` runs
# them side by side (.ci/run does, with --output-sync so that each one's report stays in one
# piece). OpenMP threads wait passively: the suites share the cores.
TEST_ARGS ?=
RACE_ARGS ?= -ts=race,ops,planner
RACE_AGENT_ARGS ?= -ts=agent -tc='*lockstep: pompc*'
TEST_ENV := OMP_WAIT_POLICY=passive ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
  LSAN_OPTIONS=suppressions=$(abspath tests/lsan.supp) \
  UBSAN_OPTIONS=print_stacktrace=1
.PHONY: test-emu test-race test-gpu test-convert
test: probe test-emu test-race test-convert $(if $(HAVE_NVCC),test-gpu)

# The fault tests (tests/test_faults.cpp) run the program beside the test binary.
test-emu: $(BUILD)/test_emu $(BUILD)/pompc
	$(TEST_ENV) $(BUILD)/test_emu $(TEST_ARGS)

# The race detector over the kernel suites and one whole agent in lockstep (tests/emu/internal.h).
test-race: $(BUILD)/test_race
	$(TEST_ENV) $(BUILD)/test_race $(RACE_ARGS)
	$(TEST_ENV) $(BUILD)/test_race $(RACE_AGENT_ARGS)

# src/tools/tdmpc2_ckpt.py (TD-MPC2 .pt <-> pompc checkpoints) on a tiny run of the program, in
# about 10 s; python3's standard library only (the torch cross-checks run where torch is installed).
test-convert: $(BUILD)/pompc
	$(PYTHON) tests/test_convert.py $(BUILD)/pompc

# Without a GPU only the kernels are compiled with nvcc (the program links them); test_gpu itself
# is built and run where there is a GPU.
ifdef HAVE_GPU
test-gpu: $(BUILD)/test_gpu $(BUILD)/pompc
	@echo "nvcc: every kernel compiled for $(NVCC_ARCHS_TEXT) without warnings"
	$(BUILD)/test_gpu $(TEST_ARGS)
else
test-gpu: $(call obj,cuda,$(KERNELS))
	@echo "nvcc: every kernel compiled for $(NVCC_ARCHS_TEXT) without warnings"
	@echo "test_gpu: not built: no GPU on this machine (on a GPU machine make test builds and runs it, and it fails if it cannot use the GPU)"
endif

bench: probe $(BUILD)/bench $(if $(and $(HAVE_NVCC),$(HAVE_GPU)),$(BUILD)/test_gpu)
	$(BUILD)/bench -ts=bench $(TEST_ARGS)
ifneq ($(and $(HAVE_NVCC),$(HAVE_GPU)),)
	$(BUILD)/test_gpu -ts=bench $(TEST_ARGS)
endif

bench-build: probe $(BUILD)/bench

# make bench-torch: issue 12's CPU comparison, the same update in PyTorch (eager and torch.compile,
# tests/bench_torch.py) beside pompc's reference update, both on BENCH_THREADS threads. torch is
# not a dependency: without it the script says so and the target still succeeds.
BENCH_THREADS ?= 1
bench-torch: $(BUILD)/bench
	$(PYTHON) tests/bench_torch.py --threads $(BENCH_THREADS)
	OMP_NUM_THREADS=$(BENCH_THREADS) $(BUILD)/bench -ts=bench -tc='*update*reference*'

# make fuzz: the seeded mutation fuzzers of tests/fuzz/fuzz.h (json, safetensors, config,
# config-args) under ASan + UBSan, FUZZ_ITERS inputs each; the seed is printed and FUZZ_SEED=N
# replays a run. Not part of make test (which runs 2000 inputs per target).
FUZZ_ITERS ?= 200000
FUZZ_SEED ?=
FUZZ_OBJ := $(call obj,emu,$(SRC_HOST) $(SRC_CUDA) $(KERNELS) \
  $(filter-out tests/emu/emu_test.cpp,$(EMU)) tests/fuzz/fuzz.cpp tests/fuzz/main.cpp)
$(BUILD)/fuzz: $(FUZZ_OBJ)
	$(CXX) $(CXXSTD) -fopenmp -fsanitize=address,undefined $^ -o $@ $(LDMUJOCO)

fuzz: $(BUILD)/fuzz
	$(TEST_ENV) $(BUILD)/fuzz iters=$(FUZZ_ITERS) $(if $(FUZZ_SEED),seed=$(FUZZ_SEED))

# The run-book commands written in comments and README select tests and run (tests/check_docs.sh).
check-docs: probe $(BUILD)/test_emu $(BUILD)/test_race $(BUILD)/bench $(BUILD)/pompc
	tests/check_docs.sh

profile:
	$(MAKE) BUILD=build-profile PROFILE=1 all

# make sass: cuobjdump (+ nvdisasm) from the CUDA toolkit when it ships them, otherwise the pinned
# PyPI wheels of the same tools unpacked into .deps/cuda-tools (minimal toolkits lack them).
CUDA_TOOLS_VERSION := 13.2.51
CUDA_TOOLS_DIR := $(DEPS)/cuda-tools/nvidia/cu13/bin
CUOBJDUMP_BIN := $(or $(wildcard $(CUDA_HOME)/bin/cuobjdump),$(CUDA_TOOLS_DIR)/cuobjdump)

$(CUDA_TOOLS_DIR)/cuobjdump:
	@echo "deps: nvidia-cuda-cuobjdump + nvidia-cuda-nvdisasm==$(CUDA_TOOLS_VERSION) -> $(DEPS)/cuda-tools"
	@rm -rf $(DEPS)/cuda-tools && $(PYTHON) -m pip install -q --disable-pip-version-check \
	  --root-user-action=ignore --no-deps --target $(DEPS)/cuda-tools \
	  nvidia-cuda-cuobjdump==$(CUDA_TOOLS_VERSION) nvidia-cuda-nvdisasm==$(CUDA_TOOLS_VERSION)

# make gpu-bundle: what a machine without network needs to build and test pompc, in
# .deps/gpu-bundle (about 30 MB): MuJoCo's headers and library, the DMC suite's model files, the
# doctest header. make gpu-check uses it when it is there (the device tool carries it).
GPU_BUNDLE := $(DEPS)/gpu-bundle
gpu-bundle: | $(DEPS_STAMP)
	@rm -rf $(GPU_BUNDLE).tmp && mkdir -p $(GPU_BUNDLE).tmp/mujoco/lib $(GPU_BUNDLE).tmp/include/doctest
	@cp -r $(MUJOCO_INC) $(GPU_BUNDLE).tmp/mujoco/include
	@cp $(MUJOCO_LIBDIR)/$(MUJOCO_LIB) $(GPU_BUNDLE).tmp/mujoco/lib/
	@cp -r $(DMC_DIR) $(GPU_BUNDLE).tmp/suite
	@rm -rf $(GPU_BUNDLE).tmp/suite/all_domains.png $(GPU_BUNDLE).tmp/suite/demos
	@cp $(DOCTEST_INC)/doctest.h $(GPU_BUNDLE).tmp/include/doctest/
	@rm -rf $(GPU_BUNDLE) && mv $(GPU_BUNDLE).tmp $(GPU_BUNDLE)
	@echo "gpu-bundle: $(GPU_BUNDLE) ($$(du -sh $(GPU_BUNDLE) | cut -f1))"

# make gpu-check: the one script for a GPU machine (tests/gpu_check.sh): build, the GPU tests,
# pompc check, the GPU benchmarks, a short dog-run training run; one report file.
gpu-check:
	bash tests/gpu_check.sh

sass: $(call obj,cuda,$(KERNELS)) $(CUOBJDUMP_BIN)
	@mkdir -p $(BUILD)/sass
	@for o in $(filter %.o,$^); do n=$$(basename $$o .cu.o); \
	  PATH="$(dir $(CUOBJDUMP_BIN)):$$PATH" $(CUOBJDUMP_BIN) -sass $$o > $(BUILD)/sass/$$n.sass && \
	  echo "$(BUILD)/sass/$$n.sass ($$(grep -c 'Function :' $(BUILD)/sass/$$n.sass) kernels)"; done

clean:
	rm -rf build build-profile

# ---- compile rules --------------------------------------------------------------------------
$(BUILD)/obj-host/%.cpp.o: %.cpp | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CXX) $(HOST_CXXFLAGS) -c $< -o $@

$(BUILD)/obj-cudahost/%.cpp.o: %.cpp | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CXX) $(CUDA_CXXFLAGS) -c $< -o $@

$(BUILD)/obj-cuda/%.cu.o: %.cu
	@mkdir -p $(@D)
	$(NVCC) $(NVCC_FLAGS) -c $< -o $@

# The reference ops carry every training step of the e2e tests: -O2 there (still under ASan and
# UBSan) runs the learning test about 1.7x faster than -O1. The rounding stays -O1's: no fused
# multiply-adds (-O2 would contract a + b * c) and no loop vectorisation (with -fopenmp, expf /
# tanhf would become glibc's SIMD variants, a few ulps apart), so the tests' exact comparisons
# with scalar recomputations and the emulated kernels' tolerances hold as at -O1.
EMU_OPT := -O1
$(BUILD)/obj-emu/src/ref/%.o: EMU_OPT := -O2 -fno-tree-vectorize -ffp-contract=off
$(BUILD)/obj-emu/%.o: % | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CXX) $(EMU_CXXFLAGS) $(EMU_OPT) -x c++ -c $< -o $@

$(BUILD)/obj-race/%.o: % | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CXX) $(RACE_CXXFLAGS) -x c++ -c $< -o $@

$(BUILD)/obj-bench/%.o: % | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CXX) $(BENCH_CXXFLAGS) -x c++ -c $< -o $@

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
