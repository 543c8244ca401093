#!/usr/bin/env bash
# Batch-mode throughput: `deltawkv batch` over an archive against one `deltawkv upscale` call per
# volume, on the GPU machine (no Rust needed: a built deltawkv binary and python3).
#
# Makes an archive of COPIES copies of the val volumes, centre-cropped/padded to SIZE in-plane
# (scripts/make_archive.py; under WORK, not in git), runs `batch` on all of it and `upscale` on
# the first UPSCALE_COPIES copies, and reports volumes per hour of each, the engine busy fraction
# (time inside the network over the engine's time from ready to its last volume; sampled GPU
# utilisation too when nvidia-smi is there) and the CPU seconds per volume by stage (decode,
# normalise, assemble, encode, write). Results: $RESULTS/bench_batch.json and a Markdown table
# on stdout.
#
# usage: DELTAWKV=path/to/deltawkv scripts/bench_batch.sh
# variables (defaults): SRC (shared/data/val, else /work/shared/data/val), COPIES (50),
#   UPSCALE_COPIES (5), SIZE (256x256), SLICES (0: all), SCALE (2), DEVICE (gpu), WORKERS (half
#   the cores, 1-8), WEIGHTS (weights/dwkv3m_x$SCALE.safetensors), WORK (a temp dir, removed),
#   RESULTS ($OUT, else bench-results)
# Tested on lavapipe with: SIZE=32x32 COPIES=2 UPSCALE_COPIES=1 SLICES=2 DEVICE=auto
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${DELTAWKV:-target/release/deltawkv}
[ -x "$BIN" ] || { echo "DELTAWKV=$BIN is not an executable deltawkv" >&2; exit 1; }
SRC=${SRC:-}
if [ -z "$SRC" ]; then
  for d in shared/data/val /work/shared/data/val; do [ -d "$d" ] && { SRC=$d; break; }; done
fi
[ -n "$SRC" ] && [ -d "$SRC" ] || { echo "SRC: no val folder found; set SRC" >&2; exit 1; }
COPIES=${COPIES:-50}
UPSCALE_COPIES=${UPSCALE_COPIES:-5}
SIZE=${SIZE:-256x256}
SLICES=${SLICES:-0}
SCALE=${SCALE:-2}
DEVICE=${DEVICE:-gpu}
WEIGHTS=${WEIGHTS:-weights/dwkv3m_x$SCALE.safetensors}
cores=$(nproc)
WORKERS=${WORKERS:-$(( cores / 2 < 1 ? 1 : (cores / 2 > 8 ? 8 : cores / 2) ))}
RESULTS=${RESULTS:-${OUT:-bench-results}}
mkdir -p "$RESULTS"
own_work=0
if [ -z "${WORK:-}" ]; then WORK=$(mktemp -d /tmp/deltawkv-bench-batch.XXXXXX); own_work=1; fi
gpu_sampler=""
cleanup() {
  [ -n "$gpu_sampler" ] && kill "$gpu_sampler" 2>/dev/null || true
  [ "$own_work" = 1 ] && rm -rf "$WORK"
  return 0
}
trap cleanup EXIT

mapfile -t sources < <(find "$SRC" -name '*.nii*' | sort)
[ "${#sources[@]}" -gt 0 ] || { echo "no NIfTI under $SRC" >&2; exit 1; }
t0=$(date +%s.%N)
python3 scripts/make_archive.py "$WORK/archive" --copies "$COPIES" --size "$SIZE" \
  --slices "$SLICES" "${sources[@]}"
echo "archive made in $(python3 -c "import time; print(round(time.time() - $t0, 1))") s"
n_volumes=$(find "$WORK/archive" -name '*.nii.gz' | wc -l)

# GPU utilisation sampled every 200 ms while `batch` runs (when nvidia-smi exists).
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -lms 200 \
    > "$WORK/gpu_util.txt" 2>/dev/null &
  gpu_sampler=$!
fi
"$BIN" batch "$WORK/archive" "$WORK/out-batch" --scale "$SCALE" --device "$DEVICE" \
  --weights "$WEIGHTS" --workers "$WORKERS" --json > "$WORK/batch.json" || true
[ -s "$WORK/batch.json" ] || { echo "deltawkv batch printed no summary" >&2; exit 1; }
if [ -n "$gpu_sampler" ]; then kill "$gpu_sampler" 2>/dev/null || true; gpu_sampler=""; fi

# One `upscale` process per volume (weights loaded and engine built every time), sequentially.
mapfile -t subset < <(cd "$WORK/archive" && find . -name '*.nii.gz' | sort | \
  awk -v keep="$UPSCALE_COPIES" -F/ '$2 + 0 < keep')
mkdir -p "$WORK/out-upscale"
t0=$(date +%s.%N)
for rel in "${subset[@]}"; do
  out="$WORK/out-upscale/${rel//\//_}"
  "$BIN" upscale "$WORK/archive/$rel" "$out" --scale "$SCALE" --device "$DEVICE" \
    --weights "$WEIGHTS" --json > /dev/null
done
t1=$(date +%s.%N)

python3 - "$WORK/batch.json" "$WORK/gpu_util.txt" "$t0" "$t1" "${#subset[@]}" "$n_volumes" \
  "$RESULTS/bench_batch.json" "$SIZE" "$SCALE" "$COPIES" <<'EOF'
import json, os, platform, sys
batch_json, util_file, t0, t1, n_up, n_all, out, size, scale, copies = sys.argv[1:]
s = json.load(open(batch_json))
up_seconds = float(t1) - float(t0)
n_up = int(n_up)
util = []
if os.path.exists(util_file):
    for line in open(util_file):
        try:
            util.append(float(line.strip()))
        except ValueError:
            pass
per = s["stage_seconds_per_volume"]
res = {
    "volumes": int(n_all), "size": size, "scale": int(scale), "copies": int(copies),
    "backend": s.get("backend"), "gpu_pin": s.get("gpu_pin"), "workers": s.get("workers"),
    "host_cpus": os.cpu_count(), "host": platform.node(),
    "batch": {
        "ok": s["ok"], "failed": s["failed"], "slices": s["slices"],
        "wall_seconds": s["wall_seconds"], "volumes_per_hour": s["volumes_per_hour"],
        "engine_start_seconds": s["engine_start_seconds"],
        "engine_busy_fraction": s["engine_busy_fraction"],
        "engine_wait_seconds": s["engine_wait_seconds"],
        "engine_blocked_seconds": s["engine_blocked_seconds"],
        "gpu_utilisation_mean_percent": (sum(util) / len(util)) if util else None,
        "gpu_utilisation_samples": len(util),
        "stage_seconds_per_volume": per,
        "cpu_seconds_per_volume": s["cpu_seconds_per_volume"],
    },
    "upscale_per_volume": {
        "volumes": n_up, "wall_seconds": up_seconds,
        "volumes_per_hour": n_up * 3600.0 / up_seconds if up_seconds > 0 else None,
    },
}
json.dump(res, open(out, "w"), indent=2)
b, u = res["batch"], res["upscale_per_volume"]
print(f"\n{res['volumes']} volumes ({copies} copies of the val set, {size} in-plane, x{scale}) on {res['backend']}")
print("| run | volumes | wall s | volumes/h | engine busy | GPU util (nvidia-smi) |")
print("|---|---|---|---|---|---|")
gu = b["gpu_utilisation_mean_percent"]
print(f"| batch (one process, {res['workers']} workers) | {b['ok']} | {b['wall_seconds']:.1f} | {b['volumes_per_hour']:.0f} | {100 * b['engine_busy_fraction']:.0f}% | {'%.0f%%' % gu if gu is not None else 'n/a'} |")
vph = u["volumes_per_hour"]
print(f"| one upscale per volume | {u['volumes']} | {u['wall_seconds']:.1f} | {vph:.0f} | | |")
print("\nCPU seconds per volume in batch: " + ", ".join(f"{k} {per[k]:.3f}" for k in ("decode", "normalise", "assemble", "encode", "write")) + f"; total {b['cpu_seconds_per_volume']:.3f} (engine {per['engine']:.3f})")
print(f"results: {out}")
EOF
if [ "$(python3 -c "import json; print(json.load(open('$WORK/batch.json'))['failed'])")" != 0 ]; then
  echo "some volumes failed: see $WORK/out-batch/batch-log.jsonl" >&2
  exit 1
fi
