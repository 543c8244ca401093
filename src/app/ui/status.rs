//! The bottom and message panels: messages, inference progress, the per-slice PSNR plot and
//! the status line with the cursor readout.

use egui::{Color32, RichText, Ui};
use egui_plot::{Line, Plot, PlotPoints, VLine};

use crate::app::backend;
use crate::app::geometry::{axis_label, voxel_to_world};
use crate::app::layout::result_volume;
use crate::app::metrics_cache::{ResultId, Slot};
use crate::app::runs::RunState;
use crate::app::viewer::Viewer;

/// The message panel (errors and notes), with dismiss buttons.
pub fn messages(v: &mut Viewer, ui: &mut Ui) {
    let mut remove = None;
    for (i, m) in v.messages().iter().enumerate() {
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
        v.dismiss_message(i);
    }
}

/// Progress bars of running inference, with cancel buttons.
pub fn progress(v: &mut Viewer, ui: &mut Ui) {
    for slot in Slot::ALL {
        let Some(run) = v.run(slot) else {
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
    // The PACS windows show their own progress.
    if !v.pacs().open_window && !v.pacs().nodes_window {
        super::pacs_progress(v, ui);
    }
    if let Some(t) = v.document().preparing() {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label(format!(
                "preparing LR, GT and baselines ({:.1} s)",
                t.elapsed().as_secs_f32()
            ));
        });
    }
    if let Some((p, t)) = v.document().loading() {
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
    let Some(p) = v.prepared().cloned() else {
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
                .metrics()
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
    let current = (v.crosshair().axis == sr_axis).then(|| v.crosshair().slice() as f64 + 1.0);
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
    let mut s = format!("device: {}", backend::device_label(v.settings().device));
    for slot in Slot::ALL {
        let Some(run) = v.run(slot) else {
            continue;
        };
        if slot == Slot::B && !v.settings().compare_b {
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
    let (Some(p), Some(vox)) = (v.prepared(), v.navigation().hover()) else {
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
        if let Some(vol) = result_volume(p, v.inference().runs(), ResultId::Sr(slot))
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
