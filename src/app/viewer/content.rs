//! What the viewer shows of the prepared session: the panes of the current layout, their images
//! (cached until their content changes) and the metrics requested for them.

use std::collections::HashMap;
use std::sync::Arc;

use super::Viewer;
use crate::app::jobs::MetricRequest;
use crate::app::layout::{self, PaneEmpty, PaneKind};
use crate::app::metrics_cache::{ResultId, Slot};
use crate::app::render::SliceImage;
use crate::degrade::Baseline;
use crate::volume::Axis;

/// Upper bound of cached pane images.
const MAX_IMAGES: usize = 64;

/// Key of a cached pane image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ImageKey {
    session: u64,
    kind: PaneKind,
    axis: Axis,
    index: usize,
    lr_interp: Baseline,
    version: u64,
}

/// Pane images already cut, with the stamp that tells the display a texture changed.
pub struct PaneImages {
    images: HashMap<ImageKey, Result<SliceImage, PaneEmpty>>,
    next_stamp: u64,
}

impl Default for PaneImages {
    fn default() -> Self {
        Self {
            images: HashMap::new(),
            next_stamp: 1,
        }
    }
}

impl PaneImages {
    /// Forgets every image (a new session).
    pub fn clear(&mut self) {
        self.images.clear();
    }
}

impl Viewer {
    /// The panes of the current layout (one pane in presentation mode).
    pub fn pane_rows(&self) -> Vec<Vec<PaneKind>> {
        let Some(p) = &self.doc.prepared else {
            return Vec::new();
        };
        let compare_b = self.settings.compare_b && self.inference.checkpoint(Slot::B).is_some();
        if self.nav.presentation {
            let cycle = layout::presentation_cycle(p.params.mode, compare_b);
            let i = self.nav.presentation_index % cycle.len().max(1);
            return cycle.get(i).map(|k| vec![vec![*k]]).unwrap_or_default();
        }
        let mut rows = layout::layout(
            p.params.mode,
            compare_b,
            self.settings.map,
            self.settings.map_baseline,
        );
        // Flip shows GT in the SR pane: only where there is a GT (not in upscale mode).
        if self.nav.flip && p.gt.is_some() {
            for row in &mut rows {
                for k in row.iter_mut() {
                    if *k == PaneKind::Sr(Slot::A) {
                        *k = PaneKind::Gt;
                    }
                }
            }
        }
        rows
    }

    /// Content version of what `kind` shows at (axis, index): changes when the SR slice does.
    fn content_version(&self, kind: PaneKind, axis: Axis, index: usize) -> u64 {
        match kind {
            PaneKind::Sr(s) | PaneKind::Map(_, ResultId::Sr(s)) => {
                self.metrics.version(axis, index, ResultId::Sr(s))
            }
            _ => 0,
        }
    }

    /// The image of `kind` for the current slice (cached until its content changes).
    pub fn pane_image(&mut self, kind: PaneKind) -> Result<SliceImage, PaneEmpty> {
        let Some(p) = self.doc.prepared.clone() else {
            return Err(PaneEmpty::Error("nothing loaded".into()));
        };
        let axis = self.nav.crosshair.axis;
        let index = self.nav.crosshair.slice();
        let key = ImageKey {
            session: self.doc.session_id,
            kind,
            axis,
            index,
            lr_interp: self.settings.lr_interp,
            version: self.content_version(kind, axis, index),
        };
        let cache = &mut self.images;
        if let Some(r) = cache.images.get(&key) {
            return r.clone();
        }
        let r = layout::pane_plane(
            &p,
            self.inference.runs(),
            kind,
            axis,
            index,
            self.settings.lr_interp,
        )
        .map(|plane| {
            cache.next_stamp += 1;
            SliceImage {
                plane: Arc::new(plane),
                stamp: cache.next_stamp,
            }
        });
        // A pending slice is not cached: it changes without a version bump when it arrives.
        if !matches!(r, Err(PaneEmpty::Pending)) {
            if cache.images.len() >= MAX_IMAGES {
                cache.images.clear();
            }
            cache.images.insert(key, r.clone());
        }
        r
    }

    /// Results that get metrics (SR runs present, then the baselines).
    pub fn metric_results(&self) -> Vec<ResultId> {
        let mut out = Vec::new();
        for slot in Slot::ALL {
            if self.inference.run(slot).is_some() {
                out.push(ResultId::Sr(slot));
            }
        }
        for b in [Baseline::Zerofill, Baseline::Bicubic, Baseline::Nearest] {
            out.push(ResultId::Baseline(b));
        }
        out
    }

    /// Queues the metrics the UI shows: the current slice of every result, and every SR-axis
    /// slice available (for the volume figures and the per-slice plot).
    pub fn request_metrics(&mut self) {
        let Some(p) = self.doc.prepared.clone() else {
            return;
        };
        let Some(gt) = p.gt.as_ref() else {
            return;
        };
        let sr_axis = p.sr_axis;
        let mut wanted: Vec<(Axis, usize, ResultId)> = Vec::new();
        // Asked for first, computed last: the metrics thread serves the newest request first.
        for id in self.metric_results() {
            for k in 0..p.sr_slices() {
                wanted.push((sr_axis, k, id));
            }
        }
        let (axis, index) = (self.nav.crosshair.axis, self.nav.crosshair.slice());
        for id in self.metric_results() {
            wanted.push((axis, index, id));
        }
        for key in wanted {
            let (axis, index, id) = key;
            if let ResultId::Sr(slot) = id {
                let Some(run) = self.inference.run(slot) else {
                    continue;
                };
                let ready = if axis == sr_axis {
                    run.done.get(index).copied().unwrap_or(false)
                } else {
                    run.complete()
                };
                if !ready {
                    continue;
                }
            }
            if !self.metrics.needs(key) {
                continue;
            }
            let Some(test_vol) = layout::result_volume(&p, self.inference.runs(), id) else {
                continue;
            };
            let (Some(g), Some(t)) = (gt.slice(axis, index), test_vol.slice(axis, index)) else {
                continue;
            };
            if let Some(version) = self.metrics.request(key) {
                self.jobs.metric(MetricRequest {
                    session: self.doc.session_id,
                    key,
                    version,
                    gt: g,
                    test: t,
                    data_range: p.data_range(),
                });
            }
        }
    }
}
