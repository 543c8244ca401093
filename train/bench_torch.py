"""Inference speed of the PyTorch reference on the GPU, the baseline the WGSL engine is compared
against (BENCHMARKS.md). Same checkpoints and input sizes as ``deltawkv bench``.

    python3 train/bench_torch.py --weights-dir weights --json out.json [--budget 120]

For each scale, LR size, precision (float32 as PyTorch runs it by default, i.e. TF32
convolutions, and bf16 autocast) and execution mode, times batch 1 (one slice) and a 150-slice
volume in batches, with the fla chunked kernel when it is importable, else the plain-PyTorch
chunked scan. Reports seconds per slice (the fastest of ``--repeat`` timed runs after a warm-up)
and peak GPU memory.

Execution modes (``--modes``), so that the engine is compared against the strongest PyTorch that
runs, not only eager:
  eager       the model as written
  compile     ``torch.compile`` of the whole model (default mode; one compile per batch shape,
              the recompile limit raised so the volume's batch and batch 1 both stay compiled)
  compile-cg  ``torch.compile(mode="reduce-overhead")``: the same plus CUDA graphs, which remove
              the per-kernel launch cost that dominates one slice
A mode that fails (a graph break it cannot handle, a Triton kernel dynamo cannot trace) is
reported with its error in ``failed`` and the run goes on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from dwkv.checkpoint import load_checkpoint  # noqa: E402


def timed(fn, repeat: int) -> float:
    fn()  # warm-up (kernel selection, Triton compilation)
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--weights-dir", default="weights")
    ap.add_argument("--scales", default="2,4")
    ap.add_argument("--sizes", default="128,256")
    ap.add_argument("--volume", type=int, default=150, help="slices in the volume run")
    ap.add_argument("--batch", type=int, default=32, help="largest batch in the volume run")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--budget", type=float, default=150.0, help="stop starting runs after this")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--bf16-sizes", default=None,
                    help="sizes that also run bf16 (default: all of --sizes)")
    ap.add_argument("--modes", default="eager,compile,compile-cg")
    ap.add_argument("--scan", default="auto", choices=["auto", "fla", "chunked"],
                    help="recurrence kernel: fla when importable (auto), or the PyTorch chunked scan")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    modes = args.modes.split(",")
    if any(m.startswith("compile") for m in modes):
        import torch._dynamo

        # batch 1 and the volume's batch (and its halvings on out-of-memory) are distinct shapes
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    bf16_sizes = None if args.bf16_sizes is None else {int(x) for x in args.bf16_sizes.split(",")}

    t_start = time.perf_counter()
    scan = "chunked"
    if args.scan != "chunked":
        try:
            from dwkv import scan_fla

            if scan_fla.available():
                scan = "fla"
        except Exception as e:  # noqa: BLE001
            print(f"fla not available ({e}); using the chunked PyTorch scan", file=sys.stderr)
        if args.scan == "fla" and scan != "fla":
            print("--scan fla: fla is not available", file=sys.stderr)
            return 1
    dev = torch.device("cuda")
    rows = []
    failed = []
    for s in [int(x) for x in args.scales.split(",")]:
        model, _ = load_checkpoint(
            Path(args.weights_dir) / f"dwkv3m_x{s}.safetensors", device=dev, scan_impl=scan
        )
        model.eval()
        for mode in modes:
            if mode == "eager":
                fwd = model
            else:
                # one compiled model per mode: each (batch, size, autocast) shape compiles once
                torch._dynamo.reset()
                fwd = torch.compile(
                    model, mode="reduce-overhead" if mode == "compile-cg" else "default",
                    dynamic=False,
                )
            for n, prec in [
                (n, p) for n in [int(x) for x in args.sizes.split(",")]
                for p in args.precisions.split(",")
            ]:
                if prec == "bf16" and bf16_sizes is not None and n not in bf16_sizes:
                    continue
                for slices, batch in ((1, 1), (args.volume, args.batch)):
                    if time.perf_counter() - t_start > args.budget:
                        print("budget reached, stopping", file=sys.stderr)
                        break
                    oom_at = []
                    while True:
                        x = torch.rand(batch, 1, n, n, device=dev)
                        n_batches = -(-slices // batch)

                        @torch.inference_mode()
                        def run():
                            with torch.autocast("cuda", dtype=torch.bfloat16,
                                                enabled=prec == "bf16"):
                                for _ in range(n_batches):
                                    # a CUDA-graph output is overwritten by the next replay:
                                    # clone it, as a caller keeping every slice would
                                    y = fwd(x)
                                    if mode == "compile-cg":
                                        y = y.clone()

                        torch.cuda.reset_peak_memory_stats()
                        try:
                            t_c = time.perf_counter()
                            sec = timed(run, args.repeat)
                            warm = time.perf_counter() - t_c
                            break
                        except torch.OutOfMemoryError:
                            del x
                            torch.cuda.empty_cache()
                            print(f"x{s} {n} {prec} batch {batch}: out of memory", file=sys.stderr)
                            oom_at.append(batch)
                            if batch == 1:
                                sec = None
                                break
                            batch //= 2  # as the WGSL engine does: halve and retry
                        except Exception as e:  # noqa: BLE001 (compile failures of every kind)
                            msg = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
                            print(f"x{s} {n} {prec} {mode} batch {batch}: {msg}", file=sys.stderr)
                            failed.append({"scale": s, "size": n, "precision": prec,
                                           "mode": mode, "batch": batch, "error": msg})
                            sec = None
                            break
                    if sec is None:
                        continue
                    row = {
                        "scale": s,
                        "size": n,
                        "mode": mode,
                        "precision": prec,
                        "scan": scan,
                        "slices": n_batches * batch,
                        "batch": batch,
                        "seconds_per_slice": sec / (n_batches * batch),
                        "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
                        "out_of_memory_at_batch": oom_at,
                        "first_call_and_timing_s": warm,
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        del model
        torch.cuda.empty_cache()
    best = {}
    for r in rows:
        k = f"x{r['scale']}_{r['size']}_{'b1' if r['batch'] == 1 else 'volume'}"
        if k not in best or r["seconds_per_slice"] < best[k]["seconds_per_slice"]:
            best[k] = r
    for k, r in sorted(best.items()):
        print(f"best {k}: {r['mode']} {r['precision']} {1e3 * r['seconds_per_slice']:.2f} ms/slice",
              file=sys.stderr)
    out = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows,
           "failed": failed, "best": best}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
