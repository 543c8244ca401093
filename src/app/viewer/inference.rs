//! Inference control: the SR runs of slots A and B, their checkpoints and the engine factory
//! they run on, and the viewer's actions that start, steer and stop them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::Sender;

use super::Viewer;
use crate::app::backend::{self, SharedGpu};
use crate::app::jobs::{CheckpointSource, EngineFactory, InferenceJob, SrEvent};
use crate::app::metrics_cache::{ResultId, Slot};
use crate::app::runs::{RunState, SrRun};

/// Control handles of a running inference job.
struct RunControl {
    cancel: Arc<AtomicBool>,
    priority: Sender<usize>,
}

/// The runs of slots A and B and what they are made with.
pub struct Inference {
    runs: [Option<SrRun>; 2],
    run_ctl: [Option<RunControl>; 2],
    next_run_id: u64,
    pub(super) factory: EngineFactory,
    /// The factory came from [`super::AppOptions::engine_factory`] (tests): device changes keep
    /// it.
    pub(super) factory_overridden: bool,
    /// eframe's wgpu device, for rebuilding the factory when the device choice changes.
    pub(super) shared: Option<SharedGpu>,
    /// Where runs continue when the GPU is absent or fails (the CPU reference).
    pub(super) fallback: Option<EngineFactory>,
    /// Checkpoints of slots A and B.
    pub(super) checkpoints: [Option<CheckpointSource>; 2],
    /// Pick checkpoints from `weights/` when none fits.
    pub(super) discover_weights: bool,
}

impl Inference {
    /// No runs yet; runs are made by `factory` (`factory_overridden` when a test chose it).
    pub fn new(
        factory: EngineFactory,
        factory_overridden: bool,
        shared: Option<SharedGpu>,
        fallback: Option<EngineFactory>,
        checkpoints: [Option<CheckpointSource>; 2],
        discover_weights: bool,
    ) -> Self {
        Self {
            runs: [None, None],
            run_ctl: [None, None],
            next_run_id: 1,
            factory,
            factory_overridden,
            shared,
            fallback,
            checkpoints,
            discover_weights,
        }
    }

    /// The run of `slot`, if it has one.
    pub fn run(&self, slot: Slot) -> Option<&SrRun> {
        self.runs[slot.index()].as_ref()
    }

    /// The runs of slots A and B.
    pub fn runs(&self) -> &[Option<SrRun>; 2] {
        &self.runs
    }

    /// The checkpoint of `slot`, if one is chosen.
    pub fn checkpoint(&self, slot: Slot) -> Option<&CheckpointSource> {
        self.checkpoints[slot.index()].as_ref()
    }

    /// Whether any inference is running.
    pub fn running(&self) -> bool {
        self.runs.iter().flatten().any(|r| r.active())
    }

    /// The training degradation of checkpoint `slot`, when known.
    pub fn checkpoint_degradation(&self, slot: Slot) -> Option<crate::model::Degradation> {
        match self.checkpoint(slot)? {
            CheckpointSource::Memory { checkpoint, .. } => Some(checkpoint.config.degradation),
            CheckpointSource::File(f) => backend::peek_meta(f).ok().and_then(|m| m.degradation),
        }
    }

    /// Stops the inference of `slot` (its finished slices stay).
    pub(super) fn cancel(&mut self, slot: Slot) {
        if let Some(ctl) = self.run_ctl[slot.index()].take() {
            ctl.cancel.store(true, Ordering::Relaxed);
        }
        if let Some(run) = self.runs[slot.index()].as_mut()
            && run.active()
        {
            run.state = RunState::Cancelled;
        }
    }

    /// Forgets every run (a new session starts).
    pub(super) fn clear(&mut self) {
        self.runs = [None, None];
    }

    /// Tells running jobs that stored SR slice `k` is on screen.
    fn prioritise(&self, k: usize) {
        for ctl in self.run_ctl.iter().flatten() {
            let _ = ctl.priority.send(k);
        }
    }
}

impl Viewer {
    pub(super) fn cancel_all(&mut self) {
        self.doc.cancel_preparation();
        for slot in Slot::ALL {
            self.inference.cancel(slot);
        }
    }

    /// The user stops the inference of `slot` (Ctrl+Period, the Cancel button): its finished
    /// slices stay, and a message says how to go on.
    pub fn user_cancel(&mut self, slot: Slot) {
        let Some(run) = self.inference.run(slot).filter(|r| r.active()) else {
            return;
        };
        let (done, total) = (run.n_done, run.done.len());
        self.inference.cancel(slot);
        let label = if slot == Slot::A { "SR" } else { "SR (B)" };
        self.info(format!(
            "{label} cancelled at {done}/{total} slices (finished slices stay): \
             Checkpoints > Restart inference runs it again"
        ));
    }

    /// Picks a checkpoint of the session's scale from `weights/` when slot A has none that fits.
    pub(super) fn ensure_checkpoint(&mut self, slot: Slot) {
        let scale = self.settings.scale;
        let fits = match &self.inference.checkpoints[slot.index()] {
            Some(CheckpointSource::File(f)) => backend::peek_scale(f).ok() == Some(scale),
            Some(CheckpointSource::Memory { checkpoint, .. }) => checkpoint.config.scale == scale,
            None => false,
        };
        if fits {
            return;
        }
        let found = if self.inference.discover_weights {
            backend::find_weights(scale).into_iter().next()
        } else {
            None
        };
        if let Some(found) = found {
            self.inference.checkpoints[slot.index()] = Some(CheckpointSource::File(found));
        } else if self.inference.checkpoints[slot.index()].is_none() {
            let place = if self.inference.discover_weights {
                " in weights/"
            } else {
                ""
            };
            self.info(format!(
                "no x{scale} checkpoint{place}: choose one with Checkpoints > Open (A)"
            ));
        }
    }

    /// Sets the checkpoint of `slot` and restarts its run.
    pub fn set_checkpoint(&mut self, slot: Slot, source: CheckpointSource) {
        if let CheckpointSource::File(p) = &source {
            match slot {
                Slot::A => self.settings.checkpoint_a = Some(p.clone()),
                Slot::B => self.settings.checkpoint_b = Some(p.clone()),
            }
        }
        self.inference.checkpoints[slot.index()] = Some(source);
        if slot == Slot::B {
            self.settings.compare_b = true;
        }
        let same = self
            .doc
            .prepared
            .as_ref()
            .is_some_and(|p| Some(p.params) == self.wanted_params());
        if same {
            self.start_run(slot);
        } else {
            // Upscale mode follows checkpoint A's geometry: rebuild, runs start when ready.
            self.start_prepare();
        }
    }

    /// Turns the A/B comparison on (starting run B) or off (stopping it).
    pub fn set_compare_b(&mut self, on: bool) {
        self.settings.compare_b = on;
        if on {
            self.start_run(Slot::B);
        } else {
            self.inference.cancel(Slot::B);
        }
    }

    /// Restarts inference of slot A, and of B when comparing.
    pub fn restart_runs(&mut self) {
        self.start_run(Slot::A);
        if self.settings.compare_b {
            self.start_run(Slot::B);
        }
    }

    /// Changes the inference device (GPU, CPU reference, auto) now: the engine factory is rebuilt
    /// and every SR run is restarted on the new backend (a running one is cancelled first; its
    /// late reports are dropped by run id). The engine is made on the worker thread of the new
    /// run, and the status line names it once it exists.
    pub fn set_device(&mut self, device: crate::engine::DeviceChoice) {
        if self.settings.device == device {
            return;
        }
        self.settings.device = device;
        if !self.inference.factory_overridden {
            self.inference.factory = backend::engine_factory(device, self.inference.shared.clone());
        }
        self.inference.fallback = backend::fallback_factory(device);
        let what = if self.restart_existing_runs() {
            ": inference restarts on it"
        } else {
            ""
        };
        self.info(format!("device: {}{what}", backend::device_label(device)));
    }

    /// Restarts the runs that exist and are wanted (A, and B when comparing) after a change of
    /// how runs are made; whether any was restarted.
    fn restart_existing_runs(&mut self) -> bool {
        let mut restarted = false;
        for slot in Slot::ALL {
            let wanted = slot == Slot::A || self.settings.compare_b;
            if wanted && self.inference.run(slot).is_some() {
                self.start_run(slot);
                restarted = true;
            }
        }
        restarted
    }

    /// Turns the geometric self-ensemble ([`crate::ensemble`]) on or off; the SR runs that exist
    /// restart with it.
    pub fn set_self_ensemble(&mut self, on: bool) {
        if self.settings.self_ensemble == on {
            return;
        }
        self.settings.self_ensemble = on;
        let restarted = self.restart_existing_runs();
        self.info(format!(
            "self-ensemble {}{}",
            if on {
                "on (eight orientations per slice)"
            } else {
                "off"
            },
            if restarted {
                ": inference restarts"
            } else {
                ""
            }
        ));
    }

    /// Starts (or restarts) inference for `slot` over the prepared session.
    pub fn start_run(&mut self, slot: Slot) {
        self.inference.cancel(slot);
        let Some(p) = self.doc.prepared.clone() else {
            return;
        };
        let inf = &mut self.inference;
        let Some(source) = inf.checkpoints[slot.index()].clone() else {
            inf.runs[slot.index()] = None;
            return;
        };
        let run_id = inf.next_run_id;
        inf.next_run_id += 1;
        let mut run = SrRun::new(slot, run_id, source.label(), &p);
        run.show_consistent(self.settings.data_consistency);
        inf.runs[slot.index()] = Some(run);
        self.metrics.invalidate_result(ResultId::Sr(slot));
        let cancel = Arc::new(AtomicBool::new(false));
        let (ptx, prx) = crossbeam_channel::unbounded();
        let first = p.stored_sr_slice(self.nav.crosshair.voxel[p.sr_axis.index()]);
        inf.run_ctl[slot.index()] = Some(RunControl {
            cancel: cancel.clone(),
            priority: ptx,
        });
        self.jobs.infer(InferenceJob {
            run_id,
            slot,
            checkpoint: source,
            factory: inf.factory.clone(),
            fallback: inf.fallback.clone(),
            self_ensemble: self.settings.self_ensemble,
            prepared: p,
            first,
            cancel,
            priority: prx,
        });
    }

    pub(super) fn on_sr(&mut self, run_id: u64, slot: Slot, ev: SrEvent) {
        let Some(p) = self.doc.prepared.clone() else {
            return;
        };
        let Some(run) = self.inference.runs[slot.index()].as_mut() else {
            return;
        };
        if run.run_id != run_id {
            return;
        }
        match ev {
            SrEvent::EngineReady(d) => {
                run.engine = Some(d);
                if run.state == RunState::Starting {
                    run.state = RunState::Running;
                }
            }
            SrEvent::Warning(w) => self.info(w),
            SrEvent::Consistency { index, consistency } => {
                // Stored before the slice's own report, which counts it as done.
                if !run.apply_consistency(&p, index, &consistency) {
                    self.error(format!(
                        "the data-consistent SR slice {index} does not fit the SR grid"
                    ));
                }
            }
            SrEvent::Slice { index, plane, secs } => {
                if let Some(canonical) = run.apply_stored_slice(&p, index, &plane) {
                    run.slice_secs.push(secs);
                    self.metrics.invalidate_slice(ResultId::Sr(slot), canonical);
                } else {
                    let msg = format!(
                        "SR slice {index} has the wrong size {}x{}",
                        plane.width, plane.height
                    );
                    self.error(msg);
                }
            }
            SrEvent::Finished(d) => {
                run.state = RunState::Finished(d);
                self.inference.run_ctl[slot.index()] = None;
            }
            SrEvent::Cancelled => {
                run.state = RunState::Cancelled;
                self.inference.run_ctl[slot.index()] = None;
            }
            SrEvent::Failed(e) => {
                run.state = RunState::Failed(e.clone());
                self.inference.run_ctl[slot.index()] = None;
                let label = if slot == Slot::A { "SR" } else { "SR (B)" };
                self.error(format!("{label} failed: {e}"));
            }
        }
    }

    /// Shows the data-consistent SR (the SR's central k-space replaced by the LR's, see
    /// [`crate::consistency`]) in the SR panes, maps, metrics and exports, or the network's own.
    /// Both are computed as slices arrive (on the inference worker), so this only swaps them.
    pub fn set_data_consistency(&mut self, on: bool) {
        self.settings.data_consistency = on;
        let mut changed = false;
        for slot in Slot::ALL {
            if let Some(run) = self.inference.runs[slot.index()].as_mut()
                && run.show_consistent(on)
            {
                self.metrics.invalidate_result(ResultId::Sr(slot));
                changed = true;
            }
        }
        if on
            && !changed
            && let Some(p) = &self.doc.prepared
            && !p.consistency_defined()
        {
            self.info(format!(
                "data consistency needs k-space LR; this LR is {}: the SR stays the network's",
                p.params.degradation.as_str()
            ));
        }
    }

    /// Tells running jobs the slice on screen, so it is upscaled next.
    pub fn prioritise_current(&self) {
        let Some(p) = &self.doc.prepared else {
            return;
        };
        self.inference
            .prioritise(p.stored_sr_slice(self.nav.crosshair.voxel[p.sr_axis.index()]));
    }
}
