#!/usr/bin/env bash
# One training call on the GPU machine (the `device` tool), resuming from .devstate/x$SCALE.
#
#   train/run_device.sh SCALE [train.py options...]
#
# Run from the repository root with `carry: [".devdata", ".devstate", ".whl"]`. Environment:
#   BUDGET  seconds this call may take in all (default 570, under the 600 s command limit)
#   CHECK=1 run train/device_check.py first (environment, fla accuracy, steps/s table)
#   NOCACHE=1 do not bring the compiler caches back (saves a file and ~9 MB of the transfer)
# Writes into $OUT (at most 7 files, as a device call brings back 8):
#   x$SCALE/{model.pt,ema.pt,adam.pt,logs.tar.gz,best_x$SCALE.safetensors}, check.json,
#   cache.tar.gz (Triton + Inductor caches; the next call unpacks .devstate/cache.tar.gz).
set -u
T0=$(date +%s)
SCALE=$1; shift
OUT=${OUT:-/tmp/dwkv-out}
WORK=/tmp/dwkv-work/x$SCALE
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1
export TRITON_CACHE_DIR=/tmp/dwkv-cache/triton TORCHINDUCTOR_CACHE_DIR=/tmp/dwkv-cache/inductor
if [ "${PYTHONPATH:-}" != /tmp/site ] && ls .whl/fla_core-*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/fla_core-*.whl && export PYTHONPATH=/tmp/site
fi
if [ ! -d /tmp/dwkv-cache ] && [ -f .devstate/cache.tar.gz ]; then tar -xzf .devstate/cache.tar.gz -C /tmp; fi
nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm --format=csv,noheader
if [ "${CHECK:-0}" = 1 ]; then
  python3 train/device_check.py --out "$OUT/check.json" ${CHECK_ARGS:-}
fi
RESUME=()
if [ -f ".devstate/x$SCALE/model.pt" ]; then RESUME=(--resume ".devstate/x$SCALE"); fi
LIMIT=$(( ${BUDGET:-570} - ($(date +%s) - T0) - 15 ))
echo "train time limit ${LIMIT}s"
python3 train/train.py --scale "$SCALE" --out "$WORK" --mirror "$OUT/x$SCALE" "${RESUME[@]}" \
  --time-limit "$LIMIT" "$@" 2>&1 | tee "$WORK/run.log"
# the run log goes into the logs tarball with the CSVs
if [ -f "$OUT/x$SCALE/logs.tar.gz" ]; then
  (cd "$WORK" && tar -czf "$OUT/x$SCALE/logs.tar.gz" train_log.csv val_log.csv val_detail.jsonl plot.png run.log 2>/dev/null)
fi
if [ "${NOCACHE:-0}" != 1 ] && [ -d /tmp/dwkv-cache ]; then
  tar -czf /tmp/cache.tar.gz -C /tmp dwkv-cache
  SIZE=$(stat -c %s /tmp/cache.tar.gz)
  echo "cache.tar.gz: $SIZE bytes"
  if [ "$SIZE" -lt 15000000 ]; then cp /tmp/cache.tar.gz "$OUT/cache.tar.gz"; fi
fi
ls -la "$OUT" "$OUT/x$SCALE"
echo "call wall time $(( $(date +%s) - T0 ))s"
