# Shared by scripts/device_bench.sh and scripts/device_bench_train.sh (sourced, not run):
# `bench NAME TIMEOUT ARGS...` runs `$B bench --device gpu --json ARGS...` under a time limit,
# appends {"name", "result"} to $OUT/bench.jsonl, its stderr to $ERRLOG, and prints a summary
# (scripts/bench_summary.py). Needs B, OUT, ERRLOG and T0 set.
bench() {
  local name=$1 t=$2; shift 2
  echo "== $name ($(( $(date +%s) - T0 )) s): $*" | tee -a "$ERRLOG"
  timeout "$t" "$B" bench --device gpu --json "$@" > "/tmp/$name.json" 2> "/tmp/$name.err"
  echo "rc=$?" | tee -a "$ERRLOG"
  cat "/tmp/$name.err" >> "$ERRLOG"
  python3 scripts/bench_summary.py "/tmp/$name.json" "$name" "$OUT/bench.jsonl"
}
