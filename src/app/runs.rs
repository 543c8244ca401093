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
    /// SR volume on the display grid; NaN where a slice is pending.
    pub volume: Volume,
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
        Self {
            slot,
            run_id,
            checkpoint,
            engine: None,
            volume: prepared.grid.filled(f32::NAN, &prepared.meta),
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
    /// mode keeps the network's values (as `deltawkv upscale`, for the export).
    pub fn apply_stored_slice(&mut self, p: &Prepared, k: usize, plane: &Plane) -> Option<usize> {
        let a = p.params.stored_sr_axis.index();
        let clamped;
        let plane = if p.gt.is_some() {
            let mut c = plane.clone();
            c.data.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
            clamped = c;
            &clamped
        } else {
            plane
        };
        if !p
            .reorient
            .write_slice(&mut self.volume, p.sr_stored_dims, a, k, plane)
        {
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

    /// Whether every slice is done.
    pub fn complete(&self) -> bool {
        self.n_done == self.done.len()
    }

    /// Whether the run still works.
    pub fn active(&self) -> bool {
        matches!(self.state, RunState::Starting | RunState::Running)
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
