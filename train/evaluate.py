"""Evaluate a Delta-WKV checkpoint on NIfTI volumes the way ``deltawkv eval`` does, and the
interpolation baselines, in float32 with the plain-PyTorch chunked scan (no TF32, no fla).

    python3 train/evaluate.py --weights weights/dwkv3m_x2.safetensors [VOLUME.nii.gz ...] \
        [--json out.json] [--markdown]

With no volumes, all files under ``../shared/data/val`` are used. Per volume: the first 3-D
volume, NIfTI scaling applied, stored as float32; ``clip(x / p99.5, 0, 1)`` (``data.py``); axial
slices with rows along j and columns along i, in-plane cropped to a multiple of the scale; LR by
the checkpoint's degradation (``dwkv.degrade.degrade``, the twin of the Rust ``degrade``); SR and
baselines clamped to [0, 1]; PSNR from the MSE over all slices, SSIM the mean over slices, data
range 1 (``dwkv.metrics.volume_metrics``). The set figure is the mean over volumes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from data import val_slices  # noqa: E402
from dwkv import degrade, metrics  # noqa: E402
from dwkv.checkpoint import load_checkpoint  # noqa: E402
from prepare_data import load_first_volume  # noqa: E402

METHODS = ("sr", "zerofill", "bicubic", "nearest")


@torch.no_grad()
def evaluate_volume(model, meta, path: Path, batch: int = 4) -> dict:
    s = int(meta["scale"])
    deg = meta.get("degradation", "kspace")
    data, _ = load_first_volume(path)
    hr = val_slices(data.astype(np.float32), s)  # [k, rows=j, cols=i]
    lr = np.stack([degrade.degrade(sl, s, deg) for sl in hr]).astype(np.float32)
    outs = {}
    sr = []
    for i in range(0, lr.shape[0], batch):
        x = torch.from_numpy(lr[i:i + batch]).unsqueeze(1)
        sr.append(model(x).clamp(0, 1).squeeze(1).numpy())
    outs["sr"] = np.concatenate(sr)
    for m in METHODS[1:]:
        outs[m] = np.stack([np.clip(degrade.upsample(x, s, m, deg), 0, 1) for x in lr])
    res = {"file": str(path), "slices": int(hr.shape[0]), "hr_shape": list(hr.shape[1:])}
    for m, out in outs.items():
        r = metrics.volume_metrics(hr, out, 1.0)
        res[m] = {"psnr": r["psnr"], "ssim": r["ssim"]}
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("volumes", nargs="*")
    ap.add_argument("--json", default=None)
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    vols = [Path(v) for v in args.volumes] or sorted(
        p for p in (HERE.parent.parent / "shared" / "data" / "val").rglob("*.nii*"))
    model, meta = load_checkpoint(args.weights, dtype=torch.float32, scan_impl="chunked")
    results = []
    for v in vols:
        t = time.time()
        r = evaluate_volume(model, meta, v)
        results.append(r)
        print(f"{v.name}: " + " ".join(f"{m} {r[m]['psnr']:.3f}/{r[m]['ssim']:.4f}"
                                       for m in METHODS) + f" ({time.time() - t:.0f} s)",
              flush=True)
    mean = {m: {k: float(np.mean([r[m][k] for r in results])) for k in ("psnr", "ssim")}
            for m in METHODS}
    out = {"weights": args.weights, "metadata": meta, "volumes": results, "mean": mean}
    print("mean: " + " ".join(f"{m} {mean[m]['psnr']:.3f}/{mean[m]['ssim']:.4f}"
                              for m in METHODS))
    if args.markdown:
        print("\n| volume | slices | SR | zero-filled | bicubic | nearest |")
        print("|---|---|---|---|---|---|")
        for r in results + [{"file": "**mean of volumes**", "slices": "", **mean}]:
            name = Path(r["file"]).name if not r["file"].startswith("**") else r["file"]
            cells = [f"{r[m]['psnr']:.2f} / {r[m]['ssim']:.4f}" for m in METHODS]
            print(f"| {name} | {r['slices']} | " + " | ".join(cells) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
