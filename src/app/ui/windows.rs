//! Floating windows: the keyboard shortcut list and the DICOM series picker.

use egui::RichText;

use crate::app::settings::SHORTCUTS;
use crate::app::viewer::Viewer;

/// The help window listing every shortcut.
pub fn help_window(v: &mut Viewer, ctx: &egui::Context) {
    let mut open = v.dialogs().show_help();
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
    v.dialogs_mut().set_help(open);
}

/// The series picker for a DICOM folder holding several series.
pub fn series_window(v: &mut Viewer, ctx: &egui::Context) {
    let Some(choice) = v.dialogs().series_choice().cloned() else {
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
        v.dialogs_mut().set_series_choice(None);
    }
}
