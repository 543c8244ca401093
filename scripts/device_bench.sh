#!/usr/bin/env bash
# GPU benchmarks on the device machine (H100): the WGSL engine (`deltawkv bench`, a binary built on
# the development machine and carried as .devbin/deltawkv) and the PyTorch reference
# (train/bench_torch.py) in the same run, same checkpoints. Results go to $OUT.
# carry: [".gl", ".devbin", ".whl"]
set -u
OUT=${OUT:-/tmp/bench-out}; mkdir -p "$OUT"
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
B=.devbin/deltawkv
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader | tee "$OUT/gpu.txt"
run() { # name, timeout, args...
  local name=$1 t=$2; shift 2
  echo "== $name: $*"
  timeout "$t" "$B" bench --device gpu --json "$@" > "$OUT/$name.json" 2> "$OUT/$name.err"
  echo "rc=$?"; tail -c 600 "$OUT/$name.json"; echo; tail -n 3 "$OUT/$name.err"
}
run x2_128_b1 ${T1:-60} --scale 2 --size 128x128 --slices 1 --cpu-slices 1 --weights weights/dwkv3m_x2.safetensors
run x2_128_v150 ${T2:-60} --scale 2 --size 128x128 --slices 150 --cpu-slices 0 --repeat 1 --weights weights/dwkv3m_x2.safetensors
run x4_128_b1 ${T3:-40} --scale 4 --size 128x128 --slices 1 --cpu-slices 0 --weights weights/dwkv3m_x4.safetensors
if ls .whl/fla_core-*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/fla_core-*.whl && export PYTHONPATH=/tmp/site
fi
PYTHONUNBUFFERED=1 timeout ${TT:-80} python3 train/bench_torch.py --sizes 128 --budget ${TB:-50} --json "$OUT/torch.json" 2>&1 | tail -n 20
