#!/usr/bin/env bash
# Data consistency and the realistic acquisition on the val set (issue 17): `deltawkv eval` of
# every val volume at x2 and x4 with --data-consistency --realistic, one JSON per run, then one
# JSON summary and a markdown table (SR, SR+DC, zero-filled; standard and realistic protocols).
#
#   scripts/eval_consistency.sh [OUT_DIR]            # full val set on the GPU
#   DEVICE=cpu SLICES_FILE=list scripts/eval_consistency.sh out   # a CPU sample
#
# Environment:
#   DELTAWKV   the binary (default target/release/deltawkv, else `deltawkv` on PATH)
#   DATA       the folder of volumes (default: shared/data/val, else ../shared/data/val; point it
#              at the test split to report that the same way)
#   DEVICE     eval --device (default gpu)
#   SCALES     scales (default "2 4")
#   SLICES_FILE  optional lines "FILE_NAME A:B": evaluate only those slices of that file
#                (others: every slice)
#   EXTRA      more eval options (e.g. "--noise 0.03 --seed 1", "--self-ensemble")
#   REALISTIC  0: the standard protocol only (default 1: also --realistic)
# Output: OUT_DIR/<volume>_x<s>.json, OUT_DIR/summary.json, OUT_DIR/summary.md. Exit 1 if a run
# fails (the others still run; failures are listed).
set -u
OUT=${1:-eval_consistency_out}
if [ -z "${DATA:-}" ]; then
    if [ -d shared/data/val ]; then DATA=shared/data/val; else DATA=../shared/data/val; fi
fi
DEVICE=${DEVICE:-gpu}
SCALES=${SCALES:-"2 4"}
SLICES_FILE=${SLICES_FILE:-}
EXTRA=${EXTRA:-}
realistic=(--realistic)
if [ "${REALISTIC:-1}" = 0 ]; then realistic=(); fi
if [ -z "${DELTAWKV:-}" ]; then
    if [ -x target/release/deltawkv ]; then DELTAWKV=target/release/deltawkv; else DELTAWKV=deltawkv; fi
fi
mkdir -p "$OUT"
failed=()
if [ -n "${SPLIT_FILE:-}" ]; then
    # a split listed as a Markdown table whose first column is a path under shared/data
    # (weights/test-split.md); DATA is then shared/data itself
    DATA=${SHARED:-../shared/data}
    mapfile -t files < <(awk -F'|' -v d="$DATA" \
        '/^\| *(fixtures|train|val)\// { gsub(/ /, "", $2); print d "/" $2 }' "$SPLIT_FILE")
else
    mapfile -t files < <(find "$DATA" -name '*.nii.gz' -o -name '*.nii' | sort)
fi
for f in "${files[@]}"; do
    name=$(basename "$f"); name=${name%.gz}; name=${name%.nii}; name=${name%.dcm}
    slices=()
    if [ -n "$SLICES_FILE" ]; then
        sel=$(awk -v n="$(basename "$f")" '$1 == n { print $2 }' "$SLICES_FILE")
        if [ -z "$sel" ]; then continue; fi
        slices=(--slices "$sel")
    fi
    for s in $SCALES; do
        out="$OUT/${name}_x$s.json"
        echo "eval $name x$s ${slices[*]:-}" >&2
        # shellcheck disable=SC2086
        if ! "$DELTAWKV" eval "$f" --scale "$s" --device "$DEVICE" --data-consistency "${realistic[@]}" \
            --json "${slices[@]}" $EXTRA >"$out.tmp" 2>"$OUT/${name}_x$s.err"; then
            failed+=("$name x$s: $(tail -n 1 "$OUT/${name}_x$s.err")")
            rm -f "$out.tmp"
            continue
        fi
        mv "$out.tmp" "$out"
    done
done

python3 - "$OUT" <<'EOF'
import glob, json, math, os, sys
out = sys.argv[1]
rows = []
for p in sorted(glob.glob(os.path.join(out, "*_x*.json"))):
    if p.endswith("summary.json"):
        continue
    with open(p) as fh:
        r = json.load(fh)
    row = {"file": os.path.basename(r["gt"]), "scale": r["scale"], "slices": r["slices"],
           "slice_range": r["slice_range"], "device": r["device"]}
    for proto, obj in (("std", r), ("real", r.get("realistic") or {})):
        for m in ("sr", "sr_dc", "zerofill"):
            row[f"{proto}_psnr_{m}"] = obj.get(f"psnr_{m}")
            row[f"{proto}_ssim_{m}"] = obj.get(f"ssim_{m}")
        row[f"{proto}_rms"] = obj.get("consistency_residual_rms_sr")
    if r.get("realistic"):
        row["realistic_parameters"] = r["realistic"]["parameters"]
    rows.append(row)

def f(x, d=2):
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{d}f}"

def diff(a, b, d=2):
    return "n/a" if a is None or b is None else f"{a - b:+.{d}f}"

summary = {"runs": rows}
for s in sorted({r["scale"] for r in rows}):
    sel = [r for r in rows if r["scale"] == s]
    for proto in ("std", "real"):
        d = [r[f"{proto}_psnr_sr_dc"] - r[f"{proto}_psnr_sr"] for r in sel
             if r[f"{proto}_psnr_sr_dc"] is not None and r[f"{proto}_psnr_sr"] is not None]
        ds = [r[f"{proto}_ssim_sr_dc"] - r[f"{proto}_ssim_sr"] for r in sel
              if r[f"{proto}_ssim_sr_dc"] is not None and r[f"{proto}_ssim_sr"] is not None]
        summary[f"x{s}_{proto}"] = {
            "volumes": len(d),
            "mean_dpsnr_dc": sum(d) / len(d) if d else None,
            "min_dpsnr_dc": min(d) if d else None,
            "mean_dssim_dc": sum(ds) / len(ds) if ds else None,
            "min_dssim_dc": min(ds) if ds else None,
            "dc_never_hurts_psnr": all(x >= 0 for x in d) if d else None,
            "dc_never_hurts_ssim": all(x >= 0 for x in ds) if ds else None,
        }
with open(os.path.join(out, "summary.json"), "w") as fh:
    json.dump(summary, fh, indent=1)

lines = ["| file | x | slices | protocol | PSNR SR | PSNR SR+DC | dPSNR DC | SSIM SR | SSIM SR+DC | dSSIM DC | PSNR zero-filled | RMS(SR-DC(SR)) |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
for r in rows:
    a, b = r["slice_range"]
    for proto, label in (("std", "standard"), ("real", "realistic")):
        if r[proto + "_psnr_sr"] is None and r[proto + "_psnr_zerofill"] is None:
            continue
        lines.append(
            f"| {r['file']} | {r['scale']} | {a}:{b} | {label} | {f(r[proto + '_psnr_sr'])} | "
            f"{f(r[proto + '_psnr_sr_dc'])} | {diff(r[proto + '_psnr_sr_dc'], r[proto + '_psnr_sr'])} | "
            f"{f(r[proto + '_ssim_sr'], 4)} | {f(r[proto + '_ssim_sr_dc'], 4)} | "
            f"{diff(r[proto + '_ssim_sr_dc'], r[proto + '_ssim_sr'], 4)} | "
            f"{f(r[proto + '_psnr_zerofill'])} | {f(r[proto + '_rms'], 5)} |")
lines.append("")
for k, v in summary.items():
    if k == "runs" or not v["volumes"]:
        continue
    lines.append(f"- {k}: {v['volumes']} volumes, mean dPSNR {f(v['mean_dpsnr_dc'], 3)} dB "
                 f"(min {f(v['min_dpsnr_dc'], 3)}), mean dSSIM {f(v['mean_dssim_dc'], 4)} "
                 f"(min {f(v['min_dssim_dc'], 4)}); DC never hurts: PSNR {v['dc_never_hurts_psnr']}, "
                 f"SSIM {v['dc_never_hurts_ssim']}")
if rows and rows[0].get("realistic_parameters"):
    lines.append(f"- realistic acquisition: {json.dumps(rows[0]['realistic_parameters'])}")
with open(os.path.join(out, "summary.md"), "w") as fh:
    fh.write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
if [ ${#failed[@]} -gt 0 ]; then
    printf 'failed: %s\n' "${failed[@]}" >&2
    exit 1
fi
