#!/usr/bin/env bash
# The CPU learning curves of data/results/cartpole-swingup/: tdmpc2, bmpc and pompc (as published),
# cartpole-swingup, model_size=1 (1.2M parameters), every other setting the preset's (TD-MPC2's
# batch 256, planner N=512 E=64 P=24 6 iterations, seed_steps 2500 with its burst of 2500
# updates, BMPC's reanalysis), 2 seeds each, eval every 5k env steps and at the end.
# Only the length is cut to fit a 2-core CPU: 8k env steps (5k random seed-phase steps, then 1.5k
# planned agent steps with one update each), 3 evaluation episodes (one takes ~70 s: 500 plans).
# Runs two at a time, one OpenMP thread each; about 2 hours on 2 cores.
#   usage: data/results/cartpole-swingup/run.sh [POMPC=build/pompc] [OUT=runs/results]
set -euo pipefail
POMPC=${POMPC:-build/pompc}
OUT=${OUT:-runs/results}
run() {  # preset seed
  OMP_NUM_THREADS=1 "$POMPC" train preset="$1" seed="$2" task=cartpole-swingup model_size=1 \
    steps=8000 eval_freq=5000 eval_episodes=3 device=cpu run_dir="$OUT/cartpole-swingup/$1/$2" \
    > "$OUT/$1-$2.log" 2>&1
}
mkdir -p "$OUT"
# Two workers, the slow presets (reanalysis) first.
(run bmpc 1; run pompc 1; run tdmpc2 1) &
(run bmpc 2; run pompc 2; run tdmpc2 2) &
wait
"$POMPC" plot "$OUT"/cartpole-swingup/{tdmpc2,bmpc,pompc}/{1,2} \
  out="$OUT/curves.svg"
