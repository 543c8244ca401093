#!/usr/bin/env bash
# One call on a one-GPU device machine: the engine before and after the issue-14 refactor of the
# GPU kernels (typed parameter blocks, WGSL include mechanism, kernels split by family) on the
# same card, alternating binaries so that drift hits both, plus parity of the refactored engine
# against the CPU reference on the trained checkpoint.
#
# here:   headless builds (--no-default-features) of both trees, stripped and xz-compressed as
#         .devbin/deltawkv_before.xz and .devbin/deltawkv_after.xz; .gl holds the Vulkan loader
# device: carry [".gl", ".devbin"]; bash scripts/device_bench_refactor.sh
# Brings back: bench.jsonl, log.txt.
set -u
T0=$(date +%s)
OUT=${OUT:-/tmp/bench-out}; mkdir -p "$OUT"
ERRLOG="$OUT/log.txt"
# shellcheck source=scripts/device_bench_lib.sh
source scripts/device_bench_lib.sh
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
for b in before after; do xz -d -k -f .devbin/deltawkv_$b.xz && chmod +x .devbin/deltawkv_$b; done
nvidia-smi --query-gpu=index,name,pci.bus_id,driver_version,memory.total --format=csv,noheader | tee -a "$ERRLOG"
W2=weights/dwkv3m_x2.safetensors
W4=weights/dwkv3m_x4.safetensors
for round in 1 2; do
  for b in before after; do
    B=.devbin/deltawkv_$b
    bench ${b}_r${round}_x2_128_v150 60 --scale 2 --size 128x128 --slices 150 --cpu-slices 0 --repeat 2 --weights $W2 --kernels default,sg-serial,per-direction
    bench ${b}_r${round}_x2_128_b1 30 --scale 2 --size 128x128 --slices 1 --cpu-slices 0 --repeat 3 --weights $W2
    bench ${b}_r${round}_x4_128_v150 60 --scale 4 --size 128x128 --slices 150 --cpu-slices 0 --repeat 2 --weights $W4
  done
done
B=.devbin/deltawkv_after
bench after_parity_x2_32 60 --scale 2 --size 32x32 --slices 4 --cpu-slices 4 --repeat 1 --weights $W2 --kernels default,sg-serial,per-direction,chunked
bench after_parity_x4_32 60 --scale 4 --size 32x32 --slices 4 --cpu-slices 4 --repeat 1 --weights $W4
echo "call wall time $(( $(date +%s) - T0 )) s" | tee -a "$ERRLOG"
