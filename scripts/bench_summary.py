"""One `deltawkv bench --json` result: append it to a JSON-lines file under its name and print a
short summary (adapter, floors, each kernel variant, the top of each profile).

    python3 scripts/bench_summary.py RESULT.json NAME OUT.jsonl
"""

import json
import sys


def main() -> None:
    try:
        d = json.load(open(sys.argv[1]))
    except Exception as e:  # noqa: BLE001
        print("  no result:", e)
        return
    with open(sys.argv[3], "a") as f:
        f.write(json.dumps({"name": sys.argv[2], "result": d}) + "\n")
    g = d.get("gpu") or {}
    print(f"  {g.get('adapter')} [{g.get('pci_bus_id')}] batch {g.get('batch')}"
          f" matmul {g.get('matmul_gflops', 0):.0f} GFLOP/s bw {g.get('bandwidth_gbs', 0):.0f} GB/s"
          f" floor {1e3 * g.get('floor_seconds_per_slice', 0):.2f}"
          f" bw-floor {1e3 * g.get('bandwidth_floor_seconds_per_slice', 0):.2f} ms/slice")
    for v in d.get("kernel_variants", []):
        e = v.get("max_rel_error_gpu_vs_cpu")
        print(f"  {v['kernels']:<12} {1e3 * v['seconds_per_slice']:9.2f} ms/slice"
              f"  x{v['time_vs_first']:.2f}  first {v['first_run_seconds']:.2f} s"
              + (f"  err {e:.1e}" if e is not None else ""))
    profiles = [("default", d.get("profile") or [])]
    profiles += [(v["kernels"], v.get("profile") or []) for v in d.get("kernel_variants", [])]
    for name, prof in profiles:
        tot = sum(k["seconds"] for k in prof) or 1
        for k in prof[:8]:
            print(f"      {name}: {k['kernel']:<34} {k['dispatches']:5d} "
                  f"{1e3 * k['seconds']:9.2f} ms {100 * k['seconds'] / tot:5.1f}%")


if __name__ == "__main__":
    main()
