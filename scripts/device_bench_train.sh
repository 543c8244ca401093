#!/usr/bin/env bash
# One call on a two-GPU device machine (kind nvidia-h100-x2): GPU A runs the benchmarks (WGSL
# engine variants, floors, the larger sizes, the PyTorch reference) and the Rust GPU eval of the
# val volumes, while GPU B trains x2 for one more cycle; the x2 eval then runs on the new weights.
#
# here:   cargo build --no-default-features --bin deltawkv && mkdir -p .devbin \
#         && strip -o .devbin/deltawkv target/debug/deltawkv && xz -f -T2 .devbin/deltawkv
#         mkdir -p .devdata/val && cp -r ../shared/data/val/* .devdata/val/
# device: carry [".gl", ".devbin", ".whl", ".devdata"]; bash scripts/device_bench_train.sh
# On a one-GPU machine (kind nvidia-h100-x1) run it with TRAIN=0: benchmarks and evals only.
# Environment: TRAIN_ARGS (train.py options for the x2 cycle; TRAIN=0 skips training),
# TRAIN_BUDGET (seconds for the training call, default 430), VARIANTS (kernel variants compared
# at x2 128x128), K2 (variants for the other configurations and the large batches),
# T_TORCH / TORCH_BUDGET (time limits of the PyTorch step).
# Brings back (8 files at most): bench.jsonl, log.txt (every step's stderr), eval_x2.jsonl,
# eval_x4.jsonl, torch.json, gpu_util.csv, x2/best_x2.safetensors, x2/logs.tar.gz.
set -u
T0=$(date +%s)
OUT=${OUT:-/tmp/bench-out}; mkdir -p "$OUT"
LOG="$OUT/log.txt"
# shellcheck source=scripts/device_bench_lib.sh
source scripts/device_bench_lib.sh
device_setup
export CUDA_DEVICE_ORDER=PCI_BUS_ID
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/fla_core-*.whl && export PYTHONPATH=/tmp/site
nvidia-smi --query-gpu=index,name,pci.bus_id,driver_version,clocks.max.sm --format=csv,noheader | tee -a "$LOG"
nvidia-smi --query-gpu=timestamp,index,utilization.gpu,memory.used --format=csv -l 2 > "$OUT/gpu_util.csv" &
SMI=$!
W2=weights/dwkv3m_x2.safetensors
W4=weights/dwkv3m_x4.safetensors
export DELTAWKV_ADAPTER=${DELTAWKV_ADAPTER:-0}
el() { echo $(( $(date +%s) - T0 )); }
ERRLOG="$LOG"
# (session 4 ran this at 9bd7731, before the defaults changed, with VARIANTS
# default,ln-rows,sg-pipe,ln-rows+sg-pipe and K2 default,ln-rows+sg-pipe)
V=${VARIANTS:-default,ln-tokens+sg-serial,ln-tokens,sg-serial}
K2=${K2:-default,ln-tokens+sg-serial}
# 1. parity of the variants against the CPU reference; tells which GPU the engine runs on
bench parity_x2_32 40 --scale 2 --size 32x32 --slices 4 --cpu-slices 4 --repeat 1 --weights $W2 --kernels $V,per-direction
BUS=$(python3 -c "
import json
for l in open('$OUT/bench.jsonl'):
    d = json.loads(l)
    if d['name'] == 'parity_x2_32': print((d['result'].get('gpu') or {}).get('pci_bus_id', ''))
" 2>/dev/null)
# 2. train x2 on the other GPU
TRAIN_GPU=1
while IFS=, read -r idx bus; do
  b=$(echo "$bus" | tr 'A-Z' 'a-z' | tr -d ' '); b=${b: -7}
  if [ -n "$BUS" ] && [ "${BUS: -7}" != "$b" ]; then TRAIN_GPU=$(echo "$idx" | tr -d ' '); fi
  if [ -n "$BUS" ] && [ "${BUS: -7}" = "$b" ]; then BENCH_GPU=$(echo "$idx" | tr -d ' '); fi
done < <(nvidia-smi --query-gpu=index,pci.bus_id --format=csv,noheader)
BENCH_GPU=${BENCH_GPU:-0}
if [ "${TRAIN:-1}" = 1 ]; then WHERE="training on GPU $TRAIN_GPU"; else WHERE="no training"; fi
echo "engine on Vulkan adapter [$BUS] = GPU $BENCH_GPU; $WHERE" | tee -a "$LOG"
if [ "${TRAIN:-1}" = 1 ]; then
  (CUDA_VISIBLE_DEVICES=$TRAIN_GPU OUT=/tmp/train-out BUDGET=$(( ${TRAIN_BUDGET:-430} - $(el) )) NOCACHE=1 \
    bash train/run_device.sh 2 --compile --init-from $W2 --restart-schedule ${TRAIN_ARGS:---lr 1e-4 --warmup 100 --train-seconds 300 --val-every 500} \
    > /tmp/train.log 2>&1; echo "training done ($(el) s)" >> /tmp/train.log) &
  TRAIN_PID=$!
fi
export CUDA_VISIBLE_DEVICES=$BENCH_GPU
# 3. x2 128x128: batch 1 (profiled) and the volume, variants; the volume with larger batches
bench x2_128_b1 40 --scale 2 --size 128x128 --slices 1 --cpu-slices 0 --repeat 2 --profile --weights $W2 --kernels $V
bench x2_128_v150 90 --scale 2 --size 128x128 --slices 150 --cpu-slices 0 --repeat 1 --profile --weights $W2 --kernels $V
DELTAWKV_GPU_BUDGET_MB=40000 bench x2_128_v150_b150 60 --scale 2 --size 128x128 --slices 150 --batch 150 --cpu-slices 0 --repeat 1 --weights $W2 --kernels $K2
# 4. the other configurations
bench x4_128_b1 25 --scale 4 --size 128x128 --slices 1 --cpu-slices 0 --repeat 2 --weights $W4 --kernels $K2
bench x4_128_v150 80 --scale 4 --size 128x128 --slices 150 --cpu-slices 0 --repeat 1 --weights $W4 --kernels $K2
bench x2_256_b1 25 --scale 2 --size 256x256 --slices 1 --cpu-slices 0 --repeat 2 --weights $W2 --kernels $K2
bench x2_256_v150 100 --scale 2 --size 256x256 --slices 150 --cpu-slices 0 --repeat 1 --weights $W2 --kernels $K2
bench x4_256_b1 25 --scale 4 --size 256x256 --slices 1 --cpu-slices 0 --repeat 2 --weights $W4 --kernels $K2
bench x4_256_v150 100 --scale 4 --size 256x256 --slices 150 --cpu-slices 0 --repeat 1 --weights $W4 --kernels $K2
bench x2_320_b1 25 --scale 2 --size 320x320 --slices 1 --cpu-slices 0 --repeat 1 --weights $W2 --kernels $K2
bench x4_320_b1 25 --scale 4 --size 320x320 --slices 1 --cpu-slices 0 --repeat 1 --weights $W4 --kernels $K2
bench x2_320_v60 80 --scale 2 --size 320x320 --slices 60 --cpu-slices 0 --repeat 1 --weights $W2 --kernels $K2
bench x4_320_v60 80 --scale 4 --size 320x320 --slices 60 --cpu-slices 0 --repeat 1 --weights $W4 --kernels $K2
evals() { # scale, weights
  : > "$OUT/eval_x$1.jsonl"
  for f in $(find .devdata/val -name '*.nii*' | sort); do
    echo "== eval x$1 $f ($(el) s)" >> "$LOG"
    timeout 25 "$B" eval "$f" --scale $1 --weights "$2" --device gpu --json >> "$OUT/eval_x$1.jsonl" 2>> "$LOG"
  done
  echo "eval x$1: $(wc -l < "$OUT/eval_x$1.jsonl") volumes ($(el) s)" | tee -a "$LOG"
}
evals 4 $W4
# 5. the PyTorch reference on the same GPU, same checkpoints (bf16 only at 128: it was no faster)
echo "== torch ($(el) s)" | tee -a "$LOG"
PYTHONUNBUFFERED=1 timeout ${T_TORCH:-200} python3 train/bench_torch.py --sizes 128,256 --bf16-sizes 128 \
  --budget ${TORCH_BUDGET:-150} --repeat 1 --json "$OUT/torch.json" 2>&1 | grep -v Warning | tail -n 30 | tee -a "$LOG"
# 6. x2 eval on the weights the training ends with
if [ "${TRAIN:-1}" = 1 ]; then
  wait $TRAIN_PID
  grep -E '^(val|done|schedule|continuing)' /tmp/train.log | tee -a "$LOG"
  tail -3 /tmp/train.log >> "$LOG"
  mkdir -p "$OUT/x2"
  cp /tmp/train-out/x2/best_x2.safetensors /tmp/train-out/x2/logs.tar.gz "$OUT/x2/" 2>>"$LOG"
  [ -f "$OUT/x2/best_x2.safetensors" ] && W2=$OUT/x2/best_x2.safetensors
fi
evals 2 $W2
kill $SMI 2>/dev/null
echo "call wall time $(el) s" | tee -a "$LOG"
