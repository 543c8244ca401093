//! LR simulation (k-space truncation, antialiased bicubic) and the interpolation baselines
//! (nearest, bicubic, zero-filled k-space), each honouring the sampling geometry of the
//! degradation that made the LR image.
//!
//! The Python twin `train/dwkv/degrade.py` implements the same definitions; the Rust tests match
//! its outputs on committed vectors (`tests/data/vectors/degrade.safetensors`).
//!
//! # Sizes
//! An HR plane whose sides are not multiples of the scale `s` is first cropped to
//! `floor(w / s) * s` by `floor(h / s) * s`, keeping the top-left corner (voxel (0, 0) stays
//! voxel (0, 0), so the k-space geometry "LR voxel i at HR voxel s i" holds for the crop). The LR
//! plane is then exactly `w / s` by `h / s`, and every upsampling returns exactly `s` times the LR
//! size. Metrics must compare against the cropped HR ([`crop_to_multiple`]).
//!
//! # Geometry
//! With `o = Degradation::lr_to_hr(0, s)`, LR sample `i` sits at HR position `s i + o`:
//! `o = 0` for k-space truncation (the DFT keeps the sampling origin) and `o = (s - 1) / 2` for
//! bicubic downsampling (centre aligned, as MATLAB's `imresize`). Upsampling evaluates the LR image
//! at LR coordinate `u(x) = (x - o) / s` for each HR position `x` ([`hr_to_lr`]). Using the wrong
//! geometry shifts the image by `(s - 1) / 2` HR voxels, which costs several dB.
//!
//! # Definitions
//! - **k-space truncation** ([`kspace_truncate`]): 2-D DFT of the (cropped) HR plane; keep the
//!   `h/s x w/s` frequencies `k = fftfreq(n) * n` in each axis (for even `n` that is `-n/2 ..
//!   n/2 - 1`, the centre of the shifted spectrum, as a low-resolution acquisition samples it);
//!   inverse DFT of the small spectrum; real part; multiplied by `1/s^2` so intensities (the mean)
//!   are preserved. Taking the real part makes the lone Nyquist coefficient act as the average
//!   of the `+n/2` and `-n/2` ones, so the operator is real and linear. Ringing may produce small
//!   negative values; they are kept.
//! - **Bicubic downsampling** ([`bicubic_downsample`]): MATLAB `imresize(hr, 1/s, 'bicubic')` with
//!   antialiasing: Keys kernel `a = -0.5` widened by `s` (`cubic(x/s)/s`, support `4 s`),
//!   `ceil(4 s) + 2` taps per output, weights normalised to sum 1, half-sample symmetric boundary
//!   (`d c b a | a b c d | d c b a`); rows (vertical) first, then columns.
//! - **Nearest upsampling**: LR index `clamp(floor(u + 0.5), 0, n - 1)`.
//! - **Bicubic upsampling**: the same Keys kernel (support 4, no widening) at positions `u(x)`,
//!   same boundary and order as the downsampling. With bicubic geometry this is MATLAB's
//!   `imresize(lr, s, 'bicubic')`.
//! - **Zero-filled k-space interpolation** ([`zerofill_upsample`]): LR spectrum placed at the same
//!   frequencies of an `s h x s w` spectrum (zeros elsewhere), multiplied by the phase ramp
//!   `exp(-2 pi i k o / N)` per axis for the geometry offset `o`, inverse DFT, real part, scaled by
//!   `s^2`. For k-space geometry it is the exact inverse of [`kspace_truncate`] on images without
//!   content at or above the LR Nyquist frequency.
//!
//! All arithmetic is in f64; planes are f32. Inputs with NaN or infinite values are rejected.

pub mod realistic;

use rustfft::FftPlanner;
use rustfft::num_complex::Complex64;

use crate::model::Degradation;
use crate::plane::Plane;

/// Why a degradation or upsampling could not be done.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DegradeError {
    /// The scale is zero.
    #[error("scale must be at least 1, got {0}")]
    BadScale(usize),
    /// The plane is smaller than one LR voxel.
    #[error("a {width}x{height} plane is too small for scale {scale}")]
    TooSmall {
        width: usize,
        height: usize,
        scale: usize,
    },
    /// A plane's data length does not equal width * height.
    #[error("plane claims {width}x{height} but holds {len} values")]
    BadPlane {
        width: usize,
        height: usize,
        len: usize,
    },
    /// NaN or infinite values in the input.
    #[error("plane has {0} non-finite (NaN or infinite) values")]
    NonFinite(usize),
}

/// An interpolation baseline that maps an LR plane to the HR grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Baseline {
    /// Nearest neighbour.
    Nearest,
    /// Keys cubic convolution (a = -0.5), as MATLAB's bicubic.
    Bicubic,
    /// Zero-filled k-space (band-limited, sinc) interpolation.
    Zerofill,
}

impl Baseline {
    /// Every baseline, in reporting order.
    pub const ALL: [Baseline; 3] = [Baseline::Zerofill, Baseline::Bicubic, Baseline::Nearest];

    /// Lower-case name used in JSON keys and the UI (`nearest`, `bicubic`, `zerofill`).
    pub fn as_str(self) -> &'static str {
        match self {
            Baseline::Nearest => "nearest",
            Baseline::Bicubic => "bicubic",
            Baseline::Zerofill => "zerofill",
        }
    }
}

/// LR coordinate of HR position `x` at scale `s` for the geometry of `degradation`:
/// the inverse of [`Degradation::lr_to_hr`].
pub fn hr_to_lr(degradation: Degradation, x: f64, s: f64) -> f64 {
    (x - degradation.lr_to_hr(0.0, s)) / s
}

pub(crate) fn check_plane(p: &Plane, scale: usize) -> Result<(), DegradeError> {
    if scale == 0 {
        return Err(DegradeError::BadScale(scale));
    }
    if p.data.len() != p.width * p.height {
        return Err(DegradeError::BadPlane {
            width: p.width,
            height: p.height,
            len: p.data.len(),
        });
    }
    if p.width == 0 || p.height == 0 {
        return Err(DegradeError::TooSmall {
            width: p.width,
            height: p.height,
            scale,
        });
    }
    let bad = p.data.iter().filter(|v| !v.is_finite()).count();
    if bad > 0 {
        return Err(DegradeError::NonFinite(bad));
    }
    Ok(())
}

/// The top-left `floor(w/s) s x floor(h/s) s` part of `hr` (the HR plane every degradation and
/// metric works on). Errors when a side is shorter than `s`.
pub fn crop_to_multiple(hr: &Plane, scale: usize) -> Result<Plane, DegradeError> {
    if scale == 0 {
        return Err(DegradeError::BadScale(scale));
    }
    if hr.data.len() != hr.width * hr.height {
        return Err(DegradeError::BadPlane {
            width: hr.width,
            height: hr.height,
            len: hr.data.len(),
        });
    }
    let (w, h) = (hr.width / scale * scale, hr.height / scale * scale);
    if w == 0 || h == 0 {
        return Err(DegradeError::TooSmall {
            width: hr.width,
            height: hr.height,
            scale,
        });
    }
    if w == hr.width && h == hr.height {
        return Ok(hr.clone());
    }
    let mut data = Vec::with_capacity(w * h);
    for row in hr.data.chunks_exact(hr.width).take(h) {
        data.extend_from_slice(&row[..w]);
    }
    Ok(Plane {
        width: w,
        height: h,
        data,
    })
}

/// Simulates an LR acquisition with `degradation` (crops to a multiple of `scale` first).
pub fn degrade(hr: &Plane, scale: usize, degradation: Degradation) -> Result<Plane, DegradeError> {
    match degradation {
        Degradation::Kspace => kspace_truncate(hr, scale),
        Degradation::Bicubic => bicubic_downsample(hr, scale),
    }
}

/// Upsamples `lr` by `scale` with `method`, for an LR image made by `geometry`.
pub fn upsample(
    lr: &Plane,
    scale: usize,
    method: Baseline,
    geometry: Degradation,
) -> Result<Plane, DegradeError> {
    match method {
        Baseline::Nearest => nearest_upsample(lr, scale, geometry),
        Baseline::Bicubic => bicubic_upsample(lr, scale, geometry),
        Baseline::Zerofill => zerofill_upsample(lr, scale, geometry),
    }
}

// ---------------------------------------------------------------------------------------------
// k-space

/// Index in an `big`-point spectrum of the frequency stored at index `j` of an `n`-point
/// spectrum (numpy's `fftfreq(n) * n`), and that signed frequency.
#[inline]
pub(crate) fn freq(j: usize, n: usize) -> isize {
    if j < n.div_ceil(2) {
        j as isize
    } else {
        j as isize - n as isize
    }
}

#[inline]
pub(crate) fn freq_index(j: usize, n: usize, big: usize) -> usize {
    freq(j, n).rem_euclid(big as isize) as usize
}

/// In-place unnormalised 2-D DFT of a row-major `w x h` buffer (rows, then columns).
pub(crate) fn fft2(
    planner: &mut FftPlanner<f64>,
    buf: &mut [Complex64],
    w: usize,
    h: usize,
    inverse: bool,
) {
    let row_fft = if inverse {
        planner.plan_fft_inverse(w)
    } else {
        planner.plan_fft_forward(w)
    };
    row_fft.process(buf);
    let col_fft = if inverse {
        planner.plan_fft_inverse(h)
    } else {
        planner.plan_fft_forward(h)
    };
    let mut t = vec![Complex64::new(0.0, 0.0); w * h];
    for r in 0..h {
        for c in 0..w {
            t[c * h + r] = buf[r * w + c];
        }
    }
    col_fft.process(&mut t);
    for c in 0..w {
        for r in 0..h {
            buf[r * w + c] = t[c * h + r];
        }
    }
}

/// k-space truncation by `scale`: keeps the central `1/scale` of k-space in each axis (see the
/// module docs). LR voxel `i` sits at HR voxel `scale * i`.
pub fn kspace_truncate(hr: &Plane, scale: usize) -> Result<Plane, DegradeError> {
    check_plane(hr, scale)?;
    let hr = crop_to_multiple(hr, scale)?;
    let (w, h) = (hr.width / scale, hr.height / scale);
    let small = kspace_truncate_f64(&to_f64(&hr), hr.width, hr.height, scale);
    Ok(from_f64(w, h, small))
}

/// [`kspace_truncate`] of a row-major `big_w x big_h` f64 image whose sides are multiples of
/// `scale` (unchecked), in f64: the `big_w/scale x big_h/scale` LR image.
pub(crate) fn kspace_truncate_f64(
    hr: &[f64],
    big_w: usize,
    big_h: usize,
    scale: usize,
) -> Vec<f64> {
    let (w, h) = (big_w / scale, big_h / scale);
    let mut planner = FftPlanner::new();
    let mut spec: Vec<Complex64> = hr.iter().map(|&v| Complex64::new(v, 0.0)).collect();
    fft2(&mut planner, &mut spec, big_w, big_h, false);
    let cols: Vec<usize> = (0..w).map(|j| freq_index(j, w, big_w)).collect();
    let mut small = Vec::with_capacity(w * h);
    for ly in 0..h {
        let hy = freq_index(ly, h, big_h);
        let row = &spec[hy * big_w..(hy + 1) * big_w];
        small.extend(cols.iter().map(|&hx| row[hx]));
    }
    fft2(&mut planner, &mut small, w, h, true);
    // Inverse normalisation 1/(w h) times the intensity factor (w h)/(W H).
    let norm = 1.0 / (big_w * big_h) as f64;
    small.iter().map(|c| c.re * norm).collect()
}

/// Zero-filled k-space interpolation of `lr` by `scale`, for an LR image with the sampling
/// geometry of `geometry` (see the module docs).
pub fn zerofill_upsample(
    lr: &Plane,
    scale: usize,
    geometry: Degradation,
) -> Result<Plane, DegradeError> {
    check_plane(lr, scale)?;
    let (w, h) = (lr.width, lr.height);
    let offset = geometry.lr_to_hr(0.0, scale as f64);
    let big = zerofill_f64(&to_f64(lr), w, h, scale, offset);
    Ok(from_f64(w * scale, h * scale, big))
}

/// [`zerofill_upsample`] of a row-major `w x h` f64 image, in f64, for the geometry offset
/// `offset` (`Degradation::lr_to_hr(0, scale)`): the `scale w x scale h` image.
pub(crate) fn zerofill_f64(lr: &[f64], w: usize, h: usize, scale: usize, offset: f64) -> Vec<f64> {
    let (big_w, big_h) = (w * scale, h * scale);
    let mut planner = FftPlanner::new();
    let mut spec: Vec<Complex64> = lr.iter().map(|&v| Complex64::new(v, 0.0)).collect();
    fft2(&mut planner, &mut spec, w, h, false);
    let phase = |f: isize, big: usize| -> Complex64 {
        let ang = -2.0 * std::f64::consts::PI * f as f64 * offset / big as f64;
        Complex64::new(ang.cos(), ang.sin())
    };
    let cols: Vec<(usize, Complex64)> = (0..w)
        .map(|j| (freq_index(j, w, big_w), phase(freq(j, w), big_w)))
        .collect();
    let mut big = vec![Complex64::new(0.0, 0.0); big_w * big_h];
    for ly in 0..h {
        let hy = freq_index(ly, h, big_h);
        let py = phase(freq(ly, h), big_h);
        for (lx, &(hx, px)) in cols.iter().enumerate() {
            big[hy * big_w + hx] = spec[ly * w + lx] * py * px;
        }
    }
    fft2(&mut planner, &mut big, big_w, big_h, true);
    let norm = 1.0 / (w * h) as f64;
    big.iter().map(|c| c.re * norm).collect()
}

// ---------------------------------------------------------------------------------------------
// Cubic convolution (MATLAB imresize)

/// Keys cubic kernel with `a = -0.5` (MATLAB's `cubic`).
#[inline]
fn cubic(x: f64) -> f64 {
    let a = x.abs();
    let a2 = a * a;
    let a3 = a2 * a;
    if a <= 1.0 {
        1.5 * a3 - 2.5 * a2 + 1.0
    } else if a <= 2.0 {
        -0.5 * a3 + 2.5 * a2 - 4.0 * a + 2.0
    } else {
        0.0
    }
}

/// MATLAB's symmetric boundary: index `j` to `0..n` with period `2n` (`d c b a | a b c d`).
#[inline]
fn mirror(j: isize, n: usize) -> usize {
    let m = j.rem_euclid(2 * n as isize) as usize;
    if m < n { m } else { 2 * n - 1 - m }
}

/// Per-output taps of a 1-D resampling: `taps` input indices and weights per output sample.
struct Contributions {
    taps: usize,
    index: Vec<usize>,
    weight: Vec<f64>,
}

/// MATLAB `contributions`: output sample `x` reads the input around position `pos(x)` with the
/// cubic kernel widened by `widen` (`s` for antialiased downsampling, 1 otherwise).
fn contributions(
    in_len: usize,
    out_len: usize,
    widen: f64,
    pos: impl Fn(usize) -> f64,
) -> Contributions {
    let width = 4.0 * widen;
    let taps = width.ceil() as usize + 2;
    let mut index = Vec::with_capacity(out_len * taps);
    let mut weight = Vec::with_capacity(out_len * taps);
    for x in 0..out_len {
        let u = pos(x);
        let left = (u - width / 2.0).floor() as isize;
        let start = weight.len();
        for t in 0..taps {
            let j = left + t as isize;
            weight.push(cubic((u - j as f64) / widen) / widen);
            index.push(mirror(j, in_len));
        }
        let sum: f64 = weight[start..].iter().sum();
        for wgt in &mut weight[start..] {
            *wgt /= sum;
        }
    }
    Contributions {
        taps,
        index,
        weight,
    }
}

/// Applies separable contributions to a `w x h` f64 image: vertical (`cy`, to `out_h` rows)
/// first, then horizontal (`cx`, to `out_w` columns).
fn resample2(
    src: &[f64],
    w: usize,
    cy: &Contributions,
    out_h: usize,
    cx: &Contributions,
    out_w: usize,
) -> Vec<f64> {
    let mut mid = vec![0.0f64; w * out_h];
    for y in 0..out_h {
        let out = &mut mid[y * w..(y + 1) * w];
        for t in 0..cy.taps {
            let k = y * cy.taps + t;
            let (sy, wt) = (cy.index[k], cy.weight[k]);
            let row = &src[sy * w..(sy + 1) * w];
            for (o, &v) in out.iter_mut().zip(row) {
                *o += wt * v;
            }
        }
    }
    let mut dst = vec![0.0f64; out_w * out_h];
    for y in 0..out_h {
        let row = &mid[y * w..(y + 1) * w];
        for x in 0..out_w {
            let base = x * cx.taps;
            let idx = &cx.index[base..base + cx.taps];
            let wts = &cx.weight[base..base + cx.taps];
            dst[y * out_w + x] = idx.iter().zip(wts).map(|(&i, &wt)| wt * row[i]).sum();
        }
    }
    dst
}

pub(crate) fn to_f64(p: &Plane) -> Vec<f64> {
    p.data.iter().map(|&v| f64::from(v)).collect()
}

pub(crate) fn from_f64(width: usize, height: usize, data: Vec<f64>) -> Plane {
    Plane {
        width,
        height,
        data: data.into_iter().map(|v| v as f32).collect(),
    }
}

/// Antialiased bicubic downsampling by `scale`, as MATLAB `imresize(hr, 1/scale)` (crops to a
/// multiple of `scale` first). LR voxel `i` sits at HR position `(i + 0.5) scale - 0.5`.
pub fn bicubic_downsample(hr: &Plane, scale: usize) -> Result<Plane, DegradeError> {
    check_plane(hr, scale)?;
    let hr = crop_to_multiple(hr, scale)?;
    let (w, h) = (hr.width / scale, hr.height / scale);
    let s = scale as f64;
    let pos = |x: usize| Degradation::Bicubic.lr_to_hr(x as f64, s);
    let cy = contributions(hr.height, h, s, pos);
    let cx = contributions(hr.width, w, s, pos);
    Ok(from_f64(
        w,
        h,
        resample2(&to_f64(&hr), hr.width, &cy, h, &cx, w),
    ))
}

/// Bicubic (Keys, a = -0.5) upsampling of `lr` by `scale` for an LR image with the geometry of
/// `geometry`; MATLAB `imresize(lr, scale, 'bicubic')` when `geometry` is bicubic.
pub fn bicubic_upsample(
    lr: &Plane,
    scale: usize,
    geometry: Degradation,
) -> Result<Plane, DegradeError> {
    check_plane(lr, scale)?;
    let (big_w, big_h) = (lr.width * scale, lr.height * scale);
    let s = scale as f64;
    let pos = |x: usize| hr_to_lr(geometry, x as f64, s);
    let cy = contributions(lr.height, big_h, 1.0, pos);
    let cx = contributions(lr.width, big_w, 1.0, pos);
    Ok(from_f64(
        big_w,
        big_h,
        resample2(&to_f64(lr), lr.width, &cy, big_h, &cx, big_w),
    ))
}

/// Nearest-neighbour upsampling of `lr` by `scale` for an LR image with the geometry of
/// `geometry`: HR voxel `x` copies LR voxel `clamp(floor(u(x) + 0.5), 0, n - 1)`.
pub fn nearest_upsample(
    lr: &Plane,
    scale: usize,
    geometry: Degradation,
) -> Result<Plane, DegradeError> {
    check_plane(lr, scale)?;
    let (big_w, big_h) = (lr.width * scale, lr.height * scale);
    let s = scale as f64;
    let pick = |x: usize, n: usize| -> usize {
        let u = (hr_to_lr(geometry, x as f64, s) + 0.5).floor();
        u.clamp(0.0, (n - 1) as f64) as usize
    };
    let cols: Vec<usize> = (0..big_w).map(|x| pick(x, lr.width)).collect();
    let mut data = Vec::with_capacity(big_w * big_h);
    for y in 0..big_h {
        let sy = pick(y, lr.height);
        let row = &lr.data[sy * lr.width..(sy + 1) * lr.width];
        data.extend(cols.iter().map(|&c| row[c]));
    }
    Ok(Plane {
        width: big_w,
        height: big_h,
        data,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn plane(w: usize, h: usize, f: impl Fn(f64, f64) -> f64) -> Plane {
        let mut p = Plane::zeros(w, h);
        for r in 0..h {
            for c in 0..w {
                p.set(r, c, f(r as f64, c as f64) as f32);
            }
        }
        p
    }

    /// The largest absolute difference of two planes of one size (also used by the tests of
    /// `crate::consistency`).
    pub(crate) fn max_abs_diff(a: &Plane, b: &Plane) -> f64 {
        assert_eq!((a.width, a.height), (b.width, b.height));
        a.data
            .iter()
            .zip(&b.data)
            .map(|(x, y)| f64::from((x - y).abs()))
            .fold(0.0, f64::max)
    }

    /// A real image with only frequencies strictly below the LR Nyquist limit of `w/s x h/s`.
    fn band_limited(w: usize, h: usize, s: usize) -> Plane {
        let (lw, lh) = ((w / s) as f64, (h / s) as f64);
        let kmax_x = ((w / s - 1) / 2) as f64;
        let kmax_y = ((h / s - 1) / 2) as f64;
        let tau = 2.0 * std::f64::consts::PI;
        plane(w, h, |r, c| {
            let (u, v) = (c / s as f64, r / s as f64); // LR coordinates
            0.5 + 0.2 * (tau * kmax_x * u / lw + 0.3).cos()
                + 0.1 * (tau * 1.0 * u / lw + tau * kmax_y * v / lh).sin()
                + 0.15 * (tau * 2.0 * v / lh - 1.1).cos()
        })
    }

    #[test]
    fn fft_frequencies_follow_numpy() {
        let f4: Vec<isize> = (0..4).map(|j| freq(j, 4)).collect();
        assert_eq!(f4, vec![0, 1, -2, -1]);
        let f5: Vec<isize> = (0..5).map(|j| freq(j, 5)).collect();
        assert_eq!(f5, vec![0, 1, 2, -2, -1]);
        assert_eq!(freq_index(2, 4, 8), 6);
    }

    #[test]
    fn crop_keeps_top_left() {
        let p = plane(7, 5, |r, c| r * 10.0 + c);
        let c = crop_to_multiple(&p, 2).unwrap();
        assert_eq!((c.width, c.height), (6, 4));
        assert_eq!(c.get(3, 5), 35.0);
        assert!(crop_to_multiple(&plane(3, 8, |_, _| 0.0), 4).is_err());
    }

    #[test]
    fn kspace_preserves_constant_and_geometry() {
        for &(w, h, s) in &[(32, 24, 2), (36, 20, 4), (30, 18, 3), (22, 26, 2)] {
            let c = plane(w, h, |_, _| 0.7);
            let lr = kspace_truncate(&c, s).unwrap();
            assert_eq!((lr.width, lr.height), (w / s, h / s));
            assert!(lr.data.iter().all(|v| (v - 0.7).abs() < 1e-6));
            // Band-limited: LR voxel i equals HR voxel s i (origin-aligned sampling).
            let hr = band_limited(w, h, s);
            let lr = kspace_truncate(&hr, s).unwrap();
            for r in 0..h / s {
                for col in 0..w / s {
                    assert!((lr.get(r, col) - hr.get(r * s, col * s)).abs() < 1e-5);
                }
            }
        }
    }

    #[test]
    fn zerofill_inverts_kspace_truncation_on_band_limited_images() {
        for &(w, h, s) in &[
            (32, 24, 2),
            (48, 40, 4),
            (30, 18, 3),
            (22, 26, 2),
            (26, 22, 2),
        ] {
            let hr = band_limited(w, h, s);
            let lr = kspace_truncate(&hr, s).unwrap();
            let back = zerofill_upsample(&lr, s, Degradation::Kspace).unwrap();
            let d = max_abs_diff(&back, &hr);
            assert!(d < 2e-6, "{w}x{h} x{s}: {d}");
        }
    }

    #[test]
    fn zerofill_bicubic_geometry_is_shifted() {
        // LR band-limited signal g(u); centre-aligned HR positions x sample g((x + 0.5)/s - 0.5).
        let (w, h, s) = (12usize, 10usize, 2usize);
        let tau = 2.0 * std::f64::consts::PI;
        let g = |v: f64, u: f64| {
            0.4 + 0.3 * (tau * 2.0 * u / w as f64 + 0.2).cos()
                + 0.2 * (tau * 3.0 * v / h as f64).sin()
        };
        let lr = plane(w, h, g);
        let hr = zerofill_upsample(&lr, s, Degradation::Bicubic).unwrap();
        let want = plane(w * s, h * s, |r, c| {
            g(
                hr_to_lr(Degradation::Bicubic, r, s as f64),
                hr_to_lr(Degradation::Bicubic, c, s as f64),
            )
        });
        assert!(max_abs_diff(&hr, &want) < 2e-6);
    }

    #[test]
    fn bicubic_reproduces_ramps_with_the_right_geometry() {
        let (w, h, s) = (40usize, 32usize, 4usize);
        let hr = plane(w, h, |r, c| 0.01 * c + 0.02 * r);
        let lr = bicubic_downsample(&hr, s).unwrap();
        let at = |i: usize| Degradation::Bicubic.lr_to_hr(i as f64, s as f64);
        // Interior (kernel support 4 s = 16 HR voxels, so 2 LR voxels from each border).
        for r in 2..h / s - 2 {
            for c in 2..w / s - 2 {
                let want = 0.01 * at(c) + 0.02 * at(r);
                assert!((f64::from(lr.get(r, c)) - want).abs() < 1e-6);
            }
        }
        for geom in [Degradation::Kspace, Degradation::Bicubic] {
            let lr = plane(10, 8, |r, c| 0.1 * c + 0.05 * r);
            let up = bicubic_upsample(&lr, s, geom).unwrap();
            for r in 8..24 {
                for c in 8..32 {
                    let (v, u) = (
                        hr_to_lr(geom, r as f64, s as f64),
                        hr_to_lr(geom, c as f64, s as f64),
                    );
                    let want = 0.1 * u + 0.05 * v;
                    assert!((f64::from(up.get(r, c)) - want).abs() < 1e-6, "{geom:?}");
                }
            }
        }
    }

    #[test]
    fn bicubic_downsample_of_constant_is_constant_everywhere() {
        let c = plane(27, 19, |_, _| 3.5);
        let lr = bicubic_downsample(&c, 2).unwrap();
        assert_eq!((lr.width, lr.height), (13, 9));
        assert!(lr.data.iter().all(|v| (v - 3.5).abs() < 1e-6));
    }

    #[test]
    fn nearest_geometry() {
        let lr = plane(3, 2, |r, c| r * 10.0 + c);
        let up = nearest_upsample(&lr, 2, Degradation::Bicubic).unwrap();
        // Centre aligned at x2: pixel replication.
        let row0: Vec<f32> = up.data[..6].to_vec();
        assert_eq!(row0, vec![0.0, 0.0, 1.0, 1.0, 2.0, 2.0]);
        let up = nearest_upsample(&lr, 2, Degradation::Kspace).unwrap();
        // Origin aligned: x -> floor(x/2 + 0.5), clamped.
        let row0: Vec<f32> = up.data[..6].to_vec();
        assert_eq!(row0, vec![0.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
        assert_eq!(up.get(1, 0), 10.0);
    }

    #[test]
    fn rejects_bad_input() {
        let mut p = plane(8, 8, |_, _| 1.0);
        assert!(matches!(
            kspace_truncate(&p, 0),
            Err(DegradeError::BadScale(0))
        ));
        p.data[5] = f32::NAN;
        assert!(matches!(
            bicubic_downsample(&p, 2),
            Err(DegradeError::NonFinite(1))
        ));
        let bad = Plane {
            width: 4,
            height: 4,
            data: vec![0.0; 5],
        };
        assert!(matches!(
            zerofill_upsample(&bad, 2, Degradation::Kspace),
            Err(DegradeError::BadPlane { .. })
        ));
    }
}
