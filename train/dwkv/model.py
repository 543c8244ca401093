"""PyTorch reference of the Delta-WKV super-resolution network, exactly as docs/model-spec.md.

Module and parameter names give the spec's ``state_dict`` (= safetensors checkpoint) names.
The recurrence is delegated to :mod:`dwkv.scan`; which implementation runs is the model's
``scan_impl`` attribute (a registered name such as ``"loop"`` or ``"chunked"``, or a callable).
Only depends on torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .scan import delta_scan, from_scan_order, to_scan_order


@dataclass
class ModelConfig:
    """Hyper-parameters of one Delta-WKV network (defaults: DWKV-3M)."""

    scale: int = 2
    dim: int = 96
    head_size: int = 32
    groups: int = 4
    blocks_per_group: int = 6
    ffn_ratio: int = 2
    lora_rank_w: int = 32
    lora_rank_a: int = 32
    lora_rank_v: int = 32
    lora_rank_g: int = 32
    degradation: str = "kspace"

    def __post_init__(self) -> None:
        if self.scale not in (2, 4):
            raise ValueError(f"scale must be 2 or 4, got {self.scale}")
        if self.head_size <= 0 or self.dim % self.head_size != 0:
            raise ValueError(f"dim {self.dim} is not a multiple of head_size {self.head_size}")
        for name in ("groups", "blocks_per_group", "ffn_ratio", "lora_rank_w", "lora_rank_a",
                     "lora_rank_v", "lora_rank_g"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.degradation not in ("kspace", "bicubic"):
            raise ValueError(f"degradation must be 'kspace' or 'bicubic', got {self.degradation!r}")

    @property
    def heads(self) -> int:
        """Number of heads ``H = C / N``."""
        return self.dim // self.head_size

    @property
    def n_blocks(self) -> int:
        """Total number of blocks ``G * B``."""
        return self.groups * self.blocks_per_group

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# Token helpers: tokens are [B, L, C] with canonical order p = row * w + col.


def tokens(img: torch.Tensor) -> torch.Tensor:
    """``[B, C, h, w] -> [B, h*w, C]``."""
    return img.flatten(2).transpose(1, 2)


def image(tok: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``[B, h*w, C] -> [B, C, h, w]``."""
    B, L, C = tok.shape
    return tok.transpose(1, 2).reshape(B, C, h, w)


def shift_quarter(head_size: int, dim: int) -> torch.Tensor:
    """Per channel ``c`` the shift direction ``q = floor(4 (c mod N) / N)`` (0 left, 1 right,
    2 up, 3 down)."""
    j = torch.arange(dim) % head_size
    return torch.div(4 * j, head_size, rounding_mode="floor")


def token_shift(x: torch.Tensor, h: int, w: int, quarter: torch.Tensor) -> torch.Tensor:
    """The spec's 2-D token shift: ``xs[row, col, c]`` is the left / right / upper / lower
    neighbour for ``quarter[c]`` = 0 / 1 / 2 / 3, zero outside the image. ``x``: ``[B, L, C]``."""
    B, L, C = x.shape
    g = x.reshape(B, h, w, C)
    left = F.pad(g[:, :, :-1], (0, 0, 1, 0))  # x[row, col-1]
    right = F.pad(g[:, :, 1:], (0, 0, 0, 1))  # x[row, col+1]
    up = F.pad(g[:, :-1], (0, 0, 0, 0, 1, 0))  # x[row-1, col]
    down = F.pad(g[:, 1:], (0, 0, 0, 0, 0, 1))  # x[row+1, col]
    q = quarter.to(x.device)
    xs = torch.where(q == 0, left, torch.where(q == 1, right, torch.where(q == 2, up, down)))
    return xs.reshape(B, L, C)


# --------------------------------------------------------------------------------------------


class SpatialMix(nn.Module):
    """The Delta-WKV attention (spec "Spatial mix")."""

    def __init__(self, cfg: ModelConfig, layer_id: int):
        super().__init__()
        C, N, H = cfg.dim, cfg.head_size, cfg.heads
        self.dim, self.head_size, self.heads = C, N, H
        self.layer_id = layer_id
        self.first = layer_id == 0
        self.mu_r = nn.Parameter(torch.empty(C))
        self.mu_w = nn.Parameter(torch.empty(C))
        self.mu_k = nn.Parameter(torch.empty(C))
        self.mu_v = nn.Parameter(torch.empty(C))
        self.mu_a = nn.Parameter(torch.empty(C))
        self.mu_g = nn.Parameter(torch.empty(C))
        self.w0 = nn.Parameter(torch.empty(C))
        self.a0 = nn.Parameter(torch.empty(C))
        if not self.first:
            self.v0 = nn.Parameter(torch.empty(C))
        self.w1 = nn.Parameter(torch.empty(C, cfg.lora_rank_w))
        self.w2 = nn.Parameter(torch.empty(cfg.lora_rank_w, C))
        self.a1 = nn.Parameter(torch.empty(C, cfg.lora_rank_a))
        self.a2 = nn.Parameter(torch.empty(cfg.lora_rank_a, C))
        if not self.first:
            self.v1 = nn.Parameter(torch.empty(C, cfg.lora_rank_v))
            self.v2 = nn.Parameter(torch.empty(cfg.lora_rank_v, C))
        self.g1 = nn.Parameter(torch.empty(C, cfg.lora_rank_g))
        self.g2 = nn.Parameter(torch.empty(cfg.lora_rank_g, C))
        self.k_k = nn.Parameter(torch.empty(C))
        self.k_a = nn.Parameter(torch.empty(C))
        self.r_k = nn.Parameter(torch.empty(H, N))
        self.receptance = nn.Linear(C, C, bias=False)
        self.key = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(C, C, bias=False)
        self.output = nn.Linear(C, C, bias=False)
        self.ln_x = nn.GroupNorm(H, C, eps=64e-5)
        self.register_buffer("quarter", shift_quarter(N, C), persistent=False)

    @torch.no_grad()
    def reset_parameters(self, n_layer: int) -> None:
        """RWKV-7 x070 initialisation as in the spec."""
        C = self.dim
        l = self.layer_id
        r0 = l / (n_layer - 1) if n_layer > 1 else 0.0
        r1 = 1.0 - l / n_layer
        ddd = torch.arange(C, dtype=torch.float64) / C
        self.mu_r.copy_(1 - ddd.pow(0.2 * r1))
        self.mu_w.copy_(1 - ddd.pow(0.9 * r1))
        self.mu_k.copy_(1 - (ddd.pow(0.9 * r1) + 0.4 * r0))
        self.mu_v.copy_(1 - (ddd.pow(0.4 * r1) + 0.6 * r0))
        self.mu_a.copy_(1 - ddd.pow(0.9 * r1))
        self.mu_g.copy_(1 - ddd.pow(0.2 * r1))
        i = torch.arange(C, dtype=torch.float64)
        self.w0.copy_(-7 + 5 * (i / max(C - 1, 1)).pow(0.85 + math.sqrt(r0)) + 0.5)
        self.a0.zero_()
        if not self.first:
            self.v0.fill_(1.0)
        downs = [self.w1, self.a1, self.g1] + ([] if self.first else [self.v1])
        ups = [self.w2, self.a2, self.g2] + ([] if self.first else [self.v2])
        for p in downs:
            p.zero_()
        for p in ups:
            nn.init.orthogonal_(p, gain=0.1)
        self.k_k.fill_(0.85)
        self.k_a.fill_(1.0)
        self.r_k.zero_()
        bound = 0.5 / math.sqrt(C)
        nn.init.uniform_(self.receptance.weight, -bound, bound)
        nn.init.uniform_(self.value.weight, -bound, bound)
        nn.init.uniform_(self.key.weight, -0.1 * bound, 0.1 * bound)
        self.output.weight.zero_()
        self.ln_x.weight.fill_(1.0)
        self.ln_x.bias.zero_()

    def forward(
        self,
        x: torch.Tensor,
        h: int,
        w: int,
        v_first: Optional[torch.Tensor],
        scan_impl="chunked",
        rec: Optional[Dict[str, torch.Tensor]] = None,
        prefix: str = "",
    ):
        """``x``: ``[B, L, C]`` normalised tokens. Returns ``(out, v_first)``.

        If ``rec`` is a dict, internal values (``[B, L, C]`` tokens) are stored in it under
        ``prefix + name`` for name in r, k, v (after the value residual), decay, a, kk, kt, gate,
        y (sum of the four scans), y_ln (after ln_x), out.
        """

        def keep(name, t):
            if rec is not None:
                rec[prefix + name] = t.detach()

        B, L, C = x.shape
        H, N = self.heads, self.head_size
        d = token_shift(x, h, w, self.quarter) - x
        xr = x + d * self.mu_r
        xw = x + d * self.mu_w
        xk = x + d * self.mu_k
        xv = x + d * self.mu_v
        xa = x + d * self.mu_a
        xg = x + d * self.mu_g

        r = self.receptance(xr)
        k = self.key(xk)
        v = self.value(xv)
        dd = self.w0 + torch.tanh(xw @ self.w1) @ self.w2
        log_decay = -math.exp(-0.5) * torch.sigmoid(dd)
        decay = torch.exp(log_decay)
        a = torch.sigmoid(self.a0 + (xa @ self.a1) @ self.a2)
        if self.first:
            v_first = v
        else:
            if v_first is None:
                raise ValueError(f"block {self.layer_id} needs v_first from block 0")
            v = v + (v_first - v) * torch.sigmoid(self.v0 + (xv @ self.v1) @ self.v2)
        gate = torch.sigmoid(xg @ self.g1) @ self.g2
        keep("r", r)
        keep("k", k)
        keep("v", v)
        keep("decay", decay)
        keep("a", a)
        keep("gate", gate)

        kk = F.normalize((k * self.k_k).view(B, L, H, N), p=2.0, dim=-1, eps=1e-12).view(B, L, C)
        kt = k * (1 + (a - 1) * self.k_a)
        keep("kk", kk)
        keep("kt", kt)

        y = self.recurrence(r, decay, log_decay, kk, a, kt, v, h, w, scan_impl)
        keep("y", y)
        y = self.ln_x(y.reshape(B * L, C)).view(B, L, C)
        keep("y_ln", y)
        bonus = (r * kt * self.r_k.reshape(C)).view(B, L, H, N).sum(-1, keepdim=True)
        y = y + (bonus * v.view(B, L, H, N)).view(B, L, C)
        out = self.output(y * gate)
        keep("out", out)
        return out, v_first

    def recurrence(self, r, decay, log_decay, kk, a, kt, v, h, w, scan_impl) -> torch.Tensor:
        """``y = y_0 + y_1 + y_2 + y_3`` (all ``[B, L, C]``); the four directions run as one
        scan call over a 4x larger batch."""
        B, L, C = r.shape
        H, N = self.heads, self.head_size

        def heads_dirs(t):
            t = t.reshape(B, L, H, N).transpose(1, 2)
            return torch.cat([to_scan_order(t, h, w, d) for d in range(4)], dim=0)

        ys = delta_scan(
            heads_dirs(r), heads_dirs(decay), heads_dirs(kk), heads_dirs(a), heads_dirs(kt),
            heads_dirs(v), impl=scan_impl, log_decay=heads_dirs(log_decay),
        )
        ys = ys.split(B, dim=0)
        y = sum(from_scan_order(ys[d], h, w, d) for d in range(4))
        return y.transpose(1, 2).reshape(B, L, C)


class ChannelMix(nn.Module):
    """Spec "Channel mix": ``relu(x_k W_k'^T)^2 W_v'^T`` after the 2-D token shift."""

    def __init__(self, cfg: ModelConfig, layer_id: int):
        super().__init__()
        C = cfg.dim
        self.dim = C
        self.layer_id = layer_id
        self.mu_k = nn.Parameter(torch.empty(C))
        self.key = nn.Linear(C, cfg.ffn_ratio * C, bias=False)
        self.value = nn.Linear(cfg.ffn_ratio * C, C, bias=False)
        self.register_buffer("quarter", shift_quarter(cfg.head_size, C), persistent=False)

    @torch.no_grad()
    def reset_parameters(self, n_layer: int) -> None:
        C = self.dim
        r1 = 1.0 - self.layer_id / n_layer
        ddd = torch.arange(C, dtype=torch.float64) / C
        self.mu_k.copy_(1 - ddd.pow(r1**4))
        bound = 0.5 / math.sqrt(C)
        nn.init.uniform_(self.key.weight, -bound, bound)
        self.value.weight.zero_()

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        xk = x + (token_shift(x, h, w, self.quarter) - x) * self.mu_k
        return self.value(torch.relu(self.key(xk)).square())


class Block(nn.Module):
    """Pre-norm block: ``T + spatial_mix(ln1(T))`` then ``T + channel_mix(ln2(T))``."""

    def __init__(self, cfg: ModelConfig, layer_id: int):
        super().__init__()
        self.layer_id = layer_id
        self.ln1 = nn.LayerNorm(cfg.dim, eps=1e-5)
        self.ln2 = nn.LayerNorm(cfg.dim, eps=1e-5)
        self.att = SpatialMix(cfg, layer_id)
        self.ffn = ChannelMix(cfg, layer_id)

    @torch.no_grad()
    def reset_parameters(self, n_layer: int) -> None:
        for ln in (self.ln1, self.ln2):
            ln.weight.fill_(1.0)
            ln.bias.zero_()
        self.att.reset_parameters(n_layer)
        self.ffn.reset_parameters(n_layer)

    def forward(self, x, h, w, v_first, scan_impl="chunked", rec=None, prefix=""):
        """Returns ``(x, v_first)``. With a dict ``rec``, stores ``prefix + "ln1"``, the spatial
        mix internals under ``prefix + "att."`` and ``prefix + "ffn.out"``."""
        xn = self.ln1(x)
        if rec is not None:
            rec[prefix + "ln1"] = xn.detach()
        dx, v_first = self.att(xn, h, w, v_first, scan_impl, rec, prefix + "att.")
        x = x + dx
        dx = self.ffn(self.ln2(x), h, w)
        if rec is not None:
            rec[prefix + "ffn.out"] = dx.detach()
        return x + dx, v_first


class ResidualGroup(nn.Module):
    """``B`` blocks, then a 3x3 conv on the image, plus the group's input."""

    def __init__(self, cfg: ModelConfig, group_id: int):
        super().__init__()
        B = cfg.blocks_per_group
        self.blocks = nn.ModuleList(Block(cfg, group_id * B + b) for b in range(B))
        self.conv = nn.Conv2d(cfg.dim, cfg.dim, 3, padding=1)


class DeltaWKV(nn.Module):
    """The Delta-WKV SR network: ``forward(x: [B,1,h,w]) -> [B,1,s*h,s*w]`` (not clamped).

    ``scan_impl`` (attribute) picks the recurrence implementation: a name registered in
    :mod:`dwkv.scan` (``"loop"``: the float64-capable reference; ``"chunked"``: plain-PyTorch
    chunked form for training) or a callable with the registry's signature.
    """

    def __init__(self, cfg: ModelConfig, scan_impl="chunked"):
        super().__init__()
        self.cfg = cfg
        self.scan_impl = scan_impl
        C = cfg.dim
        self.conv_first = nn.Conv2d(1, C, 3, padding=1)
        self.patch_norm = nn.LayerNorm(C, eps=1e-5)
        self.groups = nn.ModuleList(ResidualGroup(cfg, g) for g in range(cfg.groups))
        self.norm = nn.LayerNorm(C, eps=1e-5)
        self.conv_after_body = nn.Conv2d(C, C, 3, padding=1)
        self.conv_before_upsample = nn.Conv2d(C, 64, 3, padding=1)
        n_up = int(round(math.log2(cfg.scale)))
        self.upsample = nn.ModuleList(nn.Conv2d(64, 256, 3, padding=1) for _ in range(n_up))
        self.conv_last = nn.Conv2d(64, 1, 3, padding=1)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The spec's initialisation (convolutions: PyTorch default)."""
        n_layer = self.cfg.n_blocks
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                m.reset_parameters()
        for ln in (self.patch_norm, self.norm):
            ln.weight.fill_(1.0)
            ln.bias.zero_()
        for grp in self.groups:
            for blk in grp.blocks:
                blk.reset_parameters(n_layer)

    def blocks(self):
        """All blocks in global order ``l = g * B + b``."""
        return [blk for grp in self.groups for blk in grp.blocks]

    def forward(
        self,
        x: torch.Tensor,
        intermediates: Optional[Dict[str, torch.Tensor]] = None,
        internals: bool = False,
    ) -> torch.Tensor:
        """``x``: ``[B, 1, h, w]`` LR slices in [0, 1]; returns ``[B, 1, s*h, s*w]``.

        If ``intermediates`` is a dict, it is filled with (detached) intermediate values:
        ``conv_first`` (F0, image), ``patch_norm`` (tokens), ``block.{l}`` (tokens after global
        block l), ``group.{g}`` (tokens after group g incl. its conv and skip), ``norm``
        (tokens), ``body`` (Fd, image), ``before_upsample`` (image, after LeakyReLU),
        ``upsample.{i}`` (image, after PixelShuffle). With ``internals`` also each block's
        internals under ``block.{l}.`` (see :meth:`Block.forward`).
        """
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"expected input [B, 1, h, w], got {tuple(x.shape)}")
        _, _, h, w = x.shape
        rec = intermediates

        def keep(name, t):
            if rec is not None:
                rec[name] = t.detach()

        f0 = self.conv_first(x)
        keep("conv_first", f0)
        t = self.patch_norm(tokens(f0))
        keep("patch_norm", t)
        v_first = None
        for g, grp in enumerate(self.groups):
            t_in = t
            for blk in grp.blocks:
                inner = rec if internals else None
                t, v_first = blk(t, h, w, v_first, self.scan_impl, inner, f"block.{blk.layer_id}.")
                keep(f"block.{blk.layer_id}", t)
            t = tokens(grp.conv(image(t, h, w))) + t_in
            keep(f"group.{g}", t)
        t = self.norm(t)
        keep("norm", t)
        fd = self.conv_after_body(image(t, h, w)) + f0
        keep("body", fd)
        y = F.leaky_relu(self.conv_before_upsample(fd), 0.01)
        keep("before_upsample", y)
        for i, up in enumerate(self.upsample):
            y = F.pixel_shuffle(up(y), 2)
            keep(f"upsample.{i}", y)
        return self.conv_last(y)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters())
