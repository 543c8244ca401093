"""Tests of dwkv.acquire (issue 17's realistic acquisition and domain randomisation) and of the
trainer with them switched on."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dwkv import acquire, degrade  # noqa: E402


def smooth_image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((h, w))
    for ax in (0, 1):
        for _ in range(3):
            x = (x + np.roll(x, 1, ax) + np.roll(x, -1, ax)) / 3
    return (0.1 + 0.8 * (x - x.min()) / (x.max() - x.min())).astype(np.float32)


def params(B, sigma=0.0, alpha=0.0, pf=0.0, axis=0, side=True):
    f = lambda v: torch.full((B,), float(v), dtype=torch.float64)  # noqa: E731
    return (f(sigma), f(alpha), f(pf), torch.full((B,), axis), torch.full((B,), side))


def test_noise_free_unwindowed_acquisition_is_kspace_truncation():
    img = smooth_image(48, 40)
    hr = torch.from_numpy(img)[None, None]
    got = acquire.acquire_lr(hr, 2, *params(1), torch.Generator().manual_seed(0))[0, 0].numpy()
    want = degrade.kspace_truncate(img, 2)
    assert got.shape == want.shape == (24, 20)
    # with the Nyquist line symmetrised, exactly the magnitude of the standard truncation
    assert np.max(np.abs(got - np.abs(want))) < 2e-6


def test_noise_level_is_sigma_per_channel_in_image_units():
    B, sigma = 4, 0.02
    hr = torch.full((B, 1, 128, 128), 0.6)
    lr = acquire.acquire_lr(hr, 2, *params(B, sigma=sigma), torch.Generator().manual_seed(1))
    # at a high signal the magnitude noise is nearly Gaussian with the real channel's deviation
    assert float((lr - 0.6).std()) == pytest.approx(sigma, rel=0.03)
    # on an empty image the magnitude is Rayleigh: mean sigma * sqrt(pi / 2)
    lr0 = acquire.acquire_lr(torch.zeros(B, 1, 128, 128), 2, *params(B, sigma=sigma),
                             torch.Generator().manual_seed(2))
    assert float(lr0.mean()) == pytest.approx(sigma * math.sqrt(math.pi / 2), rel=0.03)


def test_acquisition_is_reproducible_with_the_generator():
    hr = torch.from_numpy(smooth_image(32, 32))[None, None].repeat(2, 1, 1, 1)
    p = params(2, sigma=0.01, alpha=0.5, pf=0.2)
    a = acquire.acquire_lr(hr, 2, *p, torch.Generator().manual_seed(7))
    b = acquire.acquire_lr(hr, 2, *p, torch.Generator().manual_seed(7))
    c = acquire.acquire_lr(hr, 2, *p, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_tukey_window():
    assert np.array_equal(acquire.tukey(16, 0.0), np.ones(16))
    hann = acquire.tukey(16, 1.0)
    f = np.fft.fftfreq(16)
    assert hann[0] == 1.0
    np.testing.assert_allclose(hann, 0.5 * (1 + np.cos(2 * np.pi * f)), atol=1e-12)
    half = acquire.tukey(16, 0.5)
    assert np.all(half[np.abs(f) <= 0.25] == 1.0) and half[8] == pytest.approx(0.0)


def test_partial_fourier_keeps_the_fraction_of_lines_from_one_side():
    n = 64
    k = np.round(np.fft.fftfreq(n) * n)
    for pf in (0.125, 0.25):
        kept = math.ceil((1 - pf) * n)
        m = acquire.partial_fourier_mask(n, pf, keep_positive=True)
        assert int(m.sum()) == kept and np.all(k[m == 0] < 0) and m[0] == 1.0
        m = acquire.partial_fourier_mask(n, pf, keep_positive=False)
        # realistic.rs: the ceil(p n) lowest frequencies from -n/2 upwards, p = 1 - pf
        assert np.array_equal(np.sort(k[m == 1]), np.arange(-n // 2, -n // 2 + kept))
    odd = acquire.partial_fourier_mask(15, 0.25, keep_positive=False)
    assert int(odd.sum()) == math.ceil(0.75 * 15)


def test_partial_fourier_acts_along_its_axis_only():
    # an image that varies along the columns only has no row frequencies but DC: dropping high
    # row frequencies (axis 0) changes nothing, dropping column frequencies (axis 1) does
    row = smooth_image(1, 64)[0]
    img = np.tile(row, (64, 1))
    hr = torch.from_numpy(img)[None, None]
    g = torch.Generator().manual_seed(0)
    plain = acquire.acquire_lr(hr, 2, *params(1), g)
    along0 = acquire.acquire_lr(hr, 2, *params(1, pf=0.25, axis=0), g)
    along1 = acquire.acquire_lr(hr, 2, *params(1, pf=0.25, axis=1), g)
    assert float((along0 - plain).abs().max()) < 1e-6
    assert float((along1 - plain).abs().max()) > 1e-3


def test_random_contrast_is_a_lookup_curve_that_keeps_background_dark():
    g = torch.Generator().manual_seed(3)
    hr = torch.from_numpy(smooth_image(40, 40))[None, None].repeat(3, 1, 1, 1)
    hr[:, :, :4] = 0.0
    out = acquire.random_contrast(hr, g)
    assert out.shape == hr.shape
    assert float(out[:, :, :4].abs().max()) == 0.0
    peaks = out.flatten(1).amax(1)
    assert bool(((peaks >= 0.7 - 1e-6) & (peaks <= 1.0 + 1e-6)).all())
    # a function of intensity: equal inputs give equal outputs; the samples differ
    flat_in, flat_out = hr[0].flatten(), out[0].flatten()
    order = torch.argsort(flat_in)
    same = flat_in[order][1:] == flat_in[order][:-1]
    assert torch.equal(flat_out[order][1:][same], flat_out[order][:-1][same])
    assert not torch.allclose(out[0], out[1])


def test_bias_field_is_smooth_and_bounded():
    g = torch.Generator().manual_seed(4)
    f = acquire.bias_field((2, 1, 64, 48), g, 0.3, "cpu")
    logf = f.log()
    assert logf.flatten(1).abs().amax(1).tolist() == pytest.approx([0.3, 0.3], rel=1e-5)
    # smooth: neighbouring pixels differ by a small fraction of the range
    assert float((logf[..., 1:, :] - logf[..., :-1, :]).abs().max()) < 0.1


def test_draw_acquisition_ranges():
    g = torch.Generator().manual_seed(5)
    sigma, alpha, pf, axis, side = acquire.draw_acquisition(2000, g, 0.03, 0.5, 0.3)
    assert float(sigma.min()) >= 0.03 / 50 - 1e-12 and float(sigma.max()) <= 0.03 + 1e-12
    assert 0.4 < float((alpha > 0).double().mean()) < 0.6
    assert float(alpha[alpha > 0].min()) >= 0.2
    assert 0.25 < float((pf > 0).double().mean()) < 0.35
    assert float(pf.max()) <= 0.25 and set(axis.tolist()) == {0, 1}


def test_trainer_runs_and_resumes_with_every_augmentation_on(tmp_path):
    from test_train import run, tiny_args, write_random_data

    write_random_data(tmp_path)
    on = dict(p_contrast=1.0, p_bias=1.0, p_realistic=1.0, p_window=1.0, p_partial_fourier=1.0)
    straight = run(tiny_args(tmp_path, "straight", max_steps=3, **on))
    assert all(math.isfinite(l) for _, l in straight.history)
    run(tiny_args(tmp_path, "first", max_steps=2, **on))
    resumed = run(tiny_args(tmp_path, "second", max_steps=1, resume=tmp_path / "first", **on))
    assert resumed.history[-1] == straight.history[-1]
    # the augmentations change what is trained on
    plain = run(tiny_args(tmp_path, "plain", max_steps=1))
    assert plain.history[0] != straight.history[0]
