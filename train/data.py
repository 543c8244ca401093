"""Training crops and validation slices for the Delta-WKV trainer.

Training (``TrainSampler``): volumes from ``.devdata/train.npz`` (see ``prepare_data.py``); a
sample is a random usable slice along a random axis of a volume drawn with the prepared
probabilities, cut to a square HR crop of ``crop`` voxels (zero-padded where the slice is smaller,
at a random offset), then flipped and rotated by a multiple of 90 degrees. Geometry is augmented
on the HR only; the LR is made from the augmented HR afterwards (on the GPU, in ``train.py``).

Validation (``load_val``): whole axial slices of the val volumes, normalised exactly as
``deltawkv eval`` does it:

* the first 3-D volume of the file, NIfTI scaling applied, non-finite voxels set to 0;
* ``robust_max`` = 99.5th percentile (linear interpolation between order statistics, NumPy's
  default) of the finite voxels of the whole volume, zeros included; normalised
  ``n = clip(x / robust_max, 0, 1)``;
* in-plane crop to a multiple of the scale, keeping voxels ``0 .. floor(d / s) * s`` of both
  in-plane axes (i.e. the last ``d mod s`` voxels are dropped);
* axial slice ``k`` as a 2-D image with rows along the voxel axis ``j`` and columns along ``i``
  (``plane[row=j, col=i] = vol[i, j, k]``), the layout of ``Volume::slice(Axis::Axial, k)`` in
  the Rust crate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Smallest in-plane extent (voxels) of a slice used for training along a given axis: thinner
# stacks (20-25 thick slices) seen side-on are skipped.
MIN_INPLANE = 40


@dataclass
class TrainVolume:
    data: np.ndarray  # uint8, round(255 * normalised)
    slices: list[np.ndarray]  # usable slice indices per axis (empty when the axis is unusable)
    prob: float
    averaged: bool
    name: str


def load_train(path: Path) -> list[TrainVolume]:
    """Volumes of a prepared ``train.npz``."""
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        vols = []
        for i, v in enumerate(meta["volumes"]):
            data = z[f"vol_{i}"]
            slices = []
            for axis in range(3):
                inplane = [data.shape[a] for a in range(3) if a != axis]
                s = z[f"slices_{i}_{axis}"]
                slices.append(s if min(inplane) >= MIN_INPLANE else s[:0])
            averaged = "colin27/" in v["file"] or "templates_AVERAGES/" in v["file"]
            vols.append(TrainVolume(data, slices, float(v["prob"]), averaged, v["file"]))
    usable = [v for v in vols if any(len(s) for s in v.slices)]
    total = sum(v.prob for v in usable)
    for v in usable:
        v.prob /= total
    return usable


class TrainSampler:
    """Random HR crops (uint8) with flips and 90-degree rotations, from a numpy Generator."""

    def __init__(self, volumes: list[TrainVolume], crop: int, rng: np.random.Generator):
        self.volumes = volumes
        self.crop = crop
        self.rng = rng
        self.probs = np.array([v.prob for v in volumes])

    def _slice(self, vol: TrainVolume) -> np.ndarray:
        axes = [a for a in range(3) if len(vol.slices[a])]
        axis = axes[self.rng.integers(len(axes))]
        idx = int(vol.slices[axis][self.rng.integers(len(vol.slices[axis]))])
        return vol.data[(slice(None),) * axis + (idx,)]  # a view, no copy

    def _crop(self, img: np.ndarray) -> np.ndarray:
        c = self.crop
        out = np.zeros((c, c), dtype=np.uint8)
        h, w = img.shape
        # source window and destination offset per dimension
        if h >= c:
            y0, dy, hh = int(self.rng.integers(h - c + 1)), 0, c
        else:
            y0, dy, hh = 0, int(self.rng.integers(c - h + 1)), h
        if w >= c:
            x0, dx, ww = int(self.rng.integers(w - c + 1)), 0, c
        else:
            x0, dx, ww = 0, int(self.rng.integers(c - w + 1)), w
        out[dy : dy + hh, dx : dx + ww] = img[y0 : y0 + hh, x0 : x0 + ww]
        return out

    def sample(self, batch: int, tries: int = 4) -> tuple[np.ndarray, np.ndarray]:
        """``(crops [batch, crop, crop] uint8, averaged [batch] bool)``."""
        crops = np.empty((batch, self.crop, self.crop), dtype=np.uint8)
        averaged = np.zeros(batch, dtype=bool)
        for b in range(batch):
            vi = int(self.rng.choice(len(self.volumes), p=self.probs))
            vol = self.volumes[vi]
            img = self._slice(vol)
            for _ in range(tries):  # reject crops that are nearly all background
                crop = self._crop(img)
                if (crop > 13).mean() >= 0.1:  # 13/255 ~ 0.05
                    break
            k = int(self.rng.integers(4))
            crop = np.rot90(crop, k)
            if self.rng.integers(2):
                crop = crop[:, ::-1]
            crops[b] = crop
            averaged[b] = vol.averaged
        return crops, averaged


def robust_max(data: np.ndarray) -> float:
    """99.5th percentile of the finite voxels (float64, NumPy linear); the maximum if <= 0."""
    finite = data[np.isfinite(data)].astype(np.float64)
    rm = float(np.percentile(finite, 99.5))
    if rm <= 0:
        rm = float(finite.max())
    return rm


def normalise_volume(data: np.ndarray) -> np.ndarray:
    """``clip(x / robust_max, 0, 1)`` in float32, non-finite voxels set to 0."""
    rm = robust_max(data)
    out = np.where(np.isfinite(data), data, 0).astype(np.float64) / rm
    return np.clip(out, 0.0, 1.0).astype(np.float32)


@dataclass
class ValVolume:
    name: str
    hr: np.ndarray  # [slices, rows (j), cols (i)] float32, normalised and cropped


def val_slices(data: np.ndarray, scale: int) -> np.ndarray:
    """Normalised axial slices ``[k, j, i]`` of a volume, in-plane cropped to a multiple of scale."""
    n = normalise_volume(data)
    ni = (n.shape[0] // scale) * scale
    nj = (n.shape[1] // scale) * scale
    n = n[:ni, :nj, :]
    return np.ascontiguousarray(np.transpose(n, (2, 1, 0)))


def load_val(path: Path, scale: int) -> list[ValVolume]:
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        return [
            ValVolume(v["file"], val_slices(z[f"vol_{i}"], scale))
            for i, v in enumerate(meta["volumes"])
        ]
