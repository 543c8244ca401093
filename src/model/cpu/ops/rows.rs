//! The product of `L x k` row-major tokens with a small `k x n` matrix (the linear layers, the
//! LoRAs and the channel mix), the hot loop of the CPU reference.
//!
//! A general GEMM packs the token rows into panels one element at a time (tokens are not
//! contiguous along `L`), which costs about as much as the multiplication itself at `k, n <= 192`.
//! Here only the small matrix is packed, once per call, into column tiles of width `T`
//! (`[tile][i][t]`); the tokens are read in place, `R` rows at a time, with an `R x T` block of
//! accumulators held in registers.
//!
//! Every output element is `sum_{i = 0..k} x[p, i] b[i, j]`, accumulated in the order `i = 0, 1,
//! ...` from 0: the same sequence of operations whatever the tiling, the row blocking or the number
//! of threads. The AVX-512 and AVX2 copies use fused multiply-adds (they agree with each other bit
//! for bit); the portable copy multiplies and adds (one rounding more per term).

use rayon::prelude::*;

use super::{GEMM_ROWS, Strides};

/// The instruction set the kernel runs with, detected at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isa {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

impl Isa {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }

    /// Column tile width of this instruction set's kernel.
    fn tile(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => 32,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => 16,
            Isa::Portable => 16,
        }
    }
}

/// `x b`: `x` is `L x k` row-major, `b` a `k x n` matrix with strides `sb`; returns `L x n`.
/// Blocks of [`GEMM_ROWS`] tokens run in parallel.
pub(super) fn rows_times(x: &[f32], k: usize, b: &[f32], sb: Strides, n: usize) -> Vec<f32> {
    let l = x.len() / k;
    let mut y = vec![0.0f32; l * n];
    rows_times_into(x, k, b, sb, n, &mut y, |_, _| {});
    y
}

/// [`rows_times`] into `y` (`L x n`, any contents: every value is written), then
/// `epilogue(first_row, rows)` on each block of [`GEMM_ROWS`] finished rows (`rows` is the
/// block's part of `y`, `first_row` its first token), while the block is still in cache.
pub(crate) fn rows_times_into<E>(
    x: &[f32],
    k: usize,
    b: &[f32],
    sb: Strides,
    n: usize,
    y: &mut [f32],
    epilogue: E,
) where
    E: Fn(usize, &mut [f32]) + Sync,
{
    assert!(
        k > 0 && x.len().is_multiple_of(k),
        "ops::rows_times: x is not L x {k}"
    );
    let l = x.len() / k;
    assert_eq!(y.len(), l * n, "ops::rows_times: y is not {l} x {n}");
    if n == 0 || l == 0 {
        return;
    }
    let isa = Isa::detect();
    let bt = pack(b, sb, k, n, isa.tile());
    y.par_chunks_mut(n * GEMM_ROWS)
        .zip(x.par_chunks(k * GEMM_ROWS))
        .enumerate()
        .for_each(|(blk, (yc, xc))| {
            match isa {
                // SAFETY: `Isa::detect` found the features these copies are compiled for.
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => unsafe { rows_avx512(xc, k, &bt, n, yc) },
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => unsafe { rows_avx2(xc, k, &bt, n, yc) },
                Isa::Portable => rows_core::<4, 16, false>(xc, k, &bt, n, yc),
            }
            epilogue(blk * GEMM_ROWS, yc);
        });
}

/// A `k x n` matrix packed once for several products [`PackedB::times_into`] (the convolutions'
/// bands).
pub(crate) struct PackedB {
    isa: Isa,
    k: usize,
    n: usize,
    bt: Vec<f32>,
}

impl PackedB {
    /// Packs `b` (`k x n`, strides `sb`) for the detected instruction set.
    pub(crate) fn new(b: &[f32], sb: Strides, k: usize, n: usize) -> Self {
        let isa = Isa::detect();
        Self {
            isa,
            k,
            n,
            bt: pack(b, sb, k, n, isa.tile()),
        }
    }

    /// `y = x b` on the calling thread: `x` is `m x k` row-major, `y` `m x n` (every value
    /// written); the same values as [`rows_times`].
    pub(crate) fn times_into(&self, x: &[f32], y: &mut [f32]) {
        let (k, n) = (self.k, self.n);
        assert!(
            k > 0 && x.len().is_multiple_of(k),
            "ops::PackedB: x is not m x {k}"
        );
        assert_eq!(y.len(), x.len() / k * n, "ops::PackedB: y is not m x {n}");
        if n == 0 || x.is_empty() {
            return;
        }
        match self.isa {
            // SAFETY: `Isa::detect` found the features these copies are compiled for.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { rows_avx512(x, k, &self.bt, n, y) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { rows_avx2(x, k, &self.bt, n, y) },
            Isa::Portable => rows_core::<4, 16, false>(x, k, &self.bt, n, y),
        }
    }
}

/// Packs `b` (`k x n`, strides `sb`) as full column tiles of width `tile`, `[tile][i][t]`, followed
/// by the remaining `n mod tile` columns as a row-major `k x rem` matrix.
fn pack(b: &[f32], sb: Strides, k: usize, n: usize, tile: usize) -> Vec<f32> {
    let at = |i: usize, j: usize| b[i * sb.rows + j * sb.cols];
    let tiles = n / tile;
    let mut out = Vec::with_capacity(k * n);
    for tj in 0..tiles {
        for i in 0..k {
            out.extend((0..tile).map(|t| at(i, tj * tile + t)));
        }
    }
    for i in 0..k {
        out.extend((tiles * tile..n).map(|j| at(i, j)));
    }
    out
}

/// [`rows_core`] with fused multiply-adds, written with AVX-512 intrinsics: an `R x 32` block is
/// twelve `zmm` accumulators (the compiler does not vectorise the generic code's accumulator
/// block).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn rows_avx512(x: &[f32], k: usize, bt: &[f32], n: usize, y: &mut [f32]) {
    use std::arch::x86_64::{__m512, _mm512_loadu_ps};
    const T: usize = 32;
    let m = x.len() / k;
    let tiles = n / T;
    // The tiles as aligned vectors: the kernel reads them as plain values (an unaligned load
    // intrinsic costs a copy through the stack and checks in debug builds).
    let vt: Vec<[__m512; 2]> = bt[..tiles * k * T]
        .chunks_exact(T)
        .map(|run| {
            let run = &run[..T];
            // SAFETY: `run` holds 32 values, two unaligned 16-lane loads.
            unsafe {
                [
                    _mm512_loadu_ps(run.as_ptr()),
                    _mm512_loadu_ps(run[16..].as_ptr()),
                ]
            }
        })
        .collect();
    for tj in 0..tiles {
        let tile = &vt[tj * k..(tj + 1) * k];
        let mut p = 0;
        while p + 6 <= m {
            block_avx512::<6>(x, k, tile, p, n, tj * T, y);
            p += 6;
        }
        while p < m {
            block_avx512::<1>(x, k, tile, p, n, tj * T, y);
            p += 1;
        }
    }
    tail_columns::<true>(x, k, bt, n, tiles * T, y);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
#[inline]
fn block_avx512<const R: usize>(
    x: &[f32],
    k: usize,
    tile: &[[std::arch::x86_64::__m512; 2]],
    p: usize,
    n: usize,
    j0: usize,
    y: &mut [f32],
) {
    use std::arch::x86_64::{__m512, _mm_load_ss, _mm512_broadcastss_ps, _mm512_fmadd_ps};
    use std::arch::x86_64::{_mm512_setzero_ps, _mm512_storeu_ps};
    // The raw reads and writes below stay inside these bounds.
    assert!(
        (p + R) * k <= x.len() && tile.len() == k,
        "rows: block out of range"
    );
    assert!(
        (p + R - 1) * n + j0 + 32 <= y.len(),
        "rows: block out of range"
    );
    // SAFETY: row `p + r` of `x` is `x[(p + r) k .. (p + r + 1) k]`, inside `x`; each output run
    // `y[(p + r) n + j0 ..][..32]` is inside `y` (asserted above). (`wrapping_add` and the load
    // intrinsic: no debug-build checks in the inner loop.)
    unsafe {
        let rows: [*const f32; R] = std::array::from_fn(|r| x.as_ptr().wrapping_add((p + r) * k));
        let mut acc: [[__m512; 2]; R] = [[_mm512_setzero_ps(); 2]; R];
        for (i, b) in tile.iter().enumerate() {
            for r in 0..R {
                let xv = _mm512_broadcastss_ps(_mm_load_ss(rows[r].wrapping_add(i)));
                acc[r][0] = _mm512_fmadd_ps(xv, b[0], acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(xv, b[1], acc[r][1]);
            }
        }
        for (r, a) in acc.iter().enumerate() {
            let dst = y.as_mut_ptr().wrapping_add((p + r) * n + j0);
            _mm512_storeu_ps(dst, a[0]);
            _mm512_storeu_ps(dst.wrapping_add(16), a[1]);
        }
    }
}

/// [`rows_avx512`] for AVX2: `R x 16` blocks, eight `ymm` accumulators.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn rows_avx2(x: &[f32], k: usize, bt: &[f32], n: usize, y: &mut [f32]) {
    const T: usize = 16;
    let m = x.len() / k;
    let tiles = n / T;
    for tj in 0..tiles {
        let tile = &bt[tj * k * T..(tj + 1) * k * T];
        let mut p = 0;
        while p + 4 <= m {
            block_avx2::<4>(x, k, tile, p, n, tj * T, y);
            p += 4;
        }
        while p < m {
            block_avx2::<1>(x, k, tile, p, n, tj * T, y);
            p += 1;
        }
    }
    tail_columns::<true>(x, k, bt, n, tiles * T, y);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
fn block_avx2<const R: usize>(
    x: &[f32],
    k: usize,
    tile: &[f32],
    p: usize,
    n: usize,
    j0: usize,
    y: &mut [f32],
) {
    use std::arch::x86_64::{__m256, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps};
    use std::arch::x86_64::{_mm256_setzero_ps, _mm256_storeu_ps};
    let rows: [&[f32]; R] = std::array::from_fn(|r| &x[(p + r) * k..(p + r + 1) * k]);
    let mut acc: [[__m256; 2]; R] = [[_mm256_setzero_ps(); 2]; R];
    for (i, brow) in tile.chunks_exact(16).enumerate() {
        let brow = &brow[..16];
        // SAFETY: `brow` holds 16 values, two unaligned 8-lane loads.
        let (b0, b1) = unsafe {
            (
                _mm256_loadu_ps(brow.as_ptr()),
                _mm256_loadu_ps(brow[8..].as_ptr()),
            )
        };
        for r in 0..R {
            let xv = _mm256_set1_ps(rows[r][i]);
            acc[r][0] = _mm256_fmadd_ps(xv, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(xv, b1, acc[r][1]);
        }
    }
    for (r, a) in acc.iter().enumerate() {
        let dst = &mut y[(p + r) * n + j0..(p + r) * n + j0 + 16];
        // SAFETY: `dst` holds 16 values, two unaligned 8-lane stores.
        unsafe {
            _mm256_storeu_ps(dst.as_mut_ptr(), a[0]);
            _mm256_storeu_ps(dst[8..].as_mut_ptr(), a[1]);
        }
    }
}

/// `acc + a b`, fused or not.
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, acc: f32) -> f32 {
    if FMA { a.mul_add(b, acc) } else { acc + a * b }
}

/// `y = x bt` for `x` `m x k` (row-major), `bt` packed by [`pack`] with tile width `T`, `y`
/// `m x n` (row-major).
#[inline(always)]
fn rows_core<const R: usize, const T: usize, const FMA: bool>(
    x: &[f32],
    k: usize,
    bt: &[f32],
    n: usize,
    y: &mut [f32],
) {
    let m = x.len() / k;
    let tiles = n / T;
    for tj in 0..tiles {
        let tile = &bt[tj * k * T..(tj + 1) * k * T];
        let mut p = 0;
        while p + R <= m {
            block::<R, T, FMA>(x, k, tile, p, n, tj * T, y);
            p += R;
        }
        while p < m {
            block::<1, T, FMA>(x, k, tile, p, n, tj * T, y);
            p += 1;
        }
    }
    tail_columns::<FMA>(x, k, bt, n, tiles * T, y);
}

/// Columns `j0 ..` of `y` (fewer than a tile), from the row-major `k x (n - j0)` matrix that
/// [`pack`] puts after the tiles.
#[inline(always)]
fn tail_columns<const FMA: bool>(
    x: &[f32],
    k: usize,
    bt: &[f32],
    n: usize,
    j0: usize,
    y: &mut [f32],
) {
    let rem = n - j0;
    if rem == 0 {
        return;
    }
    let m = x.len() / k;
    let tail = &bt[j0 * k..];
    for p in 0..m {
        let xr = &x[p * k..(p + 1) * k];
        for jj in 0..rem {
            let mut acc = 0.0f32;
            for (i, &xv) in xr.iter().enumerate() {
                acc = madd::<FMA>(xv, tail[i * rem + jj], acc);
            }
            y[p * n + j0 + jj] = acc;
        }
    }
}

/// Rows `p .. p + R`, columns `j0 .. j0 + T` of `y`.
#[inline(always)]
fn block<const R: usize, const T: usize, const FMA: bool>(
    x: &[f32],
    k: usize,
    tile: &[f32],
    p: usize,
    n: usize,
    j0: usize,
    y: &mut [f32],
) {
    let rows: [&[f32]; R] = std::array::from_fn(|r| &x[(p + r) * k..(p + r + 1) * k]);
    let mut acc = [[0.0f32; T]; R];
    for (i, brow) in tile.chunks_exact(T).enumerate() {
        let brow = &brow[..T];
        for r in 0..R {
            let xv = rows[r][i];
            for t in 0..T {
                acc[r][t] = madd::<FMA>(xv, brow[t], acc[r][t]);
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        y[(p + r) * n + j0..(p + r) * n + j0 + T].copy_from_slice(a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every copy of the kernel against the formula, with full row blocks, leftover rows, full
    /// column tiles and leftover columns.
    #[test]
    fn kernel_copies_match_formula() {
        let (m, k, n) = (23, 9, 70);
        let x: Vec<f32> = (0..m * k).map(|i| ((i as f32) * 0.13).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i as f32) * 0.71).cos()).collect();
        let expect: Vec<f64> = (0..m * n)
            .map(|e| {
                let (p, j) = (e / n, e % n);
                (0..k)
                    .map(|i| f64::from(x[p * k + i]) * f64::from(b[i * n + j]))
                    .sum()
            })
            .collect();
        let check = |y: &[f32], what: &str| {
            for (e, (&got, &want)) in y.iter().zip(&expect).enumerate() {
                assert!(
                    (f64::from(got) - want).abs() < 1e-5,
                    "{what}: element {e}: {got} vs {want}"
                );
            }
        };
        let sb = Strides::row_major(n);
        let mut y = vec![0.0f32; m * n];
        rows_core::<4, 16, false>(&x, k, &pack(&b, sb, k, n, 16), n, &mut y);
        check(&y, "portable");
        check(&rows_times(&x, k, &b, sb, n), "detected");
        #[cfg(target_arch = "x86_64")]
        if Isa::detect() != Isa::Portable {
            // The fused copies agree with each other bit for bit.
            let mut y16 = vec![0.0f32; m * n];
            rows_core::<4, 16, true>(&x, k, &pack(&b, sb, k, n, 16), n, &mut y16);
            let mut y32 = vec![0.0f32; m * n];
            rows_core::<6, 32, true>(&x, k, &pack(&b, sb, k, n, 32), n, &mut y32);
            check(&y16, "fused, tiles of 16");
            assert_eq!(y16, y32, "tile width changed the result");
            // The intrinsics copies agree with the generic fused code bit for bit.
            let mut y2 = vec![0.0f32; m * n];
            // SAFETY: `Isa::detect` found AVX2 and FMA at least.
            unsafe { rows_avx2(&x, k, &pack(&b, sb, k, n, 16), n, &mut y2) };
            assert_eq!(y2, y16, "AVX2 copy");
            if Isa::detect() == Isa::Avx512 {
                let mut y5 = vec![0.0f32; m * n];
                // SAFETY: `Isa::detect` found AVX-512F and FMA.
                unsafe { rows_avx512(&x, k, &pack(&b, sb, k, n, 32), n, &mut y5) };
                assert_eq!(y5, y16, "AVX-512 copy");
            }
        }
    }
}
