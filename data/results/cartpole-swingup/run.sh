#!/usr/bin/env bash
# The CPU learning curves of data/results/cartpole-swingup/: tdmpc2, bmpc and pompc (as published),
# cartpole-swingup, model_size=1 (1.2M parameters), every other setting the preset's (TD-MPC2's
# batch 256, planner N=512 E=64 P=24 6 iterations, seed_steps 2500 with its burst of 2500
# updates, BMPC's lazy reanalysis of 3 x 20 states every 10 updates), 2 seeds each, eval every
# 5k env steps (3 episodes) and at the end. Only the length is cut: 10k env steps (5k random
# seed-phase steps, then 2.5k planned agent steps with one update each).
#
# Cost on the 2-core dev machine (2 OpenMP threads, `nproc` 2): one plan 0.24 s, one update
# 0.19 s, one reanalysis (60 plans batched) ~14 s, so an agent step costs ~0.43 s for tdmpc2 and
# ~1.9 s for bmpc / pompc; a tdmpc2 run takes ~40 min, a bmpc or pompc run ~2.6 h (its burst of
# 2500 updates with 250 reanalyses alone ~70 min): about 12 h in all. The runs go one after the
# other with every core, checkpoint at each episode end (1k env steps) and the script resumes any
# unfinished run, so it can be stopped and started again (a stop inside the burst loses the
# burst). After each run its CSVs are copied here and the plot (curves.svg, curves.png: mean over
# seeds with a 95% bootstrap band) is redrawn from the finished runs.
#   usage: [POMPC=build/pompc] [OUT=runs/results] [DEVICE=cpu|cuda] \
#            data/results/cartpole-swingup/run.sh
# (DEVICE=cuda on a GPU machine: the same runs, every setting the same, in minutes.)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
POMPC=${POMPC:-build/pompc}
OUT=${OUT:-runs/results}
DEVICE=${DEVICE:-cpu}
STEPS=10000
finished() {  # run_dir: its eval.csv has the row at the last env step
  [[ -f "$1/eval.csv" ]] && awk -F, -v s=$STEPS '$1 == s { f = 1 } END { exit !f }' "$1/eval.csv"
}
run() {  # preset seed
  local dir="$OUT/cartpole-swingup/$1/$2" resume=false
  if finished "$here/$1/$2"; then
    echo "$1 seed $2: done (committed in $here/$1/$2)"
    return
  elif finished "$dir"; then
    echo "$1 seed $2: done"
  else
    [[ -f "$dir/checkpoint.safetensors" ]] && resume=true
    echo "$1 seed $2: running (resume=$resume), log $OUT/$1-$2.log"
    "$POMPC" train preset="$1" seed="$2" task=cartpole-swingup model_size=1 steps=$STEPS \
      eval_freq=5000 eval_episodes=3 checkpoint_freq=1000 device=$DEVICE run_dir="$dir" \
      resume=$resume >> "$OUT/$1-$2.log" 2>&1
  fi
  mkdir -p "$here/$1/$2"
  cp "$dir"/{config.txt,train.csv,eval.csv} "$here/$1/$2/"
  local finished=()
  for d in "$here"/{tdmpc2,bmpc,pompc}/{1,2}; do [[ -f "$d/eval.csv" ]] && finished+=("$d"); done
  "$POMPC" plot "${finished[@]}" task=cartpole-swingup out="$here/curves.svg"
}
mkdir -p "$OUT"
for preset in tdmpc2 pompc bmpc; do
  for seed in 1 2; do run $preset $seed; done
done
