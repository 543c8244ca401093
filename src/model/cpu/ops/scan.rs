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
    scan_head_into(direction, h, w, c, n, head, inputs, &mut y);
    y
}

/// The instruction set the scan runs with, detected at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScanIsa {
    /// AVX-512F with FMA: intrinsics for heads of 32, a compiled copy of the fused generic code
    /// for other sizes.
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// AVX2 with FMA: a compiled copy of the fused generic code.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// The generic code with separate multiplies and adds (no FMA instructions to rely on).
    Portable,
}

impl ScanIsa {
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let fma = std::arch::is_x86_feature_detected!("fma");
            if fma && std::arch::is_x86_feature_detected!("avx512f") {
                return ScanIsa::Avx512;
            }
            if fma && std::arch::is_x86_feature_detected!("avx2") {
                return ScanIsa::Avx2;
            }
        }
        ScanIsa::Portable
    }
}

/// The recurrence of [`delta_scan_head`] into `y` (`L x N`, any contents: every value is
/// written), on the detected instruction set.
#[allow(clippy::too_many_arguments)]
pub(crate) fn scan_head_into(
    direction: ScanDirection,
    h: usize,
    w: usize,
    c: usize,
    n: usize,
    head: usize,
    inputs: &ScanInputs<'_>,
    y: &mut [f32],
) {
    check_len("scan output", y, h * w * n);
    match ScanIsa::detect() {
        #[cfg(target_arch = "x86_64")]
        ScanIsa::Avx512 if n == 32 => {
            let cols = matches!(
                direction,
                ScanDirection::ColsForward | ScanDirection::ColsBackward
            );
            let mut packed = vec![0.0f32; h * w * PACKED * n];
            pack_head(inputs, h, w, c, n, head, cols, &mut packed);
            let pos = cols.then(|| visit_order(ScanDirection::ColsForward, h, w));
            scan_packed(direction, n, &packed, pos.as_deref(), y);
        }
        // SAFETY: `ScanIsa::detect` found AVX-512F and FMA.
        #[cfg(target_arch = "x86_64")]
        ScanIsa::Avx512 => unsafe { scan_head_avx512(direction, h, w, c, n, head, inputs, y) },
        // SAFETY: `ScanIsa::detect` found AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        ScanIsa::Avx2 => unsafe { scan_head_avx2(direction, h, w, c, n, head, inputs, y) },
        ScanIsa::Portable => {
            scan_head_sized::<false>(direction, h, w, c, n, head, inputs, y);
        }
    }
}

/// [`scan_head_sized`] (fused) compiled for AVX-512F (heads of 32 take [`scan_packed`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
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
    scan_head_sized::<true>(direction, h, w, c, n, head, inputs, y);
}

/// Values per visited token of a packed head ([`pack_head`]): `r`, `lambda`, `kk`, `a kk`, `kt`,
/// `v`, `N` each.
pub(crate) const PACKED: usize = 6;

/// Tokens per parallel work item of [`pack_head`].
const PACK_TOKENS: usize = 256;

/// Whether [`scan_packed`] runs on this CPU for heads of `n` (AVX-512F and FMA, heads of 32).
pub(crate) fn packed_kernel(n: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    if n == 32 && ScanIsa::detect() == ScanIsa::Avx512 {
        return true;
    }
    let _ = n;
    false
}

/// Packs the scan inputs of head `head` contiguously per token, in row order (`cols == false`,
/// index `q = p`) or in column order (`q = col * h + row`, the order of
/// [`ScanDirection::ColsForward`]): `out[q * 6n + m * n + j]` for the [`PACKED`] values `m`. A scan
/// then reads its inputs as one sequential stream (forward or backward) instead of six strided
/// ones.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pack_head(
    inputs: &ScanInputs<'_>,
    h: usize,
    w: usize,
    c: usize,
    n: usize,
    head: usize,
    cols: bool,
    out: &mut [f32],
) {
    let l = h * w;
    assert!(
        n > 0 && c.is_multiple_of(n) && head < c / n,
        "scan: head {head} out of range"
    );
    check_len("packed head", out, l * PACKED * n);
    out.par_chunks_mut(PACKED * n * PACK_TOKENS)
        .enumerate()
        .for_each(|(blk, oc)| {
            for (qi, o) in oc.chunks_exact_mut(PACKED * n).enumerate() {
                let q = blk * PACK_TOKENS + qi;
                let p = if cols { (q % h) * w + q / h } else { q };
                pack_token(inputs, p * c + head * n, n, o);
            }
        });
}

/// One token's record of a head (its channels from `base`): r, lambda, kk, a * kk, kt, v, `n`
/// each, into `o` (`PACKED * n`).
#[inline]
fn pack_token(inputs: &ScanInputs<'_>, base: usize, n: usize, o: &mut [f32]) {
    let (o_r, o) = o.split_at_mut(n);
    let (o_l, o) = o.split_at_mut(n);
    let (o_kk, o) = o.split_at_mut(n);
    let (o_akk, o) = o.split_at_mut(n);
    let (o_kt, o_v) = o.split_at_mut(n);
    o_r.copy_from_slice(&inputs.r[base..base + n]);
    o_l.copy_from_slice(&inputs.lambda[base..base + n]);
    let kk = &inputs.kk[base..base + n];
    o_kk.copy_from_slice(kk);
    for ((d, &av), &kv) in o_akk.iter_mut().zip(&inputs.a[base..base + n]).zip(kk) {
        *d = av * kv;
    }
    o_kt.copy_from_slice(&inputs.kt[base..base + n]);
    o_v.copy_from_slice(&inputs.v[base..base + n]);
}

/// Image lines (rows, or columns) per parallel work item of [`pack_heads`].
const PACK_LINES: usize = 8;

/// [`pack_head`] for every head at once into `out` (`heads x L x 6n`, head `hd` at
/// `hd * L * 6n`), the same values. Work items are blocks of [`PACK_LINES`] rows (row order) or
/// columns (column order); in column order each image row of a block is read as one run of
/// neighbouring tokens, so that the six inputs are read a few pages at a time, not one page per
/// token.
pub(crate) fn pack_heads(
    inputs: &ScanInputs<'_>,
    h: usize,
    w: usize,
    c: usize,
    n: usize,
    cols: bool,
    out: &mut [f32],
) {
    let l = h * w;
    assert!(n > 0 && c.is_multiple_of(n), "scan: bad head size {n}");
    let heads = c / n;
    let rec = PACKED * n;
    check_len("packed heads", out, heads * l * rec);
    if l == 0 {
        return;
    }
    // Lines of `line_len` tokens; block `b` covers lines `b * PACK_LINES ..` and packed indices
    // `q` from `b * PACK_LINES * line_len` in every head.
    let (lines, line_len) = if cols { (w, h) } else { (h, w) };
    let block_q = PACK_LINES * line_len * rec;
    let mut blocks: Vec<Vec<&mut [f32]>> = (0..lines.div_ceil(PACK_LINES))
        .map(|_| Vec::with_capacity(heads))
        .collect();
    for head_out in out.chunks_mut(l * rec) {
        for (blk, part) in blocks.iter_mut().zip(head_out.chunks_mut(block_q)) {
            blk.push(part);
        }
    }
    blocks
        .into_par_iter()
        .enumerate()
        .for_each(|(b, mut parts)| {
            let l0 = b * PACK_LINES;
            let l1 = (l0 + PACK_LINES).min(lines);
            let mut put = |p: usize, q_local: usize| {
                for (hd, part) in parts.iter_mut().enumerate() {
                    let o = &mut part[q_local * rec..(q_local + 1) * rec];
                    pack_token(inputs, p * c + hd * n, n, o);
                }
            };
            if cols {
                for row in 0..h {
                    for col in l0..l1 {
                        put(row * w + col, (col - l0) * h + row);
                    }
                }
            } else {
                for row in l0..l1 {
                    for col in 0..w {
                        put(row * w + col, (row - l0) * w + col);
                    }
                }
            }
        });
}

/// The recurrence of [`delta_scan_head`] on one head packed by [`pack_head`] (in row order for
/// the row directions, in column order, with `cols_pos[q]` the position of column-order index
/// `q`, for the column directions), into `y` (`L x N`, every value written). Only where
/// [`packed_kernel`] says so.
///
/// # Panics
/// Where [`packed_kernel`] is false, or on inconsistent sizes.
pub(crate) fn scan_packed(
    direction: ScanDirection,
    n: usize,
    packed: &[f32],
    cols_pos: Option<&[usize]>,
    y: &mut [f32],
) {
    assert!(packed_kernel(n), "scan: no packed kernel for heads of {n}");
    let l = packed.len() / (PACKED * n);
    check_len("packed head", packed, l * PACKED * n);
    check_len("scan output", y, l * n);
    let cols = matches!(
        direction,
        ScanDirection::ColsForward | ScanDirection::ColsBackward
    );
    assert_eq!(
        cols,
        cols_pos.is_some(),
        "scan: column order needs cols_pos"
    );
    if let Some(pos) = cols_pos {
        check_len_usize("cols_pos", pos, l);
    }
    let backward = matches!(
        direction,
        ScanDirection::RowsBackward | ScanDirection::ColsBackward
    );
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `packed_kernel` found AVX-512F and FMA.
        unsafe { scan_packed_avx512_32(backward, cols_pos, packed, y) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (backward, packed, y);
}

fn check_len_usize(name: &str, s: &[usize], expected: usize) {
    assert_eq!(
        s.len(),
        expected,
        "scan: `{name}` has {} elements, expected {expected}",
        s.len()
    );
}

/// [`scan_head_core`] (fused) for heads of 32 in AVX-512 intrinsics, on a packed head: each state
/// column is two `zmm` vectors; `sa`, `v` and the two partial sums (even and odd `j`) of `y_p` and
/// of the next `sa` stay in registers. The operations are those of the generic fused code in the
/// same order, so the results are the same bit for bit.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn scan_packed_avx512_32(
    backward: bool,
    cols_pos: Option<&[usize]>,
    packed: &[f32],
    y: &mut [f32],
) {
    use std::arch::x86_64::{_mm512_add_ps, _mm512_fmadd_ps, _mm512_fnmadd_ps};
    use std::arch::x86_64::{_mm512_loadu_ps, _mm512_mul_ps, _mm512_set1_ps};
    use std::arch::x86_64::{_mm512_setzero_ps, _mm512_storeu_ps};
    const N: usize = 32;
    const W: usize = PACKED * N;
    let l = packed.len() / W;
    let zero = _mm512_setzero_ps();
    // State column j = S[:, j] as two vectors (plain arrays: no pointer arithmetic, so no
    // debug-build checks in the loop).
    let mut st = [[zero; 2]; N];
    let zeros = [0.0f32; N];
    let (mut sa0, mut sa1) = (zero, zero);
    fn token(packed: &[f32], q: usize) -> &[f32; W] {
        match packed[q * W..].first_chunk::<W>() {
            Some(t) => t,
            None => unreachable!("a packed head holds whole tokens"),
        }
    }
    for t in 0..l {
        let q = if backward { l - 1 - t } else { t };
        let p = cols_pos.map_or(q, |pos| pos[q]);
        let tok = token(packed, q);
        let kkn: &[f32; N] = if t + 1 < l {
            let qn = if backward { q - 1 } else { q + 1 };
            match token(packed, qn)[2 * N..].first_chunk::<N>() {
                Some(k) => k,
                None => unreachable!("a packed token holds {W} values"),
            }
        } else {
            &zeros
        };
        let vs = &tok[5 * N..];
        // SAFETY: `vs` holds 32 values, two unaligned 16-lane loads.
        let (v0, v1) = unsafe {
            (
                _mm512_loadu_ps(vs.as_ptr()),
                _mm512_loadu_ps(vs[16..].as_ptr()),
            )
        };
        let (mut ye0, mut ye1, mut yo0, mut yo1) = (zero, zero, zero, zero);
        let (mut se0, mut se1, mut so0, mut so1) = (zero, zero, zero, zero);
        macro_rules! column {
            ($j:expr, $y0:ident, $y1:ident, $s0:ident, $s1:ident) => {{
                let j = $j;
                let rj = _mm512_set1_ps(tok[j]);
                let lj = _mm512_set1_ps(tok[N + j]);
                let akkj = _mm512_set1_ps(tok[3 * N + j]);
                let ktj = _mm512_set1_ps(tok[4 * N + j]);
                let knj = _mm512_set1_ps(kkn[j]);
                let col = &mut st[j];
                let u0 = _mm512_fnmadd_ps(sa0, akkj, _mm512_mul_ps(v0, ktj));
                let u1 = _mm512_fnmadd_ps(sa1, akkj, _mm512_mul_ps(v1, ktj));
                let s0 = _mm512_fmadd_ps(col[0], lj, u0);
                let s1 = _mm512_fmadd_ps(col[1], lj, u1);
                *col = [s0, s1];
                $y0 = _mm512_fmadd_ps(s0, rj, $y0);
                $y1 = _mm512_fmadd_ps(s1, rj, $y1);
                $s0 = _mm512_fmadd_ps(knj, s0, $s0);
                $s1 = _mm512_fmadd_ps(knj, s1, $s1);
            }};
        }
        for jj in 0..N / 2 {
            column!(2 * jj, ye0, ye1, se0, se1);
            column!(2 * jj + 1, yo0, yo1, so0, so1);
        }
        let dst = &mut y[p * N..(p + 1) * N];
        // SAFETY: `dst` holds 32 values, two unaligned 16-lane stores.
        unsafe {
            _mm512_storeu_ps(dst.as_mut_ptr(), _mm512_add_ps(ye0, yo0));
            _mm512_storeu_ps(dst[16..].as_mut_ptr(), _mm512_add_ps(ye1, yo1));
        }
        sa0 = _mm512_add_ps(se0, so0);
        sa1 = _mm512_add_ps(se1, so1);
    }
}

/// The whole visiting order of `direction` (as [`ScanDirection::order`], without divisions).
pub(crate) fn visit_order(direction: ScanDirection, h: usize, w: usize) -> Vec<usize> {
    let l = h * w;
    match direction {
        ScanDirection::RowsForward => (0..l).collect(),
        ScanDirection::RowsBackward => (0..l).rev().collect(),
        ScanDirection::ColsForward | ScanDirection::ColsBackward => {
            let mut o = Vec::with_capacity(l);
            for col in 0..w {
                o.extend((0..h).map(|row| row * w + col));
            }
            if direction == ScanDirection::ColsBackward {
                o.reverse();
            }
            o
        }
    }
}

/// [`scan_head_sized`] (fused) compiled for AVX2 and FMA: the loops are elementwise over the value
/// channel, so the wider vectors give the same results bit for bit.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
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
    scan_head_sized::<true>(direction, h, w, c, n, head, inputs, y);
}

/// Dispatches the common head sizes to copies of [`scan_head_core`] with a constant size (fully
/// unrolled, the accumulators in registers).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn scan_head_sized<const FMA: bool>(
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
        16 => scan_head_core::<FMA>(direction, h, w, c, 16, head, inputs, y),
        32 => scan_head_core::<FMA>(direction, h, w, c, 32, head, inputs, y),
        64 => scan_head_core::<FMA>(direction, h, w, c, 64, head, inputs, y),
        _ => scan_head_core::<FMA>(direction, h, w, c, n, head, inputs, y),
    }
}

/// `a b + acc`, fused (one rounding) or not.
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, acc: f32) -> f32 {
    if FMA { a.mul_add(b, acc) } else { a * b + acc }
}

/// The recurrence of [`delta_scan_head`], writing every value of `y` (`L x N`).
///
/// The state is kept transposed, `st[j * n + i] = S[i, j]`, so that every step is a sequence of
/// elementwise vector operations over the value channel `i` (no horizontal sums). One pass over
/// the state per step: while column `j` is updated to `S lambda_j + (v kt_j - sa a_j kk_j)`, it is
/// accumulated into `y_p` (with `r_p[j]`) and into the next step's `sa` (with the next token's
/// `kk[j]`), each in two partial sums (even and odd `j`, added at the end) so that the two
/// dependency chains are half as long. `FMA` fuses each multiply with the add that follows it.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn scan_head_core<const FMA: bool>(
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
    // Partial sums over even and odd `j`.
    let mut sn = [vec![0.0f32; n], vec![0.0f32; n]];
    let mut yq = [vec![0.0f32; n], vec![0.0f32; n]];
    let off = head * n;
    let zeros = vec![0.0f32; n];
    let order = visit_order(direction, h, w);
    for t in 0..l {
        let p = order[t];
        let base = p * c + off;
        let r = &inputs.r[base..base + n];
        let lambda = &inputs.lambda[base..base + n];
        let kk = &inputs.kk[base..base + n];
        let a = &inputs.a[base..base + n];
        let kt = &inputs.kt[base..base + n];
        let v = &inputs.v[base..base + n];
        let kk_next = match order.get(t + 1) {
            Some(&q) => {
                if let Some(&q2) = order.get(t + 2) {
                    prefetch_token(inputs, q2 * c + off, n);
                }
                &inputs.kk[q * c + off..q * c + off + n]
            }
            None => &zeros[..],
        };
        for part in sn.iter_mut().chain(yq.iter_mut()) {
            part.fill(0.0);
        }
        for (j, col) in st.chunks_exact_mut(n).enumerate() {
            let (lj, akkj, ktj, rj, knj) = (lambda[j], a[j] * kk[j], kt[j], r[j], kk_next[j]);
            let par = j & 1;
            for ((((s, &sai), &vi), yi), sni) in col
                .iter_mut()
                .zip(&sa)
                .zip(v)
                .zip(yq[par].iter_mut())
                .zip(sn[par].iter_mut())
            {
                let u = madd::<FMA>(-sai, akkj, vi * ktj);
                *s = madd::<FMA>(*s, lj, u);
                *yi = madd::<FMA>(*s, rj, *yi);
                *sni = madd::<FMA>(knj, *s, *sni);
            }
        }
        let yp = &mut y[p * n..(p + 1) * n];
        for (((yi, e), o), (sai, (se, so))) in yp
            .iter_mut()
            .zip(&yq[0])
            .zip(&yq[1])
            .zip(sa.iter_mut().zip(sn[0].iter().zip(&sn[1])))
        {
            *yi = e + o;
            *sai = se + so;
        }
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
