//! Navigation and display state shared by every pane (crosshair and slice, zoom and pan,
//! window/level, map scale, flip, presentation mode, the voxel under the mouse), and the
//! viewer's actions on it.

use super::Viewer;
use crate::app::geometry::{Crosshair, ViewTransform};
use crate::app::windowing::{WindowLevel, WindowPreset};
use crate::volume::Axis;

/// Smooth-scroll distance (points) that steps one slice.
const WHEEL_POINTS_PER_SLICE: f32 = 40.0;

/// The navigation and display state.
pub struct Navigation {
    pub(super) crosshair: Crosshair,
    pub(super) view: ViewTransform,
    /// Intensity window, normalised units.
    pub(super) window: WindowLevel,
    /// Full scale of the |error| maps, normalised units.
    pub(super) diff_scale: f32,
    /// Show GT in the SR pane.
    pub(super) flip: bool,
    pub(super) presentation: bool,
    /// Index into the presentation cycle.
    pub(super) presentation_index: usize,
    /// Display-grid voxel under the mouse, if any.
    pub(super) hover: Option<[usize; 3]>,
    /// The voxel under the mouse found while drawing this frame's panes (the readout, drawn
    /// earlier in the frame, shows [`Self::hover`], updated from this at the end of the frame).
    pub(super) hover_next: Option<[usize; 3]>,
    /// Accumulated smooth-scroll distance (touchpads), in points.
    pub(super) wheel_accum: f32,
    /// Size of the pane area last drawn, in points (for the PNG export).
    pub(super) panes_size: egui::Vec2,
}

impl Navigation {
    /// The state at start: centred crosshair slicing along `axis`, default window and view.
    pub fn new(axis: Axis) -> Self {
        Self {
            crosshair: Crosshair::centered([1, 1, 1], axis),
            view: ViewTransform::default(),
            window: WindowLevel::from_range(0.0, 1.0),
            diff_scale: 0.1,
            flip: false,
            presentation: false,
            presentation_index: 1,
            hover: None,
            hover_next: None,
            wheel_accum: 0.0,
            panes_size: egui::vec2(1200.0, 500.0),
        }
    }

    /// The crosshair (slicing axis, current voxel).
    pub fn crosshair(&self) -> &Crosshair {
        &self.crosshair
    }

    /// Zoom and pan of the panes.
    pub fn view(&self) -> &ViewTransform {
        &self.view
    }

    /// Zoom and pan, for the mouse and keyboard to change.
    pub fn view_mut(&mut self) -> &mut ViewTransform {
        &mut self.view
    }

    /// Back to no zoom and no pan.
    pub fn reset_view(&mut self) {
        self.view = ViewTransform::default();
    }

    /// The intensity window, normalised units.
    pub fn window(&self) -> WindowLevel {
        self.window
    }

    /// Sets the intensity window (normalised units).
    pub fn set_window(&mut self, window: WindowLevel) {
        self.window = window;
    }

    /// Changes the window by a right drag of (`dx`, `dy`) points.
    pub fn drag_window(&mut self, dx: f32, dy: f32) {
        self.window.drag(dx, dy, 1.0);
    }

    /// Full scale of the |error| maps, normalised units.
    pub fn diff_scale(&self) -> f32 {
        self.diff_scale
    }

    /// Sets the full scale of the |error| maps (normalised units).
    pub fn set_diff_scale(&mut self, scale: f32) {
        self.diff_scale = scale;
    }

    /// Changes the map scale by a right drag of (`dx`, `dy`) points.
    pub fn drag_diff_scale(&mut self, dx: f32, dy: f32) {
        self.diff_scale = (self.diff_scale * (0.005 * (dx - dy)).exp()).clamp(1e-4, 10.0);
    }

    /// Whether the SR pane shows GT (the F key).
    pub fn flip(&self) -> bool {
        self.flip
    }

    /// Whether presentation mode (one full-screen pane) is on.
    pub fn presentation(&self) -> bool {
        self.presentation
    }

    /// Turns presentation mode on (starting on the SR pane) or off.
    pub fn set_presentation(&mut self, on: bool) {
        self.presentation = on;
        if on {
            self.presentation_index = 1;
        }
    }

    /// Presentation mode: the next pane of the cycle.
    pub fn presentation_next(&mut self) {
        self.presentation_index = self.presentation_index.wrapping_add(1);
    }

    /// The display-grid voxel under the mouse, as of the last frame.
    pub fn hover(&self) -> Option<[usize; 3]> {
        self.hover
    }

    /// Records the voxel under the mouse found while drawing this frame.
    pub fn set_hover_next(&mut self, voxel: Option<[usize; 3]>) {
        self.hover_next = voxel;
    }

    /// Start of a frame: no voxel under the mouse found yet.
    pub fn begin_frame(&mut self) {
        self.hover_next = None;
    }

    /// End of a frame: the readout shows the voxel found; `true` when it changed (the readout,
    /// drawn before the panes, needs another frame).
    pub fn end_frame(&mut self) -> bool {
        let changed = self.hover_next != self.hover;
        self.hover = self.hover_next;
        changed
    }

    /// Slices to step for `points` of smooth scrolling (the remainder accumulates).
    pub fn wheel_steps(&mut self, points: f32) -> i64 {
        self.wheel_accum += points;
        let n = (self.wheel_accum / WHEEL_POINTS_PER_SLICE).trunc();
        self.wheel_accum -= n * WHEEL_POINTS_PER_SLICE;
        n as i64
    }

    /// Size of the pane area last drawn, in points.
    pub fn panes_size(&self) -> egui::Vec2 {
        self.panes_size
    }

    /// Records the size of the pane area being drawn.
    pub fn set_panes_size(&mut self, size: egui::Vec2) {
        self.panes_size = size;
    }
}

impl Viewer {
    /// Changes the slicing axis of the panes.
    pub fn set_axis(&mut self, axis: Axis) {
        self.nav.crosshair.axis = axis;
        self.settings.view_axis = axis;
    }

    /// Moves the current slice by `delta` and prioritises it for inference.
    pub fn step_slice(&mut self, delta: i64) {
        self.nav.crosshair.step(delta);
        self.prioritise_current();
    }

    /// Moves the crosshair to in-plane position (`col`, `row`) of the current slice (a click)
    /// and prioritises the slice it lands on for inference.
    pub fn set_in_plane(&mut self, col: f64, row: f64) {
        self.nav.crosshair.set_in_plane(col, row);
        self.prioritise_current();
    }

    /// Jumps to SR-axis slice `index` (the per-slice plot).
    pub fn jump_to_sr_slice(&mut self, index: usize) {
        if let Some(p) = &self.doc.prepared {
            let axis = p.sr_axis;
            self.set_axis(axis);
            self.nav.crosshair.set_slice(index);
            self.prioritise_current();
        }
    }

    /// The F key: shows GT in the SR pane, or SR again; nothing without a GT (upscale mode).
    pub fn toggle_flip(&mut self) {
        let has_gt = self.doc.prepared.as_ref().is_some_and(|p| p.gt.is_some());
        self.nav.flip = has_gt && !self.nav.flip;
    }

    /// Applies a window preset (values from the reference volume's percentiles).
    pub fn apply_preset(&mut self, preset: WindowPreset) {
        self.settings.window_preset = preset;
        let Some(p) = &self.doc.prepared else {
            return;
        };
        let (pl, ph) = preset.percentiles();
        let lo = p.summary.get(f64::from(pl));
        let hi = p.summary.get(f64::from(ph));
        if let (Some(lo), Some(mut hi)) = (lo, hi) {
            if hi <= lo {
                hi = p.summary.get(100.0).unwrap_or(lo + 1.0).max(lo + 1e-3);
            }
            self.nav.window = WindowLevel::from_range(lo, hi);
        }
    }

    /// The |error| map scale back to the session's automatic one.
    pub fn auto_diff_scale(&mut self) {
        if let Some(p) = &self.doc.prepared {
            self.nav.diff_scale = p.diff_scale;
        }
    }
}
