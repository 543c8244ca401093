//! One pure function per layer of the Delta-WKV network (`docs/model-spec.md`), on plain `f32`
//! slices. The CPU forward pass composes these; the WGSL engine tests each kernel against them.
//!
//! # Layouts
//!
//! - **Image** (feature map): CHW, channel-major, `img[c * h * w + row * w + col]`.
//! - **Tokens**: `L x C` row-major with `L = h * w`, token `p = row * w + col` (the canonical order),
//!   `x[p * C + c]`. Head `k` owns channels `k * N .. (k + 1) * N` of every token.
//! - **Linear weight** (PyTorch `nn.Linear`): `[out, in]` row-major, `y = x W^T`.
//! - **LoRA / plain matrix**: `[in, out]` row-major, `y = x M` (used as written, no transpose).
//! - **Conv weight**: `[out, in, 3, 3]` row-major, bias `[out]`.
//! - **Per-channel vectors** (`mu_*`, `w0`, `k_k`, ...): `[C]`, broadcast over tokens.
//! - **`r_k`**: `[H, N]` row-major (same flat layout as a `[C]` vector).
//!
//! # Contract
//!
//! Every function takes its sizes explicitly and panics (with a message naming the argument) when a
//! slice length does not match them: that is a programming error, never a data error, because the
//! checkpoint loader validates every tensor shape and the forward pass validates the input plane
//! before any of these run. All functions are deterministic; the ones that use several threads
//! (rayon) split work so that every output element is computed by exactly the same sequence of
//! floating-point operations as on one thread.

use rayon::prelude::*;

/// LayerNorm epsilon (every LayerNorm of the network).
pub const LN_EPS: f32 = 1e-5;
/// GroupNorm epsilon of the spatial mix output (`ln_x`).
pub const GN_EPS: f32 = 64e-5;
/// Epsilon of the L2 normalisation of the removal key (`F.normalize`).
pub const L2_EPS: f32 = 1e-12;
/// Negative slope of the LeakyReLU after `conv_before_upsample`.
pub const LEAKY_SLOPE: f32 = 0.01;

/// Tokens per parallel work item of the token-wise layers.
const TOKEN_CHUNK: usize = 64;

fn check_len(name: &str, slice: &[f32], expected: usize) {
    assert_eq!(
        slice.len(),
        expected,
        "ops: `{name}` has {} elements, expected {expected}",
        slice.len()
    );
}

/// Logistic sigmoid `1 / (1 + exp(-x))`.
#[inline]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Dot product of two equal-length slices (8 partial sums, so the compiler can vectorise it).
///
/// # Panics
/// When the lengths differ.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "ops::dot: lengths differ");
    let mut acc = [0.0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (xa, xb) in (&mut ca).zip(&mut cb) {
        for i in 0..8 {
            acc[i] += xa[i] * xb[i];
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// `dst += alpha * src`, elementwise.
#[inline]
fn axpy(dst: &mut [f32], alpha: f32, src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += alpha * s;
    }
}

// ---------------------------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------------------------

/// 3x3 convolution with zero padding 1 and bias (PyTorch `Conv2d(c_in, c_out, 3, padding=1)`).
///
/// `input`: CHW `[c_in, h, w]`; `weight`: `[c_out, c_in, 3, 3]`; `bias`: `[c_out]`.
/// Returns CHW `[c_out, h, w]`:
/// `out[o, y, x] = bias[o] + sum_{i, ky, kx} weight[o, i, ky, kx] * input[i, y + ky - 1, x + kx - 1]`
/// with out-of-image input samples read as 0.
pub fn conv3x3(
    input: &[f32],
    c_in: usize,
    h: usize,
    w: usize,
    weight: &[f32],
    bias: &[f32],
    c_out: usize,
) -> Vec<f32> {
    let plane = h * w;
    check_len("conv3x3 input", input, c_in * plane);
    check_len("conv3x3 weight", weight, c_out * c_in * 9);
    check_len("conv3x3 bias", bias, c_out);
    let mut out = vec![0.0f32; c_out * plane];
    if plane == 0 {
        return out;
    }
    out.par_chunks_mut(plane).enumerate().for_each(|(o, dst)| {
        dst.fill(bias[o]);
        for i in 0..c_in {
            let src = &input[i * plane..(i + 1) * plane];
            let kern = &weight[(o * c_in + i) * 9..(o * c_in + i + 1) * 9];
            for ky in 0..3 {
                for kx in 0..3 {
                    let wv = kern[ky * 3 + kx];
                    for y in 0..h {
                        // Source row y + ky - 1, zero outside the image.
                        let Some(sy) = (y + ky).checked_sub(1).filter(|&sy| sy < h) else {
                            continue;
                        };
                        let srow = &src[sy * w..(sy + 1) * w];
                        let drow = &mut dst[y * w..(y + 1) * w];
                        match kx {
                            // Left neighbour: dst[x] += wv * src[x - 1] for x >= 1.
                            0 => axpy(&mut drow[1..], wv, &srow[..w - 1]),
                            1 => axpy(drow, wv, srow),
                            // Right neighbour: dst[x] += wv * src[x + 1] for x <= w - 2.
                            _ => axpy(&mut drow[..w - 1], wv, &srow[1..]),
                        }
                    }
                }
            }
        }
    });
    out
}

/// PyTorch `PixelShuffle(r)`: CHW `[c_in, h, w]` with `c_in = c * r * r` to `[c, h * r, w * r]`,
/// `out[c, y * r + i, x * r + j] = input[c * r * r + i * r + j, y, x]`.
///
/// # Panics
/// When `c_in` is not a multiple of `r * r` or `input` has the wrong length.
pub fn pixel_shuffle(input: &[f32], c_in: usize, h: usize, w: usize, r: usize) -> Vec<f32> {
    check_len("pixel_shuffle input", input, c_in * h * w);
    assert!(
        r > 0 && c_in.is_multiple_of(r * r),
        "ops::pixel_shuffle: {c_in} channels is not a multiple of {r}^2"
    );
    let c = c_in / (r * r);
    let (ho, wo) = (h * r, w * r);
    let mut out = vec![0.0f32; c * ho * wo];
    for ch in 0..c {
        for i in 0..r {
            for j in 0..r {
                let src = &input[(ch * r * r + i * r + j) * h * w..][..h * w];
                for y in 0..h {
                    let orow = &mut out[(ch * ho + y * r + i) * wo..][..wo];
                    for x in 0..w {
                        orow[x * r + j] = src[y * w + x];
                    }
                }
            }
        }
    }
    out
}

/// LeakyReLU: `x` if `x >= 0`, else `slope * x`, elementwise.
pub fn leaky_relu(x: &[f32], slope: f32) -> Vec<f32> {
    x.iter()
        .map(|&v| if v >= 0.0 { v } else { slope * v })
        .collect()
}

/// CHW image `[c, h, w]` to `L x C` tokens.
pub fn image_to_tokens(img: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
    check_len("image_to_tokens img", img, c * h * w);
    let l = h * w;
    let mut t = vec![0.0f32; l * c];
    for ch in 0..c {
        for p in 0..l {
            t[p * c + ch] = img[ch * l + p];
        }
    }
    t
}

/// `L x C` tokens to a CHW image `[c, h, w]`.
pub fn tokens_to_image(tokens: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
    check_len("tokens_to_image tokens", tokens, c * h * w);
    let l = h * w;
    let mut img = vec![0.0f32; l * c];
    for p in 0..l {
        for ch in 0..c {
            img[ch * l + p] = tokens[p * c + ch];
        }
    }
    img
}

/// Elementwise sum `a + b` (residual connections).
pub fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "ops::add: lengths differ");
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

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
        });
    y
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
    for (dv, xv) in d.iter_mut().zip(x) {
        *dv -= xv;
    }
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
    let l = x.len() / in_dim;
    let mut y = vec![0.0f32; l * out_dim];
    if out_dim == 0 {
        return y;
    }
    y.par_chunks_mut(out_dim * TOKEN_CHUNK)
        .zip(x.par_chunks(in_dim * TOKEN_CHUNK))
        .for_each(|(yc, xc)| {
            for (yt, xt) in yc.chunks_mut(out_dim).zip(xc.chunks(in_dim)) {
                for (o, yo) in yt.iter_mut().enumerate() {
                    *yo = dot(xt, &weight[o * in_dim..(o + 1) * in_dim]);
                }
            }
        });
    y
}

/// Plain matrix product `y = x M`: `x` is `L x in_dim`, `m` is `[in_dim, out_dim]` (LoRA matrices,
/// used as written), returns `L x out_dim`.
pub fn matmul(x: &[f32], in_dim: usize, m: &[f32], out_dim: usize) -> Vec<f32> {
    assert!(
        in_dim > 0 && x.len().is_multiple_of(in_dim),
        "ops::matmul: x is not L x {in_dim}"
    );
    check_len("matmul m", m, in_dim * out_dim);
    let l = x.len() / in_dim;
    let mut y = vec![0.0f32; l * out_dim];
    if out_dim == 0 {
        return y;
    }
    y.par_chunks_mut(out_dim * TOKEN_CHUNK)
        .zip(x.par_chunks(in_dim * TOKEN_CHUNK))
        .for_each(|(yc, xc)| {
            for (yt, xt) in yc.chunks_mut(out_dim).zip(xc.chunks(in_dim)) {
                for (i, &xi) in xt.iter().enumerate() {
                    axpy(yt, xi, &m[i * out_dim..(i + 1) * out_dim]);
                }
            }
        });
    y
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
        LoraInner::Tanh => hidden.iter_mut().for_each(|v| *v = v.tanh()),
        LoraInner::Sigmoid => hidden.iter_mut().for_each(|v| *v = sigmoid(*v)),
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
    for yt in y.chunks_mut(c) {
        for (v, b) in yt.iter_mut().zip(base) {
            *v += b;
        }
    }
    y
}

/// Decay of step 4: `dd = w0 + tanh(x_w W_w1) W_w2`, returns `lambda = exp(-exp(-0.5) *
/// sigmoid(dd))` in (0.545, 1), `L x c`.
pub fn decay(x_w: &[f32], c: usize, w0: &[f32], w1: &[f32], rank: usize, w2: &[f32]) -> Vec<f32> {
    let scale = (-0.5f32).exp();
    let mut dd = offset_lora(x_w, c, w0, w1, rank, w2, LoraInner::Tanh);
    dd.iter_mut()
        .for_each(|v| *v = (-scale * sigmoid(*v)).exp());
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
    a.iter_mut().for_each(|v| *v = sigmoid(*v));
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
    v.iter()
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
    for hd in y.chunks_mut(head_size) {
        let norm = hd
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum::<f64>()
            .sqrt();
        let denom = norm.max(f64::from(eps));
        hd.iter_mut()
            .for_each(|v| *v = (f64::from(*v) / denom) as f32);
    }
    y
}

/// Removal key of step 8: `kk = normalize(k * k_k)` per head, `L x c`.
pub fn removal_key(k: &[f32], c: usize, head_size: usize, k_k: &[f32]) -> Vec<f32> {
    check_len("removal_key k_k", k_k, c);
    let scaled: Vec<f32> = k
        .chunks(c)
        .flat_map(|kt| kt.iter().zip(k_k).map(|(a, b)| a * b))
        .collect();
    l2_normalize_heads(&scaled, c, head_size, L2_EPS)
}

/// Replacement key of step 8: `kt = k * (1 + (a - 1) * k_a)`, `L x c`.
pub fn replacement_key(k: &[f32], a: &[f32], c: usize, k_a: &[f32]) -> Vec<f32> {
    check_len("replacement_key a", a, k.len());
    check_len("replacement_key k_a", k_a, c);
    k.chunks(c)
        .zip(a.chunks(c))
        .flat_map(|(kt, at)| {
            kt.iter()
                .zip(at)
                .zip(k_a)
                .map(|((&kv, &av), &ka)| kv * (1.0 + (av - 1.0) * ka))
        })
        .collect()
}

/// Elementwise product `a * b` (the output gate).
pub fn mul(a: &[f32], b: &[f32]) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "ops::mul: lengths differ");
    a.iter().zip(b).map(|(x, y)| x * y).collect()
}

// ---------------------------------------------------------------------------------------------
// The delta-rule scan
// ---------------------------------------------------------------------------------------------

/// The four scan orders of the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScanDirection {
    /// d = 0: rows forward (left to right, top to bottom), `p = t`.
    RowsForward = 0,
    /// d = 1: rows backward, `p = L - 1 - t`.
    RowsBackward = 1,
    /// d = 2: columns forward (top to bottom, left to right), `p = (t mod h) * w + floor(t / h)`.
    ColsForward = 2,
    /// d = 3: columns backward, `p = pi_2(L - 1 - t)`.
    ColsBackward = 3,
}

impl ScanDirection {
    /// All four, in the spec's order `d = 0..4` (the order their outputs are summed).
    pub const ALL: [ScanDirection; 4] = [
        ScanDirection::RowsForward,
        ScanDirection::RowsBackward,
        ScanDirection::ColsForward,
        ScanDirection::ColsBackward,
    ];

    /// The spec's index `d`.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The direction with spec index `d`, if `d < 4`.
    pub fn from_index(d: usize) -> Option<Self> {
        Self::ALL.get(d).copied()
    }

    /// Canonical token position `p = pi_d(t)` visited at step `t` of an `h x w` image
    /// (`t < h * w`).
    #[inline]
    pub fn position(self, t: usize, h: usize, w: usize) -> usize {
        let l = h * w;
        let cols = |t: usize| (t % h) * w + t / h;
        match self {
            ScanDirection::RowsForward => t,
            ScanDirection::RowsBackward => l - 1 - t,
            ScanDirection::ColsForward => cols(t),
            ScanDirection::ColsBackward => cols(l - 1 - t),
        }
    }

    /// The whole visiting order `[pi_d(0), ..., pi_d(L - 1)]`.
    pub fn order(self, h: usize, w: usize) -> Vec<usize> {
        (0..h * w).map(|t| self.position(t, h, w)).collect()
    }
}

/// The per-token inputs of the recurrence, each `L x C` tokens (all heads).
#[derive(Clone, Copy, Debug)]
pub struct ScanInputs<'a> {
    /// Receptance `r` (the read-out vector).
    pub r: &'a [f32],
    /// Decay `lambda`.
    pub lambda: &'a [f32],
    /// Removal key `kk` (L2-normalised per head).
    pub kk: &'a [f32],
    /// In-context learning rate `a`.
    pub a: &'a [f32],
    /// Replacement key `kt`.
    pub kt: &'a [f32],
    /// Value `v` (after the value residual).
    pub v: &'a [f32],
}

/// The delta-rule recurrence for ONE head and ONE direction. Returns `y_d` for that head as
/// `L x N` (`N = head_size`), written at canonical positions `p`:
///
/// ```text
/// S = 0 (N x N, row i = value channel, column j = key channel)
/// for t in 0..L, p = pi_d(t):
///     sa_i    = sum_j S[i,j] kk_p[j]
///     S[i,j]  = S[i,j] lambda_p[j] - sa_i (a_p[j] kk_p[j]) + v_p[i] kt_p[j]
///     y[p, i] = sum_j S[i,j] r_p[j]
/// ```
/// where `x_p[j]` is channel `head * N + j` of token `p` of the `L x c` inputs.
pub fn delta_scan_head(
    direction: ScanDirection,
    h: usize,
    w: usize,
    c: usize,
    head_size: usize,
    head: usize,
    inputs: &ScanInputs<'_>,
) -> Vec<f32> {
    let l = h * w;
    let n = head_size;
    assert!(
        n > 0 && c.is_multiple_of(n) && head < c / n,
        "ops::delta_scan_head: head {head} out of range for {c} channels of size {n}"
    );
    for (name, s) in [
        ("r", inputs.r),
        ("lambda", inputs.lambda),
        ("kk", inputs.kk),
        ("a", inputs.a),
        ("kt", inputs.kt),
        ("v", inputs.v),
    ] {
        check_len(name, s, l * c);
    }
    // The state is kept transposed, `st[j * n + i] = S[i, j]`, so that every step is a sequence
    // of elementwise vector operations over the value channel `i` (no horizontal sums).
    let mut st = vec![0.0f32; n * n];
    let mut y = vec![0.0f32; l * n];
    let mut sa = vec![0.0f32; n];
    let off = head * n;
    for t in 0..l {
        let p = direction.position(t, h, w);
        let base = p * c + off;
        let r = &inputs.r[base..base + n];
        let lambda = &inputs.lambda[base..base + n];
        let kk = &inputs.kk[base..base + n];
        let a = &inputs.a[base..base + n];
        let kt = &inputs.kt[base..base + n];
        let v = &inputs.v[base..base + n];
        // sa = S kk
        sa.fill(0.0);
        for (col, &kkj) in st.chunks_exact(n).zip(kk) {
            axpy(&mut sa, kkj, col);
        }
        // S[:, j] = S[:, j] lambda_j - sa (a_j kk_j) + v kt_j;  y = S r (after the update)
        let yp = &mut y[p * n..(p + 1) * n];
        for (j, col) in st.chunks_exact_mut(n).enumerate() {
            let (lj, akkj, ktj, rj) = (lambda[j], a[j] * kk[j], kt[j], r[j]);
            for (((s, &sai), &vi), yi) in col.iter_mut().zip(&sa).zip(v).zip(yp.iter_mut()) {
                *s = *s * lj - sai * akkj + vi * ktj;
                *yi += *s * rj;
            }
        }
    }
    y
}

/// The recurrence for ONE direction and all heads (in parallel): `y_d` as `L x C`.
pub fn delta_scan(
    direction: ScanDirection,
    h: usize,
    w: usize,
    c: usize,
    head_size: usize,
    inputs: &ScanInputs<'_>,
) -> Vec<f32> {
    assert!(
        head_size > 0 && c.is_multiple_of(head_size),
        "ops::delta_scan: bad head size"
    );
    let heads = c / head_size;
    let per_head: Vec<Vec<f32>> = (0..heads)
        .into_par_iter()
        .map(|hd| delta_scan_head(direction, h, w, c, head_size, hd, inputs))
        .collect();
    let mut y = vec![0.0f32; h * w * c];
    scatter_heads(&mut y, &per_head, c, head_size, false);
    y
}

/// Steps 9-10: `y = y_0 + y_1 + y_2 + y_3` over the four directions, `L x C`. The twelve
/// (direction, head) scans run in parallel; the sum is taken in the order `d = 0, 1, 2, 3`.
pub fn delta_scan_all(
    h: usize,
    w: usize,
    c: usize,
    head_size: usize,
    inputs: &ScanInputs<'_>,
) -> Vec<f32> {
    assert!(
        head_size > 0 && c.is_multiple_of(head_size),
        "ops::delta_scan_all: bad head size"
    );
    let heads = c / head_size;
    let jobs: Vec<(ScanDirection, usize)> = ScanDirection::ALL
        .iter()
        .flat_map(|&d| (0..heads).map(move |hd| (d, hd)))
        .collect();
    let results: Vec<Vec<f32>> = jobs
        .par_iter()
        .map(|&(d, hd)| delta_scan_head(d, h, w, c, head_size, hd, inputs))
        .collect();
    let mut y = vec![0.0f32; h * w * c];
    for per_dir in results.chunks(heads) {
        scatter_heads(&mut y, per_dir, c, head_size, true);
    }
    y
}

/// Writes (or adds, when `accumulate`) per-head `L x N` arrays into an `L x C` array.
fn scatter_heads(y: &mut [f32], per_head: &[Vec<f32>], c: usize, n: usize, accumulate: bool) {
    for (hd, yh) in per_head.iter().enumerate() {
        for (yt, src) in y.chunks_mut(c).zip(yh.chunks(n)) {
            let dst = &mut yt[hd * n..(hd + 1) * n];
            if accumulate {
                dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
            } else {
                dst.copy_from_slice(src);
            }
        }
    }
}

/// Bonus term of step 12, `L x C`: for each token and head,
/// `(sum_j r_j kt_j r_k[head, j]) * v_head` (to be added to the GroupNorm output).
pub fn bonus(
    r: &[f32],
    kt: &[f32],
    v: &[f32],
    r_k: &[f32],
    c: usize,
    head_size: usize,
) -> Vec<f32> {
    assert!(
        head_size > 0 && c.is_multiple_of(head_size) && r.len().is_multiple_of(c),
        "ops::bonus: bad sizes"
    );
    check_len("bonus kt", kt, r.len());
    check_len("bonus v", v, r.len());
    check_len("bonus r_k", r_k, c);
    let n = head_size;
    let mut out = vec![0.0f32; r.len()];
    for (p, ot) in out.chunks_mut(c).enumerate() {
        for hd in 0..c / n {
            let base = p * c + hd * n;
            let mut s = 0.0f32;
            for j in 0..n {
                s += r[base + j] * kt[base + j] * r_k[hd * n + j];
            }
            for i in 0..n {
                ot[hd * n + i] = s * v[base + i];
            }
        }
    }
    out
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
    x.iter_mut().for_each(|v| {
        let r = v.max(0.0);
        *v = r * r;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approx(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "index {i}: {x} vs {y}"
            );
        }
    }

    #[test]
    fn dot_matches_naive() {
        let a: Vec<f32> = (0..19).map(|i| i as f32 * 0.5 - 3.0).collect();
        let b: Vec<f32> = (0..19).map(|i| (i as f32).sin()).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-4);
    }

    #[test]
    fn conv_identity_kernel_copies_input_plus_bias() {
        let (h, w) = (3, 4);
        let input: Vec<f32> = (0..2 * h * w).map(|i| i as f32).collect();
        // out0 = in0 (centre tap), out1 = in1 + 2
        let mut weight = vec![0.0; 2 * 2 * 9];
        weight[4] = 1.0; // o=0, i=0, centre
        weight[(2 + 1) * 9 + 4] = 1.0; // o=1, i=1
        let out = conv3x3(&input, 2, h, w, &weight, &[0.0, 2.0], 2);
        approx(&out[..12], &input[..12], 0.0);
        let expect: Vec<f32> = input[12..].iter().map(|v| v + 2.0).collect();
        approx(&out[12..], &expect, 0.0);
    }

    #[test]
    fn conv_shift_taps_and_zero_padding() {
        let (h, w) = (3, 3);
        let input: Vec<f32> = (1..=9).map(|i| i as f32).collect();
        // tap (ky=0, kx=0) reads input[y-1, x-1]
        let mut weight = vec![0.0; 9];
        weight[0] = 1.0;
        let out = conv3x3(&input, 1, h, w, &weight, &[0.0], 1);
        approx(&out, &[0., 0., 0., 0., 1., 2., 0., 4., 5.], 0.0);
        // tap (ky=2, kx=2) reads input[y+1, x+1]
        let mut weight = vec![0.0; 9];
        weight[8] = 1.0;
        let out = conv3x3(&input, 1, h, w, &weight, &[0.0], 1);
        approx(&out, &[5., 6., 0., 8., 9., 0., 0., 0., 0.], 0.0);
        // all ones: box sum
        let out = conv3x3(&input, 1, h, w, &[1.0; 9], &[0.0], 1);
        approx(&out, &[12., 21., 16., 27., 45., 33., 24., 39., 28.], 0.0);
    }

    #[test]
    fn conv_width_one() {
        let input = [1.0, 2.0, 3.0];
        let out = conv3x3(&input, 1, 3, 1, &[1.0; 9], &[0.5], 1);
        approx(&out, &[3.5, 6.5, 5.5], 0.0);
    }

    #[test]
    fn pixel_shuffle_matches_pytorch_layout() {
        // 4 channels of 1x2 -> 1 channel of 2x4.
        let input: Vec<f32> = (0..8).map(|i| i as f32).collect();
        // ch k holds [2k, 2k+1] at (0,0),(0,1); out[0, i, 2x + j] = in[i*2 + j, 0, x]
        let out = pixel_shuffle(&input, 4, 1, 2, 2);
        approx(&out, &[0., 2., 1., 3., 4., 6., 5., 7.], 0.0);
    }

    #[test]
    fn token_layout_round_trip() {
        let img: Vec<f32> = (0..2 * 3 * 2).map(|i| i as f32).collect();
        let t = image_to_tokens(&img, 2, 3, 2);
        assert_eq!(t[1], img[6]); // token 0, channel 1
        assert_eq!(tokens_to_image(&t, 2, 3, 2), img);
    }

    #[test]
    fn layer_norm_normalises() {
        let x = [1.0, 2.0, 3.0, 4.0, -1.0, -1.0, -1.0, -1.0];
        let y = layer_norm(&x, 4, &[1.0; 4], &[0.0; 4], 0.0);
        let s = (1.25f32).sqrt();
        approx(&y[..4], &[-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s], 1e-6);
        // a constant token normalises to zero (eps keeps it finite)
        let y = layer_norm(&x, 4, &[1.0; 4], &[0.0; 4], LN_EPS);
        approx(&y[4..], &[0.0; 4], 0.0);
        let y = layer_norm(&x, 4, &[2.0; 4], &[1.0; 4], LN_EPS);
        let s = (1.25f32 + LN_EPS).sqrt();
        approx(&y[..1], &[-3.0 / s + 1.0], 1e-6);
    }

    #[test]
    fn group_norm_per_head() {
        let x = [1.0, 3.0, 10.0, 30.0];
        let y = group_norm(&x, 4, 2, &[1.0; 4], &[0.0; 4], 0.0);
        approx(&y, &[-1.0, 1.0, -1.0, 1.0], 1e-6);
    }

    #[test]
    fn token_shift_quarters() {
        // 2x2 image, C = N = 4: channel q reads left/right/up/down.
        let (h, w, c) = (2, 2, 4);
        let x: Vec<f32> = (0..h * w * c)
            .map(|i| (i / c * 10 + i % c) as f32 + 1.0)
            .collect();
        let xs = token_shift_2d(&x, h, w, c, 4);
        let at = |p: usize, ch: usize| x[p * c + ch];
        // token 0 (row 0, col 0): left none, right = token 1, above none, below = token 2
        approx(&xs[0..4], &[0.0, at(1, 1), 0.0, at(2, 3)], 0.0);
        // token 3 (row 1, col 1): left = token 2, right none, above = token 1, below none
        approx(&xs[12..16], &[at(2, 0), 0.0, at(1, 2), 0.0], 0.0);
        let d = token_shift_delta(&x, h, w, c, 4);
        assert_eq!(d[1], at(1, 1) - at(0, 1));
    }

    #[test]
    fn token_shift_quarters_follow_head_size() {
        // C = 16, N = 8: channels 0,1 left; 2,3 right; 4,5 up; 6,7 down; then again for head 1.
        let (h, w, c) = (1, 3, 16);
        let x: Vec<f32> = (0..h * w * c).map(|i| (i / c) as f32 + 1.0).collect();
        let xs = token_shift_2d(&x, h, w, c, 8);
        let mid = &xs[c..2 * c];
        let expect = [
            1., 1., 3., 3., 0., 0., 0., 0., 1., 1., 3., 3., 0., 0., 0., 0.,
        ];
        approx(mid, &expect, 0.0);
    }

    #[test]
    fn linear_and_matmul_conventions() {
        // x = [1, 2], W = [[1, 0], [0, 1], [1, 1]] ([out=3, in=2]) -> [1, 2, 3]
        let y = linear(&[1.0, 2.0], 2, &[1., 0., 0., 1., 1., 1.], 3);
        approx(&y, &[1.0, 2.0, 3.0], 0.0);
        // M [in=2, out=3] = [[1, 0, 1], [0, 1, 1]] -> same result
        let y = matmul(&[1.0, 2.0], 2, &[1., 0., 1., 0., 1., 1.], 3);
        approx(&y, &[1.0, 2.0, 3.0], 0.0);
    }

    #[test]
    fn decay_range_and_zero_lora() {
        let c = 2;
        let lam = decay(&[5.0, -5.0], c, &[-100.0, 100.0], &[0.0; 2], 1, &[0.0; 2]);
        approx(&lam, &[1.0, (-(-0.5f32).exp()).exp()], 1e-6);
        let a = icl_rate(&[1.0, 1.0], c, &[0.0, 0.0], &[1.0, 1.0], 1, &[1.0, -1.0]);
        approx(&a, &[sigmoid(2.0), sigmoid(-2.0)], 1e-6);
        let g = gate(&[0.0, 0.0], c, &[1.0, 1.0], 1, &[2.0, 4.0]);
        approx(&g, &[1.0, 2.0], 1e-6);
        let v = value_residual(
            &[1.0, 1.0],
            &[3.0, 3.0],
            &[0.0, 0.0],
            c,
            &[0.0, 100.0],
            &[0.0; 2],
            1,
            &[0.0; 2],
        );
        approx(&v, &[2.0, 3.0], 1e-6);
    }

    #[test]
    fn keys() {
        let k = [3.0, 4.0, 0.0, 0.0];
        let kk = removal_key(&k, 4, 2, &[1.0; 4]);
        approx(&kk, &[0.6, 0.8, 0.0, 0.0], 1e-6);
        let kt = replacement_key(&k, &[0.5; 4], 4, &[1.0, 0.0, 1.0, 1.0]);
        approx(&kt, &[1.5, 4.0, 0.0, 0.0], 1e-6);
    }

    #[test]
    fn scan_orders() {
        let (h, w) = (2, 3);
        assert_eq!(
            ScanDirection::RowsForward.order(h, w),
            vec![0, 1, 2, 3, 4, 5]
        );
        assert_eq!(
            ScanDirection::RowsBackward.order(h, w),
            vec![5, 4, 3, 2, 1, 0]
        );
        assert_eq!(
            ScanDirection::ColsForward.order(h, w),
            vec![0, 3, 1, 4, 2, 5]
        );
        assert_eq!(
            ScanDirection::ColsBackward.order(h, w),
            vec![5, 2, 4, 1, 3, 0]
        );
    }

    /// With lambda = 1 and a = 0 the state is the running sum of v kt^T, so
    /// y_p = sum over visited tokens q (up to and including p) of v_q (kt_q . r_p).
    #[test]
    fn scan_without_decay_is_a_cumulative_sum() {
        let (h, w, c, n) = (2, 3, 4, 2);
        let l = h * w;
        let f = |s: f32| -> Vec<f32> { (0..l * c).map(|i| ((i as f32) * s).sin()).collect() };
        let (r, kk, kt, v) = (f(0.7), f(1.3), f(2.1), f(0.37));
        let lambda = vec![1.0; l * c];
        let a = vec![0.0; l * c];
        let inputs = ScanInputs {
            r: &r,
            lambda: &lambda,
            kk: &kk,
            a: &a,
            kt: &kt,
            v: &v,
        };
        for dir in ScanDirection::ALL {
            let order = dir.order(h, w);
            let y = delta_scan(dir, h, w, c, n, &inputs);
            for hd in 0..c / n {
                for (t, &p) in order.iter().enumerate() {
                    for i in 0..n {
                        let mut expect = 0.0f32;
                        for &q in &order[..=t] {
                            let ktr: f32 = (0..n)
                                .map(|j| kt[q * c + hd * n + j] * r[p * c + hd * n + j])
                                .sum();
                            expect += v[q * c + hd * n + i] * ktr;
                        }
                        let got = y[p * c + hd * n + i];
                        assert!(
                            (got - expect).abs() < 1e-5,
                            "{dir:?} head {hd} t {t}: {got} vs {expect}"
                        );
                    }
                }
            }
        }
    }

    /// A naive f64 transcription of the matrix form of the recurrence.
    #[test]
    #[allow(clippy::needless_range_loop)]
    fn scan_matches_matrix_form() {
        let (h, w, c, n) = (3, 2, 8, 4);
        let l = h * w;
        let f = |s: f32, lo: f32, hi: f32| -> Vec<f32> {
            (0..l * c)
                .map(|i| lo + (hi - lo) * (0.5 + 0.5 * ((i as f32) * s).sin()))
                .collect()
        };
        let r = f(0.7, -1.0, 1.0);
        let lambda = f(1.1, 0.55, 1.0);
        let kk = l2_normalize_heads(&f(1.3, -1.0, 1.0), c, n, L2_EPS);
        let a = f(0.9, 0.0, 1.0);
        let kt = f(2.1, -1.0, 1.0);
        let v = f(0.37, -1.0, 1.0);
        let inputs = ScanInputs {
            r: &r,
            lambda: &lambda,
            kk: &kk,
            a: &a,
            kt: &kt,
            v: &v,
        };
        let all = delta_scan_all(h, w, c, n, &inputs);
        let mut sum = vec![0.0f64; l * c];
        for dir in ScanDirection::ALL {
            for hd in 0..c / n {
                let g = |x: &[f32], p: usize, j: usize| f64::from(x[p * c + hd * n + j]);
                let mut s = vec![vec![0.0f64; n]; n];
                for p in dir.order(h, w) {
                    let sk: Vec<f64> = (0..n)
                        .map(|i| (0..n).map(|j| s[i][j] * g(&kk, p, j)).sum())
                        .collect();
                    for i in 0..n {
                        for j in 0..n {
                            s[i][j] = s[i][j] * g(&lambda, p, j)
                                - sk[i] * g(&a, p, j) * g(&kk, p, j)
                                + g(&v, p, i) * g(&kt, p, j);
                        }
                    }
                    for i in 0..n {
                        sum[p * c + hd * n + i] +=
                            (0..n).map(|j| s[i][j] * g(&r, p, j)).sum::<f64>();
                    }
                }
            }
        }
        let expect: Vec<f32> = sum.iter().map(|&x| x as f32).collect();
        approx(&all, &expect, 1e-5);
    }

    #[test]
    fn bonus_term() {
        // one head of 2: s = r0 kt0 rk0 + r1 kt1 rk1 = 1*2*0.5 + 3*1*1 = 4
        let out = bonus(&[1.0, 3.0], &[2.0, 1.0], &[1.0, -2.0], &[0.5, 1.0], 2, 2);
        approx(&out, &[4.0, -8.0], 0.0);
    }

    #[test]
    fn channel_mix_small() {
        // 1x1 image: shift reads zeros, d = -x, x_k = x (1 - mu).
        let out = channel_mix(
            &[2.0, -1.0],
            1,
            1,
            2,
            2,
            &[0.5, 0.5],
            &[1., 0., 0., 1.],
            &[1., 1., 0., 1.],
            2,
        );
        // x_k = [1, -0.5]; k = relu^2 = [1, 0]; out = [1*1 + 0*1, 0*1 + 0*1]
        approx(&out, &[1.0, 0.0], 0.0);
    }

    #[test]
    fn leaky() {
        approx(&leaky_relu(&[-2.0, 3.0], LEAKY_SLOPE), &[-0.02, 3.0], 1e-7);
    }
}
