#!/bin/sh
# Old/new alternated three times at each size on the 2-core development machine (BENCHMARKS.md,
# "CPU reference (issue 16)"). OLD and NEW are `deltawkv` binaries (dev profile) built from
# 415fd62 and from this branch; each run's JSON and /usr/bin/time line go to $OUT/<size>.log.
set -eu
OLD=${OLD:?old binary} NEW=${NEW:?new binary} OUT=${OUT:-.}
W=weights/dwkv3m_x2.safetensors
for size in 64x64 128x128; do
    log="$OUT/$size.log"
    : > "$log"
    for i in 1 2 3; do
        for which in old new; do
            if [ "$which" = old ]; then bin=$OLD; else bin=$NEW; fi
            echo "# run $i $which $(date -u +%H:%M:%S) loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >> "$log"
            /usr/bin/time -f "time: %e s wall, %U s user, %S s system" \
                "$bin" bench --device cpu --size "$size" --slices 1 --weights "$W" --json \
                >> "$log" 2>&1
        done
    done
done
