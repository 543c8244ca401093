//! `deltawkv upscale --format dicom` and `deltawkv info` on imperfect series, through the real
//! binary: the `--format` default rule (NIfTI for `.nii`/`.nii.gz`, DICOM otherwise), `--json`
//! naming the written series, patient options for a NIfTI input, a folder holding files refused
//! with exit 1 before any inference, and the skipped files of a series reported by `info`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use deltawkv::model::{Checkpoint, Degradation};

use crate::common::minimal_config;

const BIN: &str = env!("CARGO_BIN_EXE_deltawkv");

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

fn run(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("DELTAWKV_MEMORY_BUDGET")
        .env("NO_COLOR", "1")
        .output()
        .expect("run deltawkv")
}

macro_rules! args {
    ($($a:expr),* $(,)?) => { &[$(std::ffi::OsStr::new($a)),*] };
}

fn json_of(o: &Output) -> serde_json::Value {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("one JSON object")
}

fn upscale(input: &Path, out: &Path, weights: &Path, extra: &[&str]) -> Output {
    let mut a: Vec<&std::ffi::OsStr> = args![
        "upscale",
        input,
        out,
        "--scale",
        "2",
        "--device",
        "cpu",
        "--weights",
        weights,
        "--json"
    ]
    .to_vec();
    a.extend(extra.iter().map(std::ffi::OsStr::new));
    run(&a)
}

#[test]
fn format_follows_the_output_name_and_json_names_the_series() {
    let dir = tempfile::tempdir().expect("tempdir");
    let weights = dir.path().join("tiny_x2.safetensors");
    Checkpoint::random(&minimal_config(2, Degradation::Kspace), 5)
        .save(&weights)
        .expect("save");
    let series = data("fixtures/dicom_series_tiny16");

    // No .nii in the name: a DICOM series.
    let out = dir.path().join("sr_dicom");
    let j = json_of(&upscale(&series, &out, &weights, &[]));
    assert_eq!(j["format"], "dicom");
    let files = j["series"]["files"].as_array().expect("files");
    assert_eq!(files.len(), 7);
    assert_eq!(j["series"]["folder"], out.display().to_string());
    let uid = j["series"]["series_instance_uid"].as_str().expect("uid");
    assert!(uid.starts_with("2.25.") && uid.len() <= 64);
    for f in files {
        assert!(Path::new(f.as_str().expect("path")).is_file());
    }
    let back = json_of(&run(args!["info", "--json", &out]));
    assert_eq!(back["dims"], serde_json::json!([32, 32, 7]));

    // .nii.gz: NIfTI, as before; --format overrides the name.
    let nii = dir.path().join("sr.nii.gz");
    let j = json_of(&upscale(&series, &nii, &weights, &[]));
    assert_eq!(j["format"], "nifti");
    assert!(j["series"].is_null() && nii.is_file());
    let forced = dir.path().join("forced.nii");
    let j = json_of(&upscale(&series, &forced, &weights, &["--format", "dicom"]));
    assert_eq!(j["format"], "dicom");
    assert!(forced.is_dir());

    // A NIfTI input starts a new study for the patient named on the command line.
    let from_nii = dir.path().join("from_nifti");
    let j = json_of(&upscale(
        &nii,
        &from_nii,
        &weights,
        &["--patient-name", "Doe^John", "--patient-id", "ID42"],
    ));
    let first = j["series"]["files"][0].as_str().expect("file").to_string();
    let o = dicom_object::open_file(&first).expect("open");
    let name = o
        .element(dicom_dictionary_std::tags::PATIENT_NAME)
        .expect("name")
        .to_str()
        .expect("str")
        .to_string();
    assert_eq!(name.trim_end_matches(['\0', ' ']), "Doe^John");
}

#[test]
fn a_folder_holding_files_is_refused_before_inference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let weights = dir.path().join("tiny_x2.safetensors");
    Checkpoint::random(&minimal_config(2, Degradation::Kspace), 5)
        .save(&weights)
        .expect("save");
    let taken = dir.path().join("taken");
    std::fs::create_dir(&taken).expect("mkdir");
    std::fs::write(taken.join("keep"), b"x").expect("write");
    let o = upscale(&data("fixtures/dicom_series_tiny16"), &taken, &weights, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("already holds files") && err.contains("taken"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
    let names: Vec<_> = std::fs::read_dir(&taken).expect("dir").flatten().collect();
    assert_eq!(names.len(), 1);
}

#[test]
fn info_names_the_skipped_files_of_a_series() {
    let folder = data("dicom_quirks/one_unreadable");
    let j = json_of(&run(args!["info", "--json", &folder]));
    let skipped = j["skipped"].as_array().expect("skipped");
    assert_eq!(skipped.len(), 2);
    let text = run(args!["info", &folder]);
    assert!(text.status.success());
    let out = String::from_utf8_lossy(&text.stdout);
    for name in ["4528", "4558"] {
        assert!(out.contains(name), "{out}");
        assert!(
            skipped
                .iter()
                .any(|s| s["path"].as_str().is_some_and(|p| p.ends_with(name))),
            "{skipped:?}"
        );
    }
    // Alone, the unreadable file fails with its error.
    let o = run(args!["info", &folder.join("4528")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("4528"));
}
