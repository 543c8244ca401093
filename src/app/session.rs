//! The document the viewer shows, free of any window: the opened volume turned into the LR input,
//! the ground truth (simulate mode), the interpolation baselines and the SR runs, all on one
//! display grid (the SR grid), plus the pure functions that cut pane slices from them.
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

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::metrics_cache::{ResultId, Slot};
use crate::degrade::Baseline;
use crate::model::Degradation;
use crate::plane::Plane;
use crate::upscale::Intensity;
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

/// The voxel axis of index 0, 1 or 2.
pub fn axis_of(index: usize) -> Axis {
    match index {
        0 => Axis::Sagittal,
        1 => Axis::Coronal,
        _ => Axis::Axial,
    }
}

/// The exact permutation and flips taking the file's stored voxel order to the canonical (RAS)
/// order, as [`Volume::to_canonical`] does: canonical axis `w` is stored axis `src[w]`, mirrored
/// when `flip[w]`. The pipeline runs in stored order (so its numbers equal `deltawkv eval` and
/// `deltawkv upscale`, whose k-space sampling phase depends on the voxel order), the display in
/// canonical order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reorient {
    pub src: [usize; 3],
    pub flip: [bool; 3],
}

impl Reorient {
    /// The mapping of a volume with this affine.
    pub fn of(affine: &[[f64; 4]; 4]) -> Self {
        let mapping = crate::volume::geometry::axis_mapping(affine);
        let mut src = [0, 1, 2];
        let mut flip = [false; 3];
        for (old, &(w, along)) in mapping.iter().enumerate() {
            if let (Some(s), Some(f)) = (src.get_mut(w), flip.get_mut(w)) {
                *s = old;
                *f = !along;
            }
        }
        Self { src, flip }
    }

    /// Canonical axis of stored axis `a`.
    pub fn canonical_axis(&self, a: usize) -> usize {
        (0..3).find(|&w| self.src[w] == a).unwrap_or(a)
    }

    /// Canonical voxel of stored voxel `ijk` in a volume of stored `dims`.
    pub fn to_canonical(&self, dims: [usize; 3], ijk: [usize; 3]) -> [usize; 3] {
        let mut out = [0; 3];
        for (w, o) in out.iter_mut().enumerate() {
            let s = self.src[w];
            *o = if self.flip[w] {
                dims[s].saturating_sub(1).saturating_sub(ijk[s])
            } else {
                ijk[s]
            };
        }
        out
    }

    /// Stored voxel of canonical voxel `ijk` in a volume of stored `dims`.
    pub fn to_stored(&self, dims: [usize; 3], ijk: [usize; 3]) -> [usize; 3] {
        let mut out = [0; 3];
        for (w, &v) in ijk.iter().enumerate() {
            let s = self.src[w];
            if let Some(o) = out.get_mut(s) {
                *o = if self.flip[w] {
                    dims[s].saturating_sub(1).saturating_sub(v)
                } else {
                    v
                };
            }
        }
        out
    }

    /// Canonical dimensions of stored `dims`.
    pub fn canonical_dims(&self, dims: [usize; 3]) -> [usize; 3] {
        [dims[self.src[0]], dims[self.src[1]], dims[self.src[2]]]
    }

    /// Canonical index of stored slice `k` along stored axis `a` (stored `dims`).
    pub fn canonical_slice(&self, dims: [usize; 3], a: usize, k: usize) -> usize {
        let w = self.canonical_axis(a);
        if self.flip[w] {
            dims[a].saturating_sub(1).saturating_sub(k)
        } else {
            k
        }
    }

    /// Stored index of canonical slice `k` along the canonical axis of stored axis `a`.
    pub fn stored_slice(&self, dims: [usize; 3], a: usize, k: usize) -> usize {
        // A flip is its own inverse.
        self.canonical_slice(dims, a, k)
    }

    /// Writes `plane`, stored slice `k` along stored axis `a` (layout of [`Volume::slice`] on a
    /// volume of stored `dims`), into the canonical volume `canon`. `false` when sizes differ.
    pub fn write_slice(
        &self,
        canon: &mut Volume,
        dims: [usize; 3],
        a: usize,
        k: usize,
        plane: &Plane,
    ) -> bool {
        let (ca, ra) = axis_of(a).in_plane();
        if canon.dims != self.canonical_dims(dims)
            || k >= dims[a]
            || plane.width != dims[ca]
            || plane.height != dims[ra]
            || plane.data.len() != plane.width * plane.height
        {
            return false;
        }
        let mut ijk = [0usize; 3];
        ijk[a] = k;
        for (r, row) in plane.data.chunks_exact(plane.width).enumerate() {
            ijk[ra] = r;
            for (c, v) in row.iter().enumerate() {
                ijk[ca] = c;
                let li = canon.linear_index(self.to_canonical(dims, ijk));
                if let Some(d) = canon.data.get_mut(li) {
                    *d = *v;
                }
            }
        }
        true
    }
}

impl Reorient {
    /// The canonical volume `canon` put back in the file's voxel order on `stored` (the stored
    /// grid `canon` was reoriented from), voxel for voxel: no resampling, every voxel keeps its
    /// world position. `None` when the sizes do not fit.
    pub fn to_stored_volume(&self, canon: &Volume, stored: &Grid) -> Option<Volume> {
        let dims = stored.dims;
        if canon.dims != self.canonical_dims(dims) || canon.data.len() != canon.voxel_count() {
            return None;
        }
        let mut data = Vec::with_capacity(canon.data.len());
        // NIfTI order: i fastest.
        for k in 0..dims[2] {
            for j in 0..dims[1] {
                for i in 0..dims[0] {
                    let c = self.to_canonical(dims, [i, j, k]);
                    data.push(*canon.data.get(canon.linear_index(c))?);
                }
            }
        }
        Some(Volume {
            data,
            dims,
            spacing: stored.spacing,
            affine: stored.affine,
            meta: canon.meta.clone(),
        })
    }
}

/// Dimensions, voxel size and voxel-to-world affine of a grid.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Grid {
    pub dims: [usize; 3],
    pub spacing: [f64; 3],
    pub affine: [[f64; 4]; 4],
}

impl Grid {
    fn of(v: &Volume) -> Self {
        Self {
            dims: v.dims,
            spacing: v.spacing,
            affine: v.affine,
        }
    }

    fn from_affine(dims: [usize; 3], affine: [[f64; 4]; 4]) -> Self {
        let spacing = crate::volume::geometry::column_norms(&affine);
        Self {
            dims,
            spacing,
            affine,
        }
    }
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

fn empty_like(grid: &Grid, meta: &VolumeMeta, fill: f32) -> Volume {
    Volume {
        data: vec![fill; grid.dims.iter().product()],
        dims: grid.dims,
        spacing: grid.spacing,
        affine: grid.affine,
        meta: meta.clone(),
    }
}

/// Builds LR, GT and baselines from the opened volume (in its stored voxel order, with the steps
/// of `deltawkv eval`, [`crate::evaluation`]), then reorients them to canonical RAS for display.
/// `cancelled` is polled between slices.
pub fn prepare(
    stored: &Volume,
    source_orientation: &str,
    params: PrepareParams,
    cancelled: &dyn Fn() -> bool,
) -> Result<Prepared, String> {
    let s = params.scale;
    if s < 2 {
        return Err(format!("scale must be 2 or more, got {s}"));
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
            let norm =
                crate::evaluation::normalise(&mut vol.data).map_err(|e| e.to_string())? as f32;
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
                return Err(format!(
                    "a {}x{} {} slice is too small for x{s}",
                    vol.dims[ca],
                    vol.dims[ra],
                    super::geometry::axis_label(sr_axis)
                ));
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
            let mut gt = empty_like(&grid, &meta, 0.0);
            let (ldims, laff) = gt.downsampled_geometry(s, rescaled_axes(axis), params.degradation);
            let lr_grid = Grid::from_affine(ldims, laff);
            let mut lr = empty_like(&lr_grid, &meta, 0.0);
            for k in 0..n_slices {
                if cancelled() {
                    return Err("cancelled".into());
                }
                let hr = vol
                    .slice(axis, k)
                    .ok_or_else(|| format!("slice {k} out of range"))?;
                let hr = crate::evaluation::crop(&hr, k, s).map_err(|e| e.to_string())?;
                let low = crate::evaluation::degrade(&hr, k, s, params.degradation)
                    .map_err(|e| e.to_string())?;
                gt.set_slice(axis, k, &hr);
                if !lr.set_slice(axis, k, &low) {
                    return Err(format!(
                        "degraded slice {k} is {}x{}, expected {}x{}",
                        low.width, low.height, ldims[ca], ldims[ra]
                    ));
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
    for b in Baseline::ALL {
        let mut out = empty_like(&grid, &meta, 0.0);
        for k in 0..n_slices {
            if cancelled() {
                return Err("cancelled".into());
            }
            let low = lr
                .slice(axis, k)
                .ok_or_else(|| format!("LR slice {k} out of range"))?;
            // Clamped to [0, 1] like every output (as `deltawkv eval`).
            let up = crate::evaluation::baseline(&low, k, s, b, params.degradation)
                .map_err(|e| e.to_string())?;
            if !out.set_slice(axis, k, &up) {
                return Err(format!(
                    "{} upsampling of slice {k} gave {}x{}, expected {}x{}",
                    b.as_str(),
                    up.width,
                    up.height,
                    grid.dims[ca],
                    grid.dims[ra]
                ));
            }
        }
        baselines.push((b, out.to_canonical()));
    }

    let lr_stored_dims = lr.dims;
    let sr_stored_dims = grid.dims;
    let sr_stored = grid;
    let gt = gt.map(|g| g.to_canonical());
    let lr_canonical = lr.to_canonical();
    let display = empty_like(&grid, &meta, 0.0).to_canonical();
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
        summary,
        diff_scale,
        notes,
    })
}

/// State of an SR run.
#[derive(Clone, Debug, PartialEq)]
pub enum RunState {
    /// Loading the checkpoint and creating the engine.
    Starting,
    Running,
    Finished(Duration),
    Failed(String),
    Cancelled,
}

/// One checkpoint's SR volume, filled slice by slice as inference progresses.
#[derive(Clone, Debug)]
pub struct SrRun {
    pub slot: Slot,
    pub run_id: u64,
    /// File name of the checkpoint (or a description of an in-memory one).
    pub checkpoint: String,
    /// Backend description, once the engine exists.
    pub engine: Option<String>,
    /// SR volume on the display grid; NaN where a slice is pending.
    pub volume: Volume,
    pub done: Vec<bool>,
    pub n_done: usize,
    pub state: RunState,
    pub started: Instant,
    /// Seconds spent on each finished slice (for the status line).
    pub slice_secs: Vec<f64>,
}

impl SrRun {
    /// A run with every slice pending.
    pub fn new(slot: Slot, run_id: u64, checkpoint: String, prepared: &Prepared) -> Self {
        let n = prepared.sr_slices();
        Self {
            slot,
            run_id,
            checkpoint,
            engine: None,
            volume: empty_like(&prepared.grid, &prepared.meta, f32::NAN),
            done: vec![false; n],
            n_done: 0,
            state: RunState::Starting,
            started: Instant::now(),
            slice_secs: Vec::new(),
        }
    }

    /// Stores the upscaled stored slice `k` (file voxel order, as the network returned it,
    /// unclamped); returns its canonical SR-axis index, `None` when its size or index does not
    /// fit. Simulate mode clamps to [0, 1] (as `deltawkv eval`, for metrics and maps); upscale
    /// mode keeps the network's values (as `deltawkv upscale`, for the export).
    pub fn apply_stored_slice(&mut self, p: &Prepared, k: usize, plane: &Plane) -> Option<usize> {
        let a = p.params.stored_sr_axis.index();
        let clamped;
        let plane = if p.gt.is_some() {
            let mut c = plane.clone();
            c.data.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
            clamped = c;
            &clamped
        } else {
            plane
        };
        if !p
            .reorient
            .write_slice(&mut self.volume, p.sr_stored_dims, a, k, plane)
        {
            return None;
        }
        let index = p.canonical_sr_slice(k);
        if let Some(d) = self.done.get_mut(index)
            && !*d
        {
            *d = true;
            self.n_done += 1;
        }
        Some(index)
    }

    /// Whether every slice is done.
    pub fn complete(&self) -> bool {
        self.n_done == self.done.len()
    }

    /// Whether the run still works.
    pub fn active(&self) -> bool {
        matches!(self.state, RunState::Starting | RunState::Running)
    }
}

/// Order in which slices are upscaled: `first`, then alternately after and before it.
pub fn outward_order(first: usize, n: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    let first = first.min(n - 1);
    out.push(first);
    for d in 1..n {
        if first + d < n {
            out.push(first + d);
        }
        if d <= first {
            out.push(first - d);
        }
    }
    out
}

/// The derived maps of a result against the ground truth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MapKind {
    /// |result - GT|.
    AbsDiff,
    /// result - GT.
    Signed,
    /// Per-voxel SSIM.
    Ssim,
}

impl MapKind {
    pub const ALL: [MapKind; 3] = [MapKind::AbsDiff, MapKind::Signed, MapKind::Ssim];

    /// Name shown to the user.
    pub fn label(self) -> &'static str {
        match self {
            MapKind::AbsDiff => "|error|",
            MapKind::Signed => "signed error",
            MapKind::Ssim => "SSIM map",
        }
    }
}

/// What a pane shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PaneKind {
    /// The LR input at the display grid, through the chosen interpolation.
    Lr,
    Sr(Slot),
    Gt,
    /// A map of a result against GT.
    Map(MapKind, ResultId),
}

impl PaneKind {
    /// Title shown on the pane.
    pub fn title(self) -> String {
        match self {
            PaneKind::Lr => "LR".to_string(),
            PaneKind::Sr(Slot::A) => "SR".to_string(),
            PaneKind::Sr(Slot::B) => "SR (B)".to_string(),
            PaneKind::Gt => "GT".to_string(),
            PaneKind::Map(m, r) => match m {
                MapKind::AbsDiff => format!("|{} - GT|", r.label()),
                MapKind::Signed => format!("{} - GT", r.label()),
                MapKind::Ssim => format!("SSIM({}, GT)", r.label()),
            },
        }
    }

    /// Whether the pane shows intensities (window/level applies) rather than a map.
    pub fn is_intensity(self) -> bool {
        !matches!(self, PaneKind::Map(..))
    }
}

/// The pane grid: rows of panes.
pub fn layout(
    mode: Mode,
    compare_b: bool,
    map: Option<MapKind>,
    map_baseline: Baseline,
) -> Vec<Vec<PaneKind>> {
    let mut top = vec![PaneKind::Lr, PaneKind::Sr(Slot::A)];
    if compare_b {
        top.push(PaneKind::Sr(Slot::B));
    }
    if mode == Mode::Simulate {
        top.push(PaneKind::Gt);
    }
    let mut rows = vec![top];
    if let (Some(m), Mode::Simulate) = (map, mode) {
        let mut bottom = vec![
            PaneKind::Map(m, ResultId::Baseline(map_baseline)),
            PaneKind::Map(m, ResultId::Sr(Slot::A)),
        ];
        if compare_b {
            bottom.push(PaneKind::Map(m, ResultId::Sr(Slot::B)));
        }
        rows.push(bottom);
    }
    rows
}

/// The panes presentation mode cycles through with one key.
pub fn presentation_cycle(mode: Mode, compare_b: bool) -> Vec<PaneKind> {
    layout(mode, compare_b, None, Baseline::Bicubic)
        .into_iter()
        .flatten()
        .collect()
}

/// The volume a result id refers to.
pub fn result_volume<'a>(
    prepared: &'a Prepared,
    runs: &'a [Option<SrRun>; 2],
    id: ResultId,
) -> Option<&'a Volume> {
    match id {
        ResultId::Sr(slot) => runs
            .get(slot.index())
            .and_then(|r| r.as_ref())
            .map(|r| &r.volume),
        ResultId::Baseline(b) => prepared.baseline(b),
    }
}

/// Why a pane has no picture.
#[derive(Clone, Debug, PartialEq)]
pub enum PaneEmpty {
    /// No ground truth in upscale mode.
    NoGroundTruth,
    /// No SR run in this slot (no checkpoint chosen).
    NoRun,
    /// The SR slice is not computed yet.
    Pending,
    /// The map cannot be computed (message).
    Error(String),
}

/// The plane a pane shows for slice `index` along `axis`, in normalised units (maps: the map's
/// own values). `lr_interp` picks the baseline that shows the LR input at the display grid.
pub fn pane_plane(
    prepared: &Prepared,
    runs: &[Option<SrRun>; 2],
    kind: PaneKind,
    axis: Axis,
    index: usize,
    lr_interp: Baseline,
) -> Result<Plane, PaneEmpty> {
    let missing = || PaneEmpty::Error(format!("slice {index} is out of range"));
    match kind {
        PaneKind::Lr => prepared
            .baseline(lr_interp)
            .and_then(|v| v.slice(axis, index))
            .ok_or_else(missing),
        PaneKind::Gt => prepared
            .gt
            .as_ref()
            .ok_or(PaneEmpty::NoGroundTruth)?
            .slice(axis, index)
            .ok_or_else(missing),
        PaneKind::Sr(slot) => {
            let run = runs
                .get(slot.index())
                .and_then(|r| r.as_ref())
                .ok_or(PaneEmpty::NoRun)?;
            if axis == prepared.sr_axis && !run.done.get(index).copied().unwrap_or(false) {
                return Err(PaneEmpty::Pending);
            }
            run.volume.slice(axis, index).ok_or_else(missing)
        }
        PaneKind::Map(map, id) => {
            let gt = prepared
                .gt
                .as_ref()
                .ok_or(PaneEmpty::NoGroundTruth)?
                .slice(axis, index)
                .ok_or_else(missing)?;
            if let ResultId::Sr(slot) = id {
                let run = runs
                    .get(slot.index())
                    .and_then(|r| r.as_ref())
                    .ok_or(PaneEmpty::NoRun)?;
                if axis == prepared.sr_axis && !run.done.get(index).copied().unwrap_or(false) {
                    return Err(PaneEmpty::Pending);
                }
            }
            let test = result_volume(prepared, runs, id)
                .ok_or(PaneEmpty::NoRun)?
                .slice(axis, index)
                .ok_or_else(missing)?;
            map_plane(map, &gt, &test, prepared.data_range())
        }
    }
}

/// A map of `test` against `gt` (same size). Pending (NaN) voxels stay NaN in the difference
/// maps; the SSIM map needs a complete slice.
pub fn map_plane(
    map: MapKind,
    gt: &Plane,
    test: &Plane,
    data_range: f64,
) -> Result<Plane, PaneEmpty> {
    if gt.width != test.width || gt.height != test.height {
        return Err(PaneEmpty::Error(format!(
            "size mismatch: GT {}x{}, result {}x{}",
            gt.width, gt.height, test.width, test.height
        )));
    }
    match map {
        MapKind::AbsDiff | MapKind::Signed => {
            let data = gt
                .data
                .iter()
                .zip(&test.data)
                .map(|(g, t)| {
                    if map == MapKind::AbsDiff {
                        (t - g).abs()
                    } else {
                        t - g
                    }
                })
                .collect();
            Ok(Plane {
                width: gt.width,
                height: gt.height,
                data,
            })
        }
        MapKind::Ssim => {
            if test.data.iter().any(|v| !v.is_finite()) {
                return Err(PaneEmpty::Pending);
            }
            crate::metrics::ssim_map(gt, test, data_range)
                .map(|r| r.map)
                .map_err(|e| PaneEmpty::Error(format!("SSIM map: {e}")))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

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

    fn params(mode: Mode, scale: usize) -> PrepareParams {
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
        assert!(e.contains("too small"), "{e}");
        let mut z = phantom([8, 8, 2], [1.0, 1.0, 1.0]);
        z.data.iter_mut().for_each(|x| *x = 0.0);
        let e = prepare(&z, "RAS", params(Mode::Simulate, 2), &|| false).unwrap_err();
        assert!(e.contains("not positive"), "{e}");
        let v = phantom([16, 16, 2], [1.0, 1.0, 1.0]);
        let e = prepare(&v, "RAS", params(Mode::Simulate, 2), &|| true).unwrap_err();
        assert_eq!(e, "cancelled");
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
    fn reorient_maps_stored_and_canonical_voxels_exactly() {
        let v = permuted_phantom();
        let r = Reorient::of(&v.affine);
        assert_eq!(r.src, [0, 1, 2]);
        assert_eq!(r.flip, [true, true, false]);
        let c = v.to_canonical();
        for ijk in [[0, 0, 0], [23, 19, 5], [5, 7, 2]] {
            let w = r.to_canonical(v.dims, ijk);
            assert_eq!(c.data[c.linear_index(w)], v.data[v.linear_index(ijk)]);
            assert_eq!(r.to_stored(v.dims, w), ijk);
        }
        // A permutation: stored (k, i, j) order.
        let swapped = [
            [0.0, 0.0, 2.0, 0.0],
            [0.0, -1.0, 0.0, 0.0],
            [-4.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let p = Reorient::of(&swapped);
        assert_eq!(p.src, [2, 1, 0]);
        assert_eq!(p.flip, [false, true, true]);
        assert_eq!(p.canonical_axis(0), 2);
        assert_eq!(p.canonical_dims([3, 4, 5]), [5, 4, 3]);
        assert_eq!(p.canonical_slice([3, 4, 5], 0, 0), 2);
        assert_eq!(p.stored_slice([3, 4, 5], 0, 2), 0);
        // write_slice puts a stored slice where to_canonical puts it.
        let mut vol = phantom([3, 4, 5], [1.0, 1.0, 1.0]);
        vol.affine = swapped;
        let canon = vol.to_canonical();
        let mut blank = canon.clone();
        blank.data.iter_mut().for_each(|x| *x = f32::NAN);
        for k in 0..3 {
            let plane = vol.slice(Axis::Sagittal, k).expect("slice");
            assert!(p.write_slice(&mut blank, vol.dims, 0, k, &plane));
        }
        assert_eq!(blank.data, canon.data);
        assert!(!p.write_slice(&mut blank, vol.dims, 0, 3, &Plane::zeros(4, 5)));
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

    #[test]
    fn outward_order_visits_every_slice_once_current_first() {
        assert_eq!(outward_order(2, 5), vec![2, 3, 1, 4, 0]);
        assert_eq!(outward_order(0, 3), vec![0, 1, 2]);
        assert_eq!(outward_order(9, 3), vec![2, 1, 0]);
        assert!(outward_order(0, 0).is_empty());
        let mut o = outward_order(7, 20);
        o.sort_unstable();
        assert_eq!(o, (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn layouts_per_mode() {
        use PaneKind::*;
        let sim = layout(Mode::Simulate, false, None, Baseline::Bicubic);
        assert_eq!(sim, vec![vec![Lr, Sr(Slot::A), Gt]]);
        let up = layout(
            Mode::Upscale,
            false,
            Some(MapKind::AbsDiff),
            Baseline::Bicubic,
        );
        assert_eq!(
            up,
            vec![vec![Lr, Sr(Slot::A)]],
            "no GT and no maps in upscale mode"
        );
        let ab = layout(
            Mode::Simulate,
            true,
            Some(MapKind::Ssim),
            Baseline::Zerofill,
        );
        assert_eq!(ab[0], vec![Lr, Sr(Slot::A), Sr(Slot::B), Gt]);
        assert_eq!(
            ab[1],
            vec![
                Map(MapKind::Ssim, ResultId::Baseline(Baseline::Zerofill)),
                Map(MapKind::Ssim, ResultId::Sr(Slot::A)),
                Map(MapKind::Ssim, ResultId::Sr(Slot::B)),
            ]
        );
        assert_eq!(
            presentation_cycle(Mode::Simulate, false),
            vec![Lr, Sr(Slot::A), Gt]
        );
        assert_eq!(
            presentation_cycle(Mode::Upscale, false),
            vec![Lr, Sr(Slot::A)]
        );
    }

    #[test]
    fn pane_planes_and_pending_slices() {
        let v = phantom([16, 16, 3], [1.0, 1.0, 2.0]);
        let p = prepare(&v, "RAS", params(Mode::Simulate, 2), &|| false).expect("prepare");
        let mut runs: [Option<SrRun>; 2] = [Some(SrRun::new(Slot::A, 1, "t".into(), &p)), None];
        let lr =
            pane_plane(&p, &runs, PaneKind::Lr, Axis::Axial, 1, Baseline::Nearest).expect("lr");
        assert_eq!((lr.width, lr.height), (16, 16));
        assert_eq!(
            pane_plane(
                &p,
                &runs,
                PaneKind::Sr(Slot::A),
                Axis::Axial,
                1,
                Baseline::Nearest
            ),
            Err(PaneEmpty::Pending)
        );
        assert_eq!(
            pane_plane(
                &p,
                &runs,
                PaneKind::Sr(Slot::B),
                Axis::Axial,
                1,
                Baseline::Nearest
            ),
            Err(PaneEmpty::NoRun)
        );
        // Fill slice 1 of the SR with the GT: the |SR - GT| map is then zero.
        let g =
            p.gt.as_ref()
                .and_then(|g| g.slice(Axis::Axial, 1))
                .expect("gt");
        let run = runs[0].as_mut().expect("run");
        assert_eq!(run.apply_stored_slice(&p, 1, &g), Some(1));
        assert_eq!(run.apply_stored_slice(&p, 1, &Plane::zeros(3, 3)), None);
        assert_eq!(run.n_done, 1);
        let m = pane_plane(
            &p,
            &runs,
            PaneKind::Map(MapKind::AbsDiff, ResultId::Sr(Slot::A)),
            Axis::Axial,
            1,
            Baseline::Nearest,
        )
        .expect("map");
        assert!(m.data.iter().all(|&x| x == 0.0));
        let s = pane_plane(
            &p,
            &runs,
            PaneKind::Map(MapKind::Ssim, ResultId::Sr(Slot::A)),
            Axis::Axial,
            1,
            Baseline::Nearest,
        )
        .expect("ssim map");
        assert!(s.data.iter().all(|&x| (x - 1.0).abs() < 1e-6));
        // A coronal slice crosses pending SR slices: NaN rows, signed map keeps NaN there.
        let c = pane_plane(
            &p,
            &runs,
            PaneKind::Map(MapKind::Signed, ResultId::Sr(Slot::A)),
            Axis::Coronal,
            4,
            Baseline::Nearest,
        )
        .expect("coronal map");
        assert_eq!((c.width, c.height), (16, 3));
        assert!(c.data[0].is_nan() && c.data[16] == 0.0);
        // Upscale mode has no GT.
        let pu = prepare(&v, "RAS", params(Mode::Upscale, 2), &|| false).expect("prepare");
        assert_eq!(
            pane_plane(
                &pu,
                &[None, None],
                PaneKind::Gt,
                Axis::Axial,
                0,
                Baseline::Nearest
            ),
            Err(PaneEmpty::NoGroundTruth)
        );
    }
}
