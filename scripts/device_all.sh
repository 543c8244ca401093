#!/usr/bin/env bash
# Everything the open GPU measurements need, in ONE call on a one-GPU device machine, for days
# when machines are scarce: each stage time-boxed, most important first, every result written
# under $OUT as soon as it exists (a stage cut short leaves the ones before it intact).
#   1. the engine (issue 16): parity against the CPU reference on the trained checkpoints, one
#      slice and the 150-slice volume at x2 128x128, default kernels against the state rows over
#      8 lanes (`sg8`) and another segment target, with a per-kernel profile of one slice; a
#      batch of 8 (one slice's self-ensemble);
#   2. the viewer on the GPU (issue 16): scripts/device_startup.sh (pipeline compilation with an
#      empty driver cache, then the viewer's first SR slice and frame times, cold and warm);
#   3. the tensor-core matrix product (issue 16): scripts/device_coop.sh (its tests, bench
#      against the f32 kernels, eval on every val volume); `archive` (issue 18, measured in
#      session 12): scripts/device_bench_batch.sh on a smaller archive, not in the default list;
#   4. the strongest PyTorch (issue 16): torch.compile with CUDA graphs, torch.compile, eager, bf16
#      then fp32, with fla's chunked kernel, for the time left;
#   5. the engine again after PyTorch (clock drift), if time is left.
# The separate scripts (device_bench_baseline.sh, device_bench_batch.sh,
# device_viewer_timing.sh) do the same stages with more time each. STAGES picks and orders the
# stages (default "engine viewer coop torch again"); each one after the first starts only with
# enough of CALL_LIMIT left.
#
# here:   .devbin/deltawkv.xz (cargo build --release --no-default-features --bin deltawkv,
#         stripped, xz), .devbin/app_tests.xz (device_startup.sh), .devbin/gpu_tests.xz
#         (device_coop.sh), .gl (Vulkan loader), .benchdata/val (a copy of ../shared/data/val),
#         .whl (fla-core, einops); the carried total must stay under 64 MiB with the tree (40 MB)
# device: carry [".gl", ".devbin", ".benchdata", ".whl"]; bash scripts/device_all.sh
set -u
T0=$(date +%s)
LIMIT=${CALL_LIMIT:-575}
# The stages write about ten files, but a call brings back at most 8: they write under /tmp/res,
# and after every stage it is packed into $OUT/results.tar.gz beside a copy of the log.
FINAL=${OUT:-/tmp/bench-out}; mkdir -p "$FINAL"
export OUT=/tmp/res; mkdir -p "$OUT"
ERRLOG="$OUT/log.txt"
pack() {
  tar czf "$FINAL/results.tar.gz.tmp" -C "$OUT" . && mv "$FINAL/results.tar.gz.tmp" "$FINAL/results.tar.gz"
  cp "$ERRLOG" "$FINAL/log.txt"
}
left() { echo $(( LIMIT - ($(date +%s) - T0) )); }
stage() { echo "== $1 ($(( $(date +%s) - T0 )) s, $(left) s left)" | tee -a "$ERRLOG"; }
# shellcheck source=scripts/device_bench_lib.sh
source scripts/device_bench_lib.sh
device_intro

run_engine() {
  stage "engine"
  bench parity_x2_32 45 --scale 2 --size 32x32 --slices 4 --cpu-slices 4 --repeat 1 --weights $W2 \
    --kernels default,seg-off
  bench parity_x4_32 45 --scale 4 --size 32x32 --slices 4 --cpu-slices 4 --repeat 1 --weights $W4
  bench r1_x2_128_b1 45 --scale 2 --size 128x128 --slices 1 --cpu-slices 0 --repeat 3 --profile \
    --weights $W2 --kernels default,sg8,seg512
  # one self-ensembled slice: its eight orientations are one batch of 8
  bench r1_x2_128_b8 30 --scale 2 --size 128x128 --slices 8 --cpu-slices 0 --repeat 3 \
    --weights $W2 --kernels default,seg-off
  bench r1_x2_128_v150 60 --scale 2 --size 128x128 --slices 150 --cpu-slices 0 --repeat 2 \
    --weights $W2 --kernels default,sg8
}

run_viewer() {
  stage "viewer"
  [ "$(left)" -gt 40 ] || return 0
  local t=$(( $(left) - 15 < ${T_VIEWER:-90} ? $(left) - 15 : ${T_VIEWER:-90} ))
  timeout "$t" env OUT="$OUT/startup" RUNS_COMPILE=${RUNS_COMPILE:-1} RUNS_WARM=${RUNS_WARM:-2} \
    T_RUN=40 bash scripts/device_startup.sh > /dev/null 2>&1
  echo "rc=$?" | tee -a "$ERRLOG"
  tail -n 6 "$OUT/startup/startup.jsonl" 2>/dev/null | tee -a "$ERRLOG"
}

run_coop() {
  stage "coop"
  [ "$(left)" -gt 60 ] || return 0
  local t=$(( $(left) - 10 < ${T_COOP:-170} ? $(left) - 10 : ${T_COOP:-170} ))
  timeout "$t" env OUT="$OUT/coop" T_TESTS=60 bash scripts/device_coop.sh > /dev/null 2>&1
  echo "rc=$?" | tee -a "$ERRLOG"
  tail -n 12 "$OUT/coop/coop.log" 2>/dev/null | tee -a "$ERRLOG"
}

run_archive() {
  stage "archive"
  [ "$(left)" -gt 60 ] || return 0
  local t=$(( $(left) - 10 < ${T_BATCH:-200} ? $(left) - 10 : ${T_BATCH:-200} ))
  timeout "$t" env COPIES=${COPIES:-4} UPSCALE_COPIES=${UPSCALE_COPIES:-2} \
    DICOM_TIMEOUT=${DICOM_TIMEOUT:-60} OUT="$OUT/batch" bash scripts/device_bench_batch.sh \
    > /dev/null 2>&1
  echo "rc=$?" | tee -a "$ERRLOG"
  tail -n 12 "$OUT/batch/log.txt" 2>/dev/null | tee -a "$ERRLOG"
}

run_torch() {
  stage "torch"
  local t_torch=$(( $(left) - ${RESERVE:-70} ))
  [ "$t_torch" -gt 60 ] || return 0
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .whl/*.whl && export PYTHONPATH=/tmp/site
  PYTHONUNBUFFERED=1 timeout "$t_torch" python3 train/bench_torch.py --scales 2 --sizes 128 \
    --batch 50 --repeat 3 --budget $(( t_torch - 45 )) --modes compile-cg,compile,eager \
    --precisions bf16,fp32 --json "$OUT/torch.json" 2>&1 | grep -v -i warn \
    | tee "$OUT/torch.log" | tail -n 30 | tee -a "$ERRLOG"
}

run_again() {
  stage "engine again"
  if [ "$(left)" -gt 40 ]; then
    bench r2_x2_128_b1 20 --scale 2 --size 128x128 --slices 1 --cpu-slices 0 --repeat 3 \
      --weights $W2 --kernels default,seg-off
  fi
  if [ "$(left)" -gt 30 ]; then
    bench r2_x2_128_v150 25 --scale 2 --size 128x128 --slices 150 --cpu-slices 0 --repeat 2 \
      --weights $W2
  fi
}

for s in ${STAGES:-engine viewer coop torch again}; do
  "run_$s"
  pack
done
echo "call wall time $(( $(date +%s) - T0 )) s" | tee -a "$ERRLOG"
pack
