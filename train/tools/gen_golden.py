"""Generate the golden vectors in tests/data/golden/ (see the README written next to them).

Small configurations with random, non-trivial weights (not the identity initialisation), saved as
real checkpoints through dwkv.checkpoint; inputs rounded to float32; outputs computed by the
PyTorch reference in float64 with the token-loop scan (never TF32 / fla). Deterministic: running it
again reproduces the same files.

    python train/tools/gen_golden.py [--out tests/data/golden] [--check]

``--check`` regenerates into memory and compares with the committed files instead of writing.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

TRAIN = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TRAIN))

from dwkv.checkpoint import export_checkpoint, load_checkpoint  # noqa: E402
from dwkv.model import DeltaWKV, ModelConfig  # noqa: E402
from dwkv.scan import from_scan_order, scan_loop, to_scan_order  # noqa: E402

REPO = TRAIN.parent
DEFAULT_OUT = REPO / "tests" / "data" / "golden"

#: (file stem, config, storage dtype of the checkpoint, seed)
CONFIGS = [
    ("x2", ModelConfig(scale=2, dim=32, head_size=8, groups=1, blocks_per_group=2, ffn_ratio=2,
                       lora_rank_w=8, lora_rank_a=4, lora_rank_v=6, lora_rank_g=5,
                       degradation="kspace"), torch.float32, 1002),
    ("x4", ModelConfig(scale=4, dim=32, head_size=16, groups=2, blocks_per_group=1, ffn_ratio=2,
                       lora_rank_w=4, lora_rank_a=6, lora_rank_v=8, lora_rank_g=7,
                       degradation="bicubic"), torch.float16, 1004),
]
#: LR inputs (h, w); the last one also gets intermediate values.
INPUT_SIZES = [(16, 16), (12, 16), (9, 7), (5, 6)]
INTERMEDIATE_SIZE = (5, 6)
#: Scan-direction vectors: image h x w, H heads of size N.
SCAN_H, SCAN_W, SCAN_HEADS, SCAN_N = 5, 7, 2, 8
DIR_NAMES = ["dir0_rows_forward", "dir1_rows_backward", "dir2_cols_forward", "dir3_cols_backward"]


def randomise(model: DeltaWKV, seed: int) -> None:
    """Random, non-trivial parameters that keep activations O(1)."""
    g = torch.Generator().manual_seed(seed)

    def n(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    def u(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=torch.float64)

    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            parent = name.rsplit(".", 2)[-2] if name.count(".") >= 1 else ""
            if p.dim() == 4:  # convolutions
                val = n(*p.shape) / math.sqrt(p[0].numel())
            elif leaf == "bias":  # conv and norm biases
                val = 0.1 * n(*p.shape)
            elif leaf == "weight" and p.dim() == 1:  # LayerNorm / GroupNorm gains
                val = 1 + 0.2 * n(*p.shape)
            elif leaf.startswith("mu_"):
                val = u(0.0, 1.0, *p.shape)
            elif leaf == "w0":
                val = u(-2.0, 2.0, *p.shape)
            elif leaf in ("a0", "v0"):
                val = 0.5 * n(*p.shape)
            elif leaf == "k_k":
                val = u(0.5, 1.2, *p.shape)
            elif leaf == "k_a":
                val = u(0.2, 1.5, *p.shape)
            elif leaf == "r_k":
                val = 0.5 * n(*p.shape)
            elif leaf in ("w1", "a1", "v1", "g1"):  # LoRA down [C, R]
                val = n(*p.shape) / math.sqrt(p.shape[0])
            elif leaf in ("w2", "a2", "v2", "g2"):  # LoRA up [R, C]
                val = n(*p.shape) / math.sqrt(p.shape[0])
            elif leaf == "weight" and p.dim() == 2:  # linear layers [out, in]
                scale = 0.5 if parent in ("output", "value") else 1.0
                val = scale * n(*p.shape) / math.sqrt(p.shape[1])
            else:
                raise AssertionError(f"unhandled parameter {name}")
            p.copy_(val.to(p.dtype))


def as_f32_exact(t: torch.Tensor) -> torch.Tensor:
    """Round to float32 and back to float64 (values exactly representable in float32)."""
    return t.to(torch.float32).to(torch.float64)


def lr_image(h: int, w: int, seed: int) -> torch.Tensor:
    """A smooth-ish LR image in [0, 1] with some texture, float32-exact, shape [1, h, w]."""
    g = torch.Generator().manual_seed(seed)
    yy = torch.arange(h, dtype=torch.float64)[:, None] / max(h - 1, 1)
    xx = torch.arange(w, dtype=torch.float64)[None, :] / max(w - 1, 1)
    base = 0.5 + 0.3 * torch.sin(3.1 * xx + 1.7 * yy) * torch.cos(2.3 * yy - 0.4)
    noise = 0.15 * torch.rand(h, w, generator=g, dtype=torch.float64)
    return as_f32_exact((base + noise).clamp(0.0, 1.0))[None]


def to_chw_or_lc(name: str, t: torch.Tensor) -> torch.Tensor:
    """Drop the batch dimension: images stay [C, h, w], tokens stay [L, C]."""
    assert t.shape[0] == 1, name
    return t[0].contiguous()


def model_vectors(stem: str, cfg: ModelConfig, dtype: torch.dtype, seed: int, out: Path):
    """Build, save and reload the checkpoint; compute inputs/outputs/intermediates in float64."""
    torch.manual_seed(seed)
    model = DeltaWKV(cfg, scan_impl="loop")
    randomise(model, seed)
    ckpt = out / f"model_{stem}.safetensors"
    export_checkpoint(model, ckpt, dtype=dtype, trained_on="golden-random", steps=0)
    # Evaluate exactly what the file holds (widened), in float64.
    ref, _ = load_checkpoint(ckpt, dtype=torch.float64, scan_impl="loop")
    vec = {}
    stats = {}
    for i, (h, w) in enumerate(INPUT_SIZES):
        tag = f"{h}x{w}"
        x = lr_image(h, w, seed * 10 + i)
        rec = {} if (h, w) == INTERMEDIATE_SIZE else None
        with torch.no_grad():
            y = ref(x[None], intermediates=rec, internals=(stem == "x2"))
        vec[f"input.{tag}"] = x
        vec[f"output.{tag}"] = y[0]
        stats[f"output.{tag}"] = y
        if rec is not None:
            for k, t in rec.items():
                if k.startswith("upsample."):
                    continue  # large; conv_last(upsample) is only one conv away from the output
                vec[f"inter.{tag}.{k}"] = to_chw_or_lc(k, t)
                stats[f"inter.{tag}.{k}"] = t
    # report magnitudes so that "O(1)" is checked, not assumed
    for k, t in stats.items():
        if k.endswith(("att.decay", "att.a")):
            print(f"  {stem} {k}: min {t.min().item():.3f} max {t.max().item():.3f}")
        else:
            print(f"  {stem} {k}: rms {t.pow(2).mean().sqrt().item():.3f}")
    return vec, ckpt


def scan_vectors(seed: int = 77):
    g = torch.Generator().manual_seed(seed)
    h, w, H, N = SCAN_H, SCAN_W, SCAN_HEADS, SCAN_N
    L, C = h * w, H * N

    def rn(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64)

    def ru(*s):
        return torch.rand(*s, generator=g, dtype=torch.float64)

    k = rn(L, C)
    a = as_f32_exact(ru(L, C))
    kk = as_f32_exact(torch.nn.functional.normalize(k.view(L, H, N), dim=-1).view(L, C))
    decay = as_f32_exact(torch.exp(-math.exp(-0.5) * ru(L, C)))
    kt = as_f32_exact(k * (1 + (a - 1) * ru(L, C)))
    r = as_f32_exact(rn(L, C))
    v = as_f32_exact(rn(L, C))
    tensors = {"r": r, "decay": decay, "kk": kk, "a": a, "kt": kt, "v": v}

    def bhln(t):  # [L, C] -> [1, H, L, N]
        return t.view(L, H, N).permute(1, 0, 2)[None]

    vec = {f"scan.{n}": t for n, t in tensors.items()}
    total = torch.zeros(L, C, dtype=torch.float64)
    for d, dname in enumerate(DIR_NAMES):
        args = [to_scan_order(bhln(tensors[n]), h, w, d) for n in ["r", "decay", "kk", "a", "kt", "v"]]
        y = from_scan_order(scan_loop(*args), h, w, d)  # [1, H, L, N], canonical positions
        y = y[0].permute(1, 0, 2).reshape(L, C)
        vec[f"scan.y.{dname}"] = y
        total += y
    vec["scan.y.sum"] = total
    return vec


def save_vectors(path: Path, vec: dict, meta: dict) -> None:
    from safetensors.torch import save_file

    save_file({k: v.to(torch.float64).contiguous() for k, v in vec.items()}, str(path),
              metadata={k: str(v) for k, v in meta.items()})


def generate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    for stem, cfg, dtype, seed in CONFIGS:
        print(f"config {stem}: {cfg}")
        vec, ckpt = model_vectors(stem, cfg, dtype, seed, out)
        meta = {"checkpoint": ckpt.name, "scale": cfg.scale, "dtype": "f64",
                "generator": "train/tools/gen_golden.py", "scan": "loop", "precision": "float64"}
        save_vectors(out / f"vectors_{stem}.safetensors", vec, meta)
    sv = scan_vectors()
    save_vectors(out / "scan_dirs.safetensors", sv,
                 {"h": SCAN_H, "w": SCAN_W, "heads": SCAN_HEADS, "head_size": SCAN_N,
                  "generator": "train/tools/gen_golden.py"})
    total = sum(p.stat().st_size for p in out.glob("*.safetensors"))
    print(f"wrote {out} ({total / 1024:.0f} KiB in safetensors files)")


def check(committed: Path) -> int:
    """Regenerate into a temporary folder and compare tensors and metadata with ``committed``."""
    import tempfile

    from safetensors import safe_open

    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        bad = 0
        for new in sorted(Path(tmp).glob("*.safetensors")):
            old = committed / new.name
            if not old.exists():
                print(f"MISSING {old}")
                bad += 1
                continue
            with safe_open(str(new), "pt") as a, safe_open(str(old), "pt") as b:
                if set(a.keys()) != set(b.keys()) or a.metadata() != b.metadata():
                    print(f"DIFFERENT names/metadata: {new.name}")
                    bad += 1
                    continue
                for k in a.keys():
                    ta, tb = a.get_tensor(k), b.get_tensor(k)
                    if ta.dtype != tb.dtype or ta.shape != tb.shape or not torch.allclose(
                            ta.double(), tb.double(), rtol=1e-12, atol=1e-12):
                        print(f"DIFFERENT {new.name}:{k}")
                        bad += 1
        print("golden vectors reproduce" if bad == 0 else f"{bad} differences")
        return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="compare with the committed files")
    args = ap.parse_args()
    if args.check:
        return check(args.out)
    generate(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
