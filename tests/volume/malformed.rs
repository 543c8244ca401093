//! Malformed volumes made by the test from the fixtures: truncations at many offsets (NIfTI .nii
//! and .nii.gz, single-frame and multi-frame DICOM), flipped header bytes, absurd dimensions,
//! wrong datatypes, unknown transfer syntaxes and NaN/Inf voxels. Every case expects a specific
//! outcome: an error variant (with the fields that identify the cause) or a volume.

use std::io::Write;
use std::path::{Path, PathBuf};

use deltawkv::volume::{self, LoadOptions, Volume, VolumeError};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fixtures")
        .join(rel)
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(fixture(rel)).expect("read fixture")
}

/// A fixed budget, so that the outcome does not depend on the machine or the environment.
fn opts() -> LoadOptions {
    LoadOptions {
        volume: 0,
        series: None,
        memory_budget: 1 << 30,
    }
}

fn load(p: &Path) -> Result<Volume, VolumeError> {
    volume::load(p, &opts())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write");
    p
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("gunzip");
    out
}

/// Truncation offsets: every length up to 16, both sides of `marks`, and 48 more spread evenly
/// (0 and `len - 1` included), sorted and unique.
fn cut_points(len: usize, marks: &[usize]) -> Vec<usize> {
    let mut v: Vec<usize> = (0..16.min(len)).collect();
    for &m in marks {
        for d in [m.saturating_sub(1), m, m + 1] {
            if d < len {
                v.push(d);
            }
        }
    }
    for i in 0..48 {
        v.push(i * (len - 1) / 47);
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// Checks that the message names the file.
fn names(e: &VolumeError, p: &Path) {
    let msg = e.to_string();
    assert!(msg.contains(&p.display().to_string()), "{msg}");
}

// ---------------------------------------------------------------------------------------------
// NIfTI

/// A NIfTI-1 little-endian header + 4 extension bytes (vox_offset 352) for `dims`.
fn nifti1(dims: &[i16], datatype: i16, bitpix: i16) -> Vec<u8> {
    let mut h = vec![0u8; 352];
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    let mut dim = [1i16; 8];
    dim[0] = dims.len() as i16;
    dim[1..=dims.len()].copy_from_slice(dims);
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

/// An 8x6x4 int16 NIfTI-1 file with sform, scaling and a description.
fn small_nifti() -> Vec<u8> {
    let mut b = nifti1(&[8, 6, 4], 4, 16);
    b[112..116].copy_from_slice(&2f32.to_le_bytes()); // scl_slope
    b[148..156].copy_from_slice(b"malform\0");
    b[254..256].copy_from_slice(&2i16.to_le_bytes()); // sform_code
    for (r, row) in [[1.5f32, 0., 0., -3.], [0., 1.5, 0., 4.], [0., 0., 3., 5.]]
        .iter()
        .enumerate()
    {
        for (c, v) in row.iter().enumerate() {
            b[280 + 16 * r + 4 * c..284 + 16 * r + 4 * c].copy_from_slice(&v.to_le_bytes());
        }
    }
    for i in 0..8 * 6 * 4 {
        b.extend_from_slice(&((i * 7 % 300) as i16 - 20).to_le_bytes());
    }
    b
}

/// Expected error of a plain NIfTI file cut to `len` bytes (whose full length is `full`, header
/// size `hdr`, data at `offset`), or `None` when it must load.
fn check_nifti_cut(
    e: Result<Volume, VolumeError>,
    len: usize,
    full: usize,
    hdr: usize,
    offset: usize,
) {
    match e {
        Ok(v) => assert_eq!(len, full, "a cut file loaded: {:?}", v.dims),
        Err(VolumeError::UnknownFormat { detail, .. }) => {
            assert!(len < 4, "len {len}: {detail}");
            if len == 0 {
                assert!(detail.contains("empty"), "{detail}");
            }
        }
        Err(VolumeError::InvalidHeader { detail, .. }) => {
            assert!((4..hdr).contains(&len), "len {len}: {detail}");
            assert!(detail.contains("file ends inside"), "{detail}");
        }
        Err(VolumeError::Truncated {
            expected, found, ..
        }) => {
            assert!(len >= hdr && len < full, "len {len}");
            assert_eq!(expected as usize, full - offset, "len {len}");
            assert_eq!(found as usize, len.saturating_sub(offset), "len {len}");
        }
        Err(other) => panic!("len {len}: unexpected {other:?}"),
    }
}

#[test]
fn nifti_truncated_at_many_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The big-endian anatomical fixture (int16, vox_offset 352) and a little-endian file.
    let cases = [
        ("anatomical", read("nifti/anatomical.nii")),
        ("small", small_nifti()),
    ];
    for (name, full) in cases {
        let mut n = 0;
        for len in cut_points(full.len(), &[4, 348, 352]) {
            let p = write(dir.path(), &format!("{name}_{len}.nii"), &full[..len]);
            let r = load(&p);
            if let Err(e) = &r {
                names(e, &p);
            }
            check_nifti_cut(r, len, full.len(), 348, 352);
            n += 1;
        }
        assert!(n > 50, "{n} cuts");
        let p = write(dir.path(), &format!("{name}_full.nii"), &full);
        load(&p).expect("the whole file loads");
    }
}

#[test]
fn nifti2_truncated_at_many_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    // NIfTI-2, 4-D int16, vox_offset 608: volume 0 needs bytes up to 608 + 32*20*12*2.
    let raw = gunzip(&read("nifti/example_nifti2.nii.gz"));
    let vol0_end = 608 + 32 * 20 * 12 * 2;
    for len in cut_points(raw.len(), &[540, 608, vol0_end]) {
        let p = write(dir.path(), &format!("n2_{len}.nii"), &raw[..len]);
        let r = load(&p);
        match r {
            Ok(_) => assert!(len >= vol0_end, "len {len} loaded"),
            Err(VolumeError::Truncated {
                expected, found, ..
            }) => {
                assert!((540..vol0_end).contains(&len), "len {len}");
                assert_eq!(expected, 32 * 20 * 12 * 2);
                assert_eq!(found as usize, len.saturating_sub(608));
            }
            other => check_nifti_cut(other, len, raw.len(), 540, 608),
        }
    }
}

#[test]
fn nifti_gz_truncated_at_many_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, gz) in [
        ("example_nifti2", read("nifti/example_nifti2.nii.gz")),
        ("small", gzip(&small_nifti())),
    ] {
        for len in cut_points(gz.len(), &[2, 10]) {
            let p = write(dir.path(), &format!("{name}_{len}.nii.gz"), &gz[..len]);
            match load(&p) {
                Err(VolumeError::UnknownFormat { .. }) => assert!(len < 2, "len {len}"),
                Err(VolumeError::Gzip { problem, .. }) => {
                    assert!(len >= 2, "len {len}");
                    assert_eq!(problem, "truncated", "len {len}");
                }
                other => panic!("{name} cut at {len} of {}: {other:?}", gz.len()),
            }
        }
    }
}

#[test]
fn nifti_flipped_header_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = small_nifti();
    let flip = |at: usize| {
        let mut b = base.clone();
        b[at] ^= 0xff;
        b
    };
    let load_flip = |at: usize| load(&write(dir.path(), &format!("flip{at}.nii"), &flip(at)));
    // sizeof_hdr: no longer NIfTI (nor DICOM).
    for at in 0..4 {
        assert!(
            matches!(load_flip(at), Err(VolumeError::UnknownFormat { .. })),
            "byte {at}"
        );
    }
    // dim[0] out of 1..=7, a negative dim[1..3], or a dim[1..3] larger than the data.
    for at in [40, 41, 43, 45, 47] {
        match load_flip(at) {
            Err(VolumeError::InvalidHeader { detail, .. }) => {
                assert!(detail.contains("dim["), "byte {at}: {detail}")
            }
            other => panic!("byte {at}: {other:?}"),
        }
    }
    for at in [42, 44, 46] {
        assert!(
            matches!(load_flip(at), Err(VolumeError::Truncated { expected, .. }) if expected > 384),
            "byte {at}"
        );
    }
    // dim[4..7] are unused in a 3-D file.
    for at in 48..56 {
        load_flip(at).unwrap_or_else(|e| panic!("byte {at}: {e}"));
    }
    // datatype: no longer a real scalar type.
    for at in [70, 71] {
        let code = i16::from_le_bytes([flip(at)[70], flip(at)[71]]);
        match load_flip(at) {
            Err(VolumeError::UnsupportedDatatype { code: c, .. }) => {
                assert_eq!(c, i32::from(code))
            }
            other => panic!("byte {at}: {other:?}"),
        }
    }
    // bitpix only disagrees with the datatype: a warning.
    load_flip(72).expect("bitpix is advisory");
    // vox_offset: 352.0 is 0x43B00000; the exponent or sign bytes make it invalid.
    for at in [110, 111] {
        assert!(
            matches!(load_flip(at), Err(VolumeError::InvalidHeader { ref detail, .. }) if detail.contains("vox_offset")),
            "byte {at}"
        );
    }
    // The magic string.
    for at in 344..348 {
        assert!(
            matches!(load_flip(at), Err(VolumeError::BadMagic { .. })),
            "byte {at}"
        );
    }
    // Description, pixdim, scaling, codes, quaternion, sform: the volume still loads, with a
    // finite affine (a broken sform falls back to the qform or pixdim).
    for at in (76..108).chain(112..120).chain(148..344) {
        let v = load_flip(at).unwrap_or_else(|e| panic!("byte {at}: {e}"));
        assert!(
            v.affine.iter().flatten().all(|x| x.is_finite()),
            "byte {at}"
        );
        assert_eq!(v.dims, [8, 6, 4]);
    }
}

#[test]
fn nifti_absurd_dimensions_and_datatypes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let too_large = |b: &[u8], name: &str| match load(&write(dir.path(), name, b)) {
        Err(VolumeError::TooLarge { needed_bytes, .. }) => needed_bytes,
        other => panic!("{name}: {other:?}"),
    };
    // 32767^3 int16 voxels: 140 TB as float32, refused before reading any data.
    assert_eq!(
        too_large(&nifti1(&[32767, 32767, 32767], 4, 16), "huge.nii"),
        32767u64.pow(3) * 4
    );
    // NIfTI-2 with 2^40 x 2^40 x 2^40: the byte count overflows u64.
    let mut n2 = gunzip(&read("nifti/example_nifti2.nii.gz"));
    for i in 1..=3 {
        n2[16 + 8 * i..24 + 8 * i].copy_from_slice(&(1i64 << 40).to_le_bytes());
    }
    assert_eq!(too_large(&n2, "overflow.nii"), u64::MAX);
    // Four 2^40-sized extra dimensions: the volume count overflows.
    let mut n2 = gunzip(&read("nifti/example_nifti2.nii.gz"));
    n2[16..24].copy_from_slice(&7i64.to_le_bytes());
    for i in 4..=7 {
        n2[16 + 8 * i..24 + 8 * i].copy_from_slice(&(1i64 << 40).to_le_bytes());
    }
    match load(&write(dir.path(), "volumes.nii", &n2)) {
        Err(VolumeError::InvalidHeader { detail, .. }) => {
            assert!(detail.contains("number of volumes overflows"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    // dim[0] of 0 and 8.
    for d0 in [0i16, 8] {
        let mut b = small_nifti();
        b[40..42].copy_from_slice(&d0.to_le_bytes());
        assert!(matches!(
            load(&write(dir.path(), "d0.nii", &b)),
            Err(VolumeError::InvalidHeader { .. })
        ));
    }
    // Every non-scalar or unknown datatype code is named.
    for (code, name) in [
        (1i16, "binary (1 bit)"),
        (32, "complex64"),
        (128, "RGB24"),
        (1536, "float128"),
        (1792, "complex128"),
        (2048, "complex256"),
        (2304, "RGBA32"),
        (999, "unknown"),
        (-4, "unknown"),
    ] {
        let mut b = nifti1(&[2, 2, 2], code, 8);
        b.extend_from_slice(&[0u8; 64]);
        match load(&write(dir.path(), "dt.nii", &b)) {
            Err(VolumeError::UnsupportedDatatype {
                code: c, name: n, ..
            }) => {
                assert_eq!((c, n.as_str()), (i32::from(code), name))
            }
            other => panic!("datatype {code}: {other:?}"),
        }
    }
    // A 4-D file asked for a volume past its end.
    let o = LoadOptions {
        volume: 2,
        ..opts()
    };
    let p = fixture("nifti/example_nifti2.nii.gz");
    assert!(matches!(
        volume::load(&p, &o),
        Err(VolumeError::VolumeIndex {
            index: 2,
            count: 2,
            ..
        })
    ));
}

#[test]
fn nifti_nan_and_inf_voxels_are_counted_not_fatal() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (gz, name) in [(false, "nan.nii"), (true, "nan.nii.gz")] {
        let mut b = nifti1(&[4, 4, 2], 16, 32);
        let values: Vec<f32> = (0..32)
            .map(|i| match i {
                3 => f32::NAN,
                9 => f32::INFINITY,
                10 => f32::NEG_INFINITY,
                _ => i as f32,
            })
            .collect();
        for v in &values {
            b.extend_from_slice(&v.to_le_bytes());
        }
        let bytes = if gz { gzip(&b) } else { b };
        let v = load(&write(dir.path(), name, &bytes)).expect("loads");
        assert_eq!(v.meta.non_finite, 3);
        assert!(
            v.meta
                .notes
                .iter()
                .any(|n| n.contains("3 voxel(s) are NaN"))
        );
        assert!(v.data[3].is_nan() && v.data[9] == f32::INFINITY);
        // NaN scaling is ignored rather than spreading NaN over every voxel.
        let mut b = nifti1(&[4, 4, 2], 16, 32);
        b[112..116].copy_from_slice(&f32::NAN.to_le_bytes());
        b[116..120].copy_from_slice(&f32::INFINITY.to_le_bytes());
        b.extend_from_slice(&[0u8; 128]);
        let v = load(&write(dir.path(), "nanslope.nii", &b)).expect("loads");
        assert_eq!(v.meta.non_finite, 0);
    }
}

#[test]
fn nifti_memory_budget_is_checked_before_reading() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Header only, claiming 512^3 float32: refused by the budget, not by the missing data.
    let p = write(dir.path(), "big.nii", &nifti1(&[512, 512, 512], 16, 32));
    let small = LoadOptions {
        memory_budget: 256 << 20,
        ..opts()
    };
    match volume::load(&p, &small) {
        Err(e @ VolumeError::TooLarge { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("512.0 MiB") && msg.contains("256.0 MiB"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
    // The same through gzip: the header is read first.
    let p = write(
        dir.path(),
        "big.nii.gz",
        &gzip(&nifti1(&[512, 512, 512], 16, 32)),
    );
    assert!(matches!(
        volume::load(&p, &small),
        Err(VolumeError::TooLarge {
            needed_bytes: 536_870_912,
            ..
        })
    ));
}

// ---------------------------------------------------------------------------------------------
// DICOM

/// Offset of the Pixel Data element's value in an explicit VR little-endian file (searching for
/// its tag and VR from the end).
fn pixel_value_offset(b: &[u8]) -> usize {
    let pat = [0xe0, 0x7f, 0x10, 0x00];
    let at = b
        .windows(4)
        .rposition(|w| w == pat)
        .expect("pixel data tag");
    at + 12
}

/// Truncations of a DICOM file: before the `DICM` marker the content is unrecognised; inside the
/// pixel data value the parser reports the short read; elsewhere the parser fails or, cut at an
/// element boundary before the pixels, the object has no pixel data.
fn dicom_cuts(rel: &str, tag: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let full = read(rel);
    let pix = pixel_value_offset(&full);
    let mut counts = [0usize; 3];
    for len in cut_points(full.len(), &[128, 132, pix]) {
        // No extension, so that only the content decides.
        let p = write(dir.path(), &format!("{tag}_{len}"), &full[..len]);
        match load(&p) {
            Err(VolumeError::UnknownFormat { .. }) => {
                assert!(len < 132, "len {len}");
                counts[0] += 1;
            }
            Err(e @ VolumeError::Dicom { .. }) => {
                assert!(len >= 132, "len {len}");
                names(&e, &p);
                counts[1] += 1;
            }
            Err(VolumeError::NoPixelData { .. }) => {
                assert!((132..pix).contains(&len), "len {len}");
                counts[2] += 1;
            }
            other => panic!("{rel} cut at {len} of {}: {other:?}", full.len()),
        }
    }
    assert!(counts[0] >= 16 && counts[1] >= 30, "{counts:?}");
    // Every cut inside the pixel data is a parse error.
    for len in [pix + 1, (pix + full.len()) / 2, full.len() - 1] {
        let p = write(dir.path(), &format!("{tag}_pix_{len}"), &full[..len]);
        assert!(
            matches!(load(&p), Err(VolumeError::Dicom { .. })),
            "len {len}"
        );
    }
}

#[test]
fn dicom_single_frame_truncated_at_many_offsets() {
    dicom_cuts("dicom_single_mr_small/MR_small.dcm", "single");
}

#[test]
fn dicom_multi_frame_truncated_at_many_offsets() {
    dicom_cuts("dicom_enhanced_mr/emri_small.dcm", "multi");
}

#[test]
fn dicom_compressed_truncated_at_many_offsets() {
    // Encapsulated (RLE, JPEG-LS, JPEG 2000): cuts inside the fragments are parse errors too, or
    // decoder errors naming the transfer syntax, never a volume.
    let dir = tempfile::tempdir().expect("tempdir");
    for rel in [
        "dicom_single_mr_small/MR_small_RLE.dcm",
        "dicom_single_mr_small/MR_small_jpeg_ls_lossless.dcm",
        "dicom_single_mr_small/MR_small_jp2klossless.dcm",
    ] {
        let full = read(rel);
        for len in cut_points(full.len(), &[132])
            .into_iter()
            .filter(|&l| l >= 132)
        {
            let p = write(dir.path(), &format!("c_{len}"), &full[..len]);
            match load(&p) {
                Err(VolumeError::Dicom { .. } | VolumeError::NoPixelData { .. }) => {}
                Err(VolumeError::DicomDecode { ts_uid, .. }) => {
                    assert!(ts_uid.starts_with("1.2.840.10008.1.2."), "{ts_uid}")
                }
                other => panic!("{rel} cut at {len}: {other:?}"),
            }
        }
    }
}

/// Replaces the first occurrence of `from` with `to` (same length) in `bytes`.
fn patch(bytes: &mut [u8], from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern present");
    bytes[at..at + to.len()].copy_from_slice(to);
}

#[test]
fn dicom_unknown_and_unsupported_transfer_syntaxes() {
    let dir = tempfile::tempdir().expect("tempdir");
    // An unknown UID of the same length as Explicit VR Little Endian ("1.2.840.10008.1.2.1").
    let mut b = read("dicom_single_mr_small/MR_small.dcm");
    patch(&mut b, b"1.2.840.10008.1.2.1\0", b"1.2.840.10008.9.9.9\0");
    let p = write(dir.path(), "unknown_ts.dcm", &b);
    match load(&p) {
        Err(e @ VolumeError::Dicom { .. }) => {
            names(&e, &p);
            assert!(e.to_string().contains("1.2.840.10008.9.9.9"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

/// Inputs the fuzz targets found (FUZZING.md), each refused with a specific error and no
/// runaway allocation or panic.
#[test]
fn fuzz_regressions() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz");
    // Element lengths of gigabytes in 10 KB files (little and big endian): dicom-object reserved
    // and zero-filled the declared length before reading (2.9 and 3.3 GB).
    // And one where a 2-byte FL value (read by the parser as zero floats, leaving its 2 bytes
    // unread) shifted the parser onto a 540 MB "length".
    for name in [
        "dicom_lying_length_oom.dcm",
        "dicom_big_endian_lying_length_oom.dcm",
        "dicom_odd_float_length_desync_oom.dcm",
    ] {
        let p = dir.join(name);
        match load(&p) {
            Err(e @ VolumeError::Dicom { .. }) => {
                names(&e, &p);
                assert!(e.to_string().contains("bytes but only"), "{e}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    // A 256x256 JPEG lossless frame in an image whose header says 64x64: the JPEG adapter
    // copied the decoded frame out of bounds (a panic the loader caught as "the decoder crashed").
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut obj = dicom_object::open_file(fixture("dicom_compressed_mr/jpeg_lossless_sel1.dcm"))
        .expect("open");
    put_us(&mut obj, tags::ROWS, 64);
    put_us(&mut obj, tags::COLUMNS, 64);
    let p = tmp.path().join("jpeg_size.dcm");
    obj.write_to_file(&p).expect("write");
    match load(&p) {
        Err(VolumeError::DicomDecode { detail, .. }) => {
            assert!(detail.contains("is 256x256"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    // The same for a JPEG 2000 frame (the 64x64 fixture declared 32x32): out-of-bounds writes in
    // the JPEG 2000 adapter.
    let mut obj =
        dicom_object::open_file(fixture("dicom_single_mr_small/MR_small_jp2klossless.dcm"))
            .expect("open");
    put_us(&mut obj, tags::ROWS, 32);
    put_us(&mut obj, tags::COLUMNS, 32);
    let p = tmp.path().join("j2k_size.dcm");
    obj.write_to_file(&p).expect("write");
    match load(&p) {
        Err(VolumeError::DicomDecode { detail, .. }) => {
            assert!(detail.contains("[(64, 64)]"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    // An RLE fragment whose segment table points past its end: a slice panic in the decoder.
    let p = dir.join("dicom_rle_segment_table_panic.dcm");
    match load(&p) {
        Err(VolumeError::DicomDecode { ts_uid, detail, .. }) => {
            assert_eq!(ts_uid, "1.2.840.10008.1.2.5");
            assert!(detail.contains("RLE fragment"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}

fn put_us(obj: &mut dicom_object::DefaultDicomObject, tag: dicom_object::Tag, v: u16) {
    obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(v)));
}

#[test]
fn dicom_wrong_datatypes_and_absurd_dimensions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base =
        || dicom_object::open_file(fixture("dicom_single_mr_small/MR_small.dcm")).expect("open");
    let save = |obj: dicom_object::DefaultDicomObject, name: &str| {
        let p = dir.path().join(name);
        obj.write_to_file(&p).expect("write");
        p
    };
    // Rows = 0: not an image.
    let mut o = base();
    put_us(&mut o, tags::ROWS, 0);
    assert!(matches!(
        load(&save(o, "rows0.dcm")),
        Err(VolumeError::NoPixelData { .. })
    ));
    // 65535 x 65535 x 2000 frames: refused by the budget before anything is decoded.
    let mut o = base();
    put_us(&mut o, tags::ROWS, 65535);
    put_us(&mut o, tags::COLUMNS, 65535);
    o.put(DataElement::new(
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        PrimitiveValue::from("2000"),
    ));
    match load(&save(o, "huge.dcm")) {
        Err(VolumeError::TooLarge {
            dims, needed_bytes, ..
        }) => {
            assert_eq!(dims, "65535x65535x2000");
            assert_eq!(needed_bytes, 65535u64 * 65535 * 2000 * 4);
        }
        other => panic!("{other:?}"),
    }
    // 20 million 1x1 frames fit the budget as float32 (80 MB) but not in a 10 KB file: refused
    // before a description per frame is allocated.
    let mut o = base();
    put_us(&mut o, tags::ROWS, 1);
    put_us(&mut o, tags::COLUMNS, 1);
    o.put(DataElement::new(
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        PrimitiveValue::from("20000000"),
    ));
    match load(&save(o, "many.dcm")) {
        Err(VolumeError::UnsupportedDicom { detail, .. }) => {
            assert!(detail.contains("more than a file of"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    // NumberOfFrames 0 or negative.
    let mut o = base();
    o.put(DataElement::new(
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        PrimitiveValue::from("-3"),
    ));
    assert!(matches!(
        load(&save(o, "frames.dcm")),
        Err(VolumeError::UnsupportedDicom { .. })
    ));
    // More rows than the pixel data holds.
    let mut o = base();
    put_us(&mut o, tags::ROWS, 128);
    match load(&save(o, "short.dcm")) {
        Err(VolumeError::DicomDecode { .. } | VolumeError::Truncated { .. }) => {}
        other => panic!("{other:?}"),
    }
    // Three samples per pixel (colour).
    let mut o = base();
    put_us(&mut o, tags::SAMPLES_PER_PIXEL, 3);
    assert!(matches!(
        load(&save(o, "rgb.dcm")),
        Err(VolumeError::UnsupportedDicom { .. })
    ));
    // Pixel data as 64-bit floats only.
    let mut o = base();
    let px = o.take_element(tags::PIXEL_DATA).expect("pixels");
    let bytes = px.to_bytes().expect("bytes").to_vec();
    o.put(DataElement::new(
        tags::DOUBLE_FLOAT_PIXEL_DATA,
        VR::OD,
        PrimitiveValue::from(bytes),
    ));
    assert!(matches!(
        load(&save(o, "double.dcm")),
        Err(VolumeError::UnsupportedDicom { .. })
    ));
}

#[test]
fn dicom_series_over_budget_is_refused_from_the_headers() {
    // 8 slices of 256x256: 2 MiB as float32; a 1 MiB budget refuses the folder from the headers.
    let o = LoadOptions {
        memory_budget: 1 << 20,
        ..opts()
    };
    let p = fixture("dicom_series_pd_oblique");
    match volume::load(&p, &o) {
        Err(e @ VolumeError::TooLarge { .. }) => {
            names(&e, &p);
            assert!(e.to_string().contains("1.0 MiB"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    // A single DICOM file larger than the budget is refused before it is read.
    let big = fixture("dicom_multiframe_classic/MR-MONO2-8-16x-heart.dcm");
    assert!(matches!(
        volume::load(&big, &o),
        Err(VolumeError::InputTooLarge { .. })
    ));
}

#[test]
fn dicom_gzip_truncated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gz = gzip(&read("dicom_single_mr_small/MR_small.dcm"));
    for len in [gz.len() / 3, gz.len() / 2, gz.len() - 1] {
        let p = write(dir.path(), &format!("dcm_{len}.gz"), &gz[..len]);
        assert!(
            matches!(
                load(&p),
                Err(VolumeError::Gzip {
                    problem: "truncated",
                    ..
                })
            ),
            "len {len}"
        );
    }
}
