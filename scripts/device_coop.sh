#!/usr/bin/env bash
# The tensor-core matrix product (issue 16; `--kernels coop`, shaders/network/matmul_coop.wgsl) on
# a GPU that has 16x16x16 f16 -> f32 cooperative matrices (the H100), which no machine off the
# card can run:
#   1. its tests (tests/gpu/coop.rs): the product against the CPU for every epilogue, and the
#      network against the f32 engine on a real slice; the rest of tests/gpu on the card too
#      (every kernel and the network against the CPU reference and the goldens);
#   2. speed: `bench` default against coop, one 128x128 slice (profiled) and a 150-slice volume;
#   3. quality: `deltawkv eval --device gpu` on every val volume at x2 and x4, f32 kernels against
#      DELTAWKV_KERNELS=coop (issue 16's bound: PSNR within 0.01 dB; the largest difference).
#
# here:   .devbin/deltawkv.xz (scripts/device_all.sh says how); .devbin/gpu_tests.xz from
#         `cargo test --no-default-features --test gpu --no-run`, stripped and xz'd;
#         .gl (Vulkan loader); .benchdata/val (a copy of ../shared/data/val)
# device: carry [".gl", ".devbin", ".benchdata"]; bash scripts/device_coop.sh
# Brings back (in $OUT): coop.log, coop_tests.log, bench.jsonl (appended), eval_coop.jsonl.
set -u
T0=$(date +%s)
OUT=${OUT:-/tmp/bench-out}; mkdir -p "$OUT"
ERRLOG="$OUT/coop.log"
# shellcheck source=scripts/device_bench_lib.sh
source scripts/device_bench_lib.sh
device_intro
xz -d -k -f .devbin/gpu_tests.xz && chmod +x .devbin/gpu_tests

echo "== tests ($(( $(date +%s) - T0 )) s)" | tee -a "$ERRLOG"
timeout "${T_TESTS:-120}" .devbin/gpu_tests --test-threads 2 --nocapture > "$OUT/coop_tests.log" 2>&1
echo "rc=$?" | tee -a "$ERRLOG"
grep -E "tensor cores on|^test .*(coop|FAILED)|test result|panicked|SKIPPED" "$OUT/coop_tests.log" \
  | head -n 30 | tee -a "$ERRLOG"

echo "== bench ($(( $(date +%s) - T0 )) s)" | tee -a "$ERRLOG"
bench coop_x2_128_b1 40 --scale 2 --size 128x128 --slices 1 --cpu-slices 0 --repeat 3 --profile \
  --weights "$W2" --kernels default,coop
bench coop_x2_128_v150 60 --scale 2 --size 128x128 --slices 150 --cpu-slices 0 --repeat 2 \
  --weights "$W2" --kernels default,coop,sg8,coop+sg8,default

echo "== eval ($(( $(date +%s) - T0 )) s)" | tee -a "$ERRLOG"
: > "$OUT/eval_coop.jsonl"
for f in $(find .benchdata/val -name '*.nii*' | sort); do
  for s in 2 4; do
    for k in default coop; do
      r=$(DELTAWKV_KERNELS=$k timeout 60 "$B" eval "$f" --scale "$s" --device gpu --json \
        --weights "weights/dwkv3m_x$s.safetensors" 2>> "$ERRLOG")
      echo "{\"file\": \"$f\", \"scale\": $s, \"kernels\": \"$k\", \"result\": ${r:-null}}" \
        >> "$OUT/eval_coop.jsonl"
    done
  done
done
python3 - "$OUT/eval_coop.jsonl" <<'EOF' | tee -a "$ERRLOG"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    if r["result"]:
        by[(r["file"], r["scale"], r["kernels"])] = r["result"]
worst = 0.0
for (f, s, k), res in sorted(by.items()):
    if k != "coop" or (f, s, "default") not in by:
        continue
    a, b = by[(f, s, "default")], res
    pa, pb = a["psnr_sr"], b["psnr_sr"]
    sa, sb = a["ssim_sr"], b["ssim_sr"]
    worst = max(worst, abs(pa - pb))
    print(f"x{s} {f.split('/')[-1]}: PSNR f32 {pa:.4f} coop {pb:.4f} (diff {pb - pa:+.4f} dB), "
          f"SSIM {sa:.5f} / {sb:.5f}")
print(f"largest PSNR difference: {worst:.4f} dB over {sum(1 for k in by if k[2] == 'coop')} runs")
EOF
echo "call wall time $(( $(date +%s) - T0 )) s" | tee -a "$ERRLOG"
