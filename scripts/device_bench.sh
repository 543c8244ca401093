#!/usr/bin/env bash
# GPU benchmarks on the device machine (H100), one call: the WGSL engine (`deltawkv bench`, a
# headless binary built on the development machine and carried xz-compressed as
# .devbin/deltawkv.xz) with its kernel variants in the same process, the PyTorch reference
# (train/bench_torch.py) on the same checkpoints, and `deltawkv eval` of the val volumes on the GPU.
#
# here:   cargo build --no-default-features --bin deltawkv && mkdir -p .devbin \
#         && strip -o .devbin/deltawkv target/debug/deltawkv && xz -f -T2 .devbin/deltawkv
#         mkdir -p .devdata/val && cp -r ../shared/data/val/* .devdata/val/
# device: carry [".gl", ".devbin", ".whl", ".devdata/val"]; bash scripts/device_bench.sh
# Results (a device call returns at most 8 files): $OUT/bench.jsonl (one line per bench run:
# name and result), bench.err, eval_x{2,4}.jsonl, eval.err, torch.json, gpu.txt.
# LARGE=1 runs only the 320x320 (and x4 256x256) engine benches.
# ONLY_ENGINE=1 runs only the engine benches (variants: $VARIANTS, default below), no PyTorch, no eval.
# Each step has its own time limit (seconds, environment variables T_*), so one slow step cannot
# take the call's whole budget.
set -u
T0=$(date +%s)
OUT=${OUT:-/tmp/bench-out}; mkdir -p "$OUT"
# shellcheck source=scripts/device_bench_lib.sh
source scripts/device_bench_lib.sh
device_setup
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"
W2=weights/dwkv3m_x2.safetensors
W4=weights/dwkv3m_x4.safetensors
ERRLOG="$OUT/bench.err"
V=${VARIANTS:-default,vec4-scan,per-direction}
if [ "${LARGE:-0}" = 1 ]; then
  # the larger slice sizes of issue 8, default kernels only
  bench x2_320_b1 25 --scale 2 --size 320x320 --slices 1 --cpu-slices 0 --repeat 1 --weights $W2
  bench x4_320_b1 25 --scale 4 --size 320x320 --slices 1 --cpu-slices 0 --repeat 1 --weights $W4
  bench x4_256_b1 20 --scale 4 --size 256x256 --slices 1 --cpu-slices 0 --repeat 1 --weights $W4
  bench x2_320_v60 40 --scale 2 --size 320x320 --slices 60 --cpu-slices 0 --repeat 1 --weights $W2
  bench x4_320_v60 40 --scale 4 --size 320x320 --slices 60 --cpu-slices 0 --repeat 1 --weights $W4
  echo "call wall time $(( $(date +%s) - T0 )) s"
  exit 0
fi
if [ "${ONLY_ENGINE:-0}" = 1 ]; then
  bench parity_x2_32 60 --scale 2 --size 32x32 --slices 4 --cpu-slices 4 --repeat 1 --weights $W2 --kernels $V
  bench x2_128_b1 60 --scale 2 --size 128x128 --slices 1 --cpu-slices 0 --repeat 3 --profile --weights $W2 --kernels $V
  bench x2_128_v150 60 --scale 2 --size 128x128 --slices 150 --cpu-slices 0 --repeat 1 --weights $W2 --kernels ${V%,per-direction}
  bench x4_128_b1 30 --scale 4 --size 128x128 --slices 1 --cpu-slices 0 --repeat 2 --weights $W4 --kernels ${V%,per-direction}
  bench x2_256_b1 30 --scale 2 --size 256x256 --slices 1 --cpu-slices 0 --repeat 2 --weights $W2 --kernels ${V%,per-direction}
  bench x4_128_v150 40 --scale 4 --size 128x128 --slices 150 --cpu-slices 0 --repeat 1 --weights $W4 --kernels default
  bench x2_256_v150 40 --scale 2 --size 256x256 --slices 150 --cpu-slices 0 --repeat 1 --weights $W2 --kernels default
  echo "call wall time $(( $(date +%s) - T0 )) s"
  exit 0
fi
# In order of importance (a later step may run out of the call's time).
# parity of every variant against the CPU reference (small slices: the CPU is slow)
bench parity_x2_32 ${T_PAR:-60} --scale 2 --size 32x32 --slices 4 --cpu-slices 4 --repeat 1 --weights $W2 --kernels default,per-direction,baseline
# batch 1 and a 150-slice volume, x2, 128x128
bench x2_128_b1 ${T_B1:-90} --scale 2 --size 128x128 --slices 1 --cpu-slices 0 --repeat 2 --profile --weights $W2 --kernels default,per-direction,baseline
bench x2_128_v150 ${T_V:-100} --scale 2 --size 128x128 --slices 150 --cpu-slices 0 --repeat 1 --weights $W2 --kernels default,per-direction
# the PyTorch reference, same checkpoints and sizes
if ls .whl/fla_core-*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/fla_core-*.whl && export PYTHONPATH=/tmp/site
fi
echo "== torch ($(( $(date +%s) - T0 )) s)"
PYTHONUNBUFFERED=1 timeout ${T_TORCH:-130} python3 train/bench_torch.py --sizes ${TORCH_SIZES:-128,256} \
  --budget ${TORCH_BUDGET:-100} --json "$OUT/torch.json" 2>&1 | grep -v Warning | tail -n 30
# the model card's numbers through the Rust eval on the GPU
for s in 2 4; do
  : > "$OUT/eval_x$s.jsonl"
  for f in $(find .devdata/val -name '*.nii*' | sort); do
    echo "== eval x$s $f ($(( $(date +%s) - T0 )) s)"
    DELTAWKV_KERNELS=${EVAL_KERNELS:-default} timeout ${T_EVAL:-25} "$B" eval "$f" --scale $s \
      --weights weights/dwkv3m_x$s.safetensors --device gpu --json >> "$OUT/eval_x$s.jsonl" 2>> "$OUT/eval.err"
    echo "rc=$?"
  done
done
bench x2_256_b1 ${T_256:-45} --scale 2 --size 256x256 --slices 1 --cpu-slices 0 --repeat 2 --weights $W2 --kernels default,per-direction
bench x4_128_b1 ${T_X4:-45} --scale 4 --size 128x128 --slices 1 --cpu-slices 0 --repeat 2 --weights $W4 --kernels default,per-direction
bench x2_256_v150 ${T_256V:-60} --scale 2 --size 256x256 --slices 150 --cpu-slices 0 --repeat 1 --weights $W2 --kernels default
bench x4_128_v150 ${T_X4V:-60} --scale 4 --size 128x128 --slices 150 --cpu-slices 0 --repeat 1 --weights $W4 --kernels default
echo "call wall time $(( $(date +%s) - T0 )) s"
