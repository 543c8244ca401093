//! Volume I/O: NIfTI-1/2 and DICOM in, NIfTI out; orientation and slicing.
//!
//! Conventions used across the crate:
//! - voxel `(i, j, k)` is stored at `data[i + dims[0] * (j + dims[1] * k)]` (i fastest, as NIfTI);
//! - `affine` maps voxel indices to world coordinates in RAS+ millimetres (NIfTI convention;
//!   DICOM's LPS is converted on load);
//! - intensities are f32 with the file's scaling (scl_slope/scl_inter, Rescale Slope/Intercept)
//!   applied.

use std::path::PathBuf;

use crate::plane::Plane;

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
}

/// The three anatomical slicing directions, by the voxel axis held fixed.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
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
