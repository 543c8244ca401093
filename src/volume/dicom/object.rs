//! Opening DICOM objects and reading their headers: the element-length pre-check and the memory
//! budget applied before dicom-object parses a file, typed element getters, and [`FileInfo`],
//! what one file holds (size, frames, series, sample type and per-frame geometry).

use std::io::Read;
use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_object::{
    DefaultDicomObject, FileMetaTableBuilder, InMemDicomObject, OpenFileOptions, Tag,
};

use super::geometry::{FrameGeo, frame_geometry};
use super::lengths;
use crate::volume::error::human_bytes;
use crate::volume::{VolumeError, gzip_or_io};

/// A [`VolumeError::Dicom`] from a parser error.
fn dicom_err(path: &Path, e: impl std::fmt::Display) -> VolumeError {
    VolumeError::Dicom {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// Opens a DICOM file (gzip-compressed when `gz`), fully or only up to the pixel data.
pub(super) fn open_object(
    path: &Path,
    gz: bool,
    with_pixels: bool,
    budget: u64,
) -> Result<DefaultDicomObject, VolumeError> {
    let mut options = OpenFileOptions::new();
    options = if with_pixels {
        // Nothing after the pixel data is needed: bytes some writers append after the data set
        // (zero padding, a partial element) are left unread instead of failing the file.
        options.read_to(tags::PIXEL_DATA)
    } else {
        options.read_until(tags::PIXEL_DATA)
    };
    let result = if gz {
        let file =
            std::fs::File::open(path).map_err(|e| VolumeError::io(path, "cannot open", e))?;
        let mut decoder = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file));
        let mut bytes = Vec::new();
        // Compressed DICOM: bound the decompressed size by the memory budget.
        (&mut decoder)
            .take(budget.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| gzip_or_io(path, true, e))?;
        if bytes.len() as u64 > budget {
            return Err(VolumeError::InputTooLarge {
                path: path.to_path_buf(),
                what: "the decompressed gzip DICOM stream".into(),
                needed_bytes: bytes.len() as u64,
                needed: format!("more than {}", human_bytes(budget)),
                budget: human_bytes(budget),
            });
        }
        from_memory(path, options, &bytes, with_pixels, budget)?
    } else if let Some(bytes) = raw_data_set(path, budget)? {
        // A bare data set (no preamble, no meta group), as some archives store: read behind a
        // file meta group made for it, through the same length checks as any file.
        from_memory(path, options, &bytes, with_pixels, budget)?
    } else {
        if with_pixels {
            // The whole file (pixel data included) is read into memory.
            let len = std::fs::metadata(path)
                .map_err(|e| VolumeError::io(path, "cannot stat", e))?
                .len();
            if len > budget {
                return Err(VolumeError::InputTooLarge {
                    path: path.to_path_buf(),
                    what: "the DICOM file".into(),
                    needed_bytes: len,
                    needed: human_bytes(len),
                    budget: human_bytes(budget),
                });
            }
        }
        let file =
            std::fs::File::open(path).map_err(|e| VolumeError::io(path, "cannot open", e))?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
        let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
        check_lengths(path, &mut reader, len, with_pixels, budget)?;
        options.open_file(path)
    };
    result.map_err(|e| dicom_err(path, e))
}

/// Parses the DICOM file held in `bytes` (preamble optional) after the length pre-check.
fn from_memory(
    path: &Path,
    options: OpenFileOptions,
    bytes: &[u8],
    with_pixels: bool,
    budget: u64,
) -> Result<Result<DefaultDicomObject, dicom_object::ReadError>, VolumeError> {
    check_lengths(
        path,
        &mut std::io::Cursor::new(bytes),
        bytes.len() as u64,
        with_pixels,
        budget,
    )?;
    Ok(options.from_reader(bytes))
}

/// Whether `prefix` (the first bytes of a file) looks like a bare little-endian data set without
/// preamble and meta group: a group 0x0008 element first, with an explicit VR or a short
/// implicit length. `Some(explicit)` when it does.
pub(super) fn bare_data_set(prefix: &[u8]) -> Option<bool> {
    let head = prefix.get(..8)?;
    if head.get(..2) != Some(&[0x08, 0x00][..]) || super::looks_like_dicom(prefix) {
        return None;
    }
    let vr = head.get(4..6)?;
    if vr.iter().all(|c| c.is_ascii_uppercase()) {
        return Some(true);
    }
    let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    (len < 0x1000 && len % 2 == 0).then_some(false)
}

/// The value of the first short UI element `tag` found in the first 8 KiB of a bare data set.
fn peek_uid(bytes: &[u8], tag: [u8; 4], explicit: bool) -> Option<String> {
    let window = bytes.get(..bytes.len().min(8192))?;
    let at = window.windows(4).position(|w| w == tag)?;
    let (len, start) = if explicit {
        let l = u16::from_le_bytes([*window.get(at + 6)?, *window.get(at + 7)?]);
        (usize::from(l), at + 8)
    } else {
        let l = window.get(at + 4..at + 8)?;
        (
            u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize,
            at + 8,
        )
    };
    let v = std::str::from_utf8(bytes.get(start..start.checked_add(len)?)?).ok()?;
    let v = v.trim_end_matches(['\0', ' ']);
    (!v.is_empty() && v.len() <= 64).then(|| v.to_string())
}

/// The file at `path` as a DICOM stream with preamble and meta group, when it is a bare data set
/// (see [`bare_data_set`]); `None` for any other file.
fn raw_data_set(path: &Path, budget: u64) -> Result<Option<Vec<u8>>, VolumeError> {
    let mut head = [0u8; 132];
    let n = {
        let mut f =
            std::fs::File::open(path).map_err(|e| VolumeError::io(path, "cannot open", e))?;
        crate::volume::nifti::read_full(&mut f, &mut head)
            .map_err(|e| VolumeError::io(path, "cannot read", e))?
    };
    let Some(explicit) = bare_data_set(head.get(..n).unwrap_or_default()) else {
        return Ok(None);
    };
    let len = std::fs::metadata(path)
        .map_err(|e| VolumeError::io(path, "cannot stat", e))?
        .len();
    if len > budget {
        return Err(VolumeError::InputTooLarge {
            path: path.to_path_buf(),
            what: "the DICOM file".into(),
            needed_bytes: len,
            needed: human_bytes(len),
            budget: human_bytes(budget),
        });
    }
    let body = std::fs::read(path).map_err(|e| VolumeError::io(path, "cannot read", e))?;
    let ts = if explicit {
        dicom_dictionary_std::uids::EXPLICIT_VR_LITTLE_ENDIAN
    } else {
        dicom_dictionary_std::uids::IMPLICIT_VR_LITTLE_ENDIAN
    };
    let mut builder = FileMetaTableBuilder::new().transfer_syntax(ts);
    if let Some(c) = peek_uid(&body, [0x08, 0x00, 0x16, 0x00], explicit) {
        builder = builder.media_storage_sop_class_uid(c);
    }
    if let Some(i) = peek_uid(&body, [0x08, 0x00, 0x18, 0x00], explicit) {
        builder = builder.media_storage_sop_instance_uid(i);
    }
    let meta = builder.build().map_err(|e| dicom_err(path, e))?;
    let mut bytes = vec![0u8; 128];
    bytes.extend_from_slice(b"DICM");
    meta.write(&mut bytes).map_err(|e| dicom_err(path, e))?;
    tracing::debug!(
        "{}: a data set without preamble or meta group ({})",
        path.display(),
        if explicit {
            "explicit VR"
        } else {
            "implicit VR"
        }
    );
    bytes.extend_from_slice(&body);
    Ok(Some(bytes))
}

/// Refuses element lengths past the end of the file (and oversized deflated data sets) before
/// the parser allocates them; see [`lengths`].
fn check_lengths<R: std::io::Read + std::io::Seek>(
    path: &Path,
    r: &mut R,
    total: u64,
    with_pixels: bool,
    budget: u64,
) -> Result<(), VolumeError> {
    use lengths::{Problem, check};
    match check(r, total, !with_pixels, budget) {
        Ok(()) => Ok(()),
        Err(Problem::Length(detail)) => Err(VolumeError::Dicom {
            path: path.to_path_buf(),
            detail,
        }),
        Err(Problem::Inflated(n)) => Err(VolumeError::InputTooLarge {
            path: path.to_path_buf(),
            what: "the inflated data set (Deflated Explicit VR Little Endian)".into(),
            needed_bytes: n,
            needed: format!("more than {}", human_bytes(budget)),
            budget: human_bytes(budget),
        }),
    }
}

/// A string element, trimmed of spaces and NULs; `None` when absent or empty.
pub(super) fn elem_str(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let s = obj.get(tag)?.to_str().ok()?;
    let s = s
        .trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .to_string();
    if s.is_empty() { None } else { Some(s) }
}

/// A numeric element's values; `None` when absent, empty or not all finite.
pub(super) fn elem_floats(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<f64>> {
    let v = obj.get(tag)?.to_multi_float64().ok()?;
    if v.is_empty() || !v.iter().all(|x| x.is_finite()) {
        None
    } else {
        Some(v)
    }
}

/// The first value of a numeric element.
pub(super) fn elem_f64(obj: &InMemDicomObject, tag: Tag) -> Option<f64> {
    elem_floats(obj, tag).and_then(|v| v.first().copied())
}

/// An integer element.
pub(super) fn elem_int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    obj.get(tag)?.to_int::<i64>().ok()
}

/// A numeric element of (at least) three values, e.g. ImagePositionPatient.
pub(super) fn elem_vec3(obj: &InMemDicomObject, tag: Tag) -> Option<[f64; 3]> {
    let v = elem_floats(obj, tag)?;
    Some([*v.first()?, *v.get(1)?, *v.get(2)?])
}

/// A numeric element of (at least) six values, e.g. ImageOrientationPatient.
pub(super) fn elem_vec6(obj: &InMemDicomObject, tag: Tag) -> Option<[f64; 6]> {
    let v = elem_floats(obj, tag)?;
    let mut out = [0.0; 6];
    for (o, x) in out.iter_mut().zip(v.iter()) {
        *o = *x;
    }
    if v.len() < 6 { None } else { Some(out) }
}

/// What one DICOM file holds, read from its header.
#[derive(Clone, Debug)]
pub(super) struct FileInfo {
    pub(super) path: PathBuf,
    /// Gzip-compressed.
    pub(super) gz: bool,
    pub(super) series_uid: String,
    pub(super) description: Option<String>,
    pub(super) modality: Option<String>,
    pub(super) rows: usize,
    pub(super) cols: usize,
    pub(super) frames: usize,
    /// SpacingBetweenSlices (top level or pixel measures).
    pub(super) spacing_between: Option<f64>,
    /// A Siemens mosaic (ImageType holds MOSAIC).
    pub(super) mosaic: bool,
    /// One entry per frame.
    pub(super) frame_geo: Vec<FrameGeo>,
    /// Enhanced multi-frame (has functional groups).
    pub(super) enhanced: bool,
    /// Stored sample type, e.g. `int16`, `uint16 (12 bits stored)`.
    pub(super) datatype: String,
    /// Transfer Syntax UID.
    pub(super) ts_uid: String,
    /// SOPClassUID (from the meta group when the data set has none).
    pub(super) sop_class_uid: String,
    /// SOPInstanceUID (empty when absent).
    pub(super) sop_instance_uid: String,
}

/// Reads what `obj` (the file at `path`) holds from its header; refuses images without pixel data,
/// impossible frame counts and multi-frame images over `budget`.
pub(super) fn describe(
    path: &Path,
    gz: bool,
    obj: &DefaultDicomObject,
    budget: u64,
) -> Result<FileInfo, VolumeError> {
    let ds: &InMemDicomObject = obj;
    let rows = elem_int(ds, tags::ROWS);
    let cols = elem_int(ds, tags::COLUMNS);
    let (rows, cols) = match (rows, cols) {
        (Some(r), Some(c)) if r > 0 && c > 0 => (r as usize, c as usize),
        _ => {
            let sop = elem_str(ds, tags::SOP_CLASS_UID)
                .unwrap_or_else(|| obj.meta().media_storage_sop_class_uid().to_string());
            return Err(VolumeError::NoPixelData {
                path: path.to_path_buf(),
                sop_class: sop,
            });
        }
    };
    let frames = match elem_int(ds, tags::NUMBER_OF_FRAMES) {
        Some(n) if n >= 1 => n as usize,
        Some(n) => {
            return Err(VolumeError::UnsupportedDicom {
                path: path.to_path_buf(),
                detail: format!("NumberOfFrames is {n}"),
            });
        }
        None => 1,
    };
    // Refuse absurd frame counts before allocating anything per frame (single-frame files are
    // checked as a whole series in `build_volume`).
    let needed = (rows as u64)
        .checked_mul(cols as u64)
        .and_then(|v| v.checked_mul(frames as u64))
        .and_then(|v| v.checked_mul(4));
    if frames > 1 && needed.is_none_or(|b| b > budget) {
        return Err(VolumeError::too_large(
            path,
            format!("{cols}x{rows}x{frames}"),
            needed,
            budget,
        ));
    }
    // Every frame takes at least one byte of the file (of the decompressed stream for a gzip
    // file, at most 1032 times larger): a larger count is a broken header, refused before the
    // per-frame descriptions below are allocated (tiny frames pass the budget check).
    let file_len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(u64::MAX);
    let max_frames = file_len.saturating_mul(if gz { 1032 } else { 1 });
    if frames as u64 > max_frames {
        return Err(VolumeError::UnsupportedDicom {
            path: path.to_path_buf(),
            detail: format!(
                "NumberOfFrames is {frames}, more than a file of {file_len} bytes can hold"
            ),
        });
    }
    let series_uid = elem_str(ds, tags::SERIES_INSTANCE_UID)
        .unwrap_or_else(|| "(no SeriesInstanceUID)".to_string());
    let image_type = elem_str(ds, tags::IMAGE_TYPE)
        .unwrap_or_default()
        .to_uppercase();
    let geometry = frame_geometry(ds, frames);
    Ok(FileInfo {
        path: path.to_path_buf(),
        gz,
        series_uid,
        description: elem_str(ds, tags::SERIES_DESCRIPTION),
        modality: elem_str(ds, tags::MODALITY),
        rows,
        cols,
        frames,
        spacing_between: geometry.spacing_between,
        mosaic: image_type.contains("MOSAIC"),
        frame_geo: geometry.frames,
        enhanced: geometry.enhanced,
        datatype: sample_type(ds),
        ts_uid: obj.meta().transfer_syntax().to_string(),
        sop_class_uid: elem_str(ds, tags::SOP_CLASS_UID).unwrap_or_else(|| {
            obj.meta()
                .media_storage_sop_class_uid()
                .trim_end_matches('\0')
                .to_string()
        }),
        sop_instance_uid: elem_str(ds, tags::SOP_INSTANCE_UID).unwrap_or_default(),
    })
}

/// Stored sample type, e.g. `int16`, `uint16 (12 bits stored)`.
fn sample_type(ds: &InMemDicomObject) -> String {
    let alloc = elem_int(ds, tags::BITS_ALLOCATED).unwrap_or(0);
    let stored = elem_int(ds, tags::BITS_STORED).unwrap_or(alloc);
    let signed = elem_int(ds, tags::PIXEL_REPRESENTATION).unwrap_or(0) == 1;
    let base = format!("{}int{alloc}", if signed { "" } else { "u" });
    if stored > 0 && stored < alloc {
        format!("{base} ({stored} bits stored)")
    } else {
        base
    }
}
