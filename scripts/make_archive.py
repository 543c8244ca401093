#!/usr/bin/env python3
"""Makes an archive of NIfTI volumes for `deltawkv batch` tests and benchmarks (stdlib only).

Each source NIfTI-1 file (.nii or .nii.gz; the first 3-D volume of 4-D data) is centre-cropped
or zero-padded in-plane to WIDTHxHEIGHT, optionally cut to its first SLICES slices, and written
COPIES times as out/NNN/<name>.nii.gz (raw stored values kept: same datatype and scaling; the
sform's origin follows the crop/pad, the qform is left unset). Files differ only in their paths.

usage: make_archive.py OUT_DIR --copies N [--size WxH] [--slices K] SRC.nii[.gz] ...
"""

import argparse
import gzip
import os
import struct
import sys

BYTES = {2: 1, 4: 2, 8: 4, 16: 4, 64: 8, 256: 1, 512: 2, 768: 4, 1024: 8, 1280: 8}


def read_nifti(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    for endian in "<>":
        if struct.unpack(endian + "i", raw[:4])[0] == 348:
            break
    else:
        sys.exit(f"{path}: not NIfTI-1")
    hdr = bytearray(raw[:348])
    dim = list(struct.unpack(endian + "8h", hdr[40:56]))
    datatype = struct.unpack(endian + "h", hdr[70:72])[0]
    if datatype not in BYTES:
        sys.exit(f"{path}: datatype {datatype} not supported")
    offset = int(struct.unpack(endian + "f", hdr[108:112])[0])
    nx, ny, nz = (max(1, d) for d in dim[1:4])
    nbytes = nx * ny * nz * BYTES[datatype]
    data = raw[offset : offset + nbytes]
    if len(data) != nbytes:
        sys.exit(f"{path}: truncated")
    return endian, hdr, (nx, ny, nz), BYTES[datatype], data


def reshape(endian, hdr, dims, bpv, data, width, height, slices):
    nx, ny, nz = dims
    nz2 = min(nz, slices) if slices else nz
    w, h = width or nx, height or ny
    # Source start (crop) and destination start (pad) per in-plane axis, centred.
    sx, dx = max(0, (nx - w) // 2), max(0, (w - nx) // 2)
    sy, dy = max(0, (ny - h) // 2), max(0, (h - ny) // 2)
    cw, ch = min(nx, w), min(ny, h)
    out = bytearray(w * h * nz2 * bpv)
    for k in range(nz2):
        for j in range(ch):
            src = ((k * ny + sy + j) * nx + sx) * bpv
            dst = ((k * h + dy + j) * w + dx) * bpv
            out[dst : dst + cw * bpv] = data[src : src + cw * bpv]
    dim = list(struct.unpack(endian + "8h", hdr[40:56]))
    dim[0], dim[1], dim[2], dim[3] = 3, w, h, nz2
    dim[4:] = [1, 1, 1, 1]
    hdr[40:56] = struct.pack(endian + "8h", *dim)
    # sform origin moves by the affine applied to the voxel shift (dx - sx, dy - sy).
    srow = [list(struct.unpack(endian + "4f", hdr[280 + 16 * r : 296 + 16 * r])) for r in range(3)]
    shift_i, shift_j = sx - dx, sy - dy
    for r in range(3):
        srow[r][3] += srow[r][0] * shift_i + srow[r][1] * shift_j
        hdr[280 + 16 * r : 296 + 16 * r] = struct.pack(endian + "4f", *srow[r])
    hdr[252:254] = struct.pack(endian + "h", 0)  # qform_code: unset (the sform holds the grid)
    sform_code = struct.unpack(endian + "h", hdr[254:256])[0]
    if sform_code == 0:
        pix = struct.unpack(endian + "8f", hdr[76:108])
        srow = [[pix[1], 0, 0, 0], [0, pix[2], 0, 0], [0, 0, pix[3], 0]]
        for r in range(3):
            hdr[280 + 16 * r : 296 + 16 * r] = struct.pack(endian + "4f", *srow[r])
        hdr[254:256] = struct.pack(endian + "h", 2)
    hdr[108:112] = struct.pack(endian + "f", 352.0)
    return bytes(hdr) + b"\0\0\0\0" + bytes(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("sources", nargs="+")
    ap.add_argument("--copies", type=int, default=1)
    ap.add_argument("--size", default="", help="WxH in-plane (crop or pad); default: keep")
    ap.add_argument("--slices", type=int, default=0, help="keep the first K slices")
    a = ap.parse_args()
    width = height = 0
    if a.size:
        width, height = (int(x) for x in a.size.lower().split("x"))
    made = 0
    for src in a.sources:
        name = os.path.basename(src)
        for ext in (".gz", ".nii"):
            if name.endswith(ext):
                name = name[: -len(ext)]
        blob = gzip.compress(reshape(*read_nifti(src), width, height, a.slices), 6, mtime=0)
        for c in range(a.copies):
            d = os.path.join(a.out, f"{c:03d}")
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, name + ".nii.gz"), "wb") as f:
                f.write(blob)
            made += 1
    print(f"{made} volumes in {a.out}")


if __name__ == "__main__":
    main()
