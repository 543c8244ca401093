"""LR simulation and interpolation baselines: the Python twin of the Rust module `src/degrade.rs`.

Both implement the same definitions (numbers agree to float32 rounding; the Rust tests check the
vectors that `train/tools/gen_vectors.py` writes from this module):

Sizes
    An HR image whose sides are not multiples of the scale ``s`` is first cropped to
    ``(h // s) * s`` by ``(w // s) * s``, keeping the top-left corner (``crop_to_multiple``). The LR
    image is exactly ``h // s`` by ``w // s``; every upsampling returns ``s`` times the LR size.

Geometry
    LR sample ``i`` sits at HR position ``s * i + o``: ``o = 0`` for k-space truncation (the DFT keeps
    the sampling origin), ``o = (s - 1) / 2`` for bicubic downsampling (centre aligned, MATLAB
    ``imresize``). Upsampling evaluates the LR image at ``u(x) = (x - o) / s`` (``hr_to_lr``).

k-space truncation (``kspace_truncate``)
    2-D DFT; keep the frequencies ``fftfreq(n) * n`` of the LR size in each axis (the centre of
    the shifted spectrum); inverse DFT; real part; times ``1 / s**2`` so intensities are kept.

Bicubic downsampling (``bicubic_downsample``)
    MATLAB ``imresize(x, 1/s, 'bicubic')`` with antialiasing: Keys kernel a = -0.5 widened by
    ``s``, ``ceil(4 s) + 2`` taps, weights normalised to 1, half-sample symmetric boundary; rows
    (vertical) first, then columns.

Baselines (``upsample``)
    nearest: LR index ``clip(floor(u + 0.5), 0, n - 1)``; bicubic: Keys kernel (support 4) at
    ``u(x)``, same boundary; zerofill: LR spectrum placed at the same frequencies of the big
    spectrum, times the phase ramp ``exp(-2 pi i k o / N)``, inverse DFT, real part, times ``s**2``.

Computation in float64, results float32 (numpy). Inputs with NaN/inf raise ``ValueError``.
"""

from __future__ import annotations

import math

import numpy as np

KSPACE = "kspace"
BICUBIC = "bicubic"
DEGRADATIONS = (KSPACE, BICUBIC)
BASELINES = ("zerofill", "bicubic", "nearest")


def lr_to_hr(degradation: str, i, s: int):
    """HR coordinate of LR sample ``i`` for the sampling geometry of ``degradation``."""
    if degradation == KSPACE:
        return s * np.asarray(i, dtype=np.float64)
    if degradation == BICUBIC:
        return (np.asarray(i, dtype=np.float64) + 0.5) * s - 0.5
    raise ValueError(f"unknown degradation {degradation!r} (expected kspace or bicubic)")


def hr_to_lr(degradation: str, x, s: int):
    """LR coordinate of HR position ``x`` (inverse of ``lr_to_hr``)."""
    return (np.asarray(x, dtype=np.float64) - lr_to_hr(degradation, 0.0, s)) / s


def _check(img, s: int) -> np.ndarray:
    if int(s) != s or s < 1:
        raise ValueError(f"scale must be a positive integer, got {s}")
    a = np.asarray(img)
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"expected a non-empty 2-D image, got shape {a.shape}")
    bad = int(np.count_nonzero(~np.isfinite(a)))
    if bad:
        raise ValueError(f"image has {bad} non-finite (NaN or infinite) values")
    return a.astype(np.float32, copy=False).astype(np.float64)


def crop_to_multiple(hr, s: int) -> np.ndarray:
    """Top-left ``(h // s) * s`` x ``(w // s) * s`` part of ``hr`` (numpy array or torch tensor,
    ``[..., h, w]``)."""
    a = hr if hasattr(hr, "shape") else np.asarray(hr)
    h, w = (a.shape[-2] // s) * s, (a.shape[-1] // s) * s
    if h == 0 or w == 0:
        raise ValueError(f"a {a.shape[-2]}x{a.shape[-1]} image is too small for scale {s}")
    return a[..., :h, :w]


def _freq_index(n: int, big: int) -> np.ndarray:
    """Index in a ``big``-point spectrum of each frequency of an ``n``-point spectrum."""
    return np.round(np.fft.fftfreq(n) * n).astype(np.int64) % big


def _freq(n: int) -> np.ndarray:
    return np.round(np.fft.fftfreq(n) * n)


def kspace_truncate(hr, s: int) -> np.ndarray:
    """k-space truncation by ``s`` (LR voxel i at HR voxel s*i). Returns float32."""
    a = crop_to_multiple(_check(hr, s), s)
    big_h, big_w = a.shape
    h, w = big_h // s, big_w // s
    spec = np.fft.fft2(a)
    small = spec[np.ix_(_freq_index(h, big_h), _freq_index(w, big_w))]
    out = np.fft.ifft2(small).real * (h * w) / (big_h * big_w)
    return out.astype(np.float32)


def zerofill_upsample(lr, s: int, geometry: str = KSPACE) -> np.ndarray:
    """Zero-filled k-space interpolation by ``s`` for an LR image of ``geometry``."""
    a = _check(lr, s)
    h, w = a.shape
    big_h, big_w = h * s, w * s
    o = float(lr_to_hr(geometry, 0.0, s))
    spec = np.fft.fft2(a)
    py = np.exp(-2j * np.pi * _freq(h) * o / big_h)
    px = np.exp(-2j * np.pi * _freq(w) * o / big_w)
    big = np.zeros((big_h, big_w), dtype=np.complex128)
    big[np.ix_(_freq_index(h, big_h), _freq_index(w, big_w))] = spec * py[:, None] * px[None, :]
    out = np.fft.ifft2(big).real * (big_h * big_w) / (h * w)
    return out.astype(np.float32)


def _cubic(x: np.ndarray) -> np.ndarray:
    a = np.abs(x)
    a2, a3 = a * a, a * a * a
    return np.where(
        a <= 1.0,
        1.5 * a3 - 2.5 * a2 + 1.0,
        np.where(a <= 2.0, -0.5 * a3 + 2.5 * a2 - 4.0 * a + 2.0, 0.0),
    )


def _mirror(j: np.ndarray, n: int) -> np.ndarray:
    m = np.mod(j, 2 * n)
    return np.where(m < n, m, 2 * n - 1 - m)


def resample_matrix(in_len: int, pos, widen: float) -> np.ndarray:
    """Dense ``[len(pos), in_len]`` matrix of MATLAB's cubic contributions at positions ``pos``
    (input coordinates, 0-based) with the kernel widened by ``widen``."""
    pos = np.asarray(pos, dtype=np.float64)
    width = 4.0 * widen
    taps = int(math.ceil(width)) + 2
    left = np.floor(pos - width / 2.0).astype(np.int64)
    j = left[:, None] + np.arange(taps)[None, :]
    wts = _cubic((pos[:, None] - j) / widen) / widen
    wts = wts / wts.sum(axis=1, keepdims=True)
    m = np.zeros((pos.size, in_len), dtype=np.float64)
    rows = np.repeat(np.arange(pos.size), taps)
    np.add.at(m, (rows, _mirror(j, in_len).ravel()), wts.ravel())
    return m


def bicubic_matrices_down(big_h: int, big_w: int, s: int):
    """Row and column matrices of the antialiased bicubic downsampling of a (cropped) image."""
    h, w = big_h // s, big_w // s
    my = resample_matrix(big_h, lr_to_hr(BICUBIC, np.arange(h), s), float(s))
    mx = resample_matrix(big_w, lr_to_hr(BICUBIC, np.arange(w), s), float(s))
    return my, mx


def bicubic_downsample(hr, s: int) -> np.ndarray:
    """Antialiased bicubic downsampling by ``s`` (MATLAB imresize). Returns float32."""
    a = crop_to_multiple(_check(hr, s), s)
    my, mx = bicubic_matrices_down(a.shape[0], a.shape[1], s)
    return ((my @ a) @ mx.T).astype(np.float32)


def bicubic_upsample(lr, s: int, geometry: str = KSPACE) -> np.ndarray:
    """Bicubic upsampling by ``s`` for an LR image of ``geometry``. Returns float32."""
    a = _check(lr, s)
    h, w = a.shape
    my = resample_matrix(h, hr_to_lr(geometry, np.arange(h * s), s), 1.0)
    mx = resample_matrix(w, hr_to_lr(geometry, np.arange(w * s), s), 1.0)
    return ((my @ a) @ mx.T).astype(np.float32)


def nearest_upsample(lr, s: int, geometry: str = KSPACE) -> np.ndarray:
    """Nearest-neighbour upsampling by ``s`` for an LR image of ``geometry``. Returns float32."""
    a = _check(lr, s)
    h, w = a.shape
    iy = np.clip(np.floor(hr_to_lr(geometry, np.arange(h * s), s) + 0.5), 0, h - 1).astype(int)
    ix = np.clip(np.floor(hr_to_lr(geometry, np.arange(w * s), s) + 0.5), 0, w - 1).astype(int)
    return a[np.ix_(iy, ix)].astype(np.float32)


def degrade(hr, s: int, degradation: str = KSPACE) -> np.ndarray:
    """Simulated LR image of ``hr`` by ``degradation`` (``kspace`` or ``bicubic``)."""
    if degradation == KSPACE:
        return kspace_truncate(hr, s)
    if degradation == BICUBIC:
        return bicubic_downsample(hr, s)
    raise ValueError(f"unknown degradation {degradation!r} (expected kspace or bicubic)")


def upsample(lr, s: int, method: str, geometry: str = KSPACE) -> np.ndarray:
    """Baseline upsampling (``zerofill``, ``bicubic`` or ``nearest``) honouring ``geometry``."""
    if method == "zerofill":
        return zerofill_upsample(lr, s, geometry)
    if method == "bicubic":
        return bicubic_upsample(lr, s, geometry)
    if method == "nearest":
        return nearest_upsample(lr, s, geometry)
    raise ValueError(f"unknown baseline {method!r} (expected zerofill, bicubic or nearest)")


def robust_max(volume, q: float = 99.5) -> float:
    """The ``q``-th percentile (linear interpolation, numpy's default) of the finite voxels, or
    their maximum when that is not positive: the factor ``deltawkv eval`` divides by before
    clipping to [0, 1]."""
    a = np.asarray(volume, dtype=np.float64).ravel()
    a = a[np.isfinite(a)]
    if a.size == 0:
        raise ValueError("volume has no finite voxels")
    m = float(np.percentile(a, q))
    return m if m > 0 else float(a.max())


def normalise(volume, q: float = 99.5):
    """``(clip(volume / robust_max, 0, 1) as float32, robust_max)``, non-finite voxels set to 0;
    the normalisation of ``deltawkv eval``."""
    m = robust_max(volume, q)
    if not m > 0:
        raise ValueError(f"the largest finite voxel is {m}, not positive")
    a = np.asarray(volume, dtype=np.float64)
    a = np.where(np.isfinite(a), a, 0.0)
    return np.clip(a / m, 0.0, 1.0).astype(np.float32), m


# ---------------------------------------------------------------------------------------------
# torch batch versions (for training on GPU); torch is imported lazily.


def kspace_truncate_torch(hr, s: int):
    """k-space truncation of a batch ``[..., H, W]`` (real tensor, any device), the same operation
    as ``kspace_truncate`` (crops to a multiple of ``s`` first). Computes in the input's precision
    (complex64 for float32, complex128 for float64) and returns the input dtype."""
    import torch

    if hr.shape[-1] < s or hr.shape[-2] < s:
        raise ValueError(f"a {hr.shape[-2]}x{hr.shape[-1]} image is too small for scale {s}")
    x = crop_to_multiple(hr, s)
    big_h, big_w = x.shape[-2], x.shape[-1]
    h, w = big_h // s, big_w // s
    spec = torch.fft.fft2(x)
    iy = torch.as_tensor(_freq_index(h, big_h), device=x.device)
    ix = torch.as_tensor(_freq_index(w, big_w), device=x.device)
    small = spec.index_select(-2, iy).index_select(-1, ix)
    out = torch.fft.ifft2(small).real * ((h * w) / (big_h * big_w))
    return out.to(hr.dtype)


def bicubic_downsample_torch(hr, s: int):
    """Antialiased bicubic downsampling of a batch ``[..., H, W]``, the same operation as
    ``bicubic_downsample`` (dense resampling matrices, input dtype and device)."""
    import torch

    x = crop_to_multiple(hr, s)
    my, mx = bicubic_matrices_down(x.shape[-2], x.shape[-1], s)
    my = torch.as_tensor(my, dtype=hr.dtype, device=hr.device)
    mx = torch.as_tensor(mx, dtype=hr.dtype, device=hr.device)
    return torch.matmul(torch.matmul(my, x), mx.T)


def degrade_torch(hr, s: int, degradation: str = KSPACE):
    """Batch degradation on torch tensors ``[..., H, W]``."""
    if degradation == KSPACE:
        return kspace_truncate_torch(hr, s)
    if degradation == BICUBIC:
        return bicubic_downsample_torch(hr, s)
    raise ValueError(f"unknown degradation {degradation!r} (expected kspace or bicubic)")
