#!/bin/bash
# tests/slurm_check.sh: pompc sweep's Slurm backend (src/train/sweep.h) against a real Slurm.
#
# Run book
#   what     starts a private single-node Slurm in a temp dir: munged with its own key and
#            socket, slurmctld and slurmd (ports 16817 / 16818) from a minimal slurm.conf there
#            (SLURM_CONF points at it; nothing under /etc is used or changed). Then
#            `pompc sweep backend=slurm submit=true` of cartpole-balance,pendulum-swingup x
#            seeds 1,2 with a tiny model (2000 env steps, a few seconds per run), waits for the
#            job array to leave the queue and checks that every array task COMPLETED, every run
#            dir has eval.csv at env step 2000 and a checkpoint, and every task's Slurm log ends
#            its run. Then it submits the same script again: every task must resume from its
#            checkpoint (resume=auto) and end at once. Last, a longer single run is requeued
#            (scontrol requeue) after its first checkpoint: it must resume from there and finish.
#            The daemons are stopped at the end.
#   needs    root (slurmd), slurm-wlm and munge (apt-get install slurm-wlm munge), build/pompc
#            (make). Without Slurm it prints 'skipped: slurm not installed' and exits 0.
#   run      tests/slurm_check.sh           (about 45 s on 2 cores; not part of make test)
#            POMPC=path/to/pompc picks the binary; KEEP=1 keeps the temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in sbatch squeue scontrol slurmctld slurmd munged mungekey; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "skipped: slurm not installed ($tool not found; apt-get install slurm-wlm munge)"
    exit 0
  fi
done
if [ "$(id -u)" != 0 ]; then
  echo "skipped: starting slurmd needs root"
  exit 0
fi
POMPC="$(realpath "${POMPC:-build/pompc}")"
[ -x "$POMPC" ] || { echo "slurm_check: $POMPC is missing: run make first"; exit 1; }

D="$(mktemp -d /tmp/pompc-slurm-XXXXXX)"
NODE="$(hostname -s)"
ok=0
stop() {
  for f in slurmd slurmctld munge/munged; do
    if [ -f "$D/$f.pid" ]; then kill "$(cat "$D/$f.pid")" 2>/dev/null || true; fi
  done
  if [ "$ok" = 1 ] && [ -z "${KEEP:-}" ]; then
    sleep 1
    rm -rf "$D"
  else
    echo "slurm_check: logs and runs kept in $D"
  fi
}
trap stop EXIT

fail() {
  echo "slurm_check: FAILED: $*"
  echo "--- slurmctld.log (last 20 lines)"; tail -n 20 "$D/slurmctld.log" 2>/dev/null || true
  echo "--- slurmd.log (last 20 lines)"; tail -n 20 "$D/slurmd.log" 2>/dev/null || true
  exit 1
}

# munged: its own key, socket, pid, log and seed files.
mkdir -p "$D/munge" "$D/munge-key" "$D/state" "$D/spool"
chmod 755 "$D" "$D/munge"
chmod 700 "$D/munge-key"
mungekey --create --keyfile="$D/munge-key/munge.key"
munged --force -S "$D/munge/munge.sock" --key-file="$D/munge-key/munge.key" \
  --log-file="$D/munge/munged.log" --pid-file="$D/munge/munged.pid" \
  --seed-file="$D/munge/munged.seed"

cat > "$D/slurm.conf" <<EOF
ClusterName=pompccheck
SlurmctldHost=$NODE
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
AuthInfo=socket=$D/munge/munge.sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/slurmctld.log
SlurmdLogFile=$D/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
NodeName=$NODE CPUs=$(nproc) State=UNKNOWN
PartitionName=check Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$D/slurm.conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 60); do
  if [ "$(sinfo -h -o %t 2>/dev/null)" = idle ]; then break; fi
  sleep 1
done
[ "$(sinfo -h -o %t 2>/dev/null)" = idle ] || fail "the node did not come up idle"
echo "slurm_check: single-node Slurm up ($(sinfo -V), node $NODE, $(nproc) CPUs)"

# Waits until job $1 has left the queue (at most 5 minutes) and checks that its $2 array tasks
# COMPLETED.
wait_job() {
  for _ in $(seq 300); do
    if [ -z "$(squeue -h -j "$1" 2>/dev/null)" ]; then break; fi
    sleep 1
  done
  [ -z "$(squeue -h -j "$1" 2>/dev/null)" ] || fail "job $1 still queued after 5 minutes"
  local states
  states="$(scontrol -o show job "$1" | grep -o 'JobState=[A-Z_]*' | sort | uniq -c)"
  echo "slurm_check: job $1: $states"
  [ "$(scontrol -o show job "$1" | grep -c 'JobState=COMPLETED')" = "$2" ] ||
    fail "job $1: not every array task COMPLETED"
}

OUT="$D/runs"
TINY="action_repeat=20 steps=2000 seed_steps=50 eval_freq=2000 eval_episodes=1
  checkpoint_freq=2000 model_size=1 enc_dim=32 mlp_dim=32 latent_dim=16 batch_size=16
  buffer_size=10000 iterations=2 num_samples=32 num_elites=8 num_pi_trajs=4 device=cpu"
# shellcheck disable=SC2086
"$POMPC" sweep tasks=cartpole-balance,pendulum-swingup seeds=1,2 backend=slurm name=check \
  out="$OUT" submit=true slurm_cpus=1 slurm_time=10 $TINY | tee "$D/sweep.out"
SCRIPT="$OUT/sweep-check.sbatch"
bash -n "$SCRIPT" || fail "$SCRIPT is not valid bash"
JOB="$(grep -o 'Submitted batch job [0-9]*' "$D/sweep.out" | grep -o '[0-9]*$')" ||
  fail "sbatch printed no job id"
wait_job "$JOB" 4
i=0
for task in cartpole-balance pendulum-swingup; do
  for seed in 1 2; do
    dir="$OUT/$task/tdmpc2/$seed"
    log="$OUT/slurm/${JOB}_$i.out"
    [ -f "$dir/checkpoint.safetensors" ] || fail "$dir has no checkpoint"
    [ "$(tail -n 1 "$dir/eval.csv" | cut -d, -f1)" = 2000 ] || fail "$dir/eval.csv ends before 2000"
    grep -q "train: done at env step 2000" "$log" || fail "$log does not end its run"
    echo "slurm_check: index $i $task seed $seed: eval.csv $(tail -n 1 "$dir/eval.csv"), log $log"
    i=$((i + 1))
  done
done

# The same script again (as after a requeue): every task resumes from its checkpoint and ends.
JOB2="$(sbatch --parsable "$SCRIPT")"
wait_job "$JOB2" 4
for i in 0 1 2 3; do
  log="$OUT/slurm/${JOB2}_$i.out"
  grep -q "^resume: .*at env step 2000" "$log" || fail "$log: the resubmitted task did not resume"
  grep -q "train: done at env step 2000" "$log" || fail "$log does not end its run"
done
echo "slurm_check: resubmitted job $JOB2: all 4 tasks resumed from their checkpoints and ended"

# A requeue of a running task (scontrol requeue, as on preemption or a node failure): the task
# starts again and resumes from the checkpoint it wrote at 2000 env steps. Slurm delays a
# requeued job's start by two minutes; StartTime=now takes the delay away.
RQ="$D/requeue"
# shellcheck disable=SC2086
"$POMPC" sweep tasks=cartpole-balance seeds=1 backend=slurm name=requeue out="$RQ" submit=true \
  slurm_cpus=1 slurm_time=10 ${TINY/action_repeat=20 steps=2000/action_repeat=2 steps=8000} |
  tee "$D/requeue.out"
JOB3="$(grep -o 'Submitted batch job [0-9]*' "$D/requeue.out" | grep -o '[0-9]*$')" ||
  fail "sbatch printed no job id"
dir="$RQ/cartpole-balance/tdmpc2/1"
for _ in $(seq 120); do
  if [ -f "$dir/checkpoint.safetensors" ]; then break; fi
  sleep 1
done
[ -f "$dir/checkpoint.safetensors" ] || fail "$dir: no checkpoint after 2 minutes"
scontrol requeue "${JOB3}_0"
for _ in $(seq 60); do
  if [ "$(squeue -h -j "$JOB3" -o %T)" = PENDING ]; then break; fi
  sleep 1
done
scontrol update JobId="${JOB3}_0" StartTime=now
wait_job "$JOB3" 1
log="$RQ/slurm/${JOB3}_0.out"
scontrol -o show job "$JOB3" | grep -q 'Restarts=1' || fail "job $JOB3 was not restarted once"
grep -q "^resume: .*at env step [1-9]" "$log" || fail "$log: the requeued task did not resume"
grep -q "train: done at env step 8000" "$log" || fail "$log does not end its run"
[ "$(tail -n 1 "$dir/eval.csv" | cut -d, -f1)" = 8000 ] || fail "$dir/eval.csv ends before 8000"
echo "slurm_check: requeued job $JOB3: $(grep '^resume: ' "$log" | cut -c1-120)"
ok=1
echo "slurm_check: passed"
