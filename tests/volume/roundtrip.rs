//! NIfTI writing round trips, atomic/safe writes, canonical reorientation and up/downsampled
//! geometry.

use std::path::{Path, PathBuf};

use deltawkv::model::Degradation;
use deltawkv::volume::{self, LoadOptions, Volume, VolumeError, geometry};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fixtures")
        .join(rel)
}

fn load(p: &Path) -> Volume {
    match volume::load(p, &LoadOptions::default()) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

fn max_affine_diff(a: &[[f64; 4]; 4], b: &[[f64; 4]; 4]) -> f64 {
    let mut m = 0.0f64;
    for r in 0..4 {
        for c in 0..4 {
            m = m.max((a[r][c] - b[r][c]).abs());
        }
    }
    m
}

fn le_i16(b: &[u8], off: usize) -> i16 {
    i16::from_le_bytes([b[off], b[off + 1]])
}
fn le_f32(b: &[u8], off: usize) -> f64 {
    f64::from(f32::from_le_bytes([
        b[off],
        b[off + 1],
        b[off + 2],
        b[off + 3],
    ]))
}

/// The qform affine written in a NIfTI-1 header (little-endian, uncompressed bytes).
fn written_qform(h: &[u8]) -> [[f64; 4]; 4] {
    let m = geometry::quaternion_to_matrix(
        le_f32(h, 256),
        le_f32(h, 260),
        le_f32(h, 264),
        le_f32(h, 76),
        [le_f32(h, 80), le_f32(h, 84), le_f32(h, 88)],
    );
    let mut a = geometry::IDENTITY;
    for r in 0..3 {
        a[r][..3].copy_from_slice(&m[r]);
        a[r][3] = le_f32(h, 268 + 4 * r);
    }
    a
}

fn read_maybe_gz(p: &Path) -> Vec<u8> {
    let raw = std::fs::read(p).expect("read");
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&raw[..]), &mut out)
            .expect("gunzip");
        out
    } else {
        raw
    }
}

#[test]
fn save_then_load_is_identical() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (src, out, code) in [
        ("nifti/example4d.nii.gz", "ex.nii.gz", 1i16), // oblique, LAS, sform 1
        ("nifti/anatomical.nii", "anat.nii", 2),       // big-endian source, aligned (2)
        ("nifti_dicom_pair/adi_slice.dcm", "adi.nii.gz", 1), // DICOM (scanner), PIR
        ("dicom_series_pd_oblique", "pd.nii", 1),      // DICOM series, sheared step
        ("dicom_enhanced_mr/emri_small_RLE.dcm", "emri.nii.gz", 1),
    ] {
        let v = load(&fixture(src));
        let p = dir.path().join(out);
        volume::save_nifti(&v, &p).expect("save");
        let back = load(&p);
        assert_eq!(back.dims, v.dims, "{src}");
        assert_eq!(back.data, v.data, "{src}: data changed");
        let d = max_affine_diff(&back.affine, &v.affine);
        assert!(d < 1e-4, "{src}: affine moved by {d}");
        assert_eq!(back.meta.datatype, "float32");
        assert_eq!(back.orientation_code(), v.orientation_code(), "{src}");
        // Header: float32, sform and qform codes, pixdim = column norms, qform = affine.
        let h = read_maybe_gz(&p);
        assert_eq!(le_i16(&h, 70), 16, "{src}: datatype float32");
        assert_eq!(
            (le_i16(&h, 252), le_i16(&h, 254)),
            (code, code),
            "{src}: qform/sform codes"
        );
        for i in 0..3 {
            assert!(
                (le_f32(&h, 80 + 4 * i) - v.spacing[i]).abs() < 1e-4,
                "{src}: pixdim[{}]",
                i + 1
            );
        }
        let q = written_qform(&h);
        // The qform is a rotation: exact for orthogonal affines; the PD series' slice step is
        // sheared by 0.1 degrees (rounded positions), which a qform cannot hold.
        let tol = if src == "dicom_series_pd_oblique" {
            0.01
        } else {
            1e-4
        };
        let dq = max_affine_diff(&q, &v.affine);
        assert!(dq < tol, "{src}: qform differs from affine by {dq}");
    }
}

#[test]
fn refuses_to_overwrite_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("in.nii.gz");
    std::fs::copy(fixture("nifti/example_nifti2.nii.gz"), &src).expect("copy");
    let before = std::fs::read(&src).expect("read");
    let v = load(&src);
    // Same file, also through a different spelling of the path.
    let twisted = dir.path().join(".").join("in.nii.gz");
    for target in [&src, &twisted] {
        let e = volume::save_nifti(&v, target).expect_err("must refuse");
        assert!(matches!(e, VolumeError::OutputIsInput { .. }), "{e:?}");
    }
    assert_eq!(
        std::fs::read(&src).expect("read"),
        before,
        "input untouched"
    );

    // Anything inside a source DICOM folder.
    let folder = dir.path().join("series");
    std::fs::create_dir(&folder).expect("mkdir");
    for e in std::fs::read_dir(fixture("dicom_series_pd_oblique")).expect("dir") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, folder.join(p.file_name().expect("name"))).expect("copy");
    }
    let v = load(&folder);
    let e = volume::save_nifti(&v, &folder.join("out.nii.gz")).expect_err("must refuse");
    assert!(matches!(e, VolumeError::OutputIsInput { .. }), "{e:?}");
    assert!(!folder.join("out.nii.gz").exists());
    volume::save_nifti(&v, &dir.path().join("out.nii.gz")).expect("next to the folder is fine");
}

#[test]
fn failed_write_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let v = load(&fixture("nifti/anatomical.nii"));
    // The final rename fails: the target is a folder.
    let target = dir.path().join("taken.nii.gz");
    std::fs::create_dir(&target).expect("mkdir");
    let e = volume::save_nifti(&v, &target).expect_err("must fail");
    assert!(matches!(e, VolumeError::Io { .. }), "{e:?}");
    // Wrong extension, missing folder: refused.
    assert!(matches!(
        volume::save_nifti(&v, &dir.path().join("x.png")),
        Err(VolumeError::Write { .. })
    ));
    assert!(volume::save_nifti(&v, &dir.path().join("nope/x.nii")).is_err());
    // Inconsistent volume: refused before writing.
    let mut bad = v.clone();
    bad.data.pop();
    assert!(matches!(
        volume::save_nifti(&bad, &dir.path().join("bad.nii")),
        Err(VolumeError::InvalidVolume(_))
    ));
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        vec!["taken.nii.gz".to_string()],
        "only the pre-existing folder remains"
    );
}

/// Every voxel of `canon` holds the value of the voxel of `orig` at the same world position.
fn assert_same_world(orig: &Volume, canon: &Volume) {
    let inv = geometry::invert(&orig.affine).expect("invertible");
    for k in 0..canon.dims[2] {
        for j in 0..canon.dims[1] {
            for i in 0..canon.dims[0] {
                let w = canon.voxel_to_world([i as f64, j as f64, k as f64]);
                let o = geometry::apply(&inv, w);
                let oi = [o[0].round(), o[1].round(), o[2].round()];
                for a in 0..3 {
                    assert!(
                        (o[a] - oi[a]).abs() < 1e-6,
                        "non-integer source voxel {o:?}"
                    );
                }
                let src =
                    orig.data[orig.linear_index([oi[0] as usize, oi[1] as usize, oi[2] as usize])];
                assert_eq!(canon.data[canon.linear_index([i, j, k])], src);
            }
        }
    }
}

#[test]
fn to_canonical_keeps_every_voxel_in_place() {
    for src in [
        "nifti/anatomical.nii",
        "nifti_dicom_pair/adi_slice.dcm",
        "nifti/example_nifti2.nii.gz",
        "dicom_series_pd_oblique",
    ] {
        let v = load(&fixture(src));
        let c = v.to_canonical();
        assert_eq!(c.orientation_code(), "RAS", "{src}");
        assert_eq!(c.voxel_count(), v.voxel_count());
        assert_same_world(&v, &c);
        let mut sv = v.spacing;
        let mut sc = c.spacing;
        sv.sort_by(f64::total_cmp);
        sc.sort_by(f64::total_cmp);
        for a in 0..3 {
            assert!(
                (sv[a] - sc[a]).abs() < 1e-9,
                "{src}: spacing permuted, not changed"
            );
        }
    }
    // PIR (adi slice): dims 192x192x1 become 1x192x192 (R from k, A from -i, S from -j).
    let c = load(&fixture("nifti_dicom_pair/adi_slice.dcm")).to_canonical();
    assert_eq!(c.dims, [1, 192, 192]);
}

fn assert_close(a: [f64; 3], b: [f64; 3], tol: f64, what: &str) {
    for i in 0..3 {
        assert!((a[i] - b[i]).abs() <= tol, "{what}: {a:?} vs {b:?}");
    }
}

#[test]
fn upscaled_geometry_keeps_world_position() {
    let v = load(&fixture("nifti/example4d.nii.gz")); // oblique affine
    for scale in [2usize, 3, 4] {
        let axes = [true, true, false];
        // k-space: LR voxel i is HR voxel s*i.
        let (dims, hr) = v.upscaled_geometry(scale, axes, Degradation::Kspace);
        assert_eq!(dims, [128 * scale, 96 * scale, 24]);
        for ijk in [[0usize, 0, 0], [5, 7, 3], [127, 95, 23]] {
            let lr = v.voxel_to_world([ijk[0] as f64, ijk[1] as f64, ijk[2] as f64]);
            let h = geometry::apply(
                &hr,
                [
                    (scale * ijk[0]) as f64,
                    (scale * ijk[1]) as f64,
                    ijk[2] as f64,
                ],
            );
            assert_close(lr, h, 1e-9, "kspace voxel centre");
        }
        // bicubic: LR voxel i sits at HR position (i + 0.5) s - 0.5; the grids share their
        // outer edges (LR -0.5 == HR -0.5) and HR voxel 0 is at LR -0.5 + 0.5 / s.
        let (dims_b, hb) = v.upscaled_geometry(scale, axes, Degradation::Bicubic);
        assert_eq!(dims_b, dims);
        let s = scale as f64;
        for ijk in [[0usize, 0, 0], [5, 7, 3], [127, 95, 23]] {
            let lr = v.voxel_to_world([ijk[0] as f64, ijk[1] as f64, ijk[2] as f64]);
            let hpos = [
                (ijk[0] as f64 + 0.5) * s - 0.5,
                (ijk[1] as f64 + 0.5) * s - 0.5,
                ijk[2] as f64,
            ];
            assert_close(lr, geometry::apply(&hb, hpos), 1e-9, "bicubic voxel centre");
        }
        let edge_lr = v.voxel_to_world([-0.5, -0.5, 0.0]);
        let edge_hr = geometry::apply(&hb, [-0.5, -0.5, 0.0]);
        assert_close(edge_lr, edge_hr, 1e-9, "bicubic grid edge");
        let h0 = geometry::apply(&hb, [0.0, 0.0, 0.0]);
        let l0 = v.voxel_to_world([-0.5 + 0.5 / s, -0.5 + 0.5 / s, 0.0]);
        assert_close(h0, l0, 1e-9, "HR voxel 0");
        // Voxel size shrinks by s in-plane only.
        let n = geometry::column_norms(&hb);
        assert_close(
            n,
            [v.spacing[0] / s, v.spacing[1] / s, v.spacing[2]],
            1e-9,
            "spacing",
        );

        // Downsampling is the inverse: down then up restores the affine (dims divisible).
        for deg in [Degradation::Kspace, Degradation::Bicubic] {
            let (ld, la) = v.downsampled_geometry(scale, axes, deg);
            let lr_vol = Volume {
                data: vec![0.0; ld.iter().product()],
                dims: ld,
                spacing: [0.0; 3],
                affine: la,
                meta: v.meta.clone(),
            };
            let (ud, ua) = lr_vol.upscaled_geometry(scale, axes, deg);
            assert!(max_affine_diff(&ua, &v.affine) < 1e-9, "{deg:?} x{scale}");
            if 128 % scale == 0 && 96 % scale == 0 {
                assert_eq!(ud, v.dims);
            }
            // LR voxel i sits at HR coordinate lr_to_hr(i).
            let w = geometry::apply(&la, [3.0, 2.0, 1.0]);
            let hr_pos = [deg.lr_to_hr(3.0, s), deg.lr_to_hr(2.0, s), 1.0];
            assert_close(w, v.voxel_to_world(hr_pos), 1e-9, "LR sample position");
        }
    }
}

#[test]
fn volume_new_checks_and_derives_spacing() {
    let affine = [
        [0.0, 0.0, 3.0, 1.0],
        [-2.0, 0.0, 0.0, 2.0],
        [0.0, 0.5, 0.0, 3.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    let v = Volume::new(vec![1.0; 24], [2, 3, 4], affine, Default::default()).expect("valid");
    assert_eq!(v.spacing, [2.0, 0.5, 3.0]);
    assert_eq!(v.orientation_code(), "PSR");
    assert!(matches!(
        Volume::new(vec![1.0; 23], [2, 3, 4], affine, Default::default()),
        Err(VolumeError::InvalidVolume(_))
    ));
    let mut bad = affine;
    bad[0][0] = f64::NAN;
    assert!(Volume::new(vec![1.0; 24], [2, 3, 4], bad, Default::default()).is_err());
}
