//! How a volume becomes the network's input and how the network's output becomes a volume again:
//! the one definition `deltawkv upscale` and the viewer's upscale mode (and its NIfTI export)
//! share, so both write the same SR volume for the same input, scale, checkpoint and axis.
//!
//! Intensities: the volume is divided by its robust maximum ([`normalisation_factor`]) without
//! clipping (an LR acquisition's bright voxels stay bright); non-finite voxels become 0. The
//! network's output is multiplied back by the factor, on the input's own intensity scale; only
//! negative values are set to 0, and only when the input has none. Clamping to [0, 1] for display
//! and metrics is the viewer's business, not part of the written volume.

use crate::model::Degradation;
use crate::plane::Plane;
use crate::volume::{Axis, Volume, VolumeMeta};

/// Errors of assembling an upscaled volume.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UpscaleError {
    #[error("upscaled slice {index} is {width}x{height}, the output grid is {dims:?}")]
    SliceSize {
        index: usize,
        width: usize,
        height: usize,
        dims: [usize; 3],
    },
    #[error("upscaled slice {index} is missing")]
    MissingSlice { index: usize },
    /// The output volume (scale^2 times the input's voxels, as float32) would be over the memory
    /// budget.
    #[error(
        "the x{scale} output of a {}x{}x{} volume needs {needed}, over the memory budget of \
         {budget} (raise it with --memory-budget or {})",
        dims[0], dims[1], dims[2], crate::budget::ENV_VAR
    )]
    OutputTooLarge {
        scale: usize,
        dims: [usize; 3],
        /// The bytes needed, in words (`2.0 MiB`, or `more than 16 EiB`).
        needed: String,
        /// The budget, in words.
        budget: String,
    },
}

/// The intensity the volume is divided by before the network: its robust maximum, the 99.5th
/// percentile of the finite voxels; the largest absolute value if that is not positive; 1 for an
/// all-zero (or all non-finite) volume.
pub fn normalisation_factor(vol: &Volume) -> f32 {
    let p = vol
        .percentiles(&[crate::volume::stats::NORM_PERCENTILE])
        .first()
        .copied()
        .unwrap_or(f32::NAN);
    if p.is_finite() && p > 0.0 {
        return p;
    }
    let m = vol
        .data
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f32, |a, v| a.max(v.abs()));
    if m > 0.0 { m } else { 1.0 }
}

/// The intensity mapping between a volume and the network.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Intensity {
    /// File units of 1.0 on the network's scale.
    pub factor: f32,
    /// Whether the input has no negative finite voxel (then negative outputs become 0).
    pub non_negative: bool,
}

impl Intensity {
    /// The mapping of `vol` ([`normalisation_factor`]).
    pub fn of(vol: &Volume) -> Self {
        Self {
            factor: normalisation_factor(vol),
            non_negative: vol.data.iter().filter(|v| v.is_finite()).all(|&v| v >= 0.0),
        }
    }

    /// One voxel on the network's scale (no clipping; non-finite voxels become 0).
    pub fn to_network(&self, x: f32) -> f32 {
        if x.is_finite() { x / self.factor } else { 0.0 }
    }

    /// One network output back on the input's scale.
    pub fn from_network(&self, y: f32) -> f32 {
        let v = y * self.factor;
        if self.non_negative && v < 0.0 { 0.0 } else { v }
    }

    /// `vol` on the network's scale, voxel by voxel ([`Self::to_network`]).
    pub fn normalise_volume(&self, vol: &mut Volume) {
        for v in &mut vol.data {
            *v = self.to_network(*v);
        }
    }

    /// `vol` (network outputs on the network's scale) back on the input's scale, voxel by voxel
    /// ([`Self::from_network`]).
    pub fn restore_volume(&self, vol: &mut Volume) {
        for v in &mut vol.data {
            *v = self.from_network(*v);
        }
    }

    /// The network's input for slice `k` of `vol` along `axis`; `None` when out of range.
    pub fn network_input(&self, vol: &Volume, axis: Axis, k: usize) -> Option<Plane> {
        let mut p = vol.slice(axis, k)?;
        for v in &mut p.data {
            *v = self.to_network(*v);
        }
        Some(p)
    }
}

/// Refuses, before any inference, an upscale whose output volume (`scale`^2 times the input's
/// voxels, as float32) would need more than `budget` bytes.
pub fn check_output_budget(vol: &Volume, scale: usize, budget: u64) -> Result<(), UpscaleError> {
    let needed = vol
        .data
        .len()
        .checked_mul(scale * scale)
        .and_then(|n| (n as u64).checked_mul(4));
    match needed {
        Some(b) if b <= budget => Ok(()),
        _ => Err(UpscaleError::OutputTooLarge {
            scale,
            dims: vol.dims,
            needed: needed.map_or_else(
                || "more than 16 EiB as float32".to_string(),
                |b| format!("{} as float32", crate::budget::human_bytes(b)),
            ),
            budget: crate::budget::human_bytes(budget),
        }),
    }
}

/// A volume made ready for the network: its intensity mapping and every slice along `axis` on
/// the network's scale.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The mapping between the volume's intensities and the network's.
    pub intensity: Intensity,
    /// The slicing direction.
    pub axis: Axis,
    /// Slice `k` along `axis`, normalised ([`Intensity::network_input`]).
    pub planes: Vec<Plane>,
}

/// The network's inputs of `vol` along `axis` ([`Intensity::of`], then every slice).
pub fn prepare(vol: &Volume, axis: Axis) -> Result<Prepared, UpscaleError> {
    let intensity = Intensity::of(vol);
    let planes = (0..vol.slice_count(axis))
        .map(|k| {
            intensity
                .network_input(vol, axis, k)
                .ok_or(UpscaleError::MissingSlice { index: k })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Prepared {
        intensity,
        axis,
        planes,
    })
}

/// The upscaled volume of `vol`: [`output_grid`] filled with the network's `outputs` (slice `k`
/// along `axis`, on the network's scale) brought back to the input's intensities, with `note`
/// (what made it) added to its notes.
pub fn assemble(
    vol: &Volume,
    scale: usize,
    degradation: Degradation,
    prepared: &Prepared,
    outputs: &[Plane],
    note: String,
) -> Result<Volume, UpscaleError> {
    let mut out = output_grid(vol, scale, prepared.axis, degradation);
    out.meta.notes.push(note);
    write_outputs(
        &mut out,
        prepared.axis,
        &prepared.intensity,
        outputs.iter().map(Some),
    )?;
    Ok(out)
}

/// The empty output volume of a x`scale` upscale of `vol` along `axis`: the input's own voxel
/// axes, in-plane axes upscaled, slices kept, with the affine that keeps every voxel at its world
/// position for the sampling geometry `degradation` (see [`Volume::upscaled_slice_grid`]).
pub fn output_grid(vol: &Volume, scale: usize, axis: Axis, degradation: Degradation) -> Volume {
    let (dims, spacing, affine) = vol.upscaled_slice_grid(scale, axis, degradation);
    empty_volume(dims, spacing, affine, vol.meta.clone())
}

/// A zero volume on a grid.
pub fn empty_volume(
    dims: [usize; 3],
    spacing: [f64; 3],
    affine: [[f64; 4]; 4],
    meta: VolumeMeta,
) -> Volume {
    Volume {
        data: vec![0.0; dims.iter().product()],
        dims,
        spacing,
        affine,
        meta,
    }
}

/// Writes the network's outputs (`outputs[k]` is slice `k` along `axis`, on the network's
/// scale) into `out` on the input's intensity scale. Every slice of `out` must be given.
pub fn write_outputs<'a>(
    out: &mut Volume,
    axis: Axis,
    intensity: &Intensity,
    outputs: impl IntoIterator<Item = Option<&'a Plane>>,
) -> Result<(), UpscaleError> {
    let n = out.dims[axis.index()];
    let mut given = 0;
    for (k, p) in outputs.into_iter().enumerate() {
        let p = p.ok_or(UpscaleError::MissingSlice { index: k })?;
        let mut q = p.clone();
        for v in &mut q.data {
            *v = intensity.from_network(*v);
        }
        if !out.set_slice(axis, k, &q) {
            return Err(UpscaleError::SliceSize {
                index: k,
                width: p.width,
                height: p.height,
                dims: out.dims,
            });
        }
        given += 1;
    }
    if given < n {
        return Err(UpscaleError::MissingSlice { index: given });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(data: Vec<f32>, dims: [usize; 3]) -> Volume {
        let mut affine = [[0.0; 4]; 4];
        for (i, row) in affine.iter_mut().enumerate() {
            row[i] = 1.0;
        }
        let mut v = empty_volume(dims, [1.0; 3], affine, VolumeMeta::default());
        v.data = data;
        v
    }

    fn plane(width: usize, height: usize, data: Vec<f32>) -> Plane {
        Plane {
            width,
            height,
            data,
        }
    }

    #[test]
    fn factor_falls_back_and_never_fails() {
        let v = vol((0..1000).map(|i| i as f32).collect(), [10, 10, 10]);
        let want = crate::volume::stats::robust_max(&v.data).expect("max") as f32;
        assert_eq!(normalisation_factor(&v), want);
        assert_eq!(normalisation_factor(&vol(vec![-3.0, -1.0], [2, 1, 1])), 3.0);
        assert_eq!(
            normalisation_factor(&vol(vec![0.0, f32::NAN], [2, 1, 1])),
            1.0
        );
    }

    #[test]
    fn intensities_are_not_clipped_and_come_back() {
        let v = vol(vec![0.0, 50.0, 100.0, f32::NAN], [4, 1, 1]);
        let i = Intensity {
            factor: 50.0,
            non_negative: true,
        };
        let p = i.network_input(&v, Axis::Axial, 0).expect("slice");
        assert_eq!(p.data, vec![0.0, 1.0, 2.0, 0.0]);
        assert_eq!(i.from_network(2.5), 125.0);
        assert_eq!(i.from_network(-0.5), 0.0);
        let signed = Intensity {
            non_negative: false,
            ..i
        };
        assert_eq!(signed.from_network(-0.5), -25.0);
    }

    #[test]
    fn write_outputs_checks_sizes_and_completeness() {
        let mut out = vol(vec![0.0; 8], [2, 2, 2]);
        let i = Intensity {
            factor: 2.0,
            non_negative: true,
        };
        let p = plane(2, 2, vec![1.0, 2.0, 3.0, -4.0]);
        write_outputs(&mut out, Axis::Axial, &i, [Some(&p), Some(&p)]).expect("write");
        assert_eq!(&out.data[..4], &[2.0, 4.0, 6.0, 0.0]);
        assert_eq!(
            write_outputs(&mut out, Axis::Axial, &i, [Some(&p)]),
            Err(UpscaleError::MissingSlice { index: 1 })
        );
        assert_eq!(
            write_outputs(&mut out, Axis::Axial, &i, [Some(&p), None]),
            Err(UpscaleError::MissingSlice { index: 1 })
        );
        let bad = plane(1, 2, vec![0.0; 2]);
        assert!(matches!(
            write_outputs(&mut out, Axis::Axial, &i, [Some(&bad)]),
            Err(UpscaleError::SliceSize { .. })
        ));
    }
}
