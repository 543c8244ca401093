//! The real viewer driven headless through egui_kittest on a wgpu software adapter (lavapipe):
//! open a volume, let the jobs finish, step slices, toggle maps and modes, and compare snapshots
//! of the rendered window. Small inputs keep it fast: a 96x96x6 crop of the PD sample and a tiny
//! random checkpoint on the CPU reference.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deltawkv::app::jobs::{CheckpointSource, DialogPurpose, Event};
use deltawkv::app::layout::{MapKind, PaneKind};
use deltawkv::app::metrics_cache::{ResultId, Slot};
use deltawkv::app::session::Mode;
use deltawkv::app::{AppOptions, DeltaApp, Settings};
use deltawkv::degrade::Baseline;
use deltawkv::model::{Checkpoint, Degradation};
use deltawkv::volume::Axis;
use egui::Key;
use egui_kittest::{Harness, SnapshotOptions, kittest::Queryable};

use crate::common::tiny_config;

/// Snapshot tolerances for every snapshot of this file (one place): the per-pixel colour distance
/// and the number of pixels allowed above it (text anti-aliasing may differ by a few pixels
/// between Mesa versions; a moved pane border, a one-slice shift or a 20% darker image changes
/// thousands: tried, see docs/test-breakages.md).
fn snapshot_options() -> SnapshotOptions {
    SnapshotOptions::new().threshold(0.2).max_failed_pixels(60)
}

const SIZE: egui::Vec2 = egui::vec2(1100.0, 700.0);

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/app")
        .join(name)
}

fn tiny_checkpoint(scale: usize) -> CheckpointSource {
    tiny_checkpoint_seeded(scale, 7)
}

fn tiny_checkpoint_seeded(scale: usize, seed: u64) -> CheckpointSource {
    let config = tiny_config(scale, Degradation::Kspace);
    let mut checkpoint = Checkpoint::random(&config, seed);
    make_visible(&mut checkpoint);
    CheckpointSource::Memory {
        label: format!("tiny random x{scale} ({seed})"),
        checkpoint: Arc::new(checkpoint),
    }
}

/// Rewires the head of a random checkpoint so that its SR is a visible image (a random network's
/// output is about zero: every SR pane would be black and the snapshots blind to it). The whole
/// network still runs and adds to the output: `conv_first` passes the input into channel 0 (the
/// other channels keep their random filters), `conv_after_body`'s random output is scaled by
/// 0.1, `conv_before_upsample` passes channel 0, each upsampling conv copies channel 0 into the
/// four sub-pixels that `PixelShuffle(2)` makes channel 0 of, and
/// `conv_last` smooths channel 0 with a 3x3 binomial kernel. The SR is then the input's
/// nearest-neighbour upsampling, smoothed, plus the body's term, which brightens it (PSNR about
/// 21 dB against the bicubic's 29 on the test crop): an image, close to the LR, not equal to it.
fn make_visible(ck: &mut Checkpoint) {
    // Index of a [out, in, 3, 3] weight.
    fn at(shape: &[usize], o: usize, i: usize, y: usize, x: usize) -> usize {
        ((o * shape[1] + i) * 3 + y) * 3 + x
    }
    let steps = ck.config.scale.trailing_zeros() as usize;
    let mut set = |name: &str, f: &dyn Fn(&mut deltawkv::model::Tensor)| {
        let t = ck.tensors.get_mut(name).unwrap_or_else(|| panic!("{name}"));
        f(t);
    };
    set("conv_first.weight", &|t| {
        let i = at(&t.shape, 0, 0, 0, 0);
        t.data[i..i + 9].fill(0.0);
        t.data[at(&t.shape, 0, 0, 1, 1)] = 1.0;
    });
    set("conv_first.bias", &|t| t.data[0] = 0.0);
    set("conv_after_body.weight", &|t| {
        t.data.iter_mut().for_each(|v| *v *= 0.1)
    });
    set("conv_after_body.bias", &|t| t.data.fill(0.0));
    let pass_channel_0 = |t: &mut deltawkv::model::Tensor, outs: std::ops::Range<usize>| {
        t.data.fill(0.0);
        for o in outs {
            let i = at(&t.shape, o, 0, 1, 1);
            t.data[i] = 1.0;
        }
    };
    set("conv_before_upsample.weight", &|t| pass_channel_0(t, 0..1));
    set("conv_before_upsample.bias", &|t| t.data.fill(0.0));
    for k in 0..steps {
        set(&format!("upsample.{k}.weight"), &|t| {
            pass_channel_0(t, 0..4)
        });
        set(&format!("upsample.{k}.bias"), &|t| t.data.fill(0.0));
    }
    set("conv_last.weight", &|t| {
        t.data.fill(0.0);
        for (y, wy) in [1.0f32, 2.0, 1.0].into_iter().enumerate() {
            for (x, wx) in [1.0f32, 2.0, 1.0].into_iter().enumerate() {
                let i = at(&t.shape, 0, 0, y, x);
                t.data[i] = wy * wx / 16.0;
            }
        }
    });
    set("conv_last.bias", &|t| t.data.fill(0.0));
    ck.validate("visible test checkpoint").expect("valid");
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
        no_weights_discovery: true,
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
            h.state().viewer.messages()
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
        assert!(v.messages().iter().all(|m| !m.error), "{:?}", v.messages());
        let p = v.prepared().expect("prepared");
        assert_eq!(p.grid.dims, [96, 96, 6]);
        assert_eq!(p.lr.dims, [48, 48, 6]);
        let run = v.run(Slot::A).expect("SR run");
        assert!(run.complete(), "{:?}", run.state);
        assert_eq!(v.crosshair().axis, Axis::Axial);
        assert_eq!(v.crosshair().slice(), 3);
        assert_eq!(
            v.pane_rows(),
            vec![vec![PaneKind::Lr, PaneKind::Sr(Slot::A), PaneKind::Gt]]
        );
    }
    h.snapshot_options("app_simulate_x2", &snapshot_options());

    h.key_press(Key::ArrowUp);
    h.run_steps(2);
    assert_eq!(h.state().viewer.crosshair().slice(), 4);
    h.key_press(Key::PageDown);
    h.run_steps(2);
    assert_eq!(
        h.state().viewer.crosshair().slice(),
        0,
        "clamped at the first slice"
    );
    h.key_press(Key::Y);
    h.run_steps(2);
    assert_eq!(h.state().viewer.crosshair().axis, Axis::Coronal);
    assert_eq!(
        h.state().viewer.crosshair().slice(),
        48,
        "the crosshair's j"
    );
    settle(&mut h);
    h.snapshot_options("app_coronal", &snapshot_options());
}

#[test]
fn maps_flip_and_metrics() {
    let mut h = open_crop(test_settings());
    h.key_press(Key::M);
    h.run_steps(2);
    assert_eq!(h.state().viewer.settings().map, Some(MapKind::AbsDiff));
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
    assert_eq!(h.state().viewer.settings().map, Some(MapKind::Ssim));
    h.key_press(Key::F);
    h.run_steps(2);
    assert!(h.state().viewer.navigation().flip());
    assert_eq!(h.state().viewer.pane_rows()[0][1], PaneKind::Gt);

    // The volume metrics in the viewer equal a direct computation over the same volumes.
    let v = &h.state().viewer;
    let p = v.prepared().expect("prepared");
    let gt = p.gt.as_ref().expect("gt");
    let bic = p.baseline(Baseline::Bicubic).expect("bicubic");
    let slices = |vol: &deltawkv::volume::Volume| -> Vec<deltawkv::plane::Plane> {
        (0..6).filter_map(|k| vol.slice(Axis::Axial, k)).collect()
    };
    let (direct, _) =
        deltawkv::metrics::volume_metrics(&slices(gt), &slices(bic), 1.0).expect("metrics");
    let shown = v
        .metrics()
        .volume(ResultId::Baseline(Baseline::Bicubic))
        .expect("shown");
    assert_eq!(shown.slices, 6);
    assert!(
        (shown.psnr - direct.psnr).abs() < 1e-9,
        "{shown:?} {direct:?}"
    );
    assert!((shown.ssim - direct.ssim).abs() < 1e-12);
    let sr = v
        .metrics()
        .volume(ResultId::Sr(Slot::A))
        .expect("SR metrics");
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
        let p = v.prepared().expect("prepared");
        assert_eq!(p.params.mode, Mode::Upscale);
        assert!(p.gt.is_none());
        assert_eq!(p.grid.dims, [192, 192, 6]);
        assert!(v.run(Slot::A).is_some_and(|r| r.complete()));
        assert_eq!(
            v.pane_rows(),
            vec![vec![PaneKind::Lr, PaneKind::Sr(Slot::A)]]
        );
    }
    h.key_press(Key::P);
    h.run_steps(2);
    assert!(h.state().viewer.navigation().presentation());
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
    assert!(!h.state().viewer.navigation().presentation());

    // PNG of the panes at twice the pixel density.
    let dir = tempfile::tempdir().expect("tempdir");
    let png = dir.path().join("panes.png");
    h.run_steps(4);
    let size = h.state().viewer.navigation().panes_size();
    h.state_mut().viewer.dialogs_mut().request_png(png.clone());
    h.step();
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
        no_weights_discovery: true,
        settings: Some(test_settings()),
        ..Default::default()
    });
    settle(&mut h);
    let v = &h.state().viewer;
    assert!(v.prepared().is_some(), "the volume still shows");
    assert!(
        v.messages()
            .iter()
            .any(|m| m.error && m.text.contains("broken.safetensors")),
        "{:?}",
        v.messages()
    );
    // A bad volume file.
    let bad_vol = dir.path().join("broken.nii.gz");
    std::fs::write(&bad_vol, [0x1f, 0x8b, 0x08, 0x00, 1, 2, 3]).expect("write");
    h.state_mut().viewer.open(bad_vol, None);
    settle(&mut h);
    let v = &h.state().viewer;
    assert!(
        v.messages()
            .iter()
            .any(|m| m.error && m.text.contains("broken.nii.gz")),
        "{:?}",
        v.messages()
    );
}

#[test]
fn compare_two_checkpoints_and_export_results() {
    let mut h = open_crop(test_settings());
    h.state_mut()
        .viewer
        .set_checkpoint(Slot::B, tiny_checkpoint_seeded(2, 11));
    settle(&mut h);
    {
        let v = &h.state().viewer;
        assert_eq!(
            v.pane_rows()[0],
            vec![
                PaneKind::Lr,
                PaneKind::Sr(Slot::A),
                PaneKind::Sr(Slot::B),
                PaneKind::Gt
            ]
        );
        let a = v
            .metrics()
            .volume(ResultId::Sr(Slot::A))
            .expect("A metrics");
        let b = v
            .metrics()
            .volume(ResultId::Sr(Slot::B))
            .expect("B metrics");
        assert_eq!((a.slices, b.slices), (6, 6));
        assert_ne!(a.psnr, b.psnr, "different checkpoints, different results");
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let nii = dir.path().join("sr.nii.gz");
    let csv = dir.path().join("metrics.csv");
    let json = dir.path().join("metrics.json");
    for (purpose, path) in [
        (DialogPurpose::ExportNifti, &nii),
        (DialogPurpose::ExportCsv, &csv),
        (DialogPurpose::ExportJson, &json),
    ] {
        h.state_mut().viewer.handle(Event::Dialog {
            purpose,
            path: Some(path.clone()),
        });
    }
    // The NIfTI is written on a worker thread.
    let t0 = Instant::now();
    while !nii.exists() {
        h.step();
        assert!(t0.elapsed() < Duration::from_secs(60), "NIfTI not written");
        std::thread::sleep(Duration::from_millis(20));
    }
    settle(&mut h);
    let v = &h.state().viewer;
    assert!(v.messages().iter().all(|m| !m.error), "{:?}", v.messages());
    let back = deltawkv::volume::load(&nii, &Default::default()).expect("reload");
    // Simulate mode: the SR grid is the (cropped) input's own grid, in its voxel order (LPS).
    let input = deltawkv::volume::load(&data("pd_crop_96x96x6.nii.gz"), &Default::default())
        .expect("input");
    assert_eq!(input.orientation_code(), "LPS");
    assert_eq!(back.dims, input.dims);
    assert_affine_close(&back.affine, &input.affine);
    assert_sr_export_matches_the_viewer(v, &back);
    let text = std::fs::read_to_string(&csv).expect("csv");
    assert!(text.starts_with("scope,result,slice,psnr_db,ssim"));
    assert!(text.contains("volume,sr_b,"), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("slice,")).count(),
        5 * 6
    );
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
    assert_eq!(j["volume"].as_array().map(Vec::len), Some(5));
    assert_eq!(j["data_range"], 1.0);
    assert_eq!(j["scale"], 2);
}

fn assert_affine_close(a: &[[f64; 4]; 4], b: &[[f64; 4]; 4]) {
    for r in 0..3 {
        for c in 0..4 {
            assert!(
                (a[r][c] - b[r][c]).abs() < 1e-4,
                "affine {r},{c}: {a:?} vs {b:?}"
            );
        }
    }
}

/// Every voxel of the exported SR volume `back` holds the viewer's SR value at the same world
/// point (the viewer's SR volume lives on the canonical display grid).
fn assert_sr_export_matches_the_viewer(v: &deltawkv::app::Viewer, back: &deltawkv::volume::Volume) {
    use deltawkv::volume::geometry::{apply, invert};
    let p = v.prepared().expect("prepared");
    let run = v.run(Slot::A).expect("run A");
    assert_eq!(back.dims, p.sr_stored_dims);
    let to_display = invert(&p.grid.affine).expect("invertible");
    let mut checked = 0;
    for k in 0..back.dims[2] {
        for j in 0..back.dims[1] {
            for i in 0..back.dims[0] {
                let world = back.voxel_to_world([i as f64, j as f64, k as f64]);
                let c = apply(&to_display, world);
                let r = c.map(|x| x.round());
                for a in 0..3 {
                    assert!((c[a] - r[a]).abs() < 1e-3, "not on a display voxel: {c:?}");
                    assert!(r[a] >= 0.0 && (r[a] as usize) < p.grid.dims[a], "{c:?}");
                }
                // What the viewer shows (clamped to [0, 1] by the display window) equals the
                // export on the normalised scale, clamped alike (upscale mode exports unclipped).
                let shown = run.volume.data[run.volume.linear_index(r.map(|x| x as usize))];
                let want = shown.clamp(0.0, 1.0);
                let got = (back.data[back.linear_index([i, j, k])] / p.norm).clamp(0.0, 1.0);
                assert!(
                    (got - want).abs() <= 1e-3,
                    "voxel {:?}: exported {got}, viewer {want} (normalised)",
                    [i, j, k]
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, p.grid.dims.iter().product::<usize>());
}

mod consistency;
mod device;
mod files;
mod input;
mod pacs;
