//! The error type of volume loading and saving.

use std::path::{Path, PathBuf};

use super::SeriesInfo;

/// Everything that can go wrong reading or writing a volume. Every variant names the file (or
/// folder) involved, so the message alone tells the user what to fix.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The path does not exist.
    #[error("{}: no such file or folder", path.display())]
    NotFound {
        /// The path asked for.
        path: PathBuf,
    },
    /// An operating-system error while reading or writing.
    #[error("{}: {context}: {source}", path.display())]
    Io {
        /// File involved.
        path: PathBuf,
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The gzip stream is damaged or ends early.
    #[error("{}: gzip stream is {problem}: {detail}", path.display())]
    Gzip {
        /// File involved.
        path: PathBuf,
        /// `truncated` or `corrupt`.
        problem: &'static str,
        /// Decoder message.
        detail: String,
    },
    /// The content is neither NIfTI-1, NIfTI-2 nor DICOM.
    #[error(
        "{}: unrecognised file format: {detail} (expected NIfTI-1/2 .nii/.nii.gz, a DICOM file or a folder of DICOM files)",
        path.display()
    )]
    UnknownFormat {
        /// File involved.
        path: PathBuf,
        /// What was found instead.
        detail: String,
    },
    /// The NIfTI header's size field is right but its magic string is not.
    #[error("{}: bad NIfTI magic {found:?} (expected \"n+1\" or \"n+2\")", path.display())]
    BadMagic {
        /// File involved.
        path: PathBuf,
        /// The magic bytes found, escaped.
        found: String,
    },
    /// A header field holds an impossible value.
    #[error("{}: invalid header: {detail}", path.display())]
    InvalidHeader {
        /// File involved.
        path: PathBuf,
        /// Which field and why.
        detail: String,
    },
    /// A NIfTI datatype that is not a real scalar (complex, RGB, float128, bit).
    #[error(
        "{}: unsupported datatype {name} (NIfTI code {code}); only real scalar images (integer or float) can be loaded",
        path.display()
    )]
    UnsupportedDatatype {
        /// File involved.
        path: PathBuf,
        /// NIfTI datatype code.
        code: i32,
        /// Its name.
        name: String,
    },
    /// The volume would need more memory than the budget allows (checked before allocating).
    #[error(
        "{}: a {dims} volume needs {needed} ({needed_bytes} bytes) as float32, over the memory budget of {budget}",
        path.display()
    )]
    TooLarge {
        /// File involved.
        path: PathBuf,
        /// Dimensions as written in the header, e.g. `512x512x400`.
        dims: String,
        /// Bytes needed.
        needed_bytes: u64,
        /// Human-readable size needed.
        needed: String,
        /// Human-readable budget.
        budget: String,
    },
    /// An input whose bytes must be held in memory whole (a DICOM file, a decompressed gzip
    /// DICOM stream) and that is over the memory budget (checked before reading it).
    #[error(
        "{}: {what} needs {needed} ({needed_bytes} bytes) in memory, over the memory budget of {budget}",
        path.display()
    )]
    InputTooLarge {
        /// File involved.
        path: PathBuf,
        /// What would be held, e.g. `the DICOM file`.
        what: String,
        /// Bytes needed (a lower bound for a stream cut at the budget).
        needed_bytes: u64,
        /// Human-readable size needed.
        needed: String,
        /// Human-readable budget.
        budget: String,
    },
    /// The file ends before all voxel data was read.
    #[error(
        "{}: voxel data truncated: expected {expected} bytes, file holds {found}",
        path.display()
    )]
    Truncated {
        /// File involved.
        path: PathBuf,
        /// Bytes expected.
        expected: u64,
        /// Bytes present.
        found: u64,
    },
    /// The requested 4-D volume index is past the end.
    #[error(
        "{}: volume index {index} is out of range: the file holds {count} volume(s) (0-based)",
        path.display()
    )]
    VolumeIndex {
        /// File involved.
        path: PathBuf,
        /// Requested index.
        index: usize,
        /// Number of volumes available.
        count: usize,
    },
    /// A folder holds several DICOM series and none was chosen.
    #[error(
        "{}: folder holds {} DICOM series; choose one by its UID:\n{}",
        path.display(),
        series.len(),
        format_series(series)
    )]
    MultipleSeries {
        /// Folder involved.
        path: PathBuf,
        /// The series found, for a picker.
        series: Vec<SeriesInfo>,
    },
    /// The requested series UID is not in the folder.
    #[error(
        "{}: no DICOM series with UID {uid}; available:\n{}",
        path.display(),
        format_series(available)
    )]
    SeriesNotFound {
        /// Folder involved.
        path: PathBuf,
        /// UID asked for.
        uid: String,
        /// What is there.
        available: Vec<SeriesInfo>,
    },
    /// A folder with no files in it.
    #[error("{}: folder is empty", path.display())]
    EmptyFolder {
        /// Folder involved.
        path: PathBuf,
    },
    /// A folder whose files are not DICOM.
    #[error("{}: none of the {files} file(s) in the folder is a readable DICOM image", path.display())]
    NoDicomFiles {
        /// Folder involved.
        path: PathBuf,
        /// Number of files looked at.
        files: usize,
    },
    /// A DICOM object without a Pixel Data element (e.g. a report or DICOMDIR).
    #[error("{}: DICOM file has no pixel data (SOP class {sop_class})", path.display())]
    NoPixelData {
        /// File involved.
        path: PathBuf,
        /// SOP Class UID, or `unknown`.
        sop_class: String,
    },
    /// The DICOM file could not be parsed.
    #[error("{}: cannot read DICOM: {detail}", path.display())]
    Dicom {
        /// File involved.
        path: PathBuf,
        /// Parser message.
        detail: String,
    },
    /// Pixel data could not be decoded.
    #[error(
        "{}: cannot decode pixel data with transfer syntax {ts_uid} ({ts_name}): {detail}",
        path.display()
    )]
    DicomDecode {
        /// File involved.
        path: PathBuf,
        /// Transfer Syntax UID.
        ts_uid: String,
        /// Its name.
        ts_name: String,
        /// Decoder message.
        detail: String,
    },
    /// A DICOM image this loader does not handle (colour, odd bit depth, ...).
    #[error("{}: unsupported DICOM image: {detail}", path.display())]
    UnsupportedDicom {
        /// File involved.
        path: PathBuf,
        /// What is unsupported.
        detail: String,
    },
    /// Slices of a series disagree (size, spacing).
    #[error("{}: inconsistent DICOM series: {detail}", path.display())]
    InconsistentSeries {
        /// Folder or file involved.
        path: PathBuf,
        /// What disagrees.
        detail: String,
    },
    /// The output would overwrite the input.
    #[error("{}: refusing to overwrite the input {}", path.display(), input.display())]
    OutputIsInput {
        /// Output path.
        path: PathBuf,
        /// Input it collides with.
        input: PathBuf,
    },
    /// The output path or volume is not writable as asked.
    #[error("{}: cannot write: {detail}", path.display())]
    Write {
        /// Output path.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// A volume whose data length does not match its dimensions, or whose affine is singular.
    #[error("invalid volume: {0}")]
    InvalidVolume(String),
}

impl VolumeError {
    /// A [`VolumeError::Io`] on `path`; `context` says what was being done (`cannot open`).
    pub(crate) fn io(path: &Path, context: &str, source: std::io::Error) -> Self {
        VolumeError::Io {
            path: path.to_path_buf(),
            context: context.into(),
            source,
        }
    }

    /// A [`VolumeError::TooLarge`]: a `dims` volume needing `needed` bytes as float32 (`None`
    /// when the count overflows) is over `budget`.
    pub(crate) fn too_large(path: &Path, dims: String, needed: Option<u64>, budget: u64) -> Self {
        VolumeError::TooLarge {
            path: path.to_path_buf(),
            dims,
            needed_bytes: needed.unwrap_or(u64::MAX),
            needed: needed
                .map(human_bytes)
                .unwrap_or_else(|| "more than 16 EiB".into()),
            budget: human_bytes(budget),
        }
    }
}

fn format_series(series: &[SeriesInfo]) -> String {
    series
        .iter()
        .map(|s| {
            format!(
                "  {}  \"{}\"  {} file(s), {}x{}x{}",
                s.uid, s.description, s.files, s.dims[0], s.dims[1], s.dims[2]
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) use crate::budget::human_bytes;
