"""The Delta-WKV recurrence (RWKV-7 generalised delta rule) along one scan order.

Every implementation computes, independently for each batch entry ``b`` and head ``h``, with the
state ``S`` (``N x N``, row ``i`` = value channel, column ``j`` = key channel) zero at ``t = 0``::

    sa_i   = sum_j S[i,j] * kk_t[j]
    S[i,j] = S[i,j] * decay_t[j] - sa_i * (a_t[j] * kk_t[j]) + v_t[i] * kt_t[j]
    y_t[i] = sum_j S[i,j] * r_t[j]            (read after the update)

Inputs are ``[B, H, L, N]`` tensors already in scan order (the model permutes the tokens for each
of the four scan directions and un-permutes the outputs). ``decay`` is ``lambda`` in ``(0, 1)``.
Implementations may also receive ``log_decay = log(decay)`` computed directly by the caller (the
model does this, which is more precise than ``log(decay)`` when ``decay`` is close to 1).

Implementations are registered by name (see :func:`register_scan`), so that the training code can
add a fused-kernel one (e.g. ``fla``) without touching the model. Registered callables have the
signature ``fn(r, decay, kk, a, kt, v, *, log_decay=None, **kwargs) -> y``.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

import torch

ScanFn = Callable[..., torch.Tensor]

_REGISTRY: Dict[str, ScanFn] = {}

#: Chunk length used by :func:`scan_chunked` when none is given.
DEFAULT_CHUNK = 64



def _autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for ``device_type``; torch < 2.4 (Debian 12's 1.13, which CI's
    CPU tests use) has no device argument and a separate CPU query."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:
        if device_type == "cpu":
            return torch.is_autocast_cpu_enabled()
        return torch.is_autocast_enabled()

def register_scan(name: str, fn: ScanFn, *, overwrite: bool = False) -> None:
    """Register a scan implementation under ``name``.

    ``fn(r, decay, kk, a, kt, v, *, log_decay=None, **kwargs)`` must return ``y`` of the same shape
    ``[B, H, L, N]``. Registering an existing name raises unless ``overwrite`` is true.
    """
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"scan implementation {name!r} is already registered")
    _REGISTRY[name] = fn


def available_scans() -> list[str]:
    """Names of the registered scan implementations."""
    return sorted(_REGISTRY)


def get_scan(name: str) -> ScanFn:
    """The scan implementation registered under ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown scan implementation {name!r}; registered: {available_scans()}"
        ) from None


def _check(r, decay, kk, a, kt, v) -> None:
    shape = r.shape
    if r.dim() != 4:
        raise ValueError(f"scan inputs must be [B, H, L, N], got r of shape {tuple(shape)}")
    for name, t in (("decay", decay), ("kk", kk), ("a", a), ("kt", kt), ("v", v)):
        if t.shape != shape:
            raise ValueError(f"scan input {name} has shape {tuple(t.shape)}, expected {tuple(shape)}")


def scan_loop(
    r: torch.Tensor,
    decay: torch.Tensor,
    kk: torch.Tensor,
    a: torch.Tensor,
    kt: torch.Tensor,
    v: torch.Tensor,
    *,
    log_decay: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Reference implementation: a plain loop over tokens, in the inputs' dtype (use float64 for
    reference values). ``log_decay`` is accepted for interface compatibility and ignored."""
    del log_decay
    _check(r, decay, kk, a, kt, v)
    B, H, L, N = r.shape
    S = r.new_zeros(B, H, N, N)
    b = a * kk
    ys = []
    for t in range(L):
        sa = torch.einsum("bhij,bhj->bhi", S, kk[:, :, t])
        S = (
            S * decay[:, :, t, None, :]
            - sa[..., :, None] * b[:, :, t, None, :]
            + v[:, :, t, :, None] * kt[:, :, t, None, :]
        )
        ys.append(torch.einsum("bhij,bhj->bhi", S, r[:, :, t]))
    if not ys:
        return r.new_zeros(B, H, 0, N)
    return torch.stack(ys, dim=2)


def scan_chunked(
    r: torch.Tensor,
    decay: torch.Tensor,
    kk: torch.Tensor,
    a: torch.Tensor,
    kt: torch.Tensor,
    v: torch.Tensor,
    *,
    log_decay: Optional[torch.Tensor] = None,
    chunk: int = DEFAULT_CHUNK,
    across: str = "doubling",
    recompute: bool = False,
) -> torch.Tensor:
    """Chunked (WY-form) evaluation of the same recurrence in plain PyTorch, differentiable.

    Within a chunk of ``T`` tokens with start state ``S0``, with ``b = a * kk``, cumulative
    log-decays ``g_t = sum_{u<=t} log decay_u`` and ``e_t = S_{t-1} kk_t``, the recurrence unrolls to
    ``S_t = S0 diag(exp g_t) + sum_{u<=t} (v_u kt_u^T - e_u b_u^T) diag(exp(g_t - g_u))``. The
    ``e_t`` solve a unit lower-triangular system ``(I + A_kb) E = Khat S0^T + A_kk V``, so each
    chunk reduces to state-independent matrices computed for all chunks in parallel:
    ``Y = Q S0^T + Y0`` and ``S_next = S0 P + Z``. The chunk start states ``S0`` come from the
    affine recurrence ``S_next = S0 P + Z`` over chunks: ``across="doubling"`` (default) solves it
    as a parallel prefix in ``log2(#chunks)`` batched steps (few kernel launches: fast on a GPU),
    ``across="sequential"`` with one step per chunk (fewer FLOPs).

    Pairwise decay factors ``exp(g_t - g_u)`` are factorised around the chunk's middle token, so
    the largest intermediate factor is ``exp(|log decay| * chunk / 2)``: with the model's decays
    (``log decay >= -exp(-0.5)``) and ``chunk <= 64`` this stays far from float32 overflow.
    Requires ``decay > 0``. Half-precision inputs are computed in float32 (autocast disabled
    inside) and the result cast back: the triangular solve is not safe in bf16/fp16.

    ``recompute=True`` (registered as ``"chunked_lowmem"``) keeps none of the scan's internals for
    the backward pass and recomputes them there (activation checkpointing): much less memory for
    about one more forward of the scan.
    """
    _check(r, decay, kk, a, kt, v)
    if log_decay is None:
        log_decay = torch.log(decay)
    elif log_decay.shape != r.shape:
        raise ValueError(f"log_decay has shape {tuple(log_decay.shape)}, expected {tuple(r.shape)}")
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    out_dtype = r.dtype
    low = r.dtype in (torch.float16, torch.bfloat16) or _autocast_enabled(r.device.type)
    ins = (r, kk, a, kt, v, log_decay)
    if low:
        ins = tuple(t.float() for t in ins)

    def run(*xs):
        with torch.autocast(device_type=r.device.type, enabled=False):
            return _scan_chunked_impl(*xs, chunk=chunk, across=across)

    if recompute and torch.is_grad_enabled() and any(t.requires_grad for t in ins):
        from torch.utils.checkpoint import checkpoint

        y = checkpoint(run, *ins, use_reentrant=False)
    else:
        y = run(*ins)
    return y.to(out_dtype) if low else y


def _scan_chunked_impl(r, kk, a, kt, v, log_decay, *, chunk, across):
    B, H, L, N = r.shape
    if L == 0:
        return r.new_zeros(B, H, 0, N)
    T = min(chunk, L)
    nc = -(-L // T)
    pad = nc * T - L
    b = a * kk
    if pad:
        # Padded tokens come after every real token, so they cannot change real outputs.
        def padz(x):
            return torch.nn.functional.pad(x, (0, 0, 0, pad))

        r, kk, b, kt, v, log_decay = map(padz, (r, kk, b, kt, v, log_decay))

    def chunks(x):
        return x.reshape(B, H, nc, T, N)

    r, kk, b, kt, v, w = map(chunks, (r, kk, b, kt, v, log_decay))
    gi = torch.cumsum(w, dim=3)  # inclusive: g_t
    ge = gi - w  # exclusive: g_{t-1}
    gm = gi[:, :, :, T // 2 : T // 2 + 1, :]  # reference point (middle of the chunk)
    glast = gi[:, :, :, T - 1 :, :]

    k_ex = kk * torch.exp(ge - gm)  # kk_t * Lambda_{t-1} / Lambda_m
    r_in = r * torch.exp(gi - gm)  # r_t * Lambda_t / Lambda_m
    inv = torch.exp(gm - gi)  # Lambda_m / Lambda_u
    b_in = b * inv
    kt_in = kt * inv

    idx = torch.arange(T, device=r.device)
    strict = idx[:, None] > idx[None, :]
    incl = idx[:, None] >= idx[None, :]
    zero = r.new_zeros(())
    A_kb = torch.where(strict, k_ex @ b_in.transpose(-1, -2), zero)
    A_kk = torch.where(strict, k_ex @ kt_in.transpose(-1, -2), zero)
    B_rb = torch.where(incl, r_in @ b_in.transpose(-1, -2), zero)
    B_rk = torch.where(incl, r_in @ kt_in.transpose(-1, -2), zero)

    eye = torch.eye(T, dtype=r.dtype, device=r.device)
    khat = kk * torch.exp(ge)  # kk_t * Lambda_{t-1}
    rhs = torch.cat([khat, A_kk @ v], dim=-1)
    sol = torch.linalg.solve_triangular(eye + A_kb, rhs, upper=False, unitriangular=True)
    W, U = sol[..., :N], sol[..., N:]  # E = W S0^T + U

    rhat = r * torch.exp(gi)  # r_t * Lambda_t
    Q = rhat - B_rb @ W  # [.., T, Nk]
    Y0 = B_rk @ v - B_rb @ U  # [.., T, Nv]
    tail = torch.exp(glast - gi)  # Lambda_T / Lambda_u
    kt_tail = kt * tail
    b_tail = b * tail
    # S_next = S0 (diag(Lambda_T) - W^T b_tail) + (V^T kt_tail - U^T b_tail)
    P = torch.diag_embed(torch.exp(glast[:, :, :, 0, :])) - W.transpose(-1, -2) @ b_tail
    Z = v.transpose(-1, -2) @ kt_tail - U.transpose(-1, -2) @ b_tail

    if across == "sequential" or nc == 1:
        S = r.new_zeros(B, H, N, N)
        ys = []
        for c in range(nc):
            ys.append(Q[:, :, c] @ S.transpose(-1, -2) + Y0[:, :, c])
            if c + 1 < nc:
                S = S @ P[:, :, c] + Z[:, :, c]
        y = torch.stack(ys, dim=2)
    elif across == "doubling":
        # Inclusive prefix over chunks of the affine maps S -> S P_c + Z_c (Hillis-Steele):
        # combining (P1, Z1) then (P2, Z2) gives (P1 P2, Z1 P2 + Z2). log2(nc) batched steps.
        Pc, Zc = P, Z
        off = 1
        while off < nc:
            Zn = Zc[:, :, :-off] @ Pc[:, :, off:] + Zc[:, :, off:]
            Zc = torch.cat([Zc[:, :, :off], Zn], dim=2)
            if 2 * off < nc:
                Pn = Pc[:, :, :-off] @ Pc[:, :, off:]
                Pc = torch.cat([Pc[:, :, :off], Pn], dim=2)
            off *= 2
        # Zc[c] is the state after chunk c (start state 0); chunk c starts from Zc[c-1].
        S0 = torch.cat([torch.zeros_like(Zc[:, :, :1]), Zc[:, :, :-1]], dim=2)
        y = Q @ S0.transpose(-1, -2) + Y0
    else:
        raise ValueError(f"across must be 'doubling' or 'sequential', got {across!r}")
    y = y.reshape(B, H, nc * T, N)
    return y[:, :, :L] if pad else y


register_scan("loop", scan_loop)
register_scan("chunked", scan_chunked)


def scan_chunked_lowmem(r, decay, kk, a, kt, v, *, log_decay=None, **kwargs):
    """:func:`scan_chunked` with ``recompute=True`` (activation checkpointing of the scan)."""
    return scan_chunked(r, decay, kk, a, kt, v, log_decay=log_decay, recompute=True, **kwargs)


register_scan("chunked_lowmem", scan_chunked_lowmem)


def delta_scan(
    r: torch.Tensor,
    decay: torch.Tensor,
    kk: torch.Tensor,
    a: torch.Tensor,
    kt: torch.Tensor,
    v: torch.Tensor,
    impl: str | ScanFn = "chunked",
    *,
    log_decay: Optional[torch.Tensor] = None,
    **kwargs,
) -> torch.Tensor:
    """Run the recurrence with the implementation ``impl`` (a registered name or a callable).

    All inputs are ``[B, H, L, N]`` in scan order; returns ``y`` of the same shape.
    """
    fn = get_scan(impl) if isinstance(impl, str) else impl
    return fn(r, decay, kk, a, kt, v, log_decay=log_decay, **kwargs)


# --------------------------------------------------------------------------------------------
# Scan orders


def scan_order(h: int, w: int, d: int) -> torch.Tensor:
    """The permutation ``pi_d`` of the spec as a LongTensor: entry ``t`` is the canonical token
    index ``p = row * w + col`` visited at step ``t`` of scan direction ``d``."""
    L = h * w
    t = torch.arange(L)
    if d == 0:
        return t
    if d == 1:
        return L - 1 - t
    if d == 2:
        return (t % h) * w + torch.div(t, h, rounding_mode="floor")
    if d == 3:
        return scan_order(h, w, 2).flip(0)
    raise ValueError(f"scan direction must be 0..3, got {d}")


def to_scan_order(x: torch.Tensor, h: int, w: int, d: int) -> torch.Tensor:
    """Reorder ``x`` (``[B, H, L, N]``, canonical token order) into the order of direction ``d``
    (equivalent to ``x[:, :, scan_order(h, w, d)]``, implemented with views/flips)."""
    B, H, L, N = x.shape
    if d in (2, 3):
        x = x.reshape(B, H, h, w, N).transpose(2, 3).reshape(B, H, L, N)
    if d in (1, 3):
        x = x.flip(2)
    if d not in (0, 1, 2, 3):
        raise ValueError(f"scan direction must be 0..3, got {d}")
    return x


def from_scan_order(y: torch.Tensor, h: int, w: int, d: int) -> torch.Tensor:
    """Inverse of :func:`to_scan_order`: put outputs of direction ``d`` back at canonical
    positions."""
    B, H, L, N = y.shape
    if d not in (0, 1, 2, 3):
        raise ValueError(f"scan direction must be 0..3, got {d}")
    if d in (1, 3):
        y = y.flip(2)
    if d in (2, 3):
        y = y.reshape(B, H, w, h, N).transpose(2, 3).reshape(B, H, L, N)
    return y
