"""Delta-WKV checkpoints: safetensors with the spec's tensor names and ``__metadata__``.

Export writes every parameter under its ``state_dict`` name (float32 by default) and the metadata
of docs/model-spec.md (all values strings). Import reads the configuration from the metadata and
rejects a file whose format/version is unknown, or whose tensors are missing, extra, misshapen, of
an unsupported dtype or not finite, naming the tensor.
"""

from __future__ import annotations

import os
from typing import Dict, Mapping, Optional, Tuple, Union

import torch

from .model import DeltaWKV, ModelConfig

FORMAT = "delta-wkv"
FORMAT_VERSION = "1"

#: Integer configuration keys stored in the metadata, in ``ModelConfig`` field order.
INT_KEYS = (
    "scale", "dim", "head_size", "groups", "blocks_per_group", "ffn_ratio",
    "lora_rank_w", "lora_rank_a", "lora_rank_v", "lora_rank_g",
)
#: Free-form metadata keys (strings, written by export with the defaults below if not given).
FREE_KEYS = ("trained_on", "steps", "val_psnr", "val_ssim")

_ACCEPTED_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
_EXPORT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

PathLike = Union[str, "os.PathLike[str]"]


class CheckpointError(ValueError):
    """A checkpoint file that does not follow the spec (the message names the problem)."""


def _safetensors():
    try:
        import safetensors
        import safetensors.torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("dwkv.checkpoint needs the 'safetensors' package") from e
    return safetensors


def make_metadata(
    cfg: ModelConfig,
    *,
    trained_on: str = "untrained",
    steps: Union[int, str] = 0,
    val_psnr: Union[float, str, None] = None,
    val_ssim: Union[float, str, None] = None,
) -> Dict[str, str]:
    """The full ``__metadata__`` for ``cfg`` (every value a string)."""
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION}
    for k in INT_KEYS:
        meta[k] = str(int(getattr(cfg, k)))
    meta["degradation"] = cfg.degradation
    meta["trained_on"] = str(trained_on)
    meta["steps"] = str(steps)
    meta["val_psnr"] = "n/a" if val_psnr is None else (
        f"{val_psnr:.4f}" if isinstance(val_psnr, float) else str(val_psnr))
    meta["val_ssim"] = "n/a" if val_ssim is None else (
        f"{val_ssim:.6f}" if isinstance(val_ssim, float) else str(val_ssim))
    return meta


def config_from_metadata(meta: Optional[Mapping[str, str]], source: str = "checkpoint") -> ModelConfig:
    """Parse and validate the configuration part of a checkpoint's metadata."""
    if not meta:
        raise CheckpointError(f"{source}: no __metadata__ (not a delta-wkv checkpoint)")
    fmt = meta.get("format")
    if fmt != FORMAT:
        raise CheckpointError(f"{source}: metadata format is {fmt!r}, expected {FORMAT!r}")
    ver = meta.get("format_version")
    if ver != FORMAT_VERSION:
        raise CheckpointError(
            f"{source}: unsupported format_version {ver!r} (this reader knows {FORMAT_VERSION!r})")
    vals = {}
    for k in INT_KEYS:
        if k not in meta:
            raise CheckpointError(f"{source}: metadata key {k!r} is missing")
        try:
            vals[k] = int(meta[k])
        except ValueError:
            raise CheckpointError(f"{source}: metadata {k}={meta[k]!r} is not an integer") from None
    if "degradation" not in meta:
        raise CheckpointError(f"{source}: metadata key 'degradation' is missing")
    vals["degradation"] = meta["degradation"]
    try:
        return ModelConfig(**vals)
    except ValueError as e:
        raise CheckpointError(f"{source}: invalid configuration in metadata: {e}") from None


def expected_shapes(cfg: ModelConfig) -> Dict[str, Tuple[int, ...]]:
    """Tensor name -> shape of a checkpoint for ``cfg`` (the model's ``state_dict``)."""
    meta = torch.device("meta")
    if hasattr(meta, "__enter__"):
        with meta:
            model = DeltaWKV(cfg)
    else:  # torch < 2.0 (Debian 12's CPU build, used by CI's tests): built on the CPU instead
        model = DeltaWKV(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def export_checkpoint(
    model: DeltaWKV,
    path: PathLike,
    *,
    dtype: torch.dtype = torch.float32,
    trained_on: str = "untrained",
    steps: Union[int, str] = 0,
    val_psnr: Union[float, str, None] = None,
    val_ssim: Union[float, str, None] = None,
) -> Dict[str, str]:
    """Write ``model`` to ``path`` (safetensors). Returns the metadata written."""
    if dtype not in _EXPORT_DTYPES:
        raise ValueError(f"export dtype must be float32, float16 or bfloat16, got {dtype}")
    st = _safetensors()
    tensors = {}
    for name, t in model.state_dict().items():
        t = t.detach().to("cpu", dtype).contiguous()
        if not torch.isfinite(t).all():
            raise CheckpointError(f"tensor {name} is not finite after conversion to {dtype}")
        tensors[name] = t
    meta = make_metadata(model.cfg, trained_on=trained_on, steps=steps,
                         val_psnr=val_psnr, val_ssim=val_ssim)
    st.torch.save_file(tensors, os.fspath(path), metadata=meta)
    return meta


def read_checkpoint(
    path: PathLike, dtype: torch.dtype = torch.float32
) -> Tuple[ModelConfig, Dict[str, torch.Tensor], Dict[str, str]]:
    """Read and validate ``path``: returns ``(config, state_dict in dtype, metadata)``."""
    st = _safetensors()
    src = os.fspath(path)
    try:
        f = st.safe_open(src, framework="pt", device="cpu")
    except Exception as e:  # safetensors raises its own error types for malformed files
        raise CheckpointError(f"{src}: not a readable safetensors file: {e}") from None
    with f:
        meta = dict(f.metadata() or {})
        cfg = config_from_metadata(meta, src)
        shapes = expected_shapes(cfg)
        names = set(f.keys())
        missing = sorted(set(shapes) - names)
        extra = sorted(names - set(shapes))
        if missing:
            raise CheckpointError(f"{src}: tensor {missing[0]} is missing"
                                  + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        if extra:
            raise CheckpointError(f"{src}: unexpected tensor {extra[0]}"
                                  + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))
        state = {}
        for name, shape in shapes.items():
            sl = f.get_slice(name)
            dt = sl.get_dtype()
            if dt not in _ACCEPTED_DTYPES:
                raise CheckpointError(f"{src}: tensor {name} has dtype {dt}, expected F32, F16 or BF16")
            got = tuple(sl.get_shape())
            if got != shape:
                raise CheckpointError(f"{src}: tensor {name} has shape {list(got)}, expected {list(shape)}")
            t = f.get_tensor(name)
            if not torch.isfinite(t).all():
                raise CheckpointError(f"{src}: tensor {name} contains NaN or Inf")
            state[name] = t.to(dtype)
    return cfg, state, meta


def load_checkpoint(
    path: PathLike,
    *,
    dtype: torch.dtype = torch.float32,
    device: Union[str, torch.device] = "cpu",
    scan_impl="chunked",
) -> Tuple[DeltaWKV, Dict[str, str]]:
    """Build a :class:`DeltaWKV` from a checkpoint (strict names and shapes).

    Returns ``(model, metadata)``; the model is in eval mode, in ``dtype`` on ``device``.
    """
    cfg, state, meta = read_checkpoint(path, dtype)
    model = DeltaWKV(cfg, scan_impl=scan_impl).to(dtype)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), meta

