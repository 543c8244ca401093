//! Bad inputs give their specific error variant, with a message naming the file and the problem.

use std::io::Write;
use std::path::{Path, PathBuf};

use deltawkv::volume::{self, LoadOptions, VolumeError};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fixtures")
        .join(rel)
}

fn load(p: &Path) -> Result<volume::Volume, VolumeError> {
    volume::load(p, &LoadOptions::default())
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

/// A NIfTI-1 header (little-endian, float32 unless `datatype` says otherwise), vox_offset 352.
fn nifti1_header(dims: [i16; 3], datatype: i16, bitpix: i16) -> Vec<u8> {
    let mut h = vec![0u8; 352];
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    let dim = [3i16, dims[0], dims[1], dims[2], 1, 1, 1, 1];
    for (i, d) in dim.iter().enumerate() {
        h[40 + 2 * i..42 + 2 * i].copy_from_slice(&d.to_le_bytes());
    }
    h[70..72].copy_from_slice(&datatype.to_le_bytes());
    h[72..74].copy_from_slice(&bitpix.to_le_bytes());
    for i in 0..4 {
        h[76 + 4 * i..80 + 4 * i].copy_from_slice(&1f32.to_le_bytes());
    }
    h[108..112].copy_from_slice(&352f32.to_le_bytes());
    h[344..348].copy_from_slice(b"n+1\0");
    h
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write");
    p
}

fn message_names_file(e: &VolumeError, p: &Path) {
    let msg = e.to_string();
    assert!(
        msg.contains(&p.display().to_string()),
        "message does not name the file: {msg}"
    );
}

#[test]
fn truncated_gzip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let full = std::fs::read(fixture("nifti/example_nifti2.nii.gz")).expect("read");
    let p = write(dir.path(), "cut.nii.gz", &full[..full.len() / 2]);
    let e = load(&p).expect_err("must fail");
    assert!(
        matches!(
            e,
            VolumeError::Gzip {
                problem: "truncated",
                ..
            }
        ),
        "{e:?}"
    );
    message_names_file(&e, &p);
    assert!(e.to_string().contains("truncated"), "{e}");
}

#[test]
fn corrupt_gzip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes = std::fs::read(fixture("nifti/example_nifti2.nii.gz")).expect("read");
    // Overwrite part of the deflate stream (after the 10-byte gzip header and the file name).
    let mid = bytes.len() / 3;
    for b in &mut bytes[mid..mid + 64] {
        *b = 0xA5;
    }
    let p = write(dir.path(), "corrupt.nii.gz", &bytes);
    let e = load(&p).expect_err("must fail");
    assert!(
        matches!(
            e,
            VolumeError::Gzip {
                problem: "corrupt",
                ..
            }
        ),
        "{e:?}"
    );
    message_names_file(&e, &p);
}

#[test]
fn gzip_of_garbage_in_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes = std::fs::read(fixture("nifti/example_nifti2.nii.gz")).expect("read");
    // Break the stream right at the start of the compressed data: nothing decodes.
    for b in &mut bytes[40..104] {
        *b = 0xFF;
    }
    let p = write(dir.path(), "bad.nii.gz", &bytes);
    let e = load(&p).expect_err("must fail");
    assert!(matches!(e, VolumeError::Gzip { .. }), "{e:?}");
}

#[test]
fn wrong_magic_in_nifti_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = nifti1_header([2, 2, 2], 16, 32);
    h[344..348].copy_from_slice(b"xyz\0");
    h.extend_from_slice(&[0u8; 32]);
    let p = write(dir.path(), "magic.nii", &h);
    let e = load(&p).expect_err("must fail");
    assert!(matches!(e, VolumeError::BadMagic { .. }), "{e:?}");
    message_names_file(&e, &p);
    assert!(e.to_string().contains("magic"), "{e}");
}

#[test]
fn unrecognised_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(
        dir.path(),
        "notes.nii",
        b"this is a text file, not an image\n",
    );
    let e = load(&p).expect_err("must fail");
    assert!(matches!(e, VolumeError::UnknownFormat { .. }), "{e:?}");
    message_names_file(&e, &p);
    let p = write(dir.path(), "empty.nii.gz", &gzip(b""));
    assert!(matches!(load(&p), Err(VolumeError::UnknownFormat { .. })));
    let missing = dir.path().join("missing.nii");
    assert!(matches!(load(&missing), Err(VolumeError::NotFound { .. })));
}

#[test]
fn absurd_dims_refused_before_allocation() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 30000^3 float32 = 100 TiB; the file itself is 352 bytes.
    let h = nifti1_header([30000, 30000, 30000], 16, 32);
    let p = write(dir.path(), "huge.nii", &h);
    let e = load(&p).expect_err("must fail");
    match &e {
        VolumeError::TooLarge {
            needed_bytes, dims, ..
        } => {
            assert_eq!(*needed_bytes, 30000u64 * 30000 * 30000 * 4);
            assert_eq!(dims, "30000x30000x30000");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    message_names_file(&e, &p);
    assert!(e.to_string().contains("TiB"), "size in the message: {e}");
    // Negative and zero dims are invalid headers.
    let h = nifti1_header([-5, 2, 2], 16, 32);
    let p = write(dir.path(), "neg.nii", &h);
    assert!(matches!(load(&p), Err(VolumeError::InvalidHeader { .. })));
    // A budget smaller than a real file is honoured, with the size in the message.
    let opts = LoadOptions {
        memory_budget: 100_000,
        ..LoadOptions::default()
    };
    let e = volume::load(&fixture("nifti/anatomical.nii"), &opts).expect_err("over budget");
    assert!(
        matches!(
            e,
            VolumeError::TooLarge {
                needed_bytes: 135300,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("132.1 KiB"), "{e}");
    // DICOM folders too.
    let e = volume::load(&fixture("dicom_series_pd_oblique"), &opts).expect_err("over budget");
    assert!(
        matches!(
            e,
            VolumeError::TooLarge {
                needed_bytes: 2097152,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn unsupported_datatypes() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (code, bitpix, name) in [
        (32i16, 64i16, "complex64"),
        (128, 24, "RGB24"),
        (1792, 128, "complex128"),
    ] {
        let mut bytes = nifti1_header([2, 2, 1], code, bitpix);
        bytes.extend(std::iter::repeat_n(
            0u8,
            4 * usize::try_from(bitpix / 8).expect("size"),
        ));
        let p = write(dir.path(), &format!("t{code}.nii"), &bytes);
        let e = load(&p).expect_err("must fail");
        match &e {
            VolumeError::UnsupportedDatatype {
                code: c, name: n, ..
            } => {
                assert_eq!((*c, n.as_str()), (i32::from(code), name));
            }
            other => panic!("expected UnsupportedDatatype, got {other:?}"),
        }
        assert!(e.to_string().contains("unsupported datatype"), "{e}");
        message_names_file(&e, &p);
    }
}

#[test]
fn nan_and_inf_voxels_load_and_are_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes = nifti1_header([3, 2, 1], 16, 32);
    for v in [
        1.0f32,
        f32::NAN,
        3.0,
        f32::INFINITY,
        -2.0,
        f32::NEG_INFINITY,
    ] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let p = write(dir.path(), "nan.nii.gz", &gzip(&bytes));
    let v = load(&p).expect("loads");
    assert_eq!(v.meta.non_finite, 3);
    assert!(
        v.meta
            .notes
            .iter()
            .any(|n| n.contains("3 voxel(s) are NaN or infinite")),
        "{:?}",
        v.meta.notes
    );
    let s = v.stats();
    assert_eq!((s.min, s.max, s.non_finite), (-2.0, 3.0, 3));
    assert!(v.data[1].is_nan() && v.data[3] == f32::INFINITY);
}

#[test]
fn truncated_voxel_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let full = std::fs::read(fixture("nifti/anatomical.nii")).expect("read");
    let p = write(dir.path(), "short.nii", &full[..full.len() - 1000]);
    let e = load(&p).expect_err("must fail");
    // 33*41*25 int16 = 67650 bytes expected after vox_offset 352.
    match &e {
        VolumeError::Truncated {
            expected, found, ..
        } => assert_eq!((*expected, *found), (67650, 66650)),
        other => panic!("expected Truncated, got {other:?}"),
    }
    message_names_file(&e, &p);
    // The same inside an intact gzip stream.
    let p = write(
        dir.path(),
        "short.nii.gz",
        &gzip(&full[..full.len() - 1000]),
    );
    assert!(matches!(
        load(&p),
        Err(VolumeError::Truncated {
            expected: 67650,
            found: 66650,
            ..
        })
    ));
    // A file cut inside the header.
    let p = write(dir.path(), "stub.nii", &full[..200]);
    assert!(matches!(load(&p), Err(VolumeError::InvalidHeader { .. })));
}

#[test]
fn empty_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = load(dir.path()).expect_err("must fail");
    assert!(matches!(e, VolumeError::EmptyFolder { .. }), "{e:?}");
    message_names_file(&e, dir.path());
    assert!(matches!(
        volume::list_series(dir.path()),
        Err(VolumeError::EmptyFolder { .. })
    ));
}

#[test]
fn folder_of_non_dicom_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "a.txt", b"hello");
    write(dir.path(), "b.dcm", &[0u8; 300]);
    std::fs::copy(fixture("nifti/anatomical.nii"), dir.path().join("c.nii")).expect("copy");
    let e = load(dir.path()).expect_err("must fail");
    assert!(
        matches!(e, VolumeError::NoDicomFiles { files: 3, .. }),
        "{e:?}"
    );
    message_names_file(&e, dir.path());
}

fn dicom_without_pixels(dir: &Path) -> PathBuf {
    let mut obj =
        dicom_object::open_file(fixture("dicom_single_mr_small/MR_small.dcm")).expect("open");
    assert!(obj.remove_element(dicom_dictionary_std::tags::PIXEL_DATA));
    let p = dir.join("nopixels.dcm");
    obj.write_to_file(&p).expect("write");
    p
}

#[test]
fn dicom_without_pixel_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dicom_without_pixels(dir.path());
    let e = load(&p).expect_err("must fail");
    assert!(matches!(e, VolumeError::NoPixelData { .. }), "{e:?}");
    message_names_file(&e, &p);
    assert!(e.to_string().contains("no pixel data"), "{e}");
    // Also when it is the only file of a folder.
    let e = load(dir.path()).expect_err("must fail");
    assert!(matches!(e, VolumeError::NoPixelData { .. }), "{e:?}");
}

#[test]
fn corrupt_compressed_pixel_data_names_transfer_syntax() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes = std::fs::read(fixture("dicom_single_mr_small/MR_small_RLE.dcm")).expect("read");
    // Damage the RLE header (segment count and offsets) of the single fragment: find the
    // pixel data item after the (7FE0,0010) tag and its empty offset table.
    let tag = [0xE0u8, 0x7F, 0x10, 0x00];
    let at = bytes
        .windows(4)
        .rposition(|w| w == tag)
        .expect("pixel data tag");
    let item = [0xFEu8, 0xFF, 0x00, 0xE0];
    let first = at
        + bytes[at..]
            .windows(4)
            .position(|w| w == item)
            .expect("offset table");
    let second = first
        + 8
        + bytes[first + 8..]
            .windows(4)
            .position(|w| w == item)
            .expect("fragment");
    for b in &mut bytes[second + 8..second + 8 + 64] {
        *b = 0xFF;
    }
    let p = write(dir.path(), "bad_rle.dcm", &bytes);
    let e = load(&p).expect_err("must fail");
    match &e {
        VolumeError::DicomDecode {
            ts_uid, ts_name, ..
        } => {
            assert_eq!(ts_uid, "1.2.840.10008.1.2.5");
            assert_eq!(ts_name, "RLE Lossless");
        }
        other => panic!("expected DicomDecode, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("1.2.840.10008.1.2.5") && msg.contains("RLE Lossless"),
        "{msg}"
    );
    message_names_file(&e, &p);
}

#[test]
fn truncated_dicom_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = std::fs::read(fixture("dicom_single_mr_small/MR_small.dcm")).expect("read");
    let p = write(dir.path(), "cut.dcm", &bytes[..bytes.len() - 2000]);
    let e = load(&p).expect_err("must fail");
    assert!(
        matches!(e, VolumeError::Dicom { .. } | VolumeError::Truncated { .. }),
        "{e:?}"
    );
    message_names_file(&e, &p);
}
