"""Training-time augmentations of issue 17: realistic acquisition and domain randomisation.

All functions work on torch batches ``[B, 1, H, W]`` (any device) with per-sample parameters drawn
from a ``torch.Generator`` on the CPU (so a run is reproducible whatever the device); torch is
imported lazily, as in ``dwkv.degrade``.

Realistic acquisition (``acquire_lr``)
    The LR is the centre of the HR's k-space, as ``degrade.kspace_truncate`` defines it (same
    frequencies, same ``1 / s**2`` intensity factor), then, per sample:

    * complex Gaussian noise in k-space on the acquired samples, before the window: independent
      real and imaginary parts of standard deviation ``sigma * sqrt(h * w)`` (spectrum units), so
      that the noise of the unfiltered complex LR image has standard deviation ``sigma`` per
      channel in image units (1 = the normalised intensity range);
    * partial Fourier along one axis: the fraction ``pf`` of that axis's lines is not acquired,
      all of them the highest frequencies of one side (``pf`` = 0.25 is "6/8 partial Fourier",
      0.125 "7/8"), and reconstructed by zero filling (no homodyne), as the simplest scanners do;
    * a separable Tukey window over the acquired data, noise included (``alpha`` = the tapered
      fraction of each axis, 0: none, 1: Hann), as MR scanners apodise to reduce ringing;
    * the magnitude of the inverse DFT (Rician noise where the signal is small).

    This is the definition of ``deltawkv eval --realistic`` (``src/degrade/realistic.rs``, whose
    ``partial_fourier = p`` is ``pf = 1 - p`` here, on the rows from the negative side; here the
    axis and side are drawn, which rotations and flips of the crops make equivalent), with the
    Nyquist line symmetrised as there, so the noise-free, unfiltered, fully acquired magnitude is
    exactly ``|kspace_truncate(hr)|``. The noise streams differ (torch's generator here,
    SplitMix64 there).

Domain randomisation (``random_contrast``, ``bias_field``)
    SynthSR-style generalisation across contrasts with little data: intensity clusters of the HR
    get new random intensities through a random piecewise-linear lookup curve (``knots`` control
    points evenly spaced on [0, 1], values uniform on [0, 1] with the first at 0 so background stays
    dark, not monotone: tissue order may flip as between T1 and T2), then a smooth multiplicative
    bias field ``exp(sum of low-frequency cosines)``. The HR target and the LR both see the new
    contrast (the LR is made from it), so the network learns the mapping for every contrast.
"""

from __future__ import annotations

import math

import numpy as np

from . import degrade


def _uniform(g, n: int, lo: float, hi: float):
    import torch

    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


def tukey(n: int, alpha: float) -> np.ndarray:
    """Tukey window over the ``n`` kept frequencies in FFT order (index 0 = DC), the taper covering
    the fraction ``alpha`` of the axis (0: rectangular, 1: Hann)."""
    f = np.abs(np.fft.fftfreq(n))  # 0 .. 0.5, distance from DC in cycles per sample
    if alpha <= 0:
        return np.ones(n)
    # |f| in [0, 0.5]: flat up to (1 - alpha) / 2, then a half cosine down to 0 at |f| = 0.5
    edge = (1.0 - alpha) / 2.0
    t = np.clip((f - edge) / max(alpha / 2.0, 1e-12), 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * t))


def partial_fourier_mask(n: int, pf: float, keep_positive: bool = True) -> np.ndarray:
    """Mask over ``n`` frequencies in FFT order that acquires ``ceil((1 - pf) n)`` of them: all of
    the positive side and the lowest negative ones (``keep_positive``), or all of the negative
    side and the lowest positive ones, which is ``src/degrade/realistic.rs``'s ``ceil(p h)`` rows
    from ``-floor(h/2)`` upwards with ``p = 1 - pf``."""
    k = np.round(np.fft.fftfreq(n) * n)
    kept = min(max(math.ceil((1.0 - pf) * n - 1e-9), 1), n)
    order = np.argsort(-k if keep_positive else k, kind="stable")
    m = np.zeros(n)
    m[order[:kept]] = 1.0
    return m


def _nyquist_twin_index(n: int, big: int) -> np.ndarray:
    """``degrade._freq_index`` with the lone Nyquist frequency ``-n/2`` of an even ``n`` moved to
    ``+n/2`` (the twin averaged with it, as the standard truncation's real part does)."""
    f = np.round(np.fft.fftfreq(n) * n).astype(np.int64)
    if n % 2 == 0:
        f = np.where(f == -(n // 2), n // 2, f)
    return f % big


def acquire_lr(hr, s: int, sigma, alpha, pf, pf_axis, pf_side, g):
    """Realistic LR acquisition of a batch ``hr [B, 1, H, W]`` (float32) by scale ``s``, with
    per-sample ``sigma``, ``alpha``, ``pf`` (float tensors ``[B]``), ``pf_axis`` (0: rows, 1:
    columns) and ``pf_side`` (bool: ``keep_positive`` of ``partial_fourier_mask``) tensors,
    noise drawn from ``g``. The definition of ``deltawkv eval --realistic``
    (``src/degrade/realistic.rs``): Nyquist-symmetrised sampling, noise on the acquired samples,
    partial Fourier, Tukey window, magnitude; here the partial-Fourier axis and side are drawn
    (there: the rows, from the negative side). Returns ``[B, 1, H // s, W // s]``."""
    import torch

    x = degrade.crop_to_multiple(hr, s)
    big_h, big_w = x.shape[-2], x.shape[-1]
    h, w = big_h // s, big_w // s
    spec = torch.fft.fft2(x.to(torch.float32))
    dev = x.device
    iy = torch.as_tensor(degrade._freq_index(h, big_h), device=dev)
    ix = torch.as_tensor(degrade._freq_index(w, big_w), device=dev)
    ty = torch.as_tensor(_nyquist_twin_index(h, big_h), device=dev)
    tx = torch.as_tensor(_nyquist_twin_index(w, big_w), device=dev)
    small = 0.5 * (spec.index_select(-2, iy).index_select(-1, ix)
                   + spec.index_select(-2, ty).index_select(-1, tx)) * (1.0 / (s * s))
    B = x.shape[0]
    acquired = np.ones((B, 1, h, w), dtype=np.float32)
    win = np.ones((B, 1, h, w), dtype=np.float32)
    for b in range(B):
        a = float(alpha[b])
        win[b, 0] = np.outer(tukey(h, a), tukey(w, a))
        p = float(pf[b])
        if p > 0:
            if int(pf_axis[b]) == 0:
                acquired[b, 0] *= partial_fourier_mask(h, p, bool(pf_side[b]))[:, None]
            else:
                acquired[b, 0] *= partial_fourier_mask(w, p, bool(pf_side[b]))[None, :]
    noise = torch.randn((B, 1, h, w, 2), generator=g, dtype=torch.float32).to(dev)
    amp = (sigma.to(torch.float32) * math.sqrt(h * w)).view(B, 1, 1, 1).to(dev)
    small = small + torch.complex(noise[..., 0], noise[..., 1]) * amp
    small = small * torch.from_numpy(acquired * win).to(dev)
    return torch.fft.ifft2(small).abs().to(hr.dtype)


def draw_acquisition(B: int, g, sigma_max: float, p_window: float, p_pf: float):
    """Per-sample acquisition parameters: ``sigma`` log-uniform on [sigma_max / 50, sigma_max]
    (every realistic sample is noisy), Tukey ``alpha`` uniform on [0.2, 1] with probability
    ``p_window`` (else 0), partial Fourier ``pf`` uniform on [0.125, 0.25] (between 7/8 and 6/8
    partial Fourier) with probability ``p_pf`` (else 0), on a random axis and side."""
    import torch

    lo = math.log(max(sigma_max, 1e-9) / 50.0)
    sigma = torch.exp(_uniform(g, B, lo, math.log(max(sigma_max, 1e-9))))
    alpha = torch.where(torch.rand(B, generator=g, dtype=torch.float64) < p_window,
                        _uniform(g, B, 0.2, 1.0), torch.zeros(B, dtype=torch.float64))
    pf = torch.where(torch.rand(B, generator=g, dtype=torch.float64) < p_pf,
                     _uniform(g, B, 0.125, 0.25), torch.zeros(B, dtype=torch.float64))
    pf_axis = torch.randint(0, 2, (B,), generator=g)
    pf_side = torch.randint(0, 2, (B,), generator=g).bool()
    return sigma, alpha, pf, pf_axis, pf_side


def random_contrast(hr, g, knots: int = 6):
    """Random per-sample lookup curve (see the module doc) applied to ``hr [B, 1, H, W]`` in
    [0, 1]; the result is rescaled so its largest value is uniform on [0.7, 1]."""
    import torch

    B = hr.shape[0]
    vals = torch.rand((B, knots), generator=g, dtype=torch.float32)
    vals[:, 0] = 0.0
    vals = vals.to(hr.device)
    t = hr.clamp(0.0, 1.0) * (knots - 1)
    i0 = t.floor().clamp(max=knots - 2).long()
    frac = t - i0.to(t.dtype)
    # the two knots around each pixel's intensity, gathered along the knot axis
    idx = i0.view(B, 1, -1)
    vv = vals.view(B, 1, knots)
    lo = torch.gather(vv, 2, idx).view_as(hr)
    hi = torch.gather(vv, 2, idx + 1).view_as(hr)
    out = lo + (hi - lo) * frac
    peak = out.flatten(1).amax(1).clamp_min(1e-6).view(B, 1, 1, 1)
    target = _uniform(g, B, 0.7, 1.0).to(torch.float32).to(hr.device).view(B, 1, 1, 1)
    return out * (target / peak)


def bias_field(shape, g, strength: float, device, order: int = 3):
    """Smooth multiplicative fields ``[B, 1, H, W]``: ``exp(sum_{p,q <= order} c_pq cos(pi p y)
    cos(pi q x))`` over [0, 1]^2, the coefficients uniform on [-1, 1] scaled so the log-field's
    largest absolute value is ``strength`` per sample (0.3: about -26 % to +35 %)."""
    import torch

    B, _, H, W = shape
    c = 2.0 * torch.rand((B, order + 1, order + 1), generator=g, dtype=torch.float32) - 1.0
    c[:, 0, 0] = 0.0
    y = torch.linspace(0.0, 1.0, H)
    x = torch.linspace(0.0, 1.0, W)
    p = torch.arange(order + 1, dtype=torch.float32)
    cy = torch.cos(math.pi * p[:, None] * y[None, :])  # [P, H]
    cx = torch.cos(math.pi * p[:, None] * x[None, :])  # [Q, W]
    logf = torch.einsum("bpq,ph,qw->bhw", c, cy, cx)
    m = logf.flatten(1).abs().amax(1).clamp_min(1e-6).view(B, 1, 1)
    logf = logf / m * strength
    return torch.exp(logf).unsqueeze(1).to(device)
