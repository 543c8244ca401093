//! A realistic LR acquisition (`deltawkv eval --realistic`): k-space truncation as
//! [`super::kspace_truncate`], plus what a scanner adds, with a fixed seed so that every run gives
//! the same LR. The standard protocol (noise-free truncation) is not changed by any of this.
//!
//! For an HR plane `x` (normalised intensities, cropped to a multiple of `s`), HR `W x H`, LR
//! `w x h`:
//! 1. **Sampling**: `S[k] = X[f(k)]` for the LR frequencies `k` (`fftfreq` order), `X` the HR's
//!    unnormalised 2-D DFT; on the lone Nyquist row/column of an even side the average of the
//!    `-n/2` and `+n/2` coefficients (as the standard truncation's real part does). Without
//!    noise, filter and partial Fourier the result is exactly `|kspace_truncate(x)|`.
//! 2. **Noise**: complex Gaussian noise is added to every acquired k-space sample, scaled so that
//!    each of the real and imaginary parts of the (unfiltered) LR image gets independent noise of
//!    standard deviation `noise` in normalised units (1.0 = the ground truth's robust maximum,
//!    the 99.5th percentile its normalisation divides by). The magnitude image then has Rician
//!    noise: Rayleigh with scale `noise` where the signal is 0, about Gaussian with standard
//!    deviation `noise` where the signal is much brighter.
//! 3. **Partial Fourier** (`partial_fourier` = `p` in [0.5, 1]): along the plane's vertical axis
//!    (its rows, taken as the phase-encoding direction) only the `ceil(p h)` lowest frequencies
//!    from `-floor(h/2)` upwards are acquired; the missing highest positive ones are zero
//!    (zero-filled reconstruction, no homodyne). `p = 1`: everything is acquired.
//! 4. **Apodisation** (`tukey` = `a` in [0, 1]): the acquired data, noise included, are multiplied
//!    by the separable Tukey window `t(kx) t(ky)`, `t = 1` for `|k| / (n/2) <= 1 - a`, else
//!    `(1 + cos(pi (|k| / (n/2) - 1 + a) / a)) / 2`. `a = 0`: no filter; `a = 1`: Hann.
//! 5. **Magnitude**: inverse DFT with the standard truncation's scaling (`1/s^2` intensity
//!    factor), then the modulus of each complex voxel.
//!
//! Relation to the training-side acquisition (`train/dwkv/acquire.py`, `acquire_lr`): the same
//! definition (Nyquist line symmetrised, noise on the acquired samples before the Tukey window,
//! the same noise scale, magnitude), with `partial_fourier = p` here written `pf = 1 - p` there,
//! where the parameters, the partial-Fourier axis and its side are drawn at random per crop. Only
//! the noise streams differ.
//!
//! Noise is drawn from a SplitMix64 stream seeded with `seed` and the slice number (Box-Muller:
//! one complex sample per acquired coefficient, in row-major order of the LR spectrum), so the
//! LR of slice `k` depends only on the seed, `k` and the ground truth, not on which other
//! slices are evaluated or in which order.

use rustfft::FftPlanner;
use rustfft::num_complex::Complex64;

use super::{DegradeError, check_plane, crop_to_multiple, fft2, freq};
use crate::plane::Plane;

/// The parameters of the realistic acquisition (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Realistic {
    /// Standard deviation of each of the real and imaginary parts of the complex image noise,
    /// in normalised units (1.0 = the GT's 99.5th percentile), before the filter.
    pub noise: f64,
    /// Tukey window parameter in [0, 1] (0: no filter, 1: Hann).
    pub tukey: f64,
    /// Fraction of the phase-encoding (vertical) frequencies acquired, in [0.5, 1].
    pub partial_fourier: f64,
    /// Seed of the noise.
    pub seed: u64,
}

impl Default for Realistic {
    /// `deltawkv eval --realistic`'s defaults: noise 0.02, Tukey 0.25, full k-space, seed 0.
    fn default() -> Self {
        Self {
            noise: 0.02,
            tukey: 0.25,
            partial_fourier: 1.0,
            seed: 0,
        }
    }
}

/// Why a realistic LR could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RealisticError {
    #[error("noise must be a finite number >= 0, got {0}")]
    Noise(f64),
    #[error("the Tukey parameter must be in [0, 1], got {0}")]
    Tukey(f64),
    #[error("the partial-Fourier fraction must be in [0.5, 1], got {0}")]
    PartialFourier(f64),
    #[error(transparent)]
    Plane(#[from] DegradeError),
}

impl Realistic {
    /// Checks the parameters' ranges.
    pub fn validate(&self) -> Result<(), RealisticError> {
        if !(self.noise.is_finite() && self.noise >= 0.0) {
            return Err(RealisticError::Noise(self.noise));
        }
        if !(0.0..=1.0).contains(&self.tukey) {
            return Err(RealisticError::Tukey(self.tukey));
        }
        if !(0.5..=1.0).contains(&self.partial_fourier) {
            return Err(RealisticError::PartialFourier(self.partial_fourier));
        }
        Ok(())
    }

    /// One line for reports: `noise 0.02, Tukey 0.25, partial Fourier 1, seed 0`.
    pub fn describe(&self) -> String {
        format!(
            "complex k-space noise sigma {} (of the GT's 99.5th percentile), Tukey {}, partial \
             Fourier {}, seed {}",
            self.noise, self.tukey, self.partial_fourier, self.seed
        )
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): the noise stream.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 bits.
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A standard complex Gaussian pair (each part N(0, 1)), Box-Muller.
    fn gaussian_pair(&mut self) -> (f64, f64) {
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = 2.0 * std::f64::consts::PI * u2;
        (r * t.cos(), r * t.sin())
    }
}

/// The stream of slice `slice` for `seed`.
fn stream(seed: u64, slice: u64) -> SplitMix64 {
    let mut s = SplitMix64(seed);
    let a = s.next();
    SplitMix64(a ^ slice.wrapping_mul(0xD1B5_4A32_D192_ED03))
}

/// The Tukey window at frequency `f` of an `n`-point axis.
fn tukey(f: isize, n: usize, a: f64) -> f64 {
    let t = f.unsigned_abs() as f64 / (n as f64 / 2.0);
    if a <= 0.0 || t <= 1.0 - a {
        1.0
    } else {
        0.5 * (1.0 + (std::f64::consts::PI * (t - 1.0 + a) / a).cos())
    }
}

/// The realistic LR of slice number `slice` of `hr` at `scale` (crops to a multiple of `scale`
/// first, as every degradation).
pub fn realistic_lr(
    hr: &Plane,
    scale: usize,
    params: &Realistic,
    slice: u64,
) -> Result<Plane, RealisticError> {
    params.validate()?;
    check_plane(hr, scale)?;
    let hr = crop_to_multiple(hr, scale)?;
    let (big_w, big_h) = (hr.width, hr.height);
    let (w, h) = (big_w / scale, big_h / scale);
    let mut planner = FftPlanner::new();
    let mut spec: Vec<Complex64> = hr
        .data
        .iter()
        .map(|&v| Complex64::new(f64::from(v), 0.0))
        .collect();
    fft2(&mut planner, &mut spec, big_w, big_h, false);
    // HR indices of LR frequency j (the Nyquist twin is +n/2 for the lone -n/2).
    let place = |j: usize, n: usize, big: usize| -> (usize, usize) {
        let f = freq(j, n);
        let twin = if n.is_multiple_of(2) && f == -((n / 2) as isize) {
            -f
        } else {
            f
        };
        (
            f.rem_euclid(big as isize) as usize,
            twin.rem_euclid(big as isize) as usize,
        )
    };
    // Acquired vertical frequencies: the ceil(p h) lowest, from -floor(h/2) upwards.
    let acquired_rows = ((params.partial_fourier * h as f64).ceil() as usize).clamp(1, h);
    let lowest = -((h / 2) as isize);
    let highest = lowest + acquired_rows as isize - 1;
    // Per-coefficient noise of the unnormalised spectrum giving `noise` per image channel.
    let sigma_k = params.noise * (big_w * big_h) as f64 / ((w * h) as f64).sqrt();
    let mut rng = stream(params.seed, slice);
    let mut small = vec![Complex64::new(0.0, 0.0); w * h];
    for ly in 0..h {
        let fy = freq(ly, h);
        if fy > highest {
            continue;
        }
        let (y1, y2) = place(ly, h, big_h);
        let wy = tukey(fy, h, params.tukey);
        for lx in 0..w {
            let (x1, x2) = place(lx, w, big_w);
            let fx = freq(lx, w);
            let sample = (spec[y1 * big_w + x1] + spec[y2 * big_w + x2]) * 0.5;
            let (nr, ni) = rng.gaussian_pair();
            let noisy = sample + Complex64::new(nr, ni) * sigma_k;
            small[ly * w + lx] = noisy * (wy * tukey(fx, w, params.tukey));
        }
    }
    fft2(&mut planner, &mut small, w, h, true);
    let norm = 1.0 / (big_w * big_h) as f64;
    Ok(Plane {
        width: w,
        height: h,
        data: small.iter().map(|c| (c.norm() * norm) as f32).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::degrade::kspace_truncate;

    fn phantom(w: usize, h: usize) -> Plane {
        let mut p = Plane::zeros(w, h);
        for r in 0..h {
            for c in 0..w {
                let (x, y) = (c as f64 / w as f64 - 0.5, r as f64 / h as f64 - 0.5);
                let v = if x * x + y * y < 0.15 { 0.7 } else { 0.05 }
                    + 0.1 * (9.0 * x).sin() * (5.0 * y).cos();
                p.set(r, c, v as f32);
            }
        }
        p
    }

    fn constant(w: usize, h: usize, v: f32) -> Plane {
        Plane {
            width: w,
            height: h,
            data: vec![v; w * h],
        }
    }

    fn off() -> Realistic {
        Realistic {
            noise: 0.0,
            tukey: 0.0,
            partial_fourier: 1.0,
            seed: 0,
        }
    }

    #[test]
    fn without_noise_filter_and_partial_fourier_it_is_the_standard_lr() {
        for &(w, h, s) in &[(64, 48, 2), (30, 26, 2), (44, 36, 4), (27, 33, 3)] {
            let hr = phantom(w, h);
            let std = kspace_truncate(&hr, s).unwrap();
            let real = realistic_lr(&hr, s, &off(), 3).unwrap();
            let d = std
                .data
                .iter()
                .zip(&real.data)
                .map(|(a, b)| (a.abs() - b).abs())
                .fold(0.0f32, f32::max);
            assert!(d < 1e-6, "{w}x{h} x{s}: {d}");
        }
    }

    #[test]
    fn deterministic_per_seed_and_slice() {
        let hr = phantom(64, 64);
        let p = Realistic::default();
        let a = realistic_lr(&hr, 2, &p, 5).unwrap();
        assert_eq!(a, realistic_lr(&hr, 2, &p, 5).unwrap());
        assert_ne!(a, realistic_lr(&hr, 2, &p, 6).unwrap(), "slices differ");
        let other = Realistic { seed: 1, ..p };
        assert_ne!(a, realistic_lr(&hr, 2, &other, 5).unwrap(), "seeds differ");
        // Pinned: the first voxels of slice 5 with the default seed (a change of the stream or
        // of the definition shows here).
        let want = [0.022_676_64f32, 0.043_636_527, 0.036_371_447];
        for (got, want) in a.data.iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{:?}", &a.data[..3]);
        }
    }

    #[test]
    fn noise_level_is_as_specified() {
        // Zero signal: |c| is Rayleigh, E|c|^2 = 2 sigma^2 (4096 samples: 1.6% standard error).
        let sigma = 0.05;
        for seed in 0..3 {
            let p = Realistic {
                noise: sigma,
                seed,
                ..off()
            };
            let lr = realistic_lr(&constant(128, 128, 0.0), 2, &p, 0).unwrap();
            let m2 =
                lr.data.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / lr.data.len() as f64;
            let est = (m2 / 2.0).sqrt();
            assert!((est / sigma - 1.0).abs() < 0.04, "seed {seed}: {est}");
        }
        // Bright signal: the magnitude is about Gaussian with standard deviation sigma.
        let p = Realistic {
            noise: sigma,
            ..off()
        };
        let lr = realistic_lr(&constant(128, 128, 0.8), 2, &p, 0).unwrap();
        let n = lr.data.len() as f64;
        let mean = lr.data.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let sd = (lr
            .data
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        assert!((mean - 0.8).abs() < 0.005, "{mean}");
        assert!((sd / sigma - 1.0).abs() < 0.05, "{sd}");
    }

    #[test]
    fn filter_and_partial_fourier_blur_and_keep_the_mean() {
        let hr = phantom(64, 64);
        let std = kspace_truncate(&hr, 2).unwrap();
        let energy = |p: &Plane| {
            // High-frequency energy: sum of squared horizontal and vertical differences.
            let mut e = 0.0f64;
            for r in 1..p.height {
                for c in 1..p.width {
                    e += f64::from(p.get(r, c) - p.get(r, c - 1)).powi(2)
                        + f64::from(p.get(r, c) - p.get(r - 1, c)).powi(2);
                }
            }
            e
        };
        let hann = realistic_lr(
            &hr,
            2,
            &Realistic {
                tukey: 1.0,
                ..off()
            },
            0,
        )
        .unwrap();
        assert!(energy(&hann) < 0.8 * energy(&std));
        let pf = Realistic {
            partial_fourier: 0.625,
            ..off()
        };
        let half = realistic_lr(&hr, 2, &pf, 0).unwrap();
        assert!(energy(&half) < energy(&std));
        let mean = |p: &Plane| p.data.iter().map(|&v| f64::from(v)).sum::<f64>();
        assert!((mean(&hann) / mean(&std) - 1.0).abs() < 0.02);
    }

    #[test]
    fn rejects_bad_parameters() {
        let hr = phantom(16, 16);
        for (p, want) in [
            (
                Realistic {
                    noise: -1.0,
                    ..off()
                },
                "noise",
            ),
            (
                Realistic {
                    tukey: 1.5,
                    ..off()
                },
                "Tukey",
            ),
            (
                Realistic {
                    partial_fourier: 0.4,
                    ..off()
                },
                "partial-Fourier",
            ),
        ] {
            let e = realistic_lr(&hr, 2, &p, 0).unwrap_err();
            assert!(e.to_string().contains(want), "{e}");
        }
    }
}
