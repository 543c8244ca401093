#!/usr/bin/env bash
# Start-up and the viewer on a real GPU (issue 16), against an earlier build in the same call:
#   1. pipeline compilation: `deltawkv bench` on a 16x16 slice (the GPU work is negligible, so
#      its "first run" is the engine's pipeline compilation) with the NVIDIA driver's shader
#      cache empty for every run, this build and the base build alternated (RUNS_COMPILE each);
#   2. the viewer: tests/app/gpu_timing.rs (the real app on the GPU, the bundled sample, the
#      shipped x2 checkpoint): the first run with an empty driver cache (a first start), then
#      warm runs (every later start), and one cold run of the base build's test binary where it
#      was carried.
#
# here:   .devbin/deltawkv.xz and .devbin/app_tests.xz of this build (scripts/device_all.sh says
#         how), and of the base build .devbin/deltawkv_BASE.xz and .devbin/app_tests_BASE.xz;
#         .gl (Vulkan loader)
# device: carry [".gl", ".devbin"]; BASE=26af076 bash scripts/device_startup.sh
# Brings back: startup.log, startup.jsonl (one object a run), in $OUT.
set -u
T0=$(date +%s)
OUT=${OUT:-/tmp/bench-out}; mkdir -p "$OUT"
LOG="$OUT/startup.log"
J="$OUT/startup.jsonl"
: > "$J"
BASE=${BASE:-}
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export DELTAWKV_ROOT=$PWD
for f in .devbin/*.xz; do xz -d -k -f "$f" && chmod +x "${f%.xz}"; done
nvidia-smi --query-gpu=name,pci.bus_id,driver_version,clocks.max.sm --format=csv,noheader | tee -a "$LOG"
for b in "" ${BASE:+"_$BASE"}; do .devbin/deltawkv$b --version | tee -a "$LOG"; done

# a fresh, empty driver shader cache for what follows
fresh_cache() {
  export __GL_SHADER_DISK_CACHE_PATH
  __GL_SHADER_DISK_CACHE_PATH=$(mktemp -d)
}

echo "== compile ($(( $(date +%s) - T0 )) s)" | tee -a "$LOG"
for i in $(seq 1 "${RUNS_COMPILE:-3}"); do
  for b in "" ${BASE:+"_$BASE"}; do
    fresh_cache
    timeout 60 .devbin/deltawkv$b bench --device gpu --json --size 16x16 --slices 1 --repeat 1 \
      --cpu-slices 0 > /tmp/c.json 2>> "$LOG"
    python3 - "$b" "$i" >> "$J" <<'EOF'
import json, sys
r = json.load(open("/tmp/c.json"))
g = r["gpu"]
print(json.dumps({"what": "compile", "build": sys.argv[1].lstrip("_") or "this", "run": int(sys.argv[2]),
                  "first_run_seconds": g["first_run_seconds"], "seconds_per_slice": g["seconds_per_slice"]}))
EOF
    tail -n 1 "$J" | tee -a "$LOG"
  done
done

viewer() {  # BUILD LABEL
  echo "== viewer $2 ($(( $(date +%s) - T0 )) s)" | tee -a "$LOG"
  DELTAWKV_TIMING_OUT=/tmp/t.json timeout "${T_RUN:-90}" ".devbin/app_tests$1" gpu_timing \
    --ignored --nocapture --test-threads 1 >> "$LOG" 2>&1
  echo "rc=$?" | tee -a "$LOG"
  if [ -f /tmp/t.json ]; then
    python3 -c 'import json,sys; r=json.load(open("/tmp/t.json")); r.update(what="viewer", build=sys.argv[1], run=sys.argv[2]); print(json.dumps(r))' \
      "${1#_}" "$2" | tee -a "$J"
    rm -f /tmp/t.json
  fi
}
fresh_cache
viewer "" cold
for i in $(seq 1 "${RUNS_WARM:-2}"); do viewer "" "warm$i"; done
if [ -n "$BASE" ] && [ -x ".devbin/app_tests_$BASE" ]; then
  fresh_cache
  viewer "_$BASE" cold
fi
echo "call wall time $(( $(date +%s) - T0 )) s" | tee -a "$LOG"
