#!/usr/bin/env bash
# The viewer on a real GPU (issue 16): tests/app/gpu_timing.rs, the real app driven headless by
# egui_kittest's wgpu renderer on the machine's GPU, opening the bundled sample with the shipped x2
# checkpoint; reports the time to the first SR slice on screen and the frame times while the
# volume is upscaled. Runs it three times (the first start also fills the driver's shader cache).
#
# here:   cargo test --no-default-features --features viewer --test app --no-run, then strip the
#         test executable it names into .devbin/app_tests and xz -T2 it (.devbin/app_tests.xz);
#         .gl holds the Vulkan loader (see scripts/device_bench_baseline.sh)
# device: carry [".gl", ".devbin"]; bash scripts/device_viewer_timing.sh
# Brings back: viewer_timing.jsonl (one JSON object a run), viewer_timing.log.
set -u
T0=$(date +%s)
OUT=${OUT:-/tmp/bench-out}; mkdir -p "$OUT"
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
xz -d -k -f .devbin/app_tests.xz && chmod +x .devbin/app_tests
export DELTAWKV_ROOT=$PWD
: > "$OUT/viewer_timing.jsonl"
for i in $(seq 1 ${RUNS:-3}); do
  echo "== run $i ($(( $(date +%s) - T0 )) s)" | tee -a "$OUT/viewer_timing.log"
  DELTAWKV_TIMING_OUT=/tmp/t.json timeout ${T_RUN:-120} .devbin/app_tests gpu_timing --ignored \
    --nocapture --test-threads 1 >> "$OUT/viewer_timing.log" 2>&1
  echo "rc=$?" | tee -a "$OUT/viewer_timing.log"
  [ -f /tmp/t.json ] && { cat /tmp/t.json; echo; } | tee -a "$OUT/viewer_timing.jsonl"
  rm -f /tmp/t.json
done
echo "call wall time $(( $(date +%s) - T0 )) s" | tee -a "$OUT/viewer_timing.log"
