//! Panels, menus, windows and keyboard shortcuts around the pane grid.

use egui::{Color32, Key, Modifiers, RichText, Ui};
use egui_plot::{Line, Plot, PlotPoints, VLine};

use super::backend;
use super::colormap::Colormap;
use super::geometry::{Convention, axis_label, voxel_to_world};
use super::jobs::{CheckpointSource, DialogPurpose};
use super::metrics_cache::{ResultId, Slot};
use super::session::{MapKind, Mode, RunState, SrAxisChoice, result_volume};
use super::settings::SHORTCUTS;
use super::viewer::Viewer;
use super::windowing::{WindowLevel, WindowPreset};
use crate::degrade::Baseline;
use crate::engine::DeviceChoice;
use crate::model::Degradation;
use crate::volume::Axis;

/// What the frame asks the eframe layer to do.
#[derive(Default)]
pub struct FrameRequests {
    pub toggle_presentation: bool,
    pub save_png: bool,
}

/// Handles the keyboard shortcuts of [`SHORTCUTS`].
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
    if consume(ctrl, Key::S) {
        v.dialog(
            DialogPurpose::ExportNifti,
            &format!("{}.nii.gz", v.export_stem()),
        );
    }
    if consume(ctrl, Key::E) {
        v.dialog(
            DialogPurpose::ExportCsv,
            &format!("{}_metrics.csv", v.export_stem()),
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
        v.show_help = !v.show_help;
    }
    if consume(none, Key::F11) || consume(none, Key::P) {
        req.toggle_presentation = true;
    }
    if consume(none, Key::Escape) {
        if v.presentation {
            req.toggle_presentation = true;
        } else {
            v.show_help = false;
        }
    }
    if v.presentation && (consume(none, Key::Space) || consume(none, Key::Tab)) {
        v.presentation_next();
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
    let pane_area = egui::Rect::from_min_size(egui::Pos2::ZERO, v.panes_size);
    let size_mm = egui::vec2(1.0, 1.0);
    if consume(none, Key::Plus) || consume(none, Key::Equals) {
        v.view
            .zoom_about(1.25, pane_area.center(), pane_area, size_mm);
    }
    if consume(none, Key::Minus) {
        v.view
            .zoom_about(0.8, pane_area.center(), pane_area, size_mm);
    }
    if consume(none, Key::Num0) {
        v.view = Default::default();
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
        v.cycle_map();
    }
    if consume(none, Key::B) {
        v.cycle_map_baseline();
    }
    if consume(none, Key::C) {
        let all = Colormap::UNSIGNED;
        let i = all
            .iter()
            .position(|c| *c == v.settings.map_colormap)
            .unwrap_or(0);
        v.settings.map_colormap = all[(i + 1) % all.len()];
    }
    if consume(none, Key::F) {
        v.toggle_flip();
    }
    if consume(none, Key::I) {
        v.toggle_lr_interp();
    }
    if consume(none, Key::S) {
        v.settings.smooth_display = !v.settings.smooth_display;
    }
}

/// The menu bar.
pub fn menu_bar(v: &mut Viewer, ui: &mut Ui, req: &mut FrameRequests) {
    egui::MenuBar::new().ui(ui, |ui| {
        ui.menu_button("File", |ui| {
            if ui.button("Open file...  (Ctrl+O)").clicked() {
                v.dialog(DialogPurpose::OpenFile, "");
            }
            if ui.button("Open DICOM folder...  (Ctrl+Shift+O)").clicked() {
                v.dialog(DialogPurpose::OpenFolder, "");
            }
            if let Some(sample) = backend::sample_path()
                && ui.button("Open the bundled sample").clicked()
            {
                v.open(sample, None);
            }
            ui.menu_button("Recent", |ui| {
                let recent = v.settings.recent.clone();
                if recent.is_empty() {
                    ui.weak("(none)");
                }
                for p in recent {
                    let label = p.display().to_string();
                    if ui
                        .add_enabled(p.exists(), egui::Button::new(label))
                        .clicked()
                    {
                        v.open(p, None);
                    }
                }
            });
            ui.separator();
            if ui.button("Export SR as NIfTI...  (Ctrl+S)").clicked() {
                v.dialog(
                    DialogPurpose::ExportNifti,
                    &format!("{}.nii.gz", v.export_stem()),
                );
            }
            if ui.button("Save PNG of the panes (2x)...  (F12)").clicked() {
                req.save_png = true;
            }
            if ui.button("Export metrics as CSV...  (Ctrl+E)").clicked() {
                v.dialog(
                    DialogPurpose::ExportCsv,
                    &format!("{}_metrics.csv", v.export_stem()),
                );
            }
            if ui.button("Export metrics as JSON...").clicked() {
                v.dialog(
                    DialogPurpose::ExportJson,
                    &format!("{}_metrics.json", v.export_stem()),
                );
            }
            ui.separator();
            if ui.button("Quit").clicked() {
                ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
            }
        });
        ui.menu_button("View", |ui| {
            for a in [Axis::Axial, Axis::Coronal, Axis::Sagittal] {
                if ui
                    .selectable_label(v.crosshair.axis == a, axis_label(a))
                    .clicked()
                {
                    v.set_axis(a);
                }
            }
            ui.separator();
            ui.checkbox(&mut v.settings.show_side_panel, "Side panel");
            ui.checkbox(&mut v.settings.show_plot, "Per-slice PSNR plot");
            ui.checkbox(&mut v.settings.smooth_display, "Smooth display (S)");
            if ui.button("Presentation mode  (F11 / P)").clicked() {
                req.toggle_presentation = true;
            }
            if ui.button("Reset zoom and pan  (0)").clicked() {
                v.view = Default::default();
            }
            ui.separator();
            ui.label("Display convention");
            for c in [Convention::Radiological, Convention::Neurological] {
                ui.radio_value(&mut v.settings.convention, c, c.label());
            }
        });
        ui.menu_button("Checkpoints", |ui| checkpoint_menu(v, ui));
        ui.menu_button("Help", |ui| {
            if ui.button("Keyboard shortcuts  (F1)").clicked() {
                v.show_help = true;
            }
        });
    });
}

fn checkpoint_menu(v: &mut Viewer, ui: &mut Ui) {
    for slot in Slot::ALL {
        let name = if slot == Slot::A { "A" } else { "B" };
        ui.label(RichText::new(format!("Checkpoint {name}")).strong());
        if ui.button(format!("Open ({name})...")).clicked() {
            v.dialog(DialogPurpose::Checkpoint(slot), "");
        }
        let scale = v.prepared.as_ref().map(|p| p.params.scale);
        for f in backend::list_weights() {
            let s = backend::peek_scale(&f).ok();
            let label = format!(
                "{}  ({})",
                f.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                s.map(|s| format!("x{s}")).unwrap_or_else(|| "?".into())
            );
            let current = v.checkpoints[slot.index()]
                .as_ref()
                .and_then(|c| c.path())
                .is_some_and(|p| p == f);
            let enabled = scale.is_none() || s == scale;
            if ui
                .add_enabled(enabled, egui::Button::selectable(current, label))
                .clicked()
            {
                v.set_checkpoint(slot, CheckpointSource::File(f));
            }
        }
        ui.separator();
    }
    let mut b = v.settings.compare_b;
    if ui
        .add_enabled(
            v.checkpoints[1].is_some(),
            egui::Checkbox::new(&mut b, "Compare A and B side by side"),
        )
        .changed()
    {
        v.settings.compare_b = b;
        if b {
            v.start_run(Slot::B);
        } else {
            v.cancel_run(Slot::B);
        }
    }
    ui.separator();
    ui.label("Device");
    let mut dev = v.settings.device;
    for d in [DeviceChoice::Auto, DeviceChoice::Gpu, DeviceChoice::Cpu] {
        ui.radio_value(&mut dev, d, backend::device_label(d));
    }
    if dev != v.settings.device {
        v.set_device(dev);
    }
    ui.separator();
    if ui.button("Restart inference").clicked() {
        v.start_run(Slot::A);
        if v.settings.compare_b {
            v.start_run(Slot::B);
        }
    }
}

/// The message panel (errors and notes), with dismiss buttons.
pub fn messages(v: &mut Viewer, ui: &mut Ui) {
    let mut remove = None;
    for (i, m) in v.messages.iter().enumerate() {
        ui.horizontal(|ui| {
            let color = if m.error {
                Color32::from_rgb(255, 110, 100)
            } else {
                Color32::from_rgb(150, 200, 255)
            };
            if ui.small_button("x").on_hover_text("dismiss").clicked() {
                remove = Some(i);
            }
            ui.label(RichText::new(&m.text).color(color));
        });
    }
    if let Some(i) = remove {
        v.messages.remove(i);
    }
}

/// The toolbar under the menu: mode, scale, degradation, axis, maps.
pub fn toolbar(v: &mut Viewer, ui: &mut Ui) {
    ui.horizontal_wrapped(|ui| {
        let mut mode = v.settings.mode;
        ui.label("Mode");
        ui.selectable_value(&mut mode, Mode::Simulate, "simulate");
        ui.selectable_value(&mut mode, Mode::Upscale, "upscale");
        if mode != v.settings.mode {
            v.set_mode(mode);
        }
        ui.separator();
        let mut scale = v.settings.scale;
        ui.selectable_value(&mut scale, 2, "x2");
        ui.selectable_value(&mut scale, 4, "x4");
        let mut deg = v.settings.degradation;
        let from_checkpoint = match v.settings.mode {
            Mode::Simulate => None,
            Mode::Upscale => v.checkpoint_degradation(Slot::A),
        };
        if let Some(d) = from_checkpoint {
            ui.label(format!("LR geometry: {} (checkpoint A)", d.as_str()))
                .on_hover_text("in upscale mode the LR sampling geometry is the one checkpoint A was trained on, as in deltawkv upscale");
        } else {
            ui.label(if v.settings.mode == Mode::Simulate {
                "LR by"
            } else {
                "LR geometry"
            });
            ui.selectable_value(&mut deg, Degradation::Kspace, "k-space");
            ui.selectable_value(&mut deg, Degradation::Bicubic, "bicubic");
        }
        if scale != v.settings.scale || deg != v.settings.degradation {
            v.settings.scale = scale;
            v.settings.degradation = deg;
            v.reprepare_if_needed();
        }
        ui.separator();
        for a in [Axis::Axial, Axis::Coronal, Axis::Sagittal] {
            if ui
                .selectable_label(v.crosshair.axis == a, axis_label(a))
                .clicked()
            {
                v.set_axis(a);
            }
        }
        ui.separator();
        ui.label("LR shown");
        ui.selectable_value(&mut v.settings.lr_interp, Baseline::Nearest, "nearest");
        ui.selectable_value(&mut v.settings.lr_interp, Baseline::Bicubic, "bicubic");
        if v.settings.mode == Mode::Simulate {
            ui.separator();
            ui.label("Maps");
            ui.selectable_value(&mut v.settings.map, None, "off");
            for m in MapKind::ALL {
                ui.selectable_value(&mut v.settings.map, Some(m), m.label());
            }
            if ui.selectable_label(v.flip, "flip SR/GT (F)").clicked() {
                v.toggle_flip();
            }
        }
    });
}

fn fmt_db(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}")
    } else {
        "inf".into()
    }
}

/// The side panel: volume facts, display controls, checkpoints and metrics.
pub fn side_panel(v: &mut Viewer, ui: &mut Ui) {
    // Most looked-at first: the numbers, then the runs; the rest can be folded away.
    egui::ScrollArea::vertical().show(ui, |ui| {
        metrics_table(v, ui);
        ui.separator();
        checkpoint_info(v, ui);
        ui.separator();
        egui::CollapsingHeader::new(RichText::new("Display").heading())
            .default_open(true)
            .show(ui, |ui| display_controls(v, ui));
        ui.separator();
        egui::CollapsingHeader::new(RichText::new("Volume").heading())
            .default_open(true)
            .show(ui, |ui| volume_info(v, ui));
    });
}

fn volume_info(v: &Viewer, ui: &mut Ui) {
    let (Some(l), Some(p)) = (&v.loaded, &v.prepared) else {
        ui.weak("nothing loaded");
        return;
    };
    let name = l
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    ui.label(RichText::new(name).strong())
        .on_hover_text(l.path.display().to_string());
    let c = &l.volume;
    egui::Grid::new("volinfo").num_columns(2).show(ui, |ui| {
        ui.label("format");
        ui.label(&p.meta.format);
        ui.end_row();
        ui.label("voxels");
        ui.label(format!("{} x {} x {}", c.dims[0], c.dims[1], c.dims[2]));
        ui.end_row();
        ui.label("spacing");
        ui.label(format!(
            "{:.3} x {:.3} x {:.3} mm",
            c.spacing[0], c.spacing[1], c.spacing[2]
        ));
        ui.end_row();
        ui.label("orientation");
        ui.label(format!("{} -> RAS", l.orientation));
        ui.end_row();
        ui.label("SR grid");
        let g = p.grid.dims;
        ui.label(format!(
            "{} x {} x {} (x{} {})",
            g[0],
            g[1],
            g[2],
            p.params.scale,
            axis_label(p.sr_axis)
        ));
        ui.end_row();
        ui.label("LR grid");
        let d = p.lr_grid.dims;
        ui.label(format!("{} x {} x {}", d[0], d[1], d[2]));
        ui.end_row();
        ui.label("1.0 =");
        let how = if p.gt.is_some() {
            "intensities are divided by this and clipped to [0, 1], as in training and deltawkv eval"
        } else {
            "intensities are divided by this (not clipped) before the network and multiplied \
             back after it, as in deltawkv upscale"
        };
        ui.label(format!("{:.1} (99.5th percentile)", p.norm))
            .on_hover_text(how);
        ui.end_row();
        if let Some(m) = &p.meta.modality {
            ui.label("modality");
            ui.label(m);
            ui.end_row();
        }
        if let Some(d) = &p.meta.series_description {
            ui.label("series");
            ui.label(d);
            ui.end_row();
        }
    });
    for n in &p.meta.notes {
        ui.weak(n);
    }
}

fn display_controls(v: &mut Viewer, ui: &mut Ui) {
    let norm = v.prepared.as_ref().map(|p| p.norm).unwrap_or(1.0);
    let (lo, hi) = v.window.range();
    let mut level = v.window.center * norm;
    let mut width = v.window.width * norm;
    ui.horizontal(|ui| {
        let la = ui.label("level");
        let a = ui
            .add(egui::DragValue::new(&mut level).speed(norm * 0.002))
            .labelled_by(la.id);
        let lb = ui.label("width");
        let b = ui
            .add(
                egui::DragValue::new(&mut width)
                    .speed(norm * 0.002)
                    .range(0.0..=f32::MAX),
            )
            .labelled_by(lb.id);
        if a.changed() || b.changed() {
            v.window = WindowLevel {
                center: level / norm,
                width: (width / norm).max(1e-4),
            };
        }
    });
    ui.weak(format!(
        "window {:.0} .. {:.0} (right-drag in a pane)",
        lo * norm,
        hi * norm
    ));
    ui.horizontal_wrapped(|ui| {
        for (i, p) in WindowPreset::ALL.into_iter().enumerate() {
            if ui
                .button(format!("{} {}", i + 1, p.label()))
                .on_hover_text("window preset from the percentiles of the reference volume")
                .clicked()
            {
                v.apply_preset(p);
            }
        }
    });
    egui::ComboBox::from_label("intensity colours")
        .selected_text(v.settings.intensity_colormap.label())
        .show_ui(ui, |ui| {
            for c in [Colormap::Gray, Colormap::Viridis, Colormap::Inferno] {
                ui.selectable_value(&mut v.settings.intensity_colormap, c, c.label());
            }
        });
    if v.settings.mode == Mode::Simulate {
        egui::ComboBox::from_label("map colours")
            .selected_text(v.settings.map_colormap.label())
            .show_ui(ui, |ui| {
                for c in Colormap::UNSIGNED {
                    ui.selectable_value(&mut v.settings.map_colormap, c, c.label());
                }
            });
        egui::ComboBox::from_label("map baseline")
            .selected_text(v.settings.map_baseline.as_str())
            .show_ui(ui, |ui| {
                for b in [Baseline::Bicubic, Baseline::Zerofill, Baseline::Nearest] {
                    ui.selectable_value(&mut v.settings.map_baseline, b, b.as_str());
                }
            });
        let mut scale = v.diff_scale * norm;
        ui.horizontal(|ui| {
            let l = ui.label("|error| scale");
            if ui
                .add(
                    egui::DragValue::new(&mut scale)
                        .speed(norm * 0.001)
                        .range(0.0..=f32::MAX),
                )
                .labelled_by(l.id)
                .changed()
            {
                v.diff_scale = (scale / norm).max(1e-4);
            }
            if ui
                .small_button("auto")
                .on_hover_text("99th percentile of |bicubic - GT|")
                .clicked()
                && let Some(p) = &v.prepared
            {
                v.diff_scale = p.diff_scale;
            }
        });
    }
    let mut axis_choice = v.settings.sr_axis;
    egui::ComboBox::from_label("SR slices")
        .selected_text(match axis_choice {
            SrAxisChoice::Auto => "auto (thickest axis)".to_string(),
            SrAxisChoice::Fixed(a) => axis_label(a).to_string(),
        })
        .show_ui(ui, |ui| {
            ui.selectable_value(&mut axis_choice, SrAxisChoice::Auto, "auto (thickest axis)");
            for a in [Axis::Axial, Axis::Coronal, Axis::Sagittal] {
                ui.selectable_value(&mut axis_choice, SrAxisChoice::Fixed(a), axis_label(a));
            }
        });
    if axis_choice != v.settings.sr_axis {
        v.settings.sr_axis = axis_choice;
        v.reprepare_if_needed();
    }
}

fn checkpoint_info(v: &mut Viewer, ui: &mut Ui) {
    ui.heading("Super-resolution");
    for slot in Slot::ALL {
        if slot == Slot::B && !v.settings.compare_b {
            continue;
        }
        let name = if slot == Slot::A { "A" } else { "B" };
        match &v.runs[slot.index()] {
            Some(run) => {
                ui.label(format!("{name}: {}", run.checkpoint));
                if let Some(e) = &run.engine {
                    ui.weak(e);
                }
                let state = match &run.state {
                    RunState::Starting => "starting".to_string(),
                    RunState::Running => format!("{}/{} slices", run.n_done, run.done.len()),
                    RunState::Finished(d) => format!(
                        "done: {} slices in {:.1} s",
                        run.done.len(),
                        d.as_secs_f64()
                    ),
                    RunState::Failed(e) => format!("failed: {e}"),
                    RunState::Cancelled => {
                        format!("cancelled at {}/{}", run.n_done, run.done.len())
                    }
                };
                ui.weak(state);
            }
            None => {
                ui.label(format!("{name}: no checkpoint"));
            }
        }
        if ui.small_button(format!("choose {name}...")).clicked() {
            v.dialog(DialogPurpose::Checkpoint(slot), "");
        }
    }
}

fn metrics_table(v: &mut Viewer, ui: &mut Ui) {
    ui.heading("Metrics");
    let Some(p) = v.prepared.clone() else {
        return;
    };
    if p.gt.is_none() {
        ui.weak("upscale mode: no ground truth, no metrics");
        return;
    }
    ui.weak(format!(
        "data range {:.1} (normalised; = {:.1} file units)",
        p.data_range(),
        p.data_range() as f32 * p.norm
    ));
    let axis = v.crosshair.axis;
    let index = v.crosshair.slice();
    egui::Grid::new("metrics")
        .num_columns(5)
        .striped(true)
        .show(ui, |ui| {
            ui.label("");
            ui.label(RichText::new("slice PSNR").small());
            ui.label(RichText::new("SSIM").small());
            ui.label(RichText::new("volume PSNR").small());
            ui.label(RichText::new("SSIM").small());
            ui.end_row();
            for id in v.metric_results() {
                let strong = matches!(id, ResultId::Sr(_));
                let name = RichText::new(id.label());
                ui.label(if strong { name.strong() } else { name });
                match v.metrics.get((axis, index, id)) {
                    Some(m) => {
                        ui.monospace(fmt_db(m.psnr));
                        ui.monospace(format!("{:.4}", m.ssim));
                    }
                    None => {
                        if let Some(why) = v.metrics.failure((axis, index, id)) {
                            ui.weak("n/a").on_hover_text(why.to_string());
                            ui.weak("n/a").on_hover_text(why.to_string());
                        } else {
                            ui.weak("-");
                            ui.weak("-");
                        }
                    }
                }
                // While SR A is unfinished, every other result is pooled over the same slices.
                let mask = v.runs[0]
                    .as_ref()
                    .filter(|r| !r.complete())
                    .map(|r| r.done.clone());
                let vm = match id {
                    ResultId::Sr(_) => v.metrics.volume(id),
                    _ => v.metrics.volume_over(id, mask.as_deref()),
                };
                match vm {
                    Some(vm) => {
                        let partial = if vm.slices < vm.total {
                            format!(" ({}/{})", vm.slices, vm.total)
                        } else {
                            String::new()
                        };
                        ui.monospace(format!("{}{partial}", fmt_db(vm.psnr)));
                        ui.monospace(format!("{:.4}", vm.ssim));
                    }
                    None => {
                        ui.weak("-");
                        ui.weak("-");
                    }
                }
                ui.end_row();
            }
        });
    ui.weak(format!(
        "slice: {} {}; volume: {} slices (PSNR of pooled MSE, mean SSIM)",
        axis_label(axis),
        index + 1,
        axis_label(p.sr_axis)
    ));
}

/// Progress bars of running inference, with cancel buttons.
pub fn progress(v: &mut Viewer, ui: &mut Ui) {
    for slot in Slot::ALL {
        let Some(run) = &v.runs[slot.index()] else {
            continue;
        };
        if !run.active() {
            continue;
        }
        let name = if slot == Slot::A { "SR" } else { "SR (B)" };
        let total = run.done.len().max(1);
        let frac = run.n_done as f32 / total as f32;
        let eta = if run.slice_secs.is_empty() {
            String::new()
        } else {
            let mean = run.slice_secs.iter().sum::<f64>() / run.slice_secs.len() as f64;
            let left = mean * (run.done.len() - run.n_done) as f64;
            let left = if left >= 90.0 {
                format!("{:.0} min", left / 60.0)
            } else {
                format!("{left:.0} s")
            };
            format!(", {mean:.1} s/slice, about {left} left")
        };
        let text = match run.state {
            RunState::Starting => format!("{name}: starting the engine"),
            _ => format!("{name}: {}/{} slices{eta}", run.n_done, run.done.len()),
        };
        let mut cancel = false;
        ui.horizontal(|ui| {
            ui.add(
                egui::ProgressBar::new(frac)
                    .text(text)
                    .desired_width(360.0)
                    .animate(true),
            );
            cancel = ui.button("Cancel").on_hover_text("Ctrl+Period").clicked();
        });
        if cancel {
            v.user_cancel(slot);
        }
    }
    if let Some(t) = v.preparing {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label(format!(
                "preparing LR, GT and baselines ({:.1} s)",
                t.elapsed().as_secs_f32()
            ));
        });
    }
    if let Some((p, t)) = &v.loading {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label(format!(
                "loading {} ({:.1} s)",
                p.display(),
                t.elapsed().as_secs_f32()
            ));
        });
    }
}

/// The per-slice PSNR plot; a click jumps to the slice.
pub fn psnr_plot(v: &mut Viewer, ui: &mut Ui) {
    let Some(p) = v.prepared.clone() else {
        return;
    };
    if p.gt.is_none() {
        return;
    }
    let sr_axis = p.sr_axis;
    let series: Vec<(String, Vec<[f64; 2]>)> = v
        .metric_results()
        .into_iter()
        .map(|id| {
            let pts = v
                .metrics
                .sr_axis_series(id)
                .into_iter()
                .enumerate()
                .filter_map(|(k, m)| {
                    m.filter(|m| m.psnr.is_finite())
                        .map(|m| [k as f64 + 1.0, m.psnr])
                })
                .collect();
            (id.label(), pts)
        })
        .collect();
    let current = (v.crosshair.axis == sr_axis).then(|| v.crosshair.slice() as f64 + 1.0);
    // Leave the upper part of the plot to the legend.
    let (lo, hi) = series
        .iter()
        .flat_map(|(_, pts)| pts.iter().map(|p| p[1]))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
            (a.min(y), b.max(y))
        });
    let mut plot = Plot::new("psnr_per_slice")
        .height(ui.available_height().max(60.0))
        .legend(egui_plot::Legend::default().position(egui_plot::Corner::RightTop));
    if lo.is_finite() && hi.is_finite() {
        plot = plot.include_y(lo - 1.0).include_y(hi + (hi - lo) + 3.0);
    }
    let resp = plot
        .x_axis_label(format!("{} slice", axis_label(sr_axis)))
        .y_axis_label("PSNR (dB)")
        .allow_scroll(false)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_boxed_zoom(false)
        .show(ui, |plot| {
            for (name, pts) in series {
                let width = if name.starts_with("SR") { 2.5 } else { 1.2 };
                plot.line(Line::new(name, PlotPoints::from(pts)).width(width));
            }
            if let Some(x) = current {
                plot.add(VLine::new("", x));
            }
        });
    if resp.response.clicked()
        && let Some(pos) = resp.response.interact_pointer_pos()
    {
        let x = resp.transform.value_from_position(pos).x;
        let n = p.sr_slices();
        if x.is_finite() && n > 0 {
            let k = (x.round() as i64 - 1).clamp(0, n as i64 - 1) as usize;
            v.jump_to_sr_slice(k);
        }
    }
}

/// The status line: the cursor readout, and on the right the device choice and the backend
/// each SR run uses (`starting` until its engine exists).
pub fn status_line(v: &Viewer, ui: &mut Ui) {
    ui.horizontal(|ui| {
        readout(v, ui);
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            ui.weak(device_status(v));
        });
    });
}

/// `device: CPU reference | SR: <backend>` for the status line.
pub fn device_status(v: &Viewer) -> String {
    let mut s = format!("device: {}", backend::device_label(v.settings.device));
    for slot in Slot::ALL {
        let Some(run) = &v.runs[slot.index()] else {
            continue;
        };
        if slot == Slot::B && !v.settings.compare_b {
            continue;
        }
        let name = if slot == Slot::A { "SR" } else { "SR (B)" };
        let engine = match (&run.engine, &run.state) {
            (Some(e), _) => e.clone(),
            (None, RunState::Starting) => "starting".into(),
            (None, _) => "-".into(),
        };
        s.push_str(&format!("  |  {name} on {engine}"));
    }
    s
}

/// The cursor readout: voxel, position in mm and value of each pane under the mouse.
pub fn readout(v: &Viewer, ui: &mut Ui) {
    let (Some(p), Some(vox)) = (&v.prepared, v.hover) else {
        ui.weak("move the mouse over a pane for voxel, position and values");
        return;
    };
    let world = voxel_to_world(
        &p.grid.affine,
        [vox[0] as f64, vox[1] as f64, vox[2] as f64],
    );
    let mut parts = vec![format!(
        "voxel ({}, {}, {})  {:.1}, {:.1}, {:.1} mm",
        vox[0], vox[1], vox[2], world[0], world[1], world[2]
    )];
    let lr = p.lr_voxel(vox);
    let lr_val = p.lr.data.get(p.lr.linear_index(lr)).copied();
    if let Some(x) = lr_val {
        parts.push(format!(
            "LR ({}, {}, {}) = {:.1}",
            lr[0],
            lr[1],
            lr[2],
            x * p.norm
        ));
    }
    let value = |vol: &crate::volume::Volume| vol.data.get(vol.linear_index(vox)).copied();
    for slot in Slot::ALL {
        if let Some(vol) = result_volume(p, &v.runs, ResultId::Sr(slot))
            && let Some(x) = value(vol)
        {
            let name = if slot == Slot::A { "SR" } else { "SR (B)" };
            if x.is_finite() {
                // In file units as exported: upscale mode maps back as `deltawkv upscale` does.
                let file = if p.gt.is_none() {
                    p.intensity.from_network(x)
                } else {
                    x * p.norm
                };
                parts.push(format!("{name} = {file:.1}"));
            } else {
                parts.push(format!("{name} = pending"));
            }
        }
    }
    if let Some(g) = &p.gt
        && let Some(x) = value(g)
    {
        parts.push(format!("GT = {:.1}", x * p.norm));
    }
    ui.label(parts.join("   |   "));
}

/// The help window listing every shortcut.
pub fn help_window(v: &mut Viewer, ctx: &egui::Context) {
    let mut open = v.show_help;
    egui::Window::new("Keyboard shortcuts")
        .open(&mut open)
        .collapsible(false)
        .resizable(false)
        .default_width(520.0)
        .show(ctx, |ui| {
            egui::Grid::new("shortcuts")
                .num_columns(2)
                .striped(true)
                .show(ui, |ui| {
                    for s in SHORTCUTS {
                        ui.label(RichText::new(s.keys).monospace().strong());
                        ui.label(s.action);
                        ui.end_row();
                    }
                });
            ui.separator();
            ui.weak(
                "Display: canonical RAS volume, radiological convention by default (patient's \
                 right on the screen's left in axial and coronal slices; anterior on the left in \
                 sagittal slices); letters on the pane edges name the directions.",
            );
        });
    v.show_help = open;
}

/// The series picker for a DICOM folder holding several series.
pub fn series_window(v: &mut Viewer, ctx: &egui::Context) {
    let Some(choice) = v.series_choice.clone() else {
        return;
    };
    let mut picked = None;
    let mut open = true;
    egui::Window::new("Choose a DICOM series")
        .open(&mut open)
        .collapsible(false)
        .show(ctx, |ui| {
            ui.label(choice.folder.display().to_string());
            egui::Grid::new("series")
                .num_columns(4)
                .striped(true)
                .show(ui, |ui| {
                    for s in &choice.series {
                        if ui.button("open").clicked() {
                            picked = Some(s.uid.clone());
                        }
                        let desc = if s.description.is_empty() {
                            "(no description)"
                        } else {
                            s.description.as_str()
                        };
                        ui.label(desc);
                        ui.label(format!(
                            "{} {}x{}x{}",
                            s.modality, s.dims[0], s.dims[1], s.dims[2]
                        ));
                        ui.label(format!("{} files", s.files));
                        ui.end_row();
                    }
                });
        });
    if let Some(uid) = picked {
        v.open(choice.folder.clone(), Some(uid));
    } else if !open {
        v.series_choice = None;
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
