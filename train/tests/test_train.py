"""CPU smoke tests of the trainer: a tiny network trains on random volumes, and a resume from a
checkpoint continues exactly (same next-step loss as an uninterrupted run)."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("scipy")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import data  # noqa: E402
import train  # noqa: E402


def write_random_data(d: Path) -> None:
    """A prepared ``train.npz`` (format of prepare_data.py) with two random smooth volumes, one
    marked as an average, and a small ``val.npz``."""
    rng = np.random.default_rng(1)
    arrays, vols = {}, []
    for i, (shape, name) in enumerate((((48, 50, 44), "subject/a.nii.gz"),
                                        ((60, 52, 1), "templates_AVERAGES/t.nii.gz"))):
        x = rng.random(shape)
        for ax in range(3):  # cheap smoothing so crops have structure
            if shape[ax] > 2:
                x = (x + np.roll(x, 1, ax) + np.roll(x, -1, ax)) / 3
        q = np.round(255 * x / x.max()).astype(np.uint8)
        arrays[f"vol_{i}"] = q
        for ax in range(3):
            arrays[f"slices_{i}_{ax}"] = np.arange(shape[ax], dtype=np.int32)
        vols.append({"file": name, "prob": 0.5, "weight": 1.0})
    np.savez_compressed(d / "train.npz", meta=np.array(json.dumps({"volumes": vols})), **arrays)
    val = (rng.random((24, 22, 2)) * 100).astype(np.float32)
    np.savez_compressed(d / "val.npz", meta=np.array(json.dumps({"volumes": [{"file": "v"}]})),
                        vol_0=val)


def tiny_args(tmp: Path, out: str, **kw):
    argv = ["--out", str(tmp / out), "--data", str(tmp), "--tiny", "--device", "cpu",
            "--scan", "chunked", "--batch", "2", "--lr-crop", "12", "--margin", "2",
            "--val-every", "0", "--log-every", "1", "--skip-timing", "1", "--warmup", "2",
            "--total-steps", "50", "--state-precision", "full", "--no-export",
            "--time-limit", "600", "--reserve", "0", "--ckpt-every", "100000"]
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}"] + ([str(v)] if v != "" else [])
    return train.parse_args(argv)


def run(args):
    t = train.Trainer(args)
    t.run()
    return t


def test_two_steps_train_and_write_logs(tmp_path):
    write_random_data(tmp_path)
    t = run(tiny_args(tmp_path, "a", max_steps=2))
    assert t.step == 2
    losses = [l for _, l in t.history]
    assert len(losses) == 2 and all(math.isfinite(l) and l > 0 for l in losses)
    for name in ("model.pt", "ema.pt", "adam.pt", "train_log.csv"):
        assert (tmp_path / "a" / name).exists(), name
    rows = (tmp_path / "a" / "train_log.csv").read_text().strip().splitlines()
    assert rows[0].startswith("step,loss") and len(rows) == 3
    # the EMA moved away from the initial weights, towards the trained ones
    ema = dict(t.ema.named_parameters())
    moved = [n for n, p in t.model.named_parameters() if not torch.equal(p, ema[n])]
    assert moved


def test_resume_gives_identical_next_step(tmp_path):
    write_random_data(tmp_path)
    straight = run(tiny_args(tmp_path, "straight", max_steps=3))
    first = run(tiny_args(tmp_path, "first", max_steps=2))
    resumed = run(tiny_args(tmp_path, "second", max_steps=1, resume=tmp_path / "first"))
    assert resumed.step == 3
    assert first.history[:2] == straight.history[:2]
    assert resumed.history[-1] == straight.history[-1]  # bit-identical loss at step 3
    for (n, p), (_, q) in zip(straight.model.named_parameters(), resumed.model.named_parameters()):
        assert torch.equal(p, q), n
    # logs continue from the resumed run's
    rows = (tmp_path / "second" / "train_log.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]


def test_compact_state_resumes_closely(tmp_path):
    write_random_data(tmp_path)
    straight = run(tiny_args(tmp_path, "straight", max_steps=3))
    run(tiny_args(tmp_path, "first", max_steps=2, state_precision="compact"))
    resumed = run(tiny_args(tmp_path, "second", max_steps=1, resume=tmp_path / "first"))
    # bf16 Adam moments change the third update slightly, not the loss of step 3 (computed
    # with the bit-exact float32 weights of step 2)
    assert resumed.history[-1] == straight.history[-1]
    assert (tmp_path / "first" / "adam.pt").stat().st_size < 0.6 * (
        tmp_path / "straight" / "adam.pt").stat().st_size


def test_lr_schedule():
    assert train.lr_at(0, 1.0, 10, 100, 0.0) == pytest.approx(0.1)
    assert train.lr_at(9, 1.0, 10, 100, 0.0) == pytest.approx(1.0)
    assert train.lr_at(55, 1.0, 10, 100, 0.0) == pytest.approx(0.5)
    assert train.lr_at(100, 1.0, 10, 100, 0.02) == pytest.approx(0.02)
    assert train.lr_at(500, 1.0, 10, 100, 0.02) == pytest.approx(0.02)


def test_val_slices_layout_and_normalisation():
    vol = np.arange(5 * 7 * 2, dtype=np.float32).reshape(5, 7, 2)
    sl = data.val_slices(vol, 2)
    # rows run along j, columns along i; in-plane crop keeps voxels 0..floor(d/s)*s
    assert sl.shape == (2, 6, 4)
    rm = np.percentile(vol.astype(np.float64), 99.5)
    assert sl[1, 3, 2] == pytest.approx(min(vol[2, 3, 1] / rm, 1.0))
    assert sl.max() <= 1.0 and sl.min() >= 0.0


def test_sampler_crops_and_padding(tmp_path):
    write_random_data(tmp_path)
    vols = data.load_train(tmp_path / "train.npz")
    s = data.TrainSampler(vols, 56, np.random.default_rng(0))  # larger than one in-plane side
    crops, averaged = s.sample(8)
    assert crops.shape == (8, 56, 56) and crops.dtype == np.uint8
    assert averaged.dtype == bool


def test_restart_schedule_and_init_from(tmp_path):
    write_random_data(tmp_path)
    run(tiny_args(tmp_path, "first", max_steps=2))
    t = train.Trainer(tiny_args(tmp_path, "second", max_steps=1, resume=tmp_path / "first",
                                restart_schedule="", lr=1e-3, warmup=4, total_steps=10))
    assert (t.step, t.sched_step0, t.total_steps) == (2, 2, 12)
    assert t.set_lr() == pytest.approx(1e-3 / 4)  # first warm-up step of the new cycle
    # x4 from the x2 state: every tensor but the second upsampling conv is copied
    x4 = train.Trainer(tiny_args(tmp_path, "x4", scale=4, init_from=tmp_path / "first"))
    assert x4.init_note["kept_init"] == ["upsample.1.weight", "upsample.1.bias"]
    src = torch.load(tmp_path / "first" / "model.pt", weights_only=False)["model"]
    assert torch.equal(x4.model.state_dict()["conv_first.weight"], src["conv_first.weight"])


def test_realistic_validation_is_reported_and_never_selects(tmp_path):
    write_random_data(tmp_path)
    t = run(tiny_args(tmp_path, "r", max_steps=2, val_every=2, val_realistic=""))
    rows = (tmp_path / "r" / "val_log.csv").read_text().strip().splitlines()
    tags = [r.split(",")[1] for r in rows[1:]]
    assert tags == ["raw", "ema", "raw-realistic", "ema-realistic"]
    clean, real = rows[1].split(","), rows[3].split(",")
    # the realistic LRs are noisy: their zero-filled baseline is worse than the clean one's
    assert float(real[4]) < float(clean[4])
    # the same noise at every validation (fixed seed)
    first = [x.clone() for x in t.val_lr_realistic]
    t.val_lr_realistic = None
    t.realistic_val()
    assert all(torch.equal(a, b) for a, b in zip(first, t.val_lr_realistic))
    assert t.best["weights"] in ("raw", "ema")
