//! The viewer's latency and frame times on a real GPU (issue 16), measured, never asserted: the
//! real app driven by egui_kittest with its wgpu renderer on the hardware adapter (the NVIDIA one
//! on the GPU machine), on the device eframe creates for the app (the engine shares it and its
//! queue), the bundled sample
//! opened in simulate mode with the shipped x2 checkpoint, frames stepped and rendered as fast as
//! the harness can until the whole volume is upscaled.
//!
//! Ignored by default (it needs a real GPU to mean anything); run it with
//! `DELTAWKV_TIMING_OUT=timing.json cargo test --test app gpu_timing -- --ignored --nocapture`,
//! or on the GPU machine through scripts/device_viewer_timing.sh. Reports: the adapter, the time
//! from creating the app to the first frame that shows an SR slice, to the complete SR volume,
//! and the frame times (step + render + read-back, i.e. until the frame's pixels exist) while
//! the volume is upscaled: median, p95, max, and how many frames exceed 16.7 ms.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deltawkv::app::jobs::CheckpointSource;
use deltawkv::app::metrics_cache::Slot;
use deltawkv::app::session::Mode;
use deltawkv::app::{AppOptions, DeltaApp, Settings};
use deltawkv::engine::DeviceChoice;
use eframe::egui_wgpu::{WgpuSetup, wgpu};
use egui_kittest::Harness;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `q`-quantile (0..=1) of sorted `v`, in milliseconds.
fn quantile_ms(v: &[Duration], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i].as_secs_f64() * 1e3
}

/// The device the app gets from eframe ([`deltawkv::app::native_options`]: the engine's
/// [`deltawkv::gpu::device_descriptor`], subgroups included), on a hardware adapter before a
/// software one (egui_kittest's default prefers software rasterisers, for reproducible snapshots).
fn gpu_setup() -> WgpuSetup {
    let mut setup = egui_kittest::wgpu::default_wgpu_setup();
    if let WgpuSetup::CreateNew(c) = &mut setup {
        c.device_descriptor = Arc::new(deltawkv::gpu::device_descriptor);
        c.native_adapter_selector = Some(Arc::new(|adapters, _surface| {
            adapters
                .iter()
                .min_by_key(|a| match a.get_info().device_type {
                    wgpu::DeviceType::DiscreteGpu => 0,
                    wgpu::DeviceType::IntegratedGpu => 1,
                    wgpu::DeviceType::VirtualGpu | wgpu::DeviceType::Other => 2,
                    wgpu::DeviceType::Cpu => 3,
                })
                .cloned()
                .ok_or_else(|| "no adapter found".to_owned())
        }));
    }
    setup
}

#[test]
#[ignore = "timing harness for a real GPU: scripts/device_viewer_timing.sh"]
fn gpu_timing() {
    // the binary may run from a copy of the repository elsewhere (the GPU machine)
    let base = std::env::var_os("DELTAWKV_ROOT").map_or_else(root, PathBuf::from);
    let sample = base.join("assets/sample_pd.nii.gz");
    let weights = base.join("weights/dwkv3m_x2.safetensors");
    assert!(
        sample.is_file() && weights.is_file(),
        "{sample:?} {weights:?}"
    );
    let settings = Settings {
        mode: Mode::Simulate,
        scale: 2,
        device: DeviceChoice::Gpu,
        show_side_panel: true,
        ..Settings::default()
    };
    let t0 = Instant::now();
    let mut h = Harness::builder()
        .with_size(egui::vec2(1600.0, 900.0))
        .with_pixels_per_point(1.0)
        .wgpu_setup(gpu_setup())
        .build_eframe(move |cc| {
            DeltaApp::new(
                cc,
                AppOptions {
                    path: Some(sample),
                    checkpoint: Some(CheckpointSource::File(weights)),
                    settings: Some(settings),
                    ..Default::default()
                },
            )
        });
    let t_built = t0.elapsed();
    let mut frames: Vec<Duration> = Vec::new();
    let mut first_sr: Option<Duration> = None;
    let mut complete: Option<Duration> = None;
    let mut slices = 0usize;
    let limit = Duration::from_secs(
        std::env::var("DELTAWKV_TIMING_LIMIT_S")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(300),
    );
    while complete.is_none() && t0.elapsed() < limit {
        // the SR slice under the crosshair was done before this frame: this frame shows it
        let shown_before = h.state().viewer.run(Slot::A).is_some_and(|r| {
            let k = h.state().viewer.crosshair().slice();
            r.done.get(k).copied().unwrap_or(false)
        });
        let tf = Instant::now();
        h.step();
        h.render().expect("render");
        let dt = tf.elapsed();
        let v = &h.state().viewer;
        if let Some(m) = v.messages().iter().find(|m| m.error) {
            panic!("the viewer reported an error: {m:?}");
        }
        if let Some(r) = v.run(Slot::A) {
            slices = r.done.len();
            if r.n_done > 0 && r.n_done < r.done.len() {
                frames.push(dt);
            }
            if shown_before && first_sr.is_none() {
                first_sr = Some(t0.elapsed());
            }
            if r.complete() {
                complete = Some(t0.elapsed());
            }
        }
    }
    frames.sort();
    let over = frames
        .iter()
        .filter(|d| d.as_secs_f64() > 1.0 / 60.0)
        .count();
    let v = &h.state().viewer;
    let report = serde_json::json!({
        "engine": v.run(Slot::A).and_then(|r| r.engine.clone()),
        "sample": "assets/sample_pd.nii.gz",
        "checkpoint": "weights/dwkv3m_x2.safetensors",
        "slices": slices,
        "app_created_s": t_built.as_secs_f64(),
        "first_sr_slice_on_screen_s": first_sr.map(|d| d.as_secs_f64()),
        "volume_complete_s": complete.map(|d| d.as_secs_f64()),
        "frames_while_upscaling": frames.len(),
        "frame_ms_p50": quantile_ms(&frames, 0.5),
        "frame_ms_p95": quantile_ms(&frames, 0.95),
        "frame_ms_max": quantile_ms(&frames, 1.0),
        "frames_over_16_7ms": over,
    });
    println!("{report}");
    if let Some(p) = std::env::var_os("DELTAWKV_TIMING_OUT") {
        std::fs::write(p, report.to_string()).expect("write the report");
    }
    assert!(
        complete.is_some(),
        "the volume was not upscaled within {limit:?}"
    );
}
