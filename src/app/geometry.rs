//! Linked navigation and display geometry, free of any window: the shared crosshair and slice,
//! zoom and pan, the screen <-> voxel mapping of a pane, the display convention with its
//! orientation letters, and the mapping between the LR grid and the SR (display) grid.
//!
//! Display convention. Volumes are shown on their canonical (RAS+) grid: voxel axis i runs to
//! the patient's right, j to anterior, k to superior. Superior (coronal, sagittal) and anterior
//! (axial) are always up, and sagittal slices show anterior on the left. In the radiological
//! convention (the default) axial and coronal slices are seen from the feet / the front, so the
//! patient's right is on the screen's left; the neurological convention mirrors them.

use egui::{Pos2, Rect, Vec2, pos2, vec2};
use serde::{Deserialize, Serialize};

use crate::model::Degradation;
use crate::volume::Axis;

/// Left-right display convention for axial and coronal slices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Convention {
    /// Patient's right on the screen's left (as seen from the feet).
    #[default]
    Radiological,
    /// Patient's right on the screen's right (as seen from above / behind).
    Neurological,
}

impl Convention {
    /// Name shown to the user.
    pub fn label(self) -> &'static str {
        match self {
            Convention::Radiological => "radiological (R on screen left)",
            Convention::Neurological => "neurological (R on screen right)",
        }
    }
}

/// User-facing name of a slicing axis on the canonical volume.
pub fn axis_label(axis: Axis) -> &'static str {
    match axis {
        Axis::Axial => "axial",
        Axis::Coronal => "coronal",
        Axis::Sagittal => "sagittal",
    }
}

/// How a slice along `axis` is laid out on screen: the plane from [`crate::volume::Volume::slice`]
/// has columns along the first in-plane voxel axis and rows along the second; the screen shows
/// columns left to right and rows top to bottom, each possibly mirrored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SliceLayout {
    pub axis: Axis,
    /// Voxel axis along the screen's x (plane columns).
    pub col_axis: usize,
    /// Voxel axis along the screen's y (plane rows).
    pub row_axis: usize,
    /// Screen x runs against the voxel index.
    pub flip_cols: bool,
    /// Screen y runs against the voxel index.
    pub flip_rows: bool,
}

/// Orientation letters on the four edges of a pane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EdgeLetters {
    pub left: char,
    pub right: char,
    pub top: char,
    pub bottom: char,
}

impl SliceLayout {
    /// The layout of `axis` slices under `convention`.
    pub fn new(axis: Axis, convention: Convention) -> Self {
        let (col_axis, row_axis) = axis.in_plane();
        let flip_cols = match axis {
            // Anterior (+j) on the left in every convention.
            Axis::Sagittal => true,
            // +i is the patient's right: radiological puts it on the left.
            Axis::Axial | Axis::Coronal => convention == Convention::Radiological,
        };
        Self {
            axis,
            col_axis,
            row_axis,
            flip_cols,
            // Anterior (axial) and superior (coronal, sagittal) up: rows run against the index.
            flip_rows: true,
        }
    }

    /// Orientation letters at the pane edges.
    pub fn letters(&self) -> EdgeLetters {
        // Letter of the positive and negative direction of each canonical voxel axis.
        const POS: [char; 3] = ['R', 'A', 'S'];
        const NEG: [char; 3] = ['L', 'P', 'I'];
        let (cp, cn) = (POS[self.col_axis], NEG[self.col_axis]);
        let (rp, rn) = (POS[self.row_axis], NEG[self.row_axis]);
        let (left, right) = if self.flip_cols { (cp, cn) } else { (cn, cp) };
        let (top, bottom) = if self.flip_rows { (rp, rn) } else { (rn, rp) };
        EdgeLetters {
            left,
            right,
            top,
            bottom,
        }
    }
}

/// Zoom and pan shared by all panes. Pan is a fraction of the fitted image size, so that panes
/// of different sizes (presentation mode) stay consistent.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViewTransform {
    pub zoom: f32,
    pub pan: [f32; 2],
}

impl Default for ViewTransform {
    fn default() -> Self {
        Self {
            zoom: 1.0,
            pan: [0.0, 0.0],
        }
    }
}

/// Zoom limits.
pub const MIN_ZOOM: f32 = 0.25;
pub const MAX_ZOOM: f32 = 32.0;

impl ViewTransform {
    /// The screen rectangle of an image of physical size `size_mm` shown in `pane`:
    /// fitted with its aspect ratio, then zoomed about the pane centre and panned.
    pub fn image_rect(&self, pane: Rect, size_mm: Vec2) -> Rect {
        let fit = fitted_size(pane.size(), size_mm);
        let size = fit * self.zoom;
        let center = pane.center() + vec2(self.pan[0] * fit.x, self.pan[1] * fit.y);
        Rect::from_center_size(center, size)
    }

    /// Multiplies the zoom by `factor`, keeping the image point under `anchor` fixed.
    pub fn zoom_about(&mut self, factor: f32, anchor: Pos2, pane: Rect, size_mm: Vec2) {
        if !factor.is_finite() || factor <= 0.0 {
            return;
        }
        let fit = fitted_size(pane.size(), size_mm);
        if fit.x <= 0.0 || fit.y <= 0.0 {
            return;
        }
        let new_zoom = (self.zoom * factor).clamp(MIN_ZOOM, MAX_ZOOM);
        let f = new_zoom / self.zoom;
        // Image centre c = pane centre + pan * fit; a point p keeps its place when
        // c' = anchor - (anchor - c) * f.
        let c = pane.center() + vec2(self.pan[0] * fit.x, self.pan[1] * fit.y);
        let c2 = anchor - (anchor - c) * f;
        let d = c2 - pane.center();
        self.zoom = new_zoom;
        self.pan = [d.x / fit.x, d.y / fit.y];
    }

    /// Moves the image by `delta` screen points.
    pub fn pan_by(&mut self, delta: Vec2, pane: Rect, size_mm: Vec2) {
        let fit = fitted_size(pane.size(), size_mm);
        if fit.x > 0.0 && fit.y > 0.0 {
            self.pan[0] += delta.x / fit.x;
            self.pan[1] += delta.y / fit.y;
        }
    }
}

/// Largest size with the aspect ratio of `size_mm` that fits in `avail`.
fn fitted_size(avail: Vec2, size_mm: Vec2) -> Vec2 {
    if size_mm.x <= 0.0 || size_mm.y <= 0.0 || avail.x <= 0.0 || avail.y <= 0.0 {
        return Vec2::ZERO;
    }
    let s = (avail.x / size_mm.x).min(avail.y / size_mm.y);
    size_mm * s
}

/// Continuous plane coordinates (column, row; voxel `n` spans `[n, n + 1)`) of screen point
/// `pos` inside `image` (the rectangle from [`ViewTransform::image_rect`]); `None` outside.
pub fn screen_to_plane(
    pos: Pos2,
    image: Rect,
    cols: usize,
    rows: usize,
    layout: &SliceLayout,
) -> Option<(f64, f64)> {
    if image.width() <= 0.0 || image.height() <= 0.0 || !image.contains(pos) {
        return None;
    }
    let u = ((pos.x - image.min.x) / image.width()) as f64;
    let v = ((pos.y - image.min.y) / image.height()) as f64;
    let u = if layout.flip_cols { 1.0 - u } else { u };
    let v = if layout.flip_rows { 1.0 - v } else { v };
    Some((u * cols as f64, v * rows as f64))
}

/// Voxel index of a continuous plane coordinate, clamped to `0..n`.
pub fn to_index(x: f64, n: usize) -> usize {
    if n == 0 || !x.is_finite() {
        return 0;
    }
    (x.floor().max(0.0) as usize).min(n - 1)
}

/// Screen position of the centre of plane voxel `(col, row)`.
pub fn plane_to_screen(
    col: usize,
    row: usize,
    image: Rect,
    cols: usize,
    rows: usize,
    layout: &SliceLayout,
) -> Pos2 {
    let u = (col as f32 + 0.5) / cols.max(1) as f32;
    let v = (row as f32 + 0.5) / rows.max(1) as f32;
    let u = if layout.flip_cols { 1.0 - u } else { u };
    let v = if layout.flip_rows { 1.0 - v } else { v };
    pos2(
        image.min.x + u * image.width(),
        image.min.y + v * image.height(),
    )
}

/// The shared crosshair: one voxel of the display grid, plus the slicing axis. Moving it in any
/// pane moves it in all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crosshair {
    pub dims: [usize; 3],
    pub voxel: [usize; 3],
    pub axis: Axis,
}

impl Crosshair {
    /// A crosshair at the centre of a grid of `dims`, slicing along `axis`.
    pub fn centered(dims: [usize; 3], axis: Axis) -> Self {
        Self {
            dims,
            voxel: [dims[0] / 2, dims[1] / 2, dims[2] / 2],
            axis,
        }
    }

    /// Index of the current slice along the current axis.
    pub fn slice(&self) -> usize {
        self.voxel[self.axis.index()]
    }

    /// Number of slices along the current axis.
    pub fn slice_count(&self) -> usize {
        self.dims[self.axis.index()]
    }

    /// Moves the current slice by `delta`, clamped to the volume.
    pub fn step(&mut self, delta: i64) {
        let a = self.axis.index();
        let n = self.dims[a];
        if n == 0 {
            return;
        }
        let v = (self.voxel[a] as i64 + delta).clamp(0, n as i64 - 1);
        self.voxel[a] = v as usize;
    }

    /// Jumps to slice `index` along the current axis (clamped).
    pub fn set_slice(&mut self, index: usize) {
        let a = self.axis.index();
        self.voxel[a] = index.min(self.dims[a].saturating_sub(1));
    }

    /// Sets the in-plane position from continuous plane coordinates of the current axis.
    pub fn set_in_plane(&mut self, col: f64, row: f64) {
        let (ca, ra) = self.axis.in_plane();
        self.voxel[ca] = to_index(col, self.dims[ca]);
        self.voxel[ra] = to_index(row, self.dims[ra]);
    }

    /// In-plane position (column, row) of the crosshair in the current axis' plane.
    pub fn in_plane(&self) -> (usize, usize) {
        let (ca, ra) = self.axis.in_plane();
        (self.voxel[ca], self.voxel[ra])
    }

    /// Adapts to a grid: the same grid keeps the crosshair, a new one centres it.
    pub fn regrid(&mut self, dims: [usize; 3]) {
        if dims != self.dims {
            self.dims = dims;
            self.voxel = [dims[0] / 2, dims[1] / 2, dims[2] / 2];
        }
    }
}

/// Continuous LR coordinate of HR (SR grid) coordinate `x` along an in-plane axis at scale `s`:
/// the inverse of [`Degradation::lr_to_hr`].
pub fn hr_to_lr(degradation: Degradation, x: f64, s: f64) -> f64 {
    match degradation {
        Degradation::Kspace => x / s,
        Degradation::Bicubic => (x + 0.5) / s - 0.5,
    }
}

/// The LR voxel nearest to SR voxel `sr` on a grid with `sr_axis` held fixed (the in-plane axes
/// of `sr_axis` are downsampled by `scale`, the other one is shared).
pub fn lr_voxel_of_sr(
    sr: [usize; 3],
    sr_axis: Axis,
    scale: usize,
    degradation: Degradation,
    lr_dims: [usize; 3],
) -> [usize; 3] {
    let (ca, ra) = sr_axis.in_plane();
    let mut out = sr;
    for a in [ca, ra] {
        let x = hr_to_lr(degradation, sr[a] as f64, scale as f64);
        let n = lr_dims[a];
        out[a] = if n == 0 {
            0
        } else {
            (x.round().max(0.0) as usize).min(n - 1)
        };
    }
    out[sr_axis.index()] = sr[sr_axis.index()].min(lr_dims[sr_axis.index()].saturating_sub(1));
    out
}

/// World (RAS mm) position of voxel `ijk` under a row-major 4x4 `affine`.
pub fn voxel_to_world(affine: &[[f64; 4]; 4], ijk: [f64; 3]) -> [f64; 3] {
    let mut out = [0.0; 3];
    for (r, o) in out.iter_mut().enumerate() {
        *o = affine[r][0] * ijk[0] + affine[r][1] * ijk[1] + affine[r][2] * ijk[2] + affine[r][3];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(axis: Axis) -> SliceLayout {
        SliceLayout::new(axis, Convention::Radiological)
    }

    #[test]
    fn radiological_letters() {
        let ax = layout(Axis::Axial).letters();
        assert_eq!((ax.left, ax.right, ax.top, ax.bottom), ('R', 'L', 'A', 'P'));
        let co = layout(Axis::Coronal).letters();
        assert_eq!((co.left, co.right, co.top, co.bottom), ('R', 'L', 'S', 'I'));
        let sa = layout(Axis::Sagittal).letters();
        assert_eq!((sa.left, sa.right, sa.top, sa.bottom), ('A', 'P', 'S', 'I'));
    }

    #[test]
    fn neurological_mirrors_axial_and_coronal_only() {
        let n = |a| SliceLayout::new(a, Convention::Neurological).letters();
        assert_eq!((n(Axis::Axial).left, n(Axis::Axial).right), ('L', 'R'));
        assert_eq!((n(Axis::Coronal).left, n(Axis::Coronal).right), ('L', 'R'));
        assert_eq!(
            (n(Axis::Sagittal).left, n(Axis::Sagittal).right),
            ('A', 'P')
        );
    }

    #[test]
    fn screen_plane_round_trip_with_flips() {
        let image = Rect::from_min_size(pos2(10.0, 20.0), vec2(200.0, 100.0));
        for axis in [Axis::Axial, Axis::Coronal, Axis::Sagittal] {
            for conv in [Convention::Radiological, Convention::Neurological] {
                let l = SliceLayout::new(axis, conv);
                for (c, r) in [(0, 0), (19, 9), (7, 3)] {
                    let p = plane_to_screen(c, r, image, 20, 10, &l);
                    let (x, y) = screen_to_plane(p, image, 20, 10, &l).expect("inside");
                    assert_eq!(
                        (to_index(x, 20), to_index(y, 10)),
                        (c, r),
                        "{axis:?} {conv:?}"
                    );
                }
            }
        }
        // Radiological axial: the screen's top-left voxel is the most right (+i) and anterior.
        let l = layout(Axis::Axial);
        let (x, y) = screen_to_plane(pos2(10.5, 20.5), image, 20, 10, &l).expect("inside");
        assert_eq!((to_index(x, 20), to_index(y, 10)), (19, 9));
        assert!(screen_to_plane(pos2(0.0, 0.0), image, 20, 10, &l).is_none());
    }

    #[test]
    fn image_rect_keeps_physical_aspect() {
        let pane = Rect::from_min_size(Pos2::ZERO, vec2(400.0, 200.0));
        // 256 x 20 voxels of 0.86 x 7 mm: 220 mm wide, 140 mm high.
        let size = vec2(256.0 * 0.86, 20.0 * 7.0);
        let r = ViewTransform::default().image_rect(pane, size);
        assert!((r.width() / r.height() - size.x / size.y).abs() < 1e-4);
        assert!(r.width() <= 400.0 + 1e-3 && r.height() <= 200.0 + 1e-3);
        assert!((r.center() - pane.center()).length() < 1e-4);
    }

    #[test]
    fn zoom_about_keeps_anchor_fixed_and_clamps() {
        let pane = Rect::from_min_size(Pos2::ZERO, vec2(300.0, 300.0));
        let size = vec2(100.0, 100.0);
        let mut v = ViewTransform::default();
        let anchor = pos2(200.0, 100.0);
        let before = v.image_rect(pane, size);
        let uv = (anchor - before.min) / before.size();
        v.zoom_about(2.0, anchor, pane, size);
        let after = v.image_rect(pane, size);
        let uv2 = (anchor - after.min) / after.size();
        assert!((uv - uv2).length() < 1e-5, "{uv:?} {uv2:?}");
        assert_eq!(v.zoom, 2.0);
        v.zoom_about(1e9, anchor, pane, size);
        assert_eq!(v.zoom, MAX_ZOOM);
        v.pan_by(vec2(30.0, 0.0), pane, size);
        let moved = v.image_rect(pane, size);
        let prev = {
            let mut w = v;
            w.pan_by(vec2(-30.0, 0.0), pane, size);
            w.image_rect(pane, size)
        };
        assert!((moved.min.x - prev.min.x - 30.0).abs() < 1e-3);
    }

    #[test]
    fn crosshair_is_linked_and_clamped() {
        let mut c = Crosshair::centered([10, 20, 5], Axis::Axial);
        assert_eq!(c.slice(), 2);
        c.step(10);
        assert_eq!(c.slice(), 4);
        c.step(-100);
        assert_eq!(c.slice(), 0);
        c.set_in_plane(3.7, 19.9);
        assert_eq!(c.voxel, [3, 19, 0]);
        // Switching axis keeps the voxel: the coronal slice is the crosshair's j.
        c.axis = Axis::Coronal;
        assert_eq!(c.slice(), 19);
        assert_eq!(c.in_plane(), (3, 0));
        c.set_in_plane(-4.0, 100.0);
        assert_eq!(c.voxel, [0, 19, 4]);
        c.regrid([10, 20, 5]);
        assert_eq!(c.voxel, [0, 19, 4]);
        c.regrid([4, 4, 4]);
        assert_eq!(c.voxel, [2, 2, 2]);
    }

    #[test]
    fn lr_sr_mapping_follows_the_degradation_geometry() {
        // k-space: LR voxel i sits at HR voxel s*i.
        for s in [2usize, 4] {
            for i in 0..8usize {
                let hr = Degradation::Kspace.lr_to_hr(i as f64, s as f64);
                assert!((hr_to_lr(Degradation::Kspace, hr, s as f64) - i as f64).abs() < 1e-12);
                let hr = Degradation::Bicubic.lr_to_hr(i as f64, s as f64);
                assert!((hr_to_lr(Degradation::Bicubic, hr, s as f64) - i as f64).abs() < 1e-12);
            }
        }
        let lr_dims = [128, 128, 20];
        // k-space x2: HR 10 and 11 -> LR 5 and 6 (11 / 2 = 5.5 rounds away from zero).
        assert_eq!(
            lr_voxel_of_sr([10, 11, 7], Axis::Axial, 2, Degradation::Kspace, lr_dims),
            [5, 6, 7]
        );
        // bicubic x2: HR 10 -> (10.5 / 2) - 0.5 = 4.75 -> 5; HR 0 -> -0.25 -> 0.
        assert_eq!(
            lr_voxel_of_sr([10, 0, 7], Axis::Axial, 2, Degradation::Bicubic, lr_dims),
            [5, 0, 7]
        );
        // Out of range clamps to the last LR voxel.
        assert_eq!(
            lr_voxel_of_sr([255, 255, 30], Axis::Axial, 2, Degradation::Kspace, lr_dims),
            [127, 127, 19]
        );
        // Coronal SR plane: i and k are downsampled, j is shared.
        assert_eq!(
            lr_voxel_of_sr(
                [8, 9, 12],
                Axis::Coronal,
                4,
                Degradation::Kspace,
                [64, 20, 64]
            ),
            [2, 9, 3]
        );
    }

    #[test]
    fn world_of_voxel_applies_affine() {
        let a = [
            [-0.5, 0.0, 0.0, 10.0],
            [0.0, 2.0, 0.0, -3.0],
            [0.0, 0.0, 7.0, 1.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        assert_eq!(voxel_to_world(&a, [2.0, 1.0, 1.0]), [9.0, -1.0, 8.0]);
    }
}
