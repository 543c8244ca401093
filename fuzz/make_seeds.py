#!/usr/bin/env python3
"""Writes the committed seed corpora of the nifti, dicom and dicom_pixels fuzz targets
(fuzz/seeds/<target>/), small by design (a few KB each). The checkpoint seeds are written by
`cargo test --test model -- --ignored write_fuzz_seeds` (they need the Rust
checkpoint writer). Run from the repository root: python3 fuzz/make_seeds.py"""
import gzip
import math
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")
FIX = os.path.join(ROOT, "tests", "data", "fixtures")


def put(target, name, data, modes=(0, 1)):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    for m in modes:
        with open(os.path.join(d, f"{name}.m{m}"), "wb") as f:
            f.write(bytes([m]) + data)


def nifti1(dims, datatype, bitpix, data, be=False, slope=0.0, inter=0.0, sform=True, extension=b""):
    e = ">" if be else "<"
    h = bytearray(348)
    struct.pack_into(e + "i", h, 0, 348)
    h[38] = ord("r")
    dim = [len(dims)] + list(dims) + [1] * (7 - len(dims))
    struct.pack_into(e + "8h", h, 40, *dim)
    struct.pack_into(e + "hh", h, 70, datatype, bitpix)
    struct.pack_into(e + "8f", h, 76, 1.0, 1.2, 1.1, 2.0, 1, 1, 1, 1)
    struct.pack_into(e + "f", h, 108, 352 + len(extension))
    struct.pack_into(e + "ff", h, 112, slope, inter)
    h[123] = 2
    h[148:148 + 10] = b"fuzz seed\0"
    struct.pack_into(e + "hh", h, 252, 1, 2 if sform else 0)
    struct.pack_into(e + "6f", h, 256, 0.0, 0.0, 0.0, -10.0, 12.0, -5.0)
    srow = [1.2, 0, 0, -10, 0, 1.1, 0, 12, 0, 0, 2.0, -5]
    struct.pack_into(e + "12f", h, 280, *srow)
    h[344:348] = b"n+1\0"
    ext = bytes([1 if extension else 0, 0, 0, 0])
    return bytes(h) + ext + extension + data


def nifti2(dims, datatype, bitpix, data, be=False):
    e = ">" if be else "<"
    h = bytearray(540)
    struct.pack_into(e + "i", h, 0, 540)
    h[4:12] = b"n+2\0\r\n\x1a\n"
    struct.pack_into(e + "hh", h, 12, datatype, bitpix)
    dim = [len(dims)] + list(dims) + [1] * (7 - len(dims))
    struct.pack_into(e + "8q", h, 16, *dim)
    struct.pack_into(e + "8d", h, 104, -1.0, 0.9, 0.9, 1.5, 1, 1, 1, 1)
    struct.pack_into(e + "q", h, 168, 544)
    struct.pack_into(e + "dd", h, 176, 1.0, 0.0)
    struct.pack_into(e + "ii", h, 344, 1, 0)
    struct.pack_into(e + "6d", h, 352, 0.1, 0.2, 0.3, 1.0, 2.0, 3.0)
    return bytes(h) + b"\0\0\0\0" + data


def vox(fmt, n, be=False, f=lambda i: i):
    e = ">" if be else "<"
    return struct.pack(e + fmt * n, *[f(i) for i in range(n)])


# NIfTI
put("nifti", "n1_i16_8x8x4", nifti1([8, 8, 4], 4, 16, vox("h", 256, f=lambda i: (i * 37) % 900 - 100)))
put("nifti", "n1_be_f32_6x5x3_nan", nifti1([6, 5, 3], 16, 32,
    vox("f", 90, be=True, f=lambda i: math.nan if i == 7 else math.inf if i == 8 else i * 0.5), be=True))
put("nifti", "n1_u8_4x4x2x3_scaled", nifti1([4, 4, 2, 3], 2, 8, bytes(range(96)), slope=2.0, inter=-3.0))
put("nifti", "n1_u16_ext_qform", nifti1([5, 3, 2], 512, 16, vox("H", 30, f=lambda i: i * 2000), sform=False,
    extension=struct.pack("<ii", 16, 4) + b"abcdefgh"))
put("nifti", "n1_f64_2d", nifti1([7, 6], 64, 64, vox("d", 42, f=lambda i: i / 3.0)))
put("nifti", "n1_i64_3x3x3", nifti1([3, 3, 3], 1024, 64, vox("q", 27, f=lambda i: i - 13)))
put("nifti", "n2_f32_4x4x4", nifti2([4, 4, 4], 16, 32, vox("f", 64, f=lambda i: i * 1.5)))
put("nifti", "n2_be_i8_3x4x2", nifti2([3, 4, 2], 256, 8, bytes((i * 11) & 0xFF for i in range(24)), be=True))
# A real gzip file as is (mode 0), so damaged gzip streams are reachable by mutation.
put("nifti", "n2_gz_stream", gzip.compress(nifti2([4, 4, 2], 4, 16, vox("h", 32))), modes=(0,))

# DICOM: the small single-frame fixtures (uncompressed, implicit, big endian, RLE, JPEG-LS,
# JPEG 2000), one file of the tiny series, and the gzip mode of the first.
for name in ["MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm",
             "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"]:
    with open(os.path.join(FIX, "dicom_single_mr_small", name), "rb") as f:
        put("dicom", name.replace(".dcm", ""), f.read(), modes=(0,) if name != "MR_small.dcm" else (0, 1))
with open(os.path.join(FIX, "dicom_series_tiny16", "4528"), "rb") as f:
    put("dicom", "tiny16_4528", f.read(), modes=(0,))

# dicom_pixels: [ts, rows, cols, sample, frames] + pixel bytes, per transfer syntax, with the
# compressed frames of the fixtures where there are some (found by their JPEG/J2K/RLE markers).
def frag(path, marker):
    with open(path, "rb") as f:
        b = f.read()
    i = b.find(marker)
    return b[i:i + 6000] if i >= 0 else b""

small = os.path.join(FIX, "dicom_single_mr_small")
native = vox("H", 64, f=lambda i: i * 17)
for ts in range(4):
    os.makedirs(os.path.join(SEEDS, "dicom_pixels"), exist_ok=True)
    with open(os.path.join(SEEDS, "dicom_pixels", f"native_ts{ts}"), "wb") as f:
        f.write(bytes([ts, 7, 7, 1, 0]) + native)
# RLE: one segment header (1 segment, offset 64) then a literal run.
rle = struct.pack("<16I", 1, 64, *([0] * 14)) + bytes([7]) + bytes(range(8))
seeds = {
    "rle": (4, rle, 0, 0),
    "jpegls": (9, frag(os.path.join(small, "MR_small_jpeg_ls_lossless.dcm"), b"\xff\xd8\xff"), 63, 63),
    "j2k": (11, frag(os.path.join(small, "MR_small_jp2klossless.dcm"), b"\xff\x4f\xff\x51"), 63, 63),
    "jpeg_lossless": (7, frag(os.path.join(FIX, "dicom_compressed_mr", "jpeg_lossless_sel1.dcm"), b"\xff\xd8\xff"), 63, 63),
}
for name, (ts, body, r, c) in seeds.items():
    with open(os.path.join(SEEDS, "dicom_pixels", name), "wb") as f:
        f.write(bytes([ts, r, c, 1, 0]) + body)
