//! Unit tests of the viewer's state: sessions, layouts, caches, metrics and opening files.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::app::jobs::Loaded;
use crate::app::layout::{PaneEmpty, PaneKind};
use crate::app::metrics_cache::ResultId;
use crate::app::session::tests::phantom;
use crate::degrade::Baseline;

fn viewer() -> Viewer {
    let opts = AppOptions {
        open_nothing: true,
        no_weights_discovery: true,
        ..Default::default()
    };
    Viewer::new(opts, Settings::default(), None, Arc::new(|| {}))
}

fn wait_until(v: &mut Viewer, what: &str, cond: impl Fn(&Viewer) -> bool) {
    let t0 = Instant::now();
    while !cond(v) {
        v.poll();
        v.request_metrics();
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn load_phantom(v: &mut Viewer) {
    let vol = phantom([32, 32, 12], [1.0, 1.0, 4.0]);
    v.doc.loaded = Some(Loaded {
        path: PathBuf::from("/phantom.nii.gz"),
        volume: Arc::new(vol),
        orientation: "RAS".into(),
        load_secs: 0.0,
    });
    v.start_prepare();
    wait_until(v, "preparation", |v| v.prepared().is_some());
}

#[test]
fn mode_switching_rebuilds_the_session_and_layout() {
    let mut v = viewer();
    load_phantom(&mut v);
    let p = v.prepared().cloned().expect("prepared");
    assert_eq!(p.params.mode, Mode::Simulate);
    assert_eq!(p.sr_axis, Axis::Axial);
    assert_eq!(
        v.pane_rows(),
        vec![vec![PaneKind::Lr, PaneKind::Sr(Slot::A), PaneKind::Gt]]
    );
    // The auto window is the 2-98 % range of the GT.
    let (lo, hi) = v.navigation().window().range();
    assert_eq!(Some(lo), p.summary.get(2.0));
    assert_eq!(Some(hi), p.summary.get(98.0));

    v.set_mode(Mode::Upscale);
    assert!(v.document().preparing().is_some());
    wait_until(&mut v, "upscale session", |v| {
        v.prepared().is_some_and(|p| p.params.mode == Mode::Upscale)
    });
    let p = v.prepared().cloned().expect("prepared");
    assert!(p.gt.is_none());
    assert_eq!(p.grid.dims, [64, 64, 12]);
    assert_eq!(
        v.pane_rows(),
        vec![vec![PaneKind::Lr, PaneKind::Sr(Slot::A)]]
    );
    // No GT: no metrics are requested.
    v.request_metrics();
    assert_eq!(v.metrics().pending_count(), 0);
    // Same parameters again: nothing is redone.
    v.reprepare_if_needed();
    assert!(v.document().preparing().is_none());
}

#[test]
fn baseline_metrics_are_computed_and_cached_per_slice() {
    let mut v = viewer();
    load_phantom(&mut v);
    v.request_metrics();
    let first = v.metrics().pending_count();
    assert_eq!(
        first,
        3 * 12,
        "3 baselines x 12 axial slices (current slice included)"
    );
    v.request_metrics();
    assert_eq!(
        v.metrics().pending_count(),
        first,
        "requests are not repeated"
    );
    wait_until(&mut v, "baseline metrics", |v| {
        v.metrics().pending_count() == 0
    });
    let id = ResultId::Baseline(Baseline::Zerofill);
    let vm = v.metrics().volume(id).expect("volume metrics");
    assert_eq!((vm.slices, vm.total), (12, 12));
    assert!(vm.psnr.is_finite() && vm.psnr > 10.0, "{vm:?}");
    // Coronal slices are computed on demand.
    v.set_axis(Axis::Coronal);
    v.request_metrics();
    assert_eq!(v.metrics().pending_count(), 3);
    wait_until(&mut v, "coronal metrics", |v| {
        v.metrics().pending_count() == 0
    });
    let k = (Axis::Coronal, v.crosshair().slice(), id);
    assert!(v.metrics().get(k).is_some());
}

#[test]
fn metrics_of_slices_smaller_than_the_ssim_window_fail_once() {
    let mut v = viewer();
    let vol = phantom([32, 32, 6], [1.0, 1.0, 4.0]);
    v.doc.loaded = Some(Loaded {
        path: PathBuf::from("/thin.nii.gz"),
        volume: Arc::new(vol),
        orientation: "RAS".into(),
        load_secs: 0.0,
    });
    v.start_prepare();
    wait_until(&mut v, "preparation", |v| v.prepared().is_some());
    v.set_axis(Axis::Coronal);
    wait_until(&mut v, "metrics", |v| v.metrics().pending_count() == 0);
    let k = (
        Axis::Coronal,
        v.crosshair().slice(),
        ResultId::Baseline(Baseline::Bicubic),
    );
    assert!(v.metrics().get(k).is_none());
    assert!(
        v.metrics().failure(k).is_some_and(|e| e.contains("11")),
        "{:?}",
        v.metrics().failure(k)
    );
}

#[test]
fn presentation_cycle_and_flip() {
    let mut v = viewer();
    load_phantom(&mut v);
    v.nav.flip = true;
    assert_eq!(
        v.pane_rows()[0],
        vec![PaneKind::Lr, PaneKind::Gt, PaneKind::Gt]
    );
    v.nav.flip = false;
    // Upscale mode has no GT: flip leaves the SR pane alone (and the F key does nothing).
    v.set_mode(Mode::Upscale);
    wait_until(&mut v, "upscale session", |v| {
        v.prepared().is_some_and(|p| p.gt.is_none())
    });
    v.toggle_flip();
    assert!(!v.navigation().flip());
    v.nav.flip = true;
    assert_eq!(v.pane_rows()[0], vec![PaneKind::Lr, PaneKind::Sr(Slot::A)]);
    v.set_mode(Mode::Simulate);
    wait_until(&mut v, "simulate session", |v| {
        v.prepared().is_some_and(|p| p.gt.is_some())
    });
    v.toggle_flip();
    assert!(v.navigation().flip());
    v.toggle_flip();
    v.nav.presentation = true;
    v.nav.presentation_index = 0;
    assert_eq!(v.pane_rows(), vec![vec![PaneKind::Lr]]);
    v.navigation_mut().presentation_next();
    assert_eq!(v.pane_rows(), vec![vec![PaneKind::Sr(Slot::A)]]);
    v.navigation_mut().presentation_next();
    assert_eq!(v.pane_rows(), vec![vec![PaneKind::Gt]]);
    v.navigation_mut().presentation_next();
    assert_eq!(v.pane_rows(), vec![vec![PaneKind::Lr]]);
}

#[test]
fn pane_images_are_cached_until_the_slice_changes() {
    let mut v = viewer();
    load_phantom(&mut v);
    let a = v.pane_image(PaneKind::Gt).expect("gt");
    let b = v.pane_image(PaneKind::Gt).expect("gt");
    assert_eq!(a.stamp, b.stamp, "same slice: same texture content");
    v.step_slice(1);
    let c = v.pane_image(PaneKind::Gt).expect("gt");
    assert_ne!(a.stamp, c.stamp);
    assert_ne!(a.plane, c.plane);
    // No checkpoint: the SR pane says so.
    assert_eq!(
        v.pane_image(PaneKind::Sr(Slot::A)).map(|_| ()),
        Err(PaneEmpty::NoRun)
    );
}

#[test]
fn dicom_folder_with_two_series_asks_which_then_opens_it() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/fixtures");
    let dir = tempfile::tempdir().expect("tempdir");
    let series = fixtures.join("dicom_series_tiny16");
    for e in std::fs::read_dir(&series)
        .expect("fixture folder")
        .flatten()
    {
        std::fs::copy(e.path(), dir.path().join(e.file_name())).expect("copy");
    }
    std::fs::copy(
        fixtures.join("dicom_single_mr_small/MR_small.dcm"),
        dir.path().join("other.dcm"),
    )
    .expect("copy");
    let mut v = viewer();
    v.open(dir.path().to_path_buf(), None);
    wait_until(&mut v, "series list", |v| v.document().loading().is_none());
    let choice = v
        .dialogs()
        .series_choice()
        .cloned()
        .expect("a series choice");
    assert_eq!(choice.series.len(), 2);
    let tiny = choice
        .series
        .iter()
        .find(|s| s.files == 7)
        .expect("the 7-file series");
    v.open(choice.folder.clone(), Some(tiny.uid.clone()));
    assert!(v.dialogs().series_choice().is_none());
    wait_until(&mut v, "the chosen series", |v| {
        v.document().loading().is_none() && v.document().preparing().is_none()
    });
    assert!(v.messages().iter().all(|m| !m.error), "{:?}", v.messages());
    let p = v.prepared().expect("prepared");
    assert_eq!(p.sr_slices(), 7);
}

#[test]
fn bad_file_shows_a_message_and_no_crash() {
    let mut v = viewer();
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.nii.gz");
    std::fs::write(&bad, b"\x1f\x8bnot really gzip").expect("write");
    v.open(bad, None);
    wait_until(&mut v, "load failure", |v| v.document().loading().is_none());
    assert!(v.prepared().is_none());
    let m = v.messages().last().expect("message");
    assert!(m.error && m.text.contains("bad.nii.gz"), "{m:?}");
}
