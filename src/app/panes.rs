//! The linked pane grid: each pane draws its slice through the GPU display shader, with the
//! crosshair, orientation letters and titles on top, and turns mouse input into changes of the
//! shared navigation state (crosshair, slice, zoom, pan, window/level).

use egui::{
    Align2, Color32, FontId, PointerButton, Pos2, Rect, Sense, Stroke, Ui, Vec2, pos2, vec2,
};

use super::colormap::Colormap;
use super::geometry::{SliceLayout, axis_label, plane_to_screen, screen_to_plane, to_index};
use super::layout::{MapKind, PaneEmpty, PaneKind};
use super::metrics_cache::Slot;
use super::render::{DisplayParams, SliceCallback, slice_shape};
use super::runs::RunState;
use super::viewer::Viewer;

/// Gap between panes, points.
const GAP: f32 = 4.0;
/// Width of the colour bar strip next to the map row, points.
const BAR_WIDTH: f32 = 78.0;
/// Colour of non-finite voxels (pending SR rows in cross-sections).
const NAN_COLOR: [f32; 4] = [0.10, 0.12, 0.20, 1.0];
const CROSSHAIR: Color32 = Color32::from_rgba_premultiplied(200, 160, 0, 150);
const LETTER: Color32 = Color32::from_rgb(255, 200, 60);

/// Physical size (mm) of the slice plane of the current axis.
fn plane_size_mm(v: &Viewer) -> Option<(Vec2, usize, usize)> {
    let p = v.prepared()?;
    let (ca, ra) = v.crosshair().axis.in_plane();
    let d = p.grid.dims;
    let s = p.grid.spacing;
    Some((
        vec2((d[ca] as f64 * s[ca]) as f32, (d[ra] as f64 * s[ra]) as f32),
        d[ca],
        d[ra],
    ))
}

fn shadow_text(
    painter: &egui::Painter,
    pos: Pos2,
    align: Align2,
    text: &str,
    size: f32,
    color: Color32,
) {
    let font = FontId::proportional(size);
    painter.text(
        pos + vec2(1.0, 1.0),
        align,
        text,
        font.clone(),
        Color32::BLACK,
    );
    painter.text(pos, align, text, font, color);
}

/// Draws the pane grid into `rect`; with `interactive` it also handles the mouse.
pub fn pane_grid(v: &mut Viewer, ui: &mut Ui, rect: Rect, interactive: bool) {
    v.navigation_mut().set_panes_size(rect.size());
    let rows = v.pane_rows();
    let painter = ui.painter_at(rect);
    if rows.is_empty() {
        let msg = if let Some((p, _)) = v.document().loading() {
            format!("loading {} ...", p.display())
        } else if v.document().preparing().is_some() {
            "preparing LR, ground truth and baselines ...".to_string()
        } else if v.dialogs().series_choice().is_some() {
            "choose a series".to_string()
        } else {
            "open a volume: File > Open (Ctrl+O), or drop a file or DICOM folder here".to_string()
        };
        painter.text(
            rect.center(),
            Align2::CENTER_CENTER,
            msg,
            FontId::proportional(16.0),
            Color32::GRAY,
        );
        return;
    }
    let n_rows = rows.len() as f32;
    let has_map_row = rows.len() > 1;
    let row_h = (rect.height() - GAP * (n_rows - 1.0)) / n_rows;
    let mut slot = 0u32;
    for (r, row) in rows.iter().enumerate() {
        let top = rect.min.y + r as f32 * (row_h + GAP);
        let is_map_row = has_map_row && r == 1;
        let width = if is_map_row {
            rect.width() - BAR_WIDTH - GAP
        } else {
            rect.width()
        };
        // Map panes sit under the panes of the same result: same column width as the top row.
        let cols = rows.first().map(|t| t.len()).unwrap_or(1).max(row.len()) as f32;
        let col_w = if is_map_row {
            (rect.width() - GAP * (cols - 1.0)) / cols
        } else {
            (width - GAP * (row.len() as f32 - 1.0)) / row.len() as f32
        };
        for (c, kind) in row.iter().enumerate() {
            let left = rect.min.x + c as f32 * (col_w + GAP);
            let pane = Rect::from_min_size(pos2(left, top), vec2(col_w, row_h));
            draw_pane(v, ui, pane, *kind, slot, interactive);
            slot += 1;
        }
        if is_map_row {
            let used = row.len() as f32 * (col_w + GAP);
            let bar =
                Rect::from_min_max(pos2(rect.min.x + used, top), pos2(rect.max.x, top + row_h));
            if let Some(kind) = row.first() {
                colour_bar(v, ui, bar, *kind);
            }
        }
    }
}

/// Window and colour map a pane kind is drawn with.
fn pane_display(v: &Viewer, kind: PaneKind) -> ((f32, f32), Colormap) {
    let (nav, settings) = (v.navigation(), v.settings());
    let diff = nav.diff_scale();
    match kind {
        PaneKind::Map(MapKind::AbsDiff | MapKind::Residual, _) => {
            ((0.0, diff), settings.map_colormap)
        }
        PaneKind::Map(MapKind::Signed, _) => ((-diff, diff), Colormap::CoolWarm),
        PaneKind::Map(MapKind::Ssim, _) => ((0.0, 1.0), settings.map_colormap),
        _ => (nav.window().range(), settings.intensity_colormap),
    }
}

fn draw_pane(
    v: &mut Viewer,
    ui: &mut Ui,
    rect: Rect,
    kind: PaneKind,
    slot: u32,
    interactive: bool,
) {
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 0.0, Color32::BLACK);
    let Some((size_mm, cols, rows)) = plane_size_mm(v) else {
        return;
    };
    let axis = v.crosshair().axis;
    let layout = SliceLayout::new(axis, v.settings().convention);
    let image = v.navigation().view().image_rect(rect, size_mm);
    let (window, colormap) = pane_display(v, kind);

    let presentation = v.navigation().presentation();
    let big = if presentation { 22.0 } else { 13.0 };
    match v.pane_image(kind) {
        Ok(img) if v.gpu_display() => {
            let params = DisplayParams {
                image_rect: image,
                window,
                colormap,
                flip_cols: layout.flip_cols,
                flip_rows: layout.flip_rows,
                bilinear: v.settings().smooth_display,
                nan_color: NAN_COLOR,
            };
            painter.add(slice_shape(
                rect,
                SliceCallback {
                    slot,
                    image: img,
                    params,
                },
            ));
        }
        Ok(_) => {
            shadow_text(
                &painter,
                rect.center(),
                Align2::CENTER_CENTER,
                "no wgpu renderer: slices cannot be drawn",
                big,
                Color32::LIGHT_RED,
            );
        }
        Err(e) => {
            let text = match e {
                PaneEmpty::NoGroundTruth => "no ground truth in upscale mode".to_string(),
                PaneEmpty::NoRun => "no checkpoint: Checkpoints > Open".to_string(),
                PaneEmpty::Pending => pending_text(v, kind),
                PaneEmpty::Error(m) => m,
            };
            shadow_text(
                &painter,
                rect.center(),
                Align2::CENTER_CENTER,
                &text,
                big,
                Color32::LIGHT_GRAY,
            );
        }
    }

    // Crosshair through the centre of the crosshair voxel.
    let (cc, cr) = v.crosshair().in_plane();
    let c = plane_to_screen(cc, cr, image, cols, rows, &layout);
    let stroke = Stroke::new(1.0, CROSSHAIR);
    painter.line_segment([pos2(c.x, rect.min.y), pos2(c.x, rect.max.y)], stroke);
    painter.line_segment([pos2(rect.min.x, c.y), pos2(rect.max.x, c.y)], stroke);

    // Orientation letters at the pane edges.
    let l = layout.letters();
    let m = 6.0;
    let ls = big + 2.0;
    shadow_text(
        &painter,
        pos2(rect.min.x + m, rect.center().y),
        Align2::LEFT_CENTER,
        &l.left.to_string(),
        ls,
        LETTER,
    );
    shadow_text(
        &painter,
        pos2(rect.max.x - m, rect.center().y),
        Align2::RIGHT_CENTER,
        &l.right.to_string(),
        ls,
        LETTER,
    );
    shadow_text(
        &painter,
        pos2(rect.center().x, rect.min.y + m),
        Align2::CENTER_TOP,
        &l.top.to_string(),
        ls,
        LETTER,
    );
    shadow_text(
        &painter,
        pos2(rect.center().x, rect.max.y - m),
        Align2::CENTER_BOTTOM,
        &l.bottom.to_string(),
        ls,
        LETTER,
    );

    // Title and slice position.
    let mut title = kind.title();
    if kind == PaneKind::Lr {
        title = format!("LR ({})", v.settings().lr_interp.as_str());
    }
    if let PaneKind::Sr(s) = kind
        && v.run(s).is_some_and(|r| r.consistent_shown)
    {
        title.push_str(" + DC");
    }
    if v.navigation().flip() && kind == PaneKind::Gt && !presentation {
        title.push_str("  (flipped: F)");
    }
    shadow_text(
        &painter,
        rect.min + vec2(m, m),
        Align2::LEFT_TOP,
        &title,
        big + 2.0,
        Color32::WHITE,
    );
    let pos = format!(
        "{} {}/{}",
        axis_label(axis),
        v.crosshair().slice() + 1,
        v.crosshair().slice_count()
    );
    shadow_text(
        &painter,
        pos2(rect.max.x - m, rect.min.y + m),
        Align2::RIGHT_TOP,
        &pos,
        big,
        Color32::LIGHT_GRAY,
    );
    if let PaneKind::Sr(s) = kind
        && let Some(run) = v.run(s)
    {
        shadow_text(
            &painter,
            pos2(rect.min.x + m, rect.max.y - m),
            Align2::LEFT_BOTTOM,
            &run.checkpoint,
            big - 2.0,
            Color32::LIGHT_GRAY,
        );
    }

    if interactive {
        interact(v, ui, rect, image, cols, rows, &layout, slot, kind);
    }
}

fn pending_text(v: &Viewer, kind: PaneKind) -> String {
    let slot = match kind {
        PaneKind::Sr(s) => s,
        PaneKind::Map(_, super::metrics_cache::ResultId::Sr(s)) => s,
        _ => Slot::A,
    };
    match v.run(slot) {
        Some(run) => match &run.state {
            RunState::Starting => "starting the engine ...".to_string(),
            RunState::Running => format!("upscaling ... {}/{} slices", run.n_done, run.done.len()),
            RunState::Failed(e) => format!("SR failed: {e}"),
            RunState::Cancelled => "cancelled: Checkpoints > Restart inference".to_string(),
            RunState::Finished(_) => "not computed".to_string(),
        },
        None => "no SR run".to_string(),
    }
}

#[allow(clippy::too_many_arguments)]
fn interact(
    v: &mut Viewer,
    ui: &mut Ui,
    rect: Rect,
    image: Rect,
    cols: usize,
    rows: usize,
    layout: &SliceLayout,
    slot: u32,
    kind: PaneKind,
) {
    let id = egui::Id::unique(("deltawkv-pane", slot));
    let resp = ui.interact(rect, id, Sense::click_and_drag());
    let title = kind.title();
    resp.widget_info(|| {
        egui::WidgetInfo::labeled(egui::Role::Image, true, format!("pane {title}"))
    });
    let (shift, primary_down) = ui.input(|i| (i.modifiers.shift, i.pointer.primary_down()));
    let Some((size_mm, _, _)) = plane_size_mm(v) else {
        return;
    };

    // Pan: middle drag, or shift + left drag.
    if resp.dragged_by(PointerButton::Middle) || (shift && resp.dragged_by(PointerButton::Primary))
    {
        v.navigation_mut()
            .view_mut()
            .pan_by(resp.drag_delta(), rect, size_mm);
    } else if resp.is_pointer_button_down_on()
        && primary_down
        && !shift
        && let Some(pos) = resp.interact_pointer_pos()
        && let Some((x, y)) = screen_to_plane(pos, image, cols, rows, layout)
    {
        v.set_in_plane(x, y);
    }

    // Window/level (or the map scale) by right drag.
    if resp.dragged_by(PointerButton::Secondary) {
        let d = resp.drag_delta();
        match kind {
            PaneKind::Map(MapKind::AbsDiff | MapKind::Signed | MapKind::Residual, _) => {
                v.navigation_mut().drag_diff_scale(d.x, d.y);
            }
            PaneKind::Map(MapKind::Ssim, _) => {}
            _ => v.navigation_mut().drag_window(d.x, d.y),
        }
    }

    if let Some(pos) = resp.hover_pos() {
        // The voxel under the mouse, for the readout.
        let hover = screen_to_plane(pos, image, cols, rows, layout).map(|(x, y)| {
            let (ca, ra) = v.crosshair().axis.in_plane();
            let mut vox = v.crosshair().voxel;
            vox[ca] = to_index(x, cols);
            vox[ra] = to_index(y, rows);
            vox
        });
        v.navigation_mut().set_hover_next(hover);
        // Ctrl+wheel (egui's zoom gesture) zooms about the mouse; the plain wheel steps slices.
        let zoom = ui.input(|i| i.zoom_delta());
        if (zoom - 1.0).abs() > 1e-4 {
            v.navigation_mut()
                .view_mut()
                .zoom_about(zoom, pos, rect, size_mm);
        }
        let steps = ui.input(|i| {
            let mut lines = 0.0f32;
            let mut points = 0.0f32;
            for e in &i.events {
                if let egui::Event::MouseWheel {
                    unit,
                    delta,
                    modifiers,
                    ..
                } = e
                {
                    if modifiers.ctrl || modifiers.command {
                        continue;
                    }
                    match unit {
                        egui::MouseWheelUnit::Line => lines += delta.y,
                        egui::MouseWheelUnit::Page => lines += delta.y * 10.0,
                        egui::MouseWheelUnit::Point => points += delta.y,
                    }
                }
            }
            (lines, points)
        });
        let mut step = 0i64;
        if steps.0 != 0.0 {
            step += if steps.0.abs() < 1.0 {
                steps.0.signum() as i64
            } else {
                steps.0.round() as i64
            };
        }
        if steps.1 != 0.0 {
            step += v.navigation_mut().wheel_steps(steps.1);
        }
        if step != 0 {
            v.step_slice(step);
        }
    }
}

/// A vertical colour bar with its scale, for the map row.
fn colour_bar(v: &Viewer, ui: &mut Ui, rect: Rect, kind: PaneKind) {
    let painter = ui.painter_at(rect);
    let ((lo, hi), cm) = pane_display(v, kind);
    let norm = v.prepared().map(|p| p.norm).unwrap_or(1.0);
    let bar = Rect::from_min_max(
        pos2(rect.min.x + 6.0, rect.min.y + 24.0),
        pos2(rect.min.x + 24.0, rect.max.y - 24.0),
    );
    if bar.height() <= 4.0 {
        return;
    }
    let lut = cm.lut();
    let n = 64;
    let mut mesh = egui::Mesh::default();
    for i in 0..=n {
        let t = i as f32 / n as f32;
        let y = bar.max.y - t * bar.height();
        let c = lut
            .get(Colormap::lut_index(t))
            .copied()
            .unwrap_or([0, 0, 0, 255]);
        let col = Color32::from_rgb(c[0], c[1], c[2]);
        let base = mesh.vertices.len() as u32;
        mesh.colored_vertex(pos2(bar.min.x, y), col);
        mesh.colored_vertex(pos2(bar.max.x, y), col);
        if i > 0 {
            mesh.add_triangle(base - 2, base - 1, base);
            mesh.add_triangle(base - 1, base, base + 1);
        }
    }
    painter.add(egui::Shape::mesh(mesh));
    painter.rect_stroke(
        bar,
        0.0,
        Stroke::new(1.0, Color32::GRAY),
        egui::StrokeKind::Outside,
    );
    let (title, fmt): (&str, Box<dyn Fn(f32) -> String>) = match kind {
        PaneKind::Map(MapKind::Ssim, _) => ("SSIM", Box::new(|x: f32| format!("{x:.2}"))),
        PaneKind::Map(MapKind::Signed, _) => {
            ("error", Box::new(move |x: f32| format!("{:+.0}", x * norm)))
        }
        PaneKind::Map(MapKind::Residual, _) => (
            "|x - DC(x)|",
            Box::new(move |x: f32| format!("{:.0}", x * norm)),
        ),
        _ => (
            "|error|",
            Box::new(move |x: f32| format!("{:.0}", x * norm)),
        ),
    };
    let small = FontId::proportional(11.0);
    painter.text(
        pos2(rect.min.x + 4.0, rect.min.y + 4.0),
        Align2::LEFT_TOP,
        title,
        small.clone(),
        Color32::WHITE,
    );
    for (t, val) in [(0.0, lo), (0.5, 0.5 * (lo + hi)), (1.0, hi)] {
        let y = bar.max.y - t * bar.height();
        painter.line_segment(
            [pos2(bar.max.x, y), pos2(bar.max.x + 4.0, y)],
            Stroke::new(1.0, Color32::GRAY),
        );
        painter.text(
            pos2(bar.max.x + 6.0, y),
            Align2::LEFT_CENTER,
            fmt(val),
            small.clone(),
            Color32::LIGHT_GRAY,
        );
    }
    painter.text(
        pos2(rect.min.x + 4.0, rect.max.y - 4.0),
        Align2::LEFT_BOTTOM,
        "shared scale",
        small,
        Color32::GRAY,
    );
}
