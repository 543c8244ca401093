//! `deltawkv upscale` and `deltawkv bench` end to end (small volume, tiny network).

use std::path::Path;
use std::process::Command;

use crate::common::*;
use deltawkv::model::{Checkpoint, Degradation};
use deltawkv::volume::{self, LoadOptions, Volume, VolumeMeta};

fn exe() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deltawkv"));
    c.env(
        "DELTAWKV_CACHE_DIR",
        std::env::temp_dir().join("deltawkv-test-cache"),
    );
    c
}

fn tiny_checkpoint(dir: &Path, degradation: Degradation) -> std::path::PathBuf {
    let cfg = small_config(2, degradation);
    let path = dir.join("tiny_x2.safetensors");
    Checkpoint::random(&cfg, 3).save(&path).unwrap();
    path
}

/// An MRI-like 9 x 7 x 3 volume (intensities up to ~800) with a rotated, offset affine.
fn write_volume(path: &Path) -> Volume {
    let dims = [9usize, 7, 3];
    let data = rand_vec(41, dims.iter().product(), 0.0, 800.0);
    let vol = Volume {
        data,
        dims,
        spacing: [1.2, 1.1, 3.0],
        affine: [
            [0.0, -1.1, 0.0, 12.0],
            [1.2, 0.0, 0.0, -30.0],
            [0.0, 0.0, 3.0, 5.5],
            [0.0, 0.0, 0.0, 1.0],
        ],
        meta: VolumeMeta::default(),
    };
    volume::save_nifti(&vol, path).unwrap();
    vol
}

fn upscale(input: &Path, output: &Path, weights: &Path, device: &str) -> serde_json::Value {
    let out = exe()
        .args(["upscale"])
        .arg(input)
        .arg(output)
        .args(["--scale", "2", "--device", device, "--json", "--weights"])
        .arg(weights)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "upscale failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

#[test]
fn upscale_gpu_matches_cpu_and_keeps_geometry() {
    if ctx().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let weights = tiny_checkpoint(dir.path(), Degradation::Kspace);
    let input = dir.path().join("in.nii.gz");
    let vol = write_volume(&input);
    let (gpu_path, cpu_path) = (dir.path().join("gpu.nii.gz"), dir.path().join("cpu.nii.gz"));
    let j = upscale(&input, &gpu_path, &weights, "gpu");
    assert!(j["backend"].as_str().unwrap().starts_with("GPU: "), "{j}");
    assert_eq!(j["slices"], 3);
    assert_eq!(j["output_dims"], serde_json::json!([18, 14, 3]));
    upscale(&input, &cpu_path, &weights, "cpu");

    let g = volume::load(&gpu_path, &LoadOptions::default()).unwrap();
    let c = volume::load(&cpu_path, &LoadOptions::default()).unwrap();
    assert_eq!(g.dims, [18, 14, 3]);
    check(
        "upscale --device gpu vs --device cpu",
        &g.data,
        &c.data,
        1e-4,
    );
    // Back on the original intensity scale (not [0, 1]).
    let max = g.data.iter().fold(0.0f32, |a, &b| a.max(b));
    assert!(max > 50.0, "output max {max}");
    // k-space geometry: same origin, in-plane voxel size halved, slice axis unchanged.
    for r in 0..3 {
        assert!(
            (g.affine[r][3] - vol.affine[r][3]).abs() < 1e-4,
            "{:?}",
            g.affine
        );
        for a in 0..2 {
            assert!(
                (g.affine[r][a] - vol.affine[r][a] / 2.0).abs() < 1e-4,
                "{:?}",
                g.affine
            );
        }
        assert!(
            (g.affine[r][2] - vol.affine[r][2]).abs() < 1e-4,
            "{:?}",
            g.affine
        );
    }
}

#[test]
fn upscale_without_weights_names_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.nii.gz");
    write_volume(&input);
    // The binary looks for weights/ next to itself and up to four folders above it, which finds
    // the repository's shipped checkpoints; a copy in a folder of its own finds none.
    let bin_dir = dir.path().join("a").join("b").join("c").join("d").join("e");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let bin = bin_dir.join("deltawkv");
    std::fs::copy(env!("CARGO_BIN_EXE_deltawkv"), &bin).unwrap();
    let out = std::process::Command::new(&bin)
        .env("DELTAWKV_CACHE_DIR", dir.path().join("cache"))
        .current_dir(dir.path())
        .env_remove("DELTAWKV_WEIGHTS_DIR")
        .args(["upscale"])
        .arg(&input)
        .arg(dir.path().join("o.nii.gz"))
        .args(["--scale", "4"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("dwkv3m_x4.safetensors") && err.contains("--weights"),
        "{err}"
    );
}

#[test]
fn bench_json() {
    if ctx().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let weights = tiny_checkpoint(dir.path(), Degradation::Kspace);
    let out = exe()
        .args([
            "bench",
            "--size",
            "6x5",
            "--slices",
            "3",
            "--cpu-slices",
            "2",
            "--repeat",
            "1",
        ])
        .args(["--device", "gpu", "--json", "--weights"])
        .arg(&weights)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let g = &j["gpu"];
    assert!(g["seconds_per_slice"].as_f64().unwrap() > 0.0, "{j}");
    assert!(
        g["buffer_bytes"].as_u64().unwrap() > g["weight_bytes"].as_u64().unwrap(),
        "{j}"
    );
    assert!(g["matmul_gflops"].as_f64().unwrap() > 0.0, "{j}");
    assert!(
        j["cpu_reference"]["seconds_per_slice"].as_f64().unwrap() > 0.0,
        "{j}"
    );
    assert!(j["cpu_over_gpu_time"].as_f64().unwrap() > 0.0, "{j}");
    assert!(
        j["max_rel_error_gpu_vs_cpu"].as_f64().unwrap() < 1e-4,
        "{j}"
    );
}
