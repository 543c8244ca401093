"""The PyTorch reference against the spec: names, sizes, initialisation, and a literal
token-by-token transcription of the spec's forward pass."""

import math
import sys
from pathlib import Path

import pytest

try:  # skip (not fail) where torch is absent or cannot load (e.g. missing CUDA libraries)
    import torch
except ImportError as e:
    pytest.skip(f"torch not importable: {e}", allow_module_level=True)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch.nn.functional as F  # noqa: E402

from dwkv.model import DeltaWKV, ModelConfig, count_parameters, token_shift, shift_quarter  # noqa: E402

SMALL = dict(dim=16, head_size=8, groups=2, blocks_per_group=2, ffn_ratio=2,
             lora_rank_w=4, lora_rank_a=3, lora_rank_v=5, lora_rank_g=6)


def spec_names(cfg: ModelConfig):
    """The checkpoint tensor names listed in the spec, for ``cfg``."""
    names = ["conv_first.weight", "conv_first.bias", "patch_norm.weight", "patch_norm.bias"]
    for g in range(cfg.groups):
        for b in range(cfg.blocks_per_group):
            first = g == 0 and b == 0
            p = f"groups.{g}.blocks.{b}."
            names += [p + "ln1.weight", p + "ln1.bias", p + "ln2.weight", p + "ln2.bias"]
            att = ["mu_r", "mu_w", "mu_k", "mu_v", "mu_a", "mu_g", "w0", "a0", "w1", "w2", "a1",
                   "a2", "g1", "g2", "k_k", "k_a", "r_k", "receptance.weight", "key.weight",
                   "value.weight", "output.weight", "ln_x.weight", "ln_x.bias"]
            if not first:
                att += ["v0", "v1", "v2"]
            names += [p + "att." + n for n in att]
            names += [p + "ffn.mu_k", p + "ffn.key.weight", p + "ffn.value.weight"]
        names += [f"groups.{g}.conv.weight", f"groups.{g}.conv.bias"]
    names += ["norm.weight", "norm.bias", "conv_after_body.weight", "conv_after_body.bias",
              "conv_before_upsample.weight", "conv_before_upsample.bias"]
    for i in range(int(math.log2(cfg.scale))):
        names += [f"upsample.{i}.weight", f"upsample.{i}.bias"]
    names += ["conv_last.weight", "conv_last.bias"]
    return names


@pytest.mark.parametrize("scale,total", [(2, 3_017_025), (4, 3_164_737)])
def test_parameter_count_default(scale, total):
    m = DeltaWKV(ModelConfig(scale=scale))
    assert count_parameters(m) == total
    blocks = m.blocks()
    assert len(blocks) == 24
    assert sum(p.numel() for p in blocks[0].parameters()) == 93_888
    for blk in blocks[1:]:
        assert sum(p.numel() for p in blk.parameters()) == 100_128


@pytest.mark.parametrize("scale", [2, 4])
def test_state_dict_names_and_shapes_follow_spec(scale):
    cfg = ModelConfig(scale=scale)
    sd = DeltaWKV(cfg).state_dict()
    assert sorted(sd) == sorted(spec_names(cfg))
    C, R, H, N = 96, 32, 3, 32
    p = "groups.1.blocks.3."
    assert sd[p + "att.r_k"].shape == (H, N)
    assert sd[p + "att.w1"].shape == (C, R) and sd[p + "att.w2"].shape == (R, C)
    assert sd[p + "att.v1"].shape == (C, R) and sd[p + "att.v2"].shape == (R, C)
    assert sd[p + "att.receptance.weight"].shape == (C, C)
    assert sd[p + "ffn.key.weight"].shape == (2 * C, C)
    assert sd[p + "ffn.value.weight"].shape == (C, 2 * C)
    assert sd["conv_first.weight"].shape == (C, 1, 3, 3)
    assert sd["conv_before_upsample.weight"].shape == (64, C, 3, 3)
    assert sd["upsample.0.weight"].shape == (256, 64, 3, 3)
    assert sd["conv_last.weight"].shape == (1, 64, 3, 3)
    assert all(t.dtype == torch.float32 for t in sd.values())


def test_small_config_names_and_lora_ranks():
    cfg = ModelConfig(scale=2, **SMALL)
    sd = DeltaWKV(cfg).state_dict()
    assert sorted(sd) == sorted(spec_names(cfg))
    assert sd["groups.0.blocks.0.att.w1"].shape == (16, 4)
    assert sd["groups.0.blocks.0.att.a2"].shape == (3, 16)
    assert sd["groups.0.blocks.1.att.v1"].shape == (16, 5)
    assert sd["groups.1.blocks.0.att.g2"].shape == (6, 16)
    assert sd["groups.0.blocks.0.att.r_k"].shape == (2, 8)


def test_initialisation_values():
    torch.manual_seed(0)
    cfg = ModelConfig(scale=2)
    m = DeltaWKV(cfg)
    n_layer, C = 24, 96
    ddd = torch.arange(C, dtype=torch.float64) / C
    i = torch.arange(C, dtype=torch.float64)
    for blk in m.blocks():
        l = blk.layer_id
        r0, r1 = l / (n_layer - 1), 1 - l / n_layer
        att = blk.att

        def close(p, want):
            assert torch.allclose(p.double(), want, atol=1e-6), (l, p)

        close(att.mu_r, 1 - ddd ** (0.2 * r1))
        close(att.mu_w, 1 - ddd ** (0.9 * r1))
        close(att.mu_k, 1 - (ddd ** (0.9 * r1) + 0.4 * r0))
        close(att.mu_v, 1 - (ddd ** (0.4 * r1) + 0.6 * r0))
        close(att.mu_a, 1 - ddd ** (0.9 * r1))
        close(att.mu_g, 1 - ddd ** (0.2 * r1))
        close(att.w0, -7 + 5 * (i / (C - 1)) ** (0.85 + math.sqrt(r0)) + 0.5)
        close(blk.ffn.mu_k, 1 - ddd ** (r1 ** 4))
        assert torch.all(att.a0 == 0) and torch.all(att.k_k == 0.85) and torch.all(att.k_a == 1)
        assert torch.all(att.r_k == 0) and torch.all(att.output.weight == 0)
        assert torch.all(blk.ffn.value.weight == 0)
        downs = [att.w1, att.a1, att.g1] + ([att.v1] if l > 0 else [])
        ups = [att.w2, att.a2, att.g2] + ([att.v2] if l > 0 else [])
        assert all(torch.all(p == 0) for p in downs)
        for p in ups:  # orthogonal rows with gain 0.1: p p^T = 0.01 I (R <= C)
            assert torch.allclose(p @ p.T, 0.01 * torch.eye(p.shape[0]), atol=1e-5)
        if l > 0:
            assert torch.all(att.v0 == 1)
        b = 0.5 / math.sqrt(C)
        assert att.receptance.weight.abs().max() <= b and att.value.weight.abs().max() <= b
        assert att.key.weight.abs().max() <= 0.1 * b
        assert att.receptance.weight.abs().max() > 0.9 * b
        for ln in (blk.ln1, blk.ln2, att.ln_x):
            assert torch.all(ln.weight == 1) and torch.all(ln.bias == 0)
        assert blk.ln1.eps == 1e-5 and att.ln_x.eps == 64e-5 and att.ln_x.num_groups == 3


@pytest.mark.parametrize("scan_impl", ["loop", "chunked"])
def test_every_block_is_identity_at_init(scan_impl):
    torch.manual_seed(1)
    cfg = ModelConfig(scale=2, **SMALL)
    m = DeltaWKV(cfg, scan_impl=scan_impl)
    h, w = 5, 7
    x = torch.randn(2, h * w, cfg.dim)
    v_first = None
    for blk in m.blocks():
        y, v_first = blk(x, h, w, v_first, scan_impl)
        assert torch.equal(y, x), f"block {blk.layer_id} is not the identity"
        x = torch.randn_like(x)


def test_every_block_is_identity_at_init_default_config():
    torch.manual_seed(2)
    m = DeltaWKV(ModelConfig(scale=4))
    h, w = 6, 5
    x = torch.randn(1, h * w, 96)
    v_first = None
    for blk in m.blocks():
        y, v_first = blk(x, h, w, v_first, "chunked")
        assert torch.equal(y, x), f"block {blk.layer_id} is not the identity"


def test_token_shift_directions_non_square():
    h, w, N, C = 3, 5, 8, 16
    x = torch.randn(1, h * w, C, dtype=torch.float64)
    xs = token_shift(x, h, w, shift_quarter(N, C))
    for row in range(h):
        for col in range(w):
            for c in range(C):
                q = (4 * (c % N)) // N
                rr, cc = {0: (row, col - 1), 1: (row, col + 1), 2: (row - 1, col),
                          3: (row + 1, col)}[q]
                want = x[0, rr * w + cc, c].item() if 0 <= rr < h and 0 <= cc < w else 0.0
                assert xs[0, row * w + col, c].item() == want


# ------------------------------------------------------------------------------------------
# A literal, token-by-token transcription of docs/model-spec.md (float64), independent of the
# vectorised module code, used to check the module on random non-trivial weights.


def _ln(x, wt, b, eps=1e-5):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * wt + b


def _shift(x, h, w, N):
    L, C = x.shape
    xs = torch.zeros_like(x)
    for p in range(L):
        row, col = divmod(p, w)
        for c in range(C):
            q = (4 * (c % N)) // N
            rr, cc = [(row, col - 1), (row, col + 1), (row - 1, col), (row + 1, col)][q]
            if 0 <= rr < h and 0 <= cc < w:
                xs[p, c] = x[rr * w + cc, c]
    return xs


def _pi(d, t, h, w):
    L = h * w
    if d == 0:
        return t
    if d == 1:
        return L - 1 - t
    if d == 2:
        return (t % h) * w + t // h
    return _pi(2, L - 1 - t, h, w)


def literal_block(sd, pre, cfg, x, h, w, v_first):
    C, N, H = cfg.dim, cfg.head_size, cfg.dim // cfg.head_size
    L = h * w
    P = lambda n: sd[pre + n]  # noqa: E731
    # spatial mix
    xn = _ln(x, P("ln1.weight"), P("ln1.bias"))
    d = _shift(xn, h, w, N) - xn
    xz = {z: xn + d * P("att.mu_" + z) for z in "rwkvag"}
    r = xz["r"] @ P("att.receptance.weight").T
    k = xz["k"] @ P("att.key.weight").T
    v = xz["v"] @ P("att.value.weight").T
    dd = P("att.w0") + torch.tanh(xz["w"] @ P("att.w1")) @ P("att.w2")
    lam = torch.exp(-math.exp(-0.5) * torch.sigmoid(dd))
    a = torch.sigmoid(P("att.a0") + (xz["a"] @ P("att.a1")) @ P("att.a2"))
    if v_first is None:
        v_first = v
    else:
        v = v + (v_first - v) * torch.sigmoid(P("att.v0") + (xz["v"] @ P("att.v1")) @ P("att.v2"))
    gate = torch.sigmoid(xz["g"] @ P("att.g1")) @ P("att.g2")
    kk = torch.zeros_like(k)
    kkk = k * P("att.k_k")
    for p in range(L):
        for hd in range(H):
            s = slice(hd * N, (hd + 1) * N)
            kk[p, s] = kkk[p, s] / max(kkk[p, s].norm().item(), 1e-12)
    kt = k * (1 + (a - 1) * P("att.k_a"))
    y = torch.zeros(L, C, dtype=x.dtype)
    for dr in range(4):
        for hd in range(H):
            s = slice(hd * N, (hd + 1) * N)
            S = torch.zeros(N, N, dtype=x.dtype)
            for t in range(L):
                p = _pi(dr, t, h, w)
                sa = S @ kk[p, s]
                S = S * lam[p, s][None, :] - torch.outer(sa, a[p, s] * kk[p, s]) \
                    + torch.outer(v[p, s], kt[p, s])
                y[p, s] += S @ r[p, s]
    gw, gb = P("att.ln_x.weight"), P("att.ln_x.bias")
    yn = torch.zeros_like(y)
    for hd in range(H):
        s = slice(hd * N, (hd + 1) * N)
        yn[:, s] = _ln(y[:, s], gw[s], gb[s], eps=64e-5)
    for hd in range(H):
        s = slice(hd * N, (hd + 1) * N)
        coef = (r[:, s] * kt[:, s] * P("att.r_k")[hd]).sum(-1, keepdim=True)
        yn[:, s] += coef * v[:, s]
    x = x + (yn * gate) @ P("att.output.weight").T
    # channel mix
    xn = _ln(x, P("ln2.weight"), P("ln2.bias"))
    xk = xn + (_shift(xn, h, w, N) - xn) * P("ffn.mu_k")
    x = x + torch.relu(xk @ P("ffn.key.weight").T) ** 2 @ P("ffn.value.weight").T
    return x, v_first


def literal_forward(sd, cfg, img):
    """img: [h, w] float64 -> [s*h, s*w]."""
    h, w = img.shape
    conv = lambda t, n: F.conv2d(t[None], sd[n + ".weight"], sd[n + ".bias"], padding=1)[0]  # noqa: E731
    tok = lambda t: t.reshape(t.shape[0], -1).T  # noqa: E731
    im = lambda t: t.T.reshape(-1, h, w)  # noqa: E731
    f0 = conv(img[None], "conv_first")
    T = _ln(tok(f0), sd["patch_norm.weight"], sd["patch_norm.bias"])
    v_first = None
    for g in range(cfg.groups):
        T_in = T
        for b in range(cfg.blocks_per_group):
            T, v_first = literal_block(sd, f"groups.{g}.blocks.{b}.", cfg, T, h, w, v_first)
        T = tok(conv(im(T), f"groups.{g}.conv")) + T_in
    T = _ln(T, sd["norm.weight"], sd["norm.bias"])
    fd = conv(im(T), "conv_after_body") + f0
    Y = F.leaky_relu(conv(fd, "conv_before_upsample"), 0.01)
    for i in range(int(math.log2(cfg.scale))):
        Y = F.pixel_shuffle(conv(Y, f"upsample.{i}")[None], 2)[0]
    return conv(Y, "conv_last")[0]


def randomise(model, seed):
    """Non-trivial weights with O(1) activations (not the identity initialisation)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype)
            if p.dim() == 2 and not name.endswith("r_k"):
                p.copy_(noise / math.sqrt(p.shape[1]))
            elif name.endswith((".weight",)) and p.dim() == 1:  # norms' gains
                p.copy_(1 + 0.2 * noise)
            elif p.dim() == 4:
                p.copy_(noise / math.sqrt(p[0].numel()))
            else:
                p.copy_(0.5 * noise)


@pytest.mark.parametrize("scale,hw", [(2, (4, 6)), (4, (5, 3))])
def test_module_matches_literal_spec(scale, hw):
    cfg = ModelConfig(scale=scale, **SMALL)
    m = DeltaWKV(cfg, scan_impl="loop").double()
    randomise(m, seed=scale)
    sd = {k: v.double() for k, v in m.state_dict().items()}
    torch.manual_seed(3)
    img = torch.rand(*hw, dtype=torch.float64)
    want = literal_forward(sd, cfg, img)
    for impl in ("loop", "chunked"):
        m.scan_impl = impl
        with torch.no_grad():
            got = m(img[None, None])[0, 0]
        assert got.shape == (scale * hw[0], scale * hw[1])
        err = ((got - want).norm() / want.norm()).item()
        assert err < 1e-12, (impl, err)


def test_batch_entries_are_independent_and_intermediates_recorded():
    cfg = ModelConfig(scale=2, **SMALL)
    m = DeltaWKV(cfg, scan_impl="chunked").double()
    randomise(m, seed=9)
    x = torch.rand(3, 1, 6, 5, dtype=torch.float64)
    rec = {}
    with torch.no_grad():
        y = m(x, intermediates=rec)
        y1 = m(x[1:2])
    assert y.shape == (3, 1, 12, 10)
    assert torch.allclose(y[1:2], y1, rtol=0, atol=1e-12)
    want = {"conv_first", "patch_norm", "norm", "body", "before_upsample", "upsample.0",
            "block.0", "block.1", "block.2", "block.3", "group.0", "group.1"}
    assert set(rec) == want
    assert rec["block.3"].shape == (3, 30, 16) and rec["body"].shape == (3, 16, 6, 5)


def test_input_validation():
    m = DeltaWKV(ModelConfig(scale=2, **SMALL))
    with pytest.raises(ValueError):
        m(torch.rand(1, 2, 4, 4))
    with pytest.raises(ValueError):
        ModelConfig(scale=3)
    with pytest.raises(ValueError):
        ModelConfig(dim=30, head_size=8)


# ------------------------------------------------------------------------------------------
# Committed golden vectors (tests/data/golden, made by train/tools/gen_golden.py)

GOLDEN = Path(__file__).resolve().parents[2] / "tests" / "data" / "golden"


def _golden(stem):
    pytest.importorskip("safetensors")
    from safetensors.torch import load_file

    from dwkv.checkpoint import load_checkpoint

    ckpt = GOLDEN / f"model_{stem}.safetensors"
    vec_path = GOLDEN / f"vectors_{stem}.safetensors"
    if not ckpt.exists() or not vec_path.exists():
        pytest.fail(f"golden files missing in {GOLDEN}")
    return ckpt, load_file(str(vec_path)), load_checkpoint


@pytest.mark.parametrize("stem", ["x2", "x4"])
def test_golden_vectors_reproduce_float64(stem):
    ckpt, vec, load_checkpoint = _golden(stem)
    model, meta = load_checkpoint(ckpt, dtype=torch.float64, scan_impl="loop")
    assert meta["trained_on"] == "golden-random"
    tags = sorted(k[len("input."):] for k in vec if k.startswith("input."))
    assert len(tags) == 4
    for tag in tags:
        rec = {}
        with torch.no_grad():
            y = model(vec[f"input.{tag}"][None], intermediates=rec, internals=True)[0]
        want = vec[f"output.{tag}"]
        assert ((y - want).norm() / want.norm()).item() < 1e-12, tag
        for k, t in vec.items():
            if k.startswith(f"inter.{tag}."):
                got = rec[k[len(f"inter.{tag}."):]][0]
                assert ((got - t).norm() / t.norm()).item() < 1e-12, k


@pytest.mark.parametrize("stem", ["x2", "x4"])
def test_float32_chunked_meets_parity_bound_on_goldens(stem, capsys):
    """The training path (float32, chunked scan) against the float64 goldens: the spec's 1e-4."""
    ckpt, vec, load_checkpoint = _golden(stem)
    model, _ = load_checkpoint(ckpt, dtype=torch.float32, scan_impl="chunked")
    worst = 0.0
    for k in vec:
        if k.startswith("input."):
            tag = k[len("input."):]
            with torch.no_grad():
                y = model(vec[k].float()[None])[0].double()
            want = vec[f"output.{tag}"]
            worst = max(worst, ((y - want).norm() / want.norm()).item())
    with capsys.disabled():
        print(f"\n[golden {stem}] float32 chunked vs float64 loop: worst rel err {worst:.2e}")
    assert worst < 1e-4


def test_block_internals_are_consistent():
    cfg = ModelConfig(scale=2, **SMALL)
    m = DeltaWKV(cfg, scan_impl="loop").double()
    randomise(m, seed=4)
    rec = {}
    with torch.no_grad():
        m(torch.rand(1, 1, 4, 5, dtype=torch.float64), intermediates=rec, internals=True)
    t_in = rec["patch_norm"]
    for l in range(4):
        p = f"block.{l}."
        assert torch.allclose(rec[f"block.{l}"], t_in + rec[p + "att.out"] + rec[p + "ffn.out"],
                              atol=1e-12)
        lam = rec[p + "att.decay"]
        assert lam.min() > math.exp(-math.exp(-0.5)) and lam.max() < 1
        kk = rec[p + "att.kk"].view(1, 20, 2, 8)
        assert torch.allclose(kk.norm(dim=-1), torch.ones(1, 20, 2, dtype=torch.float64))
        t_in = rec[f"block.{l}"] if l % 2 == 0 else rec[f"group.{l // 2}"]
