//! Exports from plain data: metrics as CSV/JSON, the SR volume in file units, and a PNG of the
//! panes rendered offscreen at twice the screen's pixel density (the caller's pane drawing and
//! the display shader, into a texture on eframe's device). The SR NIfTI is written by
//! `volume::save_nifti` (atomic) on a worker thread.

use std::io::Write;
use std::path::{Path, PathBuf};

use eframe::egui_wgpu::{self, wgpu};
use serde::Serialize;

use super::geometry::axis_label;
use super::metrics_cache::{MetricsCache, ResultId, Slot};
use super::render::DisplayResources;
use super::runs::SrRun;
use super::session::Prepared;
use crate::volume::Volume;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// No temporary file could be made in the target folder.
    #[error("cannot write in {}: {source}", .dir.display())]
    TempFile {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// Writing or renaming into place failed.
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// No prepared session to export from.
    #[error("nothing loaded")]
    NothingLoaded,
    /// Upscale mode: no ground truth, so no metrics.
    #[error("no ground truth in upscale mode: there are no metrics")]
    NoGroundTruth,
    /// Not one volume figure is computed yet.
    #[error("no metrics computed yet")]
    NoMetrics,
    /// The report could not be serialised.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// No SR run in the slot (no checkpoint chosen).
    #[error("no SR result: choose a checkpoint first")]
    NoRun,
    /// The SR run has slices still pending.
    #[error("SR is not finished ({done} of {total} slices); export when it is")]
    Unfinished { done: usize, total: usize },
    /// The SR volume does not fit the stored grid (a broken invariant).
    #[error("internal error: the SR volume does not fit the stored grid")]
    StoredGrid,
    /// The image exceeds the device's texture size limit.
    #[error("cannot render {width}x{height} pixels (limit {limit})")]
    Size { width: u32, height: u32, limit: u32 },
    /// The device failed while rendering.
    #[error("GPU error while rendering: {0}")]
    Gpu(String),
    /// Reading the rendered image back failed.
    #[error("readback failed: {0}")]
    Readback(String),
    /// The image read back has the wrong size.
    #[error("readback size mismatch")]
    ReadbackSize,
    /// The PNG encoder failed.
    #[error("PNG encoding failed: {0}")]
    Png(#[from] image::ImageError),
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|source| ExportError::TempFile {
        dir: dir.to_path_buf(),
        source,
    })?;
    let write = |source| ExportError::Write {
        path: path.to_path_buf(),
        source,
    };
    tmp.write_all(bytes)
        .and_then(|()| tmp.flush())
        .map_err(write)?;
    tmp.persist(path).map_err(|e| write(e.error))?;
    Ok(())
}

/// `path` with `default` appended when its file name ends in none of `accepted` (case-insensitive,
/// e.g. `[".nii.gz", ".nii"]`): file dialogs return the name as typed, without the filter's
/// extension, and the NIfTI writer picks compression from the name.
pub fn with_extension_if_missing(path: PathBuf, accepted: &[&str], default: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if name.is_empty() || accepted.iter().any(|e| name.ends_with(e)) {
        return path;
    }
    let mut s = path.into_os_string();
    s.push(default);
    PathBuf::from(s)
}

/// One row of volume metrics.
#[derive(Clone, Debug, Serialize)]
pub struct VolumeRow {
    pub result: &'static str,
    pub label: String,
    /// dB; `null` when infinite (identical volumes).
    pub psnr: Option<f64>,
    pub ssim: f64,
    /// SR-axis slices included, of `total`.
    pub slices: usize,
    pub total: usize,
}

/// One row of slice metrics (along the SR axis).
#[derive(Clone, Debug, Serialize)]
pub struct SliceRow {
    pub slice: usize,
    pub result: &'static str,
    pub psnr: Option<f64>,
    pub ssim: f64,
    pub mse: f64,
}

/// The metrics of a session, as exported.
#[derive(Clone, Debug, Serialize)]
pub struct MetricsReport {
    pub source: String,
    pub scale: usize,
    pub degradation: &'static str,
    /// Axis along which slices were upscaled and measured.
    pub axis: &'static str,
    /// PSNR data range (volumes normalised to [0, 1] by `normalisation`).
    pub data_range: f64,
    /// File units of 1.0 (the 99.5th percentile of the ground truth).
    pub normalisation: f32,
    pub checkpoint_a: Option<String>,
    pub checkpoint_b: Option<String>,
    pub engine_a: Option<String>,
    /// Whether the SR results are the data-consistent ones (the viewer's D toggle).
    pub data_consistency: bool,
    pub volume: Vec<VolumeRow>,
    pub slices: Vec<SliceRow>,
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// What a metrics report is made from.
pub struct ReportSource<'a> {
    /// The prepared session, if any.
    pub prepared: Option<&'a Prepared>,
    /// The metrics computed so far.
    pub metrics: &'a MetricsCache,
    /// The results reported, in order.
    pub results: &'a [ResultId],
    /// Path of the opened volume.
    pub source: Option<&'a Path>,
    /// The SR runs of slots A and B.
    pub runs: [Option<&'a SrRun>; 2],
}

/// Collects the metrics computed so far (simulate mode only).
pub fn metrics_report(src: &ReportSource<'_>) -> Result<MetricsReport, ExportError> {
    let p = src.prepared.ok_or(ExportError::NothingLoaded)?;
    if p.gt.is_none() {
        return Err(ExportError::NoGroundTruth);
    }
    let mut volume = Vec::new();
    let mut slices = Vec::new();
    for &id in src.results {
        if let Some(vm) = src.metrics.volume(id) {
            volume.push(VolumeRow {
                result: id.key(),
                label: id.label(),
                psnr: finite(vm.psnr),
                ssim: vm.ssim,
                slices: vm.slices,
                total: vm.total,
            });
        }
        for (k, m) in src.metrics.sr_axis_series(id).into_iter().enumerate() {
            if let Some(m) = m {
                slices.push(SliceRow {
                    slice: k,
                    result: id.key(),
                    psnr: finite(m.psnr),
                    ssim: m.ssim,
                    mse: m.mse,
                });
            }
        }
    }
    if volume.is_empty() {
        return Err(ExportError::NoMetrics);
    }
    let run = |s: Slot| src.runs[s.index()];
    Ok(MetricsReport {
        source: src
            .source
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        scale: p.params.scale,
        degradation: p.params.degradation.as_str(),
        axis: axis_label(p.sr_axis),
        data_range: p.data_range(),
        normalisation: p.norm,
        checkpoint_a: run(Slot::A).map(|r| r.checkpoint.clone()),
        checkpoint_b: run(Slot::B).map(|r| r.checkpoint.clone()),
        engine_a: run(Slot::A).and_then(|r| r.engine.clone()),
        data_consistency: run(Slot::A).is_some_and(|r| r.consistent_shown),
        volume,
        slices,
    })
}

/// The SR volume of `run` in file units, for export: on the opened file's own voxel axes
/// (in-plane axes upscaled, slice axis kept; [`Prepared::sr_stored`]) with the affine that
/// keeps each voxel at its world position, so it overlays the input in any viewer (the grid
/// `deltawkv upscale` writes). In upscale mode the values are those `deltawkv upscale` writes
/// (input's intensity scale, not clipped); in simulate mode the clamped SR the metrics
/// measure, times the normalisation factor. `Err` while incomplete.
pub fn sr_volume(prepared: Option<&Prepared>, run: Option<&SrRun>) -> Result<Volume, ExportError> {
    let p = prepared.ok_or(ExportError::NothingLoaded)?;
    let run = run.ok_or(ExportError::NoRun)?;
    if !run.complete() {
        return Err(ExportError::Unfinished {
            done: run.n_done,
            total: run.done.len(),
        });
    }
    let mut v = p
        .reorient
        .to_stored_volume(&run.volume, &p.sr_stored)
        .ok_or(ExportError::StoredGrid)?;
    if p.gt.is_none() {
        // Upscale mode: the network's output on the input's intensity scale, unclipped,
        // exactly as `deltawkv upscale` writes it.
        p.intensity.restore_volume(&mut v);
    } else {
        // Simulate mode: the SR the metrics measure (clamped to [0, 1], as `deltawkv eval`)
        // in file units: 0 to the 99.5th percentile of the opened volume.
        for x in &mut v.data {
            *x *= p.norm;
        }
    }
    let src = p
        .meta
        .source_path
        .as_ref()
        .and_then(|s| s.file_name())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "volume".into());
    v.meta.source_path = None;
    // Data consistency as `deltawkv upscale --data-consistency` applies it.
    let dc = if run.consistent_shown {
        ", data-consistent"
    } else {
        ""
    };
    v.meta.series_description = Some(format!(
        "deltawkv SR x{} ({}{dc}) of {src}",
        p.params.scale, run.checkpoint
    ));
    Ok(v)
}

/// CSV of a report: one row per volume figure, then one per slice.
pub fn metrics_csv(r: &MetricsReport) -> String {
    let f = |x: Option<f64>| x.map(|v| format!("{v:.4}")).unwrap_or_else(|| "inf".into());
    let mut s = String::from("scope,result,slice,psnr_db,ssim,mse_or_slices\n");
    for row in &r.volume {
        s.push_str(&format!(
            "volume,{},,{},{:.6},{}/{}\n",
            row.result,
            f(row.psnr),
            row.ssim,
            row.slices,
            row.total
        ));
    }
    for row in &r.slices {
        s.push_str(&format!(
            "slice,{},{},{},{:.6},{:.8e}\n",
            row.result,
            row.slice,
            f(row.psnr),
            row.ssim,
            row.mse
        ));
    }
    s
}

/// Renders what `draw` draws into the given rectangle (the pane grid) offscreen at
/// `pixels_per_point` into an RGBA image of `size_points * pixels_per_point` pixels.
pub fn render_panes(
    render_state: &egui_wgpu::RenderState,
    size_points: egui::Vec2,
    pixels_per_point: f32,
    mut draw: impl FnMut(&mut egui::Ui, egui::Rect),
) -> Result<image::RgbaImage, ExportError> {
    let device = &render_state.device;
    let queue = &render_state.queue;
    let w = (size_points.x * pixels_per_point).round() as u32;
    let h = (size_points.y * pixels_per_point).round() as u32;
    let max = device.limits().max_texture_dimension_2d;
    if w == 0 || h == 0 || w > max || h > max {
        return Err(ExportError::Size {
            width: w,
            height: h,
            limit: max,
        });
    }
    let ctx = egui::Context::default();
    let mut raw = egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(egui::Pos2::ZERO, size_points)),
        max_texture_side: Some(max as usize),
        ..Default::default()
    };
    // As the windowing integrations do: the density is the viewport's native one.
    if let Some(vp) = raw.viewports.get_mut(&egui::ViewportId::ROOT) {
        vp.native_pixels_per_point = Some(pixels_per_point);
    }
    let mut output = ctx.run_ui(raw, |ui| {
        let rect = ui.max_rect();
        draw(ui, rect);
    });
    let format = wgpu::TextureFormat::Rgba8Unorm;
    let mut renderer =
        egui_wgpu::Renderer::new(device, format, egui_wgpu::RendererOptions::default());
    renderer
        .callback_resources
        .insert(DisplayResources::new(device, queue, format));
    #[expect(
        clippy::iter_over_hash_type,
        reason = "texture updates are independent"
    )]
    for (id, deltas) in output.textures_delta.set.drain() {
        for delta in deltas {
            renderer.update_texture(device, queue, id, &delta);
        }
    }
    // The renderer is dropped with this function: nothing to free.
    output.textures_delta.clear();
    let screen = egui_wgpu::ScreenDescriptor {
        size_in_pixels: [w, h],
        pixels_per_point: output.pixels_per_point,
    };
    let prims = ctx.tessellate(output.shapes, output.pixels_per_point);
    let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("deltawkv png"),
    });
    let user = renderer.update_buffers(device, queue, &mut encoder, &prims, &screen);
    let texture = device.create_texture(&wgpu::TextureDescriptor {
        label: Some("deltawkv png target"),
        size: wgpu::Extent3d {
            width: w,
            height: h,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format,
        usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
        view_formats: &[],
    });
    let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
    {
        let mut pass = encoder
            .begin_render_pass(&wgpu::RenderPassDescriptor {
                label: Some("deltawkv png pass"),
                color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                    view: &view,
                    resolve_target: None,
                    ops: wgpu::Operations {
                        load: wgpu::LoadOp::Clear(wgpu::Color {
                            r: 0.05,
                            g: 0.05,
                            b: 0.05,
                            a: 1.0,
                        }),
                        store: wgpu::StoreOp::Store,
                    },
                    depth_slice: None,
                })],
                ..Default::default()
            })
            .forget_lifetime();
        renderer.render(&mut pass, &prims, &screen);
    }
    let pixels = read_back_rgba(device, queue, encoder, user, &texture, w, h)?;
    image::RgbaImage::from_raw(w, h, pixels).ok_or(ExportError::ReadbackSize)
}

/// Submits the commands `user`, then `encoder` with a copy of `texture` (`w x h`, 4 bytes per
/// texel) into a mappable buffer, waits (up to 30 s) and returns the texels row by row, without
/// the rows' padding.
pub fn read_back_rgba(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    mut encoder: wgpu::CommandEncoder,
    user: Vec<wgpu::CommandBuffer>,
    texture: &wgpu::Texture,
    w: u32,
    h: u32,
) -> Result<Vec<u8>, ExportError> {
    let padded =
        (w * 4).div_ceil(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT) * wgpu::COPY_BYTES_PER_ROW_ALIGNMENT;
    let buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("deltawkv png readback"),
        size: u64::from(padded) * u64::from(h),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    encoder.copy_texture_to_buffer(
        texture.as_image_copy(),
        wgpu::TexelCopyBufferInfo {
            buffer: &buffer,
            layout: wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(padded),
                rows_per_image: None,
            },
        },
        wgpu::Extent3d {
            width: w,
            height: h,
            depth_or_array_layers: 1,
        },
    );
    let index = queue.submit(user.into_iter().chain(std::iter::once(encoder.finish())));
    let (tx, rx) = std::sync::mpsc::channel();
    buffer
        .slice(..)
        .map_async(wgpu::MapMode::Read, move |r| drop(tx.send(r)));
    device
        .poll(wgpu::PollType::Wait {
            submission_index: Some(index),
            timeout: Some(std::time::Duration::from_secs(30)),
        })
        .map_err(|e| ExportError::Gpu(e.to_string()))?;
    rx.recv()
        .map_err(|e| ExportError::Readback(e.to_string()))?
        .map_err(|e| ExportError::Readback(e.to_string()))?;
    let mapped = buffer
        .slice(..)
        .get_mapped_range()
        .map_err(|e| ExportError::Readback(e.to_string()))?;
    let mut pixels = Vec::with_capacity((w * h * 4) as usize);
    for row in mapped.chunks_exact(padded as usize).take(h as usize) {
        pixels.extend_from_slice(row.get(..(w * 4) as usize).unwrap_or(&[]));
    }
    drop(mapped);
    buffer.unmap();
    Ok(pixels)
}

/// Renders what `draw` draws (the panes) at 2x and writes a PNG (atomically).
pub fn save_png(
    render_state: &egui_wgpu::RenderState,
    size_points: egui::Vec2,
    screen_ppp: f32,
    path: &Path,
    draw: impl FnMut(&mut egui::Ui, egui::Rect),
) -> Result<(u32, u32), ExportError> {
    let img = render_panes(render_state, size_points, 2.0 * screen_ppp.max(0.5), draw)?;
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )?;
    write_atomic(path, &bytes)?;
    Ok((img.width(), img.height()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_has_volume_and_slice_rows() {
        let r = MetricsReport {
            source: "x".into(),
            scale: 2,
            degradation: "kspace",
            axis: "axial",
            data_range: 1.0,
            normalisation: 700.0,
            checkpoint_a: Some("a.safetensors".into()),
            checkpoint_b: None,
            engine_a: None,
            data_consistency: false,
            volume: vec![VolumeRow {
                result: "sr_a",
                label: "SR".into(),
                psnr: Some(30.5),
                ssim: 0.9,
                slices: 2,
                total: 2,
            }],
            slices: vec![SliceRow {
                slice: 1,
                result: "sr_a",
                psnr: None,
                ssim: 1.0,
                mse: 0.0,
            }],
        };
        let csv = metrics_csv(&r);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1], "volume,sr_a,,30.5000,0.900000,2/2");
        assert!(lines[2].starts_with("slice,sr_a,1,inf,1.000000,"));
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["volume"][0]["psnr"], 30.5);
        assert!(json["slices"][0]["psnr"].is_null());
    }

    #[test]
    fn missing_extensions_are_added() {
        let nii = [".nii.gz", ".nii"];
        let f = |p: &str| with_extension_if_missing(PathBuf::from(p), &nii, ".nii.gz");
        assert_eq!(f("/d/brain_sr"), PathBuf::from("/d/brain_sr.nii.gz"));
        assert_eq!(f("/d/brain.sr"), PathBuf::from("/d/brain.sr.nii.gz"));
        assert_eq!(f("/d/a.nii"), PathBuf::from("/d/a.nii"));
        assert_eq!(f("/d/a.NII.GZ"), PathBuf::from("/d/a.NII.GZ"));
        let png = with_extension_if_missing(PathBuf::from("shot"), &[".png"], ".png");
        assert_eq!(png, PathBuf::from("shot.png"));
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("m.csv");
        write_atomic(&p, b"one").expect("write");
        write_atomic(&p, b"two").expect("rewrite");
        assert_eq!(std::fs::read(&p).expect("read"), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
        assert!(write_atomic(Path::new("/nonexistent-dir/x.csv"), b"x").is_err());
    }
}
