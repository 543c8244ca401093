//! Geometric self-ensemble: the network run on the eight flips and transposes of each LR slice
//! (the symmetries of the square, D4), each output mapped back, and the eight averaged.
//!
//! The network is not exactly equivariant to these symmetries (its convolutions and projections
//! are learned, and its four directional scans each see the slice in one order), so the eight
//! outputs differ slightly in their errors and the average is closer to the truth on average
//! (measured in BENCHMARKS.md / the model card). It costs eight network runs per slice.
//!
//! # Geometry
//! The network sees the LR slice mirrored (`i -> n - 1 - i`) and/or transposed, which keeps it
//! a natural image (no wrap-around). Its output must then be mirrored back about the right axis,
//! which depends on where the degradation puts its samples ([`crate::degrade`], "Geometry"):
//! LR voxel `i` sits at HR position `s i + o`, so the LR's mirror axis `(n - 1) / 2` is at HR
//! position `s (n - 1) / 2 + o`, and the HR reflection is `x -> s n - 1 - e - x` with
//! `e = s - 1 - 2 o`:
//! - **k-space truncation** (origin aligned, `o = 0`): `e = s - 1`. The mirrored output covers
//!   HR columns `0 ..= s n - s` only; the last `s - 1` columns (rows) come from the other
//!   transforms (each voxel is averaged over the transforms that cover it: the identity covers
//!   all). Mirroring the output about the middle (`e = 0`) would shift it by `s - 1` voxels.
//! - **bicubic downsampling** (centre aligned, `o = (s - 1) / 2`): `e = 0`, full coverage.
//! - Transposition needs nothing (each degradation is the same along both axes).
//!
//! On the periodic grid of the DFT this is exact for k-space truncation: degrading the HR
//! reflected as `x -> (s n - s - x) mod s n` gives the mirrored LR, with one exception at the
//! highest frequency: when both LR sides are even, the lone corner coefficient `(-h/2, -w/2)`
//! reads the real part of the HR's `(-, -)` and `(+, +)` corners, and a single mirror swaps
//! those for the `(-, +)` and `(+, -)` ones. Transposes and double mirrors commute exactly;
//! single mirrors differ by one checkerboard `c (-1)^(x + y)` in the LR, whose amplitude is the
//! difference of two HR coefficients at the corner of k-space (where MRI has almost no energy).
//! `tests` check both degradations.

use std::sync::atomic::AtomicBool;

use crate::engine::{EngineError, Progress, Upscaler};
use crate::model::Degradation;
use crate::plane::Plane;

/// Number of symmetries averaged.
pub const TRANSFORMS: usize = 8;

/// Symmetry `t` (`0..8`) of the LR plane `p`: transposed when bit 2 is set, then mirrored
/// along x (bit 0) and along y (bit 1). Transform 0 is the identity.
pub fn forward(p: &Plane, t: usize) -> Plane {
    transform(p, t, 0)
}

/// Symmetry `t` of `p` with the periodic reflection `i -> (n - 1 - e - i) mod n` as its mirror
/// (`e = 0`: the plain mirror of [`forward`]; the tests reflect HR planes with `e > 0`).
fn transform(p: &Plane, t: usize, e: usize) -> Plane {
    let transposed = t & 4 != 0;
    let (w, h) = if transposed {
        (p.height, p.width)
    } else {
        (p.width, p.height)
    };
    let r = |i: usize, n: usize, on: bool| if on { (2 * n - 1 - e - i) % n } else { i };
    let mut data = Vec::with_capacity(w * h);
    for y in 0..h {
        let sy = r(y, h, t & 2 != 0);
        for x in 0..w {
            let sx = r(x, w, t & 1 != 0);
            // (sx, sy) in the transposed-or-not plane; back to p's coordinates.
            let (px, py) = if transposed { (sy, sx) } else { (sx, sy) };
            data.push(p.data[py * p.width + px]);
        }
    }
    Plane {
        width: w,
        height: h,
        data,
    }
}

/// The HR reflection `x -> n - 1 - e - x` matching an LR mirror (`e`: see the module
/// documentation), `None` where it falls off the grid.
fn reflect(x: usize, n: usize, e: usize, on: bool) -> Option<usize> {
    if on {
        (n - 1 - e).checked_sub(x)
    } else {
        Some(x)
    }
}

/// The running sum of the outputs mapped back, and how many transforms cover each voxel.
struct Accumulator {
    width: usize,
    sum: Vec<f32>,
    count: Vec<u8>,
}

impl Accumulator {
    fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            sum: vec![0.0; width * height],
            count: vec![0; width * height],
        }
    }

    /// Adds `p`, the output for symmetry `t` of the input, mapped back with the HR reflection
    /// of shortfall `e`.
    fn add(&mut self, p: &Plane, t: usize, e: usize) {
        let transposed = t & 4 != 0;
        for y in 0..p.height {
            let Some(sy) = reflect(y, p.height, e, t & 2 != 0) else {
                continue;
            };
            for x in 0..p.width {
                let Some(sx) = reflect(x, p.width, e, t & 1 != 0) else {
                    continue;
                };
                let (px, py) = if transposed { (sy, sx) } else { (sx, sy) };
                let i = py * self.width + px;
                self.sum[i] += p.data[y * p.width + x];
                self.count[i] += 1;
            }
        }
    }

    /// The average per voxel.
    fn finish(self, height: usize) -> Plane {
        let data = self
            .sum
            .iter()
            .zip(&self.count)
            .map(|(&s, &c)| s / f32::from(c.max(1)))
            .collect();
        Plane {
            width: self.width,
            height,
            data,
        }
    }
}

/// The shortfall `e = s - 1 - 2 o` of the HR reflection for LR made by `degradation` at `scale`.
pub fn shortfall(degradation: Degradation, scale: usize) -> usize {
    match degradation {
        Degradation::Kspace => scale - 1,
        Degradation::Bicubic => 0,
    }
}

/// An [`Upscaler`] that averages the inner one's outputs over the eight symmetries of each input.
pub struct SelfEnsemble {
    inner: Box<dyn Upscaler>,
    degradation: Degradation,
    /// Output voxels (of all eight transforms) per call to the inner upscaler: bounds the
    /// memory a chunk's outputs take (at least one input slice per call).
    chunk_voxels: usize,
}

/// Output voxels (of all eight transforms) per inner call: 64 Mi voxels, 256 MiB of f32.
const CHUNK_VOXELS: usize = 64 << 20;

impl SelfEnsemble {
    /// Wraps `inner`, for LR slices made by `degradation`.
    pub fn new(inner: Box<dyn Upscaler>, degradation: Degradation) -> Self {
        Self {
            inner,
            degradation,
            chunk_voxels: CHUNK_VOXELS,
        }
    }

    /// `inner` wrapped in a self-ensemble when `on`, else `inner` itself.
    pub fn wrap_if(
        on: bool,
        inner: Box<dyn Upscaler>,
        degradation: Degradation,
    ) -> Box<dyn Upscaler> {
        if on {
            Box::new(Self::new(inner, degradation))
        } else {
            inner
        }
    }

    /// Sets the output voxels per call to the inner upscaler (tests use small chunks).
    pub fn with_chunk_voxels(mut self, voxels: usize) -> Self {
        self.chunk_voxels = voxels;
        self
    }

    /// The wrapped upscaler.
    pub fn into_inner(self) -> Box<dyn Upscaler> {
        self.inner
    }
}

impl Upscaler for SelfEnsemble {
    fn describe(&self) -> String {
        format!("{} (self-ensemble x{TRANSFORMS})", self.inner.describe())
    }

    fn scale(&self) -> usize {
        self.inner.scale()
    }

    fn upscale(
        &mut self,
        inputs: &[Plane],
        progress: Progress<'_>,
        cancel: &AtomicBool,
    ) -> Result<Vec<Plane>, EngineError> {
        let s = self.inner.scale();
        let total = inputs.len();
        let mut out = Vec::with_capacity(total);
        let mut start = 0;
        while start < total {
            // As many slices as fit CHUNK_VOXELS of outputs (at least one).
            let mut end = start;
            let mut voxels = 0;
            while end < total {
                let v = inputs[end].width * inputs[end].height * s * s * TRANSFORMS;
                if end > start && voxels + v > self.chunk_voxels {
                    break;
                }
                voxels += v;
                end += 1;
            }
            let chunk = &inputs[start..end];
            let transformed: Vec<Plane> = chunk
                .iter()
                .flat_map(|p| (0..TRANSFORMS).map(move |t| (p, t)))
                .map(|(p, t)| forward(p, t))
                .collect();
            let done_before = start;
            let inner_progress = |done: usize, _: usize| {
                progress(done_before + done / TRANSFORMS, total);
            };
            let srs = self.inner.upscale(&transformed, &inner_progress, cancel)?;
            if srs.len() != transformed.len() {
                return Err(EngineError::Internal(format!(
                    "the engine returned {} planes for {} inputs",
                    srs.len(),
                    transformed.len()
                )));
            }
            let e = shortfall(self.degradation, s);
            for (i, p) in chunk.iter().enumerate() {
                let (w, h) = (p.width * s, p.height * s);
                let mut acc = Accumulator::new(w, h);
                for t in 0..TRANSFORMS {
                    let sr = &srs[i * TRANSFORMS + t];
                    let expect = if t & 4 != 0 { (h, w) } else { (w, h) };
                    if (sr.width, sr.height) != expect {
                        return Err(EngineError::Internal(format!(
                            "the engine returned a {}x{} plane for a {}x{} target",
                            sr.width, sr.height, expect.0, expect.1
                        )));
                    }
                    acc.add(sr, t, e);
                }
                out.push(acc.finish(h));
            }
            start = end;
            progress(start, total);
        }
        Ok(out)
    }

    fn take_notices(&mut self) -> Vec<String> {
        self.inner.take_notices()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::degrade::{self, Baseline};

    /// A deterministic, asymmetric test plane.
    fn plane(w: usize, h: usize, seed: u32) -> Plane {
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
        let data = (0..w * h)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x % 10_000) as f32 / 10_000.0
            })
            .collect();
        Plane {
            width: w,
            height: h,
            data,
        }
    }

    fn max_diff(a: &Plane, b: &Plane) -> f32 {
        assert_eq!((a.width, a.height), (b.width, b.height));
        a.data
            .iter()
            .zip(&b.data)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn the_eight_transforms_are_distinct_and_undo_exactly() {
        for (w, h) in [(5, 3), (4, 4), (6, 7)] {
            let p = plane(w, h, 7);
            let all: Vec<Plane> = (0..TRANSFORMS).map(|t| forward(&p, t)).collect();
            for t in 0..TRANSFORMS {
                // On the same grid (e = 0) the mapping back is the exact inverse.
                let mut acc = Accumulator::new(w, h);
                acc.add(&all[t], t, 0);
                assert!(acc.count.iter().all(|&c| c == 1));
                assert_eq!(acc.finish(h), p, "{w}x{h} transform {t}");
                for u in 0..t {
                    assert_ne!(all[t], all[u], "{w}x{h}: {t} and {u} coincide");
                }
            }
        }
        // Spelled out on a 3x2 plane [[0 1 2] [3 4 5]].
        let p = Plane {
            width: 3,
            height: 2,
            data: (0..6).map(|v| v as f32).collect(),
        };
        assert_eq!(forward(&p, 1).data, [2., 1., 0., 5., 4., 3.]);
        assert_eq!(forward(&p, 2).data, [3., 4., 5., 0., 1., 2.]);
        let t = forward(&p, 4);
        assert_eq!((t.width, t.height), (2, 3));
        assert_eq!(t.data, [0., 3., 1., 4., 2., 5.]);
        // The HR reflection of x2 k-space (e = 1) over 4 columns: x -> 2 - x, the last column
        // left to the other transforms.
        let row = Plane {
            width: 4,
            height: 1,
            data: vec![1., 2., 3., 4.],
        };
        let mut acc = Accumulator::new(4, 1);
        acc.add(&row, 1, 1);
        assert_eq!(acc.sum, [3., 2., 1., 0.]);
        assert_eq!(acc.count, [1, 1, 1, 0]);
        acc.add(&row, 0, 1);
        assert_eq!(acc.finish(1).data, [2., 2., 2., 4.]);
    }

    /// The mirrored LR is the degradation of the HR reflected with the shortfall of that
    /// degradation (on the periodic grid for k-space), for every symmetry; with the other
    /// shortfall it is not (mirroring a k-space SR about its middle would shift it by s - 1
    /// voxels).
    #[test]
    fn mirroring_the_lr_is_reflecting_the_hr_with_the_degradations_shortfall() {
        for degradation in [Degradation::Kspace, Degradation::Bicubic] {
            for (s, w, h) in [
                (2, 16, 12),
                (2, 10, 14),
                (3, 15, 9),
                (4, 16, 20),
                (4, 32, 24),
            ] {
                let e = shortfall(degradation, s);
                let hr = plane(w, h, (s * w + h) as u32);
                let lr = degrade::degrade(&hr, s, degradation).unwrap();
                let (lw, lh) = (lr.width, lr.height);
                for t in 0..TRANSFORMS {
                    let a = degrade::degrade(&transform(&hr, t, e), s, degradation).unwrap();
                    let b = forward(&lr, t);
                    let one_flip = (t & 1) != (t & 2) >> 1;
                    if degradation == Degradation::Kspace && lw % 2 == 0 && lh % 2 == 0 && one_flip
                    {
                        // The lone corner frequency: a checkerboard c (-1)^(x + y), no more.
                        let c = a.data[0] - b.data[0];
                        assert!(c.abs() > 1e-6, "x{s} {w}x{h} t {t}: no corner term");
                        for y in 0..b.height {
                            for x in 0..b.width {
                                let sign = if (x + y) % 2 == 0 { 1.0 } else { -1.0 };
                                let i = y * b.width + x;
                                let d = a.data[i] - b.data[i] - sign * c;
                                assert!(d.abs() < 1e-5, "x{s} {w}x{h} t {t} ({x}, {y}): {d}");
                            }
                        }
                        continue;
                    }
                    let d = max_diff(&a, &b);
                    assert!(d < 1e-5, "{degradation:?} x{s} {w}x{h} t {t}: {d}");
                }
                let wrong = if e == 0 { s - 1 } else { 0 };
                let a = degrade::degrade(&transform(&hr, 1, wrong), s, degradation).unwrap();
                let d = max_diff(&a, &forward(&lr, 1));
                assert!(
                    d > 1e-2,
                    "{degradation:?} x{s} {w}x{h}: the wrong reflection commutes ({d})"
                );
            }
        }
    }

    /// Interpolation as an upscaler: zero-filling and bicubic upsampling are themselves
    /// equivariant under the symmetries of their geometry (zero-filling on the periodic grid),
    /// so their ensemble is themselves: where a mirrored output falls off the grid, the voxel
    /// is the average of the transforms that cover it.
    struct Interpolate {
        scale: usize,
        method: Baseline,
        geometry: Degradation,
        calls: Arc<Mutex<Vec<usize>>>,
    }

    impl Upscaler for Interpolate {
        fn describe(&self) -> String {
            "interpolation".into()
        }
        fn scale(&self) -> usize {
            self.scale
        }
        fn upscale(
            &mut self,
            inputs: &[Plane],
            progress: Progress<'_>,
            cancel: &AtomicBool,
        ) -> Result<Vec<Plane>, EngineError> {
            self.calls.lock().unwrap().push(inputs.len());
            let mut out = Vec::new();
            for (i, p) in inputs.iter().enumerate() {
                if cancel.load(std::sync::atomic::Ordering::Relaxed) {
                    return Err(EngineError::Cancelled);
                }
                out.push(degrade::upsample(p, self.scale, self.method, self.geometry).unwrap());
                progress(i + 1, inputs.len());
            }
            Ok(out)
        }
    }

    #[test]
    fn the_ensemble_of_an_equivariant_upscaler_is_that_upscaler() {
        for (method, geometry) in [
            (Baseline::Zerofill, Degradation::Kspace),
            (Baseline::Bicubic, Degradation::Bicubic),
        ] {
            // Odd LR sides: no lone corner frequency (see the reflection test).
            let inputs: Vec<Plane> = (0..5).map(|i| plane(8 + i, 5 + 2 * i, i as u32)).collect();
            let mut plain = Interpolate {
                scale: 2,
                method,
                geometry,
                calls: Arc::default(),
            };
            let calls = Arc::clone(&plain.calls);
            let cancel = AtomicBool::new(false);
            let expect = plain.upscale(&inputs, &|_, _| {}, &cancel).unwrap();
            // 5,120 output voxels per chunk: the first two slices (1,280 + 2,016), then the
            // larger ones alone.
            let chunk = 5120;
            let mut ens = SelfEnsemble::new(Box::new(plain), geometry).with_chunk_voxels(chunk);
            let seen = Mutex::new(Vec::new());
            let got = ens
                .upscale(&inputs, &|d, n| seen.lock().unwrap().push((d, n)), &cancel)
                .unwrap();
            for (g, e) in got.iter().zip(&expect) {
                let d = max_diff(g, e);
                assert!(d < 1e-5, "{method:?} {}x{}: {d}", g.width, g.height);
            }
            // One plain call, then chunks of two, one, one and one slices of eight transforms.
            assert_eq!(*calls.lock().unwrap(), [5, 16, 8, 8, 8]);
            let seen = seen.into_inner().unwrap();
            assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "{seen:?}");
            assert_eq!(seen.last(), Some(&(5, 5)));
            assert!(ens.describe().ends_with("(self-ensemble x8)"));
            let inner = ens.into_inner();
            assert_eq!(inner.scale(), 2);
        }
    }

    /// Averaging happens: an upscaler whose output depends on the orientation it is given
    /// (nearest upsampling plus a horizontal ramp) has an ensemble that is the average of the
    /// ramp over the eight orientations, spread evenly over both axes.
    #[test]
    fn the_ensemble_averages_orientation_dependent_outputs() {
        struct Ramp;
        impl Upscaler for Ramp {
            fn describe(&self) -> String {
                "ramp".into()
            }
            fn scale(&self) -> usize {
                2
            }
            fn upscale(
                &mut self,
                inputs: &[Plane],
                _: Progress<'_>,
                _: &AtomicBool,
            ) -> Result<Vec<Plane>, EngineError> {
                Ok(inputs
                    .iter()
                    .map(|p| {
                        let mut up =
                            degrade::upsample(p, 2, Baseline::Nearest, Degradation::Bicubic)
                                .unwrap();
                        for y in 0..up.height {
                            for x in 0..up.width {
                                up.data[y * up.width + x] += x as f32;
                            }
                        }
                        up
                    })
                    .collect())
            }
        }
        let lr = Plane::zeros(4, 4);
        let mut ens = SelfEnsemble::new(Box::new(Ramp), Degradation::Bicubic);
        let out = ens
            .upscale(&[lr], &|_, _| {}, &AtomicBool::new(false))
            .unwrap()
            .remove(0);
        // Mirror flips and transposes of the ramp x over an 8x8 grid: half the eight see it
        // along x (x and 7 - x), half along y, so the average is (7 + ... ) / 8 = 3.5 everywhere.
        assert!(
            out.data.iter().all(|v| (v - 3.5).abs() < 1e-6),
            "{:?}",
            out.data
        );
    }

    #[test]
    fn cancel_reaches_the_inner_upscaler() {
        let mut ens = SelfEnsemble::new(
            Box::new(Interpolate {
                scale: 2,
                method: Baseline::Zerofill,
                geometry: Degradation::Kspace,
                calls: Arc::default(),
            }),
            Degradation::Kspace,
        );
        let err = ens
            .upscale(&[plane(4, 4, 1)], &|_, _| {}, &AtomicBool::new(true))
            .unwrap_err();
        assert!(matches!(err, EngineError::Cancelled), "{err}");
    }
}
