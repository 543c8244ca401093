//! Panels, menus, windows and keyboard shortcuts around the pane grid: the shortcuts and file
//! drops here, the rest by panel in `menus.rs`, `side_panel.rs`, `status.rs` and `windows.rs`.

mod menus;
mod pacs;
mod side_panel;
mod status;
mod windows;

use egui::{Key, Modifiers, Ui};

use crate::app::colormap::Colormap;
use crate::app::jobs::DialogPurpose;
use crate::app::metrics_cache::Slot;
use crate::app::viewer::Viewer;
use crate::app::windowing::WindowPreset;
use crate::volume::Axis;

pub use menus::{menu_bar, toolbar};
pub use pacs::{pacs_nodes_window, pacs_progress, pacs_window};
pub use side_panel::side_panel;
pub use status::{device_status, messages, progress, psnr_plot, readout, status_line};
pub use windows::{help_window, series_window};

/// What the frame asks the eframe layer to do.
#[derive(Default)]
pub struct FrameRequests {
    pub toggle_presentation: bool,
    pub save_png: bool,
}

/// Handles the keyboard shortcuts of [`crate::app::settings::SHORTCUTS`].
pub fn shortcuts(v: &mut Viewer, ui: &Ui, req: &mut FrameRequests) {
    let ctx = ui.ctx().clone();
    if ctx.egui_wants_keyboard_input() {
        return;
    }
    let none = Modifiers::NONE;
    let ctrl = Modifiers::COMMAND;
    let ctrl_shift = Modifiers::COMMAND | Modifiers::SHIFT;
    let consume = |m: Modifiers, k: Key| ctx.input_mut(|i| i.consume_key(m, k));

    if consume(ctrl_shift, Key::O) {
        v.dialog(DialogPurpose::OpenFolder, "");
    }
    if consume(ctrl, Key::O) {
        v.dialog(DialogPurpose::OpenFile, "");
    }
    if consume(ctrl_shift, Key::S) {
        v.dialog(DialogPurpose::ExportDicom, "");
    }
    if consume(ctrl, Key::S) {
        v.dialog(
            DialogPurpose::ExportNifti,
            &format!("{}.nii.gz", v.document().export_stem()),
        );
    }
    if consume(ctrl, Key::E) {
        v.dialog(
            DialogPurpose::ExportCsv,
            &format!("{}_metrics.csv", v.document().export_stem()),
        );
    }
    if consume(ctrl, Key::Period) {
        for s in Slot::ALL {
            v.user_cancel(s);
        }
    }
    if consume(none, Key::F12) {
        req.save_png = true;
    }
    if consume(none, Key::F1)
        || ctx.input_mut(|i| i.consume_key(Modifiers::SHIFT, Key::Questionmark))
        || consume(none, Key::Questionmark)
    {
        let show = v.dialogs().show_help();
        v.dialogs_mut().set_help(!show);
    }
    if consume(none, Key::F11) || consume(none, Key::P) {
        req.toggle_presentation = true;
    }
    if consume(none, Key::Escape) {
        if v.navigation().presentation() {
            req.toggle_presentation = true;
        } else {
            v.dialogs_mut().set_help(false);
        }
    }
    if v.navigation().presentation() && (consume(none, Key::Space) || consume(none, Key::Tab)) {
        v.navigation_mut().presentation_next();
    }
    if consume(none, Key::ArrowUp) {
        v.step_slice(1);
    }
    if consume(none, Key::ArrowDown) {
        v.step_slice(-1);
    }
    if consume(none, Key::PageUp) {
        v.step_slice(10);
    }
    if consume(none, Key::PageDown) {
        v.step_slice(-10);
    }
    if consume(none, Key::Home) {
        v.step_slice(i64::MIN / 2);
    }
    if consume(none, Key::End) {
        v.step_slice(i64::MAX / 2);
    }
    if consume(none, Key::Z) {
        v.set_axis(Axis::Axial);
    }
    if consume(none, Key::Y) {
        v.set_axis(Axis::Coronal);
    }
    if consume(none, Key::X) {
        v.set_axis(Axis::Sagittal);
    }
    let pane_area = egui::Rect::from_min_size(egui::Pos2::ZERO, v.navigation().panes_size());
    let size_mm = egui::vec2(1.0, 1.0);
    if consume(none, Key::Plus) || consume(none, Key::Equals) {
        v.navigation_mut()
            .view_mut()
            .zoom_about(1.25, pane_area.center(), pane_area, size_mm);
    }
    if consume(none, Key::Minus) {
        v.navigation_mut()
            .view_mut()
            .zoom_about(0.8, pane_area.center(), pane_area, size_mm);
    }
    if consume(none, Key::Num0) {
        v.navigation_mut().reset_view();
    }
    if consume(none, Key::W) {
        v.apply_preset(WindowPreset::Robust);
    }
    for (k, p) in [Key::Num1, Key::Num2, Key::Num3, Key::Num4]
        .into_iter()
        .zip(WindowPreset::ALL)
    {
        if consume(none, k) {
            v.apply_preset(p);
        }
    }
    if consume(none, Key::M) {
        v.settings_mut().cycle_map();
    }
    if consume(none, Key::B) {
        v.settings_mut().cycle_map_baseline();
    }
    if consume(none, Key::D) {
        let on = !v.settings().data_consistency;
        v.set_data_consistency(on);
    }
    if consume(none, Key::C) {
        let all = Colormap::UNSIGNED;
        let s = v.settings_mut();
        let i = all.iter().position(|c| *c == s.map_colormap).unwrap_or(0);
        s.map_colormap = all[(i + 1) % all.len()];
    }
    if consume(none, Key::F) {
        v.toggle_flip();
    }
    if consume(none, Key::I) {
        v.settings_mut().toggle_lr_interp();
    }
    if consume(none, Key::S) {
        let s = v.settings_mut();
        s.smooth_display = !s.smooth_display;
    }
}

/// Files dropped on the window open (the first one).
pub fn dropped_files(v: &mut Viewer, ctx: &egui::Context) {
    let dropped: Vec<std::path::PathBuf> = ctx.input(|i| {
        i.raw
            .dropped_files
            .iter()
            .map(|f| f.path().to_path_buf())
            .collect()
    });
    if let Some(p) = dropped.into_iter().next() {
        v.open(p, None);
    }
}
