//! Files in the viewer: the SR export overlaying its input as `deltawkv upscale` does, the
//! series picker, the bundled sample, persisted settings, dropped files, File > Recent.

use super::*;

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

/// An in-memory eframe storage.
#[derive(Default, Clone)]
pub(super) struct MemStorage(std::collections::BTreeMap<String, String>);

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

/// Waits (stepping the app) until `path` exists: exports are written on a worker thread.
fn wait_for(h: &mut Harness<'static, DeltaApp>, path: &std::path::Path, what: &str) {
    let t0 = Instant::now();
    while !path.exists() {
        h.step();
        assert!(t0.elapsed() < Duration::from_secs(60), "{what} not written");
        std::thread::sleep(Duration::from_millis(20));
    }
    settle(h);
}

#[test]
fn sr_exports_as_a_dicom_series_in_both_modes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let series =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/fixtures/dicom_series_tiny16");
    // Upscale mode on a DICOM series: the SR joins the source's study.
    let mut h = harness(AppOptions {
        path: Some(series.clone()),
        checkpoint: Some(tiny_checkpoint(2)),
        no_weights_discovery: true,
        settings: Some(Settings {
            mode: Mode::Upscale,
            ..test_settings()
        }),
        ..Default::default()
    });
    settle(&mut h);
    // The entry sits in the File menu next to the NIfTI export.
    h.get_by_label("File").click();
    h.run_steps(2);
    h.get_by_label("Export SR as NIfTI...  (Ctrl+S)");
    h.get_by_label("Export SR as DICOM series...  (Ctrl+Shift+S)");
    h.key_press(Key::Escape);
    h.run_steps(2);

    let out = dir.path().join("sr_upscale");
    h.state_mut().viewer.handle(Event::Dialog {
        purpose: DialogPurpose::ExportDicom,
        path: Some(out.clone()),
    });
    wait_for(&mut h, &out, "DICOM series");
    let v = &h.state().viewer;
    assert!(v.messages().iter().all(|m| !m.error), "{:?}", v.messages());
    assert!(
        v.messages()
            .iter()
            .any(|m| m.text.contains("SR DICOM series saved to")),
        "{:?}",
        v.messages()
    );
    let back = deltawkv::volume::load(&out, &Default::default()).expect("reload");
    assert_eq!(back.dims, [32, 32, 7]);
    let src = back.meta.dicom.as_ref().expect("DICOM");
    let source = deltawkv::volume::load(&series, &Default::default()).expect("source");
    let orig = source.meta.dicom.as_ref().expect("DICOM");
    assert_eq!(src.study_instance_uid, orig.study_instance_uid);
    assert_eq!(src.frame_of_reference_uid, orig.frame_of_reference_uid);
    assert_ne!(src.series_instance_uid, orig.series_instance_uid);

    // A folder that holds files is refused with a message; nothing is added to it.
    let taken = dir.path().join("taken");
    std::fs::create_dir(&taken).expect("mkdir");
    std::fs::write(taken.join("keep"), b"x").expect("write");
    h.state_mut().viewer.handle(Event::Dialog {
        purpose: DialogPurpose::ExportDicom,
        path: Some(taken.clone()),
    });
    settle(&mut h);
    assert!(
        h.state()
            .viewer
            .messages()
            .iter()
            .any(|m| m.error && m.text.contains("already holds files")),
        "{:?}",
        h.state().viewer.messages()
    );
    assert_eq!(std::fs::read_dir(&taken).expect("dir").count(), 1);

    // Simulate mode on a NIfTI: a new study, on the input's own grid.
    let mut h = open_crop(test_settings());
    let out = dir.path().join("sr_simulate");
    h.state_mut().viewer.handle(Event::Dialog {
        purpose: DialogPurpose::ExportDicom,
        path: Some(out.clone()),
    });
    wait_for(&mut h, &out, "DICOM series");
    let v = &h.state().viewer;
    assert!(v.messages().iter().all(|m| !m.error), "{:?}", v.messages());
    let back = deltawkv::volume::load(&out, &Default::default()).expect("reload");
    let input = deltawkv::volume::load(&data("pd_crop_96x96x6.nii.gz"), &Default::default())
        .expect("input");
    assert_eq!(back.dims, input.dims);
}

#[test]
fn skipped_files_of_a_series_are_named_in_the_messages() {
    let folder =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/dicom_quirks/one_unreadable");
    let mut h = harness(AppOptions {
        path: Some(folder),
        checkpoint: Some(tiny_checkpoint(2)),
        no_weights_discovery: true,
        settings: Some(Settings {
            mode: Mode::Upscale,
            ..test_settings()
        }),
        ..Default::default()
    });
    settle(&mut h);
    let v = &h.state().viewer;
    assert!(v.prepared().is_some(), "{:?}", v.messages());
    for name in ["4528", "4558"] {
        assert!(
            v.messages()
                .iter()
                .any(|m| m.text.starts_with("skipped") && m.text.contains(name)),
            "{:?}",
            v.messages()
        );
    }
}
