"""Prepare the training and validation data for the Delta-WKV trainer.

Reads the NIfTI volumes under ``<data>/train`` and ``<data>/val`` (default ``../shared/data``),
and writes two compact files into ``<out>`` (default ``.devdata/``, ignored by git, carried to the
GPU machine with ``carry: [".devdata"]``):

``train.npz``
    One uint8 array per training volume (``vol_<i>``, 3-D, cropped to the bounding box of its
    foreground plus a margin), holding ``round(255 * n)`` of the normalised intensities
    ``n = clip(x / robust_max, 0, 1)``. The quantisation step (1/255, RMS error 0.0011) is far
    below the noise of these scans and keeps all 16 volumes in about 16 MB; float16 would need
    about 25 MB, too much next to the resumable state inside the 64 MiB a device call carries.
    ``slices_<i>_<axis>`` lists the usable (not nearly empty) slice indices along each axis.
    ``meta`` is a JSON string: per volume its file, robust maximum, shape, voxel size, weight and
    sampling probability.

``val.npz``
    The val volumes exactly as stored in the files (first volume of 4-D files, NIfTI scaling
    applied, float32), so that validation normalises them in the same way as ``deltawkv eval``.

Normalisation (the definition the Rust ``deltawkv eval`` follows): ``robust_max`` is the 99.5th
percentile (NumPy's default linear interpolation) of all finite voxels of the 3-D volume, zeros
included; the normalised volume is ``clip(x / robust_max, 0, 1)``, non-finite voxels set to 0.

Every distinct frame of a 4-D file is a training volume (``<file>#frame<t>`` past the first;
frames within ``MIN_FRAME_DIFFERENCE`` of an earlier one are dropped), the file's weight shared as
``weight / sqrt(frames)``.

Per-volume weights: averaged volumes (Colin27, an average of 27 scans, and the MNI templates,
averages of 152 subjects) are smooth and would teach the network to over-smooth, so they are
weighted down; the three b=0 EPI volumes of one subject share one subject's weight.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

# Sampling weight per file (substring match on the path); anything not listed has weight 1.
VOLUME_WEIGHTS = {
    "colin27/": 0.5,  # average of 27 scans of one subject: real anatomy, smoothed noise
    "templates_AVERAGES/": 0.2,  # population averages: smooth
    "heudiconv_b0_mosaic": 0.5,  # three b=0 volumes of one subject
}

# A slice is usable when at least this fraction of its voxels exceeds FOREGROUND.
FOREGROUND = 0.05
MIN_FOREGROUND_FRACTION = 0.05


def load_first_volume(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """The first 3-D volume of a NIfTI file (scaling applied) as float64, and its voxel size."""
    import nibabel as nib

    img = nib.load(str(path))
    data = np.asanyarray(img.dataobj).astype(np.float64)  # applies scl_slope / scl_inter
    while data.ndim > 3:
        data = data[..., 0]
    while data.ndim < 3:
        data = data[..., None]
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    return data, zooms


# A further frame of a 4-D file is a training volume of its own when its mean absolute difference
# to every frame kept before it is at least this fraction of the file's robust maximum (cine and
# fMRI frames differ by 0.5-6 %; a repeated frame adds nothing).
MIN_FRAME_DIFFERENCE = 0.002


def load_frames(path: Path) -> tuple[list[np.ndarray], tuple[float, ...]]:
    """Every distinct 3-D frame of a NIfTI file (scaling applied, float64; a 3-D file is one
    frame; frames past the 4th dimension's are flattened), and the voxel size."""
    import nibabel as nib

    img = nib.load(str(path))
    data = np.asanyarray(img.dataobj).astype(np.float64)
    while data.ndim < 3:
        data = data[..., None]
    frames4 = data.reshape(data.shape[:3] + (-1,))
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    rm = robust_max(frames4[..., 0])
    kept: list[np.ndarray] = []
    for t in range(frames4.shape[3]):
        f = frames4[..., t]
        if all(np.mean(np.abs(np.nan_to_num(f - k))) >= MIN_FRAME_DIFFERENCE * rm for k in kept):
            kept.append(f)
    return kept, zooms


def robust_max(data: np.ndarray) -> float:
    """99.5th percentile of the finite voxels (falls back to the maximum when that is <= 0)."""
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        raise ValueError("volume has no finite voxels")
    rm = float(np.percentile(finite, 99.5))
    if rm <= 0:
        rm = float(finite.max())
    if rm <= 0:
        raise ValueError("volume has no positive voxels")
    return rm


def normalise(data: np.ndarray, rm: float) -> np.ndarray:
    """``clip(x / rm, 0, 1)`` with non-finite voxels set to 0."""
    out = np.where(np.isfinite(data), data, 0.0) / rm
    return np.clip(out, 0.0, 1.0)


def volume_weight(rel: str) -> float:
    for key, w in VOLUME_WEIGHTS.items():
        if key in rel:
            return w
    return 1.0


def usable_slices(vol: np.ndarray, axis: int) -> np.ndarray:
    """Indices of slices along ``axis`` that are not nearly empty."""
    fg = vol > FOREGROUND
    other = tuple(a for a in range(3) if a != axis)
    frac = fg.mean(axis=other)
    return np.nonzero(frac >= MIN_FOREGROUND_FRACTION)[0].astype(np.int32)


def foreground_bbox(vol: np.ndarray, margin: int = 4) -> tuple[slice, slice, slice]:
    fg = vol > 0.02
    if not fg.any():
        return (slice(None),) * 3
    idx = np.argwhere(fg)
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = np.minimum(idx.max(0) + margin + 1, vol.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def prepare_train(src: Path) -> tuple[dict, dict]:
    files = sorted(p for p in src.rglob("*.nii*") if p.is_file())
    if not files:
        raise SystemExit(f"no NIfTI files under {src}")
    arrays: dict[str, np.ndarray] = {}
    vols = []
    entries = []
    for path in files:
        rel = str(path.relative_to(src))
        frames, zooms = load_frames(path)
        for t, data in enumerate(frames):
            # the frames of one file share its weight (sqrt: more real variation, not n-fold)
            name = rel if t == 0 else f"{rel}#frame{t}"
            entries.append((name, data, zooms, volume_weight(rel) / np.sqrt(len(frames))))
    for i, (rel, data, zooms, weight) in enumerate(entries):
        rm = robust_max(data)
        norm = normalise(data, rm)
        bb = foreground_bbox(norm)
        norm = norm[bb]
        q = np.round(norm * 255.0).astype(np.uint8)
        arrays[f"vol_{i}"] = q
        usable = 0
        for axis in range(3):
            s = usable_slices(norm, axis)
            arrays[f"slices_{i}_{axis}"] = s
            usable += len(s)
        fg_vox = int((norm > FOREGROUND).sum())
        vols.append(
            {
                "file": rel,
                "robust_max": rm,
                "source_shape": list(data.shape),
                "shape": list(q.shape),
                "voxel_mm": list(zooms),
                "weight": float(weight),
                "foreground_voxels": fg_vox,
                "usable_slices": usable,
            }
        )
    # Sampling probability: weight x sqrt(foreground voxels), so that large 3-D volumes give more
    # crops than single 2-D slices without drowning them.
    raw = np.array([v["weight"] * np.sqrt(max(v["foreground_voxels"], 1)) for v in vols])
    prob = raw / raw.sum()
    for v, p in zip(vols, prob):
        v["prob"] = float(p)
    meta = {
        "normalisation": "clip(x / p99.5(finite voxels), 0, 1), stored as round(255 * n) uint8",
        "volumes": vols,
    }
    return arrays, meta


def prepare_val(src: Path) -> tuple[dict, dict]:
    files = sorted(p for p in src.rglob("*.nii*") if p.is_file())
    if not files:
        raise SystemExit(f"no NIfTI files under {src}")
    arrays = {}
    vols = []
    for i, path in enumerate(files):
        rel = str(path.relative_to(src))
        data, zooms = load_first_volume(path)
        arrays[f"vol_{i}"] = data.astype(np.float32)
        vols.append(
            {
                "file": rel,
                "shape": list(data.shape),
                "voxel_mm": list(zooms),
                "robust_max": robust_max(data.astype(np.float32).astype(np.float64)),
            }
        )
    return arrays, {"volumes": vols}


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=here.parent.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=here.parent / ".devdata")
    args = ap.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    for split, fn in (("train", prepare_train), ("val", prepare_val)):
        arrays, meta = fn(args.data / split)
        path = args.out / f"{split}.npz"
        np.savez_compressed(path, meta=np.array(json.dumps(meta)), **arrays)
        print(f"{split}: {len(meta['volumes'])} volumes -> {path} ({path.stat().st_size / 1e6:.1f} MB)")
        for v in meta["volumes"]:
            extra = f" w={v['weight']} p={v['prob']:.3f}" if "prob" in v else ""
            print(f"  {v['file']}: shape {v['shape']} robust_max {v['robust_max']:.4g}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
