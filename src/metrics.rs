//! PSNR and SSIM, per plane and per volume.
//!
//! Definitions (the Python twin `train/dwkv/metrics.py` is identical, and both are tested against
//! scikit-image 0.26 on committed vectors in `tests/data/vectors/metrics.safetensors`):
//!
//! - **PSNR** = `10 log10(R^2 / MSE)` with an explicit data range `R`, as
//!   `skimage.metrics.peak_signal_noise_ratio(ref, test, data_range=R)`. Identical inputs give
//!   `+inf`. Volume PSNR comes from the MSE over all voxels of all slices (not the mean of slice
//!   PSNRs).
//! - **SSIM** (Wang et al. 2004) exactly as
//!   `skimage.metrics.structural_similarity(ref, test, gaussian_weights=True, sigma=1.5,
//!   use_sample_covariance=False, data_range=R)`: local statistics from a Gaussian filter with
//!   sigma 1.5 truncated at 3.5 sigma (11 taps, `scipy.ndimage.gaussian_filter`, mode `reflect`,
//!   i.e. `d c b a | a b c d | d c b a`), `K1 = 0.01`, `K2 = 0.03`, population covariances; the
//!   SSIM map is averaged after cropping 5 voxels ((11 - 1) / 2) from every border. Planes must
//!   be at least 11 x 11. Volume SSIM is the mean of the slices' SSIMs.
//! - All arithmetic is in f64; inputs are f32.
//!
//! Semantics of awkward inputs: a non-finite value (NaN or infinity) in either plane is an error
//! ([`MetricError::NonFinite`]), never silently skipped; a data range that is not finite and
//! positive is an error; constant planes are fine (SSIM of two equal constant planes is 1).

use rayon::prelude::*;

use crate::plane::Plane;

/// Gaussian standard deviation of the SSIM window.
pub const SSIM_SIGMA: f64 = 1.5;
/// Filter radius, `int(3.5 * sigma + 0.5)` as scikit-image and scipy compute it.
pub const SSIM_RADIUS: usize = 5;
/// Window size `2 * radius + 1`; also the smallest plane side SSIM accepts.
pub const SSIM_WIN: usize = 2 * SSIM_RADIUS + 1;
/// SSIM stabilising constant for the means.
pub const SSIM_K1: f64 = 0.01;
/// SSIM stabilising constant for the (co)variances.
pub const SSIM_K2: f64 = 0.03;

/// Why a metric could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    /// The two planes differ in size.
    #[error("size mismatch: reference is {ref_w}x{ref_h}, test is {test_w}x{test_h}")]
    SizeMismatch {
        ref_w: usize,
        ref_h: usize,
        test_w: usize,
        test_h: usize,
    },
    /// A plane's data length does not equal width * height.
    #[error("{which} plane claims {width}x{height} but holds {len} values")]
    BadPlane {
        which: &'static str,
        width: usize,
        height: usize,
        len: usize,
    },
    /// A plane has no voxels.
    #[error("empty plane")]
    Empty,
    /// NaN or infinite values are present.
    #[error("{which} has {count} non-finite (NaN or infinite) values")]
    NonFinite { which: &'static str, count: usize },
    /// The data range is zero, negative or not finite.
    #[error("data range must be finite and positive, got {0}")]
    BadDataRange(f64),
    /// The plane is smaller than the SSIM window.
    #[error("SSIM needs planes of at least {min}x{min}, got {width}x{height}")]
    TooSmall {
        width: usize,
        height: usize,
        min: usize,
    },
    /// A volume comparison got different numbers of slices.
    #[error("slice count mismatch: reference has {reference}, test has {test}")]
    SliceCountMismatch { reference: usize, test: usize },
}

/// PSNR (dB) from a mean squared error and a data range: `10 log10(R^2 / mse)`; `+inf` when
/// `mse == 0`.
pub fn psnr_from_mse(mse: f64, data_range: f64) -> f64 {
    10.0 * (data_range * data_range / mse).log10()
}

fn check_range(data_range: f64) -> Result<(), MetricError> {
    if data_range.is_finite() && data_range > 0.0 {
        Ok(())
    } else {
        Err(MetricError::BadDataRange(data_range))
    }
}

fn check_pair(reference: &Plane, test: &Plane) -> Result<(), MetricError> {
    for (which, p) in [("reference", reference), ("test", test)] {
        if p.data.len() != p.width * p.height {
            return Err(MetricError::BadPlane {
                which,
                width: p.width,
                height: p.height,
                len: p.data.len(),
            });
        }
    }
    if reference.width != test.width || reference.height != test.height {
        return Err(MetricError::SizeMismatch {
            ref_w: reference.width,
            ref_h: reference.height,
            test_w: test.width,
            test_h: test.height,
        });
    }
    if reference.data.is_empty() {
        return Err(MetricError::Empty);
    }
    for (which, p) in [("reference", reference), ("test", test)] {
        let count = p.data.iter().filter(|v| !v.is_finite()).count();
        if count > 0 {
            return Err(MetricError::NonFinite { which, count });
        }
    }
    Ok(())
}

/// Sum of squared differences in f64 (inputs already checked).
fn sse(reference: &Plane, test: &Plane) -> f64 {
    reference
        .data
        .iter()
        .zip(&test.data)
        .map(|(&a, &b)| {
            let d = f64::from(a) - f64::from(b);
            d * d
        })
        .sum()
}

/// Mean squared error between two planes of the same size.
pub fn mse(reference: &Plane, test: &Plane) -> Result<f64, MetricError> {
    check_pair(reference, test)?;
    Ok(sse(reference, test) / reference.data.len() as f64)
}

/// PSNR in dB of `test` against `reference` with the given data range (`+inf` when identical).
pub fn psnr(reference: &Plane, test: &Plane, data_range: f64) -> Result<f64, MetricError> {
    check_range(data_range)?;
    Ok(psnr_from_mse(mse(reference, test)?, data_range))
}

/// The SSIM of two planes: the cropped mean, and the full-size map.
#[derive(Clone, Debug, PartialEq)]
pub struct SsimResult {
    /// Mean SSIM over the map with a 5-voxel border cropped (scikit-image's value).
    pub mean: f64,
    /// Per-voxel SSIM, the same size as the inputs, borders included (scikit-image's `full=True`
    /// map). Values lie in [-1, 1].
    pub map: Plane,
}

/// SSIM of `test` against `reference` (symmetric in its two planes).
pub fn ssim(reference: &Plane, test: &Plane, data_range: f64) -> Result<f64, MetricError> {
    ssim_impl(reference, test, data_range, false).map(|r| r.0)
}

/// SSIM with its per-voxel map (for display).
pub fn ssim_map(
    reference: &Plane,
    test: &Plane,
    data_range: f64,
) -> Result<SsimResult, MetricError> {
    let (mean, map) = ssim_impl(reference, test, data_range, true)?;
    Ok(SsimResult {
        mean,
        map: map.unwrap_or_default(),
    })
}

/// The 11 normalised taps of scipy's Gaussian (`exp(-x^2 / (2 sigma^2))`, x = -5..=5).
fn gaussian_taps() -> [f64; SSIM_WIN] {
    let mut w = [0.0f64; SSIM_WIN];
    let s2 = SSIM_SIGMA * SSIM_SIGMA;
    for (i, wi) in w.iter_mut().enumerate() {
        let x = i as f64 - SSIM_RADIUS as f64;
        *wi = (-0.5 / s2 * x * x).exp();
    }
    let sum: f64 = w.iter().sum();
    for wi in &mut w {
        *wi /= sum;
    }
    w
}

/// scipy.ndimage `reflect` boundary: index `j` (possibly outside `0..n`) to `0..n`, period `2n`.
#[inline]
fn reflect(j: isize, n: usize) -> usize {
    let n2 = 2 * n as isize;
    let m = j.rem_euclid(n2) as usize;
    if m < n { m } else { 2 * n - 1 - m }
}

/// Separable Gaussian filter of a `w x h` f64 image, axis 0 (vertical) first, then axis 1, as
/// `scipy.ndimage.gaussian_filter` does.
fn gaussian_filter(src: &[f64], w: usize, h: usize, taps: &[f64; SSIM_WIN]) -> Vec<f64> {
    let r = SSIM_RADIUS as isize;
    // Vertical pass.
    let mut tmp = vec![0.0f64; w * h];
    let rows: Vec<[usize; SSIM_WIN]> = (0..h)
        .map(|y| {
            let mut idx = [0usize; SSIM_WIN];
            for (k, v) in idx.iter_mut().enumerate() {
                *v = reflect(y as isize + k as isize - r, h);
            }
            idx
        })
        .collect();
    for (y, idx) in rows.iter().enumerate() {
        let out = &mut tmp[y * w..(y + 1) * w];
        for (k, &sy) in idx.iter().enumerate() {
            let t = taps[k];
            let row = &src[sy * w..(sy + 1) * w];
            for (o, &v) in out.iter_mut().zip(row) {
                *o += t * v;
            }
        }
    }
    // Horizontal pass, on a row padded by reflection.
    let mut dst = vec![0.0f64; w * h];
    let mut padded = vec![0.0f64; w + 2 * SSIM_RADIUS];
    for y in 0..h {
        let row = &tmp[y * w..(y + 1) * w];
        for (i, p) in padded.iter_mut().enumerate() {
            *p = row[reflect(i as isize - r, w)];
        }
        let out = &mut dst[y * w..(y + 1) * w];
        for (x, o) in out.iter_mut().enumerate() {
            let win = &padded[x..x + SSIM_WIN];
            *o = win.iter().zip(taps).map(|(a, b)| a * b).sum();
        }
    }
    dst
}

fn ssim_impl(
    reference: &Plane,
    test: &Plane,
    data_range: f64,
    want_map: bool,
) -> Result<(f64, Option<Plane>), MetricError> {
    check_range(data_range)?;
    check_pair(reference, test)?;
    let (w, h) = (reference.width, reference.height);
    if w < SSIM_WIN || h < SSIM_WIN {
        return Err(MetricError::TooSmall {
            width: w,
            height: h,
            min: SSIM_WIN,
        });
    }
    let taps = gaussian_taps();
    let x: Vec<f64> = reference.data.iter().map(|&v| f64::from(v)).collect();
    let y: Vec<f64> = test.data.iter().map(|&v| f64::from(v)).collect();
    let xx: Vec<f64> = x.iter().map(|a| a * a).collect();
    let yy: Vec<f64> = y.iter().map(|a| a * a).collect();
    let xy: Vec<f64> = x.iter().zip(&y).map(|(a, b)| a * b).collect();
    let ux = gaussian_filter(&x, w, h, &taps);
    let uy = gaussian_filter(&y, w, h, &taps);
    let uxx = gaussian_filter(&xx, w, h, &taps);
    let uyy = gaussian_filter(&yy, w, h, &taps);
    let uxy = gaussian_filter(&xy, w, h, &taps);
    let c1 = (SSIM_K1 * data_range).powi(2);
    let c2 = (SSIM_K2 * data_range).powi(2);
    let s_at = |i: usize| -> f64 {
        let (mx, my) = (ux[i], uy[i]);
        let vx = uxx[i] - mx * mx;
        let vy = uyy[i] - my * my;
        let vxy = uxy[i] - mx * my;
        let a1 = 2.0 * mx * my + c1;
        let a2 = 2.0 * vxy + c2;
        let b1 = mx * mx + my * my + c1;
        let b2 = vx + vy + c2;
        (a1 * a2) / (b1 * b2)
    };
    let p = SSIM_RADIUS;
    let mut sum = 0.0f64;
    for row in p..h - p {
        for col in p..w - p {
            sum += s_at(row * w + col);
        }
    }
    let mean = sum / ((h - 2 * p) * (w - 2 * p)) as f64;
    let map = want_map.then(|| Plane {
        width: w,
        height: h,
        data: (0..w * h).map(|i| s_at(i) as f32).collect(),
    });
    Ok((mean, map))
}

/// PSNR, SSIM and MSE of one plane.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct PlaneMetrics {
    /// dB; `+inf` for identical planes (serialised as JSON `null`).
    pub psnr: f64,
    pub ssim: f64,
    pub mse: f64,
}

/// PSNR, SSIM and MSE of one plane pair.
pub fn plane_metrics(
    reference: &Plane,
    test: &Plane,
    data_range: f64,
) -> Result<PlaneMetrics, MetricError> {
    let mse = mse(reference, test)?;
    check_range(data_range)?;
    let ssim = ssim(reference, test, data_range)?;
    Ok(PlaneMetrics {
        psnr: psnr_from_mse(mse, data_range),
        ssim,
        mse,
    })
}

/// Volume metrics: PSNR from the MSE over all voxels, SSIM the mean of the slices' SSIMs.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct VolumeMetrics {
    pub psnr: f64,
    pub ssim: f64,
    pub mse: f64,
    /// Number of slices included.
    pub slices: usize,
}

/// Accumulates volume metrics slice by slice (for streaming evaluation).
#[derive(Clone, Debug)]
pub struct VolumeAccumulator {
    data_range: f64,
    sse: f64,
    voxels: u64,
    ssim_sum: f64,
    slices: usize,
}

impl VolumeAccumulator {
    /// A new, empty accumulator; fails when `data_range` is not finite and positive.
    pub fn new(data_range: f64) -> Result<Self, MetricError> {
        check_range(data_range)?;
        Ok(Self {
            data_range,
            sse: 0.0,
            voxels: 0,
            ssim_sum: 0.0,
            slices: 0,
        })
    }

    /// Adds one slice pair and returns its own metrics.
    pub fn add(&mut self, reference: &Plane, test: &Plane) -> Result<PlaneMetrics, MetricError> {
        let m = plane_metrics(reference, test, self.data_range)?;
        self.add_metrics(&m, reference.data.len());
        Ok(m)
    }

    /// Adds a slice's metrics computed elsewhere (`voxels` = its voxel count), e.g. in parallel.
    pub fn add_metrics(&mut self, m: &PlaneMetrics, voxels: usize) {
        self.sse += m.mse * voxels as f64;
        self.voxels += voxels as u64;
        self.ssim_sum += m.ssim;
        self.slices += 1;
    }

    /// The data range the accumulator was made with.
    pub fn data_range(&self) -> f64 {
        self.data_range
    }

    /// The volume metrics so far; `None` before the first slice.
    pub fn finish(&self) -> Option<VolumeMetrics> {
        (self.slices > 0).then(|| {
            let mse = self.sse / self.voxels as f64;
            VolumeMetrics {
                psnr: psnr_from_mse(mse, self.data_range),
                ssim: self.ssim_sum / self.slices as f64,
                mse,
                slices: self.slices,
            }
        })
    }
}

/// Metrics of a stack of slices (computed in parallel): the volume figures and each slice's.
pub fn volume_metrics(
    reference: &[Plane],
    test: &[Plane],
    data_range: f64,
) -> Result<(VolumeMetrics, Vec<PlaneMetrics>), MetricError> {
    if reference.len() != test.len() {
        return Err(MetricError::SliceCountMismatch {
            reference: reference.len(),
            test: test.len(),
        });
    }
    let mut acc = VolumeAccumulator::new(data_range)?;
    let per: Vec<PlaneMetrics> = reference
        .par_iter()
        .zip(test.par_iter())
        .map(|(r, t)| plane_metrics(r, t, data_range))
        .collect::<Result<_, _>>()?;
    for (m, r) in per.iter().zip(reference) {
        acc.add_metrics(m, r.data.len());
    }
    let vol = acc.finish().ok_or(MetricError::Empty)?;
    Ok((vol, per))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane(w: usize, h: usize, f: impl Fn(usize, usize) -> f32) -> Plane {
        let mut p = Plane::zeros(w, h);
        for r in 0..h {
            for c in 0..w {
                p.set(r, c, f(r, c));
            }
        }
        p
    }

    #[test]
    fn taps_match_scipy() {
        let t = gaussian_taps();
        // scipy.ndimage._gaussian_kernel1d(1.5, 0, 5)
        assert!((t[5] - 0.266_011_724_861_794_36).abs() < 1e-12, "{}", t[5]);
        assert!((t[0] - 0.001_028_380_084_479_11).abs() < 1e-12, "{}", t[0]);
        assert!((t.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn reflect_is_half_sample_symmetric() {
        let got: Vec<usize> = (-3..7).map(|j| reflect(j, 4)).collect();
        assert_eq!(got, vec![2, 1, 0, 0, 1, 2, 3, 3, 2, 1]);
    }

    #[test]
    fn identical_planes() {
        let a = plane(16, 13, |r, c| (r * 7 + c * 3) as f32 / 100.0);
        assert_eq!(psnr(&a, &a, 1.0).unwrap(), f64::INFINITY);
        assert!((ssim(&a, &a, 1.0).unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn constant_planes() {
        let a = plane(12, 12, |_, _| 0.5);
        let b = plane(12, 12, |_, _| 0.25);
        assert!((ssim(&a, &a, 1.0).unwrap() - 1.0).abs() < 1e-12);
        let s = ssim(&a, &b, 1.0).unwrap();
        // Constant planes: only the luminance term remains.
        let c1 = 1e-4;
        let want = (2.0 * 0.5 * 0.25 + c1) / (0.25 + 0.0625 + c1);
        assert!((s - want).abs() < 1e-9, "{s} vs {want}");
        assert!((psnr(&a, &b, 1.0).unwrap() - 10.0 * (1.0f64 / 0.0625).log10()).abs() < 1e-9);
    }

    #[test]
    fn errors() {
        let a = plane(12, 12, |_, _| 0.5);
        let mut b = a.clone();
        b.data[3] = f32::NAN;
        assert!(matches!(
            psnr(&a, &b, 1.0),
            Err(MetricError::NonFinite {
                which: "test",
                count: 1
            })
        ));
        assert!(matches!(
            ssim(&b, &a, 1.0),
            Err(MetricError::NonFinite { .. })
        ));
        assert!(matches!(
            psnr(&a, &a, 0.0),
            Err(MetricError::BadDataRange(_))
        ));
        assert!(matches!(
            ssim(&a, &a, f64::NAN),
            Err(MetricError::BadDataRange(_))
        ));
        let small = plane(10, 12, |_, _| 0.0);
        assert!(matches!(
            ssim(&small, &small, 1.0),
            Err(MetricError::TooSmall { .. })
        ));
        let other = plane(12, 13, |_, _| 0.0);
        assert!(matches!(
            psnr(&a, &other, 1.0),
            Err(MetricError::SizeMismatch { .. })
        ));
        let bad = Plane {
            width: 12,
            height: 12,
            data: vec![0.0; 3],
        };
        assert!(matches!(mse(&bad, &a), Err(MetricError::BadPlane { .. })));
    }

    #[test]
    fn volume_psnr_uses_pooled_mse() {
        let r1 = plane(12, 12, |_, _| 0.0);
        let t1 = plane(12, 12, |_, _| 0.1);
        let t2 = plane(12, 12, |_, _| 0.3);
        let (v, per) = volume_metrics(&[r1.clone(), r1.clone()], &[t1, t2], 1.0).unwrap();
        let want_mse = (0.01f64 + 0.09) / 2.0;
        assert!((v.mse - want_mse).abs() < 1e-7);
        assert!((v.psnr - 10.0 * (1.0 / want_mse).log10()).abs() < 1e-5);
        assert!((v.ssim - (per[0].ssim + per[1].ssim) / 2.0).abs() < 1e-12);
        assert_eq!(v.slices, 2);
    }

    #[test]
    fn map_mean_matches_cropped_average() {
        let a = plane(20, 15, |r, c| ((r * 31 + c * 17) % 11) as f32 / 10.0);
        let b = plane(20, 15, |r, c| ((r * 13 + c * 5) % 7) as f32 / 6.0);
        let res = ssim_map(&a, &b, 1.0).unwrap();
        let mut s = 0.0f64;
        for r in 5..10 {
            for c in 5..15 {
                s += f64::from(res.map.get(r, c));
            }
        }
        assert!((s / 50.0 - res.mean).abs() < 1e-6);
        assert_eq!((res.map.width, res.map.height), (20, 15));
    }
}
