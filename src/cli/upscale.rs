//! `deltawkv upscale IN OUT --scale S [--format nifti|dicom]`: upscales every slice of a volume
//! in-plane with the network and writes NIfTI whose affine keeps the anatomy in place, or a
//! derived DICOM series (a folder) on the same grid.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, bail};

use super::{AxisArg, DeviceArg};
use crate::checkpoints::{self, Reach};
use crate::ensemble::SelfEnsemble;
use crate::upscale;
use crate::volume::{self, Axis, LoadOptions};

/// Arguments of `deltawkv upscale`.
#[derive(clap::Args, Debug)]
pub struct UpscaleArgs {
    /// Input volume: NIfTI file, DICOM file or folder of DICOM files.
    pub input: PathBuf,
    /// Output: a NIfTI file (`.nii` or `.nii.gz`) or a new folder for a DICOM series.
    pub output: PathBuf,
    #[command(flatten)]
    pub network: NetworkArgs,
    /// Output format; default `nifti` when OUT ends in `.nii`/`.nii.gz`, else `dicom`.
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
    /// PatientName of the new study a DICOM output of a NIfTI input starts (default ANONYMOUS).
    #[arg(long)]
    pub patient_name: Option<String>,
    /// PatientID of the new study a DICOM output of a NIfTI input starts (default ANONYMOUS).
    #[arg(long)]
    pub patient_id: Option<String>,
    /// 0-based volume to upscale in 4-D data.
    #[arg(long, default_value_t = 0)]
    pub volume: usize,
    /// SeriesInstanceUID to upscale when a DICOM folder holds several series.
    #[arg(long)]
    pub series: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Data consistency: replace each upscaled slice's central k-space by the input slice's (the
    /// measured LR), so that k-space truncation of the output gives the input back (up to float
    /// rounding and the zeroing of negative values of a non-negative input). Needs a checkpoint
    /// trained on k-space truncation; see the `consistency` module.
    #[arg(long)]
    pub data_consistency: bool,
    #[command(flatten)]
    pub memory: super::MemoryArgs,
}

/// The network's name in a DICOM output's provenance when `--self-ensemble` made it.
pub const ENSEMBLE_NETWORK: &str = "Delta-WKV (self-ensemble of 8)";

/// The network options `upscale` and `batch` share.
#[derive(clap::Args, Debug)]
pub struct NetworkArgs {
    /// Upscaling factor (the checkpoint must be trained for it).
    #[arg(long)]
    pub scale: usize,
    /// Checkpoint (safetensors); default: the shipped `dwkv3m_x{S}.safetensors` (`deltawkv --help`
    /// says where it is looked up).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Backend: a GPU, the CPU reference, or the faster available (auto).
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// Slicing direction; the two in-plane axes are upscaled.
    #[arg(long, value_enum, default_value_t = AxisArg::Axial)]
    pub axis: AxisArg,
    /// Geometric self-ensemble: average the network's outputs over the eight flips and
    /// transposes of each slice (better PSNR/SSIM, eight times the network's time; the model
    /// card has the measured gain).
    #[arg(long)]
    pub self_ensemble: bool,
}

/// What `deltawkv upscale` writes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// One NIfTI-1 float32 file.
    Nifti,
    /// A folder holding a derived DICOM series (MR Image Storage, one file per slice).
    Dicom,
}

impl OutputFormat {
    /// The format `--format` defaults to for `output`: NIfTI for a `.nii`/`.nii.gz` name, DICOM
    /// otherwise.
    pub fn default_for(output: &Path) -> OutputFormat {
        let name = output
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        if name.ends_with(".nii") || name.ends_with(".nii.gz") {
            OutputFormat::Nifti
        } else {
            OutputFormat::Dicom
        }
    }
}

/// A progress bar on stderr counting `unit`s (hidden when stderr is not a terminal).
pub(crate) fn progress_bar(total: usize, what: &str, unit: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
        "{{msg}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit} (eta {{eta}})"
    )) {
        bar.set_style(style);
    }
    bar.set_message(what.to_string());
    bar
}

/// Runs `deltawkv upscale`.
pub fn run(args: UpscaleArgs) -> anyhow::Result<()> {
    if !(args.network.scale == 2 || args.network.scale == 4) {
        bail!("--scale must be 2 or 4, got {}", args.network.scale);
    }
    let started = Instant::now();
    let budget = args.memory.bytes()?;
    let (ck, weights_path) = checkpoints::load(
        args.network.weights.as_deref(),
        args.network.scale,
        budget,
        Reach::Install,
    )?;
    let degradation = ck.config.degradation;
    if args.data_consistency && degradation != crate::model::Degradation::Kspace {
        bail!(
            "--data-consistency: {} (checkpoint {})",
            crate::consistency::ConsistencyError::Unsupported(degradation),
            weights_path.display()
        );
    }
    let opts = LoadOptions {
        volume: args.volume,
        series: args.series.clone(),
        memory_budget: budget,
    };
    let vol = volume::load(&args.input, &opts)
        .with_context(|| format!("cannot load {}", args.input.display()))?;
    upscale::check_output_budget(&vol, args.network.scale, budget)
        .with_context(|| args.input.display().to_string())?;
    // The intensity mapping and output grid the viewer's upscale mode and `batch` share
    // (crate::upscale).
    let axis = Axis::from(args.network.axis);
    let prepared = upscale::prepare(&vol, axis)
        .with_context(|| format!("slicing {} along {axis:?}", args.input.display()))?;
    let factor = prepared.intensity.factor;
    let format = args
        .format
        .unwrap_or_else(|| OutputFormat::default_for(&args.output));
    // A DICOM output is checked before inference, not after minutes of it.
    let provenance = if format == OutputFormat::Dicom {
        volume::check_series_output(&args.output, &vol.meta)?;
        let mut p = volume::Provenance::of_checkpoint(&weights_path, args.network.scale)?;
        if args.network.self_ensemble {
            p.network = ENSEMBLE_NETWORK.to_string();
        }
        p.patient_name = args.patient_name.clone();
        p.patient_id = args.patient_id.clone();
        Some(p)
    } else {
        None
    };
    let n = prepared.planes.len();

    let upscaler = crate::backend::create(ck, args.network.device.into())
        .context("cannot start the network")?;
    let mut upscaler = SelfEnsemble::wrap_if(args.network.self_ensemble, upscaler, degradation);
    let backend = upscaler.describe();
    if !args.json {
        eprintln!("backend: {backend}");
    }
    let bar = progress_bar(n, "upscaling", "slices");
    let report = |done: usize, _total: usize| bar.set_position(done as u64);
    let t = Instant::now();
    let mut outputs = upscaler
        .upscale(&prepared.planes, &report, &AtomicBool::new(false))
        .context("upscaling failed")?;
    let net_seconds = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    // On the network's scale, before the intensities go back to the input's.
    let residual_rms = if args.data_consistency {
        use rayon::prelude::*;
        let scale = args.network.scale;
        let residuals = outputs
            .par_iter_mut()
            .zip(prepared.planes.par_iter())
            .enumerate()
            .map(|(k, (sr, lr))| {
                let p = crate::consistency::project_with_residual(sr, lr, scale, degradation)
                    .with_context(|| format!("data consistency of slice {k}"))?;
                *sr = p.consistent;
                Ok(p.residual)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Some(crate::consistency::rms(&residuals))
    } else {
        None
    };
    let notices = upscaler.take_notices();
    if !args.json {
        for msg in &notices {
            eprintln!("note: {msg}");
        }
    }

    // The input's own voxel order, in-plane axes upscaled; the viewer's export uses the same grid.
    let note = format!(
        "upscaled x{} in-plane ({axis:?}) by Delta-WKV ({}) on {backend}{}",
        args.network.scale,
        weights_path.display(),
        if args.data_consistency {
            ", data-consistent (central k-space from the input)"
        } else {
            ""
        }
    );
    let out = upscale::assemble(
        &vol,
        args.network.scale,
        degradation,
        &prepared,
        &outputs,
        note,
    )
    .context("internal error")?;
    let (dims, spacing) = (out.dims, out.spacing);
    let written = match &provenance {
        Some(p) => Some(
            volume::write_derived_series(&out, p, &args.output)
                .with_context(|| format!("cannot write {}", args.output.display()))?,
        ),
        None => {
            volume::save_nifti(&out, &args.output)
                .with_context(|| format!("cannot write {}", args.output.display()))?;
            None
        }
    };

    let total_seconds = started.elapsed().as_secs_f64();
    if args.json {
        let obj = serde_json::json!({
            "input": args.input.display().to_string(),
            "output": args.output.display().to_string(),
            "weights": weights_path.display().to_string(),
            "scale": args.network.scale,
            "axis": format!("{axis:?}").to_lowercase(),
            "slices": n,
            "input_dims": vol.dims,
            "output_dims": dims,
            "output_spacing": spacing,
            "degradation": degradation.as_str(),
            "normalisation_factor": factor,
            "backend": backend,
            "network_seconds": net_seconds,
            "seconds_per_slice": if n > 0 { net_seconds / n as f64 } else { 0.0 },
            "total_seconds": total_seconds,
            "notices": notices,
            "format": if written.is_some() { "dicom" } else { "nifti" },
            "data_consistency": args.data_consistency,
            "self_ensemble": args.network.self_ensemble,
            "consistency_residual_rms": residual_rms,
            "series": written,
        });
        println!("{obj}");
    } else {
        println!(
            "{} -> {}: {} slices ({:?}) x{}, {:?} -> {:?} voxels, {:.2} s ({:.3} s/slice) on {backend}",
            args.input.display(),
            args.output.display(),
            n,
            axis,
            args.network.scale,
            vol.dims,
            dims,
            net_seconds,
            if n > 0 { net_seconds / n as f64 } else { 0.0 },
        );
        if let Some(rms) = residual_rms {
            println!(
                "data consistency applied: RMS of the removed residual {rms:.5} (x {factor} in \
                 file units)"
            );
        }
        if let Some(w) = &written {
            println!(
                "DICOM series {} ({} files, SeriesNumber {}) in study {}",
                w.series_instance_uid,
                w.files.len(),
                w.series_number,
                w.study_instance_uid
            );
        }
    }
    Ok(())
}
