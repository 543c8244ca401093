#!/usr/bin/env bash
# Batch mode on a real single-node Slurm cluster started here (slurm-wlm + munge from Debian):
# writes slurm.conf and a munge key into a temp dir, starts munged, slurmctld and slurmd on
# localhost, and
#  1. submits scripts/slurm/deltawkv-batch.sbatch as `sbatch --array=0-2 --wait` over 12 small
#     volumes and checks that the union of the tasks' outputs equals a single-process
#     `deltawkv batch` run bit for bit (cmp);
#  2. submits it again into a fresh folder, cancels task 0 (scancel) once it has written a
#     volume, resubmits, and checks that volumes finished before the resubmission were not redone
#     (same inode and mtime, logged `skipped`), that no partial file is left and that every
#     output is complete and equal to the single-process run.
# The daemons are stopped by a trap, also on failure. Runs as root (CI) or as a user who can
# start the daemons. Takes about 35 s on 2 cores once deltawkv is built.
#
# usage: scripts/test-slurm.sh [path/to/deltawkv]   (default: cargo build, then target/debug)
# Without slurm-wlm/munge: fails when DELTAWKV_CI is set, otherwise skips saying why.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
started=$(date +%s)

for tool in slurmctld slurmd sbatch squeue scancel munged; do
  if ! command -v "$tool" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$tool" ]; then
    if [ -n "${DELTAWKV_CI:-}" ]; then
      echo "FAIL: $tool not installed (scripts/install-deps.sh installs slurm-wlm and munge)" >&2
      exit 1
    fi
    echo "SKIP: $tool not installed (apt-get install slurm-wlm munge); set DELTAWKV_CI=1 to fail" >&2
    exit 0
  fi
done
export PATH="$PATH:/usr/sbin"

bin=${1:-}
if [ -z "$bin" ]; then
  cargo build --quiet --bin deltawkv
  bin="${CARGO_TARGET_DIR:-$root/target}/debug/deltawkv"
fi
bin=$(readlink -f "$bin")

tmp=$(mktemp -d /tmp/deltawkv-slurm.XXXXXX)
chmod 755 "$tmp"
pids=()
user=$(id -un)
cleanup() {
  local rc=$?
  if [ "${#pids[@]}" -gt 2 ]; then
    # Jobs first (their slurmstepd would outlive slurmd), then the daemons.
    scancel --quiet --user="$user" 2>/dev/null || true
    for _ in $(seq 100); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.1; done
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  # A step daemon our slurmd started (it inherited SLURM_CONF) and that is still there.
  for p in $(pgrep -x slurmstepd || true); do
    if tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx "SLURM_CONF=$tmp/slurm.conf"; then
      kill -9 "$p" 2>/dev/null || true
    fi
  done
  if [ "$rc" -ne 0 ]; then
    echo "--- slurmctld log"; tail -20 "$tmp/slurmctld.log" 2>/dev/null || true
    echo "--- slurmd log"; tail -20 "$tmp/slurmd.log" 2>/dev/null || true
    for f in "$tmp"/job-*.out; do [ -f "$f" ] && { echo "--- $f"; tail -20 "$f"; }; done
  fi
  rm -rf "$tmp"
  echo "test-slurm: $( [ "$rc" -eq 0 ] && echo PASS || echo FAIL ) in $(( $(date +%s) - started )) s"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
ctld_port=$(free_port)
d_port=$(free_port)

# munge with its own key, socket and pid file.
mkdir -p "$tmp/munge" "$tmp/spool" "$tmp/state"
chmod 700 "$tmp/munge"
dd if=/dev/urandom of="$tmp/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$tmp/munge/munge.key"
socket="$tmp/munge/munge.socket"
munged --key-file="$tmp/munge/munge.key" --socket="$socket" --pid-file="$tmp/munge/munged.pid" \
  --log-file="$tmp/munge/munged.log" --seed-file="$tmp/munge/munge.seed" --foreground --force \
  > "$tmp/munge/munged.out" 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -S "$socket" ] && break; sleep 0.1; done
[ -S "$socket" ] || fail "munged did not start"

cat > "$tmp/slurm.conf" <<EOF
ClusterName=deltawkvtest
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=$user
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$socket
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
KillWait=2
InactiveLimit=0
MinJobAge=300
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 RealMemory=2000 State=UNKNOWN
PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
printf 'CgroupPlugin=autodetect\nIgnoreSystemd=yes\n' > "$tmp/cgroup.conf"
export SLURM_CONF="$tmp/slurm.conf"

slurmctld -D -f "$SLURM_CONF" > "$tmp/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" -N localhost > "$tmp/slurmd.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  state=$(sinfo -h -N -o '%T' 2>/dev/null | head -1 || true)
  case "$state" in idle*|mixed*|allocated*) break ;; esac
  sleep 0.2
done
[[ "${state:-}" == idle* ]] || fail "the node did not come up (state '${state:-none}')"
echo "slurm up on ports $ctld_port/$d_port"

# 12 small volumes (4 slices of 96x96 from the fixtures), upscaled on the CPU with the small
# checkpoint of the golden tests (tests/data/golden). Each must take long enough (about half a
# second on 2 cores) for part 2 to cancel a task midway: with 2 slices of 32x32 a task's four
# volumes took 0.2 s once the CPU reference became 5x faster (issue 16), and a task could finish
# before scancel reached it.
/usr/bin/python3 scripts/make_archive.py "$tmp/in" --copies 6 --size 96x96 --slices 4 \
  tests/data/fixtures/nifti/anatomical.nii tests/data/fixtures/nifti/example4d.nii.gz >/dev/null
[ "$(find "$tmp/in" -name '*.nii.gz' | wc -l)" -eq 12 ] || fail "archive not made"
weights="$root/tests/data/golden/model_x2.safetensors"
common=(--scale 2 --device cpu --weights "$weights")
export DELTAWKV_CACHE_DIR="$tmp/cache"

# The single-process reference.
"$bin" batch "$tmp/in" "$tmp/ref" "${common[@]}" --workers 1 --json > "$tmp/ref.json" \
  || fail "single-process batch failed"
[ "$(find "$tmp/ref" -name '*.nii.gz' | wc -l)" -eq 12 ] || fail "reference incomplete"

# sbatch without the GPU request (this node has none); everything else is the real script.
sed '/^#SBATCH --gres/d' scripts/slurm/deltawkv-batch.sbatch > "$tmp/job.sbatch"
submit() {
  sbatch --parsable --chdir="$tmp" --cpus-per-task=1 --mem=300M --time=10 \
    --output="$tmp/job-%A_%a.out" --export=ALL,DELTAWKV="$bin" "$@"
}

same_as_ref() {
  local out=$1 n=0
  while IFS= read -r f; do
    rel=${f#"$tmp/ref/"}
    [ -f "$out/$rel" ] || fail "$out/$rel missing"
    cmp -s "$f" "$out/$rel" || fail "$out/$rel differs from the single-process run"
    n=$((n + 1))
  done < <(find "$tmp/ref" -name '*.nii.gz')
  [ "$n" -eq 12 ] || fail "compared $n files"
  [ "$(find "$out" -name '*.nii.gz' | wc -l)" -eq 12 ] || fail "$out has extra outputs"
  [ -z "$(find "$out" -name '*deltawkv-part*')" ] || fail "partial files left in $out"
}

# 1. The array's union equals the single process.
submit --array=0-2 --wait "$tmp/job.sbatch" "$tmp/in" "$tmp/out1" "${common[@]}" >/dev/null \
  || fail "the job array failed"
same_as_ref "$tmp/out1"
for i in 0 1 2; do
  [ "$(grep -c '"status":"ok"' "$tmp/out1/batch-log.shard-$i-of-3.jsonl")" -eq 4 ] \
    || fail "shard $i did not write its 4 volumes"
done
echo "1. sbatch --array=0-2 --wait: 12 outputs identical to the single-process run"

# 2. Cancel task 0 midway, resubmit, nothing redone, nothing lost.
job=$(submit --array=0-2 "$tmp/job.sbatch" "$tmp/in" "$tmp/out2" "${common[@]}")
log0="$tmp/out2/batch-log.shard-0-of-3.jsonl"
for _ in $(seq 600); do
  [ -f "$log0" ] && grep -q '"status":"ok"' "$log0" && break
  sleep 0.05
done
grep -q '"status":"ok"' "$log0" || fail "task 0 wrote nothing"
scancel "${job}_0"
for _ in $(seq 300); do
  [ -z "$(squeue -h -j "$job" 2>/dev/null)" ] && break
  sleep 0.1
done
[ -z "$(squeue -h -j "$job")" ] || fail "the array did not end"
done_before=$(grep -c '"status":"ok"' "$log0")
[ "$done_before" -lt 4 ] || fail "task 0 finished before it was cancelled; make the volumes larger"
echo "2. task 0 cancelled after $done_before of its 4 volumes"
find "$tmp/out2" -name '*.nii.gz' -printf '%P %i %T@\n' | sort > "$tmp/before.txt"
n_before=$(wc -l < "$tmp/before.txt")
submit --array=0-2 --wait "$tmp/job.sbatch" "$tmp/in" "$tmp/out2" "${common[@]}" >/dev/null \
  || fail "the resubmitted array failed"
find "$tmp/out2" -name '*.nii.gz' -printf '%P %i %T@\n' | sort > "$tmp/after.txt"
missing=$(comm -23 "$tmp/before.txt" "$tmp/after.txt")
[ -z "$missing" ] || fail "finished outputs were redone or removed: $missing"
skipped=$(cat "$tmp"/out2/batch-log.shard-*-of-3.jsonl | grep -c '"status":"skipped"')
[ "$skipped" -eq "$n_before" ] || fail "$skipped skipped log lines for $n_before finished volumes"
same_as_ref "$tmp/out2"
echo "   resubmitted: $n_before finished volumes skipped (same inode and mtime), $((12 - n_before)) written; 12 outputs identical, no partial file"
