//! Image layers (CHW feature maps): 3x3 convolution, pixel shuffle, LeakyReLU, and the
//! image <-> token layout changes.

use rayon::prelude::*;

use super::{axpy, check_len};

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
