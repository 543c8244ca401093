//! NIfTI-1 and NIfTI-2 reading (own header parser: the `nifti` crate reads no NIfTI-2) and
//! NIfTI-1 float32 writing.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::error::human_bytes;
use super::geometry::{self, Affine};
use super::{LoadOptions, Volume, VolumeError, VolumeMeta};

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
struct Layout {
    dims: [usize; 3],
    volumes: usize,
    bpv: usize,
    type_name: &'static str,
}

fn layout(path: &Path, h: &Header, opts: &LoadOptions) -> Result<Layout, VolumeError> {
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

fn map_read_error(path: &Path, gz: bool, e: std::io::Error, what: &str) -> VolumeError {
    if gz {
        match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                return VolumeError::Gzip {
                    path: path.to_path_buf(),
                    problem: "truncated",
                    detail: e.to_string(),
                };
            }
            std::io::ErrorKind::InvalidInput
            | std::io::ErrorKind::InvalidData
            | std::io::ErrorKind::Other => {
                return VolumeError::Gzip {
                    path: path.to_path_buf(),
                    problem: "corrupt",
                    detail: e.to_string(),
                };
            }
            _ => {}
        }
    }
    VolumeError::Io {
        path: path.to_path_buf(),
        context: what.to_string(),
        source: e,
    }
}

/// Reads as many bytes as possible into `buf` (stopping at end of stream); returns the count.
pub(crate) fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Opens `path` as a byte stream, transparently decompressing gzip.
pub(crate) fn open_stream(path: &Path, gz: bool) -> Result<Box<dyn Read>, VolumeError> {
    let file = File::open(path).map_err(|e| VolumeError::Io {
        path: path.to_path_buf(),
        context: "cannot open".into(),
        source: e,
    })?;
    let reader = BufReader::with_capacity(1 << 16, file);
    Ok(if gz {
        Box::new(MultiGzDecoder::new(reader))
    } else {
        Box::new(reader)
    })
}

/// Loads a NIfTI-1/2 file whose header prefix (`prefix`, at least 540 bytes unless the file is
/// shorter) was already read and recognised as `flavour`.
pub(crate) fn load(
    path: &Path,
    gz: bool,
    prefix: &[u8],
    flavour: Flavour,
    opts: &LoadOptions,
) -> Result<Volume, VolumeError> {
    let h = parse_header(path, prefix, flavour)?;
    let lay = layout(path, &h, opts)?;
    if opts.volume >= lay.volumes {
        return Err(VolumeError::VolumeIndex {
            path: path.to_path_buf(),
            index: opts.volume,
            count: lay.volumes,
        });
    }
    let header_size = if h.version == 1 {
        NIFTI1_HEADER
    } else {
        NIFTI2_HEADER
    } as f64;
    if !h.vox_offset.is_finite() || h.vox_offset < header_size || h.vox_offset > 1e15 {
        return Err(VolumeError::InvalidHeader {
            path: path.to_path_buf(),
            detail: format!(
                "vox_offset {} is not a valid data offset (must be at least {header_size})",
                h.vox_offset
            ),
        });
    }
    let nvox = lay.dims[0] * lay.dims[1] * lay.dims[2];
    let vol_bytes = (nvox as u64) * lay.bpv as u64;
    let offset = vol_bytes
        .checked_mul(opts.volume as u64)
        .and_then(|o| o.checked_add(h.vox_offset as u64))
        .ok_or_else(|| VolumeError::InvalidHeader {
            path: path.to_path_buf(),
            detail: format!("volume {} lies beyond any possible file size", opts.volume),
        })?;

    let slope_raw = h.scl_slope;
    let (slope, inter) = if slope_raw.is_finite() && slope_raw != 0.0 {
        (
            slope_raw,
            if h.scl_inter.is_finite() {
                h.scl_inter
            } else {
                0.0
            },
        )
    } else {
        (1.0, 0.0)
    };
    let scaled = slope != 1.0 || inter != 0.0;

    let mut data = Vec::new();
    data.try_reserve_exact(nvox)
        .map_err(|_| VolumeError::TooLarge {
            path: path.to_path_buf(),
            dims: format!("{}x{}x{}", lay.dims[0], lay.dims[1], lay.dims[2]),
            needed_bytes: nvox as u64 * 4,
            needed: human_bytes(nvox as u64 * 4),
            budget: "the memory available".into(),
        })?;
    read_voxels(
        path, gz, offset, vol_bytes, &h, lay.bpv, slope, inter, &mut data,
    )?;

    let (affine, xform_code, affine_note) = header_affine(&h);
    let mut notes = Vec::new();
    if let Some(n) = affine_note {
        notes.push(n);
    }
    if lay.volumes > 1 {
        notes.push(format!(
            "4-D input: volume {} of {} shown",
            opts.volume + 1,
            lay.volumes
        ));
    }
    if scaled {
        notes.push(format!("scl_slope {slope} and scl_inter {inter} applied"));
    }
    let non_finite = data.iter().filter(|v| !v.is_finite()).count();
    if non_finite > 0 {
        notes.push(format!("{non_finite} voxel(s) are NaN or infinite"));
    }
    let ext = if gz { ".nii.gz" } else { ".nii" };
    let order = if h.big_endian { ", big-endian" } else { "" };
    let meta = VolumeMeta {
        source_path: Some(path.to_path_buf()),
        format: format!("NIfTI-{} ({ext}{order})", h.version),
        datatype: lay.type_name.to_string(),
        modality: None,
        series_description: if h.descrip.is_empty() {
            None
        } else {
            Some(h.descrip.clone())
        },
        notes,
        non_finite,
        xform_code,
    };
    let spacing = geometry::column_norms(&affine);
    Ok(Volume {
        data,
        dims: lay.dims,
        spacing,
        affine,
        meta,
    })
}

/// Streams `len` bytes at `offset` of the (possibly gzip) file and appends them, converted to
/// scaled f32, to `out`. Reads in chunks so the raw bytes never need a second full-size buffer.
#[allow(clippy::too_many_arguments)]
fn read_voxels(
    path: &Path,
    gz: bool,
    offset: u64,
    len: u64,
    h: &Header,
    bpv: usize,
    slope: f64,
    inter: f64,
    out: &mut Vec<f32>,
) -> Result<(), VolumeError> {
    let truncated = |found: u64| VolumeError::Truncated {
        path: path.to_path_buf(),
        expected: len,
        found,
    };
    let mut reader: Box<dyn Read> = if gz {
        let mut r = open_stream(path, true)?;
        let skipped = std::io::copy(&mut (&mut r).take(offset), &mut std::io::sink())
            .map_err(|e| map_read_error(path, true, e, "cannot read"))?;
        if skipped < offset {
            return Err(truncated(0));
        }
        r
    } else {
        let mut file = File::open(path).map_err(|e| VolumeError::Io {
            path: path.to_path_buf(),
            context: "cannot open".into(),
            source: e,
        })?;
        let file_len = file
            .metadata()
            .map_err(|e| VolumeError::Io {
                path: path.to_path_buf(),
                context: "cannot stat".into(),
                source: e,
            })?
            .len();
        if file_len < offset.saturating_add(len) {
            return Err(truncated(file_len.saturating_sub(offset)));
        }
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| VolumeError::Io {
                path: path.to_path_buf(),
                context: "cannot seek".into(),
                source: e,
            })?;
        Box::new(BufReader::with_capacity(1 << 16, file))
    };
    let chunk_voxels = (1usize << 20) / bpv.max(1);
    let mut buf = vec![0u8; chunk_voxels * bpv];
    let mut remaining = len;
    let mut done = 0u64;
    while remaining > 0 {
        let want = remaining.min(buf.len() as u64) as usize;
        let got = read_full(reader.as_mut(), &mut buf[..want])
            .map_err(|e| map_read_error(path, gz, e, "cannot read"))?;
        if got < want {
            return Err(truncated(done + got as u64));
        }
        convert(&buf[..want], h.datatype, h.big_endian, slope, inter, out);
        remaining -= want as u64;
        done += want as u64;
    }
    if gz {
        // Read the rest of the stream (up to 64 MiB more: all of it for all but very large 4-D
        // files) so the gzip CRC check runs and a corrupt stream is reported instead of silently
        // giving wrong voxels.
        std::io::copy(&mut reader.take(64 << 20), &mut std::io::sink())
            .map_err(|e| map_read_error(path, gz, e, "cannot read"))?;
    }
    Ok(())
}

/// Converts raw voxel bytes of NIfTI `datatype` to f32 with `v * slope + inter`.
fn convert(bytes: &[u8], datatype: i32, be: bool, slope: f64, inter: f64, out: &mut Vec<f32>) {
    macro_rules! conv {
        ($t:ty, $n:expr) => {
            out.extend(bytes.chunks_exact($n).map(|c| {
                let mut a = [0u8; $n];
                a.copy_from_slice(c);
                let v = if be {
                    <$t>::from_be_bytes(a)
                } else {
                    <$t>::from_le_bytes(a)
                };
                (v as f64 * slope + inter) as f32
            }))
        };
    }
    match datatype {
        2 => out.extend(bytes.iter().map(|&v| (f64::from(v) * slope + inter) as f32)),
        256 => out.extend(
            bytes
                .iter()
                .map(|&v| (f64::from(v as i8) * slope + inter) as f32),
        ),
        4 => conv!(i16, 2),
        512 => conv!(u16, 2),
        8 => conv!(i32, 4),
        768 => conv!(u32, 4),
        1024 => conv!(i64, 8),
        1280 => conv!(u64, 8),
        16 => conv!(f32, 4),
        64 => conv!(f64, 8),
        _ => {}
    }
}

/// Writes `vol` as NIfTI-1 float32 (`.nii` or `.nii.gz` by the extension of `path`), with sform
/// and qform set from the affine, atomically (temporary file in the same folder, then rename).
pub(crate) fn save(vol: &Volume, path: &Path) -> Result<(), VolumeError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let gz = if name.ends_with(".nii.gz") {
        true
    } else if name.ends_with(".nii") {
        false
    } else {
        return Err(VolumeError::Write {
            path: path.to_path_buf(),
            detail: "the output name must end in .nii.gz or .nii".into(),
        });
    };
    let n = vol.dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if n != Some(vol.data.len()) || vol.dims.contains(&0) {
        return Err(VolumeError::InvalidVolume(format!(
            "{} voxels of data for dims {:?}",
            vol.data.len(),
            vol.dims
        )));
    }
    if vol.dims.iter().any(|&d| d > i16::MAX as usize) {
        return Err(VolumeError::Write {
            path: path.to_path_buf(),
            detail: format!(
                "dims {:?} exceed the NIfTI-1 limit of 32767 per axis",
                vol.dims
            ),
        });
    }
    if !vol.affine.iter().flatten().all(|v| v.is_finite())
        || geometry::det3(&geometry::linear_part(&vol.affine)).abs() < 1e-12
    {
        return Err(VolumeError::InvalidVolume(
            "the affine is singular or not finite".into(),
        ));
    }
    check_not_input(vol, path)?;
    let header = header_bytes(vol);
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let write_err = |context: &str, e: std::io::Error| VolumeError::Io {
        path: path.to_path_buf(),
        context: context.into(),
        source: e,
    };
    let tmp = tempfile::Builder::new()
        .prefix(".deltawkv-")
        .suffix(".part")
        .tempfile_in(&dir)
        .map_err(|e| write_err("cannot create a temporary file in the output folder", e))?;
    {
        let file = tmp
            .as_file()
            .try_clone()
            .map_err(|e| write_err("cannot write", e))?;
        let buffered = std::io::BufWriter::with_capacity(1 << 16, file);
        let mut w: Box<dyn Write> = if gz {
            Box::new(flate2::write::GzEncoder::new(
                buffered,
                flate2::Compression::new(6),
            ))
        } else {
            Box::new(buffered)
        };
        let write_all = |w: &mut Box<dyn Write>| -> std::io::Result<()> {
            w.write_all(&header)?;
            w.write_all(&[0u8; 4])?;
            let mut chunk = Vec::with_capacity(1 << 16);
            for block in vol.data.chunks(1 << 14) {
                chunk.clear();
                for v in block {
                    chunk.extend_from_slice(&v.to_le_bytes());
                }
                w.write_all(&chunk)?;
            }
            w.flush()
        };
        write_all(&mut w).map_err(|e| write_err("cannot write", e))?;
        drop(w);
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| write_err("cannot flush to disk", e))?;
    tmp.persist(path)
        .map_err(|e| write_err("cannot move the finished file into place", e.error))?;
    Ok(())
}

/// Refuses to write over the source file, or anywhere inside a source folder.
fn check_not_input(vol: &Volume, path: &Path) -> Result<(), VolumeError> {
    let Some(src) = vol.meta.source_path.as_ref() else {
        return Ok(());
    };
    let Ok(src_c) = src.canonicalize() else {
        return Ok(());
    };
    let out_c = match path.canonicalize() {
        Ok(p) => p,
        Err(_) => {
            // Not existing yet: canonicalise the folder and append the name.
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            match (parent.canonicalize(), path.file_name()) {
                (Ok(p), Some(n)) => p.join(n),
                _ => return Ok(()),
            }
        }
    };
    let collides = if src_c.is_dir() {
        out_c.starts_with(&src_c)
    } else {
        out_c == src_c
    };
    if collides {
        return Err(VolumeError::OutputIsInput {
            path: path.to_path_buf(),
            input: src.clone(),
        });
    }
    Ok(())
}

/// The 348-byte NIfTI-1 header for `vol` as float32 data at offset 352.
fn header_bytes(vol: &Volume) -> Vec<u8> {
    let mut h = vec![0u8; NIFTI1_HEADER];
    let mut put = |off: usize, bytes: &[u8]| {
        if let Some(dst) = h.get_mut(off..off + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    };
    put(0, &348i32.to_le_bytes());
    put(38, b"r");
    let dims = [
        3i16,
        vol.dims[0] as i16,
        vol.dims[1] as i16,
        vol.dims[2] as i16,
        1,
        1,
        1,
        1,
    ];
    for (i, d) in dims.iter().enumerate() {
        put(40 + 2 * i, &d.to_le_bytes());
    }
    put(70, &16i16.to_le_bytes());
    put(72, &32i16.to_le_bytes());
    let (b, c, d, qfac, sizes) = geometry::matrix_to_quaternion(&vol.affine);
    let pixdim = [
        qfac as f32,
        sizes[0] as f32,
        sizes[1] as f32,
        sizes[2] as f32,
        1.0,
        1.0,
        1.0,
        1.0,
    ];
    for (i, p) in pixdim.iter().enumerate() {
        put(76 + 4 * i, &p.to_le_bytes());
    }
    put(108, &352f32.to_le_bytes());
    put(112, &1f32.to_le_bytes());
    put(116, &0f32.to_le_bytes());
    put(123, &[2u8]); // xyzt_units: millimetres
    let descrip = vol
        .meta
        .series_description
        .as_deref()
        .unwrap_or("written by deltawkv");
    let mut text: Vec<u8> = descrip
        .bytes()
        .filter(|c| c.is_ascii() && *c != 0)
        .take(79)
        .collect();
    text.push(0);
    put(148, &text);
    let code: i16 = match vol.meta.xform_code {
        1..=5 => vol.meta.xform_code as i16,
        _ => 2,
    };
    put(252, &code.to_le_bytes());
    put(254, &code.to_le_bytes());
    for (i, q) in [b, c, d].iter().enumerate() {
        put(256 + 4 * i, &(*q as f32).to_le_bytes());
    }
    for r in 0..3 {
        put(268 + 4 * r, &(vol.affine[r][3] as f32).to_le_bytes());
        for cc in 0..4 {
            put(
                280 + 16 * r + 4 * cc,
                &(vol.affine[r][cc] as f32).to_le_bytes(),
            );
        }
    }
    put(344, b"n+1\0");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_flavours() {
        assert_eq!(
            detect(&348i32.to_le_bytes()),
            Some(Flavour::V1 { big_endian: false })
        );
        assert_eq!(
            detect(&348i32.to_be_bytes()),
            Some(Flavour::V1 { big_endian: true })
        );
        assert_eq!(
            detect(&540i32.to_le_bytes()),
            Some(Flavour::V2 { big_endian: false })
        );
        assert_eq!(detect(b"DICM"), None);
        assert_eq!(detect(&[1, 2]), None);
    }

    #[test]
    fn slope_zero_means_no_scaling_and_types_convert() {
        let mut out = Vec::new();
        convert(&(-3i16).to_be_bytes(), 4, true, 2.0, 1.0, &mut out);
        convert(&[200u8], 256, false, 1.0, 0.0, &mut out);
        convert(&u64::MAX.to_le_bytes(), 1280, false, 1.0, 0.0, &mut out);
        assert_eq!(out, vec![-5.0, -56.0, u64::MAX as f32]);
    }
}
