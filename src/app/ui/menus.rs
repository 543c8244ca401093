//! The menu bar (File, View, Checkpoints, Help) and the toolbar under it.

use egui::{RichText, Ui};

use crate::app::backend;
use crate::app::geometry::{Convention, axis_label};
use crate::app::jobs::{CheckpointSource, DialogPurpose};
use crate::app::layout::MapKind;
use crate::app::metrics_cache::Slot;
use crate::app::session::Mode;
use crate::app::ui::FrameRequests;
use crate::app::viewer::Viewer;
use crate::degrade::Baseline;
use crate::engine::DeviceChoice;
use crate::model::Degradation;
use crate::volume::Axis;

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
                let recent = v.settings().recent.clone();
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
            if ui.button("Open from PACS...").clicked() {
                v.pacs_mut().open_window = true;
            }
            let node = v.settings().pacs_node().map(|n| n.label());
            let send = ui
                .add_enabled(
                    node.is_some() && v.pacs().op().is_none(),
                    egui::Button::new("Send SR to PACS"),
                )
                .on_hover_text(match &node {
                    Some(n) => format!("the SR as a derived DICOM series, stored on {n}"),
                    None => "no PACS node: add one in PACS nodes...".into(),
                });
            if send.clicked() {
                v.pacs_send_sr();
            }
            if ui.button("PACS nodes...").clicked() {
                v.pacs_mut().nodes_window = true;
            }
            ui.separator();
            if ui.button("Export SR as NIfTI...  (Ctrl+S)").clicked() {
                v.dialog(
                    DialogPurpose::ExportNifti,
                    &format!("{}.nii.gz", v.document().export_stem()),
                );
            }
            if ui
                .button("Export SR as DICOM series...  (Ctrl+Shift+S)")
                .clicked()
            {
                v.dialog(DialogPurpose::ExportDicom, "");
            }
            if ui.button("Save PNG of the panes (2x)...  (F12)").clicked() {
                req.save_png = true;
            }
            if ui.button("Export metrics as CSV...  (Ctrl+E)").clicked() {
                v.dialog(
                    DialogPurpose::ExportCsv,
                    &format!("{}_metrics.csv", v.document().export_stem()),
                );
            }
            if ui.button("Export metrics as JSON...").clicked() {
                v.dialog(
                    DialogPurpose::ExportJson,
                    &format!("{}_metrics.json", v.document().export_stem()),
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
                    .selectable_label(v.crosshair().axis == a, axis_label(a))
                    .clicked()
                {
                    v.set_axis(a);
                }
            }
            ui.separator();
            ui.checkbox(&mut v.settings_mut().show_side_panel, "Side panel");
            ui.checkbox(&mut v.settings_mut().show_plot, "Per-slice PSNR plot");
            ui.checkbox(&mut v.settings_mut().smooth_display, "Smooth display (S)");
            ui.separator();
            consistency_controls(v, ui);
            ui.separator();
            if ui.button("Presentation mode  (F11 / P)").clicked() {
                req.toggle_presentation = true;
            }
            if ui.button("Reset zoom and pan  (0)").clicked() {
                v.navigation_mut().reset_view();
            }
            ui.separator();
            ui.label("Display convention");
            for c in [Convention::Radiological, Convention::Neurological] {
                ui.radio_value(&mut v.settings_mut().convention, c, c.label());
            }
        });
        ui.menu_button("Checkpoints", |ui| checkpoint_menu(v, ui));
        ui.menu_button("Help", |ui| {
            if ui.button("Keyboard shortcuts  (F1)").clicked() {
                v.dialogs_mut().set_help(true);
            }
        });
    });
}

/// The data-consistency toggle and the consistency residual map (View menu, side panel).
pub fn consistency_controls(v: &mut Viewer, ui: &mut Ui) {
    let mut dc = v.settings().data_consistency;
    if ui
        .checkbox(&mut dc, "Data consistency (D)")
        .on_hover_text(
            "show the SR with its central k-space replaced by the measured LR's (k-space LR \
             only), so that degrading it gives the LR back exactly; off: the network's own SR",
        )
        .changed()
    {
        v.set_data_consistency(dc);
    }
    let on = v.settings().map == Some(MapKind::Residual);
    if ui
        .selectable_label(on, "Consistency residual map")
        .on_hover_text(
            "map row: |result - DC(result)| of each result as shown, against the LR: what its \
             central k-space says that the measured LR does not (zero for a data-consistent \
             result)",
        )
        .clicked()
    {
        v.settings_mut().map = if on { None } else { Some(MapKind::Residual) };
    }
}

fn checkpoint_menu(v: &mut Viewer, ui: &mut Ui) {
    for slot in Slot::ALL {
        let name = if slot == Slot::A { "A" } else { "B" };
        ui.label(RichText::new(format!("Checkpoint {name}")).strong());
        if ui.button(format!("Open ({name})...")).clicked() {
            v.dialog(DialogPurpose::Checkpoint(slot), "");
        }
        let scale = v.prepared().map(|p| p.params.scale);
        for f in backend::list_weights() {
            let s = backend::peek_scale(&f).ok();
            let label = format!(
                "{}  ({})",
                f.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                s.map(|s| format!("x{s}")).unwrap_or_else(|| "?".into())
            );
            let current = v
                .inference()
                .checkpoint(slot)
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
    let mut b = v.settings().compare_b;
    if ui
        .add_enabled(
            v.inference().checkpoint(Slot::B).is_some(),
            egui::Checkbox::new(&mut b, "Compare A and B side by side"),
        )
        .changed()
    {
        v.set_compare_b(b);
    }
    ui.separator();
    ui.label("Device");
    let mut dev = v.settings().device;
    for d in [DeviceChoice::Auto, DeviceChoice::Gpu, DeviceChoice::Cpu] {
        ui.radio_value(&mut dev, d, backend::device_label(d));
    }
    if dev != v.settings().device {
        v.set_device(dev);
    }
    ui.separator();
    let mut ens = v.settings().self_ensemble;
    if ui
        .checkbox(&mut ens, "Self-ensemble (8 orientations)")
        .on_hover_text(
            "average the network's SR over the eight flips and transposes of each slice: \
             higher PSNR/SSIM for eight times the inference time (restarts inference)",
        )
        .changed()
    {
        v.set_self_ensemble(ens);
    }
    ui.separator();
    if ui.button("Restart inference").clicked() {
        v.restart_runs();
    }
}

/// The toolbar under the menu: mode, scale, degradation, axis, maps.
pub fn toolbar(v: &mut Viewer, ui: &mut Ui) {
    ui.horizontal_wrapped(|ui| {
        let mut mode = v.settings().mode;
        ui.label("Mode");
        ui.selectable_value(&mut mode, Mode::Simulate, "simulate");
        ui.selectable_value(&mut mode, Mode::Upscale, "upscale");
        if mode != v.settings().mode {
            v.set_mode(mode);
        }
        ui.separator();
        let mut scale = v.settings().scale;
        ui.selectable_value(&mut scale, 2, "x2");
        ui.selectable_value(&mut scale, 4, "x4");
        let mut deg = v.settings().degradation;
        let from_checkpoint = match v.settings().mode {
            Mode::Simulate => None,
            Mode::Upscale => v.inference().checkpoint_degradation(Slot::A),
        };
        if let Some(d) = from_checkpoint {
            ui.label(format!("LR geometry: {} (checkpoint A)", d.as_str()))
                .on_hover_text("in upscale mode the LR sampling geometry is the one checkpoint A was trained on, as in deltawkv upscale");
        } else {
            ui.label(if v.settings().mode == Mode::Simulate {
                "LR by"
            } else {
                "LR geometry"
            });
            ui.selectable_value(&mut deg, Degradation::Kspace, "k-space");
            ui.selectable_value(&mut deg, Degradation::Bicubic, "bicubic");
        }
        if scale != v.settings().scale || deg != v.settings().degradation {
            v.settings_mut().scale = scale;
            v.settings_mut().degradation = deg;
            v.reprepare_if_needed();
        }
        ui.separator();
        for a in [Axis::Axial, Axis::Coronal, Axis::Sagittal] {
            if ui
                .selectable_label(v.crosshair().axis == a, axis_label(a))
                .clicked()
            {
                v.set_axis(a);
            }
        }
        ui.separator();
        ui.label("LR shown");
        ui.selectable_value(&mut v.settings_mut().lr_interp, Baseline::Nearest, "nearest");
        ui.selectable_value(&mut v.settings_mut().lr_interp, Baseline::Bicubic, "bicubic");
        if v.settings().mode == Mode::Simulate {
            ui.separator();
            ui.label("Maps");
            ui.selectable_value(&mut v.settings_mut().map, None, "off");
            // The consistency residual is in View and the side panel (and M cycles to it).
            for m in MapKind::ALL.into_iter().filter(|m| m.needs_gt()) {
                ui.selectable_value(&mut v.settings_mut().map, Some(m), m.label());
            }
            if ui
                .selectable_label(v.navigation().flip(), "flip SR/GT (F)")
                .clicked()
            {
                v.toggle_flip();
            }
        }
    });
}
