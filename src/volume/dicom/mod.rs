//! DICOM reading: single files (single- or multi-frame, classic or enhanced), and folders of
//! one-file-per-slice series, with geometry from ImagePositionPatient/ImageOrientationPatient
//! (or the enhanced functional groups), converted from LPS to RAS.
//!
//! The entry points are here; [`series`] finds the series of a folder, [`object`] opens files and
//! reads their headers (after the element-length pre-check of [`lengths`]), [`geometry`] orders
//! the images into a volume and computes its affine, and [`pixels`] decodes the pixel data.

use std::collections::BTreeMap;
use std::path::Path;

use dicom_object::DefaultDicomObject;

use super::{LoadOptions, SeriesInfo, SkippedFile, Volume, VolumeError, VolumeMeta};
use geometry::{SliceSource, assemble, lps_to_ras};
use object::{FileInfo, describe, open_object};
use pixels::{decode_into, transfer_syntax_name};
use series::{scan_folder, series_info};

mod geometry;
mod lengths;
mod object;
mod pixels;
mod series;
mod source;
mod write;

pub use source::{DicomSource, SourceInstance};
pub use write::{
    DicomWriteError, EncodedSeries, Provenance, WrittenSeries, check_output as check_series_output,
    encode_derived_series, new_uid, sha256_file, write_derived_series,
};

/// The source image of every slice of an assembled volume.
fn source_instances(files: &[FileInfo], slices: &[SliceSource]) -> Vec<SourceInstance> {
    slices
        .iter()
        .filter_map(|s| {
            let f = files.get(s.file)?;
            Some(SourceInstance {
                sop_class_uid: f.sop_class_uid.clone(),
                sop_instance_uid: f.sop_instance_uid.clone(),
                frame: (f.frames > 1).then(|| s.frame as u32 + 1),
            })
        })
        .collect()
}

/// True when `prefix` holds the DICOM marker `DICM` at byte 128 (after the preamble) or at 0.
pub(crate) fn looks_like_dicom(prefix: &[u8]) -> bool {
    prefix.get(128..132) == Some(&b"DICM"[..]) || prefix.get(0..4) == Some(&b"DICM"[..])
}

/// Why [`build_volume`] failed: a problem of one file (its index in `files`), which a series of
/// several files can leave out, or of the series as a whole.
enum BuildError {
    File(usize, VolumeError),
    Series(VolumeError),
}

impl From<VolumeError> for BuildError {
    fn from(e: VolumeError) -> Self {
        BuildError::Series(e)
    }
}

impl BuildError {
    fn into_inner(self) -> VolumeError {
        match self {
            BuildError::File(_, e) | BuildError::Series(e) => e,
        }
    }
}

/// True when `prefix` looks like a bare data set (no preamble, no meta group) that the loader
/// reads as DICOM.
pub(crate) fn looks_like_bare_data_set(prefix: &[u8]) -> bool {
    object::bare_data_set(prefix).is_some()
}

/// Builds the volume of an assembled series, opening each file once.
fn build_volume(
    label: &Path,
    files: &[FileInfo],
    first_obj: Option<DefaultDicomObject>,
    opts: &LoadOptions,
    format: String,
) -> Result<Volume, BuildError> {
    let Some(first) = files.first() else {
        return Err(BuildError::Series(VolumeError::InconsistentSeries {
            path: label.to_path_buf(),
            detail: "no images".into(),
        }));
    };
    for f in files {
        if f.rows != first.rows || f.cols != first.cols {
            return Err(BuildError::Series(VolumeError::InconsistentSeries {
                path: label.to_path_buf(),
                detail: format!(
                    "{} is {}x{} but {} is {}x{}",
                    f.path.display(),
                    f.cols,
                    f.rows,
                    first.path.display(),
                    first.cols,
                    first.rows
                ),
            }));
        }
    }
    let asm = assemble(files, label, opts)?;
    let dims = [first.cols, first.rows, asm.slices.len()];
    let nvox = (dims[0] as u64)
        .checked_mul(dims[1] as u64)
        .and_then(|v| v.checked_mul(dims[2] as u64));
    let needed = nvox.and_then(|v| v.checked_mul(4));
    if needed.map(|b| b > opts.memory_budget).unwrap_or(true) {
        return Err(BuildError::Series(VolumeError::too_large(
            label,
            format!("{}x{}x{}", dims[0], dims[1], dims[2]),
            needed,
            opts.memory_budget,
        )));
    }
    let mut data = vec![0f32; dims[0] * dims[1] * dims[2]];
    // Which frames each file contributes.
    let mut per_file: BTreeMap<usize, Vec<(usize, usize)>> = BTreeMap::new();
    for (k, s) in asm.slices.iter().enumerate() {
        per_file.entry(s.file).or_default().push((s.frame, k));
    }
    let mut first_obj = first_obj;
    let affine = lps_to_ras(&asm.affine_lps);
    let mut source = None;
    for (fi, wanted) in per_file {
        let Some(info) = files.get(fi) else { continue };
        let obj = match (fi, first_obj.take()) {
            (0, Some(o)) => o,
            _ => open_object(&info.path, info.gz, true, opts.memory_budget)
                .map_err(|e| BuildError::File(fi, e))?,
        };
        decode_into(&info.path, &obj, info, &wanted, &mut data)
            .map_err(|e| BuildError::File(fi, e))?;
        if source.is_none() {
            source = Some(DicomSource::from_first(
                &obj,
                &info.series_uid,
                affine,
                source_instances(files, &asm.slices),
            ));
        }
    }
    let mut notes = asm.notes;
    if files.iter().any(|f| f.mosaic) {
        notes.push(
            "Siemens mosaic: the tiles are not unpacked into slices; shown as stored".to_string(),
        );
    }
    if first.frames > 1 && !first.enhanced && files.len() == 1 {
        notes.push(format!(
            "multi-frame image ({} frames) without per-frame functional groups",
            first.frames
        ));
    }
    let non_finite = data.iter().filter(|v| !v.is_finite()).count();
    if non_finite > 0 {
        notes.push(format!("{non_finite} voxel(s) are NaN or infinite"));
    }
    let scaled = files
        .iter()
        .flat_map(|f| f.frame_geo.iter())
        .any(|g| g.slope != 1.0 || g.intercept != 0.0);
    if scaled {
        notes.push("Rescale Slope/Intercept applied".to_string());
    }
    let meta = VolumeMeta {
        source_path: Some(label.to_path_buf()),
        format,
        datatype: first.datatype.clone(),
        modality: first.modality.clone(),
        series_description: first.description.clone(),
        notes,
        non_finite,
        xform_code: 1,
        skipped: Vec::new(),
        dicom: source,
    };
    let spacing = super::geometry::column_norms(&affine);
    Ok(Volume {
        data,
        dims,
        spacing,
        affine,
        meta,
    })
}

/// Loads one DICOM file (single image, classic or enhanced multi-frame).
pub(crate) fn load_file(path: &Path, gz: bool, opts: &LoadOptions) -> Result<Volume, VolumeError> {
    let obj = open_object(path, gz, true, opts.memory_budget)?;
    let info = describe(path, gz, &obj, opts.memory_budget)?;
    if let Some(wanted) = opts.series.as_deref()
        && wanted != info.series_uid
    {
        tracing::warn!(
            "{}: --series {wanted} ignored for a single file (its series is {})",
            path.display(),
            info.series_uid
        );
    }
    let ts = obj.meta().transfer_syntax().to_string();
    let kind = if info.enhanced {
        format!("DICOM enhanced multi-frame ({} frames)", info.frames)
    } else if info.frames > 1 {
        format!("DICOM multi-frame ({} frames)", info.frames)
    } else {
        "DICOM file".to_string()
    };
    let format = format!("{kind}, {}", transfer_syntax_name(&ts));
    build_volume(path, std::slice::from_ref(&info), Some(obj), opts, format)
        .map_err(BuildError::into_inner)
}

/// The DICOM series in `folder`.
pub(crate) fn list_series(folder: &Path) -> Result<Vec<SeriesInfo>, VolumeError> {
    let scan = scan_folder(folder, crate::budget::default_budget())?;
    Ok(scan
        .groups
        .iter()
        .map(|(uid, files)| series_info(uid, files))
        .collect())
}

/// Loads one series from a folder of DICOM files.
pub(crate) fn load_folder(folder: &Path, opts: &LoadOptions) -> Result<Volume, VolumeError> {
    let scan = scan_folder(folder, opts.memory_budget)?;
    load_scan(folder, scan, opts)
}

/// Loads one series from exactly `files` (a series gathered elsewhere, e.g. by a batch walk);
/// `label` names the volume in errors and in its metadata.
pub(crate) fn load_files(
    label: &Path,
    files: &[std::path::PathBuf],
    opts: &LoadOptions,
) -> Result<Volume, VolumeError> {
    if files.is_empty() {
        return Err(VolumeError::EmptyFolder {
            path: label.to_path_buf(),
        });
    }
    let scan = series::scan_files(label, files, opts.memory_budget)?;
    load_scan(label, scan, opts)
}

/// The SeriesInstanceUID of each readable DICOM image among `files` (others are left out).
pub(crate) fn series_of_files(
    files: &[std::path::PathBuf],
    budget: u64,
) -> Vec<(std::path::PathBuf, String)> {
    use rayon::prelude::*;
    files
        .par_iter()
        .filter_map(|p| series::series_uid_of(p, budget).map(|uid| (p.clone(), uid)))
        .collect()
}

/// Picks the series `opts` names (or the only one) among `groups` and builds its volume.
fn load_scan(folder: &Path, scan: series::Scan, opts: &LoadOptions) -> Result<Volume, VolumeError> {
    let groups = &scan.groups;
    let chosen =
        match opts.series.as_deref() {
            Some(uid) => groups.iter().find(|(u, _)| u == uid).ok_or_else(|| {
                VolumeError::SeriesNotFound {
                    path: folder.to_path_buf(),
                    uid: uid.to_string(),
                    available: groups.iter().map(|(u, f)| series_info(u, f)).collect(),
                }
            })?,
            None if groups.len() > 1 => {
                return Err(VolumeError::MultipleSeries {
                    path: folder.to_path_buf(),
                    series: groups.iter().map(|(u, f)| series_info(u, f)).collect(),
                });
            }
            None => groups.first().ok_or_else(|| VolumeError::NoDicomFiles {
                path: folder.to_path_buf(),
                files: 0,
            })?,
        };
    let mut files = chosen.1.clone();
    let mut skipped = scan.skipped;
    let ts_name = files
        .first()
        .map(|f| transfer_syntax_name(&f.ts_uid))
        .unwrap_or_default();
    loop {
        let format = format!("DICOM series ({} files), {ts_name}", files.len());
        match build_volume(folder, &files, None, opts, format) {
            Ok(mut vol) => {
                for s in &skipped {
                    vol.meta
                        .notes
                        .push(format!("skipped {}: {}", s.path.display(), s.reason));
                }
                vol.meta.skipped = skipped;
                return Ok(vol);
            }
            // One unreadable file of several: leave it out and say so (as scanners' archives
            // sometimes hold a truncated or corrupt image); a series of one fails with its error.
            Err(BuildError::File(fi, e)) if files.len() > 1 && skippable(&e) => {
                let bad = files.remove(fi);
                tracing::warn!("skipping {}: {e}", bad.path.display());
                skipped.push(SkippedFile {
                    path: bad.path,
                    reason: e.to_string(),
                });
            }
            Err(e) => return Err(e.into_inner()),
        }
    }
}

/// Whether a file's error lets the rest of its series open without it (a budget or a volume
/// index error concerns the series, not the file).
fn skippable(e: &VolumeError) -> bool {
    !matches!(
        e,
        VolumeError::TooLarge { .. }
            | VolumeError::InputTooLarge { .. }
            | VolumeError::VolumeIndex { .. }
    )
}
