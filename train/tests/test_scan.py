"""Scan implementations: chunked == loop, loop == the spec's recurrence, scan orders."""

import math
import sys
import time
from pathlib import Path

import pytest

try:  # skip (not fail) where torch is absent or cannot load (e.g. missing CUDA libraries)
    import torch
except ImportError as e:
    pytest.skip(f"torch not importable: {e}", allow_module_level=True)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dwkv.scan import (  # noqa: E402
    available_scans,
    delta_scan,
    from_scan_order,
    get_scan,
    register_scan,
    scan_chunked,
    scan_loop,
    scan_order,
    to_scan_order,
)


def random_inputs(B, H, L, N, dtype=torch.float64, seed=0):
    """Inputs in the ranges the model produces: unit-norm kk, a in (0,1), decay in (0.545, 1)."""
    g = torch.Generator().manual_seed(seed)

    def rn(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64)

    def ru(*s):
        return torch.rand(*s, generator=g, dtype=torch.float64)

    shape = (B, H, L, N)
    r = rn(*shape)
    k = rn(*shape)
    kk = torch.nn.functional.normalize(k, dim=-1)
    a = ru(*shape)
    log_decay = -math.exp(-0.5) * ru(*shape)
    decay = log_decay.exp()
    kt = k * (1 + (a - 1) * ru(*shape))
    v = rn(*shape)
    out = dict(r=r, decay=decay, kk=kk, a=a, kt=kt, v=v, log_decay=log_decay)
    return {k_: t.to(dtype) for k_, t in out.items()}


def rel(y, ref):
    return ((y.double() - ref.double()).norm() / ref.double().norm()).item()


def test_loop_matches_spec_recurrence_elementwise():
    """The loop against a literal transcription of the spec (scalar loops over i, j)."""
    x = random_inputs(1, 1, 6, 3, seed=1)
    y = scan_loop(x["r"], x["decay"], x["kk"], x["a"], x["kt"], x["v"])
    N = 3
    S = [[0.0] * N for _ in range(N)]
    for t in range(6):
        kk = x["kk"][0, 0, t].tolist()
        lam = x["decay"][0, 0, t].tolist()
        a = x["a"][0, 0, t].tolist()
        kt = x["kt"][0, 0, t].tolist()
        v = x["v"][0, 0, t].tolist()
        r = x["r"][0, 0, t].tolist()
        sa = [sum(S[i][j] * kk[j] for j in range(N)) for i in range(N)]
        S = [[S[i][j] * lam[j] - sa[i] * (a[j] * kk[j]) + v[i] * kt[j] for j in range(N)]
             for i in range(N)]
        for i in range(N):
            want = sum(S[i][j] * r[j] for j in range(N))
            assert abs(y[0, 0, t, i].item() - want) < 1e-12


@pytest.mark.parametrize("L", [1, 5, 16, 31, 32, 33, 64, 100, 257, 700])
@pytest.mark.parametrize("chunk", [8, 16, 32, 64])
@pytest.mark.parametrize("across", ["doubling", "sequential"])
def test_chunked_equals_loop_float64(L, chunk, across):
    x = random_inputs(2, 3, L, 8, seed=L)
    ref = scan_loop(x["r"], x["decay"], x["kk"], x["a"], x["kt"], x["v"])
    y = scan_chunked(x["r"], x["decay"], x["kk"], x["a"], x["kt"], x["v"],
                     log_decay=x["log_decay"], chunk=chunk, across=across)
    assert y.shape == ref.shape
    assert rel(y, ref) < 1e-10
    # without log_decay (computed from decay) too
    y2 = scan_chunked(x["r"], x["decay"], x["kk"], x["a"], x["kt"], x["v"], chunk=chunk)
    assert rel(y2, ref) < 1e-10


_REF_CACHE = {}


def _f64_problem(L):
    if L not in _REF_CACHE:
        x = random_inputs(1, 2, L, 32, seed=10 + L)
        _REF_CACHE[L] = (x, scan_loop(x["r"], x["decay"], x["kk"], x["a"], x["kt"], x["v"]))
    return _REF_CACHE[L]


@pytest.mark.parametrize("L,chunk,across", [
    (L, c, ac) for L in (7, 100, 1024) for c in (16, 32, 64) for ac in ("doubling", "sequential")
] + [(4096, 64, "doubling")])
def test_chunked_float32_close_to_float64_loop(L, chunk, across):
    x, ref = _f64_problem(L)
    x32 = {k: t.float() for k, t in x.items()}
    y = scan_chunked(x32["r"], x32["decay"], x32["kk"], x32["a"], x32["kt"], x32["v"],
                     log_decay=x32["log_decay"], chunk=chunk, across=across)
    assert y.dtype == torch.float32
    assert rel(y, ref) < 1e-5


def test_chunked_half_inputs_run_in_float32():
    x = random_inputs(1, 2, 100, 16, seed=4)
    names = ["r", "decay", "kk", "a", "kt", "v"]
    xb = [x[n].to(torch.bfloat16) for n in names]
    ref = scan_loop(*[t.double() for t in xb])  # exact reference on the rounded inputs
    y = scan_chunked(*xb)
    assert y.dtype == torch.bfloat16
    assert rel(y, ref) < 1e-2  # bf16 output rounding only (the scan itself ran in float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y32 = scan_chunked(*[t.float() for t in xb])
    assert y32.dtype == torch.float32 and rel(y32, ref) < 1e-5


def test_chunked_gradients_match_loop():
    x = random_inputs(1, 2, 45, 4, seed=3)
    names = ["r", "decay", "kk", "a", "kt", "v"]
    grads = []
    for fn, kw in ((scan_loop, {}), (scan_chunked, {"chunk": 8}),
                   (scan_chunked, {"chunk": 16, "across": "sequential"}),
                   (scan_chunked, {"chunk": 8, "recompute": True})):
        leaves = {n: x[n].clone().requires_grad_(True) for n in names}
        y = fn(*[leaves[n] for n in names], **kw)
        weight = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)
        (y * weight).sum().backward()
        grads.append({n: leaves[n].grad for n in names})
    for n in names:
        assert rel(grads[1][n], grads[0][n]) < 1e-9, n
        assert rel(grads[2][n], grads[0][n]) < 1e-9, n
        assert rel(grads[3][n], grads[0][n]) < 1e-9, n


def test_state_does_not_carry_between_batch_entries():
    x = random_inputs(2, 1, 20, 4, seed=5)
    y = scan_chunked(x["r"], x["decay"], x["kk"], x["a"], x["kt"], x["v"], chunk=8)
    y1 = scan_chunked(*(x[n][1:] for n in ["r", "decay", "kk", "a", "kt", "v"]), chunk=8)
    assert rel(y[1:], y1) < 1e-12


def test_registry_and_dispatch():
    assert {"loop", "chunked", "chunked_lowmem"} <= set(available_scans())
    x = random_inputs(1, 1, 10, 4, seed=7)
    args = [x[n] for n in ["r", "decay", "kk", "a", "kt", "v"]]
    ref = scan_loop(*args)
    assert rel(delta_scan(*args, impl="chunked"), ref) < 1e-12
    assert rel(delta_scan(*args, impl=scan_chunked, chunk=4), ref) < 1e-12
    assert rel(delta_scan(*args, impl="chunked_lowmem", chunk=4), ref) < 1e-12
    calls = []

    def spy(r, decay, kk, a, kt, v, *, log_decay=None):
        calls.append(log_decay is not None)
        return scan_loop(r, decay, kk, a, kt, v)

    register_scan("test-spy", spy, overwrite=True)
    assert rel(delta_scan(*args, impl="test-spy", log_decay=x["log_decay"]), ref) == 0.0
    assert calls == [True]
    with pytest.raises(ValueError):
        register_scan("test-spy", spy)
    with pytest.raises(KeyError, match="unknown scan"):
        get_scan("no-such-scan")
    with pytest.raises(ValueError, match="shape"):
        scan_loop(args[0], args[1][..., :2], *args[2:])


# Spec table, non-square h=3, w=4 (p = row*w + col):
#   image   0  1  2  3
#           4  5  6  7
#           8  9 10 11
SPEC_ORDERS_3x4 = {
    0: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
    1: [11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
    2: [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11],
    3: [11, 7, 3, 10, 6, 2, 9, 5, 1, 8, 4, 0],
}


@pytest.mark.parametrize("d", range(4))
def test_scan_order_matches_spec_table(d):
    assert scan_order(3, 4, d).tolist() == SPEC_ORDERS_3x4[d]
    # the formula of the spec's table on another non-square size
    h, w = 5, 3
    L = h * w

    def pi2(t):
        return (t % h) * w + t // h

    want = {0: [t for t in range(L)], 1: [L - 1 - t for t in range(L)],
            2: [pi2(t) for t in range(L)], 3: [pi2(L - 1 - t) for t in range(L)]}[d]
    assert scan_order(h, w, d).tolist() == want


@pytest.mark.parametrize("d", range(4))
@pytest.mark.parametrize("hw", [(3, 4), (4, 3), (5, 7), (1, 6), (6, 1)])
def test_to_and_from_scan_order(d, hw):
    h, w = hw
    x = torch.randn(2, 3, h * w, 5, dtype=torch.float64)
    perm = scan_order(h, w, d)
    xs = to_scan_order(x, h, w, d)
    assert torch.equal(xs, x[:, :, perm])
    assert torch.equal(from_scan_order(xs, h, w, d), x)


def test_timing_report(capsys):
    """Not a correctness test: prints loop vs chunked timings (float32, CPU) for the record."""
    x = random_inputs(4, 3, 1024, 32, dtype=torch.float32, seed=11)
    args = [x[n] for n in ["r", "decay", "kk", "a", "kt", "v"]]
    t0 = time.perf_counter()
    ref = scan_loop(*args)
    t1 = time.perf_counter()
    y = scan_chunked(*args, log_decay=x["log_decay"])
    t2 = time.perf_counter()
    with capsys.disabled():
        print(f"\n[scan timing B*H=12 L=1024 N=32 f32 CPU] loop {t1 - t0:.3f}s, "
              f"chunked {t2 - t1:.3f}s, rel diff {rel(y, ref):.2e}")
    assert rel(y, ref) < 1e-5


def test_golden_scan_direction_vectors():
    """tests/data/golden/scan_dirs.safetensors against the spec's pi_d written out literally."""
    pytest.importorskip("safetensors")
    from safetensors import safe_open

    path = Path(__file__).resolve().parents[2] / "tests" / "data" / "golden" / "scan_dirs.safetensors"
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        vec = {k: f.get_tensor(k) for k in f.keys()}
    h, w, H, N = (int(meta[k]) for k in ("h", "w", "heads", "head_size"))
    L = h * w

    def pi(d, t):
        if d == 0:
            return t
        if d == 1:
            return L - 1 - t
        if d == 2:
            return (t % h) * w + t // h
        return pi(2, L - 1 - t)

    names = ["dir0_rows_forward", "dir1_rows_backward", "dir2_cols_forward", "dir3_cols_backward"]
    total = torch.zeros(L, H * N, dtype=torch.float64)
    for d, name in enumerate(names):
        order = [pi(d, t) for t in range(L)]
        ins = [vec[f"scan.{n}"][order].view(L, H, N).permute(1, 0, 2)[None]
               for n in ["r", "decay", "kk", "a", "kt", "v"]]
        y = scan_loop(*ins)[0].permute(1, 0, 2).reshape(L, H * N)
        canon = torch.empty_like(y)
        canon[order] = y
        assert torch.allclose(canon, vec[f"scan.y.{name}"], rtol=0, atol=1e-12), name
        total += canon
    assert torch.allclose(total, vec["scan.y.sum"], rtol=0, atol=1e-12)
    # the four directions really differ (a swapped direction cannot pass)
    for i in range(4):
        for j in range(i + 1, 4):
            assert (vec[f"scan.y.{names[i]}"] - vec[f"scan.y.{names[j]}"]).abs().max() > 0.1
