"""Markdown tables for BENCHMARKS.md from one device call's `bench.jsonl` (scripts/device_bench*.sh)
and, if given, the PyTorch reference's `torch.json` (train/bench_torch.py) of the same call.

    python3 scripts/bench_tables.py bench.jsonl [torch.json]
"""

from __future__ import annotations

import json
import re
import sys


def main() -> None:
    runs = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    torch = {}
    if len(sys.argv) > 2:
        for r in json.load(open(sys.argv[2]))["rows"]:
            vol = r["slices"] > 1
            torch[(r["scale"], r["size"], vol, r["precision"])] = r
    print("| run | config | batch | WGSL ms/slice (variants) | PyTorch fp32 | PyTorch bf16 | "
          "WGSL vs PyTorch fp32 | compute floor | bandwidth floor (traffic) | x roofline floor | GPU buffers |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        name, d = run["name"], run["result"]
        g = d.get("gpu") or {}
        m = re.match(r"x(\d)_(\d+)_(b1|v\d+)", name)
        vs = d.get("kernel_variants", [])
        var = ", ".join(f"{v['kernels']} {1e3 * v['seconds_per_slice']:.2f}" for v in vs)
        per = g.get("seconds_per_slice")
        tf = tb = ratio = "-"
        if m:
            s, n, kind = int(m.group(1)), int(m.group(2)), m.group(3)
            vol = kind != "b1"
            f32 = torch.get((s, n, vol, "fp32"))
            b16 = torch.get((s, n, vol, "bf16"))
            if f32:
                tf = f"{1e3 * f32['seconds_per_slice']:.2f} (batch {f32['batch']}, {f32['peak_gib']:.1f} GiB)"
                r = f32["seconds_per_slice"] / per
                ratio = f"{r:.2f}x faster" if r >= 1 else f"{1 / r:.2f}x slower"
            if b16:
                tb = f"{1e3 * b16['seconds_per_slice']:.2f}"
        size = "x".join(str(v) for v in d.get("size", []))
        print(f"| {name} | x{d.get('scale')} {size}, {d.get('slices')} slices | {g.get('batch')} | {var} | {tf} | {tb} | {ratio} | "
              f"{1e3 * g.get('floor_seconds_per_slice', 0):.2f} | "
              f"{1e3 * g.get('bandwidth_floor_seconds_per_slice', 0):.2f} ({g.get('traffic_bytes_per_slice', 0) / 1e6:.0f} MB) | "
              f"{g.get('ratio_to_roofline_floor', 0):.1f} | {g.get('buffer_bytes', 0) / 2**30:.2f} GiB |")
    g0 = (runs[0]["result"].get("gpu") or {}) if runs else {}
    print(f"\nmatmul {g0.get('matmul_gflops', 0):.0f} GFLOP/s, copy bandwidth {g0.get('bandwidth_gbs', 0):.0f} GB/s, "
          f"adapter {g0.get('adapter')} [{g0.get('pci_bus_id')}]")
    for run in runs:
        for v in run["result"].get("kernel_variants", []):
            if v.get("profile"):
                tot = sum(k["seconds"] for k in v["profile"])
                print(f"\nprofile {run['name']} {v['kernels']} ({1e3 * tot:.1f} ms per batch, each dispatch synchronised):")
                for k in v["profile"][:10]:
                    print(f"  {k['kernel']:<44} {k['dispatches']:5d} {1e3 * k['seconds']:9.2f} ms {100 * k['seconds'] / tot:5.1f}%")


if __name__ == "__main__":
    main()
