"""Print the model card's per-volume validation table (markdown) from a training log.

    python train/tools/card_tables.py train/logs/x2/val_detail.jsonl [--step N] [--weights raw|ema]

Uses the entry of step N (default: the last one) of ``val_detail.jsonl`` as train.py writes it:
PSNR (dB) / SSIM per val volume for the network and the zero-filled, bicubic and nearest baselines,
and the mean of the volumes (the val-set figure). No torch needed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("log", type=Path)
    ap.add_argument("--step", type=int, default=None)
    ap.add_argument("--weights", default="raw")
    args = ap.parse_args()
    entries = [json.loads(line) for line in args.log.read_text().splitlines() if line.strip()]
    if args.step is not None:
        entries = [e for e in entries if e["step"] == args.step]
        if not entries:
            raise SystemExit(f"no entry for step {args.step} in {args.log}")
    e = entries[-1]
    sr = e["per_volume"][args.weights]
    cols = ["zerofill", "bicubic", "nearest"]
    print("| volume (`shared/data/val/...`) | SR (this checkpoint) | zero-filled | bicubic | nearest |")
    print("|---|---|---|---|---|")
    sums = {k: [0.0, 0.0] for k in ["sr", *cols]}
    for vol, (p, s) in sr.items():
        row = [f"{p:.2f} / {s:.4f}"]
        sums["sr"][0] += p
        sums["sr"][1] += s
        for c in cols:
            bp, bs = e["baselines"][vol][c]
            row.append(f"{bp:.2f} / {bs:.4f}")
            sums[c][0] += bp
            sums[c][1] += bs
        print(f"| `{vol}` | " + " | ".join(row) + " |")
    n = len(sr)
    means = [f"**{sums[k][0] / n:.2f} / {sums[k][1] / n:.4f}**" for k in ["sr", *cols]]
    print("| **mean of the volumes** | " + " | ".join(means) + " |")
    print(f"\nstep {e['step']}, weights {args.weights}, mean SR {sums['sr'][0] / n:.4f} dB / "
          f"{sums['sr'][1] / n:.5f}")


if __name__ == "__main__":
    main()
