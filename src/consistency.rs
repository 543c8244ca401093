//! Data consistency: makes an SR plane agree exactly with the LR plane it was made from, where
//! the LR says anything.
//!
//! With k-space truncation ([`crate::degrade::kspace_truncate`]) the LR is the centre of the HR's
//! k-space, so a trustworthy SR must have that centre. Writing `D` for the degradation (HR to LR)
//! the data-consistent SR is
//!
//! ```text
//! DC(SR) = SR + U (LR - D SR)
//! ```
//!
//! per slice, on the grid the degradation defines (LR voxel `i` at HR voxel `s i`, the FFT
//! conventions and `1/s^2` intensity scaling of [`crate::degrade`]). `U` is the minimum-norm right
//! inverse of `D` (`D U = I`): the LR spectrum placed at the HR frequencies it came from, times
//! `s^2`. It equals zero-filled interpolation ([`crate::degrade::zerofill_upsample`]) except on the
//! lone Nyquist row and column of an even LR side: `D` reads the average of the HR's `-n/2` and
//! `+n/2` coefficients there, so `U` puts the whole value at both (zero-filling puts half at each,
//! and `D` of it gives half the Nyquist coefficient back). So DC replaces the SR's `w/s x h/s`
//! central frequencies by the measured LR's and keeps every other frequency, and it is the
//! orthogonal projection onto the SR planes whose degradation is the LR: `D DC(SR) = LR` up to
//! float rounding, `DC(DC(SR)) = DC(SR)`, `DC(HR) = HR` when `LR = D HR`, and DC never moves an SR
//! further from the true HR in the L2 sense (the true HR is one of those planes). Per-voxel
//! errors, PSNR after clamping to [0, 1] and SSIM can still get worse.
//!
//! The **consistency residual** of an SR is `SR - DC(SR) = U (D SR - LR)`: the HR-grid image of
//! what the SR's central k-space says that the measured LR does not. It is zero for a consistent
//! SR; the viewer's residual map shows its magnitude.
//!
//! Sizes: the SR must be exactly `scale` times the LR in each axis (what the network returns);
//! any LR size works, odd ones included (odd sizes have no Nyquist frequency: `fftfreq` keeps
//! `-(n-1)/2 .. (n-1)/2`). Bicubic downsampling is not a k-space operation: DC is refused for it
//! ([`ConsistencyError::Unsupported`]). All arithmetic is in f64; planes are f32.

use crate::degrade::{self, DegradeError};
use crate::model::Degradation;
use crate::plane::Plane;

/// Why data consistency could not be applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConsistencyError {
    /// The LR was not made by k-space truncation.
    #[error(
        "data consistency is defined for k-space truncation only (the LR is the centre of the \
         HR's k-space); this LR is {}",
        .0.as_str()
    )]
    Unsupported(Degradation),
    /// The SR is not `scale` times the LR.
    #[error("the SR is {sr_w}x{sr_h}, not {scale} times the {lr_w}x{lr_h} LR")]
    SizeMismatch {
        sr_w: usize,
        sr_h: usize,
        lr_w: usize,
        lr_h: usize,
        scale: usize,
    },
    /// A plane is malformed or not finite.
    #[error(transparent)]
    Plane(#[from] DegradeError),
}

/// A data-consistent SR and the residual it removed.
#[derive(Clone, Debug, PartialEq)]
pub struct Projection {
    /// `DC(SR)`.
    pub consistent: Plane,
    /// `SR - DC(SR)` (signed).
    pub residual: Plane,
}

/// Checks that DC can be applied to an SR made from `lr` by a `degradation` LR at `scale`.
pub fn check(
    sr: &Plane,
    lr: &Plane,
    scale: usize,
    degradation: Degradation,
) -> Result<(), ConsistencyError> {
    if degradation != Degradation::Kspace {
        return Err(ConsistencyError::Unsupported(degradation));
    }
    degrade::check_plane(lr, scale)?;
    degrade::check_plane(sr, scale)?;
    if sr.width != lr.width * scale || sr.height != lr.height * scale {
        return Err(ConsistencyError::SizeMismatch {
            sr_w: sr.width,
            sr_h: sr.height,
            lr_w: lr.width,
            lr_h: lr.height,
            scale,
        });
    }
    Ok(())
}

/// `U r`: the minimum-norm HR image whose degradation is the LR image `r` (`w x h`), in f64.
/// LR frequency `k` is placed at the HR frequencies `D` reads it from: `f(k)`, and for the lone
/// Nyquist frequency `-n/2` of an even axis also `+n/2` (both axes flipped together), with the
/// `s^2` that undoes `D`'s intensity scaling; the result is real (the placement is Hermitian).
fn lift_f64(r: &[f64], w: usize, h: usize, scale: usize) -> Vec<f64> {
    use rustfft::num_complex::Complex64;
    let (big_w, big_h) = (w * scale, h * scale);
    let mut planner = rustfft::FftPlanner::new();
    let mut spec: Vec<Complex64> = r.iter().map(|&v| Complex64::new(v, 0.0)).collect();
    degrade::fft2(&mut planner, &mut spec, w, h, false);
    // HR index of LR frequency `j` of an `n`-point axis, and of its Nyquist twin `+n/2`.
    let place = |j: usize, n: usize, big: usize| -> (usize, usize) {
        let f = degrade::freq(j, n);
        let twin = if n.is_multiple_of(2) && f == -((n / 2) as isize) {
            (n / 2) as isize
        } else {
            f
        };
        (
            f.rem_euclid(big as isize) as usize,
            twin.rem_euclid(big as isize) as usize,
        )
    };
    let s2 = (scale * scale) as f64;
    let mut big = vec![Complex64::new(0.0, 0.0); big_w * big_h];
    for ly in 0..h {
        let (y1, y2) = place(ly, h, big_h);
        for lx in 0..w {
            let (x1, x2) = place(lx, w, big_w);
            let v = spec[ly * w + lx] * s2;
            big[y1 * big_w + x1] = v;
            big[y2 * big_w + x2] = v;
        }
    }
    degrade::fft2(&mut planner, &mut big, big_w, big_h, true);
    let norm = 1.0 / (big_w * big_h) as f64;
    big.iter().map(|c| c.re * norm).collect()
}

/// `SR - DC(SR) = U (D SR - LR)` in f64.
fn residual_f64(sr: &Plane, lr: &Plane, scale: usize) -> Vec<f64> {
    let sr64 = degrade::to_f64(sr);
    let d = degrade::kspace_truncate_f64(&sr64, sr.width, sr.height, scale);
    let diff: Vec<f64> = d
        .iter()
        .zip(&lr.data)
        .map(|(a, &b)| a - f64::from(b))
        .collect();
    lift_f64(&diff, lr.width, lr.height, scale)
}

/// `DC(SR)` and `SR - DC(SR)` of `sr` against the measured `lr` (see the module docs).
pub fn project_with_residual(
    sr: &Plane,
    lr: &Plane,
    scale: usize,
    degradation: Degradation,
) -> Result<Projection, ConsistencyError> {
    check(sr, lr, scale, degradation)?;
    let r = residual_f64(sr, lr, scale);
    let consistent = sr
        .data
        .iter()
        .zip(&r)
        .map(|(&v, r)| (f64::from(v) - r) as f32)
        .collect();
    Ok(Projection {
        consistent: Plane {
            width: sr.width,
            height: sr.height,
            data: consistent,
        },
        residual: Plane {
            width: sr.width,
            height: sr.height,
            data: r.into_iter().map(|v| v as f32).collect(),
        },
    })
}

/// `DC(SR)`: `sr` with its central k-space replaced by the measured `lr`'s.
pub fn project(
    sr: &Plane,
    lr: &Plane,
    scale: usize,
    degradation: Degradation,
) -> Result<Plane, ConsistencyError> {
    project_with_residual(sr, lr, scale, degradation).map(|p| p.consistent)
}

/// `|SR - DC(SR)|` per voxel: the magnitude of the SR's departure from the measured data, on
/// the SR grid.
pub fn residual_magnitude(
    sr: &Plane,
    lr: &Plane,
    scale: usize,
    degradation: Degradation,
) -> Result<Plane, ConsistencyError> {
    check(sr, lr, scale, degradation)?;
    let r = residual_f64(sr, lr, scale);
    Ok(Plane {
        width: sr.width,
        height: sr.height,
        data: r.into_iter().map(|v| v.abs() as f32).collect(),
    })
}

/// Root mean square of `SR - DC(SR)` over the voxels of `residual`s (planes of
/// [`Projection::residual`]); 0 for none.
pub fn rms(residuals: &[Plane]) -> f64 {
    let (sum, n) = residuals.iter().fold((0.0f64, 0usize), |(s, n), p| {
        (
            s + p.data.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>(),
            n + p.data.len(),
        )
    });
    if n == 0 { 0.0 } else { (sum / n as f64).sqrt() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::degrade::kspace_truncate;
    use crate::degrade::tests::max_abs_diff;

    /// A deterministic textured image in [0, 1] with edges (not band-limited).
    fn phantom(w: usize, h: usize, seed: u64) -> Plane {
        let mut p = Plane::zeros(w, h);
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        for r in 0..h {
            for c in 0..w {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let noise = (state >> 11) as f64 / (1u64 << 53) as f64;
                let (x, y) = (c as f64 / w as f64 - 0.5, r as f64 / h as f64 - 0.45);
                let inside = x * x / 0.16 + y * y / 0.2 < 1.0;
                let blob = (x - 0.1).powi(2) + (y + 0.05).powi(2) < 0.01;
                let v = if inside { 0.6 } else { 0.0 }
                    + if blob { 0.3 } else { 0.0 }
                    + 0.08 * (17.0 * x).sin() * f64::from(u8::from(inside))
                    + 0.05 * noise;
                p.set(r, c, v as f32);
            }
        }
        p
    }

    fn l2(a: &Plane, b: &Plane) -> f64 {
        a.data
            .iter()
            .zip(&b.data)
            .map(|(x, y)| f64::from(x - y).powi(2))
            .sum::<f64>()
            .sqrt()
    }

    /// (HR width, HR height, scale): even and odd LR sizes, x2, x3, x4.
    const SIZES: [(usize, usize, usize); 6] = [
        (64, 48, 2),
        (30, 26, 2),
        (44, 36, 4),
        (36, 52, 4),
        (27, 33, 3),
        (66, 18, 2),
    ];

    /// An SR-like guess of `hr`: its LR, upsampled by nearest neighbour (wrong high frequencies
    /// and a wrong centre).
    fn guess(lr: &Plane, s: usize) -> Plane {
        degrade::nearest_upsample(lr, s, Degradation::Kspace).unwrap()
    }

    #[test]
    fn degrading_the_consistent_sr_gives_the_lr() {
        // Measured worst case 6.0e-8 (one f32 ulp below 1: the output's rounding); pinned at 2e-7.
        let mut worst = 0.0f64;
        for (i, &(w, h, s)) in SIZES.iter().enumerate() {
            let hr = phantom(w, h, i as u64);
            let lr = kspace_truncate(&hr, s).unwrap();
            let sr = guess(&lr, s);
            let before = max_abs_diff(&kspace_truncate(&sr, s).unwrap(), &lr);
            assert!(
                before > 1e-3,
                "{w}x{h} x{s}: the guess is already consistent"
            );
            let dc = project(&sr, &lr, s, Degradation::Kspace).unwrap();
            let d = max_abs_diff(&kspace_truncate(&dc, s).unwrap(), &lr);
            worst = worst.max(d);
        }
        assert!(worst < 2e-7, "max |D DC(SR) - LR| = {worst:e}");
    }

    #[test]
    fn projection_is_idempotent_and_keeps_the_true_hr() {
        for (i, &(w, h, s)) in SIZES.iter().enumerate() {
            let hr = phantom(w, h, 10 + i as u64);
            let lr = kspace_truncate(&hr, s).unwrap();
            let sr = guess(&lr, s);
            let dc = project(&sr, &lr, s, Degradation::Kspace).unwrap();
            let dc2 = project(&dc, &lr, s, Degradation::Kspace).unwrap();
            // Measured at most 6.0e-8 for both (f32 rounding); pinned at 2e-7.
            let d = max_abs_diff(&dc2, &dc);
            assert!(d < 2e-7, "{w}x{h} x{s}: DC not idempotent, {d:e}");
            let back = project(&hr, &lr, s, Degradation::Kspace).unwrap();
            let d = max_abs_diff(&back, &hr);
            assert!(d < 2e-7, "{w}x{h} x{s}: DC moved the true HR by {d:e}");
            // An orthogonal projection onto a set holding the HR never moves away from it.
            assert!(
                l2(&dc, &hr) < l2(&sr, &hr),
                "{w}x{h} x{s}: {} !< {}",
                l2(&dc, &hr),
                l2(&sr, &hr)
            );
        }
    }

    #[test]
    fn residual_is_what_dc_removes() {
        let (w, h, s) = (40, 32, 2);
        let hr = phantom(w, h, 3);
        let lr = kspace_truncate(&hr, s).unwrap();
        let sr = guess(&lr, s);
        let p = project_with_residual(&sr, &lr, s, Degradation::Kspace).unwrap();
        for ((v, c), r) in sr.data.iter().zip(&p.consistent.data).zip(&p.residual.data) {
            assert!((v - c - r).abs() < 1e-6);
        }
        let mag = residual_magnitude(&sr, &lr, s, Degradation::Kspace).unwrap();
        assert!(
            mag.data
                .iter()
                .zip(&p.residual.data)
                .all(|(m, r)| (m - r.abs()).abs() < 1e-7)
        );
        assert!(rms(std::slice::from_ref(&p.residual)) > 1e-3);
        // The consistent SR's own residual is rounding only.
        let again = residual_magnitude(&p.consistent, &lr, s, Degradation::Kspace).unwrap();
        assert!(again.data.iter().all(|v| *v < 2e-7));
        assert_eq!(rms(&[]), 0.0);
    }

    #[test]
    fn refuses_bicubic_wrong_sizes_and_bad_planes() {
        let hr = phantom(16, 16, 1);
        let lr = kspace_truncate(&hr, 2).unwrap();
        let e = project(&hr, &lr, 2, Degradation::Bicubic).unwrap_err();
        assert_eq!(e, ConsistencyError::Unsupported(Degradation::Bicubic));
        assert!(e.to_string().contains("k-space truncation only"), "{e}");
        let e = project(&hr, &lr, 4, Degradation::Kspace).unwrap_err();
        assert!(matches!(e, ConsistencyError::SizeMismatch { .. }), "{e}");
        assert_eq!(e.to_string(), "the SR is 16x16, not 4 times the 8x8 LR");
        let mut bad = hr.clone();
        bad.data[3] = f32::NAN;
        assert!(matches!(
            project(&bad, &lr, 2, Degradation::Kspace),
            Err(ConsistencyError::Plane(DegradeError::NonFinite(1)))
        ));
        assert!(matches!(
            project(&hr, &lr, 0, Degradation::Kspace),
            Err(ConsistencyError::Plane(DegradeError::BadScale(0)))
        ));
    }
}
