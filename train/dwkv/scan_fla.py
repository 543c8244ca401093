"""The Delta-WKV recurrence on flash-linear-attention's chunked RWKV-7 kernel (GPU, training).

``fla.ops.rwkv7.chunk_rwkv7`` runs the generalised delta rule with a ``[K, V]`` state ``h``::

    h_t = diag(exp(w_t)) h_{t-1} + b_t (a_t^T h_{t-1}) + k_t v_t^T,    o_t = scale * h_t^T q_t

With ``S = h^T`` (the spec's ``[value, key]`` state) that is the spec's recurrence for
``q = r``, ``w = log(decay)``, ``k = kt``, ``a = -kk``, ``b = kk * a`` and ``scale = 1``.
The decay is ``exp(-exp(-0.5) * sigmoid(dd))``, so ``log(decay) >= -exp(-0.5)``; passing that
bound (``lower_bound``) lets fla use its 64-token chunk path.

fla's float32 path uses TF32 dot products (relative error about 1e-3 against a float64 loop):
fine for training, never for reference vectors. Inputs are cast to float32 here, so the
recurrence runs in float32 also under bf16 autocast.

Import this module (``import dwkv.scan_fla``) to register the implementation as ``"fla"``. The
import limits every Triton autotuner that fla defines to a single configuration (4 warps, fewest
stages): on a fresh machine fla's full autotuning took minutes before its first step, and with one
configuration import plus the first forward and backward take seconds (see
``shared/notes/training.md``). Set ``DWKV_FLA_AUTOTUNE=1`` to keep fla's own autotuning.
"""

from __future__ import annotations

import math
import os
from typing import Optional

import torch

from .scan import register_scan

#: Lower bound of ``log(decay)`` in the model (``-exp(-0.5)``), slightly widened for rounding.
LOG_DECAY_LOWER_BOUND = -math.exp(-0.5) * (1.0 + 1e-6)

_chunk_rwkv7 = None


def _restrict_autotune() -> None:
    """Make ``triton.autotune`` keep one configuration (prefer 4 warps, then fewest stages)."""
    import triton

    if getattr(triton.autotune, "_dwkv_single", False):
        return
    original = triton.autotune

    def single_config_autotune(configs, key, *args, **kwargs):
        configs = list(configs)
        if len(configs) > 1:
            ranked = sorted(
                range(len(configs)),
                key=lambda i: (
                    configs[i].num_warps != 4,
                    configs[i].num_stages if configs[i].num_stages is not None else 0,
                    i,
                ),
            )
            configs = [configs[ranked[0]]]
        return original(configs, key, *args, **kwargs)

    single_config_autotune._dwkv_single = True  # type: ignore[attr-defined]
    triton.autotune = single_config_autotune


def _load():
    global _chunk_rwkv7
    if _chunk_rwkv7 is None:
        if os.environ.get("DWKV_FLA_AUTOTUNE", "0") != "1":
            _restrict_autotune()
        from fla.ops.rwkv7 import chunk_rwkv7

        _chunk_rwkv7 = chunk_rwkv7
    return _chunk_rwkv7


def available() -> bool:
    """Whether fla can be imported and a CUDA device is present."""
    if not torch.cuda.is_available():
        return False
    try:
        _load()
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return False
    return True


@torch.compiler.disable
def scan_fla(
    r: torch.Tensor,
    decay: torch.Tensor,
    kk: torch.Tensor,
    a: torch.Tensor,
    kt: torch.Tensor,
    v: torch.Tensor,
    *,
    log_decay: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Registry signature (inputs ``[B, H, L, N]`` in scan order); returns ``y`` ``[B, H, L, N]``
    in the dtype of ``r``. Runs outside ``torch.compile`` graphs (a graph break)."""
    chunk_rwkv7 = _load()
    if log_decay is None:
        log_decay = torch.log(decay)
    out_dtype = r.dtype

    def bthk(t):  # [B, H, L, N] -> [B, L, H, N] float32, contiguous
        return t.float().transpose(1, 2).contiguous()

    kk32 = kk.float()
    with torch.autocast(device_type="cuda", enabled=False):
        o, _ = chunk_rwkv7(
            r=bthk(r),
            w=bthk(log_decay),
            k=bthk(kt),
            v=bthk(v),
            a=bthk(-kk32),
            b=bthk(kk32 * a.float()),
            scale=1.0,
            lower_bound=LOG_DECAY_LOWER_BOUND,
        )
    return o.transpose(1, 2).to(out_dtype)


register_scan("fla", scan_fla, overwrite=True)
