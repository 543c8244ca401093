#!/usr/bin/env bash
# Builds the fuzz crate (fuzz/, its own workspace compiling the loaders' source files by path) on
# the stable toolchain, without sanitizers, and replays every seed (fuzz/seeds/<target>/) and
# every regression input of the findings in FUZZING.md (tests/data/fuzz/, through the `dicom`
# target) once. A loader change that breaks the fuzz build, or an input that crashes, panics
# past the library, hangs (-timeout) or allocates past the address-space limit, fails the check.
# Run by scripts/check.sh; about a minute after the build (the build: 1-5 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
(cd fuzz && cargo build --locked --release --quiet)
bin=${CARGO_TARGET_DIR:-fuzz/target}/release
echo "fuzz crate built in $(( $(date +%s) - t0 )) s"
work=$(mktemp -d /tmp/deltawkv-fuzz-replay.XXXXXX)
trap 'rm -rf "$work"' EXIT
# The regression files are loader inputs: the targets' first byte 0 passes the rest as is.
mkdir -p "$work/regressions"
for f in tests/data/fuzz/*; do
  { printf '\0'; cat "$f"; } > "$work/regressions/$(basename "$f")"
done
# Each input in its own process: exit status, and its peak RSS against a limit well above what
# any of them needs (about 30 MB) and below every finding's runaway allocation (540 MB to 3 GB).
echo "== replaying the fuzz seeds and regressions"
python3 - "$bin" "$work/regressions" <<'PY'
import glob, os, subprocess, sys
bin_dir, regressions = sys.argv[1:]
LIMIT_MB = 384
sets = {
    "nifti": sorted(glob.glob("fuzz/seeds/nifti/*")),
    "dicom": sorted(glob.glob("fuzz/seeds/dicom/*")) + sorted(glob.glob(regressions + "/*")),
    "dicom_pixels": sorted(glob.glob("fuzz/seeds/dicom_pixels/*")),
    "checkpoint": sorted(glob.glob("fuzz/seeds/checkpoint/*")),
}
failed = 0
for target, inputs in sets.items():
    peak = 0
    for path in inputs:
        p = subprocess.Popen([os.path.join(bin_dir, target), "-timeout=10", path],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out = p.stdout.read()
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        rss_mb = usage.ru_maxrss / 1024
        peak = max(peak, rss_mb)
        if p.returncode != 0 or rss_mb > LIMIT_MB:
            failed += 1
            why = f"exit {p.returncode}" if p.returncode != 0 else f"peak RSS {rss_mb:.0f} MB > {LIMIT_MB} MB"
            print(f"error: fuzz target {target} on {path}: {why}", file=sys.stderr)
            lines = out.decode(errors="replace").splitlines()
            print("\n".join(l for l in lines if "panicked" in l or "ERROR" in l or "allocation" in l)[-2000:], file=sys.stderr)
    print(f"  {target}: {len(inputs)} inputs, peak RSS {peak:.0f} MB")
sys.exit(1 if failed else 0)
PY
