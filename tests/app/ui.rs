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
    tiny_checkpoint_seeded(scale, 7)
}

fn tiny_checkpoint_seeded(scale: usize, seed: u64) -> CheckpointSource {
    let config = tiny_config(scale, Degradation::Kspace);
    CheckpointSource::Memory {
        label: format!("tiny random x{scale} ({seed})"),
        checkpoint: Arc::new(Checkpoint::random(&config, seed)),
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

#[test]
fn sr_export_overlays_the_input_like_deltawkv_upscale() {
    use deltawkv::volume::geometry::apply;
    // Upscale mode with a bicubic-trained checkpoint: the LR (the opened file) is centre-aligned
    // with the SR grid; a file, so that `deltawkv upscale` can use it too.
    let dir = tempfile::tempdir().expect("tempdir");
    let ck_path = dir.path().join("tiny_bicubic_x2.safetensors");
    let CheckpointSource::Memory { checkpoint, .. } = tiny_checkpoint(2) else {
        unreachable!("memory checkpoint")
    };
    let mut ck = (*checkpoint).clone();
    ck.config.degradation = Degradation::Bicubic;
    // Outputs around 1.2 on the normalised scale: above the 99.5th percentile the viewer's
    // display clamps to, so an export that clipped like the display would differ.
    if let Some(b) = ck.tensors.get_mut("conv_last.bias") {
        b.data.iter_mut().for_each(|x| *x += 1.2);
    }
    ck.save(&ck_path).expect("save checkpoint");
    let input_path = data("pd_crop_96x96x6.nii.gz");
    let mut h = harness(AppOptions {
        path: Some(input_path.clone()),
        checkpoint: Some(CheckpointSource::File(ck_path.clone())),
        no_weights_discovery: true,
        settings: Some(Settings {
            mode: Mode::Upscale,
            ..test_settings()
        }),
        ..Default::default()
    });
    settle(&mut h);
    assert_eq!(
        h.state().viewer.prepared().map(|p| p.params.degradation),
        Some(Degradation::Bicubic)
    );
    // A name typed without extension in the save dialog gets `.nii.gz`.
    let nii = dir.path().join("sr.nii.gz");
    h.state_mut().viewer.handle(Event::Dialog {
        purpose: DialogPurpose::ExportNifti,
        path: Some(dir.path().join("sr")),
    });
    let t0 = Instant::now();
    while !nii.exists() {
        h.step();
        assert!(t0.elapsed() < Duration::from_secs(60), "NIfTI not written");
        std::thread::sleep(Duration::from_millis(20));
    }
    settle(&mut h);
    let v = &h.state().viewer;
    assert!(v.messages().iter().all(|m| !m.error), "{:?}", v.messages());
    let input = deltawkv::volume::load(&input_path, &Default::default()).expect("input");
    let back = deltawkv::volume::load(&nii, &Default::default()).expect("reload");
    // The input's own axes (LPS, not the display's RAS), in-plane x2, slices kept.
    assert_eq!(back.orientation_code(), input.orientation_code());
    assert_eq!(back.dims, [192, 192, 6]);
    // Voxel centres: SR voxel h sits at LR coordinate (h + 0.5) / 2 - 0.5 in-plane (bicubic,
    // centre aligned); checked at the eight corners, and the grids' outer edges coincide.
    let lr_of = |h: [f64; 3]| [(h[0] + 0.5) / 2.0 - 0.5, (h[1] + 0.5) / 2.0 - 0.5, h[2]];
    for corner in 0..8 {
        let sr = [0, 1, 2].map(|a| {
            if corner >> a & 1 == 1 {
                back.dims[a] as f64 - 1.0
            } else {
                0.0
            }
        });
        let a = back.voxel_to_world(sr);
        let b = input.voxel_to_world(lr_of(sr));
        for d in 0..3 {
            assert!((a[d] - b[d]).abs() < 1e-3, "corner {sr:?}: {a:?} vs {b:?}");
        }
    }
    let edge_sr = apply(&back.affine, [-0.5, -0.5, 0.0]);
    let edge_lr = apply(&input.affine, [-0.5, -0.5, 0.0]);
    for d in 0..3 {
        assert!(
            (edge_sr[d] - edge_lr[d]).abs() < 1e-3,
            "{edge_sr:?} vs {edge_lr:?}"
        );
    }
    assert_sr_export_matches_the_viewer(v, &back);

    // `deltawkv upscale` with the same checkpoint writes the same grid.
    let cli_out = dir.path().join("cli.nii.gz");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_deltawkv"))
        .arg("upscale")
        .arg(&input_path)
        .arg(&cli_out)
        .args(["--scale", "2", "--device", "cpu", "--weights"])
        .arg(&ck_path)
        .output()
        .expect("run deltawkv upscale");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli = deltawkv::volume::load(&cli_out, &Default::default()).expect("reload cli");
    assert_eq!(cli.dims, back.dims);
    assert_affine_close(&cli.affine, &back.affine);
    assert_eq!(cli.spacing, back.spacing);
    // ... and the same values: the input's intensity scale, not clipped at the normalisation.
    let p = v.prepared().expect("prepared");
    let factor = deltawkv::upscale::normalisation_factor(&input);
    assert_eq!(p.norm, factor, "the viewer normalises as the command line");
    let above = cli.data.iter().filter(|x| **x > 1.05 * factor).count();
    assert!(
        above * 10 > cli.data.len(),
        "the comparison needs SR values above the normalisation: {above} of {}",
        cli.data.len()
    );
    let mut max_diff = 0.0f32;
    for (a, b) in back.data.iter().zip(&cli.data) {
        max_diff = max_diff.max((a - b).abs());
    }
    eprintln!(
        "viewer export vs deltawkv upscale: max |difference| {max_diff}, factor {factor}, \
         {above} of {} voxels above 1.05 x factor",
        cli.data.len()
    );
    assert!(
        max_diff <= 1e-5 * factor,
        "viewer export vs deltawkv upscale: max |difference| {max_diff} (factor {factor})"
    );
}

/// Copies every file of the fixture folders into `dest` (names prefixed by the folder).
fn merge_fixture_series(dest: &std::path::Path, folders: &[&str]) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/fixtures");
    for f in folders {
        for e in std::fs::read_dir(root.join(f))
            .expect("fixture folder")
            .flatten()
        {
            let name = format!("{f}_{}", e.file_name().to_string_lossy());
            std::fs::copy(e.path(), dest.join(name)).expect("copy fixture");
        }
    }
}

#[test]
fn series_picker_opens_the_chosen_series() {
    let dir = tempfile::tempdir().expect("tempdir");
    merge_fixture_series(
        dir.path(),
        &["dicom_series_tiny16", "dicom_series_pd_oblique"],
    );
    let series = deltawkv::volume::list_series(dir.path()).expect("list series");
    assert_eq!(series.len(), 2, "{series:?}");
    let mut h = harness(AppOptions {
        path: Some(dir.path().to_path_buf()),
        no_weights_discovery: true,
        settings: Some(test_settings()),
        ..Default::default()
    });
    settle(&mut h);
    assert!(
        h.state().viewer.dialogs().series_choice().is_some(),
        "no picker"
    );
    assert!(
        h.state().viewer.document().loaded().is_none(),
        "nothing opens before the choice"
    );
    assert!(h.query_by_label("Choose a DICOM series").is_some());
    // One row per series, in the order listed.
    for s in &series {
        let text = format!("{} {}x{}x{}", s.modality, s.dims[0], s.dims[1], s.dims[2]);
        assert!(h.query_by_label(&text).is_some(), "no row {text:?}");
    }
    let buttons: Vec<_> = h.get_all_by_label("open").collect();
    assert_eq!(buttons.len(), 2);
    buttons[1].click();
    settle(&mut h);
    let v = &h.state().viewer;
    assert!(v.dialogs().series_choice().is_none());
    assert!(v.messages().iter().all(|m| !m.error), "{:?}", v.messages());
    let want = deltawkv::volume::load(
        dir.path(),
        &deltawkv::volume::LoadOptions {
            series: Some(series[1].uid.clone()),
            ..Default::default()
        },
    )
    .expect("load the second series");
    let other = deltawkv::volume::load(
        dir.path(),
        &deltawkv::volume::LoadOptions {
            series: Some(series[0].uid.clone()),
            ..Default::default()
        },
    )
    .expect("load the first series");
    assert_ne!(
        want.dims, other.dims,
        "the two series must differ for this test"
    );
    let loaded = v.document().loaded().expect("loaded");
    assert_eq!(loaded.volume.dims, want.dims);
    assert_eq!(loaded.volume.data, want.data);
    assert_eq!(loaded.volume.affine, want.affine);
    assert!(v.prepared().is_some());
}

#[test]
fn starts_on_the_bundled_sample() {
    // No path: the viewer opens assets/sample_pd.nii.gz (no checkpoint here, so no inference).
    let mut h = harness(AppOptions {
        no_weights_discovery: true,
        settings: Some(test_settings()),
        ..Default::default()
    });
    settle(&mut h);
    let v = &h.state().viewer;
    let path = v.loaded_path().expect("loaded");
    assert!(
        path.ends_with("assets/sample_pd.nii.gz"),
        "{}",
        path.display()
    );
    let p = v.prepared().expect("prepared");
    assert_eq!(p.grid.dims, [256, 256, 20]);
    assert_eq!(p.source_orientation, "LPS");
    assert!(v.run(Slot::A).is_none());
    assert!(
        v.messages()
            .iter()
            .any(|m| m.text.contains("no x2 checkpoint")),
        "{:?}",
        v.messages()
    );
    // Baseline metrics exist without a network.
    let z = v
        .metrics()
        .volume(ResultId::Baseline(Baseline::Zerofill))
        .expect("zero-filled metrics");
    assert_eq!(z.slices, 20);
}

#[test]
fn mouse_moves_the_crosshair_steps_slices_and_sets_the_window() {
    use egui::{Event, Modifiers, MouseWheelUnit, PointerButton, Pos2, TouchPhase, vec2};
    let mut h = open_crop(test_settings());
    // The LR pane is the first pane of the central area; find a point inside its image.
    let pane_area = h.state().viewer.navigation().panes_size();
    assert!(pane_area.x > 300.0, "{pane_area:?}");
    let before = h.state().viewer.crosshair().voxel;
    let p = Pos2::new(60.0, 200.0);
    h.hover_at(p);
    h.run_steps(1);
    h.run_steps(1);
    assert!(
        h.state().viewer.navigation().hover().is_some(),
        "hover readout under the mouse"
    );
    // The status line reads out voxel, position and every pane's value.
    for part in ["voxel (", " mm ", "LR (", "SR = ", "GT = "] {
        assert!(
            h.query_by_label_contains(part).is_some(),
            "no readout label with {part:?}"
        );
    }
    h.drag_at(p);
    h.run_steps(1);
    h.drop_at(p);
    h.run_steps(2);
    let after = h.state().viewer.crosshair().voxel;
    assert_ne!(before, after, "a click moves the crosshair");
    assert_eq!(before[2], after[2], "in-plane only");

    // The wheel steps slices.
    h.hover_at(p);
    h.event(Event::MouseWheel {
        unit: MouseWheelUnit::Line,
        delta: vec2(0.0, 1.0),
        phase: TouchPhase::Move,
        source: egui::MouseWheelSource::Wheel,
        modifiers: Modifiers::NONE,
    });
    h.run_steps(2);
    assert_eq!(h.state().viewer.crosshair().voxel[2], after[2] + 1);

    // Right drag to the right widens the window.
    let w0 = h.state().viewer.navigation().window();
    for (x, pressed) in [(60.0, true), (90.0, true), (120.0, false)] {
        let pos = Pos2::new(x, 200.0);
        h.event(Event::PointerMoved(pos));
        if x == 60.0 || !pressed {
            h.event(Event::PointerButton {
                pos,
                button: PointerButton::Secondary,
                pressed,
                modifiers: Modifiers::NONE,
            });
        }
        h.run_steps(1);
    }
    let w1 = h.state().viewer.navigation().window();
    assert!(w1.width > w0.width, "{w0:?} -> {w1:?}");
}

/// An in-memory eframe storage.
#[derive(Default, Clone)]
struct MemStorage(std::collections::BTreeMap<String, String>);

impl eframe::Storage for MemStorage {
    fn get_string(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
    fn set_string(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
    fn remove_string(&mut self, key: &str) {
        self.0.remove(key);
    }
    fn flush(&mut self) {}
}

#[derive(Debug)]
struct Dropped(PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

#[test]
fn settings_persist_and_dropped_files_open() {
    use eframe::App;
    let quiet = || AppOptions {
        open_nothing: true,
        no_weights_discovery: true,
        ..Default::default()
    };
    let mut first = Harness::builder()
        .with_size(SIZE)
        .wgpu()
        .build_eframe(move |cc| DeltaApp::new(cc, quiet()));
    // Drop the crop on the window: it opens and enters the recent list.
    first
        .input_mut()
        .dropped_files
        .push(Arc::new(Dropped(data("pd_crop_96x96x6.nii.gz"))));
    settle(&mut first);
    assert!(first.state().viewer.prepared().is_some());
    assert_eq!(
        first.state().viewer.settings().recent.first(),
        Some(&data("pd_crop_96x96x6.nii.gz"))
    );
    first.key_press(Key::M);
    first.key_press(Key::C);
    first.run_steps(2);
    let mut storage = MemStorage::default();
    first.state_mut().save(&mut storage);
    let saved = first.state().viewer.settings().clone();
    assert_eq!(saved.map, Some(MapKind::AbsDiff));

    let restored_storage: &'static MemStorage = Box::leak(Box::new(storage));
    let second = Harness::builder()
        .with_size(SIZE)
        .wgpu()
        .build_eframe(move |cc| {
            cc.storage = Some(restored_storage);
            DeltaApp::new(cc, quiet())
        });
    assert_eq!(*second.state().viewer.settings(), saved);
}

#[test]
fn help_lists_every_shortcut() {
    let mut h = harness(AppOptions {
        open_nothing: true,
        no_weights_discovery: true,
        settings: Some(test_settings()),
        ..Default::default()
    });
    h.run_steps(2);
    h.key_press(Key::F1);
    h.run_steps(2);
    assert!(h.state().viewer.dialogs().show_help());
    for s in deltawkv::app::settings::SHORTCUTS {
        assert!(
            h.query_by_label(s.action).is_some(),
            "help misses {:?}",
            s.action
        );
    }
    h.key_press(Key::Escape);
    h.run_steps(2);
    assert!(!h.state().viewer.dialogs().show_help());
}

#[test]
fn inference_on_the_viewers_own_wgpu_device_matches_the_cpu_reference() {
    use deltawkv::app::backend::{SharedGpu, shared_engine_factory};
    use deltawkv::engine::Upscaler;
    let ckpt = tiny_checkpoint(2);
    let mut h = Harness::builder()
        .with_size(SIZE)
        .wgpu()
        .build_eframe(move |cc| {
            let rs = cc.wgpu_render_state.as_ref().expect("wgpu render state");
            let shared = SharedGpu {
                device: rs.device.clone(),
                queue: rs.queue.clone(),
                info: rs.adapter.get_info(),
            };
            DeltaApp::new(
                cc,
                AppOptions {
                    path: Some(data("pd_crop_96x96x6.nii.gz")),
                    checkpoint: Some(ckpt),
                    no_weights_discovery: true,
                    settings: Some(test_settings()),
                    engine_factory: Some(shared_engine_factory(
                        deltawkv::engine::DeviceChoice::Gpu,
                        shared,
                    )),
                    ..Default::default()
                },
            )
        });
    settle(&mut h);
    let v = &h.state().viewer;
    assert!(v.messages().iter().all(|m| !m.error), "{:?}", v.messages());
    let run = v.run(Slot::A).expect("run");
    assert!(run.complete(), "{:?}", run.state);
    let engine = run.engine.clone().unwrap_or_default();
    assert!(!engine.starts_with("CPU"), "engine: {engine}");
    // The same slices through the CPU reference.
    let p = v.prepared().expect("prepared");
    let CheckpointSource::Memory { checkpoint, .. } = tiny_checkpoint(2) else {
        unreachable!("memory checkpoint")
    };
    let mut cpu = deltawkv::model::cpu::CpuUpscaler::new((*checkpoint).clone()).expect("cpu");
    let inputs: Vec<_> = (0..6).filter_map(|k| p.lr_plane(k)).collect();
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let want = cpu
        .upscale(&inputs, &|_, _| {}, &cancel)
        .expect("cpu upscale");
    // Placed through the same stored-to-canonical mapping, clamped as the viewer clamps.
    let mut expect = deltawkv::app::runs::SrRun::new(Slot::A, 0, "cpu".into(), p);
    for (k, w) in want.iter().enumerate() {
        let mut w = w.clone();
        w.data.iter_mut().for_each(|x| *x = x.clamp(0.0, 1.0));
        assert!(expect.apply_stored_slice(p, k, &w).is_some());
    }
    let mut num = 0.0f64;
    let mut den = 0.0f64;
    for (a, b) in run.volume.data.iter().zip(&expect.volume.data) {
        num += f64::from(a - b).powi(2);
        den += f64::from(*b).powi(2);
    }
    let inside = expect
        .volume
        .data
        .iter()
        .filter(|x| **x > 0.0 && **x < 1.0)
        .count();
    assert!(
        inside * 10 > expect.volume.data.len(),
        "the comparison needs unclamped outputs: {inside} of {}",
        expect.volume.data.len()
    );
    let rel = (num / den.max(1e-30)).sqrt();
    assert!(
        rel < 1e-4,
        "GPU in the viewer vs CPU reference: relative error {rel}"
    );
}

#[test]
fn an_absent_gpu_is_reported_in_the_message_panel_and_the_run_goes_on() {
    use deltawkv::app::jobs::EngineFactory;
    use deltawkv::engine::{DeviceChoice, EngineError};
    // The GPU factory finds no adapter; the viewer falls back to the CPU reference.
    let no_gpu: EngineFactory = Arc::new(|_ck: &Checkpoint| {
        Err(EngineError::NoAdapter(
            "no Vulkan, Metal or DX12 adapter".into(),
        ))
    });
    let mut h = harness(AppOptions {
        path: Some(data("pd_crop_96x96x6.nii.gz")),
        checkpoint: Some(tiny_checkpoint(2)),
        no_weights_discovery: true,
        settings: Some(Settings {
            device: DeviceChoice::Gpu,
            ..test_settings()
        }),
        engine_factory: Some(no_gpu),
        ..Default::default()
    });
    settle(&mut h);
    let run = h.state().viewer.run(Slot::A).expect("run");
    assert!(run.complete(), "{:?}", run.state);
    assert!(
        run.engine.as_deref().unwrap_or_default().starts_with("CPU"),
        "{:?}",
        run.engine
    );
    // The message panel shows why and what now.
    for part in [
        "no Vulkan, Metal or DX12 adapter",
        "continuing on CPU reference",
    ] {
        assert!(
            h.query_by_label_contains(part).is_some(),
            "no message with {part:?} on screen: {:?}",
            h.state().viewer.messages()
        );
    }
}

#[test]
fn switching_the_device_restarts_inference_on_it_and_the_status_line_says_so() {
    use deltawkv::app::runs::RunState;
    use deltawkv::engine::DeviceChoice;
    // Starts on the CPU reference (test settings); switched to the GPU (lavapipe here) from the
    // Checkpoints menu while the first run may still be going, then back to the CPU.
    let mut h = harness(AppOptions {
        path: Some(data("pd_crop_96x96x6.nii.gz")),
        checkpoint: Some(tiny_checkpoint(2)),
        no_weights_discovery: true,
        settings: Some(test_settings()),
        ..Default::default()
    });
    let t0 = Instant::now();
    while h.state().viewer.run(Slot::A).is_none() {
        h.step();
        assert!(t0.elapsed() < Duration::from_secs(120), "no run started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let first = h.state().viewer.run(Slot::A).map(|r| r.run_id);
    for (device, label, cpu) in [
        (DeviceChoice::Gpu, "GPU", false),
        (DeviceChoice::Cpu, "CPU reference", true),
    ] {
        let before = h.state().viewer.run(Slot::A).map(|r| r.run_id);
        h.get_by_label("Checkpoints").click();
        h.run_steps(2);
        h.get_by_label(label).click();
        h.run_steps(2);
        let v = &h.state().viewer;
        assert_eq!(v.settings().device, device);
        let run = v.run(Slot::A).expect("run");
        assert_ne!(Some(run.run_id), before, "the run restarts");
        assert_ne!(Some(run.run_id), first);
        settle(&mut h);
        let v = &h.state().viewer;
        assert!(v.messages().iter().all(|m| !m.error), "{:?}", v.messages());
        let run = v.run(Slot::A).expect("run");
        assert!(
            run.complete() && matches!(run.state, RunState::Finished(_)),
            "{:?}",
            run.state
        );
        let engine = run.engine.clone().expect("engine");
        assert_eq!(engine.starts_with("CPU"), cpu, "{label}: engine {engine}");
        let status = format!("device: {label}  |  SR on {engine}");
        assert!(
            h.query_by_label(&status).is_some(),
            "no status line {status:?}"
        );
    }
}

#[test]
fn clicking_the_psnr_plot_jumps_to_that_slice() {
    use egui::Pos2;
    let mut h = open_crop(test_settings());
    // Start on the coronal view: a click on the plot also switches to the SR (axial) axis.
    h.key_press(Key::Y);
    h.run_steps(2);
    assert_eq!(h.state().viewer.crosshair().axis, Axis::Coronal);
    // The plot spans the bottom panel (see the app_simulate_x2 snapshot): slice 1 at x = 89,
    // slice 6 at x = 1044, so x = 280 is slice 2 (index 1) and x = 853 slice 5 (index 4).
    for (x, want) in [(280.0, 1), (853.0, 4)] {
        let p = Pos2::new(x, 600.0);
        h.hover_at(p);
        h.run_steps(1);
        h.drag_at(p);
        h.run_steps(1);
        h.drop_at(p);
        h.run_steps(2);
        let v = &h.state().viewer;
        assert_eq!(v.crosshair().axis, Axis::Axial, "click at x = {x}");
        assert_eq!(v.crosshair().slice(), want, "click at x = {x}");
    }
}

#[test]
fn file_recent_reopens_a_volume() {
    let crop = data("pd_crop_96x96x6.nii.gz");
    let mut settings = test_settings();
    settings.push_recent(&crop);
    let mut h = harness(AppOptions {
        open_nothing: true,
        no_weights_discovery: true,
        settings: Some(settings),
        ..Default::default()
    });
    h.run_steps(2);
    assert!(h.state().viewer.document().loaded().is_none());
    h.get_by_label("File").click();
    h.run_steps(2);
    h.get_by_label("Recent").hover();
    h.run_steps(2);
    h.get_by_label(&crop.display().to_string()).click();
    settle(&mut h);
    let v = &h.state().viewer;
    assert!(v.messages().iter().all(|m| !m.error), "{:?}", v.messages());
    assert_eq!(v.loaded_path(), Some(crop.as_path()));
    assert!(v.prepared().is_some());
}
