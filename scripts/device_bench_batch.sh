#!/usr/bin/env bash
# One call on a one-GPU device machine (kind nvidia-h100-x1): issue 18's throughput figures.
# `deltawkv batch` over COPIES copies of the val volumes (256x256 in-plane) against one
# `deltawkv upscale` process per volume (scripts/bench_batch.sh), then the same archive written as
# DICOM derived series (`batch --format dicom`) for the DICOM encoder's CPU cost per volume.
#
# here:   cargo build --release --no-default-features --bin deltawkv && mkdir -p .devbin \
#         && strip -o .devbin/deltawkv target/release/deltawkv && xz -f -T2 .devbin/deltawkv
#         mkdir -p .benchdata && cp -a ../shared/data/val .benchdata/
# device: carry [".gl", ".devbin", ".benchdata"]; COPIES=20 bash scripts/device_bench_batch.sh
# Brings back: log.txt, bench_batch.json, batch_dicom.json, nvidia-smi.txt.
set -u
T0=$(date +%s)
OUT=${OUT:-/tmp/bench-out}; mkdir -p "$OUT"
LOG="$OUT/log.txt"
# shellcheck source=scripts/device_bench_lib.sh
source scripts/device_bench_lib.sh
device_setup
nvidia-smi --query-gpu=index,name,pci.bus_id,driver_version,memory.total --format=csv,noheader \
  | tee "$OUT/nvidia-smi.txt" | tee -a "$LOG"
echo "cpus: $(nproc)" | tee -a "$LOG"
"$B" --version | tee -a "$LOG"
WORK=/tmp/bb; rm -rf "$WORK"; mkdir -p "$WORK"
echo "== bench_batch ($(( $(date +%s) - T0 )) s)" | tee -a "$LOG"
DELTAWKV=$B SRC=.benchdata/val COPIES=${COPIES:-20} UPSCALE_COPIES=${UPSCALE_COPIES:-3} \
  WORK=$WORK RESULTS=$OUT bash scripts/bench_batch.sh 2>&1 | tee -a "$LOG"
echo "== batch --format dicom ($(( $(date +%s) - T0 )) s)" | tee -a "$LOG"
timeout ${DICOM_TIMEOUT:-120} "$B" batch "$WORK/archive" "$WORK/out-dicom" --scale 2 --device gpu \
  --weights weights/dwkv3m_x2.safetensors --format dicom --json > "$OUT/batch_dicom.json" \
  2>> "$LOG"
echo "rc=$?" | tee -a "$LOG"
python3 - "$OUT/batch_dicom.json" <<'PY' | tee -a "$LOG"
import json, sys
s = json.load(open(sys.argv[1]))
per = s["stage_seconds_per_volume"]
print(f"dicom: {s['ok']} ok, {s['failed']} failed, wall {s['wall_seconds']:.1f} s, "
      f"{s['volumes_per_hour']:.0f} volumes/h, engine busy {100 * s['engine_busy_fraction']:.0f}%")
print("CPU s/volume: " + ", ".join(f"{k} {per[k]:.3f}" for k in per))
PY
du -sh "$WORK/out-batch" "$WORK/out-dicom" 2>/dev/null | tee -a "$LOG"
echo "== done ($(( $(date +%s) - T0 )) s)" | tee -a "$LOG"
