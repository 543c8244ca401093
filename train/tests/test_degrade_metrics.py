"""Tests of the Python twins dwkv.degrade and dwkv.metrics (numpy + scipy; torch parts skip
without torch). The committed vectors (tests/data/vectors/, from train/tools/gen_vectors.py) hold
scikit-image's PSNR/SSIM and this module's degradations; the Rust tests read the same files."""

import importlib.util
import json
import struct
from pathlib import Path

import numpy as np
import pytest

TRAIN = Path(__file__).resolve().parents[1]


def _load(name):
    """Loads train/dwkv/<name>.py on its own: the package's __init__ imports torch, and these
    twins must work (and be tested, as in CI) without it."""
    spec = importlib.util.spec_from_file_location(f"dwkv_{name}", TRAIN / "dwkv" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


D = _load("degrade")
M = _load("metrics")

VECTORS = TRAIN.parent / "tests/data/vectors"
DTYPES = {"F32": np.float32, "F64": np.float64}


def read_safetensors(path):
    """Minimal safetensors reader (no dependency): ``(tensors, metadata)``."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        dt = np.dtype(DTYPES[info["dtype"]]).newbyteorder("<")
        out[name] = np.frombuffer(raw[base + a : base + b], dtype=dt).reshape(info["shape"])
    return out, meta


def test_metrics_match_committed_scikit_image_values():
    t, meta = read_safetensors(VECTORS / "metrics.safetensors")
    for case in json.loads(meta["cases"]):
        ref, test = t[f"{case}/ref"], t[f"{case}/test"]
        dr, want_psnr, want_ssim = t[f"{case}/scalars"]
        got = M.psnr(ref, test, dr)
        if np.isinf(want_psnr):
            assert got == want_psnr, case
        else:
            assert abs(got - want_psnr) < 1e-9, case
        s, smap = M.ssim_map(ref, test, dr)
        assert abs(s - want_ssim) < 1e-9, case
        assert np.max(np.abs(smap - t[f"{case}/ssim_map"])) < 1e-9, case


def test_degradations_reproduce_committed_vectors():
    t, meta = read_safetensors(VECTORS / "degrade.safetensors")
    scales = json.loads(meta["scales"])
    for case in json.loads(meta["cases"]):
        hr = t[f"{case}/hr"]
        for s in scales[case]:
            for geom in D.DEGRADATIONS:
                lr = D.degrade(hr, s, geom)
                np.testing.assert_allclose(lr, t[f"{case}/x{s}/lr_{geom}"], atol=1e-6, rtol=0)
                for method in D.BASELINES:
                    up = D.upsample(t[f"{case}/x{s}/lr_{geom}"], s, method, geom)
                    np.testing.assert_allclose(up, t[f"{case}/x{s}/up_{method}_{geom}"], atol=1e-6, rtol=0)


def band_limited(h, w, s):
    """Real image with frequencies strictly below the LR Nyquist limit."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    kx, ky = (w // s - 1) // 2, (h // s - 1) // 2
    tau = 2 * np.pi
    return (
        0.5
        + 0.2 * np.cos(tau * kx * x / w + 0.3)
        + 0.1 * np.sin(tau * x / w + tau * ky * y / h)
        + 0.15 * np.cos(tau * 2 * y / h - 1.1)
    ).astype(np.float32)


@pytest.mark.parametrize("h,w,s", [(24, 32, 2), (40, 48, 4), (18, 30, 3), (26, 22, 2)])
def test_zerofill_inverts_kspace_truncation(h, w, s):
    hr = band_limited(h, w, s)
    lr = D.kspace_truncate(hr, s)
    # Origin-aligned: LR voxel i is HR voxel s*i.
    np.testing.assert_allclose(lr, hr[::s, ::s], atol=1e-5)
    np.testing.assert_allclose(D.zerofill_upsample(lr, s, "kspace"), hr, atol=2e-6)


def test_bicubic_geometry_is_centre_aligned():
    s = 4
    y, x = np.mgrid[0:32, 0:40].astype(np.float64)
    lr = D.bicubic_downsample(0.01 * x + 0.02 * y, s)
    c = D.lr_to_hr("bicubic", np.arange(10), s)
    r = D.lr_to_hr("bicubic", np.arange(8), s)
    want = 0.01 * c[None, :] + 0.02 * r[:, None]
    np.testing.assert_allclose(lr[2:-2, 2:-2], want[2:-2, 2:-2], atol=1e-6)


def test_sizes_and_errors():
    hr = np.random.default_rng(0).random((27, 19)).astype(np.float32)
    assert D.kspace_truncate(hr, 2).shape == (13, 9)
    assert D.bicubic_downsample(hr, 4).shape == (6, 4)
    assert D.upsample(np.zeros((5, 3), np.float32), 4, "nearest", "kspace").shape == (20, 12)
    bad = hr.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError):
        D.kspace_truncate(bad, 2)
    with pytest.raises(ValueError):
        M.psnr(hr, bad, 1.0)
    with pytest.raises(ValueError):
        M.ssim(hr, hr, 0.0)
    with pytest.raises(ValueError):
        M.ssim(hr[:10], hr[:10], 1.0)


def test_normalise():
    v = np.arange(1000, dtype=np.float64)
    v[3] = np.nan
    n, m = D.normalise(v)
    assert m == pytest.approx(np.percentile(v[np.isfinite(v)], 99.5))
    assert n.dtype == np.float32 and n.max() == 1.0 and n[3] == 0.0


def test_torch_batch_versions_equal_numpy():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    batch = rng.random((3, 1, 37, 42))
    for s in (2, 4):
        for deg in D.DEGRADATIONS:
            got = D.degrade_torch(torch.tensor(batch), s, deg).numpy()
            for i in range(3):
                want = D.degrade(batch[i, 0], s, deg)
                np.testing.assert_allclose(got[i, 0], want, atol=1e-6)
            got32 = D.degrade_torch(torch.tensor(batch, dtype=torch.float32), s, deg)
            assert got32.dtype == torch.float32
            np.testing.assert_allclose(got32.numpy(), got, atol=1e-5)
