//! The delta-rule scan: one head along one scan order, all heads, the four directions, and the
//! bonus term.

use rayon::prelude::*;

use super::check_len;

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
    let mut y = vec![0.0f32; l * n];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU supports AVX-512F (checked just above).
        unsafe { scan_head_avx512(direction, h, w, c, n, head, inputs, &mut y) };
        return y;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        unsafe { scan_head_avx2(direction, h, w, c, n, head, inputs, &mut y) };
        return y;
    }
    scan_head_sized(direction, h, w, c, n, head, inputs, &mut y);
    y
}

/// [`scan_head_sized`] compiled for AVX-512F (see [`scan_head_avx2`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn scan_head_avx512(
    direction: ScanDirection,
    h: usize,
    w: usize,
    c: usize,
    n: usize,
    head: usize,
    inputs: &ScanInputs<'_>,
    y: &mut [f32],
) {
    if n == 32 {
        scan_head_avx512_32(direction, h, w, c, head, inputs, y);
    } else {
        scan_head_sized(direction, h, w, c, n, head, inputs, y);
    }
}

/// [`scan_head_core`] for heads of 32 in AVX-512 intrinsics: each state column is two `zmm`
/// vectors; `sa`, `v`, `y_p` and the next `sa` stay in registers. The operations are those of the
/// portable code in the same order (multiplies and adds, no fused ones), so the results are the
/// same bit for bit.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn scan_head_avx512_32(
    direction: ScanDirection,
    h: usize,
    w: usize,
    c: usize,
    head: usize,
    inputs: &ScanInputs<'_>,
    y: &mut [f32],
) {
    use std::arch::x86_64::{__m512, _mm512_add_ps, _mm512_loadu_ps, _mm512_mul_ps};
    use std::arch::x86_64::{_mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps, _mm512_sub_ps};
    const N: usize = 32;
    let l = h * w;
    let mut st = vec![0.0f32; N * N];
    let off = head * N;
    let zero = _mm512_setzero_ps();
    let mut sa = [zero, zero];
    let zeros = [0.0f32; N];
    // SAFETY (all loads and stores below): each pointer is the start of a checked slice of at
    // least 16 (or 32) values.
    let load2 = |s: &[f32]| -> [__m512; 2] {
        let s = &s[..N];
        unsafe {
            [
                _mm512_loadu_ps(s.as_ptr()),
                _mm512_loadu_ps(s[16..].as_ptr()),
            ]
        }
    };
    for t in 0..l {
        let p = direction.position(t, h, w);
        let base = p * c + off;
        let r = &inputs.r[base..base + N];
        let lambda = &inputs.lambda[base..base + N];
        let kk = &inputs.kk[base..base + N];
        let a = &inputs.a[base..base + N];
        let kt = &inputs.kt[base..base + N];
        let v = load2(&inputs.v[base..base + N]);
        let kk_next = if t + 1 < l {
            let q = direction.position(t + 1, h, w) * c + off;
            if t + 2 < l {
                prefetch_token(inputs, direction.position(t + 2, h, w) * c + off, N);
            }
            &inputs.kk[q..q + N]
        } else {
            &zeros[..]
        };
        let mut yp = [zero, zero];
        let mut sn = [zero, zero];
        for (j, col) in st.chunks_exact_mut(N).enumerate() {
            let col = &mut col[..N];
            let lj = _mm512_set1_ps(lambda[j]);
            let akkj = _mm512_set1_ps(a[j] * kk[j]);
            let ktj = _mm512_set1_ps(kt[j]);
            let rj = _mm512_set1_ps(r[j]);
            let knj = _mm512_set1_ps(kk_next[j]);
            for half in 0..2 {
                let ptr = col[16 * half..].as_mut_ptr();
                let s0 = unsafe { _mm512_loadu_ps(ptr) };
                // s * lj - sa * akkj + v * ktj
                let s1 = _mm512_add_ps(
                    _mm512_sub_ps(_mm512_mul_ps(s0, lj), _mm512_mul_ps(sa[half], akkj)),
                    _mm512_mul_ps(v[half], ktj),
                );
                unsafe { _mm512_storeu_ps(ptr, s1) };
                yp[half] = _mm512_add_ps(yp[half], _mm512_mul_ps(s1, rj));
                sn[half] = _mm512_add_ps(sn[half], _mm512_mul_ps(knj, s1));
            }
        }
        let dst = &mut y[p * N..(p + 1) * N];
        unsafe {
            _mm512_storeu_ps(dst.as_mut_ptr(), yp[0]);
            _mm512_storeu_ps(dst[16..].as_mut_ptr(), yp[1]);
        }
        sa = sn;
    }
}

/// [`scan_head_sized`] compiled for AVX2: the loops are elementwise over the value channel, so the
/// wider vectors give the same results bit for bit (no fused multiply-adds).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn scan_head_avx2(
    direction: ScanDirection,
    h: usize,
    w: usize,
    c: usize,
    n: usize,
    head: usize,
    inputs: &ScanInputs<'_>,
    y: &mut [f32],
) {
    scan_head_sized(direction, h, w, c, n, head, inputs, y);
}

/// Dispatches the common head sizes to copies of [`scan_head_core`] with a constant size (fully
/// unrolled, the accumulators in registers).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn scan_head_sized(
    direction: ScanDirection,
    h: usize,
    w: usize,
    c: usize,
    n: usize,
    head: usize,
    inputs: &ScanInputs<'_>,
    y: &mut [f32],
) {
    match n {
        16 => scan_head_core(direction, h, w, c, 16, head, inputs, y),
        32 => scan_head_core(direction, h, w, c, 32, head, inputs, y),
        64 => scan_head_core(direction, h, w, c, 64, head, inputs, y),
        _ => scan_head_core(direction, h, w, c, n, head, inputs, y),
    }
}

/// The recurrence of [`delta_scan_head`], writing `y` (`L x N`, zeroed).
///
/// The state is kept transposed, `st[j * n + i] = S[i, j]`, so that every step is a sequence of
/// elementwise vector operations over the value channel `i` (no horizontal sums). One pass over
/// the state per step: while column `j` is updated, it is accumulated into `y_p` (with `r_p[j]`)
/// and into the next step's `sa` (with the next token's `kk[j]`), in the same order `j = 0..N`
/// as a separate `sa = S kk` pass would.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn scan_head_core(
    direction: ScanDirection,
    h: usize,
    w: usize,
    c: usize,
    n: usize,
    head: usize,
    inputs: &ScanInputs<'_>,
    y: &mut [f32],
) {
    let l = h * w;
    let mut st = vec![0.0f32; n * n];
    // `sa = S kk` for the current step; S = 0 before the first.
    let mut sa = vec![0.0f32; n];
    let mut sa_next = vec![0.0f32; n];
    let off = head * n;
    let zeros = vec![0.0f32; n];
    for t in 0..l {
        let p = direction.position(t, h, w);
        let base = p * c + off;
        let r = &inputs.r[base..base + n];
        let lambda = &inputs.lambda[base..base + n];
        let kk = &inputs.kk[base..base + n];
        let a = &inputs.a[base..base + n];
        let kt = &inputs.kt[base..base + n];
        let v = &inputs.v[base..base + n];
        let kk_next = if t + 1 < l {
            let q = direction.position(t + 1, h, w) * c + off;
            if t + 2 < l {
                prefetch_token(inputs, direction.position(t + 2, h, w) * c + off, n);
            }
            &inputs.kk[q..q + n]
        } else {
            &zeros[..]
        };
        // S[:, j] = S[:, j] lambda_j - sa (a_j kk_j) + v kt_j;  y = S r (after the update);
        // sa_next = S kk_next (after the update).
        let yp = &mut y[p * n..(p + 1) * n];
        sa_next.fill(0.0);
        for (j, col) in st.chunks_exact_mut(n).enumerate() {
            let (lj, akkj, ktj, rj, knj) = (lambda[j], a[j] * kk[j], kt[j], r[j], kk_next[j]);
            for ((((s, &sai), &vi), yi), sn) in col
                .iter_mut()
                .zip(&sa)
                .zip(v)
                .zip(yp.iter_mut())
                .zip(sa_next.iter_mut())
            {
                *s = *s * lj - sai * akkj + vi * ktj;
                *yi += *s * rj;
                *sn += knj * *s;
            }
        }
        std::mem::swap(&mut sa, &mut sa_next);
    }
}

/// Hints the cache to load the six `n`-channel input runs at flat offset `base` (a later step).
#[inline(always)]
fn prefetch_token(inputs: &ScanInputs<'_>, base: usize, n: usize) {
    #[cfg(target_arch = "x86_64")]
    for s in [
        inputs.r,
        inputs.lambda,
        inputs.kk,
        inputs.a,
        inputs.kt,
        inputs.v,
    ] {
        let run = &s[base..base + n];
        for line in run.chunks(16) {
            // SAFETY: a prefetch is only a hint; the address is inside `s`.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    line.as_ptr().cast(),
                );
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (inputs, base, n);
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
    out.par_chunks_mut(c)
        .enumerate()
        .with_min_len(64)
        .for_each(|(p, ot)| {
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
        });
    out
}
