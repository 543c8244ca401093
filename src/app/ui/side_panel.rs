//! The side panel: metrics table, SR runs, display controls and volume facts.

use egui::{RichText, Ui};

use crate::app::colormap::Colormap;
use crate::app::geometry::axis_label;
use crate::app::jobs::DialogPurpose;
use crate::app::metrics_cache::{ResultId, Slot};
use crate::app::runs::RunState;
use crate::app::session::{Mode, SrAxisChoice};
use crate::app::viewer::Viewer;
use crate::app::windowing::{WindowLevel, WindowPreset};
use crate::degrade::Baseline;
use crate::volume::Axis;

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
    let (Some(l), Some(p)) = (v.document().loaded(), v.prepared()) else {
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
    let norm = v.prepared().map(|p| p.norm).unwrap_or(1.0);
    let window = v.navigation().window();
    let (lo, hi) = window.range();
    let mut level = window.center * norm;
    let mut width = window.width * norm;
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
            v.navigation_mut().set_window(WindowLevel {
                center: level / norm,
                width: (width / norm).max(1e-4),
            });
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
        .selected_text(v.settings().intensity_colormap.label())
        .show_ui(ui, |ui| {
            for c in [Colormap::Gray, Colormap::Viridis, Colormap::Inferno] {
                ui.selectable_value(&mut v.settings_mut().intensity_colormap, c, c.label());
            }
        });
    if v.settings().mode == Mode::Simulate {
        egui::ComboBox::from_label("map colours")
            .selected_text(v.settings().map_colormap.label())
            .show_ui(ui, |ui| {
                for c in Colormap::UNSIGNED {
                    ui.selectable_value(&mut v.settings_mut().map_colormap, c, c.label());
                }
            });
        egui::ComboBox::from_label("map baseline")
            .selected_text(v.settings().map_baseline.as_str())
            .show_ui(ui, |ui| {
                for b in [Baseline::Bicubic, Baseline::Zerofill, Baseline::Nearest] {
                    ui.selectable_value(&mut v.settings_mut().map_baseline, b, b.as_str());
                }
            });
        let mut scale = v.navigation().diff_scale() * norm;
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
                v.navigation_mut().set_diff_scale((scale / norm).max(1e-4));
            }
            if ui
                .small_button("auto")
                .on_hover_text("99th percentile of |bicubic - GT|")
                .clicked()
            {
                v.auto_diff_scale();
            }
        });
    }
    super::menus::consistency_controls(v, ui);
    let mut axis_choice = v.settings().sr_axis;
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
    if axis_choice != v.settings().sr_axis {
        v.settings_mut().sr_axis = axis_choice;
        v.reprepare_if_needed();
    }
}

fn checkpoint_info(v: &mut Viewer, ui: &mut Ui) {
    ui.heading("Super-resolution");
    for slot in Slot::ALL {
        if slot == Slot::B && !v.settings().compare_b {
            continue;
        }
        let name = if slot == Slot::A { "A" } else { "B" };
        match v.run(slot) {
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
    let Some(p) = v.prepared().cloned() else {
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
    let axis = v.crosshair().axis;
    let index = v.crosshair().slice();
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
                match v.metrics().get((axis, index, id)) {
                    Some(m) => {
                        ui.monospace(fmt_db(m.psnr));
                        ui.monospace(format!("{:.4}", m.ssim));
                    }
                    None => {
                        if let Some(why) = v.metrics().failure((axis, index, id)) {
                            ui.weak("n/a").on_hover_text(why.to_string());
                            ui.weak("n/a").on_hover_text(why.to_string());
                        } else {
                            ui.weak("-");
                            ui.weak("-");
                        }
                    }
                }
                // While SR A is unfinished, every other result is pooled over the same slices.
                let mask = v
                    .run(Slot::A)
                    .filter(|r| !r.complete())
                    .map(|r| r.done.clone());
                let vm = match id {
                    ResultId::Sr(_) => v.metrics().volume(id),
                    _ => v.metrics().volume_over(id, mask.as_deref()),
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
