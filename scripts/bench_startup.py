#!/usr/bin/env python3
"""Start-up time of the viewer to its first frame on screen, under Xvfb (lavapipe without a GPU).

Several binaries are measured in turn, run by run (ABCABC...), so that the load of the machine
falls on all of them alike. Each run starts a fresh `deltawkv PATH` (fresh HOME: no saved settings) with DELTAWKV_LOG=info on
its own Xvfb display and waits for the viewer's `first frame on screen elapsed_ms=...` log line
(src/app/mod.rs), then kills it. Two figures per run: the wall time from spawning the process to
reading that line (dynamic loading and everything before `main` included), and the viewer's own
`elapsed_ms` (from the start of `main`). Prints the median and range of each, and the file size.

    scripts/bench_startup.py BINARY... [--runs 9] [--file assets/sample_pd.nii.gz] [--json]
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LINE = re.compile(r"first frame on screen.*elapsed_ms=\"?([0-9.]+)")


def free_display() -> int:
    for n in range(140, 200):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    sys.exit("no free X display number")


def one_run(binary: str, file: str, display: int, timeout: float) -> tuple[float, float]:
    home = tempfile.mkdtemp(prefix="bench-startup-")
    os.makedirs(f"{home}/run", mode=0o700)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DISPLAY": f":{display}",
        "HOME": home,
        "XDG_CONFIG_HOME": f"{home}/.config",
        "XDG_DATA_HOME": f"{home}/.local/share",
        "XDG_CACHE_HOME": f"{home}/.cache",
        "XDG_RUNTIME_DIR": f"{home}/run",
        "DELTAWKV_LOG": "info",
        "NO_COLOR": "1",
    }
    t0 = time.perf_counter()
    p = subprocess.Popen(
        [binary, file], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = t0 + timeout
        assert p.stderr is not None
        seen = []
        for line in p.stderr:
            seen.append(line)
            m = LINE.search(line)
            if m:
                return time.perf_counter() - t0, float(m.group(1)) / 1e3
            if time.perf_counter() > deadline:
                break
        sys.exit(f"no first frame from {binary} (exit {p.poll()}):\n{''.join(seen)}")
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        shutil.rmtree(home, ignore_errors=True)


def summary(binary: str, runs: list[tuple[float, float]]) -> dict:
    wall = [r[0] for r in runs]
    main_ = [r[1] for r in runs]
    return {
        "binary": binary,
        "size_bytes": os.path.getsize(binary),
        "runs": len(runs),
        "wall_median_s": statistics.median(wall),
        "wall_min_s": min(wall),
        "wall_max_s": max(wall),
        "main_median_s": statistics.median(main_),
        "main_min_s": min(main_),
        "main_max_s": max(main_),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--warmup", type=int, default=1, help="runs of each not counted (page cache)")
    ap.add_argument("--file", default="assets/sample_pd.nii.gz")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    binaries = [str(Path(b).resolve()) for b in a.binaries]
    display = free_display()
    xvfb = subprocess.Popen(
        ["Xvfb", f":{display}", "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    runs: dict[str, list[tuple[float, float]]] = {b: [] for b in binaries}
    try:
        for _ in range(100):
            if Path(f"/tmp/.X11-unix/X{display}").exists():
                break
            time.sleep(0.05)
        for _ in range(a.warmup):
            for b in binaries:
                one_run(b, a.file, display, a.timeout)
        for _ in range(a.runs):
            for b in binaries:
                runs[b].append(one_run(b, a.file, display, a.timeout))
    finally:
        xvfb.terminate()
        xvfb.wait()
    for b, shown in zip(binaries, a.binaries):
        out = summary(b, runs[b])
        out["binary"] = shown
        if a.json:
            print(json.dumps(out))
        else:
            print(
                f"{shown}: {out['size_bytes'] / 2**20:.1f} MiB; first frame, median of "
                f"{out['runs']}: {out['wall_median_s'] * 1e3:.0f} ms from exec "
                f"({out['wall_min_s'] * 1e3:.0f}-{out['wall_max_s'] * 1e3:.0f}), "
                f"{out['main_median_s'] * 1e3:.0f} ms from main "
                f"({out['main_min_s'] * 1e3:.0f}-{out['main_max_s'] * 1e3:.0f})"
            )


if __name__ == "__main__":
    main()
