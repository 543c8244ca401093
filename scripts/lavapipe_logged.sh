#!/usr/bin/env bash
# Reruns the lavapipe bench commands of BENCHMARKS.md ("lavapipe (software Vulkan) on the 2-core
# development machine") one after the other and keeps a raw log of each: the exact command, the
# commit and profile the binary was built at, date, load average before and after, the Vulkan
# driver (vulkaninfo --summary), the wall time, stderr and the `--json` output.
#
#     scripts/lavapipe_logged.sh BIN PROFILE BUILT_AT OUT_DIR
#     python3 scripts/lavapipe_table.py OUT_DIR/*.log     # the tables
set -euo pipefail
bin=${1:?binary} profile=${2:?profile} built_at=${3:?commit} out=${4:?output dir}
mkdir -p "$out"
vulkaninfo --summary > "$out/vulkaninfo-summary.txt" 2>&1 || echo "vulkaninfo failed" >> "$out/vulkaninfo-summary.txt"
driver=$(grep -m1 driverInfo "$out/vulkaninfo-summary.txt" | sed 's/.*= //' || true)
device=$(grep -m1 deviceName "$out/vulkaninfo-summary.txt" | sed 's/.*= //' || true)
run() {
  local name=$1; shift
  local log="$out/$name.log"
  {
    echo "# command: deltawkv $* --json"
    echo "# binary: $bin ($profile profile, built at $built_at)"
    echo "# date: $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
    echo "# host: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(free -g | awk '/Mem:/ {print $2}') GiB RAM"
    echo "# vulkan: $device, $driver"
    echo "# uptime before: $(uptime)"
  } > "$log"
  local t0 rc=0
  t0=$(date +%s)
  "$bin" "$@" --json > "$out/$name.json.tmp" 2> "$out/$name.stderr.tmp" || rc=$?
  {
    echo "# exit status: $rc, wall time: $(( $(date +%s) - t0 )) s"
    echo "# uptime after: $(uptime)"
    echo "## stderr"
    cat "$out/$name.stderr.tmp"
    echo "## stdout (--json)"
    cat "$out/$name.json.tmp"
  } >> "$log"
  rm -f "$out/$name.json.tmp" "$out/$name.stderr.tmp"
  echo "$name: exit $rc ($(sed -n 's/# exit status: .*wall time: //p' "$log"))"
}
# Table 1 (first measured with a release build, --repeat 1, device auto, random checkpoint).
run x2_32x32 bench --scale 2 --size 32x32 --slices 2 --cpu-slices 2 --repeat 1
run x2_64x64 bench --scale 2 --size 64x64 --slices 2 --cpu-slices 2 --repeat 1
run x4_32x32 bench --scale 4 --size 32x32 --slices 2 --cpu-slices 2 --repeat 1
# Session 2's table: x2 32x32, three kernel variants, random checkpoint.
run s2_x2_32x32_variants bench --device gpu --size 32x32 --slices 2 --cpu-slices 2 --repeat 1 \
  --kernels default,per-direction,baseline
# Session 4's table: shipped checkpoints, four kernel variants.
for s in 2 4; do
  run "s4_x${s}_32x32_variants" bench --device gpu --scale "$s" --size 32x32 --slices 2 \
    --cpu-slices 2 --repeat 2 --weights "weights/dwkv3m_x${s}.safetensors" \
    --kernels default,ln-tokens+sg-serial,ln-tokens,sg-serial
done
