//! The PACS windows: File > Open from PACS (query, studies, series, retrieve with progress and
//! Cancel) and File > PACS nodes (the nodes kept in the settings). They only read and change the
//! viewer's state; every network operation runs on a worker thread.

use egui::{RichText, Ui};

use crate::app::settings::PacsNode;
use crate::app::viewer::{PacsOpKind, Viewer};
use crate::pacs::Match;

/// `Some(s)` or a dash.
fn or_dash(s: &Option<String>) -> String {
    s.clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".into())
}

/// A DICOM date `YYYYMMDD` as `YYYY-MM-DD` (other text unchanged).
fn date(s: &Option<String>) -> String {
    match s.as_deref() {
        Some(d) if d.len() == 8 && d.chars().all(|c| c.is_ascii_digit()) => {
            format!("{}-{}-{}", &d[0..4], &d[4..6], &d[6..8])
        }
        _ => or_dash(s),
    }
}

fn count(n: Option<usize>) -> String {
    n.map(|n| n.to_string()).unwrap_or_else(|| "-".into())
}

/// The node picker: a combo box over the settings' nodes, and a button to edit them.
fn node_picker(v: &mut Viewer, ui: &mut Ui) {
    ui.horizontal(|ui| {
        ui.label("PACS");
        let labels: Vec<String> = v
            .settings()
            .pacs_nodes
            .iter()
            .map(PacsNode::label)
            .collect();
        let mut sel = v.settings().pacs_selected;
        let shown = labels
            .get(sel)
            .cloned()
            .unwrap_or_else(|| "(no node)".into());
        egui::ComboBox::from_id_salt("pacs node")
            .selected_text(shown)
            .show_ui(ui, |ui| {
                for (i, l) in labels.iter().enumerate() {
                    ui.selectable_value(&mut sel, i, l);
                }
            });
        v.settings_mut().pacs_selected = sel;
        if ui.button("PACS nodes...").clicked() {
            v.pacs_mut().nodes_window = true;
        }
    });
}

/// The operation under way: a progress bar (instances) or a spinner, and Cancel.
pub fn pacs_progress(v: &mut Viewer, ui: &mut Ui) {
    let Some(op) = v.pacs().op().cloned() else {
        return;
    };
    let mut cancel = false;
    ui.horizontal(|ui| {
        let secs = op.started.elapsed().as_secs_f32();
        let text = format!("{} ({}, {secs:.1} s)", op.kind.describe(), op.node);
        match op.progress {
            Some(p) => {
                let frac = match p.total {
                    Some(t) if t > 0 => p.done as f32 / t as f32,
                    _ => 0.0,
                };
                let of = p.total.map(|t| format!("/{t}")).unwrap_or_default();
                ui.add(
                    egui::ProgressBar::new(frac)
                        .text(format!("{text}: {}{of} instances", p.done))
                        .desired_width(420.0)
                        .animate(true),
                );
            }
            None => {
                ui.spinner();
                ui.label(text);
            }
        }
        let cancellable = matches!(op.kind, PacsOpKind::Retrieve { .. } | PacsOpKind::Send);
        if cancellable {
            cancel = ui.button("Cancel").clicked();
        }
    });
    if cancel {
        v.pacs_cancel();
    }
}

/// A labelled single-line text field (the label names it for screen readers and tests).
fn field(ui: &mut Ui, label: &str, value: &mut String, hint: &str) -> bool {
    let l = ui.label(label);
    let r = ui
        .add(
            egui::TextEdit::singleline(value)
                .hint_text(hint)
                .desired_width(220.0),
        )
        .labelled_by(l.id);
    ui.end_row();
    r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter))
}

/// File > Open from PACS.
pub fn pacs_window(v: &mut Viewer, ctx: &egui::Context) {
    if !v.pacs().open_window {
        return;
    }
    let mut open = true;
    egui::Window::new("Open from PACS")
        .open(&mut open)
        .collapsible(false)
        .default_width(760.0)
        .show(ctx, |ui| {
            node_picker(v, ui);
            ui.separator();
            let mut search = false;
            egui::Grid::new("pacs query").num_columns(2).show(ui, |ui| {
                let q = &mut v.pacs_mut().query;
                search |= field(ui, "Patient ID", &mut q.patient_id, "any (* and ? allowed)");
                search |= field(
                    ui,
                    "Patient name",
                    &mut q.patient_name,
                    "e.g. Doe^John or Doe*",
                );
                search |= field(
                    ui,
                    "Study date",
                    &mut q.study_date,
                    "YYYYMMDD or YYYYMMDD-YYYYMMDD",
                );
            });
            let idle = v.pacs().op().is_none();
            ui.horizontal(|ui| {
                search |= ui.add_enabled(idle, egui::Button::new("Search")).clicked();
                if ui.add_enabled(idle, egui::Button::new("Echo")).clicked() {
                    v.pacs_echo();
                }
            });
            if search && idle {
                v.pacs_search();
            }
            pacs_progress(v, ui);
            if let Some((text, error)) = v.pacs().status.clone() {
                let t = RichText::new(text);
                ui.label(if error {
                    t.color(ui.visuals().error_fg_color)
                } else {
                    t
                });
            }
            ui.separator();
            studies_table(v, ui, idle);
            if v.pacs().study.is_some() {
                ui.separator();
                series_table(v, ui, idle);
            }
        });
    if !open {
        v.pacs_mut().open_window = false;
    }
}

/// One scrollable, striped grid of C-FIND matches (`grid`: its id, height and column headers): a
/// button per row (`button` gives its label and, for a selectable one, whether it shows as
/// selected), then the text cells `cells` gives. Returns the index of the row whose button was
/// clicked.
fn match_grid(
    ui: &mut Ui,
    (id, max_height, headers): (&str, f32, &[&str]),
    rows: &[Match],
    idle: bool,
    button: impl Fn(&Match) -> (&'static str, Option<bool>),
    cells: impl Fn(&Match) -> Vec<String>,
) -> Option<usize> {
    let mut chosen = None;
    egui::ScrollArea::vertical()
        .id_salt(id)
        .max_height(max_height)
        .show(ui, |ui| {
            egui::Grid::new((id, "grid"))
                .num_columns(headers.len() + 1)
                .striped(true)
                .show(ui, |ui| {
                    ui.label("");
                    for h in headers {
                        ui.label(RichText::new(*h).weak());
                    }
                    ui.end_row();
                    for (i, m) in rows.iter().enumerate() {
                        let b = match button(m) {
                            (label, Some(on)) => egui::Button::selectable(on, label),
                            (label, None) => egui::Button::new(label),
                        };
                        if ui.add_enabled(idle, b).clicked() {
                            chosen = Some(i);
                        }
                        for c in cells(m) {
                            ui.label(c);
                        }
                        ui.end_row();
                    }
                });
        });
    chosen
}

fn studies_table(v: &mut Viewer, ui: &mut Ui, idle: bool) {
    let studies: Vec<Match> = v.pacs().studies.clone();
    if studies.is_empty() {
        return;
    }
    ui.label(RichText::new("Studies").strong());
    let current = v.pacs().study.clone();
    let chosen = match_grid(
        ui,
        (
            "pacs studies",
            200.0,
            &[
                "date",
                "patient ID",
                "patient",
                "description",
                "modalities",
                "images",
            ],
        ),
        &studies,
        idle,
        |s| {
            let on = current.as_deref() == Some(s.study_instance_uid.as_str());
            ("series", Some(on))
        },
        |s| {
            vec![
                date(&s.study_date),
                or_dash(&s.patient_id),
                or_dash(&s.patient_name),
                or_dash(&s.study_description),
                or_dash(&s.modality),
                count(s.instances),
            ]
        },
    );
    if let Some(i) = chosen {
        v.pacs_list_series(&studies[i].study_instance_uid);
    }
}

fn series_table(v: &mut Viewer, ui: &mut Ui, idle: bool) {
    let series: Vec<Match> = v.pacs().series.clone();
    ui.label(RichText::new("Series").strong());
    if series.is_empty() {
        ui.weak("(none)");
        return;
    }
    let chosen = match_grid(
        ui,
        (
            "pacs series",
            220.0,
            &["number", "description", "modality", "date", "images"],
        ),
        &series,
        idle,
        |_| ("Open", None),
        |s| {
            vec![
                s.series_number
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into()),
                or_dash(&s.series_description),
                or_dash(&s.modality),
                date(&s.date),
                count(s.instances),
            ]
        },
    );
    if let Some(uid) = chosen.and_then(|i| series[i].series_instance_uid.clone()) {
        v.pacs_retrieve(&uid);
    }
}

/// An optional path as a text field (empty: none).
fn path_field(ui: &mut Ui, label: &str, value: &mut Option<std::path::PathBuf>, hint: &str) {
    let mut text = value
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let l = ui.label(label);
    let r = ui
        .add(
            egui::TextEdit::singleline(&mut text)
                .hint_text(hint)
                .desired_width(260.0),
        )
        .labelled_by(l.id);
    if r.changed() {
        *value = Some(text.trim())
            .filter(|t| !t.is_empty())
            .map(std::path::PathBuf::from);
    }
    ui.end_row();
}

/// File > PACS nodes: the nodes kept in the settings, each editable.
pub fn pacs_nodes_window(v: &mut Viewer, ctx: &egui::Context) {
    if !v.pacs().nodes_window {
        return;
    }
    let mut open = true;
    let mut remove = None;
    egui::Window::new("PACS nodes")
        .open(&mut open)
        .collapsible(false)
        .default_width(520.0)
        .show(ctx, |ui| {
            let n = v.settings().pacs_nodes.len();
            for i in 0..n {
                let selected = v.settings().pacs_selected == i;
                ui.horizontal(|ui| {
                    if ui.radio(selected, "use").clicked() {
                        v.settings_mut().pacs_selected = i;
                    }
                    if ui.button("Remove").clicked() {
                        remove = Some(i);
                    }
                });
                let Some(node) = v.settings_mut().pacs_nodes.get_mut(i) else {
                    continue;
                };
                egui::Grid::new(("pacs node", i))
                    .num_columns(2)
                    .show(ui, |ui| {
                        field(ui, "Name", &mut node.name, "");
                        field(
                            ui,
                            "AE title",
                            &mut node.ae_title,
                            "the PACS's, e.g. ORTHANC",
                        );
                        field(ui, "Host", &mut node.host, "name or IP address");
                        ui.label("Port");
                        ui.add(egui::DragValue::new(&mut node.port).range(1..=65535));
                        ui.end_row();
                        field(
                            ui,
                            "Our AE title",
                            &mut node.calling_ae,
                            "the PACS must know it",
                        );
                        ui.label("Timeout (s)");
                        ui.add(
                            egui::DragValue::new(&mut node.timeout_secs)
                                .range(1.0..=3600.0)
                                .speed(1.0),
                        );
                        ui.end_row();
                        ui.label("TLS");
                        ui.checkbox(&mut node.tls, "DICOM over TLS");
                        ui.end_row();
                        if node.tls {
                            path_field(ui, "CA (PEM)", &mut node.tls_ca, "the system's roots");
                            path_field(ui, "Our certificate", &mut node.tls_cert, "none");
                            path_field(ui, "Our key", &mut node.tls_key, "none");
                        }
                    });
                if let Err(e) = node.client() {
                    ui.colored_label(ui.visuals().error_fg_color, e);
                }
                ui.separator();
            }
            ui.horizontal(|ui| {
                if ui.button("Add node").clicked() {
                    let s = v.settings_mut();
                    s.pacs_nodes.push(PacsNode {
                        name: format!("PACS {}", s.pacs_nodes.len() + 1),
                        ..PacsNode::default()
                    });
                }
                let idle = v.pacs().op().is_none() && !v.settings().pacs_nodes.is_empty();
                if ui
                    .add_enabled(idle, egui::Button::new("Test (C-ECHO)"))
                    .clicked()
                {
                    v.pacs_echo();
                }
            });
            pacs_progress(v, ui);
            if let Some((text, error)) = v.pacs().status.clone() {
                let t = RichText::new(text);
                ui.label(if error {
                    t.color(ui.visuals().error_fg_color)
                } else {
                    t
                });
            }
        });
    if let Some(i) = remove {
        let s = v.settings_mut();
        if i < s.pacs_nodes.len() {
            s.pacs_nodes.remove(i);
        }
        if s.pacs_selected >= s.pacs_nodes.len() {
            s.pacs_selected = s.pacs_nodes.len().saturating_sub(1);
        }
    }
    if !open {
        v.pacs_mut().nodes_window = false;
    }
}
