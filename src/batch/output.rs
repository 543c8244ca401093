//! The output side of a batch run: an [`OutputWriter`] per format names a job's output, encodes
//! the upscaled volume (CPU work, timed apart) and the shared [`write_atomically`] puts the
//! bytes in place (a temporary named after the output, fsync, rename). A job's output is
//! complete exactly when its final name exists, so a rerun skips it; the temporary of a killed
//! run has another name and is removed before the job is written again (only the shard owning a
//! job writes it).
//!
//! [`NiftiWriter`] writes one `.nii.gz` file per job; [`DicomWriter`] a folder holding the SR as a
//! derived DICOM series ([`Encoded::Folder`], renamed into place whole).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::BatchError;
use super::jobs::Job;
use crate::volume::{Provenance, Volume};

/// A job's encoded output: one file, or a folder of files (e.g. a DICOM series).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Encoded {
    /// The bytes of the output file.
    File(Vec<u8>),
    /// The files of the output folder: (file name, bytes).
    Folder(Vec<(String, Vec<u8>)>),
}

impl Encoded {
    /// Total bytes.
    pub fn len(&self) -> usize {
        match self {
            Encoded::File(b) => b.len(),
            Encoded::Folder(files) => files.iter().map(|(_, b)| b.len()).sum(),
        }
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A batch output format.
pub trait OutputWriter: Send + Sync {
    /// The format's name (`nifti`).
    fn format(&self) -> &'static str;
    /// The output path of a job whose output is named by `stem` (relative to the output
    /// folder, no extension).
    fn output_path(&self, out_dir: &Path, stem: &Path) -> PathBuf;
    /// Encodes the upscaled volume of `job`.
    fn encode(&self, vol: &Volume, job: &Job) -> Result<Encoded, BatchError>;
}

/// NIfTI-1 float32, gzipped (`.nii.gz`; a `.csv` manifest may name `.nii` outputs).
#[derive(Clone, Copy, Debug, Default)]
pub struct NiftiWriter;

impl OutputWriter for NiftiWriter {
    fn format(&self) -> &'static str {
        "nifti"
    }

    fn output_path(&self, out_dir: &Path, stem: &Path) -> PathBuf {
        let name = stem
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out_dir.join(stem.with_file_name(format!("{name}.nii.gz")))
    }

    fn encode(&self, vol: &Volume, job: &Job) -> Result<Encoded, BatchError> {
        let gz = !job
            .explicit_output
            .as_ref()
            .and_then(|p| p.file_name())
            .is_some_and(|n| {
                let n = n.to_string_lossy().to_lowercase();
                n.ends_with(".nii")
            });
        crate::volume::encode_nifti(vol, gz)
            .map(Encoded::File)
            .map_err(|e| BatchError::Output(e.to_string()))
    }
}

/// A derived DICOM series per job (`crate::volume::encode_derived_series`): a folder named after
/// the job's stem, one MR image per slice; a DICOM input's study, patient and frame of reference
/// are kept, a NIfTI input becomes a new anonymous study.
#[derive(Clone, Debug)]
pub struct DicomWriter {
    /// The checkpoint and scale written into every instance (its SHA-256 is read once).
    pub provenance: Provenance,
}

impl OutputWriter for DicomWriter {
    fn format(&self) -> &'static str {
        "dicom"
    }

    fn output_path(&self, out_dir: &Path, stem: &Path) -> PathBuf {
        out_dir.join(stem)
    }

    fn encode(&self, vol: &Volume, job: &Job) -> Result<Encoded, BatchError> {
        crate::volume::encode_derived_series(vol, &self.provenance, &job.stem)
            .map(|series| Encoded::Folder(series.files))
            .map_err(|e| BatchError::Output(e.to_string()))
    }
}

/// The output path of `job`: the manifest's explicit output (relative to `out_dir`), else the
/// writer's name for its stem.
pub fn output_path(writer: &dyn OutputWriter, out_dir: &Path, job: &Job) -> PathBuf {
    match &job.explicit_output {
        Some(p) => out_dir.join(p),
        None => writer.output_path(out_dir, &job.stem),
    }
}

/// The temporary name `path` is written under first: `.NAME.deltawkv-part` beside it.
pub fn partial_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.deltawkv-part"))
}

/// Whether `path` holds a complete output: it exists under its final name (written only by the
/// rename of [`write_atomically`]) and, for a file, is not empty.
pub fn is_complete(path: &Path) -> bool {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => true,
        Ok(m) => m.len() > 0,
        Err(_) => false,
    }
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> BatchError {
    BatchError::Output(format!("{}: {what}: {e}", path.display()))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), BatchError> {
    let mut f = std::fs::File::create(path).map_err(|e| io_err(path, "cannot create", e))?;
    f.write_all(bytes)
        .map_err(|e| io_err(path, "cannot write", e))?;
    f.sync_all()
        .map_err(|e| io_err(path, "cannot flush to disk", e))
}

/// Writes `encoded` to `path` atomically: into [`partial_path`] (a stale one from a killed run
/// is removed first), synced, then renamed into place; the folder is created as needed. Refuses
/// to write over `input` (the job's own source).
pub fn write_atomically(encoded: &Encoded, path: &Path, input: &Path) -> Result<(), BatchError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, "cannot create the folder", e))?;
    }
    let canonical = match (path.parent().map(Path::canonicalize), path.file_name()) {
        (Some(Ok(dir)), Some(name)) => Some(dir.join(name)),
        _ => path.canonicalize().ok(),
    };
    if let (Some(a), Ok(b)) = (canonical, input.canonicalize())
        && (a == b || b.is_dir() && a.starts_with(&b))
    {
        return Err(BatchError::Output(format!(
            "{} is the input {} or inside it: refusing to write there",
            path.display(),
            input.display()
        )));
    }
    let part = partial_path(path);
    match std::fs::symlink_metadata(&part) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&part),
        Ok(_) => std::fs::remove_file(&part),
        Err(_) => Ok(()),
    }
    .map_err(|e| io_err(&part, "cannot remove the stale partial output", e))?;
    let written = match encoded {
        Encoded::File(bytes) => write_file(&part, bytes),
        Encoded::Folder(files) => std::fs::create_dir(&part)
            .map_err(|e| io_err(&part, "cannot create", e))
            .and_then(|()| {
                files
                    .iter()
                    .try_for_each(|(name, bytes)| write_file(&part.join(name), bytes))
            }),
    };
    let placed = written.and_then(|()| {
        std::fs::rename(&part, path).map_err(|e| io_err(path, "cannot move into place", e))
    });
    if let Err(e) = placed {
        let _ = match encoded {
            Encoded::File(_) => std::fs::remove_file(&part),
            Encoded::Folder(_) => std::fs::remove_dir_all(&part),
        };
        return Err(e);
    }
    // The rename is durable once the folder's entry is.
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_a_stale_partial_and_leaves_none() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("sub/x.nii.gz");
        let input = dir.path().join("in.nii");
        std::fs::write(&input, b"input").unwrap();
        assert!(!is_complete(&out));
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        std::fs::write(partial_path(&out), b"half").unwrap();
        assert!(!is_complete(&out), "a partial output is not complete");
        write_atomically(&Encoded::File(b"done".to_vec()), &out, &input).unwrap();
        assert!(is_complete(&out));
        assert_eq!(std::fs::read(&out).unwrap(), b"done");
        assert!(!partial_path(&out).exists());
        // Never over the input.
        assert!(write_atomically(&Encoded::File(b"x".to_vec()), &input, &input).is_err());
        assert_eq!(std::fs::read(&input).unwrap(), b"input");
    }

    #[test]
    fn folder_outputs_are_renamed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("series");
        let files = vec![
            ("1.dcm".to_string(), vec![1u8]),
            ("2.dcm".to_string(), vec![2u8]),
        ];
        write_atomically(
            &Encoded::Folder(files),
            &out,
            dir.path().join("in").as_path(),
        )
        .unwrap();
        assert!(is_complete(&out));
        assert_eq!(std::fs::read(out.join("2.dcm")).unwrap(), vec![2u8]);
        assert!(!partial_path(&out).exists());
    }

    #[test]
    fn nifti_names() {
        let w = NiftiWriter;
        assert_eq!(
            w.output_path(Path::new("/o"), Path::new("a/b")),
            PathBuf::from("/o/a/b.nii.gz")
        );
        assert_eq!(
            partial_path(Path::new("/o/a/b.nii.gz")),
            PathBuf::from("/o/a/.b.nii.gz.deltawkv-part")
        );
    }
}
