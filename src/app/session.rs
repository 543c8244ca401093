//! The document the viewer shows, free of any window: the opened volume turned into the LR input,
//! the ground truth (simulate mode) and the interpolation baselines, all on one display grid (the
//! SR grid). The SR runs filled on that grid are in `runs.rs`, the panes cut from it in
//! `layout.rs`, the stored-to-canonical reorientation in `volume/geometry.rs`.
//!
//! Intensities. Every volume here is in normalised units (file units divided by [`Prepared::norm`])
//! and the viewer multiplies by the factor to show and export file units.
//! - Simulate mode, exactly as `deltawkv eval` (src/cli/eval.rs) and training: the opened volume
//!   is divided by its robust maximum (the 99.5th percentile of its finite voxels, or their
//!   maximum when that is not positive) and clipped to [0, 1]; non-finite voxels become 0.
//!   Baselines and SR outputs are clamped to [0, 1]; PSNR uses a data range of 1.
//! - Upscale mode, exactly as `deltawkv upscale` ([`crate::upscale`]): the opened volume is divided
//!   by the same factor without clipping, and the SR volume keeps the network's output unclamped,
//!   so the NIfTI export equals the command line's output; the display's window clamps what it
//!   shows. Baselines are clamped to [0, 1].

use serde::{Deserialize, Serialize};

use crate::degrade::Baseline;
use crate::evaluation::EvalError;
use crate::model::Degradation;
use crate::plane::Plane;
use crate::upscale::Intensity;
use crate::volume::geometry::{Grid, Reorient, axis_of};
use crate::volume::{Axis, Volume, VolumeMeta};

/// Percentile of the finite voxels that maps to 1.0 (the normalisation of training and eval).
pub const NORM_PERCENTILE: f64 = crate::volume::stats::NORM_PERCENTILE;

/// What the opened volume is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Mode {
    /// The opened volume is the ground truth; LR is simulated from it.
    #[default]
    Simulate,
    /// The opened volume is an LR acquisition; there is no ground truth.
    Upscale,
}

impl Mode {
    /// Name shown to the user.
    pub fn label(self) -> &'static str {
        match self {
            Mode::Simulate => "simulate (opened = GT)",
            Mode::Upscale => "upscale (opened = LR)",
        }
    }
}

/// Which voxel axis slices are upscaled along: the network works on 2-D slices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum SrAxisChoice {
    /// The axis with the largest voxel spacing (the slice direction of a 2-D acquisition).
    #[default]
    Auto,
    Fixed(Axis),
}

impl SrAxisChoice {
    /// The axis for a volume of voxel `spacing`.
    pub fn resolve(self, spacing: [f64; 3]) -> Axis {
        match self {
            SrAxisChoice::Fixed(a) => a,
            SrAxisChoice::Auto => {
                // Largest spacing; ties go to the later axis (axial before coronal, sagittal).
                let mut best = 2;
                for a in [1usize, 0] {
                    if spacing[a] > spacing[best] * 1.01 {
                        best = a;
                    }
                }
                [Axis::Sagittal, Axis::Coronal, Axis::Axial]
                    .get(best)
                    .copied()
                    .unwrap_or(Axis::Axial)
            }
        }
    }
}

/// What a preparation is asked to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PrepareParams {
    pub mode: Mode,
    pub scale: usize,
    /// How the LR was made (simulate) or is assumed to be sampled (upscale).
    pub degradation: Degradation,
    /// Voxel axis of the file as stored whose slices are degraded and upscaled (as
    /// `deltawkv eval --axis`); the display works on the canonical axis it maps to.
    pub stored_sr_axis: Axis,
}

/// Values of the window presets, in normalised units.
#[derive(Clone, Debug, PartialEq)]
pub struct IntensitySummary {
    /// (percentile, value) pairs of the reference volume (GT, else LR).
    pub percentiles: Vec<(f64, f32)>,
}

/// Percentiles the window presets and the automatic window need.
pub const SUMMARY_PERCENTILES: [f64; 8] = [0.0, 1.0, 2.0, 10.0, 90.0, 98.0, 99.0, 100.0];

impl IntensitySummary {
    /// The value of percentile `p` (one of [`SUMMARY_PERCENTILES`]).
    pub fn get(&self, p: f64) -> Option<f32> {
        self.percentiles
            .iter()
            .find(|(q, _)| (q - p).abs() < 1e-9)
            .map(|(_, v)| *v)
            .filter(|v| v.is_finite())
    }
}

/// Everything derived from an opened volume for given parameters.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub params: PrepareParams,
    /// Stored-to-canonical voxel mapping of the opened volume.
    pub reorient: Reorient,
    /// The canonical axis of the SR slices (what the panes and metrics call the SR axis).
    pub sr_axis: Axis,
    /// Stored dimensions of the LR input (for mapping slices between the orders).
    pub lr_stored_dims: [usize; 3],
    /// Stored dimensions of the SR grid.
    pub sr_stored_dims: [usize; 3],
    /// The SR grid in the file's voxel order (in-plane axes upscaled, slice axis kept) with the
    /// affine that keeps every voxel at its world position: the grid of the NIfTI export, on
    /// which the SR volume overlays the opened file in any viewer.
    pub sr_stored: Grid,
    /// The LR input in the file's voxel order: the network's input slices.
    pub lr_stored: Volume,
    /// Metadata of the opened volume.
    pub meta: VolumeMeta,
    /// Orientation code of the opened file before reorientation (e.g. `LPS`).
    pub source_orientation: String,
    /// File units per normalised unit (the 99.5th percentile of the opened volume).
    pub norm: f32,
    /// How SR outputs map back to file units in upscale mode (`deltawkv upscale`'s mapping;
    /// its factor is [`Self::norm`]).
    pub intensity: Intensity,
    /// The display (SR) grid: GT, SR and baselines live on it.
    pub grid: Grid,
    /// The LR grid.
    pub lr_grid: Grid,
    /// Ground truth on the display grid (simulate mode only).
    pub gt: Option<Volume>,
    /// LR input, normalised.
    pub lr: Volume,
    /// Interpolation baselines on the display grid, indexed like [`Baseline::ALL`].
    pub baselines: Vec<(Baseline, Volume)>,
    /// Consistency residuals `|b - DC(b)|` of the baselines against the LR, on the display grid
    /// (empty when the LR is not k-space: data consistency is not defined for it).
    pub baseline_residuals: Vec<(Baseline, Volume)>,
    /// Intensity percentiles of the reference (GT in simulate mode, LR otherwise).
    pub summary: IntensitySummary,
    /// Automatic scale of the |error| maps: the 99th percentile of |bicubic - GT|.
    pub diff_scale: f32,
    /// Facts worth showing (crops, replaced voxels, ...).
    pub notes: Vec<String>,
}

impl Prepared {
    /// The data range PSNR uses (volumes are normalised to [0, 1]).
    pub fn data_range(&self) -> f64 {
        1.0
    }

    /// The baseline volume of `b`.
    pub fn baseline(&self, b: Baseline) -> Option<&Volume> {
        self.baselines.iter().find(|(x, _)| *x == b).map(|(_, v)| v)
    }

    /// The consistency residual of baseline `b` ([`Self::baseline_residuals`]).
    pub fn baseline_residual(&self, b: Baseline) -> Option<&Volume> {
        self.baseline_residuals
            .iter()
            .find(|(x, _)| *x == b)
            .map(|(_, v)| v)
    }

    /// Whether data consistency (and the consistency residual) is defined for this LR.
    pub fn consistency_defined(&self) -> bool {
        self.params.degradation == Degradation::Kspace
    }

    /// Number of SR slices (slices along the SR axis).
    pub fn sr_slices(&self) -> usize {
        self.grid.dims[self.sr_axis.index()]
    }

    /// The network's input for stored slice `k` (file voxel order, as `deltawkv upscale`).
    pub fn lr_plane(&self, k: usize) -> Option<Plane> {
        self.lr_stored.slice(self.params.stored_sr_axis, k)
    }

    /// Canonical SR-axis index of stored SR slice `k`.
    pub fn canonical_sr_slice(&self, k: usize) -> usize {
        let a = self.params.stored_sr_axis.index();
        self.reorient.canonical_slice(self.sr_stored_dims, a, k)
    }

    /// Stored SR slice of canonical SR-axis index `k`.
    pub fn stored_sr_slice(&self, k: usize) -> usize {
        let a = self.params.stored_sr_axis.index();
        self.reorient.stored_slice(self.sr_stored_dims, a, k)
    }

    /// The LR voxel (canonical LR grid) nearest to display voxel `vox`, through the sampling
    /// geometry of the degradation in the file's voxel order.
    pub fn lr_voxel(&self, vox: [usize; 3]) -> [usize; 3] {
        let stored = self.reorient.to_stored(self.sr_stored_dims, vox);
        let lr = super::geometry::lr_voxel_of_sr(
            stored,
            self.params.stored_sr_axis,
            self.params.scale,
            self.params.degradation,
            self.lr_stored_dims,
        );
        self.reorient.to_canonical(self.lr_stored_dims, lr)
    }
}

/// Which in-plane axes the SR grid rescales for `axis` slices.
fn rescaled_axes(axis: Axis) -> [bool; 3] {
    let (c, r) = axis.in_plane();
    let mut axes = [false; 3];
    axes[c] = true;
    axes[r] = true;
    axes
}

/// Why [`prepare`] could not build the document; the message names the slice or the setting.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("scale must be 2 or more, got {0}")]
    Scale(usize),
    #[error("cancelled")]
    Cancelled,
    #[error("a {}x{} {axis} slice is too small for x{scale}", .size.0, .size.1)]
    TooSmall {
        size: (usize, usize),
        axis: &'static str,
        scale: usize,
    },
    #[error("slice {0} out of range")]
    SliceOutOfRange(usize),
    #[error("LR slice {0} out of range")]
    LrSliceOutOfRange(usize),
    #[error(transparent)]
    Evaluation(#[from] EvalError),
    #[error("degraded slice {slice} is {}x{}, expected {}x{}", .got.0, .got.1, .want.0, .want.1)]
    DegradedSize {
        slice: usize,
        got: (usize, usize),
        want: (usize, usize),
    },
    #[error("consistency residual of slice {slice}: {error}")]
    Consistency {
        slice: usize,
        error: crate::consistency::ConsistencyError,
    },
    #[error(
        "{method} upsampling of slice {slice} gave {}x{}, expected {}x{}",
        .got.0, .got.1, .want.0, .want.1
    )]
    BaselineSize {
        method: &'static str,
        slice: usize,
        got: (usize, usize),
        want: (usize, usize),
    },
}

/// Builds LR, GT and baselines from the opened volume (in its stored voxel order, with the steps
/// of `deltawkv eval`, [`crate::evaluation`]), then reorients them to canonical RAS for display.
/// `cancelled` is polled between slices.
pub fn prepare(
    stored: &Volume,
    source_orientation: &str,
    params: PrepareParams,
    cancelled: &dyn Fn() -> bool,
) -> Result<Prepared, PrepareError> {
    let s = params.scale;
    if s < 2 {
        return Err(PrepareError::Scale(s));
    }
    let axis = params.stored_sr_axis;
    let (ca, ra) = axis.in_plane();
    let reorient = Reorient::of(&stored.affine);
    let sr_axis = axis_of(reorient.canonical_axis(axis.index()));
    let mut notes = Vec::new();
    let mut vol = stored.clone();
    if vol.meta.non_finite > 0 {
        notes.push(format!(
            "{} non-finite voxels were set to 0",
            vol.meta.non_finite
        ));
    }
    let (norm, intensity) = match params.mode {
        Mode::Simulate => {
            let non_negative = vol.data.iter().filter(|v| v.is_finite()).all(|&v| v >= 0.0);
            let norm = crate::evaluation::normalise(&mut vol.data)? as f32;
            (
                norm,
                Intensity {
                    factor: norm,
                    non_negative,
                },
            )
        }
        Mode::Upscale => {
            // As `deltawkv upscale`: the same factor, no clipping.
            let intensity = Intensity::of(&vol);
            intensity.normalise_volume(&mut vol);
            (intensity.factor, intensity)
        }
    };
    let n_slices = vol.dims[axis.index()];
    let meta = vol.meta.clone();

    // Stored order: GT (cropped), LR, and the SR grid.
    let (gt, lr, grid) = match params.mode {
        Mode::Simulate => {
            let (cw, ch) = (vol.dims[ca] / s * s, vol.dims[ra] / s * s);
            if cw == 0 || ch == 0 {
                return Err(PrepareError::TooSmall {
                    size: (vol.dims[ca], vol.dims[ra]),
                    axis: super::geometry::axis_label(sr_axis),
                    scale: s,
                });
            }
            if cw != vol.dims[ca] || ch != vol.dims[ra] {
                notes.push(format!(
                    "ground truth cropped from {}x{} to {cw}x{ch} (a multiple of {s})",
                    vol.dims[ca], vol.dims[ra]
                ));
            }
            let mut gdims = vol.dims;
            gdims[ca] = cw;
            gdims[ra] = ch;
            // Cropping keeps stored voxel (0, 0): the affine is unchanged.
            let grid = Grid {
                dims: gdims,
                spacing: vol.spacing,
                affine: vol.affine,
            };
            let mut gt = grid.filled(0.0, &meta);
            let (ldims, laff) = gt.downsampled_geometry(s, rescaled_axes(axis), params.degradation);
            let lr_grid = Grid::from_affine(ldims, laff);
            let mut lr = lr_grid.filled(0.0, &meta);
            for k in 0..n_slices {
                if cancelled() {
                    return Err(PrepareError::Cancelled);
                }
                let hr = vol.slice(axis, k).ok_or(PrepareError::SliceOutOfRange(k))?;
                let hr = crate::evaluation::crop(&hr, k, s)?;
                let low = crate::evaluation::degrade(&hr, k, s, params.degradation)?;
                gt.set_slice(axis, k, &hr);
                if !lr.set_slice(axis, k, &low) {
                    return Err(PrepareError::DegradedSize {
                        slice: k,
                        got: (low.width, low.height),
                        want: (ldims[ca], ldims[ra]),
                    });
                }
            }
            (Some(gt), lr, grid)
        }
        Mode::Upscale => {
            // The grid `deltawkv upscale` writes.
            let (dims, spacing, affine) = vol.upscaled_slice_grid(s, axis, params.degradation);
            let grid = Grid {
                dims,
                spacing,
                affine,
            };
            (None, vol, grid)
        }
    };

    let mut baselines = Vec::new();
    let mut baseline_residuals = Vec::new();
    let with_residuals = params.degradation == Degradation::Kspace;
    for b in Baseline::ALL {
        let mut out = grid.filled(0.0, &meta);
        let mut residual = with_residuals.then(|| grid.filled(0.0, &meta));
        for k in 0..n_slices {
            if cancelled() {
                return Err(PrepareError::Cancelled);
            }
            let low = lr
                .slice(axis, k)
                .ok_or(PrepareError::LrSliceOutOfRange(k))?;
            // Clamped to [0, 1] like every output (as `deltawkv eval`).
            let up = crate::evaluation::baseline(&low, k, s, b, params.degradation)?;
            if !out.set_slice(axis, k, &up) {
                return Err(PrepareError::BaselineSize {
                    method: b.as_str(),
                    slice: k,
                    got: (up.width, up.height),
                    want: (grid.dims[ca], grid.dims[ra]),
                });
            }
            if let Some(res) = residual.as_mut() {
                let r = crate::consistency::residual_magnitude(&up, &low, s, params.degradation)
                    .map_err(|error| PrepareError::Consistency { slice: k, error })?;
                res.set_slice(axis, k, &r);
            }
        }
        baselines.push((b, out.to_canonical()));
        if let Some(res) = residual {
            baseline_residuals.push((b, res.to_canonical()));
        }
    }

    let lr_stored_dims = lr.dims;
    let sr_stored_dims = grid.dims;
    let sr_stored = grid;
    let gt = gt.map(|g| g.to_canonical());
    let lr_canonical = lr.to_canonical();
    let display = grid.filled(0.0, &meta).to_canonical();
    let grid = Grid::of(&display);
    let lr_grid = Grid::of(&lr_canonical);

    let reference = gt.as_ref().unwrap_or(&lr_canonical);
    let values = crate::volume::percentiles(&reference.data, &SUMMARY_PERCENTILES);
    let summary = IntensitySummary {
        percentiles: SUMMARY_PERCENTILES.iter().copied().zip(values).collect(),
    };
    let diff_scale = match (&gt, baselines.iter().find(|(b, _)| *b == Baseline::Bicubic)) {
        (Some(g), Some((_, bic))) => {
            let diff: Vec<f32> = g
                .data
                .iter()
                .zip(&bic.data)
                .map(|(a, b)| (a - b).abs())
                .collect();
            let p = crate::volume::percentiles(&diff, &[99.0]);
            p.first()
                .copied()
                .filter(|v| v.is_finite() && *v > 0.0)
                .unwrap_or(0.1)
        }
        _ => 0.1,
    };

    Ok(Prepared {
        params,
        reorient,
        sr_axis,
        lr_stored_dims,
        sr_stored_dims,
        sr_stored,
        lr_stored: lr,
        meta,
        source_orientation: source_orientation.to_string(),
        norm,
        intensity,
        grid,
        lr_grid,
        gt,
        lr: lr_canonical,
        baselines,
        baseline_residuals,
        summary,
        diff_scale,
        notes,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::app::metrics_cache::Slot;
    use crate::app::runs::SrRun;

    /// A smooth synthetic head-like phantom (ellipses with different intensities) in RAS.
    pub fn phantom(dims: [usize; 3], spacing: [f64; 3]) -> Volume {
        let mut data = vec![0.0f32; dims.iter().product()];
        for k in 0..dims[2] {
            for j in 0..dims[1] {
                for i in 0..dims[0] {
                    let x = (i as f32 + 0.5) / dims[0] as f32 * 2.0 - 1.0;
                    let y = (j as f32 + 0.5) / dims[1] as f32 * 2.0 - 1.0;
                    let z = (k as f32 + 0.5) / dims[2] as f32 * 2.0 - 1.0;
                    let r = (x * x / 0.8 + y * y / 0.95 + z * z / 1.2).sqrt();
                    let mut v = if r < 1.0 { 400.0 } else { 0.0 };
                    let r2 = ((x - 0.25) * (x - 0.25) / 0.04 + y * y / 0.09).sqrt();
                    if r2 < 1.0 {
                        v += 300.0;
                    }
                    v += 50.0 * (6.0 * x).sin() * (r < 1.0) as i32 as f32;
                    data[i + dims[0] * (j + dims[1] * k)] = v;
                }
            }
        }
        let mut affine = [[0.0; 4]; 4];
        for a in 0..3 {
            affine[a][a] = spacing[a];
        }
        affine[3][3] = 1.0;
        Volume {
            data,
            dims,
            spacing,
            affine,
            meta: VolumeMeta::default(),
        }
    }

    pub fn params(mode: Mode, scale: usize) -> PrepareParams {
        PrepareParams {
            mode,
            scale,
            degradation: Degradation::Kspace,
            stored_sr_axis: Axis::Axial,
        }
    }

    #[test]
    fn simulate_builds_lr_gt_and_baselines_on_the_right_grids() {
        let v = phantom([33, 30, 4], [1.0, 1.0, 3.0]);
        let p = prepare(&v, "RAS", params(Mode::Simulate, 2), &|| false).expect("prepare");
        // 33 is cropped to 32.
        assert_eq!(p.grid.dims, [32, 30, 4]);
        assert_eq!(p.lr.dims, [16, 15, 4]);
        assert_eq!(p.lr_grid.spacing, [2.0, 2.0, 3.0]);
        assert!(p.notes.iter().any(|n| n.contains("cropped")));
        let gt = p.gt.as_ref().expect("gt");
        assert_eq!(gt.dims, p.grid.dims);
        assert!(gt.data.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!((p.norm - 750.0).abs() < 100.0, "norm {}", p.norm);
        assert_eq!(p.baselines.len(), 3);
        for (_, b) in &p.baselines {
            assert_eq!(b.dims, p.grid.dims);
        }
        // k-space geometry: nearest upsampling reproduces LR voxel i at HR voxel 2i.
        let near = p.baseline(Baseline::Nearest).expect("nearest");
        let lr_v = p.lr.data[p.lr.linear_index([5, 6, 1])];
        assert_eq!(near.data[near.linear_index([10, 12, 1])], lr_v);
        let lo = p.summary.get(2.0).expect("p2");
        let hi = p.summary.get(98.0).expect("p98");
        assert!(lo < hi);
        assert!(p.diff_scale > 0.0);
    }

    #[test]
    fn upscale_uses_the_opened_volume_as_lr() {
        let v = phantom([20, 16, 3], [2.0, 2.0, 5.0]);
        let p = prepare(&v, "RAS", params(Mode::Upscale, 4), &|| false).expect("prepare");
        assert!(p.gt.is_none());
        assert_eq!(p.lr.dims, [20, 16, 3]);
        assert_eq!(p.grid.dims, [80, 64, 3]);
        assert_eq!(p.grid.spacing, [0.5, 0.5, 5.0]);
        let run = SrRun::new(Slot::A, 1, "x".into(), &p);
        assert_eq!(run.done.len(), 3);
        assert!(run.volume.data.iter().all(|v| v.is_nan()));
    }

    #[test]
    fn prepare_reports_bad_inputs() {
        let v = phantom([3, 30, 2], [1.0, 1.0, 1.0]);
        let e = prepare(&v, "RAS", params(Mode::Simulate, 4), &|| false).unwrap_err();
        assert!(e.to_string().contains("too small"), "{e}");
        let mut z = phantom([8, 8, 2], [1.0, 1.0, 1.0]);
        z.data.iter_mut().for_each(|x| *x = 0.0);
        let e = prepare(&z, "RAS", params(Mode::Simulate, 2), &|| false).unwrap_err();
        assert!(e.to_string().contains("not positive"), "{e}");
        let v = phantom([16, 16, 2], [1.0, 1.0, 1.0]);
        let e = prepare(&v, "RAS", params(Mode::Simulate, 2), &|| true).unwrap_err();
        assert!(matches!(e, PrepareError::Cancelled), "{e}");
        assert_eq!(e.to_string(), "cancelled");
    }

    /// The phantom stored in LPS order (i to the left, j to posterior).
    fn permuted_phantom() -> Volume {
        let mut v = phantom([24, 20, 6], [1.0, 1.0, 3.0]);
        // Stored axes: i -> -x (L), j -> -y (P), k -> +z (S): LPS.
        v.affine = [
            [-1.0, 0.0, 0.0, 30.0],
            [0.0, -1.0, 0.0, 40.0],
            [0.0, 0.0, 3.0, -5.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        v
    }

    #[test]
    fn pipeline_runs_in_stored_order_and_displays_canonically() {
        let v = permuted_phantom();
        let p = prepare(&v, "LPS", params(Mode::Simulate, 2), &|| false).expect("prepare");
        assert_eq!(p.sr_axis, Axis::Axial);
        // The network input is the stored LR slice: degrading the stored GT slice.
        let mut norm = v.clone();
        crate::evaluation::normalise(&mut norm.data).expect("normalise");
        let hr = norm.slice(Axis::Axial, 2).expect("slice");
        let lr = crate::degrade::degrade(&hr, 2, Degradation::Kspace).expect("degrade");
        assert_eq!(p.lr_plane(2), Some(lr));
        // The canonical GT is the reoriented stored GT.
        let gt = p.gt.as_ref().expect("gt");
        assert_eq!(gt.dims, [24, 20, 6]);
        assert_eq!(gt.affine[0][0], 1.0, "canonical: +i is R");
        let stored_v = norm.data[norm.linear_index([0, 0, 2])];
        assert_eq!(gt.data[gt.linear_index([23, 19, 2])], stored_v);
        // An SR slice lands where the canonical order puts it.
        let mut run = SrRun::new(Slot::A, 1, "t".into(), &p);
        let mut sr = Plane::zeros(24, 20);
        sr.set(0, 0, 0.5);
        assert_eq!(run.apply_stored_slice(&p, 2, &sr), Some(2));
        assert_eq!(run.volume.data[run.volume.linear_index([23, 19, 2])], 0.5);
        // k-space geometry in stored order: stored LR voxel i sits at stored HR voxel 2i, so
        // canonical HR voxel 23 (stored 0) maps to canonical LR voxel 11 (stored 0).
        assert_eq!(p.lr_voxel([23, 19, 2]), [11, 9, 2]);
        // Canonical 22 is stored 1 -> LR 0.5, rounded to stored LR 1 = canonical LR 10.
        assert_eq!(p.lr_voxel([22, 18, 2]), [10, 8, 2]);
    }

    #[test]
    fn sr_axis_auto_picks_the_thick_direction() {
        assert_eq!(SrAxisChoice::Auto.resolve([0.86, 0.86, 7.0]), Axis::Axial);
        assert_eq!(SrAxisChoice::Auto.resolve([1.0, 1.0, 1.0]), Axis::Axial);
        assert_eq!(SrAxisChoice::Auto.resolve([5.0, 1.0, 1.0]), Axis::Sagittal);
        assert_eq!(SrAxisChoice::Auto.resolve([1.0, 4.0, 1.0]), Axis::Coronal);
        assert_eq!(
            SrAxisChoice::Fixed(Axis::Coronal).resolve([1.0, 1.0, 9.0]),
            Axis::Coronal
        );
    }
}
