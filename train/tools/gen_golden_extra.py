"""Generate the golden files of issue 20 (items 1 and 7) in tests/data/golden/.

- ``head32_x{2,4}.safetensors``: the golden checkpoints ``model_x{2,4}.safetensors`` read with
  ``head_size = 32`` (one head of 32 channels: the shipped model's head size, where the GPU engine
  runs its subgroup scan; only ``r_k`` changes shape, ``[H, N] -> [1, 32]``, same values in the
  same order), run on the inputs of ``vectors_x{2,4}.safetensors``. Tensors ``output.{tag}``
  ``[1, s*h, s*w]``, float64.
- ``shipped_x{2,4}.safetensors``: one real 32 x 32 LR crop of ``assets/sample_pd.nii.gz`` (axial
  slice 10, rows 64..96 and columns 48..80 of the stored array: skull, cortex and ventricle
  edges; intensities ``clip(x / p99.5, 0, 1)`` of the volume, rounded to float32) through the
  shipped checkpoint ``weights/dwkv3m_x{2,4}``.
  Tensors ``input`` ``[1, 32, 32]`` and ``output`` ``[1, 32 s, 32 s]``, float32 (the outputs
  computed in float64 and rounded once).

Every output is the PyTorch reference ``train/dwkv`` in float64 with the token-loop scan, on the
checkpoint values as stored (F16 widened). Deterministic.

    /usr/bin/python3 train/tools/gen_golden_extra.py [--out tests/data/golden] [--check]

Needs only torch and numpy (the safetensors files are read and written here directly: the
format is an 8-byte header length, a JSON header and the raw little-endian data), so it runs
where the ``safetensors`` package is not installed. ``--check`` regenerates in memory and
compares with the committed files.
"""

from __future__ import annotations

import argparse
import gzip
import json
import struct
import sys
from pathlib import Path

import numpy as np
import torch

TRAIN = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TRAIN))

from dwkv.checkpoint import config_from_metadata  # noqa: E402
from dwkv.model import DeltaWKV  # noqa: E402

REPO = TRAIN.parent
DEFAULT_OUT = REPO / "tests" / "data" / "golden"
TAGS = ["16x16", "12x16", "9x7", "5x6"]
#: The real crop: axial slice, first row, first column (stored array order), size.
CROP_SLICE, CROP_ROW, CROP_COL, CROP = 10, 64, 48, 32

_DT = {"F64": (np.float64, 8), "F32": (np.float32, 4), "F16": (np.float16, 2)}


def read_st(path: Path):
    """(tensors as float64 torch tensors, metadata) of a safetensors file."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    out = {}
    for name, info in header.items():
        dt, _ = _DT[info["dtype"]]
        a, b = info["data_offsets"]
        arr = np.frombuffer(raw[base + a:base + b], dtype=np.dtype(dt).newbyteorder("<"))
        out[name] = torch.from_numpy(arr.astype(np.float64).reshape(info["shape"]))
    return out, meta


def write_st(path: Path, tensors: dict, meta: dict, dtype: str) -> None:
    """Write ``tensors`` (all as ``dtype``, F64 or F32) with string metadata, sorted by name."""
    np_dt, size = _DT[dtype]
    header = {"__metadata__": {k: str(v) for k, v in meta.items()}}
    blobs = []
    off = 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().double().contiguous().numpy().astype(np_dt)
        b = t.astype(np.dtype(np_dt).newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def model_from(path: Path, head_size: int | None = None) -> DeltaWKV:
    """The float64 token-loop model of a checkpoint file, optionally read with another head size."""
    state, meta = read_st(path)
    meta = dict(meta)
    if head_size is not None:
        meta["head_size"] = str(head_size)
    cfg = config_from_metadata(meta, str(path))
    model = DeltaWKV(cfg, scan_impl="loop").to(torch.float64)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    state = {k: v.reshape(shapes[k]) for k, v in state.items()}
    model.load_state_dict(state, strict=True)
    return model.eval()


def head32(out: Path) -> dict:
    files = {}
    for s in (2, 4):
        model = model_from(DEFAULT_OUT / f"model_x{s}.safetensors", head_size=32)
        vec, _ = read_st(DEFAULT_OUT / f"vectors_x{s}.safetensors")
        res = {}
        for tag in TAGS:
            with torch.no_grad():
                res[f"output.{tag}"] = model(vec[f"input.{tag}"][None])[0]
        meta = {"checkpoint": f"model_x{s}.safetensors read with head_size=32 (r_k [1, 32])",
                "inputs": f"vectors_x{s}.safetensors input.*", "scale": s, "head_size": 32,
                "generator": "train/tools/gen_golden_extra.py", "scan": "loop",
                "precision": "float64"}
        files[out / f"head32_x{s}.safetensors"] = (res, meta, "F64")
    return files


def read_nifti(path: Path) -> np.ndarray:
    """The data array of a NIfTI-1 file, float64, stored (x fastest) order as [z, y, x], scaled."""
    raw = gzip.decompress(path.read_bytes())
    dim = struct.unpack("<8h", raw[40:56])
    datatype, _ = struct.unpack("<hh", raw[70:74])
    (vox_offset,) = struct.unpack("<f", raw[108:112])
    slope, inter = struct.unpack("<ff", raw[112:120])
    dt = {4: "<i2", 512: "<u2", 16: "<f4", 2: "u1", 8: "<i4", 64: "<f8"}[datatype]
    nx, ny, nz = dim[1], dim[2], dim[3]
    a = np.frombuffer(raw[int(vox_offset):], dtype=dt, count=nx * ny * nz).astype(np.float64)
    if slope not in (0.0,) and not np.isnan(slope):
        a = a * slope + inter
    return a.reshape(nz, ny, nx)


def shipped(out: Path) -> dict:
    vol = read_nifti(REPO / "assets" / "sample_pd.nii.gz")
    p995 = np.percentile(vol, 99.5)
    sl = np.clip(vol[CROP_SLICE] / p995, 0.0, 1.0)
    crop = sl[CROP_ROW:CROP_ROW + CROP, CROP_COL:CROP_COL + CROP].astype(np.float32)
    x = torch.from_numpy(crop.astype(np.float64))[None]
    files = {}
    for s in (2, 4):
        model = model_from(REPO / "weights" / f"dwkv3m_x{s}.safetensors")
        with torch.no_grad():
            y = model(x[None])[0]
        meta = {"checkpoint": f"weights/dwkv3m_x{s}.safetensors", "scale": s,
                "input": (f"assets/sample_pd.nii.gz axial slice {CROP_SLICE}, stored rows "
                          f"{CROP_ROW}..{CROP_ROW + CROP}, columns {CROP_COL}..{CROP_COL + CROP}, "
                          f"clip(x / p99.5, 0, 1), p99.5 = {p995:.6g}"),
                "generator": "train/tools/gen_golden_extra.py", "scan": "loop",
                "precision": "float64, stored as float32"}
        files[out / f"shipped_x{s}.safetensors"] = ({"input": x, "output": y}, meta, "F32")
        print(f"shipped x{s}: input mean {crop.mean():.4f}, output range "
              f"{y.min().item():.4f}..{y.max().item():.4f}")
    return files


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="compare with the committed files")
    args = ap.parse_args()
    files = {**head32(args.out), **shipped(args.out)}
    bad = 0
    for path, (tensors, meta, dtype) in files.items():
        if not args.check:
            write_st(path, tensors, meta, dtype)
            print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
            continue
        old, old_meta = read_st(path)
        tol = 1e-12 if dtype == "F64" else 1e-6
        same = set(old) == set(tensors) and old_meta == {k: str(v) for k, v in meta.items()}
        same = same and all(torch.allclose(old[k], tensors[k].double().reshape(old[k].shape),
                                           rtol=tol, atol=tol) for k in tensors)
        if not same:
            print(f"DIFFERENT {path}")
            bad += 1
    if args.check:
        print("extra golden files reproduce" if bad == 0 else f"{bad} differences")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
