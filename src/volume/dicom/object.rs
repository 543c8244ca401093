//! Opening DICOM objects and reading their headers: the element-length pre-check and the memory
//! budget applied before dicom-object parses a file, typed element getters, and [`FileInfo`],
//! what one file holds (size, frames, series, sample type and per-frame geometry).

use std::io::Read;
use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions, Tag};

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
    if !with_pixels {
        options = options.read_until(tags::PIXEL_DATA);
    }
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
        check_lengths(
            path,
            &mut std::io::Cursor::new(&bytes[..]),
            bytes.len() as u64,
            with_pixels,
            budget,
        )?;
        options.from_reader(&bytes[..])
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
