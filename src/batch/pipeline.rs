//! The batch pipeline: CPU threads read, decode and normalise the next volumes while the engine
//! (built once, on its own thread, while the first volume is read) upscales the current one,
//! and other CPU threads assemble, encode (gzip) and write the previous ones. Bounded channels
//! between the stages keep at most a few volumes in memory. Every job ends as one [`Record`]
//! (ok, skipped, failed) handed to the caller on its thread, in completion order; a failing
//! volume is recorded and the others go on.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use super::jobs::{Job, Source};
use super::output::{self, OutputWriter};
use crate::engine::{EngineError, Upscaler};
use crate::model::Degradation;
use crate::plane::Plane;
use crate::upscale::{self, Prepared};
use crate::volume::{self, Axis, LoadOptions, Volume};

/// What every job of a run shares.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where outputs go (names from [`Job::stem`]).
    pub out_dir: PathBuf,
    /// Upscaling factor of the checkpoint.
    pub scale: usize,
    /// Slicing direction (in-plane axes upscaled).
    pub axis: Axis,
    /// The checkpoint's degradation (the output grid's sampling geometry).
    pub degradation: Degradation,
    /// Memory budget of one input volume and of one output volume.
    pub memory_budget: u64,
    /// CPU threads reading and, as many, writing (at least 1 each).
    pub workers: usize,
    /// What made the outputs, added to their notes (`by Delta-WKV (weights ...)`); the backend's
    /// description is appended.
    pub note: String,
}

/// A job's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Upscaled and written.
    Ok,
    /// Its complete output existed already.
    Skipped,
    /// Not written; `error` says why.
    Failed,
}

/// Seconds spent in each stage (for one volume, or summed over a run).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Stages {
    /// Reading and decoding the input (NIfTI, DICOM).
    pub decode: f64,
    /// Intensity normalisation and slicing into the network's inputs.
    pub normalise: f64,
    /// The network (the engine's busy time for this volume).
    pub engine: f64,
    /// Intensities back and the output grid filled.
    pub assemble: f64,
    /// Encoding the output (NIfTI serialisation and gzip).
    pub encode: f64,
    /// Writing the bytes (temporary file, fsync, rename).
    pub write: f64,
}

impl Stages {
    fn add(&mut self, o: &Stages) {
        self.decode += o.decode;
        self.normalise += o.normalise;
        self.engine += o.engine;
        self.assemble += o.assemble;
        self.encode += o.encode;
        self.write += o.write;
    }

    /// The CPU-side stages (all but the engine).
    pub fn cpu(&self) -> f64 {
        self.decode + self.normalise + self.assemble + self.encode + self.write
    }

    fn scaled(&self, k: f64) -> Stages {
        Stages {
            decode: self.decode * k,
            normalise: self.normalise * k,
            engine: self.engine * k,
            assemble: self.assemble * k,
            encode: self.encode * k,
            write: self.write * k,
        }
    }
}

/// One line of the log: a job's outcome.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Record {
    /// The input ([`Source::display`]).
    pub input: String,
    /// The output path.
    pub output: String,
    /// Ok, skipped or failed.
    pub status: Status,
    /// Slices upscaled (0 when skipped or failed before the network).
    pub slices: usize,
    /// Seconds from the start of reading to the end of writing.
    pub seconds: f64,
    /// Why it failed.
    pub error: Option<String>,
    /// Seconds per stage.
    pub stages: Stages,
}

/// The figures of a run.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Jobs handled (this shard's).
    pub jobs: usize,
    /// Upscaled and written.
    pub ok: usize,
    /// Complete outputs found and left alone.
    pub skipped: usize,
    /// Failed.
    pub failed: usize,
    /// Slices upscaled.
    pub slices: usize,
    /// Wall-clock seconds of the pipeline, engine start included.
    pub wall_seconds: f64,
    /// Seconds to build the engine (overlapping the first read).
    pub engine_start_seconds: f64,
    /// Seconds the engine ran the network.
    pub engine_busy_seconds: f64,
    /// Seconds the engine waited for a volume to be read.
    pub engine_wait_seconds: f64,
    /// Seconds the engine waited for a writer to take its output.
    pub engine_blocked_seconds: f64,
    /// Busy seconds over the engine's time from ready to its last volume (1 = never idle).
    pub engine_busy_fraction: f64,
    /// Volumes written per hour of wall-clock time.
    pub volumes_per_hour: f64,
    /// Stage seconds summed over the written volumes.
    pub stage_seconds: Stages,
    /// Stage seconds per written volume.
    pub stage_seconds_per_volume: Stages,
    /// CPU seconds per written volume (decode, normalise, assemble, encode, write).
    pub cpu_seconds_per_volume: f64,
    /// The backend ([`Upscaler::describe`]), when it was built.
    pub backend: Option<String>,
    /// The backend's notices (e.g. a fallback to the CPU reference).
    pub notices: Vec<String>,
}

/// A volume made ready for the engine.
struct Ready<'a> {
    job: &'a Job,
    output: PathBuf,
    vol: Volume,
    prepared: Prepared,
    started: Instant,
    stages: Stages,
}

/// A volume upscaled, waiting for a writer.
struct Upscaled<'a> {
    ready: Ready<'a>,
    outputs: Vec<Plane>,
}

/// What the engine thread measured.
#[derive(Default)]
struct EngineStats {
    start: f64,
    busy: f64,
    wait: f64,
    blocked: f64,
    window: f64,
    backend: Option<String>,
    notices: Vec<String>,
}

fn failed(job: &Job, output: &std::path::Path, started: Instant, error: String) -> Record {
    Record {
        input: job.source.display(),
        output: output.display().to_string(),
        status: Status::Failed,
        slices: 0,
        seconds: started.elapsed().as_secs_f64(),
        error: Some(error),
        stages: Stages::default(),
    }
}

/// Reads and prepares one job's volume.
fn read(job: &Job, config: &Config, stages: &mut Stages) -> Result<(Volume, Prepared), String> {
    let t = Instant::now();
    let opts = LoadOptions {
        memory_budget: config.memory_budget,
        ..LoadOptions::default()
    };
    let vol = match &job.source {
        Source::Path(p) => volume::load(p, &opts),
        Source::DicomSeries { folder, uid, files } => volume::load_dicom_files(
            folder,
            files,
            &LoadOptions {
                series: Some(uid.clone()),
                ..opts
            },
        ),
    }
    .map_err(|e| format!("cannot load: {e}"))?;
    stages.decode = t.elapsed().as_secs_f64();
    let t = Instant::now();
    upscale::check_output_budget(&vol, config.scale, config.memory_budget)
        .map_err(|e| e.to_string())?;
    let prepared = upscale::prepare(&vol, config.axis).map_err(|e| e.to_string())?;
    stages.normalise = t.elapsed().as_secs_f64();
    Ok((vol, prepared))
}

/// Assembles, encodes and writes one upscaled volume.
fn write(up: Upscaled<'_>, config: &Config, writer: &dyn OutputWriter, backend: &str) -> Record {
    let Upscaled { ready, outputs } = up;
    let mut stages = ready.stages;
    let job = ready.job;
    let result = (|| -> Result<(), String> {
        let t = Instant::now();
        let note = format!("{} on {backend}", config.note);
        let out = upscale::assemble(
            &ready.vol,
            config.scale,
            config.degradation,
            &ready.prepared,
            &outputs,
            note,
        )
        .map_err(|e| e.to_string())?;
        drop(outputs);
        stages.assemble = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let encoded = writer.encode(&out, job).map_err(|e| e.to_string())?;
        drop(out);
        stages.encode = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let input = match &job.source {
            Source::Path(p) => p.as_path(),
            Source::DicomSeries { folder, .. } => folder.as_path(),
        };
        output::write_atomically(&encoded, &ready.output, input).map_err(|e| e.to_string())?;
        stages.write = t.elapsed().as_secs_f64();
        Ok(())
    })();
    match result {
        Ok(()) => Record {
            input: job.source.display(),
            output: ready.output.display().to_string(),
            status: Status::Ok,
            slices: ready.prepared.planes.len(),
            seconds: ready.started.elapsed().as_secs_f64(),
            error: None,
            stages,
        },
        Err(e) => failed(job, &ready.output, ready.started, e),
    }
}

/// The engine's loop: builds the engine, then upscales each ready volume and hands it on.
fn engine_loop<'a>(
    make_engine: impl FnOnce() -> Result<Box<dyn Upscaler>, EngineError>,
    ready_rx: Receiver<Ready<'a>>,
    up_tx: SyncSender<Upscaled<'a>>,
    records: mpsc::Sender<Record>,
    abort: &OnceLock<String>,
    backend_name: &OnceLock<String>,
) -> EngineStats {
    let mut stats = EngineStats::default();
    let t = Instant::now();
    let engine = make_engine();
    stats.start = t.elapsed().as_secs_f64();
    let mut engine = match engine {
        Ok(e) => e,
        Err(e) => {
            let msg = format!("cannot start the network: {e}");
            tracing::error!("{msg}");
            let _ = abort.set(msg.clone());
            for r in ready_rx {
                let _ = records.send(failed(r.job, &r.output, r.started, msg.clone()));
            }
            return stats;
        }
    };
    let backend = engine.describe();
    let _ = backend_name.set(backend.clone());
    stats.backend = Some(backend);
    let cancel = AtomicBool::new(false);
    let quiet = |_: usize, _: usize| {};
    let window = Instant::now();
    loop {
        let t = Instant::now();
        let Ok(mut ready) = ready_rx.recv() else {
            break;
        };
        stats.wait += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let result = engine.upscale(&ready.prepared.planes, &quiet, &cancel);
        let busy = t.elapsed().as_secs_f64();
        stats.busy += busy;
        stats.window = window.elapsed().as_secs_f64();
        ready.stages.engine = busy;
        match result {
            Ok(outputs) => {
                let t = Instant::now();
                if let Err(mpsc::SendError(up)) = up_tx.send(Upscaled { ready, outputs }) {
                    let r = up.ready;
                    let _ = records.send(failed(
                        r.job,
                        &r.output,
                        r.started,
                        "internal error: the writers stopped".into(),
                    ));
                }
                stats.blocked += t.elapsed().as_secs_f64();
            }
            Err(e) => {
                let _ = records.send(failed(
                    ready.job,
                    &ready.output,
                    ready.started,
                    format!("upscaling failed: {e}"),
                ));
            }
        }
    }
    stats.notices = engine.take_notices();
    stats
}

/// Runs `jobs`: a job whose complete output exists is skipped, the others are read, upscaled by
/// the engine `make_engine` builds (once, and only when some job needs it) and written by
/// `writer`. `on_record` sees each job's record on the calling thread as it completes (log
/// lines, a progress bar).
pub fn run(
    jobs: &[Job],
    config: &Config,
    writer: &dyn OutputWriter,
    make_engine: impl FnOnce() -> Result<Box<dyn Upscaler>, EngineError> + Send,
    on_record: &mut dyn FnMut(&Record),
) -> Summary {
    let started = Instant::now();
    let mut summary = Summary {
        jobs: jobs.len(),
        ..Summary::default()
    };
    let mut pending = Vec::new();
    for job in jobs {
        let out = output::output_path(writer, &config.out_dir, job);
        if output::is_complete(&out) {
            let rec = Record {
                input: job.source.display(),
                output: out.display().to_string(),
                status: Status::Skipped,
                slices: 0,
                seconds: 0.0,
                error: None,
                stages: Stages::default(),
            };
            summary.skipped += 1;
            on_record(&rec);
        } else {
            // The temporary of a killed run is never taken for an output; clear it now so that
            // a job failing this time leaves none behind either.
            let part = output::partial_path(&out);
            if std::fs::symlink_metadata(&part).is_ok() {
                let removed = if part.is_dir() {
                    std::fs::remove_dir_all(&part)
                } else {
                    std::fs::remove_file(&part)
                };
                match removed {
                    Ok(()) => tracing::info!("removed the partial output {}", part.display()),
                    Err(e) => tracing::warn!("cannot remove {}: {e}", part.display()),
                }
            }
            pending.push((job, out));
        }
    }
    if pending.is_empty() {
        summary.wall_seconds = started.elapsed().as_secs_f64();
        return summary;
    }
    let workers = config.workers.max(1);
    let next = AtomicUsize::new(0);
    let abort: OnceLock<String> = OnceLock::new();
    let backend_name: OnceLock<String> = OnceLock::new();
    let mut totals = Stages::default();
    let stats = std::thread::scope(|s| {
        let (rec_tx, rec_rx) = mpsc::channel::<Record>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Ready>(1);
        let (up_tx, up_rx) = mpsc::sync_channel::<Upscaled>(1);
        let up_rx = Arc::new(Mutex::new(up_rx));
        for _ in 0..workers {
            let (tx, rec) = (ready_tx.clone(), rec_tx.clone());
            let (next, abort, pending) = (&next, &abort, &pending);
            s.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some((job, out)) = pending.get(i) else {
                        break;
                    };
                    let t0 = Instant::now();
                    if let Some(msg) = abort.get() {
                        let _ = rec.send(failed(job, out, t0, msg.clone()));
                        continue;
                    }
                    let mut stages = Stages::default();
                    match read(job, config, &mut stages) {
                        Ok((vol, prepared)) => {
                            let ready = Ready {
                                job,
                                output: out.clone(),
                                vol,
                                prepared,
                                started: t0,
                                stages,
                            };
                            if let Err(mpsc::SendError(r)) = tx.send(ready) {
                                let _ = rec.send(failed(
                                    job,
                                    out,
                                    t0,
                                    "internal error: the engine stopped".into(),
                                ));
                                drop(r);
                            }
                        }
                        Err(e) => {
                            tracing::warn!("{}: {e}", job.source.display());
                            let _ = rec.send(failed(job, out, t0, e));
                        }
                    }
                }
            });
        }
        drop(ready_tx);
        for _ in 0..workers {
            let (rx, rec) = (up_rx.clone(), rec_tx.clone());
            let backend_name = &backend_name;
            s.spawn(move || {
                loop {
                    let next = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => break,
                    };
                    let Ok(up) = next else { break };
                    let backend = backend_name.get().map(String::as_str).unwrap_or("?");
                    let _ = rec.send(write(up, config, writer, backend));
                }
            });
        }
        let engine = {
            let rec = rec_tx.clone();
            let (abort, backend_name) = (&abort, &backend_name);
            s.spawn(move || engine_loop(make_engine, ready_rx, up_tx, rec, abort, backend_name))
        };
        drop(rec_tx);
        for rec in rec_rx {
            match rec.status {
                Status::Ok => {
                    summary.ok += 1;
                    summary.slices += rec.slices;
                    totals.add(&rec.stages);
                }
                Status::Skipped => summary.skipped += 1,
                Status::Failed => summary.failed += 1,
            }
            on_record(&rec);
        }
        engine.join().unwrap_or_default()
    });
    summary.wall_seconds = started.elapsed().as_secs_f64();
    summary.engine_start_seconds = stats.start;
    summary.engine_busy_seconds = stats.busy;
    summary.engine_wait_seconds = stats.wait;
    summary.engine_blocked_seconds = stats.blocked;
    summary.engine_busy_fraction = if stats.window > 0.0 {
        (stats.busy / stats.window).min(1.0)
    } else {
        0.0
    };
    summary.volumes_per_hour = if summary.wall_seconds > 0.0 {
        summary.ok as f64 * 3600.0 / summary.wall_seconds
    } else {
        0.0
    };
    summary.stage_seconds = totals;
    if summary.ok > 0 {
        let per = totals.scaled(1.0 / summary.ok as f64);
        summary.cpu_seconds_per_volume = per.cpu();
        summary.stage_seconds_per_volume = per;
    }
    summary.backend = stats.backend;
    summary.notices = stats.notices;
    summary
}
