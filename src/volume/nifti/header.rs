//! The NIfTI-1/2 header: flavour and byte order, fields, datatypes, the voxel layout it
//! implies, and the affine from sform/qform.

use std::path::Path;

use crate::volume::error::human_bytes;
use crate::volume::geometry::{self, Affine};
use crate::volume::{LoadOptions, VolumeError};

/// Size of a NIfTI-1 header.
pub(crate) const NIFTI1_HEADER: usize = 348;
/// Size of a NIfTI-2 header.
pub(crate) const NIFTI2_HEADER: usize = 540;

/// Which NIfTI flavour and byte order a header prefix holds, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavour {
    /// NIfTI-1 (348-byte header), `big_endian`.
    V1 { big_endian: bool },
    /// NIfTI-2 (540-byte header), `big_endian`.
    V2 { big_endian: bool },
}

/// Recognises a NIfTI header from its first 4 bytes (the `sizeof_hdr` field).
pub(crate) fn detect(prefix: &[u8]) -> Option<Flavour> {
    let b: [u8; 4] = prefix.get(0..4)?.try_into().ok()?;
    match (i32::from_le_bytes(b), i32::from_be_bytes(b)) {
        (348, _) => Some(Flavour::V1 { big_endian: false }),
        (_, 348) => Some(Flavour::V1 { big_endian: true }),
        (540, _) => Some(Flavour::V2 { big_endian: false }),
        (_, 540) => Some(Flavour::V2 { big_endian: true }),
        _ => None,
    }
}

/// Whether the header prefix carries the magic string of `flavour` (`n+1`, or `n+2` with its
/// line-ending check bytes).
pub(crate) fn magic_ok(prefix: &[u8], flavour: Flavour) -> bool {
    match flavour {
        Flavour::V1 { .. } => prefix.get(344..348) == Some(&b"n+1\0"[..]),
        Flavour::V2 { .. } => prefix.get(4..12) == Some(&b"n+2\0\r\n\x1a\n"[..]),
    }
}

/// The fields of a NIfTI-1 or NIfTI-2 header this loader uses, widened to common types.
#[derive(Clone, Debug)]
pub(crate) struct Header {
    pub version: u8,
    pub big_endian: bool,
    pub dim: [i64; 8],
    pub datatype: i32,
    pub bitpix: i32,
    pub pixdim: [f64; 8],
    pub vox_offset: f64,
    pub scl_slope: f64,
    pub scl_inter: f64,
    pub descrip: String,
    pub qform_code: i32,
    pub sform_code: i32,
    pub quatern: [f64; 3],
    pub qoffset: [f64; 3],
    pub srow: [[f64; 4]; 3],
    pub magic: [u8; 4],
}

/// Little helper reading fixed-offset fields of either byte order; out-of-range reads give 0
/// (the caller checks the buffer length first).
struct Fields<'a> {
    buf: &'a [u8],
    be: bool,
}

impl Fields<'_> {
    fn bytes<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(s) = self.buf.get(off..off + N) {
            out.copy_from_slice(s);
        }
        out
    }
    fn i16(&self, off: usize) -> i64 {
        let b = self.bytes::<2>(off);
        i64::from(if self.be {
            i16::from_be_bytes(b)
        } else {
            i16::from_le_bytes(b)
        })
    }
    fn i32(&self, off: usize) -> i64 {
        let b = self.bytes::<4>(off);
        i64::from(if self.be {
            i32::from_be_bytes(b)
        } else {
            i32::from_le_bytes(b)
        })
    }
    fn i64(&self, off: usize) -> i64 {
        let b = self.bytes::<8>(off);
        if self.be {
            i64::from_be_bytes(b)
        } else {
            i64::from_le_bytes(b)
        }
    }
    fn f32(&self, off: usize) -> f64 {
        let b = self.bytes::<4>(off);
        f64::from(if self.be {
            f32::from_be_bytes(b)
        } else {
            f32::from_le_bytes(b)
        })
    }
    fn f64(&self, off: usize) -> f64 {
        let b = self.bytes::<8>(off);
        if self.be {
            f64::from_be_bytes(b)
        } else {
            f64::from_le_bytes(b)
        }
    }
    fn text(&self, off: usize, len: usize) -> String {
        let raw = self.buf.get(off..off + len).unwrap_or(&[]);
        let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
        String::from_utf8_lossy(&raw[..end]).trim().to_string()
    }
}

/// Parses a NIfTI header of the given flavour from `buf` (at least the header's size).
pub(crate) fn parse_header(
    path: &Path,
    buf: &[u8],
    flavour: Flavour,
) -> Result<Header, VolumeError> {
    let (version, be, need) = match flavour {
        Flavour::V1 { big_endian } => (1u8, big_endian, NIFTI1_HEADER),
        Flavour::V2 { big_endian } => (2u8, big_endian, NIFTI2_HEADER),
    };
    if buf.len() < need {
        return Err(VolumeError::InvalidHeader {
            path: path.to_path_buf(),
            detail: format!(
                "file ends inside the {need}-byte NIfTI-{version} header ({} bytes present)",
                buf.len()
            ),
        });
    }
    let f = Fields { buf, be };
    let mut dim = [0i64; 8];
    let mut pixdim = [0f64; 8];
    let h = if version == 1 {
        for i in 0..8 {
            dim[i] = f.i16(40 + 2 * i);
            pixdim[i] = f.f32(76 + 4 * i);
        }
        let mut srow = [[0.0; 4]; 3];
        for (r, row) in srow.iter_mut().enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v = f.f32(280 + 16 * r + 4 * c);
            }
        }
        Header {
            version,
            big_endian: be,
            dim,
            datatype: f.i16(70) as i32,
            bitpix: f.i16(72) as i32,
            pixdim,
            vox_offset: f.f32(108),
            scl_slope: f.f32(112),
            scl_inter: f.f32(116),
            descrip: f.text(148, 80),
            qform_code: f.i16(252) as i32,
            sform_code: f.i16(254) as i32,
            quatern: [f.f32(256), f.f32(260), f.f32(264)],
            qoffset: [f.f32(268), f.f32(272), f.f32(276)],
            srow,
            magic: f.bytes::<4>(344),
        }
    } else {
        for i in 0..8 {
            dim[i] = f.i64(16 + 8 * i);
            pixdim[i] = f.f64(104 + 8 * i);
        }
        let mut srow = [[0.0; 4]; 3];
        for (r, row) in srow.iter_mut().enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v = f.f64(400 + 32 * r + 8 * c);
            }
        }
        Header {
            version,
            big_endian: be,
            dim,
            datatype: f.i16(12) as i32,
            bitpix: f.i16(14) as i32,
            pixdim,
            vox_offset: f.i64(168) as f64,
            scl_slope: f.f64(176),
            scl_inter: f.f64(184),
            descrip: f.text(240, 80),
            qform_code: f.i32(344) as i32,
            sform_code: f.i32(348) as i32,
            quatern: [f.f64(352), f.f64(360), f.f64(368)],
            qoffset: [f.f64(376), f.f64(384), f.f64(392)],
            srow,
            magic: f.bytes::<4>(4),
        }
    };
    if !magic_ok(buf, flavour) {
        if version == 1 && &h.magic == b"ni1\0" {
            return Err(VolumeError::InvalidHeader {
                path: path.to_path_buf(),
                detail: "this is the header of a .hdr/.img pair (magic \"ni1\"); only single-file .nii/.nii.gz is supported"
                    .into(),
            });
        }
        return Err(VolumeError::BadMagic {
            path: path.to_path_buf(),
            found: h.magic.escape_ascii().to_string(),
        });
    }
    Ok(h)
}

/// Datatype code to (name, bytes per voxel) for the real scalar types; `Err(name)` for the rest.
fn datatype_info(code: i32) -> Result<(&'static str, usize), &'static str> {
    match code {
        2 => Ok(("uint8", 1)),
        4 => Ok(("int16", 2)),
        8 => Ok(("int32", 4)),
        16 => Ok(("float32", 4)),
        64 => Ok(("float64", 8)),
        256 => Ok(("int8", 1)),
        512 => Ok(("uint16", 2)),
        768 => Ok(("uint32", 4)),
        1024 => Ok(("int64", 8)),
        1280 => Ok(("uint64", 8)),
        1 => Err("binary (1 bit)"),
        32 => Err("complex64"),
        128 => Err("RGB24"),
        1536 => Err("float128"),
        1792 => Err("complex128"),
        2048 => Err("complex256"),
        2304 => Err("RGBA32"),
        _ => Err("unknown"),
    }
}

/// Validated layout of the voxel data: 3-D size, volume count, bytes per voxel.
pub(crate) struct Layout {
    pub(crate) dims: [usize; 3],
    pub(crate) volumes: usize,
    pub(crate) bpv: usize,
    pub(crate) type_name: &'static str,
}

/// Checks the header's sizes and datatype against the load options and the memory budget.
pub(crate) fn layout(path: &Path, h: &Header, opts: &LoadOptions) -> Result<Layout, VolumeError> {
    let invalid = |detail: String| VolumeError::InvalidHeader {
        path: path.to_path_buf(),
        detail,
    };
    let (type_name, bpv) =
        datatype_info(h.datatype).map_err(|name| VolumeError::UnsupportedDatatype {
            path: path.to_path_buf(),
            code: h.datatype,
            name: name.to_string(),
        })?;
    if h.bitpix != 0 && h.bitpix as usize != bpv * 8 {
        tracing::warn!(
            "{}: bitpix {} disagrees with datatype {type_name}",
            path.display(),
            h.bitpix
        );
    }
    let ndim = h.dim[0];
    if !(1..=7).contains(&ndim) {
        return Err(invalid(format!(
            "dim[0] = {ndim}: the number of dimensions must be 1 to 7"
        )));
    }
    let ndim = ndim as usize;
    let mut sizes = [1u64; 7];
    for (i, s) in sizes.iter_mut().enumerate().take(ndim) {
        let d = h.dim[i + 1];
        if d < 1 {
            return Err(invalid(format!(
                "dim[{}] = {d}: every used dimension must be at least 1",
                i + 1
            )));
        }
        *s = d as u64;
    }
    let dims_text = sizes[..ndim]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join("x");
    let too_large = |needed: Option<u64>| VolumeError::TooLarge {
        path: path.to_path_buf(),
        dims: dims_text.clone(),
        needed_bytes: needed.unwrap_or(u64::MAX),
        needed: needed
            .map(human_bytes)
            .unwrap_or_else(|| "more than 16 EiB".into()),
        budget: human_bytes(opts.memory_budget),
    };
    let nvox = sizes[0]
        .checked_mul(sizes[1])
        .and_then(|v| v.checked_mul(sizes[2]));
    let needed = nvox.and_then(|n| n.checked_mul(4));
    match needed {
        Some(b) if b <= opts.memory_budget => {}
        other => return Err(too_large(other)),
    }
    let volumes = sizes[3..]
        .iter()
        .try_fold(1u64, |acc, &s| acc.checked_mul(s))
        .ok_or_else(|| invalid(format!("{dims_text}: the number of volumes overflows")))?;
    let to_usize = |v: u64| usize::try_from(v).map_err(|_| too_large(needed));
    Ok(Layout {
        dims: [
            to_usize(sizes[0])?,
            to_usize(sizes[1])?,
            to_usize(sizes[2])?,
        ],
        volumes: to_usize(volumes)?,
        bpv,
        type_name,
    })
}

/// The affine by NiiVue's rule: sform unless the qform code is higher, then qform, then pixdim.
/// Returns the affine, the xform code it came with, and a note when it fell back.
pub(crate) fn header_affine(h: &Header) -> (Affine, i32, Option<String>) {
    let srow_ok = h.srow.iter().flatten().all(|v| v.is_finite());
    let use_sform = h.sform_code > 0 && h.sform_code >= h.qform_code && srow_ok;
    if use_sform {
        let mut a = geometry::IDENTITY;
        a[..3].copy_from_slice(&h.srow);
        if geometry::det3(&geometry::linear_part(&a)).abs() > 0.0 {
            return (a, h.sform_code, None);
        }
    }
    let pix = [h.pixdim[1], h.pixdim[2], h.pixdim[3]];
    let quat_ok = h
        .quatern
        .iter()
        .chain(h.qoffset.iter())
        .chain(pix.iter())
        .all(|v| v.is_finite());
    if h.qform_code > 0 && quat_ok {
        let m = geometry::quaternion_to_matrix(
            h.quatern[0],
            h.quatern[1],
            h.quatern[2],
            h.pixdim[0],
            pix,
        );
        let mut a = geometry::IDENTITY;
        for r in 0..3 {
            a[r][..3].copy_from_slice(&m[r]);
            a[r][3] = h.qoffset[r];
        }
        return (a, h.qform_code, None);
    }
    let mut a = geometry::IDENTITY;
    for (i, &p) in pix.iter().enumerate() {
        a[i][i] = if p.is_finite() && p > 0.0 { p } else { 1.0 };
    }
    let note = if h.sform_code > 0 || h.qform_code > 0 {
        "sform/qform unusable (non-finite or singular): orientation unknown, affine from pixdim"
    } else {
        "no sform/qform: orientation unknown, affine from pixdim"
    };
    (a, 0, Some(note.to_string()))
}
