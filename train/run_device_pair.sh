#!/usr/bin/env bash
# Two trainings at once on a two-GPU device machine (kind nvidia-h100-x2): one run_device.sh per
# GPU, each with its own arguments, sharing one install of the wheels and one compiler cache.
#
#   train/run_device_pair.sh "SCALE_A ARGS..." "SCALE_B ARGS..."
#
# carry: [".devdata", ".whl", ".devstate/cache.tar.gz"]. Brings back, per run, only what can be
# used here: $OUT/a_xS/{best_xS.safetensors,logs.tar.gz} (4 files for two runs; the resumable
# optimiser state is too large to carry back in, so later calls continue with --init-from).
set -u
OUT=${OUT:-/tmp/dwkv-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/fla_core-*.whl && export PYTHONPATH=/tmp/site
if [ -f .devstate/cache.tar.gz ]; then tar -xzf .devstate/cache.tar.gz -C /tmp; fi
export NOCACHE=1
i=0
for spec in "$@"; do
  read -r -a a <<<"$spec"
  tag=$(printf 'run%d_x%s' "$i" "${a[0]}")
  mkdir -p "/tmp/pair/$tag"
  CUDA_VISIBLE_DEVICES=$i OUT="/tmp/pair/$tag" BUDGET=${BUDGET:-570} \
    bash train/run_device.sh "${a[@]}" >"/tmp/pair/$tag.log" 2>&1 &
  i=$((i + 1))
done
wait
for d in /tmp/pair/run*_x*/; do
  tag=$(basename "$d")
  mkdir -p "$OUT/$tag"
  cp "$d"/x*/best_x*.safetensors "$d"/x*/logs.tar.gz "$OUT/$tag/" 2>/dev/null
  echo "== $tag"; grep -E '^(val|done|model|schedule|continuing)' "/tmp/pair/$tag.log" | tail -8
done
ls -la "$OUT"/*
