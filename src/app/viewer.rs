//! Runtime state of the viewer and everything it does in response to the user and to jobs,
//! separate from how it is drawn (ui.rs, panes.rs).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crossbeam_channel::Sender;

use super::backend::{self, SharedGpu};
use super::geometry::{Crosshair, ViewTransform};
use super::jobs::{
    CheckpointSource, DialogPurpose, EngineFactory, Event, InferenceJob, Jobs, Loaded,
    MetricRequest, SrEvent, Waker,
};
use super::metrics_cache::{MetricsCache, ResultId, Slot};
use super::render::SliceImage;
use super::session::{
    self, MapKind, Mode, PaneEmpty, PaneKind, PrepareParams, Prepared, RunState, SrRun,
};
use super::settings::Settings;
use super::windowing::{WindowLevel, WindowPreset};
use crate::degrade::Baseline;
use crate::volume::{Axis, SeriesInfo};

/// How the viewer is started (the command line, or a test).
#[derive(Clone, Default)]
pub struct AppOptions {
    /// Volume to open; the bundled sample when `None`.
    pub path: Option<PathBuf>,
    /// Open nothing at start (tests that open files themselves).
    pub open_nothing: bool,
    /// Checkpoint for slot A, overriding the settings and `weights/`.
    pub checkpoint: Option<CheckpointSource>,
    /// Never pick checkpoints from `weights/` (tests that must not run the shipped network).
    pub no_weights_discovery: bool,
    /// Settings to use instead of the persisted ones.
    pub settings: Option<Settings>,
    /// Backend factory instead of the default (GPU when there is one, else CPU).
    pub engine_factory: Option<EngineFactory>,
}

/// A message shown in the message panel.
#[derive(Clone, Debug, PartialEq)]
pub struct UiMessage {
    pub text: String,
    pub error: bool,
}

/// Control handles of a running inference job.
struct RunControl {
    cancel: Arc<AtomicBool>,
    priority: Sender<usize>,
}

/// A pending series choice for a DICOM folder.
#[derive(Clone, Debug)]
pub struct SeriesChoice {
    pub ticket: u64,
    pub folder: PathBuf,
    pub series: Vec<SeriesInfo>,
}

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

/// The viewer's runtime state.
pub struct Viewer {
    pub settings: Settings,
    pub jobs: Jobs,
    ticket: u64,
    /// Path being loaded and since when.
    pub loading: Option<(PathBuf, Instant)>,
    pub loaded: Option<Loaded>,
    /// Preparation under way (since when).
    pub preparing: Option<Instant>,
    prepare_cancel: Arc<AtomicBool>,
    pub prepared: Option<Arc<Prepared>>,
    pub runs: [Option<SrRun>; 2],
    run_ctl: [Option<RunControl>; 2],
    next_run_id: u64,
    /// Increments with every new prepared session (keys caches and metric reports).
    pub session_id: u64,
    pub metrics: MetricsCache,
    pub crosshair: Crosshair,
    pub view: ViewTransform,
    /// Intensity window, normalised units.
    pub window: WindowLevel,
    /// Full scale of the |error| maps, normalised units.
    pub diff_scale: f32,
    /// Show GT in the SR pane.
    pub flip: bool,
    pub presentation: bool,
    /// Index into the presentation cycle.
    pub presentation_index: usize,
    pub show_help: bool,
    pub messages: Vec<UiMessage>,
    pub series_choice: Option<SeriesChoice>,
    images: HashMap<ImageKey, Result<SliceImage, PaneEmpty>>,
    next_stamp: u64,
    factory: EngineFactory,
    /// The factory came from [`AppOptions::engine_factory`] (tests): device changes keep it.
    factory_overridden: bool,
    /// eframe's wgpu device, for rebuilding the factory when the device choice changes.
    shared: Option<SharedGpu>,
    /// Where runs continue when the GPU is absent or fails (the CPU reference).
    fallback: Option<EngineFactory>,
    /// Checkpoints of slots A and B.
    pub checkpoints: [Option<CheckpointSource>; 2],
    /// Whether panes can be drawn (a wgpu renderer with the display resources exists).
    pub gpu_display: bool,
    /// Description of the display adapter.
    pub adapter: Option<String>,
    /// Whether the app should write settings on exit (false in tests).
    pub persist: bool,
    /// Screenshot path waiting for the next frame (F12 after the dialog).
    pub pending_png: Option<PathBuf>,
    /// Pick checkpoints from `weights/` when none fits.
    discover_weights: bool,
    /// Display-grid voxel under the mouse, if any.
    pub hover: Option<[usize; 3]>,
    /// The voxel under the mouse found while drawing this frame's panes (the readout, drawn
    /// earlier in the frame, shows [`Self::hover`], updated from this at the end of the frame).
    pub hover_next: Option<[usize; 3]>,
    /// Accumulated smooth-scroll distance (touchpads), in points.
    pub wheel_accum: f32,
    /// Size of the pane area last drawn, in points (for the PNG export).
    pub panes_size: egui::Vec2,
}

/// Upper bound of cached pane images.
const MAX_IMAGES: usize = 64;

impl Viewer {
    /// A viewer with `settings`; opens what `opts` says.
    pub fn new(
        opts: AppOptions,
        settings: Settings,
        shared: Option<SharedGpu>,
        waker: Waker,
    ) -> Self {
        let mut settings = settings;
        settings.sanitize();
        let factory = opts
            .engine_factory
            .clone()
            .unwrap_or_else(|| backend::engine_factory(settings.device, shared.clone()));
        let mut v = Self {
            jobs: Jobs::new(waker),
            ticket: 0,
            loading: None,
            loaded: None,
            preparing: None,
            prepare_cancel: Arc::new(AtomicBool::new(false)),
            prepared: None,
            runs: [None, None],
            run_ctl: [None, None],
            next_run_id: 1,
            session_id: 0,
            metrics: MetricsCache::default(),
            crosshair: Crosshair::centered([1, 1, 1], settings.view_axis),
            view: ViewTransform::default(),
            window: WindowLevel::from_range(0.0, 1.0),
            diff_scale: 0.1,
            flip: false,
            presentation: false,
            presentation_index: 1,
            show_help: false,
            messages: Vec::new(),
            series_choice: None,
            images: HashMap::new(),
            next_stamp: 1,
            factory,
            factory_overridden: opts.engine_factory.is_some(),
            shared: shared.clone(),
            fallback: backend::fallback_factory(settings.device),
            checkpoints: [
                opts.checkpoint.clone().or_else(|| {
                    settings
                        .checkpoint_a
                        .clone()
                        .filter(|p| p.is_file())
                        .map(CheckpointSource::File)
                }),
                settings
                    .checkpoint_b
                    .clone()
                    .filter(|p| p.is_file())
                    .map(CheckpointSource::File),
            ],
            gpu_display: shared.is_some(),
            adapter: shared.as_ref().map(|s| s.describe()),
            persist: true,
            pending_png: None,
            discover_weights: !opts.no_weights_discovery,
            hover: None,
            hover_next: None,
            wheel_accum: 0.0,
            panes_size: egui::vec2(1200.0, 500.0),
            settings,
        };
        if !opts.open_nothing {
            match opts.path.or_else(backend::sample_path) {
                Some(p) => v.open(p, None),
                None => v.error(
                    "the bundled sample (assets/sample_pd.nii.gz) was not found: open a volume \
                     with File > Open"
                        .into(),
                ),
            }
        }
        v
    }

    /// Shows an error in the message panel.
    pub fn error(&mut self, text: String) {
        tracing::warn!("{text}");
        self.push_message(UiMessage { text, error: true });
    }

    /// Shows an information message.
    pub fn info(&mut self, text: String) {
        self.push_message(UiMessage { text, error: false });
    }

    fn push_message(&mut self, m: UiMessage) {
        if self.messages.last() != Some(&m) {
            self.messages.push(m);
        }
        if self.messages.len() > 6 {
            self.messages.remove(0);
        }
    }

    /// Opens a file or DICOM folder, cancelling whatever runs.
    pub fn open(&mut self, path: PathBuf, series: Option<String>) {
        self.cancel_all();
        self.ticket += 1;
        self.series_choice = None;
        self.loading = Some((path.clone(), Instant::now()));
        self.jobs.load(self.ticket, path, series);
    }

    /// Asks the user for a file (or folder) in a native dialog.
    pub fn dialog(&self, purpose: DialogPurpose, default_name: &str) {
        self.jobs.dialog(
            purpose,
            self.settings.last_dir.clone(),
            default_name.to_string(),
        );
    }

    fn cancel_all(&mut self) {
        self.prepare_cancel.store(true, Ordering::Relaxed);
        for slot in Slot::ALL {
            self.cancel_run(slot);
        }
    }

    /// Stops the inference of `slot` (its finished slices stay).
    pub fn cancel_run(&mut self, slot: Slot) {
        if let Some(ctl) = self.run_ctl[slot.index()].take() {
            ctl.cancel.store(true, Ordering::Relaxed);
        }
        if let Some(run) = self.runs[slot.index()].as_mut()
            && run.active()
        {
            run.state = RunState::Cancelled;
        }
    }

    /// The user stops the inference of `slot` (Ctrl+Period, the Cancel button): its finished
    /// slices stay, and a message says how to go on.
    pub fn user_cancel(&mut self, slot: Slot) {
        let Some(run) = self.runs[slot.index()].as_ref().filter(|r| r.active()) else {
            return;
        };
        let (done, total) = (run.n_done, run.done.len());
        self.cancel_run(slot);
        let label = if slot == Slot::A { "SR" } else { "SR (B)" };
        self.info(format!(
            "{label} cancelled at {done}/{total} slices (finished slices stay): \
             Checkpoints > Restart inference runs it again"
        ));
    }

    /// Whether any inference is running.
    pub fn inference_running(&self) -> bool {
        self.runs.iter().flatten().any(|r| r.active())
    }

    /// Whether any job of this viewer is under way (for tests and the status line).
    pub fn busy(&self) -> bool {
        self.loading.is_some()
            || self.preparing.is_some()
            || self.inference_running()
            || self.metrics.pending_count() > 0
    }

    /// The prepare parameters the settings ask for, for the loaded volume.
    pub fn wanted_params(&self) -> Option<PrepareParams> {
        let loaded = self.loaded.as_ref()?;
        Some(PrepareParams {
            mode: self.settings.mode,
            scale: self.settings.scale,
            degradation: self.lr_geometry(),
            stored_sr_axis: self.stored_sr_axis(&loaded.volume),
        })
    }

    /// The training degradation of checkpoint `slot`, when known.
    pub fn checkpoint_degradation(&self, slot: Slot) -> Option<crate::model::Degradation> {
        match self.checkpoints[slot.index()].as_ref()? {
            CheckpointSource::Memory { checkpoint, .. } => Some(checkpoint.config.degradation),
            CheckpointSource::File(f) => backend::peek_meta(f).ok().and_then(|m| m.degradation),
        }
    }

    /// Sampling geometry of the LR: in simulate mode the chosen degradation; in upscale mode the
    /// one checkpoint A was trained on (as `deltawkv upscale`), else the chosen one.
    pub fn lr_geometry(&self) -> crate::model::Degradation {
        match self.settings.mode {
            Mode::Simulate => self.settings.degradation,
            Mode::Upscale => self
                .checkpoint_degradation(Slot::A)
                .unwrap_or(self.settings.degradation),
        }
    }

    /// The stored voxel axis the settings' SR axis (given in canonical terms) maps to.
    fn stored_sr_axis(&self, v: &crate::volume::Volume) -> Axis {
        let r = session::Reorient::of(&v.affine);
        let canonical_spacing = [
            v.spacing[r.src[0]],
            v.spacing[r.src[1]],
            v.spacing[r.src[2]],
        ];
        let a = self.settings.sr_axis.resolve(canonical_spacing);
        session::axis_of(r.src[a.index()])
    }

    /// Rebuilds LR/GT/baselines after a parameter change (no-op when nothing changed).
    pub fn reprepare_if_needed(&mut self) {
        self.ensure_checkpoint(Slot::A);
        let Some(want) = self.wanted_params() else {
            return;
        };
        let same = self.prepared.as_ref().is_some_and(|p| p.params == want);
        if !same {
            self.start_prepare();
        }
    }

    fn start_prepare(&mut self) {
        let Some(loaded) = self.loaded.clone() else {
            return;
        };
        self.ensure_checkpoint(Slot::A);
        let Some(params) = self.wanted_params() else {
            return;
        };
        self.cancel_all();
        self.ticket += 1;
        self.prepare_cancel = Arc::new(AtomicBool::new(false));
        self.preparing = Some(Instant::now());
        self.jobs
            .prepare(self.ticket, &loaded, params, self.prepare_cancel.clone());
    }

    /// Applies every report that arrived; returns whether anything changed.
    pub fn poll(&mut self) -> bool {
        let mut any = false;
        while let Some(ev) = self.jobs.try_recv() {
            any = true;
            self.handle(ev);
        }
        any
    }

    /// Applies one report.
    pub fn handle(&mut self, ev: Event) {
        match ev {
            Event::Loaded { ticket, result } if ticket == self.ticket => {
                self.loading = None;
                match result {
                    Ok(l) => {
                        self.settings.push_recent(&l.path);
                        tracing::info!("loaded {} in {:.2} s", l.path.display(), l.load_secs);
                        self.loaded = Some(l);
                        self.start_prepare();
                    }
                    Err(e) => self.error(format!("cannot open: {e}")),
                }
            }
            Event::ChooseSeries {
                ticket,
                folder,
                series,
            } if ticket == self.ticket => {
                self.loading = None;
                self.series_choice = Some(SeriesChoice {
                    ticket,
                    folder,
                    series,
                });
            }
            Event::Prepared { ticket, result } if ticket == self.ticket => {
                self.preparing = None;
                match result {
                    Ok(p) => self.on_prepared(p),
                    Err(e) if e == "cancelled" => {}
                    Err(e) => self.error(format!("cannot prepare the volume: {e}")),
                }
            }
            Event::Sr {
                run_id,
                slot,
                event,
            } => self.on_sr(run_id, slot, event),
            Event::Metric {
                session,
                key,
                version,
                result,
            } if session == self.session_id => match result {
                Ok(m) => self.metrics.insert(key, version, m),
                Err(e) => {
                    tracing::debug!("metric {key:?} not computed: {e}");
                    self.metrics.insert_failure(key, version, e);
                }
            },
            Event::Dialog { purpose, path } => {
                if let Some(p) = path {
                    self.on_dialog(purpose, p);
                }
            }
            Event::Exported { what, result } => match result {
                Ok(p) => self.info(format!("{what} saved to {}", p.display())),
                Err(e) => self.error(format!("{what} not saved: {e}")),
            },
            // Reports of superseded jobs.
            Event::Loaded { .. }
            | Event::ChooseSeries { .. }
            | Event::Prepared { .. }
            | Event::Metric { .. } => {}
        }
    }

    fn on_dialog(&mut self, purpose: DialogPurpose, path: PathBuf) {
        if let Some(dir) = path.parent() {
            self.settings.last_dir = Some(dir.to_path_buf());
        }
        // Save dialogs return the name as typed: add the format's extension when it is missing.
        let ext = |p: PathBuf, accepted: &[&str], default: &str| {
            super::export::with_extension_if_missing(p, accepted, default)
        };
        match purpose {
            DialogPurpose::OpenFile | DialogPurpose::OpenFolder => self.open(path, None),
            DialogPurpose::Checkpoint(slot) => {
                self.set_checkpoint(slot, CheckpointSource::File(path))
            }
            DialogPurpose::ExportNifti => {
                self.export_nifti(ext(path, &[".nii.gz", ".nii"], ".nii.gz"))
            }
            DialogPurpose::ExportPng => self.pending_png = Some(ext(path, &[".png"], ".png")),
            DialogPurpose::ExportCsv => self.export_metrics(ext(path, &[".csv"], ".csv"), false),
            DialogPurpose::ExportJson => self.export_metrics(ext(path, &[".json"], ".json"), true),
        }
    }

    fn on_prepared(&mut self, p: Arc<Prepared>) {
        self.session_id += 1;
        self.images.clear();
        let old_dims = self.crosshair.dims;
        self.crosshair.regrid(p.grid.dims);
        if old_dims != p.grid.dims {
            self.view = ViewTransform::default();
        }
        self.crosshair.axis = self.settings.view_axis;
        self.metrics = MetricsCache::new(p.sr_axis, p.sr_slices(), p.data_range());
        self.diff_scale = p.diff_scale;
        self.prepared = Some(p.clone());
        self.apply_preset(self.settings.window_preset);
        for n in p.notes.clone() {
            self.info(n);
        }
        self.runs = [None, None];
        self.ensure_checkpoint(Slot::A);
        self.start_run(Slot::A);
        if self.settings.compare_b {
            self.start_run(Slot::B);
        }
    }

    /// Picks a checkpoint of the session's scale from `weights/` when slot A has none that fits.
    fn ensure_checkpoint(&mut self, slot: Slot) {
        let scale = self.settings.scale;
        let fits = match &self.checkpoints[slot.index()] {
            Some(CheckpointSource::File(f)) => backend::peek_scale(f).ok() == Some(scale),
            Some(CheckpointSource::Memory { checkpoint, .. }) => checkpoint.config.scale == scale,
            None => false,
        };
        if fits {
            return;
        }
        let found = if self.discover_weights {
            backend::find_weights(scale).into_iter().next()
        } else {
            None
        };
        if let Some(found) = found {
            self.checkpoints[slot.index()] = Some(CheckpointSource::File(found));
        } else if self.checkpoints[slot.index()].is_none() {
            let place = if self.discover_weights {
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
        self.checkpoints[slot.index()] = Some(source);
        if slot == Slot::B {
            self.settings.compare_b = true;
        }
        let same = self
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

    /// Changes the inference device (GPU, CPU reference, auto) now: the engine factory is rebuilt
    /// and every SR run is restarted on the new backend (a running one is cancelled first; its
    /// late reports are dropped by run id). The engine is made on the worker thread of the new
    /// run, and the status line names it once it exists.
    pub fn set_device(&mut self, device: crate::engine::DeviceChoice) {
        if self.settings.device == device {
            return;
        }
        self.settings.device = device;
        if !self.factory_overridden {
            self.factory = backend::engine_factory(device, self.shared.clone());
        }
        self.fallback = backend::fallback_factory(device);
        let mut restarted = false;
        for slot in Slot::ALL {
            let wanted = slot == Slot::A || self.settings.compare_b;
            if wanted && self.runs[slot.index()].is_some() {
                self.start_run(slot);
                restarted = true;
            }
        }
        let what = if restarted {
            ": inference restarts on it"
        } else {
            ""
        };
        self.info(format!("device: {}{what}", backend::device_label(device)));
    }

    /// Starts (or restarts) inference for `slot` over the prepared session.
    pub fn start_run(&mut self, slot: Slot) {
        self.cancel_run(slot);
        let Some(p) = self.prepared.clone() else {
            return;
        };
        let Some(source) = self.checkpoints[slot.index()].clone() else {
            self.runs[slot.index()] = None;
            return;
        };
        let run_id = self.next_run_id;
        self.next_run_id += 1;
        self.runs[slot.index()] = Some(SrRun::new(slot, run_id, source.label(), &p));
        self.metrics.invalidate_result(ResultId::Sr(slot));
        let cancel = Arc::new(AtomicBool::new(false));
        let (ptx, prx) = crossbeam_channel::unbounded();
        let first = p.stored_sr_slice(self.crosshair.voxel[p.sr_axis.index()]);
        self.run_ctl[slot.index()] = Some(RunControl {
            cancel: cancel.clone(),
            priority: ptx,
        });
        self.jobs.infer(InferenceJob {
            run_id,
            slot,
            checkpoint: source,
            factory: self.factory.clone(),
            fallback: self.fallback.clone(),
            prepared: p,
            first,
            cancel,
            priority: prx,
        });
    }

    fn on_sr(&mut self, run_id: u64, slot: Slot, ev: SrEvent) {
        let Some(p) = self.prepared.clone() else {
            return;
        };
        let Some(run) = self.runs[slot.index()].as_mut() else {
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
                self.run_ctl[slot.index()] = None;
            }
            SrEvent::Cancelled => {
                run.state = RunState::Cancelled;
                self.run_ctl[slot.index()] = None;
            }
            SrEvent::Failed(e) => {
                run.state = RunState::Failed(e.clone());
                self.run_ctl[slot.index()] = None;
                let label = if slot == Slot::A { "SR" } else { "SR (B)" };
                self.error(format!("{label} failed: {e}"));
            }
        }
    }

    /// Tells running jobs the slice on screen, so it is upscaled next.
    pub fn prioritise_current(&self) {
        let Some(p) = &self.prepared else {
            return;
        };
        let k = p.stored_sr_slice(self.crosshair.voxel[p.sr_axis.index()]);
        for ctl in self.run_ctl.iter().flatten() {
            let _ = ctl.priority.send(k);
        }
    }

    /// Applies a window preset (values from the reference volume's percentiles).
    pub fn apply_preset(&mut self, preset: WindowPreset) {
        self.settings.window_preset = preset;
        let Some(p) = &self.prepared else {
            return;
        };
        let (pl, ph) = preset.percentiles();
        let lo = p.summary.get(f64::from(pl));
        let hi = p.summary.get(f64::from(ph));
        if let (Some(lo), Some(mut hi)) = (lo, hi) {
            if hi <= lo {
                hi = p.summary.get(100.0).unwrap_or(lo + 1.0).max(lo + 1e-3);
            }
            self.window = WindowLevel::from_range(lo, hi);
        }
    }

    /// The panes of the current layout (one pane in presentation mode).
    pub fn pane_rows(&self) -> Vec<Vec<PaneKind>> {
        let Some(p) = &self.prepared else {
            return Vec::new();
        };
        let compare_b = self.settings.compare_b && self.checkpoints[1].is_some();
        if self.presentation {
            let cycle = session::presentation_cycle(p.params.mode, compare_b);
            let i = self.presentation_index % cycle.len().max(1);
            return cycle.get(i).map(|k| vec![vec![*k]]).unwrap_or_default();
        }
        let mut rows = session::layout(
            p.params.mode,
            compare_b,
            self.settings.map,
            self.settings.map_baseline,
        );
        // Flip shows GT in the SR pane: only where there is a GT (not in upscale mode).
        if self.flip && p.gt.is_some() {
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
        let Some(p) = self.prepared.clone() else {
            return Err(PaneEmpty::Error("nothing loaded".into()));
        };
        let axis = self.crosshair.axis;
        let index = self.crosshair.slice();
        let key = ImageKey {
            session: self.session_id,
            kind,
            axis,
            index,
            lr_interp: self.settings.lr_interp,
            version: self.content_version(kind, axis, index),
        };
        if let Some(r) = self.images.get(&key) {
            return r.clone();
        }
        let r = session::pane_plane(&p, &self.runs, kind, axis, index, self.settings.lr_interp)
            .map(|plane| {
                self.next_stamp += 1;
                SliceImage {
                    plane: Arc::new(plane),
                    stamp: self.next_stamp,
                }
            });
        // A pending slice is not cached: it changes without a version bump when it arrives.
        if !matches!(r, Err(PaneEmpty::Pending)) {
            if self.images.len() >= MAX_IMAGES {
                self.images.clear();
            }
            self.images.insert(key, r.clone());
        }
        r
    }

    /// Results that get metrics (SR runs present, then the baselines).
    pub fn metric_results(&self) -> Vec<ResultId> {
        let mut out = Vec::new();
        for slot in Slot::ALL {
            if self.runs[slot.index()].is_some() {
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
        let Some(p) = self.prepared.clone() else {
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
        let (axis, index) = (self.crosshair.axis, self.crosshair.slice());
        for id in self.metric_results() {
            wanted.push((axis, index, id));
        }
        for key in wanted {
            let (axis, index, id) = key;
            if let ResultId::Sr(slot) = id {
                let Some(run) = self.runs[slot.index()].as_ref() else {
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
            let Some(test_vol) = session::result_volume(&p, &self.runs, id) else {
                continue;
            };
            let (Some(g), Some(t)) = (gt.slice(axis, index), test_vol.slice(axis, index)) else {
                continue;
            };
            if let Some(version) = self.metrics.request(key) {
                self.jobs.metric(MetricRequest {
                    session: self.session_id,
                    key,
                    version,
                    gt: g,
                    test: t,
                    data_range: p.data_range(),
                });
            }
        }
    }

    /// Changes the slicing axis of the panes.
    pub fn set_axis(&mut self, axis: Axis) {
        self.crosshair.axis = axis;
        self.settings.view_axis = axis;
    }

    /// Moves the current slice by `delta` and prioritises it for inference.
    pub fn step_slice(&mut self, delta: i64) {
        self.crosshair.step(delta);
        self.prioritise_current();
    }

    /// Jumps to SR-axis slice `index` (the per-slice plot).
    pub fn jump_to_sr_slice(&mut self, index: usize) {
        if let Some(p) = &self.prepared {
            let axis = p.sr_axis;
            self.set_axis(axis);
            self.crosshair.set_slice(index);
            self.prioritise_current();
        }
    }

    /// Switches between simulate and upscale mode.
    pub fn set_mode(&mut self, mode: Mode) {
        if self.settings.mode != mode {
            self.settings.mode = mode;
            self.flip = false;
            self.reprepare_if_needed();
        }
    }

    /// The F key: shows GT in the SR pane, or SR again; nothing without a GT (upscale mode).
    pub fn toggle_flip(&mut self) {
        let has_gt = self.prepared.as_ref().is_some_and(|p| p.gt.is_some());
        self.flip = has_gt && !self.flip;
    }

    /// Cycles the map row: off, |error|, signed, SSIM.
    pub fn cycle_map(&mut self) {
        self.settings.map = match self.settings.map {
            None => Some(MapKind::AbsDiff),
            Some(MapKind::AbsDiff) => Some(MapKind::Signed),
            Some(MapKind::Signed) => Some(MapKind::Ssim),
            Some(MapKind::Ssim) => None,
        };
    }

    /// Cycles the baseline of the map row.
    pub fn cycle_map_baseline(&mut self) {
        self.settings.map_baseline = match self.settings.map_baseline {
            Baseline::Bicubic => Baseline::Zerofill,
            Baseline::Zerofill => Baseline::Nearest,
            Baseline::Nearest => Baseline::Bicubic,
        };
    }

    /// Toggles the LR pane interpolation between nearest and bicubic.
    pub fn toggle_lr_interp(&mut self) {
        self.settings.lr_interp = if self.settings.lr_interp == Baseline::Nearest {
            Baseline::Bicubic
        } else {
            Baseline::Nearest
        };
    }

    /// Presentation mode: the next pane of the cycle.
    pub fn presentation_next(&mut self) {
        self.presentation_index = self.presentation_index.wrapping_add(1);
    }

    /// The SR volume of `slot` in file units, for export: on the opened file's own voxel axes
    /// (in-plane axes upscaled, slice axis kept; [`Prepared::sr_stored`]) with the affine that
    /// keeps each voxel at its world position, so it overlays the input in any viewer (the grid
    /// `deltawkv upscale` writes). In upscale mode the values are those `deltawkv upscale` writes
    /// (input's intensity scale, not clipped); in simulate mode the clamped SR the metrics
    /// measure, times the normalisation factor. `Err` while incomplete.
    pub fn sr_export_volume(&self, slot: Slot) -> Result<crate::volume::Volume, String> {
        let p = self.prepared.as_ref().ok_or("nothing loaded")?;
        let run = self.runs[slot.index()]
            .as_ref()
            .ok_or("no SR result: choose a checkpoint first")?;
        if !run.complete() {
            return Err(format!(
                "SR is not finished ({} of {} slices); export when it is",
                run.n_done,
                run.done.len()
            ));
        }
        let mut v = p
            .reorient
            .to_stored_volume(&run.volume, &p.sr_stored)
            .ok_or("internal error: the SR volume does not fit the stored grid")?;
        if p.gt.is_none() {
            // Upscale mode: the network's output on the input's intensity scale, unclipped,
            // exactly as `deltawkv upscale` writes it.
            p.intensity.restore_volume(&mut v);
        } else {
            // Simulate mode: the SR the metrics measure (clamped to [0, 1], as `deltawkv eval`)
            // in file units: 0 to the 99.5th percentile of the opened volume.
            for x in &mut v.data {
                *x *= p.norm;
            }
        }
        let src = p
            .meta
            .source_path
            .as_ref()
            .and_then(|s| s.file_name())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "volume".into());
        v.meta.source_path = None;
        v.meta.series_description = Some(format!(
            "deltawkv SR x{} ({}) of {src}",
            p.params.scale, run.checkpoint
        ));
        Ok(v)
    }

    fn export_nifti(&mut self, path: PathBuf) {
        match self.sr_export_volume(Slot::A) {
            Ok(v) => self.jobs.save_nifti(v, path),
            Err(e) => self.error(format!("SR volume not saved: {e}")),
        }
    }

    fn export_metrics(&mut self, path: PathBuf, json: bool) {
        let r = super::export::metrics_report(self).and_then(|rep| {
            let text = if json {
                serde_json::to_string_pretty(&rep).map_err(|e| e.to_string())?
            } else {
                super::export::metrics_csv(&rep)
            };
            super::export::write_atomic(&path, text.as_bytes())
        });
        match r {
            Ok(()) => self.info(format!("metrics saved to {}", path.display())),
            Err(e) => self.error(format!("metrics not saved: {e}")),
        }
    }

    /// A default file name stem for exports.
    pub fn export_stem(&self) -> String {
        let src = self
            .loaded
            .as_ref()
            .and_then(|l| l.path.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "volume".into());
        let stem = src
            .trim_end_matches(".gz")
            .trim_end_matches(".nii")
            .to_string();
        match &self.prepared {
            Some(p) => format!("{stem}_sr_x{}", p.params.scale),
            None => stem,
        }
    }

    /// Path of the loaded volume.
    pub fn loaded_path(&self) -> Option<&Path> {
        self.loaded.as_ref().map(|l| l.path.as_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::session::tests::phantom;
    use std::time::Duration;

    fn viewer() -> Viewer {
        let opts = AppOptions {
            open_nothing: true,
            no_weights_discovery: true,
            ..Default::default()
        };
        Viewer::new(opts, Settings::default(), None, Arc::new(|| {}))
    }

    fn wait_until(v: &mut Viewer, what: &str, cond: impl Fn(&Viewer) -> bool) {
        let t0 = Instant::now();
        while !cond(v) {
            v.poll();
            v.request_metrics();
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn load_phantom(v: &mut Viewer) {
        let vol = phantom([32, 32, 12], [1.0, 1.0, 4.0]);
        v.loaded = Some(Loaded {
            path: PathBuf::from("/phantom.nii.gz"),
            volume: Arc::new(vol),
            orientation: "RAS".into(),
            load_secs: 0.0,
        });
        v.start_prepare();
        wait_until(v, "preparation", |v| v.prepared.is_some());
    }

    #[test]
    fn mode_switching_rebuilds_the_session_and_layout() {
        let mut v = viewer();
        load_phantom(&mut v);
        let p = v.prepared.clone().expect("prepared");
        assert_eq!(p.params.mode, Mode::Simulate);
        assert_eq!(p.sr_axis, Axis::Axial);
        assert_eq!(
            v.pane_rows(),
            vec![vec![PaneKind::Lr, PaneKind::Sr(Slot::A), PaneKind::Gt]]
        );
        // The auto window is the 2-98 % range of the GT.
        let (lo, hi) = v.window.range();
        assert_eq!(Some(lo), p.summary.get(2.0));
        assert_eq!(Some(hi), p.summary.get(98.0));

        v.set_mode(Mode::Upscale);
        assert!(v.preparing.is_some());
        wait_until(&mut v, "upscale session", |v| {
            v.prepared
                .as_ref()
                .is_some_and(|p| p.params.mode == Mode::Upscale)
        });
        let p = v.prepared.clone().expect("prepared");
        assert!(p.gt.is_none());
        assert_eq!(p.grid.dims, [64, 64, 12]);
        assert_eq!(
            v.pane_rows(),
            vec![vec![PaneKind::Lr, PaneKind::Sr(Slot::A)]]
        );
        // No GT: no metrics are requested.
        v.request_metrics();
        assert_eq!(v.metrics.pending_count(), 0);
        // Same parameters again: nothing is redone.
        v.reprepare_if_needed();
        assert!(v.preparing.is_none());
    }

    #[test]
    fn baseline_metrics_are_computed_and_cached_per_slice() {
        let mut v = viewer();
        load_phantom(&mut v);
        v.request_metrics();
        let first = v.metrics.pending_count();
        assert_eq!(
            first,
            3 * 12,
            "3 baselines x 12 axial slices (current slice included)"
        );
        v.request_metrics();
        assert_eq!(
            v.metrics.pending_count(),
            first,
            "requests are not repeated"
        );
        wait_until(&mut v, "baseline metrics", |v| {
            v.metrics.pending_count() == 0
        });
        let id = ResultId::Baseline(Baseline::Zerofill);
        let vm = v.metrics.volume(id).expect("volume metrics");
        assert_eq!((vm.slices, vm.total), (12, 12));
        assert!(vm.psnr.is_finite() && vm.psnr > 10.0, "{vm:?}");
        // Coronal slices are computed on demand.
        v.set_axis(Axis::Coronal);
        v.request_metrics();
        assert_eq!(v.metrics.pending_count(), 3);
        wait_until(&mut v, "coronal metrics", |v| {
            v.metrics.pending_count() == 0
        });
        let k = (Axis::Coronal, v.crosshair.slice(), id);
        assert!(v.metrics.get(k).is_some());
    }

    #[test]
    fn metrics_of_slices_smaller_than_the_ssim_window_fail_once() {
        let mut v = viewer();
        let vol = phantom([32, 32, 6], [1.0, 1.0, 4.0]);
        v.loaded = Some(Loaded {
            path: PathBuf::from("/thin.nii.gz"),
            volume: Arc::new(vol),
            orientation: "RAS".into(),
            load_secs: 0.0,
        });
        v.start_prepare();
        wait_until(&mut v, "preparation", |v| v.prepared.is_some());
        v.set_axis(Axis::Coronal);
        wait_until(&mut v, "metrics", |v| v.metrics.pending_count() == 0);
        let k = (
            Axis::Coronal,
            v.crosshair.slice(),
            ResultId::Baseline(Baseline::Bicubic),
        );
        assert!(v.metrics.get(k).is_none());
        assert!(
            v.metrics.failure(k).is_some_and(|e| e.contains("11")),
            "{:?}",
            v.metrics.failure(k)
        );
    }

    #[test]
    fn presentation_cycle_and_flip() {
        let mut v = viewer();
        load_phantom(&mut v);
        v.flip = true;
        assert_eq!(
            v.pane_rows()[0],
            vec![PaneKind::Lr, PaneKind::Gt, PaneKind::Gt]
        );
        v.flip = false;
        // Upscale mode has no GT: flip leaves the SR pane alone (and the F key does nothing).
        v.set_mode(Mode::Upscale);
        wait_until(&mut v, "upscale session", |v| {
            v.prepared.as_ref().is_some_and(|p| p.gt.is_none())
        });
        v.toggle_flip();
        assert!(!v.flip);
        v.flip = true;
        assert_eq!(v.pane_rows()[0], vec![PaneKind::Lr, PaneKind::Sr(Slot::A)]);
        v.set_mode(Mode::Simulate);
        wait_until(&mut v, "simulate session", |v| {
            v.prepared.as_ref().is_some_and(|p| p.gt.is_some())
        });
        v.toggle_flip();
        assert!(v.flip);
        v.toggle_flip();
        v.presentation = true;
        v.presentation_index = 0;
        assert_eq!(v.pane_rows(), vec![vec![PaneKind::Lr]]);
        v.presentation_next();
        assert_eq!(v.pane_rows(), vec![vec![PaneKind::Sr(Slot::A)]]);
        v.presentation_next();
        assert_eq!(v.pane_rows(), vec![vec![PaneKind::Gt]]);
        v.presentation_next();
        assert_eq!(v.pane_rows(), vec![vec![PaneKind::Lr]]);
    }

    #[test]
    fn pane_images_are_cached_until_the_slice_changes() {
        let mut v = viewer();
        load_phantom(&mut v);
        let a = v.pane_image(PaneKind::Gt).expect("gt");
        let b = v.pane_image(PaneKind::Gt).expect("gt");
        assert_eq!(a.stamp, b.stamp, "same slice: same texture content");
        v.step_slice(1);
        let c = v.pane_image(PaneKind::Gt).expect("gt");
        assert_ne!(a.stamp, c.stamp);
        assert_ne!(a.plane, c.plane);
        // No checkpoint: the SR pane says so.
        assert_eq!(
            v.pane_image(PaneKind::Sr(Slot::A)).map(|_| ()),
            Err(PaneEmpty::NoRun)
        );
    }

    #[test]
    fn dicom_folder_with_two_series_asks_which_then_opens_it() {
        let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/fixtures");
        let dir = tempfile::tempdir().expect("tempdir");
        let series = fixtures.join("dicom_series_tiny16");
        for e in std::fs::read_dir(&series)
            .expect("fixture folder")
            .flatten()
        {
            std::fs::copy(e.path(), dir.path().join(e.file_name())).expect("copy");
        }
        std::fs::copy(
            fixtures.join("dicom_single_mr_small/MR_small.dcm"),
            dir.path().join("other.dcm"),
        )
        .expect("copy");
        let mut v = viewer();
        v.open(dir.path().to_path_buf(), None);
        wait_until(&mut v, "series list", |v| v.loading.is_none());
        let choice = v.series_choice.clone().expect("a series choice");
        assert_eq!(choice.series.len(), 2);
        let tiny = choice
            .series
            .iter()
            .find(|s| s.files == 7)
            .expect("the 7-file series");
        v.open(choice.folder.clone(), Some(tiny.uid.clone()));
        assert!(v.series_choice.is_none());
        wait_until(&mut v, "the chosen series", |v| {
            v.loading.is_none() && v.preparing.is_none()
        });
        assert!(v.messages.iter().all(|m| !m.error), "{:?}", v.messages);
        let p = v.prepared.as_ref().expect("prepared");
        assert_eq!(p.sr_slices(), 7);
    }

    #[test]
    fn bad_file_shows_a_message_and_no_crash() {
        let mut v = viewer();
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = dir.path().join("bad.nii.gz");
        std::fs::write(&bad, b"\x1f\x8bnot really gzip").expect("write");
        v.open(bad, None);
        wait_until(&mut v, "load failure", |v| v.loading.is_none());
        assert!(v.prepared.is_none());
        let m = v.messages.last().expect("message");
        assert!(m.error && m.text.contains("bad.nii.gz"), "{m:?}");
    }
}
