//! Work off the UI thread: loading, preparation (degradation and baselines), inference and
//! metrics. Every job reports over one crossbeam channel and wakes the UI with a repaint; the UI
//! drops reports whose ticket is no longer current, so a superseded job can never overwrite a
//! newer one. Panics inside a job (a backend bug) are caught and reported as failures.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::metrics_cache::{MetricKey, SliceMetrics, Slot};
use super::session::{self, PrepareError, PrepareParams, Prepared};
use crate::backend::{Fallback, FallbackError, is_device_failure};
use crate::checkpoints::{self, LocateError};
use crate::engine::{EngineError, Upscaler};
use crate::ensemble::SelfEnsemble;
use crate::metrics::MetricError;
use crate::model::{Checkpoint, CheckpointError};
use crate::plane::Plane;
use crate::volume::{self, LoadOptions, SeriesInfo, Volume, VolumeError};

pub use crate::backend::EngineFactory;

/// Something that wakes the UI when a job reports (egui's `Context::request_repaint`).
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// Why a job failed; reported to the UI as its message.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The checkpoint's scale is not the session's.
    #[error("{error}: choose a x{want} checkpoint or switch the scale")]
    Scale { error: LocateError, want: usize },
    #[error("cannot start the engine: {0}")]
    EngineStart(EngineError),
    #[error(transparent)]
    Fallback(#[from] FallbackError),
    #[error("slice {slice}: {error}")]
    Slice { slice: usize, error: EngineError },
    #[error("LR slice {0} is missing")]
    MissingSlice(usize),
    #[error("slice {0}: the engine returned nothing")]
    NoOutput(usize),
    #[error("slice {slice}: the engine returned {}x{}, expected {}x{}", .got.0, .got.1, .want.0, .want.1)]
    OutputSize {
        slice: usize,
        got: (usize, usize),
        want: (usize, usize),
    },
    #[error("slice {slice}: data consistency: {error}")]
    Consistency {
        slice: usize,
        error: crate::consistency::ConsistencyError,
    },
    #[error("slice {slice}: the network produced {count} non-finite values")]
    NonFinite { slice: usize, count: usize },
    #[error(transparent)]
    Metric(#[from] MetricError),
    #[error(transparent)]
    DicomWrite(#[from] crate::volume::DicomWriteError),
    #[error(transparent)]
    Pacs(#[from] crate::pacs::PacsError),
    /// A panic inside the job (a bug).
    #[error("internal error while {what}: {message}")]
    Panicked { what: String, message: String },
}

/// Where a checkpoint comes from.
#[derive(Clone)]
pub enum CheckpointSource {
    File(PathBuf),
    /// An in-memory checkpoint (tests, or one built by the user), with a label to show.
    Memory {
        label: String,
        checkpoint: Arc<Checkpoint>,
    },
}

impl CheckpointSource {
    /// Short name shown to the user.
    pub fn label(&self) -> String {
        match self {
            CheckpointSource::File(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string()),
            CheckpointSource::Memory { label, .. } => label.clone(),
        }
    }

    /// The file, when there is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            CheckpointSource::File(p) => Some(p),
            CheckpointSource::Memory { .. } => None,
        }
    }
}

impl std::fmt::Debug for CheckpointSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckpointSource({})", self.label())
    }
}

/// A loaded volume, in the file's voxel order (the pipeline's order; the display reorients).
#[derive(Clone, Debug)]
pub struct Loaded {
    pub path: PathBuf,
    pub volume: Arc<Volume>,
    /// Orientation code of the file's voxel axes (e.g. `LPS`).
    pub orientation: String,
    pub load_secs: f64,
}

/// What an inference run reports.
#[derive(Debug)]
pub enum SrEvent {
    /// The engine exists (its description).
    EngineReady(String),
    /// Something the user should know, the run goes on.
    Warning(String),
    /// The data-consistent variant of stored slice `index` and the residuals (k-space LR
    /// only), sent just before its [`SrEvent::Slice`].
    Consistency {
        index: usize,
        consistency: Box<super::runs::SliceConsistency>,
    },
    /// One slice is done.
    Slice {
        index: usize,
        plane: Plane,
        secs: f64,
    },
    Finished(Duration),
    Failed(String),
    Cancelled,
}

/// Everything jobs report to the UI.
#[derive(Debug)]
pub enum Event {
    Loaded {
        ticket: u64,
        result: Result<Loaded, JobError>,
    },
    /// A folder holds several DICOM series: the user picks one.
    ChooseSeries {
        ticket: u64,
        folder: PathBuf,
        series: Vec<SeriesInfo>,
    },
    Prepared {
        ticket: u64,
        result: Result<Arc<Prepared>, JobError>,
    },
    Sr {
        run_id: u64,
        slot: Slot,
        event: SrEvent,
    },
    Metric {
        session: u64,
        key: MetricKey,
        version: u64,
        result: Result<SliceMetrics, JobError>,
    },
    /// A file dialog closed (`None`: cancelled).
    Dialog {
        purpose: DialogPurpose,
        path: Option<PathBuf>,
    },
    /// A background export finished.
    Exported {
        what: String,
        result: Result<PathBuf, JobError>,
    },
    /// A report of PACS operation `op` (see [`PacsEvent`]).
    Pacs { op: u64, event: PacsEvent },
}

/// What a PACS operation reports.
#[derive(Debug)]
pub enum PacsEvent {
    /// Instances done so far (retrieve, send).
    Progress(crate::pacs::Progress),
    /// A C-ECHO answered (its round trip time).
    Echoed(Result<Duration, JobError>),
    /// A C-FIND answered.
    Found(Result<Vec<crate::pacs::Match>, JobError>),
    /// A retrieve finished: the temporary folder (removed when dropped) and what was written
    /// into it.
    Retrieved(Result<(tempfile::TempDir, crate::pacs::RetrieveReport), JobError>),
    /// The SR was written as a derived series and sent: what the PACS stored.
    Sent(Result<SentSr, JobError>),
    /// The operation failed in a way of its own (a panic inside it: a bug).
    Failed(JobError),
}

/// What File > Send SR to PACS did.
#[derive(Debug, Clone)]
pub struct SentSr {
    /// What the PACS stored.
    pub report: crate::pacs::SendReport,
    /// The derived series' SeriesInstanceUID.
    pub series_uid: String,
    /// Its StudyInstanceUID.
    pub study_uid: String,
}

/// A PACS operation's target: the node, the client's options and a cancel flag.
#[derive(Clone, Debug)]
pub struct PacsTarget {
    pub node: crate::pacs::Node,
    pub options: crate::pacs::Options,
    pub cancel: Arc<AtomicBool>,
}

/// Why a file dialog was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialogPurpose {
    OpenFile,
    OpenFolder,
    Checkpoint(Slot),
    ExportNifti,
    /// A new folder for the SR as a derived DICOM series.
    ExportDicom,
    ExportPng,
    ExportCsv,
    ExportJson,
}

/// The UI side of the job machinery.
pub struct Jobs {
    tx: Sender<Event>,
    rx: Receiver<Event>,
    waker: Waker,
    metrics_tx: Sender<MetricRequest>,
}

/// A metric to compute on the metrics thread.
pub struct MetricRequest {
    pub session: u64,
    pub key: MetricKey,
    pub version: u64,
    pub gt: Plane,
    pub test: Plane,
    pub data_range: f64,
}

/// Runs `f`, turning a panic into [`JobError::Panicked`].
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, JobError>) -> Result<T, JobError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let message = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!("{what} panicked: {message}");
            Err(JobError::Panicked {
                what: what.to_string(),
                message,
            })
        }
    }
}

impl Jobs {
    /// Starts the metrics thread.
    pub fn new(waker: Waker) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (metrics_tx, metrics_rx) = crossbeam_channel::unbounded::<MetricRequest>();
        let mtx = tx.clone();
        let mwaker = waker.clone();
        let spawned = std::thread::Builder::new()
            .name("deltawkv-metrics".into())
            .spawn(move || metrics_loop(metrics_rx, mtx, mwaker));
        if let Err(e) = spawned {
            tracing::error!("cannot start the metrics thread: {e}");
        }
        Self {
            tx,
            rx,
            waker,
            metrics_tx,
        }
    }

    /// The next report, if any.
    pub fn try_recv(&self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    fn spawn(&self, name: &str, f: impl FnOnce(Sender<Event>, Waker) + Send + 'static) {
        let tx = self.tx.clone();
        let waker = self.waker.clone();
        if let Err(e) = std::thread::Builder::new()
            .name(format!("deltawkv-{name}"))
            .spawn(move || f(tx, waker))
        {
            tracing::error!("cannot start a {name} thread: {e}");
        }
    }

    /// Loads `path` (file or DICOM folder). A folder with several series and no `series` chosen
    /// reports [`Event::ChooseSeries`] instead.
    pub fn load(&self, ticket: u64, path: PathBuf, series: Option<String>) {
        self.spawn("load", move |tx, waker| {
            let t0 = Instant::now();
            let result = guarded("loading", || {
                if path.is_dir() && series.is_none() {
                    let list = volume::list_series(&path)?;
                    if list.len() > 1 {
                        return Ok(Err(list));
                    }
                }
                let opts = LoadOptions {
                    series: series.clone(),
                    ..LoadOptions::default()
                };
                let v = volume::load(&path, &opts)?;
                let orientation = v.orientation_code();
                Ok(Ok(Loaded {
                    path: path.clone(),
                    volume: Arc::new(v),
                    orientation,
                    load_secs: t0.elapsed().as_secs_f64(),
                }))
            });
            let ev = match result {
                Ok(Ok(l)) => Event::Loaded {
                    ticket,
                    result: Ok(l),
                },
                Ok(Err(series)) => Event::ChooseSeries {
                    ticket,
                    folder: path,
                    series,
                },
                Err(e) => Event::Loaded {
                    ticket,
                    result: Err(e),
                },
            };
            let _ = tx.send(ev);
            waker();
        });
    }

    /// Builds LR, GT and baselines for `params`.
    pub fn prepare(
        &self,
        ticket: u64,
        loaded: &Loaded,
        params: PrepareParams,
        cancel: Arc<AtomicBool>,
    ) {
        let volume = loaded.volume.clone();
        let orientation = loaded.orientation.clone();
        self.spawn("prepare", move |tx, waker| {
            let result = guarded("preparing", || {
                session::prepare(&volume, &orientation, params, &|| {
                    cancel.load(Ordering::Relaxed)
                })
                .map(Arc::new)
                .map_err(JobError::Prepare)
            });
            let _ = tx.send(Event::Prepared { ticket, result });
            waker();
        });
    }

    /// Runs a checkpoint over every SR slice, `first` first. Slices sent on `priority` jump the
    /// queue (the slice on screen when the user scrolls). Slice numbers of the job, its
    /// `priority` requests and its reports are in the file's stored voxel order.
    pub fn infer(&self, job: InferenceJob) {
        self.spawn("inference", move |tx, waker| {
            let (run_id, slot) = (job.run_id, job.slot);
            let send = |event: SrEvent| {
                let _ = tx.send(Event::Sr {
                    run_id,
                    slot,
                    event,
                });
                waker();
            };
            let t0 = Instant::now();
            let r = guarded("running inference", || run_inference(&job, &send));
            match r {
                Ok(true) => send(SrEvent::Finished(t0.elapsed())),
                Ok(false) => send(SrEvent::Cancelled),
                Err(e) => send(SrEvent::Failed(e.to_string())),
            }
        });
    }

    /// Queues a metric computation.
    pub fn metric(&self, req: MetricRequest) {
        if self.metrics_tx.send(req).is_err() {
            tracing::error!("the metrics thread is gone");
        }
    }

    /// Opens a native file dialog on its own thread; the answer arrives as [`Event::Dialog`].
    pub fn dialog(&self, purpose: DialogPurpose, start_dir: Option<PathBuf>, default_name: String) {
        self.spawn("dialog", move |tx, waker| {
            let path = pick_path(purpose, start_dir, default_name);
            let _ = tx.send(Event::Dialog { purpose, path });
            waker();
        });
    }

    /// Writes the SR volume as NIfTI (atomically, through `volume::save_nifti`).
    pub fn save_nifti(&self, volume: Volume, path: PathBuf) {
        self.spawn("export", move |tx, waker| {
            let result = guarded("exporting", || {
                Ok(volume::save_nifti(&volume, &path).map(|()| path.clone())?)
            });
            let _ = tx.send(Event::Exported {
                what: "SR volume".into(),
                result,
            });
            waker();
        });
    }

    /// Writes the SR volume as a derived DICOM series into the new folder `dir` (atomically,
    /// through `volume::write_derived_series`), the SHA-256 of `checkpoint` (when it is a file)
    /// computed here, off the UI thread.
    pub fn save_dicom(
        &self,
        volume: Volume,
        checkpoint: Option<PathBuf>,
        provenance: crate::volume::Provenance,
        dir: PathBuf,
    ) {
        self.spawn("export", move |tx, waker| {
            let result = guarded("exporting", || {
                let mut prov = provenance;
                if let Some(c) = &checkpoint {
                    prov.checkpoint_sha256 = volume::sha256_file(c)?;
                }
                let written = volume::write_derived_series(&volume, &prov, &dir)?;
                Ok(written.folder)
            });
            let _ = tx.send(Event::Exported {
                what: "SR DICOM series".into(),
                result,
            });
            waker();
        });
    }

    fn spawn_pacs(
        &self,
        op: u64,
        what: &'static str,
        f: impl FnOnce(&dyn Fn(PacsEvent)) -> PacsEvent + Send + 'static,
    ) {
        self.spawn("pacs", move |tx, waker| {
            let send = |event: PacsEvent| {
                let _ = tx.send(Event::Pacs { op, event });
                waker();
            };
            // A panic (a bug) is reported as the failure of the operation.
            let last = guarded(what, || Ok(f(&send))).unwrap_or_else(PacsEvent::Failed);
            send(last);
        });
    }

    /// C-ECHO of `target`'s node.
    pub fn pacs_echo(&self, op: u64, target: PacsTarget) {
        self.spawn_pacs(op, "C-ECHO", move |_| {
            PacsEvent::Echoed(
                crate::pacs::echo(&target.node, &target.options).map_err(JobError::from),
            )
        });
    }

    /// C-FIND on `target`'s node at `level`.
    pub fn pacs_find(
        &self,
        op: u64,
        target: PacsTarget,
        query: crate::pacs::FindQuery,
        level: crate::pacs::Level,
    ) {
        self.spawn_pacs(op, "C-FIND", move |_| {
            PacsEvent::Found(
                crate::pacs::find(&target.node, &query, level, &target.options)
                    .map_err(JobError::from),
            )
        });
    }

    /// Retrieves series `series_uid` (C-GET: no port of ours opens) into a new temporary folder.
    pub fn pacs_retrieve(&self, op: u64, target: PacsTarget, series_uid: String) {
        self.spawn_pacs(op, "retrieving a series", move |send| {
            let result = (|| -> Result<_, JobError> {
                let tmp = tempfile::Builder::new()
                    .prefix("deltawkv-pacs-")
                    .tempdir()
                    .map_err(|source| crate::pacs::PacsError::Io {
                        path: std::env::temp_dir(),
                        source,
                    })?;
                let out = tmp.path().join("series");
                let report = crate::pacs::retrieve_series(
                    &target.node,
                    &series_uid,
                    &out,
                    &crate::pacs::RetrieveMode::Get,
                    &target.options,
                    &mut |p| send(PacsEvent::Progress(p)),
                    &target.cancel,
                )?;
                Ok((tmp, report))
            })();
            PacsEvent::Retrieved(result)
        });
    }

    /// Writes the SR as a derived DICOM series into a temporary folder (the SHA-256 of
    /// `checkpoint` computed here) and sends it to `target`'s node with C-STORE; the folder is
    /// removed afterwards.
    pub fn pacs_send_sr(
        &self,
        op: u64,
        target: PacsTarget,
        volume: Volume,
        checkpoint: Option<PathBuf>,
        provenance: crate::volume::Provenance,
    ) {
        self.spawn_pacs(op, "sending the SR", move |send| {
            let result = (|| -> Result<_, JobError> {
                let mut prov = provenance;
                if let Some(c) = &checkpoint {
                    prov.checkpoint_sha256 = volume::sha256_file(c)?;
                }
                let tmp = tempfile::Builder::new()
                    .prefix("deltawkv-send-")
                    .tempdir()
                    .map_err(|source| crate::pacs::PacsError::Io {
                        path: std::env::temp_dir(),
                        source,
                    })?;
                let written = volume::write_derived_series(&volume, &prov, &tmp.path().join("sr"))?;
                send(PacsEvent::Progress(crate::pacs::Progress {
                    done: 0,
                    total: Some(written.files.len()),
                }));
                let report = crate::pacs::send_files(
                    &target.node,
                    std::slice::from_ref(&written.folder),
                    &target.options,
                    &mut |p| send(PacsEvent::Progress(p)),
                    &target.cancel,
                )?;
                Ok(SentSr {
                    report,
                    series_uid: written.series_instance_uid,
                    study_uid: written.study_instance_uid,
                })
            })();
            PacsEvent::Sent(result)
        });
    }

    /// A sender for reports made on the UI thread (e.g. synchronous exports).
    pub fn sender(&self) -> Sender<Event> {
        self.tx.clone()
    }
}

/// An inference run.
pub struct InferenceJob {
    pub run_id: u64,
    pub slot: Slot,
    pub checkpoint: CheckpointSource,
    pub factory: EngineFactory,
    /// The backend to continue on when `factory`'s cannot start or fails on the device (no
    /// adapter, device lost, out of memory): the CPU reference, unless the CPU was chosen.
    pub fallback: Option<EngineFactory>,
    /// Average each slice over its eight flips and transposes ([`crate::ensemble`]).
    pub self_ensemble: bool,
    pub prepared: Arc<Prepared>,
    pub first: usize,
    pub cancel: Arc<AtomicBool>,
    pub priority: Receiver<usize>,
}

/// Moves the run to the fallback backend after `error`, telling the user; `Err` when there is
/// none or it cannot start either.
fn fall_back(
    fallback: &mut Fallback,
    ckpt: &Checkpoint,
    error: EngineError,
    what: &str,
    wrap: &dyn Fn(Box<dyn Upscaler>) -> Box<dyn Upscaler>,
    send: &dyn Fn(SrEvent),
) -> Result<Box<dyn Upscaler>, JobError> {
    let next = fallback.take_over(ckpt, error, what)?;
    send(SrEvent::Warning(next.notice));
    let engine = wrap(next.engine);
    send(SrEvent::EngineReady(engine.describe()));
    Ok(engine)
}

/// Loads the checkpoint, makes the engine, upscales the slices. `Ok(false)` when cancelled.
/// A device failure (no GPU, GPU lost, out of memory) moves the run to `job.fallback` once,
/// with a warning, redoing the slice that failed.
fn run_inference(job: &InferenceJob, send: &dyn Fn(SrEvent)) -> Result<bool, JobError> {
    let ckpt: Arc<Checkpoint> = match &job.checkpoint {
        CheckpointSource::File(p) => Arc::new(Checkpoint::load(p)?),
        CheckpointSource::Memory { checkpoint, .. } => checkpoint.clone(),
    };
    let want = job.prepared.params.scale;
    checkpoints::check_scale(&ckpt, &job.checkpoint.label(), want)
        .map_err(|error| JobError::Scale { error, want })?;
    let geometry = job.prepared.params.degradation;
    if ckpt.config.degradation != geometry {
        send(SrEvent::Warning(format!(
            "checkpoint {} was trained on {} LR images, but this LR is {}: expect worse results",
            job.checkpoint.label(),
            ckpt.config.degradation.as_str(),
            geometry.as_str()
        )));
    }
    if job.cancel.load(Ordering::Relaxed) {
        return Ok(false);
    }
    let mut fallback = Fallback::new(job.fallback.clone());
    let wrap = |e| SelfEnsemble::wrap_if(job.self_ensemble, e, geometry);
    let mut engine = match (job.factory)(&ckpt) {
        Ok(e) => {
            let e = wrap(e);
            send(SrEvent::EngineReady(e.describe()));
            e
        }
        Err(e) if is_device_failure(&e) => fall_back(
            &mut fallback,
            &ckpt,
            e,
            "the GPU engine could not start",
            &wrap,
            send,
        )?,
        Err(e) => return Err(JobError::EngineStart(e)),
    };
    for n in engine.take_notices() {
        send(SrEvent::Warning(n));
    }

    // Slices are numbered in the file's voxel order here (the network's input order).
    let axis = job.prepared.params.stored_sr_axis;
    let n = job.prepared.sr_slices();
    let mut order = super::runs::outward_order(job.first, n);
    order.reverse(); // popped from the back
    let mut done = vec![false; n];
    let noop = |_: usize, _: usize| {};
    loop {
        // The latest priority request that is still pending goes first.
        let mut wanted = None;
        while let Ok(k) = job.priority.try_recv() {
            wanted = Some(k);
        }
        let next = match wanted.filter(|&k| k < n && !done.get(k).copied().unwrap_or(true)) {
            Some(k) => Some(k),
            None => loop {
                match order.pop() {
                    Some(k) if done.get(k).copied().unwrap_or(true) => continue,
                    other => break other,
                }
            },
        };
        let Some(k) = next else {
            return Ok(true);
        };
        if job.cancel.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let input = job.prepared.lr_plane(k).ok_or(JobError::MissingSlice(k))?;
        let t = Instant::now();
        let out = loop {
            match engine.upscale(std::slice::from_ref(&input), &noop, &job.cancel) {
                Ok(out) => break out,
                Err(EngineError::Cancelled) => return Ok(false),
                Err(e) if is_device_failure(&e) => {
                    let what = format!("the GPU failed on slice {k}");
                    engine = fall_back(&mut fallback, &ckpt, e, &what, &wrap, send)?;
                    if job.cancel.load(Ordering::Relaxed) {
                        return Ok(false);
                    }
                }
                Err(error) => return Err(JobError::Slice { slice: k, error }),
            }
        };
        let plane = out.into_iter().next().ok_or(JobError::NoOutput(k))?;
        let (ca, ra) = axis.in_plane();
        let dims = job.prepared.sr_stored_dims;
        if plane.width != dims[ca] || plane.height != dims[ra] {
            return Err(JobError::OutputSize {
                slice: k,
                got: (plane.width, plane.height),
                want: (dims[ca], dims[ra]),
            });
        }
        let count = plane.data.iter().filter(|v| !v.is_finite()).count();
        if count > 0 {
            return Err(JobError::NonFinite { slice: k, count });
        }
        // Sent unclamped: `SrRun::apply_stored_slice` clamps in simulate mode (metrics), upscale
        // mode keeps the values for the export (as `deltawkv upscale`).
        if let Some(d) = done.get_mut(k) {
            *d = true;
        }
        for n in engine.take_notices() {
            send(SrEvent::Warning(n));
        }
        // Data consistency on this worker, not the UI thread: a few FFTs per slice.
        let consistency = super::runs::SliceConsistency::compute(
            &plane,
            &input,
            job.prepared.params.scale,
            job.prepared.params.degradation,
            job.prepared.gt.is_some(),
        )
        .map_err(|error| JobError::Consistency { slice: k, error })?;
        if let Some(c) = consistency {
            send(SrEvent::Consistency {
                index: k,
                consistency: Box::new(c),
            });
        }
        send(SrEvent::Slice {
            index: k,
            plane,
            secs: t.elapsed().as_secs_f64(),
        });
    }
}

/// Computes metric requests, newest first (the slice on screen was asked for last).
fn metrics_loop(rx: Receiver<MetricRequest>, tx: Sender<Event>, waker: Waker) {
    let mut stack: Vec<MetricRequest> = Vec::new();
    loop {
        if stack.is_empty() {
            match rx.recv() {
                Ok(r) => stack.push(r),
                Err(_) => return,
            }
        }
        while let Ok(r) = rx.try_recv() {
            stack.push(r);
        }
        let Some(req) = stack.pop() else {
            continue;
        };
        let result = guarded("computing metrics", || {
            let m = crate::metrics::plane_metrics(&req.gt, &req.test, req.data_range)?;
            Ok(SliceMetrics {
                mse: m.mse,
                psnr: m.psnr,
                ssim: m.ssim,
                voxels: req.gt.data.len(),
            })
        });
        let ev = Event::Metric {
            session: req.session,
            key: req.key,
            version: req.version,
            result,
        };
        if tx.send(ev).is_err() {
            return;
        }
        waker();
    }
}

/// Asks the user for a path with the platform's native dialog (rfd, GTK 3 backend).
#[cfg(feature = "native-dialogs")]
fn pick_path(
    purpose: DialogPurpose,
    start_dir: Option<PathBuf>,
    default_name: String,
) -> Option<PathBuf> {
    let mut d = rfd::FileDialog::new();
    if let Some(dir) = start_dir.filter(|d| d.is_dir()) {
        d = d.set_directory(dir);
    }
    match purpose {
        DialogPurpose::OpenFile => d
            .set_title("Open volume (NIfTI or DICOM)")
            .add_filter("Volumes", &["nii", "gz", "dcm", "dicom", "ima"])
            .add_filter("All files", &["*"])
            .pick_file(),
        DialogPurpose::OpenFolder => d.set_title("Open DICOM folder").pick_folder(),
        DialogPurpose::Checkpoint(_) => d
            .set_title("Choose checkpoint")
            .add_filter("safetensors", &["safetensors"])
            .add_filter("All files", &["*"])
            .pick_file(),
        DialogPurpose::ExportNifti => d
            .set_title("Export SR volume")
            .add_filter("NIfTI", &["gz", "nii"])
            .set_file_name(default_name)
            .save_file(),
        DialogPurpose::ExportDicom => d
            .set_title("Export SR as a DICOM series: choose a new or empty folder")
            .pick_folder(),
        DialogPurpose::ExportPng => d
            .set_title("Save screenshot")
            .add_filter("PNG", &["png"])
            .set_file_name(default_name)
            .save_file(),
        DialogPurpose::ExportCsv => d
            .set_title("Export metrics (CSV)")
            .add_filter("CSV", &["csv"])
            .set_file_name(default_name)
            .save_file(),
        DialogPurpose::ExportJson => d
            .set_title("Export metrics (JSON)")
            .add_filter("JSON", &["json"])
            .set_file_name(default_name)
            .save_file(),
    }
}

/// Built without native dialogs (`--no-default-features`, e.g. headless benchmark binaries):
/// files open by drag and drop or from the command line.
#[cfg(not(feature = "native-dialogs"))]
fn pick_path(
    purpose: DialogPurpose,
    _start_dir: Option<PathBuf>,
    _default_name: String,
) -> Option<PathBuf> {
    tracing::warn!(
        "{purpose:?}: this build has no native file dialogs (feature native-dialogs); \
         drop a file on the window or pass a path on the command line"
    );
    None
}
