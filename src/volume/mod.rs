//! Volume I/O: NIfTI-1/2 and DICOM in, NIfTI out; orientation and slicing.
//!
//! Entry points: [`load`] (any NIfTI/DICOM file or DICOM folder, chosen by content, with
//! [`LoadOptions`] for the 4-D volume, the DICOM series and a memory budget), [`list_series`]
//! (series picker), [`save_nifti`] (atomic NIfTI-1 float32 writer), [`write_derived_series`]
//! (the SR as a derived DICOM series, atomic), [`orientation_code`],
//! [`Volume::to_canonical`], [`Volume::upscaled_geometry`] / [`Volume::downsampled_geometry`],
//! and intensity statistics in [`stats`]. Errors are [`VolumeError`] variants naming the file.
//!
//! Conventions used across the crate:
//! - voxel `(i, j, k)` is stored at `data[i + dims[0] * (j + dims[1] * k)]` (i fastest, as NIfTI);
//! - `affine` maps voxel indices to world coordinates in RAS+ millimetres (NIfTI convention;
//!   DICOM's LPS is converted on load);
//! - intensities are f32 with the file's scaling (scl_slope/scl_inter, Rescale Slope/Intercept)
//!   applied.

use std::path::{Path, PathBuf};

use crate::plane::Plane;

mod dicom;
mod error;
pub mod geometry;
mod nifti;
pub mod stats;

pub use dicom::{
    DicomSource, DicomWriteError, EncodedSeries, Provenance, SourceInstance, WrittenSeries,
    check_series_output, encode_derived_series, new_uid, sha256_file, write_derived_series,
};
pub use error::VolumeError;
pub use geometry::{Affine, orientation_code};
pub use stats::{IntensityStats, intensity_stats, percentiles, robust_range};

/// The memory budget for one loaded volume where physical memory allows: 4 GiB of float32
/// voxels (see [`crate::budget`] for the default actually used and its overrides).
pub const DEFAULT_MEMORY_BUDGET: u64 = crate::budget::FALLBACK;

/// What to load from a path that may hold more than one volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// 0-based index of the 3-D volume to open from 4-D (or higher) data.
    pub volume: usize,
    /// SeriesInstanceUID to open when a DICOM folder holds several series.
    pub series: Option<String>,
    /// Refuse (before allocating) volumes whose float32 voxels need more bytes than this
    /// (default: [`crate::budget::default_budget`], which honours `DELTAWKV_MEMORY_BUDGET`).
    pub memory_budget: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            volume: 0,
            series: None,
            memory_budget: crate::budget::default_budget(),
        }
    }
}

/// One DICOM series found in a folder, for a series picker.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SeriesInfo {
    /// SeriesInstanceUID (pass it as [`LoadOptions::series`]).
    pub uid: String,
    /// SeriesDescription (empty when absent).
    pub description: String,
    /// Modality (e.g. `MR`), empty when absent.
    pub modality: String,
    /// Number of files in the series.
    pub files: usize,
    /// Number of 2-D images (slices or frames) over all files.
    pub slices: usize,
    /// Columns, rows, and number of images (an upper bound on the slice count for 4-D series).
    pub dims: [usize; 3],
}

/// Loads a volume from a NIfTI-1/2 file (`.nii`, `.nii.gz`), a DICOM file (possibly gzipped) or
/// a folder of DICOM files, recognised by content (gzip magic, NIfTI `sizeof_hdr`, DICOM `DICM`
/// marker), not by extension.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Volume, VolumeError> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => VolumeError::NotFound {
            path: path.to_path_buf(),
        },
        _ => VolumeError::Io {
            path: path.to_path_buf(),
            context: "cannot access".into(),
            source: e,
        },
    })?;
    if meta.is_dir() {
        return dicom::load_folder(path, opts);
    }
    let gz = is_gzip(path)?;
    let mut stream = nifti::open_stream(path, gz)?;
    let mut prefix = vec![0u8; nifti::NIFTI2_HEADER];
    let n = nifti::read_full(stream.as_mut(), &mut prefix).map_err(|e| gzip_or_io(path, gz, e))?;
    prefix.truncate(n);
    drop(stream);
    // A DICOM preamble may start with bytes that read as a NIfTI `sizeof_hdr` (a real fixture
    // does), so a NIfTI header wins only with a valid magic string; otherwise `DICM` decides.
    let flavour = nifti::detect(&prefix);
    if let Some(f) = flavour.filter(|&f| nifti::magic_ok(&prefix, f)) {
        return nifti::load(path, gz, &prefix, f, opts);
    }
    if dicom::looks_like_dicom(&prefix) {
        return dicom::load_file(path, gz, opts);
    }
    if let Some(f) = flavour {
        return nifti::load(path, gz, &prefix, f, opts);
    }
    if !gz && (has_dicom_extension(path) || dicom::looks_like_bare_data_set(&prefix)) {
        return dicom::load_file(path, gz, opts);
    }
    if n == 0 {
        return Err(VolumeError::UnknownFormat {
            path: path.to_path_buf(),
            detail: "the file is empty".into(),
        });
    }
    let shown: String = prefix
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ");
    Err(VolumeError::UnknownFormat {
        path: path.to_path_buf(),
        detail: format!(
            "{}first bytes {shown}",
            if gz { "gzip content: " } else { "" }
        ),
    })
}

/// The DICOM series in `folder` (searched recursively), for a series picker.
pub fn list_series(folder: &Path) -> Result<Vec<SeriesInfo>, VolumeError> {
    dicom::list_series(folder)
}

/// Writes `vol` as NIfTI-1 float32, gzipped when `path` ends in `.nii.gz` (`.nii` otherwise),
/// with sform and qform from the affine and pixdim from its column norms. The write is atomic
/// (temporary file in the same folder, renamed at the end; nothing is left behind on error), and
/// refuses to overwrite the volume's source file or to write inside its source DICOM folder.
pub fn save_nifti(vol: &Volume, path: &Path) -> Result<(), VolumeError> {
    nifti::save(vol, path)
}

/// The NIfTI-1 float32 bytes of `vol` (gzipped when `gz`), as [`save_nifti`] writes them, for a
/// writer that times encoding apart from writing or writes to a path of its own.
pub fn encode_nifti(vol: &Volume, gz: bool) -> Result<Vec<u8>, VolumeError> {
    nifti::encode(vol, gz)
}

/// The SeriesInstanceUID of each readable DICOM image among `files`, read in parallel; files
/// that are not DICOM images or cannot be read are left out.
pub fn dicom_series_of_files(files: &[PathBuf], memory_budget: u64) -> Vec<(PathBuf, String)> {
    dicom::series_of_files(files, memory_budget)
}

/// Loads the DICOM series made of exactly `files` (the series `opts.series` names when they hold
/// several); `label` (e.g. their folder) names the volume in errors.
pub fn load_dicom_files(
    label: &Path,
    files: &[PathBuf],
    opts: &LoadOptions,
) -> Result<Volume, VolumeError> {
    dicom::load_files(label, files, opts)
}

fn is_gzip(path: &Path) -> Result<bool, VolumeError> {
    let mut f = std::fs::File::open(path).map_err(|e| VolumeError::Io {
        path: path.to_path_buf(),
        context: "cannot open".into(),
        source: e,
    })?;
    let mut magic = [0u8; 2];
    let n = nifti::read_full(&mut f, &mut magic).map_err(|e| VolumeError::Io {
        path: path.to_path_buf(),
        context: "cannot read".into(),
        source: e,
    })?;
    Ok(n == 2 && magic == [0x1f, 0x8b])
}

fn gzip_or_io(path: &Path, gz: bool, e: std::io::Error) -> VolumeError {
    if gz {
        let problem = if e.kind() == std::io::ErrorKind::UnexpectedEof {
            "truncated"
        } else {
            "corrupt"
        };
        VolumeError::Gzip {
            path: path.to_path_buf(),
            problem,
            detail: e.to_string(),
        }
    } else {
        VolumeError::Io {
            path: path.to_path_buf(),
            context: "cannot read".into(),
            source: e,
        }
    }
}

fn has_dicom_extension(path: &Path) -> bool {
    path.extension()
        .map(|e| {
            let e = e.to_string_lossy().to_lowercase();
            e == "dcm" || e == "dicom" || e == "ima"
        })
        .unwrap_or(false)
}

/// A 3-D scalar volume in world space.
#[derive(Clone, Debug)]
pub struct Volume {
    /// Voxel values, `data[i + dims[0] * (j + dims[1] * k)]`.
    pub data: Vec<f32>,
    /// Number of voxels along i, j, k.
    pub dims: [usize; 3],
    /// Voxel size in millimetres along i, j, k.
    pub spacing: [f64; 3],
    /// Voxel `(i, j, k, 1)` to world RAS+ mm, row-major 4x4.
    pub affine: [[f64; 4]; 4],
    /// What the viewer shows about the volume.
    pub meta: VolumeMeta,
}

/// Descriptive metadata carried with a volume.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct VolumeMeta {
    /// File or folder the volume came from.
    pub source_path: Option<PathBuf>,
    /// Source format, e.g. `NIfTI-1 (.nii.gz)`, `DICOM series (23 files)`.
    pub format: String,
    /// Stored data type before scaling, e.g. `int16`, `uint8`, `float32`.
    pub datatype: String,
    /// DICOM Modality (e.g. `MR`) when known.
    pub modality: Option<String>,
    /// DICOM SeriesDescription or NIfTI descrip when present.
    pub series_description: Option<String>,
    /// Warnings and facts worth showing (e.g. "4-D input: volume 1 of 2 shown").
    pub notes: Vec<String>,
    /// Number of NaN or infinite voxels found on load.
    pub non_finite: usize,
    /// NIfTI xform code of the space `affine` maps to: 1 scanner, 2 aligned, 3 Talairach,
    /// 4 MNI-152, 5 template; 0 when unknown. DICOM gives 1; written back by `save_nifti`.
    pub xform_code: i32,
    /// Files of a DICOM folder that could not be read and were left out of the series.
    pub skipped: Vec<SkippedFile>,
    /// What a DICOM source keeps to derive a series in its study (`None` for NIfTI input).
    #[serde(skip)]
    pub dicom: Option<std::sync::Arc<DicomSource>>,
}

/// A file of a DICOM series left out because it could not be read.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SkippedFile {
    /// The file.
    pub path: PathBuf,
    /// Why it could not be read.
    pub reason: String,
}

/// The three anatomical slicing directions, by the voxel axis held fixed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Axis {
    /// Fixed i (x): sagittal for a canonical (RAS) volume.
    Sagittal,
    /// Fixed j (y): coronal for a canonical volume.
    Coronal,
    /// Fixed k (z): axial for a canonical volume.
    Axial,
}

impl Axis {
    /// The voxel axis (0, 1 or 2) held fixed.
    pub fn index(self) -> usize {
        match self {
            Axis::Sagittal => 0,
            Axis::Coronal => 1,
            Axis::Axial => 2,
        }
    }

    /// The two in-plane voxel axes `(columns, rows)` of a slice along this axis.
    pub fn in_plane(self) -> (usize, usize) {
        match self {
            Axis::Sagittal => (1, 2),
            Axis::Coronal => (0, 2),
            Axis::Axial => (0, 1),
        }
    }
}

impl Volume {
    /// A volume from voxel data and geometry; `spacing` is derived from the affine's column
    /// norms. Fails when `data.len()` is not the product of `dims`, a dimension is 0, or the
    /// affine is not finite.
    pub fn new(
        data: Vec<f32>,
        dims: [usize; 3],
        affine: Affine,
        meta: VolumeMeta,
    ) -> Result<Volume, VolumeError> {
        let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if dims.contains(&0) || n != Some(data.len()) {
            return Err(VolumeError::InvalidVolume(format!(
                "{} voxels of data for dims {dims:?}",
                data.len()
            )));
        }
        if !affine.iter().flatten().all(|v| v.is_finite()) {
            return Err(VolumeError::InvalidVolume(
                "the affine is not finite".into(),
            ));
        }
        let spacing = geometry::column_norms(&affine);
        Ok(Volume {
            data,
            dims,
            spacing,
            affine,
            meta,
        })
    }

    /// Number of slices along `axis`.
    pub fn slice_count(&self, axis: Axis) -> usize {
        self.dims[axis.index()]
    }

    /// The slice at `index` along `axis` as a plane whose columns run along the first in-plane
    /// axis and rows along the second (see [`Axis::in_plane`]). `None` when out of range.
    pub fn slice(&self, axis: Axis, index: usize) -> Option<Plane> {
        let a = axis.index();
        if index >= self.dims[a] {
            return None;
        }
        let (ca, ra) = axis.in_plane();
        let (w, h) = (self.dims[ca], self.dims[ra]);
        let mut out = Plane::zeros(w, h);
        let mut ijk = [0usize; 3];
        ijk[a] = index;
        for r in 0..h {
            ijk[ra] = r;
            for c in 0..w {
                ijk[ca] = c;
                out.data[r * w + c] = self.data[self.linear_index(ijk)];
            }
        }
        Some(out)
    }

    /// Writes `plane` into the slice at `index` along `axis` (same layout as [`Volume::slice`]).
    /// Returns `false` (and writes nothing) when the index or the plane's size does not match.
    pub fn set_slice(&mut self, axis: Axis, index: usize, plane: &Plane) -> bool {
        let a = axis.index();
        let (ca, ra) = axis.in_plane();
        if index >= self.dims[a] || plane.width != self.dims[ca] || plane.height != self.dims[ra] {
            return false;
        }
        let mut ijk = [0usize; 3];
        ijk[a] = index;
        for r in 0..plane.height {
            ijk[ra] = r;
            for c in 0..plane.width {
                ijk[ca] = c;
                let li = self.linear_index(ijk);
                self.data[li] = plane.data[r * plane.width + c];
            }
        }
        true
    }

    /// Index into `data` of voxel `(i, j, k)`.
    #[inline]
    pub fn linear_index(&self, ijk: [usize; 3]) -> usize {
        ijk[0] + self.dims[0] * (ijk[1] + self.dims[1] * ijk[2])
    }

    /// Total number of voxels.
    pub fn voxel_count(&self) -> usize {
        self.dims.iter().product()
    }
}
