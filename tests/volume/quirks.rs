//! What scanners and archives really send (tests/data/dicom_quirks, README-fixtures.md says how
//! each file was made): bytes after the data set, a bare data set without preamble or meta group,
//! a folder holding a DICOMDIR, and a series with unreadable files, which opens without them and
//! names each one; an unreadable file given alone still fails with its error.

use std::path::{Path, PathBuf};

use deltawkv::volume::{self, LoadOptions, Volume};

fn quirk(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/dicom_quirks")
        .join(rel)
}

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fixtures")
        .join(rel)
}

fn load(p: &Path) -> Volume {
    volume::load(p, &LoadOptions::default()).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn same_volume(a: &Volume, b: &Volume) {
    assert_eq!(a.dims, b.dims);
    assert_eq!(a.data, b.data);
    for r in 0..3 {
        for c in 0..4 {
            assert!((a.affine[r][c] - b.affine[r][c]).abs() < 1e-9);
        }
    }
}

#[test]
fn zero_padding_after_the_pixel_data_is_ignored() {
    let v = load(&quirk("padded_after_pixels.dcm"));
    same_volume(&v, &load(&fixture("dicom_single_mr_small/MR_small.dcm")));
}

#[test]
fn a_bare_data_set_without_preamble_or_meta_group_opens() {
    let v = load(&quirk("no_meta_header.dcm"));
    same_volume(
        &v,
        &load(&fixture("dicom_single_mr_small/MR_small_implicit.dcm")),
    );
    // Inside a folder too.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(quirk("no_meta_header.dcm"), dir.path().join("IM1")).expect("copy");
    same_volume(&load(dir.path()), &v);
}

#[test]
fn a_folder_with_a_dicomdir_opens_its_series() {
    let v = load(&quirk("with_dicomdir"));
    same_volume(&v, &load(&fixture("dicom_series_tiny16")));
    assert!(v.meta.skipped.is_empty(), "{:?}", v.meta.skipped);
}

#[test]
fn a_series_opens_without_its_unreadable_files_and_names_them() {
    let v = load(&quirk("one_unreadable"));
    let full = load(&fixture("dicom_series_tiny16"));
    assert_eq!(v.dims[2], full.dims[2] - 2);
    let mut names: Vec<String> = v
        .meta
        .skipped
        .iter()
        .map(|s| {
            s.path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["4528", "4558"]);
    for s in &v.meta.skipped {
        assert!(!s.reason.is_empty());
        let name = s.path.display().to_string();
        assert!(
            v.meta
                .notes
                .iter()
                .any(|n| n.contains("skipped") && n.contains(&name)),
            "{:?}",
            v.meta.notes
        );
    }
}

#[test]
fn an_unreadable_file_alone_still_fails() {
    for name in ["4528", "4558"] {
        let p = quirk(&format!("one_unreadable/{name}"));
        let e = volume::load(&p, &LoadOptions::default()).expect_err("fails");
        assert!(e.to_string().contains(name), "{e}");
        // A folder holding only that file fails as well: nothing is left to open.
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::copy(&p, dir.path().join(name)).expect("copy");
        assert!(volume::load(dir.path(), &LoadOptions::default()).is_err());
    }
}
