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
/// Elements per parallel work item of the elementwise layers.
const ELEM_CHUNK: usize = 4096;
/// Tokens (rows) per work item of the linear layers.
const GEMM_ROWS: usize = 256;

fn check_len(name: &str, slice: &[f32], expected: usize) {
    assert_eq!(
        slice.len(),
        expected,
        "ops: `{name}` has {} elements, expected {expected}",
        slice.len()
    );
}

/// Logistic sigmoid `1 / (1 + exp(-x))` (with [`exp_f32`]).
#[inline]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

/// `e^x` in `f32`, within 2 ulp of the exact value (Cephes' `expf`: Cody-Waite reduction by
/// `ln 2` and a degree-7 polynomial; the unit test checks the bound against `f64`). Without
/// branches or calls, so that loops over slices vectorise, unlike the C library's `expf`. `x` is
/// clamped to `[-87.33, 88.37]`: the result stays a normal float (no infinity), about 1.2e-38 at
/// the low end; NaN stays NaN.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    // `clamp`, not `max`/`min`: a NaN passes through (and gives NaN below).
    let x = x.clamp(-87.33, 88.37);
    // k = round(x / ln 2), by the 1.5 * 2^23 rounding trick (round half to even): `kf` is
    // 1.5 * 2^23 + k, whose bits are those of 1.5 * 2^23 plus k.
    let kf = x * std::f32::consts::LOG2_E + 12_582_912.0;
    let k = kf - 12_582_912.0;
    // r = x - k ln 2 with ln 2 = C1 + C2, C1 exact in 9 bits (k C1 is exact).
    let r = (x - k * 0.693_359_4) - k * -2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let e = p * (r * r) + r + 1.0;
    // 2^k for k in [-126, 127]: a normal float built from its exponent bits (integer
    // arithmetic on the bits of `kf`, no float-to-integer conversion, so that it vectorises).
    let biased = kf.to_bits().wrapping_sub(0x4B40_0000).wrapping_add(127);
    e * f32::from_bits(biased << 23)
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

/// Strides of a matrix operand of [`gemm`]: element `(i, j)` is at `i * rows + j * cols`.
#[derive(Clone, Copy, Debug)]
struct Strides {
    rows: usize,
    cols: usize,
}

impl Strides {
    /// Row-major with `cols` columns.
    const fn row_major(cols: usize) -> Self {
        Self {
            rows: cols,
            cols: 1,
        }
    }

    /// Column-major with `rows` rows (a row-major matrix read transposed).
    const fn col_major(rows: usize) -> Self {
        Self {
            rows: 1,
            cols: rows,
        }
    }

    /// Smallest slice length holding an `r x c` matrix with these strides.
    fn extent(self, r: usize, c: usize) -> usize {
        if r == 0 || c == 0 {
            0
        } else {
            (r - 1) * self.rows + (c - 1) * self.cols + 1
        }
    }
}

/// `c = a b + beta c` for an `m x k` matrix `a`, a `k x n` matrix `b` and an `m x n` matrix `c`,
/// each with its own strides (`matrixmultiply::sgemm`, on the calling thread). For a given `k`
/// every element of `c` is the same sequence of operations whatever `m` and `n` are, so splitting
/// the rows of `a` and `c` over threads does not change the result.
///
/// # Panics
/// When a slice is too short for its matrix, or when the strides of `c` would write one element
/// twice.
#[allow(clippy::too_many_arguments)]
fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    sa: Strides,
    b: &[f32],
    sb: Strides,
    beta: f32,
    c: &mut [f32],
    sc: Strides,
) {
    assert!(a.len() >= sa.extent(m, k), "ops::gemm: `a` is too short");
    assert!(b.len() >= sb.extent(k, n), "ops::gemm: `b` is too short");
    assert!(c.len() >= sc.extent(m, n), "ops::gemm: `c` is too short");
    let (r, q) = (sc.rows, sc.cols);
    assert!(
        (q >= 1 && r >= n * q) || (r >= 1 && q >= m * r),
        "ops::gemm: the strides of `c` address an element twice"
    );
    if m == 0 || n == 0 {
        return;
    }
    // A stride above `isize::MAX` can only belong to a dimension of size 1, where it is never
    // used: for any longer dimension the extent checks above bound it by a slice length.
    let s = |v: usize| isize::try_from(v).unwrap_or(isize::MAX);
    // SAFETY: the asserts above keep every element `(i, j)` addressed through these pointers and
    // strides inside its slice; `c` is a unique borrow, so it overlaps neither `a` nor `b`, and its
    // strides address distinct elements (row-major or column-major without overlap).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            s(sa.rows),
            s(sa.cols),
            b.as_ptr(),
            s(sb.rows),
            s(sb.cols),
            beta,
            c.as_mut_ptr(),
            s(sc.rows),
            s(sc.cols),
        );
    }
}

pub mod fused;
mod image;
mod rows;
pub(crate) mod scan;
mod tokens;

pub use image::*;
pub use scan::*;
pub use tokens::*;

#[cfg(test)]
mod tests;
