//! NIfTI header handling on files built byte by byte: every datatype in both byte orders,
//! scl_slope/scl_inter, the sform/qform choice, quaternions with qfac, NIfTI-2.

use std::path::{Path, PathBuf};

use deltawkv::volume::{self, LoadOptions, Volume, VolumeError};

/// Field writer for either byte order.
struct Hdr {
    buf: Vec<u8>,
    be: bool,
}

impl Hdr {
    fn new(len: usize, be: bool) -> Self {
        Self {
            buf: vec![0; len],
            be,
        }
    }
    fn put(&mut self, off: usize, le: &[u8], be: &[u8]) {
        let b = if self.be { be } else { le };
        self.buf[off..off + b.len()].copy_from_slice(b);
    }
    fn i16(&mut self, off: usize, v: i16) {
        self.put(off, &v.to_le_bytes(), &v.to_be_bytes());
    }
    fn i32(&mut self, off: usize, v: i32) {
        self.put(off, &v.to_le_bytes(), &v.to_be_bytes());
    }
    fn i64(&mut self, off: usize, v: i64) {
        self.put(off, &v.to_le_bytes(), &v.to_be_bytes());
    }
    fn f32(&mut self, off: usize, v: f32) {
        self.put(off, &v.to_le_bytes(), &v.to_be_bytes());
    }
    fn f64(&mut self, off: usize, v: f64) {
        self.put(off, &v.to_le_bytes(), &v.to_be_bytes());
    }
}

/// Options of a synthetic NIfTI-1 file.
struct N1 {
    be: bool,
    dims: [i16; 3],
    datatype: i16,
    bitpix: i16,
    slope: f32,
    inter: f32,
    pixdim: [f32; 4],
    qform_code: i16,
    sform_code: i16,
    quatern: [f32; 6],
    srow: [[f32; 4]; 3],
}

impl Default for N1 {
    fn default() -> Self {
        Self {
            be: false,
            dims: [2, 2, 1],
            datatype: 16,
            bitpix: 32,
            slope: 0.0,
            inter: 0.0,
            pixdim: [1.0, 1.0, 1.0, 1.0],
            qform_code: 0,
            sform_code: 0,
            quatern: [0.0; 6],
            srow: [[0.0; 4]; 3],
        }
    }
}

fn nifti1(o: &N1, data: &[u8]) -> Vec<u8> {
    let mut h = Hdr::new(352, o.be);
    h.i32(0, 348);
    let dim = [3, o.dims[0], o.dims[1], o.dims[2], 1, 1, 1, 1];
    for (i, d) in dim.iter().enumerate() {
        h.i16(40 + 2 * i, *d);
    }
    h.i16(70, o.datatype);
    h.i16(72, o.bitpix);
    for (i, p) in o.pixdim.iter().enumerate() {
        h.f32(76 + 4 * i, *p);
    }
    h.f32(108, 352.0);
    h.f32(112, o.slope);
    h.f32(116, o.inter);
    h.i16(252, o.qform_code);
    h.i16(254, o.sform_code);
    for (i, q) in o.quatern.iter().enumerate() {
        h.f32(256 + 4 * i, *q);
    }
    for r in 0..3 {
        for c in 0..4 {
            h.f32(280 + 16 * r + 4 * c, o.srow[r][c]);
        }
    }
    h.buf[344..348].copy_from_slice(b"n+1\0");
    let mut out = h.buf;
    out.extend_from_slice(data);
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write");
    p
}

fn load(p: &Path) -> Volume {
    match volume::load(p, &LoadOptions::default()) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn every_datatype_both_byte_orders() {
    let dir = tempfile::tempdir().expect("tempdir");
    macro_rules! case {
        ($t:ty, $code:expr, $name:expr, $vals:expr) => {{
            let vals: [$t; 4] = $vals;
            for be in [false, true] {
                let mut data = Vec::new();
                for v in vals {
                    data.extend_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() });
                }
                let bits = (std::mem::size_of::<$t>() * 8) as i16;
                let o = N1 {
                    be,
                    datatype: $code,
                    bitpix: bits,
                    ..N1::default()
                };
                let p = write(
                    dir.path(),
                    &format!("{}_{be}.nii", $name),
                    &nifti1(&o, &data),
                );
                let v = load(&p);
                let want: Vec<f32> = vals.iter().map(|&x| x as f32).collect();
                assert_eq!(v.data, want, "{} be={be}", $name);
                assert_eq!(v.meta.datatype, $name);
            }
        }};
    }
    case!(u8, 2, "uint8", [0, 1, 200, 255]);
    case!(i8, 256, "int8", [-128, -1, 0, 127]);
    case!(i16, 4, "int16", [-32768, -2, 3, 32767]);
    case!(u16, 512, "uint16", [0, 1, 40000, 65535]);
    case!(i32, 8, "int32", [i32::MIN, -7, 8, 1 << 24]);
    case!(u32, 768, "uint32", [0, 7, 1 << 24, 1 << 31]);
    case!(i64, 1024, "int64", [-(1 << 40), -1, 0, 1 << 40]);
    case!(u64, 1280, "uint64", [0, 1, 1 << 40, 1 << 63]);
    case!(f32, 16, "float32", [-1.5, 0.25, 1e30, -0.0]);
    case!(f64, 64, "float64", [-1.5, 0.25, 1e30, 123456.789]);
}

#[test]
fn scl_slope_and_inter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data: Vec<u8> = [-3i16, 0, 5, 100]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let scaled = N1 {
        datatype: 4,
        bitpix: 16,
        slope: 2.0,
        inter: 10.0,
        ..N1::default()
    };
    let v = load(&write(dir.path(), "s.nii", &nifti1(&scaled, &data)));
    assert_eq!(v.data, vec![4.0, 10.0, 20.0, 210.0]);
    assert!(v.meta.notes.iter().any(|n| n.contains("scl_slope")));
    // slope 0 (and NaN) mean "no scaling", whatever the intercept.
    for (name, slope) in [("zero", 0.0f32), ("nan", f32::NAN)] {
        let o = N1 {
            datatype: 4,
            bitpix: 16,
            slope,
            inter: 10.0,
            ..N1::default()
        };
        let v = load(&write(
            dir.path(),
            &format!("{name}.nii"),
            &nifti1(&o, &data),
        ));
        assert_eq!(v.data, vec![-3.0, 0.0, 5.0, 100.0], "{name}");
    }
}

/// nibabel 5.4.2 `get_qform()` of a header with quatern (0.1, -0.2, 0.3), offsets
/// (10, -20, 30), pixdim (qfac -1, 1.5, 2, 2.5).
const NIBABEL_QFORM: [[f64; 4]; 4] = [
    [1.109999974966, -1.192834260472, 0.777361850513, 10.0],
    [0.774625691778, 1.599999970198, 0.763680945746, -20.0],
    [0.646417120142, 0.13094473037, -2.249999992549, 30.0],
    [0.0, 0.0, 0.0, 1.0],
];

fn assert_affine(got: &[[f64; 4]; 4], want: &[[f64; 4]; 4], tol: f64) {
    for r in 0..4 {
        for c in 0..4 {
            assert!((got[r][c] - want[r][c]).abs() <= tol, "[{r}][{c}]: {got:?}");
        }
    }
}

#[test]
fn qform_with_qfac_and_the_sform_qform_choice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = vec![0u8; 16];
    let q = N1 {
        pixdim: [-1.0, 1.5, 2.0, 2.5],
        qform_code: 1,
        quatern: [0.1, -0.2, 0.3, 10.0, -20.0, 30.0],
        ..N1::default()
    };
    let v = load(&write(dir.path(), "q.nii", &nifti1(&q, &data)));
    assert_affine(&v.affine, &NIBABEL_QFORM, 1e-6);
    assert_eq!(v.orientation_code(), "RAI");
    assert!((v.spacing[2] - 2.5).abs() < 1e-6);

    let srow = [
        [3.0, 0.0, 0.0, 1.0],
        [0.0, 3.0, 0.0, 2.0],
        [0.0, 0.0, 3.0, 3.0],
    ];
    let mut s_aff = [[0.0; 4]; 4];
    for r in 0..3 {
        for c in 0..4 {
            s_aff[r][c] = f64::from(srow[r][c]);
        }
    }
    s_aff[3][3] = 1.0;
    // qform code higher than sform code: qform (NiiVue's rule).
    let o = N1 {
        sform_code: 1,
        srow,
        ..q
    };
    let o = N1 { qform_code: 2, ..o };
    let v = load(&write(dir.path(), "q2s1.nii", &nifti1(&o, &data)));
    assert_affine(&v.affine, &NIBABEL_QFORM, 1e-6);
    // Equal codes: sform.
    let o = N1 {
        qform_code: 2,
        sform_code: 2,
        srow,
        ..N1 {
            pixdim: [-1.0, 1.5, 2.0, 2.5],
            quatern: [0.1, -0.2, 0.3, 10.0, -20.0, 30.0],
            ..N1::default()
        }
    };
    let v = load(&write(dir.path(), "q2s2.nii", &nifti1(&o, &data)));
    assert_affine(&v.affine, &s_aff, 1e-9);
    assert_eq!(v.meta.xform_code, 2);
    // Neither: pixdim diagonal, with a note.
    let o = N1 {
        pixdim: [1.0, 0.5, 0.75, 4.0],
        ..N1::default()
    };
    let v = load(&write(dir.path(), "none.nii", &nifti1(&o, &data)));
    let diag = [
        [0.5, 0.0, 0.0, 0.0],
        [0.0, 0.75, 0.0, 0.0],
        [0.0, 0.0, 4.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    assert_affine(&v.affine, &diag, 1e-9);
    assert!(v.meta.notes.iter().any(|n| n.contains("no sform/qform")));
}

#[test]
fn nifti2_big_endian_synthetic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = Hdr::new(544, true);
    h.i32(0, 540);
    h.buf[4..12].copy_from_slice(b"n+2\0\r\n\x1a\n");
    h.i16(12, 512); // uint16
    h.i16(14, 16);
    let dim = [4i64, 2, 3, 1, 2, 1, 1, 1];
    for (i, d) in dim.iter().enumerate() {
        h.i64(16 + 8 * i, *d);
    }
    for (i, p) in [1.0, 0.5, 0.5, 3.0, 1.0].iter().enumerate() {
        h.f64(104 + 8 * i, *p);
    }
    h.i64(168, 544);
    h.f64(176, 0.5); // slope
    h.f64(184, -1.0);
    h.i32(348, 4); // sform code 4 (MNI)
    let srow = [
        [-0.5, 0.0, 0.0, 9.0],
        [0.0, 0.5, 0.0, 8.0],
        [0.0, 0.0, 3.0, 7.0],
    ];
    for (r, row) in srow.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            h.f64(400 + 32 * r + 8 * c, *v);
        }
    }
    let mut bytes = h.buf;
    for v in 0u16..12 {
        bytes.extend_from_slice(&(v * 100).to_be_bytes());
    }
    let p = write(dir.path(), "n2.nii", &bytes);
    let v = load(&p);
    assert_eq!(v.meta.format, "NIfTI-2 (.nii, big-endian)");
    assert_eq!(v.dims, [2, 3, 1]);
    assert_eq!(v.data, vec![-1.0, 49.0, 99.0, 149.0, 199.0, 249.0]);
    assert_eq!(v.orientation_code(), "LAS");
    assert_eq!(v.meta.xform_code, 4);
    assert!((v.affine[0][3] - 9.0).abs() < 1e-12 && (v.affine[2][2] - 3.0).abs() < 1e-12);
    let v1 = volume::load(
        &p,
        &LoadOptions {
            volume: 1,
            ..LoadOptions::default()
        },
    )
    .expect("vol 1");
    assert_eq!(v1.data, vec![299.0, 349.0, 399.0, 449.0, 499.0, 549.0]);
}

#[test]
fn analyze_pair_header_is_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes = nifti1(&N1::default(), &[0u8; 16]);
    bytes[344..348].copy_from_slice(b"ni1\0");
    let p = write(dir.path(), "pair.hdr", &bytes);
    let e = volume::load(&p, &LoadOptions::default()).expect_err("refused");
    assert!(matches!(e, VolumeError::InvalidHeader { .. }), "{e:?}");
    assert!(e.to_string().contains(".hdr/.img"), "{e}");
}
