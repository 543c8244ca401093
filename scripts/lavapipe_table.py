"""Markdown tables for BENCHMARKS.md from the raw logs of scripts/lavapipe_logged.sh.

    python3 scripts/lavapipe_table.py bench/lavapipe-2026-12-07/*.log

Each log holds a `# key: value` header (command, binary, date, load average) and, after the line
`## stdout (--json)`, the JSON object `deltawkv bench --json` printed.
"""

from __future__ import annotations

import json
import re
import sys


def parse(path: str) -> dict:
    header, body, in_json = {}, [], False
    for line in open(path):
        if line.startswith("## stdout"):
            in_json = True
        elif in_json:
            body.append(line)
        elif line.startswith("# ") and ": " in line:
            k, v = line[2:].rstrip("\n").split(": ", 1)
            header[k] = v
    return {"path": path, "header": header, "result": json.loads("".join(body))}


def load(header: dict, key: str) -> str:
    m = re.search(r"load average: ([\d.]+)", header.get(key, ""))
    return m.group(1) if m else "?"


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{1e3 * seconds:,.0f}"


def main() -> None:
    runs = [parse(p) for p in sys.argv[1:]]
    plain = [r for r in runs if len(r["result"].get("kernel_variants", [])) <= 1]
    variants = [r for r in runs if len(r["result"].get("kernel_variants", [])) > 1]
    if plain:
        print("| scale | LR size | GMAC/slice | lavapipe ms/slice (batch) | first run (s) | "
              "CPU reference ms/slice (threads) | CPU / GPU time | GPU buffers | "
              "matmul kernel rate | max rel. error GPU vs CPU | load avg before / after | log |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in plain:
            d, h = r["result"], r["header"]
            g, c = d["gpu"], d.get("cpu_reference") or {}
            ratio = d.get("cpu_over_gpu_time")
            print(f"| x{d['scale']} | {d['size'][0]}x{d['size'][1]} | {d['gmac_per_slice']:.2f} | "
                  f"{ms(g['seconds_per_slice'])} ({g['batch']}) | {g['first_run_seconds']:.1f} | "
                  f"{ms(c.get('seconds_per_slice'))} ({c.get('threads', '-')}) | "
                  f"{'-' if ratio is None else f'{ratio:.2f}'} | "
                  f"{g['buffer_bytes'] / 2**20:.1f} MiB | {g['matmul_gflops']:.1f} GFLOP/s | "
                  f"{d['max_rel_error_gpu_vs_cpu']:.1e} | "
                  f"{load(h, 'uptime before')} / {load(h, 'uptime after')} | [log]({r['path']}) |")
        print()
    for r in variants:
        d, h = r["result"], r["header"]
        g, c = d["gpu"], d.get("cpu_reference") or {}
        print(f"x{d['scale']}, {d['size'][0]}x{d['size'][1]}, batch {g['batch']}, "
              f"weights {d.get('weights') or 'random'}; matmul kernel {g['matmul_gflops']:.1f} GFLOP/s, "
              f"compute floor {ms(g['floor_seconds_per_slice'])} ms/slice; load average "
              f"{load(h, 'uptime before')} before, {load(h, 'uptime after')} after; [log]({r['path']})")
        print()
        print("| variant | ms/slice | vs first | first run (s) | rel. error vs CPU |")
        print("|---|---|---|---|---|")
        for v in d["kernel_variants"]:
            err = v.get("max_rel_error_gpu_vs_cpu")
            print(f"| `{v['kernels']}` | {ms(v['seconds_per_slice'])} | {v['time_vs_first']:.2f} | "
                  f"{v['first_run_seconds']:.1f} | {'-' if err is None else f'{err:.1e}'} |")
        if c:
            print(f"| CPU reference, {c['threads']} threads | {ms(c['seconds_per_slice'])} | "
                  f"{c['seconds_per_slice'] / g['seconds_per_slice']:.2f} | - | - |")
        print()


if __name__ == "__main__":
    main()
