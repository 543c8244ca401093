//! `--data-consistency` of `deltawkv eval` and `deltawkv upscale`, and `eval --realistic`, end
//! to end on small synthetic volumes with a small random checkpoint on the CPU reference.

use std::path::{Path, PathBuf};
use std::process::Output;

use deltawkv::degrade;
use deltawkv::model::{Checkpoint, Degradation};
use deltawkv::volume::{self, Axis, Volume};

use crate::common::small_config;
use crate::metrics::{bin, volume as synthetic};

/// A textured phantom, values in about [20, 100] (no negative voxels).
fn phantom(dims: [usize; 3]) -> Volume {
    synthetic(dims, |i, j, k| {
        let (x, y, z) = (i as f32, j as f32, k as f32);
        let edge = if (x - 12.0).powi(2) + (y - 10.0).powi(2) < 40.0 {
            25.0
        } else {
            0.0
        };
        55.0 + 20.0 * (0.31 * x + 0.1 * z).sin() * (0.23 * y).cos() + edge
            - 10.0 * ((i * 7 + j * 3) % 4) as f32 / 4.0
    })
}

struct Files {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    gt: PathBuf,
    kspace: PathBuf,
    bicubic: PathBuf,
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let gt = dir.path().join("gt.nii.gz");
    volume::save_nifti(&phantom([26, 22, 3]), &gt).unwrap();
    let kspace = dir.path().join("k_x2.safetensors");
    Checkpoint::random(&small_config(2, Degradation::Kspace), 7)
        .save(&kspace)
        .unwrap();
    let bicubic = dir.path().join("b_x2.safetensors");
    Checkpoint::random(&small_config(2, Degradation::Bicubic), 7)
        .save(&bicubic)
        .unwrap();
    Files {
        dir: dir.path().to_path_buf(),
        _dir: dir,
        gt,
        kspace,
        bicubic,
    }
}

fn json(out: Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.trim().lines().count(), 1, "one JSON object: {text}");
    serde_json::from_str(text.trim()).unwrap()
}

fn eval(f: &Files, weights: &Path, extra: &[&str]) -> Output {
    bin()
        .arg("eval")
        .arg(&f.gt)
        .args(["--scale", "2", "--device", "cpu", "--json", "--weights"])
        .arg(weights)
        .args(extra)
        .output()
        .unwrap()
}

/// `deltawkv upscale GT DIR/name --scale 2 --device cpu --json --weights k_x2 EXTRA...`: its JSON
/// object and the output's path.
fn upscale(f: &Files, name: &str, extra: &[&str]) -> (serde_json::Value, PathBuf) {
    let out = f.dir.join(name);
    let output = bin()
        .arg("upscale")
        .arg(&f.gt)
        .arg(&out)
        .args(["--scale", "2", "--device", "cpu", "--json", "--weights"])
        .arg(&f.kspace)
        .args(extra)
        .output()
        .unwrap();
    (json(output), out)
}

/// A user error: exit 1, a message on stderr naming `what`, no panic.
fn refused(out: Output, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(what), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

const STANDARD_KEYS: [&str; 12] = [
    "psnr_sr",
    "ssim_sr",
    "mean_slice_psnr_sr",
    "psnr_zerofill",
    "ssim_zerofill",
    "mean_slice_psnr_zerofill",
    "psnr_bicubic",
    "ssim_bicubic",
    "mean_slice_psnr_bicubic",
    "psnr_nearest",
    "ssim_nearest",
    "mean_slice_psnr_nearest",
];

#[test]
fn eval_reports_the_data_consistent_sr_beside_the_sr() {
    let f = files();
    let plain = json(eval(&f, &f.kspace, &["--per-slice"]));
    assert_eq!(plain["data_consistency"], false);
    for key in ["psnr_sr_dc", "ssim_sr_dc", "consistency_residual_rms_sr"] {
        assert!(plain[key].is_null(), "{key}: {plain}");
    }
    assert!(plain["realistic"].is_null());

    let dc = json(eval(&f, &f.kspace, &["--per-slice", "--data-consistency"]));
    assert_eq!(dc["data_consistency"], true);
    // The standard rows are unchanged by the option.
    for key in STANDARD_KEYS {
        assert_eq!(dc[key], plain[key], "{key}");
    }
    let rms = dc["consistency_residual_rms_sr"].as_f64().unwrap();
    assert!(rms > 1e-4, "a random network is not consistent: {rms}");
    let (sr, sr_dc) = (
        dc["psnr_sr"].as_f64().unwrap(),
        dc["psnr_sr_dc"].as_f64().unwrap(),
    );
    // A random network's SR is far off; its central k-space replaced by the truth's, it is at
    // least as good as zero-filling the LR (the same centre, plus whatever the network adds
    // outside it, which is little for this checkpoint).
    assert!(sr_dc > sr + 1.0, "sr {sr}, sr_dc {sr_dc}");
    assert!(dc["ssim_sr_dc"].as_f64().is_some());
    let slices = dc["per_slice"].as_array().unwrap();
    assert_eq!(slices.len(), 3);
    assert!(slices.iter().all(|s| s["psnr_sr_dc"].as_f64().is_some()));
}

#[test]
fn data_consistency_is_refused_where_it_is_not_defined() {
    let f = files();
    refused(
        eval(&f, &f.bicubic, &["--data-consistency"]),
        "k-space truncation only",
    );
    // The checkpoint's k-space, but the LR made by bicubic downsampling.
    refused(
        eval(
            &f,
            &f.kspace,
            &["--data-consistency", "--degrade", "bicubic"],
        ),
        "k-space truncation only",
    );
    refused(
        eval(&f, &f.kspace, &["--data-consistency", "--baselines-only"]),
        "--baselines-only",
    );
    let out = bin()
        .arg("upscale")
        .arg(&f.gt)
        .arg(f.dir.join("out.nii.gz"))
        .args(["--scale", "2", "--device", "cpu", "--data-consistency"])
        .arg("--weights")
        .arg(&f.bicubic)
        .output()
        .unwrap();
    refused(out, "k-space truncation only");
    assert!(!f.dir.join("out.nii.gz").exists());
}

#[test]
fn upscale_makes_the_output_consistent_with_the_input() {
    let f = files();
    let (plain, plain_path) = upscale(&f, "plain.nii.gz", &[]);
    assert_eq!(plain["data_consistency"], false);
    assert!(plain["consistency_residual_rms"].is_null());
    let (dc, dc_path) = upscale(&f, "dc.nii.gz", &["--data-consistency"]);
    assert_eq!(dc["data_consistency"], true);
    assert!(dc["consistency_residual_rms"].as_f64().unwrap() > 1e-4);

    // k-space truncation of each output slice against the input slice, in file units.
    let input = phantom([26, 22, 3]);
    let worst = |path: &Path| {
        let out = volume::load(path, &Default::default()).unwrap();
        let mut worst = 0.0f32;
        for k in 0..3 {
            let sr = out.slice(Axis::Axial, k).unwrap();
            let lr = input.slice(Axis::Axial, k).unwrap();
            let d = degrade::kspace_truncate(&sr, 2).unwrap();
            for (a, b) in d.data.iter().zip(&lr.data) {
                worst = worst.max((a - b).abs());
            }
        }
        worst
    };
    let (before, after) = (worst(&plain_path), worst(&dc_path));
    // Measured: 7.6e-6 after (one f32 ulp of values near 100), 94 before; pinned at 4e-5.
    assert!(after < 4e-5, "after DC: {after}");
    assert!(before > 1.0, "before DC: {before}");
}

#[test]
fn realistic_is_reported_beside_the_standard_protocol_and_reproducible() {
    let f = files();
    let plain = json(eval(&f, &f.kspace, &[]));
    let a = json(eval(&f, &f.kspace, &["--realistic", "--per-slice"]));
    for key in STANDARD_KEYS {
        assert_eq!(a[key], plain[key], "{key}: the standard protocol changed");
    }
    let r = &a["realistic"];
    assert_eq!(r["parameters"]["noise"].as_f64(), Some(0.02));
    assert_eq!(r["parameters"]["tukey"].as_f64(), Some(0.25));
    assert_eq!(r["parameters"]["partial_fourier"].as_f64(), Some(1.0));
    assert_eq!(r["parameters"]["seed"], 0);
    assert!(
        r["parameters"]["noise_relative_to"]
            .as_str()
            .unwrap()
            .contains("99.5th percentile")
    );
    for key in STANDARD_KEYS {
        assert!(r[key].as_f64().is_some(), "realistic {key}: {r}");
    }
    assert_eq!(r["per_slice"].as_array().map(Vec::len), Some(3));
    // Noise and filter cost the zero-filled baseline.
    assert!(r["psnr_zerofill"].as_f64() < plain["psnr_zerofill"].as_f64());

    // Same seed, same numbers; another seed, other numbers.
    let b = json(eval(&f, &f.kspace, &["--realistic", "--per-slice"]));
    assert_eq!(a["realistic"]["psnr_sr"], b["realistic"]["psnr_sr"]);
    assert_eq!(a["realistic"]["per_slice"], b["realistic"]["per_slice"]);
    let c = json(eval(&f, &f.kspace, &["--realistic", "--seed", "5"]));
    assert_ne!(
        a["realistic"]["psnr_zerofill"],
        c["realistic"]["psnr_zerofill"]
    );
    // The parameters reach the acquisition: more noise, lower PSNR.
    let d = json(eval(
        &f,
        &f.kspace,
        &[
            "--realistic",
            "--noise",
            "0.1",
            "--tukey",
            "0",
            "--partial-fourier",
            "0.75",
        ],
    ));
    assert_eq!(
        d["realistic"]["parameters"]["partial_fourier"].as_f64(),
        Some(0.75)
    );
    assert!(d["realistic"]["psnr_zerofill"].as_f64() < a["realistic"]["psnr_zerofill"].as_f64());
    // With data consistency both protocols get an sr_dc row.
    let e = json(eval(&f, &f.kspace, &["--realistic", "--data-consistency"]));
    assert!(e["psnr_sr_dc"].as_f64().is_some());
    assert!(e["realistic"]["psnr_sr_dc"].as_f64().is_some());

    refused(
        eval(&f, &f.kspace, &["--realistic", "--partial-fourier", "0.3"]),
        "partial-Fourier",
    );
    refused(eval(&f, &f.kspace, &["--noise", "0.1"]), "--realistic");
    refused(
        eval(&f, &f.kspace, &["--realistic", "--degrade", "bicubic"]),
        "k-space",
    );
}

/// `--self-ensemble` of `eval`, `upscale` and `batch`: the network averaged over the eight
/// orientations of each slice, named in the backend, the baselines untouched, and `batch`
/// writing what `upscale` writes, bit for bit.
#[test]
fn self_ensemble_is_an_option_of_eval_upscale_and_batch() {
    let f = files();
    let plain = json(eval(&f, &f.kspace, &["--data-consistency"]));
    let ens = json(eval(
        &f,
        &f.kspace,
        &["--data-consistency", "--self-ensemble"],
    ));
    assert_eq!(plain["self_ensemble"], false);
    assert_eq!(ens["self_ensemble"], true);
    let device = ens["device"].as_str().unwrap();
    assert!(device.ends_with("(self-ensemble x8)"), "{device}");
    for key in ["psnr_zerofill", "psnr_bicubic", "ssim_nearest"] {
        assert_eq!(ens[key], plain[key], "{key}");
    }
    for key in ["psnr_sr", "psnr_sr_dc", "ssim_sr"] {
        assert_ne!(
            ens[key], plain[key],
            "{key}: a random network is not equivariant"
        );
    }
    refused(
        eval(&f, &f.kspace, &["--self-ensemble", "--baselines-only"]),
        "--baselines-only",
    );

    let run = |name: &str, ensemble: bool| {
        let extra: &[&str] = if ensemble { &["--self-ensemble"] } else { &[] };
        let (j, out) = upscale(&f, name, extra);
        assert_eq!(j["self_ensemble"], ensemble);
        assert_eq!(
            j["backend"].as_str().unwrap().contains("self-ensemble"),
            ensemble,
            "{j}"
        );
        volume::load(&out, &Default::default()).unwrap()
    };
    let (plain_vol, ens_vol) = (run("plain.nii.gz", false), run("ens.nii.gz", true));
    assert_eq!(plain_vol.dims, ens_vol.dims);
    assert_ne!(plain_vol.data, ens_vol.data);

    let inputs = f.dir.join("inputs");
    std::fs::create_dir(&inputs).unwrap();
    std::fs::copy(&f.gt, inputs.join("gt.nii.gz")).unwrap();
    let out_dir = f.dir.join("batch");
    let out = bin()
        .arg("batch")
        .arg(&inputs)
        .arg(&out_dir)
        .args([
            "--scale",
            "2",
            "--device",
            "cpu",
            "--self-ensemble",
            "--weights",
        ])
        .arg(&f.kspace)
        .args(["--json"])
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("JOB_COMPLETION_INDEX")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let batched = volume::load(&out_dir.join("gt.nii.gz"), &Default::default()).unwrap();
    assert_eq!(batched.data, ens_vol.data);
}
