//! `deltawkv batch INPUT OUT_DIR --scale S`: upscales every volume of an archive (a folder walked
//! recursively, or a `.txt`/`.csv` manifest) with one engine, resumably, optionally one shard of
//! a job array (`--shard I/N`, Slurm, Kubernetes). One JSON line per volume goes to the log.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, bail};

use crate::batch::{self, DicomWriter, Discovery, Job, NiftiWriter, OutputWriter, Shard, Status};
use crate::checkpoints::{self, Reach};
use crate::ensemble::SelfEnsemble;
use crate::volume::Axis;

/// `--format`: what the outputs are written as.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatArg {
    /// NIfTI-1 float32, gzipped (`.nii.gz`).
    Nifti,
    /// A derived DICOM series per volume: a folder of MR images in the source's study and frame
    /// of reference (a new anonymous study for NIfTI inputs).
    Dicom,
}

/// Arguments of `deltawkv batch`.
#[derive(clap::Args, Debug)]
pub struct BatchArgs {
    /// A folder (walked recursively: each NIfTI file and each DICOM series is one job), or a
    /// manifest: `.txt` (one input path per line) or `.csv` (input,output per line).
    pub input: PathBuf,
    /// Output folder; names follow the inputs' paths relative to INPUT.
    pub out_dir: PathBuf,
    #[command(flatten)]
    pub network: super::upscale::NetworkArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Nifti)]
    pub format: FormatArg,
    /// This task's part of the sorted job list, I/N (0-based) [default: from
    /// SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT, or JOB_COMPLETION_INDEX/DELTAWKV_SHARD_COUNT,
    /// else the whole list]
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Log file, one JSON line per volume, appended [default:
    /// OUT_DIR/batch-log[.shard-I-of-N].jsonl]
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// CPU threads reading and, as many, writing [default: half the cores, 1 to 8]
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Print the summary as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub memory: super::MemoryArgs,
}

/// The writer of `--format`; a DICOM series names the checkpoint at `weights` (its SHA-256 is
/// read here, once).
fn writer_for(
    format: FormatArg,
    weights: &Path,
    scale: usize,
    self_ensemble: bool,
) -> anyhow::Result<Box<dyn OutputWriter>> {
    Ok(match format {
        FormatArg::Nifti => Box::new(NiftiWriter),
        FormatArg::Dicom => {
            let mut provenance = crate::volume::Provenance::of_checkpoint(weights, scale)?;
            if self_ensemble {
                provenance.network = super::upscale::ENSEMBLE_NETWORK.to_string();
            }
            Box::new(DicomWriter { provenance })
        }
    })
}

/// The job list of INPUT (a folder or a manifest).
fn job_list(input: &Path, out_dir: &Path, budget: u64) -> anyhow::Result<(Vec<Job>, Discovery)> {
    if input.is_dir() {
        if let (Ok(a), Ok(b)) = (input.canonicalize(), out_dir.canonicalize())
            && a == b
        {
            bail!(
                "OUT_DIR {} is INPUT: choose another output folder",
                out_dir.display()
            );
        }
        return Ok(batch::jobs::from_folder(input, Some(out_dir), budget)?);
    }
    let ext = input
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if !input.exists() {
        bail!("{}: no such file or folder", input.display());
    }
    if ext == "txt" || ext == "csv" {
        return Ok((batch::jobs::from_manifest(input)?, Discovery::default()));
    }
    bail!(
        "{}: INPUT must be a folder or a manifest (.txt: one path per line; .csv: input,output)",
        input.display()
    )
}

/// The shard of this process and where it came from.
fn shard_of(flag: Option<&str>) -> anyhow::Result<(Shard, String)> {
    if let Some(s) = flag {
        return Ok((Shard::parse(s)?, format!("--shard {s}")));
    }
    let env = |name: &str| std::env::var(name).ok();
    Ok(Shard::from_env(env)?.unwrap_or((Shard::ALL, "no shard: all jobs".into())))
}

/// Runs `deltawkv batch`.
pub fn run(args: BatchArgs) -> anyhow::Result<()> {
    if !(args.network.scale == 2 || args.network.scale == 4) {
        bail!("--scale must be 2 or 4, got {}", args.network.scale);
    }
    let budget = args.memory.bytes()?;
    let (shard, shard_from) = shard_of(args.shard.as_deref())?;
    let (ck, weights_path) = checkpoints::load(
        args.network.weights.as_deref(),
        args.network.scale,
        budget,
        Reach::Install,
    )?;
    let writer = writer_for(
        args.format,
        &weights_path,
        args.network.scale,
        args.network.self_ensemble,
    )?;
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    let (all, discovery) = job_list(&args.input, &args.out_dir, budget)?;
    let total = all.len();
    let jobs = shard.select(all);
    let log_path = args.log.clone().unwrap_or_else(|| {
        let name = if shard.count > 1 {
            format!("batch-log.shard-{}-of-{}.jsonl", shard.index, shard.count)
        } else {
            "batch-log.jsonl".into()
        };
        args.out_dir.join(name)
    });
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open the log {}", log_path.display()))?;
    if !args.json {
        eprintln!(
            "{} jobs in {}, {} in this shard ({shard_from}); log {}",
            total,
            args.input.display(),
            jobs.len(),
            log_path.display()
        );
    }

    let axis = Axis::from(args.network.axis);
    let workers = args.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| (n.get() / 2).clamp(1, 8))
            .unwrap_or(1)
    });
    let config = batch::Config {
        out_dir: args.out_dir.clone(),
        scale: args.network.scale,
        axis,
        degradation: ck.config.degradation,
        memory_budget: budget,
        workers,
        note: format!(
            "upscaled x{} in-plane ({axis:?}) by Delta-WKV ({}){}",
            args.network.scale,
            weights_path.display(),
            if args.network.self_ensemble {
                ", self-ensemble of 8"
            } else {
                ""
            }
        ),
    };
    let pin = Mutex::new(None);
    let device = args.network.device;
    let quiet = args.json;
    let (ensemble, degradation) = (args.network.self_ensemble, ck.config.degradation);
    let make_engine = || {
        let (engine, p) = crate::backend::create_pinned(ck, device.into())?;
        let engine = SelfEnsemble::wrap_if(ensemble, engine, degradation);
        if !quiet {
            eprintln!("backend: {}", engine.describe());
            eprintln!("GPU pin: {}", p.reason);
        }
        if let Ok(mut slot) = pin.lock() {
            *slot = Some(p);
        }
        Ok(engine)
    };
    let bar = super::upscale::progress_bar(jobs.len(), "batch", "volumes");
    let mut log_error: Option<std::io::Error> = None;
    let mut on_record = |rec: &batch::Record| {
        bar.inc(1);
        if rec.status == Status::Failed && !quiet {
            bar.suspend(|| {
                eprintln!(
                    "failed: {}: {}",
                    rec.input,
                    rec.error.as_deref().unwrap_or("?")
                );
            });
        }
        let line = serde_json::to_string(rec).unwrap_or_default();
        if let Err(e) = writeln!(log, "{line}").and_then(|()| log.flush())
            && log_error.is_none()
        {
            log_error = Some(e);
        }
    };
    let summary =
        batch::pipeline::run(&jobs, &config, writer.as_ref(), make_engine, &mut on_record);
    bar.finish_and_clear();
    let pin = pin.into_inner().ok().flatten();
    if let Some(e) = log_error {
        eprintln!("warning: cannot write the log {}: {e}", log_path.display());
    }

    if args.json {
        let mut obj = serde_json::to_value(&summary)?;
        if let Some(map) = obj.as_object_mut() {
            map.insert("input".into(), args.input.display().to_string().into());
            map.insert("out_dir".into(), args.out_dir.display().to_string().into());
            map.insert("format".into(), writer.format().into());
            map.insert("weights".into(), weights_path.display().to_string().into());
            map.insert("scale".into(), args.network.scale.into());
            map.insert("total_jobs".into(), total.into());
            map.insert("shard".into(), serde_json::to_value(shard)?);
            map.insert("shard_source".into(), shard_from.into());
            map.insert("workers".into(), workers.into());
            map.insert("log".into(), log_path.display().to_string().into());
            map.insert("discovery".into(), serde_json::to_value(&discovery)?);
            map.insert("gpu_pin".into(), serde_json::to_value(&pin)?);
        }
        println!("{obj}");
    } else {
        for msg in &summary.notices {
            eprintln!("note: {msg}");
        }
        if discovery.ignored_files > 0 || !discovery.unreadable.is_empty() {
            println!(
                "input: {} files neither NIfTI nor readable DICOM left out; {} folders unreadable",
                discovery.ignored_files,
                discovery.unreadable.len()
            );
        }
        let per = &summary.stage_seconds_per_volume;
        println!(
            "{} jobs: {} ok, {} skipped, {} failed; {} slices in {:.1} s ({:.0} volumes/h); \
             engine busy {:.0}% ({:.1} s, waited {:.1} s for input, {:.1} s for writers); \
             per volume: decode {:.3} s, normalise {:.3} s, engine {:.3} s, assemble {:.3} s, \
             encode {:.3} s, write {:.3} s (CPU {:.3} s)",
            summary.jobs,
            summary.ok,
            summary.skipped,
            summary.failed,
            summary.slices,
            summary.wall_seconds,
            summary.volumes_per_hour,
            summary.engine_busy_fraction * 100.0,
            summary.engine_busy_seconds,
            summary.engine_wait_seconds,
            summary.engine_blocked_seconds,
            per.decode,
            per.normalise,
            per.engine,
            per.assemble,
            per.encode,
            per.write,
            summary.cpu_seconds_per_volume,
        );
        if let Some(b) = &summary.backend {
            println!("backend: {b}");
        }
    }
    if summary.failed > 0 {
        bail!(
            "{} of {} volumes failed (see {})",
            summary.failed,
            summary.jobs,
            log_path.display()
        );
    }
    Ok(())
}
