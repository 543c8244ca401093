//! `deltawkv compare TEST REF`: PSNR and SSIM of one volume against another on the same grid.
//!
//! Volume PSNR comes from the MSE over all voxels; volume SSIM is the mean of the 2-D SSIMs of the
//! axial slices (fixed k), computed as scikit-image does (see [`crate::metrics`]). The default
//! data range is the reference's finite max minus min. Volumes with NaN or infinite voxels are
//! refused (the count is reported), since a metric that skips them silently would mislead.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rayon::prelude::*;

use crate::metrics::{self, PlaneMetrics, VolumeAccumulator};
use crate::volume::{self, Axis, LoadOptions, Volume};

/// Arguments of `deltawkv compare`.
#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// Volume under test (e.g. an SR output).
    pub test: PathBuf,
    /// Reference volume on the same voxel grid.
    pub reference: PathBuf,
    /// Data range R of PSNR and SSIM; default: the reference's max minus min (finite voxels).
    #[arg(long)]
    pub data_range: Option<f64>,
    /// Also report each axial slice's PSNR and SSIM.
    #[arg(long)]
    pub per_slice: bool,
    /// Print one JSON object (keys psnr, ssim, data_range, slices, mse, ...) instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub memory: super::MemoryArgs,
}

fn load(path: &Path, what: &str, budget: u64) -> anyhow::Result<Volume> {
    let opts = LoadOptions {
        memory_budget: budget,
        ..LoadOptions::default()
    };
    volume::load(path, &opts)
        .with_context(|| format!("cannot load the {what} volume {}", path.display()))
}

fn json_num(v: f64) -> serde_json::Value {
    // JSON has no infinity: identical volumes (PSNR +inf) print as null.
    serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// Runs `deltawkv compare`.
pub fn run(args: CompareArgs) -> anyhow::Result<()> {
    let budget = args.memory.bytes()?;
    let test = load(&args.test, "test", budget)?;
    let reference = load(&args.reference, "reference", budget)?;
    if test.dims != reference.dims {
        bail!(
            "the volumes are not on the same grid: {} is {:?}, {} is {:?}",
            args.test.display(),
            test.dims,
            args.reference.display(),
            reference.dims
        );
    }
    for (path, vol) in [(&args.test, &test), (&args.reference, &reference)] {
        let bad = vol.data.iter().filter(|v| !v.is_finite()).count();
        if bad > 0 {
            bail!(
                "{} has {bad} NaN or infinite voxels; compare needs finite volumes",
                path.display()
            );
        }
    }
    let max_affine_diff = test
        .affine
        .iter()
        .flatten()
        .zip(reference.affine.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f64, f64::max);
    if max_affine_diff > 1e-3 {
        eprintln!(
            "warning: the affines differ (largest entry difference {max_affine_diff:.4}); comparing voxel by voxel anyway"
        );
    }
    let data_range = match args.data_range {
        Some(r) => r,
        None => {
            let st = reference.stats();
            let r = f64::from(st.max) - f64::from(st.min);
            if !(r.is_finite() && r > 0.0) {
                bail!(
                    "{} is constant (max - min = {r}); pass --data-range R",
                    args.reference.display()
                );
            }
            r
        }
    };
    if !(data_range.is_finite() && data_range > 0.0) {
        bail!("--data-range must be finite and positive, got {data_range}");
    }
    let axis = Axis::Axial;
    let n = reference.slice_count(axis);
    let per: Vec<PlaneMetrics> = (0..n)
        .into_par_iter()
        .map(|k| -> anyhow::Result<PlaneMetrics> {
            let (r, t) = match (reference.slice(axis, k), test.slice(axis, k)) {
                (Some(r), Some(t)) => (r, t),
                _ => bail!("axial slice {k} is out of range"),
            };
            metrics::plane_metrics(&r, &t, data_range)
                .with_context(|| format!("axial slice {k} ({}x{})", r.width, r.height))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut acc = VolumeAccumulator::new(data_range)?;
    let voxels = reference.dims[0] * reference.dims[1];
    for m in &per {
        acc.add_metrics(m, voxels);
    }
    let Some(vm) = acc.finish() else {
        bail!("{} has no axial slices", args.reference.display());
    };
    if args.json {
        let mut obj = serde_json::json!({
            "psnr": json_num(vm.psnr),
            "ssim": vm.ssim,
            "mse": vm.mse,
            "data_range": data_range,
            "slices": vm.slices,
            "axis": "axial",
            "dims": reference.dims,
            "test": args.test.display().to_string(),
            "reference": args.reference.display().to_string(),
        });
        if args.per_slice {
            obj["per_slice"] = per
                .iter()
                .enumerate()
                .map(|(k, m)| serde_json::json!({"index": k, "psnr": json_num(m.psnr), "ssim": m.ssim}))
                .collect();
        }
        println!("{obj}");
    } else {
        println!(
            "{} vs {} ({}x{}x{})",
            args.test.display(),
            args.reference.display(),
            reference.dims[0],
            reference.dims[1],
            reference.dims[2]
        );
        println!(
            "PSNR {:.3} dB  (data range {data_range}, MSE {:.6e})",
            vm.psnr, vm.mse
        );
        println!("SSIM {:.5}  (mean of {} axial slices)", vm.ssim, vm.slices);
        if args.per_slice {
            for (k, m) in per.iter().enumerate() {
                println!("  slice {k:4}  PSNR {:8.3} dB  SSIM {:.5}", m.psnr, m.ssim);
            }
        }
    }
    Ok(())
}
