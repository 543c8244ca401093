//! `deltawkv upscale IN OUT.nii.gz --scale S`: upscales every slice of a volume in-plane with the
//! network and writes NIfTI whose affine keeps the anatomy in place.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, bail};

use super::{AxisArg, DeviceArg};
use crate::checkpoints::{self, Reach};
use crate::upscale;
use crate::volume::{self, Axis, LoadOptions};

/// Arguments of `deltawkv upscale`.
#[derive(clap::Args, Debug)]
pub struct UpscaleArgs {
    /// Input volume: NIfTI file, DICOM file or folder of DICOM files.
    pub input: PathBuf,
    /// Output NIfTI file (`.nii` or `.nii.gz`).
    pub output: PathBuf,
    #[command(flatten)]
    pub network: NetworkArgs,
    /// 0-based volume to upscale in 4-D data.
    #[arg(long, default_value_t = 0)]
    pub volume: usize,
    /// SeriesInstanceUID to upscale when a DICOM folder holds several series.
    #[arg(long)]
    pub series: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub memory: super::MemoryArgs,
}

/// The network options `upscale` and `batch` share.
#[derive(clap::Args, Debug)]
pub struct NetworkArgs {
    /// Upscaling factor (the checkpoint must be trained for it).
    #[arg(long)]
    pub scale: usize,
    /// Checkpoint (safetensors); default `weights/dwkv3m_x{S}.safetensors`.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Backend: a GPU, the CPU reference, or the faster available (auto).
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// Slicing direction; the two in-plane axes are upscaled.
    #[arg(long, value_enum, default_value_t = AxisArg::Axial)]
    pub axis: AxisArg,
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
    let n = prepared.planes.len();

    let mut upscaler = crate::backend::create(ck, args.network.device.into())
        .context("cannot start the network")?;
    let backend = upscaler.describe();
    if !args.json {
        eprintln!("backend: {backend}");
    }
    let bar = progress_bar(n, "upscaling", "slices");
    let report = |done: usize, _total: usize| bar.set_position(done as u64);
    let t = Instant::now();
    let outputs = upscaler
        .upscale(&prepared.planes, &report, &AtomicBool::new(false))
        .context("upscaling failed")?;
    let net_seconds = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let notices = upscaler.take_notices();
    if !args.json {
        for msg in &notices {
            eprintln!("note: {msg}");
        }
    }

    // The input's own voxel order, in-plane axes upscaled; the viewer's export uses the same grid.
    let note = format!(
        "upscaled x{} in-plane ({axis:?}) by Delta-WKV ({}) on {backend}",
        args.network.scale,
        weights_path.display()
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
    volume::save_nifti(&out, &args.output)
        .with_context(|| format!("cannot write {}", args.output.display()))?;

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
    }
    Ok(())
}
