# Shared by scripts/device_bench.sh, scripts/device_bench_train.sh and
# scripts/device_bench_defaults.sh (sourced, not run):
# `device_setup` unpacks the carried Vulkan loader (.gl), points the loader at the NVIDIA driver
# and unpacks the carried engine binary (.devbin), setting B to it.
# `device_intro` does device_setup, then logs the card (nvidia-smi) and the engine's version to
# $ERRLOG and sets W2 and W4 to the shipped checkpoints.
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

device_setup() {
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  [ -f .devbin/deltawkv ] || xz -d -k .devbin/deltawkv.xz
  chmod +x .devbin/deltawkv
  B=.devbin/deltawkv
}

device_intro() {
  device_setup
  nvidia-smi --query-gpu=index,name,pci.bus_id,driver_version,memory.total,clocks.sm,clocks.max.sm \
    --format=csv,noheader | tee -a "$ERRLOG"
  "$B" --version | tee -a "$ERRLOG"
  W2=weights/dwkv3m_x2.safetensors
  W4=weights/dwkv3m_x4.safetensors
}
