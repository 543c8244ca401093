#!/usr/bin/env bash
# One call on a one-GPU device machine: the strongest PyTorch baseline of issue 16 (eager,
# torch.compile, torch.compile with CUDA graphs; float32 and bf16 autocast; fla's chunked RWKV-7
# kernel) and the WGSL engine on the same card in the same call, plus the engine before and after
# the issue-14 refactor (alternating binaries so that drift hits both) and parity against the CPU
# reference on the trained checkpoints.
#
# here:   headless builds (cargo build --no-default-features --bin deltawkv) of both trees,
#         stripped and xz-compressed as .devbin/deltawkv_before.xz and .devbin/deltawkv_after.xz;
#         .gl holds the Vulkan loader; .whl holds fla_core-0.6.0-py3-none-any.whl
# device: carry [".gl", ".devbin", ".whl"]; bash scripts/device_bench_baseline.sh
# Brings back: bench.jsonl (engine), torch.json and torch_chunked.json (PyTorch), log.txt.
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
nvidia-smi --query-gpu=index,name,pci.bus_id,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader | tee -a "$ERRLOG"
W2=weights/dwkv3m_x2.safetensors
W4=weights/dwkv3m_x4.safetensors
# the engine first (a cold card for both), then PyTorch, then the engine again
B=.devbin/deltawkv_after
bench after_parity_x2_32 60 --scale 2 --size 32x32 --slices 4 --cpu-slices 4 --repeat 1 --weights $W2
bench after_parity_x4_32 60 --scale 4 --size 32x32 --slices 4 --cpu-slices 4 --repeat 1 --weights $W4
for b in before after; do
  B=.devbin/deltawkv_$b
  bench ${b}_r1_x2_128_v150 60 --scale 2 --size 128x128 --slices 150 --cpu-slices 0 --repeat 2 --weights $W2
  bench ${b}_r1_x2_128_b1 30 --scale 2 --size 128x128 --slices 1 --cpu-slices 0 --repeat 3 --profile --weights $W2
done
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/fla_core-*.whl \
  && export PYTHONPATH=/tmp/site
echo "== torch fla ($(( $(date +%s) - T0 )) s)" | tee -a "$ERRLOG"
PYTHONUNBUFFERED=1 timeout ${T_TORCH:-300} python3 train/bench_torch.py --scales 2 --sizes 128 \
  --batch 50 --repeat 3 --budget ${TORCH_BUDGET:-260} --modes eager,compile,compile-cg \
  --json "$OUT/torch.json" 2>&1 | grep -v -i warn | tail -n 40 | tee -a "$ERRLOG"
echo "== torch chunked ($(( $(date +%s) - T0 )) s)" | tee -a "$ERRLOG"
PYTHONUNBUFFERED=1 timeout ${T_TORCH2:-150} python3 train/bench_torch.py --scales 2 --sizes 128 \
  --batch 50 --repeat 3 --budget 120 --scan chunked --modes compile,compile-cg --precisions bf16 \
  --json "$OUT/torch_chunked.json" 2>&1 | grep -v -i warn | tail -n 20 | tee -a "$ERRLOG"
for b in after before; do
  B=.devbin/deltawkv_$b
  bench ${b}_r2_x2_128_v150 60 --scale 2 --size 128x128 --slices 150 --cpu-slices 0 --repeat 2 --weights $W2
  bench ${b}_r2_x2_128_b1 30 --scale 2 --size 128x128 --slices 1 --cpu-slices 0 --repeat 3 --weights $W2
done
echo "call wall time $(( $(date +%s) - T0 )) s" | tee -a "$ERRLOG"
