//! Cache of per-slice metrics, keyed by (axis, slice, result), invalidated by content versions.
//!
//! A result (an SR run or a baseline) changes slice by slice while inference runs along the SR
//! axis. Each result carries a version per SR-axis slice and a whole-volume version: a slice
//! along the SR axis depends only on its own version, a coronal or sagittal slice crosses every
//! SR slice and so depends on the whole-volume version.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

pub use crate::degrade::Baseline;
use crate::volume::Axis;

/// Which checkpoint an SR result comes from (A, or B when comparing two).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub const ALL: [Slot; 2] = [Slot::A, Slot::B];

    /// Index into per-slot arrays.
    pub fn index(self) -> usize {
        match self {
            Slot::A => 0,
            Slot::B => 1,
        }
    }
}

/// A volume whose slices get metrics against the ground truth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum ResultId {
    Sr(Slot),
    Baseline(Baseline),
}

impl ResultId {
    /// Name shown to the user and used in exports.
    pub fn label(self) -> String {
        match self {
            ResultId::Sr(Slot::A) => "SR".to_string(),
            ResultId::Sr(Slot::B) => "SR (B)".to_string(),
            ResultId::Baseline(b) => b.as_str().to_string(),
        }
    }

    /// Short machine-readable key used in CSV/JSON exports.
    pub fn key(self) -> &'static str {
        match self {
            ResultId::Sr(Slot::A) => "sr_a",
            ResultId::Sr(Slot::B) => "sr_b",
            ResultId::Baseline(Baseline::Nearest) => "nearest",
            ResultId::Baseline(Baseline::Bicubic) => "bicubic",
            ResultId::Baseline(Baseline::Zerofill) => "zerofill",
        }
    }
}

/// Metrics of one slice of one result against the ground truth.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SliceMetrics {
    /// Mean squared error (kept to combine slices into a volume PSNR).
    pub mse: f64,
    /// PSNR in dB with the session's data range (infinite for identical slices).
    pub psnr: f64,
    /// Mean SSIM (Wang et al. 2004, Gaussian 11x11, sigma 1.5).
    pub ssim: f64,
    /// Number of voxels in the slice.
    pub voxels: usize,
}

/// Cache key.
pub type MetricKey = (Axis, usize, ResultId);

#[derive(Clone, Debug, Default)]
struct Versions {
    whole: u64,
    per_slice: Vec<u64>,
}

/// Volume-level metrics over the SR-axis slices available so far.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct VolumeMetrics {
    /// PSNR of the mean squared error over all voxels of the slices counted.
    pub psnr: f64,
    /// Mean of the per-slice SSIM.
    pub ssim: f64,
    /// Slices counted.
    pub slices: usize,
    /// Slices in the volume along the SR axis.
    pub total: usize,
}

/// What the cache holds for a key: the metrics, or why they could not be computed.
#[derive(Clone, Debug)]
enum Outcome {
    Computed(SliceMetrics),
    /// The reason (e.g. a slice smaller than the SSIM window).
    Failed(String),
}

/// The cache.
#[derive(Clone, Debug, Default)]
pub struct MetricsCache {
    sr_axis: Option<Axis>,
    n_sr_slices: usize,
    data_range: f64,
    versions: HashMap<ResultId, Versions>,
    entries: HashMap<MetricKey, (u64, Outcome)>,
    pending: HashSet<(MetricKey, u64)>,
}

impl MetricsCache {
    /// An empty cache for a session whose results change slice by slice along `sr_axis`
    /// (`n_sr_slices` slices), with PSNR computed for `data_range`.
    pub fn new(sr_axis: Axis, n_sr_slices: usize, data_range: f64) -> Self {
        Self {
            sr_axis: Some(sr_axis),
            n_sr_slices,
            data_range,
            ..Default::default()
        }
    }

    /// The data range PSNR uses.
    pub fn data_range(&self) -> f64 {
        self.data_range
    }

    /// Current content version of what `(axis, slice)` of `id` shows.
    pub fn version(&self, axis: Axis, slice: usize, id: ResultId) -> u64 {
        let Some(v) = self.versions.get(&id) else {
            return 0;
        };
        if Some(axis) == self.sr_axis {
            v.per_slice.get(slice).copied().unwrap_or(0)
        } else {
            v.whole
        }
    }

    /// Records that slice `slice` (along the SR axis) of `id` changed.
    pub fn invalidate_slice(&mut self, id: ResultId, slice: usize) {
        let n = self.n_sr_slices;
        let v = self.versions.entry(id).or_insert_with(|| Versions {
            whole: 0,
            per_slice: vec![0; n],
        });
        if let Some(s) = v.per_slice.get_mut(slice) {
            *s += 1;
        }
        v.whole += 1;
    }

    /// Records that all of `id` changed (a new run replaces it).
    pub fn invalidate_result(&mut self, id: ResultId) {
        let n = self.n_sr_slices;
        let v = self.versions.entry(id).or_insert_with(|| Versions {
            whole: 0,
            per_slice: vec![0; n],
        });
        for s in &mut v.per_slice {
            *s += 1;
        }
        v.whole += 1;
    }

    /// The cached value, if it is for the current content.
    pub fn get(&self, key: MetricKey) -> Option<SliceMetrics> {
        let (axis, slice, id) = key;
        let current = self.version(axis, slice, id);
        match self.entries.get(&key) {
            Some((v, Outcome::Computed(m))) if *v == current => Some(*m),
            _ => None,
        }
    }

    /// Why the value for the current content could not be computed, if it could not.
    pub fn failure(&self, key: MetricKey) -> Option<&str> {
        let (axis, slice, id) = key;
        let current = self.version(axis, slice, id);
        match self.entries.get(&key) {
            Some((v, Outcome::Failed(e))) if *v == current => Some(e),
            _ => None,
        }
    }

    /// Whether `key` must be computed: not cached for the current content and not already asked
    /// for. When it returns `Some(version)`, the caller computes it and then calls [`Self::insert`]
    /// with that version; the key counts as pending until then.
    pub fn request(&mut self, key: MetricKey) -> Option<u64> {
        let version = self.version(key.0, key.1, key.2);
        if self.entries.get(&key).is_some_and(|(v, _)| *v == version) {
            return None;
        }
        if self.pending.insert((key, version)) {
            Some(version)
        } else {
            None
        }
    }

    /// Whether [`Self::request`] would ask for a computation (cheap check before gathering inputs).
    pub fn needs(&self, key: MetricKey) -> bool {
        let version = self.version(key.0, key.1, key.2);
        self.entries.get(&key).is_none_or(|(v, _)| *v != version)
            && !self.pending.contains(&(key, version))
    }

    /// Stores a computed value; ignored when its content version is out of date.
    pub fn insert(&mut self, key: MetricKey, version: u64, metrics: SliceMetrics) {
        self.pending.remove(&(key, version));
        if version == self.version(key.0, key.1, key.2) {
            self.entries
                .insert(key, (version, Outcome::Computed(metrics)));
        }
    }

    /// Records that `key` cannot be computed for this content (e.g. a slice smaller than the
    /// SSIM window); it is not asked for again until the content changes.
    pub fn insert_failure(&mut self, key: MetricKey, version: u64, reason: String) {
        self.pending.remove(&(key, version));
        if version == self.version(key.0, key.1, key.2) {
            self.entries.insert(key, (version, Outcome::Failed(reason)));
        }
    }

    /// Number of requested computations not yet returned.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Per-slice values along the SR axis (`None` where not computed or stale).
    pub fn sr_axis_series(&self, id: ResultId) -> Vec<Option<SliceMetrics>> {
        let Some(axis) = self.sr_axis else {
            return Vec::new();
        };
        (0..self.n_sr_slices)
            .map(|s| self.get((axis, s, id)))
            .collect()
    }

    /// Volume PSNR (from the MSE over all voxels) and mean SSIM over the SR-axis slices computed
    /// so far; `None` before the first.
    pub fn volume(&self, id: ResultId) -> Option<VolumeMetrics> {
        self.volume_over(id, None)
    }

    /// [`Self::volume`] restricted to the SR-axis slices where `mask` is true (the slices an
    /// unfinished SR run has, so that baselines are compared on the same slices).
    pub fn volume_over(&self, id: ResultId, mask: Option<&[bool]>) -> Option<VolumeMetrics> {
        let series = self.sr_axis_series(id);
        let mut sq = 0.0f64;
        let mut voxels = 0usize;
        let mut ssim = 0.0f64;
        let mut slices = 0usize;
        let keep = |k: usize| mask.is_none_or(|m| m.get(k).copied().unwrap_or(false));
        for m in series
            .iter()
            .enumerate()
            .filter(|(k, _)| keep(*k))
            .filter_map(|(_, m)| m.as_ref())
        {
            sq += m.mse * m.voxels as f64;
            voxels += m.voxels;
            ssim += m.ssim;
            slices += 1;
        }
        if slices == 0 || voxels == 0 {
            return None;
        }
        let mse = sq / voxels as f64;
        Some(VolumeMetrics {
            psnr: psnr_from_mse(mse, self.data_range),
            ssim: ssim / slices as f64,
            slices,
            total: self.n_sr_slices,
        })
    }
}

/// PSNR in dB of a mean squared error for a data range (infinite when the error is zero).
pub fn psnr_from_mse(mse: f64, data_range: f64) -> f64 {
    if mse <= 0.0 {
        f64::INFINITY
    } else {
        10.0 * (data_range * data_range / mse).log10()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(mse: f64, ssim: f64) -> SliceMetrics {
        SliceMetrics {
            mse,
            psnr: psnr_from_mse(mse, 1.0),
            ssim,
            voxels: 100,
        }
    }

    const SR: ResultId = ResultId::Sr(Slot::A);
    const BIC: ResultId = ResultId::Baseline(Baseline::Bicubic);

    #[test]
    fn request_insert_get_cycle() {
        let mut c = MetricsCache::new(Axis::Axial, 4, 1.0);
        let key = (Axis::Axial, 1, SR);
        assert!(c.needs(key));
        let v = c.request(key).expect("first request computes");
        assert!(!c.needs(key), "pending");
        assert_eq!(c.request(key), None, "second request waits for the first");
        assert_eq!(c.pending_count(), 1);
        c.insert(key, v, m(0.01, 0.9));
        assert_eq!(c.get(key), Some(m(0.01, 0.9)));
        assert_eq!(c.request(key), None, "cached");
        assert_eq!(c.pending_count(), 0);
    }

    #[test]
    fn slice_update_invalidates_that_slice_and_cross_sections_only() {
        let mut c = MetricsCache::new(Axis::Axial, 4, 1.0);
        for s in 0..4 {
            let k = (Axis::Axial, s, SR);
            let v = c.request(k).expect("compute");
            c.insert(k, v, m(0.01, 0.9));
        }
        let cor = (Axis::Coronal, 10, SR);
        let v = c.request(cor).expect("compute");
        c.insert(cor, v, m(0.02, 0.8));
        let base = (Axis::Axial, 2, BIC);
        let v = c.request(base).expect("compute");
        c.insert(base, v, m(0.03, 0.7));

        c.invalidate_slice(SR, 2);
        assert!(
            c.get((Axis::Axial, 2, SR)).is_none(),
            "updated slice is stale"
        );
        assert!(c.get((Axis::Axial, 1, SR)).is_some(), "other slices stay");
        assert!(
            c.get(cor).is_none(),
            "a coronal slice crosses the updated slice"
        );
        assert!(c.get(base).is_some(), "other results are untouched");
        assert!(c.request((Axis::Axial, 2, SR)).is_some());
    }

    #[test]
    fn stale_results_are_dropped() {
        let mut c = MetricsCache::new(Axis::Axial, 2, 1.0);
        let key = (Axis::Axial, 0, SR);
        let v = c.request(key).expect("compute");
        c.invalidate_slice(SR, 0);
        c.insert(key, v, m(0.5, 0.1));
        assert!(
            c.get(key).is_none(),
            "a value computed on old content is not served"
        );
        assert_eq!(c.pending_count(), 0);
        let v2 = c.request(key).expect("recompute");
        assert_ne!(v, v2);
        c.insert_failure(key, v2, "too small".into());
        assert_eq!(
            c.request(key),
            None,
            "a failure is not retried for the same content"
        );
        assert_eq!(c.failure(key), Some("too small"));
        assert!(c.get(key).is_none());
        c.invalidate_slice(SR, 0);
        assert!(c.failure(key).is_none());
        assert!(c.request(key).is_some(), "new content is tried again");
    }

    #[test]
    fn volume_psnr_pools_mse_and_ssim_is_the_mean() {
        let mut c = MetricsCache::new(Axis::Axial, 3, 1.0);
        assert!(c.volume(SR).is_none());
        for (s, (mse, ssim)) in [(0.01, 0.9), (0.04, 0.6)].into_iter().enumerate() {
            let k = (Axis::Axial, s, SR);
            let v = c.request(k).expect("compute");
            c.insert(k, v, m(mse, ssim));
        }
        let vm = c.volume(SR).expect("two slices");
        assert_eq!((vm.slices, vm.total), (2, 3));
        assert!((vm.psnr - 10.0 * (1.0f64 / 0.025).log10()).abs() < 1e-9);
        assert!((vm.ssim - 0.75).abs() < 1e-12);
        let only_first = c
            .volume_over(SR, Some(&[true, false, false]))
            .expect("one slice");
        assert_eq!(only_first.slices, 1);
        assert!((only_first.psnr - 20.0).abs() < 1e-9);
        assert!(c.volume_over(SR, Some(&[false, false, true])).is_none());
        assert_eq!(psnr_from_mse(0.0, 1.0), f64::INFINITY);
    }

    #[test]
    fn whole_result_invalidation() {
        let mut c = MetricsCache::new(Axis::Axial, 2, 1.0);
        let k = (Axis::Axial, 1, SR);
        let v = c.request(k).expect("compute");
        c.insert(k, v, m(0.1, 0.5));
        c.invalidate_result(SR);
        assert!(c.get(k).is_none());
        assert_eq!(c.sr_axis_series(SR), vec![None, None]);
    }
}
