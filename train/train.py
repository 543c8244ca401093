"""Train the Delta-WKV SR network (DWKV-3M) on 2-D MRI slices; resumable across device calls.

Pipeline per step (see README.md, "Training"):

1. ``TrainSampler`` cuts random square HR crops of ``(lr_crop + 2 margin) * scale`` voxels from
   random slices along random axes of the prepared training volumes, flips and rotates them by
   multiples of 90 degrees (HR only);
2. on the device: mild intensity augmentation (gamma, scale) and Gaussian noise on the HR crop;
   optionally (``--p-contrast``, ``--p-bias``) a random contrast and a bias field
   (``dwkv.acquire``, SynthSR-style domain randomisation);
3. degradation of the augmented HR crop (k-space truncation by default, bicubic optional; with
   ``--p-realistic`` a realistic acquisition for part of the batch: k-space noise, apodisation,
   partial Fourier, magnitude), then
   the central ``lr_crop`` LR window and the matching HR window are cut out, so the LR pixels the
   loss sees are free of the crop's wrap-around (the DFT treats a crop as periodic);
4. L1 loss, AdamW, linear warm-up + cosine learning rate, gradient clipping, bf16 autocast with
   the recurrence in float32, EMA of the weights.

Validation: PSNR and SSIM (data range 1.0 on the normalised scale) on whole axial slices of the
val volumes, for the raw and the EMA weights, against zero-filled, bicubic and nearest baselines.
Per volume, PSNR uses the mean squared error over all its slices (clamped to [0, 1]), SSIM is the
mean over slices; the val-set figure is the mean over volumes.

Checkpoints (``--out``): ``model.pt`` (weights, step, schedule, RNG states, logs' bookkeeping),
``ema.pt`` and ``adam.pt``, written every ``--ckpt-every`` seconds and at the wall-clock deadline
``--time-limit``; ``--resume DIR`` continues from such a directory. ``--state-precision compact``
(for the 64 MiB device transfers) stores the EMA as a bfloat16 difference to the weights and the
Adam moments in bfloat16 (the second moment as its square root); ``full`` stores float32 and
resumes bit-exactly on the CPU.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from data import TrainSampler, load_train, load_val  # noqa: E402
from dwkv import DeltaWKV, ModelConfig, count_parameters  # noqa: E402

TRAIN_FIELDS = ["step", "loss", "lr", "grad_norm", "steps_per_s", "samples_per_s", "train_seconds"]
LOG_FILES = ["train_log.csv", "val_log.csv", "val_detail.jsonl", "plot.png"]
VAL_FIELDS = ["step", "weights", "psnr", "ssim", "zerofill_psnr", "zerofill_ssim",
              "bicubic_psnr", "bicubic_ssim", "nearest_psnr", "nearest_ssim"]


# ---------------------------------------------------------------------------------------------
# Degradations and metrics (dwkv.degrade / dwkv.metrics)


def degrade_batch(hr: torch.Tensor, scale: int, degradation: str) -> torch.Tensor:
    """LR of a batch ``[B, 1, H, W]`` (H, W multiples of scale), on hr's device."""
    from dwkv import degrade

    return degrade.degrade_torch(hr, scale, degradation)


# ---------------------------------------------------------------------------------------------


def lr_at(step: int, peak: float, warmup: int, total: int, floor: float) -> float:
    """Linear warm-up for ``warmup`` steps, then cosine from ``peak`` to ``floor * peak`` at
    ``total``; ``floor * peak`` after it."""
    if step < warmup:
        return peak * (step + 1) / warmup
    if total <= warmup:
        return peak
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p)))


def _block_forward(blk, x, h, w, v_first, scan_impl):
    from dwkv.model import Block

    return Block.forward(blk, x, h, w, v_first, scan_impl)


_compiled_block_forward = None


def compile_blocks(model) -> None:
    """``torch.compile`` every block through one compiled function that takes the block as an
    argument: the blocks share its graphs (one for block 0, one for the others) instead of
    recompiling per block (the model passes each block a different ``prefix`` string, which
    compiling ``Block.forward`` itself would specialise on). The fla scan is a graph break.
    Calls that record intermediates (``rec``) run eagerly."""
    global _compiled_block_forward
    import torch._dynamo

    from dwkv.model import Block

    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 16)
    if _compiled_block_forward is None:
        _compiled_block_forward = torch.compile(_block_forward, dynamic=False)
    fast = _compiled_block_forward
    for blk in model.blocks():
        def fwd(x, h, w, v_first, scan_impl="chunked", rec=None, prefix="", _blk=blk):
            if rec is not None:
                return Block.forward(_blk, x, h, w, v_first, scan_impl, rec, prefix)
            return fast(_blk, x, h, w, v_first, scan_impl)

        blk.forward = fwd


def make_config(args) -> ModelConfig:
    if args.tiny:
        return ModelConfig(scale=args.scale, dim=16, head_size=8, groups=1, blocks_per_group=2,
                           ffn_ratio=2, lora_rank_w=4, lora_rank_a=4, lora_rank_v=4,
                           lora_rank_g=4, degradation=args.degradation)
    return ModelConfig(scale=args.scale, degradation=args.degradation)


class Trainer:
    def __init__(self, args):
        self.args = args
        self.device = torch.device(args.device)
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.t_start = time.time()

        random.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)
        self.np_rng = np.random.default_rng(args.seed)

        self.cfg = make_config(args)
        if args.p_realistic > 0 and self.cfg.degradation != "kspace":
            raise SystemExit("--p-realistic needs --degradation kspace (a realistic acquisition "
                             "is a k-space one)")
        self.model = DeltaWKV(self.cfg, scan_impl=args.scan).to(self.device)
        self.ema = DeltaWKV(self.cfg, scan_impl=args.scan).to(self.device)
        self.ema.load_state_dict(self.model.state_dict())
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.n_params = count_parameters(self.model)
        # The fused optimiser on CUDA; torch < 2.0 (Debian 12's CPU build, used by CI's tests) has
        # no `fused` argument, so it is passed only where it applies.
        fused = {"fused": True} if self.device.type == "cuda" else {}
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=args.lr, betas=(0.9, 0.99),
                                     weight_decay=args.weight_decay, **fused)

        self.step = 0
        self.train_seconds = 0.0
        self.total_steps = args.total_steps
        self.best = {"psnr": -1.0, "step": -1, "weights": None}
        self.init_note = None
        self.history = []  # (step, mean train loss since the previous log line)
        # learning-rate schedule origin (step, trained seconds): moved by --restart-schedule
        self.sched_step0 = 0
        self.sched_seconds0 = 0.0

        self.crop_lr = args.lr_crop
        self.margin = args.margin
        self.sampler = None
        self.val = None
        self.baselines = None

        if args.resume and (Path(args.resume) / "model.pt").exists():
            self.load_state(Path(args.resume))
        elif args.init_from:
            self.init_from(Path(args.init_from))
        if args.restart_schedule and self.step > 0:
            # a new warm-up + cosine cycle from here, its length measured again
            self.sched_step0, self.sched_seconds0 = self.step, self.train_seconds
            self.total_steps = args.total_steps and self.step + args.total_steps
            print(f"schedule restarted at step {self.step} (peak lr {args.lr})")

        self.train_step_fn = self._train_step
        if args.compile and self.device.type == "cuda":
            compile_blocks(self.model)

    # ---- data ----------------------------------------------------------------------------

    def setup_data(self, data_dir: Path):
        vols = load_train(data_dir / "train.npz")
        crop = (self.crop_lr + 2 * self.margin) * self.cfg.scale
        self.sampler = TrainSampler(vols, crop, self.np_rng)
        self.val = load_val(data_dir / "val.npz", self.cfg.scale) if self.args.val_every else None

    def batch(self):
        """``(lr [B,1,P,P], hr [B,1,sP,sP])`` on the device, augmented and degraded."""
        a, s, P, m = self.args, self.cfg.scale, self.crop_lr, self.margin
        crops, averaged = self.sampler.sample(a.batch)
        B = crops.shape[0]
        rng = self.np_rng
        gamma = np.where(rng.random(B) < a.p_gamma, np.exp(rng.uniform(-0.25, 0.25, B)), 1.0)
        gain = np.where(rng.random(B) < a.p_gain, rng.uniform(0.75, 1.0, B), 1.0)
        p_noise = np.where(averaged, a.p_noise_avg, a.p_noise)
        sigma = np.where(rng.random(B) < p_noise, rng.uniform(0.0, a.noise_max, B), 0.0)
        hr = torch.from_numpy(crops).to(self.device, non_blocking=True).float().div_(255.0)
        hr = hr.unsqueeze(1)

        def col(x):
            return torch.from_numpy(x.astype(np.float32)).to(self.device).view(B, 1, 1, 1)

        hr = hr.clamp_min(0).pow(col(gamma)) * col(gain)
        # issue 17: domain randomisation (random contrast per intensity cluster, bias field) and
        # realistic acquisition of the LR (k-space noise, apodisation, partial Fourier), each on a
        # random subset of the batch; parameters from a generator seeded by np_rng, so that a
        # resumed run draws the same ones
        realistic = None
        if max(a.p_contrast, a.p_bias, a.p_realistic) > 0:
            from dwkv import acquire

            g = torch.Generator().manual_seed(int(rng.integers(2**62)))
            pick = {k: torch.rand(B, generator=g) < p
                    for k, p in (("contrast", a.p_contrast), ("bias", a.p_bias),
                                 ("realistic", a.p_realistic))}
            on = {k: v.to(self.device).view(B, 1, 1, 1) for k, v in pick.items()}
            if pick["contrast"].any():
                hr = torch.where(on["contrast"], acquire.random_contrast(hr, g), hr)
            if pick["bias"].any():
                field = acquire.bias_field(hr.shape, g, a.bias_strength, self.device)
                hr = torch.where(on["bias"], (hr * field).clamp(0.0, 1.0), hr)
            if pick["realistic"].any():
                realistic = (on["realistic"], acquire.draw_acquisition(
                    B, g, a.kspace_noise_max, a.p_window, a.p_partial_fourier), g)
        hr = hr + col(sigma) * torch.randn_like(hr)
        lr_big = degrade_batch(hr, s, self.cfg.degradation)
        if realistic is not None:
            mask, params, g = realistic
            lr_big = torch.where(mask, acquire.acquire_lr(hr, s, *params, g), lr_big)
        lr = lr_big[:, :, m:m + P, m:m + P]
        hr = hr[:, :, m * s:(m + P) * s, m * s:(m + P) * s]
        return lr.contiguous(), hr.contiguous()

    # ---- training ------------------------------------------------------------------------

    def _train_step(self, lr_img, hr_img):
        a = self.args
        amp = a.amp == "bf16" and self.device.type == "cuda"
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=amp):
            sr = self.model(lr_img)
        loss = F.l1_loss(sr.float(), hr_img)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), a.clip)
        self.opt.step()
        return loss, gn

    @torch.no_grad()
    def update_ema(self):
        d = min(self.args.ema_decay, (1 + self.step) / (10 + self.step))
        ep = [p for p in self.ema.parameters()]
        mp = [p.detach() for p in self.model.parameters()]
        if hasattr(torch, "_foreach_lerp_"):
            torch._foreach_lerp_(ep, mp, 1.0 - d)
        else:  # torch < 2.0 (Debian 12's CPU build, used by CI's tests)
            for e, m in zip(ep, mp):
                e.lerp_(m, 1.0 - d)

    def set_lr(self):
        a = self.args
        total = self.total_steps - self.sched_step0 if self.total_steps > 0 else 10**9
        lr = lr_at(self.step - self.sched_step0, a.lr, a.warmup, total, a.lr_floor)
        for g in self.opt.param_groups:
            g["lr"] = lr
        return lr

    # ---- init from another scale ----------------------------------------------------------

    def init_from(self, path: Path):
        """Copies every tensor of a checkpoint (safetensors or state dir) whose name and shape
        match this model (an x2 network into x4: everything but the second upsampling conv)."""
        if path.is_dir():
            sd = torch.load(path / "model.pt", map_location="cpu", weights_only=False)["model"]
        else:
            from safetensors import safe_open
            from safetensors.torch import load_file

            sd = load_file(str(path))
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            if meta.get("scale") == str(self.cfg.scale) and meta.get("steps", "").isdigit():
                # the same network continued (its optimiser state lost): keep counting its steps
                self.step = int(meta["steps"])
                print(f"continuing {path.name} from its step {self.step} (fresh optimiser)")
        own = self.model.state_dict()
        copied, skipped = [], []
        for k, v in own.items():
            if k in sd and tuple(sd[k].shape) == tuple(v.shape):
                own[k] = sd[k].to(v.dtype)
                copied.append(k)
            else:
                skipped.append(k)
        self.model.load_state_dict(own)
        self.ema.load_state_dict(own)
        self.init_note = {"from": str(path), "copied": len(copied), "kept_init": skipped}
        print(f"init from {path}: copied {len(copied)} tensors, kept initialisation for {skipped}")

    # ---- checkpoints ---------------------------------------------------------------------

    def rng_state(self):
        st = {
            "python": random.getstate(),
            "numpy_global": np.random.get_state(),
            "numpy": self.np_rng.bit_generator.state,
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            st["cuda"] = torch.cuda.get_rng_state_all()
        return st

    def set_rng_state(self, st):
        random.setstate(st["python"])
        np.random.set_state(st["numpy_global"])
        self.np_rng.bit_generator.state = st["numpy"]
        torch.set_rng_state(st["torch"])
        if "cuda" in st and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(st["cuda"])

    def save_state(self, d: Path):
        d.mkdir(parents=True, exist_ok=True)
        compact = self.args.state_precision == "compact"
        msd = {k: v.detach().cpu().clone() for k, v in self._raw_model().state_dict().items()}
        esd = {k: v.detach().cpu() for k, v in self.ema.state_dict().items()}
        if compact:
            esd = {k: (esd[k].float() - msd[k].float()).to(torch.bfloat16) for k in esd}
        osd = self.opt.state_dict()
        state = {}
        for pid, s in osd["state"].items():
            e = {"step": s["step"].cpu()}
            if compact:
                e["exp_avg"] = s["exp_avg"].cpu().to(torch.bfloat16)
                e["exp_avg_sq_sqrt"] = s["exp_avg_sq"].cpu().sqrt().to(torch.bfloat16)
            else:
                e["exp_avg"] = s["exp_avg"].cpu().clone()
                e["exp_avg_sq"] = s["exp_avg_sq"].cpu().clone()
            state[pid] = e
        meta = {
            "model": msd,
            "step": self.step,
            "train_seconds": self.train_seconds,
            "total_steps": self.total_steps,
            "best": self.best,
            "rng": self.rng_state(),
            "config": self.cfg.to_dict(),
            "args": vars(self.args),
            "compact": compact,
            "init_note": self.init_note,
            "sched_step0": self.sched_step0,
            "sched_seconds0": self.sched_seconds0,
        }
        for name, obj in (("model.pt", meta), ("ema.pt", {"ema": esd, "compact": compact}),
                          ("adam.pt", {"state": state, "param_groups": osd["param_groups"]})):
            tmp = d / (name + ".tmp")
            torch.save(obj, tmp)
            os.replace(tmp, d / name)

    def checkpoint(self):
        """State, plot and logs into ``--out``; copies of them into ``--mirror`` (the device
        call's $OUT: at most five files, what a device call brings back)."""
        self.save_state(self.out)
        self.plot()
        if not self.args.mirror:
            return
        m = Path(self.args.mirror)
        m.mkdir(parents=True, exist_ok=True)
        import tarfile

        tmp = m / "logs.tar.gz.tmp"
        with tarfile.open(tmp, "w:gz") as tf:
            for name in LOG_FILES:
                if (self.out / name).exists():
                    tf.add(self.out / name, arcname=name)
        os.replace(tmp, m / "logs.tar.gz")
        names = ["model.pt", "ema.pt", "adam.pt", f"best_x{self.cfg.scale}.safetensors"]
        for name in names:
            if (self.out / name).exists():
                shutil.copy(self.out / name, m / (name + ".tmp"))
                os.replace(m / (name + ".tmp"), m / name)

    def load_state(self, d: Path):
        meta = torch.load(d / "model.pt", map_location="cpu", weights_only=False)
        if meta["config"] != self.cfg.to_dict():
            raise SystemExit(f"{d}: checkpoint config {meta['config']} != {self.cfg.to_dict()}")
        self._raw_model().load_state_dict(meta["model"])
        e = torch.load(d / "ema.pt", map_location="cpu", weights_only=False)
        esd = e["ema"]
        if e["compact"]:
            esd = {k: meta["model"][k].float() + esd[k].float() for k in esd}
        self.ema.load_state_dict(esd)
        o = torch.load(d / "adam.pt", map_location="cpu", weights_only=False)
        state = {}
        for pid, s in o["state"].items():
            e = {"step": s["step"]}
            e["exp_avg"] = s["exp_avg"].float()
            if "exp_avg_sq" in s:
                e["exp_avg_sq"] = s["exp_avg_sq"].float()
            else:
                e["exp_avg_sq"] = s["exp_avg_sq_sqrt"].float().square()
            state[pid] = e
        self.opt.load_state_dict({"state": state, "param_groups": o["param_groups"]})
        self.step = meta["step"]
        self.train_seconds = meta["train_seconds"]
        self.total_steps = meta["total_steps"]
        self.best = meta["best"]
        self.init_note = meta.get("init_note")
        self.sched_step0 = meta.get("sched_step0", 0)
        self.sched_seconds0 = meta.get("sched_seconds0", 0.0)
        self._pending_rng = meta["rng"]
        print(f"resumed from {d} at step {self.step} (total {self.total_steps}, "
              f"{self.train_seconds:.0f} s trained, best {self.best})")

    def _raw_model(self):
        return self.model

    # ---- validation ----------------------------------------------------------------------

    @torch.no_grad()
    def validate(self):
        """Val metrics of the raw and EMA weights (float32, no autocast), and the baselines.

        LR slices and baselines come from the numpy twins of the Rust degradations
        (``dwkv.degrade.degrade`` / ``upsample``), exactly what ``deltawkv eval`` computes."""
        from dwkv import degrade, metrics

        s, deg = self.cfg.scale, self.cfg.degradation
        if self.baselines is None:
            self.baselines, self.val_lr = {}, []
            for vol in self.val:
                lrs = np.stack([degrade.degrade(sl, s, deg) for sl in vol.hr]).astype(np.float32)
                self.val_lr.append(torch.from_numpy(lrs).unsqueeze(1))
                res = {}
                for method in ("zerofill", "bicubic", "nearest"):
                    ups = [np.clip(degrade.upsample(x, s, method, deg), 0.0, 1.0) for x in lrs]
                    r = metrics.volume_metrics(vol.hr, ups, 1.0)
                    res[method] = (r["psnr"], r["ssim"])
                self.baselines[vol.name] = res
        protocols = [("", self.val_lr, self.baselines)]
        if self.args.val_realistic:
            protocols.append(("-realistic", *self.realistic_val()))
        results, per_volume = {}, {}
        # torch.compiler (and its set_stance) is missing from older torch, e.g. Debian 12's
        stance = getattr(getattr(torch, "compiler", None), "set_stance", None)
        for suffix, val_lr, _ in protocols:
            for name, net in (("raw", self.model), ("ema", self.ema)):
                tag = name + suffix
                was_training = net.training
                net.eval()
                per_volume[tag] = {}
                with (stance("force_eager") if stance is not None else _null()):
                    for vol, lr in zip(self.val, val_lr):
                        outs = []
                        for i in range(0, lr.shape[0], self.args.val_batch):
                            y = net(lr[i:i + self.args.val_batch].to(self.device))
                            outs.append(y.float().clamp(0, 1).cpu())
                        sr = torch.cat(outs).squeeze(1).numpy()
                        r = metrics.volume_metrics(vol.hr, sr, 1.0)
                        per_volume[tag][vol.name] = (r["psnr"], r["ssim"])
                net.train(was_training)
                vals = list(per_volume[tag].values())
                results[tag] = (float(np.mean([v[0] for v in vals])),
                                float(np.mean([v[1] for v in vals])))
        rows = []
        for suffix, _, baselines in protocols:
            base = {m: (float(np.mean([baselines[v.name][m][0] for v in self.val])),
                        float(np.mean([baselines[v.name][m][1] for v in self.val])))
                    for m in ("zerofill", "bicubic", "nearest")}
            for name in ("raw", "ema"):
                tag = name + suffix
                row = {"step": self.step, "weights": tag, "psnr": results[tag][0],
                       "ssim": results[tag][1]}
                for m in base:
                    row[f"{m}_psnr"], row[f"{m}_ssim"] = base[m]
                rows.append(row)
        detail = {"step": self.step, "per_volume": per_volume, "baselines": self.baselines}
        if self.args.val_realistic:
            detail["baselines_realistic"] = self.realistic_baselines
        return rows, detail

    def realistic_val(self):
        """The val LRs acquired realistically with ``deltawkv eval --realistic``'s defaults
        (k-space noise 0.02, Tukey window 0.25, full k-space; fixed seed, so every validation
        sees the same noise) and their baselines: how the network does on noisy, filtered
        acquisitions, beside the standard protocol (the checkpoint is still selected on that)."""
        from dwkv import acquire, degrade, metrics

        s, deg = self.cfg.scale, self.cfg.degradation
        if deg != "kspace":
            raise SystemExit("--val-realistic needs --degradation kspace")
        if getattr(self, "val_lr_realistic", None) is None:
            g = torch.Generator().manual_seed(0)
            self.val_lr_realistic, self.realistic_baselines = [], {}
            for vol in self.val:
                hr = torch.from_numpy(np.stack(vol.hr).astype(np.float32)).unsqueeze(1)
                b = hr.shape[0]
                lr = acquire.acquire_lr(hr, s, torch.full((b,), 0.02), torch.full((b,), 0.25),
                                        torch.zeros(b), torch.zeros(b), torch.ones(b, dtype=bool),
                                        g)
                self.val_lr_realistic.append(lr)
                res = {}
                for method in ("zerofill", "bicubic", "nearest"):
                    ups = [np.clip(degrade.upsample(x, s, method, deg), 0.0, 1.0)
                           for x in lr.squeeze(1).numpy()]
                    r = metrics.volume_metrics(vol.hr, ups, 1.0)
                    res[method] = (r["psnr"], r["ssim"])
                self.realistic_baselines[vol.name] = res
        return self.val_lr_realistic, self.realistic_baselines

    # ---- export --------------------------------------------------------------------------

    def export(self, net, path: Path, psnr: float, ssim: float):
        from dwkv.checkpoint import export_checkpoint

        tmp = path.with_name(path.name + ".tmp")
        export_checkpoint(net, tmp, trained_on=self.args.trained_on, steps=self.step,
                          val_psnr=f"{psnr:.4f}", val_ssim=f"{ssim:.5f}")
        os.replace(tmp, path)

    # ---- main loop -------------------------------------------------------------------------

    def run(self):
        a = self.args
        self.setup_data(Path(a.data))
        if getattr(self, "_pending_rng", None) is not None:
            self.set_rng_state(self._pending_rng)
            self._pending_rng = None
        train_csv = self.out / "train_log.csv"
        val_csv = self.out / "val_log.csv"
        detail_path = self.out / "val_detail.jsonl"
        if a.resume and Path(a.resume).resolve() != self.out.resolve():
            src_dir = Path(a.resume)
            if (src_dir / "logs.tar.gz").exists() and not (src_dir / "train_log.csv").exists():
                import tarfile

                with tarfile.open(src_dir / "logs.tar.gz") as tf:
                    tf.extractall(self.out, filter="data")
            for name in LOG_FILES[:3]:
                if (src_dir / name).exists():
                    shutil.copy(src_dir / name, self.out / name)
        for path, fields in ((train_csv, TRAIN_FIELDS), (val_csv, VAL_FIELDS)):
            if not path.exists():
                with open(path, "w", newline="") as f:
                    csv.writer(f).writerow(fields)

        print(f"model: {self.n_params} parameters, config {self.cfg.to_dict()}, scan {a.scan}, "
              f"compile {a.compile}, amp {a.amp}, batch {a.batch}, LR crop {self.crop_lr}")
        deadline = self.t_start + a.time_limit - a.reserve
        last_ckpt = time.time()
        cuda = self.device.type == "cuda"

        def sync():
            if cuda:
                torch.cuda.synchronize()

        # Timing window: training steps only (no val, checkpoints, or the first --skip-timing
        # steps of a run, which include compilation and autotuning).
        win = {"t": None, "step": 0}

        def close_window():
            if win["t"] is None:
                return float("nan")
            sync()
            dt = time.time() - win["t"]
            n = self.step - win["step"]
            self.train_seconds += dt
            win["t"] = None
            return n / dt if dt > 0 and n > 0 else float("nan")

        def open_window():
            sync()
            win["t"], win["step"] = time.time(), self.step

        loss_sum, gn_sum, acc_n = None, None, 0
        run_steps = 0
        timing = False
        while True:
            if time.time() >= deadline or (self.total_steps > 0 and self.step >= self.total_steps) \
                    or (a.max_steps and run_steps >= a.max_steps):
                break
            lr = self.set_lr()
            lr_img, hr_img = self.batch()
            if run_steps == 0 and a.compile:
                try:
                    loss, gn = self.train_step_fn(lr_img, hr_img)
                except Exception as e:  # noqa: BLE001 - fall back to eager, keep training
                    print(f"torch.compile failed ({type(e).__name__}: {e}); running eager",
                          flush=True)
                    for blk in self.model.blocks():
                        blk.__dict__.pop("forward", None)
                    loss, gn = self.train_step_fn(lr_img, hr_img)
            else:
                loss, gn = self.train_step_fn(lr_img, hr_img)
            self.update_ema()
            self.step += 1
            run_steps += 1
            loss_sum = loss.detach() if acc_n == 0 else loss_sum + loss.detach()
            gn_sum = gn.detach() if acc_n == 0 else gn_sum + gn.detach()
            acc_n += 1
            if run_steps == a.skip_timing:
                open_window()
                timing = True
            if run_steps % a.log_every == 0 or run_steps == 1:
                sps = close_window()
                loss_mean = float(loss_sum) / acc_n
                gn_mean = float(gn_sum) / acc_n
                self.history.append((self.step, loss_mean))
                if timing:
                    open_window()
                if self.total_steps == 0 and timing and run_steps >= a.skip_timing + 40 \
                        and sps == sps:
                    remaining = max(a.train_seconds - (self.train_seconds - self.sched_seconds0), 0)
                    self.total_steps = self.step + int(sps * remaining)
                    print(f"measured {sps:.2f} steps/s: schedule length set to "
                          f"{self.total_steps} steps", flush=True)
                with open(train_csv, "a", newline="") as f:
                    csv.writer(f).writerow([self.step, f"{loss_mean:.6f}", f"{lr:.3e}",
                                            f"{gn_mean:.4f}", f"{sps:.4f}",
                                            f"{sps * a.batch:.2f}", f"{self.train_seconds:.1f}"])
                print(f"step {self.step} loss {loss_mean:.5f} lr {lr:.2e} gn {gn_mean:.3f} "
                      f"{sps:.2f} it/s wall {(time.time() - self.t_start):.0f}s", flush=True)
                acc_n = 0
            pause = (a.val_every and self.step % a.val_every == 0) or \
                time.time() - last_ckpt >= a.ckpt_every
            if pause:
                close_window()
                if a.val_every and self.step % a.val_every == 0:
                    self.do_val(val_csv, detail_path)
                if time.time() - last_ckpt >= a.ckpt_every:
                    self.checkpoint()
                    last_ckpt = time.time()
                if timing:
                    open_window()
        close_window()
        if a.val_every and not (self.step % a.val_every == 0 and run_steps > 0):
            self.do_val(val_csv, detail_path)
        self.checkpoint()
        print(f"done: step {self.step}, {self.train_seconds:.0f} s trained, best {self.best}, "
              f"wall {time.time() - self.t_start:.0f} s", flush=True)

    def do_val(self, val_csv: Path, detail_path: Path):
        t = time.time()
        rows, detail = self.validate()
        with open(val_csv, "a", newline="") as f:
            w = csv.writer(f)
            for r in rows:
                w.writerow([r[k] if not isinstance(r[k], float) else f"{r[k]:.5f}"
                            for k in VAL_FIELDS])
        with open(detail_path, "a") as f:
            f.write(json.dumps(detail) + "\n")
        std = [r for r in rows if r["weights"] in ("raw", "ema")]
        msg = " ".join(f"{r['weights']} {r['psnr']:.3f}/{r['ssim']:.4f}" for r in std)
        r0 = rows[0]
        print(f"val step {self.step}: {msg} | zerofill {r0['zerofill_psnr']:.3f}/"
              f"{r0['zerofill_ssim']:.4f} bicubic {r0['bicubic_psnr']:.3f}/{r0['bicubic_ssim']:.4f}"
              f" nearest {r0['nearest_psnr']:.3f} ({time.time() - t:.1f} s)", flush=True)
        real = [r for r in rows if r["weights"].endswith("-realistic")]
        if real:
            msg = " ".join(f"{r['weights']} {r['psnr']:.3f}/{r['ssim']:.4f}" for r in real)
            print(f"val step {self.step} (realistic acquisition): {msg} | zerofill "
                  f"{real[0]['zerofill_psnr']:.3f}/{real[0]['zerofill_ssim']:.4f}", flush=True)
        for r in rows:
            if r["weights"] in ("raw", "ema") and r["psnr"] > self.best["psnr"]:
                self.best = {"psnr": r["psnr"], "ssim": r["ssim"], "step": self.step,
                             "weights": r["weights"]}
                net = self.model if r["weights"] == "raw" else self.ema
                if self.args.export:
                    self.export(net, self.out / f"best_x{self.cfg.scale}.safetensors",
                                r["psnr"], r["ssim"])

    def plot(self):
        try:
            plot_logs(self.out, self.out / "plot.png", self.cfg.scale)
        except Exception as e:  # noqa: BLE001 - a missing matplotlib must not stop training
            print(f"plot skipped: {e}")


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def plot_logs(d: Path, png: Path, scale: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tr = list(csv.DictReader(open(d / "train_log.csv")))
    va = list(csv.DictReader(open(d / "val_log.csv"))) if (d / "val_log.csv").exists() else []
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.5))
    if tr:
        st = np.array([float(r["step"]) for r in tr])
        lo = np.array([float(r["loss"]) for r in tr])
        ax[0].plot(st, lo, lw=0.8)
        ax[0].set_yscale("log")
        ax[0].set_xlabel("step")
        ax[0].set_ylabel("train L1 loss")
        ax[0].set_title(f"x{scale} training loss")
        ax[0].grid(alpha=0.3)
    if va:
        for tag, style in (("raw", "-o"), ("ema", "-s")):
            rs = [r for r in va if r["weights"] == tag]
            ax[1].plot([int(r["step"]) for r in rs], [float(r["psnr"]) for r in rs], style,
                       ms=3, label=f"SR ({tag})")
        last = va[-1]
        for m, c in (("zerofill", "k"), ("bicubic", "gray"), ("nearest", "lightgray")):
            ax[1].axhline(float(last[f"{m}_psnr"]), color=c, ls="--", label=m)
        ax[1].set_xlabel("step")
        ax[1].set_ylabel("val PSNR (dB, data range 1)")
        ax[1].set_title(f"x{scale} validation (mean over volumes)")
        ax[1].legend()
        ax[1].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="Train Delta-WKV (DWKV-3M) for MRI SR.")
    ap.add_argument("--scale", type=int, default=2, choices=(2, 4))
    ap.add_argument("--degradation", default="kspace", choices=("kspace", "bicubic"))
    ap.add_argument("--data", default=str(HERE.parent / ".devdata"))
    ap.add_argument("--out", required=True, help="state/log directory written by this run")
    ap.add_argument("--mirror", default=None,
                    help="directory that receives copies of state, best weights and logs")
    ap.add_argument("--resume", default=None, help="state directory to continue from")
    ap.add_argument("--init-from", default=None,
                    help="safetensors (or state dir) of another scale to initialise from")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--scan", default="fla", help="scan implementation (fla, chunked, loop)")
    ap.add_argument("--compile", action="store_true", help="torch.compile each block")
    ap.add_argument("--amp", default="bf16", choices=("bf16", "none"))
    ap.add_argument("--tiny", action="store_true", help="tiny network (CPU smoke tests)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr-crop", type=int, default=64, help="LR crop side (HR = scale x this)")
    ap.add_argument("--margin", type=int, default=8,
                    help="LR pixels degraded around the crop and then discarded")
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--lr-floor", type=float, default=0.02)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--total-steps", type=int, default=0,
                    help="schedule length; 0: measured steps/s x --train-seconds")
    ap.add_argument("--train-seconds", type=float, default=850.0)
    ap.add_argument("--restart-schedule", action="store_true",
                    help="on resume: start a new warm-up + cosine cycle (--lr, --warmup, "
                         "--total-steps or --train-seconds) from the resumed step")
    ap.add_argument("--max-steps", type=int, default=0, help="stop this run after N steps")
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--ema-decay", type=float, default=0.998)
    ap.add_argument("--p-gamma", type=float, default=0.5)
    ap.add_argument("--p-gain", type=float, default=0.5)
    ap.add_argument("--p-noise", type=float, default=0.5)
    ap.add_argument("--p-noise-avg", type=float, default=0.9)
    ap.add_argument("--noise-max", type=float, default=0.02)
    ap.add_argument("--p-contrast", type=float, default=0.0,
                    help="fraction of crops given a random contrast (dwkv.acquire)")
    ap.add_argument("--p-bias", type=float, default=0.0,
                    help="fraction of crops given a random smooth bias field")
    ap.add_argument("--bias-strength", type=float, default=0.3,
                    help="largest |log| of the bias field")
    ap.add_argument("--p-realistic", type=float, default=0.0,
                    help="fraction of LR crops acquired realistically (k-space noise, window, "
                         "partial Fourier) instead of plain k-space truncation")
    ap.add_argument("--kspace-noise-max", type=float, default=0.03,
                    help="largest image-domain noise std of a realistic acquisition")
    ap.add_argument("--p-window", type=float, default=0.5,
                    help="fraction of realistic acquisitions with a Tukey k-space window")
    ap.add_argument("--p-partial-fourier", type=float, default=0.3,
                    help="fraction of realistic acquisitions with partial Fourier")
    ap.add_argument("--val-every", type=int, default=500)
    ap.add_argument("--val-realistic", action="store_true",
                    help="also validate on realistically acquired LRs (deltawkv eval --realistic's"
                         " defaults, fixed noise); rows `raw-realistic`, `ema-realistic` in "
                         "val_log.csv, never used to select the checkpoint")
    ap.add_argument("--val-batch", type=int, default=8)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--skip-timing", type=int, default=10)
    ap.add_argument("--ckpt-every", type=float, default=150.0, help="seconds between checkpoints")
    ap.add_argument("--time-limit", type=float, default=540.0, help="wall seconds for this run")
    ap.add_argument("--reserve", type=float, default=25.0,
                    help="seconds kept before --time-limit for the last val and checkpoint")
    ap.add_argument("--state-precision", default="compact", choices=("compact", "full"))
    ap.add_argument("--export", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--trained-on", default="shared/data/train (16 MRI volumes, see weights/README.md)")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    if args.scan == "fla":
        import dwkv.scan_fla  # noqa: F401  (registers "fla")
    trainer = Trainer(args)
    trainer.run()
    return trainer


if __name__ == "__main__":
    main()
