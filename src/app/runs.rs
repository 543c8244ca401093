//! Run bookkeeping: one checkpoint's SR volume, filled slice by slice as inference reports
//! them, its state, and the order in which slices are upscaled.

use std::time::{Duration, Instant};

use super::metrics_cache::Slot;
use super::session::Prepared;
use crate::plane::Plane;
use crate::volume::Volume;

/// State of an SR run.
#[derive(Clone, Debug, PartialEq)]
pub enum RunState {
    /// Loading the checkpoint and creating the engine.
    Starting,
    Running,
    Finished(Duration),
    Failed(String),
    Cancelled,
}

/// One checkpoint's SR volume, filled slice by slice as inference progresses.
#[derive(Clone, Debug)]
pub struct SrRun {
    pub slot: Slot,
    pub run_id: u64,
    /// File name of the checkpoint (or a description of an in-memory one).
    pub checkpoint: String,
    /// Backend description, once the engine exists.
    pub engine: Option<String>,
    /// The SR volume shown, on the display grid; NaN where a slice is pending: the network's
    /// output, or its data-consistent version when [`Self::consistent_shown`].
    pub volume: Volume,
    /// The other SR variant (the data-consistent one when the network's is shown, and the
    /// other way round); `None` when data consistency is not defined (bicubic LR).
    pub alt: Option<Volume>,
    /// Consistency residual `|SR - DC(SR)|` of the SR shown ([`crate::consistency`]); `None`
    /// when data consistency is not defined.
    pub residual: Option<Volume>,
    /// The consistency residual of [`Self::alt`].
    pub alt_residual: Option<Volume>,
    /// Whether [`Self::volume`] is the data-consistent SR.
    pub consistent_shown: bool,
    pub done: Vec<bool>,
    pub n_done: usize,
    pub state: RunState,
    pub started: Instant,
    /// Seconds spent on each finished slice (for the status line).
    pub slice_secs: Vec<f64>,
}

impl SrRun {
    /// A run with every slice pending.
    pub fn new(slot: Slot, run_id: u64, checkpoint: String, prepared: &Prepared) -> Self {
        let n = prepared.sr_slices();
        let pending = || prepared.grid.filled(f32::NAN, &prepared.meta);
        let dc = prepared.consistency_defined();
        Self {
            slot,
            run_id,
            checkpoint,
            engine: None,
            volume: pending(),
            alt: dc.then(pending),
            residual: dc.then(pending),
            alt_residual: dc.then(pending),
            consistent_shown: false,
            done: vec![false; n],
            n_done: 0,
            state: RunState::Starting,
            started: Instant::now(),
            slice_secs: Vec::new(),
        }
    }

    /// Stores the upscaled stored slice `k` (file voxel order, as the network returned it,
    /// unclamped); returns its canonical SR-axis index, `None` when its size or index does not
    /// fit. Simulate mode clamps to [0, 1] (as `deltawkv eval`, for metrics and maps); upscale
    /// mode keeps the network's values (as `deltawkv upscale`, for the export). The slice's
    /// data-consistent variant and residuals come before it ([`Self::apply_consistency`]).
    pub fn apply_stored_slice(&mut self, p: &Prepared, k: usize, plane: &Plane) -> Option<usize> {
        let simulate = p.gt.is_some();
        let net = if self.consistent_shown {
            self.alt.as_mut()?
        } else {
            &mut self.volume
        };
        if !write_slice(p, k, net, plane, simulate) {
            return None;
        }
        let index = p.canonical_sr_slice(k);
        if let Some(d) = self.done.get_mut(index)
            && !*d
        {
            *d = true;
            self.n_done += 1;
        }
        Some(index)
    }

    /// Stores the data-consistent variant of stored slice `k` and the residuals of both
    /// variants (the slice counts as done when [`Self::apply_stored_slice`] stores it); `false`
    /// when a size does not fit or data consistency is not defined for this run.
    pub fn apply_consistency(&mut self, p: &Prepared, k: usize, c: &SliceConsistency) -> bool {
        let simulate = p.gt.is_some();
        let (dc, net_res, dc_res) = if self.consistent_shown {
            (
                Some(&mut self.volume),
                self.alt_residual.as_mut(),
                self.residual.as_mut(),
            )
        } else {
            (
                self.alt.as_mut(),
                self.residual.as_mut(),
                self.alt_residual.as_mut(),
            )
        };
        let (Some(dc), Some(net_res), Some(dc_res)) = (dc, net_res, dc_res) else {
            return false;
        };
        write_slice(p, k, dc, &c.consistent, simulate)
            && write_slice(p, k, net_res, &c.residual, false)
            && write_slice(p, k, dc_res, &c.consistent_residual, false)
    }

    /// Shows the data-consistent SR (`true`) or the network's; `true` when what is shown
    /// changed (never when data consistency is not defined).
    pub fn show_consistent(&mut self, on: bool) -> bool {
        if on == self.consistent_shown {
            return false;
        }
        let Some(alt) = self.alt.as_mut() else {
            return false;
        };
        std::mem::swap(&mut self.volume, alt);
        if let (Some(r), Some(ar)) = (self.residual.as_mut(), self.alt_residual.as_mut()) {
            std::mem::swap(r, ar);
        }
        self.consistent_shown = on;
        true
    }

    /// Whether every slice is done.
    pub fn complete(&self) -> bool {
        self.n_done == self.done.len()
    }

    /// Whether the run still works.
    pub fn active(&self) -> bool {
        matches!(self.state, RunState::Starting | RunState::Running)
    }
}

/// Writes stored slice `k` into `vol` (clamped to [0, 1] with `clamp`).
fn write_slice(p: &Prepared, k: usize, vol: &mut Volume, plane: &Plane, clamp: bool) -> bool {
    let a = p.params.stored_sr_axis.index();
    if clamp {
        let mut c = plane.clone();
        c.data.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
        p.reorient.write_slice(vol, p.sr_stored_dims, a, k, &c)
    } else {
        p.reorient.write_slice(vol, p.sr_stored_dims, a, k, plane)
    }
}

/// The data-consistent version of an SR slice and the consistency residuals of both variants
/// as the viewer shows them (clamped to [0, 1] in simulate mode).
#[derive(Clone, Debug, PartialEq)]
pub struct SliceConsistency {
    /// `DC(network)`, unclamped.
    pub consistent: Plane,
    /// `|shown - DC(shown)|` of the network's output as shown.
    pub residual: Plane,
    /// `|shown - DC(shown)|` of the data-consistent output as shown.
    pub consistent_residual: Plane,
}

impl SliceConsistency {
    /// For the network's output `network` (unclamped) of LR slice `lr`: its data-consistent
    /// version and the residuals of both as shown (`clamp`: simulate mode, where the viewer
    /// shows outputs clamped to [0, 1]); `None` when data consistency is not defined for
    /// `degradation`.
    pub fn compute(
        network: &Plane,
        lr: &Plane,
        scale: usize,
        degradation: crate::model::Degradation,
        clamp: bool,
    ) -> Result<Option<Self>, crate::consistency::ConsistencyError> {
        use crate::consistency;
        if degradation != crate::model::Degradation::Kspace {
            return Ok(None);
        }
        let shown = |p: &Plane| {
            let mut c = p.clone();
            if clamp {
                c.data.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
            }
            c
        };
        let consistent = consistency::project(network, lr, scale, degradation)?;
        let residual = consistency::residual_magnitude(&shown(network), lr, scale, degradation)?;
        let consistent_residual =
            consistency::residual_magnitude(&shown(&consistent), lr, scale, degradation)?;
        Ok(Some(Self {
            consistent,
            residual,
            consistent_residual,
        }))
    }
}

/// Order in which slices are upscaled: `first`, then alternately after and before it.
pub fn outward_order(first: usize, n: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    let first = first.min(n - 1);
    out.push(first);
    for d in 1..n {
        if first + d < n {
            out.push(first + d);
        }
        if d <= first {
            out.push(first - d);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outward_order_visits_every_slice_once_current_first() {
        assert_eq!(outward_order(2, 5), vec![2, 3, 1, 4, 0]);
        assert_eq!(outward_order(0, 3), vec![0, 1, 2]);
        assert_eq!(outward_order(9, 3), vec![2, 1, 0]);
        assert!(outward_order(0, 0).is_empty());
        let mut o = outward_order(7, 20);
        o.sort_unstable();
        assert_eq!(o, (0..20).collect::<Vec<_>>());
    }
}
