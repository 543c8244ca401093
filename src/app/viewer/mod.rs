//! Runtime state of the viewer and everything it does in response to the user and to jobs,
//! separate from how it is drawn (ui/, panes.rs). [`Viewer`] is composed of sub-states, each in
//! its own file with the viewer's actions on it: the opened [`Document`], [`Navigation`] and
//! display, [`Inference`] runs, pane and metric content, messages and [`Dialogs`].

mod content;
mod dialogs;
mod document;
mod exports;
mod inference;
mod messages;
mod navigation;
mod pacs;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use super::backend::{self, SharedGpu};
use super::export;
use super::geometry::Crosshair;
use super::jobs::{CheckpointSource, DialogPurpose, EngineFactory, Event, JobError, Jobs, Waker};
use super::metrics_cache::{MetricsCache, Slot};
use super::runs::SrRun;
use super::session::{Mode, PrepareError, PrepareParams, Prepared};
use super::settings::Settings;
use crate::volume::Axis;
use crate::volume::geometry::{Reorient, axis_of};

use content::PaneImages;
pub use dialogs::{Dialogs, SeriesChoice};
pub use document::Document;
pub use inference::Inference;
use messages::Messages;
pub use messages::UiMessage;
pub use navigation::Navigation;
pub use pacs::{PacsOp, PacsOpKind, PacsQuery, PacsState};

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

/// The viewer's runtime state: persisted settings plus the runtime sub-states.
pub struct Viewer {
    settings: Settings,
    jobs: Jobs,
    doc: Document,
    inference: Inference,
    nav: Navigation,
    metrics: MetricsCache,
    images: PaneImages,
    messages: Messages,
    dialogs: Dialogs,
    pacs: PacsState,
    /// Whether panes can be drawn (a wgpu renderer with the display resources exists).
    gpu_display: bool,
}

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
        let factory: EngineFactory = opts
            .engine_factory
            .clone()
            .unwrap_or_else(|| backend::engine_factory(settings.device, shared.clone()));
        let checkpoints = [
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
        ];
        let mut v = Self {
            jobs: Jobs::new(waker),
            doc: Document::default(),
            inference: Inference::new(
                factory,
                opts.engine_factory.is_some(),
                shared.clone(),
                backend::fallback_factory(settings.device),
                checkpoints,
                !opts.no_weights_discovery,
            ),
            nav: Navigation::new(settings.view_axis),
            metrics: MetricsCache::default(),
            images: PaneImages::default(),
            messages: Messages::default(),
            dialogs: Dialogs::default(),
            pacs: PacsState::default(),
            gpu_display: shared.is_some(),
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

    /// The settings (persisted between runs).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The settings, for controls that change them directly (changes that need more than a new
    /// value go through the viewer's methods, e.g. [`Self::set_mode`]).
    pub fn settings_mut(&mut self) -> &mut Settings {
        &mut self.settings
    }

    /// The opened document (loading, loaded volume, preparation).
    pub fn document(&self) -> &Document {
        &self.doc
    }

    /// The prepared session, if any.
    pub fn prepared(&self) -> Option<&Arc<Prepared>> {
        self.doc.prepared()
    }

    /// Path of the loaded volume.
    pub fn loaded_path(&self) -> Option<&Path> {
        self.doc.loaded_path()
    }

    /// Navigation and display state.
    pub fn navigation(&self) -> &Navigation {
        &self.nav
    }

    /// Navigation and display state, for the controls that change it.
    pub fn navigation_mut(&mut self) -> &mut Navigation {
        &mut self.nav
    }

    /// The crosshair (slicing axis, current voxel).
    pub fn crosshair(&self) -> &Crosshair {
        self.nav.crosshair()
    }

    /// The SR runs, their checkpoints and device.
    pub fn inference(&self) -> &Inference {
        &self.inference
    }

    /// The SR run of `slot`, if it has one.
    pub fn run(&self, slot: Slot) -> Option<&SrRun> {
        self.inference.run(slot)
    }

    /// The metrics computed (and asked for) so far.
    pub fn metrics(&self) -> &MetricsCache {
        &self.metrics
    }

    /// The messages on show, oldest first.
    pub fn messages(&self) -> &[UiMessage] {
        self.messages.all()
    }

    /// Removes message `i` (the user dismissed it).
    pub fn dismiss_message(&mut self, i: usize) {
        self.messages.dismiss(i);
    }

    /// Windows on show and file actions waiting.
    pub fn dialogs(&self) -> &Dialogs {
        &self.dialogs
    }

    /// Windows on show and file actions waiting, for the UI to change.
    pub fn dialogs_mut(&mut self) -> &mut Dialogs {
        &mut self.dialogs
    }

    /// Whether panes can be drawn (a wgpu renderer with the display resources exists).
    pub fn gpu_display(&self) -> bool {
        self.gpu_display
    }

    /// Shows an error in the message panel.
    pub fn error(&mut self, text: String) {
        tracing::warn!("{text}");
        self.messages.push(UiMessage { text, error: true });
    }

    /// Shows an information message.
    pub fn info(&mut self, text: String) {
        self.messages.push(UiMessage { text, error: false });
    }

    /// Opens a file or DICOM folder, cancelling whatever runs.
    pub fn open(&mut self, path: PathBuf, series: Option<String>) {
        self.cancel_all();
        self.doc.ticket += 1;
        self.dialogs.set_series_choice(None);
        self.doc.loading = Some((path.clone(), Instant::now()));
        self.jobs.load(self.doc.ticket, path, series);
    }

    /// Asks the user for a file (or folder) in a native dialog.
    pub fn dialog(&self, purpose: DialogPurpose, default_name: &str) {
        self.jobs.dialog(
            purpose,
            self.settings.last_dir.clone(),
            default_name.to_string(),
        );
    }

    /// Whether any job of this viewer is under way (for tests and the status line).
    pub fn busy(&self) -> bool {
        self.doc.busy()
            || self.inference.running()
            || self.metrics.pending_count() > 0
            || self.pacs.op().is_some()
    }

    /// The prepare parameters the settings ask for, for the loaded volume.
    pub fn wanted_params(&self) -> Option<PrepareParams> {
        let loaded = self.doc.loaded.as_ref()?;
        Some(PrepareParams {
            mode: self.settings.mode,
            scale: self.settings.scale,
            degradation: self.lr_geometry(),
            stored_sr_axis: self.stored_sr_axis(&loaded.volume),
        })
    }

    /// Sampling geometry of the LR: in simulate mode the chosen degradation; in upscale mode the
    /// one checkpoint A was trained on (as `deltawkv upscale`), else the chosen one.
    pub fn lr_geometry(&self) -> crate::model::Degradation {
        match self.settings.mode {
            Mode::Simulate => self.settings.degradation,
            Mode::Upscale => self
                .inference
                .checkpoint_degradation(Slot::A)
                .unwrap_or(self.settings.degradation),
        }
    }

    /// The stored voxel axis the settings' SR axis (given in canonical terms) maps to.
    fn stored_sr_axis(&self, v: &crate::volume::Volume) -> Axis {
        let r = Reorient::of(&v.affine);
        let canonical_spacing = [
            v.spacing[r.src[0]],
            v.spacing[r.src[1]],
            v.spacing[r.src[2]],
        ];
        let a = self.settings.sr_axis.resolve(canonical_spacing);
        axis_of(r.src[a.index()])
    }

    /// Rebuilds LR/GT/baselines after a parameter change (no-op when nothing changed).
    pub fn reprepare_if_needed(&mut self) {
        self.ensure_checkpoint(Slot::A);
        let Some(want) = self.wanted_params() else {
            return;
        };
        let same = self.doc.prepared.as_ref().is_some_and(|p| p.params == want);
        if !same {
            self.start_prepare();
        }
    }

    fn start_prepare(&mut self) {
        let Some(loaded) = self.doc.loaded.clone() else {
            return;
        };
        self.ensure_checkpoint(Slot::A);
        let Some(params) = self.wanted_params() else {
            return;
        };
        self.cancel_all();
        self.doc.ticket += 1;
        self.doc.prepare_cancel = Arc::new(AtomicBool::new(false));
        self.doc.preparing = Some(Instant::now());
        self.jobs.prepare(
            self.doc.ticket,
            &loaded,
            params,
            self.doc.prepare_cancel.clone(),
        );
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
            Event::Loaded { ticket, result } if ticket == self.doc.ticket => {
                self.doc.loading = None;
                match result {
                    Ok(l) => {
                        // A series retrieved from a PACS lives in a temporary folder.
                        if !self.pacs.owns(&l.path) {
                            self.settings.push_recent(&l.path);
                        }
                        self.pacs.keep_only(&l.path);
                        tracing::info!("loaded {} in {:.2} s", l.path.display(), l.load_secs);
                        // Files of the series that could not be read: named once, on load.
                        for f in &l.volume.meta.skipped {
                            self.info(format!("skipped {}: {}", f.path.display(), f.reason));
                        }
                        self.doc.loaded = Some(l);
                        self.start_prepare();
                    }
                    Err(e) => self.error(format!("cannot open: {e}")),
                }
            }
            Event::ChooseSeries {
                ticket,
                folder,
                series,
            } if ticket == self.doc.ticket => {
                self.doc.loading = None;
                self.dialogs.set_series_choice(Some(SeriesChoice {
                    ticket,
                    folder,
                    series,
                }));
            }
            Event::Prepared { ticket, result } if ticket == self.doc.ticket => {
                self.doc.preparing = None;
                match result {
                    Ok(p) => self.on_prepared(p),
                    Err(JobError::Prepare(PrepareError::Cancelled)) => {}
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
            } if session == self.doc.session_id => match result {
                Ok(m) => self.metrics.insert(key, version, m),
                Err(e) => {
                    tracing::debug!("metric {key:?} not computed: {e}");
                    self.metrics.insert_failure(key, version, e.to_string());
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
            Event::Pacs { op, event } => self.on_pacs(op, event),
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
            export::with_extension_if_missing(p, accepted, default)
        };
        match purpose {
            DialogPurpose::OpenFile | DialogPurpose::OpenFolder => self.open(path, None),
            DialogPurpose::Checkpoint(slot) => {
                self.set_checkpoint(slot, CheckpointSource::File(path))
            }
            DialogPurpose::ExportNifti => {
                self.export_nifti(ext(path, &[".nii.gz", ".nii"], ".nii.gz"))
            }
            DialogPurpose::ExportDicom => self.export_dicom(path),
            DialogPurpose::ExportPng => self.dialogs.request_png(ext(path, &[".png"], ".png")),
            DialogPurpose::ExportCsv => self.export_metrics(ext(path, &[".csv"], ".csv"), false),
            DialogPurpose::ExportJson => self.export_metrics(ext(path, &[".json"], ".json"), true),
        }
    }

    fn on_prepared(&mut self, p: Arc<Prepared>) {
        self.doc.session_id += 1;
        self.images.clear();
        let old_dims = self.nav.crosshair.dims;
        self.nav.crosshair.regrid(p.grid.dims);
        if old_dims != p.grid.dims {
            self.nav.reset_view();
        }
        self.nav.crosshair.axis = self.settings.view_axis;
        self.metrics = MetricsCache::new(p.sr_axis, p.sr_slices(), p.data_range());
        self.nav.diff_scale = p.diff_scale;
        self.doc.prepared = Some(p.clone());
        self.apply_preset(self.settings.window_preset);
        for n in p.notes.clone() {
            self.info(n);
        }
        self.inference.clear();
        self.ensure_checkpoint(Slot::A);
        self.start_run(Slot::A);
        if self.settings.compare_b {
            self.start_run(Slot::B);
        }
    }

    /// Switches between simulate and upscale mode.
    pub fn set_mode(&mut self, mode: Mode) {
        if self.settings.mode != mode {
            self.settings.mode = mode;
            self.nav.flip = false;
            self.reprepare_if_needed();
        }
    }
}

#[cfg(test)]
mod tests;
