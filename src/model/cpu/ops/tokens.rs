//! Token-wise layers (`L x C` tokens): normalisations, token shift, interpolation, linear maps
//! and LoRA, the decay/rate/gate projections, the key transforms, and the channel mix.

use rayon::prelude::*;

use super::rows::rows_times;
use super::{ELEM_CHUNK, L2_EPS, Strides, TOKEN_CHUNK, check_len, sigmoid};

// ---------------------------------------------------------------------------------------------
// Token-wise layers
// ---------------------------------------------------------------------------------------------

/// LayerNorm over the `c` channels of each token (biased variance, `eps` inside the square root):
/// `y = (x - mean) / sqrt(var + eps) * weight + bias`. Statistics are accumulated in f64.
pub fn layer_norm(x: &[f32], c: usize, weight: &[f32], bias: &[f32], eps: f32) -> Vec<f32> {
    group_norm(x, c, c, weight, bias, eps)
}

/// GroupNorm applied per token with groups of `group_size` consecutive channels (for the spatial
/// mix: one group per head, `group_size = N`, `eps = GN_EPS`). Each group of each token is
/// normalised on its own (biased variance), then scaled by `weight[c]` and shifted by `bias[c]`.
pub fn group_norm(
    x: &[f32],
    c: usize,
    group_size: usize,
    weight: &[f32],
    bias: &[f32],
    eps: f32,
) -> Vec<f32> {
    assert!(
        group_size > 0 && c.is_multiple_of(group_size),
        "ops::group_norm: {c} channels not divisible into groups of {group_size}"
    );
    assert!(
        x.len().is_multiple_of(c),
        "ops::group_norm: x is not L x {c}"
    );
    check_len("group_norm weight", weight, c);
    check_len("group_norm bias", bias, c);
    let mut y = vec![0.0f32; x.len()];
    y.par_chunks_mut(c * TOKEN_CHUNK)
        .zip(x.par_chunks(c * TOKEN_CHUNK))
        .for_each(|(yc, xc)| {
            for (yt, xt) in yc.chunks_mut(c).zip(xc.chunks(c)) {
                norm_token(xt, yt, group_size, weight, bias, eps);
            }
        });
    y
}

/// [`group_norm`] of one token `xt` (`c` channels) into `yt`.
#[inline]
pub(super) fn norm_token(
    xt: &[f32],
    yt: &mut [f32],
    group_size: usize,
    weight: &[f32],
    bias: &[f32],
    eps: f32,
) {
    let c = xt.len();
    for g in (0..c).step_by(group_size) {
        let xs = &xt[g..g + group_size];
        let n = group_size as f64;
        let mean = xs.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = xs
            .iter()
            .map(|&v| {
                let d = f64::from(v) - mean;
                d * d
            })
            .sum::<f64>()
            / n;
        let inv = 1.0 / (var + f64::from(eps)).sqrt();
        for j in 0..group_size {
            let norm = ((f64::from(xs[j]) - mean) * inv) as f32;
            yt[g + j] = norm * weight[g + j] + bias[g + j];
        }
    }
}

/// The 2-D token shift of the spec: returns `xs` where, for channel `c` with `j = c mod N` and
/// `q = floor(4 j / N)`, `xs[row, col, c]` is `x` at the left neighbour (`q = 0`), the right
/// neighbour (`q = 1`), the one above (`q = 2`) or the one below (`q = 3`), and 0 outside the image.
/// `x` is `L x C` tokens of an `h x w` image.
pub fn token_shift_2d(x: &[f32], h: usize, w: usize, c: usize, head_size: usize) -> Vec<f32> {
    check_len("token_shift_2d x", x, h * w * c);
    assert!(head_size > 0, "ops::token_shift_2d: head_size is 0");
    let mut xs = vec![0.0f32; x.len()];
    if w == 0 || c == 0 {
        return xs;
    }
    xs.par_chunks_mut(w * c)
        .enumerate()
        .for_each(|(row, out_row)| {
            for col in 0..w {
                let p = row * w + col;
                for ch in 0..c {
                    let q = 4 * (ch % head_size) / head_size;
                    let src = match q {
                        0 => (col > 0).then(|| p - 1),
                        1 => (col + 1 < w).then(|| p + 1),
                        2 => (row > 0).then(|| p - w),
                        _ => (row + 1 < h).then(|| p + w),
                    };
                    if let Some(s) = src {
                        out_row[col * c + ch] = x[s * c + ch];
                    }
                }
            }
        });
    xs
}

/// `d = token_shift_2d(x) - x`, the difference the interpolations use.
pub fn token_shift_delta(x: &[f32], h: usize, w: usize, c: usize, head_size: usize) -> Vec<f32> {
    let mut d = token_shift_2d(x, h, w, c, head_size);
    d.par_iter_mut()
        .with_min_len(ELEM_CHUNK)
        .zip(x)
        .for_each(|(dv, xv)| *dv -= xv);
    d
}

/// The interpolation `x + d * mu` (`mu` per channel, `x` and `d` are `L x C`).
pub fn lerp_mix(x: &[f32], d: &[f32], mu: &[f32], c: usize) -> Vec<f32> {
    check_len("lerp_mix d", d, x.len());
    check_len("lerp_mix mu", mu, c);
    assert!(x.len().is_multiple_of(c), "ops::lerp_mix: x is not L x {c}");
    let mut y = vec![0.0f32; x.len()];
    y.par_chunks_mut(c * TOKEN_CHUNK)
        .zip(
            x.par_chunks(c * TOKEN_CHUNK)
                .zip(d.par_chunks(c * TOKEN_CHUNK)),
        )
        .for_each(|(yc, (xc, dc))| {
            for ((yt, xt), dt) in yc.chunks_mut(c).zip(xc.chunks(c)).zip(dc.chunks(c)) {
                for (((yv, &xv), &dv), &m) in yt.iter_mut().zip(xt).zip(dt).zip(mu) {
                    *yv = xv + dv * m;
                }
            }
        });
    y
}

/// PyTorch `nn.Linear` without bias: `x` is `L x in_dim`, `weight` is `[out_dim, in_dim]`, returns
/// `y = x W^T`, `L x out_dim`.
pub fn linear(x: &[f32], in_dim: usize, weight: &[f32], out_dim: usize) -> Vec<f32> {
    assert!(
        in_dim > 0 && x.len().is_multiple_of(in_dim),
        "ops::linear: x is not L x {in_dim}"
    );
    check_len("linear weight", weight, out_dim * in_dim);
    rows_times(x, in_dim, weight, Strides::col_major(in_dim), out_dim)
}

/// Plain matrix product `y = x M`: `x` is `L x in_dim`, `m` is `[in_dim, out_dim]` (LoRA matrices,
/// used as written), returns `L x out_dim`.
pub fn matmul(x: &[f32], in_dim: usize, m: &[f32], out_dim: usize) -> Vec<f32> {
    assert!(
        in_dim > 0 && x.len().is_multiple_of(in_dim),
        "ops::matmul: x is not L x {in_dim}"
    );
    check_len("matmul m", m, in_dim * out_dim);
    rows_times(x, in_dim, m, Strides::row_major(out_dim), out_dim)
}

/// Activation between the two matrices of a LoRA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoraInner {
    /// `(x A) B`
    Identity,
    /// `tanh(x A) B` (decay)
    Tanh,
    /// `sigmoid(x A) B` (gate)
    Sigmoid,
}

/// LoRA `act(x A) B` with `A = down` `[c, rank]` and `B = up` `[rank, c]`, both used as written;
/// `x` is `L x c`, returns `L x c`.
pub fn lora(
    x: &[f32],
    c: usize,
    down: &[f32],
    rank: usize,
    up: &[f32],
    inner: LoraInner,
) -> Vec<f32> {
    let mut hidden = matmul(x, c, down, rank);
    match inner {
        LoraInner::Identity => {}
        LoraInner::Tanh => par_apply(&mut hidden, f32::tanh),
        LoraInner::Sigmoid => par_apply(&mut hidden, sigmoid),
    }
    if rank == 0 {
        // x A has no columns: the product is all zeros.
        return vec![0.0; x.len()];
    }
    matmul(&hidden, rank, up, c)
}

/// Per-channel offset plus LoRA: `base[c] + lora(x)`, `L x c`.
fn offset_lora(
    x: &[f32],
    c: usize,
    base: &[f32],
    down: &[f32],
    rank: usize,
    up: &[f32],
    inner: LoraInner,
) -> Vec<f32> {
    check_len("offset_lora base", base, c);
    let mut y = lora(x, c, down, rank, up, inner);
    y.par_chunks_mut(c)
        .with_min_len(TOKEN_CHUNK)
        .for_each(|yt| yt.iter_mut().zip(base).for_each(|(v, b)| *v += b));
    y
}

/// Decay of step 4: `dd = w0 + tanh(x_w W_w1) W_w2`, returns `lambda = exp(-exp(-0.5) *
/// sigmoid(dd))` in (0.545, 1), `L x c`.
pub fn decay(x_w: &[f32], c: usize, w0: &[f32], w1: &[f32], rank: usize, w2: &[f32]) -> Vec<f32> {
    let scale = (-0.5f32).exp();
    let mut dd = offset_lora(x_w, c, w0, w1, rank, w2, LoraInner::Tanh);
    par_apply(&mut dd, |v| super::exp_f32(-scale * sigmoid(v)));
    dd
}

/// In-context learning rate of step 5: `a = sigmoid(a0 + (x_a W_a1) W_a2)`, `L x c`.
pub fn icl_rate(
    x_a: &[f32],
    c: usize,
    a0: &[f32],
    a1: &[f32],
    rank: usize,
    a2: &[f32],
) -> Vec<f32> {
    let mut a = offset_lora(x_a, c, a0, a1, rank, a2, LoraInner::Identity);
    par_apply(&mut a, sigmoid);
    a
}

/// Value residual of step 6 (blocks l > 0):
/// `v + (v_first - v) * sigmoid(v0 + (x_v W_v1) W_v2)`, `L x c`.
#[allow(clippy::too_many_arguments)]
pub fn value_residual(
    v: &[f32],
    v_first: &[f32],
    x_v: &[f32],
    c: usize,
    v0: &[f32],
    v1: &[f32],
    rank: usize,
    v2: &[f32],
) -> Vec<f32> {
    check_len("value_residual v_first", v_first, v.len());
    check_len("value_residual x_v", x_v, v.len());
    let mix = offset_lora(x_v, c, v0, v1, rank, v2, LoraInner::Identity);
    v.par_iter()
        .with_min_len(ELEM_CHUNK)
        .zip(v_first)
        .zip(&mix)
        .map(|((&vv, &vf), &m)| vv + (vf - vv) * sigmoid(m))
        .collect()
}

/// Output gate of step 7: `gate = sigmoid(x_g W_g1) W_g2`, `L x c`.
pub fn gate(x_g: &[f32], c: usize, g1: &[f32], rank: usize, g2: &[f32]) -> Vec<f32> {
    lora(x_g, c, g1, rank, g2, LoraInner::Sigmoid)
}

/// L2 normalisation of each head's `head_size` channels of each token:
/// `x / max(||x||_2, eps)` (PyTorch `F.normalize`).
pub fn l2_normalize_heads(x: &[f32], c: usize, head_size: usize, eps: f32) -> Vec<f32> {
    assert!(
        head_size > 0 && c.is_multiple_of(head_size) && x.len().is_multiple_of(c),
        "ops::l2_normalize_heads: bad sizes"
    );
    let mut y = x.to_vec();
    y.par_chunks_mut(head_size)
        .with_min_len(TOKEN_CHUNK)
        .for_each(|hd| {
            let norm = hd
                .iter()
                .map(|&v| f64::from(v) * f64::from(v))
                .sum::<f64>()
                .sqrt();
            let denom = norm.max(f64::from(eps));
            hd.iter_mut()
                .for_each(|v| *v = (f64::from(*v) / denom) as f32);
        });
    y
}

/// Removal key of step 8: `kk = normalize(k * k_k)` per head, `L x c`.
pub fn removal_key(k: &[f32], c: usize, head_size: usize, k_k: &[f32]) -> Vec<f32> {
    check_len("removal_key k_k", k_k, c);
    let mut scaled = k.to_vec();
    scaled
        .par_chunks_mut(c)
        .with_min_len(TOKEN_CHUNK)
        .for_each(|kt| kt.iter_mut().zip(k_k).for_each(|(a, b)| *a *= b));
    l2_normalize_heads(&scaled, c, head_size, L2_EPS)
}

/// Replacement key of step 8: `kt = k * (1 + (a - 1) * k_a)`, `L x c`.
pub fn replacement_key(k: &[f32], a: &[f32], c: usize, k_a: &[f32]) -> Vec<f32> {
    check_len("replacement_key a", a, k.len());
    check_len("replacement_key k_a", k_a, c);
    let mut out = k.to_vec();
    out.par_chunks_mut(c)
        .with_min_len(TOKEN_CHUNK)
        .zip(a.par_chunks(c))
        .for_each(|(kt, at)| {
            for ((kv, &av), &ka) in kt.iter_mut().zip(at).zip(k_a) {
                *kv *= 1.0 + (av - 1.0) * ka;
            }
        });
    out
}

/// Elementwise product `a * b` (the output gate).
pub fn mul(a: &[f32], b: &[f32]) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "ops::mul: lengths differ");
    a.par_iter()
        .with_min_len(ELEM_CHUNK)
        .zip(b)
        .map(|(x, y)| x * y)
        .collect()
}

/// The channel mix: `d = shift(x) - x`, `x_k = x + d * mu_k`,
/// `out = relu(x_k W_k'^T)^2 W_v'^T` with `key` `[hidden, c]` and `value` `[c, hidden]`
/// (`hidden = ffn_ratio * c`). `x` is `L x c` tokens of an `h x w` image.
#[allow(clippy::too_many_arguments)]
pub fn channel_mix(
    x: &[f32],
    h: usize,
    w: usize,
    c: usize,
    head_size: usize,
    mu_k: &[f32],
    key: &[f32],
    value: &[f32],
    hidden: usize,
) -> Vec<f32> {
    let d = token_shift_delta(x, h, w, c, head_size);
    let xk = lerp_mix(x, &d, mu_k, c);
    let mut k = linear(&xk, c, key, hidden);
    relu_squared_in_place(&mut k);
    linear(&k, hidden, value, c)
}

/// `relu(x)^2`, elementwise, in place.
pub fn relu_squared_in_place(x: &mut [f32]) {
    par_apply(x, |v| {
        let r = v.max(0.0);
        r * r
    });
}

/// `x[i] = f(x[i])` for every element, in parallel chunks of [`ELEM_CHUNK`].
fn par_apply(x: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    x.par_iter_mut()
        .with_min_len(ELEM_CHUNK)
        .for_each(|v| *v = f(*v));
}
