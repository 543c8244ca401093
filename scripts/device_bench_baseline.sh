#!/usr/bin/env bash
# One call on a one-GPU device machine (issue 16): the WGSL engine against the strongest PyTorch on
# the same card in the same call. PyTorch: eager, torch.compile and torch.compile with CUDA graphs,
# float32 and bf16 autocast, with fla's chunked RWKV-7 kernel, then PyTorch's own chunked scan
# compiled in bf16 with the time left. The engine runs before and after PyTorch (so that clock drift hits both), on the
# 150-slice volume (x2, 128x128 LR) and on one slice, plus parity against the CPU reference on the
# trained checkpoints.
#
# here:   cargo build --release --no-default-features --bin deltawkv, stripped and
#         xz-compressed as .devbin/deltawkv.xz; .gl holds the Vulkan loader (device README);
#         .whl holds fla_core-0.6.0-py3-none-any.whl and einops-0.8.1-py3-none-any.whl
# device: carry [".gl", ".devbin", ".whl"]; bash scripts/device_bench_baseline.sh
# Brings back: bench.jsonl (engine), torch.json and torch_chunked.json (PyTorch), log.txt.
set -u
T0=$(date +%s)
OUT=${OUT:-/tmp/bench-out}; mkdir -p "$OUT"
ERRLOG="$OUT/log.txt"
# shellcheck source=scripts/device_bench_lib.sh
source scripts/device_bench_lib.sh
device_intro
# default = segmented scans where few images leave the card idle (16 segments at 4 x 32x32)
bench parity_x2_32 60 --scale 2 --size 32x32 --slices 4 --cpu-slices 4 --repeat 1 --weights $W2 \
  --kernels default,seg-off
bench parity_x4_32 60 --scale 4 --size 32x32 --slices 4 --cpu-slices 4 --repeat 1 --weights $W4
bench r1_x2_128_b1 40 --scale 2 --size 128x128 --slices 1 --cpu-slices 0 --repeat 3 --profile \
  --weights $W2 --kernels default,seg-off,seg512,seg2048
bench r1_x2_128_v150 60 --scale 2 --size 128x128 --slices 150 --cpu-slices 0 --repeat 2 --weights $W2 \
  --kernels default,seg2048
bench r1_x2_256_b1 40 --scale 2 --size 256x256 --slices 1 --cpu-slices 0 --repeat 2 --weights $W2 \
  --kernels default,seg-off
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site
echo "== torch fla ($(( $(date +%s) - T0 )) s)" | tee -a "$ERRLOG"
PYTHONUNBUFFERED=1 timeout ${T_TORCH:-330} python3 train/bench_torch.py --scales 2 --sizes 128 \
  --batch 50 --repeat 3 --budget ${TORCH_BUDGET:-290} --modes eager,compile,compile-cg \
  --json "$OUT/torch.json" 2>&1 | grep -v -i warn | tail -n 40 | tee -a "$ERRLOG"
bench r2_x2_128_v150 60 --scale 2 --size 128x128 --slices 150 --cpu-slices 0 --repeat 2 --weights $W2
bench r2_x2_128_b1 30 --scale 2 --size 128x128 --slices 1 --cpu-slices 0 --repeat 3 --weights $W2
# PyTorch's own chunked scan, compiled, bf16: only with the time the call has left (10-min calls)
left=$(( ${CALL_LIMIT:-560} - ($(date +%s) - T0) ))
if [ "$left" -gt 60 ]; then
  echo "== torch chunked ($(( $(date +%s) - T0 )) s, ${left} s left)" | tee -a "$ERRLOG"
  PYTHONUNBUFFERED=1 timeout $(( left - 10 )) python3 train/bench_torch.py --scales 2 --sizes 128 \
    --batch 50 --repeat 3 --budget $(( left - 40 )) --scan chunked --modes compile,compile-cg \
    --precisions bf16 --json "$OUT/torch_chunked.json" 2>&1 | grep -v -i warn | tail -n 20 \
    | tee -a "$ERRLOG"
fi
echo "call wall time $(( $(date +%s) - T0 )) s" | tee -a "$ERRLOG"
