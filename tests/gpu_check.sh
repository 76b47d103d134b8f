#!/usr/bin/env bash
# make gpu-check: everything a GPU machine has to show, in one report, in under 8 minutes.
#
#   1. the machine: nvidia-smi, nvcc, CPU
#   2. build: pompc, test_gpu (every kernel for the local GPU's arch + sm_80/sm_90 + PTX)
#   3. test_gpu on the kernel suites (ops, planner), the update parity and golden tests, the agent
#      in lockstep with the CPU and the trainer on the CUDA backend (what exercises the GPU;
#      CPU-only suites are test_emu's business)
#   4. pompc check device=cuda: every op at the dog 5M sizes and odd ones, max error per op
#   5. the GPU benchmarks: optimizer, update and plan step at dog 5M, training throughput
#   6. a short dog-run training run on the GPU with the default 5M model (6k env steps: the seed
#      phase, the 2500-update burst, ~500 planned steps), its steps/s, and an Nsight Systems
#      summary of a few hundred steps when nsys is installed
# Each step has a time limit and the script goes on after a failure; the last lines of the
# report say which steps failed. Offline machines: `make gpu-bundle` here first, and carry
# .deps/gpu-bundle (the script uses it when present).
#
#   usage: make gpu-check [REPORT=path]     (REPORT defaults to $OUT/gpu-check.txt when the
#                                            device tool's $OUT is set, else gpu-check.txt)
set -uo pipefail
cd "$(dirname "$0")/.."
REPORT=${REPORT:-${OUT:+$OUT/}gpu-check.txt}
BUILD=${BUILD:-build-gpu}
JOBS=$(nproc)
start=$(date +%s)
failed=()
: > "$REPORT"

say() { echo "$*" | tee -a "$REPORT"; }
# step NAME LIMIT_S COMMAND...: runs it with a time limit, its output into the report.
step() {
  local name=$1 limit=$2
  shift 2
  say ""
  say "== $name (t = $(( $(date +%s) - start )) s, limit ${limit} s): $*"
  local t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >> "$REPORT" 2>&1
  local rc=$?
  say "-- $name: exit $rc after $(( $(date +%s) - t0 )) s"
  [ "$rc" -eq 0 ] || failed+=("$name (exit $rc)")
  return 0
}

MAKEVARS=(BUILD="$BUILD")
if [ -d .deps/gpu-bundle ]; then
  MAKEVARS+=(MUJOCO_DIR=.deps/gpu-bundle/mujoco DMC_DIR=.deps/gpu-bundle/suite
             DOCTEST_INC=.deps/gpu-bundle/include/doctest)
fi

say "pompc gpu-check, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
step "machine" 30 bash -c 'nvidia-smi; nvcc --version | tail -2; lscpu | grep -E "Model name|^CPU\(s\)"'
step "build" 240 make -j"$JOBS" "${MAKEVARS[@]}" all "$BUILD/test_gpu"
step "test_gpu: kernel suites (ops, planner)" 120 "$BUILD/test_gpu" -ts=ops,planner
step "test_gpu: update parity, agent lockstep, trainer on CUDA" 150 "$BUILD/test_gpu" \
  -tc='*parity*,*golden*,*2 backends*,*lockstep*,*CUDA backend*'
step "pompc check device=cuda" 90 "$BUILD/pompc" check device=cuda
step "GPU benchmarks" 120 "$BUILD/test_gpu" -ts=bench -tc='*gpu-only*,*on the GPU*'
run_dir=$(mktemp -d)
step "dog-run, 5M model, 6k env steps" 150 "$BUILD/pompc" train task=dog-run steps=6000 \
  eval_freq=6000 eval_episodes=1 device=cuda save_buffer=false run_dir="$run_dir/dog"
if command -v nsys > /dev/null; then
  step "nsys: 300 planned steps of dog-run" 90 nsys profile --stats=true -o "$run_dir/pompc" \
    --force-overwrite=true --trace=cuda,nvtx "$BUILD/pompc" train task=dog-run steps=600 \
    seed_steps=10 eval_freq=100000 eval_episodes=1 device=cuda save_buffer=false \
    run_dir="$run_dir/nsys"
else
  say ""
  say "== nsys: not installed, no timeline summary"
fi
rm -rf "$run_dir"

say ""
say "gpu-check: $(( $(date +%s) - start )) s in all"
if [ ${#failed[@]} -eq 0 ]; then
  say "gpu-check: every step passed"
else
  for f in "${failed[@]}"; do say "gpu-check: FAILED: $f"; done
  exit 1
fi
