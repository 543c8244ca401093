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

mod image;
mod scan;
mod tokens;

pub use image::*;
pub use scan::*;
pub use tokens::*;

#[cfg(test)]
mod tests;
