//! `deltawkv convert`: any readable volume to NIfTI.

use std::path::PathBuf;

use anyhow::Context;

use crate::volume::{self, LoadOptions};

/// Arguments of `deltawkv convert`.
#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    /// NIfTI file, DICOM file or folder of DICOM files.
    pub input: PathBuf,
    /// Output NIfTI file (`.nii.gz` or `.nii`).
    pub output: PathBuf,
    /// SeriesInstanceUID to convert when a folder holds several series.
    #[arg(long)]
    pub series: Option<String>,
    /// 0-based volume to convert from 4-D data.
    #[arg(long, default_value_t = 0)]
    pub volume: usize,
    /// Print one JSON object describing what was written.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub memory: super::MemoryArgs,
}

/// Runs `deltawkv convert`.
pub fn run(args: ConvertArgs) -> anyhow::Result<()> {
    let opts = LoadOptions {
        volume: args.volume,
        series: args.series.clone(),
        memory_budget: args.memory.bytes()?,
    };
    let vol = volume::load(&args.input, &opts).context("cannot load the input volume")?;
    volume::save_nifti(&vol, &args.output).context("cannot write the output volume")?;
    let orientation = vol.orientation_code();
    if args.json {
        let obj = serde_json::json!({
            "input": args.input.display().to_string(),
            "output": args.output.display().to_string(),
            "dims": vol.dims,
            "spacing": vol.spacing,
            "orientation": orientation,
            "datatype": "float32",
            "source_format": vol.meta.format,
            "notes": vol.meta.notes,
        });
        println!("{obj}");
    } else {
        println!(
            "wrote {}: {} x {} x {} float32, spacing {:.4} x {:.4} x {:.4} mm, orientation {orientation} (from {})",
            args.output.display(),
            vol.dims[0],
            vol.dims[1],
            vol.dims[2],
            vol.spacing[0],
            vol.spacing[1],
            vol.spacing[2],
            vol.meta.format
        );
        for n in &vol.meta.notes {
            println!("  note: {n}");
        }
    }
    Ok(())
}
