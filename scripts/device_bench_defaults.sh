#!/usr/bin/env bash
# One call on a one-GPU device machine (kind nvidia-h100-x1): the engine's defaults (coalesced
# LayerNorm, pipelined subgroup scan, batch up to 64 within half the card's memory) against the
# previous defaults in the same run, and a control that repeats an earlier run's setting (batch
# 32 within 6 GiB) so that this run's times compare with that run's PyTorch times.
#
# here:   cargo build --no-default-features --bin deltawkv && mkdir -p .devbin \
#         && strip -o .devbin/deltawkv target/debug/deltawkv && xz -f -T2 .devbin/deltawkv
# device: carry [".gl", ".devbin"]; bash scripts/device_bench_defaults.sh
# Brings back: bench.jsonl, log.txt. Written in session 4, not yet run (no device time was left).
set -u
T0=$(date +%s)
OUT=${OUT:-/tmp/bench-out}; mkdir -p "$OUT"
ERRLOG="$OUT/log.txt"
# shellcheck source=scripts/device_bench_lib.sh
source scripts/device_bench_lib.sh
device_setup
W2=weights/dwkv3m_x2.safetensors
W4=weights/dwkv3m_x4.safetensors
nvidia-smi --query-gpu=index,name,pci.bus_id,driver_version,memory.total --format=csv,noheader | tee -a "$ERRLOG"
OLD=ln-tokens+sg-serial
# the control: an earlier run's batch and budget, kernels that were measured there
DELTAWKV_GPU_BUDGET_MB=6144 bench ctl_x2_128_v150_b32 60 --scale 2 --size 128x128 --slices 150 --batch 32 \
  --cpu-slices 0 --repeat 1 --weights $W2 --kernels ln-rows+sg-pipe,$OLD
# the defaults, and the previous kernels with the same batch
bench x2_128_v150 60 --scale 2 --size 128x128 --slices 150 --cpu-slices 0 --repeat 2 --profile --weights $W2 --kernels default,$OLD
bench x4_128_v150 60 --scale 4 --size 128x128 --slices 150 --cpu-slices 0 --repeat 2 --weights $W4 --kernels default,$OLD
bench x2_128_b1 30 --scale 2 --size 128x128 --slices 1 --cpu-slices 0 --repeat 3 --weights $W2 --kernels default,$OLD
bench x2_256_v150 90 --scale 2 --size 256x256 --slices 150 --cpu-slices 0 --repeat 1 --weights $W2
bench x4_256_v150 90 --scale 4 --size 256x256 --slices 150 --cpu-slices 0 --repeat 1 --weights $W4
bench x2_320_v60 60 --scale 2 --size 320x320 --slices 60 --cpu-slices 0 --repeat 1 --weights $W2
bench x4_320_v60 60 --scale 4 --size 320x320 --slices 60 --cpu-slices 0 --repeat 1 --weights $W4
# parity of the defaults against the CPU reference on the trained checkpoint
bench parity_x2_32 40 --scale 2 --size 32x32 --slices 4 --cpu-slices 4 --repeat 1 --weights $W2 --kernels default,$OLD
echo "call wall time $(( $(date +%s) - T0 )) s" | tee -a "$ERRLOG"
