//! Allocation-free, fused forms of the token-wise layers for the forward pass: each writes into
//! buffers the caller owns (a workspace reused by every block), and does in one pass over the
//! tokens what the layer functions of [`super::tokens`] do in several. Every output element is
//! computed by the same floating-point operations, in the same order, as by those functions, so
//! the results are the same bit for bit (the unit tests check this against them).

use rayon::prelude::*;

use super::rows::rows_times_into;
use super::tokens::norm_token;
use super::{L2_EPS, Strides, TOKEN_CHUNK, check_len, sigmoid};

/// [`super::layer_norm`] into `y`.
pub fn layer_norm_into(x: &[f32], c: usize, weight: &[f32], bias: &[f32], eps: f32, y: &mut [f32]) {
    assert!(
        c > 0 && x.len().is_multiple_of(c),
        "ops::layer_norm_into: x is not L x {c}"
    );
    check_len("layer_norm_into y", y, x.len());
    check_len("layer_norm_into weight", weight, c);
    check_len("layer_norm_into bias", bias, c);
    y.par_chunks_mut(c * TOKEN_CHUNK)
        .zip(x.par_chunks(c * TOKEN_CHUNK))
        .for_each(|(yc, xc)| {
            for (yt, xt) in yc.chunks_mut(c).zip(xc.chunks(c)) {
                norm_token(xt, yt, c, weight, bias, eps);
            }
        });
}

/// The residual and the next LayerNorm in one pass: `t = t + add`, then `y = layer_norm(t)`.
pub fn add_layer_norm(
    t: &mut [f32],
    add: &[f32],
    c: usize,
    weight: &[f32],
    bias: &[f32],
    eps: f32,
    y: &mut [f32],
) {
    assert!(
        c > 0 && t.len().is_multiple_of(c),
        "ops::add_layer_norm: t is not L x {c}"
    );
    check_len("add_layer_norm add", add, t.len());
    check_len("add_layer_norm y", y, t.len());
    check_len("add_layer_norm weight", weight, c);
    check_len("add_layer_norm bias", bias, c);
    t.par_chunks_mut(c * TOKEN_CHUNK)
        .zip(y.par_chunks_mut(c * TOKEN_CHUNK))
        .zip(add.par_chunks(c * TOKEN_CHUNK))
        .for_each(|((tc, yc), ac)| {
            tc.iter_mut().zip(ac).for_each(|(a, b)| *a += b);
            for (yt, xt) in yc.chunks_mut(c).zip(tc.chunks(c)) {
                norm_token(xt, yt, c, weight, bias, eps);
            }
        });
}

/// `t = t + add`, elementwise (a residual connection in place).
pub fn add_in_place(t: &mut [f32], add: &[f32]) {
    check_len("add_in_place add", add, t.len());
    t.par_chunks_mut(4096)
        .zip(add.par_chunks(4096))
        .for_each(|(tc, ac)| tc.iter_mut().zip(ac).for_each(|(a, b)| *a += b));
}

/// Runs of consecutive channels that the token shift takes from the same neighbour:
/// `(start, end, quarter)` with `quarter = floor(4 (ch mod n) / n)` (see
/// [`super::token_shift_2d`]).
fn quarter_runs(c: usize, n: usize) -> Vec<(usize, usize, usize)> {
    let mut runs: Vec<(usize, usize, usize)> = Vec::new();
    for ch in 0..c {
        let q = 4 * (ch % n) / n;
        match runs.last_mut() {
            Some(last) if last.2 == q && last.1 == ch => last.1 = ch + 1,
            _ => runs.push((ch, ch + 1, q)),
        }
    }
    runs
}

/// The token shift and several interpolations in one pass: `outs[m] = x + d * mus[m]` with
/// `d = token_shift_2d(x) - x` ([`super::token_shift_delta`] and [`super::lerp_mix`]), each
/// output `L x C`. Image rows run in parallel.
pub fn shift_mix_into(
    x: &[f32],
    h: usize,
    w: usize,
    c: usize,
    head_size: usize,
    mus: &[&[f32]],
    outs: &mut [&mut [f32]],
) {
    check_len("shift_mix_into x", x, h * w * c);
    assert!(head_size > 0, "ops::shift_mix_into: head_size is 0");
    assert_eq!(mus.len(), outs.len(), "ops::shift_mix_into: mus and outs");
    for (mu, out) in mus.iter().zip(outs.iter()) {
        check_len("shift_mix_into mu", mu, c);
        check_len("shift_mix_into out", out, x.len());
    }
    if x.is_empty() {
        return;
    }
    let runs = quarter_runs(c, head_size);
    // Per image row, that row of every output.
    let mut rows: Vec<Vec<&mut [f32]>> = (0..h).map(|_| Vec::with_capacity(outs.len())).collect();
    for out in outs.iter_mut() {
        for (row, chunk) in rows.iter_mut().zip(out.chunks_mut(w * c)) {
            row.push(chunk);
        }
    }
    rows.into_par_iter()
        .enumerate()
        .for_each(|(row, mut out_rows)| {
            let mut d = vec![0.0f32; c];
            for col in 0..w {
                let p = row * w + col;
                let xt = &x[p * c..(p + 1) * c];
                for &(s, e, q) in &runs {
                    let src = match q {
                        0 => (col > 0).then(|| p - 1),
                        1 => (col + 1 < w).then(|| p + 1),
                        2 => (row > 0).then(|| p - w),
                        _ => (row + 1 < h).then(|| p + w),
                    };
                    match src {
                        Some(sp) => {
                            let xs = &x[sp * c + s..sp * c + e];
                            for ((dv, &sv), &xv) in d[s..e].iter_mut().zip(xs).zip(&xt[s..e]) {
                                *dv = sv - xv;
                            }
                        }
                        None => {
                            for (dv, &xv) in d[s..e].iter_mut().zip(&xt[s..e]) {
                                *dv = 0.0 - xv;
                            }
                        }
                    }
                }
                for (out, mu) in out_rows.iter_mut().zip(mus) {
                    let ot = &mut out[col * c..(col + 1) * c];
                    for (((ov, &xv), &dv), &m) in ot.iter_mut().zip(xt).zip(&d).zip(*mu) {
                        *ov = xv + dv * m;
                    }
                }
            }
        });
}

/// [`super::linear`] into `y` (every value written), then `epilogue(first_token, rows)` on each
/// block of finished rows (see `rows_times_into`).
pub fn linear_into<E>(
    x: &[f32],
    in_dim: usize,
    weight: &[f32],
    out_dim: usize,
    y: &mut [f32],
    epilogue: E,
) where
    E: Fn(usize, &mut [f32]) + Sync,
{
    check_len("linear_into weight", weight, out_dim * in_dim);
    rows_times_into(
        x,
        in_dim,
        weight,
        Strides::col_major(in_dim),
        out_dim,
        y,
        epilogue,
    );
}

/// [`super::matmul`] into `y` with an epilogue, as [`linear_into`]. With `in_dim == 0` (a LoRA
/// of rank 0) the product is all zeros.
pub fn matmul_into<E>(
    x: &[f32],
    in_dim: usize,
    m: &[f32],
    out_dim: usize,
    y: &mut [f32],
    epilogue: E,
) where
    E: Fn(usize, &mut [f32]) + Sync,
{
    check_len("matmul_into m", m, in_dim * out_dim);
    if in_dim == 0 {
        y.fill(0.0);
        epilogue(0, y);
        return;
    }
    rows_times_into(
        x,
        in_dim,
        m,
        Strides::row_major(out_dim),
        out_dim,
        y,
        epilogue,
    );
}

/// `v = f(v + base[ch])` for every value of an `rows x c` block (the LoRA epilogues).
#[inline]
pub fn offset_apply(rows: &mut [f32], base: &[f32], f: impl Fn(f32) -> f32) {
    for row in rows.chunks_mut(base.len()) {
        for (v, &b) in row.iter_mut().zip(base) {
            *v = f(*v + b);
        }
    }
}

/// The removal key ([`super::removal_key`]) and the replacement key ([`super::replacement_key`])
/// in one pass over `k` and `a`.
#[allow(clippy::too_many_arguments)]
pub fn keys_into(
    k: &[f32],
    a: &[f32],
    c: usize,
    head_size: usize,
    k_k: &[f32],
    k_a: &[f32],
    kk: &mut [f32],
    kt: &mut [f32],
) {
    assert!(
        head_size > 0 && c.is_multiple_of(head_size) && k.len().is_multiple_of(c),
        "ops::keys_into: bad sizes"
    );
    for (name, s) in [("a", a), ("kk", &*kk), ("kt", &*kt)] {
        check_len(name, s, k.len());
    }
    check_len("keys_into k_k", k_k, c);
    check_len("keys_into k_a", k_a, c);
    let chunk = c * TOKEN_CHUNK;
    kk.par_chunks_mut(chunk)
        .zip(kt.par_chunks_mut(chunk))
        .zip(k.par_chunks(chunk).zip(a.par_chunks(chunk)))
        .for_each(|((kkc, ktc), (kc, ac))| {
            for (kkt, kt_) in kkc.chunks_mut(c).zip(kc.chunks(c)) {
                for ((o, &kv), &m) in kkt.iter_mut().zip(kt_).zip(k_k) {
                    *o = kv * m;
                }
                for hd in kkt.chunks_mut(head_size) {
                    let norm = hd
                        .iter()
                        .map(|&v| f64::from(v) * f64::from(v))
                        .sum::<f64>()
                        .sqrt();
                    let denom = norm.max(f64::from(L2_EPS));
                    hd.iter_mut()
                        .for_each(|v| *v = (f64::from(*v) / denom) as f32);
                }
            }
            for ((o, &kv), (&av, &ka)) in ktc
                .iter_mut()
                .zip(kc)
                .zip(ac.iter().zip(k_a.iter().cycle()))
            {
                *o = kv * (1.0 + (av - 1.0) * ka);
            }
        });
}

/// The inputs of [`readout_into`] besides the scans.
#[derive(Clone, Copy, Debug)]
pub struct ReadoutInputs<'a> {
    /// `ln_x` weight and bias, `[C]`.
    pub lnx_w: &'a [f32],
    pub lnx_b: &'a [f32],
    /// Receptance, replacement key and value, `L x C`.
    pub r: &'a [f32],
    pub kt: &'a [f32],
    pub v: &'a [f32],
    /// The bonus weights `r_k`, `[H, N]`.
    pub r_k: &'a [f32],
    /// The output gate, `L x C`.
    pub gate: &'a [f32],
}

/// Steps 10-13 up to the output projection in one pass: `y = y_0 + y_1 + y_2 + y_3` (summed in
/// that order from 0), `y_ln = group_norm(y)` per head, then
/// `g = (y_ln + bonus) * gate` into `g` (`L x C`). `scans[d * H + head]` is the scan of
/// direction `d` and head `head`, `L x N`. With `trace`, `y` and `y_ln` are also written there.
pub fn readout_into(
    scans: &[&[f32]],
    c: usize,
    head_size: usize,
    inp: &ReadoutInputs<'_>,
    g: &mut [f32],
    trace: Option<(&mut [f32], &mut [f32])>,
) {
    let n = head_size;
    assert!(
        n > 0 && c.is_multiple_of(n) && g.len().is_multiple_of(c),
        "ops::readout_into: bad sizes"
    );
    let heads = c / n;
    let l = g.len() / c;
    assert_eq!(scans.len(), 4 * heads, "ops::readout_into: scans");
    for s in scans {
        check_len("readout_into scan", s, l * n);
    }
    for (name, s) in [
        ("r", inp.r),
        ("kt", inp.kt),
        ("v", inp.v),
        ("gate", inp.gate),
    ] {
        check_len(name, s, g.len());
    }
    check_len("readout_into r_k", inp.r_k, c);
    let chunk = c * TOKEN_CHUNK;
    let traces: Vec<Option<(&mut [f32], &mut [f32])>> = match trace {
        Some((ty, tln)) => {
            check_len("readout_into trace y", ty, g.len());
            check_len("readout_into trace y_ln", tln, g.len());
            ty.chunks_mut(chunk)
                .zip(tln.chunks_mut(chunk))
                .map(Some)
                .collect()
        }
        None => (0..g.len().div_ceil(chunk)).map(|_| None).collect(),
    };
    g.par_chunks_mut(chunk)
        .zip(traces)
        .enumerate()
        .for_each(|(blk, (gc, mut tr))| {
            let mut y = vec![0.0f32; c];
            let mut yln = vec![0.0f32; c];
            for (q, gt) in gc.chunks_mut(c).enumerate() {
                let p = blk * TOKEN_CHUNK + q;
                for hd in 0..heads {
                    let yh = &mut y[hd * n..(hd + 1) * n];
                    yh.fill(0.0);
                    for d in 0..4 {
                        let src = &scans[d * heads + hd][p * n..(p + 1) * n];
                        yh.iter_mut().zip(src).for_each(|(s, v)| *s += v);
                    }
                }
                norm_token(&y, &mut yln, n, inp.lnx_w, inp.lnx_b, super::GN_EPS);
                if let Some((ty, tln)) = tr.as_mut() {
                    ty[q * c..(q + 1) * c].copy_from_slice(&y);
                    tln[q * c..(q + 1) * c].copy_from_slice(&yln);
                }
                let base = p * c;
                for hd in 0..heads {
                    let o = base + hd * n;
                    let mut s = 0.0f32;
                    for j in 0..n {
                        s += inp.r[o + j] * inp.kt[o + j] * inp.r_k[hd * n + j];
                    }
                    for i in 0..n {
                        let ch = hd * n + i;
                        gt[ch] = (yln[ch] + s * inp.v[o + i]) * inp.gate[o + i];
                    }
                }
            }
        });
}

/// A sigmoid and `exp(-exp(-0.5) sigmoid(x))` as [`super::decay`] computes them.
#[inline]
pub fn decay_of(v: f32) -> f32 {
    let scale = (-0.5f32).exp();
    super::exp_f32(-scale * sigmoid(v))
}
