#!/usr/bin/env bash
# Runs one cargo-fuzz target exactly as FUZZING.md's "Running" section does (address sanitizer,
# debug assertions, the same libFuzzer flags and time) and keeps its complete stdout and stderr,
# with a header (commit, date, load average, toolchain), in OUT_DIR/<target>.log.
#
#     scripts/fuzz_logged.sh TARGET OUT_DIR
#
# The fuzz crate's target directory is CARGO_TARGET_DIR (default fuzz/target); the corpus is
# fuzz/corpus/<target> (not committed), the seeds fuzz/seeds/<target>.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?target} out=$(realpath -m "${2:?output dir}")
case $target in
  nifti) flags=(-max_len=16384 -rss_limit_mb=2048 -timeout=10 -max_total_time=360) ;;
  dicom) flags=(-max_len=16384 -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10 -max_total_time=420) ;;
  dicom_pixels) flags=(-max_len=16384 -rss_limit_mb=2048 -timeout=10 -max_total_time=420) ;;
  checkpoint) flags=(-max_len=310000 -rss_limit_mb=2048 -timeout=10 -max_total_time=360) ;;
  *) echo "unknown target $target" >&2; exit 2 ;;
esac
flags+=(-print_final_stats=1)
mkdir -p "$out" "fuzz/corpus/$target"
log="$out/$target.log"
dirty=$(git status --porcelain -- src fuzz ':!fuzz/corpus' ':!fuzz/artifacts' ':!fuzz/logs' | head -c 2000)
{
  echo "# command (in fuzz/): RUSTC_BOOTSTRAP=1 cargo fuzz run -a $target corpus/$target seeds/$target -- ${flags[*]}"
  echo "# code at: $(git rev-parse HEAD)${dirty:+ (working tree changes: $dirty)}"
  echo "# date: $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
  echo "# host: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
  echo "# toolchain: $(rustc --version), $(cargo fuzz --version), libfuzzer-sys $(grep -A1 'name = "libfuzzer-sys"' fuzz/Cargo.lock | sed -n 's/version = "\(.*\)"/\1/p')"
  echo "# corpus before: $(find "fuzz/corpus/$target" -type f | wc -l) files; seeds: $(find "fuzz/seeds/$target" -type f | wc -l) files"
  echo "# uptime before: $(uptime)"
} > "$log"
t0=$(date +%s)
rc=0
(cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -a "$target" "corpus/$target" "seeds/$target" -- "${flags[@]}") >> "$log" 2>&1 || rc=$?
{
  echo "# exit status: $rc, wall time (build included): $(( $(date +%s) - t0 )) s"
  echo "# uptime after: $(uptime)"
  echo "# corpus after: $(find "fuzz/corpus/$target" -type f | wc -l) files; artifacts: $(ls "fuzz/artifacts/$target" 2>/dev/null | tr '\n' ' ')"
} >> "$log"
echo "$target: exit $rc, $(du -h "$log" | cut -f1) log"
