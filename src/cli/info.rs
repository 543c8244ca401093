//! `deltawkv info`: describe a volume.

use std::path::PathBuf;

use anyhow::Context;

use crate::volume::{self, LoadOptions, VolumeError};

/// Arguments of `deltawkv info`.
#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// NIfTI file, DICOM file or folder of DICOM files.
    pub path: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// 0-based volume to describe in 4-D data.
    #[arg(long, default_value_t = 0)]
    pub volume: usize,
    /// SeriesInstanceUID to describe when a folder holds several series.
    #[arg(long)]
    pub series: Option<String>,
    #[command(flatten)]
    pub memory: super::MemoryArgs,
}

/// Runs `deltawkv info`.
pub fn run(args: InfoArgs) -> anyhow::Result<()> {
    let opts = LoadOptions {
        volume: args.volume,
        series: args.series.clone(),
        memory_budget: args.memory.bytes()?,
    };
    let vol = match volume::load(&args.path, &opts) {
        Ok(v) => v,
        Err(VolumeError::MultipleSeries { path, series }) => {
            if args.json {
                let obj = serde_json::json!({
                    "error": "multiple_series",
                    "path": path.display().to_string(),
                    "series": series,
                });
                println!("{obj}");
            }
            let list = series
                .iter()
                .map(|s| {
                    format!(
                        "  {}  \"{}\"  {}  {} file(s), {}x{}x{}",
                        s.uid, s.description, s.modality, s.files, s.dims[0], s.dims[1], s.dims[2]
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            anyhow::bail!(
                "{}: folder holds {} DICOM series:\n{list}\npick one with: deltawkv info {} --series UID",
                path.display(),
                series.len(),
                args.path.display()
            );
        }
        Err(e) => return Err(e).context("cannot load the volume"),
    };
    let stats = vol.stats();
    let orientation = vol.orientation_code();
    let finite = |v: f32| if v.is_finite() { Some(v) } else { None };
    if args.json {
        let obj = serde_json::json!({
            "path": args.path.display().to_string(),
            "format": vol.meta.format,
            "datatype": vol.meta.datatype,
            "dims": vol.dims,
            "spacing": vol.spacing,
            "orientation": orientation,
            "min": finite(stats.min),
            "max": finite(stats.max),
            "mean": if stats.mean.is_finite() { Some(stats.mean) } else { None },
            "non_finite": vol.meta.non_finite,
            "modality": vol.meta.modality,
            "description": vol.meta.series_description,
            "notes": vol.meta.notes,
            "skipped": vol.meta.skipped,
            "affine": vol.affine,
        });
        println!("{obj}");
        return Ok(());
    }
    println!("path:        {}", args.path.display());
    println!("format:      {}", vol.meta.format);
    println!("datatype:    {}", vol.meta.datatype);
    println!(
        "dims:        {} x {} x {}",
        vol.dims[0], vol.dims[1], vol.dims[2]
    );
    println!(
        "spacing:     {:.4} x {:.4} x {:.4} mm",
        vol.spacing[0], vol.spacing[1], vol.spacing[2]
    );
    println!("orientation: {orientation}");
    match (finite(stats.min), finite(stats.max)) {
        (Some(lo), Some(hi)) => println!(
            "intensity:   {lo} .. {hi} (finite voxels, mean {:.4})",
            stats.mean
        ),
        _ => println!("intensity:   no finite voxels"),
    }
    if let Some(m) = &vol.meta.modality {
        println!("modality:    {m}");
    }
    if let Some(d) = &vol.meta.series_description {
        println!("description: {d}");
    }
    println!("non-finite:  {}", vol.meta.non_finite);
    println!("affine (voxel -> RAS mm):");
    for row in &vol.affine {
        println!(
            "  [{:>10.4} {:>10.4} {:>10.4} {:>10.4}]",
            row[0], row[1], row[2], row[3]
        );
    }
    if !vol.meta.notes.is_empty() {
        println!("notes:");
        for n in &vol.meta.notes {
            println!("  - {n}");
        }
    }
    Ok(())
}
