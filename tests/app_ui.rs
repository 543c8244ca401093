//! The real viewer driven headless through egui_kittest on a wgpu software adapter (lavapipe):
//! open a volume, let the jobs finish, step slices, toggle maps and modes, and compare snapshots
//! of the rendered window. Small inputs keep it fast: a 96x96x6 crop of the PD sample and a tiny
//! random checkpoint on the CPU reference.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deltawkv::app::jobs::CheckpointSource;
use deltawkv::app::metrics_cache::{ResultId, Slot};
use deltawkv::app::session::{MapKind, Mode, PaneKind};
use deltawkv::app::{AppOptions, DeltaApp, Settings};
use deltawkv::degrade::Baseline;
use deltawkv::model::{Checkpoint, Degradation, ModelConfig};
use deltawkv::volume::Axis;
use egui::Key;
use egui_kittest::{Harness, SnapshotOptions, kittest::Queryable};

/// Snapshot tolerances for every snapshot of this file (one place): the per-pixel colour distance
/// and the number of pixels allowed above it (text anti-aliasing may differ by a few pixels
/// between Mesa versions; a moved pane border or a wrong slice changes thousands).
fn snapshot_options() -> SnapshotOptions {
    SnapshotOptions::new().threshold(0.8).max_failed_pixels(60)
}

const SIZE: egui::Vec2 = egui::vec2(1100.0, 700.0);

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/app")
        .join(name)
}

fn tiny_checkpoint(scale: usize) -> CheckpointSource {
    let config = ModelConfig {
        scale,
        dim: 8,
        head_size: 4,
        groups: 1,
        blocks_per_group: 1,
        ffn_ratio: 1,
        lora_rank_w: 2,
        lora_rank_a: 2,
        lora_rank_v: 2,
        lora_rank_g: 2,
        degradation: Degradation::Kspace,
    };
    CheckpointSource::Memory {
        label: format!("tiny random x{scale}"),
        checkpoint: Arc::new(Checkpoint::random(&config, 7)),
    }
}

/// Settings for tests: defaults, side panel off (it shows timings), nothing persisted.
fn test_settings() -> Settings {
    Settings {
        show_side_panel: false,
        device: deltawkv::engine::DeviceChoice::Cpu,
        ..Settings::default()
    }
}

fn harness(opts: AppOptions) -> Harness<'static, DeltaApp> {
    Harness::builder()
        .with_size(SIZE)
        .with_pixels_per_point(1.0)
        .wgpu()
        .build_eframe(move |cc| DeltaApp::new(cc, opts))
}

fn open_crop(settings: Settings) -> Harness<'static, DeltaApp> {
    let mut h = harness(AppOptions {
        path: Some(data("pd_crop_96x96x6.nii.gz")),
        checkpoint: Some(tiny_checkpoint(settings.scale)),
        settings: Some(settings),
        ..Default::default()
    });
    settle(&mut h);
    h
}

/// Steps the app until every job (load, preparation, inference, metrics) is done.
fn settle(h: &mut Harness<'static, DeltaApp>) {
    let t0 = Instant::now();
    loop {
        h.step();
        if !h.state().viewer.busy() {
            h.step();
            if !h.state().viewer.busy() {
                break;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(240),
            "the viewer did not settle: {:?}",
            h.state().viewer.messages
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    h.run_steps(2);
}

#[test]
fn opens_a_volume_upscales_it_and_steps_slices() {
    let mut h = open_crop(test_settings());
    {
        let v = &h.state().viewer;
        assert!(v.messages.iter().all(|m| !m.error), "{:?}", v.messages);
        let p = v.prepared.as_ref().expect("prepared");
        assert_eq!(p.grid.dims, [96, 96, 6]);
        assert_eq!(p.lr.dims, [48, 48, 6]);
        let run = v.runs[0].as_ref().expect("SR run");
        assert!(run.complete(), "{:?}", run.state);
        assert_eq!(v.crosshair.axis, Axis::Axial);
        assert_eq!(v.crosshair.slice(), 3);
        assert_eq!(
            v.pane_rows(),
            vec![vec![PaneKind::Lr, PaneKind::Sr(Slot::A), PaneKind::Gt]]
        );
    }
    h.snapshot_options("app_simulate_x2", &snapshot_options());

    h.key_press(Key::ArrowUp);
    h.run_steps(2);
    assert_eq!(h.state().viewer.crosshair.slice(), 4);
    h.key_press(Key::PageDown);
    h.run_steps(2);
    assert_eq!(
        h.state().viewer.crosshair.slice(),
        0,
        "clamped at the first slice"
    );
    h.key_press(Key::Y);
    h.run_steps(2);
    assert_eq!(h.state().viewer.crosshair.axis, Axis::Coronal);
    assert_eq!(h.state().viewer.crosshair.slice(), 48, "the crosshair's j");
    settle(&mut h);
    h.snapshot_options("app_coronal", &snapshot_options());
}

#[test]
fn maps_flip_and_metrics() {
    let mut h = open_crop(test_settings());
    h.key_press(Key::M);
    h.run_steps(2);
    assert_eq!(h.state().viewer.settings.map, Some(MapKind::AbsDiff));
    let rows = h.state().viewer.pane_rows();
    assert_eq!(
        rows[1],
        vec![
            PaneKind::Map(MapKind::AbsDiff, ResultId::Baseline(Baseline::Bicubic)),
            PaneKind::Map(MapKind::AbsDiff, ResultId::Sr(Slot::A)),
        ]
    );
    settle(&mut h);
    h.snapshot_options("app_error_maps", &snapshot_options());
    h.key_press(Key::M);
    h.key_press(Key::M);
    h.run_steps(2);
    assert_eq!(h.state().viewer.settings.map, Some(MapKind::Ssim));
    h.key_press(Key::F);
    h.run_steps(2);
    assert!(h.state().viewer.flip);
    assert_eq!(h.state().viewer.pane_rows()[0][1], PaneKind::Gt);

    // The volume metrics in the viewer equal a direct computation over the same volumes.
    let v = &h.state().viewer;
    let p = v.prepared.as_ref().expect("prepared");
    let gt = p.gt.as_ref().expect("gt");
    let bic = p.baseline(Baseline::Bicubic).expect("bicubic");
    let slices = |vol: &deltawkv::volume::Volume| -> Vec<deltawkv::plane::Plane> {
        (0..6).filter_map(|k| vol.slice(Axis::Axial, k)).collect()
    };
    let (direct, _) =
        deltawkv::metrics::volume_metrics(&slices(gt), &slices(bic), 1.0).expect("metrics");
    let shown = v
        .metrics
        .volume(ResultId::Baseline(Baseline::Bicubic))
        .expect("shown");
    assert_eq!(shown.slices, 6);
    assert!(
        (shown.psnr - direct.psnr).abs() < 1e-9,
        "{shown:?} {direct:?}"
    );
    assert!((shown.ssim - direct.ssim).abs() < 1e-12);
    let sr = v.metrics.volume(ResultId::Sr(Slot::A)).expect("SR metrics");
    assert_eq!(sr.slices, 6);
    assert!(sr.psnr.is_finite());
}

#[test]
fn upscale_mode_presentation_and_png_export() {
    let mut h = open_crop(test_settings());
    h.get_by_label("upscale").click();
    settle(&mut h);
    {
        let v = &h.state().viewer;
        let p = v.prepared.as_ref().expect("prepared");
        assert_eq!(p.params.mode, Mode::Upscale);
        assert!(p.gt.is_none());
        assert_eq!(p.grid.dims, [192, 192, 6]);
        assert!(v.runs[0].as_ref().is_some_and(|r| r.complete()));
        assert_eq!(
            v.pane_rows(),
            vec![vec![PaneKind::Lr, PaneKind::Sr(Slot::A)]]
        );
    }
    h.key_press(Key::P);
    h.run_steps(2);
    assert!(h.state().viewer.presentation);
    assert_eq!(
        h.state().viewer.pane_rows(),
        vec![vec![PaneKind::Sr(Slot::A)]]
    );
    h.key_press(Key::Space);
    h.run_steps(2);
    assert_eq!(h.state().viewer.pane_rows(), vec![vec![PaneKind::Lr]]);
    h.snapshot_options("app_presentation_lr", &snapshot_options());
    h.key_press(Key::Escape);
    h.run_steps(2);
    assert!(!h.state().viewer.presentation);

    // PNG of the panes at twice the pixel density.
    let dir = tempfile::tempdir().expect("tempdir");
    let png = dir.path().join("panes.png");
    h.state_mut().viewer.pending_png = Some(png.clone());
    h.run_steps(2);
    let size = h.state().viewer.panes_size;
    let img = image::open(&png).expect("png written");
    assert_eq!(img.width(), (size.x * 2.0).round() as u32);
    assert_eq!(img.height(), (size.y * 2.0).round() as u32);
    // Not blank: the SR pane has image content.
    let rgb = img.to_rgb8();
    let bright = rgb.pixels().filter(|p| p.0[0] > 100).count();
    assert!(bright > 1000, "{bright} bright pixels");
}

#[test]
fn bad_inputs_show_messages_not_crashes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad_ckpt = dir.path().join("broken.safetensors");
    std::fs::write(&bad_ckpt, b"this is not a checkpoint").expect("write");
    let mut h = harness(AppOptions {
        path: Some(data("pd_crop_96x96x6.nii.gz")),
        checkpoint: Some(CheckpointSource::File(bad_ckpt)),
        settings: Some(test_settings()),
        ..Default::default()
    });
    settle(&mut h);
    let v = &h.state().viewer;
    assert!(v.prepared.is_some(), "the volume still shows");
    assert!(
        v.messages
            .iter()
            .any(|m| m.error && m.text.contains("broken.safetensors")),
        "{:?}",
        v.messages
    );
    // A bad volume file.
    let bad_vol = dir.path().join("broken.nii.gz");
    std::fs::write(&bad_vol, [0x1f, 0x8b, 0x08, 0x00, 1, 2, 3]).expect("write");
    h.state_mut().viewer.open(bad_vol, None);
    settle(&mut h);
    let v = &h.state().viewer;
    assert!(
        v.messages
            .iter()
            .any(|m| m.error && m.text.contains("broken.nii.gz")),
        "{:?}",
        v.messages
    );
}
