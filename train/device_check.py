"""GPU check before training: environment, fla import, fla scan vs the float64 reference, and
training throughput of DWKV-3M (steps/s for a batch of 16 LR 64x64 crops at x2, as the
reference measurement in issue 4) for a few configurations. Prints a table and writes JSON.

    python3 train/device_check.py --out $OUT/check.json [--steps 15]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dwkv import DeltaWKV, ModelConfig  # noqa: E402
from dwkv.scan import scan_chunked  # noqa: E402


def rel_err(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


def scan_check(dev):
    """fla (float32, TF32 dots) against the plain-PyTorch chunked scan in float64."""
    import dwkv.scan_fla as sf

    g = torch.Generator(device="cpu").manual_seed(0)
    B, H, L, N = 2, 3, 4096, 32
    r = torch.randn(B, H, L, N, generator=g, dtype=torch.float64)
    kk = F.normalize(torch.randn(B, H, L, N, generator=g, dtype=torch.float64), dim=-1)
    a = torch.rand(B, H, L, N, generator=g, dtype=torch.float64)
    kt = torch.randn(B, H, L, N, generator=g, dtype=torch.float64) * 0.5
    v = torch.randn(B, H, L, N, generator=g, dtype=torch.float64)
    logd = -0.6065306597126334 * torch.sigmoid(torch.randn(B, H, L, N, generator=g,
                                                           dtype=torch.float64) * 3)
    ref = scan_chunked(*(t.to(dev) for t in (r, logd.exp(), kk, a, kt, v)),
                       log_decay=logd.to(dev))
    t0 = time.time()
    out = sf.scan_fla(*(t.to(dev).float() for t in (r, logd.exp(), kk, a, kt, v)),
                      log_decay=logd.to(dev).float())
    torch.cuda.synchronize()
    first = time.time() - t0
    return {"scan_rel_err_fla_vs_f64": rel_err(out, ref), "fla_first_call_s": first}


def model_check(dev):
    """Whole model: fla scan (float32) vs chunked scan (float64) on one 32x32 LR image."""
    torch.manual_seed(0)
    m = DeltaWKV(ModelConfig(scale=2)).to(dev)
    with torch.no_grad():  # random weights so that every block does something
        for n, p in m.named_parameters():
            if p.dim() >= 2 and ("output" in n or "ffn.value" in n):
                p.normal_(0, 0.02)
    x = torch.rand(1, 1, 32, 32, device=dev)
    m64 = DeltaWKV(ModelConfig(scale=2), scan_impl="chunked").to(dev).double()
    m64.load_state_dict(m.state_dict())
    with torch.no_grad():
        ref = m64(x.double())
        m.scan_impl = "fla"
        out = m(x)
    return {"model_rel_err_fla_vs_f64": rel_err(out, ref)}


def speed(dev, batch, amp, compile_, steps, scan="fla", lr_crop=64):
    torch.manual_seed(0)
    m = DeltaWKV(ModelConfig(scale=2), scan_impl=scan).to(dev)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, fused=True)
    if compile_:
        from train import compile_blocks

        compile_blocks(m)
    x = torch.rand(batch, 1, lr_crop, lr_crop, device=dev)
    y = torch.rand(batch, 1, 2 * lr_crop, 2 * lr_crop, device=dev)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            out = m(x)
        loss = F.l1_loss(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()

    torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    warm = time.time() - t0
    t0 = time.time()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    dt = time.time() - t0
    return {"batch": batch, "amp": "bf16" if amp else "fp32", "compile": compile_, "scan": scan,
            "steps_per_s": steps / dt, "samples_per_s": steps * batch / dt,
            "warmup_s": warm, "peak_gib": torch.cuda.max_memory_allocated() / 2**30}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="check.json")
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--configs", default="b16-fp32,b16-bf16,b32-bf16",
                    help="comma list of b<batch>-<fp32|bf16>[-compile]")
    args = ap.parse_args()
    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    import triton

    res = {"torch": torch.__version__, "triton": triton.__version__,
           "gpu": torch.cuda.get_device_name(0)}
    t0 = time.time()
    import dwkv.scan_fla as sf

    sf._load()
    import fla

    res["fla"] = fla.__version__
    res["fla_import_s"] = time.time() - t0
    res.update(scan_check(dev))
    res.update(model_check(dev))
    print(json.dumps(res), flush=True)
    res["speed"] = []
    for c in args.configs.split(","):
        parts = c.split("-")
        r = speed(dev, int(parts[0][1:]), parts[1] == "bf16", "compile" in parts, args.steps)
        res["speed"].append(r)
        print(json.dumps(r), flush=True)
        torch.cuda.empty_cache()
    Path(args.out).write_text(json.dumps(res, indent=1))
    print("config           steps/s  samples/s  peak GiB  warm-up s")
    for r in res["speed"]:
        print(f"b{r['batch']:<3} {r['amp']:5} {'compiled' if r['compile'] else 'eager':8} "
              f"{r['steps_per_s']:7.2f} {r['samples_per_s']:9.1f} {r['peak_gib']:9.1f} "
              f"{r['warmup_s']:9.1f}")


if __name__ == "__main__":
    main()
