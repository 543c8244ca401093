//! The evaluation pipeline, written once for `deltawkv eval` and the viewer's simulate mode (and
//! the training validation they follow):
//! 1. normalise: the ground truth is divided by its robust maximum ([`robust_max`], the
//!    [`NORM_PERCENTILE`]th percentile of its finite voxels) and clipped to [0, 1]; non-finite
//!    voxels become 0;
//! 2. crop: each slice is cropped to a multiple of the scale (top-left corner kept);
//! 3. degrade: the cropped slice is degraded to the LR input ([`crate::degrade::degrade`]);
//! 4. baselines: zero-filled k-space, bicubic and nearest interpolation of the LR, each with the
//!    sampling geometry of the degradation;
//! 5. clamp: every output (baselines and SR) is clamped to [0, 1];
//! 6. score: PSNR and SSIM against the cropped ground truth with data range [`DATA_RANGE`]:
//!    volume PSNR from the MSE over all voxels, SSIM the mean of the slices' SSIMs.
//!
//! Callers iterate over slices their own way (in parallel, or polling a cancel flag); the steps
//! are these functions.

use rayon::prelude::*;

use crate::degrade::{self, Baseline, DegradeError};
use crate::metrics::{self, MetricError, PlaneMetrics, VolumeAccumulator, VolumeMetrics};
use crate::model::Degradation;
use crate::plane::Plane;
use crate::volume::stats::NormaliseError;

pub use crate::volume::stats::{NORM_PERCENTILE, robust_max};

/// The data range of the metrics: intensities are normalised to [0, 1].
pub const DATA_RANGE: f64 = 1.0;

/// Errors of the evaluation pipeline; slice errors name the slice.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot normalise intensities: {0}")]
    Normalise(#[from] NormaliseError),
    #[error("slice {slice}: {error}")]
    Crop { slice: usize, error: DegradeError },
    #[error("degrading slice {slice}: {error}")]
    Degrade { slice: usize, error: DegradeError },
    #[error("{} upsampling of slice {slice}: {error}", .method.as_str())]
    Upsample {
        method: Baseline,
        slice: usize,
        error: DegradeError,
    },
    #[error(transparent)]
    Metric(#[from] MetricError),
    #[error("no slices evaluated")]
    Empty,
}

/// Step 1: divides `data` by its [`robust_max`] and clips to [0, 1]; non-finite voxels become 0.
/// Returns the robust maximum.
pub fn normalise(data: &mut [f32]) -> Result<f64, EvalError> {
    let m = robust_max(data)?;
    for x in data {
        *x = if x.is_finite() {
            (f64::from(*x) / m).clamp(0.0, 1.0) as f32
        } else {
            0.0
        };
    }
    Ok(m)
}

/// Step 2: slice number `slice` (normalised) cropped to a multiple of `scale`, top-left corner
/// kept: the ground truth.
pub fn crop(normalised: &Plane, slice: usize, scale: usize) -> Result<Plane, EvalError> {
    degrade::crop_to_multiple(normalised, scale).map_err(|error| EvalError::Crop { slice, error })
}

/// Step 3: the LR input of ground-truth slice number `slice`.
pub fn degrade(
    gt: &Plane,
    slice: usize,
    scale: usize,
    degradation: Degradation,
) -> Result<Plane, EvalError> {
    degrade::degrade(gt, scale, degradation).map_err(|error| EvalError::Degrade { slice, error })
}

/// Steps 4 and 5: the `method` baseline of LR slice number `slice`, clamped to [0, 1].
pub fn baseline(
    lr: &Plane,
    slice: usize,
    scale: usize,
    method: Baseline,
    degradation: Degradation,
) -> Result<Plane, EvalError> {
    degrade::upsample(lr, scale, method, degradation)
        .map(clamp01)
        .map_err(|error| EvalError::Upsample {
            method,
            slice,
            error,
        })
}

/// Step 5: an output clamped to [0, 1].
pub fn clamp01(mut p: Plane) -> Plane {
    for v in &mut p.data {
        *v = v.clamp(0.0, 1.0);
    }
    p
}

/// One method's metrics: per slice and for the volume.
#[derive(Clone, Debug)]
pub struct Score {
    /// Volume PSNR (from the MSE over all voxels) and mean SSIM.
    pub volume: VolumeMetrics,
    /// Each slice's metrics, in the order of the inputs.
    pub per_slice: Vec<PlaneMetrics>,
}

/// Step 6: the metrics of `outputs` against `gt`, slice by slice and for the volume.
pub fn score(gt: &[Plane], outputs: &[Plane]) -> Result<Score, EvalError> {
    let per_slice: Vec<PlaneMetrics> = gt
        .par_iter()
        .zip(outputs.par_iter())
        .map(|(g, o)| metrics::plane_metrics(g, o, DATA_RANGE))
        .collect::<Result<_, _>>()?;
    let mut acc = VolumeAccumulator::new(DATA_RANGE)?;
    for (m, g) in per_slice.iter().zip(gt) {
        acc.add_metrics(m, g.len());
    }
    let volume = acc.finish().ok_or(EvalError::Empty)?;
    Ok(Score { volume, per_slice })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robust_max_is_numpy_percentile() {
        // numpy.percentile(np.arange(1000), 99.5) == 994.005
        let v: Vec<f32> = (0..1000).map(|i| i as f32).chain([f32::NAN]).collect();
        assert!((robust_max(&v).unwrap() - 994.005).abs() < 1e-9);
        // Mostly zeros: the percentile is 0, so the maximum is used.
        let mut z = vec![0.0f32; 1000];
        z[3] = 5.0;
        assert_eq!(robust_max(&z), Ok(5.0));
        assert!(robust_max(&[0.0, -1.0]).is_err());
        assert!(robust_max(&[f32::NAN]).is_err());
    }

    #[test]
    fn normalise_clips_and_zeroes_non_finite_voxels() {
        // Order statistics 994 and 995 stay 994 and 995 with voxel 0 at -3.
        let mut v: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        v[0] = -3.0;
        v.extend([f32::NAN, f32::INFINITY]);
        let m = normalise(&mut v).unwrap();
        assert!((m - 994.005).abs() < 1e-9);
        assert_eq!(v[0], 0.0);
        assert_eq!(v[999], 1.0);
        assert_eq!(v[500], (500.0 / m) as f32);
        assert_eq!(&v[1000..], &[0.0, 0.0]);
        assert!(normalise(&mut [f32::NAN]).is_err());
    }
}
