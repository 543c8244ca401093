//! Image layers (CHW feature maps): 3x3 convolution, pixel shuffle, LeakyReLU, and the
//! image <-> token layout changes.

use rayon::prelude::*;

use super::rows::PackedB;
use super::{ELEM_CHUNK, Strides, check_len, gemm};

/// Output pixels per im2col band of [`conv3x3`] (whole rows, at least one).
const CONV_PIXELS: usize = 512;
/// Tokens (or channel planes) per work item of the layout changes.
const TRANSPOSE_BLOCK: usize = 16;

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
    if plane == 0 || c_out == 0 {
        return out;
    }
    // im2col + GEMM on bands of whole rows: for each band, `col` holds the `9 c_in` shifted input
    // rows of every output pixel (`col[(i * 9 + ky * 3 + kx) * m + pixel]`, zero outside the
    // image) and `tile = weight col + bias` is the band's `c_out x m` output.
    let kdim = c_in * 9;
    let band_rows = (CONV_PIXELS / w).clamp(1, h);
    let bands: Vec<usize> = (0..h).step_by(band_rows).collect();
    let tiles: Vec<Vec<f32>> = bands
        .par_iter()
        .map(|&y0| {
            let y1 = (y0 + band_rows).min(h);
            let m = (y1 - y0) * w;
            let mut col = vec![0.0f32; kdim * m];
            for (tap, dst) in col.chunks_exact_mut(m).enumerate() {
                let (i, ky, kx) = (tap / 9, tap % 9 / 3, tap % 3);
                let src = &input[i * plane..(i + 1) * plane];
                for (y, drow) in (y0..y1).zip(dst.chunks_exact_mut(w)) {
                    // Source row y + ky - 1, zero outside the image.
                    let Some(sy) = (y + ky).checked_sub(1).filter(|&sy| sy < h) else {
                        continue;
                    };
                    let srow = &src[sy * w..(sy + 1) * w];
                    match kx {
                        // Left neighbour: drow[x] = src[x - 1] for x >= 1.
                        0 => drow[1..].copy_from_slice(&srow[..w - 1]),
                        1 => drow.copy_from_slice(srow),
                        // Right neighbour: drow[x] = src[x + 1] for x <= w - 2.
                        _ => drow[..w - 1].copy_from_slice(&srow[1..]),
                    }
                }
            }
            let mut tile = vec![0.0f32; c_out * m];
            for (t, &b) in tile.chunks_exact_mut(m).zip(bias) {
                t.fill(b);
            }
            gemm(
                c_out,
                kdim,
                m,
                weight,
                Strides::row_major(kdim),
                &col,
                Strides::row_major(m),
                1.0,
                &mut tile,
                Strides::row_major(m),
            );
            tile
        })
        .collect();
    out.par_chunks_mut(plane).enumerate().for_each(|(o, dst)| {
        for (&y0, tile) in bands.iter().zip(&tiles) {
            let m = tile.len() / c_out;
            dst[y0 * w..y0 * w + m].copy_from_slice(&tile[o * m..(o + 1) * m]);
        }
    });
    out
}

/// Pixels per work item of [`conv3x3_tokens_into`].
const CONV_TOKENS: usize = 128;

/// [`conv3x3`] on tokens: `x` is `L x c_in` tokens of an `h x w` image, the result `L x c_out`
/// tokens into `y` (every value written), then `epilogue(first_token, rows)` on each band of
/// finished tokens. Each band of [`CONV_TOKENS`] pixels is an im2col of whole pixels (a pixel's
/// nine taps of `c_in` values contiguous, tap-major, zero outside the image) times the reordered
/// weights on the token-rows kernel of the linear layers, plus the bias. The same sum as
/// [`conv3x3`] in another order (taps outer, channels inner; the bias last), so the values agree
/// to rounding, not bit for bit.
#[allow(clippy::too_many_arguments)]
pub fn conv3x3_tokens_into<E>(
    x: &[f32],
    c_in: usize,
    h: usize,
    w: usize,
    weight: &[f32],
    bias: &[f32],
    c_out: usize,
    y: &mut [f32],
    epilogue: E,
) where
    E: Fn(usize, &mut [f32]) + Sync,
{
    let l = h * w;
    check_len("conv3x3_tokens x", x, l * c_in);
    check_len("conv3x3_tokens weight", weight, c_out * c_in * 9);
    check_len("conv3x3_tokens bias", bias, c_out);
    check_len("conv3x3_tokens y", y, l * c_out);
    if l == 0 || c_out == 0 || c_in == 0 {
        y.fill(0.0);
        for (t0, band) in y.chunks_mut(CONV_TOKENS * c_out.max(1)).enumerate() {
            for yt in band.chunks_mut(c_out.max(1)) {
                yt.copy_from_slice(&bias[..yt.len()]);
            }
            epilogue(t0 * CONV_TOKENS, band);
        }
        return;
    }
    let kdim = 9 * c_in;
    // Weights as `[c_out][tap][c_in]` (a linear layer's `[out, in]` with `in = kdim`).
    let mut wp = vec![0.0f32; c_out * kdim];
    for (o, wo) in wp.chunks_exact_mut(kdim).enumerate() {
        for i in 0..c_in {
            for tap in 0..9 {
                wo[tap * c_in + i] = weight[(o * c_in + i) * 9 + tap];
            }
        }
    }
    let pb = PackedB::new(&wp, Strides::col_major(kdim), kdim, c_out);
    y.par_chunks_mut(CONV_TOKENS * c_out)
        .enumerate()
        .for_each_init(
            || vec![0.0f32; CONV_TOKENS * kdim],
            |col, (band, yc)| {
                let p0 = band * CONV_TOKENS;
                let m = yc.len() / c_out;
                let col = &mut col[..m * kdim];
                for (q, patch) in col.chunks_exact_mut(kdim).enumerate() {
                    let p = p0 + q;
                    let (row, cx) = (p / w, p % w);
                    for (tap, dst) in patch.chunks_exact_mut(c_in).enumerate() {
                        let (sy, sx) = (
                            (row + tap / 3).checked_sub(1),
                            (cx + tap % 3).checked_sub(1),
                        );
                        match (sy, sx) {
                            (Some(sy), Some(sx)) if sy < h && sx < w => {
                                let s = sy * w + sx;
                                dst.copy_from_slice(&x[s * c_in..(s + 1) * c_in]);
                            }
                            _ => dst.fill(0.0),
                        }
                    }
                }
                pb.times_into(col, yc);
                for yt in yc.chunks_exact_mut(c_out) {
                    yt.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
                }
                epilogue(p0, yc);
            },
        );
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
    if ho * wo == 0 {
        return out;
    }
    out.par_chunks_mut(ho * wo)
        .enumerate()
        .for_each(|(ch, oplane)| {
            for i in 0..r {
                for j in 0..r {
                    let src = &input[(ch * r * r + i * r + j) * h * w..][..h * w];
                    for y in 0..h {
                        let orow = &mut oplane[(y * r + i) * wo..][..wo];
                        for x in 0..w {
                            orow[x * r + j] = src[y * w + x];
                        }
                    }
                }
            }
        });
    out
}

/// LeakyReLU: `x` if `x >= 0`, else `slope * x`, elementwise.
pub fn leaky_relu(x: &[f32], slope: f32) -> Vec<f32> {
    x.par_iter()
        .with_min_len(ELEM_CHUNK)
        .map(|&v| if v >= 0.0 { v } else { slope * v })
        .collect()
}

/// CHW image `[c, h, w]` to `L x C` tokens.
pub fn image_to_tokens(img: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
    check_len("image_to_tokens img", img, c * h * w);
    let l = h * w;
    let mut t = vec![0.0f32; l * c];
    if c == 0 {
        return t;
    }
    // Blocks of tokens: each reads a short run of every channel plane.
    t.par_chunks_mut(c * TRANSPOSE_BLOCK)
        .enumerate()
        .for_each(|(blk, tc)| {
            let p0 = blk * TRANSPOSE_BLOCK;
            for ch in 0..c {
                for (q, tt) in tc.chunks_exact_mut(c).enumerate() {
                    tt[ch] = img[ch * l + p0 + q];
                }
            }
        });
    t
}

/// `L x C` tokens to a CHW image `[c, h, w]`.
pub fn tokens_to_image(tokens: &[f32], c: usize, h: usize, w: usize) -> Vec<f32> {
    check_len("tokens_to_image tokens", tokens, c * h * w);
    let l = h * w;
    let mut img = vec![0.0f32; l * c];
    if l == 0 {
        return img;
    }
    // Blocks of channel planes: each reads a short run of every token.
    img.par_chunks_mut(l * TRANSPOSE_BLOCK)
        .enumerate()
        .for_each(|(blk, planes)| {
            let c0 = blk * TRANSPOSE_BLOCK;
            for (p, tok) in tokens.chunks_exact(c).enumerate() {
                for (k, plane) in planes.chunks_exact_mut(l).enumerate() {
                    plane[p] = tok[c0 + k];
                }
            }
        });
    img
}

/// Elementwise sum `a + b` (residual connections).
pub fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "ops::add: lengths differ");
    a.par_iter()
        .with_min_len(ELEM_CHUNK)
        .zip(b)
        .map(|(x, y)| x + y)
        .collect()
}
