"""Checkpoint export/import: exact round trip, spec metadata, rejection of bad files."""

import sys
from pathlib import Path

import pytest

try:  # skip (not fail) where torch is absent or cannot load (e.g. missing CUDA libraries)
    import torch
except ImportError as e:
    pytest.skip(f"torch not importable: {e}", allow_module_level=True)
try:
    import safetensors  # noqa: F401
except ImportError as e:
    pytest.skip(f"safetensors not importable: {e}", allow_module_level=True)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from dwkv.checkpoint import (  # noqa: E402
    CheckpointError,
    export_checkpoint,
    load_checkpoint,
    make_metadata,
    read_checkpoint,
)
from dwkv.model import DeltaWKV, ModelConfig  # noqa: E402

SMALL = dict(dim=16, head_size=8, groups=1, blocks_per_group=2, ffn_ratio=2,
             lora_rank_w=4, lora_rank_a=5, lora_rank_v=6, lora_rank_g=7)
META_KEYS = {"format", "format_version", "scale", "dim", "head_size", "groups", "blocks_per_group",
             "ffn_ratio", "lora_rank_w", "lora_rank_a", "lora_rank_v", "lora_rank_g",
             "degradation", "trained_on", "steps", "val_psnr", "val_ssim"}


def small_model(scale=2, seed=0, **kw):
    torch.manual_seed(seed)
    m = DeltaWKV(ModelConfig(scale=scale, **{**SMALL, **kw}))
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return m


@pytest.mark.parametrize("scale", [2, 4])
def test_round_trip_exact(tmp_path, scale):
    m = small_model(scale, degradation="bicubic")
    path = tmp_path / "m.safetensors"
    meta = export_checkpoint(m, path, trained_on="IXI train", steps=1234, val_psnr=31.5,
                             val_ssim=0.91)
    m2, meta2 = load_checkpoint(path, scan_impl="loop")
    assert meta2 == meta
    assert m2.cfg == m.cfg and m2.scan_impl == "loop"
    sd, sd2 = m.state_dict(), m2.state_dict()
    assert list(sd) == list(sd2)
    for k in sd:
        assert torch.equal(sd[k], sd2[k]), k
    x = torch.rand(1, 1, 5, 4)
    m.scan_impl = "loop"
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))


def test_metadata_complete_and_strings(tmp_path):
    m = small_model(4)
    path = tmp_path / "m.safetensors"
    export_checkpoint(m, path, steps=7)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        names = set(f.keys())
        dtypes = {f.get_slice(n).get_dtype() for n in names}
    assert set(meta) == META_KEYS
    assert all(isinstance(v, str) for v in meta.values())
    assert meta["format"] == "delta-wkv" and meta["format_version"] == "1"
    assert meta["scale"] == "4" and meta["dim"] == "16" and meta["head_size"] == "8"
    assert meta["lora_rank_a"] == "5" and meta["lora_rank_g"] == "7"
    assert meta["degradation"] == "kspace" and meta["steps"] == "7"
    assert names == set(m.state_dict()) and dtypes == {"F32"}
    assert make_metadata(ModelConfig())["lora_rank_w"] == "32"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_files_are_widened(tmp_path, dtype):
    m = small_model()
    path = tmp_path / "h.safetensors"
    export_checkpoint(m, path, dtype=dtype)
    m2, _ = load_checkpoint(path)
    for k, v in m.state_dict().items():
        assert m2.state_dict()[k].dtype == torch.float32
        assert torch.equal(m2.state_dict()[k], v.to(dtype).float()), k


def _rewrite(src, dst, tensors=None, meta=None):
    t = load_file(str(src))
    with safe_open(str(src), framework="pt") as f:
        md = f.metadata()
    if tensors:
        tensors(t)
    if meta:
        meta(md)
    save_file(t, str(dst), metadata=md)


@pytest.mark.parametrize("case,match", [
    ("missing", "groups.0.blocks.1.att.v0 is missing"),
    ("extra", "unexpected tensor groups.0.blocks.0.att.v0"),
    ("shape", r"groups.0.blocks.1.att.r_k has shape \[16\], expected \[2, 8\]"),
    ("dtype", "conv_last.weight has dtype F64"),
    ("nan", "norm.bias contains NaN or Inf"),
    ("inf", "conv_first.weight contains NaN or Inf"),
    ("version", "unsupported format_version '2'"),
    ("format", "metadata format is 'other'"),
    ("nokey", "metadata key 'lora_rank_v' is missing"),
    ("badint", "metadata dim='sixteen' is not an integer"),
    ("badcfg", "invalid configuration"),
])
def test_rejects_bad_files(tmp_path, case, match):
    good = tmp_path / "good.safetensors"
    export_checkpoint(small_model(), good)
    bad = tmp_path / f"{case}.safetensors"
    edits = {
        "missing": dict(tensors=lambda t: t.pop("groups.0.blocks.1.att.v0")),
        "extra": dict(tensors=lambda t: t.__setitem__("groups.0.blocks.0.att.v0", torch.ones(16))),
        "shape": dict(tensors=lambda t: t.__setitem__("groups.0.blocks.1.att.r_k", torch.ones(16))),
        "dtype": dict(tensors=lambda t: t.__setitem__("conv_last.weight",
                                                       t["conv_last.weight"].double())),
        "nan": dict(tensors=lambda t: t["norm.bias"].__setitem__(3, float("nan"))),
        "inf": dict(tensors=lambda t: t["conv_first.weight"].view(-1).__setitem__(0, float("inf"))),
        "version": dict(meta=lambda m: m.__setitem__("format_version", "2")),
        "format": dict(meta=lambda m: m.__setitem__("format", "other")),
        "nokey": dict(meta=lambda m: m.pop("lora_rank_v")),
        "badint": dict(meta=lambda m: m.__setitem__("dim", "sixteen")),
        "badcfg": dict(meta=lambda m: m.__setitem__("head_size", "5")),
    }[case]
    _rewrite(good, bad, **edits)
    with pytest.raises(CheckpointError, match=match):
        read_checkpoint(bad)


def test_rejects_non_safetensors(tmp_path):
    p = tmp_path / "junk.safetensors"
    p.write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        load_checkpoint(p)
    q = tmp_path / "nometa.safetensors"
    save_file({"x": torch.ones(2)}, str(q))
    with pytest.raises(CheckpointError, match="no __metadata__"):
        load_checkpoint(q)


def test_default_config_round_trip(tmp_path):
    m = DeltaWKV(ModelConfig(scale=2))
    path = tmp_path / "dwkv3m.safetensors"
    export_checkpoint(m, path)
    cfg, sd, meta = read_checkpoint(path)
    assert cfg == ModelConfig(scale=2)
    assert sum(t.numel() for t in sd.values()) == 3_017_025
    assert path.stat().st_size < 3_017_025 * 4 + 256 * 1024
