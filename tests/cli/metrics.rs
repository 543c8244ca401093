//! `deltawkv compare` and `deltawkv eval` end to end on small synthetic volumes.

use std::path::Path;
use std::process::Command;

use deltawkv::degrade::{self, Baseline};
use deltawkv::metrics;
use deltawkv::model::{Checkpoint, Degradation};
use deltawkv::plane::Plane;
use deltawkv::volume::{self, Axis, Volume, VolumeMeta};

use crate::common::small_config;

/// The binary under test; `DELTAWKV_BIN` overrides it (useful where several checkouts share one
/// `CARGO_TARGET_DIR` and `target/debug/deltawkv` may belong to another one).
pub(crate) fn bin() -> Command {
    let path =
        std::env::var_os("DELTAWKV_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_deltawkv").into());
    Command::new(path)
}

/// A volume of `dims` with voxel `(i, j, k)` = `f(i, j, k)`, unit spacing, identity affine.
pub(crate) fn volume(dims: [usize; 3], f: impl Fn(usize, usize, usize) -> f32) -> Volume {
    let mut data = Vec::with_capacity(dims.iter().product());
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                data.push(f(i, j, k));
            }
        }
    }
    let mut affine = [[0.0; 4]; 4];
    for (d, row) in affine.iter_mut().enumerate() {
        row[d] = 1.0;
    }
    Volume {
        data,
        dims,
        spacing: [1.0; 3],
        affine,
        meta: VolumeMeta::default(),
    }
}

/// A smooth phantom with some texture, values in about [0, 100].
fn phantom(i: usize, j: usize, k: usize) -> f32 {
    let (x, y, z) = (i as f32, j as f32, k as f32);
    50.0 + 30.0 * (0.21 * x + 0.1 * z).sin() * (0.17 * y).cos() + 15.0 * (0.05 * x * y / 7.0).sin()
}

fn run_json(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.output().expect("run deltawkv");
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(text.trim().lines().count(), 1, "one JSON object: {text}");
    serde_json::from_str(text.trim()).expect("JSON")
}

fn save(vol: &Volume, path: &Path) {
    volume::save_nifti(vol, path).expect("save NIfTI");
}

#[test]
fn compare_matches_the_library_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let reference = volume([20, 16, 3], phantom);
    let test = volume([20, 16, 3], |i, j, k| {
        phantom(i, j, k) + ((i * 7 + j * 3 + k) % 5) as f32 - 2.0
    });
    let (rp, tp) = (
        dir.path().join("ref.nii.gz"),
        dir.path().join("test.nii.gz"),
    );
    save(&reference, &rp);
    save(&test, &tp);

    let got = run_json(bin().arg("compare").arg(&tp).arg(&rp).arg("--json"));
    let st = reference.stats();
    let dr = f64::from(st.max) - f64::from(st.min);
    let rs: Vec<Plane> = (0..3)
        .map(|k| reference.slice(Axis::Axial, k).unwrap())
        .collect();
    let ts: Vec<Plane> = (0..3)
        .map(|k| test.slice(Axis::Axial, k).unwrap())
        .collect();
    let (want, _) = metrics::volume_metrics(&rs, &ts, dr).unwrap();
    assert!((got["data_range"].as_f64().unwrap() - dr).abs() < 1e-9);
    assert!((got["psnr"].as_f64().unwrap() - want.psnr).abs() < 1e-9);
    assert!((got["ssim"].as_f64().unwrap() - want.ssim).abs() < 1e-12);
    assert_eq!(got["slices"], 3);

    let same =
        run_json(
            bin()
                .arg("compare")
                .arg(&rp)
                .arg(&rp)
                .args(["--json", "--data-range", "100"]),
        );
    assert!(
        same["psnr"].is_null(),
        "identical volumes: PSNR +inf prints as null"
    );
    assert_eq!(same["ssim"].as_f64(), Some(1.0));
    assert_eq!(same["data_range"].as_f64(), Some(100.0));

    // Different grids and bad ranges are user errors: exit 1 with a message.
    let other = dir.path().join("other.nii.gz");
    save(&volume([20, 16, 2], phantom), &other);
    for args in [
        vec![other.as_os_str(), rp.as_os_str()],
        vec![
            tp.as_os_str(),
            rp.as_os_str(),
            "--data-range".as_ref(),
            "0".as_ref(),
        ],
    ] {
        let out = bin().arg("compare").args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(!out.stderr.is_empty());
    }
}

fn tiny_checkpoint(scale: usize, degradation: Degradation) -> Checkpoint {
    let config = small_config(scale, degradation);
    Checkpoint::random(&config, 7)
}

#[test]
fn eval_reports_sr_and_baselines() {
    let dir = tempfile::tempdir().unwrap();
    // 27 x 24 in-plane: cropped to 26 x 24 at x2.
    let gt = volume([27, 24, 4], phantom);
    let gp = dir.path().join("gt.nii.gz");
    save(&gt, &gp);
    let wp = dir.path().join("tiny_x2.safetensors");
    tiny_checkpoint(2, Degradation::Bicubic).save(&wp).unwrap();

    let got = run_json(
        bin()
            .arg("eval")
            .arg(&gp)
            .args([
                "--scale",
                "2",
                "--slices",
                "1:3",
                "--device",
                "cpu",
                "--per-slice",
                "--json",
            ])
            .arg("--weights")
            .arg(&wp),
    );
    for key in [
        "psnr_sr",
        "ssim_sr",
        "psnr_bicubic",
        "ssim_bicubic",
        "psnr_zerofill",
        "ssim_zerofill",
        "psnr_nearest",
        "ssim_nearest",
        "seconds",
    ] {
        assert!(got[key].as_f64().is_some(), "{key} missing: {got}");
    }
    assert_eq!(got["scale"], 2);
    assert_eq!(got["slices"], 2);
    assert_eq!(got["data_range"].as_f64(), Some(1.0));
    // The degradation defaults to the checkpoint's.
    assert_eq!(got["degradation"], "bicubic");
    assert_eq!(got["hr_size"], serde_json::json!([26, 24]));
    assert_eq!(got["per_slice"].as_array().map(Vec::len), Some(2));
    assert!(got["device"].as_str().is_some_and(|d| !d.is_empty()));

    // The bicubic baseline recomputed here from the same protocol.
    let rm = f64::from(gt.percentiles(&[99.5])[0]);
    let mut acc = metrics::VolumeAccumulator::new(1.0).unwrap();
    for k in 1..3 {
        let mut p = gt.slice(Axis::Axial, k).unwrap();
        for v in &mut p.data {
            *v = (f64::from(*v) / rm).clamp(0.0, 1.0) as f32;
        }
        let hr = degrade::crop_to_multiple(&p, 2).unwrap();
        let lr = degrade::degrade(&hr, 2, Degradation::Bicubic).unwrap();
        let mut up = degrade::upsample(&lr, 2, Baseline::Bicubic, Degradation::Bicubic).unwrap();
        for v in &mut up.data {
            *v = v.clamp(0.0, 1.0);
        }
        acc.add(&hr, &up).unwrap();
    }
    let want = acc.finish().unwrap();
    assert!((got["psnr_bicubic"].as_f64().unwrap() - want.psnr).abs() < 1e-4);
    assert!((got["ssim_bicubic"].as_f64().unwrap() - want.ssim).abs() < 1e-6);

    // --baselines-only needs no weights; --degrade overrides; a wrong scale and a missing
    // default checkpoint are user errors.
    let b = run_json(bin().arg("eval").arg(&gp).args([
        "--scale",
        "4",
        "--baselines-only",
        "--degrade",
        "kspace",
        "--json",
    ]));
    assert!(b["psnr_sr"].is_null());
    assert_eq!(b["degradation"], "kspace");
    assert!(b["psnr_zerofill"].as_f64().unwrap() > b["psnr_nearest"].as_f64().unwrap());
    let out = bin()
        .arg("eval")
        .arg(&gp)
        .args(["--scale", "4", "--weights"])
        .arg(&wp)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = bin()
        .current_dir(dir.path())
        .arg("eval")
        .arg(&gp)
        .args(["--scale", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--weights"));
}
