"""The realistic acquisition of dwkv.degrade (the twin of src/degrade/realistic.rs): the same
definitions as `deltawkv eval --realistic`, drawn at random for training. numpy parts always run;
torch parts skip without torch (CI runs them on torch 1.13)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

TRAIN = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(f"dwkv_{name}_r", TRAIN / "dwkv" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


D = _load("degrade")


def phantom(h, w):
    y, x = np.mgrid[0:h, 0:w]
    x = x / w - 0.5
    y = y / h - 0.5
    v = np.where(x * x + y * y < 0.15, 0.7, 0.05) + 0.1 * np.sin(9 * x) * np.cos(5 * y)
    return v.astype(np.float32)


OFF = dict(noise=0.0, tukey=0.0, partial_fourier=1.0)


@pytest.mark.parametrize("h,w,s", [(48, 64, 2), (26, 30, 2), (36, 44, 4), (33, 27, 3)])
def test_without_noise_filter_and_partial_fourier_it_is_the_standard_lr(h, w, s):
    hr = phantom(h, w)
    got = D.realistic_lr(hr, s, **OFF, rng=np.random.default_rng(0))
    np.testing.assert_allclose(got, np.abs(D.kspace_truncate(hr, s)), atol=1e-6)


def test_noise_level_is_as_specified():
    sigma = 0.05
    for seed in range(3):
        lr = D.realistic_lr(np.zeros((128, 128), np.float32), 2, noise=sigma, tukey=0.0,
                            partial_fourier=1.0, rng=np.random.default_rng(seed))
        est = np.sqrt(np.mean(lr.astype(np.float64) ** 2) / 2)  # Rayleigh: E|c|^2 = 2 sigma^2
        assert abs(est / sigma - 1) < 0.04, est
    lr = D.realistic_lr(np.full((128, 128), 0.8, np.float32), 2, noise=sigma, tukey=0.0,
                        partial_fourier=1.0, rng=np.random.default_rng(0))
    assert abs(lr.mean() - 0.8) < 0.005
    assert abs(lr.std() / sigma - 1) < 0.05


def test_seeded_is_reproducible_and_parameters_are_checked():
    hr = phantom(64, 64)
    a = D.realistic_lr(hr, 2, rng=np.random.default_rng(5))
    b = D.realistic_lr(hr, 2, rng=np.random.default_rng(5))
    c = D.realistic_lr(hr, 2, rng=np.random.default_rng(6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    for bad in (dict(noise=-1.0), dict(tukey=1.5), dict(partial_fourier=0.4)):
        with pytest.raises(ValueError):
            D.realistic_lr(hr, 2, **bad)


def test_window_and_partial_fourier_definitions():
    # Tukey over |k| / (n/2): flat inside 1 - a, Hann at a = 1, zero at the Nyquist frequency.
    np.testing.assert_allclose(D.tukey_window(8, 0.0), np.ones(8))
    hann = D.tukey_window(8, 1.0)
    np.testing.assert_allclose(hann, 0.5 * (1 + np.cos(np.pi * np.abs(np.fft.fftfreq(8) * 8) / 4)))
    assert hann[4] == pytest.approx(0.0)
    hr = phantom(64, 64)
    full = D.realistic_lr(hr, 2, **OFF, rng=np.random.default_rng(0))
    pf = D.realistic_lr(hr, 2, noise=0.0, tukey=0.0, partial_fourier=0.625,
                        rng=np.random.default_rng(0))
    # The vertical direction loses more detail than the horizontal one: only vertical
    # frequencies are missing (the magnitude of the zero-filled reconstruction blurs both a little).
    dy = lambda a: np.abs(np.diff(a, axis=0)).sum()  # noqa: E731
    dx = lambda a: np.abs(np.diff(a, axis=1)).sum()  # noqa: E731
    assert dy(pf) / dy(full) < dx(pf) / dx(full) < 1.0


def test_torch_equals_numpy_without_noise_and_draws_at_random():
    torch = pytest.importorskip("torch")
    hr = np.stack([phantom(48, 64), phantom(48, 64)[::-1].copy()])
    t = torch.from_numpy(hr)
    for kw in (OFF, dict(noise=0.0, tukey=0.5, partial_fourier=0.75)):
        got = D.realistic_torch(t, 2, generator=torch.Generator().manual_seed(0), **kw).numpy()
        want = np.stack([D.realistic_lr(x, 2, rng=np.random.default_rng(0), **kw) for x in hr])
        np.testing.assert_allclose(got, want, atol=2e-6)
    # Per-image parameters: image 1 gets the filter, image 0 not.
    got = D.realistic_torch(t, 2, noise=0.0, tukey=torch.tensor([0.0, 1.0]),
                            partial_fourier=1.0).numpy()
    np.testing.assert_allclose(got[0], D.realistic_lr(hr[0], 2, **OFF), atol=2e-6)
    np.testing.assert_allclose(
        got[1], D.realistic_lr(hr[1], 2, noise=0.0, tukey=1.0, partial_fourier=1.0), atol=2e-6)
    # Noise level in torch too (float64 batch, zero signal).
    z = torch.zeros(4, 128, 128, dtype=torch.float64)
    lr = D.realistic_torch(z, 2, noise=0.05, tukey=0.0, partial_fourier=1.0,
                           generator=torch.Generator().manual_seed(1))
    assert lr.dtype == torch.float64
    assert abs(float((lr ** 2).mean() / 2) ** 0.5 / 0.05 - 1) < 0.03
    # Random draws: reproducible with a seeded generator, within the ranges.
    a, pa = D.random_realistic_torch(t, 2, generator=torch.Generator().manual_seed(3))
    b, pb = D.random_realistic_torch(t, 2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and all(torch.equal(pa[k], pb[k]) for k in pa)
    assert a.shape == (2, 24, 32) and a.dtype == torch.float32
    assert bool(((pa["noise"] >= 0) & (pa["noise"] <= 0.05)).all())
    assert bool(((pa["tukey"] >= 0) & (pa["tukey"] <= 0.5)).all())
    assert bool(((pa["partial_fourier"] >= 0.5625) & (pa["partial_fourier"] <= 1.0)).all())
    with pytest.raises(ValueError):
        D.realistic_torch(t, 2, noise=0.0, tukey=0.0, partial_fourier=0.3)
