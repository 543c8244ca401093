//! Finding DICOM series in a folder: the walk over its files, recognising DICOM by content, and
//! grouping the file headers by SeriesInstanceUID into the series list a picker shows.

use std::path::{Path, PathBuf};

use super::looks_like_dicom;
use super::object::{FileInfo, describe, open_object};
use crate::volume::nifti::read_full;
use crate::volume::{SeriesInfo, SkippedFile, VolumeError};

/// Files under `folder` (recursively, at most 8 levels, hidden entries skipped), sorted.
fn walk(folder: &Path) -> Result<Vec<PathBuf>, VolumeError> {
    let mut out = Vec::new();
    let mut stack = vec![(folder.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).map_err(|e| VolumeError::io(&dir, "cannot list folder", e))?;
        for entry in entries.flatten() {
            let p = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            match entry.file_type() {
                Ok(t) if t.is_dir() && depth < 8 => stack.push((p, depth + 1)),
                Ok(t) if (t.is_file() || t.is_symlink()) && p.is_file() => out.push(p),
                _ => {}
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Whether a file is DICOM by its first bytes; `Some(gz)` when it is.
fn sniff(path: &Path) -> Option<bool> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut head = [0u8; 132];
    let n = read_full(&mut f, &mut head).ok()?;
    let head = head.get(..n)?;
    if looks_like_dicom(head) || super::looks_like_bare_data_set(head) {
        return Some(false);
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        let f = std::fs::File::open(path).ok()?;
        let mut d = flate2::read::MultiGzDecoder::new(f);
        let mut inner = [0u8; 132];
        let n = read_full(&mut d, &mut inner).ok()?;
        if looks_like_dicom(inner.get(..n)?) {
            return Some(true);
        }
    }
    None
}

/// A series UID and the headers of its files.
pub(super) type SeriesFiles = (String, Vec<FileInfo>);

/// What a folder holds: its series, and the DICOM files that could not be read.
pub(super) struct Scan {
    /// Image headers grouped by SeriesInstanceUID, in order of first appearance.
    pub(super) groups: Vec<SeriesFiles>,
    /// Files recognised as DICOM whose header could not be read (non-image objects such as a
    /// DICOMDIR are not listed: they are not images of any series).
    pub(super) skipped: Vec<SkippedFile>,
}

/// Headers of every DICOM image in `folder`, grouped by SeriesInstanceUID (in order of first
/// appearance), and the DICOM files that could not be read.
pub(super) fn scan_folder(folder: &Path, budget: u64) -> Result<Scan, VolumeError> {
    let files = walk(folder)?;
    if files.is_empty() {
        return Err(VolumeError::EmptyFolder {
            path: folder.to_path_buf(),
        });
    }
    scan_files(folder, &files, budget)
}

/// Headers of every DICOM image among `files` (non-DICOM and unreadable files skipped), grouped
/// by SeriesInstanceUID (in order of first appearance); `label` names them in errors.
pub(super) fn scan_files(
    label: &Path,
    files: &[PathBuf],
    budget: u64,
) -> Result<Scan, VolumeError> {
    let folder = label;
    let mut groups: Vec<SeriesFiles> = Vec::new();
    let mut first_error: Option<VolumeError> = None;
    let mut skipped = Vec::new();
    for p in files {
        let Some(gz) = sniff(p) else { continue };
        let described =
            open_object(p, gz, false, budget).and_then(|obj| describe(p, gz, &obj, budget));
        match described {
            Ok(info) => match groups.iter_mut().find(|(uid, _)| *uid == info.series_uid) {
                Some((_, v)) => v.push(info),
                None => groups.push((info.series_uid.clone(), vec![info])),
            },
            // One image over the budget means its series is too: say so rather than skip it.
            Err(e @ (VolumeError::TooLarge { .. } | VolumeError::InputTooLarge { .. })) => {
                return Err(e);
            }
            Err(e) => {
                tracing::debug!("skipping {}: {e}", p.display());
                if !matches!(e, VolumeError::NoPixelData { .. }) {
                    skipped.push(SkippedFile {
                        path: p.clone(),
                        reason: e.to_string(),
                    });
                }
                if first_error.is_none() {
                    first_error = Some(e);
                }
            }
        }
    }
    if groups.is_empty() {
        // A folder holding exactly one non-image DICOM deserves the specific error.
        return Err(match first_error {
            Some(e @ VolumeError::NoPixelData { .. }) if files.len() == 1 => e,
            _ => VolumeError::NoDicomFiles {
                path: folder.to_path_buf(),
                files: files.len(),
            },
        });
    }
    Ok(Scan { groups, skipped })
}

/// The SeriesInstanceUID of `path` when it is a readable DICOM image; `None` otherwise.
pub(super) fn series_uid_of(path: &Path, budget: u64) -> Option<String> {
    let gz = sniff(path)?;
    let obj = open_object(path, gz, false, budget).ok()?;
    describe(path, gz, &obj, budget).ok().map(|i| i.series_uid)
}

/// The picker's description of series `uid` made of `files`.
pub(super) fn series_info(uid: &str, files: &[FileInfo]) -> SeriesInfo {
    let first = files.first();
    let slices: usize = files.iter().map(|f| f.frames).sum();
    SeriesInfo {
        uid: uid.to_string(),
        description: first
            .and_then(|f| f.description.clone())
            .unwrap_or_default(),
        modality: first.and_then(|f| f.modality.clone()).unwrap_or_default(),
        files: files.len(),
        slices,
        dims: [
            first.map(|f| f.cols).unwrap_or(0),
            first.map(|f| f.rows).unwrap_or(0),
            slices,
        ],
    }
}
