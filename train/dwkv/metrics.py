"""PSNR and SSIM: the Python twin of the Rust module `src/metrics.rs`.

- ``psnr(ref, test, data_range)`` = ``10 log10(R^2 / MSE)`` (``inf`` for identical images), as
  ``skimage.metrics.peak_signal_noise_ratio``.
- ``ssim(ref, test, data_range)`` equals ``skimage.metrics.structural_similarity(ref, test,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=R)`` on float64 input:
  Gaussian sigma 1.5 truncated at 3.5 sigma (11 taps, ``scipy.ndimage.gaussian_filter`` mode
  ``reflect``), K1 = 0.01, K2 = 0.03, mean over the map with a 5-voxel border cropped. Images must be
  at least 11 x 11. ``ssim_map`` also returns the full map.
- Volumes: PSNR from the MSE over all voxels, SSIM the mean of the slices' SSIMs (``volume_metrics``).
- NaN/inf in either image and a data range that is not finite and positive raise ``ValueError``.

Inputs are converted to float32 (the precision of the Rust planes), then computed in float64.
Only numpy and scipy are needed; scikit-image is used by ``train/tools/gen_vectors.py`` to check.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

SIGMA = 1.5
TRUNCATE = 3.5
RADIUS = int(TRUNCATE * SIGMA + 0.5)  # 5
WIN = 2 * RADIUS + 1  # 11
K1 = 0.01
K2 = 0.03


def _pair(ref, test):
    a = np.asarray(ref)
    b = np.asarray(test)
    if a.shape != b.shape:
        raise ValueError(f"size mismatch: reference {a.shape}, test {b.shape}")
    if a.size == 0:
        raise ValueError("empty image")
    for name, x in (("reference", a), ("test", b)):
        bad = int(np.count_nonzero(~np.isfinite(x)))
        if bad:
            raise ValueError(f"{name} has {bad} non-finite (NaN or infinite) values")
    return (
        a.astype(np.float32, copy=False).astype(np.float64),
        b.astype(np.float32, copy=False).astype(np.float64),
    )


def _range(data_range) -> float:
    r = float(data_range)
    if not (np.isfinite(r) and r > 0):
        raise ValueError(f"data range must be finite and positive, got {r}")
    return r


def mse(ref, test) -> float:
    a, b = _pair(ref, test)
    return float(np.mean((a - b) ** 2, dtype=np.float64))


def psnr_from_mse(m: float, data_range: float) -> float:
    with np.errstate(divide="ignore"):
        return float(10.0 * np.log10(data_range * data_range / np.float64(m)))


def psnr(ref, test, data_range) -> float:
    """PSNR in dB with an explicit data range."""
    r = _range(data_range)
    return psnr_from_mse(mse(ref, test), r)


def ssim_map(ref, test, data_range):
    """``(mean SSIM, full SSIM map)`` of two 2-D images."""
    r = _range(data_range)
    x, y = _pair(ref, test)
    if x.ndim != 2:
        raise ValueError(f"expected 2-D images, got shape {x.shape}")
    if min(x.shape) < WIN:
        raise ValueError(f"SSIM needs images of at least {WIN}x{WIN}, got {x.shape}")

    def filt(a):
        return gaussian_filter(a, sigma=SIGMA, truncate=TRUNCATE, mode="reflect")

    ux, uy = filt(x), filt(y)
    vx = filt(x * x) - ux * ux
    vy = filt(y * y) - uy * uy
    vxy = filt(x * y) - ux * uy
    c1, c2 = (K1 * r) ** 2, (K2 * r) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    p = RADIUS
    return float(s[p:-p, p:-p].mean(dtype=np.float64)), s


def ssim(ref, test, data_range) -> float:
    """Mean SSIM of two 2-D images."""
    return ssim_map(ref, test, data_range)[0]


def volume_metrics(ref_slices, test_slices, data_range):
    """``dict(psnr, ssim, mse, slices, per_slice=[(psnr, ssim, mse), ...])`` over a stack of 2-D
    slices (an iterable or an array ``[n, h, w]``)."""
    r = _range(data_range)
    ref_slices = list(ref_slices)
    test_slices = list(test_slices)
    if len(ref_slices) != len(test_slices):
        raise ValueError(f"slice count mismatch: {len(ref_slices)} vs {len(test_slices)}")
    if not ref_slices:
        raise ValueError("no slices")
    sse, n, per = 0.0, 0, []
    for a, b in zip(ref_slices, test_slices):
        m = mse(a, b)
        s = ssim(a, b, r)
        per.append((psnr_from_mse(m, r), s, m))
        sse += m * np.asarray(a).size
        n += np.asarray(a).size
    m = sse / n
    return {
        "psnr": psnr_from_mse(m, r),
        "ssim": float(np.mean([p[1] for p in per])),
        "mse": m,
        "slices": len(per),
        "per_slice": per,
    }
