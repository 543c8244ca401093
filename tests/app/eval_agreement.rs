//! The viewer's numbers are the command line's numbers: on the same volume, checkpoint and
//! degradation, the volume PSNR/SSIM the viewer shows for SR and every baseline equal those of
//! `deltawkv eval --json` (same normalisation, stored voxel order, geometry and clamping).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deltawkv::app::jobs::CheckpointSource;
use deltawkv::app::metrics_cache::{ResultId, Slot};
use deltawkv::app::{AppOptions, Settings, Viewer};
use deltawkv::degrade::Baseline;
use deltawkv::engine::DeviceChoice;
use deltawkv::model::{Checkpoint, Degradation};

use crate::common::tiny_config;

fn crop() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/app/pd_crop_96x96x6.nii.gz")
}

fn run(degradation: Degradation) {
    let dir = tempfile::tempdir().expect("tempdir");
    let weights = dir.path().join("tiny_x2.safetensors");
    let config = tiny_config(2, degradation);
    Checkpoint::random(&config, 3)
        .save(&weights)
        .expect("save checkpoint");

    let out = Command::new(env!("CARGO_BIN_EXE_deltawkv"))
        .args(["eval"])
        .arg(crop())
        .args(["--scale", "2", "--device", "cpu", "--json", "--degrade"])
        .arg(degradation.as_str())
        .arg("--weights")
        .arg(&weights)
        .output()
        .expect("run deltawkv eval");
    assert!(
        out.status.success(),
        "eval failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: serde_json::Value = serde_json::from_slice(&out.stdout).expect("eval JSON");

    let settings = Settings {
        degradation,
        device: DeviceChoice::Cpu,
        ..Settings::default()
    };
    let mut v = Viewer::new(
        AppOptions {
            path: Some(crop()),
            checkpoint: Some(CheckpointSource::File(weights.clone())),
            no_weights_discovery: true,
            settings: Some(settings.clone()),
            ..Default::default()
        },
        settings,
        None,
        Arc::new(|| {}),
    );
    let t0 = Instant::now();
    loop {
        v.poll();
        v.request_metrics();
        let done = v.run(Slot::A).is_some_and(|r| r.complete());
        if done && !v.busy() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(240),
            "viewer did not finish: {:?}",
            v.messages()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(v.messages().iter().all(|m| !m.error), "{:?}", v.messages());

    for (key, id) in [
        ("sr", ResultId::Sr(Slot::A)),
        ("zerofill", ResultId::Baseline(Baseline::Zerofill)),
        ("bicubic", ResultId::Baseline(Baseline::Bicubic)),
        ("nearest", ResultId::Baseline(Baseline::Nearest)),
    ] {
        let shown = v.metrics().volume(id).expect("volume metrics");
        assert_eq!(shown.slices, 6);
        let psnr = cli[format!("psnr_{key}")].as_f64().expect("psnr");
        let ssim = cli[format!("ssim_{key}")].as_f64().expect("ssim");
        assert!(
            (shown.psnr - psnr).abs() < 1e-6,
            "{key} ({degradation:?}): viewer {} dB, eval {psnr} dB",
            shown.psnr
        );
        assert!(
            (shown.ssim - ssim).abs() < 1e-8,
            "{key} ({degradation:?}): viewer SSIM {}, eval {ssim}",
            shown.ssim
        );
    }
}

#[test]
fn viewer_metrics_equal_eval_kspace() {
    run(Degradation::Kspace);
}

#[test]
fn viewer_metrics_equal_eval_bicubic() {
    run(Degradation::Bicubic);
}
