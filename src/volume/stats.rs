//! Intensity statistics over finite voxels (NaN and infinities are skipped and counted).

use super::Volume;

/// Summary of a volume's intensities; all values computed over finite voxels only.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct IntensityStats {
    /// Smallest finite value (`NaN` when there is none).
    pub min: f32,
    /// Largest finite value (`NaN` when there is none).
    pub max: f32,
    /// Mean of finite values (`NaN` when there is none).
    pub mean: f64,
    /// Number of finite voxels.
    pub finite: usize,
    /// Number of NaN or infinite voxels.
    pub non_finite: usize,
}

/// Min, max, mean and counts of `data`, skipping non-finite values.
pub fn intensity_stats(data: &[f32]) -> IntensityStats {
    let mut min = f32::INFINITY;
    let mut max = f32::NEG_INFINITY;
    let mut sum = 0.0f64;
    let mut finite = 0usize;
    for &v in data {
        if v.is_finite() {
            min = min.min(v);
            max = max.max(v);
            sum += f64::from(v);
            finite += 1;
        }
    }
    if finite == 0 {
        return IntensityStats {
            min: f32::NAN,
            max: f32::NAN,
            mean: f64::NAN,
            finite: 0,
            non_finite: data.len(),
        };
    }
    IntensityStats {
        min,
        max,
        mean: sum / finite as f64,
        finite,
        non_finite: data.len() - finite,
    }
}

/// Percentiles (`ps` in 0..=100) of the finite values of `data`, with linear interpolation
/// between order statistics (numpy's default `linear` method). Each result is `NaN` when `data`
/// has no finite value; `ps` outside 0..=100 are clamped.
/// The percentile the network's intensity normalisation uses (training, `eval`, the viewer).
pub const NORM_PERCENTILE: f64 = 99.5;

/// Why a volume cannot be normalised to [0, 1].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NormaliseError {
    #[error("no finite voxels")]
    NoFiniteVoxels,
    #[error("the largest finite voxel is {0}, not positive")]
    NotPositive(f64),
}

/// The robust maximum intensities are divided by: the [`NORM_PERCENTILE`]th percentile of the
/// finite voxels (f64, linear interpolation between order statistics as NumPy's default), or their
/// maximum when that percentile is not positive (the rule of `train/data.py`).
pub fn robust_max(data: &[f32]) -> Result<f64, NormaliseError> {
    let mut v: Vec<f64> = data
        .iter()
        .filter(|x| x.is_finite())
        .map(|&x| f64::from(x))
        .collect();
    v.sort_unstable_by(f64::total_cmp);
    let last = v
        .len()
        .checked_sub(1)
        .ok_or(NormaliseError::NoFiniteVoxels)?;
    let pos = NORM_PERCENTILE / 100.0 * last as f64;
    let lo = (pos.floor() as usize).min(last);
    let hi = (lo + 1).min(last);
    let p = v[lo] + (v[hi] - v[lo]) * (pos - lo as f64);
    let m = if p > 0.0 { p } else { v[last] };
    if !(m.is_finite() && m > 0.0) {
        return Err(NormaliseError::NotPositive(m));
    }
    Ok(m)
}

pub fn percentiles(data: &[f32], ps: &[f64]) -> Vec<f32> {
    let mut finite: Vec<f32> = data.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return vec![f32::NAN; ps.len()];
    }
    finite.sort_unstable_by(|a, b| a.total_cmp(b));
    let last = finite.len() - 1;
    ps.iter()
        .map(|&p| {
            let p = if p.is_nan() {
                50.0
            } else {
                p.clamp(0.0, 100.0)
            };
            let pos = p / 100.0 * last as f64;
            let lo = (pos.floor() as usize).min(last);
            let hi = (lo + 1).min(last);
            let frac = pos - lo as f64;
            let a = f64::from(finite[lo]);
            let b = f64::from(finite[hi]);
            (a + (b - a) * frac) as f32
        })
        .collect()
}

/// The robust display range: the 2nd and 98th percentiles of the finite values.
/// `(NaN, NaN)` when there is no finite value.
pub fn robust_range(data: &[f32]) -> (f32, f32) {
    let p = percentiles(data, &[2.0, 98.0]);
    (
        p.first().copied().unwrap_or(f32::NAN),
        p.get(1).copied().unwrap_or(f32::NAN),
    )
}

impl Volume {
    /// [`intensity_stats`] of this volume's voxels.
    pub fn stats(&self) -> IntensityStats {
        intensity_stats(&self.data)
    }

    /// [`percentiles`] of this volume's finite voxels.
    pub fn percentiles(&self, ps: &[f64]) -> Vec<f32> {
        percentiles(&self.data, ps)
    }

    /// [`robust_range`] (2nd, 98th percentile) of this volume.
    pub fn robust_range(&self) -> (f32, f32) {
        robust_range(&self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_skip_non_finite() {
        let s = intensity_stats(&[1.0, f32::NAN, -2.0, f32::INFINITY, 4.0]);
        assert_eq!(s.min, -2.0);
        assert_eq!(s.max, 4.0);
        assert_eq!(s.finite, 3);
        assert_eq!(s.non_finite, 2);
        assert!((s.mean - 1.0).abs() < 1e-12);
        let e = intensity_stats(&[f32::NAN]);
        assert!(e.min.is_nan() && e.max.is_nan());
    }

    #[test]
    fn percentiles_match_numpy_linear() {
        // numpy.percentile([0..=10], [0, 2, 50, 98, 100]) = [0, 0.2, 5, 9.8, 10]
        let data: Vec<f32> = (0..=10).map(|v| v as f32).collect();
        let p = percentiles(&data, &[0.0, 2.0, 50.0, 98.0, 100.0]);
        let want = [0.0, 0.2, 5.0, 9.8, 10.0];
        for (a, b) in p.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        // numpy.percentile([3, 1, 2, nan-free], 25) = 1.5
        assert!((percentiles(&[3.0, 1.0, 2.0, f32::NAN], &[25.0])[0] - 1.5).abs() < 1e-6);
        assert!(percentiles(&[], &[50.0])[0].is_nan());
    }
}
